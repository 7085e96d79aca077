"""The transform interface the coder is given: a callable ``float32 NCHW -> float32 NCHW``.

The coder never chooses a runtime: :class:`~satcodec.coding.encoder.Encoder` receives its
``analysis`` and :class:`~satcodec.coding.decoder.Decoder` its ``synthesis``. This module
provides the PyTorch one (the default); ``satcodec.export.runtime.make_transform`` builds the
onnxruntime (``OnnxRuntimeTransform``) and TensorRT (``TensorRTTransform``) ones, which
satisfy the same :class:`Transform` protocol.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from satcodec.errors import ConfigError

if TYPE_CHECKING:  # PyTorch loads with the first TorchTransform, not with the coder
    from satcodec.codec.models import ReducedVAE

SIDES = ("analysis", "synthesis")


@runtime_checkable
class Transform(Protocol):
    """One side of the codec: ``x`` float32 (N, C, H, W) -> float32 (N, C', H', W').

    analysis: (1, 1, H, W) normalised pixels -> (1, latent, H/stride, W/stride) latents;
    synthesis: the reverse. Implementations must be deterministic for a given input."""

    def __call__(self, x: np.ndarray) -> np.ndarray: ...


class TorchTransform:
    """The ``side`` ("analysis" or "synthesis") transform of ``model`` in PyTorch (fp32)."""

    def __init__(self, model: ReducedVAE, side: str) -> None:
        if side not in SIDES:
            raise ConfigError(f"side must be analysis or synthesis, got {side!r}")
        self.model, self.side = model, side
        self._net = model.analysis_transform if side == "analysis" else model.synthesis_transform

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self._net(torch.from_numpy(x)).numpy()


__all__ = ["SIDES", "TorchTransform", "Transform"]
