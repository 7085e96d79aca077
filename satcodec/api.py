"""The Python API: arrays and files in, bitstreams out, and back.

>>> data = satcodec.encode(array, bpp=1.5)          # (bands, H, W) or (H, W) uint8/uint16
>>> array, meta = satcodec.decode(data)
>>> satcodec.encode_file("scene.tif", "scene.satc", bpp=1.0)
>>> satcodec.decode_file("scene.satc", "scene.tif")
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from satcodec.bitstream import StreamReader
from satcodec.codec.pipeline import (
    DEFAULT_TILE,
    Encoder,
    array_window_reader,
    choose_model,
    decode_to_array,
    open_decoder,
    step_for_quality,
    to_dtype,
)
from satcodec.codec.registry import load_model
from satcodec.errors import BitstreamError, ConfigError, RasterError, TruncatedBitstreamError
from satcodec.export.runtime import encoder_analysis, install_synthesis
from satcodec.fileutil import atomic_write_bytes

Progress = Callable[[int, int], None]
SUPPORTED_DTYPES = ("uint8", "uint16")
MAX_STREAM_BYTES = 1 << 34  # 16 GiB: refuse to read anything larger


@dataclass
class EncodeReport:
    path: str
    bytes: int
    bpp: float
    quant_step: float
    model: str
    model_id: str
    tiles: int


@dataclass
class DecodeReport:
    path: str
    height: int
    width: int
    bands: int
    damaged_tiles: list[tuple[int, int, int]] = field(default_factory=list)


def _infer_bit_depth(max_value: int, dtype: str) -> int:
    from satcodec.raster import infer_bit_depth

    return infer_bit_depth(max_value, dtype)


def _rate_options(bpp: float | None, max_bpp: float | None, quality: float | None) -> None:
    given = [
        n for n, v in (("bpp", bpp), ("max_bpp", max_bpp), ("quality", quality)) if v is not None
    ]
    if len(given) > 1:
        raise ConfigError(f"give at most one of bpp, max_bpp, quality (got {', '.join(given)})")


def _encode(enc: Encoder, bpp: float | None, max_bpp: float | None, quality: float | None) -> bytes:
    if bpp is not None:
        return enc.encode_at_bpp(bpp)
    if max_bpp is not None:
        return enc.encode_at_bpp(max_bpp, never_exceed=True)
    return enc.encode(step_for_quality(50.0 if quality is None else quality))


def _build_encoder(
    read: Any,
    layout: tuple[int, int, int, str, int, float | None],
    metadata: dict[str, Any] | None,
    model: str | os.PathLike,
    tile: int,
    progress: Progress | None,
    runtime_spec: tuple[str, str | None, str | os.PathLike | None],
    channel_context: bool = True,
) -> Encoder:
    """Load the model and its runtime, then run the analysis over every tile."""
    bands, height, width, dtype, bit_depth, nodata = layout
    runtime, precision, export_dir = runtime_spec
    net, info = load_model(model)
    return Encoder(
        net,
        info,
        read,
        height=height,
        width=width,
        bands=bands,
        dtype=dtype,
        bit_depth=bit_depth,
        nodata=nodata,
        tile=tile,
        metadata=metadata,
        progress=progress,
        analysis=encoder_analysis(runtime, net, info, precision, export_dir),
        channel_context=channel_context,
    )


def encode(
    array: np.ndarray,
    *,
    bit_depth: int | None = None,
    nodata: float | None = None,
    metadata: dict[str, Any] | None = None,
    bpp: float | None = None,
    max_bpp: float | None = None,
    quality: float | None = None,
    model: str | os.PathLike | None = None,
    tile: int = DEFAULT_TILE,
    progress: Progress | None = None,
    runtime: str = "torch",
    precision: str | None = None,
    export_dir: str | os.PathLike | None = None,
    channel_context: bool = True,
) -> bytes:
    """Compress a (bands, H, W) or (H, W) integer array into a satcodec bitstream.

    Rate: ``bpp`` (file bits per pixel per band, within ±3%), ``max_bpp`` (never above), or
    ``quality`` (0–100, fixed quality; 50 is the model's native point). ``model``: a shipped
    model name or a weights path; by default the shipped model nearest the requested rate.
    ``runtime``: ``torch`` (default), ``onnxruntime`` or ``tensorrt`` runs the analysis, at
    ``precision`` (fp32/fp16/int8), from ``export_dir`` (``satcodec export``) or a cached export.
    ``channel_context``: the cross-channel context entropy model (default); False writes
    streams that readers without bitstream flag 0x0001 decode, at 0.5–15 % more bits.
    """
    _rate_options(bpp, max_bpp, quality)
    a = np.asarray(array)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or min(a.shape) == 0:
        raise ConfigError(f"expected a (bands, H, W) or (H, W) array, got shape {np.shape(array)}")
    if str(a.dtype) not in SUPPORTED_DTYPES:
        raise ConfigError(f"unsupported dtype {a.dtype} (supported: {', '.join(SUPPORTED_DTYPES)})")
    if bit_depth is None:
        bit_depth = _infer_bit_depth(int(a.max()), str(a.dtype))
    if not 1 <= bit_depth <= a.dtype.itemsize * 8:
        raise ConfigError(f"bit depth {bit_depth} does not fit dtype {a.dtype}")
    enc = _build_encoder(
        array_window_reader(a),
        (a.shape[0], a.shape[1], a.shape[2], str(a.dtype), bit_depth, nodata),
        metadata,
        model if model is not None else choose_model(bpp or max_bpp),
        tile,
        progress,
        (runtime, precision, export_dir),
        channel_context,
    )
    return _encode(enc, bpp, max_bpp, quality)


def decode(
    data: bytes,
    *,
    allow_damaged: bool = False,
    model: str | os.PathLike | None = None,
    runtime: str = "torch",
    precision: str | None = None,
    export_dir: str | os.PathLike | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Decode a bitstream to ``(array (bands, H, W), metadata)``.

    ``metadata`` holds the header fields, the georeferencing and ``damaged_tiles``. A damaged
    tile raises :class:`~satcodec.errors.TileCorruptedError` unless ``allow_damaged``, in
    which case its pixels are set to nodata (0 when the stream has no nodata value).
    """
    decoder = open_decoder(data, None if model is None else str(model), allow_damaged)
    res = decode_to_array(install_synthesis(decoder, runtime, precision, export_dir))
    h = res.header
    meta = {
        "height": h.height,
        "width": h.width,
        "bands": h.bands,
        "dtype": h.dtype,
        "bit_depth": h.bit_depth,
        "nodata": res.nodata,
        "model_id": h.model_id,
        "quant_step": h.quant_step,
        "tile_size": h.tile_size,
        "metadata": h.metadata,
        "damaged_tiles": res.damaged,
    }
    return res.array, meta


def read_stream(path: str | os.PathLike) -> StreamReader:
    """Open a bitstream file with a clear error for missing or oversized files."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise BitstreamError(f"cannot read {p}: {exc.strerror}") from exc
    if size > MAX_STREAM_BYTES:
        raise BitstreamError(f"{p} is {size} bytes, larger than any stream this reader accepts")
    if size == 0:
        raise TruncatedBitstreamError(f"{p} is empty")
    return StreamReader.open(p)


def encode_file(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    bit_depth: int | None = None,
    bpp: float | None = None,
    max_bpp: float | None = None,
    quality: float | None = None,
    model: str | os.PathLike | None = None,
    tile: int = DEFAULT_TILE,
    progress: Progress | None = None,
    runtime: str = "torch",
    precision: str | None = None,
    export_dir: str | os.PathLike | None = None,
    channel_context: bool = True,
) -> EncodeReport:
    """Compress a GeoTIFF into a bitstream file (written atomically), reading it window by window.

    Options as :func:`encode`."""
    from satcodec.raster import open_raster

    _rate_options(bpp, max_bpp, quality)
    with open_raster(src, bit_depth=bit_depth) as r:
        m = r.meta
        if m.dtype not in SUPPORTED_DTYPES:
            raise RasterError(
                f"{src}: unsupported dtype {m.dtype} (supported: {', '.join(SUPPORTED_DTYPES)})"
            )
        enc = _build_encoder(
            r.read_window,
            (m.count, m.height, m.width, m.dtype, m.bit_depth, m.nodata),
            m.to_json_dict(),
            model if model is not None else choose_model(bpp or max_bpp),
            tile,
            progress,
            (runtime, precision, export_dir),
            channel_context,
        )
    info = enc.info
    data = _encode(enc, bpp, max_bpp, quality)
    atomic_write_bytes(dst, data)
    h = StreamReader(data).header
    return EncodeReport(
        str(dst),
        len(data),
        8 * len(data) / enc.pixels,
        h.quant_step,
        info.name,
        info.model_id,
        len(enc.latent_tiles),
    )


def decode_file(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    allow_damaged: bool = False,
    model: str | os.PathLike | None = None,
    progress: Progress | None = None,
    runtime: str = "torch",
    precision: str | None = None,
    export_dir: str | os.PathLike | None = None,
) -> DecodeReport:
    """Decode a bitstream file into a GeoTIFF (atomic), tile by tile, keeping georeferencing."""
    from satcodec.raster import RasterMeta, create_raster

    decoder = open_decoder(read_stream(src), None if model is None else str(model), allow_damaged)
    install_synthesis(decoder, runtime, precision, export_dir)
    h = decoder.header
    meta = RasterMeta.from_json_dict(h.metadata) if h.metadata else None
    meta = _meta_for_header(meta, h)
    # entropy-decode everything first, so a damaged tile fails before any output is written
    planes = [decoder.band_latents(b) for b in range(h.bands)]
    if decoder.damaged and meta.nodata is None:
        meta.nodata = 0.0
    total, done = h.bands * h.tiles_y * h.tiles_x, 0
    damaged = set(decoder.damaged)
    with create_raster(dst, meta) as w:
        for b, (plane, masks) in enumerate(planes):
            mask_of = {(r, c): m for r, c, m in masks}
            for r in range(h.tiles_y):
                for c in range(h.tiles_x):
                    y0, x0, ph, pw = h.tile_pixel_window(r, c)
                    if (b, r, c) in damaged:
                        px = np.full((ph, pw), meta.nodata, dtype=h.dtype)
                    else:
                        px = to_dtype(decoder.synthesise_tile(plane, b, r, c), h.dtype, h.bit_depth)
                        if (r, c) in mask_of:
                            px[mask_of[(r, c)]] = meta.nodata
                    w.write_window(b, y0, x0, px)
                    done += 1
                    if progress:
                        progress(done, total)
    return DecodeReport(str(dst), h.height, h.width, h.bands, sorted(damaged))


def _meta_for_header(meta: Any, h: Any) -> Any:
    from satcodec.raster import RasterMeta

    if meta is None:
        meta = RasterMeta(
            height=h.height,
            width=h.width,
            count=h.bands,
            dtype=h.dtype,
            bit_depth=h.bit_depth,
            nodata=h.nodata,
            crs_wkt=None,
            transform=None,
            rpcs=None,
            gcps=None,
            gcps_crs_wkt=None,
            descriptions=[None] * h.bands,
            tags={},
            nbits_tag=None,
        )
    # the header's fixed fields are authoritative (they are covered by its CRC and checks)
    meta.height, meta.width, meta.count = h.height, h.width, h.bands
    meta.dtype, meta.bit_depth, meta.nodata = h.dtype, h.bit_depth, h.nodata
    return meta
