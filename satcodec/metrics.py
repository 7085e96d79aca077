"""Image quality metrics on the sensor's true dynamic range (not 8-bit)."""

from __future__ import annotations

import numpy as np


def mse(reference: np.ndarray, test: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean squared error in sensor units over ``mask`` (True = valid pixel)."""
    d = reference.astype(np.float64) - test.astype(np.float64)
    if mask is not None:
        d = d[np.broadcast_to(mask, d.shape)]
    return float(np.mean(d * d))


def psnr(
    reference: np.ndarray, test: np.ndarray, bit_depth: int, mask: np.ndarray | None = None
) -> float:
    """PSNR in dB with peak 2^bit_depth − 1 (4095 for 12-bit data)."""
    e = mse(reference, test, mask)
    peak = float(2**bit_depth - 1)
    return float("inf") if e == 0 else 10 * np.log10(peak * peak / e)


def bits_per_pixel(nbytes: int, pixels: int) -> float:
    return 8.0 * nbytes / pixels
