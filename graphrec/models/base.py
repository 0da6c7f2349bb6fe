"""The interface every graphrec recommender implements."""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor

from graphrec.data.graph import BehaviorGraph
from graphrec.eval.evaluator import DotProductScores


def mask_pairs_(scores: Tensor, user_index: Tensor, pair_index: Tensor,
                num_users: int, value: float = float('-inf')) -> Tensor:
    r"""Sets :obj:`scores[r, i] = value` in place for every pair
    :obj:`(user_index[r], i)` of :obj:`pair_index` :obj:`[2, M]`.
    """
    if pair_index is None or pair_index.numel() == 0:
        return scores
    row_of = torch.full((num_users, ), -1, dtype=torch.long,
                        device=scores.device)
    row_of[user_index] = torch.arange(user_index.numel(),
                                      device=scores.device)
    pair_index = pair_index.to(scores.device)
    row = row_of[pair_index[0]]
    keep = row >= 0
    scores[row[keep], pair_index[1][keep]] = value
    return scores


@torch.no_grad()
def top_k(score_fn: Callable[[Tensor], Tensor], num_users: int,
          num_items: int, user_index, k: int = 10,
          exclude_index: Optional[Tensor] = None, chunk_size: int = 1024,
          device=None) -> Tuple[Tensor, Tensor]:
    r"""The top-:math:`k` items per user of a score function
    :obj:`user_index -> [B, I]`, scored in chunks of users, never
    returning a pair of :obj:`exclude_index` :obj:`[2, M]`
    (see :meth:`Recommender.recommend`).

    Returns:
        :obj:`(scores [B, k], item_index [B, k])`, best first.
    """
    if not isinstance(k, int) or not 0 < k <= num_items:
        raise ValueError(f"'k' must be an int in [1, {num_items}] "
                         f"(got {k!r})")
    user_index = torch.as_tensor(user_index, dtype=torch.long)
    if user_index.numel() and (int(user_index.min()) < 0 or int(
            user_index.max()) >= num_users):
        raise ValueError(f"'user_index' must hold ids in [0, "
                         f"{num_users - 1}] (got min "
                         f"{int(user_index.min())}, max "
                         f"{int(user_index.max())})")
    out_score, out_index = [], []
    for start in range(0, user_index.numel(), chunk_size):
        users = user_index[start:start + chunk_size].to(device)
        scores = score_fn(users).float()
        mask_pairs_(scores, users, exclude_index, num_users)
        top = torch.topk(scores, k, dim=1)
        out_score.append(top.values)
        out_index.append(top.indices)
    if not out_score:
        empty = torch.empty(0, k)
        return empty, empty.long()
    return torch.cat(out_score), torch.cat(out_index)


class Recommender(torch.nn.Module):
    r"""Base class of graphrec models.

    :meth:`forward` takes the training :class:`BehaviorGraph` and returns
    embeddings as a dict (at least :obj:`'user'` :obj:`[U, D]` and
    :obj:`'item'` :obj:`[I, D]`); :meth:`score` turns them into scores,
    for all items (full ranking) or for given items; :meth:`recommend`
    returns top-:math:`k` item ids. Losses live in
    :mod:`graphrec.losses`, not in the model.

    Args:
        num_users (int): Number of users.
        num_items (int): Number of items.
    """
    #: Whether the model has parameters to fit by gradient descent.
    trainable: bool = True
    #: Whether :meth:`score` over all items is one matrix product.
    decomposable: bool = True

    def __init__(self, num_users: int, num_items: int):
        super().__init__()
        for arg, value in (('num_users', num_users),
                           ('num_items', num_items)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"'{arg}' must be a positive int "
                                 f"(got {value!r})")
        self.num_users = num_users
        self.num_items = num_items

    def reset_parameters(self) -> None:
        r"""Resets all learnable parameters."""

    def forward(self, graph: BehaviorGraph) -> Dict[str, Tensor]:
        r"""Computes the embeddings from the training graph, at least
        :obj:`'user'` :obj:`[U, D]` and :obj:`'item'` :obj:`[I, D]`.
        """
        raise NotImplementedError

    def score(self, emb: Dict[str, Tensor], user_index: Tensor,
              item_index: Optional[Tensor] = None) -> Tensor:
        r"""Scores users against items.

        Args:
            emb (Dict[str, Tensor]): The output of :meth:`forward`.
            user_index (Tensor): Users :obj:`[B]`.
            item_index (Tensor, optional): Items :obj:`[B]` (one per user)
                or :obj:`[B, K]`; :obj:`None` scores all items, :obj:`[B, I]`.
        """
        user = emb['user'][user_index]
        if item_index is None:
            return user @ emb['item'].t()
        item = emb['item'][item_index]
        if item.dim() == user.dim() + 1:
            user = user.unsqueeze(-2)
        return (user * item).sum(dim=-1)

    def regularization(self, user_index: Tensor,
                       item_index: Tensor) -> List[Tensor]:
        r"""The tensors an L2 penalty applies to for a batch (ego
        embeddings of its users and items).
        """
        return []

    def score_factors(self, emb: Dict[str, Tensor]
                      ) -> Optional[Tuple[Tensor, Tensor]]:
        r"""Factors :obj:`(P [U, F], Q [I, F])` with :math:`P Q^\top` equal
        to the target scores of every user and item (up to float rounding),
        or :obj:`None` when :meth:`score` is not one matrix product.

        :meth:`score_fn` then scores with
        :class:`~graphrec.eval.DotProductScores`.
        The base class returns :obj:`(emb['user'], emb['item'])` when
        :meth:`score` is the dot product it defines.
        """
        if type(self).score is Recommender.score:
            return emb['user'], emb['item']
        return None

    @torch.no_grad()
    def score_fn(self, graph: BehaviorGraph) -> Callable[[Tensor], Tensor]:
        r"""A function :obj:`user_index -> scores [B, I]` for evaluation,
        computing the embeddings once; embeddings and scores are computed in
        evaluation mode whatever the model's mode, which is left as it was.
        The users may be on any device; the
        scores are on the graph's. Models with :meth:`score_factors` get a
        :class:`~graphrec.eval.DotProductScores`.
        """
        was_training = self.training
        self.eval()
        emb = self(graph)
        self.train(was_training)
        device = graph.device
        factors = self.score_factors(emb)
        if factors is not None:
            # A matrix product: the evaluator may reuse one score buffer.
            return DotProductScores(factors[0].to(device),
                                    factors[1].to(device))

        def fn(user_index: Tensor) -> Tensor:
            # Scored in evaluation mode whatever mode the model is in when
            # called (e.g. a trainer validating between epochs): plug-ins
            # score differently in training (a backdoor conditions on the
            # pair's own stratum, latent scenarios are sampled).
            was_training = self.training
            self.eval()
            try:
                with torch.no_grad():
                    return self.score(emb, user_index.to(device))
            finally:
                self.train(was_training)

        return fn

    @torch.no_grad()
    def recommend(self, graph: BehaviorGraph, user_index: Tensor,
                  k: int = 10, exclude_index: Optional[Tensor] = None,
                  chunk_size: int = 1024) -> Tuple[Tensor, Tensor]:
        r"""Top-:math:`k` items per user.

        Args:
            graph (BehaviorGraph): The training graph.
            user_index (Tensor): Users :obj:`[B]`.
            k (int): Number of items per user. (default: :obj:`10`)
            exclude_index (Tensor, optional): (user, item) pairs
                :obj:`[2, M]` never recommended, e.g. past purchases.
            chunk_size (int): Users scored at once. (default: :obj:`1024`)

        Returns:
            :obj:`(scores [B, k], item_index [B, k])`, best first.
        """
        return top_k(self.score_fn(graph), self.num_users, self.num_items,
                     user_index, k, exclude_index, chunk_size,
                     device=graph.device)

    def extra_repr(self) -> str:
        r"""The numbers of users and items, for :func:`repr`."""
        return f'num_users={self.num_users}, num_items={self.num_items}'
