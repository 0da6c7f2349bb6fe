"""One run end to end: build, train with validation, test once, record."""
from __future__ import annotations

import dataclasses
import random
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from graphrec.data.dataset import MultiBehaviorDataset
from graphrec.eval import Evaluator
from graphrec.models import build_model
from graphrec.train.distributed import (
    is_main_process,
    make_trainer,
    world_size,
)
from graphrec.train.records import (
    append_jsonl,
    atomic_torch_save,
    relative_to_results,
    run_row,
)
from graphrec.train.runtime import (
    deterministic_mode,
    interrupt_signal,
    signals_as_interrupts,
)
from graphrec.train.trainer import (
    TrainConfig,
    TrainingInterrupted,
    TrainResult,
)


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
                   per_user: Optional[str] = None,
                   rerank: Optional[Dict[str, Any]] = None,
                   **extra: Any) -> Dict[str, Any]:
    r"""Builds the model :obj:`model` by name, trains it with early
    stopping on the validation pairs, evaluates it once on test and returns
    (and appends to :obj:`results`, a JSONL file) one result row, with
    ``"status": "complete"``.

    The model evaluated on test is the one of the best validation epoch,
    trained without the validation pairs. With :obj:`return_model=True`
    the trained model is returned under the key ``'_model'`` (and a fitted
    second stage's re-ranker under ``'_reranker'``; neither is written to
    :obj:`results`).

    On ``SIGINT`` or ``SIGTERM`` the row appended to :obj:`results` has
    ``"status": "interrupted"``, the epochs completed, the best validation
    value so far, the signal and the checkpoint to resume from, and no test
    metrics; then :class:`~graphrec.train.TrainingInterrupted` is raised.
    Run again with :obj:`resume=True` to finish the run.

    With :obj:`per_user` (a file path) the per-user test metrics are written
    there (see :func:`~graphrec.eval.evaluate_ranking`; read them with
    :func:`~graphrec.train.load_checkpoint`) and the row names the file under
    ``per_user_file``, for paired significance tests and user groups. The
    row's ``curve`` holds ``[epoch, loss, validation metric]`` of every
    epoch (the metric is :obj:`None` where there was no validation).

    With :obj:`rerank` (:class:`~graphrec.train.RerankConfig` fields, may
    be empty) a second stage is fitted on the validation pairs over the
    trained model's candidates (:func:`~graphrec.train.fit_reranker`) and
    test is scored through it. The row's ``valid`` is then the re-ranker's
    cross-fitted validation figure, ``stage1_valid`` the model's, and
    ``rerank`` holds the settings and the cross-fitted validation metrics.
    With :obj:`RerankConfig.merge_validation` the test candidates, features
    and first-stage scores come from the train graph with the validation
    pairs put back. The row's ``train_seconds`` then includes the second
    stage (its own time is ``rerank['seconds']``).

    Raises:
        TrainingInterrupted: ``SIGINT`` or ``SIGTERM`` arrived.
    """
    config = config or TrainConfig()
    rerank_config = None
    if rerank is not None:
        rerank_config = _rerank_config(rerank, dataset, config)
    evaluator = evaluator or Evaluator(ks=(10, 20))
    model_kwargs = dict(model_kwargs or {})
    seed_everything(config.seed)
    net = build_model(model, dataset.num_users, dataset.num_items,
                      dataset.behaviors, **model_kwargs)
    trainer = make_trainer(net, dataset, config, out_dir=out_dir,
                           evaluator=evaluator)
    main = is_main_process()
    common = dict(
        dataset=dataset.name, checksum=dataset.checksum,
        split=dataset.info.get('split'), model=model,
        model_kwargs=model_kwargs, config=config.to_dict(),
        seed=config.seed, valid_metric=config.metric)
    fit = None
    with signals_as_interrupts(), deterministic_mode(config.deterministic):
        try:
            t0 = time.perf_counter()
            fit = trainer.fit(resume=resume)
            if config.refit and net.trainable and dataset.valid is not None:
                net, trainer = _refit(model, dataset, model_kwargs, config,
                                      evaluator, fit, out_dir, resume)
            score_fn, reranker = net.score_fn(trainer.graph), None
            if rerank_config is not None and main:
                score_fn, reranker = _fit_second_stage(
                    net, trainer, dataset, rerank_config, evaluator, config,
                    fit, extra)
            train_seconds = time.perf_counter() - t0
            t0 = time.perf_counter()
            # In multi-process training the replicas are identical: rank 0
            # tests, the others return a row without test metrics.
            test = evaluator.evaluate(score_fn, dataset,
                                      split='test',
                                      per_user=per_user is not None) \
                if main else {}
            eval_seconds = time.perf_counter() - t0
        except KeyboardInterrupt as e:
            if not isinstance(e, TrainingInterrupted):  # during the test
                last = None if out_dir is None else Path(out_dir) / 'last.pt'
                e = TrainingInterrupted(
                    interrupt_signal(e),
                    fit if fit is not None else TrainResult(),
                    last if last is not None
                    and last.exists() else None)
            if results and main:
                append_jsonl(results, run_row(
                    **common, status='interrupted', signal=e.signal_name,
                    checkpoint=None if e.checkpoint is None
                    else str(e.checkpoint),
                    best_epoch=e.result.best_epoch,
                    epochs_run=e.result.epochs_run, valid=e.result.best_valid,
                    epoch_seconds=_mean(e.result.epoch_seconds), **extra))
            raise e from None
    if per_user is not None and main:
        atomic_torch_save(test.pop('per_user'), per_user)
        extra['per_user_file'] = str(per_user)
    curve = [[h['epoch'], h.get('loss'), h.get(config.metric)]
             for h in fit.history]
    row = run_row(
        **common, status='complete', masking=test.get('masking'),
        transforms=dataset.info.get('transforms'), curve=curve,
        selection=_selection(net, config, dataset, fit, extra),
        best_epoch=fit.best_epoch, epochs_run=fit.epochs_run,
        valid=extra.get('rerank', {}).get('valid', {}).get(
            config.metric, fit.best_valid),
        epoch_seconds=_mean(fit.epoch_seconds),
        train_seconds=train_seconds, eval_seconds=eval_seconds,
        metrics={k: v for k, v in test.items()
                 if isinstance(v, (int, float))}, **extra)
    if world_size() > 1:
        row['world_size'] = world_size()
    if results and main:
        stored = row
        if 'per_user_file' in row:  # portable: relative to the results
            stored = {**row, 'per_user_file': relative_to_results(
                row['per_user_file'], results)}
        append_jsonl(results, stored)
    if return_model:
        row['_model'] = net
        if reranker is not None:
            row['_reranker'] = reranker
    return row


def _rerank_config(rerank, dataset, config):
    r"""Checks :obj:`rerank` before any training."""
    from graphrec.nn.rerank import check_drop
    from graphrec.train.rerank import RerankConfig
    if not isinstance(rerank, dict):
        raise TypeError(f"'rerank' must be a dict of RerankConfig fields "
                        f"(got {type(rerank).__name__})")
    fields = [f.name for f in dataclasses.fields(RerankConfig)]
    unknown = sorted(set(rerank) - set(fields))
    if unknown:
        raise ValueError(f"'rerank' has unknown field(s) {unknown}; the "
                         f"fields are {fields}")
    # The re-ranker's folds, shuffles and initialisation follow the run's
    # seed unless :obj:`rerank` fixes one, so that the spread over seeds
    # holds the second stage's share.
    out = RerankConfig(**{'seed': config.seed, **rerank})
    if config.refit or dataset.valid is None:
        raise ValueError("'rerank' fits on the validation pairs, so the "
                         "model must be trained without them: it needs a "
                         "dataset with validation pairs and refit=False")
    if out.folds < 2:
        raise ValueError(f"'rerank' needs folds >= 2 here: the row's "
                         f"validation figure is the cross-fitted one (got "
                         f"folds={out.folds})")
    if len(dataset.behaviors) < 2:
        raise ValueError(f"'rerank' needs auxiliary behaviors (the dataset "
                         f"has {list(dataset.behaviors)})")
    check_drop(out.drop, dataset.behaviors, out.neighbours)
    return out


def _fit_second_stage(net, trainer, dataset, rerank_config, evaluator,
                      config, fit, extra):
    r"""Fits the re-ranker on the validation pairs; records its
    cross-fitted validation metrics in :obj:`extra` and returns the test
    score function with the fitted re-ranker.
    """
    from graphrec.train.rerank import fit_reranker, second_stage_scores
    stacked = fit_reranker(trainer.graph, net.score_fn(trainer.graph),
                           dataset.valid, rerank_config,
                           progress=config.progress)
    info = {**rerank_config.to_dict(), 'coverage': stacked.coverage,
            'seconds': stacked.seconds, 'losses': stacked.losses,
            'carved_lists': stacked.carved_lists}
    valid = evaluator.evaluate(stacked.cross_fitted, dataset, split='valid')
    info['valid'] = {k: v for k, v in valid.items()
                     if isinstance(v, (int, float))}
    extra['stage1_valid'] = fit.best_valid
    extra['rerank'] = info
    if not rerank_config.merge_validation:  # the fitting candidates serve
        return stacked.score_fn, stacked.reranker
    return (second_stage_scores(net, dataset, stacked.reranker, rerank_config),
            stacked.reranker)


def merge_validation(dataset: MultiBehaviorDataset) -> MultiBehaviorDataset:
    r"""The dataset with its validation pairs put back into the train
    target behavior and no validation split (test untouched).
    """
    if dataset.valid is None:
        raise ValueError(f"dataset '{dataset.name}' has no validation pairs "
                         f"to merge")
    train = dict(dataset.train)
    train[dataset.target] = torch.cat([train[dataset.target],
                                       dataset.valid], dim=1)
    timestamps = dict(dataset.timestamps)
    if timestamps.get(dataset.target) is not None:
        # Validation pairs carry no time of their own here: give them the
        # latest train time so that recency-based components see them last.
        t = timestamps[dataset.target]
        timestamps[dataset.target] = torch.cat(
            [t, t.new_full((dataset.valid.size(1), ), int(t.max()))])
    out = dataset.replace(train=train, valid=None, timestamps=timestamps)
    out.info['split'] = {**(dataset.info.get('split') or {}),
                         'refit': 'validation pairs merged back into train'}
    return out


def replayed_validations(fit, metric: str) -> List[Tuple[int, bool]]:
    r"""The :obj:`(epoch, improved)` validations of a fit before its best
    epoch, for :obj:`TrainConfig.replay_validations` of the refit: the
    hooks that ran after them (e.g. CAGED's weight refreshes) shaped the
    selected model, while the one after the best epoch came after its state
    was kept.
    """
    out, best = [], None
    for row in fit.history:
        value = row.get(metric)
        if value is None or row['epoch'] >= fit.best_epoch:
            continue
        improved = best is None or value > best
        best = value if improved else best
        out.append((int(row['epoch']), improved))
    return out


def _refit(model, dataset, model_kwargs, config, evaluator, fit, out_dir,
           resume):
    r"""A fresh model, same seed, trained on train + validation for the
    epoch count chosen on validation.
    """
    epochs = max(fit.best_epoch, 1)
    cfg = dataclasses.replace(config, epochs=epochs, refit=False,
                              replay_validations=replayed_validations(
                                  fit, config.metric))
    merged = merge_validation(dataset)
    seed_everything(config.seed)
    net = build_model(model, merged.num_users, merged.num_items,
                      merged.behaviors, **model_kwargs)
    trainer = make_trainer(net, merged, cfg,
                           out_dir=None if out_dir is None else
                           str(Path(out_dir) / 'refit'), evaluator=evaluator)
    trainer.fit(resume=resume)
    return net, trainer


def _selection(net, config, dataset, fit, extra) -> str:
    if not net.trainable:
        return 'no training'
    if dataset.valid is None:
        return ('no validation pairs: the last epoch, nothing chosen on '
                'validation')
    if 'rerank' in extra:
        return ('best validation epoch, trained without the validation '
                'pairs; re-ranker fitted on the validation pairs (its '
                'validation figure cross-fitted over user folds)')
    if config.refit and dataset.valid is not None:
        return (f'epochs chosen on validation ({max(fit.best_epoch, 1)}), '
                f'then retrained on train + validation for that many')
    return 'best validation epoch, trained without the validation pairs'


def _mean(values) -> float:
    return sum(values) / len(values) if values else 0.0
