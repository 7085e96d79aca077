"""Band normalisation by texture (bitstream flag 0x0004): the rule, the statistics pass, and
what it does to real streams."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import satcodec
from satcodec.bitstream import StreamReader
from satcodec.coding import Encoder, array_window_reader, band_offsets_of
from satcodec.coding.normalisation import (
    MAX_PEAK_SHIFT_DOWN,
    MAX_PEAK_SHIFT_UP,
    TARGET_LAPLACIAN,
    band_statistics,
    peak_bits_for_texture,
    peaks_of_bits,
    step_scales_of_bits,
)
from satcodec.errors import ConfigError
from satcodec.raster import open_raster

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wv3() -> np.ndarray:
    """A real WorldView-3 pan crop (12-bit data, values up to ~1900)."""
    with open_raster(REPO / "tests" / "data" / "worldview3_buenosaires_rpc.tif") as r:
        return np.ascontiguousarray(r.read()[:, :256, :256])


def _psnr(a: np.ndarray, b: np.ndarray, peak: float = 4095.0) -> float:
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return float(10 * np.log10(peak * peak / mse))


def test_the_rule_hits_the_target_and_stays_in_bounds() -> None:
    # a band whose texture is the target at an 11-bit peak gets 11 bits, whatever its word
    lap = TARGET_LAPLACIAN * (2**11 - 1)
    assert peak_bits_for_texture(lap, 12) == 11
    assert peak_bits_for_texture(lap, 14) == 11
    # half an octave either side rounds to the nearest bit
    assert peak_bits_for_texture(lap * 2**0.4, 12) == 11
    assert peak_bits_for_texture(lap * 2**0.6, 12) == 12
    # flat or broken statistics keep the bit depth's peak
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        assert peak_bits_for_texture(bad, 12) == 12
    # clamped to bit_depth -5..+3, and never below 1 bit
    assert peak_bits_for_texture(1e-6, 12) == 12 - MAX_PEAK_SHIFT_DOWN
    assert peak_bits_for_texture(1e9, 12) == 12 + MAX_PEAK_SHIFT_UP
    assert peak_bits_for_texture(1e-6, 3) == 1


def test_peaks_and_steps_of_bits() -> None:
    assert peaks_of_bits([12, 11]) == [4095.0, 2047.0]
    # the same step in sensor units: a band of half the peak is quantised twice as coarsely
    # in its normalised units
    assert step_scales_of_bits([12, 11, 9]) == [1.0, 2.0, 8.0]


def test_statistics_pass_gives_the_offsets_and_the_texture(wv3, monkeypatch) -> None:
    x = wv3[0]
    read = array_window_reader(wv3)
    offsets, laps = band_statistics(read, 1, *x.shape, None)
    assert offsets == band_offsets_of(read, 1, *x.shape, None) == [int(round(x.mean()))]
    f = x.astype(np.float64)
    full = np.abs(4 * f[1:-1, 1:-1] - f[:-2, 1:-1] - f[2:, 1:-1] - f[1:-1, :-2] - f[1:-1, 2:])
    assert laps[0] == pytest.approx(full.mean(), rel=0.05)  # every 4th row of the same sum
    # row blocks of any height give the same statistics (the pass is bounded in memory)
    import satcodec.coding.normalisation as norm

    monkeypatch.setattr(norm, "_BLOCK_PIXELS", 7 * x.shape[1])  # 7-row blocks
    offsets7, laps7 = band_statistics(read, 1, *x.shape, None)
    assert offsets7 == offsets and laps7[0] == pytest.approx(laps[0], rel=0.1)


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
@pytest.mark.parametrize("nodata", [None, 0.0, 7.0])
def test_compiled_statistics_equal_the_numpy_reference(dtype, nodata) -> None:
    """8- and 16-bit blocks take the compiled integer pass: the same totals to the bit as
    the float64 numpy pass (the offsets are in every stream's header)."""
    from satcodec.coding.normalisation import _block_statistics, _block_statistics_float

    rng = np.random.default_rng(3)
    top = 255 if dtype == "uint8" else 4095
    for shape in [(1, 5), (2, 9), (3, 3), (11, 17), (64, 40)]:
        rows = rng.integers(0, top + 1, size=shape).astype(dtype)
        rows[rng.random(shape) < 0.2] = 0 if nodata is None else int(nodata)
        has = nodata is not None
        compiled = _block_statistics(rows, nodata if has else 0.0, has)
        reference = _block_statistics_float(rows, nodata)
        assert tuple(float(v) for v in compiled) == tuple(float(v) for v in reference)


def test_nodata_does_not_count_as_texture(wv3) -> None:
    """A nodata collar (flat, with a huge edge) is left out, pixels and neighbours: the
    texture is the valid area's."""
    x = wv3.copy()
    x[0, :, :40] = 0  # a collar down the left side
    _, with_collar = band_statistics(array_window_reader(x), 1, 256, 256, 0)
    _, inside = band_statistics(
        array_window_reader(np.ascontiguousarray(x[:, :, 40:])), 1, 256, 216, None
    )
    assert with_collar[0] == pytest.approx(inside[0], rel=0.02)
    _, counted = band_statistics(array_window_reader(x), 1, 256, 256, None)
    assert abs(counted[0] - with_collar[0]) > 0.05 * with_collar[0]  # the mask matters


def test_texture_peaks_code_a_band_better_whatever_its_word(wv3) -> None:
    """The same 12-bit pixels declared as 14-bit data: divided by the 14-bit peak the analysis
    sees a quarter of its usual amplitude and loses ~0.35 dB at 1 bpp (0.7 dB with the decoder
    tuned before the texture rule); the texture rule picks
    the same 11-bit peak for either word and codes both alike."""
    results = {}
    for bit_depth in (12, 14):
        for norm in ("bit-depth", "texture"):
            data = satcodec.encode(wv3, bpp=1.0, bit_depth=bit_depth, normalisation=norm)
            out, _ = satcodec.decode(data)
            h = StreamReader(data).header
            results[bit_depth, norm] = (h.band_peak_bits, 8 * len(data) / wv3.size, _psnr(out, wv3))
    assert results[12, "bit-depth"][0] is None and results[14, "bit-depth"][0] is None
    assert results[12, "texture"][0] == results[14, "texture"][0] == (11,)
    (_, r14, p14), (_, rt, pt) = results[14, "bit-depth"], results[14, "texture"]
    assert rt <= r14 * 1.01 and pt >= p14 + 0.25
    assert abs(results[12, "texture"][2] - pt) < 0.05  # the word no longer matters


def test_flat_band_keeps_the_bit_depth_stream() -> None:
    """No texture, no flag: the stream is byte for byte the bit-depth normalisation's."""
    x = np.full((1, 96, 96), 1234, np.uint16)
    texture = satcodec.encode(x, quality=50, bit_depth=12)
    assert StreamReader(texture).header.band_peak_bits is None
    assert texture == satcodec.encode(x, quality=50, bit_depth=12, normalisation="bit-depth")


def test_multi_band_peaks_decode_each_band_at_its_own_step(wv3) -> None:
    """Two bands of different texture: each gets its own peak, and both decode well."""
    low = (wv3[0] // 8 + 300).astype(np.uint16)  # an eighth of the contrast
    x = np.stack([wv3[0], low])
    data = satcodec.encode(x, bpp=1.0, bit_depth=12)
    bits = StreamReader(data).header.band_peak_bits
    assert bits is not None and bits[1] == bits[0] - 3
    out, _ = satcodec.decode(data)
    assert _psnr(out[0], x[0]) > 45 and _psnr(out[1], x[1]) > 55


def test_bad_normalisation_is_refused(wv3) -> None:
    with pytest.raises(ConfigError, match="normalisation must be one of texture, bit-depth"):
        satcodec.encode(wv3, quality=50, normalisation="range")


def test_joint_models_keep_the_bit_depth_peak(wv3) -> None:
    """A joint (denoising) model's noise model is in the bit depth's units: no flag."""
    from satcodec.codec.registry import load_weights

    path = REPO / "satcodec" / "ground_segment" / "weights" / "codec" / "joint-s8-l1e-3.safetensors"
    net = load_weights(path)
    enc = Encoder(
        net,
        net.info,
        array_window_reader(wv3),
        height=256,
        width=256,
        bands=1,
        dtype="uint16",
        bit_depth=14,
        nodata=None,
        tile=256,
    )
    assert enc.band_peak_bits is None and enc.peaks == [16383.0]


def test_info_shows_the_band_peaks(wv3, tmp_path) -> None:
    from satcodec.api import describe

    path = tmp_path / "a.satc"
    path.write_bytes(satcodec.encode(wv3, quality=50, bit_depth=14))
    assert describe(path)["band_peak_bits"] == [11]
    path.write_bytes(satcodec.encode(wv3, quality=50, bit_depth=14, normalisation="bit-depth"))
    assert describe(path)["band_peak_bits"] is None


def test_a_quality_is_the_same_sensor_step_with_either_normalisation(wv3) -> None:
    """``quality`` sets the step in sensor units: the texture stream of a band whose peak
    went down a bit is quantised at twice the normalised step, so its rate stays near the
    bit-depth stream's (it would double at the same normalised step)."""
    tex = satcodec.encode(wv3, quality=50, bit_depth=12)
    old = satcodec.encode(wv3, quality=50, bit_depth=12, normalisation="bit-depth")
    h_tex, h_old = StreamReader(tex).header, StreamReader(old).header
    assert h_tex.band_peak_bits == (11,) and h_old.band_peak_bits is None
    assert h_tex.quant_step == 2 * h_old.quant_step
    assert 0.8 < len(tex) / len(old) < 1.2


def test_a_relu_analysis_gets_at_most_4x_gain(wv3) -> None:
    """ReLU analyses are unbounded where GDN divides: their peaks move at most 2 bits down."""
    assert peak_bits_for_texture(1e-6, 12, 2) == 10
    low = (wv3 // 16 + 500).astype(np.uint16)  # a sixteenth of the contrast: wants 4+ bits
    relu = StreamReader(satcodec.encode(low, bpp=1.0, bit_depth=12, model="fast-relu-s8-l4e-3"))
    gdn = StreamReader(satcodec.encode(low, bpp=1.0, bit_depth=12, model="fast-s8-l4e-3"))
    assert relu.header.band_peak_bits == (10,)
    assert gdn.header.band_peak_bits is not None and gdn.header.band_peak_bits[0] < 10
