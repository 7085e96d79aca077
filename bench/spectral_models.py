"""Which shipped model codes KLT components best? (issue 22, spectral lever)

``--spectral klt`` takes the model the ladder picks for the target rate, as band-by-band
coding does. But the first component carries most of the bits, well above the average rate.
This codes the multispectral dev scenes with ``--spectral klt`` at each target with every
model of the ladder, and reports the PSNR (all bands, sensor range) each reaches at that
real rate, beside the ladder's own pick.

    python bench/spectral_models.py --data ../shared/data/sat

Writes bench/results/spectral_models.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MODELS = ("reduced-s8-l2.5e-4", "reduced-s8-l1e-3", "reduced-s8-l4e-3", "reduced-s8-l1.6e-2")
SCENES = (
    ("rsgislib_sentinel2-sr-10band_aberystwyth.tif", 1),
    ("rio-hist_landsat8-rgb-30m_idaho-mountains.tif", 1),
    ("solaris-spacenet6_worldview2-ms4_rotterdam.tif", 2),  # 2x pixel-duplicated: every 2nd
    ("rio-color_landsat8-rgb-60m_grenada.tif", 1),
    ("stars_landsat7-etm-6band-8bit_olinda.tif", 1),
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--rates", default="0.25,0.5,1,2,3")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "spectral_models.md"))
    a = ap.parse_args()
    import satcodec
    from satcodec.coding.encoder import choose_model
    from satcodec.errors import SatcodecError
    from satcodec.metrics import psnr
    from satcodec.raster import open_raster

    t0 = time.time()
    rows, gains, moves = [], [], []
    for name, every in SCENES:
        with open_raster(Path(a.data) / name) as r:
            x, bits = r.read()[:, ::every, ::every], r.meta.bit_depth
        for target in (float(v) for v in a.rates.split(",")):
            pick = choose_model(
                target, [m for m in satcodec.codec.registry.list_models() if m.name in MODELS]
            )
            cells = {}
            for m in MODELS:
                try:
                    d = satcodec.encode(x, bit_depth=bits, bpp=target, spectral="klt", model=m)
                except SatcodecError:
                    continue
                rate = 8 * len(d) / x.size
                if abs(rate / target - 1) > 0.03:
                    continue  # this model cannot reach the rate
                y, _ = satcodec.decode(d)
                cells[m] = psnr(x, y, bits)
            best = max(cells, key=cells.get)
            gains.append(cells[best] - cells.get(pick, np.nan))
            moves.append(MODELS.index(best) - MODELS.index(pick))
            rows.append(
                f"| {name} | {target:g} | {pick} | "
                + " | ".join(
                    "–"
                    if m not in cells
                    else f"{'**' if m == best else ''}{cells[m]:.2f}{'**' if m == best else ''}"
                    for m in MODELS
                )
                + f" | {cells[best] - cells.get(pick, np.nan):+.2f} |"
            )
            print(rows[-1], flush=True)
    lines = [
        "# Which model codes KLT components best (issue 22, spectral lever)",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by "
        f"`python bench/spectral_models.py --data DATA` ({time.time() - t0:.0f} s).",
        "",
        (__doc__ or "").split("\n\n")[1],
        "",
        "PSNR dB at the target (real stream size within ±3 %; – where the model cannot reach "
        "it); bold: the best; last column: what the best gains over the ladder's pick.",
        "",
        "| scene | target bpp | ladder's pick | " + " | ".join(MODELS) + " | best − pick dB |",
        "|---|---:|---|" + "---:|" * len(MODELS) + "---:|",
        *rows,
        "",
        f"Mean gain of the best model over the ladder's pick: {np.nanmean(gains):+.2f} dB "
        f"(largest {np.nanmax(gains):+.2f} dB). The best is the pick in {moves.count(0)} of "
        f"{len(moves)} cells, the next model up in {moves.count(1)}, the next down in "
        f"{moves.count(-1)} (others: {len(moves) - sum(moves.count(k) for k in (-1, 0, 1))}), "
        "with no rule on rate or band correlation that picks it on every scene "
        "(reverse water-filling of the components' detail variances, to pick for the first "
        "component's rate, overshoots to the top model at 1 bpp and loses on three scenes): "
        "choosing it needs a measurement (decoding each candidate, twice the encoder's work "
        "and a synthesis, too much on board) or models trained on components.",
    ]
    Path(a.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines[-3:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
