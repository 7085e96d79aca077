"""Training with the shared trainer: the ground denoiser, and the joint (on-board denoising) codec.

Both use real rasters as the clean target and simulated signal-dependent noise on the input.
The noise of step ``k`` is a function of (seed, k) only, so training resumes exactly.

    satcodec ground-train denoiser --data DIR --steps 3000 --out runs/gd
    satcodec ground-train joint --data DIR --lmbda 1e-3 --steps 1500 \
        --init reduced-s8-l1e-3 --out runs/joint
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from satcodec.codec.data import PatchSampler, Scene, band_samples, load_scenes
from satcodec.codec.training import (
    DEFAULT_EXCLUDE,
    DEFAULT_VAL,
    DISTORTION_PEAK,
    STEP_LOG2_HI,
    STEP_LOG2_LO,
    decoder_loss,
    decoder_steps,
    fine_tune_config,
)
from satcodec.ground_segment.denoiser import (
    GroundDenoiser,
    load_denoiser,
    macs_per_pixel,
    save_denoiser,
)
from satcodec.ground_segment.noise import NoiseParams, sensor_noise, simulate_noise
from satcodec.train import TrainConfig, Trainer

# Noise drawn per training patch, in units of the peak: σ at x = 0.2·peak log-uniform in
# [SIGMA_LO, SIGMA_HI], a random share of it signal-dependent. Covers the sensor table.
SIGMA_LO, SIGMA_HI, REF_LEVEL = 4e-4, 1.2e-2, 0.2


def random_noise(rng: np.random.Generator) -> tuple[float, float]:
    """(a, b) in peak-normalised units for one patch."""
    sigma = float(np.exp(rng.uniform(np.log(SIGMA_LO), np.log(SIGMA_HI))))
    f = float(rng.uniform(0.0, 1.0))
    return (1 - f) * sigma**2, f * sigma**2 / REF_LEVEL


def noisy_batch(
    sampler: PatchSampler,
    step: int,
    size: int,
    seed: int,
    rank: int = 0,
    world: int = 1,
    noise: tuple[float, float] | None = None,
) -> dict[str, torch.Tensor]:
    """clean, noisy and σ map (all x/peak, (n, 1, p, p)) for global batch ``step``.

    ``noise``: one sensor's (a, b) in peak-normalised units for every patch (see
    :func:`normalised_sensor_noise`); by default a random level per patch (:func:`random_noise`).
    """
    clean = sampler.batch(step, size, seed=seed, rank=rank, world=world)
    noisy = np.empty_like(clean)
    sigma = np.empty_like(clean)
    for j in range(clean.shape[0]):
        rng = np.random.default_rng([seed, step, rank + j * world, 991])
        a, b = random_noise(rng)
        if noise is not None:
            a, b = noise
        std = np.sqrt(a + b * np.maximum(clean[j], 0))
        n = clean[j] + rng.standard_normal(clean[j].shape).astype(np.float32) * std
        noisy[j] = np.clip(n, 0.0, 1.0)
        sigma[j] = np.sqrt(a + b * noisy[j])
    return {
        "clean": torch.from_numpy(clean),
        "noisy": torch.from_numpy(noisy),
        "sigma": torch.from_numpy(sigma.astype(np.float32)),
    }


def normalised_sensor_noise(name: str) -> tuple[float, float]:
    """A sensor's (a, b) of the table in units of its peak: x/peak has variance a' + b'·x/peak."""
    from satcodec.ground_segment.noise import load_sensor_table

    sensor = sensor_noise(name)
    peak = float(2 ** int(load_sensor_table()[name].get("bit_depth", 12)) - 1)
    return sensor.a / peak**2, sensor.b / peak


def decoded_batch(
    sampler: PatchSampler,
    step: int,
    size: int,
    seed: int,
    codecs: list[torch.nn.Module],
    crop: int,
    rank: int = 0,
    world: int = 1,
) -> dict[str, torch.Tensor]:
    """:func:`noisy_batch`, each noisy patch then through a codec — a random one of ``codecs``
    at a random quantisation step (2^U(−1, 1)) — and centre-cropped to ``crop`` px (away from
    the patch border, which the real encoder's halo hides): what the ground denoiser sees
    after decoding. ``noisy`` is the decoded patch; ``sigma`` the sensor's noise evaluated on
    it, as the pipeline tells the denoiser."""
    b = noisy_batch(sampler, step, size, seed, rank, world)
    p = b["clean"].shape[-1]
    o = (p - crop) // 2
    decoded = torch.empty_like(b["noisy"])
    sigma = torch.empty_like(b["sigma"])
    for j in range(b["noisy"].shape[0]):
        a, bb = random_noise(np.random.default_rng([seed, step, rank + j * world, 991]))
        rng = np.random.default_rng([seed, step, rank + j * world, 577])
        codec = codecs[int(rng.integers(len(codecs)))]
        q = float(2.0 ** rng.uniform(-1.0, 1.0))
        x = b["noisy"][j : j + 1]
        mean = x.mean()
        with torch.no_grad():
            y = codec.analysis_transform(x - mean)
            x_hat = codec.synthesis_transform(torch.round(y / q) * q) + mean
        decoded[j] = x_hat[0].clamp(0.0, 1.0)
        sigma[j] = torch.sqrt(a + bb * decoded[j])
    window = (slice(None), slice(None), slice(o, o + crop), slice(o, o + crop))
    return {"clean": b["clean"][window], "noisy": decoded[window], "sigma": sigma[window]}


def _val_crops(scenes: list[Scene], size: int, sensor: str) -> list[dict[str, Any]]:
    out = []
    params = sensor_noise(sensor)
    for i, scene in enumerate(scenes):
        # x/peak, not mean-removed: the noise depends on the level
        for s in band_samples(scene, remove_mean=False):
            h, w = s.pixels.shape
            if min(h, w) < size:
                continue
            y, x = (h - size) // 2, (w - size) // 2
            clean = s.pixels[y : y + size, x : x + size] * s.peak
            noisy = simulate_noise(clean.astype(np.float64), params, int(np.log2(s.peak + 1)), i)
            out.append({"clean": clean, "noisy": noisy.astype(np.float32), "peak": s.peak})
    return out


def denoiser_validation(crops: list[dict[str, Any]], params: NoiseParams):
    def val_fn(model: torch.nn.Module) -> dict[str, float]:
        was = model.training
        model.eval()
        gains, psnrs = [], []
        with torch.no_grad():
            for c in crops:
                peak = c["peak"]
                x = torch.from_numpy(c["noisy"] / peak)[None, None].float()
                s = torch.from_numpy(params.std(c["noisy"]).astype(np.float32) / peak)[None, None]
                den = model(x, s)[0, 0].numpy() * peak
                mse_d = float(np.mean((den - c["clean"]) ** 2))
                mse_n = float(np.mean((c["noisy"] - c["clean"]) ** 2))
                psnrs.append(10 * np.log10(peak**2 / mse_d))
                gains.append(10 * np.log10(mse_n / mse_d))
        model.train(was)
        return {"psnr": float(np.mean(psnrs)), "gain_db": float(np.mean(gains))}

    return val_fn


def _split(data: str | Path) -> tuple[list[Scene], list[Scene]]:
    scenes = load_scenes(data, exclude=DEFAULT_EXCLUDE)
    train = [s for s in scenes if s.name not in DEFAULT_VAL]
    val = [s for s in scenes if s.name in DEFAULT_VAL]
    if not train:
        raise ValueError(f"no training scenes in {data}")
    return train, val


def train_denoiser(
    data: str | Path,
    steps: int,
    out: str | Path,
    *,
    channels: int = 48,
    layers: int = 8,
    batch: int = 16,
    patch: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    resume: bool = False,
    val_sensor: str = "pleiades-pan",
    val_every: int = 500,
    ckpt_every: int = 100,
    progress: bool = True,
    loss: str = "relative",
    init: str | Path | None = None,
    codec_models: list[str] | None = None,
) -> dict[str, Any]:
    """Train :class:`GroundDenoiser` with the shared trainer; writes ``out/denoiser.safetensors``.

    ``init`` starts from trained denoiser weights. ``codec_models`` (codec model names or
    paths) trains it on what it meets in the ground segment: noisy patches after a round trip
    through one of those codecs (:func:`decoded_batch`) instead of raw noisy ones.
    """
    out = Path(out)
    train_scenes, val_scenes = _split(data)
    # a codec sees a larger patch whose centre the denoiser gets (no patch-border artefacts)
    margin = 32 if codec_models else 0
    sampler = PatchSampler(
        [b for s in train_scenes for b in band_samples(s, remove_mean=False)],
        patch=patch + 2 * margin,
    )
    if init is not None:  # a copy: load_denoiser's instance is shared by its cache
        source, _ = load_denoiser(init)
        channels, layers = source.config["channels"], source.config["layers"]
        model = GroundDenoiser(channels, layers)
        model.load_state_dict(source.state_dict())
    else:
        model = GroundDenoiser(channels, layers)
    codecs = []
    if codec_models:
        from satcodec.codec.registry import load_model

        codecs = [load_model(name)[0].eval() for name in codec_models]

    def batch_fn(step: int, rank: int, world: int) -> dict[str, torch.Tensor]:
        if codecs:
            return decoded_batch(sampler, step, batch, seed, codecs, patch, rank, world)
        return noisy_batch(sampler, step, batch, seed, rank, world)

    def loss_fn(m: torch.nn.Module, b: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        den = m(b["noisy"], b["sigma"])
        err = torch.mean((den - b["clean"]) ** 2, dim=(1, 2, 3))
        err_in = torch.mean((b["noisy"] - b["clean"]) ** 2, dim=(1, 2, 3)).clamp_min(1e-12)
        gain = 10 * torch.log10(err_in.mean() / err.detach().mean().clamp_min(1e-14))
        if loss == "relative":
            # every noise level counts: plain MSE would be dominated by the noisiest patches
            return torch.mean(err / err_in), {"gain_db": float(gain)}
        return err.mean() * 1e6, {"gain_db": float(gain)}

    cfg = TrainConfig(
        steps=steps,
        lr=lr,
        schedule="decay",
        seed=seed,
        val_every=val_every,
        ckpt_every=ckpt_every,
        out_dir=str(out),
        resume=resume,
        progress=progress,
        prefetch=bool(codecs),  # a codec round trip per patch: build batches on a thread
    )
    params = sensor_noise(val_sensor)
    val_fn = (
        denoiser_validation(_val_crops(val_scenes, 256, val_sensor), params) if val_scenes else None
    )
    trainer = Trainer(model, loss_fn, batch_fn, cfg, val_fn=val_fn)
    history = trainer.fit()
    final_val = next((r for r in reversed(history) if "val/psnr" in r), {})
    meta = {
        "steps": steps,
        "batch": batch,
        "patch": patch,
        "lr": lr,
        "seed": seed,
        "channels": channels,
        "layers": layers,
        "mac_per_pixel": macs_per_pixel(model),
        "parameters": sum(p.numel() for p in model.parameters()),
        "loss": loss,
        "init": str(init) if init else None,
        "codec_models": codec_models,
        "noise": f"sigma at {REF_LEVEL}*peak log-uniform in [{SIGMA_LO}, {SIGMA_HI}]*peak, random signal-dependent share",
        "train_scenes": [s.name for s in train_scenes],
        "val_scenes": [s.name for s in val_scenes],
        "val_sensor": val_sensor,
        "val": {k: v for k, v in final_val.items() if k.startswith("val/")},
    }
    save_denoiser(out / "denoiser.safetensors", model, meta)
    (out / "denoiser.json").write_text(json.dumps(meta, indent=2))
    return meta


# --- joint model: codec trained on noisy input against the clean target -----------------------
def joint_loss(lmbda: float):
    """Rate–distortion loss of the codec on noisy input, distortion against the clean patch.

    Same λ convention as :func:`satcodec.codec.training.rd_loss`. The codec sees mean-removed
    input (as the encoder feeds it); the mean is added back before the model's ground-side
    restoration (its denoising stage, if any), which needs the absolute level.
    """

    def loss_fn(model: torch.nn.Module, b: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        mean = b["noisy"].mean(dim=(2, 3), keepdim=True)
        out = model(b["noisy"] - mean)
        pixels = b["noisy"].shape[-1] * b["noisy"].shape[-2]
        bpp = out["bits"].mean() / pixels
        mse = torch.mean((model.restore(out["x_hat"] + mean) - b["clean"]) ** 2)
        loss = bpp + lmbda * DISTORTION_PEAK**2 * mse
        psnr = -10 * torch.log10(mse.detach().clamp_min(1e-12))
        return loss, {"bpp": float(bpp.detach()), "psnr": float(psnr)}

    return loss_fn


def train_joint(
    data: str | Path,
    lmbda: float,
    steps: int,
    out: str | Path,
    *,
    init: str | None = None,
    batch: int = 8,
    patch: int = 128,
    lr: float = 3e-4,
    seed: int = 0,
    resume: bool = False,
    ckpt_every: int = 100,
    progress: bool = True,
    device: str = "cpu",
    decay_start: float = 0.9,
    refine: tuple[int, int] | None = None,
    decoder_only: bool = False,
    step_log2_range: tuple[float, float] = (STEP_LOG2_LO, STEP_LOG2_HI),
    sensor: str | None = None,
    denoise_from: str | Path | None = None,
) -> dict[str, Any]:
    """Train (or fine-tune from ``init``, a codec model name/path) a joint denoising codec.

    ``refine = (channels, layers)`` adds a ground-side refinement stage after the synthesis
    (:class:`~satcodec.codec.layers.RefinementStage`); ``decoder_only`` freezes the analysis
    (the board side, hence the rate) and trains the decoder on really quantised latents
    (:func:`~satcodec.codec.training.decoder_loss`) at steps 2^U(``step_log2_range``), which should cover the
    steps rate control will pick for the model. Writes ``out/model.safetensors`` in the
    codec's model format, so ``satcodec encode --model`` and the decoders use it like any
    shipped model. ``sensor`` (a name of the sensor table) trains on that instrument's noise
    only -- a joint model flies with one instrument -- instead of a random level per patch.
    ``denoise_from`` (ground-denoiser weights; needs ``sensor``) appends a denoising stage for
    that sensor's noise starting from those weights
    (:func:`~satcodec.codec.models.with_denoising_stage`): the model starts as the sequential
    chain of ``init`` and that denoiser, and training makes the two one codec.
    """
    from satcodec.codec.models import (
        ModelConfig,
        ReducedVAE,
        complexity,
        with_denoising_stage,
        with_refinement,
    )
    from satcodec.codec.registry import load_model, save_model

    out = Path(out)
    train_scenes, val_scenes = _split(data)
    sampler = PatchSampler(
        [b for s in train_scenes for b in band_samples(s, remove_mean=False)], patch=patch
    )
    base_meta: dict[str, Any] = {}
    if init is not None:
        base, info = load_model(init)
        model = ReducedVAE(base.config)
        model.load_state_dict(base.state_dict())
        init_desc = f"{info.name} ({info.model_id})"
        base_meta = info.meta
    else:
        if decoder_only:
            raise ValueError("decoder_only fine-tunes the decoder of a trained model: pass init")
        model = ReducedVAE(ModelConfig())
        init_desc = "random"
    if decoder_only and "lmbda" in base_meta:
        lmbda = float(base_meta["lmbda"])  # no rate term: the λ the board side was trained at
    if refine is not None and not model.config.refine_channels:
        model = with_refinement(model, *refine)
    noise = normalised_sensor_noise(sensor) if sensor else None
    if denoise_from is not None and not model.config.denoise_channels:
        if noise is None:
            raise ValueError("a denoising stage is for one sensor's noise: pass sensor")
        model = with_denoising_stage(model, load_denoiser(denoise_from)[0], *noise)
    if decoder_only:
        model.analysis_transform.requires_grad_(False)
    model.train()

    def batch_fn(step: int, rank: int, world: int) -> dict[str, torch.Tensor]:
        b = noisy_batch(sampler, step, batch, seed, rank, world, noise)
        if decoder_only:
            b["step"] = decoder_steps(step, batch, seed, rank, world, step_log2_range)
        return b

    cfg = fine_tune_config(steps, lr, decay_start, seed, ckpt_every, out, resume, progress, device)
    loss = decoder_loss() if decoder_only else joint_loss(lmbda)
    trainer = Trainer(model, loss, batch_fn, cfg)
    history = trainer.fit()
    model.cpu()
    last = [r for r in history if "psnr" in r][-5:]
    tail = {
        k: float(np.mean([r[k] for r in last])) for k in ("bpp", "psnr") if last and k in last[0]
    }
    if decoder_only and "bpp" in base_meta.get("train_tail", {}):
        # the board side is the init's, so is its rate (what the chains pick models by)
        tail["bpp"] = float(base_meta["train_tail"]["bpp"])
    meta = {
        "kind": "joint-denoising",
        "lmbda": lmbda,
        "steps": steps,
        "batch": batch,
        "patch": patch,
        "lr": lr,
        "decay_start": decay_start,
        "seed": seed,
        "device": trainer.device.type,
        "init": init_desc,
        "noise": f"sensor {sensor} of the table, as a fraction of each scene's peak"
        if sensor
        else f"sigma at {REF_LEVEL}*peak log-uniform in [{SIGMA_LO}, {SIGMA_HI}]*peak",
        "train_scenes": [s.name for s in train_scenes],
        "val_scenes": [s.name for s in val_scenes],
        "train_tail": tail,
        "complexity": complexity(model),
    }
    if refine is not None or model.config.refine_channels:
        meta["refine"] = [model.config.refine_channels, model.config.refine_layers]
    if model.config.denoise_channels:
        meta["denoising_stage"] = {
            "channels": model.config.denoise_channels,
            "layers": model.config.denoise_layers,
            "sensor": sensor,
            "init": Path(denoise_from).name if denoise_from is not None else "the init model's",
        }
    if decoder_only:
        meta["decoder_only"] = True
        lo, hi = step_log2_range
        meta["quant_steps"] = f"2^U({lo}, {hi}) per patch, latents rounded"
    if base_meta.get("history") or init is not None:
        phase = {"model": out.name, "kind": "decoder" if decoder_only else "joint-denoising"}
        meta["history"] = [
            *base_meta.get("history", []),
            {
                **phase,
                "lmbda": lmbda,
                "steps": steps,
                "batch": f"{batch}x{patch}²",
                "lr": lr,
                "device": trainer.device.type,
            },
        ]
    model.eval()
    model_id = save_model(out / "model.safetensors", model, meta)
    (out / "model.json").write_text(json.dumps({"model_id": model_id, **meta}, indent=2))
    meta["model_id"] = model_id
    return meta


def export_denoiser_checkpoint(run_dir: str | Path, channels: int, layers: int) -> dict[str, Any]:
    """Write ``denoiser.safetensors`` + ``denoiser.json`` from a run's latest checkpoint
    (for a run stopped before its last step), with the validation at that step."""
    from satcodec.train import load_checkpoint

    run = Path(run_dir)
    model = GroundDenoiser(channels, layers)
    extra = load_checkpoint(run / "checkpoint.safetensors", model)
    model.eval()
    cfg = extra.get("config", {})
    data = Path(__file__).resolve().parents[3] / "shared" / "data" / "sat"
    val = {}
    if data.is_dir():
        _, val_scenes = _split(data)
        fn = denoiser_validation(
            _val_crops(val_scenes, 256, "pleiades-pan"), sensor_noise("pleiades-pan")
        )
        val = {f"val/{k}": v for k, v in fn(model).items()}
    meta = {
        "steps": int(extra["step"]),
        "planned_steps": cfg.get("steps"),
        "stopped_early": int(extra["step"]) < int(cfg.get("steps", 0)),
        "batch": 16,
        "patch": 64,
        "lr": cfg.get("lr"),
        "seed": cfg.get("seed"),
        "channels": channels,
        "layers": layers,
        "mac_per_pixel": macs_per_pixel(model),
        "parameters": sum(p.numel() for p in model.parameters()),
        "noise": f"sigma at {REF_LEVEL}*peak log-uniform in [{SIGMA_LO}, {SIGMA_HI}]*peak, random signal-dependent share",
        "val_sensor": "pleiades-pan",
        "val": val,
    }
    if data.is_dir():
        meta["train_scenes"] = [s.name for s in _split(data)[0]]
    save_denoiser(run / "denoiser.safetensors", model, meta)
    (run / "denoiser.json").write_text(json.dumps(meta, indent=2))
    return meta
