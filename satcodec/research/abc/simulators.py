"""Simulators that count every call, and the prior helpers ABC needs.

A simulator here is a batched map θ ↦ X: a tensor of parameters of shape (n, p) gives data of
shape (n, ...) (one simulated data set per row). :class:`Simulator` wraps such a callable and
counts the parameter vectors it was asked to simulate, so an ABC run can report exactly how many
real simulations it spent; with a ``budget`` it refuses (before calling the wrapped function) any
request that would exceed it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import torch

from satcodec.errors import ConfigError, SimulationBudgetError

SimulatorFn = Callable[[torch.Tensor], torch.Tensor]


class Simulator:
    """A batched simulator θ (n, p) ↦ X (n, ...) that counts its calls.

    Args:
        fn: the batched simulator; it must return one row per row of θ.
        budget: the most parameter vectors it may simulate in total (None: unlimited).
        max_batch: split larger requests into chunks of this many rows (None: never split);
            counting is per parameter vector either way.
        name: shown in messages and reports.

    ``calls`` is the number of parameter vectors simulated so far (the number of simulations),
    ``batches`` the number of times ``fn`` was invoked. Reserving budget and counting happen
    under a lock, so threads sharing one simulator never overspend it.
    """

    def __init__(
        self,
        fn: SimulatorFn,
        budget: int | None = None,
        max_batch: int | None = None,
        name: str = "simulator",
    ) -> None:
        if not callable(fn):
            raise ConfigError(f"simulator {name!r}: fn must be callable, got {type(fn).__name__}")
        if budget is not None and budget < 0:
            raise ConfigError(f"simulator {name!r}: budget must be >= 0, got {budget}")
        if max_batch is not None and max_batch < 1:
            raise ConfigError(f"simulator {name!r}: max_batch must be >= 1, got {max_batch}")
        self.fn = fn
        self.budget = budget
        self.max_batch = max_batch
        self.name = name
        self._calls = 0
        self._batches = 0
        self._lock = threading.Lock()

    @property
    def calls(self) -> int:
        """Parameter vectors handed to the wrapped function so far (the simulations spent)."""
        return self._calls

    @property
    def batches(self) -> int:
        """Invocations of the wrapped function so far."""
        return self._batches

    @property
    def remaining(self) -> int | None:
        """Simulations left in the budget (None when unlimited)."""
        return None if self.budget is None else self.budget - self._calls

    def reset(self) -> None:
        """Zero the counters (the budget applies afresh)."""
        with self._lock:
            self._calls = 0
            self._batches = 0

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        if not isinstance(theta, torch.Tensor) or theta.dim() != 2:
            shape = tuple(theta.shape) if isinstance(theta, torch.Tensor) else type(theta)
            raise ConfigError(f"simulator {self.name!r}: θ must be a (n, p) tensor, got {shape}")
        n = theta.shape[0]
        with self._lock:
            # reserve first so two threads cannot both pass the check and overspend
            if self.budget is not None and self._calls + n > self.budget:
                raise SimulationBudgetError(
                    f"simulator {self.name!r}: {n} simulations requested, "
                    f"{self.budget - self._calls} left of a budget of {self.budget}"
                )
            self._calls += n
        chunks = [theta] if self.max_batch is None else list(theta.split(self.max_batch))
        outs: list[torch.Tensor] = []
        sent = 0
        try:
            for chunk in chunks:
                sent += chunk.shape[0]  # a chunk handed to fn counts, even if fn then raises
                x = self.fn(chunk)
                with self._lock:
                    self._batches += 1
                if not isinstance(x, torch.Tensor) or x.shape[0] != chunk.shape[0]:
                    got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
                    raise ConfigError(
                        f"simulator {self.name!r} returned {got} for {chunk.shape[0]} parameter "
                        "vectors; it must return one row per row of θ"
                    )
                outs.append(x)
        except BaseException:
            with self._lock:  # give back only the reservation for chunks never simulated
                self._calls -= n - sent
            raise
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    def __repr__(self) -> str:
        return f"Simulator({self.name!r}, calls={self._calls}, budget={self.budget})"


def prior_sample(prior: Any, n: int) -> torch.Tensor:
    """``n`` draws of a torch/pyro distribution with event shape (p,), as a (n, p) tensor."""
    theta = prior.sample(torch.Size([n]))
    return theta.reshape(n, -1)


def prior_log_prob(prior: Any, theta: torch.Tensor) -> torch.Tensor:
    """log p(θ) per row, −inf outside the prior's support (torch would raise there instead)."""
    out = torch.full((theta.shape[0],), -torch.inf, dtype=theta.dtype)
    support = getattr(prior, "support", None)
    inside = support.check(theta) if support is not None else torch.ones(len(theta), dtype=bool)
    if inside.dim() > 1:  # an elementwise constraint: every coordinate must be inside
        inside = inside.all(dim=-1)
    if inside.any():
        out[inside] = prior.log_prob(theta[inside]).to(theta.dtype)
    return out
