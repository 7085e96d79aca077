"""Entropy coding of one tile's quantised latents with the integer Laplace table.

Model: channel ``c`` of a (C, h, w) tile is i.i.d. with table row ``scale_indices[c]``; the
row covers symbols ``-L..L`` plus ESC. A symbol with ``|k| > L`` is coded as ESC followed by
an escape code for ``v = |k| - L >= 1``: a class ``2*n + sign`` (n = floor(log2 v), uniform
over 48 classes) then the ``n`` low bits of ``v`` (uniform over ``2^n``) -- an Exp-Golomb
code with an explicit sign, enough for every ``|k| < 2^24``.

Stream: one constriction ANS stack, decoded in this order:

1. for each distinct scale index ``t`` in increasing order, the symbols of all channels with
   that index (channels in increasing order, each in raster order) with row ``t``'s model
   -- grouping channels that share a row keeps it one vectorised call per row;
2. the escape classes of all ESC symbols, in the order the ESCs were decoded;
3. their mantissas (only for n >= 1).

Payload = the ANS words as little-endian uint32 (possibly empty: ANS absorbs the first few
dozen bits into its initial state). Nothing else is stored: the caller knows the shape
and sends the scale indices as side information.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import constriction
import numpy as np

from satcodec.entropy.table import NUM_SCALES, TOTAL, load_table
from satcodec.errors import EntropyCodingError

MAX_ABS_SYMBOL = (1 << 24) - 1
"""Largest ``|k|`` :func:`encode_symbols` accepts."""

NUM_ESCAPE_CLASSES = 48  # 2 * 24: n = floor(log2 v) in 0..23, times the sign

_AnsCoder = constriction.stream.stack.AnsCoder
_CLASS_MODEL = constriction.stream.model.Uniform(NUM_ESCAPE_CLASSES)
_MANTISSA_FAMILY = constriction.stream.model.Uniform()  # size given per symbol


@functools.lru_cache(maxsize=NUM_SCALES)
def _model(index: int) -> constriction.stream.model.Categorical:
    # counts / 65536 are exact floats summing to exactly 1, so constriction's quantisation to
    # its 24-bit fixed point is exact integer arithmetic (see table.coder_weights).
    pmf = load_table().row(index) / float(TOTAL)
    return constriction.stream.model.Categorical(pmf, perfect=False)


def _check_symbols(symbols: np.ndarray) -> np.ndarray:
    a = np.asarray(symbols)
    if a.ndim != 3:
        raise EntropyCodingError(f"symbols must have shape (C, h, w), got {a.shape}")
    if a.dtype.kind not in "iu":
        raise EntropyCodingError(f"symbols must be integers, got {a.dtype}")
    if a.size and (int(a.min()) < -MAX_ABS_SYMBOL or int(a.max()) > MAX_ABS_SYMBOL):
        raise EntropyCodingError(f"a symbol exceeds |k| <= {MAX_ABS_SYMBOL}")
    return a.astype(np.int32, copy=False)


def _check_indices(scale_indices: np.ndarray, channels: int) -> np.ndarray:
    a = np.asarray(scale_indices)
    if a.shape != (channels,):
        raise EntropyCodingError(f"scale_indices must have shape ({channels},), got {a.shape}")
    if a.dtype.kind not in "iu":
        raise EntropyCodingError(f"scale_indices must be integers, got {a.dtype}")
    if a.size and (int(a.min()) < 0 or int(a.max()) >= NUM_SCALES):
        raise EntropyCodingError("scale index out of range [0, 255]")
    return a.astype(np.intp)


def _groups(indices: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(table index, channels using it) in increasing index order: the stream order."""
    order = np.argsort(indices, kind="stable")
    cuts = np.flatnonzero(np.diff(indices[order])) + 1
    return [(int(indices[g[0]]), g) for g in np.split(order, cuts)] if order.size else []


@dataclass
class _Split:
    """A tile mapped to per-row symbol indices ``j`` plus the escaped values."""

    rows: list[tuple[int, np.ndarray]]  # (table index, j int32) in stream order
    esc_values: np.ndarray  # int64, the escaped symbols k, in stream order
    esc_support: np.ndarray  # int64, L of the row each escape came from


def split_symbols(symbols: np.ndarray, scale_indices: np.ndarray) -> _Split:
    """Validate a tile and map it to table symbol indices (shared by coder and rate)."""
    sym = _check_symbols(symbols)
    idx = _check_indices(scale_indices, sym.shape[0])
    flat = sym.reshape(sym.shape[0], sym.shape[1] * sym.shape[2])
    table = load_table()
    rows, esc_v, esc_l = [], [], []
    for t, chans in _groups(idx):
        L = int(table.support[t])
        v = flat[chans].ravel()
        j = v + np.int32(L)
        esc = j.view(np.uint32) > 2 * L  # |k| > L, one compare (negatives wrap high)
        if esc.any():
            esc_v.append(v[esc].astype(np.int64))
            esc_l.append(np.full(esc_v[-1].size, L, dtype=np.int64))
            j[esc] = 2 * L + 1
        rows.append((t, j))
    empty = np.zeros(0, dtype=np.int64)
    return _Split(
        rows,
        np.concatenate(esc_v) if esc_v else empty,
        np.concatenate(esc_l) if esc_l else empty,
    )


def escape_fields(values: np.ndarray, support: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Escape class ``2n + sign`` and mantissa ``v - 2^n`` for ``v = |k| - L``."""
    v = np.abs(values) - support  # >= 1
    n = np.frexp(v.astype(np.float64))[1].astype(np.int64) - 1  # floor(log2 v), exact
    cls = 2 * n + (values < 0)
    return cls, v - (np.int64(1) << n)


def encode_symbols(symbols: np.ndarray, scale_indices: np.ndarray) -> bytes:
    """Entropy-code one tile of quantised latents.

    Args:
        symbols: integer array (C, h, w), every ``|k| <= 2^24 - 1``.
        scale_indices: integer array (C,) of table rows in ``[0, 255]`` (uint8 in practice).

    Returns:
        The payload (deterministic: same input, same bytes). Its length is a multiple of 4;
        it may be empty.

    Raises:
        EntropyCodingError: bad shapes or dtypes, an index out of range, or ``|k| >= 2^24``.
    """
    split = split_symbols(symbols, scale_indices)
    ops: list[CoderOp] = [(j, _model(t), None) for t, j in split.rows]
    ops += escape_ops(split.esc_values, split.esc_support)
    return encode_ops(ops)


CoderOp = tuple[np.ndarray, object, "np.ndarray | None"]
"""(symbols, model, per-symbol sizes for the mantissa family or None), in decoding order."""


def escape_ops(values: np.ndarray, support: np.ndarray) -> list[CoderOp]:
    """The coder operations of escaped symbols: their classes, then their mantissas."""
    if not values.size:
        return []
    cls, mant = escape_fields(values, support)
    ops: list[CoderOp] = [(cls.astype(np.int32), _CLASS_MODEL, None)]
    n = cls >> 1
    has = n > 0
    if has.any():
        ops.append((mant[has].astype(np.int32), _MANTISSA_FAMILY, (1 << n[has]).astype(np.int32)))
    return ops


def encode_ops(ops: list[CoderOp]) -> bytes:
    """Run ``ops`` (listed in decoding order) through one ANS stack; the payload bytes."""
    coder = _AnsCoder()
    for data, model, sizes in reversed(ops):  # ANS is a stack: push in reverse decoding order
        if sizes is None:
            coder.encode_reverse(data, model)
        else:
            coder.encode_reverse(data, model, sizes)
    return coder.get_compressed().astype("<u4", copy=False).tobytes()


def encode_op_table(
    js: np.ndarray,
    ops: np.ndarray,
    classes: np.ndarray,
    mantissas: np.ndarray,
    sizes: np.ndarray,
) -> bytes:
    """:func:`encode_ops` for an operation table (``kernels.encode_tile``'s): rows
    ``(kind, start, end)`` in decoding order; kind ``t >= 0`` is ``js[start:end]`` with table
    row ``t``, ``-1`` escape classes, ``-2`` mantissas of ``sizes``."""
    coder = _AnsCoder()
    # three flat lists of ints, not a list of rows: thousands of small lists per tile set
    # off the garbage collector, which then walks every object of the process
    kinds, starts, ends = (col[::-1].tolist() for col in np.asarray(ops, np.int64).T)
    for kind, s, e in zip(kinds, starts, ends, strict=True):  # ANS is a stack: push reversed
        if kind >= 0:
            coder.encode_reverse(js[s:e], _model(kind))
        elif kind == -1:
            coder.encode_reverse(classes[s:e], _CLASS_MODEL)
        else:
            coder.encode_reverse(mantissas[s:e], _MANTISSA_FAMILY, sizes[s:e])
    return coder.get_compressed().astype("<u4", copy=False).tobytes()


def _check_shape(shape: tuple[int, int, int]) -> tuple[int, int, int]:
    try:
        dims = tuple(int(d) for d in shape)
    except (TypeError, ValueError) as e:
        raise EntropyCodingError(f"bad shape {shape!r}") from e
    if len(dims) != 3 or min(dims) < 0:
        raise EntropyCodingError(f"bad shape {shape!r}")
    return dims  # type: ignore[return-value]


def open_payload(
    payload: bytes, channels: int, n: int
) -> constriction.stream.stack.AnsCoder | None:
    """The ANS decoder of a tile's payload; None for an empty tile (whose payload is empty)."""
    data = memoryview(payload).cast("B")
    if len(data) % 4:
        raise EntropyCodingError(f"payload length {len(data)} is not a multiple of 4")
    if channels * n == 0:
        if len(data):
            raise EntropyCodingError("non-empty payload for an empty tile")
        return None
    words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
    return _AnsCoder(words)  # ValueError on a trailing zero word (wrapped by the caller)


def decode_escapes(coder: constriction.stream.stack.AnsCoder, support: np.ndarray) -> np.ndarray:
    """Signed values of escaped symbols from rows of supports ``support`` (classes, mantissas)."""
    cls = coder.decode(_CLASS_MODEL, support.size).astype(np.int64)
    nbits = cls >> 1
    v = np.int64(1) << nbits
    has = nbits > 0
    if has.any():
        v[has] += coder.decode(_MANTISSA_FAMILY, (np.int64(1) << nbits[has]).astype(np.int32))
    mag = v + support
    if int(mag.max()) > MAX_ABS_SYMBOL:
        raise EntropyCodingError("escaped symbol out of range (corrupt payload)")
    return np.where(cls & 1, -mag, mag)


def guarded_decode(fn: Callable[..., np.ndarray], *args: object) -> np.ndarray:
    """Run a decoder; any failure other than an interrupt becomes an EntropyCodingError."""
    try:
        return fn(*args)
    except EntropyCodingError:
        raise
    except (KeyboardInterrupt, SystemExit, MemoryError):
        raise
    except BaseException as e:  # includes pyo3's PanicException (a BaseException)
        raise EntropyCodingError(f"cannot decode entropy payload: {type(e).__name__}: {e}") from e


_DECODE_CHUNK = 1 << 20  # symbols per coder call in decode_symbols (bounds its intermediates)


def _decode(payload: bytes, scale_indices: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    C, h, w = _check_shape(shape)
    idx = _check_indices(scale_indices, C)
    n = h * w
    out = np.zeros((C, n), dtype=np.int32)
    coder = open_payload(payload, C, n)
    if coder is None:
        return out.reshape(C, h, w)
    table = load_table()

    esc_rows, esc_cols, esc_l = [], [], []
    # a row's channels are consecutive in the stream: decode them a few at a time, so the
    # intermediates stay ~_DECODE_CHUNK symbols whatever the tile size (same symbols, same order)
    per_call = max(1, _DECODE_CHUNK // n)
    for t, group in _groups(idx):
        L = int(table.support[t])
        for k in range(0, group.size, per_call):
            chans = group[k : k + per_call]
            j = coder.decode(_model(t), chans.size * n)
            j -= np.int32(L)
            out[chans] = j.reshape(chans.size, n)
            pos = np.flatnonzero(j == L + 1)  # ESC, 2L + 1 before the shift
            if pos.size:
                esc_rows.append(chans[pos // n])
                esc_cols.append(pos % n)
                esc_l.append(np.full(pos.size, L, dtype=np.int64))
            del j

    if esc_rows:
        rows, cols = np.concatenate(esc_rows), np.concatenate(esc_cols)
        out[rows, cols] = decode_escapes(coder, np.concatenate(esc_l))

    # A valid payload is consumed exactly; leftovers mean corruption (or wrong indices).
    if not coder.is_empty():
        raise EntropyCodingError("payload not fully consumed (corrupt or wrong scale indices)")
    return out.reshape(C, h, w)


def decode_symbols(
    payload: bytes, scale_indices: np.ndarray, shape: tuple[int, int, int]
) -> np.ndarray:
    """Decode one tile written by :func:`encode_symbols`.

    Args:
        payload: the bytes from :func:`encode_symbols`.
        scale_indices: the (C,) table indices used at encoding.
        shape: ``(C, h, w)``, validated by the caller; memory use is proportional to it.

    Returns:
        int32 array of ``shape``.

    Raises:
        EntropyCodingError: on any malformed input, and only that. ANS has no redundancy,
            so some corruptions decode to wrong symbols instead; the container's per-tile
            CRC catches those.
    """
    return guarded_decode(_decode, payload, scale_indices, shape)
