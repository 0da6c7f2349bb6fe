r"""Bias-aware contrastive alignment of behavior views (MCLMR) and the
popularity / activity strata used as observed confounders.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence, Union

import torch
from torch import Tensor

from graphrec.losses import info_nce

__all__ = ['BiasAwareContrastive', 'confounder_weight', 'quantile_strata',
           'popularity_strata', 'activity_strata']

Views = Union[Mapping[str, Tensor], Sequence[Tensor]]


def quantile_strata(count: Tensor, num_strata: int) -> Tensor:
    r"""Quantile strata of a count (item popularity, user activity):
    stratum :math:`\lfloor S \cdot |\{j : c_j < c_i\}| / N \rfloor`, so
    :math:`0` is the least and :math:`S - 1` at most the most popular.

    Equal counts always share a stratum (a stratum is a function of the
    count, whatever the order of the entries), so heavy ties at low counts
    can leave some strata empty and others larger than :math:`N / S`.

    Args:
        count (Tensor): Counts :obj:`[N]` (any real dtype).
        num_strata (int): Number of strata :math:`S \geq 1`.

    Returns:
        :obj:`[N]` long strata in :math:`[0, S)`.

    Example:
        >>> quantile_strata(torch.tensor([5, 0, 2, 2]), 2)
        tensor([1, 0, 0, 0])
    """
    if not isinstance(count, Tensor):
        raise TypeError(f"'count' must be a tensor "
                        f"(got {type(count).__name__})")
    if count.dim() != 1:
        raise ValueError(f"'count' must have shape [N] "
                         f"(got {list(count.shape)})")
    if not isinstance(num_strata, int) or isinstance(num_strata, bool) \
            or num_strata < 1:
        raise ValueError(f"'num_strata' must be an int >= 1 "
                         f"(got {num_strata!r})")
    n = count.numel()
    if n == 0:
        return count.new_zeros(0, dtype=torch.long)
    ordered = torch.sort(count).values
    below = torch.searchsorted(ordered, count, right=False)  # #{c_j < c_i}
    return torch.div(below * num_strata, n, rounding_mode='floor')


def popularity_strata(count: Tensor, num_strata: int) -> Tensor:
    r"""Item popularity strata: :func:`quantile_strata` of the items'
    interaction counts :obj:`[I]` (:math:`0` the long tail).
    """
    return quantile_strata(count, num_strata)


def activity_strata(count: Tensor, num_strata: int) -> Tensor:
    r"""User activity strata: :func:`quantile_strata` of the users'
    interaction counts :obj:`[U]` (:math:`0` the least active).
    """
    return quantile_strata(count, num_strata)


def confounder_weight(confounder: Tensor, gamma: float, delta: float,
                      index: Optional[Tensor] = None) -> Tensor:
    r"""The negative weights of :class:`BiasAwareContrastive`:

    .. math::
        w_{nm} = \begin{cases} 1 + \gamma & c_n \neq c_m \\
        \delta & c_n = c_m \\ 0 & \text{same entity } (x_n = x_m,
        n \neq m). \end{cases}

    Args:
        confounder (Tensor): Strata or scenarios :math:`c` :obj:`[N]`.
        gamma (float): Extra push for different-confounder negatives.
        delta (float): Weight of same-confounder negatives.
        index (Tensor, optional): Entity ids :math:`x` :obj:`[N]`; rows of
            the same entity are never negatives of each other.
            (default: :obj:`None`)

    Returns:
        :obj:`[N, N]` (the diagonal is unused by
        :func:`~graphrec.losses.info_nce`).
    """
    same = confounder.unsqueeze(0) == confounder.unsqueeze(1)
    weight = torch.where(same, torch.full_like(same, delta, dtype=torch.float),
                         torch.full_like(same, 1.0 + gamma,
                                         dtype=torch.float))
    if index is not None:
        weight = weight.masked_fill(index.unsqueeze(0) == index.unsqueeze(1),
                                    0.0)
    return weight


class BiasAwareContrastive(torch.nn.Module):
    r"""MCLMR's bias-aware contrastive alignment of behavior views: InfoNCE
    that pulls together the representations of the same user (or user-item
    pair) under an auxiliary behavior and under the target behavior, with
    in-batch negatives weighted by confounder (:func:`confounder_weight`):
    negatives of a different stratum or scenario are pushed apart harder
    (:math:`1 + \gamma`), negatives of the same one, likely false negatives,
    are down-weighted (:math:`\delta < 1`).

    .. math::
        \mathcal{L} = \lambda \frac{1}{|\mathcal{A}|}
        \sum_{b \in \mathcal{A}}
        \mathrm{InfoNCE}_w\big(g(z^b), g(z^t)\big)

    with :math:`z^b` :obj:`[N, D]` the view of behavior :math:`b`,
    :math:`t` the target, :math:`g` an optional projection head and
    :math:`\mathrm{InfoNCE}_w` :func:`~graphrec.losses.info_nce` (anchor the
    auxiliary view, negatives the other rows of the target view). Every
    auxiliary view is paired with the target view rather than all pairs of
    views: the target representation is what is ranked, and :math:`|
    \mathcal{A}|` terms keep the cost linear in the number of behaviors.
    With :obj:`symmetric=True` each term also runs with the views swapped
    (averaged). Without a confounder all weights are 1 (plain InfoNCE).

    The MCLMR summary available here gives no values for :math:`\gamma,
    \delta`; the defaults are ours, to be chosen on validation.

    Args:
        temperature (float, optional): :math:`\tau`. (default: :obj:`0.2`)
        weight (float, optional): Loss weight :math:`\lambda`.
            (default: :obj:`0.1`)
        gamma (float, optional): :math:`\gamma \geq 0`.
            (default: :obj:`0.5`)
        delta (float, optional): :math:`\delta \geq 0`.
            (default: :obj:`0.5`)
        symmetric (bool, optional): Average both directions.
            (default: :obj:`False`)
        embedding_dim (int, optional): Input size :math:`D`, needed for the
            projection head. (default: :obj:`None`)
        projection_dim (int, optional): Width of the projection head
            :math:`g(z) = W_2 \mathrm{ELU}(W_1 z)` (:math:`D \to P \to D`),
            shared by all views; :obj:`0` for none. (default: :obj:`0`)

    Example:
        >>> loss_fn = BiasAwareContrastive(temperature=0.2, weight=0.1)
        >>> loss = loss_fn({'view': zv, 'cart': zc, 'buy': zb},
        ...                confounder=activity_strata(count, 4)[users])
    """
    def __init__(self, temperature: float = 0.2, weight: float = 0.1,
                 gamma: float = 0.5, delta: float = 0.5,
                 symmetric: bool = False,
                 embedding_dim: Optional[int] = None,
                 projection_dim: int = 0):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"'temperature' must be > 0 "
                             f"(got {temperature})")
        for name, value in (('weight', weight), ('gamma', gamma),
                            ('delta', delta)):
            if not value >= 0:
                raise ValueError(f"'{name}' must be >= 0 (got {value})")
        if projection_dim and not embedding_dim:
            raise ValueError(f"'embedding_dim' is needed for a projection "
                             f"head (got projection_dim={projection_dim}, "
                             f"embedding_dim={embedding_dim})")
        self.temperature, self.weight = float(temperature), float(weight)
        self.gamma, self.delta = float(gamma), float(delta)
        self.symmetric = symmetric
        self.embedding_dim, self.projection_dim = embedding_dim, projection_dim
        self.projection = None
        if projection_dim:
            self.projection = torch.nn.Sequential(
                torch.nn.Linear(embedding_dim, projection_dim),
                torch.nn.ELU(),
                torch.nn.Linear(projection_dim, embedding_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        r"""Resets the projection head (if any)."""
        if self.projection is not None:
            for m in self.projection:
                if isinstance(m, torch.nn.Linear):
                    m.reset_parameters()

    def negative_weight(self, confounder: Optional[Tensor],
                        index: Optional[Tensor] = None) -> Optional[Tensor]:
        r"""The :obj:`[N, N]` negative weights, or :obj:`None` (all ones)
        without confounder and index.
        """
        if confounder is None:
            if index is None:
                return None
            confounder = torch.zeros_like(index)
            return confounder_weight(confounder, 0.0, 1.0, index)
        return confounder_weight(confounder, self.gamma, self.delta, index)

    def forward(self, views: Views, confounder: Optional[Tensor] = None,
                index: Optional[Tensor] = None) -> Tensor:
        r"""The weighted loss :math:`\mathcal{L}` (already multiplied by
        :obj:`weight`).

        Args:
            views (Dict[str, Tensor] or List[Tensor]): At least two views
                :obj:`[N, D]` of the same :math:`N` users or pairs, the
                target view last (a dict in behavior order, target last).
            confounder (Tensor, optional): Stratum or scenario per row
                :obj:`[N]`. (default: :obj:`None`)
            index (Tensor, optional): Entity id per row :obj:`[N]`; repeated
                entities are not negatives of each other.
                (default: :obj:`None`)
        """
        if isinstance(views, Mapping):
            views = list(views.values())
        elif isinstance(views, Tensor) or not isinstance(views, Sequence):
            raise TypeError(f"'views' must be a dict or a list of tensors "
                            f"(got {type(views).__name__})")
        views = list(views)
        if len(views) < 2:
            raise ValueError(f"'views' must hold at least two views "
                             f"(got {len(views)})")
        shape = views[-1].shape
        if len(shape) != 2 or any(v.shape != shape for v in views):
            raise ValueError(f"every view must have the shape [N, D] of the "
                             f"target view (got "
                             f"{[list(v.shape) for v in views]})")
        for name, value in (('confounder', confounder), ('index', index)):
            if value is not None and value.shape != (shape[0], ):
                raise ValueError(f"'{name}' must have shape [{shape[0]}] "
                                 f"(got {list(value.shape)})")
        if self.projection is not None:
            views = [self.projection(v) for v in views]
        weight = self.negative_weight(confounder, index)
        target, terms = views[-1], []
        for view in views[:-1]:
            term = info_nce(view, target, self.temperature, weight)
            if self.symmetric:
                swapped = None if weight is None else weight.t()
                term = 0.5 * (term + info_nce(target, view, self.temperature,
                                              swapped))
            terms.append(term)
        return self.weight * torch.stack(terms).mean()

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(temperature={self.temperature}, '
                f'weight={self.weight}, gamma={self.gamma}, '
                f'delta={self.delta}, projection_dim={self.projection_dim})')
