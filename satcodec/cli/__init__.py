"""The ``satcodec`` command line: one module per command group, each command a short call
into one library function (the library has no argparse and never exits the process).

* :mod:`.codec` -- encode, decode, info, models, demo
* :mod:`.train` -- train, tune-decoder, ship {codec, joint, denoiser}
* :mod:`.ground` -- denoise, ground, ground-train {denoiser, joint, ship, export-checkpoint}
* :mod:`.export` -- export, profile (and the --runtime options of encode/decode)
* :mod:`.evaluate` -- eval
* :mod:`.research` -- research {inna-bench, abc-bench, recsys-bench}
* :mod:`.dev` -- dev {laplace-table}
* :mod:`.options` -- what they share: -q/-v, -o/--overwrite, progress, '-' for stdin/stdout
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Sequence

from satcodec.cli.options import add_global_options, verbose
from satcodec.errors import SatcodecError

DESCRIPTION = """\
satcodec compresses satellite images: on board, it turns a GeoTIFF into a small bitstream
(learned codec, georeferencing kept, tiles that decode independently and survive damage);
on the ground, it decodes that bitstream back into a GeoTIFF, denoises it and turns whole
downlinks into Cloud-Optimized GeoTIFFs with STAC Items. It also trains, evaluates, exports
and profiles the codec."""

EPILOG = """\
examples:
  satcodec demo                                       (try it: a shipped scene vs JPEG 2000)
  satcodec encode scene.tif -o scene.satc --bpp 1.5
  satcodec info scene.satc
  satcodec decode scene.satc -o decoded.tif
  satcodec ground INBOX OUTBOX                        (a pass of bitstreams -> COGs + STAC)
  satcodec encode - -o - < scene.tif > scene.satc     ('-': standard input / output)
  satcodec COMMAND --help                             (the options of one command)

every command takes -q (no progress bars or messages) and -v (timings; -vv: tracebacks);
the long ones (encode, decode, denoise, ground, eval, profile, train) show a progress bar on
standard error.

exit status:
  0    done
  1    done in part: damaged tiles written as nodata, damaged tiles reported by info,
       ground scenes that failed, were refused, quarantined or wait for their model
  2    error: one line on standard error, no output written (bad options too)
  130  interrupted"""


def version() -> str:
    """The installed distribution's version (``satcodec.__version__`` when not installed)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("satcodec")
    except PackageNotFoundError:
        import satcodec

        return getattr(satcodec, "__version__", "unknown")


def build_parser() -> argparse.ArgumentParser:
    from satcodec.cli import codec, dev, evaluate, export, ground, research, train

    p = argparse.ArgumentParser(
        prog="satcodec",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"satcodec {version()}")
    add_global_options(p)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (codec, train, ground, export, evaluate, research, dev):
        group.add_parsers(sub)
    return p


def _error(message: str, a: argparse.Namespace | None = None) -> int:
    if a is not None and verbose(a) >= 2:
        traceback.print_exc()
    print(f"satcodec: error: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Exit status: 0 done; 1 done in part (damaged tiles, failed scenes);
    2 error (one line on stderr, no output written); 130 interrupted. A usage error exits
    the process with status 2 (argparse)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # GDAL's block cache defaults to 5 % of RAM (1.2 GB on a 24 GB host) and fills up on a
    # large scene read or written window by window: the tiles need only a few blocks each
    os.environ.setdefault("GDAL_CACHEMAX", "32")  # MB; a user's own setting wins
    args = build_parser().parse_args(argv)
    args.argv = argv  # the command line, for what records it (model cards)
    t0 = time.perf_counter()
    try:
        rc = args.func(args)
    except SatcodecError as exc:
        return _error(str(exc), args)
    except BrokenPipeError:
        # the reader of our output went away (``satcodec info --json | head``): stop quietly,
        # and keep Python from reporting the pipe again when it flushes stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return _error("output closed early (broken pipe)")
    except MemoryError:
        return _error("out of memory", args)
    except OSError as exc:
        # an I/O failure the library did not name (disk full, lost mount): one line, no trace
        where = f": {exc.filename}" if exc.filename else ""
        return _error(f"{exc.strerror or exc}{where}", args)
    except KeyboardInterrupt:
        print("satcodec: interrupted", file=sys.stderr)
        return 130
    if verbose(args):
        print(
            f"satcodec: {_name(args)} took {time.perf_counter() - t0:.2f} s (exit {rc})",
            file=sys.stderr,
        )
    return rc


def _name(args: argparse.Namespace) -> str:
    sub = next((v for k, v in vars(args).items() if k.endswith("_command") and v), None)
    return f"{args.command} {sub}" if sub else args.command


__all__ = ["build_parser", "main", "version"]
