"""Learning-rate schedules as pure functions of the step, so resuming needs no schedule state."""

from __future__ import annotations

import math
from collections.abc import Callable

from satcodec.errors import ConfigError


def lr_factor(name: str, steps: int, **kw: float) -> Callable[[int], float]:
    """Return ``f(step) -> multiplier of the base learning rate``.

    - ``constant``
    - ``cosine``: cosine from 1 to ``final`` (default 0.1) over the run
    - ``decay``: constant, then at fraction ``start`` (default 0.9) multiply by ``final``
      (default 0.3) — the recipe that helped the codec most in the first probe
    - ``inverse_power``: 1/(k+1)^power (default 0.5), k the step or the epoch when
      ``steps_per_epoch`` is given — INNA's γ_k = γ₀/(k+1)^p
    - ``warmup`` (any schedule can take ``warmup`` steps of linear ramp)
    """
    warmup = int(kw.get("warmup", 0))

    def base(step: int) -> float:
        if name == "constant":
            return 1.0
        if name == "cosine":
            final = kw.get("final", 0.1)
            t = min(step / max(steps, 1), 1.0)
            return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * t))
        if name == "decay":
            return kw.get("final", 0.3) if step >= kw.get("start", 0.9) * steps else 1.0
        if name == "inverse_power":
            spe = int(kw.get("steps_per_epoch", 0))
            k = step // spe if spe else step
            return 1.0 / (k + 1) ** kw.get("power", 0.5)
        raise ConfigError(f"unknown schedule {name!r} (constant, cosine, decay, inverse_power)")

    base(0)  # validate the name now, not at the first step

    def factor(step: int) -> float:
        ramp = min(1.0, (step + 1) / warmup) if warmup else 1.0
        return ramp * base(step)

    return factor
