"""The ground denoiser: a compact CNN conditioned on the per-pixel noise level.

FFDNet-style (Zhang et al. 2018): the image is folded 2x2 into 4 channels (pixel unshuffle),
concatenated with the folded per-pixel noise σ map (from the sensor model), processed by
``layers`` 3x3 convolutions with ReLU at half resolution, and unfolded; the network predicts
the noise, which is subtracted (residual learning). Inputs are normalised by the sensor peak,
so one network serves every bit depth. Large images run tile by tile with an overlap wider
than the receptive field and reflect padding at the image border, so tiled output equals
whole-image output up to float rounding (no seams).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from satcodec.codec.layers import NoiseConditionedDenoiser
from satcodec.errors import WeightsError
from satcodec.fileutil import atomic_path
from satcodec.ground_segment.noise import NoiseParams

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "denoiser.safetensors"
FORMAT = "satcodec-denoiser-v1"


class GroundDenoiser(NoiseConditionedDenoiser):
    """Noise-conditioned residual CNN at half resolution (see module docstring)."""


def macs_per_pixel(model: GroundDenoiser) -> float:
    """Multiply-accumulates per pixel, by the project's one counter (image and sigma map in)."""
    from satcodec.codec.models import count_macs

    side = 64
    return count_macs(model, (1, 1, side, side), (1, 1, side, side)) / side**2


# --- weights ----------------------------------------------------------------------------------
def save_denoiser(
    path: str | Path, model: GroundDenoiser, meta: dict[str, Any] | None = None
) -> None:
    """Write the weights as float16 safetensors (atomic), with the config and ``meta``."""
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    md = {"format": FORMAT, "config": json.dumps(model.config), "meta": json.dumps(meta or {})}
    with atomic_path(path, ".safetensors") as tmp:
        save_file(state, str(tmp), metadata=md)


_CACHE: dict[tuple[str, int], tuple[GroundDenoiser, dict[str, Any]]] = {}


def load_denoiser(path: str | Path | None = None) -> tuple[GroundDenoiser, dict[str, Any]]:
    """Load denoiser weights (default: the shipped ones) -> (model in eval mode, meta)."""
    p = Path(path) if path is not None else DEFAULT_WEIGHTS
    if not p.is_file():
        raise WeightsError(f"denoiser weights {p} do not exist")
    key = (str(p.resolve()), p.stat().st_mtime_ns)
    if key in _CACHE:
        return _CACHE[key]
    try:
        with safe_open(str(p), "pt") as fh:
            md = fh.metadata() or {}
            state = {k: fh.get_tensor(k).float() for k in fh.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise WeightsError(f"{p} is not a valid safetensors file: {exc}") from exc
    if md.get("format") != FORMAT:
        raise WeightsError(f"{p} is not a satcodec denoiser (format={md.get('format')!r})")
    try:
        cfg = json.loads(md["config"])
        model = GroundDenoiser(int(cfg["channels"]), int(cfg["layers"]))
        model.load_state_dict(state)
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise WeightsError(f"{p}: weights do not match the denoiser architecture: {exc}") from exc
    model.eval()
    _CACHE[key] = (model, json.loads(md.get("meta", "{}")))
    return _CACHE[key]


# --- inference --------------------------------------------------------------------------------
def _run(model: GroundDenoiser, x: np.ndarray, s: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)[None, None], torch.from_numpy(s)[None, None])[0, 0].numpy()


def denoise_array(
    image: np.ndarray,
    params: NoiseParams,
    bit_depth: int,
    *,
    model: GroundDenoiser | None = None,
    nodata: float | None = None,
    tile: int = 512,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Denoise a (H, W) or (bands, H, W) image in DN; returns float32 of the same shape.

    Tiles of ``tile`` px run with an overlap of the network's receptive radius; the image is
    reflect-padded, so the result does not depend on the tile size. Nodata pixels are filled
    with the band's valid mean before denoising (so they do not bleed) and left as they were.
    """
    if model is None:
        model = load_denoiser()[0]
    a = np.asarray(image)
    squeeze = a.ndim == 2
    if squeeze:
        a = a[None]
    peak = float(2**bit_depth - 1)
    halo = model.halo + (model.halo % 2)
    out = np.empty(a.shape, np.float32)
    tile = max(16, tile - tile % 2)
    H, W = a.shape[1:]
    n_y, n_x = -(-H // tile), -(-W // tile)
    total, done = a.shape[0] * n_y * n_x, 0
    for b in range(a.shape[0]):
        band = a[b].astype(np.float32)
        invalid = band == nodata if nodata is not None else None
        if invalid is not None and invalid.any():
            fill = float(band[~invalid].mean()) if (~invalid).any() else 0.0
            band = np.where(invalid, np.float32(fill), band)
        sigma = params.std(band).astype(np.float32) / np.float32(peak)
        xn = band / np.float32(peak)
        # pad to even size + halo, reflecting at the border
        ph, pw = H % 2, W % 2
        mode = "reflect" if min(H, W) > halo + 1 else "edge"
        xp = np.pad(xn, ((halo, halo + ph), (halo, halo + pw)), mode=mode)
        sp = np.pad(sigma, ((halo, halo + ph), (halo, halo + pw)), mode=mode)
        for ty in range(n_y):
            for tx in range(n_x):
                y0, x0 = ty * tile, tx * tile
                th, tw = min(tile, H - y0), min(tile, W - x0)
                eh, ew = th + th % 2, tw + tw % 2
                win = (slice(y0, y0 + eh + 2 * halo), slice(x0, x0 + ew + 2 * halo))
                den = _run(model, np.ascontiguousarray(xp[win]), np.ascontiguousarray(sp[win]))
                out[b, y0 : y0 + th, x0 : x0 + tw] = den[halo : halo + th, halo : halo + tw] * peak
                done += 1
                if progress:
                    progress(done, total)
        if invalid is not None:
            out[b][invalid] = nodata
    return out[0] if squeeze else out


def to_sensor_dtype(x: np.ndarray, dtype: str, bit_depth: int) -> np.ndarray:
    hi = 2**bit_depth - 1
    return np.clip(np.rint(x), 0, hi).astype(dtype)


def denoise_file(
    src: str | Path,
    dst: str | Path,
    *,
    noise: NoiseParams | None = None,
    sensor: str | None = None,
    tile: int = 512,
    weights: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[NoiseParams]:
    """Denoise a GeoTIFF into ``dst`` (atomic; georeferencing, RPCs, tags and nodata kept).

    Noise: ``noise`` (a, b), else the sensor-table entry ``sensor``, else estimated from each
    band of the image. Returns the parameters used, one per band.
    """
    from satcodec.ground_segment.noise import estimate_noise, sensor_noise
    from satcodec.raster import open_raster, write_raster

    model, _ = load_denoiser(weights)
    with open_raster(src) as r:
        data, meta = r.read(), r.meta
    out = np.empty_like(data)
    used = []
    for b in range(meta.count):
        if noise is not None:
            p = noise
        elif sensor is not None:
            p = sensor_noise(sensor)
        else:
            p = estimate_noise(data[b], nodata=meta.nodata)
        used.append(p)

        def band_progress(done: int, total: int, b: int = b) -> None:
            if progress:
                progress(b * total + done, meta.count * total)

        den = denoise_array(
            data[b],
            p,
            meta.bit_depth,
            model=model,
            nodata=meta.nodata,
            tile=tile,
            progress=band_progress,
        )
        out[b] = to_sensor_dtype(den, meta.dtype, meta.bit_depth)
        if meta.nodata is not None:
            out[b][data[b] == meta.nodata] = data[b][data[b] == meta.nodata]
    write_raster(dst, out, meta)
    return used
