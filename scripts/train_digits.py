#!/usr/bin/env python3
"""Train the bundled example model (a small CNN on scikit-learn's digits).

Writes ``python/nntm/example/digits_cnn.safetensors`` (float32 weights) and
``python/nntm/example/digits_test.npz`` (the held-out test split).  Dev-only:
needs torch and scikit-learn (``pip install torch==2.13.0 scikit-learn``).
Fully deterministic: re-running it regenerates the same files.

Mild robustness, no QAT: random +-1 pixel shifts and light input noise, and
Gaussian noise on the weights during the training forward pass (the gradient
is taken at the perturbed point and applied to the clean weights), so that a
quantized model loses little accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import struct
import sys
import tempfile

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "python" / "nntm" / "example"
MODEL_FILE = OUT_DIR / "digits_cnn.safetensors"
TEST_FILE = OUT_DIR / "digits_test.npz"

SEED = 0
TENSOR_ORDER = (
    "conv1.weight",
    "conv1.bias",
    "conv2.weight",
    "conv2.bias",
    "fc1.weight",
    "fc1.bias",
    "fc2.weight",
    "fc2.bias",
)


class DigitsCnn(nn.Module):
    """conv1 -> ReLU -> conv2 -> ReLU -> maxpool 2 -> fc1 -> ReLU -> fc2."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(512, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        x = torch.flatten(self.pool(x), 1)
        x = torch.relu(self.fc1(x))
        return self.fc2(x)


def set_determinism(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)


def to_input(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 8, 8) in 0..16 -> float32 (N, 1, 8, 8) in 0..1."""
    return torch.from_numpy(images.astype(np.float32) / 16.0).unsqueeze(1)


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random shift by -1, 0 or +1 pixel in each direction, plus light noise."""
    n = x.shape[0]
    padded = nn.functional.pad(x, (1, 1, 1, 1))
    dy = torch.randint(0, 3, (n,), generator=gen)
    dx = torch.randint(0, 3, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(8)[None, :])[:, None, :, None].expand(n, 1, 8, 10)
    out = torch.gather(padded, 2, rows)
    cols = (dx[:, None] + torch.arange(8)[None, :])[:, None, None, :].expand(n, 1, 8, 8)
    out = torch.gather(out, 3, cols)
    out = out + 0.03 * torch.randn(out.shape, generator=gen)
    return out.clamp(0.0, 1.0)


def noisy_step(model: nn.Module, weights: list[torch.Tensor], xb: torch.Tensor,
               yb: torch.Tensor, opt: torch.optim.Optimizer,
               sched: torch.optim.lr_scheduler.LRScheduler, loss_fn: nn.Module,
               weight_noise: float, gen: torch.Generator) -> None:
    """One training step with weight-noise injection: perturb, forward/backward, restore."""
    saved = [w.detach().clone() for w in weights]
    with torch.no_grad():
        for w in weights:
            w.add_(weight_noise * torch.randn(w.shape, generator=gen))
    opt.zero_grad()
    loss = loss_fn(model(xb), yb)
    loss.backward()
    with torch.no_grad():
        for w, s in zip(weights, saved, strict=True):
            w.copy_(s)
    opt.step()
    sched.step()


def train(
    model: DigitsCnn,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    weight_noise: float,
) -> None:
    gen = torch.Generator().manual_seed(SEED)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, weight_decay=1e-4)
    steps_per_epoch = (len(x_train) + batch_size - 1) // batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=2e-3, total_steps=epochs * steps_per_epoch, pct_start=0.15
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    weights = [p for name, p in model.named_parameters() if name.endswith("weight")]
    for _epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(x_train), generator=gen)
        for start in range(0, len(x_train), batch_size):
            idx = perm[start : start + batch_size]
            xb = augment(x_train[idx], gen)
            yb = y_train[idx]
            noisy_step(model, weights, xb, yb, opt, sched, loss_fn, weight_noise, gen)


def write_safetensors(path: pathlib.Path, tensors: dict[str, np.ndarray]) -> None:
    """Minimal safetensors writer (F32 only), tensors in dict order, atomic."""
    header: dict[str, object] = {}
    offset = 0
    for name, arr in tensors.items():
        assert arr.dtype == np.float32
        header[name] = {
            "dtype": "F32",
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + arr.nbytes],
        }
        offset += arr.nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    payload = struct.pack("<Q", len(blob)) + blob
    payload += b"".join(np.ascontiguousarray(a, dtype="<f4").tobytes() for a in tensors.values())
    atomic_write(path, payload)


def atomic_write(path: pathlib.Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def save_test_split(path: pathlib.Path, images: np.ndarray, labels: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, images=images, labels=labels)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--weight-noise", type=float, default=0.01)
    args = parser.parse_args(argv)

    set_determinism(SEED)
    digits = load_digits()
    images = digits.images.astype(np.uint8)  # (1797, 8, 8), values 0..16
    labels = digits.target.astype(np.uint8)
    img_train, img_test, lab_train, lab_test = train_test_split(
        images, labels, test_size=0.2, random_state=0, stratify=labels
    )

    model = DigitsCnn()
    x_train = to_input(img_train)
    y_train = torch.from_numpy(lab_train.astype(np.int64))
    train(
        model,
        x_train,
        y_train,
        epochs=args.epochs,
        batch_size=args.batch_size,
        weight_noise=args.weight_noise,
    )

    model.eval()
    with torch.no_grad():
        torch_logits = model(to_input(img_test)).numpy()
    state = model.state_dict()
    tensors = {name: state[name].detach().numpy().astype(np.float32) for name in TENSOR_ORDER}

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    write_safetensors(MODEL_FILE, tensors)
    save_test_split(TEST_FILE, np.ascontiguousarray(img_test), np.ascontiguousarray(lab_test))

    # Check the pure-numpy forward of the package against torch.
    sys.path.insert(0, str(ROOT / "python"))
    from nntm.example import accuracy, forward, load_example_tensors

    loaded = load_example_tensors()
    assert list(loaded) == list(TENSOR_ORDER)
    np_logits = forward(loaded, img_test)
    max_diff = float(np.max(np.abs(np_logits - torch_logits)))
    if max_diff > 1e-4:
        print(f"numpy forward differs from torch by {max_diff:g}", file=sys.stderr)
        return 1
    torch_acc = 100.0 * float(np.mean(torch_logits.argmax(1) == lab_test))
    np_acc = accuracy(loaded)
    print(f"test accuracy: torch {torch_acc:.2f} %, numpy {np_acc:.2f} %")
    print(f"max |numpy - torch| logit difference: {max_diff:.2g}")
    for log2_step in (-6, -5, -4):
        step = 2.0**log2_step
        rounded = {k: (np.round(v / step) * step).astype(np.float32) for k, v in loaded.items()}
        print(f"  weights rounded to step 2^{log2_step}: {accuracy(rounded):.2f} %")
    print(f"wrote {MODEL_FILE.relative_to(ROOT)} ({MODEL_FILE.stat().st_size} bytes)")
    print(f"wrote {TEST_FILE.relative_to(ROOT)} ({TEST_FILE.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
