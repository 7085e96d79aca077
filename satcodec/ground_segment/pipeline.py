"""The ground pipeline: INBOX of bitstreams → (denoise) → OUTBOX of COGs + STAC Items.

Guarantees (see ``tests/test_ground_pipeline.py`` and ``tests/test_ground_safety.py``):

* **Atomic outputs.** Each product is written under ``OUTBOX/.ground-tmp/`` and renamed into
  place: the COG first, then its STAC Item (which records the COG's checksum). A product is
  complete when its Item exists and the COG matches the checksum the Item states. The STAC
  Collection ``OUTBOX/collection.json`` is rebuilt from the Items present (atomically, when it
  changes) at the start of a run and after each poll that produced or adopted a product; the
  STAC content is :mod:`satcodec.ground_segment.stac`'s (see docs/ground.md).
* **Resumable and idempotent.** ``OUTBOX/.ground-state.json`` (rewritten atomically when a
  scene's record changes, never when nothing changed) records each bitstream by name and
  SHA-256. A restarted run skips scenes whose recorded products are intact, adopts complete
  products a killed run wrote but did not record, and redoes the rest; products have fixed
  names, so every scene ends up exactly once. A lock file stops two runs from sharing an
  OUTBOX.
* **Only its own temporaries are removed.** Every temporary the pipeline writes lives in
  ``OUTBOX/.ground-tmp/`` (a folder nothing else writes to), which a starting run empties.
  Outside it, a starting run deletes only the temporaries older versions of the pipeline left
  beside their products: names the atomic writer makes (``.DEST.XXXXXXXX.tif`` /
  ``.DEST.XXXXXXXX.tmp``, 8 characters of ``[a-z0-9_]``) whose DEST is one of this pipeline's
  products (``STEM.tif``/``STEM.json`` of a scene in INBOX or in the state file, the state file,
  a quarantined stream or its ``.reason.json``). Any other file — a ``.gitignore``, an
  uploader's in-flight ``.name.XXXX`` when INBOX is OUTBOX — is never touched.
* **What happens to a scene** (its state record's ``status``):

  - ``done``: COG + Item written. Damaged tiles — a failed CRC, or tiles missing from a
    truncated (partial) downlink, which is decoded in the reader's partial mode — are written
    as nodata and flagged (``satcodec:damaged``, ``satcodec:truncated`` in the Item). Without a
    nodata value in the stream, damaged pixels get a value the data cannot take
    (:func:`satcodec.raster.damaged_fill_value`) or, when there is none, an internal mask
    band; ``satcodec:damaged_fill`` says which (the value, or ``"mask"``).
  - ``quarantined``: the bitstream itself cannot be read; it is moved to
    ``OUTBOX/quarantine/`` and ``NAME.reason.json`` is written after the move succeeded.
  - ``waiting-model``: the stream's model is not installed (or its weights are unreadable). A
    ground-side problem: the stream stays in INBOX and is retried (at once when the set of
    weights files changes, which is how installing the model is noticed in ``watch`` mode).
  - ``failed``: an unexpected error, retried later.
  - ``refused``: a stream the station will not process as it is (a symlink to a file outside
    INBOX without ``follow_symlinks``, not a regular file, larger than ``max_stream_bytes``, an
    image larger than ``max_pixels``, a sample type the COG writer does not support: the
    bitstream allows uint32/int32, the COGs here are uint8/uint16/int16); left in place, not
    retried until it changes.

  ``failed`` and ``waiting-model`` records carry ``attempts`` and ``next_retry``: ``watch``
  mode backs off exponentially (one poll, two, four ... at most an hour); a new run retries
  at once. A file that vanishes at any moment (between the scan and the read, or before its
  quarantine) is skipped without trace.
* **Scale-out on Dask distributed**: an in-process local cluster by default (``workers``
  threads, or worker processes with ``processes=True``), or an existing cluster
  (``scheduler="tcp://host:port"``, whose workers must see INBOX and OUTBOX at the same paths
  and have satcodec installed). The driver alone writes the state file and moves files to
  quarantine; workers write their scene's products.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import math
import os
import re
import secrets
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from satcodec.errors import (
    ConfigError,
    GroundPipelineError,
    ModelError,
    SatcodecError,
)
from satcodec.fileutil import atomic_write_bytes
from satcodec.ground_segment.stac import COLLECTION_NAME, collection_for_outbox, item_for_product
from satcodec.metrics import bits_per_pixel

STATE_NAME = ".ground-state.json"
LOCK_NAME = ".ground.lock"
STAGING = ".ground-tmp"  # the pipeline's temporaries, and only them
QUARANTINE = "quarantine"
STATE_VERSION = 1
DEFAULT_PATTERNS = ("*.satc",)
MAX_STREAM_BYTES = 1 << 34  # 16 GiB, as satcodec.api.read_stream
MAX_PIXELS = 1 << 31  # a scene is decoded in memory: 2**31 samples is 4 GiB of uint16
MAX_BACKOFF_S = 3600.0
MAX_STREAM_METADATA_BYTES = 64 << 10  # stream metadata copied into the Item, at most

DONE, QUARANTINED, FAILED, WAITING, REFUSED = (
    "done",
    "quarantined",
    "failed",
    "waiting-model",
    "refused",
)

# a temporary of satcodec.fileutil.atomic_path: ".{dest.name}.{8 random chars}{suffix}"
_WRITER_TEMP = re.compile(r"\.(?P<dest>.+)\.[a-z0-9_]{8}(?P<suffix>\.tif|\.tmp)")


@dataclass
class GroundOptions:
    """What to do with each scene (sent to the workers as a plain dict)."""

    denoise: bool = False
    noise: tuple[float, float] | None = None  # (a, b) in DN; None: sensor or estimate
    sensor: str | None = None  # a sensor-table name
    denoiser: str | None = None  # weights path; None: shipped
    model_paths: list[str] = field(default_factory=list)  # extra codec weights to search
    blocksize: int = 512
    follow_symlinks: bool = False  # take INBOX symlinks that point outside INBOX
    max_stream_bytes: int = MAX_STREAM_BYTES  # larger streams are refused, never read
    max_pixels: int = MAX_PIXELS  # larger images (bands x H x W) are refused, never decoded

    def to_dict(self) -> dict[str, Any]:
        return {
            "denoise": self.denoise,
            "noise": list(self.noise) if self.noise else None,
            "sensor": self.sensor,
            "denoiser": self.denoiser,
            "model_paths": list(self.model_paths),
            "blocksize": self.blocksize,
            "follow_symlinks": bool(self.follow_symlinks),
            "max_stream_bytes": int(self.max_stream_bytes),
            "max_pixels": int(self.max_pixels),
        }


@dataclass
class GroundSummary:
    produced: list[str] = field(default_factory=list)
    flagged: list[str] = field(default_factory=list)  # produced, with damaged tiles
    skipped: list[str] = field(default_factory=list)  # already done by an earlier run
    adopted: list[str] = field(default_factory=list)  # complete products found unrecorded
    quarantined: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # their model is not installed
    refused: list[str] = field(default_factory=list)
    vanished: list[str] = field(default_factory=list)  # left INBOX while being processed
    elapsed_s: float = 0.0

    def line(self) -> str:
        return (
            f"ground: {len(self.produced)} produced ({len(self.flagged)} flagged with damaged tiles), "
            f"{len(self.skipped)} already done, {len(self.adopted)} recovered, "
            f"{len(self.quarantined)} quarantined, {len(self.failed)} failed, "
            f"{len(self.waiting)} waiting for a model, {len(self.refused)} refused "
            f"in {self.elapsed_s:.1f} s"
        )


def _add(names: list[str], name: str) -> None:
    if name not in names:
        names.append(name)


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- writing through the staging folder ------------------------------------------------------------
def _staging(outbox: str | os.PathLike) -> Path:
    folder = Path(outbox) / STAGING
    folder.mkdir(exist_ok=True)
    return folder


def _staged_name(outbox: str | os.PathLike, dest: Path) -> Path:
    return _staging(outbox) / f"{secrets.token_hex(4)}.{dest.name}"


def _write_staged(outbox: str | os.PathLike, dest: Path, data: bytes) -> None:
    """Write ``data`` to ``dest`` atomically, every temporary inside ``OUTBOX/.ground-tmp``."""
    tmp = _staged_name(outbox, dest)
    try:
        atomic_write_bytes(tmp, data)
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


# --- reading a stream safely ---------------------------------------------------------------------
class _Refused(Exception):
    """A stream the station will not process as it is (the message says why)."""


def _outside(path: Path, inbox_real: str) -> bool:
    real = os.path.realpath(path)
    try:
        return os.path.commonpath([real, inbox_real]) != inbox_real
    except ValueError:  # different drives
        return True


def _symlink_problem(path: Path, opts: dict[str, Any]) -> str | None:
    inbox = opts.get("inbox")
    if opts.get("follow_symlinks") or not inbox or not path.is_symlink():
        return None
    if _outside(path, inbox):
        return (
            f"{path.name} is a symbolic link to {os.path.realpath(path)}, outside INBOX "
            "(allow with follow_symlinks)"
        )
    return None


def _read_source(path: Path, opts: dict[str, Any]) -> bytes:
    """The stream's bytes: a regular file (symlinks only inside INBOX), at most max_stream_bytes.

    FileNotFoundError escapes (the file vanished); _Refused says why it is not read.
    """
    problem = _symlink_problem(path, opts)
    if problem:
        raise _Refused(problem)
    limit = int(opts.get("max_stream_bytes", MAX_STREAM_BYTES))
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise _Refused(f"{path.name} is not a regular file")
        if st.st_size > limit:
            raise _Refused(f"{path.name} is {st.st_size} bytes, over the limit of {limit} bytes")
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise _Refused(f"{path.name} grew past the limit of {limit} bytes while being read")
    return data


# --- one scene (runs on a worker) ---------------------------------------------------------------
def models_fingerprint(extra: list[str]) -> str:
    """Changes when a weights file appears, disappears or is rewritten (installing a model)."""
    from satcodec.codec.registry import candidate_files

    h = hashlib.sha256()
    for p in candidate_files(extra=extra, joint=True):
        try:
            st = p.stat()
            h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p}|-\n".encode())
    return h.hexdigest()[:16]


def _lineage(
    name: str,
    model_id: Any,
    props: dict[str, Any],
    fill: float | str | None,
    truncated: bool,
    damaged: list,
) -> str:
    """``processing:lineage``: what the ground segment did to get this image, in one line."""
    parts = [
        f"Decoded by the satcodec ground pipeline from bitstream {name} "
        f"(model {props['satcodec:model']}, id {model_id}, {props['satcodec:bpp']} bpp)"
    ]
    if damaged:
        how = "an internal mask" if fill == "mask" else f"nodata {fill:g}"
        cause = "lost or failing their CRC" if truncated else "failing their CRC"
        parts.append(f"{len(damaged)} tile(s) {cause} written as {how}")
    if props.get("satcodec:denoiser"):
        parts.append(f"denoised ({props['satcodec:denoiser']})")
    return "; ".join(parts) + "."


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
    """Decode one bitstream (damaged or missing tiles as nodata), denoise if asked, write COG +
    STAC Item.

    Returns a result dict whose ``status`` is ``done``, ``quarantine`` (unreadable bitstream),
    ``waiting-model`` (its model is not installed), ``refused`` or ``vanished`` (the file is
    gone), with a ``reason``. Other exceptions propagate (the driver records them as failed).
    """
    from satcodec.api import decode, stream_raster_meta
    from satcodec.bitstream import StreamReader
    from satcodec.raster import SUPPORTED_DTYPES, damaged_fill_value, is_valid_cog, write_cog

    t0 = time.time()
    path = Path(src)
    try:
        data = _read_source(path, opts)
    except FileNotFoundError:
        return {"name": path.name, "status": "vanished"}
    except _Refused as exc:
        return {"name": path.name, "sha256": None, "status": REFUSED, "reason": str(exc)}
    sha = hashlib.sha256(data).hexdigest()
    base = {"name": path.name, "sha256": sha}
    if product_paths(outbox, path.name)[1].name == COLLECTION_NAME:
        # its Item would overwrite the OUTBOX's STAC Collection
        return {
            **base,
            "status": REFUSED,
            "reason": f"{path.name}: a scene named like this would overwrite the STAC "
            f"Collection {COLLECTION_NAME}; rename it",
        }
    try:
        reader = StreamReader(data, partial=True)  # a cut downlink: the tiles present decode
    except SatcodecError as exc:
        return {**base, "status": "quarantine", "reason": f"{type(exc).__name__}: {exc}"}
    h = reader.header
    pixels = h.height * h.width * h.bands
    limit = int(opts.get("max_pixels", MAX_PIXELS))
    if pixels > limit:
        return {
            **base,
            "status": REFUSED,
            "reason": f"{h.bands} x {h.height} x {h.width} = {pixels} samples, over this "
            f"station's limit of {limit} (max_pixels)",
        }
    if h.dtype not in SUPPORTED_DTYPES:
        return {
            **base,
            "status": REFUSED,
            "reason": f"sample type {h.dtype} cannot be written as a COG by this station "
            f"(supported: {', '.join(SUPPORTED_DTYPES)})",
        }
    # the public decode: the same model lookup, partial recovery and runtimes as the CLI
    try:
        array, decoded = decode(
            reader,
            allow_damaged=True,
            model_paths=opts.get("model_paths", []),
            runtime=opts.get("runtime"),
        )
    except ModelError as exc:  # the station lacks the model: retry later, not quarantine
        return {**base, "status": WAITING, "reason": str(exc), "model_id": h.model_id}
    except SatcodecError as exc:
        return {**base, "status": "quarantine", "reason": f"{type(exc).__name__}: {exc}"}
    warnings: list[str] = []
    meta, stream_md = stream_raster_meta(h, warnings)
    truncated = len(data) < reader.stream_length
    damaged = sorted(list(map(int, t)) for t in decoded["damaged_tiles"])
    mask = None
    fill: float | str | None = None
    if damaged:
        mask = np.zeros(array.shape, bool)
        for b, r, c in damaged:
            y0, x0, ph, pw = h.tile_pixel_window(r, c)
            mask[b, y0 : y0 + ph, x0 : x0 + pw] = True
        if h.nodata is not None:
            fill = meta.nodata = float(h.nodata)
        else:  # a value outside the data, so no genuine sample turns into nodata
            v = damaged_fill_value(h.dtype, h.bit_depth)
            value = None if v is None else float(v)
            meta.nodata = value
            fill = "mask" if value is None else value
    noise = None
    # a joint model's decoder has already removed the noise: denoising again would only blur
    joint = decoded["model_kind"] == "joint-denoising"
    if opts.get("denoise") and not joint:
        from satcodec.ground_segment.denoiser import denoise_array, load_denoiser, to_sensor_dtype

        model, _ = load_denoiser(opts.get("denoiser"))
        if mask is not None and meta.nodata is not None:
            array[mask] = meta.nodata  # damaged pixels as nodata, which the denoiser skips
        noise = _noise_for(opts, array, meta.nodata)
        den = denoise_array(array, noise, meta.bit_depth, model=model, nodata=meta.nodata)
        den = to_sensor_dtype(den, meta.dtype, meta.bit_depth)
        if h.nodata is not None:  # keep the stream's nodata exactly where it was
            den[array == h.nodata] = array[array == h.nodata]
        array = den
    cog, item_path = product_paths(outbox, path.name)
    staged = _staged_name(outbox, cog)
    try:
        write_cog(staged, array, meta, nodata_mask=mask, blocksize=int(opts.get("blocksize", 512)))
        if not is_valid_cog(staged):
            raise GroundPipelineError(f"{cog} was written but is not a valid COG")
        cog_sha = sha256_file(staged)
        os.replace(staged, cog)
    finally:
        with contextlib.suppress(OSError):
            staged.unlink()
    props = {
        "satcodec:source": path.name,
        "satcodec:source_sha256": sha,
        "satcodec:source_bytes": len(data),
        "satcodec:model": decoded["model"],
        "satcodec:model_id": h.model_id,
        "satcodec:bpp": round(bits_per_pixel(len(data), pixels), 6),
        "satcodec:quant_step": float(h.quant_step),
        "satcodec:bit_depth": int(h.bit_depth),
        # flag 0x0002: the bands were coded jointly (their KLT), so a tile lost in one
        # component is lost in every band
        "satcodec:spectral_transform": None
        if h.spectral_transform is None
        else h.spectral_transform["kind"],
        "satcodec:damaged": bool(damaged),
        "satcodec:damaged_tiles": damaged,
        "satcodec:damaged_fill": fill,
        "satcodec:truncated": truncated,
        "satcodec:stream_bytes_expected": int(reader.stream_length),
        "satcodec:denoised": bool(opts.get("denoise")) or joint,
        "satcodec:denoiser": "joint model" if joint else "ground" if opts.get("denoise") else None,
        "satcodec:noise": None if noise is None else noise.to_dict(),
        "satcodec:cog_sha256": cog_sha,
    }
    if stream_md:
        raw = json.dumps(stream_md, allow_nan=False)
        props["satcodec:stream_metadata"] = (
            stream_md if len(raw) <= MAX_STREAM_METADATA_BYTES else f"omitted ({len(raw)} bytes)"
        )
    item = item_for_product(
        path.stem,
        cog,
        cog_sha,
        meta,
        array,
        props,
        warnings,
        invalid=mask,
        stream_metadata=stream_md,
        lineage=_lineage(path.name, h.model_id, props, fill, truncated, damaged),
    )
    if warnings:
        item["properties"]["satcodec:warnings"] = list(warnings)
    body = json.dumps(item, indent=1, allow_nan=False) + "\n"
    _write_staged(outbox, item_path, body.encode())
    try:
        from distributed import get_worker

        worker = get_worker().address
    except (ImportError, ValueError):
        worker = None
    return {
        **base,
        "status": DONE,
        "worker": worker,
        "cog": cog.name,
        "item": item_path.name,
        "cog_sha256": cog_sha,
        "damaged_tiles": damaged,
        "truncated": truncated,
        "warnings": warnings,
        "seconds": round(time.time() - t0, 3),
    }


# --- driver: state, lock, quarantine ---------------------------------------------------------------
class StateFile:
    """``OUTBOX/.ground-state.json``: ``{"version", "scenes": {name: record}}``, atomic rewrites."""

    def __init__(self, outbox: Path) -> None:
        self.outbox = outbox
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

    def record(self, name: str, rec: dict[str, Any]) -> bool:
        """Store ``rec`` for ``name``; the file is rewritten only if that changes something."""
        if self.scenes.get(name) == rec:
            return False
        self.scenes[name] = rec
        body = {"version": STATE_VERSION, "scenes": self.scenes}
        try:
            _write_staged(
                self.outbox, self.path, (json.dumps(body, indent=1, sort_keys=True) + "\n").encode()
            )
        except (OSError, SatcodecError) as exc:
            raise GroundPipelineError(f"cannot write the state file {self.path}: {exc}") from None
        return True


@contextlib.contextmanager
def _outbox_lock(outbox: Path) -> Iterator[None]:
    try:
        fh = open(outbox / LOCK_NAME, "a+")
    except OSError as exc:
        raise GroundPipelineError(
            f"outbox {outbox} is not writable ({exc.strerror or exc})"
        ) from None
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
    try:
        if not (cog.is_file() and item.is_file()):
            return False
        props = json.loads(item.read_text())["properties"]
        return props.get("satcodec:source_sha256") == sha and props.get(
            "satcodec:cog_sha256"
        ) == sha256_file(cog)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _quarantine(inbox_file: Path, outbox: Path, reason: str) -> Path | None:
    """Move ``inbox_file`` to ``OUTBOX/quarantine/``, then write its reason; None if it vanished.

    The reason is written only after the move succeeded, so a vanished file leaves nothing."""
    qdir = outbox / QUARANTINE
    qdir.mkdir(parents=True, exist_ok=True)
    dest = qdir / inbox_file.name
    try:
        os.replace(inbox_file, dest)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        # another filesystem: copy atomically (through the staging folder), then remove
        try:
            data = inbox_file.read_bytes()
        except FileNotFoundError:
            return None
        _write_staged(outbox, dest, data)
        with contextlib.suppress(FileNotFoundError):
            inbox_file.unlink()
    note = {
        "name": inbox_file.name,
        "reason": reason,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    _write_staged(
        outbox,
        qdir / f"{inbox_file.name}.reason.json",
        (json.dumps(note, indent=1) + "\n").encode(),
    )
    return dest


def _is_regular(p: Path) -> bool:
    try:
        return stat.S_ISREG(p.lstat().st_mode)
    except OSError:
        return False


def _remove_stale_temporaries(outbox: Path, known_names: set[str]) -> list[Path]:
    """Delete the temporaries a killed run left; returns what was removed.

    The rule: everything in ``OUTBOX/.ground-tmp/`` (only the pipeline writes there); elsewhere
    only a name the atomic writer makes, ``.DEST.XXXXXXXX.tif`` (DEST a COG) or
    ``.DEST.XXXXXXXX.tmp`` (anything else), whose DEST is one of the pipeline's own products:
    in OUTBOX ``STEM.tif``/``STEM.json`` of a ``known_names`` scene or the state file; in
    ``quarantine/`` a known scene or its ``.reason.json``. Safe: we hold the outbox lock, so no
    other driver is writing here.
    """
    removed: list[Path] = []
    staging = outbox / STAGING
    if staging.is_dir() and not staging.is_symlink():
        for p in staging.iterdir():
            if _is_regular(p):
                p.unlink(missing_ok=True)
                removed.append(p)
    stems = {Path(n).stem for n in known_names}
    products = {STATE_NAME} | {f"{s}.tif" for s in stems} | {f"{s}.json" for s in stems}
    quarantined = set(known_names) | {f"{n}.reason.json" for n in known_names}
    for folder, allowed in ((outbox, products), (outbox / QUARANTINE, quarantined)):
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            m = _WRITER_TEMP.fullmatch(p.name)
            if not m or m["dest"] not in allowed or not _is_regular(p):
                continue
            if (m["suffix"] == ".tif") != m["dest"].endswith(".tif"):
                continue  # the writer gives a COG's temporary .tif, anything else .tmp
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def scan_inbox(inbox: Path, patterns: tuple[str, ...] = DEFAULT_PATTERNS) -> list[Path]:
    """Bitstreams in INBOX (hidden and temporary names skipped), sorted by name."""
    found = set()
    for pat in patterns:
        for p in inbox.glob(pat):
            if p.name.startswith("."):
                continue
            with contextlib.suppress(OSError):
                if p.is_file():
                    found.add(p)
    return sorted(found)


def _check_poll(poll_s: Any) -> float:
    try:
        v = float(poll_s)
    except (TypeError, ValueError):
        raise ConfigError(f"poll interval {poll_s!r} is not a number") from None
    if not math.isfinite(v) or v < 0:
        raise ConfigError(f"poll interval {poll_s!r} must be a finite number of seconds >= 0")
    return v


def _prepare_outbox(outbox: Path) -> None:
    if outbox.is_symlink() and not outbox.exists():
        raise GroundPipelineError(f"outbox {outbox} is a dangling symbolic link")
    if outbox.exists() and not outbox.is_dir():
        raise GroundPipelineError(f"outbox {outbox} exists and is not a folder")
    try:
        outbox.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GroundPipelineError(f"cannot create outbox {outbox}: {exc.strerror or exc}") from None
    if not os.access(outbox, os.W_OK | os.X_OK):
        raise GroundPipelineError(f"outbox {outbox} is not writable")
    try:
        _staging(outbox)
    except OSError as exc:
        raise GroundPipelineError(
            f"outbox {outbox} is not writable ({exc.strerror or exc})"
        ) from None


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

    poll_s = _check_poll(poll_s)
    inbox_p, outbox_p = Path(inbox), Path(outbox)
    if not inbox_p.is_dir():
        raise GroundPipelineError(f"inbox {inbox_p} is not a folder")
    _prepare_outbox(outbox_p)
    opts = (options or GroundOptions()).to_dict()
    opts["inbox"] = os.path.realpath(inbox_p)
    say = log or (lambda s: print(s, flush=True))
    summary = GroundSummary()
    t0 = time.time()
    with _outbox_lock(outbox_p):
        state = StateFile(outbox_p)
        known = set(state.scenes) | {p.name for p in scan_inbox(inbox_p, patterns)}
        _remove_stale_temporaries(outbox_p, known)
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
        driver = _Driver(inbox_p, outbox_p, opts, state, summary, watch, poll_s, say)
        try:
            polls = 0
            while True:
                batch = driver.scan(patterns)
                driver.run_batch(batch, client, as_completed, tqdm, progress)
                driver.update_collection()
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
            with contextlib.suppress(OSError):
                (outbox_p / STAGING).rmdir()  # only when empty
    summary.elapsed_s = time.time() - t0
    say(summary.line())
    scenes = state.scenes
    for name in summary.quarantined:
        say(f"  quarantined: {name} ({scenes.get(name, {}).get('reason', '')})")
    for name in summary.flagged:
        say(f"  damaged tiles: {name} {scenes.get(name, {}).get('damaged_tiles')}")
    for name in summary.failed:
        say(f"  failed: {name} ({scenes.get(name, {}).get('error', '')})")
    for name in summary.waiting:
        say(f"  waiting for its model: {name} ({scenes.get(name, {}).get('reason', '')})")
    for name in summary.refused:
        say(f"  refused: {name} ({scenes.get(name, {}).get('reason', '')})")
    return summary


def _sig(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _stamp(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class _Driver:
    """Decides per INBOX file what to do, submits the work and records the outcome."""

    def __init__(self, inbox, outbox, opts, state, summary, watch, poll_s, say) -> None:
        self.inbox, self.outbox, self.opts = inbox, outbox, opts
        self.state, self.summary, self.watch, self.poll_s, self.say = (
            state,
            summary,
            watch,
            poll_s,
            say,
        )
        self.seen: dict[str, tuple] = {}  # name -> signature at the previous poll (watch)
        self._sha: dict[tuple, str] = {}  # (dev, ino, size, mtime, ctime) -> sha256
        self._complete: dict[str, tuple] = {}  # name -> (sha, cog and item signatures)
        self.models_fp = models_fingerprint(opts.get("model_paths", []))
        self.tried: set[str] = set()  # names submitted during this run
        self.catalogue_stale = True  # rebuild the Collection (always once per run)

    # --- helpers -------------------------------------------------------------------------------
    def _sha256(self, p: Path, st: os.stat_result) -> str:
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if key not in self._sha:
            if len(self._sha) > 100_000:
                self._sha.clear()
            self._sha[key] = sha256_file(p)
        return self._sha[key]

    def _product_complete(self, name: str, sha: str) -> bool:
        cog, item = product_paths(self.outbox, name)
        try:
            key = (sha, tuple(_sig(cog.stat())), tuple(_sig(item.stat())))
        except OSError:
            return False
        if self._complete.get(name) == key:
            return True
        ok = product_complete(self.outbox, name, sha)
        if ok:
            self._complete[name] = key
        return ok

    def _retry_later(self, name: str, rec: dict[str, Any], sha: str | None, **fields: Any) -> None:
        old = self.state.scenes.get(name) or {}
        same = old.get("sha256") == sha and old.get("status") in (FAILED, WAITING)
        attempts = int(old.get("attempts", 0)) + 1 if same else 1
        now = time.time()
        delay = min(MAX_BACKOFF_S, max(self.poll_s, 0.05) * 2 ** (attempts - 1))
        rec.update(
            sha256=sha,
            attempts=attempts,
            last_attempt=_stamp(now),
            next_retry=round(now + delay, 3),
            **fields,
        )
        self.state.record(name, rec)

    def _due(self, name: str, rec: dict[str, Any]) -> bool:
        """Whether a failed/waiting scene is retried now (always in a new run; watch backs off)."""
        if not self.watch or name not in self.tried:
            return True
        if rec.get("status") == WAITING and rec.get("models_fp") != self.models_fp:
            return True  # the installed weights changed: perhaps its model is there now
        return time.time() >= float(rec.get("next_retry", 0))

    def _refuse(self, name: str, reason: str, sig: list[int], sha: str | None) -> None:
        self.state.record(name, {"sha256": sha, "status": REFUSED, "reason": reason, "stat": sig})
        self._settled(name)
        _add(self.summary.refused, name)

    def _unreadable(self, name: str, exc: OSError) -> None:
        rec = self.state.scenes.get(name)
        if rec and rec.get("status") == FAILED and rec.get("sha256") is None:
            if not self._due(name, rec):
                return
        self.tried.add(name)
        self._retry_later(name, {"status": FAILED, "error": f"cannot read: {exc}"}, None)
        _add(self.summary.failed, name)

    def _settled(self, name: str) -> None:
        """``name`` reached a final state: it is no longer failed or waiting."""
        for names in (self.summary.failed, self.summary.waiting):
            if name in names:
                names.remove(name)

    # --- one poll ------------------------------------------------------------------------------
    def scan(self, patterns: tuple[str, ...]) -> list[tuple[Path, os.stat_result, str]]:
        """The INBOX files to process now, each with its stat and SHA-256."""
        self.models_fp = models_fingerprint(self.opts.get("model_paths", []))
        todo = []
        present = set()
        for p in scan_inbox(self.inbox, patterns):
            try:
                item = self._classify(p, present)
            except FileNotFoundError:
                continue  # vanished between the scan and now: nothing to do
            except OSError as exc:  # unreadable (permissions, I/O error): retried later
                self._unreadable(p.name, exc)
                continue
            if item is not None:
                todo.append(item)
        for name in list(self.seen):
            if name not in present:
                del self.seen[name]
        return todo

    def _classify(self, p: Path, present: set[str]) -> tuple[Path, os.stat_result, str] | None:
        name = p.name
        lst = p.lstat()
        st = p.stat()  # the target, for a symlink
        present.add(name)
        sig = (*_sig(lst), *_sig(st))
        if self.watch and self.seen.get(name) != sig:
            self.seen[name] = sig  # not stable yet: take it at the next poll
            return None
        rec = self.state.scenes.get(name)
        problem = _symlink_problem(p, self.opts)
        if problem:
            self._refuse(name, problem, _sig(st), None)
            return None
        limit = int(self.opts.get("max_stream_bytes", MAX_STREAM_BYTES))
        if not stat.S_ISREG(st.st_mode):
            self._refuse(name, f"{name} is not a regular file", _sig(st), None)
            return None
        if st.st_size > limit:
            self._refuse(
                name,
                f"{name} is {st.st_size} bytes, over the limit of {limit} bytes",
                _sig(st),
                None,
            )
            return None
        if (
            rec
            and rec.get("status") == REFUSED
            and rec.get("sha256")
            and rec.get("stat") == _sig(st)
        ):
            return None  # refused for its content (read by a worker), and unchanged since
        sha = self._sha256(p, st)
        if rec and rec.get("sha256") == sha:
            status = rec.get("status")
            if status == DONE and self._product_complete(name, sha):
                _add(self.summary.skipped, name)
                return None
            if status in (FAILED, WAITING) and not self._due(name, rec):
                return None
        if (not rec or rec.get("sha256") != sha or rec.get("status") != DONE) and (
            self._product_complete(name, sha)
        ):
            self._adopt(name, sha)
            return None
        return p, st, sha

    def _adopt(self, name: str, sha: str) -> None:
        """A killed run wrote the complete product but not the state: record it."""
        cog, item = product_paths(self.outbox, name)
        try:
            props = json.loads(item.read_text())["properties"]
        except (OSError, ValueError, KeyError, TypeError):
            return
        self.state.record(
            name,
            {
                "sha256": sha,
                "status": DONE,
                "cog": cog.name,
                "item": item.name,
                "cog_sha256": props.get("satcodec:cog_sha256"),
                "damaged_tiles": props.get("satcodec:damaged_tiles", []),
                "truncated": bool(props.get("satcodec:truncated", False)),
            },
        )
        self._settled(name)
        _add(self.summary.adopted, name)
        self.catalogue_stale = True

    def update_collection(self) -> None:
        """Rewrite ``OUTBOX/collection.json`` from the Items present, when products changed.

        Rebuilt from the Items on disk, not from this run's results, so a resumed run or a
        later run that adds scenes leaves a Collection that lists exactly the products there.
        Written atomically, and only when its content changes."""
        if not self.catalogue_stale:
            return
        dest = self.outbox / COLLECTION_NAME
        try:
            body = (json.dumps(collection_for_outbox(self.outbox), indent=1) + "\n").encode()
            if not (dest.is_file() and dest.read_bytes() == body):
                _write_staged(self.outbox, dest, body)
        except (OSError, SatcodecError) as exc:  # the products are fine: retry at the next poll
            self.say(f"  warning: cannot write the STAC Collection {dest}: {exc}")
            return
        self.catalogue_stale = False

    def run_batch(self, batch, client, as_completed, tqdm, progress) -> None:
        if not batch:
            return
        self.tried.update(p.name for p, _, _ in batch)
        futures = {
            client.submit(
                process_scene,
                str(p),
                str(self.outbox),
                self.opts,
                pure=False,
                key=f"ground-{p.name}-{time.time_ns()}",
            ): (p, st, sha)
            for p, st, sha in batch
        }
        bar = tqdm(
            total=len(batch), desc="ground", unit="scene", disable=not progress, dynamic_ncols=True
        )
        for fut in as_completed(list(futures)):
            p, st, sha = futures[fut]
            try:
                res = fut.result()
            except Exception as exc:  # noqa: BLE001 - one scene's bug must not stop the batch
                if not p.exists():
                    _add(self.summary.vanished, p.name)
                else:
                    msg = str(exc).splitlines()[0] if str(exc) else ""
                    self._retry_later(
                        p.name, {"status": FAILED, "error": f"{type(exc).__name__}: {msg}"}, sha
                    )
                    _add(self.summary.failed, p.name)
            else:
                self._record(p, st, res)
            bar.update(1)
        bar.close()

    def _record(self, p: Path, st: os.stat_result, res: dict[str, Any]) -> None:
        name, status, s = p.name, res["status"], self.summary
        if status == "vanished":
            _add(s.vanished, name)
        elif status == REFUSED:
            self._refuse(name, res["reason"], _sig(st), res.get("sha256"))
        elif status == WAITING:
            self._retry_later(
                name,
                {"status": WAITING, "reason": res["reason"], "model_id": res.get("model_id")},
                res["sha256"],
                models_fp=self.models_fp,
            )
            _add(s.waiting, name)
        elif status == "quarantine":
            self._quarantine(p, res)
        else:
            keys = ("sha256", "status", "cog", "item", "cog_sha256", "damaged_tiles", "truncated")
            rec = {k: res[k] for k in keys}
            rec.update(seconds=res["seconds"], worker=res["worker"])
            if res.get("warnings"):
                rec["warnings"] = res["warnings"]
                for w in res["warnings"]:
                    self.say(f"  warning: {name}: {w}")
            self.state.record(name, rec)
            self._settled(name)
            _add(s.produced, name)
            self.catalogue_stale = True
            if res["damaged_tiles"]:
                _add(s.flagged, name)

    def _quarantine(self, p: Path, res: dict[str, Any]) -> None:
        name = p.name
        try:  # the file may have been replaced since it was read: never quarantine a new one
            if sha256_file(p) != res["sha256"]:
                return
            moved = _quarantine(p, self.outbox, res["reason"])
        except FileNotFoundError:
            moved = None
        except (OSError, SatcodecError) as exc:
            self._retry_later(
                name, {"status": FAILED, "error": f"cannot quarantine: {exc}"}, res["sha256"]
            )
            _add(self.summary.failed, name)
            return
        if moved is None:
            _add(self.summary.vanished, name)
            return
        self.state.record(
            name, {"sha256": res["sha256"], "status": QUARANTINED, "reason": res["reason"]}
        )
        self._settled(name)
        _add(self.summary.quarantined, name)
