"""Bjøntegaard deltas (VCEG-M33) between two rate–distortion curves.

Natural log of the rate; piecewise cubic Hermite interpolation (PCHIP, Fritsch–Carlson, the
default, as in JVET-style Bjøntegaard tools) or the original cubic polynomial fit of VCEG-M33
(``method="cubic"``). Integrals are taken over the **intersection** of the two curves' ranges
only (no extrapolation); when the ranges do not overlap the result is NaN. BD-rate is
``exp(mean Δ ln R) − 1`` in percent: negative means the test codec needs fewer bits than the
anchor for the same PSNR.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def _prepare(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Finite points sorted by x, with duplicated x merged (mean of their y)."""
    xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if xa.shape != ya.shape or xa.ndim != 1:
        raise ValueError("x and y must be 1-D sequences of the same length")
    ok = np.isfinite(xa) & np.isfinite(ya)
    xa, ya = xa[ok], ya[ok]
    ux, inv = np.unique(xa, return_inverse=True)
    uy = np.bincount(inv, weights=ya) / np.bincount(inv)
    return ux, uy


def _pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Derivatives of the monotone PCHIP interpolant (Fritsch–Carlson, SciPy's edge rule)."""
    h = np.diff(x)
    delta = np.diff(y) / h
    n = len(x)
    d = np.zeros(n)
    if n == 2:
        return np.full(2, delta[0])
    for k in range(1, n - 1):
        if delta[k - 1] * delta[k] > 0:
            w1, w2 = 2 * h[k] + h[k - 1], h[k] + 2 * h[k - 1]
            d[k] = (w1 + w2) / (w1 / delta[k - 1] + w2 / delta[k])

    def edge(h0: float, h1: float, m0: float, m1: float) -> float:
        e = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
        if np.sign(e) != np.sign(m0):
            return 0.0
        if np.sign(m0) != np.sign(m1) and abs(e) > 3 * abs(m0):
            return 3 * m0
        return e

    d[0] = edge(h[0], h[1], delta[0], delta[1])
    d[-1] = edge(h[-1], h[-2], delta[-1], delta[-2])
    return d


def _pchip_integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    """∫_lo^hi of the PCHIP interpolant of (x, y), lo and hi inside [x0, xn]."""
    d = _pchip_slopes(x, y)
    total = 0.0
    for k in range(len(x) - 1):
        a, b = max(lo, x[k]), min(hi, x[k + 1])
        if b <= a:
            continue
        h = x[k + 1] - x[k]
        delta = (y[k + 1] - y[k]) / h
        c0, c1 = y[k], d[k]
        c2 = (3 * delta - 2 * d[k] - d[k + 1]) / h
        c3 = (d[k] + d[k + 1] - 2 * delta) / (h * h)

        def prim(t: float, c0=c0, c1=c1, c2=c2, c3=c3) -> float:
            return c0 * t + c1 * t**2 / 2 + c2 * t**3 / 3 + c3 * t**4 / 4

        total += prim(b - x[k]) - prim(a - x[k])
    return total


def _cubic_integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    """∫_lo^hi of the least-squares polynomial of degree min(3, n−1) through (x, y)."""
    p = np.polyint(np.polyfit(x, y, min(3, len(x) - 1)))
    return float(np.polyval(p, hi) - np.polyval(p, lo))


def _mean_difference(
    x1: np.ndarray, y1: np.ndarray, x2: np.ndarray, y2: np.ndarray, method: str
) -> tuple[float, float]:
    """Mean of (curve2 − curve1) over the overlap of their x ranges, and the overlap width."""
    if method not in ("pchip", "cubic"):
        raise ValueError(f"unknown BD interpolation {method!r} (expected 'pchip' or 'cubic')")
    if len(x1) < 2 or len(x2) < 2:
        return math.nan, 0.0
    lo, hi = max(x1[0], x2[0]), min(x1[-1], x2[-1])
    if not hi > lo:
        return math.nan, 0.0
    integral = _pchip_integral if method == "pchip" else _cubic_integral
    diff = integral(x2, y2, lo, hi) - integral(x1, y1, lo, hi)
    return float(diff / (hi - lo)), float(hi - lo)


def bd_rate(
    rate_anchor: Sequence[float],
    psnr_anchor: Sequence[float],
    rate_test: Sequence[float],
    psnr_test: Sequence[float],
    method: str = "pchip",
) -> float:
    """Bjøntegaard delta rate of the test curve against the anchor, in percent.

    Average relative rate difference at equal quality over the PSNR interval both curves
    cover; NaN if they do not overlap or either has fewer than two distinct points.
    """
    pa, la = _prepare(psnr_anchor, np.log(np.asarray(rate_anchor, dtype=np.float64)))
    pt, lt = _prepare(psnr_test, np.log(np.asarray(rate_test, dtype=np.float64)))
    diff, _ = _mean_difference(pa, la, pt, lt, method)
    return float((math.exp(diff) - 1) * 100) if math.isfinite(diff) else math.nan


def bd_psnr(
    rate_anchor: Sequence[float],
    psnr_anchor: Sequence[float],
    rate_test: Sequence[float],
    psnr_test: Sequence[float],
    method: str = "pchip",
) -> float:
    """Bjøntegaard delta PSNR (dB) of the test curve against the anchor at equal rate."""
    la, pa = _prepare(np.log(np.asarray(rate_anchor, dtype=np.float64)), psnr_anchor)
    lt, pt = _prepare(np.log(np.asarray(rate_test, dtype=np.float64)), psnr_test)
    diff, _ = _mean_difference(la, pa, lt, pt, method)
    return diff


def bd_overlap(
    rate_anchor: Sequence[float],
    psnr_anchor: Sequence[float],
    rate_test: Sequence[float],
    psnr_test: Sequence[float],
) -> dict[str, float]:
    """Width of the common PSNR interval (dB) and of the common rate interval (octaves)."""

    def width(a: Sequence[float], b: Sequence[float]) -> float:
        a = [v for v in a if math.isfinite(v)]
        b = [v for v in b if math.isfinite(v)]
        if not a or not b:
            return 0.0
        return max(0.0, min(max(a), max(b)) - max(min(a), min(b)))

    la = [math.log2(r) for r in rate_anchor if r > 0]
    lt = [math.log2(r) for r in rate_test if r > 0]
    return {"psnr_overlap_db": width(psnr_anchor, psnr_test), "rate_overlap_oct": width(la, lt)}
