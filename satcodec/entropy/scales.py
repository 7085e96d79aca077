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


def fit_scale_indices(symbols: np.ndarray) -> np.ndarray:
    """Table index per channel that minimises the channel's code length (encoder side).

    ``mean(|y|)`` (:func:`estimate_scales`) is the maximum-likelihood scale of a continuous
    Laplacian, but the coder models the *quantised* symbols, and there it is badly biased
    wherever most symbols are 0: with 90 % zeros and the rest ±1, mean|k| = 0.1 while the
    discretised Laplacian that fits (P(0) = 0.9) has s = 1 / (2 ln 10) = 0.22. (The encoder
    used mean|y| of the *unrounded* latents, which is much less biased: against that, fitting
    the code length gained +0.00 to +0.04 dB at equal rate on three dev images.)

    Evaluates the discretised-Laplacian code length of every channel under every table scale
    from three sufficient statistics (zeros, non-zeros, sum of ``|k| - 1/2``): O(N + 256·C).
    The transmitted index is what the decoder uses, so this float maths never reaches it.

    Args:
        symbols: integer array (C, h, w), the quantised latents.

    Returns:
        uint8 (C,).
    """
    k = np.asarray(symbols)
    if k.ndim != 3:
        raise ValueError(f"symbols must have shape (C, h, w), got {k.shape}")
    c = k.shape[0]
    if k.shape[1] * k.shape[2] == 0:
        return np.zeros(c, dtype=np.uint8)
    a = np.abs(k.reshape(c, k.shape[1] * k.shape[2])).astype(np.float64)
    n_nz = np.count_nonzero(a, axis=1).astype(np.float64)
    n_zero = a.shape[1] - n_nz
    excess = a.sum(axis=1) - 0.5 * n_nz  # sum of (|k| - 1/2) over the non-zero symbols
    return scale_indices_from_stats(np.stack([n_zero, n_nz, excess], axis=1))


def scale_indices_from_stats(stats: np.ndarray) -> np.ndarray:
    """:func:`fit_scale_indices` from each channel's sufficient statistics (C, 3): zeros,
    non-zeros and sum of ``|k| - 1/2``, exact in float64 (as
    :func:`~satcodec.entropy.quantiser.quantise_with_stats` gives them). uint8 (C,)."""
    return np.argmin(np.asarray(stats, np.float64) @ LAPLACE_BITS_PER_ROW, axis=1).astype(np.uint8)


# code length of the discretised Laplacian per table scale s (see rate.ideal_bits), (3, 256):
# -log2 P(0) = -log2(1 - e^{-1/2s});  -log2 P(k) = 1 - log2(1 - e^{-1/s}) + (|k| - 1/2)/(s ln 2),
# i.e. bits of a zero, of a non-zero's sign and first bin, and per unit of |k| - 1/2
LAPLACE_BITS_PER_ROW = np.stack(
    [
        -np.log2(-np.expm1(-0.5 / SCALE_TABLE)),
        1.0 - np.log2(-np.expm1(-1.0 / SCALE_TABLE)),
        1.0 / (SCALE_TABLE * np.log(2.0)),
    ]
)
