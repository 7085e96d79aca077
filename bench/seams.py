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


def plot_corner(corner: tuple, png: str) -> None:
    """Original and both decodes around the corner of four 256-px tiles, and the error, each
    with a colour bar in sensor digital numbers (DN)."""
    name, rate, ref, t256, t512 = corner
    y, x, h = 256 - 64, 256 - 64, 128
    crop = [ref[y : y + h, x : x + h], t256[y : y + h, x : x + h], t512[y : y + h, x : x + h]]
    lo, hi = np.percentile(crop[0], [1, 99])
    err = (t256.astype(np.int64) - ref)[y : y + h, x : x + h]
    fig, ax = plt.subplots(1, 4, figsize=(17, 4.6), layout="constrained")
    titles = [
        "original",
        "decoded, tile 256 (corner at centre)",
        "decoded, tile 512 (no boundary here)",
        "error of the tile-256 decode",
    ]
    for i, (img, t) in enumerate(zip([*crop, err], titles, strict=True)):
        if i < 3:
            im = ax[i].imshow(img, cmap="gray", vmin=lo, vmax=hi)
        else:
            m = np.abs(err).max() or 1
            im = ax[i].imshow(img, cmap="RdBu", vmin=-m, vmax=m)
        ax[i].axhline(63.5, color="yellow", lw=0.6, ls=":")
        ax[i].axvline(63.5, color="yellow", lw=0.6, ls=":")
        ax[i].set_title(t, fontsize=9)
        ax[i].set_xlabel("x (pixels from crop edge)", fontsize=8)
        ax[i].set_ylabel("y (pixels)", fontsize=8)
        ax[i].tick_params(labelsize=7)
        if i >= 2:  # one bar for the three grey panels (same scale), one for the error
            bar = fig.colorbar(im, ax=ax[i] if i == 3 else list(ax[:3]), shrink=0.85, pad=0.01)
            bar.set_label(
                "decoded − original (DN)" if i == 3 else "pixel value (DN, 1–99 % stretch)",
                fontsize=8,
            )
            bar.ax.tick_params(labelsize=7)
    fig.suptitle(
        f"{name} at {rate} bpp: 128x128 crop centred on the corner of four 256-px tiles "
        "(dotted); DN = sensor digital numbers"
    )
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", required=True)
    ap.add_argument("--rates", default="1,2")
    ap.add_argument("--out", default=str(RESULTS / "seams.md"))
    ap.add_argument("--png", default=str(RESULTS / "seams_tile_corner.png"))
    ap.add_argument(
        "--figure-only",
        action="store_true",
        help="only redraw the tile-corner figure (first scene, first rate; table untouched)",
    )
    a = ap.parse_args()
    if a.figure_only:
        name, rate = SCENES[0], float(a.rates.split(",")[0])
        with open_raster(Path(a.data) / name) as r:
            arr = r.read()
        dec = {t: satcodec.decode(satcodec.encode(arr, bpp=rate, tile=t))[0] for t in (256, 512)}
        plot_corner((name, rate, arr[0], dec[256][0], dec[512][0]), a.png)
        print(a.png)
        return
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
        plot_corner(corner, a.png)
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
