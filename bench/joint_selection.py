"""Which joint models to ship for a sensor, decided on training scenes (never the held-out ones).

Each candidate joint model codes 256² crops of Pleiades and WorldView-3 pan training scenes,
with that sensor's simulated noise, at each rate (rate control); PSNR against the clean crop.
A candidate worse than another candidate at every rate on every scene is dominated: it would
never be the right choice, so it does not ship. The held-out comparison
(`bench/ground_compare.py`) then uses the models that remain.

    OMP_NUM_THREADS=1 python bench/joint_selection.py --data ../shared/data/sat \\
        --models A.safetensors,B.safetensors,...

Results: bench/results/joint_selection.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import satcodec
from satcodec.benchmarks.harness import RESULTS, publish
from satcodec.ground_segment.noise import sensor_noise, simulate_noise
from satcodec.metrics import psnr
from satcodec.raster import open_raster

SCENES = ("s2p_pleiades-pan_reunion-volcano.tif", "shareloc_worldview3-pan_buenosaires-a.tif")


def scene_crops(path: Path, size: int = 256) -> tuple[list[np.ndarray], int]:
    with open_raster(path) as r:
        img, bd = r.read()[0], r.meta.bit_depth
    H, W = img.shape
    corners = ((H // 4, W // 4), (H // 2, W // 2), (3 * H // 4, 3 * W // 4), (H // 4, 3 * W // 4))
    return [img[y : y + size, x : x + size] for y, x in corners], bd


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument(
        "--models", required=True, help="candidate joint model weights, comma-separated"
    )
    ap.add_argument("--sensor", default="pleiades-pan")
    ap.add_argument("--rates", default="0.5,1,1.5,2,3")
    ap.add_argument("--out", default=str(RESULTS / "joint_selection.md"))
    a = ap.parse_args()
    models = [Path(m) for m in a.models.split(",")]
    rates = [float(r) for r in a.rates.split(",")]
    noise = sensor_noise(a.sensor)
    table: dict[tuple[str, float, str], float] = {}
    for scene in SCENES:
        crops, bd = scene_crops(Path(a.data) / scene)
        for rate in rates:
            for m in models:
                ps = []
                for i, clean in enumerate(crops):
                    noisy = simulate_noise(clean, noise, bd, seed=900 + i)
                    data = satcodec.encode(noisy[None], bit_depth=bd, bpp=rate, model=str(m))
                    ps.append(psnr(clean, satcodec.decode(data, model=str(m))[0][0], bd))
                table[(scene, rate, m.stem)] = float(np.mean(ps))
                print(scene, rate, m, round(table[(scene, rate, m.stem)], 2), flush=True)
    names = [m.stem for m in models]
    cells = [(s, r) for s in SCENES for r in rates]
    dominated = {
        n: [o for o in names if o != n and all(table[(*c, o)] > table[(*c, n)] for c in cells)]
        for n in names
    }
    lines = [
        f"# Joint model selection on training scenes ({a.sensor} noise)",
        "",
        "Mean PSNR (dB) against the clean crop, 4 crops of 256² per scene, rate control to the "
        "target; the scenes are in the joint models' training set, none is held out, so this "
        "choice does not look at the comparison's crops. `python bench/joint_selection.py "
        f"--data DATA --models ...` ({', '.join(names)}).",
        "",
        "| scene | bpp | " + " | ".join(names) + " |",
        "|---|---:|" + "---:|" * len(names),
    ]
    for s, r in cells:
        best = max(names, key=lambda n: table[(s, r, n)])
        row = [
            f"**{table[(s, r, n)]:.2f}**" if n == best else f"{table[(s, r, n)]:.2f}" for n in names
        ]
        lines.append(f"| {s.split('_')[-1].split('.')[0]} | {r} | " + " | ".join(row) + " |")
    means = {n: float(np.mean([table[(*c, n)] for c in cells])) for n in names}
    lines.append("| mean | | " + " | ".join(f"{means[n]:.2f}" for n in names) + " |")
    lines += [""]
    for n in names:
        by = dominated[n]
        lines.append(f"- {n}: " + (f"dominated by {', '.join(by)} (not shipped)" if by else "kept"))
    publish(lines, a.out)


if __name__ == "__main__":
    main()
