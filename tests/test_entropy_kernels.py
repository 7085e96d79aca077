"""The compiled context-model kernels give byte-identical streams to the numpy coder they
replaced (tests/entropy_reference.py, the code of commit e4021e1): on the committed fuzz
corpus (re-encoding every tile's decoded symbols must give back its stored payload), on
real latents of the shipped models, and on synthetic heavy-tailed symbols."""

from __future__ import annotations

from pathlib import Path

import entropy_reference as ref
import numpy as np
import pytest

from satcodec.bitstream import StreamReader
from satcodec.coding.framing import unpack_payload
from satcodec.entropy import fit_scale_indices
from satcodec.entropy.context import (
    context_rows,
    decode_symbols_context,
    encode_symbols_context,
    fit_context_bases,
)

REPO = Path(__file__).resolve().parents[1]
CORPUS = sorted((REPO / "bench" / "results").glob("fuzz_corpus*/*.satc"))
CONTEXT_CORPUS = [p for p in CORPUS if StreamReader(p.read_bytes()).header.channel_context]


def _check_identical(symbols: np.ndarray) -> None:
    plain = fit_scale_indices(symbols)
    base = fit_context_bases(symbols, plain)
    np.testing.assert_array_equal(base, ref.fit_context_bases(symbols, plain))
    np.testing.assert_array_equal(context_rows(symbols, base), ref.context_rows(symbols, base))
    payload = encode_symbols_context(symbols, base)
    assert payload == ref.encode_symbols_context(symbols, base)
    np.testing.assert_array_equal(decode_symbols_context(payload, base, symbols.shape), symbols)
    np.testing.assert_array_equal(ref._decode(payload, base, symbols.shape), symbols)


def test_the_corpus_has_context_streams() -> None:
    assert len(CONTEXT_CORPUS) >= 3


@pytest.mark.parametrize("path", CONTEXT_CORPUS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_corpus_tiles_reencode_to_their_payloads(path: Path) -> None:
    reader = StreamReader(path.read_bytes())
    h = reader.header
    tiles = 0
    for band in range(h.bands):
        for row in range(h.tiles_y):
            for col in range(h.tiles_x):
                rec = reader.read_tile(band, row, col)
                _, _, ph, pw = h.tile_pixel_window(row, col)
                entropy, _ = unpack_payload(rec.payload, ph, pw)
                base = np.frombuffer(rec.scale_indices, np.uint8)
                shape = (h.latent_channels, *h.tile_latent_shape(row, col))
                symbols = decode_symbols_context(entropy, base, shape)
                np.testing.assert_array_equal(symbols, ref._decode(entropy, base, shape))
                assert encode_symbols_context(symbols, base) == entropy
                _check_identical(symbols)
                tiles += 1
    assert tiles == h.bands * h.tiles_y * h.tiles_x


@pytest.mark.parametrize("step", [0.25, 1.0, 4.0])
def test_real_latents_code_identically(step: float, real_latents: np.ndarray) -> None:
    symbols = np.rint(real_latents / step).astype(np.int32)
    _check_identical(symbols)


@pytest.mark.parametrize("seed", range(6))
def test_synthetic_symbols_code_identically(seed: int) -> None:
    rng = np.random.default_rng(seed)
    C, h, w = int(rng.integers(1, 40)), int(rng.integers(1, 30)), int(rng.integers(1, 30))
    scale = rng.uniform(0.01, 30.0, (C, 1, 1)) * rng.uniform(0.2, 3.0, (1, h, w))
    symbols = np.rint(rng.laplace(0, scale)).astype(np.int32)
    big = rng.random(symbols.shape) < 0.01  # escapes of every size, both signs
    symbols[big] = rng.integers(-(2**23), 2**23, int(big.sum()))
    _check_identical(symbols)


@pytest.fixture(scope="module")
def real_latents() -> np.ndarray:
    import rasterio

    from satcodec.codec.registry import load_model
    from satcodec.coding.transforms import TorchTransform

    with rasterio.open(REPO / "tests" / "data" / "worldview3_buenosaires_rpc.tif") as src:
        image = src.read(1).astype(np.float32)
    model, _ = load_model("reduced-s8-l1e-3")
    x = (image[:128, :128] - float(image.mean())) / 4095.0
    return TorchTransform(model, "analysis")(x[None, None])[0]


@pytest.mark.parametrize("step", [0.37, 1.0, 2.5])
def test_quantise_and_fit_equals_numpy(step: float, real_latents: np.ndarray) -> None:
    """The compiled quantiser gives numpy's rint(clip(latents / step)) bit for bit, and both
    entropy models' fits from its statistics equal their fits of the symbols."""
    from satcodec.coding.entropy_models import ENTROPY_MODELS
    from satcodec.entropy import MAX_ABS_SYMBOL

    lat = real_latents.astype(np.float32)
    # values on rounding ties and beyond the clip, where another rounding would show
    lat[0, 0, :4] = np.float32(step) * np.array([0.5, 1.5, -2.5, 2.0**25], np.float32)
    expected = np.rint(np.clip(lat / step, -MAX_ABS_SYMBOL, MAX_ABS_SYMBOL)).astype(np.int32)
    assert expected[0, 0, 3] == MAX_ABS_SYMBOL
    for model in ENTROPY_MODELS.values():
        symbols, indices = model.quantise_and_fit(lat, step)
        np.testing.assert_array_equal(symbols, expected)
        np.testing.assert_array_equal(indices, model.fit(expected))


@pytest.mark.parametrize("deadzone", [0.05, 0.2, -0.06])
def test_deadzone_quantiser_equals_numpy(deadzone: float, real_latents: np.ndarray) -> None:
    """With a deadzone the symbols are sign(x) rint(max(|x| - deadzone, 0)) of numpy's clipped
    x (a negative one rounds magnitudes up), the fits follow them, and the rate estimate counts
    those symbols (within 1 % of their coded size, as without)."""
    from satcodec.coding.entropy_models import ENTROPY_MODELS
    from satcodec.entropy import MAX_ABS_SYMBOL

    step = np.float32(0.6)
    lat = real_latents.astype(np.float32)
    # just inside and just outside the deadzone of the boundaries at 0.5 and 1.5
    lat[0, 0, :4] = step * np.array([0.5 + 0.9 * deadzone, 0.5 + 1.1 * deadzone, -1.54, 1.56])
    x = np.clip(lat / step, -MAX_ABS_SYMBOL, MAX_ABS_SYMBOL)
    expected = (np.sign(x) * np.rint(np.maximum(np.abs(x) - np.float32(deadzone), 0))).astype(
        np.int32
    )
    assert list(expected[0, 0, :2]) == ([0, 1] if deadzone > 0 else [1, 0])
    plain = np.rint(x).astype(np.int32)
    shrinks = (
        np.abs(expected) <= np.abs(plain) if deadzone > 0 else np.abs(expected) >= np.abs(plain)
    )
    assert shrinks.all() and (expected != plain).any()
    for model in ENTROPY_MODELS.values():
        symbols, indices = model.quantise_and_fit(lat, float(step), deadzone)
        np.testing.assert_array_equal(symbols, expected)
        np.testing.assert_array_equal(indices, model.fit(expected))
        coded = 8 * len(model.encode(symbols, indices))
        estimate = model.estimate_bits_at_step(lat, float(step), deadzone)
        assert abs(estimate / coded - 1) < 0.01, (model.name, estimate, coded)
        plain_estimate = model.estimate_bits_at_step(lat, float(step))
        assert estimate < plain_estimate if deadzone > 0 else estimate > plain_estimate


def test_deadzone_out_of_range_is_refused() -> None:
    from satcodec.entropy.quantiser import quantise_with_stats
    from satcodec.errors import EntropyCodingError

    lat = np.zeros((2, 3, 3), np.float32)
    for bad in (-0.5, 0.5, 2.0, float("nan")):
        with pytest.raises(EntropyCodingError, match="deadzone"):
            quantise_with_stats(lat, 1.0, bad)


def test_quantiser_refuses_nan_latents() -> None:
    from satcodec.entropy.quantiser import quantise_with_stats
    from satcodec.errors import EntropyCodingError

    lat = np.zeros((3, 4, 5), np.float32)
    lat[1, 2, 3] = np.nan
    with pytest.raises(EntropyCodingError, match="NaN"):
        quantise_with_stats(lat, 0.5)
    lat[1, 2, 3] = np.inf  # infinities clip to the largest symbol, as numpy's clip does
    assert quantise_with_stats(lat, 0.5).symbols[1, 2, 3] == (1 << 24) - 1
