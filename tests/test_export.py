"""ONNX export (fp32 / int8 QDQ), runtimes in the pipeline, cross-runtime decoding, TensorRT path."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from satcodec.codec.registry import load_model, save_model
from satcodec.coding import (
    Encoder,
    array_window_reader,
    decode_to_array,
    open_decoder,
)
from satcodec.errors import ConfigError, ExportError, RuntimeUnavailableError
from satcodec.metrics import psnr

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from satcodec.export.onnx_export import (  # noqa: E402
    FP32_TOLERANCE,
    Int8Options,
    export_onnx,
    relative_error,
    verify_export,
)
from satcodec.export.runtime import OnnxRuntimeTransform, runtime_transform  # noqa: E402

HAVE_TRT = importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available()


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory):
    """Exports made on first use go to a private cache, not the user's."""
    old = os.environ.get("SATCODEC_CACHE")
    os.environ["SATCODEC_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("SATCODEC_CACHE", None)
    else:
        os.environ["SATCODEC_CACHE"] = old


@pytest.fixture(scope="module")
def model(tiny_model: Path):
    return load_model(tiny_model)


@pytest.fixture(scope="module")
def fp32_dir(model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    net, info = model
    out = tmp_path_factory.mktemp("fp32")
    export_onnx(net, info, out, "fp32")
    return out


@pytest.fixture(scope="module")
def int8_dir(model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    net, info = model
    out = tmp_path_factory.mktemp("int8")
    export_onnx(net, info, out, "int8", int8=Int8Options(count=8))
    return out


def _window(sample_array: np.ndarray, h: int, w: int) -> np.ndarray:
    band = sample_array[0, :h, :w].astype(np.float32)
    return ((band - np.round(band.mean())) / 4095.0)[None, None]


def test_fp32_matches_pytorch_at_other_sizes(model, fp32_dir, sample_array):
    """Dynamic H and W: sizes other than the export example, non-square, real pixels."""
    net, _ = model
    x = _window(sample_array, 384, 320)
    ana = OnnxRuntimeTransform(fp32_dir / "analysis.onnx", threads=1)
    syn = OnnxRuntimeTransform(fp32_dir / "synthesis.onnx", threads=1)
    with torch.no_grad():
        y_ref = net.analysis_transform(torch.from_numpy(x)).numpy()
        x_ref = net.synthesis_transform(torch.from_numpy(np.rint(y_ref))).numpy()
    y = ana(x)
    assert y.shape == y_ref.shape == (1, net.config.latent, 24, 20)
    assert relative_error(y, y_ref) <= FP32_TOLERANCE
    x_hat = syn(np.rint(y_ref).astype(np.float32))
    assert x_hat.shape == x_ref.shape == (1, 1, 384, 320)
    assert relative_error(x_hat, x_ref) <= FP32_TOLERANCE


def test_manifest_checker_and_dynamic_axes(model, fp32_dir):
    net, info = model
    m = json.loads((fp32_dir / "manifest.json").read_text())
    assert m["model_id"] == info.model_id and m["precision"] == "fp32" and m["opset"] == 17
    assert m["recipe"] >= 1 and m["versions"]["onnxruntime"]
    assert "band_offset" in m["input_normalisation"]["formula"]
    assert m["graphs"]["analysis"]["runs_on"] == "board"
    assert m["graphs"]["synthesis"]["runs_on"] == "ground"
    assert m["checks"]["analysis_fp32_vs_torch_rel_err"] <= FP32_TOLERANCE
    for side in ("analysis", "synthesis"):
        g = onnx.load(str(fp32_dir / f"{side}.onnx"))
        onnx.checker.check_model(g, full_check=True)
        dims = g.graph.input[0].type.tensor_type.shape.dim
        assert [d.dim_param for d in dims][2:] and all(d.dim_param for d in dims[2:])
        # deployment form: GDN baked into Abs -> Conv -> Div/Mul, no reparameterisation ops
        assert not {"Pow", "Clip", "Identity"} & {n.op_type for n in g.graph.node}
    assert verify_export(fp32_dir, info.model_id).precision == "fp32"


def test_export_folder_is_checked(model, fp32_dir, tmp_path):
    _, info = model
    with pytest.raises(ExportError, match="not"):
        verify_export(fp32_dir, "0" * 32)
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(fp32_dir, copy)
    with open(copy / "synthesis.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ExportError, match="hash"):
        verify_export(copy, info.model_id)
    with pytest.raises(ExportError, match="manifest"):
        verify_export(tmp_path, info.model_id)


def test_int8_is_static_qdq_and_close_to_fp32(model, fp32_dir, int8_dir, sample_array):
    _, info = model
    m = json.loads((int8_dir / "manifest.json").read_text())
    q = m["quantisation"]
    assert m["precision"] == "int8" and "QDQ" in q["method"]
    assert q["calibration_files"][0].endswith("pleiades_ventoux.tif")
    assert q["analysis_kept_float"] and q["synthesis_kept_float"]  # pixel-facing convs
    for side in ("analysis", "synthesis"):
        ops = {n.op_type for n in onnx.load(str(int8_dir / f"{side}.onnx")).graph.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    x = _window(sample_array, 256, 256)
    y32 = OnnxRuntimeTransform(fp32_dir / "analysis.onnx", 1)(x)
    y8 = OnnxRuntimeTransform(int8_dir / "analysis.onnx", 1)(x)
    assert 0 < relative_error(y8, y32) < 0.1


def test_equalise_is_exact_and_balances_channels(model, sample_array):
    """Power-of-two channel rescaling around GDN: same function, bit for bit, flatter ranges."""
    from satcodec.export.deploy import BakedGDN, deploy_transforms, equalise

    net, _ = model
    x = torch.from_numpy(np.concatenate([_window(sample_array, 128, 128)] * 2))
    for transform, inp in zip(deploy_transforms(net), (x, None), strict=True):
        if inp is None:
            with torch.no_grad():
                inp = torch.round(net.analysis_transform(x))
        eq = equalise(transform, inp)
        with torch.no_grad():
            assert torch.equal(eq(inp), transform(inp))
            a, b = inp, inp
            for m0, m1 in zip(transform, eq, strict=True):
                a, b = m0(a), m1(b)
                if isinstance(m0, BakedGDN):
                    r0, r1 = a.abs().amax(dim=(0, 2, 3)), b.abs().amax(dim=(0, 2, 3))
                    # ranges are chosen on a percentile, checked here on the max: allow slack
                    assert r1.max() / r1.min() <= max(r0.max() / r0.min(), 2.0) * 1.25


def _encoder(net, info, array, analysis):
    return Encoder(
        net,
        info,
        array_window_reader(array),
        height=array.shape[1],
        width=array.shape[2],
        bands=array.shape[0],
        dtype=str(array.dtype),
        bit_depth=12,
        nodata=None,
        tile=256,
        analysis=analysis,
    )


def _check_symbols(enc: Encoder, data: bytes, step_q16_from_header: bool = True):
    """Entropy-decoded symbols of every tile equal the symbols the encoder coded."""
    dec = open_decoder(data, model=str(enc.info.path))
    step = dec.header.quant_step
    L = dec.header.tile_size // dec.header.downsampling
    plane, _ = dec.band_latents(0)
    for t in enc.latent_tiles:
        symbols, _ = enc.quantise(t.latents, step)
        got = plane[
            :, t.row * L : t.row * L + symbols.shape[1], t.col * L : t.col * L + symbols.shape[2]
        ]
        np.testing.assert_array_equal(got, symbols)
    return dec


def test_int8_onnxruntime_stream_decodes_with_pytorch(model, int8_dir, sample_array, tiny_model):
    """Board int8 onnxruntime encoder -> ground PyTorch decoder, on the real Pleiades sample."""
    net, info = model
    ana8 = OnnxRuntimeTransform(int8_dir / "analysis.onnx", threads=2)
    enc = _encoder(net, info, sample_array, ana8)
    data = enc.encode(1.0)
    dec = _check_symbols(enc, data)
    out = decode_to_array(dec).array  # default synthesis: PyTorch
    ref = decode_to_array(open_decoder(data, model=str(tiny_model))).array
    np.testing.assert_array_equal(out, ref)
    assert psnr(sample_array, out, 12) > 20


def test_pytorch_stream_decodes_with_int8_onnxruntime(model, int8_dir, sample_array, tiny_model):
    """The reverse: PyTorch encoder -> int8 onnxruntime decoder; same symbols, close pixels."""
    net, info = model
    enc = _encoder(net, info, sample_array, None)
    data = enc.encode(1.0)
    _check_symbols(enc, data)
    syn8 = OnnxRuntimeTransform(int8_dir / "synthesis.onnx", threads=1)
    out8 = decode_to_array(open_decoder(data, model=str(tiny_model), synthesis=syn8)).array
    out32 = decode_to_array(open_decoder(data, model=str(tiny_model))).array
    assert abs(psnr(sample_array, out8, 12) - psnr(sample_array, out32, 12)) < 1.0


@pytest.mark.parametrize("stage", [None, "refine", "denoise"])
def test_stride8_model_exports_and_its_onnx_encoder_codes_the_same_stream(
    sample_array, tmp_path, stage
):
    """A stride-8 model goes through ONNX like a stride-16 one: same symbols, same pixels;
    so does a joint model's ground-side refinement stage (part of the synthesis graph) and its
    denoising stage (run by the decoder after whichever synthesis runtime)."""
    from satcodec.codec.models import (
        ModelConfig,
        ReducedVAE,
        with_denoising_stage,
        with_refinement,
    )
    from satcodec.codec.registry import save_model

    torch.manual_seed(3)
    net = ReducedVAE(ModelConfig(hidden=16, latent=24, stages=3))
    with torch.no_grad():
        net.analysis_transform[-1].weight.mul_(40.0)
        net.synthesis_transform[0].conv.weight.div_(40.0)
    if stage == "refine":
        net = with_refinement(net, 8, 4)
        with torch.no_grad():  # a stage that does something (a fresh one is the identity)
            net.synthesis_transform[-2].body[-1].weight.normal_(0.0, 0.05)
    if stage == "denoise":
        from satcodec.ground_segment.denoiser import GroundDenoiser

        net = with_denoising_stage(net, GroundDenoiser(8, 4), 1e-6, 4e-5)
        with torch.no_grad():
            net.denoising_stage.body[-1].weight.normal_(0.0, 0.3)
    path = tmp_path / "s8.safetensors"
    save_model(path, net, {})
    net, info = load_model(path)
    out = tmp_path / "onnx"
    manifest = export_onnx(net, info, out, "fp32")
    assert manifest.input_normalisation["downsampling"] == "8"
    img = sample_array[:, :256, :384]
    ana = OnnxRuntimeTransform(out / "analysis.onnx", threads=1)
    data = _encoder(net, info, img, ana).encode(1.0)
    ref = _encoder(net, info, img, None).encode(1.0)
    dec = _check_symbols(_encoder(net, info, img, None), data)
    assert dec.header.downsampling == 8
    syn = OnnxRuntimeTransform(out / "synthesis.onnx", threads=1)
    a = decode_to_array(open_decoder(data, model=str(path), synthesis=syn)).array
    b = decode_to_array(open_decoder(ref, model=str(path))).array
    assert np.abs(a.astype(np.int64) - b).max() <= 1  # fp32 runtimes agree to the rounding
    if stage == "denoise":  # the ONNX path ran the stage: without it the pixels differ
        net.denoising_stage = None
        bare = decode_to_array(open_decoder(data, model=str(path), synthesis=syn)).array
        assert np.abs(bare.astype(np.int64) - a).max() > 2


def test_api_and_cli_runtime_options(tiny_model, int8_dir, sample_array, tmp_path):
    import satcodec
    from satcodec.cli import main

    data = satcodec.encode(
        sample_array, bit_depth=12, quality=50, model=tiny_model,
        runtime="onnxruntime", export_dir=int8_dir,
    )  # fmt: skip
    a_torch, _ = satcodec.decode(data, model=tiny_model)
    a_ort, _ = satcodec.decode(data, model=tiny_model, runtime="onnxruntime")  # cached fp32 export
    assert a_torch.shape == a_ort.shape == sample_array.shape
    assert np.abs(a_torch.astype(int) - a_ort.astype(int)).max() <= 1
    from conftest import SAMPLE

    stream = tmp_path / "s.satc"
    assert main(["encode", str(SAMPLE), "-o", str(stream), "--quality", "50", "--model",
                 str(tiny_model), "--runtime", "onnxruntime", "--export-dir", str(int8_dir), "-q"]) == 0  # fmt: skip
    assert main(["decode", str(stream), "-o", str(tmp_path / "d.tif"), "--model", str(tiny_model),
                 "--runtime", "onnxruntime", "--precision", "int8", "-q"]) == 0  # fmt: skip
    assert main(["export", "--model", str(tiny_model), "-o", str(tmp_path / "x")]) == 0
    assert (tmp_path / "x" / "manifest.json").exists()


def test_bad_options_are_clear(model, fp32_dir):
    net, info = model
    with pytest.raises(ConfigError, match="unknown runtime"):
        runtime_transform("analysis", "tflite", net, info)
    with pytest.raises(ConfigError, match="precision"):
        runtime_transform("analysis", "onnxruntime", net, info, precision="int4")
    with pytest.raises(ConfigError, match="int8"):
        runtime_transform(
            "analysis", "onnxruntime", net, info, precision="int8", export_dir=fp32_dir
        )
    with pytest.raises(ConfigError, match="torch"):
        runtime_transform("analysis", "torch", net, info, precision="int8")


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT and a CUDA GPU are present: the engine test runs")
def test_tensorrt_absent_gives_a_clear_error(tiny_model, tmp_path, capsys):
    from satcodec.cli import main
    from satcodec.export import export_model

    with pytest.raises(RuntimeUnavailableError, match="TensorRT"):
        export_model(tiny_model, tmp_path / "trt", fmt="tensorrt")
    assert not (tmp_path / "trt").exists()
    assert (
        main(
            [
                "export",
                "--model",
                str(tiny_model),
                "--format",
                "tensorrt",
                "-o",
                str(tmp_path / "t"),
            ]
        )
        == 2
    )
    assert "TensorRT" in capsys.readouterr().err


@pytest.mark.skipif(not HAVE_TRT, reason="needs the tensorrt package and a CUDA GPU (absent here)")
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_tensorrt_engine_encodes_a_real_image(model, sample_array, tmp_path, precision):
    from satcodec.export.tensorrt import TensorRTTransform, export_tensorrt

    net, info = model
    m = export_tensorrt(net, info, tmp_path, precision, max_tile=512, count=8)
    ana = TensorRTTransform(tmp_path / m["engines"]["analysis"]["file"])
    enc = _encoder(net, info, sample_array, ana)
    data = enc.encode(1.0)
    dec = _check_symbols(enc, data)  # decodes with the PyTorch decoder
    assert psnr(sample_array, decode_to_array(dec).array, 12) > 20


@pytest.mark.parametrize("stride", [8, 16])
def test_tensorrt_profiles_cover_every_window_the_coder_makes(stride):
    """Windows stop at the image border, so a small image's are far below a tile plus halo:
    the engines' shape profiles must start at one latent (checked without TensorRT)."""
    import satcodec.coding as pipeline
    from satcodec.codec.models import ModelConfig, ReducedVAE
    from satcodec.export.tensorrt import _shapes

    lo, _, hi = _shapes("synthesis", 24, 512, stride)
    assert lo == (1, 24, 1, 1) and hi[2] == 512 // stride + 2 * pipeline.DECODE_HALO
    model = ReducedVAE(ModelConfig(hidden=8, latent=8, stages=3 if stride == 8 else 4))
    seen = []  # the encoder's analysis windows

    def analysis(x: np.ndarray) -> np.ndarray:
        seen.append(x.shape)
        with torch.no_grad():
            return model.analysis_transform(torch.from_numpy(x)).numpy()

    for h, w in ((stride + 3, 2 * stride), (130, 97)):  # tiny image; partial edge tiles
        pipeline.Encoder(
            model, None, pipeline.array_window_reader(np.ones((1, h, w), np.uint16)),
            height=h, width=w, bands=1, dtype="uint16", bit_depth=12, nodata=None, tile=64,
            analysis=analysis,
        )  # fmt: skip
    lo, _, hi = _shapes("analysis", 1, 64, stride)
    assert lo == (1, 1, stride, stride) and hi[2] == 64 + 2 * pipeline.ENCODE_HALO
    assert min(min(s[2:]) for s in seen) < 64 + 2 * pipeline.ENCODE_HALO  # windows do shrink
    assert all(lo[2] <= s[2] <= hi[2] and lo[3] <= s[3] <= hi[3] for s in seen), seen


def test_the_onnxruntime_coder_runs_without_loading_pytorch(tmp_path, sample_array):
    """With its export cached, encode and decode on onnxruntime never import PyTorch (which
    alone keeps ~500 MB resident): the property the memory bound of a board rests on."""
    import subprocess
    import sys

    from tests.conftest import tiny_stride8_model

    weights = tmp_path / "tiny.safetensors"
    save_model(weights, tiny_stride8_model(7), {"lmbda": 0.001})
    img = tmp_path / "img.npy"
    np.save(img, sample_array[:, :128, :128])
    env = {**os.environ, "SATCODEC_CACHE": str(tmp_path / "cache"), "SATCODEC_RUNTIME": ""}
    script = (
        "import sys, numpy as np, satcodec\n"
        "a = np.load(sys.argv[1])\n"
        "s = satcodec.encode(a, quality=50, model=sys.argv[2], runtime='onnxruntime', tile=64)\n"
        "d, _ = satcodec.decode(s, model=sys.argv[2], runtime='onnxruntime')\n"
        "assert d.shape == a.shape\n"
        "print('torch' in sys.modules)\n"
    )
    run = [sys.executable, "-c", script, str(img), str(weights)]
    first = subprocess.run(run, env=env, capture_output=True, text=True, check=True)
    assert first.stdout.strip() == "True"  # the first use builds the export, with PyTorch
    again = subprocess.run(run, env=env, capture_output=True, text=True, check=True)
    assert again.stdout.strip() == "False", again.stderr
