"""Tiles in parallel give the same streams and pixels as one thread; the default runtime."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import rasterio
from conftest import SAMPLE

import satcodec
from satcodec.bitstream import StreamReader
from satcodec.coding.decoder import open_decoder
from satcodec.coding.parallel import ordered_map, resolve_workers
from satcodec.errors import ConfigError
from satcodec.export.runtime import RUNTIME_ENV, default_runtime


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    with rasterio.open(SAMPLE) as src:
        return src.read()[:, :320, :288]


@pytest.mark.parametrize("options", [{"bpp": 1.0}, {"quality": 40}], ids=["bpp", "quality"])
def test_threads_do_not_change_the_stream(image: np.ndarray, options: dict) -> None:
    one = satcodec.encode(image, bit_depth=12, tile=64, threads=1, **options)
    three = satcodec.encode(image, bit_depth=12, tile=64, threads=3, **options)
    assert StreamReader(one).header.tiles_per_band == 25
    assert one == three


def test_threads_do_not_change_the_pixels(image: np.ndarray) -> None:
    data = satcodec.encode(image, bit_depth=12, tile=64, quality=50, threads=1)
    one, _ = satcodec.decode(data, threads=1)
    three, _ = satcodec.decode(data, threads=3)
    np.testing.assert_array_equal(one, three)
    # multi-block tiles (a block of 3 latents a side): the blocks of a tile run in parallel
    blocks = []
    for workers in (1, 3):
        dec = open_decoder(data)
        dec.workers, dec.synth_block = workers, 3
        blocks.append([t.pixels for t in dec.iter_tiles()])
    for a, b in zip(*blocks, strict=True):
        np.testing.assert_array_equal(a, b)


def test_ordered_map_keeps_order_bounds_work_ahead_and_raises() -> None:
    started: list[int] = []
    lock = threading.Lock()

    def slow(i: int) -> int:
        with lock:
            started.append(i)
        time.sleep(0.002 * (i % 3))
        return i * i

    consumed = 0
    for i, v in enumerate(ordered_map(slow, range(40), 3)):
        assert v == i * i
        consumed += 1
        assert len(started) <= consumed + 2 * 3  # never more than 2 x workers ahead
    assert consumed == 40

    def boom(i: int) -> int:
        if i == 5:
            raise ValueError("tile 5")
        return i

    with pytest.raises(ValueError, match="tile 5"):
        list(ordered_map(boom, range(20), 2))


@pytest.mark.parametrize("bad", [0, -1, 2.0, "2", True])
def test_threads_must_be_a_positive_integer(bad: object) -> None:
    with pytest.raises(ConfigError, match="threads"):
        resolve_workers(bad)  # type: ignore[arg-type]


def test_default_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RUNTIME_ENV, "torch")
    assert default_runtime() == "torch"
    monkeypatch.setenv(RUNTIME_ENV, "cuda")
    with pytest.raises(ConfigError, match=RUNTIME_ENV):
        default_runtime()
    monkeypatch.delenv(RUNTIME_ENV)
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    assert default_runtime() == "onnxruntime"


def test_default_runtime_gives_the_torch_stream(
    image: np.ndarray, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    """onnxruntime fp32 (the default when installed) codes the same stream as PyTorch."""
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("SATCODEC_CACHE", str(tmp_path))
    torch_stream = satcodec.encode(image, bit_depth=12, quality=50, runtime="torch")
    monkeypatch.delenv(RUNTIME_ENV)
    assert satcodec.encode(image, bit_depth=12, quality=50) == torch_stream
    pixels, _ = satcodec.decode(torch_stream)
    reference, _ = satcodec.decode(torch_stream, runtime="torch")
    assert np.abs(pixels.astype(int) - reference.astype(int)).max() <= 1  # float rounding


@pytest.mark.parametrize("threads", [1, 2])
def test_streaming_encoder_writes_the_same_stream(image: np.ndarray, threads: int) -> None:
    """Above max_held_tiles the encoder keeps only the rate search's sample and analyses the
    other tiles again while coding: same stream, for --bpp (refinement passes included) and a
    fixed step."""
    from satcodec.codec.registry import load_model
    from satcodec.coding import Encoder, array_window_reader

    net, info = load_model("reduced-s8-l1e-3")
    a = np.concatenate([image, image[:, ::-1]], axis=1)
    a = np.concatenate([a, a[:, :, ::-1], a], axis=2)[:, :640, :768]  # 10 x 12 tiles of 64
    a = np.concatenate([a, a[:, ::-1]], axis=1)[:, :704]  # 11 x 12 = 132 tiles: a sample of 66
    kw = dict(height=704, width=768, bands=1, dtype="uint16", bit_depth=12, nodata=None, tile=64)
    held = Encoder(net, info, array_window_reader(a), workers=threads, max_held_tiles=1000, **kw)
    streaming = Encoder(net, info, array_window_reader(a), workers=threads, **kw)
    assert not held.streaming and streaming.streaming
    assert streaming.n_tiles == held.n_tiles == 132
    assert streaming.sample == held.sample == 2
    assert len(streaming.latent_tiles) == 66 and len(held.latent_tiles) == 132
    assert streaming.estimated_bits(1.0, 2) == held.estimated_bits(1.0, 2)
    assert streaming.encode(0.7) == held.encode(0.7)
    assert streaming.encode_at_bpp(1.2) == held.encode_at_bpp(1.2)
