"""Training patches from folders of GeoTIFF scenes.

Every band of every scene becomes its own single-band sample, normalised by the raster's bit
depth and offset by the scene band's mean (what the encoder does at inference time). Crops skip
nodata collars; flips and 90° rotations augment. Validation is split by scene, never by patch.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from satcodec.raster import open_raster


@dataclass
class BandSample:
    """One band of one scene, ready to crop."""

    name: str
    pixels: np.ndarray  # float32 (H, W), (x - mean) / peak
    valid: np.ndarray  # bool (H, W)
    peak: float


def load_scene_bands(path: Path, bit_depth: int | None = None) -> list[BandSample]:
    """Read a GeoTIFF and return one normalised :class:`BandSample` per band."""
    with open_raster(path, bit_depth=bit_depth) as r:
        data = r.read()
        meta = r.meta
    if meta.nodata is not None:
        valid = np.all(data != meta.nodata, axis=0)
    else:
        zero = np.all(data == 0, axis=0)
        # large all-zero regions are nodata collars of rotated scenes, not dark ground
        valid = ~zero if zero.mean() > 0.01 else np.ones(zero.shape, bool)
    peak = float(2**meta.bit_depth - 1)
    out = []
    for b in range(data.shape[0]):
        band = data[b].astype(np.float32)
        mean = float(np.round(band[valid].mean())) if valid.any() else 0.0
        out.append(BandSample(f"{path.name}#{b}", (band - mean) / peak, valid, peak))
    return out


class PatchSampler:
    """Deterministic, step-indexed random crops: batch ``k`` depends only on (seed, k).

    That makes training resume exactly and lets data-parallel ranks take disjoint shares of
    one global batch.
    """

    def __init__(
        self,
        samples: list[BandSample],
        patch: int = 128,
        augment: bool = True,
        min_valid: float = 0.99,
    ) -> None:
        self.samples = [s for s in samples if min(s.pixels.shape) >= patch]
        if not self.samples:
            raise ValueError(f"no band is at least {patch}x{patch} pixels")
        # sample bands in proportion to their valid area, so large scenes are seen more
        w = np.array([s.valid.sum() for s in self.samples], dtype=np.float64)
        self.weights = w / w.sum()
        self.patch = patch
        self.augment = augment
        self.min_valid = min_valid

    def crop(self, rng: np.random.Generator) -> np.ndarray:
        s = self.samples[rng.choice(len(self.samples), p=self.weights)]
        h, w = s.pixels.shape
        p = self.patch
        for _ in range(50):
            y, x = int(rng.integers(0, h - p + 1)), int(rng.integers(0, w - p + 1))
            if s.valid[y : y + p, x : x + p].mean() >= self.min_valid:
                break
        c = s.pixels[y : y + p, x : x + p]
        if self.augment:
            c = np.rot90(c, int(rng.integers(0, 4)))
            if rng.integers(0, 2):
                c = c[:, ::-1]
        return np.ascontiguousarray(c)

    def batch(
        self, step: int, size: int, seed: int = 0, rank: int = 0, world: int = 1
    ) -> np.ndarray:
        """Crops ``rank::world`` of global batch ``step``: float32 (size//world, 1, p, p)."""
        crops = []
        for i in range(rank, size, world):
            rng = np.random.default_rng([seed, step, i])
            crops.append(self.crop(rng))
        return np.stack(crops)[:, None]


def scene_paths(folder: str | Path, exclude: list[str] | None = None) -> list[Path]:
    """GeoTIFFs in ``folder`` (sorted), minus those matching any glob in ``exclude``."""
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".tif", ".tiff"))
    exclude = exclude or []
    return [p for p in paths if not any(fnmatch.fnmatch(p.name, g) for g in exclude)]
