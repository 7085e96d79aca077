"""Simplified entropy model: one zero-mean Laplacian per latent channel and tile.

Each channel's scale travels as an 8-bit index into a fixed table of integer CDFs
(``tables/laplace_v1.npz``, 16-bit counts), so decoding depends only on integers and
decodes identically on every machine. Modules:

- :mod:`.table`: load and validate the table (``load_table``, ``SCALE_TABLE``);
- :mod:`.scales`: encoder-side ``fit_scale_indices`` (what the encoder sends),
  ``estimate_scales`` and ``scale_to_index``;
- :mod:`.coder`: ``encode_symbols`` / ``decode_symbols`` (constriction ANS, escapes);
- :mod:`.rate`: ``symbol_bits`` (rate control), ``ideal_bits`` and ``coding_overhead``;
- :mod:`.laplace_cdf_table`: the generator of the committed table.
"""

from __future__ import annotations

from satcodec.entropy.coder import MAX_ABS_SYMBOL, decode_symbols, encode_symbols
from satcodec.entropy.rate import coding_overhead, ideal_bits, symbol_bits
from satcodec.entropy.scales import estimate_scales, fit_scale_indices, scale_to_index
from satcodec.entropy.table import NUM_SCALES, SCALE_TABLE, LaplaceTable, load_table

__all__ = [
    "MAX_ABS_SYMBOL",
    "NUM_SCALES",
    "SCALE_TABLE",
    "LaplaceTable",
    "coding_overhead",
    "decode_symbols",
    "encode_symbols",
    "estimate_scales",
    "fit_scale_indices",
    "ideal_bits",
    "load_table",
    "scale_to_index",
    "symbol_bits",
]
