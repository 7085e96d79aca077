"""INNA against an independent NumPy implementation of the paper's eq. (12), the paper's toy
problem, and its integration with the shared trainer."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

from satcodec.errors import ConfigError
from satcodec.research.inna import INNA, toy_objective, toy_trajectory
from satcodec.train import TrainConfig, Trainer, available_optimizers, build_optimizer
from satcodec.train.schedules import lr_factor


# --- independent reference ----------------------------------------------------------------
def numpy_inna(theta0, grad, steps, lr, alpha, beta, psi_init, wd=0.0, power=0.0, spe=None):
    """Eq. (12) of Castera et al. (2021), written directly from the paper, in float64, with
    weight decay as in the official PyTorch code (camcastera/Indian-for-DeepLearning, inna.py):
    θ ← θ − γ(phase_update + βv + λθ), λθ not multiplied by β and absent from ψ's update."""
    theta = np.array(theta0, dtype=np.float64)
    psi = None
    thetas, psis = [], []
    for k in range(steps):
        v = grad(theta)
        if psi is None:
            psi = (1 - alpha * beta) * theta
            if psi_init == "paper":
                psi = psi - (beta**2 - beta) * v
        kk = k // spe if spe else k
        gamma = lr / (kk + 1) ** power
        # both updates from the old (theta, psi)
        theta, psi = (
            theta + gamma * ((1 / beta - alpha) * theta - psi / beta - beta * v - wd * theta),
            psi + gamma * ((1 / beta - alpha) * theta - psi / beta),
        )
        thetas.append(theta.copy())
        psis.append(psi.copy())
    return np.array(thetas), np.array(psis)


def _quadratic(seed: int = 0):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((5, 5))
    a = q @ q.T / 5 + 0.5 * np.eye(5)
    b = rng.standard_normal(5)
    m_star = rng.standard_normal((2, 3))
    x0 = rng.standard_normal(5)
    m0 = rng.standard_normal((2, 3))
    return a, b, m_star, x0, m0


def _summary(command: str, name: str, res: dict) -> dict:
    """A benchmark summary holding one task's results, as run() writes it."""
    from satcodec.benchmarks import inna_bench as ib

    return {
        "command": command,
        "quick": False,
        "seeds": 2,
        "grid_seed": ib.GRID_SEED,
        "torch": torch.__version__,
        "machine": "test",
        "wall_s": 1.0,
        "toy": {},
        "pending": {},
        "tasks": {name: res},
    }


@pytest.mark.parametrize("psi_init", ["paper", "equilibrium"])
@pytest.mark.parametrize(
    "wd,power,spe", [(0.0, 0.0, None), (0.01, 0.5, None), (0.0, 0.25, 3), (0.05, 1.0, 4)]
)
def test_matches_numpy_reference_step_for_step(psi_init, wd, power, spe):
    a, b, m_star, x0, m0 = _quadratic()
    # two parameter groups with different hyper-parameters, gradients from autograd
    x = torch.tensor(x0, requires_grad=True)
    m = torch.tensor(m0, requires_grad=True)
    at, bt, mt = torch.tensor(a), torch.tensor(b), torch.tensor(m_star)
    g1 = dict(params=[x], lr=0.05, alpha=0.5, beta=0.1)
    g2 = dict(params=[m], lr=0.02, alpha=1.3, beta=0.5)
    opt = INNA([g1, g2], weight_decay=wd, psi_init=psi_init, decay_power=power, steps_per_epoch=spe)
    steps = 60
    got_x, got_m, psi_x = [], [], []
    for _ in range(steps):
        opt.zero_grad()
        loss = 0.5 * x @ at @ x - bt @ x + 0.5 * 3.0 * ((m - mt) ** 2).sum()
        loss.backward()
        opt.step()
        got_x.append(x.detach().numpy().copy())
        got_m.append(m.detach().numpy().copy())
        psi_x.append(opt.state[x]["psi"].numpy().copy())

    ref_x, ref_psi = numpy_inna(
        x0, lambda t: a @ t - b, steps, 0.05, 0.5, 0.1, psi_init, wd, power, spe
    )
    ref_m, _ = numpy_inna(
        m0, lambda t: 3.0 * (t - m_star), steps, 0.02, 1.3, 0.5, psi_init, wd, power, spe
    )
    np.testing.assert_allclose(np.array(got_x), ref_x, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(np.array(psi_x), ref_psi, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(np.array(got_m), ref_m, rtol=1e-12, atol=1e-13)
    # and it actually optimises: the quadratic's minimiser is A⁻¹b
    if power <= 0.5 and wd == 0.0:
        assert np.linalg.norm(ref_x[-1] - np.linalg.solve(a, b)) < np.linalg.norm(
            x0 - np.linalg.solve(a, b)
        )


@pytest.mark.parametrize("psi_init,scale", [("paper", 1.0), ("equilibrium", 0.1)])
def test_first_step(psi_init, scale):
    # paper ψ₀: initial velocity −∇J, so θ₁ = θ₀ − γg; equilibrium ψ₀: θ₁ = θ₀ − γβg
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = INNA([p], lr=0.1, alpha=0.5, beta=0.1, psi_init=psi_init)
    p.grad = torch.tensor([3.0, 4.0], dtype=torch.float64)
    opt.step()
    expected = torch.tensor([1.0, -2.0], dtype=torch.float64) - 0.1 * scale * p.grad
    torch.testing.assert_close(p.detach(), expected)


def test_weight_decay_has_the_official_semantics():
    # official code: θ₁ = θ₀ − γ(β g + λθ₀) from ψ₀ at equilibrium; the decay is not scaled by β
    theta0 = torch.tensor([1.0, -2.0], dtype=torch.float64)
    p = torch.nn.Parameter(theta0.clone())
    opt = INNA([p], lr=0.1, alpha=0.5, beta=0.1, weight_decay=0.3, psi_init="equilibrium")
    g = torch.tensor([3.0, 4.0], dtype=torch.float64)
    p.grad = g.clone()
    opt.step()
    torch.testing.assert_close(p.detach(), theta0 - 0.1 * (0.1 * g + 0.3 * theta0))
    # ψ ignores the decay: ψ₁ = ψ₀ + γ·phase(θ₀, ψ₀) = ψ₀ (phase is 0 at equilibrium)
    torch.testing.assert_close(opt.state[p]["psi"], (1 - 0.05) * theta0)


def test_step_size_bound_is_two_over_alpha():
    # no gradient: θ − ψ is conserved and the phase (the step θ_{k+1} − θ_k, over γ) shrinks by
    # (1 − γα) a step, so the scheme is stable for γ < 2/α and unstable above, whatever β
    for beta in (0.01, 1.0, 10.0):
        for gamma, stable in ((1.9 / 0.5, True), (2.1 / 0.5, False)):
            p = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
            opt = INNA([p], lr=gamma, alpha=0.5, beta=beta, psi_init="equilibrium")
            p.grad = torch.zeros(1, dtype=torch.float64)
            opt.step()  # initialises ψ at equilibrium (no move)
            opt.state[p]["psi"].add_(0.1)  # perturb off equilibrium
            moves = []
            for _ in range(100):
                before = float(p)
                p.grad = torch.zeros(1, dtype=torch.float64)
                opt.step()
                moves.append(abs(float(p) - before))
            assert (moves[-1] < moves[0]) == stable, (beta, gamma)


@pytest.mark.parametrize(
    "alpha,beta,h", [(0.5, 0.1, 1.0), (0.5, 0.1, 100.0), (0.005, 10.0, 2e-3), (0.5, 1.0, 10.0)]
)
def test_step_size_bound_on_a_quadratic(alpha, beta, h):
    # J = hθ²/2: stable iff γh < α + βh and γ²h − 2γ(α + βh) + 4 > 0 (module docstring)
    def stable(g):
        return g * h < alpha + beta * h and g * g * h - 2 * g * (alpha + beta * h) + 4 > 0

    lo, hi = 0.0, 1e4  # the largest stable γ by bisection on the condition
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if stable(mid) else (lo, mid)
    for gamma, expect in ((0.97 * lo, True), (1.03 * lo, False)):
        p = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
        opt = INNA([p], lr=gamma, alpha=alpha, beta=beta, psi_init="equilibrium")
        for _ in range(3000):
            p.grad = h * p.detach().clone()
            opt.step()
        assert (abs(float(p)) < 1.0) == expect, (gamma, float(p))


def test_builtin_decay_equals_trainer_inverse_power_schedule():
    torch.manual_seed(0)
    target = torch.randn(7)
    p1 = torch.nn.Parameter(torch.zeros(7))
    p2 = torch.nn.Parameter(torch.zeros(7))
    o1 = INNA([p1], lr=0.3, decay_power=0.5, steps_per_epoch=3)
    o2 = INNA([p2], lr=0.3)
    f = lr_factor("inverse_power", 30, power=0.5, steps_per_epoch=3)
    for k in range(30):
        for p, o in ((p1, o1), (p2, o2)):
            o.zero_grad()
            ((p - target) ** 2).sum().backward()
        o2.param_groups[0]["lr"] = 0.3 * f(k)
        o1.step()
        o2.step()
        torch.testing.assert_close(p1, p2, rtol=1e-6, atol=1e-7)


def _model_and_data(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    x = torch.randn(64, 4)
    y = x.sum(1, keepdim=True).sin()
    return model, x, y


def test_state_dict_round_trip_continues_identically():
    model, x, y = _model_and_data()
    opt = INNA(model.parameters(), lr=0.05, weight_decay=1e-3, decay_power=0.5)

    def step(m, o):
        o.zero_grad()
        torch.nn.functional.mse_loss(m(x), y).backward()
        o.step()

    for _ in range(5):
        step(model, opt)
    clone, _, _ = _model_and_data(seed=1)
    clone.load_state_dict(model.state_dict())
    opt2 = INNA(clone.parameters(), lr=0.05, weight_decay=1e-3, decay_power=0.5)
    buf = io.BytesIO()  # a real serialisation: an in-process load would share ψ buffers
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    opt2.load_state_dict(torch.load(buf))
    assert all(s["step"] == 5 for s in opt2.state.values())
    for _ in range(5):
        step(model, opt)
        step(clone, opt2)
    for a, b in zip(model.parameters(), clone.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_parameters_without_gradient_are_left_alone():
    a = torch.nn.Parameter(torch.ones(3))
    b = torch.nn.Parameter(torch.ones(3))
    opt = INNA([a, b], lr=0.1)
    a.grad = torch.ones(3)
    opt.step()
    assert torch.equal(b, torch.ones(3)) and b not in opt.state
    assert not torch.equal(a, torch.ones(3))


def test_registered_in_the_shared_trainer_and_resumes_exactly(tmp_path):
    assert "inna" in available_optimizers()
    assert isinstance(build_optimizer("inna", [torch.nn.Parameter(torch.ones(1))], 0.1), INNA)

    def run(steps, out, resume=False):
        model, x, y = _model_and_data()
        cfg = TrainConfig(
            steps=steps,
            optimizer="inna",
            lr=0.05,
            optimizer_kwargs={"alpha": 0.5, "beta": 0.1},
            schedule="inverse_power",
            schedule_kwargs={"power": 0.5, "steps_per_epoch": 4},
            log_every=2,
            ckpt_every=0,
            out_dir=str(out),
            resume=resume,
            progress=False,
        )

        def loss_fn(m, idx):
            return torch.nn.functional.mse_loss(m(x[idx]), y[idx]), {}

        t = Trainer(model, loss_fn, lambda s, r, w: torch.arange(s % 4 * 16, s % 4 * 16 + 16), cfg)
        t.fit()
        return model, t

    straight, t = run(12, tmp_path / "a")
    assert t.history[-1]["loss"] < t.history[0]["loss"]
    run(6, tmp_path / "b")
    resumed, _ = run(12, tmp_path / "b", resume=True)  # safetensors checkpoint round trip
    for a, b in zip(straight.parameters(), resumed.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lr": -1.0},
        {"beta": 0.0},
        {"alpha": -0.1},
        {"weight_decay": -1.0},
        {"psi_init": "zero"},
        {"decay_power": -0.5},
        {"steps_per_epoch": 0},
    ],
)
def test_invalid_options(kwargs):
    with pytest.raises(ConfigError):
        INNA([torch.nn.Parameter(torch.ones(1))], **{"lr": 0.1, **kwargs})
    with pytest.raises(ValueError):  # ConfigError is a ValueError too
        opt = INNA([torch.nn.Parameter(torch.ones(1))], lr=0.1)
        opt.add_param_group({"params": [torch.nn.Parameter(torch.ones(1))], **kwargs})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    torch.manual_seed(0)
    w0 = torch.randn(32, 16)
    out = {}
    for dev in ("cpu", "cuda"):
        w = torch.nn.Parameter(w0.clone().to(dev))
        opt = INNA([w], lr=0.05, weight_decay=1e-2, decay_power=0.5)
        for _ in range(20):
            opt.zero_grad()
            (w.sin() ** 2).sum().backward()
            opt.step()
        # the state moves with the parameters
        sd = opt.state_dict()
        opt.load_state_dict(sd)
        assert opt.state[w]["psi"].device == w.device
        out[dev] = w.detach().cpu()
    torch.testing.assert_close(out["cpu"], out["cuda"], rtol=1e-5, atol=1e-6)


# --- the paper's toy problem (Figure 1) ---------------------------------------------------
TOY_LR = 2e-3  # γ/β ≤ 0.2: close to the continuous dynamics, and 10k steps reach t = 20


def _window(tr, t0, t1, lr=TOY_LR):
    return tr[int(t0 / lr) : int(t1 / lr) + 1]


def _transverse(tr):
    return (tr[:, 1] - tr[:, 0].abs()).abs()  # distance (in θ₂) to the valley θ₂ = |θ₁|


def test_toy_trajectories_behave_as_figure_1():
    # ψ₀ at equilibrium (zero initial velocity), constant step, up to time t = 20
    runs = {
        ab: toy_trajectory(*ab, lr=TOY_LR, steps=int(20 / TOY_LR), psi_init="equilibrium")
        for ab in [(0.5, 0.01), (0.5, 0.1), (1.3, 0.1)]
    }
    for tr in runs.values():  # every setting reaches the minimum (1, 1)
        assert float(toy_objective(tr[-1])) < 1e-3
        torch.testing.assert_close(
            tr[-1], torch.tensor([1.0, 1.0], dtype=torch.float64), atol=2e-3, rtol=0
        )
    # β = 0.01 (little Newtonian damping): heavy-ball-like oscillation across the valley persists
    # β = 0.1: the Hessian damping kills the transverse oscillation almost at once
    small_b, mid, big_a = runs[(0.5, 0.01)], runs[(0.5, 0.1)], runs[(1.3, 0.1)]
    assert _transverse(_window(small_b, 0.5, 1.0)).max() > 0.1
    assert _transverse(_window(mid, 0.5, 1.0)).max() < 0.01
    assert _transverse(_window(big_a, 0.5, 1.0)).max() < 0.01
    # α = 1.3 (more viscous friction): far less overshoot past the minimum, slower progress
    assert float(mid[:, 0].max()) > 1.2
    assert float(big_a[:, 0].max()) < 1.1
    t5 = int(5 / TOY_LR)
    assert float(toy_objective(big_a[t5])) > float(toy_objective(mid[t5]))


def test_toy_paper_initialisation_launches_with_minus_gradient():
    # ψ₀ of the paper gives θ'(0) = −∇J(θ₀), |∇J(θ₀)| ≈ 141 here: with β = 0.1 the transverse
    # part is damped and it still converges; with β = 0.01 it is thrown far along the valley
    tr = toy_trajectory(0.5, 0.1, lr=TOY_LR, steps=int(10 / TOY_LR), psi_init="paper")
    assert float(toy_objective(tr[-1])) < 1e-3
    tr = toy_trajectory(0.5, 0.01, lr=TOY_LR, steps=int(3 / TOY_LR), psi_init="paper")
    assert float(tr[:, 0].max()) > 20.0


# --- the benchmark harness on a tiny task -------------------------------------------------
def _tiny_task():
    from satcodec.benchmarks.inna_bench import TaskSetup
    from satcodec.train import epoch_batches

    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 3, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]])
    xt = torch.randn(16, 3, generator=g)
    yt = xt @ torch.tensor([[1.0], [-2.0], [0.5]])

    def make_model(seed):
        torch.manual_seed(seed)
        return torch.nn.Linear(3, 1)

    def loss_fn(m, idx):
        return torch.nn.functional.mse_loss(m(x[idx]), y[idx]), {}

    def evaluate(m):
        return {
            "train_loss": float(torch.nn.functional.mse_loss(m(x), y)),
            "test_mse": float(torch.nn.functional.mse_loss(m(xt), yt)),
        }

    grid = [0.00316, 0.01, 0.0316]
    return TaskSetup(
        make_model=make_model,
        loss_fn=loss_fn,
        make_batch_fn=lambda seed: epoch_batches(32, 8, seed=seed),
        steps_per_epoch=4,
        epochs=3,
        evaluate=evaluate,
        test_metric="test_mse",
        higher_is_better=False,
        grids={k: grid for k in ("INNA", "SGD", "SGD+momentum", "Adam", "Adagrad")},
    )


def test_benchmark_harness_end_to_end(tmp_path, monkeypatch):
    from satcodec.benchmarks import inna_bench as ib

    # two contenders keep it fast
    specs = [s for s in ib.default_optimizers() if s.label in ("INNA", "Adam")]
    monkeypatch.setattr(ib, "default_optimizers", lambda: specs)
    name = "tiny-test-task"
    ib.register_task(ib.Task(name, "tiny regression", lambda opts: _tiny_task()))
    try:
        opts = ib.BenchOptions(seeds=2, out=str(tmp_path / "out"), work=str(tmp_path / "w"))
        opts.variants = {}
        res = ib.run_task(ib.TASKS[name], opts, log=lambda s: None)
    finally:
        del ib.TASKS[name]
    assert set(res["optimizers"]) == {"INNA", "Adam", ib.TUNED}
    tuned = res["optimizers"][ib.TUNED]
    # (α, β) screened over the paper's grid at loss scales 1 and 10⁴, at γ_c·{0.1, 0.316, 1}
    assert len(tuned["screen"]) == 8
    assert {(v["alpha"], v["beta"]) for v in tuned["screen"].values()} >= {(0.5, 0.1), (0.005, 10)}
    best_default = res["optimizers"]["INNA"]["best_lr"]
    cands = []
    for v in tuned["screen"].values():
        gc = best_default * 0.5 / v["alpha"]
        keys = list(v["train_loss"])
        assert keys[:3] == [f"{float(f'{gc * 10**q:.3g}'):g}" for q in (0, -0.5, -1)]
        # it goes on down by half decades only while the smallest step is the best (ties
        # included: every step diverged)
        for n in range(3, len(keys)):
            seen = {float(k): v["train_loss"][k] for k in keys[:n]}
            assert seen[min(seen)] <= min(seen.values())
        cands += [
            (x, v["alpha"], v["beta"], k) for k, x in v["train_loss"].items() if np.isfinite(x)
        ]
    loss, a, b, lr = min(cands)
    assert (tuned["alpha"], tuned["beta"]) == (a, b)
    assert lr in tuned["grid"]  # the γ₀ search starts around it and reuses the screening run
    assert tuned["grid"][lr] == loss
    assert tuned["tuning_runs"] >= 24
    # all optimizers start from the same initialisation
    firsts = {o["runs"][0]["curves"]["train_loss"][0] for o in res["optimizers"].values()}
    assert len(firsts) == 1
    # a finished run is read back, not retrained (an interrupted benchmark resumes)
    best = res["optimizers"]["INNA"]["best_lr"]
    monkeypatch.setattr(ib, "Trainer", None)
    again = ib.train_run(_tiny_task(), specs[0], best, 0, tmp_path / "w" / name / "final_inna_s0")
    assert again == res["optimizers"]["INNA"]["runs"][0]
    ib.plot(res, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 0
    assert "| INNA |" in ib.table(res)
    assert [v["against"] for v in ib.verdicts(res)] == ["Adam"]
    assert [v["against"] for v in ib.verdicts(res, ib.TUNED)] == ["Adam"]
    assert "| INNA tuned (α=" in ib.table(res)
    summary = _summary("satcodec research inna-bench --tasks tiny", name, res)
    md = ib.report(summary, "inna_bench")
    assert "| 0.005 | 10 | ×10000 |" in md  # the screening table
    assert "INNA tuned against each optimizer" in md and "INNA against each optimizer" in md


def test_verdicts_need_non_overlapping_ranges():
    from satcodec.benchmarks.inna_bench import verdicts

    def runs(losses, accs):
        return {
            "runs": [
                {"curves": {"train_loss": [9.0, a], "acc": [0.0, b]}}
                for a, b in zip(losses, accs, strict=True)
            ]
        }

    res = {
        "test_metric": "acc",
        "higher_is_better": True,
        "optimizers": {
            "INNA": runs([1.0, 1.1, 1.2], [0.90, 0.91, 0.92]),
            "A": runs([1.3, 1.4, 1.5], [0.80, 0.85, 0.90]),  # INNA wins loss, ties accuracy
            "B": runs([0.5, 0.6, float("inf")], [0.95, 0.96, 0.97]),  # diverged seed: tie
            "C": runs([0.1, 0.2, 0.3], [0.93, 0.94, 0.99]),  # INNA loses both
        },
    }
    v = {r["against"]: r for r in verdicts(res)}
    assert (v["A"]["train_loss"], v["A"]["acc"]) == ("wins", "ties")
    assert (v["B"]["train_loss"], v["B"]["acc"]) == ("ties", "loses")
    assert (v["C"]["train_loss"], v["C"]["acc"]) == ("loses", "loses")


def test_benchmark_short_tuning_runs_and_json_run_cache(tmp_path, monkeypatch):
    """With ``tune_epochs`` the grid searches and the (α, β) screening train fewer epochs (the
    same for every optimizer) while the reported seeds train the full budget; every finished
    run lands in ``out/inna_bench_<task>_runs.json`` and a rerun trains nothing."""
    from dataclasses import replace

    from satcodec.benchmarks import inna_bench as ib

    specs = [s for s in ib.default_optimizers() if s.label in ("INNA", "Adam")]
    monkeypatch.setattr(ib, "default_optimizers", lambda: specs)
    name = "tiny-short-tuning"
    ib.register_task(
        ib.Task(name, "tiny regression", lambda opts: replace(_tiny_task(), tune_epochs=1))
    )
    try:
        opts = ib.BenchOptions(seeds=2, out=str(tmp_path / "out"), work=str(tmp_path / "w"))
        opts.variants = {}
        res = ib.run_task(ib.TASKS[name], opts, log=lambda s: None)
        assert (res["steps"], res["tune_steps"]) == (12, 4)
        cache = tmp_path / "out" / f"inna_bench_{name}_runs.json"
        stored = json.loads(cache.read_text())["runs"]
        epochs = sorted({json.loads(k)["epochs"] for k in stored})
        assert epochs == [1, 3]
        n_final = sum(json.loads(k)["epochs"] == 3 for k in stored)
        assert n_final == 2 * 3  # INNA, Adam, INNA tuned × 2 seeds; every other run is tuning
        for o in res["optimizers"].values():
            assert all(len(r["curves"]["train_loss"]) == 4 for r in o["runs"])
        tuned = res["optimizers"][ib.TUNED]
        assert len(stored) == sum(
            len(o["grid"]) + len(o["runs"]) for k, o in res["optimizers"].items() if k != ib.TUNED
        ) + len({(a, b, lr) for a, b, lr in _tuned_runs(tuned)}) + len(tuned["runs"])
        # the work folder gone, the JSON alone resumes everything: no training at all
        import shutil

        shutil.rmtree(tmp_path / "w")
        monkeypatch.setattr(ib, "Trainer", None)
        monkeypatch.setattr(ib, "step_cost", lambda *a, **k: {})
        again = ib.run_task(ib.TASKS[name], opts, log=lambda s: None)
    finally:
        del ib.TASKS[name]
    for k in res["optimizers"]:
        assert again["optimizers"][k]["runs"] == res["optimizers"][k]["runs"]
        assert again["optimizers"][k]["grid"] == res["optimizers"][k]["grid"]
    md = ib.report(
        _summary("x", name, res),
        "inna_bench",
    )
    assert "tuning runs 4 steps" in md and "after 4 steps" in md
    assert " ± " in ib.table(res)


def _tuned_runs(tuned):
    """(α, β, γ₀) of every run the tuned INNA's screening and γ₀ search made."""
    out = [
        (v["alpha"], v["beta"], float(k)) for v in tuned["screen"].values() for k in v["train_loss"]
    ]
    return out + [(tuned["alpha"], tuned["beta"], float(k)) for k in tuned["grid"]]
