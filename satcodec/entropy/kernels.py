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
    escaped values, their rows' supports), then ``acc`` updated with this channel.

    Two passes: the rows and their counts, then each symbol written straight to its place in
    the stream (and the activity updated); escapes, rare, are put in stream order after."""
    n = values.size
    rows = channel_rows(acc, decoded, base, lut)
    counts = np.zeros(256, np.int64)
    for p in range(n):
        counts[rows[p]] += 1
    fill = np.zeros(256, np.int64)
    s = 0
    for t in range(256):
        fill[t] = s
        s += counts[t]
    js = np.empty(n, np.int32)
    nesc = 0
    for p in range(n):
        r = rows[p]
        L = support[r]
        v = np.int64(values[p])
        j = v + L
        if j < 0 or j > 2 * L:
            j = 2 * L + 1
            nesc += 1
        js[fill[r]] = j
        fill[r] += 1
        m = v if v >= 0 else -v
        if m > cap:
            m = cap
        acc[p] += m * reciprocal
    esc_v = np.empty(nesc, np.int64)
    esc_l = np.empty(nesc, np.int64)
    if nesc:
        esc_r = np.empty(nesc, np.int64)
        e = 0
        for p in range(n):  # raster order ...
            L = support[rows[p]]
            v = np.int64(values[p])
            if v + L < 0 or v + L > 2 * L:
                esc_v[e], esc_l[e], esc_r[e] = v, L, rows[p]
                e += 1
        by_row = np.argsort(esc_r, kind="mergesort")  # ... to stream order: by row, stable
        esc_v, esc_l = esc_v[by_row], esc_l[by_row]
    return js, counts, esc_v, esc_l


@njit(cache=True, nogil=True)
def level_stats(
    magnitudes: np.ndarray,
    acc: np.ndarray,
    decoded: int,
    level_lut: np.ndarray,
    zero_level: int,
    levels: int,
) -> np.ndarray:
    """(3, levels) float64: zeros, non-zeros and sum of ``|k| - 1/2`` per context level.

    ``level_lut`` maps an activity to its level (the delta LUT as level indices, uint8: a
    quarter of its cache footprint, and no division by the level step); ``zero_level`` is the
    level of delta 0, every position's before any channel is decoded. ``magnitudes`` may be
    the signed symbols. Counted in integers, in four interleaved histograms (consecutive
    positions often share a level: one histogram would wait on its own last store), and
    converted at the end: exact, so the same floats as numpy's ``bincount``."""
    z = np.zeros((4, levels), np.int64)
    nz = np.zeros((4, levels), np.int64)
    sm = np.zeros((4, levels), np.int64)
    top = level_lut.size - 1
    for p in range(acc.size):
        if decoded == 0:
            lv = zero_level
        else:
            lv = level_lut[min(acc[p] // decoded, top)]
        a = abs(np.int64(magnitudes[p]))
        k = p & 3
        z[k, lv] += a == 0
        nz[k, lv] += a != 0
        sm[k, lv] += a
    stats = np.empty((3, levels), np.float64)
    for lv in range(levels):
        nn = nz[0, lv] + nz[1, lv] + nz[2, lv] + nz[3, lv]
        stats[0, lv] = float(z[0, lv] + z[1, lv] + z[2, lv] + z[3, lv])
        stats[1, lv] = float(nn)
        stats[2, lv] = float(sm[0, lv] + sm[1, lv] + sm[2, lv] + sm[3, lv]) - 0.5 * float(nn)
    return stats


@njit(cache=True, nogil=True)
def padded_bits(bits_per_row: np.ndarray, margin: int) -> np.ndarray:
    """``bits_per_row`` (3, 256) widened by ``margin`` rows each side, the end rows repeated:
    ``out[k, r + margin] = bits_per_row[k, clip(r, 0, 255)]``, so a base plus a level offset
    indexes it without a clip."""
    out = np.empty((3, 256 + 2 * margin), np.float64)
    for k in range(3):
        for i in range(256 + 2 * margin):
            r = min(max(i - margin, 0), 255)
            out[k, i] = bits_per_row[k, r]
    return out


@njit(cache=True, nogil=True)
def _best_base(
    stats: np.ndarray,
    centre: int,
    window: np.ndarray,
    levels_arr: np.ndarray,
    bits_pad: np.ndarray,
    margin: int,
) -> tuple[int, float]:
    """The candidate base (``centre + window``, clipped to the table) of least code length,
    and that length; ``window`` is a contiguous ascending range, ``bits_pad`` the
    :func:`padded_bits` of the rows (``margin`` >= the largest level offset).

    The same argmin and the same floats as scoring each candidate in turn: every candidate's
    cost is summed in the same order (channel statistic k, then level), one level at a time
    across all candidates (a loop the compiler vectorises). Clipped candidates repeat the end
    rows' costs exactly, so scanning the distinct bases in ascending order with a strict ``<``
    picks what ``np.argmin`` over the window picks."""
    # only the populated levels: an empty one adds exact zeros, so skipping it changes nothing
    used = np.empty(levels_arr.size, np.int64)
    nu = 0
    for lv in range(levels_arr.size):
        if stats[0, lv] != 0.0 or stats[1, lv] != 0.0:
            used[nu] = lv
            nu += 1
    lo = min(max(centre + window[0], 0), 255)
    hi = min(max(centre + window[window.size - 1], 0), 255)
    n = hi - lo + 1
    costs = np.zeros(n, np.float64)
    for k in range(3):
        for u in range(nu):
            lv = used[u]
            st = stats[k, lv]
            off = lo + levels_arr[lv] + margin
            row = bits_pad[k, off : off + n]
            for j in range(n):
                costs[j] += row[j] * st
    best, arg = np.inf, 0
    for j in range(n):
        if costs[j] < best:
            best, arg = costs[j], lo + j
    return arg, best


@njit(cache=True, nogil=True)
def fit_bases(
    magnitudes: np.ndarray,
    plain: np.ndarray,
    order: np.ndarray,
    window: np.ndarray,
    levels_arr: np.ndarray,
    bits_per_row: np.ndarray,
    level_lut: np.ndarray,
    zero_level: int,
    reciprocal: np.ndarray,
    cap: int,
) -> np.ndarray:
    """The context model's bases, channel by channel in ``order`` (see
    :func:`satcodec.entropy.context.fit_context_bases`)."""
    base = plain.copy()
    acc = np.zeros(magnitudes.shape[1], np.int64)
    margin = max(abs(levels_arr[0]), abs(levels_arr[levels_arr.size - 1]))
    bits_pad = padded_bits(bits_per_row, margin)
    for i in range(order.size):
        c = order[i]
        stats = level_stats(magnitudes[c], acc, i, level_lut, zero_level, levels_arr.size)
        base[c] = _best_base(stats, plain[c], window, levels_arr, bits_pad, margin)[0]
        accumulate(acc, magnitudes[c], reciprocal[base[c]], cap)
    return base


@njit(cache=True, nogil=True)
def quantise_stats(
    latents: np.ndarray, step: np.floating, max_symbol: np.floating, deadzone: np.floating
) -> tuple[np.ndarray, np.ndarray]:
    """(symbols int32 (C, n), stats float64 (C, 3)) of one tile.

    The symbols are numpy's ``rint(clip(latents / step, -max, max))``, bit for bit (the
    division in the latents' precision: ``step``, ``max_symbol`` and ``deadzone`` come typed
    as the latents are; round half to even), with ``deadzone != 0``
    ``sign(x) * rint(max(|x| - deadzone, 0))`` of that clipped ``x``, clipped again (a
    negative deadzone rounds magnitudes up); ``deadzone == 0`` leaves the first rule untouched. ``stats`` are each channel's zeros, non-zeros and sum
    of ``|k| - 1/2``: the per-channel fit's sufficient statistics, exact in float64 (integer
    and half-integer sums), so the fit made from them equals the numpy one. A NaN latent
    leaves NaN in its channel's zero count."""
    C, n = latents.shape
    symbols = np.empty((C, n), np.int32)
    stats = np.zeros((C, 3), np.float64)
    for c in range(C):
        row = latents[c]
        out = symbols[c]
        nnz = 0
        total = 0
        for p in range(n):
            x = min(max(row[p] / step, -max_symbol), max_symbol)
            if x != x:  # NaN: no integer stands for it (the caller refuses the tile)
                stats[c, 0] = np.nan
                x = 0.0
            if deadzone != 0:
                m = abs(x) - deadzone
                x = (m if x > 0 else -m) if m > 0 else 0.0
                x = min(max(x, -max_symbol), max_symbol)
            k = np.int32(np.rint(x))
            out[p] = k
            a = abs(k)
            nnz += a != 0
            total += a
        if stats[c, 0] == stats[c, 0]:
            stats[c, 0] = float(n - nnz)
        stats[c, 1] = float(nnz)
        stats[c, 2] = float(total) - 0.5 * float(nnz)
    return symbols, stats


@njit(cache=True, nogil=True)
def estimate_bits_at_step(
    latents: np.ndarray,
    step: float,
    context: bool,
    bits_per_row: np.ndarray,
    level_lut: np.ndarray,
    zero_level: int,
    levels_arr: np.ndarray,
    reciprocal: np.ndarray,
    window: np.ndarray,
    max_symbol: int,
    cap: int,
    deadzone: float,
) -> float:
    """Rate control's estimate of one tile's payload bits at ``step``, from counts.

    Quantises as the encoder does, fits the per-channel rows from three sufficient statistics
    (zeros, non-zeros, sum of ``|k| - 1/2``) and, for the context model, each channel's base
    from the same statistics per context level; the bits are the discretised-Laplace code
    length those statistics give (the table's rows are this code to within ~0.1 %). One pass
    over the latents per channel, no coding and no per-symbol table lookups."""
    C, n = latents.shape
    nl = levels_arr.size
    # the encoder's own quantiser (signed symbols: the level counts take |k| as they go)
    symbols, st = quantise_stats(
        latents, np.float32(step), np.float32(max_symbol), np.float32(deadzone)
    )
    plain = np.empty(C, np.int64)
    bits = 0.0
    for c in range(C):
        n0, nnz, exc = st[c, 0], st[c, 1], st[c, 2]
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
    margin = max(abs(levels_arr[0]), abs(levels_arr[nl - 1]))
    bits_pad = padded_bits(bits_per_row, margin)
    for i in range(C):
        c = order[i]
        stats = level_stats(symbols[c], acc, i, level_lut, zero_level, nl)
        arg, best = _best_base(stats, plain[c], window, levels_arr, bits_pad, margin)
        bits += best
        accumulate(acc, symbols[c], reciprocal[arg], cap)
    return bits


@njit(cache=True, nogil=True)
def _escape_class(v: np.int64, support: np.int64) -> tuple[int, int, int]:
    """(class ``2n + sign``, mantissa, mantissa size ``2^n``) of an escaped symbol ``v``."""
    m = (v if v >= 0 else -v) - support  # >= 1
    n = 0
    while (m >> (n + 1)) > 0:
        n += 1
    return 2 * n + (1 if v < 0 else 0), m - (np.int64(1) << n), np.int64(1) << n


@njit(cache=True, nogil=True)
def encode_tile(
    flat: np.ndarray,
    base: np.ndarray,
    order: np.ndarray,
    lut: np.ndarray,
    support: np.ndarray,
    reciprocal: np.ndarray,
    cap: int,
    max_symbol: int,
) -> tuple[bool, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every coder operation of one context-model tile, in decoding order, in one call.

    Returns ``(ok, js, ops, classes, mantissas, sizes)``: ``ok`` False (and nothing else
    filled) when a symbol lies beyond ``±max_symbol``; ``ops`` (m, 3) int64 rows
    ``(kind, start, end)``: kind ``t >= 0`` codes ``js[start:end]`` with table row ``t``,
    ``-1`` escape ``classes[start:end]``, ``-2`` ``mantissas[start:end]`` of sizes
    ``sizes[start:end]``. The same operations, symbols and order as the per-channel
    :func:`encode_channel` loop with ``coder.escape_ops``, without a Python call per
    channel."""
    C, n = flat.shape
    for c in range(C):
        for p in range(n):
            v = flat[c, p]
            if v > max_symbol or v < -max_symbol:
                e32 = np.empty(0, np.int32)
                return False, e32, np.empty((0, 3), np.int64), e32, e32, e32
    js = np.empty(C * n, np.int32)
    ops = np.empty((C * 258, 3), np.int64)
    classes = np.empty(C * n, np.int32)
    mantissas = np.empty(C * n, np.int32)
    sizes = np.empty(C * n, np.int32)
    acc = np.zeros(n, np.int64)
    m = 0
    nc = 0
    nm = 0
    for i in range(C):
        c = order[i]
        b = base[c]
        j_c, counts, esc_v, esc_l = encode_channel(
            flat[c], acc, i, b, lut, support, reciprocal[b], cap
        )
        off = i * n
        js[off : off + n] = j_c
        s = 0
        for t in range(256):
            if counts[t]:
                ops[m, 0] = t
                ops[m, 1] = off + s
                ops[m, 2] = off + s + counts[t]
                m += 1
                s += counts[t]
        if esc_v.size:
            c0 = nc
            m0 = nm
            for q in range(esc_v.size):
                cls, mant, size = _escape_class(esc_v[q], esc_l[q])
                classes[nc] = cls
                nc += 1
                if size > 1:
                    mantissas[nm] = mant
                    sizes[nm] = size
                    nm += 1
            ops[m, 0] = -1
            ops[m, 1] = c0
            ops[m, 2] = nc
            m += 1
            if nm > m0:
                ops[m, 0] = -2
                ops[m, 1] = m0
                ops[m, 2] = nm
                m += 1
    return True, js, ops[:m], classes[:nc], mantissas[:nm], sizes[:nm]


__all__ = [
    "accumulate",
    "channel_groups",
    "channel_rows",
    "encode_channel",
    "encode_tile",
    "fit_bases",
    "estimate_bits_at_step",
    "level_stats",
    "quantise_stats",
]
