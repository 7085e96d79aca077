"""The ground segment: ``denoise``, ``ground``, and ``ground-train`` (the denoiser and the
joint codec: ``denoiser``, ``joint``, ``ship``, ``export-checkpoint``)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from satcodec.cli.options import add_command, add_group, add_output, progress, quiet, say


def cmd_denoise(a: argparse.Namespace) -> int:
    from satcodec.api import check_output_path
    from satcodec.ground_segment.denoiser import denoise_file

    check_output_path(a.input, a.output, a.overwrite)
    used = denoise_file(
        a.input,
        a.output,
        noise=_noise(a.noise),
        sensor=a.sensor,
        tile=a.tile,
        weights=a.weights,
        progress=progress(a, "denoise"),
    )
    desc = "; ".join(f"band {i}: a={p.a:.4g} b={p.b:.4g} ({p.source})" for i, p in enumerate(used))
    say(a, f"{a.output}: denoised, noise variance a + b*x with {desc}")
    return 0


def _noise(text: str | None):
    from satcodec.ground_segment.noise import NoiseParams

    return NoiseParams.parse(text) if text else None


def cmd_ground(a: argparse.Namespace) -> int:
    from satcodec.ground_segment.pipeline import GroundOptions, run_ground

    p = _noise(a.noise)
    opts = GroundOptions(
        denoise=a.denoise,
        noise=None if p is None else (p.a, p.b),
        sensor=a.sensor,
        denoiser=a.weights,
        model_paths=a.model or [],
        follow_symlinks=a.follow_symlinks,
    )
    s = run_ground(
        a.inbox,
        a.outbox,
        opts,
        workers=a.workers,
        scheduler=a.scheduler,
        processes=a.processes,
        watch=a.watch,
        poll_s=a.poll,
        progress=not quiet(a),
    )
    # 1: done in part -- some scene is not (yet) a product: failed, waiting for its model,
    # refused or quarantined (each listed with its reason by run_ground's summary)
    return 1 if s.failed or s.waiting or s.refused or s.quarantined else 0


# --- ground-train -----------------------------------------------------------------------------
def _print_meta(a: argparse.Namespace, meta: dict) -> None:
    say(a, json.dumps({k: v for k, v in meta.items() if k != "train_scenes"}, indent=1))


def cmd_ground_train_denoiser(a: argparse.Namespace) -> int:
    from satcodec.ground_segment.training import train_denoiser

    meta = train_denoiser(
        a.data,
        a.steps,
        a.out,
        channels=a.channels,
        layers=a.layers,
        batch=a.batch,
        patch=a.patch,
        lr=a.lr,
        resume=a.resume,
        progress=not quiet(a),
        loss=a.loss,
        init=a.init,
        codec_models=a.codec_models.split(",") if a.codec_models else None,
    )
    _print_meta(a, meta)
    return 0


def _refine(text: str | None) -> tuple[int, int] | None:
    from satcodec.errors import ConfigError

    if not text:
        return None
    try:
        c, n = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--refine takes CxL (e.g. 48x8), got {text!r}") from None
    return c, n


def cmd_ground_train_joint(a: argparse.Namespace) -> int:
    from satcodec.codec.training import STEP_LOG2_HI, STEP_LOG2_LO, parse_step_range
    from satcodec.ground_segment.denoiser import DEFAULT_WEIGHTS
    from satcodec.ground_segment.training import train_joint

    # options checked before any training
    refine = _refine(a.refine)
    steps = parse_step_range(a.step_range or f"{STEP_LOG2_LO},{STEP_LOG2_HI}")
    meta = train_joint(
        a.data,
        a.lmbda,
        a.steps,
        a.out,
        init=a.init,
        batch=a.batch,
        patch=a.patch,
        lr=a.lr,
        resume=a.resume,
        progress=not quiet(a),
        device=a.device,
        decay_start=a.decay_start,
        refine=refine,
        decoder_only=a.decoder_only,
        step_log2_range=steps,
        sensor=a.sensor,
        denoise_from=DEFAULT_WEIGHTS if a.denoise_from == "shipped" else a.denoise_from,
    )
    # the line that reproduces the run, for the model card (`ground-train ship` copies it)
    meta["command"] = "satcodec " + shlex.join(getattr(a, "argv", None) or sys.argv[1:])
    (Path(a.out) / "model.json").write_text(json.dumps(meta, indent=2))
    _print_meta(a, meta)
    return 0


def cmd_ground_train_ship(a: argparse.Namespace) -> int:
    from satcodec.shipping import ship_ground

    print(ship_ground(a.run, a.kind, a.name))
    return 0


def cmd_ground_train_export_checkpoint(a: argparse.Namespace) -> int:
    from satcodec.ground_segment.training import export_denoiser_checkpoint

    print(json.dumps(export_denoiser_checkpoint(a.run, a.channels, a.layers)["val"]))
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    dn = add_command(
        sub,
        "denoise",
        cmd_denoise,
        "remove sensor noise from a GeoTIFF (ground denoiser, tiled, no seams)",
    )
    dn.add_argument("input")
    add_output(dn, "denoised GeoTIFF")
    level = dn.add_mutually_exclusive_group()
    level.add_argument("--noise", help="noise variance a + b*x as 'a,b' (DN^2, DN)")
    level.add_argument(
        "--sensor", help="noise of a sensor-table entry (ground_segment/sensors.toml)"
    )
    level.add_argument(
        "--estimate-noise", action="store_true", help="estimate (a, b) from each band (default)"
    )
    dn.add_argument("--tile", type=int, default=512, help="tile size in pixels (overlapped)")
    dn.add_argument("--weights", help="denoiser weights (default: the shipped ones)")

    gr = add_command(
        sub,
        "ground",
        cmd_ground,
        "decode (and denoise) every bitstream of INBOX into COGs + STAC Items",
        epilog="Exit status 1: some scene is not a product (failed, refused, quarantined or "
        "waiting for its model; each is listed with its reason).",
    )
    gr.add_argument("inbox")
    gr.add_argument("outbox")
    gr.add_argument("--denoise", action="store_true", help="run the ground denoiser")
    glevel = gr.add_mutually_exclusive_group()
    glevel.add_argument("--noise", help="noise variance a + b*x as 'a,b' (default: estimated)")
    glevel.add_argument("--sensor", help="noise of a sensor-table entry")
    gr.add_argument("--watch", action="store_true", help="keep watching INBOX for new bitstreams")
    gr.add_argument("--poll", type=float, default=5.0, help="seconds between INBOX scans (--watch)")
    gr.add_argument("--workers", type=int, default=1, help="local Dask workers")
    gr.add_argument(
        "--processes", action="store_true", help="local workers as processes (default: threads)"
    )
    gr.add_argument("--scheduler", help="address of an existing Dask scheduler (tcp://HOST:PORT)")
    gr.add_argument("--weights", help="denoiser weights (default: the shipped ones)")
    gr.add_argument(
        "--model", action="append", help="extra codec weights to decode with (repeatable)"
    )
    gr.add_argument(
        "--follow-symlinks",
        action="store_true",
        help="take INBOX symlinks that point outside INBOX (refused by default)",
    )

    gt = add_group(
        sub,
        "ground-train",
        "train the ground denoiser and joint (on-board denoising) codecs; ship them",
    )
    d = add_command(
        gt, "denoiser", cmd_ground_train_denoiser, "train the noise-conditioned ground denoiser"
    )
    d.add_argument("--data", required=True)
    d.add_argument("--steps", type=int, default=3000)
    d.add_argument("--out", required=True)
    d.add_argument("--channels", type=int, default=48)
    d.add_argument("--layers", type=int, default=8)
    d.add_argument("--batch", type=int, default=16)
    d.add_argument("--patch", type=int, default=64)
    d.add_argument("--lr", type=float, default=1e-3)
    d.add_argument("--resume", action="store_true")
    d.add_argument("--loss", choices=["relative", "mse"], default="relative")
    d.add_argument("--init", help="denoiser weights to start from")
    d.add_argument(
        "--codec-models", help="comma-separated codec models: train on their decoded outputs"
    )

    j = add_command(
        gt,
        "joint",
        cmd_ground_train_joint,
        "train a joint codec on noisy input against the clean target",
    )
    j.add_argument("--data", required=True)
    j.add_argument("--lmbda", type=float, default=1e-3)
    j.add_argument("--steps", type=int, default=1500)
    j.add_argument("--out", required=True)
    j.add_argument("--init", help="codec model name or path to fine-tune from")
    j.add_argument("--batch", type=int, default=8)
    j.add_argument("--patch", type=int, default=128)
    j.add_argument("--lr", type=float, default=3e-4)
    j.add_argument("--decay-start", type=float, default=0.9, help="lr x0.3 from this fraction")
    j.add_argument("--device", default="cpu", help="cpu, or cuda to train on a GPU")
    j.add_argument("--resume", action="store_true")
    j.add_argument(
        "--refine",
        help="CxL: add a ground-side refinement stage of C channels and L layers after the synthesis",
    )
    j.add_argument(
        "--decoder-only",
        action="store_true",
        help="freeze the analysis (board side, rate) and train the decoder on rounded latents",
    )
    j.add_argument("--sensor", help="train on this sensor's noise only (a name of sensors.toml)")
    j.add_argument(
        "--step-range",
        help="LO,HI: --decoder-only draws quantisation steps 2^U(LO, HI) per patch "
        "(default: satcodec.codec.training.STEP_LOG2_LO,STEP_LOG2_HI, -1,1)",
    )
    j.add_argument(
        "--denoise-from",
        help="ground-denoiser weights ('shipped' for the package's) to start a denoising stage "
        "for --sensor's noise from: the model starts as the sequential chain",
    )

    sh = add_command(
        gt,
        "ship",
        cmd_ground_train_ship,
        "copy a finished run into the package, with a card (as satcodec ship joint|denoiser)",
    )
    sh.add_argument("--kind", choices=["denoiser", "joint"], required=True)
    sh.add_argument("--run", required=True)
    sh.add_argument("--name", required=True)

    ex = add_command(
        gt,
        "export-checkpoint",
        cmd_ground_train_export_checkpoint,
        "denoiser weights from a run's checkpoint",
    )
    ex.add_argument("--run", required=True)
    ex.add_argument("--channels", type=int, default=48)
    ex.add_argument("--layers", type=int, default=8)
