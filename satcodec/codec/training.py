"""Rate–distortion training of the reduced codec on GeoTIFF folders, with the shared trainer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from satcodec.codec.data import PatchSampler, Scene, band_samples, load_scenes
from satcodec.codec.models import ModelConfig, ReducedVAE, complexity, widen_latent
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


def val_patches(scenes: list[Scene], size: int = 256) -> list[tuple[np.ndarray, float]]:
    """Centre crops (size x size) of every band of the validation scenes."""
    out = []
    for scene in scenes:
        for s in band_samples(scene):
            h, w = s.pixels.shape
            if min(h, w) < size:
                continue
            y, x = (h - size) // 2, (w - size) // 2
            out.append((s.pixels[y : y + size, x : x + size], s.peak))
    return out


def rd_validation(patches: list[tuple[np.ndarray, float]]):
    def val_fn(model: torch.nn.Module) -> dict[str, float]:
        bpps, psnrs = [], []
        device = next(model.parameters()).device
        for arr, _peak in patches:
            x = torch.from_numpy(arr)[None, None].to(device)
            out = model(x)  # eval mode: rounded latents
            bpps.append(float(out["bits"].sum()) / arr.size)
            mse = float(torch.mean((out["x_hat"] - x) ** 2))
            psnrs.append(-10 * np.log10(max(mse, 1e-12)))
        return {"bpp": float(np.mean(bpps)), "psnr": float(np.mean(psnrs))}

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
) -> tuple[Trainer, dict[str, Any]]:
    """Rate–distortion training of any codec ``model`` (``forward`` -> ``x_hat``, ``bits``).

    One recipe for every codec family (scenes, held-out split, sampler, loss, trainer), so
    models compared against each other are trained the same way. Returns the trainer and the
    training metadata (a model card's facts).
    """
    val_names = DEFAULT_VAL if val_scenes is None else val_scenes
    scenes = load_scenes(data, exclude=DEFAULT_EXCLUDE if exclude is None else exclude)
    train_scenes = [s for s in scenes if s.name not in val_names]
    val_split = [s for s in scenes if s.name in val_names]
    if not train_scenes:
        raise ValueError(f"no training scenes in {data}")
    sampler = PatchSampler([b for s in train_scenes for b in band_samples(s)], patch=patch)

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
    val_fn = rd_validation(val_patches(val_split)) if val_split else None
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
        "device": trainer.device.type,
        "train_scenes": [s.name for s in train_scenes],
        "val_scenes": [s.name for s in val_split],
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
    )
    meta["complexity"] = complexity(model)
    if init_info is not None:
        meta["init"] = {"model": init_info.name, "model_id": init_info.model_id}
    if trainer.rank == 0:
        model_id = save_model(out / "model.safetensors", model, meta)
        (out / "model.json").write_text(json.dumps({"model_id": model_id, **meta}, indent=2))
        meta["model_id"] = model_id
    return meta
