"""Deployment forms of the transforms: the same functions, with training-only structure removed.

* GDN's non-negative reparameterisation (``max(v, bound)^2 - pedestal``) is evaluated once and
  stored as a plain 1x1 convolution over ``|x|`` (simplified GDN) or ``x^2`` (GDN), so the
  exported graph holds ``Abs -> Conv -> Div`` instead of a chain of Clip/Pow/Sub on weights.
* The fixed input and output gains are folded into the first and last convolutions
  (``conv(g*x) = (g*W)*x + b``; PixelShuffle is a permutation, so scaling the last
  sub-pixel convolution's weights and bias scales its output).

These are exact up to float rounding (relative differences of ~1e-7).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from satcodec.codec.layers import GDN, SubPixelUp
from satcodec.codec.models import Gain, ReducedVAE


class BakedGDN(nn.Module):
    """GDN / IGDN with γ and β precomputed into a 1x1 convolution."""

    def __init__(self, gdn: GDN) -> None:
        super().__init__()
        c = gdn.channels
        self.inverse = gdn.inverse
        self.simplified = gdn.simplified
        self.norm = nn.Conv2d(c, c, 1)
        with torch.no_grad():
            self.norm.weight.copy_(gdn.gamma().view(c, c, 1, 1))
            self.norm.bias.copy_(gdn.beta())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.norm(torch.abs(x)) if self.simplified else torch.sqrt(self.norm(x * x))
        return x * n if self.inverse else x / n


def _last_conv(module: nn.Module) -> nn.Conv2d | None:
    if isinstance(module, SubPixelUp):
        return module.conv
    return module if isinstance(module, nn.Conv2d) else None


def bake(transform: nn.Sequential) -> nn.Sequential:
    """A deployment copy of an analysis or synthesis ``nn.Sequential`` (the original is untouched)."""
    layers = [BakedGDN(m) if isinstance(m, GDN) else copy.deepcopy(m) for m in transform]
    with torch.no_grad():
        if len(layers) > 1 and isinstance(layers[0], Gain) and isinstance(layers[1], nn.Conv2d):
            layers[1].weight.mul_(float(layers[0].gain))
            layers = layers[1:]
        if len(layers) > 1 and isinstance(layers[-1], Gain):
            conv = _last_conv(layers[-2])
            if conv is not None:
                g = float(layers[-1].gain)
                conv.weight.mul_(g)
                if conv.bias is not None:
                    conv.bias.mul_(g)
                layers = layers[:-1]
    out = nn.Sequential(*layers).eval()
    for p in out.parameters():
        p.requires_grad_(False)
    return out


def deploy_transforms(model: ReducedVAE) -> tuple[nn.Sequential, nn.Sequential]:
    """``(analysis, synthesis)`` deployment copies of ``model``'s transforms."""
    return bake(model.analysis_transform), bake(model.synthesis_transform)


class _Fp16(nn.Module):
    """Run ``inner`` in float16 with float32 inputs and outputs (casts inside the graph)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = copy.deepcopy(inner).half()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.half()).float()


def half_precision(transform: nn.Module) -> nn.Module:
    """An fp16 copy of ``transform`` that keeps float32 inputs and outputs."""
    return _Fp16(transform).eval()


def _conv_of(module: nn.Module) -> tuple[nn.Conv2d, int] | None:
    """The convolution of a layer and its output-channel grouping (4 for sub-pixel, 1 plain)."""
    if isinstance(module, SubPixelUp):
        return module.conv, 4
    if isinstance(module, nn.Conv2d):
        return module, 1
    return None


def _pow2(ratio: torch.Tensor, max_log2: int) -> torch.Tensor:
    """2^floor(log2 ratio) in [1, 2^max_log2]: lifts a channel into (R/2, R], never above R."""
    return torch.exp2(torch.clamp(torch.floor(torch.log2(ratio)), 0, max_log2))


def equalise(
    transform: nn.Sequential,
    calibration: torch.Tensor,
    percentile: float = 99.99,
    max_log2: int = 5,
) -> nn.Sequential:
    """Balance the per-channel ranges of the tensors an int8 graph quantises, exactly.

    int8 QDQ quantises every activation tensor with one scale; channels whose range is far below
    the tensor's largest get few of its 256 levels. Around each (simplified) GDN the channels can
    be rescaled without changing the function (cross-layer equalisation, Nagel et al. 2019,
    extended through GDN):

    * the conv before a GDN multiplies its output channel i by t_i; the GDN absorbs it with
      β_i → t_i β_i, γ_ij → t_i γ_ij / t_j (GDN) or β_i → β_i / t_i, γ_ij → γ_ij / (t_i t_j) (IGDN);
    * the GDN multiplies its output channel i by s_i (its row i of β, γ divided, or for IGDN
      multiplied, by s_i) and the next conv divides its input channel i by s_i.

    The factors are powers of two (exact in floating point: the rescaled module computes the
    same outputs bit for bit), chosen from ``percentile`` of |x| per channel on ``calibration``
    so each channel lands within a factor 2 of the largest one's range, at most 2^max_log2. Returns a new module; ``transform`` (a :func:`bake` result) is untouched.
    """
    out = copy.deepcopy(transform)
    layers = list(out)
    acts: list[torch.Tensor] = []
    with torch.no_grad():
        x = calibration
        for m in layers:
            x = m(x)
            a = x.abs().transpose(0, 1).reshape(x.shape[1], -1)
            q = torch.quantile(a[:, :: max(1, a.shape[1] // 200_000)], percentile / 100, dim=1)
            acts.append(torch.clamp(q, min=1e-12))
        for k in range(1, len(layers) - 1):
            gdn, prev, nxt = layers[k], _conv_of(layers[k - 1]), _conv_of(layers[k + 1])
            if not isinstance(gdn, BakedGDN) or prev is None or nxt is None:
                continue
            conv, group = prev
            r_in, r_out = acts[k - 1], acts[k]
            t = _pow2(r_in.max() / r_in, max_log2)
            s = _pow2(r_out.max() / r_out, max_log2)
            tt = t.repeat_interleave(group)
            conv.weight.mul_(tt.view(-1, 1, 1, 1))
            if conv.bias is not None:
                conv.bias.mul_(tt)
            w = gdn.norm.weight[:, :, 0, 0]
            if gdn.inverse:
                w.div_(t[:, None] * t[None, :])
                gdn.norm.bias.div_(t)
                w.mul_(s[:, None])
                gdn.norm.bias.mul_(s)
            else:
                w.mul_(t[:, None] / t[None, :])
                gdn.norm.bias.mul_(t)
                w.div_(s[:, None])
                gdn.norm.bias.div_(s)
            nconv, _ = nxt
            nconv.weight.div_(s.view(1, -1, 1, 1))
    return out
