"""Issue 22 lever, measured before building it: the model chosen per tile, not per scene.

An upper bound. Each multi-tile dev image (every band its own image, 512² tiles as the
encoder's default) is coded whole by every rung of the ladder at a range of steps; each tile's
cost is read from the real stream (its record: side information + payload) and its squared
error from the whole image's decode over the tile's pixels. Three allocations are then
compared on the same points, each the lower convex hull over a Lagrangian sweep
(min SSE + lambda * bits per tile, lambda common to the image):

* ``scene``: one model and one step for the whole image (what the encoder does today; the
  model and step that are best for each total rate);
* ``scene model, tile steps``: one model, a step per tile (what per-tile step allocation alone
  would buy);
* ``tile models``: a model and a step per tile.

BD-rate of the two per-tile allocations against ``scene`` over their common PSNR range.
Upper bound, because a real stream with a model per tile would also pay for the choice in
the header, and the decoder's synthesis reads a halo of latents across tile borders
(seamless tiles, `bench/results/seams.md`): with another model's latents in the halo, the
border pixels would be decoded wrong, or tiles would have to be decoded alone (seams).
Here every tile is decoded with its own model over the whole image, halo included.

    python bench/tile_model_choice.py [--data ../shared/data/sat]

Writes bench/results/tile_model_choice.md.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import satcodec  # noqa: E402
from satcodec.benchmarks.harness import RESULTS, publish, shared_data  # noqa: E402
from satcodec.bitstream import TILE_OVERHEAD, StreamReader  # noqa: E402
from satcodec.evaluation import load_image  # noqa: E402
from satcodec.evaluation.bd import bd_rate  # noqa: E402

IMAGES = [  # (label, file, band, set) with more than one 512² tile
    ("reunion (pan)", "s2p_pleiades-pan_reunion-volcano.tif", 0, "in-sample"),
    ("giza (pan)", "shareloc_pleiades-pan_giza.tif", 0, "held out"),
    ("rotterdam (pan)", "solaris-spacenet6_worldview2-pan_rotterdam.tif", 0, "in-sample"),
    ("tamilnadu (SAR)", "rio-tiler-pds_sentinel1-grd-vv_tamilnadu-sar.tif", 0, "in-sample"),
    ("kanto (Landsat 8 B4)", "rio-pansharpen_landsat8-b4-150m_kanto.tif", 0, "in-sample"),
    ("washington (Landsat 8 B3)", "rio-toa_landsat8-b3-150m_washington.tif", 0, "in-sample"),
]
RUNGS = ("reduced-s8-l2.5e-4", "reduced-s8-l1e-3", "reduced-s8-l4e-3", "reduced-s8-l1.6e-2")
QUALITIES = tuple(range(20, 81, 5))  # steps 2^((50 - q) / 12.5): ~0.2 to ~5 bpp
TILE = 512


def tile_points(img: np.ndarray, bits: int, model: str, quality: float) -> list[tuple[int, float]]:
    """(bits, SSE) of every tile of ``img`` (1, H, W) coded whole by ``model`` at ``quality``."""
    stream = satcodec.encode(img, bit_depth=bits, quality=quality, model=model, tile=TILE)
    out, _ = satcodec.decode(stream, threads=1)
    err = (out[0].astype(np.float64) - img[0]) ** 2
    r = StreamReader(stream)
    h = r.header
    header_bits = 8 * (len(stream) - sum(
        TILE_OVERHEAD + len(t.scale_indices) + len(t.payload)
        for t in (r.read_tile(0, y, x) for y in range(h.tiles_y) for x in range(h.tiles_x))
    ))  # fmt: skip
    n = h.tiles_y * h.tiles_x
    pts = []
    for y in range(h.tiles_y):
        for x in range(h.tiles_x):
            t = r.read_tile(0, y, x)
            tb = 8 * (TILE_OVERHEAD + len(t.scale_indices) + len(t.payload)) + header_bits / n
            sse = float(err[y * TILE : (y + 1) * TILE, x * TILE : (x + 1) * TILE].sum())
            pts.append((tb, sse))
    return pts


def hull(
    options: list[list[tuple[float, float]]], lambdas: np.ndarray
) -> list[tuple[float, float]]:
    """Total (bits, SSE) of the Lagrangian choice per tile, for each lambda. ``options[t]``:
    tile t's candidate (bits, SSE) points."""
    out = []
    for lam in lambdas:
        bits = sse = 0.0
        for cand in options:
            b, s = min(cand, key=lambda p: p[1] + lam * p[0])
            bits += b
            sse += s
        out.append((bits, sse))
    return sorted(set(out))


def curve(points: list[tuple[float, float]], pixels: int, peak: float) -> tuple[list, list]:
    """(bpp, PSNR) of total points, keeping the lower envelope (rate increasing, PSNR up)."""
    pts = sorted((b / pixels, 10 * math.log10(peak**2 / max(s / pixels, 1e-12))) for b, s in points)
    env: list[tuple[float, float]] = []
    for r, p in pts:
        if not env or p > env[-1][1] + 1e-9:
            env.append((r, p))
    return [r for r, _ in env], [p for _, p in env]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=RESULTS / "tile_model_choice.md")
    ap.add_argument("--rate-lo", type=float, default=0.5)
    ap.add_argument("--rate-hi", type=float, default=3.0)
    ap.add_argument("--reading", default="", help="a paragraph printed under the table")
    a = ap.parse_args()
    data = a.data or shared_data()
    t0 = time.time()
    rows, bds = [], {"steps": [], "models": []}
    lambdas = np.geomspace(1e-3, 1e5, 240)
    for label, name, band, split in IMAGES:
        arr, bits, _ = load_image(data / name)
        img = np.ascontiguousarray(arr[band : band + 1])
        pixels, peak = img.shape[1] * img.shape[2], 2**bits - 1
        # per rung and quality: per-tile (bits, SSE)
        grid = {(m, q): tile_points(img, bits, m, q) for m in RUNGS for q in QUALITIES}
        n_tiles = len(next(iter(grid.values())))
        scene_pts = [(sum(b for b, _ in pts), sum(s for _, s in pts)) for pts in grid.values()]
        scene = curve(scene_pts, pixels, peak)
        per_model = []
        for m in RUNGS:
            opts = [[grid[(m, q)][t] for q in QUALITIES] for t in range(n_tiles)]
            per_model += hull(opts, lambdas)
        steps = curve(per_model, pixels, peak)
        opts = [[grid[k][t] for k in grid] for t in range(n_tiles)]
        models = curve(hull(opts, lambdas), pixels, peak)

        def window(c: tuple[list, list]) -> tuple[list, list]:
            keep = [i for i, r in enumerate(c[0]) if a.rate_lo * 0.8 <= r <= a.rate_hi * 1.2]
            return [c[0][i] for i in keep], [c[1][i] for i in keep]

        s_r, s_p = window(scene)
        bd_steps = bd_rate(s_r, s_p, *window(steps))
        bd_models = bd_rate(s_r, s_p, *window(models))
        bds["steps"].append(bd_steps)
        bds["models"].append(bd_models)
        rows.append(
            f"| {label} | {split} | {img.shape[1]}×{img.shape[2]} | {n_tiles} | "
            f"{bd_steps:+.2f} % | {bd_models:+.2f} % |"
        )
        print(rows[-1], flush=True)
    lines = [
        "# The model chosen per tile: an upper bound of what it would save",
        "",
        f"Command: `python bench/tile_model_choice.py` — "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {time.time() - t0:.0f} s. "
        "How: the script's docstring (every rung × quality "
        f"{QUALITIES[0]}–{QUALITIES[-1]} by 5, real tile records, Lagrangian choice per tile, "
        f"BD-rate PCHIP over {a.rate_lo}–{a.rate_hi} bpp against one model and one step per "
        "scene chosen the same way). Negative = fewer bits than per-scene choice.",
        "",
        "| image | set | size | tiles | scene model, a step per tile | a model and a step per tile |",
        "|---|---|---|---:|---:|---:|",
        *rows,
        f"| mean | | | | {np.nanmean(bds['steps']):+.2f} % | {np.nanmean(bds['models']):+.2f} % |",
        "",
    ]
    if a.reading:
        lines += [a.reading, ""]
    publish(lines, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
