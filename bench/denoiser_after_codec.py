"""Does a ground denoiser trained on decoded images beat the shipped one on decoded images?

    python bench/denoiser_after_codec.py --denoiser runs/den_decoded/denoiser.safetensors

The candidate is the shipped denoiser fine-tuned on noisy patches after a round trip through
the shipped codecs (``satcodec ground-train denoiser --init ...
--codec-models ...``). Both denoise the same decoded crops of the chains benchmark
(bench/ground_compare.py: held-out crops, pleiades-pan noise, our codec at each target rate,
the denoiser told the sensor's noise); mean PSNR against the clean crop. Writes
bench/results/denoiser_after_codec.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from satcodec.benchmarks.harness import (
    RESULTS,
    codec_round_trip,
    held_out_crops,
    publish,
    shared_data,
)
from satcodec.ground_segment.denoiser import denoise_array, load_denoiser
from satcodec.ground_segment.noise import NoiseParams, load_sensor_table, simulate_noise
from satcodec.metrics import psnr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=str(shared_data("sat")))
    ap.add_argument("--denoiser", required=True, help="candidate weights")
    ap.add_argument("--rates", default="0.5,1,1.5,2,3")
    ap.add_argument("--sensor", default="pleiades-pan")
    ap.add_argument("--out", default=str(RESULTS / "denoiser_after_codec.md"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    items = held_out_crops(Path(a.data), 256, 2)
    t = load_sensor_table()[a.sensor]
    p = NoiseParams(float(t["a"]), float(t["b"]), f"sensor:{a.sensor}")
    shipped, _ = load_denoiser()
    candidate, meta = load_denoiser(a.denoiser)
    rows = []
    for rate in [float(r) for r in a.rates.split(",")]:
        got: dict[str, list[float]] = {"codec": [], "shipped": [], "candidate": []}
        for i, (_name, clean, bd) in enumerate(items):
            noisy = simulate_noise(clean, p, bd, seed=200 + i)  # the chains benchmark's noise
            chain = codec_round_trip(noisy, bd, rate, None)
            if chain is None:
                continue
            dec, _ = chain
            got["codec"].append(psnr(clean, dec, bd))
            for key, model in (("shipped", shipped), ("candidate", candidate)):
                den = denoise_array(dec, p, bd, model=model)
                got[key].append(psnr(clean, np.clip(np.rint(den), 0, 2**bd - 1), bd))
        m = {k: float(np.mean(v)) for k, v in got.items()}
        rows.append(
            f"| {rate} | {m['codec']:.2f} | {m['shipped']:.2f} | {m['candidate']:.2f} "
            f"| {m['candidate'] - m['shipped']:+.2f} |"
        )
        print(rows[-1], flush=True)
    lines = [
        "# A ground denoiser trained on decoded images, against the shipped one",
        "",
        f"Command: `python bench/denoiser_after_codec.py --denoiser {a.denoiser}`. Candidate: "
        f"{meta.get('steps')} steps from `{meta.get('init')}` on noisy patches after a round trip "
        f"through {meta.get('codec_models')} at quantisation steps 2^U(−1, 1), lr {meta.get('lr')}. "
        f"Mean PSNR (dB) against the clean crop over {len(items)} held-out crops of 256² px "
        f"({a.sensor} noise), our codec at each target rate, both denoisers told the sensor's noise.",
        "",
        "| target bpp | decoded | shipped denoiser | candidate | candidate − shipped |",
        "|---:|---:|---:|---:|---:|",
        *rows,
    ]
    publish(lines, a.out, echo=False)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
