"""Diagnostic outside the protocol: the warm linear NCACF rows with more epochs (same chosen
hyper-parameters; best validation epoch kept; test NDCG@50 over seeds 0-2)."""

import json
from pathlib import Path

import torch

from satcodec.benchmarks.recsys_bench import (
    RecsysBenchOptions,
    _ncacf_scores,
    fit_ncacf_hp,
    settings,
)
from satcodec.research.recsys.data import make_split, preprocess
from satcodec.research.recsys.datasets import load_movielens_100k
from satcodec.research.recsys.train import evaluate_split

torch.set_num_threads(1)
d = json.load(open("runs/ml_parts/warm_phi/recsys_bench.json"))["datasets"]["movielens-100k"]
d2 = json.load(open("runs/ml_parts/warm_nophi/recsys_bench.json"))["datasets"]["movielens-100k"]
chosen = {**d2["chosen"]["warm"], **d["chosen"]["warm"]}
s = settings(False)
inter = preprocess(load_movielens_100k(), s["min_item_users"], s["min_user_items"])
opts = RecsysBenchOptions(work="runs/recsys_bench_ml/diag")
out = {}
for epochs in (60,):
    s["epochs_linear"] = epochs
    for key in ("lin_none", "lin_phi"):
        vals = []
        for seed in range(3):
            split = make_split(inter, "warm", seed=seed)
            r = fit_ncacf_hp(split, key, chosen[key], s, seed, opts, Path(opts.work))
            t = evaluate_split(_ncacf_scores(r, split), split, "test", 50)["ndcg"]
            vals.append({"seed": seed, "test_ndcg": t, "best_epoch": r.best_epoch})
            print(epochs, key, seed, round(t, 4), r.best_epoch, flush=True)
        out[f"{key}_{epochs}"] = vals
Path("runs/ml_parts/diag_epochs.json").write_text(json.dumps(out, indent=1))
