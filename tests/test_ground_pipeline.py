"""Ground pipeline: COG + STAC products, quarantine, damaged tiles, Dask workers, SIGKILL resume."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin

import satcodec
from satcodec.bitstream import StreamReader
from satcodec.ground_segment.pipeline import (
    STATE_NAME,
    GroundOptions,
    run_ground,
    sha256_file,
)
from satcodec.raster import is_valid_cog

TILE = 64


def _tile_payload_offset(data: bytes, band: int, row: int, col: int) -> tuple[int, int]:
    """(start, end) of one tile's entropy payload inside the stream (from the tile table)."""
    h = StreamReader(data).header
    idx = h.tile_index(band, row, col)
    table_start = 72 + 4 * h.bands + struct.unpack_from("<I", data, 68)[0]
    off, length = struct.unpack_from("<QI", data, table_start + 12 * idx)
    head = 20 + h.latent_channels
    return off + head + 4, off + length - 4


def _scene(path: Path, seed: int, h: int = 128, w: int = 160) -> None:
    """A small 12-bit UTM GeoTIFF with smooth structure and texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = 800 + 600 * np.sin(xx / (9 + seed)) * np.cos(yy / 13) + rng.normal(0, 30, (h, w))
    img = np.clip(img, 0, 4095).astype(np.uint16)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        height=h,
        width=w,
        count=1,
        dtype="uint16",
        crs=CRS.from_epsg(32631),
        transform=from_origin(600000 + 1000 * seed, 4800000, 0.5, 0.5),
        nbits=12,
    ) as ds:
        ds.write(img, 1)


def _batch(tmp: Path, model: Path, n: int) -> tuple[Path, Path, dict[str, Path]]:
    src, inbox = tmp / "src", tmp / "inbox"
    src.mkdir()
    inbox.mkdir()
    sources = {}
    for i in range(n):
        tif = src / f"scene{i:02d}.tif"
        _scene(tif, i)
        satcodec.encode_file(tif, inbox / f"scene{i:02d}.satc", quality=50, model=model, tile=TILE)
        sources[f"scene{i:02d}"] = tif
    return src, inbox, sources


def _check_product(outbox: Path, stem: str, source_tif: Path) -> dict:
    cog, item_path = outbox / f"{stem}.tif", outbox / f"{stem}.json"
    assert is_valid_cog(cog), cog
    item = pystac.Item.from_file(str(item_path))
    assert item.properties["satcodec:cog_sha256"] == sha256_file(cog)
    assert item.assets["data"].extra_fields["file:checksum"] == "1220" + sha256_file(cog)
    with rasterio.open(source_tif) as a, rasterio.open(cog) as b:
        assert a.crs == b.crs and a.transform == b.transform
        assert (a.width, a.height, a.count) == (b.width, b.height, b.count)
        assert item.properties["proj:code"] == f"EPSG:{a.crs.to_epsg()}"  # see test_stac.py
    assert item.geometry is not None and item.bbox is not None
    return item.properties


def test_two_worker_cluster_flags_damaged_tile_and_quarantines_corrupt_stream(tiny_model, tmp_path):
    _, inbox, sources = _batch(tmp_path, tiny_model, 4)
    # scene01: one tile damaged (flagged, written as nodata); scene03: unreadable header
    data = bytearray((inbox / "scene01.satc").read_bytes())
    a, b = _tile_payload_offset(bytes(data), 0, 1, 1)
    data[(a + b) // 2] ^= 0x5A
    (inbox / "scene01.satc").write_bytes(bytes(data))
    corrupt = bytearray((inbox / "scene03.satc").read_bytes())
    corrupt[10:30] = bytes(20)
    (inbox / "scene03.satc").write_bytes(bytes(corrupt))
    outbox = tmp_path / "outbox"
    lines: list[str] = []
    s = run_ground(inbox, outbox, workers=2, progress=False, log=lines.append)
    assert sorted(s.produced) == ["scene00.satc", "scene01.satc", "scene02.satc"]
    assert s.flagged == ["scene01.satc"] and s.quarantined == ["scene03.satc"] and not s.failed
    assert "1 quarantined" in lines[0] and "scene03.satc" in "\n".join(lines)
    props = {k: _check_product(outbox, k, sources[k]) for k in ("scene00", "scene01", "scene02")}
    assert props["scene01"]["satcodec:damaged"] is True
    assert props["scene01"]["satcodec:damaged_tiles"] == [[0, 1, 1]]
    assert props["scene00"]["satcodec:damaged"] is False
    with rasterio.open(outbox / "scene01.tif") as ds:
        band, nodata = ds.read(1), ds.nodata
    assert nodata is not None and np.all(band[TILE : 2 * TILE, TILE : 2 * TILE] == nodata)
    assert not (inbox / "scene03.satc").exists()
    assert (outbox / "quarantine" / "scene03.satc").exists()
    reason = json.loads((outbox / "quarantine" / "scene03.satc.reason.json").read_text())
    assert "Error" in reason["reason"]
    state = json.loads((outbox / STATE_NAME).read_text())["scenes"]
    workers = {r["worker"] for r in state.values() if r["status"] == "done"}
    assert len(workers) == 2, workers  # both workers of the cluster did scenes
    # a second run is idempotent: nothing redone
    s2 = run_ground(inbox, outbox, workers=2, progress=False, log=lambda _: None)
    assert sorted(s2.skipped) == ["scene00.satc", "scene01.satc", "scene02.satc"]
    assert not s2.produced and not s2.quarantined


def test_sigkill_mid_batch_then_restart_gives_every_scene_exactly_once(tiny_model, tmp_path):
    n = 8
    _, inbox, sources = _batch(tmp_path, tiny_model, n)
    outbox = tmp_path / "outbox"
    env = dict(os.environ, SATCODEC_MODEL_PATH=str(tiny_model.parent), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "satcodec.cli", "ground", str(inbox), str(outbox), "-q"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 600
    killed_with = None
    while time.time() < deadline and proc.poll() is None:
        items = list(outbox.glob("scene*.json")) if outbox.exists() else []
        if items:  # at least one product out: kill now, mid-batch
            os.kill(proc.pid, signal.SIGKILL)
            killed_with = len(items)
            break
        time.sleep(0.01)
    if proc.poll() is None and killed_with is None:
        proc.kill()
    proc.wait(timeout=60)
    assert killed_with is not None, proc.stderr.read().decode()[-2000:]
    assert killed_with < n, "the batch finished before the kill: nothing was interrupted"
    assert proc.returncode == -signal.SIGKILL
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"{n - killed_with} produced" in r.stdout or "recovered" in r.stdout, r.stdout
    # every scene exactly once, all valid, no leftovers
    cogs = sorted(p.stem for p in outbox.glob("*.tif"))
    assert cogs == sorted(sources)
    assert sorted(p.stem for p in outbox.glob("scene*.json")) == sorted(sources)
    assert not [p for p in outbox.iterdir() if p.name.startswith(".") and "ground" not in p.name]
    assert not (outbox / ".ground-tmp").exists()  # the pipeline's temporaries: none left
    for stem, tif in sources.items():
        _check_product(outbox, stem, tif)
    state = json.loads((outbox / STATE_NAME).read_text())["scenes"]
    assert sorted(state) == sorted(f"{s}.satc" for s in sources)
    assert all(r["status"] == "done" for r in state.values())
    # a third run does nothing
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert f"0 produced (0 flagged with damaged tiles), {n} already done" in r.stdout, r.stdout


def test_watch_mode_picks_up_a_new_bitstream(tiny_model, tmp_path):
    _, inbox, sources = _batch(tmp_path, tiny_model, 1)
    outbox = tmp_path / "outbox"
    s = run_ground(
        inbox, outbox, watch=True, poll_s=0.05, max_polls=3, progress=False, log=lambda _: None
    )
    assert s.produced == ["scene00.satc"]
    _check_product(outbox, "scene00", sources["scene00"])


def test_denoise_in_pipeline_records_noise_parameters(tiny_model, tmp_path):
    pytest.importorskip("safetensors")
    from satcodec.ground_segment.denoiser import DEFAULT_WEIGHTS

    if not DEFAULT_WEIGHTS.exists():
        pytest.skip("no shipped denoiser weights")
    _, inbox, sources = _batch(tmp_path, tiny_model, 1)
    outbox = tmp_path / "outbox"
    opts = GroundOptions(denoise=True, sensor="pleiades-pan")
    s = run_ground(inbox, outbox, opts, progress=False, log=lambda _: None)
    assert s.produced == ["scene00.satc"]
    props = _check_product(outbox, "scene00", sources["scene00"])
    assert props["satcodec:denoised"] is True and props["satcodec:denoiser"] == "ground"
    assert props["satcodec:noise"]["source"] == "sensor:pleiades-pan"


@pytest.mark.parametrize("stage", [False, True])
def test_joint_model_streams_are_not_denoised_twice(tmp_path, stage):
    """A joint model's decoder already denoises (with its own denoising stage, if it has one):
    --denoise leaves its output as decoded."""
    from satcodec.codec.models import with_denoising_stage
    from satcodec.codec.registry import save_model
    from satcodec.ground_segment.denoiser import load_denoiser
    from satcodec.ground_segment.training import normalised_sensor_noise
    from tests.conftest import tiny_stride8_model

    joint = tmp_path / "joint.safetensors"
    net = tiny_stride8_model(7)
    if stage:
        noise = normalised_sensor_noise("pleiades-pan")
        net = with_denoising_stage(net, load_denoiser()[0], *noise)
    save_model(joint, net, {"kind": "joint-denoising"})
    _, inbox, sources = _batch(tmp_path, joint, 1)
    outbox = tmp_path / "outbox"
    opts = GroundOptions(denoise=True, sensor="pleiades-pan", model_paths=[str(joint)])
    s = run_ground(inbox, outbox, opts, progress=False, log=lambda _: None)
    assert s.produced == ["scene00.satc"]
    props = _check_product(outbox, "scene00", sources["scene00"])
    assert props["satcodec:denoised"] is True and props["satcodec:denoiser"] == "joint model"
    assert props["satcodec:noise"] is None
    decoded, _ = satcodec.decode((inbox / "scene00.satc").read_bytes(), model=joint)
    with rasterio.open(outbox / "scene00.tif") as ds:
        np.testing.assert_array_equal(ds.read(), decoded)


def test_existing_scheduler_address_is_used(tiny_model, tmp_path):
    from distributed import LocalCluster

    _, inbox, sources = _batch(tmp_path, tiny_model, 2)
    outbox = tmp_path / "outbox"
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        ours = set(cluster.scheduler_info["workers"])
        s = run_ground(
            inbox,
            outbox,
            scheduler=cluster.scheduler_address,
            progress=False,
            log=lambda _: None,
        )
    assert sorted(s.produced) == ["scene00.satc", "scene01.satc"]
    # the scenes ran on that cluster's worker, not on a local cluster run_ground made itself
    state = json.loads((outbox / STATE_NAME).read_text())["scenes"]
    assert {rec["worker"] for rec in state.values()} <= ours and ours
    for stem, tif in sources.items():
        _check_product(outbox, stem, tif)
