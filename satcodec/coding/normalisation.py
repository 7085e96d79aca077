"""Band normalisation on the encoder's side: the peak each band (or spectral component) is
divided by before the analysis transform, and the quantisation step that goes with it.

The rule (a band's texture -> its peak, :data:`TARGET_LAPLACIAN`) is
:mod:`satcodec.codec.normalisation`'s, re-exported here: training patches apply it too. This
module adds the encoder's one streaming pass over a scene (:func:`band_statistics`: offsets
and textures in bounded memory) and the steps that go with the peaks.

A peak is ``2**bits - 1`` with integer ``bits`` (bitstream flag 0x0004 carries them, one per
band; a spectral transform's ``component_bits`` are the same thing for components), and a
band of ``bits`` is quantised at the stream's step times ``2**(max(bits) - bits)``, so every
band gets the same step in sensor units (powers of two: exact in floating point).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numba import njit

from satcodec.codec.normalisation import (
    MAX_PEAK_SHIFT_DOWN,
    MAX_PEAK_SHIFT_DOWN_RELU,
    MAX_PEAK_SHIFT_UP,
    NORMALISATIONS,
    TARGET_LAPLACIAN,
    band_texture,
    check_normalisation,
    laplacian_sum,
    max_peak_shift_down,
    peak_bits_for_texture,
)

__all__ = [
    "MAX_PEAK_SHIFT_DOWN",
    "MAX_PEAK_SHIFT_DOWN_RELU",
    "MAX_PEAK_SHIFT_UP",
    "NORMALISATIONS",
    "TARGET_LAPLACIAN",
    "band_statistics",
    "band_texture",
    "check_normalisation",
    "max_peak_shift_down",
    "peak_bits_for_texture",
    "peaks_of_bits",
    "step_scales_of_bits",
]

WindowReader = Callable[[int, int, int, int, int], np.ndarray]

# rows read per block by band_statistics (bounded memory at any scene size)
_BLOCK_PIXELS = 1 << 22


def peaks_of_bits(bits: Sequence[int]) -> list[float]:
    """Each band's normalisation peak, ``2**bits - 1``."""
    return [float(2**b - 1) for b in bits]


def step_scales_of_bits(bits: Sequence[int]) -> list[float]:
    """Each band's quantisation step as a multiple of the stream's: ``2**(max - bits)``, the
    same step in sensor units for every band."""
    top = max(bits)
    return [float(2 ** (top - b)) for b in bits]


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
    lap_total, lap_count = laplacian_sum(rows, valid)
    return float(kept.sum()), kept.size, lap_total, lap_count


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
