"""Known-answer tests of the Bjøntegaard computations in nntm.ce.bdrate."""

from __future__ import annotations

import math

import numpy as np
import pytest
from nntm.ce.bdrate import (
    bd_metric,
    bd_rate,
    pchip_eval,
    pchip_integral,
    pchip_slopes,
)

# A realistic, deliberately non-linear RD curve (bits/param vs SNR in dB).
RATES = [2.20, 3.05, 3.96, 4.94, 5.95, 6.99]
SNRS = [12.7, 18.1, 23.7, 29.6, 35.5, 41.5]
# A curve whose log-rate is strongly curved in the metric.
RATES_CURVED = [0.5, 0.9, 2.0, 4.5, 11.0]
METRIC_CURVED = [10.0, 19.0, 25.0, 28.0, 29.5]


@pytest.mark.parametrize("method", ["pchip", "cubic"])
@pytest.mark.parametrize("k", [0.9, 0.5, 1.25, 2.0])
def test_scaled_rates_give_exact_percentage(method: str, k: float) -> None:
    res = bd_rate(RATES, SNRS, [r * k for r in RATES], SNRS, method=method)
    assert res.ok and res.method == method
    assert res.value == pytest.approx((k - 1.0) * 100.0, abs=1e-9)
    assert res.interval == (SNRS[0], SNRS[-1])


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_minus_ten_percent_formatted(method: str) -> None:
    res = bd_rate(
        RATES_CURVED, METRIC_CURVED, [0.9 * r for r in RATES_CURVED], METRIC_CURVED, method
    )
    assert res.format(3) == "-10.000%"


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_identical_curves_give_zero(method: str) -> None:
    res = bd_rate(RATES, SNRS, RATES, SNRS, method=method)
    assert res.value == pytest.approx(0.0, abs=1e-12)
    res = bd_metric(RATES, SNRS, RATES, SNRS, method=method)
    assert res.value == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_shifted_metric_analytic(method: str) -> None:
    # Anchor: rate doubles every 6 dB.  Test: the same rates reach 3 dB more.
    # log R is linear in the metric, so both interpolations are exact and
    # BD-rate = 2^(-3/6) - 1 = -29.289..%, BD-metric = +3 dB.
    d = np.array([10.0, 16.0, 22.0, 28.0, 34.0, 40.0])
    r = 2.0 ** (d / 6.0)
    res = bd_rate(r, d, r, d + 3.0, method=method)
    assert res.value == pytest.approx((2.0**-0.5 - 1.0) * 100.0, abs=1e-9)
    assert res.interval == pytest.approx((13.0, 40.0))
    res_m = bd_metric(r, d, r, d + 3.0, method=method)
    assert res_m.value == pytest.approx(3.0, abs=1e-9)
    assert res_m.interval == pytest.approx((math.log(r[0]), math.log(r[-1])))


def test_shifted_metric_on_a_curved_curve_pchip() -> None:
    # Shift the metric by s and evaluate on an anchor with uneven spacing: the
    # test curve's knots are not the anchor's, so this exercises integration
    # across different segmentations.  The answer is computed here by brute
    # force (fine trapezoid on the two interpolants).
    s = 1.5
    res = bd_rate(RATES_CURVED, METRIC_CURVED, RATES_CURVED, [m + s for m in METRIC_CURVED])
    x_a = np.array(METRIC_CURVED)
    y_a = np.log(RATES_CURVED)
    lo, hi = METRIC_CURVED[0] + s, METRIC_CURVED[-1]
    grid = np.linspace(lo, hi, 200001)
    diff = pchip_eval(x_a - 0.0 + s, y_a, grid) - pchip_eval(x_a, y_a, grid)
    avg = float(np.sum((diff[1:] + diff[:-1]) / 2) * (grid[1] - grid[0]) / (hi - lo))
    assert res.value == pytest.approx(math.expm1(avg) * 100.0, abs=1e-6)
    assert res.value < 0


@pytest.mark.parametrize("method", ["pchip", "cubic"])
@pytest.mark.parametrize("k", [0.8, 1.3])
def test_symmetry_for_pure_scaling(method: str, k: float) -> None:
    x = bd_rate(RATES, SNRS, [r * k for r in RATES], SNRS, method).value
    y = bd_rate([r * k for r in RATES], SNRS, RATES, SNRS, method).value
    assert x is not None and y is not None
    assert (1 + x / 100) * (1 + y / 100) == pytest.approx(1.0, abs=1e-12)


def test_symmetry_approximate_for_general_curves() -> None:
    test_r = [2.0, 2.9, 3.8, 4.7, 5.9, 6.8]
    test_m = [13.0, 18.0, 24.5, 30.0, 35.0, 42.0]
    x = bd_rate(RATES, SNRS, test_r, test_m).value
    y = bd_rate(test_r, test_m, RATES, SNRS).value
    assert x is not None and y is not None and x < 0 < y
    assert (1 + x / 100) * (1 + y / 100) == pytest.approx(1.0, abs=1e-12)


def test_unsorted_points_give_the_same_answer() -> None:
    perm = [3, 0, 5, 1, 4, 2]
    tr = [r * 0.93 for r in RATES]
    tm = [m + 0.4 for m in SNRS]
    ref = bd_rate(RATES, SNRS, tr, tm)
    shuf = bd_rate(
        [RATES[i] for i in perm],
        [SNRS[i] for i in perm],
        [tr[i] for i in perm],
        [tm[i] for i in perm],
    )
    assert ref.value == pytest.approx(shuf.value, abs=1e-12)


def test_non_overlapping_curves_give_none_with_reason() -> None:
    res = bd_rate([1, 2, 3, 4], [10, 12, 14, 16], [1, 2, 3, 4], [20, 22, 24, 26])
    assert res.value is None and "overlap" in res.reason
    assert res.format() == "n/a"


def test_too_few_points() -> None:
    res = bd_rate([1.0], [10.0], [1.0, 2.0], [10.0, 12.0])
    assert res.value is None and "few" in res.reason
    # Cubic with three points falls back to pchip and says so.
    res = bd_rate([1, 2, 4], [10, 16, 22], [0.9, 1.8, 3.6], [10, 16, 22], method="cubic")
    assert res.method == "pchip" and "fall" not in res.reason and "pchip" in res.note
    assert res.value == pytest.approx(-10.0, abs=1e-9)


def test_saturated_metric_keeps_lowest_rate() -> None:
    # Accuracy saturates: the two top points share a metric; the cheaper wins.
    res = bd_rate(
        [1, 2, 4, 8, 16], [0.5, 0.8, 0.9, 0.95, 0.95], [1, 2, 4, 8], [0.5, 0.8, 0.9, 0.95]
    )
    assert res.value == pytest.approx(0.0, abs=1e-12)
    assert "merged" in res.note


def test_bad_method_raises() -> None:
    with pytest.raises(ValueError):
        bd_rate(RATES, SNRS, RATES, SNRS, method="linear")


def test_pchip_is_monotone_and_interpolates() -> None:
    x = np.array(METRIC_CURVED)
    y = np.log(RATES_CURVED)
    assert np.allclose(pchip_eval(x, y, x), y)
    fine = pchip_eval(x, y, np.linspace(x[0], x[-1], 5001))
    assert np.all(np.diff(fine) >= -1e-12)


def test_pchip_integral_of_linear_and_against_fine_quadrature() -> None:
    x = np.array([0.0, 1.0, 3.0, 4.0])
    assert pchip_integral(x, 2 * x + 1, 0.5, 3.5) == pytest.approx((3.5**2 + 3.5) - (0.25 + 0.5))
    xs = np.array(METRIC_CURVED)
    ys = np.log(RATES_CURVED)
    grid = np.linspace(12.0, 29.0, 400001)
    vals = pchip_eval(xs, ys, grid)
    trap = float(np.sum((vals[1:] + vals[:-1]) / 2) * (grid[1] - grid[0]))
    assert pchip_integral(xs, ys, 12.0, 29.0) == pytest.approx(trap, rel=1e-9)


def test_pchip_matches_scipy_when_available() -> None:
    interp = pytest.importorskip("scipy.interpolate")
    xs = np.array([10.0, 11.0, 15.0, 16.0, 25.0, 26.0])
    ys = np.array([0.0, 0.3, 0.35, 1.2, 1.25, 3.0])
    ref = interp.PchipInterpolator(xs, ys)
    assert np.allclose(pchip_slopes(xs, ys), ref.derivative()(xs), atol=1e-12)
    q = np.linspace(10.0, 26.0, 97)
    assert np.allclose(pchip_eval(xs, ys, q), ref(q), atol=1e-12)
    assert pchip_integral(xs, ys, 10.5, 25.5) == pytest.approx(
        float(ref.integrate(10.5, 25.5)), abs=1e-12
    )
