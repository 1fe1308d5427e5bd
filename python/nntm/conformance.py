"""The conformance suite: stored bitstreams that must decode to their MD5s forever.

The suite is described by a manifest (``conformance/suite.json``), one entry per
bitstream ``bitstreams/FEATURE_Letter_rev.bit``, each with its ``.md5`` file (one
line per tensor, ``<md5 hex>  <tensor name>``, the MD5 of the decoded tensor bytes
as the hash unit defines it) and a description ``conformance/<name>.md``.

This module reads the manifest, checks streams (:func:`check_stream`), and cuts
streams into the kernel-tensor cases that the C fuzzer and the sanitizer job feed
to ``nntm_decode_kernel`` (:func:`kernel_cases`).  ``ConformanceApp`` and
``scripts/make_conformance.py`` are thin layers over it.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
import struct
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from . import arrange, codec, hls, predict
from .errors import NntmError

__all__ = [
    "KERNEL_CASE_HEADER",
    "KernelCase",
    "StreamEntry",
    "StreamResult",
    "Suite",
    "SuiteError",
    "check_stream",
    "check_stream_with_c_decoder",
    "check_stream_with_kernel_tool",
    "default_nntm_dec",
    "format_md5_file",
    "kernel_case_bytes",
    "kernel_cases",
    "load_suite",
    "parse_md5_file",
    "reencode",
    "run_encoder_command",
    "stream_format_version",
    "write_manifest",
]

#: Stream names: FEATURE_Letter_rev, e.g. BASE_A_1.
NAME_RE = re.compile(r"^[A-Z][A-Z0-9]*_[A-Z]_[1-9][0-9]*$")
MANIFEST_VERSION = 1

#: Header of a kernel case (fuzz/kernel_input.h): rows, cols, qp (int32 LE),
#: qp_density, num_gt_flags, output dtype (NNTM_DTYPE_*), extension flags (uint8).
KERNEL_CASE_HEADER = struct.Struct("<iiiBBBB")
#: Extension flag 1: the coding tree parameters follow the header (8 x int32 LE:
#: enabled, log2_ctu_size, log2_min_qt_size, max_mtt_depth, log2_min_cu_size,
#: split_mask, skip_enabled, cu_qp_delta_enabled), then the payload.
KERNEL_CASE_TREE = struct.Struct("<8i")
KERNEL_EXT_TREE = 1
#: Extension flag 2: dq_enabled (int32 LE) follows (after the tree parameters, if any).
KERNEL_CASE_DQ = struct.Struct("<i")
KERNEL_EXT_DQ = 2
KERNEL_CASE_PRED = struct.Struct("<ii")   # ref dtype (NNTM_DTYPE_*), pred scale; then samples
KERNEL_EXT_PRED = 4
#: Extension flag 8: intra_pred_enabled (int32 LE), after the reference picture, if any.
KERNEL_CASE_INTRA = struct.Struct("<i")
KERNEL_EXT_INTRA = 8
KERNEL_CASE_WINDOW = struct.Struct("<i")
KERNEL_EXT_WINDOW = 16
#: Extension flag 32: suffix_ctx (int32 LE) [1.5], after prob_window, if any.
KERNEL_CASE_SUFFIX = struct.Struct("<i")
KERNEL_EXT_SUFFIX = 32
#: Extension flag 64: row_pred (int32 LE) [1.5], after suffix_ctx, if any.
KERNEL_CASE_ROW_PRED = struct.Struct("<i")
KERNEL_EXT_ROW_PRED = 64
#: Extension flag 128: substream_rows (int32 LE) [1.8], after row_pred, if any.
KERNEL_CASE_SUBSTREAMS = struct.Struct("<i")
KERNEL_EXT_SUBSTREAMS = 128
_TREE_FIELDS = ("enabled", "log2_ctu_size", "log2_min_qt_size", "max_mtt_depth",
                "log2_min_cu_size", "split_mask", "skip_enabled", "cu_qp_delta_enabled")

# C output format codes (nntm.h NNTM_DTYPE_*), by numpy dtype name.
_C_DTYPES = {"float32": 0, "float16": 1, "bfloat16": 2, "float64": 3}


class SuiteError(NntmError):
    """A malformed manifest or md5 file, or a missing file of the suite."""


# ------------------------------------------------------------------ manifest


@dataclass(frozen=True)
class StreamEntry:
    """One bitstream of the suite, as the manifest lists it (paths relative to the root)."""

    name: str
    bitstream: str
    md5_file: str
    description: str
    format_version: str
    features: tuple[str, ...]
    source_model: str
    cfg: str
    encoder_command: tuple[str, ...]
    bitstream_bytes: int
    bitstream_sha256: str
    num_tensors: int
    reencode: bool = True   # False: a retired stream, decode-only (docs/conformance.md)
    ref_model: str = ""     # the reference model a stream with predicted tensors needs

    def to_json(self) -> dict[str, object]:
        extra: dict[str, object] = {"ref_model": self.ref_model} if self.ref_model else {}
        return {
            "name": self.name,
            "bitstream": self.bitstream,
            "md5_file": self.md5_file,
            "description": self.description,
            "format_version": self.format_version,
            "features": list(self.features),
            "source_model": self.source_model,
            "cfg": self.cfg,
            "encoder_command": list(self.encoder_command),
            "bitstream_bytes": self.bitstream_bytes,
            "bitstream_sha256": self.bitstream_sha256,
            "num_tensors": self.num_tensors,
            "reencode": self.reencode,
            **extra,
        }


_FIELDS = {
    "name": str, "bitstream": str, "md5_file": str, "description": str,
    "format_version": str, "features": list, "source_model": str, "cfg": str,
    "encoder_command": list, "bitstream_bytes": int, "bitstream_sha256": str,
    "num_tensors": int,
}


@dataclass
class Suite:
    """A loaded manifest; ``root`` is the folder that the entries' paths are relative to."""

    path: Path
    root: Path
    streams: list[StreamEntry] = field(default_factory=list)

    def file(self, relative: str) -> Path:
        return self.root / relative

    def select(self, names: Sequence[str]) -> list[StreamEntry]:
        """The entries named (all when names is empty); unknown names are an error."""
        if not names:
            return list(self.streams)
        by_name = {s.name: s for s in self.streams}
        unknown = [n for n in names if n.removesuffix(".bit") not in by_name]
        if unknown:
            raise SuiteError(f"{self.path}: no stream(s) named {', '.join(unknown)} "
                             f"(known: {', '.join(by_name)})")
        return [by_name[n.removesuffix(".bit")] for n in names]


def load_suite(path: str | os.PathLike[str]) -> Suite:
    """Read and validate a manifest; report every problem at once."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SuiteError(f"cannot read suite manifest '{p}': {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise SuiteError(f"suite manifest '{p}' is not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("streams"), list):
        raise SuiteError(f"suite manifest '{p}': expected an object with a 'streams' list")
    if doc.get("manifest_version") != MANIFEST_VERSION:
        raise SuiteError(f"suite manifest '{p}': manifest_version "
                         f"{doc.get('manifest_version')!r}, expected {MANIFEST_VERSION}")
    root = (p.parent / str(doc.get("root", ".."))).resolve()
    problems: list[str] = []
    streams: list[StreamEntry] = []
    seen: set[str] = set()
    for i, raw in enumerate(doc["streams"]):
        where = f"stream {i}"
        if not isinstance(raw, dict):
            problems.append(f"{where}: not an object")
            continue
        where = f"stream {i} ({raw.get('name', '?')})"
        bad = [k for k, t in _FIELDS.items() if not isinstance(raw.get(k), t)
               or (t is int and isinstance(raw.get(k), bool))]
        if bad:
            problems.append(f"{where}: missing or mistyped field(s) {', '.join(bad)}")
            continue
        if not NAME_RE.match(raw["name"]):
            problems.append(f"{where}: name is not FEATURE_Letter_rev")
        if raw["name"] in seen:
            problems.append(f"{where}: listed twice")
        seen.add(raw["name"])
        if not isinstance(raw.get("reencode", True), bool):
            problems.append(f"{where}: reencode must be true or false")
            continue
        if not isinstance(raw.get("ref_model", ""), str):
            problems.append(f"{where}: ref_model must be a path")
            continue
        if not all(isinstance(a, str) for a in raw["encoder_command"] + raw["features"]):
            problems.append(f"{where}: encoder_command and features must be lists of strings")
            continue
        streams.append(StreamEntry(
            name=raw["name"], bitstream=raw["bitstream"], md5_file=raw["md5_file"],
            description=raw["description"], format_version=raw["format_version"],
            features=tuple(raw["features"]), source_model=raw["source_model"],
            cfg=raw["cfg"], encoder_command=tuple(raw["encoder_command"]),
            bitstream_bytes=raw["bitstream_bytes"], bitstream_sha256=raw["bitstream_sha256"],
            num_tensors=raw["num_tensors"], reencode=raw.get("reencode", True),
            ref_model=raw.get("ref_model", "")))
    if problems:
        raise SuiteError(f"suite manifest '{p}':\n  " + "\n  ".join(problems))
    return Suite(p, root, streams)


def write_manifest(path: str | os.PathLike[str], streams: Sequence[StreamEntry]) -> None:
    doc = {
        "manifest_version": MANIFEST_VERSION,
        "root": "..",
        "comment": "NNTM conformance suite; generated by scripts/make_conformance.py "
                   "(see docs/conformance.md). Paths are relative to the root.",
        "streams": [s.to_json() for s in streams],
    }
    Path(path).write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# ------------------------------------------------------------------ md5 files


def format_md5_file(items: Sequence[tuple[str, str]]) -> str:
    """Text of an md5 file from (md5 hex, tensor name) pairs, in stream order."""
    lines = []
    for md5, name in items:
        if "\n" in name or "\r" in name:
            raise ValueError(f"tensor name {name!r}: an md5 file cannot carry a line break")
        lines.append(f"{md5}  {name}\n")
    return "".join(lines)


def parse_md5_file(path: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """(md5 hex, tensor name) pairs of an md5 file, in file order."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SuiteError(f"cannot read md5 file '{p}': {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise SuiteError(f"md5 file '{p}' is not UTF-8") from None
    out = []
    for n, line in enumerate(text.split("\n"), 1):
        if not line:
            continue
        md5, sep, name = line.partition("  ")
        if not sep or not re.fullmatch(r"[0-9a-f]{32}", md5):
            raise SuiteError(f"md5 file '{p}', line {n}: expected '<32 hex digits>  <name>'")
        out.append((md5, name))
    return out


# ------------------------------------------------------------------ checking


@dataclass
class StreamResult:
    """The outcome of checking one stream."""

    name: str
    size: int = 0
    tensors: int = 0
    format_version: str = "?"
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def reason(self) -> str:
        return "; ".join(self.problems)


def _parse_tps(unit: hls.Unit, mps: hls.ModelParameterSet) -> hls.TensorParameterSet:
    """parse_tensor_parameter_set of format 1.0 (unit) or of later versions (unit, mps)."""
    if len(inspect.signature(hls.parse_tensor_parameter_set).parameters) > 1:
        return hls.parse_tensor_parameter_set(unit, mps)  # type: ignore[call-arg]
    return hls.parse_tensor_parameter_set(unit)  # type: ignore[call-arg]


def stream_format_version(data: bytes) -> str:
    """'major.minor' of a stream's model parameter set (BitstreamError if unreadable)."""
    first = data[: hls.UNIT_HEADER_BYTES + int.from_bytes(data[1:5], "big")]
    units = hls.split_units(first)
    if not units or units[0].unit_type != hls.UnitType.MODEL_PARAMETER_SET:
        raise codec.BitstreamError("unit 0: the stream does not start with a model parameter set")
    mps = hls.parse_model_parameter_set(units[0])
    return f"{mps.version_major}.{mps.version_minor}"


def _read_stream(suite: Suite, entry: StreamEntry, result: StreamResult) -> bytes | None:
    path = suite.file(entry.bitstream)
    try:
        data = path.read_bytes()
    except OSError as exc:
        result.problems.append(f"cannot read {entry.bitstream}: {exc.strerror or exc}")
        return None
    result.size = len(data)
    if hashlib.sha256(data).hexdigest() != entry.bitstream_sha256:
        result.problems.append(f"{entry.bitstream} differs from the manifest (sha256)")
    return data


def _read_expected(suite: Suite, entry: StreamEntry, result: StreamResult
                   ) -> list[tuple[str, str]] | None:
    try:
        return parse_md5_file(suite.file(entry.md5_file))
    except SuiteError as exc:
        result.problems.append(str(exc))
        return None


def _compare(expected: list[tuple[str, str]], actual: list[tuple[str, str]],
             md5_file: str, result: StreamResult) -> None:
    """Compare decoded (md5, name) pairs with an md5 file's, by name and order."""
    exp = {name: md5 for md5, name in expected}
    got = {name: md5 for md5, name in actual}
    for name, md5 in got.items():
        if name not in exp:
            result.problems.append(f"tensor '{name}' is not in {md5_file}")
        elif exp[name] != md5:
            result.problems.append(f"tensor '{name}': MD5 {md5} but {md5_file} says {exp[name]}")
    missing = [n for n in exp if n not in got]
    if missing:
        result.problems.append(f"{md5_file} lists tensor(s) not decoded: "
                               + ", ".join(f"'{n}'" for n in missing))
    if not result.problems and [n for _, n in actual] != [n for _, n in expected]:
        result.problems.append(f"tensors decoded in another order than {md5_file} lists them")


def check_stream(suite: Suite, entry: StreamEntry) -> StreamResult:
    """Decode one stream; check its in-stream hash units and its md5 file.

    Never raises for a bad stream: every problem (including an unexpected
    exception of the decoder, which is a decoder bug) becomes a reason in the result.
    """
    result = StreamResult(entry.name)
    data = _read_stream(suite, entry, result)
    expected = _read_expected(suite, entry, result)
    if data is None:
        return result
    start = time.perf_counter()
    try:
        result.format_version = stream_format_version(data)
        decoded = codec.decode_detailed(data, ref_model=load_ref_model(suite, entry),
                                        decoder="python")
    except NntmError as exc:
        result.seconds = time.perf_counter() - start
        result.problems.append(f"decoder error: {exc}")
        return result
    except Exception as exc:  # a decoder bug: report it, do not crash the suite
        result.seconds = time.perf_counter() - start
        result.problems.append(f"decoder crashed: {type(exc).__name__}: {exc}")
        return result
    result.seconds = time.perf_counter() - start
    result.tensors = len(decoded.reports)
    if result.format_version != entry.format_version:
        result.problems.append(f"format version {result.format_version} in the stream, "
                               f"{entry.format_version} in the manifest")
    bad = [r.name for r in decoded.reports if not r.data_ok]
    if bad:
        result.problems.append("MD5 differs from the stream's hash unit for "
                               + ", ".join(f"'{n}'" for n in bad))
    bad = [r.name for r in decoded.reports if r.params_ok is False]
    if bad:
        result.problems.append("parameter set MD5 differs from the stream's hash unit for "
                               + ", ".join(f"'{n}'" for n in bad))
    if decoded.stream_ok is False:
        result.problems.append("stream MD5 differs from the one in end_of_stream")
    if expected is not None:
        _compare(expected, [(r.md5, r.name) for r in decoded.reports], entry.md5_file, result)
    return result


def load_ref_model(suite: Suite, entry: StreamEntry) -> dict[str, np.ndarray] | None:
    """The reference model of a stream with predicted tensors (None for the others)."""
    if not entry.ref_model:
        return None
    from .modelio import read_model

    return read_model(str(suite.file(entry.ref_model)))


# ------------------------------------------------------------------ kernel cases


@dataclass(frozen=True)
class KernelCase:
    """One tensor of a stream as the C core sees it."""

    tensor: str
    coding_mode: hls.CodingMode
    data: bytes          # QUANTIZED: header + payload (fuzz/kernel_input.h); LOSSLESS: raw bytes
    hash_md5: str        # the MD5 in the stream's hash unit
    dtype: np.dtype
    shape: tuple[int, ...]
    arrangement: int
    params: hls.TensorParameterSet | None = None  # CLUSTERED: its parameter set (codebooks)

    def tensor_from_kernel_output(self, raw: bytes) -> np.ndarray:
        """The tensor from the C core's reconstruction of a QUANTIZED case (kernel order)."""
        rows, cols = KERNEL_CASE_HEADER.unpack_from(self.data)[:2]
        kernel = np.frombuffer(raw, dtype=self.dtype).reshape(rows, cols)
        return arrange.from_kernel(kernel, self.shape, arrange.Arrangement(self.arrangement))


def kernel_case_bytes(tps: hls.TensorParameterSet, payload: bytes,
                      ref: np.ndarray | None = None) -> bytes:
    """A QUANTIZED tensor's kernel params in the fuzz/kernel_input.h header, then its payload
    (with ``ref``, the reference picture of a predicted tensor, in its shape, before it)."""
    tree = getattr(tps, "tree", None)
    dq = codec.dq_mode(tps)
    intra = tree is not None and tree.enabled and tree.intra_pred_enabled
    window = tps.prob_window
    ext = (KERNEL_EXT_TREE if tree is not None and tree.enabled else 0) | (
        KERNEL_EXT_DQ if dq else 0) | (KERNEL_EXT_PRED if ref is not None else 0) | (
        KERNEL_EXT_INTRA if intra else 0) | (KERNEL_EXT_WINDOW if window else 0) | (
        KERNEL_EXT_SUFFIX if tps.suffix_ctx else 0) | (
        KERNEL_EXT_ROW_PRED if tps.row_pred else 0) | (
        KERNEL_EXT_SUBSTREAMS if tps.substream_rows else 0)
    header = KERNEL_CASE_HEADER.pack(tps.rows, tps.cols, tps.qp, tps.qp_density,
                                     tps.num_gt_flags, _C_DTYPES[tps.dtype.name], ext)
    if ext & KERNEL_EXT_TREE:
        header += KERNEL_CASE_TREE.pack(*(int(getattr(tree, f)) for f in _TREE_FIELDS))
    if ext & KERNEL_EXT_DQ:
        header += KERNEL_CASE_DQ.pack(dq)  # 1: four states, 2: eight [1.4]
    if ref is not None:
        kernel = arrange.to_kernel(ref, arrange.Arrangement(tps.arrangement))
        header += KERNEL_CASE_PRED.pack(_C_DTYPES[ref.dtype.name], tps.pred_scale)
        header += np.ascontiguousarray(codec._little_endian(kernel)).tobytes()
    if ext & KERNEL_EXT_INTRA:
        header += KERNEL_CASE_INTRA.pack(1)
    if ext & KERNEL_EXT_WINDOW:
        header += KERNEL_CASE_WINDOW.pack(window)
    if ext & KERNEL_EXT_SUFFIX:
        header += KERNEL_CASE_SUFFIX.pack(1)
    if ext & KERNEL_EXT_ROW_PRED:
        header += KERNEL_CASE_ROW_PRED.pack(1)
    if ext & KERNEL_EXT_SUBSTREAMS:
        header += KERNEL_CASE_SUBSTREAMS.pack(tps.substream_rows)
    return header + payload


def kernel_cases(data: bytes, ref_model: dict[str, np.ndarray] | None = None
                 ) -> list[KernelCase]:
    """Every tensor of a (well-formed) stream, in stream order, with its hash-unit MD5.

    Only the high-level syntax is parsed here (no C decoding), so that the
    cases can be handed to another build of the C core.  A predicted tensor's
    case carries its reference picture: the tensor of ``ref_model``, or an earlier
    tensor of the stream as the Python decoder decodes it (checked by its hash).
    """
    units = hls.split_units(data)
    mps = hls.parse_model_parameter_set(units[0])
    tps_by_id = {tps.tensor_id: tps for tps in (
        _parse_tps(u, mps) for u in units[1:] if u.unit_type == hls.UnitType.TENSOR_PARAMETER_SET)}
    earlier: dict[int, np.ndarray] = {}
    if any(t.pred_mode == hls.PredMode.EARLIER_TENSOR for t in tps_by_id.values()):
        decoded = codec.decode(data, ref_model=ref_model, decoder="python")
        earlier = {tid: decoded[t.name] for tid, t in tps_by_id.items()}
    payloads: dict[int, bytes] = {}
    cases = []
    for unit in units[1:]:
        if unit.unit_type == hls.UnitType.TENSOR_DATA_UNIT:
            tid, payload = hls.parse_tensor_data_unit(unit)
            payloads[tid] = payload
        elif unit.unit_type == hls.UnitType.TENSOR_HASH_UNIT:
            tid, md5, _ = hls.parse_tensor_hash_unit(unit, mps)
            tps = tps_by_id[tid]
            payload = payloads[tid]
            if tps.coding_mode == hls.CodingMode.QUANTIZED:
                ref = None
                if tps.pred_mode:
                    ref = predict.find_reference(tps, ref_model, earlier, f"tensor_id {tid}")
                blob = kernel_case_bytes(tps, payload, ref)
            else:
                blob = payload
            cases.append(KernelCase(tps.name, tps.coding_mode, blob, md5.hex(), tps.dtype,
                                    tuple(tps.shape), int(tps.arrangement),
                                    tps if tps.coding_mode == hls.CodingMode.CLUSTERED
                                    else None))
    return cases


def check_stream_with_kernel_tool(suite: Suite, entry: StreamEntry,
                                  tool: str | os.PathLike[str]) -> StreamResult:
    """Check a stream with an external build of the C core instead of the extension.

    ``tool`` is fuzz/kernel_check.c built (e.g. with sanitizers): it is run once
    per stream as ``tool IN1 OUT1 IN2 OUT2 ...``, decodes and reconstructs each
    QUANTIZED case and writes the output bytes.  LOSSLESS tensors are their
    payload bytes; CLUSTERED tensors are decoded with the extension.  The MD5s
    are compared with the hash units and the md5 file.
    """
    result = StreamResult(entry.name)
    data = _read_stream(suite, entry, result)
    expected = _read_expected(suite, entry, result)
    if data is None:
        return result
    start = time.perf_counter()
    try:
        result.format_version = stream_format_version(data)
        cases = kernel_cases(data, load_ref_model(suite, entry))
    except NntmError as exc:
        result.problems.append(f"high-level syntax error: {exc}")
        return result
    actual: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="nntm_kernel_") as tmp:
        args: list[str] = [os.fspath(tool)]
        outputs: dict[int, Path] = {}
        for i, case in enumerate(cases):
            if case.coding_mode == hls.CodingMode.QUANTIZED:
                inp, out = Path(tmp) / f"{i}.kin", Path(tmp) / f"{i}.out"
                inp.write_bytes(case.data)
                args += [str(inp), str(out)]
                outputs[i] = out
        if outputs:
            proc = subprocess.run(args, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-12:]
                result.problems.append(f"{Path(tool).name} exited {proc.returncode}: "
                                       + " | ".join(tail))
                result.seconds = time.perf_counter() - start
                return result
        for i, case in enumerate(cases):
            if i in outputs:
                md5 = codec.tensor_md5(case.tensor_from_kernel_output(outputs[i].read_bytes()))
                md5 = md5.hex()
            elif case.coding_mode == hls.CodingMode.CLUSTERED:  # the extension decodes these
                md5 = codec.tensor_md5(decode_cluster_case(case)).hex()
            else:
                md5 = hashlib.md5(case.data).hexdigest()
            if md5 != case.hash_md5:
                result.problems.append(f"tensor '{case.tensor}': MD5 differs from its hash unit")
            actual.append((md5, case.tensor))
    result.seconds = time.perf_counter() - start
    result.tensors = len(cases)
    if expected is not None:
        _compare(expected, actual, entry.md5_file, result)
    return result


def default_nntm_dec() -> Path:
    """build/nntm-dec of the checkout this package is in (the CMake build's C decoder)."""
    return Path(__file__).resolve().parents[2] / "build" / "nntm-dec"


_C_VERSION = re.compile(r"format (\d+\.\d+)\s*$")


def _c_decoder_problems(proc: subprocess.CompletedProcess[str], prog: str) -> list[str]:
    """What a failed nntm-dec run says: the tensors it marked, else its error lines."""
    problems = []
    bad = [line.split()[0] for line in proc.stdout.splitlines() if "[MD5:" in line
           and " MISMATCH" in line.split("[MD5:", 1)[1].split(",", 1)[0]]
    if bad:
        problems.append("MD5 differs from the stream's hash unit for "
                        + ", ".join(f"'{n}'" for n in bad))
    if any("parameter set MISMATCH" in line for line in proc.stdout.splitlines()):
        problems.append("parameter set MD5 differs from the stream's hash unit")
    tail = [line for line in proc.stderr.strip().splitlines() if line][-4:]
    if proc.returncode not in (0, 1):
        problems.append(f"{prog} exited {proc.returncode} (a decoder bug): " + " | ".join(tail))
    elif tail and not bad:
        problems.append("decoder error: " + " | ".join(t.removeprefix(f"{prog}: error: ")
                                                       for t in tail))
    return problems or [f"{prog} exited {proc.returncode}"]


def check_stream_with_c_decoder(suite: Suite, entry: StreamEntry,
                                prog: str | os.PathLike[str] | None = None) -> StreamResult:
    """Check a stream with the C decoder alone (``nntm-dec``, lib/tools/nntm_dec.c).

    The stream goes through ``prog -b STREAM -v --Md5File F [--RefModel REF]`` (no Python
    in the decode): the format version is the one nntm-dec prints, the MD5s are those it
    writes to F (in hash unit order), its exit status says whether every tensor MD5, parameter
    set MD5 and the stream MD5 matched; they are compared with the md5 file as check_stream
    compares the Python decoder's.
    """
    tool = Path(prog) if prog is not None else default_nntm_dec()
    result = StreamResult(entry.name)
    data = _read_stream(suite, entry, result)
    expected = _read_expected(suite, entry, result)
    if data is None:
        return result
    with tempfile.TemporaryDirectory(prefix="nntm_cdec_") as tmp:
        md5_path = Path(tmp) / "decoded.md5"
        cmd = [os.fspath(tool), "-b", str(suite.file(entry.bitstream)), "-v",
               "--Md5File", str(md5_path)]
        if entry.ref_model:
            cmd += ["--RefModel", str(suite.file(entry.ref_model))]
        start = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        except OSError as exc:
            result.problems.append(f"cannot run {tool}: {exc.strerror or exc}")
            return result
        result.seconds = time.perf_counter() - start
        lines = proc.stdout.splitlines()
        version = _C_VERSION.search(lines[0]) if lines else None
        if version:
            result.format_version = version.group(1)
        actual = parse_md5_file(md5_path) if md5_path.is_file() else None
    if proc.returncode != 0:
        result.problems.extend(_c_decoder_problems(proc, tool.name))
    if actual is None:
        return result
    result.tensors = len(actual)
    if result.format_version != entry.format_version:
        result.problems.append(f"format version {result.format_version} in the stream, "
                               f"{entry.format_version} in the manifest")
    if expected is not None:
        _compare(expected, actual, entry.md5_file, result)
    return result


# ------------------------------------------------------------------ re-encoding


def run_encoder_command(root: str | os.PathLike[str], argv: Sequence[str],
                        bitstream: str | os.PathLike[str]) -> bytes:
    """Run a stored EncoderApp command in-process (relative paths from root), writing the
    bitstream to ``bitstream`` instead of the command's ``-b`` file; return its bytes."""
    import contextlib
    import io

    from .apps import encoder

    args = list(argv)
    if not args or args[0] != "EncoderApp":
        raise SuiteError(f"encoder command {args!r} does not start with EncoderApp")
    if args.count("-b") != 1 or args.index("-b") + 1 >= len(args):
        raise SuiteError(f"encoder command {args!r} needs exactly one '-b FILE'")
    args[args.index("-b") + 1] = os.path.abspath(bitstream)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(root), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rv = encoder.main(args[1:])
    if rv != 0:
        raise SuiteError(f"`{' '.join(argv)}` failed ({rv}): {err.getvalue().strip()}")
    return Path(bitstream).read_bytes()


def reencode(suite: Suite, entry: StreamEntry) -> bytes:
    """Re-encode a stream's source with its stored command; return the new bytes."""
    with tempfile.TemporaryDirectory(prefix="nntm_reencode_") as tmp:
        return run_encoder_command(suite.root, entry.encoder_command,
                                   Path(tmp) / f"{entry.name}.bit")


def decode_cluster_case(case: KernelCase) -> np.ndarray:
    """Decode a CLUSTERED case with the Python extension."""
    from . import cluster

    assert case.params is not None
    return cluster.decode_tensor(case.params, case.data, f"tensor '{case.tensor}'")


def decode_kernel_case(case: KernelCase) -> tuple[np.ndarray, np.ndarray]:
    """Decode a QUANTIZED case with the Python extension: (levels, tensor)."""
    from . import core

    rows, cols, qp, density, gt, _, ext = KERNEL_CASE_HEADER.unpack_from(case.data)
    offset = KERNEL_CASE_HEADER.size
    extra = {}
    if ext & KERNEL_EXT_TREE:
        values = KERNEL_CASE_TREE.unpack_from(case.data, offset)
        offset += KERNEL_CASE_TREE.size
        extra["tree"] = core.TreeParams(**dict(zip(_TREE_FIELDS, values, strict=True)))
    if ext & KERNEL_EXT_DQ:
        extra["dq_enabled"] = int(KERNEL_CASE_DQ.unpack_from(case.data, offset)[0])
        offset += KERNEL_CASE_DQ.size
    ref = None
    if ext & KERNEL_EXT_PRED:
        code, scale = KERNEL_CASE_PRED.unpack_from(case.data, offset)
        offset += KERNEL_CASE_PRED.size
        rdtype = next(np.dtype(d) if d != "bfloat16" else hls.DTYPES[2]
                      for d, c in _C_DTYPES.items() if c == code)
        n = rows * cols * rdtype.itemsize
        samples = np.frombuffer(case.data[offset:offset + n], dtype=rdtype).reshape(rows, cols)
        offset += n
        ref = core.Reference(samples, scale)
    if ext & KERNEL_EXT_INTRA:
        intra = bool(KERNEL_CASE_INTRA.unpack_from(case.data, offset)[0])
        offset += KERNEL_CASE_INTRA.size
        extra["tree"] = replace(extra["tree"], intra_pred_enabled=intra)
    if ext & KERNEL_EXT_WINDOW:
        extra["prob_window"] = KERNEL_CASE_WINDOW.unpack_from(case.data, offset)[0]
        offset += KERNEL_CASE_WINDOW.size
    if ext & KERNEL_EXT_SUFFIX:
        extra["suffix_ctx"] = KERNEL_CASE_SUFFIX.unpack_from(case.data, offset)[0]
        offset += KERNEL_CASE_SUFFIX.size
    if ext & KERNEL_EXT_ROW_PRED:
        extra["row_pred"] = KERNEL_CASE_ROW_PRED.unpack_from(case.data, offset)[0]
        offset += KERNEL_CASE_ROW_PRED.size
    if ext & KERNEL_EXT_SUBSTREAMS:
        extra["substream_rows"] = KERNEL_CASE_SUBSTREAMS.unpack_from(case.data, offset)[0]
        offset += KERNEL_CASE_SUBSTREAMS.size
    params = core.KernelParams(rows, cols, qp, density, gt, **extra)
    payload = case.data[offset:]
    what = f"tensor '{case.tensor}'"
    if ref is not None:
        result = core.decode_kernel(payload, params, case.dtype, what, ref=ref)
        levels, recon = result.levels, result.recon
    elif "dtype" in inspect.signature(core.decode_kernel).parameters:  # decode + reconstruct
        result = core.decode_kernel(payload, params, case.dtype, what)
        levels, recon = result.levels, result.recon
    else:  # the format 1.0 API: levels, then reconstruct
        levels = core.decode_kernel(payload, params, what)
        recon = core.reconstruct(levels, params, case.dtype, what)
    return levels, case.tensor_from_kernel_output(np.ascontiguousarray(recon).tobytes())
