"""TensorRT engines for the transforms (fp32 / fp16 / int8), built with the TensorRT Python API.

Engines are built from the fp32 ONNX export, one per transform, with one optimisation profile
covering tiles from 64 px to ``max_tile`` px (plus the encoder's halo). int8 uses an entropy
calibrator (``IInt8EntropyCalibrator2``) fed with the same real patches as the onnxruntime
int8 export (:mod:`satcodec.export.calibration`), on graphs whose channels are first equalised
exactly around each GDN (:func:`satcodec.export.deploy.equalise`); the first and last
convolutions of each transform are pinned to fp16, as the onnxruntime int8 export keeps them in
float.

An engine is specific to the GPU and TensorRT version that built it (recorded in
``engine.json``). Device memory goes through PyTorch's CUDA tensors, so no pycuda is needed.

Status: written against the TensorRT 8.6 / 10.x Python API; not run in this project's CI,
which has neither TensorRT nor a GPU. Its tests skip there.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from satcodec.codec.models import DECODE_HALO, DOWNSAMPLING, ENCODE_HALO, ReducedVAE, decode_halo
from satcodec.codec.registry import ModelInfo
from satcodec.errors import ConfigError, ExportError, RuntimeUnavailableError
from satcodec.export.calibration import calibration_patches, synthesis_inputs
from satcodec.export.manifest import GRAPHS, default_cache_dir
from satcodec.fileutil import atomic_write_bytes

ENGINE_MANIFEST = "engine.json"
TRT_PRECISIONS = ("fp32", "fp16", "int8")
MIN_TILE, OPT_TILE, MAX_TILE = 64, 512, 2048


def require_tensorrt() -> tuple[Any, Any]:
    """``(tensorrt, torch)`` if TensorRT and a CUDA GPU are usable here; else a clear error."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise RuntimeUnavailableError(
            "the tensorrt runtime needs NVIDIA TensorRT (pip install tensorrt) and a CUDA GPU; "
            f"TensorRT is not installed here ({exc}). Use onnxruntime instead (--runtime onnxruntime, --format onnx)."
        ) from None
    import torch

    if not torch.cuda.is_available():
        raise RuntimeUnavailableError(
            f"TensorRT {trt.__version__} is installed but no CUDA GPU is visible to PyTorch "
            "(a CUDA build of torch and a GPU are needed). Use onnxruntime instead (--runtime onnxruntime, --format onnx)."
        )
    return trt, torch


def _shapes(
    side: str,
    channels: int,
    max_tile: int,
    stride: int = DOWNSAMPLING,
    decode_halo: int = DECODE_HALO,
) -> tuple[tuple[int, ...], ...]:
    """(min, opt, max) input shapes of one transform, up to tiles of ``max_tile`` px.

    The minimum is one latent: windows stop at the image border, so a small image (or the
    last tile row of one) gives windows far smaller than a tile plus its halo.
    """

    def shape(tile: int) -> tuple[int, ...]:
        if side == "analysis":
            s = tile + 2 * ENCODE_HALO
            return (1, 1, s, s)
        s = tile // stride + 2 * decode_halo
        return (1, channels, s, s)

    smallest = (1, 1, stride, stride) if side == "analysis" else (1, channels, 1, 1)
    return smallest, shape(min(OPT_TILE, max_tile)), shape(max_tile)


def _make_calibrator(trt: Any, torch: Any, batches: Sequence[np.ndarray], cache: Path) -> Any:
    """An ``IInt8EntropyCalibrator2`` over ``batches`` (each a (1, C, H, W) float32 array)."""

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.batches = [np.ascontiguousarray(b, dtype=np.float32) for b in batches]
            self.i = 0
            self.device = torch.empty(self.batches[0].shape, dtype=torch.float32, device="cuda")

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str], *args: Any) -> list[int] | None:
            if self.i >= len(self.batches):
                return None
            self.device.copy_(torch.from_numpy(self.batches[self.i]))
            torch.cuda.synchronize()
            self.i += 1
            return [int(self.device.data_ptr())]

        def read_calibration_cache(self, *args: Any) -> bytes | None:
            return cache.read_bytes() if cache.exists() else None

        def write_calibration_cache(self, data: Any) -> None:
            cache.write_bytes(bytes(data))

    return Calibrator()


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    side: str,
    precision: str,
    channels: int,
    calibration: Sequence[np.ndarray] | None = None,
    max_tile: int = MAX_TILE,
    workspace_gib: float = 2.0,
    stride: int = DOWNSAMPLING,
    decode_halo: int = DECODE_HALO,
) -> dict[str, Any]:
    """Build and serialise one engine; returns what ``engine.json`` records for it."""
    trt, torch = require_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    explicit = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
    if explicit is not None and int(trt.__version__.split(".")[0]) < 10:
        flags = 1 << int(explicit)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT cannot parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    name = network.get_input(0).name
    lo, opt, hi = _shapes(side, channels, max_tile, stride, decode_halo)
    profile = builder.create_optimization_profile()
    profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    pinned: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        if precision == "int8":
            if not calibration:
                raise ExportError("int8 engines need calibration data")
            config.set_flag(trt.BuilderFlag.INT8)
            config.int8_calibrator = _make_calibrator(
                trt, torch, calibration, Path(tmp) / "calib.cache"
            )
            shape = tuple(calibration[0].shape)
            cal = builder.create_optimization_profile()
            cal.set_shape(name, shape, shape, shape)
            config.set_calibration_profile(cal)
            # keep the pixel- and latent-facing convolutions in fp16, as the onnxruntime int8
            # export keeps them in float (first and last conv of each transform)
            convs = [
                network.get_layer(i)
                for i in range(network.num_layers)
                if network.get_layer(i).type == trt.LayerType.CONVOLUTION
            ]
            if convs:
                keep = [convs[0], convs[-1]]
                for layer in keep:
                    layer.precision = trt.DataType.HALF
                    layer.set_output_type(0, trt.DataType.HALF)
                    pinned.append(layer.name)
                config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        t0 = time.perf_counter()
        blob = builder.build_serialized_network(network, config)
        if blob is None:
            raise ExportError(f"TensorRT failed to build the {side} engine (see its log above)")
        atomic_write_bytes(engine_path, bytes(blob))
    return {
        "file": engine_path.name,
        "input": name,
        "output": network.get_output(0).name,
        "shapes": {"min": lo, "opt": opt, "max": hi},
        "fp16_layers": pinned,
        "build_seconds": round(time.perf_counter() - t0, 2),
    }


def export_tensorrt(
    model: ReducedVAE,
    info: ModelInfo,
    out_dir: str | Path,
    precision: str = "fp16",
    *,
    calib: str | Path | Sequence[str | Path] | None = None,
    max_tile: int = MAX_TILE,
    count: int = 32,
) -> dict[str, Any]:
    """Build TensorRT engines for both transforms in ``out_dir``; returns (and writes) engine.json."""
    trt, torch = require_tensorrt()
    if precision not in TRT_PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r} for TensorRT (fp32, fp16, int8)")
    if max_tile % DOWNSAMPLING or not MIN_TILE <= max_tile <= 8192:
        raise ConfigError(f"max tile must be a multiple of 16 in {MIN_TILE}..8192, got {max_tile}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / ENGINE_MANIFEST).unlink(missing_ok=True)
    engines: dict[str, Any] = {}
    from satcodec.export.onnx_export import export_onnx

    with tempfile.TemporaryDirectory(dir=out) as tmp:
        onnx_manifest = export_onnx(model, info, tmp, "fp32", calib=calib)
        calib_x: list[np.ndarray] = []
        calib_y: list[np.ndarray] = []
        sources: list[str] = []
        if precision == "int8":
            patches, sources = calibration_patches(calib, count=count)
            from satcodec.export.deploy import deploy_transforms

            analysis, _ = deploy_transforms(model)
            with torch.no_grad():
                lat = [analysis(torch.from_numpy(p[None])).numpy() for p in patches]
            calib_x = [p[None] for p in patches]
            calib_y = list(synthesis_inputs(lat))
            # int8 engines are built from the equalised graphs (same function, balanced ranges)
            from satcodec.export.deploy import equalise
            from satcodec.export.onnx_export import _inline_identities, _torch_export

            _, synthesis = deploy_transforms(model)
            for side, module, data in (
                ("analysis", analysis, calib_x),
                ("synthesis", synthesis, calib_y),
            ):
                batch = torch.from_numpy(np.concatenate(data[:: max(1, len(data) // 16)]))
                path = Path(tmp) / GRAPHS[side][0]
                _torch_export(equalise(module, batch), torch.from_numpy(data[0]), path, side, 17)
                _inline_identities(path)
        for side in ("analysis", "synthesis"):
            engines[side] = build_engine(
                Path(tmp) / GRAPHS[side][0],
                out / f"{side}.engine",
                side,
                precision,
                model.config.latent,
                calib_x if side == "analysis" else calib_y,
                max_tile,
                stride=model.config.downsampling,
                decode_halo=decode_halo(model.config),
            )
    manifest = {
        "format": "satcodec-tensorrt-v1",
        "model_name": info.name,
        "model_id": info.model_id,
        "precision": precision,
        "max_tile": max_tile,
        "engines": engines,
        "calibration_files": sources,
        "onnx_checks": onnx_manifest.checks,
        "tensorrt": trt.__version__,
        "gpu": torch.cuda.get_device_name(0),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    atomic_write_bytes(out / ENGINE_MANIFEST, json.dumps(manifest, indent=2).encode())
    return manifest


def load_engine_manifest(folder: str | Path, model_id: str | None = None) -> dict[str, Any]:
    p = Path(folder) / ENGINE_MANIFEST
    try:
        m = json.loads(p.read_text())
    except FileNotFoundError:
        raise ExportError(f"{folder} holds no {ENGINE_MANIFEST}: not a TensorRT export") from None
    except (OSError, ValueError) as exc:
        raise ExportError(f"{p} cannot be read: {exc}") from exc
    if model_id is not None and m.get("model_id") != model_id:
        raise ExportError(
            f"the engines in {folder} are of model {m.get('model_id')}, not {model_id}"
        )
    return m


class TensorRTTransform:
    """One serialised engine (numpy in, numpy out): a :class:`~satcodec.coding.Transform`."""

    def __init__(self, engine_path: str | Path) -> None:
        trt, torch = require_tensorrt()
        self.trt, self.torch = trt, torch
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise ExportError(
                f"TensorRT cannot load {engine_path} (built for another GPU or TensorRT version?)"
            )
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        mode = trt.TensorIOMode.INPUT
        self.input = next(n for n in names if self.engine.get_tensor_mode(n) == mode)
        self.output = next(n for n in names if self.engine.get_tensor_mode(n) != mode)
        self.stream = torch.cuda.Stream()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.cuda.stream(self.stream):
            xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).cuda(
                non_blocking=False
            )
            if not self.context.set_input_shape(self.input, tuple(xt.shape)):
                raise ExportError(f"input shape {tuple(xt.shape)} is outside the engine's profile")
            shape = tuple(self.context.get_tensor_shape(self.output))
            yt = torch.empty(shape, dtype=torch.float32, device="cuda")
            self.context.set_tensor_address(self.input, xt.data_ptr())
            self.context.set_tensor_address(self.output, yt.data_ptr())
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise ExportError("TensorRT execution failed")
            self.stream.synchronize()
            return yt.cpu().numpy()


def tensorrt_transform(
    side: str,
    model: ReducedVAE,
    info: ModelInfo,
    precision: str,
    *,
    export_dir: str | Path | None = None,
) -> TensorRTTransform:
    """The engine of ``side`` from ``export_dir`` or from the cache (built on first use)."""
    trt, torch = require_tensorrt()
    if export_dir is None:
        gpu = "".join(c if c.isalnum() else "-" for c in torch.cuda.get_device_name(0))
        folder = default_cache_dir() / f"{info.model_id}-trt{trt.__version__}-{gpu}-{precision}"
        if not (folder / ENGINE_MANIFEST).exists():
            folder.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
            try:
                export_tensorrt(model, info, tmp, precision)
                try:
                    os.replace(tmp, folder)
                except OSError:
                    if not (folder / ENGINE_MANIFEST).exists():
                        raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    else:
        folder = Path(export_dir)
    m = load_engine_manifest(folder, info.model_id)
    if m.get("precision") != precision:
        raise ConfigError(f"the engines in {folder} are {m.get('precision')}, not {precision}")
    return TensorRTTransform(folder / m["engines"][side]["file"])
