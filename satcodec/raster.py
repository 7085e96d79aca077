"""GeoTIFF in and out: a small, rasterio-like layer for the codec and the ground segment.

What it gives:

* :class:`RasterMeta` -- everything the codec must carry through the bitstream to rebuild an
  equivalent GeoTIFF (size, dtype, bit depth, nodata, CRS, transform, RPCs, GCPs, band
  descriptions, dataset tags), JSON-serialisable and strictly validated on the way back in.
* :func:`open_raster` / :class:`RasterReader` -- reads whole bands or boundless windows (edge
  replicated) with bounded memory, for the tiled encoder's tile + halo reads.
* :func:`write_raster`, :func:`create_raster` / :class:`RasterWriter`, :func:`write_cog` --
  atomic writers (temp file in the destination folder, renamed on success; a character
  device or FIFO destination such as /dev/null gets the finished bytes copied into it, a
  directory is refused: see :mod:`satcodec.fileutil`). Nodata pixels are written as
  ``meta.nodata``, or flagged in an internal per-dataset mask band when it is None.
* :func:`infer_bit_depth`, :func:`check_bit_depth`, :func:`damaged_fill_value`,
  :func:`is_valid_cog`.

Every rasterio/GDAL failure is re-raised as :class:`~satcodec.errors.RasterError` with the
path in the message, so no rasterio exception type escapes this module.

Conventions: bands are 0-based in this API (rasterio is 1-based); arrays are (bands, H, W).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import math
import operator
import os
import re
import struct
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import rasterio
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.errors import CRSError, NotGeoreferencedWarning, RasterioError
from rasterio.transform import Affine
from rasterio.windows import Window

from satcodec.errors import RasterError
from satcodec.fileutil import atomic_path

try:  # GDAL errors raised by rasterio that do not derive from RasterioError
    from rasterio._err import CPLE_BaseError
except ImportError:  # pragma: no cover - private module moved
    CPLE_BaseError = RasterioError  # type: ignore[misc,assignment]

__all__ = [
    "ENCODABLE_DTYPES",
    "MAX_BANDS",
    "MAX_DIM",
    "SUPPORTED_DTYPES",
    "RasterMeta",
    "RasterReader",
    "RasterWriter",
    "check_bit_depth",
    "create_raster",
    "damaged_fill_value",
    "infer_bit_depth",
    "is_valid_cog",
    "open_raster",
    "write_cog",
    "write_raster",
]

#: Sample types this layer reads and writes, with their storage width in bits. Any other
#: type (uint32, int32, float32, ...) is refused with a RasterError naming it.
SUPPORTED_DTYPES: dict[str, int] = {"uint8": 8, "uint16": 16, "int16": 16}
#: The subset the encoder takes (int16 rasters can be read and written, not encoded).
ENCODABLE_DTYPES: tuple[str, ...] = ("uint8", "uint16")
#: Most bands a raster may have (multispectral/hyperspectral cubes stay well below).
MAX_BANDS = 4096
#: Largest width or height accepted (2**20 = 1,048,576 px: long push-broom strips fit).
MAX_DIM = 1 << 20
#: Sanity caps for metadata parsed from untrusted bitstream headers.
MAX_GCPS = 1 << 20
MAX_TAGS = 1 << 16

#: Tile size of GeoTIFFs written by :func:`write_raster` / :class:`RasterWriter`.
TILE_SIZE = 256
#: Memory budget of one read while scanning an image for its maximum.
_SCAN_BUDGET_BYTES = 64 << 20

_ERRORS = (RasterioError, CPLE_BaseError, CRSError)
_RPC_SCALARS = (
    "HEIGHT_OFF",
    "HEIGHT_SCALE",
    "LAT_OFF",
    "LAT_SCALE",
    "LINE_OFF",
    "LINE_SCALE",
    "LONG_OFF",
    "LONG_SCALE",
    "SAMP_OFF",
    "SAMP_SCALE",
)
_RPC_COEFFS = ("LINE_DEN_COEFF", "LINE_NUM_COEFF", "SAMP_DEN_COEFF", "SAMP_NUM_COEFF")
_RPC_OPTIONAL = ("ERR_BIAS", "ERR_RAND")
_GCP_KEYS = ("row", "col", "x", "y", "z", "id", "info")
_GCP_REQUIRED = ("row", "col", "x", "y")
#: Keys of the metadata object that RasterMeta reads (anything else is kept as a tag).
_META_KEYS = frozenset(
    {
        "height",
        "width",
        "count",
        "dtype",
        "bit_depth",
        "nodata",
        "crs_wkt",
        "transform",
        "rpcs",
        "gcps",
        "gcps_crs_wkt",
        "descriptions",
        "band_descriptions",
        "tags",
        "nbits_tag",
    }
)
_TAG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,127}")
_IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


# --- small helpers ---------------------------------------------------------------------------
def _dtype_bits(dtype: str) -> int:
    try:
        return SUPPORTED_DTYPES[str(np.dtype(dtype))]
    except (TypeError, KeyError):
        raise RasterError(
            f"unsupported sample type {dtype!r} (supported: {', '.join(SUPPORTED_DTYPES)})"
        ) from None


@contextlib.contextmanager
def _wrap(path: Any, what: str) -> Iterator[None]:
    """Turn rasterio/GDAL/OS exceptions into RasterError naming the path (no chained traceback)."""
    try:
        yield
    except RasterError:
        raise
    except (*_ERRORS, OSError) as exc:
        raise RasterError(f"{os.fspath(path)}: {what}: {exc}") from None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    # rasterio warns on every dataset without a geotransform (RPC/GCP imagery is like that).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        yield


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _canonical_rpcs(raw: Mapping[str, Any]) -> dict[str, str]:
    """Validate RPCs in GDAL metadata form and return them canonicalised.

    Form: ``{"LINE_OFF": "17495.0", "LINE_NUM_COEFF": "<20 numbers>", ...}`` -- the keys and
    string values of ``rasterio.rpc.RPC.to_gdal()``; numbers are written with Python ``repr``
    so they round-trip exactly. ERR_BIAS/ERR_RAND are kept when present (also when 0, which
    ``RPC.to_gdal`` would drop). Keys outside the RPC00B set are dropped.
    """
    if not isinstance(raw, Mapping):
        raise RasterError("rpcs must be an object")
    out: dict[str, str] = {}
    for key in _RPC_SCALARS + _RPC_OPTIONAL:
        if key not in raw:
            if key in _RPC_OPTIONAL:
                continue
            raise RasterError(f"rpcs: missing {key}")
        val = raw[key]
        try:
            num = float(val) if isinstance(val, str) else math.nan
        except ValueError:
            num = math.nan
        if not math.isfinite(num):
            raise RasterError(f"rpcs: {key} must be a string holding one finite number")
        out[key] = repr(num)
    for key in _RPC_COEFFS:
        val = raw.get(key)
        try:
            nums = [float(t) for t in val.split()] if isinstance(val, str) else []
        except ValueError:
            nums = []
        if len(nums) != 20 or not all(math.isfinite(n) for n in nums):
            raise RasterError(f"rpcs: {key} must be a string of 20 finite numbers")
        out[key] = " ".join(repr(n) for n in nums)
    return out


def _check_wkt(wkt: Any, name: str) -> str | None:
    if wkt is None:
        return None
    if not isinstance(wkt, str) or not wkt:
        raise RasterError(f"{name} must be a non-empty string or null")
    try:
        CRS.from_wkt(wkt)
    except _ERRORS as exc:
        raise RasterError(f"{name} is not a valid WKT CRS: {exc}") from None
    return wkt


# --- TIFF structure (what GDAL does not report) ----------------------------------------------
_TIFF_TILE_WIDTH, _TIFF_TILE_LENGTH, _TIFF_TILE_OFFSETS = 322, 323, 324
_TIFF_BITS_PER_SAMPLE = 258
_TIFF_INT_TYPES = {3: "H", 4: "I", 16: "Q"}  # SHORT, LONG, LONG8
_TIFF_MAX_ENTRIES = 4096  # an IFD with more entries is not a file we wrote or want


def _tiff_ifd(path: Any, ifd_offset: int | None) -> dict[int, list[int] | None] | None:
    """Tags of the TIFF IFD at ``ifd_offset`` (the first IFD when None), or None if unreadable.

    Maps each tag number to its values when they are SHORT/LONG/LONG8 and at most 64 of
    them, else to None (the tag is present, its values were not read). Classic TIFF and
    BigTIFF, either byte order. Only local files (GDAL virtual paths give None).
    """
    name = os.fspath(path)
    if name.startswith("/vsi") or not os.path.isfile(name):
        return None
    try:
        with open(name, "rb") as fh:
            head = fh.read(16)
            order = {b"II": "<", b"MM": ">"}.get(head[:2])
            if order is None or len(head) < 8:
                return None
            (magic,) = struct.unpack(order + "H", head[2:4])
            if magic == 42:
                big, first = False, struct.unpack(order + "I", head[4:8])[0]
            elif magic == 43 and len(head) == 16:
                big, first = True, struct.unpack(order + "Q", head[8:16])[0]
            else:
                return None
            fh.seek(first if ifd_offset is None else int(ifd_offset))
            raw_n = fh.read(8 if big else 2)
            if len(raw_n) != (8 if big else 2):
                return None
            (n,) = struct.unpack(order + ("Q" if big else "H"), raw_n)
            size = 20 if big else 12
            if not 0 < n <= _TIFF_MAX_ENTRIES:
                return None
            raw = fh.read(n * size)
            if len(raw) != n * size:
                return None
            inline = 8 if big else 4
            tags: dict[int, list[int] | None] = {}
            for i in range(n):
                entry = raw[i * size : (i + 1) * size]
                fmt = "HHQ" if big else "HHI"
                tag, typ, count = struct.unpack(order + fmt, entry[: size - inline])
                value = entry[size - inline :]
                code = _TIFF_INT_TYPES.get(typ)
                if code is None or not 0 < count <= 64:
                    tags[tag] = None
                    continue
                nbytes = count * struct.calcsize(code)
                if nbytes > inline:
                    (where,) = struct.unpack(order + ("Q" if big else "I"), value)
                    pos = fh.tell()
                    fh.seek(where)
                    value = fh.read(nbytes)
                    fh.seek(pos)
                    if len(value) != nbytes:
                        tags[tag] = None
                        continue
                tags[tag] = list(struct.unpack(order + code * count, value[:nbytes]))
            return tags
    except (OSError, struct.error, ValueError, OverflowError):
        return None


def _ifd_offset(ds: Any, ovr: int | None = None) -> int | None:
    v = ds.get_tag_item("IFD_OFFSET", "TIFF", bidx=1, ovr=ovr)
    try:
        return int(v) if v else None
    except ValueError:
        return None


def _stored_bits(ds: Any, path: Any) -> int | None:
    """The BitsPerSample a GeoTIFF really stores its samples with, or None if unknown.

    GDAL's NBITS may come from the file's BitsPerSample (then no value can exceed it) or
    from metadata -- a PAM ``.aux.xml`` beside the file -- that nothing enforces.
    """
    if ds.driver != "GTiff":
        return None
    tags = _tiff_ifd(path, _ifd_offset(ds))
    bps = None if tags is None else tags.get(_TIFF_BITS_PER_SAMPLE)
    if not bps or len(set(bps)) != 1:
        return None
    return int(bps[0])


# --- bit depth -------------------------------------------------------------------------------
def _bits_used(lo: int, hi: int) -> int:
    """Bits needed to store every value of [lo, hi] (two's complement when lo < 0)."""
    if lo >= 0:
        return int(hi).bit_length()  # == ceil(log2(hi + 1))
    return 1 + max(max(int(hi), 0).bit_length(), (-int(lo) - 1).bit_length())


def _clip_message(what: str, lo: int, hi: int, bit_depth: int) -> str:
    need = _bits_used(lo, hi)
    reach = f"span {lo}..{hi}" if lo < 0 else f"reach {hi}"
    return (
        f"{what}: values {reach}, which needs {need} bits; bit depth {bit_depth} "
        f"(--bit-depth {bit_depth}) would clip them"
    )


def check_bit_depth(max_value: int, bit_depth: int, what: str) -> None:
    """Raise RasterError when data reaching ``max_value`` do not fit ``bit_depth`` bits.

    For a bit depth given by the user (``--bit-depth``, ``bit_depth=``): values above
    ``2**bit_depth - 1`` would be clipped by the codec, i.e. silently destroyed. ``what``
    names the data in the message (a path, "array"). Example message: ``array: values
    reach 2047, which needs 11 bits; bit depth 8 (--bit-depth 8) would clip them``.
    """
    try:
        hi = operator.index(max_value)
        depth = operator.index(bit_depth)
    except TypeError:
        raise RasterError(
            f"{what}: max_value and bit_depth must be integers, got {max_value!r}, {bit_depth!r}"
        ) from None
    if isinstance(bit_depth, bool) or depth < 1:
        raise RasterError(f"{what}: bit_depth must be a positive int, got {bit_depth!r}")
    if _bits_used(0, max(hi, 0)) > depth:
        raise RasterError(_clip_message(what, min(hi, 0), hi, depth))


def damaged_fill_value(dtype: str, bit_depth: int) -> int | None:
    """A nodata value for damaged tiles that no decoded pixel can take, or None.

    Decoded pixels lie in ``0 .. 2**bit_depth - 1``, so ``2**bit_depth`` is free whenever
    ``dtype`` can hold it (uint16 up to bit depth 15, uint8 up to 7, int16 up to 14). For
    full-width data (8-bit uint8, 16-bit uint16) every value may be a real pixel: None, and
    the caller must flag the damaged pixels with a mask band instead (``nodata_mask`` with
    ``meta.nodata = None`` in :func:`write_cog`, :func:`write_raster` and
    :meth:`RasterWriter.write_window`). With the fill value as nodata no NBITS tag is written
    (see :meth:`RasterMeta.nbits_to_write`).
    """
    _dtype_bits(dtype)
    info = np.iinfo(str(np.dtype(dtype)))
    try:
        depth = operator.index(bit_depth)
    except TypeError:
        raise RasterError(f"bit_depth must be a positive int, got {bit_depth!r}") from None
    if isinstance(bit_depth, bool) or depth < 1:
        raise RasterError(f"bit_depth must be a positive int, got {bit_depth!r}")
    fill = 1 << depth
    return fill if fill <= info.max else None


def _bit_depth_from_range(lo: int, hi: int, dtype: str, nbits_tag: int | None) -> int:
    bits = _dtype_bits(dtype)
    info = np.iinfo(str(np.dtype(dtype)))
    if lo < info.min or hi > info.max:
        raise RasterError(f"values {lo}..{hi} do not fit {dtype}")
    used = _bits_used(lo, hi)
    if nbits_tag is not None and used <= nbits_tag <= bits:
        return int(nbits_tag)
    # Sensor words are even widths (10/12/14/16 bit): a 12-bit Pleiades pan scene often only
    # reaches 11 bits, and its PSNR peak must still be 4095, so round the data width up to even.
    even = used + (used % 2)
    return min(bits, max(8, even))


def infer_bit_depth(
    array_or_max: np.ndarray | int | float,
    dtype: str,
    nbits_tag: int | None = None,
    *,
    nodata: float | None = None,
) -> int:
    """Return the bit depth (peak = 2**bit_depth - 1) of data stored as ``dtype``.

    Rule:

    1. The NBITS tag when present and plausible: ``bits used <= nbits_tag <= dtype bits``
       (a tag claiming fewer bits than the data use is wrong, so it is ignored).
    2. Otherwise from the data: bits used = ``ceil(log2(max + 1))``, rounded UP to an even
       number (11 -> 12, 13 -> 14, 15 -> 16), at least 8 and at most the dtype width. Why even:
       sensor words are 10/12/14/16 bits wide, and the data of a 12-bit sensor often do not
       reach the top bit (Pleiades pan is 12-bit but its values typically use 11 bits).

    ``array_or_max`` is either the data (any shape; its min and max are used, pixels equal to
    ``nodata`` ignored) or the data maximum as a number (minimum then assumed >= 0). For int16
    data with negative values the width includes a sign bit.
    """
    _dtype_bits(dtype)
    if isinstance(array_or_max, np.ndarray):
        data = array_or_max
        if nodata is not None:
            data = data[data != nodata]
        if data.size == 0:
            lo = hi = 0
        else:
            lo, hi = data.min(), data.max()
            if not (math.isfinite(float(lo)) and math.isfinite(float(hi))):
                raise RasterError("data contain non-finite values")
            if float(lo) != int(lo) or float(hi) != int(hi):
                raise RasterError("data contain non-integer values")
            lo, hi = int(lo), int(hi)
    else:
        value = float(array_or_max)
        if not math.isfinite(value) or value != int(value):
            raise RasterError(f"maximum must be a finite integer, got {array_or_max!r}")
        hi = int(value)
        lo = min(hi, 0)
    if nbits_tag is not None and (isinstance(nbits_tag, bool) or not isinstance(nbits_tag, int)):
        raise RasterError(f"nbits_tag must be an int or None, got {nbits_tag!r}")
    return _bit_depth_from_range(lo, hi, dtype, nbits_tag)


# --- metadata --------------------------------------------------------------------------------
def _extra_tag_name(key: str, tags: Mapping[str, str]) -> str:
    """Tag name for an unknown metadata key: itself when plain and free, else prefixed."""
    if _TAG_NAME.fullmatch(key) and key not in tags:
        return key
    base = "SATCODEC_META_" + (re.sub(r"[^A-Za-z0-9_.:-]", "_", key)[:128] or "_")
    name, n = base, 1
    while name in tags:
        n += 1
        name = f"{base}_{n}"
    return name


@functools.cache
def _zstd_available() -> bool:
    """Whether this GDAL writes ZSTD-compressed GeoTIFFs (a build option of libtiff/GDAL)."""
    from rasterio.io import MemoryFile

    try:
        with _quiet(), rasterio.Env(CPL_LOG="/dev/null"), MemoryFile() as mem:
            with mem.open(
                driver="GTiff", width=16, height=16, count=1, dtype="uint8", compress="zstd"
            ) as ds:
                ds.write(np.zeros((1, 16, 16), np.uint8))
        return True
    except Exception:  # any failure means: not usable here
        return False


def compression_options(nbits: int | None) -> dict[str, Any]:
    """Creation options for the GeoTIFFs satcodec writes (decoded products, COGs).

    ZSTD (its default level, 9) with horizontal predictor 2 when GDAL has ZSTD, else DEFLATE
    with predictor 2. Measured on a decoded 1000² 12-bit Pleiades scene (1 bpp): ZSTD +
    predictor 1.023 MB, DEFLATE + predictor 1.055 MB, and ZSTD writes and reads faster.
    NBITS (bit-packed samples) rules out any predictor in GDAL, and packed samples compress
    better with DEFLATE (1.156 MB) than with ZSTD (1.218 MB): those stay DEFLATE.
    """
    if nbits is not None:
        return {"compress": "deflate", "nbits": nbits}
    return {"compress": "zstd" if _zstd_available() else "deflate", "predictor": 2}


@dataclass
class RasterMeta:
    """What is needed to rebuild an equivalent GeoTIFF, stored in the bitstream header.

    ``transform`` is the affine ``(a, b, c, d, e, f)`` of rasterio (x = a*col + b*row + c,
    y = d*col + e*row + f), or None when the raster has no geotransform (identity in GDAL);
    ``rpcs`` is the GDAL metadata form of ``rasterio.rpc.RPC.to_gdal()`` (string values);
    ``gcps`` is a list of ``{"row", "col", "x", "y", "z", "id", "info"}`` with their CRS in
    ``gcps_crs_wkt``; ``tags`` are the dataset's default-domain metadata (RPC/GCP live
    elsewhere); ``nbits_tag`` is the NBITS the source file declared, for information.
    ``bit_depth`` is the codec's bit depth (peak = 2**bit_depth - 1); ``nodata`` is None or an
    integer value representable in ``dtype``. ``descriptions`` is one entry per band, or
    empty (no descriptions). Parsed from a bitstream (:meth:`from_json_dict`), ``height``,
    ``width``, ``count``, ``dtype`` and ``bit_depth`` may be None when the metadata object
    lacks them: fill them from the bitstream header before writing.
    """

    height: int
    width: int
    count: int
    dtype: str
    bit_depth: int
    nodata: float | None = None
    crs_wkt: str | None = None
    transform: tuple[float, float, float, float, float, float] | None = None
    rpcs: dict[str, str] | None = None
    gcps: list[dict[str, Any]] | None = None
    gcps_crs_wkt: str | None = None
    descriptions: list[str | None] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    nbits_tag: int | None = None

    def __post_init__(self) -> None:
        if not self.descriptions and isinstance(self.count, int):
            self.descriptions = [None] * self.count

    def to_json_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (only str/int/float/None/list/dict; floats finite)."""
        return {
            "height": self.height,
            "width": self.width,
            "count": self.count,
            "dtype": self.dtype,
            "bit_depth": self.bit_depth,
            "nodata": None if self.nodata is None else float(self.nodata),
            "crs_wkt": self.crs_wkt,
            "transform": None if self.transform is None else [float(v) for v in self.transform],
            "rpcs": None if self.rpcs is None else dict(self.rpcs),
            "gcps": None if self.gcps is None else [dict(g) for g in self.gcps],
            "gcps_crs_wkt": self.gcps_crs_wkt,
            "descriptions": list(self.descriptions),
            "tags": dict(self.tags),
            "nbits_tag": self.nbits_tag,
        }

    @classmethod
    def from_json_dict(cls, d: Any) -> RasterMeta:
        """Parse and validate a bitstream's metadata object; RasterError on anything malformed.

        The object comes from an untrusted file, and docs/bitstream.md makes it opaque with
        optional keys, so any JSON object is accepted as long as the keys this class knows
        hold valid values:

        * A missing key gets its default: ``height``, ``width``, ``count``, ``dtype``,
          ``bit_depth`` become None (unknown: the bitstream header holds them, and the caller
          must fill them in before writing -- :meth:`validate` refuses None there),
          ``nodata``, ``crs_wkt``, ``transform``, ``rpcs``, ``gcps``, ``gcps_crs_wkt``,
          ``nbits_tag`` None, ``descriptions`` ``[None] * count`` (``[]`` when ``count`` is
          missing: no descriptions), ``tags`` ``{}``. ``band_descriptions`` (the name in
          docs/bitstream.md) is read when ``descriptions`` is absent; in a GCP ``z``
          defaults to 0, ``id`` and ``info`` to "".
        * A key it does not know is kept as a dataset tag (so it reaches the GeoTIFF): under
          its own name when that is a plain tag name (letters, digits, ``_.:-``, at most 128
          characters, not already a tag), else as ``SATCODEC_META_<name>``; a non-string
          value is stored as compact JSON. At most MAX_TAGS tags in all.
        * Known keys are checked exactly (bool is not an int), sizes are bounded (MAX_DIM,
          MAX_BANDS, MAX_GCPS, MAX_TAGS), floats must be finite, CRS WKT must parse, RPCs
          must be complete; ``null`` is no substitute for a required number.
        """
        if not isinstance(d, Mapping):
            raise RasterError("raster metadata must be a JSON object")

        def int_in(key: str, lo: int, hi: int) -> int:
            v = d[key]
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise RasterError(f"raster metadata: {key} must be an int in [{lo}, {hi}]")
            return v

        def opt_int(key: str, lo: int, hi: int) -> int | None:
            return int_in(key, lo, hi) if key in d else None

        height = opt_int("height", 1, MAX_DIM)
        width = opt_int("width", 1, MAX_DIM)
        count = opt_int("count", 1, MAX_BANDS)
        dtype = d.get("dtype")
        if "dtype" in d and (not isinstance(dtype, str) or dtype not in SUPPORTED_DTYPES):
            raise RasterError(f"raster metadata: dtype must be one of {list(SUPPORTED_DTYPES)}")
        bits = SUPPORTED_DTYPES[dtype] if dtype is not None else max(SUPPORTED_DTYPES.values())
        bit_depth = opt_int("bit_depth", 1, bits)
        nbits_tag = None if d.get("nbits_tag") is None else int_in("nbits_tag", 1, bits)

        nodata = d.get("nodata")
        if nodata is not None:
            if dtype is not None:
                lo, hi = int(np.iinfo(dtype).min), int(np.iinfo(dtype).max)
            else:  # any supported type's range; the header's nodata replaces it anyway
                lo = min(int(np.iinfo(t).min) for t in SUPPORTED_DTYPES)
                hi = max(int(np.iinfo(t).max) for t in SUPPORTED_DTYPES)
            if not _is_number(nodata) or nodata != int(nodata) or not lo <= nodata <= hi:
                raise RasterError(f"raster metadata: nodata must be null or an integer in {dtype}")
            nodata = float(nodata)

        transform = d.get("transform")
        if transform is not None:
            if (
                not isinstance(transform, list)
                or len(transform) != 6
                or not all(_is_number(v) for v in transform)
            ):
                raise RasterError("raster metadata: transform must be null or 6 finite numbers")
            transform = tuple(float(v) for v in transform)

        crs_wkt = _check_wkt(d.get("crs_wkt"), "crs_wkt")
        gcps_crs_wkt = _check_wkt(d.get("gcps_crs_wkt"), "gcps_crs_wkt")
        rpcs = None if d.get("rpcs") is None else _canonical_rpcs(d["rpcs"])

        gcps = d.get("gcps")
        if gcps is not None:
            if not isinstance(gcps, list) or not 1 <= len(gcps) <= MAX_GCPS:
                raise RasterError(f"raster metadata: gcps must be null or 1..{MAX_GCPS} points")
            parsed = []
            for i, g in enumerate(gcps):
                if (
                    not isinstance(g, Mapping)
                    or not set(_GCP_REQUIRED) <= set(g)
                    or not set(g) <= set(_GCP_KEYS)
                ):
                    raise RasterError(
                        f"raster metadata: gcps[{i}] must have keys {_GCP_REQUIRED} "
                        f"(and optionally z, id, info)"
                    )
                g = {"z": 0.0, "id": "", "info": ""} | dict(g)
                if not all(_is_number(g[k]) for k in ("row", "col", "x", "y", "z")):
                    raise RasterError(f"raster metadata: gcps[{i}] coordinates must be finite")
                if not isinstance(g["id"], str) or not isinstance(g["info"], str):
                    raise RasterError(f"raster metadata: gcps[{i}] id and info must be strings")
                parsed.append(
                    {k: float(g[k]) for k in ("row", "col", "x", "y", "z")}
                    | {"id": g["id"], "info": g["info"]}
                )
            gcps = parsed

        desc_key = "descriptions" if "descriptions" in d else "band_descriptions"
        descriptions = d.get(desc_key, [])
        if (
            not isinstance(descriptions, list)
            or (descriptions and count is not None and len(descriptions) != count)
            or len(descriptions) > MAX_BANDS
            or not all(x is None or isinstance(x, str) for x in descriptions)
        ):
            raise RasterError(f"raster metadata: {desc_key} must be `count` strings or nulls")

        tags = d.get("tags", {})
        if not isinstance(tags, Mapping) or len(tags) > MAX_TAGS:
            raise RasterError(f"raster metadata: tags must be an object of <= {MAX_TAGS} items")
        for k, v in tags.items():
            # GDAL stores metadata as "KEY=VALUE" strings: a key cannot be empty or hold "=".
            if not isinstance(k, str) or not k or "=" in k or not isinstance(v, str):
                raise RasterError(f"raster metadata: bad tag {str(k)[:40]!r}")
        tags = dict(tags)
        for k in sorted(set(d) - _META_KEYS, key=str):
            name = _extra_tag_name(str(k), tags)
            v = d[k]
            if not isinstance(v, str):
                try:
                    v = json.dumps(v, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
                except (TypeError, ValueError, RecursionError):
                    raise RasterError(
                        f"raster metadata: value of {str(k)[:40]!r} is not JSON"
                    ) from None
            tags[name] = v
        if len(tags) > MAX_TAGS:
            raise RasterError(f"raster metadata: more than {MAX_TAGS} tags and extra keys")

        return cls(
            height=height,  # type: ignore[arg-type]
            width=width,  # type: ignore[arg-type]
            count=count,  # type: ignore[arg-type]
            dtype=dtype,  # type: ignore[arg-type]
            bit_depth=bit_depth,  # type: ignore[arg-type]
            nodata=nodata,
            crs_wkt=crs_wkt,
            transform=transform,
            rpcs=rpcs,
            gcps=gcps,
            gcps_crs_wkt=gcps_crs_wkt,
            descriptions=list(descriptions),
            tags=tags,
            nbits_tag=nbits_tag,
        )

    def validate(self) -> None:
        """Raise RasterError unless this metadata would survive :meth:`from_json_dict`."""
        try:
            d = self.to_json_dict()
        except (TypeError, ValueError) as exc:
            raise RasterError(f"invalid raster metadata: {exc}") from None
        RasterMeta.from_json_dict(d)

    def nbits_to_write(self) -> int | None:
        """NBITS to store in written GeoTIFFs, or None.

        Only for unsigned types with ``bit_depth`` below the dtype width, and only when the
        nodata value fits in ``bit_depth`` bits (GDAL clamps stored values to the NBITS range).
        The damaged-tile fill value ``2**bit_depth`` (:func:`damaged_fill_value`) is such a
        nodata: NBITS is then dropped rather than widened, because readers take NBITS as the
        bit depth (``bit_depth + 1`` would be wrong) while without it they infer the depth
        from the data, nodata excluded.
        """
        if self.dtype == "int16" or self.bit_depth >= _dtype_bits(self.dtype):
            return None
        if self.nodata is not None and not 0 <= self.nodata <= (1 << self.bit_depth) - 1:
            return None
        return self.bit_depth

    def rasterio_profile(self, *, nbits: bool = True) -> dict[str, Any]:
        """Keyword arguments for ``rasterio.open(path, "w", **profile)`` (GTiff, tiled 256).

        ZSTD (DEFLATE where GDAL lacks it) with horizontal predictor 2, band interleaved (so
        windowed per-band writes do not rewrite other bands' tiles), BigTIFF when needed.
        With ``nbits`` and a bit depth below the dtype width, NBITS=bit_depth is set
        (bit-packed storage, so readers see the true bit depth); GDAL then refuses predictor
        2, so none is used, and DEFLATE packs those samples better than ZSTD
        (:func:`compression_options`). GCPs, RPCs, tags and descriptions are not part of
        the profile: :func:`write_raster` and :func:`create_raster` apply them.
        """
        profile: dict[str, Any] = {
            "driver": "GTiff",
            "dtype": self.dtype,
            "count": self.count,
            "height": self.height,
            "width": self.width,
            "crs": CRS.from_wkt(self.crs_wkt) if self.crs_wkt else None,
            "nodata": self.nodata,
            "tiled": True,
            "blockxsize": TILE_SIZE,
            "blockysize": TILE_SIZE,
            "interleave": "band",
            "bigtiff": "if_safer",
        }
        if self.transform is not None:
            profile["transform"] = Affine(*self.transform)
        profile.update(compression_options(self.nbits_to_write() if nbits else None))
        return profile


def _meta_from_dataset(ds: Any, path: Any, bit_depth: int | None) -> RasterMeta:
    dtype = ds.dtypes[0]
    nbits_tag = None
    raw_nbits = ds.tags(1, ns="IMAGE_STRUCTURE").get("NBITS")
    if raw_nbits is not None:
        with contextlib.suppress(ValueError):
            nbits_tag = int(raw_nbits)
    if nbits_tag is not None and not 1 <= nbits_tag <= _dtype_bits(dtype):
        nbits_tag = None  # a nonsensical tag is no information

    # A nodata value the dtype cannot hold (e.g. -9999 on uint16) can match no pixel: drop it.
    nodata = ds.nodata
    if nodata is not None:
        info = np.iinfo(dtype)
        if not (math.isfinite(nodata) and nodata == int(nodata)):
            nodata = None
        elif not info.min <= nodata <= info.max:
            nodata = None
        else:
            nodata = float(nodata)

    transform = tuple(float(v) for v in tuple(ds.transform)[:6])
    raw_rpcs = ds.tags(ns="RPC")
    try:
        rpcs = _canonical_rpcs(raw_rpcs) if raw_rpcs else None
    except RasterError as exc:
        raise RasterError(f"{os.fspath(path)}: malformed RPC metadata: {exc}") from None
    gcp_list, gcp_crs = ds.gcps
    gcps = None
    if gcp_list:
        gcps = [
            {
                "row": float(g.row),
                "col": float(g.col),
                "x": float(g.x),
                "y": float(g.y),
                "z": float(g.z or 0.0),
                "id": "" if g.id is None else str(g.id),
                "info": "" if g.info is None else str(g.info),
            }
            for g in gcp_list
        ]

    name = os.fspath(path)
    bits = _dtype_bits(dtype)
    if bit_depth is not None:
        if isinstance(bit_depth, bool) or not isinstance(bit_depth, int):
            raise RasterError(f"{name}: bit_depth must be an int, got {bit_depth!r}")
        if not 1 <= bit_depth <= bits:
            raise RasterError(f"{name}: bit_depth {bit_depth} not in 1..{bits}")
        depth = bit_depth
        if bit_depth < bits:
            # a bit depth below the data would make the codec clip them: check (one pass)
            lo, hi = _scan_range(ds, dtype, nodata, path)
            if _bits_used(lo, hi) > bit_depth:
                raise RasterError(_clip_message(name, lo, hi, bit_depth))
    elif dtype != "int16" and nbits_tag is not None and nbits_tag == _stored_bits(ds, path):
        # NBITS is the BitsPerSample the GeoTIFF stores its samples with: no value can
        # exceed it, so it is right by construction and no pass over the data is needed.
        depth = nbits_tag
    elif dtype == "uint8" and nbits_tag is None:
        depth = 8  # the data rule gives 8 whatever the values: skip the pass
    else:
        # NBITS from metadata (a PAM .aux.xml, another format) is only a claim: check it
        lo, hi = _scan_range(ds, dtype, nodata, path)
        depth = _bit_depth_from_range(lo, hi, dtype, nbits_tag)
        used = _bits_used(lo, hi)
        if nbits_tag is not None and nbits_tag < used:
            reach = f"span {lo}..{hi}" if lo < 0 else f"reach {hi}"
            warnings.warn(
                f"{name}: NBITS={nbits_tag} (from the file's metadata) is below the data, "
                f"whose values {reach} ({used} bits): using bit depth {depth}",
                UserWarning,
                stacklevel=4,
            )

    meta = RasterMeta(
        height=ds.height,
        width=ds.width,
        count=ds.count,
        dtype=dtype,
        bit_depth=depth,
        nodata=nodata,
        crs_wkt=ds.crs.to_wkt() if ds.crs else None,
        transform=None if transform == _IDENTITY else transform,  # identity = none in GDAL
        rpcs=rpcs,
        gcps=gcps,
        gcps_crs_wkt=gcp_crs.to_wkt() if (gcps and gcp_crs) else None,
        descriptions=[d if d else None for d in ds.descriptions],
        tags=dict(ds.tags()),
        nbits_tag=nbits_tag,
    )
    try:
        meta.validate()
    except RasterError as exc:
        raise RasterError(f"{os.fspath(path)}: {exc}") from None
    return meta


def _scan_range(ds: Any, dtype: str, nodata: float | None, path: Any) -> tuple[int, int]:
    """Min and max over all bands (nodata pixels excluded), read in bounded windows.

    ``dataset.statistics`` may be stale or approximate, so read the pixels; windows follow the
    block layout and stay within ``_SCAN_BUDGET_BYTES`` (except for absurd block sizes).
    """
    H, W, C = ds.height, ds.width, ds.count
    item = np.dtype(dtype).itemsize
    bh, bw = (max(1, int(v)) for v in ds.block_shapes[0])
    budget = _SCAN_BUDGET_BYTES
    ww = W if bh * W * item <= budget else min(W, max(bw, (budget // (bh * item)) // bw * bw))
    group = max(1, min(C, budget // (bh * ww * item)))
    hh = min(H, max(bh, (budget // (group * ww * item)) // bh * bh))
    lo, hi = None, None
    with _wrap(path, "cannot read pixels"):
        for b0 in range(0, C, group):
            indexes = list(range(b0 + 1, min(C, b0 + group) + 1))
            for y in range(0, H, hh):
                for x in range(0, W, ww):
                    win = Window(x, y, min(ww, W - x), min(hh, H - y))
                    arr = ds.read(indexes, window=win)
                    if nodata is not None:
                        arr = arr[arr != nodata]
                    if arr.size:
                        a_lo, a_hi = int(arr.min()), int(arr.max())
                        lo = a_lo if lo is None else min(lo, a_lo)
                        hi = a_hi if hi is None else max(hi, a_hi)
    return (0, 0) if lo is None else (lo, hi)


# --- reading ---------------------------------------------------------------------------------
class RasterReader:
    """An open raster: ``.meta``, ``.read()``, ``.read_window()``. Use as a context manager."""

    def __init__(self, path: str | os.PathLike, bit_depth: int | None = None) -> None:
        self.path = path
        self._ds: Any = None
        name = os.fspath(path)
        if not name.startswith("/vsi") and not os.path.exists(name):
            raise RasterError(f"{name}: no such file")
        if os.path.isdir(name):
            raise RasterError(f"{name}: is a directory, not a raster")
        with _quiet(), _wrap(path, "not a readable raster"):
            self._ds = rasterio.open(name)
        try:
            self.meta = self._check_and_describe(bit_depth)
        except BaseException:
            self.close()
            raise

    def _check_and_describe(self, bit_depth: int | None) -> RasterMeta:
        ds, name = self._ds, os.fspath(self.path)
        if ds.count == 0:
            raise RasterError(f"{name}: has no bands (is it a container of subdatasets?)")
        if ds.count > MAX_BANDS:
            raise RasterError(f"{name}: {ds.count} bands, more than the {MAX_BANDS} supported")
        if ds.width == 0 or ds.height == 0:
            raise RasterError(f"{name}: zero-size raster ({ds.width}x{ds.height})")
        if ds.width > MAX_DIM or ds.height > MAX_DIM:
            raise RasterError(f"{name}: {ds.width}x{ds.height} exceeds {MAX_DIM} px per side")
        dtypes = set(ds.dtypes)
        if len(dtypes) != 1:
            raise RasterError(f"{name}: bands have different sample types {sorted(dtypes)}")
        dtype = ds.dtypes[0]
        if dtype not in SUPPORTED_DTYPES:
            raise RasterError(
                f"{name}: unsupported sample type {dtype} (supported: {', '.join(SUPPORTED_DTYPES)})"
            )
        with _quiet(), _wrap(self.path, "cannot read metadata"):
            return _meta_from_dataset(ds, self.path, bit_depth)

    def _open_ds(self) -> Any:
        if self._ds is None:
            raise RasterError(f"{os.fspath(self.path)}: reader is closed")
        return self._ds

    def _band(self, band: int) -> int:
        b = operator.index(band)
        if not 0 <= b < self.meta.count:
            raise RasterError(
                f"{os.fspath(self.path)}: band {band} out of range 0..{self.meta.count - 1}"
            )
        return b

    def read(self, band: int | None = None) -> np.ndarray:
        """All bands as (bands, H, W), or one band (0-based) as (H, W)."""
        ds = self._open_ds()
        with _wrap(self.path, "cannot read pixels"):
            if band is None:
                return ds.read()
            return ds.read(self._band(band) + 1)

    def read_window(self, band: int, y0: int, x0: int, h: int, w: int) -> np.ndarray:
        """Read rows y0..y0+h-1, cols x0..x0+w-1 of ``band`` (0-based) as an (h, w) array.

        Boundless: the window may extend past the image (or lie wholly outside it); outside
        pixels replicate the nearest edge pixel, i.e. ``np.pad(image, ..., mode="edge")``
        restricted to the window. Memory is bounded by the window, not the image.
        """
        ds = self._open_ds()
        b = self._band(band)
        y0, x0, h, w = (operator.index(v) for v in (y0, x0, h, w))
        if h < 0 or w < 0:
            raise RasterError(f"{os.fspath(self.path)}: negative window size {h}x{w}")
        if h == 0 or w == 0:
            return np.empty((h, w), dtype=self.meta.dtype)
        H, W = self.meta.height, self.meta.width
        # Clamp each requested coordinate to the image: that is exactly edge replication.
        ys = np.clip(np.arange(y0, y0 + h), 0, H - 1)
        xs = np.clip(np.arange(x0, x0 + w), 0, W - 1)
        r0, r1, c0, c1 = int(ys[0]), int(ys[-1]), int(xs[0]), int(xs[-1])
        with _wrap(self.path, "cannot read pixels"):
            block = ds.read(b + 1, window=Window(c0, r0, c1 - c0 + 1, r1 - r0 + 1))
        if block.shape == (h, w):
            return block
        return block[np.ix_(ys - r0, xs - c0)]

    def close(self) -> None:
        """Close the dataset (idempotent)."""
        if self._ds is not None:
            with contextlib.suppress(*_ERRORS):
                self._ds.close()
            self._ds = None

    def __enter__(self) -> RasterReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_raster(path: str | os.PathLike, bit_depth: int | None = None) -> RasterReader:
    """Open a raster (uint8/uint16/int16) for reading; RasterError if it cannot be used.

    ``meta.bit_depth`` is, in order:

    * ``bit_depth`` when given -- checked against the data (one bounded-memory pass, skipped
      when it is the full dtype width): values that need more bits raise RasterError naming
      the maximum and the bits it needs, since the codec would clip them;
    * the NBITS of a GeoTIFF when it is the BitsPerSample the file stores (no pass needed);
    * otherwise computed by one bounded-memory pass over the pixels with the rule of
      :func:`infer_bit_depth`. An NBITS that is only metadata (e.g. from a PAM ``.aux.xml``)
      is used when the data fit it; when they do not, it is widened to what the data need,
      with a UserWarning naming the tag and the width used.

    Nodata pixels are excluded from the pass: they may exceed 2**bit_depth - 1, so mask them
    before encoding.
    """
    return RasterReader(path, bit_depth=bit_depth)


# --- writing ---------------------------------------------------------------------------------
def _prepare(
    arr: np.ndarray, meta: RasterMeta, mask: np.ndarray | None, nbits: int | None, where: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """Check/convert one block of samples to ``meta.dtype`` and apply the nodata mask.

    Returns the samples and the mask as a bool array of their shape (None without a mask).
    With ``meta.nodata`` set, masked samples become nodata; without, they are left as they
    are and the caller records the mask in a mask band.
    """
    arr = np.asarray(arr)
    if arr.dtype.kind not in "iu":
        raise RasterError(f"{where}: samples must be integers, got {arr.dtype}")
    if arr.dtype != np.dtype(meta.dtype):
        info = np.iinfo(meta.dtype)
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            raise RasterError(f"{where}: values do not fit {meta.dtype}")
        arr = arr.astype(meta.dtype)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        try:
            mask = np.broadcast_to(mask, arr.shape)
        except ValueError:
            raise RasterError(
                f"{where}: nodata_mask shape {mask.shape} does not match {arr.shape}"
            ) from None
        if meta.nodata is not None:
            arr = np.where(mask, np.array(meta.nodata, dtype=arr.dtype), arr)
    if nbits is not None and arr.size and int(arr.max()) > (1 << nbits) - 1:
        # GDAL would silently clamp to the NBITS range: refuse instead.
        raise RasterError(f"{where}: values exceed bit_depth {nbits} (max {int(arr.max())})")
    return arr, mask


#: GDAL options for mask bands: inside the TIFF (no .msk sidecar), read back as 0/255.
_MASK_ENV = {"GDAL_TIFF_INTERNAL_MASK": True, "GDAL_PAM_ENABLED": "NO"}


def _apply_metadata(ds: Any, meta: RasterMeta) -> None:
    if meta.gcps:
        gcp_crs = CRS.from_wkt(meta.gcps_crs_wkt) if meta.gcps_crs_wkt else None
        ds.gcps = ([GroundControlPoint(**g) for g in meta.gcps], gcp_crs)
    if meta.rpcs:
        # Set the RPC domain directly: RPC.to_gdal() would drop an ERR_BIAS/ERR_RAND of 0.
        ds.update_tags(ns="RPC", **meta.rpcs)
    if meta.tags:
        ds.update_tags(**meta.tags)
    for i, desc in enumerate(meta.descriptions):
        if desc:
            ds.set_band_description(i + 1, desc)


class RasterWriter:
    """Windowed GeoTIFF writer, atomic: the file appears at ``path`` only on a clean close.

    Obtain with :func:`create_raster`. On an exception inside ``with`` (or :meth:`abort`),
    the temporary file is removed and ``path`` is left untouched.

    Nodata: with ``meta.nodata`` set, masked pixels are written as that value; with
    ``meta.nodata`` None, a ``nodata_mask`` holding any True adds an internal per-dataset
    mask band (GDAL's ``GMF_PER_DATASET``; ``dataset_mask()`` reads 0 there, 255 elsewhere):
    a pixel is flagged when it is masked in any band, and its samples are written as given.
    """

    def __init__(self, path: str | os.PathLike, meta: RasterMeta, *, nbits: bool = True) -> None:
        self.path = path
        self.meta = meta
        self._ds: Any = None
        self._has_mask = False
        meta.validate()
        self._nbits = meta.nbits_to_write() if nbits else None
        profile = meta.rasterio_profile(nbits=nbits)
        self._stack = contextlib.ExitStack()
        try:
            with _quiet(), rasterio.Env(GDAL_PAM_ENABLED="NO"), _wrap(path, "cannot create"):
                tmp = self._stack.enter_context(atomic_path(path, ".tif"))
                # "w+": readable too, to merge the mask band across bands (_mask_window)
                self._ds = rasterio.open(tmp, "w+", **profile)
                _apply_metadata(self._ds, meta)
        except BaseException as exc:
            self._abort(exc)
            raise

    def write_window(
        self,
        band: int,
        y0: int,
        x0: int,
        array: np.ndarray,
        nodata_mask: np.ndarray | None = None,
    ) -> None:
        """Write a 2-D ``array`` at rows y0.., cols x0.. of ``band`` (0-based).

        The window must lie inside the image (crop tiles at the edges first). ``nodata_mask``
        (same shape, True = nodata) sets those pixels to ``meta.nodata``, or, when it is
        None, flags them in the mask band (see the class). Windows aligned on the 256 px
        tile grid write each compressed tile once.
        """
        if self._ds is None:
            raise RasterError(f"{os.fspath(self.path)}: writer is closed")
        name = os.fspath(self.path)
        b = operator.index(band)
        if not 0 <= b < self.meta.count:
            raise RasterError(f"{name}: band {band} out of range 0..{self.meta.count - 1}")
        arr = np.asarray(array)
        if arr.ndim != 2:
            raise RasterError(f"{name}: write_window needs a 2-D array, got shape {arr.shape}")
        y0, x0 = operator.index(y0), operator.index(x0)
        h, w = arr.shape
        if y0 < 0 or x0 < 0 or y0 + h > self.meta.height or x0 + w > self.meta.width:
            raise RasterError(
                f"{name}: window rows {y0}..{y0 + h}, cols {x0}..{x0 + w} outside the "
                f"{self.meta.height}x{self.meta.width} image"
            )
        arr, mask = _prepare(arr, self.meta, nodata_mask, self._nbits, name)
        with _wrap(self.path, "write failed"):
            self._ds.write(arr, b + 1, window=Window(x0, y0, w, h))
            if mask is not None and self.meta.nodata is None and mask.any():
                self._mask_window(y0, x0, mask)

    def _mask_window(self, y0: int, x0: int, mask: np.ndarray) -> None:
        """Flag ``mask`` (True = nodata) at rows y0.., cols x0.. in the per-dataset mask band."""
        ds = self._ds
        h, w = mask.shape
        with rasterio.Env(**_MASK_ENV):
            if not self._has_mask:
                # The mask band starts as 0 (all nodata) in unwritten blocks: set it all valid
                # first, in row bands within the scan budget.
                H, W = self.meta.height, self.meta.width
                rows = max(1, min(H, _SCAN_BUDGET_BYTES // W))
                for r in range(0, H, rows):
                    n = min(rows, H - r)
                    ds.write_mask(np.full((n, W), 255, np.uint8), window=Window(0, r, W, n))
                self._has_mask = True
            win = Window(x0, y0, w, h)
            current = ds.read_masks(1, window=win)  # other bands' flags stay (per-dataset mask)
            ds.write_mask(np.where(mask, 0, current).astype(np.uint8), window=win)

    def _abort(self, exc: BaseException) -> None:
        if self._ds is not None:
            with contextlib.suppress(*_ERRORS), rasterio.Env(**_MASK_ENV):
                self._ds.close()
            self._ds = None
        # Passing the exception makes atomic_path delete the temporary file.
        self._stack.__exit__(type(exc), exc, exc.__traceback__)

    def abort(self) -> None:
        """Discard everything written: remove the temporary file, leave ``path`` untouched."""
        self._abort(RasterError(f"{os.fspath(self.path)}: write aborted"))

    def close(self) -> None:
        """Finish the file and move it onto ``path`` (idempotent)."""
        if self._ds is None:
            return
        try:
            with rasterio.Env(**_MASK_ENV), _wrap(self.path, "cannot finish writing"):
                self._ds.close()  # compresses and flushes the last tiles
            self._ds = None
        except BaseException as exc:
            self._ds = None
            self._stack.__exit__(type(exc), exc, exc.__traceback__)
            raise
        with _wrap(self.path, "cannot move the finished file into place"):
            self._stack.close()  # fsync + rename

    def __enter__(self) -> RasterWriter:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is not None:
            self._abort(exc)
        else:
            self.close()


def create_raster(path: str | os.PathLike, meta: RasterMeta, *, nbits: bool = True) -> RasterWriter:
    """Start an atomic, windowed GeoTIFF write (see :class:`RasterWriter`).

    Layout as in :meth:`RasterMeta.rasterio_profile`; CRS, transform, RPCs, GCPs (+ CRS),
    nodata, band descriptions and dataset tags from ``meta`` are written. With ``nbits`` (the
    default), NBITS=bit_depth is stored when below the dtype width (and values above
    2**bit_depth - 1 are refused). Note: GeoTIFF has no place for GCP id/info; they read
    back as "1".."n" and "".
    """
    return RasterWriter(path, meta, nbits=nbits)


def _check_array(array: np.ndarray, meta: RasterMeta, path: Any) -> np.ndarray:
    arr = np.asarray(array)
    shape = (meta.count, meta.height, meta.width)
    if arr.shape != shape:
        raise RasterError(f"{os.fspath(path)}: array shape {arr.shape} != meta shape {shape}")
    return arr


def _band_mask(mask: np.ndarray | None, b: int, path: Any) -> np.ndarray | None:
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.ndim == 3:
        return mask[b]
    if mask.ndim == 2:
        return mask
    raise RasterError(f"{os.fspath(path)}: nodata_mask must be (H, W) or (bands, H, W)")


def write_raster(
    path: str | os.PathLike,
    array: np.ndarray,
    meta: RasterMeta,
    *,
    nodata_mask: np.ndarray | None = None,
    nbits: bool = True,
) -> None:
    """Write ``array`` (bands, H, W) as a tiled, compressed GeoTIFF at ``path``, atomically.

    ``nodata_mask`` ((H, W) for all bands or (bands, H, W); True = nodata) sets those pixels
    to ``meta.nodata``, or, when ``meta.nodata`` is None, flags them in an internal
    per-dataset mask band (a pixel masked in any band; see :class:`RasterWriter`). See
    :func:`create_raster` for what is kept.
    """
    arr = _check_array(array, meta, path)
    with create_raster(path, meta, nbits=nbits) as w:
        for b in range(meta.count):
            w.write_window(b, 0, 0, arr[b], _band_mask(nodata_mask, b, path))


def write_cog(
    path: str | os.PathLike,
    array: np.ndarray,
    meta: RasterMeta,
    *,
    nodata_mask: np.ndarray | None = None,
    nbits: bool = True,
    blocksize: int = 512,
) -> None:
    """Write ``array`` (bands, H, W) as a Cloud-Optimised GeoTIFF, atomically.

    GDAL's COG driver: ``blocksize`` tiles, compressed as :func:`compression_options` says,
    overviews generated down to one tile (average resampling; none when the image fits in one
    tile), and the same metadata as :func:`write_raster`. The whole image is held in memory.
    ``nodata_mask`` as in :func:`write_raster`: with ``meta.nodata`` None, the masked pixels
    are flagged in an internal per-dataset mask band (given to GDAL before its CreateCopy,
    so the COG and its overviews carry it); ``dataset_mask()`` reads them as 0.
    """
    arr = _check_array(array, meta, path)
    meta.validate()
    nb = meta.nbits_to_write() if nbits else None
    bands, flagged = [], None
    for b in range(meta.count):
        block, mask = _prepare(arr[b], meta, _band_mask(nodata_mask, b, path), nb, os.fspath(path))
        bands.append(block)
        if mask is not None and meta.nodata is None and mask.any():
            flagged = mask.copy() if flagged is None else flagged | mask
    data = np.stack(bands)
    opts: dict[str, Any] = {
        "driver": "COG",
        "dtype": meta.dtype,
        "count": meta.count,
        "height": meta.height,
        "width": meta.width,
        "crs": CRS.from_wkt(meta.crs_wkt) if meta.crs_wkt else None,
        "nodata": meta.nodata,
        "blocksize": int(blocksize),
        "overviews": "auto",
        "overview_resampling": "average",
        "bigtiff": "if_safer",
    }
    if meta.transform is not None:
        opts["transform"] = Affine(*meta.transform)
    opts.update(compression_options(nb))
    with _wrap(path, "cannot write COG"), atomic_path(path, ".tif") as tmp:
        with _quiet(), rasterio.Env(GDAL_PAM_ENABLED="NO"):
            # rasterio buffers COG writes in memory and runs GDAL CreateCopy on close.
            with rasterio.Env(**_MASK_ENV), rasterio.open(tmp, "w", **opts) as dst:
                dst.write(data)
                if flagged is not None:
                    dst.write_mask(np.where(flagged, 0, 255).astype(np.uint8))
                _apply_metadata(dst, meta)


def is_valid_cog(path: str | os.PathLike) -> bool:
    """Structural COG check: tiled, GDAL's ``LAYOUT=COG``, overviews, IFDs before data.

    Checks: GeoTIFF; IMAGE_STRUCTURE ``LAYOUT=COG`` (GDAL reports it only for files whose
    COG layout is intact); tiled -- the full-resolution and every overview IFD has the
    TileWidth, TileLength and TileOffsets tags, read from the file itself (as rio-cogeo and
    GDAL do; rasterio's ``profile["tiled"]`` is False for one tile column, i.e. whenever the
    image is exactly one block wide); overviews present when the image is larger than one
    tile, in decreasing sizes;
    IFDs of full image then overviews in increasing offset order and all before the first
    tile data; overview tile data before full-resolution data, smallest overview first (as in
    GDAL's validate_cloud_optimized_geotiff.py). Returns False for anything else, including
    missing or unreadable files.
    """
    name = os.fspath(path)
    if not os.path.isfile(name):
        return False
    try:
        with _quiet(), rasterio.open(name) as ds:
            if ds.driver != "GTiff":
                return False
            if ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT", "").upper() != "COG":
                return False
            bh, bw = ds.block_shapes[0]
            factors = ds.overviews(1)
            n_ovr = len(factors)
            if (ds.width > bw or ds.height > bh) and n_ovr == 0:
                return False
            if any(b <= a for a, b in itertools.pairwise(factors)):
                return False

            def offset(key: str, ovr: int | None) -> int | None:
                v = ds.get_tag_item(key, "TIFF", bidx=1, ovr=ovr)
                return int(v) if v else None

            levels = [None, *range(n_ovr)]
            ifds = [offset("IFD_OFFSET", o) for o in levels]
            if any(v is None for v in ifds):
                return False
            if any(b <= a for a, b in itertools.pairwise(ifds)):
                return False
            for ifd in ifds:
                tags = _tiff_ifd(name, ifd)
                if tags is None or not all(
                    t in tags for t in (_TIFF_TILE_WIDTH, _TIFF_TILE_LENGTH, _TIFF_TILE_OFFSETS)
                ):
                    return False  # striped (or unreadable) IFD
            data = [offset("BLOCK_OFFSET_0_0", o) for o in levels]
            present = [v for v in data if v]  # 0/None: sparse (empty) first tile
            if present and min(present) < max(ifds):
                return False
            # data order: smallest overview first, full resolution last
            return all(b < a for a, b in itertools.pairwise(present))
    except (*_ERRORS, OSError, ValueError):
        return False
