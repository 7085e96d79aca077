"""The ground pipeline: INBOX of bitstreams → (denoise) → OUTBOX of COGs + STAC Items.

Guarantees (see ``tests/test_ground_pipeline.py``):

* **Atomic outputs.** Each product is written to a temporary name and renamed: the COG first,
  then its STAC Item (which records the COG's checksum). A product is complete when its Item
  exists and the COG matches the checksum the Item states.
* **Resumable and idempotent.** ``OUTBOX/.ground-state.json`` (rewritten atomically after
  every scene) records each bitstream by name and SHA-256. A restarted run skips scenes whose
  recorded products are intact, adopts complete products a killed run wrote but did not record,
  and redoes the rest; products have fixed names, so every scene ends up exactly once.
  A lock file stops two runs from sharing an OUTBOX.
* **Failures do not stop the batch.** A scene with damaged tiles is written with those tiles
  as nodata and flagged (``satcodec:damaged`` in its Item). A bitstream that cannot be read
  at all is moved to ``OUTBOX/quarantine/`` with ``NAME.reason.json``. Unexpected errors are
  recorded as ``failed`` and retried by the next run.
* **Scale-out on Dask distributed**: an in-process local cluster by default (``workers``
  threads, or worker processes with ``processes=True``), or an existing cluster
  (``scheduler="tcp://host:port"``, whose workers must see INBOX and OUTBOX at the same paths
  and have satcodec installed). The driver alone writes the state file and moves files to
  quarantine; workers write their scene's products.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from satcodec.errors import GroundPipelineError, SatcodecError
from satcodec.fileutil import atomic_write_bytes

STATE_NAME = ".ground-state.json"
LOCK_NAME = ".ground.lock"
QUARANTINE = "quarantine"
STATE_VERSION = 1
DEFAULT_PATTERNS = ("*.satc",)


@dataclass
class GroundOptions:
    """What to do with each scene (sent to the workers as a plain dict)."""

    denoise: bool = False
    noise: tuple[float, float] | None = None  # (a, b) in DN; None: sensor or estimate
    sensor: str | None = None  # a sensor-table name
    denoiser: str | None = None  # weights path; None: shipped
    model_paths: list[str] = field(default_factory=list)  # extra codec weights to search
    blocksize: int = 512

    def to_dict(self) -> dict[str, Any]:
        return {
            "denoise": self.denoise,
            "noise": list(self.noise) if self.noise else None,
            "sensor": self.sensor,
            "denoiser": self.denoiser,
            "model_paths": list(self.model_paths),
            "blocksize": self.blocksize,
        }


@dataclass
class GroundSummary:
    produced: list[str] = field(default_factory=list)
    flagged: list[str] = field(default_factory=list)  # produced, with damaged tiles
    skipped: list[str] = field(default_factory=list)  # already done by an earlier run
    adopted: list[str] = field(default_factory=list)  # complete products found unrecorded
    quarantined: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    def line(self) -> str:
        return (
            f"ground: {len(self.produced)} produced ({len(self.flagged)} flagged with damaged tiles), "
            f"{len(self.skipped)} already done, {len(self.adopted)} recovered, "
            f"{len(self.quarantined)} quarantined, {len(self.failed)} failed "
            f"in {self.elapsed_s:.1f} s"
        )


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- one scene (runs on a worker) ---------------------------------------------------------------
def _codec_weight_paths(extra: list[str]) -> list[Path]:
    from satcodec.ground_segment.denoiser import WEIGHTS_DIR

    found = sorted((WEIGHTS_DIR / "codec").glob("*.safetensors"))
    return found + [Path(p) for p in extra]


def _geometry(meta: Any) -> tuple[dict | None, list[float] | None]:
    """GeoJSON footprint (EPSG:4326) and bbox, or (None, None) without a CRS + transform."""
    if not meta.crs_wkt or meta.transform is None:
        return None, None
    from rasterio.crs import CRS
    from rasterio.warp import transform_geom

    a, b, c, d, e, f = meta.transform
    corners = [(0, 0), (meta.width, 0), (meta.width, meta.height), (0, meta.height), (0, 0)]
    ring = [[a * col + b * row + c, d * col + e * row + f] for col, row in corners]
    try:
        geom = transform_geom(
            CRS.from_wkt(meta.crs_wkt), "EPSG:4326", {"type": "Polygon", "coordinates": [ring]}
        )
    except Exception:  # noqa: BLE001 - a CRS GDAL cannot reproject: no footprint, not a failure
        return None, None
    xs = [p[0] for p in geom["coordinates"][0]]
    ys = [p[1] for p in geom["coordinates"][0]]
    return geom, [min(xs), min(ys), max(xs), max(ys)]


def _stac_item(
    stem: str,
    cog: Path,
    cog_sha: str,
    meta: Any,
    props: dict[str, Any],
) -> dict[str, Any]:
    import pystac

    geom, bbox = _geometry(meta)
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    item = pystac.Item(
        id=stem,
        geometry=geom,
        bbox=bbox,
        datetime=now,
        properties={"processing:datetime_note": "datetime is the ground processing time", **props},
        stac_extensions=[
            "https://stac-extensions.github.io/file/v2.1.0/schema.json",
            "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
        ],
    )
    item.properties["proj:code"] = None
    item.properties["proj:wkt2"] = meta.crs_wkt
    item.properties["proj:shape"] = [meta.height, meta.width]
    if meta.transform is not None:
        item.properties["proj:transform"] = list(meta.transform)
    item.add_asset(
        "data",
        pystac.Asset(
            href=f"./{cog.name}",
            media_type=pystac.MediaType.COG,
            roles=["data"],
            extra_fields={"file:checksum": "1220" + cog_sha, "file:size": cog.stat().st_size},
        ),
    )
    return item.to_dict(include_self_link=False)


def _noise_for(opts: dict[str, Any], image: np.ndarray, nodata: float | None) -> Any:
    from satcodec.ground_segment.noise import NoiseParams, estimate_noise, sensor_noise

    if opts.get("noise"):
        a, b = opts["noise"]
        return NoiseParams(float(a), float(b), "given")
    if opts.get("sensor"):
        return sensor_noise(opts["sensor"])
    return estimate_noise(image[0], nodata=nodata)


def product_paths(outbox: str | os.PathLike, name: str) -> tuple[Path, Path]:
    stem = Path(name).stem
    return Path(outbox) / f"{stem}.tif", Path(outbox) / f"{stem}.json"


def process_scene(src: str, outbox: str, opts: dict[str, Any]) -> dict[str, Any]:
    """Decode one bitstream (damaged tiles as nodata), denoise if asked, write COG + STAC Item.

    Returns a result dict: ``status`` is ``done`` or ``quarantine`` (unreadable bitstream,
    with ``reason``). Other exceptions propagate (the driver records them as failed).
    """
    from satcodec.api import _meta_for_header
    from satcodec.bitstream import StreamReader
    from satcodec.codec.pipeline import Decoder, decode_to_array
    from satcodec.codec.registry import find_model_by_id
    from satcodec.raster import RasterMeta, is_valid_cog, write_cog

    t0 = time.time()
    path = Path(src)
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    base = {"name": path.name, "sha256": sha}
    try:
        reader = StreamReader(data)
        h = reader.header
        net, info = find_model_by_id(h.model_id, _codec_weight_paths(opts.get("model_paths", [])))
        decoder = Decoder(reader, net, allow_damaged=True)
        res = decode_to_array(decoder)
        meta = RasterMeta.from_json_dict(h.metadata) if h.metadata else None
        meta = _meta_for_header(meta, h)
    except SatcodecError as exc:
        return {**base, "status": "quarantine", "reason": f"{type(exc).__name__}: {exc}"}
    array = res.array
    damaged = [list(map(int, t)) for t in res.damaged]
    mask = None
    if damaged:
        meta.nodata = res.nodata if res.nodata is not None else 0.0
        mask = np.zeros(array.shape, bool)
        for b, r, c in damaged:
            y0, x0, ph, pw = h.tile_pixel_window(r, c)
            mask[b, y0 : y0 + ph, x0 : x0 + pw] = True
    noise = None
    # a joint model's decoder has already removed the noise: denoising again would only blur
    joint = info.meta.get("kind") == "joint-denoising"
    if opts.get("denoise") and not joint:
        from satcodec.ground_segment.denoiser import denoise_array, load_denoiser, to_sensor_dtype

        model, _ = load_denoiser(opts.get("denoiser"))
        noise = _noise_for(opts, array, meta.nodata)
        den = denoise_array(array, noise, meta.bit_depth, model=model, nodata=meta.nodata)
        den = to_sensor_dtype(den, meta.dtype, meta.bit_depth)
        if meta.nodata is not None:  # keep nodata exactly where it was
            den[array == meta.nodata] = array[array == meta.nodata]
        array = den
    cog, item_path = product_paths(outbox, path.name)
    write_cog(cog, array, meta, nodata_mask=mask, blocksize=int(opts.get("blocksize", 512)))
    if not is_valid_cog(cog):
        raise GroundPipelineError(f"{cog} was written but is not a valid COG")
    cog_sha = sha256_file(cog)
    pixels = h.height * h.width * h.bands
    props = {
        "satcodec:source": path.name,
        "satcodec:source_sha256": sha,
        "satcodec:source_bytes": len(data),
        "satcodec:model": info.name,
        "satcodec:model_id": h.model_id,
        "satcodec:bpp": round(8 * len(data) / pixels, 6),
        "satcodec:quant_step": float(h.quant_step),
        "satcodec:bit_depth": int(h.bit_depth),
        "satcodec:damaged": bool(damaged),
        "satcodec:damaged_tiles": damaged,
        "satcodec:denoised": bool(opts.get("denoise")) or joint,
        "satcodec:denoiser": "joint model" if joint else "ground" if opts.get("denoise") else None,
        "satcodec:noise": None if noise is None else noise.to_dict(),
        "satcodec:cog_sha256": cog_sha,
    }
    item = _stac_item(path.stem, cog, cog_sha, meta, props)
    atomic_write_bytes(item_path, (json.dumps(item, indent=1) + "\n").encode())
    try:
        from distributed import get_worker

        worker = get_worker().address
    except (ImportError, ValueError):
        worker = None
    return {
        **base,
        "status": "done",
        "worker": worker,
        "cog": cog.name,
        "item": item_path.name,
        "cog_sha256": cog_sha,
        "damaged_tiles": damaged,
        "seconds": round(time.time() - t0, 3),
    }


# --- driver: state, lock, quarantine ---------------------------------------------------------------
class StateFile:
    """``OUTBOX/.ground-state.json``: ``{"version", "scenes": {name: record}}``, atomic rewrites."""

    def __init__(self, outbox: Path) -> None:
        self.path = outbox / STATE_NAME
        self.scenes: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            try:
                d = json.loads(self.path.read_text())
                if d.get("version") != STATE_VERSION or not isinstance(d.get("scenes"), dict):
                    raise ValueError("unknown layout")
                self.scenes = d["scenes"]
            except (ValueError, OSError) as exc:
                raise GroundPipelineError(
                    f"state file {self.path} is unreadable ({exc}); move it away to rebuild "
                    "the state from the products in the outbox"
                ) from exc

    def record(self, name: str, rec: dict[str, Any]) -> None:
        self.scenes[name] = rec
        body = {"version": STATE_VERSION, "scenes": self.scenes}
        atomic_write_bytes(self.path, (json.dumps(body, indent=1, sort_keys=True) + "\n").encode())


@contextlib.contextmanager
def _outbox_lock(outbox: Path) -> Iterator[None]:
    fh = open(outbox / LOCK_NAME, "a+")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise GroundPipelineError(f"another ground run holds {outbox / LOCK_NAME}") from None
        yield
    finally:
        fh.close()  # releases the lock (the kernel also releases it if we are killed)


def product_complete(outbox: Path, name: str, sha: str) -> bool:
    """True when the Item for ``name`` exists, names source ``sha`` and its COG matches."""
    cog, item = product_paths(outbox, name)
    if not (cog.is_file() and item.is_file()):
        return False
    try:
        props = json.loads(item.read_text())["properties"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return props.get("satcodec:source_sha256") == sha and props.get(
        "satcodec:cog_sha256"
    ) == sha256_file(cog)


def _quarantine(inbox_file: Path, outbox: Path, reason: str) -> Path:
    qdir = outbox / QUARANTINE
    qdir.mkdir(parents=True, exist_ok=True)
    note = {
        "name": inbox_file.name,
        "reason": reason,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    atomic_write_bytes(
        qdir / f"{inbox_file.name}.reason.json", (json.dumps(note, indent=1) + "\n").encode()
    )
    dest = qdir / inbox_file.name
    try:
        os.replace(inbox_file, dest)
    except OSError:  # another filesystem: copy atomically, then remove the original
        atomic_write_bytes(dest, inbox_file.read_bytes())
        inbox_file.unlink()
    return dest


def _remove_stale_temporaries(outbox: Path) -> None:
    """Delete temporaries a killed run left (atomic writers use hidden ``.NAME.*`` files).

    Safe: we hold the outbox lock, so no other driver is writing here.
    """
    keep = {STATE_NAME, LOCK_NAME}
    for folder in (outbox, outbox / QUARANTINE):
        if folder.is_dir():
            for p in folder.iterdir():
                if p.name.startswith(".") and p.name not in keep and p.is_file():
                    p.unlink(missing_ok=True)


def scan_inbox(inbox: Path, patterns: tuple[str, ...] = DEFAULT_PATTERNS) -> list[Path]:
    """Bitstreams in INBOX (hidden and temporary names skipped), sorted by name."""
    found = {
        p for pat in patterns for p in inbox.glob(pat) if p.is_file() and not p.name.startswith(".")
    }
    return sorted(found)


def run_ground(
    inbox: str | os.PathLike,
    outbox: str | os.PathLike,
    options: GroundOptions | None = None,
    *,
    workers: int = 1,
    scheduler: str | None = None,
    processes: bool = False,
    watch: bool = False,
    poll_s: float = 5.0,
    max_polls: int | None = None,
    progress: bool = True,
    patterns: tuple[str, ...] = DEFAULT_PATTERNS,
    log: Callable[[str], None] | None = None,
) -> GroundSummary:
    """Process every bitstream in ``inbox`` into ``outbox`` (see the module docstring).

    ``watch``: keep polling ``inbox`` every ``poll_s`` seconds for new files (a file is taken
    once its size and mtime are unchanged over one poll), until interrupted or ``max_polls``.
    """
    from distributed import Client, LocalCluster, as_completed
    from tqdm.auto import tqdm

    inbox_p, outbox_p = Path(inbox), Path(outbox)
    if not inbox_p.is_dir():
        raise GroundPipelineError(f"inbox {inbox_p} is not a folder")
    outbox_p.mkdir(parents=True, exist_ok=True)
    opts = (options or GroundOptions()).to_dict()
    say = log or (lambda s: print(s, flush=True))
    summary = GroundSummary()
    t0 = time.time()
    with _outbox_lock(outbox_p):
        state = StateFile(outbox_p)
        _remove_stale_temporaries(outbox_p)
        if scheduler:
            try:
                client = Client(scheduler, timeout="20s")
            except (OSError, TimeoutError) as exc:
                raise GroundPipelineError(
                    f"cannot reach the Dask scheduler {scheduler}: {exc}"
                ) from exc
            cluster = None
        else:
            cluster = LocalCluster(
                n_workers=max(1, workers),
                threads_per_worker=1,
                processes=processes,
                dashboard_address=None,
            )
            client = Client(cluster)
        try:
            seen: dict[str, tuple[int, int]] = {}
            polls = 0
            while True:
                batch = []
                for p in scan_inbox(inbox_p, patterns):
                    st = p.stat()
                    sig = (st.st_size, st.st_mtime_ns)
                    if watch and seen.get(p.name) != sig:
                        seen[p.name] = sig  # not stable yet: take it at the next poll
                        continue
                    batch.append(p)
                _run_batch(
                    batch,
                    inbox_p,
                    outbox_p,
                    opts,
                    state,
                    client,
                    as_completed,
                    tqdm,
                    progress,
                    summary,
                )
                polls += 1
                if not watch or (max_polls is not None and polls >= max_polls):
                    break
                time.sleep(poll_s)
        except KeyboardInterrupt:
            say("ground: interrupted; the state file is consistent, run again to continue")
            raise
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    summary.elapsed_s = time.time() - t0
    say(summary.line())
    for name in summary.quarantined:
        say(f"  quarantined: {name} ({state.scenes[name].get('reason', '')})")
    for name in summary.flagged:
        say(f"  damaged tiles: {name} {state.scenes[name].get('damaged_tiles')}")
    for name in summary.failed:
        say(f"  failed: {name} ({state.scenes[name].get('error', '')})")
    return summary


def _run_batch(batch, inbox, outbox, opts, state, client, as_completed, tqdm, progress, summary):
    todo = []
    for p in batch:
        sha = sha256_file(p)
        rec = state.scenes.get(p.name)
        if rec and rec.get("sha256") == sha and rec.get("status") == "done":
            if product_complete(outbox, p.name, sha):
                if p.name not in summary.skipped:
                    summary.skipped.append(p.name)
                continue
        elif product_complete(outbox, p.name, sha):
            # a killed run wrote the complete product but not the state: adopt it
            cog, item = product_paths(outbox, p.name)
            props = json.loads(item.read_text())["properties"]
            state.record(
                p.name,
                {
                    "sha256": sha,
                    "status": "done",
                    "cog": cog.name,
                    "item": item.name,
                    "cog_sha256": props["satcodec:cog_sha256"],
                    "damaged_tiles": props.get("satcodec:damaged_tiles", []),
                },
            )
            summary.adopted.append(p.name)
            continue
        todo.append(p)
    if not todo:
        return
    futures = {
        client.submit(
            process_scene,
            str(p),
            str(outbox),
            opts,
            pure=False,
            key=f"ground-{p.name}-{time.time_ns()}",
        ): p
        for p in todo
    }
    bar = tqdm(
        total=len(todo), desc="ground", unit="scene", disable=not progress, dynamic_ncols=True
    )
    for fut in as_completed(list(futures)):
        p = futures[fut]
        try:
            res = fut.result()
        except Exception as exc:  # noqa: BLE001 - one scene's bug must not stop the batch
            state.record(
                p.name,
                {
                    "sha256": sha256_file(p) if p.exists() else None,
                    "status": "failed",
                    "error": f"{type(exc).__name__}: {exc}",
                },
            )
            summary.failed.append(p.name)
            bar.update(1)
            continue
        if res["status"] == "quarantine":
            _quarantine(p, outbox, res["reason"])
            state.record(
                p.name, {"sha256": res["sha256"], "status": "quarantined", "reason": res["reason"]}
            )
            summary.quarantined.append(p.name)
        else:
            keys = (
                "sha256",
                "status",
                "cog",
                "item",
                "cog_sha256",
                "damaged_tiles",
                "seconds",
                "worker",
            )
            state.record(p.name, {k: res[k] for k in keys})
            summary.produced.append(p.name)
            if res["damaged_tiles"]:
                summary.flagged.append(p.name)
        bar.update(1)
    bar.close()
