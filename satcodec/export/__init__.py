"""Board deployment: ONNX export (fp32 / fp16 / int8 QDQ), TensorRT engines, runtimes.

>>> from satcodec.export import export_model
>>> export_model("sgdn-1bpp", "out/", fmt="onnx", precision="int8")   # analysis + synthesis + manifest

The analysis transform (board side) and the synthesis transform (ground side) are exported as
two graphs so each side ships only what it runs. Bitstreams do not depend on the runtime: they
carry integer symbols and scale-table indices, so any encoder runtime pairs with any decoder
runtime (the symbols the decoder entropy-decodes are those the encoder coded).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from satcodec.errors import ConfigError

FORMATS = ("onnx", "tensorrt")
RUNTIMES = ("torch", "onnxruntime", "tensorrt")  # the one definition (export.runtime uses it)


def export_model(
    model: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    fmt: str = "onnx",
    precision: str = "fp32",
    calib: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    max_tile: int | None = None,
) -> dict[str, Any]:
    """Export a shipped model (by name) or a weights file; returns the manifest as a dict."""
    from dataclasses import asdict

    from satcodec.codec.registry import load_model

    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r} (expected {', '.join(FORMATS)})")
    net, info = load_model(model)
    if fmt == "onnx":
        if max_tile is not None:
            raise ConfigError(
                "--max-tile applies to TensorRT engines only (ONNX graphs are fully dynamic)"
            )
        from satcodec.export.onnx_export import export_onnx

        return asdict(export_onnx(net, info, Path(out_dir), precision, calib=calib))
    from satcodec.export.tensorrt import MAX_TILE, export_tensorrt

    return export_tensorrt(
        net, info, Path(out_dir), precision, calib=calib, max_tile=max_tile or MAX_TILE
    )


def runtime_transform(*args: Any, **kwargs: Any) -> Any:
    """See :func:`satcodec.export.runtime.runtime_transform`."""
    from satcodec.export.runtime import runtime_transform as impl

    return impl(*args, **kwargs)


__all__ = ["FORMATS", "RUNTIMES", "export_model", "runtime_transform"]
