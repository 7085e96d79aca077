"""Rate–distortion evaluation: real bitstreams, PSNR and MS-SSIM on the sensor range, BD metrics.

What it gives:

* :func:`bd_rate` / :func:`bd_psnr` -- Bjøntegaard deltas (VCEG-M33) between two RD curves.
* :func:`ms_ssim` -- multi-scale SSIM (Wang et al. 2003) for 8–16-bit single-band images with
  the sensor peak ``2**bits - 1`` as the dynamic range, optionally masked.
* :func:`evaluate` -- code images with satcodec (every model whose rate range covers a target),
  JPEG 2000 (OpenJPEG) and JPEG XL at the same targets and measure real file sizes.
* :func:`bd_table`, :func:`write_csv`, :func:`plot_rd`, :func:`format_table` -- the report.

Conventions (documented here once, used everywhere):

* Rate is the **real file size**: ``8 * len(bitstream) / (bands * H * W)`` bits per pixel and
  band. No likelihoods. Multi-band anchors code each band alone; their sizes are summed.
* Distortion is measured per band and then averaged over bands (PSNR in dB, MS-SSIM linear).
  PSNR uses :func:`satcodec.metrics.psnr` with peak ``2**bit_depth - 1`` where ``bit_depth``
  is the raster's (``open_raster(path).meta.bit_depth``: NBITS tag when plausible, else the
  bits the data use rounded up to an even width).
* Nodata is excluded from distortion: pixels equal to the raster's nodata value in any band,
  or, without a nodata value, pixels that are 0 in every band when they are more than 1% of
  the image (the collars of rotated scenes). The rate still counts every pixel.
* BD metrics: natural log of the rate; piecewise cubic Hermite interpolation (PCHIP,
  Fritsch–Carlson, the default, as in JVET-style Bjøntegaard tools) or the original cubic
  polynomial fit of VCEG-M33 (``method="cubic"``). Integrals are taken over the
  **intersection** of the two curves' ranges only (no extrapolation); when the ranges do not
  overlap the result is NaN. BD-rate is ``exp(mean Δ ln R) − 1`` in percent: negative means
  the test codec needs fewer bits than the anchor for the same PSNR.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from satcodec.errors import ConfigError, RateControlError
from satcodec.metrics import psnr

MSSSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang, Simoncelli, Bovik 2003
ANCHORS = ("jpeg2000", "jpegxl")
DEFAULT_CODECS = ("satcodec", "jpeg2000", "jpegxl")
DEFAULT_BPPS = (0.5, 1.0, 2.0, 3.0)
RATE_TOLERANCE = 0.03  # a point counts only if its real rate is within ±3% of the target
LADDER = "satcodec"  # curve name of the shipped ladder (the model the API picks per rate)

# --------------------------------------------------------------------------------------------
# Bjøntegaard deltas
# --------------------------------------------------------------------------------------------


def _prepare(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Finite points sorted by x, with duplicated x merged (mean of their y)."""
    xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if xa.shape != ya.shape or xa.ndim != 1:
        raise ValueError("x and y must be 1-D sequences of the same length")
    ok = np.isfinite(xa) & np.isfinite(ya)
    xa, ya = xa[ok], ya[ok]
    ux, inv = np.unique(xa, return_inverse=True)
    uy = np.bincount(inv, weights=ya) / np.bincount(inv)
    return ux, uy


def _pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Derivatives of the monotone PCHIP interpolant (Fritsch–Carlson, SciPy's edge rule)."""
    h = np.diff(x)
    delta = np.diff(y) / h
    n = len(x)
    d = np.zeros(n)
    if n == 2:
        return np.full(2, delta[0])
    for k in range(1, n - 1):
        if delta[k - 1] * delta[k] > 0:
            w1, w2 = 2 * h[k] + h[k - 1], h[k] + 2 * h[k - 1]
            d[k] = (w1 + w2) / (w1 / delta[k - 1] + w2 / delta[k])

    def edge(h0: float, h1: float, m0: float, m1: float) -> float:
        e = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
        if np.sign(e) != np.sign(m0):
            return 0.0
        if np.sign(m0) != np.sign(m1) and abs(e) > 3 * abs(m0):
            return 3 * m0
        return e

    d[0] = edge(h[0], h[1], delta[0], delta[1])
    d[-1] = edge(h[-1], h[-2], delta[-1], delta[-2])
    return d


def _pchip_integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    """∫_lo^hi of the PCHIP interpolant of (x, y), lo and hi inside [x0, xn]."""
    d = _pchip_slopes(x, y)
    total = 0.0
    for k in range(len(x) - 1):
        a, b = max(lo, x[k]), min(hi, x[k + 1])
        if b <= a:
            continue
        h = x[k + 1] - x[k]
        delta = (y[k + 1] - y[k]) / h
        c0, c1 = y[k], d[k]
        c2 = (3 * delta - 2 * d[k] - d[k + 1]) / h
        c3 = (d[k] + d[k + 1] - 2 * delta) / (h * h)

        def prim(t: float, c0=c0, c1=c1, c2=c2, c3=c3) -> float:
            return c0 * t + c1 * t**2 / 2 + c2 * t**3 / 3 + c3 * t**4 / 4

        total += prim(b - x[k]) - prim(a - x[k])
    return total


def _cubic_integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    """∫_lo^hi of the least-squares polynomial of degree min(3, n−1) through (x, y)."""
    p = np.polyint(np.polyfit(x, y, min(3, len(x) - 1)))
    return float(np.polyval(p, hi) - np.polyval(p, lo))


def _mean_difference(
    x1: np.ndarray, y1: np.ndarray, x2: np.ndarray, y2: np.ndarray, method: str
) -> tuple[float, float]:
    """Mean of (curve2 − curve1) over the overlap of their x ranges, and the overlap width."""
    if method not in ("pchip", "cubic"):
        raise ValueError(f"unknown BD interpolation {method!r} (expected 'pchip' or 'cubic')")
    if len(x1) < 2 or len(x2) < 2:
        return math.nan, 0.0
    lo, hi = max(x1[0], x2[0]), min(x1[-1], x2[-1])
    if not hi > lo:
        return math.nan, 0.0
    integral = _pchip_integral if method == "pchip" else _cubic_integral
    diff = integral(x2, y2, lo, hi) - integral(x1, y1, lo, hi)
    return float(diff / (hi - lo)), float(hi - lo)


def bd_rate(
    rate_anchor: Sequence[float],
    psnr_anchor: Sequence[float],
    rate_test: Sequence[float],
    psnr_test: Sequence[float],
    method: str = "pchip",
) -> float:
    """Bjøntegaard delta rate of the test curve against the anchor, in percent.

    Average relative rate difference at equal quality over the PSNR interval both curves
    cover; NaN if they do not overlap or either has fewer than two distinct points.
    """
    pa, la = _prepare(psnr_anchor, np.log(np.asarray(rate_anchor, dtype=np.float64)))
    pt, lt = _prepare(psnr_test, np.log(np.asarray(rate_test, dtype=np.float64)))
    diff, _ = _mean_difference(pa, la, pt, lt, method)
    return float((math.exp(diff) - 1) * 100) if math.isfinite(diff) else math.nan


def bd_psnr(
    rate_anchor: Sequence[float],
    psnr_anchor: Sequence[float],
    rate_test: Sequence[float],
    psnr_test: Sequence[float],
    method: str = "pchip",
) -> float:
    """Bjøntegaard delta PSNR (dB) of the test curve against the anchor at equal rate."""
    la, pa = _prepare(np.log(np.asarray(rate_anchor, dtype=np.float64)), psnr_anchor)
    lt, pt = _prepare(np.log(np.asarray(rate_test, dtype=np.float64)), psnr_test)
    diff, _ = _mean_difference(la, pa, lt, pt, method)
    return diff


def bd_overlap(
    rate_anchor: Sequence[float],
    psnr_anchor: Sequence[float],
    rate_test: Sequence[float],
    psnr_test: Sequence[float],
) -> dict[str, float]:
    """Width of the common PSNR interval (dB) and of the common rate interval (octaves)."""

    def width(a: Sequence[float], b: Sequence[float]) -> float:
        a = [v for v in a if math.isfinite(v)]
        b = [v for v in b if math.isfinite(v)]
        if not a or not b:
            return 0.0
        return max(0.0, min(max(a), max(b)) - max(min(a), min(b)))

    la = [math.log2(r) for r in rate_anchor if r > 0]
    lt = [math.log2(r) for r in rate_test if r > 0]
    return {"psnr_overlap_db": width(psnr_anchor, psnr_test), "rate_overlap_oct": width(la, lt)}


# --------------------------------------------------------------------------------------------
# MS-SSIM
# --------------------------------------------------------------------------------------------


def _gauss_window(size: int = 11, sigma: float = 1.5) -> Any:
    import torch

    c = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(c**2) / (2 * sigma**2))
    return g / g.sum()


def _blur(x: Any, win: Any) -> Any:
    """Separable 'valid' Gaussian filtering of (1, 1, H, W)."""
    import torch.nn.functional as F

    k = len(win)
    x = F.conv2d(x, win.view(1, 1, k, 1))
    return F.conv2d(x, win.view(1, 1, 1, k))


def _half(x: Any, invalid: Any) -> tuple[Any, Any]:
    """2x2 average pooling (odd sizes: edge replicated); a block is invalid if any pixel is."""
    import torch.nn.functional as F

    ph, pw = x.shape[-2] % 2, x.shape[-1] % 2
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        if invalid is not None:
            invalid = F.pad(invalid, (0, pw, 0, ph), mode="replicate")
    x = F.avg_pool2d(x, 2)
    if invalid is not None:
        invalid = F.max_pool2d(invalid, 2)
    return x, invalid


def ms_ssim(
    reference: np.ndarray,
    test: np.ndarray,
    bit_depth: int,
    mask: np.ndarray | None = None,
    weights: Sequence[float] = MSSSIM_WEIGHTS,
) -> float:
    """MS-SSIM of two (H, W) images with dynamic range ``L = 2**bit_depth − 1``.

    Wang, Simoncelli & Bovik (2003): 5 scales, 11x11 Gaussian window (σ = 1.5), K1 = 0.01,
    K2 = 0.03, contrast–structure at scales 1–4 and the full SSIM at scale 5, 2x2 average
    pooling between scales, 'valid' filtering (no padding). As in ``pytorch_msssim`` (whose
    values this matches to ~1e-6 on even sizes), negative per-scale terms are clamped to 0.
    Odd sizes are edge-replicated before pooling (``pytorch_msssim`` zero-pads instead).

    ``mask`` (True = valid): a window counts only if every pixel under it is valid; pooled
    pixels are valid only if their four parents are. Computed in float64. Needs
    ``min(H, W) >= 11 * 2**4 = 176``; raises ValueError otherwise.
    """
    import torch
    import torch.nn.functional as F

    if reference.shape != test.shape or reference.ndim != 2:
        raise ValueError(
            f"expected two (H, W) images of one shape, got {reference.shape}, {test.shape}"
        )
    levels = len(weights)
    win = _gauss_window()
    need = len(win) * 2 ** (levels - 1)
    if min(reference.shape) < need:
        raise ValueError(f"MS-SSIM with {levels} scales needs images of at least {need}x{need}")
    peak = float(2**bit_depth - 1)
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    x = torch.from_numpy(np.asarray(reference, dtype=np.float64))[None, None]
    y = torch.from_numpy(np.asarray(test, dtype=np.float64))[None, None]
    invalid = None
    if mask is not None and not np.all(mask):
        invalid = torch.from_numpy(~np.asarray(mask, dtype=bool)).to(torch.float64)[None, None]
    values = []
    for level in range(levels):
        mu1, mu2 = _blur(x, win), _blur(y, win)
        s11 = _blur(x * x, win) - mu1 * mu1
        s22 = _blur(y * y, win) - mu2 * mu2
        s12 = _blur(x * y, win) - mu1 * mu2
        cs = (2 * s12 + c2) / (s11 + s22 + c2)
        term = cs if level < levels - 1 else cs * (2 * mu1 * mu2 + c1) / (mu1**2 + mu2**2 + c1)
        if invalid is not None:
            bad = F.max_pool2d(invalid, len(win), stride=1) > 0
            keep = term[~bad]
            if keep.numel() == 0:
                return math.nan
            values.append(float(keep.mean()))
        else:
            values.append(float(term.mean()))
        if level < levels - 1:
            x, invalid_next = _half(x, invalid)
            y, _ = _half(y, None)
            invalid = invalid_next
    out = 1.0
    for v, w in zip(values, weights, strict=True):
        out *= max(v, 0.0) ** w
    return float(out)


# --------------------------------------------------------------------------------------------
# Images and masks
# --------------------------------------------------------------------------------------------


def valid_mask(array: np.ndarray, nodata: float | None) -> np.ndarray | None:
    """True where a pixel counts in the distortion (see the module docstring); None = all."""
    a = array if array.ndim == 3 else array[None]
    if nodata is not None:
        invalid = np.any(a == a.dtype.type(nodata), axis=0)
    else:
        invalid = np.all(a == 0, axis=0)
        if invalid.mean() <= 0.01:
            return None
    return None if not invalid.any() else ~invalid


def band_quality(
    reference: np.ndarray, decoded: np.ndarray, bit_depth: int, mask: np.ndarray | None
) -> tuple[float, float]:
    """(PSNR dB, MS-SSIM) of one (H, W) band; MS-SSIM is NaN when the image is too small."""
    p = psnr(reference, decoded, bit_depth, mask)
    try:
        m = ms_ssim(reference, decoded, bit_depth, mask)
    except ValueError:
        m = math.nan
    return p, m


# --------------------------------------------------------------------------------------------
# Codecs
# --------------------------------------------------------------------------------------------


def model_bpp_range(meta: dict[str, Any]) -> tuple[float, float]:
    """Rates a model serves: ``meta["bpp_range"]``, else one octave either side of ``native_bpp``."""
    if "bpp_range" in meta:
        lo, hi = meta["bpp_range"]
        return float(lo), float(hi)
    if "native_bpp" in meta:
        n = float(meta["native_bpp"])
        return n / 2, n * 2
    return 0.0, math.inf


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
    from satcodec.codec.pipeline import choose_model

    return choose_model(bpp, infos)


class _AnchorCache:
    """Anchor results per band on disk (JSON), keyed by the band's pixels, codec and target."""

    def __init__(self, path: str | os.PathLike | None) -> None:
        self.path = Path(path) if path else None
        self.data: dict[str, Any] = {}
        if self.path and self.path.exists():
            self.data = json.loads(self.path.read_text())

    @staticmethod
    def key(codec: str, band: np.ndarray, mask: np.ndarray | None, bits: int, bpp: float) -> str:
        import imagecodecs

        h = hashlib.sha256(np.ascontiguousarray(band).tobytes())
        h.update(str(band.shape).encode())
        if mask is not None:
            h.update(np.packbits(mask).tobytes())
        return f"{codec}|{imagecodecs.__version__}|{h.hexdigest()[:24]}|{bits}|{bpp:.6g}"

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def put(self, key: str, value: Any) -> None:
        self.data[key] = value
        if self.path:
            from satcodec.fileutil import atomic_write_bytes

            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.exists():  # keep what another run added meanwhile
                try:
                    self.data = {**json.loads(self.path.read_text()), **self.data}
                except ValueError:
                    pass
            atomic_write_bytes(self.path, json.dumps(self.data, indent=0).encode())


def _anchor_point(
    codec: str,
    array: np.ndarray,
    bits: int,
    bpp: float,
    mask: np.ndarray | None,
    cache: _AnchorCache,
) -> dict[str, Any]:
    from satcodec.anchors import jpeg2000_at_bpp, jpegxl_at_bpp

    fn = jpeg2000_at_bpp if codec == "jpeg2000" else jpegxl_at_bpp
    nbytes, psnrs, ssims, seconds = 0, [], [], 0.0
    for b in range(array.shape[0]):
        key = cache.key(codec, array[b], mask, bits, bpp)
        hit = cache.get(key)
        if hit is None:
            t0 = time.perf_counter()
            r = fn(array[b], bits, bpp)
            dt = time.perf_counter() - t0
            p, m = band_quality(array[b], r.decoded, bits, mask)
            hit = {"bytes": len(r.data), "psnr": p, "msssim": m, "seconds": dt}
            cache.put(key, hit)
        nbytes += hit["bytes"]
        psnrs.append(hit["psnr"])
        ssims.append(hit["msssim"])
        seconds += hit["seconds"]
    return {"bytes": nbytes, "psnr": _mean(psnrs), "msssim": _mean(ssims), "seconds": seconds}


def _satcodec_point(
    info: Any,
    array: np.ndarray,
    bits: int,
    nodata: float | None,
    bpp: float,
    mask: np.ndarray | None,
) -> dict[str, Any]:
    from satcodec.api import decode, encode

    t0 = time.perf_counter()
    data = encode(array, bit_depth=bits, nodata=nodata, bpp=bpp, model=info.path)
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
        "psnr": _mean(psnrs),
        "msssim": _mean(ssims),
        "seconds": t1 - t0,
        "decode_seconds": t2 - t1,
    }


def _mean(values: Iterable[float]) -> float:
    v = [x for x in values if not math.isnan(x)]
    return float(np.mean(v)) if v else math.nan


def load_image(path: str | os.PathLike) -> tuple[np.ndarray, int, float | None]:
    """(array (bands, H, W), bit depth, nodata) of a raster, as the codec sees it."""
    from satcodec.raster import open_raster

    with open_raster(path) as r:
        return r.read(), r.meta.bit_depth, r.meta.nodata


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

    ``codecs``: any of ``satcodec``, ``jpeg2000``, ``jpegxl``. For ``satcodec``, every shipped
    model (or every one of ``model``: a name or weights path, or a list of them) whose rate
    range (:func:`model_bpp_range`) covers the target is used; a single model given
    explicitly is used at every target. The row's ``ladder`` flag marks the model the API
    would pick by default at that rate; ``ladder_only`` codes with that model alone. A point whose real rate misses the target by
    more than ±3% (the codec cannot reach it) is skipped and reported through ``log``. Rows hold the real rate (``bpp``,
    ``bytes``), PSNR (dB) and MS-SSIM averaged over bands, and the masked pixel fraction.
    """
    from tqdm.auto import tqdm

    unknown = [c for c in codecs if c not in DEFAULT_CODECS]
    if unknown:
        raise ConfigError(f"unknown codec(s) {unknown} (choose from {', '.join(DEFAULT_CODECS)})")
    if not images:
        raise ConfigError("no images to evaluate")
    bpps = [float(b) for b in bpps]
    if any(not b > 0 for b in bpps):
        raise ConfigError(f"target rates must be positive, got {bpps}")
    infos = _satcodec_models(model) if "satcodec" in codecs else []
    cache = _AnchorCache(anchor_cache)
    say = log or (lambda s: None)
    jobs: list[tuple[int, str, Any, float]] = []
    for i in range(len(images)):
        for c in codecs:
            for b in bpps:
                if c == "satcodec":
                    covering = [
                        m for m in infos if len(infos) == 1 or _covers(model_bpp_range(m.meta), b)
                    ]
                    ladder = _ladder_choice(covering, b) if covering else None
                    for m in covering:
                        if ladder_only and m.name != ladder:
                            continue
                        jobs.append((i, c, (m, m.name == ladder), b))
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
        try:
            if extra is None:
                point = _anchor_point(codec, arr, bits, b, mask, cache)
            else:
                point = _satcodec_point(extra[0], arr, bits, nodata, b, mask)
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


# --------------------------------------------------------------------------------------------
# Curves, BD table, CSV, text table, plot
# --------------------------------------------------------------------------------------------


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


def msssim_db(value: float) -> float:
    """MS-SSIM on a dB scale, −10·log10(1 − MS-SSIM): spreads the values near 1."""
    if math.isnan(value):
        return math.nan
    return math.inf if value >= 1 else -10 * math.log10(1 - value)


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


def plot_rd(
    rows: Sequence[dict[str, Any]],
    path: str | os.PathLike,
    metric: str = "psnr",
    title: str | None = None,
    bd: Sequence[dict[str, Any]] | None = None,
) -> None:
    """RD plot (PNG): one panel per image plus a panel of the mean over images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    per_image = curves(rows)
    names = sorted(per_image)
    n = len(names) + 1
    cols = min(4, n)
    nrows = math.ceil(n / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.6 * cols, 3.8 * nrows), squeeze=False)
    ylabel = "PSNR (dB, peak 2^bits−1)" if metric == "psnr" else "MS-SSIM"
    bd_of = {(r["image"], r["curve"]): r for r in (bd or [])}
    info = {r["image"]: r for r in rows}
    panels = [(nm, per_image[nm]) for nm in names]
    panels.append(("mean over images", {k: v for k, v in mean_curves(rows, metric).items()}))
    for ax, (nm, per) in zip(axes.flat, panels, strict=False):
        models = [c for c in per if c.startswith("satcodec:")]
        for cname in sorted(per, key=lambda c: (c.startswith("satcodec:"), c)):
            pts = per[cname]
            style = _style(LADDER if LADDER not in per and models == [cname] else cname)
            if pts and isinstance(pts[0], dict):
                xs = [float(r["bpp"]) for r in pts]
                ys = [float(r[metric]) for r in pts]
            else:
                xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            label = cname
            key = (nm if nm != "mean over images" else "MEAN", cname)
            if key in bd_of and math.isfinite(float(bd_of[key]["bd_rate_pct"])):
                label += f" ({float(bd_of[key]['bd_rate_pct']):+.1f}%)"
            ax.plot(xs, ys, label=label, **style)
        if nm in info:
            r = info[nm]
            sub = f"{r['bands']}x{r['height']}x{r['width']}, {r['bit_depth']}-bit"
            ax.set_title(f"{nm[:42]}\n{sub}", fontsize=8)
        else:
            ax.set_title(nm, fontsize=9, fontweight="bold")
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.set_xlabel("bits per pixel (real file size, log scale)", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6.5, loc="lower right")
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
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


# --------------------------------------------------------------------------------------------
# The whole evaluation (what `satcodec eval` runs)
# --------------------------------------------------------------------------------------------


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


__all__ = [
    "DEFAULT_BPPS",
    "DEFAULT_CODECS",
    "MSSSIM_WEIGHTS",
    "bd_overlap",
    "bd_psnr",
    "bd_rate",
    "bd_table",
    "curves",
    "evaluate",
    "format_table",
    "load_image",
    "model_bpp_range",
    "ms_ssim",
    "plot_rd",
    "read_csv",
    "report",
    "run_evaluation",
    "valid_mask",
    "write_csv",
]
