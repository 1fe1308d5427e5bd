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

import sys
import time
from collections.abc import Mapping, Sequence
from functools import partial

import numpy as np

from .. import codec, hls, onnxio, ratecontrol, streaming, streamio
from ..classes import Classifier, intra_problem
from ..config import Config, parse_app_args
from ..core import CU_SKIP, INTRA_NAMES
from ..errors import ConfigError
from ..importance import map_problems
from ..modelio import model_format, read_model, read_model_container, write_model
from ..options import ENCODER_OPTIONS
from ..roles import parse_roles
from .common import (
    WRITE_EXTENSIONS,
    collision_problems,
    display_name,
    escape_text,
    fmt_db,
    fmt_shape,
    input_problem,
    name_column,
    output_problem,
    pad,
    run_app,
)

PROG = "EncoderApp"
DESCRIPTION = (
    "Encode a neural-network model (.safetensors, .npz, .npy, .pt/.pth, .onnx) into an NNTM "
    "bitstream (an ONNX model's graph travels in the stream: DecoderApp -o x.onnx rebuilds "
    "the file). Prints one line per tensor (name, shape, layer type, bits, bits/param, "
    "weight SNR, time) and the totals. Without --InputFile the bundled digits CNN is "
    "encoded and its test accuracy is printed before and after. With --RefModel the model "
    "is coded as an update of the reference model (mode Q>R: predicted from it; Q>T<id>: "
    "from an earlier tensor, EarlierTensorPred); DecoderApp then needs the same --RefModel. "
    "Existing output files (-b, -o) are overwritten, each replaced only once the new file is "
    "complete; an output that is the same file as an input or as the other output is refused."
)

_SOURCE_FORMATS = {"safetensors": hls.SourceFormat.SAFETENSORS, "npz": hls.SourceFormat.NPZ,
                   "onnx": hls.SourceFormat.ONNX}


def validate(cfg: Config) -> list[str]:
    """Every app-level problem (reported with the option problems, in one message)."""
    problems = []
    if not cfg["BitstreamFile"]:
        problems.append("BitstreamFile (-b) is required")
    inputs = {"InputFile (-i)": str(cfg["InputFile"]), "RefModel": str(cfg["RefModel"])}
    for key, path in inputs.items():
        # a model may be a sharded checkpoint's folder
        problem = streamio.input_problem(key, path) if path else None
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
    problems.extend(parse_roles(str(cfg["LosslessRoles"]))[1])
    problems.extend(ratecontrol.problems(cfg))
    intra = intra_problem(cfg)
    if intra:
        problems.append(intra)
    recon = str(cfg["ReconFile"])
    if recon and not recon.lower().endswith(WRITE_EXTENSIONS):
        problems.append(f"ReconFile '{recon}': use a {' or '.join(WRITE_EXTENSIONS)} name")
    elif recon.lower().endswith(".onnx") and not str(cfg["InputFile"]).lower().endswith(".onnx"):
        problems.append(f"ReconFile '{recon}': an .onnx reconstruction needs an .onnx input "
                        "(its graph)")
    return problems


#: bounds of the tensor-name column: names up to NAME_MAX columns are printed in full,
#: longer ones cut in the middle with an ellipsis
NAME_MIN, NAME_MAX = 34, 56


def _line(cols: Sequence[str], name_width: int = NAME_MIN) -> str:
    name, shape, layer, mode, qp, bits, bpp, snr, secs = cols
    return (f"{pad(display_name(name, name_width), name_width)} {shape:>16} {layer:>10} "
            f"{mode:>5} {qp:>4} {bits:>11} {bpp:>7} {snr:>7} {secs:>7}")


# Q quantized, L lossless, C clustered (format 1.2); Q>R predicted from the reference
# model, Q>T<id> from an earlier tensor
_MODE_LETTERS = {"quantized": "Q", "lossless": "L", "clustered": "C"}


def _tensor_line(s: codec.TensorStats, name_width: int = NAME_MIN) -> str:
    return _line([
        s.name, fmt_shape(s.shape), s.role or s.layer_type,
        _MODE_LETTERS.get(s.mode, "?") + ("" if s.pred == "-" else
                                          ">" + ("R" if s.pred == "ref" else s.pred.upper())),
        "-" if s.qp is None else str(s.qp), str(s.bits), f"{s.bits_per_param:.3f}",
        fmt_db(s.snr_db), f"{s.seconds:.3f}",
    ], name_width)


def _print_tensor(s: codec.TensorStats, name_width: int = NAME_MIN) -> None:
    print(_tensor_line(s, name_width), flush=True)


class _Progress:
    """A progress line on stderr (bytes of tensors done, MB/s, ETA, tensors done) while the
    per-tensor report goes to stdout; only when stderr is a terminal (tqdm)."""

    def __init__(self, tensors: dict[str, np.ndarray]) -> None:
        from tqdm import tqdm

        self.sizes = {k: int(np.asarray(v).nbytes) for k, v in tensors.items()}
        self.count, self.done = len(tensors), 0
        self.bar = tqdm(total=sum(self.sizes.values()),
                        unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
                        leave=False, desc="encoding", dynamic_ncols=True,
                        postfix=f"0/{self.count} tensors")

    def step(self, name: str, line: str) -> None:
        """The report line of tensor ``name`` on stdout, then the bar one tensor further."""
        self.bar.write(line, file=sys.stdout)
        self.done += 1
        self.bar.update(self.sizes.get(name, 0))
        self.bar.set_postfix_str(f"{self.done}/{self.count} tensors")

    def warn(self, line: str) -> None:
        self.bar.write(line, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()


def _progress_bar(tensors: dict[str, np.ndarray]) -> _Progress | None:
    return _Progress(tensors) if sys.stderr.isatty() else None


def _report_tensor(s: codec.TensorStats, bar: _Progress | None, name_width: int,
                   verbose: int = 1) -> None:
    """One tensor's report line (Verbose >= 1; on a terminal also a step of the progress
    line), and a warning on stderr when the encoder could not code it as asked (always)."""
    if verbose:
        if bar is None:
            _print_tensor(s, name_width)
        else:
            bar.step(s.name, _tensor_line(s, name_width))
    if s.note:
        line = f"{PROG}: warning: tensor '{escape_text(s.name)}': {s.note}"
        if bar is not None:
            bar.warn(line)
        else:
            print(line, file=sys.stderr, flush=True)


# the coding parameters printed together on a labelled line; a key missing here is
# printed in the last group, "other"
PARAM_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("quantization", ("QP", "QPDensity", "QPOffset1D", "QP1DMode", "QP1D", "QP1DRelStats",
                      "QP1DRelStatsOffset", "QP1DRelOffset", "QP1DRelVarQuantile",
                      "QP1DRelFloor", "RDOQ",
                      "LambdaScale", "LambdaGainFloor", "DepQuant", "DQStates")),
    ("importance", ("ImportanceQPScale", "ImportanceQPMaxOffset", "ImportanceFloor",
                    "ImportanceMaxStep")),
    ("entropy", ("NumGtFlags", "ProbWindow", "SuffixCtx", "LosslessMaxElements",
                 "NonFiniteWeights", "IntegrityHash")),
    ("prediction", ("InterPred", "PredScale", "PredLambdaScale", "PredQP1DMode",
                    "EarlierTensorPred", "RowPred")),
    ("tree", ("TreeType", "CTUSize", "MinQTSize", "MaxMTTDepth", "MinCUSize", "SkipCU",
              "CUQPDelta", "QPDeltaSearch", "IntraPred", "IntraCopyRange", "Preset")),
    ("classes", ("Arrangement", "LayerRules", "SignalRules", "ClassRules")),
    ("clustering", ("Cluster", "ClusterPoint", "ClusterPointRules", "ClusterSizes",
                    "ClusterSubspaceAxis", "ClusterSubspaces", "ClusterCodebookQPOffset",
                    "ClusterIterations", "ClusterMinElements")),
    ("outliers", ("ClusterOutliers", "OutlierMode", "OutlierThreshold", "OutlierQPOffset",
                  "OutlierPositions", "ClusterResidual", "ClusterResidualQPOffset")),
)
PARAMS_WIDTH = 100  # the parameter lines wrap before this column


def _wrap(items: Sequence[str], indent: int, width: int) -> list[str]:
    """``items`` joined by two spaces in lines of at most ``width`` columns (but one item
    a line at least); lines after the first are indented by ``indent``."""
    lines: list[str] = []
    line = ""
    for item in items:
        if line and indent + len(line) + 2 + len(item) > width:
            lines.append(line)
            line = item
        else:
            line = f"{line}  {item}" if line else item
    lines.append(line)
    return [lines[0]] + [" " * indent + ln for ln in lines[1:]]


def param_lines(items: Sequence[tuple[str, object]], width: int = PARAMS_WIDTH) -> list[str]:
    """The "Coding params" block: a heading, then one labelled line per parameter group
    (wrapped at ``width`` columns, the continuation lines aligned)."""
    values = {k: f"{k}={escape_text(str(v))}" for k, v in items}
    groups = [(label, [values.pop(k) for k in keys if k in values])
              for label, keys in PARAM_GROUPS]
    groups.append(("other", list(values.values())))
    label_width = max(len(label) for label, _ in groups)
    out = ["Coding params :"]
    for label, texts in groups:
        if texts:
            prefix = f"  {label:<{label_width}} : "
            wrapped = _wrap(texts, len(prefix), width)
            out.append(prefix + wrapped[0])
            out.extend(wrapped[1:])
    return out


def _cu_summary(cus: dict[str, np.ndarray]) -> str:
    """Counts of the coded CUs: skipped, intra-predicted by mode."""
    recs = np.concatenate(list(cus.values()))
    text = f"{len(recs)} ({int(np.sum(recs['mode'] == CU_SKIP))} skip"
    intra = {name: int(np.sum(recs["intra"] == code))
             for code, name in INTRA_NAMES.items() if name != "none"}
    if any(intra.values()):
        text += ", intra " + ", ".join(f"{k} {v}" for k, v in intra.items())
    return text + ")"


def _rate_line(cfg: Config, rate_plan: ratecontrol.Plan, size: int, float_params: int,
               stats: Sequence[codec.TensorStats]) -> str:
    """The achieved figure next to the target, in the target's unit."""
    floats = max(float_params, 1)
    bits = 8 * size
    if rate_plan.target_snr_db is not None:
        achieved = codec.pooled_snr(stats, weighted=rate_plan.weighted)
        kind = "importance-weighted SNR" if rate_plan.weighted else "weight SNR"
        return (f"Rate control  : target {rate_plan.target_snr_db:.2f} dB {kind}, achieved "
                f"{fmt_db(achieved).strip()} dB "
                f"({achieved - rate_plan.target_snr_db:+.2f} dB), estimated "
                f"{fmt_db(rate_plan.estimate_snr_db).strip()} dB; "
                f"{bits / floats:.3f} bits/param")
    assert rate_plan.target_bits is not None
    error = f"{100 * (bits / rate_plan.target_bits - 1):+.2f} %"
    if str(cfg["TargetSize"]).strip():
        return (f"Rate control  : target {rate_plan.target_bits / 8:.0f} bytes "
                f"({rate_plan.target_bits / floats:.3f} bits/param), achieved {size} bytes "
                f"({error}), estimated {rate_plan.estimate_bits / 8:.0f}")
    return (f"Rate control  : target {rate_plan.target_bits / floats:.3f} bits/param "
            f"({rate_plan.target_bits / 8:.0f} bytes), achieved {bits / floats:.3f}"
            f" ({error}), estimated {rate_plan.estimate_bits / floats:.3f}")


def _open_input(inp: str) -> tuple[Mapping[str, np.ndarray], bytes | None]:
    """The model to encode (safetensors and sharded checkpoints mapped tensor by tensor, not
    read) and, for an ONNX model, its graph template."""
    if streamio.model_source_format(inp) == "onnx":
        return read_model_container(inp)
    return streamio.open_model(inp), None


def _main(argv: Sequence[str]) -> int:
    cfg, files = parse_app_args(argv, ENCODER_OPTIONS, PROG, DESCRIPTION, checks=validate)
    verbose = int(cfg["Verbose"])
    inp = str(cfg["InputFile"])
    example = not inp
    if example:
        from ..example import EXAMPLE_MODEL_PATH

        inp = str(EXAMPLE_MODEL_PATH)
    tensors, template = _open_input(inp)
    source = _SOURCE_FORMATS.get(streamio.model_source_format(inp), hls.SourceFormat.UNKNOWN)
    # an ONNX model's graph travels in the stream's container unit (format 1.7)
    container = hls.Container(source, template) if template is not None else None
    # the graph's consumers of each tensor give its role (nntm.roles): structural inputs
    # (Resize scales, ...) are carried exactly, BatchNorm statistics get QP1D, ...
    consumers = onnxio.graph_consumers(template) if template is not None else None
    importance = read_model(str(cfg["ImportanceFile"])) if cfg["ImportanceFile"] else None
    if importance is not None:  # before any output: a map made for another model
        problems = map_problems(importance, tensors)
        if problems:
            shown = "; ".join(problems[:5]) + (" ..." if len(problems) > 5 else "")
            raise ConfigError(f"ImportanceFile '{cfg['ImportanceFile']}' does not match the "
                              f"model '{inp}' ({len(problems)} problem(s)): {shown}")
    name_width = name_column(tensors, NAME_MIN, NAME_MAX)
    if verbose:
        print(f"NNTM {PROG}  format {hls.FORMAT_VERSION_MAJOR}.{hls.FORMAT_VERSION_MINOR}")
        print(f"Input         : {escape_text(inp)}"
              f"{'  (bundled example model)' if example else ''}")
        print(f"Bitstream     : {escape_text(str(cfg['BitstreamFile']))}")
        if cfg["RefModel"]:
            print(f"Reference     : {escape_text(str(cfg['RefModel']))}  "
                  "(coded as an update of it)")
        print(f"Config files  : {escape_text(' '.join(files)) if files else '(defaults)'}")
        print("\n".join(param_lines(cfg.coding_items())))
        print()
        print(_line(["tensor", "shape", "role", "mode", "QP", "bits", "bits/p", "SNR dB",
                     "time s"], name_width))
    start = time.perf_counter()
    ref_model = streamio.open_model(str(cfg["RefModel"])) if cfg["RefModel"] else None
    if ref_model is not None and not any(
            name in ref_model and tuple(np.shape(ref_model[name])) == tuple(np.shape(x))
            for name, x in tensors.items()):
        print(f"{PROG}: warning: RefModel '{escape_text(str(cfg['RefModel']))}' predicts "
              "nothing: no tensor of the model has a namesake of the same shape there (the "
              "model is coded without reference)", file=sys.stderr)
    bar = _progress_bar(tensors) if verbose else None
    progress = partial(_report_tensor, bar=bar, name_width=name_width, verbose=verbose)
    target = ratecontrol.target_bits(cfg, tensors)
    target_db = ratecontrol.target_snr(cfg)
    rate_plan = None
    if target is not None:
        rate_plan = ratecontrol.plan(tensors, cfg, target, consumers, container, importance,
                                     ref_model, int(cfg["Threads"]))
    elif target_db is not None:
        rate_plan = ratecontrol.plan_snr(tensors, cfg, target_db, consumers, container,
                                         importance, ref_model, int(cfg["Threads"]))
    if rate_plan is not None:
        cfg = cfg.replace(QP=rate_plan.qp)
        if verbose:
            moved = list(rate_plan.offsets.values())
            coarser = (f", {moved.count(1)} at QP {rate_plan.qp + 1}" if 1 in moved else "")
            print(f"(rate control: QP {rate_plan.qp}, {moved.count(-1)} tensor(s) at "
                  f"QP {rate_plan.qp - 1}{coarser}, from sampled encodes at {rate_plan.probes} "
                  f"QPs)")
    recon_file = str(cfg["ReconFile"])
    # the reconstruction is written tensor by tensor, but an ONNX one fills the graph at the
    # end, and the example's accuracy needs the whole model
    keep = example or (bool(recon_file) and model_format(recon_file) == "onnx")
    writer = None
    if recon_file and not keep:
        writer = streamio.ModelWriter(recon_file, [
            (name, np.asarray(tensors[name]).dtype.newbyteorder("<"), np.shape(tensors[name]))
            for name in tensors])
    try:
        result = streaming.write_stream(str(cfg["BitstreamFile"]), partial(
            streaming.encode_file, tensors, cfg, source_format=source, progress=progress,
            importance=importance, ref_model=ref_model,
            qp_offsets=rate_plan.offsets if rate_plan else None, consumers=consumers,
            container=container, threads=int(cfg["Threads"]),
            on_recon=writer.write if writer is not None else None, keep_recon=keep))
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    assert isinstance(result, streaming.EncodeStream)
    enc_seconds = time.perf_counter() - start
    if bar is not None:
        bar.close()
    if writer is not None:
        writer.close()
    elif recon_file:
        write_model(recon_file, result.recon, make_parents=True, template=template)
    if verbose:
        float_params = sum(s.num_params for s in result.stats if s.dtype in hls.FLOAT_DTYPES)
        raw_bytes = sum(np.asarray(x).nbytes for x in tensors.values())
        total_bits = 8 * result.size
        print()
        print(f"Tensors       : {len(tensors)} ({float_params} float parameters)")
        print(f"Bitstream     : {result.size} bytes, "
              f"{total_bits / max(float_params, 1):.3f} bits/param, "
              f"1/{raw_bytes / max(result.size, 1):.1f} of the input's {raw_bytes} bytes")
        if rate_plan is not None:
            print(_rate_line(cfg, rate_plan, result.size, float_params, result.stats))
        print(f"Weight SNR    : {fmt_db(codec.pooled_snr(result.stats)).strip()} dB")
        if importance is not None:
            print(f"Weighted SNR  : {fmt_db(codec.pooled_snr(result.stats, True)).strip()} dB "
                  "(importance-weighted: the maps' estimate at the layers' outputs)")
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
