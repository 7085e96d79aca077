"""docs/bitstream.md matches the bytes: an independent reader written from the document alone
(``tests/conformance/reader.py``, no satcodec imports) decodes real streams to the same
header, nodata masks and integer latents as the library."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from conformance import reader as spec

import satcodec
from satcodec.bitstream import StreamReader
from satcodec.coding import open_decoder
from satcodec.coding import unpack_payload as _unpack_payload
from satcodec.entropy import decode_symbols, encode_symbols
from satcodec.entropy.context import decode_symbols_context, encode_symbols_context
from satcodec.errors import EntropyCodingError
from satcodec.raster import open_raster

REPO = Path(__file__).resolve().parent.parent
CORPUS = sorted((REPO / "bench" / "results").glob("fuzz_corpus*/*.satc"))
BACKENDS = [spec.PyAns, spec.ConstrictionAns]


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    """Two bands of the shipped Pleiades sample, 150x200 (edge tiles at tile 64), with a
    nodata patch whose edges fall inside bytes of the packed mask."""
    with open_raster(REPO / "satcodec" / "data" / "pleiades_ventoux.tif") as r:
        a = r.read()
    arr = np.ascontiguousarray(np.concatenate([a[:, :150, :200], a[:, 300:450, 250:450]]))
    assert arr.min() > 0  # 0 only where we put it
    arr[0, 3:37, 5:70] = 0
    arr[1, 140:, 190:] = 0  # the bottom-right edge tile
    return arr


@pytest.fixture(scope="module", params=[True, False], ids=["context", "per-channel"])
def stream(request, image) -> bytes:
    return satcodec.encode(
        image,
        nodata=0,
        tile=64,
        quality=50,
        metadata={"tags": {"scene": "ventoux"}},
        channel_context=request.param,
    )


def test_table_file_is_the_specified_one():
    table = spec.Table()  # checks the digest and that every row sums to 65536
    assert len(table.counts) == 256 and table.support[0] == 1
    spec.context_constants(table)  # R and T against the document's digest


def test_header_and_records_match_the_library(stream):
    h = spec.parse_header(stream)
    lib = StreamReader(stream)
    ref = lib.header
    assert h.flags == (1 if ref.channel_context else 0) | (4 if ref.band_peak_bits else 0)
    # the texture rule gives both Pleiades crops 11-bit peaks (bit depth 12): flag 0x0004
    assert h.band_peak_bits == list(ref.band_peak_bits) == [11, 11]
    for name in ("height", "width", "bands", "dtype", "bit_depth", "downsampling", "nodata"):
        assert getattr(h, name) == getattr(ref, name), name
    assert (h.channels, h.model_id, h.quant_step_q16) == (
        ref.latent_channels,
        ref.model_id,
        ref.quant_step_q16,
    )
    assert (h.tile_size, h.tile_count, h.tiles_y, h.tiles_x) == (
        ref.tile_size,
        ref.tile_count,
        ref.tiles_y,
        ref.tiles_x,
    )
    assert tuple(h.band_offsets) == ref.band_offsets and h.metadata == ref.metadata
    assert (h.stream_length, h.data_start) == (lib.stream_length, lib.data_start)
    assert h.tile_count == 2 * 3 * 4
    for band, row, col in ref.iter_tile_keys():
        indices, payload = spec.read_record(stream, h, band, row, col)
        rec = lib.read_tile(band, row, col)
        assert (indices, payload) == (rec.scale_indices, rec.payload)


@pytest.mark.parametrize("ans", BACKENDS, ids=lambda a: a.__name__)
def test_latents_and_masks_match_the_library(stream, image, ans):
    h, tiles = spec.read_stream(stream, ans)
    decoder = open_decoder(stream)
    planes = {b: decoder.band_latents(b) for b in range(h.bands)}
    n_masks = 0
    for t in tiles:
        symbols, mask = decoder._tile_symbols(t.band, t.row, t.col)
        np.testing.assert_array_equal(t.latents, symbols)
        L = h.tile_size // h.downsampling
        plane, masks = planes[t.band]
        lh, lw = t.latents.shape[1:]
        np.testing.assert_array_equal(
            t.latents, plane[:, t.row * L : t.row * L + lh, t.col * L : t.col * L + lw]
        )
        # the mask is exactly the tile's nodata pixels (bit order, row-major, window size)
        y0, x0 = t.row * h.tile_size, t.col * h.tile_size
        ph, pw = h.pixel_shape(t.row, t.col)
        nodata = image[t.band, y0 : y0 + ph, x0 : x0 + pw] == 0
        if t.mask is None:
            assert mask is None and not nodata.any()
        else:
            n_masks += 1
            np.testing.assert_array_equal(t.mask, mask)
            np.testing.assert_array_equal(t.mask, nodata)
            assert any((r, c) == (t.row, t.col) for r, c, _ in masks)
    assert n_masks == 4  # band 0: tiles (0, 0), (0, 1); band 1: (2, 2), (2, 3)


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_committed_corpus_matches_the_library(path):
    """The fuzz corpus's streams (all valid; some made with models no longer shipped, so the
    library side decodes with its entropy functions rather than a full decoder)."""
    data = path.read_bytes()
    lib = StreamReader(data)
    ref = lib.header
    decode = decode_symbols_context if ref.channel_context else decode_symbols
    for ans in BACKENDS:
        h, tiles = spec.read_stream(data, ans)
        assert (h.height, h.width, h.bands, h.channels) == (
            ref.height,
            ref.width,
            ref.bands,
            ref.latent_channels,
        )
        for t in tiles:
            rec = lib.read_tile(t.band, t.row, t.col)
            _, _, ph, pw = ref.tile_pixel_window(t.row, t.col)
            entropy, mask = _unpack_payload(rec.payload, ph, pw)
            shape = (ref.latent_channels, *ref.tile_latent_shape(t.row, t.col))
            symbols = decode(entropy, np.frombuffer(rec.scale_indices, np.uint8), shape)
            np.testing.assert_array_equal(t.latents, symbols)
            assert (mask is None) == (t.mask is None)
            if mask is not None:
                np.testing.assert_array_equal(t.mask, mask)


@pytest.mark.parametrize("context", [False, True], ids=["per-channel", "context"])
def test_escapes_match_the_library(context):
    """Heavy tails: escapes of every class (up to |k| = 2^24 - 1), both signs, equal rows."""
    rng = np.random.default_rng(19)
    C, h, w = 6, 5, 7
    sym = np.rint(rng.laplace(0, 2.0, (C, h, w))).astype(np.int32)
    big = rng.integers(1, 24, 30)
    sym.flat[rng.choice(sym.size, 30, replace=False)] = rng.choice([-1, 1], 30) * (
        (1 << big) + rng.integers(0, 1 << big)
    ).clip(max=(1 << 24) - 1)
    sym[0, 0, 0], sym[1, 0, 0] = (1 << 24) - 1, -((1 << 24) - 1)
    base = np.array([0, 3, 3, 40, 200, 255], np.uint8)
    payload = (encode_symbols_context if context else encode_symbols)(sym, base)
    decode = spec.decode_context if context else spec.decode_per_channel
    table = spec.Table()
    for ans in BACKENDS:
        coder = ans(payload, table)
        k = decode(coder, table, base.tolist(), h * w)
        assert coder.done()
        np.testing.assert_array_equal(k.reshape(C, h, w), sym)


def _mask_payload(mask_bytes: bytes, entropy: bytes = b"") -> bytes:
    return struct.pack("<I", len(entropy)) + entropy + mask_bytes


def test_framing_rules_agree_with_the_library():
    """What the document says a reader rejects, both readers reject; what it accepts, both
    accept (a 10x13 pixel tile: 130 bits, 17 bytes, 6 padding bits)."""
    h = spec.Header(*[0] * 19)
    h.height, h.width, h.tile_size, h.nodata = 10, 13, 64, 0.0
    bits = np.random.default_rng(0).random((10, 13)) < 0.3
    good = zlib.compress(np.packbits(bits).tobytes())
    entropy, mask = spec.split_payload(h, _mask_payload(good, b"\1\0\0\0"), 0, 0)
    assert entropy == b"\1\0\0\0"
    np.testing.assert_array_equal(mask, bits)
    np.testing.assert_array_equal(_unpack_payload(_mask_payload(good), 10, 13)[1], bits)
    bad = [
        b"\0\0\0",  # shorter than the length field
        struct.pack("<I", 8) + b"\1\0\0\0",  # E > P - 4
        _mask_payload(zlib.compress(bytes(16))),  # a byte short
        _mask_payload(zlib.compress(bytes(18))),  # a byte long
        _mask_payload(zlib.compress(bytes(1 << 20))),  # a bomb: inflation stops at 18 bytes
        _mask_payload(good[:-1] + bytes([good[-1] ^ 1])),  # Adler-32 mismatch
        _mask_payload(b"\x78\x9c\xff\xff"),  # not deflate
    ]
    for payload in bad:
        with pytest.raises(spec.FormatError):
            spec.split_payload(h, payload, 0, 0)
        with pytest.raises(EntropyCodingError):
            _unpack_payload(payload, 10, 13)


def test_band_peaks_follow_the_document(stream):
    """Flag 0x0004: each band's normalisation peak and dequantisation step are the document's
    (``2^p - 1`` and ``step * 2^(max(p) - p)``), for bands of different peaks too."""
    decoder = open_decoder(stream)
    h = spec.parse_header(stream)
    assert [tuple(map(float, spec.band_peak_and_step(h, b))) for b in range(h.bands)] == list(
        zip(decoder.peaks, decoder.steps, strict=True)
    )
    with open_raster(REPO / "tests" / "data" / "landsat8_rgb_grenada_crop.tif") as r:
        x = r.read()
    data = satcodec.encode(x, bpp=1.0, tile=64, threads=1)
    h, decoder = spec.parse_header(data), open_decoder(data)
    assert h.flags & 4 and h.band_peak_bits == [16, 15, 15]  # bit depth 16
    assert decoder.peaks == [65535.0, 32767.0, 32767.0]
    assert decoder.steps == [spec.band_peak_and_step(h, b)[1] for b in range(3)]
    assert decoder.steps[1] == decoder.steps[2] == 2 * decoder.steps[0]


def test_spectral_transform_follows_the_document():
    """Flag 0x0002: the document's header object and pixel rule, applied by the independent
    reader to the library's component synthesis, give the library's decode (a real Landsat 8
    RGB crop; the float sums may round one way or the other at exact halves: within 1)."""
    with open_raster(REPO / "tests" / "data" / "landsat8_rgb_grenada_crop.tif") as r:
        x = r.read()
    data = satcodec.encode(x, bpp=1.0, spectral="klt", tile=64, threads=1)
    h = spec.parse_header(data)
    lib = StreamReader(data).header
    assert h.flags & 2 and h.spectral == lib.spectral_transform and h.metadata == lib.metadata
    # the components, as the document defines them: synthesis x peak + band offset
    decoder = open_decoder(data)
    decoder.spectral = None  # read the coded bands as they are (their peaks and steps kept)
    bits = h.spectral["component_bits"]
    assert decoder.peaks == [2**b - 1 for b in bits]
    assert decoder.steps == [h.quant_step_q16 / 65536 * 2 ** (max(bits) - b) for b in bits]
    comps = np.zeros(x.shape, np.float32)
    for t in decoder.iter_tiles(as_float=True):
        y0, x0, ph, pw = lib.tile_pixel_window(t.row, t.col)
        comps[t.band, y0 : y0 + ph, x0 : x0 + pw] = t.pixels
    mine = spec.spectral_bands(h, comps)
    theirs, _ = satcodec.decode(data, threads=1)
    assert np.abs(mine.astype(int) - theirs).max() <= 1
    assert (mine != theirs).mean() < 1e-3
