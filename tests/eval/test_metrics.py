import math

import pytest
import torch

from graphrec.eval.metrics import (
    auc,
    gauc,
    logloss,
    rank_metric_names,
    ranking_metrics,
)


def naive_auc(scores, labels):
    pos = [s for s, y in zip(scores.tolist(), labels.tolist()) if y]
    neg = [s for s, y in zip(scores.tolist(), labels.tolist()) if not y]
    total = 0.0
    for p in pos:
        for n in neg:
            total += 1.0 if p > n else 0.5 if p == n else 0.0
    return total / (len(pos) * len(neg))


def test_ranking_metrics_hand_values():
    # user 0: relevant items at ranks 0 and 4; user 1: rank 2; user 2: none
    rank = torch.tensor([4, 0, 2])
    group = torch.tensor([0, 0, 1])
    out = ranking_metrics(rank, group, 3, ks=(1, 3))
    assert out['users'] == 2  # user 2 has no relevant item: not averaged
    # K=1: user 0 hits (rank 0), user 1 misses
    assert out['hr@1'] == pytest.approx(0.5)
    assert out['recall@1'] == pytest.approx((1 / 2 + 0) / 2)
    assert out['precision@1'] == pytest.approx((1 + 0) / 2)
    assert out['ndcg@1'] == pytest.approx((1 / 1 + 0) / 2)
    # K=3: user 0 has 1 hit of 2 (rank 0); user 1 hits at rank 2
    assert out['hr@3'] == pytest.approx(1.0)
    assert out['recall@3'] == pytest.approx((0.5 + 1.0) / 2)
    assert out['precision@3'] == pytest.approx((1 / 3 + 1 / 3) / 2)
    idcg0 = 1 + 1 / math.log2(3)  # min(2 relevant, K=3) = 2 ideal hits
    ndcg1 = (1 / math.log2(4)) / 1.0
    assert out['ndcg@3'] == pytest.approx((1 / idcg0 + ndcg1) / 2)
    # MRR: best ranks 0 and 2 -> (1/1 + 1/3) / 2
    assert out['mrr'] == pytest.approx((1 + 1 / 3) / 2)
    assert list(out)[:-1] == list(rank_metric_names((1, 3)))


def test_ranking_metrics_no_group_is_nan_and_errors():
    out = ranking_metrics(torch.tensor([], dtype=torch.long),
                          torch.tensor([], dtype=torch.long), 4, ks=(5, ))
    assert out['users'] == 0 and math.isnan(out['hr@5'])
    with pytest.raises(ValueError, match="'rank' and 'group' must have the "
                       "same number of entries \\(got 2 and 1\\)"):
        ranking_metrics(torch.tensor([0, 1]), torch.tensor([0]), 1)
    with pytest.raises(ValueError, match="'ks' must be a non-empty sequence"
                       " of positive ints \\(got \\(0,\\)\\)"):
        rank_metric_names((0, ))


def test_auc_hand_values():
    # positives 0.35, 0.8; negatives 0.1, 0.4: pairs won 1 + 2 of 4
    assert auc(torch.tensor([0.1, 0.4, 0.35, 0.8]),
               torch.tensor([0, 0, 1, 1])) == pytest.approx(0.75)
    # tie 0.4 vs 0.4 counts one half: (0.5 + 1 + 1 + 1) / 4
    assert auc(torch.tensor([0.1, 0.4, 0.4, 0.8]),
               torch.tensor([0, 0, 1, 1])) == pytest.approx(0.875)
    # all tied: exactly chance
    assert auc(torch.ones(6), torch.tensor([0, 1, 0, 1, 1, 0])) == 0.5
    assert auc(torch.tensor([3, 2, 1]), torch.tensor([True, False, False])) \
        == 1.0


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_auc_matches_pairwise_loop(seed):
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 6, (200, ), generator=gen).float()
    labels = torch.randint(0, 2, (200, ), generator=gen)
    assert auc(scores, labels) == pytest.approx(naive_auc(scores, labels),
                                                abs=1e-12)


def test_gauc_hand_values_and_loop():
    scores = torch.tensor([0.1, 0.9, 0.8, 0.2, 0.5, 0.3, 0.3, 0.7])
    labels = torch.tensor([0, 1, 0, 1, 1, 1, 0, 0])
    groups = torch.tensor([7, 7, 3, 3, 5, 9, 9, 9])
    # group 7: AUC 1 (n=2); group 3: AUC 0 (n=2); group 5: one class,
    # skipped; group 9: positive 0.3 vs negatives 0.3 (tie), 0.7: 0.25 (n=3)
    expected = (2 * 1.0 + 2 * 0.0 + 3 * 0.25) / 7
    assert gauc(scores, labels, groups) == pytest.approx(expected)
    gen = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 4, (300, ), generator=gen).float()
    labels = torch.randint(0, 2, (300, ), generator=gen)
    groups = torch.randint(0, 25, (300, ), generator=gen)
    num = den = 0.0
    for g in groups.unique().tolist():
        sel = groups == g
        if 0 < int(labels[sel].sum()) < int(sel.sum()):
            num += int(sel.sum()) * naive_auc(scores[sel], labels[sel])
            den += int(sel.sum())
    assert gauc(scores, labels, groups) == pytest.approx(num / den,
                                                         abs=1e-12)


def test_logloss_hand_values():
    assert logloss(torch.tensor([0.9, 0.2]), torch.tensor([1, 0])) == \
        pytest.approx(-(math.log(0.9) + math.log(0.8)) / 2)
    # clipped at eps: -log(1e-7) for both confidently wrong predictions
    assert logloss(torch.tensor([0.0, 1.0]), torch.tensor([1, 0])) == \
        pytest.approx(-math.log(1e-7))
    assert logloss(torch.tensor([0.5]), torch.tensor([1]), eps=0.0) == \
        pytest.approx(math.log(2))


def test_pointwise_errors():
    s, y = torch.tensor([0.2, 0.7]), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="'scores' must be a 1-D tensor "
                       "\\(got shape \\[1, 2\\]\\)"):
        auc(s.view(1, 2), y)
    with pytest.raises(ValueError, match="'labels' must have 2 entries like "
                       "'scores' \\(got 3\\)"):
        auc(s, torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="'labels' must be binary .*got the "
                       "value 2"):
        auc(s, torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="'scores' must be finite \\(got "
                       "nan\\)"):
        auc(torch.tensor([0.1, float('nan')]), y)
    with pytest.raises(ValueError, match="'labels' must contain both classes"
                       " for AUC \\(got 2 positives and 0 negatives\\)"):
        auc(s, torch.tensor([1, 1]))
    with pytest.raises(ValueError, match="'groups' must hold integer ids "
                       "\\(got dtype torch.float32\\)"):
        gauc(s, y, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="both classes in at least one group"
                       " for GAUC \\(got 2 groups, none mixed\\)"):
        gauc(s, y, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="'eps' must be a float in \\[0, "
                       "0.5\\) \\(got 0.5\\)"):
        logloss(s, y, eps=0.5)
    with pytest.raises(ValueError, match="'probs' must hold at least one "
                       "probability"):
        logloss(torch.tensor([]), torch.tensor([]))
    with pytest.raises(ValueError, match="'probs' must lie in \\[0, 1\\] "
                       "\\(got 1.5\\)"):
        logloss(torch.tensor([0.5, 1.5]), y)
