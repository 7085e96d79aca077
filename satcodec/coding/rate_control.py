"""Rate control: the quantisation step for a target rate or quality, on an Encoder's latents.

:func:`step_for_bpp` searches the step on the entropy model's table estimate (no coding);
:func:`encode_at_bpp` then refines it on the real file size. Both work on an
:class:`~satcodec.coding.encoder.Encoder` (its ``estimated_bits``, ``encode`` and ``pixels``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from satcodec.errors import RateControlError
from satcodec.metrics import bits_per_pixel

if TYPE_CHECKING:
    from satcodec.coding.encoder import Encoder

QUALITY_NATIVE = 50.0  # --quality 50 = the model's trained operating point (step 1)
QUALITY_PER_OCTAVE = 12.5  # every 12.5 quality points halve / double the step
MIN_STEP, MAX_STEP = 1 / 64, 256.0


def step_for_quality(quality: float) -> float:
    """Fixed-quality mode: 50 is the model's native point; ±12.5 per octave of step."""
    if not 0 <= quality <= 100:
        raise RateControlError(f"quality must be in 0..100, got {quality}")
    return 2 ** ((QUALITY_NATIVE - quality) / QUALITY_PER_OCTAVE)


def step_for_bpp(enc: Encoder, bpp: float) -> float:
    """Bisect the quantisation step (log domain) on the table-estimated rate."""
    target = bpp * enc.pixels
    sample = max(1, len(enc.latent_tiles) // 64)
    lo, hi = math.log2(MIN_STEP), math.log2(MAX_STEP)
    if enc.estimated_bits(2**hi, sample) > target:
        raise RateControlError(f"{bpp} bpp is below the lowest rate this model reaches")
    # the cheap upper-bound model's estimate first (the per-channel one for the context
    # model): its step is an upper bound of the model's, whose saving is < 3 octaves of step
    # (measured: < 40 % of the rate)
    bound = enc.entropy_model.upper_bound
    for _ in range(24):
        mid = 0.5 * (lo + hi)
        if enc.estimated_bits(2**mid, sample, bound or enc.entropy_model) > target:
            lo = mid
        else:
            hi = mid
    if bound is None:  # the model is its own bound: done
        return 2**hi

    # then the model's estimate by regula falsi (Illinois) on log rate against log step,
    # which is smooth and nearly linear: ~5 estimates instead of a bisection's 12+
    def excess(x: float) -> float:  # > 0: too many bits at step 2^x
        return math.log2(max(enc.estimated_bits(2**x, sample), 1.0) / target)

    lo, hi = max(math.log2(MIN_STEP), hi - 3.0), hi
    f_lo, f_hi = excess(lo), excess(hi)
    if f_lo <= 0:  # the saving is beyond the bracket: widen it to the smallest step
        lo = math.log2(MIN_STEP)
        f_lo = excess(lo)
        if f_lo <= 0:
            return 2**lo
    side = 0
    for _ in range(10):
        if f_hi > -0.002:  # within 0.14 % below the target
            break
        x = hi - f_hi * (hi - lo) / (f_hi - f_lo)
        f = excess(x)
        if f > 0:
            lo, f_lo = x, f
            f_hi = f_hi / 2 if side == -1 else f_hi
            side = -1
        else:
            hi, f_hi = x, f
            f_lo = f_lo / 2 if side == 1 else f_lo
            side = 1
    return 2**hi


def encode_at_bpp(
    enc: Encoder, bpp: float, never_exceed: bool = False, tolerance: float = 0.02
) -> bytes:
    """Encode at ``bpp`` (file size) within ``tolerance``; ``never_exceed`` keeps it ≤ bpp."""
    if not bpp > 0:
        raise RateControlError(f"target rate must be positive, got {bpp} bpp")
    budget = bpp * enc.pixels / 8
    step = step_for_bpp(enc, bpp)
    data = enc.encode(step)
    best = data
    # refine on the real file size: the table estimate ignores the coder's termination
    for _ in range(8):
        ratio = len(data) / budget
        ok = ratio <= 1.0 if never_exceed else abs(ratio - 1) <= tolerance
        if ok and (not never_exceed or ratio >= 1 - 2 * tolerance):
            return data
        # rate ~ −k·log2(step): at ~1 bit/latent the slope is about 1 bit per octave
        step *= ratio ** (1.5 if ratio > 1 else 1.0)
        step = min(max(step, MIN_STEP), MAX_STEP)
        data = enc.encode(step)
        if (not never_exceed or len(data) <= budget) and abs(len(data) / budget - 1) < abs(
            len(best) / budget - 1
        ):
            best = data
    if never_exceed and len(best) > budget:
        if len(data) <= budget:
            return data
        raise RateControlError(f"cannot fit the image in {bpp} bpp with this model")
    got = bits_per_pixel(len(best), enc.pixels)
    if not never_exceed and abs(got / bpp - 1) > 0.03:
        # the promise is ±3 %: say so instead of returning a stream far off target
        raise RateControlError(
            f"this model cannot reach {bpp} bpp on this image (closest {got:.3f} bpp); "
            "use --max-bpp, --quality or another --model"
        )
    return best


__all__ = [
    "MAX_STEP",
    "MIN_STEP",
    "QUALITY_NATIVE",
    "QUALITY_PER_OCTAVE",
    "encode_at_bpp",
    "step_for_bpp",
    "step_for_quality",
]
