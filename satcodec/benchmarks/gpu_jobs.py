"""The jobs ``bench/train_gpu.py`` trains on a rented GPU, and the command line that
reproduces each one (model cards copy it).

Kept in the package so that tests import it normally (``tests/test_trainer.py`` checks that
every codec job's line is one ``satcodec train`` accepts with the same settings).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Job:
    name: str
    kind: str  # "codec", "joint", or "peer" (the full scale hyperprior, from scratch)
    lmbda: float
    init: str | None  # model name or path; None: from random weights
    lr: float = 3e-4
    latent: int | None = None  # widen the init's latent to M (or M from scratch)
    stride: int = 8  # from scratch


JOINT_WEIGHTS = "satcodec/ground_segment/weights/codec"
JOBS = {
    j.name: j
    for j in [
        Job("reduced-s8-l2.5e-4", "codec", 2.5e-4, "reduced-s8-l1e-3"),
        Job("reduced-s8-l1e-3", "codec", 1e-3, "reduced-s8-l1e-3"),
        Job("reduced-s8-l4e-3", "codec", 4e-3, "reduced-s8-l4e-3"),
        Job("reduced-s8-l1.6e-2", "codec", 1.6e-2, "reduced-s8-l1.6e-2"),
        Job("reduced-s8-m128-l1.6e-2", "codec", 1.6e-2, "reduced-s8-l1.6e-2", latent=128),
        Job("joint-s8-l1e-3", "joint", 1e-3, f"{JOINT_WEIGHTS}/joint-s8-l1e-3.safetensors"),
        Job("joint-s8-l4e-3", "joint", 4e-3, f"{JOINT_WEIGHTS}/joint-s8-l4e-3.safetensors"),
        Job("joint-s8-l1.6e-2", "joint", 1.6e-2, "reduced-s8-l1.6e-2"),
        # reduced against the full hyperprior: both from scratch, equal steps (--equal-steps),
        # each at its own recipe's learning rate (the peer diverges at 1e-3)
        Job("scratch-reduced-s8-l4e-3", "codec", 4e-3, None, lr=1e-3, latent=96),
        Job("scratch-peer-l4e-3", "peer", 4e-3, None, lr=1e-4),
    ]
}


def job_command(
    job: Job, steps: int, out: Path, *, batch: int, patch: int, decay_start: float, device: str
) -> str:
    """The CLI line that reproduces the job (DATA: the GeoTIFF folder or its scene pack)."""
    common = (
        f"--lmbda {job.lmbda} --steps {steps} --init {job.init} --lr {job.lr} "
        f"--batch {batch} --patch {patch} --decay-start {decay_start} "
        f"--device {device} --out runs/{out.name}"
    )
    if job.init is None:
        common = common.replace(" --init None", "")
    if job.kind == "joint":
        return f"satcodec ground-train joint --data DATA {common}"
    if job.kind == "peer":
        return (
            'python -c "from satcodec.evaluation.peer_hyperprior import train_peer; '
            f"train_peer('DATA', {job.lmbda}, {steps}, 'runs/{out.name}', lr={job.lr}, "
            f"batch={batch}, patch={patch}, device='{device}', "
            f"schedule_kwargs={{'start': {decay_start}, 'final': 0.3}})\""
        )
    latent = f" --latent {job.latent}" if job.latent else ""
    stride = f" --stride {job.stride}" if job.init is None else ""
    return f"satcodec train --data DATA {common}{latent}{stride}"
