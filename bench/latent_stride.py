"""Where is the high-rate ceiling? Latent stride and width at an equal training budget.

The shipped ladder saturates near 50 dB (peak 4095) where JPEG 2000 reaches 60 dB at 3 bpp, and
its unquantised reconstructions stop there too: the transform, not the entropy model, is the
ceiling. Stride-16 latents with M=192 are 0.75 latents per pixel, M=320 1.25; stride-8 latents
with M=96 are 1.5 per pixel and skip one nonlinear stage, for fewer encoder MACs. This trains
each variant from scratch with the same recipe (``fit_rd``: data, held-out scenes, sampler,
seed, λ, steps, shared trainer) and reports, side by side: validation RD loss (what training
minimises), likelihood rate and PSNR on the held-out crops with rounded latents, the PSNR of
the unquantised reconstruction (the transform's own ceiling), encoder/decoder MACs.

    python bench/latent_stride.py --data ../shared/data/sat [--steps 1500] [--lmbda 1.6e-2]
        [--variants s16-m192,s16-m320,s8-m96]

Each run also writes ``model.safetensors`` + ``model.json`` (with the command that made it),
so a variant can be shipped with ``satcodec ship codec`` like a ``satcodec train`` run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from satcodec.benchmarks.harness import RESULTS, publish
from satcodec.codec.data import read_scene, scene_paths
from satcodec.codec.models import ModelConfig, ReducedVAE, count_macs
from satcodec.codec.registry import save_model
from satcodec.codec.training import (
    DEFAULT_EXCLUDE,
    DEFAULT_VAL,
    DISTORTION_PEAK,
    fit_rd,
    val_patches,
)


def build(variant: str) -> tuple[ReducedVAE, int]:
    """``s<stride>-m<M>``: a ReducedVAE with 4 (stride 16) or 3 (stride 8) stages."""
    stride_s, m_s = variant.split("-")
    stride, m = int(stride_s[1:]), int(m_s[1:])
    if stride not in (8, 16):
        raise SystemExit(f"stride must be 8 or 16, got {stride}")
    return ReducedVAE(ModelConfig(latent=m, stages=4 if stride == 16 else 3)), stride


def write_model(model: ReducedVAE, work: Path, lmbda: float, steps: int, command: str) -> None:
    """``model.safetensors`` + ``model.json`` as ``satcodec train`` writes them, so
    ``satcodec ship codec`` can ship a variant with the command that made it."""
    meta = {"lmbda": lmbda, "steps": steps, "command": command}
    model_id = save_model(work / "model.safetensors", model, meta)
    (work / "model.json").write_text(json.dumps({"model_id": model_id, **meta}, indent=2))


def evaluate(model: ReducedVAE, crops: list[np.ndarray], lmbda: float) -> dict[str, float]:
    model.eval()
    bpp, psnr, psnr_unq, loss = [], [], [], []
    with torch.no_grad():
        for arr in crops:
            x = torch.from_numpy(arr)[None, None]
            out = model(x)
            mse = float(torch.mean((out["x_hat"] - x) ** 2))
            rate = float(out["bits"].sum()) / arr.size
            y = model.analysis_transform(x)
            mse_u = float(torch.mean((model.synthesis_transform(y) - x) ** 2))
            bpp.append(rate)
            psnr.append(-10 * np.log10(mse))
            psnr_unq.append(-10 * np.log10(mse_u))
            loss.append(rate + lmbda * DISTORTION_PEAK**2 * mse)
    return {
        "rd_loss": float(np.mean(loss)),
        "bpp": float(np.mean(bpp)),
        "psnr": float(np.mean(psnr)),
        "psnr_unquantised": float(np.mean(psnr_unq)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", required=True)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--lmbda", type=float, default=1.6e-2)
    ap.add_argument("--variants", default="s16-m192,s16-m320,s8-m96")
    ap.add_argument(
        "--decay-start",
        type=float,
        default=0.9,
        help="fraction of the run after which the learning rate drops to 0.3x (1e-3 -> 3e-4)",
    )
    ap.add_argument("--work", default="runs/latent_stride")
    ap.add_argument("--out", default=str(RESULTS / "latent_stride.md"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    paths = scene_paths(a.data, exclude=DEFAULT_EXCLUDE)
    val_split = [read_scene(p) for p in paths if p.name in DEFAULT_VAL]
    crops = [p.pixels for p in val_patches(val_split, size=256)]
    rows = []
    for variant in a.variants.split(","):
        work = Path(a.work) / variant
        result = work / "result.json"
        command = (
            f"python bench/latent_stride.py --data DATA --steps {a.steps} --lmbda {a.lmbda} "
            f"--variants {variant} --work {a.work}"
            + (f" --decay-start {a.decay_start}" if a.decay_start != 0.9 else "")
        )
        if result.exists():  # each variant is its own resumable run
            rows.append(json.loads(result.read_text()))
            continue
        torch.manual_seed(0)
        model, stride = build(variant)
        t0 = time.time()
        fit_rd(
            model,
            a.data,
            a.lmbda,
            a.steps,
            work,
            resume=True,
            val_every=0,
            schedule_kwargs={"start": a.decay_start},
        )
        write_model(model, work, a.lmbda, a.steps, command)
        px = 256 * 256
        m = model.analysis_transform[-1].out_channels
        row = {
            "variant": variant,
            "latents_per_pixel": m / stride**2,
            "enc_mac_px": count_macs(model.analysis_transform, (1, 1, 256, 256)) / px,
            "dec_mac_px": count_macs(
                model.synthesis_transform, (1, m, 256 // stride, 256 // stride)
            )
            / px,
            "train_s": time.time() - t0,
            **evaluate(model, crops, a.lmbda),
        }
        result.write_text(json.dumps(row))
        rows.append(row)
    head = "| variant | latents/px | enc MAC/px | dec MAC/px | val RD loss | bpp | PSNR dB | unquantised PSNR dB | train s |"
    lines = [
        "# Latent stride and width at an equal budget (latent_stride)",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by "
        f"`python bench/latent_stride.py --steps {a.steps} --lmbda {a.lmbda}`: each variant "
        f"trained from scratch, {a.steps} steps, λ = {a.lmbda}, batch 8 of 128², adam lr 1e-3 "
        "'decay', seed 0, 1 thread on a shared 2-core machine (train s is not a speed benchmark). "
        f"Validation: the {len(crops)} held-out 256² centre crops (ventoux, giza), rounded "
        "latents, Laplacian likelihood rate (not file sizes), PSNR peak 4095. Short budget: "
        "this ranks variants early in training, it does not give their converged RD.",
        "",
        head,
        "|" + "---|" * 9,
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['latents_per_pixel']:.2f} | {r['enc_mac_px'] / 1e3:.1f}k | "
            f"{r['dec_mac_px'] / 1e3:.1f}k | {r['rd_loss']:.3f} | {r['bpp']:.3f} | "
            f"{r['psnr']:.2f} | {r['psnr_unquantised']:.2f} | {r['train_s']:.0f} |"
        )
    publish(lines, a.out)


if __name__ == "__main__":
    main()
