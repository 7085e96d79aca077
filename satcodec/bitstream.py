"""Versioned bitstream container (format v1): header, tile table and tile records.

The byte layout is specified in ``docs/bitstream.md``; this module implements it. In short:
a 72-byte fixed header, per-band integer offsets, a JSON metadata object and a tile table,
all covered by one CRC32, followed by independently decodable tile records, each with its
own CRC32. The reader validates the header completely (and checks every size claim against
the bytes actually present) before it trusts anything, and reads tile-table entries on
demand, so a hostile header cannot make it allocate memory.

Public API: :class:`StreamHeader`, :class:`TileRecord`, :func:`write_stream`,
:func:`write_stream_file`, :class:`StreamReader`, :func:`quant_step_to_q16`.
"""

from __future__ import annotations

import json
import math
import mmap
import operator
import os
import re
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import accumulate

from satcodec.errors import (
    BadMagicError,
    BitstreamError,
    ConfigError,
    HeaderCorruptedError,
    HeaderLimitError,
    TileCorruptedError,
    TruncatedBitstreamError,
    UnsupportedVersionError,
)
from satcodec.fileutil import atomic_open

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "StreamHeader",
    "StreamReader",
    "TileRecord",
    "quant_step_to_q16",
    "write_stream",
    "write_stream_file",
]

MAGIC = b"SATC"
FORMAT_VERSION = 1

# --- limits (docs/bitstream.md, "Limits") -----------------------------------------------------
MAX_DIMENSION = 1 << 24
MAX_BANDS = 1024
MAX_LATENT_CHANNELS = 1024
MIN_TILE_SIZE = 16
MAX_TILE_SIZE = 8192
MAX_TILES = 1 << 24
MAX_METADATA_BYTES = 1 << 24
MAX_METADATA_DEPTH = 64  # JSON nesting; georeferencing needs ~4
DOWNSAMPLING = 16  # the default latent stride
# latent strides a stream may declare: 16 (four stride-2 stages) and 8 (three). Streams written
# before stride 8 existed all say 16, so they read unchanged.
SUPPORTED_DOWNSAMPLING = (8, 16)
# header flags (docs/bitstream.md, "Flags"): a reader refuses any flag it does not know
FLAG_CHANNEL_CONTEXT = 0x0001  # tile payloads use the cross-channel context model
FLAG_SPECTRAL_TRANSFORM = 0x0002  # the bands are components of a transform in the metadata
FLAG_BAND_PEAKS = 0x0004  # each band normalised by its own peak (metadata), not the bit depth's
KNOWN_FLAGS = FLAG_CHANNEL_CONTEXT | FLAG_SPECTRAL_TRANSFORM | FLAG_BAND_PEAKS
# the metadata key that carries the spectral transform (flag 0x0002; docs/bitstream.md)
SPECTRAL_KEY = "spectral_transform"
# the metadata key that carries each band's normalisation peak bits (flag 0x0004)
BAND_PEAKS_KEY = "band_peak_bits"
SPECTRAL_MATRIX_BITS = 14
MAX_SPECTRAL_BANDS = 256
MAX_COMPONENT_BITS = 31
_U32_MAX = 0xFFFFFFFF

# dtype code -> (name, bits, min, max)
_DTYPES: dict[int, tuple[str, int, int, int]] = {
    1: ("uint8", 8, 0, 0xFF),
    2: ("uint16", 16, 0, 0xFFFF),
    3: ("int16", 16, -(1 << 15), (1 << 15) - 1),
    4: ("uint32", 32, 0, _U32_MAX),
    5: ("int32", 32, -(1 << 31), (1 << 31) - 1),
}
_DTYPE_CODES = {name: code for code, (name, *_rest) in _DTYPES.items()}

# --- struct layouts ---------------------------------------------------------------------------
# magic, version, flags, stream_length, height, width, bands, latent_channels, dtype,
# bit_depth, downsampling, nodata_flag, nodata_value, model_id, quant_step_q16, tile_size,
# tile_count, meta_len
_FIXED = struct.Struct("<4sHHQIIHHBBBBd16sIIII")
FIXED_HEADER_SIZE = _FIXED.size  # 72
_TABLE_ENTRY = struct.Struct("<QI")  # offset, length
_TILE_HEAD = struct.Struct("<HHIIHHI")  # band, n_scales, row, col, latent_h, latent_w, P
_CRC = struct.Struct("<I")
TILE_OVERHEAD = _TILE_HEAD.size + _CRC.size  # 24 bytes + C + P per record

assert FIXED_HEADER_SIZE == 72 and _TABLE_ENTRY.size == 12 and _TILE_HEAD.size == 20


def quant_step_to_q16(step: float) -> int:
    """Return the Q16.16 code nearest to ``step`` (what :class:`StreamHeader` stores)."""
    q = round(float(step) * 65536)
    if not 1 <= q <= _U32_MAX:
        raise ConfigError(f"quantisation step {step!r} is outside the Q16.16 range (0, 65536)")
    return q


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _as_int(x: object) -> object:
    """``x`` as a plain int if it is integer-like (numpy ints too), else unchanged (bools stay)."""
    if isinstance(x, bool):
        return x
    try:
        return operator.index(x)  # type: ignore[arg-type]
    except TypeError:
        return x


def _encode_metadata(metadata: object) -> bytes:
    """Canonical metadata bytes; raises ValueError/TypeError/RecursionError if not encodable."""
    return json.dumps(
        metadata, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
    ).encode("utf-8")


def _reject_constant(name: str) -> object:
    raise ValueError(f"JSON constant {name} is not allowed")


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_BRACKET_DELTA = [0] * 256
_BRACKET_DELTA[ord("[")] = _BRACKET_DELTA[ord("{")] = 1
_BRACKET_DELTA[ord("]")] = _BRACKET_DELTA[ord("}")] = -1


def _json_depth_exceeds(raw: bytes, limit: int) -> bool:
    """Whether JSON text nests deeper than ``limit`` (brackets inside strings don't count).

    Checked before json.loads, whose recursion is bounded only by the interpreter's
    recursion limit: a program that raises that limit could otherwise overflow the C stack
    on a nesting bomb. Linear time, C-speed passes (about 2 s for a 16 MiB worst case).
    """
    skeleton = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKET)
    if skeleton.count(b"[") + skeleton.count(b"{") <= limit:
        return False  # the usual case: few brackets in all
    return max(accumulate(map(_BRACKET_DELTA.__getitem__, skeleton))) > limit


def _decode_metadata(raw: bytes) -> dict:
    """Parse metadata bytes; raises ValueError/RecursionError if not a JSON object."""
    if _json_depth_exceeds(raw, MAX_METADATA_DEPTH):
        raise ValueError(f"metadata nests deeper than {MAX_METADATA_DEPTH} levels")
    obj = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    if not isinstance(obj, dict):
        raise ValueError(f"metadata is a JSON {type(obj).__name__}, not an object")
    return obj


def _field_problem(h: StreamHeader) -> tuple[str, str] | None:
    """First problem with the header fields as ``(kind, message)``, or None.

    kind is "limit" (a size outside the limits) or "invalid" (a bad value). Shared by the
    constructor (which raises ConfigError) and the reader (which maps kinds to
    HeaderLimitError / HeaderCorruptedError), so both enforce the same rules.
    """
    for name in ("height", "width"):
        v = getattr(h, name)
        if not _is_int(v) or not 1 <= v <= MAX_DIMENSION:
            return "limit", f"{name} {v!r} is outside 1..{MAX_DIMENSION}"
    if not _is_int(h.bands) or not 1 <= h.bands <= MAX_BANDS:
        return "limit", f"bands {h.bands!r} is outside 1..{MAX_BANDS}"
    if not isinstance(h.channel_context, bool):
        return "invalid", f"channel_context {h.channel_context!r} is not a bool"
    if not _is_int(h.latent_channels) or not 1 <= h.latent_channels <= MAX_LATENT_CHANNELS:
        return "limit", f"latent channels {h.latent_channels!r} is outside 1..{MAX_LATENT_CHANNELS}"
    if not _is_int(h.tile_size) or not MIN_TILE_SIZE <= h.tile_size <= MAX_TILE_SIZE:
        return "limit", f"tile size {h.tile_size!r} is outside {MIN_TILE_SIZE}..{MAX_TILE_SIZE}"
    if h.downsampling not in SUPPORTED_DOWNSAMPLING:
        return "invalid", (
            f"downsampling factor {h.downsampling!r} is not one of "
            f"{', '.join(map(str, SUPPORTED_DOWNSAMPLING))}"
        )
    if h.tile_size % h.downsampling:
        return "invalid", f"tile size {h.tile_size} is not a multiple of {h.downsampling}"
    if h.dtype not in _DTYPE_CODES:
        return "invalid", f"dtype {h.dtype!r} is not one of {', '.join(_DTYPE_CODES)}"
    _name, bits, lo, hi = _DTYPES[_DTYPE_CODES[h.dtype]]
    if not _is_int(h.bit_depth) or not 1 <= h.bit_depth <= bits:
        return "invalid", f"bit depth {h.bit_depth!r} is outside 1..{bits} for {h.dtype}"
    if h.nodata is not None:
        nd = h.nodata
        if not isinstance(nd, float) or not math.isfinite(nd) or not nd.is_integer():
            return "invalid", f"nodata {nd!r} is not an integer value valid for {h.dtype}"
        if not lo <= nd <= hi:
            return "invalid", f"nodata {nd:g} is outside the {h.dtype} range {lo}..{hi}"
    if not isinstance(h.model_id, str) or len(h.model_id) != 32:
        return "invalid", f"model id {h.model_id!r} is not 32 hex characters"
    try:
        bytes.fromhex(h.model_id)
    except ValueError:
        return "invalid", f"model id {h.model_id!r} is not 32 hex characters"
    if not _is_int(h.quant_step_q16) or not 1 <= h.quant_step_q16 <= _U32_MAX:
        return (
            "invalid",
            f"quantisation step (Q16.16) {h.quant_step_q16!r} is outside 1..{_U32_MAX}",
        )
    if len(h.band_offsets) != h.bands:
        return "invalid", f"{len(h.band_offsets)} band offsets for {h.bands} bands"
    for b, off in enumerate(h.band_offsets):
        if not _is_int(off) or not -(1 << 31) <= off < (1 << 31):
            return "invalid", f"band offset {off!r} of band {b} does not fit an i32"
    if h.spectral_transform is not None:
        problem = spectral_problem(h.spectral_transform, h.bands)
        if problem is not None:
            return "invalid", f"spectral transform: {problem}"
    if h.band_peak_bits is not None:
        problem = band_peaks_problem(h.band_peak_bits, h.bands)
        if problem is not None:
            return "invalid", f"band peak bits: {problem}"
        if h.spectral_transform is not None:
            return "invalid", (
                "band peak bits and a spectral transform are both set (components carry "
                "their own peaks)"
            )
    if h.tile_count > MAX_TILES:
        return "limit", (
            f"header declares {h.height}x{h.width} pixels in {h.tile_count} tiles, "
            f"over the limit of {MAX_TILES} tiles"
        )
    return None


def spectral_problem(t: object, bands: int) -> str | None:
    """What is wrong with a ``spectral_transform`` object for ``bands`` bands, or None."""
    if not isinstance(t, dict):
        return f"is a {type(t).__name__}, not an object"
    keys = {"kind", "matrix", "means", "component_bits"}
    if set(t) != keys:
        return f"has keys {sorted(t)}, expected {sorted(keys)}"
    if t["kind"] != "klt":
        return f"kind {t['kind']!r} is not 'klt'"
    if not 2 <= bands <= MAX_SPECTRAL_BANDS:
        return f"needs 2..{MAX_SPECTRAL_BANDS} bands, the stream has {bands}"
    m = t["matrix"]
    lim = 1 << 15
    if (
        not isinstance(m, (list, tuple))
        or len(m) != bands
        or not all(isinstance(r, (list, tuple)) and len(r) == bands for r in m)
    ):
        return f"matrix is not {bands}x{bands}"
    if not all(_is_int(v) and -lim <= v < lim for r in m for v in r):
        return "matrix entries are not all integers in the int16 range"
    means = t["means"]
    if not isinstance(means, (list, tuple)) or len(means) != bands:
        return f"means is not a list of {bands} integers"
    if not all(_is_int(v) and -(1 << 31) <= v < (1 << 31) for v in means):
        return "means are not all integers in the int32 range"
    cb = t["component_bits"]
    if not isinstance(cb, (list, tuple)) or len(cb) != bands:
        return f"component_bits is not a list of {bands} integers"
    if not all(_is_int(v) and 1 <= v <= MAX_COMPONENT_BITS for v in cb):
        return f"component_bits are not all integers in 1..{MAX_COMPONENT_BITS}"
    return None


def _pop_reserved(metadata: dict, flags: int, flag: int, key: str, what: str) -> object:
    """The reserved metadata entry of a set ``flag``, taken out of ``metadata``; None when the
    flag is clear (the key is then ordinary metadata)."""
    if not flags & flag:
        return None
    if key not in metadata:
        raise HeaderCorruptedError(
            f"flag 0x{flag:04x} is set but the metadata has no {key!r} {what}"
        )
    return metadata.pop(key)


def band_peaks_problem(v: object, bands: int) -> str | None:
    """What is wrong with a ``band_peak_bits`` list for ``bands`` bands, or None."""
    if not isinstance(v, (list, tuple)) or len(v) != bands:
        return f"is not a list of {bands} integers"
    if not all(_is_int(b) and 1 <= b <= MAX_COMPONENT_BITS for b in v):
        return f"are not all integers in 1..{MAX_COMPONENT_BITS}"
    return None


_INT_FIELDS = (
    "height",
    "width",
    "bands",
    "bit_depth",
    "quant_step_q16",
    "tile_size",
    "latent_channels",
    "downsampling",
)


@dataclass(frozen=True)
class StreamHeader:
    """Everything a decoder needs besides the tiles (the header of ``docs/bitstream.md``).

    The constructor validates every field (raising :class:`~satcodec.errors.ConfigError`)
    and normalises ``dtype`` to its name (numpy dtypes accepted), integer fields to int
    (numpy integers accepted), ``band_offsets`` to a tuple, ``nodata`` to float, ``model_id`` to
    lowercase and ``metadata`` to its JSON round trip (tuples become lists, keys strings),
    so a header read back from a stream compares equal to the one written. The instance is
    frozen but ``metadata`` is a plain dict; it is not hashable.
    """

    height: int
    width: int
    bands: int
    dtype: str
    bit_depth: int
    model_id: str
    quant_step_q16: int
    tile_size: int
    latent_channels: int
    band_offsets: tuple[int, ...]
    nodata: float | None = None
    metadata: dict = field(default_factory=dict)
    downsampling: int = DOWNSAMPLING
    # tile payloads coded with satcodec.entropy.context (flag 0x0001) instead of the
    # per-channel model of satcodec.entropy.coder
    channel_context: bool = False
    # flag 0x0002: the coded bands are components of this transform (the JSON object of
    # docs/bitstream.md, "Spectral transform"; satcodec.coding.spectral applies it)
    spectral_transform: dict | None = None
    # flag 0x0004: band b is normalised by 2**band_peak_bits[b] - 1 instead of the bit
    # depth's peak, and dequantised at the step times 2**(max(bits) - bits[b])
    # (docs/bitstream.md, "Band peaks"; the encoder picks them from each band's texture)
    band_peak_bits: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise through the back door
        for name in _INT_FIELDS:
            set_(self, name, _as_int(getattr(self, name)))
        try:
            set_(self, "band_offsets", tuple(_as_int(v) for v in self.band_offsets))
        except TypeError:
            raise ConfigError(f"band offsets {self.band_offsets!r} are not a sequence") from None
        if self.band_peak_bits is not None:
            try:
                set_(self, "band_peak_bits", tuple(_as_int(v) for v in self.band_peak_bits))
            except TypeError:
                raise ConfigError(
                    f"band peak bits {self.band_peak_bits!r} are not a sequence"
                ) from None
        if not isinstance(self.dtype, str):  # numpy dtype objects and scalar types
            dt = self.dtype
            set_(self, "dtype", getattr(dt, "name", None) or getattr(dt, "__name__", dt))
        if isinstance(self.model_id, str):
            set_(self, "model_id", self.model_id.lower())
        nd = _as_int(self.nodata)
        if nd is not None and (_is_int(nd) or isinstance(nd, float)):
            try:
                set_(self, "nodata", float(nd))
            except OverflowError:
                pass  # a huge int: reported below as out of range
        problem = _field_problem(self)
        if problem is not None:
            raise ConfigError(problem[1])
        if not isinstance(self.metadata, dict):
            raise ConfigError(f"metadata is a {type(self.metadata).__name__}, not a dict")
        if self.spectral_transform is not None:
            if SPECTRAL_KEY in self.metadata:
                raise ConfigError(
                    f"metadata key {SPECTRAL_KEY!r} is reserved for the spectral transform"
                )
            set_(self, "spectral_transform", json.loads(_encode_metadata(self.spectral_transform)))
        if self.band_peak_bits is not None and BAND_PEAKS_KEY in self.metadata:
            raise ConfigError(f"metadata key {BAND_PEAKS_KEY!r} is reserved for the band peaks")
        try:
            # first pass turns non-str keys into str so that the sorted second pass can't fail
            plain = json.loads(json.dumps(self.metadata, ensure_ascii=False, allow_nan=False))
            raw = _encode_metadata(plain)
            meta = _decode_metadata(raw)
        except (ValueError, TypeError, RecursionError) as exc:
            raise ConfigError(f"metadata is not JSON-encodable: {exc}") from None
        if len(raw) > MAX_METADATA_BYTES:
            raise ConfigError(
                f"metadata encodes to {len(raw)} bytes, more than the limit {MAX_METADATA_BYTES}"
            )
        set_(self, "metadata", meta)

    # --- derived quantities ---------------------------------------------------------------
    @property
    def quant_step(self) -> float:
        """Quantisation step as a float (exactly ``quant_step_q16 / 65536``)."""
        return self.quant_step_q16 / 65536.0

    @property
    def latent_height(self) -> int:
        """Rows of the latent grid: ``ceil(height / downsampling)``."""
        return _ceil_div(self.height, self.downsampling)

    @property
    def latent_width(self) -> int:
        """Columns of the latent grid: ``ceil(width / downsampling)``."""
        return _ceil_div(self.width, self.downsampling)

    @property
    def tiles_y(self) -> int:
        """Tile rows per band: ``ceil(height / tile_size)``."""
        return _ceil_div(self.height, self.tile_size)

    @property
    def tiles_x(self) -> int:
        """Tile columns per band: ``ceil(width / tile_size)``."""
        return _ceil_div(self.width, self.tile_size)

    @property
    def tiles_per_band(self) -> int:
        """``tiles_y * tiles_x``."""
        return self.tiles_y * self.tiles_x

    @property
    def tile_count(self) -> int:
        """Tiles in the stream: ``bands * tiles_y * tiles_x``."""
        return self.bands * self.tiles_y * self.tiles_x

    @property
    def latents_per_tile(self) -> int:
        """Latents per side of a full tile: ``tile_size / downsampling``."""
        return self.tile_size // self.downsampling

    def _check_rc(self, row: int, col: int) -> None:
        if not (0 <= row < self.tiles_y and 0 <= col < self.tiles_x):
            raise ConfigError(
                f"tile ({row}, {col}) is outside the {self.tiles_y}x{self.tiles_x} grid"
            )

    def tile_index(self, band: int, row: int, col: int) -> int:
        """Position of a tile in the table (band-major, then row, then column)."""
        if not 0 <= band < self.bands:
            raise ConfigError(f"band {band} is outside 0..{self.bands - 1}")
        self._check_rc(row, col)
        return (band * self.tiles_y + row) * self.tiles_x + col

    def tile_key(self, index: int) -> tuple[int, int, int]:
        """Inverse of :meth:`tile_index`: ``(band, row, col)``."""
        if not 0 <= index < self.tile_count:
            raise ConfigError(f"tile index {index} is outside 0..{self.tile_count - 1}")
        band, rest = divmod(index, self.tiles_per_band)
        row, col = divmod(rest, self.tiles_x)
        return band, row, col

    def iter_tile_keys(self) -> Iterator[tuple[int, int, int]]:
        """All ``(band, row, col)`` in table order."""
        for band in range(self.bands):
            for row in range(self.tiles_y):
                for col in range(self.tiles_x):
                    yield band, row, col

    def tile_latent_shape(self, row: int, col: int) -> tuple[int, int]:
        """``(h, w)`` in latents of tile ``(row, col)``; edge tiles are smaller."""
        self._check_rc(row, col)
        n = self.latents_per_tile
        return (
            min(n, self.latent_height - row * n),
            min(n, self.latent_width - col * n),
        )

    def tile_pixel_window(self, row: int, col: int) -> tuple[int, int, int, int]:
        """``(y0, x0, h, w)`` in pixels of tile ``(row, col)``, clipped to the image."""
        self._check_rc(row, col)
        t = self.tile_size
        y0, x0 = row * t, col * t
        return y0, x0, min(t, self.height - y0), min(t, self.width - x0)


@dataclass(frozen=True)
class TileRecord:
    """One tile: its position, side information (C scale indices) and entropy-coded payload."""

    band: int
    row: int
    col: int
    scale_indices: bytes
    payload: bytes

    def __post_init__(self) -> None:
        for name in ("band", "row", "col"):
            object.__setattr__(self, name, _as_int(getattr(self, name)))
            if not _is_int(getattr(self, name)) or getattr(self, name) < 0:
                raise ConfigError(f"tile {name} {getattr(self, name)!r} is not an int >= 0")
        for name in ("scale_indices", "payload"):
            v = getattr(self, name)
            if not isinstance(v, bytes):
                if not isinstance(v, (bytearray, memoryview)):
                    raise ConfigError(f"tile {name} is a {type(v).__name__}, not bytes")
                object.__setattr__(self, name, bytes(v))


# --- writing ----------------------------------------------------------------------------------
def _collect_tiles(header: StreamHeader, tiles: Iterable[TileRecord]) -> list[TileRecord]:
    """Tiles in table order; raises ConfigError unless each tile appears exactly once."""
    slots: list[TileRecord | None] = [None] * header.tile_count
    c = header.latent_channels
    max_payload = _U32_MAX - TILE_OVERHEAD - c
    for t in tiles:
        if not isinstance(t, TileRecord):
            raise ConfigError(f"expected a TileRecord, got {type(t).__name__}")
        where = f"tile (band {t.band}, row {t.row}, col {t.col})"
        if not (t.band < header.bands and t.row < header.tiles_y and t.col < header.tiles_x):
            raise ConfigError(
                f"{where} is outside the {header.bands}x{header.tiles_y}x{header.tiles_x} grid"
            )
        i = header.tile_index(t.band, t.row, t.col)
        if slots[i] is not None:
            raise ConfigError(f"{where} is given twice")
        if len(t.scale_indices) != c:
            raise ConfigError(f"{where} has {len(t.scale_indices)} scale indices, expected {c}")
        if len(t.payload) > max_payload:
            raise ConfigError(f"{where} payload of {len(t.payload)} bytes exceeds {max_payload}")
        slots[i] = t
    missing = [i for i, t in enumerate(slots) if t is None]
    if missing:
        b, r, col = header.tile_key(missing[0])
        raise ConfigError(
            f"{len(missing)} of {header.tile_count} tiles are missing, "
            f"the first is (band {b}, row {r}, col {col})"
        )
    return slots  # type: ignore[return-value]  # no None left


def _encode_header(header: StreamHeader, record_lengths: list[int]) -> bytes:
    """Fixed header + band offsets + metadata + tile table + header CRC."""
    meta_obj = header.metadata
    if header.spectral_transform is not None:
        meta_obj = {**meta_obj, SPECTRAL_KEY: header.spectral_transform}
    if header.band_peak_bits is not None:
        meta_obj = {**meta_obj, BAND_PEAKS_KEY: list(header.band_peak_bits)}
    meta = _encode_metadata(meta_obj)
    n = header.tile_count
    data_start = FIXED_HEADER_SIZE + 4 * header.bands + len(meta) + _TABLE_ENTRY.size * n + 4
    stream_length = data_start + sum(record_lengths)
    nodata_flag, nodata_value = (0, 0.0) if header.nodata is None else (1, header.nodata)
    out = bytearray(
        _FIXED.pack(
            MAGIC,
            FORMAT_VERSION,
            (FLAG_CHANNEL_CONTEXT if header.channel_context else 0)
            | (FLAG_SPECTRAL_TRANSFORM if header.spectral_transform is not None else 0)
            | (FLAG_BAND_PEAKS if header.band_peak_bits is not None else 0),
            stream_length,
            header.height,
            header.width,
            header.bands,
            header.latent_channels,
            _DTYPE_CODES[header.dtype],
            header.bit_depth,
            header.downsampling,
            nodata_flag,
            nodata_value,
            bytes.fromhex(header.model_id),
            header.quant_step_q16,
            header.tile_size,
            n,
            len(meta),
        )
    )
    out += struct.pack(f"<{header.bands}i", *header.band_offsets)
    out += meta
    offset = data_start
    for length in record_lengths:
        out += _TABLE_ENTRY.pack(offset, length)
        offset += length
    out += _CRC.pack(zlib.crc32(out))
    assert len(out) == data_start
    return bytes(out)


def _encode_record(header: StreamHeader, tile: TileRecord) -> bytes:
    """One tile record, CRC included."""
    lh, lw = header.tile_latent_shape(tile.row, tile.col)
    head = _TILE_HEAD.pack(
        tile.band, len(tile.scale_indices), tile.row, tile.col, lh, lw, len(tile.payload)
    )
    body = head + tile.scale_indices + tile.payload
    return body + _CRC.pack(zlib.crc32(body))


def _stream_chunks(header: StreamHeader, tiles: Iterable[TileRecord]) -> Iterator[bytes]:
    """Validate everything, then yield the header and each record (encoded lazily)."""
    if not isinstance(header, StreamHeader):
        raise ConfigError(f"expected a StreamHeader, got {type(header).__name__}")
    ordered = _collect_tiles(header, tiles)
    lengths = [TILE_OVERHEAD + len(t.scale_indices) + len(t.payload) for t in ordered]
    yield _encode_header(header, lengths)
    for t in ordered:
        yield _encode_record(header, t)


def write_stream(header: StreamHeader, tiles: Iterable[TileRecord]) -> bytes:
    """Encode a complete stream.

    ``tiles`` may come in any order but must hold every tile of the grid exactly once, each
    with ``latent_channels`` scale indices; otherwise :class:`~satcodec.errors.ConfigError`.
    Records are laid out in table order (band, row, col).
    """
    chunks = list(_stream_chunks(header, tiles))  # validation happens before the first chunk
    return b"".join(chunks)


def write_stream_file(
    path: str | os.PathLike, header: StreamHeader, tiles: Iterable[TileRecord]
) -> None:
    """Write a stream to ``path`` atomically: readers see the old file or the complete new one.

    Everything is validated before the file is opened; records are encoded one at a time
    while writing, so no second copy of all payloads is held in memory.
    """
    chunks = _stream_chunks(header, tiles)
    first = next(chunks)  # runs the validation before anything touches the file system
    with atomic_open(path, "wb") as fh:
        fh.write(first)
        for chunk in chunks:
            fh.write(chunk)


# --- reading ----------------------------------------------------------------------------------
def _as_byte_view(data: object) -> memoryview:
    """A flat, C-contiguous byte view of ``data`` (zlib and struct need contiguous memory)."""
    try:
        view = memoryview(data)  # type: ignore[arg-type]
    except TypeError:
        raise BitstreamError(f"cannot read a bitstream from a {type(data).__name__}") from None
    if not view.c_contiguous:
        view = memoryview(view.tobytes())  # a strided view: copy it once
    if view.ndim != 1 or view.format != "B":
        view = view.cast("B")  # any C-contiguous buffer casts to unsigned bytes
    return view


def _tile_error(band: int, row: int, col: int, msg: str) -> TileCorruptedError:
    return TileCorruptedError(f"tile (band {band}, row {row}, col {col}): {msg}", band, row, col)


def _close_quietly(mm: mmap.mmap) -> None:
    try:
        mm.close()
    except BufferError:  # a view is still alive somewhere (e.g. a traceback); GC closes it
        pass


class StreamReader:
    """Validated, random-access view of a stream (``docs/bitstream.md``).

    The constructor validates the whole header (raising a subclass of
    :class:`~satcodec.errors.BitstreamError`, never anything else) without allocating in
    proportion to its claims; tiles are checked when read. With ``partial=True`` a stream
    that is cut short after its header opens anyway and the tiles beyond the end raise
    :class:`~satcodec.errors.TileCorruptedError` (recovery of a partial downlink).

    The reader keeps a reference to ``data`` (no copy). Use it as a context manager or call
    :meth:`close` to release a memory map opened by :meth:`open`.
    """

    def __init__(self, data: bytes | bytearray | memoryview, *, partial: bool = False) -> None:
        self._mmap: mmap.mmap | None = None
        self._data = _as_byte_view(data)
        try:
            self._parse_header(partial)
        except BaseException:
            self._data.release()  # so a memory map behind it can be closed
            raise

    @classmethod
    def open(
        cls, path: str | os.PathLike, *, partial: bool = False, use_mmap: bool = True
    ) -> StreamReader:
        """Open a stream file (memory-mapped by default; OSError escapes for I/O problems).

        Do not truncate a mapped file while the reader is open (the OS would raise SIGBUS);
        pass ``use_mmap=False`` to read it into memory instead.
        """
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if not use_mmap or size == 0:  # an empty file cannot be mapped
                return cls(fh.read(), partial=partial)
            mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            reader = cls(mm, partial=partial)
        except BaseException:
            _close_quietly(mm)
            raise
        reader._mmap = mm
        return reader

    def close(self) -> None:
        """Release the buffer (and the memory map, if any); the reader is unusable after."""
        self._data.release()
        if self._mmap is not None:
            _close_quietly(self._mmap)
            self._mmap = None

    def __enter__(self) -> StreamReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- header ------------------------------------------------------------------------------
    def _parse_header(self, partial: bool) -> None:
        d = self._data
        n_data = len(d)
        head = bytes(d[: min(n_data, FIXED_HEADER_SIZE)])
        # 1-3: magic, version, fixed header present
        if head[:4] != MAGIC[: len(head)]:
            raise BadMagicError(
                f"not a satcodec stream: starts with {head[:4]!r}, expected {MAGIC!r}"
            )
        if n_data < 6:
            raise TruncatedBitstreamError(
                f"stream is truncated: {n_data} bytes, too short for a header"
            )
        (version,) = struct.unpack_from("<H", head, 4)
        if version != FORMAT_VERSION:
            raise UnsupportedVersionError(
                f"bitstream version {version} is not supported (this reader knows {FORMAT_VERSION})"
            )
        if n_data < FIXED_HEADER_SIZE:
            raise TruncatedBitstreamError(
                f"stream is truncated: {n_data} bytes, shorter than the {FIXED_HEADER_SIZE}-byte fixed header"
            )
        (
            _magic,
            _version,
            flags,
            stream_length,
            height,
            width,
            bands,
            channels,
            dtype_code,
            bit_depth,
            downsampling,
            nodata_flag,
            nodata_value,
            model_id,
            quant_q16,
            tile_size,
            tile_count,
            meta_len,
        ) = _FIXED.unpack(head)

        # 4: the fields that locate the CRC, checked before the CRC can be
        if not 1 <= bands <= MAX_BANDS:
            raise HeaderLimitError(
                f"header declares {bands} bands; this reader accepts 1..{MAX_BANDS}"
            )
        if not 1 <= channels <= MAX_LATENT_CHANNELS:
            raise HeaderLimitError(
                f"header declares {channels} latent channels; this reader accepts 1..{MAX_LATENT_CHANNELS}"
            )
        if not 1 <= tile_count <= MAX_TILES:
            raise HeaderLimitError(
                f"header declares {tile_count} tiles; this reader accepts 1..{MAX_TILES}"
            )
        if meta_len > MAX_METADATA_BYTES:
            raise HeaderLimitError(
                f"header declares {meta_len} bytes of metadata; this reader accepts at most {MAX_METADATA_BYTES}"
            )
        meta_start = FIXED_HEADER_SIZE + 4 * bands
        table_start = meta_start + meta_len
        crc_pos = table_start + _TABLE_ENTRY.size * tile_count
        data_start = crc_pos + 4
        min_record = TILE_OVERHEAD + channels
        min_stream = data_start + tile_count * min_record

        # 5: are the claims plausible for the bytes we hold? (before reading the variable part)
        if min_stream > n_data:
            if stream_length >= min_stream and stream_length > n_data:
                if not (partial and data_start <= n_data):
                    raise TruncatedBitstreamError(
                        f"stream is truncated: header declares {stream_length} bytes but only "
                        f"{n_data} are present"
                    )
            else:
                raise HeaderLimitError(
                    f"header declares {height}x{width} pixels in {tile_count} tiles but the file "
                    f"holds only {n_data} bytes (at least {min_stream} needed)"
                )

        # 6: header CRC
        (stored_crc,) = _CRC.unpack_from(d, crc_pos)
        actual_crc = zlib.crc32(d[:crc_pos])
        if stored_crc != actual_crc:
            raise HeaderCorruptedError(
                f"header CRC mismatch: stored {stored_crc:08x}, computed {actual_crc:08x}"
            )

        # 7: authenticated fields
        if flags & ~KNOWN_FLAGS:
            raise UnsupportedVersionError(
                f"bitstream sets flags 0x{flags & ~KNOWN_FLAGS:04x}, unknown to this reader "
                f"(version {FORMAT_VERSION})"
            )
        if dtype_code not in _DTYPES:
            raise HeaderCorruptedError(f"unknown dtype code {dtype_code}")
        if nodata_flag not in (0, 1):
            raise HeaderCorruptedError(f"nodata flag {nodata_flag} is neither 0 nor 1")
        if nodata_flag == 0 and head[32:40] != bytes(8):
            raise HeaderCorruptedError("nodata value is set but the nodata flag is 0")
        meta_raw = bytes(d[meta_start:table_start])
        try:
            metadata = _decode_metadata(meta_raw)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise HeaderCorruptedError(f"metadata is not a valid JSON object: {msg}") from None
        band_offsets = struct.unpack_from(f"<{bands}i", d, FIXED_HEADER_SIZE)
        spectral = _pop_reserved(metadata, flags, FLAG_SPECTRAL_TRANSFORM, SPECTRAL_KEY, "object")
        band_peaks = _pop_reserved(metadata, flags, FLAG_BAND_PEAKS, BAND_PEAKS_KEY, "list")
        if band_peaks is not None and band_peaks_problem(band_peaks, bands) is None:
            band_peaks = tuple(band_peaks)
        try:
            header = StreamHeader.__new__(StreamHeader)  # validate first, then normalise
            for k, v in dict(
                height=height,
                width=width,
                bands=bands,
                dtype=_DTYPES[dtype_code][0],
                bit_depth=bit_depth,
                model_id=model_id.hex(),
                quant_step_q16=quant_q16,
                tile_size=tile_size,
                latent_channels=channels,
                band_offsets=band_offsets,
                nodata=nodata_value if nodata_flag else None,
                metadata=metadata,
                downsampling=downsampling,
                channel_context=bool(flags & FLAG_CHANNEL_CONTEXT),
                spectral_transform=spectral,
                band_peak_bits=band_peaks,
            ).items():
                object.__setattr__(header, k, v)
            problem = _field_problem(header)
            if problem is not None:
                cls = HeaderLimitError if problem[0] == "limit" else HeaderCorruptedError
                raise cls(f"invalid header: {problem[1]}")
            if tile_count != header.tile_count:
                raise HeaderCorruptedError(
                    f"header declares {tile_count} tiles but {bands} band(s) of {height}x{width} "
                    f"pixels in {tile_size}-pixel tiles make {header.tile_count}"
                )
            header.__post_init__()  # normalises metadata (rejects e.g. lone surrogates)
        except ConfigError as exc:
            raise HeaderCorruptedError(f"invalid header: {exc}") from None
        if stream_length < min_stream:
            raise HeaderCorruptedError(
                f"header declares a {stream_length}-byte stream, less than the {min_stream} its tiles need"
            )

        # 8: stream length against the data
        if n_data < stream_length and not partial:
            raise TruncatedBitstreamError(
                f"stream is truncated: header declares {stream_length} bytes but only {n_data} are present"
            )
        if n_data > stream_length:
            raise BitstreamError(
                f"{n_data - stream_length} unexpected bytes after the end of the "
                f"{stream_length}-byte stream"
            )

        self.header: StreamHeader = header
        self.stream_length: int = stream_length
        self.data_start: int = data_start
        self._table_start = table_start
        self._min_record = min_record

    # --- tiles --------------------------------------------------------------------------------
    def read_tile(self, band: int, row: int, col: int) -> TileRecord:
        """Read and verify one tile.

        Raises :class:`~satcodec.errors.TileCorruptedError` (carrying band/row/col) if its
        record is out of the data, fails its CRC or disagrees with the table or the grid;
        :class:`~satcodec.errors.ConfigError` if (band, row, col) is not in the grid.
        """
        index = self.header.tile_index(band, row, col)
        d = self._data
        offset, length = _TABLE_ENTRY.unpack_from(d, self._table_start + _TABLE_ENTRY.size * index)
        if length < self._min_record:
            raise _tile_error(
                band,
                row,
                col,
                f"table length {length} is below the minimum record size {self._min_record}",
            )
        if offset < self.data_start:
            raise _tile_error(
                band,
                row,
                col,
                f"table offset {offset} points into the header (data starts at {self.data_start})",
            )
        end = offset + length
        if end > len(d):
            raise _tile_error(
                band,
                row,
                col,
                f"record [{offset}, {end}) extends past the end of the data ({len(d)} bytes)",
            )
        with d[offset:end] as rec:  # released on exit so a memory map behind it can be closed
            return self._decode_record(rec, band, row, col)

    def _decode_record(self, rec: memoryview, band: int, row: int, col: int) -> TileRecord:
        h = self.header
        length = len(rec)
        (stored_crc,) = _CRC.unpack_from(rec, length - 4)
        actual_crc = zlib.crc32(rec[:-4])
        if stored_crc != actual_crc:
            raise _tile_error(
                band, row, col, f"CRC mismatch: stored {stored_crc:08x}, computed {actual_crc:08x}"
            )
        t_band, n_scales, t_row, t_col, lh, lw, plen = _TILE_HEAD.unpack_from(rec)
        # CRC-valid but inconsistent means a misplaced record or a faulty writer
        if (t_band, t_row, t_col) != (band, row, col):
            raise _tile_error(
                band, row, col, f"record claims to be (band {t_band}, row {t_row}, col {t_col})"
            )
        c = h.latent_channels
        if n_scales != c:
            raise _tile_error(
                band, row, col, f"record holds {n_scales} scale indices, expected {c}"
            )
        exp_h, exp_w = h.tile_latent_shape(row, col)
        if (lh, lw) != (exp_h, exp_w):
            raise _tile_error(
                band, row, col, f"record latent shape {lh}x{lw}, expected {exp_h}x{exp_w}"
            )
        if TILE_OVERHEAD + c + plen != length:
            raise _tile_error(
                band, row, col, f"payload length {plen} does not fit the {length}-byte record"
            )
        p0 = _TILE_HEAD.size
        return TileRecord(
            band, row, col, bytes(rec[p0 : p0 + c]), bytes(rec[p0 + c : p0 + c + plen])
        )

    def iter_tiles(self, *, skip_damaged: bool = False) -> Iterator[TileRecord]:
        """Yield every tile in table order.

        A damaged tile raises :class:`~satcodec.errors.TileCorruptedError` (ending the
        iteration) unless ``skip_damaged``, in which case it is left out.
        """
        for key in self.header.iter_tile_keys():
            try:
                yield self.read_tile(*key)
            except TileCorruptedError:
                if not skip_damaged:
                    raise

    def check(self) -> list[tuple[int, int, int]]:
        """Verify every tile; return the ``(band, row, col)`` of the damaged ones (never raises
        for damage)."""
        damaged = []
        for key in self.header.iter_tile_keys():
            try:
                self.read_tile(*key)
            except TileCorruptedError:
                damaged.append(key)
        return damaged
