"""Fuzz targets for bench/fuzz_bitstream.py that go past the container into the codec.

``symbols``: parse the header, then read and entropy-decode every tile (fast: what a ground
station does before synthesis). ``full``: the whole public decoder, ``satcodec.decode``,
with ``allow_damaged`` so damaged tiles are counted rather than raised.

    python bench/make_fuzz_corpus.py                      # real streams -> bench/results/fuzz_corpus/
    python bench/fuzz_bitstream.py --cases 100000 --corpus bench/results/fuzz_corpus/*.satc \
        --target bench/fuzz_targets.py:symbols --expect satcodec.errors:SatcodecError
"""

from __future__ import annotations

import numpy as np

import satcodec
from satcodec.bitstream import StreamReader
from satcodec.codec.pipeline import _unpack_payload
from satcodec.entropy import decode_symbols
from satcodec.entropy.context import decode_symbols_context
from satcodec.errors import BitstreamError


def symbols(data: bytes) -> str:
    reader = StreamReader(data)
    h = reader.header
    decode = decode_symbols_context if h.channel_context else decode_symbols
    damaged = 0
    for band, row, col in h.iter_tile_keys():
        try:
            rec = reader.read_tile(band, row, col)
            _, _, ph, pw = h.tile_pixel_window(row, col)
            entropy, _mask = _unpack_payload(rec.payload, ph, pw)
            lh, lw = h.tile_latent_shape(row, col)
            decode(entropy, np.frombuffer(rec.scale_indices, np.uint8), (h.latent_channels, lh, lw))
        except BitstreamError:
            damaged += 1
    return "ok-damaged-tiles" if damaged else "ok"


def full(data: bytes) -> str:
    _, meta = satcodec.decode(data, allow_damaged=True)
    return "ok-damaged-tiles" if meta["damaged_tiles"] else "ok"
