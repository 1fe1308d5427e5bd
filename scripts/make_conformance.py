#!/usr/bin/env python3
"""Make and check the NNTM conformance suite (docs/conformance.md).

    python3 scripts/make_conformance.py --generate [--force-new-version] [NAME ...]
    python3 scripts/make_conformance.py --check-determinism [NAME ...]

--generate (re)makes the synthetic source models (conformance/sources/), the streams
(bitstreams/NAME.bit), their md5 files, their descriptions (conformance/NAME.md) and
the manifest (conformance/suite.json) from the table STREAMS below and the cfg files
in conformance/cfg/.  A stored stream decodes to its MD5s forever: --generate refuses
to replace a stored stream (or a stored source) when the decoded MD5s would change,
unless --force-new-version is given (only with a deliberate format version change).
For the streams of the format 1.1 tools (verify=True) it also refuses a stream whose
decoded data does not show every feature listed for it (stream_facts: the parameter
sets, the decoder's CU trace, the decoded levels).  Nothing is written when anything is
refused.

--check-determinism re-encodes every stream's source with the command stored in the
manifest and compares the bytes with the stored stream, exactly.

Run from anywhere; paths are relative to the repository root.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import shlex
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import ml_dtypes
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))  # a checkout without `pip install -e .`

import nntm  # noqa: E402
from nntm import cluster, codec, conformance, hls  # noqa: E402
from nntm.arrange import Arrangement, LayerType, classify, from_kernel  # noqa: E402

SUITE = ROOT / "conformance" / "suite.json"
EXAMPLE = "python/nntm/example/digits_cnn.safetensors"
BF16 = np.dtype(ml_dtypes.bfloat16)

# ----------------------------------------------------------------- source models
# Each generator gets its own numpy Generator (PCG64) with a fixed seed.  The
# stored files in conformance/sources/ are the truth; regenerating them must give
# the same tensors (checked by --generate).


def _normal(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> np.ndarray:
    return rng.standard_normal(shape) * std


def _laplace(rng: np.random.Generator, shape: tuple[int, ...], scale: float) -> np.ndarray:
    return rng.laplace(0.0, scale, shape)


def src_base_b(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """float16, bfloat16 and float64 weights (and one float32 norm)."""
    return {
        "conv.weight": _normal(rng, (16, 8, 3, 3), 0.05).astype(np.float16),
        "conv.bias": _normal(rng, (16,), 0.02).astype(np.float16),
        "proj.weight": _laplace(rng, (32, 72), 0.03).astype(BF16),
        "proj.bias": _normal(rng, (32,), 0.02).astype(BF16),
        "head.weight": _normal(rng, (10, 32), 0.1).astype(np.float64),
        "head.bias": _normal(rng, (10,), 0.05).astype(np.float64),
        "norm.weight": (1.0 + _normal(rng, (32,), 0.1)).astype(np.float32),
    }


def src_qp(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Ordinary weights of every float type, for the moderate-QP streams."""
    return {
        "conv.weight": _normal(rng, (24, 12, 3, 3), 0.04).astype(np.float32),
        "conv.bias": _normal(rng, (24,), 0.02).astype(np.float32),
        "fc.weight": _laplace(rng, (40, 96), 0.03).astype(np.float32),
        "fc.bias": _normal(rng, (40,), 0.02).astype(np.float32),
        "embed.weight": _normal(rng, (50, 16), 0.2).astype(BF16),
        "out.weight": _normal(rng, (8, 40), 0.1).astype(np.float16),
        "out.bias": _normal(rng, (8,), 0.05).astype(np.float64),
    }


def src_qp_fine(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Tiny weights for QP -128 at QPDensity 0 (step 2^-128): levels up to 2^30 - 64,
    float32 subnormals, reconstruction into the subnormal range; exact zeros for QP -192."""
    w = _normal(rng, (16, 24), 2.0**-110).astype(np.float32)
    w[0, 0] = np.float32(5e-39)            # subnormal float32, level 2
    w[0, 1] = np.float32(-1e-45)           # the smallest subnormal, level 0
    w[0, 2] = np.float32(2.0**-128)        # level 1, reconstructed as a subnormal
    w[1, 0] = np.float32(2.0**-99)         # level 2^29
    w[1, 1] = np.float32(-(2.0**24 - 1) * 2.0**-122)  # level -(2^30 - 64)
    zero = np.zeros((24,), np.float32)
    zero[::3] = -0.0
    return {
        "tiny.weight": w,
        "tiny.bias": zero,                 # QP -192: only zeros are representable
        "tiny_bf16.weight": _normal(rng, (8, 16), 2.0**-112).astype(BF16),
        "tiny_f64.weight": _normal(rng, (8, 12), 2.0**-108).astype(np.float64),
    }


def src_qp_coarse(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Huge weights for QP 127 at QPDensity 0 (step 2^127): most levels 0, a few +-1 and
    +-2; level 2 reconstructs to 2^128, beyond float32, i.e. an infinity."""
    w = _normal(rng, (12, 20), 1.0).astype(np.float32)
    f32max = np.finfo(np.float32).max
    big = [1e38, -1e38, 2e38, -2.5e38, f32max, -f32max, 9e37, -8e37]
    for i, v in enumerate(big):
        w[(3 * i) % 12, (7 * i + 1) % 20] = np.float32(v)
    b = _normal(rng, (20,), 1e38).astype(np.float64)
    b = np.clip(b, -3e38, 3e38)
    return {
        "huge.weight": w,
        "huge.bias": b,                    # QP 191: all levels 0
        "huge_bf16.weight": (_normal(rng, (6, 10), 1e38)).astype(BF16),
    }


def src_shapes(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Shapes: 0-d, 1-element, empty, odd, 3-D, 4-D (conv, depthwise, pointwise), 8-D."""
    def n(shape: tuple[int, ...], std: float = 0.1) -> np.ndarray:
        return _normal(rng, shape, std).astype(np.float32)

    return {
        "scalar": np.array(0.7071, dtype=np.float32),
        "one": n((1,)),
        "one4d": n((1, 1, 1, 1)),
        "empty": np.zeros((0, 5), np.float32),
        "empty3": np.zeros((3, 0, 2), np.float16),
        "odd.weight": n((7, 13)),
        "row.weight": n((1, 257)),
        "col.weight": n((257, 1)),
        "conv.weight": n((5, 3, 3, 3)),
        "dw.weight": n((8, 1, 3, 3)),
        "pw.weight": n((16, 8, 1, 1)),
        "conv1d.weight": n((6, 4, 5)),
        "eight_d": n((2, 1, 2, 1, 3, 1, 2, 1)),
        "embed_tokens.weight": n((30, 8), 0.5),
        "bias_1d": n((13,), 0.01),
        "blöck.wéight.测试": n((3, 4)),
        "a" * 200 + ".weight": n((2, 3)),
    }


def src_lossless(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Every integer dtype and bool (with their extreme values), small float tensors carried
    by LosslessMaxElements, and float tensors with NaN (with payloads), infinities, -0.0."""
    def ints(dtype: type, shape: tuple[int, ...]) -> np.ndarray:
        info = np.iinfo(dtype)
        a = rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
        flat = a.reshape(-1)
        flat[0], flat[-1] = info.min, info.max
        return a

    f32 = _normal(rng, (4, 4), 1.0).astype(np.float32)
    f32.reshape(-1)[:8] = np.array(
        [np.nan, np.inf, -np.inf, -0.0, 1e-45, np.finfo(np.float32).max, 0.0, -1e-40],
        np.float32)
    f32.view(np.uint32).reshape(-1)[8] = 0x7FC12345    # quiet NaN with a payload
    f32.view(np.uint32).reshape(-1)[9] = 0xFF800001    # signalling NaN, sign set
    f16 = _normal(rng, (70,), 1.0).astype(np.float16)
    f16[[0, 5, 69]] = [np.nan, np.inf, -np.inf]
    bf = _normal(rng, (80,), 1.0).astype(BF16)
    bf[[1, 2, 3]] = np.array([np.nan, -np.inf, np.inf], np.float32).astype(BF16)
    f64 = _normal(rng, (3, 30), 1.0)
    f64[0, 0], f64[1, 1], f64[2, 2] = np.nan, np.inf, -np.inf
    f64.view(np.uint64)[2, 3] = 0x7FF0000000000001     # signalling NaN
    return {
        "i8": ints(np.int8, (4, 5)),
        "i16": ints(np.int16, (3, 7)),
        "i32": ints(np.int32, (2, 2, 3)),
        "i64": ints(np.int64, (5,)),
        "u8": ints(np.uint8, (16,)),
        "u16": ints(np.uint16, (6, 2)),
        "u32": ints(np.uint32, (9,)),
        "u64": ints(np.uint64, (2, 3)),
        "mask": rng.random((3, 4)) < 0.5,
        "i32_scalar": np.array(-123456, np.int32),
        "bool_scalar": np.array(True),
        "small_f32": _normal(rng, (8, 8), 0.1).astype(np.float32),     # 64 elements
        "small_f16": _normal(rng, (64,), 0.1).astype(np.float16),      # 64 elements
        "just_over_f32": _normal(rng, (65,), 0.1).astype(np.float32),  # quantized
        "nonfinite_f32": f32,
        "nonfinite_f16": f16,
        "nonfinite_bf16": bf,
        "nonfinite_f64": f64,
    }


def src_gtx(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Levels of every magnitude 2^k, k = 0..29, both signs, at step 2^-5 (QP -20, density 2),
    so that the Exp-Golomb remainder takes every prefix length up to 29."""
    step = 2.0**-5
    levels = np.round(_laplace(rng, (16, 64), 3.0)).astype(np.int64)
    for k in range(30):
        lo = 1 << k
        v = int(rng.integers(lo, 2 * lo)) if k else 1
        if v.bit_length() > 24:                       # keep it exact in float32
            v &= ~((1 << (v.bit_length() - 24)) - 1)
        v = min(v, (1 << 30) - 64)
        r, c = 2 + k // 8, (k * 7) % 64
        levels[r, c] = v if k % 2 else -v
        levels[r + 8, (c + 3) % 64] = -(v if k % 2 else -v)
    levels[0, :30] = 0
    levels[1, :30] = np.arange(30)                    # a ramp of small levels
    levels[0, 40], levels[15, 63] = (1 << 30) - 64, -((1 << 30) - 64)  # the largest exact
    w = (levels * step).astype(np.float32)
    bias = np.round(_laplace(rng, (64,), 200.0)) * 2.0**-7  # QP -28: step 2^-7
    return {"big.weight": w, "big.bias": bias.astype(np.float32)}


def src_recon(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Values whose reconstruction at step 5 * 2^-10 (QP -31, QPDensity 2) needs rounding:
    every third float16 and every bfloat16 of [2^-3, 2^6) with random signs (ties, carries
    out of the mantissa), float16 values up to its maximum 65504, float32 levels up to 2^29.7
    (more than 24 significant bits after the mantissa 5), and float16 subnormals at step
    5 * 2^-26 (QP -95, the 1-D tensor)."""
    def signs(n: int) -> np.ndarray:
        return np.where(rng.random(n) < 0.5, -1.0, 1.0)

    f16_bits = np.arange(np.float16(0.125).view(np.uint16), np.float16(64).view(np.uint16), 3,
                         dtype=np.uint16)
    f16 = f16_bits.view(np.float16).astype(np.float64) * signs(f16_bits.size)
    top = np.array([65504, -65504, 65472, -65440, 65408, 60000, -32768, 32752], np.float64)
    f16 = np.concatenate([f16, top])
    f16 = np.concatenate([f16, np.zeros(-f16.size % 32)]).astype(np.float16).reshape(-1, 32)
    bf_bits = np.arange(0x3E00, 0x4280, dtype=np.uint16)          # [2^-3, 2^6) in bfloat16
    bf = (bf_bits.view(BF16).astype(np.float64) * signs(bf_bits.size)).astype(BF16)
    f32 = (np.exp2(rng.uniform(18, 22, 512)) * signs(512)).astype(np.float32).reshape(16, 32)
    sub_bits = np.concatenate([np.arange(1, 1024, 7), np.arange(1024, 1100, 5)]).astype(np.uint16)
    sub = sub_bits.view(np.float16).astype(np.float64) * signs(sub_bits.size)
    return {
        "f16.weight": f16,
        "bf16.weight": bf.reshape(-1, 32),
        "f32.weight": f32,
        "f64.weight": _normal(rng, (8, 8), 3.0),
        "f16_subnormal.bias": sub.astype(np.float16),
    }


# Sources of the format 1.1 streams.  The coding tree search of the encoder separates
# regions that code differently, so these models are made of blocks laid out on a random
# partition of each CTU into the children of every split type (as coding_tree( ) makes
# them): blocks of zeros (skip CUs), of Laplace weights, or of exact multiples of the
# step of another QP (CU QP deltas).  What the encoder made of them is checked on the
# decoded streams (stream_facts), not assumed.


def _step(qp: int, density: int) -> float:
    """The step size of a QP (docs/bitstream.md clause 5.5.1), exactly."""
    per = 1 << density
    frac = qp % per
    return float(np.ldexp(per + frac, (qp - frac) // per - density))


def _split_children(x: int, y: int, w: int, h: int, split: str) -> list[tuple[int, ...]]:
    if split == "QT":
        return [(x, y, w // 2, h // 2), (x + w // 2, y, w // 2, h // 2),
                (x, y + h // 2, w // 2, h // 2), (x + w // 2, y + h // 2, w // 2, h // 2)]
    if split == "BT_H":
        return [(x, y, w, h // 2), (x, y + h // 2, w, h // 2)]
    if split == "BT_V":
        return [(x, y, w // 2, h), (x + w // 2, y, w // 2, h)]
    if split == "TT_H":
        return [(x, y, w, h // 4), (x, y + h // 4, w, h // 2), (x, y + 3 * h // 4, w, h // 4)]
    return [(x, y, w // 4, h), (x + w // 4, y, w // 2, h), (x + 3 * w // 4, y, w // 4, h)]


def _blocks(rng: np.random.Generator, rows: int, cols: int, ctu: int,
            fill: Callable[[tuple[int, int]], np.ndarray],
            splits: tuple[str, ...] = ("QT", "BT_H", "BT_V", "TT_H", "TT_V"),
            p_zero: float = 0.5, max_depth: int = 3) -> np.ndarray:
    """A rows x cols array: each CTU-sized square split at random (probability 0.8 per
    node, down to sides of 2, quad splits only above the other splits), each leaf a
    block of zeros (probability p_zero) or fill(shape)."""
    out = np.zeros((rows, cols))

    def node(x: int, y: int, w: int, h: int, depth: int, qt_ok: bool) -> None:
        if x >= cols or y >= rows:
            return
        allowed = [s for s in splits
                   if {"QT": qt_ok and w == h and w >= 4, "BT_H": h >= 4, "BT_V": w >= 4,
                       "TT_H": h >= 8, "TT_V": w >= 8}[s]]
        if allowed and depth < max_depth and rng.random() < 0.8:
            split = allowed[int(rng.integers(len(allowed)))]
            for child in _split_children(x, y, w, h, split):
                node(*child, depth + 1, qt_ok and split == "QT")
        elif rng.random() >= p_zero:
            block = out[y:y + h, x:x + w]
            block[...] = fill(block.shape)

    for y in range(0, rows, ctu):
        for x in range(0, cols, ctu):
            node(x, y, ctu, ctu, 0, True)
    return out


def _laplace_blocks(rng: np.random.Generator, rows: int, cols: int, ctu: int, scale: float,
                    **kw: object) -> np.ndarray:
    """_blocks of Laplace weights, each block at scale x 2^U(-1, 2)."""
    def fill(shape: tuple[int, int]) -> np.ndarray:
        return _laplace(rng, shape, scale * float(np.exp2(rng.uniform(-1.0, 2.0))))
    return _blocks(rng, rows, cols, ctu, fill, **kw)  # type: ignore[arg-type]


def _grid_blocks(rng: np.random.Generator, rows: int, cols: int, ctu: int, qp: int,
                 deltas: tuple[int, ...], **kw: object) -> np.ndarray:
    """_blocks whose blocks hold integer multiples (-6..6) of the step of QP + d, d drawn
    from deltas (QPDensity 2): exact at CU QP delta d."""
    def fill(shape: tuple[int, int]) -> np.ndarray:
        d = deltas[int(rng.integers(len(deltas)))]
        return rng.integers(-6, 7, shape) * _step(qp + d, 2)
    return _blocks(rng, rows, cols, ctu, fill, p_zero=0.25, **kw)  # type: ignore[arg-type]


def src_tree_a(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Block-structured float32 weights for the coding tree: zero and Laplace blocks on
    random QT/BT/TT partitions of CTUs of 32 (linear 45x75), 16 (conv 27x4x3x3, kernel
    27x36) and 8 (embedding 21x19, bias 45); no size is a multiple of its CTU size."""
    conv = _laplace_blocks(rng, 27, 36, 16, 0.1).reshape(27, 4, 3, 3)
    bias = _laplace(rng, (45,), 0.05)
    bias[rng.random(45) < 0.4] = 0.0
    bias[8:16] = 0.0
    return {
        "fc.weight": _laplace_blocks(rng, 45, 75, 32, 0.1).astype(np.float32),
        "conv.weight": conv.astype(np.float32),
        "embed.weight": _laplace_blocks(rng, 21, 19, 8, 0.1, max_depth=2).astype(np.float32),
        "fc.bias": bias.astype(np.float32),
    }


TREE_B_DELTAS = (-8, -5, -2, 0, 2, 5, 8)


def src_tree_b(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Zero blocks and blocks of exact multiples of the step of QP -20 + d, d in
    -8, -5, -2, 0, 2, 5, 8 (QPDensity 2), for skip CUs and CU QP deltas: linear 40x44
    (CTU 16), conv 20x3x3x3 (kernel 20x27, CTU 8, quad splits only), embedding 24x36
    (CTU 16); a Laplace bias."""
    d = TREE_B_DELTAS
    return {
        "fc.weight": _grid_blocks(rng, 40, 44, 16, -20, d).astype(np.float32),
        "conv.weight": _grid_blocks(rng, 20, 27, 8, -20, d, splits=("QT",))
        .reshape(20, 3, 3, 3).astype(np.float32),
        "embed.weight": _grid_blocks(rng, 24, 36, 16, -20, d).astype(np.float32),
        "fc.bias": _laplace(rng, (40,), 0.02).astype(np.float32),
    }


def src_dq_a(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Laplace weights for dependent quantization, float32 and bfloat16, with outliers of
    2^k steps of QP -20 (k up to 20) for long Exp-Golomb remainders."""
    fc = _laplace(rng, (24, 40), 0.05)
    pos = rng.choice(fc.size, 40, replace=False)
    fc.reshape(-1)[pos] = np.where(rng.random(40) < 0.5, -1.0, 1.0) * np.exp2(
        rng.uniform(-3.0, 15.0, 40))
    proj = _laplace(rng, (16, 32), 0.08)
    proj.reshape(-1)[rng.choice(proj.size, 12, replace=False)] = np.exp2(
        rng.uniform(0.0, 8.0, 12)) * np.where(rng.random(12) < 0.5, -1.0, 1.0)
    return {
        "fc.weight": fc.astype(np.float32),
        "proj.weight": proj.astype(BF16),
        "conv.weight": _laplace(rng, (8, 4, 3, 3), 0.1).astype(np.float32),
        "fc.bias": _normal(rng, (24,), 0.02).astype(np.float32),
    }


DQ_B_DELTAS = (-8, -2, 0, 2, 8)


def src_dq_b(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Zero blocks and blocks of exact multiples of the step of QP -20 + d, d in
    -8, -2, 0, 2, 8, on CTUs of 16 (float32 linear 36x44) and 8 (bfloat16 embedding
    20x30)."""
    d = DQ_B_DELTAS
    return {
        "fc.weight": _grid_blocks(rng, 36, 44, 16, -20, d).astype(np.float32),
        "embed.weight": _grid_blocks(rng, 20, 30, 8, -20, d).astype(BF16),
    }


def src_tiles(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """4-D convolution weights with pruned (all-zero) kernels: 3x3 (8x6x3x3), 5x5
    (4x4x5x5), 1x3 (6x4x1x3), depthwise 3x3 (16x1x3x3), pointwise (16x8x1x1)."""
    def conv(shape: tuple[int, ...], std: float, pruned: float) -> np.ndarray:
        w = _normal(rng, shape, std)
        w[rng.random(shape[:2]) < pruned] = 0.0
        return w.astype(np.float32)

    return {
        "conv3.weight": conv((8, 6, 3, 3), 0.1, 0.4),
        "conv5.weight": conv((4, 4, 5, 5), 0.05, 0.3),
        "conv13.weight": conv((6, 4, 1, 3), 0.1, 0.3),
        "dw.weight": conv((16, 1, 3, 3), 0.2, 0.25),
        "pw.weight": conv((16, 8, 1, 1), 0.1, 0.3),
    }


def src_signal(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A small transformer-like model whose tensor names select signal types and layer
    types: token embedding, patch-embedding conv, attention and MLP linears, a norm, a
    pooler and an output head."""
    def n(shape: tuple[int, ...], std: float) -> np.ndarray:
        return _laplace(rng, shape, std).astype(np.float32)

    return {
        "embed_tokens.weight": n((40, 16), 0.2),
        "patch_embed.proj.weight": n((16, 3, 2, 2), 0.1),
        "layers.0.attn.qkv.weight": n((48, 16), 0.08),
        "layers.0.attn.out.weight": n((16, 16), 0.08),
        "layers.0.mlp.fc1.weight": n((32, 16), 0.06),
        "layers.0.mlp.fc2.weight": n((16, 32), 0.06),
        "layers.0.norm.weight": (1.0 + _normal(rng, (16,), 0.1)).astype(np.float32),
        "pooler.weight": n((16, 16), 0.1),
        "lm_head.weight": n((40, 16), 0.1),
    }


def src_pred_ref(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The reference model of PRED_A_1 (the version the receiver holds)."""
    def n(shape: tuple[int, ...], std: float) -> np.ndarray:
        return _laplace(rng, shape, std)

    return {
        "enc.weight": n((48, 40), 0.05).astype(np.float32),
        "enc.bias": n((48,), 0.1).astype(np.float32),
        "conv.weight": n((16, 8, 3, 3), 0.05).astype(np.float32),
        "proj.weight": n((32, 24), 0.05).astype(np.float16),
        "head.weight": n((24, 32), 0.05).astype(BF16),
        "new_head.weight": n((10, 24), 0.1).astype(np.float32),
        "norm.weight": (1.0 + _normal(rng, (64,), 0.1)).astype(np.float32),
    }


def src_pred_new(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """PRED_A_1's model: an update of src_pred_ref (rebuilt from its seed) where the first
    16 rows of enc.weight are unchanged, conv.weight shrank by 3 %, head.weight changed
    dtype (bfloat16 -> float32) and new_head.weight was trained anew."""
    ref = src_pred_ref(np.random.default_rng(SOURCES["pred_ref"].seed))

    def moved(name: str, std: float) -> np.ndarray:
        x = ref[name].astype(np.float64)
        return x + _normal(rng, x.shape, std)

    enc = moved("enc.weight", 0.002)
    enc[:16] = ref["enc.weight"][:16]
    return {
        "enc.weight": enc.astype(np.float32),
        "enc.bias": moved("enc.bias", 0.001).astype(np.float32),
        "conv.weight": (0.97 * moved("conv.weight", 0.001)).astype(np.float32),
        "proj.weight": moved("proj.weight", 0.002).astype(np.float16),
        "head.weight": moved("head.weight", 0.002).astype(np.float32),
        "new_head.weight": _laplace(rng, (10, 24), 0.1).astype(np.float32),
        "norm.weight": moved("norm.weight", 1e-4).astype(np.float32),
    }


def src_pred_b(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Tensors that repeat an earlier tensor of the same model, scaled (PRED_B_1)."""
    base = _laplace(rng, (32, 32), 0.05)
    return {
        "layers.0.weight": base.astype(np.float32),
        "layers.1.weight": (0.5 * base + _normal(rng, (32, 32), 0.001)).astype(np.float32),
        "other.weight": _laplace(rng, (32, 32), 0.05).astype(np.float32),
        "layers.2.weight": (-base + _normal(rng, (32, 32), 0.002)).astype(np.float32),
        "layers.2.bias": _normal(rng, (32,), 0.02).astype(np.float32),
    }
# ---- clustering-based quantization (format 1.2)


def src_cluster_a(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Scalar codebooks: Laplace and normal weights of every float type, weights drawn
    around three values (a natural three-entry codebook), and a 1-D bias."""
    centres = np.array([-0.1, 0.0, 0.12])
    mix = centres[rng.integers(0, 3, (32, 64))] + _normal(rng, (32, 64), 0.004)
    return {
        "fc.weight": _laplace(rng, (64, 96), 0.03).astype(np.float32),
        "embed.weight": _normal(rng, (100, 32), 0.05).astype(np.float16),
        "conv.weight": _laplace(rng, (16, 8, 3, 3), 0.05).astype(BF16),
        "head.weight": _normal(rng, (10, 64), 0.1).astype(np.float64),
        "mix.weight": mix.astype(np.float32),
        "fc.bias": _normal(rng, (64,), 0.02).astype(np.float32),
    }


def src_cluster_b(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Vector points: conv weights whose kernels, filters and input-channel slices repeat
    a few patterns (plus noise), a pointwise conv and a linear weight."""
    def patterned(shape: tuple[int, ...], axis: int, patterns: int) -> np.ndarray:
        unit = [d for i, d in enumerate(shape) if i != axis] if axis >= 0 else list(shape[2:])
        base = _normal(rng, (patterns, *unit), 0.1)
        if axis < 0:      # kernels: one of the patterns per (o, i)
            pick = rng.integers(0, patterns, shape[:2])
            return base[pick] + _normal(rng, shape, 0.01)
        pick = rng.integers(0, patterns, shape[axis])
        out = np.moveaxis(base[pick], 0, axis)
        return out + _normal(rng, shape, 0.01)
    return {
        "conv1.weight": patterned((16, 8, 3, 3), -1, 6).astype(np.float32),
        "conv2.weight": patterned((12, 6, 3, 3), 0, 3).astype(np.float32),
        "conv3.weight": patterned((8, 10, 5, 5), 1, 4).astype(np.float32),
        "pw.weight": _normal(rng, (16, 8, 1, 1), 0.1).astype(np.float32),
        "fc.weight": _laplace(rng, (24, 48), 0.05).astype(np.float32),
    }


def src_cluster_c(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Outliers: Laplace weights with 1 % of the weights (and 2 of the 128 conv kernels)
    20 to 60 times larger, in float32 and float16."""
    fc = _laplace(rng, (64, 128), 0.02)
    hit = rng.random(fc.shape) < 0.01
    fc[hit] = rng.choice([-1.0, 1.0], hit.sum()) * rng.uniform(0.4, 1.2, hit.sum())
    conv = _laplace(rng, (16, 8, 3, 3), 0.03)
    conv[3, 5] = _normal(rng, (3, 3), 1.0)
    conv[11, 0] = _normal(rng, (3, 3), 1.0)
    half = _laplace(rng, (32, 48), 0.05)
    half[rng.random(half.shape) < 0.01] = 2.0
    return {"fc.weight": fc.astype(np.float32), "conv.weight": conv.astype(np.float32),
            "proj.weight": half.astype(np.float16)}


def src_cluster_d(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Subspaces: a linear weight whose output-channel groups and a conv whose
    input-channel groups have different scales (0.01, 0.1, 0.03, ...)."""
    fc = np.concatenate([_laplace(rng, (16, 64), s) for s in (0.01, 0.1, 0.03)])
    conv = np.concatenate([_laplace(rng, (12, 3, 3, 3), s) for s in (0.02, 0.2, 0.05)], axis=1)
    return {"fc.weight": fc.astype(np.float32), "conv.weight": conv.astype(np.float32),
            "fc.bias": _normal(rng, (48,), 0.02).astype(np.float32)}


@dataclass(frozen=True)
class Source:
    path: str
    seed: int
    make: Callable[[np.random.Generator], dict[str, np.ndarray]]
    # an ONNX source [1.7]: the file's bytes (``make`` then gives its float tensors)
    onnx_bytes: Callable[[np.random.Generator], bytes] | None = None


def src_row_pred(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Rows that continue the row above (a position embedding: a random walk down each
    column, 40x64 float32), a token embedding of shared-mean rows between independent ones
    and rows 36..45 near copies of rows further up (48x32 bfloat16), independent rows (a
    linear weight, 24x40 float32), a conv for the coding tree (no row prediction there) and
    a bias."""
    pos = rng.normal(0, 0.3, (1, 64)) + np.cumsum(rng.normal(0, 0.01, (40, 64)), axis=0)
    mean = rng.normal(0, 0.2, (1, 32))
    tok = _normal(rng, (48, 32), 0.2)
    tok[8:30] = mean + _normal(rng, (22, 32), 0.01)
    tok[36:46] = tok[[0, 5, 2, 31, 7, 33, 1, 3, 4, 6]] + _normal(rng, (10, 32), 0.005)
    return {
        "pos.embedding": pos.astype(np.float32),
        "tok.embedding": tok.astype(BF16),
        "fc.weight": _normal(rng, (24, 40), 0.1).astype(np.float32),
        "conv.weight": _normal(rng, (8, 4, 3, 3), 0.1).astype(np.float32),
        "fc.bias": _normal(rng, (24,), 0.05).astype(np.float32),
    }


def src_entry(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Tensors for entry points [1.8] (EP_A_1, EP_B_1): an embedding of 520 rows of 160 that
    continue the row above with rows 300..309 repeating rows further up (83 200 elements,
    more than the C decoder's band), a linear 100x48 bfloat16, a wide 6x3000 float16 (one
    row a substream), a small linear below the threshold, a conv for the coding tree and a
    bias."""
    emb = rng.normal(0, 0.2, (1, 160)) + np.cumsum(rng.normal(0, 0.02, (520, 160)), axis=0)
    emb[300:310] = emb[[3, 40, 77, 120, 150, 199, 230, 260, 280, 295]] + _normal(
        rng, (10, 160), 0.004)
    return {
        "emb.weight": emb.astype(np.float32),
        "fc.weight": _normal(rng, (100, 48), 0.1).astype(BF16),
        "wide.weight": _normal(rng, (6, 3000), 0.05).astype(np.float16),
        "small.weight": _normal(rng, (16, 16), 0.1).astype(np.float32),
        "conv.weight": _normal(rng, (8, 4, 3, 3), 0.1).astype(np.float32),
        "fc.bias": _normal(rng, (100,), 0.05).astype(np.float32),
    }


def src_intra_a(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Weights with the structure intra prediction uses (INTRA_A_1): a linear 48x80 of
    8x16 tiles repeated with small noise (block copy), a linear 40x64 whose rows are
    constant offsets plus noise (row mean), a linear 64x40 whose columns are (column
    mean), an embedding 37x53 (no multiple of the CTU size) of repeated 4x8 tiles with
    zero blocks, and a Laplace bias."""
    tile = _laplace(rng, (8, 16), 0.2)
    copy = np.tile(tile, (6, 5)) + _normal(rng, (48, 80), 0.004)
    rows = np.repeat(_laplace(rng, (40, 1), 0.3), 64, axis=1) + _normal(rng, (40, 64), 0.004)
    cols = np.repeat(_laplace(rng, (1, 40), 0.3), 64, axis=0) + _normal(rng, (64, 40), 0.004)
    small = _laplace(rng, (4, 8), 0.2)
    embed = np.tile(small, (10, 7))[:37, :53] + _normal(rng, (37, 53), 0.004)
    embed[16:24, 24:40] = 0.0
    return {
        "copy.weight": copy.astype(np.float32),
        "rows.weight": rows.astype(np.float32),
        "cols.weight": cols.astype(np.float32),
        "embed.weight": embed.astype(np.float32),
        "copy.bias": _laplace(rng, (48,), 0.05).astype(np.float32),
    }


def onnx_a_file(rng: np.random.Generator) -> bytes:
    """A Conv + MatMul network as an ONNX file (opset 17, IR 8), built with onnx.helper:
    a conv weight and bias and a linear weight as initializers (raw_data), a Constant node
    weight (value, typed float_data) and a Constant value_floats, an If whose then branch holds
    a Constant weight and whose else branch a value_floats constant, a sparse initializer, and
    an int64 Reshape shape, which stays in the container's template, exact."""
    import onnx  # noqa: PLC0415 - the onnx extra
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415

    info = helper.make_tensor_value_info
    conv_w = _normal(rng, (8, 3, 3, 3), 0.2).astype(np.float32)
    conv_b = _normal(rng, (8,), 0.05).astype(np.float32)
    fc_w = _normal(rng, (288, 10), 0.1).astype(np.float32)
    const_w = _normal(rng, (10, 10), 0.3).astype(np.float32)
    then_w = _normal(rng, (10,), 0.5).astype(np.float32)
    else_w = _normal(rng, (10,), 0.5).astype(np.float32)
    gain = (1.0 + _normal(rng, (10,), 0.1)).astype(np.float32)
    idx = np.sort(rng.choice(100, 16, replace=False)).astype(np.int64)
    sparse = helper.make_sparse_tensor(
        numpy_helper.from_array(_normal(rng, (16,), 0.3).astype(np.float32), "mix.weight"),
        numpy_helper.from_array(idx, "mix.weight.indices"), [10, 10])
    then_g = helper.make_graph(
        [helper.make_node("Constant", [], ["then.bias"],
                          value=numpy_helper.from_array(then_w, "then.bias")),
         helper.make_node("Add", ["z", "then.bias"], ["then_out"], name="then_add")],
        "then", [], [info("then_out", TensorProto.FLOAT, [1, 10])])
    else_g = helper.make_graph(
        [helper.make_node("Constant", [], ["else.scale"], value_floats=else_w.tolist()),
         helper.make_node("Mul", ["z", "else.scale"], ["else_out"], name="else_mul")],
        "else", [], [info("else_out", TensorProto.FLOAT, [1, 10])])
    nodes = [
        helper.make_node("Conv", ["x", "conv.weight", "conv.bias"], ["c"], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Reshape", ["r", "flat.shape"], ["f"], name="flatten"),
        helper.make_node("MatMul", ["f", "fc.weight"], ["y"], name="fc"),
        helper.make_node("Constant", [], ["proj.weight"], name="proj_const",
                         value=helper.make_tensor("proj.weight", TensorProto.FLOAT, [10, 10],
                                                  const_w.reshape(-1).tolist())),
        helper.make_node("Constant", [], ["gain"], name="gain_const", value_floats=gain.tolist()),
        helper.make_node("MatMul", ["y", "proj.weight"], ["p"], name="proj"),
        helper.make_node("Mul", ["p", "gain"], ["q"], name="scale"),
        helper.make_node("MatMul", ["q", "mix.weight"], ["z"], name="mix"),
        helper.make_node("ReduceSum", ["z"], ["sum"], name="sum", keepdims=0),
        helper.make_node("Greater", ["sum", "threshold"], ["cond"], name="test"),
        helper.make_node("If", ["cond"], ["out"], name="If_0", then_branch=then_g,
                         else_branch=else_g),
    ]
    graph = helper.make_graph(
        nodes, "onnx_a", [info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [info("out", TensorProto.FLOAT, [1, 10])],
        initializer=[numpy_helper.from_array(conv_w, "conv.weight"),
                     numpy_helper.from_array(conv_b, "conv.bias"),
                     numpy_helper.from_array(fc_w, "fc.weight"),
                     numpy_helper.from_array(np.array([1, -1], np.int64), "flat.shape"),
                     numpy_helper.from_array(np.array(0.0, np.float32), "threshold")],
        sparse_initializer=[sparse])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def src_onnx_a(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The float tensors of onnx_a_file() (a Conv + MatMul ONNX graph with initializers, a
    sparse initializer, Constant node weights, an If subgraph with a constant in each branch
    and an int64 Reshape shape), as nntm.onnxio reads them."""
    from nntm import onnxio  # noqa: PLC0415

    onnx = onnxio.import_onnx("the ONNX conformance source")
    return onnxio.split_model(onnx.ModelProto.FromString(onnx_a_file(rng)))[0]


SOURCES: dict[str, Source] = {
    "base_b": Source("conformance/sources/base_b.safetensors", 1001, src_base_b),
    "qp": Source("conformance/sources/qp.safetensors", 1002, src_qp),
    "qp_fine": Source("conformance/sources/qp_fine.safetensors", 1003, src_qp_fine),
    "qp_coarse": Source("conformance/sources/qp_coarse.safetensors", 1004, src_qp_coarse),
    "shapes": Source("conformance/sources/shapes.safetensors", 1005, src_shapes),
    "lossless": Source("conformance/sources/lossless.safetensors", 1006, src_lossless),
    "gtx": Source("conformance/sources/gtx.safetensors", 1007, src_gtx),
    "recon": Source("conformance/sources/recon.safetensors", 1008, src_recon),
    "tree_a": Source("conformance/sources/tree_a.safetensors", 1009, src_tree_a),
    "tree_b": Source("conformance/sources/tree_b.safetensors", 1010, src_tree_b),
    "dq_a": Source("conformance/sources/dq_a.safetensors", 1011, src_dq_a),
    "dq_b": Source("conformance/sources/dq_b.safetensors", 1012, src_dq_b),
    "tiles": Source("conformance/sources/tiles.safetensors", 1013, src_tiles),
    "signal": Source("conformance/sources/signal.safetensors", 1014, src_signal),
    "pred_ref": Source("conformance/sources/pred_ref.safetensors", 1019, src_pred_ref),
    "pred_new": Source("conformance/sources/pred_new.safetensors", 1020, src_pred_new),
    "pred_b": Source("conformance/sources/pred_b.safetensors", 1021, src_pred_b),
    "cluster_a": Source("conformance/sources/cluster_a.safetensors", 1015, src_cluster_a),
    "cluster_b": Source("conformance/sources/cluster_b.safetensors", 1016, src_cluster_b),
    "cluster_c": Source("conformance/sources/cluster_c.safetensors", 1017, src_cluster_c),
    "cluster_d": Source("conformance/sources/cluster_d.safetensors", 1018, src_cluster_d),
    "intra_a": Source("conformance/sources/intra_a.safetensors", 1022, src_intra_a),
    "row_pred": Source("conformance/sources/row_pred.safetensors", 1023, src_row_pred),
    "onnx_a": Source("conformance/sources/onnx_a.onnx", 1024, src_onnx_a, onnx_a_file),
    "entry": Source("conformance/sources/entry.safetensors", 1025, src_entry),
}


def make_source(src: Source) -> dict[str, np.ndarray]:
    return src.make(np.random.default_rng(src.seed))


# ----------------------------------------------------------------- the streams


@dataclass(frozen=True)
class Spec:
    name: str              # FEATURE_Letter_rev
    source: str            # a key of SOURCES, or "example"
    features: tuple[str, ...]
    purpose: str           # one paragraph for the description
    # A retired stream: the encoder no longer makes it from its command (e.g. after an
    # encoder change), but it stays in the suite, decode-only, with its MD5s; its
    # successor is the next rev.  --generate only checks that it still decodes.
    retired: bool = False
    # Every feature is a statement of stream_facts( ) (format 1.1 streams): --generate
    # refuses the stream unless the decoded stream shows each of them.
    verify: bool = False
    # A key of SOURCES: the reference model of a stream with predicted tensors (format
    # 1.2), stored beside the source and given to the encoder and decoder (--RefModel).
    ref: str = ""


STREAMS: tuple[Spec, ...] = (
    Spec("BASE_A_1", "example",
         ("float32", "QUANTIZED", "RDOQ 1", "QP -20", "QPDensity 2", "QPOffset1D -8",
          "NumGtFlags 4", "layer_type conv/linear/1-D", "source_format safetensors"),
         "The anchor: the default configuration of format 1.0 (the coding keys of "
         "cfg/encoder_default.cfg, frozen in conformance/cfg/BASE_A_1.cfg) on the bundled "
         "digits CNN. Conv, linear and bias tensors, all float32."),
    Spec("BASE_B_1", "base_b",
         ("float16", "bfloat16", "float64", "float32", "QUANTIZED", "RDOQ 1",
          "reconstruction to every float dtype", "layer_type conv/linear/1-D"),
         "Quantized coding of float16, bfloat16 and float64 tensors: the exact conversion "
         "of the integer reconstruction into each output type (round to nearest even)."),
    Spec("QP_A_1", "qp",
         ("QPDensity 0", "QP -9", "QPOffset1D -3", "step mantissa 1",
          "float32", "bfloat16", "float16", "float64", "layer_type embedding"),
         "QPDensity 0: the step size is 2^QP (mantissa 1, shift QP); one QP for 2-D and "
         "higher tensors, QP - 3 for 1-D tensors."),
    Spec("QP_B_1", "qp",
         ("QPDensity 3", "QP -45", "QPOffset1D -13", "step mantissas 11 and 14",
          "float32", "bfloat16", "float16", "float64"),
         "QPDensity 3 (8 QP steps per doubling): QP -45 gives step 11 * 2^-9 and the 1-D "
         "QP -58 gives 14 * 2^-11, so the fractional part of the QP is non-zero."),
    Spec("QP_C_1", "qp_fine",
         ("QPDensity 0", "QP -128 (option minimum)", "QPOffset1D -64 (QP -192)",
          "levels up to 2^30 - 64", "float32 subnormal input and output",
          "bfloat16", "float64", "negative zero"),
         "The finest QP the encoder accepts: step 2^-128 on tiny weights, giving levels up "
         "to 2^30 - 64 and reconstructions in the float32 subnormal range; the 1-D tensor "
         "is coded at QP -192 (QP + QPOffset1D, beyond the option range, within the "
         "syntax range) and holds only zeros, the only values it can represent."),
    Spec("QP_D_1", "qp_coarse",
         ("QPDensity 0", "QP 127 (option maximum)", "QPOffset1D 64 (QP 191)",
          "reconstruction overflow to infinity", "mostly zero levels", "bfloat16", "float64"),
         "The coarsest QP: step 2^127. Ordinary weights quantize to 0 (long runs of zero "
         "levels), weights near the float32 maximum to +-1 or +-2; level 2 reconstructs to "
         "2^128, beyond the float32 range, which the reconstruction process turns into an "
         "infinity. 1-D tensors at QP 191. Retired (decode-only) since the encoder keeps "
         "reconstructions finite (commit 0520a66): the stream is the only one that makes a "
         "decoder produce an infinity from finite levels; QP_D_2 is its successor.",
         retired=True),
    Spec("QP_D_2", "qp_coarse",
         ("QPDensity 0", "QP 127 (option maximum)", "QPOffset1D 64 (QP 191)",
          "levels +-1 at step 2^127", "mostly zero levels", "bfloat16", "float64"),
         "The coarsest QP, step 2^127, with the encoder that keeps every reconstruction "
         "within the output type's finite range: ordinary weights quantize to 0 (long runs "
         "of zero levels), weights near the float32 maximum to +-1 (2^127). 1-D tensors at "
         "QP 191. Successor of QP_D_1 (same source and coding keys)."),
    Spec("SHAPE_A_1", "shapes",
         ("0-d tensor (QUANTIZED, layer_type scalar)", "1-element tensors", "empty tensors",
          "odd shapes", "1xN and Nx1", "3-D", "4-D conv/depthwise/pointwise", "8-D (max ndim)",
          "layer_type embedding", "QPOffset1D -6", "LosslessMaxElements 0",
          "UTF-8 and 206-byte tensor names"),
         "Tensor shapes and the kernel-tensor arrangement (rows = dim 0): with "
         "LosslessMaxElements 0 even the 0-d and 1-element tensors are QUANTIZED (1x1 "
         "kernel tensors); empty tensors are LOSSLESS with an empty payload. Every "
         "layer_type the encoder produces appears."),
    Spec("LOSSLESS_A_1", "lossless",
         ("LOSSLESS", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
          "uint64", "bool", "0-d int and bool", "LosslessMaxElements 64",
          "NonFiniteWeights lossless", "NaN payloads", "+-Inf", "-0.0", "float subnormals"),
         "LOSSLESS coding: every integer dtype and bool with its extreme values, float "
         "tensors of at most LosslessMaxElements (64) elements, and float tensors holding "
         "NaN (with payloads, quiet and signalling) and infinities, carried bit-exactly "
         "with NonFiniteWeights lossless. One float tensor of 65 elements is QUANTIZED."),
    Spec("GTX_A_1", "gtx",
         ("NumGtFlags 1", "abs_remainder prefixes 0..29", "levels up to 2^30 - 64",
          "both signs", "egp_class 0 and 1"),
         "NumGtFlags 1 (num_gt_flags_minus1 0): every level above 1 goes to the "
         "Exp-Golomb remainder; levels of every magnitude 2^k, k = 0..29, make every "
         "prefix length up to the maximum 29 appear."),
    Spec("GTX_B_1", "gtx",
         ("NumGtFlags 15 (maximum)", "abs_remainder prefixes 0..29",
          "levels up to 2^30 - 64", "all 15 greater-than flag context sets"),
         "NumGtFlags 15 (num_gt_flags_minus1 14, the maximum): fifteen greater-than flags "
         "before the remainder, on the same source as GTX_A_1."),
    Spec("RECON_A_1", "recon",
         ("reconstruction rounding (round to nearest, ties to even)",
          "carry out of the mantissa", "float16 up to 65504", "float16 subnormal output",
          "float32 levels up to 2^29.7", "bfloat16 every value of 9 octaves", "float64",
          "QP -31 (step mantissa 5)", "QPOffset1D -64 (QP -95)", "RDOQ 0"),
         "The conversion of the integer reconstruction level x 5 x 2^shift into the "
         "output type when it does not fit the type's mantissa: rounding to nearest with "
         "ties to even, carries out of the mantissa into the exponent, float16 values up "
         "to the format's maximum, float16 subnormals (the 1-D tensor at QP -95) and "
         "float32 values with more than 24 significant bits. The other streams have step "
         "mantissas that are powers of two or levels too small to need rounding."),
    Spec("RDOQ_A_1", "example",
         ("RDOQ 0", "round to nearest", "float32", "QP -20", "QPDensity 2"),
         "RDOQ off: the encoder rounds to the nearest level. RDOQ is an encoder choice "
         "(the decoder is the same); this stream has other level statistics than "
         "BASE_A_1 on the same model and QP."),
    # ---- format 1.1: every feature below is checked on the decoded stream (verify=True)
    Spec("TREE_A_1", "tree_a",
         ("format 1.1", "TOOL_CODING_TREE", "tree_partition_type 3 (QTMTT)",
          "split QT", "split BT_H", "split BT_V", "split TT_H", "split TT_V",
          "kernel sizes not multiples of the CTU size",
          "border CUs (nominal size beyond the kernel)",
          "split nodes partly outside the kernel", "children entirely outside the kernel",
          "CTUSize 8", "CTUSize 16", "CTUSize 32", "MinQTSize 2", "MinQTSize 4",
          "MinQTSize 8", "MaxMTTDepth 3", "MaxMTTDepth 4", "MinCUSize 1",
          "cu_skip_enabled_flag 1", "skip CUs", "cu_qp_delta_enabled_flag 0",
          "layer_type linear", "layer_type conv", "layer_type embedding", "layer_type 1-D",
          "dtype float32"),
         "The coding tree (tree_partition_type 3, QTMTT) with every split type: quad, "
         "binary and ternary splits, horizontal and vertical, on block-structured weights "
         "whose kernel sizes are not multiples of the CTU size, so that CTUs of the last "
         "row and column are clipped: split flags coded for nodes partly outside the "
         "kernel, children entirely outside (not coded), CUs of which only the inside is "
         "coded. Three CTU sizes (32 for the linear tensor, 16 for the conv, 8 for the "
         "embedding and the bias, whose kernel is a single row), set per layer type with "
         "ClassRules. Skip CUs on, CU QP deltas off.",
         verify=True),
    Spec("TREE_B_1", "tree_b",
         ("format 1.1", "TOOL_CODING_TREE", "tree_partition_type 0 (NONE)",
          "tree_partition_type 1 (QT)", "tree_partition_type 2 (QTBT)",
          "cu_skip_enabled_flag 1", "skip CUs", "cu_qp_delta_enabled_flag 1",
          "CU QP delta -8", "CU QP delta -5", "CU QP delta -2", "CU QP delta +2",
          "CU QP delta +5", "CU QP delta +8", "CU QP delta < 0", "CU QP delta > 0",
          "|CU QP delta| >= 5", "split QT", "split BT_H", "split BT_V",
          "CTUSize 8", "CTUSize 16", "MinQTSize 2", "MinQTSize 4", "MinQTSize 16",
          "MinCUSize 1", "MinCUSize 2", "MaxMTTDepth 2", "MaxMTTDepth 3",
          "border CUs (nominal size beyond the kernel)", "dtype float32"),
         "Skip CUs and CU QP deltas: blocks of zeros and blocks of exact multiples of "
         "the step of QP -20 + d, with QPDeltaSearch -8 -5 -2 0 2 5 8 and a small "
         "LambdaScale (0.01), so that the encoder picks every delta: cu_qp_delta_abs 2 "
         "(context-coded prefix only), 5 (the whole 5-bin prefix and the EG0 suffix 0) and "
         "8 (EG0 suffix 110 00), both signs. Other tensors with other partition types "
         "(ClassRules): the conv with quad splits only (tree_partition_type 1, no "
         "max_mtt_depth in its TPS), the linear and the embedding with QTBT (the "
         "embedding with MinQTSize = CTUSize, so split_qt_flag is never coded), the bias "
         "without the tree (tree_partition_type 0 in a stream with TOOL_CODING_TREE).",
         verify=True),
    Spec("DQ_A_1", "dq_a",
         ("format 1.1", "TOOL_DEP_QUANT", "dep_quant_enabled_flag 1", "DQ state 0",
          "DQ state 1", "DQ state 2", "DQ state 3", "DQ all 8 state transitions",
          "DQ even and odd levels", "DQ Q1 odd reconstruction indices", "DQ abs_remainder",
          "DQ abs_remainder EG0 prefixes up to 19", "DQ float32", "DQ bfloat16",
          "layer_type linear", "layer_type conv", "layer_type 1-D"),
         "Dependent quantization without the coding tree: the levels of each tensor in "
         "one raster scan, the 4-state machine carried from row to row, sig_flag contexts "
         "chosen by the state, reconstruction by Q0 (even RecIdx) or Q1 (odd RecIdx). "
         "Every state occurs, with levels of both parities in each (all 8 transitions of "
         "NextDqState); NumGtFlags 2 and outliers of up to 2^15 weights make Exp-Golomb "
         "remainders with prefixes up to 19. float32 and bfloat16 outputs, 2-D, 4-D and "
         "1-D tensors.",
         verify=True),
    Spec("DQ_B_1", "dq_b",
         ("format 1.1", "TOOL_CODING_TREE", "TOOL_DEP_QUANT", "DQ with coding tree",
          "tree_partition_type 3 (QTMTT)", "DQ state 0", "DQ state 1", "DQ state 2",
          "DQ state 3", "DQ all 8 state transitions", "DQ even and odd levels",
          "DQ Q1 odd reconstruction indices", "DQ abs_remainder",
          "cu_qp_delta_enabled_flag 1", "CU QP delta -8", "CU QP delta -2",
          "CU QP delta +2", "CU QP delta +8", "|CU QP delta| >= 5", "skip CUs",
          "split QT", "split BT_H", "split BT_V", "split TT_H", "split TT_V",
          "border CUs (nominal size beyond the kernel)", "CTUSize 8", "CTUSize 16",
          "DQ float32", "DQ bfloat16"),
         "Dependent quantization with the coding tree and CU QP deltas together: the DQ "
         "state carried from CU to CU and CTU to CTU in coding order (not in raster "
         "order), not advanced in skip CUs, each CU's levels reconstructed with the "
         "step of its own QP (QPDeltaSearch -8 -2 0 2 8). float32 and bfloat16.",
         verify=True),
    Spec("TILES_A_1", "tiles",
         ("format 1.1", "KERNEL_TILES conv 3x3", "KERNEL_TILES conv 5x5",
          "KERNEL_TILES conv 1x3", "KERNEL_TILES dw-conv 3x3", "ROWS pw-conv 1x1",
          "KERNEL_TILES with tree_partition_type 3",
          "KERNEL_TILES with tree_partition_type 0", "tree_partition_type 1 (QT)",
          "TOOL_CODING_TREE", "skip CUs", "layer_type conv", "layer_type dw-conv",
          "layer_type pw-conv"),
         "Kernel tiles (arrangement_type 1, Arrangement tiles): each kh x kw kernel of "
         "an O x I x kh x kw weight is a tile of the (O kh) x (I kw) kernel tensor. Square "
         "3x3 and 5x5 kernels and a 1x3 kernel coded with the coding tree (QTMTT, CTU 8, "
         "tiles that straddle CUs, pruned kernels as skip CUs), a depthwise 16x1x3x3 "
         "weight in tiles without the tree (a 48x3 kernel tensor), and a pointwise "
         "16x8x1x1 weight that stays in ROWS (tiles are only for kernels larger than 1x1), "
         "coded with tree_partition_type 1 (QT).",
         verify=True),
    Spec("SIGNAL_A_1", "signal",
         ("format 1.1", "TOOL_SIGNAL_TYPES", "TOOL_CODING_TREE", "NumSignalTypes 5",
          "input_signal_type 0 (default)", "input_signal_type 1 (attention)",
          "input_signal_type 2 (mlp)", "input_signal_type 3 (vision)",
          "input_signal_type 4 (token)", "layer_type embedding by LayerRules",
          "linear/attention: tree_partition_type 2", "linear/mlp: tree_partition_type 3",
          "conv/vision: tree_partition_type 1", "linear/default: tree_partition_type 1",
          "embedding/token: tree_partition_type 0", "1-D/default: tree_partition_type 0",
          "KERNEL_TILES conv 2x2"),
         "Input signal types and tensor classes: SignalRules name five signal types "
         "(default first, then in order of first appearance), LayerRules turns the output "
         "head into an embedding, and ClassRules give each class (layer type / signal "
         "type) its own partition: QTBT for attention linears, QTMTT for MLP linears, QT "
         "with kernel tiles for the vision conv, QT for the other linears, none for the "
         "token embeddings and the norm. The decoding process does not depend on the "
         "signal type; the stream checks that a decoder parses the signal type list and "
         "the per-tensor input_signal_type.",
         verify=True),
    # ---- format 1.2: prediction (checked like the 1.1 streams)
    Spec("PRED_A_1", "pred_new",
         ("format 1.2", "TOOL_INTER_PRED", "TOOL_CODING_TREE", "pred_mode 1 (REF_MODEL)",
          "pred_mode 0 (NONE)", "ref_dtype float32", "ref_dtype float16",
          "ref_dtype bfloat16", "ref_dtype differs from tensor_dtype", "pred_scale != 4096",
          "prediction with skip CUs", "skip CUs", "tree_partition_type 3 (QTMTT)",
          "dtype float32", "dtype float16"),
         "A model update predicted from a reference model (pred_mode 1, REF_MODEL): the "
         "stream needs conformance/sources/pred_ref.safetensors, stored beside its source "
         "and listed as ref_model in the manifest (ConformanceApp gives it to the decoder; "
         "DecoderApp --RefModel). Each tensor is predicted by its namesake times a "
         "least-squares pred_scale, and the levels code the residual; float16 and bfloat16 "
         "reference pictures, one whose dtype differs from the coded tensor's (bfloat16 "
         "reference, float32 tensor), and a retrained tensor whose prediction does not pay "
         "(pred_mode 0). With the coding tree, the unchanged rows of enc.weight are skip "
         "CUs that reconstruct the prediction itself. The decoder checks each reference "
         "tensor's MD5 before decoding (E-R3).",
         verify=True, ref="pred_ref"),
    Spec("PRED_B_1", "pred_b",
         ("format 1.2", "TOOL_INTER_PRED", "TOOL_DEP_QUANT", "pred_mode 2 (EARLIER_TENSOR)",
          "pred_mode 0 (NONE)", "pred_scale != 4096", "pred_scale < 0",
          "prediction with DQ", "ref_dtype float32"),
         "Prediction from an earlier tensor of the same stream (pred_mode 2, "
         "EARLIER_TENSOR, EarlierTensorPred 1): the reconstruction of layers.0.weight "
         "predicts layers.1.weight (scale about 0.5) and layers.2.weight (scale about -1); "
         "other.weight, independent of it, is coded without prediction. Dependent "
         "quantization codes the residuals. No reference model is needed.",
         verify=True),
    # ---- format 1.2: clustering-based quantization (verify=True)
    Spec("CLUSTER_A_1", "cluster_a",
         ("format 1.2", "TOOL_CLUSTER", "point_type 0 (scalar)", "scalar codebook",
          "codebook size <= 4", "codebook size > 16", "CLUSTERED float32",
          "CLUSTERED float16", "CLUSTERED bfloat16", "CLUSTERED float64",
          "QUANTIZED beside CLUSTERED", "layer_type linear", "layer_type conv",
          "layer_type embedding"),
         "Scalar codebooks (point_type 0): every 2-D and 4-D tensor coded in "
         "tensor_coding_mode CLUSTERED (Cluster 2), each with its own codebook of "
         "fixed-point integers at the codebook step (QP - 16) in its tensor parameter set, "
         "sizes chosen by RD cost among 2, 8 and 64 (entries without points dropped). The "
         "indices are coded as signed distances to the entry nearest zero with "
         "neighbour contexts. Reconstruction to all four float types; the 1-D bias stays "
         "QUANTIZED in the same stream.",
         verify=True),
    Spec("CLUSTER_B_1", "cluster_b",
         ("format 1.2", "TOOL_CLUSTER", "point_type 1 (kernel)", "point_type 2 (filter)",
          "point_type 3 (inchannel)", "point_type 0 (scalar)", "vector codebook",
          "vector dims 9", "vector dims 54", "vector dims 200", "cluster_index tree bins",
          "CLUSTERED float32"),
         "Vector codebooks: ClusterPointRules makes the points of conv1 its 3x3 kernels "
         "(point_type 1, 9 values), of conv2 its filters (point_type 2, 6*3*3 values), of "
         "conv3 the kernels across one input channel (point_type 3, 8*5*5 values); the "
         "pointwise conv (kernel rule, but 1x1 kernels) and the linear weight fall back to "
         "scalar points. Vector indices are coded with the binary-tree contexts of "
         "cluster_index.",
         verify=True),
    Spec("CLUSTER_C_1", "cluster_c",
         ("format 1.2", "TOOL_CLUSTER", "outliers_enabled 1", "outlier_pos_mode 0 (flags)",
          "outlier points", "vector outliers", "scalar codebook", "vector codebook",
          "CLUSTERED float32", "CLUSTERED float16"),
         "Outliers with context-coded position flags: weights far from every cluster "
         "(OutlierMode spread, OutlierThreshold 3) are coded with the fine scalar "
         "quantizer (QP - 4) instead of a codebook index; in the conv, whose points are "
         "3x3 kernels, two whole kernels are outliers.",
         verify=True),
    Spec("CLUSTER_C_2", "cluster_c",
         ("format 1.2", "TOOL_CLUSTER", "outliers_enabled 1", "outlier_pos_mode 1 (runs)",
          "outlier points", "vector outliers", "CLUSTERED float32", "CLUSTERED float16"),
         "Outlier positions as run lengths (OutlierPositions runs) and the outliers chosen "
         "as a fraction of the points (OutlierMode fraction, 2 %), on the source of "
         "CLUSTER_C_1.",
         verify=True),
    Spec("CLUSTER_D_1", "cluster_d",
         ("format 1.2", "TOOL_CLUSTER", "subspace_axis 1 (output channels)",
          "num_subspaces 3", "residual_enabled 1", "scalar codebook", "CLUSTERED float32",
          "QUANTIZED beside CLUSTERED"),
         "Subspaces along the output channels (ClusterSubspaceAxis out, 3 subspaces), each "
         "with its own codebook and its own contexts, and a residual level per inlier "
         "value (ClusterResidual 1, residual step QP + 4).",
         verify=True),
    Spec("CLUSTER_D_2", "cluster_d",
         ("format 1.2", "TOOL_CLUSTER", "subspace_axis 2 (input channels)",
          "num_subspaces 4", "point_type 1 (kernel)", "vector codebook",
          "CLUSTERED float32"),
         "Subspaces along the input channels (ClusterSubspaceAxis in, 4 subspaces) with "
         "kernel points in the conv and scalar points in the linear weight.",
         verify=True),
    # ---- format 1.3: intra prediction of CU levels (verify=True)
    Spec("INTRA_A_1", "intra_a",
         ("format 1.3", "TOOL_INTRA_PRED", "TOOL_CODING_TREE", "intra_pred_enabled_flag 1",
          "intra row mean", "intra column mean", "intra block copy",
          "block copy from an earlier CTU", "block copy within the CTU", "bv_x < 0",
          "bv_y < 0", "bv_x = 0", "bv_y = 0", "intra CUs with a zero residual",
          "intra border CUs", "intra with CU QP delta != 0", "skip CUs",
          "CU QP delta > 0", "tree_partition_type 3 (QTMTT)", "dtype float32"),
         "Intra prediction of CU levels (IntraPred 1, IntraCopyRange 16, CTUs of 16): a "
         "tensor of repeated tiles coded by block copy (block vectors into earlier CTUs "
         "and into the part of the current CTU coded before the CU), a tensor of constant "
         "rows (row mean of the levels to the left), one of constant columns (column mean "
         "of the levels above), and an embedding whose size is no multiple of the CTU "
         "size (intra-predicted border CUs) with zero blocks (skip CUs). CU QP deltas on: "
         "intra CUs at other QPs than the tensor's. The analysis recomputes every "
         "prediction from the decoded levels in decoding order (clause 5.9) and checks "
         "that it reads only levels of earlier CUs.",
         verify=True),
    # ---- format 1.4: the counting probability estimator (verify=True)
    Spec("PROBWIN_A_1", "qp",
         ("format 1.4", "TOOL_PROB_WINDOW", "TOOL_DEP_QUANT", "TOOL_CODING_TREE",
          "prob_window 12", "prob_window 3", "prob_window 1", "prob_window 0",
          "prob_window with DQ", "prob_window with coding tree", "CU QP delta < 0",
          "split QT", "split TT_V", "dtype float32", "dtype bfloat16", "dtype float16",
          "dtype float64"),
         "The counting probability estimator (clause 5.2.5) with a window per tensor class "
         "(ClassRules): 12 for the linear weights (estimators still counting at the end of "
         "the tensor), 3 for the conv, coded with the coding tree and CU QP deltas "
         "(the tree contexts use the estimator too; window reached after 6 bins), "
         "1 for the embedding (a step of 1/2 throughout), 0 (the dual-rate estimator) for "
         "the 1-D tensors of the same stream. Dependent quantization on.",
         verify=True),
    Spec("DQ8_A_1", "dq_b",
         ("format 1.4", "TOOL_DQ_8STATES", "TOOL_DEP_QUANT", "TOOL_CODING_TREE",
          "DQ 8 states", "DQ with coding tree", "DQ state 0", "DQ state 1", "DQ state 2",
          "DQ state 3", "DQ state 4", "DQ state 5", "DQ state 6", "DQ state 7",
          "DQ all 16 state transitions", "DQ even and odd levels",
          "DQ Q1 odd reconstruction indices", "DQ abs_remainder", "skip CUs",
          "CU QP delta -8", "CU QP delta +8", "DQ float32", "DQ bfloat16"),
         "Dependent quantization with 8 states (DQStates 8, clause 5.5.4) on the source "
         "and coding keys of DQ_B_1: the state carried through the coding tree, skip CUs "
         "and CU QP deltas; every state and every transition used.",
         verify=True),
    Spec("PROBWIN_B_1", "gtx",
         ("format 1.4", "TOOL_PROB_WINDOW", "prob_window 2", "abs_remainder",
          "dtype float32"),
         "The counting estimator with window 2 (a step of 1/4 after the first two bins) on "
         "levels of every magnitude 2^k, k = 0..29, with 15 greater-than flags: long runs of "
         "equal bins drive the estimates to the clip of ProbOne (16 and 32752).",
         verify=True),
    # ---- format 1.5: context-coded remainder suffix (verify=True)
    Spec("SUFFIX_A_1", "gtx",
         ("format 1.5", "TOOL_SUFFIX_CTX", "TOOL_PROB_WINDOW", "TOOL_DEP_QUANT",
          "suffix_ctx_flag 1", "EgsCtx all 12 sets", "EgsCtx prefix > 12",
          "suffix bypass bins after the context-coded ones", "suffix_ctx with DQ",
          "suffix_ctx with prob_window", "suffix_ctx with the dual-rate estimator",
          "abs_remainder", "dtype float32"),
         "The context-coded suffix of abs_remainder (clause 5.4.1) on levels of every "
         "magnitude 2^k, k = 0..29, with 2 greater-than flags: every EgsCtx set, prefixes "
         "longer than 12 (the last set shared), prefixes of one bin (one context-coded "
         "suffix bin). The weight with 8-state DQ and window 10, the bias with the "
         "dual-rate estimator (ClassRules window=0).",
         verify=True),
    Spec("DQ32_A_1", "dq_b",
         ("format 1.5", "TOOL_DQ_32STATES", "TOOL_DEP_QUANT", "TOOL_CODING_TREE",
          "DQ 32 states", "DQ all 64 state transitions", "DQ with coding tree",
          "DQ even and odd levels", "DQ Q1 odd reconstruction indices", "DQ abs_remainder",
          "skip CUs", "DQ float32"),
         "Dependent quantization with 32 states (DQStates 32, clause 5.5.4) on the source "
         "and coding keys of DQ8_A_1: the state carried through the coding tree, skip CUs "
         "and CU QP deltas in the linear weight, the embedding raster-coded (ClassRules "
         "tree=none); every state and every transition used.",
         verify=True),
    Spec("ROWPRED_A_1", "row_pred",
         ("format 1.5", "TOOL_ROW_PRED", "TOOL_DQ_32STATES", "TOOL_CODING_TREE",
          "row_pred_enabled_flag 1", "row_pred_flag 1", "row_pred_flag 0",
          "row_pred_flag 0 after 0", "row_pred_flag 1 after 0", "row_pred_flag 0 after 1",
          "row_pred_flag 1 after 1", "predicted rows in a chain", "row_pred_above_flag 1",
          "row_pred_above_flag 0 (a reference further up)", "reference row 0",
          "row prediction with DQ 32 states", "dtype float32", "dtype bfloat16"),
         "Row prediction (clause 5.5.5, RowPred 2): a position embedding whose rows continue "
         "the row above (every row predicted, the reconstruction indices accumulating down "
         "the tensor), a token embedding whose middle rows share a mean vector between "
         "independent rows (both values of the flag after both values) and whose rows 36..45 "
         "repeat rows further up (references by row_pred_ref_dist_minus2, row 0 among them), "
         "a linear weight of independent rows; 32-state DQ; a conv with the coding tree "
         "carries no flag.",
         verify=True),
    Spec("SUFFIX_B_1", "qp",
         ("format 1.5", "TOOL_SUFFIX_CTX", "TOOL_CODING_TREE", "suffix_ctx_flag 1",
          "suffix_ctx with coding tree", "suffix_ctx with prob_window",
          "suffix bypass bins after the context-coded ones", "abs_remainder",
          "dtype float32", "dtype bfloat16", "dtype float16", "dtype float64"),
         "The context-coded suffix with the coding tree and CU QP deltas at a "
         "fine step (QP -40: most levels have a remainder), window 6, no DQ.",
         verify=True),
    Spec("INTEGRITY_A_1", "shapes",
         ("format 1.6", "TOOL_INTEGRITY", "tps_md5 of every tensor matches",
          "stream_md5 matches", "TOOL_CODING_TREE", "TOOL_DEP_QUANT", "dtype float32"),
         "Integrity hashes (clauses 3.6, 3.7 and 5.7, IntegrityHash 1): every "
         "tensor_hash_unit carries tps_md5, the MD5 of its tensor's whole "
         "tensor_parameter_set unit, after tensor_md5, "
         "and end_of_stream carries stream_md5, the MD5 of every byte before it. The tensors "
         "of every shape of SHAPE_A_1 (0-d, empty, 8-D, UTF-8 and 206-byte names), LOSSLESS "
         "and QUANTIZED, raster coded with DQ and a conv with the coding tree, so that the "
         "parameter sets hashed take every form.",
         verify=True),
    Spec("ONNX_A_1", "onnx_a",
         ("format 1.7", "TOOL_CONTAINER", "container_format 3 (ONNX)", "source_format 3 (ONNX)",
          "container_compression 1 (zlib)", "TOOL_INTEGRITY", "stream_md5 matches",
          "dtype float32", "layer_type conv", "layer_type linear"),
         "A stream made from an ONNX file (clauses 3.8 and 4.8): the container unit after the "
         "model parameter set carries the graph with every float tensor's data removed "
         "(zlib), so that the decoded tensors rebuild the file: initializers, a sparse "
         "initializer's values, Constant node weights (value, value_floats) and the "
         "constants of both branches of an If subgraph, named by their graph path "
         "(If_0/then_branch/then.bias); the int64 Reshape shape stays in the template. The "
         "stream MD5 covers the container unit.",
         verify=True),
    Spec("EP_A_1", "entry",
         ("format 1.8", "TOOL_ENTRY_POINTS", "substream_rows", "substream_size",
          "several substreams a tensor", "a last substream of fewer rows",
          "one row a substream", "substream_rows 0 (below the threshold)",
          "coding tree: one substream", "TOOL_DEP_QUANT (32 states)", "prob_window 10",
          "suffix_ctx_flag 1", "dtype float32", "dtype bfloat16", "dtype float16"),
         "Entry points (clauses 3.5, 5.2.9; EntryPointElements 2048): each raster tensor of "
         "more than 2048 elements is coded as substreams of whole rows (13 rows of 160, 43 "
         "rows of 48 with a last one of 14, one row of 3000), their sizes before the first; "
         "each substream restarts the arithmetic decoder, every context, the DQ state "
         "(32 states) and has no row above its first row. A tensor below the threshold and a "
         "conv with the coding tree keep one substream. The 83 200-element embedding is "
         "larger than the C decoder's band of 65 536 elements."),
    Spec("EP_B_1", "entry",
         ("format 1.8", "TOOL_ENTRY_POINTS", "TOOL_ROW_PRED", "substream_rows",
          "substream_size", "row_pred_flag in the first row of a substream",
          "reference rows in earlier substreams", "row_pred_above_flag 0",
          "TOOL_DEP_QUANT (8 states)", "prob_window 8", "dtype float32", "dtype bfloat16"),
         "Entry points with row prediction (RowPred 2, 8-state DQ, EntryPointElements 4096): "
         "the first row of a substream carries its row_pred_flag on RowPredCtx[ 0 ] and may "
         "be predicted from the last row of the substream before; rows 300..309 of the "
         "embedding refer to rows of earlier substreams (a reconstruction dependency only: "
         "the substreams parse on their own)."),
)


def source_path(spec: Spec) -> str:
    return EXAMPLE if spec.source == "example" else SOURCES[spec.source].path


def cfg_path(spec: Spec) -> str:
    return f"conformance/cfg/{spec.name}.cfg"


def command(spec: Spec) -> list[str]:
    ref = ["--RefModel", SOURCES[spec.ref].path] if spec.ref else []
    return ["EncoderApp", "-c", cfg_path(spec), "-i", source_path(spec), *ref,
            "-b", f"bitstreams/{spec.name}.bit"]


def ref_model(spec: Spec) -> dict[str, np.ndarray] | None:
    """The reference model of a predicted stream, as the decoder is given it."""
    return nntm.read_model(ROOT / SOURCES[spec.ref].path) if spec.ref else None


# ----------------------------------------------------------------- format 1.1 analysis
# What a stream of the 1.1 tools really exercises, read back from the decoded stream:
# the tensor parameter sets, the decoder's CU trace (codec.decode_detailed(trace=True):
# per CU its clipped region, mode, QP and qt + mtt depth) and the decoded levels.  The
# split types are not in the trace; _infer_tree finds every coding tree that gives the
# traced CUs (clause 4.5.1 and CanSplit of clause 5.8.2) and a split counts only when
# it occurs in all of them.  The features of a stream with `verify=True` must all be
# facts of its decoded stream (stream_facts), otherwise --generate refuses it.

SPLIT_NAMES = {1: "QT", 2: "BT_H", 3: "BT_V", 4: "TT_H", 5: "TT_V"}
TREE_NAMES = {0: "NONE", 1: "QT", 2: "QTBT", 3: "QTMTT"}
CU_SKIP = 1                                   # NNTM_CU_SKIP, the mode in the CU trace
NEXT_DQ_STATE = ((0, 2), (2, 0), (1, 3), (3, 1))
# 8 states [1.4] (clause 5.5.4): states 0..3 use Q0, 4..7 Q1
NEXT_DQ_STATE_8 = ((0, 1), (4, 5), (1, 0), (5, 4), (7, 6), (3, 2), (6, 7), (2, 3))
# 32 states [1.5] (clause 5.5.4): states 0..15 use Q0, 16..31 Q1
NEXT_DQ_STATE_32 = (
    (0, 2), (16, 18), (1, 3), (17, 19), (2, 0), (18, 16), (3, 1), (19, 17),
    (4, 6), (20, 22), (5, 7), (21, 23), (6, 4), (22, 20), (7, 5), (23, 21),
    (9, 11), (25, 27), (8, 10), (24, 26), (11, 9), (27, 25), (10, 8), (26, 24),
    (13, 15), (29, 31), (12, 14), (28, 30), (15, 13), (31, 29), (14, 12), (30, 28))


def _dq_machine(t: object) -> tuple[tuple[tuple[int, int], ...], int]:
    """The state table of a DQ tensor and its first Q1 state."""
    return {8: (NEXT_DQ_STATE_8, 4), 32: (NEXT_DQ_STATE_32, 16)}.get(
        t.dq_states, (NEXT_DQ_STATE, 2))
# counted per coding tree: the five splits, CUs whose nominal node extends beyond the
# kernel tensor, split nodes partly outside it, children entirely outside it
_TREE_KEYS = ("QT", "BT_H", "BT_V", "TT_H", "TT_V", "border CUs", "clipped splits",
              "outside children")
_TREE_FACTS = {"border CUs": "border CUs (nominal size beyond the kernel)",
               "clipped splits": "split nodes partly outside the kernel",
               "outside children": "children entirely outside the kernel"}


def _can_split(tree: object, split: int, w: int, h: int, mtt: int) -> bool:
    """CanSplit of docs/bitstream.md clause 5.8.2."""
    if split == 1:
        return mtt == 0 and w == h and (w >> 1) >= (1 << tree.log2_min_qt_size)
    if not (tree.split_mask >> split) & 1 or mtt >= tree.max_mtt_depth:
        return False
    min_cu = 1 << tree.log2_min_cu_size
    return {2: (h >> 1) >= min_cu, 3: (w >> 1) >= min_cu,
            4: (h >> 2) >= min_cu and h % 4 == 0, 5: (w >> 2) >= min_cu and w % 4 == 0}[split]


def _children(x: int, y: int, w: int, h: int, split: int) -> list[tuple[int, int, int, int]]:
    """The children of a split in coding order (clause 4.5.1)."""
    if split == 1:
        return [(x, y, w // 2, h // 2), (x + w // 2, y, w // 2, h // 2),
                (x, y + h // 2, w // 2, h // 2), (x + w // 2, y + h // 2, w // 2, h // 2)]
    if split == 2:
        return [(x, y, w, h // 2), (x, y + h // 2, w, h // 2)]
    if split == 3:
        return [(x, y, w // 2, h), (x + w // 2, y, w // 2, h)]
    if split == 4:
        return [(x, y, w, h // 4), (x, y + h // 4, w, h // 2), (x, y + 3 * h // 4, w, h // 4)]
    return [(x, y, w // 4, h), (x + w // 4, y, w // 2, h), (x + 3 * w // 4, y, w // 4, h)]


_Count = tuple[int, tuple[int, ...], tuple[int, ...]]  # trees, per-key minimum, maximum


def _infer_tree(tree: object, rows: int, cols: int, cus: np.ndarray) -> _Count:
    """Every coding tree of the kernel tensor that gives the traced CUs: how many there
    are, and the least and most of each _TREE_KEYS count over them."""
    n_keys = len(_TREE_KEYS)
    zero = (0,) * n_keys

    def node(x: int, y: int, w: int, h: int, qt: int, mtt: int, idx: list[int]) -> _Count:
        x1, y1 = min(x + w, cols), min(y + h, rows)
        clipped = x + w > cols or y + h > rows
        options: list[_Count] = []
        if len(idx) == 1:
            c = cus[idx[0]]
            if (int(c["x"]), int(c["y"]), int(c["w"]), int(c["h"]), int(c["depth"])) == (
                    x, y, x1 - x, y1 - y, qt + mtt):
                leaf = tuple(int(clipped) if k == "border CUs" else 0 for k in _TREE_KEYS)
                options.append((1, leaf, leaf))
        for split, name in SPLIT_NAMES.items():
            if not _can_split(tree, split, w, h, mtt):
                continue
            kids = _children(x, y, w, h, split)
            parts: list[list[int]] = [[] for _ in kids]
            ok = True
            for i in idx:
                c = cus[i]
                cx, cy = int(c["x"]), int(c["y"])
                for k, (kx, ky, kw, kh) in enumerate(kids):
                    if kx <= cx < kx + kw and ky <= cy < ky + kh:
                        ok = (cx + int(c["w"]) <= min(kx + kw, cols)
                              and cy + int(c["h"]) <= min(ky + kh, rows))
                        parts[k].append(i)
                        break
                if not ok:
                    break
            if not ok:
                continue
            own = [0] * n_keys
            own[_TREE_KEYS.index(name)] = 1
            own[_TREE_KEYS.index("clipped splits")] = int(clipped)
            count, lo, hi = 1, list(own), list(own)
            for (kx, ky, kw, kh), part in zip(kids, parts, strict=True):
                if kx >= cols or ky >= rows:
                    lo[-1] += 1
                    hi[-1] += 1
                    continue
                if not part:                  # a coded node holds at least one CU
                    count = 0
                    break
                d_qt, d_mtt = (1, -mtt) if split == 1 else (0, 1)
                n, klo, khi = node(kx, ky, kw, kh, qt + d_qt, mtt + d_mtt, part)
                if not n:
                    count = 0
                    break
                count *= n
                lo = [a + b for a, b in zip(lo, klo, strict=True)]
                hi = [a + b for a, b in zip(hi, khi, strict=True)]
            if count:
                options.append((count, tuple(lo), tuple(hi)))
        if not options:
            return 0, zero, zero
        return (sum(o[0] for o in options),
                tuple(min(v) for v in zip(*(o[1] for o in options), strict=True)),
                tuple(max(v) for v in zip(*(o[2] for o in options), strict=True)))

    ctu = 1 << tree.log2_ctu_size
    by_ctu: dict[tuple[int, int], list[int]] = {}
    for i, c in enumerate(cus):
        by_ctu.setdefault((int(c["y"]) // ctu, int(c["x"]) // ctu), []).append(i)
    total, lo, hi = 1, [0] * n_keys, [0] * n_keys
    for yc in range(0, rows, ctu):
        for xc in range(0, cols, ctu):
            n, clo, chi = node(xc, yc, ctu, ctu, 0, 0, by_ctu.get((yc // ctu, xc // ctu), []))
            if not n:
                raise SystemExit(f"internal error: no coding tree gives the CUs of the CTU "
                                 f"at ({xc}, {yc})")
            total *= n
            lo = [a + b for a, b in zip(lo, clo, strict=True)]
            hi = [a + b for a, b in zip(hi, chi, strict=True)]
    return total, tuple(lo), tuple(hi)


@dataclass
class TensorTools:
    """The 1.1 syntax values of one QUANTIZED tensor and what its data exercises."""

    tps: hls.TensorParameterSet
    signal: str
    levels: np.ndarray
    cus: np.ndarray
    trees: int = 0                                  # coding trees consistent with the trace
    tree_min: dict[str, int] = dataclasses.field(default_factory=dict)
    qp_deltas: tuple[int, ...] = ()                 # CU QP deltas of the coded CUs
    skip_cus: int = 0
    dq_states: tuple[int, ...] = (0, 0, 0, 0)       # levels coded in each DQ state
    dq_nonzero_parity: tuple[int, int] = (0, 0)     # non-zero levels, even and odd
    dq_odd_recidx: int = 0                          # levels reconstructed by Q1 (odd RecIdx)
    dq_transitions: frozenset[tuple[int, int]] = frozenset()  # (state, level parity) seen
    remainders: int = 0                             # levels with an abs_remainder
    max_prefix: int = -1                            # longest EG0 prefix of abs_remainder
    prefixes: frozenset[int] = frozenset()          # the EG0 prefix lengths used
    intra: frozenset[str] = frozenset()             # intra facts (format 1.3)
    pred_rows: tuple[tuple[int, int], ...] = ()     # (row, reference row) predicted [1.5]


INTRA_ROW, INTRA_COL, INTRA_COPY = 1, 2, 3            # NNTM_INTRA_* in the CU trace


def _intra_residuals(t: hls.TensorParameterSet, cus: np.ndarray, levels: np.ndarray
                     ) -> tuple[np.ndarray, frozenset[str]]:
    """The coded residual levels of an intra-predicted tensor: each intra CU's prediction
    recomputed from the decoded levels (clause 5.9, in Python) and taken off.  Checks
    that every prediction reads only levels of CUs decoded before it."""
    order = np.full(levels.shape, -1, np.int64)
    residual = levels.copy()
    facts: set[str] = set()
    ctu = 1 << t.tree.log2_ctu_size
    for i, cu in enumerate(cus):
        x, y, w, h = (int(cu[k]) for k in ("x", "y", "w", "h"))
        mode = int(cu["intra"])
        if mode == INTRA_ROW:
            span = min(x, w)
            src = order[y:y + h, x - span:x]
            sums = levels[y:y + h, x - span:x].sum(axis=1, keepdims=True)
            pred = np.repeat((2 * sums + span) // (2 * span), w, axis=1)
            facts.add("intra row mean")
        elif mode == INTRA_COL:
            span = min(y, h)
            src = order[y - span:y, x:x + w]
            sums = levels[y - span:y, x:x + w].sum(axis=0, keepdims=True)
            pred = np.repeat((2 * sums + span) // (2 * span), h, axis=0)
            facts.add("intra column mean")
        elif mode == INTRA_COPY:
            bx, by = int(cu["bv_x"]), int(cu["bv_y"])
            if x + bx < 0 or y + by < 0:
                raise SystemExit(f"internal error: {t.name}: a block vector out of the kernel")
            src = order[y + by:y + by + h, x + bx:x + bx + w]
            pred = levels[y + by:y + by + h, x + bx:x + bx + w]
            facts.add("intra block copy")
            facts.add("bv_x < 0" if bx < 0 else "bv_x > 0" if bx > 0 else "bv_x = 0")
            facts.add("bv_y < 0" if by < 0 else "bv_y > 0" if by > 0 else "bv_y = 0")
            same_ctu = ((x + bx) // ctu, (y + by) // ctu) == (x // ctu, y // ctu)
            facts.add("block copy within the CTU" if same_ctu
                      else "block copy from an earlier CTU")
        else:
            order[y:y + h, x:x + w] = i
            continue
        if src.shape != (h, w) and mode == INTRA_COPY or src.size == 0 or np.any(src < 0):
            raise SystemExit(f"internal error: {t.name}: CU {i} predicts from levels not "
                             "decoded before it")
        residual[y:y + h, x:x + w] = levels[y:y + h, x:x + w] - pred
        if not np.any(residual[y:y + h, x:x + w]):
            facts.add("intra CUs with a zero residual")
        if x + w == t.cols and t.cols % ctu or y + h == t.rows and t.rows % ctu:
            facts.add("intra border CUs")
        if int(cu["qp"]) != t.qp:
            facts.add("intra with CU QP delta != 0")
        order[y:y + h, x:x + w] = i
    return residual, frozenset(facts)


def _coding_order(t: hls.TensorParameterSet, cus: np.ndarray) -> list[tuple[int, int]]:
    """(row, col) of every coded level in decoding order (clause 3.5)."""
    if not t.tree.enabled:
        return [(r, c) for r in range(t.rows) for c in range(t.cols)]
    order = []
    for cu in cus:
        if int(cu["mode"]) == CU_SKIP:
            continue
        x, y, w, h = (int(cu[k]) for k in ("x", "y", "w", "h"))
        order += [(r, c) for r in range(y, y + h) for c in range(x, x + w)]
    return order


def tensor_tools(data: bytes, ref: dict[str, np.ndarray] | None = None
                 ) -> tuple[hls.ModelParameterSet, list[TensorTools]]:
    """Decode a stream with the CU trace and analyse each QUANTIZED tensor (``ref``: the
    reference model of a stream with predicted tensors)."""
    units = hls.split_units(data)
    mps = hls.parse_model_parameter_set(units[0])
    traces = codec.decode_detailed(data, trace=True, ref_model=ref).cus
    cases = {c.tensor: c for c in conformance.kernel_cases(data, ref)}
    out = []
    for u in units[1:]:
        if u.unit_type != hls.UnitType.TENSOR_PARAMETER_SET:
            continue
        t = conformance._parse_tps(u, mps)
        if t.coding_mode != hls.CodingMode.QUANTIZED or not t.rows * t.cols:
            continue
        levels, decoded = conformance.decode_kernel_case(cases[t.name])
        levels = levels.astype(np.int64)
        cus = traces.get(t.name, np.zeros(0, dtype=nntm.core.CU_RECORD))
        tt = TensorTools(t, mps.signal_types[t.signal_type], levels, cus)
        if t.row_pred:  # the decoder's trace: one copy record per predicted row
            rec = cus[(cus["intra"] == INTRA_COPY) & (cus["bv_y"] < 0) & (cus["bv_x"] == 0)
                      & (cus["h"] == 1) & (cus["w"] == t.cols) & (cus["x"] == 0)]
            tt.pred_rows = tuple((int(y), int(y) + int(b)) for y, b in zip(rec["y"], rec["bv_y"],
                                                                         strict=True))
            rows = [r for r, _ in tt.pred_rows]
            if len(rec) != len(cus) or rows != sorted(set(rows)) or any(
                    j < 0 for _, j in tt.pred_rows):
                raise SystemExit(f"internal error: {t.name}: unexpected row trace")
        if t.tree.enabled:
            tt.trees, lo, _ = _infer_tree(t.tree, t.rows, t.cols, cus)
            tt.tree_min = dict(zip(_TREE_KEYS, lo, strict=True))
            coded = cus[cus["mode"] != CU_SKIP]
            tt.qp_deltas = tuple(int(q) - t.qp for q in coded["qp"])
            tt.skip_cus = int(np.count_nonzero(cus["mode"] == CU_SKIP))
            cover = np.zeros((t.rows, t.cols), np.int64)
            for cu in cus:
                x, y, w, h = (int(cu[k]) for k in ("x", "y", "w", "h"))
                cover[y:y + h, x:x + w] += 1
                if int(cu["mode"]) == CU_SKIP and np.any(levels[y:y + h, x:x + w]):
                    raise SystemExit(f"internal error: {t.name}: a skip CU with levels")
            if np.any(cover != 1):
                raise SystemExit(f"internal error: {t.name}: the CUs do not tile the kernel")
        order = _coding_order(t, cus)
        coded = levels
        if t.tree.enabled and t.tree.intra_pred_enabled:
            coded, tt.intra = _intra_residuals(t, cus, levels)
        gt = t.num_gt_flags
        rem = [abs(int(coded[r, c])) - gt - 1 for r, c in order if abs(coded[r, c]) > gt]
        tt.remainders = len(rem)
        tt.prefixes = frozenset((int(v) + 1).bit_length() - 1 for v in rem)
        tt.max_prefix = max(tt.prefixes, default=-1)
        if t.dq_enabled:
            table, first_q1 = _dq_machine(t)
            states, parity, odd, state, seen = [0] * len(table), [0, 0], 0, 0, set()
            for r, c in order:
                level = int(levels[r, c])
                states[state] += 1
                seen.add((state, abs(level) & 1))
                if level:
                    parity[abs(level) & 1] += 1
                    odd += state >= first_q1
                state = table[state][abs(level) & 1]
            tt.dq_states, tt.dq_nonzero_parity, tt.dq_odd_recidx = (
                tuple(states), (parity[0], parity[1]), odd)
            tt.dq_transitions = frozenset(seen)
        if not t.pred_mode:  # (a prediction is added exactly in C: clause 5.5.2a)
            _check_reconstruction(tt, order, decoded)
        out.append(tt)
    return mps, out


def _check_reconstruction(tt: TensorTools, order: list[tuple[int, int]],
                          decoded: np.ndarray) -> None:
    """Recompute the tensor from the levels, the CU QPs of the trace and the DQ states of
    this analysis (clauses 5.5.3, 5.5.4, 5.6) and compare with the decoder's output, so
    that the analysis follows the decoding order and the QPs the decoder used."""
    t = tt.tps
    qp = np.full((t.rows, t.cols), t.qp, np.int64)
    for cu in tt.cus:
        x, y, w, h = (int(cu[k]) for k in ("x", "y", "w", "h"))
        qp[y:y + h, x:x + w] = int(cu["qp"])
    rec_idx = np.zeros((t.rows, t.cols), np.int64)
    state = 0
    table, first_q1 = _dq_machine(t)
    for r, c in order:
        level = int(tt.levels[r, c])
        if not t.dq_enabled:
            rec_idx[r, c] = level
            continue
        if t.substream_rows and c == 0 and r % t.substream_rows == 0:
            state = 0  # [1.8] each substream starts in state 0
        rec_idx[r, c] = 2 * level - (0 if state < first_q1 or level == 0
                                     else (1 if level > 0 else -1))
        state = table[state][abs(level) & 1]
    for r, j in tt.pred_rows:  # clause 5.5.5, top to bottom
        rec_idx[r] += rec_idx[j]
    steps = np.vectorize(lambda q: _step(int(q), t.qp_density), otypes=[np.float64])(qp)
    value = rec_idx * steps * (0.5 if t.dq_enabled else 1.0)
    kernel = value.astype(t.dtype)
    expected = from_kernel(kernel, tuple(t.shape), Arrangement(t.arrangement))
    if not np.array_equal(expected.astype(np.float64), decoded.astype(np.float64)):
        raise SystemExit(f"internal error: {t.name}: the analysis does not reproduce the "
                         "decoded tensor")


_TOOL_NAMES = ((hls.TOOL_CODING_TREE, "TOOL_CODING_TREE"),
               (hls.TOOL_SIGNAL_TYPES, "TOOL_SIGNAL_TYPES"), (hls.TOOL_DEP_QUANT, "TOOL_DEP_QUANT"),
               (hls.TOOL_INTER_PRED, "TOOL_INTER_PRED"), (hls.TOOL_CLUSTER, "TOOL_CLUSTER"),
               (hls.TOOL_INTRA_PRED, "TOOL_INTRA_PRED"), (hls.TOOL_PROB_WINDOW, "TOOL_PROB_WINDOW"),
               (hls.TOOL_DQ_8STATES, "TOOL_DQ_8STATES"), (hls.TOOL_SUFFIX_CTX, "TOOL_SUFFIX_CTX"),
               (hls.TOOL_DQ_32STATES, "TOOL_DQ_32STATES"), (hls.TOOL_ROW_PRED, "TOOL_ROW_PRED"),
               (hls.TOOL_INTEGRITY, "TOOL_INTEGRITY"), (hls.TOOL_CONTAINER, "TOOL_CONTAINER"))
PRED_NAMES = {0: "NONE", 1: "REF_MODEL", 2: "EARLIER_TENSOR"}
POINT_NAMES = {0: "scalar", 1: "kernel", 2: "filter", 3: "inchannel"}
AXIS_NAMES = {0: "none", 1: "output channels", 2: "input channels"}


def cluster_tensors(data: bytes) -> list[tuple[hls.TensorParameterSet, np.ndarray]]:
    """Every CLUSTERED tensor of a stream with the decoder's label of each point."""
    out: list[tuple[hls.TensorParameterSet, np.ndarray]] = []
    mps = hls.parse_model_parameter_set(hls.split_units(data)[0])
    if not mps.tool_flags & hls.TOOL_CLUSTER:
        return out
    for case in conformance.kernel_cases(data):
        if case.coding_mode == hls.CodingMode.CLUSTERED:
            assert case.params is not None
            _, labels = cluster.decode_tensor_labels(case.params, case.data, case.tensor)
            out.append((case.params, labels))
    return out


def cluster_facts(data: bytes) -> set[str]:
    """Statements about the CLUSTERED tensors of a stream (format 1.2)."""
    facts: set[str] = set()
    modes = {c.coding_mode for c in conformance.kernel_cases(data)}
    if {hls.CodingMode.QUANTIZED, hls.CodingMode.CLUSTERED} <= modes:
        facts.add("QUANTIZED beside CLUSTERED")
    for t, labels in cluster_tensors(data):
        c = t.cluster
        assert c is not None
        facts |= {f"CLUSTERED {t.dtype.name}", f"point_type {c.point_type} "
                  f"({POINT_NAMES[c.point_type]})", f"layer_type {LayerType(t.layer_type).label}"}
        if c.subspace_axis:
            facts.add(f"subspace_axis {c.subspace_axis} ({AXIS_NAMES[c.subspace_axis]})")
            facts.add(f"num_subspaces {c.num_subspaces}")
        dims = {b.shape[1] for b in c.codebooks}
        sizes = [b.shape[0] for b in c.codebooks]
        if dims == {1}:
            facts.add("scalar codebook")
        else:
            facts.add("vector codebook")
            facts |= {f"vector dims {d}" for d in dims}
            if max(sizes) > 1:
                facts.add("cluster_index tree bins")
        if min(sizes) <= 4:
            facts.add("codebook size <= 4")
        if max(sizes) > 16:
            facts.add("codebook size > 16")
        if c.outliers_enabled:
            facts.add("outliers_enabled 1")
            facts.add(f"outlier_pos_mode {c.outlier_pos_mode} "
                      f"({'runs' if c.outlier_pos_mode else 'flags'})")
            if np.any(labels < 0):
                facts.add("outlier points")
                if dims != {1}:
                    facts.add("vector outliers")
        if c.residual_enabled:
            facts.add("residual_enabled 1")
    return facts


def _cluster_section(data: bytes) -> list[str]:
    rows = cluster_tensors(data)
    if not rows:
        return []
    lines = [
        "## Format 1.2 syntax values (clustered tensors)",
        "",
        "Per CLUSTERED tensor, from its tensor parameter set, and the decoder's labels "
        "(*outliers*: points coded with the outlier quantizer):",
        "",
        "| id | tensor | point_type | subspace_axis | subspaces | codebook sizes | point dims "
        "| codebook_qp_offset | outliers | outlier_qp_offset | positions | residual | points "
        "| outliers |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for t, labels in rows:
        c = t.cluster
        assert c is not None
        sizes = " ".join(str(b.shape[0]) for b in c.codebooks)
        dims = " ".join(sorted({str(b.shape[1]) for b in c.codebooks}))
        lines.append(
            f"| {t.tensor_id} | `{t.name}` | {c.point_type} {POINT_NAMES[c.point_type]} | "
            f"{c.subspace_axis} {AXIS_NAMES[c.subspace_axis]} | {c.num_subspaces} | {sizes} | "
            f"{dims} | {c.codebook_qp_offset} | {int(c.outliers_enabled)} | "
            f"{c.outlier_qp_offset if c.outliers_enabled else '-'} | "
            f"{('runs' if c.outlier_pos_mode else 'flags') if c.outliers_enabled else '-'} | "
            f"{(f'1 (QP + {c.residual_qp_offset})') if c.residual_enabled else '0'} | "
            f"{labels.size} | {int(np.count_nonzero(labels < 0))} |")
    return lines + [""]


def stream_facts(data: bytes, ref: dict[str, np.ndarray] | None = None) -> set[str]:
    """Statements about a stream, each checked on the decoded stream; the features of a
    verified stream are taken from these."""
    mps, tools = tensor_tools(data, ref)
    facts = {f"format {mps.version_major}.{mps.version_minor}"}
    facts |= {name for bit, name in _TOOL_NAMES if mps.tool_flags & bit}
    if mps.tool_flags & hls.TOOL_SIGNAL_TYPES:
        facts.add(f"NumSignalTypes {len(mps.signal_types)}")
    facts.add(f"source_format {int(mps.source_format)} ({mps.source_format.name})")
    if mps.tool_flags & hls.TOOL_CONTAINER:
        unit = hls.split_units(data)[1]
        container = hls.parse_container_unit(unit)
        facts.add(f"container_format {int(container.format)} ({container.format.name})")
        comp = unit.payload[1]
        facts.add(f"container_compression {comp} ({'zlib' if comp else 'stored'})")
    if mps.tool_flags & hls.TOOL_INTEGRITY:
        checked = codec.decode_detailed(data, ref_model=ref)
        if checked.reports and all(r.params_ok for r in checked.reports):
            facts.add("tps_md5 of every tensor matches")
        if checked.stream_ok:
            facts.add("stream_md5 matches")
    dq_prefix = -1
    for tt in tools:
        t = tt.tps
        layer = LayerType(t.layer_type).label
        facts |= {f"dtype {t.dtype.name}", f"layer_type {layer}"}
        if mps.tool_flags & hls.TOOL_CODING_TREE:
            facts.add(f"tree_partition_type {t.tree_type} ({TREE_NAMES[t.tree_type]})")
        if layer != classify(t.name, tuple(t.shape)).label:
            facts.add(f"layer_type {layer} by LayerRules")
        if mps.tool_flags & hls.TOOL_SIGNAL_TYPES:
            facts.add(f"input_signal_type {t.signal_type} ({tt.signal})")
            facts.add(f"{layer}/{tt.signal}: tree_partition_type {t.tree_type}")
        if len(t.shape) == 4:
            kh, kw = t.shape[2], t.shape[3]
            arr = "KERNEL_TILES" if t.arrangement == 1 else "ROWS"
            facts.add(f"{arr} {layer} {kh}x{kw}")
            if t.arrangement == 1:
                facts.add(f"KERNEL_TILES with tree_partition_type {t.tree_type}")
        if t.dq_enabled:
            facts.add("dep_quant_enabled_flag 1")
            facts |= {f"DQ state {s}" for s, n in enumerate(tt.dq_states) if n}
            if all(tt.dq_nonzero_parity):
                facts.add("DQ even and odd levels")
            if tt.dq_odd_recidx:
                facts.add("DQ Q1 odd reconstruction indices")
            if len(tt.dq_transitions) == 2 * len(tt.dq_states):
                facts.add(f"DQ all {2 * len(tt.dq_states)} state transitions")
            if t.dq_states in (8, 32):
                facts.add(f"DQ {t.dq_states} states")
            if tt.remainders:
                facts.add("DQ abs_remainder")
                dq_prefix = max(dq_prefix, tt.max_prefix)
            if t.tree.enabled:
                facts.add("DQ with coding tree")
            facts.add(f"DQ {t.dtype.name}")
        if tt.remainders:
            facts.add("abs_remainder")
        if mps.tool_flags & hls.TOOL_PROB_WINDOW:
            facts.add(f"prob_window {t.prob_window}")
            if t.prob_window and t.dq_enabled:
                facts.add("prob_window with DQ")
            if t.prob_window and t.tree.enabled:
                facts.add("prob_window with coding tree")
        if mps.tool_flags & hls.TOOL_SUFFIX_CTX:
            facts.add(f"suffix_ctx_flag {int(t.suffix_ctx)}")
            if t.suffix_ctx and tt.remainders:
                # EgsCtx sets Min( k, 12 ) - 1: one context-coded bin for k = 1, two from 2,
                # the set of 12 shared by every longer prefix
                used = {min(k, 12) for k in tt.prefixes if k}
                if used >= set(range(1, 13)):
                    facts.add("EgsCtx all 12 sets")
                if any(k > 12 for k in tt.prefixes):
                    facts.add("EgsCtx prefix > 12")
                if any(k > 2 for k in tt.prefixes):
                    facts.add("suffix bypass bins after the context-coded ones")
                if t.dq_enabled:
                    facts.add("suffix_ctx with DQ")
                if t.prob_window:
                    facts.add("suffix_ctx with prob_window")
                else:
                    facts.add("suffix_ctx with the dual-rate estimator")
                if t.tree.enabled:
                    facts.add("suffix_ctx with coding tree")
        if mps.tool_flags & hls.TOOL_ROW_PRED and not t.tree.enabled:
            facts.add(f"row_pred_enabled_flag {int(t.row_pred)}")
            if t.row_pred:
                refs = dict(tt.pred_rows)
                flags = [0] + [int(r in refs) for r in range(1, t.rows)]
                if any(flags):
                    facts.add("row_pred_flag 1")
                if not all(flags[1:]):
                    facts.add("row_pred_flag 0")
                pairs = set(zip(flags[1:], flags[2:], strict=False))
                facts |= {f"row_pred_flag {b} after {a}" for a, b in pairs}
                if any(refs.get(j) is not None for j in refs.values()):
                    facts.add("predicted rows in a chain")
                if any(j == r - 1 for r, j in refs.items()):
                    facts.add("row_pred_above_flag 1")
                if any(j < r - 1 for r, j in refs.items()):
                    facts.add("row_pred_above_flag 0 (a reference further up)")
                if any(r > 2 and j == 0 for r, j in refs.items()):
                    facts.add("reference row 0")
                if t.dq_enabled and tt.pred_rows:
                    facts.add(f"row prediction with DQ {t.dq_states} states")
                if tt.pred_rows and not t.dq_enabled:
                    facts.add("row prediction without DQ")
        if mps.tool_flags & hls.TOOL_INTER_PRED:
            facts.add(f"pred_mode {int(t.pred_mode)} ({PRED_NAMES[int(t.pred_mode)]})")
            if t.pred_mode:
                facts.add(f"ref_dtype {t.ref_dtype.name}")
                facts.add("pred_scale 4096" if t.pred_scale == hls.PRED_SCALE_ONE
                          else "pred_scale != 4096")
                if t.pred_scale < 0:
                    facts.add("pred_scale < 0")
                if t.dq_enabled:
                    facts.add("prediction with DQ")
                if t.tree.enabled and tt.skip_cus:
                    facts.add("prediction with skip CUs")
                if t.ref_dtype != t.dtype:
                    facts.add("ref_dtype differs from tensor_dtype")
        if not t.tree.enabled:
            continue
        tr = t.tree
        if mps.tool_flags & hls.TOOL_INTRA_PRED:
            facts.add(f"intra_pred_enabled_flag {int(tr.intra_pred_enabled)}")
            facts |= tt.intra
        facts |= {f"CTUSize {1 << tr.log2_ctu_size}", f"MinCUSize {1 << tr.log2_min_cu_size}",
                  f"MinQTSize {1 << tr.log2_min_qt_size}",
                  f"cu_skip_enabled_flag {int(tr.skip_enabled)}",
                  f"cu_qp_delta_enabled_flag {int(tr.cu_qp_delta_enabled)}"}
        if t.tree_type >= 2:
            facts.add(f"MaxMTTDepth {tr.max_mtt_depth}")
        ctu = 1 << tr.log2_ctu_size
        if t.rows % ctu or t.cols % ctu:
            facts.add("kernel sizes not multiples of the CTU size")
        facts |= {f"split {k}" for k in SPLIT_NAMES.values() if tt.tree_min[k]}
        facts |= {text for k, text in _TREE_FACTS.items() if tt.tree_min[k]}
        if tt.skip_cus:
            facts.add("skip CUs")
        facts |= {f"CU QP delta {d:+d}" for d in tt.qp_deltas if d}
        if any(d > 0 for d in tt.qp_deltas):
            facts.add("CU QP delta > 0")
        if any(d < 0 for d in tt.qp_deltas):
            facts.add("CU QP delta < 0")
        if any(abs(d) >= 5 for d in tt.qp_deltas):
            facts.add("|CU QP delta| >= 5")
    if dq_prefix >= 0:
        facts.add(f"DQ abs_remainder EG0 prefixes up to {dq_prefix}")
    if mps.tool_flags & hls.TOOL_CLUSTER:
        facts |= cluster_facts(data)
    return facts


def unverified_features(spec: Spec, data: bytes) -> list[str]:
    """The features of a verified stream that its decoded stream does not show."""
    facts = stream_facts(data, ref_model(spec))
    return [f for f in spec.features if f not in facts]


# ----------------------------------------------------------------- descriptions


def _same_tensors(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    if list(a) != list(b):
        return False
    return all(a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
               and np.ascontiguousarray(a[k]).tobytes() == np.ascontiguousarray(b[k]).tobytes()
               for k in a)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _syntax_rows(data: bytes, ref: dict[str, np.ndarray] | None = None) -> list[str]:
    """One Markdown table row per tensor: the syntax values of its parameter set and
    what its levels exercise."""
    units = hls.split_units(data)
    mps = hls.parse_model_parameter_set(units[0])
    cases = {c.tensor: c for c in conformance.kernel_cases(data, ref)}
    rows = []
    for u in units[1:]:
        if u.unit_type != hls.UnitType.TENSOR_PARAMETER_SET:
            continue
        t = conformance._parse_tps(u, mps)
        shape = "x".join(map(str, t.shape)) if t.shape else "() 0-d"
        case = cases[t.name]
        size = len(case.data)
        if t.coding_mode == hls.CodingMode.CLUSTERED:
            rest = (f"CLUSTERED | {LayerType(t.layer_type).name.lower()} | - | {t.qp} | "
                    f"{t.qp_density} | {t.num_gt_flags} | - | -")
        elif t.coding_mode == hls.CodingMode.QUANTIZED:
            size -= conformance.KERNEL_CASE_HEADER.size
            lv = conformance.decode_kernel_case(case)[0] if t.rows * t.cols else None
            top = int(np.abs(lv.astype(np.int64)).max()) if lv is not None else 0
            nz = int(np.count_nonzero(lv)) if lv is not None else 0
            rest = (f"QUANTIZED | {LayerType(t.layer_type).name.lower()} | {t.rows}x{t.cols} | "
                    f"{t.qp} | {t.qp_density} | {t.num_gt_flags} | {nz} | {top}")
        else:
            rest = "LOSSLESS | - | - | - | - | - | - | -"
        rows.append(f"| {t.tensor_id} | `{t.name}` | {t.dtype.name} | {shape} | {rest} | "
                    f"{size} |")
    return rows


def _counts(values: tuple[int, ...]) -> str:
    """'-8 x3, 0 x12, +2 x1' for CU QP deltas."""
    if not values:
        return "-"
    uniq, n = np.unique(np.array(values), return_counts=True)
    return ", ".join(f"{int(v):+d} x{int(k)}" if v else f"0 x{int(k)}"
                     for v, k in zip(uniq, n, strict=True))


def _tools_section(spec: Spec, data: bytes) -> list[str]:
    """The 1.1 syntax values of a stream and what its decoded data exercises."""
    mps, tools = tensor_tools(data, ref_model(spec))
    flags = " | ".join(name for bit, name in _TOOL_NAMES if mps.tool_flags & bit) or "none"
    lines = [
        "## Format 1.1 syntax values",
        "",
        f"Model parameter set: `tool_flags` 0x{mps.tool_flags:x} ({flags})"
        + (f"; `num_signal_types` {len(mps.signal_types)}: "
           + ", ".join(f"{i} `{n}`" for i, n in enumerate(mps.signal_types))
           if mps.tool_flags & hls.TOOL_SIGNAL_TYPES else "") + ".",
        "",
        "Per QUANTIZED tensor, from its tensor parameter set (CTU, MinQT, MinCU: sizes "
        "from `log2_ctu_size`, `log2_min_qt_size_minus_log2_min_cu_size`, "
        "`log2_min_cu_size`; MaxMTT: `max_mtt_depth`; skip, dQP: `cu_skip_enabled_flag`, "
        "`cu_qp_delta_enabled_flag`):",
        "",
        "| id | tensor | arrangement_type | tree_partition_type | CTU | MinQT | MinCU | MaxMTT "
        "| skip | dQP | input_signal_type | dep_quant_enabled_flag |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for tt in tools:
        t, tr = tt.tps, tt.tps.tree
        arr = "1 KERNEL_TILES" if t.arrangement == 1 else "0 ROWS"
        tree = [str(1 << tr.log2_ctu_size), str(1 << tr.log2_min_qt_size),
                str(1 << tr.log2_min_cu_size),
                str(tr.max_mtt_depth) if t.tree_type >= 2 else "-",
                str(int(tr.skip_enabled)), str(int(tr.cu_qp_delta_enabled))] if tr.enabled \
            else ["-"] * 6
        sig = (f"{t.signal_type} `{tt.signal}`" if mps.tool_flags & hls.TOOL_SIGNAL_TYPES
               else "-")
        dq = str(int(t.dq_enabled)) if mps.tool_flags & hls.TOOL_DEP_QUANT else "-"
        ttype = (f"{t.tree_type} {TREE_NAMES[t.tree_type]}"
                 if mps.tool_flags & hls.TOOL_CODING_TREE else "-")
        lines.append(f"| {t.tensor_id} | `{t.name}` | {arr} | {ttype} | {' | '.join(tree)} | "
                     f"{sig} | {dq} |")
    lines += [
        "",
        "What the decoded stream exercises, from the decoder's CU trace "
        "(`nntm.decode_detailed(data, trace=True).cus`) and the decoded levels. The split "
        "types are not in the trace: the split counts are the least over all coding trees "
        "that give the traced CUs (*trees*: how many there are), so a split counted here "
        "occurs in every one of them; likewise *border CUs* (CUs whose nominal size "
        "extends beyond the kernel tensor), *clipped splits* (split nodes partly outside) "
        "and *outside* (children entirely outside, not coded). *DQ states*: levels coded "
        "in DqState 0 / 1 / 2 / 3; *Q1 odd*: levels reconstructed by Q1 with an odd "
        "RecIdx; *remainders*: levels with an `abs_remainder` (its longest EG0 prefix).",
        "",
        "| tensor | CUs | skip CUs | CU QP deltas (coded CUs) | QT | BT_H | BT_V | TT_H | TT_V "
        "| border CUs | clipped splits | outside | trees | DQ states | Q1 odd | remainders |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- "
        "| --- | --- |",
    ]
    for tt in tools:
        t = tt.tps
        if t.tree.enabled:
            m = tt.tree_min
            deltas = _counts(tt.qp_deltas) if t.tree.cu_qp_delta_enabled else "not coded"
            tree = [str(len(tt.cus)), str(tt.skip_cus), deltas,
                    *(str(m[k]) for k in _TREE_KEYS), str(tt.trees)]
        else:
            tree = ["-"] * 12
        dq = ([" / ".join(map(str, tt.dq_states)), str(tt.dq_odd_recidx)] if t.dq_enabled
              else ["-", "-"])
        rem = f"{tt.remainders} (prefix {tt.max_prefix})" if tt.remainders else "0"
        lines.append(f"| `{t.name}` | {' | '.join(tree)} | {' | '.join(dq)} | {rem} |")
    lines.append("")
    if spec.verify:
        lines += [
            "Every item of *Tools and features* above was checked on the decoded stream by "
            "`stream_facts()` in `scripts/make_conformance.py` (`--generate` refuses the "
            "stream otherwise; `tests/test_conformance.py` checks it again).",
            "",
        ]
    return lines


def describe(spec: Spec, data: bytes, md5s: list[tuple[str, str]], version: str) -> str:
    cfg_text = (ROOT / cfg_path(spec)).read_text(encoding="utf-8")
    src = source_path(spec)
    if spec.source == "example":
        how = ("the bundled example model (a small CNN trained on scikit-learn's digits, "
               "re-made by `python3 scripts/train_digits.py`)")
    else:
        s = SOURCES[spec.source]
        doc = " ".join((s.make.__doc__ or "").split())
        how = (f"synthetic, `{s.make.__name__}()` in `scripts/make_conformance.py` with "
               f"`numpy.random.default_rng({s.seed})`: {doc}")
    lines = [
        f"# {spec.name}",
        "",
        spec.purpose,
        "",
        f"- Bitstream: `bitstreams/{spec.name}.bit`, {len(data)} bytes, "
        f"sha256 `{hashlib.sha256(data).hexdigest()}`",
        f"- Decoded MD5s: `bitstreams/{spec.name}.md5` ({len(md5s)} tensors)",
        f"- Format version: {version}",
        *(["- Status: **retired** (decode-only): the current encoder no longer makes this "
           "stream from the command below; it stays in the suite and must decode to its "
           "MD5s forever. The command is the one that made it."] if spec.retired else []),
        f"- Tools and features: {', '.join(spec.features)}",
        f"- Source model: `{src}` (sha256 `{_sha256(ROOT / src)}`), {how}",
        "",
        "## Encoder command",
        "",
        "Run from the repository root:",
        "",
        "```sh",
        shlex.join(command(spec)),
        "```",
        "",
        f"with `{cfg_path(spec)}`:",
        "",
        "```",
        cfg_text.rstrip("\n"),
        "```",
        "",
        "## Syntax values",
        "",
        "From the tensor parameter sets; *nonzero* and *max level* are the number of "
        "non-zero levels and the largest |level| of the tensor data.",
        "",
        "| id | tensor | dtype | shape | coding_mode | layer_type | kernel | qp | qp_density "
        "| NumGtFlags | nonzero | max level | data bytes |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *_syntax_rows(data, ref_model(spec)),
        "",
        *(_tools_section(spec, data) if version != "1.0" else []),
        *_cluster_section(data),
        "Generated by `python3 scripts/make_conformance.py --generate`; do not edit by hand.",
        "",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------- generate


def _decoded_md5s(data: bytes, ref: dict[str, np.ndarray] | None = None
                  ) -> list[tuple[str, str]]:
    result = codec.decode_detailed(data, ref_model=ref)
    bad = [r.name for r in result.reports if not r.ok]
    if bad:
        raise SystemExit(f"internal error: fresh stream fails its own hash units: {bad}")
    return [(r.md5, r.name) for r in result.reports]


def generate(names: list[str], force: bool) -> int:
    refused: list[str] = []
    notes: list[str] = []
    writes: dict[Path, bytes] = {}
    old: dict[str, conformance.StreamEntry] = {}
    if SUITE.exists():
        old = {s.name: s for s in conformance.load_suite(SUITE).streams}
    specs = [s for s in STREAMS if not names or s.name in names]
    unknown = set(names) - {s.name for s in STREAMS}
    if unknown:
        print(f"unknown stream(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2

    # 1. sources (written first, in place, only when new: the encoder reads them)
    used = ({s.source for s in specs} | {s.ref for s in specs if s.ref}) - {"example"}
    for key in sorted(used):
        src = SOURCES[key]
        path = ROOT / src.path
        if src.onnx_bytes is not None:  # an ONNX file: its bytes are the truth
            blob = src.onnx_bytes(np.random.default_rng(src.seed))
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(blob)
                notes.append(f"wrote {src.path}")
            elif path.read_bytes() != blob:
                msg = f"{src.path}: the regenerated ONNX file differs from the stored one"
                if force:
                    notes.append("replacing " + msg)
                    path.write_bytes(blob)
                else:
                    refused.append(msg)
            continue
        tensors = make_source(src)
        if path.exists():
            if not _same_tensors(nntm.read_model(path), tensors):
                msg = (f"{src.path}: regenerated tensors differ from the stored ones "
                       "(the streams made from it are kept; numpy's generator changed?)")
                if force:
                    notes.append("replacing " + msg)
                    nntm.write_model(path, tensors)
                else:
                    refused.append(msg)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            nntm.write_model(path, tensors)
            notes.append(f"wrote {src.path}")
    if refused:
        return _report_refusals(refused)

    # 2. streams
    entries: dict[str, conformance.StreamEntry] = dict(old)
    with tempfile.TemporaryDirectory(prefix="nntm_conf_") as tmp:
        for spec in specs:
            bit = ROOT / "bitstreams" / f"{spec.name}.bit"
            md5_path = bit.with_suffix(".md5")
            if spec.retired:
                problem = _check_retired(spec, old.get(spec.name))
                if problem:
                    refused.append(problem)
                    continue
                stored = bit.read_bytes()
                writes[ROOT / "conformance" / f"{spec.name}.md"] = describe(
                    spec, stored, conformance.parse_md5_file(md5_path),
                    conformance.stream_format_version(stored)).encode("utf-8")
                if old[spec.name].reencode:
                    entries[spec.name] = dataclasses.replace(old[spec.name], reencode=False)
                    notes.append(f"{spec.name}: retired (decode-only)")
                continue
            data = conformance.run_encoder_command(ROOT, command(spec),
                                                   Path(tmp) / f"{spec.name}.bit")
            md5s = _decoded_md5s(data, ref_model(spec))
            version = conformance.stream_format_version(data)
            if spec.verify:
                unverified = unverified_features(spec, data)
                if unverified:
                    refused.append(f"{spec.name}: the decoded stream does not show the "
                                   f"feature(s) {', '.join(map(repr, unverified))}")
                    continue
            if bit.exists():
                stored = bit.read_bytes()
                stored_md5s = (conformance.parse_md5_file(md5_path)
                               if md5_path.exists() else None)
                try:
                    now = _decoded_md5s(stored, ref_model(spec))
                except nntm.NntmError as exc:
                    now = None
                    refused.append(f"{spec.name}: the stored stream no longer decodes ({exc})")
                if stored_md5s is not None and now is not None and now != stored_md5s:
                    refused.append(f"{spec.name}: the stored stream no longer decodes to its "
                                   "stored MD5s: a decoder regression")
                if stored != data:
                    if stored_md5s is not None and md5s != stored_md5s:
                        msg = (f"{spec.name}: re-encoding changes the decoded MD5s; a stored "
                               "stream decodes to its MD5s forever: add a new stream (next "
                               "rev) instead, or use --force-new-version with a format "
                               "version change")
                        if force:
                            notes.append("FORCED: " + msg)
                            if old.get(spec.name) and old[spec.name].format_version == version:
                                notes.append(f"WARNING: {spec.name} keeps format version "
                                             f"{version}: old decoders' results change")
                        else:
                            refused.append(msg)
                            continue
                    else:
                        notes.append(f"{spec.name}: bytes change, decoded MD5s do not")
            writes[bit] = data
            writes[md5_path] = conformance.format_md5_file(md5s).encode("utf-8")
            writes[ROOT / "conformance" / f"{spec.name}.md"] = describe(
                spec, data, md5s, version).encode("utf-8")
            entries[spec.name] = conformance.StreamEntry(
                name=spec.name,
                bitstream=f"bitstreams/{spec.name}.bit",
                md5_file=f"bitstreams/{spec.name}.md5",
                description=f"conformance/{spec.name}.md",
                format_version=version,
                features=spec.features,
                source_model=source_path(spec),
                cfg=cfg_path(spec),
                encoder_command=tuple(command(spec)),
                bitstream_bytes=len(data),
                bitstream_sha256=hashlib.sha256(data).hexdigest(),
                num_tensors=len(md5s),
                ref_model=SOURCES[spec.ref].path if spec.ref else "",
            )
    if refused:
        return _report_refusals(refused)
    for path, blob in writes.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_bytes() != blob:
            path.write_bytes(blob)
            notes.append(f"wrote {path.relative_to(ROOT)}")
    order = [s.name for s in STREAMS] + sorted(set(entries) - {s.name for s in STREAMS})
    conformance.write_manifest(SUITE, [entries[n] for n in order if n in entries])
    for n in notes:
        print(n)
    print(f"suite: {len(entries)} streams in {SUITE.relative_to(ROOT)}")
    return 0


def _check_retired(spec: Spec, entry: conformance.StreamEntry | None) -> str | None:
    """A retired stream must be stored and still decode to its stored MD5s."""
    if entry is None:
        return f"{spec.name}: retired but not in the manifest"
    suite = conformance.load_suite(SUITE)
    result = conformance.check_stream(suite, entry)
    return None if result.ok else f"{spec.name} (retired): {result.reason}"


def _report_refusals(refused: list[str]) -> int:
    for r in refused:
        print(f"refused: {r}", file=sys.stderr)
    print("nothing written", file=sys.stderr)
    return 1


def check_determinism(names: list[str]) -> int:
    suite = conformance.load_suite(SUITE)
    failed = same = 0
    for entry in suite.select(names):
        if not entry.reencode:
            print(f"{entry.name:<14} retired (decode-only), not re-encoded")
            continue
        stored = suite.file(entry.bitstream).read_bytes()
        try:
            data = conformance.reencode(suite, entry)
        except nntm.NntmError as exc:
            print(f"{entry.name:<14} FAIL  {exc}")
            failed += 1
            continue
        if data == stored:
            same += 1
            print(f"{entry.name:<14} {len(data):>8} bytes  identical")
        else:
            diff = next((i for i, (a, b) in enumerate(zip(data, stored, strict=False)) if a != b),
                        min(len(data), len(stored)))
            print(f"{entry.name:<14} FAIL  {len(data)} bytes vs {len(stored)} stored, "
                  f"first difference at byte {diff}")
            failed += 1
    print(f"determinism: {same} identical, {failed} different")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--generate", action="store_true",
                      help="(re)make sources, streams, md5 files, descriptions and the manifest")
    mode.add_argument("--check-determinism", action="store_true",
                      help="re-encode each stream with its stored command; compare bytes")
    ap.add_argument("--force-new-version", action="store_true",
                    help="with --generate: replace streams whose decoded MD5s change")
    ap.add_argument("names", nargs="*", help="streams to process (default: all)")
    args = ap.parse_args(argv)
    if args.generate:
        return generate(args.names, args.force_new_version)
    return check_determinism(args.names)


if __name__ == "__main__":
    raise SystemExit(main())
