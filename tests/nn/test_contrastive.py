import math

import pytest
import torch

from graphrec.losses import info_nce
from graphrec.nn.contrastive import (
    BiasAwareContrastive,
    activity_strata,
    confounder_weight,
    popularity_strata,
    quantile_strata,
)
from graphrec.testing import DEVICES

E = math.e


def basis():
    return torch.tensor([[1.0, 0.0], [0.0, 1.0]])


# ------------------------------------------------------------ info_nce
def test_info_nce_two_orthogonal_vectors_by_hand():
    # s = I, tau = 1: each row -log(e / (e + 1)) = log(1 + 1/e)
    loss = info_nce(basis(), basis(), temperature=1.0)
    assert loss.item() == pytest.approx(0.3132617, abs=1e-6)
    assert loss.item() == pytest.approx(math.log(1 + 1 / E), rel=1e-6)
    # tau = 0.5 doubles the similarities: log(1 + e^-2)
    loss = info_nce(basis(), basis(), temperature=0.5)
    assert loss.item() == pytest.approx(math.log(1 + E**-2), rel=1e-6)


def test_info_nce_three_vectors_by_hand():
    # cosine: s_12 = 0, s_13 = s_23 = 1/sqrt(2), tau = 1
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    r = 1 / math.sqrt(2)
    row1 = math.log(E + 1 + math.exp(r)) - 1
    row3 = math.log(2 * math.exp(r) + E) - 1
    want = (2 * row1 + row3) / 3
    assert info_nce(x, x, 1.0).item() == pytest.approx(want, rel=1e-6)
    # raw dot products instead: s_33 = 2, s_13 = 1
    row1 = math.log(E + 1 + E) - 1
    row3 = math.log(2 * E + E**2) - 2
    want = (2 * row1 + row3) / 3
    got = info_nce(x, x, 1.0, normalize=False)
    assert got.item() == pytest.approx(want, rel=1e-6)


def test_info_nce_weights_by_hand():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    r = 1 / math.sqrt(2)
    w = torch.tensor([[9.0, 0.5, 2.0], [1.0, 9.0, 0.0], [1.0, 1.0, 9.0]])
    rows = [math.log(E + 0.5 + 2 * math.exp(r)) - 1,
            math.log(E + 1.0) - 1,  # weight 0 drops the negative
            math.log(2 * math.exp(r) + E) - 1]
    got = info_nce(x, x, 1.0, negative_weight=w)  # diagonal ignored
    assert got.item() == pytest.approx(sum(rows) / 3, rel=1e-6)


@pytest.mark.parametrize('device', DEVICES)
def test_info_nce_weight_one_is_plain_info_nce(device):
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(6, 4, generator=gen).to(device)
    p = torch.randn(6, 4, generator=gen).to(device)
    plain = info_nce(a, p, 0.3)
    ones = info_nce(a, p, 0.3, negative_weight=torch.ones(6, 6,
                                                          device=device))
    assert torch.allclose(plain, ones, atol=1e-6)
    # and equals the cross-entropy over rows
    logits = torch.nn.functional.normalize(a, dim=-1) @ \
        torch.nn.functional.normalize(p, dim=-1).t() / 0.3
    ce = torch.nn.functional.cross_entropy(logits,
                                           torch.arange(6, device=device))
    assert torch.allclose(plain, ce, atol=1e-6)
    # no negatives left: the loss is 0
    zero = info_nce(a, p, 0.3, negative_weight=torch.zeros(6, 6,
                                                           device=device))
    assert zero.abs().item() < 1e-6


def test_info_nce_is_stable_at_low_temperature():
    a = torch.randn(5, 3)
    loss = info_nce(a, a, 1e-4, negative_weight=torch.full((5, 5), 0.5))
    assert torch.isfinite(loss)


def test_info_nce_gradcheck_float64():
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(4, 3, dtype=torch.double, generator=gen)
    p = torch.randn(4, 3, dtype=torch.double, generator=gen)
    w = torch.rand(4, 4, dtype=torch.double, generator=gen) + 0.1
    args = [t.requires_grad_() for t in (a, p, w)]
    assert torch.autograd.gradcheck(
        lambda a, p, w: info_nce(a, p, 0.5, negative_weight=w), args)
    assert torch.autograd.gradcheck(
        lambda a, p: info_nce(a, p, 0.5, normalize=False), args[:2])


def test_info_nce_errors():
    with pytest.raises(ValueError, match="'anchor' and 'positive' must have "
                                         "the same shape"):
        info_nce(torch.randn(3, 2), torch.randn(2, 2))
    with pytest.raises(ValueError, match="'temperature' must be > 0"):
        info_nce(basis(), basis(), 0.0)
    with pytest.raises(ValueError, match=r"'negative_weight' must have shape "
                                         r"\[2, 2\] \(got \[3, 3\]\)"):
        info_nce(basis(), basis(), 1.0, torch.ones(3, 3))
    with pytest.raises(ValueError, match="'negative_weight' must be "
                                         "non-negative"):
        info_nce(basis(), basis(), 1.0, -torch.ones(2, 2))


# ------------------------------------------------------- bias-aware loss
def test_same_stratum_negative_down_weighted_by_hand():
    loss_fn = BiasAwareContrastive(temperature=1.0, weight=1.0, gamma=1.0,
                                   delta=0.5)
    views = [basis(), basis()]
    plain = loss_fn(views)
    assert plain.item() == pytest.approx(math.log(1 + 1 / E), rel=1e-6)
    same = loss_fn(views, confounder=torch.tensor([3, 3]))
    assert same.item() == pytest.approx(math.log(1 + 0.5 / E), rel=1e-6)
    # lowered by log(1 + 1/e) - log(1 + 0.5/e) = 0.31326 - 0.16885
    drop = math.log(1 + 1 / E) - math.log(1 + 0.5 / E)
    assert (plain - same).item() == pytest.approx(drop, rel=1e-5)
    assert drop == pytest.approx(0.144414, abs=1e-6)
    # a different stratum is pushed apart harder: weight 1 + gamma = 2
    other = loss_fn(views, confounder=torch.tensor([0, 1]))
    assert other.item() == pytest.approx(math.log(1 + 2 / E), rel=1e-6)


def test_confounder_weight_by_hand():
    w = confounder_weight(torch.tensor([0, 0, 1]), gamma=1.0, delta=0.25,
                          index=torch.tensor([7, 7, 8]))
    # rows 0 and 1 are the same entity: not negatives of each other
    assert w.tolist() == [[0.0, 0.0, 2.0], [0.0, 0.0, 2.0],
                          [2.0, 2.0, 0.0]]
    w = confounder_weight(torch.tensor([0, 0, 1]), gamma=0.5, delta=0.25)
    assert w.tolist() == [[0.25, 0.25, 1.5], [0.25, 0.25, 1.5],
                          [1.5, 1.5, 0.25]]


def test_views_paired_with_the_target_and_weighted():
    gen = torch.Generator().manual_seed(0)
    view, cart, buy = (torch.randn(5, 3, generator=gen) for _ in range(3))
    conf = torch.tensor([0, 1, 0, 2, 1])
    loss_fn = BiasAwareContrastive(temperature=0.5, weight=0.1, gamma=0.5,
                                   delta=0.25)
    w = confounder_weight(conf, 0.5, 0.25)
    want = 0.1 * 0.5 * (info_nce(view, buy, 0.5, w)
                        + info_nce(cart, buy, 0.5, w))
    got = loss_fn({'view': view, 'cart': cart, 'buy': buy}, conf)
    assert torch.allclose(got, want, atol=1e-6)
    assert torch.allclose(loss_fn([view, cart, buy], conf), got)
    sym = BiasAwareContrastive(temperature=0.5, weight=1.0, gamma=0.5,
                               delta=0.25, symmetric=True)
    want = 0.5 * (info_nce(view, buy, 0.5, w) + info_nce(buy, view, 0.5, w))
    assert torch.allclose(sym([view, buy], conf), want, atol=1e-6)


def test_repeated_entities_are_not_negatives():
    loss_fn = BiasAwareContrastive(temperature=1.0, weight=1.0)
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    got = loss_fn([x, x], index=torch.tensor([4, 4, 9]))
    # rows 0, 1 see only row 2 (s = 0); row 2 sees rows 0, 1 (s = 0 each)
    want = (2 * math.log(1 + 1 / E) + math.log(1 + 2 / E)) / 3
    assert got.item() == pytest.approx(want, rel=1e-6)


def test_projection_head_gets_gradients_and_repr():
    torch.manual_seed(0)
    loss_fn = BiasAwareContrastive(embedding_dim=4, projection_dim=8)
    views = [torch.randn(6, 4, requires_grad=True) for _ in range(3)]
    loss = loss_fn(views, torch.tensor([0, 1, 0, 1, 2, 2]))
    loss.backward()
    for name, p in loss_fn.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(v.grad.abs().sum() > 0 for v in views)
    before = [p.clone() for p in loss_fn.parameters()]
    loss_fn.reset_parameters()
    assert any(not torch.equal(a, b)
               for a, b in zip(before, loss_fn.parameters()))
    assert repr(loss_fn) == ('BiasAwareContrastive(temperature=0.2, '
                             'weight=0.1, gamma=0.5, delta=0.5, '
                             'projection_dim=8)')


def test_bias_aware_errors():
    with pytest.raises(ValueError, match="'temperature' must be > 0"):
        BiasAwareContrastive(temperature=0.0)
    with pytest.raises(ValueError, match="'gamma' must be >= 0"):
        BiasAwareContrastive(gamma=-1.0)
    with pytest.raises(ValueError, match="'delta' must be >= 0"):
        BiasAwareContrastive(delta=-0.1)
    with pytest.raises(ValueError, match="'weight' must be >= 0"):
        BiasAwareContrastive(weight=-1.0)
    with pytest.raises(ValueError, match="'embedding_dim' is needed"):
        BiasAwareContrastive(projection_dim=8)
    loss_fn = BiasAwareContrastive()
    with pytest.raises(TypeError, match="'views' must be a dict or a list"):
        loss_fn(torch.randn(2, 3))
    with pytest.raises(ValueError, match="at least two views"):
        loss_fn([torch.randn(2, 3)])
    with pytest.raises(ValueError, match=r"shape \[N, D\] of the target view"):
        loss_fn([torch.randn(2, 3), torch.randn(3, 3)])
    with pytest.raises(ValueError,
                       match=r"'confounder' must have shape \[2\]"):
        loss_fn([torch.randn(2, 3)] * 2, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"'index' must have shape \[2\]"):
        loss_fn([torch.randn(2, 3)] * 2, index=torch.tensor([0]))


# --------------------------------------------------------------- strata
def test_quantile_strata_by_hand():
    assert quantile_strata(torch.tensor([5, 0, 2, 2]), 2).tolist() == [
        1, 0, 0, 0]
    assert quantile_strata(torch.arange(10), 5).tolist() == [
        0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    # ties share a stratum
    assert quantile_strata(torch.tensor([1, 1, 1, 1]), 3).tolist() == [
        0, 0, 0, 0]
    assert quantile_strata(torch.tensor([0.5, 3.0, 3.0, 9.0]), 4).tolist() \
        == [0, 1, 1, 3]
    assert quantile_strata(torch.tensor([4, 2]), 1).tolist() == [0, 0]
    assert quantile_strata(torch.tensor([], dtype=torch.long), 3).numel() == 0


def test_strata_independent_of_order():
    gen = torch.Generator().manual_seed(0)
    count = torch.randint(0, 6, (50, ), generator=gen)
    perm = torch.randperm(50, generator=gen)
    for fn in (popularity_strata, activity_strata):
        s = fn(count, 4)
        assert torch.equal(fn(count[perm], 4), s[perm])
        assert int(s.min()) >= 0 and int(s.max()) < 4
        # monotone in the count
        order = torch.argsort(count)
        assert bool((s[order].diff() >= 0).all())


def test_strata_errors():
    with pytest.raises(TypeError, match="'count' must be a tensor"):
        quantile_strata([1, 2], 2)
    with pytest.raises(ValueError, match=r"'count' must have shape \[N\]"):
        quantile_strata(torch.ones(2, 2), 2)
    with pytest.raises(ValueError, match="'num_strata' must be an int >= 1"):
        quantile_strata(torch.ones(2), 0)
