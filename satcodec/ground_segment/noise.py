"""Signal-dependent Gaussian sensor noise: variance ``a + b·x`` (x and σ in DN).

* :func:`load_sensor_table` / :func:`sensor_noise`: per-sensor (a, b) from ``sensors.toml``.
* :func:`simulate_noise`: add such noise to a clean image (clipped to the sensor range).
* :func:`estimate_noise`: (a, b) from one noisy image, by regressing the local noise variance
  on the local mean over the flattest blocks of each intensity bin.
* :func:`noise_std_map`: per-pixel σ, what the ground denoiser is conditioned on.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from satcodec.errors import ConfigError, NoiseModelError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

SENSOR_TABLE = Path(__file__).resolve().parent / "sensors.toml"


@dataclass(frozen=True)
class NoiseParams:
    """Noise variance ``a + b·x`` in DN² (x in DN); ``source`` says where (a, b) came from."""

    a: float
    b: float
    source: str = "given"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.a) and math.isfinite(self.b)) or self.a < 0 or self.b < 0:
            raise NoiseModelError(
                f"noise parameters must be finite and >= 0, got a={self.a}, b={self.b}"
            )
        if self.a == 0 and self.b == 0:
            raise NoiseModelError("noise parameters a and b cannot both be 0")

    def std(self, x: np.ndarray | float) -> np.ndarray:
        """σ (DN) at signal level ``x`` (DN, negative values taken as 0)."""
        return np.sqrt(self.a + self.b * np.maximum(np.asarray(x, np.float64), 0.0))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def parse(cls, text: str) -> NoiseParams:
        """``"a,b"`` (DN², DN) as given on the command line."""
        try:
            a, b = (float(v) for v in text.split(","))
        except ValueError:
            raise ConfigError(f"--noise wants 'a,b' (two numbers), got {text!r}") from None
        return cls(a, b, "given")


def load_sensor_table(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """The sensor table: ``{name: {"bit_depth", "a", "b", "description"}}``."""
    p = Path(path) if path is not None else SENSOR_TABLE
    try:
        data = tomllib.loads(p.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise NoiseModelError(f"cannot read sensor table {p}: {exc}") from exc
    for name, row in data.items():
        for key in ("bit_depth", "a", "b"):
            if not isinstance(row, dict) or not isinstance(row.get(key), int | float):
                raise NoiseModelError(f"sensor table {p}: [{name}] needs a number {key!r}")
        NoiseParams(float(row["a"]), float(row["b"]))  # validates
    return data


def sensor_noise(name: str, path: str | Path | None = None) -> NoiseParams:
    """(a, b) of one sensor of the table."""
    table = load_sensor_table(path)
    if name not in table:
        raise ConfigError(f"unknown sensor {name!r} (table has: {', '.join(table)})")
    row = table[name]
    return NoiseParams(float(row["a"]), float(row["b"]), f"sensor:{name}")


def simulate_noise(
    clean: np.ndarray,
    params: NoiseParams,
    bit_depth: int,
    seed: int | np.random.Generator | None = 0,
) -> np.ndarray:
    """``clean`` plus N(0, a + b·clean) noise, clipped to [0, 2^bit_depth − 1].

    Integer input gives integer output of the same dtype (rounded); float input stays float.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    x = np.asarray(clean, np.float64)
    noisy = x + rng.standard_normal(x.shape) * params.std(x)
    noisy = np.clip(noisy, 0.0, float(2**bit_depth - 1))
    if np.issubdtype(np.asarray(clean).dtype, np.integer):
        return np.rint(noisy).astype(np.asarray(clean).dtype)
    return noisy.astype(
        np.asarray(clean).dtype if np.asarray(clean).dtype.kind == "f" else np.float64
    )


def noise_std_map(image: np.ndarray, params: NoiseParams) -> np.ndarray:
    """Per-pixel σ (DN, float32) from the (noisy) image itself."""
    return params.std(image).astype(np.float32)


# --- estimation -------------------------------------------------------------------------------
# 3x3 second-difference kernel: zero response to planes, unit gain for white noise (Σk² = 36).
_RESIDUAL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float64) / 6.0


def _conv3_valid(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    h, w = x.shape
    out = np.zeros((h - 2, w - 2), np.float64)
    for dy in range(3):
        for dx in range(3):
            if k[dy, dx]:
                out += k[dy, dx] * x[dy : dy + h - 2, dx : dx + w - 2]
    return out


def _blocks(a: np.ndarray, n: int) -> np.ndarray:
    h, w = (a.shape[0] // n) * n, (a.shape[1] // n) * n
    return a[:h, :w].reshape(h // n, n, w // n, n).swapaxes(1, 2).reshape(-1, n * n)


def estimate_noise(
    image: np.ndarray,
    nodata: float | None = None,
    block: int = 8,
    bins: int = 12,
    flat_fraction: float = 0.15,
    min_blocks: int = 8,
) -> NoiseParams:
    """Estimate (a, b) of variance ``a + b·x`` from one noisy single-band image (DN).

    The image is cut into ``block``² blocks; each gets its mean and the variance of a
    second-difference residual (unit gain for white noise, blind to local planes). Blocks are
    binned by mean; in each bin the ``flat_fraction`` blocks with the least texture (gradient
    energy of the 2x2-binned image, which is far less noisy than the residual) give a median
    noise variance; a weighted least-squares line through the bins gives (a, b), both >= 0.
    """
    x = np.asarray(image, np.float64)
    if x.ndim == 3:
        if x.shape[0] != 1:
            raise ConfigError("estimate_noise takes one band at a time")
        x = x[0]
    if x.ndim != 2 or min(x.shape) < 4 * block:
        raise NoiseModelError(f"image too small to estimate noise from: {x.shape}")
    valid = np.ones(x.shape, bool) if nodata is None else x != nodata
    r = np.zeros_like(x)
    r[1:-1, 1:-1] = _conv3_valid(x, _RESIDUAL)
    inner = np.zeros_like(valid)
    inner[1:-1, 1:-1] = True
    valid_r = inner & valid
    # texture: gradient energy of the 2x2-binned image, per block
    h2, w2 = (x.shape[0] // 2) * 2, (x.shape[1] // 2) * 2
    binned = x[:h2, :w2].reshape(h2 // 2, 2, w2 // 2, 2).mean(axis=(1, 3))
    gy = np.zeros_like(binned)
    gx = np.zeros_like(binned)
    gy[1:-1] = binned[2:] - binned[:-2]
    gx[:, 1:-1] = binned[:, 2:] - binned[:, :-2]
    grad = np.repeat(np.repeat(gy * gy + gx * gx, 2, 0), 2, 1)
    grad_full = np.zeros_like(x)
    grad_full[:h2, :w2] = grad

    bm = _blocks(x, block).mean(1)
    bvalid = _blocks(valid_r.astype(np.float64), block).min(1) > 0
    bres = _blocks(r, block)
    bvar = np.mean(bres * bres, axis=1)
    btex = _blocks(grad_full, block).mean(1)
    bm, bvar, btex = bm[bvalid], bvar[bvalid], btex[bvalid]
    if bm.size < min_blocks * 2:
        raise NoiseModelError("not enough valid blocks to estimate noise")
    # intensity bins with equal block counts (robust to skewed histograms)
    edges = np.unique(np.quantile(bm, np.linspace(0, 1, bins + 1)))
    means, vars_, weights = [], [], []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (bm >= lo) & (bm <= hi)
        if sel.sum() < min_blocks:
            continue
        tex = btex[sel]
        k = max(min_blocks // 2, int(round(flat_fraction * sel.sum())))
        flat = np.argsort(tex)[:k]
        means.append(float(np.median(bm[sel][flat])))
        vars_.append(float(np.median(bvar[sel][flat])))
        weights.append(math.sqrt(k))
    if len(means) < 2:
        raise NoiseModelError("the image has too few flat areas to estimate noise")
    m, v, w = np.array(means), np.array(vars_), np.array(weights)
    # median of a chi-square with ~block² dof is slightly below its mean: correct for it
    dof = block * block
    v = v / (1 - 2 / (9 * dof)) ** 3
    w = w / np.maximum(v, 1e-12)  # relative errors: weight by 1/variance
    A = np.stack([np.ones_like(m), m], 1)
    a, b = np.linalg.lstsq(A * w[:, None], v * w, rcond=None)[0]
    if b < 0:
        a, b = float(np.sum(w * w * v) / np.sum(w * w)), 0.0
    elif a < 0:
        b, a = float(np.sum(w * w * m * v) / np.sum(w * w * m * m)), 0.0
    a, b = max(float(a), 0.0), max(float(b), 0.0)
    if a == 0 and b == 0:
        a = 1e-6
    return NoiseParams(a, b, "estimated")
