import math

import pytest
import torch

from graphrec.data.graph import BehaviorGraph
from graphrec.losses import bce_loss
from graphrec.nn.visited import (
    VisitedAwareHead,
    VisitLinks,
    item_statistics,
    mixture_logit,
    pair_links,
    pair_statistics,
    visited_share,
)
from graphrec.testing import DEVICES

BEHAVIORS = ('view', 'cart', 'buy')
LN2, LN3 = math.log(2.0), math.log(3.0)


@pytest.fixture
def graph():
    # view: u0-i0, u0-i1, u1-i1, u1-i2, u2-i3; cart: u0-i1, u2-i3, u2-i0
    return BehaviorGraph(3, 4, {
        'view': torch.tensor([[0, 0, 1, 1, 2], [0, 1, 1, 2, 3]]),
        'cart': torch.tensor([[0, 2, 2], [1, 3, 0]]),
        'buy': torch.tensor([[0, 1, 2], [1, 2, 0]]),
    }, BEHAVIORS)


def random_graph(seed, num_users=7, num_items=9, density=0.3):
    gen = torch.Generator().manual_seed(seed)
    edges = {}
    for b in BEHAVIORS:
        mask = torch.rand(num_users, num_items, generator=gen) < density
        edges[b] = mask.nonzero().t()
    return BehaviorGraph(num_users, num_items, edges, BEHAVIORS)


def naive_links(graph, behaviors, users, items):
    sets = {b: set(map(tuple, graph.edge_index_dict[b].t().tolist()))
            for b in behaviors}
    return torch.tensor([[[float((u, i) in sets[b]) for b in behaviors]
                          for i in items] for u in users])


# ---------------------------------------------------------------- links
def test_pair_links_on_tiny(tiny):
    graph = BehaviorGraph.from_dataset(tiny)
    dense = pair_links(graph, 'view', torch.tensor([0, 1, 2]))
    assert dense.shape == (3, 4, 1)
    assert dense.squeeze(-1).tolist() == [[1, 1, 0, 0], [0, 1, 1, 0],
                                          [0, 0, 0, 1]]
    # the test pair u2-i3 is visited, u0-i2 and u1-i0 are not
    pairs = pair_links(graph, ['view'], torch.tensor([0, 1, 2]),
                       torch.tensor([2, 0, 3]))
    assert pairs.tolist() == [[0.0], [0.0], [1.0]]
    assert pairs.dtype == torch.float


def test_pair_links_two_behaviors_by_hand(graph):
    links = VisitLinks(graph, ['view', 'cart'])
    got = links(torch.tensor([0, 2]), torch.tensor([[1, 2], [3, 0]]))
    assert got.tolist() == [[[1, 1], [0, 0]], [[1, 1], [0, 1]]]
    dense = links(torch.tensor([2, 0]))
    assert dense[..., 1].tolist() == [[1, 0, 0, 1], [0, 1, 0, 0]]
    assert dense[..., 0].tolist() == [[0, 0, 0, 1], [1, 1, 0, 0]]


@pytest.mark.parametrize('seed', [0, 1, 2])
@pytest.mark.parametrize('device', DEVICES)
def test_pair_links_match_naive_loop_and_edge_order(seed, device):
    graph = random_graph(seed)
    gen = torch.Generator().manual_seed(100 + seed)
    behaviors = ['cart', 'view']
    users = torch.randint(0, 7, (5, ), generator=gen)
    want = naive_links(graph, behaviors, users.tolist(), range(9))
    # the same edges in another order, with one duplicated edge
    shuffled = {}
    for b, e in graph.edge_index_dict.items():
        perm = torch.randperm(e.size(1), generator=gen)
        shuffled[b] = torch.cat([e[:, perm], e[:, :1]], dim=1)
    other = BehaviorGraph(7, 9, shuffled, BEHAVIORS)
    for g in (graph, other):
        g = g.to(device)
        links = VisitLinks(g, behaviors)
        dense = links(users.to(device))
        assert torch.equal(dense.cpu(), want)
        items = torch.randint(0, 9, (5, 3), generator=gen)
        got = links(users.to(device), items.to(device)).cpu()
        assert torch.equal(got, want[torch.arange(5)[:, None], items])
        got = links(users.to(device), items[:, 0].to(device)).cpu()
        assert torch.equal(got, want[torch.arange(5), items[:, 0]])


def test_pair_links_users_without_edges_and_empty_behavior():
    graph = BehaviorGraph(3, 2, {
        'view': torch.tensor([[2], [1]]),
        'cart': torch.empty(2, 0, dtype=torch.long),
        'buy': torch.tensor([[0], [0]]),
    }, BEHAVIORS)
    links = VisitLinks(graph, ['view', 'cart'])
    assert links(torch.tensor([0, 2, 1])).tolist() == [
        [[0, 0], [0, 0]], [[0, 0], [1, 0]], [[0, 0], [0, 0]]]
    assert links(torch.tensor([2, 2]), torch.tensor([1, 0])).tolist() == [
        [1, 0], [0, 0]]


def test_pair_links_errors(graph):
    with pytest.raises(ValueError, match="target 'buy' would leak"):
        VisitLinks(graph, ['view', 'buy'])
    with pytest.raises(ValueError, match='unknown behaviors'):
        VisitLinks(graph, ['click'])
    with pytest.raises(TypeError, match="'graph' must be a BehaviorGraph"):
        VisitLinks(graph.edge_index_dict, ['view'])
    links = VisitLinks(graph, 'view')
    with pytest.raises(TypeError, match="'user_index' must have dtype"):
        links(torch.tensor([0.0]))
    with pytest.raises(TypeError, match="'user_index' must be a LongTensor"):
        links([0, 1])
    with pytest.raises(ValueError, match=r"'user_index' must have shape \[B"):
        links(torch.tensor([[0]]))
    with pytest.raises(ValueError, match=r"ids in \[0, 3\) \(got values in "
                                         r"\[0, 3\]\)"):
        links(torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"'item_index' must hold ids in "
                                         r"\[0, 4\)"):
        links(torch.tensor([0]), torch.tensor([-1]))
    with pytest.raises(ValueError, match=r"'item_index' must have shape "
                                         r"\[2\] or \[2, K\]"):
        links(torch.tensor([0, 1]), torch.tensor([0]))


def test_visit_links_repr(graph):
    assert repr(VisitLinks(graph, ['view', 'cart'])) == (
        "VisitLinks(num_users=3, num_items=4, behaviors=['view', 'cart'])")


def test_visited_share(tiny):
    # buys u0-i1 (viewed), u1-i2 (viewed), u2-i0 (u2 viewed only i3)
    graph = BehaviorGraph.from_dataset(tiny)
    assert visited_share(graph, 'view').tolist() == [1.0, 1.0, 0.0]
    four = BehaviorGraph(4, 4, {
        'view': tiny.train['view'],
        'buy': torch.tensor([[0, 0, 1, 2], [1, 3, 2, 0]]),
    }, ('view', 'buy'))
    # u0 1/2, u1 1, u2 0, u3 no buys: pooled 2/4 or the given fill
    assert visited_share(four, 'view').tolist() == [0.5, 1.0, 0.0, 0.5]
    assert visited_share(four, 'view', fill=0.0).tolist()[3] == 0.0
    with pytest.raises(ValueError, match=r"'fill' must be in \[0, 1\]"):
        visited_share(four, 'view', fill=2.0)


# ------------------------------------------------------------- mixture
def hand_head(**kwargs):
    r"""D = 2, A = 2 (view, cart), a_u = u_0, link weights (ln 2, ln 3)."""
    head = VisitedAwareHead(2, 2, hidden_dim=0, **kwargs)
    with torch.no_grad():
        head.intent[0].weight.copy_(torch.tensor([[1.0, 0.0]]))
        head.intent[0].bias.zero_()
        head.repeat_weight.copy_(torch.tensor([1.0, 2.0]))
        head.link_weight.copy_(torch.tensor([LN2, LN3]))
    return head


def test_mixture_by_hand():
    head = hand_head(user_link_weights=False)
    # user 0: a = ln 3, P(r) = 3/4; the item vector (0, 5) has dot 0
    user = torch.tensor([[LN3, 0.0]])
    item = torch.tensor([[[0.0, 5.0]] * 4])
    links = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    parts = head.components(user, item, links)
    assert torch.allclose(parts['repeat'] + parts['explore'],
                          torch.ones(1, 4))
    assert torch.allclose(parts['repeat'], torch.full((1, 4), 0.75))
    # s_e = 0; s_r = ln 2 (view), ln 3 (cart), ln 6 (both)
    assert torch.allclose(parts['given_explore'], torch.full((1, 4), 0.5))
    assert torch.allclose(parts['given_repeat'][0, 1:],
                          torch.tensor([2 / 3, 3 / 4, 6 / 7]))
    assert parts['visited'].tolist() == [[False, True, True, True]]
    # new 1/4 * 1/2; view 3/4 * 2/3; cart 3/4 * 3/4; both 3/4 * 6/7
    prob = torch.tensor([[1 / 8, 1 / 2, 9 / 16, 9 / 14]])
    assert torch.allclose(parts['prob'], prob)
    logit = head(user, item, links)
    assert torch.allclose(logit, torch.log(torch.tensor(
        [[1 / 7, 1.0, 9 / 7, 9 / 5]])), atol=1e-6)
    # a cart link is stronger evidence than a view link
    assert logit[0, 2] > logit[0, 1]


def test_mixture_by_hand_dot_and_user_link_weights():
    head = hand_head()
    with torch.no_grad():  # per-user view weight + 2 u_1 -> ln 2 + 2 ln 2
        head.link_proj.weight.copy_(torch.tensor([[0.0, 2 * LN2],
                                                  [0.0, 0.0]]))
    # user 1: a = 0, P(r) = 1/2; item (0, ln 2): explore dot ln 2,
    # repeat dot (h^r = (1, 2)) 2 ln 2
    user = torch.tensor([[0.0, 1.0]])
    item = torch.tensor([[0.0, LN2]])
    new = head(user, item, torch.tensor([[0.0, 0.0]]))
    # s_e = ln 2, P = 1/2 * 2/3 = 1/3, logit ln(1/2)
    assert torch.allclose(new, torch.tensor([-LN2]), atol=1e-6)
    viewed = head(user, item, torch.tensor([[1.0, 0.0]]))
    # s_r = 2 ln 2 + ln 2 + 2 ln 2 = ln 32, P = 1/2 * 32/33 = 16/33
    assert torch.allclose(viewed, torch.tensor([math.log(16 / 17)]),
                          atol=1e-6)
    assert torch.allclose(head.link_weights(user),
                          torch.tensor([[3 * LN2, LN3]]))


def test_repeat_probability_with_hidden_layer_by_hand():
    head = VisitedAwareHead(2, 1, hidden_dim=1)
    with torch.no_grad():  # a = 2 tanh(u_0)
        head.intent[0].weight.copy_(torch.tensor([[1.0, 0.0]]))
        head.intent[0].bias.zero_()
        head.intent[2].weight.fill_(2.0)
        head.intent[2].bias.zero_()
    user = torch.tensor([[math.atanh(LN3 / 2), 7.0], [0.0, -1.0]])
    assert torch.allclose(head.repeat_probability(user),
                          torch.tensor([0.75, 0.5]))
    # BCE of P(r) = 3/4 and 1/2 against shares 1 and 1/4
    want = -(math.log(0.75) + 0.25 * math.log(0.5) + 0.75 * math.log(0.5))
    loss = head.auxiliary_loss(user, torch.tensor([1.0, 0.25]))
    assert loss.item() == pytest.approx(want / 2, rel=1e-6)


def test_bce_on_logits_is_the_mixture_likelihood():
    torch.manual_seed(0)
    head = VisitedAwareHead(4, 2)
    perturb(head)
    user, item = torch.randn(6, 4), torch.randn(6, 4)
    links = torch.tensor([[0, 0], [1, 0], [0, 1], [1, 1], [0, 0], [1, 0.]])
    label = torch.tensor([1.0, 0, 1, 1, 0, 0])
    prob = head.components(user, item, links)['prob']
    want = -(label * prob.log() + (1 - label) * (1 - prob).log()).mean()
    assert torch.allclose(bce_loss(head(user, item, links), label), want,
                          atol=1e-6)
    # ranking by the logit is ranking by P(y)
    order = torch.argsort(head(user, item, links))
    assert torch.equal(order, torch.argsort(prob))


def perturb(head, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in head.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=gen))


@pytest.mark.parametrize('device', DEVICES)
def test_score_all_equals_forward_for_every_pair(graph, device):
    torch.manual_seed(0)
    head = VisitedAwareHead(5, 2, hidden_dim=3).to(device)
    perturb(head)
    links = VisitLinks(graph.to(device), ['view', 'cart'])
    users = torch.tensor([2, 0, 1], device=device)
    user = torch.randn(3, 5, device=device)
    item = torch.randn(4, 5, device=device)
    dense = links(users)
    got = head.score_all(user, item, dense)
    assert got.shape == (3, 4)
    for b in range(3):
        for i in range(4):
            one = head(user[b:b + 1], item[i:i + 1], dense[b:b + 1, i])
            assert torch.allclose(got[b, i], one[0], atol=1e-5)
    # the [B, K] path and any chunking of the users agree too
    items = torch.arange(4, device=device).expand(3, 4)
    assert torch.allclose(head(user, item[items], links(users, items)), got,
                          atol=1e-5)
    part = head.score_all(user[1:], item, dense[1:])
    assert torch.allclose(part, got[1:], atol=1e-6)


def test_item_statistics_by_hand(graph):
    # view counts per item 1, 2, 1, 1; cart 1, 1, 0, 1; buy 1, 1, 1, 0
    raw = item_statistics(graph, smoothing=2.0, standardize=False).double()
    assert raw.shape == (4, 5)
    log1p = torch.log1p(torch.tensor([[1.0, 1, 1], [2, 1, 1], [1, 0, 1],
                                      [1, 1, 0]], dtype=torch.double))
    assert torch.allclose(raw[:, :3], log1p, atol=1e-6)
    # conversion view -> buy: rate 3/5; cart -> buy: rate 3/3
    buy = torch.tensor([1.0, 1, 1, 0], dtype=torch.double)
    view = torch.tensor([1.0, 2, 1, 1], dtype=torch.double)
    cart = torch.tensor([1.0, 1, 0, 1], dtype=torch.double)
    assert torch.allclose(raw[:, 3], torch.log((buy + 2 * 0.6) / (view + 2)),
                          atol=1e-6)
    assert torch.allclose(raw[:, 4], torch.log((buy + 2.0) / (cart + 2)),
                          atol=1e-6)
    std = item_statistics(graph, smoothing=2.0)
    assert torch.allclose(std.mean(0), torch.zeros(5), atol=1e-6)
    assert torch.allclose(std.std(0), torch.ones(5), atol=1e-5)
    with pytest.raises(ValueError, match="'smoothing' must be >= 0"):
        item_statistics(graph, smoothing=-1.0)


def test_item_statistics_leave_one_out(graph):
    # buy counts 1, 1, 1, 0 become 0, 0, 0, 0; the rest and the global
    # conversion rates (3/5, 3/3) stay, and the plain table's mean and
    # standard deviation scale both tables.
    plain = item_statistics(graph, smoothing=2.0, standardize=False).double()
    raw = item_statistics(graph, smoothing=2.0, standardize=False,
                          leave_one_out=True).double()
    zero = torch.zeros(4, dtype=torch.double)
    assert torch.allclose(raw[:, :2], plain[:, :2])
    assert torch.allclose(raw[:, 2], zero, atol=1e-6)
    view = torch.tensor([1.0, 2, 1, 1], dtype=torch.double)
    cart = torch.tensor([1.0, 1, 0, 1], dtype=torch.double)
    assert torch.allclose(raw[:, 3], torch.log(2 * 0.6 / (view + 2)),
                          atol=1e-6)
    assert torch.allclose(raw[:, 4], torch.log(2.0 / (cart + 2)),
                          atol=1e-6)
    std = item_statistics(graph, smoothing=2.0, leave_one_out=True).double()
    scaled = (raw - plain.mean(0)) / plain.std(0)
    assert torch.allclose(std, scaled, atol=1e-5)
    # the item never bought keeps its features
    assert torch.allclose(std[3], item_statistics(graph, smoothing=2.0)[3]
                          .double(), atol=1e-6)


def test_item_features_enter_both_modes_linearly(graph):
    torch.manual_seed(0)
    head = VisitedAwareHead(5, 2, hidden_dim=3, num_item_features=3)
    user, item = torch.randn(3, 5), torch.randn(4, 5)
    links = VisitLinks(graph, ['view', 'cart'])(torch.tensor([2, 0, 1]))
    feats = torch.randn(4, 3)
    # zero-initialised: exactly the head without features
    plain = VisitedAwareHead(5, 2, hidden_dim=3)
    plain.load_state_dict({k: v for k, v in head.state_dict().items()
                           if k != 'feature_weight'})
    assert torch.equal(head.score_all(user, item, links,
                                      item_features=feats),
                       plain.score_all(user, item, links))
    with torch.no_grad():
        head.feature_weight.copy_(torch.tensor([[1.0, -2.0, 0.5],
                                                [0.0, 3.0, -1.0]]))
    got = head.score_all(user, item, links, item_features=feats)
    intent = plain.intent_logit(user).unsqueeze(-1)
    repeat = ((user * plain.repeat_weight) @ item.t() +
              (links * plain.link_weights(user)[:, None]).sum(-1) +
              plain.repeat_bias + feats @ torch.tensor([1.0, -2.0, 0.5]))
    explore = ((user * plain.explore_weight) @ item.t() +
               plain.explore_bias + feats @ torch.tensor([0.0, 3.0, -1.0]))
    want = mixture_logit(intent, repeat, explore, links.amax(-1) > 0)
    assert torch.allclose(got, want, atol=1e-5)
    # pairs agree with all-item scoring; the weights get a gradient
    items = torch.arange(4).expand(3, 4)
    pairs = head(user, item[items], links, item_features=feats[items])
    assert torch.allclose(pairs, got, atol=1e-5)
    pairs.sum().backward()
    assert head.feature_weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="'item_features' must have shape"):
        head.score_all(user, item, links)
    with pytest.raises(ValueError, match='num_item_features=0'):
        plain.score_all(user, item, links, item_features=feats)


def naive_pair_statistics(graph):
    # Dense item-to-item cosines S^{xy}, diagonal zeroed, averaged over the
    # user's x row: the formula of pair_statistics written out.
    U, n = graph.num_users, graph.num_items
    dense = {}
    for b in graph.behaviors:
        m = torch.zeros(U, n, dtype=torch.double)
        e = graph.edge_index_dict[b]
        m[e[0], e[1]] = 1.0
        dense[b] = m
    aux = graph.behaviors[:-1]
    cols = []
    for x, y in [(b, graph.target) for b in graph.behaviors] + \
            [(a, a) for a in aux]:
        X, Y = dense[x], dense[y]
        norm = (X.sum(0).clamp(min=1)[:, None] *
                Y.sum(0).clamp(min=1)[None, :]).sqrt()
        rows = []
        for u in range(U):  # co-occurrence in the other users only
            S = (X.t() @ Y - torch.outer(X[u], Y[u])) / norm
            S.fill_diagonal_(0.0)
            rows.append(X[u] @ S / X[u].sum().clamp(min=1))
        cols.append(torch.stack(rows))
    visited = sum(dense[a] for a in aux) > 0
    keys = visited.flatten().nonzero().flatten()
    out = torch.stack([c.flatten()[keys] for c in cols], -1)
    return keys, torch.log1p(out / out.mean(0))


@pytest.mark.parametrize('seed', [0, 1])
@pytest.mark.parametrize('chunk_size', [1, 3, 100])
def test_pair_statistics_match_dense_formula(seed, chunk_size):
    graph = random_graph(seed, num_users=8, num_items=10, density=0.35)
    keys, feats = pair_statistics(graph, chunk_size=chunk_size,
                                  standardize=False)
    want_keys, want = naive_pair_statistics(graph)
    assert torch.equal(keys, want_keys)
    assert feats.shape == (keys.numel(), 5) and feats.dtype == torch.float
    assert torch.allclose(feats.double(), want, atol=1e-5)
    # standardised: zero mean, unit variance per column
    _, std = pair_statistics(graph, chunk_size=chunk_size)
    assert torch.allclose(std.mean(0), torch.zeros(5), atol=1e-5)
    assert torch.allclose(std.std(0), torch.ones(5), atol=1e-4)


def test_pair_statistics_by_hand(graph):
    # buy -> buy for u0 on i0 (visited by u0's view): u0 bought i1 only;
    # i1 and i0 share no buyer, so 0. u2 bought i0; view -> buy for
    # (u2, i3): u2 viewed only i3 itself, which is left out: 0.
    keys, feats = pair_statistics(graph, standardize=False)
    assert keys.tolist() == [0, 1, 5, 6, 8, 11]  # u*4 + i, sorted
    raw = {k: f for k, f in zip(keys.tolist(), feats)}
    assert raw[0][0] == 0.0 and raw[11][1] == 0.0
    # view -> buy, leaving the user out: u0 and u1 viewed i0 and i1, u1
    # bought i1. (u0, i1) scores through u0's view of i0, which u1 shares
    # and followed by buying i1: S = 1 / sqrt(2 * 1), over u0's 2 views:
    # 1 / (2 sqrt 2). u1's own purchase (u1, i1) scores 0: the only
    # co-occurrence is u1's own. Mean over the 4 pairs a / 4 -> log(5).
    two = BehaviorGraph(2, 2, {'view': torch.tensor([[0, 0, 1, 1],
                                                     [0, 1, 0, 1]]),
                               'buy': torch.tensor([[1], [1]])},
                        ('view', 'buy'))
    k2, f2 = pair_statistics(two, standardize=False)
    assert k2.tolist() == [0, 1, 2, 3]
    assert torch.allclose(f2[:, 0], torch.tensor([0.0, math.log(5.0), 0.0,
                                                  0.0]), atol=1e-6)
    # the dense formula for every column (an all-zero one stays 0)
    _, dense = naive_pair_statistics(graph)
    assert torch.allclose(feats.double(), dense.nan_to_num(0.0), atol=1e-6)
    with pytest.raises(ValueError, match="'chunk_size' must be a positive"):
        pair_statistics(graph, chunk_size=0)
    with pytest.raises(TypeError, match="'graph' must be a BehaviorGraph"):
        pair_statistics('graph')
    with pytest.raises(ValueError, match='need auxiliary behaviors'):
        pair_statistics(BehaviorGraph(3, 4, {'buy': graph.edge_index_dict[
            'buy']}, ('buy',)))


def test_pair_features_enter_the_repeat_mode_only(graph):
    torch.manual_seed(0)
    head = VisitedAwareHead(5, 2, hidden_dim=3, num_pair_features=2)
    plain = VisitedAwareHead(5, 2, hidden_dim=3)
    plain.load_state_dict({k: v for k, v in head.state_dict().items()
                           if k != 'pair_weight'})
    user, item = torch.randn(3, 5), torch.randn(4, 5)
    links = VisitLinks(graph, ['view', 'cart'])(torch.tensor([2, 0, 1]))
    pair = torch.randn(3, 4, 2)
    # zero-initialised: exactly the head without them
    assert torch.equal(head.score_all(user, item, links, pair_features=pair),
                       plain.score_all(user, item, links))
    with torch.no_grad():
        head.pair_weight.copy_(torch.tensor([2.0, -1.0]))
    got = head.score_all(user, item, links, pair_features=pair)
    intent = plain.intent_logit(user).unsqueeze(-1)
    repeat = ((user * plain.repeat_weight) @ item.t() +
              (links * plain.link_weights(user)[:, None]).sum(-1) +
              plain.repeat_bias + pair @ torch.tensor([2.0, -1.0]))
    explore = (user * plain.explore_weight) @ item.t() + plain.explore_bias
    visited = links.amax(-1) > 0
    want = mixture_logit(intent, repeat, explore, visited)
    assert torch.allclose(got, want, atol=1e-5)
    # unvisited pairs do not depend on them
    assert torch.equal(got[~visited], plain.score_all(user, item,
                                                      links)[~visited])
    items = torch.arange(4).expand(3, 4)
    pairs = head(user, item[items], links, pair_features=pair)
    assert torch.allclose(pairs, got, atol=1e-5)
    pairs.sum().backward()
    assert head.pair_weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="'pair_features' must have shape"):
        head.score_all(user, item, links, pair_features=pair[:, :, :1])
    with pytest.raises(ValueError, match='num_pair_features=0'):
        plain(user, item[items], links, pair_features=pair)
    with pytest.raises(ValueError, match="'num_pair_features' must be"):
        VisitedAwareHead(5, 2, num_pair_features=-1)


def test_mixture_gradcheck_float64():
    gen = torch.Generator().manual_seed(0)
    intent = torch.randn(3, 1, dtype=torch.double, generator=gen)
    repeat = torch.randn(3, 4, dtype=torch.double, generator=gen)
    explore = torch.randn(3, 4, dtype=torch.double, generator=gen)
    visited = torch.rand(3, 4, generator=gen) < 0.5
    args = [t.requires_grad_() for t in (intent, repeat, explore)]
    assert torch.autograd.gradcheck(
        lambda a, r, e: mixture_logit(a, r, e, visited), args)

    head = VisitedAwareHead(3, 2, hidden_dim=2).double()
    perturb(head)
    user = torch.randn(2, 3, dtype=torch.double, generator=gen)
    item = torch.randn(2, 4, 3, dtype=torch.double, generator=gen)
    links = (torch.rand(2, 4, 2, generator=gen) < 0.5).double()
    assert torch.autograd.gradcheck(
        lambda u, i: head(u, i, links),
        [user.requires_grad_(), item.requires_grad_()])


def test_mixture_is_stable_for_large_logits():
    intent = torch.tensor([60.0, -60.0, 0.0])
    repeat = torch.tensor([80.0, -80.0, 1e4])
    explore = torch.tensor([-80.0, 80.0, -1e4])
    visited = torch.tensor([True, False, True])
    out = mixture_logit(intent, repeat, explore, visited)
    assert torch.isfinite(out).all()
    # P(r) = 1 - e^-60, P(y|r) = 1 - e^-80: logit ~ 60
    assert out[0].item() == pytest.approx(60.0, abs=1e-4)
    assert out[1].item() == pytest.approx(60.0, abs=1e-4)
    assert out[2].item() == pytest.approx(0.0, abs=1e-6)  # P(r) = 1/2


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    head = VisitedAwareHead(4, 2, hidden_dim=3)
    user = torch.randn(3, 4)
    item = torch.randn(3, 2, 4)
    links = torch.tensor([[[1.0, 0], [0, 0]], [[1, 1], [0, 0]],
                          [[0, 1], [0, 0]]])
    loss = (bce_loss(head(user, item, links), torch.tensor(
        [[1.0, 0], [1, 0], [0, 1]])) + head.auxiliary_loss(
            user, torch.tensor([1.0, 0.5, 0.0])))
    loss.backward()
    for name, p in head.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_reset_parameters_and_repr():
    head = VisitedAwareHead(4, 2)
    perturb(head)
    head.reset_parameters()
    user, item = torch.randn(3, 4), torch.randn(3, 4)
    links = torch.tensor([[0.0, 0], [1, 0], [1, 1]])
    parts = head.components(user, item, links)
    dot = (user * item).sum(-1)  # both modes start as the dot product
    assert torch.allclose(parts['given_repeat'], torch.sigmoid(dot))
    assert torch.allclose(parts['given_explore'], torch.sigmoid(dot))
    assert repr(head) == 'VisitedAwareHead(4, num_links=2, hidden_dim=32)'


def test_head_errors():
    with pytest.raises(ValueError, match="'embedding_dim' must be an int"):
        VisitedAwareHead(0, 2)
    with pytest.raises(ValueError, match="'num_links' must be an int >= 1"):
        VisitedAwareHead(4, 0)
    with pytest.raises(ValueError, match="'hidden_dim' must be an int >= 0"):
        VisitedAwareHead(4, 2, hidden_dim=-1)
    head = VisitedAwareHead(4, 2)
    user, item = torch.randn(3, 4), torch.randn(3, 4)
    with pytest.raises(ValueError, match=r"'user' must have shape \[B, 4\]"):
        head(torch.randn(3, 5), item, torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"'item' must have shape \[3, 4\] "
                                         r"or \[3, K, 4\]"):
        head(user, torch.randn(2, 4), torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"'links' must have shape \[3, 2\]"):
        head(user, item, torch.zeros(3, 1))
    with pytest.raises(ValueError, match=r"'item' must have shape \[I, 4\]"):
        head.score_all(user, torch.randn(5, 3), torch.zeros(3, 5, 2))
    with pytest.raises(ValueError, match=r"'links' must have shape "
                                         r"\[3, 5, 2\]"):
        head.score_all(user, torch.randn(5, 4), torch.zeros(3, 4, 2))
    with pytest.raises(ValueError, match=r"'visited_share' must have shape "
                                         r"\[3\]"):
        head.auxiliary_loss(user, torch.zeros(3, 1))
