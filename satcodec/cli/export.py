"""``satcodec export`` and ``satcodec profile`` (deployment), and the ``--runtime`` options
that ``encode`` and ``decode`` share."""

from __future__ import annotations

import argparse
import json

from satcodec.cli.options import add_command, positive_int, progress, say


def add_runtime_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("runtime")
    g.add_argument(
        "--runtime",
        default=None,
        choices=["torch", "onnxruntime", "tensorrt"],
        help="what runs the transform (default: $SATCODEC_RUNTIME, else onnxruntime fp32 when "
        "installed, else torch); the fp32 runtimes give the same bitstreams",
    )
    g.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="tiles processed in parallel (default: every available core); "
        "the output does not depend on it",
    )
    g.add_argument(
        "--precision",
        choices=["fp32", "fp16", "int8"],
        help="exported precision (default: fp32 for onnxruntime, fp16 for tensorrt)",
    )
    g.add_argument(
        "--export-dir",
        help="folder written by 'satcodec export' (default: export once into the user cache)",
    )


def cmd_export(a: argparse.Namespace) -> int:
    from satcodec.export import export_model

    precision = a.precision or ("fp16" if a.format == "tensorrt" else "fp32")
    m = export_model(
        a.model or _default_model(),
        a.output,
        fmt=a.format,
        precision=precision,
        calib=a.calib,
        max_tile=a.max_tile,
    )
    if a.format == "onnx":
        errs = ", ".join(
            f"{k.replace('_rel_err', '')} {v:.1e}"
            for k, v in m["checks"].items()
            if k.endswith("_rel_err")
        )
        say(
            a,
            f"{a.output}: {precision} ONNX (opset {m['opset']}) of {m['model_name']} "
            f"({m['model_id']}): analysis.onnx (board), synthesis.onnx (ground), manifest.json; "
            f"relative errors: {errs}",
        )
    else:
        say(
            a,
            f"{a.output}: TensorRT {m['tensorrt']} {precision} engines for {m['gpu']}: "
            "analysis.engine, synthesis.engine, engine.json",
        )
    return 0


def cmd_profile(a: argparse.Namespace) -> int:
    from satcodec.codec.registry import load_model
    from satcodec.errors import ConfigError
    from satcodec.export.profiling import (
        find_profile,
        format_reports,
        list_profiles,
        plot_reports,
        profile_board,
    )

    if bool(a.all) == bool(a.board):
        raise ConfigError("give --board NAME or --all")
    profiles = list_profiles(a.profiles_dir) if a.all else [find_profile(a.board, a.profiles_dir)]
    net, info = load_model(a.model or _default_model())
    cache: dict = {}
    # progress in timed runs of a `size`² tile (1 warm-up + `repeat` per board; one run of
    # the default 2048² tile takes seconds on a laptop core, so a board takes about a minute)
    tick = progress(a, "profile", unit="run")
    per_board = 1 + a.repeat
    total = per_board * len(profiles)
    reports = []
    for i, prof in enumerate(profiles):
        board_tick = None
        if tick:
            tick(i * per_board, total)

            def board_tick(done: int, _total: int, base: int = i * per_board) -> None:
                tick(base + done, total)

        reports.append(profile_board(prof, net, info, a.size, a.repeat, cache, board_tick))
    if tick:
        tick(total, total)
    if a.json:
        print(json.dumps([r.to_dict() for r in reports], indent=2))
    else:
        print(format_reports(reports))
    if a.plot:
        plot_reports(reports, a.plot)
        if not a.json:
            say(a, f"\nplot: {a.plot}")
    return 0


def _default_model() -> str:
    from satcodec.coding import choose_model

    return choose_model(None)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    x = add_command(
        sub,
        "export",
        cmd_export,
        "export the analysis (board) and synthesis (ground) transforms to ONNX or TensorRT",
    )
    x.add_argument(
        "--model", help="shipped model name or weights path (default: the default model)"
    )
    x.add_argument("--format", default="onnx", choices=["onnx", "tensorrt"])
    x.add_argument(
        "--precision", choices=["fp32", "fp16", "int8"], help="default fp32 (onnx), fp16 (tensorrt)"
    )
    x.add_argument(
        "--calib",
        help="folder (or file) of GeoTIFFs for int8 calibration (default: the shipped Pleiades "
        "sample)",
    )
    x.add_argument(
        "--max-tile", type=int, help="TensorRT: largest tile the engines accept (default 2048)"
    )
    x.add_argument("-o", "--output", required=True, help="output folder")

    p = add_command(
        sub,
        "profile",
        cmd_profile,
        "model cost, measured host latency and projected board latency for hardware profiles",
    )
    p.add_argument("--board", help="profile name (hw_profiles/NAME.toml) or a .toml path")
    p.add_argument("--all", action="store_true", help="one table for every profile")
    p.add_argument(
        "--model", help="shipped model name or weights path (default: the default model)"
    )
    p.add_argument("--size", type=int, default=2048, help="tile size in pixels (default 2048)")
    p.add_argument("--repeat", type=int, default=5, help="timed runs after one warm-up (median)")
    p.add_argument("--plot", help="write a PNG chart (projected vs measured, labelled)")
    p.add_argument("--profiles-dir", help="folder of profiles (default: hw_profiles/)")
    p.add_argument("--json", action="store_true")
