import math

import pytest
import torch

from graphrec.nn.fusion import MoEFusion


def randomize(fusion, seed=0):
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in fusion.parameters():
            p.normal_(std=0.5)
    return fusion


def test_literal_mixture_of_two_experts():
    fusion = MoEFusion(('view', 'buy'), embedding_dim=1)
    users = torch.tensor([[[2.0], [1.0]]])  # p^view = 2, p^buy = 1
    items = torch.tensor([[[3.0], [-1.0]]])  # q^view = 3, q^buy = -1
    ctx = torch.zeros(1, 1)
    # Uniform gate, identity experts: 0.5 * 6 + 0.5 * (-1) = 2.5.
    assert fusion(users, items, ctx, ctx).item() == pytest.approx(2.5)
    with torch.no_grad():
        fusion.gate_user.bias.copy_(torch.tensor([math.log(3.0), 0.0]))
        fusion.expert_weight[1] = 2.0
    # Gate (0.75, 0.25), buy expert doubled: 0.75 * 6 + 0.25 * (-2) = 4.
    assert fusion(users, items, ctx, ctx).item() == pytest.approx(4.0)
    assert fusion.gate_weights(ctx)[0].tolist() == pytest.approx(
        [0.75, 0.25])


def naive(fusion, users, items, user, item, links=None):
    # sum_b g_b(u, i) <W_b p^b_u, q^b_i>, one pair at a time.
    out = torch.zeros(users.size(0), items.size(0))
    for u in range(users.size(0)):
        for i in range(items.size(0)):
            logit = fusion.gate_user(user[u])
            if fusion.gate == 'pair':
                logit = logit + fusion.gate_item(item[i])
                if links is not None:
                    logit = logit + fusion.gate_link(links[u, i])
            g = logit.softmax(-1)
            for b in range(len(fusion.behaviors)):
                w = fusion.expert_weight[b]
                out[u, i] += g[b] * (w @ users[u, b]) @ items[i, b]
    return out


def test_per_user_gate_decomposes_into_one_product():
    fusion = randomize(MoEFusion(('view', 'cart', 'buy'), embedding_dim=4))
    assert fusion.decomposable
    users, items = torch.randn(5, 3, 4), torch.randn(7, 3, 4)
    user, item = torch.randn(5, 4), torch.randn(7, 4)
    full = fusion.score_all(users, items, user, item)
    assert torch.allclose(full, naive(fusion, users, items, user, item),
                          atol=1e-5)
    pairs = fusion(users.unsqueeze(1).expand(5, 7, 3, 4),
                   items.unsqueeze(0).expand(5, 7, 3, 4),
                   user.unsqueeze(1).expand(5, 7, 4),
                   item.unsqueeze(0).expand(5, 7, 4))
    assert torch.allclose(full, pairs, atol=1e-5)


def test_pair_gate_factorized_equals_naive_and_dense():
    fusion = randomize(MoEFusion(('view', 'cart', 'buy'), embedding_dim=4,
                                 gate='pair', num_links=2))
    assert not fusion.decomposable
    users, items = torch.randn(5, 3, 4), torch.randn(7, 3, 4)
    user, item = torch.randn(5, 4), torch.randn(7, 4)
    links = (torch.rand(5, 7, 2) < 0.3).float()
    links[0, 0] = torch.tensor([1.0, 1.0])
    expected = naive(fusion, users, items, user, item, links)
    dense = fusion.score_all(users, items, user, item, links)
    assert torch.allclose(dense, expected, atol=1e-5)
    index = links.any(-1).nonzero().t()
    sparse = fusion.score_all(users, items, user, item,
                              (index, links[index[0], index[1]]))
    assert torch.allclose(sparse, expected, atol=1e-5)
    assert torch.allclose(fusion.score_dense(users, items, user, item,
                                             links), expected, atol=1e-5)
    # Links matter: with none, the linked pairs score differently.
    none = fusion.score_all(users, items, user, item, torch.zeros_like(links))
    assert not torch.allclose(none[0, 0], expected[0, 0])


def test_pair_gate_underflow_falls_back_to_dense_rows():
    fusion = randomize(MoEFusion(('view', 'buy'), embedding_dim=2,
                                 gate='pair', num_links=1))
    with torch.no_grad():
        # User prefers expert 0 and item expert 1 by 200 logits each: the
        # factorized denominator underflows in float32.
        fusion.gate_user.weight.zero_()
        fusion.gate_user.bias.copy_(torch.tensor([200.0, 0.0]))
        fusion.gate_item.weight.copy_(torch.tensor([[0.0, 0.0],
                                                    [200.0, 0.0]]))
    users, items = torch.randn(2, 2, 2), torch.randn(3, 2, 2)
    user, item = torch.randn(2, 2), torch.tensor([[1.0, 0], [1, 0], [0, 0]])
    links = torch.zeros(2, 3, 1)
    out = fusion.score_all(users, items, user, item, links)
    assert torch.isfinite(out).all()
    assert torch.allclose(out, naive(fusion, users, items, user, item,
                                     links), atol=1e-4)


def test_gate_weights_rows_sum_to_one():
    fusion = randomize(MoEFusion(('view', 'buy'), embedding_dim=3,
                                 gate='pair', num_links=1))
    g = fusion.gate_weights(torch.randn(6, 3), torch.randn(6, 3),
                            torch.ones(6, 1))
    assert g.shape == (6, 2)
    assert torch.allclose(g.sum(-1), torch.ones(6))


def test_fusion_input_errors():
    with pytest.raises(ValueError, match="'behaviors' must be a non-empty"):
        MoEFusion(())
    with pytest.raises(ValueError, match="'embedding_dim' must be"):
        MoEFusion(('buy', ), embedding_dim=0)
    with pytest.raises(ValueError, match="'gate' must be one of"):
        MoEFusion(('buy', ), gate='item')
    with pytest.raises(ValueError, match="'num_links' must be"):
        MoEFusion(('buy', ), num_links=-1)
    fusion = MoEFusion(('view', 'buy'), embedding_dim=2, gate='pair',
                       num_links=1)
    with pytest.raises(ValueError, match="the pair gate needs 'item'"):
        fusion.gate_weights(torch.ones(1, 2))
    with pytest.raises(ValueError, match=r"needs 'links' \[\.\.\., 1\]"):
        fusion.gate_weights(torch.ones(1, 2), torch.ones(1, 2))
    with pytest.raises(ValueError, match=r"needs 'links' \[\.\.\., 1\]"):
        fusion.score_all(torch.ones(1, 2, 2), torch.ones(3, 2, 2),
                         torch.ones(1, 2), torch.ones(3, 2),
                         torch.ones(1, 3, 2))
    assert repr(fusion) == ("MoEFusion(behaviors=('view', 'buy'), "
                            "embedding_dim=2, gate='pair', num_links=1)")
