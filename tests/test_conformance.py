"""The conformance suite (docs/conformance.md): every stored stream decodes to its MD5s,
re-encodes to the same bytes, and ConformanceApp catches an altered suite."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from nntm import codec, conformance, core, hls
from nntm.apps import conformance as app

ROOT = Path(__file__).resolve().parents[1]
SUITE_PATH = ROOT / "conformance" / "suite.json"
SUITE = conformance.load_suite(SUITE_PATH)
NAMES = [s.name for s in SUITE.streams]
ENTRIES = {s.name: s for s in SUITE.streams}


@pytest.mark.parametrize("name", NAMES)
def test_stream_decodes_to_its_md5s(name: str) -> None:
    result = conformance.check_stream(SUITE, ENTRIES[name])
    assert result.ok, result.reason
    assert result.tensors == ENTRIES[name].num_tensors
    assert result.format_version == ENTRIES[name].format_version


@pytest.mark.parametrize("name", NAMES)
def test_stream_reencodes_bit_exactly(name: str) -> None:
    entry = ENTRIES[name]
    if not entry.reencode:
        pytest.skip(f"{name} is retired (decode-only)")
    if entry.source_model.endswith(".onnx"):
        pytest.importorskip("onnx")  # the ONNX source is read with the onnx extra
    data = conformance.reencode(SUITE, entry)
    assert data == SUITE.file(entry.bitstream).read_bytes(), (
        f"{name}: the encoder no longer makes the stored stream from its source and cfg")


def test_manifest_is_complete_and_consistent() -> None:
    assert len(NAMES) >= 11
    on_disk = sorted(p.stem for p in (ROOT / "bitstreams").glob("*.bit"))
    assert on_disk == sorted(NAMES), "every stored bitstream is in the manifest and back"
    for e in SUITE.streams:
        assert conformance.NAME_RE.match(e.name)
        assert e.bitstream == f"bitstreams/{e.name}.bit"
        assert e.md5_file == f"bitstreams/{e.name}.md5"
        assert e.description == f"conformance/{e.name}.md"
        for rel in (e.bitstream, e.md5_file, e.description, e.cfg, e.source_model):
            assert SUITE.file(rel).is_file(), rel
        data = SUITE.file(e.bitstream).read_bytes()
        assert len(data) == e.bitstream_bytes
        assert hashlib.sha256(data).hexdigest() == e.bitstream_sha256
        assert e.features
        assert e.encoder_command[0] == "EncoderApp" and e.cfg in e.encoder_command
        assert e.source_model in e.encoder_command
        text = SUITE.file(e.description).read_text(encoding="utf-8")
        assert " ".join(e.encoder_command) in text and f"Format version: {e.format_version}" in text
        assert len(conformance.parse_md5_file(SUITE.file(e.md5_file))) == e.num_tensors


@pytest.mark.parametrize("name", NAMES)
def test_kernel_cases_match_the_hash_units(name: str) -> None:
    """The cases the C fuzzer and the sanitizer job decode are the stream's tensors."""
    data = SUITE.file(ENTRIES[name].bitstream).read_bytes()
    cases = conformance.kernel_cases(data, conformance.load_ref_model(SUITE, ENTRIES[name]))
    assert len(cases) == ENTRIES[name].num_tensors
    for case in cases:
        if case.coding_mode == hls.CodingMode.QUANTIZED:
            md5 = codec.tensor_md5(conformance.decode_kernel_case(case)[1]).hex()
        elif case.coding_mode == hls.CodingMode.CLUSTERED:
            md5 = codec.tensor_md5(conformance.decode_cluster_case(case)).hex()
        else:
            md5 = hashlib.md5(case.data).hexdigest()
        assert md5 == case.hash_md5, case.tensor


# ------------------------------------------------------------------ ConformanceApp


def _copy_suite(tmp_path: Path) -> Path:
    for folder in ("conformance", "bitstreams"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    return tmp_path / "conformance" / "suite.json"


def test_app_passes_on_the_suite(capsys: pytest.CaptureFixture[str]) -> None:
    assert app.main(["--suite", str(SUITE_PATH)]) == 0
    out = capsys.readouterr().out
    assert f"{len(NAMES)} of {len(NAMES)} stream(s) passed" in out
    assert all(f"{n} " in out for n in NAMES)


def test_app_fails_on_an_altered_md5_file(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    suite = _copy_suite(tmp_path)
    md5_file = tmp_path / "bitstreams" / "BASE_A_1.md5"
    lines = md5_file.read_text().splitlines(keepends=True)
    digit = "0" if lines[2][0] != "0" else "1"
    lines[2] = digit + lines[2][1:]
    md5_file.write_text("".join(lines))
    assert app.main(["--suite", str(suite)]) == 1
    out = capsys.readouterr().out
    assert "BASE_A_1" in out and "FAIL" in out and "1 failed" in out
    assert app.main(["--suite", str(suite), "QP_A_1"]) == 0


def test_app_fails_on_an_altered_bitstream(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    suite = _copy_suite(tmp_path)
    bit = tmp_path / "bitstreams" / "GTX_A_1.bit"
    data = bytearray(bit.read_bytes())
    data[-40] ^= 0x10                      # inside the last tensor's payload or hash
    bit.write_bytes(bytes(data))
    # even with the manifest's sha256 updated, the MD5s or the syntax catch it
    doc = json.loads(suite.read_text())
    for s in doc["streams"]:
        if s["name"] == "GTX_A_1":
            s["bitstream_sha256"] = hashlib.sha256(data).hexdigest()
    suite.write_text(json.dumps(doc))
    assert app.main(["--suite", str(suite), "GTX_A_1"]) == 1
    assert "GTX_A_1" in capsys.readouterr().out


def test_app_list_and_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert app.main(["--suite", str(SUITE_PATH), "--list"]) == 0
    assert "BASE_A_1" in capsys.readouterr().out
    assert app.main(["--suite", str(SUITE_PATH), "NO_SUCH_1"]) == 1
    assert "NO_SUCH_1" in capsys.readouterr().err
    assert app.main(["--suite", str(tmp_path / "missing.json")]) == 1
    assert app.main(["--bogus"]) == 2
    with pytest.raises(SystemExit) as exc:
        app._parser().parse_args(["--help"])
    assert exc.value.code == 0


def test_md5_file_format(tmp_path: Path) -> None:
    items = [("0" * 32, "a b  c"), ("f" * 32, "blöck")]
    p = tmp_path / "x.md5"
    p.write_text(conformance.format_md5_file(items), encoding="utf-8")
    assert conformance.parse_md5_file(p) == items
    p.write_text("xyz  name\n")
    with pytest.raises(conformance.SuiteError):
        conformance.parse_md5_file(p)


# ------------------------------------------------------------------ make_conformance


def test_generate_refuses_to_change_a_stored_stream(tmp_path: Path) -> None:
    """--generate keeps a stored stream whose MD5s would change, unless forced."""
    for folder in ("conformance", "bitstreams", "scripts"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    example = tmp_path / "python" / "nntm" / "example"
    example.mkdir(parents=True)
    shutil.copy(ROOT / "python/nntm/example/digits_cnn.safetensors", example)
    script = tmp_path / "scripts" / "make_conformance.py"
    cfg = tmp_path / "conformance" / "cfg" / "QP_D_2.cfg"
    bit = tmp_path / "bitstreams" / "QP_D_2.bit"
    before = bit.read_bytes()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(script), *args], capture_output=True,
                              text=True, cwd=tmp_path, check=False)

    same = run("--generate", "QP_D_2")
    assert same.returncode == 0, same.stderr
    assert bit.read_bytes() == before
    cfg.write_text(cfg.read_text().replace("QP                  : 127",
                                           "QP                  : 120"))
    refused = run("--generate", "QP_D_2")
    assert refused.returncode == 1 and "refused" in refused.stderr
    assert bit.read_bytes() == before
    assert run("--check-determinism", "QP_D_2").returncode == 1
    forced = run("--generate", "--force-new-version", "QP_D_2")
    assert forced.returncode == 0, forced.stderr
    assert bit.read_bytes() != before
    assert run("--check-determinism", "QP_D_2").returncode == 0
    assert codec.decode(bit.read_bytes())


# ------------------------------------------------------------------ fuzzing findings

CRASHERS = ROOT / "fuzz" / "crashers"

_DECODE_UNDER_LIMIT = """
import resource, sys
limit = int(sys.argv[2]) << 30
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
import nntm
data = open(sys.argv[1], "rb").read()
try:
    nntm.decode(data)
except nntm.NntmError as exc:
    print("rejected:", exc)
"""


# Under AddressSanitizer (scripts/run_sanitizers.sh preloads its runtime) the address
# space cannot be limited: ASan reserves terabytes of shadow memory at start-up.
_ASAN = "asan" in os.environ.get("LD_PRELOAD", "")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS")
@pytest.mark.skipif(_ASAN, reason="RLIMIT_AS under AddressSanitizer")
def test_crasher_tree_huge_tensor_is_rejected_cleanly() -> None:
    path = CRASHERS / "tree_huge_tensor.bit"
    proc = subprocess.run([sys.executable, "-c", _DECODE_UNDER_LIMIT, str(path), "4"],
                          capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr.strip().splitlines()[-1]


# ------------------------------------------------------------------ format 1.1 streams
# The features of the 1.1 streams are statements that scripts/make_conformance.py
# checks on the decoded stream (stream_facts: the tensor parameter sets, the decoder's
# CU trace and the decoded levels); --generate refuses a stream that does not show
# them, and these tests check the stored streams again.


def _load_make_conformance() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "make_conformance", ROOT / "scripts" / "make_conformance.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_conformance"] = module
    spec.loader.exec_module(module)
    return module


MC = _load_make_conformance()
VERIFIED = {s.name: s for s in MC.STREAMS if s.verify}


@functools.cache
def _facts(name: str) -> frozenset[str]:
    return frozenset(MC.stream_facts(SUITE.file(ENTRIES[name].bitstream).read_bytes(),
                                     MC.ref_model(VERIFIED[name])))


@pytest.mark.parametrize("name", sorted(VERIFIED))
def test_verified_stream_shows_its_features(name: str) -> None:
    spec = VERIFIED[name]
    assert ENTRIES[name].features == spec.features
    # 1.2: the streams of TOOL_CLUSTER (clustering) and TOOL_INTER_PRED (prediction);
    # 1.3: TOOL_INTRA_PRED (intra prediction); 1.4: TOOL_PROB_WINDOW (counting estimator);
    # 1.5: TOOL_SUFFIX_CTX (context-coded remainder suffix), TOOL_DQ_32STATES, TOOL_ROW_PRED;
    # 1.6: TOOL_INTEGRITY (parameter set and stream MD5s); 1.7: TOOL_CONTAINER (ONNX)
    want = ("1.7" if "TOOL_CONTAINER" in spec.features else
            "1.6" if "TOOL_INTEGRITY" in spec.features else
            "1.5" if {"TOOL_SUFFIX_CTX", "TOOL_DQ_32STATES", "TOOL_ROW_PRED"}
            & set(spec.features) else
            "1.4" if {"TOOL_PROB_WINDOW", "TOOL_DQ_8STATES"} & set(spec.features) else
            "1.3" if "TOOL_INTRA_PRED" in spec.features else
            "1.2" if {"TOOL_CLUSTER", "TOOL_INTER_PRED"} & set(spec.features) else "1.1")
    assert ENTRIES[name].format_version == want
    missing = [f for f in spec.features if f not in _facts(name)]
    assert not missing, f"{name}: the decoded stream does not show {missing}"


def test_a_feature_the_stream_lacks_is_refused() -> None:
    spec = VERIFIED["DQ_A_1"]
    data = SUITE.file(ENTRIES["DQ_A_1"].bitstream).read_bytes()
    fake = dataclasses.replace(spec, features=(*spec.features, "split QT", "skip CUs"))
    assert MC.unverified_features(fake, data) == ["split QT", "skip CUs"]


def test_the_suite_covers_every_1_1_tool() -> None:
    facts = frozenset().union(*(_facts(n) for n in VERIFIED))
    wanted = {
        "TOOL_CODING_TREE", "TOOL_SIGNAL_TYPES", "TOOL_DEP_QUANT",
        *(f"tree_partition_type {t}" for t in ("0 (NONE)", "1 (QT)", "2 (QTBT)", "3 (QTMTT)")),
        *(f"split {s}" for s in ("QT", "BT_H", "BT_V", "TT_H", "TT_V")),
        "border CUs (nominal size beyond the kernel)", "split nodes partly outside the kernel",
        "children entirely outside the kernel", "skip CUs", "CU QP delta < 0",
        "CU QP delta > 0", "|CU QP delta| >= 5", "cu_skip_enabled_flag 1",
        "cu_qp_delta_enabled_flag 0", "cu_qp_delta_enabled_flag 1",
        *(f"DQ state {s}" for s in range(4)), "DQ all 8 state transitions",
        "DQ with coding tree", "DQ float32", "DQ bfloat16",
        "KERNEL_TILES with tree_partition_type 0", "KERNEL_TILES with tree_partition_type 3",
        "KERNEL_TILES dw-conv 3x3", "ROWS pw-conv 1x1", "layer_type embedding by LayerRules",
    }
    assert wanted <= facts, sorted(wanted - facts)


def test_the_suite_covers_every_intra_mode() -> None:
    facts = frozenset().union(*(_facts(n) for n in VERIFIED))
    wanted = {"TOOL_INTRA_PRED", "intra row mean", "intra column mean", "intra block copy",
              "block copy from an earlier CTU", "block copy within the CTU",
              "intra border CUs", "intra with CU QP delta != 0"}
    assert wanted <= facts, sorted(wanted - facts)


def test_intra_analysis_refuses_a_prediction_from_a_later_cu() -> None:
    """_intra_residuals checks the decoding order itself: a block vector into a CU that
    comes later in the trace is an internal error, not a fact."""
    data = SUITE.file(ENTRIES["INTRA_A_1"].bitstream).read_bytes()
    mps, tools = MC.tensor_tools(data)
    tt = next(t for t in tools if np.any(t.cus["intra"] == MC.INTRA_COPY))
    MC._intra_residuals(tt.tps, tt.cus, tt.levels)  # the real trace passes
    cus = tt.cus.copy()
    fits = [int(i) for i in np.flatnonzero(cus["intra"] == MC.INTRA_COPY)
            if int(cus[i]["y"]) + 2 * int(cus[i]["h"]) <= tt.tps.rows]
    assert fits
    i = fits[0]
    cus[i]["bv_x"], cus[i]["bv_y"] = 0, int(cus[i]["h"])  # the block below: not decoded yet
    with pytest.raises(SystemExit, match="not decoded before it"):
        MC._intra_residuals(tt.tps, cus, tt.levels)


def _random_coding_tree(rng: random.Random) -> tuple[core.TreeParams, int, int, np.ndarray,
                                                     dict[str, int]]:
    """A random kernel size and tree parameters, a random coding tree over it (clause
    3.5), its CU trace records and its true counts of MC._TREE_KEYS."""
    tree_type = rng.choice([1, 2, 3])
    log2_ctu = rng.randint(1, 5)
    log2_min_cu = rng.randint(0, log2_ctu)
    tree = core.TreeParams(True, log2_ctu, rng.randint(log2_min_cu, log2_ctu),
                           rng.randint(0, 4) if tree_type >= 2 else 0, log2_min_cu,
                           hls.TREE_SPLIT_MASK[tree_type])
    rows, cols = rng.randint(1, 70), rng.randint(1, 70)
    records: list[tuple[int, ...]] = []
    truth = dict.fromkeys(MC._TREE_KEYS, 0)

    def node(x: int, y: int, w: int, h: int, qt: int, mtt: int) -> None:
        if x >= cols or y >= rows:
            return
        clipped = int(x + w > cols or y + h > rows)
        splits = [s for s in MC.SPLIT_NAMES if MC._can_split(tree, s, w, h, mtt)]
        if splits and rng.random() < 0.7:
            split = rng.choice(splits)
            truth[MC.SPLIT_NAMES[split]] += 1
            truth["clipped splits"] += clipped
            for child in MC._children(x, y, w, h, split):
                truth["outside children"] += child[0] >= cols or child[1] >= rows
                node(*child, qt + (split == 1), 0 if split == 1 else mtt + 1)
        else:
            truth["border CUs"] += clipped
            records.append((x, y, min(x + w, cols) - x, min(y + h, rows) - y, 0, 0, qt + mtt,
                            0, 0, 0))

    ctu = 1 << log2_ctu
    for y in range(0, rows, ctu):
        for x in range(0, cols, ctu):
            node(x, y, ctu, ctu, 0, 0)
    return tree, rows, cols, np.array(records, core.CU_RECORD), truth


def test_tree_inference_brackets_random_coding_trees() -> None:
    """_infer_tree (the split counts of the descriptions) on CU traces of random coding
    trees: the true tree is among those it finds, and its counts lie within the bounds."""
    rng = random.Random(7)
    for _ in range(150):
        tree, rows, cols, cus, truth = _random_coding_tree(rng)
        count, lo, hi = MC._infer_tree(tree, rows, cols, cus)
        assert count >= 1
        assert all(a <= truth[k] <= b for k, a, b in zip(MC._TREE_KEYS, lo, hi, strict=True))


def test_the_suite_covers_prediction() -> None:
    facts = frozenset().union(*(_facts(n) for n in VERIFIED))
    wanted = {"TOOL_INTER_PRED", "pred_mode 1 (REF_MODEL)", "pred_mode 2 (EARLIER_TENSOR)",
              "pred_mode 0 (NONE)", "ref_dtype float16", "ref_dtype bfloat16",
              "pred_scale < 0", "prediction with DQ", "prediction with skip CUs"}
    assert wanted <= facts, sorted(wanted - facts)


def test_a_predicted_stream_needs_its_reference_model(tmp_path: Path) -> None:
    entry = ENTRIES["PRED_A_1"]
    assert entry.ref_model and SUITE.file(entry.ref_model).is_file()
    alone = conformance.check_stream(SUITE, dataclasses.replace(entry, ref_model=""))
    assert not alone.ok and "reference model" in alone.reason
    wrong = dataclasses.replace(entry, ref_model=ENTRIES["PRED_B_1"].source_model)
    result = conformance.check_stream(SUITE, wrong)
    assert not result.ok and "no tensor of that name" in result.reason
