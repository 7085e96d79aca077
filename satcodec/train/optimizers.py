"""Optimizers by name: one registry for every model the shared trainer trains.

The trainer knows the ``torch.optim`` classes below and nothing else. Other optimizers plug
in through the public hook, :func:`register_optimizer`, which the module defining one calls
at import (research's INNA module registers ``"inna"``). So that a name works before its
module was imported (``satcodec train --optimizer inna``), a package also advertises it as an
entry point of the group :data:`ENTRY_POINT_GROUP` (``[project.entry-points."satcodec.optimizers"]``
in pyproject.toml: ``name = "module:factory"``); :func:`build_optimizer` loads it on a miss.
The trainer itself never names a plugin's module (an entry point needs the package's metadata
to be current: ``pip install -e .`` after changing them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from importlib.metadata import EntryPoint, entry_points

import torch

from satcodec.errors import ConfigError

OptimizerFactory = Callable[..., torch.optim.Optimizer]

ENTRY_POINT_GROUP = "satcodec.optimizers"

_REGISTRY: dict[str, OptimizerFactory] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "adagrad": torch.optim.Adagrad,
}


def register_optimizer(name: str, factory: OptimizerFactory, *, replace: bool = False) -> None:
    """Make ``factory(params, lr=..., **kwargs)`` available to the trainer as ``name``
    (case-insensitive). Registering the same factory again is a no-op; another factory under
    a taken name is a :class:`ConfigError` unless ``replace``."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"an optimizer needs a non-empty name, got {name!r}")
    if not callable(factory):
        raise ConfigError(f"optimizer {name!r}: the factory must be callable, got {factory!r}")
    key = name.strip().lower()
    known = _REGISTRY.get(key)
    if known is not None and known is not factory and not replace:
        raise ConfigError(f"optimizer {name!r} is already registered ({known!r})")
    _REGISTRY[key] = factory


def _advertised() -> dict[str, EntryPoint]:
    """Optimizers that installed packages advertise as entry points, by lower-case name."""
    return {ep.name.lower(): ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_optimizers() -> list[str]:
    """Every name :func:`build_optimizer` accepts: registered or advertised (not loaded)."""
    return sorted(set(_REGISTRY) | set(_advertised()))


def build_optimizer(
    name: str, params: Iterable[torch.nn.Parameter], lr: float, **kwargs: object
) -> torch.optim.Optimizer:
    """Instantiate the optimizer registered as ``name`` (loading its entry point if needed)."""
    key = name.lower()
    if key not in _REGISTRY:
        ep = _advertised().get(key)
        if ep is not None:
            try:
                factory = ep.load()  # importing the module usually registers it already
            except Exception as exc:  # an advertised plugin that cannot be imported
                raise ConfigError(
                    f"optimizer {name!r} ({ep.value}) cannot be loaded: {exc}"
                ) from exc
            if key not in _REGISTRY:
                register_optimizer(key, factory)
    if key not in _REGISTRY:
        raise ConfigError(
            f"unknown optimizer {name!r}; available: {', '.join(available_optimizers())}"
        )
    return _REGISTRY[key](params, lr=lr, **kwargs)
