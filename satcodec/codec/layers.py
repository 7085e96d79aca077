"""Building blocks of the reduced-complexity transforms: GDN variants and sub-pixel upsampling,
and the ground-side stages of joint (denoising) models."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _NonNegative(nn.Module):
    """Reparameterise a non-negative parameter as p = max(v, bound)^2 - pedestal (Ballé 2018).

    Keeps β and γ of GDN positive without clipping gradients to zero at the boundary.
    """

    pedestal = 2.0**-18

    def __init__(self, init: torch.Tensor, minimum: float = 0.0) -> None:
        super().__init__()
        self.bound = (minimum + self.pedestal) ** 0.5
        self.value = nn.Parameter(torch.sqrt(torch.clamp(init + self.pedestal, min=self.pedestal)))

    def forward(self) -> torch.Tensor:
        return torch.clamp(self.value, min=self.bound) ** 2 - self.pedestal


class GDN(nn.Module):
    """Generalised divisive normalisation (Ballé et al. 2016) and its variants.

    ``simplified=True`` is the form of Johnston et al. (2019): y = x / (β + Σ γ|x|), no square,
    no square root; it is cheaper on board and trains as well (see bench/activation_choice).
    ``inverse=True`` multiplies instead of dividing (IGDN, used in the synthesis).
    """

    def __init__(self, channels: int, inverse: bool = False, simplified: bool = True) -> None:
        super().__init__()
        self.channels = channels
        self.inverse = inverse
        self.simplified = simplified
        self.beta = _NonNegative(torch.ones(channels), minimum=1e-6)
        self.gamma = _NonNegative(0.1 * torch.eye(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gamma = self.gamma().view(self.channels, self.channels, 1, 1)
        beta = self.beta()
        if self.simplified:
            norm = F.conv2d(torch.abs(x), gamma, beta)
        else:
            norm = torch.sqrt(F.conv2d(x * x, gamma, beta))
        return x * norm if self.inverse else x / norm


def activation(kind: str, channels: int, inverse: bool) -> nn.Module:
    """Return the activation named ``kind`` ("sgdn", "gdn" or "relu")."""
    if kind == "sgdn":
        return GDN(channels, inverse=inverse, simplified=True)
    if kind == "gdn":
        return GDN(channels, inverse=inverse, simplified=False)
    if kind == "relu":
        return nn.ReLU()
    raise ValueError(f"unknown activation {kind!r} (expected sgdn, gdn or relu)")


def conv_down(in_ch: int, out_ch: int, kernel: int = 5) -> nn.Conv2d:
    """Stride-2 convolution with 'same'-style padding (halves height and width)."""
    return nn.Conv2d(in_ch, out_ch, kernel, stride=2, padding=kernel // 2)


class SubPixelUp(nn.Module):
    """Upsample by 2 with a convolution to 4x channels then PixelShuffle.

    Chosen over ConvTranspose2d because int8 runtimes (onnxruntime QDQ) accelerate plain
    convolutions but not transposed ones; a 3x3 sub-pixel conv covers the support of a 5x5
    stride-2 transposed conv.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch * 4, kernel, padding=kernel // 2)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x))


class RefinementStage(nn.Module):
    """Ground-side residual refinement after the synthesis: ``x + f(x)``.

    ``f`` is a compact CNN at half resolution (2x2 pixel unshuffle, ``layers`` 3x3
    convolutions with ReLU, unshuffle back), the shape of the ground denoiser. Why: the
    synthesis of a joint (denoising) codec has the decoder's ~15k MAC/px to both invert the
    transform and remove noise; the ground has no board limit, and this stage gives the joint
    decoder the compute the sequential chain spends on its ground denoiser (measured gains
    and non-gains: bench/results/joint_refinement.md). The last layer starts at zero, so a
    fresh stage is exactly the identity.
    """

    def __init__(self, channels: int, layers: int) -> None:
        super().__init__()
        if channels < 1 or layers < 2:
            raise ValueError(
                f"refinement needs channels >= 1 and layers >= 2, got {channels}, {layers}"
            )
        self.layers = layers
        convs: list[nn.Module] = [nn.Conv2d(4, channels, 3, padding=1), nn.ReLU()]
        for _ in range(layers - 2):
            convs += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU()]
        convs.append(nn.Conv2d(channels, 4, 3, padding=1))
        self.body = nn.Sequential(*convs)
        with torch.no_grad():
            for m in convs[:-1]:
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                    m.bias.zero_()
            convs[-1].weight.zero_()
            convs[-1].bias.zero_()

    @property
    def radius(self) -> int:
        """Receptive radius in pixels (each half-resolution 3x3 conv adds 2 px)."""
        return 2 * self.layers + 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the synthesis output is a multiple of the latent stride high and wide, so even
        return x + F.pixel_shuffle(self.body(F.pixel_unshuffle(x, 2)), 2)


# fixed input scalings of the noise-conditioned denoiser (x and σ normalised by the sensor peak)
DENOISER_INPUT_GAIN = 64.0  # sensor noise (σ ~ 1e-3..1e-2 of the peak) -> O(0.1..1)
DENOISER_SIGMA_GAIN = 100.0  # σ/peak ~ 1e-3..1e-2 -> 0.1..1
DENOISER_INPUT_OFFSET = 0.2


class NoiseConditionedDenoiser(nn.Module):
    """FFDNet-style residual CNN (Zhang et al. 2018) conditioned on a per-pixel noise σ map.

    The image and σ (both x/peak, (N, 1, H, W), H and W even) are folded 2x2 into 4 channels
    each, processed by ``layers`` 3x3 convolutions with ReLU at half resolution and unfolded;
    the network predicts the noise, which is subtracted. The ground denoiser
    (:mod:`satcodec.ground_segment.denoiser`) and the denoising stage of joint models
    (:class:`SensorDenoisingStage`) are this network, so one's weights initialise the other.
    """

    def __init__(self, channels: int = 48, layers: int = 8) -> None:
        super().__init__()
        if channels < 1 or layers < 2:
            raise ValueError(
                f"the denoiser needs channels >= 1 and layers >= 2, got {channels}, {layers}"
            )
        self.config = {"channels": channels, "layers": layers}
        convs: list[nn.Module] = [nn.Conv2d(8, channels, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(layers - 2):
            convs += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True)]
        convs.append(nn.Conv2d(channels, 4, 3, padding=1))
        self.body = nn.Sequential(*convs)
        with torch.no_grad():
            for m in convs[:-1]:  # He init: without it the deep ReLU stack barely trains
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                    m.bias.zero_()
            convs[-1].weight.mul_(0.1)  # start near the identity: predicted noise ~0
            convs[-1].bias.zero_()

    @property
    def halo(self) -> int:
        """Receptive radius in pixels (each half-resolution 3x3 conv adds 2 px)."""
        return 2 * self.config["layers"] + 2

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        inp = torch.cat(
            [
                F.pixel_unshuffle((x - DENOISER_INPUT_OFFSET) * DENOISER_INPUT_GAIN, 2),
                F.pixel_unshuffle(sigma * DENOISER_SIGMA_GAIN, 2),
            ],
            1,
        )
        return x - F.pixel_shuffle(self.body(inp), 2) / DENOISER_INPUT_GAIN


class SensorDenoisingStage(NoiseConditionedDenoiser):
    """The denoiser with one instrument's noise built in: σ² = a + b·max(x, 0) (x/peak units).

    The ground-side last stage of a joint model trained for that instrument: it runs on the
    reconstruction at its absolute level (band offset added), as the sequential chain's ground
    denoiser does on the decoded image, and its weights start from that denoiser's.
    """

    def __init__(self, channels: int, layers: int, noise_a: float, noise_b: float) -> None:
        super().__init__(channels, layers)
        if not (noise_a >= 0 and noise_b >= 0 and noise_a + noise_b > 0):
            raise ValueError(f"sensor noise needs a, b >= 0, not both 0; got {noise_a}, {noise_b}")
        self.noise_a, self.noise_b = float(noise_a), float(noise_b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        sigma = torch.sqrt(self.noise_a + self.noise_b * torch.clamp(x, min=0.0))
        return super().forward(x, sigma)
