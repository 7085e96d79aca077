"""The shared trainer: one loop for the codec and the research modules.

Optimizers by name: the ``torch.optim`` ones, plus any registered through the public hook
:func:`register_optimizer` (research code registers its own at import) or advertised as an
entry point of the group ``satcodec.optimizers``; :func:`available_optimizers` lists them. The
trainer imports neither the codec nor research code.
"""

from satcodec.train.checkpoint import load_checkpoint, save_checkpoint
from satcodec.train.optimizers import available_optimizers, build_optimizer, register_optimizer
from satcodec.train.schedules import lr_factor
from satcodec.train.trainer import TrainConfig, Trainer, epoch_batches

__all__ = [
    "TrainConfig",
    "Trainer",
    "available_optimizers",
    "build_optimizer",
    "epoch_batches",
    "load_checkpoint",
    "lr_factor",
    "register_optimizer",
    "save_checkpoint",
]
