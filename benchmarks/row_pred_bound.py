"""What predicting a kernel row from an earlier row could save (issue #8, fifth session).

A high-rate estimate behind row prediction (format 1.5): each row r > 0 of each kernel tensor
(ROWS arrangement) may be coded as its difference to row r - 1 (or, with --any-row, to the
closest earlier row, python/nntm/rowref.py, paying log2(r) bits for its index) when that has
less energy; at high rate a row of n weights then saves n/2 * log2(E(row) / E(row - ref))
bits (Gaussian model, ignoring the reference's quantization noise and the flag per row).
Prints the tensors that gain more than 1 kB and the total in bit/param of the model and as a
share of --bits-per-param (the coded size; 4.8 is MiniLM's near 30 dB weight SNR).

    python benchmarks/row_pred_bound.py minilm [--any-row] [--bits-per-param 4.8]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def main(argv: list[str] | None = None) -> int:
    from nntm.arrange import to_kernel
    from nntm.ce.models import get_adapter
    from nntm.rowref import reference_hints

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--bits-per-param", type=float, default=4.8)
    ap.add_argument("--any-row", action="store_true",
                    help="also the closest earlier row (with log2(r) bits for its index)")
    args = ap.parse_args(argv)
    tensors = get_adapter(args.model).load()
    params = sum(np.asarray(v).size for v in tensors.values())
    total = 0.0
    for name, value in tensors.items():
        a = np.asarray(value)
        if a.ndim < 2 or a.size < 1000 or a.dtype.kind != "f":
            continue
        k32 = to_kernel(a.astype(np.float32))
        k = k32.astype(np.float64)
        plain = (k[1:] ** 2).sum(axis=1)
        diff = ((k[1:] - k[:-1]) ** 2).sum(axis=1)
        side = np.zeros_like(diff)
        if args.any_row:
            hint = reference_hints(k32)[1:]
            far = np.full_like(diff, np.inf)
            has = hint >= 0
            far[has] = ((k[1:][has] - k[hint[has]]) ** 2).sum(axis=1)
            index_bits = np.log2(np.arange(1, k.shape[0]) + 1.0)
            better = far < diff
            diff = np.where(better, far, diff)
            side = np.where(better, index_bits, 0.0)
        use = (diff < plain) & (diff > 0)
        gain = float((0.5 * np.log2(plain[use] / diff[use]) * k.shape[1] - side[use]).sum())
        total += gain
        if gain > 8000:
            print(f"{name:<50} {k.shape[0]:>6} rows, {int(use.sum()):>6} predicted: "
                  f"{gain / 8000:8.1f} kB, {gain / params:.4f} bit/param")
    print(f"{args.model}: {total / params:.4f} bit/param, "
          f"{100 * total / params / args.bits_per_param:.2f} % of {args.bits_per_param} bit/param")
    return 0


if __name__ == "__main__":
    sys.exit(main())
