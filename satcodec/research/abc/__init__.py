"""Approximate Bayesian computation, with deep generative surrogate simulators.

- :mod:`.simulators`: :class:`Simulator`, a batched θ ↦ X that counts every simulation and
  enforces a budget;
- :mod:`.distances`: Euclidean on summary statistics, sliced-Wasserstein for i.i.d. sample sets;
- :mod:`.rejection`: rejection ABC (quantile acceptance) and :class:`ABCResult`;
- :mod:`.smc`: ABC-SMC with adaptive tolerances, importance weights, an adaptive Gaussian kernel,
  effective sample size and resampling;
- :mod:`.summaries`: learned summary statistics (regression of (θ, θ²) on x, DeepSets for
  i.i.d. points) and the distance between them;
- :mod:`.surrogates`: conditional flow (zuko) and conditional VAE surrogates of p(X | θ) trained
  with the shared trainer, and :class:`SurrogateABC`;
- :mod:`.tasks`: benchmark tasks implemented here with an exact reference posterior
  (:class:`GaussianLinear`, sbibm's gaussian_linear), so the benchmark's quick mode needs no
  sbibm.

Research code: imports torch, :mod:`satcodec.train` and :mod:`satcodec.errors`, never the codec.
``zuko`` is imported only when a flow surrogate is built.
"""

from satcodec.research.abc.distances import (
    Euclidean,
    SlicedWasserstein,
    make_distance,
    sliced_wasserstein,
)
from satcodec.research.abc.rejection import (
    ABCResult,
    effective_sample_size,
    rejection_abc,
    weighted_cov,
)
from satcodec.research.abc.simulators import Simulator, prior_log_prob, prior_sample
from satcodec.research.abc.smc import default_population_size, smc_abc
from satcodec.research.abc.summaries import (
    LearnedSummary,
    SummaryDistance,
    SummaryNet,
    fit_summary,
)
from satcodec.research.abc.surrogates import (
    CVAESurrogate,
    FirstRound,
    FlowSurrogate,
    SurrogateABC,
    SurrogateABCConfig,
    SurrogateABCResult,
    SurrogateTraining,
    make_surrogate,
    surrogate_simulator,
    train_surrogate,
)
from satcodec.research.abc.tasks import GaussianLinear

__all__ = [
    "ABCResult",
    "CVAESurrogate",
    "Euclidean",
    "FirstRound",
    "FlowSurrogate",
    "GaussianLinear",
    "LearnedSummary",
    "SlicedWasserstein",
    "SummaryDistance",
    "SummaryNet",
    "Simulator",
    "SurrogateABC",
    "SurrogateABCConfig",
    "SurrogateABCResult",
    "SurrogateTraining",
    "default_population_size",
    "effective_sample_size",
    "fit_summary",
    "make_distance",
    "make_surrogate",
    "prior_log_prob",
    "prior_sample",
    "rejection_abc",
    "sliced_wasserstein",
    "smc_abc",
    "surrogate_simulator",
    "train_surrogate",
    "weighted_cov",
]
