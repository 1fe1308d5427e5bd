"""CE4 diagnostic: which group of tensors carries a model's output error.

    PYTHONPATH=python python benchmarks/ce4_swap_diag.py mobilenetv2 mnv2_sens.safetensors \\
        -32 0.75 [Key=value ...]

Encodes the model with cfg/encoder_output_aware.cfg (the ImportanceQPScale given, further
overrides after it), then swaps each group of decoded tensors for the originals and
re-measures the primary metric, beside the error the maps predict for that group
(sum of importance x squared error).
"""

import sys

import nntm
import numpy as np
from ce4_alloc_study import parse_value  # the same cfg-override parsing
from nntm.ce.models import get_adapter


def group(k: str, shape: tuple[int, ...], mapped: bool) -> str:
    rules = (
        (lambda: not mapped, "other"),
        (lambda: len(shape) == 4 and shape[1] == 1, "dw"),
        (lambda: k.startswith("classifier"), "fc"),
        (lambda: "features.18" in k, "f18"),
        (lambda: ".conv.0.0" in k, "pw_expand"),
        (lambda: ".conv.2" in k or ".conv.1.weight" in k, "pw_project"),
        (lambda: k.startswith("embeddings.word"), "word_emb"),
        (lambda: "attention" in k, "attn"),
        (lambda: "intermediate" in k, "ffn_in"),
        (lambda: "output.dense" in k, "ffn_out"),
    )
    for test, name in rules:
        if test():
            return name
    return "conv_other"


def main() -> None:
    ad = get_adapter(sys.argv[1])
    t = ad.load()
    maps = {k: np.asarray(v, dtype=np.float64)
            for k, v in nntm.read_model(sys.argv[2]).items() if k in t}
    qp, scale = int(sys.argv[3]), float(sys.argv[4])
    extra = {k: parse_value(v) for k, v in (a.split("=", 1) for a in sys.argv[5:])}
    cfg = nntm.Config.from_files(
        ["cfg/encoder_output_aware.cfg"],
        overrides={"QP": qp, "ImportanceFile": "", "ImportanceQPScale": scale, **extra})
    res = nntm.encode_with_recon(dict(t), cfg,
                                 importance={k: v.astype(np.float32) for k, v in maps.items()})
    rec = res.recon
    base = ad.evaluate(rec)[ad.primary_metric]
    print("all coded", base, 8 * len(res.data) / sum(v.size for v in t.values()))
    groups: dict[str, list[str]] = {}
    for k in t:
        groups.setdefault(group(k, tuple(np.shape(t[k])), k in maps), []).append(k)
    bits = {s.name: s.bits for s in res.stats}
    for g, ks in groups.items():
        r2 = dict(rec)
        for k in ks:
            r2[k] = t[k]
        pred = sum(float(np.sum(maps[k] * (t[k].astype(np.float64)
                                           - rec[k].astype(np.float64)) ** 2))
                   for k in ks if k in maps)
        m = ad.evaluate(r2)[ad.primary_metric]
        n = sum(t[k].size for k in ks)
        print(f"{g:12s} n={n:9d} bits/param {sum(bits[k] for k in ks) / n:6.3f} "
              f"swap-in original -> {m:8.3f} (gain {m - base:+.3f} dB)  "
              f"map-predicted err {pred:.3e}")


if __name__ == "__main__":
    main()
