"""`satcodec tune-decoder`: the decoder learns at the steps rate control uses; the board side,
and so every bitstream, stays the init's."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import torch

import satcodec
from satcodec.bitstream import StreamReader
from satcodec.codec.registry import load_model, save_model
from tests.conftest import SAMPLE, tiny_stride8_model


def test_tune_decoder_keeps_the_board_side_and_every_bitstream(tmp_path, sample_array):
    net = tiny_stride8_model(11)
    init = tmp_path / "rung.safetensors"
    history = [{"model": "rung", "lmbda": 0.001, "steps": 5, "batch": "8x128²", "lr": 1e-3,
                "device": "cpu"}]  # fmt: skip
    save_model(init, net, {"lmbda": 0.001, "history": history})
    data = tmp_path / "scenes"
    data.mkdir()
    shutil.copy(SAMPLE, data / "train.tif")
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "satcodec", "tune-decoder", "--init", str(init), "--data"]
    cmd += [str(data), "--steps", "2", "--batch", "2", "--patch", "64", "--out", str(out)]
    subprocess.run(cmd, check=True, capture_output=True)
    before, _ = load_model(init)
    after, info = load_model(out / "model.safetensors")
    for k, v in before.analysis_transform.state_dict().items():
        torch.testing.assert_close(after.analysis_transform.state_dict()[k], v, rtol=0, atol=0)
    assert any(
        not torch.equal(after.synthesis_transform.state_dict()[k], v)
        for k, v in before.synthesis_transform.state_dict().items()
    )
    meta = json.loads((out / "model.json").read_text())
    assert meta["decoder_only"] and meta["quant_steps"].startswith("2^U(-2.0, 1.0)")
    assert [h.get("kind") for h in meta["history"]] == [None, "decoder"]
    assert meta["command"].startswith("satcodec tune-decoder --init")
    assert meta["normalisation"] == "texture" and "--normalisation texture" in meta["command"]
    img = sample_array[:, :128, :192]
    a = StreamReader(satcodec.encode(img, quality=50, model=init, tile=64))
    b = StreamReader(satcodec.encode(img, quality=50, model=out / "model.safetensors", tile=64))
    assert b.header.model_id == info.model_id != a.header.model_id
    for r in range(a.header.tiles_y):
        for c in range(a.header.tiles_x):
            ta, tb = a.read_tile(0, r, c), b.read_tile(0, r, c)
            assert (ta.payload, ta.scale_indices) == (tb.payload, tb.scale_indices)


def test_tune_decoder_refuses_a_bad_step_range(tmp_path):
    cmd = [sys.executable, "-m", "satcodec", "tune-decoder", "--init", "x", "--data", "y"]
    cmd += ["--steps", "1", "--out", str(tmp_path / "o"), "--step-range=1"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 2 and "--step-range takes LO,HI" in r.stderr
    assert "Traceback" not in r.stderr


def test_training_patches_are_the_encoders_inputs(sample_array):
    """Patches are each band less its mean over the peak the encoder would give it: the bit
    depth's, or with ``normalisation="texture"`` the texture rule's (bitstream flag 0x0004),
    so a tuned decoder sees the latents it will decode."""
    from satcodec.codec.data import Scene, band_samples
    from satcodec.coding import Encoder, array_window_reader
    from satcodec.coding.normalisation import band_statistics, peak_bits_for_texture

    arr = np.ascontiguousarray(sample_array[:, :256, :256])
    scene = Scene("s.tif", arr, np.ones(arr.shape[1:], bool), 12)
    read = array_window_reader(arr)
    offsets, laps = band_statistics(read, 1, 256, 256, None)
    bits = peak_bits_for_texture(laps[0], 12)
    assert bits != 12  # the sample's texture moves its peak: the two options differ
    for normalisation, peak in (("bit-depth", 4095.0), ("texture", float(2**bits - 1))):
        (s,) = band_samples(scene, normalisation=normalisation)
        assert s.peak == peak
        np.testing.assert_allclose(s.pixels, (arr[0] - float(offsets[0])) / peak, atol=1e-6)
    # the encoder normalises the same band by the same peak
    enc = Encoder(
        tiny_stride8_model(11), None, read, height=256, width=256, bands=1, dtype="uint16",
        bit_depth=12, nodata=None,
    )  # fmt: skip
    assert enc.peaks == [float(2**bits - 1)] and enc.offsets == offsets
