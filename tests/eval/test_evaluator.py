import math

import pytest
import torch
from torch_geometric.metrics import (
    LinkPredAveragePopularity,
    LinkPredCoverage,
    LinkPredHitRatio,
    LinkPredMRR,
    LinkPredNDCG,
    LinkPredPrecision,
    LinkPredRecall,
)

from graphrec.data import MultiBehaviorDataset
from graphrec.eval import (
    DotProductScores,
    Evaluator,
    MaskingPolicy,
    auto_chunk_size,
    evaluate_ranking,
)
from graphrec.testing import DEVICES

L = torch.tensor
INF = float('inf')


def table_fn(table):
    r"""A score_fn reading rows of a dense [U, I] score table."""
    return lambda user_index: table[user_index.to(table.device)]


# ---------------------------------------------------------------------------
# A literal fixture, checkable by hand
# ---------------------------------------------------------------------------
# 3 users, 5 items.
#   u0: scores [.9 .8 .7 .6 .5], truth {1, 3}
#   u1: scores [.1 .5 .3 .9 .2], truth {2}, item 3 masked
#   u2: scores [.2 .2 .2 .9 .1], truth {0} (tied with items 1 and 2)
# Ranks (0-based, pessimistic):
#   u0 item 1: item 0 above -> 1
#   u0 item 3: non-truth items 0, 2 above, truth item 1 above -> 3
#   u1 item 2: item 3 is masked, item 1 above -> 1
#   u2 item 0: item 3 above, tied items 1, 2 go first -> 3
SCORES = L([[.9, .8, .7, .6, .5], [.1, .5, .3, .9, .2], [.2, .2, .2, .9, .1]])
TRUTH = L([[0, 0, 1, 2], [1, 3, 2, 0]])
MASK = L([[1], [3]])
VISITED = L([[0, 2, 1], [1, 0, 4]])  # u0-i1 and u2-i0 visited
POP = L([5, 1, 3, 0, 2])


def literal_result(**kwargs):
    return evaluate_ranking(table_fn(SCORES), TRUTH, 5, ks=(2, 4),
                            mask_index=MASK, visited_index=VISITED,
                            item_popularity=POP, **kwargs)


def test_literal_fixture_accuracy_metrics():
    out = literal_result()
    g2, g4 = 1 / math.log2(3), 1 / math.log2(5)  # gains at ranks 1 and 3
    assert out['users'] == 3 and out['truth_pairs'] == 4
    # K=2: u0 one hit of two (rank 1); u1 hit (rank 1); u2 miss (rank 3)
    assert out['hr@2'] == pytest.approx(2 / 3)
    assert out['recall@2'] == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert out['precision@2'] == pytest.approx((1 / 2 + 1 / 2 + 0) / 3)
    ndcg_u0 = g2 / (1 + g2)  # IDCG over min(2 truth, K=2) = 2 positions
    assert out['ndcg@2'] == pytest.approx((ndcg_u0 + g2 + 0) / 3)
    # K=4: every truth item is a hit
    assert out['hr@4'] == 1.0 and out['recall@4'] == 1.0
    assert out['precision@4'] == pytest.approx((2 / 4 + 1 / 4 + 1 / 4) / 3)
    assert out['ndcg@4'] == pytest.approx(
        ((g2 + g4) / (1 + g2) + g2 / 1 + g4 / 1) / 3)
    # MRR: best ranks 1, 1, 3
    assert out['mrr'] == pytest.approx((1 / 2 + 1 / 2 + 1 / 4) / 3)


def test_literal_fixture_visited_split():
    out = literal_result()
    assert out['visited/share'] == 0.5  # u0-i1 and u2-i0 of 4 pairs
    assert out['visited/users'] == 2 and out['unvisited/users'] == 2
    # visited: u0 {i1 at rank 1}, u2 {i0 at rank 3}
    assert out['visited/hr@2'] == 0.5
    assert out['visited/recall@2'] == 0.5
    assert out['visited/ndcg@2'] == pytest.approx(1 / math.log2(3) / 2)
    assert out['visited/mrr'] == pytest.approx((1 / 2 + 1 / 4) / 2)
    # unvisited: u0 {i3 at rank 3 (position unchanged)}, u1 {i2 at rank 1}
    assert out['unvisited/hr@2'] == 0.5
    assert out['unvisited/hr@4'] == 1.0
    assert out['unvisited/ndcg@4'] == pytest.approx(
        (1 / math.log2(5) + 1 / math.log2(3)) / 2)
    assert out['unvisited/mrr'] == pytest.approx((1 / 4 + 1 / 2) / 2)


def test_literal_fixture_bias_metrics():
    out = literal_result()
    # top-2: u0 [0, 1]; u1 [1, 2] (item 3 masked); u2 [3, 0] (0 < 1 < 2
    # among the tied .2 scores)
    assert out['coverage@2'] == pytest.approx(4 / 5)
    # popularity of the 6 entries: 5, 1, 1, 3, 0, 5
    assert out['avg_pop@2'] == pytest.approx(15 / 6)
    # head = top 20% of 5 items = item 0; 4 of 6 entries are not item 0
    assert out['tail_share@2'] == pytest.approx(4 / 6)
    # top-4: u1 adds item 4 -> every item recommended
    assert out['coverage@4'] == 1.0


# ---------------------------------------------------------------------------
# Cross-checks: torch_geometric.metrics and a naive per-user loop
# ---------------------------------------------------------------------------
def random_data(seed, num_users=40, num_items=30, levels=4):
    r"""Integer scores (many ties), 1-4 truth items for most users, a random
    mask disjoint from the truth, random visited pairs."""
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, levels, (num_users, num_items),
                           generator=gen).float()
    truth, mask, visited = [], [], []
    for u in range(num_users):
        perm = torch.randperm(num_items, generator=gen).tolist()
        n_truth = int(torch.randint(0, 5, (1, ), generator=gen))
        n_mask = int(torch.randint(0, 6, (1, ), generator=gen))
        truth += [(u, i) for i in perm[:n_truth]]
        mask += [(u, i) for i in perm[n_truth:n_truth + n_mask]]
        visited += [(u, i) for i in perm[:num_items // 3]
                    if float(torch.rand(1, generator=gen)) < 0.5]
    pop = torch.randint(0, 50, (num_items, ), generator=gen)
    return (scores, L(truth).t().contiguous(), L(mask).t().contiguous(),
            L(visited).t().contiguous(), pop)


def naive_evaluate(scores, truth, num_items, ks, mask, visited, pop,
                   tail_fraction=0.8):
    r"""The definitions, one user at a time, with Python sorts."""
    truth_of = {}
    for u, i in truth.t().tolist():
        truth_of.setdefault(u, set()).add(i)
    masked = set(map(tuple, mask.t().tolist()))
    visited = set(map(tuple, visited.t().tolist()))
    ranks, tops = {}, []
    for u in sorted(truth_of):
        s = scores[u].tolist()
        items = [j for j in range(num_items) if (u, j) not in masked]
        # pessimistic: among equal scores, non-truth items first
        order = sorted(items, key=lambda j: (-s[j], j in truth_of[u], j))
        for pos, j in enumerate(order):
            if j in truth_of[u]:
                ranks[(u, j)] = pos
        tops.append(sorted(items, key=lambda j: (-s[j], j)))

    def summarize(pairs, prefix):
        by_user = {}
        for (u, j) in pairs:
            by_user.setdefault(u, []).append(ranks[(u, j)])
        out = {f'{prefix}users': len(by_user)}
        n = len(by_user)
        for k in ks:
            acc = {'hr': 0., 'recall': 0., 'precision': 0., 'ndcg': 0.}
            for rs in by_user.values():
                hits = sum(r < k for r in rs)
                dcg = sum(1 / math.log2(r + 2) for r in rs if r < k)
                idcg = sum(1 / math.log2(i + 2)
                           for i in range(min(len(rs), k)))
                acc['hr'] += hits > 0
                acc['recall'] += hits / len(rs)
                acc['precision'] += hits / k
                acc['ndcg'] += dcg / idcg
            for name, v in acc.items():
                out[f'{prefix}{name}@{k}'] = v / n if n else math.nan
        out[f'{prefix}mrr'] = (sum(1 / (min(rs) + 1)
                                   for rs in by_user.values()) / n
                               if n else math.nan)
        return out

    out = summarize(list(ranks), '')
    vis = [p for p in ranks if p in visited]
    out.update(summarize(vis, 'visited/'))
    out.update(summarize([p for p in ranks if p not in visited],
                         'unvisited/'))
    out['visited/share'] = len(vis) / len(ranks)
    pop = pop.tolist()
    n_head = math.floor((1 - tail_fraction) * num_items + 1e-9)
    head = set(sorted(range(num_items), key=lambda j: (-pop[j], j))[:n_head])
    for k in ks:
        entries = [j for top in tops for j in top[:k]]
        out[f'coverage@{k}'] = len(set(entries)) / num_items
        out[f'avg_pop@{k}'] = sum(pop[j] for j in entries) / len(entries)
        out[f'tail_share@{k}'] = sum(j not in head
                                     for j in entries) / len(entries)
    out['users'] = len(truth_of)
    out['truth_pairs'] = len(ranks)
    return out


@pytest.mark.parametrize('seed', [0, 1, 2, 3])
def test_matches_naive_loop_with_ties(seed):
    scores, truth, mask, visited, pop = random_data(seed)
    ks = (1, 3, 10)
    expected = naive_evaluate(scores, truth, 30, ks, mask, visited, pop)
    out = evaluate_ranking(table_fn(scores), truth, 30, ks=ks,
                           mask_index=mask, visited_index=visited,
                           item_popularity=pop, chunk_size=9)
    assert set(out) == set(expected)
    for key, value in expected.items():
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(out[key]), key
        else:
            assert out[key] == pytest.approx(value, abs=1e-12), key


def test_matches_torch_geometric_metrics():
    gen = torch.Generator().manual_seed(0)
    num_users, num_items = 25, 40
    # distinct scores per row: no ties, so top-k lists are unambiguous
    scores = torch.stack([torch.randperm(num_items, generator=gen)
                          for _ in range(num_users)]).float()
    truth = L([(u, i) for u in range(num_users) for i in torch.randperm(
        num_items, generator=gen)[:1 + u % 4].tolist()]).t()
    pop = torch.randint(0, 100, (num_items, ), generator=gen)
    ks = (1, 5, 10, num_items)
    out = evaluate_ranking(table_fn(scores), truth, num_items, ks=ks,
                           item_popularity=pop, chunk_size=4)
    for k in ks:
        top = scores.topk(k, dim=1).indices
        for name, metric in (('precision', LinkPredPrecision(k)),
                             ('recall', LinkPredRecall(k)),
                             ('ndcg', LinkPredNDCG(k)),
                             ('hr', LinkPredHitRatio(k)),
                             ('coverage', LinkPredCoverage(k, num_items)),
                             ('avg_pop', LinkPredAveragePopularity(
                                 k, pop.float()))):
            metric.update(top, truth)
            # PyG accumulates in float32
            assert out[f'{name}@{k}'] == pytest.approx(
                float(metric.compute()), rel=1e-6, abs=1e-6), (name, k)
    # PyG's MRR is truncated at k: untruncated when k covers all items
    mrr = LinkPredMRR(num_items)
    mrr.update(scores.topk(num_items, dim=1).indices, truth)
    assert out['mrr'] == pytest.approx(float(mrr.compute()), abs=1e-6)


@pytest.mark.parametrize('device', DEVICES)
def test_identical_for_any_chunk_size(device):
    scores, truth, mask, visited, pop = random_data(5, num_users=60)
    scores = scores + torch.rand(scores.shape,
                                 generator=torch.Generator().manual_seed(1))
    scores[::3] = scores[::3].round()  # some rows with ties
    scores = scores.to(device)
    results = [
        evaluate_ranking(table_fn(scores), truth.to(device), 30,
                         ks=(1, 5, 20), mask_index=mask.to(device),
                         visited_index=visited.to(device),
                         item_popularity=pop.to(device), chunk_size=c)
        for c in (1, 7, 1000)
    ]
    assert not any(isinstance(v, float) and math.isnan(v)
                   for v in results[0].values())
    assert results[0] == results[1] == results[2]


@pytest.mark.parametrize('device', DEVICES)
def test_identical_for_any_memory_budget(device):
    scores, truth, mask, visited, pop = random_data(6, num_users=50)
    scores[::4] = scores[::4].round()
    scores = scores.to(device)
    seen = []

    def fn(user):
        seen.append(user.numel())
        return scores[user]

    def run(**kwargs):
        seen.clear()
        return evaluate_ranking(fn, truth.to(device), 30, ks=(1, 5),
                                mask_index=mask.to(device),
                                visited_index=visited.to(device),
                                item_popularity=pop.to(device), **kwargs)

    reference = run(chunk_size=3)
    users = reference['users']
    # 30 items x 8 bytes = 240 bytes per user row.
    for budget, rows in ((1, 1), (240 * 7 + 239, 7), (10**9, users)):
        assert run(chunk_size='auto', memory_budget=budget) == reference
        assert max(seen) == rows and sum(seen) == users


def test_auto_chunk_size():
    assert auto_chunk_size(1000, memory_budget=8000) == 1
    assert auto_chunk_size(1000, memory_budget=7999) == 1
    assert auto_chunk_size(1000, memory_budget=80_000) == 10
    assert auto_chunk_size(1000, 80_000, bytes_per_score=4) == 20
    assert auto_chunk_size(11953) == 256 * 2**20 // (11953 * 8)
    with pytest.raises(ValueError, match="'memory_budget' must be a "
                       "positive int \\(got 0\\)"):
        auto_chunk_size(10, memory_budget=0)
    with pytest.raises(ValueError, match="'chunk_size' must be a positive "
                       "int or 'auto' \\(got 'big'\\)"):
        Evaluator(chunk_size='big')
    with pytest.raises(ValueError, match="'memory_budget' must be a "
                       "positive int \\(got 1.5\\)"):
        Evaluator(chunk_size='auto', memory_budget=1.5)
    assert repr(Evaluator(chunk_size='auto', memory_budget=1024)).endswith(
        "chunk_size='auto', memory_budget=1024)")


def test_independent_of_pair_order_and_duplicates():
    scores, truth, mask, visited, pop = random_data(7)
    kwargs = dict(ks=(1, 5), mask_index=mask, visited_index=visited,
                  item_popularity=pop)
    out = evaluate_ranking(table_fn(scores), truth, 30, **kwargs)
    perm = torch.randperm(truth.size(1),
                          generator=torch.Generator().manual_seed(0))
    shuffled = torch.cat([truth[:, perm], truth[:, :5]], dim=1)
    kwargs['mask_index'] = torch.cat([mask, mask], dim=1)[:, torch.randperm(
        2 * mask.size(1), generator=torch.Generator().manual_seed(1))]
    assert evaluate_ranking(table_fn(scores), shuffled, 30, **kwargs) == out


def test_user_index_selects_users():
    scores, truth, mask, visited, pop = random_data(8)
    users = L([3, 0, 11, 3, 29])
    keep = torch.isin(truth[0], users)
    sub = evaluate_ranking(table_fn(scores), truth, 30, mask_index=mask,
                           user_index=users)
    ref = evaluate_ranking(table_fn(scores), truth[:, keep], 30,
                           mask_index=mask)
    assert sub == ref
    assert sub['users'] == len(set(truth[0, keep].tolist()))


# ---------------------------------------------------------------------------
# Chance: pessimistic ties, random scorers
# ---------------------------------------------------------------------------
def test_constant_scorer_gets_the_pessimistic_value():
    num_users, num_items = 30, 20
    gen = torch.Generator().manual_seed(0)
    truth = torch.stack([torch.arange(num_users),
                         torch.randint(0, num_items, (num_users, ),
                                       generator=gen)])
    # mask 0-3 items per user, never the truth item
    mask = L([(u, (int(truth[1, u]) + 1 + j) % num_items)
              for u in range(num_users) for j in range(u % 4)]).t()
    unmasked = num_items - torch.arange(num_users) % 4  # N_u
    # an expanded (non-contiguous, read-only) tensor is fine
    out = evaluate_ranking(
        lambda u: torch.zeros(num_items).expand(u.numel(), num_items),
        truth, num_items, ks=(10, 17, 20), mask_index=mask)
    # every truth item ranks last among the N_u unmasked items: N_u - 1
    assert out['hr@10'] == 0.0 and out['ndcg@10'] == 0.0
    assert out['hr@17'] == pytest.approx(float((unmasked <= 17).sum()) / 30)
    assert out['hr@20'] == 1.0
    assert out['ndcg@20'] == pytest.approx(float(
        (1 / torch.log2(unmasked.double() + 1)).mean()))
    assert out['mrr'] == pytest.approx(float((1 / unmasked.double()).mean()))


def test_random_scorer_is_near_chance():
    num_users, num_items, k = 3000, 50, 10
    gen = torch.Generator().manual_seed(0)
    table = torch.rand(num_users, num_items, generator=gen)
    truth = torch.stack([torch.arange(num_users),
                         torch.randint(0, num_items, (num_users, ),
                                       generator=gen)])
    out = evaluate_ranking(table_fn(table), truth, num_items, ks=(k, ))
    assert out['hr@10'] == pytest.approx(k / num_items, abs=0.03)  # 4 sd
    harmonic = sum(1 / r for r in range(1, num_items + 1))
    assert out['mrr'] == pytest.approx(harmonic / num_items, abs=0.015)


# ---------------------------------------------------------------------------
# Masking, -inf scores, score_fn outputs
# ---------------------------------------------------------------------------
def test_masked_item_never_in_top_k_nor_above_truth():
    # item 0 scores highest for every user but is masked for all of them
    table = L([[9., 5., 1., 2., 3.], [9., 1., 5., 2., 3.]])
    truth = L([[0, 1], [1, 2]])
    mask = L([[0, 1], [0, 0]])
    pop = L([1000, 1, 2, 3, 4])
    out = evaluate_ranking(table_fn(table), truth, 5, ks=(1, 4),
                           mask_index=mask, item_popularity=pop)
    assert out['hr@1'] == 1.0 and out['mrr'] == 1.0
    # top-4 lists are items 1..4 exactly: item 0 would show in both
    assert out['coverage@4'] == pytest.approx(4 / 5)
    assert out['avg_pop@4'] == pytest.approx((1 + 2 + 3 + 4) / 4)
    assert out['tail_share@4'] == 1.0  # head = {item 0}


def test_minus_inf_scores_and_short_lists():
    # item 5 scores 1, the rest -inf; item 0 masked; truth item 3 at -inf
    table = L([[-INF, -INF, -INF, -INF, -INF, 1.]])
    out = evaluate_ranking(table_fn(table), L([[0], [3]]), 6, ks=(4, 5),
                           mask_index=L([[0], [0]]))
    # unmasked non-truth items 1, 2, 4, 5 all have s >= -inf: rank 4
    assert out['hr@4'] == 0.0 and out['hr@5'] == 1.0
    assert out['mrr'] == pytest.approx(1 / 5)
    # top-4: item 5, then -inf ties by index among unmasked: 1, 2, 3
    assert out['coverage@4'] == pytest.approx(4 / 6)
    # fewer unmasked items (2) than K: lists are shorter, precision is h/K
    table = L([[1., 4., 3., 2.]])
    out = evaluate_ranking(table_fn(table), L([[0], [2]]), 4, ks=(10, ),
                           mask_index=L([[0, 0], [1, 3]]),
                           item_popularity=L([0, 7, 1, 7]))
    assert out['hr@10'] == 1.0 and out['precision@10'] == 0.1
    assert out['coverage@10'] == 0.5  # items 0 and 2 only
    assert out['avg_pop@10'] == pytest.approx((1 + 0) / 2)


def test_score_fn_outputs_are_left_unchanged_and_any_dtype_works():
    scores, truth, mask, visited, pop = random_data(3)
    truth = truth[:, truth[0] < 9]  # users 0..8 all have truth pairs
    stored = scores.clone()
    kwargs = dict(ks=(1, 5), mask_index=mask, visited_index=visited,
                  item_popularity=pop, chunk_size=8)
    ref = evaluate_ranking(lambda u: stored[u], truth, 30, **kwargs)
    users = torch.unique(truth[0])
    assert torch.equal(users, torch.arange(users.numel()))
    # contiguous views of the stored table: masked entries must be restored
    view = evaluate_ranking(lambda u: stored[int(u[0]):int(u[-1]) + 1],
                            truth, 30, **kwargs)
    assert view == ref and torch.equal(stored, scores)
    ints = evaluate_ranking(lambda u: stored[u].long(), truth, 30, **kwargs)
    assert ints == ref
    # gradient-tracking outputs are copied, never written in place
    weight = stored.clone().requires_grad_()
    grad = evaluate_ranking(lambda u: weight[int(u[0]):int(u[-1]) + 1],
                            truth, 30, **kwargs)
    assert grad == ref and weight._version == 0
    half = evaluate_ranking(lambda u: stored[u].half(), truth, 30, **kwargs)
    assert half == ref  # small integers are exact in float16


@pytest.mark.parametrize('device', DEVICES)
def test_dot_product_scores_reuse_one_buffer(device):
    gen = torch.Generator().manual_seed(4)
    user = torch.randn(40, 8, generator=gen).to(device)
    item = torch.randn(30, 8, generator=gen).to(device)
    item[7] = item[3]  # tied scores in every row
    _, truth, mask, visited, pop = random_data(7, num_users=40)
    fn = DotProductScores(user, item)
    assert fn.accepts_out and fn.num_items == 30
    calls = []

    class Spy(DotProductScores):
        def __call__(self, user_index, out=None):
            calls.append(None if out is None else out.data_ptr())
            return super().__call__(user_index, out=out)

    for chunk in (1, 7, 1000):
        kwargs = dict(ks=(1, 5, 20), mask_index=mask.to(device),
                      visited_index=visited.to(device),
                      item_popularity=pop.to(device), chunk_size=chunk)
        ref = evaluate_ranking(lambda u: user[u] @ item.t(),
                               truth.to(device), 30, **kwargs)
        calls.clear()
        out = evaluate_ranking(Spy(user, item), truth.to(device), 30,
                               **kwargs)
        assert out == ref
        # A fresh first chunk, then every chunk written into its memory.
        assert calls[0] is None and len(set(calls[1:])) <= 1
        assert len(calls) == math.ceil(ref['users'] / chunk)
    # A stored table behind an out-accepting score_fn is left unchanged:
    # the first chunk is restored, later ones go to the evaluator's buffer.
    table = (user @ item.t()).contiguous()
    stored = table.clone()

    class Stored:
        accepts_out = True

        def __call__(self, user_index, out=None):
            rows = table[int(user_index[0]):int(user_index[-1]) + 1]
            if out is None:
                return rows
            return out.copy_(rows)

    every = torch.arange(40, device=device)
    every_truth = torch.stack([every, every % 30])
    every_mask = torch.stack([every, (every + 1) % 30])
    for chunk in (7, 40):
        kwargs = dict(ks=(1, 5), mask_index=every_mask, chunk_size=chunk)
        ref = evaluate_ranking(lambda u: table[u], every_truth, 30, **kwargs)
        assert evaluate_ranking(Stored(), every_truth, 30, **kwargs) == ref
        assert torch.equal(table, stored)
    # Called without a buffer it is an ordinary score_fn.
    users = torch.tensor([3, 0], device=device)
    assert torch.allclose(fn(users), user[users] @ item.t())
    with pytest.raises(ValueError, match="'user' and 'item' must have the "
                       "same embedding size \\(got 8 and 4\\)"):
        DotProductScores(user, item[:, :4])
    with pytest.raises(ValueError, match="'item' must be a 2-D tensor"):
        DotProductScores(user, item[0])
    assert repr(fn) == 'DotProductScores(users=40, items=30, dim=8)'


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------
def test_evaluate_ranking_errors():
    fn = table_fn(SCORES)

    def run(**kwargs):
        args = dict(score_fn=fn, truth_index=TRUTH, num_items=5)
        args.update(kwargs)
        return evaluate_ranking(args.pop('score_fn'), args.pop('truth_index'),
                                args.pop('num_items'), **args)

    with pytest.raises(TypeError, match="'score_fn' must be callable "
                       "\\(got Tensor\\)"):
        run(score_fn=SCORES)
    with pytest.raises(ValueError, match="'num_items' must be a positive int"
                       " \\(got 0\\)"):
        run(num_items=0)
    for ks in ((), (0, ), (10.0, ), 10, (True, )):
        with pytest.raises(ValueError, match="'ks' must be a non-empty "
                           "sequence of positive ints"):
            run(ks=ks)
    with pytest.raises(ValueError, match="'chunk_size' must be a positive "
                       "int or 'auto' \\(got 0\\)"):
        run(chunk_size=0)
    with pytest.raises(ValueError, match="'tail_fraction' must be a float "
                       "in \\[0, 1\\] \\(got 1.5\\)"):
        run(tail_fraction=1.5)
    with pytest.raises(TypeError, match="'truth_index' must be a LongTensor"
                       " of shape \\[2, E\\] \\(got list\\)"):
        run(truth_index=[[0], [1]])
    with pytest.raises(ValueError, match="'truth_index' must have shape "
                       "\\[2, E\\] \\(got \\[3, 1\\]\\)"):
        run(truth_index=L([[0], [1], [2]]))
    with pytest.raises(TypeError, match="'truth_index' must hold integer ids"
                       " \\(got dtype torch.float32\\)"):
        run(truth_index=TRUTH.float())
    with pytest.raises(ValueError, match="'truth_index' has user id -1 < 0"):
        run(truth_index=L([[-1], [0]]))
    with pytest.raises(ValueError, match="'mask_index' has item id 5 "
                       "outside \\[0, 4\\] \\(num_items=5\\)"):
        run(mask_index=L([[0], [5]]))
    with pytest.raises(ValueError, match="'visited_index' must have shape "):
        run(visited_index=L([0, 1]))
    with pytest.raises(ValueError, match="'user_index' must be a 1-D integer"
                       " tensor \\(got shape \\[1, 1\\]"):
        run(user_index=L([[0]]))
    with pytest.raises(ValueError, match="'truth_index' has no pair to "
                       "evaluate \\(got 0 pairs\\)"):
        run(truth_index=L([[], []]).long())
    with pytest.raises(ValueError, match="no pair to evaluate \\(got 0 pairs"
                       " for the users in 'user_index'\\)"):
        run(user_index=L([7]))
    with pytest.raises(ValueError, match="'truth_index' has 1 pair\\(s\\) "
                       "that are also in 'mask_index', e.g. \\(user 1, item "
                       "2\\)"):
        run(mask_index=L([[1, 1], [2, 4]]))
    with pytest.raises(ValueError, match="'score_fn' must return a Tensor of"
                       " shape \\[B, num_items\\] = \\[3, 5\\] \\(got \\[3, "
                       "4\\]\\)"):
        run(score_fn=lambda u: SCORES[u][:, :4])
    with pytest.raises(ValueError, match="'score_fn' must return a Tensor of"
                       " shape .* \\(got list\\)"):
        run(score_fn=lambda u: SCORES[u].tolist())
    for bad in (float('nan'), INF):
        table = SCORES.clone()
        table[2, 4] = bad
        with pytest.raises(ValueError, match="'score_fn' returned a non-"
                           "finite score \\(NaN or \\+inf\\) for user 2"):
            run(score_fn=table_fn(table))
    with pytest.raises(ValueError, match="'item_popularity' must be a tensor"
                       " of shape \\[num_items\\] = \\[5\\] \\(got \\[4\\]"):
        run(item_popularity=L([1, 2, 3, 4]))


# ---------------------------------------------------------------------------
# Evaluator and MaskingPolicy on a tiny MultiBehaviorDataset
# ---------------------------------------------------------------------------
@pytest.fixture
def dataset():
    r"""3 users, 5 items.

    view:  u0-i3, u0-i4, u1-i2, u2-i0
    buy:   u0-i0, u1-i1, u2-i2
    valid: u0-i1, u1-i3
    test:  u0-i3 (viewed), u1-i0, u2-i4
    """
    return MultiBehaviorDataset(
        name='t', num_users=3, num_items=5, behaviors=('view', 'buy'),
        train={'view': L([[0, 0, 1, 2], [3, 4, 2, 0]]),
               'buy': L([[0, 1, 2], [0, 1, 2]])},
        valid=L([[0, 1], [1, 3]]), test=L([[0, 1, 2], [3, 0, 4]]))


TINY_SCORES = L([[5., 3., 1., 4., 2.],   # test i3 (4) < masked i0 (5)
                 [1., 2., 0., 5., 3.],   # test i0 (1): masked i1, i3 above
                 [0., 1., 5., 2., 4.]])  # test i4 (4) < masked i2 (5)


def test_evaluator_default_masks_train_target_and_valid(dataset):
    out = Evaluator(ks=(1, 2)).evaluate(table_fn(TINY_SCORES), dataset)
    assert out['split'] == 'test' and out['masking'] == 'train:buy+valid'
    # ranks: u0 0 (i0, i1 masked), u1 1 (i4 above; i1, i3 masked), u2 0
    assert out['hr@1'] == pytest.approx(2 / 3)
    assert out['mrr'] == pytest.approx((1 + 1 / 2 + 1) / 3)
    # visited split from the view edges: only u0-i3 is visited
    assert out['visited/share'] == pytest.approx(1 / 3)
    assert out['visited/users'] == 1 and out['unvisited/users'] == 2
    assert out['visited/hr@1'] == 1.0 and out['unvisited/hr@1'] == 0.5
    assert out['unvisited/mrr'] == pytest.approx((1 / 2 + 1) / 2)
    # popularity = train buy counts [1, 1, 1, 0, 0]; top-1: i3, i4, i4
    assert out['avg_pop@1'] == 0.0 and out['coverage@1'] == 0.4
    assert out['tail_share@1'] == 1.0  # head = {i0}


def test_evaluator_other_policies(dataset):
    fn = table_fn(TINY_SCORES)
    out = Evaluator(ks=(1, 2), masking=MaskingPolicy.none()).evaluate(
        fn, dataset)
    # ranks without masking: u0 1, u1 3, u2 1
    assert out['masking'] == 'none'
    assert out['hr@1'] == 0.0 and out['hr@2'] == pytest.approx(2 / 3)
    assert out['mrr'] == pytest.approx((1 / 2 + 1 / 4 + 1 / 2) / 3)
    out = Evaluator(ks=(1, ), masking=MaskingPolicy(
        mask_valid=False)).evaluate(fn, dataset)
    # train buys only: u0 0, u1 2 (valid i3 and i4 above), u2 0
    assert out['masking'] == 'train:buy'
    assert out['mrr'] == pytest.approx((1 + 1 / 3 + 1) / 3)
    # masking viewed items would hide the viewed test item u0-i3
    policy = MaskingPolicy(train_behaviors=('view', 'buy'))
    assert policy.describe('buy') == 'train:view,buy+valid'
    with pytest.raises(ValueError, match="'truth_index' has 1 pair\\(s\\) "
                       "that are also in 'mask_index', e.g. \\(user 0, item "
                       "3\\)"):
        Evaluator(masking=policy).evaluate(fn, dataset)


def test_evaluator_valid_split_never_masks_test(dataset):
    out = Evaluator(ks=(1, )).evaluate(table_fn(TINY_SCORES), dataset,
                                       split='valid')
    assert out['split'] == 'valid' and out['masking'] == 'train:buy'
    assert out['users'] == 2 and out['truth_pairs'] == 2
    # u0 valid i1 (3): test i3 (4) stays in the ranking -> rank 1;
    # u1 valid i3 (5) -> rank 0
    assert out['hr@1'] == 0.5
    assert out['mrr'] == pytest.approx((1 / 2 + 1) / 2)
    no_valid = dataset.replace(valid=None)
    out = Evaluator(ks=(1, )).evaluate(table_fn(TINY_SCORES), no_valid)
    assert out['masking'] == 'train:buy'
    # without validation pairs u1's i3 (5) is unmasked: ranks 0, 2, 0
    assert out['mrr'] == pytest.approx((1 + 1 / 3 + 1) / 3)


def test_evaluator_user_index_and_repr(dataset):
    ev = Evaluator(ks=(1, ))
    out = ev.evaluate(table_fn(TINY_SCORES), dataset, user_index=L([1]))
    assert out['users'] == 1 and out['hr@1'] == 0.0 and out['mrr'] == 0.5
    assert repr(ev) == ("Evaluator(ks=(1,), masking='train:target+valid', "
                        "chunk_size=1024)")
    assert torch.equal(ev.mask_index(dataset, 'valid'),
                       dataset.train['buy'])


def test_evaluator_and_policy_errors(dataset):
    fn = table_fn(TINY_SCORES)
    with pytest.raises(ValueError, match="'ks' must be a non-empty sequence"
                       " of positive ints \\(got \\(0, 5\\)\\)"):
        Evaluator(ks=(0, 5))
    with pytest.raises(ValueError, match="'chunk_size' must be a positive "
                       "int or 'auto' \\(got -1\\)"):
        Evaluator(chunk_size=-1)
    with pytest.raises(ValueError, match="'tail_fraction' must be a float "
                       "in \\[0, 1\\] \\(got -0.1\\)"):
        Evaluator(tail_fraction=-0.1)
    with pytest.raises(ValueError, match="'masking' must be a MaskingPolicy "
                       "\\(got str\\)"):
        Evaluator(masking='train:buy')
    with pytest.raises(ValueError, match="'split' must be 'test' or 'valid' "
                       "\\(got 'train'\\)"):
        Evaluator().evaluate(fn, dataset, split='train')
    with pytest.raises(ValueError, match="'split' is 'valid' but dataset 't'"
                       " has no validation pairs"):
        Evaluator().evaluate(fn, dataset.replace(valid=None), split='valid')
    with pytest.raises(ValueError, match="'masking' names behaviors "
                       "\\['cart'\\] that are not in the dataset"):
        Evaluator(masking=MaskingPolicy('cart')).evaluate(fn, dataset)
    with pytest.raises(ValueError, match="'train_behaviors' must be None or "
                       "a sequence of behavior names \\(got \\[1\\]\\)"):
        MaskingPolicy(train_behaviors=[1])
    with pytest.raises(ValueError, match="'mask_valid' must be a bool "
                       "\\(got 'yes'\\)"):
        MaskingPolicy(mask_valid='yes')
