"""Hardware profiles and latency profiling: measured on this host, projected for the board.

A profile (``hw_profiles/NAME.toml``) describes one target from its datasheets: the runtime and
precision it would run, its threads, memory, peak int8 / fp16 (/ fp32) throughput, memory
bandwidth and power, with the sources cited in the file. :func:`profile_board` reports for one
tile of ``size`` x ``size`` pixels (the analysis runs on it plus its 32 px halo):

* model figures: MAC per pixel, parameters, weight memory and peak activation memory;
* **measured** latency and MPix/s *on this host* with the profile's runtime (or the closest one
  available here, named in the output), precision and threads: median of several runs after a
  warm-up;
* **projected** latency, MPix/s and energy per MPix *on the board*, from a per-layer roofline
  model over the profile's peak figures. Projections are bounds from datasheet numbers, not
  measurements, and are always labelled so.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from satcodec.codec.config import encode_halo
from satcodec.errors import ConfigError, ProfileError

# The profiles ship as package data, satcodec/hw_profiles: in a checkout that is a symlink to
# the repo root's hw_profiles/ (the one copy), in a wheel or sdist the files themselves. A
# checkout without symlinks (git core.symlinks=false) falls back to the repo root.
_PACKAGED_PROFILES = Path(__file__).resolve().parents[1] / "hw_profiles"
PROFILES_DIR = (
    _PACKAGED_PROFILES
    if _PACKAGED_PROFILES.is_dir()
    else Path(__file__).resolve().parents[2] / "hw_profiles"
)
BOARD_RUNTIMES = ("torch", "onnxruntime", "tensorrt", "vitis-ai", "openvino")
PRECISIONS = ("fp32", "fp16", "int8")
ROLES = ("board", "ground")
BYTES = {"fp32": 4, "fp16": 2, "int8": 1}


# --------------------------------------------------------------------------------------------
# profiles
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HardwareProfile:
    name: str
    description: str
    role: str
    sources: tuple[str, ...]
    runtime: str
    precision: str
    threads: int
    memory_gib: float
    peak_int8_tops: float
    peak_fp16_tflops: float
    memory_bandwidth_gbs: float
    power_w: float
    peak_fp32_tflops: float = 0.0
    notes: dict[str, str] = field(default_factory=dict)
    path: str = ""

    def peak_ops(self, precision: str | None = None) -> float:
        """Peak operations per second (1 MAC = 2 operations) at ``precision``."""
        p = precision or self.precision
        return {
            "int8": self.peak_int8_tops,
            "fp16": self.peak_fp16_tflops,
            "fp32": self.peak_fp32_tflops,
        }[p] * 1e12


_SCHEMA: dict[str, dict[str, tuple[type, bool]]] = {
    # table: field -> (type, required)
    "": {
        "name": (str, True),
        "description": (str, True),
        "role": (str, True),
        "sources": (list, True),
    },
    "runtime": {"name": (str, True), "precision": (str, True), "threads": (int, True)},
    "hardware": {
        "memory_gib": (float, True),
        "peak_int8_tops": (float, True),
        "peak_fp16_tflops": (float, True),
        "peak_fp32_tflops": (float, False),
        "memory_bandwidth_gbs": (float, True),
        "power_w": (float, True),
    },
    "notes": {},  # free-form provenance per field (strings)
}
_RANGES = {
    "threads": (1, 4096),
    "memory_gib": (1e-3, 1e5),
    "peak_int8_tops": (0.0, 1e5),
    "peak_fp16_tflops": (0.0, 1e5),
    "peak_fp32_tflops": (0.0, 1e5),
    "memory_bandwidth_gbs": (1e-3, 1e5),
    "power_w": (1e-3, 1e5),
}


def _field(src: str, table: str, key: str) -> str:
    return f"{src}: field '{table + '.' if table else ''}{key}'"


def parse_profile(data: dict[str, Any], src: str = "<profile>") -> HardwareProfile:
    """Validate a parsed TOML document; raises :class:`ProfileError` naming the file and field."""
    if not isinstance(data, dict):
        raise ProfileError(f"{src}: a profile must be a TOML table")
    values: dict[str, Any] = {}
    for key in data:
        if key not in _SCHEMA and key not in _SCHEMA[""]:
            raise ProfileError(f"{src}: unknown field '{key}' (expected {_known('')})")
    for table, fields in _SCHEMA.items():
        section = data if table == "" else data.get(table, {})
        if table and not isinstance(section, dict):
            raise ProfileError(f"{src}: '{table}' must be a table ([{table}])")
        if table == "notes":
            for k, v in section.items():
                if not isinstance(v, str):
                    raise ProfileError(f"{_field(src, table, k)} must be a string")
            values["notes"] = dict(section)
            continue
        if table:
            for k in section:
                if k not in fields:
                    raise ProfileError(
                        f"{_field(src, table, k)} is not a known field (expected {_known(table)})"
                    )
        for key, (typ, required) in fields.items():
            if key not in section:
                if required:
                    raise ProfileError(f"{_field(src, table, key)} is missing")
                continue
            v = section[key]
            where = _field(src, table, key)
            if typ is float:
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise ProfileError(f"{where} must be a number, got {v!r}")
                v = float(v)
                if not math.isfinite(v):
                    raise ProfileError(f"{where} must be finite, got {v!r}")
            elif typ is int:
                if isinstance(v, bool) or not isinstance(v, int):
                    raise ProfileError(f"{where} must be an integer, got {v!r}")
            elif typ is str:
                if not isinstance(v, str) or not v.strip():
                    raise ProfileError(f"{where} must be a non-empty string, got {v!r}")
            elif typ is list:
                if (
                    not isinstance(v, list)
                    or not v
                    or not all(isinstance(s, str) and s.strip() for s in v)
                ):
                    raise ProfileError(f"{where} must be a non-empty list of citation strings")
            if key in _RANGES:
                lo, hi = _RANGES[key]
                if not lo <= v <= hi:
                    raise ProfileError(f"{where} = {v} is out of range [{lo:g}, {hi:g}]")
            values[("runtime_" + key) if table == "runtime" else key] = v
    if values["role"] not in ROLES:
        raise ProfileError(
            f"{_field(src, '', 'role')} must be one of {ROLES}, got {values['role']!r}"
        )
    if values["runtime_name"] not in BOARD_RUNTIMES:
        raise ProfileError(
            f"{_field(src, 'runtime', 'name')} must be one of {BOARD_RUNTIMES}, got {values['runtime_name']!r}"
        )
    if values["runtime_precision"] not in PRECISIONS:
        raise ProfileError(
            f"{_field(src, 'runtime', 'precision')} must be one of {PRECISIONS}, got {values['runtime_precision']!r}"
        )
    peak_key = {"int8": "peak_int8_tops", "fp16": "peak_fp16_tflops", "fp32": "peak_fp32_tflops"}[
        values["runtime_precision"]
    ]
    if not values.get(peak_key, 0.0) > 0:
        raise ProfileError(
            f"{_field(src, 'hardware', peak_key)} must be > 0: the profile runs "
            f"{values['runtime_precision']}"
        )
    return HardwareProfile(
        name=values["name"],
        description=values["description"],
        role=values["role"],
        sources=tuple(values["sources"]),
        runtime=values["runtime_name"],
        precision=values["runtime_precision"],
        threads=values["runtime_threads"],
        memory_gib=values["memory_gib"],
        peak_int8_tops=values["peak_int8_tops"],
        peak_fp16_tflops=values["peak_fp16_tflops"],
        peak_fp32_tflops=values.get("peak_fp32_tflops", 0.0),
        memory_bandwidth_gbs=values["memory_bandwidth_gbs"],
        power_w=values["power_w"],
        notes=values.get("notes", {}),
        path=src,
    )


def _known(table: str) -> str:
    keys = list(_SCHEMA[table])
    if table == "":
        keys += [k for k in _SCHEMA if k]
    return ", ".join(keys)


def load_profile(path: str | os.PathLike) -> HardwareProfile:
    """Read and validate one profile file."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise ProfileError(
                "reading hardware profiles needs Python >= 3.11 or the tomli package"
            ) from None

    p = Path(path)
    try:
        with open(p, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ProfileError(f"hardware profile {p} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{p}: not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ProfileError(f"{p}: cannot be read: {exc}") from exc
    prof = parse_profile(data, str(p))
    if prof.name != p.stem:
        raise ProfileError(
            f"{_field(str(p), '', 'name')} is {prof.name!r} but the file is {p.name}"
        )
    return prof


def profiles_dir() -> Path:
    return Path(os.environ.get("SATCODEC_HW_PROFILES") or PROFILES_DIR)


def list_profiles(folder: str | os.PathLike | None = None) -> list[HardwareProfile]:
    d = Path(folder) if folder else profiles_dir()
    files = sorted(d.glob("*.toml"))
    if not files:
        raise ProfileError(f"no hardware profile (*.toml) in {d}")
    return [load_profile(f) for f in files]


def find_profile(name: str, folder: str | os.PathLike | None = None) -> HardwareProfile:
    """A profile by name (``hw_profiles/NAME.toml``) or by path."""
    p = Path(name)
    if p.suffix == ".toml" and p.exists():
        return load_profile(p)
    d = Path(folder) if folder else profiles_dir()
    f = d / f"{name}.toml"
    if not f.exists():
        names = ", ".join(sorted(q.stem for q in d.glob("*.toml"))) or "none"
        raise ProfileError(f"no hardware profile named {name!r} in {d} (available: {names})")
    return load_profile(f)


# --------------------------------------------------------------------------------------------
# model figures and the roofline projection
# --------------------------------------------------------------------------------------------


@dataclass
class Layer:
    name: str
    kind: str  # conv | gdn | shuffle
    macs: int
    params: int
    in_elems: int
    out_elems: int
    extra_elems: int = 0  # intermediates held at the same time (GDN's norm tensor)


def layer_table(transform: Any, input_shape: tuple[int, int, int, int]) -> list[Layer]:
    """Per-layer MACs, parameters and tensor sizes of a deployed (baked) transform.

    Shapes come from a forward pass on the meta device (no compute, any size).
    """
    import copy

    import torch
    from torch import nn

    from satcodec.export.deploy import BakedGDN

    module = copy.deepcopy(transform).to("meta")
    layers: list[Layer] = []
    x = torch.empty(input_shape, device="meta")
    with torch.no_grad():
        for i, m in enumerate(module):
            y = m(x)
            if isinstance(m, nn.Conv2d) or hasattr(m, "conv"):
                conv = m if isinstance(m, nn.Conv2d) else m.conv
                kh, kw = conv.kernel_size
                # a sub-pixel conv's output has as many elements as the shuffled one
                macs = y.numel() * (conv.in_channels // conv.groups) * kh * kw
                params = sum(p.numel() for p in m.parameters())
                layers.append(
                    Layer(f"{i}:conv{kh}x{kw}", "conv", macs, params, x.numel(), y.numel())
                )
            elif isinstance(m, BakedGDN):
                c = m.norm.in_channels
                macs = y.numel() * c
                params = sum(p.numel() for p in m.parameters())
                layers.append(
                    Layer(f"{i}:gdn", "gdn", macs, params, x.numel(), y.numel(), y.numel())
                )
            else:
                layers.append(Layer(f"{i}:{type(m).__name__}", "other", 0, 0, x.numel(), y.numel()))
            x = y
    return layers


@dataclass
class Projection:
    latency_s: float
    mpix_per_s: float
    energy_j_per_mpix: float
    compute_bound_layers: int
    memory_bound_layers: int


def roofline(layers: Sequence[Layer], prof: HardwareProfile, pixels: int) -> Projection:
    """Per-layer roofline over the profile's peaks: Σ max(2·MAC / peak, bytes / bandwidth).

    Every layer is assumed to run at the profile's precision and to read its input and weights
    from DRAM and write its output once (no on-chip fusion: accelerators that keep feature maps
    on chip do better on the memory term; the int8 export keeps the analysis' first and last
    convolutions in float, which this ignores). Peak throughput at 100 % utilisation makes it a
    lower bound on latency, from datasheet figures, not a measurement.
    """
    b = BYTES[prof.precision]
    peak = prof.peak_ops()
    bw = prof.memory_bandwidth_gbs * 1e9
    total, nc, nm = 0.0, 0, 0
    for layer in layers:
        t_compute = 2 * layer.macs / peak
        t_memory = (layer.in_elems + layer.out_elems + layer.params) * b / bw
        total += max(t_compute, t_memory)
        if layer.macs:
            nc += t_compute >= t_memory
            nm += t_compute < t_memory
    mpix = pixels / 1e6
    return Projection(total, mpix / total, prof.power_w * total / mpix, nc, nm)


def memory_figures(layers: Sequence[Layer], precision: str) -> dict[str, float]:
    """Weight bytes and peak activation bytes (one layer's input + output + intermediates)."""
    b = BYTES[precision]
    weights = sum(layer.params for layer in layers) * b
    peak = max((layer.in_elems + layer.out_elems + layer.extra_elems) * b for layer in layers)
    return {"weight_bytes": float(weights), "peak_activation_bytes": float(peak)}


# --------------------------------------------------------------------------------------------
# host measurement
# --------------------------------------------------------------------------------------------


def host_runtime_for(prof: HardwareProfile) -> tuple[str, str, str]:
    """``(runtime, precision, note)`` used on this host to stand in for the board's runtime."""
    runtime, precision, note = prof.runtime, prof.precision, ""
    if runtime == "tensorrt":
        try:
            from satcodec.export.tensorrt import require_tensorrt

            require_tensorrt()
        except Exception:  # noqa: BLE001 - absent TensorRT or GPU: measure a CPU stand-in
            runtime, note = "onnxruntime", "TensorRT/GPU absent here: onnxruntime CPU stands in"
    elif runtime in ("vitis-ai", "openvino"):
        runtime, note = "onnxruntime", f"{prof.runtime} absent here: onnxruntime CPU stands in"
    if runtime == "onnxruntime" and precision == "fp16":
        precision = "fp32"
        note = (note + "; " if note else "") + "fp16 measured as fp32 (CPU has no fast fp16 path)"
    if runtime == "torch" and precision != "fp32":
        runtime = "onnxruntime"
        note = (
            note + "; " if note else ""
        ) + f"torch runs fp32 only: onnxruntime {precision} stands in"
    return runtime, precision, note


def host_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs"


def _tile_input(size: int, halo: int) -> np.ndarray:
    """A real-image analysis window of (size + 2·halo)² px: the shipped sample, mirrored."""
    from satcodec.export.calibration import SAMPLE
    from satcodec.raster import open_raster

    with open_raster(SAMPLE) as r:
        band = r.read()[0].astype(np.float32)
        peak = float(2**r.meta.bit_depth - 1)
    band = (band - np.round(band.mean())) / peak
    n = size + 2 * halo
    reps = (math.ceil(n / band.shape[0]), math.ceil(n / band.shape[1]))
    tiled = np.block(
        [
            [band if (i + j) % 2 == 0 else band[::-1, ::-1] for j in range(reps[1])]
            for i in range(reps[0])
        ]
    )
    return np.ascontiguousarray(tiled[:n, :n][None, None], dtype=np.float32)


def time_function(
    fn: Callable[[np.ndarray], Any],
    x: np.ndarray,
    repeat: int = 5,
    warmup: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> list[float]:
    """Seconds of each of ``repeat`` runs after ``warmup`` untimed ones; ``progress(done,
    total)`` is called after every run, warm-up included."""
    total = warmup + repeat
    for i in range(warmup):
        fn(x)
        if progress:
            progress(i + 1, total)
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(x)
        out.append(time.perf_counter() - t0)
        if progress:
            progress(warmup + len(out), total)
    return out


def analysis_callable(
    runtime: str, precision: str, model: Any, info: Any, threads: int
) -> Callable:
    """The analysis transform on ``runtime`` with ``threads`` threads (torch: set_num_threads)."""
    if runtime == "torch":
        import torch

        def run(x: np.ndarray) -> np.ndarray:
            prev = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                with torch.no_grad():
                    return model.analysis_transform(torch.from_numpy(x)).numpy()
            finally:
                torch.set_num_threads(prev)

        return run
    from satcodec.export.runtime import runtime_transform

    return runtime_transform("analysis", runtime, model, info, precision=precision, threads=threads)


# --------------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------------


@dataclass
class BoardReport:
    board: str
    description: str
    role: str
    board_runtime: str
    precision: str
    model: str
    model_id: str
    size: int
    window: int
    mac_per_pixel: float
    params: int
    weight_bytes: float
    peak_activation_bytes: float
    fits_memory: bool
    host: str
    host_runtime: str
    host_precision: str
    host_threads: int
    host_note: str
    measured_latency_s: float
    measured_mpix_per_s: float
    measured_runs: int
    projected_latency_s: float
    projected_mpix_per_s: float
    projected_energy_j_per_mpix: float
    projected_bound: str
    # the entropy coder (quantise, fit, code: the channel-context model) of the tile's latents
    # at the model's native step, MEASURED on this host on one core; it runs on the board's
    # CPU, for which profiles carry no speed figure: the pipeline figure assumes a core as
    # fast as this host's, spread over the profile's threads, and says so
    entropy_latency_s: float = float("nan")
    entropy_mpix_per_s: float = float("nan")
    pipeline_mpix_per_s: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def profile_board(
    prof: HardwareProfile,
    model: Any,
    info: Any,
    size: int = 2048,
    repeat: int = 5,
    cache: dict[tuple, tuple[float, int]] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BoardReport:
    """Measure (host) and project (board) the analysis of one ``size``² tile for ``prof``.

    ``progress(done, total)`` follows the ``1 + repeat`` timed runs (warm-up included); a
    measurement found in ``cache`` reports them all done at once.
    """
    from satcodec.export.deploy import deploy_transforms

    if size % 16 or not 64 <= size <= 8192:
        raise ConfigError(f"--size must be a multiple of 16 in 64..8192, got {size}")
    if repeat < 1:
        raise ConfigError(f"repeat must be >= 1, got {repeat}")
    window = size + 2 * encode_halo(model.config)
    analysis, _ = deploy_transforms(model)
    layers = layer_table(analysis, (1, model.config.bands, window, window))
    pixels = size * size
    macs = sum(layer.macs for layer in layers)
    mem = memory_figures(layers, prof.precision)
    proj = roofline(layers, prof, pixels)
    runtime, precision, note = host_runtime_for(prof)
    threads = min(prof.threads, os.cpu_count() or 1)
    if threads < prof.threads:
        note = (
            note + "; " if note else ""
        ) + f"{prof.threads} threads capped to {threads} host CPUs"
    key = (runtime, precision, threads, size, repeat, info.model_id)
    if cache is not None and key in cache:
        median, runs = cache[key]
        if progress:
            progress(1 + repeat, 1 + repeat)
    else:
        fn = analysis_callable(runtime, precision, model, info, threads)
        times = time_function(
            fn, _tile_input(size, encode_halo(model.config)), repeat=repeat, progress=progress
        )
        median, runs = statistics.median(times), len(times)
        if cache is not None:
            cache[key] = (median, runs)
    bound = "compute" if proj.compute_bound_layers >= proj.memory_bound_layers else "memory"
    ekey = ("entropy", size, repeat, info.model_id)
    if cache is not None and ekey in cache:
        entropy_s, _ = cache[ekey]
    else:
        entropy_s = entropy_coder_seconds(model, size, repeat)
        if cache is not None:
            cache[ekey] = (entropy_s, repeat)
    entropy_mpix = pixels / 1e6 / entropy_s
    # analysis at its projected rate, then the entropy coder on the board's cores (host speed)
    pipeline = 1.0 / (1.0 / proj.mpix_per_s + 1.0 / (entropy_mpix * prof.threads))
    return BoardReport(
        board=prof.name,
        description=prof.description,
        role=prof.role,
        board_runtime=prof.runtime,
        precision=prof.precision,
        model=info.name,
        model_id=info.model_id,
        size=size,
        window=window,
        mac_per_pixel=macs / (window * window),  # per input pixel, as `satcodec models`
        params=sum(layer.params for layer in layers),
        weight_bytes=mem["weight_bytes"],
        peak_activation_bytes=mem["peak_activation_bytes"],
        fits_memory=mem["weight_bytes"] + mem["peak_activation_bytes"] <= prof.memory_gib * 2**30,
        host=host_description(),
        host_runtime=runtime,
        host_precision=precision,
        host_threads=threads,
        host_note=note,
        measured_latency_s=median,
        measured_mpix_per_s=pixels / 1e6 / median,
        measured_runs=runs,
        projected_latency_s=proj.latency_s,
        projected_mpix_per_s=proj.mpix_per_s,
        projected_energy_j_per_mpix=proj.energy_j_per_mpix,
        projected_bound=bound,
        entropy_latency_s=entropy_s,
        entropy_mpix_per_s=entropy_mpix,
        pipeline_mpix_per_s=pipeline,
    )


def entropy_coder_seconds(model: Any, size: int, repeat: int = 5) -> float:
    """Median seconds, on one core of this host, to quantise, fit and entropy-code (the
    default channel-context model) the latents of one ``size``² tile of the real sample at
    the model's native step; the latents come from the PyTorch analysis (not timed)."""
    import torch

    from satcodec.coding.entropy_models import DEFAULT_ENTROPY_MODEL as em

    pixels = encode_halo(model.config)
    halo = pixels // model.config.downsampling
    with torch.no_grad():
        lat = model.analysis_transform(torch.from_numpy(_tile_input(size, pixels))).numpy()[0]
    lat = np.ascontiguousarray(lat[:, halo:-halo, halo:-halo]) if halo else lat[0]

    def code(y: np.ndarray) -> bytes:
        sym = np.rint(y).astype(np.int32)
        return em.encode(sym, em.fit(sym))

    return statistics.median(time_function(code, lat, repeat=repeat))


def format_reports(reports: Sequence[BoardReport]) -> str:
    """One table; measured (this host) and projected (board, roofline) columns kept apart."""
    if not reports:
        return "no profile"
    r0 = reports[0]
    lines = [
        f"model {r0.model} ({r0.model_id}), analysis (board side) of one {r0.size}x{r0.size} tile "
        f"(window {r0.window}x{r0.window} with its halo); MPix/s counts the tile's own pixels",
        f"MEASURED on this host ({r0.host}): median of {r0.measured_runs} runs after 1 warm-up",
        "PROJECTED for the board: roofline bound from the profile's datasheet figures "
        "(not a measurement)",
        "MEASURED entropy: quantise + fit + code (channel-context model) of the tile's latents "
        "at the native step, on one core of this host",
        "PIPELINE: projected analysis, then the entropy coder on the board's threads at this "
        "host's per-core speed (profiles carry no CPU speed figure: a slower board CPU lowers it)",
        "",
    ]
    head = (
        f"{'board':24s} {'runtime/prec':18s} {'MAC/px':>7s} {'params':>7s} {'wts MiB':>7s} "
        f"{'act MiB':>8s} {'fits':>4s} | {'MEASURED host':13s} {'thr':>3s} {'ms':>8s} "
        f"{'MPix/s':>7s} | {'PROJECTED board':15s} {'ms':>8s} {'MPix/s':>8s} {'J/MPix':>8s} {'bound':7s}"
        f" | {'MEASURED entropy':16s} {'ms':>7s} {'MPix/s':>7s} | {'PIPELINE':8s} {'MPix/s':>7s}"
    )
    lines += [head, "-" * len(head)]
    notes = []
    for r in reports:
        host_rt = f"{r.host_runtime}/{r.host_precision}"
        lines.append(
            f"{r.board:24s} {r.board_runtime + '/' + r.precision:18s} {r.mac_per_pixel:7.0f} "
            f"{r.params / 1e3:6.0f}k {r.weight_bytes / 2**20:7.2f} {r.peak_activation_bytes / 2**20:8.1f} "
            f"{'yes' if r.fits_memory else 'NO':>4s} | {host_rt:13s} {r.host_threads:3d} "
            f"{r.measured_latency_s * 1e3:8.1f} {r.measured_mpix_per_s:7.2f} | {'':15s} "
            f"{r.projected_latency_s * 1e3:8.2f} {r.projected_mpix_per_s:8.1f} "
            f"{r.projected_energy_j_per_mpix:8.4f} {r.projected_bound:7s}"
            f" | {'host, 1 core':16s} {r.entropy_latency_s * 1e3:7.1f} {r.entropy_mpix_per_s:7.2f}"
            f" | {'':8s} {r.pipeline_mpix_per_s:7.2f}"
        )
        if r.host_note:
            notes.append(f"  {r.board}: {r.host_note}")
    if notes:
        lines += ["", "host stand-ins:"] + notes
    return "\n".join(lines)


def plot_reports(reports: Sequence[BoardReport], path: str | os.PathLike) -> None:
    """Bar chart: projected board throughput and energy vs measured host throughput (labelled)."""
    try:
        import matplotlib
    except ModuleNotFoundError:
        raise ConfigError("plotting needs matplotlib: pip install 'satcodec[plots]'") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from satcodec.fileutil import atomic_path

    names = [r.board for r in reports]
    x = np.arange(len(names))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(max(9, 1.6 * len(names) + 4), 5))
    w = 0.38
    ax1.bar(
        x - w / 2,
        [r.projected_mpix_per_s for r in reports],
        w,
        color="#8fb3d9",
        hatch="//",
        edgecolor="#2b5d8c",
        label="PROJECTED on board (roofline bound)",
    )
    ax1.bar(
        x + w / 2,
        [r.measured_mpix_per_s for r in reports],
        w,
        color="#d98f5f",
        edgecolor="#8c4b2b",
        label="MEASURED on this host (profile runtime/threads)",
    )
    ax1.set_yscale("log")
    ax1.set_ylabel("MPix/s (analysis, one tile)")
    ax1.set_xticks(x, names, rotation=30, ha="right")
    ax1.legend(fontsize=8)
    ax1.set_title(f"Throughput, {reports[0].size}² tile")
    ax2.bar(
        x,
        [r.projected_energy_j_per_mpix * 1e3 for r in reports],
        0.6,
        color="#8fb3d9",
        hatch="//",
        edgecolor="#2b5d8c",
        label="PROJECTED (power x roofline latency)",
    )
    ax2.set_yscale("log")
    ax2.set_ylabel("mJ per MPix")
    ax2.set_xticks(x, names, rotation=30, ha="right")
    ax2.legend(fontsize=8)
    ax2.set_title("Energy per MPix (projected only)")
    fig.suptitle(
        f"satcodec {reports[0].model}: projected board figures are bounds, not measurements",
        fontsize=10,
    )
    fig.tight_layout()
    suffix = Path(path).suffix or ".png"
    with atomic_path(path, suffix=suffix) as tmp:
        fig.savefig(tmp, dpi=110, format=suffix.lstrip("."))
    plt.close(fig)
