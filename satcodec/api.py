"""The Python API: arrays and files in, bitstreams out, and back.

>>> data = satcodec.encode(array, bpp=1.5)          # (bands, H, W) or (H, W) uint8/uint16
>>> array, meta = satcodec.decode(data)
>>> satcodec.encode_file("scene.tif", "scene.satc", bpp=1.0)
>>> satcodec.decode_file("scene.satc", "scene.tif")
"""

from __future__ import annotations

import math
import os
import stat
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from satcodec.bitstream import StreamReader
from satcodec.codec.registry import load_weights
from satcodec.coding import (
    DEFAULT_TILE,
    Decoder,
    Encoder,
    array_window_reader,
    choose_model,
    decode_to_array,
    entropy_model_for,
    step_for_quality,
    stream_model,
)
from satcodec.coding.normalisation import check_normalisation
from satcodec.coding.parallel import resolve_workers
from satcodec.coding.spectral import SPECTRAL_KINDS, SpectralTransform, fit_klt
from satcodec.errors import (
    BitstreamError,
    ConfigError,
    RasterError,
    RateControlError,
    TruncatedBitstreamError,
)
from satcodec.export.runtime import make_transform
from satcodec.fileutil import atomic_write_bytes
from satcodec.metrics import bits_per_pixel

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
    bands: int = 1
    spectral: str | None = None  # "klt" when the bands were coded jointly (flag 0x0002)


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


MAX_BPP = 64.0  # far above lossless for any supported dtype: a larger target is a mistake


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _rate_options(bpp: float | None, max_bpp: float | None, quality: float | None) -> None:
    given = [
        n for n, v in (("bpp", bpp), ("max_bpp", max_bpp), ("quality", quality)) if v is not None
    ]
    if len(given) > 1:
        raise ConfigError(f"give at most one of bpp, max_bpp, quality (got {', '.join(given)})")
    for name, v in (("bpp", bpp), ("max_bpp", max_bpp)):
        if v is None:
            continue
        if not _is_real(v) or not math.isfinite(v):
            raise RateControlError(f"{name} must be a finite number, got {v!r}")
        if not 0 < v <= MAX_BPP:
            raise RateControlError(f"{name} must be in (0, {MAX_BPP:g}] bits per pixel, got {v!r}")
    if quality is not None and (
        not _is_real(quality) or not math.isfinite(quality) or not 0 <= quality <= 100
    ):
        raise RateControlError(f"quality must be a number in 0..100, got {quality!r}")


def _check_model_option(model: Any) -> None:
    if model is not None and not (
        isinstance(model, (str, os.PathLike)) and os.fspath(model).strip()
    ):
        raise ConfigError(
            f"model must be a model name (satcodec models) or a weights path, got {model!r}"
        )


def _check_spectral(spectral: Any) -> None:
    if isinstance(spectral, SpectralTransform):
        return
    if spectral is not None and spectral not in SPECTRAL_KINDS:
        raise ConfigError(
            f"spectral must be None, one of {', '.join(SPECTRAL_KINDS)} or a "
            f"SpectralTransform, got {spectral!r}"
        )


def _check_tile(tile: Any) -> None:
    if not isinstance(tile, (int, np.integer)) or isinstance(tile, bool):
        raise ConfigError(f"tile must be an integer number of pixels, got {tile!r}")


def _check_nodata(nodata: Any, dtype: str) -> float | None:
    """``nodata`` as a float that ``dtype`` holds exactly, or ConfigError."""
    if nodata is None:
        return None
    if not _is_real(nodata) or not math.isfinite(nodata):
        raise ConfigError(f"nodata must be a finite number, got {nodata!r}")
    info = np.iinfo(dtype)
    if float(nodata) != int(nodata) or not info.min <= int(nodata) <= info.max:
        raise ConfigError(f"nodata {nodata!r} is not a value of {dtype} ({info.min}..{info.max})")
    return float(nodata)


def _check_bit_depth(bit_depth: Any, dtype: np.dtype, data_max: int) -> int:
    """The bit depth, checked against the dtype and the data: a depth below the data would
    clip every pixel above its peak (a silent total loss), so it is refused by name."""
    from satcodec.raster import check_bit_depth

    if not isinstance(bit_depth, (int, np.integer)) or isinstance(bit_depth, bool):
        raise ConfigError(f"bit depth must be an integer, got {bit_depth!r}")
    if not 1 <= bit_depth <= dtype.itemsize * 8:
        raise ConfigError(f"bit depth {bit_depth} does not fit dtype {dtype}")
    check_bit_depth(data_max, int(bit_depth), "array")
    return int(bit_depth)


def check_output_path(src: str | os.PathLike, dst: str | os.PathLike, overwrite: bool) -> None:
    """Refuse an output that is the input, and an existing output unless ``overwrite``.

    Special files (``/dev/null``, a FIFO) are sinks, not outputs to protect; a directory is
    never an output."""
    for name, v in (("input", src), ("output", dst)):
        if not isinstance(v, (str, os.PathLike)) or not os.fspath(v):
            raise ConfigError(f"{name} must be a path, got {v!r}")
    d = Path(dst)
    try:
        st = d.stat()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ConfigError(f"cannot write {d}: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"output {d} is a directory")
    try:
        same = os.path.samefile(src, d)
    except OSError:
        same = False
    if same:
        raise ConfigError(f"output {d} is the input file: refusing to overwrite it")
    if stat.S_ISREG(st.st_mode) and not overwrite:
        raise ConfigError(f"output {d} exists (use --overwrite to replace it)")


def _encode(enc: Encoder, bpp: float | None, max_bpp: float | None, quality: float | None) -> bytes:
    if bpp is not None:
        return enc.encode_at_bpp(bpp)
    if max_bpp is not None:
        return enc.encode_at_bpp(max_bpp, never_exceed=True)
    return enc.encode(
        step_for_quality(50.0 if quality is None else quality) * enc.quality_step_scale
    )


def _build_encoder(
    read: Any,
    layout: tuple[int, int, int, str, int, float | None],
    metadata: dict[str, Any] | None,
    model: str | os.PathLike,
    tile: int,
    progress: Progress | None,
    runtime_spec: tuple[str | None, str | None, str | os.PathLike | None, int | None],
    channel_context: bool = True,
    spectral: str | SpectralTransform | None = None,
    normalisation: str = "texture",
    deadzone: float | None = None,
) -> Encoder:
    """Load the model and its runtime, fit the spectral transform if asked, then run the
    analysis over every tile."""
    bands, height, width, dtype, bit_depth, nodata = layout
    transform = None
    if isinstance(spectral, SpectralTransform):
        transform = spectral  # fitted elsewhere (earlier scenes, the ground): no fitting pass
    elif spectral is not None:
        transform = fit_klt(read, bands, height, width, nodata)
    runtime, precision, export_dir, threads = runtime_spec
    workers = resolve_workers(threads)
    net = load_weights(model)  # PyTorch only if the runtime needs it (an export to build)
    info = net.info
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
        # one intra-op thread per transform call: the parallelism is across tiles
        analysis=make_transform("analysis", runtime, net, info, precision, export_dir, threads=1),
        entropy_model=entropy_model_for(channel_context),
        workers=workers,
        spectral=transform,
        normalisation=normalisation,
        deadzone=deadzone,
    )


def _open_decoder(
    reader: StreamReader,
    model: str | os.PathLike | None,
    allow_damaged: bool,
    runtime_spec: tuple[str | None, str | None, str | os.PathLike | None, int | None],
    model_paths: Sequence[str | os.PathLike] = (),
) -> Decoder:
    """Find the stream's model, build its synthesis on the runtime, open the decoder."""
    runtime, precision, export_dir, threads = runtime_spec
    workers = resolve_workers(threads)
    net, info = stream_model(reader.header, None if model is None else str(model), model_paths)
    synthesis = make_transform("synthesis", runtime, net, info, precision, export_dir, threads=1)
    return Decoder(reader, net, allow_damaged, synthesis, info, workers=workers)


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
    runtime: str | None = None,
    precision: str | None = None,
    export_dir: str | os.PathLike | None = None,
    threads: int | None = None,
    channel_context: bool = True,
    max_encoder_macs: float | None = None,
    spectral: str | SpectralTransform | None = None,
    normalisation: str = "texture",
    deadzone: float | None = None,
) -> bytes:
    """Compress a (bands, H, W) or (H, W) integer array into a satcodec bitstream.

    Rate: ``bpp`` (file bits per pixel per band, within ±3%), ``max_bpp`` (never above), or
    ``quality`` (0–100, fixed quality; 50 is the model's native point at the bit depth's peak,
    and a quality is the same step in sensor units whatever the bands' normalisation). ``model``: a shipped
    model name or a weights path; by default the shipped model nearest the requested rate.
    ``runtime``: ``onnxruntime``, ``torch`` or ``tensorrt`` runs the analysis, at ``precision``
    (fp32/fp16/int8), from ``export_dir`` (``satcodec export``) or a cached export; None
    (default): ``$SATCODEC_RUNTIME``, else onnxruntime fp32 when installed (same streams as
    torch, faster), else torch. ``threads``: tiles analysed and coded in parallel (default:
    every available core); the stream does not depend on it.
    ``channel_context``: the cross-channel context entropy model (default); False writes
    streams that readers without bitstream flag 0x0001 decode, at 0.5–15 % more bits.
    ``max_encoder_macs``: without ``model``, choose only among models whose analysis costs at
    most this many MAC per pixel (a board's budget; the fast-encoder models fit ~3.3k).
    ``spectral="klt"``: code a Karhunen–Loève transform of the bands instead of the bands
    (multispectral scenes: bitstream flag 0x0002, :mod:`satcodec.coding.spectral`); the
    rate still counts every band's pixels. A :class:`~satcodec.coding.spectral.SpectralTransform`
    (e.g. fitted on earlier scenes and uploaded to the board,
    ``SpectralTransform.from_json``) is used as it is, without the two fitting passes.
    ``normalisation``: ``"texture"`` (default) divides each band by the peak that brings its
    texture to the amplitude the models code best (bitstream flag 0x0004 when that is not
    the bit depth's peak; :mod:`satcodec.coding.normalisation`); ``"bit-depth"`` by
    ``2**bit_depth - 1``, the streams readers before flag 0x0004 decode.
    ``deadzone``: the quantiser's deadzone in steps at every step (``-0.5 < deadzone < 0.5``;
    negative rounds magnitudes up; None: codec models get
    :func:`~satcodec.coding.step_deadzone` of each band's step, -0.06 to 0.12 growing with
    the step, 0-5 % fewer bits at equal PSNR); 0 rounds plainly, the streams of earlier
    versions. Encoder-only: every decoder reads the streams either way.
    """
    _rate_options(bpp, max_bpp, quality)
    _check_model_option(model)
    _check_tile(tile)
    _check_spectral(spectral)
    check_normalisation(normalisation)
    if not isinstance(array, np.ndarray):
        raise ConfigError(f"expected a numpy array, got {type(array).__name__}")
    a = array
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or min(a.shape) == 0:
        raise ConfigError(f"expected a (bands, H, W) or (H, W) array, got shape {np.shape(array)}")
    if str(a.dtype) not in SUPPORTED_DTYPES:
        raise ConfigError(f"unsupported dtype {a.dtype} (supported: {', '.join(SUPPORTED_DTYPES)})")
    nodata = _check_nodata(nodata, str(a.dtype))
    valid = a if nodata is None else a[a != nodata]
    data_max = int(valid.max()) if valid.size else 0
    if bit_depth is None:
        bit_depth = _infer_bit_depth(data_max, str(a.dtype))
    bit_depth = _check_bit_depth(bit_depth, a.dtype, data_max)
    if metadata is not None and not isinstance(metadata, dict):
        raise ConfigError(f"metadata must be a dict, got {type(metadata).__name__}")
    enc = _build_encoder(
        array_window_reader(a),
        (a.shape[0], a.shape[1], a.shape[2], str(a.dtype), bit_depth, nodata),
        metadata,
        model if model is not None else choose_model(bpp or max_bpp, None, max_encoder_macs),
        tile,
        progress,
        (runtime, precision, export_dir, threads),
        channel_context,
        spectral,
        normalisation,
        deadzone,
    )
    return _encode(enc, bpp, max_bpp, quality)


def decode(
    data: bytes,
    *,
    allow_damaged: bool = False,
    model: str | os.PathLike | None = None,
    runtime: str | None = None,
    precision: str | None = None,
    export_dir: str | os.PathLike | None = None,
    threads: int | None = None,
    model_paths: Sequence[str | os.PathLike] = (),
) -> tuple[np.ndarray, dict[str, Any]]:
    """Decode a bitstream (bytes, or an open :class:`~satcodec.bitstream.StreamReader`) to
    ``(array (bands, H, W), metadata)``.

    ``metadata`` holds the header fields, the georeferencing and ``damaged_tiles``. A damaged
    tile raises :class:`~satcodec.errors.TileCorruptedError` unless ``allow_damaged``, in
    which case its pixels are set to ``metadata["nodata"]``: the stream's nodata value, or,
    when it has none, a value outside the data (``2**bit_depth``; 0 only for full-width
    data, where ``damaged_tiles`` is the only record). ``allow_damaged`` also recovers a
    truncated stream (an interrupted downlink): the tiles past the end are damaged tiles.
    ``model_paths``: extra weights files to look for the stream's model in (after the
    installed ones). ``metadata["model"]`` / ``["model_kind"]`` name the model decoded with.
    """
    if not isinstance(data, (bytes, bytearray, memoryview, StreamReader)):
        raise ConfigError(f"data must be bytes, got {type(data).__name__}")
    _check_model_option(model)
    reader = data if isinstance(data, StreamReader) else StreamReader(data, partial=allow_damaged)
    decoder = _open_decoder(
        reader, model, allow_damaged, (runtime, precision, export_dir, threads), model_paths
    )
    res = decode_to_array(decoder)
    h = res.header
    nodata = res.nodata
    if res.damaged and h.nodata is None:
        v = _damaged_fill_or_none(h.dtype, h.bit_depth)
        nodata = 0.0 if v is None else v
        for _b, r, c in res.damaged:
            y0, x0, ph, pw = h.tile_pixel_window(r, c)
            res.array[_b, y0 : y0 + ph, x0 : x0 + pw] = nodata
    meta = {
        "height": h.height,
        "width": h.width,
        "bands": h.bands,
        "dtype": h.dtype,
        "bit_depth": h.bit_depth,
        "nodata": nodata,
        "model_id": h.model_id,
        "quant_step": h.quant_step,
        "tile_size": h.tile_size,
        "metadata": h.metadata,
        "damaged_tiles": res.damaged,
        "model": decoder.info.name,
        "model_kind": decoder.info.meta.get("kind", "codec"),
    }
    return res.array, meta


def read_stream(path: str | os.PathLike, *, partial: bool = False) -> StreamReader:
    """Open a bitstream file with a clear error for missing, special or oversized files.

    ``partial``: open a stream cut short after its header (its missing tiles read as damaged).
    """
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise ConfigError(f"input must be a path, got {path!r}")
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        raise BitstreamError(f"cannot read {p}: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise BitstreamError(f"{p} is a directory, not a bitstream file")
    if not stat.S_ISREG(st.st_mode):
        raise BitstreamError(f"{p} is not a regular file")
    if st.st_size > MAX_STREAM_BYTES:
        raise BitstreamError(
            f"{p} is {st.st_size} bytes, larger than any stream this reader accepts"
        )
    if st.st_size == 0:
        raise TruncatedBitstreamError(f"{p} is empty")
    try:
        return StreamReader.open(p, partial=partial)
    except OSError as exc:
        raise BitstreamError(f"cannot read {p}: {exc.strerror or exc}") from None


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
    runtime: str | None = None,
    precision: str | None = None,
    export_dir: str | os.PathLike | None = None,
    threads: int | None = None,
    channel_context: bool = True,
    overwrite: bool = True,
    max_encoder_macs: float | None = None,
    spectral: str | SpectralTransform | None = None,
    normalisation: str = "texture",
    deadzone: float | None = None,
) -> EncodeReport:
    """Compress a GeoTIFF into a bitstream file (written atomically), reading it window by window.

    Options as :func:`encode`. ``dst`` may never be ``src``; an existing ``dst`` is replaced
    only with ``overwrite`` (the default here, as ``open(dst, "wb")`` does; the CLI asks for
    ``--overwrite``)."""
    from satcodec.raster import open_raster

    _rate_options(bpp, max_bpp, quality)
    _check_model_option(model)
    _check_tile(tile)
    _check_spectral(spectral)
    check_normalisation(normalisation)
    check_output_path(src, dst, overwrite)
    if bit_depth is not None and (
        not isinstance(bit_depth, (int, np.integer)) or isinstance(bit_depth, bool)
    ):
        raise ConfigError(f"bit depth must be an integer, got {bit_depth!r}")
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
            model if model is not None else choose_model(bpp or max_bpp, None, max_encoder_macs),
            tile,
            progress,
            (runtime, precision, export_dir, threads),
            channel_context,
            spectral,
            normalisation,
            deadzone,
        )
        # inside the with: a large scene's encoder reads its tiles again while coding
        data = _encode(enc, bpp, max_bpp, quality)
    info = enc.info
    atomic_write_bytes(dst, data)
    h = StreamReader(data).header
    return EncodeReport(
        str(dst),
        len(data),
        bits_per_pixel(len(data), enc.pixels),
        h.quant_step,
        info.name,
        info.model_id,
        enc.n_tiles,
        h.bands,
        None if h.spectral_transform is None else h.spectral_transform["kind"],
    )


def decode_file(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    allow_damaged: bool = False,
    model: str | os.PathLike | None = None,
    progress: Progress | None = None,
    runtime: str | None = None,
    precision: str | None = None,
    export_dir: str | os.PathLike | None = None,
    threads: int | None = None,
    overwrite: bool = True,
) -> DecodeReport:
    """Decode a bitstream file into a GeoTIFF (atomic), tile by tile, keeping georeferencing.

    ``allow_damaged``: damaged tiles, and the tiles a truncated stream lacks, are written as
    nodata and reported instead of failing. ``overwrite`` as in :func:`encode_file`."""
    from satcodec.raster import create_raster

    _check_model_option(model)
    check_output_path(src, dst, overwrite)
    from satcodec.raster import SUPPORTED_DTYPES as WRITABLE_DTYPES

    reader = read_stream(src, partial=allow_damaged)
    if reader.header.dtype not in WRITABLE_DTYPES:
        raise RasterError(
            f"{src} holds {reader.header.dtype} pixels, which this GeoTIFF writer does not "
            f"support ({', '.join(WRITABLE_DTYPES)}); satcodec.decode() returns them as an array"
        )
    decoder = _open_decoder(reader, model, allow_damaged, (runtime, precision, export_dir, threads))
    h = decoder.header
    meta, _ = stream_raster_meta(h)
    # every tile's CRC first (cheap): a damaged tile fails before any output is written, and
    # the nodata convention of the product is known before it is created
    known_damaged = reader.check()
    if known_damaged and not allow_damaged:
        b, r, c = known_damaged[0]
        reader.read_tile(b, r, c)  # raises TileCorruptedError naming the tile
    if known_damaged and meta.nodata is None:
        # a value outside the data when the dtype has one; else (full-width data) a mask band
        meta.nodata = _damaged_fill_or_none(h.dtype, h.bit_depth)
    fill = 0.0 if meta.nodata is None else meta.nodata
    total, done = h.bands * h.tiles_y * h.tiles_x, 0
    # an error met while decoding (a CRC-valid tile that does not entropy-decode) aborts the
    # writer: the temporary file is removed, no partial output
    with create_raster(dst, meta) as w:
        for t in decoder.iter_tiles(fill=fill):
            y0, x0, _, _ = h.tile_pixel_window(t.row, t.col)
            mask = None
            if t.damaged and meta.nodata is None:  # found only while decoding: mask band
                mask = np.ones(t.pixels.shape, bool)
            w.write_window(t.band, y0, x0, t.pixels, mask)
            done += 1
            if progress:
                progress(done, total)
    return DecodeReport(str(dst), h.height, h.width, h.bands, sorted(decoder.damaged))


def _damaged_fill_or_none(dtype: str, bit_depth: int) -> float | None:
    """Pixel value for damaged tiles of a stream without nodata, outside the data's range;
    None for full-width data (every value may be a pixel: use a mask)."""
    from satcodec.raster import damaged_fill_value

    v = damaged_fill_value(dtype, bit_depth)
    return None if v is None else float(v)


def stream_raster_meta(h: Any, notes: list[str] | None = None) -> tuple[Any, dict[str, Any]]:
    """The GeoTIFF metadata of a stream (header ``h``) and its metadata keys that are not
    raster metadata.

    Georeferencing comes from the header's metadata object, every key optional (spec: the
    object is opaque); the header's fixed fields (size, bands, dtype, bit depth, nodata) win,
    as they are covered by its CRC and checks. Metadata that does not make a valid raster
    (hostile or foreign) is dropped with a note in ``notes`` (else a warning): the pixels are
    still written, without georeferencing.
    """
    from satcodec.errors import RasterError
    from satcodec.raster import RasterMeta

    def note(msg: str) -> None:
        if notes is None:
            warnings.warn(msg, stacklevel=3)
        else:
            notes.append(msg)

    def bare() -> Any:
        return RasterMeta(
            height=h.height,
            width=h.width,
            count=h.bands,
            dtype=h.dtype,
            bit_depth=h.bit_depth,
            nodata=h.nodata,
            descriptions=[None] * h.bands,
        )

    md = h.metadata if isinstance(h.metadata, dict) else {}
    known = set(RasterMeta.__dataclass_fields__) | {"band_descriptions"}
    other = {k: v for k, v in md.items() if k not in known}
    meta = None
    if md:
        try:
            meta = RasterMeta.from_json_dict(md)
        except RasterError:
            try:  # a writer that added keys of its own to valid raster metadata
                meta = RasterMeta.from_json_dict({k: md[k] for k in known if k in md})
            except RasterError as exc:
                note(f"raster metadata ignored (no georeferencing): {exc}")
    if meta is None:
        return bare(), other
    meta.height, meta.width, meta.count = h.height, h.width, h.bands
    meta.dtype, meta.bit_depth, meta.nodata = h.dtype, h.bit_depth, h.nodata
    if len(meta.descriptions) != h.bands:
        meta.descriptions = [None] * h.bands
    if meta.nbits_tag is not None and not (
        meta.bit_depth <= meta.nbits_tag <= np.iinfo(h.dtype).bits
    ):
        meta.nbits_tag = None
    try:
        meta.validate()
    except RasterError as exc:
        note(f"raster metadata ignored (no georeferencing): {exc}")
        return bare(), other
    return meta, other


def describe(path: str | os.PathLike) -> dict[str, Any]:
    """What ``satcodec info`` shows of a bitstream file: its header fields, tile count, latent
    channels, entropy model, size in bytes and bits per pixel (per band), the damaged tiles
    as ``(band, row, col)`` (every tile's CRC is checked; a truncated stream is read
    ``partial``-ly, its missing tiles listed as damaged) and the GeoTIFF metadata."""
    from satcodec.bitstream import FORMAT_VERSION

    with read_stream(path, partial=True) as reader:
        h = reader.header
        damaged = reader.check()
    size = os.stat(path).st_size
    return {
        "version": FORMAT_VERSION,  # the only one this reader opens
        "height": h.height,
        "width": h.width,
        "bands": h.bands,
        "dtype": h.dtype,
        "bit_depth": h.bit_depth,
        "nodata": h.nodata,
        "model_id": h.model_id,
        "quant_step": h.quant_step,
        "tile_size": h.tile_size,
        "tiles": h.bands * h.tiles_y * h.tiles_x,
        "latent_channels": h.latent_channels,
        "entropy_model": entropy_model_for(h).name,
        # flag 0x0002: the transform's kind and the components' bit depth (None: band by band)
        "spectral_transform": None
        if h.spectral_transform is None
        else f"{h.spectral_transform['kind']} (components of "
        f"{'/'.join(map(str, h.spectral_transform['component_bits']))} bits)",
        # flag 0x0004: each band's normalisation peak in bits (None: the bit depth's)
        "band_peak_bits": None if h.band_peak_bits is None else list(h.band_peak_bits),
        "bytes": size,
        "bpp": bits_per_pixel(size, h.height * h.width * h.bands),
        "damaged_tiles": damaged,
        "metadata": h.metadata,
    }
