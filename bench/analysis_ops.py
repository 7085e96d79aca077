"""What the fast analysis's GDNs cost in onnxruntime, and what rewriting them would buy.

onnxruntime runs the convolutions in its blocked NCHWc layout, but not Abs or Div: around
every GDN it reorders the tensors out of that layout and back (25 % of the fast analysis in
the onnxruntime profile of bench/results/throughput.md). This times, on one thread, the
shipped fast analysis (`fast-s8-l1e-3`) beside variants of the same convolutions:

- ``gdn``: as shipped, y = x / (β + γ|x|) (Abs, 1x1 Conv, Div);
- ``gdn, abs as 2 relu(x) - x``: the same function with the Abs written as a ReLU (NCHWc)
  and a second 1x1 convolution, so only the Div leaves the layout;
- ``gdn, x * reciprocal``: the Div written as Reciprocal + Mul;
- ``relu``: the GDNs replaced by ReLU (another function: trained, it is the analysis of the
  shipped ``fast-relu-*`` models; here with the GDN model's convolution weights, which does
  not change its speed).

One 544² input (a 512² tile and its 16 px halo at stride 8), the exports of the legacy
exporter at opset 17, all sessions built alike, runs interleaved; medians.

    python bench/analysis_ops.py [--repeats 15]

Writes bench/results/analysis_ops.md.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from satcodec.benchmarks.harness import RESULTS  # noqa: E402
from satcodec.codec.layers import GDN  # noqa: E402
from satcodec.codec.registry import load_weights, torch_module  # noqa: E402

MODEL = "fast-s8-l1e-3"


def _gamma_beta(gdn: GDN) -> tuple[torch.Tensor, torch.Tensor]:
    """The GDN's γ as a 1x1 convolution weight, and β."""
    return gdn.gamma().view(gdn.channels, gdn.channels, 1, 1), gdn.beta()


class GDNAbsAsRelu(nn.Module):
    """The simplified GDN with |x| = 2 relu(x) - x: β + γ|x| = conv(relu(x), 2γ, β) + conv(x, -γ)."""

    def __init__(self, gdn: GDN) -> None:
        super().__init__()
        self.gdn = gdn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gamma, beta = _gamma_beta(self.gdn)
        return x / (F.conv2d(torch.relu(x), 2 * gamma, beta) + F.conv2d(x, -gamma))


class GDNReciprocal(nn.Module):
    """The simplified GDN with the division as a reciprocal and a product."""

    def __init__(self, gdn: GDN) -> None:
        super().__init__()
        self.gdn = gdn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gamma, beta = _gamma_beta(self.gdn)
        return x * torch.reciprocal(F.conv2d(torch.abs(x), gamma, beta))


VARIANTS = {
    "gdn": lambda g: g,
    "gdn, abs as 2 relu(x) - x": GDNAbsAsRelu,
    "gdn, x * reciprocal": GDNReciprocal,
    "relu": lambda g: nn.ReLU(),
}


def variant(analysis: nn.Sequential, name: str) -> nn.Sequential:
    out = copy.deepcopy(analysis)
    for i, layer in enumerate(out):
        if isinstance(layer, GDN):
            out[i] = VARIANTS[name](layer)
    return out.eval()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--out", default=str(RESULTS / "analysis_ops.md"))
    a = ap.parse_args()
    import onnxruntime as ort

    torch.set_num_threads(1)
    analysis = torch_module(load_weights(MODEL)).analysis_transform.eval()
    x = (np.random.default_rng(0).standard_normal((1, 1, 544, 544)) * 0.05).astype(np.float32)
    sessions, outputs = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in VARIANTS:
            path = Path(tmp) / f"{len(sessions)}.onnx"
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    variant(analysis, name), (torch.from_numpy(x),), str(path), dynamo=False,
                    opset_version=17, input_names=["x"], output_names=["y"],
                )  # fmt: skip
            so = ort.SessionOptions()
            so.intra_op_num_threads = so.inter_op_num_threads = 1
            so.log_severity_level = 3
            sessions[name] = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            outputs[name] = sessions[name].run(None, {"x": x})[0]
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(a.repeats):
        for name, s in sessions.items():
            t = time.perf_counter()
            s.run(None, {"x": x})
            times[name].append(time.perf_counter() - t)
    ref = outputs["gdn"]
    base = statistics.median(times["gdn"])
    lines = [
        "# The fast analysis's GDNs in onnxruntime: cost and rewrites",
        "",
        f"Command: `python bench/analysis_ops.py --repeats {a.repeats}` — "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, onnxruntime {ort.__version__}, "
        f"one thread, {os.cpu_count()} CPUs (shared machine: compare ratios). Model `{MODEL}` "
        "(analysis N=32, 3 stages, 3320 MAC/px); one 544² input; medians of interleaved runs.",
        "",
        "| analysis | same function | max rel. difference | ms | MPix/s (512² tile) | x shipped |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, ts in times.items():
        med = statistics.median(ts)
        same = name != "relu"
        err = float(np.abs(outputs[name] - ref).max() / np.abs(ref).max()) if same else None
        lines.append(
            f"| {name} | {'yes' if same else 'no (trained apart: fast-relu-*)'} | "
            f"{'—' if err is None else f'{err:.1e}'} | {1e3 * med:.1f} | "
            f"{512 * 512 / med / 1e6:.2f} | {base / med:.2f} |"
        )
    relu = base / statistics.median(times["relu"])
    rewrite = max(base / statistics.median(times[k]) for k in VARIANTS if k not in ("gdn", "relu"))
    verdict = (
        f"does not help (best {rewrite:.2f}x: the Div, or the Reciprocal, still leaves the "
        "layout, and an extra convolution costs what a saved reorder did)"
        if rewrite < 1.05
        else f"buys up to {rewrite:.2f}x"
    )
    lines += [
        "",
        f"Reading: writing the same GDN with NCHWc-friendly pieces {verdict}. Dropping the "
        "divisive normalisation removes the reorders: a "
        f"ReLU analysis of the same size runs {relu:.2f}x faster here. It is another function: "
        "trained with `satcodec tune-encoder --analysis-activation relu` (distilled onto the "
        "full model's latents, then on its rate–distortion loss), it is the analysis of the "
        "shipped `fast-relu-s8-*` models; what it costs in rate is measured in "
        "bench/results/fast_encoder.md.",
    ]
    text = "\n".join(lines) + "\n"
    Path(a.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
