"""The decode path: stream → tiles' symbols → latents → synthesis (with halo) → pixels.

:meth:`Decoder.iter_tiles` decodes tile by tile in bounded memory (docs/bitstream.md, "Decoder
memory"), entropy-decoding each tile when a synthesis window first needs it (``_LatentWindow``);
:func:`decode_to_array` assembles a whole image from it. The entropy model comes from the
header (:func:`~satcodec.coding.entropy_models.entropy_model_for`); the synthesis is an injected
:class:`~satcodec.coding.transforms.Transform` (PyTorch by default).
"""

from __future__ import annotations

import bisect
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from satcodec.bitstream import StreamHeader, StreamReader
from satcodec.codec.config import decode_halo
from satcodec.codec.registry import (
    ModelInfo,
    ModelWeights,
    find_weights_by_id,
    load_weights,
    torch_module,
)
from satcodec.coding.entropy_models import EntropyModel, entropy_model_for
from satcodec.coding.framing import unpack_payload
from satcodec.coding.normalisation import peaks_of_bits, step_scales_of_bits
from satcodec.coding.parallel import ordered_map, resolve_workers, torch_threads
from satcodec.coding.spectral import SpectralTransform
from satcodec.coding.transforms import TorchTransform, Transform
from satcodec.errors import (
    BitstreamError,
    ConfigError,
    EntropyCodingError,
    HeaderLimitError,
    TileCorruptedError,
)

if TYPE_CHECKING:
    from satcodec.codec.models import ReducedVAE


@dataclass
class DecodeResult:
    array: np.ndarray  # (bands, H, W)
    header: StreamHeader
    damaged: list[tuple[int, int, int]] = field(default_factory=list)
    nodata: float | None = None


SYNTH_BLOCK = 64
"""Latents a side of the largest block the synthesis runs on (plus its halo): 512 px at stride
8, 1024 px at stride 16. A tile of at most this many latents a side is one window, as it always
was; a larger tile is synthesised block by block, each block widened by ``decode_halo`` latents
and cropped (as tiles are), so the synthesis's memory does not grow with the tile size."""

WINDOW_BUDGET = 256 << 20
"""Bytes of look-ahead latents the tile iterator keeps: tiles of the next tile rows, decoded
early for the halo of the current row. Beyond it they are cut to the strip the current row
needs and entropy-decoded again at their turn (slower, bounded)."""

MAX_STRIP_BYTES = 512 << 20
"""Refuse (``HeaderLimitError``) a band whose halo strips would exceed this, counted as int32:
``4 * C * latent_width * 3 * halo`` bytes. The tile iterator holds up to three strips of
``halo`` latent rows across the band's width; 512 MiB lets the shipped models' streams (96
channels, stride 8, halo 2) through up to 1 864 128 px wide."""

SYNTH_CACHE = 8  # synthesis outputs kept by window content: a constant area is computed once
_SYNTH_CACHE_BYTES = 16 << 20  # (only windows up to this output size are cached)

Rect = tuple[int, int, int, int]  # latent rows y0..y1, columns x0..x1 (half-open)


class DecodedTile(NamedTuple):
    """One decoded tile, as :meth:`Decoder.iter_tiles` yields it."""

    band: int
    row: int
    col: int
    pixels: np.ndarray  # (h, w): the stream's dtype, nodata applied; float32 with as_float
    nodata_mask: np.ndarray | None  # bool (h, w), True where nodata; None: no nodata pixel
    damaged: bool  # not decodable: pixels are the fill value (nodata, or 0 without one)


def _compact(sym: np.ndarray) -> np.ndarray:
    """The smallest of int8 / int16 / int32 holding every value of ``sym`` (quantised latents
    are small: held latents usually cost 1 byte instead of 4)."""
    if sym.size == 0:
        return sym.astype(np.int8)
    lo, hi = int(sym.min()), int(sym.max())
    for t in (np.int8, np.int16):
        info = np.iinfo(t)
        if info.min <= lo and hi <= info.max:
            return sym.astype(t)
    return sym


def _intersect(a: Rect, b: Rect) -> Rect | None:
    y0, y1, x0, x1 = max(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), min(a[3], b[3])
    return (y0, y1, x0, x1) if y0 < y1 and x0 < x1 else None


def _contains(a: Rect, b: Rect) -> bool:
    return a[0] <= b[0] and b[1] <= a[1] and a[2] <= b[2] and b[3] <= a[3]


def _out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    msg = str(exc).lower()  # torch's allocator failures are RuntimeErrors
    return isinstance(exc, RuntimeError) and ("alloc" in msg or "out of memory" in msg)


class _Piece(NamedTuple):
    rect: Rect
    data: np.ndarray  # (C, y1 - y0, x1 - x0), int8/int16/int32


class _LatentWindow:
    """The latents of one band that the tile iterator still needs, as pieces of tiles.

    A tile is entropy-decoded when a synthesis window first needs it (for an earlier tile's
    halo, or for itself). After each block row the pieces are cut to what later windows need,
    so what is held is the current tile, halo strips of its neighbours and of the tile rows
    above and below, and the look-ahead tiles of the next rows (up to ``budget`` bytes: beyond,
    they are cut to the strip the current row needs and decoded again at their turn).
    """

    def __init__(self, decoder: Decoder, band: int, budget: int) -> None:
        h = decoder.header
        self.dec, self.band, self.budget = decoder, band, budget
        self.L = h.tile_size // h.downsampling
        self.LH, self.LW, self.C = h.latent_height, h.latent_width, h.latent_channels
        self.halo = decode_halo(decoder.model.config)
        self.pieces: dict[tuple[int, int], list[_Piece]] = {}
        self.held = 0  # bytes of all pieces
        self.zero: set[tuple[int, int]] = set()  # damaged tiles: zeros, never decoded again
        self.masks: dict[tuple[int, int], np.ndarray] = {}  # packed, until the tile is yielded
        self.pos = (0, 0)  # the tile being synthesised; rows below it are look-ahead
        self.decodes = 0

    def tile_rect(self, r: int, c: int) -> Rect:
        L = self.L
        return r * L, min((r + 1) * L, self.LH), c * L, min((c + 1) * L, self.LW)

    def around(self, rect: Rect) -> Iterator[tuple[int, int]]:
        """Tiles intersecting ``rect``, in raster order."""
        L = self.L
        for r in range(rect[0] // L, (rect[1] - 1) // L + 1):
            for c in range(rect[2] // L, (rect[3] - 1) // L + 1):
                yield r, c

    def widen(self, rect: Rect) -> Rect:
        h = self.halo
        return (
            max(0, rect[0] - h),
            min(self.LH, rect[1] + h),
            max(0, rect[2] - h),
            min(self.LW, rect[3] + h),
        )

    def _set(self, key: tuple[int, int], pieces: list[_Piece]) -> None:
        self.held -= sum(p.data.nbytes for p in self.pieces.pop(key, ()))
        if pieces:
            self.pieces[key] = pieces
            self.held += sum(p.data.nbytes for p in pieces)

    def lookahead_bytes(self) -> int:
        row = self.pos[0]
        return sum(p.data.nbytes for k, ps in self.pieces.items() if k[0] > row for p in ps)

    def _decode(self, r: int, c: int) -> _Piece | None:
        sym, mask, damaged = self.dec._decode_tile(self.band, r, c)
        self.decodes += 1
        if damaged:
            self.zero.add((r, c))
            self._set((r, c), [])
            return None
        piece = _Piece(self.tile_rect(r, c), _compact(sym))
        del sym
        self._set((r, c), [piece])
        if mask is not None and (r, c) >= self.pos:
            self.masks[(r, c)] = np.packbits(mask)
        return piece

    def mask(self, r: int, c: int, shape: tuple[int, int]) -> np.ndarray | None:
        """Tile (r, c)'s nodata mask, forgotten from here on."""
        packed = self.masks.pop((r, c), None)
        if packed is None:
            return None
        return np.unpackbits(packed, count=shape[0] * shape[1]).reshape(shape).view(bool)

    def fetch(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """The band's latents [y0, y1) x [x0, x1) as int32 (C, y1 - y0, x1 - x0)."""
        out = np.zeros((self.C, y1 - y0, x1 - x0), np.int32)
        decoded = False
        for r, c in self.around((y0, y1, x0, x1)):
            if (r, c) in self.zero:
                continue
            need = _intersect((y0, y1, x0, x1), self.tile_rect(r, c))
            assert need is not None
            piece = next((p for p in self.pieces.get((r, c), ()) if _contains(p.rect, need)), None)
            if piece is None:
                piece, decoded = self._decode(r, c), True
                if piece is None:  # damaged: zeros
                    continue
            (a0, a1, b0, b1), (p0, _, q0, _) = need, piece.rect
            out[:, a0 - y0 : a1 - y0, b0 - x0 : b1 - x0] = piece.data[
                :, a0 - p0 : a1 - p0, b0 - q0 : b1 - q0
            ]
        if decoded and self.held > self.budget and self.lookahead_bytes() > self.budget:
            # keep of the look-ahead tiles only what the rest of the current row needs
            r = self.pos[0]
            keep = (0, min(self.LH, (r + 1) * self.L + self.halo), 0, self.LW)
            for key in [k for k in self.pieces if k[0] > r]:
                self._cut(key, [keep])
        return out

    def _cut(self, key: tuple[int, int], rects: list[Rect]) -> None:
        """Keep of tile ``key`` only its parts inside ``rects``."""
        kept: list[_Piece] = []
        for p in self.pieces.get(key, ()):
            for rect in rects:
                part = _intersect(p.rect, rect)
                if part is None:
                    continue
                if part == p.rect:
                    kept.append(p)
                    continue
                (a0, a1, b0, b1), (p0, _, q0, _) = part, p.rect
                kept.append(_Piece(part, p.data[:, a0 - p0 : a1 - p0, b0 - q0 : b1 - q0].copy()))
        kept.sort(key=lambda p: -(p.rect[1] - p.rect[0]) * (p.rect[3] - p.rect[2]))
        unique: list[_Piece] = []
        for p in kept:
            if not any(_contains(u.rect, p.rect) for u in unique):
                unique.append(p)
        self._set(key, unique)

    def trim(self, row: int, col: int, next_y: int, tiles_y: int, tiles_x: int) -> None:
        """After the block rows of tile (row, col) above latent row ``next_y``: cut the tiles
        its windows touched to what later windows (of this tile, this row, later rows) need."""
        h = self.halo
        t0, t1, s0, s1 = tile = self.tile_rect(row, col)
        rects: list[Rect] = []
        if next_y < t1:  # the rest of this tile
            rects.append(self.widen((next_y, t1, s0, s1)))
        if col + 1 < tiles_x:  # the rest of this tile row
            rects.append((max(0, t0 - h), min(self.LH, t1 + h), max(0, s1 - h), self.LW))
        if row + 1 < tiles_y:  # the tile rows below
            rects.append((max(0, t1 - h), self.LH, 0, self.LW))
        for key in self.around(self.widen(tile)):
            if key in self.pieces:
                self._cut(key, rects)


class Decoder:
    """Entropy-decode tiles' latents, then synthesise tile windows with their halo.

    :meth:`iter_tiles` decodes tile by tile in bounded memory (see "Decoder memory" in
    docs/bitstream.md); :meth:`band_latents` + :meth:`synthesise_tile` is the whole-band path.
    """

    def __init__(
        self,
        reader: StreamReader,
        model: ReducedVAE | ModelWeights,
        allow_damaged: bool = False,
        synthesis: Transform | None = None,
        info: ModelInfo | None = None,
        workers: int = 1,
    ) -> None:
        """``workers``: threads synthesising tiles' blocks in parallel (entropy decoding and
        the latent window stay in the calling thread; output order and pixels are the same
        for any count). ``synthesis``: the synthesis :class:`Transform` (default: the model's, in PyTorch;
        ``satcodec.export.runtime.make_transform`` builds onnxruntime / TensorRT ones).
        The entropy model is the header's (its ``channel_context`` flag). ``info``: the
        model's registry entry (name, kind), when the caller looked it up."""
        self.reader = reader
        self.info = info
        self.synthesis: Transform = synthesis or TorchTransform(torch_module(model), "synthesis")
        self.header = h = reader.header
        self.entropy_model: EntropyModel = entropy_model_for(h)
        self.model = model
        if model.config.denoise_channels:
            # the denoising stage runs in PyTorch: build it here, before tile threads start
            # (once, and with PyTorch loaded so torch_threads can limit its threads)
            torch_module(model)
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
        self.damaged: list[tuple[int, int, int]] = []  # sorted (band, row, col)
        self.step = h.quant_step
        # flag 0x0002: the coded bands are components, normalised by their own peak
        self.spectral = (
            None
            if h.spectral_transform is None
            else SpectralTransform.from_json(h.spectral_transform)
        )
        # per coded band: the normalisation peak and the dequantisation step
        if self.spectral is None:
            # flag 0x0004: each band's own peak, else the bit depth's
            bits = h.band_peak_bits or (h.bit_depth,) * h.bands
            self.peaks = peaks_of_bits(bits)
            self.steps = [self.step * k for k in step_scales_of_bits(bits)]
        else:
            self.peaks = self.spectral.peaks
            self.steps = [self.step * k for k in self.spectral.step_scales]
        self.synth_block = SYNTH_BLOCK
        self.window_budget = WINDOW_BUDGET
        self.max_strip_bytes = MAX_STRIP_BYTES
        self.tile_decodes = 0  # entropy decodings by iter_tiles (> tiles: look-ahead re-decoded)
        self._synth_cache: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._synth_lock = threading.Lock()
        self.workers = resolve_workers(workers)

    # --- entropy decoding ----------------------------------------------------------------------
    def _decode_tile(
        self, band: int, row: int, col: int
    ) -> tuple[np.ndarray, np.ndarray | None, bool]:
        """(symbols int32 (C, lh, lw), nodata mask or None, damaged). A damaged tile raises
        TileCorruptedError, or with ``allow_damaged`` is recorded and decodes as zeros."""
        h = self.header
        lh, lw = h.tile_latent_shape(row, col)
        _, _, ph, pw = h.tile_pixel_window(row, col)
        try:
            rec = self.reader.read_tile(band, row, col)
            entropy, mask = unpack_payload(rec.payload, ph, pw)
            if mask is not None and h.nodata is None:
                raise EntropyCodingError(
                    "tile carries a nodata mask but the stream declares no nodata value"
                )
            indices = np.frombuffer(rec.scale_indices, np.uint8)
            del rec
            symbols = self.entropy_model.decode(entropy, indices, (h.latent_channels, lh, lw))
            return symbols, mask, False
        except BitstreamError as exc:
            if not isinstance(exc, TileCorruptedError):
                exc = TileCorruptedError(
                    f"tile band {band} row {row} col {col} is damaged: {exc}", band, row, col
                )
            if not self.allow_damaged:
                raise exc from None
            if (band, row, col) not in self.damaged:
                bisect.insort(self.damaged, (band, row, col))
            return np.zeros((h.latent_channels, lh, lw), np.int32), None, True

    def _tile_symbols(self, band: int, row: int, col: int) -> tuple[np.ndarray, np.ndarray | None]:
        sym, mask, _ = self._decode_tile(band, row, col)
        return sym, mask

    def _memory_error(self, exc: BaseException, what: str) -> HeaderLimitError:
        h = self.header
        return HeaderLimitError(
            f"not enough memory to decode {what} ({h.tile_size}x{h.tile_size}-pixel tiles, "
            f"{h.latent_channels} latent channels; see Decoder memory in docs/bitstream.md): "
            + (f"{type(exc).__name__}: {exc}".splitlines() or [""])[0][:200]
        )

    def band_latents(self, band: int) -> tuple[np.ndarray, list[tuple[int, int, np.ndarray]]]:
        """All latents of one band as int32 (C, LH, LW) and the nodata masks of its tiles.

        Memory grows with the band (4 bytes a latent); :meth:`iter_tiles` does not."""
        h = self.header
        L = h.tile_size // h.downsampling
        try:
            plane = np.zeros((h.latent_channels, h.latent_height, h.latent_width), np.int32)
            masks = []
            for r in range(h.tiles_y):
                for c in range(h.tiles_x):
                    sym, mask = self._tile_symbols(band, r, c)
                    plane[:, r * L : r * L + sym.shape[1], c * L : c * L + sym.shape[2]] = sym
                    del sym
                    if mask is not None:
                        masks.append((r, c, mask))
        except (MemoryError, RuntimeError) as exc:
            if not _out_of_memory(exc):
                raise
            raise self._memory_error(exc, f"band {band}'s latent plane") from None
        return plane, masks

    # --- synthesis --------------------------------------------------------------------------------
    def _synthesis(self, window: np.ndarray) -> np.ndarray:
        """``self.synthesis``, with the last outputs kept by window content (a constant area,
        e.g. nodata or a decompression bomb, is synthesised once; the result is identical)."""
        key = (id(self.synthesis), window.shape, hashlib.blake2b(window, digest_size=16).digest())
        with self._synth_lock:  # tile workers share the cache
            hit = self._synth_cache.get(key)
            if hit is not None:
                self._synth_cache.move_to_end(key)
                return hit
        out = self.synthesis(window)
        if out.nbytes <= _SYNTH_CACHE_BYTES:
            with self._synth_lock:
                self._synth_cache[key] = out
                if len(self._synth_cache) > SYNTH_CACHE:
                    self._synth_cache.popitem(last=False)
        return out

    def _block_input(
        self,
        fetch: Callable[[int, int, int, int], np.ndarray],
        band: int,
        ly0: int,
        lx0: int,
        lh: int,
        lw: int,
    ) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        """The synthesis input of latents [ly0, ly0+lh) x [lx0, lx0+lw) widened by the halo
        (float32, a copy: the latent window may be trimmed once this returns), and where the
        block's pixels lie in its output (oy, ox, ph, pw)."""
        h = self.header
        halo, D = decode_halo(self.model.config), h.downsampling
        a0, b0 = max(0, ly0 - halo), max(0, lx0 - halo)
        a1, b1 = min(h.latent_height, ly0 + lh + halo), min(h.latent_width, lx0 + lw + halo)
        window = (fetch(a0, a1, b0, b1).astype(np.float32) * np.float32(self.steps[band]))[None]
        ph, pw = min(lh * D, h.height - ly0 * D), min(lw * D, h.width - lx0 * D)
        return np.ascontiguousarray(window), ((ly0 - a0) * D, (lx0 - b0) * D, ph, pw)

    def _block_output(
        self, window: np.ndarray, crop: tuple[int, int, int, int], band: int
    ) -> np.ndarray:
        """Pixels (float, sensor units) of one block from its :meth:`_block_input`: the part of
        the decoder that runs on tile worker threads."""
        h = self.header
        x_hat = self._synthesis(window)[0, 0]
        oy, ox, ph, pw = crop
        peak = self.peaks[band]
        offset = h.band_offsets[band] / peak
        if self.model.config.denoise_channels:  # on the whole window: its halo is in it
            import torch

            with torch.no_grad():
                x = torch.from_numpy(x_hat + np.float32(offset))[None, None]
                restored = torch_module(self.model).restore(x)
                x_hat = restored[0, 0].numpy() - np.float32(offset)
        return x_hat[oy : oy + ph, ox : ox + pw] * peak + h.band_offsets[band]

    def _synthesise_block(
        self,
        fetch: Callable[[int, int, int, int], np.ndarray],
        band: int,
        ly0: int,
        lx0: int,
        lh: int,
        lw: int,
    ) -> np.ndarray:
        """Pixels (float, sensor units) of latents [ly0, ly0+lh) x [lx0, lx0+lw), synthesised
        on that block widened by the halo; ``fetch(y0, y1, x0, x1)`` gives latents (C, ., .)."""
        window, crop = self._block_input(fetch, band, ly0, lx0, lh, lw)
        return self._block_output(window, crop, band)

    def _tile_pixels(
        self,
        fetch: Callable[[int, int, int, int], np.ndarray],
        band: int,
        row: int,
        col: int,
        block: int,
        convert: Callable[[np.ndarray], np.ndarray] = lambda px: px,
        after_block_row: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """One tile's pixels, synthesised in blocks of at most ``block`` latents a side (0: the
        whole tile at once); ``convert`` maps each block's float pixels to the output."""
        h = self.header
        D, L = h.downsampling, h.tile_size // h.downsampling
        ly0, lx0 = row * L, col * L
        lh, lw = h.tile_latent_shape(row, col)
        S = max(lh, lw) if block <= 0 else block
        out: np.ndarray | None = None
        for by in range(0, lh, S):
            for bx in range(0, lw, S):
                px = convert(
                    self._synthesise_block(
                        fetch, band, ly0 + by, lx0 + bx, min(S, lh - by), min(S, lw - bx)
                    )
                )
                if lh <= S and lw <= S:  # one block: the tile's own window
                    out = px
                    break
                if out is None:
                    _, _, ph, pw = h.tile_pixel_window(row, col)
                    out = np.empty((ph, pw), px.dtype)
                out[by * D : by * D + px.shape[0], bx * D : bx * D + px.shape[1]] = px
                del px
            if after_block_row is not None:
                after_block_row(ly0 + min(by + S, lh))
        assert out is not None
        return out

    def synthesise_tile(
        self, plane: np.ndarray, band: int, row: int, col: int, *, block: int | None = None
    ) -> np.ndarray:
        """Pixels (float, sensor units) of one tile from the band's latent plane.

        Synthesised in blocks of at most ``block`` latents a side (default
        ``self.synth_block``; 0: the whole tile in one window, memory growing with the tile)."""

        def fetch(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
            return plane[:, y0:y1, x0:x1]

        return self._tile_pixels(
            fetch, band, row, col, self.synth_block if block is None else block
        )

    # --- tile by tile, bounded memory ----------------------------------------------------------
    def memory_bound(self, *, as_float: bool = False) -> int:
        """Bytes :meth:`iter_tiles` may use beyond the process's base (Python, PyTorch, the
        model, the stream's bytes): the formula of docs/bitstream.md, "Decoder memory"."""
        h, cfg = self.header, self.model.config
        C, D, LH, LW = h.latent_channels, h.downsampling, h.latent_height, h.latent_width
        L = h.tile_size // D
        halo = decode_halo(cfg)
        n = min(L, LH) * min(L, LW)  # latents of the largest tile
        tile_px = min(h.tile_size, h.height) * min(h.tile_size, h.width)
        # one tile's entropy decoding: int32 symbols, their compact copy, per-channel
        # intermediates; the record, its payload and ANS words (each at most the stream)
        entropy = (6 * C + 64) * n + 3 * self.reader.stream_length
        if h.nodata is not None:
            entropy += 3 * tile_px  # its nodata mask, unpacked
        # latents held: two tile rows and three halo strips, or the budget-limited look-ahead
        # (twice the budget: this row's and the next) plus two whole tiles and the strips
        strips = 12 * halo * C * LW
        window = min(
            4 * C * LW * min(LH, 2 * L + 3 * halo),
            2 * self.window_budget + 8 * C * n + strips,
        )
        # one synthesis block (widened by the halo): activations (measured: ~3.3 bytes per
        # pixel and hidden channel), and as much again three times over for what the C
        # allocator keeps between blocks (glibc's adaptive mmap threshold: measured up to
        # ~2.5x on a 10000² scene); its output, the cached outputs
        side = (min(self.synth_block, L) + 2 * halo) * D
        width = max(cfg.hidden, cfg.refine_channels, cfg.denoise_channels)
        synthesis = 16 * width * side**2 + 4 * 4 * side**2 + SYNTH_CACHE * 4 * side**2
        # the tile being assembled (float32 with as_float), and its mask
        itemsize = 4 if as_float else np.dtype(h.dtype).itemsize
        pixels = itemsize * tile_px + (tile_px if h.nodata is not None else 0)
        if self.spectral is not None:
            # every component's latent window at once, its float tile, the inverse's output
            # (float32 and, converted, the stream's dtype)
            return (
                entropy
                + h.bands * (window + 4 * tile_px)
                + synthesis
                + h.bands * (4 * tile_px + pixels)
            )
        return entropy + window + synthesis + pixels

    def iter_tiles(
        self,
        bands: int | Iterable[int] | None = None,
        *,
        as_float: bool = False,
        fill: float | None = None,
    ) -> Iterator[DecodedTile]:
        """Decode tile by tile: yields a :class:`DecodedTile` ``(band, row, col, pixels,
        nodata_mask, damaged)`` per tile, band by band, in raster order within a band (a
        spectral stream, flag 0x0002: tile by tile in raster order, the bands of each tile).

        ``pixels``: (h, w) of the tile's window (``header.tile_pixel_window(row, col)``), in the
        stream's dtype, with nodata pixels set to the nodata value and damaged tiles to
        ``fill`` (default: the nodata value, 0 when the stream has none) -- ready to write;
        ``as_float``: the synthesis's float32 pixels (sensor units, neither rounded, clipped
        nor masked; damaged tiles filled as above).
        A damaged tile raises :class:`TileCorruptedError` when it is first needed (possibly
        as a neighbour's halo, before its own turn) unless ``allow_damaged``; then it is
        listed in ``self.damaged`` and its latents count as zeros for its neighbours.

        Memory stays bounded whatever the tile size and the number of tiles (docs/bitstream.md,
        "Decoder memory"); running out of memory raises HeaderLimitError, never MemoryError.
        The output is identical to ``band_latents`` + ``synthesise_tile``.
        """
        h = self.header
        if bands is None:
            bands = range(h.bands)
        elif isinstance(bands, (int, np.integer)):
            bands = [int(bands)]
        strips = 4 * h.latent_channels * h.latent_width * 3 * decode_halo(self.model.config)
        if strips > self.max_strip_bytes:
            raise HeaderLimitError(
                f"image is {h.width} pixels wide: decoding it tile by tile needs {strips >> 20} "
                f"MiB of halo strips, above this decoder's {self.max_strip_bytes >> 20} MiB "
                "(Decoder.max_strip_bytes; see Decoder memory in docs/bitstream.md)"
            )
        if fill is None:
            fill = 0 if h.nodata is None else h.nodata
        bands = list(bands)
        for b in bands:
            if not 0 <= b < h.bands:
                raise ConfigError(f"band {b} is outside 0..{h.bands - 1}")
        if self.spectral is not None:
            yield from self._iter_spectral(bands, as_float, fill)
            return
        for b in bands:
            window = _LatentWindow(self, b, self.window_budget)
            try:
                yield from self._iter_band(window, b, as_float, fill)
            except (MemoryError, RuntimeError) as exc:
                if not _out_of_memory(exc):
                    raise
                r, c = window.pos
                raise self._memory_error(exc, f"tile band {b} row {r} col {c}") from None
            finally:
                self.tile_decodes += window.decodes
                window.pieces.clear()

    def _iter_spectral(
        self, bands: list[int], as_float: bool, fill: float
    ) -> Iterator[DecodedTile]:
        """Flag 0x0002: every component decoded tile by tile in step (one latent window
        each), each tile's bands by the inverse transform; yields tile by tile, the
        requested bands of each. A tile damaged in any component is damaged in every band."""
        h, t = self.header, self.spectral
        assert t is not None
        windows = [_LatentWindow(self, k, self.window_budget) for k in range(h.bands)]
        per = [self._band_jobs(w, k, True, np.nan) for k, w in enumerate(windows)]

        def jobs() -> Iterator[tuple[int, tuple]]:
            """Tile by tile, component by component: each component's jobs of the tile."""
            its = [j for j, _ in per]
            for _r in range(h.tiles_y):
                for _c in range(h.tiles_x):
                    for k, it in enumerate(its):
                        for job in it:
                            yield k, job
                            if job[0] == "fill" or job[3][4]:  # the tile's last job
                                break

        def work(item: tuple[int, tuple]) -> tuple:
            k, job = item
            return per[k][1](job)

        # one pool for every component: tiles' blocks in flight stay 2 x workers
        with torch_threads(1 if self.workers > 1 else None):
            results = ordered_map(work, jobs(), self.workers)
            try:
                for _ in range(h.tiles_per_band):
                    tiles = [self._assemble_tile(k, results, True) for k in range(h.bands)]
                    yield from self._spectral_tile(tiles, bands, as_float, fill)
            except (MemoryError, RuntimeError) as exc:
                if not _out_of_memory(exc):
                    raise
                r, c = windows[0].pos
                raise self._memory_error(exc, f"tile row {r} col {c}") from None
            finally:
                for w in windows:
                    self.tile_decodes += w.decodes
                    w.pieces.clear()

    def _spectral_tile(
        self, tiles: list[DecodedTile], bands: list[int], as_float: bool, fill: float
    ) -> Iterator[DecodedTile]:
        h, t = self.header, self.spectral
        assert t is not None
        r, c = tiles[0].row, tiles[0].col
        if any(x.damaged for x in tiles):
            # every band of the tile is lost: list the tile in every band (as callers fill
            # the listed tiles)
            for k in range(h.bands):
                if (k, r, c) not in self.damaged:
                    bisect.insort(self.damaged, (k, r, c))
            px = np.full(tiles[0].pixels.shape, fill, np.float32 if as_float else h.dtype)
            for b in bands:
                yield DecodedTile(b, r, c, px.copy(), None, True)
            return
        masks = [x.nodata_mask for x in tiles]
        out = self.spectral_bands([x.pixels for x in tiles], masks, as_float)
        for b in bands:
            yield DecodedTile(b, r, c, out[b], masks[b], False)

    def spectral_bands(
        self, components: list[np.ndarray], masks: list[np.ndarray | None], as_float: bool
    ) -> list[np.ndarray]:
        """Flag 0x0002: one tile's bands from its components' synthesis (float, sensor
        units): the inverse transform, then (unless ``as_float``) the stream's dtype with
        band ``b``'s nodata pixels ``masks[b]`` (component tile b carries band b's mask)."""
        assert self.spectral is not None
        h = self.header
        x = self.spectral.inverse(np.stack(components))
        if as_float:
            return list(x)
        out = []
        for px, mask in zip(x, masks, strict=True):
            if np.isnan(px).any():
                px = np.nan_to_num(px, nan=0.0)
            px = to_dtype(px, h.dtype, h.bit_depth)
            if mask is not None:
                px[mask] = h.nodata
            out.append(px)
        return out

    def _iter_band(
        self, window: _LatentWindow, b: int, as_float: bool, fill: float
    ) -> Iterator[DecodedTile]:
        jobs, work = self._band_jobs(window, b, as_float, fill)
        with torch_threads(1 if self.workers > 1 else None):
            results = ordered_map(work, jobs, self.workers)
            for _ in range(self.header.tiles_per_band):
                yield self._assemble_tile(b, results, as_float)

    def _assemble_tile(self, b: int, results: Iterator[tuple], as_float: bool) -> DecodedTile:
        """One tile from its jobs' results, taken from ``results`` up to the tile's last."""
        h = self.header
        D = h.downsampling
        out: np.ndarray | None = None
        for kind, r, c, payload in results:
            if kind == "fill":
                return DecodedTile(b, r, c, payload, None, True)
            by, bx, n, px, last, mask = payload
            if n == 1:  # one block: the tile's own window
                out = px
            else:
                if out is None:
                    _, _, ph, pw = h.tile_pixel_window(r, c)
                    out = np.empty((ph, pw), px.dtype)
                out[by * D : by * D + px.shape[0], bx * D : bx * D + px.shape[1]] = px
            del px
            if last:
                assert out is not None
                if mask is not None and not as_float:
                    out[mask] = h.nodata
                return DecodedTile(b, r, c, out, mask, False)
        raise AssertionError("a tile's jobs ended before its last block")

    def _band_jobs(
        self, window: _LatentWindow, b: int, as_float: bool, fill: float
    ) -> tuple[Iterator[tuple], Callable[[tuple], tuple]]:
        """(jobs, work) of one band: the jobs generator runs in the calling thread, ``work``
        on the tile workers; a tile's jobs end with a "fill" job or its last block."""
        h = self.header
        L = h.tile_size // h.downsampling

        def convert(px: np.ndarray) -> np.ndarray:
            if as_float:
                return px
            if np.isnan(px).any():  # absurd steps or offsets (inf - inf): not a pixel value
                px = np.nan_to_num(px, nan=0.0)
            return to_dtype(px, h.dtype, h.bit_depth)

        def jobs() -> Iterator[tuple]:
            """In the calling thread, in raster order: entropy decoding (through the latent
            window), each block's synthesis input, trimming; a tile's last job carries its
            mask. ("fill", r, c, pixels) for a tile that is not synthesised."""
            for r in range(h.tiles_y):
                for c in range(h.tiles_x):
                    window.pos = (r, c)
                    _, _, ph, pw = h.tile_pixel_window(r, c)
                    own = window.tile_rect(r, c)
                    if (r, c) not in window.zero and not any(
                        _contains(p.rect, own) for p in window.pieces.get((r, c), ())
                    ):
                        window._decode(r, c)  # its own turn: damaged or not, known from here on
                    if (r, c) in window.zero:
                        # not synthesised (the whole-plane path overwrote it with the fill)
                        window.trim(r, c, own[1], h.tiles_y, h.tiles_x)
                        window.mask(r, c, (ph, pw))
                        px = np.full((ph, pw), fill, np.float32 if as_float else h.dtype)
                        yield ("fill", r, c, px)
                        continue
                    lh, lw = h.tile_latent_shape(r, c)
                    S = max(lh, lw) if self.synth_block <= 0 else self.synth_block
                    blocks = [(by, bx) for by in range(0, lh, S) for bx in range(0, lw, S)]
                    for k, (by, bx) in enumerate(blocks):
                        inp = self._block_input(
                            window.fetch,
                            b,
                            r * L + by,
                            c * L + bx,
                            min(S, lh - by),
                            min(S, lw - bx),
                        )
                        if bx + S >= lw:  # the end of a block row: its latents may go
                            window.trim(r, c, r * L + min(by + S, lh), h.tiles_y, h.tiles_x)
                        last = k == len(blocks) - 1
                        mask = window.mask(r, c, (ph, pw)) if last else None
                        yield ("block", r, c, (by, bx, len(blocks), inp, last, mask))

        def work(job: tuple) -> tuple:
            if job[0] == "fill":
                return job
            kind, r, c, (by, bx, n, (window_in, crop), last, mask) = job
            return (
                kind,
                r,
                c,
                (by, bx, n, convert(self._block_output(window_in, crop, b)), last, mask),
            )

        return jobs(), work


def to_dtype(pixels: np.ndarray, dtype: str, bit_depth: int) -> np.ndarray:
    info = np.iinfo(dtype)
    hi = min(info.max, 2**bit_depth - 1) if info.min == 0 else info.max
    return np.clip(np.rint(pixels), info.min, hi).astype(dtype)


def open_decoder(
    data: bytes | StreamReader,
    model: str | None = None,
    allow_damaged: bool = False,
    synthesis: Transform | None = None,
) -> Decoder:
    """Parse the header, find the model the stream was made with, return a :class:`Decoder`."""
    reader = data if isinstance(data, StreamReader) else StreamReader(data)
    net, _info = stream_model(reader.header, model)
    return Decoder(reader, net, allow_damaged, synthesis)


def stream_model(
    header: StreamHeader, model: str | None = None, model_paths: Sequence[Any] = ()
) -> tuple[ModelWeights, ModelInfo]:
    """The model a stream was made with: ``model`` (a name or path) if it has the header's
    model id, else the one with that id found beside it, among the installed models (shipped,
    joint, ``$SATCODEC_MODEL_PATH``) or in ``model_paths`` (extra weights files)."""
    extra = list(model_paths)
    if model is not None:
        weights = load_weights(model)
        if weights.info.model_id == header.model_id:
            return weights, weights.info
        extra = [weights.info.path, *extra]
    weights = find_weights_by_id(header.model_id, extra)
    return weights, weights.info


def decode_to_array(decoder: Decoder) -> DecodeResult:
    """Decode a whole stream into memory (bands, H, W), tile by tile (:meth:`Decoder.iter_tiles`):
    beyond the output array itself, memory stays bounded (docs/bitstream.md, "Decoder memory")."""
    h = decoder.header
    try:
        out = np.empty((h.bands, h.height, h.width), dtype=h.dtype)
    except MemoryError:
        size = h.bands * h.height * h.width * np.dtype(h.dtype).itemsize
        raise HeaderLimitError(
            f"not enough memory for the decoded image ({h.bands}x{h.height}x{h.width} "
            f"{h.dtype}, {size / 2**30:.1f} GiB); decode it to a file instead"
        ) from None
    for t in decoder.iter_tiles():
        y0, x0, ph, pw = h.tile_pixel_window(t.row, t.col)
        out[t.band, y0 : y0 + ph, x0 : x0 + pw] = t.pixels
    damaged = sorted(set(decoder.damaged))
    nodata = h.nodata
    if damaged and nodata is None:
        nodata = 0.0
    return DecodeResult(out, h, damaged, nodata)


__all__ = [
    "MAX_STRIP_BYTES",
    "SYNTH_BLOCK",
    "SYNTH_CACHE",
    "WINDOW_BUDGET",
    "DecodeResult",
    "DecodedTile",
    "Decoder",
    "decode_to_array",
    "open_decoder",
    "stream_model",
    "to_dtype",
]
