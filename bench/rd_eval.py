"""Rate–distortion bench: the shipped ladder against JPEG 2000 and JPEG XL, and the reduced model
against the full-complexity scale-hyperprior peer.

  # the ladder (or --model PATH ...) on the dev rasters, from real bitstreams
  python bench/rd_eval.py ladder [--data ../shared/data/sat] [--tag rd]
  # train the peer (and, for a like-for-like short budget, a reduced model) with the shared trainer
  python bench/rd_eval.py train --family peer --lmbda 4e-3 --steps 14000 --out runs/peer_l4e-3 [--resume]
  # compare: model likelihood rates on the single-band 11–13-bit images, plus complexity
  python bench/rd_eval.py peer --peer runs/peer_l4e-3/peer.safetensors --reduced MODEL.safetensors

Outputs go to bench/results/<tag>_*.{csv,md,png}. JPEG 2000 / JPEG XL points are cached in
bench/results/rd_anchor_cache.json (keyed by pixels, codec, target and imagecodecs version).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")

from satcodec.benchmarks.harness import (  # noqa: E402
    DECIMATED_IMAGES,
    EXCLUDED_IMAGES,
    HELD_OUT_DATA,
    OTHER_IMAGES,
    PAN_IMAGES,
    REPO,
    RESULTS,
    dev_images,
    shared_data,
)
from satcodec.codec.training import DEFAULT_EXCLUDE as TRAINING_EXCLUDE  # noqa: E402
from satcodec.evaluation.run import SPECTRAL_CODEC  # noqa: E402

CACHE = RESULTS / "rd_anchor_cache.json"
DEFAULT_DATA = shared_data("sat")


def _shown(path: str) -> str:
    """A path as a report shows it: relative to the repository when inside it."""
    p = Path(path).resolve()
    return str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(path)


def _model_infos(models: list[str] | None) -> list[Any]:
    from satcodec.codec.registry import list_models, load_model

    if models:
        return [load_model(m)[1] for m in models]
    # the shipped ladder: the fast encoders are chosen only under an encoder budget
    # (bench/fast_encoder.py measures them)
    return [i for i in list_models() if not i.meta.get("encoder_only")]


def _batch_of(info: Any) -> str:
    """'8x128²' from the model's metadata, else from its model card (``<name>.md``)."""
    m = info.meta
    if "batch" in m and "patch" in m:
        return f"{m['batch']}x{m['patch']}²"
    card = Path(info.path).with_suffix(".md")
    if card.exists():
        import re

        hit = re.search(r"batch (\d+) of (\d+)²", card.read_text())
        if hit:
            return f"{hit.group(1)}x{hit.group(2)}² (card)"
    return "?"


def _steps_of(meta: dict[str, Any]) -> str:
    """Training steps, counting those of the model a rung was fine-tuned from."""
    from satcodec.codec.registry import load_model
    from satcodec.errors import SatcodecError

    steps = meta.get("steps", "?")
    if meta.get("history"):  # every phase, oldest first (a rung's init may since be replaced)
        return " + ".join(
            f"{h['steps']}" + (f" ({h['batch']}, GPU)" if h.get("device") == "cuda" else "")
            for h in meta["history"]
        )
    init = meta.get("init")
    if not init:
        return str(steps)
    try:
        before = load_model(init["model"])[1].meta.get("steps", "?")
    except SatcodecError:
        before = "?"
    return f"{before} + {steps} (from {init['model']})"


def _budget_table(infos: list[Any]) -> str:
    from satcodec.codec.models import complexity
    from satcodec.codec.registry import load_model
    from satcodec.evaluation import format_table, model_bpp_range

    rows = []
    for info in infos:
        m = info.meta
        net, _ = load_model(info.path)
        c = complexity(net)
        lo, hi = model_bpp_range(m)
        rows.append(
            (
                info.name,
                info.model_id[:12],
                f"{m['lmbda']:g}" if isinstance(m.get("lmbda"), float) else "?",
                _steps_of(m),
                _batch_of(info),
                f"{m.get('optimizer', '?')} lr {m.get('lr', '?')} {m.get('schedule', '?')}",
                f"{lo:.2g}–{hi:.2g}",
                f"{c['encoder_mac_per_pixel'] / 1e3:.1f}k / {c['encoder_params'] / 1e3:.0f}k",
                ", ".join(m.get("val_scenes", [])) or "?",
            )
        )
    return format_table(
        [
            "model",
            "id",
            "λ",
            "steps",
            "batch",
            "optimizer",
            "bpp range",
            "enc MAC/px / params",
            "held-out scenes",
        ],
        rows,
    )


def cmd_ladder(a: argparse.Namespace) -> int:
    from satcodec.evaluation import evaluate, plot_rd, read_csv, report, write_csv

    data = Path(a.data)
    infos = _model_infos(a.model)
    if not infos:
        print("no shipped model: pass --model PATH", file=sys.stderr)
        return 2
    held_out = set()
    for i in infos:
        held_out |= set(i.meta.get("val_scenes", []))
    # images the training data loader leaves out of every run (their model cards say so):
    # never seen in training either
    never_all = {
        p.name
        for p in data.glob("*.tif")
        if any(fnmatch.fnmatch(p.name, g) for g in TRAINING_EXCLUDE)
    }
    never = never_all - set(EXCLUDED_IMAGES)
    held_out |= never
    added = sorted(Path(a.held_out_data).glob("*.tif")) if a.held_out_data else []
    held_out |= {p.name for p in added}
    bpps = [float(v) for v in a.bpp.split(",")]
    summary = [
        f"# Rate–distortion of satcodec against JPEG 2000 and JPEG XL ({a.tag})\n",
        f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by "
        f"`python bench/rd_eval.py ladder {' '.join(sys.argv[2:])}`.\n",
        "Rates are real file sizes (bits per pixel and band); PSNR on the sensor range "
        "(peak 2^bits − 1, bits = the raster's bit depth: NBITS tag when plausible, else the "
        "bits used rounded up to even); MS-SSIM with the same peak; nodata collars masked in "
        "distortion. Anchors rate-matched within ±3% (bisection on the real size). BD-rate: "
        "PCHIP in log-rate over the common PSNR range of the two curves (NaN when they do not "
        "overlap); negative = fewer bits than JPEG 2000. satcodec streams use the default "
        "cross-channel context model (bitstream flag 0x0001; its saving against the "
        "per-channel model at equal distortion: `bench/results/context_model.md`) and the "
        "default band normalisation by texture (flag 0x0004 where a band's texture calls for "
        "another peak than its bit depth's; what it saves: `bench/results/band_peaks.md`).\n",
        "## Models and training budget\n",
        _budget_table(infos),
        "",
        f"Held out from training: {', '.join(sorted(held_out - never)) or 'unknown'} "
        "(validation scenes of every model)"
        + (
            f"; never trained on: {', '.join(sorted(never))} (left out of every training run "
            "by `satcodec/codec/training.py`'s DEFAULT_EXCLUDE, as the model cards say)"
            if never
            else ""
        )
        + (
            f"; added after training (`{_shown(a.held_out_data)}`, SOURCES.md there; per-family "
            f"section only): {', '.join(p.name for p in added)}"
            if added
            else ""
        )
        + ". **Every other image below was in the training set** (in-sample): those BD-rates "
        "are optimistic for unseen scenes.\n",
        "Excluded: "
        + "; ".join(
            f"`{k}` ({v}"
            + (
                f"; the per-family section takes it at one pixel in {DECIMATED_IMAGES[k]}, its "
                "native grid)"
                if k in DECIMATED_IMAGES
                else ")"
            )
            for k, v in EXCLUDED_IMAGES.items()
        )
        + ". The `satcodec` curve is the ladder: at each target the model the API picks by "
        "default (best measured PSNR on its model card at that rate); `satcodec:<model>` curves are the single models. "
        "`satcodec-klt` (group `other`, images of two bands or more) is that ladder coding "
        "the bands' KLT jointly (`--spectral klt`, bitstream flag 0x0002), at the same rate "
        "per pixel and band; its anchors are the same per-band ones as every curve's here. "
        "Against JPEG 2000 coding all bands in one codestream, with its colour transform or "
        "the same KLT: `bench/results/spectral.md`.\n",
    ]
    group_rows: dict[str, list[dict[str, Any]]] = {}
    groups = [("pan", PAN_IMAGES, "single-band optical, 11–13-bit data")]
    if not a.pan_only:
        groups.append(("other", OTHER_IMAGES, "every other dev image"))
    for group, names, what in groups:
        paths = dev_images(data, names)
        if not paths:
            continue
        skipped: list[str] = []
        t0 = time.time()
        codecs = a.codecs.split(",")
        anchors = [c for c in codecs if c not in ("satcodec", SPECTRAL_CODEC)]
        extra = [float(v) for v in a.anchor_extra.split(",") if v.strip()]
        rows = []
        base = RESULTS / f"{a.tag}_{group}"
        if a.reuse and base.with_suffix(".csv").exists():
            # re-report the points measured by an earlier run (no coding at all)
            rows = read_csv(base.with_suffix(".csv"))
            codecs = anchors = []
        if "satcodec" in codecs:
            ladder_only = group != "pan" and not a.all_models
            rows += _learned_rows(paths, "satcodec", infos, bpps, a, skipped, ladder_only)
        if SPECTRAL_CODEC in codecs:
            # multi-band images also coded jointly (--spectral klt; single bands are skipped)
            rows += _learned_rows(paths, SPECTRAL_CODEC, infos, bpps, a, skipped, False)
        if anchors:
            # anchors also at a few extra rates, so their PSNR range covers the learned
            # codec's for BD-rate (the integral runs over the common range only)
            rows += evaluate(
                paths,
                anchors,
                sorted(set(bpps) | set(extra)),
                anchor_cache=CACHE,
                progress=not a.quiet,
                log=skipped.append,
            )
        for r in rows:
            r["held_out"] = r["image"] in held_out
        group_rows[group] = rows
        text, bd = report(rows)
        write_csv(base.with_suffix(".csv"), rows)
        write_csv(base.parent / f"{base.name}_bd.csv", bd)
        plot_rd(
            rows,
            base.with_suffix(".png"),
            bd=bd,
            title=f"{group}: {what} — real file sizes; legend: BD-rate vs JPEG 2000",
        )
        section = [
            f"## Group `{group}`: {what} ({len(paths)} images, {time.time() - t0:.0f} s)\n",
            f"Files: `{base.name}.csv` (points), `{base.name}_bd.csv`, `{base.name}.png`.\n",
            "Held-out images: "
            + (", ".join(r for r in sorted({r["image"] for r in rows}) if r in held_out) or "none")
            + "\n",
            text,
            "",
        ]
        if skipped:
            section += ["Points not measured:\n", *[f"* {s}" for s in skipped], ""]
        summary += section
        print("\n".join(section))
    if not a.pan_only and not a.reuse and "satcodec" in a.codecs.split(","):
        # an excluded image taken on its native grid there is as unseen as the others
        family_held_out = held_out | (never_all & set(DECIMATED_IMAGES))
        section = family_section(data, infos, family_held_out, group_rows, bpps, a, added)
        summary += section
        print("\n".join(section))
    out = RESULTS / f"{a.tag}.md"
    out.write_text("\n".join(summary) + "\n")
    print(f"wrote {out}")
    return 0


def _learned_rows(
    paths: list[Path],
    codec: str,
    infos: list[Any],
    bpps: list[float],
    a: argparse.Namespace,
    skipped: list[str],
    ladder_only: bool,
) -> list[dict[str, Any]]:
    """The points of ``satcodec`` or ``satcodec-klt`` on ``paths`` with the shipped models."""
    from satcodec.evaluation import evaluate

    return evaluate(
        paths,
        [codec],
        bpps,
        model=[str(i.path) for i in infos],
        progress=not a.quiet,
        log=skipped.append,
        ladder_only=ladder_only,
    )


def _ladder_bd(table: list[dict[str, Any]]) -> dict[str, float]:
    """Per image: the BD-rate of the ladder (the one satcodec model where it is alone)."""
    out: dict[str, float] = {}
    for r in table:
        if r["image"] in ("MEAN", "MEDIAN"):
            continue
        if r["curve"] == "satcodec" or (
            r["curve"].startswith("satcodec:") and r["image"] not in out
        ):
            out[r["image"]] = float(r["bd_rate_pct"])
    return out


def family_section(
    data: Path,
    infos: list[Any],
    held_out: set[str],
    group_rows: dict[str, list[dict[str, Any]]],
    bpps: list[float],
    a: argparse.Namespace,
    added: Sequence[Path] = (),
) -> list[str]:
    """Issue 22's view: every band of every dev image (and of the ``added`` held-out images)
    as its own image, BD-rates of the ladder against JPEG 2000 and JPEG XL per sensor family,
    held-out images apart."""
    import tempfile

    import rasterio

    from satcodec.benchmarks.harness import FAMILIES, IMAGE_FAMILIES, band_family
    from satcodec.evaluation import bd_table, evaluate, load_image, valid_mask, write_csv
    from satcodec.evaluation.recompression import grid_neutral_crop, wavelet_grid_signature

    t0 = time.time()
    rows = [r for r in group_rows.get("pan", []) if r["codec"] != SPECTRAL_CODEC]
    source = {r["image"]: (r["image"], 0) for r in rows}
    extra = [float(v) for v in a.anchor_extra.split(",") if v.strip()]
    skipped: list[str] = []
    neutral_of: dict[str, str] = {}  # band image -> its grid-neutral crop's name
    with tempfile.TemporaryDirectory() as tmp:
        paths, neutral = [], []

        def write(path: Path, name: str, pixels: np.ndarray, bits: int, every: int = 1) -> Path:
            with rasterio.open(path) as src:
                prof = src.profile.copy()
            prof.update(count=1, nbits=bits, compress="deflate", tiled=False)
            prof.update(transform=prof["transform"] * rasterio.Affine.scale(every))
            prof.update(height=pixels.shape[0], width=pixels.shape[1])
            for k in ("blockxsize", "blockysize", "photometric"):
                prof.pop(k, None)
            out = Path(tmp) / name
            with rasterio.open(out, "w", **prof) as dst:
                dst.write(pixels[None])
            return out

        decimated = dev_images(data, DECIMATED_IMAGES)
        for path in [*dev_images(data, PAN_IMAGES + OTHER_IMAGES), *added, *decimated]:
            arr, bits, nodata = load_image(path)
            every = DECIMATED_IMAGES.get(path.name, 1)
            arr = arr[:, ::every, ::every]
            mask = valid_mask(arr, nodata)
            stem = path.stem if every == 1 else f"{path.stem}@every{every}"
            for b in range(arr.shape[0]):
                name = f"{stem}#b{b + 1}.tif" if arr.shape[0] > 1 else f"{stem}.tif"
                if path.name not in PAN_IMAGES:  # pan images are group `pan`'s rows already
                    paths.append(write(path, name, arr[b], bits, every))
                    source[name] = (path.name, b)
                sig = wavelet_grid_signature(arr[b], mask)
                if sig.flagged:
                    crop = f"{Path(name).stem}@grid-neutral.tif"
                    neutral.append(write(path, crop, grid_neutral_crop(arr[b], sig), bits, every))
                    neutral_of[name] = crop
                    source[crop] = (path.name, b)
        rows += _learned_rows(paths + neutral, "satcodec", infos, bpps, a, skipped, True)
        rows += evaluate(
            paths + neutral,
            ["jpeg2000", "jpegxl"],
            sorted(set(bpps) | set(extra)),
            anchor_cache=CACHE,
            progress=not a.quiet,
            log=skipped.append,
        )
    vs_j2k = _ladder_bd(bd_table(rows, anchor="jpeg2000"))
    vs_jxl = _ladder_bd(bd_table(rows, anchor="jpegxl"))
    per = []
    for image, bd in sorted(vs_j2k.items()):
        if image.endswith("@grid-neutral.tif"):
            continue
        src, band = source[image]
        fam = band_family(src, band) or "?"
        crop = neutral_of.get(image)
        per.append(
            {
                "image": image,
                "source": src,
                "band": band + 1,
                "family": fam,
                "held_out": src in held_out,
                "bd_vs_jpeg2000_pct": bd,
                "bd_vs_jpegxl_pct": vs_jxl.get(image, math.nan),
                "wavelet_grid": crop is not None,
                # flagged bands one pixel off the earlier coder's grid; the others as they are
                "bd_vs_jpeg2000_grid_neutral_pct": vs_j2k.get(crop, math.nan) if crop else bd,
                "bd_vs_jpegxl_grid_neutral_pct": (
                    vs_jxl.get(crop, math.nan) if crop else vs_jxl.get(image, math.nan)
                ),
            }
        )
    write_csv(RESULTS / f"{a.tag}_families.csv", per)

    def stats(items: list[dict[str, Any]], key: str) -> str:
        vals = [(r[key], r["image"]) for r in items if math.isfinite(r[key])]
        if not vals:
            return "–"
        worst = max(vals)
        return f"{np.mean([v for v, _ in vals]):+.1f} % (worst {worst[0]:+.1f} %, n={len(vals)})"

    lines = [
        f"## Per sensor family: every band its own image ({time.time() - t0:.0f} s)\n",
        "Every band of every dev image above coded alone (multi-band rasters split into "
        "bands, bit depth kept), the ladder at 0.5–3 bpp against JPEG 2000 and JPEG XL at "
        "the same rates; families by band (`satcodec/benchmarks/harness.py` IMAGE_FAMILIES: "
        "the Sentinel-2 cube's B5–B7, B8A, B11, B12 and Landsat 7's bands 5 and 7 are "
        "red-edge / SWIR). Held out = never in any model's training (validation scenes, "
        "the images training leaves out"
        + (
            ", and the images added after training: "
            + ", ".join(
                f"{p.name} ({', '.join(sorted(set(IMAGE_FAMILIES.get(p.name, ['?']))))})"
                for p in added
            )
            if added
            else ""
        )
        + "; "
        + ", ".join(
            f"{n} (VNIR) at one pixel in {k} along each axis, its native grid (never trained on)"
            for n, k in DECIMATED_IMAGES.items()
            if (data / n).exists()
        )
        + "). Per-image values: `rd_families.csv`.\n",
        "| family | images (bands) | held out | ladder vs JPEG 2000, held out | vs JPEG 2000, "
        "in-sample | ladder vs JPEG XL, held out | vs JPEG XL, in-sample |",
        "|---|---:|---:|---|---|---|---|",
    ]

    def family_rows(suffix: str, counts: bool) -> list[str]:
        """One row per family: held out and in-sample BD-rates against both anchors, from
        the ``bd_vs_<anchor>{suffix}`` columns."""
        out = []
        for fam in FAMILIES:
            items = [r for r in per if r["family"] == fam]
            ho = [r for r in items if r["held_out"]]
            ins = [r for r in items if not r["held_out"]]
            cells = [f"{len(items)}", f"{len(ho)}"] if counts else []
            for anchor in ("jpeg2000", "jpegxl"):
                key = f"bd_vs_{anchor}{suffix}"
                cells += [stats(ho, key), stats(ins, key)]
            out.append(f"| {fam} | " + " | ".join(cells) + " |")
        return out

    lines += family_rows("_pct", counts=True)
    flagged = [r for r in per if r["wavelet_grid"]]
    if flagged:
        lines += [
            "",
            "**Images decoded from an earlier 9/7-wavelet codestream.** "
            + ", ".join(f"{r['image']}{' (held out)' if r['held_out'] else ''}" for r in flagged)
            + " carry the grid of an earlier irreversible 9/7 wavelet coder (archive products "
            "delivered as JPEG 2000): on that pixel grid most of their finest wavelet "
            "coefficients are near zero, at the other three parities they are not "
            "(`satcodec/evaluation/recompression.py`). JPEG 2000 coding them again on the same "
            "grid re-quantises the same coefficients and gains several dB near the earlier "
            "coder's rate that neither satcodec nor JPEG XL can. The table below measures "
            "those images one pixel off that grid as well (one row and one column dropped, "
            "`grid_neutral_crop`): the content is the same, the grid is gone, as in raw "
            "sensor data, which is what an on-board codec codes. Every other image is as "
            "above.\n",
            "| family | ladder vs JPEG 2000, held out | vs JPEG 2000, in-sample | "
            "ladder vs JPEG XL, held out | vs JPEG XL, in-sample |",
            "|---|---|---|---|---|",
        ]
        lines += family_rows("_grid_neutral_pct", counts=False)
        lines += [
            "",
            "Per flagged image, ladder vs JPEG 2000 as delivered → one pixel off the grid: "
            + "; ".join(
                f"{r['image']} {r['bd_vs_jpeg2000_pct']:+.1f} % → "
                f"{r['bd_vs_jpeg2000_grid_neutral_pct']:+.1f} %"
                for r in flagged
            )
            + ".",
        ]

    def family_means(key: str) -> dict[str, float]:
        return {
            fam: float(np.mean([r[key] for r in per if r["family"] == fam and r["held_out"]]))
            for fam in FAMILIES
            if any(r["family"] == fam and r["held_out"] for r in per)
        }

    ho_fams = family_means("bd_vs_jpeg2000_pct")
    if ho_fams:
        worst = max(ho_fams, key=ho_fams.get)
        neutral_fams = family_means("bd_vs_jpeg2000_grid_neutral_pct")
        n_worst = max(neutral_fams, key=neutral_fams.get)
        lines += [
            "",
            "Held out, against JPEG 2000: mean over families "
            f"{np.mean(list(ho_fams.values())):+.1f} %, worst family {worst} "
            f"({ho_fams[worst]:+.1f} %)"
            + (
                f"; with the flagged images one pixel off their earlier coder's grid "
                f"{np.mean(list(neutral_fams.values())):+.1f} %, worst family {n_worst} "
                f"({neutral_fams[n_worst]:+.1f} %)"
                if flagged
                else ""
            )
            + "; families without a held-out image: "
            + (", ".join(f for f in FAMILIES if f not in ho_fams) or "none")
            + ".",
        ]
        jxl_fams = family_means("bd_vs_jpegxl_pct")
        if jxl_fams:
            j_worst = max(jxl_fams, key=jxl_fams.get)
            lines.append(
                "Held out, against JPEG XL: mean over families "
                f"{np.mean(list(jxl_fams.values())):+.1f} %, worst family {j_worst} "
                f"({jxl_fams[j_worst]:+.1f} %). No CCSDS 122 encoder is installed here (none in "
                "the package index either), so it is not measured."
            )
    klt = [r for r in group_rows.get("other", []) if r["codec"] == SPECTRAL_CODEC]
    if klt:
        lines.append(
            "\nCoding a multi-band scene's bands jointly instead (`--spectral klt`, the "
            "`satcodec-klt` curves of group `other`) is a scene-level option; its BD-rates "
            "are in that group's table."
        )
    if skipped:
        lines += ["", "Points not measured:\n", *[f"* {s}" for s in skipped]]
    return lines + [""]


# --------------------------------------------------------------------------------------------
# Peer training and comparison
# --------------------------------------------------------------------------------------------


def cmd_train(a: argparse.Namespace) -> int:
    if a.family == "peer":
        from satcodec.evaluation.peer_hyperprior import PEER_LR, HyperpriorConfig, train_peer

        meta = train_peer(
            a.data,
            a.lmbda,
            a.steps,
            a.out,
            config=HyperpriorConfig(hidden=a.hidden or 128, latent=a.latent or 192),
            lr=a.lr or PEER_LR,
            warmup=a.warmup,
            resume=a.resume,
            val_every=a.val_every,
        )
    else:
        from satcodec.codec.models import ModelConfig
        from satcodec.codec.training import train_codec

        meta = train_codec(
            a.data,
            a.lmbda,
            a.steps,
            a.out,
            resume=a.resume,
            lr=a.lr or 1e-3,
            config=ModelConfig(hidden=a.hidden or 64, latent=a.latent or 192),
            val_every=a.val_every,
        )
    print(json.dumps({k: meta[k] for k in ("lmbda", "steps", "val", "complexity")}, indent=1))
    return 0


def _pareto(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Upper-left envelope: keep a point only if no cheaper point has a higher PSNR."""
    out: list[tuple[float, float]] = []
    for r, p in sorted(points):
        if not out or p > out[-1][1]:
            out.append((r, p))
    return out


def _load_family(paths: list[str], family: str) -> list[tuple[str, Any, dict[str, Any]]]:
    out = []
    for p in paths:
        if family == "peer":
            from satcodec.evaluation.peer_hyperprior import load_peer

            net, meta = load_peer(p)
        else:
            from satcodec.codec.registry import load_model
            from satcodec.errors import WeightsError

            try:
                net, info = load_model(p)
                meta = dict(info.meta)
            except WeightsError:  # a trainer checkpoint of the default architecture
                from satcodec.codec.models import ModelConfig, ReducedVAE
                from satcodec.train import load_checkpoint

                net = ReducedVAE(ModelConfig())
                meta = {"checkpoint": load_checkpoint(p, net)}
                net.eval()
        stem = Path(p).stem
        out.append(
            (Path(p).parent.name if stem in ("peer", "model", "checkpoint") else stem, net, meta)
        )
    return out


def cmd_peer(a: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from satcodec.codec.models import complexity
    from satcodec.evaluation import (
        bd_rate,
        evaluate,
        format_table,
        load_image,
        plot_rd,
        valid_mask,
        write_csv,
    )
    from satcodec.evaluation.peer_hyperprior import peer_complexity, rd_sweep
    from satcodec.metrics import psnr

    paths = dev_images(Path(a.data), PAN_IMAGES)
    families = {
        "reduced": _load_family(a.reduced, "reduced"),
        "peer": _load_family(a.peer, "peer"),
    }
    steps = [float(2**e) for e in np.arange(a.step_lo, a.step_hi + 1e-9, 0.5)]
    rows: list[dict[str, Any]] = []
    jobs = [(p, fam, m) for p in paths for fam, ms in families.items() for m in ms]
    for path, fam, (name, net, _meta) in tqdm(jobs, desc="likelihood RD", disable=a.quiet):
        arr, bits, nodata = load_image(path)
        mask = valid_mask(arr, nodata)
        for step, bpp, rec in rd_sweep(net, arr[0], bits, steps):
            rows.append(
                {
                    "image": path.name,
                    "bands": 1,
                    "height": arr.shape[1],
                    "width": arr.shape[2],
                    "bit_depth": bits,
                    "codec": f"{fam}-likelihood",
                    "model": name,
                    "step": step,
                    "target_bpp": step,
                    "bpp": bpp,
                    "psnr": psnr(arr[0], rec, bits, mask),
                    "msssim": math.nan,
                }
            )
    # real anchors and real reduced bitstreams on the same images
    real = evaluate(
        paths,
        ["jpeg2000"],
        [float(v) for v in a.anchor_bpp.split(",")],
        anchor_cache=CACHE,
        progress=not a.quiet,
    )
    if not a.no_real:
        real += evaluate(
            paths, ["satcodec"], [0.5, 1.0, 2.0, 3.0], model=a.reduced, progress=not a.quiet
        )
    for r in real:
        if r["codec"] == "satcodec":
            r["codec"] = "reduced-bitstream"
    # one curve per family and image: the envelope of all its models and steps
    curves_rows: list[dict[str, Any]] = []
    for img in sorted({r["image"] for r in rows}):
        for fam in ("reduced-likelihood", "peer-likelihood", "reduced-bitstream", "jpeg2000"):
            src = rows if fam.endswith("likelihood") else real
            mine = [r for r in src if r["image"] == img and r["codec"] == fam]
            # key of a point across images (for the mean panel): the target rate, or the
            # quantisation step when the family has a single model
            single = len({r["model"] for r in mine}) == 1
            key = {
                (r["bpp"], r["psnr"]): (
                    r["target_bpp"] if "step" not in r else r["step"] if single else r["bpp"]
                )
                for r in mine
            }
            pts = [(r["bpp"], r["psnr"]) for r in mine]
            info = next(r for r in rows if r["image"] == img)
            for bpp, p in _pareto(pts):
                if a.rate_lo <= bpp <= a.rate_hi or fam in ("jpeg2000", "reduced-bitstream"):
                    curves_rows.append(
                        {
                            "image": img,
                            "bands": 1,
                            "height": info["height"],
                            "width": info["width"],
                            "bit_depth": info["bit_depth"],
                            "codec": fam,
                            "model": "",
                            "target_bpp": key[(bpp, p)],
                            "bpp": bpp,
                            "psnr": p,
                            "msssim": math.nan,
                        }
                    )

    # BD-rates per image: each family against JPEG 2000, and reduced against the peer
    def curve(img: str, fam: str) -> tuple[list[float], list[float]]:
        pts = [
            (r["bpp"], r["psnr"]) for r in curves_rows if r["image"] == img and r["codec"] == fam
        ]
        return [p[0] for p in pts], [p[1] for p in pts]

    bd_rows = []
    comparisons = [
        ("peer-likelihood", "jpeg2000"),
        ("reduced-likelihood", "jpeg2000"),
        ("reduced-bitstream", "jpeg2000"),
        ("reduced-likelihood", "peer-likelihood"),
        ("reduced-bitstream", "peer-likelihood"),
    ]
    for img in sorted({r["image"] for r in curves_rows}):
        for test, anchor in comparisons:
            ar, ap = curve(img, anchor)
            tr, tp = curve(img, test)
            if len(ar) < 2 or len(tr) < 2:
                continue
            bd_rows.append(
                {
                    "image": img,
                    "curve": test,
                    "anchor": anchor,
                    "bd_rate_pct": bd_rate(ar, ap, tr, tp),
                }
            )
    means = {}
    for test, anchor in comparisons:
        v = [r["bd_rate_pct"] for r in bd_rows if (r["curve"], r["anchor"]) == (test, anchor)]
        f = [x for x in v if math.isfinite(x)]
        means[(test, anchor)] = (float(np.mean(f)) if f else math.nan, len(f), len(v))
        bd_rows.append(
            {
                "image": "MEAN",
                "curve": test,
                "anchor": anchor,
                "bd_rate_pct": means[(test, anchor)][0],
                "n_images": f"{len(f)}/{len(v)}",
            }
        )
    # complexity side by side
    _, red_net, red_meta = families["reduced"][0]
    _, peer_net, peer_meta = families["peer"][0]
    rc, pc = complexity(red_net), peer_complexity(peer_net)

    def steps_of(meta: dict[str, Any]) -> str:
        return str(meta.get("steps") or meta.get("checkpoint", {}).get("step", "?"))

    def fmt(v: tuple[float, int, int]) -> str:
        return "n/a" if math.isnan(v[0]) else f"{v[0]:+.1f}% ({v[1]}/{v[2]} images)"

    table = format_table(
        [
            "model",
            "BD-rate vs JPEG 2000",
            "BD-rate vs peer",
            "encoder MAC/px",
            "decoder MAC/px",
            "encoder params",
            "decoder params",
            "training steps",
        ],
        [
            (
                f"reduced ({red_net.config.hidden}/{red_net.config.latent}, likelihood)",
                fmt(means[("reduced-likelihood", "jpeg2000")]),
                fmt(means[("reduced-likelihood", "peer-likelihood")]),
                f"{rc['encoder_mac_per_pixel'] / 1e3:.1f}k",
                f"{rc['decoder_mac_per_pixel'] / 1e3:.1f}k",
                f"{rc['encoder_params'] / 1e6:.2f}M",
                f"{rc['decoder_params'] / 1e6:.2f}M",
                ", ".join(steps_of(m) for _, _, m in families["reduced"]),
            ),
            (
                "reduced (real bitstream)",
                fmt(means[("reduced-bitstream", "jpeg2000")]),
                fmt(means[("reduced-bitstream", "peer-likelihood")]),
                "same",
                "same",
                "same",
                "same",
                "same",
            ),
            (
                f"peer hyperprior ({peer_net.config.hidden}/{peer_net.config.latent}, likelihood)",
                fmt(means[("peer-likelihood", "jpeg2000")]),
                "0",
                f"{pc['encoder_mac_per_pixel'] / 1e3:.1f}k",
                f"{pc['decoder_mac_per_pixel'] / 1e3:.1f}k",
                f"{pc['encoder_params'] / 1e6:.2f}M",
                f"{pc['decoder_params'] / 1e6:.2f}M",
                ", ".join(steps_of(m) for _, _, m in families["peer"]),
            ),
            (
                "ratio peer / reduced",
                "",
                "",
                f"{pc['encoder_mac_per_pixel'] / rc['encoder_mac_per_pixel']:.1f}x",
                f"{pc['decoder_mac_per_pixel'] / rc['decoder_mac_per_pixel']:.1f}x",
                f"{pc['encoder_params'] / rc['encoder_params']:.1f}x",
                f"{pc['decoder_params'] / rc['decoder_params']:.1f}x",
                "",
            ),
        ],
    )
    base = RESULTS / a.tag
    write_csv(base.parent / f"{a.tag}_points.csv", rows + real)
    write_csv(base.parent / f"{a.tag}_bd.csv", bd_rows)
    plot_rd(
        curves_rows,
        base.with_suffix(".png"),
        title="reduced vs full hyperprior (likelihood rates) and JPEG 2000 (real files)",
    )
    held = sorted(set(red_meta.get("val_scenes", [])))
    text = "\n".join(
        [
            f"# Reduced model against the full scale hyperprior ({a.tag})\n",
            f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by "
            f"`python bench/rd_eval.py peer {' '.join(sys.argv[2:])}`.\n",
            "Images: the single-band 11–13-bit optical dev images "
            f"({len(paths)}; held out from training: {', '.join(held) or '?'}). "
            "Model rates are **likelihoods** (−log2 p of the rounded latents, ideal entropy "
            "coder; the reduced model's includes 8 bits per channel for its Laplacian scales), "
            "swept over quantisation steps "
            f"2^{a.step_lo}..2^{a.step_hi} and reduced to the RD envelope of all models of a "
            f"family within {a.rate_lo}–{a.rate_hi} bpp. `reduced (real bitstream)` is the "
            "reduced model through the real coder (file sizes) at 0.5/1/2/3 bpp. JPEG 2000: "
            f"real files at {a.anchor_bpp} bpp. BD-rate: PCHIP over the common PSNR range, mean over images.\n",
            "MACs: convolutions, transposed convolutions and GDN channel mixing per input pixel. "
            "The peer's encoder runs g_a, h_a and h_s (it needs the scales to code y); its "
            "decoder h_s and g_s. The reduced model has no hyper networks.\n",
            *([f"**Budget and caveats.** {a.note}\n"] if a.note else []),
            table,
            "",
            "## Per image\n",
            format_table(
                ["image", "curve", "anchor", "BD-rate %"],
                [(r["image"], r["curve"], r["anchor"], r["bd_rate_pct"]) for r in bd_rows],
            ),
            "",
            f"Plot: `{a.tag}.png`; points: `{a.tag}_points.csv`.",
        ]
    )
    (base.parent / f"{a.tag}.md").write_text(text + "\n")
    print(text)
    return 0


REPLOT_TITLES = {
    "rd_pan": "11-15-bit panchromatic and single-band dev images: satcodec against JPEG 2000 "
    "and JPEG XL (real file sizes)",
    "rd_other": "the other dev images (RGB, multispectral, single bands, SAR): satcodec against "
    "JPEG 2000 and JPEG XL (real file sizes)",
}


def cmd_replot(a: argparse.Namespace) -> int:
    """Redraw the committed RD figures from their CSVs (no coding, seconds)."""
    from satcodec.evaluation import plot_rd, read_csv

    for tag in a.tags:
        rows = read_csv(RESULTS / f"{tag}.csv")
        bd_path = RESULTS / f"{tag}_bd.csv"
        bd = read_csv(bd_path) if bd_path.exists() else None
        plot_rd(rows, RESULTS / f"{tag}.png", bd=bd, title=REPLOT_TITLES.get(tag))
        print(RESULTS / f"{tag}.png")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    lad = sub.add_parser("ladder", help="RD of the shipped ladder against JPEG 2000 / JPEG XL")
    lad.add_argument("--data", default=str(DEFAULT_DATA))
    lad.add_argument("--model", nargs="*", help="weights paths instead of the shipped ladder")
    lad.add_argument("--bpp", default="0.5,1,2,3")
    lad.add_argument("--codecs", default="satcodec,satcodec-klt,jpeg2000,jpegxl")
    lad.add_argument("--anchor-extra", default="0.25", help="extra anchor-only rates")
    lad.add_argument("--tag", default="rd")
    lad.add_argument("--pan-only", action="store_true")
    lad.add_argument(
        "--held-out-data",
        default=str(HELD_OUT_DATA) if HELD_OUT_DATA.is_dir() else "",
        help="a folder of images no model saw, added to the per-family section as held out "
        "(default: bench/data/heldout; '' for none)",
    )
    lad.add_argument("--reuse", action="store_true", help="re-report <tag>_<group>.csv, no coding")
    lad.add_argument(
        "--all-models", action="store_true", help="every covering model on 'other' too"
    )
    lad.add_argument("-q", "--quiet", action="store_true")
    lad.set_defaults(func=cmd_ladder)

    tr = sub.add_parser("train", help="train the peer (or a reduced model) with the shared trainer")
    tr.add_argument("--family", choices=["peer", "reduced"], default="peer")
    tr.add_argument("--data", default=str(DEFAULT_DATA))
    tr.add_argument("--lmbda", type=float, required=True)
    tr.add_argument("--steps", type=int, required=True)
    tr.add_argument("--out", required=True)
    tr.add_argument("--hidden", type=int)
    tr.add_argument("--latent", type=int)
    tr.add_argument("--val-every", type=int, default=1000)
    tr.add_argument("--lr", type=float, help="default: 1e-4 for the peer, 1e-3 for reduced")
    tr.add_argument("--warmup", type=int, default=0, help="linear warm-up steps (peer)")
    tr.add_argument("--resume", action="store_true")
    tr.set_defaults(func=cmd_train)

    pe = sub.add_parser("peer", help="reduced vs full hyperprior: BD-rate gap, MACs, parameters")
    pe.add_argument("--data", default=str(DEFAULT_DATA))
    pe.add_argument("--peer", nargs="+", required=True, help="peer weights or checkpoints")
    pe.add_argument("--reduced", nargs="+", required=True, help="reduced model weights")
    pe.add_argument("--step-lo", type=float, default=-2.0, help="log2 of the finest step")
    pe.add_argument("--step-hi", type=float, default=3.0, help="log2 of the coarsest step")
    pe.add_argument("--rate-lo", type=float, default=0.25)
    pe.add_argument("--rate-hi", type=float, default=4.0)
    pe.add_argument("--no-real", action="store_true", help="skip the reduced real bitstreams")
    pe.add_argument("--anchor-bpp", default="0.125,0.25,0.5,1,2,3", help="JPEG 2000 rates")
    pe.add_argument("--tag", default="rd_peer")
    pe.add_argument("--note", help="a paragraph on the training budget, printed above the table")
    pe.add_argument("-q", "--quiet", action="store_true")
    pe.set_defaults(func=cmd_peer)
    rp = sub.add_parser("replot", help="redraw committed RD figures from their CSVs")
    rp.add_argument("tags", nargs="*", default=["rd_pan", "rd_other"])
    rp.set_defaults(func=cmd_replot)
    a = p.parse_args(argv)
    return a.func(a)


if __name__ == "__main__":
    sys.exit(main())
