r"""Benchmarks and ablations: models x datasets x seeds, with resumable runs,
mean ± std tables, paired significance tests and plots.

A benchmark config is a JSON file (see ``benchmarks/configs/``)::

    {"defaults": {"train": {...TrainConfig fields...}},
     "datasets": {"tmall": {"train": {...},
                            "models": {"label": {"kwargs": {...},
                                                 "train": {...}}}}},
     "search": {"lr": [...]},                      # used by the tuner
     "models": {"label": {"model": "name", "kwargs": {...},
                          "train": {...}, "baseline": true,
                          "rerank": {...RerankConfig fields...},
                          "datasets": ["retailrocket", ...]}}}

A model entry with ``"datasets"`` runs on those datasets only.

Training settings merge in that order (defaults, dataset, model, the
dataset's entry for that model), then the values chosen on validation
(``tuned-<config>-<dataset>.json`` beside the config, written by
``benchmarks/tune.py``) when that file exists. Constructor arguments merge
the model's, the dataset's entry for that model, then the tuned ones: a
model's per-dataset defaults live in its config, not in code.

:func:`run_grid` appends one JSONL row per run and skips runs whose
complete row is already in the results file with the same settings, so an
interrupted benchmark continues where it stopped. Per-user test metrics go
to a side file per run, for :func:`significance` and user groups.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch

from graphrec.report import complete, group_rows, markdown_table, mean_std

__all__ = ['RunSpec', 'load_config', 'run_grid', 'rerun_since', 'significance',
           'ablation_specs', 'plot_bars', 'plot_curves', 'plot_groups',
           'bench_page']

#: Metrics of benchmark tables.
METRICS = ['hr@10', 'ndcg@10', 'recall@20', 'mrr', 'visited/hr@10',
           'unvisited/hr@10', 'avg_pop@10', 'coverage@10', 'tail_share@10']


@dataclass
class RunSpec:
    r"""One labelled configuration of a benchmark: a registered model, its
    constructor arguments, :class:`~graphrec.train.TrainConfig` fields and
    dataset transforms (see :mod:`graphrec.data.transforms`).
    """
    label: str
    model: str
    kwargs: Dict = field(default_factory=dict)
    train: Dict = field(default_factory=dict)
    transforms: Tuple[str, ...] = ()
    baseline: bool = False
    #: :class:`~graphrec.train.RerankConfig` fields of a second stage
    #: fitted on the validation pairs (see :func:`run_experiment`).
    rerank: Optional[Dict] = None

    def fingerprint(self) -> str:
        r"""A short hash of everything that defines the runs."""
        parts = [self.model, self.kwargs, self.train, list(self.transforms)]
        if self.rerank is not None:  # earlier fingerprints stay as they were
            parts.append({'rerank': self.rerank})
        text = json.dumps(parts, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def load_config(path, dataset: str) -> Tuple[dict, Dict[str, RunSpec],
                                             Optional[Path]]:
    r"""Reads a benchmark config for :obj:`dataset`.

    Returns:
        :obj:`(config, specs by label, tuned file or None)`.
    """
    path = Path(path)
    config = json.loads(path.read_text())
    for key in ('defaults', 'models'):
        if key not in config:
            raise ValueError(f"benchmark config '{path}' has no '{key}' "
                             f"entry")
    base = dict(config['defaults'].get('train', {}))
    per_dataset = config.get('datasets', {}).get(dataset, {})
    base.update(per_dataset.get('train', {}))
    overrides = per_dataset.get('models', {})
    unknown = sorted(set(overrides) - set(config['models']))
    if unknown:
        raise ValueError(f"benchmark config '{path}': datasets.{dataset}."
                         f"models names {unknown}, which are not in "
                         f"'models' {sorted(config['models'])}")
    for label, entry in overrides.items():
        extra = sorted(set(entry) - {'kwargs', 'train'})
        if extra:
            raise ValueError(f"benchmark config '{path}': datasets."
                             f"{dataset}.models.{label} takes 'kwargs' and "
                             f"'train' only (got {extra})")
    tuned_path = path.parent / f'tuned-{path.stem}-{dataset}.json'
    state = (json.loads(tuned_path.read_text()) if tuned_path.exists()
             else {})
    tuned = state.get('chosen', {})
    specs = {}
    for label, entry in config['models'].items():
        if 'model' not in entry:
            raise ValueError(f"benchmark config '{path}': model '{label}' "
                             f"has no 'model' name")
        only = entry.get('datasets')
        if only is not None and (isinstance(only, str) or not all(
                isinstance(d, str) for d in only)):
            raise ValueError(f"benchmark config '{path}': model '{label}' "
                             f"'datasets' must be a list of dataset names "
                             f"(got {only!r})")
        if only is not None and dataset not in only:
            continue
        choice = tuned.get(label, {})
        local = overrides.get(label, {})
        kwargs = {**entry.get('kwargs', {}), **local.get('kwargs', {})}
        train = {**base, **entry.get('train', {}), **local.get('train', {})}
        _check_tuned(state, label, kwargs, train, tuned_path)
        specs[label] = RunSpec(
            label=label, model=entry['model'],
            kwargs={**kwargs, **choice.get('kwargs', {})},
            train={**train, **choice.get('train', {})},
            transforms=tuple(entry.get('transforms', ())),
            baseline=bool(entry.get('baseline', False)),
            rerank=entry.get('rerank'))
    return config, specs, tuned_path if tuned else None


def tuning_settings(kwargs: dict, train: dict, search: dict) -> dict:
    r"""What a tuning trial was made with beside the searched values;
    ``benchmarks/tune.py`` records it with every trial.
    """
    return {'kwargs': kwargs,
            'train': {k: v for k, v in train.items() if k not in search}}


def _check_tuned(state: dict, label: str, kwargs: dict, train: dict,
                 path: Path) -> None:
    # The values chosen for a label hold only for the settings they were
    # chosen under (files written before trials recorded them are taken as
    # they are).
    choice = state.get('chosen', {}).get(label)
    if not choice:
        return
    trial = next((t for t in state.get('trials', {}).get(label, [])
                  if t['point'] == choice.get('train')), None)
    if trial is None or 'settings' not in trial:
        return
    now = json.loads(json.dumps(tuning_settings(kwargs, train,
                                                state.get('search', {}))))
    if trial['settings'] != now:
        raise ValueError(f"'{path.name}' chose {choice.get('train')} for "
                         f"'{label}' under other settings than the config "
                         f"now gives ({trial['settings']} against {now}); "
                         f"delete the file and run benchmarks/tune.py again")


def rerun_since(value: Optional[str],
                log: Callable[[str], None] = print) -> Union[bool, str]:
    r"""The :obj:`rerun` argument of :func:`run_grid` for a command line's
    ``--rerun [TIME]``: :obj:`False` without the flag, the given ISO time,
    or for the bare flag the time now, which is logged with the way to
    resume an interrupted rerun.
    """
    if value is None:
        return False
    if value != 'now':
        return _as_time(value, '--rerun').isoformat()
    now = datetime.now(timezone.utc).isoformat()
    log(f'rerunning the runs written before {now}; after an interruption, '
        f'--rerun {now} resumes without running again what is done')
    return now


def _as_time(value, what: str) -> datetime:
    r"""An ISO time as an aware datetime (UTC when no zone is given)."""
    try:
        time = datetime.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"'{what}' expects an ISO time such as "
                         f"'2026-12-03T10:30+00:00', got '{value}'") from None
    return time if time.tzinfo else time.replace(tzinfo=timezone.utc)


def _done(results: Path) -> Dict[Tuple, dict]:
    from graphrec.train.records import read_jsonl
    if not results.exists():
        return {}
    return {(r['dataset'], r.get('label'), r.get('seed'),
             r.get('spec')): r for r in complete(read_jsonl(results))}


def run_grid(specs: Sequence[RunSpec], datasets: Sequence[str],
             seeds: Sequence[int], results, store=None,
             load: Optional[Callable] = None, progress: bool = True,
             log: Callable[[str], None] = print,
             rerun: Union[bool, str] = False, **extra) -> List[dict]:
    r"""Runs every spec on every dataset with every seed and returns the
    rows (those run now and those found complete in :obj:`results`).

    Args:
        specs (Sequence[RunSpec]): What to run.
        datasets (Sequence[str]): Dataset names or folders.
        seeds (Sequence[int]): Training seeds.
        results (str): The JSONL file rows are appended to.
        store (str, optional): Folder of the per-user metric files.
            (default: :obj:`None`, ``<results stem>-per-user`` beside it)
        load (Callable, optional): :obj:`name -> dataset` with validation.
            (default: :func:`graphrec.cli.load_data`)
        progress (bool): Progress bars. (default: :obj:`True`)
        log (Callable): Where one line per run goes. (default: :obj:`print`)
        rerun (bool or str): Run again what :obj:`results` already holds
            complete (after a change of the code rather than of the
            settings); the new row replaces the old one on the pages. An
            ISO time (``'2026-12-03T10:30+00:00'``) reruns only the runs
            whose latest row was written before it, so an interrupted rerun
            resumes where it stopped when called again with the same time.
            (default: :obj:`False`)
        **extra: Fields added to every row.
    """
    from graphrec.data.transforms import apply_transform
    from graphrec.eval import Evaluator
    from graphrec.train.experiment import run_experiment
    from graphrec.train.trainer import TrainConfig
    if load is None:
        from graphrec.cli import load_data as load
    results = Path(results)
    store = Path(store) if store else results.with_name(
        results.stem + '-per-user')
    done = {} if rerun is True else _done(results)
    if rerun and rerun is not True:  # what was written since still counts
        since = _as_time(rerun, 'rerun')
        done = {k: r for k, r in done.items()
                if r.get('time') and _as_time(r['time'], 'time') >= since}
    evaluator = Evaluator(ks=(10, 20))
    rows = []
    for name in datasets:
        base = load(name)
        for spec in specs:
            data = base
            for t in spec.transforms:
                data = apply_transform(data, t)
            key_spec = spec.fingerprint()
            for seed in seeds:
                key = (data.name, spec.label, seed, key_spec)
                if key in done:
                    rows.append(done[key])
                    continue
                cfg = TrainConfig(**{**_train_for(spec.train, data),
                                     'seed': seed, 'progress': progress})
                per_user = store / f'{data.name}-{spec.label}-{key_spec}-s' \
                    f'{seed}.pt'
                # A rerun keeps the earlier run's per-user file (its row
                # still points at it) and writes beside it.
                # (An ablation's label has a '/': its files sit in a
                # folder named after the model.)
                first, again = per_user, 1
                while rerun and per_user.exists():
                    per_user = first.with_name(
                        f'{first.stem}-rerun{again}.pt')
                    again += 1
                row = run_experiment(spec.model, data, spec.kwargs, cfg,
                                     evaluator=evaluator,
                                     results=str(results),
                                     per_user=str(per_user),
                                     rerank=spec.rerank,
                                     label=spec.label, spec=key_spec,
                                     baseline=spec.baseline, **extra)
                m = row['metrics']
                log(f"{data.name} {spec.label} seed {seed}: HR@10 "
                    f"{m['hr@10']:.4f} NDCG@10 {m['ndcg@10']:.4f} "
                    f"(best epoch {row['best_epoch']}, "
                    f"{row['epoch_seconds']:.2f} s/epoch)")
                rows.append(row)
    return rows


def _train_for(train: dict, data) -> dict:
    r"""The training settings for :obj:`data`: a graph ablation that drops
    behaviors (e.g. ``behaviors=view+buy``) drops their multi-task weights
    too, so the same config runs on the reduced graph.
    """
    weights = train.get('behavior_weights')
    if not weights:
        return train
    kept = {b: w for b, w in weights.items() if b in data.behaviors}
    return {**train, 'behavior_weights': kept or None}


def _per_user(rows: Sequence[dict], metric: str):
    r"""The per-user values of :obj:`metric` averaged over the rows' seeds,
    with the users they belong to.
    """
    from graphrec.train.records import load_checkpoint
    users, total = None, None
    for row in rows:
        data = load_checkpoint(row['per_user_file'])
        if users is None:
            users, total = data['user'], data[metric].clone()
        else:
            if not torch.equal(users, data['user']):
                raise ValueError(f"runs of '{row.get('label')}' were "
                                 f"evaluated on different users")
            total += data[metric]
    return users, total / len(rows)


def significance(rows: Sequence[dict], metrics=('hr@10', 'ndcg@10'),
                 against: Optional[str] = None,
                 num_permutations: int = 10000) -> List[dict]:
    r"""Paired permutation tests (see
    :func:`~graphrec.eval.stats.paired_permutation_test`) of every label
    against a reference label per dataset, on per-user test metrics
    averaged over seeds.

    The reference is :obj:`against`, or else the strongest baseline (rows
    marked ``baseline``) by mean HR@10 over seeds; choosing the strongest
    makes the comparison harder, never easier.
    """
    from graphrec.eval.stats import paired_permutation_test
    groups: Dict[Tuple[str, str], List[dict]] = {}
    # The latest run per seed, as in the tables: a rerun replaces the
    # earlier row of its seed instead of joining it.
    for key, group in group_rows(rows).items():
        group = [r for r in group if r.get('per_user_file')
                 and Path(r['per_user_file']).exists()]
        if group:
            groups[key] = group
    out = []
    for dataset in sorted({d for d, _ in groups}):
        labels = {lab: g for (d, lab), g in groups.items() if d == dataset}
        ref = against
        if ref is None:
            base = {lab: mean_std([r['metrics']['hr@10'] for r in g])[0]
                    for lab, g in labels.items() if g[0].get('baseline')}
            ref = max(base, key=base.get) if base else None
        if ref not in labels:
            continue
        for label, group in labels.items():
            if label == ref:
                continue
            entry = {'dataset': dataset, 'label': label, 'against': ref,
                     'seeds': len(group)}
            for metric in metrics:
                users_a, a = _per_user(group, metric)
                users_b, b = _per_user(labels[ref], metric)
                if not torch.equal(users_a, users_b):
                    raise ValueError(
                        f"'{label}' and '{ref}' on '{dataset}' were "
                        f"evaluated on different users; a paired test "
                        f"needs the same ones")
                test = paired_permutation_test(a, b, num_permutations)
                entry[metric] = test
            out.append(entry)
    return out


def significance_table(entries: Sequence[dict],
                       metrics=('hr@10', 'ndcg@10')) -> str:
    r"""A Markdown table of :func:`significance` results."""
    if not entries:
        return '(no per-user results to compare)'
    head = ['dataset', 'model', 'against'] + [
        f'{m} diff (p)' for m in metrics]
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for e in entries:
        cells = [e['dataset'], e['label'], e['against']]
        for m in metrics:
            t = e[m]
            cells.append(f"{t['mean_diff']:+.4f} (p={t['p_value']:.4f})")
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def ablation_specs(base: RunSpec, ablations: Dict[str, Dict],
                   graph: Sequence[str] = ()) -> List[RunSpec]:
    r"""The full configuration and one spec per ablation: each named set of
    constructor overrides (a value of ``None`` removes the argument, so
    the model's default applies), and each graph transform, with the same
    training settings.
    """
    specs = [RunSpec(f'{base.label}', base.model, dict(base.kwargs),
                     dict(base.train), tuple(base.transforms))]
    for name, overrides in ablations.items():
        kwargs = dict(base.kwargs)
        for k, v in overrides.items():
            kwargs[k] = v
        specs.append(RunSpec(f'{base.label}/{name}', base.model, kwargs,
                             dict(base.train), tuple(base.transforms)))
    for t in graph:
        specs.append(RunSpec(f'{base.label}/graph:{t}', base.model,
                             dict(base.kwargs), dict(base.train),
                             tuple(base.transforms) + (t, )))
    return specs


def _pyplot():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def plot_bars(rows: Sequence[dict], metrics: Sequence[str], path,
              title: str = '') -> None:
    r"""Bars of each metric's mean over seeds, with ± std error bars, one
    group of bars per label.
    """
    from graphrec.report import group_rows
    plt = _pyplot()
    groups = group_rows(rows)
    labels = [label for (_, label) in groups]
    fig, axes = plt.subplots(1, len(metrics), figsize=(
        3.2 * len(metrics) + 1, 0.35 * len(labels) + 1.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        means, stds = [], []
        for group in groups.values():
            values = [r['metrics'].get(metric, float('nan')) for r in group]
            m, s = mean_std(values)
            means.append(m)
            stds.append(s)
        y = range(len(labels))
        ax.barh(list(y), means, xerr=stds, color='#4c72b0', alpha=0.85,
                capsize=3)
        ax.set_yticks(list(y))
        ax.set_yticklabels(labels if ax is axes[0][0] else [''] * len(y),
                           fontsize=8)
        ax.invert_yaxis()
        ax.set_title(metric, fontsize=9)
        ax.grid(axis='x', alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curves(rows: Sequence[dict], path, metric: str = 'ndcg@10',
                title: str = '') -> None:
    r"""Validation :obj:`metric` against epoch for every run (one line per
    seed, one colour per label).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    colours = {}
    for row in complete(rows):
        curve = [(e, v) for e, _, v in row.get('curve') or []
                 if v is not None]
        if not curve:
            continue
        label = row.get('label') or row['model']
        first = label not in colours
        colours.setdefault(label, f'C{len(colours) % 10}')
        ax.plot(*zip(*curve), color=colours[label], alpha=0.7,
                label=label if first else None)
    ax.set_xlabel('epoch')
    ax.set_ylabel(f'validation {metric}')
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if colours:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_groups(table: Dict[str, List[dict]], metric: str, path,
                title: str = '') -> None:
    r"""A metric by user group (e.g. sparsity), one line per label;
    :obj:`table` maps a label to :func:`~graphrec.eval.stats.group_means`
    rows.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, (label, groups) in enumerate(table.items()):
        names = [f"{g['group']}\n({g['users']})" for g in groups]
        ax.plot(range(len(groups)), [g[metric] for g in groups], marker='o',
                label=label, color=f'C{i % 10}')
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels(names, fontsize=8)
    ax.set_xlabel('train purchases per user (users)')
    ax.set_ylabel(metric)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_page(path, title: str, command: str, rows: Sequence[dict],
               notes: Sequence[str] = (), images: Sequence[str] = (),
               extra_sections: Sequence[str] = ()) -> None:
    r"""A results page: the command, the mean ± std table, notes, extra
    sections (e.g. significance), images and provenance.
    """
    from graphrec.report import provenance
    from graphrec.train.records import atomic_write_bytes
    text = [f'# {title}', '', f'Generated by `{command}`. Full ranking over '
            'all items, train and validation target items masked, '
            'pessimistic ties, test read once per run; epochs chosen by '
            'early stopping on validation pairs carved from train. Mean ± '
            'std over seeds (sample std); `epoch_seconds` is the mean '
            'training time per epoch on this machine (2 CPU cores), '
            '`eval_seconds` the full-ranking test evaluation of all users.',
            '',
            markdown_table(rows, METRICS, extra=['best_epoch',
                                                 'epoch_seconds',
                                                 'eval_seconds']), '']
    text += list(notes)
    text += list(extra_sections)
    text += [f'![{Path(i).stem}]({Path(i).name})' for i in images]
    text += ['', '## Provenance', '', provenance(rows), '']
    atomic_write_bytes(path, '\n'.join(text).encode())


def bench_page(rows: Sequence[dict], pages, stem: str, title: str,
               command: str, notes: Sequence[str] = (),
               against: Optional[str] = None) -> Path:
    r"""Writes ``<pages>/<stem>.md`` with bar and curve plots beside it: the
    mean ± std table, :obj:`notes`, and paired significance against
    :obj:`against` or the strongest baseline. Returns the page's path.
    """
    pages = Path(pages)
    pages.mkdir(parents=True, exist_ok=True)
    bars, curves = pages / f'{stem}-bars.png', pages / f'{stem}-curves.png'
    plot_bars(rows, ['hr@10', 'ndcg@10', 'unvisited/hr@10', 'avg_pop@10'],
              bars, title)
    plot_curves(rows, curves, title=f'validation curves: {title}')
    sections = ['## Paired significance', '',
                'Sign-flip permutation test on per-user test metrics '
                '(averaged over seeds) against ' +
                (f'`{against}`' if against else
                 'the strongest baseline by mean test HR@10 (picked on '
                 'test, which can only make the comparison harder)') +
                '; runs without per-user files are left out; p-values are '
                'not corrected for the number of rows compared.', '',
                significance_table(significance(rows, against=against)), '']
    path = pages / f'{stem}.md'
    write_page(path, title, command, rows, notes=notes,
               images=[bars, curves], extra_sections=sections)
    return path
