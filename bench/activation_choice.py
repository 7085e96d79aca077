"""Which activation for the reduced transforms: GDN, simplified GDN or ReLU?

Trains the same ReducedVAE with each activation under an equal budget (same seed, data, λ,
steps) with the shared trainer, then reports validation rate–distortion (rounded latents,
Laplacian likelihood rate; the RD loss the model optimises) and the analysis transform's
latency on a 512x512 tile, side by side in one run.

    python bench/activation_choice.py --data ../shared/data/sat [--steps 1000] [--lmbda 2e-3]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from satcodec.benchmarks.harness import RESULTS, median_time, publish
from satcodec.codec.models import ModelConfig, ReducedVAE
from satcodec.codec.training import train_codec


def latency_ms(model: ReducedVAE, size: int = 512, repeats: int = 7) -> float:
    x = torch.randn(1, 1, size, size) * 0.05
    with torch.no_grad():
        return 1000 * median_time(lambda: model.analysis_transform(x), repeats, warmup=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", required=True)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--lmbda", type=float, default=2e-3)
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--work", default="runs/activation_choice")
    ap.add_argument("--out", default=str(RESULTS / "activation_choice.md"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for act in ("sgdn", "gdn", "relu"):
        meta = train_codec(
            a.data,
            a.lmbda,
            a.steps,
            Path(a.work) / act,
            patch=a.patch,
            config=ModelConfig(activation=act),
            val_every=0,
            ckpt_every=0,
            progress=True,
        )
        c = meta["complexity"]
        net = ReducedVAE(ModelConfig(activation=act))
        val = meta["val"]
        loss = val["val/bpp"] + a.lmbda * 4095**2 * 10 ** (-val["val/psnr"] / 10)
        rows.append(
            (
                act,
                val["val/bpp"],
                val["val/psnr"],
                loss,
                c["encoder_mac_per_pixel"],
                c["encoder_params"],
                latency_ms(net),
            )
        )
        print(rows[-1], flush=True)
    lines = [
        f"# Activation choice: {a.steps} steps each, λ={a.lmbda}, batch 8 of {a.patch}² crops, seed 0, 1 thread",
        "",
        "Validation on the held-out Pleiades scenes (centre 256² crops; rounded latents, Laplacian likelihood rate).",
        "",
        "| activation | val bpp | val PSNR dB | val RD loss | encoder MAC/px | encoder params | analysis ms / 512² tile |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for act, bpp, p, loss, macs, params, ms in rows:
        lines.append(
            f"| {act} | {bpp:.3f} | {p:.2f} | {loss:.3f} | {macs:.0f} | {params:,} | {ms:.1f} |"
        )
    lines += [
        "",
        f"Reproduce: `python bench/activation_choice.py --data DATA --steps {a.steps} --lmbda {a.lmbda}`",
    ]
    publish(lines, a.out)


if __name__ == "__main__":
    main()
