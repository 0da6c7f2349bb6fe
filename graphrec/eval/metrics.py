r"""Ranking metrics from ranks of held-out items, and pointwise metrics.

Pointwise: AUC, GAUC and log loss of scored (user, item) pairs.

Everything here is vectorised (sorts, scatters, bincounts); nothing loops
over users, items or pairs in Python.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor

__all__ = ['ranking_metrics', 'rank_metric_names', 'auc', 'gauc', 'logloss']


def _check_ks(ks) -> Tuple[int, ...]:
    r"""Returns :obj:`ks` as a sorted tuple of distinct positive ints."""
    ok = isinstance(ks, (list, tuple)) and len(ks) > 0 and all(
        isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in ks)
    if not ok:
        raise ValueError(f"'ks' must be a non-empty sequence of positive "
                         f"ints (got {ks!r})")
    return tuple(sorted(set(ks)))


def rank_metric_names(ks: Sequence[int]) -> Tuple[str, ...]:
    r"""The metric keys of :func:`ranking_metrics`, in order.

    :obj:`hr@K`, :obj:`recall@K`, :obj:`precision@K`, :obj:`ndcg@K` for
    every :math:`K` in :obj:`ks`, then :obj:`mrr`.
    """
    names = []
    for k in _check_ks(ks):
        names += [f'hr@{k}', f'recall@{k}', f'precision@{k}', f'ndcg@{k}']
    return tuple(names + ['mrr'])


def ranking_metrics(rank: Tensor, group: Tensor, num_groups: int,
                    ks: Sequence[int] = (10, 20),
                    per_group: bool = False) -> Dict[str, float]:
    r"""Top-:math:`K` metrics from the 0-based ranks of relevant items.

    For a user :math:`u` with relevant items :math:`T_u` at 0-based ranks
    :math:`r_p` (positions in the user's ranked list, all relevant items
    ranked in one list), and :math:`h_u = |\{p \in T_u : r_p < K\}|`:

    .. math::
        \mathrm{HR@}K = [h_u > 0], \quad
        \mathrm{Recall@}K = \frac{h_u}{|T_u|}, \quad
        \mathrm{Precision@}K = \frac{h_u}{K},

        \mathrm{NDCG@}K = \frac{\sum_{p: r_p < K} 1 / \log_2(r_p + 2)}
        {\sum_{i=0}^{\min(|T_u|, K) - 1} 1 / \log_2(i + 2)}, \quad
        \mathrm{MRR} = \frac{1}{\min_p r_p + 1}.

    MRR is not truncated at any :math:`K`. Every metric is averaged over the
    groups (users) that have at least one relevant item; computed in
    float64 on the CPU so that the result does not depend on the device.

    Args:
        rank (Tensor): 0-based rank of every relevant item :obj:`[P]`.
        group (Tensor): The group (user position) of every relevant item
            :obj:`[P]`, in :obj:`[0, num_groups)`.
        num_groups (int): Number of groups :math:`G`.
        ks (Sequence[int]): Cut-offs :math:`K`. (default: :obj:`(10, 20)`)
        per_group (bool): Return each group's value, a float64 tensor
            :obj:`[G]` per metric (NaN for a group without relevant items),
            instead of the mean. (default: :obj:`False`)

    Returns:
        A dict with the keys of :func:`rank_metric_names` (NaN when no
        group has a relevant item) and :obj:`'users'`, the number of groups
        averaged over.

    Example:
        >>> ranking_metrics(torch.tensor([0, 3]), torch.tensor([0, 1]), 2,
        ...                 ks=(1,))['hr@1']
        0.5
    """
    ks = _check_ks(ks)
    rank = rank.detach().cpu().long().view(-1)
    group = group.detach().cpu().long().view(-1)
    if rank.numel() != group.numel():
        raise ValueError(f"'rank' and 'group' must have the same number of "
                         f"entries (got {rank.numel()} and {group.numel()})")
    count = torch.bincount(group, minlength=num_groups)[:num_groups]
    has = count > 0
    users = int(has.sum())
    out: Dict[str, float] = {}

    def mean(values: Tensor):
        if per_group:
            return torch.where(has, values, float('nan'))
        if users == 0:
            return float('nan')
        return float(values[has].mean())

    gain = 1.0 / torch.log2(rank.double() + 2.0)
    cnt = count.double()
    for k in ks:
        hit = rank < k
        hits = cnt.new_zeros(num_groups).index_add_(0, group, hit.double())
        dcg = cnt.new_zeros(num_groups).index_add_(
            0, group, torch.where(hit, gain, gain.new_zeros(())))
        discount = 1.0 / torch.log2(
            torch.arange(k, dtype=torch.float64) + 2.0)
        idcg_table = torch.cat([discount.new_zeros(1), discount.cumsum(0)])
        idcg = idcg_table[count.clamp(max=k)]
        out[f'hr@{k}'] = mean((hits > 0).double())
        out[f'recall@{k}'] = mean(hits / cnt.clamp(min=1))
        out[f'precision@{k}'] = mean(hits / k)
        out[f'ndcg@{k}'] = mean(dcg / idcg.clamp(min=1e-300))
    best = torch.full((num_groups, ), torch.iinfo(torch.long).max,
                      dtype=torch.long)
    best.scatter_reduce_(0, group, rank, reduce='amin')
    out['mrr'] = mean(1.0 / (best.clamp(max=2**52).double() + 1.0))
    out['users'] = users
    return out


def _as_vector(name: str, x, like: Optional[Tensor] = None) -> Tensor:
    if not isinstance(x, Tensor):
        x = torch.as_tensor(x)
    if x.dim() != 1:
        raise ValueError(f"'{name}' must be a 1-D tensor (got shape "
                         f"{list(x.shape)})")
    if like is not None and x.numel() != like.numel():
        raise ValueError(f"'{name}' must have {like.numel()} entries like "
                         f"'scores' (got {x.numel()})")
    return x


def _check_labels(labels: Tensor) -> Tensor:
    labels = labels.detach()
    if labels.numel() and not bool(((labels == 0) | (labels == 1)).all()):
        bad = labels[(labels != 0) & (labels != 1)][0].item()
        raise ValueError(f"'labels' must be binary (0/1 or bool) "
                         f"(got the value {bad})")
    return labels.bool()


def _check_scores(scores: Tensor) -> Tensor:
    scores = scores.detach()
    if not scores.is_floating_point():
        scores = scores.double()
    if not bool(torch.isfinite(scores).all()):
        bad = scores[~torch.isfinite(scores)][0].item()
        raise ValueError(f"'scores' must be finite (got {bad})")
    return scores


def auc(scores: Tensor, labels: Tensor) -> float:
    r"""Area under the ROC curve, ties counted as one half.

    The probability that a random positive outscores a random negative:

    .. math::
        \mathrm{AUC} = \frac{\sum_{p \in +} R_p - n_+ (n_+ + 1) / 2}
        {n_+ n_-},

    with :math:`R_p` the 1-based rank of :math:`p` among all scores in
    ascending order, tied scores sharing their average rank.

    Args:
        scores (Tensor): Scores :obj:`[N]`, higher is more positive.
        labels (Tensor): Binary labels :obj:`[N]` (0/1 or bool).

    Example:
        >>> auc(torch.tensor([0.1, 0.4, 0.4, 0.8]), torch.tensor([0, 0, 1, 1]))
        0.875
    """
    scores = _check_scores(_as_vector('scores', scores))
    labels = _check_labels(_as_vector('labels', labels, scores))
    n_pos = int(labels.sum())
    n_neg = labels.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"'labels' must contain both classes for AUC (got "
                         f"{n_pos} positives and {n_neg} negatives)")
    ranks = _average_ranks(scores, torch.zeros_like(labels, dtype=torch.long))
    pos_rank = float(ranks[labels].sum())
    return (pos_rank - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def _average_ranks(scores: Tensor, group: Tensor) -> Tensor:
    r"""1-based ascending ranks within groups, ties averaged, float64."""
    n = scores.numel()
    order = scores.argsort(stable=True)
    order = order[group[order].argsort(stable=True)]
    s, g = scores[order], group[order]
    new_run = torch.ones(n, dtype=torch.bool, device=scores.device)
    new_run[1:] = (s[1:] != s[:-1]) | (g[1:] != g[:-1])
    run = new_run.long().cumsum(0) - 1
    run_len = torch.bincount(run)
    run_end = run_len.cumsum(0)  # exclusive end, global
    new_group = torch.ones(n, dtype=torch.bool, device=scores.device)
    new_group[1:] = g[1:] != g[:-1]
    pos = torch.arange(n, device=scores.device)
    group_start = torch.where(new_group, pos, pos.new_zeros(()))
    group_start = group_start.cummax(0).values
    end = (run_end[run] - group_start).double()
    ranks = torch.empty(n, dtype=torch.float64, device=scores.device)
    ranks[order] = end - (run_len[run].double() - 1.0) / 2.0
    return ranks


def gauc(scores: Tensor, labels: Tensor, groups: Tensor) -> float:
    r"""Group AUC: per-group AUC weighted by group size.

    The AUC within every group (e.g. user), averaged with weights equal to
    the group sizes; groups holding only positives or only negatives are
    skipped (their AUC is undefined).

    .. math::
        \mathrm{GAUC} = \frac{\sum_g n_g \mathrm{AUC}_g}{\sum_g n_g}

    Args:
        scores (Tensor): Scores :obj:`[N]`.
        labels (Tensor): Binary labels :obj:`[N]`.
        groups (Tensor): Integer group id of every sample :obj:`[N]`.

    Example:
        >>> gauc(torch.tensor([0.1, 0.9, 0.8, 0.2, 0.5]),
        ...      torch.tensor([0, 1, 0, 1, 1]), torch.tensor([0, 0, 1, 1, 2]))
        0.5
    """
    scores = _check_scores(_as_vector('scores', scores))
    labels = _check_labels(_as_vector('labels', labels, scores))
    groups = _as_vector('groups', groups, scores).detach()
    if groups.is_floating_point() or groups.dtype == torch.bool:
        raise ValueError(f"'groups' must hold integer ids (got dtype "
                         f"{groups.dtype})")
    _, group = torch.unique(groups, return_inverse=True)
    num = int(group.max()) + 1 if group.numel() else 0
    ranks = _average_ranks(scores, group)
    size = torch.bincount(group, minlength=num).double()
    n_pos = torch.bincount(group, weights=labels.double(), minlength=num)
    n_neg = size - n_pos
    pos_rank = torch.zeros(num, dtype=torch.float64, device=scores.device)
    pos_rank.index_add_(0, group[labels], ranks[labels])
    valid = (n_pos > 0) & (n_neg > 0)
    if not bool(valid.any()):
        raise ValueError(f"'labels' must contain both classes in at least "
                         f"one group for GAUC (got {num} groups, none mixed)")
    per = (pos_rank - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    w = size[valid]
    return float((per[valid] * w).sum() / w.sum())


def logloss(probs: Tensor, labels: Tensor, eps: float = 1e-7) -> float:
    r"""Mean binary cross-entropy of probabilities.

    Probabilities are clipped to :math:`[\epsilon, 1 - \epsilon]`:

    .. math::
        -\frac{1}{N} \sum_n y_n \log p_n + (1 - y_n) \log(1 - p_n)

    Args:
        probs (Tensor): Probabilities :obj:`[N]` in :math:`[0, 1]`.
        labels (Tensor): Binary labels :obj:`[N]`.
        eps (float): Clipping. (default: :obj:`1e-7`)

    Example:
        >>> round(logloss(torch.tensor([0.5, 0.5]), torch.tensor([0, 1])), 4)
        0.6931
    """
    probs = _as_vector('probs', probs).detach().double()
    labels = _check_labels(_as_vector('labels', labels, probs))
    if not (isinstance(eps, (int, float)) and 0 <= eps < 0.5):
        raise ValueError(f"'eps' must be a float in [0, 0.5) (got {eps!r})")
    if probs.numel() == 0:
        raise ValueError("'probs' must hold at least one probability "
                         "(got an empty tensor)")
    bad = ~((probs >= 0) & (probs <= 1))
    if bool(bad.any()):
        raise ValueError(f"'probs' must lie in [0, 1] (got "
                         f"{probs[bad][0].item()})")
    p = probs.clamp(eps, 1 - eps)
    y = labels.double()
    loss = -(y * torch.log(p) + (1 - y) * torch.log1p(-p))
    return float(loss.mean())
