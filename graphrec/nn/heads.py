"""Interaction units and NMTR's cascaded prediction heads."""
from __future__ import annotations

from typing import Mapping, Sequence, Tuple, Union

import torch
from torch import Tensor

EmbSpec = Union[Tensor, Mapping[str, Tensor]]


class InteractionUnit(torch.nn.Module):
    r"""A user-item interaction function :math:`f(p_u, q_i)` (NCF, He et
    al., WWW 2017; used per behavior by NMTR):

    - :obj:`'dot'`: :math:`p_u^\top q_i`;
    - :obj:`'gmf'`: :math:`h^\top (p_u \odot q_i)`;
    - :obj:`'mlp'`: :math:`h^\top \mathrm{MLP}([p_u; q_i])`;
    - :obj:`'neumf'`: :math:`h^\top [p_u \odot q_i; \mathrm{MLP}([p_u;
      q_i])]`.

    :obj:`'dot'` and :obj:`'gmf'` are decomposable: scoring all items is one
    matrix product. The others are scored in chunks of items.

    Args:
        kind (str): One of :obj:`'dot'`, :obj:`'gmf'`, :obj:`'mlp'`,
            :obj:`'neumf'`.
        embedding_dim (int): Input size :math:`D`.
        hidden_dim (int): MLP width. (default: :obj:`64`)
        num_layers (int): MLP depth. (default: :obj:`2`)
    """
    kinds = ('dot', 'gmf', 'mlp', 'neumf')

    def __init__(self, kind: str, embedding_dim: int, hidden_dim: int = 64,
                 num_layers: int = 2):
        super().__init__()
        if kind not in self.kinds:
            raise ValueError(f"'kind' must be one of {self.kinds} "
                             f"(got {kind!r})")
        self.kind = kind
        self.embedding_dim = embedding_dim
        self.h = None
        self.mlp = None
        if kind in ('mlp', 'neumf'):
            layers, size = [], 2 * embedding_dim
            for _ in range(num_layers):
                layers += [torch.nn.Linear(size, hidden_dim),
                           torch.nn.ReLU()]
                size = hidden_dim
            self.mlp = torch.nn.Sequential(*layers)
        out = {'dot': 0, 'gmf': embedding_dim, 'mlp': hidden_dim,
               'neumf': embedding_dim + hidden_dim}[kind]
        if out:
            self.h = torch.nn.Parameter(torch.empty(out))
        self.reset_parameters()

    @property
    def decomposable(self) -> bool:
        r"""Whether :math:`f(p, q) = \tilde{p}^\top q` (:obj:`'dot'` and
        :obj:`'gmf'`).
        """
        return self.kind in ('dot', 'gmf')

    def reset_parameters(self) -> None:
        r"""Sets :math:`h` to ones for :obj:`'gmf'` (a dot product at start),
        else normal with std :math:`1/\sqrt{\dim h}`, and resets the MLP.
        """
        if self.h is not None:
            if self.kind == 'gmf':
                torch.nn.init.ones_(self.h)  # starts as a dot product
            else:
                torch.nn.init.normal_(self.h, std=self.h.numel()**-0.5)
        if self.mlp is not None:
            for m in self.mlp:
                if isinstance(m, torch.nn.Linear):
                    m.reset_parameters()

    def user_vector(self, p: Tensor) -> Tensor:
        r"""For decomposable units, :math:`f(p, q) = \tilde{p}^\top q`:
        returns :math:`\tilde{p}`.
        """
        return p if self.kind == 'dot' else p * self.h

    def forward(self, p: Tensor, q: Tensor) -> Tensor:
        r"""Scores aligned pairs: :obj:`p [..., D]`, :obj:`q [..., D]` ->
        :obj:`[...]` (broadcasting).
        """
        if self.decomposable:
            return (self.user_vector(p) * q).sum(-1)
        p, q = torch.broadcast_tensors(p, q)
        hidden = self.mlp(torch.cat([p, q], dim=-1))
        if self.kind == 'neumf':
            hidden = torch.cat([p * q, hidden], dim=-1)
        return hidden @ self.h

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.kind!r}, '
                f'embedding_dim={self.embedding_dim})')


class CascadedHeads(torch.nn.Module):
    r"""NMTR's cascaded prediction (Gao et al., ICDE 2019 / TKDE): each
    behavior's logit adds an interaction term and an item bias to the logit
    of the behavior before it,

    .. math::
        o^{1}_{ui} = f^{1}(p_u, q_i) + b^{1}_i, \qquad
        o^{r}_{ui} = o^{r-1}_{ui} + f^{r}(p_u, q_i) + b^{r}_i, \qquad
        \hat{y}^{r}_{ui} = \sigma(o^{r}_{ui}).

    :math:`p_u, q_i` may be shared by all behaviors or given per behavior
    (the embeddings of an encoder). With :obj:`cascade=False` each behavior
    has its own independent logit (the multi-task ablation).

    Args:
        behaviors (Sequence[str]): Behaviors in cascade order, target last.
        num_items (int): Number of items (for the biases).
        embedding_dim (int): Embedding size.
        unit (str): Interaction unit kind. (default: :obj:`'gmf'`)
        hidden_dim (int): MLP width for MLP units. (default: :obj:`64`)
        cascade (bool): Chain the logits. (default: :obj:`True`)
    """
    def __init__(self, behaviors: Sequence[str], num_items: int,
                 embedding_dim: int, unit: str = 'gmf',
                 hidden_dim: int = 64, cascade: bool = True):
        super().__init__()
        self.behaviors = tuple(behaviors)
        self.cascade = cascade
        self.units = torch.nn.ModuleDict({
            b: InteractionUnit(unit, embedding_dim, hidden_dim)
            for b in self.behaviors
        })
        self.bias = torch.nn.Parameter(torch.zeros(len(self.behaviors),
                                                   num_items))
        self.reset_parameters()

    @property
    def decomposable(self) -> bool:
        r"""Whether every behavior's unit is decomposable."""
        return all(u.decomposable for u in self.units.values())

    def reset_parameters(self) -> None:
        r"""Resets every unit and zeroes the item biases."""
        for unit in self.units.values():
            unit.reset_parameters()
        torch.nn.init.zeros_(self.bias)

    def _chain(self, behavior: str):
        r = self.behaviors.index(behavior)
        return self.behaviors[:r + 1] if self.cascade else (behavior, )

    @staticmethod
    def _pick(x: EmbSpec, b: str) -> Tensor:
        return x[b] if isinstance(x, Mapping) else x

    def forward(self, user: EmbSpec, item: EmbSpec, item_index: Tensor,
                behavior: str) -> Tensor:
        r"""Logits :math:`o^{r}` of aligned pairs for :obj:`behavior`.

        Args:
            user: User vectors :obj:`[B, D]` (or :obj:`[B, 1, D]`), shared or
                a dict per behavior.
            item: Item vectors of the same pairs :obj:`[B(, K), D]`.
            item_index (Tensor): Item ids :obj:`[B(, K)]` for the biases.
            behavior (str): Which behavior's logit.
        """
        out = 0
        for b in self._chain(behavior):
            r = self.behaviors.index(b)
            out = out + self.units[b](self._pick(user, b),
                                      self._pick(item, b)) + \
                self.bias[r][item_index]
        return out

    def score_all(self, user: EmbSpec, item: EmbSpec, behavior: str,
                  item_chunk: int = 4096) -> Tensor:
        r"""Logits of :obj:`behavior` for users :obj:`[B, D]` against all
        items :obj:`[I, D]`: one matrix product per behavior in the chain
        for decomposable units, item chunks otherwise.
        """
        out = 0
        for b in self._chain(behavior):
            r = self.behaviors.index(b)
            unit, p, q = self.units[b], self._pick(user, b), self._pick(
                item, b)
            if unit.decomposable:
                term = unit.user_vector(p) @ q.t()
            else:
                term = torch.cat([
                    unit(p.unsqueeze(1), q[s:s + item_chunk].unsqueeze(0))
                    for s in range(0, q.size(0), item_chunk)
                ], dim=1)
            out = out + term + self.bias[r].unsqueeze(0)
        return out

    def factors(self, user: EmbSpec, item: EmbSpec,
                behavior: str) -> Tuple[Tensor, Tensor]:
        r"""For decomposable units, :obj:`(P [U, F], Q [I, F])` with
        :math:`P Q^\top` the logits of :obj:`behavior` for all users
        :obj:`user` and items :obj:`item`: the chain's user vectors
        :math:`\tilde{p}^r_u` side by side with a column of ones, against
        the item vectors with the summed item biases,

        .. math::
            o^{r}_{ui} = [\tilde{p}^1_u; \dots; \tilde{p}^r_u; 1]^\top
                         [q^1_i; \dots; q^r_i; \textstyle\sum_{s \le r}
                         b^s_i],

        so that scoring all items is one matrix product (behaviors with the
        same item matrix share its columns, their user vectors summed).
        """
        if not self.decomposable:
            raise ValueError(f"'factors' needs decomposable units "
                             f"('dot' or 'gmf'), got {self!r}")
        left, right, bias = [], [], 0
        for b in self._chain(behavior):
            r = self.behaviors.index(b)
            p, q = self._pick(user, b), self._pick(item, b)
            vector = self.units[b].user_vector(p)
            # Behaviors sharing one item matrix (NMTR's shared embeddings)
            # share its columns: their user vectors add up.
            same = [j for j, other in enumerate(right) if other is q]
            if same:
                left[same[0]] = left[same[0]] + vector
            else:
                left.append(vector)
                right.append(q)
            bias = bias + self.bias[r]
        left.append(left[0].new_ones(left[0].size(0), 1))
        right.append(bias.unsqueeze(-1))
        return torch.cat(left, dim=-1), torch.cat(right, dim=-1)

    def __repr__(self) -> str:
        kind = next(iter(self.units.values())).kind
        return (f'{self.__class__.__name__}(behaviors={self.behaviors}, '
                f'unit={kind!r}, cascade={self.cascade})')
