"""No seams: the reconstruction barely depends on the tile size.

Encodes real scenes with tile sizes 256 and 512 at the same target rates, reports PSNR of
both (they should agree within 0.1 dB), measures the error step across tile boundaries
against the error step elsewhere, and writes a PNG crop across a tile corner.

    python bench/seams.py --data ../shared/data/sat [--rates 1,2]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import satcodec  # noqa: E402
from satcodec.benchmarks.harness import RESULTS, publish  # noqa: E402
from satcodec.metrics import (
    bits_per_pixel,
    psnr,  # noqa: E402
)
from satcodec.raster import open_raster  # noqa: E402

SCENES = [
    "shareloc_pleiades-pan_ventoux.tif",
    "shareloc_pleiades-pan_giza.tif",
    "s2p_pleiades-pan_reunion-volcano.tif",
]


def boundary_ratio(err: np.ndarray, tile: int) -> float:
    """Mean |error step| across tile boundaries divided by the mean |error step| elsewhere."""
    dx = np.abs(np.diff(err.astype(np.float64), axis=1))
    cols = np.arange(dx.shape[1])
    at = (cols + 1) % tile == 0
    if not at.any():
        return float("nan")
    return float(dx[:, at].mean() / dx[:, ~at].mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", required=True)
    ap.add_argument("--rates", default="1,2")
    ap.add_argument("--out", default=str(RESULTS / "seams.md"))
    ap.add_argument("--png", default=str(RESULTS / "seams_tile_corner.png"))
    a = ap.parse_args()
    lines = [
        "# Seams: tile size 256 vs 512 at equal target rate",
        "",
        "| scene | target bpp | bpp (256) | PSNR (256) | bpp (512) | PSNR (512) | ΔPSNR dB | boundary/elsewhere error step (256) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    corner = None
    for name in SCENES:
        path = Path(a.data) / name
        if not path.exists():
            continue
        with open_raster(path) as r:
            arr, bits = r.read(), r.meta.bit_depth
        for rate in [float(x) for x in a.rates.split(",")]:
            res = {}
            for tile in (256, 512):
                data = satcodec.encode(arr, bpp=rate, tile=tile)
                out, _ = satcodec.decode(data)
                res[tile] = (bits_per_pixel(len(data), arr.size), psnr(arr, out, bits), out)
            d = res[256][1] - res[512][1]
            err = res[256][2][0].astype(np.int64) - arr[0]
            ratio = boundary_ratio(err, 256)
            lines.append(
                f"| {name} | {rate} | {res[256][0]:.3f} | {res[256][1]:.2f} | {res[512][0]:.3f} | "
                f"{res[512][1]:.2f} | {d:+.3f} | {ratio:.2f} |"
            )
            print(lines[-1], flush=True)
            if corner is None and min(arr.shape[1:]) >= 384:
                corner = (name, rate, arr[0], res[256][2][0], res[512][2][0])
    if corner:
        name, rate, ref, t256, t512 = corner
        y, x, h = 256 - 64, 256 - 64, 128
        crop = [ref[y : y + h, x : x + h], t256[y : y + h, x : x + h], t512[y : y + h, x : x + h]]
        lo, hi = np.percentile(crop[0], [1, 99])
        err = (t256.astype(np.int64) - ref)[y : y + h, x : x + h]
        fig, ax = plt.subplots(1, 4, figsize=(16, 4.4))
        titles = [
            "original",
            "decoded, tile 256 (corner at centre)",
            "decoded, tile 512 (no boundary here)",
            "error, tile 256",
        ]
        for i, (img, t) in enumerate(zip([*crop, err], titles, strict=True)):
            if i < 3:
                ax[i].imshow(img, cmap="gray", vmin=lo, vmax=hi)
            else:
                m = np.abs(err).max() or 1
                ax[i].imshow(img, cmap="RdBu", vmin=-m, vmax=m)
            ax[i].axhline(63.5, color="yellow", lw=0.6, ls=":")
            ax[i].axvline(63.5, color="yellow", lw=0.6, ls=":")
            ax[i].set_title(t, fontsize=9)
            ax[i].axis("off")
        fig.suptitle(
            f"{name} at {rate} bpp: 128x128 crop centred on the corner of four 256-px tiles (dotted)"
        )
        fig.tight_layout()
        fig.savefig(a.png, dpi=110)
        lines += ["", f"Crop across a tile corner: `{Path(a.png).name}`"]
    lines += [
        "",
        "A boundary/elsewhere ratio near 1 means the error does not jump at tile boundaries (no block edge).",
        "",
        f"Reproduce: `python bench/seams.py --data DATA --rates {a.rates}`",
    ]
    publish(lines, a.out)


if __name__ == "__main__":
    main()
