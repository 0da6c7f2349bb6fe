from fractions import Fraction

import pytest
import torch

from graphrec.data.graph import BehaviorGraph
from graphrec.datasets.synthetic import make_synthetic
from graphrec.eval import DotProductScores
from graphrec.models import (
    MF,
    AuxiliaryReranker,
    ItemKNN,
    ItemPopularity,
    LightGCN,
    UserKNN,
    build_model,
)
from graphrec.testing import DEVICES
from graphrec.train.losses import bpr_loss, l2_loss


def test_registry_errors():
    with pytest.raises(ValueError, match="unknown model 'nope'.*lightgcn"):
        build_model('nope', 3, 4)
    with pytest.raises(ValueError, match="takes no argument.*'depth'"):
        build_model('mf', 3, 4, depth=2)
    with pytest.raises(ValueError, match="'num_users' must be a positive"):
        MF(0, 4)
    with pytest.raises(ValueError, match="'embedding_dim' must be"):
        MF(3, 4, embedding_dim=0)
    with pytest.raises(ValueError, match="'num_layers' must be"):
        LightGCN(3, 4, num_layers=-1)
    with pytest.raises(ValueError, match="'alpha' must have"):
        LightGCN(3, 4, num_layers=2, alpha=[0.5, 0.5])
    with pytest.raises(ValueError, match="'prior' must be one of"):
        AuxiliaryReranker(3, 4, prior='magic')
    with pytest.raises(ValueError, match="'smoothing' must be >= 0"):
        AuxiliaryReranker(3, 4, smoothing=-1)


def test_lightgcn_matches_dense_formula(tiny):
    graph = BehaviorGraph.from_dataset(tiny)
    model = LightGCN(3, 4, embedding_dim=5, num_layers=2, behaviors='all')
    emb = model(graph)
    # dense reference: A = [[0, R], [R^T, 0]] normalised, mean of A^l E
    edge_index = graph.edge_index('all')
    r = torch.zeros(3, 4)
    r[edge_index[0], edge_index[1]] = 1.
    norm = r / (r.sum(1, keepdim=True).sqrt() * r.sum(0, keepdim=True).sqrt())
    a = torch.zeros(7, 7)
    a[:3, 3:], a[3:, :3] = norm, norm.t()
    x = torch.cat([model.user_embedding.weight, model.item_embedding.weight])
    out = (x + a @ x + a @ a @ x) / 3
    assert torch.allclose(emb['user'], out[:3], atol=1e-6)
    assert torch.allclose(emb['item'], out[3:], atol=1e-6)


def test_lightgcn_target_only_ignores_other_behaviors(tiny):
    graph = BehaviorGraph.from_dataset(tiny)
    model = LightGCN(3, 4, embedding_dim=4, num_layers=1, behaviors='target')
    emb = model(graph)
    # u0 bought only i1 (degrees 1, 1): e_u0 = (x_u0 + x_i1) / 2
    x_u, x_i = model.user_embedding.weight, model.item_embedding.weight
    assert torch.allclose(emb['user'][0], (x_u[0] + x_i[1]) / 2)


@pytest.mark.parametrize('name', ['mf', 'lightgcn'])
def test_one_step_gives_every_parameter_a_gradient(tiny, name):
    graph = BehaviorGraph.from_dataset(tiny)
    model = build_model(name, 3, 4, embedding_dim=4)
    emb = model(graph)
    user = torch.tensor([0, 1, 2])
    pos, neg = tiny.train['buy'][1], torch.tensor([[3], [3], [1]])
    loss = bpr_loss(model.score(emb, user, pos), model.score(emb, user, neg))
    loss = loss + 1e-4 * l2_loss(model.regularization(user, pos), 3)
    loss.backward()
    for p in model.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_score_shapes_and_pairwise_agree(tiny):
    graph = BehaviorGraph.from_dataset(tiny)
    model = MF(3, 4, embedding_dim=4)
    emb = model(graph)
    full = model.score(emb, torch.tensor([0, 2]))
    assert full.shape == (2, 4)
    pair = model.score(emb, torch.tensor([0, 2]), torch.tensor([1, 3]))
    assert torch.allclose(pair, torch.stack([full[0, 1], full[1, 3]]))
    many = model.score(emb, torch.tensor([0, 2]), torch.tensor([[1, 3],
                                                                [0, 2]]))
    assert torch.allclose(many[1], full[1, [0, 2]])


@pytest.mark.parametrize('name,kwargs,factored', [
    ('mf', {}, True), ('lightgcn', {}, True), ('pop', {}, True),
    ('nmtr', {}, True), ('nmtr', {'unit': 'mlp'}, False),
    ('mbcgcn', {}, True), ('crgcn', {}, True),
    ('plugins', {'backbone': 'cascade'}, True),
    ('plugins', {'backbone': 'cascade', 'backdoor': 'latent'}, False),
    ('causal_cascade', {}, False), ('reranker', {}, False),
    ('itemknn', {'k': 5}, False),
])
def test_score_fn_is_one_matrix_product_where_the_score_is(name, kwargs,
                                                          factored):
    data = make_synthetic(num_users=30, num_items=40, seed=1)
    graph = BehaviorGraph.from_dataset(data)
    torch.manual_seed(0)
    try:
        model = build_model(name, data.num_users, data.num_items,
                            behaviors=data.behaviors, **kwargs)
    except ValueError:  # single-behavior models take no 'behaviors'
        model = build_model(name, data.num_users, data.num_items, **kwargs)
    head = getattr(getattr(model, 'backbone', model), 'head', None)
    if head is not None:
        with torch.no_grad():  # item biases and GMF weights, not at start
            head.bias.normal_()
            for unit in head.units.values():
                if unit.h is not None:
                    unit.h.normal_()
    fn = model.score_fn(graph)
    assert isinstance(fn, DotProductScores) == factored
    model.eval()
    users = torch.tensor([4, 0, 29, 4])
    expected = model.score(model(graph), users)
    assert torch.allclose(fn(users), expected, atol=1e-5)
    out = torch.full_like(expected, float('nan'))
    if factored:
        fn(users, out=out)
        assert torch.allclose(out, expected, atol=1e-5)


def test_popularity_counts_target(tiny):
    graph = BehaviorGraph.from_dataset(tiny)
    model = ItemPopularity(3, 4)
    scores = model.score(model(graph), torch.tensor([0, 1]))
    # buys: i0 once, i1 once, i2 once, i3 never
    assert torch.equal(scores[0], torch.tensor([1., 1., 1., 0.]))
    scores = ItemPopularity(3, 4, behavior='all').score(
        ItemPopularity(3, 4, behavior='all')(graph), torch.tensor([0]))
    # view+buy: i0 1+1, i1 2+1, i2 1+1, i3 1
    assert torch.equal(scores[0], torch.tensor([2., 3., 2., 1.]))


def test_reranker_orders_by_strength_recency_then_prior():
    # behaviors view < cart < buy. user 0 viewed i0 (t=5) and i1 (t=9),
    # carted i2 (t=1); item 3 is the most bought.
    graph = BehaviorGraph(
        2, 5, {
            'view': torch.tensor([[0, 0], [0, 1]]),
            'cart': torch.tensor([[0], [2]]),
            'buy': torch.tensor([[1, 1, 0], [3, 4, 3]]),
        }, ('view', 'cart', 'buy'), timestamps={
            'view': torch.tensor([5, 9]),
            'cart': torch.tensor([1]),
            'buy': torch.tensor([1, 2, 3]),
        })
    model = AuxiliaryReranker(2, 5)
    scores = model.score(model(graph), torch.tensor([0, 1]))
    order = scores[0].argsort(descending=True).tolist()
    assert order == [2, 1, 0, 3, 4]  # cart, recent view, old view, prior
    # user 1 visited nothing: popularity prior only (i3 bought twice)
    assert scores[1].argmax() == 3
    pair = model.score(model(graph), torch.tensor([0]), torch.tensor([2]))
    assert pair.item() == pytest.approx(scores[0, 2].item())
    # strength='visited': a cart counts as any visit, so recency decides.
    flat = AuxiliaryReranker(2, 5, strength='visited')
    scores = flat.score(flat(graph), torch.tensor([0, 1]))
    assert scores[0].argsort(descending=True).tolist() == [1, 0, 2, 3, 4]
    with pytest.raises(ValueError, match="'strength' must be one of"):
        AuxiliaryReranker(2, 5, strength='loud')


@pytest.mark.parametrize('device', DEVICES)
def test_userknn_by_hand(tiny, device):
    graph = BehaviorGraph.from_dataset(tiny).to(device)
    # Item sets over all behaviors: u0 {0, 1}, u1 {1, 2}, u2 {0, 3};
    # cos(u0, u1) = cos(u0, u2) = 1/2, cos(u1, u2) = 0. Buys: u0-i1,
    # u1-i2, u2-i0.
    model = build_model('userknn', 3, 4, k=2).to(device)
    users = torch.tensor([0, 1, 2], device=device)
    scores = model.score(model(graph), users)
    assert torch.allclose(scores.cpu(), torch.tensor(
        [[0.5, 0.0, 0.5, 0.0], [0.0, 0.5, 0.0, 0.0], [0.0, 0.5, 0.0, 0.0]]))
    pairs = model.score(model(graph), users, torch.tensor([0, 1, 3],
                                                          device=device))
    assert torch.allclose(pairs.cpu(), torch.tensor([0.5, 0.5, 0.0]))
    items = torch.tensor([[0, 2], [1, 3], [3, 1]], device=device)
    assert torch.allclose(model.score(model(graph), users, items),
                          scores.gather(1, items))
    # One neighbour: u1's nearest is u0 (u2 shares nothing with her); u0's
    # two are tied at 1/2, and the lower id (u1, who bought i2) is taken.
    one = UserKNN(3, 4, k=1)
    assert torch.allclose(one.score(one(graph), users.int()).cpu(),
                          torch.tensor([[0.0, 0.0, 0.5, 0.0],
                                        [0.0, 0.5, 0.0, 0.0],
                                        [0.0, 0.5, 0.0, 0.0]]))
    # A repeated edge counts once.
    twice = BehaviorGraph(3, 4, {
        'view': torch.cat([tiny.train['view'], tiny.train['view'][:, :1]],
                          1),
        'buy': tiny.train['buy']}, ('view', 'buy')).to(device)
    assert torch.allclose(model.score(model(twice), users), scores)
    # Similar by purchases only: nobody bought what another bought.
    buys = UserKNN(3, 4, behaviors='target')
    assert buys.score(buys(graph.to('cpu')), torch.tensor([0, 1])).abs(
    ).sum() == 0
    with pytest.raises(ValueError, match="'k' must be an int >= 1"):
        UserKNN(3, 4, k=0)
    assert 'k=2' in repr(model)


def test_userknn_matches_dense_formula():
    data = make_synthetic(num_users=60, num_items=40, seed=3)
    graph = BehaviorGraph.from_dataset(data)
    U, n_items = data.num_users, data.num_items

    def dense(names):
        m = torch.zeros(U, n_items)
        for b in names:
            m[data.train[b][0], data.train[b][1]] = 1.0
        return m

    X, Y = dense(data.behaviors[:1]), dense([data.target])
    n = X.sum(1).clamp(min=1)
    sim = X @ X.t() / (n.sqrt()[:, None] * n.sqrt()[None])
    sim.fill_diagonal_(0)
    model = UserKNN(U, n_items, behaviors=data.behaviors[0], k=U)
    users = torch.arange(0, U, 2)
    got = model.score(model(graph), users)
    assert torch.allclose(got, sim[users] @ Y, atol=1e-5)
    model.memory_budget = 3 * U  # sub-chunks of 3 users: the same scores
    assert torch.allclose(model.score(model(graph), users), got)
    # k = 5: the five most similar users, where the fifth is not tied
    # with the sixth.
    value, index = sim[users].topk(6, dim=1)
    clear = value[:, 4] > value[:, 5] + 1e-6
    assert int(clear.sum()) >= 5
    weight = torch.zeros(users.numel(), U).scatter_(1, index[:, :5],
                                                    value[:, :5])
    model = UserKNN(U, n_items, behaviors=data.behaviors[0], k=5)
    got = model.score(model(graph), users)
    assert torch.allclose(got[clear], (weight @ Y)[clear], atol=1e-5)


@pytest.mark.parametrize('device', DEVICES)
def test_itemknn_by_hand(tiny, device):
    graph = BehaviorGraph.from_dataset(tiny).to(device)
    # Item columns over all behaviors: i0 {u0, u2}, i1 {u0, u1}, i2 {u1},
    # i3 {u2}; cos(i0, i1) = 1/2, cos(i0, i3) = cos(i1, i2) = 1/sqrt(2),
    # the others 0. Profiles: u0 {i0, i1}, u1 {i1, i2}, u2 {i0, i3}.
    model = build_model('itemknn', 3, 4, k=2).to(device)
    users = torch.tensor([0, 1, 2], device=device)
    emb = model(graph)
    r = 2 ** -0.5
    assert torch.allclose(emb['sim'].to_dense().cpu(), torch.tensor(
        [[0.0, 0.5, 0.0, r], [0.5, 0.0, r, 0.0], [0.0, r, 0.0, 0.0],
         [r, 0.0, 0.0, 0.0]]))
    scores = model.score(emb, users)
    # s_ui = sum over j in u's profile of sim(j, i), j != i.
    assert torch.allclose(scores.cpu(), torch.tensor(
        [[0.5, 0.5, r, r], [0.5, r, r, 0.0], [r, 0.5, 0.0, r]]))
    pairs = model.score(emb, users, torch.tensor([0, 1, 3], device=device))
    assert torch.allclose(pairs.cpu(), torch.tensor([0.5, r, r]))
    items = torch.tensor([[0, 2], [1, 3], [3, 1]], device=device)
    assert torch.allclose(model.score(emb, users, items),
                          scores.gather(1, items))
    # One neighbour per item: i0 keeps i3 and i1 keeps i2 (1/sqrt(2) > 1/2),
    # so the pruned similarity is no longer symmetric.
    one = ItemKNN(3, 4, k=1).to(device)
    assert torch.allclose(one.score(one(graph), users.int()).cpu(),
                          torch.tensor([[0.0, 0.0, r, r],
                                        [0.0, r, r, 0.0],
                                        [r, 0.0, 0.0, r]]))
    # Views only: i0 {u0}, i1 {u0, u1}, i2 {u1}, i3 {u2}. i1's two
    # neighbours are tied at 1/sqrt(2): with k = 1 the lower id (i0) is
    # kept. i3 shares no user with any item: its row stays empty.
    views = ItemKNN(3, 4, behaviors='view', k=1).to(device)
    emb = views(graph)
    assert emb['sim'].values().numel() == 3
    assert torch.allclose(emb['sim'].to_dense().cpu(), torch.tensor(
        [[0.0, r, 0.0, 0.0], [r, 0.0, 0.0, 0.0], [0.0, r, 0.0, 0.0],
         [0.0, 0.0, 0.0, 0.0]]))
    assert torch.allclose(views.score(emb, users).cpu(), torch.tensor(
        [[r, r, 0.0, 0.0], [r, r, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]))
    # A repeated edge counts once.
    twice = BehaviorGraph(3, 4, {
        'view': torch.cat([tiny.train['view'], tiny.train['view'][:, :1]],
                          1),
        'buy': tiny.train['buy']}, ('view', 'buy')).to(device)
    assert torch.allclose(model.score(model(twice), users), scores)
    # Top-1 without past purchases (u1 bought i2, u2 bought i0).
    _, top = model.recommend(graph, users[1:], k=1,
                             exclude_index=tiny.train['buy'])
    assert top.view(-1).tolist() == [1, 3]
    assert 'k=2' in repr(model) and "behaviors='all'" in repr(model)


def test_itemknn_errors(tiny):
    graph = BehaviorGraph.from_dataset(tiny)
    for k in (0, -3, 1.5, True, None):
        with pytest.raises(ValueError, match="'k' must be an int >= 1"):
            ItemKNN(3, 4, k=k)
    with pytest.raises(ValueError, match="'num_items' must be a positive"):
        ItemKNN(3, 0)
    with pytest.raises(ValueError, match="takes no argument.*'neighbours'"):
        build_model('itemknn', 3, 4, neighbours=5)
    with pytest.raises(ValueError, match="unknown behaviors.*'cart'"):
        ItemKNN(3, 4, behaviors='cart')(graph)


@pytest.mark.parametrize('device', DEVICES)
def test_itemknn_ties_that_float_rounding_would_split(device):
    # i0 {u0..u3}, i1 {u0, u4}, i2 {u1, u2, u3, u5..u19}: cos(i0, i1) =
    # 1 / sqrt(4 * 2) and cos(i0, i2) = 3 / sqrt(4 * 18) are equal, though
    # 1 * rsqrt(2) * rsqrt(4) < 3 * rsqrt(18) * rsqrt(4) in float32. With
    # k = 1 the tie goes to the lower id, i1.
    user = [0, 1, 2, 3, 0, 4, 1, 2, 3] + list(range(5, 20))
    item = [0] * 4 + [1] * 2 + [2] * 18
    graph = BehaviorGraph(20, 3, {'buy': torch.tensor([user, item])},
                          ('buy', )).to(device)
    model = ItemKNN(20, 3, k=1)
    sim = model(graph)['sim'].to_dense().cpu()
    assert sim[0, 1] == pytest.approx(8 ** -0.5) and sim[0, 2] == 0


def _random_graph(num_users, num_items, seed):
    # Binary data with many equal similarities, some edges twice, shuffled.
    gen = torch.Generator().manual_seed(seed)
    dense = torch.rand(num_users, num_items, generator=gen) < 0.15
    edge_index = dense.nonzero().t()
    edge_index = torch.cat([edge_index, edge_index[:, ::7]], dim=1)
    edge_index = edge_index[:, torch.randperm(edge_index.size(1),
                                              generator=gen)]
    graph = BehaviorGraph(num_users, num_items, {'buy': edge_index},
                          ('buy', ))
    return graph, dense.float()


def _itemknn_reference(X, k):
    # The pruned similarity by a naive loop, ranked with exact fractions
    # (overlap^2 / n_i orders row j as the cosine does), ties by item id.
    overlap, n = (X.t() @ X).long().tolist(), X.sum(0).long().tolist()
    sim = torch.zeros(len(n), len(n))
    ties = 0
    for j in range(len(n)):
        cand = [(-Fraction(overlap[j][i] ** 2, n[i]), i)
                for i in range(len(n)) if i != j and overlap[j][i] > 0]
        cand.sort()
        ties += len(cand) > k and cand[k - 1][0] == cand[k][0]
        for _, i in cand[:k]:
            sim[j, i] = overlap[j][i] / (n[j] * n[i]) ** 0.5
    return sim, ties


@pytest.mark.parametrize('device', DEVICES)
def test_itemknn_matches_dense_formula(device):
    U, n_items = 30, 25
    graph, X = _random_graph(U, n_items, seed=0)
    graph = graph.to(device)
    users = torch.arange(U, device=device)
    # k >= I - 1: the cosine of every other item, X S.
    n = X.sum(0).clamp(min=1)
    full = X.t() @ X / (n.sqrt()[:, None] * n.sqrt()[None])
    full.fill_diagonal_(0)
    model = ItemKNN(U, n_items, k=n_items)
    assert torch.allclose(model.score(model(graph), users).cpu(), X @ full,
                          atol=1e-5)
    # k = 3: pruned, with rows tied at the third neighbour.
    sim, ties = _itemknn_reference(X, 3)
    assert ties >= 3
    model = ItemKNN(U, n_items, k=3)
    emb = model(graph)
    assert torch.allclose(emb['sim'].to_dense().cpu(), sim, atol=1e-6)
    got = model.score(emb, users)
    assert torch.allclose(got.cpu(), X @ sim, atol=1e-5)
    # Chunks of 3 items (building) and 3 users (scoring): the same.
    model.memory_budget = 3 * n_items
    small = model(graph)
    assert torch.equal(small['sim'].to_dense(), emb['sim'].to_dense())
    assert torch.allclose(model.score(small, users), got, atol=1e-6)
    assert model.score(small, users[:0]).shape == (0, n_items)


@pytest.mark.parametrize('device', DEVICES)
def test_recommend_excludes_and_returns_global_ids(tiny, device):
    graph = BehaviorGraph.from_dataset(tiny).to(device)
    model = ItemPopularity(3, 4, behavior='all').to(device)
    scores, items = model.recommend(graph, torch.tensor([0, 1]), k=2,
                                    exclude_index=torch.tensor([[0], [1]]))
    # popularity (all): i1=3 > i0=2 = i2=2 > i3=1; u0 excludes i1
    assert items[1, 0].item() == 1
    assert 1 not in items[0].tolist()
    assert scores[0, 0].item() == 2.
    with pytest.raises(ValueError, match="'k' must be an int"):
        model.recommend(graph, torch.tensor([0]), k=0)
    with pytest.raises(ValueError, match="'user_index' must hold ids"):
        model.recommend(graph, torch.tensor([7]), k=1)


def test_losses_by_hand():
    pos, neg = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0])
    expected = -(torch.log(torch.sigmoid(torch.tensor(2.0))) +
                 torch.log(torch.tensor(0.5))) / 2
    assert torch.allclose(bpr_loss(pos, neg), expected)
    assert torch.allclose(bpr_loss(pos, neg.unsqueeze(-1)), expected)
    with pytest.raises(ValueError, match="shapes do not match"):
        bpr_loss(pos, torch.zeros(3))
    # K negatives per positive: the mean over every (positive, negative).
    many = torch.tensor([[0.0, 2.0, -1.0], [0.0, 1.0, 0.0]])
    by_hand = -torch.stack([torch.log(torch.sigmoid(p - n))
                            for p, row in zip(pos, many)
                            for n in row]).mean()
    assert torch.allclose(bpr_loss(pos, many), by_hand)
    with pytest.raises(ValueError, match="shapes do not match"):
        bpr_loss(pos, torch.zeros(3, 2))
    assert l2_loss([torch.tensor([3.0, 4.0])], 5).item() == pytest.approx(
        0.5 * 25 / 5)


def test_every_full_model_ablation_builds_and_changes_the_model():
    from graphrec.models.full import FULL_ABLATIONS
    data = make_synthetic(num_users=30, num_items=40, seed=1)
    graph = BehaviorGraph.from_dataset(data)

    def parts(**kwargs):
        torch.manual_seed(0)
        model = build_model('causal_cascade', data.num_users, data.num_items,
                            behaviors=data.behaviors, **kwargs)
        model.eval()
        with torch.no_grad():
            emb = model(graph)
            score = model.score(emb, torch.arange(5))
        assert torch.isfinite(score).all()
        return (model.backbone_name, model.fusion_kind, model.backdoor_kind,
                model.visited is not None, model.contrastive is not None,
                getattr(model.backbone, 'head_kind', None),
                sum(p.numel() for p in model.parameters()))

    default = parts()
    for name, overrides in FULL_ABLATIONS.items():
        if name == 'with_visited_head':  # on by default: swap its base
            assert parts(visited_head=False) != parts(**overrides)
            continue
        assert parts(**overrides) != default, name
    off = parts(**FULL_ABLATIONS['no_plugins'])
    assert off[1:6] == (None, None, False, False, 'dot')
    assert default[5] == 'cascaded'
