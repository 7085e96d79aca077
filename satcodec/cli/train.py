"""Codec training: ``train``, ``tune-decoder``, ``tune-encoder`` and ``ship`` (``codec``, ``joint``,
``denoiser``: a finished run into the package, with its model card)."""

from __future__ import annotations

import argparse
from pathlib import Path

from satcodec.cli.options import add_command, add_group, progress, quiet, say
from satcodec.codec.config import ACTIVATIONS
from satcodec.codec.normalisation import NORMALISATIONS


def cmd_train(a: argparse.Namespace) -> int:
    from satcodec.codec.training import train_codec

    meta = train_codec(
        a.data,
        a.lmbda,
        a.steps,
        a.out,
        optimizer=a.optimizer,
        lr=a.lr,
        batch=a.batch,
        patch=a.patch,
        seed=a.seed,
        resume=a.resume,
        config=_config(a),
        schedule=a.schedule,
        schedule_kwargs={"start": a.decay_start, "final": a.decay_final}
        if a.schedule == "decay"
        else None,
        progress=not quiet(a),
        init=a.init,
        device=a.device,
        normalisation=a.normalisation,
        val_data=a.val_data,
    )
    say(
        a,
        f"trained {a.steps} steps at λ={a.lmbda}: {_val_text(meta.get('val', {}))} -> "
        f"{Path(a.out) / 'model.safetensors'}",
    )
    return 0


def _val_text(val: dict[str, float]) -> str:
    """``val/bpp``, ``val/psnr`` and each family's (``val/vnir/bpp``, ...) as one line."""
    groups: dict[str, dict[str, float]] = {}
    for key, v in val.items():
        name, _, metric = key.removeprefix("val/").rpartition("/")
        groups.setdefault(name or "val", {})[metric] = v
    parts = [
        f"{name} {g['bpp']:.3f} bpp / {g['psnr']:.2f} dB"
        for name, g in groups.items()
        if "bpp" in g and "psnr" in g
    ]
    return "; ".join(parts) or "no validation"


def _config(a: argparse.Namespace):
    """The architecture the options ask for: the init model's (optionally with a wider
    latent), or a new one."""
    from satcodec.codec.models import ModelConfig
    from satcodec.codec.registry import load_model

    if a.init:
        config = load_model(a.init)[1].config
        if a.latent is not None:
            config = ModelConfig(**{**config.to_dict(), "latent": a.latent})
        return config
    return ModelConfig(
        hidden=a.hidden,
        latent=a.latent or 192,
        activation=a.activation,
        stages=4 if a.stride == 16 else 3,
    )


def _say_ship_hint(a: argparse.Namespace, meta: dict) -> None:
    say(
        a,
        f"model id {meta['model_id']}; ship it with satcodec ship codec {a.out} --name NAME --data DATA",
    )


def cmd_tune_decoder(a: argparse.Namespace) -> int:
    from satcodec.codec.training import parse_step_range, tune_decoder

    command = (
        f"satcodec tune-decoder --init {a.init} --data DATA --steps {a.steps} --out {a.out}"
        f" --step-range={a.step_range} --lr {a.lr} --decay-start {a.decay_start}"
        f" --normalisation {a.normalisation}"
    )
    meta = tune_decoder(
        a.init,
        a.data,
        a.steps,
        a.out,
        step_log2_range=parse_step_range(a.step_range),
        batch=a.batch,
        patch=a.patch,
        lr=a.lr,
        decay_start=a.decay_start,
        seed=a.seed,
        resume=a.resume,
        progress=not quiet(a),
        device=a.device,
        command=command,
        normalisation=a.normalisation,
    )
    say(a, f"decoder of {a.init} tuned {a.steps} steps -> {Path(a.out) / 'model.safetensors'}")
    _say_ship_hint(a, meta)
    return 0


def cmd_tune_encoder(a: argparse.Namespace) -> int:
    from satcodec.codec.training import tune_encoder

    distill = a.steps // 2 if a.distill_steps is None else a.distill_steps
    command = (
        f"satcodec tune-encoder --init {a.init} --data DATA --steps {a.steps} --out {a.out}"
        f" --analysis-hidden {a.analysis_hidden} --distill-steps {distill} --lr {a.lr}"
        + (f" --analysis-activation {a.analysis_activation}" if a.analysis_activation else "")
    )
    meta = tune_encoder(
        a.init,
        a.data,
        a.steps,
        a.out,
        analysis_hidden=a.analysis_hidden,
        analysis_activation=a.analysis_activation,
        distill_steps=distill,
        batch=a.batch,
        patch=a.patch,
        lr=a.lr,
        seed=a.seed,
        resume=a.resume,
        progress=not quiet(a),
        device=a.device,
        command=command,
    )
    c = meta["complexity"]
    say(
        a,
        f"encoder of {a.init} retrained at N={a.analysis_hidden} "
        f"({c['encoder_mac_per_pixel']:.0f} MAC/px) -> {Path(a.out) / 'model.safetensors'}",
    )
    _say_ship_hint(a, meta)
    return 0


def cmd_ship_codec(a: argparse.Namespace) -> int:
    from satcodec.shipping import ship_codec

    tick = progress(a, "ship: measuring", unit="encode")
    extra = {"progress": tick} if tick else {}  # -q: the plain call
    path = ship_codec(a.run, a.name, a.data, a.rates, a.default, dest=a.dest, **extra)
    say(a, path.with_suffix(".md").read_text().rstrip("\n"))
    say(a, f"shipped {path}")
    return 0


def cmd_ship_ground(a: argparse.Namespace) -> int:
    from satcodec.shipping import ship_ground

    print(ship_ground(a.run, a.kind, a.name, dest=a.dest))
    return 0


def _rates(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"comma-separated bpp values, got {text!r}") from None


def add_parsers(sub: argparse._SubParsersAction) -> None:
    t = add_command(sub, "train", cmd_train, "train a codec at one rate–distortion trade-off")
    t.add_argument("--data", required=True, help="folder of GeoTIFF scenes, or a scene pack (.npz)")
    t.add_argument("--lmbda", type=float, required=True)
    t.add_argument("--steps", type=int, required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--optimizer", default="adam")
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--schedule", default="decay")
    t.add_argument(
        "--decay-start", type=float, default=0.9, help="decay schedule: fraction of the run"
    )
    t.add_argument(
        "--decay-final", type=float, default=0.3, help="decay schedule: lr multiplier after it"
    )
    t.add_argument("--device", default="cpu", help="cpu, or cuda to train on a GPU")
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--patch", type=int, default=128)
    t.add_argument("--hidden", type=int, default=64)
    t.add_argument(
        "--latent", type=int, help="latent channels M (default 192; with --init: widen to M)"
    )
    t.add_argument("--activation", default="sgdn", choices=ACTIVATIONS)
    t.add_argument(
        "--stride",
        type=int,
        default=16,
        choices=[8, 16],
        help="latent stride: 16 (four stages) or 8 (three; more latents per pixel, for high rates)",
    )
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--resume", action="store_true")
    t.add_argument(
        "--init", help="start from a trained model (name or .safetensors path) instead of random"
    )
    t.add_argument(
        "--val-data",
        help="folder of held-out GeoTIFFs (or a scene pack) validated per sensor family, never "
        "trained on (e.g. bench/data/heldout)",
    )
    t.add_argument(
        "--normalisation",
        default="bit-depth",
        choices=NORMALISATIONS,
        help="each band's peak in the training patches: the bit depth's (default) or the one "
        "the encoder's texture rule gives it",
    )

    td = add_command(
        sub,
        "tune-decoder",
        cmd_tune_decoder,
        "fine-tune a model's decoder at the quantisation steps rate control uses "
        "(board side and bitstream unchanged)",
    )
    td.add_argument("--init", required=True, help="trained model (name or .safetensors path)")
    td.add_argument("--data", required=True, help="folder of GeoTIFF scenes, or a scene pack")
    td.add_argument("--steps", type=int, required=True)
    td.add_argument("--out", required=True)
    td.add_argument(
        "--step-range",
        default="-2,1",
        help="LO,HI: quantisation steps 2^U(LO, HI) per patch (default -2,1: 0.25 to 2)",
    )
    td.add_argument("--lr", type=float, default=3e-4)
    td.add_argument("--decay-start", type=float, default=0.7, help="lr x0.3 from this fraction")
    td.add_argument("--batch", type=int, default=8)
    td.add_argument("--patch", type=int, default=128)
    td.add_argument("--seed", type=int, default=0)
    td.add_argument("--device", default="cpu", help="cpu, or cuda to train on a GPU")
    td.add_argument("--resume", action="store_true")
    td.add_argument(
        "--normalisation",
        default="texture",
        choices=NORMALISATIONS,
        help="each band's peak in the training patches: the encoder's default (texture) or "
        "the bit depth's",
    )

    te = add_command(
        sub,
        "tune-encoder",
        cmd_tune_encoder,
        "train a narrower (faster) analysis for a model's synthesis, which stays frozen "
        "(same ground decoder, new model id)",
    )
    te.add_argument("--init", required=True, help="trained model (name or .safetensors path)")
    te.add_argument("--data", required=True, help="folder of GeoTIFF scenes, or a scene pack")
    te.add_argument("--steps", type=int, required=True, help="all steps, both phases")
    te.add_argument("--out", required=True)
    te.add_argument(
        "--analysis-hidden", type=int, default=32, help="filters of the new analysis (default 32)"
    )
    te.add_argument(
        "--analysis-activation",
        choices=ACTIVATIONS,
        default="",
        help="activation of the new analysis (default: the init's); relu: no division on "
        "board, every layer in onnxruntime's fast layout and int8 end to end",
    )
    te.add_argument(
        "--distill-steps",
        type=int,
        help="first phase: match the init's latents (default: half the steps); "
        "then rate–distortion at the init's λ",
    )
    te.add_argument("--lr", type=float, default=1e-3)
    te.add_argument("--batch", type=int, default=8)
    te.add_argument("--patch", type=int, default=128)
    te.add_argument("--seed", type=int, default=0)
    te.add_argument("--device", default="cpu", help="cpu, or cuda to train on a GPU")
    te.add_argument("--resume", action="store_true")

    sh = add_group(sub, "ship", "put a finished training run into the package, with a model card")
    c = add_command(
        sh,
        "codec",
        cmd_ship_codec,
        "ship a codec run (train, tune-decoder, tune-encoder): weights + a card with measured RD",
    )
    c.add_argument(
        "run", help="the run folder (--out of satcodec train / tune-decoder / tune-encoder)"
    )
    c.add_argument("--name", required=True)
    c.add_argument("--data", required=True, help="folder holding the run's validation scenes")
    c.add_argument(
        "--rates",
        type=_rates,
        default="0.5,1,1.5,2,3",
        help="target bpp to measure, comma-separated",
    )
    c.add_argument("--default", action="store_true", help="mark as the default model")
    c.add_argument("--dest", help="folder to ship into (default: satcodec/models)")
    for kind, what in (
        ("joint", "ship a joint codec run (ground-train joint)"),
        ("denoiser", "ship a ground denoiser run (ground-train denoiser)"),
    ):
        g = add_command(sh, kind, cmd_ship_ground, what + ": its weights + a card")
        g.add_argument("run", help="the run folder (--out of satcodec ground-train)")
        g.add_argument("--name", required=True)
        g.add_argument(
            "--dest", help="folder to ship into (default: satcodec/ground_segment/weights[/codec])"
        )
        g.set_defaults(kind=kind)
