"""Exceptions raised by satcodec.

One root, :class:`SatcodecError`, and specific subclasses that also inherit the builtin
kind they belong to, so callers can catch broadly (``except SatcodecError``), by builtin
kind (``except ValueError``) or precisely (``except TileCorruptedError``).
"""

from __future__ import annotations


class SatcodecError(Exception):
    """Root of every error satcodec raises on purpose."""


# --- bitstream -----------------------------------------------------------------------------
class BitstreamError(SatcodecError, ValueError):
    """A bitstream is malformed or cannot be decoded."""


class TruncatedBitstreamError(BitstreamError):
    """The data ends before the structure it announces."""


class BadMagicError(BitstreamError):
    """The data does not start with the satcodec magic bytes."""


class UnsupportedVersionError(BitstreamError):
    """The bitstream was written by a format version this reader does not know."""


class HeaderCorruptedError(BitstreamError):
    """The header fails its CRC or holds inconsistent fields."""


class HeaderLimitError(BitstreamError):
    """The header declares sizes that are implausible or that the file cannot hold."""


class TileCorruptedError(BitstreamError):
    """One tile fails its CRC or cannot be entropy-decoded; the others may still decode."""

    def __init__(self, message: str, band: int = -1, row: int = -1, col: int = -1) -> None:
        super().__init__(message)
        self.band, self.row, self.col = band, row, col


class EntropyCodingError(BitstreamError):
    """An entropy-coded payload is malformed (raised while decoding one tile's symbols)."""


# --- models and weights --------------------------------------------------------------------
class ModelError(SatcodecError):
    """Root for model lookup and weight problems."""


class UnknownModelError(ModelError, LookupError):
    """No available model has the requested name or id."""


class WeightsError(ModelError, ValueError):
    """A weights file is missing tensors, has wrong shapes, or is not a valid safetensors file."""


# --- rasters, profiles, parameters ---------------------------------------------------------
class RasterError(SatcodecError, ValueError):
    """A raster (GeoTIFF) cannot be read or written, or is of an unsupported kind."""


class ProfileError(SatcodecError, ValueError):
    """A hardware profile (TOML) is malformed; the message names the field."""


class RateControlError(SatcodecError, ValueError):
    """A requested rate or quality cannot be met or is out of range."""


class ConfigError(SatcodecError, ValueError):
    """An invalid option or configuration value."""


# --- deployment (export, runtimes) ----------------------------------------------------------
class ExportError(SatcodecError, RuntimeError):
    """Exporting a model (ONNX, quantisation, TensorRT engine) failed or an export is unusable."""


class RuntimeUnavailableError(ExportError):
    """The requested runtime (onnxruntime, TensorRT, a CUDA GPU) is not available on this machine."""


# --- ground segment ---------------------------------------------------------------------------
class NoiseModelError(SatcodecError, ValueError):
    """Noise parameters are invalid, the sensor table is malformed, or noise cannot be estimated."""


class GroundPipelineError(SatcodecError, RuntimeError):
    """The ground pipeline cannot run (inbox/outbox unusable, state file corrupt, cluster down)."""


# --- research: recommendation ---------------------------------------------------------------
class RecsysDataError(SatcodecError, ValueError):
    """A listening-data folder (Last.fm HetRec 2011) is missing files or holds malformed tables."""


# --- research: approximate Bayesian computation ------------------------------------------------
class SimulationBudgetError(SatcodecError, RuntimeError):
    """A counted simulator was asked for more simulations than its budget allows."""
