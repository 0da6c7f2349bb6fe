import dataclasses
import hashlib
import json

import pytest
import torch

from graphrec.bench import RunSpec
from graphrec.cli import load_data
from graphrec.data.graph import BehaviorGraph
from graphrec.nn.rerank import CandidateFeatures
from graphrec.testing import DEVICES
from graphrec.train import RerankConfig, TrainConfig, fit_reranker
from graphrec.train.experiment import run_experiment


def planted(num_users=240, num_items=60, seed=0):
    r"""Users view 8 random items and buy one other; the held-out purchase
    is the viewed item with the most views overall (a feature the
    re-ranker sees), while the first stage scores at random.
    """
    gen = torch.Generator().manual_seed(seed)
    view, buy, held = [], [], []
    for u in range(num_users):
        items = torch.randperm(num_items, generator=gen)
        view += [(u, int(i)) for i in items[:8]]
        buy.append((u, int(items[8])))
    view = torch.tensor(view).t()
    count = torch.bincount(view[1], minlength=num_items).float()
    for u in range(num_users):
        mine = view[1][view[0] == u]
        # most viewed, ties to the lower id
        held.append(int(mine[torch.argmax(count[mine] * num_items - mine)]))
    graph = BehaviorGraph(num_users, num_items,
                          {'view': view, 'buy': torch.tensor(buy).t()},
                          ('view', 'buy'))
    scores = torch.rand(num_users, num_items, generator=gen)
    pairs = torch.stack([torch.arange(num_users), torch.tensor(held)])
    return graph, (lambda user: scores[user]), pairs


def hit_at_1(fn, pairs):
    out = fn(pairs[0])
    return (out.argmax(1) == pairs[1]).float().mean().item()


def test_fit_reranker_learns_a_planted_signal_and_cross_fits():
    graph, score_fn, pairs = planted()
    config = RerankConfig(num_unvisited=5, hidden=8, epochs=30, lr=0.02,
                          batch_size=32, folds=2)
    fitted = fit_reranker(graph, score_fn, pairs, config)
    assert fitted.coverage == 1.0  # every held-out item was viewed
    assert len(fitted.losses) == 30
    assert fitted.losses[-1] < fitted.losses[0]
    stage1 = hit_at_1(score_fn, pairs)
    cross = hit_at_1(fitted.cross_fitted, pairs)
    final = hit_at_1(fitted.score_fn, pairs)
    assert stage1 < 0.2
    # out of fold: each user scored by a model that never saw her pair
    assert cross > 0.7, (stage1, cross)
    assert final >= cross - 0.05
    # the folds are different models
    a, b = fitted.cross_fitted.models
    assert not torch.equal(a.linear.weight, b.linear.weight)


@pytest.mark.parametrize('bag', [1, 3])
def test_a_fold_model_never_sees_its_users_pairs(bag):
    graph, score_fn, pairs = planted(num_users=120)
    config = RerankConfig(num_unvisited=5, hidden=4, epochs=2, folds=2,
                          bag=bag)
    one = fit_reranker(graph, score_fn, pairs, config)
    fold = one.cross_fitted.fold[pairs[0]]
    # other held-out items (still visited, so still candidates) for the
    # users of fold 0
    view = graph.edge_index_dict['view']
    other = pairs.clone()
    for n in (fold == 0).nonzero().flatten().tolist():
        mine = view[1][view[0] == pairs[0, n]]
        other[1, n] = mine[mine != pairs[1, n]][0]
    two = fit_reranker(graph, score_fn, other, config)
    assert two.coverage == one.coverage == 1.0
    same = [torch.equal(a, b) for a, b in zip(
        one.cross_fitted.models[0].state_dict().values(),
        two.cross_fitted.models[0].state_dict().values())]
    assert all(same)  # fitted on fold 1 only
    assert not all(torch.equal(a, b) for a, b in zip(
        one.cross_fitted.models[1].state_dict().values(),
        two.cross_fitted.models[1].state_dict().values()))


@pytest.mark.parametrize('device', DEVICES)
def test_fit_reranker_is_seeded(device):
    graph, score_fn, pairs = planted(num_users=60)
    graph = graph.to(device)
    fn = score_fn
    score_fn = lambda user: fn(user.cpu()).to(device)  # noqa: E731
    config = RerankConfig(num_unvisited=5, hidden=4, epochs=2, folds=1)
    one = fit_reranker(graph, score_fn, pairs, config)
    two = fit_reranker(graph, score_fn, pairs, config)
    assert one.cross_fitted is None
    assert one.losses == two.losses
    out = one.score_fn(pairs[0])
    assert out.device.type == device
    assert torch.equal(out, two.score_fn(pairs[0]))


def test_a_bag_averages_reranker_seeds_and_starts_with_the_single_one():
    from graphrec.nn.rerank import RerankerBag
    graph, score_fn, pairs = planted(num_users=120)
    base = dict(num_unvisited=5, hidden=4, epochs=2, folds=2)
    one = fit_reranker(graph, score_fn, pairs, RerankConfig(**base))
    # bag=1 fits what a single re-ranker fitted before the option existed
    # (digest of the fold models' and the final one's weights, computed
    # with the code before it): the committed result rows depend on it
    digest = hashlib.sha256()
    for m in [*one.cross_fitted.models, one.reranker]:
        for k, v in m.state_dict().items():
            digest.update(k.encode())
            digest.update(v.contiguous().numpy().tobytes())
    assert digest.hexdigest()[:16] == '8bd0748fca4d27fd'
    bag = fit_reranker(graph, score_fn, pairs, RerankConfig(**base, bag=3))
    assert isinstance(bag.reranker, RerankerBag)
    # one mean loss per epoch, over the members
    assert len(bag.reranker.members) == 3 and len(bag.losses) == 2
    # the first fit's member 0 is the re-ranker that bag=1 fits there (same
    # initialisation, same random stream; later fits draw after the
    # members before them): the first fold's, and with one fold the final
    solo = dict(base, folds=1)
    alone = fit_reranker(graph, score_fn, pairs, RerankConfig(**solo))
    bagged_alone = fit_reranker(graph, score_fn, pairs,
                                RerankConfig(**solo, bag=2))
    for single, bagged in ((alone.reranker, bagged_alone.reranker),
                           (one.cross_fitted.models[0],
                            bag.cross_fitted.models[0])):
        for a, b in zip(single.state_dict().values(),
                        bagged.members[0].state_dict().values()):
            assert torch.equal(a, b)
    first, second = bag.reranker.members[:2]
    assert not torch.equal(first.linear.weight, second.linear.weight)
    c = bag.candidates(pairs[0])
    mean = torch.stack([m(c.features) for m in bag.reranker.members]).mean(0)
    assert torch.allclose(bag.reranker(c.features), mean)
    # the bag ranks by the mean: every user's best candidate is its argmax
    out = bag.score_fn(pairs[0])
    best = mean.masked_fill(~c.valid, float('-inf')).argmax(1)
    assert torch.equal(out.argmax(1), c.item.gather(1, best[:, None])[:, 0])
    with pytest.raises(ValueError, match="'members' must share"):
        RerankerBag([first, type(first)(first.num_features + 1)])
    with pytest.raises(TypeError, match="'members'"):
        RerankerBag([])


def test_fit_reranker_errors():
    graph, score_fn, pairs = planted(num_users=20)
    with pytest.raises(TypeError, match="'pairs'"):
        fit_reranker(graph, score_fn, pairs.tolist())
    with pytest.raises(ValueError, match="'pairs'"):
        fit_reranker(graph, score_fn, pairs[:1])
    with pytest.raises(TypeError, match="'config'"):
        fit_reranker(graph, score_fn, pairs, {'hidden': 3})
    with pytest.raises(ValueError, match=r"'pairs\[1\]'"):
        fit_reranker(graph, score_fn, torch.tensor([[0], [60]]))
    # all in one fold: the other fold has nothing to fit on
    with pytest.raises(ValueError, match="'folds'"):
        fit_reranker(graph, score_fn, pairs[:, :1],
                     RerankConfig(folds=2))
    # a held-out item that is a train purchase is never a candidate
    bought = graph.edge_index_dict['buy']
    with pytest.raises(ValueError, match="raise 'num_unvisited'"):
        fit_reranker(graph, score_fn, bought,
                     RerankConfig(num_unvisited=0))
    for field, value in (('hidden', -1), ('folds', 0), ('epochs', 1.5),
                         ('lr', 0.0), ('weight_decay', -1.0),
                         ('num_unvisited', True),
                         ('merge_validation', 1), ('drop', 'score'),
                         ('carve_auxiliary', 'yes'),
                         ('carve_auxiliary', 1), ('bag', 0),
                         ('drop', [3])):
        with pytest.raises(ValueError, match=f"'{field}'"):
            RerankConfig(**{field: value})


def test_run_experiment_with_a_second_stage():
    data = load_data('synthetic')
    config = TrainConfig(epochs=4, batch_size=1024, eval_every=2,
                         progress=False)
    plain = run_experiment('lightgcn', data, {}, config)
    row = run_experiment('lightgcn', data, {}, config,
                         rerank={'epochs': 2, 'hidden': 8})
    assert row['stage1_valid'] == pytest.approx(plain['valid'])
    assert row['valid'] == row['rerank']['valid']['ndcg@10']
    assert row['rerank']['hidden'] == 8 and 0 < row['rerank']['coverage']
    # the second stage follows the run's seed unless given one
    assert row['rerank']['seed'] == config.seed == 0
    other = dataclasses.replace(config, seed=3)
    assert run_experiment('lightgcn', data, {}, other, rerank={
        'epochs': 1, 'hidden': 8})['rerank']['seed'] == 3
    assert run_experiment('lightgcn', data, {}, other, rerank={
        'epochs': 1, 'hidden': 8, 'seed': 5})['rerank']['seed'] == 5
    assert 're-ranker fitted on the validation pairs' in row['selection']
    # the same first stage, another test ranking
    assert row['best_epoch'] == plain['best_epoch']
    assert row['metrics']['ndcg@10'] != plain['metrics']['ndcg@10']
    # test candidates from the train graph with the validation pairs put
    # back instead of the first stage's: same fit, another test ranking
    merged = run_experiment('lightgcn', data, {}, config,
                            rerank={'epochs': 2, 'hidden': 8,
                                    'merge_validation': True})
    assert row['rerank']['merge_validation'] is False
    assert merged['valid'] == row['valid']
    assert merged['metrics']['ndcg@10'] != row['metrics']['ndcg@10']
    # User-based CF adds candidates (a superset: visited, the CF's best,
    # then the first stage's best of the rest) and a feature.
    knn = run_experiment('lightgcn', data, {}, config,
                         rerank={'epochs': 2, 'hidden': 8, 'neighbours': 20})
    assert knn['rerank']['neighbours'] == 20
    assert knn['rerank']['coverage'] >= row['rerank']['coverage']
    assert knn['metrics']['ndcg@10'] != row['metrics']['ndcg@10']
    with pytest.raises(ValueError, match='refit=False'):
        run_experiment('lightgcn', data, {}, TrainConfig(refit=True),
                       rerank={})
    with pytest.raises(ValueError, match="'hidden'"):
        run_experiment('lightgcn', data, {}, config, rerank={'hidden': -2})


@pytest.mark.parametrize('rerank, error, match', [
    ({'folds': 1}, ValueError, 'folds >= 2'),
    ({'hiden': 3}, ValueError, r"unknown field\(s\) \['hiden'\]"),
    ([('hidden', 3)], TypeError, "'rerank' must be a dict"),
    ({'drop': ['nothing']}, ValueError, "'drop' names no feature"),
    ({'drop': ['user_cf']}, ValueError, "'drop' names no feature"),
    ({'neighbours': -1}, ValueError, "'neighbours' must be an int >= 0"),
])
def test_run_experiment_checks_rerank_before_training(monkeypatch, rerank,
                                                      error, match):
    import graphrec.train.experiment as experiment

    def no_training(*args, **kwargs):
        raise AssertionError('trained before checking')
    monkeypatch.setattr(experiment, 'make_trainer', no_training)
    with pytest.raises(error, match=match):
        run_experiment('lightgcn', load_data('synthetic'), {},
                       TrainConfig(epochs=1), rerank=rerank)


def test_rerank_enters_the_fingerprint_only_when_set():
    spec = RunSpec('a', 'mf', {'embedding_dim': 8}, {'lr': 0.1})
    with_rerank = RunSpec('a', 'mf', {'embedding_dim': 8}, {'lr': 0.1},
                          rerank={})
    # the hash runs made before the field existed were stored under
    old = hashlib.sha256(json.dumps(['mf', {'embedding_dim': 8},
                                     {'lr': 0.1}, []], sort_keys=True)
                         .encode()).hexdigest()[:12]
    assert spec.fingerprint() == old
    assert spec.fingerprint() != with_rerank.fingerprint()


def test_a_users_other_heldout_items_leave_her_softmax():
    from graphrec.train.rerank import softmax_rows
    num_items = 10
    # user 0 holds out items 3 and 5, user 1 item 5
    user, item = torch.tensor([0, 0, 1]), torch.tensor([3, 5, 5])
    held = torch.unique(user * num_items + item)
    cand = torch.tensor([[5, 3, 7, 0], [5, 3, 7, 0], [3, 5, 7, 0]])
    real = torch.tensor([[True, True, True, False]] * 3)
    valid, target = softmax_rows(user, item, cand, real, held, num_items)
    assert target.tolist() == [1, 0, 1]
    assert valid.tolist() == [[False, True, True, False],
                              [True, False, True, False],
                              [True, True, True, False]]
    # an item that is no candidate has no class
    valid, target = softmax_rows(torch.tensor([1]), torch.tensor([9]),
                                 cand[2:], real[2:], held, num_items)
    assert target.tolist() == [-1]


def planted_repeat(num_users=200, num_items=60, seed=0):
    r"""Users view 8 random items and buy the 3 most viewed of them (by
    views overall); the held-out purchase is the 4th most viewed, which
    the carved lists of the train purchases teach as well.
    """
    gen = torch.Generator().manual_seed(seed)
    view = []
    for u in range(num_users):
        items = torch.randperm(num_items, generator=gen)[:8]
        view += [(u, int(i)) for i in items]
    view = torch.tensor(view).t()
    count = torch.bincount(view[1], minlength=num_items).float()
    buy, held = [], []
    for u in range(num_users):
        mine = view[1][view[0] == u]
        order = mine[torch.argsort(count[mine] * num_items - mine,
                                   descending=True)]
        buy += [(u, int(i)) for i in order[:3]]
        held.append(int(order[3]))
    graph = BehaviorGraph(num_users, num_items,
                          {'view': view, 'buy': torch.tensor(buy).t()},
                          ('view', 'buy'))
    pairs = torch.stack([torch.arange(num_users), torch.tensor(held)])
    scores = torch.rand(num_users, num_items, generator=gen)
    return graph, (lambda user: scores[user]), pairs


def test_carve_graph_holds_out_one_target_edge_per_user():
    from graphrec.train.rerank import carve_graph
    graph, _, _ = planted_repeat(num_users=30)
    buy = graph.edge_index_dict['buy']
    # a user with one purchase keeps it
    graph.edge_index_dict['buy'] = buy = buy[:, 2:]
    carved, pairs = carve_graph(graph, torch.Generator().manual_seed(0))
    left = carved.edge_index_dict['buy']
    assert pairs.size(1) == 30 - 1
    assert sorted(pairs[0].tolist()) == list(range(1, 30))  # not user 0
    both = torch.cat([left, pairs], 1)
    key = lambda e: sorted((e[0] * 100 + e[1]).tolist())  # noqa: E731
    assert key(both) == key(buy)
    assert torch.equal(carved.edge_index_dict['view'],
                       graph.edge_index_dict['view'])
    # timestamps follow their edges
    timed = BehaviorGraph(
        graph.num_users, graph.num_items, graph.edge_index_dict,
        graph.behaviors, {b: e[0] * 1000 + e[1]
                          for b, e in graph.edge_index_dict.items()})
    cut, held = carve_graph(timed, torch.Generator().manual_seed(0),
                            drop_auxiliary=True)
    for b, e in cut.edge_index_dict.items():
        assert torch.equal(cut.timestamps[b], e[0] * 1000 + e[1])
    assert torch.equal(held, pairs)
    dropped, same = carve_graph(graph, torch.Generator().manual_seed(0),
                                drop_auxiliary=True)
    assert torch.equal(same, pairs)
    view = dropped.edge_index_dict['view']
    assert key(torch.cat([view, pairs], 1)) == key(
        graph.edge_index_dict['view'])  # every held-out pair was viewed
    again = carve_graph(graph, torch.Generator().manual_seed(0))[1]
    other = carve_graph(graph, torch.Generator().manual_seed(1))[1]
    assert torch.equal(again, pairs)
    assert not torch.equal(other, pairs)


def test_carved_lists_add_what_few_pairs_miss():
    hits = {0: [], 3: []}
    for seed in range(3):
        graph, score_fn, pairs = planted_repeat(seed=seed)
        few = pairs[:, :6]  # too few held-out pairs to learn the order from
        for carves in (0, 3):
            config = RerankConfig(num_unvisited=0, hidden=0, epochs=20,
                                  lr=0.02, batch_size=16, folds=1,
                                  drop=['score'], carves=carves)
            fitted = fit_reranker(graph, score_fn, few, config)
            assert fitted.carved_lists == (0 if not carves else
                                           carves * graph.num_users)
            out = fitted.score_fn(pairs[0, 6:])
            mine = out.gather(1, pairs[1, 6:, None])
            # pessimistic: a tie with another item is a miss
            hits[carves].append(((out >= mine).sum(1) == 1).float().mean()
                                .item())
    mean = {k: sum(v) / len(v) for k, v in hits.items()}
    # the held-out item is the candidate with the most views (ties to the
    # most bought); a handful of pairs leaves the order half learnt
    assert mean[3] > 0.8, hits
    assert mean[3] > mean[0] + 0.03, hits


def test_carved_lists_hold_visited_and_cf_candidates_only():
    from graphrec.train.rerank import _carved_lists
    graph, score_fn, pairs = planted_repeat(num_users=80)
    config = RerankConfig(num_unvisited=5, neighbours=5, drop=['score'],
                          carves=2)
    fold = torch.randint(2, (graph.num_users, ),
                         generator=torch.Generator().manual_seed(0))
    chunks = _carved_lists(graph, pairs, config,
                           torch.Generator().manual_seed(0), fold)
    names = CandidateFeatures(graph, score_fn, 5,
                              neighbours=5).feature_names()
    visited, cf = names.index('visited'), names.index('user_cf')
    rows = torch.cat([f[v] for f, v, _, _ in chunks])
    assert rows.size(0) > 0
    # every candidate is visited or one of the CF's (positive score):
    # none is the first stage's pick
    assert bool(((rows[:, visited] == 1) | (rows[:, cf] > 0)).all())
    assert bool((rows[:, cf] > 0).any())  # the CF's are there
    assert bool((rows[:, :2] == 0).all())  # no first-stage score
    # each list carries its user's fold (the fold models leave them out)
    tags = torch.cat([t for _, _, _, t in chunks])
    assert set(tags.tolist()) == {0, 1}


def test_carve_auxiliary_follows_the_held_out_pairs():
    from graphrec.train.rerank import _carved_lists
    graph, score_fn, pairs = planted_repeat(num_users=40)
    fold = torch.zeros(graph.num_users, dtype=torch.long)
    config = RerankConfig(num_unvisited=0, drop=['score'], carves=1,
                          folds=1)
    # held-out items that were viewed: the carved pairs stay viewed, so
    # each carved purchase is among its user's (visited) candidates
    n = sum(int(c[2].numel()) for c in _carved_lists(
        graph, pairs, config, torch.Generator().manual_seed(0), fold))
    assert n == graph.num_users
    # held-out items never viewed (as on retailrocket): the carved pairs
    # leave the views too, so no carved purchase is a visited candidate
    unseen = pairs.clone()
    unseen[1] = (pairs[1] + 1) % graph.num_items
    view = graph.edge_index_dict['view']
    fresh = ~torch.isin(unseen[0] * graph.num_items + unseen[1],
                        view[0] * graph.num_items + view[1])
    n = sum(int(c[2].numel()) for c in _carved_lists(
        graph, unseen[:, fresh], config, torch.Generator().manual_seed(0),
        fold))
    assert n == 0


def test_carves_need_the_score_dropped():
    with pytest.raises(ValueError, match="'carves'"):
        RerankConfig(carves=2)
    with pytest.raises(ValueError, match="'carves'"):
        RerankConfig(carves=2, drop=['score_centered'])
    with pytest.raises(ValueError, match="'carves'"):
        RerankConfig(carves=-1, drop=['score'])
    assert RerankConfig(carves=2, drop=['score']).carves == 2
