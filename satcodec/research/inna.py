"""INNA, the inertial Newton algorithm of Castera, Bolte, Févotte and Pauwels (JMLR 22(134), 2021).

INNA discretises the dynamical inertial Newton system

    θ'' + α θ' + β ∇²J(θ) θ' + ∇J(θ) = 0

without ever forming a Hessian, through its first-order "phase space" form in (θ, ψ). The
explicit Euler step of the paper's eq. (12), with v_k a (mini-batch) gradient at θ_k, is

    θ_{k+1} = θ_k + γ_k [ (1/β − α) θ_k − ψ_k / β − β v_k ]
    ψ_{k+1} = ψ_k + γ_k [ (1/β − α) θ_k − ψ_k / β ]

both computed from the old values (θ_k, ψ_k). It costs one extra buffer (ψ) per parameter,
like SGD with momentum.

Step-size stability. Without a gradient the (θ, ψ) map has the eigenvalues 1 and 1 − γα (the
ψ/β terms cancel in θ − ψ), so the explicit scheme needs γ < 2/α whatever the loss. On a
quadratic direction of curvature h the continuous modes solve λ² + (α + βh)λ + h = 0, and the
Jury conditions on the step's characteristic polynomial give the exact bound: the step is
stable iff

    γh < α + βh   and   γ²h − 2γ(α + βh) + 4 > 0,

which is γ < 2/α as h → 0, γ < (α + βh)/h for the underdamped (oscillating) modes and about
γ < 2/(α + βh) for stiff overdamped ones. It is *not* γ/β < 2: β enters only through βh.

Loss scale. (α, β) are not scale-free: multiplying the loss by s is the same, up to the time
change t ↦ t√s, as keeping the loss and using (α/√s, β√s) with the step γ√s. A loss that is a
mean over very many terms (tiny gradients: plain SGD then needs γ ≫ 1) therefore needs a small α
(so that the bound 2/α allows a large γ) and a large β; the paper's defaults assume a loss of
the usual O(1) scale. With the defaults (0.5, 0.1) the largest stable step is 4 and the gradient
enters with γβ < 0.4.

α is a viscous damping (friction on the velocity), β a Newtonian (geometric) damping that
damps oscillations along directions of high curvature. The paper's defaults are
(α, β) = (0.5, 0.1); its theory needs Σγ_k = ∞ and γ_k = o(1/log k), hence γ_k = γ₀/(k+1)^p
with p ≤ 1 (it used p = 1/2 and reported p = 1/4 doing well).

This module is research code: it imports torch, :mod:`satcodec.errors` and the shared
trainer's public hook (:func:`satcodec.train.register_optimizer`, called below at import so that
``TrainConfig(optimizer="inna")`` works), never the codec. The package also advertises it as the
entry point ``inna`` of the group ``satcodec.optimizers`` (pyproject.toml), which the trainer loads
when asked for ``"inna"`` before this module was imported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from satcodec.errors import ConfigError
from satcodec.train.optimizers import register_optimizer

PSI_INITS = ("paper", "equilibrium")


class INNA(torch.optim.Optimizer):
    """Inertial Newton algorithm (INNA) as a ``torch.optim`` optimizer.

    Args:
        params: parameters or parameter groups; every option below may be set per group.
        lr: initial step size γ₀ (> 0). The step actually used at step k is
            ``lr / (k_decay + 1) ** decay_power`` (see ``decay_power``); any schedule that
            rewrites ``group["lr"]`` (the shared trainer's schedules do) multiplies it.
        alpha: α ≥ 0, viscous damping. Default 0.5 (the paper's default).
        beta: β > 0, Newtonian damping. Default 0.1 (the paper's default). The explicit
            scheme needs γ_k < 2/α, and on curvature h also γ_k h < α + βh and
            γ_k²h − 2γ_k(α + βh) + 4 > 0: see the module docstring, which also explains why
            (α, β) depend on the loss scale.
        weight_decay: λ ≥ 0, with the official code's semantics: θ_{k+1} gets the extra term
            −γ_k λ θ_k (the decay is *not* multiplied by β, and ψ does not see it), i.e.
            θ_{k+1} = θ_k + γ_k [(1/β − α)θ_k − ψ_k/β − β v_k − λθ_k]. (Adding λθ to the
            gradient instead would decay by βλ.) Default 0.
        psi_init: how ψ₀ is set, on each parameter's first step:
            ``"paper"`` (default): ψ₀ = (1 − αβ)θ₀ − (β² − β)v₀, with v₀ the first gradient,
            i.e. the initial velocity θ'(0) = −∇J(θ₀) of the paper (so the first step is
            θ₁ = θ₀ − γ₀(v₀ + λθ₀), a plain gradient step on J + λ‖θ‖²/2);
            ``"equilibrium"``: ψ₀ = (1 − αβ)θ₀, the official PyTorch code's choice (zero
            initial velocity: the first step is θ₁ = θ₀ − γ₀ β v₀).
        decay_power: p ≥ 0 of the built-in step-size decay γ_k = γ₀/(k+1)^p. Default 0 (no
            built-in decay). Use either this or the shared trainer's ``inverse_power``
            schedule, not both: they multiply.
        steps_per_epoch: when set (≥ 1), the built-in decay counts epochs,
            k = step // steps_per_epoch; when None (default), it counts steps.

    State per parameter: ``psi`` (a tensor shaped like the parameter) and ``step`` (an int,
    the number of updates applied). ``state_dict``/``load_state_dict`` round-trip both,
    including across devices (ψ follows the parameter's device and dtype on load).
    Sparse gradients are not supported.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 0.1,
        alpha: float = 0.5,
        beta: float = 0.1,
        weight_decay: float = 0.0,
        psi_init: str = "paper",
        decay_power: float = 0.0,
        steps_per_epoch: int | None = None,
    ) -> None:
        _check(lr, alpha, beta, weight_decay, psi_init, decay_power, steps_per_epoch)
        defaults = dict(
            lr=lr,
            alpha=alpha,
            beta=beta,
            weight_decay=weight_decay,
            psi_init=psi_init,
            decay_power=decay_power,
            steps_per_epoch=steps_per_epoch,
        )
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        g = self.param_groups[-1]
        _check(
            g["lr"],
            g["alpha"],
            g["beta"],
            g["weight_decay"],
            g["psi_init"],
            g["decay_power"],
            g["steps_per_epoch"],
        )

    def step_size(self, group: dict[str, Any], step: int) -> float:
        """γ for the update that follows ``step`` previous updates in ``group``."""
        p = group["decay_power"]
        if not p:
            return float(group["lr"])
        spe = group["steps_per_epoch"]
        k = step // spe if spe else step
        return float(group["lr"]) / (k + 1) ** p

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            alpha, beta, wd = group["alpha"], group["beta"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if g.is_sparse:
                    raise ConfigError("INNA does not support sparse gradients")
                state = self.state[p]
                if "psi" not in state:
                    psi = p.detach().mul(1.0 - alpha * beta)
                    if group["psi_init"] == "paper":
                        psi.add_(g, alpha=-(beta * beta - beta))
                    state["psi"] = psi
                    state["step"] = 0
                psi = state["psi"]
                gamma = self.step_size(group, state["step"])
                # phase = (1/β − α)θ − ψ/β, from the old θ and ψ
                phase = p.mul(1.0 / beta - alpha).sub_(psi, alpha=1.0 / beta)
                psi.add_(phase, alpha=gamma)
                if wd:  # official semantics: −γλθ_k on θ only, not scaled by β
                    phase.sub_(p, alpha=wd)
                p.add_(phase, alpha=gamma).add_(g, alpha=-gamma * beta)
                state["step"] += 1
        return loss


def _check(
    lr: float,
    alpha: float,
    beta: float,
    weight_decay: float,
    psi_init: str,
    decay_power: float,
    steps_per_epoch: int | None,
) -> None:
    if not lr >= 0.0:
        raise ConfigError(f"INNA: lr must be >= 0, got {lr}")
    if not alpha >= 0.0:
        raise ConfigError(f"INNA: alpha must be >= 0, got {alpha}")
    if not beta > 0.0:
        raise ConfigError(f"INNA: beta must be > 0, got {beta}")
    if not weight_decay >= 0.0:
        raise ConfigError(f"INNA: weight_decay must be >= 0, got {weight_decay}")
    if psi_init not in PSI_INITS:
        raise ConfigError(f"INNA: psi_init must be one of {PSI_INITS}, got {psi_init!r}")
    if not decay_power >= 0.0:
        raise ConfigError(f"INNA: decay_power must be >= 0, got {decay_power}")
    if steps_per_epoch is not None and (
        int(steps_per_epoch) != steps_per_epoch or steps_per_epoch < 1
    ):
        raise ConfigError(
            f"INNA: steps_per_epoch must be None or an int >= 1, got {steps_per_epoch}"
        )


register_optimizer("inna", INNA)


# --- the paper's 2-D toy problem (Section 2, Figure 1) ------------------------------------
TOY_START = (-1.0, 1.5)
TOY_MINIMUM = (1.0, 1.0)


def toy_objective(theta: torch.Tensor) -> torch.Tensor:
    """J(θ₁, θ₂) = 100(θ₂ − |θ₁|)² + |1 − θ₁|: a V-shaped valley, minimum 0 at (1, 1)."""
    return 100.0 * (theta[..., 1] - theta[..., 0].abs()) ** 2 + (1.0 - theta[..., 0]).abs()


def toy_subgradient(theta: torch.Tensor) -> torch.Tensor:
    """An element of the Clarke subdifferential of :func:`toy_objective` (sign(0) = 0)."""
    t1, t2 = theta[0], theta[1]
    d = t2 - t1.abs()
    return torch.stack([-200.0 * d * torch.sign(t1) - torch.sign(1.0 - t1), 200.0 * d])


def toy_trajectory(
    alpha: float,
    beta: float,
    lr: float = 1e-3,
    steps: int = 20_000,
    psi_init: str = "paper",
    start: tuple[float, float] = TOY_START,
) -> torch.Tensor:
    """Iterates θ_0..θ_steps (float64, shape (steps+1, 2)) of :class:`INNA` on the toy J.

    A constant small step (default 1e-3, so ``steps`` steps cover time ``steps·lr`` of the
    continuous dynamics) follows the ODE closely, as in the paper's Figure 1.
    """
    theta = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    opt = INNA([theta], lr=lr, alpha=alpha, beta=beta, psi_init=psi_init)
    out = torch.empty(steps + 1, 2, dtype=torch.float64)
    out[0] = theta.detach()
    for k in range(steps):
        theta.grad = toy_subgradient(theta.detach())
        opt.step()
        out[k + 1] = theta.detach()
    return out
