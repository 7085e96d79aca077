"""Merge the movielens-100k parts into bench/results/recsys_bench.* beside the committed Last.fm
numbers (taken from git HEAD, not re-run)."""

import json
import subprocess
import sys
from pathlib import Path

from satcodec.benchmarks.recsys_bench import merge_summaries, write_outputs

ORDER = [
    "warm_nophi",
    "warm_phi",
    "warm_lightfm",
    "warm_cheap",
    "cold_phi",
    "cold_lightfm",
    "cold_cheap",
]
paths = [Path("runs/ml_parts") / p / "recsys_bench.json" for p in ORDER]
have = [p for p in paths if p.is_file()]
missing = [p.parent.name for p in paths if not p.is_file()]
ml = merge_summaries(have)["datasets"]["movielens-100k"]
parts = json.loads("[" + ",".join(p.read_text() for p in have) + "]")
total = sum(d["datasets"]["movielens-100k"]["wall_s"] for d in parts)
ml["source"] = "<site-packages>/recbole/dataset_example/ml-100k (RecBole 1.2.1 wheel)"
ml["note"] = (
    "The same protocol, grids, widening rule, epochs and 3 seeds as the Last.fm rows, run on "
    f"{parts[0]['finished'][:10]} as {len(have)} parts in parallel (2-3 processes, one thread each, "
    "on the shared 2-core host; each part is `recsys_bench.parts/run_part.py`, `RecsysBenchOptions(datasets='movielens-100k', "
    "protocols=(p,), methods=(...))`, merged with `merge_summaries`): warm {linear ψ, deep ψ}; "
    "warm {linear ψ + φ, deep ψ + φ}; warm LightFM; warm {ALS, content, popularity, random}; "
    "cold {linear ψ + φ, deep ψ + φ}; cold LightFM; cold {content, random}. "
    f"{total / 60:.1f} min of process time in all (the wall time above is the longest part). "
    "One command does the same sequentially: "
    "`satcodec research recsys-bench --datasets movielens-100k` (needs `pip install --no-deps recbole`)."
    + (f" NOT FINISHED (missing parts: {', '.join(missing)})." if missing else "")
)
diag = Path("runs/ml_parts/diag_epochs.json")
if diag.is_file():
    import numpy as np

    dj = json.loads(diag.read_text())
    cells = []
    for key, label in (
        ("lin_none_60", "linear ψ, no content"),
        ("lin_phi_60", "linear ψ + deep φ"),
    ):
        v = 100 * np.array([r["test_ndcg"] for r in dj[key]])
        cells.append(
            f"{label} {v.mean():.1f} ± {v.std(ddof=1):.1f} [{v.min():.1f}, {v.max():.1f}] "
            f"(best epochs {[r['best_epoch'] for r in dj[key]]})"
        )
    ml["diagnostic"] = (
        "Every warm linear-ψ run above peaked at its last (20th) epoch, so the two warm linear rows "
        "were retrained with 60 epochs at the same chosen hyper-parameters on the same 3 splits "
        "(`recsys_bench.parts/diag_epochs.py`: `epochs_linear=60`; not used for any choice): "
        "warm test NDCG@50 "
        + "; ".join(cells)
        + ". About +0.5 point, still inside the ALS [36.2, 37.6] and LightFM [36.2, 37.4] ranges: "
        "the warm verdicts (ties) do not change with the longer schedule."
    )
head = json.loads(
    subprocess.run(
        ["git", "show", "HEAD:bench/results/recsys_bench.json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
)
for d in head["datasets"].values():
    d.setdefault(
        "note",
        "Numbers from the earlier run of the same protocol (see the top of this "
        f"file; finished {d['finished']}); not re-run when `movielens-100k` was added.",
    )
head["datasets"]["movielens-100k"] = ml
head["command"] = "satcodec research recsys-bench --datasets lastfm,lastfm-dense"
if head.get("note_parallel") and not head["note_parallel"].startswith("the two Last.fm"):
    head["note_parallel"] = (
        "the two Last.fm data sets (MovieLens: see its section), " + head["note_parallel"]
    )
ml["verdict"] = (
    "(1) Cold start: NCACF does **not** beat the content-only cosine baseline — it is *below* it "
    "on every seed (linear ψ + φ 17.1/15.5/18.5 vs cosine 21.7/18.2/21.3; deep ψ + φ "
    "17.9/16.2/18.8), a tie only by the non-overlap rule; LightFM with content features beats "
    "both NCACF rows cold (ranges separate) and ties the cosine. "
    "(2) Deep ψ does not beat linear ψ: ties warm without content (+0.3), warm with φ (−0.1) "
    "and cold (+0.6); warm without content the validation sweep even picked 0 hidden layers "
    "(= the linear model trained 3 more epochs). "
    "(3) Warm, ALS (37.0) and LightFM (36.7) are not separable from NCACF (36.3–36.6): every "
    "warm comparison is a tie, also with 60 epochs for the linear rows (diagnostic above). "
    "Content (deep φ) adds nothing warm (+0.3, tie). Beside Last.fm: cold NCACF never beats "
    "the content cosine on any of the three data sets; deep ψ ties or loses against linear ψ on "
    "all three; warm, ALS and LightFM beat NCACF on `lastfm`, content-free NCACF beats them and "
    "NCACF + φ loses to them on `lastfm-dense`, and everything ties here."
)
write_outputs(head, Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results"), "recsys_bench")
print("merged", [p.parent.name for p in have], "missing", missing)
