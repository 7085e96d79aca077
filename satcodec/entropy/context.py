"""Cross-channel context model: each latent's Laplacian scale follows the local activity of
the channels decoded before it.

The per-channel model (:mod:`.coder`) gives every latent of a channel and tile one scale, so
a flat field and a field edge in the same tile cost the same per symbol. But the channels of
the analysis transform are active in the same places: where one is large, the others tend
to be. This model decodes the channels one after the other (largest transmitted scale
first) and gives latent ``x`` of channel ``c`` the table row

    row_c(x) = clip(base_c + delta(A_c(x)), 0, 255)

where ``base_c`` is the channel's transmitted index (the side information is unchanged: one
byte per channel and tile), and ``A_c(x)`` is the mean normalised magnitude
``min(|k|, MAG_CAP) / scale(base)`` of the channels already decoded, at the same position.
``delta`` maps activity to a row offset along ``g(A) = ((A + eps) / (1 + eps))^gamma``
(eps = 0.3, gamma = 0.8: activity 1 keeps the base scale, silence shrinks it 3x, a busy
spot widens it), in steps of ``DELTA_STEP`` table rows.

Everything the decoder computes is integer: ``A`` is a Q12 fixed-point ratio built from
``RECIPROCAL_Q12`` (exact rational rounding of the table's float64 scales) and an integer
division; ``delta`` is a lookup in ``DELTA_THRESHOLDS_Q12``, computed in :mod:`decimal`
(correctly rounded on every platform). So the model keeps the property the table gives
the per-channel coder: a stream decodes identically on every machine.

Measured gain over the per-channel model with the same bases (real payloads, shipped
models, ``bench/results/context_model.md``): largest on heterogeneous scenes.

Stream (one constriction ANS stack, decoded in this order), for each channel in decoding
order: its symbols grouped by row in increasing row order (raster order within a row),
then the escape classes of its escaped symbols, then their mantissas. Escapes are decoded
per channel because the next channel's context needs the true magnitudes.
"""

from __future__ import annotations

from decimal import Decimal, localcontext
from fractions import Fraction

import numpy as np

from satcodec.entropy import kernels
from satcodec.entropy.coder import (
    MAX_ABS_SYMBOL,
    _check_indices,
    _check_shape,
    _check_symbols,
    _model,
    decode_escapes,
    encode_op_table,
    escape_fields,
    guarded_decode,
    open_payload,
)
from satcodec.entropy.rate import _CLASS_BITS
from satcodec.entropy.scales import LAPLACE_BITS_PER_ROW
from satcodec.entropy.table import SCALE_TABLE, load_table
from satcodec.errors import EntropyCodingError

CONTEXT_EPS = Decimal("0.3")
CONTEXT_GAMMA = Decimal("0.8")
Q = 12  # fixed-point bits of the activity ratio
DELTA_STEP = 2  # table rows per context level (2 rows = a factor 1.077 in scale)
MAX_DELTA = 64  # |row offset| limit: a factor 10.7 either way
MAG_CAP = 1023  # larger magnitudes count as this in the activity (bounds the sums)


def _reciprocal_q12() -> np.ndarray:
    # exact: Fraction(float) is the float's exact value, round() on a Fraction is exact
    return np.array([round(Fraction(1 << Q) / Fraction(float(s))) for s in SCALE_TABLE], np.int64)


def _delta_thresholds() -> tuple[np.ndarray, np.ndarray]:
    """(levels, thresholds): ``delta(A) = levels[searchsorted(thresholds, A, 'right')]``."""
    with localcontext() as ctx:
        ctx.prec = 40
        d = (Decimal(512) / Decimal("0.04")).ln() / 255
        levels = list(range(-MAX_DELTA, MAX_DELTA + 1, DELTA_STEP))
        thresholds = []
        one = Decimal(1 << Q)
        for lo in levels[:-1]:
            # the activity where the ideal offset gamma*ln(g)/d crosses lo + DELTA_STEP/2
            mid = Decimal(lo) + Decimal(DELTA_STEP) / 2
            a = ((1 + CONTEXT_EPS) * (mid * d / CONTEXT_GAMMA).exp() - CONTEXT_EPS) * one
            thresholds.append(max(0, int(a.to_integral_value(rounding="ROUND_CEILING"))))
    return np.array(levels, np.int64), np.array(thresholds, np.int64)


RECIPROCAL_Q12 = _reciprocal_q12()
DELTA_LEVELS, DELTA_THRESHOLDS_Q12 = _delta_thresholds()
# the same map as a lookup table over every activity below the last threshold (5x faster
# than searchsorted; activities at or above it all get the top level)
_DELTA_LUT = DELTA_LEVELS[
    np.searchsorted(DELTA_THRESHOLDS_Q12, np.arange(DELTA_THRESHOLDS_Q12[-1] + 1), side="right")
].astype(np.int16)
# the same map to context levels (the encoder's base fit and rate estimate count per level)
_LEVEL_LUT = ((_DELTA_LUT.astype(np.int64) + MAX_DELTA) // DELTA_STEP).astype(np.uint8)
_ZERO_LEVEL = MAX_DELTA // DELTA_STEP  # the level of delta 0


_SUPPORT = load_table().support.astype(np.int64)


def channel_order(base: np.ndarray) -> np.ndarray:
    """Decoding order: largest transmitted scale first, ties by channel number."""
    return np.argsort(-np.asarray(base, np.int64), kind="stable")


def context_rows(symbols: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Table row of every symbol, (C, h*w) int64: what encoder and decoder both derive."""
    sym = _check_symbols(symbols)
    idx = _check_indices(base, sym.shape[0])
    C = sym.shape[0]
    flat = np.ascontiguousarray(sym.reshape(C, sym.shape[1] * sym.shape[2]))
    rows = np.empty(flat.shape, np.int64)
    acc = np.zeros(flat.shape[1], np.int64)
    for i, c in enumerate(channel_order(idx)):
        b = int(idx[c])
        rows[c] = kernels.channel_rows(acc, i, b, _DELTA_LUT)
        kernels.accumulate(acc, flat[c], RECIPROCAL_Q12[b], MAG_CAP)
    return rows


# -- encoder side: choosing the bases ---------------------------------------------------------
_WINDOW = np.arange(-40, 25)
_BITS_PER_ROW = np.ascontiguousarray(LAPLACE_BITS_PER_ROW)


def fit_context_bases(symbols: np.ndarray, plain: np.ndarray) -> np.ndarray:
    """Bases that minimise each channel's code length under the context model (encoder only).

    ``plain`` is the per-channel fit (:func:`~satcodec.entropy.scales.fit_scale_indices`): it
    fixes the order the bases are chosen in, and the search window around it. The decoder
    re-derives its order from the bases actually sent, so this never has to match it.
    """
    sym = np.asarray(symbols)
    C = sym.shape[0]
    flat = np.ascontiguousarray(sym.reshape(C, sym.shape[1] * sym.shape[2]))  # signed: the
    # kernel takes |k| as it goes
    plain = np.asarray(plain, np.int64)
    base = kernels.fit_bases(
        flat,
        plain,
        channel_order(plain),
        _WINDOW,
        DELTA_LEVELS,
        _BITS_PER_ROW,
        _LEVEL_LUT,
        _ZERO_LEVEL,
        RECIPROCAL_Q12,
        MAG_CAP,
    )
    return base.astype(np.uint8)


# -- coding ----------------------------------------------------------------------------------
def encode_symbols_context(symbols: np.ndarray, base: np.ndarray) -> bytes:
    """Entropy-code one tile with the context model; ``base`` (C,) is sent as side information."""
    sym = np.asarray(symbols)
    # int32 symbols go straight to the kernel, which checks their range in its own pass
    sym = sym if sym.dtype == np.int32 and sym.ndim == 3 else _check_symbols(sym)
    idx = _check_indices(base, sym.shape[0])
    C = sym.shape[0]
    flat = np.ascontiguousarray(sym.reshape(C, sym.shape[1] * sym.shape[2]))
    ok, js, ops, classes, mantissas, sizes = kernels.encode_tile(
        flat,
        idx.astype(np.int64),
        channel_order(idx),
        _DELTA_LUT,
        _SUPPORT,
        RECIPROCAL_Q12,
        MAG_CAP,
        MAX_ABS_SYMBOL,
    )
    if not ok:
        raise EntropyCodingError(f"a symbol exceeds |k| <= {MAX_ABS_SYMBOL}")
    return encode_op_table(js, ops, classes, mantissas, sizes)


def _decode(payload: bytes, base: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    C, h, w = _check_shape(shape)
    idx = _check_indices(base, C)
    n = h * w
    out = np.zeros((C, n), dtype=np.int32)
    coder = open_payload(payload, C, n)
    if coder is None:
        return out.reshape(C, h, w)
    support = _SUPPORT
    acc = np.zeros(n, np.int64)
    for i, c in enumerate(channel_order(idx)):
        b = int(idx[c])
        order, counts = kernels.channel_groups(acc, i, b, _DELTA_LUT)
        esc_pos, esc_l = [], []
        s = 0
        for t in np.flatnonzero(counts):
            e = s + int(counts[t])
            pos = order[s:e]
            s = e
            L = int(support[t])
            j = coder.decode(_model(int(t)), pos.size)
            out[c, pos] = j - np.int32(L)
            esc = j == 2 * L + 1
            if esc.any():
                esc_pos.append(pos[esc])
                esc_l.append(np.full(int(esc.sum()), L, np.int64))
        if esc_pos:
            out[c, np.concatenate(esc_pos)] = decode_escapes(coder, np.concatenate(esc_l))
        kernels.accumulate(acc, out[c], RECIPROCAL_Q12[b], MAG_CAP)
    if not coder.is_empty():
        raise EntropyCodingError("payload not fully consumed (corrupt or wrong scale indices)")
    return out.reshape(C, h, w)


def decode_symbols_context(
    payload: bytes, base: np.ndarray, shape: tuple[int, int, int]
) -> np.ndarray:
    """Decode one tile written by :func:`encode_symbols_context` (errors as ``decode_symbols``)."""
    return guarded_decode(_decode, payload, base, shape)


def context_symbol_bits(symbols: np.ndarray, base: np.ndarray) -> float:
    """Code length in bits of :func:`encode_symbols_context` without coding (rate control).

    Exact per-symbol code lengths of the rows the coder uses (escapes included), gathered
    from the table's flat layout: O(N); the payload differs only by ANS termination.
    """
    sym = _check_symbols(symbols)
    idx = _check_indices(base, sym.shape[0])
    return rows_symbol_bits(sym, context_rows(sym, idx))


def rows_symbol_bits(symbols: np.ndarray, rows: np.ndarray) -> float:
    """Exact code length in bits of ``symbols`` coded each with its table row in ``rows`` (the
    same shape), escapes included; any row assignment, e.g. a candidate context model's."""
    r = np.asarray(rows).ravel()
    v = np.asarray(symbols).ravel().astype(np.int64)
    table = load_table()
    L = table.support[r].astype(np.int64)
    j = v + L
    esc = (j < 0) | (j > 2 * L)
    j[esc] = 2 * L[esc] + 1
    bits = float(table.code_lengths[table.offsets[r] + j].sum())
    if esc.any():
        cls, _ = escape_fields(v[esc], L[esc])
        bits += float(_CLASS_BITS[cls].sum() + (cls >> 1).sum())
    return bits


def estimated_bits_at_step(
    latents: np.ndarray, step: float, context: bool = True, deadzone: float = 0.0
) -> float:
    """Rate control's estimate of a tile's payload bits at quantisation ``step``, straight from
    its float latents (C, h, w) at step 1: quantise, fit and count in one compiled pass, with
    the discretised-Laplace code length of the counts (no table lookups, no coding).

    ``context=False`` estimates the per-channel model; ``deadzone`` quantises as
    :func:`~satcodec.entropy.quantiser.quantise_with_stats` does with it. Within ~1 % of the coded size on real
    tiles (``tests/test_rate_control.py``); the encoder refines on the real size after."""
    lat = np.asarray(latents, np.float32)
    if lat.ndim != 3:
        raise EntropyCodingError(f"latents must have shape (C, h, w), got {lat.shape}")
    flat = np.ascontiguousarray(lat.reshape(lat.shape[0], lat.shape[1] * lat.shape[2]))
    if flat.size == 0:
        return 0.0
    return float(
        kernels.estimate_bits_at_step(
            flat,
            float(step),
            bool(context),
            _BITS_PER_ROW,
            _LEVEL_LUT,
            _ZERO_LEVEL,
            DELTA_LEVELS,
            RECIPROCAL_Q12,
            _WINDOW,
            MAX_ABS_SYMBOL,
            MAG_CAP,
            float(deadzone),
        )
    )
