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
Nothing is written when anything is refused.

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
from nntm import codec, conformance, hls  # noqa: E402
from nntm.arrange import LayerType  # noqa: E402

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


@dataclass(frozen=True)
class Source:
    path: str
    seed: int
    make: Callable[[np.random.Generator], dict[str, np.ndarray]]


SOURCES: dict[str, Source] = {
    "base_b": Source("conformance/sources/base_b.safetensors", 1001, src_base_b),
    "qp": Source("conformance/sources/qp.safetensors", 1002, src_qp),
    "qp_fine": Source("conformance/sources/qp_fine.safetensors", 1003, src_qp_fine),
    "qp_coarse": Source("conformance/sources/qp_coarse.safetensors", 1004, src_qp_coarse),
    "shapes": Source("conformance/sources/shapes.safetensors", 1005, src_shapes),
    "lossless": Source("conformance/sources/lossless.safetensors", 1006, src_lossless),
    "gtx": Source("conformance/sources/gtx.safetensors", 1007, src_gtx),
    "recon": Source("conformance/sources/recon.safetensors", 1008, src_recon),
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
)


def source_path(spec: Spec) -> str:
    return EXAMPLE if spec.source == "example" else SOURCES[spec.source].path


def cfg_path(spec: Spec) -> str:
    return f"conformance/cfg/{spec.name}.cfg"


def command(spec: Spec) -> list[str]:
    return ["EncoderApp", "-c", cfg_path(spec), "-i", source_path(spec),
            "-b", f"bitstreams/{spec.name}.bit"]


# ----------------------------------------------------------------- descriptions


def _same_tensors(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    if list(a) != list(b):
        return False
    return all(a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
               and np.ascontiguousarray(a[k]).tobytes() == np.ascontiguousarray(b[k]).tobytes()
               for k in a)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _syntax_rows(data: bytes) -> list[str]:
    """One Markdown table row per tensor: the syntax values of its parameter set and
    what its levels exercise."""
    units = hls.split_units(data)
    mps = hls.parse_model_parameter_set(units[0])
    cases = {c.tensor: c for c in conformance.kernel_cases(data)}
    rows = []
    for u in units[1:]:
        if u.unit_type != hls.UnitType.TENSOR_PARAMETER_SET:
            continue
        t = conformance._parse_tps(u, mps)
        shape = "x".join(map(str, t.shape)) if t.shape else "() 0-d"
        case = cases[t.name]
        size = len(case.data)
        if t.coding_mode == hls.CodingMode.QUANTIZED:
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
        *_syntax_rows(data),
        "",
        "Generated by `python3 scripts/make_conformance.py --generate`; do not edit by hand.",
        "",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------- generate


def _decoded_md5s(data: bytes) -> list[tuple[str, str]]:
    result = codec.decode_detailed(data)
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
    used = {s.source for s in specs} - {"example"}
    for key in sorted(used):
        src = SOURCES[key]
        path = ROOT / src.path
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
            md5s = _decoded_md5s(data)
            version = conformance.stream_format_version(data)
            if bit.exists():
                stored = bit.read_bytes()
                stored_md5s = (conformance.parse_md5_file(md5_path)
                               if md5_path.exists() else None)
                try:
                    now = _decoded_md5s(stored)
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
