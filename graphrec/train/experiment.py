"""One run end to end: build, train with validation, test once, record."""
from __future__ import annotations

import random
import time
from typing import Any, Dict, Optional

import numpy as np
import torch

from graphrec.data.dataset import MultiBehaviorDataset
from graphrec.eval import Evaluator
from graphrec.models import build_model
from graphrec.train.records import append_jsonl, run_row
from graphrec.train.trainer import TrainConfig, Trainer


def seed_everything(seed: int) -> None:
    r"""Seeds Python, NumPy and torch (called per run, never at import)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def run_experiment(model: str, dataset: MultiBehaviorDataset,
                   model_kwargs: Optional[Dict[str, Any]] = None,
                   config: Optional[TrainConfig] = None,
                   evaluator: Optional[Evaluator] = None,
                   out_dir: Optional[str] = None,
                   results: Optional[str] = None,
                   resume: bool = False, return_model: bool = False,
                   **extra: Any) -> Dict[str, Any]:
    r"""Builds the model :obj:`model` by name, trains it with early
    stopping on the validation pairs, evaluates it once on test and returns
    (and appends to :obj:`results`, a JSONL file) one result row.

    The model evaluated on test is the one of the best validation epoch,
    trained without the validation pairs. With :obj:`return_model=True`
    the trained model is returned under the key ``'_model'`` (not written
    to :obj:`results`).
    """
    config = config or TrainConfig()
    evaluator = evaluator or Evaluator(ks=(10, 20))
    model_kwargs = dict(model_kwargs or {})
    seed_everything(config.seed)
    net = build_model(model, dataset.num_users, dataset.num_items,
                      dataset.behaviors, **model_kwargs)
    trainer = Trainer(net, dataset, config, out_dir=out_dir,
                      evaluator=evaluator)
    t0 = time.perf_counter()
    fit = trainer.fit(resume=resume)
    train_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    test = evaluator.evaluate(net.score_fn(trainer.graph), dataset,
                              split='test')
    eval_seconds = time.perf_counter() - t0
    epoch_seconds = fit.epoch_seconds
    row = run_row(
        dataset=dataset.name, checksum=dataset.checksum,
        split=dataset.info.get('split'), masking=test.get('masking'),
        model=model, model_kwargs=model_kwargs, config=config.to_dict(),
        seed=config.seed, selection='best validation epoch, trained '
        'without the validation pairs' if net.trainable else 'no training',
        best_epoch=fit.best_epoch, epochs_run=fit.epochs_run,
        valid_metric=config.metric, valid=fit.best_valid,
        epoch_seconds=(sum(epoch_seconds) / len(epoch_seconds)
                       if epoch_seconds else 0.0),
        train_seconds=train_seconds, eval_seconds=eval_seconds,
        metrics={k: v for k, v in test.items()
                 if isinstance(v, (int, float))}, **extra)
    if results:
        append_jsonl(results, row)
    if return_model:
        row['_model'] = net
    return row
