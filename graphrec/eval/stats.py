r"""Paired significance tests and user groups for comparing models.

Both work on per-user metric values (see the :obj:`per_user` option of
:func:`~graphrec.eval.evaluate_ranking`), so a comparison is paired on the
same test users.
"""
from __future__ import annotations

import math
from typing import Dict, List, Sequence, Tuple

import torch
from torch import Tensor

from graphrec.data.dataset import MultiBehaviorDataset

__all__ = ['paired_permutation_test', 'sparsity_groups', 'group_means']


def paired_permutation_test(a: Tensor, b: Tensor,
                            num_permutations: int = 10000,
                            seed: int = 0) -> Dict[str, float]:
    r"""Two-sided paired sign-flip permutation test of :math:`H_0`: the
    per-user differences :math:`d_u = a_u - b_u` are symmetric around zero.

    The statistic is :math:`|\bar{d}|`; each permutation flips the sign of
    every :math:`d_u` with probability 1/2, and

    .. math::
        p = \frac{1 + |\{\pi : |\bar{d}^{\pi}| \ge |\bar{d}|\}|}
                 {1 + n_\pi},

    which is never 0 (the observed assignment counts as one permutation).
    It makes no normality assumption, suits bounded metrics such as HR@K
    and NDCG@K, and needs nothing beyond torch. Users where either value is
    NaN are left out.

    Args:
        a (Tensor): Per-user values of model A :obj:`[N]`.
        b (Tensor): Per-user values of model B :obj:`[N]`, same users.
        num_permutations (int): Random sign flips. (default: :obj:`10000`)
        seed (int): Seed of the flips. (default: :obj:`0`)

    Returns:
        :obj:`{'mean_diff', 'p_value', 'n', 't'}`, with :obj:`t` the paired
        t statistic :math:`\bar{d} / (s_d / \sqrt{n})` for reference.

    Example:
        >>> a = torch.tensor([1., 1., 1., 0.])
        >>> b = torch.tensor([0., 0., 0., 0.])
        >>> paired_permutation_test(a, b)['mean_diff']
        0.75
    """
    a = torch.as_tensor(a, dtype=torch.float64).detach().cpu().view(-1)
    b = torch.as_tensor(b, dtype=torch.float64).detach().cpu().view(-1)
    if a.numel() != b.numel():
        raise ValueError(f"'a' and 'b' must hold the same users (got "
                         f"{a.numel()} and {b.numel()} values)")
    if not isinstance(num_permutations, int) or num_permutations <= 0:
        raise ValueError(f"'num_permutations' must be a positive int (got "
                         f"{num_permutations!r})")
    keep = ~(torch.isnan(a) | torch.isnan(b))
    d = (a - b)[keep]
    n = d.numel()
    if n == 0:
        raise ValueError("'a' and 'b' have no user with values in both")
    observed = float(d.mean())
    sd = float(d.std()) if n > 1 else 0.0
    t = (observed / (sd / math.sqrt(n)) if sd > 0 else
         (0.0 if observed == 0 else math.copysign(math.inf, observed)))
    gen = torch.Generator().manual_seed(seed)
    extreme, done = 0, 0
    # Compare with a tolerance so that float noise in the sums does not
    # turn exact ties (e.g. d = 0 everywhere) into non-extreme values.
    threshold = abs(observed) - 1e-12 * (1.0 + abs(observed))
    batch = max(1, (1 << 22) // n)
    while done < num_permutations:
        m = min(batch, num_permutations - done)
        signs = torch.randint(0, 2, (m, n), generator=gen,
                              dtype=torch.int8).to(torch.float64) * 2 - 1
        means = (signs @ d) / n
        extreme += int((means.abs() >= threshold).sum())
        done += m
    return {'mean_diff': observed, 'n': n, 't': t,
            'p_value': (1 + extreme) / (1 + num_permutations)}


def sparsity_groups(dataset: MultiBehaviorDataset,
                    edges: Sequence[int] = (1, 2, 4, 8, 16),
                    behavior: str = None) -> Tuple[Tensor, List[str]]:
    r"""Buckets users by their number of train interactions of
    :obj:`behavior` (the target by default), as in NMTR's study of sparse
    users.

    Bucket :math:`j` holds the users with :math:`e_j \le n_u < e_{j+1}`;
    users below :obj:`edges[0]` get bucket -1 and those at or above the last
    edge the last bucket.

    Args:
        dataset (MultiBehaviorDataset): The data.
        edges (Sequence[int]): Increasing lower edges.
            (default: :obj:`(1, 2, 4, 8, 16)`)
        behavior (str, optional): Which behavior counts.
            (default: :obj:`None`, the target)

    Returns:
        :obj:`(group [U] long, labels)`, e.g. :obj:`['1', '2-3', '4-7',
        '8-15', '16+']`.
    """
    behavior = dataset.target if behavior is None else behavior
    if behavior not in dataset.behaviors:
        raise ValueError(f"'behavior' must be one of "
                         f"{list(dataset.behaviors)} (got {behavior!r})")
    edges = list(edges)
    if (not edges or any(not isinstance(e, int) or e < 0 for e in edges)
            or any(x >= y for x, y in zip(edges, edges[1:]))):
        raise ValueError(f"'edges' must be increasing non-negative ints "
                         f"(got {edges!r})")
    count = torch.bincount(dataset.train[behavior][0],
                           minlength=dataset.num_users)
    group = torch.bucketize(count, torch.tensor(edges), right=True) - 1
    labels = []
    for j, lo in enumerate(edges):
        if j + 1 == len(edges):
            labels.append(f'{lo}+')
        elif edges[j + 1] - lo == 1:
            labels.append(str(lo))
        else:
            labels.append(f'{lo}-{edges[j + 1] - 1}')
    return group, labels


def group_means(per_user: Dict[str, Tensor], group: Tensor,
                labels: Sequence[str],
                metrics: Sequence[str]) -> List[Dict]:
    r"""Means of per-user metric values within each user group.

    Args:
        per_user (Dict[str, Tensor]): :obj:`'user'` :obj:`[N]` and metric
            values :obj:`[N]` (the :obj:`'per_user'` entry of an evaluation).
        group (Tensor): Group of every user id :obj:`[U]` (-1: no group).
        labels (Sequence[str]): Group names.
        metrics (Sequence[str]): Which metrics.

    Returns:
        One dict per group: :obj:`'group'`, :obj:`'users'` and the mean of
        each metric (NaN for an empty group).
    """
    g = group[per_user['user']]
    out = []
    for j, label in enumerate(labels):
        sel = g == j
        row = {'group': label, 'users': int(sel.sum())}
        for m in metrics:
            v = per_user[m][sel]
            v = v[~torch.isnan(v)]
            row[m] = float(v.mean()) if v.numel() else float('nan')
        out.append(row)
    return out
