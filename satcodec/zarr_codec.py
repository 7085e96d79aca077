"""A numcodecs codec (``"satcodec"``): Zarr chunks compressed as ``.satc`` streams.

LOSSY: a chunk decodes to the codec's reconstruction, not to the original pixels (use it where
JPEG 2000 would do, not for data that must round-trip exactly). Every chunk is an independent
stream with its own header and CRCs, so a damaged chunk fails alone.

>>> import zarr
>>> from satcodec.zarr_codec import Satcodec
>>> z = zarr.create_array(store, shape=(4, 4096, 4096), chunks=(4, 1024, 1024), dtype="uint16",
...                       zarr_format=2, compressors=Satcodec(bpp=1.0, bit_depth=12))

The codec needs the chunk's shape, which Zarr gives a *compressor* of the version-2 format (the
chunk array itself); in the version-3 format a numcodecs compressor only sees bytes. Chunks
are (bands, H, W) or (H, W) arrays of uint8 or uint16. Found by ``numcodecs.get_codec({"id":
"satcodec", ...})`` through the ``numcodecs.codecs`` entry point, or registered on import.
"""

from __future__ import annotations

import os
from typing import Any

import numcodecs
import numpy as np
from numcodecs.abc import Codec
from numcodecs.compat import ensure_contiguous_ndarray, ensure_ndarray, ndarray_copy

from satcodec.api import (
    _check_model_option,
    _check_spectral,
    _check_tile,
    _rate_options,
    decode,
    encode,
)
from satcodec.coding import DEFAULT_TILE
from satcodec.coding.normalisation import check_normalisation
from satcodec.errors import ConfigError

_NDIM_KEY = "zarr_chunk_ndim"  # in each chunk's metadata object: a 2-D chunk decodes 2-D


class Satcodec(Codec):
    """Lossy learned compression of a 2-D (H, W) or 3-D band-first (bands, H, W) chunk.

    Rate as :func:`satcodec.encode`: ``bpp`` (per band, within ±3 %), ``max_bpp`` (never
    above) or ``quality`` (0-100; the default, 50, is the model's native point). ``model``: a
    shipped model name or a weights path (default: the shipped model nearest the rate); the
    stream names its model by id, so any reader with that model decodes it. ``bit_depth``:
    the sensor's (default: inferred per chunk from its maximum -- give it, so every chunk is
    quantised alike). ``tile``: the stream's tile size (chunks larger than it are tiled
    inside). ``nodata``: a value kept exactly (masked). ``channel_context``: the cross-channel
    entropy model (streams need a reader with flag 0x0001). ``spectral="klt"``: code each
    3-D chunk's bands jointly (flag 0x0002; chunks of 2..256 bands). ``normalisation``:
    ``"texture"`` (default) picks each chunk's band peaks from its texture (flag 0x0004),
    ``"bit-depth"`` divides every chunk by ``2**bit_depth - 1`` (with ``bit_depth`` given,
    every chunk is then normalised alike).
    """

    codec_id = "satcodec"
    lossless = False  # say so to anyone inspecting the codec

    def __init__(
        self,
        *,
        bpp: float | None = None,
        max_bpp: float | None = None,
        quality: float | None = None,
        model: str | None = None,
        bit_depth: int | None = None,
        tile: int = DEFAULT_TILE,
        nodata: float | None = None,
        channel_context: bool = True,
        spectral: str | None = None,
        normalisation: str = "texture",
    ) -> None:
        _rate_options(bpp, max_bpp, quality)
        _check_spectral(spectral)
        check_normalisation(normalisation)
        _check_model_option(model)
        _check_tile(tile)
        if bit_depth is not None and (
            not isinstance(bit_depth, (int, np.integer)) or isinstance(bit_depth, bool)
        ):
            raise ConfigError(f"bit_depth must be an integer, got {bit_depth!r}")
        if not isinstance(channel_context, bool):
            raise ConfigError(f"channel_context must be True or False, got {channel_context!r}")
        # JSON-compatible values only: get_config() is stored in the array's metadata
        self.bpp = None if bpp is None else float(bpp)
        self.max_bpp = None if max_bpp is None else float(max_bpp)
        self.quality = None if quality is None else float(quality)
        self.model = None if model is None else os.fspath(model)
        self.bit_depth = None if bit_depth is None else int(bit_depth)
        self.tile = int(tile)
        self.nodata = None if nodata is None else float(nodata)
        self.channel_context = channel_context
        self.spectral = spectral
        self.normalisation = normalisation

    def encode(self, buf: Any) -> bytes:
        """A chunk (ndarray, 2-D or 3-D band-first) -> one ``.satc`` stream."""
        a = ensure_ndarray(buf)
        if a.ndim not in (2, 3):
            raise ConfigError(
                f"satcodec encodes (H, W) or (bands, H, W) chunks, got shape {a.shape}: "
                "use it as the compressor of a Zarr version-2 array (which hands it the chunk "
                "array), not after another codec"
            )
        return encode(
            np.ascontiguousarray(a),
            bit_depth=self.bit_depth,
            nodata=self.nodata,
            metadata={_NDIM_KEY: a.ndim},
            bpp=self.bpp,
            max_bpp=self.max_bpp,
            quality=self.quality,
            model=self.model,
            tile=self.tile,
            channel_context=self.channel_context,
            spectral=self.spectral,
            normalisation=self.normalisation,
        )

    def decode(self, buf: Any, out: Any = None) -> np.ndarray:
        """One stream -> the chunk's reconstruction (its dtype and shape), into ``out`` if
        given. A damaged stream raises :class:`~satcodec.errors.TileCorruptedError`."""
        data = ensure_contiguous_ndarray(buf).tobytes()
        array, meta = decode(data, model=self.model)
        md = meta.get("metadata")
        if isinstance(md, dict) and md.get(_NDIM_KEY) == 2 and array.shape[0] == 1:
            array = array[0]
        if out is not None:
            return ndarray_copy(array, out)
        return array


numcodecs.register_codec(Satcodec)

__all__ = ["Satcodec"]
