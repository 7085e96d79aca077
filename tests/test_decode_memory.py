"""Decoding memory is bounded whatever the tile size (docs/bitstream.md, "Decoder memory").

A CRC-valid stream of a few hundred bytes can declare one 4096² or 8192² tile whose latents are
all zero (they cost ~nothing to entropy-code): a decompression bomb. The decoder synthesises a
tile in blocks of ``SYNTH_BLOCK`` latents and holds a rolling window of latents
(:meth:`Decoder.iter_tiles`), so its peak memory stays under :meth:`Decoder.memory_bound`;
short of memory it raises ``HeaderLimitError``, never ``MemoryError`` or a torch RuntimeError.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import satcodec
import satcodec.coding.decoder as pipeline
from satcodec.bitstream import StreamHeader, StreamReader, TileRecord, write_stream
from satcodec.codec.registry import load_model
from satcodec.coding import (
    SYNTH_BLOCK,
    Decoder,
    decode_to_array,
    open_decoder,
    to_dtype,
)
from satcodec.coding import pack_payload as _pack_payload
from satcodec.entropy import decode_symbols, encode_symbols
from satcodec.entropy.context import encode_symbols_context
from satcodec.errors import HeaderLimitError, TileCorruptedError
from tests.conftest import requires_shipped_model, shipped_models

MiB = 1 << 20


def bomb_stream(
    side: int,
    model_id: str,
    channels: int,
    stride: int,
    *,
    tile: int | None = None,
    width: int | None = None,
) -> bytes:
    """A valid stream of ``side`` x ``width`` pixels in ``tile``-pixel tiles of all-zero
    latents at the smallest scale: a few hundred bytes whatever the size."""
    header = StreamHeader(
        height=side,
        width=width or side,
        bands=1,
        dtype="uint16",
        bit_depth=12,
        model_id=model_id,
        quant_step_q16=1 << 16,
        tile_size=tile or side,
        latent_channels=channels,
        band_offsets=(1000,),
        nodata=None,
        metadata={},
        downsampling=stride,
    )
    payloads: dict[tuple[int, int], bytes] = {}
    records = []
    for b, r, c in header.iter_tile_keys():
        shape = header.tile_latent_shape(r, c)
        if shape not in payloads:
            zeros = np.zeros((channels, *shape), np.int32)
            code = encode_symbols_context(zeros, np.zeros(channels, np.uint8))
            payloads[shape] = _pack_payload(code, None)
        records.append(TileRecord(b, r, c, bytes(channels), payloads[shape]))
    return write_stream(header, records)


CHILD = textwrap.dedent(
    """
    import json, re, resource, sys
    from satcodec.coding import decode_to_array, open_decoder
    from satcodec.errors import SatcodecError

    def status(key):
        text = open("/proc/self/status").read()
        return int(re.search(key + r":\\s+(\\d+)", text).group(1)) * 1024

    data = open(sys.argv[1], "rb").read()
    limit_mb = int(sys.argv[2])
    dec = open_decoder(data)
    if limit_mb:  # address space: what is mapped now, plus limit_mb
        lim = status("VmSize") + (limit_mb << 20)
        resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
    base = status("VmRSS")
    open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
    out = {"bound": dec.memory_bound(), "error": None}
    try:
        res = decode_to_array(dec)
        out["shape"] = list(res.array.shape)
        out["output"] = res.array.nbytes
        out["mean"] = float(res.array.mean())
    except SatcodecError as exc:
        out["error"] = [type(exc).__name__, str(exc)]
    out["peak"] = status("VmHWM") - base
    print(json.dumps(out))
    """
)


def run_child(tmp_path: Path, data: bytes, limit_mb: int = 0) -> dict:
    stream = tmp_path / "bomb.satc"
    stream.write_bytes(data)
    r = subprocess.run(
        [sys.executable, "-c", CHILD, str(stream), str(limit_mb)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def default_model():
    return next(m for m in shipped_models() if m.meta.get("default"))


needs_proc = pytest.mark.skipif(
    not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc peak-RSS reset"
)


@requires_shipped_model
@needs_proc
def test_4096_bomb_decodes_under_the_documented_bound(tmp_path):
    """430 bytes, one 4096² tile: 4.7 GB peak before; now ~210 MB above the base, under
    ``memory_bound()`` (~600 MiB for this stream) plus the output array (32 MiB)."""
    m = default_model()
    data = bomb_stream(4096, m.model_id, m.config.latent, m.config.downsampling)
    assert len(data) < 1024
    got = run_child(tmp_path, data)
    assert got["error"] is None and got["shape"] == [1, 4096, 4096]
    assert got["peak"] <= got["bound"] + got["output"], got
    assert got["bound"] < 640 * MiB and got["peak"] < 400 * MiB, got


@requires_shipped_model
@needs_proc
def test_bomb_short_of_memory_is_a_clean_header_limit_error(tmp_path):
    """Under an address-space limit too small for it, the bomb is refused with a one-line
    HeaderLimitError (before: a MemoryError or a torch RuntimeError traceback)."""
    m = default_model()
    data = bomb_stream(4096, m.model_id, m.config.latent, m.config.downsampling)
    got = run_child(tmp_path, data, limit_mb=60)
    assert got["error"] is not None, got
    kind, message = got["error"]
    assert kind == "HeaderLimitError" and "not enough memory" in message
    assert "\n" not in message


def _reference(dec: Decoder, *, as_float: bool = False) -> dict:
    """The whole-plane path: band_latents, then each tile in one window (block=0)."""
    h = dec.header
    out = {}
    for b in range(h.bands):
        plane, masks = dec.band_latents(b)
        mask_of = {(r, c): m for r, c, m in masks}
        for r in range(h.tiles_y):
            for c in range(h.tiles_x):
                px = dec.synthesise_tile(plane, b, r, c, block=0)
                if not as_float:
                    px = to_dtype(px, h.dtype, h.bit_depth)
                    if (r, c) in mask_of:
                        px[mask_of[(r, c)]] = h.nodata
                out[(b, r, c)] = (px, mask_of.get((r, c)))
    return out


@pytest.fixture(scope="module")
def nodata_stream(tiny_model, sample_array) -> bytes:
    """Two bands, nodata in a corner, 64-pixel tiles (4 latents at stride 16, halo 2)."""
    img = np.concatenate([sample_array[:, :200, :230], sample_array[:, 100:300, 50:280]])
    img[:, :40, :70] = 0
    return satcodec.encode(img, quality=60, model=tiny_model, tile=64, nodata=0)


@pytest.mark.parametrize("budget", [pipeline.WINDOW_BUDGET, 0])
@pytest.mark.parametrize("halo", [None, 6])
def test_iter_tiles_is_bit_identical_to_the_whole_plane_path(
    tiny_model, nodata_stream, monkeypatch, budget, halo
):
    """Pixels, masks and float pixels; also when the look-ahead budget forces tiles to be
    entropy-decoded again, and with a halo wider than a tile (more rows held)."""
    if halo is not None:
        monkeypatch.setattr(pipeline, "decode_halo", lambda config: halo)
    ref = _reference(open_decoder(nodata_stream, model=str(tiny_model)))
    ref_f = _reference(open_decoder(nodata_stream, model=str(tiny_model)), as_float=True)
    for as_float, want in ((False, ref), (True, ref_f)):
        dec = open_decoder(nodata_stream, model=str(tiny_model))
        dec.window_budget = budget
        seen = []
        for t in dec.iter_tiles(as_float=as_float):
            px, mask = want[(t.band, t.row, t.col)]
            assert t.pixels.dtype == px.dtype and not t.damaged
            np.testing.assert_array_equal(t.pixels, px)
            assert (t.nodata_mask is None) == (mask is None)
            if mask is not None:
                np.testing.assert_array_equal(t.nodata_mask, mask)
            seen.append((t.band, t.row, t.col))
        h = dec.header
        assert seen == list(h.iter_tile_keys())
        if budget:
            assert dec.tile_decodes == h.tile_count  # each tile entropy-decoded once
        else:
            assert dec.tile_decodes > h.tile_count
    assert any(m is not None for _, m in ref.values())
    full = decode_to_array(open_decoder(nodata_stream, model=str(tiny_model))).array
    for (b, r, c), (px, _) in ref.items():
        y0, x0, ph, pw = h.tile_pixel_window(r, c)
        np.testing.assert_array_equal(full[b, y0 : y0 + ph, x0 : x0 + pw], px)


def test_iter_tiles_damaged_tile_semantics(tiny_model, nodata_stream):
    """A damaged tile raises TileCorruptedError naming it; with allow_damaged it is yielded
    filled with nodata, listed once in ``damaged``, and its neighbours decode as in the
    whole-plane path (its latents count as zeros)."""
    reader = StreamReader(nodata_stream)
    h = reader.header
    idx = h.tile_index(1, 1, 2)
    table = reader.data_start - 4 - 12 * h.tile_count
    off = int.from_bytes(nodata_stream[table + 12 * idx : table + 12 * idx + 8], "little")
    bad = bytearray(nodata_stream)
    bad[off + 30] ^= 0x40
    bad = bytes(bad)
    with pytest.raises(TileCorruptedError) as e:
        list(open_decoder(bad, model=str(tiny_model)).iter_tiles())
    assert (e.value.band, e.value.row, e.value.col) == (1, 1, 2)
    ref = _reference(open_decoder(bad, model=str(tiny_model), allow_damaged=True))
    dec = open_decoder(bad, model=str(tiny_model), allow_damaged=True)
    for t in dec.iter_tiles():
        if (t.band, t.row, t.col) == (1, 1, 2):
            assert t.damaged and t.nodata_mask is None and np.all(t.pixels == h.nodata)
        else:
            np.testing.assert_array_equal(t.pixels, ref[(t.band, t.row, t.col)][0])
    assert dec.damaged == [(1, 1, 2)]
    res = decode_to_array(open_decoder(bad, model=str(tiny_model), allow_damaged=True))
    assert res.damaged == [(1, 1, 2)] and res.nodata == 0.0
    dec = open_decoder(bad, model=str(tiny_model), allow_damaged=True)
    filled = [t.pixels for t in dec.iter_tiles(1, fill=7) if t.damaged]
    assert len(filled) == 1 and np.all(filled[0] == 7)


@requires_shipped_model
def test_block_synthesis_matches_whole_tile_synthesis(sample_array):
    """A tile larger than the synthesis block is synthesised block by block, each block with
    the halo: within 1 DN (12-bit) of one window over the whole tile, as between tiles; a
    tile of at most SYNTH_BLOCK latents is one window (bit-identical to before)."""
    data = satcodec.encode(sample_array[:, :256, :256], bpp=2.0, tile=256)
    dec = open_decoder(data)
    plane, _ = dec.band_latents(0)
    assert plane.shape[1] <= SYNTH_BLOCK
    whole = dec.synthesise_tile(plane, 0, 0, 0, block=0)
    np.testing.assert_array_equal(dec.synthesise_tile(plane, 0, 0, 0), whole)
    for block in (8, 12):  # 64 and 96 px blocks: 16 and 9 of them
        blocks = dec.synthesise_tile(plane, 0, 0, 0, block=block)
        diff = np.abs(to_dtype(blocks, "uint16", 12).astype(int) - to_dtype(whole, "uint16", 12))
        assert diff.max() <= 1, (block, diff.max())
        assert np.abs(blocks - whole).max() < 1.0


def test_wide_image_is_refused_before_decoding(tiny_model):
    """A 2^24-pixel-wide stream of 8192-pixel tiles (2048 tiles, ~100 kB): its halo strips
    alone would exceed Decoder.max_strip_bytes, so it is refused up front."""
    net, info = load_model(tiny_model)
    data = bomb_stream(
        16, info.model_id, net.config.latent, net.config.downsampling, tile=8192, width=1 << 24
    )
    dec = open_decoder(data, model=str(tiny_model))
    with pytest.raises(HeaderLimitError, match="halo strips"):
        next(dec.iter_tiles())
    with pytest.raises(HeaderLimitError, match="halo strips"):
        decode_to_array(dec)


def test_per_channel_decoder_in_chunks_is_unchanged(monkeypatch):
    """decode_symbols decodes a row's channels a few at a time: same symbols."""
    rng = np.random.default_rng(3)
    sym = np.rint(rng.laplace(0, 3, (12, 9, 11))).astype(np.int32)
    sym[2, 3, 4], sym[7, 0, 0] = 5000, -70000  # escapes in several chunks
    idx = rng.integers(60, 120, 12).astype(np.uint8)
    idx[::3] = idx[0]  # channels sharing a row
    payload = encode_symbols(sym, idx)
    import satcodec.entropy.coder as coder

    for chunk in (1, 99, 250, 1 << 20):
        monkeypatch.setattr(coder, "_DECODE_CHUNK", chunk)
        np.testing.assert_array_equal(decode_symbols(payload, idx, sym.shape), sym)
