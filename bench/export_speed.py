"""Deployment bench: PyTorch vs onnxruntime fp32 vs onnxruntime int8, speed and rate–distortion.

One run measures, on this CPU and side by side:

1. speed of the analysis (board) and synthesis (ground) transforms for one tile (analysis
   window = tile + 2·32 px halo; synthesis window = tile/16 + 2·2 latents), per runtime and
   thread count: median of ``--repeat`` runs after two warm-ups;
2. BD-rate of int8 against fp32 (both onnxruntime) on real images, through the real pipeline
   (tiling, quantisation, entropy coding, bitstreams, decoding): board int8 (int8 analysis,
   fp32 synthesis) and int8 on both sides. Calibration uses training scenes only; the primary
   test images are the model's held-out scenes (ventoux = the shipped sample, giza).

    python bench/export_speed.py                      # full run (~10 min on 2 cores)
    python bench/export_speed.py --quick              # fewer repeats, fewer images

Writes bench/results/export_speed.md and .json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from satcodec.benchmarks.harness import (  # noqa: E402
    RESULTS,
    SAMPLE,
    load_average,
    median_time,
    shared_data,
)
from satcodec.codec.registry import load_model  # noqa: E402
from satcodec.coding import (  # noqa: E402
    DECODE_HALO,
    Encoder,
    array_window_reader,
    choose_model,
    decode_to_array,
    encode_halo,
    open_decoder,
)
from satcodec.evaluation import bd_rate  # noqa: E402
from satcodec.export.onnx_export import Int8Options, export_onnx  # noqa: E402
from satcodec.export.profiling import host_description  # noqa: E402
from satcodec.export.runtime import OnnxRuntimeTransform  # noqa: E402
from satcodec.metrics import (
    bits_per_pixel,
    psnr,  # noqa: E402
)
from satcodec.raster import open_raster  # noqa: E402

DATA = shared_data("sat")
HELD_OUT = ["shareloc_pleiades-pan_giza.tif"]  # + the shipped sample (ventoux)
# seen in training (not in calibration): single-band scenes of other sensors
OTHERS = [
    "shareloc_worldview3-pan_buenosaires-b.tif",
    "solaris-spacenet6_worldview2-pan_rotterdam.tif",
    "rio-pansharpen_landsat8-b4-150m_guangdong-coast.tif",
    "rio-tiler-pds_sentinel1-grd-vv_tamilnadu-sar.tif",
]
CALIB = [  # training scenes used to calibrate int8 (never evaluated on)
    "s2p_pleiades-pan_reunion-volcano.tif",
    "shareloc_worldview3-pan_buenosaires-a.tif",
    "rio-pansharpen_landsat8-b4-150m_kanto.tif",
    "rio-toa_landsat8-b3-150m_washington.tif",
]
STEPS = [0.5, 0.71, 1.0, 1.41, 2.0, 2.83]


def read_image(path: Path, crop: int) -> tuple[np.ndarray, int]:
    with open_raster(path) as r:
        a = r.read()[:1]
        bits = r.meta.bit_depth
    h, w = a.shape[1:]
    y0, x0 = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
    return np.ascontiguousarray(a[:, y0 : y0 + crop, x0 : x0 + crop]), bits


def rd_curve(net, info, model_path, image, bits, analysis, synthesis) -> list[tuple[float, float]]:
    enc = Encoder(
        net,
        info,
        array_window_reader(image),
        height=image.shape[1],
        width=image.shape[2],
        bands=1,
        dtype=str(image.dtype),
        bit_depth=bits,
        nodata=None,
        analysis=analysis,
    )
    pts = []
    for s in STEPS:
        data = enc.encode(s)
        out = decode_to_array(open_decoder(data, model=model_path, synthesis=synthesis)).array
        pts.append((bits_per_pixel(len(data), image.size), psnr(image, out, bits)))
    return pts


def timed(fn, x, repeat: int) -> float:
    """Median of ``repeat`` runs of ``fn(x)`` after two warm-ups."""
    return median_time(lambda: fn(x), repeat, warmup=2)


def torch_fn(module, threads: int):
    def run(x):
        torch.set_num_threads(threads)
        with torch.no_grad():
            return module(torch.from_numpy(x)).numpy()

    return run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", help="shipped model name or weights path (default: default model)")
    ap.add_argument("--tiles", default="512,2048", help="tile sizes for the speed table")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--crop", type=int, default=768, help="centre crop of each test image")
    ap.add_argument("--rd-only", action="store_true", help="skip the speed table")
    ap.add_argument(
        "--quick", action="store_true", help="3 repeats, tile 512, held-out images only"
    )
    ap.add_argument("--out", default=str(RESULTS / "export_speed"))
    a = ap.parse_args()
    if a.quick:
        a.repeat, a.tiles = 3, "512"
    model_name = a.model or choose_model(None)
    net, info = load_model(model_name)
    model_path = str(info.path)
    t_start = time.time()
    work = Path(tempfile.mkdtemp(prefix="export_speed_"))
    calib = [DATA / n for n in CALIB if (DATA / n).exists()] or None
    t0 = time.perf_counter()
    m32 = export_onnx(net, info, work / "fp32", "fp32")
    t_fp32 = time.perf_counter() - t0
    t0 = time.perf_counter()
    m8 = export_onnx(net, info, work / "int8", "int8", calib=calib)
    t_int8 = time.perf_counter() - t0
    # the speed-first variant: the latent-writing analysis conv in int8 too (not the default)
    latq = Int8Options(
        keep_float=tuple(k for k in Int8Options().keep_float if k != "analysis:last")
    )
    export_onnx(net, info, work / "int8_latq", "int8", calib=calib, int8=latq)
    print(
        f"exports: fp32 {t_fp32:.1f} s, int8 {t_int8:.1f} s (calibration on {len(calib or [SAMPLE])} scenes)"
    )

    # ---- speed -------------------------------------------------------------------------------
    sample, bits = read_image(SAMPLE, 10_000)
    speed = []
    for tile in [] if a.rd_only else [int(t) for t in a.tiles.split(",")]:
        n = tile + 2 * encode_halo(net.config)
        reps = math.ceil(n / sample.shape[1])
        base = sample[0].astype(np.float32)
        big = np.tile(
            np.block([[base, base[:, ::-1]], [base[::-1], base[::-1, ::-1]]]), (reps, reps)
        )
        x = ((big[:n, :n] - np.round(base.mean())) / (2**bits - 1))[None, None].astype(np.float32)
        with torch.no_grad():
            y = net.analysis_transform(torch.from_numpy(x)).numpy()
        lat = tile // 16 + 2 * DECODE_HALO
        o = (y.shape[2] - lat) // 2
        yq = np.ascontiguousarray(np.rint(y[:, :, o : o + lat, o : o + lat]))
        for threads in [int(t) for t in a.threads.split(",")]:
            row = {"tile": tile, "threads": threads}
            runners = {
                "torch": (
                    torch_fn(net.analysis_transform, threads),
                    torch_fn(net.synthesis_transform, threads),
                ),
                "ort_fp32": (
                    OnnxRuntimeTransform(work / "fp32" / "analysis.onnx", threads),
                    OnnxRuntimeTransform(work / "fp32" / "synthesis.onnx", threads),
                ),
                "ort_int8": (
                    OnnxRuntimeTransform(work / "int8" / "analysis.onnx", threads),
                    OnnxRuntimeTransform(work / "int8" / "synthesis.onnx", threads),
                ),
                "ort_int8_latq": (
                    OnnxRuntimeTransform(work / "int8_latq" / "analysis.onnx", threads),
                    None,
                ),
            }
            for name, (fa, fs) in runners.items():
                row[f"{name}_analysis_ms"] = 1e3 * timed(fa, x, a.repeat)
                if fs is not None:
                    row[f"{name}_synthesis_ms"] = 1e3 * timed(fs, yq, a.repeat)
            speed.append(row)
            print(
                f"tile {tile} threads {threads}: analysis torch {row['torch_analysis_ms']:.1f} / "
                f"fp32 {row['ort_fp32_analysis_ms']:.1f} / int8 {row['ort_int8_analysis_ms']:.1f} ms; "
                f"synthesis {row['torch_synthesis_ms']:.1f} / {row['ort_fp32_synthesis_ms']:.1f} / "
                f"{row['ort_int8_synthesis_ms']:.1f} ms"
            )
    torch.set_num_threads(1)

    # ---- rate–distortion -----------------------------------------------------------------------
    images = [("shareloc_pleiades-pan_ventoux.tif (shipped sample)", SAMPLE, True)]
    images += [(n, DATA / n, True) for n in HELD_OUT]
    if not a.quick:
        images += [(n, DATA / n, False) for n in OTHERS]
    images = [(n, p, h) for n, p, h in images if p.exists()]
    a32 = OnnxRuntimeTransform(work / "fp32" / "analysis.onnx", 1)
    s32 = OnnxRuntimeTransform(work / "fp32" / "synthesis.onnx", 1)
    a8 = OnnxRuntimeTransform(work / "int8" / "analysis.onnx", 1)
    s8 = OnnxRuntimeTransform(work / "int8" / "synthesis.onnx", 1)
    a8q = OnnxRuntimeTransform(work / "int8_latq" / "analysis.onnx", 1)
    rd = []
    for name, path, held in images:
        img, b = read_image(path, a.crop)
        curves = {
            "fp32": rd_curve(net, info, model_path, img, b, a32, s32),
            "int8_board": rd_curve(net, info, model_path, img, b, a8, s32),
            "int8_both": rd_curve(net, info, model_path, img, b, a8, s8),
        }
        if held:
            curves["torch"] = rd_curve(net, info, model_path, img, b, None, None)
            curves["int8_latq_board"] = rd_curve(net, info, model_path, img, b, a8q, s32)

        def bd(key: str, c=curves) -> float:
            r0, p0 = zip(*c["fp32"], strict=True)
            r1, p1 = zip(*c[key], strict=True)
            return bd_rate(r0, p0, r1, p1)

        entry = {
            "image": name,
            "held_out": held,
            "shape": list(img.shape[1:]),
            "bit_depth": b,
            "curves": curves,
            "bd_rate_int8_board_pct": bd("int8_board"),
            "bd_rate_int8_both_pct": bd("int8_both"),
        }
        if held:
            entry["bd_rate_torch_vs_ort_fp32_pct"] = bd("torch")
            entry["bd_rate_int8_latq_board_pct"] = bd("int8_latq_board")
        rd.append(entry)
        print(
            f"{name}: BD-rate int8 board {entry['bd_rate_int8_board_pct']:+.2f} %, "
            f"int8 both {entry['bd_rate_int8_both_pct']:+.2f} %  (fp32 PSNR "
            f"{curves['fp32'][0][1]:.2f}..{curves['fp32'][-1][1]:.2f} dB)"
        )

    result = {
        "host": host_description(),
        "model": info.name,
        "model_id": info.model_id,
        "steps": info.meta.get("steps"),
        "repeat": a.repeat,
        "exports_s": {"fp32": t_fp32, "int8": t_int8},
        "int8": m8.quantisation,
        "int8_latq_kept_float": list(latq.keep_float),
        "fp32_checks": m32.checks,
        "int8_checks": m8.checks,
        "speed": speed,
        "rd": rd,
        "quantisation_steps": STEPS,
        "wall_s": time.time() - t_start,
        "load_average_at_end": load_average(),
        "command": " ".join(["python", "bench/export_speed.py", *sys.argv[1:]]),
    }
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    out.with_suffix(".md").write_text(render(result))
    import shutil

    shutil.rmtree(work, ignore_errors=True)  # exported graphs are build artefacts
    print(f"wrote {out.with_suffix('.md')} and .json ({result['wall_s']:.0f} s)")
    return 0


def render(r: dict) -> str:
    L = [
        "# Deployment bench: PyTorch vs onnxruntime fp32 vs onnxruntime int8",
        "",
        f"- host: {r['host']}; load average at the end of the run (1, 5, 15 min): "
        f"{', '.join(f'{v:.1f}' for v in r['load_average_at_end'])}; reproduce: `{r['command']}`",
        f"- model: {r['model']} (`{r['model_id']}`, {r['steps']} training steps)",
        f"- int8: {r['int8']['method']}, activations {r['int8']['activations']}, weights "
        f"{r['int8']['weights']}, {r['int8']['calibration']} calibration on "
        f"{r['int8']['calibration_patches']} patches of {r['int8']['patch']} px from "
        f"{', '.join(Path(f).name for f in r['int8']['calibration_files'])}; channels equalised: "
        f"{r['int8']['equalised']}; op types quantised: {r['int8']['op_types']}; kept in float: "
        f"analysis {r['int8']['analysis_kept_float']}, synthesis {r['int8']['synthesis_kept_float']}",
        f"- ONNX fp32 vs PyTorch, max relative error: analysis "
        f"{r['fp32_checks']['analysis_fp32_vs_torch_rel_err']:.1e}, synthesis "
        f"{r['fp32_checks']['synthesis_fp32_vs_torch_rel_err']:.1e} (limit 1e-5)",
        "",
        "## Speed (median of "
        f"{r['repeat']} runs after 2 warm-ups; analysis window = tile + 64 px, synthesis window = "
        "tile/16 + 4 latents)",
        "",
        "| tile | threads | analysis torch ms | fp32 ms | int8 ms | int8 speed-up vs fp32 | "
        "int8 latents-int8 ms (speed-up) | synthesis torch ms | fp32 ms | int8 ms | "
        "int8 speed-up vs fp32 |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in r["speed"]:
        L.append(
            f"| {s['tile']} | {s['threads']} | {s['torch_analysis_ms']:.1f} | "
            f"{s['ort_fp32_analysis_ms']:.1f} | {s['ort_int8_analysis_ms']:.1f} | "
            f"{s['ort_fp32_analysis_ms'] / s['ort_int8_analysis_ms']:.2f}x | "
            f"{s['ort_int8_latq_analysis_ms']:.1f} "
            f"({s['ort_fp32_analysis_ms'] / s['ort_int8_latq_analysis_ms']:.2f}x) | "
            f"{s['torch_synthesis_ms']:.1f} | {s['ort_fp32_synthesis_ms']:.1f} | "
            f"{s['ort_int8_synthesis_ms']:.1f} | "
            f"{s['ort_fp32_synthesis_ms'] / s['ort_int8_synthesis_ms']:.2f}x |"
        )
    L += [
        "",
        "## Rate–distortion: int8 against fp32 (BD-rate, real bitstreams, PSNR on the sensor range)",
        "",
        f"Quantisation steps {r['quantisation_steps']} (about one octave of rate either side of "
        "the model's native point); centre crops of band 1. Board int8 = int8 analysis on board, "
        "fp32 synthesis on the ground.",
        "",
        "| image | held out | fp32 bpp range | fp32 PSNR range dB | BD-rate board int8 | "
        "BD-rate int8 both sides | board int8, latents int8 too | torch vs ORT fp32 |",
        "|---|:-:|---|---|---:|---:|---:|---:|",
    ]
    for e in r["rd"]:
        c = e["curves"]["fp32"]
        tv = e.get("bd_rate_torch_vs_ort_fp32_pct")
        lq = e.get("bd_rate_int8_latq_board_pct")
        L.append(
            f"| {e['image']} | {'yes' if e['held_out'] else 'no (in training)'} | "
            f"{c[-1][0]:.2f}–{c[0][0]:.2f} | {c[-1][1]:.2f}–{c[0][1]:.2f} | "
            f"{e['bd_rate_int8_board_pct']:+.2f} % | {e['bd_rate_int8_both_pct']:+.2f} % | "
            f"{'' if lq is None else f'{lq:+.2f} %'} | {'' if tv is None else f'{tv:+.3f} %'} |"
        )
    held = [e for e in r["rd"] if e["held_out"]]
    if held:
        L += [
            "",
            f"Mean over held-out images: board int8 "
            f"{np.mean([e['bd_rate_int8_board_pct'] for e in held]):+.2f} %, int8 both "
            f"{np.mean([e['bd_rate_int8_both_pct'] for e in held]):+.2f} %; over all images: "
            f"{np.mean([e['bd_rate_int8_board_pct'] for e in r['rd']]):+.2f} % / "
            f"{np.mean([e['bd_rate_int8_both_pct'] for e in r['rd']]):+.2f} %.",
        ]
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    sys.exit(main())
