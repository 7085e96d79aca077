"""Data safety at the API and the model registry (issue 17): bad options refused by name,
one bad weights file never breaks the others, bit depths that would clip refused, damaged
tiles never confused with real pixels."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import satcodec
from satcodec.codec import registry
from satcodec.codec.models import ModelConfig, ReducedVAE
from satcodec.errors import (
    ConfigError,
    RasterError,
    SatcodecError,
    UnknownModelError,
    WeightsError,
)
from tests.conftest import requires_shipped_model


@pytest.fixture
def image() -> np.ndarray:
    rng = np.random.default_rng(3)
    base = rng.integers(200, 1800, (1, 8, 8)).repeat(16, 1).repeat(16, 2)
    return (base + rng.integers(0, 40, base.shape)).astype(np.uint16)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"bpp": -1},
        {"bpp": math.inf},
        {"bpp": math.nan},
        {"bpp": 1e308},
        {"max_bpp": -1},
        {"quality": 101},
        {"bpp": "1"},
        {"nodata": "x"},
        {"nodata": 1.5},
        {"nodata": 70000},
        {"model": 1234},
        {"tile": "512"},
        {"bit_depth": "12"},
        {"metadata": ["not", "a", "dict"]},
        {"deadzone": 0.5},
        {"deadzone": -0.5},
        {"deadzone": math.nan},
        {"deadzone": "0.1"},
    ],
)
def test_bad_api_options_are_refused_by_name(image: np.ndarray, kwargs: dict) -> None:
    with pytest.raises(SatcodecError) as info:
        satcodec.encode(image, **kwargs)
    assert isinstance(info.value, ValueError)
    name = next(iter(kwargs)).replace("_", " ").split()[0]
    assert name.split("_")[0] in str(info.value).replace("_", " ")


def test_bit_depth_below_the_data_is_refused(image: np.ndarray) -> None:
    with pytest.raises(RasterError, match=r"reach 1\d\d\d.*11 bits.*bit depth 8"):
        satcodec.encode(image, bit_depth=8)


def test_decode_refuses_non_bytes() -> None:
    with pytest.raises(ConfigError):
        satcodec.decode("not bytes")  # type: ignore[arg-type]


# --- registry --------------------------------------------------------------------------------
def _write_model(path: Path, config: ModelConfig, meta: object, state=None) -> None:
    if state is None:
        state = {
            k: v.half() if v.is_floating_point() else v
            for k, v in ReducedVAE(config).state_dict().items()
        }
    md = {
        "format": registry.FORMAT,
        "config": json.dumps(config.to_dict()),
        "meta": meta if isinstance(meta, str) else json.dumps(meta),
    }
    save_file(state, str(path), metadata=md)


@pytest.fixture
def model_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SATCODEC_MODEL_PATH", str(tmp_path))
    return tmp_path


@requires_shipped_model
def test_one_broken_weights_file_does_not_break_the_others(
    model_path: Path, image: np.ndarray
) -> None:
    (model_path / "broken.safetensors").write_bytes(b"\x00" * 64)
    with pytest.warns(UserWarning, match="broken.safetensors"):
        names = [m.name for m in registry.list_models()]
    assert "broken" not in names and "reduced-s8-l1e-3" in names
    assert any(p.name == "broken.safetensors" for p in registry.model_problems())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = satcodec.encode(image, quality=50)
        out, _ = satcodec.decode(data)
    assert out.shape == image.shape


def test_unknown_model_names_the_skipped_files(model_path: Path) -> None:
    (model_path / "broken.safetensors").write_bytes(b"junk")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(UnknownModelError, match="broken.safetensors"):
            registry.find_model_by_id("0" * 32)


def test_huge_architecture_is_refused_before_it_is_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A config claiming a 1024-wide network with a few small tensors: refused from the
    header, the network never built on a real device (it used to allocate ~760 MB)."""
    path = tmp_path / "wide.safetensors"
    config = ModelConfig(hidden=1024, latent=1024)
    _write_model(path, config, {}, state={"x": torch.zeros(2)})
    built: list[str] = []
    from satcodec.codec import models

    real = models.ReducedVAE

    class Spy(real):  # type: ignore[misc, valid-type]
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            built.append(next(self.parameters()).device.type)

    monkeypatch.setattr(models, "ReducedVAE", Spy)
    with pytest.raises(WeightsError, match="does not match its architecture"):
        registry.load_model(path)
    assert built and set(built) == {"meta"}


@pytest.mark.parametrize(
    "meta",
    [
        "[" * 100000 + "]" * 100000,  # RecursionError in json
        {"rd": "fast"},
        {"rd": [[1.0, "x"]]},
        {"rd": [[2.0, 40.0], [1.0, 45.0]]},
        {"native_bpp": "one"},
        {"native_bpp": -1},
        {"default": "yes"},
        {"steps": [1]},
        ["a", "list"],
    ],
)
def test_malformed_model_cards_are_refused(tmp_path: Path, meta: object) -> None:
    path = tmp_path / "card.safetensors"
    _write_model(path, ModelConfig(hidden=8, latent=8), meta)
    with pytest.raises(WeightsError):
        registry.load_model(path)


def test_wrong_model_option_types(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        registry.load_model(1234)  # type: ignore[arg-type]
    (tmp_path / "dir.safetensors").mkdir()
    with pytest.raises(WeightsError, match="not a file"):
        registry.load_model(tmp_path / "dir.safetensors")


# --- damaged tiles, partial downlinks, metadata -----------------------------------------------
@requires_shipped_model
def test_damaged_tiles_without_nodata_do_not_hide_real_zeros(image: np.ndarray) -> None:
    from satcodec.bitstream import StreamReader

    img = image.copy()
    img[0, :64, :64] = 0  # genuine zeros in tile (0, 0)
    data = bytearray(satcodec.encode(img, quality=50, tile=64, nodata=None))
    data[len(data) - 10] ^= 0xFF  # inside the last tile's record: its CRC fails
    assert StreamReader(bytes(data)).check() == [(0, 1, 1)]
    out, meta = satcodec.decode(bytes(data), allow_damaged=True)
    assert meta["damaged_tiles"]
    fill = meta["nodata"]
    assert fill is not None and fill > 2 ** meta["bit_depth"] - 1 - 1e-9  # outside the data
    b, r, c = meta["damaged_tiles"][0]
    assert (out[b, r * 64 : (r + 1) * 64, c * 64 : (c + 1) * 64] == fill).all()
    assert not (out[0, :64, :64] == fill).any()  # the real zeros stay real pixels


@requires_shipped_model
def test_spec_legal_metadata_decodes_to_a_file(image: np.ndarray, tmp_path: Path) -> None:
    import rasterio

    src = tmp_path / "m.satc"
    src.write_bytes(satcodec.encode(image, quality=50, metadata={"mission": "SAT-1"}))
    satcodec.decode_file(src, tmp_path / "m.tif")
    with rasterio.open(tmp_path / "m.tif") as ds:
        assert ds.shape == image.shape[1:]
        assert "SAT-1" in json.dumps(ds.tags())


@requires_shipped_model
def test_wide_integer_streams_are_refused_before_decoding(tmp_path: Path) -> None:
    """The bitstream can carry uint32/int32, the GeoTIFF writer cannot: a clear error, no
    output, instead of a failure deep inside the writer."""
    from satcodec.bitstream import StreamReader, write_stream

    data = satcodec.encode(np.full((64, 64), 100, np.uint16), quality=50)
    reader = StreamReader(data)
    h = reader.header
    from dataclasses import replace

    wide = replace(h, dtype="uint32", bit_depth=20)
    tiles = [reader.read_tile(*k) for k in h.iter_tile_keys()]
    src = tmp_path / "w.satc"
    src.write_bytes(write_stream(wide, tiles))
    with pytest.raises(SatcodecError, match="uint32"):
        satcodec.decode_file(src, tmp_path / "w.tif")
    assert not (tmp_path / "w.tif").exists()


@requires_shipped_model
@pytest.mark.parametrize("full_width", [False, True])
def test_decode_file_marks_damaged_tiles_outside_the_data(tmp_path: Path, full_width: bool) -> None:
    """12-bit data: damaged tiles get nodata 4096 (outside the data); full-width 16-bit data
    has no free value: a mask band marks them. Either way real zeros stay valid pixels."""
    import rasterio

    from satcodec.bitstream import StreamReader

    rng = np.random.default_rng(5)
    img = rng.integers(100, 3000, (128, 128)).astype(np.uint16)
    img[:64, :64] = 0
    if full_width:
        img[64:, :64] = 65535
    data = bytearray(satcodec.encode(img, quality=50, tile=64))
    data[len(data) - 10] ^= 0xFF
    assert StreamReader(bytes(data)).check() == [(0, 1, 1)]
    src, out = tmp_path / "d.satc", tmp_path / "d.tif"
    src.write_bytes(bytes(data))
    report = satcodec.decode_file(src, out, allow_damaged=True)
    assert report.damaged_tiles == [(0, 1, 1)]
    with rasterio.open(out) as ds:
        valid = ds.dataset_mask() > 0
        if full_width:
            assert ds.nodata is None
        else:
            assert ds.nodata == 4096 and (ds.read(1)[64:, 64:] == 4096).all()
    assert not valid[64:, 64:].any()
    assert valid[:64, :64].all()  # the genuine zeros are data


@requires_shipped_model
def test_the_deadzone_saves_bits_and_only_the_encoder_changes() -> None:
    """The default deadzone codes the same scene at the same (coarse) step in fewer bits, into
    a stream every decoder reads (same header but the rate); deadzone=0 is plain rounding, and
    joint models, where it was not measured, keep it by default."""
    import rasterio

    from satcodec.bitstream import StreamReader

    with rasterio.open(Path(satcodec.__file__).parent / "data" / "pleiades_ventoux.tif") as ds:
        img = ds.read()

    def point(quality: float, deadzone: float | None) -> tuple[bytes, float, float]:
        data = satcodec.encode(img, quality=quality, deadzone=deadzone)
        out, _ = satcodec.decode(data)
        mse = float(np.mean((out.astype(float) - img) ** 2))
        return data, math.log(8 * len(data) / img.size), 10 * math.log10(4095**2 / mse)

    plain, r0, p0 = point(40, 0)  # about twice the native step: where the deadzone works
    dz, r1, p1 = point(40, None)
    assert r1 < r0 - 0.01  # fewer bits at the same step
    h0, h1 = StreamReader(plain).header, StreamReader(dz).header
    assert h0.quant_step_q16 == h1.quant_step_q16 and h0.model_id == h1.model_id
    _, r2, p2 = point(35, 0)  # plain rounding at a coarser step, fewer bits still
    assert r2 < r1
    # more PSNR than plain rounding gives at the same rate (log-rate interpolation)
    assert p1 > p2 + (p0 - p2) * (r1 - r2) / (r0 - r2) + 0.05
    joint = (
        Path(satcodec.__file__).parent / "ground_segment/weights/codec/joint-s8-l1e-3.safetensors"
    )
    assert satcodec.encode(img, quality=50, model=joint) == satcodec.encode(
        img, quality=50, model=joint, deadzone=0
    )
