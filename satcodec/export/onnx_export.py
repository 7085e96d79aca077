"""ONNX export of the analysis (board) and synthesis (ground) transforms, fp32 / fp16 / int8.

One export directory holds one precision: ``analysis.onnx``, ``synthesis.onnx`` and
``manifest.json`` (written last: an export without a manifest is incomplete). Both graphs take
and return float32 NCHW tensors with dynamic batch, height and width; fp16 graphs cast inside.
int8 is static post-training quantisation with onnxruntime in the QDQ format, calibrated on real
image patches (:mod:`satcodec.export.calibration`).
"""

from __future__ import annotations

import contextlib
import io
import platform
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from satcodec.codec.models import ReducedVAE
from satcodec.codec.registry import ModelInfo
from satcodec.coding.encoder import require_stream_stride
from satcodec.errors import ConfigError, ExportError
from satcodec.export.calibration import calibration_patches, synthesis_inputs
from satcodec.export.deploy import deploy_transforms, equalise, half_precision
from satcodec.export.manifest import (
    FORMAT,
    GRAPHS,
    MANIFEST,
    OPSET,
    PRECISIONS,
    RECIPE,
    ExportManifest,
    _sha256,
    require_onnx,
)
from satcodec.export.manifest import default_cache_dir as default_cache_dir  # re-exported
from satcodec.export.manifest import verify_export as verify_export  # re-exported
from satcodec.fileutil import atomic_write_bytes

FP32_TOLERANCE = 1e-5  # max |onnx - torch| / max |torch|, per graph
INPUT_NORMALISATION = {
    "formula": "(DN - band_offset) / (2**bit_depth - 1)",
    "band_offset": "rounded mean of the band's valid pixels (sent in the stream header)",
    "layout": "float32 NCHW, one band per image (C = 1)",
    "spatial": "height and width multiples of 16; the encoder feeds each tile with a 32 px halo",
    "latents": "analysis output at quantisation step 1; the decoder feeds symbol * step",
    "output": "synthesis output is in the same normalised units as the analysis input",
}


@dataclass
class Int8Options:
    """Static QDQ quantisation settings (onnxruntime ``quantize_static``).

    The defaults were chosen on the held-out scenes with a trained model (see
    bench/results/export_speed.md): per-channel ranges equalised exactly around each GDN,
    percentile calibration, and the tensors that face the codec's own numbers kept in float.
    """

    calibration: str = "percentile"  # minmax | entropy | percentile (99.999 %)
    per_channel: bool = True
    # convolutions kept in float ("side:first", "side:last", "side:norms" = the GDN 1x1 convs,
    # or "side:NODE"): the first analysis conv reads 12-bit pixels (8 bits cannot hold them),
    # the last analysis conv writes the latents the codec quantises with its own step (an 8-bit
    # grid under it moved rates and PSNR by several %), the first synthesis conv reads
    # symbol x step (an 8-bit grid misaligned with the step), the last writes pixels; the
    # synthesis GDN norms are the most sensitive of its int8 layers for little compute
    keep_float: tuple[str, ...] = (
        "analysis:first",
        "analysis:last",
        "synthesis:first",
        "synthesis:last",
        "synthesis:norms",
    )
    count: int = 32  # calibration patches
    patch: int = 256
    # op types to quantise, "OpType" (both sides) or "side:OpType"; a side with none listed
    # quantises every op type onnxruntime supports (Abs, Div, Mul, DepthToSpace... too). Conv
    # only: onnxruntime has no int8 Abs/Div, so quantising them only adds Q/DQ pairs around
    # float ops (same accuracy, 15% slower analysis on this CPU)
    op_types: tuple[str, ...] = ("Conv",)
    # exact power-of-two channel rescaling around each GDN before quantising (deploy.equalise)
    equalise: bool = True

    def op_types_for(self, side: str) -> list[str] | None:
        ops = [
            o.partition(":")[2] if ":" in o else o
            for o in self.op_types
            if not (":" in o and not o.startswith(side + ":"))
        ]
        return ops or None


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    from satcodec import __version__

    return {
        "satcodec": __version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "python": platform.python_version(),
    }


def _torch_export(
    module: nn.Module, example: torch.Tensor, path: Path, side: str, opset: int
) -> None:
    _, inp, out, _ = GRAPHS[side]
    spatial = ("height", "width") if side == "analysis" else ("latent_height", "latent_width")
    other = ("latent_height", "latent_width") if side == "analysis" else ("height", "width")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=[inp],
            output_names=[out],
            dynamic_axes={
                inp: {0: "batch", 2: spatial[0], 3: spatial[1]},
                out: {0: "batch", 2: other[0], 3: other[1]},
            },
            do_constant_folding=True,
        )


def _inline_identities(path: Path) -> None:
    """Replace ``Identity(initializer)`` nodes (the exporter's deduplication) by initializers.

    Quantisation tools expect every conv weight and bias to be an initializer.
    """
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    g = m.graph
    inits = {i.name: i for i in g.initializer}
    keep = []
    for node in g.node:
        if node.op_type == "Identity" and node.input[0] in inits:
            arr = numpy_helper.to_array(inits[node.input[0]])
            g.initializer.append(numpy_helper.from_array(arr, node.output[0]))
        else:
            keep.append(node)
    del g.node[:]
    g.node.extend(keep)
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    unused = [i for i in g.initializer if i.name not in used]
    for i in unused:
        g.initializer.remove(i)
    onnx.save(m, str(path))


def check_graph(path: Path) -> None:
    """``onnx.checker`` with full shape inference; raises :class:`ExportError`."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"{path.name} fails onnx.checker: {exc}") from exc


def relative_error(test: np.ndarray, reference: np.ndarray) -> float:
    """max |test - reference| / max |reference| (0 when both are 0)."""
    ref = float(np.max(np.abs(reference)))
    err = float(np.max(np.abs(test.astype(np.float64) - reference.astype(np.float64))))
    return err / ref if ref > 0 else err


def _session(path: Path, threads: int | None = None) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    s = _session(path)
    return s.run(None, {s.get_inputs()[0].name: x})[0]


class _Reader:
    """onnxruntime ``CalibrationDataReader`` over a list of arrays (one per run)."""

    def __init__(self, name: str, arrays: Sequence[np.ndarray]) -> None:
        self.name, self.arrays, self.i = name, list(arrays), 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= len(self.arrays):
            return None
        self.i += 1
        return {self.name: np.ascontiguousarray(self.arrays[self.i - 1])}

    def rewind(self) -> None:
        self.i = 0


def _conv_nodes(path: Path) -> list[str]:
    import onnx

    return [n.name for n in onnx.load(str(path)).graph.node if n.op_type == "Conv"]


def _excluded(side: str, path: Path, keep_float: Sequence[str]) -> list[str]:
    convs = _conv_nodes(path)
    out = []
    for spec in keep_float:
        s, _, which = spec.partition(":")
        if s != side or not convs:
            continue
        if which == "first":
            out.append(convs[0])
        elif which == "last":
            out.append(convs[-1])
        elif which == "norms":
            out += [c for c in convs if "norm" in c]
        elif which in convs:
            out.append(which)
        else:
            raise ConfigError(
                f"keep_float entry {spec!r}: no such conv (have first, last, norms, {convs})"
            )
    return sorted(set(out))


def quantize_int8(
    fp32_path: Path, out_path: Path, side: str, inputs: Sequence[np.ndarray], opts: Int8Options
) -> dict[str, Any]:
    """Static QDQ int8 quantisation of one graph; returns what the manifest records."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    if opts.calibration not in methods:
        raise ConfigError(
            f"unknown calibration method {opts.calibration!r} (minmax, entropy, percentile)"
        )
    exclude = _excluded(side, fp32_path, opts.keep_float)
    _, inp, _, _ = GRAPHS[side]
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        try:
            from onnxruntime.quantization.shape_inference import quant_pre_process

            quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=False)
            src = prepared
        except Exception:  # noqa: BLE001 - pre-processing is an optimisation; quantise as is
            src = fp32_path
        # the exporter names nodes the same in the pre-processed graph only if it kept them
        names = set(_conv_nodes(src))
        exclude_here = [n for n in exclude if n in names] if src is prepared else exclude
        if src is prepared and len(exclude_here) != len(exclude):
            src, exclude_here = fp32_path, exclude
        with _quiet_logging():
            quantize_static(
                str(src),
                str(out_path),
                _Reader(inp, inputs),
                quant_format=QuantFormat.QDQ,
                per_channel=opts.per_channel,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=methods[opts.calibration],
                nodes_to_exclude=exclude_here,
                op_types_to_quantize=opts.op_types_for(side),
                extra_options={"WeightSymmetric": True},
            )
    return {
        "kept_float": exclude_here,
        "preprocessed": src is not fp32_path,
    }


@contextlib.contextmanager
def _quiet_logging() -> Iterator[None]:
    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        # the calibrators print their progress to stdout; keep the CLI's output clean
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def _torch_reference(model: ReducedVAE, x: np.ndarray, side: str) -> np.ndarray:
    t = model.analysis_transform if side == "analysis" else model.synthesis_transform
    with torch.no_grad():
        return t(torch.from_numpy(x)).numpy()


def export_onnx(
    model: ReducedVAE,
    info: ModelInfo,
    out_dir: str | Path,
    precision: str = "fp32",
    *,
    calib: str | Path | Sequence[str | Path] | None = None,
    opset: int = OPSET,
    int8: Int8Options | None = None,
    overwrite: bool = True,
) -> ExportManifest:
    """Export ``model`` to ``out_dir`` at ``precision``; returns the manifest (also written there).

    fp32 graphs are checked against PyTorch (max relative error ≤ 1e-5, else ExportError);
    fp16 and int8 record their error against the fp32 graph on a real patch.
    """
    require_onnx()
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r} (expected {', '.join(PRECISIONS)})")
    if not 13 <= opset <= 21:
        raise ConfigError(f"opset must be 13..21, got {opset}")
    opts = int8 or Int8Options()
    out = Path(out_dir)
    if (out / MANIFEST).exists() and not overwrite:
        raise ExportError(f"{out} already holds an export (pass overwrite=True)")
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)  # incomplete until the new manifest is written

    patches, sources = calibration_patches(
        calib, count=opts.count if precision == "int8" else 2, patch=opts.patch
    )
    require_stream_stride(model)  # the runtimes feed the v1 pipeline
    analysis, synthesis = deploy_transforms(model)
    with torch.no_grad():
        latents = [analysis(torch.from_numpy(p[None])).numpy() for p in patches]
    probe_x = patches[:1]
    probe_y = next(iter(synthesis_inputs(latents[:1], steps=(1.0,))))
    probes = {"analysis": probe_x, "synthesis": probe_y}
    graphs: dict[str, dict[str, Any]] = {}
    checks: dict[str, Any] = {
        "probe": f"one real {patches.shape[-1]} px patch (synthesis: its latents at step 1)"
    }
    quant: dict[str, Any] | None = None
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        for side, module in (("analysis", analysis), ("synthesis", synthesis)):
            fname, inp, outp, where = GRAPHS[side]
            fp32 = Path(tmp) / f"{side}.fp32.onnx"
            example = torch.from_numpy(probes[side])
            _torch_export(module, example, fp32, side, opset)
            _inline_identities(fp32)
            check_graph(fp32)
            ref = _torch_reference(model, probes[side], side)
            got32 = _run(fp32, probes[side])
            err32 = relative_error(got32, ref)
            if err32 > FP32_TOLERANCE:
                raise ExportError(
                    f"{side}: ONNX fp32 output differs from PyTorch by {err32:.2e} (relative), "
                    f"more than {FP32_TOLERANCE:g}"
                )
            checks[f"{side}_fp32_vs_torch_rel_err"] = err32
            final = Path(tmp) / fname
            if precision == "fp32":
                shutil.copyfile(fp32, final)
            elif precision == "fp16":
                _torch_export(half_precision(module), example, final, side, opset)
                _inline_identities(final)
            else:
                if side == "analysis":
                    inputs = list(patches[:, None])
                else:
                    inputs = list(synthesis_inputs(latents))
                src = fp32
                if opts.equalise:
                    src = Path(tmp) / f"{side}.equalised.onnx"
                    eq = equalise(
                        module,
                        torch.from_numpy(np.concatenate(inputs[:: max(1, len(inputs) // 16)])),
                    )
                    _torch_export(eq, example, src, side, opset)
                    _inline_identities(src)
                    checks[f"{side}_equalised_vs_fp32_rel_err"] = relative_error(
                        _run(src, probes[side]), got32
                    )
                q = quantize_int8(src, final, side, inputs, opts)
                quant = quant or {
                    "method": "onnxruntime quantize_static, QDQ",
                    "activations": "uint8 (asymmetric)",
                    "weights": "int8 symmetric, per channel"
                    if opts.per_channel
                    else "int8 symmetric",
                    "calibration": opts.calibration,
                    "calibration_files": sources,
                    "calibration_patches": int(patches.shape[0]),
                    "patch": int(patches.shape[-1]),
                    "synthesis_steps": [0.5, 1.0, 2.0, 4.0],
                    "equalised": opts.equalise,
                    "op_types": {
                        sd: opts.op_types_for(sd) or "all supported"
                        for sd in ("analysis", "synthesis")
                    },
                }
                quant[f"{side}_kept_float"] = q["kept_float"]
                quant[f"{side}_preprocessed"] = q["preprocessed"]
            check_graph(final)
            if precision != "fp32":
                got = _run(final, probes[side])
                checks[f"{side}_{precision}_vs_fp32_rel_err"] = relative_error(got, got32)
            shutil.move(str(final), out / fname)
            graphs[side] = {
                "file": fname,
                "input": inp,
                "output": outp,
                "runs_on": where,
                "sha256": _sha256(out / fname),
                "bytes": (out / fname).stat().st_size,
            }
    checks["export_seconds"] = round(time.perf_counter() - t0, 2)
    manifest = ExportManifest(
        format=FORMAT,
        model_name=info.name,
        model_id=info.model_id,
        precision=precision,
        opset=opset,
        graphs=graphs,
        input_normalisation=dict(INPUT_NORMALISATION, downsampling=str(model.config.downsampling)),
        config=model.config.to_dict(),
        quantisation=quant,
        checks=checks,
        versions=_versions(),
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        recipe=RECIPE,
    )
    atomic_write_bytes(out / MANIFEST, manifest.to_json().encode())
    return manifest
