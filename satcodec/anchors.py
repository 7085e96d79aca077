"""Classical anchors at a matched rate: JPEG 2000 (OpenJPEG) and JPEG XL through imagecodecs."""

from __future__ import annotations

import math
from dataclasses import dataclass

import imagecodecs
import numpy as np

from satcodec.errors import RateControlError


@dataclass
class AnchorResult:
    codec: str
    data: bytes
    decoded: np.ndarray
    bpp: float


def _bisect(
    encode,
    decode,
    pixels: int,
    bpp: float,
    lo: float,
    hi: float,
    increasing: bool,
    tol: float,
    name: str,
) -> AnchorResult:
    """Bisect a codec's quality knob until its real file size is within ``tol`` of ``bpp``."""
    best: tuple[float, bytes] | None = None
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        data = encode(mid)
        rate = 8 * len(data) / pixels
        if best is None or abs(rate / bpp - 1) < abs(8 * len(best[1]) / pixels / bpp - 1):
            best = (mid, data)
        if abs(rate / bpp - 1) <= tol:
            break
        if (rate < bpp) == increasing:
            lo = mid
        else:
            hi = mid
    assert best is not None
    data = best[1]
    rate = 8 * len(data) / pixels
    if abs(rate / bpp - 1) > 0.03:
        raise RateControlError(
            f"{name} cannot reach {bpp:.3f} bpp on this image (closest {rate:.3f})"
        )
    return AnchorResult(name, data, decode(data), rate)


def jpeg2000_at_bpp(
    image: np.ndarray, bit_depth: int, bpp: float, tol: float = 0.01
) -> AnchorResult:
    """OpenJPEG (irreversible 9/7) at ``bpp`` for one (H, W) band; imagecodecs' ``level`` is a PSNR target."""
    img = np.ascontiguousarray(image)

    def enc(level: float) -> bytes:
        return imagecodecs.jpeg2k_encode(
            img, level=level, bitspersample=bit_depth, reversible=False, numthreads=1
        )

    return _bisect(
        enc,
        imagecodecs.jpeg2k_decode,
        img.size,
        bpp,
        10.0,
        6.02 * bit_depth + 20,
        True,
        tol,
        "jpeg2000",
    )


def jpegxl_at_bpp(image: np.ndarray, bit_depth: int, bpp: float, tol: float = 0.01) -> AnchorResult:
    """libjxl (effort 7) at ``bpp``; bisects its butteraugli ``distance`` in log scale."""
    img = np.ascontiguousarray(image)
    if img.dtype == np.uint16 and bit_depth < 16:
        # libjxl sees 16-bit words; scale to the full word so its psychovisual targets apply
        img = (img.astype(np.uint32) << (16 - bit_depth)).astype(np.uint16)

    def enc(log_distance: float) -> bytes:
        return imagecodecs.jpegxl_encode(img, distance=math.exp(log_distance), effort=7)

    def dec(data: bytes) -> np.ndarray:
        out = imagecodecs.jpegxl_decode(data)
        if image.dtype == np.uint16 and bit_depth < 16:
            out = np.rint(out.astype(np.float64) / (1 << (16 - bit_depth))).astype(np.uint16)
        return out

    return _bisect(enc, dec, img.size, bpp, math.log(0.01), math.log(25.0), False, tol, "jpegxl")
