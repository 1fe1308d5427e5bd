"""EncoderApp: encode a model into an NNTM bitstream.

    EncoderApp -c cfg/encoder_default.cfg [-c more.cfg] -i model.safetensors -b model.bit
               [-o recon.safetensors] [--RefModel=old.safetensors] [--QP=-30 --Key=value ...]

With --RefModel the model is coded as an update of that reference model (the
version the receiver already holds): each tensor is predicted from its namesake
there and only the residual is coded; DecoderApp needs the same --RefModel.

Without -i the bundled example model (a small CNN on scikit-learn's digits) is
encoded, and its test accuracy is reported before and after coding.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence

import numpy as np

from .. import codec, hls
from ..classes import Classifier, intra_problem
from ..config import Config, parse_app_args
from ..core import CU_SKIP, INTRA_NAMES
from ..modelio import model_format, read_model, write_model
from ..options import ENCODER_OPTIONS
from .common import (
    WRITE_EXTENSIONS,
    collision_problems,
    fmt_db,
    fmt_shape,
    input_problem,
    output_problem,
    run_app,
    write_bitstream,
)

PROG = "EncoderApp"
DESCRIPTION = (
    "Encode a neural-network model (.safetensors, .npz, .npy, .pt/.pth) into an NNTM "
    "bitstream. Prints one line per tensor (name, shape, layer type, bits, bits/param, "
    "weight SNR, time) and the totals. Without --InputFile the bundled digits CNN is "
    "encoded and its test accuracy is printed before and after. With --RefModel the model "
    "is coded as an update of the reference model (mode Q>R: predicted from it; Q>T<id>: "
    "from an earlier tensor, EarlierTensorPred); DecoderApp then needs the same --RefModel. "
    "Existing output files (-b, -o) are overwritten, each replaced only once the new file is "
    "complete; an output that is the same file as an input or as the other output is refused."
)

_SOURCE_FORMATS = {"safetensors": hls.SourceFormat.SAFETENSORS, "npz": hls.SourceFormat.NPZ}


def validate(cfg: Config) -> list[str]:
    """Every app-level problem (reported with the option problems, in one message)."""
    problems = []
    if not cfg["BitstreamFile"]:
        problems.append("BitstreamFile (-b) is required")
    inputs = {"InputFile (-i)": str(cfg["InputFile"]), "RefModel": str(cfg["RefModel"])}
    for key, path in inputs.items():
        problem = input_problem(key, path) if path else None
        if problem:
            problems.append(problem)
    impf = str(cfg["ImportanceFile"])
    if impf.startswith("@"):
        problems.append(f"ImportanceFile '{impf}' asks CEApp to measure maps; EncoderApp needs "
                        "a file (make one with nntm-calibrate, or --ImportanceFile= for none)")
    elif impf:
        problem = input_problem("ImportanceFile", impf)
        if problem:
            problems.append(problem)
        inputs["ImportanceFile"] = impf
    outputs = {"BitstreamFile (-b)": str(cfg["BitstreamFile"]),
               "ReconFile (-o)": str(cfg["ReconFile"])}
    for key, path in outputs.items():
        problem = output_problem(key, path) if path else None
        if problem:
            problems.append(problem)
    problems.extend(collision_problems(inputs, outputs))
    problems.extend(Classifier.problems(cfg))
    intra = intra_problem(cfg)
    if intra:
        problems.append(intra)
    recon = str(cfg["ReconFile"])
    if recon and not recon.endswith(WRITE_EXTENSIONS):
        problems.append(f"ReconFile '{recon}': use a {' or '.join(WRITE_EXTENSIONS)} name")
    return problems


def _line(cols: Sequence[str]) -> str:
    name, shape, layer, mode, qp, bits, bpp, snr, secs = cols
    return (f"{name:<34.34} {shape:>16} {layer:>9} {mode:>5} {qp:>4} {bits:>11} {bpp:>7} "
            f"{snr:>7} {secs:>7}")


# Q quantized, L lossless, C clustered (format 1.2); Q>R predicted from the reference
# model, Q>T<id> from an earlier tensor
_MODE_LETTERS = {"quantized": "Q", "lossless": "L", "clustered": "C"}


def _print_tensor(s: codec.TensorStats) -> None:
    print(_line([
        s.name, fmt_shape(s.shape), s.layer_type,
        _MODE_LETTERS.get(s.mode, "?") + ("" if s.pred == "-" else
                                          ">" + ("R" if s.pred == "ref" else s.pred.upper())),
        "-" if s.qp is None else str(s.qp), str(s.bits), f"{s.bits_per_param:.3f}",
        fmt_db(s.snr_db), f"{s.seconds:.3f}",
    ]), flush=True)


def _cu_summary(cus: dict[str, np.ndarray]) -> str:
    """Counts of the coded CUs: skipped, intra-predicted by mode."""
    recs = np.concatenate(list(cus.values()))
    text = f"{len(recs)} ({int(np.sum(recs['mode'] == CU_SKIP))} skip"
    intra = {name: int(np.sum(recs["intra"] == code))
             for code, name in INTRA_NAMES.items() if name != "none"}
    if any(intra.values()):
        text += ", intra " + ", ".join(f"{k} {v}" for k, v in intra.items())
    return text + ")"


def _pooled_snr(tensors: dict[str, np.ndarray], recon: dict[str, np.ndarray]) -> float:
    signal = noise = 0.0
    for name, x in tensors.items():
        if x.dtype.name in hls.FLOAT_DTYPES:
            a = x.astype(np.float64)
            e = a - recon[name].astype(np.float64)
            signal += float(np.sum(a * a))
            noise += float(np.sum(e * e))
    if noise == 0.0:
        return math.inf
    return 10 * math.log10(signal / noise) if signal else -math.inf


def _main(argv: Sequence[str]) -> int:
    cfg, files = parse_app_args(argv, ENCODER_OPTIONS, PROG, DESCRIPTION, checks=validate)
    verbose = int(cfg["Verbose"])
    inp = str(cfg["InputFile"])
    example = not inp
    if example:
        from ..example import EXAMPLE_MODEL_PATH

        inp = str(EXAMPLE_MODEL_PATH)
    tensors = read_model(inp)
    source = _SOURCE_FORMATS.get(model_format(inp), hls.SourceFormat.UNKNOWN)
    if verbose:
        print(f"NNTM {PROG}  format {hls.FORMAT_VERSION_MAJOR}.{hls.FORMAT_VERSION_MINOR}")
        print(f"Input         : {inp}{'  (bundled example model)' if example else ''}")
        print(f"Bitstream     : {cfg['BitstreamFile']}")
        if cfg["RefModel"]:
            print(f"Reference     : {cfg['RefModel']}  (coded as an update of it)")
        print(f"Config files  : {' '.join(files) if files else '(defaults)'}")
        print("Coding params : " + "  ".join(f"{k}={v}" for k, v in cfg.coding_items()))
        print()
        print(_line(["tensor", "shape", "layer", "mode", "QP", "bits", "bits/p", "SNR dB",
                     "time s"]))
    start = time.perf_counter()
    importance = read_model(str(cfg["ImportanceFile"])) if cfg["ImportanceFile"] else None
    ref_model = read_model(str(cfg["RefModel"])) if cfg["RefModel"] else None
    if ref_model is not None and not any(
            name in ref_model and tuple(np.shape(ref_model[name])) == tuple(np.shape(x))
            for name, x in tensors.items()):
        print(f"{PROG}: warning: RefModel '{cfg['RefModel']}' predicts nothing: no tensor of "
              "the model has a namesake of the same shape there (the model is coded without "
              "reference)", file=sys.stderr)
    result = codec.encode_with_recon(
        tensors, cfg, source, progress=_print_tensor if verbose else None, importance=importance,
        ref_model=ref_model)
    enc_seconds = time.perf_counter() - start
    write_bitstream(str(cfg["BitstreamFile"]), result.data)
    if cfg["ReconFile"]:
        write_model(str(cfg["ReconFile"]), result.recon, make_parents=True)
    if verbose:
        float_params = sum(x.size for x in tensors.values() if x.dtype.name in hls.FLOAT_DTYPES)
        raw_bytes = sum(x.nbytes for x in tensors.values())
        total_bits = 8 * len(result.data)
        print()
        print(f"Tensors       : {len(tensors)} ({float_params} float parameters)")
        print(f"Bitstream     : {len(result.data)} bytes, "
              f"{total_bits / max(float_params, 1):.3f} bits/param, "
              f"1/{raw_bytes / max(len(result.data), 1):.1f} of the input's {raw_bytes} bytes")
        print(f"Weight SNR    : {fmt_db(_pooled_snr(tensors, result.recon)).strip()} dB")
        if any(len(c) for c in result.cus.values()):  # tensors coded with the tree
            print(f"Coding units  : {_cu_summary(result.cus)}")
        predicted = [s for s in result.stats if s.pred_rows]
        if predicted:  # row prediction [1.5]
            print(f"Predicted rows: {sum(s.pred_rows for s in predicted)} of "
                  f"{sum(s.rows for s in predicted)} rows in {len(predicted)} tensor(s)")
        print(f"Encode time   : {enc_seconds:.3f} s")
        if example:
            from ..example import accuracy

            before, after = accuracy(tensors), accuracy(result.recon)
            print(f"Test accuracy : {before:.2f} % before, {after:.2f} % after coding "
                  f"({after - before:+.2f} points)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_app(PROG, _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
