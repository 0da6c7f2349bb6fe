"""A linear re-ranker of visited items, learned on carved hold-outs:
validation only, for deciding what the full model's visited-aware head is
missing.

    python benchmarks/explore_reranker.py tmall

Carves two validation splits from train (random purchase per user, split
seeds 0 and 1; the test set is never read). On each, features of every
visited, not yet bought user-item pair are computed from that split's train
graph: viewed / carted, the item's log counts and smoothed conversion rates,
and item-based collaborative-filtering scores (view -> buy, buy -> buy,
cart -> buy, view -> view cosines, averaged over the user's history). A
linear listwise model (softmax over the user's visited items) is fitted on
split 0's held-out purchases and scored on split 1's, visited items ranked
first, with pessimistic ties; the line "va" is the out-of-sample figure. A
cart-first / conversion-rate re-ranker on the same pairs is printed beside
it. Dense item-item matrices: about 14 minutes and 6 GiB on tmall.
"""
import sys
import time

import torch

from graphrec.data.split import carve_validation
from graphrec.datasets.public import load_dataset


def sparse(edges, n_users, n_items):
    value = torch.ones(edges.size(1))
    return torch.sparse_coo_tensor(edges, value, (n_users, n_items),
                                   check_invariants=False).coalesce()


def cosine(X, Y):
    # Item-item X^T Y over sqrt(n^x_j n^y_i), dense [I, I].
    dx = torch.sparse.sum(X, 0).to_dense().clamp(min=1) ** -0.5
    dy = torch.sparse.sum(Y, 0).to_dense().clamp(min=1) ** -0.5
    S = torch.sparse.mm(X.t().coalesce(), Y.to_dense())
    return S * dx[:, None] * dy[None, :]


def build(ds):
    r"""Features of one split's train graph."""
    U, n = ds.num_users, ds.num_items
    B, V, C = (sparse(ds.train[b], U, n) for b in ('buy', 'view', 'cart'))
    cf = {}
    start = time.time()
    for name, (X, Y) in {'bb': (B, B), 'vb': (V, B), 'cb': (C, B),
                         'vv': (V, V)}.items():
        S = cosine(X, Y)
        S.fill_diagonal_(0)
        rows = torch.sparse.sum(X, 1).to_dense().clamp(min=1)
        cf[name] = torch.sparse.mm(X, S) / rows[:, None]  # [U, I]
        del S
    print(f'item-item features: {time.time() - start:.0f} s', flush=True)

    def count(X):
        return torch.sparse.sum(X, 0).to_dense()
    nb, nv, nc = count(B), count(V), count(C)
    item = torch.stack([torch.log1p(nb), torch.log1p(nv), torch.log1p(nc),
                        (nb + 1) / (nv + 10), (nb + 1) / (nc + 10)], 1)
    viewed, carted = V.to_dense() > 0, C.to_dense() > 0
    bought = B.to_dense() > 0
    cand = (viewed | carted) & ~bought
    return dict(cf=cf, item=item, viewed=viewed, carted=carted,
                bought=bought, cand=cand, user=ds.valid[0], pos=ds.valid[1])


def pair_features(s, users):
    out = [s['viewed'][users].float(), s['carted'][users].float()]
    out += [s['item'][:, k][None, :].expand(len(users), -1)
            for k in range(s['item'].size(1))]
    out += [torch.log1p(100 * s['cf'][k][users])
            for k in ('bb', 'vb', 'cb', 'vv')]
    return torch.stack(out, -1)  # [B, I, F]


def hits(score, s, users, items, k=10):
    # Visited items first, train purchases masked, pessimistic ties.
    score = score.clone()
    score[~s['cand'][users]] = -1e9
    score[s['bought'][users]] = float('-inf')
    target = score.gather(1, items[:, None])
    rank = (score >= target).sum(1)
    hit = (rank <= k).float()
    return hit, hit / torch.log2(rank.float() + 1)


def main():
    name = sys.argv[1] if len(sys.argv) > 1 else 'tmall'
    torch.manual_seed(0)
    data = load_dataset(name)
    splits = {tag: build(carve_validation(data, seed=seed))
              for tag, seed in (('tr', 0), ('va', 1))}
    s = splits['tr']
    visited = s['cand'][s['user'], s['pos']]
    ut, it = s['user'][visited], s['pos'][visited]
    w = torch.zeros(pair_features(s, ut[:2]).size(-1), requires_grad=True)
    opt = torch.optim.Adam([w], lr=0.05)
    for epoch in range(60):
        perm, total = torch.randperm(len(ut)), 0.0
        for b in range(0, len(ut), 1024):
            idx = perm[b:b + 1024]
            score = (pair_features(s, ut[idx]) @ w).masked_fill(
                ~s['cand'][ut[idx]], -1e9)
            loss = torch.nn.functional.cross_entropy(score, it[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        if epoch % 10 == 9:
            print(f'epoch {epoch + 1}: loss {total:.3f}', flush=True)
    print('weights', [round(x, 4) for x in w.tolist()])
    for tag, s in splits.items():
        out = {'learned': [], 'rerank': []}
        with torch.no_grad():
            for b in range(0, len(s['user']), 2048):
                u, i = s['user'][b:b + 2048], s['pos'][b:b + 2048]
                out['learned'].append(hits(pair_features(s, u) @ w, s, u, i))
                prior = s['carted'][u].float() * 10 + s['item'][:, 3][None]
                out['rerank'].append(hits(prior, s, u, i))
        v = s['cand'][s['user'], s['pos']]
        line = [tag]
        for key, parts in out.items():
            hr = torch.cat([h for h, _ in parts])
            nd = torch.cat([n for _, n in parts])
            line.append(f'{key} HR@10 {hr.mean():.4f} NDCG@10 '
                        f'{nd.mean():.4f} visited HR@10 {hr[v].mean():.4f}')
        print(' | '.join(line), f'| visited share {v.float().mean():.3f}')


if __name__ == '__main__':
    main()
