"""NCACF, warm and cold start, against popularity, random, content-only, ``implicit`` ALS and
LightFM, every method tuned with the same budget on validation:
``satcodec research recsys-bench [--quick] [--data DIR] [--datasets lastfm,lastfm-dense,movielens-100k]``.

Protocol (see :mod:`satcodec.research.recsys.data` for the splits and the leakage-free content,
:mod:`satcodec.research.recsys.metrics` for the metric conventions):

- data sets: the HetRec 2011 Last.fm tags (``lastfm``), the derived ``lastfm-dense`` (other
  listeners, dense content from disjoint taggers) and MovieLens 100k (``movielens-100k``, read
  from the installed RecBole package: ratings >= 4 as positives, genres + decade + knowledge
  graph as tags; :mod:`satcodec.research.recsys.datasets`), or one folder of any user's data
  (``--data DIR`` in the generic format);
- seeds 0..n−1 each draw their own warm split and cold split (70/10/20) and initialisation;
- tuning, on seed 0's validation split only (per data set and protocol): every tuned method
  gets a coordinate-wise search over its hyperparameters (3 values per numeric axis to start);
  a numeric optimum on the edge of its grid widens that axis one step further, up to
  ``max_widen`` times (the report says which axes were widened and which optima stay on an
  edge). The deep ψ gets the 0–5 layer sweep for both inputs (w ⊙ h and [w; h]) starting from
  the tuned linear model (the official code pre-trains too). The chosen configurations are then
  trained on every seed; each NCACF run keeps its best validation epoch, LightFM its best
  validation epoch count;
- reported: test NDCG@50 and recall@50, mean ± standard deviation and [min, max] over seeds; a
  method is said to beat another only when the [min, max] ranges over seeds do not overlap.
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from satcodec.benchmarks.harness import load_average, n_seeds
from satcodec.research.recsys import anchors
from satcodec.research.recsys.data import RawData, Split, load_dataset, make_split, preprocess
from satcodec.research.recsys.datasets import (
    DENSE_NAME,
    MOVIELENS_NAME,
    lastfm_disjoint_taggers,
    load_movielens_100k,
)
from satcodec.research.recsys.models import NCACFConfig, describe
from satcodec.research.recsys.train import (
    FitConfig,
    FitResult,
    evaluate_split,
    fit_ncacf,
    model_scores,
)

# Magron & Févotte 2022, NDCG (%) on the Million Song Dataset (Taste Profile + audio features)
PAPER: dict[str, tuple[float | None, float | None]] = {
    "lin_none": (27.9, None),
    "lin_phi": (30.4, 23.8),
    "deep_none": (38.8, None),
    "deep_phi": (40.9, 25.9),
}
ROWS: dict[str, tuple[str, str, str, str | None]] = {
    # key: (label, ψ, φ, initialised from)
    "lin_none": ("NCACF linear ψ, no content", "linear", "none", None),
    "lin_phi": ("NCACF linear ψ + φ", "linear", "deep", None),
    "deep_none": ("NCACF deep ψ, no content", "deep", "none", "lin_none"),
    "deep_phi": ("NCACF deep ψ + φ", "deep", "deep", "lin_phi"),
}
ANCHORS = {
    "als": "implicit ALS (warm only)",
    "lightfm": "LightFM WARP + content features",
    "content": "content-only cosine (untrained)",
    "popularity": "popularity (training listeners)",
    "random": "random ranking (chance level)",
}
DATASETS = ("lastfm", DENSE_NAME, MOVIELENS_NAME)
LASTFM_DATASETS = ("lastfm", DENSE_NAME)  # built from the Last.fm folder (``--data``)
SOURCES = {
    MOVIELENS_NAME: "GroupLens MovieLens 100k (F. M. Harper and J. A. Konstan, ACM TiiS 5(4), "
    "2015; research use under the GroupLens licence terms), redistributed inside the RecBole "
    "1.2.1 wheel (MIT) at recbole/dataset_example/ml-100k in RecBole's atomic-file format; "
    "read from the installed package, never imported and not copied into this repository. "
    "Positives: rating >= 4 of 5 (count 1). Content: genres, release decade and the Freebase "
    "knowledge-graph relations RecBole ships (actors, directors, writers, producers, genres, "
    "language, country, companies, content rating, subjects) as tags of a catalogue user",
}


@dataclass
class RecsysBenchOptions:
    quick: bool = False
    data: str | None = None  # a Last.fm folder (default ../shared/data/music) or a generic one
    datasets: str | None = None  # comma-separated subset of lastfm,lastfm-dense,movielens-100k
    seeds: int | None = None  # default 3 (1 with quick)
    out: str = "bench/results"
    work: str = "runs/recsys_bench"
    progress: bool = True
    k: int = 50
    protocols: tuple[str, ...] = ("warm", "cold")  # a subset, to run parts in parallel
    methods: tuple[str, ...] | None = None  # a subset of ROWS + ANCHORS (None: all)

    @property
    def n_seeds(self) -> int:
        return n_seeds(self.seeds, self.quick, quick_default=1)


def settings(quick: bool) -> dict[str, Any]:
    """Grids and budgets (sized so that the full run fits in about an hour on a shared core)."""
    return {
        "min_item_users": 5,
        "min_user_items": 10,
        "batch_items": 128,
        "optimizer": "adam",
        "epochs_linear": 2 if quick else 20,
        "epochs_deep": 1 if quick else 3,
        "max_widen": 0 if quick else 2,
        # NCACF linear ψ (with and without φ): lr, λ (= λ_W = λ_H), K; φ width and variant
        "grid_linear": {
            "lr": [1e-2] if quick else [3e-3, 1e-2, 3e-2],
            "reg": [0.1] if quick else [0.01, 0.1, 1.0],
            "K": [32] if quick else [32, 64, 128],
        },
        "grid_phi": {
            "phi_width": [64] if quick else [128, 256, 512],
            "variant": ["relaxed"] if quick else ["relaxed", "strict"],
            # hidden layers of φ (0: a linear map of the content; 2: the earlier fixed depth)
            "phi_layers": [2] if quick else [0, 1, 2],
        },
        # deep ψ: the official 0–5 layer sweep for both inputs, from the tuned linear model
        "grid_deep": {
            "psi_input": ["product"] if quick else ["product", "concat"],
            "psi_layers": [0, 1] if quick else [0, 1, 2, 3, 4, 5],
        },
        "lr_deep": 3e-3,
        "grid_als": {
            "regularization": [10.0] if quick else [1.0, 10.0, 100.0],
            "alpha": [5.0] if quick else [1.0, 5.0, 20.0],
            "factors": [32] if quick else [32, 64, 128],
        },
        "als_iterations": 15,
        "grid_lightfm": {
            "learning_rate": [0.05] if quick else [0.02, 0.05, 0.1],
            "item_alpha": [1e-6] if quick else [1e-7, 1e-6, 1e-5],
            "components": [32] if quick else [32, 64, 128],
        },
        "lightfm_epochs": 3 if quick else 30,
        "lightfm_eval_every": 3,
    }


# --- coordinate search with widening ---------------------------------------------------------
def _is_numeric(values: list[Any]) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def _beyond(values: list[Any], low: bool, bounds: tuple[float, float] | None) -> Any | None:
    """The next grid value past the lower or upper end (same ratio / step), inside ``bounds``."""
    if len(values) < 2:
        return None
    a, b = (values[0], values[1]) if low else (values[-1], values[-2])
    nxt = a * (a / b) if a > 0 and b > 0 else a + (a - b)  # geometric for positive grids
    if all(isinstance(v, int) for v in values):
        nxt = int(round(nxt))
    if bounds is not None and not bounds[0] <= nxt <= bounds[1]:
        return None
    return nxt


def coordinate_search(
    grid: dict[str, list[Any]],
    evaluate: Callable[[dict[str, Any]], float],
    base: dict[str, Any] | None = None,
    max_widen: int = 2,
    bounds: dict[str, tuple[float, float]] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Maximise ``evaluate(config)`` axis by axis (grid order), the other axes at their current
    best (start: each axis's middle value). A numeric axis whose best value is an end of its
    grid is widened one step past it (geometric for positive floats), up to ``max_widen`` times
    per axis, unless ``bounds`` forbid it. Returns the choice, every trial, and per axis the
    values tried and whether the optimum is interior."""
    bounds = bounds or {}
    current = dict(base or {})
    for name, values in grid.items():
        current.setdefault(name, values[len(values) // 2])
    trials: dict[str, dict[str, Any]] = {}

    def score(cfg: dict[str, Any]) -> float:
        key = json.dumps(cfg, sort_keys=True, default=str)
        if key not in trials:
            t0 = time.time()
            val = float(evaluate(cfg))
            trials[key] = {"config": dict(cfg), "val_ndcg": val, "s": round(time.time() - t0, 1)}
            log(f"    tune {_short(cfg, grid)}: val NDCG {val:.4f} ({trials[key]['s']} s)")
        return trials[key]["val_ndcg"]

    axes: dict[str, dict[str, Any]] = {}
    for name, values in grid.items():
        vals = list(values)
        widened = 0
        while True:
            scores = [score({**current, name: v}) for v in vals]
            best = int(np.argmax(scores))
            edge = len(vals) >= 3 and _is_numeric(vals) and best in (0, len(vals) - 1)
            if edge and widened < max_widen:
                nxt = _beyond(vals, best == 0, bounds.get(name))
                if nxt is not None:
                    vals = [nxt, *vals] if best == 0 else [*vals, nxt]
                    widened += 1
                    continue
            break
        current[name] = vals[best]
        if len(vals) < 3 or not _is_numeric(vals):
            status = "categorical" if not _is_numeric(vals) else "single value"
        elif best in (0, len(vals) - 1):
            at_bound = _beyond(vals, best == 0, bounds.get(name)) is None
            status = "edge (natural bound)" if at_bound else f"edge after {widened} widening(s)"
        else:
            status = "interior" + (f" after {widened} widening(s)" if widened else "")
        axes[name] = {"tried": vals, "chosen": vals[best], "status": status, "widened": widened}
    return {
        "chosen": current,
        "axes": axes,
        "trials": list(trials.values()),
        "n_configs": len(trials),
    }


def full_grid_search(
    grid: dict[str, list[Any]],
    evaluate: Callable[[dict[str, Any]], float],
    base: dict[str, Any],
    bounds: dict[str, tuple[float, float]] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every combination of ``grid`` (on top of ``base``); same record as coordinate_search."""
    import itertools

    names = list(grid)
    trials = []
    for combo in itertools.product(*(grid[n] for n in names)):
        cfg = {**base, **dict(zip(names, combo, strict=True))}
        t0 = time.time()
        val = float(evaluate(cfg))
        trials.append({"config": cfg, "val_ndcg": val, "s": round(time.time() - t0, 1)})
        log(f"    tune {_short(cfg, grid)}: val NDCG {val:.4f} ({trials[-1]['s']} s)")
    best = max(trials, key=lambda t: t["val_ndcg"])["config"]
    axes = {}
    for n in names:
        vals = list(grid[n])
        i = vals.index(best[n])
        if not _is_numeric(vals):
            status = "categorical"
        elif 0 < i < len(vals) - 1:
            status = "interior"
        else:
            lim = (bounds or {}).get(n)
            status = "edge (natural bound)" if lim and best[n] in lim else "edge"
        axes[n] = {"tried": vals, "chosen": best[n], "status": status, "widened": 0}
    return {"chosen": best, "axes": axes, "trials": trials, "n_configs": len(trials)}


def _short(cfg: dict[str, Any], grid: dict[str, list[Any]]) -> str:
    return ", ".join(f"{k}={cfg[k]:g}" if _is_numeric([cfg[k]]) else f"{k}={cfg[k]}" for k in cfg)


# --- fitting one method at one configuration -------------------------------------------------
def _ncacf_config(key: str, hp: dict[str, Any]) -> NCACFConfig:
    _, psi, phi, _ = ROWS[key]
    return NCACFConfig(
        n_factors=int(hp["K"]),
        psi=psi,
        phi=phi,
        variant=hp.get("variant", "relaxed") if phi != "none" else "relaxed",
        psi_layers=int(hp.get("psi_layers", 2)),
        psi_input=hp.get("psi_input", "product"),
        phi_hidden=(int(hp.get("phi_width", 256)),) * int(hp.get("phi_layers", 2)),
        lambda_w=float(hp["reg"]),
        lambda_h=float(hp["reg"]),
    )


def fit_ncacf_hp(
    split: Split,
    key: str,
    hp: dict[str, Any],
    s: dict[str, Any],
    seed: int,
    opts: RecsysBenchOptions,
    work: Path,
    init: FitResult | None = None,
) -> FitResult:
    deep = ROWS[key][1] == "deep"
    fit = FitConfig(
        epochs=s["epochs_deep" if deep else "epochs_linear"],
        lr=float(hp["lr"]),
        optimizer=s["optimizer"],
        batch_items=s["batch_items"],
        seed=seed,
        k=opts.k,
        progress=False,
        out_dir=str(work / f"s{seed}" / split.protocol / key),
    )
    return fit_ncacf(split, _ncacf_config(key, hp), fit, init_from=init.model if init else None)


def _ncacf_scores(res: FitResult, split: Split) -> Any:
    content = torch.as_tensor(split.content) if res.model.phi is not None else None
    return model_scores(res.model, content)


def _lightfm(split: Split, hp: dict[str, Any], s: dict[str, Any], seed: int, k: int) -> Any:
    return anchors.lightfm_warp(
        split,
        lambda fn: evaluate_split(fn, split, "val", k),
        components=int(hp["components"]),
        learning_rate=float(hp["learning_rate"]),
        item_alpha=float(hp["item_alpha"]),
        max_epochs=s["lightfm_epochs"],
        eval_every=s["lightfm_eval_every"],
        seed=seed,
    )


def _als(split: Split, hp: dict[str, Any], s: dict[str, Any], seed: int) -> Any:
    return anchors.als(
        split,
        int(hp["factors"]),
        float(hp["regularization"]),
        float(hp["alpha"]),
        s["als_iterations"],
        seed,
    )


def _methods(proto: str) -> list[str]:
    ncacf = [k for k, v in ROWS.items() if proto == "warm" or v[2] != "none"]
    anchors_ = ["als", "lightfm", "content", "popularity", "random"]
    if proto == "cold":
        anchors_ = ["lightfm", "content", "random"]
    return ncacf + anchors_


# --- one data set ------------------------------------------------------------------------------
def run_dataset(
    name: str, raw: RawData, opts: RecsysBenchOptions, log: Callable[[str], None]
) -> dict[str, Any]:
    s = settings(opts.quick)
    t_start = time.time()
    inter = preprocess(raw, s["min_item_users"], s["min_user_items"])
    log(f"[{name}] {inter.n_users} users, {inter.n_items} items, {len(inter.users)} pairs")
    work = Path(opts.work + ("_quick" if opts.quick else "")) / name
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    tuning: dict[str, dict[str, Any]] = {"warm": {}, "cold": {}}
    chosen: dict[str, dict[str, dict[str, Any]]] = {"warm": {}, "cold": {}}
    skipped: dict[str, str] = {}
    architectures: dict[str, str] = {}
    splits_info: dict[str, list[dict[str, Any]]] = {"warm": [], "cold": []}

    def add(method: str, proto: str, res: dict[str, float], extra: dict[str, Any]) -> None:
        rec = {k: res[k] for k in ("ndcg", "recall", "users", "users_zero_ndcg")}
        results.setdefault(method, {}).setdefault(proto, []).append({**rec, **extra})

    for seed in range(opts.n_seeds):
        for proto in opts.protocols:
            split = make_split(inter, proto, seed=seed)
            splits_info[proto].append(split.describe())
            log(f"[{name}] seed {seed}, {proto}: {split.describe()}")

            def val(fn: Any, split: Split = split) -> dict[str, float]:
                return evaluate_split(fn, split, "val", opts.k)

            def test(fn: Any, split: Split = split) -> dict[str, float]:
                return evaluate_split(fn, split, "test", opts.k)

            fitted: dict[str, FitResult] = {}
            for key in _methods(proto):
                if opts.methods is not None and key not in opts.methods:
                    continue
                t0 = time.time()
                try:
                    rec = _run_method(
                        key, split, seed, proto, s, opts, work, fitted, tuning, chosen, val, log
                    )
                except anchors.AnchorUnavailable as exc:
                    skipped[key] = str(exc)
                    continue
                if rec is None:
                    continue
                fn, extra = rec
                r = test(fn)
                add(key, proto, r, {"seed": seed, **extra, "wall_s": round(time.time() - t0, 1)})
                if key in fitted:
                    architectures[f"{key} ({proto})"] = describe(fitted[key].model)
                log(f"  [{name}] {proto} s{seed} {key}: test NDCG@{opts.k} {r['ndcg']:.4f}")
    return {
        "name": name,
        "source": str(raw.folder) if raw.folder is not None else "",
        "about": SOURCES.get(name, ""),
        "stats": {"users": inter.n_users, "items": inter.n_items, "pairs": len(inter.users)},
        "content": "tag TF-IDF" if len(inter.tag_ids) else "dense features",
        "seeds": opts.n_seeds,
        "tuning": tuning,
        "chosen": chosen,
        "results": results,
        "skipped": skipped,
        "architectures": architectures,
        "splits": splits_info,
        "wall_s": round(time.time() - t_start, 1),
        "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def _run_method(
    key: str,
    split: Split,
    seed: int,
    proto: str,
    s: dict[str, Any],
    opts: RecsysBenchOptions,
    work: Path,
    fitted: dict[str, FitResult],
    tuning: dict[str, dict[str, Any]],
    chosen: dict[str, dict[str, dict[str, Any]]],
    val: Callable[[Any], dict[str, float]],
    log: Callable[[str], None],
) -> tuple[Any, dict[str, Any]] | None:
    """Tune (seed 0) or refit (other seeds) one method; returns its score function + record."""
    tune = seed == 0
    if key == "random":
        return anchors.random_scores(split, seed).score_fn, {}
    if key == "popularity":
        return anchors.popularity(split).score_fn, {}
    if key == "content":
        return anchors.content_cosine(split).score_fn, {}
    if key == "als":
        anchors._implicit()  # AnchorUnavailable before any tuning or lookup
        if tune:
            cache: dict[str, Any] = {}

            def ev_als(hp: dict[str, Any]) -> float:
                a = _als(split, hp, s, seed)
                cache[json.dumps(hp, sort_keys=True)] = a
                return val(a.score_fn)["ndcg"]

            log(f"  tuning ALS ({proto})")
            tuning[proto][key] = coordinate_search(
                s["grid_als"], ev_als, max_widen=s["max_widen"], log=log
            )
            chosen[proto][key] = tuning[proto][key]["chosen"]
        hp = chosen[proto][key]
        a = _als(split, hp, s, seed)
        return a.score_fn, {**hp, "val_ndcg": val(a.score_fn)["ndcg"]}
    if key == "lightfm":
        anchors._lightfm()
        if tune:
            log(f"  tuning LightFM ({proto})")
            tuning[proto][key] = coordinate_search(
                s["grid_lightfm"],
                lambda hp: _lightfm(split, hp, s, seed, opts.k).val["ndcg"],
                max_widen=s["max_widen"],
                bounds={"learning_rate": (1e-4, 0.5), "components": (4, 512)},
                log=log,
            )
            chosen[proto][key] = tuning[proto][key]["chosen"]
        hp = chosen[proto][key]
        lf = _lightfm(split, hp, s, seed, opts.k)
        return lf.score_fn, {
            **hp,
            "epochs": lf.params["epochs"],
            "val_ndcg": lf.val["ndcg"],
            "train_s": round(lf.train_s, 1),
        }
    # NCACF
    _, psi, phi, init_key = ROWS[key]
    init = fitted.get(init_key) if init_key else None
    if init_key and init is None:
        return None
    if tune:
        keep: dict[str, FitResult] = {}

        def ev(hp: dict[str, Any]) -> float:
            res = fit_ncacf_hp(split, key, hp, s, seed, opts, work, init)
            keep[json.dumps(hp, sort_keys=True)] = res
            return res.best_val["ndcg"]

        if psi == "linear":
            grid = dict(s["grid_linear"])
            if phi != "none":
                grid.update(s["grid_phi"])
            base = None
        else:
            assert init_key is not None
            base = {**chosen[proto][init_key], "lr": s["lr_deep"]}
            grid = dict(s["grid_deep"])
        log(f"  tuning {key} ({proto})")
        bounds = {
            "psi_layers": (0, 5),
            "phi_layers": (0, 4),
            "lr": (1e-4, 0.3),
            "K": (4, 512),
            "reg": (1e-5, 1e3),
        }
        if psi == "deep":
            assert base is not None
            tuning[proto][key] = full_grid_search(grid, ev, base, bounds, log)
        else:
            tuning[proto][key] = coordinate_search(
                grid, ev, base=base, max_widen=s["max_widen"], bounds=bounds, log=log
            )
        hp = tuning[proto][key]["chosen"]
        chosen[proto][key] = hp
        if psi == "deep":  # the sweep's test values, for the depth table (not used to choose)
            for t in tuning[proto][key]["trials"]:
                r = keep[json.dumps(t["config"], sort_keys=True)]
                t["test_ndcg"] = evaluate_split(_ncacf_scores(r, split), split, "test", opts.k)[
                    "ndcg"
                ]
        res = keep[json.dumps(hp, sort_keys=True)]
    else:
        hp = chosen[proto][key]
        res = fit_ncacf_hp(split, key, hp, s, seed, opts, work, init)
    fitted[key] = res
    return _ncacf_scores(res, split), {
        **hp,
        "val_ndcg": res.best_val["ndcg"],
        "best_epoch": res.best_epoch,
        "epochs": len(res.val_curve),
        "train_s": round(res.train_s, 1),
    }


# --- the benchmark -------------------------------------------------------------------------------
def build_datasets(
    opts: RecsysBenchOptions, log: Callable[[str], None] = print
) -> list[tuple[str, RawData]]:
    """The data sets to run. ``movielens-100k`` comes from the installed RecBole package: asked
    for by name without it, a clear error; in the default set without it, skipped with a note."""
    from satcodec.errors import ConfigError, RecsysDataError

    explicit = opts.datasets is not None
    wanted = [d.strip() for d in (opts.datasets or ",".join(DATASETS)).split(",") if d.strip()]
    if opts.quick and not explicit:
        wanted = ["lastfm"]
    bad = sorted(set(wanted) - set(DATASETS))
    if bad:
        raise ConfigError(f"unknown data set(s) {bad}: choose from {', '.join(DATASETS)}")
    raw: RawData | None = None
    if any(d in LASTFM_DATASETS for d in wanted) or opts.data:
        raw = load_dataset(opts.data)
        if raw.name != "lastfm":  # a generic folder: that data set only
            return [(raw.name, raw)]
    out = []
    for d in wanted:
        if d == MOVIELENS_NAME:
            try:
                out.append((d, load_movielens_100k()))
            except RecsysDataError as exc:
                if explicit:
                    raise
                log(f"[{d}] skipped: {exc}")
            continue
        assert raw is not None
        out.append((d, raw if d == "lastfm" else lastfm_disjoint_taggers(raw)))
    return out


def run_benchmark(
    opts: RecsysBenchOptions | None = None, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run every data set; write ``recsys_bench[_quick].{md,json,png}`` into ``opts.out``.

    A run over a subset of the data sets keeps the other data sets' results already in the JSON
    file (each data set lists its own finishing time)."""
    opts = opts or RecsysBenchOptions()
    torch.set_num_threads(1)
    t_start = time.time()
    tag = "recsys_bench_quick" if opts.quick else "recsys_bench"
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    previous: dict[str, Any] = {}
    if (out / f"{tag}.json").is_file():
        try:
            previous = json.loads((out / f"{tag}.json").read_text()).get("datasets", {})
        except (OSError, ValueError, AttributeError):
            previous = {}
    datasets: dict[str, Any] = {}
    for name, raw in build_datasets(opts, log):
        datasets[name] = run_dataset(name, raw, opts, log)
    for name, d in previous.items():
        if name not in datasets and isinstance(d, dict) and "results" in d:
            datasets.setdefault(name, d)
    summary = {
        "command": "satcodec research recsys-bench"
        + (" --quick" if opts.quick else "")
        + (f" --data {opts.data}" if opts.data else "")
        + (f" --datasets {opts.datasets}" if opts.datasets else "")
        + (f" --seeds {opts.seeds}" if opts.seeds is not None else ""),
        "quick": opts.quick,
        "k": opts.k,
        "settings": settings(opts.quick),
        "datasets": datasets,
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, 1 thread",
        "load_average": [round(x, 2) for x in load_average()],
        "wall_s": round(time.time() - t_start, 1),
        "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    write_outputs(summary, out, tag)
    log(f"wrote {out / (tag + '.md')} ({summary['wall_s'] / 60:.1f} min)")
    return summary


def merge_summaries(paths: list[str | Path]) -> dict[str, Any]:
    """One summary from runs of parts (data sets, protocols or methods run in parallel): the
    per-method results, tuning records and choices of each data set are combined."""
    parts = [json.loads(Path(p).read_text()) for p in paths]
    out = {**parts[0], "datasets": {}}
    out["command"] = " + ".join(dict.fromkeys(p["command"] for p in parts))
    out["wall_s"] = max(p["wall_s"] for p in parts)
    out["finished"] = max(p["finished"] for p in parts)
    for p in parts:
        for name, d in p["datasets"].items():
            m = out["datasets"].setdefault(name, json.loads(json.dumps(d)))
            if m is d or m == d:
                continue
            for method, protos in d["results"].items():
                m["results"].setdefault(method, {}).update(protos)
            for proto in ("warm", "cold"):
                m["tuning"].setdefault(proto, {}).update(d["tuning"].get(proto, {}))
                m["chosen"].setdefault(proto, {}).update(d["chosen"].get(proto, {}))
                if d["splits"].get(proto):
                    m["splits"][proto] = d["splits"][proto]
            m["skipped"].update(d["skipped"])
            m["architectures"].update(d["architectures"])
            m["wall_s"] = max(m["wall_s"], d["wall_s"])
            m["finished"] = max(m["finished"], d["finished"])
    return out


def write_outputs(summary: dict[str, Any], out: Path, tag: str) -> None:
    (out / f"{tag}.json").write_text(json.dumps(summary, indent=1, default=float))
    plot(summary, out / f"{tag}.png")
    (out / f"{tag}.md").write_text(report(summary, tag))


# --- reporting ------------------------------------------------------------------------------------
def _values(d: dict[str, Any], method: str, proto: str, key: str = "ndcg") -> np.ndarray:
    runs = d["results"].get(method, {}).get(proto, [])
    return np.array([r[key] for r in runs], dtype=np.float64)


def _fmt(v: np.ndarray) -> str:
    if v.size == 0:
        return "—"
    v = 100 * v
    if v.size == 1:
        return f"{v[0]:.1f}"
    return f"{v.mean():.1f} ± {v.std(ddof=1):.1f} [{v.min():.1f}, {v.max():.1f}]"


def _labels() -> dict[str, str]:
    return {**{k: v[0] for k, v in ROWS.items()}, **ANCHORS}


def compare(d: dict[str, Any], a: str, b: str, proto: str) -> tuple[str, str]:
    """(verdict word, sentence): 'wins' only when a's worst seed is above b's best seed."""
    x, y = _values(d, a, proto), _values(d, b, proto)
    if x.size == 0 or y.size == 0:
        return "n/a", "not measured"
    diff = 100 * (x[: min(x.size, y.size)] - y[: min(x.size, y.size)])
    sd = f" ± {diff.std(ddof=1):.1f}" if diff.size > 1 else ""
    if x.size > 1 and x.min() > y.max():
        word = "wins"
    elif x.size > 1 and x.max() < y.min():
        word = "loses"
    elif x.size > 1:
        word = "tie"
    else:
        word = "one seed"
    text = {
        "wins": "better: the ranges over seeds do not overlap",
        "loses": "worse: the ranges over seeds do not overlap",
        "tie": "a tie: the ranges over seeds overlap",
        "one seed": "one seed only, no verdict",
    }[word]
    return word, f"{100 * (x.mean() - y.mean()):+.1f} NDCG points (paired per seed{sd}), {text}"


FINDINGS = [
    ("deep ψ vs linear ψ, no content", "deep_none", "lin_none", "warm"),
    ("deep ψ vs linear ψ, with φ", "deep_phi", "lin_phi", "warm"),
    ("deep ψ vs linear ψ, with φ", "deep_phi", "lin_phi", "cold"),
    ("φ vs no content, linear ψ", "lin_phi", "lin_none", "warm"),
    ("linear ψ, no content vs tuned ALS", "lin_none", "als", "warm"),
    ("deep ψ, no content vs tuned ALS", "deep_none", "als", "warm"),
    ("linear ψ + φ vs tuned ALS", "lin_phi", "als", "warm"),
    ("deep ψ + φ vs tuned ALS", "deep_phi", "als", "warm"),
    ("linear ψ, no content vs LightFM", "lin_none", "lightfm", "warm"),
    ("linear ψ + φ vs LightFM", "lin_phi", "lightfm", "warm"),
    ("linear ψ + φ vs LightFM", "lin_phi", "lightfm", "cold"),
    ("deep ψ + φ vs LightFM", "deep_phi", "lightfm", "cold"),
    ("linear ψ + φ vs content-only cosine", "lin_phi", "content", "cold"),
    ("deep ψ + φ vs content-only cosine", "deep_phi", "content", "cold"),
    ("LightFM vs content-only cosine", "lightfm", "content", "cold"),
    ("content-only cosine vs chance", "content", "random", "cold"),
    ("linear ψ + φ vs popularity", "lin_phi", "popularity", "warm"),
]


def _fmt_one(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _fmt_list(values: list[Any]) -> str:
    """A grid as ``[0.01, 0.1, 1]``: floats to 4 significant digits (widening can leave
    rounding noise such as 0.00010000000000000003), the rest as they are."""
    return "[" + ", ".join(_fmt_one(v) if isinstance(v, float) else repr(v) for v in values) + "]"


def _fmt_hp(hp: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" if _is_numeric([v]) else f"{k}={v}" for k, v in hp.items())


def report(summary: dict[str, Any], tag: str) -> str:
    k = summary["k"]
    labels = _labels()
    st = summary["settings"]
    quick = summary["quick"]
    lines = [
        "# NCACF: warm and cold start, every method tuned on validation"
        + (" (quick smoke run)" if quick else ""),
        "",
        f"Reproduce: `{summary['command']}` (torch {summary['torch']}, {summary['machine']}, "
        f"{summary['wall_s'] / 60:.1f} min wall for this invocation on a shared 2-core host, load "
        f"average {summary['load_average']}, finished {summary['finished']}). Raw numbers, every "
        f"tuning trial included: `{tag}.json`.",
        "",
        *(
            [
                f"Run as parallel parts merged with `merge_summaries`: {summary['note_parallel']}.",
                "",
            ]
            if summary.get("note_parallel")
            else []
        ),
        "**Protocol.** Each seed draws its own warm split (random held-out pairs; every held-out "
        "item keeps training pairs; the user's training and validation items are excluded from "
        "the ranking) and cold split (whole items held out, ranked among the cold test items "
        f"only), 70/10/20 train/validation/test. Test NDCG@{k} and recall@{k} in %, averaged over "
        "users with a held-out item (users with NDCG 0 are kept): mean ± standard deviation "
        "[min, max] over the seeds. A method *wins* only when its worst seed is above the "
        "other's best seed; the paired difference per seed is given too.",
        "",
        "**Tuning budget (the same rule for every method).** On seed 0's validation split of each "
        "data set and protocol, a coordinate-wise search: each axis in turn, the others at their "
        "current best (start: the middle value); every numeric axis starts with 3 values and an "
        f"optimum on an edge widens that axis one step (same ratio) up to {st['max_widen']} times. "
        "The configurations chosen there are retrained on every seed; the test split is never "
        "used for choosing. Axes:",
        f"- NCACF linear ψ: lr {st['grid_linear']['lr']}, λ = λ_W = λ_H {st['grid_linear']['reg']}, "
        f"K {st['grid_linear']['K']}; with φ also φ width {st['grid_phi']['phi_width']}, φ "
        f"hidden layers {st['grid_phi'].get('phi_layers', [2])} (0: φ is one linear map of the "
        f"content) and variant {st['grid_phi']['variant']}; Adam, {st['epochs_linear']} "
        f"epochs, all users × {st['batch_items']} items per step, gradient-norm clip 1, best "
        "validation epoch kept;",
        f"- NCACF deep ψ: the official 0–5 layer sweep (widths 2^(L+2) … 8, output weights 1 for "
        "w ⊙ h of a relaxed or content-free model as in the official code; hidden layers PyTorch's "
        "default init, because the official N(0, 0.01²) left every ψ of ≥ 2 layers at chance "
        "after 3 epochs in a first run) × input "
        f"{st['grid_deep']['psi_input']}, starting from the tuned linear model of the same split "
        f"(K, λ, φ, variant inherited), Adam lr {st['lr_deep']:g}, {st['epochs_deep']} epochs — a "
        "reduced budget forced by compute (a 5-layer ψ costs ~30 s per epoch on one core);",
        f"- implicit ALS: regularisation {st['grid_als']['regularization']}, α "
        f"{st['grid_als']['alpha']}, factors {st['grid_als']['factors']}, "
        f"{st['als_iterations']} iterations, binarised input;",
        f"- LightFM 1.17 WARP: learning rate {st['grid_lightfm']['learning_rate']}, item α "
        f"{st['grid_lightfm']['item_alpha']}, components {st['grid_lightfm']['components']}, "
        f"epochs chosen on validation (≤ {st['lightfm_epochs']}); warm features identity + "
        "content, cold content only;",
        "- content-only cosine (untrained, nothing to tune): cos(x_i, Σ_{j ∈ train(u)} x_j/‖x_j‖).",
        "",
    ]
    for name, d in summary["datasets"].items():
        lines += _dataset_section(name, d, k, labels)
    lines += [
        "## Caveats",
        "",
        "- The paper used the Million Song Dataset's Taste Profile with 168-d audio descriptors "
        "(its NDCG: linear ψ 27.9 / +φ 30.4 warm, deep ψ 38.8 / +φ 40.9 warm; cold 23.8 / 25.9). "
        "Here the items are artists, each user lists at most 50, and the content is tags (or a "
        "dense summary of other users' tags): only directions compare, not values.",
        "- Last.fm tags come from Last.fm users, so a held-out (cold) artist still carries other "
        "listeners' tags (the held-out pairs' own tags are removed): cold start here is easier "
        "than from audio. `lastfm-dense` takes the content from a disjoint half of the users.",
        "- `lastfm-dense` is derived from the same Last.fm files (different listeners, different "
        "content): it is not independent evidence. `movielens-100k` is: another domain (films), "
        "explicit ratings turned into implicit positives (rating ≥ 4), and catalogue content "
        "(genres, decade, knowledge-graph relations) that no rater wrote — shipped inside the "
        "maintained RecBole wheel (found after the first run; lightfm, lightfm-next, implicit, "
        "cornac, librecommender, lenskit, rectools, cr-learn and recsets download theirs at run "
        "time). MovieLens items are films rated by at most 943 users, not artists, so its "
        "values compare with Last.fm's only in direction.",
        "- The deep ψ had fewer epochs than the linear models (it starts from them); a longer "
        "deep ψ schedule might change its verdict. ψ depth 0 with w ⊙ h is the linear model.",
        "",
    ]
    return "\n".join(lines)


def _dataset_section(name: str, d: dict[str, Any], k: int, labels: dict[str, str]) -> list[str]:
    st = d["stats"]
    lines = [
        f"## Data set `{name}`",
        "",
        f"{st['users']} users, {st['items']} items, {st['pairs']} (user, item) pairs after "
        f"filtering; content: {d['content']}; {d['seeds']} seed(s); "
        f"{d['wall_s'] / 60:.1f} min, finished {d['finished']}. Source: `{d['source']}`.",
        "",
        *([f"**Source and licence.** {d['about']}.", ""] if d.get("about") else []),
        *([f"**Run.** {d['note']}", ""] if d.get("note") else []),
        *([f"**Rerun of the φ rows.** {d['phi_rerun']}", ""] if d.get("phi_rerun") else []),
        *(
            [f"**Diagnostic, outside the protocol.** {d['diagnostic']}", ""]
            if d.get("diagnostic")
            else []
        ),
        f"| method | warm NDCG@{k} | warm recall@{k} | cold NDCG@{k} | cold recall@{k} | configs tried (warm / cold) |",
        "|---|---|---|---|---|---|",
    ]
    for key in [*ROWS, *ANCHORS]:
        if key not in d["results"]:
            continue
        n = [
            str(d["tuning"][pr].get(key, {}).get("n_configs", "—"))
            if key in d["tuning"][pr]
            else ("—" if pr not in d["results"][key] else "0")
            for pr in ("warm", "cold")
        ]
        cells = [
            labels[key],
            *[_fmt(_values(d, key, pr, m)) for pr in ("warm", "cold") for m in ("ndcg", "recall")],
            " / ".join(n),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    for m, why in d["skipped"].items():
        lines.append(f"\n- {labels.get(m, m)} skipped: {why}")
    lines += ["", "**Findings (computed from the table):**", ""]
    for text, a, b, proto in FINDINGS:
        word, sentence = compare(d, a, b, proto)
        if word == "n/a":
            continue
        lines.append(f"- {text} ({proto}): **{word}** — {sentence}")
    if d.get("verdict"):
        lines += ["", f"**Verdict.** {d['verdict']}"]
    lines += ["", "**Chosen on validation (seed 0) and how interior each optimum is:**", ""]
    for proto in ("warm", "cold"):
        for key, t in d["tuning"][proto].items():
            if t.get("note"):
                lines.append(f"- ({proto}, {labels[key]}: {t['note']})")
            axes = "; ".join(
                f"{ax} {_fmt_list(a['tried'])} → {_fmt_one(a['chosen'])} ({a['status']})"
                for ax, a in t["axes"].items()
            )
            lines.append(
                f"- {proto}, {labels[key]}: {_fmt_hp(t['chosen'])} — {t['n_configs']} configs; {axes}"
            )
    for proto in ("warm", "cold"):
        for key in ("deep_none", "deep_phi"):
            t = d["tuning"][proto].get(key)
            if not t:
                continue
            lines += [
                "",
                f"ψ depth sweep, {labels[key]}, {proto} (seed 0; NDCG@{k} in %, validation / "
                "test; chosen on validation):",
                "",
                "| ψ input | " + " | ".join(f"{L} layers" for L in range(6)) + " |",
                "|---|" + "---|" * 6,
            ]
            for inp in ("product", "concat"):
                cells = []
                for L in range(6):
                    hit = [
                        tr
                        for tr in t["trials"]
                        if tr["config"].get("psi_input") == inp
                        and tr["config"].get("psi_layers") == L
                        and tr["config"].get("lr") == t["chosen"].get("lr")
                    ]
                    cells.append(
                        f"{100 * hit[0]['val_ndcg']:.1f} / {100 * hit[0].get('test_ndcg', math.nan):.1f}"
                        if hit
                        else "—"
                    )
                label = "w ⊙ h" if inp == "product" else "[w; h]"
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [""]
    lines += [f"- {key}: {arch}" for key, arch in d["architectures"].items()]
    epochs = "; ".join(
        f"{labels[key]} {pr} {[r.get('best_epoch') for r in d['results'][key][pr]]}"
        for key in ROWS
        for pr in ("warm", "cold")
        if pr in d["results"].get(key, {})
    )
    lf = ", ".join(
        f"{pr} {[r.get('epochs') for r in d['results'].get('lightfm', {}).get(pr, [])]}"
        for pr in ("warm", "cold")
    )
    lines += [f"- best validation epochs per seed: {epochs}; LightFM epochs: {lf}"]
    at_end = [
        f"{labels[key]} {pr} seed {r['seed']}"
        for key in [*ROWS, "lightfm"]
        for pr in ("warm", "cold")
        for r in d["results"].get(key, {}).get(pr, [])
        if (r.get("best_epoch") or r.get("epochs")) is not None
        and (
            r.get("best_epoch", r.get("epochs"))
            == (r.get("epochs") if key in ROWS else summary_lightfm_epochs(d))
        )
    ]
    if at_end:
        lines.append(
            "- runs whose best validation epoch is their last (more epochs might help them): "
            + "; ".join(at_end)
        )
    lines.append("")
    return lines


def summary_lightfm_epochs(d: dict[str, Any]) -> int:
    return int(d.get("lightfm_max_epochs", settings(False)["lightfm_epochs"]))


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = _labels()
    names = list(summary["datasets"])
    fig, axes = plt.subplots(
        len(names), 2, figsize=(13, 4.2 * len(names)), sharey="row", squeeze=False
    )
    for row, name in enumerate(names):
        d = summary["datasets"][name]
        methods = [m for m in (*ROWS, *ANCHORS) if m in d["results"]]
        for ax, proto in zip(axes[row], ("warm", "cold"), strict=True):
            ys = np.arange(len(methods))[::-1]
            for y, m in zip(ys, methods, strict=True):
                v = 100 * _values(d, m, proto)
                if v.size:
                    ax.barh(y, v.mean(), color="C0" if m in ROWS else "C7", alpha=0.75)
                    ax.errorbar(
                        v.mean(),
                        y,
                        xerr=[[v.mean() - v.min()], [v.max() - v.mean()]],
                        color="k",
                        capsize=3,
                    )
                    ax.text(v.max() + 0.5, y, f"{v.mean():.1f}", va="center", fontsize=8)
            ax.set_yticks(ys, [labels[m] for m in methods], fontsize=8)
            ax.set_title(
                f"{name}, {proto}: test NDCG@{summary['k']} (%), mean, min–max", fontsize=9
            )
            ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
