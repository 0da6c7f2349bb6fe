import pytest
import torch

from graphrec.data import NegativeSampler, pair_keys, viewed_not_bought


def test_negatives_avoid_positives_and_excluded(tiny):
    pos = tiny.train['buy']
    sampler = NegativeSampler(3, 4, pos, exclude_index=tiny.test)
    gen = torch.Generator().manual_seed(0)
    users = torch.arange(3).repeat(200)
    neg = sampler.sample(users, num_negatives=3, generator=gen)
    assert neg.shape == (600, 3)
    keys = pair_keys(torch.stack([users.repeat_interleave(3),
                                  neg.reshape(-1)]), 4)
    forbidden = pair_keys(torch.cat([pos, tiny.test], 1), 4)
    assert not torch.isin(keys, forbidden).any()
    # Each user has exactly two allowed items; both are drawn.
    for u in range(3):
        assert neg[users == u].unique().numel() == 2


def test_negatives_are_uniform_over_allowed_items():
    # One user, 10 items, item 0 positive: the other 9 equally likely.
    sampler = NegativeSampler(1, 10, torch.tensor([[0], [0]]))
    gen = torch.Generator().manual_seed(1)
    neg = sampler.sample(torch.zeros(9000, dtype=torch.long), generator=gen)
    counts = torch.bincount(neg.view(-1), minlength=10)
    assert counts[0] == 0
    assert (counts[1:] - 1000).abs().max() < 150  # ~5 sigma


def test_dense_user_falls_back_to_exact_draw():
    pos = torch.tensor([[0] * 99, list(range(99))])  # only item 99 allowed
    sampler = NegativeSampler(1, 100, pos, max_rounds=1)
    neg = sampler.sample(torch.zeros(50, dtype=torch.long),
                         generator=torch.Generator().manual_seed(0))
    assert (neg == 99).all()


def test_user_without_allowed_items_is_an_error():
    pos = torch.tensor([[0, 0], [0, 1]])
    sampler = NegativeSampler(2, 2, pos)
    with pytest.raises(ValueError, match='user 0 has no item left'):
        sampler.sample(torch.tensor([1, 0]))


def test_hard_negatives(tiny):
    hard = viewed_not_bought(tiny)
    # viewed: u0-i0, u0-i1, u1-i1, u1-i2, u2-i3; bought: u0-i1, u1-i2,
    # u2-i0; the test pair u2-i3 stays a candidate: the model must not
    # know it (without it, i3 would be the one viewed item never drawn).
    assert sorted(map(tuple, hard.t().tolist())) == [(0, 0), (1, 1), (2, 3)]
    sampler = NegativeSampler(3, 4, tiny.train['buy'], hard_index=hard,
                              hard_ratio=1.0)
    neg = sampler.sample(torch.tensor([0, 1, 2] * 50),
                         generator=torch.Generator().manual_seed(0))
    assert (neg[0::3] == 0).all() and (neg[1::3] == 1).all()
    assert (neg[2::3] == 3).all()
    # an explicit exclusion still applies (u2's only hard candidate gone)
    sampler = NegativeSampler(3, 4, tiny.train['buy'],
                              exclude_index=tiny.test, hard_index=hard,
                              hard_ratio=1.0)
    neg = sampler.sample(torch.tensor([2] * 50),
                         generator=torch.Generator().manual_seed(0))
    assert not (neg == 0).any() and not (neg == 3).any()
    with pytest.raises(ValueError, match="'hard_ratio'"):
        NegativeSampler(3, 4, tiny.train['buy'], hard_ratio=2.0)
