"""Spectral redundancy (issue 22's lever): per-band coding against a KLT across the bands.

Multispectral bands of one scene are strongly correlated; band by band, satcodec codes them
one at a time. The shipped alternative, `satcodec encode --spectral klt` (bitstream flag
0x0002, `satcodec/coding/spectral.py`), needs no training: a Karhunen–Loève transform (the
bands' covariance eigenvectors, orthonormal, sent in the header as B² + B + 1 integers) on
board, the components coded as bands by the same shipped models at one quantisation step,
the inverse on the ground, tile by tile. An orthonormal transform keeps the squared error, so giving every
component the same step spends the bits where the variance is. JPEG 2000 gets the same
transform (OpenJPEG has no multi-component transform beyond three colour bands; a KLT before
it is what JPEG 2000 Part 2's array transform does), and its one-codestream per-band anchor
allocates rate across all bands with its own rate–distortion optimisation (and applies
OpenJPEG's colour transform to the first three bands, as a user running it gets).

Rates are real sizes of everything sent per pixel and band (satcodec's streams hold their
transform; JPEG 2000 + KLT is charged 4(B² + 2B) bytes for its float transform); PSNR over
all bands on the sensor range (the raster's bit depth, as bench/rd_eval.py); BD-rate against JPEG 2000 per band (one codestream for all bands), PCHIP over the common
PSNR range; negative = fewer bits.

    python bench/spectral.py --data ../shared/data/sat [--rates 0.5,1,2,3]

Writes bench/results/spectral.md and spectral.csv.
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import sys
import time
from pathlib import Path

import numpy as np

from satcodec.metrics import psnr  # MSE over every band and pixel, peak 2^bits - 1

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"

# (file, pixel step): the multispectral rasters of the development set; the WorldView-2 MS
# file is 2x pixel-duplicated (SOURCES.md), so every second pixel is taken
SCENES = (
    ("rsgislib_sentinel2-sr-10band_aberystwyth.tif", 1),
    ("rio-color_landsat8-rgb-60m_grenada.tif", 1),
    ("rio-hist_landsat8-rgb-30m_idaho-mountains.tif", 1),
    ("solaris-spacenet6_worldview2-ms4_rotterdam.tif", 2),
)


KEYS = ("satcodec per band", "satcodec + KLT", "jpeg2000 + KLT", "satcodec + KLT vs jpeg2000 + KLT")


def klt(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(V, mean): the bands' covariance eigenvectors (columns, largest variance first)."""
    b = x.shape[0]
    flat = x.reshape(b, -1).astype(np.float64)
    mean = flat.mean(axis=1)
    w, v = np.linalg.eigh(np.cov(flat))
    return v[:, np.argsort(w)[::-1]], mean


def to_components(
    x: np.ndarray, v: np.ndarray, mean: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int, float]:
    """Integer components (B, H, W) uint16, their offsets, the bit depth they need and the
    scale applied first (1, or a power of two below it where 16 bits would not hold them)."""
    b = x.shape[0]
    y = v.T @ (x.reshape(b, -1).astype(np.float64) - mean[:, None])
    need = int(np.ceil(np.log2(float(np.ptp(y, axis=1).max()) + 2)))
    scale = 2.0 ** -max(0, need - 16)
    y = np.rint(y * scale)
    off = -y.min(axis=1)
    c = (y + off[:, None]).astype(np.int64)
    bits = min(16, max(8, int(c.max()).bit_length()))
    return c.reshape(x.shape).astype(np.uint16), off, bits, scale


def from_components(
    c: np.ndarray, v: np.ndarray, mean: np.ndarray, off: np.ndarray, bits: int, scale: float
) -> np.ndarray:
    b = c.shape[0]
    y = (c.reshape(b, -1).astype(np.float64) - off[:, None]) / scale
    x = v @ y + mean[:, None]
    return np.clip(np.rint(x), 0, 2**bits - 1).reshape(c.shape)


def side_bytes(b: int) -> int:
    """The KLT's side information: V (float32), means (float32), offsets (int32)."""
    return 4 * (b * b + 2 * b)


def satcodec_point(
    x: np.ndarray, bits: int, bpp: float, spectral: str | None = None
) -> tuple[bytes, np.ndarray]:
    import satcodec

    data = satcodec.encode(x, bit_depth=bits, bpp=bpp, threads=2, spectral=spectral)
    out, _ = satcodec.decode(data, threads=2)
    return data, out


def j2k_point(
    x: np.ndarray, bits: int, bpp: float, extra_bytes: int = 0, mct: bool = True
) -> tuple[int, np.ndarray]:
    """One JPEG 2000 codestream of all bands (components), its level bisected to ``bpp``
    (``mct``: OpenJPEG's colour transform on the first three components, as users run it)."""
    import imagecodecs

    img = np.ascontiguousarray(np.moveaxis(x, 0, -1))
    pixels = x.size
    lo, hi = 10.0, 6.02 * bits + 20
    best = None
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        d = imagecodecs.jpeg2k_encode(
            img, level=mid, bitspersample=bits, reversible=False, mct=mct, numthreads=2
        )
        rate = 8 * (len(d) + extra_bytes) / pixels
        if best is None or abs(rate / bpp - 1) < abs(best[0] / bpp - 1):
            best = (rate, d)
        if abs(rate / bpp - 1) <= 0.01:
            break
        lo, hi = (mid, hi) if rate < bpp else (lo, mid)
    d = best[1]
    dec = np.moveaxis(imagecodecs.jpeg2k_decode(d), -1, 0)
    return len(d), dec


def curves(x: np.ndarray, bits: int, rates: list[float]) -> dict[str, list[tuple[float, float]]]:
    b = x.shape[0]
    v, mean = klt(x)
    comps, off, cbits, scale = to_components(x, v, mean)
    extra = side_bytes(b)
    out: dict[str, list[tuple[float, float]]] = {
        "jpeg2000 per band": [],
        "jpeg2000 + KLT": [],
        "satcodec per band": [],
        "satcodec + KLT": [],
    }
    for r in rates:
        data, dec = satcodec_point(x, bits, r)
        out["satcodec per band"].append((8 * len(data) / x.size, psnr(x, dec, bits)))
        # the shipped option: the transform and its side information are in the stream
        data, dec = satcodec_point(x, bits, r, spectral="klt")
        out["satcodec + KLT"].append((8 * len(data) / x.size, psnr(x, dec, bits)))
        n, dec = j2k_point(x, bits, r)
        out["jpeg2000 per band"].append((8 * n / x.size, psnr(x, dec, bits)))
        n, dec = j2k_point(comps, cbits, r, extra, mct=False)
        xr = from_components(dec, v, mean, off, bits, scale)
        out["jpeg2000 + KLT"].append((8 * (n + extra) / x.size, psnr(x, xr, bits)))
        print(
            f"  {r:g} bpp: "
            + ", ".join(f"{k} {c[-1][0]:.3f}/{c[-1][1]:.2f}" for k, c in out.items()),
            flush=True,
        )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", required=True, help="folder of the development rasters")
    ap.add_argument("--rates", default="0.5,1,2,3", help="target bits per pixel and band")
    ap.add_argument("--out", default=str(RESULTS / "spectral"))
    a = ap.parse_args()
    from satcodec.codec.training import DEFAULT_EXCLUDE as TRAINING_EXCLUDE
    from satcodec.evaluation.bd import bd_rate
    from satcodec.raster import open_raster

    rates = [float(r) for r in a.rates.split(",")]
    t0 = time.time()
    rows, points = [], []
    for name, every in SCENES:
        path = Path(a.data) / name
        if not path.exists():
            print(f"skip {name}: not in {a.data}", file=sys.stderr)
            continue
        with open_raster(path) as r:
            x, bits = r.read()[:, ::every, ::every], r.meta.bit_depth
        print(f"{name}: {x.shape}, {bits}-bit", flush=True)
        c = curves(x, bits, rates)
        for codec, pts in c.items():
            points += [(name, codec, r, p) for r, p in pts]
        ref = c["jpeg2000 per band"]
        bd = {}
        for codec, pts in c.items():
            if codec == "jpeg2000 per band":
                continue
            bd[codec] = bd_rate(*zip(*ref, strict=True), *zip(*pts, strict=True))
        # both with the transform: what the learned codec itself adds
        bd["satcodec + KLT vs jpeg2000 + KLT"] = bd_rate(
            *zip(*c["jpeg2000 + KLT"], strict=True), *zip(*c["satcodec + KLT"], strict=True)
        )
        corr = np.corrcoef(x.reshape(x.shape[0], -1).astype(np.float64))
        mean_corr = float((corr.sum() - x.shape[0]) / (x.shape[0] ** 2 - x.shape[0]))
        rows.append((name, x.shape, bits, mean_corr, bd))
    lines = [
        "# Spectral redundancy: per-band coding against a KLT across bands (issue 22 lever)",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by "
        f"`python bench/spectral.py --data DATA --rates {a.rates}` ({time.time() - t0:.0f} s).",
        "",
        (__doc__ or "").split("\n\n", 1)[1].split("\n\n    python")[0],
        "",
        "Never trained on (left out of every training run, `satcodec/codec/training.py` "
        "DEFAULT_EXCLUDE): "
        + ", ".join(n for n, *_ in rows if any(fnmatch.fnmatch(n, g) for g in TRAINING_EXCLUDE))
        + "; the others' bands were in the training set (in-sample). No model saw a KLT "
        "component in training.",
        "",
        "| scene | bands x rows x cols | bits | mean inter-band correlation | satcodec per band | "
        "satcodec + KLT | JPEG 2000 + KLT | satcodec + KLT against JPEG 2000 + KLT |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, shape, bits, corr, bd in rows:
        lines.append(
            f"| {name} | {'x'.join(map(str, shape))} | {bits} | {corr:.3f} | "
            + " | ".join(f"{bd[k]:+.1f} %" for k in KEYS)
            + " |"
        )
    if rows:
        for k in KEYS:
            vals = [bd[k] for *_, bd in rows if np.isfinite(bd[k])]
            what = k if " vs " in k else f"{k} against JPEG 2000 per band"
            lines.append(f"\nMean BD-rate, {what}: {np.mean(vals):+.1f} %.")
    if rows:
        gain_s = np.mean([bd["satcodec + KLT"] - bd["satcodec per band"] for *_, bd in rows])
        gain_j = np.mean([bd["jpeg2000 + KLT"] for *_, bd in rows])
        wins = [name for name, *_, bd in rows if bd["satcodec + KLT"] < 0]
        losses = [
            f"{name} (where satcodec per band is {bd['satcodec per band']:+.0f} %)"
            for name, *_, bd in rows
            if bd["satcodec + KLT"] >= 0
        ]
        lines += [
            "",
            "Reading: the transform is worth "
            f"{-gain_s:.0f} points of BD-rate to satcodec and {-gain_j:.0f} to JPEG 2000 on "
            "average: most of the multispectral gain is the decorrelation, which any codec "
            "gets. Against JPEG 2000 as users run it (per band, OpenJPEG's colour transform "
            f"on three bands), satcodec + KLT saves rate on {len(wins)} of {len(rows)} scenes"
            + (f", not on {', '.join(losses)}" if losses else "")
            + "; against JPEG 2000 with the same KLT it stays behind, "
            "as satcodec per band stays behind JPEG 2000 per band on these scenes. The "
            "components are images the models never saw (a first component at several times a "
            "band's range, the others low-contrast): training on them is the next step of this "
            "lever.",
        ]
    lines += [
        "",
        "## Points",
        "",
        "| scene | codec | bpp (all bands) | PSNR dB |",
        "|---|---|---:|---:|",
    ]
    lines += [f"| {n} | {c} | {r:.3f} | {p:.2f} |" for n, c, r, p in points]
    out = Path(a.out)
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["scene", "codec", "bpp", "psnr_db"])
        w.writerows(points)
    print("\n".join(lines[:20]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
