"""Rate control on real scenes: does ``--bpp B`` land within ±3 % and ``--max-bpp B`` stay under?

python bench/rate_control.py --data ../shared/data/sat [--rates 1,2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import satcodec
from satcodec.benchmarks.harness import RESULTS, publish
from satcodec.metrics import bits_per_pixel
from satcodec.raster import open_raster

PLEIADES = [
    "shareloc_pleiades-pan_ventoux.tif",
    "shareloc_pleiades-pan_giza.tif",
    "s2p_pleiades-pan_reunion-volcano.tif",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", required=True)
    ap.add_argument("--rates", default="1,2")
    ap.add_argument("--out", default=str(RESULTS / "rate_control.md"))
    a = ap.parse_args()
    lines = [
        "# Rate control on the Pleiades scenes (file size of the real bitstream)",
        "",
        "| scene | mode | target bpp | file bpp | error % | model | seconds |",
        "|---|---|---:|---:|---:|---|---:|",
    ]
    worst = 0.0
    for name in PLEIADES:
        path = Path(a.data) / name
        if not path.exists():
            continue
        with open_raster(path) as r:
            arr = r.read()
        for rate in [float(x) for x in a.rates.split(",")]:
            for mode in ("bpp", "max_bpp"):
                t = time.perf_counter()
                data = satcodec.encode(arr, **{mode: rate})
                dt = time.perf_counter() - t
                bpp = bits_per_pixel(len(data), arr.size)
                err = 100 * (bpp / rate - 1)
                if mode == "bpp":
                    worst = max(worst, abs(err))
                _, meta = satcodec.decode(data)
                from satcodec.codec.registry import list_models

                model = next(
                    (m.name for m in list_models() if m.model_id == meta["model_id"]),
                    meta["model_id"],
                )
                lines.append(
                    f"| {name} | --{mode.replace('_', '-')} | {rate} | {bpp:.4f} | {err:+.2f} | {model} | {dt:.1f} |"
                )
                print(lines[-1], flush=True)
    lines += [
        "",
        f"Largest |error| with --bpp: {worst:.2f} %.",
        "",
        f"Reproduce: `python bench/rate_control.py --data DATA --rates {a.rates}`",
    ]
    publish(lines, a.out)


if __name__ == "__main__":
    main()
