"""Issue 22 lever, measured before building it: a deadzone per latent channel (a cheap RDOQ).

The shipped quantiser uses one deadzone per step (``step_deadzone``). Rate–distortion
optimised quantisation would move a symbol to the smaller magnitude when the bits it saves
outweigh the distortion it adds: with a Laplacian of scale ``b`` (in steps) per channel, the
threshold for magnitude ``m -> m-1`` moves by ``mu * (bits(m) - bits(m-1)) / 2`` steps, where
``bits(1) - bits(0) = log2(P0 / P1)`` and ``bits(m) - bits(m-1) = log2(e) / b`` above. Channels
the entropy model sees as narrow get a wider deadzone, wide ones a narrower one. On board it
would cost one more pass over the latents (the channel means) and a per-channel table.

Candidates (``--arms``): ``rdoq:MU`` (that deadzone alone, Lagrangian ``MU`` in step² per
bit), ``add:MU`` (on top of the step rule). Each is compared with the shipped rule at the step
rate control picks for each target (the ladder's model), by the rate saved at equal PSNR:
the PSNR difference is converted with the rule's local slope from steps x1.12 either side,
real file sizes, PSNR on the bit depth's peak. Images: the held-out pan scenes, two bands of
the never-trained Sentinel-2 cube, two in-sample bands (SAR, Landsat 8), top-left 640².

The candidate quantiser is patched into the encoder for the measurement only (numpy, not the
compiled kernel); the decoder is unchanged.

    python bench/channel_deadzone.py [--data ../shared/data/sat] [--arms rdoq:0.03,...]

Writes bench/results/channel_deadzone.md.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

# the same images as the step rule's measurement (held out, never trained, in-sample)
from quantiser_offsets import IMAGES  # noqa: E402  (bench/ is the script's folder)

import satcodec  # noqa: E402
import satcodec.coding.entropy_models as entropy_models  # noqa: E402
from satcodec.api import _build_encoder  # noqa: E402
from satcodec.benchmarks.harness import RESULTS, publish, shared_data  # noqa: E402
from satcodec.coding import array_window_reader, choose_model  # noqa: E402
from satcodec.entropy.quantiser import QuantisedTile, quantise_with_stats  # noqa: E402
from satcodec.metrics import psnr  # noqa: E402
from satcodec.raster import open_raster  # noqa: E402

RATES = (0.5, 1.0, 2.0, 3.0)
ARMS = "rdoq:0.03,rdoq:0.045,rdoq:0.06,add:0.02,add:0.06"
_arm = {"now": "rule"}


def channel_thresholds(mean_abs: np.ndarray, mu: float) -> tuple[np.ndarray, np.ndarray]:
    """Threshold shifts (steps) of the 0/1 decision and of the magnitudes above, per channel,
    for Laplacians of scale ``mean_abs`` (the channel's mean |y| / step)."""
    b = np.maximum(mean_abs, 1e-3)
    e1, e3 = np.exp(-0.5 / b), np.exp(-1.5 / b)
    bits_1_0 = np.log2((1 - e1) / np.maximum((e1 - e3) / 2, 1e-12))
    bits_m = 1 / (math.log(2) * b)
    return mu * bits_1_0 / 2, mu * bits_m / 2


def channel_quantiser(latents: np.ndarray, step: float, deadzone: float = 0.0) -> QuantisedTile:
    """The encoder's quantiser with the candidate in ``_arm`` (``rule``: the shipped one)."""
    arm = _arm["now"]
    if arm == "rule":
        return quantise_with_stats(latents, step, deadzone)
    kind, mu = arm.split(":")
    lat = np.asarray(latents, np.float32)
    c = lat.shape[0]
    flat = lat.reshape(c, -1)
    u = np.minimum(np.abs(flat) / np.float32(step), 1e6)
    t1, t2 = channel_thresholds(u.mean(1), float(mu))
    if kind == "add":
        t1, t2 = t1 + deadzone, t2 + deadzone
    t1 = np.clip(t1, -0.45, 0.45)[:, None]
    t2 = np.clip(t2, -0.45, 0.45)[:, None]
    k = np.rint(np.maximum(u - t2, 0))  # magnitudes of 2 and more: the m -> m-1 thresholds
    k = np.where(k >= 2, k, np.where(u - t2 >= 1.5, 2, np.where(u - t1 >= 0.5, 1, 0)))
    sym = (np.sign(flat) * k).astype(np.int32)
    a = np.abs(sym)
    nnz = (a != 0).sum(1)
    stats = np.stack([sym.shape[1] - nnz, nnz, a.sum(1) - 0.5 * nnz], 1).astype(np.float64)
    return QuantisedTile(sym.reshape(lat.shape), stats)


def _shown_args() -> list[str]:
    """The command line as run, the ``--reading`` paragraph left out (it is printed below)."""
    out, skip = [], False
    for arg in sys.argv[1:]:
        if skip or arg.startswith("--reading="):
            skip = False
            continue
        if arg == "--reading":
            skip = True
            continue
        out.append(arg)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--arms", default=ARMS)
    ap.add_argument("--out", type=Path, default=RESULTS / "channel_deadzone.md")
    ap.add_argument("--reading", default="", help="a paragraph printed under the summary")
    a = ap.parse_args()
    arms = a.arms.split(",")
    data = a.data or shared_data()
    entropy_models.quantise_with_stats = channel_quantiser
    t0 = time.time()
    rows, savings = [], {arm: [] for arm in arms}
    split_savings: dict[tuple[str, str], list[float]] = {}
    for label, name, band, split in IMAGES:
        with open_raster(data / name) as r:
            img = r.read(band)[None, :640, :640]
            bits = r.meta.bit_depth
        layout = (1, img.shape[1], img.shape[2], str(img.dtype), bits, None)
        for bpp in RATES:
            rung = choose_model(bpp)
            enc = _build_encoder(
                array_window_reader(img), layout, None, rung, 512, None, (None, None, None, 1)
            )
            _arm["now"] = "rule"
            step = enc.step_for_bpp(bpp)

            def point(s: float, arm: str, enc=enc, img=img, bits=bits) -> tuple[float, float]:
                _arm["now"] = arm
                stream = enc.encode(s)
                out, _ = satcodec.decode(stream, threads=1)
                return math.log(8 * len(stream) / img.size), psnr(img[0], out[0], bits)

            (l_lo, p_lo), (l0, p0), (l_hi, p_hi) = (
                point(step * k, "rule") for k in (1.12, 1, 1 / 1.12)
            )
            slope = (p_hi - p_lo) / (l_hi - l_lo)  # dB per e-fold of rate, the shipped rule
            cells = []
            for arm in arms:
                l1, p1 = point(step, arm)
                saving = 100 * ((l1 - l0) - (p1 - p0) / slope)
                savings[arm].append(saving)
                split_savings.setdefault((arm, split), []).append(saving)
                cells.append(
                    f"{saving:+.2f} % ({100 * (math.exp(l1 - l0) - 1):+.1f} % / {p1 - p0:+.2f} dB)"
                )
            rows.append(
                f"| {label} | {split} | {bpp:g} | {rung} | {step * enc.step_scales[0]:.2f} | "
                f"{math.exp(l0):.3f} | {p0:.2f} | " + " | ".join(cells) + " |"
            )
            print(rows[-1], flush=True)
    splits = ("held out", "never trained", "in-sample")
    lines = [
        "# A deadzone per latent channel (a cheap RDOQ) against the step rule",
        "",
        f"Command: `python bench/channel_deadzone.py {' '.join(_shown_args())}` — "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {time.time() - t0:.0f} s. "
        "What the arms are and how the saving is measured: the script's docstring. Negative = "
        "fewer bits than the shipped `step_deadzone` at equal PSNR.",
        "",
        "## Summary: rate saved at equal PSNR, mean (median) over images × rates",
        "",
        "| arm | all | " + " | ".join(splits) + " | worst |",
        "|---|---:|" + "---:|" * len(splits) + "---:|",
    ]
    for arm in arms:
        per = [
            f"{statistics.mean(split_savings[(arm, s)]):+.2f} %"
            if split_savings.get((arm, s))
            else "–"
            for s in splits
        ]
        lines.append(
            f"| {arm} | {statistics.mean(savings[arm]):+.2f} % "
            f"({statistics.median(savings[arm]):+.2f} %) | "
            + " | ".join(per)
            + f" | {max(savings[arm]):+.2f} % |"
        )
    if a.reading:
        lines += ["", a.reading]
    lines += [
        "",
        "## Every point",
        "",
        "Each candidate cell: saving at equal PSNR (rate change / PSNR change at the same step).",
        "",
        "| image | set | target bpp | model | model-space step | bpp (rule) | PSNR (rule) | "
        + " | ".join(arms)
        + " |",
        "|---|---|---:|---|---:|---:|---:|" + "---|" * len(arms),
        *rows,
        "",
    ]
    publish(lines, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
