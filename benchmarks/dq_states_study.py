"""8 against 4 states of dependent quantization (issue #8): BD-rate on weight SNR.

Codes every quantized tensor of two or more dimensions of a CE model (up to MAXSIZE
elements each) with cfg/encoder_anchor.cfg + cfg/encoder_weight_fidelity.cfg at each QP,
once with the 4-state and once with the 8-state machine (C core directly, ROWS, window 10,
ten greater-than flags), checks that each decodes to the encoder's reconstruction, and
prints the pooled SNR of those tensors and the BD-rate of 8 against 4 states.

    python benchmarks/dq_states_study.py mobilenetv2 [--qps=-24,-28,-32,-36] [--max-size N]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

CFGS = ["cfg/encoder_anchor.cfg", "cfg/encoder_weight_fidelity.cfg"]


def point(tensors: dict, qp: int, dq: int, max_size: int) -> tuple[float, float]:
    """(bits/param, pooled SNR dB) of the 2-D+ tensors at one QP with DQ mode dq."""
    import nntm
    from nntm import core, hls
    from nntm.arrange import to_kernel
    from nntm.codec import _choose_mode, tensor_qp

    cfg = nntm.Config.from_files(CFGS, overrides={"QP": qp})
    bits, sig, noise, n = 0, 0.0, 0.0, 0
    for name, value in tensors.items():
        arr = np.asarray(value)
        if (arr.ndim < 2 or arr.size > max_size
                or _choose_mode(name, arr, cfg) != hls.CodingMode.QUANTIZED):
            continue
        k = to_kernel(arr.astype(np.float32))
        p = core.KernelParams(k.shape[0], k.shape[1], tensor_qp(cfg, arr.ndim, False, name),
                              int(cfg["QPDensity"]), int(cfg["NumGtFlags"]), core.TreeParams(),
                              dq, int(cfg["ProbWindow"]))
        r = core.encode_kernel(k, p, np.dtype(np.float32), True, float(cfg["LambdaScale"]), name)
        d = core.decode_kernel(r.payload, p, np.dtype(np.float32), name)
        if not np.array_equal(d.levels, r.levels) or d.recon.tobytes() != r.recon.tobytes():
            raise SystemExit(f"{name}: decoded != encoder's reconstruction")
        x = k.astype(np.float64)
        e = x - r.recon.astype(np.float64)
        bits += 8 * len(r.payload)
        sig += float((x * x).sum())
        noise += float((e * e).sum())
        n += k.size
    return bits / n, 10 * np.log10(sig / noise)


def main(argv: list[str] | None = None) -> int:
    from nntm.ce.bdrate import bd_rate
    from nntm.ce.models import get_adapter

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--qps", default="-24,-28,-32,-36", help="comma-separated QPs")
    ap.add_argument("--max-size", type=int, default=10**12, help="skip larger tensors")
    args = ap.parse_args(argv)
    tensors = get_adapter(args.model).load()
    curves = {}
    for dq in (1, 2):
        curves[dq] = []
        for qp in (int(q) for q in args.qps.split(",")):
            t0 = time.process_time()
            rate, snr = point(tensors, qp, dq, args.max_size)
            curves[dq].append((rate, snr))
            print(f"{4 * dq} states QP {qp}: {rate:.4f} bit/param {snr:.3f} dB "
                  f"cpu {time.process_time() - t0:.1f} s", flush=True)
    a, b = curves[1], curves[2]
    res = bd_rate([p[0] for p in a], [p[1] for p in a], [p[0] for p in b], [p[1] for p in b])
    print(f"BD-rate 8 against 4 states: {res.value:+.2f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
