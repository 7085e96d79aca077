"""Optimizers by name: one registry for every model the shared trainer trains."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable

import torch

from satcodec.errors import ConfigError

OptimizerFactory = Callable[..., torch.optim.Optimizer]

_REGISTRY: dict[str, OptimizerFactory] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "adagrad": torch.optim.Adagrad,
}
# registered lazily so the trainer does not import research code unless asked to
_LAZY: dict[str, str] = {"inna": "satcodec.research.inna:INNA"}


def register_optimizer(name: str, factory: OptimizerFactory) -> None:
    """Make ``factory(params, lr=..., **kwargs)`` available as ``--optimizer name``."""
    _REGISTRY[name.lower()] = factory


def available_optimizers() -> list[str]:
    return sorted(set(_REGISTRY) | set(_LAZY))


def build_optimizer(
    name: str, params: Iterable[torch.nn.Parameter], lr: float, **kwargs: object
) -> torch.optim.Optimizer:
    """Instantiate the optimizer registered as ``name``."""
    key = name.lower()
    if key not in _REGISTRY and key in _LAZY:
        module, attr = _LAZY[key].split(":")
        register_optimizer(key, getattr(importlib.import_module(module), attr))
    if key not in _REGISTRY:
        raise ConfigError(
            f"unknown optimizer {name!r}; available: {', '.join(available_optimizers())}"
        )
    return _REGISTRY[key](params, lr=lr, **kwargs)
