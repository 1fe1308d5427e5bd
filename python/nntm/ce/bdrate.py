"""Bjøntegaard delta rate and delta metric.

Two interpolation methods are offered:

``"pchip"`` (default)
    Piecewise cubic Hermite interpolation with monotone (Fritsch-Carlson)
    slopes, as in current JVET/VCEG practice (the piecewise-cubic BD-rate of
    the JVET common-test-condition spreadsheets).  It needs at least two
    points per curve; it follows the measured points exactly and never
    overshoots between them, so a single noisy point cannot swing the result
    the way a global polynomial can.
``"cubic"``
    The classic VCEG-M33 method: a least-squares cubic polynomial through the
    points of each curve (an exact interpolation with four points).  It needs
    at least four points per curve; with fewer it falls back to ``"pchip"``
    and says so in :attr:`BDResult.note`.

BD-rate interpolates ``log(rate)`` as a function of the metric over the
interval where the two curves' metric ranges overlap, integrates both curves
exactly (each piece is a cubic, integrated in closed form) and reports
``exp(mean difference) - 1`` in percent: negative means the test needs less
rate for the same metric.  BD-metric swaps the axes (metric as a function of
log-rate over the overlapping log-rate interval) and reports the mean metric
difference in the metric's own unit.

The metric must be "higher is better" (dB-like).  Points are sorted by
themselves; points with a non-finite or non-positive rate, or a non-finite
metric, are dropped; when several points share one abscissa value the one
with the best ordinate is kept (for BD-rate: the lowest rate for a metric
value, e.g. an accuracy that saturates).  A curve whose metric does not rise
with rate is still evaluated and flagged in the note.

Only numpy is used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "BDResult",
    "bd_rate",
    "bd_metric",
    "pchip_slopes",
    "pchip_eval",
    "pchip_integral",
    "METHODS",
]

METHODS = ("pchip", "cubic")


@dataclass(frozen=True)
class BDResult:
    """Outcome of one Bjøntegaard computation.

    ``value`` is the BD-rate in percent (or the BD-metric in metric units),
    or ``None`` when it cannot be computed; ``reason`` then says why.
    ``method`` is the interpolation actually used (``"pchip"`` when
    ``"cubic"`` fell back).  ``interval`` is the overlapping abscissa range
    that was integrated (metric for BD-rate, natural-log rate for BD-metric).
    ``note`` carries warnings that did not prevent a result.
    """

    value: float | None
    method: str
    interval: tuple[float, float] | None = None
    reason: str = ""
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.value is not None

    def format(self, digits: int = 2, unit: str = "%") -> str:
        """The value for a table, or ``n/a``."""
        if self.value is None:
            return "n/a"
        return f"{self.value:.{digits}f}{unit}"


# ---------------------------------------------------------------------------
# PCHIP (monotone piecewise cubic Hermite), numpy only
# ---------------------------------------------------------------------------


def _edge_slope(h0: float, h1: float, m0: float, m1: float) -> float:
    """One-sided three-point slope at an end, made shape preserving."""
    d = ((2.0 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
    if np.sign(d) != np.sign(m0):
        return 0.0
    if np.sign(m0) != np.sign(m1) and abs(d) > abs(3.0 * m0):
        return 3.0 * m0
    return float(d)


def pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fritsch-Carlson derivatives at the knots ``x`` (strictly increasing).

    Interior knots use the weighted harmonic mean of the neighbouring secant
    slopes (zero at a local extremum); the ends use the shape-preserving
    three-point formula.  This is the rule of MATLAB's ``pchip`` and SciPy's
    ``PchipInterpolator``.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = x.size
    if n < 2:
        raise ValueError("pchip needs at least two points")
    h = np.diff(x)
    if np.any(h <= 0):
        raise ValueError("pchip abscissae must be strictly increasing")
    m = np.diff(y) / h
    if n == 2:
        return np.array([m[0], m[0]])
    d = np.zeros(n)
    for k in range(1, n - 1):
        m0, m1 = m[k - 1], m[k]
        if m0 == 0.0 or m1 == 0.0 or np.sign(m0) != np.sign(m1):
            d[k] = 0.0
        else:
            w1 = 2.0 * h[k] + h[k - 1]
            w2 = h[k] + 2.0 * h[k - 1]
            d[k] = (w1 + w2) / (w1 / m0 + w2 / m1)
    d[0] = _edge_slope(h[0], h[1], m[0], m[1])
    d[-1] = _edge_slope(h[-1], h[-2], m[-1], m[-2])
    return d


def _segment_coeffs(
    x: np.ndarray, y: np.ndarray, d: np.ndarray, k: int
) -> tuple[float, float, float, float]:
    """Coefficients of segment k as ``c0 + c1 t + c2 t^2 + c3 t^3``, t = x - x[k]."""
    h = x[k + 1] - x[k]
    delta = (y[k + 1] - y[k]) / h
    c2 = (3.0 * delta - 2.0 * d[k] - d[k + 1]) / h
    c3 = (d[k] + d[k + 1] - 2.0 * delta) / (h * h)
    return float(y[k]), float(d[k]), float(c2), float(c3)


def pchip_eval(x: np.ndarray, y: np.ndarray, xq: np.ndarray | float) -> np.ndarray:
    """Evaluate the PCHIP interpolant of (x, y) at ``xq`` (inside [x0, xn])."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    d = pchip_slopes(x, y)
    xq_arr = np.atleast_1d(np.asarray(xq, dtype=np.float64))
    k = np.clip(np.searchsorted(x, xq_arr, side="right") - 1, 0, x.size - 2)
    h = np.diff(x)
    delta = np.diff(y) / h
    c2 = (3.0 * delta - 2.0 * d[:-1] - d[1:]) / h
    c3 = (d[:-1] + d[1:] - 2.0 * delta) / (h * h)
    t = xq_arr - x[k]
    return y[k] + t * (d[k] + t * (c2[k] + t * c3[k]))


def _poly_antideriv(c: tuple[float, float, float, float], t: float) -> float:
    c0, c1, c2, c3 = c
    return t * (c0 + t * (c1 / 2.0 + t * (c2 / 3.0 + t * c3 / 4.0)))


def pchip_integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    """Exact integral of the PCHIP interpolant of (x, y) from ``lo`` to ``hi``.

    ``[lo, hi]`` must lie inside ``[x[0], x[-1]]``; each cubic piece is
    integrated in closed form.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if not (x[0] <= lo <= hi <= x[-1]):
        raise ValueError("integration interval outside the interpolation range")
    d = pchip_slopes(x, y)
    total = 0.0
    for k in range(x.size - 1):
        a = max(lo, x[k])
        b = min(hi, x[k + 1])
        if b <= a:
            continue
        c = _segment_coeffs(x, y, d, k)
        total += _poly_antideriv(c, b - x[k]) - _poly_antideriv(c, a - x[k])
    return total


def _cubic_integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    """Integral over [lo, hi] of the least-squares cubic through (x, y)."""
    # Centre and scale the abscissa: the fit is then well conditioned even
    # for metrics such as bits (1e6) or accuracies (0.97..0.99).
    mu = float(np.mean(x))
    sc = float(np.max(np.abs(x - mu))) or 1.0
    p = np.polyfit((x - mu) / sc, y, 3)
    pint = np.polyint(p)
    return float(np.polyval(pint, (hi - mu) / sc) - np.polyval(pint, (lo - mu) / sc)) * sc


# ---------------------------------------------------------------------------
# Curve preparation
# ---------------------------------------------------------------------------


def _prepare(
    rates: Sequence[float], metrics: Sequence[float], label: str, axis: str
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Clean one curve and return (abscissa, ordinate, notes).

    ``axis == "metric"``: abscissa = metric, ordinate = ln(rate), and among
    equal metrics the lowest rate is kept.  ``axis == "rate"``: abscissa =
    ln(rate), ordinate = metric, and among equal rates the highest metric is
    kept.
    """
    r = np.asarray(list(rates), dtype=np.float64)
    m = np.asarray(list(metrics), dtype=np.float64)
    if r.shape != m.shape or r.ndim != 1:
        raise ValueError(f"{label}: rates and metrics must be 1-D sequences of equal length")
    notes: list[str] = []
    keep = np.isfinite(r) & (r > 0) & np.isfinite(m)
    if not np.all(keep):
        notes.append(
            f"{label}: dropped {int(np.sum(~keep))} point(s) with non-finite metric or rate <= 0"
        )
    r, m = r[keep], m[keep]
    if r.size:
        order = np.lexsort((m, r))
        if np.any(np.diff(m[order]) < 0):
            notes.append(f"{label}: metric does not increase with rate")
    lr = np.log(r)
    if axis == "metric":
        xs, ys, better_low = m, lr, True
    else:
        xs, ys, better_low = lr, m, False
    best: dict[float, float] = {}
    for xv, yv in zip(xs.tolist(), ys.tolist(), strict=True):
        if xv not in best or (yv < best[xv] if better_low else yv > best[xv]):
            best[xv] = yv
    if len(best) < xs.size:
        what = "metric" if axis == "metric" else "rate"
        notes.append(f"{label}: {xs.size - len(best)} point(s) with a repeated {what} merged")
    xk = np.array(sorted(best))
    yk = np.array([best[v] for v in xk.tolist()])
    return xk, yk, notes


def _delta(
    anchor: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    method: str,
    notes: list[str],
) -> tuple[float | None, str, tuple[float, float] | None, str]:
    """Mean of test - anchor ordinates over the overlapping abscissa range."""
    if method not in METHODS:
        raise ValueError(f"unknown BD method {method!r}; expected one of {METHODS}")
    (xa, ya), (xt, yt) = anchor, test
    n = min(xa.size, xt.size)
    if n < 2:
        return (
            None,
            method,
            None,
            f"too few distinct points (anchor {xa.size}, test {xt.size}; need 2)",
        )
    used = method
    if method == "cubic" and n < 4:
        used = "pchip"
        notes.append(f"cubic needs 4 points per curve (have {n}); used pchip")
    elif method == "pchip" and n < 4:
        notes.append(f"only {n} points on a curve (4 or more recommended)")
    lo = max(float(xa[0]), float(xt[0]))
    hi = min(float(xa[-1]), float(xt[-1]))
    if not hi > lo:
        return (
            None,
            used,
            None,
            (
                f"curves do not overlap (anchor [{xa[0]:.6g}, {xa[-1]:.6g}], "
                f"test [{xt[0]:.6g}, {xt[-1]:.6g}])"
            ),
        )
    if used == "pchip":
        ia = pchip_integral(xa, ya, lo, hi)
        it = pchip_integral(xt, yt, lo, hi)
    else:
        ia = _cubic_integral(xa, ya, lo, hi)
        it = _cubic_integral(xt, yt, lo, hi)
    span_a = float(xa[-1] - xa[0])
    span_t = float(xt[-1] - xt[0])
    frac = (hi - lo) / max(span_a, span_t)
    if frac < 0.5:
        notes.append(f"overlap covers only {100 * frac:.0f}% of the wider curve")
    return (it - ia) / (hi - lo), used, (lo, hi), ""


def bd_rate(
    anchor_rates: Sequence[float],
    anchor_metrics: Sequence[float],
    test_rates: Sequence[float],
    test_metrics: Sequence[float],
    method: str = "pchip",
) -> BDResult:
    """BD-rate of the test curve against the anchor curve, in percent.

    Negative values mean the test needs less rate for the same metric.  Rates
    may be in any positive unit (bits, bytes, bits per parameter) as long as
    both curves use the same one; the metric must be higher-is-better.
    """
    notes: list[str] = []
    a = _prepare(anchor_rates, anchor_metrics, "anchor", "metric")
    t = _prepare(test_rates, test_metrics, "test", "metric")
    notes += a[2] + t[2]
    avg, used, interval, reason = _delta(a[:2], t[:2], method, notes)
    value = None if avg is None else float(np.expm1(avg) * 100.0)
    return BDResult(value, used, interval, reason, "; ".join(notes))


def bd_metric(
    anchor_rates: Sequence[float],
    anchor_metrics: Sequence[float],
    test_rates: Sequence[float],
    test_metrics: Sequence[float],
    method: str = "pchip",
) -> BDResult:
    """BD-metric (e.g. BD-SNR in dB): mean metric gain of test at equal rate."""
    notes: list[str] = []
    a = _prepare(anchor_rates, anchor_metrics, "anchor", "rate")
    t = _prepare(test_rates, test_metrics, "test", "rate")
    notes += a[2] + t[2]
    avg, used, interval, reason = _delta(a[:2], t[:2], method, notes)
    return BDResult(avg, used, interval, reason, "; ".join(notes))
