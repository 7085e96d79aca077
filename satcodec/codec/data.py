"""Training patches from folders of GeoTIFF scenes.

Every band of every scene becomes its own single-band sample, normalised by the raster's bit
depth and offset by the scene band's mean (what the encoder does at inference time). Crops skip
nodata collars; flips and 90° rotations augment. Validation is split by scene, never by patch.
"""

from __future__ import annotations

import fnmatch
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from satcodec.errors import RasterError
from satcodec.fileutil import atomic_path


@dataclass
class BandSample:
    """One band of one scene, ready to crop."""

    name: str
    pixels: np.ndarray  # float32 (H, W), (x - mean) / peak
    valid: np.ndarray  # bool (H, W)
    peak: float


@dataclass
class Scene:
    """One scene as stored: every band at its native dtype, the valid mask and the bit depth."""

    name: str
    data: np.ndarray  # (bands, H, W)
    valid: np.ndarray  # bool (H, W)
    bit_depth: int


def read_scene(path: str | Path, bit_depth: int | None = None) -> Scene:
    """Read a GeoTIFF scene; nodata (declared, or large all-zero collars) is marked invalid."""
    from satcodec.raster import open_raster  # here, so scene packs load without GDAL

    path = Path(path)
    with open_raster(path, bit_depth=bit_depth) as r:
        data = r.read()
        meta = r.meta
    if meta.nodata is not None:
        valid = np.all(data != meta.nodata, axis=0)
    else:
        zero = np.all(data == 0, axis=0)
        # large all-zero regions are nodata collars of rotated scenes, not dark ground
        valid = ~zero if zero.mean() > 0.01 else np.ones(zero.shape, bool)
    return Scene(path.name, data, valid, int(meta.bit_depth))


def band_samples(
    scene: Scene,
    *,
    remove_mean: bool = True,
    normalisation: str = "bit-depth",
    max_peak_shift_down: int | None = None,
) -> list[BandSample]:
    """One :class:`BandSample` per band: ``(x - mean) / peak``, or ``x / peak`` when the
    level matters (signal-dependent noise) and ``remove_mean`` is false.

    ``normalisation``: the peak is the bit depth's (``"bit-depth"``), or the one the encoder's
    default band normalisation gives the band (``"texture"``: bitstream flag 0x0004, so a
    model trains on the amplitudes it will code); ``max_peak_shift_down`` as the encoder's
    (default: a GDN analysis's)."""
    from satcodec.codec.normalisation import (
        MAX_PEAK_SHIFT_DOWN,
        band_texture,
        check_normalisation,
        peak_bits_for_texture,
    )

    check_normalisation(normalisation)
    down = MAX_PEAK_SHIFT_DOWN if max_peak_shift_down is None else max_peak_shift_down
    out = []
    for b in range(scene.data.shape[0]):
        band = scene.data[b].astype(np.float32)
        bits = scene.bit_depth
        if normalisation == "texture":
            bits = peak_bits_for_texture(band_texture(band, scene.valid), bits, down)
        peak = float(2**bits - 1)
        mean = 0.0
        if remove_mean and scene.valid.any():
            mean = float(np.round(band[scene.valid].mean()))
        out.append(BandSample(f"{scene.name}#{b}", (band - mean) / peak, scene.valid, peak))
    return out


def load_scene_bands(path: Path, bit_depth: int | None = None) -> list[BandSample]:
    """Read a GeoTIFF and return one normalised :class:`BandSample` per band."""
    return band_samples(read_scene(path, bit_depth))


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


# A scene pack is the decoded training scenes in one .npz (native integer pixels, valid masks,
# bit depths): what a training host without GDAL (a rented GPU node) needs, bit for bit the
# arrays that reading the GeoTIFFs gives.
_PACK_FORMAT = "satcodec-scene-pack/1"


def save_scene_pack(scenes: list[Scene], path: str | Path) -> Path:
    """Write ``scenes`` to one ``.npz`` (atomically); :func:`load_scenes` reads it back."""
    arrays: dict[str, np.ndarray] = {
        "format": np.array(_PACK_FORMAT),
        "names": np.array([s.name for s in scenes]),
        "bit_depths": np.array([s.bit_depth for s in scenes], dtype=np.int64),
    }
    for i, s in enumerate(scenes):
        arrays[f"data{i}"] = s.data
        arrays[f"valid{i}"] = s.valid
    path = Path(path)
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    return path


def load_scene_pack(path: str | Path, names: Iterable[str] | None = None) -> list[Scene]:
    """Read a pack written by :func:`save_scene_pack` (only the scenes of ``names``, when
    given: the others are not decompressed); a malformed one raises :class:`RasterError`."""
    wanted = None if names is None else set(names)
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            if "format" not in z.files or str(z["format"]) != _PACK_FORMAT:
                raise RasterError(f"{path}: not a satcodec scene pack ({_PACK_FORMAT})")
            scene_names = [str(n) for n in z["names"]]
            depths = [int(d) for d in z["bit_depths"]]
            if len(depths) != len(scene_names):
                raise RasterError(f"{path}: {len(scene_names)} names but {len(depths)} bit depths")
            scenes = []
            for i, (name, depth) in enumerate(zip(scene_names, depths, strict=True)):
                if wanted is not None and name not in wanted:
                    continue
                if f"data{i}" not in z.files or f"valid{i}" not in z.files:
                    raise RasterError(f"{path}: scene {i} ({name}) has no data or valid mask")
                data, valid = z[f"data{i}"], z[f"valid{i}"]
                if data.ndim != 3 or valid.shape != data.shape[1:] or valid.dtype != bool:
                    raise RasterError(
                        f"{path}: scene {name}: data {data.shape} and valid mask "
                        f"{valid.shape} {valid.dtype} do not match"
                    )
                if not 1 <= depth <= 32:
                    raise RasterError(f"{path}: scene {name}: bit depth {depth} not in 1..32")
                scenes.append(Scene(name, data, valid, depth))
    except RasterError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise RasterError(f"{path}: unreadable scene pack: {e}") from e
    return scenes


def native_grid(scene: Scene) -> Scene:
    """``scene`` on its native pixel grid: every k-th pixel of a raster stored k x
    pixel-duplicated (:data:`satcodec.codec.families.PIXEL_DUPLICATION`), else itself."""
    from satcodec.codec.families import PIXEL_DUPLICATION

    k = PIXEL_DUPLICATION.get(scene.name, 1)
    if k == 1:
        return scene
    return Scene(scene.name, scene.data[:, ::k, ::k], scene.valid[::k, ::k], scene.bit_depth)


def load_named_scenes(data: str | Path, names: list[str]) -> list[Scene]:
    """The scenes of ``names`` that a folder of GeoTIFFs or a scene pack holds (in the
    order of ``names``; the others are skipped), whatever a training run excludes."""
    data = Path(data)
    if data.is_file() and data.suffix == ".npz":
        by_name = {s.name: s for s in load_scene_pack(data, names)}
        return [by_name[n] for n in names if n in by_name]
    return [read_scene(data / n) for n in names if (data / n).is_file()]


def load_scenes(data: str | Path, exclude: list[str] | None = None) -> list[Scene]:
    """Scenes of a folder of GeoTIFFs or of a scene pack (``.npz``), minus ``exclude`` globs."""
    data = Path(data)
    exclude = exclude or []
    if data.is_file() and data.suffix == ".npz":
        scenes = load_scene_pack(data)
        return [s for s in scenes if not any(fnmatch.fnmatch(s.name, g) for g in exclude)]
    if not data.is_dir():
        raise RasterError(f"{data}: neither a folder of GeoTIFFs nor a scene pack (.npz)")
    return [read_scene(p) for p in scene_paths(data, exclude=exclude)]
