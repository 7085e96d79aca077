"""Tile payload framing: ``u32 entropy_length | entropy bytes | zlib(packbits(nodata mask))``.

The mask part is absent when the tile has no nodata pixel (docs/bitstream.md, "Tile payload").
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from satcodec.errors import EntropyCodingError


def pack_payload(entropy: bytes, mask: np.ndarray | None) -> bytes:
    """One tile's payload: its entropy-coded symbols and, if any, its nodata mask."""
    tail = b"" if mask is None else zlib.compress(np.packbits(mask).tobytes(), 9)
    return struct.pack("<I", len(entropy)) + entropy + tail


def unpack_payload(payload: bytes, pixels_h: int, pixels_w: int) -> tuple[bytes, np.ndarray | None]:
    """(entropy bytes, nodata mask bool (pixels_h, pixels_w) or None); EntropyCodingError on
    a malformed payload (the mask is inflated at most to its size: no decompression bomb)."""
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


__all__ = ["pack_payload", "unpack_payload"]
