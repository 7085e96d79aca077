"""``satcodec eval``: rate–distortion evaluation against JPEG 2000 and JPEG XL."""

from __future__ import annotations

import argparse
import sys

from satcodec.cli.options import add_command, names, numbers, quiet, say


def cmd_eval(a: argparse.Namespace) -> int:
    from satcodec.evaluation import run_evaluation

    r = run_evaluation(
        a.images,
        names(a.codecs) or [],
        numbers("--bpp", a.bpp),
        model=a.model,
        anchor_cache=a.anchor_cache,
        anchor=a.anchor,
        bd_method=a.bd_method,
        csv_path=a.csv,
        plot_path=a.plot,
        title=a.title,
        progress=not quiet(a),
        log=lambda s: print(s, file=sys.stderr),
    )
    print(r["text"])
    tables = [str(p) for p in r["written"] if a.csv and p.suffix == ".csv"]
    if tables:
        say(a, "\nwrote " + " and ".join(tables))
    if a.plot:
        say(a, f"wrote {a.plot}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    from satcodec.evaluation import ANCHORS, DEFAULT_BPPS, DEFAULT_CODECS
    from satcodec.evaluation.run import SPECTRAL_CODEC

    codecs = ",".join(DEFAULT_CODECS)
    ev = add_command(
        sub,
        "eval",
        cmd_eval,
        "rate-distortion evaluation against JPEG 2000 and JPEG XL (real bitstreams, BD-rate)",
    )
    ev.add_argument("images", nargs="+", help="GeoTIFF images")
    ev.add_argument(
        "--codecs",
        default=codecs,
        help=f"comma-separated: {codecs}, or {SPECTRAL_CODEC} (the ladder coding a multi-band "
        "image's KLT, --spectral klt)",
    )
    ev.add_argument(
        "--bpp",
        default=",".join(f"{b:g}" for b in DEFAULT_BPPS),
        help="target rates, e.g. 0.5,1,2,3",
    )
    ev.add_argument(
        "--model",
        help="only this model (name or weights path); default: every shipped model covering the rate",
    )
    ev.add_argument("--csv", help="write every point here (BD table to <stem>_bd.csv)")
    ev.add_argument("--plot", help="write the rate-distortion plot (PNG) here")
    ev.add_argument("--title", help="plot title")
    ev.add_argument("--anchor", default="jpeg2000", choices=list(ANCHORS), help="BD reference")
    ev.add_argument("--bd-method", default="pchip", choices=["pchip", "cubic"])
    ev.add_argument("--anchor-cache", help="JSON file caching anchor points between runs")
