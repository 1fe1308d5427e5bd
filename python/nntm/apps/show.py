"""nntm-show: a picture of the encoder's decisions for one kernel tensor.

    nntm-show -b model.bit -t fc1.weight -o fc1.png [--rows 0:64 --cols 0:256]

Decodes the stream (checking every MD5), then draws the kernel tensor of the
named tensor as a heatmap of |weight| with the CU boundaries over it: skip CUs
are shaded, and each coded CU's QP (when it differs from the tensor QP) is
written in it.  Needs matplotlib (`pip install .[ce]` or `pip install matplotlib`).
"""

from __future__ import annotations

import argparse
import fnmatch
from collections.abc import Sequence

import numpy as np

from .. import codec, hls
from ..arrange import Arrangement, to_kernel
from ..errors import ConfigError, ModelIOError, NntmError
from .common import display_name, escape_text, run_app

PROG = "nntm-show"


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
         rows: tuple[int, int], cols: tuple[int, int]) -> int:
    """Write the picture; returns the number of CUs drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    r0, r1 = rows
    c0, c1 = cols
    view = np.abs(kernel[r0:r1, c0:c1].astype(np.float64))
    h, w = view.shape
    scale = min(16.0 / max(w, 1), 12.0 / max(h, 1), 0.25) * 4
    fig, ax = plt.subplots(figsize=(max(4.0, w * scale / 4 + 1.5), max(3.0, h * scale / 4 + 1)))
    im = ax.imshow(view, cmap="viridis", interpolation="nearest",
                   extent=(c0 - 0.5, c1 - 0.5, r1 - 0.5, r0 - 0.5))
    fig.colorbar(im, ax=ax, label="|weight|")
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
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return drawn


def _main(argv: Sequence[str]) -> int:
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[1].strip())
    ap.add_argument("-b", "--bitstream", required=True, help="NNTM bitstream")
    ap.add_argument("-t", "--tensor", required=True, help="tensor name (a glob: the first match)")
    ap.add_argument("-o", "--output", required=True, help="PNG file to write")
    ap.add_argument("--rows", help="START:STOP rows of the kernel tensor to draw")
    ap.add_argument("--cols", help="START:STOP columns of the kernel tensor to draw")
    args = ap.parse_args(list(argv))
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
    if name not in result.cus or len(result.cus[name]) == 0:
        raise ConfigError(f"tensor '{display_name(name)}' is not coded with the coding tree "
                          "(no CUs to draw)")
    units = hls.split_units(data)
    mps = hls.parse_model_parameter_set(units[0])
    tps = next(t for t in (hls.parse_tensor_parameter_set(u, mps) for u in units
                           if u.unit_type == hls.UnitType.TENSOR_PARAMETER_SET) if t.name == name)
    kernel = to_kernel(result.tensors[name].astype(np.float32), Arrangement(tps.arrangement))
    rows = _span(args.rows, kernel.shape[0], "--rows")
    cols = _span(args.cols, kernel.shape[1], "--cols")
    cus = result.cus[name]
    n_skip = int(np.sum(cus["mode"] == 1))
    n_intra = int(np.count_nonzero(cus["intra"]))
    title = (f"{display_name(name)}  {kernel.shape[0]}x{kernel.shape[1]}  QP {tps.qp}  "
             f"{len(cus)} CUs ({n_skip} skip" + (f", {n_intra} intra" if n_intra else "") + ")")
    drawn = draw(kernel, cus, tps.qp, title, args.output, rows, cols)
    print(f"{PROG}: wrote {escape_text(args.output)} ({drawn} CUs of '{display_name(name)}')")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_app(PROG, _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
