"""Runs the models of a benchmark config on a dataset, several seeds.

    python benchmarks/run.py --config benchmarks/configs/baselines.json \
        --dataset tmall --seeds 0 1 2
    python benchmarks/run.py --config benchmarks/configs/multi.json \
        --dataset tmall --seeds 0 1 2

The same as ``graphrec bench`` for one dataset (see graphrec/bench.py for
the config format and how settings merge: defaults, dataset, model, then
the values chosen on validation by ``benchmarks/tune.py``), plus the
published figures on the page. Epochs are chosen by early stopping on the
validation pairs; the test set is read once per run. Complete runs already
in the results file are not run again.

Appends one JSONL row per run to docs/results/<config>.jsonl and rewrites
docs/results/<config>-<dataset>.md (mean ± std over seeds, paired
significance against the strongest baseline, plots).
"""
import argparse
import sys
from pathlib import Path

import torch
from published import published_table

from graphrec.bench import bench_page, load_config, rerun_since, run_grid
from graphrec.cli import load_data
from graphrec.train.records import read_jsonl

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('--config', default=str(
        ROOT / 'benchmarks' / 'configs' / 'baselines.json'))
    parser.add_argument('--dataset', default='tmall')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--models', nargs='+', default=None,
                        help='labels of the config (default: all)')
    parser.add_argument('--results', default=None,
                        help='JSONL file (default: docs/results/'
                        '<config>.jsonl)')
    parser.add_argument('--pages', default=str(ROOT / 'docs' / 'results'),
                        help='folder of the Markdown page (default: '
                        'docs/results)')
    parser.add_argument('--epochs', type=int, default=None,
                        help='override the epoch budget (quick checks)')
    parser.add_argument('--no-progress', action='store_true')
    parser.add_argument('--rerun', nargs='?', const='now', default=None,
                        metavar='TIME',
                        help='run again the runs the results file already '
                        'holds complete (after a fix of the code; the new '
                        'rows replace the old ones on the page); with an '
                        'ISO time, only the runs written before it, which '
                        'resumes an interrupted rerun')
    parser.add_argument('--report-only', action='store_true',
                        help='train nothing; rewrite the page from the '
                        'JSONL rows (after runs split across processes)')
    parser.add_argument('--compare', nargs='+', action='extend', default=[],
                        metavar='JSONL', help='rows of other configs run in '
                        'this harness (e.g. docs/results/baselines.jsonl) '
                        'shown on the page and in its significance tests; '
                        'every one of them counts as a baseline, so the '
                        'reference of the tests is the strongest of them '
                        'and of the config\'s own baselines')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch CPU threads (default: torch default); '
                        'use 1 per job when running two jobs on 2 cores')
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    path = Path(args.config)
    config, specs, tuned = load_config(path, args.dataset)
    results = Path(args.results or ROOT / 'docs' / 'results' /
                   f'{path.stem}.jsonl')
    labels = args.models or list(specs)
    unknown = [m for m in labels if m not in specs]
    if unknown:
        parser.error(f'--models {unknown} not in {path.name} '
                     f'(choices: {list(specs)})')
    dataset = load_data(args.dataset)
    print(dataset, file=sys.stderr)
    if not args.report_only:
        chosen = [specs[m] for m in labels]
        if args.epochs is not None:
            for spec in chosen:
                spec.train = {**spec.train, 'epochs': args.epochs}
        run_grid(chosen, [args.dataset], args.seeds, results,
                 load=lambda name: dataset, progress=not args.no_progress,
                 log=lambda line: print(line, file=sys.stderr, flush=True),
                 config_file=path.name, threads=torch.get_num_threads(),
                 rerun=rerun_since(args.rerun, log=lambda line: print(
                     line, file=sys.stderr, flush=True)))

    # The page lists the config's models in the config's order (runs split
    # across processes append their rows in any order).
    order = {label: i for i, label in enumerate(specs)}
    rows = sorted((r for r in read_jsonl(results) if r['dataset'] ==
                   dataset.name and r.get('label') in specs),
                  key=lambda r: order[r['label']])
    split = dataset.info.get('split')
    for other in args.compare:
        # Rows of another config for this dataset, unless this config has a
        # model under the same label (its own rows win).
        # Only rows of the same data files: same checksum and split.
        # Every compared row is a baseline here (peers such as CRGCN too):
        # the significance reference is the strongest, never an easier one.
        rows += [{**r, 'baseline': True} for r in read_jsonl(other)
                 if r['dataset'] == dataset.name
                 and r.get('label') not in specs
                 and r.get('checksum') == dataset.checksum
                 and r.get('split') == split]
    command = (f'python benchmarks/run.py --config benchmarks/configs/'
               f'{path.name} --dataset {args.dataset} --seeds '
               f'{" ".join(map(str, args.seeds))}' +
               ''.join(f' --compare {c}' for c in args.compare))
    tuned_note = (f'Hyperparameters chosen on validation by '
                  f'`benchmarks/tune.py` ({tuned.name}).' if tuned else
                  'Hyperparameters: the config file as written.')
    notes = [tuned_note, '',
             '`visited/` and `unvisited/`: test items the user had / had '
             'not in an auxiliary behavior in train. `avg_pop@10`: mean '
             'train purchases of the recommended items; `tail_share@10`: '
             'share of recommendations outside the 20% most bought items.',
             '', published_table(dataset.name)]
    # The config's own notes for this dataset (e.g. why a reproduction
    # falls short), kept in the config so that a rebuild keeps them.
    note = config.get('notes', {}).get(dataset.name)
    if note:
        notes += ['', note if isinstance(note, str) else '\n'.join(note)]
    out = bench_page(rows, args.pages, f'{path.stem}-{dataset.name}',
                     f'{path.stem} on {dataset.name}', command, notes=notes)
    print(f'wrote {out}', file=sys.stderr)


if __name__ == '__main__':
    main()
