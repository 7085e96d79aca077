"""Neural content-aware collaborative filtering (NCACF), Magron & Févotte, DMKD 36(5), 2022.

The probability that user u likes item i is ``p_ui = ψ(w_u, h_i)``:

- ψ **linear**: ``σ(w_u · h_i)`` (inner product, then a sigmoid as in the official code);
- ψ **deep**: an MLP over ``w_u ⊙ h_i`` (``psi_input="product"``) or over the concatenation
  ``[w_u; h_i]`` (``psi_input="concat"``), with ``psi_layers`` = 0..5 ReLU layers whose widths
  halve down to 8 as in the official code (``2^(L+1)·2, …, 16, 8``: 3 layers are 32 → 16 → 8),
  a bias-free linear output and a sigmoid. The output weights are initialised as the official
  code does: all 1 for the product input of a relaxed (or content-free) model, so that 0 layers
  is exactly the inner product; otherwise PyTorch's default. Hidden layers: PyTorch's default
  (``psi_init="default"``); the official N(0, 0.01²) (``psi_init="official"``) leaves a ψ of
  2 or more layers on its constant-output plateau for the first epochs (measured here: chance-
  level validation NDCG after 3 epochs from the pre-trained factors), too slow for our budget.

The item factor is tied to the item's content ``x_i`` by an extractor φ (an MLP):

- φ **none**: ``h_i`` is a free factor with an L2 penalty (plain matrix factorisation, no
  cold start possible);
- φ **deep**, **relaxed**: ``h_i`` is free but penalised by ``λ_H mean((h_i − φ(x_i))²)``;
  an item without training interactions (cold) uses ``h_i = φ(x_i)``;
- φ **deep**, **strict**: ``h_i = φ(x_i)`` for every item.

Loss (the paper's weighted implicit-feedback loss, on all users × a batch of items):
``mean(c_ui (r_ui − p_ui)²) + λ_W mean(w²) + λ_H mean((h − φ(x))²)`` with r binarised and the
confidence ``c = 1 + α log(1 + r/ε)`` (α = 2, ε = 1e-6: 1 for unobserved pairs and ≈ 28.6 for
observed ones; ``confidence="counts"`` uses the raw play counts for r inside the log instead).

This module imports torch, numpy and :mod:`satcodec.errors` only, never the codec.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from satcodec.errors import ConfigError

PSI = ("linear", "deep")
PSI_INPUTS = ("product", "concat")
PHI = ("none", "deep")
VARIANTS = ("relaxed", "strict")
CONFIDENCE = ("binary", "counts")


@dataclass
class NCACFConfig:
    n_factors: int = 64
    psi: str = "linear"
    psi_layers: int = 2  # deep ψ: hidden ReLU layers (0..5), official widths (see psi_widths)
    psi_input: str = "product"  # deep ψ input: w ⊙ h ("product") or [w; h] ("concat")
    psi_hidden: tuple[int, ...] | None = None  # explicit hidden widths (overrides psi_layers)
    psi_init: str = "default"  # hidden layers: PyTorch default, or "official" N(0, 0.01²)
    phi: str = "deep"
    phi_hidden: tuple[int, ...] = (256, 256)
    variant: str = "relaxed"
    lambda_w: float = 0.1
    lambda_h: float = 0.1
    alpha: float = 2.0
    epsilon: float = 1e-6
    confidence: str = "binary"
    init_std: float = 0.1  # factor init N(0, std²); the official code uses 0.01 (not compared)

    def validate(self) -> NCACFConfig:
        for name, value, allowed in (
            ("psi", self.psi, PSI),
            ("phi", self.phi, PHI),
            ("variant", self.variant, VARIANTS),
            ("confidence", self.confidence, CONFIDENCE),
            ("psi_input", self.psi_input, PSI_INPUTS),
            ("psi_init", self.psi_init, ("default", "official")),
        ):
            if value not in allowed:
                raise ConfigError(f"{name}={value!r}: choose one of {', '.join(allowed)}")
        if self.phi == "none" and self.variant == "strict":
            raise ConfigError("the strict variant (h = φ(x)) needs a content extractor φ")
        if self.n_factors < 1 or self.psi_layers < 0:
            raise ConfigError("n_factors must be ≥ 1 and psi_layers ≥ 0")
        return self

    @property
    def psi_widths(self) -> tuple[int, ...]:
        """Hidden widths of the deep ψ: the official ``2^(L+2), 2^(L+1), …, 8`` for L layers."""
        if self.psi_hidden is not None:
            return tuple(self.psi_hidden)
        return tuple(2 ** (self.psi_layers + 2 - q) for q in range(self.psi_layers))

    @property
    def label(self) -> str:
        content = "no content" if self.phi == "none" else f"deep φ ({self.variant})"
        psi = (
            "linear ψ" if self.psi == "linear" else f"deep ψ ({self.psi_layers}, {self.psi_input})"
        )
        return f"{psi}, {content}"

    def to_dict(self) -> dict:
        return asdict(self)


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class DeepInteraction(nn.Module):
    """ψ(w, h) = σ(v · MLP(z)) with z = w ⊙ h or [w; h], for every (user, item) pair.

    The first layer is computed without forming the (users, items, K) tensor: for the product,
    ``A (w_u ⊙ h_i) = (A ⊙ w_u) h_i`` (a batched matrix product); for the concatenation,
    ``A [w; h] = A_w w_u + A_h h_i`` (a broadcast sum). ``hidden`` empty: ``v · z`` directly.
    """

    def __init__(
        self,
        n_factors: int,
        hidden: tuple[int, ...],
        input: str = "product",
        ones_output: bool = False,
        official_hidden_init: bool = False,
    ) -> None:
        super().__init__()
        self.input = input
        self.n_factors = n_factors
        n_in = n_factors * (2 if input == "concat" else 1)
        self.first = nn.Linear(n_in, hidden[0]) if hidden else None
        self.rest = mlp(list(hidden)) if len(hidden) > 1 else nn.Sequential()
        self.out = nn.Linear(hidden[-1] if hidden else n_in, 1, bias=False)
        for layer in [self.first, *self.rest] if official_hidden_init else []:
            if isinstance(layer, nn.Linear):
                nn.init.normal_(layer.weight, 0.0, 0.01)
                nn.init.normal_(layer.bias, 0.0, 0.01)
        if ones_output:
            nn.init.ones_(self.out.weight)

    def logits(self, w: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        k = self.n_factors
        v = self.out.weight[0]
        if self.first is None:
            if self.input == "product":
                return (w * v) @ h.T
            return (w @ v[:k])[:, None] + (h @ v[k:])[None, :]
        # layout (users, width, items) all the way: each layer is a batched matrix product
        a, b = self.first.weight, self.first.bias
        if self.input == "product":
            z = torch.einsum("uk,mk,ik->umi", w, a, h)
        else:
            z = (w @ a[:, :k].T)[:, :, None] + (h @ a[:, k:].T).T[None, :, :]
        z = torch.relu(z + b[None, :, None])
        for layer in self.rest:
            if isinstance(layer, nn.Linear):
                z = torch.einsum("nm,umi->uni", layer.weight, z) + layer.bias[None, :, None]
            else:
                z = layer(z)
        if len(self.rest):
            z = torch.relu(z)
        return torch.einsum("n,uni->ui", v, z)

    def logits_naive(self, w: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Reference implementation on the explicit (users, items, K or 2K) inputs (tests)."""
        if self.input == "product":
            z = w[:, None, :] * h[None, :, :]
        else:
            z = torch.cat(
                [w[:, None, :].expand(-1, len(h), -1), h[None, :, :].expand(len(w), -1, -1)], -1
            )
        if self.first is not None:
            z = torch.relu(self.first(z))
        if len(self.rest):
            z = torch.relu(self.rest(z))
        return self.out(z).squeeze(-1)


class NCACF(nn.Module):
    """User factors, item factors and/or the content extractor φ, and the interaction ψ."""

    def __init__(self, n_users: int, n_items: int, n_content: int, config: NCACFConfig) -> None:
        super().__init__()
        self.config = config.validate()
        k = config.n_factors
        self.user = nn.Embedding(n_users, k)
        nn.init.normal_(self.user.weight, 0.0, config.init_std)
        self.item: nn.Embedding | None = None
        if config.phi == "none" or config.variant == "relaxed":
            self.item = nn.Embedding(n_items, k)
            nn.init.normal_(self.item.weight, 0.0, config.init_std)
        self.phi = mlp([n_content, *config.phi_hidden, k]) if config.phi == "deep" else None
        self.psi = (
            DeepInteraction(
                k,
                config.psi_widths,
                config.psi_input,
                ones_output=config.psi_input == "product" and config.variant == "relaxed",
                official_hidden_init=config.psi_init == "official",
            )
            if config.psi == "deep"
            else None
        )
        # items whose free factor was trained (others are scored through φ); set by the trainer
        self.register_buffer("known", torch.ones(n_items, dtype=torch.bool))
        self.n_items = n_items

    @property
    def has_content(self) -> bool:
        return self.phi is not None

    def can_score(self, items: torch.Tensor) -> torch.Tensor:
        """Which items have a factor: trained ones, or any item when φ exists."""
        if self.phi is not None:
            return torch.ones(len(items), dtype=torch.bool)
        return self._known(items)

    def _known(self, items: torch.Tensor) -> torch.Tensor:
        inside = items < self.n_items
        return inside & self.known[items.clamp(max=self.n_items - 1)]

    def item_factors(self, items: torch.Tensor, x: torch.Tensor | None) -> torch.Tensor:
        """h for ``items`` (indices; ≥ n_items means a new item) with content rows ``x``.

        Strict: φ(x). Relaxed: the trained free factor, or φ(x) for an item that has none
        (cold or new). Without φ an unknown item gets a zero factor (use :meth:`can_score`).
        """
        if self.item is None:
            assert self.phi is not None and x is not None
            return self.phi(x)
        known = self._known(items)
        h = self.item(items.clamp(max=self.n_items - 1)) * known[:, None]
        if self.phi is not None and not bool(known.all()):
            assert x is not None
            unknown = ~known
            h = h.clone()
            h[unknown] = self.phi(x[unknown])
        return h

    def interact(self, w: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Probabilities p (users × items) for user factors ``w`` and item factors ``h``."""
        logits = w @ h.T if self.psi is None else self.psi.logits(w, h)
        return torch.sigmoid(logits)

    def forward(
        self, users: torch.Tensor | None, items: torch.Tensor, x: torch.Tensor | None
    ) -> torch.Tensor:
        w = self.user.weight if users is None else self.user(users)
        return self.interact(w, self.item_factors(items, x))


def confidence(r: torch.Tensor, config: NCACFConfig) -> torch.Tensor:
    """c = 1 + α log(1 + r/ε) (r the binarised or raw play count; 1 where r = 0)."""
    return 1.0 + config.alpha * torch.log1p(r / config.epsilon)


def ncacf_loss(
    model: NCACF,
    items: torch.Tensor,
    r_counts: torch.Tensor,
    x: torch.Tensor | None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The paper's loss on all users × ``items`` (``r_counts``: users × items play counts)."""
    cfg = model.config
    binary = (r_counts > 0).to(r_counts.dtype)
    c = confidence(binary if cfg.confidence == "binary" else r_counts, cfg)
    w = model.user.weight
    if model.item is not None:
        h = model.item(items)
    else:
        assert model.phi is not None and x is not None
        h = model.phi(x)
    p = model.interact(w, h)
    fit = (c * (binary - p) ** 2).mean()
    reg_w = cfg.lambda_w * (w**2).mean()
    if model.item is None:
        reg_h = torch.zeros(())
    elif model.phi is None:
        reg_h = cfg.lambda_h * (h**2).mean()
    else:
        assert x is not None
        reg_h = cfg.lambda_h * ((h - model.phi(x)) ** 2).mean()
    loss = fit + reg_w + reg_h
    return loss, {"fit": float(fit.detach()), "reg_h": float(reg_h.detach())}


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def describe(model: NCACF) -> str:
    cfg = model.config
    parts = [f"K={cfg.n_factors}"]
    if model.psi is not None:
        n_in = cfg.n_factors * (2 if cfg.psi_input == "concat" else 1)
        sizes = (n_in, *cfg.psi_widths, 1)
        inp = "w⊙h" if cfg.psi_input == "product" else "[w; h]"
        parts.append(f"ψ MLP over {inp} " + "→".join(str(s) for s in sizes))
    else:
        parts.append("ψ inner product")
    if model.phi is not None:
        first = model.phi[0]
        assert isinstance(first, nn.Linear)
        sizes = (first.in_features, *cfg.phi_hidden, cfg.n_factors)
        parts.append("φ MLP " + "→".join(str(s) for s in sizes) + f" ({cfg.variant})")
    parts.append(f"{parameter_count(model) / 1e6:.2f}M parameters")
    return ", ".join(parts)


def as_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
