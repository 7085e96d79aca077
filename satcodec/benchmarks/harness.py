"""The one benchmark harness: where results and data live, timing, tables, seeds and grids.

Every benchmark uses it: the runnable scripts in ``bench/`` (thin entry points, ``python
bench/NAME.py``, which import this module and each other's shared code from here, never
through ``sys.path``) and the research benchmarks of this package (``satcodec research ...``).

* Places: :data:`REPO`, :data:`RESULTS` (``bench/results``), :data:`HELD_OUT_DATA`
  (``bench/data/heldout``), :data:`SAMPLE` (the shipped Pleiades sample), :func:`shared_data` (``../shared/data/<kind>`` beside the checkout),
  :func:`sat_data_or_sample`.
* The dev images: :data:`PAN_IMAGES`, :data:`OTHER_IMAGES`, :data:`EXCLUDED_IMAGES`,
  :func:`dev_images`; the ground benchmarks' held-out crops (:func:`held_out_crops`) and
  codec round trip at a rate (:func:`codec_round_trip`).
* Measuring: :func:`median_time` (median wall time after warm-ups), :func:`load_average`.
* Reporting: :func:`publish` (write a Markdown result and print it).
* Seeds and grids: :func:`n_seeds`, :func:`half_decades`.

Importing it is light (numpy and the standard library); the codec is imported by the
functions that need it.
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from satcodec.codec.families import BAND_FAMILIES, FAMILIES, PIXEL_DUPLICATION, band_family

# --- places -------------------------------------------------------------------------------------
REPO = Path(__file__).resolve().parents[2]
"""The checkout this package runs from (an editable install: ``pip install -e .``)."""
RESULTS = REPO / "bench" / "results" if (REPO / "bench").is_dir() else Path("bench") / "results"
"""Where benchmark results are written: the checkout's ``bench/results``, else ./bench/results."""
HELD_OUT_DATA = REPO / "bench" / "data" / "heldout"
"""Images added after every shipped model was trained: held out by construction (provenance:
``bench/data/heldout/SOURCES.md``)."""
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "pleiades_ventoux.tif"
"""The real Pleiades scene shipped in the package."""


def shared_data(kind: str = "sat") -> Path:
    """``../shared/data/<kind>`` beside the checkout (``sat``: the dev rasters, ``music``:
    Last.fm); it may not exist."""
    return REPO.parent / "shared" / "data" / kind


def sat_data_or_sample() -> Path:
    """The dev rasters' folder if present, else the folder of the shipped sample."""
    shared = shared_data("sat")
    return shared if shared.is_dir() else SAMPLE.parent


# --- the dev images ---------------------------------------------------------------------------------
# single-band optical scenes whose data use 11–13 bits (PSNR peak from the raster's bit depth)
PAN_IMAGES = [
    "s2p_pleiades-pan_reunion-volcano.tif",
    "shareloc_pleiades-pan_ventoux.tif",
    "shareloc_pleiades-pan_giza.tif",
    "shareloc_worldview3-pan_buenosaires-a.tif",
    "shareloc_worldview3-pan_buenosaires-b.tif",
    "solaris-spacenet6_worldview2-pan_rotterdam.tif",
    "pandora2d_sentinel2-10m_arizona-fields.tif",
]
# every other dev image, reported separately
OTHER_IMAGES = [
    "rio-tiler-pds_sentinel1-grd-vv_tamilnadu-sar.tif",
    "rsgislib_sentinel2-sr-10band_aberystwyth.tif",
    "rio-color_landsat8-rgb-60m_grenada.tif",
    "rio-hist_landsat8-rgb-30m_idaho-mountains.tif",
    "rio-pansharpen_landsat8-b4-150m_kanto.tif",
    "rio-pansharpen_landsat8-b4-150m_guangdong-coast.tif",
    "rio-toa_landsat8-b3-150m_washington.tif",
    "rio-toa_landsat8-b1-150m_labrador-snow.tif",
    "rasterio_landsat7-rgb-8bit_andros-bahamas.tif",
    "stars_landsat7-etm-6band-8bit_olinda.tif",
]
# sensor family of each band (issue 22 reports per family): satcodec/codec/families.py
IMAGE_FAMILIES = BAND_FAMILIES


EXCLUDED_IMAGES = {
    "solaris-spacenet6_worldview2-ms4_rotterdam.tif": "2x pixel-duplicated (every 2x2 block "
    "constant): flatters any codec (SOURCES.md)",
}
# excluded images that the per-family comparison takes on their native grid instead: every
# k-th pixel of a k x pixel-duplicated raster is the original (SOURCES.md suggests it)
DECIMATED_IMAGES = PIXEL_DUPLICATION


def dev_images(data: Path, names: Iterable[str]) -> list[Path]:
    """The images of ``names`` found in ``data`` (the missing ones named on stderr)."""
    names = list(names)
    paths = [data / n for n in names if (data / n).exists()]
    missing = [n for n in names if not (data / n).exists()]
    if missing:
        print(f"note: not found in {data}: {', '.join(missing)}", file=sys.stderr)
    return paths


def held_out_crops(data: Path, size: int, per_scene: int) -> list[tuple[str, np.ndarray, int]]:
    """``(label, crop (H, W), bit depth)``: ``per_scene`` crops of ``size``² px along the
    anti-diagonal of band 1 of every held-out scene (never seen by the codec or the denoiser
    in training)."""
    from satcodec.codec.training import DEFAULT_VAL
    from satcodec.raster import open_raster

    out = []
    for name in DEFAULT_VAL:
        with open_raster(data / name) as r:
            img, bd = r.read()[0], r.meta.bit_depth
        h, w = img.shape
        ys = np.linspace(0, h - size, per_scene + 2)[1:-1].astype(int)
        xs = np.linspace(0, w - size, per_scene + 2)[1:-1].astype(int)
        for k, (y, x) in enumerate(zip(ys, xs[::-1], strict=True)):
            out.append(
                (f"{name.split('_')[-1].split('.')[0]}#{k}", img[y : y + size, x : x + size], bd)
            )
    return out


def codec_round_trip(
    image: np.ndarray, bit_depth: int, bpp: float, model: str | None
) -> tuple[np.ndarray, float] | None:
    """``(decoded (H, W), real bpp)`` of one band coded at ``bpp`` (rate control) with
    ``model`` (None: the API's choice); None when the rate cannot be reached."""
    import satcodec
    from satcodec.errors import RateControlError
    from satcodec.metrics import bits_per_pixel

    try:
        data = satcodec.encode(image[None], bit_depth=bit_depth, bpp=bpp, model=model)
    except RateControlError:
        return None
    dec, _ = satcodec.decode(data, model=model)
    return dec[0], bits_per_pixel(len(data), image.size)


# --- measuring ----------------------------------------------------------------------------------------
def median_time(fn: Callable[[], Any], repeats: int = 5, warmup: int = 0) -> float:
    """Median wall time (s) of ``repeats`` calls of ``fn()``, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(statistics.median(times))


def load_average() -> tuple[float, ...]:
    """The 1, 5 and 15 min load averages (NaN where the platform has none)."""
    try:
        return os.getloadavg()
    except (OSError, AttributeError):  # pragma: no cover - not on every platform
        return (math.nan,) * 3


# --- reporting ---------------------------------------------------------------------------------------
def publish(text: str | Iterable[str], out: str | os.PathLike, *, echo: bool = True) -> str:
    """Write a Markdown result (lines are joined, one trailing newline) to ``out``, its folder
    created, and print it unless ``echo`` is False. Returns the text written."""
    if not isinstance(text, str):
        text = "\n".join(text) + "\n"
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if echo:
        print(text, end="" if text.endswith("\n") else "\n", flush=True)
    return text


# --- seeds and grids -------------------------------------------------------------------------------
def n_seeds(seeds: int | None, quick: bool, *, quick_default: int, default: int = 3) -> int:
    """Seeds to run: ``seeds`` if given, else ``quick_default`` with ``--quick``, else ``default``."""
    if seeds is not None:
        return seeds
    return quick_default if quick else default


def half_decades(lo_exp: float, n: int) -> list[float]:
    """``n`` values in half-decade steps from ``10**lo_exp`` (3 significant digits): a
    learning-rate grid, e.g. ``half_decades(-2, 5) == [0.01, 0.0316, 0.1, 0.316, 1.0]``."""
    return [float(f"{10 ** (lo_exp + i / 2):.3g}") for i in range(n)]


__all__ = [
    "band_family",
    "DECIMATED_IMAGES",
    "EXCLUDED_IMAGES",
    "FAMILIES",
    "IMAGE_FAMILIES",
    "OTHER_IMAGES",
    "PAN_IMAGES",
    "REPO",
    "RESULTS",
    "HELD_OUT_DATA",
    "SAMPLE",
    "codec_round_trip",
    "dev_images",
    "half_decades",
    "held_out_crops",
    "load_average",
    "median_time",
    "n_seeds",
    "publish",
    "sat_data_or_sample",
    "shared_data",
]
