"""Losses, the trainer, experiments and result records."""
from graphrec.train.experiment import run_experiment, seed_everything
from graphrec.train.losses import bce_loss, bpr_loss, l2_loss
from graphrec.train.trainer import TrainConfig, Trainer, TrainResult

__all__ = ['TrainConfig', 'Trainer', 'TrainResult', 'run_experiment',
           'seed_everything', 'bpr_loss', 'bce_loss', 'l2_loss']
