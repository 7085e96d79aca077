"""Merge the reruns of the φ rows (``run_phi_part.py``: φ's depth tuned) into
bench/results/recsys_bench.*: the committed JSON (git HEAD) keeps every other row; the
``lin_phi`` and ``deep_phi`` rows, their tuning records, choices and architectures come from
the parts in ``runs/phi_parts``."""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from satcodec.benchmarks.recsys_bench import merge_summaries, settings, write_outputs

PARTS = [f"{d}_{p}" for d in ("lastfm", "lastfm-dense", "movielens-100k") for p in ("warm", "cold")]
head = subprocess.run(
    ["git", "show", "HEAD:bench/results/recsys_bench.json"],
    capture_output=True,
    text=True,
    check=True,
).stdout
have = [Path("runs/phi_parts") / p / "recsys_bench.json" for p in PARTS]
missing = [p.parent.name for p in have if not p.is_file()]
have = [p for p in have if p.is_file()]
with tempfile.TemporaryDirectory() as tmp:
    base = Path(tmp) / "head.json"
    base.write_text(head)
    merged = merge_summaries([base, *have])
old = json.loads(head)
merged["command"] = old["command"]
merged["settings"] = settings(False)  # the φ grid now has the depth axis
merged["note_parallel"] = old.get("note_parallel", "")
parts = [json.loads(p.read_text()) for p in have]
rerun_min = sum(d["wall_s"] for p in parts for d in p["datasets"].values()) / 60
for name, d in merged["datasets"].items():
    mine = [p.parent.name.split("_")[1] for p in have if p.parent.name.startswith(name + "_")]
    if not mine:
        continue
    d["phi_rerun"] = (
        f"The NCACF rows with φ (linear ψ + φ, deep ψ + φ; {', '.join(sorted(mine))}) were rerun "
        "after φ's depth became a tuned axis (0, 1 or 2 hidden layers; before, always 2), with "
        "the same protocol, seeds and budget rule otherwise "
        "(`recsys_bench.parts/run_phi_part.py`, one process per data set and protocol, "
        f"{rerun_min:.0f} min of process time for all parts); every other row is the earlier "
        "run's."
    )
    if d.get("diagnostic") and "earlier fixed" not in d["diagnostic"]:
        d["diagnostic"] = (
            "(Measured with the earlier fixed two-layer φ, before the rerun above.) "
            + d["diagnostic"]
        )
# the verdicts, by hand from the merged tables (each number is in the data set's table)
VERDICTS = {
    "lastfm": (
        "(1) Warm, changed: with φ's depth tuned (the search picked a linear φ, 0 hidden "
        "layers, relaxed variant, K = 128), NCACF with content **beats** tuned ALS (linear ψ "
        "+ φ 39.4 ± 0.3 against 36.0) and LightFM (38.4), ranges apart, with either ψ; "
        "without content it still loses to both. (2) Cold: linear ψ + φ **ties** the "
        "untrained content cosine (47.6 ± 0.5 against 47.1 ± 1.7, +0.5 paired, higher on 2 of "
        "3 seeds): not the clear margin asked for. It beats LightFM cold (44.4). (3) Deep ψ "
        "ties linear ψ, warm and cold."
    ),
    "lastfm-dense": (
        "(1) Cold, changed: linear ψ + φ **beats** the untrained content cosine by a clear "
        "margin (52.7 ± 0.4 [52.4, 53.1] against 50.4 ± 0.8 [49.5, 51.1], +2.3 paired, "
        "ranges apart) and LightFM (50.6 ± 0.4). (2) Warm: the φ rows lose to ALS and "
        "LightFM, and to NCACF without content (36.7): these dense features do not help "
        "warm. (3) Deep ψ + φ loses to linear ψ + φ warm and ties it cold."
    ),
    "movielens-100k": (
        "(1) Cold: NCACF **ties** the untrained content cosine (linear ψ + φ 21.5 ± 0.5 "
        "against 20.4 ± 1.9, +1.1 paired; deep ψ + φ 21.6) and beats LightFM (20.5 ± 0.3, "
        "ranges apart). (2) Warm: the φ rows now **lose** to ALS (37.0) and LightFM (36.7) at "
        "32.7 / 32.0, worse than before this rerun (36.6): the one-pass coordinate search, "
        "which now starts φ at 1 hidden layer (the middle of the new axis), ended at a "
        "configuration that is worse on validation too (best validation NDCG 0.258 against "
        "0.278 in the earlier search). The protocol reports what its search finds. Without "
        "content NCACF ties ALS and LightFM. (3) Deep ψ ties linear ψ."
    ),
}
for name, text in VERDICTS.items():
    if name in merged["datasets"]:
        merged["datasets"][name]["verdict"] = text
out = Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results")
write_outputs(merged, out, "recsys_bench")
print("merged", [p.parent.name for p in have], "missing", missing)
