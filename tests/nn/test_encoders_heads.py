import networkx as nx
import pytest
import torch

from graphrec.data.graph import BehaviorGraph
from graphrec.models import build_model
from graphrec.nn.encoders import (
    CascadeEncoder,
    LightStack,
    ParallelEncoder,
    behavior_dag,
)
from graphrec.nn.heads import CascadedHeads, InteractionUnit
from graphrec.nn.propagation import bipartite_propagate

BEHAVIORS = ('view', 'cart', 'buy')


@pytest.fixture
def graph():
    return BehaviorGraph(3, 4, {
        'view': torch.tensor([[0, 0, 1, 1, 2], [0, 1, 1, 2, 3]]),
        'cart': torch.tensor([[0, 1, 2], [1, 2, 3]]),
        'buy': torch.tensor([[0, 1], [1, 2]]),
    }, BEHAVIORS)


def test_cascade_feeds_each_stage_into_the_next(graph):
    enc = CascadeEncoder(3, 4, BEHAVIORS, embedding_dim=5, num_layers=1,
                         combine='last')
    out = enc(graph)
    x = (enc.user_embedding.weight, enc.item_embedding.weight)
    view = bipartite_propagate(graph.adjacency('view'), *x)
    cart = bipartite_propagate(graph.adjacency('cart'), *view)
    buy = bipartite_propagate(graph.adjacency('buy'), *cart)
    for got, want in zip((out['view'], out['cart'], out['buy']),
                         (view, cart, buy)):
        assert torch.allclose(got[0], want[0], atol=1e-6)
        assert torch.allclose(got[1], want[1], atol=1e-6)


def test_cascade_residual_and_linear_transform(graph):
    enc = CascadeEncoder(3, 4, BEHAVIORS, embedding_dim=4, num_layers=1,
                         combine='last', residual=True, transform='linear')
    with torch.no_grad():
        enc.lins['cart'].weight.mul_(2.0)  # stage input of cart doubled
    out = enc(graph)
    view = out['view']
    x_cart = (2 * view[0], 2 * view[1])
    h = bipartite_propagate(graph.adjacency('cart'), *x_cart)
    assert torch.allclose(out['cart'][0], h[0] + x_cart[0], atol=1e-6)
    assert 'view' not in enc.lins  # a root has no input transform


def test_partial_order_combines_parents(graph):
    # view -> cart, view -> buy, cart -> buy
    dag = behavior_dag(BEHAVIORS, [('view', 'cart'), ('view', 'buy'),
                                   ('cart', 'buy')])
    enc = CascadeEncoder(3, 4, BEHAVIORS, embedding_dim=4, num_layers=1,
                         combine='last', dag=dag)
    out = enc(graph)
    x_u = (out['view'][0] + out['cart'][0]) / 2
    x_i = (out['view'][1] + out['cart'][1]) / 2
    want = bipartite_propagate(graph.adjacency('buy'), x_u, x_i)
    assert torch.allclose(out['buy'][0], want[0], atol=1e-6)


def test_dag_errors():
    with pytest.raises(ValueError, match='must be acyclic'):
        behavior_dag(BEHAVIORS, [('view', 'cart'), ('cart', 'view')])
    with pytest.raises(ValueError, match="unknown behaviors \\['share'\\]"):
        behavior_dag(BEHAVIORS, [('view', 'share')])
    with pytest.raises(ValueError, match='must hold \\(parent, child\\)'):
        behavior_dag(BEHAVIORS, [('view', )])
    dag = nx.DiGraph([('view', 'buy')])
    with pytest.raises(ValueError, match="missing \\['cart'\\]"):
        CascadeEncoder(3, 4, BEHAVIORS, dag=dag)
    with pytest.raises(ValueError, match="'transform' must be one of"):
        CascadeEncoder(3, 4, BEHAVIORS, transform='mlp')
    with pytest.raises(ValueError, match="'combine' must be one of"):
        LightStack(2, combine='max')


def test_parallel_uses_base_embeddings(graph):
    enc = ParallelEncoder(3, 4, BEHAVIORS, embedding_dim=4, num_layers=1,
                          combine='last')
    out = enc(graph)
    x = (enc.user_embedding.weight, enc.item_embedding.weight)
    want = bipartite_propagate(graph.adjacency('buy'), *x)
    assert torch.allclose(out['buy'][0], want[0])


def test_nmtr_cascade_formula_on_hand_set_weights():
    heads = CascadedHeads(BEHAVIORS, num_items=2, embedding_dim=2,
                          unit='gmf')
    with torch.no_grad():
        heads.units['view'].h.copy_(torch.tensor([1., 0.]))
        heads.units['cart'].h.copy_(torch.tensor([0., 2.]))
        heads.units['buy'].h.copy_(torch.tensor([1., 1.]))
        heads.bias.copy_(torch.tensor([[0.5, 0.], [0., -1.], [1., 1.]]))
    p = torch.tensor([[1., 2.]])
    q = torch.tensor([[3., 4.], [1., 1.]])
    item = torch.tensor([0])
    # f^view = 1*3 + 0 = 3; f^cart = 0 + 2*8 = 16; f^buy = 3 + 8 = 11
    view = 3 + 0.5
    cart = view + 16 + 0
    buy = cart + 11 + 1
    assert heads(p, q[:1], item, 'view').item() == pytest.approx(view)
    assert heads(p, q[:1], item, 'cart').item() == pytest.approx(cart)
    assert heads(p, q[:1], item, 'buy').item() == pytest.approx(buy)
    full = heads.score_all(p, q, 'buy')
    assert full[0, 0].item() == pytest.approx(buy)
    heads.cascade = False
    assert heads(p, q[:1], item, 'buy').item() == pytest.approx(11 + 1)


@pytest.mark.parametrize('kind', ['dot', 'gmf', 'mlp', 'neumf'])
def test_units_score_all_matches_pairs(kind):
    unit = InteractionUnit(kind, 4, hidden_dim=8)
    heads = CascadedHeads(BEHAVIORS, 5, 4, unit=kind, hidden_dim=8)
    p, q = torch.randn(3, 4), torch.randn(5, 4)
    full = heads.score_all(p, q, 'buy', item_chunk=2)
    pairs = heads(p.unsqueeze(1), q.unsqueeze(0).expand(3, 5, 4),
                  torch.arange(5).expand(3, 5), 'buy')
    assert torch.allclose(full, pairs, atol=1e-5)
    assert unit.decomposable == (kind in ('dot', 'gmf'))
    with pytest.raises(ValueError, match="'kind' must be one of"):
        InteractionUnit('cnn', 4)


@pytest.mark.parametrize('name,kwargs', [
    ('nmtr', {'unit': 'neumf'}),
    ('mbcgcn', {}),
    ('crgcn', {}),
    ('multi', {'encoder': 'parallel', 'head': 'cascaded', 'unit': 'mlp'}),
])
def test_every_parameter_gets_a_gradient(graph, name, kwargs):
    model = build_model(name, 3, 4, BEHAVIORS, embedding_dim=4, **kwargs)
    emb = model(graph)
    user = torch.tensor([0, 1, 2])
    loss = 0
    for b in BEHAVIORS:
        loss = loss + model.score_behavior(emb, b, user,
                                           torch.tensor([[1, 3], [2, 0],
                                                         [3, 1]])).sum()
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert p.grad.abs().sum() > 0, pname


def test_model_errors():
    with pytest.raises(ValueError, match="needs the dataset's 'behaviors'"):
        build_model('mbcgcn', 3, 4)
    with pytest.raises(ValueError, match="'encoder' must be one of"):
        build_model('multi', 3, 4, BEHAVIORS, encoder='gat')
    with pytest.raises(ValueError, match="'behaviors' must be a non-empty"):
        build_model('multi', 3, 4, behaviors='buy')
