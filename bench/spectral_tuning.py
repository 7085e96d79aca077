"""Does training on KLT components help `--spectral klt`? (issue 22, spectral lever, step 2)

Two subcommands:

    python bench/spectral_tuning.py pack --data DATA --out runs/klt/components.npz
    satcodec train --data runs/klt/components.npz --lmbda 0.001 --steps 1500 \\
        --out runs/klt/klt-l1e-3 --init reduced-s8-l1e-3 --lr 1e-4
    python bench/spectral_tuning.py eval --data DATA --tuned runs/klt/klt-l1e-3/model.safetensors

``pack``: the KLT components (``satcodec.coding.spectral.fit_klt``, as the encoder computes
them) of the multispectral training scenes, as a scene pack whose bit depth is the components'
(so the trainer normalises them as the encoder does). The Sentinel-2 cube (never trained on),
the WorldView-2 MS chip (never trained on) and the Idaho Landsat 8 scene are held out.
``eval``: ``--spectral klt`` with the tuned model against the shipped one it started from,
on the held-out scenes, at rates inside the model's range; BD-rate on real stream sizes,
PSNR over all bands.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

TRAIN = (
    ("rio-color_landsat8-rgb-60m_grenada.tif", 1),
    ("stars_landsat7-etm-6band-8bit_olinda.tif", 1),
    ("rasterio_landsat7-rgb-8bit_andros-bahamas.tif", 1),
)
# the WorldView-2 MS chip is 2x pixel-duplicated (SOURCES.md): every second pixel
HELD_OUT = (
    ("rsgislib_sentinel2-sr-10band_aberystwyth.tif", 1),
    ("solaris-spacenet6_worldview2-ms4_rotterdam.tif", 2),
    ("rio-hist_landsat8-rgb-30m_idaho-mountains.tif", 1),
)


def cmd_pack(a: argparse.Namespace) -> int:
    from satcodec.codec.data import Scene, save_scene_pack
    from satcodec.coding.encoder import array_window_reader
    from satcodec.coding.spectral import fit_klt
    from satcodec.raster import open_raster

    scenes = []
    for name, every in TRAIN:
        with open_raster(Path(a.data) / name) as r:
            x, nodata = r.read()[:, ::every, ::every], r.meta.nodata
        t = fit_klt(array_window_reader(x), *x.shape, nodata)
        c = t.forward(x).astype(np.float64)
        # the measured run normalised every component by the first one's range (the
        # encoder then had one peak for all components)
        cb = max(t.component_bits)
        # stored offset to >= 0; the trainer removes each band's rounded mean (the offset)
        data = np.clip(np.rint(c + 2 ** (cb - 1)), 0, 2**cb - 1)
        data = data.astype(np.uint32 if cb > 16 else np.uint16)
        # crops skip pixels nodata in every band (what the measured run used)
        valid = np.ones(x.shape[1:], bool) if nodata is None else ~(x == nodata).all(axis=0)
        scenes.append(Scene("klt_" + name, data, valid, cb))
        print(f"{name}: {x.shape[0]} components, {cb}-bit", flush=True)
    save_scene_pack(scenes, a.out)
    print(f"wrote {a.out}")
    return 0


def cmd_eval(a: argparse.Namespace) -> int:
    import satcodec
    from satcodec.evaluation.bd import bd_rate
    from satcodec.metrics import psnr
    from satcodec.raster import open_raster

    rates = [float(v) for v in a.rates.split(",")]
    res = []
    for name, every in HELD_OUT:
        with open_raster(Path(a.data) / name) as r:
            x, bits = r.read()[:, ::every, ::every], r.meta.bit_depth
        curves = {}
        for label, m in (("shipped", a.base), ("tuned", a.tuned)):
            pts = []
            for b in rates:
                d = satcodec.encode(x, bit_depth=bits, bpp=b, model=m, spectral="klt", threads=1)
                y, _ = satcodec.decode(d, model=m, threads=1)
                pts.append((8 * len(d) / x.size, psnr(x, y, bits)))
            curves[label] = pts
        bd = bd_rate(*zip(*curves["shipped"], strict=True), *zip(*curves["tuned"], strict=True))
        res.append(bd)
        fmt = ", ".join
        print(
            f"| {name} | {fmt(f'{p:.2f}' for _, p in curves['shipped'])} | "
            f"{fmt(f'{p:.2f}' for _, p in curves['tuned'])} | {bd:+.2f} % |",
            flush=True,
        )
    print(f"mean BD-rate, tuned against shipped: {np.mean(res):+.2f} %")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(required=True)
    p = sub.add_parser("pack")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_pack)
    e = sub.add_parser("eval")
    e.add_argument("--data", required=True)
    e.add_argument("--base", default="reduced-s8-l1e-3")
    e.add_argument("--tuned", required=True)
    e.add_argument("--rates", default="0.5,0.75,1.0,1.5")
    e.set_defaults(func=cmd_eval)
    a = ap.parse_args()
    return a.func(a)


if __name__ == "__main__":
    raise SystemExit(main())
