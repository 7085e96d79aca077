"""Band normalisation: the peak each band (or spectral component) is divided by before the
analysis transform, and the quantisation step that goes with it.

The transforms are not scale-invariant: a GDN analysis trained on bands divided by their
bit depth's peak codes best at the texture amplitude it saw in training. A band whose
pixel-to-pixel variation is a small fraction of its bit depth's range (a Sentinel-2 band in
a 15-bit word, a smooth 12-bit scene) or a large one (8-bit Landsat 7) codes better with
the peak that brings its texture to that amplitude. ``bench/band_peaks.py`` measures it:
the best input gain puts each band's mean absolute Laplacian, in peak units, at about
:data:`TARGET_LAPLACIAN`, on every sensor family of the development set.

A peak is ``2**bits - 1`` with integer ``bits`` (bitstream flag 0x0004 carries them, one per
band; a spectral transform's ``component_bits`` are the same thing for components), and a
band of ``bits`` is quantised at the stream's step times ``2**(max(bits) - bits)``, so every
band gets the same step in sensor units (powers of two: exact in floating point).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from satcodec.errors import ConfigError

WindowReader = Callable[[int, int, int, int, int], np.ndarray]

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
# rows read per block by band_statistics (bounded memory at any scene size)
_BLOCK_PIXELS = 1 << 22


def check_normalisation(normalisation: object) -> None:
    """Refuse anything but one of :data:`NORMALISATIONS`."""
    if normalisation not in NORMALISATIONS:
        raise ConfigError(
            f"normalisation must be one of {', '.join(NORMALISATIONS)}, got {normalisation!r}"
        )


def peaks_of_bits(bits: Sequence[int]) -> list[float]:
    """Each band's normalisation peak, ``2**bits - 1``."""
    return [float(2**b - 1) for b in bits]


def step_scales_of_bits(bits: Sequence[int]) -> list[float]:
    """Each band's quantisation step as a multiple of the stream's: ``2**(max - bits)``, the
    same step in sensor units for every band."""
    top = max(bits)
    return [float(2 ** (top - b)) for b in bits]


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


def band_statistics(
    read: WindowReader, bands: int, height: int, width: int, nodata: float | None
) -> tuple[list[int], list[float]]:
    """Each band's rounded mean over valid pixels and its mean absolute Laplacian
    (``|4x - left - right - up - down|``, over every 4th row's pixels whose four neighbours
    are valid too), in one pass of row blocks (bounded memory). One row in four keeps the
    pass within ~40 % of the mean alone (~8 ms per 4 MPix here); the mean of ~10^6 terms
    does not need more."""
    offsets, laplacians = [], []
    block = max(3, _BLOCK_PIXELS // max(width, 1))
    for b in range(bands):
        total, count, lap_total, lap_count = 0.0, 0, 0.0, 0
        for y in range(0, height, block):
            rows = read(b, y, 0, min(block, height - y), width).astype(np.float64)
            valid = None if nodata is None else rows != nodata
            kept = rows if valid is None else rows[valid]
            total += float(kept.sum())  # as band_offsets_of always did: the same offsets
            count += kept.size
            n = rows.shape[0]
            if n < 3 or width < 3:
                continue
            # centre rows 1, 5, 9, ... of the block and their neighbours above and below
            c, up, down = rows[1 : n - 1 : 4], rows[0 : n - 2 : 4], rows[2:n:4]
            lap = np.abs(4 * c[:, 1:-1] - up[:, 1:-1] - down[:, 1:-1] - c[:, :-2] - c[:, 2:])
            if valid is None:
                lap_total += float(lap.sum())
                lap_count += lap.size
            else:
                vc, vu, vd = valid[1 : n - 1 : 4], valid[0 : n - 2 : 4], valid[2:n:4]
                ok = vc[:, 1:-1] & vu[:, 1:-1] & vd[:, 1:-1] & vc[:, :-2] & vc[:, 2:]
                lap_total += float(lap[ok].sum())
                lap_count += int(ok.sum())
        offsets.append(int(round(total / count)) if count else 0)
        laplacians.append(lap_total / lap_count if lap_count else 0.0)
    return offsets, laplacians
