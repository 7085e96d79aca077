"""Fuzz campaign for the satcodec bitstream reader (and, later, the whole decoder).

Mutates valid streams (given corpus files, or generated ones) and feeds each mutant to a
pluggable target. A case passes if the target returns, or raises one of the expected
exception classes (default: ``satcodec.errors.BitstreamError`` and subclasses); anything
else, a hang past the per-case timeout, or peak-RSS growth past the limit is a finding,
saved as a reproducer under ``bench/results/fuzz_crashes/``.

Usage::

    python bench/fuzz_bitstream.py --cases 100000 [--seed S] [--corpus FILES...]
        [--target module:function | path/to/file.py:function] [--timeout 2]
        [--rss-limit-mb 256] [--as-limit-mb 0] [--report bench/results/fuzz_bitstream.md]
    python bench/fuzz_bitstream.py --replay bench/results/fuzz_crashes/*.bin

A target is ``f(data: bytes) -> object``; if it returns a str that is the outcome label
counted in the summary (e.g. "ok", "ok-damaged-tiles"). The default target parses the
stream, reads every tile and, when all tiles are intact, checks that re-encoding gives an
equal stream (an oracle for writer/reader agreement). To fuzz the whole decoder later,
pass e.g. ``--target satcodec.some_module:fuzz_target --expect satcodec.errors:SatcodecError``.

Watchdogs: each case runs under a SIGALRM soft timeout (``--timeout``), which catches hangs
in Python code. A watchdog thread catches hangs that ignore it (inside C code, or a target
that swallows BaseException): after 5x the timeout (at least 10 s) it saves the case as
``hang-hard-*.bin`` and exits with status 3, without writing the summary. Memory: a case is
flagged when the process's peak RSS (``getrusage``) rises during it to more than
``--rss-limit-mb`` above the level after warm-up. The peak only ever rises, so a later case
that merely repeats an earlier peak is not flagged again; ``--as-limit-mb`` caps the
address space so that any runaway allocation becomes a MemoryError finding instead.
Expected exceptions must carry a one-line message; a multi-line or empty one is a finding.
Exit status: 0 without findings, 1 with findings.

Bounded-memory decoding (bench/results/fuzz_decoder_bounded.md)::

    python bench/fuzz_bitstream.py --cases 100000 --seed 17 \
        --corpus bench/results/fuzz_corpus_bounded/*.satc \
        --target bench/fuzz_targets.py:bounded --expect satcodec.errors:SatcodecError \
        --workers 1 --as-limit-mb 4096 --generated 0.1 --big 0.02 \
        --report bench/results/fuzz_decoder_bounded.md

``--workers 1`` runs the cases in a spawned worker process, warmed up on the corpus, then
under ``RLIMIT_AS`` (``--as-limit-mb``); the worker resets its peak RSS (Linux VmHWM, through
/proc/self/clear_refs) before every case, so each case's own peak is measured. A target that
returns ``(label, bound_bytes)`` has that peak checked against the bound (a finding when
over). A worker that dies (a signal, an abort) or hangs past 5x the timeout is a finding and
is replaced. ``--generated F`` makes a share F of the cases structure-aware generated streams
(``--generator``, default ``bench/fuzz_targets.py:StreamGenerator``: random header fields,
tile sizes up to 8192, payloads, nodata masks), ``--big`` of them with 2048-8192 px tiles
(timeout ``--timeout-big``), ``--mutate-generated`` of them mutated before decoding.
"""

from __future__ import annotations

import argparse
import collections
import datetime as _dt
import hashlib
import importlib
import importlib.util
import json
import os
import platform
import random
import re
import resource
import shlex
import signal
import struct
import sys
import threading
import time
import traceback
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

from satcodec.bitstream import (  # noqa: E402
    FIXED_HEADER_SIZE,
    StreamHeader,
    StreamReader,
    TileRecord,
    write_stream,
)
from satcodec.errors import TileCorruptedError  # noqa: E402

RESULTS = REPO / "bench" / "results"


# --- the default target --------------------------------------------------------------------------
def default_target(data: bytes) -> str:
    """Parse, read every tile; if all are intact, re-encode and compare (oracle).

    Returns "ok", or "ok-damaged-tiles | <first tile error>" (the harness counts the part
    after " | " among the rejection reasons).
    """
    reader = StreamReader(data)
    tiles, first_error = [], None
    for key in reader.header.iter_tile_keys():
        try:
            tiles.append(reader.read_tile(*key))
        except TileCorruptedError as exc:
            first_error = first_error or str(exc)
    if first_error:
        return f"ok-damaged-tiles | first TileCorruptedError: {first_error}"
    again = StreamReader(write_stream(reader.header, tiles))
    if again.header != reader.header or list(again.iter_tiles()) != tiles:
        raise AssertionError("re-encoding a parsed stream does not give the same header/tiles")
    return "ok"


def load_object(spec: str) -> object:
    """``module:name`` or ``path/to/file.py:name``."""
    mod_name, _, attr = spec.rpartition(":")
    if not mod_name or not attr:
        raise SystemExit(f"--target/--expect must look like module:name, got {spec!r}")
    if mod_name.endswith(".py"):
        sp = importlib.util.spec_from_file_location(Path(mod_name).stem, mod_name)
        if sp is None or sp.loader is None:
            raise SystemExit(f"cannot load {mod_name}")
        module = importlib.util.module_from_spec(sp)
        sp.loader.exec_module(module)
    else:
        module = importlib.import_module(mod_name)
    return getattr(module, attr)


# --- seed corpus ---------------------------------------------------------------------------------
def generate_corpus(seed: int) -> list[bytes]:
    """A few small valid streams covering the header's variety (dtypes, nodata, edge tiles)."""
    rng = random.Random(seed)
    geo = {
        "crs_wkt": 'GEOGCS["WGS 84",DATUM["WGS_1984"]]',
        "transform": [0.5, 0.0, 10.0, 0.0, -0.5, 50.0],
        "rpcs": {"LINE_OFF": 12.5, "LINE_NUM_COEFF": [0.0] * 20},
        "gcps": [{"row": 1.0, "col": 2.0, "x": 3.0, "y": 4.0, "z": 0.0, "id": "1"}],
        "gcps_crs_wkt": "EPSG:4326",
        "band_descriptions": ["red", "green", "blue"],
        "tags": {"k": "vä"},
    }
    shapes = [
        # height, width, bands, dtype, bit_depth, tile, C, nodata, metadata
        (20, 20, 1, "uint8", 8, 16, 1, None, {}),
        (40, 33, 2, "uint16", 12, 16, 4, 0.0, {"a": [1, 2, 3]}),
        (100, 70, 3, "uint16", 16, 32, 8, 65535.0, geo),
        (64, 64, 1, "int16", 16, 64, 16, -9999.0, {"crs_wkt": "EPSG:32631"}),
        (17, 300, 2, "uint32", 24, 48, 3, None, {}),
        (8, 8, 1, "int32", 32, 8192, 192, None, {"tags": {}}),
    ]
    out = []
    for h_, w_, b_, dt, bd, ts, c, nd, meta in shapes:
        header = StreamHeader(
            height=h_,
            width=w_,
            bands=b_,
            dtype=dt,
            bit_depth=bd,
            model_id=rng.randbytes(16).hex(),
            quant_step_q16=rng.randint(1, 1 << 20),
            tile_size=ts,
            latent_channels=c,
            band_offsets=tuple(rng.randint(-100, 1000) for _ in range(b_)),
            nodata=nd,
            metadata=meta,
        )
        tiles = [
            TileRecord(b, r, col, rng.randbytes(c), rng.randbytes(rng.choice([0, 1, 5, 40])))
            for b, r, col in header.iter_tile_keys()
        ]
        out.append(write_stream(header, tiles))
    return out


# --- structure knowledge (docs/bitstream.md) -----------------------------------------------------
# (offset, size, kind) of the fixed-header fields
FIELDS = {
    "version": (4, 2, "u"),
    "flags": (6, 2, "u"),
    "stream_length": (8, 8, "u"),
    "height": (16, 4, "u"),
    "width": (20, 4, "u"),
    "bands": (24, 2, "u"),
    "latent_channels": (26, 2, "u"),
    "dtype": (28, 1, "u"),
    "bit_depth": (29, 1, "u"),
    "downsampling": (30, 1, "u"),
    "nodata_flag": (31, 1, "u"),
    "nodata_value": (32, 8, "f"),
    "quant_step_q16": (56, 4, "u"),
    "tile_size": (60, 4, "u"),
    "tile_count": (64, 4, "u"),
    "meta_len": (68, 4, "u"),
}
TILE_FIELDS = {  # offset within a record
    "band": (0, 2),
    "n_scales": (2, 2),
    "row": (4, 4),
    "col": (8, 4),
    "latent_h": (12, 2),
    "latent_w": (14, 2),
    "payload_len": (16, 4),
}
_UFMT = {1: "<B", 2: "<H", 4: "<I", 8: "<Q"}
INTERESTING = [
    0,
    1,
    2,
    3,
    7,
    8,
    15,
    16,
    17,
    31,
    32,
    33,
    63,
    64,
    127,
    128,
    255,
    256,
    512,
    1023,
    1024,
    1025,
    4096,
    8191,
    8192,
    8193,
    0x7FFF,
    0x8000,
    0xFFFF,
    0x10000,
    10**6,
    (1 << 24) - 1,
    1 << 24,
    (1 << 24) + 1,
    0x7FFFFFFF,
    0x80000000,
    0xFFFFFFFF,
    1 << 32,
    1 << 40,
    (1 << 63) - 1,
    1 << 63,
    (1 << 64) - 1,
]
INTERESTING_F = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.5,
    255.0,
    256.0,
    65535.0,
    65536.0,
    -32768.0,
    -32769.0,
    2.0**31,
    -(2.0**31),
    2.0**32,
    float("inf"),
    float("-inf"),
    float("nan"),
    1e300,
    5e-324,
]
NASTY_META = [
    b"",
    b"{}",
    b"[]",
    b"null",
    b"{",
    b'{"a":NaN}',
    b'{"a":Infinity}',
    b'{"a":1e999}',
    b'{"a":"\\ud800"}',
    b"\xef\xbb\xbf{}",
    b"\xff\xfe",
    b'{"a":' + b"9" * 5000 + b"}",
    b"[" * 50_000 + b"]" * 50_000,
    b'{"a":' * 5000 + b"1" + b"}" * 5000,
    b'{"a":1,"a":2}',
    b' {"x" : [1, 2.5, true, null, "\\u00e9"]} ',
    b'"str"',
    b"12",
]


@dataclass
class Seed:
    """A corpus stream and, if it parses, where its parts are."""

    data: bytes
    name: str
    crc_pos: int | None = None
    meta: tuple[int, int] | None = None  # start, end
    table: list[tuple[int, int]] = field(default_factory=list)


def describe(data: bytes, name: str) -> Seed:
    seed = Seed(data, name)
    try:
        r = StreamReader(data, partial=True)
    except Exception:  # corpus files need not be valid: then only blind mutations apply
        return seed
    bands = r.header.bands
    n, meta_len = struct.unpack_from("<II", data, 64)
    m0 = FIXED_HEADER_SIZE + 4 * bands
    t0 = m0 + meta_len
    seed.meta = (m0, t0)
    seed.crc_pos = t0 + 12 * n
    seed.table = [struct.unpack_from("<QI", data, t0 + 12 * i) for i in range(n)]
    return seed


def crc_pos_of(buf: bytes | bytearray) -> int | None:
    """Where the header CRC sits according to the (possibly mutated) fixed header."""
    if len(buf) < FIXED_HEADER_SIZE:
        return None
    bands = struct.unpack_from("<H", buf, 24)[0]
    n, meta_len = struct.unpack_from("<II", buf, 64)
    pos = FIXED_HEADER_SIZE + 4 * bands + meta_len + 12 * n
    return pos if pos + 4 <= len(buf) else None


def fix_header_crc(buf: bytearray) -> None:
    pos = crc_pos_of(buf)
    if pos is not None:
        struct.pack_into("<I", buf, pos, zlib.crc32(buf[:pos]))


def fix_stream_length(buf: bytearray) -> None:
    if len(buf) >= 16:
        struct.pack_into("<Q", buf, 8, len(buf))


# --- mutators ------------------------------------------------------------------------------------
class Mutator:
    """Mix of blind and structure-aware mutations; each returns (bytes, description)."""

    def __init__(self, seeds: list[Seed], rng: random.Random) -> None:
        self.seeds, self.rng = seeds, rng
        self.ops: list[tuple[str, Callable[[Seed, bytearray], str | None], float]] = [
            ("bitflip", self.bitflip, 3),
            ("byte", self.set_byte, 2),
            ("int", self.set_int, 2),
            ("field", self.set_field, 4),
            ("insert", self.insert, 1.5),
            ("delete", self.delete, 1.5),
            ("truncate", self.truncate, 1),
            ("duplicate", self.duplicate, 0.5),
            ("splice", self.splice, 0.5),
            ("tile", self.tile_mutation, 3),
            ("table", self.table_entry, 2),
            ("metadata", self.metadata, 1),
        ]
        self.weights = [w for *_x, w in self.ops]

    def pos(self, buf: bytearray) -> int:
        # bias towards the header, where most of the parsing logic lives
        if buf and self.rng.random() < 0.5:
            return self.rng.randrange(min(len(buf), 256))
        return self.rng.randrange(max(len(buf), 1))

    def bitflip(self, _s: Seed, buf: bytearray) -> str | None:
        if not buf:
            return None
        p = self.pos(buf)
        buf[p] ^= 1 << self.rng.randrange(8)
        return f"bitflip@{p}"

    def set_byte(self, _s: Seed, buf: bytearray) -> str | None:
        if not buf:
            return None
        p = self.pos(buf)
        buf[p] = self.rng.choice([0, 1, 0x7F, 0x80, 0xFF, self.rng.randrange(256)])
        return f"byte@{p}={buf[p]}"

    def interesting(self, size: int, current: int | None = None) -> int:
        r = self.rng.random()
        if current is not None and r < 0.3:
            v = current + self.rng.choice([-1, 1, -16, 16]) if r < 0.2 else current * 2
        elif r < 0.85:
            v = self.rng.choice(INTERESTING)
        else:
            v = self.rng.getrandbits(8 * size)
        return v % (1 << (8 * size))

    def set_int(self, _s: Seed, buf: bytearray) -> str | None:
        size = self.rng.choice([1, 2, 4, 8])
        if len(buf) < size:
            return None
        p = self.rng.randrange(len(buf) - size + 1)
        v = self.interesting(size)
        struct.pack_into(_UFMT[size], buf, p, v)
        return f"u{8 * size}@{p}={v}"

    def set_field(self, _s: Seed, buf: bytearray) -> str | None:
        if len(buf) < FIXED_HEADER_SIZE:
            return None
        name = self.rng.choice(list(FIELDS))
        off, size, kind = FIELDS[name]
        if kind == "f":
            v: float = self.rng.choice(INTERESTING_F)
            struct.pack_into("<d", buf, off, v)
            if self.rng.random() < 0.5:
                buf[31] = 1  # nodata flag, so the value matters
        else:
            v = self.interesting(size, struct.unpack_from(_UFMT[size], buf, off)[0])
            struct.pack_into(_UFMT[size], buf, off, v)
        return f"field {name}={v}"

    def insert(self, _s: Seed, buf: bytearray) -> str | None:
        p = self.rng.randrange(len(buf) + 1)
        chunk = self.rng.randbytes(self.rng.choice([1, 2, 4, 8, 33]))
        buf[p:p] = chunk
        return f"insert@{p}+{len(chunk)}"

    def delete(self, _s: Seed, buf: bytearray) -> str | None:
        if not buf:
            return None
        p = self.rng.randrange(len(buf))
        n = self.rng.choice([1, 2, 4, 12, 64])
        del buf[p : p + n]
        return f"delete@{p}-{n}"

    def truncate(self, _s: Seed, buf: bytearray) -> str | None:
        p = self.rng.randrange(len(buf) + 1)
        del buf[p:]
        return f"truncate@{p}"

    def duplicate(self, _s: Seed, buf: bytearray) -> str | None:
        if len(buf) < 2:
            return None
        a = self.rng.randrange(len(buf))
        b = min(len(buf), a + self.rng.randint(1, 64))
        p = self.rng.randrange(len(buf) + 1)
        buf[p:p] = buf[a:b]
        return f"duplicate[{a}:{b}]@{p}"

    def splice(self, _s: Seed, buf: bytearray) -> str | None:
        other = self.rng.choice(self.seeds).data
        if not other or not buf:
            return None
        p = self.rng.randrange(len(buf))
        q = self.rng.randrange(len(other))
        buf[p:] = other[q:]
        return f"splice@{p}<-{q}"

    def tile_mutation(self, s: Seed, buf: bytearray) -> str | None:
        """Change a record's field or byte and re-seal its CRC, to reach the consistency checks."""
        if not s.table:
            return None
        i = self.rng.randrange(len(s.table))
        off, length = s.table[i]
        if off + length > len(buf) or length < 24:
            return None
        if self.rng.random() < 0.6:
            name = self.rng.choice(list(TILE_FIELDS))
            fo, size = TILE_FIELDS[name]
            v = self.interesting(size, struct.unpack_from(_UFMT[size], buf, off + fo)[0])
            struct.pack_into(_UFMT[size], buf, off + fo, v)
            what = f"{name}={v}"
        else:
            p = off + self.rng.randrange(length - 4)
            buf[p] ^= 1 << self.rng.randrange(8)
            what = f"bitflip@{p}"
        body_end = off + length - 4
        struct.pack_into("<I", buf, body_end, zlib.crc32(buf[off:body_end]))
        return f"tile {i} {what} (CRC re-sealed)"

    def table_entry(self, s: Seed, buf: bytearray) -> str | None:
        if not s.table or s.crc_pos is None:
            return None
        i = self.rng.randrange(len(s.table))
        p = s.crc_pos - 12 * len(s.table) + 12 * i
        r = self.rng.random()
        if r < 0.3:  # point at another tile's record
            o, n = s.table[self.rng.randrange(len(s.table))]
            struct.pack_into("<QI", buf, p, o, n)
        elif r < 0.65:
            struct.pack_into("<Q", buf, p, self.interesting(8, s.table[i][0]))
        else:
            struct.pack_into("<I", buf, p + 8, self.interesting(4, s.table[i][1]))
        return f"table[{i}]={struct.unpack_from('<QI', buf, p)}"

    def metadata(self, s: Seed, buf: bytearray) -> str | None:
        """Replace the metadata, shifting the table offsets so the rest stays consistent."""
        if s.meta is None or s.crc_pos is None:
            return None
        m0, m1 = s.meta
        if self.rng.random() < 0.7:
            new = self.rng.choice(NASTY_META)
        else:
            obj = {"k": self.rng.choice([1, 1.5, "s", None, [], {}]), "n": self.rng.random()}
            new = json.dumps(obj).encode()
        delta = len(new) - (m1 - m0)
        t0 = m1
        for i, (o, n) in enumerate(s.table):
            struct.pack_into("<QI", buf, t0 + 12 * i, o + delta, n)
        buf[m0:m1] = new
        struct.pack_into("<I", buf, 68, len(new))
        return f"metadata={new[:40]!r}{'...' if len(new) > 40 else ''}"

    def mutate(self, seed: Seed | None = None) -> tuple[bytes, str, list[str]]:
        """A mutant (of ``seed``, default: a random corpus seed), its description and the
        names of the steps applied."""
        s = seed or self.rng.choice(self.seeds)
        buf = bytearray(s.data)
        steps, kinds = [], []
        for _ in range(self.rng.choice([1, 1, 1, 2, 2, 3])):
            name, fn, _w = self.rng.choices(self.ops, self.weights)[0]
            try:
                d = fn(s, buf)
            except (struct.error, IndexError, ValueError):
                d = None  # an earlier step moved the structure this one relies on
            if d:
                steps.append(d)
                kinds.append(name)
        # re-seal so mutations get past the outer checks (else almost all stop at the CRC)
        r = self.rng.random()
        if r < 0.5:
            fix_stream_length(buf)
            steps.append("fix stream_length")
            kinds.append("(re-seal stream_length)")
        if r < 0.75:
            fix_header_crc(buf)
            steps.append("fix header CRC")
            kinds.append("(re-seal header CRC)")
        return bytes(buf), f"{s.name}: " + "; ".join(steps), kinds


# --- execution ------------------------------------------------------------------------------------
class CaseTimeout(BaseException):
    """Raised in the target by SIGALRM; a BaseException so `except Exception` can't swallow it."""


def _on_alarm(_signum, _frame) -> None:
    raise CaseTimeout()


def peak_rss_mb() -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS
    scale = 1 / (1024 * 1024) if sys.platform == "darwin" else 1 / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


class Watchdog(threading.Thread):
    """Hard timeout for hangs inside C code that SIGALRM cannot interrupt: save and exit."""

    def __init__(self, limit_s: float, crash_dir: Path) -> None:
        super().__init__(daemon=True)
        self.limit_s, self.crash_dir = limit_s, crash_dir
        self.started_at: float | None = None
        self.data, self.desc = b"", ""
        self._stop = threading.Event()

    def arm(self, data: bytes, desc: str) -> None:
        self.data, self.desc, self.started_at = data, desc, time.monotonic()

    def disarm(self) -> None:
        self.started_at = None

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        while not self._stop.wait(0.5):
            t = self.started_at
            if t is not None and time.monotonic() - t > self.limit_s:
                path = save_reproducer(self.crash_dir, "hang-hard", self.data, self.desc, "")
                print(
                    f"\nFATAL: a case ran over {self.limit_s:.0f} s (hard hang); saved {path}",
                    file=sys.stderr,
                )
                sys.stderr.flush()
                os._exit(3)


def save_reproducer(crash_dir: Path, kind: str, data: bytes, desc: str, tb: str) -> Path:
    crash_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(data).hexdigest()[:12]
    path = crash_dir / f"{kind}-{digest}.bin"
    path.write_bytes(data)
    path.with_suffix(".txt").write_text(f"kind: {kind}\nmutation: {desc}\n\n{tb}")
    return path


def reason(exc: BaseException) -> str:
    """The message with numbers and hex replaced, to group rejections by check."""
    msg = str(exc) if isinstance(exc, BaseException) else exc
    msg = re.sub(r"tile \(band \d+, row \d+, col \d+\): ", "", msg)
    msg = re.sub(r"b?'.*?'(?=[,)]|$)|b?\".*?\"(?=[,)]|$)", "'...'", msg)  # quoted bytes
    msg = re.sub(r"\b0x[0-9a-fA-F]+\b|\b(?=[0-9a-f]*[a-f])[0-9a-f]{8}\b", "H", msg)
    msg = re.sub(r"[-+]?\d+(\.\d+)?(e[-+]?\d+)?|\b-?(inf|nan)\b", "N", msg)
    msg = re.sub(r": line N column N.*", "", msg)  # JSON decoder position details
    return msg[:100]


def signature(exc: BaseException) -> str:
    """Type plus the innermost frame, to group findings."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
    return f"{type(exc).__name__} at {where}"


@dataclass
class Stats:
    cases: int = 0
    outcomes: collections.Counter = field(default_factory=collections.Counter)
    mutations: collections.Counter = field(default_factory=collections.Counter)
    reasons: collections.Counter = field(default_factory=collections.Counter)
    findings: dict[str, dict] = field(default_factory=dict)  # signature -> info
    slowest_s: float = 0.0
    slowest_desc: str = ""
    rss_start_mb: float = 0.0
    rss_peak_mb: float = 0.0
    elapsed_s: float = 0.0
    interrupted: bool = False
    # per case kind (mutated corpus / generated / generated then mutated, small or big)
    kinds: collections.Counter = field(default_factory=collections.Counter)
    kind_outcomes: collections.Counter = field(default_factory=collections.Counter)
    kind_seconds: collections.Counter = field(default_factory=collections.Counter)
    # per-case peak RSS above the process's RSS before the case (needs Linux VmHWM reset)
    case_peak_mb: float = 0.0
    case_peak_desc: str = ""
    case_peak_bound_mb: float = 0.0
    worst_ratio: float = 0.0  # max peak / bound over cases with a bound
    worst_ratio_desc: str = ""
    bounded_cases: int = 0
    over_bound: int = 0
    worker_base_mb: float = 0.0
    worker_vmsize_mb: float = 0.0
    worker_restarts: int = 0


# --- one case -------------------------------------------------------------------------------------
def _proc_kib(key: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    m = re.search(key + r":\s+(\d+)", text)
    return int(m.group(1)) if m else None


def _reset_peak() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def run_case(
    target: Callable[[bytes], object], expected: tuple, data: bytes, timeout: float
) -> dict:
    """Run ``target(data)`` under a SIGALRM soft timeout; the outcome, without raising.

    A target may return a str (the outcome label, "label | detail") or (label, bound): the
    documented memory bound of the case in bytes, checked against the case's peak RSS."""
    per_case = _reset_peak()
    base = _proc_kib("VmRSS") if per_case else None
    res: dict = {"outcome": "ok", "reason": None, "finding": None, "bound": None}
    t0 = time.perf_counter()
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        got = target(data)
        if isinstance(got, tuple):
            got, res["bound"] = got
        outcome = got if isinstance(got, str) else "ok"
        if " | " in outcome:  # "outcome | detail": count the detail as a reason
            outcome, detail = outcome.split(" | ", 1)
            res["reason"] = f"{outcome}: {reason(detail)}"
        res["outcome"] = outcome
    except CaseTimeout:
        res["outcome"] = "FINDING hang"
        res["finding"] = ("hang", "hang (soft timeout)", traceback.format_exc())
    except expected as exc:
        res["outcome"] = type(exc).__name__
        res["reason"] = f"{type(exc).__name__}: {reason(exc)}"
        if not str(exc) or "\n" in str(exc):  # the contract: one-line messages
            res["finding"] = (
                "message",
                f"{type(exc).__name__} message not one line",
                traceback.format_exc(),
            )
    except Exception as exc:  # the interesting part: MemoryError, RecursionError, ...
        res["outcome"] = "FINDING unexpected"
        res["finding"] = ("unexpected", signature(exc), traceback.format_exc())
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    res["seconds"] = time.perf_counter() - t0
    hwm = _proc_kib("VmHWM")
    res["hwm_mb"] = hwm / 1024 if hwm else peak_rss_mb()
    res["peak_mb"] = (hwm - base) / 1024 if per_case and hwm and base else None
    return res


# --- worker processes -------------------------------------------------------------------------------
def _worker_main(conn, target_spec: str, expect: list[str], as_limit_mb: int, warm: list) -> None:
    """A worker: warm up on the corpus, cap its address space, then run cases sent to it."""
    target = load_object(target_spec) if target_spec else default_target
    expected = tuple(load_object(e) for e in expect)
    signal.signal(signal.SIGALRM, _on_alarm)
    for d in warm:  # imports, models, caches: part of the base, not of a case
        try:
            target(d)
        except Exception:
            pass
    if as_limit_mb:  # a runaway allocation becomes a MemoryError (a finding) or a clean refusal
        lim = as_limit_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
    conn.send(
        {
            "ready": True,
            "rss_mb": (_proc_kib("VmRSS") or 0) / 1024,
            "vmsize_mb": (_proc_kib("VmSize") or 0) / 1024,
        }
    )
    while True:
        msg = conn.recv()
        if msg is None:
            return
        data, timeout = msg
        conn.send(run_case(target, expected, data, timeout))


class Worker:
    """A spawned worker process and its pipe."""

    def __init__(self, args: argparse.Namespace, warm: list[bytes]) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")  # not fork: the parent's state stays out of the worker
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=_worker_main,
            args=(child, args.target, args.expect, args.as_limit_mb, warm),
            daemon=True,
        )
        self.proc.start()
        child.close()
        try:
            if not self.conn.poll(600):
                raise SystemExit("fuzz worker did not start in 600 s")
            self.info = self.conn.recv()
        except (EOFError, OSError):
            self.proc.join(5)
            raise SystemExit(
                f"fuzz worker died while warming up (exit code {self.proc.exitcode})"
            ) from None

    def run(self, data: bytes, timeout: float, hard: float) -> dict | str:
        """The case's result, or "hang" / "crash: ..." (the worker is then dead)."""
        self.conn.send((data, timeout))
        if not self.conn.poll(hard):
            self.kill()
            return "hang"
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            self.proc.join(5)
            return f"crash: worker exit code {self.proc.exitcode}"

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)

    def close(self) -> None:
        try:
            self.conn.send(None)
            self.proc.join(10)
        except (OSError, BrokenPipeError):
            pass
        self.kill()


# --- the campaign -----------------------------------------------------------------------------------
def make_cases(args: argparse.Namespace, mut: Mutator, rng: random.Random):
    """Yield (data, desc, mutation kinds, case kind, timeout) for the campaign."""
    gen = None
    if args.generated > 0:
        gen_mod = load_object(args.generator)
        gen = gen_mod(random.Random(rng.getrandbits(64)))
    for _ in range(args.cases):
        if gen is not None and rng.random() < args.generated:
            size = "big" if rng.random() < args.big else "small"
            data, desc = gen.stream(size)
            kinds: list[str] = []
            kind = f"generated-{size}"
            if rng.random() < args.mutate_generated:
                data, mdesc, kinds = mut.mutate(describe(data, "generated"))
                desc += "; then " + mdesc.split(": ", 1)[1]
                kind += "+mutated"
            yield data, desc, kinds, kind, args.timeout_big if size == "big" else args.timeout
        else:
            data, desc, kinds = mut.mutate()
            yield data, desc, kinds, "mutated corpus", args.timeout


def run_campaign(args: argparse.Namespace) -> Stats:
    crash_dir = Path(args.crash_dir)
    rng = random.Random(args.seed)
    if args.corpus:
        seeds = [describe(Path(p).read_bytes(), Path(p).name) for p in args.corpus]
    else:
        seeds = [describe(d, f"gen{i}") for i, d in enumerate(generate_corpus(args.seed))]
    mut = Mutator(seeds, rng)
    st = Stats(rss_start_mb=peak_rss_mb())

    def finding(kind: str, sig: str, data: bytes, desc: str, tb: str) -> None:
        f = st.findings.setdefault(sig, {"kind": kind, "count": 0, "reproducers": []})
        f["count"] += 1
        if len(f["reproducers"]) < args.max_repro:
            f["reproducers"].append(str(save_reproducer(crash_dir, kind, data, desc, tb)))

    worker: Worker | None = None
    dog: Watchdog | None = None
    if args.workers:
        if args.workers != 1:
            raise SystemExit("--workers: one worker process is supported (cases run in order)")
        warm = [s.data for s in seeds]
        worker = Worker(args, warm)
        st.worker_base_mb = worker.info["rss_mb"]
        st.worker_vmsize_mb = worker.info["vmsize_mb"]
        rss_base = st.worker_base_mb
    else:
        target = load_object(args.target) if args.target else default_target
        expected = tuple(load_object(e) for e in args.expect)
        signal.signal(signal.SIGALRM, _on_alarm)
        dog = Watchdog(max(10.0, 5 * args.timeout), crash_dir)
        dog.start()
        # warm up the target on the unmutated corpus (imports, caches) before measuring memory
        for s in seeds:
            try:
                target(s.data)
            except Exception:
                pass
        if args.as_limit_mb:  # turn a runaway allocation into a MemoryError we can report
            lim = args.as_limit_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
        rss_base = peak_rss_mb()
    t_start = last_print = time.monotonic()

    try:
        for data, desc, kinds, kind, timeout in make_cases(args, mut, rng):
            st.mutations.update(kinds)
            if worker is not None:
                hard = max(10.0, 5 * timeout)
                res = worker.run(data, timeout, hard)
                if isinstance(res, str):  # the worker hung or died: a finding, and a new one
                    name = "hang-hard" if res == "hang" else "crash"
                    res = {
                        "outcome": f"FINDING {name}",
                        "reason": None,
                        "finding": (name, res if res != "hang" else f"hang over {hard:.0f} s", ""),
                        "bound": None,
                        "seconds": hard if res == "hang" else 0.0,
                        "peak_mb": None,
                        "hwm_mb": 0.0,
                    }
                    worker.kill()
                    worker = Worker(args, [s.data for s in seeds])
                    st.worker_restarts += 1
            else:
                before = peak_rss_mb()
                assert dog is not None
                dog.arm(data, desc)
                res = run_case(target, expected, data, timeout)
                dog.disarm()
                after = peak_rss_mb()
                if res["peak_mb"] is None and after > before:
                    res["peak_mb"] = after - before
            outcome = res["outcome"]
            if res["reason"]:
                st.reasons[res["reason"]] += 1
            if res["finding"]:
                finding(res["finding"][0], res["finding"][1], data, desc, res["finding"][2])
            dt = res["seconds"]
            st.cases += 1
            st.outcomes[outcome] += 1
            st.kinds[kind] += 1
            st.kind_outcomes[(kind, outcome)] += 1
            st.kind_seconds[kind] += dt
            if dt > st.slowest_s:
                st.slowest_s, st.slowest_desc = dt, desc
            st.rss_peak_mb = max(st.rss_peak_mb, res["hwm_mb"] or 0.0)
            peak, bound = res["peak_mb"], res["bound"]
            if peak is not None and peak > st.case_peak_mb:
                st.case_peak_mb, st.case_peak_desc = peak, desc
                st.case_peak_bound_mb = bound / 2**20 if bound else 0.0
            if bound and peak is not None:
                st.bounded_cases += 1
                ratio = peak * 2**20 / bound
                if ratio > st.worst_ratio:
                    st.worst_ratio, st.worst_ratio_desc = ratio, desc
                if ratio > 1:
                    st.over_bound += 1
                    finding(
                        "memory",
                        "peak RSS over the documented bound",
                        data,
                        desc,
                        f"peak RSS +{peak:.0f} MB, bound {bound / 2**20:.0f} MB",
                    )
                    st.outcomes["FINDING memory"] += 1
            elif peak is not None and peak > args.rss_limit_mb:
                # no bound: the case's own growth (not the process's RSS, which allocator
                # caches and earlier big cases may have raised) against --rss-limit-mb
                finding(
                    "memory",
                    f"peak RSS +{peak:.0f} MB",
                    data,
                    desc,
                    f"peak RSS +{peak:.0f} MB in the case (process {res['hwm_mb']:.0f} MB, "
                    f"base {rss_base:.0f} MB)",
                )
                st.outcomes["FINDING memory"] += 1
            if args.progress and time.monotonic() - last_print > args.progress:
                last_print = time.monotonic()
                rate = st.cases / (last_print - t_start)
                bad = sum(f["count"] for f in st.findings.values())
                print(f"  {st.cases:>9,} cases  {rate:,.1f}/s  findings {bad}", file=sys.stderr)
    except KeyboardInterrupt:
        st.interrupted = True
    finally:
        if dog is not None:
            dog.stop()
        signal.setitimer(signal.ITIMER_REAL, 0)
        if worker is not None:
            worker.close()
    st.elapsed_s = time.monotonic() - t_start
    if worker is None:
        st.rss_peak_mb = max(st.rss_peak_mb, peak_rss_mb())
    return st


# --- reporting ------------------------------------------------------------------------------------
def render(st: Stats, args: argparse.Namespace) -> str:
    rate = st.cases / st.elapsed_s if st.elapsed_s else 0.0
    n_find = sum(f["count"] for f in st.findings.values())
    lines = [
        f"# {args.title}",
        "",
        f"- date: {_dt.datetime.now().isoformat(timespec='seconds')}",
        f"- command: `python bench/fuzz_bitstream.py {shlex.join(sys.argv[1:])}`",
        f"- host: {platform.node()} ({platform.machine()}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs)",
        f"- target: `{args.target or 'bench/fuzz_bitstream.py:default_target'}`; expected: "
        + ", ".join(f"`{e}`" for e in args.expect),
        f"- corpus: {', '.join(args.corpus) if args.corpus else 'generated (6 streams)'}; seed {args.seed}",
        f"- cases: **{st.cases:,}** in {st.elapsed_s:.1f} s ({rate:,.0f} cases/s)"
        + (" — interrupted" if st.interrupted else ""),
        f"- per-case timeout {args.timeout} s; slowest case {st.slowest_s * 1000:.1f} ms "
        f"({st.slowest_desc})",
        f"- peak RSS {st.rss_peak_mb:.0f} MB (start {st.rss_start_mb:.0f} MB; limit +{args.rss_limit_mb} MB)",
    ]
    if args.workers:
        lines.append(
            f"- cases run in {args.workers} worker process, warmed up on the corpus (base RSS "
            f"{st.worker_base_mb:.0f} MB, address space {st.worker_vmsize_mb:.0f} MB), then under "
            + (f"RLIMIT_AS = {args.as_limit_mb} MB" if args.as_limit_mb else "no RLIMIT_AS")
            + f"; worker restarts: {st.worker_restarts}; peak RSS above is the worker's"
        )
    elif args.as_limit_mb:
        lines.append(f"- RLIMIT_AS = {args.as_limit_mb} MB")
    if args.generated:
        lines.append(
            f"- generated cases: {args.generated:.0%} of all (`{args.generator}`), of them "
            f"{args.big:.1%} big (2048-8192 px tiles, per-case timeout {args.timeout_big} s), "
            f"{args.mutate_generated:.0%} mutated after generation"
        )
    lines += [
        f"- **findings: {n_find}** (unexpected exceptions, hangs, crashes, memory)",
        "",
        "## Outcomes",
        "",
        "| outcome | cases | share |",
        "|---|---:|---:|",
    ]
    for k, v in st.outcomes.most_common():
        lines.append(f"| {k} | {v:,} | {100 * v / max(st.cases, 1):.1f}% |")
    if st.bounded_cases or st.case_peak_mb:
        lines += [
            "",
            "## Memory per case",
            "",
            "Peak RSS of each case above the process's RSS just before it (Linux: VmHWM reset "
            "through /proc/self/clear_refs before every case), against the case's documented "
            "bound when the target returns one (`Decoder.memory_bound()` plus the output "
            'array, docs/bitstream.md "Decoder memory").',
            "",
            f"- cases with a bound: {st.bounded_cases:,}; **over their bound: {st.over_bound}**",
            f"- largest peak: +{st.case_peak_mb:.0f} MB"
            + (f" (its bound {st.case_peak_bound_mb:.0f} MB)" if st.case_peak_bound_mb else "")
            + f": {st.case_peak_desc}",
            f"- largest peak / bound: {st.worst_ratio:.2f}: {st.worst_ratio_desc}",
            f"- largest process RSS: {st.rss_peak_mb:.0f} MB",
        ]
    if len(st.kinds) > 1 or args.generated:
        outcomes = [k for k, _ in st.outcomes.most_common()]
        lines += [
            "",
            "## Cases by kind",
            "",
            "| kind | cases | mean time | " + " | ".join(outcomes) + " |",
            "|---|---:|---:|" + "---:|" * len(outcomes),
        ]
        for kind, n in st.kinds.most_common():
            cells = [f"{st.kind_outcomes[(kind, o)]:,}" for o in outcomes]
            mean = 1000 * st.kind_seconds[kind] / max(n, 1)
            lines.append(f"| {kind} | {n:,} | {mean:,.0f} ms | " + " | ".join(cells) + " |")
    lines += ["", "## Mutation steps applied", "", "| step | count |", "|---|---:|"]
    for k, v in st.mutations.most_common():
        lines.append(f"| {k} | {v:,} |")
    lines += [
        "",
        "## Rejection reasons (numbers replaced by N)",
        "",
        "| reason | cases |",
        "|---|---:|",
    ]
    for k, v in sorted(st.reasons.items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"| {k.replace('|', '/')} | {v:,} |")
    lines += ["", "## Findings", ""]
    if not st.findings:
        lines.append("None.")
    for sig, f in st.findings.items():
        lines.append(
            f"- {f['kind']}: `{sig}` x{f['count']}; reproducers: "
            + ", ".join(
                f"`{Path(p).relative_to(REPO) if Path(p).is_relative_to(REPO) else p}`"
                for p in f["reproducers"]
            )
        )
    return "\n".join(lines) + "\n"


def replay(paths: list[str], args: argparse.Namespace) -> int:
    target = load_object(args.target) if args.target else default_target
    expected = tuple(load_object(e) for e in args.expect)
    status = 0
    for p in paths:
        data = Path(p).read_bytes()
        try:
            print(f"{p}: returned {target(data)!r}")
        except expected as exc:
            print(f"{p}: expected {type(exc).__name__}: {exc}")
        except Exception:
            status = 1
            print(f"{p}: UNEXPECTED\n{traceback.format_exc()}")
    return status


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--corpus", nargs="*", default=[], metavar="FILE", help="valid streams to mutate"
    )
    ap.add_argument("--target", default="", help="module:function or file.py:function taking bytes")
    ap.add_argument(
        "--expect",
        nargs="+",
        default=["satcodec.errors:BitstreamError"],
        help="exception classes that count as a clean rejection",
    )
    ap.add_argument("--timeout", type=float, default=2.0, help="per-case soft timeout (s)")
    ap.add_argument("--rss-limit-mb", type=float, default=256, help="allowed peak-RSS growth")
    ap.add_argument(
        "--as-limit-mb", type=int, default=0, help="RLIMIT_AS for the process (0: none)"
    )
    ap.add_argument("--max-repro", type=int, default=5, help="reproducers saved per finding kind")
    ap.add_argument(
        "--workers",
        type=int,
        default=0,
        help="run the cases in a worker process (1), under --as-limit-mb, with per-case peak "
        "RSS; a hung or crashed worker is a finding and is replaced (0: in this process)",
    )
    ap.add_argument(
        "--generated",
        type=float,
        default=0.0,
        help="share of cases that are streams from --generator instead of corpus mutants",
    )
    ap.add_argument(
        "--generator",
        default="bench/fuzz_targets.py:StreamGenerator",
        help="class(rng) with .stream('small'|'big') -> (bytes, description)",
    )
    ap.add_argument("--big", type=float, default=0.01, help="share of generated cases that are big")
    ap.add_argument(
        "--mutate-generated",
        type=float,
        default=0.5,
        help="share of generated streams mutated before decoding",
    )
    ap.add_argument("--timeout-big", type=float, default=120.0, help="per-case timeout, big cases")
    ap.add_argument("--title", default="Bitstream fuzz campaign", help="report title")
    ap.add_argument("--crash-dir", default=str(RESULTS / "fuzz_crashes"))
    ap.add_argument("--report", default=str(RESULTS / "fuzz_bitstream.md"))
    ap.add_argument(
        "--progress", type=float, default=10.0, help="seconds between progress lines (0: off)"
    )
    ap.add_argument("--replay", nargs="+", metavar="FILE", help="run the target on files and exit")
    args = ap.parse_args(argv)
    if args.replay:
        return replay(args.replay, args)

    st = run_campaign(args)
    report = render(st, args)
    Path(args.report).parent.mkdir(parents=True, exist_ok=True)
    Path(args.report).write_text(report)
    n_find = sum(f["count"] for f in st.findings.values())
    print(
        f"cases {st.cases:,}  time {st.elapsed_s:.1f} s  ({st.cases / max(st.elapsed_s, 1e-9):,.0f}/s)"
    )
    for k, v in st.outcomes.most_common():
        print(f"  {k:<28} {v:>9,}")
    print(
        f"findings: {n_find}"
        + "".join(
            f"\n  {f['kind']}: {s} x{f['count']} -> {f['reproducers'][:1]}"
            for s, f in st.findings.items()
        )
    )
    print(f"summary written to {args.report}")
    return 1 if n_find else 0


if __name__ == "__main__":
    sys.exit(main())
