"""The one training loop shared by the codec and the research modules.

Give it a model, a loss and a step-indexed batch function; it handles the optimizer (by name),
learning-rate schedule, gradient clipping, seeding, validation, a progress bar, a JSONL metrics
log, safetensors checkpoints with optimizer state, exact resume, and data-parallel training
when launched by ``torchrun`` (gloo on CPU). It knows nothing about codecs.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from satcodec.errors import ConfigError
from satcodec.fileutil import atomic_write_bytes
from satcodec.train.checkpoint import load_checkpoint, save_checkpoint
from satcodec.train.optimizers import build_optimizer
from satcodec.train.schedules import lr_factor

LossFn = Callable[[nn.Module, Any], tuple[torch.Tensor, dict[str, float]]]
BatchFn = Callable[[int, int, int], Any]  # (step, rank, world) -> batch
ValFn = Callable[[nn.Module], dict[str, float]]


@dataclass
class TrainConfig:
    steps: int = 1000
    optimizer: str = "adam"
    lr: float = 1e-3
    optimizer_kwargs: dict[str, Any] = field(default_factory=dict)
    schedule: str = "constant"
    schedule_kwargs: dict[str, float] = field(default_factory=dict)
    clip_grad_norm: float | None = 1.0
    # a step whose loss or gradient is not finite is skipped (weights and optimizer state left
    # as they were, as AMP's scaler does); this many in a row means divergence, and it raises
    max_skipped_in_a_row: int = 8
    seed: int = 0
    log_every: int = 50
    val_every: int = 0  # 0: only at the end
    ckpt_every: int = 500
    out_dir: str = "runs/default"
    resume: bool = False
    progress: bool = True
    # "cuda" trains on a GPU: the model and every batch (tensors, or dicts/lists of them) are
    # moved there; checkpoints are written from CPU copies, so they load anywhere
    device: str = "cpu"
    # prepare batch k+1 on a CPU thread while step k runs (None: on when device is not the CPU);
    # safe because batch_fn is a pure function of the step (it must not draw from torch's
    # global RNG, which the loop reseeds each step)
    prefetch: bool | None = None


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _dist() -> tuple[int, int]:
    """(rank, world) from torchrun's environment; initialises gloo when world > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("gloo")
    rank = torch.distributed.get_rank() if world > 1 else 0
    return rank, world


class Trainer:
    """Train ``model`` on ``loss_fn(model, batch_fn(step, rank, world))``.

    ``batch_fn`` must be deterministic in its arguments (a batch is a function of the step):
    that is what makes resume exact and lets ranks take disjoint shares of one global batch.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        batch_fn: BatchFn,
        config: TrainConfig,
        val_fn: ValFn | None = None,
        param_groups: list[dict[str, Any]] | None = None,
    ) -> None:
        self.config = config
        self.rank, self.world = _dist()
        self.model = model
        self.loss_fn = loss_fn
        self.batch_fn = batch_fn
        self.val_fn = val_fn
        self.out_dir = Path(config.out_dir)
        self.device = torch.device(config.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device 'cuda' asked for, but torch sees no CUDA GPU")
        model.to(self.device)
        torch.manual_seed(config.seed)
        params = param_groups if param_groups is not None else model.parameters()
        self.optimizer = build_optimizer(
            config.optimizer, params, config.lr, **config.optimizer_kwargs
        )
        self._base_lrs = [g["lr"] for g in self.optimizer.param_groups]
        self.lr_factor = lr_factor(config.schedule, config.steps, **config.schedule_kwargs)
        self.train_model: nn.Module = model
        if self.world > 1:
            self.train_model = torch.nn.parallel.DistributedDataParallel(model)
        self.step = 0
        self.skipped = 0  # steps whose loss or gradient was not finite (not applied)
        self.history: list[dict[str, Any]] = []

    # --- persistence -----------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / "checkpoint.safetensors"

    @property
    def log_path(self) -> Path:
        return self.out_dir / "metrics.jsonl"

    def save(self) -> None:
        if self.rank != 0:
            return
        extra = {"step": self.step, "skipped": self.skipped, "config": asdict(self.config)}
        save_checkpoint(self.checkpoint_path, self.model, self.optimizer, extra)

    def _resume(self) -> None:
        if not self.checkpoint_path.exists():
            return
        extra = load_checkpoint(self.checkpoint_path, self.model, self.optimizer)
        self.step = int(extra["step"])
        self.skipped = int(extra.get("skipped", 0))
        # drop log records written after the checkpoint, so the curve continues seamlessly
        if self.rank == 0 and self.log_path.exists():
            kept = [
                line
                for line in self.log_path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= self.step
            ]
            atomic_write_bytes(self.log_path, ("\n".join(kept) + "\n" if kept else "").encode())

    def _log(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        if self.rank == 0:
            with open(self.log_path, "a") as fh:
                fh.write(json.dumps(record) + "\n")

    # --- loop --------------------------------------------------------------------------------
    def fit(self) -> list[dict[str, Any]]:
        """Run until ``config.steps``; returns the logged records of this run."""
        cfg = self.config
        if self.rank == 0:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        if cfg.resume:
            self._resume()
        elif self.rank == 0 and self.log_path.exists():
            self.log_path.unlink()
        bar = tqdm(
            total=cfg.steps,
            initial=self.step,
            disable=not cfg.progress or self.rank != 0,
            desc=f"train {cfg.optimizer}",
            dynamic_ncols=True,
        )
        acc: dict[str, float] = {}
        n_acc = 0
        skipped_in_a_row = 0
        t0 = time.time()
        self.model.train()
        # on a GPU the CPU would idle while a step runs: batch k+1 (a pure function of k) is
        # prepared on a thread meanwhile
        prefetch = cfg.prefetch if cfg.prefetch is not None else self.device.type != "cpu"
        pool = ThreadPoolExecutor(1) if prefetch else None
        pending: dict[int, Future] = {}

        def next_batch(step: int) -> Any:
            if pool is None:
                return self.batch_fn(step, self.rank, self.world)
            fut = pending.pop(step, None) or pool.submit(self.batch_fn, step, self.rank, self.world)
            if step + 1 < cfg.steps:
                pending[step + 1] = pool.submit(self.batch_fn, step + 1, self.rank, self.world)
            return fut.result()

        while self.step < cfg.steps:
            # per-step seed: the noise and dropout of step k do not depend on where we resumed
            torch.manual_seed(cfg.seed * 1_000_003 + self.step * self.world + self.rank)
            f = self.lr_factor(self.step)
            for g, base in zip(self.optimizer.param_groups, self._base_lrs, strict=True):
                g["lr"] = base * f
            batch = _to_device(next_batch(self.step), self.device)
            loss, metrics = self.loss_fn(self.train_model, batch)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            # the norm is computed either way (inf: measure without clipping); DDP has already
            # averaged the gradients, so every rank takes the same decision
            norm = torch.nn.utils.clip_grad_norm_(
                self.model.parameters(), cfg.clip_grad_norm or float("inf")
            )
            value = float(loss.detach())
            if self.world > 1:
                t = torch.tensor([value])
                torch.distributed.all_reduce(t)
                value = float(t) / self.world
            if not (math.isfinite(value) and math.isfinite(float(norm))):
                self.skipped += 1
                skipped_in_a_row += 1
                self.optimizer.zero_grad(set_to_none=True)
                if skipped_in_a_row >= cfg.max_skipped_in_a_row:
                    if pool is not None:
                        pool.shutdown(cancel_futures=True)
                    raise FloatingPointError(
                        f"loss {value} / gradient norm {float(norm)} not finite for "
                        f"{skipped_in_a_row} steps in a row, up to step {self.step}"
                    )
                self.step += 1
                bar.update(1)
                continue
            skipped_in_a_row = 0
            self.optimizer.step()
            acc["loss"] = acc.get("loss", 0.0) + value
            for k, v in metrics.items():
                acc[k] = acc.get(k, 0.0) + float(v)
            n_acc += 1
            self.step += 1
            bar.update(1)
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                rec = {"step": self.step, "lr": self.optimizer.param_groups[0]["lr"]}
                rec.update({k: v / n_acc for k, v in acc.items()})
                if self.skipped:
                    rec["skipped_steps"] = self.skipped
                rec["elapsed_s"] = round(time.time() - t0, 2)
                self._log(rec)
                bar.set_postfix({k: f"{v:.4g}" for k, v in rec.items() if k in ("loss", *metrics)})
                acc, n_acc = {}, 0
            if (
                self.val_fn
                and cfg.val_every
                and self.step % cfg.val_every == 0
                and self.step < cfg.steps
            ):
                self.validate()
            if cfg.ckpt_every and self.step % cfg.ckpt_every == 0:
                self.save()
        bar.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        if self.val_fn:
            self.validate()
        self.save()
        return self.history

    def validate(self) -> dict[str, float]:
        self.model.eval()
        with torch.no_grad():
            metrics = self.val_fn(self.model) if self.val_fn else {}
        self.model.train()
        rec = {"step": self.step, **{f"val/{k}": v for k, v in metrics.items()}}
        self._log(rec)
        return metrics


def epoch_batches(
    n: int, batch_size: int, seed: int = 0
) -> Callable[[int, int, int], torch.Tensor]:
    """Index batches for a map-style dataset of ``n`` items, reshuffled each epoch.

    Returns ``f(step, rank, world) -> LongTensor`` of this rank's share of global batch
    ``step``; the permutation of epoch e depends only on (seed, e), so resume is exact.
    ``f.steps_per_epoch`` tells how many steps make an epoch.
    """
    spe = max(1, n // batch_size)

    def f(step: int, rank: int = 0, world: int = 1) -> torch.Tensor:
        epoch, k = divmod(step, spe)
        g = torch.Generator().manual_seed(seed * 7919 + epoch)
        perm = torch.randperm(n, generator=g)
        idx = perm[k * batch_size : (k + 1) * batch_size]
        return idx[rank::world]

    f.steps_per_epoch = spe  # type: ignore[attr-defined]
    return f
