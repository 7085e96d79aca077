"""Evaluation: BD metrics, MS-SSIM, masks, the eval loop and CLI, and the hyperprior peer."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from satcodec.evaluation import (
    bd_overlap,
    bd_psnr,
    bd_rate,
    bd_table,
    evaluate,
    ms_ssim,
    plot_rd,
    read_csv,
    valid_mask,
    write_csv,
)
from satcodec.evaluation.bd import _pchip_integral

SAMPLE = Path(__file__).resolve().parent.parent / "satcodec" / "data" / "pleiades_ventoux.tif"
RATES = [0.5, 1.0, 2.0, 3.0]
PSNRS = [40.0, 44.5, 50.0, 53.0]


# --- BD metrics ------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_bd_rate_of_a_scaled_curve_is_the_scale(method):
    assert bd_rate(RATES, PSNRS, [1.1 * r for r in RATES], PSNRS, method) == pytest.approx(10.0)
    assert bd_rate(RATES, PSNRS, [0.8 * r for r in RATES], PSNRS, method) == pytest.approx(-20.0)
    assert bd_rate(RATES, PSNRS, RATES, PSNRS, method) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_bd_psnr_of_a_shifted_curve_is_the_shift(method):
    assert bd_psnr(RATES, PSNRS, RATES, [p + 0.7 for p in PSNRS], method) == pytest.approx(0.7)
    assert bd_psnr(RATES, PSNRS, RATES, [p - 2 for p in PSNRS], method) == pytest.approx(-2.0)


def test_bd_uses_only_the_common_range():
    # a curve linear in log-rate (interpolation is then exact); the test curve covers the
    # upper half only, where it is 10% cheaper: the lower half must not dilute that
    psnrs = [46 + 6.02 * math.log2(r) for r in RATES]
    test_r = [0.9 * r for r in RATES[2:]]
    assert bd_rate(RATES, psnrs, test_r, psnrs[2:]) == pytest.approx(-10.0)
    ov = bd_overlap(RATES, psnrs, test_r, psnrs[2:])
    assert ov["psnr_overlap_db"] == pytest.approx(psnrs[3] - psnrs[2])


def test_bd_is_nan_without_overlap_or_points():
    assert math.isnan(bd_rate(RATES, PSNRS, RATES, [p - 30 for p in PSNRS]))
    assert math.isnan(bd_psnr(RATES, PSNRS, [r * 100 for r in RATES], PSNRS))
    assert math.isnan(bd_rate(RATES, PSNRS, [1.0], [45.0]))
    # non-finite points (lossless: PSNR = inf) are dropped, not propagated
    assert bd_rate(RATES, PSNRS, RATES + [8.0], PSNRS + [math.inf]) == pytest.approx(0.0, abs=1e-9)


def test_bd_rate_sign_and_order_independence():
    worse = [r * 1.3 for r in RATES]
    shuffled = [3, 0, 2, 1]
    v = bd_rate(
        [RATES[i] for i in shuffled],
        [PSNRS[i] for i in shuffled],
        [worse[i] for i in shuffled],
        [PSNRS[i] for i in shuffled],
    )
    assert v == pytest.approx(30.0)


def test_pchip_integral_exact_on_piecewise_linear_and_monotone():
    x = np.array([0.0, 1.0, 2.0, 4.0])
    y = 3 * x + 1
    assert _pchip_integral(x, y, 0.5, 3.0) == pytest.approx(1.5 * 3.0**2 + 3.0 - (1.5 * 0.25 + 0.5))
    # monotone data: the integral lies between those of the step functions bounding it
    y = np.array([0.0, 0.1, 5.0, 5.1])
    v = _pchip_integral(x, y, 0.0, 4.0)
    assert 0.0 * 1 + 0.1 * 1 + 5.0 * 2 <= v + 1e-12 <= 0.1 * 1 + 5.0 * 1 + 5.1 * 2


# --- MS-SSIM ---------------------------------------------------------------------------------
def _sample(size: int = 256) -> np.ndarray:
    from satcodec.raster import open_raster

    with open_raster(SAMPLE) as r:
        return r.read()[0, :size, :size].astype(np.float64)


def test_ms_ssim_identical_is_one_and_noise_lowers_it():
    x = _sample()
    assert ms_ssim(x, x, 12) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    values = [ms_ssim(x, np.clip(x + rng.normal(0, s, x.shape), 0, 4095), 12) for s in (5, 20, 80)]
    assert 1 > values[0] > values[1] > values[2] > 0.5


def test_ms_ssim_known_values():
    # recorded from pytorch_msssim 1.0.0 (ms_ssim, data_range=4095) on the same inputs
    x = _sample()
    rng = np.random.default_rng(0)
    y5 = np.clip(np.rint(x + rng.normal(0, 5, x.shape)), 0, 4095)
    y80 = np.clip(np.rint(x + rng.normal(0, 80, x.shape)), 0, 4095)
    assert ms_ssim(x, y5, 12) == pytest.approx(0.9998657416, abs=2e-7)
    assert ms_ssim(x, y80, 12) == pytest.approx(0.9687238193, abs=2e-7)


def test_ms_ssim_matches_pytorch_msssim_when_installed():
    ref = pytest.importorskip("pytorch_msssim")
    x = _sample(352)
    y = np.clip(x + np.random.default_rng(1).normal(0, 30, x.shape), 0, 4095)
    for bits in (12, 16):
        expected = float(
            ref.ms_ssim(
                torch.from_numpy(x)[None, None],
                torch.from_numpy(y)[None, None],
                data_range=2**bits - 1,
            )
        )
        assert ms_ssim(x, y, bits) == pytest.approx(expected, abs=1e-6)


def test_ms_ssim_mask_ignores_masked_pixels():
    x = _sample()
    rng = np.random.default_rng(2)
    y = np.clip(x + rng.normal(0, 20, x.shape), 0, 4095)
    mask = np.ones(x.shape, bool)
    mask[:, :40] = False
    base = ms_ssim(x, y, 12, mask)
    assert ms_ssim(x, y, 12, np.ones(x.shape, bool)) == ms_ssim(x, y, 12)
    garbage = y.copy()
    garbage[:, :40] = 4095 - garbage[:, :40]
    assert ms_ssim(x, garbage, 12, mask) == pytest.approx(base, abs=1e-12)
    assert ms_ssim(x, garbage, 12) < base - 0.01


def test_ms_ssim_rejects_small_or_mismatched_images():
    with pytest.raises(ValueError):
        ms_ssim(np.zeros((100, 300)), np.zeros((100, 300)), 12)
    with pytest.raises(ValueError):
        ms_ssim(np.zeros((200, 200)), np.zeros((200, 201)), 12)


# --- masks -----------------------------------------------------------------------------------
def test_valid_mask_nodata_and_zero_collars():
    a = np.full((2, 20, 20), 100, np.uint16)
    assert valid_mask(a, None) is None
    a[:, :5, :] = 0  # 25% all-zero collar
    m = valid_mask(a, None)
    assert m is not None and m.sum() == 15 * 20
    b = np.full((1, 200, 200), 100, np.uint16)
    b[0, 0, :100] = 0  # 0.25%: dark ground, not a collar
    assert valid_mask(b, None) is None
    c = np.full((2, 10, 10), 7, np.uint16)
    c[1, 0, 0] = 9
    m = valid_mask(c, 9)
    assert m is not None and not m[0, 0] and m.sum() == 99


# --- eval loop, CSV, plot, CLI --------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from satcodec.codec.models import ModelConfig, ReducedVAE
    from satcodec.codec.registry import save_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_model(path, ReducedVAE(ModelConfig(hidden=8, latent=16)), {"native_bpp": 1.0})
    return path


@pytest.fixture(scope="module")
def crop(tmp_path_factory):
    """A 192x192 crop of the shipped Pleiades sample with a 5% zero collar."""
    from satcodec.raster import open_raster, write_raster

    with open_raster(SAMPLE) as r:
        meta = r.meta
        a = r.read()[:, 100:292, 100:292].copy()
    a[:, :, :10] = 0
    meta.height, meta.width = a.shape[1:]
    meta.transform = None
    meta.rpcs = None
    path = tmp_path_factory.mktemp("img") / "crop.tif"
    write_raster(path, a, meta)
    return path


def test_evaluate_real_sizes_and_bd(crop, tiny_model, tmp_path):
    cache = tmp_path / "cache.json"
    skipped: list[str] = []
    rows = evaluate(
        [crop],
        ["satcodec", "jpeg2000"],
        [0.125, 0.25, 2.0],
        model=tiny_model,
        anchor_cache=cache,
        progress=False,
        log=skipped.append,
    )
    # the untrained tiny model cannot spend 2 bpp: that point is reported and left out
    assert len(skipped) == 1 and "satcodec:tiny @ 2 bpp" in skipped[0]
    assert len(rows) == 5
    assert {r["codec"] for r in rows} == {"satcodec", "jpeg2000"}
    for r in rows:
        assert r["bpp"] == pytest.approx(8 * r["bytes"] / (192 * 192))
        assert abs(r["bpp"] / r["target_bpp"] - 1) <= 0.03
        assert r["bit_depth"] == 12 and r["peak"] == 4095
        assert r["valid_fraction"] == pytest.approx(182 / 192)
        assert 15 < r["psnr"] < 80 and 0 < r["msssim"] <= 1
    j2k = [r for r in rows if r["codec"] == "jpeg2000"]
    assert j2k[0]["psnr"] < j2k[1]["psnr"] < j2k[2]["psnr"]
    # anchors come back from the cache identical
    again = evaluate([crop], ["jpeg2000"], [0.125, 0.25, 2.0], anchor_cache=cache, progress=False)
    assert [r["bytes"] for r in again] == [r["bytes"] for r in j2k]
    table = bd_table(rows)
    names = {(t["image"], t["curve"]) for t in table}
    assert ("crop.tif", "satcodec:tiny") in names and ("MEAN", "satcodec:tiny") in names
    write_csv(tmp_path / "rows.csv", rows)
    back = read_csv(tmp_path / "rows.csv")
    assert len(back) == len(rows) and back[0]["bytes"] == rows[0]["bytes"]
    plot_rd(back, tmp_path / "rd.png", bd=table)
    assert (tmp_path / "rd.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_ladder_curve_is_the_apis_pick_even_beyond_a_models_nominal_range(crop, tmp_path):
    """A card may measure a model beyond one octave of its native rate; rate control then
    picks it there, and the eval's ladder curve must code what the API codes."""
    from satcodec.codec.models import ModelConfig, ReducedVAE
    from satcodec.codec.registry import load_model, save_model
    from satcodec.coding import choose_model

    torch.manual_seed(0)
    # "reach": native 0.05 bpp (nominal range 0.025-0.1), its card measured up to 0.3 and best
    reach, other = tmp_path / "reach.safetensors", tmp_path / "other.safetensors"
    rd_reach = [[0.05, 40.0], [0.3, 50.0]]
    save_model(
        reach, ReducedVAE(ModelConfig(hidden=8, latent=16)), {"native_bpp": 0.05, "rd": rd_reach}
    )
    torch.manual_seed(1)
    # "other": native 0.05 too, its card stops below 0.25: outside every nominal range, rate
    # control takes the model whose card covers the target
    rd_other = [[0.02, 35.0], [0.05, 38.0]]
    save_model(
        other, ReducedVAE(ModelConfig(hidden=8, latent=16)), {"native_bpp": 0.05, "rd": rd_other}
    )
    infos = [load_model(p)[1] for p in (reach, other)]
    assert choose_model(0.25, infos) == "reach"
    rows = evaluate([crop], ["satcodec"], [0.25], model=[reach, other], progress=False)
    picked = [r for r in rows if r["ladder"]]
    assert [r["model"] for r in picked] == ["reach"]


def test_cli_eval(crop, tmp_path, capsys):
    from satcodec.cli import main

    csv_path, png = tmp_path / "o.csv", tmp_path / "o.png"
    rc = main(
        [
            "eval",
            str(crop),
            "--codecs",
            "jpeg2000,jpegxl",
            "--bpp",
            "1,2",
            "--csv",
            str(csv_path),
            "--plot",
            str(png),
            "-q",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert "BD-rate" in out and "jpegxl" in out
    assert csv_path.exists() and (tmp_path / "o_bd.csv").exists() and png.exists()
    assert main(["eval", str(crop), "--codecs", "nope", "-q"]) == 2


# --- the hyperprior peer ---------------------------------------------------------------------
def test_peer_forward_shapes_rate_and_training_step():
    from satcodec.codec.training import rd_loss
    from satcodec.evaluation.peer_hyperprior import HyperpriorConfig, ScaleHyperprior

    torch.manual_seed(0)
    model = ScaleHyperprior(HyperpriorConfig(hidden=16, latent=24))
    x = torch.randn(2, 1, 64, 64) * 0.05
    loss_fn = rd_loss(4e-3)
    loss, metrics = loss_fn(model, x)
    assert torch.isfinite(loss) and metrics["bpp"] > 0
    loss.backward()
    assert model.entropy_bottleneck.matrices[0].grad is not None
    assert model.hyper_analysis[0].weight.grad is not None
    model.eval()
    with torch.no_grad():
        fine, coarse = model(x, 0.5), model(x, 4.0)
    assert fine["x_hat"].shape == x.shape
    assert (fine["bits"] > coarse["bits"]).all()
    assert torch.allclose(fine["bits"], fine["bits_y"] + fine["bits_z"])


def test_peer_densities_are_normalised():
    from satcodec.evaluation.peer_hyperprior import EntropyBottleneck, gaussian_likelihood

    grid = torch.arange(-60.0, 61.0).view(1, 1, -1, 1)
    for s in (0.11, 0.5, 3.0, 10.0):
        assert float(gaussian_likelihood(grid, torch.tensor(s)).sum()) == pytest.approx(1, abs=1e-6)
    torch.manual_seed(0)
    eb = EntropyBottleneck(3)
    wide = torch.arange(-400.0, 401.0).view(1, 1, -1, 1)  # its initial density is broad
    p = eb.likelihood(wide.expand(1, 3, -1, 1).contiguous())
    assert torch.allclose(p.sum(dim=2).squeeze(), torch.ones(3), atol=1e-4)


def test_peer_complexity_and_weights_round_trip(tmp_path):
    from satcodec.evaluation.peer_hyperprior import (
        HyperpriorConfig,
        ScaleHyperprior,
        count_macs,
        load_peer,
        peer_complexity,
        save_peer,
    )

    t = torch.nn.ConvTranspose2d(4, 6, 5, stride=2, padding=2, output_padding=1)
    assert count_macs(t, (1, 4, 8, 8)) == 8 * 8 * 4 * 6 * 25
    model = ScaleHyperprior(HyperpriorConfig(hidden=128, latent=192))
    c = peer_complexity(model)
    n = 128
    g_a_convs = (25 * n) / 4 + (25 * n * n) / 16 + (25 * n * n) / 64 + (25 * n * 192) / 256
    g_a_gdn = n * n / 4 + n * n / 16 + n * n / 64
    assert c["analysis_mac_per_pixel"] == pytest.approx(g_a_convs + g_a_gdn)
    assert c["total_params"] == sum(p.numel() for p in model.parameters())
    assert c["encoder_mac_per_pixel"] > c["analysis_mac_per_pixel"]
    small = ScaleHyperprior(HyperpriorConfig(hidden=8, latent=8))
    save_peer(tmp_path / "p.safetensors", small, {"lmbda": 1e-3})
    back, meta = load_peer(tmp_path / "p.safetensors")
    assert meta["lmbda"] == 1e-3 and back.config == small.config
    for k, v in small.state_dict().items():
        assert torch.equal(v, back.state_dict()[k])


def test_rd_sweep_rates_fall_with_the_step_for_both_families():
    from satcodec.codec.models import ModelConfig, ReducedVAE
    from satcodec.evaluation.peer_hyperprior import HyperpriorConfig, ScaleHyperprior, rd_sweep

    band = _sample(256)[:130, :100].astype(np.uint16)  # not a multiple of 64: padded
    torch.manual_seed(0)
    for net in (
        # untrained: a large input gain puts the latents well above the quantiser's step
        ScaleHyperprior(HyperpriorConfig(hidden=8, latent=8, input_gain=2000.0)),
        ReducedVAE(ModelConfig(hidden=8, latent=8, input_gain=2000.0)),
    ):
        out = rd_sweep(net, band, 12, [0.25, 1.0, 4.0])
        rates = [r for _, r, _ in out]
        assert rates[0] > rates[1] > rates[2] > 0
        assert all(
            rec.shape == band.shape and rec.min() >= 0 and rec.max() <= 4095 for *_, rec in out
        )


def test_lower_bound_passes_gradients_that_raise_the_value():
    from satcodec.evaluation.peer_hyperprior import lower_bound

    x = torch.tensor([0.05, 0.5], requires_grad=True)
    (-lower_bound(x, 0.11).sum()).backward()  # minimising −x wants x larger: flows everywhere
    assert torch.equal(x.grad, torch.tensor([-1.0, -1.0]))
    x.grad = None
    lower_bound(x, 0.11).sum().backward()  # wants x smaller: blocked below the bound
    assert torch.equal(x.grad, torch.tensor([0.0, 1.0]))


def test_ladder_pick_is_the_best_measured_model_at_each_rate():
    """Rate control and the eval's ladder curve pick by the cards' measured RD, not native rate."""
    from satcodec.codec.models import ModelConfig
    from satcodec.codec.registry import ModelInfo
    from satcodec.coding import choose_model
    from satcodec.evaluation.run import _ladder_choice

    def info(name: str, native: float, rd: list[list[float]]) -> ModelInfo:
        return ModelInfo(
            name,
            Path(f"{name}.safetensors"),
            "0" * 32,
            ModelConfig(),
            {"native_bpp": native, "rd": rd},
        )

    low = info("low", 0.4, [[0.252, 38.0], [0.502, 41.0], [1.0, 42.0]])
    mid = info("mid", 1.0, [[0.502, 41.5], [1.0, 44.5], [2.0, 47.0]])  # real rates: 0.502
    # native rate nearest to 2 bpp, but measured worse there than "wide"
    near = info("near", 1.9, [[1.0, 43.0], [2.0, 47.5], [3.0, 49.0]])
    wide = info("wide", 2.6, [[1.0, 43.5], [2.0, 48.2], [3.0, 50.0]])
    models = [low, mid, near, wide]
    picks = {b: choose_model(b, models) for b in (0.25, 0.5, 1.0, 2.0, 3.0)}
    assert picks == {0.25: "low", 0.5: "mid", 1.0: "mid", 2.0: "wide", 3.0: "wide"}
    assert all(_ladder_choice(models, b) == p for b, p in picks.items())
    # outside every card's range: the best extrapolation among them, never an error
    assert choose_model(8.0, models) == "wide"
    # a model stretched past an octave of its native rate loses to one within its own, even
    # when its card measured it higher there (two pan scenes are not every sensor)
    stretch = info("stretch", 0.4, [[0.252, 38.0], [0.502, 41.0], [1.0, 45.0]])
    assert choose_model(1.0, [stretch, mid]) == "mid"
    assert choose_model(0.5, [stretch, mid]) == "mid"  # both nominal: the card decides
    assert choose_model(1.0, [stretch, near]) == "near"
    # just past every card's last point: the model built for the rate, not one whose card
    # reaches a hair further (3 % slack) beyond its own octave
    top = info("top", 2.4, [[1.5, 46.0], [3.0, 50.0]])
    upper = info("upper", 1.5, [[0.75, 40.0], [3.03, 49.5]])
    assert choose_model(3.11, [top, upper]) == "top"
    assert choose_model(2.5, [top, upper]) == "top"  # both cover it, only "top" is nominal


def test_an_encoder_budget_keeps_only_the_models_whose_analysis_fits():
    from satcodec.codec.models import ModelConfig, ReducedVAE, complexity, encoder_macs
    from satcodec.codec.registry import ModelInfo
    from satcodec.coding import choose_model
    from satcodec.errors import ConfigError

    wide = ModelConfig(hidden=64, latent=96, stages=3)
    narrow = ModelConfig(hidden=64, analysis_hidden=32, latent=96, stages=3)
    for c in (wide, narrow, ModelConfig(bands=4, hidden=48, analysis_hidden=24, latent=128)):
        assert encoder_macs(c) == complexity(ReducedVAE(c))["encoder_mac_per_pixel"]
    rd = [[0.5, 43.0], [1.0, 47.0], [2.0, 52.0]]
    best = ModelInfo("best", Path("b.safetensors"), "0" * 32, wide, {"rd": rd})
    fast = ModelInfo("fast", Path("f.safetensors"), "1" * 32, narrow,
                     {"rd": [[b, q - 0.3] for b, q in rd], "encoder_only": True})  # fmt: skip
    assert choose_model(1.0, [best, fast]) == "best"
    # a fast encoder measured a hair better is still not the default's choice ...
    lucky = ModelInfo("lucky", Path("l.safetensors"), "2" * 32, narrow,
                      {"rd": [[b, q + 0.05] for b, q in rd], "encoder_only": True})  # fmt: skip
    assert choose_model(1.0, [best, lucky]) == "best"
    assert choose_model(1.0, [lucky]) == "lucky"  # ... unless it is the only one
    assert choose_model(1.0, [best, lucky], max_encoder_macs=20000) == "lucky"
    assert choose_model(1.0, [best, fast], max_encoder_macs=4000) == "fast"
    assert choose_model(1.0, [best, fast], max_encoder_macs=10480) == "best"
    with pytest.raises(ConfigError, match="no model's analysis fits 1000 MAC/pixel"):
        choose_model(1.0, [best, fast], max_encoder_macs=1000)
    with pytest.raises(ConfigError, match="must be positive"):
        choose_model(1.0, [best, fast], max_encoder_macs=0)
    # fixed quality (no bpp) under a budget that leaves the default out: the best model at the
    # default's native rate, not the first name in sort order
    home = ModelInfo("home", Path("h.safetensors"), "3" * 32, wide,
                     {"rd": rd, "default": True, "native_bpp": 0.8})  # fmt: skip
    worse = ModelInfo("a-worse", Path("w.safetensors"), "4" * 32, narrow,
                      {"rd": [[b, q - 1.0] for b, q in rd], "encoder_only": True})  # fmt: skip
    assert choose_model(None, [home, worse, fast]) == "home"
    assert choose_model(None, [home, worse, fast], max_encoder_macs=4000) == "fast"


# --- cross-checks with the reference packages (skipped when they are not installed) ----------
RESULTS = Path(__file__).resolve().parent.parent / "bench" / "results"
BD_TOLERANCE_PCT = 1e-6  # BD-rate, percentage points: same interpolant, float rounding only


def _committed_curves() -> list[
    tuple[str, str, list[float], list[float], list[float], list[float]]
]:
    """(image, curve, anchor rates, anchor PSNRs, test rates, test PSNRs) of the committed RD
    runs: every satcodec model, the ladder and JPEG XL against JPEG 2000, 17 real images."""
    from satcodec.evaluation.report import curves

    out = []
    for name in ("rd_pan.csv", "rd_other.csv"):
        for image, per in curves(read_csv(RESULTS / name)).items():
            anchor = per["jpeg2000"]
            for cname, pts in per.items():
                if cname == "jpeg2000" or len(pts) < 4:
                    continue
                out.append(
                    (
                        image,
                        cname,
                        [float(r["bpp"]) for r in anchor],
                        [float(r["psnr"]) for r in anchor],
                        [float(r["bpp"]) for r in pts],
                        [float(r["psnr"]) for r in pts],
                    )
                )
    return out


def _by_psnr(rates: list[float], psnrs: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Points sorted by PSNR, as ``bjontegaard`` needs them (it does not sort)."""
    order = np.argsort(psnrs)
    return np.asarray(rates)[order], np.asarray(psnrs)[order]


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_bd_rate_matches_the_bjontegaard_package(method):
    """Our BD-rate against ``bjontegaard`` (FAU, PyPI) on the committed real RD curves.

    Both interpolate log-rate over PSNR on the common PSNR range (``bjontegaard`` with SciPy's
    PchipInterpolator or np.polyfit of degree 3; log10 there, ln here: the same percentage).
    Agreement: within 1e-6 percentage points on every curve (measured: ~1e-12).
    """
    ref = pytest.importorskip("bjontegaard")
    checked = 0
    for image, cname, ar, ap, tr, tp in _committed_curves():
        if len(set(ap)) < len(ap) or len(set(tp)) < len(tp):
            continue  # duplicated PSNRs: we merge them, bjontegaard's interpolators refuse them
        ours = bd_rate(ar, ap, tr, tp, method)
        ra, pa = _by_psnr(ar, ap)
        rt, pt = _by_psnr(tr, tp)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # it warns on curves that barely overlap
            theirs = ref.bd_rate(
                ra, pa, rt, pt, method, require_matching_points=False, min_overlap=0
            )
        if math.isnan(ours):
            assert math.isnan(theirs), (image, cname)
            continue
        assert ours == pytest.approx(theirs, abs=BD_TOLERANCE_PCT), (image, cname, method)
        checked += 1
    assert checked >= 30  # 34 curves of the 17 images (ladder, models, JPEG XL)


MSSSIM_TOLERANCE = 1e-6  # absolute, on the MS-SSIM value (even image sizes)


@pytest.fixture(scope="module")
def decoded_pairs() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Real pairs: a 352x352 crop of the shipped Pleiades scene and its reconstructions by the
    shipped codec at 0.5 and 2 bpp and, when imagecodecs is installed, by JPEG 2000 at 0.5 bpp."""
    import satcodec

    x = _sample(352).astype(np.uint16)
    pairs = []
    for bpp in (0.5, 2.0):
        y, _ = satcodec.decode(satcodec.encode(x, bpp=bpp))
        pairs.append((f"satcodec {bpp} bpp", x, np.asarray(y).reshape(x.shape)))
    try:
        import imagecodecs  # noqa: F401  (the eval extra)
    except ImportError:
        return pairs
    from satcodec.evaluation.anchors import jpeg2000_at_bpp

    pairs.append(("jpeg2000 0.5 bpp", x, jpeg2000_at_bpp(x, 12, 0.5).decoded))
    return pairs


def test_ms_ssim_matches_pytorch_msssim_on_decoded_images(decoded_pairs):
    """Our MS-SSIM against ``pytorch_msssim.ms_ssim`` (same window, weights, K1, K2, pooling)
    on real original/decoded pairs: within 1e-6 absolute."""
    ref = pytest.importorskip("pytorch_msssim")
    for name, x, y in decoded_pairs:
        xf, yf = x.astype(np.float64), y.astype(np.float64)
        expected = float(
            ref.ms_ssim(
                torch.from_numpy(xf)[None, None], torch.from_numpy(yf)[None, None], data_range=4095
            )
        )
        got = ms_ssim(xf, yf, 12)
        assert 0.9 < got < 1, name
        assert got == pytest.approx(expected, abs=MSSSIM_TOLERANCE), name


def test_every_family_image_has_a_family_per_band_and_decimated_images_stay_out_of_groups() -> None:
    from satcodec.benchmarks.harness import (
        DECIMATED_IMAGES,
        EXCLUDED_IMAGES,
        FAMILIES,
        IMAGE_FAMILIES,
        OTHER_IMAGES,
        PAN_IMAGES,
        band_family,
    )

    # a decimated image is an excluded one taken on its native grid: never in a group's table
    assert set(DECIMATED_IMAGES) <= set(EXCLUDED_IMAGES)
    assert not set(DECIMATED_IMAGES) & set(PAN_IMAGES + OTHER_IMAGES)
    assert all(k >= 2 for k in DECIMATED_IMAGES.values())
    for name in [*PAN_IMAGES, *OTHER_IMAGES, *DECIMATED_IMAGES]:
        assert name in IMAGE_FAMILIES, name
        assert all(f in FAMILIES for f in IMAGE_FAMILIES[name])
    assert band_family("rsgislib_sentinel2-sr-10band_aberystwyth.tif", 8) == "red-edge / SWIR"
    assert band_family("solaris-spacenet6_worldview2-ms4_rotterdam.tif", 3) == "multispectral VNIR"
