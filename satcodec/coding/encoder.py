"""The encode path, top to bottom: raster → tiles → analysis → quantise → entropy code → stream.

1. :class:`Encoder` ``__init__``: check the tile size and the model's stride, take the
   injected ``analysis`` :class:`~satcodec.coding.transforms.Transform` (PyTorch by default)
   and the :class:`~satcodec.coding.entropy_models.EntropyModel`, compute each band's offset
   and texture in one pass (:func:`~satcodec.coding.normalisation.band_statistics`), and from
   the texture each band's normalisation peak (flag 0x0004);
2. :meth:`Encoder._analyse`: per tile, read its window widened by ``encode_halo(config)`` (stopping at
   the image border), replace nodata by the band offset and keep the tile's nodata mask,
   normalise, run the analysis once, keep the tile's latents (float, step 1);
3. rate control (:mod:`satcodec.coding.rate_control`) picks the quantisation step from the
   target (``bpp``, ``max_bpp``) on :meth:`Encoder.estimated_bits`, or
   :func:`~satcodec.coding.rate_control.step_for_quality` maps ``quality`` to it;
4. :meth:`Encoder.encode`: the step to Q16.16 (:func:`satcodec.bitstream.quant_step_to_q16`);
   per tile :meth:`Encoder.quantise` (symbols, the entropy model's ``fit`` indices), the
   entropy model's ``encode``, :func:`~satcodec.coding.framing.pack_payload` with the mask;
   :func:`satcodec.bitstream.write_stream` frames header and tile records.

Tiles bound memory and confine errors; they are not a visible grid (the decoder synthesises
each tile's latents widened by ``decode_halo`` latents, :mod:`satcodec.coding.decoder`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from satcodec.bitstream import (
    SUPPORTED_DOWNSAMPLING,
    StreamHeader,
    TileRecord,
    quant_step_to_q16,
    spectral_problem,
    write_stream,
)
from satcodec.codec.config import DOWNSAMPLING, encode_halo, encoder_macs
from satcodec.codec.registry import ModelInfo, ModelWeights, list_models, torch_module
from satcodec.coding import rate_control
from satcodec.coding.entropy_models import (
    DEFAULT_ENTROPY_MODEL,
    EntropyModel,
    entropy_model_for,
)
from satcodec.coding.framing import pack_payload
from satcodec.coding.normalisation import (
    band_statistics,
    check_normalisation,
    max_peak_shift_down,
    peak_bits_for_texture,
    peaks_of_bits,
    step_scales_of_bits,
)
from satcodec.coding.parallel import ordered_map, resolve_workers, torch_threads
from satcodec.coding.rate_control import MAX_STEP, MIN_STEP
from satcodec.coding.spectral import SpectralTransform, component_reader
from satcodec.coding.transforms import TorchTransform, Transform
from satcodec.entropy.quantiser import step_deadzone
from satcodec.errors import ConfigError

if TYPE_CHECKING:
    from satcodec.codec.models import ReducedVAE

DEFAULT_TILE = 512
# rate control estimates tiles of at least this many latent rows from every other row
ESTIMATE_ROWS_MIN = 16

WindowReader = Callable[[int, int, int, int, int], np.ndarray]  # (band, y0, x0, h, w) -> (h, w)


class TileWindow(NamedTuple):
    """Where the analysis reads one tile: the window (pixels, clipped to the latent grid) and
    the tile's offset and size inside it."""

    row: int
    col: int
    y0: int
    x0: int
    height: int
    width: int
    tile_y: int  # the tile's first row inside the window (a multiple of the stride)
    tile_x: int
    tile_h: int  # the tile's size in pixels (smaller at the right and bottom edges)
    tile_w: int


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
    """Rounded mean of each band over valid pixels, computed in row blocks (bounded memory);
    the encoder gets them with the bands' texture in one pass (:func:`band_statistics`)."""
    return band_statistics(read, bands, height, width, nodata)[0]


def require_stream_stride(model: ReducedVAE | ModelWeights) -> None:
    """Refuse, before coding anything, a model whose latent stride the bitstream cannot carry."""
    if model.config.downsampling not in SUPPORTED_DOWNSAMPLING:
        raise ConfigError(
            f"this model has stride-{model.config.downsampling} latents; the bitstream carries "
            f"strides {', '.join(map(str, SUPPORTED_DOWNSAMPLING))} only"
        )


class Encoder:
    """Compute tile latents once, then quantise and entropy-code them at any step."""

    def __init__(
        self,
        model: ReducedVAE | ModelWeights,
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
        analysis: Transform | None = None,
        channel_context: bool | None = None,
        entropy_model: EntropyModel | None = None,
        workers: int = 1,
        max_held_tiles: int = 128,
        spectral: SpectralTransform | None = None,
        normalisation: str = "texture",
        deadzone: float | None = None,
    ) -> None:
        """``workers``: threads analysing and coding tiles in parallel (reading stays in the
        calling thread; the stream is byte-identical for any count). ``max_held_tiles``: above
        this many tiles the encoder keeps only the rate search's sample of latents and
        analyses the other tiles again in each coding pass (``read`` must then stay valid
        until :meth:`encode` is done; the stream is the same). ``analysis``: the analysis :class:`Transform` (default: the model's, in PyTorch;
        ``satcodec.export.runtime.make_transform`` builds onnxruntime / TensorRT ones).

        ``entropy_model``: the :class:`EntropyModel` the tiles are coded with (default:
        :class:`ChannelContextLaplace`); ``channel_context=False`` is a shorthand for
        :class:`PerChannelLaplace` (streams readers before flag 0x0001 decode).

        ``spectral``: code the components of this transform across the bands instead of the
        bands (:mod:`satcodec.coding.spectral`, flag 0x0002); ``read`` still reads bands.

        ``normalisation``: ``"texture"`` divides each band by the peak that brings its texture
        to the amplitude the models code best (:mod:`satcodec.coding.normalisation`; flag
        0x0004 when a band's peak differs from its bit depth's), ``"bit-depth"`` by
        ``2**bit_depth - 1`` as streams before flag 0x0004. Joint (denoising) models always
        use the bit depth's: their noise model is in those units.

        ``deadzone``: symbols ``sign(y) rint(|y|/step - deadzone)`` (in steps, an encoder-only
        choice: the stream format and the decoder are unchanged) at every step; None: codec
        models get :func:`step_deadzone` of each band's step (-0.06 to 0.12: 0-5 % fewer bits
        at equal PSNR), joint models, where it was not measured, plain rounding (0, the
        quantiser of the streams before it).
        """
        if tile % DOWNSAMPLING or not 64 <= tile <= 8192:
            raise ConfigError(f"tile size must be a multiple of 16 between 64 and 8192, got {tile}")
        if model.config.bands != 1:
            raise ConfigError("only single-band models are supported; bands are coded one by one")
        require_stream_stride(model)
        self.model, self.info = model, info
        self.analysis: Transform = analysis or TorchTransform(torch_module(model), "analysis")
        self.height, self.width, self.bands = height, width, bands
        self.dtype, self.bit_depth, self.nodata = dtype, bit_depth, nodata
        self.tile = tile
        self.entropy_model: EntropyModel = entropy_model_for(
            entropy_model
            if entropy_model is not None
            else (DEFAULT_ENTROPY_MODEL if channel_context is None else channel_context)
        )
        self.metadata = metadata or {}
        self.workers = resolve_workers(workers)
        if deadzone is None:
            codec = info is None or info.meta.get("kind", "codec") == "codec"
            deadzone = None if codec else 0.0
        elif isinstance(deadzone, bool) or not isinstance(deadzone, (int, float)):
            raise ConfigError(f"deadzone must be a number of steps, got {deadzone!r}")
        elif not -0.5 < deadzone < 0.5:
            raise ConfigError(f"deadzone must be in (-0.5, 0.5) steps, got {deadzone}")
        self.deadzone: float | None = None if deadzone is None else float(deadzone)
        """The quantiser's deadzone in steps; None: :func:`step_deadzone` of each step."""
        self.spectral = spectral
        check_normalisation(normalisation)
        self.band_peak_bits: tuple[int, ...] | None = None
        self._read_mask: WindowReader | None = None
        if spectral is not None:
            kind = info.meta.get("kind", "codec")
            if kind != "codec":
                # a joint model removes signal-dependent sensor noise from *bands*; components
                # mix the bands' noise and levels, which it never saw
                raise ConfigError(
                    f"model {info.name} is a {kind} model, trained on bands: a spectral "
                    "transform codes components; use a codec model (satcodec models)"
                )
            if spectral.bands != bands:
                raise ConfigError(
                    f"the spectral transform is for {spectral.bands} bands, the raster has {bands}"
                )
            problem = spectral_problem(spectral.to_json(), bands)
            if problem is not None:  # before the analysis, not when the header is built
                raise ConfigError(f"spectral transform: {problem}")
            read, self._read_mask = component_reader(read, spectral, nodata)
            # components are zero-mean, each normalised by its own range's peak and
            # quantised at a step scaled to match (the same step in sensor units)
            self.peaks = spectral.peaks
            self.step_scales = spectral.step_scales
            self.offsets = [0] * bands
        else:
            self.offsets, laplacians = band_statistics(read, bands, height, width, nodata)
            bits = [bit_depth] * bands
            kind = info.meta.get("kind", "codec") if info is not None else "codec"
            if normalisation == "texture" and kind == "codec":
                down = max_peak_shift_down(model.config.encoder_activation)
                bits = [peak_bits_for_texture(lap, bit_depth, down) for lap in laplacians]
            if bits != [bit_depth] * bands:  # else no flag: the stream of the bit depth's peak
                self.band_peak_bits = tuple(bits)
            self.peaks = peaks_of_bits(bits)
            self.step_scales = step_scales_of_bits(bits)
        self.tiles_y = math.ceil(height / tile)
        self.tiles_x = math.ceil(width / tile)
        n = self.bands * self.tiles_y * self.tiles_x
        self.n_tiles = n
        self.sample = rate_control.sample_stride(n)
        # small scenes keep every tile's latents (the rate search and every coding pass reuse
        # them); large ones keep only the rate search's sample and analyse the other tiles
        # again in each coding pass, streaming: memory stays bounded by the sample
        self.streaming = n > max_held_tiles
        self._read = read if self.streaming else None
        self._progress = progress
        wanted = range(0, n, self.sample) if self.streaming else None
        self.latent_tiles = list(self._analyse(read, progress, wanted))

    @property
    def quality_step_scale(self) -> float:
        """What a ``quality``'s step is multiplied by in this stream: with band peaks (flag
        0x0004) ``2**(bit_depth - max(bits))``, so that a quality quantises at the same step in
        sensor units whichever normalisation the bands got; else 1."""
        if self.band_peak_bits is None:
            return 1.0
        return float(2.0 ** (self.bit_depth - max(self.band_peak_bits)))

    @property
    def channel_context(self) -> bool:
        """The header flag of the entropy model this encoder codes with."""
        return self.entropy_model.flag

    # --- 1. analysis ----------------------------------------------------------------------------
    def tile_windows(self) -> list[TileWindow]:
        """The pixel window the analysis reads for each tile of a band, in raster order.

        The window stops at the image border, where the convolutions' zero padding applies
        as it did in training (the decoder's synthesis stops at the latent grid's edge the
        same way); only the last partial latent row/column is completed by edge replication.
        Reading replicated pixels beyond the border instead gave the synthesis border latents
        it was never trained on: an error floor at the image edges (up to ~350 DN on a 12-bit
        scene, capping PSNR near 54 dB on a 500x500 image whatever the rate)."""
        T, halo, stride = self.tile, encode_halo(self.model.config), self.model.config.downsampling
        grid_h = math.ceil(self.height / stride) * stride
        grid_w = math.ceil(self.width / stride) * stride
        out = []
        for r in range(self.tiles_y):
            for c in range(self.tiles_x):
                y0, x0 = r * T, c * T
                th, tw = min(T, self.height - y0), min(T, self.width - x0)
                lh, lw = math.ceil(th / stride), math.ceil(tw / stride)
                wy0, wx0 = max(0, y0 - halo), max(0, x0 - halo)
                wy1 = min(grid_h, y0 + lh * stride + halo)
                wx1 = min(grid_w, x0 + lw * stride + halo)
                out.append(
                    TileWindow(r, c, wy0, wx0, wy1 - wy0, wx1 - wx0, y0 - wy0, x0 - wx0, th, tw)
                )
        return out

    def _tile_order(self) -> list[tuple[int, TileWindow]]:
        """(band, window) of every tile in stream order: band-major, raster order within."""
        windows = self.tile_windows()
        return [(b, w) for b in range(self.bands) for w in windows]

    def _analyse(
        self,
        read: WindowReader,
        progress: Callable[[int, int], None] | None,
        wanted: Iterable[int] | None = None,
    ) -> Iterator[LatentTile]:
        """The latents of every tile (band-major, raster order), or of the flat tile indices
        in ``wanted`` (increasing)."""
        order = self._tile_order()
        todo = [order[i] for i in wanted] if wanted is not None else order
        total = len(todo)
        with torch_threads(1 if self.workers > 1 else None):
            items = self._prepared(read, todo)
            for done, tile in enumerate(ordered_map(self._analyse_one, items, self.workers), 1):
                yield tile
                if progress:
                    progress(done, total)

    def _prepared(
        self, read: WindowReader, todo: Iterable[tuple[int, TileWindow]]
    ) -> Iterator[tuple[int, TileWindow, np.ndarray, np.ndarray | None]]:
        """Normalised analysis inputs, read in the calling thread (GDAL datasets are not
        thread-safe)."""
        for b, w in todo:
            raw = read(b, w.y0, w.x0, w.height, w.width).astype(np.float32)
            oy, ox = w.tile_y, w.tile_x  # multiples of the stride
            mask = None
            if self.nodata is not None:
                if self._read_mask is not None:
                    # components: tile k carries band k's mask; the reader already filled
                    # the bands' nodata pixels (the component there still serves other bands)
                    nd = self._read_mask(b, w.y0, w.x0, w.height, w.width)
                else:
                    nd = raw == np.float32(self.nodata)
                    raw[nd] = self.offsets[b]  # nodata costs ~0 bits and does not ring
                inner = nd[oy : oy + w.tile_h, ox : ox + w.tile_w]
                mask = inner.copy() if inner.any() else None
            x = ((raw - self.offsets[b]) / self.peaks[b])[None, None]
            yield b, w, np.ascontiguousarray(x, dtype=np.float32), mask

    def _analyse_one(
        self, item: tuple[int, TileWindow, np.ndarray, np.ndarray | None]
    ) -> LatentTile:
        b, w, x, mask = item
        stride = self.model.config.downsampling
        y = self.analysis(x)[0]
        ly, lx = w.tile_y // stride, w.tile_x // stride
        lh, lw = math.ceil(w.tile_h / stride), math.ceil(w.tile_w / stride)
        lat = np.array(y[:, ly : ly + lh, lx : lx + lw], dtype=np.float32)
        return LatentTile(b, w.row, w.col, lat, mask)

    # --- 2. quantisation and the rate estimate ---------------------------------------------------
    @property
    def pixels(self) -> int:
        return self.height * self.width * self.bands

    def quantise(
        self, lat: np.ndarray, step: float, model: EntropyModel | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Symbols and the side indices sent with them, fitted by ``model`` (default: the
        entropy model this encoder codes with)."""
        return (model or self.entropy_model).quantise_and_fit(lat, step, self.deadzone_at(step))

    def deadzone_at(self, step: float) -> float:
        """The deadzone (in steps) this encoder quantises with at model-space ``step``."""
        return step_deadzone(step) if self.deadzone is None else self.deadzone

    def estimated_bits(
        self, step: float, sample: int = 1, model: EntropyModel | bool | None = None
    ) -> float:
        """Coded size at ``step`` estimated from every ``sample``-th tile's latents (no coding;
        :meth:`EntropyModel.estimate_bits_at_step`; every other latent row of tiles of
        ``ESTIMATE_ROWS_MIN`` rows or more), side information included.

        ``model`` picks the entropy model estimated (an :class:`EntropyModel` or its flag;
        default: the one this encoder codes with)."""
        em = self.entropy_model if model is None else entropy_model_for(model)
        # held tiles: every sample-th; streaming: the held tiles are that sample already
        tiles = self.latent_tiles if self.streaming else self.latent_tiles[::sample]

        def tile_bits(t: LatentTile) -> float:
            lat = t.latents
            rows = lat.shape[1]
            step_t = step * self.step_scales[t.band]
            if rows >= ESTIMATE_ROWS_MIN:  # every other latent row: half the work, and
                # within ~0.5 % of the whole tile's estimate on real scenes (the channel
                # context is across channels, so rows are independent samples)
                half = lat[:, ::2]
                dz = self.deadzone_at(step_t)
                data = em.estimate_bits_at_step(half, step_t, dz) * rows / half.shape[1]
            else:
                data = em.estimate_bits_at_step(lat, step_t, self.deadzone_at(step_t))
            return data + 8 * (lat.shape[0] + 32)

        bits = sum(ordered_map(tile_bits, tiles, self.workers))  # in order: the same sum
        return bits * self.n_tiles / len(tiles)

    def step_for_bpp(self, bpp: float) -> float:
        """:func:`satcodec.coding.rate_control.step_for_bpp` on this encoder."""
        return rate_control.step_for_bpp(self, bpp)

    # --- 3. entropy coding and the stream --------------------------------------------------------
    def encode(self, step: float) -> bytes:
        """The stream at quantisation ``step`` (clamped to [MIN_STEP, MAX_STEP], then rounded
        to the Q16.16 step the header carries: the decoder sees exactly that step)."""
        q16 = quant_step_to_q16(min(max(step, MIN_STEP), MAX_STEP))
        step = q16 / 65536
        em = self.entropy_model
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
            channel_context=em.flag,
            spectral_transform=None if self.spectral is None else self.spectral.to_json(),
            band_peak_bits=self.band_peak_bits,
        )

        def code(t: LatentTile) -> TileRecord:
            symbols, indices = self.quantise(t.latents, step * self.step_scales[t.band], em)
            payload = pack_payload(em.encode(symbols, indices), t.nodata_mask)
            return TileRecord(t.band, t.row, t.col, indices.tobytes(), payload)

        if not self.streaming:
            return write_stream(header, list(ordered_map(code, self.latent_tiles, self.workers)))

        # streaming: the held sample is coded from its latents, every other tile is read and
        # analysed again, then coded, in one ordered pass (memory: the tiles in flight)
        held = dict(zip(range(0, self.n_tiles, self.sample), self.latent_tiles, strict=True))
        order = self._tile_order()
        read = self._read
        if read is None:
            raise ConfigError("this encoder's reader is closed: encode before closing it")

        def items() -> Iterator[Any]:
            fresh = self._prepared(read, (bw for i, bw in enumerate(order) if i not in held))
            for i in range(self.n_tiles):
                yield held[i] if i in held else next(fresh)

        def analyse_and_code(item: Any) -> TileRecord:
            return code(item if isinstance(item, LatentTile) else self._analyse_one(item))

        with torch_threads(1 if self.workers > 1 else None):
            records = []
            for done, rec in enumerate(ordered_map(analyse_and_code, items(), self.workers), 1):
                records.append(rec)
                if self._progress:
                    self._progress(done, self.n_tiles)
        return write_stream(header, records)

    def encode_at_bpp(
        self, bpp: float, never_exceed: bool = False, tolerance: float = 0.02
    ) -> bytes:
        """:func:`satcodec.coding.rate_control.encode_at_bpp` on this encoder."""
        return rate_control.encode_at_bpp(self, bpp, never_exceed, tolerance)


def nominal_bpp_range(meta: dict[str, Any]) -> tuple[float, float]:
    """Rates a model serves by design: its card's ``bpp_range``, else one octave either side
    of its ``native_bpp`` (what rate control's step scaling covers well), else any."""
    if "bpp_range" in meta:
        lo, hi = meta["bpp_range"]
        return float(lo), float(hi)
    if "native_bpp" in meta:
        n = float(meta["native_bpp"])
        return n / 2, n * 2
    return 0.0, math.inf


def choose_model(
    bpp: float | None,
    models: Sequence[ModelInfo] | None = None,
    max_encoder_macs: float | None = None,
) -> str:
    """The model (of ``models``, default: the shipped ones) expected to do best at ``bpp``.

    Uses each model card's measured rate–distortion curve (``rd``: [bpp, PSNR] on held-out
    scenes), interpolated in log-rate, among the models whose nominal range
    (:func:`nominal_bpp_range`: one octave either side of the native rate) and curve both
    cover ``bpp``; then among those whose nominal range covers it (a target just past every
    card's last point); then among those whose curve covers it; then any. The nominal range
    comes first because the cards measure two pan scenes: a model stretched beyond an octave
    of its native rate can win there and lose on other sensors (at 1 bpp the 0.4-bpp rung
    won the cards by 0.15 dB and lost 6 % of rate on the multispectral bands:
    ``bench/results/rd.md`` history). Falls back to the nearest native rate when cards lack
    curves.
    ``max_encoder_macs`` keeps only models whose analysis costs at most that many MAC per
    pixel (a board's compute budget); the narrow-analysis models of ``satcodec tune-encoder``
    (card field ``encoder_only``) are candidates only under such a budget. Without ``bpp``
    (fixed quality): the default model, or under a budget that leaves it out, the model
    expected to do best at the default's native rate.
    """
    models = list_models() if models is None else list(models)
    offered = models
    if max_encoder_macs is None:
        # the fast encoders (`satcodec tune-encoder`) trade a little rate for speed: chosen
        # only under a budget, so the default ladder stays the full encoders'
        models = [m for m in models if not m.meta.get("encoder_only")] or models
    else:
        if not max_encoder_macs > 0:
            raise ConfigError(f"the encoder budget must be positive, got {max_encoder_macs}")
        fits = [m for m in models if encoder_macs(m.config) <= max_encoder_macs]
        if models and not fits:
            cheapest = min(encoder_macs(m.config) for m in models)
            raise ConfigError(
                f"no model's analysis fits {max_encoder_macs:g} MAC/pixel "
                f"(the cheapest takes {cheapest:.0f})"
            )
        models = fits
    if not models:
        raise ConfigError("no shipped model found; pass --model PATH")
    if bpp is None:
        default = next((m for m in models if m.meta.get("default")), None)
        if default is not None:
            return default.name
        if max_encoder_macs is None:
            return models[0].name
        # under a budget that leaves the default out: the best model at the default's own
        # operating point (not whichever name sorts first)
        home = next((m for m in offered if m.meta.get("default")), None)
        bpp = float(home.meta.get("native_bpp", 1.0)) if home is not None else 1.0

    def predicted(m: ModelInfo) -> tuple[int, float]:
        rd = m.meta.get("rd") or []
        if len(rd) < 2:
            return (0, -abs(math.log2(bpp / float(m.meta.get("native_bpp", 1.0)))))
        rates = [math.log2(r) for r, _ in rd]
        # cards hold real file rates, a hair off their targets (0.502 for 0.5): allow 3 %
        slack = math.log2(1.03)
        covered = rates[0] - slack <= math.log2(bpp) <= rates[-1] + slack
        lo, hi = nominal_bpp_range(m.meta)
        nominal = lo / 1.03 <= bpp <= hi * 1.03
        tier = 3 if covered and nominal else 2 if nominal else 1 if covered else 0
        return (tier, float(np.interp(math.log2(bpp), rates, [q for _, q in rd])))

    return max(models, key=predicted).name


__all__ = [
    "DEFAULT_TILE",
    "EncodeResult",
    "Encoder",
    "LatentTile",
    "WindowReader",
    "array_window_reader",
    "band_offsets_of",
    "choose_model",
    "nominal_bpp_range",
    "require_stream_stride",
    "step_deadzone",
]
