"""The coding part: raster → tiles → analysis → quantise → entropy code → bitstream, and back.

- :mod:`.encoder`: :class:`Encoder` (the encode path, top to bottom), window readers,
  :func:`choose_model`;
- :mod:`.rate_control`: the quantisation step for a rate (:func:`step_for_bpp`,
  :func:`encode_at_bpp`) or a quality (:func:`step_for_quality`);
- :mod:`.entropy_models`: :class:`PerChannelLaplace`, :class:`ChannelContextLaplace` (one
  contract: fit / estimate_bits / encode / decode / training_bits), :func:`entropy_model_for`;
- :mod:`.framing`: the tile payload (``u32 length | ANS | zlib(mask)``);
- :mod:`.decoder`: :class:`Decoder` (bounded-memory :meth:`~Decoder.iter_tiles`),
  :func:`open_decoder`, :func:`decode_to_array`;
- :mod:`.transforms`: the :class:`Transform` interface the coder is given, and
  :class:`TorchTransform`. Nothing here imports :mod:`satcodec.export`.
"""

from __future__ import annotations

from satcodec.codec.config import DECODE_HALO, ENCODE_HALO, decode_halo, encode_halo
from satcodec.coding.decoder import (
    MAX_STRIP_BYTES,
    SYNTH_BLOCK,
    SYNTH_CACHE,
    WINDOW_BUDGET,
    DecodedTile,
    Decoder,
    DecodeResult,
    decode_to_array,
    open_decoder,
    stream_model,
    to_dtype,
)
from satcodec.coding.encoder import (
    DEFAULT_TILE,
    Encoder,
    EncodeResult,
    LatentTile,
    WindowReader,
    array_window_reader,
    band_offsets_of,
    choose_model,
    require_stream_stride,
    step_deadzone,
)
from satcodec.coding.entropy_models import (
    DEFAULT_ENTROPY_MODEL,
    ChannelContextLaplace,
    EntropyModel,
    PerChannelLaplace,
    entropy_model_for,
)
from satcodec.coding.framing import pack_payload, unpack_payload
from satcodec.coding.normalisation import NORMALISATIONS
from satcodec.coding.rate_control import (
    MAX_STEP,
    MIN_STEP,
    QUALITY_NATIVE,
    QUALITY_PER_OCTAVE,
    encode_at_bpp,
    step_for_bpp,
    step_for_quality,
)
from satcodec.coding.transforms import TorchTransform, Transform

__all__ = [
    "DECODE_HALO",
    "DEFAULT_ENTROPY_MODEL",
    "DEFAULT_TILE",
    "ENCODE_HALO",
    "encode_halo",
    "MAX_STEP",
    "MAX_STRIP_BYTES",
    "MIN_STEP",
    "NORMALISATIONS",
    "QUALITY_NATIVE",
    "QUALITY_PER_OCTAVE",
    "SYNTH_BLOCK",
    "SYNTH_CACHE",
    "WINDOW_BUDGET",
    "ChannelContextLaplace",
    "DecodeResult",
    "DecodedTile",
    "Decoder",
    "EncodeResult",
    "Encoder",
    "EntropyModel",
    "LatentTile",
    "PerChannelLaplace",
    "TorchTransform",
    "Transform",
    "WindowReader",
    "array_window_reader",
    "step_deadzone",
    "band_offsets_of",
    "choose_model",
    "decode_halo",
    "decode_to_array",
    "encode_at_bpp",
    "entropy_model_for",
    "open_decoder",
    "pack_payload",
    "require_stream_stride",
    "step_for_bpp",
    "step_for_quality",
    "stream_model",
    "to_dtype",
    "unpack_payload",
]
