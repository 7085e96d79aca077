"""Rate–distortion training of the reduced codec on GeoTIFF folders, with the shared trainer."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from satcodec.codec.config import ACTIVATIONS
from satcodec.codec.data import (
    PatchSampler,
    Scene,
    band_samples,
    load_named_scenes,
    load_scenes,
    native_grid,
)
from satcodec.codec.families import FAMILY_KEYS, band_family
from satcodec.codec.models import ModelConfig, ReducedVAE, complexity, widen_latent
from satcodec.codec.normalisation import max_peak_shift_down
from satcodec.codec.registry import load_model, save_model
from satcodec.errors import ConfigError
from satcodec.train import TrainConfig, Trainer

# Distortion is MSE on the normalised range scaled to a 12-bit word, so λ means the same for
# every bit depth: loss = bpp + λ · 4095² · MSE(x/peak).
DISTORTION_PEAK = 4095.0

# Held out from training, by scene: the demo scene and a second Pleiades scene.
DEFAULT_VAL = ["shareloc_pleiades-pan_ventoux.tif", "shareloc_pleiades-pan_giza.tif"]
# Left out entirely: GPL-licenced rsgislib cube and the 2x pixel-duplicated WorldView-2 MS chip.
DEFAULT_EXCLUDE = ["rsgislib_*", "solaris-spacenet6_worldview2-ms4_*"]
# Never trained on (DEFAULT_EXCLUDE), so they validate, per family, what the pan scenes above
# cannot: the Sentinel-2 cube (VNIR and red-edge / SWIR bands) and the WorldView-2 MS chip
# (VNIR, on its native grid). Used when the data hold them and the run does not train on them.
FAMILY_VAL = [
    "rsgislib_sentinel2-sr-10band_aberystwyth.tif",
    "solaris-spacenet6_worldview2-ms4_rotterdam.tif",
]


def rd_loss(lmbda: float):
    def loss_fn(
        model: torch.nn.Module, batch: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        out = model(batch)
        pixels = batch.shape[-1] * batch.shape[-2]
        bpp = out["bits"].mean() / pixels
        mse = torch.mean((out["x_hat"] - batch) ** 2)
        loss = bpp + lmbda * DISTORTION_PEAK**2 * mse
        psnr = -10 * torch.log10(mse.detach().clamp_min(1e-12))
        return loss, {"bpp": float(bpp.detach()), "psnr": float(psnr)}

    return loss_fn


# Quantisation steps a decoder fine-tune draws from, per patch: 2^U(LO, HI). Rate control
# picks the step; set the range to cover the use. Measured: the default codec codes ventoux
# at 1.5 / 2 bpp with steps 0.53 / 0.35; on the chains' noisy crops joint-s8-l1e-3 codes
# 0.5-2 bpp at 1.9-0.35. `satcodec tune-decoder` defaults to (-2, 1); these are the joint
# trainer's defaults.
STEP_LOG2_LO, STEP_LOG2_HI = -1.0, 1.0


def parse_step_range(text: str) -> tuple[float, float]:
    """``"LO,HI"`` (log2 of the quantisation step) -> (LO, HI); :class:`ConfigError` if malformed."""
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--step-range takes LO,HI (log2 of the step), got {text!r}") from None
    if not -8 <= lo < hi <= 8:
        raise ConfigError(f"--step-range needs -8 <= LO < HI <= 8, got {text!r}")
    return lo, hi


def decoder_loss():
    """Distortion of the decoder alone: ``b["noisy"]`` in (the clean patch itself for a codec,
    the noisy one for a joint model), ``b["clean"]`` as the target.

    The analysis (board side) is frozen, so the latents and the rate stay those of the model
    it came from; the latents are really rounded at the patch's quantisation step
    ``b["step"]`` (as the coder does at some rate), not replaced by additive noise: the
    decoder learns what it will be given.
    """

    def loss_fn(model: torch.nn.Module, b: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        mean = b["noisy"].mean(dim=(2, 3), keepdim=True)
        q = b["step"].view(-1, 1, 1, 1)
        with torch.no_grad():
            y = model.analysis_transform(b["noisy"] - mean)
            y_hat = torch.round(y / q) * q
        x_hat = model.restore(model.synthesis_transform(y_hat) + mean)
        mse = torch.mean((x_hat - b["clean"]) ** 2)
        psnr = -10 * torch.log10(mse.detach().clamp_min(1e-12))
        return DISTORTION_PEAK**2 * mse, {"psnr": float(psnr)}

    return loss_fn


def decoder_steps(
    step: int,
    size: int,
    seed: int,
    rank: int = 0,
    world: int = 1,
    log2_range: tuple[float, float] = (STEP_LOG2_LO, STEP_LOG2_HI),
) -> torch.Tensor:
    """Per-patch quantisation steps of global batch ``step`` (a function of (seed, step))."""
    lo, hi = log2_range
    out = [
        2.0 ** np.random.default_rng([seed, step, i, 313]).uniform(lo, hi)
        for i in range(rank, size, world)
    ]
    return torch.tensor(out, dtype=torch.float32)


@dataclass(frozen=True)
class ValPatch:
    """One validation crop: normalised pixels, the band's peak, where it comes from."""

    pixels: np.ndarray
    peak: float
    scene: str
    family: str | None  # satcodec.codec.families; None for a file it does not name
    primary: bool  # from the run's validation scenes (val/bpp, val/psnr), not FAMILY_VAL


def val_patches(
    scenes: list[Scene], size: int = 256, normalisation: str = "bit-depth", primary: bool = True
) -> list[ValPatch]:
    """Centre crops of every band of the validation scenes (on their native grid): ``size``²,
    or the largest multiple of 16 a smaller scene holds (none below 64)."""
    out = []
    for scene in scenes:
        scene = native_grid(scene)
        for b, s in enumerate(band_samples(scene, normalisation=normalisation)):
            h, w = s.pixels.shape
            side = min(size, h, w) // 16 * 16
            if side < 64:
                continue
            y, x = (h - side) // 2, (w - side) // 2
            crop = s.pixels[y : y + side, x : x + side]
            out.append(ValPatch(crop, s.peak, scene.name, band_family(scene.name, b), primary))
    return out


def rd_validation(patches: list[ValPatch]):
    """Mean rate (likelihood bits, rounded latents) and PSNR (normalised range) over the
    primary patches (``bpp``, ``psnr``) and per sensor family (``vnir/bpp``, ...; ``other/``
    for held-out scenes of no known family)."""

    def val_fn(model: torch.nn.Module) -> dict[str, float]:
        measured = []
        device = next(model.parameters()).device
        for p in patches:
            x = torch.from_numpy(p.pixels)[None, None].to(device)
            out = model(x)  # eval mode: rounded latents
            mse = float(torch.mean((out["x_hat"] - x) ** 2))
            measured.append(
                (p, float(out["bits"].sum()) / p.pixels.size, -10 * np.log10(max(mse, 1e-12)))
            )
        groups = {"": [m for m in measured if m[0].primary]}
        for family, key in FAMILY_KEYS.items():
            groups[f"{key}/"] = [m for m in measured if m[0].family == family]
        # held-out scenes of no known family (a user's own --val-data) are not dropped
        groups["other/"] = [m for m in measured if m[0].family is None and not m[0].primary]
        metrics = {}
        for prefix, items in groups.items():
            if items:
                metrics[f"{prefix}bpp"] = float(np.mean([b for _, b, _ in items]))
                metrics[f"{prefix}psnr"] = float(np.mean([q for _, _, q in items]))
        return metrics

    return val_fn


def fit_rd(
    model: torch.nn.Module,
    data: str | Path,
    lmbda: float,
    steps: int,
    out: str | Path,
    *,
    optimizer: str = "adam",
    lr: float = 1e-3,
    batch: int = 8,
    patch: int = 128,
    seed: int = 0,
    resume: bool = False,
    val_scenes: list[str] | None = None,
    exclude: list[str] | None = None,
    schedule: str = "decay",
    schedule_kwargs: dict[str, float] | None = None,
    val_every: int = 1000,
    ckpt_every: int = 250,
    progress: bool = True,
    device: str = "cpu",
    scenes: list[Scene] | None = None,
    normalisation: str = "bit-depth",
    family_val: bool = True,
    val_data: str | Path | None = None,
) -> tuple[Trainer, dict[str, Any]]:
    """Rate–distortion training of any codec ``model`` (``forward`` -> ``x_hat``, ``bits``).

    One recipe for every codec family (scenes, held-out split, sampler, loss, trainer), so
    models compared against each other are trained the same way. Returns the trainer and the
    training metadata (a model card's facts). ``scenes``: the scenes of ``data`` already
    loaded (with the default exclusions), so a caller that read them need not read them again.
    ``normalisation``: each band's peak, as :func:`~satcodec.codec.data.band_samples`
    (``"texture"``: the peaks the encoder's default normalisation gives it at inference).

    Validation reports the run's validation scenes (``val/bpp``, ``val/psnr``) and each
    sensor family apart (``val/vnir/psnr``, ...: :mod:`satcodec.codec.families`), adding the
    never-trained :data:`FAMILY_VAL` scenes ``data`` holds (``family_val``) and every scene of
    ``val_data`` (a folder or scene pack of held-out scenes, e.g. ``bench/data/heldout``);
    neither ever trains.
    """
    val_names = DEFAULT_VAL if val_scenes is None else val_scenes
    if scenes is None:
        scenes = load_scenes(data, exclude=DEFAULT_EXCLUDE if exclude is None else exclude)
    train_scenes = [s for s in scenes if s.name not in val_names]
    val_split = [s for s in scenes if s.name in val_names]
    if not train_scenes:
        raise ValueError(f"no training scenes in {data}")
    trained = {s.name for s in train_scenes}
    family_split = []
    if family_val:
        wanted = [n for n in FAMILY_VAL if n not in trained and n not in val_names]
        family_split = load_named_scenes(data, wanted)
    if val_data is not None:
        held = load_scenes(val_data)
        both = sorted(trained & {s.name for s in held})
        if both:
            raise ConfigError(f"--val-data {val_data}: {', '.join(both)} also train")
        known = {s.name for s in family_split}
        family_split += [s for s in held if s.name not in known]
    # the encoder's cap on the texture gain for this analysis (smaller for ReLU)
    down = max_peak_shift_down(getattr(getattr(model, "config", None), "encoder_activation", None))
    sampler = PatchSampler(
        [
            b
            for s in train_scenes
            for b in band_samples(s, normalisation=normalisation, max_peak_shift_down=down)
        ],
        patch=patch,
    )

    def batch_fn(step: int, rank: int, world: int) -> torch.Tensor:
        return torch.from_numpy(sampler.batch(step, batch, seed=seed, rank=rank, world=world))

    cfg = TrainConfig(
        steps=steps,
        optimizer=optimizer,
        lr=lr,
        schedule=schedule,
        schedule_kwargs=schedule_kwargs or {},
        seed=seed,
        val_every=val_every,
        ckpt_every=ckpt_every,
        out_dir=str(out),
        resume=resume,
        progress=progress,
        device=device,
    )
    patches = val_patches(val_split, normalisation=normalisation) + val_patches(
        family_split, normalisation=normalisation, primary=False
    )
    val_fn = rd_validation(patches) if patches else None
    trainer = Trainer(model, rd_loss(lmbda), batch_fn, cfg, val_fn=val_fn)
    history = trainer.fit()
    final_val = next((r for r in reversed(history) if "val/bpp" in r), {})
    model.cpu()
    meta = {
        "lmbda": lmbda,
        "steps": steps,
        "batch": batch,
        "patch": patch,
        "optimizer": optimizer,
        "lr": lr,
        "schedule": schedule,
        "seed": seed,
        "normalisation": normalisation,
        "device": trainer.device.type,
        "train_scenes": [s.name for s in train_scenes],
        "val_scenes": [s.name for s in val_split],
        "family_val_scenes": [s.name for s in family_split],
        "val": {k: v for k, v in final_val.items() if k.startswith("val/")},
    }
    return trainer, meta


def train_codec(
    data: str | Path,
    lmbda: float,
    steps: int,
    out: str | Path,
    *,
    optimizer: str = "adam",
    lr: float = 1e-3,
    batch: int = 8,
    patch: int = 128,
    seed: int = 0,
    resume: bool = False,
    config: ModelConfig | None = None,
    val_scenes: list[str] | None = None,
    exclude: list[str] | None = None,
    schedule: str = "decay",
    val_every: int = 1000,
    ckpt_every: int = 250,
    progress: bool = True,
    init: str | Path | None = None,
    device: str = "cpu",
    schedule_kwargs: dict[str, float] | None = None,
    normalisation: str = "bit-depth",
    val_data: str | Path | None = None,
) -> dict[str, Any]:
    """Train a :class:`ReducedVAE` at rate–distortion trade-off ``lmbda``; write ``out/model.safetensors``.

    ``init`` (a model name or weights path) starts from trained weights instead of random
    ones: a neighbouring rung of the rate ladder converges in a fraction of the steps.
    Its architecture is used; ``config`` may only differ by a wider latent
    (:func:`~satcodec.codec.models.widen_latent`: same function at step 0).
    """
    out = Path(out)
    init_info = None
    if init is not None:
        source, init_info = load_model(init)
        if config is None:
            config = init_info.config
        widened = ModelConfig(**{**init_info.config.to_dict(), "latent": config.latent})
        if config != widened or config.latent < init_info.config.latent:
            raise ConfigError(
                f"--init {init}: its architecture {init_info.config} differs from {config} "
                "(only a wider latent can be grown from a trained model)"
            )
        model = widen_latent(source, config.latent, seed=seed)
    else:
        model = ReducedVAE(config or ModelConfig())
    trainer, meta = fit_rd(
        model,
        data,
        lmbda,
        steps,
        out,
        optimizer=optimizer,
        lr=lr,
        batch=batch,
        patch=patch,
        seed=seed,
        resume=resume,
        val_scenes=val_scenes,
        exclude=exclude,
        schedule=schedule,
        schedule_kwargs=schedule_kwargs,
        val_every=val_every,
        ckpt_every=ckpt_every,
        progress=progress,
        device=device,
        normalisation=normalisation,
        val_data=val_data,
    )
    meta["complexity"] = complexity(model)
    if init_info is not None:
        meta["init"] = {"model": init_info.name, "model_id": init_info.model_id}
    if trainer.rank == 0:
        model_id = save_model(out / "model.safetensors", model, meta)
        (out / "model.json").write_text(json.dumps({"model_id": model_id, **meta}, indent=2))
        meta["model_id"] = model_id
    return meta


def fine_tune_config(
    steps: int,
    lr: float,
    decay_start: float,
    seed: int,
    ckpt_every: int,
    out: str | Path,
    resume: bool,
    progress: bool,
    device: str,
) -> TrainConfig:
    """The trainer settings of a fine-tune: adam, lr x0.3 from ``decay_start``, no validation."""
    return TrainConfig(
        steps=steps,
        lr=lr,
        schedule="decay",
        schedule_kwargs={"start": decay_start},
        seed=seed,
        val_every=0,
        ckpt_every=ckpt_every,
        out_dir=str(out),
        resume=resume,
        progress=progress,
        device=device,
    )


def tune_decoder(
    init: str | Path,
    data: str | Path,
    steps: int,
    out: str | Path,
    *,
    step_log2_range: tuple[float, float] = (-2.0, 1.0),
    batch: int = 8,
    patch: int = 128,
    lr: float = 3e-4,
    decay_start: float = 0.7,
    seed: int = 0,
    resume: bool = False,
    ckpt_every: int = 250,
    progress: bool = True,
    device: str = "cpu",
    command: str | None = None,
    normalisation: str = "texture",
) -> dict[str, Any]:
    """Fine-tune the decoder of a trained model at the quantisation steps rate control uses.

    A model is trained at step 1 (additive uniform noise), but rate control codes other
    rates by scaling the step, often to 0.3-0.6 at the top of a model's range, where its
    synthesis has never been trained. Here the analysis (board side) is frozen, the latents
    are really rounded at a step 2^U(``step_log2_range``) per patch, and the synthesis learns
    to reconstruct from them (:func:`decoder_loss`, MSE only: the rate cannot change). The
    bitstream of an image is the same symbol for symbol; only the model id differs.
    The patches are what the encoder feeds the analysis: each band less its mean, divided by
    the peak of ``normalisation`` (:func:`~satcodec.codec.data.band_samples`).
    Writes ``out/model.safetensors`` and ``out/model.json`` (for ``satcodec ship codec``).
    """
    out = Path(out)
    scenes = load_scenes(data, exclude=DEFAULT_EXCLUDE)
    train = [s for s in scenes if s.name not in DEFAULT_VAL]
    if not train:
        raise ConfigError(f"no training scenes in {data}")
    source, info = load_model(init)
    sampler = PatchSampler(
        [
            b
            for s in train
            for b in band_samples(
                s,
                normalisation=normalisation,
                max_peak_shift_down=max_peak_shift_down(source.config.encoder_activation),
            )
        ],
        patch=patch,
    )
    model = ReducedVAE(source.config)
    model.load_state_dict(source.state_dict())
    model.analysis_transform.requires_grad_(False)
    model.train()

    def batch_fn(step: int, rank: int, world: int) -> dict[str, torch.Tensor]:
        clean = torch.from_numpy(sampler.batch(step, batch, seed=seed, rank=rank, world=world))
        q = decoder_steps(step, batch, seed, rank, world, step_log2_range)
        return {"clean": clean, "noisy": clean, "step": q}

    cfg = fine_tune_config(steps, lr, decay_start, seed, ckpt_every, out, resume, progress, device)
    trainer = Trainer(model, decoder_loss(), batch_fn, cfg)
    trainer.fit()
    model.cpu().eval()
    lo, hi = step_log2_range
    phase = {
        "model": info.name,
        "kind": "decoder",
        "lmbda": info.meta.get("lmbda"),
        "steps": steps,
        "batch": f"{batch}x{patch}²",
        "lr": lr,
        "device": trainer.device.type,
        "normalisation": normalisation,
    }
    meta = {
        "lmbda": info.meta.get("lmbda"),
        "steps": steps,
        "batch": batch,
        "patch": patch,
        "device": trainer.device.type,
        "init": {"model": info.name, "model_id": info.model_id},
        "decoder_only": True,
        "quant_steps": f"2^U({lo}, {hi}) per patch",
        "normalisation": normalisation,
        "history": [*info.meta.get("history", []), phase],
        "complexity": complexity(model),
    }
    if command:
        meta["command"] = command
    if trainer.rank == 0:
        model_id = save_model(out / "model.safetensors", model, meta)
        (out / "model.json").write_text(json.dumps({"model_id": model_id, **meta}, indent=2))
        meta["model_id"] = model_id
    return meta


def distillation_loss(teacher: ReducedVAE):
    """Latent-matching loss of a narrower analysis: MSE between its latents and the teacher's
    on the same patch (latent units, where the quantiser's step is 1)."""
    teacher.eval().requires_grad_(False)

    def loss_fn(model: torch.nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, dict]:
        with torch.no_grad():
            target = teacher.analysis_transform(batch)
        mse = torch.mean((model.analysis_transform(batch) - target) ** 2)
        return mse, {"latent_mse": float(mse.detach())}

    return loss_fn


def tune_encoder(
    init: str | Path,
    data: str | Path,
    steps: int,
    out: str | Path,
    *,
    analysis_hidden: int = 32,
    analysis_activation: str = "",
    distill_steps: int | None = None,
    batch: int = 8,
    patch: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    resume: bool = False,
    ckpt_every: int = 250,
    progress: bool = True,
    device: str = "cpu",
    command: str | None = None,
) -> dict[str, Any]:
    """Train a narrower analysis transform (``analysis_hidden`` filters) for a trained model's
    synthesis, which stays frozen: a faster encoder for the same ground decoder.

    Why: the analysis runs on board and is most of the encoder's time (bench/results/
    throughput.md); the synthesis runs on the ground, where compute is not scarce. Two phases
    in ``out/distill`` and ``out/rd``, each resumable: the student first matches the
    teacher's latents (``distill_steps``, default ``steps // 2``), then trains on the model's
    own rate–distortion loss at the teacher's λ for the rest. Only the analysis learns, so
    every stream it writes decodes with the teacher's synthesis weights (a new model id, since
    the weights file differs). Writes ``out/model.safetensors`` and ``out/model.json``.
    """
    out = Path(out)
    teacher, info = load_model(init)
    lmbda = info.meta.get("lmbda")
    if lmbda is None:
        raise ConfigError(f"--init {init}: its card records no λ to train the encoder at")
    if not 1 <= analysis_hidden <= 1024:
        raise ConfigError(f"analysis width must be 1..1024, got {analysis_hidden}")
    if analysis_activation not in ("", *ACTIVATIONS):
        raise ConfigError(
            f"analysis activation {analysis_activation!r}: choose {', '.join(ACTIVATIONS)}"
        )
    distill_steps = steps // 2 if distill_steps is None else distill_steps
    if not 0 <= distill_steps <= steps:
        raise ConfigError(f"distill steps must be 0..{steps}, got {distill_steps}")
    config = ModelConfig(
        **{
            **info.config.to_dict(),
            "analysis_hidden": analysis_hidden,
            "analysis_activation": analysis_activation,
        }
    )
    what = f"analysis N={analysis_hidden}" + (
        f", {config.encoder_activation}" if analysis_activation else ""
    )
    model = ReducedVAE(config)
    model.synthesis_transform.load_state_dict(teacher.synthesis_transform.state_dict())
    if model.denoising_stage is not None:
        model.denoising_stage.load_state_dict(teacher.denoising_stage.state_dict())
    torch.manual_seed(seed)
    model.synthesis_transform.requires_grad_(False)

    scenes = load_scenes(data, exclude=DEFAULT_EXCLUDE)
    train = [s for s in scenes if s.name not in DEFAULT_VAL]
    if not train:
        raise ConfigError(f"no training scenes in {data}")
    sampler = PatchSampler([b for s in train for b in band_samples(s)], patch=patch)

    def batch_fn(step: int, rank: int, world: int) -> torch.Tensor:
        return torch.from_numpy(sampler.batch(step, batch, seed=seed, rank=rank, world=world))

    history = [*info.meta.get("history", [])]
    if distill_steps:
        cfg = fine_tune_config(
            distill_steps, lr, 0.7, seed, ckpt_every, out / "distill", resume, progress, device
        )
        Trainer(model, distillation_loss(teacher), batch_fn, cfg).fit()
        history.append(
            {
                "model": info.name,
                "kind": f"encoder distillation ({what})",
                "lmbda": lmbda,
                "steps": distill_steps,
                "batch": f"{batch}x{patch}²",
                "lr": lr,
                "device": device,
            }
        )
    rd_steps = steps - distill_steps
    trainer = None
    if rd_steps:
        trainer, _ = fit_rd(
            model,
            data,
            float(lmbda),
            rd_steps,
            out / "rd",
            lr=lr / 3,
            batch=batch,
            patch=patch,
            seed=seed + 1,
            resume=resume,
            schedule_kwargs={"start": 0.7},
            val_every=max(rd_steps // 4, 1),
            ckpt_every=ckpt_every,
            progress=progress,
            device=device,
            scenes=scenes,
        )
        history.append(
            {
                "model": info.name,
                "kind": f"encoder ({what}, synthesis frozen)",
                "lmbda": lmbda,
                "steps": rd_steps,
                "batch": f"{batch}x{patch}²",
                "lr": lr / 3,
                "device": device,
            }
        )
    model.cpu().eval()
    meta = {
        "lmbda": lmbda,
        "steps": steps,
        "batch": batch,
        "patch": patch,
        "device": device,
        "optimizer": "adam",
        "lr": lr,
        "schedule": "decay",
        "seed": seed,
        "init": {"model": info.name, "model_id": info.model_id},
        "encoder_only": True,
        "distill_steps": distill_steps,
        "analysis_hidden": analysis_hidden,
        "analysis_activation": config.encoder_activation,
        "history": history,
        "complexity": complexity(model),
    }
    if command:
        meta["command"] = command
    if trainer is None or trainer.rank == 0:
        # one log for `satcodec ship codec` (its card quotes the last validation)
        logs = [out / phase / "metrics.jsonl" for phase in ("distill", "rd")]
        text = "".join(p.read_text() for p in logs if p.exists())
        (out / "metrics.jsonl").write_text(text)
        model_id = save_model(out / "model.safetensors", model, meta)
        (out / "model.json").write_text(json.dumps({"model_id": model_id, **meta}, indent=2))
        meta["model_id"] = model_id
    return meta
