"""Shared fixtures: a small random-weights model for fast pipeline tests, and sample paths."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "satcodec" / "data" / "pleiades_ventoux.tif"
RPC_SAMPLE = ROOT / "tests" / "data" / "worldview3_buenosaires_rpc.tif"
SHARED_SAT = ROOT.parent / "shared" / "data" / "sat"

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small ReducedVAE with fixed random weights, on ``$SATCODEC_MODEL_PATH`` as ``tiny``."""
    from satcodec.codec.models import ModelConfig, ReducedVAE
    from satcodec.codec.registry import save_model

    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(1234)
    model = ReducedVAE(ModelConfig(hidden=16, latent=24))
    with torch.no_grad():  # untrained latents are tiny: scale them onto the quantiser's grid
        model.analysis_transform[-1].weight.mul_(40.0)
        model.synthesis_transform[0].conv.weight.div_(40.0)
    path = folder / "tiny.safetensors"
    save_model(path, model, {"native_bpp": 1.0})
    old = os.environ.get("SATCODEC_MODEL_PATH")
    os.environ["SATCODEC_MODEL_PATH"] = str(folder)
    yield path
    if old is None:
        os.environ.pop("SATCODEC_MODEL_PATH", None)
    else:
        os.environ["SATCODEC_MODEL_PATH"] = old


def tiny_stride8_model(seed: int = 5):
    """A small stride-8 ReducedVAE with fixed random weights, latents on the quantiser's grid."""
    from satcodec.codec.models import ModelConfig, ReducedVAE

    torch.manual_seed(seed)
    net = ReducedVAE(ModelConfig(hidden=16, latent=24, stages=3))
    with torch.no_grad():  # untrained latents are tiny: scale them onto the quantiser's grid
        net.analysis_transform[-1].weight.mul_(40.0)
        net.synthesis_transform[0].conv.weight.div_(40.0)
    return net.eval()


@pytest.fixture(scope="session")
def sample_array() -> np.ndarray:
    from satcodec.raster import open_raster

    with open_raster(SAMPLE) as r:
        return r.read()


def shipped_models() -> list:
    from satcodec.codec.registry import MODELS_DIR, list_models

    return list_models(MODELS_DIR)


requires_shipped_model = pytest.mark.skipif(
    not list((ROOT / "satcodec" / "models").glob("*.safetensors")),
    reason="no shipped model installed",
)
