"""Fuzz targets for bench/fuzz_bitstream.py that go past the container into the codec, and
the structure-aware stream generator its bounded-memory campaign mixes in.

``symbols``: parse the header, then read and entropy-decode every tile (fast: what a ground
station does before synthesis). ``full``: the whole public decoder, ``satcodec.decode``,
with ``allow_damaged`` so damaged tiles are counted rather than raised. ``bounded``: the tile
iterator (``Decoder.iter_tiles``, what ``decode_to_array`` runs on), models cached across
cases; returns the case's documented memory bound (``Decoder.memory_bound``) so the harness
checks the case's peak RSS against it.

    python bench/make_fuzz_corpus.py                      # real streams -> bench/results/fuzz_corpus/
    python bench/fuzz_bitstream.py --cases 100000 --corpus bench/results/fuzz_corpus/*.satc \
        --target bench/fuzz_targets.py:symbols --expect satcodec.errors:SatcodecError
    python bench/fuzz_bitstream.py --cases 100000 --corpus bench/results/fuzz_corpus/*.satc \
        --target bench/fuzz_targets.py:bounded --expect satcodec.errors:SatcodecError \
        --workers 1 --as-limit-mb 6144 --generated 0.1     # bench/results/fuzz_decoder_bounded.md
    python bench/fuzz_targets.py peak STREAM...           # peak RSS of decoding vs the bound
"""

from __future__ import annotations

import json
import random
import re
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent

import satcodec  # noqa: E402
from satcodec.bitstream import StreamHeader, StreamReader, TileRecord, write_stream  # noqa: E402
from satcodec.coding import Decoder, decode_to_array  # noqa: E402
from satcodec.coding.framing import pack_payload as _pack_payload  # noqa: E402
from satcodec.coding.framing import unpack_payload as _unpack_payload  # noqa: E402
from satcodec.entropy import decode_symbols, encode_symbols  # noqa: E402
from satcodec.entropy.context import (  # noqa: E402
    decode_symbols_context,
    encode_symbols_context,
)
from satcodec.errors import BitstreamError  # noqa: E402


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


# --- bounded: the tile iterator, with its memory bound ------------------------------------------
_NETS: dict[str, object] = {}
ARRAY_MAX = 64 << 20  # decode_to_array when the output is at most this, else iterate tiles


def _net(model_id: str):
    from satcodec.codec.registry import find_model_by_id

    if model_id not in _NETS:
        _NETS[model_id] = find_model_by_id(model_id)[0]  # UnknownModelError: expected
    return _NETS[model_id]


def bounded(data: bytes) -> tuple[str, int]:
    """Decode with ``allow_damaged``: through ``decode_to_array`` when the image is small,
    else tile by tile without keeping the pixels. Returns (outcome, bound in bytes): the
    decoder's ``memory_bound()``, plus the output array when one is made."""
    reader = StreamReader(data)
    h = reader.header
    dec = Decoder(reader, _net(h.model_id), allow_damaged=True)
    bound = dec.memory_bound()
    out_bytes = h.bands * h.height * h.width * np.dtype(h.dtype).itemsize
    if out_bytes <= ARRAY_MAX:
        res = decode_to_array(dec)
        assert res.array.shape == (h.bands, h.height, h.width), "wrong output shape"
        bound += out_bytes
    else:
        n = 0
        for t in dec.iter_tiles():
            _, _, ph, pw = h.tile_pixel_window(t.row, t.col)
            assert t.pixels.shape == (ph, pw) and t.pixels.dtype == np.dtype(h.dtype)
            n += 1
        assert n == h.tile_count, "iter_tiles skipped tiles"
    return ("ok-damaged-tiles" if dec.damaged else "ok"), bound


# --- structure-aware generator ---------------------------------------------------------------------
DTYPES = {"uint8": 8, "uint16": 16, "int16": 16, "uint32": 32, "int32": 32}


class StreamGenerator:
    """Random valid streams: random header fields (sizes, bands, dtype, bit depth, nodata,
    tile size up to 8192, step, offsets, metadata, entropy model), and per tile a random
    payload kind: all-zero latents (a decompression bomb at large tiles), sparse random
    latents (escapes included), random bytes, empty; nodata masks valid, random or garbage.

    ``kind="small"``: images of at most 512 px a side and 64 tiles (any tile size);
    ``kind="big"``: one to four full tiles of 2048, 4096 or 8192 px.
    """

    def __init__(self, rng: random.Random, models: list | None = None) -> None:
        from satcodec.codec.registry import list_models

        self.rng = rng
        self.models = models if models is not None else list_models()
        self._zero: dict[tuple, bytes] = {}

    def _zero_payload(self, shape: tuple[int, int, int], context: bool) -> bytes:
        key = (shape, context)
        if key not in self._zero:
            z = np.zeros(shape, np.int32)
            idx = np.zeros(shape[0], np.uint8)
            self._zero[key] = (encode_symbols_context if context else encode_symbols)(z, idx)
        return self._zero[key]

    def _sparse(self, shape: tuple[int, int, int], context: bool, big: bool) -> tuple[bytes, bytes]:
        r = self.rng
        C, lh, lw = shape
        sym = np.zeros(shape, np.int32)
        nrng = np.random.default_rng(r.getrandbits(32))
        if big:  # a few busy blocks in a quiet tile
            for _ in range(r.randint(1, 3)):
                y, x = r.randrange(lh), r.randrange(lw)
                blk = sym[:, y : y + 24, x : x + 24]
                blk[...] = np.rint(nrng.laplace(0, r.choice([0.5, 2, 8]), blk.shape))
        else:
            sym[...] = np.rint(nrng.laplace(0, r.choice([0.3, 1, 4, 30]), shape))
        if sym.size and r.random() < 0.3:  # escapes
            flat = sym.reshape(-1)
            pos = nrng.integers(0, flat.size, r.randint(1, 5))
            flat[pos] = nrng.integers(-(1 << 23), 1 << 23, pos.size)
        idx = np.array([r.randrange(256) for _ in range(C)], np.uint8)
        if r.random() < 0.5:
            from satcodec.entropy import fit_scale_indices

            idx = fit_scale_indices(sym)
        code = (encode_symbols_context if context else encode_symbols)(sym, idx)
        return code, idx.tobytes()

    def _offset(self, bits: int) -> int:
        r = self.rng
        if r.random() < 0.1:
            return r.randint(-(2**31), 2**31 - 1)
        return r.randint(0, 2 ** min(bits, 31) - 1)

    def header(self, kind: str) -> StreamHeader:
        r = self.rng
        m = r.choice(self.models) if self.models and r.random() < 0.93 else None
        C = m.config.latent if m is not None else r.choice([1, 3, 24, 96, 192])
        stride = m.config.downsampling if m is not None else r.choice([8, 16])
        if m is not None and r.random() < 0.03:
            C = r.choice([1, 95, 97])  # the model does not fit the stream
        if kind == "big":
            T = r.choice([2048, 4096, 8192])
            ty, tx = r.choice([(1, 1), (1, 1), (1, 2), (2, 1), (2, 2)])
            if T == 8192 and ty * tx > 2:
                ty, tx = 1, 2
            H, W, bands = ty * T, tx * T, 1
        else:
            bands = r.choice([1, 1, 1, 2, 3])
            H = max(1, int(2 ** r.uniform(0, 9)))
            W = max(1, int(2 ** r.uniform(0, 9)))
            while True:
                T = 16 * max(1, int(2 ** r.uniform(0, 9)))  # 16 .. 8192
                if T % stride == 0 and -(-H // T) * -(-W // T) * bands <= 64:
                    break
        dtype = r.choice(list(DTYPES))
        bits = DTYPES[dtype] if dtype.startswith("int") else r.randint(1, DTYPES[dtype])
        info = np.iinfo(dtype)
        nodata = None
        if r.random() < 0.4:
            nodata = float(r.choice([0, info.min, info.max, r.randint(info.min, info.max)]))
        meta = r.choice([{}, {"tags": {"k": "v"}}, {"transform": [1.0, 0, 0, 0, -1.0, 0]}])
        return StreamHeader(
            height=H,
            width=W,
            bands=bands,
            dtype=dtype,
            bit_depth=bits,
            model_id=m.model_id if m is not None else r.randbytes(16).hex(),
            quant_step_q16=r.choice([1, 1 << 12, 1 << 16, 1 << 18, r.randint(1, 2**32 - 1)]),
            tile_size=T,
            latent_channels=C,
            band_offsets=tuple(self._offset(bits) for _ in range(bands)),
            nodata=nodata,
            metadata=meta,
            downsampling=stride,
            channel_context=r.random() < 0.7,
        )

    def stream(self, kind: str) -> tuple[bytes, str]:
        r = self.rng
        h = self.header(kind)
        weights = {"zero": 5, "sparse": 3, "random": 1.5, "empty": 0.5}
        if kind == "big":
            weights = {"zero": 6, "sparse": 2, "random": 2, "empty": 0}
        choice = r.choices(list(weights), list(weights.values()))[0]  # mostly one per stream
        records, kinds = [], set()
        for b, row, col in h.iter_tile_keys():
            pk = (
                choice if r.random() < 0.85 else r.choices(list(weights), list(weights.values()))[0]
            )
            kinds.add(pk)
            lh, lw = h.tile_latent_shape(row, col)
            shape = (h.latent_channels, lh, lw)
            idx = bytes(h.latent_channels)
            if pk == "zero":
                code = self._zero_payload(shape, h.channel_context)
            elif pk == "sparse":
                code, idx = self._sparse(shape, h.channel_context, kind == "big")
            elif pk == "random":
                code = r.randbytes(4 * r.choice([0, 1, 2, 16, 200]))
                idx = r.randbytes(h.latent_channels)
            else:
                code = b""
            mask = None
            _, _, ph, pw = h.tile_pixel_window(row, col)
            if (h.nodata is not None or r.random() < 0.05) and r.random() < 0.5:
                mask = np.random.default_rng(r.getrandbits(32)).random((ph, pw)) < r.random()
            payload = _pack_payload(code, mask)
            if r.random() < 0.03:  # a garbage mask tail
                payload += r.randbytes(r.choice([1, 7, 100]))
            records.append(TileRecord(b, row, col, idx, payload))
        data = write_stream(h, records)
        desc = (
            f"gen-{kind} {h.bands}x{h.height}x{h.width} {h.dtype}/{h.bit_depth} tile {h.tile_size} "
            f"C={h.latent_channels} s{h.downsampling} ctx={int(h.channel_context)} "
            f"nodata={h.nodata} payloads={'+'.join(sorted(kinds))}"
        )
        return data, desc


def bomb(side: int, tile: int, model=None) -> bytes:
    """A valid ``side`` x ``side`` uint16 stream of all-zero latents in ``tile``-px tiles (the
    default shipped model's): a few hundred bytes however large -- a decompression bomb."""
    from satcodec.codec.registry import list_models

    m = model or next(m for m in list_models() if m.meta.get("default"))
    h = StreamHeader(
        height=side,
        width=side,
        bands=1,
        dtype="uint16",
        bit_depth=12,
        model_id=m.model_id,
        quant_step_q16=1 << 16,
        tile_size=tile,
        latent_channels=m.config.latent,
        band_offsets=(1000,),
        nodata=None,
        metadata={},
        downsampling=m.config.downsampling,
    )
    gen = StreamGenerator(random.Random(0), [m])
    records = []
    for b, r, c in h.iter_tile_keys():
        shape = (h.latent_channels, *h.tile_latent_shape(r, c))
        code = gen._zero_payload(shape, h.channel_context)
        records.append(TileRecord(b, r, c, bytes(h.latent_channels), _pack_payload(code, None)))
    return write_stream(h, records)


# --- peak RSS of decoding given streams ----------------------------------------------------------
def _status(key: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(key + r":\s+(\d+)", text).group(1)) * 1024


def peak(paths: list[str]) -> None:
    """Decode each stream (tile by tile, or to an array if small) and print its peak RSS above
    the process's base next to ``memory_bound()`` (Linux: VmHWM reset per stream)."""
    for p in paths:
        data = Path(p).read_bytes()
        bounded(_warm(data))  # model loaded and synthesis warmed up: part of the base
        Path("/proc/self/clear_refs").write_text("5")
        base = _status("VmRSS")
        t0 = time.perf_counter()
        outcome, bound = bounded(data)
        dt = time.perf_counter() - t0
        got = _status("VmHWM") - base
        print(
            json.dumps(
                {
                    "stream": p,
                    "bytes": len(data),
                    "outcome": outcome,
                    "seconds": round(dt, 1),
                    "peak_over_base_mib": round(got / 2**20, 1),
                    "bound_mib": round(bound / 2**20, 1),
                    "base_mib": round(base / 2**20, 1),
                }
            )
        )


def _warm(data: bytes) -> bytes:
    _net(StreamReader(data).header.model_id)
    return _tiny_stream_like(data)


def _tiny_stream_like(data: bytes) -> bytes:
    """A one-tile 64x64 zero stream of the same model: warms the synthesis up."""
    h = StreamReader(data).header
    small = StreamHeader(
        height=64,
        width=64,
        bands=1,
        dtype=h.dtype,
        bit_depth=h.bit_depth,
        model_id=h.model_id,
        quant_step_q16=h.quant_step_q16,
        tile_size=64,
        latent_channels=h.latent_channels,
        band_offsets=(0,),
        nodata=None,
        metadata={},
        downsampling=h.downsampling,
        channel_context=h.channel_context,
    )
    shape = (h.latent_channels, *small.tile_latent_shape(0, 0))
    code = encode_symbols(np.zeros(shape, np.int32), np.zeros(shape[0], np.uint8))
    if h.channel_context:
        code = encode_symbols_context(np.zeros(shape, np.int32), np.zeros(shape[0], np.uint8))
    rec = TileRecord(0, 0, 0, bytes(shape[0]), _pack_payload(code, None))
    return write_stream(small, [rec])


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "peak":
        peak(sys.argv[2:])
    elif len(sys.argv) == 5 and sys.argv[1] == "bomb":  # bomb SIDE TILE OUT: all-zero latents
        side, tile, out = int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
        out.write_bytes(bomb(side, tile))
        print(f"{out}: {out.stat().st_size} bytes, {side}x{side} px in {tile}-px tiles")
    elif len(sys.argv) > 2 and sys.argv[1] == "generate":  # generate N OUT_DIR [big|small]
        g = StreamGenerator(random.Random(0))
        out = Path(sys.argv[3])
        out.mkdir(parents=True, exist_ok=True)
        kind = sys.argv[4] if len(sys.argv) > 4 else "small"
        for i in range(int(sys.argv[2])):
            d, desc = g.stream(kind)
            (out / f"gen-{kind}-{i}.satc").write_bytes(d)
            print(f"gen-{kind}-{i}.satc {len(d)} bytes: {desc}")
    else:
        raise SystemExit(__doc__)
