"""The ``graphrec`` command: datasets, train, evaluate, recommend, demo,
bench, ablate, report.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

DEFAULT_MODELS = {
    'pop': {},
    'reranker': {'prior': 'conversion'},
    'mf': {},
    'lightgcn': {'behaviors': 'target'},
}


def parse_model_args(items: Optional[List[str]],
                     option: str = '--model-arg') -> Dict[str, Any]:
    r"""Parses ``key=value`` pairs; values are JSON where they parse as
    JSON (numbers, lists, true/false) and strings otherwise.
    """
    out = {}
    for item in items or []:
        if '=' not in item:
            raise SystemExit(f"error: {option} expects key=value "
                             f"(got {item!r})")
        key, value = item.split('=', 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def load_data(name: str, split_seed: int = 0, verify: bool = True,
              behaviors: Optional[List[str]] = None,
              columns: Optional[List[str]] = None):
    r"""Loads a dataset by registered name, folder or event log (which
    needs :obj:`behaviors`, and :obj:`columns` unless they are ``user item
    behavior``) and carves the validation pairs out of train.
    """
    from graphrec.data.split import carve_validation
    from graphrec.datasets import load_dataset
    dataset = load_dataset(name, verify=verify, behaviors=behaviors,
                           columns=columns)
    if dataset.valid is None:
        dataset = carve_validation(dataset, seed=split_seed)
    return dataset


def add_log_args(p: argparse.ArgumentParser) -> None:
    r"""Adds the options that read an event log file as a dataset."""
    p.add_argument('--behaviors', nargs='+', default=None,
                   help='event logs: behaviors in cascade order, target '
                   'last')
    p.add_argument('--columns', nargs='+', default=None,
                   metavar='COLUMN', help='event logs: the user, item and '
                   'behavior columns, optionally the time column (default: '
                   'user item behavior)')


def _load(args, name: Optional[str] = None):
    return load_data(name or args.dataset, getattr(args, 'split_seed', 0),
                     behaviors=args.behaviors, columns=args.columns)


def add_train_args(p: argparse.ArgumentParser) -> None:
    r"""Adds the dataset, split-seed and :class:`TrainConfig` options shared by
    ``train`` and ``demo`` to :obj:`p`.
    """
    from graphrec.train.trainer import TrainConfig
    d = TrainConfig()
    p.add_argument('--dataset', default='synthetic',
                   help='registered name or dataset folder '
                   '(default: synthetic)')
    p.add_argument('--split-seed', type=int, default=0,
                   help='seed of the validation split (default: 0)')
    add_log_args(p)
    p.add_argument('--epochs', type=int, default=d.epochs)
    p.add_argument('--batch-size', type=int, default=d.batch_size)
    p.add_argument('--lr', type=float, default=d.lr)
    p.add_argument('--weight-decay', type=float, default=d.weight_decay)
    p.add_argument('--num-negatives', type=int, default=d.num_negatives)
    p.add_argument('--eval-every', type=int, default=d.eval_every)
    p.add_argument('--patience', type=int, default=d.patience)
    p.add_argument('--min-epochs', type=int, default=d.min_epochs)
    p.add_argument('--loss', default=d.loss, choices=['bpr', 'bce'])
    p.add_argument('--hard-negatives', type=float,
                   default=d.hard_negative_ratio, metavar='RATIO',
                   help='share of "viewed but not bought" negatives')
    p.add_argument('--metric', default=d.metric)
    p.add_argument('--seed', type=int, default=d.seed)
    p.add_argument('--device', default=d.device)
    p.add_argument('--refit', action='store_true',
                   help='after choosing the epochs on validation, retrain on '
                   'train + validation for that many and test that model')
    p.add_argument('--deterministic', action='store_true',
                   help='deterministic kernels only (see docs/reliability.md)')
    p.add_argument('--no-progress', action='store_true')


def train_config(args, seed: Optional[int] = None):
    r"""Builds a :class:`TrainConfig` from parsed arguments; :obj:`seed`
    overrides :obj:`args.seed` when given.
    """
    from graphrec.train.trainer import TrainConfig
    return TrainConfig(epochs=args.epochs, batch_size=args.batch_size,
                       lr=args.lr, weight_decay=args.weight_decay,
                       num_negatives=args.num_negatives,
                       eval_every=args.eval_every, patience=args.patience,
                       min_epochs=args.min_epochs, loss=args.loss,
                       hard_negative_ratio=args.hard_negatives,
                       metric=args.metric,
                       seed=args.seed if seed is None else seed,
                       device=args.device, progress=not args.no_progress,
                       refit=args.refit,
                       deterministic=args.deterministic)


def cmd_datasets(args) -> int:
    r"""``graphrec datasets``: lists the registered datasets, or prints one
    dataset's statistics as JSON.
    """
    from graphrec.datasets import list_datasets
    if args.action == 'list':
        for name in list_datasets():
            print(name)
        return 0
    if not args.name:
        raise SystemExit('error: datasets stats needs a dataset name')
    from graphrec.datasets import load_dataset
    print(json.dumps(load_dataset(args.name).stats(), indent=1))
    return 0


def print_table(rows: List[Dict], metrics: List[str]) -> None:
    r"""Prints result rows as a Markdown table of :obj:`metrics`, with epoch
    and evaluation times.
    """
    from graphrec.report import markdown_table
    print(markdown_table(rows, metrics, extra=['epoch_seconds',
                                               'eval_seconds']))


def resume_command(args, out: Path) -> str:
    r"""The ``graphrec train`` command line that resumes the run of
    :obj:`args` from :obj:`out`: the same arguments plus ``--resume`` (and
    ``--out`` where it was left to its default).
    """
    argv = list(getattr(args, 'argv', None) or ['train', '--model',
                                                 args.model])
    if args.out is None:
        argv += ['--out', str(out)]
    if '--resume' not in argv:
        argv.append('--resume')
    return 'graphrec ' + shlex.join(argv)


def cmd_train(args) -> int:
    r"""``graphrec train``: trains one model, writes its ``model.pt`` and
    appends its result row.

    On ``SIGINT``/``SIGTERM`` it appends an ``"interrupted"`` row, prints
    the command that resumes the run and returns :math:`128 +` the signal
    number, as a shell reports a process ended by that signal.

    Started by ``torchrun`` (``WORLD_SIZE`` above 1), every process trains a
    replica on its shard of each batch (gloo on CPU, NCCL with
    ``--device cuda``); rank 0 writes the row, checkpoints and ``model.pt``
    (see :mod:`graphrec.train.distributed`).
    """
    from graphrec.train.distributed import distributed
    with distributed(args.device):
        return _train(args)


def _train(args) -> int:
    from graphrec.train.distributed import is_main_process, world_size
    from graphrec.train.experiment import run_experiment
    from graphrec.train.records import atomic_torch_save
    from graphrec.train.trainer import TrainingInterrupted
    dataset = _load(args)
    kwargs = parse_model_args(args.model_arg)
    out = Path(args.out or f'runs/{dataset.name}-{args.model}-s{args.seed}')
    try:
        rerank = (None if args.rerank is None
                  else parse_model_args(args.rerank, '--rerank'))
        row = run_experiment(args.model, dataset, kwargs, train_config(args),
                             out_dir=str(out), results=args.results,
                             resume=args.resume, return_model=True,
                             rerank=rerank)
    except TrainingInterrupted as e:
        if not is_main_process():
            return e.exit_code
        print(f'\n{e}', file=sys.stderr)
        if args.results:
            print(f'an "interrupted" row was appended to {args.results}',
                  file=sys.stderr)
        if e.checkpoint is not None:
            command = resume_command(args, out)
            if world_size() > 1:  # started by torchrun: resume the same way
                command = command.replace(
                    'graphrec ', f'torchrun --nproc_per_node {world_size()} '
                    f'-m graphrec.cli ', 1)
            print(f'resume with: {command}', file=sys.stderr)
        return e.exit_code
    model = row.pop('_model')
    reranker = row.pop('_reranker', None)
    if not is_main_process():
        return 0
    saved = {'model': args.model, 'model_kwargs': kwargs,
             'dataset': args.dataset, 'behaviors': args.behaviors,
             'columns': args.columns, 'split_seed': args.split_seed,
             'checksum': dataset.checksum, 'state': model.state_dict()}
    if reranker is not None:
        from graphrec.train.rerank import RerankConfig
        fields = RerankConfig.__dataclass_fields__
        saved['rerank'] = {
            'config': {k: v for k, v in row['rerank'].items()
                       if k in fields},
            'num_features': reranker.num_features,
            'state': reranker.state_dict()}
    atomic_torch_save(saved, out / 'model.pt')
    print_table([row], ['hr@10', 'ndcg@10', 'recall@20', 'mrr'])
    print(f'model written to {out / "model.pt"}; result row appended to '
          f'{args.results}')
    return 0


def load_checkpoint(path: str, ckpt: Optional[dict] = None):
    r"""Loads a ``model.pt`` written by ``graphrec train``, in eval mode; exits
    if the dataset changed since training.

    Returns:
        :obj:`(model, dataset, graph)`, with the train graph.

    Raises:
        CheckpointError: The file is corrupt or truncated.
    """
    from graphrec.data.graph import BehaviorGraph
    from graphrec.models import build_model
    from graphrec.train.records import load_checkpoint as read_checkpoint
    ckpt = read_checkpoint(path) if ckpt is None else ckpt
    dataset = load_data(ckpt['dataset'], ckpt['split_seed'],
                        behaviors=ckpt.get('behaviors'),
                        columns=ckpt.get('columns'))
    if ckpt['checksum'] != dataset.checksum:
        raise SystemExit(f"error: dataset '{ckpt['dataset']}' changed since "
                         f"the model was trained (checksum "
                         f"{dataset.checksum} != {ckpt['checksum']})")
    model = build_model(ckpt['model'], dataset.num_users, dataset.num_items,
                        dataset.behaviors, **ckpt['model_kwargs'])
    model.load_state_dict(ckpt['state'])
    model.eval()
    return model, dataset, BehaviorGraph.from_dataset(dataset)


def checkpoint_scores(path: str):
    r"""The score function of a ``model.pt``: the model's, or that of the
    second stage saved with it (``graphrec train --rerank``).

    Returns:
        :obj:`(score_fn, model, dataset, graph)`.
    """
    from graphrec.train.records import load_checkpoint as read_checkpoint
    ckpt = read_checkpoint(path)
    model, dataset, graph = load_checkpoint(path, ckpt)
    saved = ckpt.get('rerank')
    if saved is None:
        return model.score_fn(graph), model, dataset, graph
    from graphrec.nn.rerank import ListwiseReranker, RerankerBag
    from graphrec.train.rerank import RerankConfig, second_stage_scores
    config = RerankConfig(**saved['config'])
    members = [ListwiseReranker(saved['num_features'], config.hidden,
                                config.num_layers)
               for _ in range(config.bag)]
    reranker = members[0] if config.bag == 1 else RerankerBag(members)
    reranker.load_state_dict(saved['state'])
    return (second_stage_scores(model, dataset, reranker.eval(), config),
            model, dataset, graph)


def cmd_evaluate(args) -> int:
    r"""``graphrec evaluate``: prints a checkpoint's metrics on the test or
    validation split.
    """
    from graphrec.eval import Evaluator
    score_fn, _, dataset, _ = checkpoint_scores(args.checkpoint)
    result = Evaluator(ks=tuple(args.k)).evaluate(score_fn, dataset,
                                                  split=args.split)
    for key, value in result.items():
        print(f'{key}\t{value}')
    return 0


def cmd_recommend(args) -> int:
    r"""``graphrec recommend``: prints the top-:math:`k` items of each user as
    JSON lines, in original ids, train and validation target items excluded.
    """
    from graphrec.models.base import top_k
    score_fn, _, dataset, graph = checkpoint_scores(args.checkpoint)
    user_ids = dataset.user_ids
    lookup = ({str(u): i for i, u in enumerate(user_ids)}
              if user_ids is not None else None)
    index = []
    for user in args.users:
        if lookup is not None:
            if user not in lookup:
                raise SystemExit(f'error: unknown user id {user!r}')
            index.append(lookup[user])
        else:
            if not user.isdigit() or int(user) >= dataset.num_users:
                raise SystemExit(f'error: user id must be an int in [0, '
                                 f'{dataset.num_users - 1}] (got {user!r})')
            index.append(int(user))
    exclude = dataset.train[dataset.target]
    if dataset.valid is not None:
        exclude = torch.cat([exclude, dataset.valid], dim=1)
    scores, items = top_k(score_fn, dataset.num_users, dataset.num_items,
                          torch.tensor(index), k=args.k,
                          exclude_index=exclude, device=graph.device)
    names = dataset.item_ids
    for user, row, score in zip(args.users, items.tolist(), scores.tolist()):
        shown = [names[i] if names is not None else i for i in row]
        print(json.dumps({'user': user, 'items': shown,
                          'scores': [round(s, 5) for s in score]}))
    return 0


def cmd_demo(args) -> int:
    r"""``graphrec demo``: trains the default baselines over several seeds and
    prints a table of their test metrics.
    """
    from graphrec.eval import Evaluator
    from graphrec.train.experiment import run_experiment
    t0 = time.perf_counter()
    dataset = _load(args)
    print(f'{dataset}\nvalidation carved from train: '
          f"{dataset.info.get('split')}")
    evaluator = Evaluator(ks=(10, 20))
    rows = []
    for name, kwargs in DEFAULT_MODELS.items():
        for seed in args.seeds:
            cfg = train_config(args, seed=seed)
            row = run_experiment(name, dataset, kwargs, cfg,
                                 evaluator=evaluator, results=args.results)
            row['label'] = name
            rows.append(row)
            print(f'  {name:<9} seed {seed}: HR@10 '
                  f"{row['metrics']['hr@10']:.4f} (best epoch "
                  f"{row['best_epoch']}, {row['train_seconds']:.1f} s)")
    print('\nTest metrics, full ranking, train+valid target items masked, '
          'mean ± std over seeds:')
    print_table(rows, ['hr@10', 'ndcg@10', 'visited/hr@10',
                       'unvisited/hr@10', 'coverage@10'])
    if args.results:
        print(f'rows appended to {args.results}')
    print(f'demo finished in {time.perf_counter() - t0:.1f} s')
    return 0


def cmd_report(args) -> int:
    r"""``graphrec report``: a Markdown table with provenance from JSONL result
    rows, printed and optionally written to a file.
    """
    from graphrec.report import markdown_table, provenance
    from graphrec.train.records import read_jsonl
    rows = [r for path in args.results for r in read_jsonl(path)]
    text = (markdown_table(rows, args.metrics, extra=['epoch_seconds']) +
            '\n\n' + provenance(rows) + '\n')
    if args.output:
        Path(args.output).write_text(text)
    print(text)
    return 0


def _bench_outputs(args, stem: str):
    pages = Path(args.pages)
    pages.mkdir(parents=True, exist_ok=True)
    results = Path(args.results or pages / f'{stem}.jsonl')
    return pages, results


def cmd_bench(args) -> int:
    r"""``graphrec bench``: every model of a benchmark config on every
    dataset with every seed; a mean ± std table, paired significance tests
    against the strongest baseline, bar and training-curve plots, per
    dataset. Complete runs already in the results file are not run again.
    """
    from graphrec.bench import bench_page, load_config, rerun_since, run_grid
    if args.threads:
        torch.set_num_threads(args.threads)
    config_path = Path(args.config)
    pages, results = _bench_outputs(args, config_path.stem)
    command = 'graphrec ' + shlex.join(args.argv)
    rerun = rerun_since(args.rerun)
    for name in args.datasets:
        _, specs, tuned = load_config(config_path, name)
        labels = args.models or list(specs)
        unknown = [m for m in labels if m not in specs]
        if unknown:
            raise ValueError(f"--models {unknown} are not in "
                             f"{config_path.name} (choices: {list(specs)})")
        chosen = [specs[m] for m in labels]
        if args.epochs is not None:
            for spec in chosen:
                spec.train = {**spec.train, 'epochs': args.epochs}
        rows = run_grid(chosen, [name], args.seeds, results,
                        load=lambda n: _load(args, n),
                        progress=not args.no_progress,
                        log=lambda line: print(line, flush=True),
                        config_file=config_path.name, rerun=rerun)
        dataset = rows[0]['dataset'] if rows else Path(name).name
        stem = f'{config_path.stem}-{dataset}'
        notes = [f'Hyperparameters: chosen on validation ({tuned.name}).'
                 if tuned else 'Hyperparameters: as in the config file.', '']
        bench_page(rows, pages, stem, f'{config_path.stem} on {dataset}',
                   command, notes=notes, against=args.against)
        print(f'wrote {pages / (stem + ".md")}')
    return 0


def cmd_ablate(args) -> int:
    r"""``graphrec ablate``: one model of a benchmark config with each
    component removed or swapped (named constructor overrides from
    :data:`graphrec.models.ABLATIONS`), and with graph transforms, same
    seeds and budget; table, bar plot, significance against the full
    model, and results by user sparsity group.
    """
    from graphrec.bench import (
        ablation_specs,
        load_config,
        plot_bars,
        plot_groups,
        rerun_since,
        run_grid,
        significance,
        significance_table,
        write_page,
    )
    from graphrec.eval.stats import group_means, sparsity_groups
    from graphrec.models import ABLATIONS
    from graphrec.train.records import load_checkpoint as read
    if args.threads:
        torch.set_num_threads(args.threads)
    config_path = Path(args.config)
    config, specs, _ = load_config(config_path, args.dataset)
    if args.model not in specs:
        raise ValueError(f"--model '{args.model}' is not in "
                         f"{config_path.name} (choices: {list(specs)})")
    base = specs[args.model]
    known = ABLATIONS.get(base.model, {})
    names = list(known) if args.ablations is None else args.ablations
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown ablations {unknown} for model "
                         f"'{base.model}' (choices: {list(known)})")
    chosen = ablation_specs(base, {n: known[n] for n in names}, args.graph)
    if args.epochs is not None:
        for spec in chosen:
            spec.train = {**spec.train, 'epochs': args.epochs}
    pages, results = _bench_outputs(args, 'ablation')
    rows = run_grid(chosen, [args.dataset], args.seeds, results,
                    load=lambda n: _load(args, n),
                    progress=not args.no_progress,
                    log=lambda line: print(line, flush=True),
                    config_file=config_path.name,
                    rerun=rerun_since(args.rerun))
    dataset = rows[0]['dataset']
    stem = f'ablation-{args.model}-{dataset}'
    bars = pages / f'{stem}.png'
    plot_bars(rows, ['hr@10', 'ndcg@10', 'unvisited/hr@10'], bars,
              f'ablations of {args.model} on {dataset}')
    images = [bars]
    sections = ['## Against the full model', '',
                'Difference of each ablation from the full model on per-user '
                'test metrics averaged over seeds, sign-flip permutation '
                'test.', '',
                significance_table(significance(rows, against=args.model)),
                '']
    full = [r for r in rows if r['label'] == args.model]
    if full:
        group, labels = sparsity_groups(_load(args))
        table = {}
        for label in [args.model] + [r['label'] for r in rows
                                     if r['label'] != args.model]:
            runs = [r for r in rows if r['label'] == label]
            if label in table or not runs:
                continue
            per = [read(r['per_user_file']) for r in runs]
            avg = {'user': per[0]['user'], **{
                m: sum(p[m] for p in per) / len(per)
                for m in ('hr@10', 'ndcg@10')}}
            table[label] = group_means(avg, group, labels,
                                       ['hr@10', 'ndcg@10'])
        groups_png = pages / f'{stem}-sparsity.png'
        plot_groups(table, 'hr@10', groups_png,
                    f'HR@10 by user sparsity, {dataset}')
        images.append(groups_png)
        lines = ['| model | ' + ' | '.join(
            f"{g['group']} ({g['users']})" for g in table[args.model]) +
            ' |', '|---|' + '---|' * len(labels)]
        for label, gs in table.items():
            lines.append(f'| {label} | ' + ' | '.join(
                f"{g['hr@10']:.4f}" for g in gs) + ' |')
        sections += ['## HR@10 by user sparsity (train purchases)', '',
                     *lines, '']
    # The config's notes on this dataset's ablations (what a figure means).
    note = config.get('ablation_notes', {}).get(dataset)
    notes = ([note if isinstance(note, str) else '\n'.join(note), '']
             if note else [])
    write_page(pages / f'{stem}.md', f'Ablations of {args.model} on '
               f'{dataset}', 'graphrec ' + shlex.join(args.argv), rows,
               notes=notes, extra_sections=sections, images=images)
    print(f'wrote {pages / (stem + ".md")}')
    return 0


def build_parser() -> argparse.ArgumentParser:
    r"""The ``graphrec`` argument parser with all sub-commands."""
    parser = argparse.ArgumentParser(
        prog='graphrec', description='Graph-based multi-behavior '
        'recommendation: train, evaluate and recommend.')
    sub = parser.add_subparsers(dest='command', required=True)

    p = sub.add_parser('datasets', help='list datasets or show statistics')
    p.add_argument('action', choices=['list', 'stats'])
    p.add_argument('name', nargs='?')
    p.set_defaults(fn=cmd_datasets)

    p = sub.add_parser('train', help='train one model, test it once')
    p.add_argument('--model', required=True)
    p.add_argument('--model-arg', action='append', metavar='KEY=VALUE',
                   help='constructor argument, repeatable')
    add_train_args(p)
    p.add_argument('--rerank', nargs='*', metavar='KEY=VALUE',
                   help='fit a second stage on the validation pairs '
                   '(RerankConfig fields, e.g. merge_validation=true); '
                   'saved in model.pt, used by evaluate and recommend')
    p.add_argument('--out', help='run folder (checkpoints, model.pt)')
    p.add_argument('--results', default='runs/results.jsonl')
    p.add_argument('--resume', action='store_true',
                   help='continue from OUT/last.pt')
    p.set_defaults(fn=cmd_train)

    p = sub.add_parser('evaluate', help='evaluate a trained model')
    p.add_argument('--checkpoint', required=True)
    p.add_argument('--split', default='test', choices=['test', 'valid'])
    p.add_argument('--k', type=int, nargs='+', default=[10, 20])
    p.set_defaults(fn=cmd_evaluate)

    p = sub.add_parser('recommend', help='top-k items in original ids')
    p.add_argument('--checkpoint', required=True)
    p.add_argument('--users', nargs='+', required=True)
    p.add_argument('--k', type=int, default=10)
    p.set_defaults(fn=cmd_recommend)

    p = sub.add_parser('demo', help='baselines on a small dataset')
    add_train_args(p)
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--results', default=None)
    p.set_defaults(fn=cmd_demo, epochs=150, eval_every=5, patience=3,
                   lr=5e-3, batch_size=2048)

    def bench_common(p):
        p.add_argument('--config', required=True,
                       help='benchmark config (benchmarks/configs/*.json)')
        p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
        p.add_argument('--epochs', type=int, default=None,
                       help='override the epoch cap (quick checks)')
        p.add_argument('--pages', default='docs/results',
                       help='folder of pages and plots (default: '
                       'docs/results)')
        p.add_argument('--results', default=None,
                       help='JSONL file (default: PAGES/<config>.jsonl)')
        p.add_argument('--threads', type=int, default=None)
        p.add_argument('--no-progress', action='store_true')
        p.add_argument('--rerun', nargs='?', const='now', default=None,
                       metavar='TIME',
                       help='run again what the results file holds '
                       'complete (after a fix of the code); with an ISO '
                       'time, only runs written before it (resumes an '
                       'interrupted rerun)')
        add_log_args(p)

    p = sub.add_parser('bench', help='models x datasets x seeds: table, '
                       'significance, plots')
    bench_common(p)
    p.add_argument('--datasets', '--data', nargs='+', default=['tmall'],
                   help='registered names or dataset folders / event logs')
    p.add_argument('--models', nargs='+', default=None,
                   help='labels of the config (default: all)')
    p.add_argument('--against', default=None,
                   help='label to test against (default: the strongest '
                   'baseline)')
    p.set_defaults(fn=cmd_bench)

    p = sub.add_parser('ablate', help='one model with components removed, '
                       'graph ablations, sparsity groups')
    bench_common(p)
    p.add_argument('--model', required=True, help='label in the config')
    p.add_argument('--dataset', '--data', default='tmall')
    p.add_argument('--ablations', nargs='*', default=None,
                   help='names from graphrec.models.ABLATIONS (default: '
                   'all of the model)')
    p.add_argument('--graph', nargs='*', default=[], metavar='TRANSFORM',
                   help="graph ablations, e.g. 'behaviors=view+buy' "
                   "'view@0.5' 'order=cart>view>buy'")
    p.set_defaults(fn=cmd_ablate)

    p = sub.add_parser('report', help='Markdown table from JSONL rows')
    p.add_argument('results', nargs='+')
    p.add_argument('--metrics', nargs='+',
                   default=['hr@10', 'ndcg@10', 'recall@20', 'mrr'])
    p.add_argument('-o', '--output')
    p.set_defaults(fn=cmd_report)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    r"""Runs the ``graphrec`` command; returns the exit code (2 on a
    :class:`ValueError`, :class:`FileNotFoundError` or
    :class:`~graphrec.train.records.RunLockedError`; :math:`128 +` the
    signal number on ``SIGINT``/``SIGTERM``).
    """
    from graphrec.train.records import RunLockedError
    from graphrec.train.trainer import TrainingInterrupted
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return args.fn(args)
    except (ValueError, FileNotFoundError, RunLockedError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    except TrainingInterrupted as e:  # e.g. in demo
        print(f'\n{e}', file=sys.stderr)
        return e.exit_code


if __name__ == '__main__':
    sys.exit(main())
