"""Shipped and user model weights: loading, validation and the model id (a hash of the weights)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from safetensors import SafetensorError, safe_open

from satcodec.codec.config import ACTIVATIONS, ModelConfig
from satcodec.errors import ConfigError, UnknownModelError, WeightsError
from satcodec.fileutil import atomic_path

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
# joint (compression + denoising) models ship with the ground segment: decoders look them up
# like any model, rate control never picks them (they expect noisy input)
JOINT_MODELS_DIR = MODELS_DIR.parent / "ground_segment" / "weights" / "codec"
FORMAT = "satcodec-model-v1"

if TYPE_CHECKING:  # PyTorch is loaded only where a torch module is wanted (see ModelWeights)
    import torch

    from satcodec.codec.models import ReducedVAE


@dataclass
class ModelInfo:
    name: str
    path: Path
    model_id: str  # 32 hex chars: first 16 bytes of SHA-256 over the tensors
    config: ModelConfig
    meta: dict[str, Any] = field(default_factory=dict)


# numpy dtype -> the name PyTorch gives it: model ids hash torch's names, and hash the same
# whichever library read the tensors
_TORCH_DTYPE_NAMES = {
    np.dtype(np.float16): "torch.float16",
    np.dtype(np.float32): "torch.float32",
    np.dtype(np.float64): "torch.float64",
    np.dtype(np.int64): "torch.int64",
    np.dtype(np.int32): "torch.int32",
    np.dtype(np.uint8): "torch.uint8",
    np.dtype(np.bool_): "torch.bool",
}


def weights_id(state: dict[str, Any]) -> str:
    """Hash of the weights: SHA-256 over sorted (name, dtype, shape, bytes), truncated to 16
    bytes. ``state`` holds torch tensors or numpy arrays (the same id for the same tensors)."""
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k]
        if isinstance(t, np.ndarray):
            # not np.ascontiguousarray: it turns a 0-d tensor (a gain) into shape (1,)
            dtype, arr = _TORCH_DTYPE_NAMES[t.dtype], t if t.flags.c_contiguous else t.copy()
        else:
            t = t.detach().contiguous().cpu()
            dtype, arr = str(t.dtype), t.numpy()
        h.update(k.encode())
        h.update(dtype.encode())
        h.update(str(tuple(arr.shape)).encode())
        h.update(arr.tobytes())
    return h.hexdigest()[:32]


def save_model(
    path: str | Path,
    model: ReducedVAE,
    meta: dict[str, Any] | None = None,
    dtype: torch.dtype | None = None,
) -> str:
    """Write ``model`` as a satcodec weights file (safetensors); returns its model id.

    Floating-point tensors are stored as ``dtype`` (float16 by default: half the size, and
    well inside the precision the codec needs); they are computed in float32 after loading.
    The model id hashes the stored tensors, so it names exactly what a decoder will load.
    """
    import torch
    from safetensors.torch import save_file

    dtype = torch.float16 if dtype is None else dtype
    state = {
        k: (v.to(dtype) if v.is_floating_point() else v).detach().contiguous().cpu()
        for k, v in model.state_dict().items()
    }
    md = {
        "format": FORMAT,
        "config": json.dumps(model.config.to_dict()),
        "meta": json.dumps(meta or {}),
    }
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(state, str(tmp), metadata=md)
    return weights_id(state)


_RD_MAX_POINTS = 64


def _check_card(path: Path, meta: Any) -> dict[str, Any]:
    """The card fields the codec reads (rate control, listing), type-checked: a card is
    outside data, and a wrong type must fail here, by name, not deep inside rate control."""
    if not isinstance(meta, dict):
        raise WeightsError(f"{path}: model card metadata must be a JSON object")
    rd = meta.get("rd")
    if rd is not None:
        ok = isinstance(rd, list) and len(rd) <= _RD_MAX_POINTS
        ok = ok and all(
            isinstance(p, list)
            and len(p) == 2
            and all(_is_real(v) and math.isfinite(v) for v in p)
            and p[0] > 0
            for p in rd
        )
        if not ok:
            raise WeightsError(
                f"{path}: model card field 'rd' must be a list of at most {_RD_MAX_POINTS} "
                "[bpp > 0, PSNR] pairs of finite numbers"
            )
        if any(b[0] <= a[0] for a, b in zip(rd, rd[1:], strict=False)):
            raise WeightsError(f"{path}: model card field 'rd' must be in increasing rate")
    for key in ("native_bpp", "lmbda"):
        v = meta.get(key)
        if v is not None and not (_is_real(v) and math.isfinite(v) and v > 0):
            raise WeightsError(f"{path}: model card field {key!r} must be a positive number")
    steps = meta.get("steps")
    if steps is not None and not (_is_real(steps) and float(steps).is_integer() and steps >= 0):
        raise WeightsError(f"{path}: model card field 'steps' must be a non-negative integer")
    if "default" in meta and not isinstance(meta["default"], bool):
        raise WeightsError(f"{path}: model card field 'default' must be true or false")
    if "kind" in meta and not isinstance(meta["kind"], str):
        raise WeightsError(f"{path}: model card field 'kind' must be a string")
    return meta


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _read_header(path: Path) -> tuple[ModelConfig, dict[str, Any], dict[str, tuple[int, ...]]]:
    """Config, card and tensor shapes of a weights file, without reading any tensor."""
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist or is not a file")
    try:
        with safe_open(str(path), "np") as fh:
            md = fh.metadata() or {}
            shapes = {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise WeightsError(f"{path} is not a valid safetensors file: {exc}") from exc
    if md.get("format") != FORMAT:
        raise WeightsError(f"{path} is not a satcodec model (metadata format={md.get('format')!r})")
    try:
        raw = json.loads(md["config"])
        if not isinstance(raw, dict):
            raise TypeError("config is not a JSON object")
        config = ModelConfig.from_dict(raw)
        meta = json.loads(md.get("meta", "{}"))
    except (KeyError, ValueError, TypeError, RecursionError) as exc:
        raise WeightsError(f"{path} has malformed model metadata: {type(exc).__name__}") from None
    meta = _check_card(path, meta)
    if not (1 <= config.bands <= 64 and 1 <= config.hidden <= 1024 and 1 <= config.latent <= 1024):
        raise WeightsError(f"{path} declares an implausible architecture {config}")
    if not 0 <= config.analysis_hidden <= 1024:
        raise WeightsError(f"{path} declares an implausible analysis width {config}")
    if not (0 <= config.refine_channels <= 512 and 0 <= config.refine_layers <= 64):
        raise WeightsError(f"{path} declares an implausible refinement stage {config}")
    if not (0 <= config.denoise_channels <= 512 and 0 <= config.denoise_layers <= 64):
        raise WeightsError(f"{path} declares an implausible denoising stage {config}")
    if not (math.isfinite(config.input_gain) and config.input_gain > 0):
        raise WeightsError(f"{path} declares a non-finite or non-positive input gain {config}")
    if config.denoise_channels and not (
        math.isfinite(config.noise_a) and math.isfinite(config.noise_b)
    ):
        raise WeightsError(f"{path} declares a non-finite sensor noise {config}")
    if config.stages not in (3, 4) or not {config.activation, config.encoder_activation} <= set(
        ACTIVATIONS
    ):
        raise WeightsError(f"{path} declares an unknown architecture {config}")
    if config.denoise_channels and config.bands != 1:
        raise WeightsError(f"{path}: a denoising stage needs a single-band model, got {config}")
    return config, meta, shapes


def _check_shapes(path: Path, config: ModelConfig, shapes: dict[str, tuple[int, ...]]) -> None:
    """The tensors are the architecture's, by name and shape (built on the meta device: no
    memory), before a module is filled from them."""
    import torch

    from satcodec.codec.models import ReducedVAE

    try:
        with torch.device("meta"):
            expected = {k: tuple(t.shape) for k, t in ReducedVAE(config).state_dict().items()}
    except ValueError as exc:
        raise WeightsError(f"{path}: {exc}") from exc
    missing = sorted(set(expected) - set(shapes))
    extra = sorted(set(shapes) - set(expected))
    if missing or extra:
        raise WeightsError(
            f"{path} does not match its architecture: missing {missing[:3]}, unexpected {extra[:3]}"
        )
    for k, shape in expected.items():
        if shapes[k] != shape:
            raise WeightsError(f"{path}: tensor {k} has shape {shapes[k]}, expected {shape}")


@dataclass
class ModelWeights:
    """A weights file read without PyTorch: its :class:`ModelInfo` (config, card, model id)
    and tensors as numpy arrays. :meth:`module` builds the PyTorch model on first use.

    Why: the onnxruntime encoder and decoder need only the config and the id (to find their
    export), and PyTorch alone keeps ~500 MB resident, half a board's memory budget."""

    info: ModelInfo
    state: dict[str, np.ndarray]
    shapes: dict[str, tuple[int, ...]]
    _module: ReducedVAE | None = field(default=None, repr=False)

    @property
    def config(self) -> ModelConfig:
        return self.info.config

    def module(self) -> ReducedVAE:
        """The PyTorch model (eval mode, float32), built once."""
        if self._module is None:
            import torch

            from satcodec.codec.models import ReducedVAE

            _check_shapes(self.info.path, self.config, self.shapes)
            model = ReducedVAE(self.config)
            model.load_state_dict(
                {
                    k: torch.from_numpy(v.astype(np.float32) if v.dtype.kind == "f" else v)
                    for k, v in self.state.items()
                }
            )
            self._module = model.eval()
        return self._module


def torch_module(model: ReducedVAE | ModelWeights) -> ReducedVAE:
    """``model`` as a PyTorch module (building it from a :class:`ModelWeights`)."""
    return model.module() if isinstance(model, ModelWeights) else model


def _read(path: Path) -> ModelWeights:
    config, meta, shapes = _read_header(path)
    try:
        with safe_open(str(path), "np") as fh:
            state = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as exc:
        raise WeightsError(f"{path} is not a valid safetensors file: {exc}") from exc
    for k, t in state.items():
        if t.dtype not in _TORCH_DTYPE_NAMES:
            raise WeightsError(f"{path}: tensor {k} has an unsupported dtype {t.dtype}")
        if t.dtype.kind == "f" and not np.isfinite(t).all():
            raise WeightsError(f"{path}: tensor {k} holds NaN or infinite values")
    info = ModelInfo(path.stem, path, weights_id(state), config, meta)
    return ModelWeights(info, state, shapes)


def model_dirs(models_dir: Path | None = None, *, joint: bool = False) -> list[Path]:
    """Folders searched for models: the shipped ones, (``joint``: the shipped joint models),
    then ``$SATCODEC_MODEL_PATH`` entries."""
    if models_dir is not None:
        return [models_dir]
    extra = [Path(p) for p in os.environ.get("SATCODEC_MODEL_PATH", "").split(os.pathsep) if p]
    return [MODELS_DIR, *([JOINT_MODELS_DIR] if joint else []), *extra]


def list_models(models_dir: Path | None = None, *, joint: bool = False) -> list[ModelInfo]:
    """Available models (shipped ``satcodec/models/*.safetensors`` and ``$SATCODEC_MODEL_PATH``;
    ``joint``: also the shipped joint models of the ground segment).

    A file that cannot be read as a satcodec model is skipped with a warning (one bad file in
    a model folder must not stop the others from being used); :func:`model_problems` lists
    them. Models are read once and cached by (path, mtime, size).
    """
    infos = []
    for p in candidate_files(models_dir, joint=joint):
        try:
            infos.append(load_weights(p).info)
        except (WeightsError, OSError) as exc:
            _report_problem(p, exc)
    return infos


def candidate_files(
    models_dir: Path | None = None, extra: Iterable[str | Path] = (), *, joint: bool = False
) -> list[Path]:
    """Every weights file the registry would consider (``extra`` last), each once."""
    out: list[Path] = []
    for d in model_dirs(models_dir, joint=joint):
        try:
            if d.is_dir():
                out.extend(sorted(d.glob("*.safetensors")))
        except OSError:  # an unreadable folder on the model path: nothing to list there
            continue
    out.extend(Path(p) for p in extra)
    seen: set[str] = set()
    unique = []
    for p in out:
        key = os.path.realpath(p)
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


_PROBLEMS: dict[Path, str] = {}


def _report_problem(path: Path, exc: BaseException) -> None:
    msg = str(exc)
    if _PROBLEMS.get(path) != msg:  # warn once per file and problem
        warnings.warn(f"skipping model file {path}: {msg}", stacklevel=3)
    _PROBLEMS[path] = msg


def model_problems() -> dict[Path, str]:
    """Model files skipped by :func:`list_models` and why (path → message)."""
    return dict(_PROBLEMS)


_CACHE: dict[tuple[Path, int, int], ModelWeights] = {}


def load_model(
    name_or_path: str | Path, models_dir: Path | None = None
) -> tuple[ReducedVAE, ModelInfo]:
    """Load a shipped model by name (``satcodec models``) or a weights file by path, as a
    PyTorch module (:func:`load_weights` reads it without PyTorch)."""
    weights = load_weights(name_or_path, models_dir)
    return weights.module(), weights.info


def load_weights(name_or_path: str | Path, models_dir: Path | None = None) -> ModelWeights:
    """Read a shipped model by name (``satcodec models``) or a weights file by path, without
    PyTorch (:class:`ModelWeights`)."""
    if not isinstance(name_or_path, (str, os.PathLike)) or not os.fspath(name_or_path):
        raise ConfigError(
            f"a model is a name (satcodec models) or a .safetensors path, got {name_or_path!r}"
        )
    p = Path(name_or_path)
    if p.suffix == ".safetensors" and not p.is_file():
        raise WeightsError(f"weights file {p} does not exist or is not a file")
    if p.suffix != ".safetensors":
        found = [d / f"{name_or_path}.safetensors" for d in model_dirs(models_dir)]
        found = [f for f in found if f.exists()]
        if not found:
            names = ", ".join(i.name for i in list_models(models_dir)) or "none"
            raise UnknownModelError(f"no model named {name_or_path!r} (available: {names})")
        p = found[0]
    p = p.resolve()
    try:
        st = p.stat()
    except OSError as exc:
        raise WeightsError(f"cannot read weights file {p}: {exc.strerror}") from None
    key = (p, st.st_mtime_ns, st.st_size)  # a rewritten weights file is read again
    if key not in _CACHE:
        _CACHE[key] = _read(p)
    return _CACHE[key]


def find_model_by_id(
    model_id: str, extra_paths: Iterable[str | Path] | None = None
) -> tuple[ReducedVAE, ModelInfo]:
    """:func:`find_weights_by_id`, as a PyTorch module."""
    weights = find_weights_by_id(model_id, extra_paths)
    return weights.module(), weights.info


DECODES_KEY = "decodes_model_ids"
"""Metadata key of a model whose analysis is, tensor for tensor, that of earlier models (a
decoder re-tuned with the board side frozen): their ids, whose streams (the same symbols)
it decodes. Written by ``satcodec ship codec`` after comparing the analysis tensors."""


def decoded_model_ids(info: ModelInfo) -> list[str]:
    """The ids of the earlier models whose streams ``info``'s model decodes (:data:`DECODES_KEY`);
    malformed entries are ignored (the weights header is outside data)."""
    ids = info.meta.get(DECODES_KEY, [])
    if not isinstance(ids, list):
        return []
    return [i for i in ids if isinstance(i, str) and len(i) == 32]


def find_weights_by_id(
    model_id: str, extra_paths: Iterable[str | Path] | None = None
) -> ModelWeights:
    """The model whose weights hash to ``model_id``: shipped models, shipped joint models,
    ``$SATCODEC_MODEL_PATH``, then ``extra_paths``; failing that, the model that decodes that
    model's streams (:data:`DECODES_KEY`: a decoder re-tuned on the same analysis, which
    replaced it). Unreadable files are skipped and named in the error when nothing matches
    (:class:`UnknownModelError`)."""
    candidates = candidate_files(extra=extra_paths or (), joint=True)
    skipped = []
    successor = None
    for path in candidates:
        try:
            weights = load_weights(path)
        except (WeightsError, OSError) as exc:  # one bad file must not hide the others
            _report_problem(path, exc)
            skipped.append(path.name)
            continue
        if weights.info.model_id == model_id:
            return weights
        if successor is None and model_id in decoded_model_ids(weights.info):
            successor = weights
    if successor is not None:
        return successor
    note = f"; unreadable model files skipped: {', '.join(skipped)}" if skipped else ""
    raise UnknownModelError(
        f"model {model_id} not installed ({len(candidates)} weights files searched{note}); "
        "pass its weights file with --model PATH"
    )
