"""An independent satcodec v1 reader, written from ``docs/bitstream.md`` alone.

It parses a stream down to each tile's integer latents and nodata mask, to check that the
document is enough to implement a decoder (``tests/test_conformance.py``). It imports
nothing from ``satcodec``: only the standard library, numpy (to read the table file the
document names) and, for speed, ``constriction`` (the ANS library the document names). The
coder itself is also implemented here from the document's integer rules (``PyAns``).

Errors are reported as :class:`FormatError`; this reader checks what it needs to decode
valid streams safely, not every rule of "How a reader validates a stream".
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TABLE_PATH = Path(__file__).resolve().parents[2] / "satcodec/entropy/tables/laplace_v1.npz"
TABLE_SHA256 = "339d71ac0e471cbac3185a811657ef2d4e1e740bb25652229ee8fb08b0e3c827"
CONTEXT_SHA256 = "6b0f1fb07319af7ce2e396d2567731849800b1053b9df4e8c6c8a3390ac3067f"
THRESHOLDS = [0] * 16 + [
    int(v)
    for v in """37 160 295 443 605 783 979 1193 1428 1686 1969
    2280 2621 2995 3405 3855 4349 4891 5486 6138 6853 7639 8500 9445 10482 11620 12868 14237
    15740 17388 19197 21182 23359 25747 28368 31243 34398 37859 41657 45823 50394 55409 60912
    66949 73572 80840 88813 97560""".split()
]
LEVELS = list(range(-64, 65, 2))
DTYPES = {1: "uint8", 2: "uint16", 3: "int16", 4: "uint32", 5: "int32"}
FIXED = struct.Struct("<4sHHQIIHHBBBBd16sIIII")  # the 72-byte fixed header
RECORD_HEAD = struct.Struct("<HHIIHHI")  # band, n_scales, row, col, latent_h, latent_w, P
P24 = 1 << 24


class FormatError(Exception):
    """The bytes break a rule of the document."""


def check(cond: object, msg: str) -> None:
    if not cond:
        raise FormatError(msg)


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


# --- container -------------------------------------------------------------------------------
@dataclass
class Header:
    version: int
    flags: int
    stream_length: int
    height: int
    width: int
    bands: int
    channels: int
    dtype: str
    bit_depth: int
    downsampling: int
    nodata: float | None
    model_id: str
    quant_step_q16: int
    tile_size: int
    tile_count: int
    band_offsets: list[int]
    metadata: dict
    table: list[tuple[int, int]]  # (offset, length) per tile, in table order
    data_start: int
    spectral: dict | None = None  # flag 0x0002's transform object
    band_peak_bits: list[int] | None = None  # flag 0x0004's per-band peak bits

    @property
    def tiles_y(self) -> int:
        return cdiv(self.height, self.tile_size)

    @property
    def tiles_x(self) -> int:
        return cdiv(self.width, self.tile_size)

    def latent_shape(self, row: int, col: int) -> tuple[int, int]:
        L = self.tile_size // self.downsampling
        lh, lw = cdiv(self.height, self.downsampling), cdiv(self.width, self.downsampling)
        return min(L, lh - row * L), min(L, lw - col * L)

    def pixel_shape(self, row: int, col: int) -> tuple[int, int]:
        T = self.tile_size
        return min(T, self.height - row * T), min(T, self.width - col * T)


def parse_header(data: bytes) -> Header:
    check(len(data) >= FIXED.size and data[:4] == b"SATC", "not a SATC stream")
    (_, version, flags, stream_length, height, width, bands, channels, dtype, bit_depth,
     downsampling, nodata_flag, nodata_value, model_id, q16, tile_size, tile_count,
     meta_len) = FIXED.unpack_from(data)  # fmt: skip
    check(version == 1, f"version {version}")
    check(flags & ~7 == 0, f"unknown flags {flags:#x}")
    check(len(data) == stream_length, "stream length differs from the header's")
    table_start = 72 + 4 * bands + meta_len
    crc_pos = table_start + 12 * tile_count
    check(crc_pos + 4 <= len(data), "header larger than the stream")
    (crc,) = struct.unpack_from("<I", data, crc_pos)
    check(crc == zlib.crc32(data[:crc_pos]), "header CRC mismatch")
    check(dtype in DTYPES and downsampling in (8, 16) and nodata_flag in (0, 1), "bad field")
    check(tile_size % downsampling == 0 and q16 >= 1, "bad tile size or step")
    metadata = json.loads(data[72 + 4 * bands : table_start].decode("utf-8"))
    check(isinstance(metadata, dict), "metadata is not a JSON object")
    h = Header(
        version, flags, stream_length, height, width, bands, channels, DTYPES[dtype],
        bit_depth, downsampling, nodata_value if nodata_flag else None, model_id.hex(), q16,
        tile_size, tile_count, list(struct.unpack_from(f"<{bands}i", data, 72)), metadata,
        [struct.unpack_from("<QI", data, table_start + 12 * i) for i in range(tile_count)],
        crc_pos + 4,
    )  # fmt: skip
    check(tile_count == bands * h.tiles_y * h.tiles_x, "tile count disagrees with the grid")
    if flags & 2:  # "Spectral transform": the reserved key, taken out of the metadata
        t = metadata.pop("spectral_transform", None)
        check(isinstance(t, dict), "flag 0x0002 without a spectral_transform object")
        check(set(t) == {"kind", "matrix", "means", "component_bits"}, "spectral keys")
        check(t["kind"] == "klt" and 2 <= bands <= 256, "spectral kind or band count")
        m, means, cb = t["matrix"], t["means"], t["component_bits"]
        check(len(m) == bands and all(len(r) == bands for r in m), "matrix shape")
        check(all(type(v) is int and -32768 <= v <= 32767 for r in m for v in r), "matrix")
        check(len(means) == bands and all(type(v) is int for v in means), "means")
        check(len(cb) == bands and all(type(v) is int and 1 <= v <= 31 for v in cb), "bits")
        h.spectral = t
    if flags & 4:  # "Band peaks": the reserved key, taken out of the metadata
        check(not flags & 2, "band peaks beside a spectral transform")
        p = metadata.pop("band_peak_bits", None)
        check(isinstance(p, list) and len(p) == bands, "flag 0x0004 without band_peak_bits")
        check(all(type(v) is int and 1 <= v <= 31 for v in p), "band peak bits")
        h.band_peak_bits = p
    return h


def band_peak_and_step(h: Header, band: int) -> tuple[int, float]:
    """The document's normalisation peak and dequantisation step of a coded band (flags 0x0002
    and 0x0004, else the bit depth's peak and the stream's step)."""
    step = h.quant_step_q16 / 65536
    bits = h.band_peak_bits or (h.spectral["component_bits"] if h.spectral else None)
    if bits is None:
        return 2**h.bit_depth - 1, step
    return 2 ** bits[band] - 1, step * 2 ** (max(bits) - bits[band])


def spectral_bands(h: Header, components: np.ndarray) -> np.ndarray:
    """The document's rule: ``x[b] = sum_k (M[b][k] / 2^14) c[k] + m[b]``, rounded and
    clipped as a band is; ``components`` (bands, h, w) are the synthesis outputs times
    ``2^component_bits[k] - 1`` plus the band offsets."""
    t = h.spectral
    a = np.array(t["matrix"], np.float64) / 2**14
    x = np.tensordot(a, components.astype(np.float64), axes=1)
    x += np.array(t["means"], np.float64)[:, None, None]
    info = np.iinfo(h.dtype)
    hi = min(info.max, 2**h.bit_depth - 1) if info.min == 0 else info.max
    return np.clip(np.rint(x), info.min, hi).astype(h.dtype)


def read_record(data: bytes, h: Header, band: int, row: int, col: int) -> tuple[bytes, bytes]:
    """``(scale_indices, payload)`` of one tile record, checked against its table entry."""
    offset, length = h.table[(band * h.tiles_y + row) * h.tiles_x + col]
    check(offset >= h.data_start and offset + length <= len(data), "record out of the stream")
    check(length >= 24 + h.channels, "record too short")
    rec = data[offset : offset + length]
    check(struct.unpack_from("<I", rec, length - 4)[0] == zlib.crc32(rec[:-4]), "record CRC")
    b, nc, r, c, lh, lw, p = RECORD_HEAD.unpack_from(rec)
    check((b, nc, r, c) == (band, h.channels, row, col), "record does not match its entry")
    check((lh, lw) == h.latent_shape(row, col), "record latent shape")
    check(24 + nc + p == length, "record length")
    return rec[20 : 20 + nc], rec[20 + nc : 20 + nc + p]


def split_payload(h: Header, payload: bytes, row: int, col: int) -> tuple[bytes, np.ndarray | None]:
    """``(entropy bytes, nodata mask (ph, pw) bool or None)`` of a tile payload."""
    check(len(payload) >= 4, "payload shorter than 4 bytes")
    (e,) = struct.unpack_from("<I", payload)
    check(e % 4 == 0 and e <= len(payload) - 4, f"bad entropy length {e}")
    entropy, tail = payload[4 : 4 + e], payload[4 + e :]
    if not tail:
        return entropy, None
    check(h.nodata is not None, "nodata mask without a nodata value")
    ph, pw = h.pixel_shape(row, col)
    nbytes = cdiv(ph * pw, 8)
    try:
        packed = zlib.decompressobj().decompress(tail, nbytes + 1)  # bounded inflation
    except zlib.error as exc:
        raise FormatError(f"mask: {exc}") from None
    check(len(packed) == nbytes, "mask has the wrong size")
    bits = [(byte >> (7 - i)) & 1 for byte in packed for i in range(8)]  # MSB first
    return entropy, np.array(bits[: ph * pw], bool).reshape(ph, pw)


# --- table and coder models ------------------------------------------------------------------
class Table:
    def __init__(self, path: Path = TABLE_PATH) -> None:
        raw = path.read_bytes()
        check(hashlib.sha256(raw).hexdigest() == TABLE_SHA256, "not the specified table")
        with np.load(path) as z:
            self.scales = [float(v) for v in z["scales"]]
            self.support = [int(v) for v in z["support"]]
            offs, half = z["half_offsets"], z["half_counts"]
            halves = [[int(v) for v in half[offs[t] : offs[t + 1]]] for t in range(256)]
        self.counts = []  # full 16-bit rows f[j], j = 0 .. 2L + 1
        for t, c in enumerate(halves):
            L = self.support[t]
            f = [c[abs(j - L)] for j in range(2 * L + 1)] + [c[L + 1]]
            check(sum(f) == 65536, f"row {t} does not sum to 65536")
            self.counts.append(f)
        self._cum: dict[int, list[int]] = {}

    def cumulative(self, t: int) -> list[int]:
        """``F[0 .. N]`` of row ``t``'s 24-bit coder model."""
        if t not in self._cum:
            f, F, S = self.counts[t], [0], 0
            N = len(f)
            for j in range(1, N + 1):
                S += f[j - 1]
                F.append(S * (P24 - N) // 65536 + j)
            self._cum[t] = F
        return self._cum[t]


class PyAns:
    """The ANS decoder of the document ("ANS decoding"), in plain integers."""

    def __init__(self, entropy: bytes, table: Table) -> None:
        self.words = list(struct.unpack(f"<{len(entropy) // 4}I", entropy))
        self.table = table
        self.x = 0
        if self.words:
            check(self.words[-1] != 0, "trailing zero word")
            self.x = self.words.pop()
            if self.words:
                self.x = (self.x << 32) | self.words.pop()

    def _symbol(self, s: int, left: int, freq: int) -> int:
        q = self.x % P24
        self.x = (self.x >> 24) * freq + q - left
        if self.x < 1 << 32 and self.words:
            self.x = (self.x << 32) | self.words.pop()
        return s

    def row(self, t: int, count: int) -> np.ndarray:
        F = self.table.cumulative(t)
        out = []
        for _ in range(count):
            q = self.x % P24
            lo, hi = 0, len(F) - 1  # find s with F[s] <= q < F[s + 1]
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if F[mid] <= q else (lo, mid)
            out.append(self._symbol(lo, F[lo], F[lo + 1] - F[lo]))
        return np.array(out, np.int64)

    def uniform(self, sizes: list[int]) -> np.ndarray:
        out = []
        for m in sizes:
            w = P24 // m
            s = min(self.x % P24 // w, m - 1)
            out.append(self._symbol(s, s * w, w if s < m - 1 else P24 - s * w))
        return np.array(out, np.int64)

    def done(self) -> bool:
        return self.x == 0


class ConstrictionAns:
    """The same decoder through constriction, as the document allows (much faster)."""

    def __init__(self, entropy: bytes, table: Table) -> None:
        import constriction

        self.model = constriction.stream.model
        words = np.frombuffer(entropy, "<u4").astype(np.uint32)
        check(not words.size or words[-1] != 0, "trailing zero word")
        self.coder = constriction.stream.stack.AnsCoder(words)
        self.table = table

    def row(self, t: int, count: int) -> np.ndarray:
        pmf = np.array(self.table.counts[t], np.float64) / 65536
        return self.coder.decode(self.model.Categorical(pmf, perfect=False), count)

    def uniform(self, sizes: list[int]) -> np.ndarray:
        return self.coder.decode(self.model.Uniform(), np.array(sizes, np.int32))

    def done(self) -> bool:
        return self.coder.is_empty()


# --- entropy-coded latents -------------------------------------------------------------------
def decode_escapes(ans: PyAns | ConstrictionAns, supports: list[int]) -> list[int]:
    """Values of escaped latents (rows of support ``supports``): classes, then mantissas."""
    classes = [int(e) for e in ans.uniform([48] * len(supports))] if supports else []
    with_m = [e >> 1 for e in classes if e >> 1 >= 1]
    mantissas = iter(int(u) for u in ans.uniform([1 << nb for nb in with_m])) if with_m else None
    out = []
    for L, e in zip(supports, classes, strict=True):
        nb = e >> 1
        v = (1 << nb) + (next(mantissas) if nb >= 1 else 0)  # type: ignore[arg-type]
        check(L + v <= P24 - 1, "escaped latent out of range")
        out.append(-(L + v) if e & 1 else L + v)
    return out


def decode_per_channel(ans, table: Table, b: list[int], n: int) -> np.ndarray:
    k = np.zeros((len(b), n), np.int64)
    escaped = []  # (channel, position, L) in decoding order
    for t in sorted(set(b)):
        L = table.support[t]
        chans = [c for c in range(len(b)) if b[c] == t]
        j = ans.row(t, len(chans) * n).reshape(len(chans), n)
        for i, c in enumerate(chans):
            k[c] = j[i] - L
            escaped += [(c, p, L) for p in np.flatnonzero(j[i] == 2 * L + 1)]
    for (c, p, _), v in zip(escaped, decode_escapes(ans, [e[2] for e in escaped]), strict=True):
        k[c, p] = v
    return k


def context_constants(table: Table) -> list[int]:
    """``R`` of the channel-context model, checked with ``T`` against the pinned digest."""
    from fractions import Fraction

    R = [round(Fraction(4096) / Fraction(s)) for s in table.scales]
    digest = hashlib.sha256(struct.pack("<64q", *THRESHOLDS) + struct.pack("<256q", *R))
    check(digest.hexdigest() == CONTEXT_SHA256, "context constants differ from the document")
    return R


def decode_context(ans, table: Table, b: list[int], n: int) -> np.ndarray:
    R = context_constants(table)
    T = np.array(THRESHOLDS, np.int64)
    k = np.zeros((len(b), n), np.int64)
    acc = np.zeros(n, np.int64)
    order = sorted(range(len(b)), key=lambda c: (-b[c], c))
    for m, c in enumerate(order):
        delta = np.zeros(n, np.int64)
        if m:
            delta = np.array(LEVELS)[np.searchsorted(T, acc // m, side="right")]
        rows = np.clip(b[c] + delta, 0, 255)
        escaped = []  # (position, L) in decoding order
        for t in sorted(set(rows.tolist())):
            L = table.support[t]
            pos = np.flatnonzero(rows == t)
            j = ans.row(t, pos.size)
            k[c, pos] = j - L
            escaped += [(p, L) for p in pos[j == 2 * L + 1]]
        for (p, _), v in zip(escaped, decode_escapes(ans, [L for _, L in escaped]), strict=True):
            k[c, p] = v
        acc += np.minimum(np.abs(k[c]), 1023) * R[b[c]]
    return k


@dataclass
class Tile:
    band: int
    row: int
    col: int
    scale_indices: list[int]
    latents: np.ndarray  # int64 (C, latent_h, latent_w)
    mask: np.ndarray | None  # bool (ph, pw)


def read_tile(data: bytes, h: Header, table: Table, band: int, row: int, col: int,
              ans: type = ConstrictionAns) -> Tile:  # fmt: skip
    indices, payload = read_record(data, h, band, row, col)
    entropy, mask = split_payload(h, payload, row, col)
    lh, lw = h.latent_shape(row, col)
    coder = ans(entropy, table)
    decode = decode_context if h.flags & 1 else decode_per_channel
    k = decode(coder, table, list(indices), lh * lw)
    check(coder.done(), "entropy payload not consumed exactly")
    return Tile(band, row, col, list(indices), k.reshape(h.channels, lh, lw), mask)


def read_stream(data: bytes, ans: type = ConstrictionAns) -> tuple[Header, list[Tile]]:
    """The header and every tile, in table order."""
    h = parse_header(data)
    table = Table()
    tiles = [
        read_tile(data, h, table, b, r, c, ans)
        for b in range(h.bands)
        for r in range(h.tiles_y)
        for c in range(h.tiles_x)
    ]
    return h, tiles
