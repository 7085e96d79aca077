"""Shipped and user model weights: loading, validation and the model id (a hash of the weights)."""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from satcodec.codec.models import ModelConfig, ReducedVAE
from satcodec.errors import UnknownModelError, WeightsError
from satcodec.fileutil import atomic_path

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
FORMAT = "satcodec-model-v1"


@dataclass
class ModelInfo:
    name: str
    path: Path
    model_id: str  # 32 hex chars: first 16 bytes of SHA-256 over the tensors
    config: ModelConfig
    meta: dict[str, Any] = field(default_factory=dict)


def weights_id(state: dict[str, torch.Tensor]) -> str:
    """Hash of the weights: SHA-256 over sorted (name, dtype, shape, bytes), truncated to 16 bytes."""
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().contiguous().cpu()
        h.update(k.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:32]


def save_model(
    path: str | Path,
    model: ReducedVAE,
    meta: dict[str, Any] | None = None,
    dtype: torch.dtype = torch.float16,
) -> str:
    """Write ``model`` as a satcodec weights file (safetensors); returns its model id.

    Floating-point tensors are stored as ``dtype`` (float16 by default: half the size, and
    well inside the precision the codec needs); they are computed in float32 after loading.
    The model id hashes the stored tensors, so it names exactly what a decoder will load.
    """
    state = {
        k: (v.to(dtype) if v.is_floating_point() else v).detach().contiguous().cpu()
        for k, v in model.state_dict().items()
    }
    md = {
        "format": FORMAT,
        "config": json.dumps(model.config.to_dict()),
        "meta": json.dumps(meta or {}),
    }
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(state, str(tmp), metadata=md)
    return weights_id(state)


def _read(path: Path) -> tuple[ReducedVAE, ModelInfo]:
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    try:
        with safe_open(str(path), "pt") as fh:
            md = fh.metadata() or {}
            state = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise WeightsError(f"{path} is not a valid safetensors file: {exc}") from exc
    if md.get("format") != FORMAT:
        raise WeightsError(f"{path} is not a satcodec model (metadata format={md.get('format')!r})")
    try:
        config = ModelConfig.from_dict(json.loads(md["config"]))
        meta = json.loads(md.get("meta", "{}"))
    except (KeyError, ValueError, TypeError) as exc:
        raise WeightsError(f"{path} has malformed model metadata: {exc}") from exc
    if not (1 <= config.bands <= 64 and 1 <= config.hidden <= 1024 and 1 <= config.latent <= 1024):
        raise WeightsError(f"{path} declares an implausible architecture {config}")
    if not (0 <= config.refine_channels <= 512 and 0 <= config.refine_layers <= 64):
        raise WeightsError(f"{path} declares an implausible refinement stage {config}")
    if not (0 <= config.denoise_channels <= 512 and 0 <= config.denoise_layers <= 64):
        raise WeightsError(f"{path} declares an implausible denoising stage {config}")
    if config.denoise_channels and not (
        math.isfinite(config.noise_a) and math.isfinite(config.noise_b)
    ):
        raise WeightsError(f"{path} declares a non-finite sensor noise {config}")
    try:
        model = ReducedVAE(config)
    except ValueError as exc:
        raise WeightsError(f"{path}: {exc}") from exc
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise WeightsError(
            f"{path} does not match its architecture: missing {missing[:3]}, unexpected {extra[:3]}"
        )
    for k, t in expected.items():
        if state[k].shape != t.shape:
            raise WeightsError(
                f"{path}: tensor {k} has shape {tuple(state[k].shape)}, expected {tuple(t.shape)}"
            )
        if state[k].is_floating_point() and not torch.isfinite(state[k]).all():
            raise WeightsError(f"{path}: tensor {k} holds NaN or infinite values")
    model_id = weights_id(state)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    model.eval()
    info = ModelInfo(path.stem, path, model_id, config, meta)
    return model, info


def model_dirs(models_dir: Path | None = None) -> list[Path]:
    """Folders searched for models: the shipped ones, then ``$SATCODEC_MODEL_PATH`` entries."""
    if models_dir is not None:
        return [models_dir]
    extra = [Path(p) for p in os.environ.get("SATCODEC_MODEL_PATH", "").split(os.pathsep) if p]
    return [MODELS_DIR, *extra]


def list_models(models_dir: Path | None = None) -> list[ModelInfo]:
    """Available models (shipped ``satcodec/models/*.safetensors`` and ``$SATCODEC_MODEL_PATH``)."""
    paths = [
        p for d in model_dirs(models_dir) if d.is_dir() for p in sorted(d.glob("*.safetensors"))
    ]
    return [load_model(p)[1] for p in paths]


_CACHE: dict[tuple[Path, int, int], tuple[ReducedVAE, ModelInfo]] = {}


def load_model(
    name_or_path: str | Path, models_dir: Path | None = None
) -> tuple[ReducedVAE, ModelInfo]:
    """Load a shipped model by name (``satcodec models``) or a weights file by path."""
    p = Path(name_or_path)
    if p.suffix == ".safetensors" and not p.exists():
        raise WeightsError(f"weights file {p} does not exist")
    if p.suffix != ".safetensors":
        found = [d / f"{name_or_path}.safetensors" for d in model_dirs(models_dir)]
        found = [f for f in found if f.exists()]
        if not found:
            names = ", ".join(i.name for i in list_models(models_dir)) or "none"
            raise UnknownModelError(f"no model named {name_or_path!r} (available: {names})")
        p = found[0]
    p = p.resolve()
    st = p.stat()
    key = (p, st.st_mtime_ns, st.st_size)  # a rewritten weights file is read again
    if key not in _CACHE:
        _CACHE[key] = _read(p)
    return _CACHE[key]


def find_model_by_id(
    model_id: str, extra_paths: list[Path] | None = None
) -> tuple[ReducedVAE, ModelInfo]:
    """The model whose weights hash to ``model_id`` (shipped ones, then ``extra_paths``)."""
    candidates = [i.path for i in list_models()] + list(extra_paths or [])
    for path in candidates:
        model, info = load_model(path)
        if info.model_id == model_id:
            return model, info
    raise UnknownModelError(
        f"the bitstream was made with model {model_id}, which no available model has "
        "(pass the weights file with --model PATH)"
    )
