"""What a top-10 list gives up for the items a user never visited.

    python benchmarks/slot_tradeoff.py --dataset tmall --threads 2

On the validation pairs only (the test set is never read): the user's
visited items (linked by an auxiliary behavior in train) are ordered by the
training-free re-ranker (smoothed buy/view conversion rate, carted first),
the unvisited ones by LightGCN on all behaviors (the trained model with the
best HR@10 on unvisited test items in this harness), and the top 10 holds
the first ``10 - k`` visited items and the first ``k`` unvisited ones (more
unvisited ones when a user has fewer visited items; ties pessimistic). For
every ``k`` the
script reports HR@10 overall and on visited / unvisited validation items,
and writes docs/results/slot-tradeoff-<dataset>.md with a plot.

It answers one question about the targets of the full model: how many of
the ten places must go to new items before those reach a given HR@10, and
what that costs on the visited ones.

``--unvisited user-cf`` orders the unvisited items by user-based
collaborative filtering instead (the purchases of the ``--neighbours`` users
with the most similar purchases, by cosine; no training): the best ranker of
unvisited items in ``benchmarks/explore_signals.py``. Its page is
docs/results/slot-tradeoff-<dataset>-user-cf.md.
"""
import argparse
import time
from pathlib import Path

import torch

from graphrec.bench import load_config
from graphrec.cli import load_data
from graphrec.data.graph import BehaviorGraph
from graphrec.models import build_model
from graphrec.models.base import mask_pairs_
from graphrec.nn.visited import VisitLinks
from graphrec.train import TrainConfig, Trainer
from graphrec.train.experiment import seed_everything

ROOT = Path(__file__).resolve().parent.parent


def pessimistic_hits(visited_score: torch.Tensor,
                     unvisited_score: torch.Tensor, visited: torch.Tensor,
                     bought: torch.Tensor, truth: torch.Tensor, ks,
                     size: int = 10) -> torch.Tensor:
    r"""Whether each user's :obj:`truth` item is in a top-:obj:`size` list
    holding ``size - k`` visited items by :obj:`visited_score` and the rest
    unvisited by :obj:`unvisited_score` (more unvisited ones where a user has
    fewer visited items), for every ``k`` in :obj:`ks`: :obj:`[len(ks), B]`.

    Train purchases (:obj:`bought`) are never listed, and ties are
    pessimistic as in the harness' metrics: the truth comes after every
    other candidate of its part with the same score.
    """
    rows = torch.arange(truth.numel())
    open_ = ~bought
    vis_pool, new_pool = visited & open_, ~visited & open_
    truth_vis = visited[rows, truth]
    pool = torch.where(truth_vis.unsqueeze(1), vis_pool, new_pool)
    score = torch.where(truth_vis.unsqueeze(1), visited_score,
                        unvisited_score)
    own = score[rows, truth].unsqueeze(1)
    # 1-based pessimistic rank of the truth inside its own part.
    rank = (pool & (score >= own)).sum(1) + (~pool[rows, truth]).long()
    n_vis = vis_pool.sum(1)
    out = []
    for k in ks:
        if not 0 <= k <= size:
            raise ValueError(f"'k' must be in [0, {size}] (got {k})")
        take_vis = torch.clamp(n_vis, max=size - k)
        places = torch.where(truth_vis, take_vis, size - take_vis)
        out.append(open_[rows, truth] & (rank <= places))
    return torch.stack(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--dataset', default='tmall')
    parser.add_argument('--split-seed', type=int, default=0)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--epochs', type=int, default=None,
                        help="LightGCN's epoch budget (default: the "
                        'baselines config)')
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--unvisited', choices=['lightgcn', 'user-cf'],
                        default='lightgcn',
                        help='the ranker of unvisited items')
    parser.add_argument('--neighbours', type=int, default=200,
                        help='k of --unvisited user-cf')
    parser.add_argument('--pages', default=str(ROOT / 'docs' / 'results'))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_data(args.dataset, split_seed=args.split_seed)
    graph = BehaviorGraph.from_dataset(data)
    users, items = data.valid

    if args.unvisited == 'user-cf':
        from explore_signals import CFScores
        cf = CFScores(data)
        # Popularity breaks the CF ties, as in explore_signals.
        unvisited, fit = (lambda u: cf.ranked(cf.user(
            data.target, args.neighbours, u))), None
    else:
        unvisited, fit = train_lightgcn(data, graph, args)
    reranker = build_model('reranker', data.num_users, data.num_items,
                           data.behaviors, prior='conversion',
                           strength='visited')
    links = VisitLinks(graph, data.behaviors[:-1])
    buy = data.train[data.target]
    ks = list(range(11))
    hits = torch.zeros(len(ks), users.numel(), dtype=torch.bool)
    is_visited = torch.zeros(users.numel(), dtype=torch.bool)
    with torch.no_grad():
        emb_r = reranker(graph)
        for s in range(0, users.numel(), 512):
            u, i = users[s:s + 512], items[s:s + 512]
            visited = links.dense(u).amax(-1) > 0
            # Train purchases of the chunk's users, as a dense mask.
            bought = mask_pairs_(torch.zeros_like(visited), u, buy,
                                 data.num_users, True)
            sl = unvisited(u)
            sr = reranker.score(emb_r, u)
            is_visited[s:s + 512] = visited[torch.arange(u.numel()), i]
            hits[:, s:s + 512] = pessimistic_hits(sr, sl, visited, bought,
                                                  i, ks)
    rows = []
    for k in ks:
        h = hits[k].float()
        rows.append({'k': k, 'hr@10': h.mean().item(),
                     'visited': h[is_visited].mean().item(),
                     'unvisited': h[~is_visited].mean().item()})
        print(rows[-1])
    write_page(rows, args, float(is_visited.float().mean()), fit)


def train_lightgcn(data, graph, args):
    r"""LightGCN on all behaviors, the baselines config's settings for
    this dataset, early stopping on validation: its score function and
    fit."""
    _, specs, _ = load_config(ROOT / 'benchmarks' / 'configs' /
                              'baselines.json', args.dataset)
    spec = specs['lightgcn-all']
    train = {**spec.train, 'seed': args.seed, 'progress': False}
    if args.epochs is not None:
        train['epochs'] = args.epochs
    seed_everything(args.seed)
    lightgcn = build_model(spec.model, data.num_users, data.num_items,
                           data.behaviors, **spec.kwargs)
    start = time.time()
    fit = Trainer(lightgcn, data, TrainConfig(**train)).fit()
    print(f'lightgcn-all: {time.time() - start:.0f} s, best epoch '
          f'{fit.best_epoch}, validation ndcg@10 {fit.best_valid:.4f}')
    lightgcn.eval()
    with torch.no_grad():
        emb = lightgcn(graph)
    return (lambda u: lightgcn.score(emb, u)), fit


def write_page(rows, args, share: float, fit) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    pages = Path(args.pages)
    pages.mkdir(parents=True, exist_ok=True)
    stem = f'slot-tradeoff-{args.dataset}' + (
        '-user-cf' if args.unvisited == 'user-cf' else '')
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ks = [r['k'] for r in rows]
    for key, style in (('hr@10', 'o-'), ('visited', 's--'),
                       ('unvisited', '^-')):
        ax.plot(ks, [r[key] for r in rows], style, label=key)
    ax.axhline(0.05, color='grey', lw=0.8, ls=':')
    ax.set_xlabel('places of the top 10 given to unvisited items')
    ax.set_ylabel('validation HR@10')
    ax.set_title(f'{args.dataset}: visited vs unvisited places')
    ax.legend(frameon=False)
    fig.tight_layout()
    fig.savefig(pages / f'{stem}.png', dpi=120)
    plt.close(fig)
    lines = [
        f'# Top-10 places for unvisited items, {args.dataset}', '',
        f'Generated by `python benchmarks/slot_tradeoff.py --dataset '
        f'{args.dataset} --split-seed {args.split_seed}'
        + (f' --unvisited user-cf --neighbours {args.neighbours}'
           if fit is None else f' --seed {args.seed}'
           + (f' --epochs {args.epochs}' if args.epochs is not None else ''))
        + '`. Validation pairs only (carved from train, split seed '
        f'{args.split_seed}); the test set is not read. Visited items '
        '(linked to the user by an auxiliary behavior in train) are '
        'ordered by the training-free re-ranker (carted first, then '
        'smoothed buy/view conversion), unvisited ones by '
        + (f'user-based collaborative filtering (the purchases of the '
           f'{args.neighbours} users with the most similar purchases, by '
           f'cosine; no training; its ties broken by train popularity)'
           if fit is None else
           f'LightGCN on all behaviors (the baselines config\'s settings, '
           f'best validation epoch {fit.best_epoch})')
        + '; `k` places go to unvisited items, the other '
        '`10 - k` to visited ones (unvisited items fill the list of a user '
        'with fewer visited ones); train purchases are never listed, and '
        'ties are pessimistic (the validation item comes after every item '
        f'of its part with the same score). {share:.1%} of the validation '
        'items are visited.', '',
        '| k | HR@10 | visited HR@10 | unvisited HR@10 |', '|---|---|---|---|']
    lines += [f"| {r['k']} | {r['hr@10']:.4f} | {r['visited']:.4f} | "
              f"{r['unvisited']:.4f} |" for r in rows]
    lines += ['', f'![{stem}]({stem}.png)', '']
    (pages / f'{stem}.md').write_text('\n'.join(lines))
    print(f'wrote {pages / stem}.md')


if __name__ == '__main__':
    main()
