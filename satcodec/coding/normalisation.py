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
from numba import njit

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


def band_texture(band: np.ndarray, valid: np.ndarray | None = None) -> float:
    """The mean absolute Laplacian of a whole band held in memory (training samples), by
    :func:`band_statistics`' rule: every 4th row's pixels whose four neighbours are valid."""
    rows = np.asarray(band, dtype=np.float64)
    n, width = rows.shape
    if n < 3 or width < 3:
        return 0.0
    c, up, down = rows[1 : n - 1 : 4], rows[0 : n - 2 : 4], rows[2:n:4]
    lap = np.abs(4 * c[:, 1:-1] - up[:, 1:-1] - down[:, 1:-1] - c[:, :-2] - c[:, 2:])
    if valid is None:
        return float(lap.mean())
    vc, vu, vd = valid[1 : n - 1 : 4], valid[0 : n - 2 : 4], valid[2:n:4]
    ok = vc[:, 1:-1] & vu[:, 1:-1] & vd[:, 1:-1] & vc[:, :-2] & vc[:, 2:]
    return float(lap[ok].mean()) if ok.any() else 0.0


@njit(cache=True, nogil=True)
def _block_statistics(rows: np.ndarray, nodata: float, has_nodata: bool) -> tuple[int, ...]:
    """(sum, count, Laplacian sum, Laplacian count) of a block of integer rows, in integers
    (exact: the same totals as the float64 sums of small integers they replace)."""
    n, w = rows.shape
    total, count, lap_total, lap_count = 0, 0, 0, 0
    for y in range(n):
        for x in range(w):
            v = rows[y, x]
            if has_nodata and np.float64(v) == nodata:
                continue
            total += np.int64(v)
            count += 1
    if n < 3 or w < 3:
        return total, count, lap_total, lap_count
    for y in range(1, n - 1, 4):  # centre rows 1, 5, 9, ... of the block
        for x in range(1, w - 1):
            c = np.int64(rows[y, x])
            left, right = np.int64(rows[y, x - 1]), np.int64(rows[y, x + 1])
            up, down = np.int64(rows[y - 1, x]), np.int64(rows[y + 1, x])
            if has_nodata and (
                np.float64(c) == nodata
                or np.float64(left) == nodata
                or np.float64(right) == nodata
                or np.float64(up) == nodata
                or np.float64(down) == nodata
            ):
                continue
            lap_total += abs(4 * c - left - right - up - down)
            lap_count += 1
    return total, count, lap_total, lap_count


def _block_statistics_float(
    rows: np.ndarray, nodata: float | None
) -> tuple[float, int, float, int]:
    """:func:`_block_statistics` in numpy, for the dtypes the kernel does not take."""
    rows = rows.astype(np.float64)
    valid = None if nodata is None else rows != nodata
    kept = rows if valid is None else rows[valid]
    n, width = rows.shape
    if n < 3 or width < 3:
        return float(kept.sum()), kept.size, 0.0, 0
    c, up, down = rows[1 : n - 1 : 4], rows[0 : n - 2 : 4], rows[2:n:4]
    lap = np.abs(4 * c[:, 1:-1] - up[:, 1:-1] - down[:, 1:-1] - c[:, :-2] - c[:, 2:])
    if valid is None:
        return float(kept.sum()), kept.size, float(lap.sum()), lap.size
    vc, vu, vd = valid[1 : n - 1 : 4], valid[0 : n - 2 : 4], valid[2:n:4]
    ok = vc[:, 1:-1] & vu[:, 1:-1] & vd[:, 1:-1] & vc[:, :-2] & vc[:, 2:]
    return float(kept.sum()), kept.size, float(lap[ok].sum()), int(ok.sum())


def band_statistics(
    read: WindowReader, bands: int, height: int, width: int, nodata: float | None
) -> tuple[list[int], list[float]]:
    """Each band's rounded mean over valid pixels and its mean absolute Laplacian
    (``|4x - left - right - up - down|``, over every 4th row's pixels whose four neighbours
    are valid too), in one pass of row blocks (bounded memory). One row in four is enough for
    the mean of ~10^6 terms. 8- and 16-bit rows go through one compiled pass in integers
    (about 10x the numpy passes it replaces, the same totals to the bit)."""
    offsets, laplacians = [], []
    block = max(3, _BLOCK_PIXELS // max(width, 1))
    for b in range(bands):
        total, count, lap_total, lap_count = 0.0, 0, 0.0, 0
        for y in range(0, height, block):
            rows = read(b, y, 0, min(block, height - y), width)
            if rows.dtype.kind in "iu" and rows.dtype.itemsize <= 2:
                has = nodata is not None
                s, k, ls, lk = _block_statistics(rows, float(nodata) if has else 0.0, has)
            else:
                s, k, ls, lk = _block_statistics_float(rows, nodata)
            total += float(s)  # exact: integer sums far below 2**53
            count += int(k)
            lap_total += float(ls)
            lap_count += int(lk)
        offsets.append(int(round(total / count)) if count else 0)
        laplacians.append(lap_total / lap_count if lap_count else 0.0)
    return offsets, laplacians
