"""Rasters that were decoded from a 9/7-wavelet codestream, and how to compare fairly on them.

Many archive products (Pleiades, WorldView and others delivered as JPEG 2000 or compressed
on board by a wavelet coder) are the output of an earlier irreversible 9/7 wavelet coder.
Such a raster keeps that coder's quantisation: on the pixel grid it was coded on, a large
share of its finest wavelet coefficients are (after integer rounding) almost exactly zero.
JPEG 2000 coding it again on the same grid finds those zeros and re-quantises the same
coefficients, so near the earlier coder's rate it gains several dB that no other codec can
(measured: a Pleiades pan scene at 3 bpp, 66.8 dB on its own grid and 61.1 dB one pixel
off, while satcodec and JPEG XL do not move; ``bench/results/rd.md``). That is a property of
the test image, not of the codecs: raw sensor data, which an on-board codec sees, carries no
such grid.

:func:`wavelet_grid_signature` finds the grid: the share of near-zero level-1 detail
coefficients of a CDF 9/7 analysis (unit-norm filters, symmetric extension) at the four
pixel parities. An earlier coder leaves a spike at one parity only (0.40 against 0.035 at
the others on that Pleiades scene); natural images, and constant nodata collars, look the
same at every parity. :func:`grid_neutral_crop` drops one row and one column so the earlier
grid falls between JPEG 2000's: every codec then sees the same content without the grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# CDF 9/7 analysis filters of JPEG 2000 Part 1 (lowpass: 9 taps, highpass: 7 taps, centred),
# scaled here to unit norm so that integer rounding noise (variance 1/12) stays well inside
# NEAR_ZERO in every detail subband.
_LOW = np.array(
    [
        0.026748757411,
        -0.016864118443,
        -0.078223266529,
        0.266864118443,
        0.602949018236,
        0.266864118443,
        -0.078223266529,
        -0.016864118443,
        0.026748757411,
    ]
)
_HIGH = np.array(
    [
        0.091271763114,
        -0.057543526229,
        -0.591271763114,
        1.115087052457,
        -0.591271763114,
        -0.057543526229,
        0.091271763114,
    ]
)
_LOW = _LOW / np.linalg.norm(_LOW)
_HIGH = _HIGH / np.linalg.norm(_HIGH)

NEAR_ZERO = 0.5  # |coefficient| below this counts as a zero of the earlier quantiser
MIN_SPIKE = 0.10  # share of near-zero coefficients at the aligned parity, at least
MIN_RATIO = 3.0  # ... and this many times the share at the least-zero parity
MIN_SIDE = 32  # smaller bands are not tested
MAX_SIDE = 1024  # larger bands are tested on a central crop (at even offsets: same parities)


@dataclass(frozen=True)
class WaveletGridSignature:
    """Share of near-zero level-1 detail coefficients per pixel parity ``(dy, dx)``: the
    band cropped by ``dy`` rows and ``dx`` columns before the transform."""

    zero_share: dict[tuple[int, int], float]

    @property
    def aligned(self) -> tuple[int, int]:
        """The parity with the most near-zero coefficients."""
        return max(self.zero_share, key=self.zero_share.__getitem__)

    @property
    def ratio(self) -> float:
        """Near-zero share at the aligned parity over the least one (1 on natural images)."""
        lo = min(self.zero_share.values())
        hi = self.zero_share[self.aligned]
        return hi / lo if lo > 0 else (np.inf if hi > 0 else 1.0)

    @property
    def flagged(self) -> bool:
        """Whether the band looks decoded from a 9/7-wavelet codestream on one pixel grid."""
        return self.zero_share[self.aligned] >= MIN_SPIKE and self.ratio >= MIN_RATIO


def _filter_rows(x: np.ndarray, taps: np.ndarray, phase: int) -> np.ndarray:
    """``taps`` (odd length, centred) along the last axis with whole-sample symmetric
    extension, kept at every other sample from ``phase``."""
    r = len(taps) // 2
    xp = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(r, r)], mode="reflect")
    n = x.shape[-1]
    out = np.zeros(x.shape[:-1] + (len(range(phase, n, 2)),))
    for k, t in enumerate(taps):
        out += t * xp[..., k + phase : k + phase + n : 2]
    return out


def _level1_details(band: np.ndarray) -> np.ndarray:
    """HL, LH and HH of one level of the 9/7 analysis, lowpass on even and highpass on odd
    samples (JPEG 2000's convention for a grid starting at 0), flattened together."""
    x = band.astype(np.float64)
    lo_r, hi_r = _filter_rows(x, _LOW, 0), _filter_rows(x, _HIGH, 1)
    out = []
    for rows, first in ((lo_r, _HIGH), (hi_r, _LOW), (hi_r, _HIGH)):
        cols = _filter_rows(rows.T, first, 1 if first is _HIGH else 0).T
        out.append(cols.ravel())
    return np.concatenate(out)


def wavelet_grid_signature(
    band: np.ndarray, mask: np.ndarray | None = None
) -> WaveletGridSignature:
    """The near-zero share of ``band``'s level-1 9/7 detail coefficients at the four pixel
    parities. ``mask`` (True = valid, like the band) drops coefficients whose 2x2 block
    holds an invalid pixel, and blocks that are constant (collars, saturated areas): those are
    zero at every parity and would only dilute the spike. Bands larger than ``MAX_SIDE`` are
    tested on a central crop at even offsets (the same parities)."""
    a = np.asarray(band)
    if a.ndim != 2:
        raise ValueError(f"one band (H, W) expected, got shape {a.shape}")
    if mask is not None and np.shape(mask) != a.shape:
        raise ValueError(f"mask shape {np.shape(mask)} does not match the band's {a.shape}")
    # a central crop bounds time and memory on large scenes; even offsets keep the parities
    y0 = max(0, (a.shape[0] - MAX_SIDE) // 4 * 2)
    x0 = max(0, (a.shape[1] - MAX_SIDE) // 4 * 2)
    a = a[y0 : y0 + MAX_SIDE + 1, x0 : x0 + MAX_SIDE + 1]
    if mask is not None:
        mask = np.asarray(mask)[y0 : y0 + MAX_SIDE + 1, x0 : x0 + MAX_SIDE + 1]
    shares: dict[tuple[int, int], float] = {}
    for dy in (0, 1):
        for dx in (0, 1):
            x = a[dy:, dx:]
            h, w = (x.shape[0] // 2) * 2, (x.shape[1] // 2) * 2
            if min(h, w) < MIN_SIDE:
                return WaveletGridSignature({(0, 0): 0.0, (0, 1): 0.0, (1, 0): 0.0, (1, 1): 0.0})
            x = x[:h, :w]
            blocks = x.reshape(h // 2, 2, w // 2, 2)
            keep = blocks.max(axis=(1, 3)) != blocks.min(axis=(1, 3))
            if mask is not None:
                m = mask[dy:, dx:][:h, :w].reshape(h // 2, 2, w // 2, 2)
                keep &= m.all(axis=(1, 3))
            d = np.abs(_level1_details(x)).reshape(3, h // 2, w // 2)
            n = int(keep.sum()) * 3
            shares[(dy, dx)] = float((d[:, keep] < NEAR_ZERO).sum() / n) if n else 0.0
    return WaveletGridSignature(shares)


def grid_neutral_crop(array: np.ndarray, signature: WaveletGridSignature) -> np.ndarray:
    """``array`` ((H, W) or (bands, H, W)) less one row and one column, on the side that moves
    the earlier coder's grid off JPEG 2000's by one pixel in both directions."""
    dy, dx = signature.aligned
    oy, ox = 1 - dy, 1 - dx
    return array[..., oy:, ox:]
