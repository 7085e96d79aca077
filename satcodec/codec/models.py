"""The reduced-complexity variational auto-encoder of Alves de Oliveira et al. (2021).

A Ballé-style analysis transform of four 5x5 stride-2 convolutions (the board side) and a
mirrored sub-pixel synthesis transform (the ground side). Latents are modelled by one
zero-mean Laplacian per channel whose scale is estimated from the latents themselves and sent
as side information, so there is no hyperprior network.

Joint (denoising) models may add ground-side stages after the synthesis, decoder compute
only, the board side unchanged: a refinement stage (``ModelConfig.refine_channels``) inside
the synthesis, and a denoising stage for one instrument's noise (``denoise_channels``) that
runs on the reconstruction at its absolute level (:meth:`ReducedVAE.restore`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from satcodec.codec.config import (
    DECODE_HALO,
    DOWNSAMPLING,
    ENCODE_HALO,
    ModelConfig,
    decode_halo,
    encoder_macs,
)
from satcodec.codec.layers import (
    NoiseConditionedDenoiser,
    RefinementStage,
    SensorDenoisingStage,
    SubPixelUp,
    activation,
    conv_down,
)


def laplace_bits(y: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Code length in bits of values ``y`` under a unit-bin discretised zero-mean Laplacian.

    P(y) = F(y+½) − F(y−½). Evaluated on |y| (the density is symmetric), in the upper tail
    where F(v) = 1 − ½e^{−v/s}, rewritten so it stays accurate far in the tail.
    """
    a = torch.abs(y)
    upper = a + 0.5
    lower = torch.clamp(a - 0.5, min=0.0)
    # for a < 0.5 the bin straddles 0: P = 1 - e^{-(0.5)/s}·cosh-like; handle both with
    # P = ½(e^{−lower/s}·c − e^{−upper/s}) where c = 2 − e^{−(0.5−a)/s} when a < 0.5
    straddle = a < 0.5
    e_upper = torch.exp(-upper / scale)
    # the branch torch.where does not select is still differentiated: clamp its argument, or
    # exp(+large) overflows there and 0·inf turns the gradient into NaN (outliers, small scales)
    inner = torch.clamp(0.5 - a, min=0.0)
    e_lower = torch.where(straddle, 2.0 - torch.exp(-inner / scale), torch.exp(-lower / scale))
    p = 0.5 * (e_lower - e_upper)
    return -torch.log2(torch.clamp(p, min=1e-9))


class Gain(nn.Module):
    """Multiply by a constant (kept as a buffer so exports and weights files carry it)."""

    def __init__(self, gain: float) -> None:
        super().__init__()
        self.register_buffer("gain", torch.tensor(float(gain)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gain


class ReducedVAE(nn.Module):
    """Reduced-complexity learned image codec.

    ``forward`` is the training path (additive uniform noise as the quantisation proxy, rate
    from the per-channel Laplacian); the real coding path (tiling, quantisation, entropy coding,
    bitstream) lives in :mod:`satcodec.coding` and uses ``analysis_transform`` and
    ``synthesis_transform`` directly.
    """

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or ModelConfig()
        n, m, b, act = config.hidden, config.latent, config.bands, config.activation
        na = config.encoder_hidden
        if config.stages not in (3, 4):
            raise ValueError(f"stages must be 3 or 4 (stride 8 or 16), got {config.stages}")
        down: list[nn.Module] = [Gain(config.input_gain)]
        up: list[nn.Module] = []
        for i in range(config.stages):  # N channels between stages, M latents at the end
            last = i == config.stages - 1
            down.append(conv_down(b if i == 0 else na, m if last else na))
            up.append(SubPixelUp(m if i == 0 else n, b if last else n))
            if not last:
                down.append(activation(config.encoder_activation, na, inverse=False))
                up.append(activation(act, n, inverse=True))
        self.analysis_transform = nn.Sequential(*down)
        if config.denoise_channels and config.bands != 1:
            raise ValueError("a denoising stage needs a single-band model (one band per pass)")
        if config.refine_channels:
            # on the synthesis output before the final gain, where its std is ~1
            up.append(RefinementStage(config.refine_channels, config.refine_layers))
        self.synthesis_transform = nn.Sequential(*up, Gain(1.0 / config.input_gain))
        self.denoising_stage = (
            SensorDenoisingStage(
                config.denoise_channels, config.denoise_layers, config.noise_a, config.noise_b
            )
            if config.denoise_channels
            else None
        )

    def restore(self, x: torch.Tensor) -> torch.Tensor:
        """Ground-side restoration of a reconstruction ``x`` at its absolute level (x/peak, the
        band offset added): the denoising stage of a joint model, the identity otherwise.

        Why outside the synthesis: the instrument's noise depends on the signal level, which
        the mean-removed synthesis output does not carry.
        """
        return x if self.denoising_stage is None else self.denoising_stage(x)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training pass on normalised input ``x`` of shape (B, bands, H, W), H and W multiples of 16.

        Returns ``x_hat``, ``bits`` (per image, summed) and ``scales`` (B, M).
        """
        y = self.analysis_transform(x)
        y_tilde = y + torch.empty_like(y).uniform_(-0.5, 0.5) if self.training else torch.round(y)
        # one Laplacian scale per channel and image, estimated from the latents (ML estimate)
        scales = torch.clamp(y_tilde.abs().mean(dim=(2, 3)), min=0.05)
        bits = laplace_bits(y_tilde, scales[:, :, None, None]).sum(dim=(1, 2, 3))
        x_hat = self.synthesis_transform(y_tilde)
        return {"x_hat": x_hat, "bits": bits, "scales": scales}


def widen_latent(model: ReducedVAE, latent: int, seed: int = 0) -> ReducedVAE:
    """A copy of ``model`` with ``latent`` ≥ M latent channels that computes the same function.

    The new analysis channels get a fresh random initialisation and the synthesis reads them
    with zero weights, so fine-tuning starts from the trained model's rate–distortion point.
    Why: at stride 16, M = 192 channels are 0.75 latents per pixel; above ~2 bpp every
    channel is in use and the transform, not the entropy model, caps the PSNR.
    """
    old = model.config
    if latent < old.latent:
        raise ValueError(f"cannot narrow the latent from {old.latent} to {latent} channels")
    with torch.random.fork_rng():  # seeded fresh channels without touching the caller's RNG
        torch.manual_seed(seed)
        wide = ReducedVAE(ModelConfig(**{**old.to_dict(), "latent": latent}))
    state = wide.state_dict()
    m = old.latent
    last_conv = f"analysis_transform.{len(wide.analysis_transform) - 1}"
    first_up = "synthesis_transform.0.conv"
    for k, v in model.state_dict().items():
        if k.startswith(last_conv):
            state[k][:m] = v  # trained channels first, fresh ones after
        elif k == f"{first_up}.weight":
            state[k].zero_()
            state[k][:, :m] = v
        else:
            state[k] = v
    wide.load_state_dict(state)
    return wide


def with_refinement(model: ReducedVAE, channels: int, layers: int) -> ReducedVAE:
    """A copy of ``model`` (without a refinement stage) with a fresh one, the identity at first.

    The analysis, the latents and so the rate are unchanged; only the decoder grows.
    """
    if model.config.refine_channels:
        raise ValueError("the model already has a refinement stage")
    cfg = ModelConfig(
        **{**model.config.to_dict(), "refine_channels": channels, "refine_layers": layers}
    )
    new = ReducedVAE(cfg)
    state = new.state_dict()
    gain = len(model.synthesis_transform) - 1  # index of the final gain, moved one down
    for k, v in model.state_dict().items():
        if not k.startswith(f"synthesis_transform.{gain}."):
            state[k] = v
    new.load_state_dict(state)
    return new


def with_denoising_stage(
    model: ReducedVAE, denoiser: NoiseConditionedDenoiser, noise_a: float, noise_b: float
) -> ReducedVAE:
    """A copy of ``model`` with a denoising stage for the noise a + b·x (x/peak units) whose
    weights are ``denoiser``'s: at first the model decodes to what its decoder followed by
    that denoiser would give, the starting point of joint training from a sequential chain.
    """
    if model.config.denoise_channels:
        raise ValueError("the model already has a denoising stage")
    cfg = ModelConfig(
        **{
            **model.config.to_dict(),
            "denoise_channels": denoiser.config["channels"],
            "denoise_layers": denoiser.config["layers"],
            "noise_a": float(noise_a),
            "noise_b": float(noise_b),
        }
    )
    new = ReducedVAE(cfg)
    state = new.state_dict()
    state.update(model.state_dict())  # every tensor of the codec; the stage's are the denoiser's
    state.update({f"denoising_stage.{k}": v for k, v in denoiser.state_dict().items()})
    new.load_state_dict(state)
    return new


def count_macs(
    module: nn.Module, input_shape: tuple[int, ...], *more_inputs: tuple[int, ...]
) -> int:
    """Multiply-accumulates of the convolutions and GDNs of ``module`` for one input: k·k·C_in
    per output value of a convolution, k·k·C_out per *input* value of a transposed one, C per
    value for a GDN's 1x1 channel mixing. The one counter of the project (codec, peer)."""
    macs = 0

    def hook(mod: nn.Module, inp: tuple, out: torch.Tensor) -> None:
        nonlocal macs
        if isinstance(mod, nn.ConvTranspose2d):
            kh, kw = mod.kernel_size
            macs += inp[0].numel() * (mod.out_channels // mod.groups) * kh * kw
        elif isinstance(mod, nn.Conv2d):
            kh, kw = mod.kernel_size
            macs += out.numel() * (mod.in_channels // mod.groups) * kh * kw
        elif mod.__class__.__name__ == "GDN":
            macs += out.numel() * mod.channels  # its 1x1 channel mixing

    handles = [m.register_forward_hook(hook) for m in module.modules()]
    try:
        with torch.no_grad():
            module(*(torch.zeros(shape) for shape in (input_shape, *more_inputs)))
    finally:
        for h in handles:
            h.remove()
    return macs


def complexity(model: ReducedVAE, size: int = 256) -> dict[str, float]:
    """MAC per pixel and parameter counts of the encoder (analysis) and decoder (synthesis)."""
    b, m = model.config.bands, model.config.latent
    pixels = size * size
    enc_macs = count_macs(model.analysis_transform, (1, b, size, size))
    lat = size // model.config.downsampling
    dec_macs = count_macs(model.synthesis_transform, (1, m, lat, lat))
    dec_params = sum(p.numel() for p in model.synthesis_transform.parameters())
    if model.denoising_stage is not None:
        dec_macs += count_macs(model.denoising_stage, (1, b, size, size))
        dec_params += sum(p.numel() for p in model.denoising_stage.parameters())
    return {
        "encoder_mac_per_pixel": enc_macs / pixels,
        "decoder_mac_per_pixel": dec_macs / pixels,
        "encoder_params": sum(p.numel() for p in model.analysis_transform.parameters()),
        "decoder_params": dec_params,
    }


def bits_per_pixel(bits: torch.Tensor, pixels: int) -> torch.Tensor:
    return bits / pixels


__all__ = [
    "DECODE_HALO",
    "DOWNSAMPLING",
    "ENCODE_HALO",
    "ModelConfig",
    "ReducedVAE",
    "complexity",
    "count_macs",
    "decode_halo",
    "encoder_macs",
    "laplace_bits",
    "math",
]
