r"""Multi-process data-parallel training with :mod:`torch.distributed`.

Every process holds the whole train graph and a replica of the model (the
graph's CSR and the embedding tables are replicated); the training batches
are sharded. Each step, every process draws the same global batch and its
negatives from the same generator, keeps its contiguous slice of it, and
:class:`~torch.nn.parallel.DistributedDataParallel` averages the gradients,
so that :math:`W` processes with batch size :math:`B` take the steps of one
process with batch size :math:`B` (up to float summation order). Rank 0
validates (and broadcasts the metrics, so that early stopping decides
alike everywhere), writes checkpoints and result rows.

Start it with ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``)::

    torchrun --nproc_per_node 2 -m graphrec.cli train --model lightgcn \
        --dataset tmall --device cpu      # gloo
    torchrun --nproc_per_node 4 -m graphrec.cli train --model lightgcn \
        --dataset tmall --device cuda     # NCCL, one GPU per process

See ``docs/scale.md``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Dict, Iterator, Optional

import torch
import torch.distributed as dist
from torch import Tensor

from graphrec.data.dataset import MultiBehaviorDataset
from graphrec.eval import Evaluator
from graphrec.models.base import Recommender
from graphrec.train.trainer import TrainConfig, Trainer


def world_size() -> int:
    r"""The number of processes of the initialized default group, else 1."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def rank() -> int:
    r"""This process's rank in the default group, else 0."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return 0


def is_main_process() -> bool:
    r"""Whether this process writes files and result rows (rank 0, or the
    only process).
    """
    return rank() == 0


def launched_by_torchrun() -> bool:
    r"""Whether the environment of ``torchrun`` (``WORLD_SIZE`` above 1) is
    present.
    """
    return int(os.environ.get('WORLD_SIZE', '1')) > 1


def local_device(device: str) -> torch.device:
    r"""The device of this process: :obj:`device` itself on CPU, and on a
    GPU the one of index ``LOCAL_RANK`` (one GPU per process) unless
    :obj:`device` names an index.
    """
    dev = torch.device(device)
    if dev.type != 'cpu' and dev.index is None:
        dev = torch.device(dev.type, int(os.environ.get('LOCAL_RANK', '0')))
    return dev


@contextlib.contextmanager
def distributed(device: str = 'cpu',
                backend: Optional[str] = None) -> Iterator[torch.device]:
    r"""Initializes the default process group from ``torchrun``'s
    environment for the duration of the block and yields this process's
    device; does nothing (and yields :obj:`device`) when the process was
    not started by ``torchrun`` or a group already exists.

    Args:
        device (str): :obj:`'cpu'` or :obj:`'cuda'`. (default: :obj:`'cpu'`)
        backend (str, optional): :obj:`'gloo'` or :obj:`'nccl'`.
            (default: :obj:`None`, NCCL for CUDA devices and gloo otherwise)
    """
    dev = torch.device(device)
    if not launched_by_torchrun() or dist.is_initialized():
        yield local_device(device) if dist.is_initialized() else dev
        return
    if not dist.is_available():  # pragma: no cover
        raise RuntimeError('torch.distributed is not available in this '
                           'torch build; run without torchrun')
    dev = local_device(device)
    if backend is None:
        backend = 'nccl' if dev.type == 'cuda' else 'gloo'
    if dev.type == 'cuda':
        torch.cuda.set_device(dev)
    dist.init_process_group(backend)
    try:
        yield dev
    finally:
        dist.destroy_process_group()


def shard_bounds(size: int, num_shards: int, index: int) -> tuple:
    r"""The contiguous slice :obj:`[start, end)` of shard :obj:`index` when
    :obj:`size` rows are split into :obj:`num_shards` parts whose sizes
    differ by at most one (as :func:`torch.tensor_split`).
    """
    base, extra = divmod(size, num_shards)
    start = index * base + min(index, extra)
    return start, start + base + (1 if index < extra else 0)


class _StepLoss(torch.nn.Module):
    r"""The whole loss of a step as one module's forward, so that
    :class:`~torch.nn.parallel.DistributedDataParallel` sees every parameter
    a step uses (scores, regularization and auxiliary terms are computed
    outside the model's forward).
    """
    def __init__(self, trainer: Trainer):
        super().__init__()
        self.model = trainer.model
        self.trainer = trainer  # not a module: not registered

    def forward(self, batch: Dict[str, tuple], scale: float) -> Tensor:
        return self.trainer.batch_loss(batch) * scale


class DistributedTrainer(Trainer):
    r"""A :class:`~graphrec.train.Trainer` for one process of a
    :mod:`torch.distributed` group: the graph and the model are replicated,
    each global batch of :obj:`batch_size` target pairs is sharded across the
    processes, and gradients are averaged by
    :class:`~torch.nn.parallel.DistributedDataParallel`.

    Each process draws the same global batch and negatives (the generator
    is seeded alike everywhere and advances alike), keeps its slice
    :math:`r` of :math:`n_r` pairs and scales its loss by
    :math:`W n_r / B`, so that the averaged gradient is the one of the mean
    loss over the global batch, however :math:`B` divides. The logged loss
    is that global mean. Losses that are means over the batch (BPR, BCE,
    L2) give the single-process steps up to float summation order; a
    model's auxiliary terms are computed on each process's slice.

    Rank 0 validates and broadcasts the metrics (every process then makes
    the same early-stopping decision and runs the model's
    ``on_validation`` hook alike), and only rank 0 writes checkpoints and
    holds the run folder's lock; every process reads ``last.pt`` to resume.
    Buffers are broadcast from rank 0 at every step.

    Args:
        model (Recommender): The model, initialized alike on every process
            (rank 0's parameters are broadcast at construction anyway).
        dataset (MultiBehaviorDataset): Data with a validation split.
        config (TrainConfig): Hyperparameters; :obj:`batch_size` is the
            global batch. A device without index gets ``LOCAL_RANK``'s.
        out_dir (str, optional): Run folder (see
            :class:`~graphrec.train.Trainer`), the same for every process.
        evaluator (Evaluator, optional): Validation evaluator.
        find_unused_parameters (bool): Passed to
            :class:`~torch.nn.parallel.DistributedDataParallel`; needed when
            a step may leave parameters without gradient (behaviors or
            plug-ins not used by a batch). (default: :obj:`True`)

    Raises:
        RuntimeError: No process group is initialized.
    """
    def __init__(self, model: Recommender, dataset: MultiBehaviorDataset,
                 config: Optional[TrainConfig] = None,
                 out_dir: Optional[str] = None,
                 evaluator: Optional[Evaluator] = None,
                 find_unused_parameters: bool = True):
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError('DistributedTrainer needs an initialized '
                               'process group (start with torchrun and use '
                               'graphrec.train.distributed.distributed(), '
                               'or call torch.distributed.'
                               'init_process_group)')
        config = config or TrainConfig()
        device = local_device(config.device)
        config = dataclasses.replace(config, device=str(device))
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        super().__init__(model, dataset, config, out_dir=out_dir,
                         evaluator=evaluator)
        self.writes_files = self.rank == 0
        self.ddp = None
        if self.optimizer is not None:
            self.ddp = torch.nn.parallel.DistributedDataParallel(
                _StepLoss(self),
                device_ids=None if device.type == 'cpu' else [device],
                find_unused_parameters=find_unused_parameters)

    def step(self, user: Tensor, pos: Tensor, batch_index: int = 0) -> float:
        r"""One optimizer step on this process's slice of the global batch
        :obj:`(user, pos)`; returns the global batch's mean loss.
        """
        batch = self.sample(user, pos)  # the global batch, alike everywhere
        size = user.numel()
        start, end = shard_bounds(size, self.world_size, self.rank)
        if end > start:
            local = {b: tuple(t[start:end] for t in parts)
                     for b, parts in batch.items()}
            scale = self.world_size * (end - start) / size
        else:  # fewer pairs than processes: contribute zero gradients
            local, scale = batch, 0.0
        loss = self.ddp(local, scale)
        self.optimizer.zero_grad()
        loss.backward()
        value = loss.detach().reshape(1).clone()
        dist.all_reduce(value)
        value = float(value) / self.world_size
        if not torch.isfinite(torch.tensor(value)):
            raise FloatingPointError(
                f'training loss became {value} at batch {batch_index}; the '
                f"last good checkpoint is kept. Try a lower 'lr' (now "
                f'{self.config.lr})')
        self.optimizer.step()
        return value

    def validate(self) -> Optional[Dict[str, float]]:
        r"""Rank 0's validation metrics, on every process."""
        out = [super().validate() if self.rank == 0 else None]
        dist.broadcast_object_list(out, src=0)
        return out[0]

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(rank={self.rank}, '
                f'world_size={self.world_size})')


def make_trainer(model: Recommender, dataset: MultiBehaviorDataset,
                 config: Optional[TrainConfig] = None,
                 out_dir: Optional[str] = None,
                 evaluator: Optional[Evaluator] = None) -> Trainer:
    r"""A :class:`DistributedTrainer` inside a process group of more than
    one process, else a :class:`~graphrec.train.Trainer`.
    """
    cls = DistributedTrainer if world_size() > 1 else Trainer
    return cls(model, dataset, config, out_dir=out_dir, evaluator=evaluator)
