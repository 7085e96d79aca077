"""Training NCACF with the shared trainer, evaluation on a split, and model selection.

One step = all users × a batch of training items (as the official code does); the epoch with
the best validation NDCG@k is kept (early stopping on the validation split only; the test split
is never looked at while training).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from satcodec.research.recsys.data import Split
from satcodec.research.recsys.metrics import evaluate_scores
from satcodec.research.recsys.models import NCACF, NCACFConfig, as_tensor, ncacf_loss
from satcodec.train import TrainConfig, Trainer, epoch_batches


@dataclass
class FitConfig:
    epochs: int = 30
    lr: float = 1e-3
    optimizer: str = "adam"
    optimizer_kwargs: dict[str, Any] = field(default_factory=dict)
    batch_items: int = 128
    clip_grad_norm: float | None = 1.0  # the paper's recipe
    seed: int = 0
    k: int = 50
    out_dir: str = "runs/recsys/default"
    progress: bool = True
    select_on_val: bool = True  # keep the best validation epoch (else the last one)


@dataclass
class FitResult:
    model: NCACF
    best_epoch: int
    best_val: dict[str, float]
    val_curve: list[float]
    train_s: float
    history: list[dict[str, Any]]


def model_scores(model: NCACF, content: torch.Tensor | None) -> Any:
    """``score_fn(users, items)`` (numpy in, numpy out) for :func:`evaluate_scores`."""

    def score_fn(users: np.ndarray, items: np.ndarray) -> np.ndarray:
        it = torch.as_tensor(items, dtype=torch.long)
        x = content[it] if content is not None else None
        with torch.no_grad():
            h = model.item_factors(it, x)
            w = model.user(torch.as_tensor(users, dtype=torch.long))
            # a deep ψ holds (users, width, items) activations: score items in chunks
            step = len(it) if model.psi is None else max(1, 2**22 // max(1, len(users) * 64))
            p = torch.cat([model.interact(w, h[j : j + step]) for j in range(0, len(it), step)], 1)
            p = p.masked_fill(~model.can_score(it)[None, :], -1.0)  # unscorable: last
        return p.numpy()

    return score_fn


def evaluate_split(
    score_fn: Any, split: Split, which: str = "test", k: int = 50
) -> dict[str, float]:
    """Mean NDCG@k / recall@k of ``score_fn`` on the validation or test pairs of ``split``.

    Warm: every item is a candidate, minus the user's training pairs (and validation pairs for
    the test split). Cold: the candidates are the held-out cold items of that split only.
    """
    if which == "val":
        relevant, candidates, exclude = split.val, split.val_items, split.train
    elif which == "test":
        relevant, candidates = split.test, split.test_items
        exclude = split.train + split.val
    else:
        raise ValueError(f"which={which!r}: val or test")
    if split.protocol == "cold":
        exclude = None  # cold candidates have no training or validation pairs
    return evaluate_scores(score_fn, relevant, candidates, k=k, exclude=exclude)


def fit_ncacf(
    split: Split,
    config: NCACFConfig,
    fit: FitConfig,
    init_from: NCACF | None = None,
) -> FitResult:
    """Train one NCACF model on ``split.train`` through the shared :class:`Trainer`.

    ``init_from``: a trained model (same split) whose user/item factors and φ start this one,
    as the official code pre-trains the factors before training a deep ψ.
    """
    torch.manual_seed(fit.seed)
    content = as_tensor(split.content)
    model = NCACF(split.n_users, split.n_items, content.shape[1], config)
    if init_from is not None:
        own = model.state_dict()
        shared = {
            k: v
            for k, v in init_from.state_dict().items()
            if k.split(".")[0] in ("user", "item", "phi") and k in own and own[k].shape == v.shape
        }
        model.load_state_dict(shared, strict=False)
    known = torch.zeros(split.n_items, dtype=torch.bool)
    known[torch.as_tensor(split.train_items)] = True
    model.known.copy_(known)
    counts = torch.from_numpy(split.train.toarray().astype(np.float32))  # users × items
    train_items = torch.as_tensor(split.train_items, dtype=torch.long)
    batches = epoch_batches(len(train_items), fit.batch_items, seed=fit.seed)
    spe: int = batches.steps_per_epoch  # type: ignore[attr-defined]

    def batch_fn(step: int, rank: int, world: int) -> torch.Tensor:
        return train_items[batches(step, rank, world)]

    # the trainer passes its (possibly DDP-wrapped) model; single-process here, so use ours
    def loss_fn(m: torch.nn.Module, items: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        x = content[items] if model.phi is not None else None
        return ncacf_loss(model, items, counts[:, items], x)

    curve: list[float] = []
    best: dict[str, Any] = {"ndcg": -1.0}
    use_content = content if model.phi is not None else None

    def val_fn(m: torch.nn.Module) -> dict[str, float]:
        res = evaluate_split(model_scores(model, use_content), split, "val", fit.k)
        curve.append(res["ndcg"])
        if res["ndcg"] > best["ndcg"] or not fit.select_on_val:
            best.update(res)
            best["epoch"] = len(curve)
            best["state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return {"ndcg": res["ndcg"], "recall": res["recall"]}

    cfg = TrainConfig(
        steps=fit.epochs * spe,
        optimizer=fit.optimizer,
        lr=fit.lr,
        optimizer_kwargs=dict(fit.optimizer_kwargs),
        clip_grad_norm=fit.clip_grad_norm,
        seed=fit.seed,
        log_every=spe,
        val_every=spe,
        ckpt_every=0,
        out_dir=fit.out_dir,
        progress=fit.progress,
    )
    trainer = Trainer(model, loss_fn, batch_fn, cfg, val_fn=val_fn)
    t0 = time.time()
    history = trainer.fit()
    train_s = time.time() - t0
    if "state" in best:
        model.load_state_dict(best.pop("state"))
    model.eval()
    return FitResult(
        model=model,
        best_epoch=int(best.get("epoch", 0)),
        best_val={k: v for k, v in best.items() if k != "epoch"},
        val_curve=curve,
        train_s=train_s,
        history=history,
    )


def fit_summary(res: FitResult, config: NCACFConfig, fit: FitConfig) -> dict[str, Any]:
    return {
        "config": config.to_dict(),
        "fit": {k: v for k, v in asdict(fit).items() if k not in ("out_dir", "progress")},
        "best_epoch": res.best_epoch,
        "val": res.best_val,
        "val_curve": res.val_curve,
        "train_s": round(res.train_s, 1),
    }


def out_dir_for(root: str | Path, *parts: object) -> str:
    return str(Path(root).joinpath(*(str(p) for p in parts)))
