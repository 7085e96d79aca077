"""Shipping: turn a finished training run into weights in the package, with a model card.

One path for every kind (``satcodec ship codec|joint|denoiser``):

* :func:`install` -- the only writer: the weights go into the destination folder through a
  temporary file renamed into place (:func:`satcodec.fileutil.atomic_path`), the card is
  written atomically by :func:`write_card` just before the weights are renamed. A crash or an
  error anywhere before that (measuring, building the card, writing it) leaves the package as
  it was: never a half-written weights file, never weights without their card.
* :func:`ship_codec` -- a ``satcodec train`` / ``tune-decoder`` run: measures the run's
  validation scenes with real bitstreams (native rate, PSNR at several rates beside JPEG 2000
  at the same rate, the entropy coder's overhead) and writes ``NAME.safetensors`` + ``NAME.md``
  into ``satcodec/models`` (or ``dest``).
* :func:`ship_ground` -- a ``satcodec ground-train denoiser|joint`` run: its weights as they
  are, with a card built from the run's meta, into ``satcodec/ground_segment/weights`` (joint
  codecs under ``codec/``), or ``dest``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from satcodec.fileutil import atomic_open, atomic_path

__all__ = ["DEFAULT_RATES", "install", "ship_codec", "ship_ground", "write_card"]

DEFAULT_RATES: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 3.0)
GROUND_KINDS = ("denoiser", "joint")

R = TypeVar("R")


def write_card(path: str | Path, text: str) -> None:
    """Write a model card (markdown) atomically."""
    with atomic_open(path, "w") as fh:
        fh.write(text if text.endswith("\n") else text + "\n")


def install(weights: str | Path, write: Callable[[Path], R], card: Callable[[R], str]) -> R:
    """Install ``weights`` (a ``.safetensors`` path in the package) and its card beside it.

    ``write(tmp)`` writes the weights into a temporary file of the destination folder and
    returns what the card needs (a model id, ...); ``card(result)`` gives the card's text,
    written to ``weights`` with suffix ``.md`` by :func:`write_card`; then the weights are
    renamed into place. Returns ``write``'s result.
    """
    weights = Path(weights)
    with atomic_path(weights, suffix=".safetensors") as tmp:
        result = write(tmp)
        write_card(weights.with_suffix(".md"), card(result))
    return result


# --- codec runs -----------------------------------------------------------------------------


def _train_command(
    lmbda: float | None, steps: int, run: Path, init: dict | None, config, cfg: dict
) -> str:
    """The ``satcodec train`` line that reproduces this run (flags only where not default)."""
    cmd = f"satcodec train --data DATA --lmbda {lmbda} --steps {steps} --out {run}"
    if init:
        cmd += f" --init {init['model']}"
    if config.latent != 192:
        cmd += f" --latent {config.latent}"
    if config.downsampling != 16 and not init:  # a fine-tune takes its init's stride
        cmd += f" --stride {config.downsampling}"
    if float(cfg["lr"]) != 1e-3:
        cmd += f" --lr {cfg['lr']}"
    return cmd


def earlier_ids_decoded(model: Any, previous: Path, run_meta: dict[str, Any]) -> list[str]:
    """The ids of earlier models whose streams ``model`` decodes because its analysis is
    theirs, tensor for tensor: a decoder-only run's init, and the model shipped under the same
    name before (``previous``), compared here, with the ids it decoded in turn. An archive of
    streams then still decodes after a re-tuned decoder replaces the one that made them."""
    import numpy as np

    from satcodec.codec.registry import decoded_model_ids, load_weights, weights_id

    ids: list[str] = []
    init = run_meta.get("init")
    if run_meta.get("decoder_only") and isinstance(init, dict) and init.get("model_id"):
        ids.append(str(init["model_id"]))  # tune-decoder froze the analysis: same symbols
    if previous.exists():
        old = load_weights(previous)
        new = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
        keys = [k for k in new if k.startswith("analysis_transform.")]
        same = (
            old.config == model.config
            and bool(keys)
            and all(
                # in the stored precision (save_model writes float16)
                k in old.state and np.array_equal(new[k].astype(old.state[k].dtype), old.state[k])
                for k in keys
            )
        )
        if same:
            ids += [old.info.model_id, *decoded_model_ids(old.info)]
    own = weights_id(
        {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    )
    return [i for i in dict.fromkeys(ids) if i != own]


def _rates_text(rates: Sequence[float]) -> str:
    return ",".join(f"{float(r):g}" for r in rates)


def ship_codec(
    run: str | Path,
    name: str,
    data: str | Path,
    rates: Sequence[float] = DEFAULT_RATES,
    default: bool = False,
    *,
    dest: str | Path | None = None,
    val_scenes: Sequence[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Ship a codec training run as ``dest/NAME.safetensors`` + ``NAME.md``; returns the
    weights path. ``progress(done, total)`` follows the measurements (scene x rate).

    Reads ``RUN/checkpoint.safetensors`` (or, for a run brought back without it, the final
    ``RUN/model.safetensors``), ``RUN/model.json`` (``lmbda.json`` for older runs) and
    ``RUN/metrics.jsonl``. Measures on ``val_scenes`` (default: the run's, else the default
    validation scenes) found in ``data``. ``dest``: the folder (default ``satcodec/models``).
    """
    import numpy as np

    from satcodec.api import decode, encode
    from satcodec.codec.models import ModelConfig, ReducedVAE, complexity
    from satcodec.codec.registry import DECODES_KEY, MODELS_DIR, load_model, save_model
    from satcodec.codec.training import DEFAULT_VAL
    from satcodec.coding import Encoder, array_window_reader
    from satcodec.entropy import coding_overhead, estimate_scales
    from satcodec.entropy.context import encode_symbols_context
    from satcodec.errors import RateControlError
    from satcodec.evaluation.anchors import jpeg2000_at_bpp
    from satcodec.metrics import bits_per_pixel, psnr
    from satcodec.raster import open_raster
    from satcodec.train import load_checkpoint

    run = Path(run)
    rates = [float(r) for r in rates]
    folder = Path(dest) if dest is not None else MODELS_DIR
    ckpt = run / "checkpoint.safetensors"
    # the architecture from the run's final weights file (a rung may have a wider latent)
    final = run / "model.safetensors"
    config = load_model(final)[1].config if final.exists() else ModelConfig()
    model = ReducedVAE(config)
    # model.json is written by `satcodec train` at the end of a run; lmbda.json by older runs
    run_meta: dict[str, Any] = {}
    for meta_name in ("model.json", "lmbda.json"):
        if (run / meta_name).exists():
            run_meta = {**json.loads((run / meta_name).read_text()), **run_meta}
    if ckpt.exists():
        extra = load_checkpoint(ckpt, model)
    else:  # a run brought back without its checkpoint (bench/train_gpu.py): final weights
        model.load_state_dict(load_model(final)[0].state_dict())
        keys = ("optimizer", "lr", "schedule", "seed")
        extra = {"step": run_meta["steps"], "config": {k: run_meta[k] for k in keys}}
    model.eval()
    cfg = extra["config"]
    log = [
        json.loads(line)
        for line in (run / "metrics.jsonl").read_text().splitlines()
        if line.strip()
    ]
    lmbda = float(run_meta["lmbda"]) if "lmbda" in run_meta else None
    init = run_meta.get("init")  # {"model", "model_id"} when fine-tuned from another rung
    val_names = list(val_scenes or run_meta.get("val_scenes") or DEFAULT_VAL)

    rows, native, overheads, context_bits = [], [], [], []
    # measured with a scratch copy of the weights, outside the package
    with tempfile.TemporaryDirectory(prefix="satcodec-ship-") as scratch:
        tmp = Path(scratch) / f"{name}.safetensors"
        save_model(tmp, model, {})
        net, info = load_model(tmp)
        total = len(val_names) * (len(rates) + 1)
        for k, scene in enumerate(val_names):
            if progress:
                progress(k * (len(rates) + 1), total)
            with open_raster(Path(data) / scene) as r:
                arr, bits = r.read(), r.meta.bit_depth
            stream = encode(arr, quality=50, model=tmp)
            native.append(bits_per_pixel(len(stream), arr.size))
            enc = Encoder(
                net,
                info,
                array_window_reader(arr),
                height=arr.shape[1],
                width=arr.shape[2],
                bands=1,
                dtype=str(arr.dtype),
                bit_depth=bits,
                nodata=None,
            )
            for t in enc.latent_tiles:
                sym, idx = enc.quantise(t.latents, 1.0)
                overheads.append(coding_overhead(sym, estimate_scales(t.latents)))
                context_bits.append(8 * len(encode_symbols_context(sym, idx)))
            for rate in rates:
                try:
                    stream = encode(arr, bpp=rate, model=tmp)
                except Exception as exc:  # noqa: BLE001 - out of this model's range
                    rows.append((scene, rate, None, None, None, str(exc)))
                    continue
                out, _ = decode(stream, model_paths=[tmp])
                bpp = bits_per_pixel(len(stream), arr.size)
                try:
                    j2k = psnr(arr[0], jpeg2000_at_bpp(arr[0], bits, bpp).decoded, bits)
                except RateControlError:  # the anchor cannot hit this rate on this scene
                    j2k = None
                rows.append((scene, rate, bpp, psnr(arr, out, bits), j2k, ""))
                if progress:
                    progress(k * (len(rates) + 1) + 1 + rates.index(rate), total)
        if progress:
            progress(total, total)
    ideal = sum(o["ideal_bits"] for o in overheads)
    actual = sum(o["actual_bits"] for o in overheads)
    meta: dict[str, Any] = {
        "lmbda": lmbda,
        "steps": extra["step"],
        "optimizer": cfg["optimizer"],
        "lr": cfg["lr"],
        "schedule": cfg["schedule"],
        "native_bpp": float(np.mean(native)),
        "default": default,
        "val_scenes": val_names,
    }
    if init:
        meta["init"] = init
    decodes = earlier_ids_decoded(model, folder / f"{name}.safetensors", run_meta)
    if decodes:
        meta[DECODES_KEY] = decodes
    for key in (
        "batch",
        "patch",
        "device",
        "gpu",
        "history",
        "decoder_only",
        "quant_steps",
        "normalisation",
        "encoder_only",
        "distill_steps",
    ):
        if key in run_meta:
            meta[key] = run_meta[key]
    # measured RD (mean over the held-out scenes) lets rate control pick the best model
    by_rate: dict[float, list[tuple[float, float]]] = {}
    for _scene, _rate, bpp, p_ours, _p_j2k, _err in rows:
        if bpp is not None:
            by_rate.setdefault(_rate, []).append((bpp, p_ours))
    meta["rd"] = [
        [float(np.mean([b for b, _ in v])), float(np.mean([q for _, q in v]))]
        for _, v in sorted(by_rate.items())
    ]
    c = complexity(model)
    val = [r for r in log if "val/bpp" in r]
    ship_line = (
        f"satcodec ship codec {run} --name {name} --data DATA"
        + (" --default" if default else "")
        + (f" --rates {_rates_text(rates)}" if tuple(rates) != DEFAULT_RATES else "")
    )

    def card(model_id: str) -> str:
        mc = model.config
        lines = [
            f"# Model card: {name}",
            "",
            f"- model id: `{model_id}`",
            f"- architecture: ReducedVAE, stride-{mc.downsampling} latents "
            f"({mc.stages} stages), N={mc.hidden}"
            + (f" (analysis N={mc.analysis_hidden})" if mc.analysis_hidden else "")
            + f", M={mc.latent}, activation "
            f"{mc.activation}"
            + (
                f" (analysis {mc.analysis_activation})"
                if mc.analysis_activation and mc.analysis_activation != mc.activation
                else ""
            )
            + f", input gain {mc.input_gain}",
            f"- encoder: {c['encoder_mac_per_pixel']:.0f} MAC/pixel, {c['encoder_params']:,} "
            f"parameters; decoder: {c['decoder_mac_per_pixel']:.0f} MAC/pixel, "
            f"{c['decoder_params']:,} parameters",
            f"- training: λ = {lmbda} (loss = bpp + λ·4095²·MSE on the bit-depth-normalised "
            f"range), {extra['step']} steps, batch {run_meta.get('batch', 8)} of "
            f"{run_meta.get('patch', 128)}² single-band crops, {cfg['optimizer']} lr {cfg['lr']} "
            f"schedule {cfg['schedule']}, seed {cfg['seed']}, fp32, "
            + (f"on one {run_meta['gpu']} (TF32 off)" if run_meta.get("gpu") else "1 CPU thread")
            + (
                f", initialised from {init['model']} (id `{init['model_id'][:12]}`)"
                if init
                else ", from random weights"
            ),
            *(
                [
                    "- last phase: decoder only (`satcodec tune-decoder`): the analysis (board "
                    "side) frozen, latents really rounded at quantisation steps "
                    f"{run_meta['quant_steps'].removesuffix(', latents rounded')}; "
                    + (
                        "patches as the encoder feeds the analysis (band mean removed, peaks by "
                        "texture: bitstream flag 0x0004); "
                        if run_meta.get("normalisation") == "texture"
                        else ""
                    )
                    + "MSE loss; the bitstream of an image is the init's symbol for symbol"
                ]
                if run_meta.get("decoder_only")
                else []
            ),
            *(
                [
                    "- decodes the streams of the earlier models with the same analysis "
                    "(ids "
                    + ", ".join(f"`{i[:12]}`" for i in decodes)
                    + "): their bitstreams are this model's, symbol for symbol"
                ]
                if decodes
                else []
            ),
            *(
                [
                    "- last phases: encoder only (`satcodec tune-encoder`): a narrower analysis "
                    f"(N={mc.analysis_hidden}, {mc.encoder_activation}) first matched the init's "
                    "latents "
                    f"({run_meta.get('distill_steps')} steps), then trained on the rate–"
                    "distortion loss at the init's λ with the init's synthesis frozen: the "
                    "ground decoder is the init's, weight for weight"
                ]
                if run_meta.get("encoder_only")
                else []
            ),
            "- data: the real rasters of the project's development set (Pleiades, "
            "WorldView-2/3, Landsat 7/8, Sentinel-1/2), every band a sample, nodata collars "
            "skipped; held out by scene: "
            + ", ".join(val_names)
            + "; left out: the GPL-licensed rsgislib cube and the 2x pixel-duplicated "
            "WorldView-2 MS chip",
            f"- native rate (quality 50, quantisation step 1 at the bit depth's peak) on the held-out "
            "scenes: "
            f"{np.mean(native):.3f} bpp; rate control scales the step about one octave either "
            "side",
            "- entropy coding overhead against the ideal code length (continuous-scale "
            f"Laplacian) on the held-out scenes' latents: {100 * (actual / ideal - 1):.2f} % "
            "(table snapping + 16-bit counts + ANS termination); the cross-channel context "
            "model (bitstream flag 0x0001, the default) codes the same latents in "
            f"{100 * (1 - sum(context_bits) / actual):.1f} % fewer bits than that per-channel "
            "coder",
            "",
            "## Rate–distortion on the held-out scenes (real bitstreams, PSNR peak 4095)",
            "",
            "| scene | target bpp | file bpp | satcodec PSNR dB | JPEG 2000 PSNR dB (same rate) |",
            "|---|---:|---:|---:|---:|",
        ]
        for scene, rate, bpp, p_ours, p_j2k, err in rows:
            if bpp is None:
                lines.append(f"| {scene} | {rate} | – | out of range: {err} | |")
            else:
                j2k = "–" if p_j2k is None else f"{p_j2k:.2f}"
                lines.append(f"| {scene} | {rate} | {bpp:.3f} | {p_ours:.2f} | {j2k} |")
        if run_meta.get("history"):
            lines += ["", "## Training history (every phase, oldest first)", ""]
            lines += ["| phase | λ | steps | batch | lr | device |", "|---|---:|---:|---|---:|---|"]
            for ph in run_meta["history"]:
                kind = f" ({ph['kind']})" if ph.get("kind") else ""
                lines.append(
                    f"| {ph['model']}{kind} | {ph['lmbda']} | {ph['steps']} | {ph['batch']} "
                    f"| {ph['lr']} | {ph['device']} |"
                )
        if val:
            lines += ["", f"Training-time validation (likelihood rate, rounded latents): {val[-1]}"]
        lines += [
            "",
            "## Reproduce",
            "",
            "```sh",
            run_meta.get("command")
            or _train_command(lmbda, extra["step"], run, init, model.config, cfg),
            ship_line,
            "```",
        ]
        return "\n".join(lines) + "\n"

    weights = folder / f"{name}.safetensors"
    install(weights, lambda tmp: save_model(tmp, model, meta), card)
    return weights


# --- ground-segment runs (denoiser, joint codec) ----------------------------------------------


def _ground_card(run: Path, kind: str, name: str, meta: dict[str, Any]) -> str:
    if kind == "denoiser":
        title = "ground denoiser"
        how = (
            f"satcodec ground-train denoiser --data DATA --steps {meta['steps']} "
            f"--channels {meta['channels']} --layers {meta['layers']} --out {run}"
        )
        if meta.get("init"):
            how += f" --init {meta['init']} --lr {meta['lr']}"
        if meta.get("codec_models"):
            how += f" --codec-models {','.join(meta['codec_models'])}"
    else:
        title = "joint (on-board denoising) codec"
        how = meta.get("command") or (
            f"satcodec ground-train joint --data DATA --lmbda {meta['lmbda']} "
            f"--steps {meta['steps']} --init {meta['init'].split()[0]} --out {run}"
        )
    rows = "\n".join(f"- {k}: {v}" for k, v in meta.items() if k not in ("train_scenes", "history"))
    if meta.get("history"):  # every training phase, oldest first
        rows += "\n\n| phase | λ | steps | batch | lr | device |\n|---|---:|---:|---|---:|---|\n"
        rows += "\n".join(
            f"| {h['model']}{' (' + h['kind'] + ')' if h.get('kind') else ''} | {h['lmbda']} "
            f"| {h['steps']} | {h['batch']} | {h['lr']} | {h['device']} |"
            for h in meta["history"]
        )
    stage = meta.get("denoising_stage")
    start = (
        f"Started as the sequential chain: the codec {meta['init'].split()[0]}, then the ground "
        f"denoiser {stage['init']} as a denoising stage with the {stage['sensor']} noise "
        "(a, b) built in; then "
        + (
            "its decoder (synthesis and stage) trained on noisy input against the clean target, "
            "the board side kept as it was"
            if meta.get("decoder_only")
            else "trained end to end, board side included, on noisy input against the clean target"
        )
        + ". For that instrument's images only.\n\n"
        if stage and kind == "joint"
        else ""
    )
    return (
        f"# {name}: {title}\n\n{start}{rows}\n- train scenes: "
        f"{', '.join(meta.get('train_scenes', []))}\n\n"
        "Noise during training is simulated (signal-dependent Gaussian, see the module "
        "docstring of satcodec.ground_segment.training); the clean targets are real rasters, "
        "which carry their own sensor noise. Weights stored as float16 safetensors.\n\n"
        f"## Reproduce\n\n```sh\n{how}\nsatcodec ship {kind} {run} --name {name}\n```\n"
    )


def ship_ground(run: str | Path, kind: str, name: str, *, dest: str | Path | None = None) -> Path:
    """Ship a ``ground-train denoiser`` (``kind="denoiser"``) or ``ground-train joint``
    (``kind="joint"``) run: its weights as they are, with a card built from the run's meta.
    ``dest``: the folder (default ``satcodec/ground_segment/weights``, joint codecs in its
    ``codec/``). Returns the weights path."""
    from satcodec.errors import ConfigError
    from satcodec.ground_segment import denoiser

    if kind not in GROUND_KINDS:
        raise ConfigError(f"a ground run is one of {', '.join(GROUND_KINDS)}, got {kind!r}")
    run = Path(run)
    stem = "denoiser" if kind == "denoiser" else "model"
    src, meta = run / f"{stem}.safetensors", json.loads((run / f"{stem}.json").read_text())
    if dest is not None:
        folder = Path(dest)
    else:  # read at call time: tests point the package folder elsewhere
        folder = denoiser.WEIGHTS_DIR / ("codec" if kind == "joint" else "")
    weights = folder / f"{name}.safetensors"
    install(
        weights,
        lambda tmp: shutil.copyfile(src, tmp),
        lambda _: _ground_card(run, kind, name, meta),
    )
    return weights
