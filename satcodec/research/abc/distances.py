"""ABC distances between simulated data sets and the observation, vectorised over a batch.

A distance is a callable ``d(x, x_obs) -> (n,)`` with ``x`` of shape (n, ...) (n simulated data
sets) and ``x_obs`` one data set (shape ``x.shape[1:]``, or with a leading 1).

- :class:`Euclidean`: L2 distance between summary statistics (optionally scaled per coordinate).
- :class:`SlicedWasserstein`: for data sets made of m i.i.d. samples in R^d, the sliced
  p-Wasserstein distance between the empirical measures (Nadjahi et al., ICASSP 2020). It
  ignores the order of the samples, which is right for i.i.d. data: the likelihood is invariant
  to it, so ABC on this distance still targets the exact posterior as ε → 0, and no
  hand-made summary statistic is needed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from satcodec.errors import ConfigError

Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _batch_obs(x: torch.Tensor, x_obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, k) simulations and (1, k) observation, flattened, with a clear error on mismatch."""
    n = x.shape[0]
    xf = x.reshape(n, -1)
    of = x_obs.reshape(1, -1).to(xf.dtype)
    if of.shape[1] != xf.shape[1]:
        raise ConfigError(
            f"observation has {of.shape[1]} values but each simulation has {xf.shape[1]}"
        )
    return xf, of


class Euclidean:
    """‖(x − x_obs) / scale‖₂ on the flattened data (or summary statistics).

    ``scale`` (per coordinate, e.g. the prior-predictive standard deviation) makes coordinates
    of different units comparable; None means no scaling.
    """

    def __init__(self, scale: torch.Tensor | None = None) -> None:
        if scale is not None and bool((scale <= 0).any()):
            raise ConfigError("Euclidean: every scale must be > 0")
        self.scale = scale

    def __call__(self, x: torch.Tensor, x_obs: torch.Tensor) -> torch.Tensor:
        xf, of = _batch_obs(x, x_obs)
        diff = xf - of
        if self.scale is not None:
            diff = diff / self.scale.reshape(1, -1).to(diff.dtype)
        return diff.norm(dim=1)


def sliced_wasserstein(
    x: torch.Tensor,
    y: torch.Tensor,
    projections: torch.Tensor | int = 100,
    p: float = 2.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sliced p-Wasserstein distance between sets of samples, batched.

    Args:
        x: (..., m, d): a batch of sets of m samples in R^d.
        y: (..., k, d), broadcastable against ``x``'s batch shape (e.g. one (k, d) set).
        projections: (d, L) directions (each column unit-norm), or a number L of random
            directions drawn uniformly on the sphere (with ``generator``).
        p: order, ≥ 1.

    Returns: the batch of SW_p = (mean over directions of W_p^p of the 1-D projections)^(1/p).
    Each 1-D W_p is computed exactly from sorted samples; when m ≠ k the two quantile
    functions are compared on the union of their steps.
    """
    if p < 1:
        raise ConfigError(f"sliced_wasserstein: p must be >= 1, got {p}")
    if x.dim() < 2 or y.dim() < 2 or x.shape[-1] != y.shape[-1]:
        raise ConfigError(
            f"sliced_wasserstein: need (..., m, d) and (..., k, d) sets, got "
            f"{tuple(x.shape)} and {tuple(y.shape)}"
        )
    d = x.shape[-1]
    y = y.to(x.dtype)
    if isinstance(projections, int):
        if projections < 1:
            raise ConfigError("sliced_wasserstein: need at least one projection")
        projections = random_directions(d, projections, generator=generator, dtype=x.dtype)
    proj = projections.to(x.dtype)
    if proj.shape[0] != d:
        raise ConfigError(f"projections have dimension {proj.shape[0]}, samples {d}")
    px = torch.sort(x @ proj, dim=-2).values  # (..., m, L)
    py = torch.sort(y @ proj, dim=-2).values  # (..., k, L)
    m, k = px.shape[-2], py.shape[-2]
    if m == k:
        cost = (px - py).abs().pow(p).mean(dim=-2)  # (..., L)
    else:
        # quantile levels where either empirical quantile function jumps; each piece has a
        # constant pair of quantiles, weighted by its length
        levels = torch.unique(torch.cat([torch.arange(1, m + 1) / m, torch.arange(1, k + 1) / k]))
        widths = torch.diff(levels, prepend=levels.new_zeros(1)).to(x.dtype)
        ix = torch.clamp(torch.ceil(levels * m - 1e-9).long() - 1, 0, m - 1)
        iy = torch.clamp(torch.ceil(levels * k - 1e-9).long() - 1, 0, k - 1)
        qx = px.index_select(-2, ix)
        qy = py.index_select(-2, iy)
        cost = ((qx - qy).abs().pow(p) * widths.reshape(-1, 1)).sum(dim=-2)
    return cost.mean(dim=-1).pow(1.0 / p)


def random_directions(
    d: int,
    n: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """(d, n) directions uniform on the unit sphere of R^d."""
    v = torch.randn(d, n, generator=generator, dtype=torch.float64)
    return (v / v.norm(dim=0, keepdim=True)).to(dtype)


class SlicedWasserstein:
    """Sliced-Wasserstein ABC distance for data sets of ``m`` i.i.d. samples in R^``d``.

    Each simulation (n, m·d) or (n, m, d) is read as m points in R^d. The projection
    directions are drawn once (from ``seed``) and reused for every call, so all particles of an
    ABC run are compared by the same distance.
    """

    def __init__(self, d: int, n_projections: int = 100, p: float = 2.0, seed: int = 0) -> None:
        if d < 1 or n_projections < 1:
            raise ConfigError("SlicedWasserstein: need d >= 1 and n_projections >= 1")
        self.d = d
        self.p = p
        if d == 1:  # one direction is exact in 1-D
            self.projections = torch.ones(1, 1)
        else:
            g = torch.Generator().manual_seed(seed)
            self.projections = random_directions(d, n_projections, generator=g)

    def __call__(self, x: torch.Tensor, x_obs: torch.Tensor) -> torch.Tensor:
        xf, of = _batch_obs(x, x_obs)
        if xf.shape[1] % self.d:
            raise ConfigError(
                f"SlicedWasserstein: {xf.shape[1]} values per data set is not a whole number "
                f"of {self.d}-D samples"
            )
        sets = xf.reshape(xf.shape[0], -1, self.d)
        obs = of.reshape(-1, self.d)
        return sliced_wasserstein(sets, obs, self.projections, self.p)


def make_distance(name: str, **kwargs: object) -> Distance:
    """A distance by name: ``euclidean`` or ``sliced_wasserstein`` (kwargs go to the class)."""
    key = name.lower().replace("-", "_")
    if key in ("euclidean", "l2"):
        return Euclidean(**kwargs)  # type: ignore[arg-type]
    if key in ("sliced_wasserstein", "sw"):
        return SlicedWasserstein(**kwargs)  # type: ignore[arg-type]
    raise ConfigError(f"unknown ABC distance {name!r}; available: euclidean, sliced_wasserstein")


__all__ = [
    "Distance",
    "Euclidean",
    "SlicedWasserstein",
    "make_distance",
    "random_directions",
    "sliced_wasserstein",
]
