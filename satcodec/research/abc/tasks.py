"""Benchmark tasks implemented here, with an exact reference posterior (no ``sbibm`` needed).

:class:`GaussianLinear` is sbibm's ``gaussian_linear`` task (Lueckmann et al. 2021) written from
its definition: θ ∈ R^10, prior N(0, 0.1·I), simulator x ~ N(θ, 0.1·I) (sbibm's ``prior_scale``
and ``simulator_scale`` of 0.1 are variances: it builds the precision as the inverse of
``scale·I``). The posterior is Gaussian in closed form,

    Σ_post = (Σ_prior⁻¹ + Σ_sim⁻¹)⁻¹,   μ_post = Σ_post Σ_sim⁻¹ x_o   (prior mean 0),

so reference samples are exact draws, as sbibm's are for this task.

Observations: sbibm's 10 observations when the ``sbibm`` wheel is installed (read from its
``observation.csv`` files, without importing sbibm or pyro), otherwise 10 observations of our
own (θ_o ~ prior, x_o ~ simulator, seeded per observation). ``observation_source`` says which.

The object has the small part of sbibm's ``Task`` interface that :mod:`abc_bench` uses:
``get_prior_dist``, ``get_simulator``, ``get_observation``, ``get_reference_posterior_samples``.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import torch
from torch.distributions import MultivariateNormal

from satcodec.errors import ConfigError

NUM_OBSERVATIONS = 10


def _sbibm_observation_file(task: str, num_observation: int) -> Path | None:
    """The observation.csv that the sbibm wheel ships for this task, or None (not installed)."""
    try:
        spec = importlib.util.find_spec("sbibm")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations)))
    path = (
        root / "tasks" / task / "files" / f"num_observation_{num_observation}" / "observation.csv"
    )
    return path if path.is_file() else None


def _read_csv_row(path: Path) -> torch.Tensor:
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    return torch.tensor([[float(v) for v in lines[1].split(",")]])  # header, then one row


class GaussianLinear:
    """sbibm's gaussian_linear (10-d, prior N(0, 0.1 I), x ~ N(θ, 0.1 I)), exact posterior.

    Args:
        dim: dimension of θ and x (sbibm: 10).
        prior_var: prior variance per coordinate (sbibm's ``prior_scale``, 0.1).
        noise_var: simulator noise variance per coordinate (sbibm's ``simulator_scale``, 0.1).
        observations: ``"auto"`` (sbibm's when installed, else our own), ``"sbibm"`` or
            ``"own"``.
    """

    name = "gaussian_linear"

    def __init__(
        self,
        dim: int = 10,
        prior_var: float = 0.1,
        noise_var: float = 0.1,
        observations: str = "auto",
    ) -> None:
        if dim < 1 or prior_var <= 0 or noise_var <= 0:
            raise ConfigError(
                f"gaussian_linear: dim >= 1 and variances > 0, got {dim}, {prior_var}, {noise_var}"
            )
        if observations not in ("auto", "sbibm", "own"):
            raise ConfigError(
                f"gaussian_linear: observations must be auto, sbibm or own, got {observations!r}"
            )
        self.dim = dim
        self.prior_var = prior_var
        self.noise_var = noise_var
        has_sbibm = dim == 10 and _sbibm_observation_file(self.name, 1) is not None
        if observations == "sbibm" and not has_sbibm:
            raise ConfigError(
                "gaussian_linear: sbibm's observations need the sbibm wheel (and dim 10)"
            )
        self.observation_source = (
            "sbibm" if observations == "sbibm" or (observations == "auto" and has_sbibm) else "own"
        )
        self.prior = MultivariateNormal(
            torch.zeros(dim), covariance_matrix=prior_var * torch.eye(dim)
        )

    def get_prior_dist(self) -> MultivariateNormal:
        return self.prior

    def get_simulator(self):  # noqa: ANN201 - a batched θ (n, dim) -> x (n, dim)
        sd = math.sqrt(self.noise_var)

        def simulator(theta: torch.Tensor) -> torch.Tensor:
            return theta + sd * torch.randn_like(theta)

        return simulator

    def _check(self, num_observation: int) -> None:
        if not 1 <= num_observation <= NUM_OBSERVATIONS:
            raise ConfigError(
                f"gaussian_linear: observation must be in 1..{NUM_OBSERVATIONS}, "
                f"got {num_observation}"
            )

    def get_true_parameters(self, num_observation: int) -> torch.Tensor | None:
        """θ_o of our own observations (None for sbibm's: not needed here)."""
        self._check(num_observation)
        if self.observation_source == "sbibm":
            return None
        g = torch.Generator().manual_seed(20_210_000 + num_observation)
        return math.sqrt(self.prior_var) * torch.randn(1, self.dim, generator=g)

    def get_observation(self, num_observation: int) -> torch.Tensor:
        """x_o as a (1, dim) tensor."""
        self._check(num_observation)
        if self.observation_source == "sbibm":
            path = _sbibm_observation_file(self.name, num_observation)
            assert path is not None
            return _read_csv_row(path)
        theta = self.get_true_parameters(num_observation)
        assert theta is not None
        g = torch.Generator().manual_seed(20_220_000 + num_observation)
        return theta + math.sqrt(self.noise_var) * torch.randn(1, self.dim, generator=g)

    def posterior(self, x_obs: torch.Tensor) -> MultivariateNormal:
        """The exact posterior p(θ | x_obs) (one observed data set)."""
        var = 1.0 / (1.0 / self.prior_var + 1.0 / self.noise_var)
        loc = var / self.noise_var * x_obs.reshape(-1).to(torch.float32)
        return MultivariateNormal(loc, covariance_matrix=var * torch.eye(self.dim))

    def get_reference_posterior(self, num_observation: int) -> MultivariateNormal:
        return self.posterior(self.get_observation(num_observation))

    def get_reference_posterior_samples(
        self, num_observation: int, num_samples: int = 10_000
    ) -> torch.Tensor:
        """``num_samples`` exact posterior draws (seeded per observation), as sbibm's 10,000."""
        post = self.get_reference_posterior(num_observation)
        g = torch.Generator().manual_seed(20_230_000 + num_observation)
        z = torch.randn(num_samples, self.dim, generator=g)
        return post.loc + z @ post.scale_tril.T


NATIVE_TASKS = {"gaussian_linear": GaussianLinear}


def get_native_task(name: str, **kwargs: object) -> GaussianLinear:
    """A task implemented here (``gaussian_linear``)."""
    if name not in NATIVE_TASKS:
        raise ConfigError(f"no native task {name!r}; available: {', '.join(NATIVE_TASKS)}")
    return NATIVE_TASKS[name](**kwargs)  # type: ignore[arg-type]
