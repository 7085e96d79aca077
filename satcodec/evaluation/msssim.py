"""MS-SSIM (Wang, Simoncelli & Bovik 2003) on the sensor range, optionally masked."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

MSSSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang, Simoncelli, Bovik 2003


def _gauss_window(size: int = 11, sigma: float = 1.5) -> Any:
    import torch

    c = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(c**2) / (2 * sigma**2))
    return g / g.sum()


def _blur(x: Any, win: Any) -> Any:
    """Separable 'valid' Gaussian filtering of (1, 1, H, W)."""
    import torch.nn.functional as F

    k = len(win)
    x = F.conv2d(x, win.view(1, 1, k, 1))
    return F.conv2d(x, win.view(1, 1, 1, k))


def _half(x: Any, invalid: Any) -> tuple[Any, Any]:
    """2x2 average pooling (odd sizes: edge replicated); a block is invalid if any pixel is."""
    import torch.nn.functional as F

    ph, pw = x.shape[-2] % 2, x.shape[-1] % 2
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        if invalid is not None:
            invalid = F.pad(invalid, (0, pw, 0, ph), mode="replicate")
    x = F.avg_pool2d(x, 2)
    if invalid is not None:
        invalid = F.max_pool2d(invalid, 2)
    return x, invalid


def ms_ssim(
    reference: np.ndarray,
    test: np.ndarray,
    bit_depth: int,
    mask: np.ndarray | None = None,
    weights: Sequence[float] = MSSSIM_WEIGHTS,
) -> float:
    """MS-SSIM of two (H, W) images with dynamic range ``L = 2**bit_depth − 1``.

    Wang, Simoncelli & Bovik (2003): 5 scales, 11x11 Gaussian window (σ = 1.5), K1 = 0.01,
    K2 = 0.03, contrast–structure at scales 1–4 and the full SSIM at scale 5, 2x2 average
    pooling between scales, 'valid' filtering (no padding). As in ``pytorch_msssim`` (whose
    values this matches to ~1e-6 on even sizes), negative per-scale terms are clamped to 0.
    Odd sizes are edge-replicated before pooling (``pytorch_msssim`` zero-pads instead).

    ``mask`` (True = valid): a window counts only if every pixel under it is valid; pooled
    pixels are valid only if their four parents are. Computed in float64. Needs
    ``min(H, W) >= 11 * 2**4 = 176``; raises ValueError otherwise.
    """
    import torch
    import torch.nn.functional as F

    if reference.shape != test.shape or reference.ndim != 2:
        raise ValueError(
            f"expected two (H, W) images of one shape, got {reference.shape}, {test.shape}"
        )
    levels = len(weights)
    win = _gauss_window()
    need = len(win) * 2 ** (levels - 1)
    if min(reference.shape) < need:
        raise ValueError(f"MS-SSIM with {levels} scales needs images of at least {need}x{need}")
    peak = float(2**bit_depth - 1)
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    x = torch.from_numpy(np.asarray(reference, dtype=np.float64))[None, None]
    y = torch.from_numpy(np.asarray(test, dtype=np.float64))[None, None]
    invalid = None
    if mask is not None and not np.all(mask):
        invalid = torch.from_numpy(~np.asarray(mask, dtype=bool)).to(torch.float64)[None, None]
    values = []
    for level in range(levels):
        mu1, mu2 = _blur(x, win), _blur(y, win)
        s11 = _blur(x * x, win) - mu1 * mu1
        s22 = _blur(y * y, win) - mu2 * mu2
        s12 = _blur(x * y, win) - mu1 * mu2
        cs = (2 * s12 + c2) / (s11 + s22 + c2)
        term = cs if level < levels - 1 else cs * (2 * mu1 * mu2 + c1) / (mu1**2 + mu2**2 + c1)
        if invalid is not None:
            bad = F.max_pool2d(invalid, len(win), stride=1) > 0
            keep = term[~bad]
            if keep.numel() == 0:
                return math.nan
            values.append(float(keep.mean()))
        else:
            values.append(float(term.mean()))
        if level < levels - 1:
            x, invalid_next = _half(x, invalid)
            y, _ = _half(y, None)
            invalid = invalid_next
    out = 1.0
    for v, w in zip(values, weights, strict=True):
        out *= max(v, 0.0) ** w
    return float(out)


def msssim_db(value: float) -> float:
    """MS-SSIM on a dB scale, −10·log10(1 − MS-SSIM): spreads the values near 1."""
    if math.isnan(value):
        return math.nan
    return math.inf if value >= 1 else -10 * math.log10(1 - value)
