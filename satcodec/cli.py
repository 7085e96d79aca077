"""``satcodec`` command line: each subcommand is a thin shell over a library function."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from satcodec.errors import SatcodecError


def _progress(desc: str, enabled: bool = True):
    """A tqdm-backed ``progress(done, total)`` callback (None when disabled)."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    bar = None

    def cb(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=desc, unit="tile", leave=False, dynamic_ncols=True)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return cb


def cmd_encode(a: argparse.Namespace) -> int:
    from satcodec.api import encode_file

    r = encode_file(
        a.input,
        a.output,
        bit_depth=a.bit_depth,
        bpp=a.bpp,
        max_bpp=a.max_bpp,
        quality=a.quality,
        model=a.model,
        tile=a.tile,
        progress=_progress("encode", not a.quiet),
        runtime=a.runtime,
        precision=a.precision,
        export_dir=a.export_dir,
        channel_context=not a.per_channel_entropy,
        overwrite=a.overwrite,
    )
    print(
        f"{r.path}: {r.bytes} bytes, {r.bpp:.4f} bpp, step {r.quant_step:.4f}, model {r.model} ({r.model_id}), {r.tiles} tiles"
    )
    return 0


def cmd_decode(a: argparse.Namespace) -> int:
    from satcodec.api import decode_file

    r = decode_file(
        a.input,
        a.output,
        allow_damaged=a.allow_damaged,
        model=a.model,
        progress=_progress("decode", not a.quiet),
        runtime=a.runtime,
        precision=a.precision,
        export_dir=a.export_dir,
        overwrite=a.overwrite,
    )
    print(f"{r.path}: {r.bands}x{r.height}x{r.width}")
    for b, row, col in r.damaged_tiles:
        print(
            f"warning: tile (band {b}, row {row}, col {col}) is damaged and written as nodata",
            file=sys.stderr,
        )
    return 1 if r.damaged_tiles else 0


def cmd_info(a: argparse.Namespace) -> int:
    from satcodec.api import read_stream

    # partial: a truncated stream is described, its missing tiles listed as damaged
    reader = read_stream(a.input, partial=True)
    h = reader.header
    damaged = reader.check()
    size = Path(a.input).stat().st_size
    info = {
        "version": 1,
        "height": h.height,
        "width": h.width,
        "bands": h.bands,
        "dtype": h.dtype,
        "bit_depth": h.bit_depth,
        "nodata": h.nodata,
        "model_id": h.model_id,
        "quant_step": h.quant_step,
        "tile_size": h.tile_size,
        "tiles": h.bands * h.tiles_y * h.tiles_x,
        "latent_channels": h.latent_channels,
        "entropy_model": "channel-context" if h.channel_context else "per-channel",
        "bytes": size,
        "bpp": 8 * size / (h.height * h.width * h.bands),
        "damaged_tiles": damaged,
        "metadata": h.metadata,
    }
    if a.json:
        print(json.dumps(info, indent=2))
    else:
        for k, v in info.items():
            if k == "metadata":
                v = ", ".join(sorted(v)) or "-"
            print(f"{k:16s} {v}")
    return 1 if damaged else 0


def cmd_models(a: argparse.Namespace) -> int:
    from satcodec.codec.models import complexity
    from satcodec.codec.registry import list_models, load_model

    rows = []
    for info in list_models():
        net, _ = load_model(info.path)
        c = complexity(net)
        m = info.meta
        rows.append(
            f"{info.name:20s} {info.model_id}  λ={m.get('lmbda', '?'):<7} steps={m.get('steps', '?'):<6} "
            f"stride {info.config.downsampling:<2} M={info.config.latent:<3} "
            f"native≈{m.get('native_bpp', float('nan')):.2f} bpp  enc {c['encoder_mac_per_pixel'] / 1e3:.1f}k MAC/px "
            f"{c['encoder_params'] / 1e3:.0f}k params  dec {c['decoder_mac_per_pixel'] / 1e3:.1f}k MAC/px"
        )
    print("\n".join(rows) if rows else "no models installed")
    return 0


def cmd_train(a: argparse.Namespace) -> int:
    from satcodec.codec.models import ModelConfig
    from satcodec.codec.registry import load_model
    from satcodec.codec.training import train_codec

    if a.init:  # the init model's architecture, optionally with a wider latent
        config = load_model(a.init)[1].config
        if a.latent is not None:
            config = ModelConfig(**{**config.to_dict(), "latent": a.latent})
    else:
        config = ModelConfig(
            hidden=a.hidden,
            latent=a.latent or 192,
            activation=a.activation,
            stages=4 if a.stride == 16 else 3,
        )
    meta = train_codec(
        a.data,
        a.lmbda,
        a.steps,
        a.out,
        optimizer=a.optimizer,
        lr=a.lr,
        batch=a.batch,
        patch=a.patch,
        seed=a.seed,
        resume=a.resume,
        config=config,
        schedule=a.schedule,
        schedule_kwargs={"start": a.decay_start, "final": a.decay_final}
        if a.schedule == "decay"
        else None,
        init=a.init,
        device=a.device,
    )
    val = meta.get("val", {})
    print(
        f"trained {a.steps} steps at λ={a.lmbda}: val {val} -> {Path(a.out) / 'model.safetensors'}"
    )
    return 0


def cmd_tune_decoder(a: argparse.Namespace) -> int:
    from satcodec.codec.training import parse_step_range, tune_decoder

    lo, hi = parse_step_range(a.step_range)
    command = (
        f"satcodec tune-decoder --init {a.init} --data DATA --steps {a.steps} --out {a.out}"
        f" --step-range={a.step_range} --lr {a.lr} --decay-start {a.decay_start}"
    )
    meta = tune_decoder(
        a.init,
        a.data,
        a.steps,
        a.out,
        step_log2_range=(lo, hi),
        batch=a.batch,
        patch=a.patch,
        lr=a.lr,
        decay_start=a.decay_start,
        seed=a.seed,
        resume=a.resume,
        device=a.device,
        command=command,
    )
    print(f"decoder of {a.init} tuned {a.steps} steps -> {Path(a.out) / 'model.safetensors'}")
    print(f"model id {meta['model_id']}; ship it with scripts/ship_model.py {a.out} --name NAME")
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    from satcodec.demo import run_demo

    run_demo(a.image, bpp=a.bpp, model=a.model)
    return 0


def cmd_research_inna_bench(a: argparse.Namespace) -> int:
    from satcodec.benchmarks.inna_bench import BenchOptions, run_benchmark

    opts = BenchOptions(quick=a.quick, data=a.data, seeds=a.seeds, out=a.out, work=a.work)
    run_benchmark(a.tasks.split(",") if a.tasks else None, opts)
    return 0


def cmd_research_recsys_bench(a: argparse.Namespace) -> int:
    from satcodec.benchmarks.recsys_bench import RecsysBenchOptions, run_benchmark

    opts = RecsysBenchOptions(
        quick=a.quick, data=a.data, seeds=a.seeds, out=a.out, work=a.work, progress=not a.quiet
    )
    run_benchmark(opts)
    return 0


def cmd_research_abc_bench(a: argparse.Namespace) -> int:
    from satcodec.benchmarks.abc_bench import BenchOptions, run_benchmark
    from satcodec.errors import ConfigError

    def ints(text: str) -> list[int]:
        try:
            return [int(float(v)) for v in text.split(",") if v.strip()]
        except ValueError:
            raise ConfigError(
                f"--budgets: comma-separated integers expected, got {text!r}"
            ) from None

    opts = BenchOptions(
        quick=a.quick,
        tasks=a.tasks.split(",") if a.tasks else None,
        methods=a.methods.split(",") if a.methods else None,
        budgets=ints(a.budgets) if a.budgets else None,
        observations=a.observations,
        c2st_samples=a.c2st_samples,
        rounds=a.rounds,
        out=a.out,
    )
    run_benchmark(opts)
    return 0


def cmd_denoise(a: argparse.Namespace) -> int:
    from satcodec.api import check_output_path
    from satcodec.ground_segment.denoiser import denoise_file
    from satcodec.ground_segment.noise import NoiseParams

    check_output_path(a.input, a.output, a.overwrite)
    used = denoise_file(
        a.input,
        a.output,
        noise=NoiseParams.parse(a.noise) if a.noise else None,
        sensor=a.sensor,
        tile=a.tile,
        weights=a.weights,
        progress=_progress("denoise", not a.quiet),
    )
    desc = "; ".join(f"band {i}: a={p.a:.4g} b={p.b:.4g} ({p.source})" for i, p in enumerate(used))
    print(f"{a.output}: denoised, noise variance a + b*x with {desc}")
    return 0


def cmd_ground(a: argparse.Namespace) -> int:
    from satcodec.ground_segment.pipeline import GroundOptions, run_ground

    noise = None
    if a.noise:
        from satcodec.ground_segment.noise import NoiseParams

        p = NoiseParams.parse(a.noise)
        noise = (p.a, p.b)
    opts = GroundOptions(
        denoise=a.denoise,
        noise=noise,
        sensor=a.sensor,
        denoiser=a.weights,
        model_paths=a.model or [],
        follow_symlinks=a.follow_symlinks,
    )
    s = run_ground(
        a.inbox,
        a.outbox,
        opts,
        workers=a.workers,
        scheduler=a.scheduler,
        processes=a.processes,
        watch=a.watch,
        poll_s=a.poll,
        progress=not a.quiet,
    )
    # 1: done in part -- some scene is not (yet) a product: failed, waiting for its model,
    # refused or quarantined (each listed with its reason above)
    return 1 if s.failed or s.waiting or s.refused or s.quarantined else 0


def build_parser() -> argparse.ArgumentParser:
    from satcodec.export.cli import add_runtime_options

    p = argparse.ArgumentParser(prog="satcodec", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("encode", help="compress a GeoTIFF into a satcodec bitstream")
    e.add_argument("input")
    e.add_argument("-o", "--output", required=True)
    rate = e.add_mutually_exclusive_group()
    rate.add_argument("--bpp", type=float, help="target bits per pixel (within ±3%%)")
    rate.add_argument("--max-bpp", type=float, help="never exceed this many bits per pixel")
    rate.add_argument(
        "--quality", type=float, help="fixed quality 0-100 (50 = model's native point)"
    )
    e.add_argument("--model", help="shipped model name or weights path (default: nearest the rate)")
    e.add_argument("--tile", type=int, default=512, help="tile size in pixels (multiple of 16)")
    e.add_argument(
        "--bit-depth", type=int, help="override the bit depth (default: NBITS or inferred)"
    )
    e.add_argument(
        "--per-channel-entropy",
        action="store_true",
        help="code each latent channel with one scale (no cross-channel context): 0.5-15%% more "
        "bits, for readers that predate bitstream flag 0x0001",
    )
    e.add_argument("-q", "--quiet", action="store_true")
    e.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    add_runtime_options(e)
    e.set_defaults(func=cmd_encode)

    d = sub.add_parser("decode", help="decode a bitstream into a GeoTIFF")
    d.add_argument("input")
    d.add_argument("-o", "--output", required=True)
    d.add_argument(
        "--allow-damaged",
        action="store_true",
        help="write damaged tiles (and those a truncated stream lacks) as nodata instead of "
        "failing; exit status 1 when there were any",
    )
    d.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    d.add_argument("--model", help="weights path if the model is not shipped")
    d.add_argument("-q", "--quiet", action="store_true")
    add_runtime_options(d)
    d.set_defaults(func=cmd_decode)

    i = sub.add_parser("info", help="describe a bitstream and check every tile's CRC")
    i.add_argument("input")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_info)

    m = sub.add_parser("models", help="list the shipped models")
    m.set_defaults(func=cmd_models)

    t = sub.add_parser("train", help="train a codec at one rate–distortion trade-off")
    t.add_argument("--data", required=True, help="folder of GeoTIFF scenes, or a scene pack (.npz)")
    t.add_argument("--lmbda", type=float, required=True)
    t.add_argument("--steps", type=int, required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--optimizer", default="adam")
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--schedule", default="decay")
    t.add_argument(
        "--decay-start", type=float, default=0.9, help="decay schedule: fraction of the run"
    )
    t.add_argument(
        "--decay-final", type=float, default=0.3, help="decay schedule: lr multiplier after it"
    )
    t.add_argument("--device", default="cpu", help="cpu, or cuda to train on a GPU")
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--patch", type=int, default=128)
    t.add_argument("--hidden", type=int, default=64)
    t.add_argument(
        "--latent", type=int, help="latent channels M (default 192; with --init: widen to M)"
    )
    t.add_argument("--activation", default="sgdn", choices=["sgdn", "gdn", "relu"])
    t.add_argument(
        "--stride",
        type=int,
        default=16,
        choices=[8, 16],
        help="latent stride: 16 (four stages) or 8 (three; more latents per pixel, for high rates)",
    )
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--resume", action="store_true")
    t.add_argument(
        "--init", help="start from a trained model (name or .safetensors path) instead of random"
    )
    t.set_defaults(func=cmd_train)

    td = sub.add_parser(
        "tune-decoder",
        help="fine-tune a model's decoder at the quantisation steps rate control uses "
        "(board side and bitstream unchanged)",
    )
    td.add_argument("--init", required=True, help="trained model (name or .safetensors path)")
    td.add_argument("--data", required=True, help="folder of GeoTIFF scenes, or a scene pack")
    td.add_argument("--steps", type=int, required=True)
    td.add_argument("--out", required=True)
    td.add_argument(
        "--step-range",
        default="-2,1",
        help="LO,HI: quantisation steps 2^U(LO, HI) per patch (default -2,1: 0.25 to 2)",
    )
    td.add_argument("--lr", type=float, default=3e-4)
    td.add_argument("--decay-start", type=float, default=0.7, help="lr x0.3 from this fraction")
    td.add_argument("--batch", type=int, default=8)
    td.add_argument("--patch", type=int, default=128)
    td.add_argument("--seed", type=int, default=0)
    td.add_argument("--device", default="cpu", help="cpu, or cuda to train on a GPU")
    td.add_argument("--resume", action="store_true")
    td.set_defaults(func=cmd_tune_decoder)

    demo = sub.add_parser(
        "demo", help="encode+decode the shipped Pleiades crop, compare with JPEG 2000"
    )
    demo.add_argument("--image", help="GeoTIFF to use instead of the shipped sample")
    demo.add_argument("--bpp", type=float, default=1.5)
    demo.add_argument("--model")
    demo.set_defaults(func=cmd_demo)

    research = sub.add_parser("research", help="research experiments").add_subparsers(
        dest="research_command", required=True
    )
    ib = research.add_parser(
        "inna-bench", help="INNA vs SGD, SGD+momentum, Adam, Adagrad (bench/results/inna_bench*)"
    )
    ib.add_argument("--quick", action="store_true", help="smoke run of a few minutes")
    ib.add_argument("--data", help="codec task: folder of GeoTIFF scenes (default: shared data)")
    ib.add_argument("--tasks", help="comma-separated subset of: codec,digits,music")
    ib.add_argument("--seeds", type=int, help="seeds per optimizer (default 3; 2 with --quick)")
    ib.add_argument("--out", default="bench/results")
    ib.add_argument("--work", default="runs/inna_bench", help="per-run logs and checkpoints")
    ib.set_defaults(func=cmd_research_inna_bench)
    ab = research.add_parser(
        "abc-bench",
        help="ABC (rejection, SMC, flow/cVAE surrogates) vs sbi NPE on sbibm tasks, C2ST "
        "(bench/results/abc_bench*; needs the 'abc' extra and sbibm)",
    )
    ab.add_argument("--quick", action="store_true", help="smoke run of about two minutes")
    ab.add_argument(
        "--tasks", help="comma-separated subset of: two_moons,gaussian_linear,slcp,gaussian_mixture"
    )
    ab.add_argument(
        "--methods",
        help="comma-separated subset of: rej_abc,smc_abc,surrogate_flow,surrogate_cvae,npe",
    )
    ab.add_argument("--budgets", help="real-simulation budgets, e.g. 1000,10000 (the default)")
    ab.add_argument("--observations", type=int, help="sbibm observations 1..N (default 3)")
    ab.add_argument("--c2st-samples", type=int, help="C2ST samples per side (default 1000)")
    ab.add_argument("--rounds", type=int, default=1, help="surrogate rounds (default 1: amortised)")
    ab.add_argument("--out", default="bench/results")
    ab.set_defaults(func=cmd_research_abc_bench)
    rb = research.add_parser(
        "recsys-bench",
        help="NCACF music recommender, warm and cold start, vs popularity/ALS/LightFM "
        "(bench/results/recsys_bench*)",
    )
    rb.add_argument("--quick", action="store_true", help="smoke run of about two minutes")
    rb.add_argument("--data", help="Last.fm HetRec 2011 folder (default: ../shared/data/music)")
    rb.add_argument("--seeds", type=int, help="seeds (splits and initialisations; default 3)")
    rb.add_argument("--out", default="bench/results")
    rb.add_argument("--work", default="runs/recsys_bench", help="per-run logs and checkpoints")
    rb.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    rb.set_defaults(func=cmd_research_recsys_bench)

    dn = sub.add_parser(
        "denoise", help="remove sensor noise from a GeoTIFF (ground denoiser, tiled, no seams)"
    )
    dn.add_argument("input")
    dn.add_argument("-o", "--output", required=True)
    level = dn.add_mutually_exclusive_group()
    level.add_argument("--noise", help="noise variance a + b*x as 'a,b' (DN^2, DN)")
    level.add_argument(
        "--sensor", help="noise of a sensor-table entry (ground_segment/sensors.toml)"
    )
    level.add_argument(
        "--estimate-noise", action="store_true", help="estimate (a, b) from each band (default)"
    )
    dn.add_argument("--tile", type=int, default=512, help="tile size in pixels (overlapped)")
    dn.add_argument("--weights", help="denoiser weights (default: the shipped ones)")
    dn.add_argument("-q", "--quiet", action="store_true")
    dn.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    dn.set_defaults(func=cmd_denoise)

    gr = sub.add_parser(
        "ground", help="decode (and denoise) every bitstream of INBOX into COGs + STAC Items"
    )
    gr.add_argument("inbox")
    gr.add_argument("outbox")
    gr.add_argument("--denoise", action="store_true", help="run the ground denoiser")
    glevel = gr.add_mutually_exclusive_group()
    glevel.add_argument("--noise", help="noise variance a + b*x as 'a,b' (default: estimated)")
    glevel.add_argument("--sensor", help="noise of a sensor-table entry")
    gr.add_argument("--watch", action="store_true", help="keep watching INBOX for new bitstreams")
    gr.add_argument("--poll", type=float, default=5.0, help="seconds between INBOX scans (--watch)")
    gr.add_argument("--workers", type=int, default=1, help="local Dask workers")
    gr.add_argument(
        "--processes", action="store_true", help="local workers as processes (default: threads)"
    )
    gr.add_argument("--scheduler", help="address of an existing Dask scheduler (tcp://HOST:PORT)")
    gr.add_argument("--weights", help="denoiser weights (default: the shipped ones)")
    gr.add_argument(
        "--model", action="append", help="extra codec weights to decode with (repeatable)"
    )
    gr.add_argument(
        "--follow-symlinks",
        action="store_true",
        help="take INBOX symlinks that point outside INBOX (refused by default)",
    )
    gr.add_argument("-q", "--quiet", action="store_true")
    gr.set_defaults(func=cmd_ground)

    from satcodec.export.cli import add_export_parsers

    add_export_parsers(sub)

    from satcodec.evaluation import add_eval_parser

    add_eval_parser(sub)
    return p


def _error(message: str) -> int:
    print(f"satcodec: error: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Exit status: 0 done; 1 done in part (damaged tiles, failed scenes);
    2 error (one line on stderr, no output written); 130 interrupted."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SatcodecError as exc:
        return _error(str(exc))
    except BrokenPipeError:
        # the reader of our output went away (``satcodec info --json | head``): stop quietly,
        # and keep Python from reporting the pipe again when it flushes stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return _error("output closed early (broken pipe)")
    except MemoryError:
        return _error("out of memory")
    except OSError as exc:
        # an I/O failure the library did not name (disk full, lost mount): one line, no trace
        where = f": {exc.filename}" if exc.filename else ""
        return _error(f"{exc.strerror or exc}{where}")
    except KeyboardInterrupt:
        print("satcodec: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
