"""INNA against SGD, SGD with momentum, Adam and Adagrad, under equal budgets, on the project's
training tasks: ``satcodec research inna-bench [--quick]``.

Protocol (after Castera et al., JMLR 2021, Section 5):

- every optimizer trains the same model from the same initialisation, with the same batches,
  batch size and number of steps (seeds 0, 1, 2, ...), through the shared :class:`Trainer`;
- INNA (α, β) = (0.5, 0.1), the paper's default, ψ₀ as in the paper (row "INNA"), and "INNA
  tuned": (α, β) chosen on the training loss from the paper's grid {(0.1, 0.1), (0.5, 0.1),
  (0.5, 0.5), (0.5, 1.0)} taken at the loss scales 1 and 10⁴ (a loss ×s is (α/√s, β√s) with
  step γ√s, see :mod:`satcodec.research.inna`), each pair screened at three steps below the
  default's γ₀ × 0.5/α (the stable step scales as 1/α), then γ₀ searched for the best pair like every other
  optimizer's (see :func:`tune_inna`); INNA and plain SGD share
  the decay γ_k = γ₀/√(k+1) with k the epoch; SGD with momentum (0.9), Adam and Adagrad keep
  their step constant (the adaptive methods' usual setting);
- each optimizer's γ₀ is chosen by grid search (half-decade steps) on the *training* loss
  at the end of a tuning run (the full budget, or ``TaskSetup.tune_epochs`` epochs for every
  optimizer of a task), with a seed (``GRID_SEED``) that is not among the reported seeds; the
  grid is widened while the best value sits at its edge, then refined to quarter decades
  around the best value. Test data is never used to choose anything;
- the reported runs are the chosen γ₀ with seeds 0..n−1: curves of the training loss (log
  scale) and the test metric against epochs, mean with a min–max band, and a table.

The codec task trains the full 12 epochs of 50 steps for every run (:data:`CODEC_EPOCHS`; about
50 core-minutes with the tuned INNA's screening; 4 epochs gives the reduced task of an earlier
round). Every finished run is kept in
``<out>/inna_bench_<task>_runs.json`` (and in the work folder): an interrupted benchmark, or
several processes sharing a task's runs, resume from it without retraining.

INNA "wins" (or "loses") against another optimizer on a metric only when the min–max ranges
over seeds do not overlap; otherwise it is a tie.

Tasks live in a registry (:data:`TASKS`, :func:`register_task`); a task whose model does not
exist yet can be registered as pending (``build=None``).
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from satcodec.benchmarks.harness import half_decades, n_seeds, sat_data_or_sample
from satcodec.research.inna import (  # importing INNA registers "inna" with the trainer
    TOY_START,
    toy_objective,
    toy_trajectory,
)
from satcodec.train import TrainConfig, Trainer, epoch_batches

GRID_SEED = 1000
DIVERGED = float("inf")


# --- optimizers -------------------------------------------------------------------------------
@dataclass(frozen=True)
class OptimizerSpec:
    """One contender: a registry name, fixed kwargs and a schedule; γ₀ comes from the grid."""

    label: str
    name: str
    kwargs: dict[str, Any]
    decay: bool  # γ₀/√(epoch+1) (INNA and plain SGD) or constant
    grid_key: str = ""  # which of the task's γ₀ grids to start from (default: label)

    @property
    def slug(self) -> str:
        return "".join(c if c.isalnum() else "_" for c in self.label.lower())


def default_optimizers() -> list[OptimizerSpec]:
    return [
        OptimizerSpec("INNA", "inna", {"alpha": 0.5, "beta": 0.1, "psi_init": "paper"}, True),
        OptimizerSpec("SGD", "sgd", {}, True),
        OptimizerSpec("SGD+momentum", "sgd", {"momentum": 0.9}, False),
        OptimizerSpec("Adam", "adam", {}, False),
        OptimizerSpec("Adagrad", "adagrad", {}, False),
    ]


# the paper's recommended (α, β) grid, taken at loss scales 1 and 10⁴: (α/√s, β√s)
PAPER_GRID = ((0.1, 0.1), (0.5, 0.1), (0.5, 0.5), (0.5, 1.0))
LOSS_SCALES = (1.0, 1e4)


def tuning_pairs() -> list[tuple[float, float, float]]:
    """(α, β, loss scale) of the tuned INNA's screening, scale 1 first."""
    return [
        (float(f"{a / math.sqrt(sc):.4g}"), float(f"{b * math.sqrt(sc):.4g}"), sc)
        for sc in LOSS_SCALES
        for a, b in PAPER_GRID
    ]


def inna_spec(alpha: float, beta: float, label: str | None = None) -> OptimizerSpec:
    return OptimizerSpec(
        label or f"INNA α={alpha:g} β={beta:g}",
        "inna",
        {"alpha": alpha, "beta": beta, "psi_init": "paper"},
        True,
        "INNA",
    )


def inna_variants() -> list[OptimizerSpec]:
    """INNA settings outside the comparison: the rest of the paper's (α, β) grid and ψ₀ at
    equilibrium (the official code's choice). Reported apart, never used for the verdicts."""
    out = [
        OptimizerSpec(
            f"INNA α={a} β={b}", "inna", {"alpha": a, "beta": b, "psi_init": "paper"}, True, "INNA"
        )
        for a, b in [(0.1, 0.1), (0.5, 0.5), (0.5, 1.0)]
    ]
    out.append(
        OptimizerSpec(
            "INNA ψ₀ equilibrium",
            "inna",
            {"alpha": 0.5, "beta": 0.1, "psi_init": "equilibrium"},
            True,
            "INNA",
        )
    )
    return out


# --- tasks --------------------------------------------------------------------------------------
@dataclass
class TaskSetup:
    """Everything needed to train one model of a task with any optimizer."""

    make_model: Callable[[int], nn.Module]  # seed -> freshly initialised model
    loss_fn: Callable[[nn.Module, Any], tuple[torch.Tensor, dict[str, float]]]
    make_batch_fn: Callable[[int], Callable[[int, int, int], Any]]  # seed -> batch_fn
    steps_per_epoch: int
    epochs: int
    # model -> {"train_loss": full training objective, test metrics...}; must not train
    evaluate: Callable[[nn.Module], dict[str, float]]
    test_metric: str
    higher_is_better: bool
    grids: dict[str, list[float]]  # label -> initial γ₀ grid
    clip_grad_norm: float | None = None
    info: dict[str, Any] = field(default_factory=dict)
    # epochs of every tuning run (γ₀ grid searches, INNA's (α, β) screening), the same for all
    # optimizers; None: the full budget. The reported seeds always train ``epochs``.
    tune_epochs: int | None = None
    runs_cache: RunCache | None = None  # finished runs, kept in a JSON file (see run_task)

    def tuning(self) -> TaskSetup:
        """The setup the tuning runs train with (shorter when ``tune_epochs`` is set)."""
        return self if self.tune_epochs is None else replace(self, epochs=self.tune_epochs)


class RunCache:
    """Finished runs of one task in one JSON file, ``{run key: result}``, rewritten (atomically)
    after every run, so an interrupted benchmark loses at most the run in progress."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.runs: dict[str, Any] = {}
        if self.path.exists():
            self.runs = json.loads(self.path.read_text()).get("runs", {})

    @staticmethod
    def _k(key: dict[str, Any]) -> str:
        return json.dumps(key, sort_keys=True, default=str)

    def get(self, key: dict[str, Any]) -> dict[str, Any] | None:
        return self.runs.get(self._k(key))

    def put(self, key: dict[str, Any], result: dict[str, Any]) -> None:
        self.runs[self._k(key)] = result
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():  # keep runs another process (same task, split work) added
            self.runs = {**json.loads(self.path.read_text()).get("runs", {}), **self.runs}
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"runs": self.runs}, indent=0, default=float))
        tmp.replace(self.path)


@dataclass
class Task:
    name: str
    title: str
    build: Callable[[BenchOptions], TaskSetup] | None
    pending: str = ""


@dataclass
class BenchOptions:
    quick: bool = False
    data: str | None = None  # codec: folder of GeoTIFF scenes
    seeds: int | None = None  # default: 3 (2 with quick)
    out: str = "bench/results"
    work: str = "runs/inna_bench"
    progress: bool = True
    # extra INNA settings per task (labels of :func:`inna_variants`; "*" = all of them)
    variants: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: {"codec": ("INNA ψ₀ equilibrium",)}
    )
    tune_inna: bool = True  # also tune INNA's (α, β) ("INNA tuned"; off with --quick)
    run_cache: bool = True  # keep finished runs in out/<tag>_<task>_runs.json (resumable)

    @property
    def n_seeds(self) -> int:
        return n_seeds(self.seeds, self.quick, quick_default=2)


TASKS: dict[str, Task] = {}


def register_task(task: Task) -> None:
    TASKS[task.name] = task


# (b) small CNN on scikit-learn's digits -------------------------------------------------------
class DigitsCNN(nn.Module):
    """Two 3x3 convolutions, a max-pool and two linear layers (~43k parameters)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(512, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_digits(opts: BenchOptions) -> TaskSetup:
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError("the digits task needs scikit-learn: pip install scikit-learn") from exc
    d = load_digits()  # 1797 8x8 images, shipped inside scikit-learn (no download)
    x = torch.tensor(d.images / 16.0, dtype=torch.float32)[:, None]
    y = torch.tensor(d.target, dtype=torch.long)
    idx_train, idx_test = train_test_split(
        np.arange(len(y)), test_size=0.25, random_state=0, stratify=d.target
    )
    xtr, ytr = x[idx_train], y[idx_train]
    xte, yte = x[idx_test], y[idx_test]
    batch = 32  # the paper's batch size

    def make_model(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return DigitsCNN()

    def loss_fn(model: nn.Module, idx: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        return nn.functional.cross_entropy(model(xtr[idx]), ytr[idx]), {}

    def evaluate(model: nn.Module) -> dict[str, float]:
        out_tr, out_te = model(xtr), model(xte)
        return {
            "train_loss": float(nn.functional.cross_entropy(out_tr, ytr)),
            "test_loss": float(nn.functional.cross_entropy(out_te, yte)),
            "test_accuracy": float((out_te.argmax(1) == yte).float().mean()),
        }

    spe = epoch_batches(len(ytr), batch).steps_per_epoch  # type: ignore[attr-defined]
    return TaskSetup(
        make_model=make_model,
        loss_fn=loss_fn,
        make_batch_fn=lambda seed: epoch_batches(len(ytr), batch, seed=seed),
        steps_per_epoch=spe,
        epochs=4 if opts.quick else 20,
        evaluate=evaluate,
        test_metric="test_accuracy",
        higher_is_better=True,
        grids={
            "INNA": half_decades(-2, 5),  # 0.01 .. 1
            "SGD": half_decades(-2, 5),
            "SGD+momentum": half_decades(-3, 5),
            "Adam": half_decades(-4, 5),
            "Adagrad": half_decades(-3, 5),
        },
        clip_grad_norm=None,  # the paper's protocol: no clipping
        info={
            "data": "scikit-learn digits (UCI optical digits), 8x8, 1347 train / 450 test, stratified split (random_state=0)",
            "model": "CNN conv16-conv32-maxpool-fc64-fc10, 43k parameters",
            "loss": "cross-entropy",
            "batch": batch,
            "steps_per_epoch": spe,
            "clip_grad_norm": None,
        },
    )


# (a) rate–distortion training of the reduced codec --------------------------------------------
# The full task trains 12 epochs of 50 steps; with every optimizer's γ₀ grid, the tuned INNA's
# (α, β) screening and 3 seeds that is ~100 runs, ~50 core-minutes at 1 thread; the results in
# bench/results are this full task. CODEC_EPOCHS = 4 gives the reduced task of an earlier round;
# CODEC_TUNE_EPOCHS = 4 keeps the reported seeds at CODEC_EPOCHS but tunes every optimizer on
# 4-epoch runs.
CODEC_FULL_EPOCHS = 12
CODEC_EPOCHS = CODEC_FULL_EPOCHS
CODEC_TUNE_EPOCHS: int | None = None


def build_codec(opts: BenchOptions) -> TaskSetup:
    from satcodec.codec.data import PatchSampler, load_scene_bands, scene_paths
    from satcodec.codec.models import ModelConfig, ReducedVAE
    from satcodec.codec.training import DEFAULT_EXCLUDE, DEFAULT_VAL, DISTORTION_PEAK, rd_loss

    data = Path(opts.data) if opts.data else sat_data_or_sample()
    paths = scene_paths(data, exclude=DEFAULT_EXCLUDE)
    train_paths = [p for p in paths if p.name not in DEFAULT_VAL]
    test_paths = [p for p in paths if p.name in DEFAULT_VAL]
    if not train_paths:
        raise RuntimeError(f"no training scenes in {data}")
    patch, batch, lmbda = 64, 8, 1e-3
    config = ModelConfig(hidden=32, latent=64)
    train_bands = [s for p in train_paths for s in load_scene_bands(p)]
    sampler = PatchSampler(train_bands, patch=patch)
    # test crops: held-out scenes when there are any (split by scene), else (shipped sample
    # only) crops of the training scenes drawn with another seed, and said so in the info
    test_bands = [s for p in test_paths for s in load_scene_bands(p)] or train_bands
    test_split = (
        "held-out scenes " + ", ".join(p.name for p in test_paths)
        if test_paths
        else ("no held-out scene in the folder: other crops of the training scenes")
    )
    test_sampler = PatchSampler(test_bands, patch=128, augment=False)
    fixed_train = torch.from_numpy(
        np.concatenate([sampler.batch(k, 8, seed=777) for k in range(4)])
    )
    fixed_test = torch.from_numpy(test_sampler.batch(0, 16, seed=4242))
    loss = rd_loss(lmbda)

    def make_model(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return ReducedVAE(config)

    def make_batch_fn(seed: int):
        def batch_fn(step: int, rank: int, world: int) -> torch.Tensor:
            return torch.from_numpy(sampler.batch(step, batch, seed=seed, rank=rank, world=world))

        return batch_fn

    def rd(model: nn.Module, x: torch.Tensor) -> tuple[float, float, float]:
        out = model(x)
        bpp = float(out["bits"].sum()) / (x.numel())
        mse = float(torch.mean((out["x_hat"] - x) ** 2))
        return bpp + lmbda * DISTORTION_PEAK**2 * mse, bpp, -10 * math.log10(max(mse, 1e-12))

    def evaluate(model: nn.Module) -> dict[str, float]:
        was_training = model.training
        # the training objective (uniform noise) on 32 fixed training crops, fixed noise
        model.train()
        with torch.random.fork_rng():
            torch.manual_seed(12345)
            train_loss = float(loss(model, fixed_train)[0])
        # the real codec path on held-out crops: rounded latents
        model.eval()
        test_loss, bpp, psnr = rd(model, fixed_test)
        model.train(was_training)
        return {
            "train_loss": train_loss,
            "test_rd_loss": test_loss,
            "test_bpp": bpp,
            "test_psnr": psnr,
        }

    spe = 25 if opts.quick else 50
    epochs = 3 if opts.quick else CODEC_EPOCHS
    tune_epochs = None if opts.quick else CODEC_TUNE_EPOCHS
    reduced = not opts.quick and epochs < CODEC_FULL_EPOCHS
    return TaskSetup(
        make_model=make_model,
        loss_fn=loss,
        make_batch_fn=make_batch_fn,
        steps_per_epoch=spe,  # a nominal epoch: crops are drawn afresh every step
        epochs=epochs,
        tune_epochs=tune_epochs,
        evaluate=evaluate,
        test_metric="test_rd_loss",
        higher_is_better=False,
        grids={
            "INNA": half_decades(-2.5, 5),  # 0.003 .. 0.3
            "SGD": half_decades(-2.5, 5),
            "SGD+momentum": half_decades(-3.5, 5),
            "Adam": half_decades(-4, 5),
            "Adagrad": half_decades(-3, 5),
        },
        clip_grad_norm=1.0,  # the codec's own training recipe (shared TrainConfig default)
        info={
            "data": str(data),
            "train_scenes": len(train_paths),
            "test": test_split + "; 16 crops of 128x128, rounded latents",
            "model": f"ReducedVAE(hidden={config.hidden}, latent={config.latent}, sgdn)",
            "loss": f"bpp + λ·4095²·MSE, λ = {lmbda} (train: uniform noise; test: rounding)",
            "train_loss_eval": "training objective on 32 fixed training crops with fixed noise",
            "batch": batch,
            "patch": patch,
            "steps_per_epoch": spe,
            "clip_grad_norm": 1.0,
            **(
                {
                    "reduced": f"**yes**: every run (tuning and reported seeds, every optimizer "
                    f"alike) trains {epochs} epochs = {epochs * spe} steps instead of the "
                    f"{CODEC_FULL_EPOCHS * spe} of the full task, to fit the compute; numbers "
                    "are not comparable with full-length codec results"
                }
                if reduced
                else {}
            ),
            **(
                {
                    "tuning": f"tuning runs (γ₀ grids, INNA's (α, β) screening) train "
                    f"{tune_epochs} epochs = {tune_epochs * spe} steps, every optimizer alike"
                }
                if tune_epochs is not None
                else {}
            ),
        },
    )


register_task(Task("codec", "(a) rate–distortion training of the reduced codec", build_codec))
register_task(Task("digits", "(b) small CNN classifier on scikit-learn digits", build_digits))


def build_music(opts: BenchOptions) -> TaskSetup:
    """(c) ``inna-bench --tasks music``: a small NCACF (linear ψ, deep φ, relaxed; K = 32,
    φ 1399→64→32) on the seed-0 warm split of the Last.fm data (filtered as in the recommender
    benchmark), the paper's weighted loss; test metric: NDCG@50 on the warm test pairs. Sized
    so that the grid search × 5 optimizers × 3 seeds fits in about 15 min on one core.
    """
    # lazily: the recommender's data and models load only when the task runs
    from satcodec.benchmarks.recsys_bench import settings
    from satcodec.research.recsys.data import (
        default_data_dir,
        load_lastfm,
        make_split,
        preprocess,
    )
    from satcodec.research.recsys.models import NCACF, NCACFConfig, describe, ncacf_loss
    from satcodec.research.recsys.train import evaluate_split, model_scores

    s = settings(False)
    raw = load_lastfm(default_data_dir())  # opts.data is the codec task's scene folder
    inter = preprocess(raw, s["min_item_users"], s["min_user_items"])
    split = make_split(inter, "warm", seed=0)
    content = torch.as_tensor(split.content)
    counts = torch.from_numpy(split.train.toarray().astype(np.float32))
    items = torch.as_tensor(split.train_items, dtype=torch.long)
    config = NCACFConfig(n_factors=32, psi="linear", phi="deep", phi_hidden=(64,))
    batch = 256
    quick = bool(getattr(opts, "quick", False))

    def make_model(seed: int) -> torch.nn.Module:
        torch.manual_seed(seed)
        return NCACF(split.n_users, split.n_items, content.shape[1], config)

    def loss_fn(model: torch.nn.Module, idx: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        it = items[idx]
        return ncacf_loss(model, it, counts[:, it], content[it])  # type: ignore[arg-type]

    def evaluate(model: torch.nn.Module) -> dict[str, float]:
        with torch.no_grad():
            train_loss = float(ncacf_loss(model, items, counts[:, items], content[items])[0])  # type: ignore[arg-type]
            test = evaluate_split(model_scores(model, content), split, "test", 50)  # type: ignore[arg-type]
        return {"train_loss": train_loss, "test_ndcg50": test["ndcg"]}

    spe = epoch_batches(len(items), batch).steps_per_epoch  # type: ignore[attr-defined]
    return TaskSetup(
        make_model=make_model,
        loss_fn=loss_fn,
        make_batch_fn=lambda seed: epoch_batches(len(items), batch, seed=seed),
        steps_per_epoch=spe,
        epochs=3 if quick else 10,
        evaluate=evaluate,
        test_metric="test_ndcg50",
        higher_is_better=True,
        # the loss is a mean over users × items, so plain SGD needs very large steps on the
        # embeddings (probe: SGD 100 barely moves, 1000 diverges; INNA diverges at 10)
        grids={
            "INNA": half_decades(-2, 5),  # 0.01 .. 1
            "SGD": half_decades(1, 5),  # 10 .. 1000
            "SGD+momentum": half_decades(0, 5),  # 1 .. 100
            "Adam": half_decades(-3, 5),  # 0.001 .. 0.1
            "Adagrad": half_decades(-2, 5),  # 0.01 .. 1
        },
        clip_grad_norm=1.0,  # the NCACF recipe
        info={
            "data": f"Last.fm HetRec 2011 ({raw.folder}), warm split seed 0: "
            f"{split.n_users} users, {split.n_items} artists, {split.train.nnz} training pairs, "
            f"{split.test.nnz} test pairs",
            "model": f"NCACF linear ψ + deep φ (relaxed), {describe(make_model(0))}",  # type: ignore[arg-type]
            "loss": "mean c(r − p)² + 0.1 mean(w²) + 0.1 mean((h − φ(x))²), c = 1 + 2 log(1 + r/1e-6)",
            "train_loss_eval": "the full training objective over all users × all training artists",
            "test": "NDCG@50 on the warm test pairs, training artists excluded from the ranking",
            "batch": f"all users × {batch} artists",
            "steps_per_epoch": spe,
            "clip_grad_norm": 1.0,
        },
    )


register_task(Task("music", "(c) content-aware music recommender (NCACF)", build_music))


# --- running --------------------------------------------------------------------------------
def run_key(setup: TaskSetup, spec: OptimizerSpec, lr: float, seed: int) -> dict[str, Any]:
    """Everything a run's result depends on (for reusing finished runs)."""
    return json.loads(
        json.dumps(
            {
                "optimizer": [spec.label, spec.name, spec.kwargs, spec.decay],
                "lr": lr,
                "seed": seed,
                "epochs": setup.epochs,
                "steps_per_epoch": setup.steps_per_epoch,
                "clip_grad_norm": setup.clip_grad_norm,
                "task": setup.info,
            },
            sort_keys=True,
            default=str,
        )
    )


def train_run(
    setup: TaskSetup,
    spec: OptimizerSpec,
    lr: float,
    seed: int,
    work: Path,
    reuse: bool = True,
) -> dict[str, Any]:
    """One training run through the shared trainer; curves are evaluated once per epoch.

    The result is stored in ``work/run.json``; with ``reuse`` a finished run with the same
    :func:`run_key` is read back instead of trained again (an interrupted benchmark resumes).
    """
    key = run_key(setup, spec, lr, seed)
    done = work / "run.json"
    if reuse and setup.runs_cache is not None:
        cached = setup.runs_cache.get(key)
        if cached is not None:
            return cached
    if reuse and done.exists():
        stored = json.loads(done.read_text())
        if stored.get("key") == key:
            if setup.runs_cache is not None:
                setup.runs_cache.put(key, stored["result"])
            return stored["result"]
    model = setup.make_model(seed)
    steps = setup.steps_per_epoch * setup.epochs
    cfg = TrainConfig(
        steps=steps,
        optimizer=spec.name,
        lr=lr,
        optimizer_kwargs=dict(spec.kwargs),
        schedule="inverse_power" if spec.decay else "constant",
        schedule_kwargs=(
            {"power": 0.5, "steps_per_epoch": setup.steps_per_epoch} if spec.decay else {}
        ),
        clip_grad_norm=setup.clip_grad_norm,
        seed=seed,
        log_every=setup.steps_per_epoch,
        val_every=setup.steps_per_epoch,
        ckpt_every=0,
        out_dir=str(work),
        progress=False,
    )
    with torch.no_grad():
        model.eval()
        first = setup.evaluate(model)
        model.train()
    trainer = Trainer(model, setup.loss_fn, setup.make_batch_fn(seed), cfg, val_fn=setup.evaluate)
    t0 = time.time()
    diverged = False
    try:
        trainer.fit()
    except FloatingPointError:
        diverged = True
    wall = time.time() - t0
    curves: dict[str, list[float]] = {k: [v] for k, v in first.items()}
    for rec in trainer.history:
        if any(k.startswith("val/") for k in rec):
            for k in first:
                curves[k].append(float(rec.get(f"val/{k}", math.nan)))
    n = setup.epochs + 1
    for k, v in curves.items():  # a diverged run stops early: pad with +inf / nan
        v.extend([DIVERGED if k == "train_loss" else math.nan] * (n - len(v)))
        curves[k] = [
            x if math.isfinite(x) else (DIVERGED if k == "train_loss" else math.nan) for x in v
        ]
    final_train = curves["train_loss"][-1]
    diverged = diverged or not math.isfinite(final_train)
    result = {
        "optimizer": spec.label,
        "lr": lr,
        "seed": seed,
        "diverged": diverged,
        "wall_s": round(wall, 2),
        "curves": curves,
        "steps": steps,
    }
    work.mkdir(parents=True, exist_ok=True)
    done.write_text(json.dumps({"key": key, "result": result}, default=float))
    if setup.runs_cache is not None:
        setup.runs_cache.put(key, result)
    return result


def grid_search(
    setup: TaskSetup,
    spec: OptimizerSpec,
    work: Path,
    log: Callable[[str], None],
    max_extend: int = 2,
    refine: bool = True,
) -> dict[str, Any]:
    """γ₀ minimising the final training loss (seed GRID_SEED) of runs of ``setup`` (pass the
    tuning setup, :meth:`TaskSetup.tuning`).

    Half-decade grid, widened while the best value sits at an edge (at most ``max_extend``
    times), then (``refine``) the two quarter-decade neighbours of the best value.
    """
    grid = sorted(setup.grids[spec.grid_key or spec.label])
    results: dict[float, float] = {}

    walls: list[float] = []

    def run(lr: float) -> None:
        r = train_run(setup, spec, lr, GRID_SEED, work / f"grid_{spec.slug}_{lr:g}")
        results[lr] = r["curves"]["train_loss"][-1]
        walls.append(r["wall_s"])
        log(f"    grid {spec.label:13s} lr={lr:<8g} final train loss {results[lr]:.5g}")

    for lr in grid:
        run(lr)
    for _ in range(max_extend):
        best = min(results, key=lambda k: results[k])
        lrs = sorted(results)
        half = round(2 * math.log10(best)) / 2  # stay on the half-decade lattice
        if best == lrs[0]:
            run(float(f"{10 ** (half - 0.5):.3g}"))
        elif best == lrs[-1]:
            run(float(f"{10 ** (half + 0.5):.3g}"))
        else:
            break
    best = min(results, key=lambda k: results[k])
    lrs = sorted(results)
    if refine and best not in (lrs[0], lrs[-1]):
        for q in (-0.25, 0.25):
            run(float(f"{10 ** (math.log10(best) + q):.3g}"))
        best = min(results, key=lambda k: results[k])
    return {
        "grid": {f"{k:g}": v for k, v in sorted(results.items())},
        "best_lr": best,
        "at_edge": best in (lrs[0], lrs[-1]),
        "grid_wall_s": round(sum(walls), 1),
    }


def run_task(task: Task, opts: BenchOptions, log: Callable[[str], None] = print) -> dict[str, Any]:
    assert task.build is not None
    setup = task.build(opts)
    tag = "inna_bench_quick" if opts.quick else "inna_bench"
    if opts.run_cache:
        setup.runs_cache = RunCache(Path(opts.out) / f"{tag}_{task.name}_runs.json")
    work = Path(opts.work) / (task.name + ("_quick" if opts.quick else ""))
    out: dict[str, Any] = {
        "task": task.name,
        "title": task.title,
        "info": setup.info,
        "epochs": setup.epochs,
        "steps": setup.epochs * setup.steps_per_epoch,
        "tune_steps": setup.tuning().epochs * setup.steps_per_epoch,
        "test_metric": setup.test_metric,
        "higher_is_better": setup.higher_is_better,
        "optimizers": {},
        "variants": {},
    }
    t0 = time.time()
    groups = [("optimizers", default_optimizers())]
    wanted = () if opts.quick else opts.variants.get(task.name, ())
    chosen = [v for v in inna_variants() if "*" in wanted or v.label in wanted]
    if chosen:
        groups.append(("variants", chosen))
    for group, specs in groups:
        for spec in specs:
            out[group][spec.label] = _tune_and_run(setup, spec, opts, work, log, task.name)
        if group == "optimizers" and opts.tune_inna and not opts.quick:
            out[group][TUNED] = tune_inna(
                setup, out[group]["INNA"]["best_lr"], opts, work, log, task.name
            )
    out["wall_s"] = round(time.time() - t0, 1)
    # training time of every run, as measured when it ran (cached runs keep their time)
    out["train_time_s"] = round(
        sum(
            o["grid_wall_s"] + o.get("screen_wall_s", 0.0) + sum(r["wall_s"] for r in o["runs"])
            for g in ("optimizers", "variants")
            for o in out[g].values()
        ),
        1,
    )
    main = list(default_optimizers())  # a copy: the tuned row is appended
    if TUNED in out["optimizers"]:
        t = out["optimizers"][TUNED]
        main.append(OptimizerSpec(TUNED, "inna", t["kwargs"], True))
    out["step_cost"] = step_cost(
        setup, main, {s.label: out["optimizers"][s.label]["best_lr"] for s in main}
    )
    out["finished"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return out


def step_cost(
    setup: TaskSetup,
    specs: list[OptimizerSpec],
    lrs: dict[str, float],
    steps: int = 10,
    rounds: int = 3,
) -> dict[str, dict[str, float]]:
    """Milliseconds per training step and per ``optimizer.step()`` of each optimizer, measured
    back to back on this machine (best of ``rounds`` interleaved rounds of ``steps`` steps),
    so the comparison does not depend on the load during the (cached) benchmark runs."""
    from satcodec.train import build_optimizer

    state = {}
    for spec in specs:
        model = setup.make_model(0)
        opt = build_optimizer(spec.name, model.parameters(), lrs[spec.label], **spec.kwargs)
        state[spec.label] = (model, opt, setup.make_batch_fn(0))
    best: dict[str, dict[str, float]] = {
        k: {"step_ms": math.inf, "optimizer_step_ms": math.inf} for k in state
    }
    for r in range(rounds + 1):  # round 0 warms up
        for label, (model, opt, batch_fn) in state.items():
            t_opt = 0.0
            t0 = time.perf_counter()
            for k in range(steps):
                loss, _ = setup.loss_fn(model, batch_fn(k, 0, 1))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                t1 = time.perf_counter()
                opt.step()
                t_opt += time.perf_counter() - t1
            total = time.perf_counter() - t0
            if r:
                b = best[label]
                b["step_ms"] = min(b["step_ms"], 1e3 * total / steps)
                b["optimizer_step_ms"] = min(b["optimizer_step_ms"], 1e3 * t_opt / steps)
    return {k: {kk: round(vv, 3) for kk, vv in v.items()} for k, v in best.items()}


TUNED = "INNA tuned"
SCREEN_EXPONENTS = (0.0, -0.5, -1.0)  # γ₀ = γ_c·10^q for each screened (α, β)
SCREEN_EXTEND = 3  # then down by half decades while the smallest step is the best


def tune_inna(
    setup: TaskSetup,
    default_lr: float,
    opts: BenchOptions,
    work: Path,
    log: Callable[[str], None],
    name: str,
) -> dict[str, Any]:
    """ "INNA tuned": (α, β) and γ₀ chosen on the final training loss (seed GRID_SEED).

    1. Screening: each pair of :func:`tuning_pairs` (the paper's four at loss scales 1 and
       10⁴) trains at γ₀ = γ_c·10^q, q ∈ SCREEN_EXPONENTS, with γ_c = (the paper-default
       INNA's chosen γ₀) × 0.5/α: the friction bound 2/α moves the largest stable step as 1/α,
       but the curvature bounds (see :mod:`satcodec.research.inna`) can put it decades lower,
       so the screening goes on down by half decades while its smallest step is its best
       (or every step diverged)
       (at most SCREEN_EXTEND more; 8 pairs × 3–6 runs).
    2. γ₀ of the best (pair, γ₀): the same search as every other optimizer's
       (:func:`grid_search`), started from the half-decade neighbours of its screening γ₀
       (the screening runs are reused), widened at the edges and refined to quarter decades.
    3. Seeds 0..n−1 at the chosen (α, β, γ₀).
    """
    log(f"  [{name}] {TUNED}: (α, β) screening on the training loss")
    tsetup = setup.tuning()
    screen: dict[str, dict[str, Any]] = {}
    walls = []
    candidates = []
    for a, b, sc in tuning_pairs():
        spec = inna_spec(a, b)
        gamma_c = default_lr * 0.5 / a
        losses: dict[str, float] = {}
        by_q: dict[float, float] = {}
        todo = list(SCREEN_EXPONENTS)
        extended = 0
        while todo:
            q = todo.pop(0)
            lr = float(f"{gamma_c * 10**q:.3g}")
            r = train_run(tsetup, spec, lr, GRID_SEED, work / f"grid_{spec.slug}_{lr:g}")
            loss = r["curves"]["train_loss"][-1]
            losses[f"{lr:g}"] = loss
            by_q[q] = loss if math.isfinite(loss) else math.inf
            walls.append(r["wall_s"])
            candidates.append((by_q[q], a, b, sc, gamma_c, q))
            log(f"    screen α={a:<6g} β={b:<6g} (scale {sc:g}) lr={lr:<8g} train loss {loss:.5g}")
            # the curvature bound can sit decades below γ_c: go on down while the smallest
            # step is the best one, ties included (every step so far diverged), at most
            # SCREEN_EXTEND more half decades
            if not todo and extended < SCREEN_EXTEND:
                q_min = min(by_q)
                if by_q[q_min] <= min(by_q.values()):
                    todo.append(q_min - 0.5)
                    extended += 1
        screen[f"α={a:g} β={b:g}"] = {
            "alpha": a,
            "beta": b,
            "loss_scale": sc,
            "gamma_c": float(f"{gamma_c:.3g}"),
            "train_loss": losses,
        }
    _, a, b, sc, gamma_c, q = min(candidates, key=lambda c: c[0])
    spec = inna_spec(a, b)
    sub = replace(
        tsetup,
        grids={
            **setup.grids,
            "INNA": sorted({float(f"{gamma_c * 10 ** (q + d):.3g}") for d in (-0.5, 0, 0.5)}),
        },
    )
    log(f"  [{name}] {TUNED}: γ₀ search for α={a:g} β={b:g}")
    gs = grid_search(sub, spec, work, log)
    runs = _seed_runs(setup, spec, gs["best_lr"], opts, work, log)
    screened = {k for v in screen.values() for k in v["train_loss"]}
    own = screen[f"α={a:g} β={b:g}"]["train_loss"]
    return {
        "registry_name": "inna",
        "kwargs": spec.kwargs,
        "schedule": "γ₀/√(epoch+1)",
        "alpha": a,
        "beta": b,
        "loss_scale": sc,
        "screen": screen,
        "screen_wall_s": round(sum(walls), 1),
        **gs,
        # screening runs + the γ₀ search's runs that the screening had not already made
        "tuning_runs": sum(len(v["train_loss"]) for v in screen.values())
        + len([k for k in gs["grid"] if k not in own]),
        "screened_lrs": len(screened),
        "runs": runs,
    }


def _seed_runs(setup, spec, lr, opts, work, log) -> list[dict[str, Any]]:
    """The final runs at the chosen step size, one per seed."""
    runs = []
    for seed in range(opts.n_seeds):
        r = train_run(setup, spec, lr, seed, work / f"final_{spec.slug}_s{seed}")
        log(
            f"    seed {seed}: train loss {r['curves']['train_loss'][-1]:.5g}, "
            f"{setup.test_metric} {r['curves'][setup.test_metric][-1]:.5g} ({r['wall_s']:.1f} s)"
        )
        runs.append(r)
    return runs


def _tune_and_run(setup, spec, opts, work, log, name) -> dict[str, Any]:
    log(f"  [{name}] {spec.label}: grid search on the training loss")
    gs = grid_search(setup.tuning(), spec, work, log)
    runs = _seed_runs(setup, spec, gs["best_lr"], opts, work, log)
    return {
        "registry_name": spec.name,
        "kwargs": spec.kwargs,
        "schedule": "γ₀/√(epoch+1)" if spec.decay else "constant",
        **gs,
        "runs": runs,
    }


# --- reporting ------------------------------------------------------------------------------
def _final(runs: list[dict[str, Any]], key: str) -> np.ndarray:
    return np.array([r["curves"][key][-1] for r in runs], dtype=np.float64)


def verdicts(result: dict[str, Any], who: str = "INNA") -> list[dict[str, str]]:
    """``who`` (INNA, or "INNA tuned") against each non-INNA optimizer on the final training
    loss and the test metric."""
    opt = result["optimizers"]
    inna = opt[who]["runs"]
    rows = []
    for label, o in opt.items():
        if label.startswith("INNA"):
            continue
        row = {"against": label}
        for key, higher in (
            ("train_loss", False),
            (result["test_metric"], result["higher_is_better"]),
        ):
            a, b = _final(inna, key), _final(o["runs"], key)
            a = np.where(np.isfinite(a), a, np.inf if not higher else -np.inf)
            b = np.where(np.isfinite(b), b, np.inf if not higher else -np.inf)
            if higher:
                a, b = -a, -b
            if a.max() < b.min():
                row[key] = "wins"
            elif a.min() > b.max():
                row[key] = "loses"
            else:
                row[key] = "ties"
        rows.append(row)
    return rows


def _fmt(v: np.ndarray, pct: bool = False) -> str:
    if not np.all(np.isfinite(v)):
        return (
            "diverged"
            if not np.any(np.isfinite(v))
            else f"{np.nanmean(np.where(np.isfinite(v), v, np.nan)):.4g} (some diverged)"
        )
    sd = v.std(ddof=1) if len(v) > 1 else 0.0  # sample standard deviation over seeds
    if pct:
        return f"{100 * v.mean():.2f}% ± {100 * sd:.2f} [{100 * v.min():.2f}, {100 * v.max():.2f}]"
    return f"{v.mean():.4g} ± {sd:.2g} [{v.min():.4g}, {v.max():.4g}]"


def table(result: dict[str, Any], group: str = "optimizers") -> str:
    metric = result["test_metric"]
    pct = metric.endswith("accuracy")
    extra = [
        k
        for k in ("test_loss", "test_bpp", "test_psnr")
        if k != metric and k in next(iter(result["optimizers"].values()))["runs"][0]["curves"]
    ]
    head = [
        "optimizer",
        "schedule",
        "γ₀ (grid)",
        "final train loss",
        f"final {metric}",
        *[f"final {k}" for k in extra],
        "ms/step (optimizer.step)",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, o in result[group].items():
        runs = o["runs"]
        grid = ", ".join(f"{k}: {v:.3g}" for k, v in o["grid"].items())
        lr = f"**{o['best_lr']:g}**" + (" (edge!)" if o["at_edge"] else "")
        name = f"{label} (α={o['alpha']:g}, β={o['beta']:g})" if label == TUNED else label
        cells = [
            name,
            o["schedule"],
            f"{lr} <br><sub>{grid}</sub>",
            _fmt(_final(runs, "train_loss")),
            _fmt(_final(runs, metric), pct),
            *[_fmt(_final(runs, k)) for k in extra],
            (
                f"{result['step_cost'][label]['step_ms']:.1f} "
                f"({result['step_cost'][label]['optimizer_step_ms']:.2f})"
                if label in result.get("step_cost", {})
                else "—"
            ),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# axis labels with units, per task: (training loss, test metric, epoch)
AXIS_LABELS = {
    "codec": (
        "training objective bpp + λ·4095²·MSE\n(bits/pixel)",
        "test RD loss bpp + λ·4095²·MSE\n(bits/pixel)",
        "epoch (50 steps of 8 crops 64×64)",
    ),
    "digits": (
        "training cross-entropy\n(nats/image)",
        "test accuracy (fraction of 450 images)",
        "epoch (42 steps of 32 images)",
    ),
    "music": (
        "training objective, weighted squared error\n(dimensionless)",
        "test NDCG@50 (dimensionless, 0–1)",
        "epoch (10 steps of all users × 256 artists)",
    ),
}


def plot(result: dict[str, Any], path: Path, group: str = "optimizers") -> None:
    """Curves and grid of ``group`` ("optimizers", or "variants" next to the default INNA)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = result["test_metric"]
    shown = result[group]
    if group != "optimizers":
        shown = {"INNA": result["optimizers"]["INNA"], **shown}
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    colors = dict(zip(shown, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False))
    for label, o in shown.items():
        c = colors[label]
        for ax, key in ((axes[0], "train_loss"), (axes[1], metric)):
            ys = np.array([r["curves"][key] for r in o["runs"]], dtype=np.float64)
            ys[~np.isfinite(ys)] = np.nan
            ep = np.arange(ys.shape[1])
            tag = f"α={o['alpha']:g}, β={o['beta']:g}, " if label == TUNED else ""
            ax.plot(
                ep,
                np.nanmean(ys, 0),
                color=c,
                label=f"{label} ({tag}γ₀={o['best_lr']:g})",
                lw=2 if label.startswith("INNA") else 1.3,
            )
            ax.fill_between(ep, np.nanmin(ys, 0), np.nanmax(ys, 0), color=c, alpha=0.18, lw=0)
        g = {float(k): v for k, v in o["grid"].items()}
        xs = sorted(g)
        cap = 2.0 * o["runs"][0]["curves"]["train_loss"][0]  # worse than this: drawn at the cap
        ys = [min(g[x], cap) if math.isfinite(g[x]) else cap for x in xs]
        axes[2].plot(xs, ys, "o-", color=c, label=label)
        bad = [x for x in xs if not (math.isfinite(g[x]) and g[x] < cap)]
        axes[2].plot(bad, [cap] * len(bad), "x", color="k", ms=8)
        axes[2].plot([o["best_lr"]], [g[o["best_lr"]]], "*", color=c, ms=14)
    axes[0].set_yscale("log")
    axes[0].set_title("training loss (log), mean and min–max over seeds", fontsize=10)
    axes[1].set_title(f"{metric}, mean and min–max over seeds", fontsize=10)
    # a run that blows up (and maybe recovers) would flatten everything else: clip the view at
    # 3x the starting value; the table and the JSON keep the true values
    first = next(iter(shown.values()))["runs"][0]["curves"]
    axes[0].set_ylim(top=3 * first["train_loss"][0])
    if not result["higher_is_better"]:
        axes[1].set_yscale("log")
        axes[1].set_ylim(top=3 * first[metric][0])
    loss_label, metric_label, epoch_label = AXIS_LABELS.get(
        result.get("task", ""), ("training loss", metric, "epoch")
    )
    axes[0].set_ylabel(loss_label.replace(")", "), log scale") if ")" in loss_label else loss_label)
    axes[1].set_ylabel(metric_label)
    for ax in axes[:2]:
        ax.set_xlabel(epoch_label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[2].set_xscale("log")
    axes[2].set_yscale("log")
    axes[2].set_xlabel("γ₀, initial step size (dimensionless), log scale")
    tune_steps = result.get("tune_steps", result["steps"])
    axes[2].set_ylabel(
        f"training loss after {tune_steps} steps, seed {GRID_SEED}\n(units as left), log scale"
    )
    axes[2].set_title(
        f"grid ({tune_steps}-step runs, seed {GRID_SEED}): ★ chosen, × diverged/capped",
        fontsize=10,
    )
    axes[2].grid(alpha=0.3)
    axes[2].legend(fontsize=8)
    fig.suptitle(
        f"{result['title']}: {result['steps']} steps, {len(next(iter(result['optimizers'].values()))['runs'])} seeds"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_toy(path: Path, lr: float = 1e-3, steps: int = 20_000) -> dict[str, Any]:
    """The paper's Figure 1 experiment, both ψ₀ initialisations; returns summary numbers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = [(0.5, 0.01), (0.5, 0.1), (1.3, 0.1)]
    inits = ["equilibrium", "paper"]
    x0, x1, y0, y1 = -2.2, 1.6, -0.4, 2.3
    g1, g2 = np.meshgrid(np.linspace(x0, x1, 400), np.linspace(y0, y1, 300))
    zz = toy_objective(torch.tensor(np.stack([g1, g2], -1))).numpy()
    fig, axes = plt.subplots(3, 3, figsize=(15, 13), gridspec_kw={"height_ratios": [1, 1, 0.8]})
    summary: dict[str, Any] = {}
    t = np.arange(steps + 1) * lr
    for row, init in enumerate(inits):
        for col, (a, b) in enumerate(settings):
            tr = toy_trajectory(a, b, lr=lr, steps=steps, psi_init=init).numpy()
            ax = axes[row, col]
            ax.contour(g1, g2, np.log10(zz + 1e-3), levels=25, cmap="Greys", linewidths=0.6)
            ax.plot(tr[:, 0], tr[:, 1], lw=0.8, color="C3")
            ax.plot(*TOY_START, "ko")
            ax.plot(1, 1, "g*", ms=12)
            ax.set_xlim(x0, x1)
            ax.set_ylim(y0, y1)
            ax.set_xlabel("θ₁ (dimensionless)")
            ax.set_ylabel("θ₂ (dimensionless)")
            j = toy_objective(torch.tensor(tr)).numpy()
            transverse = np.abs(tr[:, 1] - np.abs(tr[:, 0]))
            s = {
                "final": tr[-1].round(4).tolist(),
                "final_J": float(j[-1]),
                "theta1_max": float(tr[:, 0].max()),
                "theta1_min": float(tr[:, 0].min()),
                "transverse_amp_t0.5_1": float(transverse[int(0.5 / lr) : int(1 / lr)].max()),
                "first_t_J_below_1e-2": float(t[np.argmax(j < 1e-2)]) if (j < 1e-2).any() else None,
            }
            summary[f"{init} α={a} β={b}"] = s
            ax.set_title(
                f"ψ₀ {init}, α={a}, β={b}\nθ₁ max {s['theta1_max']:.3g}, J(end) {s['final_J']:.1e}",
                fontsize=10,
            )
            if tr[:, 0].max() > x1:
                ax.annotate(
                    f"leaves the frame: θ₁ reaches {tr[:, 0].max():.0f}",
                    (0.02, 0.04),
                    xycoords="axes fraction",
                    fontsize=9,
                    color="C3",
                )
            axes[2, row].semilogy(t, j + 1e-12, label=f"α={a}, β={b}")
    for row, init in enumerate(inits):
        axes[2, row].set_title(f"J(θ(t)), ψ₀ {init}")
        axes[2, row].set_xlabel("t = k·γ, time of the continuous dynamics (dimensionless)")
        axes[2, row].set_ylabel("J(θ(t)) (dimensionless), log scale")
        axes[2, row].legend(fontsize=8)
        axes[2, row].grid(alpha=0.3)
    axes[2, 2].axis("off")
    axes[2, 2].text(
        0,
        0.5,
        "J(θ₁,θ₂) = 100(θ₂ − |θ₁|)² + |1 − θ₁|, start (−1, 1.5)\n"
        f"INNA, constant γ = {lr:g}, {steps} steps\n"
        "row 1: ψ₀ = (1 − αβ)θ₀ (zero initial velocity)\n"
        "row 2: ψ₀ = (1 − αβ)θ₀ − (β² − β)∇J(θ₀) (velocity −∇J)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return summary


def run_benchmark(
    tasks: list[str] | None = None,
    opts: BenchOptions | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the benchmark; write ``inna_bench[_quick].{md,json}`` and plots into ``opts.out``."""
    opts = opts or BenchOptions()
    torch.set_num_threads(1)
    names = tasks or list(TASKS)
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = "inna_bench_quick" if opts.quick else "inna_bench"
    t0 = time.time()
    log("toy problem (paper's Figure 1)")
    toy = plot_toy(out / f"{tag}_toy.png", steps=8_000 if opts.quick else 20_000)
    results: dict[str, Any] = {}
    pending: dict[str, str] = {}
    for name in names:
        task = TASKS[name]
        if task.build is None:
            pending[name] = f"{task.title}: pending — {task.pending}"
            log(f"task {name}: {pending[name]}")
            continue
        log(f"task {name}: {task.title}")
        results[name] = run_task(task, opts, log)
        plot(results[name], out / f"{tag}_{name}.png")
        if results[name]["variants"]:
            plot(results[name], out / f"{tag}_{name}_variants.png", "variants")
    summary = {
        "command": "satcodec research inna-bench"
        + (" --quick" if opts.quick else "")
        + (f" --tasks {','.join(tasks)}" if tasks else ""),
        "quick": opts.quick,
        "seeds": opts.n_seeds,
        "grid_seed": GRID_SEED,
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} thread",
        "wall_s": round(time.time() - t0, 1),
        "toy": toy,
        "pending": pending,
        "tasks": results,
        "verdicts": {k: verdicts(v) for k, v in results.items()},
        "verdicts_tuned": {
            k: verdicts(v, TUNED) for k, v in results.items() if TUNED in v["optimizers"]
        },
    }
    prev_path = out / f"{tag}.json"
    if tasks and prev_path.exists():
        # a subset run updates those tasks and keeps the other tasks' earlier results
        prev = json.loads(prev_path.read_text())
        for name, res in prev.get("tasks", {}).items():
            if name not in results and name in TASKS:
                summary["tasks"][name] = res
                summary["verdicts"][name] = verdicts(res)
                if TUNED in res["optimizers"]:
                    summary["verdicts_tuned"][name] = verdicts(res, TUNED)
                summary["merged_from_earlier_run"] = [
                    *summary.get("merged_from_earlier_run", []),
                    name,
                ]
        summary["tasks"] = {k: summary["tasks"][k] for k in TASKS if k in summary["tasks"]}
        for name in summary.get("merged_from_earlier_run", []):  # redraw with today's labels
            res = summary["tasks"][name]
            res.setdefault("task", name)
            plot(res, out / f"{tag}_{name}.png")
            if res.get("variants"):
                plot(res, out / f"{tag}_{name}_variants.png", "variants")
    prev_path.write_text(json.dumps(summary, indent=1, default=float))
    (out / f"{tag}.md").write_text(report(summary, tag))
    log(f"wrote {out / (tag + '.md')} ({summary['wall_s']:.0f} s)")
    return summary


def report(summary: dict[str, Any], tag: str) -> str:
    lines = [
        f"# INNA benchmark{' (quick smoke run)' if summary['quick'] else ''}",
        "",
        f"Reproduce: `{summary['command']}` (torch {summary['torch']}, {summary['machine']}, "
        f"this invocation {summary['wall_s'] / 60:.1f} min; finished runs found in the work "
        "folder, default `runs/inna_bench`, are reused, so give a fresh `--work` to retrain "
        f"everything). Raw curves and grids: `{tag}.json`.",
        "",
        *(
            [
                "Results of "
                + ", ".join(summary["merged_from_earlier_run"])
                + " come from an earlier invocation with the same settings (see each task's "
                "finish time); `satcodec research inna-bench` alone reruns everything.",
                "",
            ]
            if summary.get("merged_from_earlier_run")
            else []
        ),
        "Protocol: same model initialisation, batches and step budget for every optimizer "
        f"(seeds 0–{summary['seeds'] - 1}); γ₀ of each optimizer chosen by grid search (half "
        "decades, widened at the edges, then quarter decades around the best) on the final "
        f"*training* loss of a tuning run with seed {summary['grid_seed']}, "
        "never on test data; a tuning run trains the full budget unless its task's `budget` "
        "line says shorter (the same length for every optimizer of that task). Row `INNA`: the "
        "paper's default (α, β) = (0.5, 0.1), ψ₀ as in the paper. Row `INNA tuned`: (α, β) "
        "chosen on the same training loss from the paper's recommended grid {(0.1, 0.1), (0.5, 0.1), (0.5, 0.5), (0.5, 1.0)} taken at loss scales 1 "
        "and 10⁴ (a loss ×s is the pair (α/√s, β√s) with step γ√s, so the second four are "
        "{(0.001, 10), (0.005, 10), (0.005, 50), (0.005, 100)}): each pair trained at three steps "
        "γ₀ = γ_c·{1, 0.316, 0.1}, γ_c = the default row's γ₀ × 0.5/α (the friction bound 2/α; "
        "the curvature bounds can be far lower, so the screening goes on down by half decades, "
        "at most three more, while its smallest step is its best or all of them diverged), then "
        "γ₀ searched for the best pair exactly as for the other optimizers, starting from the "
        "half decades around its best screening γ₀. INNA tuned has three hyperparameters and gets about as many runs per "
        "hyperparameter as the others get for their one (γ₀): about three times their total; "
        "the counts are under each table. "
        "INNA and SGD use γ₀/√(epoch+1); SGD+momentum (0.9), Adam and Adagrad a constant step. "
        "A win or loss means the min–max ranges over seeds do not overlap; anything else is a tie.",
        "",
    ]
    for name, res in summary["tasks"].items():
        lines += [f"## {res['title']}", "", f"![{name}]({tag}_{name}.png)", ""]
        lines += [f"- {k}: {v}" for k, v in res["info"].items()]
        tune_steps = res.get("tune_steps", res["steps"])
        lines += [
            f"- budget: {res['epochs']} epochs = {res['steps']} steps per reported run; "
            + (
                f"**tuning runs {tune_steps} steps** (reduced, every optimizer alike)"
                if tune_steps != res["steps"]
                else "tuning runs the same"
            ),
            f"- training time of all its runs (grids and seeds, as measured when each ran): "
            f"{res.get('train_time_s', math.nan) / 60:.0f} min",
            "",
        ]
        lines += [
            table(res),
            "",
            "Final values: mean ± sample sd [min, max] over seeds. ms/step: one training step "
            "(forward, backward, update) and, in brackets, `optimizer.step()` alone, measured back to back "
            "on this machine in the invocation that wrote this file.",
            "",
        ]
        tuned = res["optimizers"].get(TUNED)
        if tuned:
            lines += [
                f"{TUNED}: (α, β) screening at γ₀ = γ_c·{{1, 0.316, 0.1, …}}, γ_c = "
                f"{res['optimizers']['INNA']['best_lr']:g} × 0.5/α (seed {summary['grid_seed']}, "
                f"final training loss after {tune_steps} steps); then the γ₀ search for the chosen "
                f"pair (its row's grid): {tuned['tuning_runs']} tuning runs in all, against "
                + ", ".join(
                    f"{k} {len(v['grid'])}"
                    for k, v in res["optimizers"].items()
                    if not k.startswith("INNA")
                )
                + f" and the paper-default INNA {len(res['optimizers']['INNA']['grid'])}:",
                "",
                "| α | β | loss scale it stands for | γ_c | final train loss at each screened γ₀ |",
                "|---|---|---|---|---|",
            ]
            for v in tuned["screen"].values():
                chosen = (v["alpha"], v["beta"]) == (tuned["alpha"], tuned["beta"])
                cells = ", ".join(f"{k}: {x:.4g}" for k, x in v["train_loss"].items())
                lines.append(
                    f"| {v['alpha']:g} | {v['beta']:g} | ×{v['loss_scale']:g} | {v['gamma_c']:g} | "
                    f"{cells}{' **(chosen)**' if chosen else ''} |"
                )
            lines.append("")
        else:
            lines += [
                f"{TUNED}: not run on this task (its results come from an earlier invocation "
                "that predates the tuned row; see the note at the top).",
                "",
            ]
        if res.get("variants"):
            lines += [
                "INNA variants, each with its own γ₀ grid search (not part of the verdicts):",
                "",
                table(res, "variants"),
                "",
                f"![{name} variants]({tag}_{name}_variants.png)",
                "",
            ]
        for who in ("INNA", TUNED):
            if who not in res["optimizers"]:
                continue
            lines += [f"{who} against each optimizer (final values):", ""]
            lines += ["| against | training loss | " + res["test_metric"] + " |", "|---|---|---|"]
            for v in verdicts(res, who):
                lines.append(
                    f"| {v['against']} | {who} {v['train_loss']} | {who} {v[res['test_metric']]} |"
                )
            lines.append("")
    for name, why in summary["pending"].items():
        lines += [f"## {name}", "", why, ""]
    lines += ["## Toy problem (the paper's Figure 1)", "", f"![toy]({tag}_toy.png)", ""]
    lines += [
        "| run | θ₁ max | transverse amplitude, t ∈ [0.5, 1] | first t with J < 1e-2 | J at the end |",
        "|---|---|---|---|---|",
    ]
    for k, s in summary["toy"].items():
        lines.append(
            f"| {k} | {s['theta1_max']:.3g} | {s['transverse_amp_t0.5_1']:.3g} | "
            f"{s['first_t_J_below_1e-2']} | {s['final_J']:.2g} |"
        )
    lines.append("")
    return "\n".join(lines)
