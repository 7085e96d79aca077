"""The report: curves, BD table, CSV, Markdown tables, the rate–distortion plot."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from satcodec.evaluation.bd import bd_overlap, bd_psnr, bd_rate
from satcodec.evaluation.msssim import msssim_db

LADDER = "satcodec"  # curve name of the shipped ladder (the model the API picks per rate)


def curve_name(row: dict[str, Any]) -> str:
    return row["codec"] if row["codec"] != "satcodec" else f"satcodec:{row['model']}"


def curves(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """``{image: {curve: rows sorted by rate}}``; the ``satcodec`` curve is the ladder's rows."""
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for r in rows:
        per = out.setdefault(r["image"], {})
        per.setdefault(curve_name(r), []).append(r)
        if r["codec"] == "satcodec" and _truthy(r.get("ladder")):
            per.setdefault(LADDER, []).append(r)
    for per in out.values():
        # a ladder made of a single model is the same curve as that model: keep one name
        models = [k for k in per if k.startswith("satcodec:")]
        if LADDER in per and len(models) == 1:
            del per[LADDER]
        for k in per:
            per[k].sort(key=lambda r: float(r["bpp"]))
    return out


def _truthy(v: Any) -> bool:
    return v is True or str(v).lower() in ("true", "1")


def bd_table(
    rows: Sequence[dict[str, Any]], anchor: str = "jpeg2000", method: str = "pchip"
) -> list[dict[str, Any]]:
    """BD-rate (%) and BD-PSNR (dB) of every curve against ``anchor``, per image and mean.

    The MEAN and MEDIAN rows summarise the per-image values over the images where they are
    finite, and say how many those are (``n_images``); the median resists a single outlier
    (e.g. an image where a model saturates far below the anchor).
    """
    table: list[dict[str, Any]] = []
    per_curve: dict[str, list[dict[str, Any]]] = {}
    for image, per in curves(rows).items():
        if anchor not in per:
            continue
        ar = [float(r["bpp"]) for r in per[anchor]]
        ap = [float(r["psnr"]) for r in per[anchor]]
        for name, pts in per.items():
            if name == anchor:
                continue
            tr = [float(r["bpp"]) for r in pts]
            tp = [float(r["psnr"]) for r in pts]
            row = {
                "image": image,
                "curve": name,
                "anchor": anchor,
                "points": len(pts),
                "bd_rate_pct": bd_rate(ar, ap, tr, tp, method),
                "bd_psnr_db": bd_psnr(ar, ap, tr, tp, method),
                **bd_overlap(ar, ap, tr, tp),
            }
            table.append(row)
            per_curve.setdefault(name, []).append(row)
    for name, rs in per_curve.items():
        rate = [r["bd_rate_pct"] for r in rs if math.isfinite(r["bd_rate_pct"])]
        dpsnr = [r["bd_psnr_db"] for r in rs if math.isfinite(r["bd_psnr_db"])]
        table.append(
            {
                "image": "MEAN",
                "curve": name,
                "anchor": anchor,
                "points": sum(r["points"] for r in rs),
                "bd_rate_pct": float(np.mean(rate)) if rate else math.nan,
                "bd_psnr_db": float(np.mean(dpsnr)) if dpsnr else math.nan,
                "psnr_overlap_db": math.nan,
                "rate_overlap_oct": math.nan,
                "n_images": f"{len(rate)}/{len(rs)}",
            }
        )
        table.append(
            {
                "image": "MEDIAN",
                "curve": name,
                "anchor": anchor,
                "points": sum(r["points"] for r in rs),
                "bd_rate_pct": float(np.median(rate)) if rate else math.nan,
                "bd_psnr_db": float(np.median(dpsnr)) if dpsnr else math.nan,
                "psnr_overlap_db": math.nan,
                "rate_overlap_oct": math.nan,
                "n_images": f"{len(rate)}/{len(rs)}",
            }
        )
    return table


def write_csv(path: str | os.PathLike, rows: Sequence[dict[str, Any]]) -> None:
    """Write dict rows as CSV (union of keys, in first-seen order), atomically."""
    from io import StringIO

    from satcodec.fileutil import atomic_write_bytes

    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _fmt_csv(r.get(k, "")) for k in keys})
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue().encode())


def _fmt_csv(v: Any) -> Any:
    return f"{v:.6g}" if isinstance(v, float) else v


def read_csv(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows written by :func:`write_csv`, numbers parsed back."""
    out = []
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            out.append({k: _parse(v) for k, v in r.items()})
    return out


def _parse(v: str) -> Any:
    for t in (int, float):
        try:
            return t(v)
        except ValueError:
            pass
    return v


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (also readable as plain text)."""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "n/a" if math.isnan(v) else f"{v:.3f}" if abs(v) < 10 else f"{v:.2f}"
        return str(v)

    body = [[cell(v) for v in r] for r in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(headers)
    ]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in body)])


def points_table(rows: Sequence[dict[str, Any]]) -> str:
    """Every measured point: image, curve, target and real rate, PSNR, MS-SSIM."""
    body = [
        (
            r["image"],
            curve_name(r) + (" *" if _truthy(r.get("ladder")) else ""),
            float(r["target_bpp"]),
            float(r["bpp"]),
            float(r["psnr"]),
            float(r["msssim"]),
            msssim_db(float(r["msssim"])),
        )
        for r in rows
    ]
    headers = ["image", "codec (* = ladder pick)", "target bpp", "bpp", "PSNR dB", "MS-SSIM"]
    return format_table([*headers, "MS-SSIM dB"], body)


def bd_summary(table: Sequence[dict[str, Any]]) -> str:
    body = [
        (
            r["image"],
            r["curve"],
            r["anchor"],
            float(r["bd_rate_pct"]),
            float(r["bd_psnr_db"]),
            r.get("n_images", f"{float(r['psnr_overlap_db']):.1f} dB"),
        )
        for r in table
    ]
    return format_table(
        ["image", "curve", "anchor", "BD-rate %", "BD-PSNR dB", "overlap (PSNR) / images"], body
    )


_STYLE = {
    "satcodec": dict(color="C3", marker="o", lw=2.2),
    "jpeg2000": dict(color="C0", marker="s", lw=1.6),
    "jpegxl": dict(color="C2", marker="^", lw=1.6),
    "reduced-likelihood": dict(color="C3", marker="o", lw=1.8),
    "reduced-bitstream": dict(color="C3", marker="x", lw=1.2, ls="--"),
    "peer-likelihood": dict(color="C4", marker="D", lw=1.8),
}


def _style(name: str) -> dict[str, Any]:
    if name in _STYLE:
        return _STYLE[name]
    return dict(marker=".", lw=1.0, ls="--", alpha=0.8)


def mean_curves(
    rows: Sequence[dict[str, Any]], metric: str = "psnr"
) -> dict[str, list[tuple[float, float]]]:
    """Per curve and target rate, (mean bpp, mean metric) over the images that all have it."""
    images = sorted({r["image"] for r in rows})
    acc: dict[str, dict[float, list[tuple[float, float]]]] = {}
    for per in curves(rows).values():
        for name, pts in per.items():
            for r in pts:
                acc.setdefault(name, {}).setdefault(float(r["target_bpp"]), []).append(
                    (float(r["bpp"]), float(r[metric]))
                )
    out = {}
    for name, by_t in acc.items():
        pts = [
            (float(np.mean([p[0] for p in v])), float(np.mean([p[1] for p in v])))
            for t, v in sorted(by_t.items())
            if len(v) == len(images)
        ]
        if pts:
            out[name] = pts
    return out


def image_group(row: dict[str, Any]) -> str:
    """The panel an image goes to in :func:`plot_rd`: images of one kind of sensor and product
    side by side, from the band count and the sensor named in the file name."""
    name, bands = str(row["image"]).lower(), int(row["bands"])
    if "sentinel1" in name or "-sar" in name or "_sar" in name:
        return "SAR (Sentinel-1 VV)"
    if bands >= 4:
        return "multispectral (6-10 bands, VNIR + SWIR)"
    if bands == 3:
        return "RGB composites (3 bands)"
    for key, label in (
        ("pleiades", "Pleiades panchromatic"),
        ("worldview", "WorldView panchromatic"),
        ("sentinel2", "Sentinel-2 single band"),
        ("landsat", "Landsat single band"),
    ):
        if key in name:
            return label
    return "single band"


_CODEC_STYLE = {  # line style and marker by codec; colour by image
    LADDER: dict(ls="-", marker="o", lw=2.0),
    "jpeg2000": dict(ls="--", marker="s", lw=1.3),
    "jpegxl": dict(ls=":", marker="^", lw=1.5),
    "satcodec-klt": dict(ls="-", marker="P", lw=1.6),
    "reduced-likelihood": dict(ls="-", marker="o", lw=2.0),
    "reduced-bitstream": dict(ls="-.", marker="x", lw=1.4),
    "peer-likelihood": dict(ls=(0, (5, 1, 1, 1)), marker="D", lw=1.4),
}
_CODEC_LABEL = {
    LADDER: "satcodec (shipped ladder)",
    "jpeg2000": "JPEG 2000 (OpenJPEG)",
    "jpegxl": "JPEG XL",
    "satcodec-klt": "satcodec --spectral klt",
}


def plot_rd(
    rows: Sequence[dict[str, Any]],
    path: str | os.PathLike,
    metric: str = "psnr",
    title: str | None = None,
    bd: Sequence[dict[str, Any]] | None = None,
    group: Any = image_group,
) -> None:
    """RD plot (PNG): one panel per image group (``group(row) -> label``, default
    :func:`image_group`); in a panel, colour is the image and line style the codec, with the
    legends beside the panel, never over the curves. Where the shipped ladder is measured the
    single models behind it are left out (they are in the CSV). Image labels carry the
    ladder's BD-rate against JPEG 2000 when ``bd`` has it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    from matplotlib.lines import Line2D

    per_image = curves(rows)
    info = {r["image"]: r for r in rows}
    groups: dict[str, list[str]] = {}
    for nm in sorted(per_image):
        groups.setdefault(group(info[nm]), []).append(nm)
    bd_of = {(r["image"], r["curve"]): r for r in (bd or [])}
    ylabel = "PSNR (dB, peak 2^bits - 1)" if metric == "psnr" else "MS-SSIM (1 = identical)"
    n = len(groups)
    cols = 1 if n == 1 else 2
    nrows = math.ceil(n / cols)
    fig, axes = plt.subplots(
        nrows, cols, figsize=(9.5 * cols, 4.2 * nrows), squeeze=False, layout="constrained"
    )
    for ax, (label, names) in zip(axes.flat, sorted(groups.items()), strict=False):
        codecs_seen: list[str] = []
        image_handles = []
        for k, nm in enumerate(names):
            per = per_image[nm]
            shown = [c for c in per if not (LADDER in per and c.startswith("satcodec:"))]
            colour = f"C{k % 10}"
            for cname in sorted(shown, key=lambda c: (c != LADDER, c)):
                pts = per[cname]
                xs = [float(r["bpp"]) for r in pts]
                ys = [float(r[metric]) for r in pts]
                style = _CODEC_STYLE.get(cname, dict(ls="-", marker=".", lw=1.0))
                ax.plot(xs, ys, color=colour, ms=4, **style)
                if cname not in codecs_seen:
                    codecs_seen.append(cname)
            r = info[nm]
            text = f"{nm.removesuffix('.tif')[:48]}\n  {r['bands']} band(s), {r['bit_depth']}-bit"
            ladder = (
                LADDER
                if LADDER in per
                else next((c for c in per if c.startswith("satcodec:")), None)
            )
            key = (nm, ladder)
            if key in bd_of and math.isfinite(float(bd_of[key]["bd_rate_pct"])):
                text += f", BD-rate {float(bd_of[key]['bd_rate_pct']):+.1f} % vs JPEG 2000"
            image_handles.append(Line2D([], [], color=colour, lw=3, label=text))
        codec_handles = [
            Line2D(
                [],
                [],
                color="0.25",
                ms=5,
                label=_CODEC_LABEL.get(c, c),
                **_CODEC_STYLE.get(c, dict(ls="-", marker=".", lw=1.0)),
            )
            for c in sorted(codecs_seen, key=lambda c: (c != LADDER, c))
        ]
        first = ax.legend(
            handles=codec_handles,
            title="codec (line style)",
            fontsize=7,
            title_fontsize=7.5,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            borderaxespad=0.0,
        )
        ax.add_artist(first)
        ax.legend(
            handles=image_handles,
            title="image (colour)",
            fontsize=6.5,
            title_fontsize=7.5,
            loc="lower left",
            bbox_to_anchor=(1.01, 0.0),
            borderaxespad=0.0,
        )
        ax.set_title(f"{label} ({len(names)} image{'s' if len(names) > 1 else ''})", fontsize=10)
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.set_xlabel("rate (bits per pixel per band, real file size; log scale)", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=11)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(
    rows: Sequence[dict[str, Any]],
    anchor: str = "jpeg2000",
    method: str = "pchip",
) -> tuple[str, list[dict[str, Any]]]:
    """The text report (points table + BD table) and the BD rows."""
    table = bd_table(rows, anchor=anchor, method=method)
    text = (
        "## Rate–distortion points (real file sizes)\n\n"
        + points_table(rows)
        + f"\n\n## BD-rate and BD-PSNR against {anchor} ({method}, common range only)\n\n"
        + bd_summary(table)
    )
    return text, table
