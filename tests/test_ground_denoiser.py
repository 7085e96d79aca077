"""Ground denoiser: seamless tiling, nodata, weights round trip, the CLI, and the shipped weights."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import rasterio
import torch

from satcodec.errors import WeightsError
from satcodec.ground_segment.denoiser import (
    DEFAULT_WEIGHTS,
    GroundDenoiser,
    denoise_array,
    load_denoiser,
    save_denoiser,
)
from satcodec.ground_segment.noise import NoiseParams, sensor_noise, simulate_noise
from satcodec.metrics import psnr
from satcodec.raster import open_raster
from tests.conftest import SAMPLE


@pytest.fixture(scope="module")
def random_denoiser(tmp_path_factory) -> tuple[GroundDenoiser, object]:
    torch.manual_seed(0)
    model = GroundDenoiser(8, 4)
    with torch.no_grad():
        model.body[-1].weight.mul_(10)  # make the correction visible
    path = tmp_path_factory.mktemp("dn") / "dn.safetensors"
    save_denoiser(path, model, {"note": "test"})
    return model.eval(), path


def test_tiled_output_equals_whole_image_output(random_denoiser):
    model, _ = random_denoiser
    rng = np.random.default_rng(0)
    img = rng.integers(200, 3000, (1, 157, 203)).astype(np.uint16)
    p = NoiseParams(25, 0.15)
    whole = denoise_array(img, p, 12, model=model, tile=1024)
    tiled = denoise_array(img, p, 12, model=model, tile=48)
    assert whole.shape == img.shape
    assert np.max(np.abs(whole - tiled)) < 1e-2  # DN: float rounding only, no seams
    assert np.max(np.abs(whole - img)) > 1  # the model did something


def test_nodata_pixels_are_kept(random_denoiser):
    model, _ = random_denoiser
    img = np.full((96, 96), 1000, np.uint16)
    img[:, :30] = 0
    out = denoise_array(img, NoiseParams(25, 0.15), 12, model=model, nodata=0)
    assert np.all(out[:, :30] == 0) and np.all(out[:, 30:] > 500)


def test_weights_round_trip_and_bad_files(random_denoiser, tmp_path):
    model, path = random_denoiser
    loaded, meta = load_denoiser(path)
    assert meta == {"note": "test"}
    x = torch.rand(1, 1, 32, 32) * 0.3
    s = torch.full_like(x, 0.003)
    with torch.no_grad():
        assert torch.allclose(model(x, s), loaded(x, s), atol=2e-3)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError):
        load_denoiser(bad)
    with pytest.raises(WeightsError):
        load_denoiser(tmp_path / "missing.safetensors")


def test_denoise_cli_keeps_georeferencing(random_denoiser, tmp_path):
    _, path = random_denoiser
    out = tmp_path / "den.tif"
    cmd = [sys.executable, "-m", "satcodec.cli", "denoise", str(SAMPLE), "-o", str(out)]
    r = subprocess.run(
        [*cmd, "--sensor", "pleiades-pan", "--weights", str(path), "--tile", "128"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "sensor:pleiades-pan" in r.stdout
    with rasterio.open(SAMPLE) as a, rasterio.open(out) as b:
        assert a.crs == b.crs and a.transform == b.transform and a.dtypes == b.dtypes
        assert a.shape == b.shape
    r = subprocess.run(
        [*cmd, "--noise", "oops", "--weights", str(path)], capture_output=True, text=True
    )
    assert r.returncode == 2 and "satcodec: error:" in r.stderr


@pytest.mark.skipif(not DEFAULT_WEIGHTS.exists(), reason="no shipped denoiser weights")
def test_shipped_denoiser_removes_sensor_noise_on_the_sample():
    with open_raster(SAMPLE) as r:
        clean = r.read()[0, :256, :256]
    p = sensor_noise("pleiades-pan")
    noisy = simulate_noise(clean, p, 12, seed=3)
    den = denoise_array(noisy, p, 12)
    assert psnr(clean, den, 12) > psnr(clean, noisy, 12) + 1.0  # measured +1.6 dB


def test_decoded_batches_are_the_codec_round_trip_of_the_noisy_ones(tiny_model):
    """The codec-aware denoiser trains on noisy patches after a real codec round trip."""
    from satcodec.codec.data import PatchSampler, band_samples, load_scenes
    from satcodec.codec.registry import load_model
    from satcodec.ground_segment.training import decoded_batch, noisy_batch, random_noise

    scenes = load_scenes(SAMPLE.parent)
    sampler = PatchSampler([b for s in scenes for b in band_samples(s, remove_mean=False)], 96)
    codec = load_model(tiny_model)[0].eval()
    b1 = decoded_batch(sampler, 3, 2, 0, [codec], crop=32)
    b2 = decoded_batch(sampler, 3, 2, 0, [codec], crop=32)
    for k in ("clean", "noisy", "sigma"):
        assert b1[k].shape == (2, 1, 32, 32)
        torch.testing.assert_close(b1[k], b2[k], rtol=0, atol=0)  # a function of the step
    raw = noisy_batch(sampler, 3, 2, 0)
    torch.testing.assert_close(b1["clean"], raw["clean"][:, :, 32:64, 32:64])
    assert not torch.equal(b1["noisy"], raw["noisy"][:, :, 32:64, 32:64])  # it went through
    a, b = random_noise(np.random.default_rng([0, 3, 0, 991]))
    torch.testing.assert_close(b1["sigma"][0], torch.sqrt(a + b * b1["noisy"][0]))


def test_codec_aware_denoiser_trains_from_the_shipped_one(tmp_path, random_denoiser, tiny_model):
    import shutil

    from satcodec.ground_segment.training import train_denoiser

    data = tmp_path / "scenes"
    data.mkdir()
    shutil.copy(SAMPLE, data / "train.tif")
    meta = train_denoiser(
        data, 0, tmp_path / "run0", init=random_denoiser[1], codec_models=[str(tiny_model)],
        patch=32, batch=2, val_every=0, progress=False, lr=0.0,
    )  # fmt: skip
    start, _ = load_denoiser(tmp_path / "run0" / "denoiser.safetensors")
    for k, v in random_denoiser[0].state_dict().items():  # zero steps: the init, unchanged
        torch.testing.assert_close(start.state_dict()[k], v, rtol=0, atol=1e-3)
    assert meta["codec_models"] == [str(tiny_model)] and meta["layers"] == 4
    train_denoiser(
        data, 2, tmp_path / "run2", init=random_denoiser[1], codec_models=[str(tiny_model)],
        patch=32, batch=2, val_every=0, progress=False,
    )  # fmt: skip
    moved, _ = load_denoiser(tmp_path / "run2" / "denoiser.safetensors")
    assert any(not torch.allclose(moved.state_dict()[k], v) for k, v in start.state_dict().items())
