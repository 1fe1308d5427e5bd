"""Entry points [1.8]: substreams of whole rows, each parsed on its own (docs/bitstream.md
clauses 3.5, 4.5, 5.2.9): the C kernel decodes them on several threads with the same
output, refuses sizes that do not fit, and the encoder writes them above EntryPointElements."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import nntm
import numpy as np
import pytest
from nntm import codec, core, cstream, hls
from nntm.config import Config
from nntm.errors import CoreError

ROOT = Path(__file__).resolve().parents[1]


def _params(rows: int, cols: int, sub: int, dq: int = 3, row_pred: int = 0) -> core.KernelParams:
    return core.KernelParams(rows, cols, -28, 2, 10, core.TreeParams(), dq, 10, 1, row_pred, sub)


def _weights(rows: int, cols: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = np.cumsum(rng.normal(0, 0.01, (rows, cols)), axis=0) + rng.normal(0, 0.05, (1, cols))
    return w.astype(np.float32)


@pytest.mark.parametrize("row_pred", [0, 1])
@pytest.mark.parametrize("dq", [0, 3])
def test_threads_do_not_change_the_output(dq: int, row_pred: int) -> None:
    w = _weights(300, 200)
    p = _params(300, 200, 7, dq, row_pred)
    enc = core.encode_kernel(w, p, np.float32, True, 0.1, "t")
    for threads in (1, 2, 5):
        dec = core.decode_kernel(enc.payload, p, np.float32, "t", threads=threads)
        assert np.array_equal(dec.recon.view(np.uint32), enc.recon.view(np.uint32))
        assert np.array_equal(dec.levels, enc.levels)


def test_substreams_are_independent_and_cost_little() -> None:
    """A substream restarts the contexts: the same rows coded alone give the same bytes; a
    few substreams cost well under a percent."""
    w = _weights(256, 128)
    one = core.encode_kernel(w, _params(256, 128, 0), np.float32, True, 0.1, "t").payload
    four = core.encode_kernel(w, _params(256, 128, 64), np.float32, True, 0.1, "t").payload
    assert four != one
    assert len(four) < 1.02 * len(one)
    # the last substream is the rows 192..255 coded as a tensor of their own
    tail = core.encode_kernel(w[192:], _params(64, 128, 0), np.float32, True, 0.1, "t").payload
    assert four.endswith(tail)


def _payload() -> tuple[bytes, core.KernelParams]:
    p = _params(40, 30, 10)
    return core.encode_kernel(_weights(40, 30), p, np.float32, True, 0.1, "t").payload, p


def _decode(payload: bytes, p: core.KernelParams) -> None:
    core.decode_kernel(payload, p, np.float32, "t", threads=2)


def test_sizes_that_overrun_the_payload_are_refused() -> None:
    payload, p = _payload()
    _decode(payload, p)
    with pytest.raises(CoreError):  # the sizes alone, no substream
        _decode(payload[:3], p)
    with pytest.raises(CoreError):  # the last substream cut short
        _decode(payload[:-1], p)
    with pytest.raises(CoreError):  # a byte left over in the last substream
        _decode(payload + b"\x00", p)
    bad = bytearray(payload)
    bad[0:3] = b"\x00\x00\x01"  # ue(v) with 23 leading zeros: a size past the payload
    with pytest.raises(CoreError):
        _decode(bytes(bad), p)


def test_tree_tensors_keep_one_substream() -> None:
    p = core.KernelParams(16, 16, -28, 2, 4, core.TreeParams(True, 3, 2, 1, 1), 0, 0, 0, 0, 4)
    with pytest.raises(CoreError):
        core.encode_kernel(_weights(16, 16), p, np.float32, True, 0.1, "t")


def test_substream_rows_rule() -> None:
    assert codec.substream_rows(100, 100, 0) == 0
    assert codec.substream_rows(100, 100, 10000) == 0      # not above the threshold
    assert codec.substream_rows(100, 100, 2049) == 20      # rounded to whole rows
    assert codec.substream_rows(10, 5000, 100) == 1        # at least one row


def test_encoder_sets_the_tool_only_when_a_tensor_is_split() -> None:
    model = {"big.weight": _weights(64, 64), "small.weight": _weights(8, 8)}
    cfg = Config.defaults().replace(EntryPointElements=1024)
    data = nntm.encode(model, cfg)
    units = hls.split_units(data)
    mps = hls.parse_model_parameter_set(units[0])
    assert mps.tool_flags & hls.TOOL_ENTRY_POINTS and mps.version_minor == 8
    tps = {t.name: t for t in (hls.parse_tensor_parameter_set(u, mps) for u in units
                               if u.unit_type == hls.UnitType.TENSOR_PARAMETER_SET)}
    assert tps["big.weight"].substream_rows == 16 and tps["small.weight"].substream_rows == 0
    out = nntm.decode(data)
    cfg = cfg.replace(EntryPointElements=0)
    plain = nntm.decode(nntm.encode(model, cfg))
    assert hls.parse_model_parameter_set(hls.split_units(nntm.encode(model, cfg))[0]
                                         ).version_minor < 8
    assert set(out) == set(plain)


def test_nntm_dec_threads_give_the_same_bytes(tmp_path: Path) -> None:
    prog = ROOT / "build" / "nntm-dec"
    if not prog.exists():
        pytest.skip("build/nntm-dec not built (cmake -S . -B build && cmake --build build)")
    outs = []
    for threads in (1, 2, 4):
        out = tmp_path / f"t{threads}.safetensors"
        subprocess.run([str(prog), "-b", str(ROOT / "bitstreams" / "EP_A_1.bit"), "-o",
                        str(out), "--threads", str(threads)], check=True, capture_output=True)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] == outs[2]


def test_nntm_dec_runs_at_most_n_threads_at_once(tmp_path: Path) -> None:
    """--threads N: N tensors at once, each with 16 substreams, yet at most N threads decode
    at once (the -v Threads line: the library's count of the threads between their start and
    end, apart from its slots; before the shared budget each of the N tensors had N substream
    threads, N * N at once), and the bytes do not depend on N."""
    prog = ROOT / "build" / "nntm-dec"
    if not prog.exists():
        pytest.skip("build/nntm-dec not built (cmake -S . -B build && cmake --build build)")
    rng = np.random.default_rng(3)
    model = {f"l{i}.weight": np.cumsum(rng.normal(0, 0.01, (256, 384)), axis=0)
             .astype(np.float32) for i in range(6)}
    bit = tmp_path / "ep.bit"
    bit.write_bytes(nntm.encode(model, Config.defaults().replace(EntryPointElements=6144)))
    outs = []
    for threads in (1, 2, 3):
        out = tmp_path / f"t{threads}.safetensors"
        proc = subprocess.run([str(prog), "-b", str(bit), "-o", str(out), "-v", "--threads",
                               str(threads)], check=True, capture_output=True, text=True)
        found = re.search(r"^Threads +: (\d+) tensors at once, at most (\d+) threads decoding "
                          r"at once$", proc.stdout, re.M)
        assert found, proc.stdout
        assert int(found.group(1)) == threads and 1 <= int(found.group(2)) <= threads, \
            proc.stdout
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] == outs[2]


@pytest.mark.parametrize(("dq", "rdoq", "mapped"), [(0, False, False), (0, True, True),
                                                   (3, True, False), (3, True, True)])
def test_encoder_threads_give_the_same_bytes(dq: int, rdoq: bool, mapped: bool) -> None:
    """The substreams of a raster tensor are quantized and written on several threads, with
    or without a shared budget, into the same bytes, levels and reconstruction as on one."""
    w = _weights(300, 200)
    imp = np.random.default_rng(2).random(w.shape).astype(np.float32) if mapped else None
    p = _params(300, 200, 7, dq)
    one = core.encode_kernel(w, p, np.float32, rdoq, 0.1, "t", importance=imp)
    assert len(one.payload) > 0
    with cstream.ThreadBudget(2) as budget:
        searches = [core.SearchParams(threads=t) for t in (2, 3, 64)] + \
            [core.SearchParams(threads=2, budget=budget)]
        for search in searches:
            enc = core.encode_kernel(w, p, np.float32, rdoq, 0.1, "t", search, importance=imp)
            assert enc.payload == one.payload
            assert np.array_equal(enc.levels, one.levels)
            assert np.array_equal(enc.recon.view(np.uint32), one.recon.view(np.uint32))
        # the caller's slot and one recruited: both ran at once on 43 substreams
        assert budget.peak == 2
    dec = core.decode_kernel(one.payload, p, np.float32, "t", threads=2)
    assert np.array_equal(dec.recon.view(np.uint32), one.recon.view(np.uint32))


def test_encoder_threads_report_a_level_out_of_range_the_same() -> None:
    """A weight beyond the largest level in one substream: the same error on any count."""
    w = _weights(300, 200)
    w[250, 3] = 3.0e9
    p = core.KernelParams(300, 200, -40, 2, 10, substream_rows=7)
    for threads in (1, 2, 4):
        with pytest.raises(CoreError, match="level out of range"):
            core.encode_kernel(w, p, np.float32, True, 0.1, "t", core.SearchParams(threads=threads))


def test_encoder_budget_bounds_the_threads_of_concurrent_tensors() -> None:
    """Three tensors coded at once from three threads under a budget of 2, each with 43
    substreams and threads 4: at most 2 threads coded at once, and the bytes are one
    thread's."""
    from concurrent.futures import ThreadPoolExecutor
    ws = [_weights(300, 200, seed) for seed in (1, 2, 3)]
    p = _params(300, 200, 7, 3)
    alone = [core.encode_kernel(w, p, np.float32, True, 0.1, "t").payload for w in ws]
    with cstream.ThreadBudget(2) as budget:
        search = core.SearchParams(threads=4, budget=budget)
        with ThreadPoolExecutor(3) as pool:
            got = list(pool.map(lambda w: core.encode_kernel(w, p, np.float32, True, 0.1, "t",
                                                             search).payload, ws))
        assert 1 <= budget.peak <= 2
    assert got == alone


def test_model_encode_threads_give_the_same_stream() -> None:
    """encode_with_recon and encode_file on 1 and 3 threads: the same stream; the plan's
    search is left as it was."""
    import io

    from nntm import streaming
    rng = np.random.default_rng(5)
    model = {f"l{i}.weight": np.cumsum(rng.normal(0, 0.01, (256, 96 + 32 * i)), axis=0)
             .astype(np.float32) for i in range(4)}
    model["l0.bias"] = rng.normal(0, 0.1, 96).astype(np.float32)
    cfg = Config.defaults().replace(EntryPointElements=4096)
    one = codec.encode_with_recon(model, cfg)
    seen: list[str] = []
    three = codec.encode_with_recon(model, cfg, progress=lambda s: seen.append(s.name),
                                    threads=3)
    assert three.data == one.data
    assert seen == list(model)
    for name in model:
        assert np.array_equal(three.recon[name].view(np.uint32), one.recon[name].view(np.uint32))
    out = io.BytesIO()
    streaming.encode_file(model, cfg, out, threads=3)
    assert out.getvalue() == one.data
    plan = codec.plan_model(model, cfg)
    before = plan.search
    with codec.share_threads(plan, 2) as workers:
        assert workers == 2 and plan.search.threads == 2 and plan.search.budget is not None
    assert plan.search is before
