import pytest
import torch

from graphrec.data.graph import BehaviorGraph
from graphrec.nn.rerank import (
    CandidateFeatures,
    ListwiseReranker,
    RerankedScores,
)
from graphrec.nn.visited import item_statistics, pair_statistics
from graphrec.testing import DEVICES

BEHAVIORS = ('view', 'cart', 'buy')


@pytest.fixture
def graph():
    # 3 users, 6 items.
    # view: u0-i0, u0-i1, u0-i2, u1-i1, u2-i4; cart: u0-i3, u2-i4
    # buy:  u0-i1, u1-i5, u2-i0
    return BehaviorGraph(3, 6, {
        'view': torch.tensor([[0, 0, 0, 1, 2], [0, 1, 2, 1, 4]]),
        'cart': torch.tensor([[0, 2], [3, 4]]),
        'buy': torch.tensor([[0, 1, 2], [1, 5, 0]]),
    }, BEHAVIORS)


def fixed_scores(table):
    table = torch.as_tensor(table, dtype=torch.float)
    return lambda user: table[user.cpu()].to(user.device)


SCORES = [[0.0, 9.0, 1.0, -1.0, 5.0, 4.0],   # u0
          [3.0, 2.0, 1.0, 0.0, -1.0, 8.0],   # u1
          [7.0, 0.0, 1.0, 2.0, 3.0, 6.0]]    # u2


def test_candidates_by_hand(graph):
    cand = CandidateFeatures(graph, fixed_scores(SCORES), num_unvisited=2)
    c = cand(torch.tensor([0, 1, 2]))
    items = [set(c.item[r][c.valid[r]].tolist()) for r in range(3)]
    # u0: visited not bought i0, i2, i3 (i1 is bought); unvisited best
    # i4 (5), i5 (4)
    assert items[0] == {0, 2, 3, 4, 5}
    # u1: i1 visited; i5 bought; unvisited best i0 (3), i2 (1)
    assert items[1] == {1, 0, 2}
    # u2: i4 visited (viewed and carted); i0 bought; best i5 (6), i3 (2)
    assert items[2] == {4, 5, 3}
    # visited first, each part in first-stage order
    assert c.item[0][c.valid[0]].tolist() == [2, 0, 3, 4, 5]
    assert c.scores.tolist() == SCORES
    assert c.features.shape == (3, c.item.size(1), cand.num_features)
    assert len(cand.feature_names()) == cand.num_features
    names = list(cand.feature_names())
    f = dict(zip(names, c.features[0][c.valid[0]].unbind(-1)))
    # order [2, 0, 3, 4, 5]
    assert f['score'].tolist() == [1.0, 0.0, -1.0, 5.0, 4.0]
    assert torch.allclose(f['score_centered'],
                          f['score'] - f['score'].mean())
    assert f['link_view'].tolist() == [1, 1, 0, 0, 0]
    assert f['link_cart'].tolist() == [0, 0, 1, 0, 0]
    assert f['visited'].tolist() == [1, 1, 1, 0, 0]
    stats = item_statistics(graph)
    assert torch.equal(f['item_log_view'], stats[[2, 0, 3, 4, 5], 0])
    keys, pair = pair_statistics(graph)
    for k, item in enumerate([2, 0, 3]):
        row = int(torch.searchsorted(keys, torch.tensor(item)))
        assert f['pair_cf_view_buy'][k] == pair[row, 0]
    assert f['pair_cf_view_buy'][3:].tolist() == [0.0, 0.0]
    assert torch.allclose(f['user_log_view'], torch.log(torch.tensor(4.0)))
    assert torch.allclose(f['user_log_candidates'],
                          torch.log(torch.tensor(4.0)))  # 3 visited
    assert (c.features[~c.valid] == 0).all()


def test_candidates_with_user_based_cf(graph):
    # Item sets over every behavior: u0 {0, 1, 2, 3}, u1 {1, 5}, u2 {0, 4};
    # cos(u0, u1) = cos(u0, u2) = 1/sqrt(8), cos(u1, u2) = 0. With one
    # neighbour u0 takes u1 (tie, lower id: bought i5) and u2 takes u0
    # (bought i1).
    cand = CandidateFeatures(graph, fixed_scores(SCORES), num_unvisited=2,
                             neighbours=1)
    c = cand(torch.tensor([0, 1, 2]))
    # u0: visited i2, i0, i3, then the CF's i5, then the first stage's
    # best of the rest (i4 only: five items are not bought).
    assert c.item[0][c.valid[0]].tolist() == [2, 0, 3, 5, 4]
    # u1: the CF points at i1, which she viewed: nothing added.
    assert c.item[1][c.valid[1]].tolist() == [1, 0, 2]
    # u2: visited i4, the CF's i1, then the first stage's i5 (6), i3 (2).
    assert c.item[2][c.valid[2]].tolist() == [4, 1, 5, 3]
    names = list(cand.feature_names())
    assert names[-1] == 'user_cf' and len(names) == cand.num_features
    plain = CandidateFeatures(graph, fixed_scores(SCORES), num_unvisited=2)
    assert cand.num_features == plain.num_features + 1
    # Relative to the user's best CF score.
    assert c.features[2][c.valid[2]][:, -1].tolist() == [0.0, 1.0, 0.0, 0.0]
    assert c.features[1][c.valid[1]][:, -1].tolist() == [1.0, 0.0, 0.0]
    assert 'neighbours=1' in repr(cand)
    with pytest.raises(ValueError, match="'neighbours' must be an int"):
        CandidateFeatures(graph, fixed_scores(SCORES), neighbours=-1)
    with pytest.raises(ValueError, match="'drop' names no feature"):
        CandidateFeatures(graph, fixed_scores(SCORES), drop=['user_cf'])
    # Without the first stage's picks: visited and the CF's only.
    none = CandidateFeatures(graph, fixed_scores(SCORES), num_unvisited=2,
                             neighbours=1, stage_unvisited=0)
    c = none(torch.tensor([0, 1, 2]))
    assert c.item[0][c.valid[0]].tolist() == [2, 0, 3, 5]
    assert c.item[1][c.valid[1]].tolist() == [1]
    assert c.item[2][c.valid[2]].tolist() == [4, 1]
    assert 'stage_unvisited=0' in repr(none)
    visited = CandidateFeatures(graph, fixed_scores(SCORES), num_unvisited=2,
                                stage_unvisited=0)
    c = visited(torch.tensor([0, 1, 2]))
    assert c.item[0][c.valid[0]].tolist() == [2, 0, 3]
    with pytest.raises(ValueError, match="'stage_unvisited'"):
        CandidateFeatures(graph, fixed_scores(SCORES), stage_unvisited=-1)


def test_candidates_never_bought_and_capped_by_the_catalogue(graph):
    cand = CandidateFeatures(graph, fixed_scores(SCORES), num_unvisited=50)
    c = cand(torch.tensor([1]))
    assert c.item.size(1) == 6
    assert set(c.item[0][c.valid[0]].tolist()) == {0, 1, 2, 3, 4}


def test_candidate_errors(graph):
    fn = fixed_scores(SCORES)
    with pytest.raises(TypeError, match="'graph'"):
        CandidateFeatures('graph', fn)
    with pytest.raises(TypeError, match="'score_fn'"):
        CandidateFeatures(graph, 3)
    with pytest.raises(ValueError, match="'num_unvisited'"):
        CandidateFeatures(graph, fn, num_unvisited=-1)
    only = BehaviorGraph(2, 2, {'buy': torch.tensor([[0], [1]])}, ('buy', ))
    with pytest.raises(ValueError, match='auxiliary'):
        CandidateFeatures(only, fn)
    cand = CandidateFeatures(graph, fn)
    with pytest.raises(ValueError, match="'user_index'"):
        cand(torch.tensor([3]))
    assert 'num_unvisited=100' in repr(cand)


def test_reranker_linear_and_scaling():
    model = ListwiseReranker(3, hidden=0)
    assert model.mlp is None
    x = torch.randn(50, 3) * 4 + 2
    model.set_scaling(x)
    assert torch.allclose(model.mean, x.mean(0))
    with torch.no_grad():
        model.linear.weight.copy_(torch.tensor([[1.0, 0.0, 0.0]]))
        model.linear.bias.zero_()
    expected = (x[:, 0] - x[:, 0].mean()) / x[:, 0].std()
    assert torch.allclose(model(x), expected, atol=1e-5)
    deep = ListwiseReranker(3, hidden=8, num_layers=2)
    assert deep(torch.randn(4, 5, 3)).shape == (4, 5)
    assert 'hidden=8' in repr(deep)
    with pytest.raises(ValueError, match="'hidden'"):
        ListwiseReranker(3, hidden=-1)
    with pytest.raises(ValueError, match='3 features'):
        deep(torch.randn(4, 2))
    with pytest.raises(ValueError, match="'features'"):
        deep.set_scaling(torch.randn(4, 2))


class ByFeature(torch.nn.Module):
    # A re-ranker that scores by one feature, times a sign.
    def __init__(self, index, sign=1.0):
        super().__init__()
        self.index, self.sign = index, sign

    def forward(self, features):
        return self.sign * features[..., self.index]


@pytest.mark.parametrize('device', DEVICES)
def test_reranked_scores_put_candidates_first_in_reranker_order(graph,
                                                                device):
    graph = graph.to(device)
    cand = CandidateFeatures(graph, fixed_scores(SCORES), num_unvisited=1)
    # re-rank by minus the first-stage score: the order inside the
    # candidates flips, the rest stays below in first-stage order
    fn = RerankedScores(cand, ByFeature(0, -1.0))
    out = fn(torch.tensor([0, 1], device=device)).cpu()
    top0 = out[0].argsort(descending=True).tolist()
    # u0 candidates: visited i0 (0), i2 (1), i3 (-1); unvisited i4 (5)
    assert top0[:4] == [3, 0, 2, 4]
    # then i5 (4) and the bought i1 (9), by first-stage score
    assert top0[4:] == [1, 5]
    # the re-ranker's scores, minus the user's best candidate's
    assert out[0, [3, 0, 2, 4]].tolist() == [0.0, -1.0, -2.0, -6.0]
    assert (out[0, [1, 5]] < -6.0).all()


def test_reranked_scores_route_users_to_their_fold(graph):
    cand = CandidateFeatures(graph, fixed_scores(SCORES), num_unvisited=1)
    fold = torch.tensor([0, 1, 0])
    fn = RerankedScores(cand, [ByFeature(0, 1.0), ByFeature(0, -1.0)], fold)
    out = fn(torch.tensor([0, 1]))
    one = RerankedScores(cand, ByFeature(0, 1.0))(torch.tensor([0]))
    other = RerankedScores(cand, ByFeature(0, -1.0))(torch.tensor([1]))
    assert torch.equal(out[0], one[0]) and torch.equal(out[1], other[0])
    with pytest.raises(ValueError, match="'fold' is needed"):
        RerankedScores(cand, [ByFeature(0), ByFeature(0)])
    with pytest.raises(ValueError, match="'fold' must hold"):
        RerankedScores(cand, [ByFeature(0)], torch.tensor([0, 1, 0]))
    with pytest.raises(ValueError, match="'fold' must have shape"):
        RerankedScores(cand, [ByFeature(0)], torch.tensor([0]))


def test_reranked_recommend_excludes_pairs_and_follows_the_scores(graph):
    cand = CandidateFeatures(graph, fixed_scores(SCORES), num_unvisited=1)
    fn = RerankedScores(cand, ByFeature(0, -1.0))
    bought = graph.edge_index_dict['buy']
    scores, items = fn.recommend(torch.tensor([0, 2]), k=3,
                                 exclude_index=bought)
    # u0: re-ranked candidates i3, i0, i2, i4 (i1 bought); u2: candidates
    # i4 (visited, 3) and i5 (6) by minus their scores, then i3 (2), the
    # best non-candidate (i0 bought)
    assert items.tolist() == [[3, 0, 2], [4, 5, 3]]
    assert scores[0].tolist() == [0.0, -1.0, -2.0]
    with pytest.raises(ValueError, match="'k'"):
        fn.recommend(torch.tensor([0]), k=7)


def test_dropped_features_are_zero_and_the_rest_unchanged(graph):
    full = CandidateFeatures(graph, fixed_scores(SCORES), num_unvisited=2)
    less = CandidateFeatures(graph, fixed_scores(SCORES), num_unvisited=2,
                             drop=['pair_cf', 'score'])
    a, b = full(torch.tensor([0, 2])), less(torch.tensor([0, 2]))
    names = list(full.feature_names())
    gone = [k for k, n in enumerate(names)
            if n.startswith('pair_cf') or n.startswith('score')]
    kept = [k for k in range(len(names)) if k not in gone]
    assert len(gone) == 2 + 5
    assert (b.features[..., gone] == 0).all()
    assert (a.features[..., gone] != 0).any()
    assert torch.equal(a.features[..., kept], b.features[..., kept])
    assert torch.equal(a.item, b.item)  # candidates still by the scores
    assert "drop=['pair_cf', 'score']" in repr(less)
    with pytest.raises(ValueError, match="'drop' names no feature"):
        CandidateFeatures(graph, fixed_scores(SCORES), drop=['nothing'])


def test_constant_features_keep_their_scale():
    model = ListwiseReranker(2, hidden=0)
    x = torch.stack([torch.randn(100), torch.full((100, ), 3.0)], -1)
    model.set_scaling(x)
    assert model.std[1] == 1.0 and model.std[0] != 1.0


def test_no_users_and_ruled_out_items(graph):
    table = torch.tensor(SCORES)
    table[0, 2] = float('-inf')  # visited, but ruled out by the first stage
    table[0, 4] = float('-inf')
    cand = CandidateFeatures(graph, fixed_scores(table), num_unvisited=1)
    empty = cand(torch.tensor([], dtype=torch.long))
    assert empty.item.size(0) == 0 and empty.features.size(0) == 0
    c = cand(torch.tensor([0]))
    assert set(c.item[0][c.valid[0]].tolist()) == {0, 3, 5}
    assert torch.isfinite(c.features).all()
    out = RerankedScores(cand, ByFeature(0, -1.0))(torch.tensor([0]))
    assert not torch.isnan(out).any()
    assert out[0, 2] == float('-inf') and out[0, 4] == float('-inf')
    # the bought i1 is not ruled out by the scores: below the candidates
    assert out[0, 1] < out[0, [0, 3, 5]].min()


def test_huge_reranker_scores_stay_above_the_rest(graph):
    cand = CandidateFeatures(graph, fixed_scores(SCORES), num_unvisited=1)
    out = RerankedScores(cand, ByFeature(0, 3e7))(torch.tensor([0]))[0]
    candidates, rest = [0, 2, 3, 4], [1, 5]
    assert out[candidates].min() > out[rest].max()


def test_reranked_scores_take_a_module_list_and_check_fold(graph):
    cand = CandidateFeatures(graph, fixed_scores(SCORES), num_unvisited=1)
    models = torch.nn.ModuleList([ListwiseReranker(cand.num_features),
                                  ListwiseReranker(cand.num_features)])
    fn = RerankedScores(cand, models, torch.tensor([0, 1, 1]))
    assert fn(torch.tensor([0, 1])).shape == (2, 6)
    with pytest.raises(TypeError, match="'fold' must be a LongTensor"):
        RerankedScores(cand, models, torch.tensor([0.0, 1.0, 1.0]))
