"""A joint training run's checkpoint against its init model, on the chains' held-out crops.

The quick check used while training joint models (see README, Ground segment): each crop gets
the chains' simulated sensor noise and is coded at each rate with the init model and with the
checkpoint (the run's model, refinement stage included), both with rate control; the PSNR
against the clean crop is printed side by side.

    python bench/joint_checkpoint_eval.py RUN_DIR INIT_WEIGHTS --refine 32x8 --rates 1.5,2

For a run started from a sequential chain (``--denoise-from``), INIT is the codec alone and
the init column is the sequential chain itself (the codec, then the ground denoiser told the
sensor's noise), so the difference is what joint training added.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from safetensors.torch import load_file

import satcodec
from satcodec.benchmarks.harness import held_out_crops, shared_data
from satcodec.codec.models import with_denoising_stage, with_refinement
from satcodec.codec.registry import load_model, save_model
from satcodec.ground_segment.denoiser import GroundDenoiser, denoise_array, load_denoiser
from satcodec.ground_segment.noise import sensor_noise, simulate_noise
from satcodec.ground_segment.training import normalised_sensor_noise
from satcodec.metrics import psnr


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", help="training run folder (its checkpoint.safetensors)")
    ap.add_argument("init", help="the model the run started from (weights path or name)")
    ap.add_argument("--refine", default="32x8", help="CxL of the run's refinement stage, or 0")
    ap.add_argument("--rates", default="1.5,2")
    ap.add_argument("--sensor", default="pleiades-pan")
    ap.add_argument("--data", default=str(shared_data("sat")))
    a = ap.parse_args()
    base, _ = load_model(a.init)
    net = base
    if a.refine != "0":
        c, n = (int(v) for v in a.refine.split("x"))
        net = with_refinement(base, c, n)
    state = load_file(str(Path(a.run) / "checkpoint.safetensors"))
    stage = sorted(k for k in state if k.startswith("model.denoising_stage.") and "weight" in k)
    if stage:  # a run started from a sequential chain (--denoise-from): rebuild its stage
        first = state["model.denoising_stage.body.0.weight"]
        den = GroundDenoiser(int(first.shape[0]), len(stage))
        net = with_denoising_stage(net, den, *normalised_sensor_noise(a.sensor))
    net.load_state_dict({k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")})
    noise = sensor_noise(a.sensor)
    items = held_out_crops(Path(a.data), 256, 2)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "checkpoint-model.safetensors"
        save_model(ckpt, net.eval(), {})
        print("| target bpp | init | checkpoint | difference |\n|---:|---:|---:|---:|")
        for rate in [float(r) for r in a.rates.split(",")]:
            res: dict[str, list[float]] = {"init": [], "ckpt": []}
            for i, (_, clean, bd) in enumerate(items):
                noisy = simulate_noise(clean, noise, bd, seed=200 + i)  # as ground_compare
                for key, model in (("init", str(a.init)), ("ckpt", str(ckpt))):
                    data = satcodec.encode(noisy[None], bit_depth=bd, bpp=rate, model=model)
                    dec = satcodec.decode(data, model=model)[0][0]
                    if key == "init" and stage:  # the sequential chain the run started from
                        dec = denoise_array(dec, noise, bd, model=load_denoiser()[0])
                        dec = np.clip(np.rint(dec), 0, 2**bd - 1)
                    res[key].append(psnr(clean, dec, bd))
            i0, c0 = np.mean(res["init"]), np.mean(res["ckpt"])
            print(f"| {rate} | {i0:.2f} | {c0:.2f} | {c0 - i0:+.2f} |", flush=True)


if __name__ == "__main__":
    main()
