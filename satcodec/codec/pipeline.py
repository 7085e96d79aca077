"""The coding path: raster → tiles → analysis → quantise → entropy code → bitstream, and back.

Tiles bound memory and confine errors; they are not a visible grid. The analysis runs on each
tile's window widened by its receptive field (``ENCODE_HALO`` pixels each side, stopping at the
image border as training patches do), and the synthesis on each tile's latents widened by
``DECODE_HALO`` latents, so the reconstruction barely depends on the tile size and a damaged
tile only disturbs its neighbours within that halo.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from satcodec.bitstream import (
    SUPPORTED_DOWNSAMPLING,
    StreamHeader,
    StreamReader,
    TileRecord,
    write_stream,
)
from satcodec.codec.models import DOWNSAMPLING, ModelConfig, ReducedVAE
from satcodec.codec.registry import ModelInfo, find_model_by_id, list_models, load_model
from satcodec.entropy import (
    MAX_ABS_SYMBOL as MAX_SYMBOL,
)
from satcodec.entropy import (
    decode_symbols,
    encode_symbols,
    fit_scale_indices,
    symbol_bits,
)
from satcodec.entropy.context import (
    context_symbol_bits,
    decode_symbols_context,
    encode_symbols_context,
    fit_context_bases,
)
from satcodec.errors import (
    BitstreamError,
    ConfigError,
    EntropyCodingError,
    RateControlError,
    TileCorruptedError,
)

# analysis receptive radius is 2·(1+2+4+8) = 30 px at stride 16 (14 px at stride 8); 32 is a
# multiple of both strides, so the halo is a whole number of latents either way
ENCODE_HALO = 2 * DOWNSAMPLING
DECODE_HALO = 2  # latents; synthesis receptive radius ≈ 1 + ½ + ¼ + ⅛ latents


def decode_halo(config: ModelConfig) -> int:
    """Latents of context each side of a decoded tile: the synthesis's, plus the receptive
    radii of the refinement and denoising stages (ground-side, joint models) rounded up to
    whole latents."""
    extra = config.refine_radius + config.denoise_radius
    return DECODE_HALO + math.ceil(extra / config.downsampling)


DEFAULT_TILE = 512
QUALITY_NATIVE = 50.0  # --quality 50 = the model's trained operating point (step 1)
QUALITY_PER_OCTAVE = 12.5  # every 12.5 quality points halve / double the step
MIN_STEP, MAX_STEP = 1 / 64, 256.0

WindowReader = Callable[[int, int, int, int, int], np.ndarray]  # (band, y0, x0, h, w) -> (h, w)


@dataclass
class LatentTile:
    band: int
    row: int
    col: int
    latents: np.ndarray  # float32 (C, h, w), at quantisation step 1
    nodata_mask: np.ndarray | None  # bool (th, tw) pixels, or None if the tile has no nodata


@dataclass
class EncodeResult:
    data: bytes
    bpp: float  # file bits per pixel per band (size of the whole stream)
    quant_step: float
    model: str
    model_id: str
    tiles: int


@dataclass
class DecodeResult:
    array: np.ndarray  # (bands, H, W)
    header: StreamHeader
    damaged: list[tuple[int, int, int]] = field(default_factory=list)
    nodata: float | None = None


def array_window_reader(array: np.ndarray) -> WindowReader:
    """Read windows of a (bands, H, W) array, replicating the edge outside the image."""

    def read(band: int, y0: int, x0: int, h: int, w: int) -> np.ndarray:
        H, W = array.shape[1:]
        ys = np.clip(np.arange(y0, y0 + h), 0, H - 1)
        xs = np.clip(np.arange(x0, x0 + w), 0, W - 1)
        ya, yb = ys[0], ys[-1] + 1
        xa, xb = xs[0], xs[-1] + 1
        sub = array[band, ya:yb, xa:xb]
        return sub[np.ix_(ys - ya, xs - xa)]

    return read


def band_offsets_of(
    read: WindowReader, bands: int, height: int, width: int, nodata: float | None
) -> list[int]:
    """Rounded mean of each band over valid pixels, computed in row blocks (bounded memory)."""
    out = []
    block = max(1, (1 << 22) // max(width, 1))
    for b in range(bands):
        total, count = 0.0, 0
        for y in range(0, height, block):
            rows = read(b, y, 0, min(block, height - y), width).astype(np.float64)
            valid = rows[rows != nodata] if nodata is not None else rows
            total += float(valid.sum())
            count += valid.size
        out.append(int(round(total / count)) if count else 0)
    return out


ArrayFn = Callable[[np.ndarray], np.ndarray]  # float32 NCHW -> float32 NCHW


def torch_analysis(model: ReducedVAE) -> ArrayFn:
    """The analysis transform of ``model`` as a numpy function (the default runtime)."""

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model.analysis_transform(torch.from_numpy(x)).numpy()

    return run


def torch_synthesis(model: ReducedVAE) -> ArrayFn:
    """The synthesis transform of ``model`` as a numpy function (the default runtime)."""

    def run(y: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model.synthesis_transform(torch.from_numpy(y)).numpy()

    return run


class Encoder:
    """Compute tile latents once, then quantise and entropy-code them at any step."""

    def __init__(
        self,
        model: ReducedVAE,
        info: ModelInfo,
        read: WindowReader,
        *,
        height: int,
        width: int,
        bands: int,
        dtype: str,
        bit_depth: int,
        nodata: float | None,
        tile: int = DEFAULT_TILE,
        metadata: dict[str, Any] | None = None,
        progress: Callable[[int, int], None] | None = None,
        analysis: ArrayFn | None = None,
        channel_context: bool = True,
    ) -> None:
        """``analysis`` replaces the PyTorch analysis transform (ONNX Runtime, TensorRT).

        ``channel_context``: code with the cross-channel context model
        (:mod:`satcodec.entropy.context`, 0.2–29 % fewer bits at equal distortion, most on
        heterogeneous scenes: bench/results/context_model.md);
        False writes streams the per-channel model decodes (readers before flag 0x0001).
        """
        if tile % DOWNSAMPLING or not 64 <= tile <= 8192:
            raise ConfigError(f"tile size must be a multiple of 16 between 64 and 8192, got {tile}")
        if model.config.bands != 1:
            raise ConfigError("only single-band models are supported; bands are coded one by one")
        require_stream_stride(model)
        self.model, self.info = model, info
        self.analysis = analysis or torch_analysis(model)
        self.height, self.width, self.bands = height, width, bands
        self.dtype, self.bit_depth, self.nodata = dtype, bit_depth, nodata
        self.tile = tile
        self.channel_context = channel_context
        self.metadata = metadata or {}
        self.peak = float(2**bit_depth - 1)
        self.offsets = band_offsets_of(read, bands, height, width, nodata)
        self.tiles_y = math.ceil(height / tile)
        self.tiles_x = math.ceil(width / tile)
        self.latent_tiles = list(self._analyse(read, progress))

    def _analyse(
        self, read: WindowReader, progress: Callable[[int, int], None] | None
    ) -> Iterator[LatentTile]:
        T, halo, stride = self.tile, ENCODE_HALO, self.model.config.downsampling
        # the window stops at the image border, where the convolutions' zero padding applies
        # as it did in training (the decoder's synthesis stops at the latent grid's edge the
        # same way); only the last partial latent row/column is completed by edge replication.
        # Reading replicated pixels beyond the border instead gave the synthesis border latents
        # it was never trained on: an error floor at the image edges (up to ~350 DN on a 12-bit
        # scene, capping PSNR near 54 dB on a 500x500 image whatever the rate).
        grid_h = math.ceil(self.height / stride) * stride
        grid_w = math.ceil(self.width / stride) * stride
        total = self.bands * self.tiles_y * self.tiles_x
        done = 0
        for b in range(self.bands):
            for r in range(self.tiles_y):
                for c in range(self.tiles_x):
                    y0, x0 = r * T, c * T
                    th, tw = min(T, self.height - y0), min(T, self.width - x0)
                    lh, lw = math.ceil(th / stride), math.ceil(tw / stride)
                    wy0, wx0 = max(0, y0 - halo), max(0, x0 - halo)
                    wy1 = min(grid_h, y0 + lh * stride + halo)
                    wx1 = min(grid_w, x0 + lw * stride + halo)
                    raw = read(b, wy0, wx0, wy1 - wy0, wx1 - wx0).astype(np.float32)
                    oy, ox = y0 - wy0, x0 - wx0  # multiples of the stride
                    mask = None
                    if self.nodata is not None:
                        nd = raw == np.float32(self.nodata)
                        raw[nd] = self.offsets[b]  # nodata costs ~0 bits and does not ring
                        inner = nd[oy : oy + th, ox : ox + tw]
                        mask = inner.copy() if inner.any() else None
                    x = ((raw - self.offsets[b]) / self.peak)[None, None]
                    y = self.analysis(np.ascontiguousarray(x, dtype=np.float32))[0]
                    ly, lx = oy // stride, ox // stride
                    lat = np.array(y[:, ly : ly + lh, lx : lx + lw], dtype=np.float32)
                    yield LatentTile(b, r, c, lat, mask)
                    done += 1
                    if progress:
                        progress(done, total)

    # --- rate ---------------------------------------------------------------------------------
    @property
    def pixels(self) -> int:
        return self.height * self.width * self.bands

    def _quantise(
        self, lat: np.ndarray, step: float, context: bool | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Symbols and the scale indices sent with them (context-model bases if ``context``,
        default: the entropy model this encoder codes with)."""
        scaled = lat / step
        # clip before the cast: beyond ±2^24 the entropy coder refuses, int32 would wrap
        symbols = np.rint(np.clip(scaled, -MAX_SYMBOL, MAX_SYMBOL)).astype(np.int32)
        indices = fit_scale_indices(symbols)
        if self.channel_context if context is None else context:
            indices = fit_context_bases(symbols, indices)
        return symbols, indices

    def estimated_bits(self, step: float, sample: int = 1, context: bool | None = None) -> float:
        """Coded size from the integer tables (no entropy coding), every ``sample``-th tile.

        ``context`` picks the entropy model estimated (default: the one this encoder codes
        with); the per-channel estimate is ~10x cheaper and never below the context one."""
        ctx = self.channel_context if context is None else context
        bits = 0.0
        tiles = self.latent_tiles[::sample]
        for t in tiles:
            s, i = self._quantise(t.latents, step, ctx)
            bits += (context_symbol_bits if ctx else symbol_bits)(s, i) + 8 * (len(i) + 32)
        return bits * len(self.latent_tiles) / len(tiles)

    def step_for_bpp(self, bpp: float) -> float:
        """Bisect the quantisation step (log domain) on the table-estimated rate."""
        target = bpp * self.pixels
        sample = max(1, len(self.latent_tiles) // 64)
        lo, hi = math.log2(MIN_STEP), math.log2(MAX_STEP)
        if self.estimated_bits(2**hi, sample) > target:
            raise RateControlError(f"{bpp} bpp is below the lowest rate this model reaches")
        # the per-channel estimate first (cheap): its step is an upper bound of the context
        # model's, whose saving is < 3 octaves of step (measured: < 40 % of the rate)
        for _ in range(24):
            mid = 0.5 * (lo + hi)
            if self.estimated_bits(2**mid, sample, context=False) > target:
                lo = mid
            else:
                hi = mid
        if not self.channel_context:
            return 2**hi

        # then the context estimate by regula falsi (Illinois) on log rate against log step,
        # which is smooth and nearly linear: ~5 estimates instead of a bisection's 12+
        def excess(x: float) -> float:  # > 0: too many bits at step 2^x
            return math.log2(max(self.estimated_bits(2**x, sample), 1.0) / target)

        lo, hi = max(math.log2(MIN_STEP), hi - 3.0), hi
        f_lo, f_hi = excess(lo), excess(hi)
        if f_lo <= 0:  # the saving is beyond the bracket: widen it to the smallest step
            lo = math.log2(MIN_STEP)
            f_lo = excess(lo)
            if f_lo <= 0:
                return 2**lo
        side = 0
        for _ in range(10):
            if f_hi > -0.002:  # within 0.14 % below the target
                break
            x = hi - f_hi * (hi - lo) / (f_hi - f_lo)
            f = excess(x)
            if f > 0:
                lo, f_lo = x, f
                f_hi = f_hi / 2 if side == -1 else f_hi
                side = -1
            else:
                hi, f_hi = x, f
                f_lo = f_lo / 2 if side == 1 else f_lo
                side = 1
        return 2**hi

    # --- coding --------------------------------------------------------------------------------
    def encode(self, step: float) -> bytes:
        q16 = max(1, min(int(round(step * 65536)), 2**32 - 1))
        step = q16 / 65536  # the decoder sees exactly this step
        header = StreamHeader(
            height=self.height,
            width=self.width,
            bands=self.bands,
            dtype=self.dtype,
            bit_depth=self.bit_depth,
            nodata=self.nodata,
            model_id=self.info.model_id,
            quant_step_q16=q16,
            tile_size=self.tile,
            latent_channels=self.model.config.latent,
            downsampling=self.model.config.downsampling,
            band_offsets=tuple(self.offsets),
            metadata=self.metadata,
            channel_context=self.channel_context,
        )
        records = []
        code = encode_symbols_context if self.channel_context else encode_symbols
        for t in self.latent_tiles:
            symbols, indices = self._quantise(t.latents, step)
            payload = _pack_payload(code(symbols, indices), t.nodata_mask)
            records.append(TileRecord(t.band, t.row, t.col, indices.tobytes(), payload))
        return write_stream(header, records)

    def encode_at_bpp(
        self, bpp: float, never_exceed: bool = False, tolerance: float = 0.02
    ) -> bytes:
        """Encode at ``bpp`` (file size) within ``tolerance``; ``never_exceed`` keeps it ≤ bpp."""
        if not bpp > 0:
            raise RateControlError(f"target rate must be positive, got {bpp} bpp")
        budget = bpp * self.pixels / 8
        step = self.step_for_bpp(bpp)
        data = self.encode(step)
        best = data
        # refine on the real file size: the table estimate ignores the coder's termination
        for _ in range(8):
            ratio = len(data) / budget
            ok = ratio <= 1.0 if never_exceed else abs(ratio - 1) <= tolerance
            if ok and (not never_exceed or ratio >= 1 - 2 * tolerance):
                return data
            # rate ~ −k·log2(step): at ~1 bit/latent the slope is about 1 bit per octave
            step *= ratio ** (1.5 if ratio > 1 else 1.0)
            step = min(max(step, MIN_STEP), MAX_STEP)
            data = self.encode(step)
            if (not never_exceed or len(data) <= budget) and abs(len(data) / budget - 1) < abs(
                len(best) / budget - 1
            ):
                best = data
        if never_exceed and len(best) > budget:
            if len(data) <= budget:
                return data
            raise RateControlError(f"cannot fit the image in {bpp} bpp with this model")
        got = 8 * len(best) / self.pixels
        if not never_exceed and abs(got / bpp - 1) > 0.03:
            # the promise is ±3 %: say so instead of returning a stream far off target
            raise RateControlError(
                f"this model cannot reach {bpp} bpp on this image (closest {got:.3f} bpp); "
                "use --max-bpp, --quality or another --model"
            )
        return best


def step_for_quality(quality: float) -> float:
    """Fixed-quality mode: 50 is the model's native point; ±12.5 per octave of step."""
    if not 0 <= quality <= 100:
        raise RateControlError(f"quality must be in 0..100, got {quality}")
    return 2 ** ((QUALITY_NATIVE - quality) / QUALITY_PER_OCTAVE)


def require_stream_stride(model: ReducedVAE) -> None:
    """Refuse, before coding anything, a model whose latent stride the bitstream cannot carry."""
    if model.config.downsampling not in SUPPORTED_DOWNSAMPLING:
        raise ConfigError(
            f"this model has stride-{model.config.downsampling} latents; the bitstream carries "
            f"strides {', '.join(map(str, SUPPORTED_DOWNSAMPLING))} only"
        )


def choose_model(bpp: float | None, models: Sequence[ModelInfo] | None = None) -> str:
    """The model (of ``models``, default: the shipped ones) expected to do best at ``bpp``.

    Uses each model card's measured rate–distortion curve (``rd``: [bpp, PSNR] on held-out
    scenes), interpolated in log-rate; a model whose curve does not cover ``bpp`` is only
    chosen when none does. Falls back to the nearest native rate when cards lack curves.
    """
    models = list_models() if models is None else list(models)
    if not models:
        raise ConfigError("no shipped model found; pass --model PATH")
    if bpp is None:
        return next((m.name for m in models if m.meta.get("default")), models[0].name)

    def predicted(m: ModelInfo) -> tuple[int, float]:
        rd = m.meta.get("rd") or []
        if len(rd) < 2:
            return (0, -abs(math.log2(bpp / float(m.meta.get("native_bpp", 1.0)))))
        rates = [math.log2(r) for r, _ in rd]
        # cards hold real file rates, a hair off their targets (0.502 for 0.5): allow 3 %
        slack = math.log2(1.03)
        covered = rates[0] - slack <= math.log2(bpp) <= rates[-1] + slack
        return (2 if covered else 1, float(np.interp(math.log2(bpp), rates, [q for _, q in rd])))

    return max(models, key=predicted).name


# --- tile payload framing ----------------------------------------------------------------------
# payload = u32 entropy_length | entropy bytes | zlib(packbits(nodata mask)) or nothing


def _pack_payload(entropy: bytes, mask: np.ndarray | None) -> bytes:
    tail = b"" if mask is None else zlib.compress(np.packbits(mask).tobytes(), 9)
    return struct.pack("<I", len(entropy)) + entropy + tail


def _unpack_payload(
    payload: bytes, pixels_h: int, pixels_w: int
) -> tuple[bytes, np.ndarray | None]:
    if len(payload) < 4:
        raise EntropyCodingError("tile payload is shorter than its length field")
    (n,) = struct.unpack_from("<I", payload)
    if n > len(payload) - 4:
        raise EntropyCodingError(
            f"tile payload announces {n} entropy bytes but holds {len(payload) - 4}"
        )
    entropy, tail = payload[4 : 4 + n], payload[4 + n :]
    if not tail:
        return entropy, None
    nbytes = (pixels_h * pixels_w + 7) // 8
    d = zlib.decompressobj()
    try:
        packed = d.decompress(tail, nbytes + 1)  # bounded: never inflate past the mask size
    except zlib.error as exc:
        raise EntropyCodingError(f"tile nodata mask is corrupt: {exc}") from exc
    if len(packed) != nbytes:
        raise EntropyCodingError("tile nodata mask has the wrong size")
    mask = np.unpackbits(np.frombuffer(packed, np.uint8))[: pixels_h * pixels_w]
    return entropy, mask.reshape(pixels_h, pixels_w).astype(bool)


# --- decoding ------------------------------------------------------------------------------------
class Decoder:
    """Entropy-decode every tile's latents, then synthesise tile windows with their halo."""

    def __init__(
        self,
        reader: StreamReader,
        model: ReducedVAE,
        allow_damaged: bool = False,
        synthesis: ArrayFn | None = None,
    ) -> None:
        """``synthesis`` replaces the PyTorch synthesis transform (ONNX Runtime, TensorRT)."""
        self.reader = reader
        self.synthesis = synthesis or torch_synthesis(model)
        self.header = h = reader.header
        self.model = model
        # the header's stride is one the stream supports, so equality covers the model too
        if model.config.downsampling != h.downsampling:
            raise BitstreamError(
                f"bitstream has stride-{h.downsampling} latents but its model has "
                f"stride-{model.config.downsampling} latents"
            )
        if model.config.latent != h.latent_channels:
            raise BitstreamError(
                f"bitstream has {h.latent_channels} latent channels but its model has {model.config.latent}"
            )
        self.allow_damaged = allow_damaged
        self.damaged: list[tuple[int, int, int]] = []
        self.step = h.quant_step
        self.peak = float(2**h.bit_depth - 1)

    def _tile_symbols(self, band: int, row: int, col: int) -> tuple[np.ndarray, np.ndarray | None]:
        h = self.header
        lh, lw = h.tile_latent_shape(row, col)
        _, _, ph, pw = h.tile_pixel_window(row, col)
        try:
            rec = self.reader.read_tile(band, row, col)
            entropy, mask = _unpack_payload(rec.payload, ph, pw)
            if mask is not None and h.nodata is None:
                raise EntropyCodingError(
                    "tile carries a nodata mask but the stream declares no nodata value"
                )
            indices = np.frombuffer(rec.scale_indices, np.uint8)
            decode = decode_symbols_context if h.channel_context else decode_symbols
            symbols = decode(entropy, indices, (h.latent_channels, lh, lw))
            return symbols, mask
        except BitstreamError as exc:
            if not isinstance(exc, TileCorruptedError):
                exc = TileCorruptedError(
                    f"tile band {band} row {row} col {col} is damaged: {exc}", band, row, col
                )
            if not self.allow_damaged:
                raise exc from None
            self.damaged.append((band, row, col))
            return np.zeros((h.latent_channels, lh, lw), np.int32), None

    def band_latents(self, band: int) -> tuple[np.ndarray, list[tuple[int, int, np.ndarray]]]:
        """All latents of one band as int32 (C, LH, LW) and the nodata masks of its tiles."""
        h = self.header
        L = h.tile_size // h.downsampling
        plane = np.zeros((h.latent_channels, h.latent_height, h.latent_width), np.int32)
        masks = []
        for r in range(h.tiles_y):
            for c in range(h.tiles_x):
                sym, mask = self._tile_symbols(band, r, c)
                plane[:, r * L : r * L + sym.shape[1], c * L : c * L + sym.shape[2]] = sym
                if mask is not None:
                    masks.append((r, c, mask))
        return plane, masks

    def synthesise_tile(self, plane: np.ndarray, band: int, row: int, col: int) -> np.ndarray:
        """Pixels (float, sensor units) of one tile from the band's latent plane."""
        h = self.header
        L, halo = h.tile_size // h.downsampling, decode_halo(self.model.config)
        ly0, lx0 = row * L, col * L
        lh, lw = h.tile_latent_shape(row, col)
        a0, b0 = max(0, ly0 - halo), max(0, lx0 - halo)
        a1, b1 = min(h.latent_height, ly0 + lh + halo), min(h.latent_width, lx0 + lw + halo)
        window = (plane[:, a0:a1, b0:b1].astype(np.float32) * np.float32(self.step))[None]
        x_hat = self.synthesis(np.ascontiguousarray(window))[0, 0]
        _, _, ph, pw = h.tile_pixel_window(row, col)
        oy, ox = (ly0 - a0) * h.downsampling, (lx0 - b0) * h.downsampling
        offset = h.band_offsets[band] / self.peak
        if self.model.denoising_stage is not None:  # on the whole window: its halo is in it
            with torch.no_grad():
                x = torch.from_numpy(x_hat + np.float32(offset))[None, None]
                x_hat = self.model.restore(x)[0, 0].numpy() - np.float32(offset)
        return x_hat[oy : oy + ph, ox : ox + pw] * self.peak + h.band_offsets[band]


def to_dtype(pixels: np.ndarray, dtype: str, bit_depth: int) -> np.ndarray:
    info = np.iinfo(dtype)
    hi = min(info.max, 2**bit_depth - 1) if info.min == 0 else info.max
    return np.clip(np.rint(pixels), info.min, hi).astype(dtype)


def open_decoder(
    data: bytes | StreamReader,
    model: str | None = None,
    allow_damaged: bool = False,
    synthesis: ArrayFn | None = None,
) -> Decoder:
    """Parse the header, find the model the stream was made with, return a :class:`Decoder`."""
    reader = data if isinstance(data, StreamReader) else StreamReader(data)
    if model is not None:
        net, info = load_model(model)
        if info.model_id != reader.header.model_id:
            net, info = find_model_by_id(reader.header.model_id, [info.path])
    else:
        net, info = find_model_by_id(reader.header.model_id)
    return Decoder(reader, net, allow_damaged, synthesis)


def decode_to_array(decoder: Decoder) -> DecodeResult:
    """Decode a whole stream into memory (bands, H, W)."""
    h = decoder.header
    out = np.empty((h.bands, h.height, h.width), dtype=h.dtype)
    nodata = h.nodata
    for b in range(h.bands):
        plane, masks = decoder.band_latents(b)
        mask_of = {(r, c): m for r, c, m in masks}
        for r in range(h.tiles_y):
            for c in range(h.tiles_x):
                y0, x0, ph, pw = h.tile_pixel_window(r, c)
                px = to_dtype(decoder.synthesise_tile(plane, b, r, c), h.dtype, h.bit_depth)
                if (r, c) in mask_of:
                    px[mask_of[(r, c)]] = nodata
                out[b, y0 : y0 + ph, x0 : x0 + pw] = px
    damaged = decoder.damaged
    if damaged:
        nodata = 0.0 if nodata is None else nodata
        for b, r, c in damaged:
            y0, x0, ph, pw = h.tile_pixel_window(r, c)
            out[b, y0 : y0 + ph, x0 : x0 + pw] = nodata
    return DecodeResult(out, h, list(damaged), nodata)
