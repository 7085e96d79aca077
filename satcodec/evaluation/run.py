"""Running an evaluation: code images with satcodec, JPEG 2000 and JPEG XL at the same targets
and measure real file sizes (what ``satcodec eval`` runs).

Rate is the **real file size**: ``8 * len(bitstream) / (bands * H * W)`` bits per pixel and
band. No likelihoods. Multi-band anchors code each band alone; their sizes are summed.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from satcodec.errors import ConfigError, RateControlError
from satcodec.evaluation.anchors import ANCHORS, AnchorCache, anchor_point
from satcodec.evaluation.images import band_quality, load_image, nan_mean, valid_mask
from satcodec.evaluation.msssim import msssim_db
from satcodec.evaluation.report import plot_rd, report, write_csv

DEFAULT_CODECS = ("satcodec", *ANCHORS)
# the ladder with the bands' KLT coded instead of the bands (bitstream flag 0x0002): measured
# on images of two bands or more only
SPECTRAL_CODEC = "satcodec-klt"
KNOWN_CODECS = (*DEFAULT_CODECS, SPECTRAL_CODEC)
DEFAULT_BPPS = (0.5, 1.0, 2.0, 3.0)
RATE_TOLERANCE = 0.03  # a point counts only if its real rate is within ±3% of the target


def model_bpp_range(meta: dict[str, Any]) -> tuple[float, float]:
    """Rates a model serves: :func:`satcodec.coding.encoder.nominal_bpp_range` (the rule rate
    control's model choice uses)."""
    from satcodec.coding.encoder import nominal_bpp_range

    return nominal_bpp_range(meta)


def _satcodec_models(model: Any) -> list[Any]:
    """ModelInfos of ``model`` (a name or path, or a list of them), else every shipped model."""
    from satcodec.codec.registry import list_models, load_model

    if model is not None:
        names = [model] if isinstance(model, (str, os.PathLike)) else list(model)
        return [load_model(m)[1] for m in names]
    models = list_models()
    if not models:
        raise ConfigError("no shipped model found; pass a weights file with --model PATH")
    return models


def _ladder_choice(infos: list[Any], bpp: float) -> str:
    """The model the API picks by default for ``bpp`` (the same rule, on these models)."""
    from satcodec.coding import choose_model

    return choose_model(bpp, infos)


def _satcodec_point(
    info: Any,
    array: np.ndarray,
    bits: int,
    nodata: float | None,
    bpp: float,
    mask: np.ndarray | None,
    spectral: str | None = None,
) -> dict[str, Any]:
    from satcodec.api import decode, encode

    t0 = time.perf_counter()
    data = encode(array, bit_depth=bits, nodata=nodata, bpp=bpp, model=info.path, spectral=spectral)
    t1 = time.perf_counter()
    decoded, _ = decode(data, model=info.path)
    t2 = time.perf_counter()
    psnrs, ssims = [], []
    for b in range(array.shape[0]):
        p, m = band_quality(array[b], decoded[b], bits, mask)
        psnrs.append(p)
        ssims.append(m)
    return {
        "bytes": len(data),
        "psnr": nan_mean(psnrs),
        "msssim": nan_mean(ssims),
        "seconds": t1 - t0,
        "decode_seconds": t2 - t1,
    }


def evaluate(
    images: Sequence[str | os.PathLike],
    codecs: Sequence[str] = DEFAULT_CODECS,
    bpps: Sequence[float] = DEFAULT_BPPS,
    *,
    model: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    anchor_cache: str | os.PathLike | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    ladder_only: bool = False,
) -> list[dict[str, Any]]:
    """Code every image with every codec at every target rate; one row per (image, codec, rate).

    ``codecs``: any of ``satcodec``, ``satcodec-klt``, ``jpeg2000``, ``jpegxl``.
    ``satcodec-klt`` is the ladder's pick coding the bands' KLT (``spectral="klt"``), on
    images of two bands or more. For ``satcodec``, every shipped
    model (or every one of ``model``: a name or weights path, or a list of them) whose rate
    range (:func:`model_bpp_range`) covers the target is used; a single model given
    explicitly is used at every target. The row's ``ladder`` flag marks the model the API
    would pick by default at that rate; ``ladder_only`` codes with that model alone. A point whose real rate misses the target by
    more than ±3% (the codec cannot reach it) is skipped and reported through ``log``. Rows hold the real rate (``bpp``,
    ``bytes``), PSNR (dB) and MS-SSIM averaged over bands, and the masked pixel fraction.
    """
    from tqdm.auto import tqdm

    unknown = [c for c in codecs if c not in KNOWN_CODECS]
    if unknown:
        raise ConfigError(f"unknown codec(s) {unknown} (choose from {', '.join(KNOWN_CODECS)})")
    if not images:
        raise ConfigError("no images to evaluate")
    bpps = [float(b) for b in bpps]
    if any(not b > 0 for b in bpps):
        raise ConfigError(f"target rates must be positive, got {bpps}")
    learned = "satcodec" in codecs or SPECTRAL_CODEC in codecs
    infos = _satcodec_models(model) if learned else []
    cache = AnchorCache(anchor_cache)
    say = log or (lambda s: None)
    jobs: list[tuple[int, str, Any, float]] = []
    for i in range(len(images)):
        for c in codecs:
            for b in bpps:
                if c == "satcodec":
                    covering = [
                        m for m in infos if len(infos) == 1 or _covers(model_bpp_range(m.meta), b)
                    ]
                    # the ladder is what the API picks among every model (its card may
                    # cover a rate beyond its nominal range), coded even when outside it
                    ladder = _ladder_choice(infos, b) if infos else None
                    picked = next((m for m in infos if m.name == ladder), None)
                    if picked is not None and picked not in covering:
                        covering = [*covering, picked]
                    for m in covering:
                        if ladder_only and m.name != ladder:
                            continue
                        jobs.append((i, c, (m, m.name == ladder), b))
                elif c == SPECTRAL_CODEC:
                    covering = [
                        m for m in infos if len(infos) == 1 or _covers(model_bpp_range(m.meta), b)
                    ]
                    if infos:  # the ladder's pick, as the API makes it
                        pick = _ladder_choice(infos, b)
                        m = next(m for m in infos if m.name == pick)
                        jobs.append((i, c, (m, False), b))
                else:
                    jobs.append((i, c, None, b))
    rows: list[dict[str, Any]] = []
    loaded: dict[int, tuple[np.ndarray, int, float | None, np.ndarray | None]] = {}
    bar = tqdm(jobs, desc="eval", unit="point", disable=not progress, dynamic_ncols=True)
    for i, codec, extra, b in bar:
        if i not in loaded:
            loaded.clear()
            arr, bits, nodata = load_image(images[i])
            loaded[i] = (arr, bits, nodata, valid_mask(arr, nodata))
        arr, bits, nodata, mask = loaded[i]
        name = Path(images[i]).name
        label = codec if extra is None else f"{codec}:{extra[0].name}"
        bar.set_postfix_str(f"{name[:28]} {label} {b:g} bpp")
        if codec == SPECTRAL_CODEC and arr.shape[0] < 2:
            continue  # one band: nothing to decorrelate
        try:
            if extra is None:
                point = anchor_point(codec, arr, bits, b, mask, cache)
            else:
                spectral = "klt" if codec == SPECTRAL_CODEC else None
                point = _satcodec_point(extra[0], arr, bits, nodata, b, mask, spectral)
        except RateControlError as exc:
            say(f"skip {name} {label} @ {b:g} bpp: {exc}")
            continue
        pixels = arr.size
        real = 8.0 * point["bytes"] / pixels
        if abs(real / b - 1) > RATE_TOLERANCE:
            # e.g. a model whose finest quantisation step cannot spend that many bits
            say(f"skip {name} {label} @ {b:g} bpp: reached {real:.3f} bpp, outside ±3%")
            continue
        rows.append(
            {
                "image": name,
                "bands": arr.shape[0],
                "height": arr.shape[1],
                "width": arr.shape[2],
                "bit_depth": bits,
                "peak": 2**bits - 1,
                "valid_fraction": 1.0 if mask is None else float(mask.mean()),
                "codec": codec,
                "model": "" if extra is None else extra[0].name,
                "model_id": "" if extra is None else extra[0].model_id,
                "ladder": extra is not None and extra[1],
                "target_bpp": b,
                "bytes": point["bytes"],
                "bpp": real,
                "psnr": point["psnr"],
                "msssim": point["msssim"],
                "msssim_db": msssim_db(point["msssim"]),
                "encode_s": point["seconds"],
                "decode_s": point.get("decode_seconds", math.nan),
            }
        )
    bar.close()
    return rows


def _covers(rng: tuple[float, float], bpp: float) -> bool:
    return rng[0] * 0.999 <= bpp <= rng[1] * 1.001


def wavelet_coded_images(images: Sequence[str | os.PathLike]) -> list[str]:
    """The names of ``images`` with a band that carries an earlier 9/7-wavelet coder's grid
    (:func:`~satcodec.evaluation.recompression.wavelet_grid_signature`)."""
    from satcodec.evaluation.recompression import wavelet_grid_signature

    out = []
    for path in images:
        arr, _bits, nodata = load_image(path)
        mask = valid_mask(arr, nodata)
        if any(wavelet_grid_signature(band, mask).flagged for band in arr):
            out.append(Path(path).name)
    return out


def run_evaluation(
    images: Sequence[str | os.PathLike],
    codecs: Sequence[str] = DEFAULT_CODECS,
    bpps: Sequence[float] = DEFAULT_BPPS,
    *,
    model: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    anchor_cache: str | os.PathLike | None = None,
    anchor: str = "jpeg2000",
    bd_method: str = "pchip",
    csv_path: str | os.PathLike | None = None,
    plot_path: str | os.PathLike | None = None,
    title: str | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """:func:`evaluate`, then :func:`report`, and the optional CSV (points; BD table to
    ``<stem>_bd.csv``) and plot. Returns ``rows``, ``bd``, ``text`` (the report) and
    ``written`` (the files written). :class:`RateControlError` when no point was measured."""
    rows = evaluate(
        images, codecs, bpps, model=model, anchor_cache=anchor_cache, progress=progress, log=log
    )
    if not rows:
        raise RateControlError("no rate-distortion point could be measured")
    used = anchor if any(r["codec"] == anchor for r in rows) else "jpeg2000"
    text, bd = report(rows, anchor=used, method=bd_method)
    if "jpeg2000" in codecs:
        flagged = wavelet_coded_images(images)
        if flagged:
            text += (
                "\n\nNote: "
                + ", ".join(flagged)
                + " look decoded from an earlier 9/7-wavelet codestream on their own pixel "
                "grid (e.g. products delivered as JPEG 2000): JPEG 2000 re-quantises the "
                "same coefficients there and is favoured near that coder's rate. For a "
                "comparison as on raw sensor data, evaluate them one pixel off that grid "
                "(satcodec.evaluation.recompression.grid_neutral_crop)."
            )
    written: list[Path] = []
    if csv_path:
        write_csv(csv_path, rows)
        written.append(Path(csv_path))
        if bd:
            bd_path = Path(csv_path).with_name(Path(csv_path).stem + "_bd.csv")
            write_csv(bd_path, bd)
            written.append(bd_path)
    if plot_path:
        plot_rd(rows, plot_path, bd=bd, title=title)
        written.append(Path(plot_path))
    return {"rows": rows, "bd": bd, "text": text, "written": written}
