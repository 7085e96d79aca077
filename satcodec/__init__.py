"""satcodec: a reduced-complexity learned image codec for on-board satellite compression."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "decode", "decode_file", "encode", "encode_file", "open"]

if TYPE_CHECKING:
    from satcodec.api import decode, decode_file, encode, encode_file
    from satcodec.reader import open_dataset as open


def __getattr__(name: str) -> Any:
    # Lazy: `import satcodec.research...` or `satcodec.train` must not load the codec (and
    # torch's model code) just because the package root is imported first.
    if name in ("decode", "decode_file", "encode", "encode_file"):
        from satcodec import api

        return getattr(api, name)
    if name == "open":  # a rasterio-like reader of .satc files (satcodec.reader)
        from satcodec.reader import open_dataset

        return open_dataset
    raise AttributeError(f"module 'satcodec' has no attribute {name!r}")
