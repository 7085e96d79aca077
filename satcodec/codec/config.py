"""Architecture hyper-parameters of the reduced codec and what follows from them alone (halos,
MAC per pixel), without PyTorch: the onnxruntime encoder and decoder run from these and the
weights file, so a board or a ground station need not load PyTorch (~500 MB resident)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

# DOWNSAMPLING: the default latent stride (four stride-2 stages), the bitstream's definition
from satcodec.bitstream import DOWNSAMPLING

# --- receptive radii: the halo rule (the coder, the exports and the profiler all use these) ---
# analysis receptive radius is 2·(1+2+4+8) = 30 px at stride 16 (14 px at stride 8). A model's
# own halo is encode_halo(config); ENCODE_HALO is the largest (stride 16), the bound the
# exported engines' input shapes are sized for
ENCODE_HALO = 2 * DOWNSAMPLING
DECODE_HALO = 2  # latents; synthesis receptive radius ≈ 1 + ½ + ¼ + ⅛ latents


ACTIVATIONS = ("sgdn", "gdn", "relu")  # what layers.activation builds


@dataclass(frozen=True)
class ModelConfig:
    """Architecture hyper-parameters; stored in every weights file."""

    bands: int = 1
    hidden: int = 64  # N
    # N of the analysis (board side) alone; 0 = ``hidden``. A narrower analysis in front of the
    # same synthesis is the fast encoder of `satcodec tune-encoder` (bench/results/fast_encoder.md)
    analysis_hidden: int = 0
    # activation of the analysis alone; "" = ``activation``. "relu" in front of a GDN synthesis
    # is the ReLU fast encoder: no division on board, every layer in onnxruntime's NCHWc
    # layout and int8 end to end (bench/results/analysis_ops.md, fast_encoder.md)
    analysis_activation: str = ""
    latent: int = 192  # M
    activation: str = "sgdn"
    # satellite DN normalised by the sensor peak have a std of ~0.02-0.07; a fixed gain puts
    # the latents on the quantiser's scale from the first step instead of after thousands
    input_gain: float = 16.0
    # stride-2 stages: 4 gives the stride-16 latents bitstream v1 codes; 3 (stride 8) is the
    # experiment of bench/latent_stride.py (more latents per pixel, a higher PSNR ceiling)
    stages: int = 4
    # ground-side refinement after the synthesis (0 = none): channels and 3x3 layers of
    # a layers.RefinementStage; used by the joint (denoising) models, never on board
    refine_channels: int = 0
    refine_layers: int = 0
    # ground-side denoising stage for one instrument (0 = none): a layers.SensorDenoisingStage
    # of these channels and layers, with the instrument's noise variance a + b·x in x/peak units
    denoise_channels: int = 0
    denoise_layers: int = 0
    noise_a: float = 0.0
    noise_b: float = 0.0

    @property
    def encoder_hidden(self) -> int:
        """N of the analysis transform."""
        return self.analysis_hidden or self.hidden

    @property
    def encoder_activation(self) -> str:
        """Activation of the analysis transform."""
        return self.analysis_activation or self.activation

    @property
    def downsampling(self) -> int:
        return 2**self.stages

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        return cls(
            bands=int(d["bands"]),
            hidden=int(d["hidden"]),
            analysis_hidden=int(d.get("analysis_hidden", 0)),
            analysis_activation=str(d.get("analysis_activation", "")),
            latent=int(d["latent"]),
            activation=str(d["activation"]),
            input_gain=float(d.get("input_gain", 1.0)),
            stages=int(d.get("stages", 4)),
            refine_channels=int(d.get("refine_channels", 0)),
            refine_layers=int(d.get("refine_layers", 0)),
            denoise_channels=int(d.get("denoise_channels", 0)),
            denoise_layers=int(d.get("denoise_layers", 0)),
            noise_a=float(d.get("noise_a", 0.0)),
            noise_b=float(d.get("noise_b", 0.0)),
        )

    @property
    def refine_radius(self) -> int:
        """Receptive radius (pixels) of the refinement stage; 0 without one."""
        return 2 * self.refine_layers + 2 if self.refine_channels else 0

    @property
    def denoise_radius(self) -> int:
        """Receptive radius (pixels) of the denoising stage; 0 without one."""
        return 2 * self.denoise_layers + 2 if self.denoise_channels else 0


def encoder_macs(config: ModelConfig) -> float:
    """MAC per pixel of the analysis of ``config``, from the architecture alone (what
    :func:`complexity` counts on a forward pass, without building the model)."""
    na, m, b = config.encoder_hidden, config.latent, config.bands
    total = 0.0
    for i in range(config.stages):
        last = i == config.stages - 1
        area = 4.0 ** (i + 1)  # output pixels per input pixel shrink 4x a stage
        total += 25 * (b if i == 0 else na) * (m if last else na) / area
        if not last and config.encoder_activation != "relu":
            total += na * na / area  # the GDN's 1x1 channel mixing
    return total


def analysis_radius(config: ModelConfig) -> int:
    """Pixels each side that one latent of the analysis sees: a 5x5 convolution adds 2 px of
    its own input grid per stage, 2·(1 + 2 + … + 2^(stages-1)) in all (30 at stride 16, 14 at
    stride 8)."""
    return 2 * (2**config.stages - 1)


def encode_halo(config: ModelConfig) -> int:
    """Pixels of context each side of an encoded tile: the analysis radius rounded up to whole
    latents (32 at stride 16, 16 at stride 8). With that much context a tile's latents are the
    whole image's (the streams are byte-identical to a wider halo: tested); a wider halo only
    adds analysis work, 27 % on an inner 512² tile at stride 8 with the former fixed 32."""
    s = config.downsampling
    return math.ceil(analysis_radius(config) / s) * s


def decode_halo(config: ModelConfig) -> int:
    """Latents of context each side of a decoded tile: the synthesis's, plus the receptive
    radii of the refinement and denoising stages (ground-side, joint models) rounded up to
    whole latents."""
    extra = config.refine_radius + config.denoise_radius
    return DECODE_HALO + math.ceil(extra / config.downsampling)


__all__ = [
    "DECODE_HALO",
    "DOWNSAMPLING",
    "ACTIVATIONS",
    "ENCODE_HALO",
    "ModelConfig",
    "analysis_radius",
    "encode_halo",
    "decode_halo",
    "encoder_macs",
]
