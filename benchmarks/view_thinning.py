"""Why the full model collapses when half of the view edges are dropped.

    python benchmarks/view_thinning.py --dataset tmall --threads 1

The graph ablation ``view@0.5`` of ``graphrec ablate`` (NMTR's "purchase +
50% view" study) takes the registered ``causal_cascade`` of
benchmarks/configs/full.json from HR@10 0.31 to 0.03 on tmall. This script
looks at why, on the validation pairs only (the test set is never read),
for the full graph and for the thinned one (``--transform``):

- the share of train purchases whose pair was viewed (and viewed or carted),
  against the share of viewed items among the negatives the training
  recipe draws (``hard_negative_ratio`` of them are 'viewed but not
  bought', the rest uniform);
- the training-free re-ranker's validation HR@10 on that graph (do the
  remaining views still carry the signal?);
- after ``--epochs`` epochs of the registered model (seed 0, the config's
  training settings): validation NDCG@10 and the visited-aware head's
  weights on the view / cart links and its repeat bias (which way the model
  reads a view).

It prints one table; the figures are quoted in the notes of
docs/results/ablation-causal_cascade-tmall.md.
"""
import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from graphrec.bench import _train_for, load_config  # noqa: E402
from graphrec.cli import load_data  # noqa: E402
from graphrec.data.dataset import pair_keys  # noqa: E402
from graphrec.data.graph import BehaviorGraph  # noqa: E402
from graphrec.data.transforms import apply_transform  # noqa: E402
from graphrec.eval import Evaluator  # noqa: E402
from graphrec.models import build_model  # noqa: E402
from graphrec.train.distributed import make_trainer  # noqa: E402
from graphrec.train.experiment import seed_everything  # noqa: E402
from graphrec.train.trainer import TrainConfig  # noqa: E402


def shares(data) -> dict:
    r"""Shares of train purchases that were viewed / visited."""
    buy = pair_keys(data.train[data.target], data.num_items)
    view = pair_keys(data.train['view'], data.num_items)
    visited = torch.cat([pair_keys(data.train[b], data.num_items)
                         for b in data.auxiliary])
    return {'bought_viewed': torch.isin(buy, view).float().mean().item(),
            'bought_visited': torch.isin(buy, visited).float().mean().item()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--dataset', default='tmall')
    parser.add_argument('--config', default=str(
        ROOT / 'benchmarks' / 'configs' / 'full.json'))
    parser.add_argument('--model', default='causal_cascade')
    parser.add_argument('--transform', default='view@0.5')
    parser.add_argument('--epochs', type=int, default=1)
    parser.add_argument('--threads', type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    base = load_data(args.dataset)
    _, specs, _ = load_config(args.config, args.dataset)
    spec = specs[args.model]
    evaluator = Evaluator(ks=(10, ))
    lines = ['| graph | bought & viewed | bought & visited | hard negatives '
             '(all viewed) | re-ranker valid HR@10 | valid NDCG@10 after '
             f'{args.epochs} epoch(s) | view link weight | cart link weight '
             '| repeat bias |', '|---|---|---|---|---|---|---|---|---|']
    for name in ('full', args.transform):
        data = base if name == 'full' else apply_transform(base, name)
        share = shares(data)
        train = _train_for(spec.train, data)
        hard = float(train.get('hard_negative_ratio', 0.0))
        # Hard negatives are viewed by construction; uniform ones almost
        # never (one of all items).
        graph = BehaviorGraph.from_dataset(data)
        heuristic = build_model('reranker', data.num_users, data.num_items,
                                data.behaviors, prior='conversion',
                                strength='visited')
        heuristic.eval()
        rerank_hr = evaluator.evaluate(heuristic.score_fn(graph), data,
                                       split='valid')['hr@10']
        seed_everything(0)
        model = build_model(spec.model, data.num_users, data.num_items,
                            data.behaviors, **spec.kwargs)
        config = TrainConfig(**{**train, 'seed': 0, 'progress': False,
                                'epochs': args.epochs})
        fit = make_trainer(model, data, config, evaluator=evaluator).fit()
        head = model.visited
        link = head.link_weight.detach().tolist()
        lines.append(
            f"| {name} | {share['bought_viewed']:.3f} | "
            f"{share['bought_visited']:.3f} | {hard:.2f} | {rerank_hr:.4f} |"
            f" {fit.best_valid:.4f} | {link[0]:+.4f} | {link[1]:+.4f} | "
            f"{head.repeat_bias.item():+.4f} |")
        print(lines[-1], flush=True)
    print('\n'.join(lines))


if __name__ == '__main__':
    main()
