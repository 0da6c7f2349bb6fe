r"""Mixture-of-experts fusion of behaviors (MCLMR's adaptive aggregation)."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

__all__ = ['MoEFusion']

#: Link indicators: dense [B, I, A], or (pair_index [2, E], value [E, A]).
Links = Union[Tensor, Tuple[Tensor, Tensor]]


class MoEFusion(torch.nn.Module):
    r"""Mixture-of-experts fusion of per-behavior embeddings into the target
    score, with a gate routed by the user-item context (MCLMR, adaptive
    aggregation module).

    Behavior :math:`b` is an expert scoring its own embeddings through a
    linear map :math:`W_b` (identity at start),
    :math:`E_b(u, i) = (W_b p^b_u)^\top q^b_i`, and a gate weighs them:

    .. math::
        s(u, i) = \sum_{b} g_b(u, i)\, (W_b p^b_u)^\top q^b_i, \qquad
        g(u, i) = \mathrm{softmax}\big(V_u p_u + V_i q_i + V_l l_{ui}
            + v_0\big),

    :math:`p_u, q_i` the backbone's (fused) user and item embeddings and
    :math:`l_{ui} \in \{0, 1\}^A` which auxiliary behaviors link the pair.

    - :obj:`gate='user'`: :math:`g_b(u)` depends on the user only, so the
      score is one matrix product of stacked vectors,
      :math:`s = [g_1(u) W_1 p^1_u; \dots]^\top [q^1_i; \dots]`
      (:meth:`score_all`);
    - :obj:`gate='pair'`: the full gate; being linear in the context, it
      still factorizes into two matrix products away from the (few) linked
      pairs, which are rescored one by one (:meth:`score_all`).

    The gate starts uniform (:math:`V = 0`, :math:`v_0 = 0`).

    Args:
        behaviors (Sequence[str]): Behaviors (experts), target last.
        embedding_dim (int): Embedding size :math:`D`. (default: :obj:`64`)
        gate (str): :obj:`'user'` or :obj:`'pair'`. (default: :obj:`'user'`)
        num_links (int): :math:`A`, link indicators of the pair gate.
            (default: :obj:`0`)

    Example:
        >>> fusion = MoEFusion(('view', 'buy'), embedding_dim=8)
        >>> fusion.gate_weights(torch.randn(5, 8)).shape
        torch.Size([5, 2])
    """
    gates = ('user', 'pair')

    def __init__(self, behaviors: Sequence[str], embedding_dim: int = 64,
                 gate: str = 'user', num_links: int = 0):
        super().__init__()
        if isinstance(behaviors, str) or not behaviors:
            raise ValueError(f"'behaviors' must be a non-empty sequence of "
                             f"names (got {behaviors!r})")
        if not isinstance(embedding_dim, int) or embedding_dim < 1:
            raise ValueError(f"'embedding_dim' must be a positive int "
                             f"(got {embedding_dim!r})")
        if gate not in self.gates:
            raise ValueError(f"'gate' must be one of {self.gates} "
                             f"(got {gate!r})")
        if not isinstance(num_links, int) or num_links < 0:
            raise ValueError(f"'num_links' must be a non-negative int "
                             f"(got {num_links!r})")
        self.behaviors = tuple(behaviors)
        self.embedding_dim, self.gate, self.num_links = (embedding_dim, gate,
                                                         num_links)
        n = len(self.behaviors)
        self.expert_weight = torch.nn.Parameter(
            torch.empty(n, embedding_dim, embedding_dim))
        self.gate_user = torch.nn.Linear(embedding_dim, n)
        self.gate_item = self.gate_link = None
        if gate == 'pair':
            self.gate_item = torch.nn.Linear(embedding_dim, n, bias=False)
            if num_links > 0:
                self.gate_link = torch.nn.Linear(num_links, n, bias=False)
        self.reset_parameters()

    @property
    def decomposable(self) -> bool:
        r"""Whether all-item scores are one matrix product."""
        return self.gate == 'user'

    def reset_parameters(self) -> None:
        r"""Experts to the identity, gates to uniform."""
        with torch.no_grad():
            self.expert_weight.copy_(torch.eye(self.embedding_dim).expand_as(
                self.expert_weight))
        for lin in (self.gate_user, self.gate_item, self.gate_link):
            if lin is not None:
                torch.nn.init.zeros_(lin.weight)
                if lin.bias is not None:
                    torch.nn.init.zeros_(lin.bias)

    def _check_links(self, links: Optional[Tensor]) -> None:
        if self.gate != 'pair' or self.gate_link is None:
            return
        if links is None or links.size(-1) != self.num_links:
            got = None if links is None else list(links.shape)
            raise ValueError(f"the pair gate needs 'links' [..., "
                             f"{self.num_links}] (got {got})")

    def gate_logits(self, user: Tensor, item: Optional[Tensor] = None,
                    links: Optional[Tensor] = None) -> Tensor:
        r"""Gate logits :obj:`[*, N_B]` of context embeddings :obj:`[*, D]`
        (and link indicators :obj:`[*, A]` for the pair gate).
        """
        out = self.gate_user(user)
        if self.gate == 'pair':
            if item is None:
                raise ValueError("the pair gate needs 'item' embeddings")
            self._check_links(links)
            out = out + self.gate_item(item)
            if self.gate_link is not None:
                out = out + self.gate_link(links.to(out.dtype))
        return out

    def gate_weights(self, user: Tensor, item: Optional[Tensor] = None,
                     links: Optional[Tensor] = None) -> Tensor:
        r"""Gate weights :math:`g` :obj:`[*, N_B]` (rows sum to one)."""
        return self.gate_logits(user, item, links).softmax(-1)

    def transform(self, users: Tensor) -> Tensor:
        r""":math:`W_b p^b_u` of stacked users :obj:`[*, N_B, D]`."""
        return torch.einsum('...bd,bed->...be', users, self.expert_weight)

    def forward(self, users: Tensor, items: Tensor, user: Tensor,
                item: Tensor, links: Optional[Tensor] = None) -> Tensor:
        r"""Fused scores of pairs.

        Args:
            users (Tensor): Per-behavior user embeddings :obj:`[*, N_B, D]`.
            items (Tensor): Per-behavior item embeddings :obj:`[*, N_B, D]`.
            user (Tensor): Gate context user embeddings :obj:`[*, D]`.
            item (Tensor): Gate context item embeddings :obj:`[*, D]`.
            links (Tensor, optional): Link indicators :obj:`[*, A]`.

        Returns:
            Scores :obj:`[*]`.
        """
        expert = (self.transform(users) * items).sum(-1)  # [*, N_B]
        return (self.gate_weights(user, item, links) * expert).sum(-1)

    def score_all(self, users: Tensor, items: Tensor, user: Tensor,
                  item: Tensor, links: Optional[Links] = None) -> Tensor:
        r"""Scores of users against all items.

        The pair gate's logits are a sum of a user part and an item part
        except on linked pairs, so the mixture factorizes (up to a shift of
        each part by its maximum):

        .. math::
            s(u, i) = \frac{\sum_b (e^{V_u p_u}_b W_b p^b_u)^\top
                              (e^{V_i q_i}_b q^b_i)}
                             {\sum_b e^{(V_u p_u)_b} e^{(V_i q_i)_b}},

        two matrix products; the few linked pairs are then rescored exactly.
        Rows whose denominator underflows fall back to :meth:`score_dense`.

        Args:
            users (Tensor): Per-behavior user embeddings :obj:`[B, N_B, D]`.
            items (Tensor): Per-behavior item embeddings :obj:`[I, N_B, D]`.
            user (Tensor): Gate context :obj:`[B, D]`.
            item (Tensor): Gate context :obj:`[I, D]`.
            links (Tensor or Tuple[Tensor, Tensor], optional): Link
                indicators of the pair gate, dense :obj:`[B, I, A]` or
                sparse :obj:`(pair_index [2, E], value [E, A])` listing the
                linked (row, item) pairs only.

        Returns:
            Scores :obj:`[B, I]`.
        """
        tu = self.transform(users)  # [B, N_B, D]
        if self.gate == 'user':
            g = self.gate_weights(user)  # [B, N_B]
            left = (g.unsqueeze(-1) * tu).flatten(1)  # [B, N_B * D]
            return left @ items.flatten(1).t()
        index, value = self._sparse_links(links)
        gu = self.gate_user(user)
        gi = self.gate_item(item)
        eu = (gu - gu.amax(-1, keepdim=True)).exp()  # [B, N_B]
        ei = (gi - gi.amax(-1, keepdim=True)).exp()  # [I, N_B]
        out = ((eu.unsqueeze(-1) * tu).flatten(1) @
               (ei.unsqueeze(-1) * items).flatten(1).t())
        den = eu @ ei.t()
        out.div_(den)
        bad = (den.amin(-1) < 1e-30).nonzero().flatten()
        if bad.numel():
            keep = torch.isin(index[0], bad)
            row_of = torch.full((user.size(0), ), -1, dtype=torch.long,
                                device=user.device)
            row_of[bad] = torch.arange(bad.numel(), device=user.device)
            dense = None
            if self.gate_link is not None:
                dense = user.new_zeros(bad.numel(), item.size(0),
                                       self.num_links)
                dense[row_of[index[0][keep]], index[1][keep]] = \
                    value[keep].to(dense.dtype)
            out[bad] = self.score_dense(users[bad], items, user[bad], item,
                                        dense)
        if index.numel() and self.gate_link is not None:
            # The linked pairs, exactly: the experts from the transformed
            # users and the gate logits from the parts computed above.
            row, col = index
            expert = (tu[row] * items[col]).sum(-1)  # [E, N_B]
            logits = gu[row] + gi[col] + self.gate_link(value.to(gu.dtype))
            out[row, col] = (logits.softmax(-1) * expert).sum(-1)
        return out

    def _sparse_links(self, links: Optional[Links]):
        self._check_links(links if torch.is_tensor(links) else
                          None if links is None else links[1])
        if links is None:
            empty = torch.zeros(2, 0, dtype=torch.long,
                                device=self.gate_user.weight.device)
            return empty, self.gate_user.weight.new_zeros(0, self.num_links)
        if torch.is_tensor(links):
            index = links.ne(0).any(-1).nonzero().t()
            return index, links[index[0], index[1]]
        return links

    def score_dense(self, users: Tensor, items: Tensor, user: Tensor,
                    item: Tensor, links: Optional[Tensor] = None) -> Tensor:
        r"""The reference all-item computation of the pair gate on a dense
        :obj:`[N_B, B, I]` tensor (links dense :obj:`[B, I, A]`).
        """
        tu = self.transform(users)
        expert = torch.stack([tu[:, b] @ items[:, b].t()
                              for b in range(len(self.behaviors))])
        logits = (self.gate_user(user).t().unsqueeze(-1) +
                  self.gate_item(item).t().unsqueeze(1))
        if self.gate_link is not None:
            self._check_links(links)
            lt = links.permute(2, 0, 1).to(logits.dtype)  # [A, B, I]
            w = self.gate_link.weight  # [N_B, A]
            for a in range(self.num_links):
                logits = logits + w[:, a].view(-1, 1, 1) * lt[a]
        return (logits.softmax(0) * expert).sum(0)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(behaviors={self.behaviors}, '
                f'embedding_dim={self.embedding_dim}, gate={self.gate!r}, '
                f'num_links={self.num_links})')
