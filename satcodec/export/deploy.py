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
