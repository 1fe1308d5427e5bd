"""The encoder and decoder at scale (issue #18): the same bytes on any number of threads,
sharded checkpoints, and memory that follows the tensor in hand, not the model."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import nntm
import numpy as np
import pytest
from nntm import codec, dtypes, streaming, streamio
from nntm.apps import decoder, encoder
from nntm.errors import ModelIOError
from nntm.modelio import read_model, write_model

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "cfg" / "encoder_default.cfg"
ANCHOR = ROOT / "cfg" / "encoder_anchor.cfg"


def _model(seed: int = 0, bf16: bool = False, dtype: str = "") -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for i, rows in enumerate((96, 40, 300, 7, 128, 64)):
        out[f"layers.{i}.weight"] = (0.05 * rng.standard_normal((rows, 48))).astype(np.float32)
        out[f"layers.{i}.bias"] = (0.01 * rng.standard_normal(rows)).astype(np.float32)
    out["steps"] = np.array(7, dtype=np.int64)
    target = dtypes.bfloat16() if bf16 else np.dtype(dtype) if dtype else None
    if target is not None:
        out = {k: v.astype(target) if v.dtype == np.float32 else v for k, v in out.items()}
    return out


def _stream(model: dict[str, np.ndarray], cfg: nntm.Config, threads: int,
            window: int = streaming.WINDOW_ELEMENTS) -> bytes:
    out = io.BytesIO()
    streaming.encode_file(model, cfg, out, threads=threads, window_elements=window)
    return out.getvalue()


@pytest.mark.parametrize("cfg_over", [{}, {"EarlierTensorPred": 1},
                                      {"QP": -36, "Cluster": 2, "ClusterSizes": "2"}],
                         ids=["default", "earlier-tensor-pred", "clustered"])
def test_one_and_two_threads_give_the_bytes_of_encode_with_recon(cfg_over: dict) -> None:
    base = DEFAULT if not cfg_over else ANCHOR
    cfg = nntm.Config.from_files([base], overrides=cfg_over)
    model = _model(1)
    if "EarlierTensorPred" in cfg_over:  # same-shape tensors to predict from
        model["layers.6.weight"] = model["layers.4.weight"] + np.float32(0.001)
    whole = codec.encode_with_recon(model, cfg).data
    one = _stream(model, cfg, threads=1)
    two = _stream(model, cfg, threads=2)
    narrow = _stream(model, cfg, threads=2, window=1)  # one tensor at a time in flight
    assert one == whole and two == whole and narrow == whole
    if "Cluster" in cfg_over:  # the model parameter set was rewritten at the end
        assert nntm.hls.parse_model_parameter_set(
            nntm.hls.split_units(two)[0]).tool_flags & nntm.hls.TOOL_CLUSTER
    assert codec.decode_detailed(two).ok


def test_encoder_app_threads_same_bytes_and_report_order(tmp_path: Path, capsys) -> None:
    path = tmp_path / "m.safetensors"
    write_model(path, _model(2, bf16=True))
    outs = []
    for threads in (1, 2):
        bit = tmp_path / f"t{threads}.bit"
        assert encoder.main(["-c", str(DEFAULT), "-i", str(path), "-b", str(bit),
                             f"--Threads={threads}"]) == 0
        lines = [ln.split()[0] for ln in capsys.readouterr().out.splitlines()
                 if ln.startswith(("layers.", "steps"))]
        outs.append((bit.read_bytes(), lines))
    assert outs[0][0] == outs[1][0]
    assert outs[0][1] == outs[1][1] == list(_model(2))


def _write_sharded(folder: Path, model: dict[str, np.ndarray], shards: int) -> None:
    folder.mkdir()
    names = list(model)
    cut = [names[i::shards] for i in range(shards)]  # interleaved: order comes from shards
    weight_map = {}
    for k, part in enumerate(cut):
        fname = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        write_model(folder / fname, {n: model[n] for n in part})
        weight_map.update({n: fname for n in part})
    (folder / streamio.INDEX_NAME).write_text(json.dumps({"metadata": {},
                                                          "weight_map": weight_map}))


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
def test_sharded_checkpoint_round_trip(dtype: str, tmp_path: Path, capsys) -> None:
    model = _model(3, bf16=dtype == "bfloat16", dtype="" if dtype == "bfloat16" else dtype)
    folder = tmp_path / "ckpt"
    _write_sharded(folder, model, 3)
    lazy = streamio.open_model(folder)
    order = list(lazy)
    assert sorted(order) == sorted(model)
    expected = codec.encode_with_recon({n: model[n] for n in order},
                                       nntm.Config.from_files([DEFAULT]),
                                       nntm.hls.SourceFormat.SAFETENSORS)
    for source in (folder, folder / streamio.INDEX_NAME):
        bit, recon, dec = tmp_path / "m.bit", tmp_path / "r.safetensors", tmp_path / "d.npz"
        assert encoder.main(["-c", str(DEFAULT), "-i", str(source), "-b", str(bit), "-o",
                             str(recon)]) == 0
        assert bit.read_bytes() == expected.data
        assert decoder.main(["-b", str(bit), "-o", str(dec), "--Threads=2"]) == 0
        got, rec = read_model(dec), read_model(recon)
        assert list(got) == order == list(rec)
        for name in order:
            assert got[name].dtype == model[name].dtype
            assert got[name].tobytes() == rec[name].tobytes() == expected.recon[name].tobytes()
    capsys.readouterr()


def test_sharded_index_problems_are_named(tmp_path: Path) -> None:
    model = _model(4)
    folder = tmp_path / "ckpt"
    _write_sharded(folder, model, 2)
    index = folder / streamio.INDEX_NAME
    doc = json.loads(index.read_text())
    doc["weight_map"]["ghost.weight"] = doc["weight_map"]["steps"]
    index.write_text(json.dumps(doc))
    with pytest.raises(ModelIOError, match="ghost.weight"):
        streamio.open_model(folder)
    del doc["weight_map"]["ghost.weight"], doc["weight_map"]["steps"]
    index.write_text(json.dumps(doc))
    with pytest.raises(ModelIOError, match="'steps'.*not listed"):
        streamio.open_model(index)
    index.unlink()
    with pytest.raises(ModelIOError, match="2 safetensors files"):
        streamio.open_model(folder)


def test_lazy_model_maps_only_what_is_asked(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    model = _model(5)
    write_model(path, model)
    lazy = streamio.open_model(path)
    assert isinstance(lazy, streamio.LazyModel) and lazy.bytes_mapped == 0
    assert [np.shape(lazy[n]) for n in lazy] == [np.shape(v) for v in model.values()]
    assert lazy.bytes_mapped == sum(v.nbytes for v in model.values())
    a = lazy["layers.2.weight"]
    assert isinstance(a, np.memmap) and np.array_equal(a, model["layers.2.weight"])


# ------------------------------------------------------------------ memory

_PEAK = """
import os, resource, subprocess, sys
cmd = sys.argv[1:]
pid = os.fork()
if pid == 0:
    os.execvp(cmd[0], cmd)
_, status, usage = os.wait4(pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss * 1024)
"""


def _peak(args: list[str]) -> int:
    """Peak RSS (bytes) of a child running ``python -m`` args (rc 0 asserted)."""
    out = subprocess.run([sys.executable, "-c", _PEAK, sys.executable, "-m", *args],
                         capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "python")})
    rc, peak = out.stdout.split()
    assert rc == "0", out
    return int(peak)


def test_encoder_and_decoder_memory_follows_the_largest_tensor(tmp_path: Path) -> None:
    """A 192 MB float32 model of 1 MB tensors: the streaming encoder and decoder stay far
    below the model's size above a tiny model's peak, where a reader of the whole file
    (the same model as .npz, which is read whole) does not."""
    rng = np.random.default_rng(0)
    big = {f"t{i}": (0.02 * rng.standard_normal((512, 512))).astype(np.float32)
           for i in range(192)}
    model_bytes = sum(v.nbytes for v in big.values())
    cfg = ["--QP=-12", "--DepQuant=0", "--IntegrityHash=0", "--Threads=2", "--Verbose=0"]
    small = tmp_path / "small.safetensors"
    write_model(small, {"t0": big["t0"][:8]})
    st, npz = tmp_path / "big.safetensors", tmp_path / "big.npz"
    write_model(st, big)
    write_model(npz, big)
    del big
    base = _peak(["nntm.apps.encoder", "-i", str(small), "-b", str(tmp_path / "s.bit"), *cfg])
    streamed = _peak(["nntm.apps.encoder", "-i", str(st), "-b", str(tmp_path / "b.bit"),
                      "-o", str(tmp_path / "r.safetensors"), *cfg])
    whole = _peak(["nntm.apps.encoder", "-i", str(npz), "-b", str(tmp_path / "n.bit"), *cfg])
    assert whole - base > model_bytes  # the measure sees a model held whole
    assert streamed - base < model_bytes / 4, (base, streamed, whole)
    decoded = _peak(["nntm.apps.decoder", "-b", str(tmp_path / "b.bit"), "-o",
                     str(tmp_path / "d.safetensors"), "--Threads=2", "--Verbose=0"])
    assert decoded - base < model_bytes / 4, (base, decoded)
    assert (tmp_path / "d.safetensors").read_bytes() == \
        (tmp_path / "r.safetensors").read_bytes()


def test_rate_control_and_refmodel_work_on_a_mapped_model(tmp_path: Path, capsys) -> None:
    """Rate control samples rows of the mapped tensors; a RefModel is mapped too."""
    model = _model(6)
    folder = tmp_path / "ckpt"
    _write_sharded(folder, model, 2)
    bit = tmp_path / "m.bit"
    assert encoder.main(["-c", str(DEFAULT), "-i", str(folder), "-b", str(bit),
                         "--TargetBitsPerParam=4", "--Threads=2"]) == 0
    assert "Rate control  : target 4.000" in capsys.readouterr().out
    ref = tmp_path / "ref.safetensors"
    write_model(ref, {k: v + np.float32(0.001) if v.dtype == np.float32 else v
                      for k, v in model.items()})
    upd = tmp_path / "u.bit"
    assert encoder.main(["-c", str(ANCHOR), "-i", str(folder), "-b", str(upd),
                         f"--RefModel={ref}", "--InterPred=1", "--Threads=2"]) == 0
    assert "Q>R" in capsys.readouterr().out
    out = tmp_path / "d.safetensors"
    assert decoder.main(["-b", str(upd), "-o", str(out), f"--RefModel={ref}"]) == 0
    assert list(read_model(out)) == list(streamio.open_model(folder))


STREAMS = sorted((ROOT / "bitstreams").glob("*.bit"))


def _both(data: bytes, path: Path) -> tuple[object, object]:
    """decode_detailed (Python) and decode_file on the same bytes: (reports, stream_ok) or
    the error."""
    path.write_bytes(data)
    out = []
    for run in (lambda: codec.decode_detailed(data, decoder="python"),
                lambda: streaming.decode_file(str(path), keep=True, threads=2).result):
        try:
            res = run()
            out.append(([(r.name, r.md5, r.data_ok, r.params_ok) for r in res.reports],
                        res.stream_ok, {k: v.tobytes() for k, v in res.tensors.items()}))
        except Exception as exc:  # noqa: BLE001 - the type is compared
            out.append(type(exc))
    return out[0], out[1]


@pytest.mark.parametrize("stream", STREAMS, ids=[p.stem for p in STREAMS])
def test_streaming_decoder_equals_decode_detailed(stream: Path, tmp_path: Path) -> None:
    data = stream.read_bytes()
    whole, streamed = _both(data, tmp_path / "s.bit")
    assert whole == streamed
    rng = np.random.default_rng(len(data))
    for _ in range(6):  # changed streams: the same verdicts (or the same kind of error)
        bad = bytearray(data)
        pos = int(rng.integers(len(bad)))
        bad[pos] ^= 1 << int(rng.integers(8))
        whole, streamed = _both(bytes(bad), tmp_path / "b.bit")
        assert whole == streamed, pos
    whole, streamed = _both(data[:len(data) // 2], tmp_path / "t.bit")
    assert whole == streamed


@pytest.mark.parametrize("threads", [1, 2])
def test_decoder_reads_data_units_as_it_decodes(threads: int, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The decoder holds the payloads of the tensors in flight, not of the stream: when the
    first tensor is handed out, few data units have been read."""
    model = {f"t{i}": np.full((64, 64), 0.01 * i, dtype=np.float32) for i in range(24)}
    path = tmp_path / "m.bit"
    path.write_bytes(codec.encode(model, nntm.Config.from_files([DEFAULT])))
    read: list[int] = []
    real = streaming._data_unit

    def counting(buf: object, ref: object) -> tuple[int, bytes]:
        read.append(1)
        return real(buf, ref)
    monkeypatch.setattr(streaming, "_data_unit", counting)
    seen: list[int] = []
    streaming.decode_file(str(path), on_tensor=lambda n, a: seen.append(len(read)),
                          threads=threads, window_elements=64 * 64)
    assert len(seen) == len(model) and len(read) == len(model)
    assert seen[0] <= 2, seen  # the window holds one tensor (and the one being read)


_RSS_FILE_PROBE = r"""
import sys
import numpy as np
import nntm
from nntm import streaming

def rss_file():
    for line in open("/proc/self/status"):
        if line.startswith("RssFile:"):
            return int(line.split()[1]) * 1024
    raise SystemExit("no RssFile")

if sys.argv[2] == "0":
    streaming.RELEASE_BYTES = 1 << 62   # never release: the whole stream stays resident
base = rss_file()
peak = [0]
def on_tensor(name, array):
    peak[0] = max(peak[0], rss_file() - base)
streaming.decode_file(sys.argv[1], on_tensor=on_tensor, threads=1)
print(peak[0])
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_streaming_decoder_gives_back_the_mapped_stream(tmp_path: Path) -> None:
    """The mapped stream's pages are released as the decoder passes them: the file-backed
    resident size stays about RELEASE_BYTES, not the 64 MB stream (fails without _release)."""
    rng = np.random.default_rng(5)
    model = {f"t{i:02d}": rng.integers(-2**31, 2**31 - 1, 1 << 18, dtype=np.int32)
             for i in range(64)}
    path = tmp_path / "ints.bit"
    path.write_bytes(nntm.encode(model, nntm.Config.from_files([DEFAULT])))
    assert path.stat().st_size > 64 << 20
    peaks = []
    for release in ("1", "0"):
        run = subprocess.run([sys.executable, "-c", _RSS_FILE_PROBE, str(path), release],
                             capture_output=True, text=True, check=True)
        peaks.append(int(run.stdout.split()[-1]))
    assert peaks[0] < 32 << 20 < 48 << 20 < peaks[1], peaks


def test_long_head_tensor_does_not_stall_the_encoders_other_thread() -> None:
    """The encoder's pool keeps coding the small tensors after a long one at the head: a
    model of one long tensor and 100 small ones (as MiniLM's word embedding beside its
    layers).  The head job finishes only once all the small ones have run; with the
    decoder's limit (16 jobs a thread) the pool stops submitting after 32 and the head job
    times out."""
    import threading

    def run(max_in_flight: int) -> bool:
        done, event, lock = [0], threading.Event(), threading.Lock()
        results: list[object] = []

        def head() -> bool:
            return event.wait(timeout=3.0)

        def small() -> int:
            with lock:
                done[0] += 1
                if done[0] == 100:
                    event.set()
            return 0

        with streaming._OrderedPool(2, 1 << 20, results.append, max_in_flight) as pool:
            pool.submit(1, head)
            for _ in range(100):
                pool.submit(1, small)
            pool.drain()
        assert len(results) == 101
        return bool(results[0])

    assert run(streaming.ENCODE_MAX_IN_FLIGHT)
    assert not run(streaming.MAX_IN_FLIGHT)
