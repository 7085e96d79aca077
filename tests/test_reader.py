"""satcodec.open: the rasterio-like reader decodes only the tiles a window needs, bit-exact to
the whole-scene decode, with the georeferencing of the source."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import SAMPLE
from rasterio.windows import Window

import satcodec
from satcodec.bitstream import StreamReader
from satcodec.errors import ConfigError, TileCorruptedError
from satcodec.reader import SatcDataset

WINDOWS = [
    ((0, 500), (0, 500)),  # everything
    ((200, 290), (100, 250)),  # inside, across tile borders
    ((127, 129), (127, 129)),  # four tiles, one pixel each
    ((384, 500), (0, 7)),  # the bottom-left edge tile (smaller than the others)
    ((0, 1), (499, 500)),
    ((10, 10), (0, 5)),  # empty
]


@pytest.fixture(scope="module")
def stream(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """The sample (500², 12-bit, georeferenced) in 128-px tiles, and its whole-scene decode."""
    path = tmp_path_factory.mktemp("reader") / "s.satc"
    satcodec.encode_file(SAMPLE, path, quality=50, model=tiny_model, tile=128)
    full, _ = satcodec.decode(path.read_bytes())
    return path, full


def test_metadata_is_the_sources(stream: tuple[Path, np.ndarray]) -> None:
    path, _ = stream
    with rasterio.open(SAMPLE) as src, satcodec.open(path) as ds:
        assert isinstance(ds, SatcDataset)
        assert (ds.count, ds.height, ds.width, ds.shape) == (1, 500, 500, (500, 500))
        assert ds.dtypes == src.dtypes and ds.nodata == src.nodata
        assert ds.crs == src.crs and ds.transform == src.transform
        assert ds.bounds == src.bounds and ds.res == src.res
        assert ds.descriptions == src.descriptions
        assert ds.tags() == src.tags()
        assert ds.block_shapes == [(128, 128)]
        p = ds.profile
        assert p["driver"] == "SATC" and p["blockxsize"] == 128 and p["count"] == 1
        assert p["transform"] == src.transform and p["dtype"] == "uint16"
        assert [w for _, w in ds.block_windows()][-1] == Window(384, 384, 116, 116)
    assert ds.closed
    with pytest.raises(ConfigError, match="closed"):
        ds.read(1)


@pytest.mark.parametrize(("rows", "cols"), WINDOWS)
def test_window_reads_equal_the_whole_decode(
    stream: tuple[Path, np.ndarray], rows: tuple[int, int], cols: tuple[int, int]
) -> None:
    path, full = stream
    with satcodec.open(path) as ds:
        want = full[:, rows[0] : rows[1], cols[0] : cols[1]]
        got = ds.read(window=(rows, cols))
        assert got.dtype == want.dtype and np.array_equal(got, want)
        win = Window(cols[0], rows[0], cols[1] - cols[0], rows[1] - rows[0])
        assert np.array_equal(ds.read(1, window=win), want[0])


def test_only_the_needed_tiles_are_decoded(stream: tuple[Path, np.ndarray]) -> None:
    path, full = stream
    with satcodec.open(path) as ds:
        ds.read(1, window=Window(0, 0, 10, 10))
        # tile (0, 0) and the neighbours its halo reaches: never the 16 of the scene
        assert set(ds._tiles.items) == {(0, 0, 0)}
        assert set(ds._latents.items) <= {(0, 0, 0), (0, 0, 1), (0, 1, 0), (0, 1, 1)}
        assert np.array_equal(ds.read(1, out_dtype="float32"), full[0].astype(np.float32))


def test_synthesis_blocks_inside_a_tile_match(
    stream: tuple[Path, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tiles synthesised block by block (a tile larger than the synthesis block): the reader
    uses the decoder's blocks, so it still matches the whole decode made with them."""
    import satcodec.coding.decoder as dec

    path, _ = stream
    monkeypatch.setattr(dec, "SYNTH_BLOCK", 3)
    full, _ = satcodec.decode(path.read_bytes())
    with satcodec.open(path) as ds:
        assert ds._decoder.synth_block == 3
        assert np.array_equal(ds.read(1, window=((100, 300), (50, 140))), full[0, 100:300, 50:140])


def test_bad_arguments(stream: tuple[Path, np.ndarray]) -> None:
    path, _ = stream
    with pytest.raises(ConfigError, match="reads only"):
        satcodec.open(path, "w")
    with satcodec.open(path) as ds:
        for bad in (0, 2, [1, 2], "1"):
            with pytest.raises(ConfigError):
                ds.read(bad)
        for win in (((0, 501), (0, 10)), ((-1, 5), (0, 10)), ((5, 4), (0, 1)), "x"):
            with pytest.raises(ConfigError):
                ds.read(1, window=win)


def test_nodata_and_damaged_tiles(tiny_model: Path, tmp_path: Path) -> None:
    """Damaged tiles raise unless allow_damaged; then they read as decode fills them, the
    masks flag them and the nodata pixels, and every other pixel matches decode."""
    rng = np.random.default_rng(3)
    img = rng.integers(100, 3000, (2, 150, 140)).astype(np.uint16)
    img[:, :20, :30] = 0
    data = bytearray(satcodec.encode(img, quality=50, model=tiny_model, tile=64, nodata=0))
    data[len(data) - 10] ^= 0xFF  # the last tile's record (band 1, row 2, col 2)
    assert StreamReader(bytes(data)).check() == [(1, 2, 2)]
    path = tmp_path / "d.satc"
    path.write_bytes(bytes(data))
    full, meta = satcodec.decode(bytes(data), allow_damaged=True)
    with satcodec.open(path) as ds:
        assert np.array_equal(ds.read(2, window=((0, 64), (0, 64))), full[1, :64, :64])
        with pytest.raises(TileCorruptedError):
            ds.read(2, window=((140, 150), (130, 140)))
        with pytest.raises(TileCorruptedError):  # a neighbour's halo needs it
            ds.read(2, window=((127, 128), (127, 128)))
    with satcodec.open(path, allow_damaged=True) as ds:
        assert ds.nodata == meta["nodata"] == 0
        assert np.array_equal(ds.read(), full)
        assert ds.damaged_tiles == meta["damaged_tiles"] == [(1, 2, 2)]
        masks = ds.read_masks()
        assert (masks[1, 128:, 128:] == 0).all() and (masks[:, :20, :30] == 0).all()
        assert (masks == 255).sum() == ((full != 0).sum())
        m = ds.read(2, masked=True)
        assert m.mask[140, 135] and not m.mask[100, 100]
