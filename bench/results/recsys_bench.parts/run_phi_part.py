"""Rerun the NCACF rows with a content extractor φ (linear ψ + φ, then deep ψ + φ from it) on
one data set and protocol, after φ's depth became a tuned axis (0, 1 or 2 hidden layers).

From the repository root (RecBole installed for movielens-100k):
``printf "%s\n" lastfm:cold lastfm:warm lastfm-dense:cold lastfm-dense:warm movielens-100k:cold
movielens-100k:warm | OMP_NUM_THREADS=1 xargs -P 2 -I{} python
bench/results/recsys_bench.parts/run_phi_part.py {}``, then
``python bench/results/recsys_bench.parts/merge_phi.py``. Parts, logs: ``runs/phi_parts``.
A finished part is skipped (resumable).
"""

import sys
from pathlib import Path

from satcodec.benchmarks.recsys_bench import RecsysBenchOptions, run_benchmark

dataset, proto = sys.argv[1].split(":")
root = Path("runs/phi_parts")
out = root / f"{dataset}_{proto}"
root.mkdir(parents=True, exist_ok=True)
if (out / "recsys_bench.json").is_file():
    print(out, "done already")
    sys.exit(0)
log = open(root / f"{dataset}_{proto}.log", "a")


def p(msg):
    print(msg, file=log, flush=True)


run_benchmark(
    RecsysBenchOptions(
        datasets=dataset,
        protocols=(proto,),
        methods=("lin_phi", "deep_phi"),
        out=str(out),
        work=f"runs/recsys_bench_phi/{dataset}_{proto}",
        progress=False,
    ),
    log=p,
)
