"""Tests of EncoderApp and DecoderApp, run in-process through their main(argv)."""

from __future__ import annotations

import hashlib
import re
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from nntm import codec, hls
from nntm.apps import decoder, encoder
from nntm.example import EXAMPLE_MODEL_PATH, TENSOR_NAMES, accuracy
from nntm.modelio import read_model, write_model
from nntm.options import DECODER_OPTIONS, ENCODER_OPTIONS

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CFG = ROOT / "cfg" / "encoder_default.cfg"
MD5_LINE = re.compile(r"^(?P<name>\S+)\s.*\[MD5: (?P<md5>[0-9a-f]{32}) (?P<status>\w+)\]\s*$", re.M)


def run(main: Callable[[Sequence[str]], int], argv: Sequence[str]) -> int:
    """The exit status of an app, whether it returns it or raises SystemExit."""
    try:
        return main(list(argv))
    except SystemExit as exc:
        return 0 if exc.code is None else int(exc.code) if isinstance(exc.code, int) else 1


def md5_file(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def tensor_md5(array: np.ndarray) -> str:
    return hashlib.md5(np.ascontiguousarray(array).tobytes()).hexdigest()


def leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def check_round_trip(capsys: pytest.CaptureFixture[str], folder: Path, model_path: Path | None,
                     recon_name: str, decoded_name: str, extra: Sequence[str] = ()) -> str:
    """Encode (with -o recon) and decode (with -o); check the reports; return encoder stdout."""
    bit = folder / "model.bit"
    recon = folder / recon_name
    decoded = folder / decoded_name
    args = ["-b", str(bit), "-o", str(recon), *extra]
    if model_path is not None:
        args += ["-i", str(model_path)]
    assert run(encoder.main, args) == 0, capsys.readouterr().err
    enc = capsys.readouterr()
    assert enc.err == ""
    source = read_model(model_path if model_path is not None else EXAMPLE_MODEL_PATH)
    # one line per tensor, in order: name, shape, then the numbers
    lines = [ln for ln in enc.out.splitlines() if ln.split() and ln.split()[0] in source]
    assert [ln.split()[0] for ln in lines] == list(source), enc.out
    for line in lines:
        name = line.split()[0]
        shape = "x".join(map(str, source[name].shape)) or "scalar"
        assert line.split()[1] == shape, line

    assert run(decoder.main, ["-b", str(bit), "-o", str(decoded)]) == 0, capsys.readouterr().err
    dec = capsys.readouterr()
    assert dec.err == ""
    reports = [m.groupdict() for m in MD5_LINE.finditer(dec.out)]
    assert [r["name"] for r in reports] == list(source), dec.out
    assert all(r["status"] == "OK" for r in reports)
    # the decoded file is the encoder's reconstruction, byte for byte
    assert md5_file(decoded) == md5_file(recon)
    tensors = read_model(decoded)
    assert list(tensors) == list(source)
    for r in reports:
        t = tensors[r["name"]]
        assert r["md5"] == tensor_md5(t), r["name"]  # the printed MD5 is the tensor's
        assert t.dtype == source[r["name"]].dtype and t.shape == source[r["name"]].shape
    return enc.out


# ------------------------------------------------------------------ bundled example


def test_bundled_example_round_trip(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = check_round_trip(capsys, tmp_path, None, "recon.safetensors", "decoded.safetensors",
                           ["-c", str(DEFAULT_CFG)])
    assert "bundled example" in out and "Test accuracy" in out
    assert "Coding units" not in out  # no coding tree in the default cfg
    assert [ln.split()[0] for ln in out.splitlines() if ln.split() and
            ln.split()[0] in TENSOR_NAMES] == list(TENSOR_NAMES)
    assert leftovers(tmp_path, {"model.bit", "recon.safetensors", "decoded.safetensors"}) == []


def test_bundled_example_rate_and_accuracy_at_default_cfg(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bit = tmp_path / "digits.bit"
    recon = tmp_path / "recon.safetensors"
    decoded = tmp_path / "decoded.safetensors"
    argv = ["-c", str(DEFAULT_CFG), "-b", str(bit), "-o", str(recon), "--Verbose=0"]
    assert run(encoder.main, argv) == 0, capsys.readouterr().err
    assert run(decoder.main, ["-b", str(bit), "-o", str(decoded), "--Verbose=0"]) == 0
    original = read_model(EXAMPLE_MODEL_PATH)
    float32_bytes = 4 * sum(int(x.size) for x in original.values())
    # the default keeps models working (about 7 bits/param on this small CNN): under 1/4
    assert bit.stat().st_size <= float32_bytes / 4, (bit.stat().st_size, float32_bytes)
    before = accuracy(original)
    after = accuracy(read_model(decoded))
    assert before > 90.0
    assert abs(after - before) <= 0.5, (before, after)
    assert accuracy(read_model(recon)) == after


# ------------------------------------------------------------------ random models


def random_model(with_bf16: bool) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(99)
    model = {
        "features.0.weight": rng.normal(0.0, 0.1, (8, 3, 3, 3)).astype(np.float32),
        "features.0.bias": rng.normal(0.0, 0.05, (8,)).astype(np.float32),
        "classifier.weight": rng.normal(0.0, 0.1, (10, 37)).astype(np.float16),
        "classifier.bias": rng.normal(0.0, 0.05, (10,)).astype(np.float64),
        "bn.num_batches_tracked": np.array([123], dtype=np.int64),
        "mask": rng.random((3, 5)) < 0.5,
        "empty": np.zeros((0, 4), dtype=np.float32),
    }
    if with_bf16:
        model["embed.weight"] = rng.normal(0.0, 0.2, (5, 16)).astype(ml_dtypes.bfloat16)
    return model


def test_random_safetensors_model(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "random.safetensors"
    write_model(path, random_model(with_bf16=True))
    check_round_trip(capsys, tmp_path, path, "recon.safetensors", "decoded.safetensors")
    assert read_model(tmp_path / "decoded.safetensors")["embed.weight"].dtype == np.dtype(
        ml_dtypes.bfloat16)


def test_random_npz_model_gives_npz(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "random.npz"
    np.savez(path, **random_model(with_bf16=False))
    check_round_trip(capsys, tmp_path, path, "recon.npz", "decoded.npz",
                     ["--QP=-32", "--RDOQ=0"])
    decoded = tmp_path / "decoded.npz"
    assert zipfile.is_zipfile(decoded)
    with np.load(decoded) as npz:  # a plain numpy npz
        assert list(npz.keys()) == list(random_model(with_bf16=False))


def test_output_format_auto_follows_the_input(capsys: pytest.CaptureFixture[str],
                                              tmp_path: Path) -> None:
    path = tmp_path / "random.npz"
    np.savez(path, **random_model(with_bf16=False))
    bit = tmp_path / "m.bit"
    assert run(encoder.main, ["-i", str(path), "-b", str(bit), "--Verbose=0"]) == 0
    # an -o without a model extension is refused (it once got bytes of a format it did not
    # name, issue #19); a named extension is written in that format
    out = tmp_path / "decoded_model"
    status = run(decoder.main, ["-b", str(bit), "-o", str(out), "--OutputFormat=auto"])
    assert status != 0 and "names no format" in capsys.readouterr().err
    assert not out.exists()
    out = tmp_path / "decoded_model.npz"
    status = run(decoder.main, ["-b", str(bit), "-o", str(out), "--OutputFormat=auto"])
    assert status == 0, capsys.readouterr().err
    assert zipfile.is_zipfile(out)


def test_recon_file_equals_decoded_file_with_a_scalar(capsys: pytest.CaptureFixture[str],
                                                      tmp_path: Path) -> None:
    """Regression: the -o reconstruction of a 0-d tensor had shape [1], the decoded one []."""
    path = tmp_path / "scalar.npz"
    np.savez(path, w=np.ones((4, 4), np.float32), temperature=np.array(2.5, np.float32))
    bit, recon, decoded = tmp_path / "m.bit", tmp_path / "r.npz", tmp_path / "d.npz"
    assert run(encoder.main, ["-i", str(path), "-b", str(bit), "-o", str(recon)]) == 0
    assert run(decoder.main, ["-b", str(bit), "-o", str(decoded)]) == 0
    assert read_model(recon)["temperature"].shape == ()
    assert md5_file(recon) == md5_file(decoded)


# ------------------------------------------------------------------ command line


@pytest.mark.parametrize("app, table", [(encoder, ENCODER_OPTIONS), (decoder, DECODER_OPTIONS)],
                         ids=["encoder", "decoder"])
def test_help_lists_every_key(capsys: pytest.CaptureFixture[str], app: object,
                              table: Sequence[object]) -> None:
    for flag in ("--help", "-h"):
        assert run(app.main, [flag]) == 0  # type: ignore[attr-defined]
        text = capsys.readouterr().out
        for opt in table:
            assert f"--{opt.key}=" in text, opt.key  # type: ignore[attr-defined]


def test_unknown_key_suggests_the_right_one(capsys: pytest.CaptureFixture[str],
                                            tmp_path: Path) -> None:
    bit = tmp_path / "x.bit"
    assert run(encoder.main, ["--Qp=3", "-b", str(bit)]) != 0
    err = capsys.readouterr().err
    assert "Qp" in err and "--QP" in err
    assert not bit.exists()
    assert run(decoder.main, ["--OutputFle=x.npz", "-b", str(bit)]) != 0
    assert "--OutputFile" in capsys.readouterr().err


def test_bad_parameters_are_reported_together(capsys: pytest.CaptureFixture[str],
                                              tmp_path: Path) -> None:
    argv = ["--Qp=3", "--RDOQ=maybe", "--NumGtFlags=99", "--LambdaScale=abc",
            "--NonFiniteWeights=ignore", "-b", str(tmp_path / "x.bit")]
    assert run(encoder.main, argv) != 0
    err = capsys.readouterr().err
    assert err.count("error:") == 1, err  # one message
    for word in ("Qp", "maybe", "NumGtFlags", "99", "LambdaScale", "abc", "NonFiniteWeights"):
        assert word in err, (word, err)
    assert leftovers(tmp_path, set()) == []


def test_app_level_problems_are_reported_together(capsys: pytest.CaptureFixture[str],
                                                  tmp_path: Path) -> None:
    missing = tmp_path / "nope.safetensors"
    argv = ["-i", str(missing), "-o", str(tmp_path / "recon.bin")]  # and no -b
    assert run(encoder.main, argv) != 0
    err = capsys.readouterr().err
    assert err.count("error:") == 1, err
    assert "BitstreamFile" in err and str(missing) in err and "recon.bin" in err


def test_all_bad_parameters_in_one_message(capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    missing = tmp_path / "nope.safetensors"
    assert run(encoder.main, ["--NumGtFlags=99", "-i", str(missing)]) != 0
    err = capsys.readouterr().err
    assert "NumGtFlags" in err and str(missing) in err and "BitstreamFile" in err


def test_missing_input_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "nope.safetensors"
    bit = tmp_path / "x.bit"
    assert run(encoder.main, ["-i", str(missing), "-b", str(bit)]) != 0
    assert str(missing) in capsys.readouterr().err
    assert not bit.exists()
    assert run(decoder.main, ["-b", str(tmp_path / "nope.bit"), "-o", str(tmp_path / "d.npz")]) != 0
    assert "nope.bit" in capsys.readouterr().err
    assert leftovers(tmp_path, set()) == []


def test_corrupt_bitstream_writes_no_output(capsys: pytest.CaptureFixture[str],
                                            tmp_path: Path) -> None:
    path = tmp_path / "m.npz"
    np.savez(path, **random_model(with_bf16=False))
    bit = tmp_path / "m.bit"
    assert run(encoder.main, ["-i", str(path), "-b", str(bit), "--Verbose=0"]) == 0
    data = bit.read_bytes()
    units = hls.split_units(data)
    data_unit = next(u for u in units if u.unit_type == hls.UnitType.TENSOR_DATA_UNIT)
    flipped = bytearray(data)
    flipped[data_unit.offset + hls.UNIT_HEADER_BYTES + 3] ^= 0x5A
    lossless = [u for u in units if u.unit_type == hls.UnitType.TENSOR_DATA_UNIT][4]  # int64
    mismatch = bytearray(data)
    # the last byte of the raw int64: parses fine, but the MD5 differs
    mismatch[lossless.offset + hls.UNIT_HEADER_BYTES + len(lossless.payload) - 1] ^= 0x01
    cases = {"flipped": bytes(flipped), "mismatch": bytes(mismatch),
             "truncated": data[: len(data) // 2], "empty": b""}
    keep = {"m.npz", "m.bit"}
    for label, corrupt in cases.items():
        bad = tmp_path / f"{label}.bit"
        bad.write_bytes(corrupt)
        keep.add(bad.name)
        for out_name in (f"{label}.npz", f"{label}.safetensors"):
            out = tmp_path / out_name
            assert run(decoder.main, ["-b", str(bad), "-o", str(out)]) != 0, label
            captured = capsys.readouterr()
            assert "DecoderApp: error:" in captured.err, (label, captured.err)
            assert "Traceback" not in captured.err
            assert not out.exists(), label
    assert leftovers(tmp_path, keep) == []  # no output and no temporary file left behind
    # a hash mismatch is reported per tensor before the error
    assert run(decoder.main, ["-b", str(tmp_path / "mismatch.bit")]) != 0
    out = capsys.readouterr().out
    statuses = {m["name"]: m["status"] for m in MD5_LINE.finditer(out)}
    assert statuses["bn.num_batches_tracked"] == "MISMATCH"
    assert statuses["features.0.weight"] == "OK"


def test_encoder_reports_the_coding_units(capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path) -> None:
    """With the tree, EncoderApp prints how many CUs were skipped and intra-predicted."""
    bit = tmp_path / "t.bit"
    assert run(encoder.main, ["-c", str(DEFAULT_CFG), "--DepQuant=0", "--TreeType=qtmtt",
                              "--IntraPred=1",
                              "--Preset=fast", "-b", str(bit)]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines()
                if ln.startswith("Coding units"))
    data = bit.read_bytes()
    cus = codec.decode_detailed(data, trace=True).cus
    total = sum(len(c) for c in cus.values())
    skip = sum(int((c["mode"] == 1).sum()) for c in cus.values())
    assert line.split(":", 1)[1].strip().startswith(f"{total} ({skip} skip")


def test_encoder_reports_the_predicted_rows(capsys: pytest.CaptureFixture[str],
                                            tmp_path: Path) -> None:
    """With RowPred, EncoderApp prints how many rows were predicted (the decoder's trace
    counts the same rows) and no coding units (none is coded with the tree)."""
    rng = np.random.default_rng(1)
    src = tmp_path / "rows.safetensors"
    smooth = rng.normal(0, 0.3, (1, 48)) + np.cumsum(rng.normal(0, 0.01, (64, 48)), axis=0)
    write_model(str(src), {"pos.embedding": smooth.astype(np.float32),
                           "fc.weight": rng.normal(0, 0.1, (16, 48)).astype(np.float32)})
    bit = tmp_path / "rows.bit"
    assert run(encoder.main, ["-c", str(DEFAULT_CFG), "-i", str(src), "-b", str(bit),
                              "--RowPred=1", "--DepQuant=1"]) == 0
    out = capsys.readouterr().out
    assert "Coding units" not in out
    line = next(ln for ln in out.splitlines() if ln.startswith("Predicted rows"))
    cus = codec.decode_detailed(bit.read_bytes(), trace=True).cus
    predicted = sum(len(c) for c in cus.values())
    assert predicted > 32
    assert [k for k, c in cus.items() if len(c)] == ["pos.embedding"]  # random rows: none
    assert line.split(":", 1)[1].strip() == f"{predicted} of 64 rows in 1 tensor(s)"
