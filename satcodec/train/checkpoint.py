"""Checkpoints in safetensors: model weights, optimizer state and trainer position.

Optimizer state dicts mix tensors and Python scalars; tensors go in the safetensors body,
everything else as JSON in its metadata. No pickle anywhere.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from satcodec.errors import WeightsError
from satcodec.fileutil import atomic_path


def _split_state(prefix: str, obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace tensors in a nested structure by {"__tensor__": key}, collecting them."""
    if isinstance(obj, torch.Tensor):
        key = f"{prefix}"
        tensors[key] = obj.detach().contiguous().cpu()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        return {
            "__dict__": [
                [_json_key(k), _split_state(f"{prefix}.{k}", v, tensors)] for k, v in obj.items()
            ]
        }
    if isinstance(obj, (list, tuple)):
        return {"__list__": [_split_state(f"{prefix}.{i}", v, tensors) for i, v in enumerate(obj)]}
    return obj


def _json_key(k: Any) -> Any:
    return k if isinstance(k, (str, int)) else str(k)


def _join_state(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__dict__" in obj:
            return {k: _join_state(v, tensors) for k, v in obj["__dict__"]}
        if "__list__" in obj:
            return [_join_state(v, tensors) for v in obj["__list__"]]
    return obj


def save_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write model (+ optimizer) state atomically to ``path``."""
    tensors: dict[str, torch.Tensor] = {
        f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()
    }
    meta: dict[str, str] = {"extra": json.dumps(extra or {})}
    if optimizer is not None:
        meta["optimizer"] = json.dumps(_split_state("optim", optimizer.state_dict(), tensors))
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def load_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
) -> dict[str, Any]:
    """Load state saved by :func:`save_checkpoint`; returns its ``extra`` dict."""
    try:
        tensors = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), "pt") as fh:
            meta = fh.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"cannot read checkpoint {path}: {exc}") from exc
    state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise WeightsError(
            f"checkpoint {path} does not fit the model: {str(exc).splitlines()[0]}"
        ) from exc
    if optimizer is not None and "optimizer" in meta:
        optimizer.load_state_dict(_join_state(json.loads(meta["optimizer"]), tensors))
    return json.loads(meta.get("extra", "{}"))
