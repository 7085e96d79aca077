"""``satcodec research``: the research benchmarks (INNA, ABC, NCACF recommender)."""

from __future__ import annotations

import argparse

from satcodec.cli.options import add_command, add_group, names, numbers, quiet


def cmd_research_inna_bench(a: argparse.Namespace) -> int:
    from satcodec.benchmarks.inna_bench import BenchOptions, run_benchmark

    opts = BenchOptions(
        quick=a.quick, data=a.data, seeds=a.seeds, out=a.out, work=a.work, progress=not quiet(a)
    )
    run_benchmark(names(a.tasks), opts)
    return 0


def cmd_research_recsys_bench(a: argparse.Namespace) -> int:
    from satcodec.benchmarks.recsys_bench import RecsysBenchOptions, run_benchmark

    opts = RecsysBenchOptions(
        quick=a.quick,
        data=a.data,
        datasets=a.datasets,
        seeds=a.seeds,
        out=a.out,
        work=a.work,
        progress=not quiet(a),
    )
    run_benchmark(opts)
    return 0


def cmd_research_abc_bench(a: argparse.Namespace) -> int:
    from satcodec.benchmarks.abc_bench import BenchOptions, run_benchmark

    opts = BenchOptions(
        quick=a.quick,
        tasks=names(a.tasks),
        methods=names(a.methods),
        budgets=numbers("--budgets", a.budgets, integers=True) if a.budgets else None,
        observations=a.observations,
        c2st_samples=a.c2st_samples,
        c2st_seeds=a.c2st_seeds,
        rounds=a.rounds,
        out=a.out,
        progress=not quiet(a),
        c2st_backend=a.c2st_backend,
        resume=a.resume,
    )
    run_benchmark(opts)
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    research = add_group(sub, "research", "research experiments")
    ib = add_command(
        research,
        "inna-bench",
        cmd_research_inna_bench,
        "INNA vs SGD, SGD+momentum, Adam, Adagrad (bench/results/inna_bench*)",
    )
    ib.add_argument("--quick", action="store_true", help="smoke run of a few minutes")
    ib.add_argument("--data", help="codec task: folder of GeoTIFF scenes (default: shared data)")
    ib.add_argument("--tasks", help="comma-separated subset of: codec,digits,music")
    ib.add_argument("--seeds", type=int, help="seeds per optimizer (default 3; 2 with --quick)")
    ib.add_argument("--out", default="bench/results")
    ib.add_argument("--work", default="runs/inna_bench", help="per-run logs and checkpoints")

    ab = add_command(
        research,
        "abc-bench",
        cmd_research_abc_bench,
        "ABC (rejection, SMC, flow/cVAE surrogates) vs sbi NPE on sbibm tasks, C2ST "
        "(bench/results/abc_bench*; needs the 'abc' extra; sbibm for two_moons, slcp and "
        "gaussian_mixture)",
    )
    ab.add_argument(
        "--quick",
        action="store_true",
        help="gaussian_linear (implemented here, exact posterior; no sbibm needed), 10^3 "
        "simulations, 1 observation, 2 classifier seeds: about 25 s",
    )
    ab.add_argument(
        "--tasks",
        help="comma-separated subset of: two_moons,gaussian_linear,slcp,gaussian_mixture "
        "(default two_moons,slcp,gaussian_mixture)",
    )
    ab.add_argument(
        "--methods",
        help="comma-separated subset of: rej_abc,smc_abc,smc_abc_sbibm,surrogate_flow,"
        "surrogate_flow_ls,surrogate_cvae,npe (default: all but rej_abc and surrogate_cvae; "
        "surrogate_flow_ls runs on slcp only)",
    )
    ab.add_argument("--budgets", help="real-simulation budgets, e.g. 1000,10000 (default 10000)")
    ab.add_argument("--observations", type=int, help="sbibm observations 1..N (default 10)")
    ab.add_argument("--c2st-samples", type=int, help="C2ST samples per side (default 500)")
    ab.add_argument("--c2st-seeds", type=int, help="classifier seeds per cell (default 5)")
    ab.add_argument("--rounds", type=int, default=2, help="surrogate rounds (default 2)")
    ab.add_argument(
        "--c2st-backend",
        choices=["auto", "sklearn", "torch"],
        default="auto",
        help="C2ST classifier: scikit-learn's MLP, or the same MLP in torch (auto: sklearn "
        "when installed)",
    )
    ab.add_argument(
        "--resume", action="store_true", help="keep the cells already in the output JSON"
    )
    ab.add_argument("--out", default="bench/results")

    rb = add_command(
        research,
        "recsys-bench",
        cmd_research_recsys_bench,
        "NCACF recommender, warm and cold start, vs popularity/content-only/ALS/LightFM, all "
        "tuned on validation (bench/results/recsys_bench*)",
    )
    rb.add_argument("--quick", action="store_true", help="smoke run of about a minute")
    rb.add_argument(
        "--data",
        help="data folder: generic (interactions.csv + item_tags.csv and/or item_features.csv) "
        "or Last.fm HetRec 2011 (default: ../shared/data/music)",
    )
    rb.add_argument(
        "--datasets",
        help="comma-separated subset of lastfm,lastfm-dense (Last.fm data) and movielens-100k "
        "(read from the RecBole wheel: pip install --no-deps recbole)",
    )
    rb.add_argument("--seeds", type=int, help="seeds (splits and initialisations; default 3)")
    rb.add_argument("--out", default="bench/results")
    rb.add_argument("--work", default="runs/recsys_bench", help="per-run logs and checkpoints")
