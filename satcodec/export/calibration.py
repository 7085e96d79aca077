"""Calibration data for post-training quantisation: real image patches, normalised as the encoder does.

The encoder feeds the analysis ``(DN - band_offset) / (2^bit_depth - 1)``, where ``band_offset``
is the rounded mean of the band's valid pixels; :func:`satcodec.codec.data.load_scene_bands`
applies the same normalisation, so calibration sees the board's real input distribution. The
synthesis is calibrated on the quantised latents of the same patches at several quantisation
steps (its input is ``symbol * step``), covering the rates the codec is used at.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from satcodec.errors import ConfigError

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "pleiades_ventoux.tif"
CALIBRATION_STEPS = (0.5, 1.0, 2.0, 4.0)  # synthesis inputs: round(y / s) * s
RASTER_SUFFIXES = (".tif", ".tiff")


def calibration_sources(calib: str | Path | Sequence[str | Path] | None) -> list[Path]:
    """GeoTIFF files named by ``calib`` (files or folders); the shipped Pleiades sample if None."""
    if calib is None:
        return [SAMPLE]
    items = [calib] if isinstance(calib, (str, Path)) else list(calib)
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            out += sorted(q for q in p.iterdir() if q.suffix.lower() in RASTER_SUFFIXES)
        elif p.is_file():
            out.append(p)
        else:
            raise ConfigError(f"calibration source {p} does not exist")
    if not out:
        raise ConfigError(f"no GeoTIFF (.tif) found in calibration source {calib}")
    return out


def calibration_patches(
    calib: str | Path | Sequence[str | Path] | None = None,
    *,
    count: int = 32,
    patch: int = 256,
    seed: int = 0,
) -> tuple[np.ndarray, list[str]]:
    """``count`` real patches ``(count, 1, p, p)`` float32 and the names of the files they came from.

    ``p`` is ``patch`` or the smallest band's side rounded down to a multiple of 16 if smaller.
    Crops are deterministic (``seed``) and avoid nodata collars.
    """
    from satcodec.codec.data import PatchSampler, load_scene_bands

    if count < 1 or patch < 32:
        raise ConfigError(
            f"need at least 1 calibration patch of 32 px or more, got {count}x{patch}"
        )
    paths = calibration_sources(calib)
    bands = [b for p in paths for b in load_scene_bands(p)]
    smallest = min(min(b.pixels.shape) for b in bands)
    p = min(patch, smallest // 16 * 16)
    if p < 32:
        raise ConfigError(f"calibration images are too small ({smallest} px) to crop patches from")
    sampler = PatchSampler(bands, patch=p, augment=False)
    patches = sampler.batch(0, count, seed=seed).astype(np.float32)
    return patches, [str(q) for q in paths]


def synthesis_inputs(latents: Iterable[np.ndarray], steps: Sequence[float] = CALIBRATION_STEPS):
    """Quantised latents ``round(y / s) * s`` for every latent tensor and step."""
    for y in latents:
        for s in steps:
            yield (np.rint(y / np.float32(s)) * np.float32(s)).astype(np.float32)
