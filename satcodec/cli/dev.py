"""``satcodec dev``: tools for developers of the codec itself."""

from __future__ import annotations

import argparse

from satcodec.cli.options import add_command, add_group, say


def cmd_dev_laplace_table(a: argparse.Namespace) -> int:
    from satcodec.entropy.laplace_cdf_table import DEFAULT_PATH, regenerate

    say(a, regenerate(a.out or DEFAULT_PATH))
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    dev = add_group(sub, "dev", "developer tools (regenerate committed tables)")
    t = add_command(
        dev,
        "laplace-table",
        cmd_dev_laplace_table,
        "regenerate the integer Laplace CDF table of the entropy coder, byte for byte",
    )
    t.add_argument(
        "--out",
        help="output .npz path (default: the committed satcodec/entropy/tables/laplace_v1.npz)",
    )
