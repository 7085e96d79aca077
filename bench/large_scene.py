"""Memory and speed on a large scene: a 10000x10000 uint16 raster (a mosaic of the real
Pleiades sample, flipped tile by tile) encoded and decoded with tiled processing, beside
OpenJPEG at the same rate, side by side in one run.

Each step runs in its own process so its peak RSS (``ru_maxrss``) is measured alone.

    python bench/large_scene.py [--size 10000] [--bpp 1.0] [--out bench/results/large_scene.md]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from satcodec.benchmarks.harness import RESULTS, SAMPLE, publish

MAKE = """
import sys, numpy as np
from satcodec.raster import open_raster, create_raster
size, out = int(sys.argv[1]), sys.argv[2]
with open_raster(sys.argv[3]) as r:
    tile = r.read()[0]
    meta = r.meta
meta.height = meta.width = size
meta.rpcs = None
meta.gcps = None
t = tile.shape[0]
with create_raster(out, meta) as w:
    for y in range(0, size, t):
        for x in range(0, size, t):
            k = (y // t * 7 + x // t * 3) % 4
            block = np.rot90(tile, k)[: min(t, size - y), : min(t, size - x)]
            w.write_window(0, y, x, np.ascontiguousarray(block))
"""

ENCODE = """
import sys, time, json, satcodec
t = time.perf_counter()
r = satcodec.encode_file(sys.argv[1], sys.argv[2], bpp=float(sys.argv[3]))
print(json.dumps({"seconds": time.perf_counter() - t, "bpp": r.bpp, "model": r.model}))
"""

DECODE = """
import sys, time, json, satcodec
t = time.perf_counter()
satcodec.decode_file(sys.argv[1], sys.argv[2])
print(json.dumps({"seconds": time.perf_counter() - t}))
"""

J2K = """
import sys, time, json, numpy as np, imagecodecs
from satcodec.raster import open_raster
from satcodec.evaluation.anchors import jpeg2000_at_bpp
with open_raster(sys.argv[1]) as r:
    a = r.read()[0]
    bits = r.meta.bit_depth
# choose the quality knob on a 2000x2000 crop, then code the whole scene once with it
probe = jpeg2000_at_bpp(a[:2000, :2000], bits, float(sys.argv[2]))
level = None
lo, hi = 10.0, 6.02 * bits + 20
for _ in range(30):
    mid = 0.5 * (lo + hi)
    d = imagecodecs.jpeg2k_encode(a[:2000, :2000], level=mid, bitspersample=bits, reversible=False, numthreads=1)
    if abs(len(d) - len(probe.data)) <= 0.002 * len(probe.data):
        level = mid
        break
    lo, hi = (mid, hi) if len(d) < len(probe.data) else (lo, mid)
level = level or mid
t = time.perf_counter()
d = imagecodecs.jpeg2k_encode(a, level=level, bitspersample=bits, reversible=False, numthreads=1)
te = time.perf_counter() - t
t = time.perf_counter()
b = imagecodecs.jpeg2k_decode(d, numthreads=1)
td = time.perf_counter() - t
print(json.dumps({"encode_s": te, "decode_s": td, "bpp": 8 * len(d) / a.size}))
"""


def isolated(code: str, *args: str) -> tuple[dict, float]:
    """Measure one child's peak RSS by wrapping it in its own parent process."""
    wrapper = (
        "import resource, subprocess, sys, json\n"
        "p = subprocess.run([sys.executable, '-c', sys.argv[1], *sys.argv[2:]], capture_output=True, text=True)\n"
        "sys.stderr.write(p.stderr)\n"
        "out = [l for l in p.stdout.splitlines() if l.startswith('{')]\n"
        "d = json.loads(out[-1]) if out else {}\n"
        "d['peak_rss_mib'] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
        "print(json.dumps(d)); sys.exit(p.returncode)\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", wrapper, code, *map(str, args)], capture_output=True, text=True
    )
    if p.returncode != 0:
        raise SystemExit(p.stderr[-3000:])
    d = json.loads(p.stdout.strip().splitlines()[-1])
    return d, d["peak_rss_mib"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=10000)
    ap.add_argument("--bpp", type=float, default=1.0)
    ap.add_argument("--out", default=str(RESULTS / "large_scene.md"))
    a = ap.parse_args()
    mpix = a.size * a.size / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        src, stream, dec = Path(tmp) / "scene.tif", Path(tmp) / "scene.satc", Path(tmp) / "dec.tif"
        t = time.perf_counter()
        isolated(MAKE, a.size, src, SAMPLE)
        print(f"built {a.size}x{a.size} scene in {time.perf_counter() - t:.0f} s", flush=True)
        enc, enc_rss = isolated(ENCODE, src, stream, a.bpp)
        print(f"satcodec encode: {enc}", flush=True)
        dec_res, dec_rss = isolated(DECODE, stream, dec)
        print(f"satcodec decode: {dec_res}", flush=True)
        j2k, j2k_rss = isolated(J2K, src, enc["bpp"])
        print(f"openjpeg: {j2k}", flush=True)
    rows = [
        (
            "satcodec (tiled, PyTorch CPU)",
            enc["bpp"],
            mpix / enc["seconds"],
            mpix / dec_res["seconds"],
            enc_rss,
            dec_rss,
        ),
        (
            "OpenJPEG (imagecodecs, 1 thread)",
            j2k["bpp"],
            mpix / j2k["encode_s"],
            mpix / j2k["decode_s"],
            j2k_rss,
            j2k_rss,
        ),
    ]
    lines = [
        f"# Large scene: {a.size}x{a.size} uint16 (12-bit Pleiades mosaic), target {a.bpp} bpp",
        "",
        "| codec | bpp | encode MPix/s | decode MPix/s | encode peak RSS MiB | decode peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, bpp, e, d, er, dr in rows:
        lines.append(f"| {name} | {bpp:.3f} | {e:.2f} | {d:.2f} | {er:.0f} | {dr:.0f} |")
    lines += [
        "",
        f"satcodec model {enc['model']}; peak RSS per step measured in its own process (ru_maxrss); "
        "OpenJPEG holds the whole image in memory (one process for encode and decode). "
        "Same machine, same run; the machine is shared, so compare the ratio, not the absolute speeds.",
        "",
        f"Reproduce: `python bench/large_scene.py --size {a.size} --bpp {a.bpp}`",
    ]
    publish(lines, a.out)


if __name__ == "__main__":
    main()
