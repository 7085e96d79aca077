"""Images as the evaluation measures them: pixels, bit depth, nodata mask, per-band quality.

* The bit depth is the raster's (``open_raster(path).meta.bit_depth``: NBITS tag when
  plausible, else the bits the data use rounded up to an even width); PSNR
  (:func:`satcodec.metrics.psnr`) and MS-SSIM use the peak ``2**bit_depth - 1``.
* Nodata is excluded from distortion: pixels equal to the raster's nodata value in any band,
  or, without a nodata value, pixels that are 0 in every band when they are more than 1% of
  the image (the collars of rotated scenes). The rate still counts every pixel.
* Distortion is measured per band and then averaged over bands (NaN bands left out).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable

import numpy as np

from satcodec.evaluation.msssim import ms_ssim
from satcodec.metrics import psnr


def load_image(path: str | os.PathLike) -> tuple[np.ndarray, int, float | None]:
    """(array (bands, H, W), bit depth, nodata) of a raster, as the codec sees it."""
    from satcodec.raster import open_raster

    with open_raster(path) as r:
        return r.read(), r.meta.bit_depth, r.meta.nodata


def valid_mask(array: np.ndarray, nodata: float | None) -> np.ndarray | None:
    """True where a pixel counts in the distortion (see this module's docstring); None = all."""
    a = array if array.ndim == 3 else array[None]
    if nodata is not None:
        invalid = np.any(a == a.dtype.type(nodata), axis=0)
    else:
        invalid = np.all(a == 0, axis=0)
        if invalid.mean() <= 0.01:
            return None
    return None if not invalid.any() else ~invalid


def band_quality(
    reference: np.ndarray, decoded: np.ndarray, bit_depth: int, mask: np.ndarray | None
) -> tuple[float, float]:
    """(PSNR dB, MS-SSIM) of one (H, W) band; MS-SSIM is NaN when the image is too small."""
    p = psnr(reference, decoded, bit_depth, mask)
    try:
        m = ms_ssim(reference, decoded, bit_depth, mask)
    except ValueError:
        m = math.nan
    return p, m


def nan_mean(values: Iterable[float]) -> float:
    """Mean of the values that are not NaN; NaN if there is none."""
    v = [x for x in values if not math.isnan(x)]
    return float(np.mean(v)) if v else math.nan
