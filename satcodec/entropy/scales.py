"""Encoder-side scale estimation and snapping to the table (float maths is fine here: the
chosen index is what gets transmitted, so the decoder never repeats this computation)."""

from __future__ import annotations

import numpy as np

from satcodec.entropy.table import SCALE_TABLE

# Geometric midpoints between neighbouring scales = nearest-neighbour bounds in log domain.
_LOG_BOUNDS = np.sqrt(SCALE_TABLE[:-1] * SCALE_TABLE[1:])


def estimate_scales(latents: np.ndarray) -> np.ndarray:
    """Maximum-likelihood scale of a zero-mean Laplacian for each channel.

    Args:
        latents: float array (C, h, w), already divided by the quantisation step.

    Returns:
        float64 (C,): ``mean(|y|)`` over (h, w), floored to ``SCALE_TABLE[0]`` (a dead
        channel then maps to the cheapest row instead of a zero scale). NaN latents give
        NaN, which :func:`scale_to_index` rejects.
    """
    y = np.asarray(latents)
    if y.ndim != 3:
        raise ValueError(f"latents must have shape (C, h, w), got {y.shape}")
    if y.shape[1] * y.shape[2] == 0:
        return np.full(y.shape[0], SCALE_TABLE[0])
    s = np.abs(y, dtype=np.float64).mean(axis=(1, 2))
    return np.maximum(s, SCALE_TABLE[0])  # np.maximum keeps NaN


def scale_to_index(scales: np.ndarray) -> np.ndarray:
    """Index of the nearest table scale in the log domain, clipped to ``[0, 255]``.

    Scales <= ``SCALE_TABLE[0]`` (including 0 and negatives) map to 0, scales beyond the last
    entry (including +inf) to 255. Raises ``ValueError`` on NaN.

    Returns:
        uint8 array of the same shape as ``scales``.
    """
    s = np.asarray(scales, dtype=np.float64)
    if np.isnan(s).any():
        raise ValueError("scale_to_index: NaN scale")
    return np.searchsorted(_LOG_BOUNDS, s, side="right").astype(np.uint8)
