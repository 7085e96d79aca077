"""Run one part of the movielens-100k benchmark (resumable: a finished part is skipped).

From the repository root, with RecBole installed (``pip install --no-deps recbole``):
``printf "%s\n" warm_lightfm warm_phi warm_nophi cold_phi cold_lightfm warm_cheap cold_cheap |
OMP_NUM_THREADS=1 xargs -P 3 -I{} python bench/results/recsys_bench.parts/run_part.py {}``,
then ``python bench/results/recsys_bench.parts/diag_epochs.py`` (optional diagnostic) and
``python bench/results/recsys_bench.parts/merge.py``. Parts and logs go to ``runs/ml_parts``.
"""

import sys
from pathlib import Path

from satcodec.benchmarks.recsys_bench import RecsysBenchOptions, run_benchmark

PARTS = {
    "warm_lightfm": ("warm", ("lightfm",)),
    "warm_phi": ("warm", ("lin_phi", "deep_phi")),
    "warm_nophi": ("warm", ("lin_none", "deep_none")),
    "cold_phi": ("cold", ("lin_phi", "deep_phi")),
    "cold_lightfm": ("cold", ("lightfm",)),
    "warm_cheap": ("warm", ("als", "content", "popularity", "random")),
    "cold_cheap": ("cold", ("content", "random")),
}
part = sys.argv[1]
out = Path("runs/ml_parts") / part
out.parent.mkdir(parents=True, exist_ok=True)
if (out / "recsys_bench.json").is_file():
    print(part, "done already")
    sys.exit(0)
proto, methods = PARTS[part]
log = open(Path("runs/ml_parts") / f"{part}.log", "a")


def p(msg):
    print(msg, file=log, flush=True)


run_benchmark(
    RecsysBenchOptions(
        datasets="movielens-100k",
        protocols=(proto,),
        methods=methods,
        out=str(out),
        work=f"runs/recsys_bench_ml/{part}",
    ),
    log=p,
)
