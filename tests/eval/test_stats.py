import itertools

import pytest
import torch

from graphrec.eval import Evaluator
from graphrec.eval.evaluator import evaluate_ranking
from graphrec.eval.stats import (
    group_means,
    paired_permutation_test,
    sparsity_groups,
)


def exact_p(d):
    # All 2^n sign assignments, by hand.
    n = len(d)
    obs = abs(sum(d) / n)
    hits = sum(abs(sum(s * x for s, x in zip(signs, d)) / n) >= obs - 1e-12
               for signs in itertools.product([1, -1], repeat=n))
    return hits / 2**n


def test_permutation_test_matches_exhaustive_enumeration():
    a = torch.tensor([1., 1., 1., 1., 0., 1.])
    b = torch.tensor([0., 0., 1., 0., 0., 0.])
    out = paired_permutation_test(a, b, num_permutations=20000, seed=1)
    assert out['mean_diff'] == pytest.approx(4 / 6)
    assert out['n'] == 6
    # d = (1, 1, 0, 1, 0, 1): |mean| = 4/6 needs the four ones to share a
    # sign (2 ways); the zeros flip freely (4 ways): 8 of 64 patterns.
    assert exact_p([1, 1, 0, 1, 0, 1]) == pytest.approx(8 / 64)
    assert out['p_value'] == pytest.approx(8 / 64, abs=0.01)


def test_permutation_test_identical_models_and_nan_users():
    a = torch.tensor([0.5, 0.2, float('nan'), 0.1])
    out = paired_permutation_test(a, a.clone(), num_permutations=500)
    assert out['mean_diff'] == 0.0 and out['n'] == 3
    assert out['p_value'] == 1.0  # every flip is as extreme as zero
    assert out['t'] == 0.0


def test_permutation_test_detects_a_real_difference():
    gen = torch.Generator().manual_seed(0)
    b = torch.rand(400, generator=gen)
    a = b + 0.05 + 0.01 * torch.randn(400, generator=gen)
    out = paired_permutation_test(a, b, num_permutations=2000)
    assert out['p_value'] == pytest.approx(1 / 2001)  # the smallest p
    assert out['t'] > 10


def test_permutation_test_errors():
    with pytest.raises(ValueError, match="same users"):
        paired_permutation_test(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="'num_permutations'"):
        paired_permutation_test(torch.zeros(3), torch.zeros(3), 0)
    with pytest.raises(ValueError, match="no user"):
        paired_permutation_test(torch.tensor([float('nan')]),
                                torch.tensor([1.0]))


def test_sparsity_groups_by_hand(tiny):
    # tiny buys: u0 one, u1 one, u2 one; views: u0 two, u1 two, u2 one.
    group, labels = sparsity_groups(tiny, edges=(1, 2))
    assert labels == ['1', '2+']
    assert group.tolist() == [0, 0, 0]
    group, labels = sparsity_groups(tiny, edges=(0, 2, 5), behavior='view')
    assert labels == ['0-1', '2-4', '5+']
    assert group.tolist() == [1, 1, 0]
    group, _ = sparsity_groups(tiny, edges=(2, 3))
    assert group.tolist() == [-1, -1, -1]
    with pytest.raises(ValueError, match="'edges' must be increasing"):
        sparsity_groups(tiny, edges=(2, 2))
    with pytest.raises(ValueError, match="'behavior' must be one of"):
        sparsity_groups(tiny, behavior='cart')


def test_per_user_metrics_average_to_the_reported_means(tiny):
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.3], [0.7, 0.2, 0.8, 0.1],
                           [0.2, 0.3, 0.1, 0.4]])
    result = Evaluator(ks=(1, 2)).evaluate(lambda u: scores[u].clone(),
                                           tiny, per_user=True)
    per = result['per_user']
    assert per['user'].tolist() == [0, 1, 2]
    # Masked train buys: u0 item 1, u1 item 2, u2 item 0. Ranks of the test
    # items: u0 item 2 -> 0 (0.5 > 0.3 > 0.1), u1 item 0 -> 0, u2 item 3 -> 0.
    assert per['hr@1'].tolist() == [1.0, 1.0, 1.0]
    for name in ('hr@2', 'ndcg@2', 'mrr', 'recall@1'):
        assert per[name].mean().item() == pytest.approx(result[name])
    rows = group_means(per, torch.tensor([0, 1, 1]), ['a', 'b'], ['mrr'])
    assert rows == [{'group': 'a', 'users': 1, 'mrr': 1.0},
                    {'group': 'b', 'users': 2, 'mrr': 1.0}]


def test_per_user_values_by_hand():
    scores = torch.tensor([[3., 2., 1.], [1., 2., 3.]])
    out = evaluate_ranking(lambda u: scores[u], torch.tensor([[0, 1],
                                                              [1, 1]]), 3,
                           ks=(1, ), per_user=True)
    # u0: item 1 at rank 1; u1: item 1 at rank 1.
    assert out['per_user']['hr@1'].tolist() == [0.0, 0.0]
    assert out['per_user']['mrr'].tolist() == [0.5, 0.5]
