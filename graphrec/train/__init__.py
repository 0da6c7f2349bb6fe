"""Losses, the trainer, experiments and result records."""
from graphrec.losses import bce_loss, bpr_loss, l2_loss
from graphrec.train.distributed import DistributedTrainer
from graphrec.train.experiment import run_experiment, seed_everything
from graphrec.train.records import (
    CheckpointError,
    RunLockedError,
    atomic_torch_save,
    load_checkpoint,
    lock_run_dir,
)
from graphrec.train.rerank import RerankConfig, Reranked, fit_reranker
from graphrec.train.runtime import deterministic_mode, signals_as_interrupts
from graphrec.train.trainer import (
    TrainConfig,
    Trainer,
    TrainingInterrupted,
    TrainResult,
)

__all__ = ['TrainConfig', 'Trainer', 'DistributedTrainer', 'TrainResult',
           'TrainingInterrupted',
           'run_experiment', 'seed_everything', 'bpr_loss', 'bce_loss',
           'l2_loss', 'deterministic_mode', 'signals_as_interrupts',
           'atomic_torch_save', 'load_checkpoint', 'lock_run_dir',
           'CheckpointError', 'RunLockedError', 'RerankConfig', 'Reranked',
           'fit_reranker']
