import pytest
import torch

from graphrec.data import MultiBehaviorDataset
from graphrec.data.graph import (
    BehaviorGraph,
    BipartiteAdjacency,
    to_hetero_data,
)


def test_normalisation_is_inverse_sqrt_degree():
    # users 0,1,2; items 0..3. Degrees: u0=2, u1=1, u2=2; i0=1, i1=2, i3=2
    edge_index = torch.tensor([[0, 0, 1, 2, 2], [1, 3, 1, 0, 3]])
    adj = BipartiteAdjacency(edge_index, 3, 4)
    dense = adj.matrix().to_dense()
    expected = torch.zeros(3, 4)
    expected[0, 1] = 1 / (2 * 2)**0.5
    expected[0, 3] = 1 / (2 * 2)**0.5
    expected[1, 1] = 1 / (1 * 2)**0.5
    expected[2, 0] = 1 / (2 * 1)**0.5
    expected[2, 3] = 1 / (2 * 2)**0.5
    assert torch.allclose(dense, expected)
    assert torch.allclose(adj.matrix_t().to_dense(), expected.t())


def test_edge_weight_follows_edges_under_permutation():
    edge_index = torch.tensor([[0, 0, 1, 2, 2], [1, 3, 1, 0, 3]])
    weight = torch.tensor([1., 2., 3., 4., 5.])
    a = BipartiteAdjacency(edge_index, 3, 4, weight, normalize=False)
    perm = torch.tensor([3, 0, 4, 2, 1])
    b = BipartiteAdjacency(edge_index[:, perm], 3, 4, weight[perm],
                           normalize=False)
    assert torch.equal(a.matrix().to_dense(), b.matrix().to_dense())
    assert a.matrix().to_dense()[2, 3] == 5.
    with pytest.raises(ValueError, match="'edge_weight' must have shape"):
        a.set_edge_weight(torch.ones(4))
    with pytest.raises(ValueError, match="'edge_index' must have shape"):
        BipartiteAdjacency(torch.zeros(3, 2, dtype=torch.long), 3, 4)


def test_behavior_graph_and_hetero_data(tiny):
    graph = BehaviorGraph.from_dataset(tiny)
    assert graph.resolve('target') == ('buy', )
    assert graph.resolve('all') == ('view', 'buy')
    merged = graph.edge_index('all')
    # view has 5 pairs, buy 3, of which u0-i1 and u1-i2 repeat -> 6 unique
    assert merged.size(1) == 6
    assert graph.adjacency('all') is graph.adjacency(('view', 'buy'))
    with pytest.raises(ValueError, match="unknown behaviors"):
        graph.resolve('cart')
    data = to_hetero_data(tiny)
    assert data['user'].num_nodes == 3 and data['item'].num_nodes == 4
    assert torch.equal(data['user', 'buy', 'item'].edge_index,
                       tiny.train['buy'])
    assert torch.equal(data['item', 'rev_view', 'user'].edge_index,
                       tiny.train['view'].flip(0))
    back = BehaviorGraph.from_hetero_data(data, tiny.behaviors)
    assert torch.equal(back.edge_index('buy'), tiny.train['buy'])


def test_test_pairs_never_in_graph(tiny):
    data = to_hetero_data(tiny)
    keys = set(map(tuple, tiny.test.t().tolist()))
    train = set(map(tuple, data['user', 'buy', 'item'].edge_index.t()
                    .tolist()))
    assert not keys & train


def test_dataset_rejects_bad_input(tiny):
    kw = dict(name='x', num_users=3, num_items=4, behaviors=('view', 'buy'),
              train=dict(tiny.train), test=tiny.test)
    with pytest.raises(ValueError, match="item id 9 outside"):
        MultiBehaviorDataset(**{**kw, 'test': torch.tensor([[0], [9]])})
    with pytest.raises(ValueError, match="user id -1 outside"):
        MultiBehaviorDataset(**{**kw, 'test': torch.tensor([[-1], [0]])})
    with pytest.raises(ValueError, match="'test' has 1 pair.*also train"):
        MultiBehaviorDataset(**{**kw, 'test': torch.tensor([[0], [1]])})
    with pytest.raises(ValueError, match="identical to 'test'"):
        MultiBehaviorDataset(**kw, valid=tiny.test.clone())
    with pytest.raises(ValueError, match="share 1 pair"):
        MultiBehaviorDataset(**kw, valid=torch.tensor([[0], [2]]))
    with pytest.raises(ValueError, match="no train interactions"):
        MultiBehaviorDataset(**{**kw, 'train': {
            'view': tiny.train['view'],
            'buy': torch.empty(2, 0, dtype=torch.long)}})
    with pytest.raises(ValueError, match=r"lacks|no interactions for"):
        MultiBehaviorDataset(**{**kw, 'train': {'buy': tiny.train['buy']}})
    with pytest.raises(ValueError, match="not in 'behaviors'"):
        MultiBehaviorDataset(**{**kw, 'train': {**tiny.train,
                                                'cart': tiny.train['buy']}})
    with pytest.raises(ValueError, match="'num_users' must be a positive"):
        MultiBehaviorDataset(**{**kw, 'num_users': 0})
    with pytest.raises(ValueError, match="'behaviors' has duplicates"):
        MultiBehaviorDataset(**{**kw, 'behaviors': ('buy', 'buy')})
    with pytest.raises(ValueError, match="at least one behavior"):
        MultiBehaviorDataset(**{**kw, 'behaviors': ()})
    with pytest.raises(TypeError, match="dtype torch.long"):
        MultiBehaviorDataset(**{**kw, 'test': tiny.test.float()})
    with pytest.raises(TypeError, match="must be a LongTensor"):
        MultiBehaviorDataset(**{**kw, 'test': [[0], [1]]})
    with pytest.raises(ValueError, match=r"shape \[2, E\]"):
        MultiBehaviorDataset(**{**kw, 'test': torch.zeros(3, 1).long()})
    with pytest.raises(ValueError, match="'timestamps\\['buy'\\]' has 1"):
        MultiBehaviorDataset(**kw, timestamps={'buy': torch.tensor([1])})


def test_stats(tiny):
    stats = tiny.stats()
    assert stats['train'] == {'view': 5, 'buy': 3}
    assert stats['test'] == 3
    # only u2-i3 of the 3 test pairs was viewed in train
    assert stats['test_visited_share'] == pytest.approx(1 / 3)
    # train buys u0-i1 and u1-i2 were viewed, u2-i0 was not
    assert stats['train_visited_share'] == pytest.approx(2 / 3)
