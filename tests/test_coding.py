"""The coding part (satcodec.coding): streams pinned byte for byte, and the entropy-model contract.

The pinned hashes were recorded with the code before the coder moved out of
``satcodec/codec/pipeline.py`` (issue 19): the move is a reorganisation, every stream and every
decode stays identical. They depend on PyTorch's float results for the analysis and synthesis
(same machine class and library versions as the rest of the suite's golden values).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import satcodec
from satcodec.bitstream import StreamReader
from satcodec.codec.models import laplace_bits
from satcodec.coding import (
    DEFAULT_ENTROPY_MODEL,
    ChannelContextLaplace,
    EntropyModel,
    PerChannelLaplace,
    TorchTransform,
    Transform,
    entropy_model_for,
)

SAMPLE = Path(satcodec.__file__).resolve().parent / "data" / "pleiades_ventoux.tif"

# (encode options) -> (sha256 of the stream, sha256 of the decoded uint16 (1, 500, 500) array).
# normalisation="bit-depth" is the stream of every revision before flag 0x0004; the default
# (texture) gives this scene 11-bit peaks, a flag-0x0004 stream. Re-pinned when the default
# model's decoder was re-tuned (decoder only): the streams differ from the previous pins in
# the 16-byte model id and the header CRC alone, the decoded pixels in the new synthesis.
# deadzone=0 is plain rounding, the quantiser of every revision before the default deadzone;
# "default" pins today's defaults (texture peaks, the deadzone of each band's step)
PINNED = {
    "context-q60-t256": (
        dict(quality=60, tile=256, normalisation="bit-depth", deadzone=0),
        "cd11d3f9132d6ac7d8b3bcc86447c47f12151a88f77469dcd1a69fb9feb4a0e4",
        "763e4ed68d319d8560161727c2a3732ba36b5eab046c7337b1a34e860cdcdf9a",
    ),
    "per-channel-q40-t512": (
        dict(quality=40, tile=512, channel_context=False, normalisation="bit-depth", deadzone=0),
        "24c474c95c9778951ff0899afe931b931856420d3cf45d2ff0376c0d828e8c0a",
        "16dc662a27db27a619bfe170a385ca79ed76000a9c732d452178f73553afe8ea",
    ),
    "texture-q50-t512": (
        dict(quality=50, tile=512, deadzone=0),
        "a981c465981da9874a23fa729634a0f88c22526379b329b343aadb046eca6f25",
        "3dddb44e2933d2da4e55f2ecf8855369983d3aa00986544f34f98a423f14dcd6",
    ),
    "default-q50-t512": (
        dict(quality=50, tile=512),
        "aae40f504f75598a0e60a0c6d79f7cbfac5ae6b546f27cfbfb4164ec4cc075ee",
        "94b1383cb329932125ae29faa113a339c7c249547afbf86868ac0658bbca14d8",
    ),
}


@pytest.fixture(scope="module")
def sample() -> np.ndarray:
    rasterio = pytest.importorskip("rasterio")
    with rasterio.open(SAMPLE) as ds:
        return ds.read()


@pytest.mark.parametrize("case", sorted(PINNED))
def test_streams_and_decodes_are_pinned(sample, case) -> None:
    options, stream_sha, array_sha = PINNED[case]
    data = satcodec.encode(sample, **options)
    assert hashlib.sha256(data).hexdigest() == stream_sha
    assert StreamReader(data).header.channel_context is options.get("channel_context", True)
    out, _ = satcodec.decode(data)
    assert out.dtype == np.uint16 and out.shape == (1, 500, 500)
    assert hashlib.sha256(out.tobytes()).hexdigest() == array_sha


def _symbols(seed: int, shape=(12, 9, 11)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scales = np.geomspace(0.05, 40.0, shape[0])[:, None, None]
    sym = np.rint(rng.laplace(0.0, scales, size=shape)).astype(np.int32)
    sym[3] = 0  # an all-zero channel
    sym[5, 0, 0] = 70_000  # an escape
    return sym


@pytest.mark.parametrize("model", [PerChannelLaplace(), ChannelContextLaplace()], ids=repr)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_entropy_model_contract(model: EntropyModel, seed: int) -> None:
    sym = _symbols(seed)
    indices = model.fit(sym)
    assert indices.dtype == np.uint8 and indices.shape == (sym.shape[0],)
    payload = model.encode(sym, indices)
    assert isinstance(payload, bytes)
    estimate = model.estimate_bits(sym, indices)
    assert abs(estimate - 8 * len(payload)) <= 64
    back = model.decode(payload, indices, sym.shape)
    assert back.dtype == np.int32 and np.array_equal(back, sym)


def test_entropy_model_flags_and_selection() -> None:
    per, ctx = PerChannelLaplace(), ChannelContextLaplace()
    assert per.flag is False and per.channel_context is False
    assert ctx.flag is True and ctx.channel_context is True
    assert DEFAULT_ENTROPY_MODEL == ctx
    assert entropy_model_for(True) == ctx and entropy_model_for(False) == per
    assert entropy_model_for(ctx) is ctx
    assert ctx.upper_bound == per and per.upper_bound is None
    assert (per.name, ctx.name) == ("per-channel", "channel-context")


def test_entropy_model_for_a_header(sample) -> None:
    for flag in (True, False):
        data = satcodec.encode(sample[:, :128, :128], quality=50, channel_context=flag)
        assert entropy_model_for(StreamReader(data).header).flag is flag


def test_training_bits_is_the_codec_training_rate() -> None:
    y = torch.linspace(-20, 20, 81)
    s = torch.full_like(y, 2.5)
    for model in (PerChannelLaplace(), ChannelContextLaplace()):
        assert torch.equal(model.training_bits(y, s), laplace_bits(y, s))


def test_context_estimate_never_above_per_channel() -> None:
    """Rate control brackets the context model's step with the per-channel estimate."""
    per, ctx = PerChannelLaplace(), ChannelContextLaplace()
    for seed in range(3):
        sym = _symbols(seed)
        assert ctx.estimate_bits(sym, ctx.fit(sym)) <= per.estimate_bits(sym, per.fit(sym)) + 64


def test_torch_transform_is_a_transform() -> None:
    from satcodec.codec.models import ModelConfig, ReducedVAE

    net = ReducedVAE(ModelConfig(hidden=8, latent=8)).eval()
    analysis, synthesis = TorchTransform(net, "analysis"), TorchTransform(net, "synthesis")
    assert isinstance(analysis, Transform) and isinstance(synthesis, Transform)
    x = np.zeros((1, 1, 64, 64), np.float32)
    y = analysis(x)
    assert y.dtype == np.float32 and y.shape == (1, 8, 4, 4)
    assert synthesis(y).shape == (1, 1, 64, 64)
    with pytest.raises(satcodec.errors.ConfigError):
        TorchTransform(net, "refinement")


def test_coding_does_not_import_export() -> None:
    import ast

    root = Path(satcodec.__file__).resolve().parent / "coding"
    for f in root.glob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("satcodec.export"), f
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("satcodec.export") for a in node.names), f


@pytest.mark.parametrize("stages, halo", [(3, 16), (4, 32)])
def test_the_encode_halo_is_the_analysis_radius_in_whole_latents(stages, halo) -> None:
    from satcodec.codec.config import ModelConfig, analysis_radius, encode_halo

    config = ModelConfig(stages=stages)
    assert encode_halo(config) == halo
    assert analysis_radius(config) == 2 * (2**stages - 1) <= halo
    assert halo % config.downsampling == 0


def test_a_wider_encode_halo_gives_the_same_stream(sample, monkeypatch) -> None:
    """The halo covers the analysis's receptive field: the default stride-8 model's 16 px give
    the bytes that twice as much context gives (the former fixed 32 px), with less analysis."""
    import satcodec.coding.encoder as encoder_module
    from satcodec.codec.config import encode_halo

    narrow = satcodec.encode(sample, quality=50, tile=128)
    windows = []
    wide_halo = lambda config: 2 * encode_halo(config)  # noqa: E731
    real_windows = encoder_module.Encoder.tile_windows

    def recording(self):
        out = real_windows(self)
        windows.append((encode_halo(self.model.config), out))
        return out

    monkeypatch.setattr(encoder_module.Encoder, "tile_windows", recording)
    monkeypatch.setattr(encoder_module, "encode_halo", wide_halo)
    wide = satcodec.encode(sample, quality=50, tile=128)
    assert wide == narrow
    halo, ws = windows[0]
    inner = [w for w in ws if 0 < w.row < 3 and 0 < w.col < 3]
    assert inner and all(w.height == w.width == 128 + 4 * halo for w in inner)


def test_the_default_deadzone_grows_with_the_step() -> None:
    from satcodec.coding import step_deadzone

    assert step_deadzone(0.7) == 0.0  # plain rounding at 0.7 of the training step
    assert step_deadzone(1.0) == pytest.approx(0.06 * math.log2(1 / 0.7))
    assert step_deadzone(1.4) == pytest.approx(0.06) == -step_deadzone(0.35)
    assert step_deadzone(2.8) == step_deadzone(100.0) == 0.12
    assert step_deadzone(0.1) == step_deadzone(0.01) == -0.06  # finer: magnitudes round up
    steps = np.geomspace(0.1, 10, 50)
    assert (np.diff([step_deadzone(s) for s in steps]) >= 0).all()


def test_rate_control_reaches_the_target_on_speckle():
    """Single-look SAR: the rate falls ~2x faster per octave of step than on optical scenes,
    so a fixed-slope correction on the real size oscillated around 0.5 bpp and gave up
    (closest 0.518); the secant on the real sizes lands within the promised ±3 %."""
    from satcodec.evaluation import load_image
    from satcodec.metrics import bits_per_pixel

    arr, bits, _ = load_image(
        Path(__file__).parent / "data" / "sentinel1_slc_amplitude_labrador.tif"
    )
    band = arr[:1]
    stream = satcodec.encode(band, bit_depth=bits, bpp=0.5, model="reduced-s8-l2.5e-4", threads=1)
    assert abs(bits_per_pixel(len(stream), band.size) / 0.5 - 1) <= 0.03
    capped = satcodec.encode(
        band, bit_depth=bits, max_bpp=0.5, model="reduced-s8-l2.5e-4", threads=1
    )
    assert 0.5 * 0.95 <= bits_per_pixel(len(capped), band.size) <= 0.5
