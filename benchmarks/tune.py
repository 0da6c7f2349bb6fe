"""Chooses hyperparameters on validation, with the same grid for every model.

    python benchmarks/tune.py --config benchmarks/configs/multi.json \
        --dataset tmall

For every model of the config, trains one run (seed 0) per point of the
config's ``search`` grid with early stopping on the validation pairs, and
keeps the point with the best validation metric. The test set is never
evaluated here. Writes benchmarks/configs/tuned-<config>-<dataset>.json
after every point, so an interrupted search resumes where it stopped;
``benchmarks/run.py`` then uses the chosen values.
"""
import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import torch

from graphrec.bench import load_config, tuning_settings
from graphrec.cli import load_data
from graphrec.eval import Evaluator
from graphrec.models import build_model
from graphrec.train.experiment import seed_everything
from graphrec.train.records import atomic_write_bytes
from graphrec.train.trainer import TrainConfig, Trainer

ROOT = Path(__file__).resolve().parent.parent


def grid(search: dict):
    keys = sorted(search)
    for values in itertools.product(*(search[k] for k in keys)):
        yield dict(zip(keys, values))


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('--config', default=str(
        ROOT / 'benchmarks' / 'configs' / 'multi.json'))
    parser.add_argument('--dataset', default='tmall')
    parser.add_argument('--models', nargs='+', default=None)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--no-progress', action='store_true')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch CPU threads (default: torch default); '
                        'use 1 per job when running two jobs on 2 cores')
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    path = Path(args.config)
    try:
        config, specs, _ = load_config(path, args.dataset)
    except ValueError as e:  # e.g. trials made under other settings
        parser.error(str(e))
    search = config.get('search')
    if not search:
        parser.error(f'{path.name} has no "search" grid')
    out = path.parent / f'tuned-{path.stem}-{args.dataset}.json'
    state = (json.loads(out.read_text()) if out.exists() else
             {'search': search, 'seed': args.seed, 'trials': {},
              'chosen': {}})
    if state['search'] != search:
        parser.error(f'{out.name} was made with another grid '
                     f'{state["search"]}; delete it to search again')
    if state['seed'] != args.seed:
        parser.error(f'{out.name} was made with --seed {state["seed"]}; '
                     f'delete it to search again with --seed {args.seed}')
    dataset = load_data(args.dataset)
    evaluator = Evaluator(ks=(10, 20))
    labels = args.models or [m for m in specs
                             if m not in config.get('untuned', [])]
    for label in labels:
        model, kwargs, train = (specs[label].model, specs[label].kwargs,
                                specs[label].train)
        trials = state['trials'].setdefault(label, [])
        # Recorded with every trial: load_config refuses the chosen values
        # once the config gives other settings.
        settings = tuning_settings(kwargs, train, search)
        for point in grid(search):
            if any(t['point'] == point for t in trials):
                continue
            cfg = TrainConfig(**{**train, **point, 'seed': args.seed,
                                 'progress': not args.no_progress})
            seed_everything(args.seed)
            net = build_model(model, dataset.num_users, dataset.num_items,
                              dataset.behaviors, **kwargs)
            t0 = time.perf_counter()
            fit = Trainer(net, dataset, cfg, evaluator=evaluator).fit()
            trials.append({'point': point, 'settings': settings,
                           'valid': fit.best_valid,
                           'metric': cfg.metric,
                           'best_epoch': fit.best_epoch,
                           'seconds': round(time.perf_counter() - t0, 1)})
            print(f'{label:<12} {point}: valid {cfg.metric} '
                  f'{fit.best_valid:.4f} at epoch {fit.best_epoch}',
                  file=sys.stderr, flush=True)
            best = max(trials, key=lambda t: t['valid'])
            state['chosen'][label] = {'train': best['point'],
                                      'valid': best['valid']}
            atomic_write_bytes(out, (json.dumps(state, indent=1) +
                                     '\n').encode())
    print(f'wrote {out}', file=sys.stderr)


if __name__ == '__main__':
    main()
