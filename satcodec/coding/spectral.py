"""Spectral decorrelation: a Karhunen–Loève transform across a scene's bands (flag 0x0002).

The bands of a multispectral scene are strongly correlated, and the codec's models code one
band at a time. On board, the encoder fits the bands' covariance eigenvectors (a B x B
orthonormal matrix, no training) and codes the *components* ``c = A⁻¹ (x − m)`` as bands; the
ground decodes the components and returns ``x = A c + m``. The transform travels in the
header as integers: ``A`` in Q14 (``matrix``, int16 range), the band means ``m`` rounded
(``means``), and per component the bit depth whose peak normalises it for the analysis
(``component_bits``): docs/bitstream.md, "Spectral transform". The encoder inverts the
*quantised* ``A``, so without coding loss the round trip is exact up to rounding.

An orthonormal transform keeps the squared error, so one quantisation step (in sensor
units) for all components spends the bits where the variance is (the first component, a
panchromatic-like image, gets most of them). Measured in bench/results/spectral.md.

Data flow: :func:`fit_klt` reads the scene twice in row blocks (bounded memory: a subsample
for the covariance, then the components' ranges), :func:`component_reader` wraps the raster's window reader for the
:class:`~satcodec.coding.encoder.Encoder`, :meth:`SpectralTransform.inverse` runs per tile
in :meth:`~satcodec.coding.decoder.Decoder.iter_tiles`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from satcodec.bitstream import MAX_COMPONENT_BITS, MAX_SPECTRAL_BANDS, spectral_problem
from satcodec.bitstream import SPECTRAL_MATRIX_BITS as MATRIX_BITS  # Q14: int16 holds |A| <= 1
from satcodec.coding.normalisation import peaks_of_bits, step_scales_of_bits
from satcodec.errors import ConfigError

SPECTRAL_KINDS = ("klt",)
# pixels of the covariance sample: enough for a B <= 64 covariance to a few 1e-3, bounded
# whatever the scene size
COVARIANCE_SAMPLE = 1 << 22
# raw multi-band windows the component reader keeps (the encoder reads each window once per
# band: without the cache a B-band scene is read B times over)
WINDOW_CACHE_BYTES = 256 << 20

WindowReader = Callable[[int, int, int, int, int], np.ndarray]


@dataclass(frozen=True)
class SpectralTransform:
    """``x = (matrix / 2**14) @ c + means`` per pixel: what the decoder applies.

    ``matrix``: (B, B) int (column k: component k's loading on each band); ``means``: (B,)
    int, the band means removed before the forward transform; ``component_bits``: (B,) int,
    component k is normalised by ``2**component_bits[k] - 1`` for the analysis (as a band is
    by its bit depth's peak) and quantised at the stream's step times
    ``2**(max(component_bits) - component_bits[k])``, so every component gets the same step
    in sensor units."""

    matrix: tuple[tuple[int, ...], ...]
    means: tuple[int, ...]
    component_bits: tuple[int, ...]
    kind: str = "klt"

    @property
    def bands(self) -> int:
        return len(self.means)

    @property
    def peaks(self) -> list[float]:
        """Each component's normalisation peak, ``2**bits - 1``."""
        return peaks_of_bits(self.component_bits)

    @property
    def step_scales(self) -> list[float]:
        """Each component's quantisation step as a multiple of the stream's (powers of two:
        exact in floating point)."""
        return step_scales_of_bits(self.component_bits)

    @property
    def synthesis_matrix(self) -> np.ndarray:
        """``A`` as float64 (B, B)."""
        return np.asarray(self.matrix, np.float64) / (1 << MATRIX_BITS)

    @property
    def analysis_matrix(self) -> np.ndarray:
        """``A⁻¹`` (float64): the exact inverse of the quantised matrix the decoder uses
        (:class:`ConfigError` for a matrix that has none, e.g. a malformed kept transform)."""
        a = self.synthesis_matrix
        if np.linalg.cond(a) > 1e6:
            raise ConfigError(
                "spectral transform: the matrix is singular or nearly so (condition number "
                f"{np.linalg.cond(a):.3g}): the encoder cannot invert it"
            )
        return np.linalg.inv(a)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Components (B, ...) float32 of band values ``x`` (B, ...)."""
        b = self.bands
        flat = x.reshape(b, -1).astype(np.float64) - np.asarray(self.means, np.float64)[:, None]
        return (self.analysis_matrix @ flat).astype(np.float32).reshape(x.shape)

    def inverse(self, c: np.ndarray) -> np.ndarray:
        """Band values (B, ...) float32 of components ``c`` (B, ...), neither rounded nor
        clipped."""
        b = self.bands
        a = self.synthesis_matrix.astype(np.float32)
        flat = a @ c.reshape(b, -1).astype(np.float32)
        flat += np.asarray(self.means, np.float32)[:, None]
        return flat.reshape(c.shape)

    def to_json(self) -> dict[str, Any]:
        """The header's ``spectral_transform`` object (docs/bitstream.md)."""
        return {
            "kind": self.kind,
            "matrix": [list(r) for r in self.matrix],
            "means": list(self.means),
            "component_bits": list(self.component_bits),
        }

    @classmethod
    def from_json(cls, obj: Any) -> SpectralTransform:
        """From a ``spectral_transform`` object (a header's, or one kept from an earlier
        scene: :meth:`to_json`); a malformed one raises :class:`ConfigError` naming the
        problem."""
        bands = (
            len(obj["means"]) if isinstance(obj, dict) and isinstance(obj.get("means"), list) else 0
        )
        problem = spectral_problem(obj, bands)
        if problem is not None:
            raise ConfigError(f"spectral transform: {problem}")
        return cls(
            tuple(tuple(int(v) for v in r) for r in obj["matrix"]),
            tuple(int(v) for v in obj["means"]),
            tuple(int(v) for v in obj["component_bits"]),
            str(obj["kind"]),
        )


def check_spectral_bands(bands: int) -> None:
    if not 2 <= bands <= MAX_SPECTRAL_BANDS:
        raise ConfigError(
            f"a spectral transform needs 2..{MAX_SPECTRAL_BANDS} bands, the raster has {bands}"
        )


def fit_klt(
    read: WindowReader,
    bands: int,
    height: int,
    width: int,
    nodata: float | None,
) -> SpectralTransform:
    """The KLT of a scene, read through ``read`` in row blocks.

    The covariance comes from every ``k``-th pixel (at most :data:`COVARIANCE_SAMPLE`),
    every component's range from every pixel; a pixel that is nodata in any band is left
    out of both (each band's nodata pixels travel as that band's mask, see
    :func:`component_reader`).
    """
    check_spectral_bands(bands)
    every = max(1, math.ceil(height * width / COVARIANCE_SAMPLE))
    block = max(1, (1 << 22) // max(width * bands, 1))

    def valid_blocks() -> Iterator[tuple[int, np.ndarray]]:
        """(first row, (B, n) pixels valid in every band) per block of rows."""
        for y in range(0, height, block):
            rows = min(block, height - y)
            x = np.stack([read(b, y, 0, rows, width) for b in range(bands)]).reshape(bands, -1)
            if nodata is not None:
                x = x[:, ~(x == nodata).any(axis=0)]
            if x.shape[1]:
                yield y, x

    n = 0
    s1 = np.zeros(bands)
    s2 = np.zeros((bands, bands))
    for y, x in valid_blocks():
        picked = x.astype(np.float64)
        if every > 1:
            # every k-th valid pixel (raster index a multiple of k where no pixel is nodata)
            picked = picked[:, -(y * width) % every :: every]
        n += picked.shape[1]
        s1 += picked.sum(axis=1)
        s2 += picked @ picked.T
    if n == 0:
        # no valid pixel: any orthonormal matrix will do
        return SpectralTransform(
            tuple(
                tuple((1 << MATRIX_BITS) if i == j else 0 for j in range(bands))
                for i in range(bands)
            ),
            tuple(0 for _ in range(bands)),
            tuple(1 for _ in range(bands)),
        )
    mean = s1 / n
    cov = s2 / n - np.outer(mean, mean)
    w, v = np.linalg.eigh((cov + cov.T) / 2)
    v = v[:, np.argsort(w)[::-1]]
    # a deterministic sign: each component's largest loading positive (the first component
    # then looks like the bands, not their negative)
    v *= np.where(v[np.abs(v).argmax(axis=0), range(bands)] < 0, -1.0, 1.0)
    q = np.clip(np.rint(v * (1 << MATRIX_BITS)), -(1 << 15), (1 << 15) - 1).astype(np.int64)
    means = tuple(int(m) for m in np.rint(mean))
    t = SpectralTransform(tuple(tuple(int(a) for a in r) for r in q), means, (1,) * bands)
    # Each component's peak: its range, read in a second pass (B MAC per pixel and
    # component). Normalising each component to its own range, with the step scaled to
    # match (SpectralTransform.step_scales), took bench/results/spectral.md from -18.3 % to
    # -19.0 % mean BD-rate against JPEG 2000 (one model at all rates: 1.3-5.5 % saved on
    # three scenes) over one peak for all, the first component's; one peak from a bound on
    # the bands' ranges was up to 2.2 dB worse still. The bands' texture rule
    # (satcodec.coding.normalisation, flag 0x0004) applied to the components was worse too:
    # -32.6 -> -29.0 % on the Sentinel-2 cube, -23.0 -> -18.7 % on idaho (better only on grenada).
    inv = t.analysis_matrix
    c_lo, c_hi = np.full(bands, np.inf), np.full(bands, -np.inf)
    for _, x in valid_blocks():
        c = inv @ (x.astype(np.float64) - np.asarray(means, np.float64)[:, None])
        c_lo, c_hi = np.minimum(c_lo, c.min(axis=1)), np.maximum(c_hi, c.max(axis=1))
    bits = tuple(
        max(1, min(MAX_COMPONENT_BITS, math.ceil(math.log2(hi - lo + 2))))
        for lo, hi in zip(c_lo, c_hi, strict=True)
    )
    return SpectralTransform(t.matrix, t.means, bits)


def component_reader(
    read: WindowReader,
    transform: SpectralTransform,
    nodata: float | None,
    cache_bytes: int = WINDOW_CACHE_BYTES,
) -> tuple[WindowReader, Callable[[int, int, int, int, int], np.ndarray]]:
    """``(read_component, read_mask)`` over a band reader.

    ``read_component(k, y0, x0, h, w)``: component ``k`` of that window (float32), where each
    band's nodata pixels count as the band's mean (they then cost the other bands nothing).
    ``read_mask(k, ...)``: the nodata pixels of *band* ``k`` (bool): component tile ``k``
    carries band ``k``'s mask, so a pixel that is nodata in some bands only keeps its valid
    bands (docs/bitstream.md, "Spectral transform").

    The encoder asks for each window once per component, component-major (every window of
    component 0, then of component 1, ...), so the raw windows of all bands are cached, up
    to ``cache_bytes``. The pattern is cyclic: once the cache is full it keeps what it holds
    rather than evicting (an LRU cache smaller than the cycle would never hit); the windows
    beyond it are read again, all bands, for each component.
    """
    bands = transform.bands
    inv = transform.analysis_matrix
    means = np.asarray(transform.means, np.float64)
    cache: dict[tuple[int, int, int, int], tuple[np.ndarray, np.ndarray | None]] = {}
    held = [0]

    def window(y0: int, x0: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray | None]:
        key = (y0, x0, h, w)
        hit = cache.get(key)
        if hit is not None:
            return hit
        x = np.stack([read(b, y0, x0, h, w) for b in range(bands)])
        mask = None
        if nodata is not None:
            nd = x == nodata
            if nd.any():
                mask = nd
                x = np.where(nd, np.rint(means)[:, None, None].astype(x.dtype), x)
        hit = (x, mask)
        size = x.nbytes + (0 if mask is None else mask.nbytes)
        if held[0] + size <= cache_bytes:
            cache[key] = hit
            held[0] += size
        return hit

    def read_component(k: int, y0: int, x0: int, h: int, w: int) -> np.ndarray:
        x, mask = window(y0, x0, h, w)
        c = np.tensordot(inv[k], x, axes=1) - float(inv[k] @ means)
        return c.astype(np.float32)

    def read_mask(k: int, y0: int, x0: int, h: int, w: int) -> np.ndarray:
        m = window(y0, x0, h, w)[1]
        return np.zeros((h, w), bool) if m is None else m[k]

    return read_component, read_mask


__all__ = [
    "MATRIX_BITS",
    "SPECTRAL_KINDS",
    "SpectralTransform",
    "component_reader",
    "fit_klt",
]
