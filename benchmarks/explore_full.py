"""One validation-only run of the full model, for choosing its settings.

    python benchmarks/explore_full.py --model-args "item_features=True" \
        --train-args "hard_negative_ratio=0.5, lr=0.001, epochs=8"

Trains ``causal_cascade`` on a dataset with early stopping on the validation
pairs and prints the validation curve (HR@10, NDCG@10, visited / unvisited
HR@10). The test set is never read. The runs behind the settings of
``benchmarks/configs/full.json`` are listed in that config's comment.
"""
import argparse
import ast
import time

import torch

from graphrec.cli import load_data
from graphrec.models import build_model
from graphrec.train import TrainConfig, Trainer


def keywords(text: str) -> dict:
    r"""``"a=1, b='x'"`` as a dict of Python literals."""
    call = ast.parse(f'f({text})', mode='eval').body
    return {k.arg: ast.literal_eval(k.value) for k in call.keywords}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--dataset', default='tmall')
    parser.add_argument('--model-args', default='',
                        help="constructor arguments, e.g. "
                        "'visited_head=False'")
    parser.add_argument('--train-args', default='',
                        help="TrainConfig fields, e.g. 'lr=0.001'")
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--split-seed', type=int, default=0,
                        help='seed of the validation pairs carved from '
                        'train where the split is random (tmall: one '
                        'random purchase per user); another seed gives '
                        'a fresh validation set')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = load_data(args.dataset, split_seed=args.split_seed)
    model = build_model('causal_cascade', data.num_users, data.num_items,
                        behaviors=data.behaviors, **keywords(args.model_args))
    train = dict(epochs=20, batch_size=8192, lr=0.005, eval_every=5,
                 patience=3, min_epochs=10, progress=False,
                 behavior_weights={b: 1.0 for b in data.behaviors})
    train.update(keywords(args.train_args))
    start = time.time()
    result = Trainer(model, data, TrainConfig(**train)).fit()
    print(f'{time.time() - start:.0f} s, best epoch {result.best_epoch}, '
          f'validation {train.get("metric", "ndcg@10")} '
          f'{result.best_valid:.4f}')
    keys = ('hr@10', 'ndcg@10', 'visited/hr@10', 'unvisited/hr@10')
    for h in result.history:
        if 'hr@10' in h:
            print(h['epoch'], {k: round(h[k], 4) for k in keys if k in h})


if __name__ == '__main__':
    main()
