"""Deep generative surrogates of a simulator, p(X | θ), and ABC that runs on them.

Two conditional generative models, both trained with the shared trainer
(:class:`satcodec.train.Trainer`, optimizer chosen by name) on (θ, X) pairs drawn from the real
simulator:

- :class:`FlowSurrogate`: a conditional neural spline flow from ``zuko`` (a maintained flow
  library; coupling form, ``passes=2``, so sampling costs two network passes per transform
  instead of one per dimension). Trained by maximum likelihood.
- :class:`CVAESurrogate`: a conditional VAE, plain torch: encoder q(z | x, θ), decoder
  p(x | z, θ) Gaussian with a learned mean and diagonal variance (so it can reproduce the
  simulator's spread, not only its mean). Trained on the negative ELBO.

Both standardise θ and X with the first training set's mean and standard deviation.

:class:`SurrogateABC` spends a budget of real simulations to train a surrogate, then runs ABC
(SMC or rejection) on surrogate draws, where simulations are nearly free, so it can afford
hundreds of thousands of them and a much smaller tolerance than ABC on the real budget. With
``rounds > 1`` it spends the budget in rounds: round 1 draws θ from the prior; each later round
draws θ from the current ABC posterior (a kernel density estimate of its particles, mixed with
the prior, ``prior_fraction``), simulates them for real, and retrains on *all* pairs so far.
No importance correction is needed for that: the surrogate models the conditional p(X | θ), and
maximum likelihood on pairs (θ ~ any proposal, X ~ p(X | θ)) is still consistent for that
conditional — the proposal only decides where in θ-space it is learned well (the argument of
sequential neural likelihood, Papamakarios et al. 2019). The final ABC always draws θ from the
prior, so the posterior it targets is p(θ | x_obs) under the surrogate likelihood.
"""

from __future__ import annotations

import copy
import math
import tempfile
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from satcodec.errors import ConfigError
from satcodec.research.abc.distances import Distance
from satcodec.research.abc.rejection import ABCResult, rejection_abc
from satcodec.research.abc.simulators import Simulator, prior_sample
from satcodec.research.abc.smc import smc_abc
from satcodec.train import TrainConfig, Trainer, epoch_batches


def _mlp(n_in: int, n_out: int, hidden: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(n_in, h), nn.SiLU()]
        n_in = h
    layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


class ConditionalSurrogate(nn.Module):
    """Base class: a conditional generative model of X (x_dim values) given θ (theta_dim)."""

    def __init__(self, theta_dim: int, x_dim: int) -> None:
        super().__init__()
        if theta_dim < 1 or x_dim < 1:
            raise ConfigError(f"surrogate: need theta_dim, x_dim >= 1, got {theta_dim}, {x_dim}")
        self.theta_dim, self.x_dim = theta_dim, x_dim
        self.register_buffer("theta_mean", torch.zeros(theta_dim))
        self.register_buffer("theta_std", torch.ones(theta_dim))
        self.register_buffer("x_mean", torch.zeros(x_dim))
        self.register_buffer("x_std", torch.ones(x_dim))

    def set_standardization(self, theta: torch.Tensor, x: torch.Tensor) -> None:
        """Standardise inputs with these pairs' moments (a constant coordinate keeps std 1)."""
        for name, v in (("theta", theta), ("x", x)):
            std = v.std(0)
            getattr(self, f"{name}_mean").copy_(v.mean(0))
            getattr(self, f"{name}_std").copy_(torch.where(std > 1e-8, std, torch.ones_like(std)))

    def _z(self, theta: torch.Tensor, x: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        t = (theta - self.theta_mean) / self.theta_std
        return (t,) if x is None else (t, (x - self.x_mean) / self.x_std)

    def loss(self, theta: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Training loss on raw (θ, X) pairs (per-pair average)."""
        raise NotImplementedError

    def sample_standardized(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, theta: torch.Tensor, batch_size: int = 20_000) -> torch.Tensor:
        """One surrogate simulation X ~ q(X | θ) per row of θ, on the data's scale."""
        was_training = self.training
        self.eval()
        theta = theta.reshape(theta.shape[0], -1).to(self.theta_mean.dtype)
        outs = [
            self.sample_standardized(self._z(chunk)[0]) * self.x_std + self.x_mean
            for chunk in theta.split(batch_size)
        ]
        self.train(was_training)
        return torch.cat(outs) if outs else theta.new_zeros(0, self.x_dim)


class FlowSurrogate(ConditionalSurrogate):
    """Conditional neural spline flow (zuko) of standardised X given standardised θ."""

    def __init__(
        self,
        theta_dim: int,
        x_dim: int,
        transforms: int = 3,
        hidden: tuple[int, ...] = (64, 64),
        bins: int = 8,
    ) -> None:
        super().__init__(theta_dim, x_dim)
        zuko = _import_zuko()
        # passes=2: coupling layers, so sampling is as cheap as density evaluation
        passes = 2 if x_dim > 1 else None
        self.flow = zuko.flows.NSF(
            features=x_dim,
            context=theta_dim,
            transforms=transforms,
            bins=bins,
            passes=passes,
            hidden_features=list(hidden),
        )

    def log_prob(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log q(X | θ) on the data's scale (standardisation Jacobian included)."""
        t, xs = self._z(theta, x)
        return self.flow(t).log_prob(xs) - torch.log(self.x_std).sum()

    def loss(self, theta: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        t, xs = self._z(theta, x)
        nll = -self.flow(t).log_prob(xs).mean()
        return nll, {"nll": float(nll.detach())}

    def sample_standardized(self, t: torch.Tensor) -> torch.Tensor:
        return self.flow(t).sample()


class CVAESurrogate(ConditionalSurrogate):
    """Conditional VAE: q(z | x, θ) and p(x | z, θ) = N(μ(z, θ), diag σ²(z, θ)), z ~ N(0, I)."""

    def __init__(
        self,
        theta_dim: int,
        x_dim: int,
        latent_dim: int | None = None,
        hidden: tuple[int, ...] = (128, 128),
        beta: float = 1.0,
    ) -> None:
        super().__init__(theta_dim, x_dim)
        self.latent_dim = latent_dim or max(2, x_dim)
        self.beta = beta
        self.encoder = _mlp(x_dim + theta_dim, 2 * self.latent_dim, hidden)
        self.decoder = _mlp(self.latent_dim + theta_dim, 2 * x_dim, hidden)

    def _decode(self, z: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_var = self.decoder(torch.cat([z, t], dim=1)).chunk(2, dim=1)
        return mu, log_var.clamp(-12.0, 6.0)  # keeps exp() finite early in training

    def loss(self, theta: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        t, xs = self._z(theta, x)
        mu_z, log_var_z = self.encoder(torch.cat([xs, t], dim=1)).chunk(2, dim=1)
        log_var_z = log_var_z.clamp(-12.0, 6.0)
        z = mu_z + torch.randn_like(mu_z) * torch.exp(0.5 * log_var_z)
        mu_x, log_var_x = self._decode(z, t)
        # Gaussian negative log-likelihood and KL(q(z|x,θ) ‖ N(0, I)), summed over dimensions
        nll = 0.5 * (
            (xs - mu_x).pow(2) * torch.exp(-log_var_x) + log_var_x + math.log(2 * math.pi)
        ).sum(1)
        kl = 0.5 * (mu_z.pow(2) + log_var_z.exp() - 1.0 - log_var_z).sum(1)
        loss = (nll + self.beta * kl).mean()
        return loss, {"recon_nll": float(nll.mean().detach()), "kl": float(kl.mean().detach())}

    def sample_standardized(self, t: torch.Tensor) -> torch.Tensor:
        z = torch.randn(t.shape[0], self.latent_dim, dtype=t.dtype)
        mu, log_var = self._decode(z, t)
        return mu + torch.randn_like(mu) * torch.exp(0.5 * log_var)


SURROGATES: dict[str, type[ConditionalSurrogate]] = {"flow": FlowSurrogate, "cvae": CVAESurrogate}


def _import_zuko() -> Any:
    try:
        import zuko
    except ImportError as exc:  # optional dependency: say how to get it
        raise ConfigError(
            "the flow surrogate needs the 'zuko' package: pip install 'satcodec[abc]' "
            "(or pip install zuko)"
        ) from exc
    return zuko


def make_surrogate(kind: str, theta_dim: int, x_dim: int, **kwargs: Any) -> ConditionalSurrogate:
    """A surrogate by name: ``flow`` (zuko neural spline flow) or ``cvae``."""
    if kind not in SURROGATES:
        raise ConfigError(f"unknown surrogate {kind!r}; available: {', '.join(SURROGATES)}")
    return SURROGATES[kind](theta_dim, x_dim, **kwargs)


@dataclass
class SurrogateTraining:
    """How a surrogate is trained (passed to the shared trainer).

    ``steps`` None means ``epochs`` passes over the data, clipped to [min_steps, max_steps].
    ``val_fraction`` of the pairs are held out to report the validation loss (never trained on).
    """

    steps: int | None = None
    epochs: float = 60.0
    min_steps: int = 500
    max_steps: int = 3000
    batch_size: int = 256
    optimizer: str = "adam"
    lr: float = 1e-3
    schedule: str = "cosine"
    clip_grad_norm: float | None = 5.0
    val_fraction: float = 0.1
    later_rounds_factor: float = 0.5  # warm-started rounds train this fraction of the steps
    seed: int = 0
    out_dir: str | None = None  # trainer logs/checkpoint; None: a temporary folder

    def steps_for(self, n_train: int, warm: bool = False) -> int:
        if self.steps is not None:
            steps = self.steps
        else:
            per_epoch = max(1, n_train // self.batch_size)
            steps = int(min(self.max_steps, max(self.min_steps, round(self.epochs * per_epoch))))
        return max(1, int(steps * self.later_rounds_factor)) if warm else steps


def train_surrogate(
    model: ConditionalSurrogate,
    theta: torch.Tensor,
    x: torch.Tensor,
    training: SurrogateTraining | None = None,
    standardize: bool = True,
) -> dict[str, Any]:
    """Fit ``model`` to the pairs (θ, X) with the shared :class:`Trainer`.

    Returns the training records and the held-out loss. The global torch RNG state is restored
    afterwards: the trainer reseeds it every step, and the simulations that follow must not
    depend on how long the surrogate trained.
    """
    cfg = training or SurrogateTraining()
    n = theta.shape[0]
    theta = theta.reshape(n, -1).to(torch.float32)
    x = x.reshape(n, -1).to(torch.float32)
    if n < 10:
        raise ConfigError(f"train_surrogate: need at least 10 pairs, got {n}")
    if not (torch.isfinite(theta).all() and torch.isfinite(x).all()):
        raise ConfigError("train_surrogate: θ and X must be finite")
    n_val = int(round(cfg.val_fraction * n)) if cfg.val_fraction > 0 else 0
    g = torch.Generator().manual_seed(cfg.seed + 17)
    perm = torch.randperm(n, generator=g)
    val_idx, tr_idx = perm[:n_val], perm[n_val:]
    th_tr, x_tr = theta[tr_idx], x[tr_idx]
    if standardize:
        model.set_standardization(th_tr, x_tr)
    bs = min(cfg.batch_size, th_tr.shape[0])
    steps = cfg.steps_for(th_tr.shape[0], warm=not standardize)
    batches = epoch_batches(th_tr.shape[0], bs, seed=cfg.seed)

    def loss_fn(m: nn.Module, idx: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        return m.loss(th_tr[idx], x_tr[idx])  # type: ignore[operator]

    def val_fn(m: nn.Module) -> dict[str, float]:
        if n_val == 0:
            return {}
        torch.manual_seed(cfg.seed + 23)  # the cVAE's ELBO is stochastic: same noise each time
        loss, _ = m.loss(theta[val_idx], x[val_idx])  # type: ignore[operator]
        return {"loss": float(loss)}

    rng_state = torch.get_rng_state()
    with tempfile.TemporaryDirectory(prefix="abc_surrogate_") as tmp:
        config = TrainConfig(
            steps=steps,
            optimizer=cfg.optimizer,
            lr=cfg.lr,
            schedule=cfg.schedule,
            clip_grad_norm=cfg.clip_grad_norm,
            seed=cfg.seed,
            log_every=max(1, steps // 10),
            ckpt_every=0,
            out_dir=cfg.out_dir or tmp,
            progress=False,
        )
        history = Trainer(model, loss_fn, batches, config, val_fn=val_fn).fit()
    torch.set_rng_state(rng_state)
    model.eval()
    train_loss = [r["loss"] for r in history if "loss" in r]
    val = [r["val/loss"] for r in history if "val/loss" in r]
    return {
        "steps": steps,
        "n_train": int(th_tr.shape[0]),
        "n_val": n_val,
        "train_loss": train_loss[-1] if train_loss else float("nan"),
        "val_loss": val[-1] if val else float("nan"),
    }


def surrogate_simulator(model: ConditionalSurrogate, name: str = "surrogate") -> Simulator:
    """The trained surrogate as a counted :class:`Simulator` (no budget: its draws are cheap)."""
    return Simulator(model.sample, name=name)


@dataclass
class SurrogateABCConfig:
    """Settings of :class:`SurrogateABC` (see the module docstring for the method).

    ``round_fractions`` splits the real budget between rounds (None: ``rounds`` equal parts);
    ``abc`` is ``"smc"`` or ``"rejection"`` on ``surrogate_simulations`` surrogate draws
    (rejection keeps ``rejection_quantile`` of them; the ABC of a round that only shapes the
    next round's proposal uses ``intermediate_fraction`` of them); ``smc`` holds extra :func:`smc_abc`
    arguments; ``prior_fraction`` of each later round's θ come from the prior (defensive
    mixture, so no part of the prior is left unlearned); ``retrain`` "continue" warm-starts the
    surrogate on all pairs each round (keeping round 1's standardisation), "scratch" refits.
    """

    surrogate: str = "flow"
    surrogate_kwargs: dict[str, Any] = field(default_factory=dict)
    training: SurrogateTraining = field(default_factory=SurrogateTraining)
    rounds: int = 2
    round_fractions: tuple[float, ...] | None = None
    prior_fraction: float = 0.1
    retrain: str = "continue"
    abc: str = "smc"
    surrogate_simulations: int = 100_000
    intermediate_fraction: float = 0.5
    rejection_quantile: float = 0.005
    smc: dict[str, Any] = field(default_factory=lambda: {"population_size": 1000})
    simulation_batch: int = 10_000

    def fractions(self) -> tuple[float, ...]:
        fr = self.round_fractions or tuple(1.0 / self.rounds for _ in range(self.rounds))
        if len(fr) != self.rounds or any(f <= 0 for f in fr) or abs(sum(fr) - 1) > 1e-6:
            raise ConfigError(
                f"round_fractions must be {self.rounds} positive numbers summing to 1, got {fr}"
            )
        return fr


@dataclass
class SurrogateABCResult:
    """The final ABC posterior, the real and surrogate simulations spent, and per-round info."""

    result: ABCResult
    real_simulations: int  # real simulations behind this posterior (shared ones included)
    surrogate_simulations: int
    rounds: list[dict[str, Any]]
    model: ConditionalSurrogate
    real_simulations_shared: int = 0  # of which came from a first round shared across runs


@dataclass
class FirstRound:
    """Round 1 of :class:`SurrogateABC` (θ from the prior, so independent of the observation):
    its real pairs and the surrogate trained on them, reusable by runs on other observations
    of the same model (see :meth:`SurrogateABC.first_round`)."""

    theta: torch.Tensor
    x: torch.Tensor
    model: ConditionalSurrogate
    info: dict[str, Any]


class SurrogateABC:
    """ABC on a deep generative surrogate trained on a budget of real simulations.

    Args:
        simulator: the real, counted simulator; every real call goes through it.
        prior: torch/pyro distribution over θ with event shape (p,).
        distance: ABC distance ``d(x, x_obs) -> (n,)``.
        config: :class:`SurrogateABCConfig`.
    """

    def __init__(
        self,
        simulator: Simulator,
        prior: Any,
        distance: Distance,
        config: SurrogateABCConfig | None = None,
    ) -> None:
        self.simulator = simulator
        self.prior = prior
        self.distance = distance
        self.config = config or SurrogateABCConfig()
        c = self.config
        if c.surrogate not in SURROGATES:
            raise ConfigError(f"unknown surrogate {c.surrogate!r}; available: flow, cvae")
        if c.abc not in ("smc", "rejection"):
            raise ConfigError(f"SurrogateABC: abc must be 'smc' or 'rejection', got {c.abc!r}")
        if c.retrain not in ("continue", "scratch"):
            raise ConfigError(f"retrain must be 'continue' or 'scratch', got {c.retrain!r}")
        if not 0 <= c.prior_fraction <= 1:
            raise ConfigError(f"prior_fraction must be in [0, 1], got {c.prior_fraction}")
        c.fractions()

    def _abc(self, model: ConditionalSurrogate, x_obs: torch.Tensor, final: bool) -> ABCResult:
        c = self.config
        sim = surrogate_simulator(model)
        n_sims = c.surrogate_simulations
        if not final:  # an intermediate posterior only shapes the next proposal
            n_sims = max(1, int(c.intermediate_fraction * n_sims))
        if c.abc == "smc":
            return smc_abc(
                sim,
                self.prior,
                x_obs,
                self.distance,
                n_sims,
                batch_size=c.simulation_batch,
                **c.smc,
            )
        return rejection_abc(
            sim,
            self.prior,
            x_obs,
            self.distance,
            n_sims,
            quantile=c.rejection_quantile,
            batch_size=c.simulation_batch,
        )

    def _proposal(self, posterior: ABCResult, n: int) -> torch.Tensor:
        n_prior = int(round(self.config.prior_fraction * n))
        parts = [posterior.sample(n - n_prior, kde=True, prior=self.prior)] if n > n_prior else []
        if n_prior:
            parts.append(prior_sample(self.prior, n_prior).to(posterior.theta.dtype))
        theta = torch.cat(parts)
        return theta[torch.randperm(n)]

    def _counts(self, num_simulations: int) -> list[int]:
        c = self.config
        counts = [int(math.floor(f * num_simulations)) for f in c.fractions()]
        counts[-1] = num_simulations - sum(counts[:-1])
        if min(counts) < 20:
            raise ConfigError(
                f"SurrogateABC: {num_simulations} real simulations in {c.rounds} rounds leaves "
                f"a round with {min(counts)} (< 20); raise the budget or use fewer rounds"
            )
        return counts

    def _train(
        self, model: ConditionalSurrogate | None, theta: torch.Tensor, x: torch.Tensor, r: int
    ) -> tuple[ConditionalSurrogate, dict[str, Any]]:
        c = self.config
        fresh = model is None or c.retrain == "scratch"
        if fresh:
            with torch.random.fork_rng():  # same initial weights, global stream untouched
                torch.manual_seed(c.training.seed)
                model = make_surrogate(
                    c.surrogate, theta.shape[1], x.shape[1], **c.surrogate_kwargs
                )
        assert model is not None
        tcfg = SurrogateTraining(**{**c.training.__dict__, "seed": c.training.seed + r})
        return model, train_surrogate(model, theta, x, tcfg, standardize=fresh)

    def first_round(self, num_simulations: int) -> FirstRound:
        """Simulate round 1's share of ``num_simulations`` from the prior and train on it.

        Round 1 does not look at the observation, so one :class:`FirstRound` can serve runs on
        several observations (pass it to :meth:`run`); each run still reports the full budget
        as the real simulations behind its posterior, and how many of them were shared.
        """
        n1 = self._counts(num_simulations)[0]
        theta = prior_sample(self.prior, n1)
        x = torch.cat([self.simulator(t) for t in theta.split(self.config.simulation_batch)])
        theta, x = theta.reshape(n1, -1).float(), x.reshape(n1, -1).float()
        model, info = self._train(None, theta, x, 0)
        return FirstRound(theta, x, model, info)

    def run(
        self, x_obs: torch.Tensor, num_simulations: int, first: FirstRound | None = None
    ) -> SurrogateABCResult:
        """Spend ``num_simulations`` real simulations in all, then run ABC on the surrogate.

        With ``first`` (from :meth:`first_round` with the same budget), round 1's pairs and
        surrogate are reused (the surrogate is copied, not modified) and only the later rounds
        call the simulator here.
        """
        c = self.config
        counts = self._counts(num_simulations)
        if first is not None and first.theta.shape[0] != counts[0]:
            raise ConfigError(
                f"SurrogateABC.run: the shared first round has {first.theta.shape[0]} pairs, "
                f"this budget's round 1 needs {counts[0]}"
            )
        start_real = self.simulator.calls
        if first is None:
            first = self.first_round(num_simulations)
            shared = 0
        else:
            shared = counts[0]
        thetas, xs = [first.theta], [first.x]
        model = copy.deepcopy(first.model)
        posterior = self._abc(model, x_obs, final=len(counts) == 1)
        surrogate_sims = posterior.simulations
        rounds: list[dict[str, Any]] = [
            {
                "round": 0,
                "real_simulations": counts[0],
                "theta_from": "prior",
                "shared": bool(shared),
                "epsilon": posterior.epsilon,
                "ess": posterior.ess,
                **first.info,
            }
        ]
        for r, n_r in enumerate(counts[1:], start=1):
            theta = self._proposal(posterior, n_r)
            x = torch.cat([self.simulator(t) for t in theta.split(c.simulation_batch)])
            thetas.append(theta.reshape(n_r, -1).float())
            xs.append(x.reshape(n_r, -1).float())
            model, info = self._train(model, torch.cat(thetas), torch.cat(xs), r)
            posterior = self._abc(model, x_obs, final=r == len(counts) - 1)
            surrogate_sims += posterior.simulations
            rounds.append(
                {
                    "round": r,
                    "real_simulations": n_r,
                    "theta_from": "ABC posterior (KDE) + prior mixture",
                    "shared": False,
                    "epsilon": posterior.epsilon,
                    "ess": posterior.ess,
                    **info,
                }
            )
        real = self.simulator.calls - start_real + shared
        return SurrogateABCResult(posterior, real, surrogate_sims, rounds, model, shared)
