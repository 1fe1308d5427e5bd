"""DecoderApp: decode an NNTM bitstream, check every tensor's MD5, write the model.

    DecoderApp -b model.bit [-o decoded.safetensors] [--RefModel=old.safetensors]

A stream coded as an update (EncoderApp --RefModel) needs the same reference
model; a missing or different one is an error naming the tensor.

Prints `[MD5: <hex> OK]` for each tensor; exits non-zero on any mismatch, in
which case no output file is written.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from .. import codec, hls
from ..config import Config, parse_app_args
from ..errors import HashMismatchError, ModelIOError
from ..modelio import FORMATS, model_format, read_model, write_model
from ..options import DECODER_OPTIONS
from .common import (
    WRITE_EXTENSIONS,
    collision_problems,
    fmt_shape,
    input_problem,
    output_problem,
    run_app,
)

PROG = "DecoderApp"
DESCRIPTION = (
    "Decode an NNTM bitstream, check each tensor against the MD5 in its hash unit, and "
    "write the model (.safetensors or .npz). Exits non-zero on any mismatch. A stream coded "
    "as a model update needs --RefModel, the model it was coded against. An existing output "
    "file is overwritten (replaced only once the new file is complete); an output that is the "
    "same file as an input is refused."
)


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


def _main(argv: Sequence[str]) -> int:
    cfg, _ = parse_app_args(argv, DECODER_OPTIONS, PROG, DESCRIPTION, checks=validate)
    verbose = int(cfg["Verbose"])
    path = str(cfg["BitstreamFile"])
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ModelIOError(f"cannot read bitstream '{path}': {exc.strerror}") from exc
    start = time.perf_counter()
    ref_model = read_model(str(cfg["RefModel"])) if cfg["RefModel"] else None
    result = codec.decode_detailed(data, max_elements=int(cfg["MaxTensorElements"]),
                                   ref_model=ref_model)
    seconds = time.perf_counter() - start
    if verbose:
        print(f"NNTM {PROG}  {path}: {len(data)} bytes, {len(result.reports)} tensors")
        for r in result.reports:
            status = "OK" if r.ok else "MISMATCH"
            print(f"{r.name:<40.40} {fmt_shape(r.shape):>16} {r.dtype:>9} "
                  f"{r.seconds:7.3f} s  [MD5: {r.md5} {status}]")
    bad = [r.name for r in result.reports if not r.ok]
    if bad:
        raise HashMismatchError(
            f"{len(bad)} tensor(s) do not match their hash unit: " + ", ".join(bad)
            + "; no output written")
    out = str(cfg["OutputFile"])
    if out:
        write_model(out, result.tensors, output_format(cfg, result.source_format),
                    make_parents=True)
    if verbose:
        print(f"Decode time   : {seconds:.3f} s; all {len(result.reports)} MD5s OK"
              + (f"; wrote {out}" if out else ""))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_app(PROG, _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
