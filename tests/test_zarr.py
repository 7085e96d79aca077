"""The numcodecs codec: Zarr chunks as .satc streams (lossy), found by id through the entry
point, decoding bit-exactly as satcodec.decode does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

numcodecs = pytest.importorskip("numcodecs")
zarr = pytest.importorskip("zarr")

import satcodec  # noqa: E402
from satcodec.errors import ConfigError, SatcodecError  # noqa: E402
from satcodec.metrics import psnr  # noqa: E402
from satcodec.zarr_codec import Satcodec  # noqa: E402


@pytest.fixture(scope="module")
def image(sample_array: np.ndarray) -> np.ndarray:
    """Two 12-bit bands, 256², from the sample."""
    a = sample_array[0, :256, :256]
    return np.stack([a, a.T]).copy()


def _zarr_array(path: Path, shape: tuple[int, ...], chunks: tuple[int, ...], codec: Satcodec):
    """A Zarr array of the version-2 format (its compressor sees the chunk array), with
    zarr-python 3 or 2."""
    if hasattr(zarr, "create_array"):  # zarr-python 3
        return zarr.create_array(
            store=str(path),
            shape=shape,
            chunks=chunks,
            dtype="uint16",
            zarr_format=2,
            compressors=codec,
        )
    return zarr.open(
        str(path), mode="w", shape=shape, chunks=chunks, dtype="uint16", compressor=codec
    )


def test_config_round_trip() -> None:
    c = Satcodec(bpp=1.5, bit_depth=12, tile=256, model="tiny", nodata=0)
    cfg = json.loads(json.dumps(c.get_config()))  # what the array's metadata stores
    assert cfg["id"] == "satcodec" and cfg["bpp"] == 1.5 and cfg["bit_depth"] == 12
    assert numcodecs.get_codec(cfg) == c
    assert Satcodec.from_config({k: v for k, v in cfg.items() if k != "id"}) == c
    assert Satcodec.lossless is False
    for bad in ({"bpp": 1.0, "quality": 50}, {"tile": "big"}, {"bpp": -1}, {"bit_depth": 1.5}):
        with pytest.raises(SatcodecError):
            Satcodec(**bad)


def test_zarr_round_trip(tiny_model: Path, image: np.ndarray, tmp_path: Path) -> None:
    codec = Satcodec(quality=60, model=str(tiny_model), bit_depth=12, tile=64)
    z = _zarr_array(tmp_path / "a.zarr", image.shape, (2, 128, 128), codec)
    z[:] = image
    back = zarr.open_array(str(tmp_path / "a.zarr"), mode="r")[:]
    assert back.dtype == image.dtype and back.shape == image.shape
    for y in (0, 128):
        for x in (0, 128):
            chunk = image[:, y : y + 128, x : x + 128]
            own = codec.decode(codec.encode(chunk))
            direct, _ = satcodec.decode(
                satcodec.encode(chunk, quality=60, model=tiny_model, bit_depth=12, tile=64)
            )
            got = back[:, y : y + 128, x : x + 128]
            assert np.array_equal(got, own) and np.array_equal(got, direct)
    assert not np.array_equal(back, image)  # lossy
    assert psnr(image.astype(np.float64), back.astype(np.float64), 12) > 20


def test_chunk_shapes(tiny_model: Path, image: np.ndarray) -> None:
    codec = Satcodec(quality=50, model=str(tiny_model), tile=64)
    band = image[0, :100, :70]
    out = codec.decode(codec.encode(band))
    assert out.shape == band.shape and out.dtype == band.dtype  # 2-D stays 2-D
    one = image[:1, :64, :64]
    assert codec.decode(codec.encode(one)).shape == (1, 64, 64)  # (1, H, W) stays 3-D
    buf = np.empty_like(band)
    codec.decode(codec.encode(band), out=buf)
    assert np.array_equal(buf, out)
    with pytest.raises(ConfigError, match="chunk"):
        codec.encode(band.tobytes())  # bytes: no shape
    with pytest.raises(ConfigError):
        codec.encode(band.astype(np.float32))


def test_the_entry_point_finds_the_codec(tmp_path: Path) -> None:
    """A fresh interpreter that never imported satcodec gets the codec by id."""
    code = (
        "import sys, numcodecs\n"
        "assert 'satcodec' not in sys.modules\n"
        "c = numcodecs.get_codec({'id': 'satcodec', 'quality': 40, 'tile': 256})\n"
        "print(type(c).__module__, c.quality, c.tile)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert r.returncode == 0, (
        r.stderr[-2000:] + "\n(is satcodec installed with its numcodecs.codecs entry point?)"
    )
    assert r.stdout.split() == ["satcodec.zarr_codec", "40.0", "256"]


def test_spectral_chunks(tmp_path: Path) -> None:
    """``spectral="klt"``: each 3-band chunk of a real Landsat 8 crop coded jointly."""
    from satcodec.raster import open_raster

    with open_raster(Path(__file__).parent / "data" / "landsat8_rgb_grenada_crop.tif") as r:
        x = r.read()
    codec = Satcodec(bpp=1.0, spectral="klt", tile=64)
    cfg = json.loads(json.dumps(codec.get_config()))
    assert cfg["spectral"] == "klt" and numcodecs.get_codec(cfg) == codec
    z = _zarr_array(tmp_path / "ms.zarr", x.shape, (3, 80, 80), codec)
    z[:] = x
    back = zarr.open_array(str(tmp_path / "ms.zarr"), mode="r")[:]
    plain = Satcodec(bpp=1.0, tile=64)
    chunk = x[:, :80, :80]
    assert psnr(chunk, back[:, :80, :80], 16) > psnr(chunk, plain.decode(plain.encode(chunk)), 16)
    with pytest.raises(ConfigError, match="spectral must be None, one of klt"):
        Satcodec(bpp=1.0, spectral="pca")
