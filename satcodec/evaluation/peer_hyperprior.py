"""The full-complexity peer: the scale hyperprior of Ballé et al. (ICLR 2018), our own code.

"Variational image compression with a scale hyperprior": the architecture of CompressAI's
``bmshj2018-hyperprior`` (its ``ScaleHyperprior``), re-implemented here so the bench needs no
extra dependency:

* analysis g_a: four 5x5 stride-2 convolutions (N, N, N, M channels) with GDN between them;
* synthesis g_s: four 5x5 stride-2 transposed convolutions with inverse GDN between them;
* hyper-analysis h_a: |y| → 3x3 conv (N), ReLU, 5x5/2 conv (N), ReLU, 5x5/2 conv (N);
* hyper-synthesis h_s: 5x5/2 transposed conv (N), ReLU, 5x5/2 transposed conv (N), ReLU,
  3x3 conv (M), ReLU → the scales σ of y;
* z: a learned factorized density per channel (the "entropy bottleneck", Ballé 2018,
  appendix 6.1, filters (3, 3, 3));
* y: a zero-mean Gaussian conditional N(0, σ²) convolved with U(−½, ½), σ ≥ 0.11.

Full (square + square-root) GDN, as in the paper. The input is normalised exactly like the
reduced model's (``(x − mean) / peak`` times the same fixed input gain), so both train on the
same data by the same trainer and the same loss (:func:`satcodec.codec.training.rd_loss`).

**Rate is the model likelihood** (``−log2 p`` of the rounded latents, ideal entropy coder):
this peer produces no bitstream. That flatters it a little against real file sizes (an ANS
or range coder with quantised tables lands within about 0.1–2% of the ideal); comparisons in
``bench/`` therefore also give the reduced model's own likelihood rate.

It lives on the evaluation side: the product codec (:mod:`satcodec.codec`) never imports it;
``bench/rd_eval.py`` and ``bench/train_gpu.py`` train and compare it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from satcodec.codec.layers import GDN
from satcodec.codec.models import Gain, count_macs

PEER_FORMAT = "satcodec-peer-hyperprior-v1"
SCALE_BOUND = 0.11
LIKELIHOOD_BOUND = 1e-9
PEER_DOWNSAMPLING = 64  # 16 for y, 4 more for z
PEER_LR = 1e-4  # see train_peer


@dataclass(frozen=True)
class HyperpriorConfig:
    bands: int = 1
    hidden: int = 128  # N
    latent: int = 192  # M
    input_gain: float = 16.0  # the reduced model's, so both see latents on the same scale

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> HyperpriorConfig:
        return cls(
            bands=int(d["bands"]),
            hidden=int(d["hidden"]),
            latent=int(d["latent"]),
            input_gain=float(d["input_gain"]),
        )


def conv(in_ch: int, out_ch: int, kernel: int = 5, stride: int = 2) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2)


def deconv(in_ch: int, out_ch: int, kernel: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(
        in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, output_padding=stride - 1
    )


class EntropyBottleneck(nn.Module):
    """Learned non-parametric factorized density of Ballé et al. (2018), one per channel.

    The cumulative c(x) is a small monotone network per channel (matrices kept positive by
    softplus, tanh gates); the probability of a unit bin is c(x+½) − c(x−½), evaluated with the
    sign trick so that it stays accurate in both tails.
    """

    def __init__(
        self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0
    ) -> None:
        super().__init__()
        self.channels = channels
        dims = (1, *filters, 1)
        scale = init_scale ** (1 / (len(filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(filters) + 1):
            init = math.log(math.expm1(1 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(
                nn.Parameter(torch.empty(channels, dims[i + 1], 1).uniform_(-0.5, 0.5))
            )
            if i < len(filters):
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))

    def _logits_cumulative(self, x: torch.Tensor) -> torch.Tensor:
        """x: (C, 1, n) → logits of the cumulative, (C, 1, n)."""
        for i, (m, b) in enumerate(zip(self.matrices, self.biases, strict=True)):
            x = torch.matmul(F.softplus(m), x) + b
            if i < len(self.factors):
                x = x + torch.tanh(self.factors[i]) * torch.tanh(x)
        return x

    def likelihood(self, z: torch.Tensor) -> torch.Tensor:
        """P(bin of width 1 centred on z), same shape as z (B, C, H, W)."""
        b, c, h, w = z.shape
        v = z.permute(1, 0, 2, 3).reshape(c, 1, -1)
        lower = self._logits_cumulative(v - 0.5)
        upper = self._logits_cumulative(v + 0.5)
        sign = -torch.sign(lower + upper).detach()
        p = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        p = p.reshape(c, b, h, w).permute(1, 0, 2, 3)
        return lower_bound(p, LIKELIHOOD_BOUND)


class _LowerBound(torch.autograd.Function):
    """max(x, bound) whose gradient still flows where it would raise x (CompressAI's trick).

    A plain clamp has zero gradient below the bound, so a latent whose likelihood hit the
    floor (or a scale under 0.11) would never be pulled back.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, bound: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.bound = bound
        return torch.clamp(x, min=bound)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        pass_through = (x >= ctx.bound) | (grad < 0)
        return grad * pass_through.to(grad.dtype), None


def lower_bound(x: torch.Tensor, bound: float) -> torch.Tensor:
    return _LowerBound.apply(x, bound)


def gaussian_likelihood(y: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """P(unit bin centred on y) under N(0, σ²), σ bounded below by 0.11."""
    s = lower_bound(scales, SCALE_BOUND)
    v = torch.abs(y)
    # Φ((½ − |y|)/σ) − Φ((−½ − |y|)/σ), in the lower tail where it is accurate
    upper = 0.5 * torch.erfc(-(0.5 - v) / s / math.sqrt(2))
    lower = 0.5 * torch.erfc(-(-0.5 - v) / s / math.sqrt(2))
    return lower_bound(upper - lower, LIKELIHOOD_BOUND)


class ScaleHyperprior(nn.Module):
    """Ballé et al. (2018) scale hyperprior; ``forward`` matches :class:`ReducedVAE`'s outputs."""

    def __init__(self, config: HyperpriorConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or HyperpriorConfig()
        n, m, b = config.hidden, config.latent, config.bands
        self.analysis_transform = nn.Sequential(
            Gain(config.input_gain),
            conv(b, n),
            GDN(n, simplified=False),
            conv(n, n),
            GDN(n, simplified=False),
            conv(n, n),
            GDN(n, simplified=False),
            conv(n, m),
        )
        self.synthesis_transform = nn.Sequential(
            deconv(m, n),
            GDN(n, inverse=True, simplified=False),
            deconv(n, n),
            GDN(n, inverse=True, simplified=False),
            deconv(n, n),
            GDN(n, inverse=True, simplified=False),
            deconv(n, b),
            Gain(1.0 / config.input_gain),
        )
        self.hyper_analysis = nn.Sequential(
            conv(m, n, 3, 1), nn.ReLU(), conv(n, n), nn.ReLU(), conv(n, n)
        )
        self.hyper_synthesis = nn.Sequential(
            deconv(n, n), nn.ReLU(), deconv(n, n), nn.ReLU(), conv(n, m, 3, 1), nn.ReLU()
        )
        self.entropy_bottleneck = EntropyBottleneck(n)

    def forward(self, x: torch.Tensor, step: float = 1.0) -> dict[str, torch.Tensor]:
        """Training pass (uniform noise) or, in eval mode, rounding with quantisation ``step``.

        ``x``: (B, bands, H, W) normalised, H and W multiples of 64. Returns ``x_hat``,
        ``bits`` (per image: y + z), ``bits_y``, ``bits_z`` and the ``scales`` of y.
        """
        y = self.analysis_transform(x)
        z = self.hyper_analysis(torch.abs(y))
        if self.training:
            z_hat = z + torch.empty_like(z).uniform_(-0.5, 0.5)
        else:
            z_hat = torch.round(z)
        bits_z = -torch.log2(self.entropy_bottleneck.likelihood(z_hat)).sum(dim=(1, 2, 3))
        scales = self.hyper_synthesis(z_hat)
        if self.training:
            y_hat = y + torch.empty_like(y).uniform_(-0.5, 0.5)
            lik = gaussian_likelihood(y_hat, scales)
        else:
            # step-scaled quantisation (the same knob the reduced pipeline turns for rate)
            q = torch.round(y / step)
            lik = gaussian_likelihood(q, scales / step)
            y_hat = q * step
        bits_y = -torch.log2(lik).sum(dim=(1, 2, 3))
        x_hat = self.synthesis_transform(y_hat)
        return {
            "x_hat": x_hat,
            "bits": bits_y + bits_z,
            "bits_y": bits_y,
            "bits_z": bits_z,
            "scales": scales,
        }


# --------------------------------------------------------------------------------------------
# Complexity
# --------------------------------------------------------------------------------------------


def _params(*modules: nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def peer_complexity(model: ScaleHyperprior, size: int = 256) -> dict[str, float]:
    """MAC per pixel and parameters of what runs on board (encoder) and on the ground (decoder).

    The encoder needs g_a, h_a and h_s (y is coded with the scales h_s predicts) and the
    z density; the decoder needs h_s, g_s and the z density.
    """
    c = model.config
    pixels = size * size
    g_a = count_macs(model.analysis_transform, (1, c.bands, size, size))
    ly = size // 16
    h_a = count_macs(model.hyper_analysis, (1, c.latent, ly, ly))
    h_s = count_macs(model.hyper_synthesis, (1, c.hidden, ly // 4, ly // 4))
    g_s = count_macs(model.synthesis_transform, (1, c.latent, ly, ly))
    eb = _params(model.entropy_bottleneck)
    return {
        "encoder_mac_per_pixel": (g_a + h_a + h_s) / pixels,
        "decoder_mac_per_pixel": (h_s + g_s) / pixels,
        "analysis_mac_per_pixel": g_a / pixels,
        "hyperprior_mac_per_pixel": (h_a + h_s) / pixels,
        "encoder_params": _params(
            model.analysis_transform, model.hyper_analysis, model.hyper_synthesis
        )
        + eb,
        "decoder_params": _params(model.hyper_synthesis, model.synthesis_transform) + eb,
        "total_params": _params(model),
    }


# --------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------


def save_peer(path: str | Path, model: ScaleHyperprior, meta: dict[str, Any] | None = None) -> None:
    from safetensors.torch import save_file

    from satcodec.fileutil import atomic_path

    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    md = {
        "format": PEER_FORMAT,
        "config": json.dumps(model.config.to_dict()),
        "meta": json.dumps(meta or {}),
    }
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(state, str(tmp), metadata=md)


def load_peer(path: str | Path) -> tuple[ScaleHyperprior, dict[str, Any]]:
    """Load a peer saved by :func:`save_peer`, or a trainer checkpoint of one (config default)."""
    from safetensors import safe_open

    from satcodec.errors import WeightsError

    with safe_open(str(path), "pt") as fh:
        md = fh.metadata() or {}
    if md.get("format") == PEER_FORMAT:
        from safetensors.torch import load_file

        model = ScaleHyperprior(HyperpriorConfig.from_dict(json.loads(md["config"])))
        model.load_state_dict(load_file(str(path)))
        meta = json.loads(md.get("meta", "{}"))
    else:
        from satcodec.train import load_checkpoint

        model = ScaleHyperprior(_config_of_checkpoint(path))
        try:
            meta = {"checkpoint": load_checkpoint(path, model)}
        except WeightsError as exc:
            raise WeightsError(
                f"{path} is neither a peer model nor a peer checkpoint: {exc}"
            ) from exc
    model.eval()
    return model, meta


def _config_of_checkpoint(path: str | Path) -> HyperpriorConfig:
    cfg = Path(path).with_name("peer_config.json")
    return (
        HyperpriorConfig.from_dict(json.loads(cfg.read_text()))
        if cfg.exists()
        else HyperpriorConfig()
    )


# --------------------------------------------------------------------------------------------
# Training with the shared trainer, on the reduced model's data
# --------------------------------------------------------------------------------------------


def train_peer(
    data: str | Path,
    lmbda: float,
    steps: int,
    out: str | Path,
    *,
    config: HyperpriorConfig | None = None,
    optimizer: str = "adam",
    lr: float = PEER_LR,
    warmup: int = 0,
    batch: int = 8,
    patch: int = 128,
    seed: int = 0,
    resume: bool = False,
    schedule: str = "decay",
    val_every: int = 1000,
    ckpt_every: int = 250,
    progress: bool = True,
    device: str = "cpu",
    schedule_kwargs: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Train the peer like :func:`satcodec.codec.training.train_codec` trains the reduced model
    (same scenes, held-out split, sampler, seed, loss, optimizer, schedule, clipping, batch)
    and write ``out/peer.safetensors``. Patches of 128 px are multiples of 64, as z needs.

    One difference, the learning rate: 1e-4 (:data:`PEER_LR`, CompressAI's reference rate for
    this architecture) instead of the reduced model's 1e-3, at which the full GDN model
    diverged within the first ten steps here (training PSNR from 24 dB to −30 dB).
    """
    from satcodec.codec.training import fit_rd

    if patch % PEER_DOWNSAMPLING:
        raise ValueError(f"patch must be a multiple of {PEER_DOWNSAMPLING}, got {patch}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = config or HyperpriorConfig()
    (out / "peer_config.json").write_text(json.dumps(config.to_dict()))
    model = ScaleHyperprior(config)
    trainer, meta = fit_rd(
        model,
        data,
        lmbda,
        steps,
        out,
        optimizer=optimizer,
        lr=lr,
        batch=batch,
        patch=patch,
        seed=seed,
        resume=resume,
        schedule=schedule,
        schedule_kwargs={
            **(schedule_kwargs or {}),
            **({"warmup": float(warmup)} if warmup else {}),
        },
        val_every=val_every,
        ckpt_every=ckpt_every,
        progress=progress,
        device=device,
    )
    meta["warmup"] = warmup
    meta["complexity"] = peer_complexity(model)
    if trainer.rank == 0:
        save_peer(out / "peer.safetensors", model, meta)
    return meta


# --------------------------------------------------------------------------------------------
# Likelihood-rate RD of a whole image (for the peer comparison)
# --------------------------------------------------------------------------------------------


def rd_sweep(
    model: nn.Module, band: np.ndarray, bit_depth: int, steps: list[float]
) -> list[tuple[float, float, np.ndarray]]:
    """``[(step, bits per pixel, reconstruction)]`` of one (H, W) band at each quantisation step.

    Rate is the model's own likelihood (ideal entropy coder), not a file size:

    * :class:`ScaleHyperprior`: −log2 of the Gaussian-conditional likelihood of the rounded
      ``y / step`` with scales ``σ / step``, plus the factorized likelihood of the rounded z;
    * the reduced model (:class:`~satcodec.codec.models.ReducedVAE`): −log2 of the per-channel
      zero-mean discretised Laplacian with the ML scale ``mean|q|`` of the whole image, plus
      8 bits per channel for that scale (the bitstream sends an 8-bit index per channel and
      tile), i.e. the ideal of what its real coder does.

    The band is normalised like the training data (minus its rounded mean, over the peak) and
    edge-padded to a multiple of 64; rates are per *original* pixel, so padding costs the model.
    Reconstructions are rounded and clipped to ``[0, 2**bit_depth − 1]``.
    """
    from satcodec.codec.models import laplace_bits

    peak = float(2**bit_depth - 1)
    x = band.astype(np.float64)
    mean = float(np.round(x.mean()))
    h, w = band.shape
    ph, pw = (-h) % PEER_DOWNSAMPLING, (-w) % PEER_DOWNSAMPLING
    xp = np.pad((x - mean) / peak, ((0, ph), (0, pw)), mode="edge").astype(np.float32)
    xt = torch.from_numpy(xp)[None, None]
    out = []
    model.eval()
    with torch.no_grad():
        y = model.analysis_transform(xt)
        if isinstance(model, ScaleHyperprior):
            z_hat = torch.round(model.hyper_analysis(torch.abs(y)))
            bits_z = float(-torch.log2(model.entropy_bottleneck.likelihood(z_hat)).sum())
            scales = model.hyper_synthesis(z_hat)
        for step in steps:
            q = torch.round(y / step)
            if isinstance(model, ScaleHyperprior):
                bits = float(-torch.log2(gaussian_likelihood(q, scales / step)).sum()) + bits_z
            else:
                s = torch.clamp(q.abs().mean(dim=(2, 3)), min=0.05)
                bits = float(laplace_bits(q, s[:, :, None, None]).sum()) + 8 * q.shape[1]
            x_hat = model.synthesis_transform(q * step)[0, 0, :h, :w].double().numpy()
            rec = np.clip(np.rint(x_hat * peak + mean), 0, peak)
            out.append((float(step), bits / (h * w), rec))
    return out


__all__ = [
    "EntropyBottleneck",
    "HyperpriorConfig",
    "ScaleHyperprior",
    "count_macs",
    "gaussian_likelihood",
    "rd_sweep",
    "load_peer",
    "lower_bound",
    "peer_complexity",
    "save_peer",
    "train_peer",
]
