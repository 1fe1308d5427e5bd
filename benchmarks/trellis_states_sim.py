"""Simulated entropy-coded trellis quantization with 4 to 64 states (issue #8, fifth session).

How much would a larger dependent-quantization trellis give?  A Viterbi search over the DQ
quantizers (Q0: even multiples of the half step, Q1: odd ones and 0; the parity of each level
drives the state) on i.i.d. Gaussian samples, minimising D + lambda * R with R the ideal
code length of the level under a static model P(level | quantizer), re-estimated from the
previous pass (four passes).  The trellises are Ungerboeck's rate-1/2 codes for 4 subsets
(parity-check polynomials h0, h1 in octal), in systematic feedback form: the quantizer is
the first state bit, the level's parity the coded input bit.  Also the two NNTM tables
(lib/common/contexts.h) for comparison.

Prints, per trellis: the static entropy of the levels given the quantizer (bit/sample), the
SNR and the gap to the Gaussian rate-distortion function, 6.02 R - SNR dB (scalar
quantization with ideal entropy coding: 1.53 dB at high rate).  No context modelling or
learning cost: compare the tables with one another.  Pure Python: 20k samples take about a
minute per 8 states.

    python benchmarks/trellis_states_sim.py --states 4,8,16,32 --samples 20000
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

# Ungerboeck's codes for one-dimensional signals (4 subsets), h0 and h1 in octal
POLYNOMIALS = {4: (0o5, 0o2), 8: (0o13, 0o04), 16: (0o23, 0o04), 32: (0o45, 0o10),
               64: (0o103, 0o024)}
NNTM_TABLES = {
    "nntm4": (((0, 2), (2, 0), (1, 3), (3, 1)), (0, 0, 1, 1)),
    "nntm8": (((0, 1), (4, 5), (1, 0), (5, 4), (7, 6), (3, 2), (6, 7), (2, 3)),
              (0, 0, 0, 0, 1, 1, 1, 1)),
}


def ungerboeck_table(states: int) -> tuple[np.ndarray, np.ndarray]:
    """next[state][parity] and quantizer[state] of the code with `states` states."""
    h0, h1 = POLYNOMIALS[states]
    nu = states.bit_length() - 1
    nxt = np.zeros((states, 2), np.int64)
    quant = np.zeros(states, np.int64)
    for s in range(states):
        p = [0] + [(s >> (j - 1)) & 1 for j in range(1, nu + 1)] + [0]
        quant[s] = p[1]
        for z in (0, 1):
            q = [p[j + 1] ^ (((h0 >> j) & 1) & p[1]) ^ (((h1 >> j) & 1) & z)
                 for j in range(1, nu + 1)]
            nxt[s, z] = sum(b << j for j, b in enumerate(q))
    return nxt, quant


def simulate(x: np.ndarray, half: float, nxt: np.ndarray, quant: np.ndarray, lam: float,
             passes: int = 4) -> tuple[float, float]:
    """(bit/sample, SNR dB) of the trellis on x with half step `half`."""
    n_states = len(quant)
    u = x / half
    kmax = int(np.abs(u).max() / 2) + 3
    logp = np.full((2, 2 * kmax + 1), np.log2(1.0 / (2 * kmax + 1)))
    for _ in range(passes):
        cost = np.full(n_states, np.inf)
        cost[0] = 0.0
        back = np.zeros((len(x), n_states), np.int64)
        pick = np.zeros((len(x), n_states), np.int64)
        for i, ui in enumerate(u):
            new = np.full(n_states, np.inf)
            for s in range(n_states):
                if not np.isfinite(cost[s]):
                    continue
                q = quant[s]
                base = int(np.floor(ui / 2)) if q == 0 else int(np.floor((ui + 1) / 2))
                for k in {base - 1, base, base + 1, base + 2, 0}:
                    if abs(k) > kmax:
                        continue
                    r = 2 * k if q == 0 or k == 0 else 2 * k - (1 if k > 0 else -1)
                    c = cost[s] + (ui - r) ** 2 * half * half - lam * logp[q, k + kmax]
                    t = nxt[s, k & 1]
                    if c < new[t]:
                        new[t], back[i, t], pick[i, t] = c, s, k
            cost = new
        s = int(np.argmin(cost))
        ks = np.zeros(len(x), np.int64)
        for i in range(len(x) - 1, -1, -1):
            ks[i] = pick[i, s]
            s = back[i, s]
        qs = np.zeros(len(x), np.int64)
        s = 0
        for i in range(len(x)):
            qs[i] = quant[s]
            s = nxt[s, ks[i] & 1]
        counts = np.full((2, 2 * kmax + 1), 0.01)
        np.add.at(counts, (qs, ks + kmax), 1)
        logp = np.log2(counts / counts.sum(axis=1, keepdims=True))
    rec = np.where((qs == 0) | (ks == 0), 2 * ks, 2 * ks - np.sign(ks)) * half
    bits = 0.0
    for q in (0, 1):
        _, c = np.unique(ks[qs == q], return_counts=True)
        bits -= float((c * np.log2(c / c.sum())).sum())
    return bits / len(x), 10 * np.log10(float((x * x).mean() / ((x - rec) ** 2).mean()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--states", default="4,8,16,32", help="Ungerboeck trellises to run")
    ap.add_argument("--nntm", action="store_true", help="also the two NNTM tables")
    ap.add_argument("--samples", type=int, default=20000)
    ap.add_argument("--step", type=float, default=2 ** -7 / 0.05,
                    help="step / sigma (default: QP -28 on weights of RMS 0.05)")
    ap.add_argument("--lambda-scale", type=float, default=0.1)
    args = ap.parse_args(argv)
    x = np.random.default_rng(0).standard_normal(args.samples)
    lam = args.lambda_scale * args.step ** 2
    runs = [(f"ungerboeck{n}", ungerboeck_table(int(n))) for n in args.states.split(",")]
    if args.nntm:
        runs += [(k, (np.array(t), np.array(q))) for k, (t, q) in NNTM_TABLES.items()]
    for name, (nxt, quant) in runs:
        rate, snr = simulate(x, args.step / 2, nxt, quant, lam)
        print(f"{name:<13} {rate:.4f} bit/sample  SNR {snr:.3f} dB  gap to R(D) "
              f"{6.0206 * rate - snr:.3f} dB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
