"""Integrity hashes (format 1.6) and the decoder's memory budget (issue #19, items 2 and 3).

With TOOL_INTEGRITY a hash unit carries the MD5 of its tensor's parameter set unit and the end
of stream the MD5 of every unit before it: a changed name, dtype or shape is caught, and so is
any single flipped bit.  A stream without them (format 1.5, IntegrityHash 0) is shown to let
the same changes through, so that these tests fail if the checks stop working.
"""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from nntm import codec, hls, memory
from nntm.apps import decoder
from nntm.config import Config
from nntm.errors import BitstreamError, HashMismatchError, NntmError

ROOT = Path(__file__).resolve().parents[1]
BOMBS = ROOT / "tests" / "data" / "bombs"


def _model() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    return {
        "conv2.weight": rng.normal(0, 0.1, (6, 4, 3, 3)).astype(np.float32),
        "fc.weight": rng.normal(0, 0.1, (10, 24)).astype(np.float32),
        "fc.bias": rng.normal(0, 0.1, (10,)).astype(np.float32),
        "steps": np.array([12345678901234], dtype=np.int64),
    }


def _stream(integrity: bool) -> bytes:
    return codec.encode(_model(), Config.defaults().replace(IntegrityHash=integrity))


def _rewrite_tps(data: bytes, target: str, **change: object) -> bytes:
    """The stream with one tensor's parameter set re-written (the hash units kept)."""
    units = hls.split_units(data)
    mps = hls.parse_model_parameter_set(units[0])
    out = []
    for u in units:
        raw = data[u.offset:u.offset + hls.UNIT_HEADER_BYTES + len(u.payload)]
        if u.unit_type == hls.UnitType.TENSOR_PARAMETER_SET:
            tps = hls.parse_tensor_parameter_set(u, mps)
            if tps.name == target:
                for key, value in change.items():
                    setattr(tps, key, value)
                raw = hls.tensor_parameter_set(tps, mps.tool_flags)
        out.append(raw)
    return b"".join(out)


def _outcome(data: bytes) -> str:
    try:
        got = codec.decode(data)
    except HashMismatchError:
        return "mismatch"
    except NntmError:
        return "error"
    want = codec.decode(_stream(True))
    same = list(got) == list(want) and all(
        got[k].dtype == want[k].dtype and got[k].shape == want[k].shape
        and got[k].tobytes() == want[k].tobytes() for k in got)
    return "identical" if same else "CHANGED"


def test_integrity_is_the_default_and_costs_16_bytes_a_tensor_and_16_a_stream() -> None:
    with_hashes, without = _stream(True), _stream(False)
    mps = hls.parse_model_parameter_set(hls.split_units(with_hashes)[0])
    assert mps.tool_flags & hls.TOOL_INTEGRITY and (mps.version_major, mps.version_minor) == (1, 6)
    assert len(with_hashes) - len(without) == 16 * len(_model()) + 16
    result = codec.decode_detailed(with_hashes)
    assert result.ok and result.stream_ok is True
    assert all(r.params_ok is True and r.data_ok for r in result.reports)
    assert result.checks == ["tensor data MD5", "tensor parameter set MD5", "stream MD5"]
    old = codec.decode_detailed(without)
    assert old.ok and old.stream_ok is None and all(r.params_ok is None for r in old.reports)
    assert old.checks == ["tensor data MD5"]


@pytest.mark.parametrize("change", [
    {"name": "conv3.weight"},                # a renamed tensor
    {"shape": (10, 4, 6)},                   # the same kernel tensor, another shape
])
def test_a_changed_name_or_shape_is_caught(change: dict[str, object]) -> None:
    target = "fc.weight"
    assert _outcome(_rewrite_tps(_stream(False), target, **change)) == "CHANGED"  # the old hole
    bad = _rewrite_tps(_stream(True), target, **change)
    with pytest.raises(HashMismatchError, match="parameter set MD5 mismatch") as info:
        codec.decode(bad)
    assert "stream MD5 mismatch" in str(info.value)
    result = codec.decode_detailed(bad)
    renamed = [r for r in result.reports if r.params_ok is False]
    assert len(renamed) == 1 and renamed[0].data_ok and not renamed[0].ok


def test_a_flipped_dtype_is_caught() -> None:
    # int64 -> float64 (tensor_dtype 7 -> 3): 12345678901234 would read as 6.1e-311
    change = {"dtype": np.dtype(np.float64)}
    assert _outcome(_rewrite_tps(_stream(False), "steps", **change)) == "CHANGED"
    with pytest.raises(HashMismatchError, match="parameter set MD5 mismatch for|in tensor"):
        codec.decode(_rewrite_tps(_stream(True), "steps", **change))


def test_a_changed_model_parameter_set_is_caught_by_the_stream_md5() -> None:
    for integrity in (False, True):
        data = bytearray(_stream(integrity))
        units = hls.split_units(bytes(data))
        mps = hls.parse_model_parameter_set(units[0])
        mps.source_format = hls.SourceFormat.NPZ  # decoded as npz by DecoderApp's auto
        new_mps = hls.model_parameter_set(mps)
        assert len(new_mps) == hls.UNIT_HEADER_BYTES + len(units[0].payload)
        data[:len(new_mps)] = new_mps
        result = codec.decode_detailed(bytes(data))
        assert result.source_format == hls.SourceFormat.NPZ
        assert result.ok is (not integrity)
        assert result.stream_ok is (False if integrity else None)


def test_every_single_bit_flip_is_an_error_or_a_mismatch() -> None:
    data = codec.encode({"w": np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4),
                         "n": np.array([7], dtype=np.int16)},
                        Config.defaults().replace(IntegrityHash=True))
    seen = {"error": 0, "mismatch": 0}
    for bit in range(8 * len(data)):
        bad = bytearray(data)
        bad[bit // 8] ^= 0x80 >> (bit % 8)
        try:
            codec.decode(bytes(bad))
        except HashMismatchError:
            seen["mismatch"] += 1
        except BitstreamError:
            seen["error"] += 1
        else:
            pytest.fail(f"bit {bit} flipped: the stream still decodes with every check passing")
    assert seen["mismatch"] > 0 and seen["error"] > 0


def test_decoder_app_says_which_checks_a_stream_carried(capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    assert decoder.main(["-b", str(ROOT / "bitstreams" / "BASE_A_1.bit")]) == 0
    out = capsys.readouterr().out
    assert "format 1.0" in out and "tensor data MD5 only" in out
    assert decoder.main(["-b", str(ROOT / "bitstreams" / "INTEGRITY_A_1.bit")]) == 0
    out = capsys.readouterr().out
    assert "format 1.6" in out
    assert "tensor data MD5, tensor parameter set MD5, stream MD5 [stream MD5: " in out
    assert "OK]" in out.split("Checks")[1]


def test_decoder_app_fails_on_a_renamed_tensor(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    bit = tmp_path / "renamed.bit"
    bit.write_bytes(_rewrite_tps(_stream(True), "fc.weight", name="fc.weights"))
    out = tmp_path / "out.safetensors"
    assert decoder.main(["-b", str(bit), "-o", str(out)]) != 0
    text = capsys.readouterr()
    assert "parameter set MISMATCH" in text.out and "MISMATCH]" in text.out.split("Checks")[1]
    assert "no output written" in text.err and not out.exists()


# ---------------------------------------------------------------- memory budget


@pytest.mark.parametrize("name", ["bomb_one_16k.bit", "bomb_four_16k.bit",
                                  "bomb_twelve_8k.bit"])
def test_bombs_are_refused_at_once_without_allocating(name: str) -> None:
    data = (BOMBS / name).read_bytes()
    assert len(data) < 2000
    units = hls.split_units(data)
    mps = hls.parse_model_parameter_set(units[0])
    announced = sum(hls.parse_tensor_parameter_set(u, mps).num_elements * 4 for u in units
                    if u.unit_type == hls.UnitType.TENSOR_PARAMETER_SET)
    assert announced >= 1 << 30  # each announces at least 1 GiB of float32 zeros
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(memory.MemoryBudgetError, match="MaxExpansion"):
            codec.decode(data)
        with pytest.raises(memory.MemoryBudgetError, match="MaxMemory"):
            codec.decode(data, max_memory=512 << 20, max_expansion=1 << 40)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, peak  # nothing of the tensors was allocated
    assert time.perf_counter() - start < 5.0


def test_the_budget_admits_ordinary_models_and_names_its_options(
        capsys: pytest.CaptureFixture[str]) -> None:
    data = (ROOT / "bitstreams" / "BASE_A_1.bit").read_bytes()
    assert codec.decode_detailed(data).ok  # default limits
    need = memory.estimate(len(data), [
        hls.parse_tensor_parameter_set(u, hls.parse_model_parameter_set(hls.split_units(data)[0]))
        for u in hls.split_units(data) if u.unit_type == hls.UnitType.TENSOR_PARAMETER_SET])
    codec.decode(data, max_memory=need)  # the estimate itself is enough
    with pytest.raises(memory.MemoryBudgetError):
        codec.decode(data, max_memory=need - 1)
    assert decoder.main(["-b", str(BOMBS / "bomb_one_16k.bit")]) != 0
    err = capsys.readouterr().err
    assert "MaxExpansion" in err and "148 bytes" in err
    assert decoder.main(["-b", str(BOMBS / "bomb_one_16k.bit"), "--MaxExpansion=1099511627776",
                         "--MaxMemory=1G"]) != 0
    err = capsys.readouterr().err
    assert "MaxMemory" in err and "1.0 GiB" in err


def test_a_predicted_tensor_does_not_count_as_expansion() -> None:
    ref = {"w": np.random.default_rng(3).normal(0, 0.1, (64, 64)).astype(np.float32)}
    data = codec.encode_with_recon(ref, Config.defaults(), ref_model=ref).data
    assert codec.decode(data, ref_model=ref, max_expansion=1).keys() == ref.keys()
    with pytest.raises(memory.MemoryBudgetError):  # the same tensor coded without prediction
        codec.decode(codec.encode(ref, Config.defaults()), max_expansion=1)


def test_parse_size_and_a_bad_max_memory(capsys: pytest.CaptureFixture[str]) -> None:
    assert memory.parse_size("1536") == 1536
    assert memory.parse_size("2K") == 2048 and memory.parse_size("1.5G") == 3 << 29
    assert memory.parse_size("4 GiB") == 4 << 30 and memory.parse_size("auto") > 0
    for bad in ("", "-1", "0", "12X", "lots"):
        with pytest.raises(ValueError):
            memory.parse_size(bad)
    assert decoder.main(["-b", str(ROOT / "bitstreams" / "BASE_A_1.bit"),
                         "--MaxMemory=lots"]) != 0
    assert "MaxMemory: 'lots' is not a size" in capsys.readouterr().err


def test_c_scratch_matches_the_decoder_maps() -> None:
    from nntm import core

    raster = core.KernelParams(100, 30, -20, 2, 4)
    assert core.decode_scratch_bytes(raster) == 0
    tree = core.KernelParams(100, 30, -20, 2, 4, core.TreeParams(True, 4, 4, 2, 2))
    assert core.decode_scratch_bytes(tree) == 3000 * 6
