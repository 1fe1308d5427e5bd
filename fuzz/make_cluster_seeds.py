#!/usr/bin/env python3
"""Seeds of fuzz/fuzz_cluster.c: every CLUSTERED tensor of the conformance streams.

    python3 fuzz/make_cluster_seeds.py OUTDIR
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

from nntm import cluster, conformance, hls  # noqa: E402

DTYPES = {"float32": 0, "float16": 1, "bfloat16": 2, "float64": 3}


def case_bytes(t: hls.TensorParameterSet, payload: bytes) -> bytes | None:
    c = t.cluster
    assert c is not None
    geo = cluster.layout(t.shape, c.point_type, c.subspace_axis, c.num_subspaces)
    if len(geo.dims) > 8 or max(geo.num_points) > 0xFFFF or max(geo.dims) > 0xFFFF:
        return None
    qps = (t.qp - c.codebook_qp_offset, t.qp - c.outlier_qp_offset, t.qp + c.residual_qp_offset)
    if any(not -128 <= q <= 127 for q in qps):
        return None
    flags = int(c.outliers_enabled) | (c.outlier_pos_mode << 1) | (int(c.residual_enabled) << 2)
    out = struct.pack("<BBbbbBBB", len(geo.dims) - 1, t.qp_density, *qps, flags,
                      t.num_gt_flags, DTYPES[t.dtype.name])
    for n, d, r, book in zip(geo.num_points, geo.dims, geo.row_points, c.codebooks, strict=True):
        out += struct.pack("<HHHH", n, d, book.shape[0], r)
    for book in c.codebooks:
        out += book.astype("<i4").tobytes()
    return out + payload


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    suite = conformance.load_suite(ROOT / "conformance" / "suite.json")
    n = 0
    for entry in suite.streams:
        data = suite.file(entry.bitstream).read_bytes()
        ref = conformance.load_ref_model(suite, entry)  # streams with predicted tensors
        for i, case in enumerate(conformance.kernel_cases(data, ref)):
            if case.coding_mode == hls.CodingMode.CLUSTERED and case.params is not None:
                blob = case_bytes(case.params, case.data)
                if blob is not None:
                    (out / f"{entry.name}_{i:02d}.cin").write_bytes(blob)
                    n += 1
    print(f"{n} cluster seeds in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
