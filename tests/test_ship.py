"""Shipping (issue 19 item 4): one library path, ``satcodec.shipping``, for codec, joint and
denoiser runs -- weights installed atomically with their card, never a partial file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from satcodec import shipping
from satcodec.cli import main
from satcodec.codec.registry import load_model
from tests.conftest import SAMPLE

VAL = "val.tif"


@pytest.fixture(scope="module")
def codec_run(tmp_path_factory, tiny_model) -> tuple[Path, Path]:
    """(run folder, data folder): a tiny codec run as ``satcodec train`` leaves it (final
    weights, model.json, metrics.jsonl, checkpoint) and one small validation scene."""
    from satcodec.raster import RasterMeta, open_raster, write_raster
    from satcodec.train import save_checkpoint

    run = tmp_path_factory.mktemp("run")
    shutil.copyfile(tiny_model, run / "model.safetensors")
    net = load_model(tiny_model)[0]
    config = {"optimizer": "adam", "lr": 1e-3, "schedule": "decay", "seed": 0, "steps": 3}
    save_checkpoint(run / "checkpoint.safetensors", net, extra={"step": 3, "config": config})
    meta = {"lmbda": 1e-3, "steps": 3, "batch": 2, "patch": 64, "val_scenes": [VAL], **config}
    (run / "model.json").write_text(json.dumps(meta))
    (run / "metrics.jsonl").write_text(json.dumps({"step": 3, "val/bpp": 1.0}) + "\n")
    data = tmp_path_factory.mktemp("data")
    with open_raster(SAMPLE) as r:
        crop, m = r.read()[:, :128, :128], r.meta
    small = RasterMeta.from_json_dict({**m.to_json_dict(), "height": 128, "width": 128})
    write_raster(data / VAL, crop, small)
    return run, data


def test_ship_codec_writes_weights_that_load_and_a_card(codec_run, tmp_path):
    run, data = codec_run
    dest = tmp_path / "models"
    path = shipping.ship_codec(run, "mine", data, rates=[0.5], default=True, dest=dest)
    assert path == dest / "mine.safetensors"
    net, info = load_model(path)
    assert info.meta["default"] is True and info.meta["lmbda"] == 1e-3
    assert info.meta["val_scenes"] == [VAL] and len(info.meta["rd"]) == 1
    card = (dest / "mine.md").read_text()
    assert f"- model id: `{info.model_id}`" in card
    assert f"satcodec ship codec {run} --name mine --data DATA --default --rates 0.5" in card
    assert sorted(p.name for p in dest.iterdir()) == ["mine.md", "mine.safetensors"]


def test_a_crash_mid_ship_leaves_no_partial_weights(codec_run, tmp_path, monkeypatch):
    run, data = codec_run
    dest = tmp_path / "models"
    dest.mkdir()

    def boom(path, text):
        raise RuntimeError("disk full")

    monkeypatch.setattr(shipping, "write_card", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        shipping.ship_codec(run, "mine", data, rates=[1.0], dest=dest)
    assert list(dest.iterdir()) == []  # no weights, no temporary file, no card
    # the ground kinds go through the same installer
    jrun = tmp_path / "jrun"
    _joint_run(jrun, codec_run[0])
    with pytest.raises(RuntimeError, match="disk full"):
        shipping.ship_ground(jrun, "joint", "j", dest=dest)
    assert list(dest.iterdir()) == []


def test_an_existing_model_is_kept_when_a_reship_fails(codec_run, tmp_path, monkeypatch):
    run, data = codec_run
    dest = tmp_path / "models"
    jrun = tmp_path / "jrun"
    _joint_run(jrun, run)
    first = shipping.ship_ground(jrun, "joint", "j", dest=dest)
    before = (first.read_bytes(), first.with_suffix(".md").read_text())
    monkeypatch.setattr(shipping, "_ground_card", lambda *a: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        shipping.ship_ground(jrun, "joint", "j", dest=dest)
    assert (first.read_bytes(), first.with_suffix(".md").read_text()) == before
    assert sorted(p.name for p in dest.iterdir()) == ["j.md", "j.safetensors"]


def _joint_run(run: Path, codec: Path) -> None:
    run.mkdir(exist_ok=True)
    shutil.copyfile(codec / "model.safetensors", run / "model.safetensors")
    meta = {"lmbda": 1e-3, "steps": 2, "init": "tiny abc", "train_scenes": ["a.tif"]}
    (run / "model.json").write_text(json.dumps(meta))


def test_ground_kinds_ship_through_the_cli_with_one_card_writer(codec_run, tmp_path, monkeypatch):
    from satcodec.ground_segment import denoiser as denoiser_module
    from satcodec.ground_segment.denoiser import GroundDenoiser, load_denoiser, save_denoiser

    written = []
    real = shipping.write_card
    monkeypatch.setattr(shipping, "write_card", lambda p, t: (written.append(p), real(p, t)))
    jrun, drun = tmp_path / "jrun", tmp_path / "drun"
    _joint_run(jrun, codec_run[0])
    drun.mkdir()
    dmeta = {"steps": 2, "channels": 8, "layers": 4, "lr": 1e-3, "train_scenes": ["a.tif"]}
    save_denoiser(drun / "denoiser.safetensors", GroundDenoiser(8, 4), dmeta)
    (drun / "denoiser.json").write_text(json.dumps(dmeta))
    # the package folder by default (pointed at a scratch one here); --dest elsewhere
    monkeypatch.setattr(denoiser_module, "WEIGHTS_DIR", tmp_path / "pkg")
    assert main(["ship", "joint", str(jrun), "--name", "j", "-q"]) == 0
    assert main(["ship", "denoiser", str(drun), "--name", "d", "-q"]) == 0
    assert main(["ground-train", "ship", "--kind", "joint", "--run", str(jrun), "--name", "k"]) == 0
    pkg = tmp_path / "pkg"
    assert written == [pkg / "codec" / "j.md", pkg / "d.md", pkg / "codec" / "k.md"]
    assert load_model(pkg / "codec" / "j.safetensors")[1].model_id
    assert load_denoiser(pkg / "d.safetensors")[1]["channels"] == 8
    card = (pkg / "codec" / "j.md").read_text()
    assert card.startswith("# j: joint (on-board denoising) codec")
    assert f"satcodec ship joint {jrun} --name j" in card
    assert f"satcodec ship denoiser {drun} --name d" in (pkg / "d.md").read_text()
    assert main(["ship", "joint", str(jrun), "--name", "x", "--dest", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "x.safetensors").is_file()


def test_ship_codec_cli_is_one_call_into_the_library(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(
        shipping, "ship_codec", lambda *a, **k: calls.append((a, k)) or _fake(tmp_path)
    )
    argv = ["ship", "codec", "runs/r", "--name", "n", "--data", "D", "--rates", "0.25,1"]
    assert main([*argv, "--default", "-q"]) == 0
    assert calls == [(("runs/r", "n", "D", [0.25, 1.0], True), {"dest": None})]
    with pytest.raises(SystemExit):
        main([*argv[:-1], "0.25,x"])


def _fake(tmp_path: Path) -> Path:
    (tmp_path / "n.md").write_text("card\n")
    return tmp_path / "n.safetensors"
