"""satcodec: a reduced-complexity learned image codec for on-board satellite compression."""

__version__ = "0.1.0"
