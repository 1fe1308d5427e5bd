"""Importance maps from calibration data: output sensitivity, and the nntm-calibrate app.

The output-sensitivity estimator is checked against brute-force per-sample
gradients on small networks (exact for a scalar output with +-1 probes); the
app writes a file that ``nntm.read_model`` reads and the encoder accepts.
Tests that need torch or scikit-learn skip without them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nntm
import numpy as np
import pytest
from nntm.apps.calibrate import main as calibrate_main
from nntm.ce.models import get_adapter
from nntm.config import Config

ROOT = Path(__file__).resolve().parent.parent
OUTPUT_AWARE = ROOT / "cfg" / "encoder_output_aware.cfg"


def _torch() -> Any:
    return pytest.importorskip("torch", reason="torch is not installed (scripts/install_ce.sh)")


def _brute_force(net: Any, weights: dict[str, Any], x: Any) -> dict[str, np.ndarray]:
    """sum_n (d f_n / d W)^2 / N for a network with one scalar output per sample."""
    torch = _torch()
    total = {name: np.zeros(tuple(w.shape)) for name, w in weights.items()}
    for n in range(x.shape[0]):
        grads = torch.autograd.grad(net(x[n : n + 1]).sum(), list(weights.values()))
        for name, grad in zip(weights, grads, strict=True):
            total[name] += grad.double().numpy() ** 2
    return {name: value / x.shape[0] for name, value in total.items()}


def test_output_sensitivity_exact_for_a_scalar_output() -> None:
    torch = _torch()
    from nntm.ce.models.base import OutputSensitivity, sign_probes

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, padding=1),
        torch.nn.Tanh(),
        torch.nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=4),  # depthwise
        torch.nn.Tanh(),
        torch.nn.Conv2d(4, 3, 1),  # pointwise
        torch.nn.Flatten(),
        torch.nn.Linear(3 * 4 * 4, 5),
        torch.nn.Tanh(),
        torch.nn.Linear(5, 1),
        torch.nn.Flatten(0),
    ).double()
    names = {"0": "c1", "2": "dw", "4": "pw", "6": "fc", "8": "out"}
    modules = dict(net.named_modules())
    x = torch.randn(11, 2, 7, 7, dtype=torch.float64)
    expected = _brute_force(net, {v: modules[k].weight for k, v in names.items()}, x)
    with OutputSensitivity(net, names, floor=0.0) as probe:
        generator = torch.Generator().manual_seed(1)
        for start in (0, 6):  # two chunks
            chunk = x[start : start + 6]
            probe.run(lambda chunk=chunk: net(chunk), sign_probes, 2, generator)
        factored = probe.maps()
        diagonal = probe.maps(form="diagonal")
        marginal = probe.maps(form="marginal")
        layer = probe.maps(form="layer")
    assert all(p.requires_grad for p in net.parameters())  # restored
    for name, value in expected.items():
        # the diagonal form is the brute-force sum; each factored map sums to it
        np.testing.assert_allclose(diagonal[name], value, rtol=1e-4, atol=1e-12)
        assert factored[name].shape == value.shape and factored[name].dtype == np.float32
        assert factored[name].sum() == pytest.approx(value.sum(), rel=1e-4)
        assert probe.stats[name]["trace"] == pytest.approx(value.sum(), rel=1e-6)
        # the layer form: the same sum, one value per input channel (and kernel tap)
        assert layer[name].sum() == pytest.approx(value.sum(), rel=1e-4)
        if name != "dw":  # (a depthwise kernel's one input channel is its output channel)
            assert np.ptp(layer[name], axis=0).max() <= 1e-6 * layer[name].max()
        # the marginal form keeps the row and column sums of the diagonal form
        rows = tuple(range(1, value.ndim))
        np.testing.assert_allclose(marginal[name].sum(axis=rows), value.sum(axis=rows), rtol=1e-4)
        np.testing.assert_allclose(marginal[name].sum(axis=0), value.sum(axis=0), rtol=1e-4)


def test_output_sensitivity_of_an_embedding() -> None:
    torch = _torch()
    from nntm.ce.models.base import OutputSensitivity, sign_probes

    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.table = torch.nn.Embedding(9, 3)
            self.head = torch.nn.Linear(3, 1)
            self.unused = torch.nn.Linear(3, 2)

        def forward(self, ids: Any) -> Any:
            h = torch.tanh(self.table(ids)).mean(dim=1)
            self.unused(h)  # runs, but does not reach the output
            return self.head(h)[:, 0]

    net = Net().double()
    ids = torch.tensor([[1, 2, 2, 3], [4, 1, 1, 1], [2, 5, 6, 0]])
    mask = ids > 0  # index 0 is padding, not counted
    with OutputSensitivity(net, {"table": "t", "head": "h", "unused": "u"}) as probe:
        probe.token_mask = mask
        probe.run(lambda: net(ids), sign_probes, 1, torch.Generator().manual_seed(0))
        maps = probe.maps({"t": lambda counts: counts / counts.sum()})
    expected = _brute_force(net, {"t": net.table.weight, "h": net.head.weight}, ids)
    assert maps["t"].shape == (9, 3) and maps["u"].shape == (2, 3)
    assert not np.any(maps["u"])  # no path to the output
    assert maps["t"].sum() == pytest.approx(expected["t"].sum(), rel=1e-5)
    counts = np.bincount(ids[mask].numpy(), minlength=9)
    rows = maps["t"].sum(axis=1)
    np.testing.assert_allclose(rows / rows.sum(), counts / counts.sum(), rtol=1e-5)
    np.testing.assert_allclose(maps["h"], expected["h"], rtol=1e-5)


def test_softmax_fisher_probes() -> None:
    torch = _torch()
    from nntm.ce.models.base import softmax_fisher_probes

    logits = torch.tensor([[2.0, 0.5, -1.0, 0.0]], dtype=torch.float64).repeat(40000, 1)
    r = softmax_fisher_probes(logits, torch.Generator().manual_seed(0))
    p = torch.softmax(logits[0], dim=0)
    fisher = torch.diag(p) - torch.outer(p, p)
    covariance = r.T @ r / r.shape[0]
    np.testing.assert_allclose(covariance.numpy(), fisher.numpy(), atol=0.01)
    np.testing.assert_allclose(r.sum(dim=1).numpy(), 0.0, atol=1e-12)  # softmax is shift-free


# -------------------------------------------------------------------------------------
# nntm-calibrate
# -------------------------------------------------------------------------------------


def _digits_or_skip() -> Any:
    pytest.importorskip("sklearn", reason="digits calibration images need scikit-learn")
    adapter = get_adapter("digits")
    ok, why = adapter.available()
    if not ok:
        pytest.skip(why)
    return adapter


@pytest.mark.parametrize("kind", ["activation", "sensitivity"])
def test_calibrate_writes_an_importance_file(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if kind == "sensitivity":
        _torch()
    adapter = _digits_or_skip()
    path = tmp_path / "imp.safetensors"
    argv = ["--model", "digits", "--kind", kind, "-o", str(path)]
    if kind == "sensitivity":
        argv += ["--samples", "128", "--probes", "2"]
    assert calibrate_main(argv) == 0
    assert "wrote" in capsys.readouterr().out
    maps = nntm.read_model(path)
    tensors = adapter.load()
    assert set(maps) == {"conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"}
    for name, value in maps.items():
        assert value.dtype == np.float32 and np.all(np.isfinite(value)) and np.all(value >= 0)
        if kind == "sensitivity":
            assert value.shape == tensors[name].shape
        else:
            assert value.shape == (tensors[name].shape[1],)
    cfg = Config.from_files([str(OUTPUT_AWARE)], overrides={"QP": -24, "ImportanceFile": ""})
    result = nntm.encode_with_recon(tensors, cfg, importance=maps)
    decoded = nntm.decode(result.data)
    for name, value in result.recon.items():
        np.testing.assert_array_equal(decoded[name], value)


def test_calibrate_npz_and_input_model(tmp_path: Path) -> None:
    adapter = _digits_or_skip()
    model = tmp_path / "model.safetensors"
    nntm.write_model(model, adapter.load())
    path = tmp_path / "imp.npz"
    assert (
        calibrate_main(["-m", "digits", "-k", "activation", "-o", str(path), "-i", str(model)]) == 0
    )
    maps = nntm.read_model(path)
    reference = adapter.input_channel_importance(adapter.load())
    for name, value in reference.items():
        np.testing.assert_allclose(maps[name], value.astype(np.float32))


def test_calibrate_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert calibrate_main(["--model", "digits", "-o", str(tmp_path / "imp.bin")]) == 1
    assert "use a .safetensors or .npz name" in capsys.readouterr().err
    assert not (tmp_path / "imp.bin").exists()
    argv = ["-m", "digits", "-k", "activation", "--samples", "4", "-o", str(tmp_path / "i.npz")]
    assert calibrate_main(argv) == 1
    assert "sensitivity only" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        calibrate_main(["--model", "resnet", "-o", str(tmp_path / "imp.npz")])
    with pytest.raises(SystemExit):
        calibrate_main(["--model", "digits", "--kind", "hessian", "-o", str(tmp_path / "i.npz")])
