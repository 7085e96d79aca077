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
# the tests pin PyTorch's transforms (decoded pixels hashed bit for bit); the default runtime
# choice itself is tested in test_parallel.py with this variable removed
os.environ.setdefault("SATCODEC_RUNTIME", "torch")


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


def direct_decode(model, band: np.ndarray, step: float, peak: float) -> np.ndarray:
    """The whole image at once, as the encoder pads it: analysis, rounding at ``step``,
    synthesis, band offset, ground-side restoration (a joint model's denoising stage)."""
    import math

    stride = model.config.downsampling
    H, W = band.shape
    grid = (math.ceil(H / stride) * stride, math.ceil(W / stride) * stride)
    padded = np.pad(band, ((0, grid[0] - H), (0, grid[1] - W)), mode="edge")
    mean = round(float(band.mean()))
    x = torch.from_numpy((padded - mean) / peak)[None, None].float()
    with torch.no_grad():
        y = torch.round(model.analysis_transform(x) / step) * step
        out = model.restore(model.synthesis_transform(y) + mean / peak)
    return np.clip(np.rint(out[0, 0, :H, :W].numpy() * peak), 0, peak)


def check_tiled_decoding_needs_the_stage_halo(path, image: np.ndarray, monkeypatch) -> None:
    """Tiles of 64 px decode to the whole-image result within 1 DN, with the two extra latents
    of halo a ground-side stage needs; with the synthesis's halo alone the seams show."""
    import satcodec
    import satcodec.coding.decoder as pipeline
    from satcodec.codec.models import DECODE_HALO
    from satcodec.codec.registry import load_model

    net = load_model(path)[0]
    # the bit depth's peak (no flag 0x0004) and plain rounding: the reference below divides
    # by that peak and rounds
    data = satcodec.encode(
        image, quality=70, model=path, tile=64, normalisation="bit-depth", deadzone=0
    )
    out, meta = satcodec.decode(data, model=path)
    direct = direct_decode(net, image[0].astype(np.float32), meta["quant_step"], 4095.0)
    err = np.abs(out[0].astype(np.float64) - direct)
    assert err.max() <= 1, f"max deviation {err.max()} DN"
    assert pipeline.decode_halo(net.config) == DECODE_HALO + 2
    monkeypatch.setattr(pipeline, "decode_halo", lambda config: DECODE_HALO)
    narrow, _ = satcodec.decode(data, model=path)
    assert np.abs(narrow[0].astype(np.float64) - direct).max() > 2
