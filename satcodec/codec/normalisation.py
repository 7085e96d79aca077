"""The texture rule of band normalisation: the peak a band is divided by before the analysis
transform, from its texture. In the codec layer because training patches and the encoder both
apply it (:func:`satcodec.codec.data.band_samples`, :mod:`satcodec.coding.normalisation`).

The transforms are not scale-invariant: a GDN analysis trained on bands divided by their
bit depth's peak codes best at the texture amplitude it saw in training. A band whose
pixel-to-pixel variation is a small fraction of its bit depth's range (a Sentinel-2 band in
a 15-bit word, a smooth 12-bit scene) or a large one (8-bit Landsat 7) codes better with
the peak that brings its texture to that amplitude. ``bench/band_peaks.py`` measures it:
the best input gain puts each band's mean absolute Laplacian, in peak units, at about
:data:`TARGET_LAPLACIAN`, on every sensor family of the development set.
"""

from __future__ import annotations

import math

import numpy as np

from satcodec.errors import ConfigError

# mean |4x - (left + right + up + down)| of a band divided by its peak that codes best, fitted
# by bench/band_peaks.py over the development set's bands (median of the per-band optima:
# 0.023, 0.020 and 0.025 at 0.5, 1 and 2 bpp; spread about half an octave)
TARGET_LAPLACIAN = 0.024
# how far the texture rule may move a band's peak from its bit depth's, in bits: beyond
# this the fit has no data (the development set spans -3..+3)
MAX_PEAK_SHIFT_DOWN = 5
MAX_PEAK_SHIFT_UP = 3
# a ReLU analysis (the fast encoders' --max-encoder-macs 3000) is unbounded where GDN divides:
# at 8x gain two Sentinel-2 bands fell 1.6-3.2 dB at 1-3 bpp, its optimum there is ~4x
# (bench/results/band_peaks_fast_relu.md)
MAX_PEAK_SHIFT_DOWN_RELU = 2
# the encoder's choices: peaks from the texture (flag 0x0004), or the bit depth's
NORMALISATIONS = ("texture", "bit-depth")


def max_peak_shift_down(encoder_activation: str | None) -> int:
    """How far the texture rule may lower a band's peak for an analysis with this activation:
    a ReLU analysis is unbounded where GDN divides, so it gets the smaller cap."""
    return MAX_PEAK_SHIFT_DOWN_RELU if encoder_activation == "relu" else MAX_PEAK_SHIFT_DOWN


def check_normalisation(normalisation: object) -> None:
    """Refuse anything but one of :data:`NORMALISATIONS`."""
    if normalisation not in NORMALISATIONS:
        raise ConfigError(
            f"normalisation must be one of {', '.join(NORMALISATIONS)}, got {normalisation!r}"
        )


def peak_bits_for_texture(
    laplacian: float, bit_depth: int, max_shift_down: int = MAX_PEAK_SHIFT_DOWN
) -> int:
    """The peak bits that bring a band whose mean absolute Laplacian is ``laplacian`` (sensor
    units) to :data:`TARGET_LAPLACIAN`, within ``bit_depth - max_shift_down`` ..
    ``bit_depth + 3`` (a flat band keeps its bit depth's peak)."""
    if not math.isfinite(laplacian) or laplacian <= 0:
        return bit_depth
    bits = round(math.log2(laplacian / TARGET_LAPLACIAN + 1))
    lo = max(1, bit_depth - max_shift_down)
    return int(min(max(bits, lo), bit_depth + MAX_PEAK_SHIFT_UP))


def laplacian_sum(rows: np.ndarray, valid: np.ndarray | None = None) -> tuple[float, int]:
    """(sum, count) of ``|4x - left - right - up - down|`` over rows 1, 5, 9, ... of ``rows``
    (float64), at the pixels whose four neighbours are ``valid`` too (all, when None): the
    texture statistic, in one block."""
    n, width = rows.shape
    if n < 3 or width < 3:
        return 0.0, 0
    c, up, down = rows[1 : n - 1 : 4], rows[0 : n - 2 : 4], rows[2:n:4]
    lap = np.abs(4 * c[:, 1:-1] - up[:, 1:-1] - down[:, 1:-1] - c[:, :-2] - c[:, 2:])
    if valid is None:
        return float(lap.sum()), lap.size
    vc, vu, vd = valid[1 : n - 1 : 4], valid[0 : n - 2 : 4], valid[2:n:4]
    ok = vc[:, 1:-1] & vu[:, 1:-1] & vd[:, 1:-1] & vc[:, :-2] & vc[:, 2:]
    return float(lap[ok].sum()), int(ok.sum())


def band_texture(band: np.ndarray, valid: np.ndarray | None = None) -> float:
    """The mean absolute Laplacian of a whole band held in memory (training samples), by the
    encoder's rule (:func:`satcodec.coding.normalisation.band_statistics`)."""
    total, count = laplacian_sum(np.asarray(band, dtype=np.float64), valid)
    return total / count if count else 0.0
