"""ABC-SMC (population Monte Carlo ABC) under a budget of simulations.

The algorithm of Beaumont, Cornuet, Marin and Robert (Biometrika 2009), with the adaptive
choices that make it run without tuning:

- round 0 is rejection ABC: ``initial_factor``·N prior draws, keep the N closest;
- each later round's tolerance ε_t is the ``quantile`` of the current population's distances
  (Del Moral et al. 2012; sbibm's "distance-based decay");
- proposals: pick a particle by weight, perturb it with a Gaussian kernel whose covariance is
  ``kernel_scale`` (2, Beaumont et al.) times the weighted covariance of the population
  (Filippi et al. 2013 show this is the optimal *global* Gaussian kernel); proposals outside the
  prior's support are discarded without being simulated (their weight would be 0);
- importance weights w_i ∝ p(θ_i) / Σ_j w_j K(θ_i | θ_j);
- the effective sample size 1/Σw² is tracked; the population is resampled (multinomial, to equal
  weights) when it falls below ``ess_min``·N;
- it stops when the next simulation would exceed ``num_simulations`` (or after ``max_rounds``).
  A round cut short by the budget is not wasted: among all of its proposals (drawn i.i.d.
  from the same kernel mixture) the N closest are kept, which is quantile ABC with importance
  weights at a tolerance between ε_{t−1} and ε_t; when it had fewer than N proposals, or its
  N-th distance is no better than ε_{t−1}, the previous population is returned.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from satcodec.errors import ConfigError
from satcodec.research.abc.distances import Distance
from satcodec.research.abc.rejection import (
    ABCResult,
    _safe_cholesky,
    effective_sample_size,
    weighted_cov,
)
from satcodec.research.abc.simulators import Simulator, prior_log_prob, prior_sample


def default_population_size(num_simulations: int) -> int:
    """N = budget/100 clipped to [100, 1000] (sbibm uses 100 up to 10^4 simulations)."""
    return int(min(1000, max(100, num_simulations // 100)))


def _kernel_log_mixture(
    new: torch.Tensor, old: torch.Tensor, log_w: torch.Tensor, chol: torch.Tensor
) -> torch.Tensor:
    """log Σ_j w_j N(new_i; old_j, L Lᵀ) for every row of ``new``, chunked to bound memory."""
    p = new.shape[1]
    log_det = 2.0 * torch.log(chol.diagonal()).sum()
    const = -0.5 * p * math.log(2 * math.pi) - 0.5 * log_det
    out = []
    for chunk in new.split(max(1, 2_000_000 // max(1, old.shape[0] * p))):
        diff = chunk[:, None, :] - old[None, :, :]  # (m, N, p)
        z = torch.linalg.solve_triangular(chol, diff.reshape(-1, p).T, upper=False).T
        maha = z.pow(2).sum(-1).reshape(chunk.shape[0], old.shape[0])
        out.append(torch.logsumexp(log_w[None, :] + const - 0.5 * maha, dim=1))
    return torch.cat(out)


def smc_abc(
    simulator: Simulator,
    prior: Any,
    x_obs: torch.Tensor,
    distance: Distance,
    num_simulations: int,
    population_size: int | None = None,
    initial_factor: float = 5.0,
    quantile: float = 0.5,
    kernel_scale: float = 2.0,
    ess_min: float = 0.5,
    max_rounds: int = 1000,
    batch_size: int = 10_000,
) -> ABCResult:
    """ABC-SMC spending at most ``num_simulations`` calls of ``simulator``.

    Args:
        simulator: counted simulator (real or surrogate).
        prior: torch/pyro distribution over θ with event shape (p,).
        x_obs: the observed data set.
        distance: ``d(x, x_obs) -> (n,)``.
        num_simulations: simulation budget of this run.
        population_size: N particles (default :func:`default_population_size`).
        initial_factor: round 0 simulates ``initial_factor``·N prior draws and keeps the N best.
        quantile: ε_t is this quantile of the previous population's distances, in (0, 1).
        kernel_scale: perturbation covariance = kernel_scale × weighted covariance.
        ess_min: resample when ESS < ess_min·N (0 never resamples).
        max_rounds: stop after this many rounds even with budget left.
        batch_size: most simulations per simulator call.
    """
    n_pop = population_size or default_population_size(num_simulations)
    n0 = max(n_pop, int(initial_factor * n_pop))
    if n_pop < 2:
        raise ConfigError(f"smc_abc: population_size must be >= 2, got {n_pop}")
    if num_simulations < n0:
        raise ConfigError(
            f"smc_abc: num_simulations={num_simulations} is less than the first round's "
            f"{n0} (= initial_factor {initial_factor} × population {n_pop}); "
            "lower population_size or initial_factor"
        )
    if not 0 < quantile < 1:
        raise ConfigError(f"smc_abc: quantile must be in (0, 1), got {quantile}")
    if kernel_scale <= 0 or not 0 <= ess_min <= 1 or batch_size < 1:
        raise ConfigError("smc_abc: need kernel_scale > 0, 0 <= ess_min <= 1, batch_size >= 1")
    start = simulator.calls
    spent = 0

    # round 0: rejection ABC
    theta0 = prior_sample(prior, n0)
    d0 = torch.cat([distance(simulator(t), x_obs) for t in theta0.split(batch_size)])
    spent += n0
    best = torch.topk(d0, n_pop, largest=False).indices
    theta, dist = theta0[best], d0[best]
    weights = torch.full((n_pop,), 1.0 / n_pop, dtype=theta.dtype)
    eps = float(dist.max())
    history: list[dict[str, Any]] = [
        {"round": 0, "epsilon": eps, "accepted": n_pop, "simulations": n0, "ess": float(n_pop)}
    ]

    for rnd in range(1, max_rounds + 1):
        if spent >= num_simulations:
            break
        eps_t = float(torch.quantile(dist, quantile))
        chol = _safe_cholesky(kernel_scale * weighted_cov(theta, weights))
        log_w_prev = torch.log(weights)
        acc_theta: list[torch.Tensor] = []
        acc_d: list[torch.Tensor] = []
        all_theta: list[torch.Tensor] = []  # every proposal of the round, for a cut-short end
        all_d: list[torch.Tensor] = []
        n_acc, sims_round, rate = 0, 0, 1.0
        p = theta.shape[1]
        empty_draws = 0
        while n_acc < n_pop and spent < num_simulations:
            need = n_pop - n_acc
            # aim for the remaining particles at the acceptance rate seen so far in this round
            b = min(batch_size, num_simulations - spent, math.ceil(1.2 * need / max(rate, 1e-3)))
            idx = torch.multinomial(weights, b, replacement=True)
            prop = theta[idx] + torch.randn(b, p, dtype=theta.dtype) @ chol.T
            prop = prop[torch.isfinite(prior_log_prob(prior, prop))]
            if prop.shape[0] == 0:
                empty_draws += 1
                if empty_draws > 1000:
                    raise ConfigError("smc_abc: the kernel keeps proposing outside the prior")
                continue
            d = distance(simulator(prop), x_obs)
            spent += prop.shape[0]
            sims_round += prop.shape[0]
            ok = d <= eps_t
            all_theta.append(prop)
            all_d.append(d)
            acc_theta.append(prop[ok])
            acc_d.append(d[ok])
            n_acc += int(ok.sum())
            rate = max(n_acc, 0.5) / sims_round
        complete = n_acc >= n_pop
        if complete:
            new_theta = torch.cat(acc_theta)[:n_pop]
            new_d = torch.cat(acc_d)[:n_pop]
        else:
            # budget spent mid-round: keep the N closest proposals if that beats ε_{t-1}
            cand_theta, cand_d = torch.cat(all_theta), torch.cat(all_d)
            if cand_d.numel() < n_pop or float(torch.kthvalue(cand_d, n_pop).values) >= eps:
                history.append(
                    {"round": rnd, "epsilon": eps_t, "accepted": n_acc,
                     "simulations": sims_round, "kept": False}
                )  # fmt: skip
                break
            best = torch.topk(cand_d, n_pop, largest=False).indices
            new_theta, new_d = cand_theta[best], cand_d[best]
            eps_t = float(new_d.max())
        log_w = prior_log_prob(prior, new_theta) - _kernel_log_mixture(
            new_theta, theta, log_w_prev, chol
        )
        w = torch.exp(log_w - log_w.max())
        w = w / w.sum()
        ess = effective_sample_size(w)
        rec = {
            "round": rnd,
            "epsilon": eps_t,
            "accepted": int(new_theta.shape[0]),
            "simulations": sims_round,
            "acceptance_rate": n_acc / max(1, sims_round),
            "complete": complete,
            "ess": ess,
            "resampled": False,
            "kept": True,
        }
        theta, dist, weights, eps = new_theta, new_d, w, eps_t
        if complete and ess < ess_min * n_pop:
            pick = torch.multinomial(weights, n_pop, replacement=True)
            theta, dist = theta[pick], dist[pick]
            weights = torch.full((n_pop,), 1.0 / n_pop, dtype=theta.dtype)
            rec["resampled"] = True
        history.append(rec)
        if not complete:
            break

    return ABCResult(
        theta=theta,
        weights=weights,
        distances=dist,
        epsilon=eps,
        simulations=simulator.calls - start,
        history=history,
    )
