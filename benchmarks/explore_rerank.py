"""Nested validation of the second stage: how to fit and apply the re-ranker,
decided without the test set.

    python benchmarks/explore_rerank.py --dataset tmall --threads 1 \
        --variants "hidden=32" "hidden=0" "hidden=64, epochs=10"
    python benchmarks/explore_rerank.py --dataset tmall --threads 1 \
        --variants "drop=['score']" "drop=['pair_cf']" \
        "drop=['item_', 'pair_cf']" "drop=['link', 'visited']"

The validation pairs V are carved from train as in every benchmark (split
seed 0). Inside train minus V a second set V2 is carved (split seed 1); the
first stage (the full model as ``causal_cascade-sel`` in
``benchmarks/configs/full.json``) trains on train minus V and V2 with early
stopping on V2, and each re-ranker variant is fitted on V2. All are then
scored on V, with candidates, features and first-stage scores from the
first stage's graph (train minus V and V2) or from the graph with V2 put
back (train minus V: ``RerankConfig.merge_validation``). The test set is
never read. About 15 minutes on tmall for three variants at one thread.
"""
import argparse
import time

import torch
from explore_full import keywords

from graphrec.cli import load_data
from graphrec.data.graph import BehaviorGraph
from graphrec.data.split import carve_validation
from graphrec.eval import Evaluator
from graphrec.models import build_model
from graphrec.nn.rerank import CandidateFeatures, RerankedScores
from graphrec.train import RerankConfig, TrainConfig, Trainer, fit_reranker

KEYS = ('hr@10', 'ndcg@10', 'visited/hr@10', 'unvisited/hr@10')


def selected_first_stage(dataset, epochs: int, progress: bool = False):
    r"""The full model as selected on validation (``causal_cascade-sel`` of
    ``benchmarks/configs/full.json`` on tmall) and its training settings."""
    model = build_model('causal_cascade', dataset.num_users,
                        dataset.num_items, dataset.behaviors,
                        embedding_dim=64, contrastive=0.0,
                        cascade_heads=False)
    config = TrainConfig(
        epochs=epochs, batch_size=8192, lr=0.001, weight_decay=1e-4,
        eval_every=1, patience=3, min_epochs=4, progress=progress,
        hard_negative_ratio=0.5,
        behavior_weights={b: 1.0 for b in dataset.behaviors})
    return model, config


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--dataset', default='tmall')
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--variants', nargs='+', default=['hidden=32'],
                        help='RerankConfig fields of each re-ranker, e.g. '
                        '"hidden=0, epochs=10"')
    parser.add_argument('--epochs', type=int, default=20,
                        help='most first-stage epochs')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    outer = load_data(args.dataset, split_seed=0)
    inner = carve_validation(outer.replace(valid=None), seed=1)
    print(f'fit pairs (V2): {inner.valid.size(1)}, scored pairs (V): '
          f'{outer.valid.size(1)}', flush=True)
    model, config = selected_first_stage(outer, args.epochs)
    start = time.time()
    trainer = Trainer(model, inner, config)
    fit = trainer.fit()
    print(f'first stage: {time.time() - start:.0f} s, best epoch '
          f'{fit.best_epoch}, V2 NDCG@10 {fit.best_valid:.4f}', flush=True)
    inner_graph = trainer.graph
    outer_graph = BehaviorGraph.from_dataset(outer)
    evaluator = Evaluator(ks=(10, ))

    def show(name, fn):
        r = evaluator.evaluate(fn, outer, split='valid')
        print(f'{name:<48}', ' '.join(f'{k} {r[k]:.4f}' for k in KEYS),
              flush=True)

    show('first stage, its graph', model.score_fn(inner_graph))
    show('first stage, V2 put back', model.score_fn(outer_graph))
    for text in args.variants:
        cfg = RerankConfig(**{'folds': 1, **keywords(text)})
        stacked = fit_reranker(inner_graph, model.score_fn(inner_graph),
                               inner.valid, cfg)
        show(f're-ranker {text}, its graph', stacked.score_fn)
        merged = CandidateFeatures(outer_graph, model.score_fn(outer_graph),
                                   cfg.num_unvisited, cfg.drop)
        show(f're-ranker {text}, V2 put back',
             RerankedScores(merged, stacked.reranker))


if __name__ == '__main__':
    main()
