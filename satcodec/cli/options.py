"""What every command shares: -q/-v, -o/--overwrite, progress bars, messages, ``-`` for
stdin/stdout, and the parsing of comma-separated option values."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from satcodec.errors import ConfigError

Command = Callable[[argparse.Namespace], int]

STDIO = "-"  # an input or output argument that means stdin / stdout


def _common() -> argparse.ArgumentParser:
    """-q/-v of every command. Their defaults are SUPPRESS so that ``satcodec -v CMD`` (the
    top-level option) is not overwritten by the command's own default."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("output").add_mutually_exclusive_group()
    g.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help="no progress bars and no informational messages (results, warnings, errors stay)",
    )
    g.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=argparse.SUPPRESS,
        help="say more: timings on stderr; -vv: a traceback with errors",
    )
    return p


COMMON = _common()


def add_global_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="as the command's -q")
    p.add_argument("-v", "--verbose", action="count", default=0, help="as the command's -v")


def add_command(
    sub: argparse._SubParsersAction, name: str, func: Command, help: str, **kw: Any
) -> argparse.ArgumentParser:
    """A command: a parser with the shared options, run by ``func(args) -> exit status``."""
    p = sub.add_parser(
        name, help=help, description=kw.pop("description", help), parents=[COMMON], **kw
    )
    p.set_defaults(func=func)
    return p


def add_group(sub: argparse._SubParsersAction, name: str, help: str) -> argparse._SubParsersAction:
    """A command group (``satcodec research ...``): its subcommands are added to the result."""
    g = sub.add_parser(name, help=help, description=help)
    return g.add_subparsers(
        dest=f"{name.replace('-', '_')}_command", required=True, metavar="COMMAND"
    )


def add_output(p: argparse.ArgumentParser, what: str, stdout: bool = False) -> None:
    """``-o/--output`` (required) and ``--overwrite``."""
    p.add_argument(
        "-o", "--output", required=True, help=what + (" ('-': standard output)" if stdout else "")
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")


# --- messages ---------------------------------------------------------------------------------
def quiet(a: argparse.Namespace) -> bool:
    return bool(getattr(a, "quiet", False))


def verbose(a: argparse.Namespace) -> int:
    return int(getattr(a, "verbose", 0) or 0)


def say(a: argparse.Namespace, text: str) -> None:
    """An informational message: on stdout, or stderr when stdout carries the data (``-o -``);
    none with -q."""
    if quiet(a):
        return
    to_stderr = getattr(a, "output", None) == STDIO
    print(text, file=sys.stderr if to_stderr else sys.stdout, flush=to_stderr)


def warn(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr)


def progress(
    a: argparse.Namespace, desc: str, unit: str = "tile"
) -> Callable[[int, int], None] | None:
    """A tqdm-backed ``progress(done, total)`` callback on stderr (None with -q)."""
    if quiet(a):
        return None
    from tqdm.auto import tqdm

    bar = None

    def cb(done: int, total: int) -> None:
        nonlocal bar
        if bar is not None and (total != bar.total or done < bar.n):
            bar.close()  # a new phase (a large scene's encoder: sample, then coding passes)
            bar = None
        if bar is None:
            bar = tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()
            bar = None

    return cb


# --- '-' for stdin / stdout -------------------------------------------------------------------
@contextmanager
def input_path(arg: str, suffix: str) -> Iterator[str]:
    """The path to read: ``arg``, or for ``-`` a temporary copy of stdin (deleted after)."""
    if arg != STDIO:
        yield arg
        return
    stdin = sys.stdin
    if stdin is None or stdin.isatty():
        raise ConfigError("input '-' reads standard input, which is a terminal: pipe a file in")
    with tempfile.TemporaryDirectory(prefix="satcodec-") as tmp:
        path = Path(tmp) / f"stdin{suffix}"
        with open(path, "wb") as fh:
            shutil.copyfileobj(stdin.buffer, fh, 1 << 20)
        yield str(path)


@contextmanager
def output_path(arg: str, suffix: str) -> Iterator[str]:
    """The path to write: ``arg``, or for ``-`` a temporary file copied to stdout once the
    command has succeeded (nothing reaches stdout on an error)."""
    if arg != STDIO:
        yield arg
        return
    if sys.stdout.isatty():
        raise ConfigError(
            "output '-' writes binary data to standard output, a terminal: redirect it"
        )
    with tempfile.TemporaryDirectory(prefix="satcodec-") as tmp:
        path = Path(tmp) / f"stdout{suffix}"
        yield str(path)
        sys.stdout.flush()
        out = sys.stdout.buffer
        with open(path, "rb") as fh:
            shutil.copyfileobj(fh, out, 1 << 20)
        out.flush()


# --- option values ----------------------------------------------------------------------------
def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a clear usage error otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def names(text: str | None) -> list[str] | None:
    """``a,b,c`` -> ``["a", "b", "c"]`` (None for an absent option)."""
    if not text:
        return None
    return [v.strip() for v in text.split(",") if v.strip()]


def numbers(option: str, text: str, integers: bool = False) -> list[Any]:
    """Comma-separated numbers (``1e4`` is an integer too); a ConfigError naming ``option``."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
        return [int(v) for v in values] if integers else values
    except (ValueError, OverflowError):
        what = "integers" if integers else "numbers"
        raise ConfigError(f"{option}: comma-separated {what} expected, got {text!r}") from None
