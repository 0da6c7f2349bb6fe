"""Do collaborative-filtering signals the second stage lacks help it?

    python benchmarks/explore_signals.py --dataset tmall --threads 2

Three checks, on the validation pairs only (split seed 0; the test set is
never read):

1. **Unvisited items with all ten places.** Each user's visited items (linked
   by an auxiliary behavior in train) and train purchases are taken out of
   the ranking, so every place of the top 10 goes to an item she never
   visited; HR@10 and NDCG@10 on the validation items she never visited.
   Rankers: popularity, the first stage, item-based CF into the target and
   user-based CF (k nearest users by cosine of their item sets, their
   purchases). This is the best an unvisited ranker can do with every place:
   whatever shares the list with visited items gets less.
2. **More features for the re-ranker.** The second stage's candidate
   features (``graphrec.nn.CandidateFeatures``) carry item-based CF only for
   visited pairs. Here the item-based CF scores into the target are computed
   for every candidate, and user-based CF scores are added; the re-ranker
   (``ListwiseReranker``, the settings of ``RerankConfig``) is cross-fitted
   over two user folds of the validation pairs, as the ``valid`` figure of a
   re-ranked run, with and without them, for two re-ranker seeds.
3. **Places for unvisited items with the re-ranker's order.** The top 10 of
   ``benchmarks/slot_tradeoff.py`` with the visited items ordered by the
   cross-fitted re-ranker of check 2 and the unvisited ones by the best
   ranker of check 1: what the unvisited target costs the learned system.

The first stage is the selected full model (``causal_cascade-sel`` of
``benchmarks/configs/full.json``), trained on train minus the validation
pairs with early stopping on them, as in a re-ranked run. CF scores into the
target need no leave-one-out: a candidate is never a train purchase of its
user. Writes docs/results/signals-<dataset>.md. About 10 minutes on tmall at
two threads, 2 of them training the first stage; ``--checkpoint PATH`` keeps
the first stage between runs.
"""
import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from graphrec.cli import load_data
from graphrec.data.graph import BehaviorGraph, unique_pairs
from graphrec.models import UserKNN
from graphrec.nn.rerank import CandidateFeatures, ListwiseReranker
from graphrec.train import RerankConfig, Trainer
from graphrec.train.experiment import seed_everything

ROOT = Path(__file__).resolve().parent.parent


def sparse(edge: torch.Tensor, shape) -> torch.Tensor:
    r"""A binary sparse matrix from index pairs :obj:`[2, E]` (repeats
    count once)."""
    index = unique_pairs(edge.long(), shape[1])
    return torch.sparse_coo_tensor(index, torch.ones(index.size(1)), shape,
                                   check_invariants=False).coalesce()


class CFScores:
    r"""Collaborative-filtering scores of users :obj:`[B]` for every item
    :obj:`[B, I]`, computed with sparse products (no item-item or user-user
    matrix is formed).

    * ``item(x)``: :math:`\frac{1}{|X_u|} \sum_{j \ne i} X_{uj} (X^\top
      Y)_{ji} / \sqrt{n^x_j n^y_i}` with :math:`Y` the target.
    * ``user(x, k)``: :math:`\sum_{v \in N_k(u)} \cos(X_u, X_v) Y_{vi}` over
      the :math:`k` users :math:`v \ne u` with the largest cosine: the
      library's :class:`~graphrec.models.UserKNN`.
    * ``ranked(score)``: a score with its ties broken by train popularity
      (what every CF ranker here is evaluated with; ties that remain are
      pessimistic).
    """
    def __init__(self, dataset):
        self.U, self.I = dataset.num_users, dataset.num_items
        self.graph = BehaviorGraph.from_dataset(dataset)
        shape = (self.U, self.I)
        self.X = {b: sparse(dataset.train[b], shape)
                  for b in dataset.behaviors}
        self.X_csr = {b: x.to_sparse_csr() for b, x in self.X.items()}
        self.knn = {}
        self.target = dataset.target
        self.Y = self.X[dataset.target]
        self.YT = self.Y.t().coalesce().to_sparse_csr()
        self.n_item = {b: torch.sparse.sum(x, 0).to_dense()
                       for b, x in self.X.items()}
        self.n_user = {b: torch.sparse.sum(x, 1).to_dense()
                       for b, x in self.X.items()}
        y = self.Y.indices()
        self.y_keys = y[0] * self.I + y[1]

    def rows(self, b: str, user: torch.Tensor) -> torch.Tensor:
        return self.X[b].index_select(0, user).to_dense()

    def item(self, x: str, user: torch.Tensor) -> torch.Tensor:
        A = self.rows(x, user)
        inx = self.n_item[x].clamp(min=1).rsqrt()
        iny = self.n_item[self.target].clamp(min=1).rsqrt()
        Z = self.X_csr[x] @ (A * inx).t()                  # [U, B]
        out = (self.YT @ Z).t() * iny                      # [B, I]
        # Leave the item itself out: the j = i term.
        xi = self.X[x].indices()
        both = torch.isin(xi[0] * self.I + xi[1], self.y_keys)
        diag = torch.bincount(xi[1][both], minlength=self.I).float()
        out -= A * (inx * diag * iny)
        return out / A.sum(1, keepdim=True).clamp(min=1)

    def user(self, x: str, k: int, user: torch.Tensor) -> torch.Tensor:
        if (x, k) not in self.knn:
            model = UserKNN(self.U, self.I, behaviors=x, k=k)
            self.knn[x, k] = (model, model(self.graph))
        model, emb = self.knn[x, k]
        return model.score(emb, user)

    def ranked(self, score: torch.Tensor) -> torch.Tensor:
        pop = self.n_item[self.target]
        return score.float() + 1e-6 * pop / pop.max()


def rank_metrics(score: torch.Tensor, truth: torch.Tensor,
                 keep: torch.Tensor) -> torch.Tensor:
    r"""Hits and NDCG@10 :obj:`[2, B]` of :obj:`truth` among the items with
    :obj:`keep`, ties pessimistic (the truth after every tied item)."""
    score = score.masked_fill(~keep, float('-inf'))
    own = score.gather(1, truth[:, None])
    rank = (score >= own).sum(1).float()  # 1-based, truth included
    hit = (rank <= 10).float()
    return torch.stack([hit, hit / torch.log2(rank + 1)])


def first_stage(args, dataset):
    from explore_rerank import selected_first_stage
    model, config = selected_first_stage(dataset, args.epochs, progress=True)
    path = Path(args.checkpoint) if args.checkpoint else None
    if path is not None and path.exists():
        model.load_state_dict(torch.load(path))
        print(f'first stage loaded from {path}', flush=True)
        return model.eval()
    start = time.time()
    fit = Trainer(model, dataset, config).fit()
    print(f'first stage: {time.time() - start:.0f} s, best epoch '
          f'{fit.best_epoch}, validation NDCG@10 {fit.best_valid:.4f}',
          flush=True)
    if path is not None:
        torch.save(model.state_dict(), path)
    return model.eval()


def unvisited_check(dataset, graph, model, cf, args):
    users, items = dataset.valid
    visited = torch.zeros(dataset.num_users, dataset.num_items,
                          dtype=torch.bool)
    for b in dataset.behaviors:  # visited or bought: out of the ranking
        visited[dataset.train[b][0], dataset.train[b][1]] = True
    new = torch.ones_like(users, dtype=torch.bool)
    for b in dataset.auxiliary:
        key = dataset.train[b][0] * dataset.num_items + dataset.train[b][1]
        new &= ~torch.isin(users * dataset.num_items + items, key)
    users, items = users[new], items[new]
    pop = cf.n_item[dataset.target]
    score_fn = model.score_fn(graph)
    rankers = {'popularity (train purchases)':
               lambda u: pop.expand(u.numel(), -1).clone(),
               'first stage (causal_cascade-sel)':
               lambda u: score_fn(u)}
    for x in dataset.behaviors:
        rankers[f'item-based CF, {x} -> {dataset.target}'] = \
            lambda u, x=x: cf.item(x, u)
    for x in (dataset.behaviors[0], dataset.target):
        for k in args.neighbours:
            rankers[f'user-based CF, {x}, k = {k}'] = \
                lambda u, x=x, k=k: cf.user(x, k, u)
    rows = []
    for name, fn in rankers.items():
        total = torch.zeros(2)
        for s in range(0, users.numel(), args.chunk_size):
            u, i = users[s:s + args.chunk_size], items[s:s + args.chunk_size]
            score = cf.ranked(fn(u))
            total += rank_metrics(score, i, ~visited[u]).sum(1)
        rows.append((name, *(total / users.numel()).tolist()))
        print(f'{name:<40} HR@10 {rows[-1][1]:.4f} NDCG@10 '
              f'{rows[-1][2]:.4f}', flush=True)
    return users.numel(), rows


def extra_features(cf, dataset, user, item, args):
    r"""The CF scores of the candidates :obj:`[B, K, E]` and their names."""
    cols, names = [], []
    for x in dataset.behaviors:
        cols.append(cf.item(x, user).gather(1, item))
        names.append(f'item_cf_{x}')
    for x in (dataset.behaviors[0], dataset.target):
        cols.append(cf.user(x, args.rerank_neighbours, user).gather(1, item))
        names.append(f'user_cf_{x}')
    return torch.stack(cols, -1), names


def rerank_check(dataset, graph, model, cf, args):
    config = RerankConfig()
    candidates = CandidateFeatures(graph, model.score_fn(graph),
                                   config.num_unvisited)
    users, items = dataset.valid
    chunks, names = [], None
    for s in range(0, users.numel(), args.chunk_size):
        u, i = users[s:s + args.chunk_size], items[s:s + args.chunk_size]
        with torch.no_grad():
            c = candidates(u)
            extra, names = extra_features(cf, dataset, u, c.item, args)
        match = (c.item == i[:, None]) & c.valid
        target = torch.where(match.any(1), match.float().argmax(1),
                             torch.full_like(i, -1))
        chunks.append([u, c.features, extra, c.valid, target, c.item])
    # log(1 + s / mean), as the visited pairs' CF features
    mean = torch.cat([c[2][c[3]] for c in chunks]).mean(0)
    for c in chunks:
        c[2] = torch.log1p(c[2].clamp(min=0) / mean.clamp(min=1e-12)) \
            * c[3].unsqueeze(-1)
    arms = {'candidate features (as in the library)': [],
            '+ item-based CF into the target, every candidate':
            [n for n in names if n.startswith('item_cf')],
            '+ user-based CF': [n for n in names if n.startswith('user_cf')],
            '+ both': names}
    rows, base_scores = [], None
    for arm, extra in arms.items():
        cols = [names.index(n) for n in extra]
        figures = []
        for seed in args.rerank_seeds:
            fig, scores = cross_fit(chunks, cols, config, seed,
                                    dataset.num_users)
            figures.append(fig)
            if base_scores is None:
                base_scores = scores
        fig = torch.tensor(figures).mean(0).tolist()
        rows.append((arm, *fig, figures))
        print(f'{arm:<52} HR@10 {fig[0]:.4f} NDCG@10 {fig[1]:.4f} '
              f'(per seed {[round(f[1], 4) for f in figures]})', flush=True)
    coverage = sum(int((c[4] >= 0).sum()) for c in chunks) / users.numel()
    candidates = [(c[0], c[5], c[3]) for c in chunks]
    return coverage, rows, (candidates, base_scores)


def slot_check(dataset, graph, cf, items_and_scores, k_best):
    r"""The top 10 of ``benchmarks/slot_tradeoff.py`` with the visited items
    in the re-ranker's (cross-fitted) order and the unvisited ones by
    user-based CF on purchases: HR@10 overall / visited / unvisited for
    every number of places given to unvisited items; :obj:`k_best`
    neighbours."""
    from slot_tradeoff import pessimistic_hits

    from graphrec.nn.visited import VisitLinks
    links = VisitLinks(graph, dataset.auxiliary)
    candidates, scores = items_and_scores
    target = dataset.train[dataset.target]
    bought_keys = target[0] * dataset.num_items + target[1]
    ks = list(range(11))
    hits, seen = [], []
    _, truth = dataset.valid
    offset = 0
    for (user, item, valid), score in zip(candidates, scores):
        i = truth[offset:offset + user.numel()]
        offset += user.numel()
        visited = links.dense(user).amax(-1) > 0
        every = torch.arange(dataset.num_items)
        bought = torch.isin(user[:, None] * dataset.num_items + every,
                            bought_keys)
        # Every visited, not bought item is a candidate, so has a score.
        ranked = torch.full(visited.shape, float('-inf')).scatter_(
            1, item, score.masked_fill(~valid, float('-inf')))
        new = cf.ranked(cf.user(dataset.target, k_best, user))
        hits.append(pessimistic_hits(ranked, new, visited, bought, i, ks))
        seen.append(visited[torch.arange(user.numel()), i])
    hits, seen = torch.cat(hits, 1).float(), torch.cat(seen)
    rows = [(k, hits[k].mean().item(), hits[k][seen].mean().item(),
             hits[k][~seen].mean().item()) for k in ks]
    for row in rows:
        print('places {} HR@10 {:.4f} visited {:.4f} unvisited {:.4f}'
              .format(*row), flush=True)
    return rows


def cross_fit(chunks, cols, config, seed, num_users):
    r"""HR@10 and NDCG@10 of a re-ranker cross-fitted over two user folds
    (a validation item outside its user's candidates is a miss), and its
    cross-fitted scores of every chunk's candidates."""
    gen = torch.Generator().manual_seed(seed)
    fold = torch.randint(2, (num_users, ), generator=gen)
    data = [(torch.cat([f, e[..., cols]], -1), v, t, fold[u])
            for u, f, e, v, t, _ in chunks]
    total = torch.zeros(2)
    scores = [torch.zeros(v.shape) for _, v, _, _ in data]
    for held in (0, 1):
        fit = [(f[k], v[k], t[k]) for f, v, t, fo in data
               for k in [(fo != held) & (t >= 0)]]
        torch.manual_seed(seed + held)
        net = ListwiseReranker(fit[0][0].size(-1), config.hidden,
                               config.num_layers)
        net.set_scaling(torch.cat([f[v] for f, v, _ in fit]))
        opt = torch.optim.Adam(net.parameters(), lr=config.lr,
                               weight_decay=config.weight_decay)
        for _ in range(config.epochs):
            for c in torch.randperm(len(fit), generator=gen).tolist():
                f, v, t = fit[c]
                perm = torch.randperm(t.numel(), generator=gen)
                for b in range(0, t.numel(), config.batch_size):
                    idx = perm[b:b + config.batch_size]
                    logit = net(f[idx]).masked_fill(~v[idx], float('-inf'))
                    loss = F.cross_entropy(logit, t[idx])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
        with torch.no_grad():
            for (f, v, t, fo), out in zip(data, scores):
                k = fo == held
                out[k] = net(f[k])
                m = rank_metrics(out[k], t[k].clamp(min=0), v[k])
                total += (m * (t[k] >= 0)).sum(1)
    return (total / sum(int(d[2].numel()) for d in data)).tolist(), scores


def write_page(args, n_new, unvisited, coverage, rerank, slots, k_best,
               seconds):
    command = (f'python benchmarks/explore_signals.py --dataset '
               f'{args.dataset} --threads {args.threads}')
    lines = [
        f'# Signals beyond the second stage, {args.dataset}', '',
        f'Generated by `{command}` ({seconds / 60:.0f} min'
        + (', the first stage loaded from a checkpoint of the same script'
           if args.checkpoint and Path(args.checkpoint).exists() else '')
        + '). Validation '
        'pairs only (carved from train, split seed 0); the test set is not '
        'read. The first stage is `causal_cascade-sel`, trained without '
        'the validation pairs (early stopping on them). See the script\'s '
        'docstring for the definitions.', '',
        f'## Unvisited items with all ten places ({n_new} validation items '
        f'the user never visited)', '',
        'Visited items and train purchases are out of the ranking, so the '
        'ten places all go to unvisited items: the most any share of the '
        'list can give them. Ties of the CF scores are broken by train '
        'popularity, the rest pessimistically.', '',
        '| ranker | HR@10 | NDCG@10 |', '|---|---|---|']
    lines += [f'| {n} | {h:.4f} | {d:.4f} |' for n, h, d in unvisited]
    lines += [
        '', f'## More features for the re-ranker (cross-fitted, 2 user '
        f'folds, mean of re-ranker seeds {args.rerank_seeds})', '',
        f'{coverage:.1%} of the validation items are among their user\'s '
        f'candidates. User-based CF with k = {args.rerank_neighbours}.', '',
        '| features | HR@10 | NDCG@10 | NDCG@10 per seed |',
        '|---|---|---|---|']
    lines += [f'| {n} | {h:.4f} | {d:.4f} | '
              f'{", ".join(f"{f[1]:.4f}" for f in per)} |'
              for n, h, d, per in rerank]
    lines += [
        '', '## Places for unvisited items, visited ones in the re-ranker\'s '
        'order', '',
        f'As `benchmarks/slot_tradeoff.py`, but the visited items are '
        f'ordered by the re-ranker (the first row above, seed '
        f'{args.rerank_seeds[0]}, cross-fitted) and the unvisited ones by '
        f'user-based CF on purchases (k = {k_best}, the best of the first '
        f'table, chosen on these same pairs: the unvisited figures lean '
        f'optimistic); `k` places of the top 10 go to unvisited items (more '
        f'where a user has fewer visited ones); ties of the CF scores broken '
        f'by train popularity, the rest pessimistic.', '',
        '| k | HR@10 | visited HR@10 | unvisited HR@10 |',
        '|---|---|---|---|']
    lines += [f'| {k} | {h:.4f} | {v:.4f} | {n:.4f} |'
              for k, h, v, n in slots]
    path = Path(args.pages) / f'signals-{args.dataset}.md'
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('\n'.join(lines) + '\n')
    print(f'wrote {path}')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--dataset', default='tmall')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--epochs', type=int, default=20,
                        help='most first-stage epochs')
    parser.add_argument('--neighbours', type=int, nargs='+',
                        default=[50, 200],
                        help='k of the user-based CF rankers (check 1)')
    parser.add_argument('--rerank-neighbours', type=int, default=50,
                        help='k of the user-based CF features (check 2)')
    parser.add_argument('--rerank-seeds', type=int, nargs='+',
                        default=[0, 1])
    parser.add_argument('--chunk-size', type=int, default=512)
    parser.add_argument('--pages', default=str(ROOT / 'docs' / 'results'))
    parser.add_argument('--checkpoint', default=None,
                        help='first-stage weights: loaded if the file '
                        'exists, else saved there after training')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.time()
    seed_everything(0)
    dataset = load_data(args.dataset, split_seed=0)
    graph = BehaviorGraph.from_dataset(dataset)
    model = first_stage(args, dataset)
    cf = CFScores(dataset)
    with torch.no_grad():
        n_new, unvisited = unvisited_check(dataset, graph, model, cf, args)
    coverage, rerank, scored = rerank_check(dataset, graph, model, cf, args)
    with torch.no_grad():
        # The best user-based ranker of check 1 (on the same pairs).
        k_best = max(args.neighbours, key=lambda k: next(
            r[1] for r in unvisited
            if r[0] == f'user-based CF, {dataset.target}, k = {k}'))
        slots = slot_check(dataset, graph, cf, scored, k_best)
    write_page(args, n_new, unvisited, coverage, rerank, slots, k_best,
               time.time() - start)


if __name__ == '__main__':
    main()
