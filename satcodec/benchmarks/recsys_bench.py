"""NCACF on real Last.fm listening data, warm and cold start, against popularity, random,
``implicit`` ALS and LightFM: ``satcodec research recsys-bench [--quick]``.

Protocol (see :mod:`satcodec.research.recsys.data` for the splits and the leakage-free tag
content, :mod:`satcodec.research.recsys.metrics` for the metric conventions):

- seeds 0..n−1 each draw their own warm split and cold split (70/10/20) and initialisation;
  every method of a seed is trained and tested on the same two splits;
- the paper's four NCACF rows: linear or deep ψ, without content or with a deep φ; deep ψ
  models start from the factors (and φ) of the linear model of the same split and seed, as the
  official code pre-trains before training the deep interaction;
- model selection uses the validation split only: every run keeps its best validation epoch;
  the relaxed/strict variant of the content models and the ALS (regularisation, α) are
  chosen on seed 0's validation split and reused for the other seeds; LightFM's epoch count is
  chosen on each seed's validation split;
- reported: test NDCG@50 and recall@50, mean ± standard deviation and [min, max] over seeds.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from satcodec.benchmarks.harness import load_average, n_seeds
from satcodec.research.recsys import anchors
from satcodec.research.recsys.data import load_lastfm, make_split, preprocess
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
    "lin_none": ("linear ψ, no content", "linear", "none", None),
    "lin_phi": ("linear ψ + deep φ", "linear", "deep", None),
    "deep_none": ("deep ψ, no content", "deep", "none", "lin_none"),
    "deep_phi": ("deep ψ + deep φ", "deep", "deep", "lin_phi"),
}
ANCHORS = {
    "popularity": "popularity (training listeners)",
    "random": "random ranking (chance level)",
    "als": "implicit ALS (warm)",
    "lightfm": "LightFM WARP + tag features",
}


@dataclass
class RecsysBenchOptions:
    quick: bool = False
    data: str | None = None  # folder of the Last.fm data (default ../shared/data/music)
    seeds: int | None = None  # default 3 (1 with quick)
    out: str = "bench/results"
    work: str = "runs/recsys_bench"
    progress: bool = True
    k: int = 50

    @property
    def n_seeds(self) -> int:
        return n_seeds(self.seeds, self.quick, quick_default=1)


def settings(quick: bool) -> dict[str, Any]:
    """Sizes and budgets (chosen to keep the full run ≲25 min on one shared CPU core)."""
    return {
        "min_item_users": 5,
        "min_user_items": 10,
        "n_factors": 64,
        "psi_hidden": (16, 8),
        "phi_hidden": (256, 256),
        "lambda_w": 0.1,
        "lambda_h": 0.1,
        "batch_items": 128,
        "optimizer": "adam",
        "lr_linear": 1e-2,
        "lr_deep": 3e-3,
        "epochs_linear": 3 if quick else 30,
        "epochs_deep": 2 if quick else 8,
        "variants": ("relaxed",) if quick else ("relaxed", "strict"),
        "als_grid": [(0.1, 5.0)] if quick else [(r, a) for r in (0.1, 1.0) for a in (5.0, 20.0)],
        "als_factors": 64,
        "als_iterations": 15,
        "lightfm_components": 64,
        "lightfm_lr": 0.05,
        "lightfm_epochs": 6 if quick else 45,
        "lightfm_eval_every": 3,
    }


def _cfg(s: dict[str, Any], psi: str, phi: str, variant: str) -> NCACFConfig:
    return NCACFConfig(
        n_factors=s["n_factors"],
        psi=psi,
        phi=phi,
        variant=variant if phi != "none" else "relaxed",
        psi_hidden=tuple(s["psi_hidden"]),
        phi_hidden=tuple(s["phi_hidden"]),
        lambda_w=s["lambda_w"],
        lambda_h=s["lambda_h"],
    )


def _record(res: dict[str, float], extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "ndcg": res["ndcg"],
        "recall": res["recall"],
        "users": res["users"],
        "users_zero_ndcg": res["users_zero_ndcg"],
        **extra,
    }


def run_benchmark(
    opts: RecsysBenchOptions | None = None, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run everything; write ``recsys_bench[_quick].{md,json,png}`` into ``opts.out``."""
    opts = opts or RecsysBenchOptions()
    torch.set_num_threads(1)
    s = settings(opts.quick)
    t_start = time.time()
    raw = load_lastfm(opts.data)
    inter = preprocess(raw, s["min_item_users"], s["min_user_items"])
    log(
        f"data {raw.folder}: {inter.n_users} users, {inter.n_items} artists, {len(inter.users)} pairs"
    )
    tag = "recsys_bench_quick" if opts.quick else "recsys_bench"
    work = Path(opts.work + ("_quick" if opts.quick else ""))
    results: dict[str, dict[str, dict[str, list[dict[str, Any]]]]] = {}  # method -> proto -> runs

    def add(method: str, proto: str, rec: dict[str, Any]) -> None:
        results.setdefault(method, {}).setdefault(proto, []).append(rec)

    chosen: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    splits_info: dict[str, list[dict[str, Any]]] = {"warm": [], "cold": []}
    architectures: dict[str, str] = {}
    for seed in range(opts.n_seeds):
        for proto in ("warm", "cold"):
            split = make_split(inter, proto, seed=seed)
            splits_info[proto].append(split.describe())
            log(f"seed {seed}, {proto}: {split.describe()}")

            def test(fn: Any, split=split) -> dict[str, float]:
                return evaluate_split(fn, split, "test", opts.k)

            def val(fn: Any, split=split) -> dict[str, float]:
                return evaluate_split(fn, split, "val", opts.k)

            # --- NCACF ------------------------------------------------------------------------
            models: dict[str, FitResult] = {}
            for key, (label, psi, phi, init) in ROWS.items():
                if proto == "cold" and phi == "none":
                    continue  # no content: a cold item has no factor at all
                deep = psi == "deep"
                fit = FitConfig(
                    epochs=s["epochs_deep" if deep else "epochs_linear"],
                    lr=s["lr_deep" if deep else "lr_linear"],
                    optimizer=s["optimizer"],
                    batch_items=s["batch_items"],
                    seed=seed,
                    k=opts.k,
                    progress=opts.progress,
                )
                if phi == "none":
                    variants = ["relaxed"]
                elif f"variant_{proto}" in chosen:
                    variants = [chosen[f"variant_{proto}"]]
                elif init is not None:  # deep ψ + φ: the variant of the model it starts from
                    variants = [chosen.get(f"variant_{proto}", "relaxed")]
                else:
                    variants = list(s["variants"])
                fits: dict[str, FitResult] = {}
                for variant in variants:
                    cfg = _cfg(s, psi, phi, variant)
                    f = replace(fit, out_dir=str(work / f"s{seed}" / proto / f"{key}_{variant}"))
                    log(f"  {label} ({variant}), {fit.epochs} epochs")
                    fits[variant] = fit_ncacf(
                        split, cfg, f, init_from=models[init].model if init else None
                    )
                    if len(variants) > 1:
                        chosen.setdefault(f"variant_val_{proto}", {})[variant] = fits[
                            variant
                        ].best_val["ndcg"]
                best_variant = max(fits, key=lambda v: fits[v].best_val["ndcg"])
                if phi != "none" and init is None:
                    chosen.setdefault(f"variant_{proto}", best_variant)
                res = fits[best_variant]
                models[key] = res
                architectures[key] = describe(res.model)
                content = torch.as_tensor(split.content) if res.model.phi is not None else None
                r = test(model_scores(res.model, content))
                add(
                    key,
                    proto,
                    _record(
                        r,
                        {
                            "seed": seed,
                            "variant": best_variant if phi != "none" else None,
                            "val_ndcg": res.best_val["ndcg"],
                            "best_epoch": res.best_epoch,
                            "epochs": fit.epochs,
                            "val_curve": res.val_curve,
                            "train_s": round(res.train_s, 1),
                        },
                    ),
                )
                log(f"    test NDCG@{opts.k} {r['ndcg']:.4f}, recall {r['recall']:.4f}")

            # --- anchors ----------------------------------------------------------------------
            if proto == "warm":
                add(
                    "popularity",
                    proto,
                    _record(test(anchors.popularity(split).score_fn), {"seed": seed}),
                )
            add(
                "random",
                proto,
                _record(test(anchors.random_scores(split, seed).score_fn), {"seed": seed}),
            )
            if proto == "warm":
                try:
                    if "als" not in chosen:
                        grid = {}
                        for reg, alpha in s["als_grid"]:
                            a = anchors.als(
                                split, s["als_factors"], reg, alpha, s["als_iterations"], seed
                            )
                            grid[f"reg={reg:g}, alpha={alpha:g}"] = (
                                val(a.score_fn)["ndcg"],
                                reg,
                                alpha,
                            )
                        best = max(grid.values())
                        chosen["als"] = {"regularization": best[1], "alpha": best[2]}
                        chosen["als_grid_val_ndcg"] = {k: v[0] for k, v in grid.items()}
                    a = anchors.als(
                        split,
                        s["als_factors"],
                        chosen["als"]["regularization"],
                        chosen["als"]["alpha"],
                        s["als_iterations"],
                        seed,
                    )
                    add(
                        "als",
                        proto,
                        _record(
                            test(a.score_fn),
                            {"seed": seed, **a.params, "train_s": round(a.train_s, 1)},
                        ),
                    )
                except anchors.AnchorUnavailable as exc:
                    skipped["als"] = str(exc)
            try:
                log("  LightFM WARP")
                lf = anchors.lightfm_warp(
                    split,
                    val,
                    components=s["lightfm_components"],
                    learning_rate=s["lightfm_lr"],
                    max_epochs=s["lightfm_epochs"],
                    eval_every=s["lightfm_eval_every"],
                    seed=seed,
                )
                r = test(lf.score_fn)
                add(
                    "lightfm",
                    proto,
                    _record(
                        r,
                        {
                            "seed": seed,
                            **lf.params,
                            "val_ndcg": lf.val["ndcg"],
                            "train_s": round(lf.train_s, 1),
                        },
                    ),
                )
                log(f"    test NDCG@{opts.k} {r['ndcg']:.4f}")
            except anchors.AnchorUnavailable as exc:
                skipped["lightfm"] = str(exc)

    summary = {
        "command": "satcodec research recsys-bench"
        + (" --quick" if opts.quick else "")
        + (f" --seeds {opts.seeds}" if opts.seeds is not None else ""),
        "quick": opts.quick,
        "seeds": opts.n_seeds,
        "k": opts.k,
        "data": str(raw.folder),
        "data_stats": {
            "users": inter.n_users,
            "items": inter.n_items,
            "pairs": len(inter.users),
        },
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in s.items()},
        "architectures": architectures,
        "chosen_on_validation": chosen,
        "splits": splits_info,
        "skipped": skipped,
        "results": results,
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} thread",
        "load_average": [round(x, 2) for x in load_average()],
        "wall_s": round(time.time() - t_start, 1),
        "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{tag}.json").write_text(json.dumps(summary, indent=1, default=float))
    plot(summary, out / f"{tag}.png")
    (out / f"{tag}.md").write_text(report(summary, tag))
    log(f"wrote {out / (tag + '.md')} ({summary['wall_s'] / 60:.1f} min)")
    return summary


# --- reporting ------------------------------------------------------------------------------------
def _values(summary: dict[str, Any], method: str, proto: str, key: str) -> np.ndarray:
    runs = summary["results"].get(method, {}).get(proto, [])
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


def _compare(summary: dict[str, Any], a: str, b: str, proto: str) -> str:
    """'a beats b' only when a's worst seed is above b's best seed (min–max ranges apart)."""
    x, y = _values(summary, a, proto, "ndcg"), _values(summary, b, proto, "ndcg")
    if x.size == 0 or y.size == 0:
        return "not measured"
    d = 100 * (x.mean() - y.mean())
    if x.size > 1 and x.min() > y.max():
        verdict = "better (ranges over seeds do not overlap)"
    elif x.size > 1 and x.max() < y.min():
        verdict = "worse (ranges over seeds do not overlap)"
    elif x.size > 1:
        verdict = "a tie (ranges over seeds overlap)"
    else:
        verdict = "one seed only, no verdict"
    return f"{d:+.1f} NDCG points, {verdict}"


def report(summary: dict[str, Any], tag: str) -> str:
    k = summary["k"]
    labels = _labels()
    st = summary["settings"]
    lines = [
        f"# NCACF on Last.fm: warm and cold start{' (quick smoke run)' if summary['quick'] else ''}",
        "",
        f"Reproduce: `{summary['command']}` (torch {summary['torch']}, {summary['machine']}, "
        f"{summary['wall_s'] / 60:.1f} min wall on a shared host, load average "
        f"{summary['load_average']}, finished {summary['finished']}). Raw numbers: `{tag}.json`.",
        "",
        f"Data: HetRec 2011 Last.fm 2K (`{summary['data']}`, non-commercial research use), artists "
        f"with ≥ {st['min_item_users']} listeners and users with ≥ {st['min_user_items']} of them: "
        f"{summary['data_stats']['users']} users, {summary['data_stats']['items']} artists, "
        f"{summary['data_stats']['pairs']} (user, artist) pairs. Play counts binarised, confidence "
        "c = 1 + 2 log(1 + r/1e-6) as in the paper. Content: TF-IDF over tags used on ≥ 5 artists, "
        "built after removing every tag assignment whose (user, artist) pair is held out "
        "(validation or test), so held-out listening cannot leak through the tags.",
        "",
        "Splits (one warm and one cold split per seed, 70/10/20 train/validation/test): warm holds "
        "out random pairs of artists that keep training pairs; cold holds out whole artists (no "
        "training pair at all), ranked among the cold test artists only. Warm ranking excludes each "
        "user's training (and validation) artists.",
        "",
        f"Metrics: NDCG@{k} and recall@{k} (hits / min({k}, held-out)), averaged over users with at "
        f"least one held-out artist; users with NDCG 0 are kept. Values in %: mean ± standard "
        f"deviation [min, max] over {summary['seeds']} seed(s); each seed draws its own splits and "
        "initialisation.",
        "",
        "![results](" + tag + ".png)",
        "",
        f"| method | warm NDCG@{k} | warm recall@{k} | cold NDCG@{k} | cold recall@{k} | paper NDCG warm / cold (MSD, audio) |",
        "|---|---|---|---|---|---|",
    ]
    for key in ROWS:
        p = PAPER[key]
        paper = f"{p[0]:.1f} / {p[1]:.1f}" if p[1] is not None else f"{p[0]:.1f} / —"
        cells = [
            f"NCACF: {labels[key]}",
            *[
                _fmt(_values(summary, key, pr, m))
                for pr in ("warm", "cold")
                for m in ("ndcg", "recall")
            ],
            paper,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    for key in ANCHORS:
        if key not in summary["results"]:
            continue
        cells = [
            labels[key],
            *[
                _fmt(_values(summary, key, pr, m))
                for pr in ("warm", "cold")
                for m in ("ndcg", "recall")
            ],
            "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "The paper's column is for orientation only: it used the Million Song Dataset's Taste "
        "Profile (songs, far more users and items) with 168-dimensional audio descriptors; here "
        "the items are artists, the content is user-assigned tags, each user lists at most 50 "
        "artists and the cold candidates are fewer. Absolute values are not comparable, only the "
        "directions (does deep ψ beat linear ψ, does φ make cold start work).",
        "",
    ]
    lines += [
        "Caveats: (1) the tags were given by Last.fm users, so even a held-out (cold) artist "
        "carries tags from other listeners; a brand-new artist would have none, which makes "
        "these cold-start numbers optimistic next to audio content (held-out pairs' own tags "
        "are removed, so there is no direct leak). (2) Budgets are small (one shared CPU core); "
        "runs whose best validation epoch is the last one (listed below) might gain from more "
        "epochs. (3) The deep ψ starts from the linear model's factors and trains fewer epochs "
        "on top; it is not trained from scratch.",
        "",
    ]
    for name, why in summary["skipped"].items():
        lines += [f"- {labels[name]} skipped: {why}"]
    lines += [
        "## Findings (computed from the table)",
        "",
        f"- deep ψ vs linear ψ, no content (warm): {_compare(summary, 'deep_none', 'lin_none', 'warm')}",
        f"- deep ψ vs linear ψ, with deep φ (warm): {_compare(summary, 'deep_phi', 'lin_phi', 'warm')}",
        f"- deep ψ vs linear ψ, with deep φ (cold): {_compare(summary, 'deep_phi', 'lin_phi', 'cold')}",
        f"- deep φ vs no content, linear ψ (warm): {_compare(summary, 'lin_phi', 'lin_none', 'warm')}",
        f"- cold start through φ, deep ψ + deep φ vs chance: {_compare(summary, 'deep_phi', 'random', 'cold')}",
        f"- deep ψ + deep φ vs LightFM (cold): {_compare(summary, 'deep_phi', 'lightfm', 'cold')}",
        f"- deep ψ + deep φ vs LightFM (warm): {_compare(summary, 'deep_phi', 'lightfm', 'warm')}",
        f"- deep ψ + deep φ vs ALS (warm): {_compare(summary, 'deep_phi', 'als', 'warm')}",
        f"- deep ψ + deep φ vs popularity (warm): {_compare(summary, 'deep_phi', 'popularity', 'warm')}",
        "",
        "## Models and selection",
        "",
    ]
    lines += [f"- {labels[key]}: {arch}" for key, arch in summary["architectures"].items()]
    ch = summary["chosen_on_validation"]
    lines += [
        f"- training: shared `satcodec.train.Trainer`, {st['optimizer']}, all users × "
        f"{st['batch_items']} items per step, gradient-norm clip 1, λ_W = {st['lambda_w']}, "
        f"λ_H = {st['lambda_h']}; linear ψ lr {st['lr_linear']:g} for {st['epochs_linear']} epochs; "
        f"deep ψ lr {st['lr_deep']:g} for {st['epochs_deep']} epochs starting from the linear "
        "model's factors and φ (the official code also pre-trains); each run keeps its best "
        "validation epoch",
        f"- relaxed vs strict (seed 0 validation NDCG): warm {ch.get('variant_val_warm', '—')}, "
        f"cold {ch.get('variant_val_cold', '—')}; used: warm {ch.get('variant_warm', 'relaxed')}, "
        f"cold {ch.get('variant_cold', 'relaxed')}",
        f"- ALS: {st['als_factors']} factors, {st['als_iterations']} iterations, binarised input; "
        f"(regularisation, α) on seed 0 validation NDCG: {ch.get('als_grid_val_ndcg', '—')}; "
        f"used {ch.get('als', '—')}",
        f"- LightFM 1.17: WARP, {st['lightfm_components']} components, learning rate "
        f"{st['lightfm_lr']}, item α 1e-6; warm features identity + tag TF-IDF (rows normalised), "
        "cold features tag TF-IDF only; epochs chosen on each seed's validation split "
        f"(every epoch up to 6, then every {st['lightfm_eval_every']}, at most "
        f"{st['lightfm_epochs']}): "
        + ", ".join(
            f"{pr} {[r['epochs'] for r in summary['results'].get('lightfm', {}).get(pr, [])]}"
            for pr in ("warm", "cold")
        ),
        "- best validation epochs of the NCACF runs: "
        + "; ".join(
            f"{labels[key]} {pr} {[r['best_epoch'] for r in summary['results'][key][pr]]}/{summary['results'][key][pr][0]['epochs']}"
            for key in ROWS
            for pr in ("warm", "cold")
            if pr in summary["results"].get(key, {})
        ),
        "",
    ]
    return "\n".join(lines)


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = _labels()
    methods = [m for m in (*ROWS, *ANCHORS) if m in summary["results"]]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), sharey=True)
    for ax, proto in zip(axes, ("warm", "cold"), strict=True):
        ys = np.arange(len(methods))[::-1]
        for y, m in zip(ys, methods, strict=True):
            v = 100 * _values(summary, m, proto, "ndcg")
            color = "C0" if m in ROWS else "C7"
            if v.size:
                ax.barh(y, v.mean(), color=color, alpha=0.75)
                ax.errorbar(
                    v.mean(),
                    y,
                    xerr=[[v.mean() - v.min()], [v.max() - v.mean()]],
                    color="k",
                    capsize=3,
                )
                ax.text(v.max() + 0.5, y, f"{v.mean():.1f}", va="center", fontsize=8)
            p = PAPER.get(m, (None, None))[0 if proto == "warm" else 1]
            if p is not None:
                ax.plot(p, y, "r*", ms=10, label="paper (MSD, audio)" if y == ys[0] else None)
        ax.set_yticks(ys, [labels[m] for m in methods], fontsize=8)
        ax.set_title(f"{proto}: test NDCG@{summary['k']} (%), mean and min–max over seeds")
        ax.grid(axis="x", alpha=0.3)
    handles, names = axes[0].get_legend_handles_labels()
    if handles:
        axes[0].legend(handles, names, fontsize=8, loc="lower right")
    fig.suptitle(f"NCACF on Last.fm HetRec 2011 ({summary['seeds']} seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
