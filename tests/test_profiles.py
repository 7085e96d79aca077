"""Hardware profiles (hw_profiles/*.toml), the roofline projection and `satcodec profile`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from satcodec.errors import ProfileError
from satcodec.export.profiling import (
    PROFILES_DIR,
    HardwareProfile,
    Layer,
    find_profile,
    format_reports,
    layer_table,
    list_profiles,
    load_profile,
    parse_profile,
    profile_board,
    roofline,
)

pytest.importorskip("onnxruntime")

GOOD = """
name = "{name}"
description = "test board"
role = "board"
sources = ["a datasheet"]

[runtime]
name = "onnxruntime"
precision = "fp32"
threads = 1

[hardware]
memory_gib = 1.0
peak_int8_tops = 1.0
peak_fp16_tflops = 0.5
peak_fp32_tflops = 0.25
memory_bandwidth_gbs = 10.0
power_w = 5.0
"""


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory):
    old = os.environ.get("SATCODEC_CACHE")
    os.environ["SATCODEC_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("SATCODEC_CACHE", None)
    else:
        os.environ["SATCODEC_CACHE"] = old


def test_shipped_profiles_are_valid_and_cited():
    profiles = list_profiles(PROFILES_DIR)
    assert len(profiles) >= 6
    names = {p.name for p in profiles}
    assert {"jetson-orin-nano-8gb", "jetson-agx-xavier", "myriad-x-ma2485"} <= names
    for p in profiles:
        assert p.sources and all(len(s) > 10 for s in p.sources)
        assert p.peak_ops() > 0 and p.memory_bandwidth_gbs > 0 and p.power_w > 0
    assert {p.role for p in profiles} == {"board", "ground"}
    assert {p.precision for p in profiles} >= {"int8", "fp16", "fp32"}


def _write(tmp_path: Path, text: str, name: str = "b") -> Path:
    f = tmp_path / f"{name}.toml"
    f.write_text(text)
    return f


@pytest.mark.parametrize(
    "old, new, field",
    [
        ("threads = 1", 'threads = "1"', "runtime.threads"),
        ("threads = 1", "threads = true", "runtime.threads"),
        ("threads = 1", "threads = 0", "runtime.threads"),
        ("power_w = 5.0", "power_w = -5.0", "hardware.power_w"),
        ("power_w = 5.0", "", "hardware.power_w"),
        ("memory_gib = 1.0", 'memory_gib = "lots"', "hardware.memory_gib"),
        ('precision = "fp32"', 'precision = "fp64"', "runtime.precision"),
        ('name = "onnxruntime"', 'name = "tflite"', "runtime.name"),
        ('sources = ["a datasheet"]', "sources = []", "sources"),
        ('role = "board"', 'role = "rover"', "role"),
        ("peak_fp32_tflops = 0.25", "peak_fp32_tflops = 0.0", "hardware.peak_fp32_tflops"),
        ("power_w = 5.0", "power_w = 5.0\nclock_ghz = 1.0", "hardware.clock_ghz"),
        ('role = "board"', 'role = "board"\ncolour = "red"', "colour"),
    ],
)
def test_malformed_profile_names_the_field(tmp_path, old, new, field):
    text = GOOD.format(name="b")
    assert old in text
    f = _write(tmp_path, text.replace(old, new, 1))
    with pytest.raises(ProfileError, match=field.replace(".", r"\.")) as exc:
        load_profile(f)
    assert str(f) in str(exc.value)


def test_profile_file_errors(tmp_path):
    with pytest.raises(ProfileError, match="TOML"):
        load_profile(_write(tmp_path, "name = = 1"))
    with pytest.raises(ProfileError, match="does not exist"):
        load_profile(tmp_path / "none.toml")
    with pytest.raises(ProfileError, match="name"):
        load_profile(_write(tmp_path, GOOD.format(name="other"), name="b"))
    with pytest.raises(ProfileError, match="available"):
        find_profile("no-such-board", tmp_path)
    assert isinstance(ProfileError("x"), ValueError)


def _profile(**kw) -> HardwareProfile:
    import tomllib

    p = parse_profile(tomllib.loads(GOOD.format(name="t")))
    return HardwareProfile(**{**p.__dict__, **kw})


def test_roofline_by_hand():
    # 1e9 MAC at 1 TOPS int8 = 2 ms compute; 1e6 + 1e6 elements + 1e3 params at 1 B over 10 GB/s = 0.2 ms
    prof = _profile(precision="int8", peak_int8_tops=1.0, memory_bandwidth_gbs=10.0, power_w=5.0)
    layers = [Layer("c", "conv", 10**9, 1000, 10**6, 10**6)]
    p = roofline(layers, prof, pixels=10**6)
    assert p.latency_s == pytest.approx(2e-3)
    assert p.mpix_per_s == pytest.approx(500.0)
    assert p.energy_j_per_mpix == pytest.approx(5.0 * 2e-3)
    assert p.compute_bound_layers == 1
    # the same layer at 0.01 GB/s is memory-bound: 2.001e6 B / 1e7 B/s
    p = roofline(layers, _profile(precision="int8", memory_bandwidth_gbs=0.01), pixels=10**6)
    assert p.latency_s == pytest.approx(2.001e6 / 1e7) and p.memory_bound_layers == 1


def test_layer_table_matches_model_complexity(tiny_model):
    from satcodec.codec.models import complexity
    from satcodec.codec.registry import load_model
    from satcodec.export.deploy import deploy_transforms

    net, _ = load_model(tiny_model)
    ana, _ = deploy_transforms(net)
    layers = layer_table(ana, (1, 1, 256, 256))
    assert sum(x.macs for x in layers) / 256**2 == complexity(net, 256)["encoder_mac_per_pixel"]
    assert sum(x.params for x in layers) == complexity(net, 256)["encoder_params"]


def test_profile_all_table_and_plot(tiny_model, tmp_path, capsys):
    from satcodec.cli import main

    png = tmp_path / "profile.png"
    rc = main(["profile", "--all", "--model", str(tiny_model), "--size", "128", "--repeat", "2",
               "--plot", str(png)])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0
    assert "MEASURED on this host" in out and "PROJECTED for the board" in out
    assert "not a measurement" in out
    for p in list_profiles(PROFILES_DIR):
        assert p.name in out
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"


def test_profile_one_board_report(tiny_model):
    from satcodec.codec.registry import load_model

    net, info = load_model(tiny_model)
    prof = find_profile("myriad-x-ma2485")
    r = profile_board(prof, net, info, size=64, repeat=2)
    assert r.host_runtime == "onnxruntime" and r.host_precision == "fp32"
    assert "openvino" in r.host_note  # the stand-in is said, never hidden
    assert r.measured_latency_s > 0 and r.projected_latency_s > 0
    assert r.weight_bytes == r.params * 2  # fp16 on the board
    assert r.fits_memory
    text = format_reports([r])
    assert "stands in" in text and "MEASURED" in text and "PROJECTED" in text
