"""Runtimes for the coder's transforms (:class:`satcodec.coding.Transform`: float32 NCHW in and out).

:func:`make_transform` is what the API uses: it returns the Transform the coder is given
(``Encoder(analysis=...)``, ``Decoder(synthesis=...)``): :class:`~satcodec.coding.TorchTransform`
for the default PyTorch path, :class:`OnnxRuntimeTransform` or
:class:`~satcodec.export.tensorrt.TensorRTTransform` otherwise. Those run an export, either one given by folder
(``export_dir``, checked against the model id) or one built on first use in a per-user cache
(``$SATCODEC_CACHE``, default ``~/.cache/satcodec/export``), keyed by model id and precision.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from satcodec.codec.registry import ModelInfo, ModelWeights, torch_module
from satcodec.coding.transforms import SIDES, TorchTransform, Transform
from satcodec.errors import ConfigError, ExportError, RuntimeUnavailableError
from satcodec.export import RUNTIMES
from satcodec.export.manifest import (
    FORMAT,
    MANIFEST,
    OPSET,
    PRECISIONS,
    RECIPE,
    ExportManifest,
    default_cache_dir,
    require_onnx,
    verify_export,
)

if TYPE_CHECKING:
    from satcodec.codec.models import ReducedVAE

# PyTorch is imported only to build an export (the first use of a model) or to run the torch
# runtime: a cached onnxruntime export runs from the weights file's id and config alone
Model = Union["ReducedVAE", ModelWeights]

DEFAULT_PRECISION = {"torch": "fp32", "onnxruntime": "fp32", "tensorrt": "fp16"}


class OnnxRuntimeTransform:
    """One exported graph in an onnxruntime CPU session: a :class:`~satcodec.coding.Transform`."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        require_onnx()
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if threads:
            so.intra_op_num_threads = int(threads)
            so.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ExportError(f"onnxruntime cannot load {path}: {exc}") from exc
        self.input = self.session.get_inputs()[0].name
        self.output = self.session.get_outputs()[0].name
        self.path = Path(path)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        return self.session.run([self.output], {self.input: x})[0]


def _check_runtime(runtime: str, precision: str | None) -> str:
    if runtime not in RUNTIMES:
        raise ConfigError(f"unknown runtime {runtime!r} (expected {', '.join(RUNTIMES)})")
    precision = precision or DEFAULT_PRECISION[runtime]
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r} (expected {', '.join(PRECISIONS)})")
    if runtime == "torch" and precision != "fp32":
        raise ConfigError(
            "the torch runtime runs fp32 only; use onnxruntime or tensorrt for fp16/int8"
        )
    return precision


def cached_onnx_export(
    model: Model, info: ModelInfo, precision: str, cache: str | Path | None = None
) -> Path:
    """The folder of an ONNX export of ``model`` at ``precision``, exporting it on first use.

    Exports are written to a temporary folder and renamed into place, so concurrent users
    never see a half-written export.
    """
    root = Path(cache) if cache else default_cache_dir()
    folder = root / f"{info.model_id}-onnx-{precision}-op{OPSET}-r{RECIPE}"
    if (folder / MANIFEST).exists():
        try:
            verify_export(folder, info.model_id)
            return folder
        except ExportError:
            shutil.rmtree(folder, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=root))
    try:
        from satcodec.export.onnx_export import export_onnx

        export_onnx(torch_module(model), info, tmp, precision)
        try:
            os.replace(tmp, folder)
        except OSError:  # another process won the race: use its export
            if not (folder / MANIFEST).exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def runtime_transform(
    side: str,
    runtime: str,
    model: Model,
    info: ModelInfo,
    *,
    precision: str | None = None,
    export_dir: str | Path | None = None,
    threads: int | None = None,
) -> Any:
    """The ``side`` ("analysis" or "synthesis") transform of ``model`` on ``runtime``.

    Returns None for ``torch`` (the pipeline's default). ``export_dir``: a folder written by
    ``satcodec export`` (its manifest's model id must match ``info.model_id`` and its precision
    ``precision`` when given); otherwise the export is built once in the cache.
    """
    if side not in SIDES:
        raise ConfigError(f"side must be analysis or synthesis, got {side!r}")
    if export_dir is not None and precision is None and runtime != "torch":
        precision = _manifest_precision(export_dir)
    precision = _check_runtime(runtime, precision)
    if runtime == "torch":
        if export_dir is not None:
            raise ConfigError("export_dir is for the onnxruntime and tensorrt runtimes")
        return None
    if runtime == "tensorrt":
        from satcodec.export.tensorrt import tensorrt_transform

        return tensorrt_transform(side, torch_module(model), info, precision, export_dir=export_dir)
    if export_dir is not None:
        folder = Path(export_dir)
        m = verify_export(folder, info.model_id)
        if m.precision != precision:
            raise ConfigError(f"the export in {folder} is {m.precision}, not {precision}")
    else:
        folder = cached_onnx_export(model, info, precision)
        m = ExportManifest.load(folder)
    return OnnxRuntimeTransform(m.graph_path(folder, side), threads)


def _manifest_precision(folder: str | Path) -> str:
    p = Path(folder) / MANIFEST
    if p.exists():
        return ExportManifest.load(folder).precision
    if (Path(folder) / "engine.json").exists():  # a TensorRT engine folder
        import json

        return str(json.loads((Path(folder) / "engine.json").read_text()).get("precision", "fp16"))
    raise ExportError(f"{folder} is not a satcodec export ({FORMAT}: no {MANIFEST})")


def use_runtime(runtime: str, precision: str | None, export_dir: str | Path | None) -> bool:
    """Whether these options ask for anything but the default PyTorch path (and are valid)."""
    if runtime == "torch" and precision in (None, "fp32") and export_dir is None:
        return False
    _check_runtime(runtime, precision)
    return runtime != "torch" or export_dir is not None


RUNTIME_ENV = "SATCODEC_RUNTIME"


def default_runtime() -> str:
    """The runtime a ``runtime=None`` call uses: ``$SATCODEC_RUNTIME`` when set, else
    onnxruntime when it and the ONNX exporter are installed, else torch.

    onnxruntime (fp32) gives the same latents as PyTorch to ~1e-5 (byte-identical streams on
    every scene of bench/results/throughput.md) and runs the transforms 1.2-1.5x faster on
    CPUs (same table); int8 is faster still but costs rate, so it is asked for explicitly."""
    env = os.environ.get(RUNTIME_ENV, "").strip()
    if env:
        if env not in RUNTIMES:
            raise ConfigError(
                f"{RUNTIME_ENV}={env!r} is not a runtime (expected {', '.join(RUNTIMES)})"
            )
        return env
    import importlib.util

    if all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx")):
        return "onnxruntime"
    return "torch"


def make_transform(
    side: str,
    runtime: str | None,
    model: Model,
    info: ModelInfo,
    precision: str | None = None,
    export_dir: str | Path | None = None,
    threads: int | None = None,
) -> Transform:
    """The ``side`` ("analysis" or "synthesis") :class:`~satcodec.coding.Transform` of
    ``model`` on ``runtime`` at ``precision``, from ``export_dir`` or the cache: what the API
    passes to ``Encoder(analysis=...)`` and ``Decoder(synthesis=...)``.

    ``runtime=None``: :func:`default_runtime`; if its onnxruntime export cannot be built
    (e.g. an exporter dependency missing), the PyTorch transform is used with a warning.
    ``torch`` with fp32 and no export gives :class:`~satcodec.coding.TorchTransform`.
    """
    if runtime is None:
        chosen = default_runtime()
        if chosen == "onnxruntime" and precision is None and export_dir is None:
            try:
                return runtime_transform(side, chosen, model, info, threads=threads)
            except (ExportError, RuntimeUnavailableError, ImportError) as exc:
                warnings.warn(
                    f"onnxruntime unavailable for the {side} ({exc}); using PyTorch",
                    RuntimeWarning,
                    stacklevel=2,
                )
                chosen = "torch"
        runtime = chosen
    if not use_runtime(runtime, precision, export_dir):
        if side not in SIDES:
            raise ConfigError(f"side must be analysis or synthesis, got {side!r}")
        return TorchTransform(torch_module(model), side)
    return runtime_transform(
        side,
        runtime,
        model,
        info,
        precision=precision,
        export_dir=export_dir,
        threads=threads,
    )


__all__ = [
    "DEFAULT_PRECISION",
    "RUNTIMES",
    "OnnxRuntimeTransform",
    "RuntimeUnavailableError",
    "cached_onnx_export",
    "default_runtime",
    "make_transform",
    "runtime_transform",
    "use_runtime",
]
