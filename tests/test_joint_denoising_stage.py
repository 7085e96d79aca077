"""Joint models with a denoising stage for one instrument: they start as the sequential chain
(codec, then the ground denoiser), decode tile by tile with the halo the stage needs, train
end to end from that start, and malformed stage fields in a weights file are refused."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from satcodec.codec.models import complexity, with_denoising_stage
from satcodec.codec.registry import FORMAT, load_model, save_model
from satcodec.errors import WeightsError
from satcodec.ground_segment.denoiser import GroundDenoiser, load_denoiser
from satcodec.ground_segment.training import normalised_sensor_noise
from tests.conftest import (
    SAMPLE,
    check_tiled_decoding_needs_the_stage_halo,
    tiny_stride8_model,
)

NOISE = normalised_sensor_noise("pleiades-pan")


def _strong_denoiser(seed: int = 0) -> GroundDenoiser:
    """A small denoiser whose output really depends on a wide neighbourhood and on σ."""
    torch.manual_seed(seed)
    den = GroundDenoiser(8, 5)
    with torch.no_grad():
        den.body[-1].weight.normal_(0.0, 0.3)
    return den.eval()


def test_the_stage_starts_as_the_denoiser_applied_to_the_decoded_image():
    base = tiny_stride8_model()
    den = _strong_denoiser()
    joint = with_denoising_stage(base, den, *NOISE).eval()
    x = 0.3 + torch.randn(1, 1, 64, 96) * 0.05
    with torch.no_grad():
        mean = x.mean()
        decoded = base(x - mean)["x_hat"] + mean
        sigma = torch.sqrt(NOISE[0] + NOISE[1] * decoded.clamp_min(0))
        expected = den(decoded, sigma)
        got = joint.restore(joint(x - mean)["x_hat"] + mean)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
        assert (got - decoded).abs().max() > 1e-3  # the stage does something
        # the board side and the synthesis are the base model's
        torch.testing.assert_close(joint.analysis_transform(x), base.analysis_transform(x))
    a, b = complexity(base), complexity(joint)
    assert a["encoder_mac_per_pixel"] == b["encoder_mac_per_pixel"]
    # half-resolution 3x3 convs 8->8, 3 x 8->8, 8->4: (576 + 3*576 + 288) / 4 MAC per pixel
    assert b["decoder_mac_per_pixel"] - a["decoder_mac_per_pixel"] == (576 * 4 + 288) / 4
    assert joint.config.denoise_radius == 12
    with pytest.raises(ValueError, match="already has a denoising stage"):
        with_denoising_stage(joint, den, *NOISE)
    with pytest.raises(ValueError, match="sensor noise"):
        with_denoising_stage(base, den, 0.0, 0.0)


def test_tiled_decoding_with_a_denoising_stage_equals_the_whole_image(
    tmp_path, sample_array, monkeypatch
):
    net = with_denoising_stage(tiny_stride8_model(), _strong_denoiser(), *NOISE)
    path = tmp_path / "joint.safetensors"
    save_model(path, net, {"kind": "joint-denoising"})
    config = load_model(path)[0].config
    assert config.noise_a == pytest.approx(NOISE[0]) and config.denoise_layers == 5
    assert config.denoise_radius == 12  # -> 2 latents of halo at stride 8
    check_tiled_decoding_needs_the_stage_halo(path, sample_array[:, :200, :264], monkeypatch)


def test_joint_training_from_the_sequential_chain(tmp_path, monkeypatch):
    import satcodec.ground_segment.denoiser as denoiser_module
    from satcodec.cli import main

    init = tmp_path / "codec.safetensors"
    save_model(init, tiny_stride8_model(), {"lmbda": 0.004})
    den_path = tmp_path / "den.safetensors"
    from satcodec.ground_segment.denoiser import save_denoiser

    save_denoiser(den_path, _strong_denoiser())
    data = tmp_path / "scenes"
    data.mkdir()
    shutil.copy(SAMPLE, data / "train.tif")
    out = tmp_path / "run"
    args = ["ground-train", "joint", "--data", str(data), "--init", str(init)]
    args += ["--sensor", "pleiades-pan"]
    args += ["--denoise-from", str(den_path), "--steps", "2", "--batch", "2", "--patch", "64"]
    assert main([*args, "--out", str(out)]) == 0
    before, _ = load_model(init)
    after, _ = load_model(out / "model.safetensors")
    assert after.config.denoise_channels == 8 and after.config.denoise_layers == 5
    assert (after.config.noise_a, after.config.noise_b) == pytest.approx(NOISE)
    # end to end: the board side trains too (on-board denoising), and so does the stage
    moved = [
        not torch.equal(after.analysis_transform.state_dict()[k], v)
        for k, v in before.analysis_transform.state_dict().items()
    ]
    assert any(moved)
    start = load_denoiser(den_path)[0].body[-1].weight
    assert not torch.allclose(after.denoising_stage.body[-1].weight, start)
    meta = json.loads((out / "model.json").read_text())
    assert meta["denoising_stage"]["sensor"] == "pleiades-pan"
    assert meta["kind"] == "joint-denoising"
    # shipped with a card that says where it started (into a scratch package folder)
    monkeypatch.setattr(denoiser_module, "WEIGHTS_DIR", tmp_path / "pkg")
    assert main(["ground-train", "ship", "--kind", "joint", "--run", str(out), "--name", "j"]) == 0
    card = (tmp_path / "pkg" / "codec" / "j.md").read_text()
    assert "Started as the sequential chain: the codec codec, then the ground denoiser" in card
    assert "den.safetensors" in card and "pleiades-pan" in card
    assert load_model(tmp_path / "pkg" / "codec" / "j.safetensors")[1].model_id
    # the stage is for one instrument's noise: without --sensor it is refused
    no_sensor = [a for a in args if a not in ("--sensor", "pleiades-pan")]
    with pytest.raises(ValueError, match="one sensor"):
        main([*no_sensor, "--out", str(tmp_path / "x")])


def _rewrite_config(tmp_path, **changes) -> object:
    from safetensors.torch import load_file, save_file

    path = tmp_path / "m.safetensors"
    save_model(path, with_denoising_stage(tiny_stride8_model(), _strong_denoiser(), *NOISE), {})
    cfg = json.dumps({**load_model(path)[1].config.to_dict(), **changes})
    bad = tmp_path / "bad.safetensors"
    save_file(load_file(str(path)), str(bad), metadata={"format": FORMAT, "config": cfg})
    return bad


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"denoise_layers": 5000}, "implausible denoising stage"),
        ({"noise_a": float("nan")}, "non-finite sensor noise"),
        ({"noise_a": -1.0}, "sensor noise"),
        ({"denoise_layers": 6}, "does not match"),
        ({"bands": 2}, "single-band"),
    ],
)
def test_malformed_denoising_stage_in_a_weights_file_is_refused(tmp_path, changes, message):
    with pytest.raises(WeightsError, match=message):
        load_model(_rewrite_config(tmp_path, **changes))
