"""Second-stage variants of a config row, compared on validation only.

    python benchmarks/crossfit_rerank.py \
        --config benchmarks/configs/full.json --dataset retailrocket \
        --label causal_cascade-rerank-merged \
        --variants "neighbours=0" "neighbours=100" --seeds 0 1 2

For each seed, trains the first stage of ``--label`` (its model, settings
and the config's per-dataset overrides, early stopping on the validation
pairs, as ``benchmarks/run.py`` does), then fits each re-ranker variant
(``RerankConfig`` fields on top of the row's ``rerank`` entry) on the
validation pairs and prints its cross-fitted validation NDCG@10 and HR@10
(each user scored by a re-ranker fitted on the other users' pairs: the
``valid`` figure of a re-ranked row) beside the first stage's and user-based
CF's (``userknn``, no training). The test set is never read.
"""
import argparse
import time

import torch
from explore_full import keywords

from graphrec.bench import load_config
from graphrec.cli import load_data
from graphrec.data.graph import BehaviorGraph
from graphrec.eval import Evaluator
from graphrec.models import build_model
from graphrec.train import RerankConfig, TrainConfig, Trainer, fit_reranker
from graphrec.train.experiment import seed_everything


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--config', required=True)
    parser.add_argument('--dataset', required=True)
    parser.add_argument('--label', required=True,
                        help='a config row with a "rerank" entry')
    parser.add_argument('--variants', nargs='+', default=['neighbours=0'],
                        help='RerankConfig fields of each variant, e.g. '
                        '"neighbours=100"')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0])
    parser.add_argument('--neighbours', type=int, default=100,
                        help='k of the userknn line')
    parser.add_argument('--threads', type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    _, specs, _ = load_config(args.config, args.dataset)
    if args.label not in specs:
        parser.error(f'--label {args.label!r} is not a row of {args.config} '
                     f'(rows: {sorted(specs)})')
    spec = specs[args.label]
    data = load_data(args.dataset, split_seed=0)
    graph = BehaviorGraph.from_dataset(data)
    evaluator = Evaluator(ks=(10, ))

    def show(name, fn):
        r = evaluator.evaluate(fn, data, split='valid')
        print(f'  {name:<44} valid NDCG@10 {r["ndcg@10"]:.4f} '
              f'HR@10 {r["hr@10"]:.4f}', flush=True)
        return r['ndcg@10']

    knn = build_model('userknn', data.num_users, data.num_items,
                      k=args.neighbours)
    show(f'userknn k={args.neighbours} (no training)', knn.score_fn(graph))
    for seed in args.seeds:
        seed_everything(seed)
        model = build_model(spec.model, data.num_users, data.num_items,
                            data.behaviors, **spec.kwargs)
        config = TrainConfig(**{**spec.train, 'seed': seed,
                                'progress': False})
        start = time.time()
        trainer = Trainer(model, data, config)
        fit = trainer.fit()
        print(f'seed {seed}: first stage {time.time() - start:.0f} s, best '
              f'epoch {fit.best_epoch}', flush=True)
        show('first stage', model.score_fn(trainer.graph))
        for text in args.variants:
            # The re-ranker follows the run's seed, as in run_experiment.
            cfg = RerankConfig(**{'seed': seed, **(spec.rerank or {}),
                                  **keywords(text)})
            stacked = fit_reranker(trainer.graph,
                                   model.score_fn(trainer.graph), data.valid,
                                   cfg)
            show(f're-ranker {text} (coverage {stacked.coverage:.0%})',
                 stacked.cross_fitted)


if __name__ == '__main__':
    main()
