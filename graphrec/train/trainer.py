"""Mini-batch training with early stopping on validation, checkpoints and
resume.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import torch
from torch import Tensor

from graphrec.data.dataset import MultiBehaviorDataset
from graphrec.data.graph import BehaviorGraph
from graphrec.data.sampling import NegativeSampler, viewed_not_bought
from graphrec.eval import Evaluator
from graphrec.models.base import Recommender
from graphrec.train.losses import bce_loss, bpr_loss, l2_loss
from graphrec.train.records import atomic_torch_save


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


class Trainer:
    r"""Trains a :class:`~graphrec.models.base.Recommender` on the target
    behavior with BPR and uniform negatives, evaluates on the validation
    pairs every :obj:`eval_every` epochs, keeps the best model (early
    stopping with :obj:`patience`), and writes checkpoints atomically.

    No test metric is ever computed here: model selection sees validation
    only. The held-out (validation and test) pairs are read for one purpose,
    to keep them out of the negative pool; negatives are drawn from items
    the user has no train interaction of that behavior with.

    Args:
        model (Recommender): The model.
        dataset (MultiBehaviorDataset): Data with a validation split.
        config (TrainConfig): Hyperparameters.
        out_dir (str, optional): Folder for ``last.pt`` (every epoch, for
            resume) and ``best.pt``. (default: :obj:`None`, nothing written)
        evaluator (Evaluator, optional): Validation evaluator.
    """
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
        heldout = dataset.heldout_index().to(self.device)
        self.samplers = {}
        for b in self.weights:
            hard, ratio = None, 0.0
            if b == dataset.target and self.config.hard_negative_ratio > 0:
                hard = viewed_not_bought(dataset)
                ratio = self.config.hard_negative_ratio
            self.samplers[b] = NegativeSampler(
                dataset.num_users, dataset.num_items,
                dataset.train[b].to(self.device), exclude_index=heldout,
                hard_index=hard, hard_ratio=ratio)
        self.generator = torch.Generator().manual_seed(self.config.seed)
        self.optimizer = None
        if model.trainable and any(p.requires_grad
                                   for p in model.parameters()):
            self.optimizer = torch.optim.Adam(model.parameters(),
                                              lr=self.config.lr)

    def _score(self, emb, behavior: str, user: Tensor, item: Tensor):
        if hasattr(self.model, 'score_behavior'):
            return self.model.score_behavior(emb, behavior, user, item)
        return self.model.score(emb, user, item)

    def loss(self, user: Tensor, pos: Tensor) -> Tensor:
        r"""The weighted per-behavior loss plus L2 on one batch of target
        pairs :obj:`(user, pos)`; override for other objectives.
        """
        cfg, target = self.config, self.dataset.target
        emb = self.model(self.graph)
        loss, users, items = 0.0, [], []
        for b, weight in self.weights.items():
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
            pos_score = self._score(emb, b, u, p)
            neg_score = self._score(emb, b, u, n)
            if cfg.loss == 'bpr':
                term = bpr_loss(pos_score, neg_score)
            else:
                scores = torch.cat([pos_score, neg_score.reshape(-1)])
                labels = torch.cat([torch.ones_like(pos_score),
                                    torch.zeros_like(neg_score.reshape(-1))])
                term = bce_loss(scores, labels)
            loss = loss + weight * term
            users.append(u)
            items += [p, n.reshape(-1)]
        if cfg.weight_decay > 0:
            reg = l2_loss(self.model.regularization(torch.cat(users),
                                                    torch.cat(items)),
                          user.numel())
            loss = loss + cfg.weight_decay * reg
        return loss

    def train_epoch(self) -> float:
        r"""One pass over the shuffled train target pairs; returns the mean
        batch loss.

        Raises :class:`FloatingPointError` if the loss becomes non-finite.
        """
        self.model.train()
        num = self.positives.size(1)
        perm = torch.randperm(num, generator=self.generator).to(self.device)
        total, batches = 0.0, 0
        for start in range(0, num, self.config.batch_size):
            idx = perm[start:start + self.config.batch_size]
            user, pos = self.positives[0, idx], self.positives[1, idx]
            loss = self.loss(user, pos)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f'training loss became {float(loss)} at batch {batches}'
                    f'; the last good checkpoint is kept. Try a lower '
                    f"'lr' (now {self.config.lr})")
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            total += loss.item()
            batches += 1
        return total / max(batches, 1)

    def validate(self) -> Optional[Dict[str, float]]:
        r"""Validation metrics of the current model, or :obj:`None` when the
        dataset has no validation pairs.
        """
        if self.dataset.valid is None or self.dataset.valid.numel() == 0:
            return None
        return self.evaluator.evaluate(self.model.score_fn(self.graph),
                                       self.dataset, split='valid')

    def _state(self, epoch: int, result: TrainResult, best_state, bad: int):
        return {
            'epoch': epoch,
            'model': self.model.state_dict(),
            'optimizer': (None if self.optimizer is None else
                          self.optimizer.state_dict()),
            'generator': self.generator.get_state(),
            'torch_rng': torch.get_rng_state(),
            'result': dataclasses.asdict(result),
            'best_state': best_state,
            'bad_evals': bad,
            'config': self.config.to_dict(),
        }

    def fit(self, resume: bool = False) -> TrainResult:
        r"""Trains until :obj:`epochs` or early stopping, then loads the
        best validation state into the model. With :obj:`resume=True`,
        continues from ``out_dir/last.pt`` when it exists.
        """
        cfg = self.config
        result = TrainResult()
        if self.optimizer is None:  # nothing to fit: one validation run
            metrics = self.validate()
            if metrics is not None:
                result.best_valid = metrics.get(cfg.metric)
                result.history.append({'epoch': 0, **metrics})
            return result
        best_state, bad, start = None, 0, 1
        if resume and self.out_dir and (self.out_dir / 'last.pt').exists():
            state = torch.load(self.out_dir / 'last.pt', weights_only=False)
            self.model.load_state_dict(state['model'])
            self.optimizer.load_state_dict(state['optimizer'])
            self.generator.set_state(state['generator'])
            torch.set_rng_state(state['torch_rng'])
            result = TrainResult(**state['result'])
            best_state, bad = state['best_state'], state['bad_evals']
            start = state['epoch'] + 1
        try:
            from tqdm.auto import tqdm
            # disable=None: no bar when stderr is not a terminal (logs).
            bar = tqdm(range(start, cfg.epochs + 1),
                       disable=None if cfg.progress else True,
                       desc=type(self.model).__name__, leave=False)
        except ImportError:  # pragma: no cover
            bar = range(start, cfg.epochs + 1)
        for epoch in bar:
            t0 = time.perf_counter()
            loss = self.train_epoch()
            result.epoch_seconds.append(time.perf_counter() - t0)
            result.epochs_run = epoch
            row = {'epoch': epoch, 'loss': loss}
            if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
                metrics = self.validate()
                if metrics is not None:
                    value = metrics[cfg.metric]
                    row.update({k: v for k, v in metrics.items()
                                if isinstance(v, (int, float))})
                    if result.best_valid is None or value > result.best_valid:
                        result.best_valid, result.best_epoch = value, epoch
                        best_state = {k: v.detach().clone() for k, v in
                                      self.model.state_dict().items()}
                        bad = 0
                        if self.out_dir:
                            atomic_torch_save({'model': best_state,
                                               'epoch': epoch,
                                               'valid': value},
                                              self.out_dir / 'best.pt')
                    else:
                        bad += 1
            result.history.append(row)
            if hasattr(bar, 'set_postfix'):
                bar.set_postfix(loss=f'{loss:.4f}', best=result.best_valid,
                                at=result.best_epoch)
            if self.out_dir:
                atomic_torch_save(self._state(epoch, result, best_state, bad),
                                  self.out_dir / 'last.pt')
            if bad >= cfg.patience and epoch >= cfg.min_epochs:
                result.stopped_early = True
                break
        if best_state is not None:
            self.model.load_state_dict(best_state)
        elif result.epochs_run:
            result.best_epoch = result.epochs_run
        if math.isnan(result.best_valid or 0.0):  # pragma: no cover
            raise FloatingPointError('validation metric is NaN')
        return result
