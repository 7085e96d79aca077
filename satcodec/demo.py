"""The main job: code a real Pleiades scene with a shipped model and compare with JPEG 2000."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from satcodec.api import decode_file, encode_file
from satcodec.evaluation.anchors import jpeg2000_at_bpp, jpegxl_at_bpp
from satcodec.metrics import psnr

SAMPLE = Path(__file__).resolve().parent / "data" / "pleiades_ventoux.tif"


def run_demo(image: str | Path | None = None, bpp: float = 1.5, model: str | None = None) -> dict:
    """Encode and decode ``image`` (default: the shipped Pleiades sample) at ``bpp``; print a table."""
    from satcodec.raster import open_raster

    src = Path(image) if image else SAMPLE
    with open_raster(src) as r:
        original = r.read()
        bits = r.meta.bit_depth
    with tempfile.TemporaryDirectory() as tmp:
        stream, out = Path(tmp) / "scene.satc", Path(tmp) / "decoded.tif"
        t0 = time.perf_counter()
        rep = encode_file(src, stream, bpp=bpp, model=model)
        t1 = time.perf_counter()
        decode_file(stream, out)
        t2 = time.perf_counter()
        with open_raster(out) as r:
            decoded = r.read()
    ours = psnr(original, decoded, bits)
    rows = [
        (
            "satcodec",
            rep.bpp,
            ours,
            f"model {rep.model}, encode {t1 - t0:.2f} s, decode {t2 - t1:.2f} s",
        )
    ]
    j2k_p, jxl_p = [], []
    for b in range(original.shape[0]):
        j = jpeg2000_at_bpp(original[b], bits, rep.bpp)
        x = jpegxl_at_bpp(original[b], bits, rep.bpp)
        j2k_p.append((j.bpp, psnr(original[b], j.decoded, bits)))
        jxl_p.append((x.bpp, psnr(original[b], x.decoded, bits)))
    rows.append(("JPEG 2000 (OpenJPEG)", *np.mean(j2k_p, axis=0), "same rate, irreversible 9/7"))
    rows.append(("JPEG XL (libjxl e7)", *np.mean(jxl_p, axis=0), "same rate"))
    print(
        f"{src.name}: {original.shape[0]}x{original.shape[1]}x{original.shape[2]} {original.dtype}, {bits}-bit, PSNR peak {2**bits - 1}"
    )
    print(f"{'codec':22s} {'bpp':>7s} {'PSNR dB':>8s}  notes")
    for name, r_bpp, p, note in rows:
        print(f"{name:22s} {r_bpp:7.3f} {p:8.2f}  {note}")
    return {"satcodec": (rep.bpp, ours), "jpeg2000": rows[1][1:3], "jpegxl": rows[2][1:3]}
