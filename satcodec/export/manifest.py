"""What an export folder is, without PyTorch: its manifest, graph files and hashes, and the
per-user export cache. The onnxruntime encoder and decoder need only this module to run a
cached export (:mod:`satcodec.export.onnx_export` builds exports, with PyTorch)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from satcodec.errors import ExportError, RuntimeUnavailableError

FORMAT = "satcodec-export-v1"
# bump when the export recipe changes (deployment form, int8 defaults): cached exports are keyed
# on it, so a new recipe never silently reuses graphs made by an old one
RECIPE = 5
OPSET = 17
PRECISIONS = ("fp32", "fp16", "int8")
MANIFEST = "manifest.json"
GRAPHS = {
    # side: (file, input name, output name, where it runs)
    "analysis": ("analysis.onnx", "pixels", "latents", "board"),
    "synthesis": ("synthesis.onnx", "latents", "pixels", "ground"),
}


@dataclass
class ExportManifest:
    format: str
    model_name: str
    model_id: str
    precision: str
    opset: int
    graphs: dict[str, dict[str, Any]]
    input_normalisation: dict[str, str]
    config: dict[str, Any]
    quantisation: dict[str, Any] | None = None
    checks: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    created: str = ""
    recipe: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False)

    @classmethod
    def load(cls, folder: str | Path) -> ExportManifest:
        path = Path(folder) / MANIFEST
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise ExportError(
                f"{folder} holds no {MANIFEST}: not a (complete) satcodec export"
            ) from None
        except (OSError, ValueError) as exc:
            raise ExportError(f"{path} cannot be read: {exc}") from exc
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ExportError(f"{path} is not a {FORMAT} manifest")
        try:
            m = cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})
        except TypeError as exc:
            raise ExportError(f"{path} is missing fields: {exc}") from exc
        if m.precision not in PRECISIONS:
            raise ExportError(f"{path}: unknown precision {m.precision!r}")
        for side in GRAPHS:
            if side not in m.graphs or "file" not in m.graphs[side]:
                raise ExportError(f"{path} names no {side} graph")
        return m

    def graph_path(self, folder: str | Path, side: str) -> Path:
        return Path(folder) / self.graphs[side]["file"]


def require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise RuntimeUnavailableError(
            f"ONNX export needs onnx and onnxruntime (pip install 'satcodec[export]'): {exc}"
        ) from exc


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_export(folder: str | Path, model_id: str | None = None) -> ExportManifest:
    """Load a manifest, check graph hashes (and the model id); raises :class:`ExportError`."""
    m = ExportManifest.load(folder)
    if model_id is not None and m.model_id != model_id:
        raise ExportError(
            f"the export in {folder} is of model {m.model_id} ({m.model_name}), not {model_id}"
        )
    for side in GRAPHS:
        p = m.graph_path(folder, side)
        if not p.is_file():
            raise ExportError(f"{p} is missing from the export")
        want = m.graphs[side].get("sha256")
        if want and _sha256(p) != want:
            raise ExportError(f"{p} does not match the hash in its manifest (modified or corrupt)")
    return m


def default_cache_dir() -> Path:
    base = os.environ.get("SATCODEC_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "satcodec"
    )
    return Path(base) / "export"
