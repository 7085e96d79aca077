"""ABC with deep generative surrogates against ABC-SMC and NPE, on sbibm tasks:
``satcodec research abc-bench [--quick]``.

Protocol (after Lueckmann et al., "Benchmarking simulation-based inference", AISTATS 2021):

- tasks (default two_moons, slcp, gaussian_mixture; gaussian_linear available) with the
  simulators, priors, observations and reference posterior samples shipped in the ``sbibm``
  wheel (optional dependency, imported lazily; none of its code or files is vendored), except
  gaussian_linear, which is implemented here (:mod:`satcodec.research.abc.tasks`: sbibm's
  definition, exact Gaussian posterior; sbibm's observations when its wheel is installed, our
  own otherwise). ``--quick`` runs gaussian_linear, so it needs neither sbibm nor (with the
  torch C2ST below) scikit-learn: CI runs it;
- budgets of real simulations (default 10^4); every method's real simulator is a
  :class:`~satcodec.research.abc.Simulator` with that budget, and the number of real calls
  each posterior used is recorded;
- metric: C2ST accuracy between the method's posterior samples and the reference samples
  (0.5 is perfect, 1.0 fully separable), averaged over ``c2st_seeds`` classifier seeds (default
  5: the classifier's initialisation and its 5-fold split move C2ST by several hundredths on
  the same samples), per observation (default all 10 of sbibm's), then mean ± standard
  deviation and min–max over observations. A method wins only where the mean ± sd intervals
  are apart;
- methods: ABC-SMC with our settings, ABC-SMC with sbibm's settings (tolerance quantile 0.2,
  kernel 0.5× covariance, no resampling, L2 on the raw data), rejection ABC (the 100 closest,
  optional), surrogate ABC with a conditional flow (zuko) or conditional VAE (optional) in
  ``rounds`` rounds (default 2: half the budget from the prior, shared by the observations, half
  where the round-1 surrogate-ABC posterior is, per observation; then ABC-SMC on surrogate
  draws), the same with learned summary statistics (:mod:`satcodec.research.abc.summaries`, on
  slcp), and the ``sbi`` package's NPE as the external anchor (skipped with the reason when
  ``sbi`` is not installed);
- distances: Euclidean on the raw data, except slcp, whose data are 4 i.i.d. 2-D points: the
  sliced-Wasserstein distance between point sets (order-free, so ABC still targets the exact
  posterior); the sbibm-settings row uses L2 everywhere, as sbibm did;
- ABC particle sets are turned into C2ST samples with a weighted Gaussian KDE whose bandwidth
  is chosen by leave-one-out likelihood (sbibm cross-validates it).

Reductions against sbibm, forced by a shared 2-core machine and stated in the results file:
C2ST on fewer samples (default 500 per side, sbibm 10,000), and the C2ST classifier (sbibm's
MLP) trained with full-batch L-BFGS instead of up to 10,000 epochs of minibatch adam (same
model, converged much faster). The round-1 data of the surrogate methods and NPE's training set
are drawn from the prior, independent of the observation, so they are simulated and trained once
per task and budget and shared by the observations; each posterior still reports the full
budget as the real simulations behind it, and how many of them were shared.

C2ST classifier: scikit-learn's MLPClassifier when importable (all published rows), else the
same model, initialisation scheme, loss and L-BFGS written in torch (``c2st_backend``); every
row records which scored it.

Runs are resumable (``resume=True``: cells already in the output JSON with the same settings are
kept, the rest run; the JSON is rewritten after every cell, the samples after every task and
budget), and what is computed once per task and budget is seeded as an uninterrupted run seeds
it. :func:`merge` rebuilds the results files from several runs' JSON files (any split of tasks,
budgets, methods and observations; a cell is reported only with every requested observation).
"""

from __future__ import annotations

import json
import platform
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from satcodec.errors import ConfigError
from satcodec.research.abc import (
    Euclidean,
    Simulator,
    SlicedWasserstein,
    SummaryDistance,
    SurrogateABC,
    SurrogateABCConfig,
    SurrogateTraining,
    fit_summary,
    rejection_abc,
    smc_abc,
)
from satcodec.research.abc.tasks import NATIVE_TASKS, get_native_task

TASKS = ("two_moons", "gaussian_linear", "slcp", "gaussian_mixture")
METHODS = (
    "rej_abc",
    "smc_abc",
    "smc_abc_sbibm",
    "surrogate_flow",
    "surrogate_flow_ls",
    "surrogate_cvae",
    "npe",
)
LABELS = {
    "rej_abc": "REJ-ABC",
    "smc_abc": "SMC-ABC",
    "smc_abc_sbibm": "SMC-ABC, sbibm settings",
    "surrogate_flow": "Surrogate ABC (flow)",
    "surrogate_flow_ls": "Surrogate ABC (flow, learned summary)",
    "surrogate_cvae": "Surrogate ABC (cVAE)",
    "npe": "NPE (sbi)",
}
# the full run's default: the 10^4 budget on two_moons and slcp, the learned summary on slcp
DEFAULT_TASKS = ("two_moons", "slcp", "gaussian_mixture")
DEFAULT_METHODS = (
    "smc_abc",
    "smc_abc_sbibm",
    "surrogate_flow",
    "surrogate_flow_ls",
    "npe",
)
QUICK_TASKS = ("gaussian_linear",)
LEARNED_SUMMARY_TASKS = ("slcp",)
# ABC-SMC as sbibm ran it (sbibm.algorithms.sbi.smcabc defaults, on sbi's SMCABC): population 100
# up to 10^4 simulations, first round 5 x population, tolerance = the 0.2 quantile of the
# previous distances, Gaussian kernel 0.5 x the weighted covariance, no ESS resampling
# (ess_min None), L2 distance on the raw data (also on slcp)
SBIBM_SMC = {"quantile": 0.2, "kernel_scale": 0.5, "ess_min": 0.0, "initial_factor": 5.0}
# sbibm's published mean C2ST over its 10 observations at 10^4 simulations (REFERENCE.md);
# gaussian_mixture is the corrected rerun
PUBLISHED_1E4 = {
    "two_moons": {"rej_abc": 0.847, "smc_abc": 0.707, "npe": 0.606},
    "gaussian_linear": {"rej_abc": 0.858, "smc_abc": 0.829, "npe": 0.552},
    "slcp": {"rej_abc": 0.973, "smc_abc": 0.969, "npe": 0.901},
    "gaussian_mixture": {"rej_abc": 0.781, "smc_abc": 0.722, "npe": 0.615},
}


@dataclass
class BenchOptions:
    quick: bool = False
    tasks: list[str] | None = None
    methods: list[str] | None = None
    budgets: list[int] | None = None  # default [10000]; quick [1000]
    observations: int | None = None  # default 10 (all of sbibm's); quick 1
    c2st_samples: int | None = None  # per side; default 500 (sbibm: 10,000)
    c2st_seeds: int | None = None  # classifier seeds averaged per cell; default 5; quick 2
    # surrogate draws per final ABC run; default 2·10^5 for the flow, 10^6 for the cVAE, whose
    # draws are ~50x cheaper (quick: 3·10^4 and 10^5)
    surrogate_simulations: int | None = None
    rounds: int = 2  # surrogate rounds; round 1 (prior) is shared by the observations
    # C2ST classifier: "auto" (scikit-learn's MLP when importable, else the same MLP in torch),
    # "sklearn" or "torch"; each row records the backend that scored it
    c2st_backend: str = "auto"
    # keep the rows of an earlier (stopped) run in the output JSON with the same settings and
    # run only the missing (task, budget, method, observation) cells
    resume: bool = False
    # run only these of the observations 1..observations (chunks of one task in parallel
    # processes, merged afterwards); None: all
    only_observations: list[int] | None = None
    # also run sbibm's own slow C2ST (minibatch adam, up to 10^4 epochs) on observation 1 at
    # the largest budget for these tasks, to check ours against it (default two_moons; quick: none)
    exact_c2st_tasks: list[str] | None = None
    out: str = "bench/results"
    seed: int = 0
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def resolved(self) -> BenchOptions:
        q = self.quick
        o = BenchOptions(**{**asdict(self)})
        # quick: gaussian_linear, implemented here with its exact posterior (runs without sbibm)
        o.tasks = self.tasks or (list(QUICK_TASKS) if q else list(DEFAULT_TASKS))
        o.methods = self.methods or (
            [m for m in DEFAULT_METHODS if m != "surrogate_flow_ls"] if q else list(DEFAULT_METHODS)
        )
        o.budgets = self.budgets or ([1000] if q else [10_000])
        o.observations = self.observations or (1 if q else 10)
        o.c2st_samples = self.c2st_samples or 500
        o.c2st_seeds = self.c2st_seeds or (2 if q else 5)
        if self.exact_c2st_tasks is None:
            o.exact_c2st_tasks = []
        for t in o.tasks:
            if t not in TASKS:
                raise ConfigError(f"unknown task {t!r}; available: {', '.join(TASKS)}")
        for m in o.methods:
            if m not in METHODS:
                raise ConfigError(f"unknown method {m!r}; available: {', '.join(METHODS)}")
        c2st_backend(o.c2st_backend)  # validates the name
        if not 1 <= o.observations <= 10:
            raise ConfigError(f"observations must be in 1..10 (sbibm has 10), got {o.observations}")
        if o.rounds < 1 or o.c2st_seeds < 1:
            raise ConfigError(f"rounds and c2st_seeds must be >= 1, got {o.rounds}, {o.c2st_seeds}")
        if any(b < 200 for b in o.budgets):
            raise ConfigError(f"budgets must be >= 200 real simulations, got {o.budgets}")
        return o


_FIELDS = set(BenchOptions.__dataclass_fields__)


def load_task(name: str) -> tuple[Any, str]:
    """The task object and a description of where it comes from: our own implementation (with
    an exact reference posterior) for the tasks in :data:`NATIVE_TASKS`, else sbibm's."""
    if name in NATIVE_TASKS:
        task = get_native_task(name)
        return task, (
            f"implemented here (satcodec.research.abc.tasks), exact Gaussian reference posterior, "
            f"{task.observation_source} observations"
        )
    sbibm = _import_sbibm()
    return sbibm.get_task(name), f"sbibm {sbibm.__version__} (simulator, observations, reference)"


def _import_sbibm() -> Any:
    try:
        import sbibm
    except ImportError as exc:
        raise ConfigError(
            "abc-bench needs sbibm: pip install --no-deps sbibm==1.1.0 && "
            "pip install 'satcodec[abc]' (pyro-ppl, pandas, scikit-learn, zuko)"
        ) from exc
    return sbibm


def c2st_backend(requested: str = "auto") -> str:
    """``"sklearn"`` (the published tables: sbibm's own classifier, from scikit-learn) when
    importable, else ``"torch"`` (the same classifier written in torch; CI has no sklearn)."""
    if requested not in ("auto", "sklearn", "torch"):
        raise ConfigError(f"c2st backend must be auto, sklearn or torch, got {requested!r}")
    if requested != "auto":
        return requested
    try:
        import sklearn  # noqa: F401
    except ImportError:
        return "torch"
    return "sklearn"


def _kfold(n: int, folds: int, seed: int) -> list[np.ndarray]:
    """Test indices of ``sklearn.model_selection.KFold(folds, shuffle=True, random_state=seed)``."""
    idx = np.arange(n)
    np.random.RandomState(seed).shuffle(idx)
    sizes = np.full(folds, n // folds)
    sizes[: n % folds] += 1
    return np.split(idx, np.cumsum(sizes)[:-1])


def _mlp_fold_accuracy(
    xtr: torch.Tensor, ytr: torch.Tensor, xte: torch.Tensor, yte: torch.Tensor, seed: int
) -> float:
    """One fold of :func:`_c2st_torch`: fit the MLP on (xtr, ytr), accuracy on (xte, yte)."""
    dim = xtr.shape[1]
    sizes = [dim, 10 * dim, 10 * dim, 1]
    g = torch.Generator().manual_seed(seed)
    params: list[torch.Tensor] = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        bound = float(np.sqrt(6.0 / (fan_in + fan_out)))  # sklearn's Glorot-uniform for relu
        w = (torch.rand(fan_in, fan_out, generator=g, dtype=torch.float64) * 2 - 1) * bound
        bias = (torch.rand(fan_out, generator=g, dtype=torch.float64) * 2 - 1) * bound
        params += [w.requires_grad_(), bias.requires_grad_()]

    def logits(x: torch.Tensor) -> torch.Tensor:
        h = x
        for i in range(0, len(params) - 2, 2):
            h = torch.relu(h @ params[i] + params[i + 1])
        return (h @ params[-2] + params[-1]).squeeze(-1)

    opt = torch.optim.LBFGS(
        params, lr=1.0, max_iter=500, history_size=10, tolerance_grad=1e-4,
        tolerance_change=1e-9, line_search_fn="strong_wolfe",
    )  # fmt: skip

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits(xtr), ytr)
        loss = loss + 1e-4 / (2 * len(xtr)) * sum((w * w).sum() for w in params[::2])
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(((logits(xte) > 0).double() == yte).double().mean())


def _c2st_torch(a: np.ndarray, b: np.ndarray, seed: int, folds: int) -> float:
    """sklearn's ``MLPClassifier(hidden=(10·dim, 10·dim), relu, solver="lbfgs", max_iter=500,
    alpha=1e-4)`` in torch: Glorot-uniform initialisation, mean log-loss + α/2n·‖W‖², full-batch
    L-BFGS (history 10, ≤ 500 iterations, gradient tolerance 1e-4, strong Wolfe line search),
    scored by accuracy over shuffled ``folds``-fold splits (the same splits as sklearn's KFold)."""
    data = torch.from_numpy(np.concatenate([a, b])).double()
    target = torch.cat([torch.zeros(len(a)), torch.ones(len(b))]).double()
    scores = []
    for k, test in enumerate(_kfold(len(data), folds, seed)):
        mask = torch.ones(len(data), dtype=torch.bool)
        mask[torch.from_numpy(test)] = False
        scores.append(
            _mlp_fold_accuracy(
                data[mask], target[mask], data[~mask], target[~mask], seed * 1000 + k
            )
        )
    return float(np.mean(scores))


def c2st(
    x: torch.Tensor,
    ref: torch.Tensor,
    seed: int = 1,
    folds: int = 5,
    exact: bool = False,
    backend: str = "auto",
) -> float:
    """Classifier two-sample test accuracy (0.5: indistinguishable), as ``sbibm.metrics.c2st``:
    z-score with the reference's moments, an MLP with two hidden layers of 10·dim ReLU units,
    mean accuracy over 5 shuffled folds, the classifier trained to convergence.

    sbibm trains it with minibatch adam for up to 10,000 epochs (``exact=True``; 25–150 s a
    call here). By default it is trained with full-batch L-BFGS (at most 500 iterations): the
    same classifier, converged in 2–8 s. On the samples where both were run, the two agree to a
    few hundredths (see the results file); an early-stopped classifier, tried first, did not
    (it missed the fine structure that sbibm's classifier sees, e.g. 0.54 instead of 0.80).

    ``backend``: ``"sklearn"`` (the results files), ``"torch"`` (the same MLP, initialisation
    scheme, loss and L-BFGS in torch, for machines without scikit-learn, e.g. CI; not the same
    random initialisation, so not bit-identical) or ``"auto"`` (sklearn when importable).
    """
    x = x.detach().double().cpu()
    ref = ref.detach().double().cpu()
    mu, sd = ref.mean(0), ref.std(0)
    a = ((x - mu) / sd).numpy()
    b = ((ref - mu) / sd).numpy()
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return 1.0  # non-finite samples are trivially told apart
    if c2st_backend(backend) == "torch":
        if exact:
            raise ConfigError("c2st: exact=True (sbibm's minibatch adam) needs scikit-learn")
        return _c2st_torch(a, b, seed, folds)
    from sklearn.model_selection import KFold, cross_val_score
    from sklearn.neural_network import MLPClassifier

    dim = a.shape[1]
    solver = (
        {"solver": "adam", "max_iter": 10_000} if exact else {"solver": "lbfgs", "max_iter": 500}
    )
    clf = MLPClassifier(
        activation="relu", hidden_layer_sizes=(10 * dim, 10 * dim), random_state=seed, **solver
    )
    data = np.concatenate([a, b])
    target = np.concatenate([np.zeros(len(a)), np.ones(len(b))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = cross_val_score(
            clf, data, target, cv=KFold(folds, shuffle=True, random_state=seed), scoring="accuracy"
        )
    return float(np.mean(scores))


def task_distance(task: str) -> tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], str]:
    if task == "slcp":  # 4 i.i.d. points in R^2
        return SlicedWasserstein(
            d=2, n_projections=50, seed=0
        ), "sliced-Wasserstein (4 points in R^2)"
    return Euclidean(), "Euclidean"


def surrogate_draws(kind: str, opts: BenchOptions) -> int:
    if opts.surrogate_simulations:
        return opts.surrogate_simulations
    if kind == "cvae":
        return 100_000 if opts.quick else 1_000_000
    return 30_000 if opts.quick else 200_000


def surrogate_config(kind: str, budget: int, opts: BenchOptions) -> SurrogateABCConfig:
    small = budget <= 2000
    training = SurrogateTraining(
        epochs=60,
        min_steps=300 if opts.quick else 500,
        max_steps=600 if opts.quick else 1200,
        batch_size=128 if small else 256,
        lr=1e-3,
        optimizer="adam",
        schedule="cosine",
        seed=opts.seed,
    )
    return SurrogateABCConfig(
        surrogate=kind,
        training=training,
        rounds=opts.rounds,
        prior_fraction=0.1,
        abc="smc",
        surrogate_simulations=surrogate_draws(kind, opts),
        smc={"population_size": 1000, "quantile": 0.5},
    )


def _npe_posterior(
    prior: Any, theta: torch.Tensor, x: torch.Tensor, budget: int, quick: bool = False
) -> Any:
    import shutil
    import tempfile

    from sbi.inference import NPE
    from sbi.utils.tracking import TensorBoardTracker
    from torch.utils.tensorboard import SummaryWriter

    logdir = tempfile.mkdtemp(prefix="abc_bench_sbi_")  # not sbi's default ./sbi-logs
    writer = SummaryWriter(logdir)
    try:
        inference = NPE(
            prior=prior,
            density_estimator="maf",
            show_progress_bars=False,
            tracker=TensorBoardTracker(writer),
        )
        inference.append_simulations(theta, x)
        # capped epochs (sbi's default is until 20 epochs without validation improvement)
        epochs = 60 if quick else (300 if budget <= 2000 else 100)
        estimator = inference.train(max_num_epochs=epochs)
        return inference.build_posterior(estimator), int(inference.epoch)
    finally:
        writer.close()
        shutil.rmtree(logdir, ignore_errors=True)


def run_benchmark(opts: BenchOptions) -> dict[str, Any]:
    """Run every (task, budget, method, observation) cell; write json, markdown and plot."""
    o = opts.resolved()
    tasks = {name: load_task(name) for name in o.tasks or []}  # fails early without sbibm
    backend = c2st_backend(o.c2st_backend)
    torch.set_num_threads(1)
    out = Path(o.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "abc_bench_quick" if o.quick else "abc_bench"
    json_path = out / f"{stem}.json"
    methods = list(o.methods or [])
    skipped: dict[str, str] = {}
    if "npe" in methods:
        try:
            import sbi  # noqa: F401
        except ImportError as exc:
            skipped["npe"] = f"sbi not importable ({exc}); pip install sbi"
            methods.remove("npe")
    if any(m.startswith("surrogate_flow") for m in methods):
        try:
            import zuko  # noqa: F401
        except ImportError as exc:
            skipped["surrogate_flow"] = f"zuko not importable ({exc}); pip install zuko"
            methods.remove("surrogate_flow")
    rows: list[dict[str, Any]] = []
    timings: dict[str, float] = {}
    cell_samples: dict[str, np.ndarray] = {}  # kept so that C2ST can be recomputed later
    samples_path = out / f"{stem}_samples.npz"
    seconds_before = 0.0
    if o.resume and json_path.exists():
        rows, timings, seconds_before = _resume_rows(json_path, o)
        if samples_path.exists():
            with np.load(samples_path) as z:
                cell_samples = {k: z[k] for k in z.files}
    done = {(r["task"], r["budget"], r["method"], r["observation"]) for r in rows}
    t_start = time.time() - seconds_before

    def log(msg: str) -> None:
        if o.progress:
            print(f"[abc-bench {time.time() - t_start:7.1f}s] {msg}", flush=True)

    for task_name in o.tasks or []:
        task, source = tasks[task_name]
        prior = task.get_prior_dist()
        distance, dist_name = task_distance(task_name)
        for budget in o.budgets or []:
            shared: dict[str, Any] = {}
            for obs in range(1, (o.observations or 1) + 1):
                if o.only_observations and obs not in o.only_observations:
                    continue
                x_obs = task.get_observation(num_observation=obs)[0]
                ref_all = task.get_reference_posterior_samples(num_observation=obs)
                g = torch.Generator().manual_seed(1000 + obs)
                n_c = o.c2st_samples or 1000
                ref = ref_all[torch.randperm(ref_all.shape[0], generator=g)[:n_c]]
                for method in methods:
                    if method == "surrogate_flow_ls" and task_name not in LEARNED_SUMMARY_TASKS:
                        continue
                    if (task_name, budget, method, obs) in done:
                        continue
                    seed = _cell_seed(o, obs, budget, method)
                    torch.manual_seed(seed)
                    sim = Simulator(task.get_simulator(), name=task_name)
                    t0 = time.time()
                    info: dict[str, Any] = {}
                    if method == "rej_abc":
                        res = rejection_abc(
                            Simulator(sim, budget=budget, name=task_name), prior, x_obs,
                            distance, budget, num_accept=100,
                        )  # fmt: skip
                        samples = res.sample(n_c, kde=True, prior=prior)
                        info = {"epsilon": res.epsilon, "particles": len(res.weights)}
                        real, shared_n = sim.calls, 0
                    elif method == "smc_abc":
                        res = smc_abc(
                            Simulator(sim, budget=budget, name=task_name), prior, x_obs,
                            distance, budget,
                        )  # fmt: skip
                        samples = res.sample(n_c, kde=True, prior=prior)
                        info = {"epsilon": res.epsilon, "ess": res.ess, "rounds": len(res.history)}
                        real, shared_n = sim.calls, 0
                    elif method == "smc_abc_sbibm":
                        res = smc_abc(
                            Simulator(sim, budget=budget, name=task_name), prior, x_obs,
                            Euclidean(), budget, population_size=100 if budget <= 10_000 else 1000,
                            **SBIBM_SMC,
                        )  # fmt: skip
                        samples = res.sample(n_c, kde=True, prior=prior)
                        info = {"epsilon": res.epsilon, "ess": res.ess, "rounds": len(res.history)}
                        real, shared_n = sim.calls, 0
                    elif method.startswith("surrogate_"):
                        kind = "flow" if method.startswith("surrogate_flow") else "cvae"
                        cfg = surrogate_config(kind, budget, o)
                        key = f"surrogate_{kind}"
                        if key not in shared:  # round 1: prior draws, same for every obs
                            seeded = _seed_shared(o, budget, key)
                            tf = time.time()
                            first_sim = Simulator(sim, budget=budget, name=task_name)
                            shared[key] = SurrogateABC(first_sim, prior, distance, cfg).first_round(
                                budget
                            )
                            timings[f"{task_name}/{budget}/{key}/first_round"] = round(
                                time.time() - tf, 1
                            )
                            sim.reset()
                            if seeded != seed:
                                torch.manual_seed(seed)
                        first = shared[key]
                        dist = distance
                        if method == "surrogate_flow_ls":
                            if "summary" not in shared:  # on round 1's pairs: no new simulation
                                seeded = _seed_shared(o, budget, method)
                                tf = time.time()
                                shared["summary"] = fit_summary(
                                    first.theta, first.x,
                                    point_dim=2 if task_name == "slcp" else None, seed=o.seed,
                                )  # fmt: skip
                                timings[f"{task_name}/{budget}/summary"] = round(
                                    time.time() - tf, 1
                                )
                                if seeded != seed:
                                    torch.manual_seed(seed)
                            dist = SummaryDistance(shared["summary"])
                        n1 = first.theta.shape[0]
                        counted = Simulator(sim, budget=budget - n1, name=task_name)
                        sabc = SurrogateABC(counted, prior, dist, cfg)
                        sres = sabc.run(x_obs, budget, first=first)
                        samples = sres.result.sample(n_c, kde=True, prior=prior)
                        real, shared_n = sres.real_simulations, sres.real_simulations_shared
                        assert real == sim.calls + shared_n
                        info = {
                            **(
                                {"summary": shared["summary"].info}
                                if method == "surrogate_flow_ls"
                                else {}
                            ),
                            "epsilon": sres.result.epsilon,
                            "ess": sres.result.ess,
                            "surrogate_simulations": sres.surrogate_simulations,
                            "rounds": [
                                {
                                    k: r[k]
                                    for k in ("real_simulations", "steps", "val_loss", "epsilon")
                                }
                                for r in sres.rounds
                            ],
                        }
                    else:  # npe, amortised: trained once per task and budget
                        if "npe" not in shared:
                            seeded = _seed_shared(o, budget, "npe")
                            tf = time.time()
                            counted = Simulator(sim, budget=budget, name=task_name)
                            theta = prior.sample((budget,))
                            x = counted(theta)
                            shared["npe"] = _npe_posterior(prior, theta, x, budget, o.quick)
                            timings[f"{task_name}/{budget}/npe/train"] = round(time.time() - tf, 1)
                            sim.reset()
                            if seeded != seed:
                                torch.manual_seed(seed)
                        posterior, epochs = shared["npe"]
                        samples = posterior.sample((n_c,), x=x_obs, show_progress_bars=False)
                        real, shared_n = budget, budget
                        info = {"epochs": epochs}
                    t_method = time.time() - t0
                    cell_samples[f"{task_name}__{budget}__{method}__obs{obs}"] = (
                        samples.reshape(n_c, -1).float().numpy()
                    )
                    t1 = time.time()
                    accs = [
                        c2st(samples.reshape(n_c, -1), ref, seed=1 + k, backend=backend)
                        for k in range(o.c2st_seeds or 1)
                    ]
                    acc = float(np.mean(accs))
                    if (
                        task_name in (o.exact_c2st_tasks or [])
                        and obs == 1
                        and budget == max(o.budgets or [0])
                    ):
                        info["c2st_exact"] = c2st(samples.reshape(n_c, -1), ref, exact=True)
                    row = {
                        "task": task_name,
                        "budget": budget,
                        "method": method,
                        "observation": obs,
                        "c2st": acc,  # mean over the classifier seeds
                        "c2st_seeds": accs,
                        "real_simulations": int(real),
                        "real_simulations_shared": int(shared_n),
                        "seconds": round(t_method, 2),
                        "c2st_seconds": round(time.time() - t1, 2),
                        "distance": dist_name,
                        "c2st_backend": backend,
                        "task_source": source,
                        **info,
                    }
                    rows.append(row)
                    log(
                        f"{task_name} budget={budget} obs={obs} {method}: C2ST {acc:.3f} "
                        f"(seeds {min(accs):.3f}–{max(accs):.3f}) "
                        f"({real} real sims, {t_method:.1f}s + C2ST {row['c2st_seconds']}s)"
                    )
                    _write_json(json_path, o, rows, skipped, timings, time.time() - t_start)
            np.savez_compressed(samples_path, **cell_samples)  # per (task, budget)
    np.savez_compressed(samples_path, **cell_samples)
    summary = summarize(rows)
    total = time.time() - t_start
    _write_json(json_path, o, rows, skipped, timings, total)
    md = render_markdown(o, summary, skipped, total, rows)
    (out / f"{stem}.md").write_text(md)
    plot(summary, o, out / f"{stem}.png")
    log(f"wrote {out / (stem + '.md')}, {json_path}, {out / (stem + '.png')}")
    return {"rows": rows, "summary": summary, "skipped": skipped, "seconds": total}


def _cell_seed(o: BenchOptions, obs: int, budget: int, method: str) -> int:
    return o.seed * 100_003 + obs * 1009 + budget + METHODS.index(method)


def _seed_shared(o: BenchOptions, budget: int, method: str) -> int:
    """Seed what is computed once per task and budget (round 1 of a surrogate, NPE, the learned
    summary) with the seed of observation 1's cell of ``method``, where an uninterrupted run
    computes it, so that a resumed run starting at a later observation recomputes the same
    thing. Returns that seed; when it is not the current cell's seed, the caller reseeds with
    the cell's seed afterwards, so the rest of the cell draws what an uninterrupted run would."""
    seed = _cell_seed(o, 1, budget, method)
    torch.manual_seed(seed)
    return seed


RESUME_KEYS = ("quick", "c2st_samples", "c2st_seeds", "surrogate_simulations", "rounds", "seed")


def _resume_rows(
    json_path: Path, o: BenchOptions
) -> tuple[list[dict[str, Any]], dict[str, float], float]:
    """The rows, shared timings and seconds of an earlier run written to ``json_path``; refuses
    one whose settings differ (a cell is only skipped when it was measured the same way)."""
    doc = json.loads(json_path.read_text())
    old, new = doc["options"], asdict(o)
    diff = [k for k in RESUME_KEYS if old.get(k) != new.get(k)]
    backend = c2st_backend(o.c2st_backend)
    if any(r.get("c2st_backend", "sklearn") != backend for r in doc["rows"]):
        diff.append("c2st_backend")
    if diff:
        raise ConfigError(f"cannot resume {json_path}: settings differ ({', '.join(diff)})")
    return doc["rows"], doc.get("shared_timings", {}), float(doc.get("seconds", 0.0))


def merge(
    json_paths: list[str],
    out: str = "bench/results",
    stem: str = "abc_bench",
    not_run: list[str] | None = None,
    commands: list[str] | None = None,
) -> None:
    """Write ``stem.{json,md,png}`` from the rows of several runs' JSON files (same settings,
    any split of tasks, budgets, methods and observations between them; a cell measured twice
    keeps the later file's row). A (task, budget, method) cell is reported only with all the
    requested observations; the others are listed as unfinished. ``not_run``: lines for the
    results file saying what was left out and why; ``commands``: the commands that produced the
    runs, quoted in the results file. The wall time is the sum of the runs'."""
    docs = [json.loads(Path(p).read_text()) for p in json_paths]
    for d in docs[1:]:
        diff = [k for k in RESUME_KEYS if d["options"].get(k) != docs[0]["options"].get(k)]
        if diff:
            raise ConfigError(f"merge: runs with different settings ({', '.join(diff)})")
    n_obs = docs[0]["options"]["observations"]
    cells: dict[tuple[str, int, str, int], dict[str, Any]] = {}
    for d in docs:
        for r in d["rows"]:
            cells[(r["task"], r["budget"], r["method"], r["observation"])] = r
    groups: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for r in cells.values():
        groups.setdefault((r["task"], r["budget"], r["method"]), []).append(r)
    rows, partial = [], []
    for (t, b, m), rs in groups.items():
        if len({r["observation"] for r in rs}) >= n_obs:
            rows += sorted(rs, key=lambda r: r["observation"])
        else:
            partial.append(f"{t} {b:,} {LABELS[m]} ({len(rs)} of {n_obs} observations)")
    o = BenchOptions(**{k: v for k, v in docs[0]["options"].items() if k in _FIELDS})
    o.tasks = [t for t in TASKS if any(r["task"] == t for r in rows)]
    o.budgets = sorted({r["budget"] for r in rows})
    o.methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    skipped = {k: v for d in docs for k, v in d["skipped"].items()}
    timings = {k: v for d in docs for k, v in d["shared_timings"].items()}
    seconds = sum(d["seconds"] for d in docs)
    dest = Path(out)
    dest.mkdir(parents=True, exist_ok=True)
    _write_json(dest / f"{stem}.json", o, rows, skipped, timings, seconds)
    summary = summarize(rows)
    md = render_markdown(o, summary, skipped, seconds, rows, not_run=not_run)
    note = (
        f"Merged from {len(docs)} run{'s' if len(docs) > 1 else ''} (processes side by side "
        "and resumed chunks) with `abc_bench.merge`; the time above is their sum."
        + (
            " Stopped before finishing, for the time limit, and therefore not reported: "
            + "; ".join(sorted(partial))
            + "."
            if partial
            else ""
        )
    )
    md = md.replace("\n\nC2ST accuracy", f"\n\n{note}\n\nC2ST accuracy", 1)
    if commands:
        md += "\n## Reproduce\n\n```sh\n" + "\n".join(commands) + "\n```\n"
    (dest / f"{stem}.md").write_text(md)
    plot(summary, o, dest / f"{stem}.png")


def _write_json(
    path: Path,
    o: BenchOptions,
    rows: list[dict[str, Any]],
    skipped: dict[str, str],
    timings: dict[str, float],
    seconds: float,
) -> None:
    versions = {}
    for mod in ("torch", "sbibm", "sbi", "zuko", "pyro", "sklearn"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - absent optional package
            versions[mod] = None
    doc = {
        "options": asdict(o),
        "versions": versions,
        "machine": platform.platform(),
        "seconds": round(seconds, 1),
        "skipped": skipped,
        "shared_timings": timings,
        "rows": rows,
        "summary": summarize(rows),
    }
    path.write_text(json.dumps(doc, indent=1, default=float))


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (task, budget, method): mean, standard deviation, min and max over observations of
    the seed-averaged C2ST, and the classifier-seed noise (mean over observations of the
    standard deviation across classifier seeds)."""
    groups: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["task"], r["budget"], r["method"]), []).append(r)
    out = []
    for (task, budget, method), rs in groups.items():
        v = np.array([r["c2st"] for r in rs])
        seed_sd = [
            float(np.std(r["c2st_seeds"], ddof=1)) for r in rs if len(r.get("c2st_seeds", [])) > 1
        ]
        seed_range = [
            float(np.ptp(r["c2st_seeds"])) for r in rs if len(r.get("c2st_seeds", [])) > 1
        ]
        out.append(
            {
                "task": task,
                "budget": budget,
                "method": method,
                "n_obs": len(rs),
                "n_seeds": len(rs[0].get("c2st_seeds", [0])),
                "mean": float(v.mean()),
                "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                "min": float(v.min()),
                "max": float(v.max()),
                "seed_sd": float(np.mean(seed_sd)) if seed_sd else 0.0,
                "seed_range_max": float(np.max(seed_range)) if seed_range else 0.0,
                "real_simulations": sorted({r["real_simulations"] for r in rs}),
                "seconds_mean": float(np.mean([r["seconds"] for r in rs])),
            }
        )
    return out


def compare(a: dict[str, Any], b: dict[str, Any]) -> str:
    """ "wins" / "loses" (lower C2ST is better) only when the mean ± sd intervals over
    observations are apart; "ties" otherwise; "—" with fewer than 2 observations."""
    if min(a["n_obs"], b["n_obs"]) < 2:
        return "—"
    if a["mean"] + a["std"] < b["mean"] - b["std"]:
        return "wins"
    if a["mean"] - a["std"] > b["mean"] + b["std"]:
        return "loses"
    return "ties"


def paired_difference(
    rows: list[dict[str, Any]], task: str, budget: int, m1: str, m2: str
) -> tuple[float, float, int, int] | None:
    """Mean and standard deviation over observations of C2ST(m1) − C2ST(m2) (same observation),
    on how many observations m1 is lower, and the number of observations."""
    by = {
        (r["method"], r["observation"]): r["c2st"]
        for r in rows
        if r["task"] == task and r["budget"] == budget
    }
    obs = sorted({o for (m, o) in by if m == m1} & {o for (m, o) in by if m == m2})
    if len(obs) < 2:
        return None
    d = np.array([by[(m1, o)] - by[(m2, o)] for o in obs])
    return float(d.mean()), float(d.std(ddof=1)), int((d < 0).sum()), len(obs)


COMPARISONS = (
    ("smc_abc", "rej_abc"),
    ("smc_abc_sbibm", "rej_abc"),
    ("surrogate_flow", "smc_abc"),
    ("surrogate_flow", "smc_abc_sbibm"),
    ("surrogate_flow_ls", "surrogate_flow"),
    ("surrogate_flow_ls", "smc_abc_sbibm"),
    ("surrogate_cvae", "smc_abc"),
    ("smc_abc", "smc_abc_sbibm"),
    ("surrogate_flow", "npe"),
    ("surrogate_flow_ls", "npe"),
    ("npe", "smc_abc_sbibm"),
)


def render_markdown(
    o: BenchOptions,
    summary: list[dict[str, Any]],
    skipped: dict[str, str],
    seconds: float,
    rows: list[dict[str, Any]] | None = None,
    not_run: list[str] | None = None,
) -> str:
    rows = rows or []
    backends = sorted({r.get("c2st_backend", "sklearn") for r in rows}) or [
        c2st_backend(o.c2st_backend)
    ]
    sources = {r["task"]: r.get("task_source", "sbibm 1.1.0") for r in rows}
    by = {(s["task"], s["budget"], s["method"]): s for s in summary}
    ns = o.c2st_seeds
    lines = [
        "# ABC with deep generative surrogates: C2ST against sbibm reference posteriors",
        "",
        f"`satcodec research abc-bench{' --quick' if o.quick else ''}` — {time.strftime('%Y-%m-%d')}, "
        f"{seconds / 60:.1f} min on a shared 2-core CPU machine (1 torch thread, nice 19).",
        "",
        "C2ST accuracy (0.5 = indistinguishable from the reference posterior, 1.0 = fully "
        f"separable; lower is better). Each observation's C2ST is the mean over {ns} classifier "
        f"seeds (seeds 1..{ns}: the MLP's initialisation and the 5-fold split); the table gives "
        "mean ± standard deviation [min–max] over the observations of each task (sbibm's "
        f"observations 1..n, n in the `n obs` column; {o.observations} requested), "
        "and the classifier-seed noise: the standard deviation across seeds (mean over "
        "observations) and the largest seed-to-seed range seen in one cell. `sbibm 10^4` is "
        "sbibm's published mean over its 10 observations at 10^4 simulations (Lueckmann et al. "
        "2021), for context only (10,000 C2ST samples per side and its own implementations).",
        "",
    ]
    for budget in o.budgets or []:
        lines += [
            f"## {budget:,} real simulations",
            "",
            "| task | method | C2ST mean ± sd | [min–max] | n obs | classifier-seed sd (max range) "
            "| real sims / posterior | s / obs | sbibm 10^4 |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for task in o.tasks or []:
            for method in METHODS:
                s = by.get((task, budget, method))
                if s is None:
                    continue
                pub = PUBLISHED_1E4.get(task, {}).get(
                    "smc_abc" if method == "smc_abc_sbibm" else method
                )
                if method == "smc_abc" or budget != 10_000:
                    pub = None  # sbibm's SMC-ABC is the row with sbibm's settings
                lines.append(
                    f"| {task} | {LABELS[method]} | {s['mean']:.3f} ± {s['std']:.3f} | "
                    f"[{s['min']:.3f}–{s['max']:.3f}] | {s['n_obs']} | "
                    f"{s['seed_sd']:.3f} ({s['seed_range_max']:.3f}) | "
                    f"{'/'.join(str(v) for v in s['real_simulations'])} | "
                    f"{s['seconds_mean']:.1f} | {pub if pub is not None else ''} |"
                )
        lines.append("")
    lines += [
        "## Verdicts",
        "",
        "A method wins (or loses) against another only where the mean ± sd intervals over "
        "observations are apart; otherwise it is a tie. The paired difference (same "
        "observation, mean ± sd over observations) is given beside it: it removes the "
        "observation-to-observation spread that both methods share, so it is the sharper view "
        "(with the number of observations on which the first method is lower), but the verdict "
        "column uses the interval rule above.",
        "",
        "| budget | task | method | against | C2ST | verdict | paired difference |",
        "|---|---|---|---|---|---|---|",
    ]
    for budget in o.budgets or []:
        for task in o.tasks or []:
            for m1, m2 in COMPARISONS:
                a, b = by.get((task, budget, m1)), by.get((task, budget, m2))
                if not (a and b):
                    continue
                pd = paired_difference(rows, task, budget, m1, m2)
                pds = f"{pd[0]:+.3f} ± {pd[1]:.3f} (lower on {pd[2]} of {pd[3]})" if pd else ""
                lines.append(
                    f"| {budget:,} | {task} | {LABELS[m1]} | {LABELS[m2]} | "
                    f"{a['mean']:.3f} vs {b['mean']:.3f} | **{compare(a, b)}** | {pds} |"
                )
    lines.append("")
    exact = [r for r in rows if r.get("c2st_exact") is not None]
    if exact:
        lines += [
            "## The same samples under sbibm's own C2ST (minibatch adam)",
            "",
            "| task | budget | method | C2ST (L-BFGS, seed 1) | C2ST (sbibm's adam) |",
            "|---|---|---|---|---|",
        ]
        for r in exact:
            lines.append(
                f"| {r['task']} | {r['budget']:,} | {LABELS[r['method']]} | "
                f"{r['c2st_seeds'][0]:.3f} | {r['c2st_exact']:.3f} |"
            )
        lines.append("")
    lines += [
        "## Protocol and reductions",
        "",
        f"- Tasks {', '.join(o.tasks or [])}; budgets {', '.join(f'{b:,}' for b in o.budgets or [])} "
        f"real simulations; observations 1..{o.observations} of sbibm's 10 requested (a "
        "(task, budget, method) cell is reported only when every requested observation "
        "finished: `n obs`).",
        *[f"- Task {t}: {src}." for t, src in sources.items()],
        *[f"- Not run: {line}" for line in not_run or []],
        f"- C2ST on {o.c2st_samples} method samples against as many reference samples drawn at "
        "random from the task's 10,000 (sbibm: 10,000 each); sbibm's classifier (MLP 2 × 10·dim "
        "ReLU, inputs z-scored with the reference's moments, 5-fold accuracy) trained with "
        "full-batch L-BFGS (≤ 500 iterations) instead of minibatch adam (≤ 10,000 epochs), "
        f"implemented by {' and '.join(backends)} "
        "(scikit-learn's MLPClassifier; `torch`: the same model, initialisation scheme, loss "
        "and L-BFGS written in torch, used where scikit-learn is absent, e.g. CI). "
        f"Averaged over {ns} classifier seeds per cell. An earlier run checked L-BFGS against "
        "sbibm's adam on five two_moons cells (agreement ±0.03).",
        "- ABC particles → samples: weighted Gaussian KDE (kernel h²·Σ_w, h by leave-one-out "
        "likelihood; sbibm cross-validates h), redrawn inside the prior's support.",
        "- Distances of our ABC methods: Euclidean on the raw data; slcp: sliced-Wasserstein (50 "
        "fixed directions) between its 4 i.i.d. 2-D points.",
        "- REJ-ABC: the 100 closest of the budget (as sbibm).",
        "- SMC-ABC (ours): population 100, first round 5×100 prior draws, ε_t = the **0.5** "
        "quantile (median) of the previous distances, Gaussian kernel **2×** the weighted "
        "covariance (Beaumont et al. 2009), resampling below ESS N/2; our distances.",
        "- SMC-ABC, sbibm settings: the same code with sbibm's SMC-ABC defaults "
        "(`sbibm.algorithms.sbi.smcabc`): ε_t = the **0.2** quantile, kernel **0.5×** the "
        "weighted covariance, no ESS resampling, population 100, first round 5×100, and the "
        "**L2 distance on the raw data on every task** (slcp included). It is not sbibm's code "
        "(sbibm 1.1.0 pins sbi < 0.22, which does not install beside the sbi used here).",
        f"- Surrogate ABC: {o.rounds} round(s) of real simulations"
        + (
            " (the whole budget from the prior: one surrogate per task serves every observation)"
            if o.rounds == 1
            else f" ({100 // o.rounds}% each; round 1 from the prior, shared by the "
            "observations; later rounds per observation: θ from a KDE of the previous "
            "surrogate-ABC posterior (90%) and the prior (10%), the surrogate warm-started on "
            "all pairs so far)"
        )
        + f"; ABC-SMC (population 1000) on {surrogate_draws('flow', o):,} flow draws per "
        "posterior (half that for the intermediate round). Flow: zuko NSF, 3 coupling "
        "transforms, 64×2 hidden; trained with the shared trainer (adam, lr 1e-3, cosine), 60 "
        "epochs clipped to [500, 1200] steps (half for the warm-started round), 10% held out.",
        "- Learned summary (slcp): a DeepSets network (per-point MLP 64×2, mean pooling, MLP "
        "head) regressed on standardised (θ, θ²) from round 1's real pairs (no extra "
        "simulation; semi-automatic ABC, Fearnhead & Prangle 2012, with the quadratic features "
        "that slcp's sign-symmetric θ₃, θ₄ need), Adam 2,000 steps, best of 10% held out; the "
        "surrogate ABC then uses the Euclidean distance between summaries. Same round-1 "
        "surrogate as Surrogate ABC (flow); the summary is not retrained in round 2.",
        "- NPE: sbi's NPE (MAF) on the whole budget from the prior, trained once per task and "
        "budget (amortised), epochs capped (300 at 10^3, 100 at 10^4, 60 with --quick).",
        "- Real simulations per posterior count shared simulations in full.",
    ]
    for m, why in skipped.items():
        lines.append(f"- Skipped {LABELS.get(m, m)}: {why}")
    return "\n".join(lines) + "\n"


def plot(summary: list[dict[str, Any]], o: BenchOptions, path: Path) -> None:
    """Per task: each method's mean C2ST with ± sd (thick) and min–max (thin) over observations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = o.tasks or []
    budgets = o.budgets or []
    by = {(s["task"], s["budget"], s["method"]): s for s in summary}
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.6 * len(tasks), 5.0), squeeze=False)
    colors = dict(
        zip(
            METHODS,
            ["#999999", "#1f77b4", "#17becf", "#d62728", "#9467bd", "#ff7f0e", "#2ca02c"],
            strict=True,
        )
    )
    for ax, task in zip(axes[0], tasks, strict=True):
        present = [m for m in METHODS if any((task, b, m) in by for b in budgets)]
        for i, method in enumerate(present):
            for j, b in enumerate(budgets):
                s = by.get((task, b, method))
                if s is None:
                    continue
                x = i + (j - (len(budgets) - 1) / 2) * 0.25
                ax.vlines(x, s["min"], s["max"], color=colors[method], lw=1)
                ax.errorbar([x], [s["mean"]], yerr=[[s["std"]], [s["std"]]], marker="o" if j else "s",
                            capsize=4, lw=3, color=colors[method])  # fmt: skip
            pub = PUBLISHED_1E4.get(task, {}).get(
                "smc_abc" if method == "smc_abc_sbibm" else method
            )
            if pub is not None and method != "smc_abc" and 10_000 in budgets:
                ax.plot([i + 0.3], [pub], marker="*", ms=11, color=colors[method], ls="")
        ax.set_xticks(range(len(present)), [LABELS[m] for m in present], rotation=30, ha="right",
                      fontsize=8)  # fmt: skip
        ax.set_xlim(-0.6, len(present) - 0.4)
        ax.set_ylim(0.48, 1.02)
        ax.axhline(0.5, color="k", lw=0.6, ls=":")
        ax.set_title(f"{task}, {' / '.join(f'{b:,}' for b in budgets)} real simulations")
        ax.set_ylabel("C2ST accuracy (fraction correct;\n0.5 = indistinguishable)")
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(
        "C2ST against sbibm's reference posterior: mean ± sd (thick) and min–max (thin) over "
        "observations\n(n per task in the results table), each observation the mean of "
        f"{o.c2st_seeds} classifier seeds; ★ sbibm's published mean at 10^4; "
        + "; ".join(f"{'■' if j == 0 else '●'} {b:,}" for j, b in enumerate(budgets)),
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
