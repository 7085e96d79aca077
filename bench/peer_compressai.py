"""Our scale-hyperprior peer against CompressAI's own ``ScaleHyperprior`` (bmshj2018-hyperprior).

``satcodec.evaluation.peer_hyperprior`` re-implements Ballé et al. (2018) so that the bench
needs no extra dependency. This script checks it once against the reference implementation,
CompressAI's ``compressai.models.ScaleHyperprior``, at the same settings (N=128, M=192, one
band), in three ways:

1. architecture: parameters per part (g_a, g_s, h_a, h_s, factorized density) and MACs per
   pixel, counted by the project's one counter on both models;
2. the same weights: ours copied into CompressAI's (convolutions as they are; GDN β and γ and
   the factorized density's matrices, biases and factors through each side's
   reparametrisation), then both run in evaluation mode on the same real image (a crop of the
   shipped Pleiades scene, normalised like the training data): reconstruction, rate of y and
   rate of z are compared;
3. an equal short budget: both trained from those same initial weights on the same crops, same
   loss (bits per pixel + λ·4095²·MSE, the shared trainer's), Adam at 1e-4, then CompressAI's
   real entropy coder (``update()``, ``compress()``) against the likelihood rate both report.

    pip install --no-deps compressai==1.2.8 torch_geometric einops xxhash
    python bench/peer_compressai.py --stub-torchvision [--steps 150]

CompressAI 1.2.8 declares numpy<2, torchvision and torch-geometric: a plain ``pip install
compressai`` here would downgrade numpy and pull a torchvision built for another torch (and,
unpinned, a new CUDA torch with it). Its models and entropy models need none of that: it
imports torchvision and torch_geometric only to fill its transforms registry. Installed without
dependencies as above, ``--stub-torchvision`` gives it an empty ``torchvision.transforms`` (a
CPU-only torch cannot load a CUDA torchvision's compiled operators anyway).
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "satcodec" / "data" / "pleiades_ventoux.tif"
OUT = ROOT / "bench" / "results" / "rd_peer_compressai.md"


def import_compressai(stub_torchvision: bool):
    if stub_torchvision:
        tv = types.ModuleType("torchvision")
        tv.__path__ = []  # a package, so that `import torchvision.transforms` works
        tv.transforms = types.ModuleType("torchvision.transforms")
        sys.modules.setdefault("torchvision", tv)
        sys.modules.setdefault("torchvision.transforms", tv.transforms)
    import compressai
    from compressai.models import ScaleHyperprior

    return compressai, ScaleHyperprior


def build_pair(n: int, m: int, stub: bool):
    """Our peer and CompressAI's, both for one band at N=n, M=m, with ours' weights in both."""
    from satcodec.evaluation.peer_hyperprior import HyperpriorConfig
    from satcodec.evaluation.peer_hyperprior import ScaleHyperprior as Ours

    compressai, Theirs = import_compressai(stub)
    from compressai.entropy_models import EntropyBottleneck
    from compressai.layers import GDN as CaiGDN
    from compressai.models.utils import conv, deconv

    torch.manual_seed(0)
    ours = Ours(HyperpriorConfig(bands=1, hidden=n, latent=m))
    theirs = Theirs(n, m)
    theirs.g_a[0] = conv(1, n)  # CompressAI's model is for RGB: one band here, as ours
    theirs.g_s[-1] = deconv(n, 1)
    # CompressAI's EntropyBottleneck defaults to filters (3, 3, 3, 3); Ballé et al. (2018,
    # appendix 6.1), tensorflow-compression and ours use (3, 3, 3): compared at (3, 3, 3)
    default_eb_params = params(theirs.entropy_bottleneck)
    theirs.entropy_bottleneck = EntropyBottleneck(n, filters=(3, 3, 3))
    theirs.default_eb_params = default_eb_params
    transfer(ours, theirs, CaiGDN)
    return compressai, ours, theirs


def transfer(ours, theirs, cai_gdn) -> None:
    """Copy our weights into CompressAI's model (effective values through each reparametrisation)."""
    from satcodec.codec.layers import GDN as OurGDN

    pairs = [
        (ours.analysis_transform, theirs.g_a),
        (ours.synthesis_transform, theirs.g_s),
        (ours.hyper_analysis, theirs.h_a),
        (ours.hyper_synthesis, theirs.h_s),
    ]
    with torch.no_grad():
        for a, b in pairs:
            la = [
                x
                for x in a.modules()
                if isinstance(x, torch.nn.Conv2d | torch.nn.ConvTranspose2d | OurGDN)
            ]
            lb = [
                x
                for x in b.modules()
                if isinstance(x, torch.nn.Conv2d | torch.nn.ConvTranspose2d | cai_gdn)
            ]
            assert len(la) == len(lb), (len(la), len(lb))
            for x, y in zip(la, lb, strict=True):
                if isinstance(x, OurGDN):
                    y.beta.copy_(y.beta_reparam.init(x.beta()))
                    y.gamma.copy_(y.gamma_reparam.init(x.gamma()))
                else:
                    assert x.weight.shape == y.weight.shape, (x, y)
                    y.weight.copy_(x.weight)
                    y.bias.copy_(x.bias)
        eb_o, eb_t = ours.entropy_bottleneck, theirs.entropy_bottleneck
        for mine, its in (
            (eb_o.matrices, eb_t.matrices),
            (eb_o.biases, eb_t.biases),
            (eb_o.factors, eb_t.factors),
        ):
            assert len(mine) == len(its)
            for p, q in zip(mine, its, strict=True):
                q.copy_(p)


def params(*mods) -> int:
    return sum(p.numel() for mod in mods for p in mod.parameters())


def macs(module, shape) -> int:
    """The project's counter (satcodec.codec.models.count_macs) with CompressAI's GDN counted
    like ours: C per output value for its 1x1 channel mixing."""
    from satcodec.codec.models import count_macs

    for mod in module.modules():
        if mod.__class__.__name__ == "GDN" and not hasattr(mod, "channels"):
            mod.channels = mod.gamma.shape[0]
    return count_macs(module, shape)


def crops(size: int, count: int, seed: int) -> tuple[np.ndarray, float, float]:
    """Random crops of the shipped Pleiades scene, normalised as the trainer does."""
    from satcodec.raster import open_raster

    with open_raster(SAMPLE) as r:
        band = r.read()[0].astype(np.float64)
        peak = float(2**r.meta.bit_depth - 1)
    rng = np.random.default_rng(seed)
    h, w = band.shape
    out = []
    for _ in range(count):
        y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
        c = band[y : y + size, x : x + size]
        out.append((c - np.round(c.mean())) / peak)
    return np.stack(out)[:, None].astype(np.float32), peak, float(band.mean())


def run_ours(model, x: torch.Tensor) -> dict[str, torch.Tensor]:
    model.eval()
    with torch.no_grad():
        out = model(x)
    return {"x_hat": out["x_hat"], "bits_y": out["bits_y"], "bits_z": out["bits_z"]}


def run_theirs(model, x: torch.Tensor, gain: float) -> dict[str, torch.Tensor]:
    model.eval()
    with torch.no_grad():
        out = model(x * gain)  # our model's fixed input gain, outside CompressAI's
    lik = out["likelihoods"]
    return {
        "x_hat": out["x_hat"] / gain,
        "bits_y": -torch.log2(lik["y"]).sum(dim=(1, 2, 3)),
        "bits_z": -torch.log2(lik["z"]).sum(dim=(1, 2, 3)),
    }


def train(model, kind: str, data: np.ndarray, steps: int, batch: int, lmbda: float, gain: float):
    """Plain Adam loop, same batches for both models; CompressAI's quantiles by its aux loss."""
    torch.manual_seed(1)
    main = [p for n, p in model.named_parameters() if not n.endswith("quantiles")]
    opt = torch.optim.Adam(main, lr=1e-4)
    aux = (
        torch.optim.Adam(
            [p for n, p in model.named_parameters() if n.endswith("quantiles")], lr=1e-3
        )
        if kind == "compressai"
        else None
    )
    from satcodec.codec.training import DISTORTION_PEAK

    model.train()
    pixels = data.shape[-1] * data.shape[-2]
    log = []
    for step in range(steps):
        idx = np.arange(step * batch, (step + 1) * batch) % len(data)
        x = torch.from_numpy(data[idx])
        if kind == "ours":
            out = model(x)
            bits, x_hat = out["bits"], out["x_hat"]
        else:
            out = model(x * gain)
            x_hat = out["x_hat"] / gain
            bits = sum(-torch.log2(v).sum(dim=(1, 2, 3)) for v in out["likelihoods"].values())
        bpp = bits.mean() / pixels
        mse = torch.mean((x_hat - x) ** 2)
        loss = bpp + lmbda * DISTORTION_PEAK**2 * mse  # satcodec.codec.training.rd_loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(main, 1.0)
        opt.step()
        if aux is not None:
            aux.zero_grad()
            model.aux_loss().backward()
            aux.step()
        log.append((float(bpp.detach()), float(mse.detach())))
    return log


def psnr_db(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    mse = float(np.mean((a - b) ** 2))
    return 10 * math.log10(peak * peak / mse) if mse > 0 else math.inf


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--hidden", type=int, default=128, help="N")
    ap.add_argument("--latent", type=int, default=192, help="M")
    ap.add_argument("--steps", type=int, default=300, help="equal training budget (0: skip)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--patch", type=int, default=128)
    ap.add_argument("--lmbda", type=float, default=4e-3)
    ap.add_argument("--stub-torchvision", action="store_true")
    ap.add_argument("--out", default=str(OUT))
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.time()
    compressai, ours, theirs = build_pair(a.hidden, a.latent, a.stub_torchvision)
    gain = ours.config.input_gain

    # 1. architecture
    parts = [
        ("g_a (analysis)", ours.analysis_transform, theirs.g_a),
        ("g_s (synthesis)", ours.synthesis_transform, theirs.g_s),
        ("h_a (hyper-analysis)", ours.hyper_analysis, theirs.h_a),
        ("h_s (hyper-synthesis)", ours.hyper_synthesis, theirs.h_s),
        ("factorized density of z", ours.entropy_bottleneck, theirs.entropy_bottleneck),
        ("whole model", ours, theirs),
    ]
    size = 256
    ly = size // 16
    mac_rows = [
        (
            "g_a",
            macs(ours.analysis_transform, (1, 1, size, size)),
            macs(theirs.g_a, (1, 1, size, size)),
        ),
        (
            "h_a",
            macs(ours.hyper_analysis, (1, a.latent, ly, ly)),
            macs(theirs.h_a, (1, a.latent, ly, ly)),
        ),
        (
            "h_s",
            macs(ours.hyper_synthesis, (1, a.hidden, ly // 4, ly // 4)),
            macs(theirs.h_s, (1, a.hidden, ly // 4, ly // 4)),
        ),
        (
            "g_s",
            macs(ours.synthesis_transform, (1, a.latent, ly, ly)),
            macs(theirs.g_s, (1, a.latent, ly, ly)),
        ),
    ]

    # 2. same weights, same real image
    test, peak, _ = crops(256, 1, seed=123)
    x = torch.from_numpy(test)
    o, t = run_ours(ours, x), run_theirs(theirs, x, gain)
    same = {
        "x_hat max |diff| (DN)": float((o["x_hat"] - t["x_hat"]).abs().max()) * peak,
        "bits of y, relative diff": float(abs(o["bits_y"] - t["bits_y"]).max() / t["bits_y"].max()),
        "bits of z, relative diff": float(abs(o["bits_z"] - t["bits_z"]).max() / t["bits_z"].max()),
    }

    # 3. equal short budget from the same weights
    trained = None
    if a.steps:
        data, _, _ = crops(a.patch, a.steps * a.batch, seed=0)
        t1 = time.time()
        log_o = train(ours, "ours", data, a.steps, a.batch, a.lmbda, gain)
        t_o = time.time() - t1
        t1 = time.time()
        log_t = train(theirs, "compressai", data, a.steps, a.batch, a.lmbda, gain)
        t_t = time.time() - t1
        o, t = run_ours(ours, x), run_theirs(theirs, x, gain)
        pix = x.shape[-1] * x.shape[-2]
        ref = test[0, 0].astype(np.float64) * peak
        rec_o = np.clip(np.rint(o["x_hat"][0, 0].numpy() * peak), -peak, peak)
        rec_t = np.clip(np.rint(t["x_hat"][0, 0].numpy() * peak), -peak, peak)
        theirs.update(force=True)
        with torch.no_grad():
            enc = theirs.compress(x * gain)
            # ScaleHyperprior.decompress, without its final clamp to [0, 1] (CompressAI's
            # images are in [0, 1]; ours are centred: (x - mean) / peak, times the gain)
            y_strings, z_strings = enc["strings"]
            z_hat = theirs.entropy_bottleneck.decompress(z_strings, enc["shape"])
            indexes = theirs.gaussian_conditional.build_indexes(theirs.h_s(z_hat))
            y_hat = theirs.gaussian_conditional.decompress(y_strings, indexes, z_hat.dtype)
            dec = theirs.g_s(y_hat)
        real_bits = 8 * sum(len(s[0]) for s in enc["strings"])
        rec_real = np.clip(np.rint(dec[0, 0].numpy() / gain * peak), -peak, peak)
        last = 20
        trained = {
            "ours": (
                float((o["bits_y"] + o["bits_z"])[0]) / pix,
                psnr_db(ref, rec_o, peak),
                np.mean([b for b, _ in log_o[-last:]]),
                t_o,
            ),
            "compressai": (
                float((t["bits_y"] + t["bits_z"])[0]) / pix,
                psnr_db(ref, rec_t, peak),
                np.mean([b for b, _ in log_t[-last:]]),
                t_t,
            ),
            "compressai_real": (real_bits / pix, psnr_db(ref, rec_real, peak)),
        }

    lines = [
        "# Our scale-hyperprior peer against CompressAI's implementation\n",
        f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by "
        f"`python bench/peer_compressai.py {' '.join(sys.argv[1:])}` "
        f"(compressai {compressai.__version__}, torch {torch.__version__}, "
        f"{platform.processor() or platform.machine()}, one thread, {time.time() - t0:.0f} s).\n",
        f"Our `satcodec.evaluation.peer_hyperprior.ScaleHyperprior` against "
        f"`compressai.models.ScaleHyperprior` (bmshj2018-hyperprior), N={a.hidden}, "
        f"M={a.latent}, one band (CompressAI's first and last layers re-made for 1 band).\n",
        "## Result\n",
    ]
    row_head = "| check | ours | CompressAI | agreement |\n|---|---:|---:|---|"
    rows = []
    po, pt = params(ours), params(theirs)
    pt_q = sum(p.numel() for n, p in theirs.named_parameters() if n.endswith("quantiles"))
    rows.append(
        f"| parameters, whole model | {po:,} | {pt:,} | {'equal' if po == pt - pt_q else 'differ'}"
        f" without CompressAI's {pt_q} `quantiles` (its range of z for the coder tables, "
        "trained by its auxiliary loss) |"
    )
    eo = sum(m for _, m, _ in mac_rows[:3]) / size**2
    et = sum(m for _, _, m in mac_rows[:3]) / size**2
    rows.append(
        f"| encoder MAC/px (g_a + h_a + h_s) | {eo / 1e3:.1f}k | {et / 1e3:.1f}k | "
        f"{'equal' if eo == et else 'differ'} |"
    )
    rows.append(
        f"| same weights, same image: reconstruction | | | max diff {same['x_hat max |diff| (DN)']:.2g} DN |"
    )
    rows.append(
        f"| same weights, same image: rate of y / of z | | | relative diff "
        f"{same['bits of y, relative diff']:.1g} / {same['bits of z, relative diff']:.1g} |"
    )
    if trained:
        so, st, sr = trained["ours"], trained["compressai"], trained["compressai_real"]
        rows.append(
            f"| {a.steps} equal steps from the same weights: held-out crop, likelihood bpp / PSNR "
            f"| {so[0]:.3f} / {so[1]:.2f} dB | {st[0]:.3f} / {st[1]:.2f} dB | "
            f"{100 * (so[0] / st[0] - 1):+.1f} % rate, {so[1] - st[1]:+.2f} dB |"
        )
        rows.append(
            f"| same, training bpp (mean of last 20 steps) | {so[2]:.3f} | {st[2]:.3f} | "
            f"{100 * (so[2] / st[2] - 1):+.1f} % |"
        )
        rows.append(
            f"| CompressAI's real bitstream (`compress`) vs its likelihood rate | | "
            f"{sr[0]:.3f} bpp / {sr[1]:.2f} dB | {100 * (sr[0] / st[0] - 1):+.1f} % over the "
            "likelihood (quantised CDF tables, byte rounding); PSNR "
            f"{sr[1] - st[1]:+.2f} dB |"
        )
        rows.append(
            f"| training time, {a.steps} steps of {a.batch} × {a.patch}² | {so[3]:.0f} s | "
            f"{st[3]:.0f} s | |"
        )
    extra = theirs.default_eb_params - params(theirs.entropy_bottleneck)
    rows.append(
        "| factorized density of z: depth | filters (3, 3, 3) | default (3, 3, 3, 3), compared "
        f"at (3, 3, 3) | CompressAI's default adds one layer: {extra:,} more parameters |"
    )
    lines += [row_head, *rows, ""]
    lines += [
        "## Parameters per part\n",
        "| part | ours | CompressAI |",
        "|---|---:|---:|",
        *(f"| {nm} | {params(x1):,} | {params(x2):,} |" for nm, x1, x2 in parts),
        "",
        "## MAC per pixel (256² input, the project's counter on both)\n",
        "| part | ours | CompressAI |",
        "|---|---:|---:|",
        *(f"| {nm} | {m1 / size**2:,.0f} | {m2 / size**2:,.0f} |" for nm, m1, m2 in mac_rows),
        "",
        "## Protocol and caveats\n",
        "- Same weights: our initial weights copied into CompressAI's model; GDN β, γ through "
        "each side's non-negative reparametrisation (ours keeps `max(v, √(min + 2⁻¹⁸))² − 2⁻¹⁸`, "
        "CompressAI's `max(v, √(min + 2⁻³⁶))² − 2⁻³⁶`: same values, a slightly different "
        "parameter near the bound). Our fixed input gain (×16 in, ÷16 out) is applied outside "
        "CompressAI's model. Evaluation mode: y rounded, z rounded (CompressAI around its "
        "medians, 0 at initialisation).",
        "- Equal budget: a plain Adam loop here (lr 1e-4, clipping 1.0, λ = "
        f"{a.lmbda:g} on bpp + λ·4095²·MSE, the shared trainer's loss), {a.steps} steps of {a.batch} random {a.patch}² crops "
        "of the shipped Pleiades scene, the same batches for both; the held-out crop is another "
        "256² crop of that scene. Noise draws differ, so the runs are not bit-identical: the "
        "rows say whether the two implementations train alike, not how good the architecture "
        "is (that is `rd_peer_gpu.md`, 2982 GPU steps of the shared trainer).",
        "- Rates in bits per pixel of one band; PSNR with peak 2^12 − 1.",
        "",
    ]
    Path(a.out).write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
