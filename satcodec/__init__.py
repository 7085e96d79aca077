"""satcodec: a reduced-complexity learned image codec for on-board satellite compression."""

__version__ = "0.1.0"

from satcodec.api import decode, decode_file, encode, encode_file

__all__ = ["__version__", "decode", "decode_file", "encode", "encode_file"]
