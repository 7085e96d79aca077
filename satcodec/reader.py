"""``satcodec.open``: a rasterio-like, read-only dataset over a ``.satc`` file.

>>> with satcodec.open("scene.satc") as ds:
...     ds.profile, ds.crs, ds.transform, ds.bounds
...     block = ds.read(1, window=Window(1024, 2048, 512, 512))   # decodes 1-4 tiles, not all

A window read decodes only the tiles it intersects, plus the latents of their neighbours that
the synthesis needs as halo, so it gives exactly the pixels of :func:`satcodec.decode` sliced
(same synthesis windows, same blocks, same rounding). Decoded tiles and entropy-decoded
latents are kept in two small LRU caches, so neighbouring windows do not decode twice.
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from affine import Affine
from rasterio.coords import BoundingBox
from rasterio.crs import CRS
from rasterio.windows import Window

from satcodec.api import _damaged_fill_or_none, _open_decoder, read_stream, stream_raster_meta
from satcodec.coding.decoder import _compact, to_dtype
from satcodec.errors import ConfigError

CACHE_BYTES = 64 << 20
"""Default bytes of each cache (decoded tiles; entropy-decoded latents of tiles)."""

WindowLike = Window | tuple[tuple[int, int], tuple[int, int]]


class _LRU:
    """A byte-bounded LRU of numpy arrays (or tuples holding them)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.held = limit, 0
        self.items: OrderedDict[Any, tuple[Any, int]] = OrderedDict()

    def get(self, key: Any) -> Any:
        hit = self.items.get(key)
        if hit is None:
            return None
        self.items.move_to_end(key)
        return hit[0]

    def put(self, key: Any, value: Any, size: int) -> None:
        old = self.items.pop(key, None)
        if old is not None:
            self.held -= old[1]
        self.items[key] = (value, size)
        self.held += size
        while self.held > self.limit and len(self.items) > 1:
            _, (_, s) = self.items.popitem(last=False)
            self.held -= s

    def clear(self) -> None:
        self.items.clear()
        self.held = 0


class SatcDataset:
    """A ``.satc`` file opened for reading, with rasterio's dataset attributes.

    Band indexes are 1-based as in rasterio. ``block_shapes`` are the stream's tiles, the
    unit of decoding. Damaged tiles raise :class:`~satcodec.errors.TileCorruptedError` when a
    read needs them (for their pixels, or as a neighbour's halo) unless ``allow_damaged``:
    then they read as :func:`satcodec.decode` fills them (the stream's nodata, else a value
    outside the data, ``2**bit_depth``, or 0 for full-width data) and are listed in
    ``damaged_tiles``; :meth:`read_masks` flags them. Not safe to share between processes;
    reads from several threads are serialised.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        allow_damaged: bool = False,
        model: str | os.PathLike | None = None,
        runtime: str | None = None,
        precision: str | None = None,
        export_dir: str | os.PathLike | None = None,
        threads: int | None = None,
        model_paths: Sequence[str | os.PathLike] = (),
        cache_bytes: int = CACHE_BYTES,
    ) -> None:
        self.name = os.fspath(path)
        self.mode = "r"
        self.driver = "SATC"
        self._stream = read_stream(path, partial=allow_damaged)
        try:
            self._decoder = _open_decoder(
                self._stream,
                model,
                allow_damaged,
                (runtime, precision, export_dir, threads),
                model_paths,
            )
        except BaseException:
            self._stream.close()
            raise
        self.allow_damaged = allow_damaged
        h = self.header = self._stream.header
        self.notes: list[str] = []  # why georeferencing was dropped, if it was
        self._meta, self.extra_metadata = stream_raster_meta(h, self.notes)
        # the value damaged tiles read as, exactly as satcodec.decode fills them
        if h.nodata is not None:
            self._fill: float = h.nodata
        else:
            v = _damaged_fill_or_none(h.dtype, h.bit_depth)
            self._fill = 0.0 if v is None else v
        self._nodata = h.nodata
        if allow_damaged and h.nodata is None and self._stream.check():
            # as satcodec.decode reports it: the fill becomes the nodata value when it is
            # outside the data (full-width data: only read_masks tells)
            self._nodata = _damaged_fill_or_none(h.dtype, h.bit_depth)
        self._L = h.tile_size // h.downsampling
        self._latents = _LRU(cache_bytes)  # (band, row, col) -> (symbols, packed mask, damaged)
        self._tiles = _LRU(cache_bytes)  # (band, row, col) -> pixels
        self._lock = threading.Lock()
        self.closed = False

    # --- context manager -----------------------------------------------------------------------
    def __enter__(self) -> SatcDataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._latents.clear()
            self._tiles.clear()
            self._stream.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<{state} SatcDataset name='{self.name}' mode='r'>"

    # --- rasterio's attributes ---------------------------------------------------------------
    @property
    def count(self) -> int:
        return self.header.bands

    @property
    def width(self) -> int:
        return self.header.width

    @property
    def height(self) -> int:
        return self.header.height

    @property
    def shape(self) -> tuple[int, int]:
        return self.header.height, self.header.width

    @property
    def indexes(self) -> tuple[int, ...]:
        return tuple(range(1, self.count + 1))

    @property
    def dtypes(self) -> tuple[str, ...]:
        return (self.header.dtype,) * self.count

    @property
    def nodata(self) -> float | None:
        return self._nodata

    @property
    def nodatavals(self) -> tuple[float | None, ...]:
        return (self._nodata,) * self.count

    @property
    def bit_depth(self) -> int:
        return self.header.bit_depth

    @property
    def crs(self) -> CRS | None:
        return CRS.from_wkt(self._meta.crs_wkt) if self._meta.crs_wkt else None

    @property
    def transform(self) -> Affine:
        # rasterio gives the identity for a raster without a geotransform
        t = self._meta.transform
        return Affine.identity() if t is None else Affine(*t)

    @property
    def res(self) -> tuple[float, float]:
        a, b, _, d, e, _ = tuple(self.transform)[:6]
        return math.hypot(a, d), math.hypot(b, e)

    @property
    def bounds(self) -> BoundingBox:
        # as rasterio's DatasetBase.bounds: corners for a rotated transform
        a, b, c, d, e, f = tuple(self.transform)[:6]
        w, h = self.width, self.height
        if b == d == 0:
            return BoundingBox(c, f + e * h, c + a * w, f)
        corners = ((0, 0), (w, 0), (w, h), (0, h))
        xs = [a * col + b * row + c for col, row in corners]
        ys = [d * col + e * row + f for col, row in corners]
        return BoundingBox(min(xs), min(ys), max(xs), max(ys))

    @property
    def descriptions(self) -> tuple[str | None, ...]:
        return tuple(self._meta.descriptions) or (None,) * self.count

    @property
    def block_shapes(self) -> list[tuple[int, int]]:
        t = self.header.tile_size
        return [(min(t, self.height), min(t, self.width))] * self.count

    @property
    def rpcs(self) -> Any:
        if not self._meta.rpcs:
            return None
        from rasterio.rpc import RPC

        return RPC.from_gdal(self._meta.rpcs)

    @property
    def gcps(self) -> tuple[list[Any], CRS | None]:
        if not self._meta.gcps:
            return [], None
        from rasterio.control import GroundControlPoint

        crs = CRS.from_wkt(self._meta.gcps_crs_wkt) if self._meta.gcps_crs_wkt else None
        return [GroundControlPoint(**g) for g in self._meta.gcps], crs

    @property
    def profile(self) -> dict[str, Any]:
        """As rasterio's ``profile``; ``driver`` is ``"SATC"`` (replace it to write a copy)."""
        t = self.header.tile_size
        return {
            "driver": self.driver,
            "dtype": self.header.dtype,
            "nodata": self._nodata,
            "width": self.width,
            "height": self.height,
            "count": self.count,
            "crs": self.crs,
            "transform": self.transform,
            "blockxsize": t,
            "blockysize": t,
            "tiled": True,
            "interleave": "band",
        }

    @property
    def meta(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in self.profile.items()
            if k in ("driver", "dtype", "nodata", "width", "height", "count", "crs", "transform")
        }

    @property
    def damaged_tiles(self) -> list[tuple[int, int, int]]:
        """``(band, row, col)`` of the damaged tiles met so far (0-based band)."""
        return sorted(set(self._decoder.damaged))

    def tags(self, bidx: int = 0, ns: str | None = None) -> dict[str, str]:
        """The dataset's default-domain tags (band tags and other domains are not stored)."""
        if bidx or ns:
            return {}
        return dict(self._meta.tags)

    def block_window(self, bidx: int, i: int, j: int) -> Window:
        y0, x0, h, w = self.header.tile_pixel_window(i, j)
        return Window(x0, y0, w, h)

    def block_windows(self, bidx: int = 0) -> Iterator[tuple[tuple[int, int], Window]]:
        for i in range(self.header.tiles_y):
            for j in range(self.header.tiles_x):
                yield (i, j), self.block_window(bidx, i, j)

    # --- reading -------------------------------------------------------------------------------
    def read(
        self,
        indexes: int | Sequence[int] | None = None,
        window: WindowLike | None = None,
        out_dtype: Any = None,
        masked: bool = False,
    ) -> np.ndarray:
        """Pixels of ``window`` (default: all) for band ``indexes`` (1-based; an int gives
        (h, w), a list or None (every band) gives (bands, h, w)), decoding only the tiles
        the window intersects. ``out_dtype`` casts the result; ``masked`` returns a masked
        array (masked where :meth:`read_masks` is 0)."""
        bands, single = self._bands(indexes)
        (r0, r1), (c0, c1) = self._window(window)
        out = np.empty((len(bands), r1 - r0, c1 - c0), self.header.dtype)
        with self._lock:
            self._check_open()
            for i, b in enumerate(bands):
                for (y0, x0), px in self._tiles_in(b, r0, r1, c0, c1):
                    self._paste(out[i], px, y0 - r0, x0 - c0)
        if out_dtype is not None:
            out = out.astype(out_dtype)
        if masked:
            valid = self.read_masks(indexes if indexes is not None else None, window)
            valid = valid[None] if valid.ndim == 2 else valid
            out = np.ma.masked_array(out, mask=valid == 0)
        return out[0] if single else out

    def read_masks(
        self, indexes: int | Sequence[int] | None = None, window: WindowLike | None = None
    ) -> np.ndarray:
        """rasterio's validity masks (uint8: 255 valid, 0 nodata or in a damaged tile)."""
        bands, single = self._bands(indexes)
        (r0, r1), (c0, c1) = self._window(window)
        data = self.read([b + 1 for b in bands], ((r0, r1), (c0, c1)))
        mask = np.full(data.shape, 255, np.uint8)
        if self._nodata is not None:
            mask[data == self._nodata] = 0
        for i, b in enumerate(bands):
            for bb, r, c in self._decoder.damaged:
                if bb == b:
                    y0, x0, h, w = self.header.tile_pixel_window(r, c)
                    y, x = max(y0, r0), max(x0, c0)
                    y1, x1 = min(y0 + h, r1), min(x0 + w, c1)
                    if y < y1 and x < x1:
                        mask[i, y - r0 : y1 - r0, x - c0 : x1 - c0] = 0
        return mask[0] if single else mask

    def dataset_mask(self, window: WindowLike | None = None) -> np.ndarray:
        """Valid (255) where any band is valid, as rasterio's ``dataset_mask``."""
        return self.read_masks(None, window).max(axis=0)

    # --- internals -----------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self.closed:
            raise ConfigError(f"{self.name}: the dataset is closed")

    def _bands(self, indexes: int | Sequence[int] | None) -> tuple[list[int], bool]:
        """0-based bands and whether a single band (2-D result) was asked for."""
        if indexes is None:
            return list(range(self.count)), False
        single = isinstance(indexes, (int, np.integer)) and not isinstance(indexes, bool)
        items = [indexes] if single else list(indexes)  # type: ignore[arg-type]
        out = []
        for i in items:
            if not isinstance(i, (int, np.integer)) or isinstance(i, bool):
                raise ConfigError(f"band indexes are integers, got {i!r}")
            if not 1 <= i <= self.count:
                raise ConfigError(f"band index {i} is outside 1..{self.count} (1-based)")
            out.append(int(i) - 1)
        return out, single

    def _window(self, window: WindowLike | None) -> tuple[tuple[int, int], tuple[int, int]]:
        """``((row0, row1), (col0, col1))`` in pixels, checked to lie inside the raster."""
        if window is None:
            return (0, self.height), (0, self.width)
        if isinstance(window, Window):
            rows, cols = window.toranges()
        else:
            try:
                rows, cols = ((a, b) for a, b in window)  # type: ignore[misc]
            except (TypeError, ValueError):
                raise ConfigError(
                    f"window must be a rasterio Window or ((row0, row1), (col0, col1)), got {window!r}"
                ) from None
        vals = []
        for v in (*rows, *cols):
            if not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
                raise ConfigError(f"window bounds must be finite numbers, got {window!r}")
            vals.append(int(round(v)))  # rasterio rounds fractional windows to whole pixels
        r0, r1, c0, c1 = vals
        if not (0 <= r0 <= r1 <= self.height and 0 <= c0 <= c1 <= self.width):
            raise ConfigError(
                f"window rows {r0}..{r1}, cols {c0}..{c1} is not inside the "
                f"{self.height}x{self.width} raster"
            )
        return (r0, r1), (c0, c1)

    @staticmethod
    def _paste(dst: np.ndarray, px: np.ndarray, oy: int, ox: int) -> None:
        """Copy tile ``px`` placed at (oy, ox) of ``dst`` (offsets may be negative)."""
        y0, x0 = max(0, oy), max(0, ox)
        y1, x1 = min(dst.shape[0], oy + px.shape[0]), min(dst.shape[1], ox + px.shape[1])
        dst[y0:y1, x0:x1] = px[y0 - oy : y1 - oy, x0 - ox : x1 - ox]

    def _tiles_in(
        self, band: int, r0: int, r1: int, c0: int, c1: int
    ) -> Iterator[tuple[tuple[int, int], np.ndarray]]:
        if r0 == r1 or c0 == c1:
            return
        t = self.header.tile_size
        for r in range(r0 // t, (r1 - 1) // t + 1):
            for c in range(c0 // t, (c1 - 1) // t + 1):
                yield (r * t, c * t), self._tile(band, r, c)

    def _symbols(self, band: int, row: int, col: int) -> tuple[np.ndarray | None, Any]:
        """(latents (C, lh, lw) or None when damaged, packed nodata mask or None), cached."""
        key = (band, row, col)
        hit = self._latents.get(key)
        if hit is None:
            sym, mask, damaged = self._decoder._decode_tile(band, row, col)
            if damaged:
                hit = (None, None)
                size = 0
            else:
                sym = _compact(sym)
                packed = None if mask is None else (np.packbits(mask), mask.shape)
                hit = (sym, packed)
                size = sym.nbytes + (0 if packed is None else packed[0].nbytes)
            self._latents.put(key, hit, size)
        return hit

    def _fetch(self, band: int) -> Any:
        """The decoder's ``fetch(y0, y1, x0, x1)`` for one band: int32 latents from the tiles."""
        h, L = self.header, self._L

        def fetch(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
            out = np.zeros((h.latent_channels, y1 - y0, x1 - x0), np.int32)
            for r in range(y0 // L, (y1 - 1) // L + 1):
                for c in range(x0 // L, (x1 - 1) // L + 1):
                    sym, _ = self._symbols(band, r, c)
                    if sym is None:  # damaged: zeros, as for the whole-scene decode
                        continue
                    a0, a1 = max(y0, r * L), min(y1, r * L + sym.shape[1])
                    b0, b1 = max(x0, c * L), min(x1, c * L + sym.shape[2])
                    out[:, a0 - y0 : a1 - y0, b0 - x0 : b1 - x0] = sym[
                        :, a0 - r * L : a1 - r * L, b0 - c * L : b1 - c * L
                    ]
            return out

        return fetch

    def _tile(self, band: int, row: int, col: int) -> np.ndarray:
        """One tile's pixels, as :meth:`Decoder.iter_tiles` yields them (cached)."""
        key = (band, row, col)
        px = self._tiles.get(key)
        if px is not None:
            return px
        h, dec = self.header, self._decoder
        if dec.spectral is not None:
            return self._spectral_tile(band, row, col)
        _, _, ph, pw = h.tile_pixel_window(row, col)
        sym, packed = self._symbols(band, row, col)  # TileCorruptedError unless allow_damaged
        if sym is None:
            px = np.full((ph, pw), self._fill, h.dtype)
        else:

            def convert(p: np.ndarray) -> np.ndarray:
                if np.isnan(p).any():  # as iter_tiles: NaN is no pixel value
                    p = np.nan_to_num(p, nan=0.0)
                return to_dtype(p, h.dtype, h.bit_depth)

            px = dec._tile_pixels(self._fetch(band), band, row, col, dec.synth_block, convert)
            if packed is not None:
                px[_unpack_mask(packed)] = h.nodata
        px.setflags(write=False)
        self._tiles.put(key, px, px.nbytes)
        return px

    def _spectral_tile(self, band: int, row: int, col: int) -> np.ndarray:
        """Flag 0x0002: every component's tile, the inverse transform, every band's tile
        cached (a tile damaged in any component reads as fill in every band)."""
        h, dec = self.header, self._decoder
        assert dec.spectral is not None
        _, _, ph, pw = h.tile_pixel_window(row, col)
        comps, masks, lost = [], [], False
        for k in range(h.bands):
            sym, packed = self._symbols(k, row, col)  # TileCorruptedError unless allow_damaged
            if sym is None:
                lost = True
                break
            comps.append(dec._tile_pixels(self._fetch(k), k, row, col, dec.synth_block))
            masks.append(None if packed is None else _unpack_mask(packed))
        if lost:
            tiles = [np.full((ph, pw), self._fill, h.dtype) for _ in range(h.bands)]
        else:
            tiles = dec.spectral_bands(comps, masks, as_float=False)
        for b, px in enumerate(tiles):
            px.setflags(write=False)
            self._tiles.put((b, row, col), px, px.nbytes)
        return tiles[band]


def _unpack_mask(packed: tuple[np.ndarray, tuple[int, int]]) -> np.ndarray:
    """A nodata mask as the latent cache keeps it (packed bits, shape) back to bool."""
    bits, shape = packed
    return np.unpackbits(bits, count=shape[0] * shape[1]).reshape(shape).view(bool)


def open_dataset(
    path: str | os.PathLike,
    mode: str = "r",
    *,
    allow_damaged: bool = False,
    model: str | os.PathLike | None = None,
    runtime: str | None = None,
    precision: str | None = None,
    export_dir: str | os.PathLike | None = None,
    threads: int | None = None,
    model_paths: Sequence[str | os.PathLike] | None = None,
    cache_bytes: int = CACHE_BYTES,
) -> SatcDataset:
    """Open a ``.satc`` file as a read-only, rasterio-like dataset (``satcodec.open``).

    ``runtime``, ``precision``, ``export_dir`` and ``threads`` choose the synthesis runtime,
    ``model`` and ``model_paths`` where the stream's model is found, with the defaults of
    :func:`satcodec.decode` (so a window reads exactly as the whole-scene decode gives it).
    ``allow_damaged``: damaged or missing tiles read as fill instead of raising
    :class:`~satcodec.errors.TileCorruptedError`. ``cache_bytes``: size of each of the two
    caches (decoded tiles, entropy-decoded latents)."""
    if mode != "r":
        raise ConfigError(
            f"satcodec.open reads only (mode 'r'), got mode {mode!r}; write with "
            "satcodec.encode_file"
        )
    if not isinstance(cache_bytes, (int, np.integer)) or cache_bytes < 0:
        raise ConfigError(f"cache_bytes must be a byte count >= 0, got {cache_bytes!r}")
    return SatcDataset(
        path,
        allow_damaged=allow_damaged,
        model=model,
        runtime=runtime,
        precision=precision,
        export_dir=export_dir,
        threads=threads,
        model_paths=() if model_paths is None else model_paths,
        cache_bytes=int(cache_bytes),
    )


__all__ = ["CACHE_BYTES", "SatcDataset", "open_dataset"]
