"""DecoderApp: decode an NNTM bitstream, check every tensor's MD5, write the model.

    DecoderApp -b model.bit [-o decoded.safetensors] [--RefModel=old.safetensors]

A stream coded as an update (EncoderApp --RefModel) needs the same reference
model; a missing or different one is an error naming the tensor.

Prints `[MD5: <hex> OK]` for each tensor; exits non-zero on any mismatch, in
which case no output file is written.
"""

from __future__ import annotations

import mmap
import os
import sys
import time
from collections.abc import Mapping, Sequence

import numpy as np

from .. import codec, cstream, hls, memory, streaming, streamio
from ..config import Config, parse_app_args
from ..errors import HashMismatchError, ModelIOError
from ..modelio import FORMATS, model_format, write_model
from ..options import DECODER_OPTIONS
from .common import (
    WRITE_EXTENSIONS,
    collision_problems,
    display_name,
    escape_text,
    fmt_shape,
    input_problem,
    name_column,
    output_problem,
    pad,
    run_app,
)

PROG = "DecoderApp"
DESCRIPTION = (
    "Decode an NNTM bitstream, check each tensor against the MD5 in its hash unit, and "
    "write the model (.safetensors, .npz, or .onnx for a stream coded from an ONNX model, "
    "whose graph it carries). Exits non-zero on any mismatch. A stream coded "
    "as a model update needs --RefModel, the model it was coded against. An existing output "
    "file is overwritten (replaced only once the new file is complete); an output that is the "
    "same file as an input is refused."
)

#: bounds of the tensor-name column: names up to NAME_MAX columns are printed in full,
#: longer ones cut in the middle with an ellipsis
NAME_MIN, NAME_MAX = 40, 60


def validate(cfg: Config) -> list[str]:
    """Every app-level problem (reported with the option problems, in one message)."""
    problems = []
    path = str(cfg["BitstreamFile"])
    if not path:
        problems.append("BitstreamFile (-b) is required")
    inputs = {"BitstreamFile (-b)": path, "RefModel": str(cfg["RefModel"])}
    for key, name in inputs.items():
        problem = input_problem(key, name) if name else None
        if problem:
            problems.append(problem)
    try:
        memory.parse_size(str(cfg["MaxMemory"]))
    except ValueError as exc:
        problems.append(f"MaxMemory: {exc}")
    out = str(cfg["OutputFile"])
    if out:
        problem = output_problem("OutputFile (-o)", out)
        if problem:
            problems.append(problem)
        fmt = str(cfg["OutputFormat"])
        suffix = os.path.splitext(out)[1].lower()
        if suffix not in WRITE_EXTENSIONS:
            problems.append(f"OutputFile '{out}': extension '{suffix or '(none)'}' names no "
                            f"format DecoderApp writes (use {' or '.join(WRITE_EXTENSIONS)})")
        elif fmt != "auto" and FORMATS[suffix] != fmt:
            problems.append(f"OutputFile '{out}': extension '{suffix}' does not match "
                            f"OutputFormat {fmt}")
        problems.extend(collision_problems(inputs, {"OutputFile (-o)": out}))
    return problems


def output_format(cfg: Config, source: hls.SourceFormat) -> str:
    fmt = str(cfg["OutputFormat"])
    if fmt != "auto":
        return fmt
    out = str(cfg["OutputFile"])
    if out:  # validate() admits only the extensions of WRITE_FORMATS (any case)
        return model_format(out)
    return "npz" if source == hls.SourceFormat.NPZ else "safetensors"


def _checks_line(result: codec.DecodeResult) -> str:
    """Which checks the stream carried, and how the stream-level one came out."""
    if result.stream_ok is None:
        return ("tensor data MD5 only (this stream carries no parameter set or stream "
                "MD5: a changed name, dtype or shape is not detected; IntegrityHash, "
                "format 1.6)")
    status = "OK" if result.stream_ok else "MISMATCH"
    return f"{', '.join(result.checks)} [stream MD5: {result.stream_md5} {status}]"


class _Output:
    """The decoded model, written tensor by tensor as the stream is decoded (an ONNX file,
    which fills the graph, is written whole at the end)."""

    def __init__(self, cfg: Config, path: str) -> None:
        self.cfg, self.path = cfg, path
        self.writer: streamio.ModelWriter | None = None
        self.fmt = ""
        self.tensors: dict[str, np.ndarray] = {}

    def open(self, mps: hls.ModelParameterSet, tpss: list[hls.TensorParameterSet]) -> None:
        if not self.path:
            return
        self.fmt = output_format(self.cfg, mps.source_format)
        if self.fmt == "onnx":
            if not mps.tool_flags & hls.TOOL_CONTAINER:
                raise ModelIOError(f"OutputFile '{self.path}': the stream carries no ONNX "
                                   "graph (it was not coded from an .onnx model); write "
                                   ".safetensors or .npz")
            return
        self.writer = streamio.ModelWriter(
            self.path, [(t.name, t.dtype.newbyteorder("<"), t.shape) for t in tpss], self.fmt)

    def write(self, name: str, array: np.ndarray) -> None:
        if self.writer is not None:
            self.writer.write(name, array)
        elif self.fmt == "onnx":
            self.tensors[name] = array

    def close(self, container: hls.Container | None) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        elif self.fmt == "onnx":
            if container is None or container.format != hls.SourceFormat.ONNX:
                raise ModelIOError(f"OutputFile '{self.path}': the stream carries no ONNX "
                                   "graph (it was not coded from an .onnx model); write "
                                   ".safetensors or .npz")
            write_model(self.path, self.tensors, "onnx", make_parents=True,
                        template=container.data)

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()
            self.writer = None


def _decode_c(path: str, layout: streaming.Layout, cfg: Config,
              sink: _Output, ref_model: Mapping[str, np.ndarray] | None) -> codec.DecodeResult:
    """Decode with the C stream reader, tensor by tensor into numpy arrays, at most Threads
    threads at once (the limits and the budget were checked by streaming.scan_layout, with
    the Python path's messages)."""
    def on_layout() -> None:
        sink.open(layout.mps, list(layout.parsed.values()))

    return cstream.decode_layout(path, layout, int(cfg["MaxTensorElements"]), ref_model,
                                 int(cfg["Threads"]), on_tensor=sink.write,
                                 on_open=on_layout)


def _decode(path: str, cfg: Config, sink: _Output,
            ref_model: Mapping[str, np.ndarray] | None, verbose: int
            ) -> tuple[int, codec.DecodeResult]:
    """(stream size, result) of the decoder cfg Decoder names."""
    max_memory = memory.parse_size(str(cfg["MaxMemory"]))
    max_elements, max_expansion = int(cfg["MaxTensorElements"]), int(cfg["MaxExpansion"])
    threads = int(cfg["Threads"])
    try:
        if str(cfg["Decoder"]) == "c":
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                buf: mmap.mmap | bytes = (mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
                                          if size else b"")
            try:  # the Python path's refusals, before anything is allocated for a tensor
                layout = streaming.scan_layout(buf, size, max_elements, max_memory,
                                               max_expansion, threads)
                # the container unit's limits (the C reader is opened without them)
                streaming.parse_container(buf, layout.refs, layout.mps, size, max_memory,
                                          max_expansion)
            finally:
                if isinstance(buf, mmap.mmap):
                    buf.close()
            reason = cstream.cannot_decode(layout.mps)
            if not reason:
                return size, _decode_c(path, layout, cfg, sink, ref_model)
            if verbose:
                print(f"{PROG}: note: decoding with --Decoder python: {reason}", file=sys.stderr)
        stream = streaming.decode_file(
            path, on_tensor=sink.write, keep=False, on_layout=sink.open,
            max_elements=max_elements, ref_model=ref_model, max_memory=max_memory,
            max_expansion=max_expansion, threads=threads)
    except OSError as exc:
        raise ModelIOError(f"cannot read bitstream '{path}': {exc.strerror}") from exc
    return stream.size, stream.result


def _main(argv: Sequence[str]) -> int:
    cfg, _ = parse_app_args(argv, DECODER_OPTIONS, PROG, DESCRIPTION, checks=validate)
    verbose = int(cfg["Verbose"])
    path = str(cfg["BitstreamFile"])
    out = str(cfg["OutputFile"])
    start = time.perf_counter()
    ref_model = streamio.open_model(str(cfg["RefModel"])) if cfg["RefModel"] else None
    sink = _Output(cfg, out)
    try:
        size, result = _decode(path, cfg, sink, ref_model, verbose)
        seconds = time.perf_counter() - start
        if verbose:
            print(f"NNTM {PROG}  {escape_text(path)}: {size} bytes, "
                  f"{len(result.reports)} tensors, format {result.version[0]}."
                  f"{result.version[1]}")
            width = name_column((r.name for r in result.reports), NAME_MIN, NAME_MAX)
            for r in result.reports:
                status = "OK" if r.data_ok else "MISMATCH"
                if r.params_ok is False:
                    status += ", parameter set MISMATCH"
                print(f"{pad(display_name(r.name, width), width)} {fmt_shape(r.shape):>16} "
                      f"{r.dtype:>9} {r.seconds:7.3f} s  [MD5: {r.md5} {status}]")
            print(f"Checks        : {_checks_line(result)}")
        problem = codec.mismatch_message(result)
        if problem:
            raise HashMismatchError(f"{problem}; no output written")
        sink.close(result.container)
    except BaseException:
        sink.abort()
        raise
    if verbose:
        print(f"Decode time   : {seconds:.3f} s; all {len(result.reports)} MD5s OK"
              + (f"; wrote {escape_text(out)}" if out else ""))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_app(PROG, _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
