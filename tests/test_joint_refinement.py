"""Joint models with a ground-side refinement stage: identity at first, board side untouched,
tiled decoding with the wider halo it needs, decoder-only fine-tuning, malformed weights."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import satcodec
from satcodec.bitstream import StreamReader
from satcodec.codec.models import complexity, with_refinement
from satcodec.codec.registry import FORMAT, load_model, save_model
from satcodec.errors import WeightsError
from tests.conftest import SAMPLE, check_tiled_decoding_needs_the_stage_halo, tiny_stride8_model


def test_refinement_starts_as_the_identity_and_adds_only_decoder_compute():
    base = tiny_stride8_model()
    ref = with_refinement(base, 8, 4).eval()
    x = torch.randn(2, 1, 64, 96) * 0.05
    with torch.no_grad():
        torch.testing.assert_close(ref(x)["x_hat"], base(x)["x_hat"], rtol=0, atol=0)
        torch.testing.assert_close(
            ref.analysis_transform(x), base.analysis_transform(x), rtol=0, atol=0
        )
    a, b = complexity(base), complexity(ref)
    assert a["encoder_mac_per_pixel"] == b["encoder_mac_per_pixel"]
    # half-resolution 3x3 convs 4->8, 8->8, 8->8, 8->4: (288 + 2*576 + 288) / 4 MAC per pixel
    assert b["decoder_mac_per_pixel"] - a["decoder_mac_per_pixel"] == (288 + 2 * 576 + 288) / 4
    assert ref.config.refine_radius == 10
    with pytest.raises(ValueError, match="already has a refinement"):
        with_refinement(ref, 8, 4)


def test_tiled_decoding_of_a_refined_model_equals_the_whole_image(
    tmp_path, sample_array, monkeypatch
):
    """The decoder widens each tile's latent window by the stage's receptive radius; with
    the synthesis's halo alone the tiles' seams would show."""
    net = with_refinement(tiny_stride8_model(), 16, 6)
    with torch.no_grad():
        for m in net.synthesis_transform[-2].body:
            if isinstance(m, torch.nn.Conv2d):
                m.weight.normal_(0.0, 0.2)  # a stage with a wide, strong response
    path = tmp_path / "refined.safetensors"
    save_model(path, net, {})
    assert net.config.refine_radius == 14  # -> 2 latents of halo at stride 8
    check_tiled_decoding_needs_the_stage_halo(path, sample_array[:, :200, :264], monkeypatch)


def test_decoder_only_fine_tune_keeps_the_board_side_and_the_bitstream(
    tmp_path, sample_array, capsys
):
    from satcodec.cli import main

    init = tmp_path / "joint.safetensors"
    save_model(
        init, tiny_stride8_model(), {"lmbda": 0.004, "train_tail": {"bpp": 2.5, "psnr": 45.0}}
    )
    data = tmp_path / "scenes"
    data.mkdir()
    shutil.copy(SAMPLE, data / "train.tif")
    out = tmp_path / "run"
    args = ["ground-train", "joint", "--data", str(data), "--init", str(init), "--refine", "8x4"]
    args += ["--decoder-only", "--steps", "2", "--batch", "2", "--patch", "64", "--out", str(out)]
    assert main(args) == 0
    before, _ = load_model(init)
    after, info = load_model(out / "model.safetensors")
    assert after.config.refine_channels == 8 and after.config.refine_layers == 4
    for k, v in before.analysis_transform.state_dict().items():  # the board side, bit for bit
        torch.testing.assert_close(after.analysis_transform.state_dict()[k], v, rtol=0, atol=0)
    moved = after.synthesis_transform[-2].body[-1].weight
    assert moved.abs().max() > 0  # the stage trained away from the identity
    meta = json.loads((out / "model.json").read_text())
    assert meta["decoder_only"] and meta["refine"] == [8, 4] and meta["lmbda"] == 0.004
    assert meta["train_tail"]["bpp"] == 2.5  # the rate is the init's: the chains pick by it
    assert meta["command"].startswith("satcodec ground-train joint --data")
    assert "--decoder-only" in meta["command"]
    # same board side, same symbols: the streams differ only in the header's model id
    img = sample_array[:, :128, :192]
    # both at the bit depth's peak and plain rounding: a joint model never takes texture peaks
    # or a deadzone by default, a codec one (this init's card names no kind) does
    kw = dict(quality=50, tile=64, normalisation="bit-depth", deadzone=0)
    a = StreamReader(satcodec.encode(img, model=init, **kw))
    b = StreamReader(satcodec.encode(img, model=out / "model.safetensors", **kw))
    assert a.header.model_id != b.header.model_id == info.model_id
    for r in range(a.header.tiles_y):
        for c in range(a.header.tiles_x):
            ta, tb = a.read_tile(0, r, c), b.read_tile(0, r, c)
            assert (ta.payload, ta.scale_indices) == (tb.payload, tb.scale_indices)
    # bad options: one line, exit 2, before any training
    assert main([*args[:6], "--refine", "48", "--steps", "0", "--out", str(tmp_path / "x")]) == 2
    assert "CxL" in capsys.readouterr().err
    assert main([*args, "--step-range", "1"]) == 2
    assert "LO,HI" in capsys.readouterr().err


def test_decoder_steps_cover_the_requested_range_and_depend_only_on_the_step():
    from satcodec.ground_segment.training import decoder_steps

    a = decoder_steps(7, 64, 0, log2_range=(-2.0, 1.0))
    torch.testing.assert_close(a, decoder_steps(7, 64, 0, log2_range=(-2.0, 1.0)))
    assert 0.25 <= float(a.min()) < 0.4 and 1.5 < float(a.max()) <= 2.0
    assert not torch.equal(a, decoder_steps(8, 64, 0, log2_range=(-2.0, 1.0)))
    # data-parallel ranks take disjoint shares of the same global draw
    torch.testing.assert_close(decoder_steps(7, 64, 0, 1, 2, (-2.0, 1.0)), a[1::2])


def test_implausible_refinement_in_a_weights_file_is_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    path = tmp_path / "m.safetensors"
    save_model(path, with_refinement(tiny_stride8_model(), 8, 4), {})
    cfg = json.dumps({**load_model(path)[1].config.to_dict(), "refine_layers": 5000})
    bad = tmp_path / "bad.safetensors"
    save_file(load_file(str(path)), str(bad), metadata={"format": FORMAT, "config": cfg})
    with pytest.raises(WeightsError, match="refinement"):
        load_model(bad)


def test_sensor_specific_noise_for_joint_training():
    """A joint model flies with one instrument: it can train on that sensor's noise alone."""
    from satcodec.codec.data import PatchSampler, band_samples, load_scenes
    from satcodec.errors import ConfigError
    from satcodec.ground_segment.training import noisy_batch, normalised_sensor_noise

    a, b = normalised_sensor_noise("pleiades-pan")
    assert (a, b) == pytest.approx((25.0 / 4095**2, 0.15 / 4095))
    scenes = load_scenes(SAMPLE.parent)
    sampler = PatchSampler([s for sc in scenes for s in band_samples(sc, remove_mean=False)], 64)
    batch = noisy_batch(sampler, 0, 8, 0, noise=(a, b))
    clean, noisy = batch["clean"].numpy(), batch["noisy"].numpy()
    z = (noisy - clean) / np.sqrt(a + b * clean)  # standardised by the sensor's own model
    assert abs(float(z.std()) - 1.0) < 0.05 and abs(float(z.mean())) < 0.05
    torch.testing.assert_close(batch["sigma"], torch.sqrt(a + b * batch["noisy"]))
    default = noisy_batch(sampler, 0, 8, 0)  # a random level per patch: not the sensor's
    torch.testing.assert_close(default["clean"], batch["clean"])
    assert not torch.allclose(default["sigma"], batch["sigma"])
    with pytest.raises(ConfigError, match="unknown sensor"):
        normalised_sensor_noise("no-such-sensor")
