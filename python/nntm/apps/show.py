"""nntm-show: a picture of the encoder's decisions for one kernel tensor.

    nntm-show -b model.bit -t fc1.weight -o fc1.png [--rows 0:64 --cols 0:256]

Decodes the stream (checking every MD5), then draws the kernel tensor of the
named tensor.  A tensor coded with the coding tree is drawn as a heatmap of
|weight| with the CU boundaries over it: skip CUs are shaded, and each coded
CU's QP (when it differs from the tensor QP) is written in it.  A raster-coded
quantized tensor (no coding tree, e.g. the quick start's) is drawn as its map
of |level| = |weight| / step (|weight| / step when the weights are not whole
steps: prediction, dependent quantization); a lossless or clustered tensor as
|weight|.  Zeros are grey.  Needs matplotlib: pip install "nntm[show]".
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import sys
from collections.abc import Sequence
from types import ModuleType

import numpy as np

from .. import codec, core, hls
from ..arrange import Arrangement, to_kernel
from ..errors import ConfigError, ModelIOError, NntmError
from .common import (
    collision_problems,
    display_name,
    escape_text,
    input_problem,
    output_problem,
    run_app,
)

PROG = "nntm-show"
#: the picture formats -o may name (matplotlib's writers of each)
PICTURE_EXTENSIONS = (".png", ".svg", ".pdf")
#: how to get matplotlib, named by --help and by the missing-matplotlib error
INSTALL_HINT = 'pip install "nntm[show]" (or pip install matplotlib)'


def _pyplot() -> ModuleType:
    """matplotlib.pyplot on the non-interactive Agg backend (ImportError if not installed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _span(text: str | None, size: int, what: str) -> tuple[int, int]:
    if not text:
        return 0, size
    try:
        a, b = (int(x) if x else d for x, d in zip(text.split(":"), (0, size), strict=True))
    except ValueError:
        raise ConfigError(f"{what} '{text}': use START:STOP") from None
    if not 0 <= a < b <= size:
        raise ConfigError(f"{what} '{text}' is outside 0:{size}")
    return a, b


def draw(kernel: np.ndarray, cus: np.ndarray, tensor_qp: int, title: str, path: str,
         rows: tuple[int, int], cols: tuple[int, int], label: str = "|weight|") -> int:
    """Write the picture of |kernel| (colour bar ``label``); returns the number of CUs drawn."""
    plt = _pyplot()
    from matplotlib.patches import Rectangle

    r0, r1 = rows
    c0, c1 = cols
    view = np.abs(kernel[r0:r1, c0:c1].astype(np.float64))
    h, w = view.shape
    scale = min(16.0 / max(w, 1), 12.0 / max(h, 1), 0.25) * 4
    fig, ax = plt.subplots(figsize=(max(4.0, w * scale / 4 + 1.5), max(3.0, h * scale / 4 + 1)))
    cmap = plt.get_cmap("viridis").with_extremes(bad="lightgrey")
    im = ax.imshow(np.ma.masked_equal(view, 0.0), cmap=cmap, interpolation="nearest",
                   extent=(c0 - 0.5, c1 - 0.5, r1 - 0.5, r0 - 0.5))
    fig.colorbar(im, ax=ax, label=label)
    drawn = 0
    for cu in cus:
        x, y, cw, ch = int(cu["x"]), int(cu["y"]), int(cu["w"]), int(cu["h"])
        if x >= c1 or y >= r1 or x + cw <= c0 or y + ch <= r0:
            continue
        drawn += 1
        skip = int(cu["mode"]) == 1
        ax.add_patch(Rectangle((x - 0.5, y - 0.5), cw, ch, fill=skip, facecolor="white",
                               alpha=0.35 if skip else 1.0, edgecolor="red", linewidth=0.6))
        dq = int(cu["qp"]) - tensor_qp
        # intra-predicted CUs: R (row mean), C (column mean), B (block copy) and an arrow
        # to the block a copy reads
        mark = {1: "R", 2: "C", 3: "B"}.get(int(cu["intra"]), "")
        label = " ".join(t for t in (mark, f"{dq:+d}" if dq else "") if t)
        if not skip and label and cw * ch >= 16:
            ax.text(x + cw / 2 - 0.5, y + ch / 2 - 0.5, label, ha="center", va="center",
                    fontsize=6, color="white")
        if mark == "B":
            cx, cy = x + cw / 2 - 0.5, y + ch / 2 - 0.5
            ax.annotate("", xy=(cx + int(cu["bv_x"]), cy + int(cu["bv_y"])), xytext=(cx, cy),
                        arrowprops={"arrowstyle": "->", "color": "orange", "linewidth": 0.6})
    ax.set_title(title, fontsize=9, parse_math=False)  # a '$' in a name is no mathtext
    ax.set_xlabel("column")
    ax.set_ylabel("row")
    fig.tight_layout()
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fig.savefig(path, dpi=150)
    except OSError as exc:
        raise ModelIOError(f"cannot write picture '{path}': {exc.strerror or exc}") from exc
    finally:
        plt.close(fig)
    return drawn


def raster_image(kernel: np.ndarray, tps: hls.TensorParameterSet) -> tuple[np.ndarray, str]:
    """What to draw of a tensor without CUs, and its colour-bar label.

    A quantized tensor in units of its step: its levels when every weight is a
    whole number of steps, else |weight| / step; any other tensor as |weight|.
    """
    values = kernel.astype(np.float64)
    if tps.coding_mode != hls.CodingMode.QUANTIZED:
        return values, "|weight|"
    steps = values / core.step_size(tps.qp, tps.qp_density)
    whole = np.rint(steps)
    if np.allclose(steps, whole, rtol=0.0, atol=1e-6):
        return whole, "|level|"
    return steps, "|weight| / step"


def _title(name: str, kernel: np.ndarray, tps: hls.TensorParameterSet, cus: np.ndarray) -> str:
    head = f"{display_name(name)}  {kernel.shape[0]}x{kernel.shape[1]}"
    if tps.coding_mode == hls.CodingMode.QUANTIZED:
        head += f"  QP {tps.qp}"
    if len(cus):
        n_skip = int(np.sum(cus["mode"] == 1))
        n_intra = int(np.count_nonzero(cus["intra"]))
        return (f"{head}  {len(cus)} CUs ({n_skip} skip"
                + (f", {n_intra} intra" if n_intra else "") + ")")
    mode = {hls.CodingMode.QUANTIZED: "raster-coded", hls.CodingMode.LOSSLESS: "lossless",
            hls.CodingMode.CLUSTERED: "clustered"}.get(tps.coding_mode, "")
    zeros = 100.0 * np.count_nonzero(kernel == 0) / kernel.size
    return f"{head}  {mode}, {zeros:.1f} % zero"


def _main(argv: Sequence[str]) -> int:
    ap = argparse.ArgumentParser(
        prog=PROG, description=" ".join(__doc__.split("\n\n")[2].split()),
        epilog=f"Needs matplotlib: {INSTALL_HINT}.")
    ap.add_argument("-b", "--bitstream", required=True, help="NNTM bitstream")
    ap.add_argument("-t", "--tensor", required=True, help="tensor name (a glob: the first match)")
    ap.add_argument("-o", "--output", required=True,
                    help="picture to write: .png, .svg or .pdf (overwritten if it exists)")
    ap.add_argument("--rows", help="START:STOP rows of the kernel tensor to draw")
    ap.add_argument("--cols", help="START:STOP columns of the kernel tensor to draw")
    args = ap.parse_args(list(argv))
    problems = [p for p in (input_problem("-b", args.bitstream),
                            output_problem("-o", args.output)) if p]
    suffix = os.path.splitext(args.output)[1].lower()
    if suffix not in PICTURE_EXTENSIONS:
        problems.append(f"-o '{args.output}': extension '{suffix or '(none)'}' names no picture "
                        f"format nntm-show writes (use {', '.join(PICTURE_EXTENSIONS)})")
    problems += collision_problems({"-b": args.bitstream}, {"-o": args.output})
    if problems:
        raise ConfigError("; ".join(problems))
    try:
        _pyplot()
    except ImportError:
        print(f"{PROG}: error: matplotlib is not installed; install it with {INSTALL_HINT}",
              file=sys.stderr)
        return 2
    try:
        with open(args.bitstream, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ModelIOError(f"cannot read bitstream '{args.bitstream}': {exc.strerror}") from exc
    result = codec.decode_detailed(data, trace=True)
    if not result.ok:
        raise NntmError("MD5 mismatch: the stream is damaged")
    names = [n for n in result.tensors if fnmatch.fnmatchcase(n, args.tensor)]
    if not names:
        raise ConfigError(f"no tensor matches '{escape_text(args.tensor)}'")
    name = names[0]
    units = hls.split_units(data)
    mps = hls.parse_model_parameter_set(units[0])
    tps = next(t for t in (hls.parse_tensor_parameter_set(u, mps) for u in units
                           if u.unit_type == hls.UnitType.TENSOR_PARAMETER_SET) if t.name == name)
    if result.tensors[name].size == 0:
        raise ConfigError(f"tensor '{display_name(name)}' has no elements: nothing to draw")
    kernel = to_kernel(result.tensors[name], Arrangement(tps.arrangement))
    rows = _span(args.rows, kernel.shape[0], "--rows")
    cols = _span(args.cols, kernel.shape[1], "--cols")
    cus = result.cus.get(name, np.zeros(0, dtype=core.CU_RECORD))
    if len(cus):
        image, label = kernel.astype(np.float32), "|weight|"
    else:
        image, label = raster_image(kernel, tps)
    drawn = draw(image, cus, tps.qp, _title(name, kernel, tps, cus), args.output, rows, cols,
                 label)
    what = f"{drawn} CUs" if len(cus) else label
    print(f"{PROG}: wrote {escape_text(args.output)} ({what} of '{display_name(name)}')")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_app(PROG, _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
