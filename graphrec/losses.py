"""Every loss function of graphrec, as plain functions.

Models do not compute their own training loss; components with an auxiliary
objective (:meth:`auxiliary_loss`) build it from the functions here. This
module depends on torch only, so every layer of the package may import it.
"""
from __future__ import annotations

from typing import Iterable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ['bpr_loss', 'bce_loss', 'l2_loss']


def bpr_loss(pos_score: Tensor, neg_score: Tensor) -> Tensor:
    r"""Bayesian personalised ranking (Rendle et al., UAI 2009),

    .. math::
        \mathcal{L} = -\frac{1}{|B|} \sum_{(u, i, j)}
            \log \sigma(\hat{y}_{ui} - \hat{y}_{uj}).

    Args:
        pos_score (Tensor): Scores of positive pairs :obj:`[B]`.
        neg_score (Tensor): Scores of negatives :obj:`[B]` or
            :obj:`[B, K]` (averaged over the :math:`K` negatives).
    """
    if neg_score.dim() == pos_score.dim() + 1:
        pos_score = pos_score.unsqueeze(-1)
    if pos_score.shape != neg_score.shape:
        raise ValueError(f"'pos_score' and 'neg_score' shapes do not match "
                         f"(got {list(pos_score.shape)} and "
                         f"{list(neg_score.shape)})")
    return -F.logsigmoid(pos_score - neg_score).mean()


def bce_loss(score: Tensor, label: Tensor,
             weight: Optional[Tensor] = None) -> Tensor:
    r"""Binary cross-entropy on logits, :math:`-y \log \sigma(s) - (1 - y)
    \log(1 - \sigma(s))`, averaged.
    """
    return F.binary_cross_entropy_with_logits(score, label.to(score.dtype),
                                              weight=weight)


def l2_loss(tensors: Iterable[Tensor], batch_size: int) -> Tensor:
    r"""The L2 penalty :math:`\frac{1}{2|B|} \sum \|x\|^2` over the batch's
    ego embeddings (LightGCN's convention).
    """
    tensors = list(tensors)
    if not tensors:
        return torch.zeros(())
    total = sum(t.pow(2).sum() for t in tensors)
    return 0.5 * total / max(int(batch_size), 1)
