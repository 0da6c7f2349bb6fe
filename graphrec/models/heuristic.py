"""Recommenders with no training: popularity, an auxiliary re-ranker,
user-based and item-based collaborative filtering.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from graphrec.data.graph import BehaviorGraph, unique_pairs
from graphrec.models.base import Recommender
from graphrec.nn.visited import _csr


def _select(scores: Tensor, item_index: Optional[Tensor]) -> Tensor:
    # All-item scores [B, I] as they are, or those of the given items [B]
    # or [B, K].
    if item_index is None:
        return scores
    item_index = item_index.to(scores.device, torch.long)
    if item_index.dim() == 1:
        return scores.gather(1, item_index.unsqueeze(-1)).squeeze(-1)
    return scores.gather(1, item_index)


class ItemPopularity(Recommender):
    r"""Scores every item by its number of train interactions of
    :obj:`behavior`, the same list for every user.

    Args:
        num_users (int): Number of users.
        num_items (int): Number of items.
        behavior (str): Which behavior counts, a name, :obj:`'target'` or
            :obj:`'all'`. (default: :obj:`'target'`)
    """
    trainable = False

    def __init__(self, num_users: int, num_items: int,
                 behavior: Union[str, Sequence[str]] = 'target'):
        super().__init__(num_users, num_items)
        self.behavior = behavior

    def forward(self, graph: BehaviorGraph) -> Dict[str, Tensor]:
        r"""Ones :obj:`[U, 1]` as user embeddings and train counts
        :obj:`[I, 1]` as item embeddings, so scores are popularity.
        """
        names = graph.resolve(self.behavior)
        count = torch.zeros(self.num_items, device=graph.device)
        for b in names:
            count += torch.bincount(graph.edge_index_dict[b][1],
                                    minlength=self.num_items)
        ones = torch.ones(self.num_users, 1, device=graph.device)
        return {'user': ones, 'item': count.unsqueeze(-1)}


class AuxiliaryReranker(Recommender):
    r"""A training-free ranker: the items a user already interacted with in
    an auxiliary behavior first, ordered by the strongest behavior seen
    (later in the cascade is stronger), then by recency where timestamps
    exist, then every item by an item prior.

    .. math::
        s_{ui} = 4 \cdot \ell_{ui} + 2 \cdot r_{ui} + p_i,

    with :math:`\ell_{ui}` the 1-based cascade position of the strongest
    auxiliary behavior linking :math:`u` and :math:`i` (0 if none),
    :math:`r_{ui} \in [0, 1]` the recency of the latest such interaction
    within the user's history, and :math:`p_i \in [0, 1)` the scaled item
    prior: train target popularity, or the smoothed conversion rate
    :math:`(n^{tgt}_i + m \bar{c}) / (n^{aux}_i + m)` of the first
    behavior into the target.

    Args:
        num_users (int): Number of users.
        num_items (int): Number of items.
        prior (str): :obj:`'popularity'` or :obj:`'conversion'`.
            (default: :obj:`'popularity'`)
        smoothing (float): :math:`m` for the conversion prior.
            (default: :obj:`10.0`)
        behaviors (Sequence[str], optional): The behaviors that count as a
            visit. (default: :obj:`None`, every auxiliary behavior)
        strength (str): :obj:`'cascade'`: :math:`\ell_{ui}` is the position
            of the strongest linking behavior (a cart before a view);
            :obj:`'visited'`: :math:`\ell_{ui} = 1` for any visit, so the
            visited items are ordered by recency and the prior alone.
            (default: :obj:`'cascade'`)
    """
    trainable = False
    decomposable = False
    priors = ('popularity', 'conversion')
    strengths = ('cascade', 'visited')

    def __init__(self, num_users: int, num_items: int,
                 prior: str = 'popularity', smoothing: float = 10.0,
                 behaviors: Optional[Sequence[str]] = None,
                 strength: str = 'cascade'):
        super().__init__(num_users, num_items)
        if prior not in self.priors:
            raise ValueError(f"'prior' must be one of {self.priors} "
                             f"(got {prior!r})")
        if strength not in self.strengths:
            raise ValueError(f"'strength' must be one of {self.strengths} "
                             f"(got {strength!r})")
        self.strength = strength
        if smoothing < 0:
            raise ValueError(f"'smoothing' must be >= 0 (got {smoothing})")
        self.prior = prior
        self.smoothing = float(smoothing)
        self.behaviors = None if behaviors is None else tuple(behaviors)

    def item_prior(self, graph: BehaviorGraph) -> Tensor:
        r"""The prior :math:`p_i`, scaled into :math:`[0, 1)`."""
        def count(b):
            return torch.bincount(graph.edge_index_dict[b][1],
                                  minlength=self.num_items).float()

        target = count(graph.target)
        if self.prior == 'conversion' and len(graph.behaviors) > 1:
            base = count(graph.behaviors[0])
            rate = target.sum() / base.sum().clamp(min=1)
            value = (target + self.smoothing * rate) / (base +
                                                        self.smoothing)
        else:
            value = target
        return value / (value.max().clamp(min=1e-12) * 1.001)

    def forward(self, graph: BehaviorGraph) -> Dict[str, Tensor]:
        r"""Computes the item prior :obj:`'prior'` :obj:`[I]`, the visited
        pairs :obj:`'pairs'` :obj:`[2, P]` and their bonus
        :math:`4 \ell_{ui} + 2 r_{ui}` as :obj:`'bonus'` :obj:`[P]`.
        """
        names = self.behaviors or graph.behaviors[:-1]
        level = {b: (graph.behaviors.index(b) + 1
                     if self.strength == 'cascade' else 1) for b in names}
        n = self.num_items
        keys, strength, time = [], [], []
        for b in names:
            edge_index = graph.edge_index_dict[b]
            keys.append(edge_index[0] * n + edge_index[1])
            strength.append(torch.full_like(edge_index[0], level[b]))
            ts = graph.timestamps.get(b)
            time.append(ts.long() if ts is not None else
                        torch.zeros_like(edge_index[0]))
        prior = self.item_prior(graph)
        if not keys:
            empty = torch.empty(2, 0, dtype=torch.long, device=graph.device)
            return {'prior': prior, 'pairs': empty,
                    'bonus': torch.empty(0, device=graph.device)}
        key, strength, time = (torch.cat(keys), torch.cat(strength),
                               torch.cat(time))
        pair, inv = torch.unique(key, return_inverse=True)
        best = torch.zeros(pair.numel(), dtype=torch.long,
                           device=key.device).scatter_reduce_(
                               0, inv, strength, 'amax')
        latest = torch.zeros_like(best).scatter_reduce_(
            0, inv, time, 'amax', include_self=False)
        user = pair // n
        lo = torch.full((self.num_users, ), torch.iinfo(torch.long).max,
                        device=key.device).scatter_reduce_(
                            0, user, latest, 'amin')
        hi = torch.zeros(self.num_users, dtype=torch.long,
                         device=key.device).scatter_reduce_(
                             0, user, latest, 'amax', include_self=False)
        span = (hi - lo)[user].clamp(min=1).double()
        recency = ((latest - lo[user]).double() / span).float()
        bonus = 4.0 * best.float() + 2.0 * recency
        return {'prior': prior, 'pairs': torch.stack([user, pair % n]),
                'bonus': bonus}

    def score(self, emb: Dict[str, Tensor], user_index: Tensor,
              item_index: Optional[Tensor] = None) -> Tensor:
        r"""Prior plus the bonus of visited pairs: all items :obj:`[B, I]`, or
        the given items :obj:`[B]` or :obj:`[B, K]`.
        """
        scores = emb['prior'].expand(user_index.numel(), -1).clone()
        row_of = torch.full((self.num_users, ), -1, dtype=torch.long,
                            device=scores.device)
        row_of[user_index] = torch.arange(user_index.numel(),
                                          device=scores.device)
        row = row_of[emb['pairs'][0]]
        keep = row >= 0
        scores.index_put_((row[keep], emb['pairs'][1][keep]),
                          emb['bonus'][keep], accumulate=True)
        return _select(scores, item_index)

    def extra_repr(self) -> str:
        r"""Adds the item prior to the base representation."""
        return (f'{super().extra_repr()}, prior={self.prior!r}, '
                f'strength={self.strength!r}')


class _Neighbourhood(Recommender):
    # Shared by the k-nearest-neighbour models: the arguments, scoring in
    # sub-chunks of users within a memory budget, and the representation.
    # Subclasses give _score_chunk(emb, user) -> [b, I] and _width, the
    # entries per user of their largest intermediate.
    trainable = False
    decomposable = False
    memory_budget: int = 1 << 25

    def __init__(self, num_users: int, num_items: int,
                 behaviors: Union[str, Sequence[str]] = 'all', k: int = 100):
        super().__init__(num_users, num_items)
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"'k' must be an int >= 1 (got {k!r})")
        self.behaviors, self.k = behaviors, k

    def score(self, emb: Dict[str, Tensor], user_index: Tensor,
              item_index: Optional[Tensor] = None) -> Tensor:
        r"""Scores of users :obj:`[B]` for all items :obj:`[B, I]`, or for
        the given items :obj:`[B]` or :obj:`[B, K]`.
        """
        device = emb['x'].device
        user = user_index.to(device, torch.long)
        # A sub-chunk's intermediate stays within a fixed budget whatever
        # chunk the caller passes.
        step = max(1, self.memory_budget // max(self._width, 1))
        scores = torch.cat([self._score_chunk(emb, user[s:s + step])
                            for s in range(0, user.numel(), step)]) \
            if user.numel() else torch.zeros(0, self.num_items,
                                             device=device)
        return _select(scores, item_index)

    def extra_repr(self) -> str:
        r"""Adds the behaviors and :math:`k` to the base representation."""
        return (f'{super().extra_repr()}, behaviors={self.behaviors!r}, '
                f'k={self.k}')


class UserKNN(_Neighbourhood):
    r"""User-based collaborative filtering (no training): a user's score for
    an item sums the target interactions of her :obj:`k` most similar
    users,

    .. math::
        s_{ui} = \sum_{v \in N_k(u)} \cos(x_u, x_v)\, y_{vi},
        \qquad \cos(x_u, x_v) = \frac{|x_u \cap x_v|}
        {\sqrt{|x_u|\,|x_v|}},

    with :math:`x_u` the set of items :math:`u` interacted with in
    :obj:`behaviors` (binary), :math:`N_k(u)` the :math:`k` users
    :math:`v \neq u` with the largest cosine (ties at the :math:`k`-th
    broken by user id, the lower first; the cosines are compared as
    computed in float32, so two equal ones that round differently, e.g.
    :math:`1/\sqrt{2n}` and :math:`3/\sqrt{18n}`, are not a tie, and a
    device whose square root rounds differently may split them
    differently; :class:`ItemKNN` compares exact keys) and
    :math:`y_{vi}` whether :math:`v` did the target on :math:`i`. Ties in
    the scores are left to the evaluator (pessimistic there).

    Scoring a chunk of :math:`B` users costs two sparse-dense products
    (:math:`X x_B^\top`, then :math:`Y^\top W`) and a top-:math:`k` over
    :obj:`[U, B]`: no user-user or item-item matrix is formed.

    Args:
        num_users (int): Number of users.
        num_items (int): Number of items.
        behaviors (str or Sequence[str]): The behaviors that make up
            :math:`x_u`: names, :obj:`'target'` or :obj:`'all'`.
            (default: :obj:`'all'`)
        k (int): Neighbours per user. (default: :obj:`100`)
    """
    #: Most similarity entries :math:`U \cdot b` computed at once.
    memory_budget: int = 1 << 25

    @property
    def _width(self) -> int:
        return self.num_users  # the [U, b] similarities of a sub-chunk

    def forward(self, graph: BehaviorGraph) -> Dict[str, Tensor]:
        r"""The binary user-item matrix :math:`X` of :obj:`behaviors`
        (:obj:`'x'` sparse COO and :obj:`'x_csr'` CSR, :obj:`[U, I]`), the
        target's transpose :obj:`'y_t'` (CSR :obj:`[I, U]`) and the users'
        inverse square root degrees :obj:`'inv_norm'` :obj:`[U]`.
        """
        n_users, n_items = self.num_users, self.num_items
        x = unique_pairs(graph.edge_index(self.behaviors).long(), n_items)
        y = unique_pairs(graph.edge_index(graph.target).long(), n_items)
        X = torch.sparse_coo_tensor(
            x, torch.ones(x.size(1), device=x.device), (n_users, n_items),
            check_invariants=False).coalesce()
        degree = torch.bincount(x[0], minlength=n_users).float()
        # CSR for the products (about 20x faster than COO on CPU), COO to
        # pick rows.
        return {'x': X, 'x_csr': X.to_sparse_csr(),
                'y_t': _csr(y.flip(0), n_items, n_users),
                'inv_norm': degree.clamp(min=1).rsqrt()}

    def _score_chunk(self, emb: Dict[str, Tensor], user: Tensor) -> Tensor:
        inv = emb['inv_norm']
        rows = emb['x'].index_select(0, user).to_dense()    # [b, I]
        sim = emb['x_csr'] @ rows.t()                        # [U, b]
        sim = sim * inv[:, None] * inv[user][None]
        sim[user, torch.arange(user.numel(), device=sim.device)] = 0.0
        k = min(self.k, max(self.num_users - 1, 1))
        # Everyone above the k-th largest similarity, then the users tied
        # with it by id (the lower first) until k (ties as computed).
        kth = sim.topk(k, dim=0).values[-1:]                 # [1, b]
        above = sim > kth
        tied = sim == kth
        room = k - above.sum(0, keepdim=True)
        keep = above | (tied & (tied.cumsum(0) <= room))
        weight = sim * keep
        return (emb['y_t'] @ weight).t()                     # [b, I]


class ItemKNN(_Neighbourhood):
    r"""Item-based collaborative filtering (no training; Sarwar et al., WWW
    2001; Deshpande and Karypis, TOIS 2004): a user's score for an item
    sums its similarities to the items of her profile, each item keeping
    only its :obj:`k` most similar items,

    .. math::
        s_{ui} = \sum_{j \in x_u} \mathrm{sim}_k(j, i), \qquad
        \mathrm{sim}(j, i) = \frac{(X^\top X)_{ji}}{\sqrt{n_j\, n_i}},

    with :math:`X` the binary user-item matrix of :obj:`behaviors`,
    :math:`x_u` the items of :math:`u`'s row, :math:`n_j` the number of
    users with :math:`j`, and :math:`\mathrm{sim}_k(j, i)` the cosine when
    :math:`i \neq j` is one of the :math:`k` items with the largest
    positive cosine to :math:`j` (ties at the :math:`k`-th broken by item
    id, the lower first, on every device), else 0. Ties in the scores are
    left to the evaluator (pessimistic there).

    :meth:`forward` builds the pruned similarity as a sparse :obj:`[I, I]`
    matrix, a chunk of items at a time (one sparse-sparse product each, so
    no dense item-item matrix is formed); scoring a chunk of users is one
    sparse product of their rows of :math:`X` with it.

    Args:
        num_users (int): Number of users.
        num_items (int): Number of items.
        behaviors (str or Sequence[str]): The behaviors that make up
            :math:`X`: names, :obj:`'target'` or :obj:`'all'`.
            (default: :obj:`'all'`)
        k (int): Neighbours per item. (default: :obj:`100`)

    Example:
        >>> model = ItemKNN(num_users=3, num_items=4, k=2)
        >>> scores = model.score(model(graph), torch.tensor([0, 1]))  # [2, 4]
    """
    #: Most entries held at once: item-item co-occurrences of an item
    #: chunk (at most :math:`c \cdot I`) in :meth:`forward`, scores
    #: :math:`b \cdot I` of a user chunk in :meth:`score`. Smaller than
    #: :class:`UserKNN`'s: a co-occurrence carries its ids, overlap, key
    #: and sort orders (about 50 bytes).
    memory_budget: int = 1 << 22

    @property
    def _width(self) -> int:
        return self.num_items  # the dense [b, I] scores of a sub-chunk

    def forward(self, graph: BehaviorGraph) -> Dict[str, Tensor]:
        r"""The binary user-item matrix :math:`X` of :obj:`behaviors`
        (:obj:`'x'`, sparse COO :obj:`[U, I]`) and the pruned similarity
        :math:`\mathrm{sim}_k` (:obj:`'sim'`, sparse CSR :obj:`[I, I]`, row
        :math:`j` holding the at most :math:`k` neighbours of item
        :math:`j`).
        """
        n_users, n_items = self.num_users, self.num_items
        x = unique_pairs(graph.edge_index(self.behaviors).long(), n_items)
        X = torch.sparse_coo_tensor(
            x, torch.ones(x.size(1), device=x.device), (n_users, n_items),
            check_invariants=False).coalesce()
        x_csr = X.to_sparse_csr()
        x_t = _csr(x.flip(0), n_items, n_users)
        count = torch.bincount(x[1], minlength=n_items).double()
        # A chunk of c items has at most c * I co-occurrences.
        step = max(1, self.memory_budget // n_items)
        parts = [self._neighbours(x_t, x_csr, count, start,
                                  min(start + step, n_items))
                 for start in range(0, n_items, step)]
        index = torch.cat([p[0] for p in parts], dim=1)
        value = torch.cat([p[1] for p in parts])
        return {'x': X, 'sim': _csr(index, n_items, n_items, value)}

    def _neighbours(self, x_t: Tensor, x_csr: Tensor, count: Tensor,
                    start: int, end: int) -> Tuple[Tensor, Tensor]:
        # The kept (j, i) pairs [2, M] of items j in [start, end), and sim.
        n_items, device = self.num_items, count.device
        crow = x_t.crow_indices()
        lo, hi = int(crow[start]), int(crow[end])
        rows = torch.sparse_csr_tensor(
            crow[start:end + 1] - lo, x_t.col_indices()[lo:hi],
            x_t.values()[lo:hi], (end - start, self.num_users),
            check_invariants=False)
        both = rows @ x_csr                        # (X^T X)[j, i], CSR
        j = torch.repeat_interleave(
            torch.arange(end - start, device=device),
            both.crow_indices().diff())            # j - start
        i = both.col_indices()
        overlap = both.values().double()
        # Rank by overlap^2 / n_i within a row: the same order as the cosine
        # but exact (one correctly rounded division of integers), so ties
        # are ties and break by item id alike on every device. Self last.
        key = overlap.square() / count[i]
        key[i == j + start] = -1.0
        # The product's columns are not sorted within a row (CPU): sort by
        # (j, i), then stably by key (descending), then stably by j.
        order = torch.sort(j * n_items + i).indices
        order = order[torch.sort(key[order], descending=True,
                                 stable=True).indices]
        order = order[torch.sort(j[order], stable=True).indices]
        per_row = torch.bincount(j, minlength=end - start)
        first = per_row.cumsum(0) - per_row
        rank = torch.arange(j.numel(), device=device) - first[j[order]]
        order = order[rank < self.k]
        order = order[key[order] > 0]
        j, i, overlap = j[order] + start, i[order], overlap[order]
        sim = overlap / (count[j] * count[i]).sqrt()
        return torch.stack([j, i]), sim.float()

    def _score_chunk(self, emb: Dict[str, Tensor], user: Tensor) -> Tensor:
        rows = emb['x'].index_select(0, user).coalesce().to_sparse_csr()
        return (rows @ emb['sim']).to_dense()                # [b, I]
