"""The encoder and decoder at scale (issue #18): synthetic transformer-shaped models in bf16,
sharded like a Hugging Face checkpoint, encoded and decoded by EncoderApp / DecoderApp.

Each model is written tensor by tensor (never whole in memory): Llama-shaped layers (q, k,
v, o projections, gate/up/down MLP, two RMS norms), an embedding, a final norm and an
output head; weights N(0, 0.02^2) in bf16, norms 1 + N(0, 0.05^2); shards of at most
``--shard-gb`` (and at least two shards) with ``model.safetensors.index.json``.  Then

    EncoderApp -c CFG -i <folder> -b model.bit --Threads N
    DecoderApp -b model.bit -o decoded.safetensors --Threads N

each run as a child process, timed with os.wait4: wall time, CPU time (user + system, all
threads), peak RSS (ru_maxrss).  A markdown table goes to stdout and ``--out``.

    python benchmarks/scale.py --sizes 0.1,1.5,7 --threads 2 --work /tmp/scale \\
        --out benchmarks/results/scale.md

The files are removed after each size unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

from nntm import dtypes  # noqa: E402
from nntm.streamio import INDEX_NAME, ModelWriter  # noqa: E402

#: (hidden, intermediate, layers, vocab) by nominal size in billions of parameters
SHAPES: dict[str, tuple[int, int, int, int]] = {
    "0.1": (768, 2048, 8, 32000),
    "1.5": (2048, 5632, 26, 32000),
    "7": (4096, 11008, 32, 32000),
}


def layout(size: str) -> list[tuple[str, tuple[int, ...]]]:
    """The tensors of a model: (name, shape) in checkpoint order.  "<size>-embed" is that
    model's largest tensor alone (the embedding): the encoder's peak, which the in-flight
    window keeps the whole model's peak too, in a fraction of the time."""
    if size.endswith("-embed"):
        d, _f, _layers, vocab = SHAPES[size[:-len("-embed")]]
        return [("model.embed_tokens.weight", (vocab, d)), ("model.norm.weight", (d,))]
    d, f, layers, vocab = SHAPES[size]
    out: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (vocab, d))]
    for i in range(layers):
        p = f"model.layers.{i}."
        out += [(p + "input_layernorm.weight", (d,))]
        out += [(p + f"self_attn.{x}_proj.weight", (d, d)) for x in "qkvo"]
        out += [(p + "post_attention_layernorm.weight", (d,))]
        out += [(p + "mlp.gate_proj.weight", (f, d)), (p + "mlp.up_proj.weight", (f, d)),
                (p + "mlp.down_proj.weight", (d, f))]
    out += [("model.norm.weight", (d,)), ("lm_head.weight", (vocab, d))]
    return out


def _tensor(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    bf16 = dtypes.bfloat16()
    if len(shape) == 1:
        return (1.0 + 0.05 * rng.standard_normal(shape, dtype=np.float32)).astype(bf16)
    out = np.empty(shape, dtype=bf16)
    step = max(1, (1 << 24) // shape[1])  # rows a chunk: 16 M floats
    for r in range(0, shape[0], step):
        chunk = rng.standard_normal((min(step, shape[0] - r), shape[1]), dtype=np.float32)
        out[r:r + step] = (0.02 * chunk).astype(bf16)
    return out


def write_model(size: str, folder: Path, shard_bytes: int, seed: int = 0) -> int:
    """Write the sharded checkpoint; returns its parameter count."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = layout(size)
    total = sum(2 * int(np.prod(s)) for _, s in tensors)
    limit = min(shard_bytes, total // 2 + 1)
    shards: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    used = 0
    for name, shape in tensors:
        nbytes = 2 * int(np.prod(shape))
        if shards[-1] and used + nbytes > limit:
            shards.append([])
            used = 0
        shards[-1].append((name, shape))
        used += nbytes
    rng = np.random.default_rng(seed)
    weight_map = {}
    for k, shard in enumerate(shards):
        fname = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        writer = ModelWriter(str(folder / fname),
                             [(n, dtypes.bfloat16(), s) for n, s in shard])
        for name, shape in shard:
            writer.write(name, _tensor(rng, shape))
            weight_map[name] = fname
        writer.close()
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (folder / INDEX_NAME).write_text(json.dumps(index, indent=2))
    return total // 2


@dataclass
class Run:
    wall: float
    cpu: float
    rss: int  # bytes
    rc: int


def run(cmd: list[str], log: Path, nice: int) -> Run:
    """Run ``cmd`` as a child; wall, CPU (user + system) and peak RSS from os.wait4."""
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(["nice", "-n", str(nice), *cmd], stdout=out,
                                stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024, proc.returncode)


def measure(size: str, work: Path, cfg: str, threads: int, shard_bytes: int, nice: int,
            keep: bool, extra: list[str]) -> dict[str, object]:
    folder = work / f"model-{size}b"
    bit = work / f"model-{size}b.bit"
    decoded = work / f"decoded-{size}b.safetensors"
    t0 = time.perf_counter()
    params = write_model(size, folder, shard_bytes)
    made = time.perf_counter() - t0
    py = sys.executable
    enc = run([py, "-m", "nntm.apps.encoder", "-c", cfg, "-i", str(folder), "-b", str(bit),
               f"--Threads={threads}", *extra], work / f"encode-{size}b.log", nice)
    row: dict[str, object] = {"size": size, "params": params, "threads": threads,
                              "write_s": made, "enc": enc, "extra": " ".join(extra)}
    if enc.rc == 0:
        row["bits_per_param"] = 8 * bit.stat().st_size / params
        dec = run([py, "-m", "nntm.apps.decoder", "-b", str(bit), "-o", str(decoded),
                   f"--Threads={threads}"], work / f"decode-{size}b.log", nice)
        row["dec"] = dec
    if not keep:
        shutil.rmtree(folder, ignore_errors=True)
        for p in (bit, decoded):
            p.unlink(missing_ok=True)
    return row


def table(rows: list[dict[str, object]], cfg: str) -> str:
    head = ("| model | params | options | threads | encode wall s | encode CPU s | CPU/wall | "
            "encode peak RSS | bits/param | decode wall s | decode CPU s | CPU/wall | "
            "decode peak RSS |\n" + "| --- |" + " ---: |" * 12)
    lines = [f"Config `{cfg}`; synthetic Llama-shaped bf16 models, sharded "
             "(`model.safetensors.index.json`).", "", head]
    for r in rows:
        enc = r["enc"]
        assert isinstance(enc, Run)
        dec = r.get("dec")
        cells = [str(r["size"]), f"{int(r['params']) / 1e9:.3f} B", str(r["extra"]) or "-",
                 str(r["threads"]),
                 f"{enc.wall:.0f}", f"{enc.cpu:.0f}", f"{enc.cpu / enc.wall:.2f}",
                 f"{enc.rss / 2**30:.2f} GiB" + ("" if enc.rc == 0 else f" (rc {enc.rc})"),
                 f"{r.get('bits_per_param', float('nan')):.3f}"]
        if isinstance(dec, Run):
            cells += [f"{dec.wall:.0f}", f"{dec.cpu:.0f}", f"{dec.cpu / dec.wall:.2f}",
                      f"{dec.rss / 2**30:.2f} GiB" + ("" if dec.rc == 0 else f" (rc {dec.rc})")]
        else:
            cells += ["-"] * 4
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="0.1", help="comma-separated: " + ", ".join(SHAPES)
                    + " (or <size>-embed: its largest tensor alone)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cfg", default="cfg/encoder_default.cfg")
    ap.add_argument("--work", default="/tmp/nntm-scale")
    ap.add_argument("--shard-gb", type=float, default=2.0)
    ap.add_argument("--nice", type=int, default=19)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--out", default="")
    ap.add_argument("--extra", default="", help="more EncoderApp options, space-separated "
                    "(e.g. '--DepQuant=0')")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in args.sizes.split(","):
        rows.append(measure(size.strip(), work, args.cfg, args.threads,
                            int(args.shard_gb * 2**30), args.nice, args.keep,
                            args.extra.split()))
        text = table(rows, args.cfg)
        print(text, flush=True)
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
