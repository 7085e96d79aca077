"""Ground pipeline data safety (issue 17): foreign files, ground-side model problems, partial
downlinks, spec-legal metadata, vanishing files, backoff, damaged-tile fill, clean errors, soak."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio

import satcodec
from satcodec.bitstream import StreamReader, write_stream
from satcodec.errors import ConfigError, GroundPipelineError
from satcodec.ground_segment import pipeline as gp
from satcodec.ground_segment.pipeline import (
    STAGING,
    STATE_NAME,
    GroundOptions,
    product_complete,
    run_ground,
    sha256_file,
)
from satcodec.raster import is_valid_cog
from tests.conftest import ROOT, requires_shipped_model
from tests.test_ground_pipeline import TILE, _batch, _tile_payload_offset

QUIET = {"progress": False, "log": lambda _: None}


def _state(outbox: Path) -> dict:
    return json.loads((outbox / STATE_NAME).read_text())["scenes"]


def _strict_json(path: Path) -> dict:
    def no_constants(name: str) -> None:
        raise ValueError(f"{name} in {path}")

    return json.loads(path.read_text(), parse_constant=no_constants)


def _rewrite_header(data: bytes, **changes) -> bytes:
    """The same tiles under a header with ``changes`` (e.g. another model id, dtype)."""
    r = StreamReader(data)
    return write_stream(dataclasses.replace(r.header, **changes), list(r.iter_tiles()))


def _flip_tile_byte(path: Path, band: int = 0, row: int = 1, col: int = 1) -> None:
    data = bytearray(path.read_bytes())
    a, b = _tile_payload_offset(bytes(data), band, row, col)
    data[(a + b) // 2] ^= 0x5A
    path.write_bytes(bytes(data))


# --- 1. only the pipeline's own temporaries are removed ---------------------------------------------
def test_foreign_dotfiles_survive_and_only_stale_product_temporaries_go(tiny_model, tmp_path):
    _, inbox, _ = _batch(tmp_path, tiny_model, 1)
    (inbox / "scene00.satc").rename(inbox / "s1.satc")
    foreign = {
        ".gitignore": b"*.tif\n",
        ".foo.satc.AB12": b"an uploader's in-flight file",  # INBOX == OUTBOX
        ".x": b"x",
        ".other.tif.abcd1234.tif": b"not a product of any scene here",
        ".s1.satc.abcd1234.tmp": b"an uploader using the same writer",
    }
    for name, body in foreign.items():
        (inbox / name).write_bytes(body)
    stale = [".s1.tif.abcd1234.tif", ".s1.json.x_9z0q1w.tmp", "..ground-state.json.ab_cd123.tmp"]
    for name in stale:
        (inbox / name).write_bytes(b"stale")
    (inbox / STAGING).mkdir()
    (inbox / STAGING / "k3j2.s1.tif").write_bytes(b"stale")
    s = run_ground(inbox, inbox, **QUIET)  # INBOX == OUTBOX
    assert s.produced == ["s1.satc"]
    for name, body in foreign.items():
        assert (inbox / name).read_bytes() == body, name
    for name in stale:
        assert not (inbox / name).exists(), name
    assert not (inbox / STAGING).exists()  # emptied, then removed at the end of the run
    assert product_complete(inbox, "s1.satc", sha256_file(inbox / "s1.satc"))


# --- 2. a missing or broken model is a ground-side problem, not a bad stream -----------------------
def _other_model(path: Path) -> Path:
    from satcodec.codec.registry import save_model
    from tests.conftest import tiny_stride8_model

    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(path, tiny_stride8_model(11))
    return path


def test_missing_model_waits_and_broken_weights_do_not_quarantine(
    tiny_model, tmp_path, monkeypatch
):
    src, inbox, _ = _batch(tmp_path, tiny_model, 1)
    other = _other_model(tmp_path / "not-installed" / "other.safetensors")
    satcodec.encode_file(
        src / "scene00.tif", inbox / "later.satc", quality=50, model=other, tile=64
    )
    broken = tmp_path / "broken-models"
    broken.mkdir()
    (broken / "half-copied.safetensors").write_bytes(b"\x00" * 100)
    monkeypatch.setenv(
        "SATCODEC_MODEL_PATH", os.pathsep.join([str(tiny_model.parent), str(broken)])
    )
    outbox = tmp_path / "outbox"
    s = run_ground(inbox, outbox, **QUIET)
    assert s.produced == ["scene00.satc"] and not s.quarantined
    assert s.waiting == ["later.satc"] and not s.failed
    assert (inbox / "later.satc").exists() and not (outbox / "quarantine").exists()
    rec = _state(outbox)["later.satc"]
    model_id = StreamReader((inbox / "later.satc").read_bytes()).header.model_id
    assert rec["status"] == "waiting-model" and rec["model_id"] == model_id
    assert f"model {model_id} not installed" in rec["reason"]
    assert "half-copied.safetensors" in rec["reason"]  # the unreadable file is named
    assert rec["attempts"] == 1 and rec["next_retry"] > 0
    # installed through the options: the next run produces it
    s = run_ground(inbox, outbox, GroundOptions(model_paths=[str(other)]), **QUIET)
    assert s.produced == ["later.satc"] and s.skipped == ["scene00.satc"]
    assert _state(outbox)["later.satc"]["status"] == "done"
    assert product_complete(outbox, "later.satc", sha256_file(inbox / "later.satc"))


def test_watch_notices_a_model_installed_on_the_model_path(tiny_model, tmp_path, monkeypatch):
    src, inbox, _ = _batch(tmp_path, tiny_model, 1)
    (inbox / "scene00.satc").unlink()
    staging = _other_model(tmp_path / "incoming" / "other.safetensors")
    satcodec.encode_file(
        src / "scene00.tif", inbox / "late.satc", quality=50, model=staging, tile=64
    )
    later = tmp_path / "later-models"
    later.mkdir()
    monkeypatch.setenv("SATCODEC_MODEL_PATH", os.pathsep.join([str(tiny_model.parent), str(later)]))
    outbox = tmp_path / "outbox"

    def install() -> None:  # once the scene is waiting, install its model
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if _state(outbox)["late.satc"]["status"] == "waiting-model":
                    shutil.copy(staging, later / "other.safetensors")
                    installed.append(time.time())
                    return
            except (OSError, KeyError, ValueError):
                pass
            time.sleep(0.02)

    installed: list[float] = []
    t = threading.Thread(target=install)
    t.start()
    s = run_ground(inbox, outbox, watch=True, poll_s=0.05, max_polls=120, **QUIET)
    t.join()
    assert installed, "the scene never waited for its model"
    assert s.produced == ["late.satc"] and not s.waiting  # no longer waiting once produced
    assert _state(outbox)["late.satc"]["status"] == "done"


# --- 3. partial downlink ---------------------------------------------------------------------------
def test_truncated_stream_is_recovered_with_missing_tiles_flagged(tiny_model, tmp_path):
    _, inbox, _ = _batch(tmp_path, tiny_model, 1)
    path = inbox / "scene00.satc"
    data = path.read_bytes()
    h = StreamReader(data).header
    cut_tile = (0, 1, 0)  # cut in the middle of this tile's payload: it and all after are lost
    a, b = _tile_payload_offset(data, *cut_tile)
    path.write_bytes(data[: (a + b) // 2])
    lost = [list(k) for k in h.iter_tile_keys() if k >= cut_tile]
    outbox = tmp_path / "outbox"
    s = run_ground(inbox, outbox, **QUIET)
    assert s.produced == s.flagged == ["scene00.satc"] and not s.quarantined
    props = pystac.Item.from_file(str(outbox / "scene00.json")).properties
    assert props["satcodec:truncated"] is True and props["satcodec:damaged"] is True
    assert props["satcodec:damaged_tiles"] == lost
    assert props["satcodec:stream_bytes_expected"] == len(data)
    with rasterio.open(outbox / "scene00.tif") as ds:
        band, nodata = ds.read(1), ds.nodata
    assert nodata is not None
    assert np.all(band[TILE:, :] == nodata)  # rows of tiles 1.. lost
    assert np.all(band[:TILE, :] != nodata)  # the first row of tiles recovered
    assert _state(outbox)["scene00.satc"]["truncated"] is True


# --- 4. spec-legal metadata ------------------------------------------------------------------------
def test_stream_with_mission_metadata_only_produces_a_cog(tiny_model, tmp_path):
    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    inbox.mkdir()
    arr = (np.arange(96 * 128, dtype=np.uint16).reshape(96, 128) % 4000).astype(np.uint16)
    data = satcodec.encode(
        arr, metadata={"mission": "SAT-1"}, quality=50, model=tiny_model, tile=64
    )
    (inbox / "m.satc").write_bytes(data)
    s = run_ground(inbox, outbox, **QUIET)
    assert s.produced == ["m.satc"] and not s.quarantined
    assert is_valid_cog(outbox / "m.tif")
    item = _strict_json(outbox / "m.json")
    assert item["geometry"] is None
    assert item["properties"]["satcodec:stream_metadata"] == {"mission": "SAT-1"}
    with rasterio.open(outbox / "m.tif") as ds:
        assert ds.shape == arr.shape and ds.crs is None


# --- 5. vanishing files, backoff ---------------------------------------------------------------
def _process_then_vanish(src, outbox, opts):  # top level: Dask may pickle it by reference
    res = gp._ORIGINAL_PROCESS_SCENE(src, outbox, opts)
    os.unlink(src)
    return res


def _always_fails(src, outbox, opts):
    with open(Path(outbox) / "attempts.log", "a") as fh:
        fh.write(Path(src).name + "\n")
    raise RuntimeError("this scene always fails")


def test_file_vanishing_before_quarantine_or_after_scan_leaves_no_trace(
    tiny_model, tmp_path, monkeypatch
):
    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    inbox.mkdir()
    (inbox / "garbage.satc").write_bytes(b"SATC" + bytes(200))
    monkeypatch.setattr(gp, "_ORIGINAL_PROCESS_SCENE", gp.process_scene, raising=False)
    monkeypatch.setattr(gp, "process_scene", _process_then_vanish)
    real_scan = gp.scan_inbox
    monkeypatch.setattr(
        gp, "scan_inbox", lambda d, p=gp.DEFAULT_PATTERNS: [*real_scan(d, p), d / "ghost.satc"]
    )
    s = run_ground(inbox, outbox, watch=True, poll_s=0.01, max_polls=3, **QUIET)
    assert s.vanished == ["garbage.satc"] and not s.quarantined and not s.failed
    assert not (outbox / "quarantine" / "garbage.satc.reason.json").exists()
    assert not list((outbox / "quarantine").glob("*")) if (outbox / "quarantine").exists() else True
    assert "garbage.satc" not in _state_or_empty(outbox)


def _state_or_empty(outbox: Path) -> dict:
    return _state(outbox) if (outbox / STATE_NAME).exists() else {}


def test_permanently_failing_scene_backs_off_and_state_is_not_rewritten(
    tiny_model, tmp_path, monkeypatch
):
    _, inbox, _ = _batch(tmp_path, tiny_model, 2)
    outbox = tmp_path / "outbox"
    run_ground(inbox, outbox, **QUIET)  # both done
    (inbox / "bad.satc").write_bytes((inbox / "scene00.satc").read_bytes()[:-1] + b"\x00")
    writes: list[str] = []
    real_write = gp.atomic_write_bytes
    monkeypatch.setattr(
        gp,
        "atomic_write_bytes",
        lambda dest, data: (writes.append(Path(dest).name), real_write(dest, data)),
    )
    real = gp.process_scene
    monkeypatch.setattr(
        gp,
        "process_scene",
        lambda src, o, opts: (
            _always_fails(src, o, opts) if src.endswith("bad.satc") else real(src, o, opts)
        ),
    )
    polls = 60
    run_ground(inbox, outbox, watch=True, poll_s=0.02, max_polls=polls, **QUIET)
    attempts = (outbox / "attempts.log").read_text().split()
    # picked up at the 2nd poll, then retried after 1, 2, 4, 8, 16, 32 polls: at most 7 tries
    assert 2 <= len(attempts) <= 10, len(attempts)  # without backoff: one per poll, ~58
    rec = _state(outbox)["bad.satc"]
    assert rec["status"] == "failed" and rec["attempts"] == len(attempts)
    assert "always fails" in rec["error"] and rec["next_retry"] > time.time() - 5
    # the state file was rewritten once per attempt, never for the scenes already done
    assert sum(w.endswith(STATE_NAME) for w in writes) == len(attempts)


# --- 6. damaged tiles without a nodata value ----------------------------------------------------------
@requires_shipped_model
def test_damaged_tiles_do_not_turn_genuine_zeros_into_nodata(tmp_path):
    from satcodec.raster import open_raster
    from tests.conftest import SAMPLE

    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    inbox.mkdir()
    with open_raster(SAMPLE) as r:
        img = r.read()[:, : 2 * TILE, : 3 * TILE].copy()
    # a dark area (shadow, water): genuine zeros, in tiles that stay intact
    img[:, :, : 2 * TILE] = np.clip(img[:, :, : 2 * TILE].astype(int) - 2000, 0, None) // 50
    data = satcodec.encode(img.astype(np.uint16), bit_depth=12, quality=50, tile=TILE)
    (inbox / "z.satc").write_bytes(data)
    _flip_tile_byte(inbox / "z.satc", 0, 1, 2)
    decoded, _ = satcodec.decode((inbox / "z.satc").read_bytes(), allow_damaged=True)
    zeros = decoded[0][:, : 2 * TILE] == 0
    assert zeros.sum() > 1000  # the shipped codec keeps most of them at exactly 0
    s = run_ground(inbox, outbox, **QUIET)
    assert s.flagged == ["z.satc"]
    props = pystac.Item.from_file(str(outbox / "z.json")).properties
    with rasterio.open(outbox / "z.tif") as ds:
        band, nodata, valid = ds.read(1), ds.nodata, ds.read_masks(1) > 0
    assert nodata is not None and nodata != 0 and nodata > 4095  # outside the 12-bit data
    assert props["satcodec:damaged_fill"] == nodata
    assert np.all(band[TILE : 2 * TILE, 2 * TILE : 3 * TILE] == nodata)
    assert np.all(valid[:, : 2 * TILE][zeros])  # genuine zeros stay data
    assert np.array_equal(band[:, : 2 * TILE][zeros], np.zeros(zeros.sum(), band.dtype))


def _mask_band_supported() -> bool:
    """Whether satcodec.raster.write_cog writes a nodata mask without a nodata value."""
    import tempfile

    from satcodec.errors import RasterError
    from satcodec.raster import RasterMeta, write_cog

    meta = RasterMeta(height=16, width=16, count=1, dtype="uint8", bit_depth=8)
    with tempfile.TemporaryDirectory() as d:
        try:
            write_cog(
                Path(d) / "m.tif",
                np.ones((1, 16, 16), np.uint8),
                meta,
                nodata_mask=np.eye(16, dtype=bool),
            )
        except RasterError:
            return False
    return True


def test_damaged_tiles_of_full_range_data_use_a_mask_band(tiny_model, tmp_path):
    if not _mask_band_supported():
        pytest.skip("satcodec.raster.write_cog does not write internal masks yet (raster helper)")
    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    inbox.mkdir()
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (128, 192), dtype=np.uint8)
    (inbox / "u8.satc").write_bytes(satcodec.encode(arr, quality=50, model=tiny_model, tile=TILE))
    _flip_tile_byte(inbox / "u8.satc", 0, 1, 1)
    s = run_ground(inbox, outbox, **QUIET)
    assert s.flagged == ["u8.satc"]
    props = pystac.Item.from_file(str(outbox / "u8.json")).properties
    assert props["satcodec:damaged_fill"] == "mask"
    with rasterio.open(outbox / "u8.tif") as ds:
        assert ds.nodata is None
        valid = ds.read_masks(1) > 0
    assert not valid[TILE : 2 * TILE, TILE : 2 * TILE].any()
    assert valid[:TILE].all()


# --- 7. clean errors and hostile inputs ------------------------------------------------------------
def test_outbox_that_is_a_file_is_a_clean_error(tiny_model, tmp_path):
    _, inbox, _ = _batch(tmp_path, tiny_model, 1)
    outbox = tmp_path / "a-file"
    outbox.write_text("not a folder")
    with pytest.raises(GroundPipelineError, match="not a folder"):
        run_ground(inbox, outbox, **QUIET)
    r = subprocess.run(
        [sys.executable, "-m", "satcodec.cli", "ground", str(inbox), str(outbox), "-q"],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "not a folder" in r.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_outbox_is_a_clean_error(tiny_model, tmp_path):
    _, inbox, _ = _batch(tmp_path, tiny_model, 1)
    outbox = tmp_path / "ro"
    outbox.mkdir()
    outbox.chmod(0o555)
    try:
        with pytest.raises(GroundPipelineError, match="not writable"):
            run_ground(inbox, outbox, **QUIET)
    finally:
        outbox.chmod(0o755)


@pytest.mark.parametrize("poll", [-1.0, math.nan, math.inf])
def test_bad_poll_interval_is_a_config_error(tmp_path, poll):
    (tmp_path / "in").mkdir()
    with pytest.raises(ConfigError, match="poll"):
        run_ground(tmp_path / "in", tmp_path / "out", watch=True, poll_s=poll, max_polls=2, **QUIET)


def test_symlink_outside_inbox_is_refused_unless_allowed(tiny_model, tmp_path):
    _, inbox, _ = _batch(tmp_path, tiny_model, 1)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    target = elsewhere / "secret.satc"
    (inbox / "scene00.satc").rename(target)
    (inbox / "link.satc").symlink_to(target)
    garbage = elsewhere / "junk.bin"
    garbage.write_bytes(b"not a stream")
    (inbox / "junk.satc").symlink_to(garbage)
    outbox = tmp_path / "outbox"
    s = run_ground(inbox, outbox, **QUIET)
    assert sorted(s.refused) == ["junk.satc", "link.satc"] and not s.produced
    assert not s.quarantined and garbage.exists() and target.exists()
    rec = _state(outbox)["link.satc"]
    assert rec["status"] == "refused" and "outside INBOX" in rec["reason"]
    assert not (outbox / "link.tif").exists()
    # refused and unchanged: nothing to redo, the state file is not rewritten
    before = (outbox / STATE_NAME).stat().st_mtime_ns
    s = run_ground(inbox, outbox, **QUIET)
    assert not s.produced and (outbox / STATE_NAME).stat().st_mtime_ns == before
    s = run_ground(inbox, outbox, GroundOptions(follow_symlinks=True), **QUIET)
    assert s.produced == ["link.satc"] and s.quarantined == ["junk.satc"]
    assert garbage.exists()  # the link was quarantined, not its target


def test_oversized_stream_is_refused_without_being_read(tiny_model, tmp_path, monkeypatch):
    _, inbox, _ = _batch(tmp_path, tiny_model, 1)
    size = (inbox / "scene00.satc").stat().st_size
    monkeypatch.setattr(gp, "sha256_file", lambda p: pytest.fail(f"{p} was read"))
    s = run_ground(inbox, tmp_path / "outbox", GroundOptions(max_stream_bytes=size - 1), **QUIET)
    assert s.refused == ["scene00.satc"]
    rec = _state(tmp_path / "outbox")["scene00.satc"]
    assert rec["status"] == "refused" and "over the limit" in rec["reason"]


def test_image_larger_than_the_station_decodes_is_refused(tiny_model, tmp_path):
    _, inbox, _ = _batch(tmp_path, tiny_model, 1)
    s = run_ground(inbox, tmp_path / "outbox", GroundOptions(max_pixels=128 * 160 - 1), **QUIET)
    assert s.refused == ["scene00.satc"] and not s.produced
    rec = _state(tmp_path / "outbox")["scene00.satc"]
    assert "max_pixels" in rec["reason"] and rec["sha256"]


def test_hostile_georeferencing_gives_no_geometry_but_a_valid_item(tiny_model, tmp_path):
    from rasterio.crs import CRS

    from satcodec.raster import RasterMeta

    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    inbox.mkdir()
    arr = (np.arange(96 * 128).reshape(96, 128) % 4000).astype(np.uint16)
    for name, epsg, transform in [
        ("huge", 4326, (1e308, 0.0, 0.0, 0.0, -1e308, 0.0)),  # corners overflow to inf
        ("offglobe", 4326, (10.0, 0.0, 0.0, 0.0, -10.0, 5000.0)),  # latitudes 4040..5000
        ("unprojectable", 32631, (1e9, 0.0, 6e15, 0.0, -1e9, 4e15)),
    ]:
        meta = RasterMeta(
            height=96,
            width=128,
            count=1,
            dtype="uint16",
            bit_depth=12,
            crs_wkt=CRS.from_epsg(epsg).to_wkt(),
            transform=transform,
        )
        md = meta.to_json_dict()
        data = satcodec.encode(
            arr, metadata=md, bit_depth=12, quality=50, model=tiny_model, tile=64
        )
        (inbox / f"{name}.satc").write_bytes(data)
    s = run_ground(inbox, outbox, **QUIET)
    names = ["huge", "offglobe", "unprojectable"]
    assert sorted(s.produced) == [f"{n}.satc" for n in names]
    for name in names:
        item = _strict_json(outbox / f"{name}.json")  # no Infinity/NaN anywhere
        assert item["geometry"] is None and item.get("bbox") is None
        assert any("geometry" in w for w in item["properties"]["satcodec:warnings"])
        pystac.Item.from_dict(item)


@pytest.mark.parametrize("dtype", ["uint32", "int32", "int16"])
def test_wide_and_signed_streams_decode_or_are_refused_with_a_clear_reason(
    tiny_model, tmp_path, dtype
):
    """The bitstream allows uint32/int32, the COG writer does not: refused by name, not
    failed forever; int16 is written."""
    _, inbox, _ = _batch(tmp_path, tiny_model, 1)
    data = (inbox / "scene00.satc").read_bytes()
    (inbox / "scene00.satc").write_bytes(_rewrite_header(data, dtype=dtype, metadata={}))
    outbox = tmp_path / "outbox"
    s = run_ground(inbox, outbox, **QUIET)
    assert not s.failed and not s.quarantined
    rec = _state(outbox)["scene00.satc"]
    if dtype == "int16":
        assert s.produced == ["scene00.satc"] and is_valid_cog(outbox / "scene00.tif")
        with rasterio.open(outbox / "scene00.tif") as ds:
            assert ds.dtypes[0] == "int16"
        return
    assert s.refused == ["scene00.satc"]
    assert rec["status"] == "refused" and dtype in rec["reason"]
    assert (inbox / "scene00.satc").exists()
    # refused and unchanged: not retried by the next run
    s = run_ground(inbox, outbox, **QUIET)
    assert s.refused == [] and not s.produced and not s.failed


# --- 8. soak: the watcher under SIGKILL, with every kind of INBOX traffic ----------------------------
def _soak(work: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict[str, dict[str, int]]]:
    """Run bench/ground_soak.py as the script it is; its exit status and per-kind counts."""
    cmd = [sys.executable, str(ROOT / "bench" / "ground_soak.py"), "--workdir", str(work)]
    r = subprocess.run([*cmd, "--out", "", *args], capture_output=True, text=True, timeout=600)
    table = [ln.split("|")[1:-1] for ln in r.stdout.splitlines() if ln.startswith("| ")]
    head = [c.strip() for c in table[0]] if table else []
    counts = {
        row[0].strip(): {h: int(c) for h, c in zip(head[2:], row[2:], strict=True)}
        for row in table[1:]
    }
    return r, counts


@requires_shipped_model
def test_short_soak_with_kills(tmp_path):
    r, counts = _soak(tmp_path / "soak", "--minutes", "0.5", "--kills", "3", "--seed", "7")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    verdict = next(ln for ln in r.stdout.splitlines() if ln.startswith("PASS: "))
    assert int(verdict.split()[1]) >= 3  # SIGKILLs
    for kind in ("valid", "corrupt", "truncated", "garbage", "unknown-model"):
        assert counts[kind]["dropped"] >= 1, (kind, counts)
