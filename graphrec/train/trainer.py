"""Mini-batch training with early stopping on validation, checkpoints and
resume.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from graphrec.data.dataset import MultiBehaviorDataset
from graphrec.data.graph import BehaviorGraph
from graphrec.data.sampling import NegativeSampler, viewed_not_bought
from graphrec.eval import Evaluator
from graphrec.losses import bce_loss, bpr_loss, l2_loss
from graphrec.models.base import Recommender
from graphrec.train.records import (
    atomic_torch_save,
    load_checkpoint,
    lock_run_dir,
)
from graphrec.train.runtime import (
    deterministic_mode,
    interrupt_signal,
    signals_as_interrupts,
)

#: :class:`TrainConfig` fields that may differ between a checkpoint and the
#: run that resumes from it; any other difference is an error.
RESUMABLE_CHANGES = ('epochs', 'patience', 'min_epochs', 'progress', 'device',
                     'refit')


@dataclass
class TrainConfig:
    r"""Hyperparameters of :class:`Trainer`.

    Args:
        epochs (int): Maximum number of epochs. (default: :obj:`100`)
        batch_size (int): Positive pairs per batch. (default: :obj:`4096`)
        lr (float): Adam learning rate. (default: :obj:`1e-3`)
        weight_decay (float): L2 weight on the batch's ego embeddings.
            (default: :obj:`1e-4`)
        num_negatives (int): Negatives per positive. (default: :obj:`1`)
        eval_every (int): Epochs between validation runs. (default: :obj:`1`)
        patience (int): Validation runs without improvement before
            stopping. (default: :obj:`10`)
        min_epochs (int): Epochs before early stopping may stop the run;
            graph models often dip on validation in the first epochs while
            they fit popularity. (default: :obj:`0`)
        metric (str): Validation metric to maximise.
            (default: :obj:`'ndcg@10'`)
        seed (int): Seed of the shuffling and negative sampling.
            (default: :obj:`0`)
        device (str): Device to train on. (default: :obj:`'cpu'`)
        progress (bool): Show a progress bar. (default: :obj:`True`)
        loss (str): :obj:`'bpr'` or :obj:`'bce'` (pointwise, the negatives
            labelled 0). (default: :obj:`'bpr'`)
        behavior_weights (Dict[str, float], optional): Multi-task weights
            :math:`\lambda_b`; each batch of target pairs is joined by as
            many random train pairs of every other weighted behavior.
            (default: :obj:`None`, the target alone)
        hard_negative_ratio (float): Share of the target's negatives drawn
            from the user's "viewed but not bought" items (auxiliary pairs
            that are not train target pairs), see
            :func:`~graphrec.data.sampling.viewed_not_bought`.
            (default: :obj:`0.0`, uniform negatives only)
        refit (bool): In :func:`~graphrec.train.run_experiment`: after
            choosing the epoch count on validation, train a fresh model (same
            seed) on train plus the validation pairs for that many epochs and
            test it, instead of testing the model selected on validation (the
            second protocol of the datasets' README; the row's
            ``selection`` says which). (default: :obj:`False`)
        deterministic (bool): Train and validate under
            :func:`~graphrec.train.deterministic_mode` (deterministic kernels
            only; matters on GPUs, where some scatter kernels are not).
            (default: :obj:`False`)
        replay_validations (List[Tuple[int, bool]], optional): For a run
            without validation pairs: :obj:`(epoch, improved)` pairs after
            which the model's ``on_validation(graph, improved)`` hook runs
            as if a validation had happened there. The refit protocol
            replays the selecting run's validations before its best epoch,
            so that validation-scheduled updates (CAGED's weight refreshes)
            happen in the refit too. Ignored when the dataset has validation
            pairs. (default: :obj:`None`)
    """
    epochs: int = 100
    batch_size: int = 4096
    lr: float = 1e-3
    weight_decay: float = 1e-4
    num_negatives: int = 1
    eval_every: int = 1
    patience: int = 10
    min_epochs: int = 0
    metric: str = 'ndcg@10'
    seed: int = 0
    device: str = 'cpu'
    progress: bool = True
    loss: str = 'bpr'
    behavior_weights: Optional[Dict[str, float]] = None
    hard_negative_ratio: float = 0.0
    refit: bool = False
    deterministic: bool = False
    replay_validations: Optional[List[Tuple[int, bool]]] = None

    def __post_init__(self):
        if self.loss not in ('bpr', 'bce'):
            raise ValueError(f"'loss' must be 'bpr' or 'bce' (got "
                             f"{self.loss!r})")
        for name in ('epochs', 'batch_size', 'num_negatives', 'eval_every',
                     'patience'):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"'{name}' must be a positive int "
                                 f"(got {value!r})")
        for name in ('lr', 'weight_decay'):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"'{name}' must be a non-negative number "
                                 f"(got {value!r})")

        if not 0.0 <= self.hard_negative_ratio <= 1.0:
            raise ValueError(f"'hard_negative_ratio' must be in [0, 1] "
                             f"(got {self.hard_negative_ratio!r})")
        if not isinstance(self.min_epochs, int) or self.min_epochs < 0:
            raise ValueError(f"'min_epochs' must be a non-negative int "
                             f"(got {self.min_epochs!r})")
        if not isinstance(self.refit, bool):
            raise TypeError(f"'refit' must be a bool (got {self.refit!r})")
        if not isinstance(self.deterministic, bool):
            raise TypeError(f"'deterministic' must be a bool "
                            f"(got {self.deterministic!r})")
        if self.replay_validations is not None:
            pairs = self.replay_validations
            ok = isinstance(pairs, (list, tuple)) and all(
                isinstance(p, (list, tuple)) and len(p) == 2
                and isinstance(p[0], int) and not isinstance(p[0], bool)
                and p[0] > 0 and isinstance(p[1], bool) for p in pairs)
            if not ok:
                raise ValueError(f"'replay_validations' must be a list of "
                                 f"(epoch > 0, improved: bool) pairs "
                                 f"(got {pairs!r})")
            self.replay_validations = [(int(e), bool(i)) for e, i in pairs]

    def to_dict(self) -> dict:
        r"""The config as a plain :obj:`dict`."""
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    r"""What :meth:`Trainer.fit` returns."""
    best_epoch: int = 0
    best_valid: Optional[float] = None
    epochs_run: int = 0
    epoch_seconds: List[float] = field(default_factory=list)
    history: List[Dict] = field(default_factory=list)
    stopped_early: bool = False


class TrainingInterrupted(KeyboardInterrupt):
    r"""Raised by :meth:`Trainer.fit` when ``SIGINT`` (Ctrl-C) or
    ``SIGTERM`` stops it.

    A :class:`KeyboardInterrupt`, so that ``except Exception`` does not
    swallow it.

    Args:
        signum (int): The signal.
        result (TrainResult): The run up to its last completed epoch, the
            one :obj:`checkpoint` holds.
        checkpoint (Path, optional): ``out_dir/last.pt``, or :obj:`None`
            when there is nothing to resume from (no :obj:`out_dir`, or no
            epoch completed).
    """
    def __init__(self, signum: int, result: TrainResult,
                 checkpoint: Optional[Path] = None):
        self.signum = int(signum)
        self.signal_name = signal.Signals(self.signum).name
        self.result = result
        self.checkpoint = checkpoint
        where = (f'{checkpoint} holds epoch {result.epochs_run}; '
                 f'fit(resume=True) continues from it' if checkpoint else
                 'no checkpoint to resume from (no out_dir or no completed '
                 'epoch)')
        super().__init__(f'training interrupted by {self.signal_name} after '
                         f'{result.epochs_run} completed epoch(s); {where}')

    @property
    def exit_code(self) -> int:
        r"""The shell's exit status for a process killed by the signal,
        :math:`128 + \text{signum}` (130 for ``SIGINT``, 143 for
        ``SIGTERM``).
        """
        return 128 + self.signum


class Trainer:
    r"""Trains a :class:`~graphrec.models.base.Recommender` on the target
    behavior with BPR and uniform negatives, evaluates on the validation
    pairs every :obj:`eval_every` epochs, keeps the best model (early
    stopping with :obj:`patience`), and writes checkpoints atomically.

    Plug-in hooks: a model's ``auxiliary_loss(emb, graph, batch)`` terms
    are added to every step's loss (see :meth:`loss`), and its
    ``on_validation(graph, improved)`` runs after every validation, once the
    best state has been kept, with :obj:`improved` telling whether the
    validation metric improved; what it changes must live in the model's
    parameters or buffers, so that checkpoints and resume carry it.

    With an :obj:`out_dir`, :meth:`fit` holds the folder's lock file (a
    second run into the same folder fails at once) and writes ``last.pt``
    after every epoch with everything a resume needs to continue bit for bit
    (model, optimizer, generator and global random states, early-stopping
    state, history), atomically and with a sha256 that
    :func:`~graphrec.train.records.load_checkpoint` verifies. ``SIGINT`` and
    ``SIGTERM`` during :meth:`fit` raise :class:`TrainingInterrupted`.

    No test metric is ever computed here: model selection sees validation
    only. Negatives are drawn from the items the user has no train
    interaction of that behavior with; the test pairs are never read, the
    validation pairs only to evaluate (keeping either out of the negative
    pool would leak their labels into training).

    Args:
        model (Recommender): The model.
        dataset (MultiBehaviorDataset): Data with a validation split.
        config (TrainConfig): Hyperparameters.
        out_dir (str, optional): Folder for ``last.pt`` (every epoch, for
            resume) and ``best.pt``. (default: :obj:`None`, nothing written)
        evaluator (Evaluator, optional): Validation evaluator.
    """
    #: Whether this process writes checkpoints and holds the run folder's
    #: lock (in multi-process training, only rank 0 does).
    writes_files: bool = True

    def __init__(self, model: Recommender, dataset: MultiBehaviorDataset,
                 config: Optional[TrainConfig] = None,
                 out_dir: Optional[str] = None,
                 evaluator: Optional[Evaluator] = None):
        self.config = config or TrainConfig()
        self.dataset = dataset
        self.device = torch.device(self.config.device)
        self.model = model.to(self.device)
        self.graph = BehaviorGraph.from_dataset(dataset).to(self.device)
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.evaluator = evaluator or Evaluator(ks=(10, 20))
        self.positives = dataset.train[dataset.target].to(self.device)
        weights = self.config.behavior_weights or {dataset.target: 1.0}
        unknown = [b for b in weights if b not in dataset.behaviors]
        if unknown:
            raise ValueError(f"'behavior_weights' names unknown behaviors "
                             f"{unknown} (dataset behaviors: "
                             f"{list(dataset.behaviors)})")
        if len(weights) > 1 and not hasattr(model, 'score_behavior'):
            raise ValueError(f"{type(model).__name__} scores the target "
                             f"only; 'behavior_weights' must be None")
        self.weights = {b: float(w) for b, w in weights.items() if w}
        # Negatives avoid the behavior's train positives only: held-out
        # pairs are unknown to the model and may be drawn like any item
        # (excluding them would leak their labels into training).
        self.samplers = {}
        for b in self.weights:
            hard, ratio = None, 0.0
            if b == dataset.target and self.config.hard_negative_ratio > 0:
                hard = viewed_not_bought(dataset)
                ratio = self.config.hard_negative_ratio
            self.samplers[b] = NegativeSampler(
                dataset.num_users, dataset.num_items,
                dataset.train[b].to(self.device),
                hard_index=hard, hard_ratio=ratio)
        self.generator = torch.Generator().manual_seed(self.config.seed)
        self.optimizer = None
        if model.trainable and any(p.requires_grad
                                   for p in model.parameters()):
            # A model may give some parameters their own learning rate
            # (e.g. weights of fixed features next to embeddings).
            groups = (model.parameter_groups(self.config.lr)
                      if hasattr(model, 'parameter_groups') else
                      model.parameters())
            self.optimizer = torch.optim.Adam(groups, lr=self.config.lr)

    def _score(self, emb, behavior: str, user: Tensor, item: Tensor):
        if hasattr(self.model, 'score_behavior'):
            return self.model.score_behavior(emb, behavior, user, item)
        return self.model.score(emb, user, item)

    def sample(self, user: Tensor, pos: Tensor) -> Dict[str, tuple]:
        r"""The pairs and negatives of one step: for each trained behavior
        :obj:`(user [B], pos [B], neg [B, K])`, the target's being the batch
        :obj:`(user, pos)` and every other weighted behavior's as many random
        train pairs. All randomness comes from the trainer's generator.
        """
        cfg, target = self.config, self.dataset.target
        batch = {}
        for b in self.weights:
            if b == target:
                u, p = user, pos
            else:
                edges = self.dataset.train[b]
                idx = torch.randint(edges.size(1), (user.numel(), ),
                                    generator=self.generator)
                u, p = (edges[0, idx].to(self.device),
                        edges[1, idx].to(self.device))
            n = self.samplers[b].sample(u, cfg.num_negatives,
                                        generator=self.generator)
            batch[b] = (u, p, n)
        return batch

    def batch_loss(self, batch: Dict[str, tuple]) -> Tensor:
        r"""The weighted per-behavior loss plus L2 (and the model's
        auxiliary terms) of a batch from :meth:`sample`.
        """
        cfg = self.config
        emb = self.model(self.graph)
        loss, users, items = 0.0, [], []
        for b, (u, p, n) in batch.items():
            pos_score = self._score(emb, b, u, p)
            neg_score = self._score(emb, b, u, n)
            if cfg.loss == 'bpr':
                term = bpr_loss(pos_score, neg_score)
            else:
                scores = torch.cat([pos_score, neg_score.reshape(-1)])
                labels = torch.cat([torch.ones_like(pos_score),
                                    torch.zeros_like(neg_score.reshape(-1))])
                term = bce_loss(scores, labels)
            loss = loss + self.weights[b] * term
            users.append(u)
            items += [p, n.reshape(-1)]
        if cfg.weight_decay > 0:
            size = next(iter(batch.values()))[0].numel()
            reg = l2_loss(self.model.regularization(torch.cat(users),
                                                    torch.cat(items)), size)
            loss = loss + cfg.weight_decay * reg
        aux = getattr(self.model, 'auxiliary_loss', None)
        if aux is not None:
            terms = aux(emb, self.graph, batch)
            for name, term in terms.items():
                self._aux_totals[name] = (self._aux_totals.get(name, 0.0) +
                                          float(term.detach()))
                loss = loss + term
        return loss

    def loss(self, user: Tensor, pos: Tensor) -> Tensor:
        r"""The weighted per-behavior loss plus L2 on one batch of target
        pairs :obj:`(user, pos)`: :meth:`batch_loss` of :meth:`sample`;
        override for other objectives.

        A model with an ``auxiliary_loss(emb, graph, batch)`` method (the
        objectives of plug-ins: contrastive terms, KL to a prior, an ELBO)
        adds the terms it returns, a dict of named, already weighted scalar
        tensors; :obj:`batch` maps each trained behavior to its
        :obj:`(user [B], pos [B], neg [B, K])` of this step. The mean of
        each term over the epoch is recorded in the history as
        ``aux/<name>``.
        """
        return self.batch_loss(self.sample(user, pos))

    def step(self, user: Tensor, pos: Tensor, batch_index: int = 0) -> float:
        r"""One optimizer step on the batch :obj:`(user, pos)`; returns its
        loss.

        Raises :class:`FloatingPointError` if the loss is not finite.
        """
        loss = self.loss(user, pos)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f'training loss became {float(loss)} at batch {batch_index}'
                f'; the last good checkpoint is kept. Try a lower '
                f"'lr' (now {self.config.lr})")
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def train_epoch(self) -> float:
        r"""One pass over the shuffled train target pairs; returns the mean
        batch loss.

        Raises :class:`FloatingPointError` if the loss becomes non-finite.
        """
        self.model.train()
        self._aux_totals: Dict[str, float] = {}
        num = self.positives.size(1)
        perm = torch.randperm(num, generator=self.generator).to(self.device)
        total, batches = 0.0, 0
        for start in range(0, num, self.config.batch_size):
            idx = perm[start:start + self.config.batch_size]
            user, pos = self.positives[0, idx], self.positives[1, idx]
            total += self.step(user, pos, batches)
            batches += 1
        self.aux_history = {f'aux/{k}': v / max(batches, 1)
                            for k, v in self._aux_totals.items()}
        return total / max(batches, 1)

    def validate(self) -> Optional[Dict[str, float]]:
        r"""Validation metrics of the current model, or :obj:`None` when the
        dataset has no validation pairs.
        """
        if self.dataset.valid is None or self.dataset.valid.numel() == 0:
            return None
        return self.evaluator.evaluate(self.model.score_fn(self.graph),
                                       self.dataset, split='valid')

    def _state(self, epoch: int, result: dict, best_state, bad: int):
        return {
            'epoch': epoch,
            'model': self.model.state_dict(),
            'optimizer': (None if self.optimizer is None else
                          self.optimizer.state_dict()),
            'generator': self.generator.get_state(),
            'torch_rng': torch.get_rng_state(),
            # The training device's CUDA stream only: under torchrun each
            # rank has its own device, and rank 0 writes the checkpoint.
            'cuda_rng': (torch.cuda.get_rng_state(self.device)
                         if self.device.type == 'cuda' else None),
            'python_rng': random.getstate(),
            'numpy_rng': np.random.get_state(),
            'result': result,
            'best_state': best_state,
            'bad_evals': bad,
            'config': self.config.to_dict(),
        }

    def _restore(self, state: dict, path: Path) -> None:
        saved = state.get('config') or {}
        current = self.config.to_dict()
        changed = {k: (saved[k], v) for k, v in current.items()
                   if k in saved and k not in RESUMABLE_CHANGES
                   and saved[k] != v}
        if changed:
            diff = ', '.join(f'{k}: {a!r} -> {b!r}'
                             for k, (a, b) in changed.items())
            raise ValueError(
                f"cannot resume from '{path}': it was written with other "
                f"training settings ({diff}); only {list(RESUMABLE_CHANGES)}"
                f" may change, so use the same settings or another "
                f"'out_dir'")
        try:
            self.model.load_state_dict(state['model'])
        except RuntimeError as e:
            raise ValueError(f"cannot resume from '{path}': it holds "
                             f"another model ({e})") from None
        self.optimizer.load_state_dict(state['optimizer'])
        self.generator.set_state(state['generator'])
        torch.set_rng_state(state['torch_rng'])
        cuda_rng = state.get('cuda_rng')
        if isinstance(cuda_rng, (list, tuple)):  # older checkpoints
            if torch.cuda.is_available():
                torch.cuda.set_rng_state_all(cuda_rng)
        elif cuda_rng is not None and self.device.type == 'cuda':
            torch.cuda.set_rng_state(cuda_rng, self.device)
        if state.get('python_rng') is not None:
            random.setstate(state['python_rng'])
        if state.get('numpy_rng') is not None:
            np.random.set_state(state['numpy_rng'])

    def fit(self, resume: bool = False) -> TrainResult:
        r"""Trains until :obj:`epochs` or early stopping, then loads the
        best validation state into the model.

        With :obj:`resume=True`, continues from ``out_dir/last.pt`` when it
        exists: the result is bit for bit the one of an uninterrupted run
        with the same settings (on the same hardware and software). A run
        that had stopped early stays stopped.

        Raises:
            TrainingInterrupted: ``SIGINT`` or ``SIGTERM`` arrived; the
                checkpoint of the last completed epoch is on disk.
            RunLockedError: Another run holds :obj:`out_dir`.
            CheckpointError: ``last.pt`` is corrupt or truncated.
            ValueError: ``last.pt`` was written with other settings (only
                :data:`RESUMABLE_CHANGES` may differ) or another model.
            FloatingPointError: The loss became NaN or infinite.
        """
        with contextlib.ExitStack() as stack:
            stack.enter_context(deterministic_mode(self.config.deterministic))
            if (self.out_dir is not None and self.optimizer is not None
                    and self.writes_files):
                stack.enter_context(lock_run_dir(self.out_dir))
                for tmp in self.out_dir.glob('.*.pt.*.tmp'):
                    # Left by a killed atomic write; we hold the lock.
                    tmp.unlink(missing_ok=True)
            stack.enter_context(signals_as_interrupts())
            return self._fit(resume)

    def _fit(self, resume: bool) -> TrainResult:
        cfg = self.config
        result = TrainResult()
        if self.optimizer is None:  # nothing to fit: one validation run
            metrics = self.validate()
            if metrics is not None:
                result.best_valid = metrics.get(cfg.metric)
                result.history.append({'epoch': 0, **metrics})
            return result
        best_state, bad, start = None, 0, 1
        has_valid = (self.dataset.valid is not None
                     and self.dataset.valid.numel() > 0)
        replay = {} if has_valid else dict(cfg.replay_validations or ())
        last = None if self.out_dir is None else self.out_dir / 'last.pt'
        saved = False  # whether last.pt belongs to this run
        if resume and last is not None and last.exists():
            state = load_checkpoint(last)
            self._restore(state, last)
            result = TrainResult(**state['result'])
            best_state, bad = state['best_state'], state['bad_evals']
            start, saved = state['epoch'] + 1, True
            # Early stopping is decided again with the current patience.
            result.stopped_early = (bad >= cfg.patience
                                    and state['epoch'] >= cfg.min_epochs)
            if result.stopped_early:
                start = cfg.epochs + 1
        done = dataclasses.asdict(result)  # the last completed epoch
        try:
            from tqdm.auto import tqdm
            # disable=None: no bar when stderr is not a terminal (logs).
            bar = tqdm(range(start, cfg.epochs + 1),
                       disable=None if cfg.progress else True,
                       desc=type(self.model).__name__, leave=False)
        except ImportError:  # pragma: no cover
            bar = range(start, cfg.epochs + 1)
        try:
            for epoch in bar:
                t0 = time.perf_counter()
                loss = self.train_epoch()
                result.epoch_seconds.append(time.perf_counter() - t0)
                result.epochs_run = epoch
                row = {'epoch': epoch, 'loss': loss, **self.aux_history}
                if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
                    metrics = self.validate()
                    if metrics is not None:
                        value = metrics[cfg.metric]
                        row.update({k: v for k, v in metrics.items()
                                    if isinstance(v, (int, float))})
                        improved = (result.best_valid is None
                                    or value > result.best_valid)
                        if improved:
                            result.best_valid = value
                            result.best_epoch = epoch
                            best_state = {k: v.detach().clone() for k, v in
                                          self.model.state_dict().items()}
                            bad = 0
                            if self.out_dir and self.writes_files:
                                atomic_torch_save({'model': best_state,
                                                   'epoch': epoch,
                                                   'valid': value},
                                                  self.out_dir / 'best.pt')
                        else:
                            bad += 1
                        hook = getattr(self.model, 'on_validation', None)
                        if hook is not None:
                            # e.g. refresh learned edge weights: scheduled on
                            # validation only, after the best state is kept.
                            hook(self.graph, improved=improved)
                if epoch in replay:  # no validation pairs: a refit
                    hook = getattr(self.model, 'on_validation', None)
                    if hook is not None:
                        hook(self.graph, improved=replay[epoch])
                result.history.append(row)
                if hasattr(bar, 'set_postfix'):
                    bar.set_postfix(loss=f'{loss:.4f}',
                                    best=result.best_valid,
                                    at=result.best_epoch)
                if bad >= cfg.patience and epoch >= cfg.min_epochs:
                    result.stopped_early = True
                snapshot = dataclasses.asdict(result)
                if last is not None and self.writes_files:
                    atomic_torch_save(self._state(epoch, snapshot,
                                                  best_state, bad), last)
                    saved = True
                done = snapshot
                if result.stopped_early:
                    break
        except KeyboardInterrupt as e:
            if saved:  # last.pt may be one epoch past `done`
                done = load_checkpoint(last)['result']
            raise TrainingInterrupted(interrupt_signal(e),
                                      TrainResult(**done),
                                      last if saved else None) from None
        finally:
            if hasattr(bar, 'close'):
                bar.close()
        if best_state is not None:
            self.model.load_state_dict(best_state)
        elif result.epochs_run:
            result.best_epoch = result.epochs_run
        if math.isnan(result.best_valid or 0.0):  # pragma: no cover
            raise FloatingPointError('validation metric is NaN')
        return result
