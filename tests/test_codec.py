"""End-to-end behaviour of the codec: exact entropy decoding, determinism, damaged tiles,
seams, bad streams, rate control and GeoTIFF metadata round trips."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import rasterio

import satcodec
from satcodec.bitstream import StreamReader
from satcodec.codec.registry import load_model
from satcodec.coding import DECODE_HALO, Encoder, array_window_reader
from satcodec.entropy import decode_symbols
from satcodec.entropy.context import decode_symbols_context
from satcodec.errors import TileCorruptedError, UnknownModelError
from tests.conftest import RPC_SAMPLE, SAMPLE, requires_shipped_model

CLI = [sys.executable, "-m", "satcodec"]


def run_cli(*args: str, env_model_path: Path | None = None) -> subprocess.CompletedProcess:
    import os

    env = dict(os.environ)
    if env_model_path is not None:
        env["SATCODEC_MODEL_PATH"] = str(env_model_path.parent)
    return subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, env=env, timeout=300
    )


def _sample_encoder(net, info, sample_array: np.ndarray, **options) -> Encoder:
    """An Encoder over the 500x500 12-bit Pleiades sample (one band)."""
    return Encoder(
        net,
        info,
        array_window_reader(sample_array),
        height=500,
        width=500,
        bands=1,
        dtype="uint16",
        bit_depth=12,
        nodata=None,
        **options,
    )


@pytest.mark.parametrize("channel_context", [True, False])
def test_entropy_decoding_returns_the_encoded_latents_on_every_tile(
    tiny_model, sample_array, channel_context
):
    net, info = load_model(tiny_model)
    enc = _sample_encoder(net, info, sample_array, tile=128, channel_context=channel_context)
    step = 0.37
    data = enc.encode(step)
    reader = StreamReader(data)
    h = reader.header
    assert h.channel_context is channel_context
    decode = decode_symbols_context if channel_context else decode_symbols
    assert len(enc.latent_tiles) == h.tiles_y * h.tiles_x == 16
    for t in enc.latent_tiles:
        expected, _ = enc.quantise(t.latents, h.quant_step)
        rec = reader.read_tile(t.band, t.row, t.col)
        (n,) = struct.unpack_from("<I", rec.payload)
        got = decode(
            rec.payload[4 : 4 + n], np.frombuffer(rec.scale_indices, np.uint8), expected.shape
        )
        np.testing.assert_array_equal(got, expected)
        assert np.abs(expected).max() > 0  # the test is not vacuous


def test_array_round_trip_shape_dtype_and_metadata(tiny_model, sample_array):
    data = satcodec.encode(sample_array, quality=60, model=tiny_model, tile=256)
    out, meta = satcodec.decode(data)
    assert out.shape == sample_array.shape and out.dtype == np.uint16
    assert meta["bit_depth"] == 12 and meta["damaged_tiles"] == []
    assert out.max() <= 4095
    # 8-bit input, multi-band, odd size
    rgb = (np.random.default_rng(0).integers(0, 255, (3, 70, 93))).astype(np.uint8)
    out8, meta8 = satcodec.decode(satcodec.encode(rgb, quality=50, model=tiny_model))
    assert out8.shape == rgb.shape and out8.dtype == np.uint8 and meta8["bands"] == 3


DECODE_SCRIPT = """
import sys, hashlib, torch
torch.set_num_threads(int(sys.argv[2]))
import satcodec
arr, _ = satcodec.decode(open(sys.argv[1], 'rb').read())
print(hashlib.sha256(arr.tobytes()).hexdigest())
"""


def test_same_stream_decodes_identically_in_fresh_processes_with_1_or_2_threads(
    tiny_model, sample_array, tmp_path
):
    stream = tmp_path / "s.satc"
    stream.write_bytes(satcodec.encode(sample_array, quality=60, model=tiny_model, tile=256))
    import os

    env = dict(os.environ, SATCODEC_MODEL_PATH=str(tiny_model.parent))
    digests = set()
    for threads in ("1", "2", "1"):
        r = subprocess.run(
            [sys.executable, "-c", DECODE_SCRIPT, str(stream), threads],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert r.returncode == 0, r.stderr
        digests.add(r.stdout.strip())
    arr, _ = satcodec.decode(stream.read_bytes())
    import hashlib

    digests.add(hashlib.sha256(arr.tobytes()).hexdigest())
    assert len(digests) == 1


def _tile_payload_offset(data: bytes, band: int, row: int, col: int) -> tuple[int, int]:
    """(start, end) of one tile's entropy payload inside the stream (from the tile table)."""
    reader = StreamReader(data)
    h = reader.header
    idx = h.tile_index(band, row, col)
    table_start = 72 + 4 * h.bands + struct.unpack_from("<I", data, 68)[0]
    off, length = struct.unpack_from("<QI", data, table_start + 12 * idx)
    head = 20 + h.latent_channels  # tile header + scale indices
    return off + head + 4, off + length - 4


def test_damaged_tile_is_named_and_confined_to_its_halo(tiny_model, tmp_path):
    stream = tmp_path / "s.satc"
    r = run_cli(
        "encode",
        SAMPLE,
        "-o",
        stream,
        "--quality",
        "60",
        "--tile",
        "128",
        "--model",
        tiny_model,
        "-q",
    )
    assert r.returncode == 0, r.stderr
    clean = tmp_path / "clean.tif"
    assert run_cli("decode", stream, "-o", clean, "-q", env_model_path=tiny_model).returncode == 0
    data = bytearray(stream.read_bytes())
    a, b = _tile_payload_offset(bytes(data), 0, 1, 2)
    data[(a + b) // 2] ^= 0x5A
    bad = tmp_path / "bad.satc"
    bad.write_bytes(bytes(data))
    out = tmp_path / "out.tif"
    r = run_cli("decode", bad, "-o", out, "-q", env_model_path=tiny_model)
    assert r.returncode != 0
    assert "tile (band 0, row 1, col 2)" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()
    r = run_cli("decode", bad, "-o", out, "--allow-damaged", "-q", env_model_path=tiny_model)
    assert r.returncode == 1, r.stderr  # done in part
    assert "tile (band 0, row 1, col 2)" in r.stderr
    with rasterio.open(clean) as c, rasterio.open(out) as d:
        ref, got, nodata = c.read(1), d.read(1), d.nodata
    assert nodata is not None
    y0, x0, T = 128, 256, 128
    assert np.all(got[y0 : y0 + T, x0 : x0 + T] == nodata)
    halo = DECODE_HALO * 16
    outside = np.ones(ref.shape, bool)
    outside[max(0, y0 - halo) : y0 + T + halo, max(0, x0 - halo) : x0 + T + halo] = False
    np.testing.assert_array_equal(got[outside], ref[outside])
    # the halo ring itself is where differences are allowed (and expected)
    ring = ~outside
    ring[y0 : y0 + T, x0 : x0 + T] = False
    assert ring.sum() > 0


def test_tile_size_barely_changes_the_reconstruction(tiny_model, sample_array):
    a, _ = satcodec.decode(satcodec.encode(sample_array, quality=55, model=tiny_model, tile=128))
    b, _ = satcodec.decode(satcodec.encode(sample_array, quality=55, model=tiny_model, tile=512))
    diff = np.abs(a.astype(int) - b.astype(int))
    # identical latents up to float rounding, so at most a few DN flip by one quantum
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01


def _with_header_crc(data: bytearray) -> bytes:
    reader_len = len(data)
    bands = struct.unpack_from("<H", data, 24)[0]
    meta_len = struct.unpack_from("<I", data, 68)[0]
    tiles = struct.unpack_from("<I", data, 64)[0]
    crc_pos = 72 + 4 * bands + meta_len + 12 * tiles
    assert crc_pos + 4 <= reader_len
    struct.pack_into("<I", data, crc_pos, zlib.crc32(bytes(data[:crc_pos])))
    return bytes(data)


@pytest.fixture(scope="module")
def good_stream(tiny_model, tmp_path_factory) -> bytes:
    from satcodec.raster import open_raster

    with open_raster(SAMPLE) as r:
        arr = r.read()
    return satcodec.encode(arr[:, :200, :200], quality=50, model=tiny_model, tile=128)


def _corruptions(good: bytes) -> dict[str, tuple[bytes, str]]:
    wrong_version = bytearray(good)
    struct.pack_into("<H", wrong_version, 4, 7)
    crc_bad = bytearray(good)
    crc_bad[30] ^= 0xFF  # nodata flag etc.: covered by the header CRC
    absurd = bytearray(good)
    struct.pack_into("<II", absurd, 16, 1_000_000, 1_000_000)
    unknown_model = bytearray(good)
    unknown_model[40:56] = bytes(16)
    return {
        "truncated": (good[:50], "trunc"),
        "magic": (b"JUNK" + good[4:], "not a satcodec stream"),
        "version": (_with_header_crc(wrong_version), "version 7"),
        "crc": (bytes(crc_bad), "crc"),
        "absurd": (_with_header_crc(absurd), "1000000x1000000"),
        "model": (_with_header_crc(unknown_model), "model"),
    }


@pytest.mark.parametrize("kind", ["truncated", "magic", "version", "crc", "absurd", "model"])
def test_bad_streams_get_a_one_line_error_and_nonzero_exit(kind, good_stream, tiny_model, tmp_path):
    data, needle = _corruptions(good_stream)[kind]
    bad = tmp_path / f"{kind}.satc"
    bad.write_bytes(data)
    r = run_cli("decode", bad, "-o", tmp_path / "o.tif", "-q", env_model_path=tiny_model)
    assert r.returncode != 0
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("satcodec: error:") and needle.lower() in lines[0].lower(), lines[0]
    assert "Traceback" not in r.stderr


def test_unknown_model_raises_lookup_error(good_stream):
    data = bytearray(good_stream)
    data[40:56] = bytes(16)
    with pytest.raises(UnknownModelError):
        satcodec.decode(_with_header_crc(data))
    with pytest.raises(LookupError):
        satcodec.decode(_with_header_crc(data))


def test_damaged_tile_raises_in_api_and_is_reported_with_allow_damaged(good_stream):
    a, b = _tile_payload_offset(good_stream, 0, 0, 1)
    data = bytearray(good_stream)
    data[a] ^= 1
    with pytest.raises(TileCorruptedError) as e:
        satcodec.decode(bytes(data))
    assert (e.value.band, e.value.row, e.value.col) == (0, 0, 1)
    arr, meta = satcodec.decode(bytes(data), allow_damaged=True)
    assert meta["damaged_tiles"] == [(0, 0, 1)]
    # no nodata in the stream: a fill value outside the 12-bit data, never a real pixel value
    assert meta["nodata"] == 4096 and np.all(arr[0, :128, 128:200] == 4096)


def test_geotiff_metadata_survives_encode_decode(tiny_model, tmp_path):
    # RPCs (sensor geometry) from a real WorldView-3 file
    stream, out = tmp_path / "a.satc", tmp_path / "a.tif"
    assert (
        run_cli(
            "encode", RPC_SAMPLE, "-o", stream, "--quality", "50", "--model", tiny_model, "-q"
        ).returncode
        == 0
    )
    assert run_cli("decode", stream, "-o", out, "-q", env_model_path=tiny_model).returncode == 0
    with rasterio.open(RPC_SAMPLE) as s, rasterio.open(out) as d:
        assert d.rpcs is not None
        want, got = s.rpcs.to_dict(), d.rpcs.to_dict()
        assert want.keys() == got.keys()
        for k in want:
            assert np.allclose(want[k], got[k], rtol=1e-12), k
        assert d.shape == s.shape and d.dtypes == s.dtypes
    # CRS, transform, nodata, descriptions, two bands, 8-bit
    src = tmp_path / "geo.tif"
    arr = np.random.default_rng(0).integers(1, 250, (2, 90, 130)).astype(np.uint8)
    arr[:, :10, :10] = 0
    profile = dict(
        driver="GTiff",
        height=90,
        width=130,
        count=2,
        dtype="uint8",
        crs="EPSG:32631",
        transform=rasterio.Affine(0.5, 0, 600000, 0, -0.5, 5750000),
        nodata=0,
    )
    with rasterio.open(src, "w", **profile) as ds:
        ds.write(arr)
        ds.set_band_description(1, "pan-like")
        ds.set_band_description(2, "nir")
    stream2, out2 = tmp_path / "g.satc", tmp_path / "g.tif"
    assert (
        run_cli(
            "encode", src, "-o", stream2, "--quality", "50", "--model", tiny_model, "-q"
        ).returncode
        == 0
    )
    assert run_cli("decode", stream2, "-o", out2, "-q", env_model_path=tiny_model).returncode == 0
    with rasterio.open(out2) as d:
        assert d.crs == rasterio.crs.CRS.from_epsg(32631)
        assert d.transform == profile["transform"]
        assert d.nodata == 0 and d.count == 2 and d.descriptions == ("pan-like", "nir")
        got = d.read()
    # nodata pixels travel as a lossless mask, so the collar comes back exactly
    assert np.all(got[:, :10, :10] == 0)
    info = run_cli("info", stream2, "--json")
    assert info.returncode == 0 and json.loads(info.stdout)["bands"] == 2
    assert json.loads(info.stdout)["entropy_model"] == "channel-context"


@requires_shipped_model
@pytest.mark.parametrize("target", [1.0, 2.0])
def test_rate_control_hits_target_on_the_pleiades_sample(target, sample_array):
    data = satcodec.encode(sample_array, bpp=target)
    bpp = 8 * len(data) / sample_array.size
    assert abs(bpp / target - 1) <= 0.03


@requires_shipped_model
def test_max_bpp_never_exceeds_the_budget(sample_array):
    for budget in (0.6, 1.3, 2.4):
        data = satcodec.encode(sample_array, max_bpp=budget)
        assert 8 * len(data) / sample_array.size <= budget


def test_conflicting_rate_options_are_refused(tiny_model, sample_array):
    from satcodec.errors import ConfigError

    with pytest.raises(ConfigError):
        satcodec.encode(sample_array, bpp=1.0, quality=50, model=tiny_model)


def test_unknown_model_name_is_a_clear_error(sample_array):
    with pytest.raises(UnknownModelError, match="no model named"):
        satcodec.encode(sample_array, quality=50, model="no-such-model")


def test_nodata_mask_in_a_stream_without_nodata_is_a_damaged_tile(tiny_model):
    # found by bench/fuzz_bitstream.py (full decoder): a header re-sealed with nodata_flag=0
    # while tiles still carry nodata masks must not crash the decoder
    arr = np.full((1, 64, 64), 900, np.uint16)
    arr[0, :8, :8] = 0
    data = bytearray(satcodec.encode(arr, quality=50, model=tiny_model, tile=64, nodata=0))
    data[31] = 0
    struct.pack_into("<d", data, 32, 0.0)
    bad = _with_header_crc(data)
    with pytest.raises(TileCorruptedError, match="nodata mask"):
        satcodec.decode(bad)
    out, meta = satcodec.decode(bad, allow_damaged=True)
    assert meta["damaged_tiles"] == [(0, 0, 0)] and out.shape == (1, 64, 64)


def test_unreachable_bpp_target_raises_instead_of_missing(tiny_model, sample_array):
    from satcodec.errors import RateControlError

    with pytest.raises(RateControlError, match="cannot reach"):
        satcodec.encode(sample_array, bpp=12.0, model=tiny_model)


def test_stride8_models_code_and_decode_with_their_stride_in_the_header(tmp_path, sample_array):
    """Stride-8 latents (3 stages): weights round-trip and the stream carries the stride."""
    import torch

    from satcodec.codec.models import ModelConfig, ReducedVAE, complexity
    from satcodec.codec.registry import save_model
    from satcodec.errors import BitstreamError, WeightsError

    torch.manual_seed(7)
    model = ReducedVAE(ModelConfig(hidden=16, latent=24, stages=3))
    with torch.no_grad():  # as the tiny fixture: put untrained latents on the quantiser's grid
        model.analysis_transform[-1].weight.mul_(40.0)
        model.synthesis_transform[0].conv.weight.div_(40.0)
    x = torch.rand(1, 1, 64, 64)
    assert model.analysis_transform(x).shape == (1, 24, 8, 8)  # stride 8
    assert model(x)["x_hat"].shape == x.shape
    assert complexity(model)["decoder_mac_per_pixel"] > 0
    path = tmp_path / "s8.safetensors"
    save_model(path, model, {})
    loaded, info = load_model(path)
    assert info.config.stages == 3 and info.config.downsampling == 8

    img = sample_array[:, :200, :300]  # odd latent grid: 25 x 37.5 -> 38 latents
    data = satcodec.encode(img, quality=60, model=path, tile=128)
    h = StreamReader(data).header
    assert h.downsampling == 8 and (h.latent_height, h.latent_width) == (25, 38)
    out, meta = satcodec.decode(data, model=path)
    assert out.shape == img.shape and out.dtype == img.dtype and meta["damaged_tiles"] == []
    # tiles are independent but their halo makes the reconstruction almost tile-size free
    big, _ = satcodec.decode(satcodec.encode(img, quality=60, model=path, tile=512), model=path)
    err = np.abs(out.astype(float) - img).mean()
    assert np.abs(out.astype(float) - big).mean() < 0.05 * err
    # a damaged tile is confined to itself plus the synthesis halo (in stride-8 pixels)
    bad = bytearray(data)
    a, b = _tile_payload_offset(data, 0, 0, 1)
    bad[(a + b) // 2] ^= 0x5A
    got, meta = satcodec.decode(bytes(bad), model=path, allow_damaged=True)
    assert meta["damaged_tiles"] == [(0, 0, 1)]
    halo = DECODE_HALO * 8
    outside = np.ones(img.shape[1:], bool)
    outside[: 128 + halo, 128 - halo : 256 + halo] = False
    np.testing.assert_array_equal(got[0][outside], out[0][outside])
    # the stride is part of the contract: a stride-16 model of the same width is refused
    from satcodec.coding import Decoder

    with pytest.raises(BitstreamError, match="stride-8 latents but its model has stride-16"):
        Decoder(StreamReader(data), ReducedVAE(ModelConfig(hidden=16, latent=24)))
    with pytest.raises(ValueError, match="stages must be 3 or 4"):
        ReducedVAE(ModelConfig(stages=5))
    # a weights file that declares an impossible stage count is refused as weights
    bad = tmp_path / "bad.safetensors"
    from safetensors.torch import load_file, save_file

    from satcodec.codec.registry import FORMAT

    cfg = json.dumps({**info.config.to_dict(), "stages": 7})
    save_file(load_file(str(path)), str(bad), metadata={"format": FORMAT, "config": cfg})
    with pytest.raises(WeightsError, match="stages"):
        load_model(bad)


@requires_shipped_model
@pytest.mark.parametrize("tile", [512, 128])
def test_tiled_codec_equals_the_model_on_the_whole_image_borders_included(tile, sample_array):
    """Decoded = synthesis(quantised analysis) of the whole image, at the image borders too.

    The encoder's tile windows stop at the image border (zero padding inside the network, as
    in training). Reading edge-replicated pixels beyond it gave border latents the synthesis
    was never trained on: an error floor of up to ~350 DN at the edges that capped PSNR near
    54 dB on 500x500 scenes at any rate. Here, at a fine step, every pixel matches."""
    import math

    import torch

    from satcodec.codec.registry import load_model

    name = "reduced-s8-l1.6e-2"
    model = load_model(name)[0].eval()
    # the bit depth's peak (no flag 0x0004), so the reference below divides by 4095
    # plain rounding (no deadzone), as the reference below rounds
    data = satcodec.encode(
        sample_array, bpp=4.0, model=name, tile=tile, normalisation="bit-depth", deadzone=0
    )
    out, meta = satcodec.decode(data)
    step, stride, peak = meta["quant_step"], model.config.downsampling, 4095.0
    band = sample_array[0].astype(np.float32)
    H, W = band.shape
    grid = (math.ceil(H / stride) * stride, math.ceil(W / stride) * stride)
    padded = np.pad(band, ((0, grid[0] - H), (0, grid[1] - W)), mode="edge")
    x = torch.from_numpy((padded - round(float(band.mean()))) / peak)[None, None]
    with torch.no_grad():
        y = torch.round(model.analysis_transform(x) / step) * step
        direct = model.synthesis_transform(y)[0, 0, :H, :W].numpy() * peak
    direct = np.clip(np.rint(direct + round(float(band.mean()))), 0, peak)
    err = np.abs(out[0].astype(np.float64) - direct)
    assert err.max() <= 2, (
        f"max deviation {err.max()} DN at {np.unravel_index(err.argmax(), err.shape)}"
    )
    edge = np.concatenate(
        [err[:8].ravel(), err[-8:].ravel(), err[:, :8].ravel(), err[:, -8:].ravel()]
    )
    assert edge.mean() < 0.1


@requires_shipped_model
@pytest.mark.parametrize("target", [0.5, 1.0, 2.0])
def test_rate_search_lands_within_its_band(target, sample_array):
    """step_for_bpp's estimate is within 1 % of the target (and below it when it must not be
    exceeded), found in at most 4 estimates: the first step follows the measured slope."""
    from satcodec.coding.rate_control import log_rate_slope, step_for_bpp

    net, info = load_model("reduced-s8-l1e-3")
    enc = _sample_encoder(net, info, sample_array)
    calls = []
    estimate = enc.estimated_bits

    def counted(step: float, sample: int = 1, model=None) -> float:
        calls.append(step)
        return estimate(step, sample, model)

    enc.estimated_bits = counted  # type: ignore[method-assign]
    for below in (False, True):
        calls.clear()
        step = step_for_bpp(enc, target, 0.01, below=below)
        got = estimate(step) / enc.pixels / target
        assert (0.99 < got <= 1.0) if below else (0.99 < got <= 1.01)
        assert len(calls) <= 4
    # the slope model: about -1 at half a bit per latent, flatter above, steeper below
    assert log_rate_slope(0.5) == pytest.approx(-1.0)
    assert -1.0 < log_rate_slope(2.0) < -0.3 and -3.0 < log_rate_slope(0.1) < -1.0
