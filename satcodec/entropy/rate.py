"""Rate estimates: the table's code length (for rate control) and the ideal Laplace one
(for reporting how much table snapping, 16-bit counts and the coder cost)."""

from __future__ import annotations

import math

import numpy as np

from satcodec.entropy.coder import (
    NUM_ESCAPE_CLASSES,
    encode_symbols,
    escape_fields,
    split_symbols,
)
from satcodec.entropy.scales import scale_to_index
from satcodec.entropy.table import CODER_PRECISION_BITS, load_table


def _uniform_class_bits() -> np.ndarray:
    # constriction's Uniform(m) at 24 bits: floor(2^24/m) per class, the remainder to the last
    full = 1 << CODER_PRECISION_BITS
    w = np.full(NUM_ESCAPE_CLASSES, full // NUM_ESCAPE_CLASSES, dtype=np.int64)
    w[-1] = full - (NUM_ESCAPE_CLASSES - 1) * w[0]
    return CODER_PRECISION_BITS - np.log2(w)


_CLASS_BITS = _uniform_class_bits()


def symbol_bits(symbols: np.ndarray, scale_indices: np.ndarray) -> float:
    """Code length in bits of ``encode_symbols(symbols, scale_indices)``, without coding.

    Sums the exact per-symbol code lengths of the models the coder uses (escapes included);
    the real payload differs only by ANS termination (within about +-64 bits). O(N) numpy.
    Raises :class:`~satcodec.errors.EntropyCodingError` on the same inputs as the encoder.
    """
    table = load_table()
    split = split_symbols(symbols, scale_indices)
    bits = 0.0
    for t, j in split.rows:
        hist = np.bincount(j, minlength=int(2 * table.support[t] + 2))
        bits += float(hist @ table.row_code_lengths(t))
    if split.esc_values.size:
        cls, _ = escape_fields(split.esc_values, split.esc_support)
        bits += float(_CLASS_BITS[cls].sum() + (cls >> 1).sum())
    return bits


def ideal_bits(latents_quantised: np.ndarray, scales: np.ndarray) -> float:
    """Ideal code length (bits) under the continuous-scale discretised Laplacian.

    ``P(k) = F(k + 1/2) - F(k - 1/2)`` for Laplace(0, ``scales[c]``) on channel ``c``, with no
    table snapping, no 16-bit quantisation, no support limit and no coder overhead. Float
    maths, for reporting only.

    Args:
        latents_quantised: integer array (C, h, w).
        scales: float array (C,), finite and > 0.
    """
    y = np.asarray(latents_quantised)
    s = np.asarray(scales, dtype=np.float64)
    if y.ndim != 3 or s.shape != (y.shape[0],):
        raise ValueError(f"need latents (C, h, w) and scales (C,), got {y.shape}, {s.shape}")
    if s.size and not (np.all(np.isfinite(s)) and np.all(s > 0)):
        raise ValueError("scales must be finite and > 0")
    k = np.abs(y.reshape(y.shape[0], -1).astype(np.float64))
    nonzero = k > 0
    n_nz = nonzero.sum(axis=1)
    n_zero = k.shape[1] - n_nz
    excess = (k - 0.5).clip(min=0).sum(axis=1)  # sum of (|k| - 1/2) over non-zero k
    # -log2 P(0) = -log2(1 - e^{-1/2s});  -log2 P(k) = 1 + (|k|-1/2)/(s ln2) - log2(1 - e^{-1/s})
    b0 = -np.log2(-np.expm1(-0.5 / s))
    b1 = 1.0 - np.log2(-np.expm1(-1.0 / s))
    per_channel = n_zero * b0 + n_nz * b1 + excess / (s * math.log(2))
    return float(per_channel.sum())


def coding_overhead(symbols: np.ndarray, scales_float: np.ndarray) -> dict[str, float]:
    """Compare ideal, table-estimated and actual code lengths for one tile.

    The tile is coded with ``scale_to_index(scales_float)``. Keys: ``ideal_bits``,
    ``table_bits`` (:func:`symbol_bits`), ``actual_bits`` (8 * payload length),
    ``side_bits`` (8 per channel, sent by the container, not in the payload),
    ``num_symbols``, ``num_escapes``, and overheads in percent of ``ideal_bits``:
    ``table_overhead_pct`` (snapping + 16-bit counts + support/escapes),
    ``coder_overhead_pct`` (actual vs table: ANS termination and precision) and
    ``total_overhead_pct`` (actual vs ideal). Percentages are NaN when ideal is 0.
    """
    s = np.asarray(scales_float, dtype=np.float64)
    idx = scale_to_index(s)
    ideal = ideal_bits(symbols, s)
    table_bits = symbol_bits(symbols, idx)
    actual = 8.0 * len(encode_symbols(symbols, idx))
    split = split_symbols(symbols, idx)

    def pct(a: float, b: float) -> float:
        return 100.0 * (a - b) / ideal if ideal > 0 else float("nan")

    return {
        "ideal_bits": ideal,
        "table_bits": table_bits,
        "actual_bits": actual,
        "side_bits": 8.0 * s.size,
        "num_symbols": float(np.asarray(symbols).size),
        "num_escapes": float(split.esc_values.size),
        "table_overhead_pct": pct(table_bits, ideal),
        "coder_overhead_pct": pct(actual, table_bits),
        "total_overhead_pct": pct(actual, ideal),
    }
