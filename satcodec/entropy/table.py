"""The committed integer Laplace table: loading, validation and derived per-row data.

The decoder's probabilities come only from the integers in ``tables/laplace_v1.npz`` (see
:mod:`satcodec.entropy.laplace_cdf_table` for its design), so a bitstream decodes the same on
every machine. This module reads that file once, checks its invariants and expands the
symmetric half rows into full rows over the symbol index ``j = k + L`` (``j = 2L + 1`` is ESC).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from satcodec.errors import SatcodecError

TABLE_VERSION = 1
NUM_SCALES = 256
PRECISION_BITS = 16
TOTAL = 1 << PRECISION_BITS
TABLE_PATH = Path(__file__).resolve().parent / "tables" / "laplace_v1.npz"

# constriction's ANS coder (DefaultAnsCoder) quantises models to 24-bit fixed point.
CODER_PRECISION_BITS = 24


@dataclass(frozen=True)
class LaplaceTable:
    """Validated, read-only view of the table.

    Attributes:
        scales: float64 (NUM_SCALES,), increasing; used by the encoder only.
        support: int64 (NUM_SCALES,), L per row (symbols -L..L plus ESC).
        offsets: int64 (NUM_SCALES + 1,), row ``i`` is ``counts[offsets[i]:offsets[i+1]]``.
        counts: int64, concatenated full rows of 16-bit counts (each row sums to 65536).
        code_lengths: float64, same layout as ``counts``: the exact code length in bits of
            each symbol under the model constriction actually codes with (see
            :func:`coder_weights`), for fast rate estimates.
    """

    scales: np.ndarray
    support: np.ndarray
    offsets: np.ndarray
    counts: np.ndarray
    code_lengths: np.ndarray

    def row(self, index: int) -> np.ndarray:
        """Counts of row ``index`` over ``j = 0 .. 2L+1`` (``2L+1`` is ESC)."""
        return self.counts[self.offsets[index] : self.offsets[index + 1]]

    def row_code_lengths(self, index: int) -> np.ndarray:
        """Code lengths (bits) of row ``index``, same layout as :meth:`row`."""
        return self.code_lengths[self.offsets[index] : self.offsets[index + 1]]


def coder_weights(counts: np.ndarray) -> np.ndarray:
    """The 24-bit weights constriction derives from ``Categorical(counts / 65536, perfect=False)``.

    Its fast quantiser sets ``left[i] = floor(cum[i] * (2^24 - n)) + i`` with ``cum`` the
    float cumulative probabilities. Our probabilities are multiples of 2^-16 summing to
    exactly 1, so every step is exact in float64 and equals this integer formula.
    """
    c = np.asarray(counts, dtype=np.int64)
    n = c.size
    cum = np.concatenate(([0], np.cumsum(c)))
    left = cum * ((1 << CODER_PRECISION_BITS) - n) // TOTAL + np.arange(n + 1)
    return np.diff(left)


def _fail(path: Path, why: str) -> SatcodecError:
    return SatcodecError(f"invalid entropy table {path}: {why}")


def _expand(path: Path, z: dict[str, np.ndarray]) -> LaplaceTable:
    scales = np.asarray(z["scales"], dtype=np.float64)
    support = np.asarray(z["support"], dtype=np.int64)
    half_offsets = np.asarray(z["half_offsets"], dtype=np.int64)
    half = np.asarray(z["half_counts"])
    if "version" in z and int(z["version"]) != TABLE_VERSION:
        raise _fail(path, f"version {int(z['version'])} != {TABLE_VERSION}")
    if int(z["precision_bits"]) != PRECISION_BITS:
        raise _fail(path, "precision_bits != 16")
    if scales.shape != (NUM_SCALES,) or support.shape != (NUM_SCALES,):
        raise _fail(path, "scales/support must have shape (256,)")
    if not (np.all(np.isfinite(scales)) and scales[0] > 0 and np.all(np.diff(scales) > 0)):
        raise _fail(path, "scales must be finite, positive and increasing")
    if np.any(support < 1) or np.any(support > (1 << 20)):
        raise _fail(path, "support out of range")
    if half.dtype != np.uint16 or half.ndim != 1:
        raise _fail(path, "half_counts must be 1-D uint16")
    if half_offsets.shape != (NUM_SCALES + 1,) or half_offsets[0] != 0:
        raise _fail(path, "half_offsets malformed")
    if np.any(np.diff(half_offsets) != support + 2) or half_offsets[-1] != half.size:
        raise _fail(path, "half_offsets do not match support")
    half = half.astype(np.int64)
    if np.any(half < 1):
        raise _fail(path, "a count is < 1")

    rows, lengths = [], []
    for i in range(NUM_SCALES):
        h = half[half_offsets[i] : half_offsets[i + 1]]
        # [c(L) .. c(1), c(0), c(1) .. c(L), c(ESC)]
        full = np.concatenate((h[-2:0:-1], h[:-1], h[-1:]))
        if int(full.sum()) != TOTAL:
            raise _fail(path, f"row {i} sums to {int(full.sum())}, not {TOTAL}")
        rows.append(full)
        w = coder_weights(full)
        lengths.append(CODER_PRECISION_BITS - np.log2(w))
    sizes = 2 * support + 2
    offsets = np.concatenate(([0], np.cumsum(sizes)))
    table = LaplaceTable(
        scales=scales,
        support=support,
        offsets=offsets,
        counts=np.concatenate(rows),
        code_lengths=np.concatenate(lengths),
    )
    for a in (table.scales, table.support, table.offsets, table.counts, table.code_lengths):
        a.setflags(write=False)
    return table


@functools.lru_cache(maxsize=4)
def _load_cached(path: Path) -> LaplaceTable:
    try:
        with np.load(path, allow_pickle=False) as npz:
            z = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as e:
        raise _fail(path, f"cannot read ({e})") from e
    missing = {"scales", "support", "half_offsets", "half_counts", "precision_bits"} - set(z)
    if missing:
        raise _fail(path, f"missing arrays {sorted(missing)}")
    return _expand(path, z)


def load_table(path: str | os.PathLike | None = None) -> LaplaceTable:
    """Load and validate the Laplace table (once per path; later calls hit a cache).

    Raises :class:`~satcodec.errors.SatcodecError` if the file is missing or breaks an
    invariant (shapes, every count >= 1, every row summing to 65536).
    """
    return _load_cached(Path(path).resolve() if path is not None else TABLE_PATH)


SCALE_TABLE: np.ndarray = load_table().scales
"""float64 (256,) log-spaced Laplace scales (in quantisation steps) of the table rows."""
