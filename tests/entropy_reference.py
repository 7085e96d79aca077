"""The channel-context coder's numpy implementation as it was before the compiled kernels
(satcodec 0.1, commit e4021e1): the byte-identity reference of tests/test_entropy_kernels.py.
Not used by the package."""

from __future__ import annotations

import numpy as np

from satcodec.entropy.coder import (
    CoderOp,
    _check_indices,
    _check_shape,
    _check_symbols,
    _model,
    decode_escapes,
    encode_ops,
    escape_ops,
    open_payload,
)
from satcodec.entropy.context import (
    _DELTA_LUT,
    DELTA_LEVELS,
    DELTA_STEP,
    MAG_CAP,
    MAX_DELTA,
    RECIPROCAL_Q12,
    channel_order,
)
from satcodec.entropy.scales import LAPLACE_BITS_PER_ROW
from satcodec.entropy.table import NUM_SCALES, load_table
from satcodec.errors import EntropyCodingError


def _delta(acc: np.ndarray, decoded: int) -> np.ndarray:
    if decoded == 0:
        return np.zeros(acc.shape, np.int64)
    return _DELTA_LUT[np.minimum(acc // decoded, _DELTA_LUT.size - 1)].astype(np.int64)


def _contribution(magnitude: np.ndarray, base: int) -> np.ndarray:
    return np.minimum(magnitude, MAG_CAP).astype(np.int64) * RECIPROCAL_Q12[base]


def context_rows(symbols: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Table row of every symbol, (C, h*w) int64: what encoder and decoder both derive."""
    sym = _check_symbols(symbols)
    idx = _check_indices(base, sym.shape[0])
    C = sym.shape[0]
    flat = np.abs(sym.reshape(C, sym.shape[1] * sym.shape[2]))
    rows = np.empty(flat.shape, np.int64)
    acc = np.zeros(flat.shape[1], np.int64)
    for i, c in enumerate(channel_order(idx)):
        rows[c] = np.clip(idx[c] + _delta(acc, i), 0, NUM_SCALES - 1)
        acc += _contribution(flat[c], int(idx[c]))
    return rows


_WINDOW = np.arange(-40, 25)


def fit_context_bases(symbols: np.ndarray, plain: np.ndarray) -> np.ndarray:
    """Bases that minimise each channel's code length under the context model (encoder only).

    ``plain`` is the per-channel fit (:func:`~satcodec.entropy.scales.fit_scale_indices`): it
    fixes the order the bases are chosen in, and the search window around it. The decoder
    re-derives its order from the bases actually sent, so this never has to match it.
    """
    sym = np.asarray(symbols)
    C = sym.shape[0]
    flat = np.abs(sym.reshape(C, sym.shape[1] * sym.shape[2])).astype(np.int64)
    plain = np.asarray(plain, np.int64)
    base = plain.copy()
    acc = np.zeros(flat.shape[1], np.int64)
    nl = DELTA_LEVELS.size
    for i, c in enumerate(channel_order(plain)):
        level = (_delta(acc, i) + MAX_DELTA) // DELTA_STEP
        a = flat[c]
        nz = a > 0
        stats = np.stack(
            [
                np.bincount(level[~nz], minlength=nl),
                np.bincount(level[nz], minlength=nl),
                np.bincount(level[nz], weights=a[nz] - 0.5, minlength=nl),
            ]
        ).astype(np.float64)  # (3, levels)
        cand = np.clip(plain[c] + _WINDOW, 0, NUM_SCALES - 1)
        rows = np.clip(cand[:, None] + DELTA_LEVELS[None, :], 0, NUM_SCALES - 1)
        cost = np.einsum("kcl,kl->c", LAPLACE_BITS_PER_ROW[:, rows], stats)
        base[c] = cand[int(np.argmin(cost))]
        acc += _contribution(a, int(base[c]))
    return base.astype(np.uint8)


def _channel_groups(rows_c: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(row, positions in raster order) in increasing row order."""
    r = rows_c.astype(np.uint8)  # rows are 0..255: numpy's stable sort is a radix sort here
    order = np.argsort(r, kind="stable")
    counts = np.bincount(r, minlength=NUM_SCALES)
    ends = np.cumsum(counts)
    return [(int(t), order[ends[t] - counts[t] : ends[t]]) for t in np.flatnonzero(counts)]


def encode_symbols_context(symbols: np.ndarray, base: np.ndarray) -> bytes:
    """Entropy-code one tile with the context model; ``base`` (C,) is sent as side information."""
    sym = _check_symbols(symbols)
    idx = _check_indices(base, sym.shape[0])
    C = sym.shape[0]
    flat = sym.reshape(C, sym.shape[1] * sym.shape[2])
    rows = context_rows(sym, idx)
    support = load_table().support
    ops: list[CoderOp] = []  # in decoding order
    for c in channel_order(idx):
        esc_v, esc_l = [], []
        for t, pos in _channel_groups(rows[c]):
            L = int(support[t])
            v = flat[c, pos]
            j = v + np.int32(L)
            esc = j.view(np.uint32) > 2 * L
            if esc.any():
                esc_v.append(v[esc].astype(np.int64))
                esc_l.append(np.full(int(esc.sum()), L, np.int64))
                j[esc] = 2 * L + 1
            ops.append((j, _model(t), None))
        if esc_v:
            ops += escape_ops(np.concatenate(esc_v), np.concatenate(esc_l))
    return encode_ops(ops)


def _decode(payload: bytes, base: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    C, h, w = _check_shape(shape)
    idx = _check_indices(base, C)
    n = h * w
    out = np.zeros((C, n), dtype=np.int32)
    coder = open_payload(payload, C, n)
    if coder is None:
        return out.reshape(C, h, w)
    support = load_table().support
    acc = np.zeros(n, np.int64)
    for i, c in enumerate(channel_order(idx)):
        rows_c = np.clip(idx[c] + _delta(acc, i), 0, NUM_SCALES - 1)
        esc_pos, esc_l = [], []
        for t, pos in _channel_groups(rows_c):
            L = int(support[t])
            j = coder.decode(_model(t), pos.size)
            out[c, pos] = j - np.int32(L)
            e = j == 2 * L + 1
            if e.any():
                esc_pos.append(pos[e])
                esc_l.append(np.full(int(e.sum()), L, np.int64))
        if esc_pos:
            out[c, np.concatenate(esc_pos)] = decode_escapes(coder, np.concatenate(esc_l))
        acc += _contribution(np.abs(out[c]), int(idx[c]))
    if not coder.is_empty():
        raise EntropyCodingError("payload not fully consumed (corrupt or wrong scale indices)")
    return out.reshape(C, h, w)
