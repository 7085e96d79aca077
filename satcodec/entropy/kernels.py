"""Compiled inner loops of the entropy coders (numba, ``nogil`` so tiles code in parallel).

The channel-context model (:mod:`.context`) walks every latent once per channel: its table
row from the activity of the channels before it, then the symbols grouped by row. In numpy
that is a dozen array passes and temporaries per channel; here it is one loop. Every kernel
is integer-only where the decoder depends on it (rows, grouping, activity), so the streams
are byte-identical to the numpy reference (``tests/test_entropy_kernels.py`` checks it on
the fuzz corpus and real scenes). The float kernels (:func:`estimate_bits_at_step`) serve
the encoder's rate control only, never the stream.

Compiled on first use and cached beside this module (or in ``NUMBA_CACHE_DIR``); a read-only
install compiles once per process (about 2 s).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _delta_of(acc_p: np.int64, decoded: int, lut: np.ndarray) -> int:
    """The row offset of a position's activity (0 before any channel is decoded)."""
    if decoded == 0:
        return 0
    q = acc_p // decoded
    if q > lut.size - 1:
        q = lut.size - 1
    return lut[q]


@njit(cache=True, nogil=True)
def _row_of(acc_p: np.int64, decoded: int, base: int, lut: np.ndarray) -> int:
    r = base + _delta_of(acc_p, decoded, lut)
    if r < 0:
        return 0
    if r > 255:
        return 255
    return r


@njit(cache=True, nogil=True)
def accumulate(acc: np.ndarray, values: np.ndarray, reciprocal: np.int64, cap: int) -> None:
    """``acc += min(|values|, cap) * reciprocal`` in place (the activity update)."""
    for p in range(acc.size):
        m = abs(np.int64(values[p]))
        if m > cap:
            m = cap
        acc[p] += m * reciprocal


@njit(cache=True, nogil=True)
def channel_rows(acc: np.ndarray, decoded: int, base: int, lut: np.ndarray) -> np.ndarray:
    """Table row of every position of one channel (uint8), from the activity so far."""
    rows = np.empty(acc.size, np.uint8)
    for p in range(acc.size):
        rows[p] = _row_of(acc[p], decoded, base, lut)
    return rows


@njit(cache=True, nogil=True)
def channel_groups(
    acc: np.ndarray, decoded: int, base: int, lut: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(positions grouped by row, stable; count per row (256,)): the stream order of a channel."""
    n = acc.size
    rows = channel_rows(acc, decoded, base, lut)
    counts = np.zeros(256, np.int64)
    for p in range(n):
        counts[rows[p]] += 1
    fill = np.zeros(256, np.int64)
    s = 0
    for t in range(256):
        fill[t] = s
        s += counts[t]
    order = np.empty(n, np.int64)
    for p in range(n):
        r = rows[p]
        order[fill[r]] = p
        fill[r] += 1
    return order, counts


@njit(cache=True, nogil=True)
def encode_channel(
    values: np.ndarray,
    acc: np.ndarray,
    decoded: int,
    base: int,
    lut: np.ndarray,
    support: np.ndarray,
    reciprocal: np.int64,
    cap: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One channel of the context coder: (row symbols ``j`` in stream order, count per row,
    escaped values, their rows' supports), then ``acc`` updated with this channel."""
    order, counts = channel_groups(acc, decoded, base, lut)
    n = values.size
    js = np.empty(n, np.int32)
    esc_v = np.empty(n, np.int64)
    esc_l = np.empty(n, np.int64)
    nesc = 0
    s = 0
    for t in range(256):
        e = s + counts[t]
        L = support[t]
        for q in range(s, e):
            v = np.int64(values[order[q]])
            j = v + L
            if j < 0 or j > 2 * L:
                esc_v[nesc] = v
                esc_l[nesc] = L
                nesc += 1
                j = 2 * L + 1
            js[q] = j
        s = e
    accumulate(acc, values, reciprocal, cap)
    return js, counts, esc_v[:nesc], esc_l[:nesc]


@njit(cache=True, nogil=True)
def level_stats(
    magnitudes: np.ndarray,
    acc: np.ndarray,
    decoded: int,
    lut: np.ndarray,
    max_delta: int,
    delta_step: int,
    levels: int,
) -> np.ndarray:
    """(3, levels) float64: zeros, non-zeros and sum of ``|k| - 1/2`` per context level.

    Counts and half-integer sums are exact in float64, so the same as numpy's ``bincount``."""
    stats = np.zeros((3, levels), np.float64)
    for p in range(acc.size):
        lv = (_delta_of(acc[p], decoded, lut) + max_delta) // delta_step
        a = magnitudes[p]
        if a == 0:
            stats[0, lv] += 1.0
        else:
            stats[1, lv] += 1.0
            stats[2, lv] += a - 0.5
    return stats


@njit(cache=True, nogil=True)
def _best_base(
    stats: np.ndarray,
    centre: int,
    window: np.ndarray,
    levels_arr: np.ndarray,
    bits_per_row: np.ndarray,
) -> tuple[int, float]:
    """The candidate base (``centre + window``, clipped) of least code length, and that length.

    Ties go to the first candidate, as ``np.argmin``: candidates whose rows are all the same
    (clipped at the table's ends) cost bit-identical sums here, summed in the same order."""
    # only the populated levels: an empty one adds exact zeros, so skipping it changes nothing
    used = np.empty(levels_arr.size, np.int64)
    nu = 0
    for lv in range(levels_arr.size):
        if stats[0, lv] != 0.0 or stats[1, lv] != 0.0:
            used[nu] = lv
            nu += 1
    best, arg = np.inf, 0
    for w in range(window.size):
        cand = centre + window[w]
        if cand < 0:
            cand = 0
        elif cand > 255:
            cand = 255
        cost = 0.0
        for k in range(3):
            for u in range(nu):
                lv = used[u]
                r = cand + levels_arr[lv]
                if r < 0:
                    r = 0
                elif r > 255:
                    r = 255
                cost += bits_per_row[k, r] * stats[k, lv]
        if cost < best:
            best, arg = cost, cand
    return arg, best


@njit(cache=True, nogil=True)
def fit_bases(
    magnitudes: np.ndarray,
    plain: np.ndarray,
    order: np.ndarray,
    window: np.ndarray,
    levels_arr: np.ndarray,
    bits_per_row: np.ndarray,
    lut: np.ndarray,
    reciprocal: np.ndarray,
    cap: int,
    max_delta: int,
    delta_step: int,
) -> np.ndarray:
    """The context model's bases, channel by channel in ``order`` (see
    :func:`satcodec.entropy.context.fit_context_bases`)."""
    base = plain.copy()
    acc = np.zeros(magnitudes.shape[1], np.int64)
    for i in range(order.size):
        c = order[i]
        stats = level_stats(magnitudes[c], acc, i, lut, max_delta, delta_step, levels_arr.size)
        base[c] = _best_base(stats, plain[c], window, levels_arr, bits_per_row)[0]
        accumulate(acc, magnitudes[c], reciprocal[base[c]], cap)
    return base


@njit(cache=True, nogil=True)
def estimate_bits_at_step(
    latents: np.ndarray,
    step: float,
    context: bool,
    bits_per_row: np.ndarray,
    lut: np.ndarray,
    levels_arr: np.ndarray,
    reciprocal: np.ndarray,
    window: np.ndarray,
    max_symbol: int,
    cap: int,
    max_delta: int,
    delta_step: int,
) -> float:
    """Rate control's estimate of one tile's payload bits at ``step``, from counts.

    Quantises as the encoder does, fits the per-channel rows from three sufficient statistics
    (zeros, non-zeros, sum of ``|k| - 1/2``) and, for the context model, each channel's base
    from the same statistics per context level; the bits are the discretised-Laplace code
    length those statistics give (the table's rows are this code to within ~0.1 %). One pass
    over the latents per channel, no coding and no per-symbol table lookups."""
    C, n = latents.shape
    nl = levels_arr.size
    inv = np.float32(step)
    mags = np.empty((C, n), np.int64)
    plain = np.empty(C, np.int64)
    bits = 0.0
    for c in range(C):
        n0 = 0.0
        nnz = 0.0
        exc = 0.0
        for p in range(n):
            x = latents[c, p] / inv
            if x > max_symbol:
                x = max_symbol
            elif x < -max_symbol:
                x = -max_symbol
            a = abs(np.int64(np.rint(x)))
            mags[c, p] = a
            if a == 0:
                n0 += 1.0
            else:
                nnz += 1.0
                exc += a - 0.5
        best, arg = np.inf, 0
        for r in range(256):
            cost = n0 * bits_per_row[0, r] + nnz * bits_per_row[1, r] + exc * bits_per_row[2, r]
            if cost < best:
                best, arg = cost, r
        plain[c] = arg
        if not context:
            bits += best
    if not context:
        return bits
    order = np.argsort(-plain, kind="mergesort")
    acc = np.zeros(n, np.int64)
    for i in range(C):
        c = order[i]
        stats = level_stats(mags[c], acc, i, lut, max_delta, delta_step, nl)
        arg, best = _best_base(stats, plain[c], window, levels_arr, bits_per_row)
        bits += best
        accumulate(acc, mags[c], reciprocal[arg], cap)
    return bits


__all__ = [
    "accumulate",
    "channel_groups",
    "channel_rows",
    "encode_channel",
    "fit_bases",
    "estimate_bits_at_step",
    "level_stats",
]
