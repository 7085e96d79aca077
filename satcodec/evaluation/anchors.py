"""The anchors: JPEG 2000 (OpenJPEG) and JPEG XL through imagecodecs, rate-matched to a target
by bisection on the real file size, and the on-disk cache of their measured points.

:func:`jpeg2000_at_bpp` / :func:`jpegxl_at_bpp` code one (H, W) band at a rate within ±3 %
(else :class:`~satcodec.errors.RateControlError`); :func:`anchor_point` codes every band of an
image and measures it (bytes summed over bands, PSNR and MS-SSIM averaged), through an
:class:`AnchorCache` keyed by the band's pixels, mask, codec, imagecodecs version and target.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from satcodec.errors import RateControlError
from satcodec.evaluation.images import band_quality, nan_mean
from satcodec.metrics import bits_per_pixel

ANCHORS = ("jpeg2000", "jpegxl")


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
        rate = bits_per_pixel(len(data), pixels)
        if best is None or abs(rate / bpp - 1) < abs(
            bits_per_pixel(len(best[1]), pixels) / bpp - 1
        ):
            best = (mid, data)
        if abs(rate / bpp - 1) <= tol:
            break
        if (rate < bpp) == increasing:
            lo = mid
        else:
            hi = mid
    assert best is not None
    data = best[1]
    rate = bits_per_pixel(len(data), pixels)
    if abs(rate / bpp - 1) > 0.03:
        raise RateControlError(
            f"{name} cannot reach {bpp:.3f} bpp on this image (closest {rate:.3f})"
        )
    return AnchorResult(name, data, decode(data), rate)


def _imagecodecs() -> Any:
    """The comparison codecs' library, or a one-line error naming the extra to install."""
    try:
        import imagecodecs
    except ModuleNotFoundError:
        from satcodec.errors import ConfigError

        raise ConfigError(
            "the JPEG 2000 / JPEG XL comparisons need imagecodecs: pip install 'satcodec[eval]'"
        ) from None
    return imagecodecs


def jpeg2000_at_bpp(
    image: np.ndarray, bit_depth: int, bpp: float, tol: float = 0.01
) -> AnchorResult:
    """OpenJPEG (irreversible 9/7) at ``bpp`` for one (H, W) band; imagecodecs' ``level`` is a PSNR target."""
    imagecodecs = _imagecodecs()

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
    imagecodecs = _imagecodecs()

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


class AnchorCache:
    """Anchor results per band on disk (JSON), keyed by the band's pixels, codec and target."""

    def __init__(self, path: str | os.PathLike | None) -> None:
        self.path = Path(path) if path else None
        self.data: dict[str, Any] = {}
        if self.path and self.path.exists():
            self.data = json.loads(self.path.read_text())

    @staticmethod
    def key(codec: str, band: np.ndarray, mask: np.ndarray | None, bits: int, bpp: float) -> str:
        imagecodecs = _imagecodecs()

        h = hashlib.sha256(np.ascontiguousarray(band).tobytes())
        h.update(str(band.shape).encode())
        if mask is not None:
            h.update(np.packbits(mask).tobytes())
        return f"{codec}|{imagecodecs.__version__}|{h.hexdigest()[:24]}|{bits}|{bpp:.6g}"

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def put(self, key: str, value: Any) -> None:
        self.data[key] = value
        if self.path:
            from satcodec.fileutil import atomic_write_bytes

            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.exists():  # keep what another run added meanwhile
                try:
                    self.data = {**json.loads(self.path.read_text()), **self.data}
                except ValueError:
                    pass
            atomic_write_bytes(self.path, json.dumps(self.data, indent=0).encode())


def anchor_point(
    codec: str,
    array: np.ndarray,
    bits: int,
    bpp: float,
    mask: np.ndarray | None,
    cache: AnchorCache,
) -> dict[str, Any]:
    """One anchor point of a (bands, H, W) image: every band coded alone at ``bpp`` (through
    ``cache``); bytes and seconds summed over bands, PSNR and MS-SSIM averaged."""
    fn = jpeg2000_at_bpp if codec == "jpeg2000" else jpegxl_at_bpp
    nbytes, psnrs, ssims, seconds = 0, [], [], 0.0
    for b in range(array.shape[0]):
        key = cache.key(codec, array[b], mask, bits, bpp)
        hit = cache.get(key)
        if hit is None:
            t0 = time.perf_counter()
            r = fn(array[b], bits, bpp)
            dt = time.perf_counter() - t0
            p, m = band_quality(array[b], r.decoded, bits, mask)
            hit = {"bytes": len(r.data), "psnr": p, "msssim": m, "seconds": dt}
            cache.put(key, hit)
        nbytes += hit["bytes"]
        psnrs.append(hit["psnr"])
        ssims.append(hit["msssim"])
        seconds += hit["seconds"]
    return {"bytes": nbytes, "psnr": nan_mean(psnrs), "msssim": nan_mean(ssims), "seconds": seconds}
