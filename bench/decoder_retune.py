"""A re-tuned decoder against the shipped one, on the same bitstreams.

``satcodec tune-decoder`` freezes the analysis (board side), so a re-tuned model codes every
image into the same symbols as the model it was tuned from: only the reconstruction differs.
This script encodes each image once per target rate with the shipped model (real bitstreams,
the encoder's defaults), decodes every stream with the shipped decoder and with each
candidate's, and reports PSNR on the sensor range for both: at equal file size, so the
difference is the whole effect.

Images: the held-out pan scenes (validation of every model), every band of the never-trained
Sentinel-2 cube, and every other dev image's bands (in-sample, labelled).

    python bench/decoder_retune.py --data ../shared/data/sat \\
        --candidate reduced-s8-l1e-3=runs/dec-tex/reduced-s8-l1e-3/model.safetensors ...
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
HELD_OUT = ("shareloc_pleiades-pan_ventoux.tif", "shareloc_pleiades-pan_giza.tif")
NEVER_TRAINED = ("rsgislib_sentinel2-sr-10band_aberystwyth.tif",)
SKIP = ("solaris-spacenet6_worldview2-ms4_rotterdam.tif",)  # 2x pixel-duplicated


def decode_with(stream: bytes, weights_path: Path) -> np.ndarray:
    """The stream decoded with the synthesis of ``weights_path`` (same analysis: same symbols),
    whatever model id the header names."""
    from satcodec.bitstream import StreamReader
    from satcodec.codec.registry import load_weights
    from satcodec.coding.decoder import Decoder, decode_to_array

    w = load_weights(weights_path)
    return decode_to_array(Decoder(StreamReader(stream), w, info=w.info)).array


def images(
    data: Path, limit_bands: int | None, pattern: str = "*.tif"
) -> list[tuple[str, str, np.ndarray, int, float | None]]:
    """(name, split, array (1, H, W), bit depth, nodata) of every band of every dev image."""
    from satcodec.evaluation.images import load_image

    out = []
    for p in sorted(data.glob(pattern)):
        if p.name in SKIP:
            continue
        split = (
            "held out"
            if p.name in HELD_OUT
            else "never trained"
            if p.name in NEVER_TRAINED
            else "in-sample"
        )
        arr, bits, nodata = load_image(p)
        bands = (
            range(arr.shape[0]) if limit_bands is None else range(min(limit_bands, arr.shape[0]))
        )
        for b in bands:
            name = p.stem if arr.shape[0] == 1 else f"{p.stem}#b{b + 1}"
            out.append((name, split, arr[b : b + 1], bits, nodata))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument(
        "--candidate",
        action="append",
        required=True,
        help="SHIPPED_NAME=PATH: a re-tuned decoder of that shipped model",
    )
    ap.add_argument(
        "--baseline",
        action="append",
        default=[],
        help="SHIPPED_NAME=PATH: encode and decode with these weights instead of the shipped "
        "file of that name (an earlier version: git show REV:satcodec/models/NAME.safetensors)",
    )
    ap.add_argument("--rates", default="0.5,1,1.5,2,3", help="target bpp, comma-separated")
    ap.add_argument("--limit-bands", type=int, default=None, help="first N bands per image")
    ap.add_argument("--images", default="*.tif", help="file name pattern in --data")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "decoder_retune.md")
    a = ap.parse_args()

    from satcodec.api import encode
    from satcodec.codec.registry import load_weights
    from satcodec.errors import RateControlError
    from satcodec.evaluation.images import valid_mask
    from satcodec.metrics import bits_per_pixel, psnr

    t0 = time.time()
    rates = [float(r) for r in a.rates.split(",")]
    baselines = dict(spec.split("=", 1) for spec in a.baseline)
    pairs = []
    for spec in a.candidate:
        name, path = spec.split("=", 1)
        base = baselines.get(name) or REPO / "satcodec" / "models" / f"{name}.safetensors"
        pairs.append((name, Path(base), Path(path)))
    imgs = images(a.data, a.limit_bands, a.images)
    rows = []  # (model, image, split, rate, bpp, psnr shipped, psnr candidate)
    for name, shipped, cand in pairs:
        served = load_weights(shipped).info.meta.get("rd", [])
        lo = min(p[0] for p in served) if served else 0.0
        hi = max(p[0] for p in served) if served else 99.0
        for img, split, arr, bits, nodata in imgs:
            mask = valid_mask(arr, nodata)
            for rate in rates:
                if not lo * 0.5 <= rate <= hi * 1.5:
                    continue
                try:
                    stream = encode(arr, bit_depth=bits, nodata=nodata, bpp=rate, model=shipped)
                except RateControlError:
                    continue
                bpp = bits_per_pixel(len(stream), arr.size)
                old = decode_with(stream, shipped)
                new = decode_with(stream, cand)
                p_old = psnr(arr[0], old[0], bits, mask=mask)
                p_new = psnr(arr[0], new[0], bits, mask=mask)
                rows.append((name, img, split, rate, bpp, p_old, p_new))
                print(
                    f"{name} {img} {rate}: {bpp:.3f} bpp {p_old:.2f} -> {p_new:.2f} dB", flush=True
                )

    lines = [
        "# Decoder re-tuned on the encoder's inputs, against the shipped decoder",
        "",
        f"Command: `python {' '.join(sys.argv)}` — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{time.time() - t0:.0f} s.",
        "",
        "Each image (every band its own image) is encoded once per target rate with the shipped "
        "model and the encoder's defaults (band normalisation by texture, channel-context "
        "entropy model); the same stream is decoded with the shipped decoder and with the "
        "candidate's. The analysis is frozen in `satcodec tune-decoder`, so the streams are "
        "the same: equal file size, and the PSNR difference (sensor range, `2^bits - 1`) is "
        "the whole effect. Splits: held out = the validation scenes of every model; never "
        "trained = left out of every training run; in-sample = in the training set.",
        "",
        "## Mean PSNR gain (candidate − shipped), dB",
        "",
        "| model | split | images×rates | mean ΔPSNR | median | worst | best |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, _, _ in pairs:
        for split in ("held out", "never trained", "in-sample"):
            d = [r[6] - r[5] for r in rows if r[0] == name and r[2] == split]
            if d:
                lines.append(
                    f"| {name} | {split} | {len(d)} | {np.mean(d):+.3f} | "
                    f"{statistics.median(d):+.3f} | {min(d):+.3f} | {max(d):+.3f} |"
                )
    lines += [
        "",
        "## By rate (every split)",
        "",
        "| model | target bpp | n | mean ΔPSNR dB | worst |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, _, _ in pairs:
        for rate in rates:
            d = [r[6] - r[5] for r in rows if r[0] == name and r[3] == rate]
            if d:
                lines.append(
                    f"| {name} | {rate:g} | {len(d)} | {np.mean(d):+.3f} | {min(d):+.3f} |"
                )
    lines += [
        "",
        "## Every point",
        "",
        "| model | image | split | target bpp | file bpp | shipped dB | candidate dB | Δ dB |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, img, split, rate, bpp, p0, p1 in rows:
        lines.append(
            f"| {name} | {img} | {split} | {rate:g} | {bpp:.3f} | {p0:.2f} | {p1:.2f} | {p1 - p0:+.2f} |"
        )
    text = "\n".join(lines) + "\n"
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = a.out.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(a.out)
    print(text)


if __name__ == "__main__":
    main()
