import pytest
import torch

from graphrec.data.graph import BipartiteAdjacency
from graphrec.nn import bipartite_propagate, bipartite_propagate_scatter
from graphrec.testing import DEVICES


def random_graph(num_users=30, num_items=20, num_edges=120, seed=0):
    gen = torch.Generator().manual_seed(seed)
    keys = torch.randperm(num_users * num_items, generator=gen)[:num_edges]
    return torch.stack([keys // num_items, keys % num_items])


@pytest.mark.parametrize('device', DEVICES)
def test_spmm_matches_scatter_forward_and_backward(device):
    edge_index = random_graph()
    weight = torch.rand(edge_index.size(1))
    adj = BipartiteAdjacency(edge_index, 30, 20, weight).to(device)
    xu = torch.randn(30, 8, device=device, requires_grad=True)
    xi = torch.randn(20, 8, device=device, requires_grad=True)
    out = bipartite_propagate(adj, xu, xi)
    ref = bipartite_propagate_scatter(adj, xu, xi)
    for a, b in zip(out, ref):
        assert torch.allclose(a, b, atol=1e-6)
    g1 = torch.autograd.grad(sum((o * o).sum() for o in out), (xu, xi))
    g2 = torch.autograd.grad(sum((o * o).sum() for o in ref), (xu, xi))
    for a, b in zip(g1, g2):
        assert torch.allclose(a, b, atol=1e-5)


def test_spmm_gradcheck_float64():
    adj = BipartiteAdjacency(random_graph(6, 5, 12), 6, 5)
    xu = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    xi = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda u, i: bipartite_propagate(adj, u, i), (xu, xi))


def test_independent_of_edge_order():
    edge_index = random_graph()
    perm = torch.randperm(edge_index.size(1))
    a = BipartiteAdjacency(edge_index, 30, 20)
    b = BipartiteAdjacency(edge_index[:, perm], 30, 20)
    xu, xi = torch.randn(30, 4), torch.randn(20, 4)
    for x, y in zip(bipartite_propagate(a, xu, xi),
                    bipartite_propagate(b, xu, xi)):
        assert torch.equal(x, y)


def test_hand_computed_step():
    # u0 - i0 only: degrees 1 and 1, weight 1; u1 isolated.
    adj = BipartiteAdjacency(torch.tensor([[0], [0]]), 2, 1)
    xu = torch.tensor([[1., 2.], [5., 5.]])
    xi = torch.tensor([[3., 4.]])
    out_u, out_i = bipartite_propagate(adj, xu, xi)
    assert torch.equal(out_u, torch.tensor([[3., 4.], [0., 0.]]))
    assert torch.equal(out_i, torch.tensor([[1., 2.]]))
