"""Peak memory of nntm-dec on a large model: a synthetic 1.54 B-parameter bfloat16 model.

    python benchmarks/decode_memory.py --folder /tmp/big          # make the stream once, measure
    python benchmarks/decode_memory.py --folder /tmp/big --layers 4   # a smaller model

The model is a decoder-only transformer's shapes (seed 23, N(0, 0.02) weights, ones for the
norms): an embedding of 32000 x 2048, then per layer q, k, v, o (2048 x 2048), gate and up
(6144 x 2048), down (2048 x 6144) and two norms (2048); 27 layers give 1.54 B parameters
(3.08 GB of bfloat16).  It is never held whole: one tensor of each of the five shapes is
made and encoded alone with EncoderApp's coding (cfg/encoder_default.cfg with --QP=-20
--RDOQ=0 --DepQuant=0, about 1.5 bits/param), and every tensor of that shape gets its own
parameter set (name, tensor_id), a copy of that payload and its hash unit, the MD5s (tensor
parameter sets, stream) made right as the stream is written.  So the stream takes a minute
to make on a shared machine rather than hours, and the decoder still decodes every tensor
from its own data unit (the same work and memory as for 245 different tensors).  Then
nntm-dec decodes it to safetensors with 1 and 2 threads under /usr/bin/time (peak RSS, %M),
and the table gives the RSS against the largest tensor and the stream size.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

D_MODEL, D_FFN, VOCAB = 2048, 6144, 32000


def shapes(layers: int) -> Iterator[tuple[str, tuple[int, ...]]]:
    """The tensors of the synthetic model, in order."""
    yield "embed.weight", (VOCAB, D_MODEL)
    for i in range(layers):
        p = f"layers.{i}."
        yield p + "input_norm.weight", (D_MODEL,)
        for n in ("q", "k", "v", "o"):
            yield p + f"attn.{n}.weight", (D_MODEL, D_MODEL)
        yield p + "post_norm.weight", (D_MODEL,)
        yield p + "mlp.gate.weight", (D_FFN, D_MODEL)
        yield p + "mlp.up.weight", (D_FFN, D_MODEL)
        yield p + "mlp.down.weight", (D_MODEL, D_FFN)
    yield "norm.weight", (D_MODEL,)


def _tensor(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    import ml_dtypes

    if len(shape) == 1:
        return np.ones(shape, ml_dtypes.bfloat16)
    return (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(ml_dtypes.bfloat16)


def make_stream(path: Path, layers: int) -> tuple[int, int]:
    """Write the stream tensor by tensor; (parameters, largest tensor's bytes)."""
    from nntm import codec, hls
    from nntm.config import Config

    cfg = Config.from_files([str(ROOT / "cfg" / "encoder_default.cfg")],
                            {"QP": -20, "RDOQ": 0, "DepQuant": 0})
    todo = list(shapes(layers))
    rng = np.random.default_rng(23)
    digest = hashlib.md5()
    tmp = path.with_suffix(".part")
    total = largest = 0
    start = time.perf_counter()
    with tmp.open("wb") as f:

        def put(unit: bytes) -> None:
            digest.update(unit)
            f.write(unit)

        coded: dict[tuple[int, ...], tuple[list[hls.Unit], int, int]] = {}
        for tensor_id, (name, shape) in enumerate(todo):
            if shape not in coded:
                array = _tensor(rng, shape)
                coded[shape] = (hls.split_units(codec.encode({name: array}, cfg)), array.size,
                                array.nbytes)
            units, size, nbytes = coded[shape]
            mps = hls.parse_model_parameter_set(units[0])
            if tensor_id == 0:
                mps.num_tensors = len(todo)
                put(hls.model_parameter_set(mps))
            tps = hls.parse_tensor_parameter_set(units[1], mps)
            tps.tensor_id, tps.name = tensor_id, name
            tps_unit = hls.tensor_parameter_set(tps, mps.tool_flags)
            _, payload = hls.parse_tensor_data_unit(units[2])
            _, md5, _ = hls.parse_tensor_hash_unit(units[3], mps)
            put(tps_unit)
            put(hls.tensor_data_unit(tensor_id, payload))
            put(hls.tensor_hash_unit(tensor_id, md5, hls.unit_md5(tps_unit)
                                     if mps.tool_flags & hls.TOOL_INTEGRITY else None))
            total += size
            largest = max(largest, nbytes)
            print(f"  {tensor_id + 1}/{len(todo)} {name} {shape}: "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
        f.write(hls.end_of_stream(digest.digest()))
    tmp.rename(path)
    return total, largest


def peak_rss_kib(cmd: list[str]) -> tuple[int, float]:
    """Peak RSS (KiB, /usr/bin/time %M) and wall seconds of one run that must succeed."""
    start = time.perf_counter()
    out = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, check=True, capture_output=True,
                         text=True)
    return int(out.stderr.strip().splitlines()[-1]), time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", type=Path, default=Path("/tmp/nntm_big"))
    ap.add_argument("--layers", type=int, default=27)
    ap.add_argument("--nntm-dec", type=Path, default=ROOT / "build" / "nntm-dec")
    args = ap.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    bit = args.folder / f"synthetic_{args.layers}l.bit"
    params = sum(int(np.prod(s)) for _, s in shapes(args.layers))
    largest = max(int(np.prod(s)) for _, s in shapes(args.layers)) * 2
    if not bit.exists():
        print(f"encoding {params / 1e9:.3f} B parameters to {bit} ...", flush=True)
        make_stream(bit, args.layers)
    size = bit.stat().st_size
    out = args.folder / "decoded.safetensors"
    print(f"{bit}: {params / 1e9:.3f} B params, bfloat16 {2 * params / 1e9:.2f} GB, stream "
          f"{size / 1e6:.1f} MB ({8 * size / params:.2f} bits/param), largest tensor "
          f"{largest / 2**20:.0f} MiB")
    print("| threads | peak RSS MiB | RSS / largest tensor | wall s | M params/s |")
    print("|---:|---:|---:|---:|---:|")
    for threads in (1, 2):
        rss, secs = peak_rss_kib([str(args.nntm_dec), "-b", str(bit), "-o", str(out),
                                  "--threads", str(threads)])
        print(f"| {threads} | {rss / 1024:.0f} | {rss * 1024 / largest:.2f} | {secs:.1f} | "
              f"{params / secs / 1e6:.1f} |", flush=True)
    out.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
