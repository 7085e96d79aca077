"""The fast encoders (`satcodec tune-encoder`): what a narrower analysis costs in rate and buys
in speed, against the full model it was trained for (the same synthesis, weight for weight).

For each (full, fast) pair of shipped models: real bitstreams on the dev images at the same
target rates (each model alone at every rate, the anchors from the shared cache), BD-rate of
fast against full and of both against JPEG 2000, per image and on average, the held-out
scenes named; then the analysis alone on one 512² tile (+ halo) in onnxruntime, fp32 and int8,
one thread, medians of side-by-side runs; MAC per pixel and parameters from the architecture.

    python bench/fast_encoder.py [--data ../shared/data/sat] [--bpp 0.5,1,1.5,2,3]

Writes bench/results/fast_encoder.md (and fast_encoder.csv, every point).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from fnmatch import fnmatch
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")

from satcodec.benchmarks.harness import (  # noqa: E402
    OTHER_IMAGES,
    PAN_IMAGES,
    RESULTS,
    dev_images,
    shared_data,
)

# (full model, its fast encoder) pairs, as shipped: the narrow GDN analyses, then the narrow
# ReLU analyses (`--analysis-activation relu`: no division, int8 end to end)
PAIRS = (
    ("reduced-s8-l1e-3", "fast-s8-l1e-3"),
    ("reduced-s8-l4e-3", "fast-s8-l4e-3"),
    ("reduced-s8-l1e-3", "fast-relu-s8-l1e-3"),
    ("reduced-s8-l4e-3", "fast-relu-s8-l4e-3"),
)
CACHE = RESULTS / "rd_anchor_cache.json"


def analysis_speed(names: list[str], repeats: int = 7) -> dict[str, dict[str, float]]:
    """MPix/s of the analysis alone on a 544² input (a 512² tile and its 16 px halo), one
    onnxruntime thread, fp32 and int8 exports, interleaved runs; medians."""
    from satcodec.codec.registry import load_weights
    from satcodec.export.manifest import ExportManifest
    from satcodec.export.runtime import OnnxRuntimeTransform, cached_onnx_export

    sessions = {}
    for name in names:
        w = load_weights(name)
        for precision in ("fp32", "int8"):
            folder = cached_onnx_export(w, w.info, precision)
            path = ExportManifest.load(folder).graph_path(folder, "analysis")
            sessions[(name, precision)] = OnnxRuntimeTransform(path, threads=1)
    x = (np.random.default_rng(0).standard_normal((1, 1, 544, 544)) * 0.05).astype(np.float32)
    times: dict[tuple[str, str], list[float]] = {k: [] for k in sessions}
    for s in sessions.values():
        s(x)  # warm-up
    for _ in range(repeats):
        for k, s in sessions.items():
            t = time.perf_counter()
            s(x)
            times[k].append(time.perf_counter() - t)
    out: dict[str, dict[str, float]] = {}
    for (name, precision), ts in times.items():
        out.setdefault(name, {})[precision] = 512 * 512 / statistics.median(ts) / 1e6
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=shared_data("sat"))
    ap.add_argument("--bpp", default="0.5,1,1.5,2,3")
    ap.add_argument("--pan-only", action="store_true")
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="re-report the points of fast_encoder.csv; only models missing there are coded",
    )
    a = ap.parse_args()

    from satcodec.codec.config import encoder_macs
    from satcodec.codec.registry import list_models, load_weights
    from satcodec.codec.training import DEFAULT_EXCLUDE
    from satcodec.evaluation import bd_rate, evaluate, read_csv, write_csv

    bpps = [float(v) for v in a.bpp.split(",")]
    shipped = {m.name for m in list_models()}
    pairs = [p for p in PAIRS if set(p) <= shipped]
    names = list(dict.fromkeys(n for pair in pairs for n in pair))
    infos = {n: load_weights(n).info for n in names}
    paths = dev_images(a.data, PAN_IMAGES + ([] if a.pan_only else OTHER_IMAGES))
    # unseen in training: the validation scenes, and the images training leaves out
    val = {s for n in names for s in infos[n].meta.get("val_scenes", [])}
    held_out = sorted(
        p.name for p in paths if p.name in val or any(fnmatch(p.name, x) for x in DEFAULT_EXCLUDE)
    )
    t0 = time.time()
    rows = []
    coded: list[str] = []
    if a.reuse:
        rows = read_csv(RESULTS / "fast_encoder.csv")
    have = {Path(str(r.get("model", ""))).stem for r in rows if r["codec"] == "satcodec"}
    for n in names:  # each model alone at every target rate
        if n not in have:
            rows += evaluate(paths, ["satcodec"], bpps, model=[str(infos[n].path)], progress=False)
            coded.append(n)
    if not any(r["codec"] == "jpeg2000" for r in rows):
        rows += evaluate(paths, ["jpeg2000"], sorted(set(bpps) | {0.25, 4.0}), anchor_cache=CACHE,
                         progress=False)  # fmt: skip
    if coded or not a.reuse:
        write_csv(RESULTS / "fast_encoder.csv", rows)
    rd_s = time.time() - t0

    def curve(image: str, codec: str, model: str | None) -> tuple[list[float], list[float]]:
        pts = sorted(
            (r["bpp"], r["psnr"])
            for r in rows
            if r["image"] == image
            and r["codec"] == codec
            and (model is None or Path(str(r.get("model", ""))).stem == model)
        )
        return [p[0] for p in pts], [p[1] for p in pts]

    lines = [
        "# Fast encoders: a narrower analysis for the same ground decoder",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by "
        f"`python bench/fast_encoder.py {' '.join(sys.argv[1:])}` "
        + (
            f"(points of fast_encoder.csv re-reported; coded now: {', '.join(coded) or 'none'}, "
            f"{rd_s:.0f} s)."
            if a.reuse
            else f"({rd_s:.0f} s of coding)."
        ),
        "",
        "Each fast model is `satcodec tune-encoder --init FULL --analysis-hidden 32`: an "
        "analysis with 32 filters instead of 64 trained for FULL's synthesis, which stays "
        "frozen (first matching FULL's latents, then on FULL's rate–distortion loss at its λ). "
        "`fast-relu-*` adds `--analysis-activation relu`: ReLU instead of the GDN in the "
        "analysis (no division on board; every layer in onnxruntime's NCHWc layout and int8 "
        "end to end, bench/results/analysis_ops.md). "
        "Streams decode with the same ground decoder; `satcodec encode --max-encoder-macs "
        "4000` (API `max_encoder_macs=4000`) picks the best fast model under that budget, "
        "`--model NAME` any one. Rates are real file sizes; PSNR on the "
        "sensor range; BD-rate PCHIP over the common range (negative = fewer bits).",
        "",
        f"Never seen in training (all {len(names)} models): {', '.join(held_out)} (the "
        "validation scenes, and the images training leaves out). Every other image was in the "
        f"training set of all {len(names)} (in-sample).",
        "",
        "## Cost on board",
        "",
        "| model | encoder MAC/px | encoder params | analysis MPix/s, onnxruntime fp32, 1 thread "
        "| int8 |",
        "|---|---:|---:|---:|---:|",
    ]
    speed = analysis_speed(names)
    from satcodec.codec.models import ReducedVAE, complexity

    for n in names:
        c = complexity(ReducedVAE(infos[n].config))
        assert c["encoder_mac_per_pixel"] == encoder_macs(infos[n].config)
        lines.append(
            f"| {n} | {c['encoder_mac_per_pixel']:.0f} | {c['encoder_params']:,} | "
            f"{speed[n]['fp32']:.2f} | {speed[n]['int8']:.2f} |"
        )
    lines += [
        "",
        "Speed: the analysis alone on a 544² input (a 512² tile with its halo), medians of 7 "
        "interleaved runs in one process; compare ratios within a column (the host is shared).",
        "",
        "## Rate–distortion: fast against full (same decoder)",
        "",
        "| image | held out | " + " | ".join(f"BD-rate {f} vs {full}" for full, f in pairs)
        + " | " + " | ".join(f"{n} vs JPEG 2000" for n in names) + " |",
        "|---|---|" + "---:|" * (len(pairs) + len(names)),
    ]  # fmt: skip
    per_pair: dict[str, dict[str, float]] = {f: {} for _, f in pairs}
    per_model: dict[str, dict[str, float]] = {n: {} for n in names}
    for image in sorted({r["image"] for r in rows}):
        cells = []
        for full, f in pairs:
            v = bd_rate(*curve(image, "satcodec", full), *curve(image, "satcodec", f))
            cells.append("–" if np.isnan(v) else f"{v:+.1f} %")
            if not np.isnan(v):
                per_pair[f][image] = v
        anchor = curve(image, "jpeg2000", None)
        for n in names:
            v = bd_rate(*anchor, *curve(image, "satcodec", n))
            cells.append("–" if np.isnan(v) else f"{v:+.1f} %")
            if not np.isnan(v):
                per_model[n][image] = v
        lines.append(
            f"| {image.removesuffix('.tif')} | {'yes' if image in held_out else ''} | "
            + " | ".join(cells)
            + " |"
        )
    for label, keep in (("all images", None), ("unseen images", set(held_out))):

        def mean(d: dict[str, float], keep: set[str] | None = keep) -> str:
            v = [x for k, x in d.items() if keep is None or k in keep]
            return f"**{np.mean(v):+.2f} %**" if v else "–"

        lines.append(
            f"| **mean, {label}** | | "
            + " | ".join(mean(per_pair[f]) for _, f in pairs)
            + " | "
            + " | ".join(mean(per_model[n]) for n in names)
            + " |"
        )
    lines += [
        "",
        "Each model is measured alone at every target rate (outside its best range too), so "
        "the pair comparison is like for like; the shipped ladder (rd.md) picks per rate.",
    ]
    out = RESULTS / "fast_encoder.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
