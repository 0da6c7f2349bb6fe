"""Every loss function of graphrec, as plain functions.

Models do not compute their own training loss; components with an auxiliary
objective (:meth:`auxiliary_loss`) build it from the functions here. This
module depends on torch only, so every layer of the package may import it.
"""
from __future__ import annotations

import math
from typing import Iterable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ['bpr_loss', 'bce_loss', 'l2_loss', 'info_nce', 'kl_to_uniform',
           'scenario_repeat_loss']


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
    if (neg_score.dim() == pos_score.dim() + 1
            and neg_score.shape[:-1] == pos_score.shape):
        # Each positive against each of its K negatives.
        pos_score = pos_score.unsqueeze(-1).expand_as(neg_score)
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


def info_nce(anchor: Tensor, positive: Tensor, temperature: float = 0.2,
             negative_weight: Optional[Tensor] = None,
             normalize: bool = True) -> Tensor:
    r"""InfoNCE with in-batch negatives (van den Oord et al., 2018), with an
    optional weight on each negative (MCLMR's bias-aware contrastive
    learning weighs negatives by confounder):

    .. math::
        \mathcal{L} = -\frac{1}{N} \sum_{n=1}^{N} \log
        \frac{\exp(s_{nn} / \tau)}{\exp(s_{nn} / \tau) + \sum_{m \neq n}
        w_{nm} \exp(s_{nm} / \tau)}, \qquad
        s_{nm} = \frac{a_n^\top p_m}{\|a_n\| \|p_m\|},

    row :math:`n` of :obj:`anchor` paired with row :math:`n` of
    :obj:`positive`, the other rows of :obj:`positive` its negatives. With
    :math:`w = 1` (or :obj:`None`) it is plain InfoNCE, a cross-entropy over
    the :math:`N` rows; the diagonal of :obj:`negative_weight` is ignored.

    Args:
        anchor (Tensor): :obj:`[N, D]`.
        positive (Tensor): :obj:`[N, D]`.
        temperature (float, optional): :math:`\tau > 0`.
            (default: :obj:`0.2`)
        negative_weight (Tensor, optional): Non-negative :math:`w`
            :obj:`[N, N]`. (default: :obj:`None`, all ones)
        normalize (bool, optional): Cosine similarity; :obj:`False` uses the
            raw dot product. (default: :obj:`True`)
    """
    if anchor.dim() != 2 or anchor.shape != positive.shape:
        raise ValueError(f"'anchor' and 'positive' must have the same shape "
                         f"[N, D] (got {list(anchor.shape)} and "
                         f"{list(positive.shape)})")
    if not temperature > 0:
        raise ValueError(f"'temperature' must be > 0 (got {temperature})")
    if normalize:
        anchor = F.normalize(anchor, dim=-1)
        positive = F.normalize(positive, dim=-1)
    sim = anchor.matmul(positive.t()) / temperature  # [N, N]
    pos = sim.diagonal()
    if negative_weight is None:
        return (torch.logsumexp(sim, dim=-1) - pos).mean()
    n = sim.size(0)
    if negative_weight.shape != (n, n):
        raise ValueError(f"'negative_weight' must have shape [{n}, {n}] "
                         f"(got {list(negative_weight.shape)})")
    if bool((negative_weight < 0).any()):
        raise ValueError("'negative_weight' must be non-negative "
                         f"(got min {float(negative_weight.min())})")
    # Weights multiply exp terms; a zero weight drops a negative, so this
    # sums exp(sim - max) * weight instead of adding log(weight).
    eye = torch.eye(n, dtype=torch.bool, device=sim.device)
    weight = torch.where(eye, torch.ones_like(sim),
                         negative_weight.to(sim.dtype))
    top = sim.detach().amax(dim=-1, keepdim=True)
    denom = (torch.exp(sim - top) * weight).sum(dim=-1)
    return (top.squeeze(-1) + torch.log(denom) - pos).mean()


def kl_to_uniform(prob: Tensor) -> Tensor:
    r"""KL divergence of assignments to the uniform prior over :math:`K`
    classes, averaged over samples (MUSENET, Xu et al., WSDM 2023, Eq. 12):

    .. math::
        \mathcal{D}_{KL} = \frac{1}{N} \sum_{i=1}^{N} \sum_{k=1}^{K}
            a_{k,i} (\log a_{k,i} + \log K),

    with :math:`0 \log 0 = 0`.

    Args:
        prob (Tensor): Assignments :obj:`[N, K]`, rows summing to one.
    """
    if prob.dim() < 1 or prob.size(-1) < 1:
        raise ValueError(f"'prob' must have shape [N, K] (got "
                         f"{list(prob.shape)})")
    k = prob.size(-1)
    log = torch.where(prob > 0, prob.clamp_min(1e-30).log(),
                      torch.zeros_like(prob))
    return (prob * (log + math.log(k))).sum(-1).mean()


def scenario_repeat_loss(repeat_share: Tensor, p_repeat: Tensor,
                         assignment: Tensor) -> Tensor:
    r"""MUSENET's auxiliary repeat loss (Eq. 10, as a squared error): the
    user's share of repeat behaviors :math:`r_i` against the propensity
    mixed over scenarios,

    .. math::
        \mathcal{L}_A = \frac{1}{N} \sum_{i=1}^{N}
            \Big(r_i - \sum_{k=1}^{K} p^k_{r,i}\, a_{k,i}\Big)^2.

    Args:
        repeat_share (Tensor): :math:`r` :obj:`[N]` in :math:`[0, 1]`.
        p_repeat (Tensor): Per-scenario repeat probabilities :obj:`[N, K]`.
        assignment (Tensor): Scenario assignments :obj:`[N, K]`.
    """
    if p_repeat.shape != assignment.shape or repeat_share.shape != \
            p_repeat.shape[:-1]:
        raise ValueError(f"'repeat_share' [N], 'p_repeat' and 'assignment' "
                         f"[N, K] must agree (got "
                         f"{list(repeat_share.shape)}, "
                         f"{list(p_repeat.shape)}, "
                         f"{list(assignment.shape)})")
    mixed = (p_repeat * assignment).sum(-1)
    return (repeat_share.to(mixed.dtype) - mixed).pow(2).mean()
