"""Learned summary statistics for ABC (semi-automatic ABC, Fearnhead & Prangle, JRSS-B 2012).

A small network s(x) is regressed on simulated pairs (θ, x) to predict features of θ; its
output is then the summary statistic of ABC, compared with the Euclidean distance. With the
features θ and θ² (a quadratic expansion, as sbibm's SASS option), s(x) estimates the posterior
means E[θ | x] and E[θ² | x], which also carries the scale of posteriors that are symmetric in
some coordinates (slcp's θ₃, θ₄ enter the simulator only through their squares, so E[θ | x] ≈ 0
there says nothing).

For data made of m i.i.d. points in R^d (``point_dim=d``) the network is a DeepSets
(per-point MLP, mean pooling, MLP head), so s(x) ignores the order of the points, as the
likelihood does.

The regression costs no extra simulation: it is trained on pairs already simulated (for
:class:`~satcodec.research.abc.SurrogateABC`, round 1's). Research code: torch only.
"""

from __future__ import annotations

import torch
from torch import nn

from satcodec.errors import ConfigError
from satcodec.research.abc.distances import _batch_obs


def _mlp(n_in: int, n_out: int, hidden: int, layers: int = 2) -> nn.Sequential:
    mods: list[nn.Module] = []
    d = n_in
    for _ in range(layers):
        mods += [nn.Linear(d, hidden), nn.ReLU()]
        d = hidden
    mods.append(nn.Linear(d, n_out))
    return nn.Sequential(*mods)


class SummaryNet(nn.Module):
    """x (n, x_dim) ↦ s (n, out_dim): an MLP, or a DeepSets when ``point_dim`` is given."""

    def __init__(self, x_dim: int, out_dim: int, point_dim: int | None = None, hidden: int = 64):
        super().__init__()
        if point_dim is not None and (point_dim < 1 or x_dim % point_dim):
            raise ConfigError(f"SummaryNet: point_dim {point_dim} does not divide x_dim {x_dim}")
        self.point_dim = point_dim
        if point_dim is None:
            self.body = _mlp(x_dim, out_dim, hidden)
        else:
            self.phi = _mlp(point_dim, hidden, hidden)
            self.rho = _mlp(hidden, out_dim, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.point_dim is None:
            return self.body(x)
        pts = x.reshape(x.shape[0], -1, self.point_dim)
        return self.rho(self.phi(pts).mean(1))


class LearnedSummary:
    """A trained :class:`SummaryNet` with its input standardisation; call it on x (n, ...)."""

    def __init__(self, net: SummaryNet, x_mean: torch.Tensor, x_std: torch.Tensor, info: dict):
        self.net = net.eval()
        self.x_mean, self.x_std = x_mean, x_std
        self.info = info

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.reshape(x.shape[0], -1).float()
        z = (xf - self.x_mean) / self.x_std
        return torch.cat([self.net(c) for c in z.split(50_000)])


def fit_summary(
    theta: torch.Tensor,
    x: torch.Tensor,
    point_dim: int | None = None,
    hidden: int = 64,
    steps: int = 2000,
    batch_size: int = 256,
    lr: float = 1e-3,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> LearnedSummary:
    """Regress standardised (θ, θ²) on x with Adam (cosine decay) and keep the weights of the
    best validation loss. ``point_dim``: the data are i.i.d. points of this dimension."""
    n = theta.shape[0]
    if n < 20 or x.shape[0] != n:
        raise ConfigError(f"fit_summary needs >= 20 matching (θ, x) pairs, got {n}, {x.shape[0]}")
    theta = theta.reshape(n, -1).float()
    xf = x.reshape(n, -1).float()
    target = torch.cat([theta, theta**2], 1)
    target = (target - target.mean(0)) / target.std(0).clamp_min(1e-8)
    if point_dim is None:
        x_mean, x_std = xf.mean(0), xf.std(0).clamp_min(1e-8)
    else:  # one mean/sd per point coordinate, shared by the points (keeps order invariance)
        pts = xf.reshape(-1, point_dim)
        reps = xf.shape[1] // point_dim
        x_mean = pts.mean(0).repeat(reps)
        x_std = pts.std(0).clamp_min(1e-8).repeat(reps)
    z = (xf - x_mean) / x_std
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    n_val = max(1, int(val_fraction * n))
    val, tr = perm[:n_val], perm[n_val:]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = SummaryNet(xf.shape[1], target.shape[1], point_dim, hidden)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    best, best_state, best_step = float("inf"), None, 0
    for step in range(steps):
        idx = tr[torch.randint(len(tr), (min(batch_size, len(tr)),), generator=g)]
        loss = (net(z[idx]) - target[idx]).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 49 or step == steps - 1:
            with torch.no_grad():
                v = float((net(z[val]) - target[val]).pow(2).mean())
            if v < best:
                best, best_step = v, step + 1
                best_state = {k: t.clone() for k, t in net.state_dict().items()}
    assert best_state is not None
    net.load_state_dict(best_state)
    info = {"val_mse": best, "best_step": best_step, "steps": steps, "pairs": n}
    return LearnedSummary(net, x_mean, x_std, info)


class SummaryDistance:
    """‖s(x) − s(x_obs)‖₂ for a learned summary s (an ABC distance, batched over x)."""

    def __init__(self, summary: LearnedSummary) -> None:
        self.summary = summary

    def __call__(self, x: torch.Tensor, x_obs: torch.Tensor) -> torch.Tensor:
        xf, of = _batch_obs(x, x_obs)
        s = self.summary(xf)
        return (s - self.summary(of).to(s.dtype)).norm(dim=1)
