"""Train the rate ladder (and the joint models) on a rented GPU inside a fixed wall-clock budget.

A GPU lease here is minutes long and the node has no GDAL, so the work is split in two:

    # here: decode the training scenes once into a scene pack (native pixels, masks, bit depths;
    # with the never-trained family validation scenes), bench/data/heldout into a second
    python bench/train_gpu.py pack --data ../shared/data/sat --out .gpu/scenes.npz
    # on the GPU node: every job in parallel, one process each, all ending by the deadline,
    # validated per sensor family (val/pan, val/vnir, val/swir, val/sar in metrics.jsonl)
    python bench/train_gpu.py run --pack .gpu/scenes.npz --val-pack .gpu/scenes.heldout.npz \
        --out $OUT/runs --budget 420

``run`` starts one process per job (``JOBS`` of :mod:`satcodec.benchmarks.gpu_jobs`, or
``--jobs a,b``). Each process loads the pack, then measures its own step rate for a fixed
window while every other job is also running (so the GPU's sharing is in the measurement),
sets its step count so that its schedule ends inside the budget, and trains with the shared
trainer (``satcodec.codec.training.train_codec`` or
``satcodec.ground_segment.training.train_joint``: the same code as ``satcodec train`` on a CPU,
fp32 with TF32 off). A job still running at the hard deadline is stopped and its last
checkpoint exported, so the lease always returns weights. Each run folder ends with
``model.safetensors``, ``model.json`` (with the ``command`` that reproduces it) and
``metrics.jsonl``; ``--tar`` packs them into one file to bring back.

The package must be importable: installed (``pip install -e .``) or, on a node without the
install, the checkout on the path (``PYTHONPATH=. python bench/train_gpu.py run ...``; the job
processes inherit it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from satcodec.benchmarks.gpu_jobs import JOBS, Job, job_command
from satcodec.benchmarks.harness import HELD_OUT_DATA


def cmd_pack(a: argparse.Namespace) -> int:
    from satcodec.codec.data import load_named_scenes, load_scenes, save_scene_pack
    from satcodec.codec.training import DEFAULT_EXCLUDE, FAMILY_VAL

    # the never-trained family validation scenes too: runs leave them out of training
    # (DEFAULT_EXCLUDE) and validate on them per family
    scenes = load_scenes(a.data, exclude=DEFAULT_EXCLUDE) + load_named_scenes(a.data, FAMILY_VAL)
    path = save_scene_pack(scenes, a.out)
    print(f"{len(scenes)} scenes -> {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    if a.held_out:  # a pack of its own: jobs validate on it (--val-pack), never train
        held = load_scenes(a.held_out)
        path = save_scene_pack(held, Path(a.out).with_suffix(".heldout.npz"))
        print(f"{len(held)} held-out scenes -> {path}")
    return 0


def _codec_config(job: Job):
    """Architecture of a codec or joint job: its init's, with the latent widened to
    ``job.latent`` if set; from scratch, stride ``job.stride`` and M = ``job.latent``."""
    from satcodec.codec.models import ModelConfig
    from satcodec.codec.registry import load_model

    if job.init is None:
        return ModelConfig(latent=job.latent or 192, stages=3 if job.stride == 8 else 4)
    config = load_model(job.init)[1].config
    return ModelConfig(**{**config.to_dict(), "latent": job.latent}) if job.latent else config


def _new_model(job: Job):
    """The job's model before training: its init's weights, or fresh ones."""
    from satcodec.codec.models import ReducedVAE
    from satcodec.codec.registry import load_model
    from satcodec.evaluation.peer_hyperprior import ScaleHyperprior

    if job.kind == "peer":
        return ScaleHyperprior()
    if job.init is None:
        return ReducedVAE(_codec_config(job))
    return load_model(job.init)[0]


def _calibrate(job: Job, a: argparse.Namespace, until: float) -> float:
    """Steps per second of this job's real training step (real batches, Adam), measured up to
    wall time ``until`` while the other jobs run too; the weights used are thrown away."""
    import torch

    from satcodec.codec.data import PatchSampler, band_samples, load_scenes
    from satcodec.codec.training import DEFAULT_EXCLUDE, rd_loss
    from satcodec.ground_segment.training import joint_loss, noisy_batch

    scenes = load_scenes(a.pack, exclude=DEFAULT_EXCLUDE)
    absolute = job.kind == "joint"
    sampler = PatchSampler(
        [b for s in scenes for b in band_samples(s, remove_mean=not absolute)], patch=a.patch
    )
    model = _new_model(job).to(a.device).train()
    opt = torch.optim.Adam(model.parameters(), lr=0.0)
    loss_fn = joint_loss(job.lmbda) if absolute else rd_loss(job.lmbda)
    steps, t_first = 0, None
    while True:
        if absolute:
            b = noisy_batch(sampler, steps, a.batch, 0)
            b = {k: v.to(a.device) for k, v in b.items()}
        else:
            b = torch.from_numpy(sampler.batch(steps, a.batch)).to(a.device)
        loss, _ = loss_fn(model, b)
        opt.zero_grad()
        loss.backward()
        opt.step()
        float(loss.detach())  # the trainer syncs once a step too
        steps += 1
        now = time.time()
        if steps == 3:  # cudnn autotuning and lazy init happen in the first steps
            t_first, s_first = now, steps
        if now >= until and t_first is not None and steps > s_first + 2:
            return (steps - s_first) / (now - t_first)


def cmd_job(a: argparse.Namespace) -> int:
    """One job, in its own process (started by ``run``)."""
    import torch

    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = False  # fp32 like the CPU runs: high-PSNR rungs need it
    torch.backends.cuda.matmul.allow_tf32 = False
    job = JOBS[a.job]
    out = Path(a.out) / job.name
    out.mkdir(parents=True, exist_ok=True)
    rate = _calibrate(job, a, a.calibrate_until)
    left = a.deadline - time.time() - a.reserve
    steps = max(1, int(rate * left))
    info = {"job": job.name, "steps_per_s": round(rate, 3), "train_s": round(left, 1)}
    info["steps"] = steps
    (out / "calibration.tmp").write_text(json.dumps(info))
    os.replace(out / "calibration.tmp", out / "calibration.json")
    print(json.dumps(info), flush=True)
    if a.equal_steps:  # every job of the group trains as many steps as the slowest can
        group = a.equal_steps.split(",")
        files = [Path(a.out) / n / "calibration.json" for n in group]
        while not all(f.exists() for f in files):
            time.sleep(0.5)
        steps = min(json.loads(f.read_text())["steps"] for f in files)
        print(f"equal steps with {group}: {steps}", flush=True)
    command = job_command(
        job, steps, out, batch=a.batch, patch=a.patch, decay_start=a.decay_start, device=a.device
    )
    if job.kind == "peer":
        from satcodec.evaluation.peer_hyperprior import train_peer

        meta = train_peer(
            a.pack, job.lmbda, steps, out, lr=job.lr, batch=a.batch, patch=a.patch,
            val_every=2000, ckpt_every=200, progress=False, device=a.device,
            schedule_kwargs={"start": a.decay_start, "final": 0.3},
        )  # fmt: skip
    elif job.kind == "joint":
        from satcodec.ground_segment.training import train_joint

        meta = train_joint(
            a.pack, job.lmbda, steps, out, init=job.init, batch=a.batch, patch=a.patch,
            lr=job.lr, ckpt_every=200, progress=False, device=a.device,
            decay_start=a.decay_start,
        )  # fmt: skip
    else:
        from satcodec.codec.training import train_codec

        meta = train_codec(
            a.pack, job.lmbda, steps, out, lr=job.lr, batch=a.batch, patch=a.patch,
            config=_codec_config(job), init=job.init, val_every=2000, ckpt_every=200, progress=False,
            device=a.device, schedule_kwargs={"start": a.decay_start, "final": 0.3},
            val_data=a.val_pack,
        )  # fmt: skip
    _finish(out, meta, command, a)
    return 0


def _finish(out: Path, meta: dict, command: str, a: argparse.Namespace) -> None:
    import torch

    meta = {**meta, "command": command, "data": "scene pack of the dev set (bench/train_gpu.py)"}
    if a.device != "cpu" and torch.cuda.is_available():
        meta["gpu"] = torch.cuda.get_device_name(0)
    (out / "model.json").write_text(json.dumps(meta, indent=2))


def _export_checkpoint(out: Path, job: Job) -> None:
    """Weights from the last checkpoint of a job stopped at the hard deadline."""
    from satcodec.codec.models import ReducedVAE, complexity
    from satcodec.codec.registry import save_model
    from satcodec.train import load_checkpoint

    model = _new_model(job) if job.kind == "peer" else ReducedVAE(_codec_config(job))
    extra = load_checkpoint(out / "checkpoint.safetensors", model)
    if job.kind == "peer":
        from satcodec.evaluation.peer_hyperprior import save_peer

        meta = {"lmbda": job.lmbda, "steps": int(extra["step"]), "stopped_at_deadline": True}
        save_peer(out / "peer.safetensors", model.eval(), meta)
        (out / "model.json").write_text(json.dumps(meta, indent=2))
        return
    meta = {
        "lmbda": job.lmbda,
        "steps": int(extra["step"]),
        "stopped_at_deadline": True,
        "init": {"model": job.init} if job.init else None,
        "complexity": complexity(model),
    }
    model_id = save_model(out / "model.safetensors", model.eval(), meta)
    (out / "model.json").write_text(json.dumps({"model_id": model_id, **meta}, indent=2))


def _last_record(out: Path) -> str:
    log = out / "metrics.jsonl"
    if not log.exists():
        return "-"
    lines = [ln for ln in log.read_text().splitlines() if ln.strip()]
    if not lines:
        return "-"
    r = json.loads(lines[-1])
    keys = ("step", "bpp", "psnr", "val/bpp", "val/psnr", "val/vnir/psnr", "val/swir/psnr")
    keys += ("val/sar/psnr", "skipped_steps")
    return " ".join(f"{k}={r[k]:.4g}" for k in keys if k in r)


def cmd_run(a: argparse.Namespace) -> int:
    t0 = time.time()
    names = a.jobs.split(",") if a.jobs else list(JOBS)
    unknown = [n for n in names if n not in JOBS]
    if unknown:
        raise SystemExit(f"unknown jobs {unknown}; known: {', '.join(JOBS)}")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    deadline = t0 + a.budget
    calibrate_until = t0 + a.calibrate
    procs = {}
    for n in names:
        (out / n).mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, __file__, "job", "--job", n, "--pack", a.pack, "--out", a.out,
               "--deadline", str(deadline), "--calibrate-until", str(calibrate_until),
               "--reserve", str(a.reserve), "--batch", str(a.batch), "--patch", str(a.patch),
               "--decay-start", str(a.decay_start), "--device", a.device]  # fmt: skip
        if a.val_pack:
            cmd += ["--val-pack", a.val_pack]
        if a.equal_steps and n in a.equal_steps.split(","):
            cmd += ["--equal-steps", a.equal_steps]
        log = open(out / n / "job.log", "w")  # noqa: SIM115 - closed with the process
        procs[n] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log)
    hard = deadline + a.grace
    while True:
        time.sleep(a.poll)
        alive = [n for n, (p, _) in procs.items() if p.poll() is None]
        print(f"[{time.time() - t0:6.0f} s] running {len(alive)}/{len(procs)}", flush=True)
        for n in names:
            print(f"    {n:26s} {_last_record(out / n)}", flush=True)
        if not alive or time.time() > hard:
            break
    for n, (p, log) in procs.items():
        if p.poll() is None:
            p.kill()
            p.wait()
            print(f"{n}: stopped at the hard deadline", flush=True)
        log.close()
        run = out / n
        if not (run / "model.json").exists() and (run / "checkpoint.safetensors").exists():
            _export_checkpoint(run, JOBS[n])
        status = "ok" if p.returncode == 0 else f"exit {p.returncode}"
        print(f"{n}: {status}; last: {_last_record(run)}", flush=True)
        if p.returncode != 0:
            print((run / "job.log").read_text()[-3000:], flush=True)
    if a.tar:
        with tarfile.open(a.tar + ".tmp", "w") as tf:
            for n in names:
                for f in sorted((out / n).iterdir()):
                    if f.name != "checkpoint.safetensors":
                        tf.add(f, arcname=f"{n}/{f.name}")
        os.replace(a.tar + ".tmp", a.tar)
        print(f"packed -> {a.tar} ({Path(a.tar).stat().st_size / 2**20:.1f} MiB)")
        if a.tar_chunk_mib:  # a lease brings files back only up to a size: cat PARTS > TAR
            data, chunk = Path(a.tar).read_bytes(), int(a.tar_chunk_mib * 2**20)
            for i in range(0, len(data), chunk):
                Path(f"{a.tar}.{i // chunk:02d}").write_bytes(data[i : i + chunk])
            Path(a.tar).unlink()
            print(f"split into {-(-len(data) // chunk)} parts of <= {a.tar_chunk_mib} MiB")
    print(f"done in {time.time() - t0:.0f} s")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="decode the training scenes into one .npz")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument(
        "--held-out",
        default=str(HELD_OUT_DATA) if HELD_OUT_DATA.is_dir() else "",
        help="images added after training (default bench/data/heldout): packed apart, as "
        "OUT.heldout.npz, for --val-pack ('' for none)",
    )
    p.set_defaults(func=cmd_pack)
    for name, func in (("run", cmd_run), ("job", cmd_job)):
        r = sub.add_parser(name)
        r.add_argument("--pack", required=True)
        r.add_argument("--out", required=True)
        r.add_argument("--batch", type=int, default=16)
        r.add_argument("--patch", type=int, default=256)
        r.add_argument("--decay-start", type=float, default=0.6)
        r.add_argument("--device", default="cuda")
        r.add_argument("--reserve", type=float, default=25.0, help="s kept for val + saving")
        r.add_argument("--equal-steps", help="comma-separated jobs that train equal steps")
        r.add_argument("--val-pack", help="held-out scenes (pack --held-out) validated per family")
        r.set_defaults(func=func)
    run = sub.choices["run"]
    run.add_argument("--budget", type=float, required=True, help="s from start to the end")
    run.add_argument("--calibrate", type=float, default=60.0, help="s from start")
    run.add_argument("--grace", type=float, default=40.0, help="s after the budget, then kill")
    run.add_argument("--poll", type=float, default=30.0)
    run.add_argument("--jobs", help="comma-separated job names (default: all)")
    run.add_argument("--tar", help="pack the finished runs into this .tar")
    run.add_argument("--tar-chunk-mib", type=float, help="split the .tar into parts this big")
    job = sub.choices["job"]
    job.add_argument("--job", required=True)
    job.add_argument("--deadline", type=float, required=True)
    job.add_argument("--calibrate-until", type=float, required=True)
    a = ap.parse_args()
    return a.func(a)


if __name__ == "__main__":
    raise SystemExit(main())
