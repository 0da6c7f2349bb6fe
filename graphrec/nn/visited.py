r"""Visited-aware scoring: MUSENET's repeat mechanism on behaviors.

MUSENET (Xu et al., WSDM 2023, Sec. 3.1.2 and 3.2.2) splits a prediction
into a *repeat* mode (the user wants an item consumed before) and an
*explore* mode (a new item). Here "consumed before" means "linked to the
user by an auxiliary behavior of the train graph" (viewed, carted, ...):
on tmall 83% of the train and of the test purchases are such visited items.

:func:`pair_links` / :class:`VisitLinks` give, for user-item pairs, which
auxiliary behaviors link them; :class:`VisitedAwareHead` mixes the two
modes; :func:`visited_share` is the per-user label of the auxiliary loss.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from graphrec.data.graph import BehaviorGraph
from graphrec.losses import bce_loss

__all__ = ['VisitLinks', 'pair_links', 'visited_share', 'item_statistics',
           'pair_statistics', 'VisitedAwareHead']

BehaviorSpec = Union[str, Sequence[str]]


def _check_index(name: str, index: Tensor, size: int) -> None:
    if not isinstance(index, Tensor):
        raise TypeError(f"'{name}' must be a LongTensor "
                        f"(got {type(index).__name__})")
    if index.dtype != torch.long:
        raise TypeError(f"'{name}' must have dtype torch.long "
                        f"(got {index.dtype})")
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= size):
        raise ValueError(f"'{name}' must hold ids in [0, {size}) (got "
                         f"values in [{int(index.min())}, "
                         f"{int(index.max())}])")


class VisitLinks:
    r"""Which auxiliary behaviors link user-item pairs, from a
    :class:`~graphrec.data.BehaviorGraph`, with the per-behavior CSR rows and
    sorted pair keys cached.

    For a user :math:`u`, an item :math:`i` and auxiliary behaviors
    :math:`b_1, \dots, b_A`, the link vector is

    .. math::
        \ell_{ui} = \big(\mathbb{1}[(u, i) \in \mathcal{E}_{b_1}], \dots,
        \mathbb{1}[(u, i) \in \mathcal{E}_{b_A}]\big) \in \{0, 1\}^A,

    and the pair is *visited* when :math:`\ell_{ui} \neq 0`. Given pairs are
    looked up by binary search in the sorted keys :math:`u I + i`
    (:obj:`torch.searchsorted`); for full ranking, the CSR rows of a chunk of
    users are scattered into a dense :obj:`[B, I, A]` block. Both are
    vectorised and independent of the graph's edge order.

    The target behavior is refused: a train positive would always be linked
    to itself and the links would leak the label.

    Args:
        graph (BehaviorGraph): The train graph.
        behaviors (str or Sequence[str]): Auxiliary behaviors, in the order
            of the last dimension of the output.
    """
    def __init__(self, graph: BehaviorGraph, behaviors: BehaviorSpec):
        if not isinstance(graph, BehaviorGraph):
            raise TypeError(f"'graph' must be a BehaviorGraph "
                            f"(got {type(graph).__name__})")
        names = graph.resolve(behaviors)
        if graph.target in names:
            raise ValueError(f"'behaviors' must be auxiliary behaviors "
                             f"{list(graph.behaviors[:-1])}; the target "
                             f"'{graph.target}' would leak the label (got "
                             f"{list(names)})")
        self.behaviors: Tuple[str, ...] = names
        self.num_users, self.num_items = graph.num_users, graph.num_items
        self.crow, self.col, self.keys = [], [], []
        for b in names:
            adj = graph.adjacency(b, normalize=False)  # cached CSR of R_b
            row = torch.repeat_interleave(
                torch.arange(self.num_users, device=adj.col.device),
                adj.user_degree)
            self.crow.append(adj.crow)
            self.col.append(adj.col)
            # CSR order is sorted by (user, item): the keys are sorted too.
            self.keys.append(row * self.num_items + adj.col)

    @property
    def num_links(self) -> int:
        r"""The number of auxiliary behaviors :math:`A`."""
        return len(self.behaviors)

    def __call__(self, user_index: Tensor, item_index: Optional[Tensor] = None,
                 dtype: torch.dtype = torch.float) -> Tensor:
        r"""The link indicators of pairs.

        Args:
            user_index (Tensor): Users :obj:`[B]`.
            item_index (Tensor, optional): Items :obj:`[B]` or :obj:`[B, K]`.
                (default: :obj:`None`, all items)
            dtype (torch.dtype, optional): Output dtype.
                (default: :obj:`torch.float`)

        Returns:
            :obj:`[B, A]`, :obj:`[B, K, A]`, or :obj:`[B, I, A]` for all
            items.
        """
        if isinstance(user_index, Tensor) and user_index.dim() != 1:
            raise ValueError(f"'user_index' must have shape [B] "
                             f"(got {list(user_index.shape)})")
        _check_index('user_index', user_index, self.num_users)
        if item_index is None:
            return self.dense(user_index, dtype)
        _check_index('item_index', item_index, self.num_items)
        if (item_index.dim() not in (1, 2)
                or item_index.size(0) != user_index.size(0)):
            raise ValueError(f"'item_index' must have shape "
                             f"[{user_index.size(0)}] or "
                             f"[{user_index.size(0)}, K] (got "
                             f"{list(item_index.shape)})")
        user = (user_index if item_index.dim() == 1 else
                user_index.unsqueeze(-1).expand_as(item_index))
        query = user * self.num_items + item_index
        out = []
        for keys in self.keys:
            if keys.numel() == 0:
                out.append(torch.zeros_like(query, dtype=torch.bool))
                continue
            pos = torch.searchsorted(keys, query).clamp_(max=keys.numel() - 1)
            out.append(keys[pos] == query)
        return torch.stack(out, dim=-1).to(dtype)

    def dense(self, user_index: Tensor,
              dtype: torch.dtype = torch.float) -> Tensor:
        r"""The dense links :obj:`[B, I, A]` of a chunk of users against all
        items (no input check; use :meth:`__call__`).
        """
        B, n_items, A = user_index.numel(), self.num_items, self.num_links
        out = torch.zeros(B, n_items, A, dtype=dtype,
                          device=user_index.device)
        flat = out.view(-1)
        rows = torch.arange(B, device=user_index.device)
        for a, (crow, col) in enumerate(zip(self.crow, self.col)):
            start = crow[user_index]
            count = crow[user_index + 1] - start
            total = int(count.sum())
            if total == 0:
                continue
            row = torch.repeat_interleave(rows, count, output_size=total)
            # Position of each gathered edge inside the CSR arrays.
            shift = torch.repeat_interleave(start - (count.cumsum(0) - count),
                                            count, output_size=total)
            ptr = torch.arange(total, device=row.device) + shift
            flat[(row * n_items + col[ptr]) * A + a] = 1
        return out

    def to(self, device) -> VisitLinks:
        r"""A copy with the cached tensors moved to :obj:`device`."""
        out = object.__new__(VisitLinks)
        out.__dict__.update(self.__dict__)
        for key in ('crow', 'col', 'keys'):
            out.__dict__[key] = [t.to(device) for t in self.__dict__[key]]
        return out

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_users={self.num_users}, '
                f'num_items={self.num_items}, '
                f'behaviors={list(self.behaviors)})')


def pair_links(graph: BehaviorGraph, behaviors: BehaviorSpec,
               user_index: Tensor, item_index: Optional[Tensor] = None,
               dtype: torch.dtype = torch.float) -> Tensor:
    r"""Float indicators of which auxiliary :obj:`behaviors` link each
    user-item pair (see :class:`VisitLinks`; build that once and reuse it in
    loops).

    Args:
        graph (BehaviorGraph): The train graph.
        behaviors (str or Sequence[str]): Auxiliary behaviors :math:`A`.
        user_index (Tensor): Users :obj:`[B]`.
        item_index (Tensor, optional): Items :obj:`[B]` or :obj:`[B, K]`.
            (default: :obj:`None`, all items: a dense :obj:`[B, I, A]`)
        dtype (torch.dtype, optional): Output dtype.
            (default: :obj:`torch.float`)

    Returns:
        :obj:`[B, A]`, :obj:`[B, K, A]` or :obj:`[B, I, A]`.

    Example:
        >>> links = pair_links(graph, ['view', 'cart'],
        ...                    torch.tensor([0, 1]), torch.tensor([3, 5]))
        >>> links.shape
        torch.Size([2, 2])
    """
    return VisitLinks(graph, behaviors)(user_index, item_index, dtype)


def visited_share(graph: BehaviorGraph, behaviors: BehaviorSpec,
                  fill: Optional[float] = None) -> Tensor:
    r"""Each user's observed share of train target pairs that are visited
    (linked by one of :obj:`behaviors`): MUSENET's auxiliary label
    :math:`r_u` (Eq. 10), "the fraction of items the user consumed before".

    Args:
        graph (BehaviorGraph): The train graph (held-out pairs excluded).
        behaviors (str or Sequence[str]): Auxiliary behaviors.
        fill (float, optional): The value of users without train target
            pairs. (default: :obj:`None`, the share pooled over all train
            target pairs)

    Returns:
        :obj:`[U]` float shares in :math:`[0, 1]`.
    """
    links = VisitLinks(graph, behaviors)
    user, item = graph.edge_index_dict[graph.target]
    visited = links(user.long(), item.long()).amax(dim=-1)
    total = torch.bincount(user, minlength=graph.num_users).float()
    hits = torch.zeros_like(total).index_add_(0, user.long(), visited)
    if fill is None:
        fill = float(hits.sum() / total.sum().clamp(min=1))
    elif not 0.0 <= fill <= 1.0:
        raise ValueError(f"'fill' must be in [0, 1] (got {fill})")
    share = hits / total.clamp(min=1)
    return torch.where(total > 0, share, share.new_full((), fill))


def item_statistics(graph: BehaviorGraph, smoothing: float = 10.0,
                    standardize: bool = True,
                    leave_one_out: bool = False) -> Tensor:
    r"""Fixed item features from the train graph, :obj:`[I, 2B - 1]` for
    :math:`B` behaviors: :math:`\log(1 + n^b_i)` for every behavior
    :math:`b`, then for every auxiliary behavior :math:`a` the log of the
    smoothed conversion rate into the target :math:`t`,

    .. math::
        \log \frac{n^t_i + m \bar{c}_a}{n^a_i + m}, \qquad
        \bar{c}_a = \frac{\sum_i n^t_i}{\sum_i n^a_i},

    with :math:`n^b_i` the number of users with a :math:`b` interaction
    with item :math:`i` and :math:`m` the smoothing. Counted on the given
    (train) graph only, so held-out pairs never enter.

    A train purchase is counted in its own item's :math:`n^t_i`, a held-out
    one never: a model fitted on train purchases with these features would
    learn that a purchased item has been bought at least once. With
    :obj:`leave_one_out`, the table is the one each item would have with one
    of its target interactions held out (:math:`n^t_i - 1`, at least 0;
    :math:`\bar{c}_a` unchanged), standardised with the mean and variance
    of the plain table so that the two can be mixed: the features of a
    training pair that is a train target interaction.

    Args:
        graph (BehaviorGraph): The train graph.
        smoothing (float, optional): :math:`m \geq 0`. (default: :obj:`10.0`)
        standardize (bool, optional): Zero mean and unit variance per
            column (of the plain table). (default: :obj:`True`)
        leave_one_out (bool, optional): One target interaction of every
            item left out. (default: :obj:`False`)
    """
    if not isinstance(graph, BehaviorGraph):
        raise TypeError(f"'graph' must be a BehaviorGraph "
                        f"(got {type(graph).__name__})")
    if not smoothing >= 0:
        raise ValueError(f"'smoothing' must be >= 0 (got {smoothing})")
    count = {b: torch.bincount(graph.adjacency(b, normalize=False).col,
                               minlength=graph.num_items).double()
             for b in graph.behaviors}
    target = count[graph.target]
    rates = [target.sum() / count[b].sum().clamp(min=1)
             for b in graph.behaviors[:-1]]

    def table(own: Tensor) -> Tensor:
        # 'own': the target counts to use in place of n^t.
        cols = [torch.log1p(own if b == graph.target else count[b])
                for b in graph.behaviors]
        for b, rate in zip(graph.behaviors[:-1], rates):
            cols.append(torch.log((own + smoothing * rate + 1e-12) /
                                  (count[b] + smoothing).clamp(min=1e-12)))
        return torch.stack(cols, dim=-1)

    plain = table(target)
    out = table((target - 1).clamp(min=0)) if leave_one_out else plain
    if standardize and out.size(0) > 1:  # one item: nothing to scale
        out = (out - plain.mean(0)) / plain.std(0).clamp(min=1e-12)
    return out.float()


def _ranges(start: Tensor, count: Tensor) -> Tuple[Tensor, Tensor]:
    # For B ranges [start, start + count): the range of each position and
    # the positions, concatenated.
    row = torch.repeat_interleave(
        torch.arange(start.numel(), device=start.device), count)
    offset = torch.cumsum(count, 0) - count
    pos = (torch.arange(int(count.sum()), device=start.device) -
           offset.repeat_interleave(count) + start.repeat_interleave(count))
    return row, pos


def _csr(index: Tensor, rows: int, cols: int,
         value: Optional[Tensor] = None) -> Tensor:
    # A sparse CSR matrix with ones (or 'value') at 'index' [2, E].
    if value is None:
        value = torch.ones(index.size(1), device=index.device)
    return torch.sparse_coo_tensor(index, value, (rows, cols),
                                   check_invariants=False) \
        .coalesce().to_sparse_csr()


def pair_statistics(graph: BehaviorGraph, chunk_size: int = 1024,
                    standardize: bool = True) -> Tuple[Tensor, Tensor]:
    r"""Fixed item-neighbourhood features of the *visited* user-item pairs
    (those linked by an auxiliary behavior of the train graph), for the
    repeat mode of :class:`VisitedAwareHead`: how strongly the user's
    history points at the item through other users.

    For a source behavior :math:`x`, a destination behavior :math:`y`
    (binary user-item matrices :math:`X, Y`, item counts :math:`n^x_j,
    n^y_i`) the item-to-item cosine :math:`S^{xy}_{ji} = (X^\top Y)_{ji} /
    \sqrt{n^x_j n^y_i}` ("users who did :math:`x` on :math:`j` did
    :math:`y` on :math:`i`", item-based collaborative filtering) gives the
    pair score

    .. math::
        s^{xy}_{ui} = \frac{1}{|X_u|} \sum_{j \neq i} X_{uj}
        S^{xy,-u}_{ji},

    the item :math:`i` itself left out, and the user too (:math:`S^{xy,-u}`
    counts co-occurrence in the other users only, with the same
    normalisation): otherwise a train pair of :math:`y` (a train purchase,
    the positive of training) would always look supported by its own
    user's history, and a held-out pair never. The features are
    :math:`s^{bt}` for every behavior :math:`b` into the target :math:`t`,
    then :math:`s^{aa}` for every auxiliary :math:`a`: :obj:`[E, 2B - 1]`,
    each as :math:`\log(1 + s / \bar{s})` with :math:`\bar{s}` its mean
    over the pairs. Counted on the given (train) graph only.

    :math:`S` is never formed: a chunk of users costs two sparse-dense
    products, :math:`Y^\top (X A^\top)` with :math:`A` the chunk's rows of
    :math:`X`, so memory is :math:`O((U + I) \cdot \text{chunk})`.

    Args:
        graph (BehaviorGraph): The train graph.
        chunk_size (int, optional): Users per chunk. (default: :obj:`1024`)
        standardize (bool, optional): Zero mean and unit variance per
            column over the pairs. (default: :obj:`True`)

    Returns:
        :obj:`(keys, features)`: the sorted pair keys :math:`u I + i`
        :obj:`[E]` of the visited pairs and their features
        :obj:`[E, 2B - 1]`.
    """
    if not isinstance(graph, BehaviorGraph):
        raise TypeError(f"'graph' must be a BehaviorGraph "
                        f"(got {type(graph).__name__})")
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) \
            or chunk_size < 1:
        raise ValueError(f"'chunk_size' must be a positive int "
                         f"(got {chunk_size!r})")
    n_users, n_items = graph.num_users, graph.num_items
    auxiliary, target = graph.behaviors[:-1], graph.target
    if not auxiliary:
        raise ValueError(f"pair statistics need auxiliary behaviors (the "
                         f"graph has {list(graph.behaviors)})")
    edges = {}
    for b in graph.behaviors:
        e = graph.edge_index_dict[b].long()
        edges[b] = torch.unique(e[0] * n_items + e[1])  # binary, sorted
    keys = torch.unique(torch.cat([edges[a] for a in auxiliary]))
    pairs = [(b, target) for b in graph.behaviors] + \
        [(a, a) for a in auxiliary]
    out = torch.zeros(keys.numel(), len(pairs), dtype=torch.double,
                      device=keys.device)
    pair_user = keys // n_items
    bounds = torch.searchsorted(
        pair_user, torch.arange(0, n_users + chunk_size, chunk_size,
                                device=keys.device).clamp_(max=n_users))
    for col, (x, y) in enumerate(pairs):
        xu, xi = edges[x] // n_items, edges[x] % n_items
        yu, yi = edges[y] // n_items, edges[y] % n_items
        nx = torch.bincount(xi, minlength=n_items).double()
        ny = torch.bincount(yi, minlength=n_items).double()
        du = torch.bincount(xu, minlength=n_users).double()
        inx, iny = nx.clamp(min=1).rsqrt(), ny.clamp(min=1).rsqrt()
        # sum_j X_uj n_j^{-1/2} per user
        row_reach = torch.zeros(n_users, dtype=torch.double,
                                device=keys.device).index_add_(0, xu, inx[xi])
        X = _csr(torch.stack([xu, xi]), n_users, n_items,
                 torch.ones_like(xu, dtype=torch.double))
        YT = _csr(torch.stack([yi, yu]), n_items, n_users,
                  iny[yi])
        # (X^T Y)_ii: users with both x and y on item i.
        both = torch.isin(edges[x], edges[y])
        diag = torch.bincount(xi[both], minlength=n_items).double() * iny
        xptr = torch.searchsorted(
            xu, torch.arange(n_users + 1, device=xu.device))
        for c, start in enumerate(range(0, n_users, chunk_size)):
            lo, hi = int(bounds[c]), int(bounds[c + 1])
            if lo == hi:
                continue
            end = min(start + chunk_size, n_users)
            s, t = int(xptr[start]), int(xptr[end])
            # A^T [I, C]: the chunk's X rows scaled by n_j^{-1/2} / |X_u|.
            a_val = inx[xi[s:t]] / du[xu[s:t]]
            AT = torch.zeros(n_items, end - start, dtype=torch.double,
                             device=keys.device)
            AT[xi[s:t], xu[s:t] - start] = a_val
            score = YT @ (X @ AT)  # [I, C]
            u, i = pair_user[lo:hi], keys[lo:hi] % n_items
            val = score[i, u - start] - AT[i, u - start] * diag[i]
            # Leave the user out of the co-occurrence: u's own x on j and
            # y on i would otherwise make every train y pair (a train
            # purchase, for y the target) look supported by "other" users.
            own = torch.isin(keys[lo:hi], edges[y]).double()
            reach = row_reach[u] - AT[i, u - start] * du[u]
            val = val - own * iny[i] * reach / du[u].clamp(min=1)
            # zero up to rounding (the subtractions above leave ~1e-17)
            out[lo:hi, col] = torch.where(val > 1e-12, val, 0.0)
    mean = out.mean(0).clamp(min=1e-12)
    out = torch.log1p(out / mean)
    if standardize and out.size(0) > 1:
        out = (out - out.mean(0)) / out.std(0).clamp(min=1e-12)
    return keys, out.float()


def mixture_logit(intent: Tensor, repeat_score: Tensor, explore_score: Tensor,
                  visited: Tensor) -> Tensor:
    r"""The logit of the visited-aware mixture (see
    :class:`VisitedAwareHead`), computed stably from logits:

    .. math::
        \operatorname{logit} P(y) = \log q - \log\big((1 - q) + e^{-s}\big),
        \quad (q, s) = \begin{cases} (\sigma(a), s^r) & \text{visited} \\
        (1 - \sigma(a), s^e) & \text{new,} \end{cases}

    since :math:`P(y) = q \sigma(s)` has odds :math:`q / (1 - q + e^{-s})`.

    Args:
        intent (Tensor): Repeat logits :math:`a`, broadcastable to the
            scores.
        repeat_score (Tensor): :math:`s^r`.
        explore_score (Tensor): :math:`s^e`.
        visited (Tensor): Bool, whether each pair is visited.
    """
    log_r, log_e = F.logsigmoid(intent), F.logsigmoid(-intent)
    log_q = torch.where(visited, log_r, log_e)
    log_not_q = torch.where(visited, log_e, log_r)
    score = torch.where(visited, repeat_score, explore_score)
    return log_q - torch.logaddexp(log_not_q, -score)


class VisitedAwareHead(torch.nn.Module):
    r"""MUSENET's repeat-aware mechanism (Xu et al., WSDM 2023, Eq. 5 and 9)
    on behaviors: a pair is scored in *repeat* mode when the item is already
    in the user's auxiliary history (visited), in *explore* mode otherwise.

    With user vector :math:`p_u`, item vector :math:`q_i`, link vector
    :math:`\ell_{ui} \in \{0, 1\}^A` (which auxiliary behaviors link the
    pair; see :class:`VisitLinks`) and :math:`v_{ui} = \mathbb{1}[\ell_{ui}
    \neq 0]`:

    .. math::
        a_u &= \mathrm{MLP}(p_u), \qquad P(r \mid u) = \sigma(a_u), \quad
        P(e \mid u) = 1 - \sigma(a_u)

        s^r_{ui} &= (h^r \odot p_u)^\top q_i + \ell_{ui}^\top
        (w + V p_u) + c^r, \qquad P(y \mid r) = \sigma(s^r_{ui})

        s^e_{ui} &= (h^e \odot p_u)^\top q_i + c^e, \qquad
        P(y \mid e) = \sigma(s^e_{ui})

        P(y_{ui} = 1) &= v_{ui}\, P(r \mid u)\, P(y \mid r)
        + (1 - v_{ui})\, P(e \mid u)\, P(y \mid e).

    A repeat-mode purchase is a visited item and an explore-mode purchase a
    new one, so :math:`P(y \mid r) = 0` for new items and :math:`P(y \mid e)
    = 0` for visited ones: the mixture keeps one term per pair. The link
    weights :math:`w + V p_u` let a cart link count more than a view link
    (per user). MUSENET mixes the mode scores in logit space
    (:math:`z = \mathbb{1}\, p_r s_r + (1 - \mathbb{1})(1 - p_r) s_e`); here
    the mixture is of probabilities, as in its Eq. (5).

    **Output.** :meth:`forward` and :meth:`score_all` return the *logit* of
    :math:`P(y_{ui} = 1)` (:func:`mixture_logit`): binary cross-entropy with
    logits on it is exactly the likelihood of the mixture, and since the
    logit is increasing in :math:`P(y)`, BPR and ranking on it order pairs
    by :math:`P(y)`. Both scores are decomposable, so scoring all items is
    two matrix products plus elementwise work.

    :meth:`auxiliary_loss` supervises :math:`P(r \mid u)` with the user's
    observed share of visited purchases (:func:`visited_share`), by binary
    cross-entropy (MUSENET's Eq. 10 uses a squared error).

    Args:
        embedding_dim (int): Size :math:`D` of user and item vectors.
        num_links (int): Number of auxiliary behaviors :math:`A`.
        hidden_dim (int, optional): Width of the intent MLP's hidden layer;
            :obj:`0` makes :math:`a_u` linear in :math:`p_u`.
            (default: :obj:`32`)
        user_link_weights (bool, optional): Learn the per-user part
            :math:`V p_u` of the link weights. (default: :obj:`True`)
        num_item_features (int, optional): Size :math:`F` of fixed item
            features :math:`f_i` (e.g. :func:`item_statistics`) that enter
            both mode scores linearly, :math:`f_i^\top w^r` and
            :math:`f_i^\top w^e` (zero-initialised), so that the repeat mode
            can learn how items convert from a visit into the target;
            :obj:`0` for none. (default: :obj:`0`)
        num_pair_features (int, optional): Size :math:`G` of fixed features
            :math:`g_{ui}` of visited pairs (e.g. :func:`pair_statistics`)
            that enter the repeat score linearly, :math:`g_{ui}^\top w^g`
            (zero-initialised); :obj:`0` for none. (default: :obj:`0`)

    Example:
        >>> head = VisitedAwareHead(embedding_dim=64, num_links=2)
        >>> logits = head(user, item, links)  # [B], [B, D], [B, A]
    """
    def __init__(self, embedding_dim: int, num_links: int,
                 hidden_dim: int = 32, user_link_weights: bool = True,
                 num_item_features: int = 0, num_pair_features: int = 0):
        super().__init__()
        for name, value, low in (('embedding_dim', embedding_dim, 1),
                                 ('num_links', num_links, 1),
                                 ('hidden_dim', hidden_dim, 0),
                                 ('num_item_features', num_item_features,
                                  0),
                                 ('num_pair_features', num_pair_features,
                                  0)):
            if not isinstance(value, int) or isinstance(value, bool) \
                    or value < low:
                raise ValueError(f"'{name}' must be an int >= {low} "
                                 f"(got {value!r})")
        self.embedding_dim, self.num_links = embedding_dim, num_links
        self.hidden_dim = hidden_dim
        self.num_item_features = num_item_features
        self.num_pair_features = num_pair_features
        if hidden_dim:
            self.intent = torch.nn.Sequential(
                torch.nn.Linear(embedding_dim, hidden_dim), torch.nn.Tanh(),
                torch.nn.Linear(hidden_dim, 1))
        else:
            self.intent = torch.nn.Sequential(
                torch.nn.Linear(embedding_dim, 1))
        self.repeat_weight = torch.nn.Parameter(torch.empty(embedding_dim))
        self.explore_weight = torch.nn.Parameter(torch.empty(embedding_dim))
        self.repeat_bias = torch.nn.Parameter(torch.empty(()))
        self.explore_bias = torch.nn.Parameter(torch.empty(()))
        self.link_weight = torch.nn.Parameter(torch.empty(num_links))
        self.link_proj = (torch.nn.Linear(embedding_dim, num_links,
                                          bias=False)
                          if user_link_weights else None)
        # Row 0 weighs the item features in repeat mode, row 1 in explore.
        self.feature_weight = (torch.nn.Parameter(
            torch.empty(2, num_item_features)) if num_item_features else
                               None)
        self.pair_weight = (torch.nn.Parameter(torch.empty(num_pair_features))
                            if num_pair_features else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        r"""Both mode scores start as the plain dot product :math:`p_u^\top
        q_i` (:math:`h = 1`, zero biases and link weights); the intent MLP
        gets PyTorch's default initialisation.
        """
        for m in self.intent:
            if isinstance(m, torch.nn.Linear):
                m.reset_parameters()
        torch.nn.init.ones_(self.repeat_weight)
        torch.nn.init.ones_(self.explore_weight)
        torch.nn.init.zeros_(self.repeat_bias)
        torch.nn.init.zeros_(self.explore_bias)
        torch.nn.init.zeros_(self.link_weight)
        if self.link_proj is not None:
            torch.nn.init.zeros_(self.link_proj.weight)
        if self.feature_weight is not None:
            torch.nn.init.zeros_(self.feature_weight)
        if self.pair_weight is not None:
            torch.nn.init.zeros_(self.pair_weight)

    # ------------------------------------------------------------------
    def intent_logit(self, user: Tensor) -> Tensor:
        r"""The repeat logit :math:`a_u`, :obj:`[B]`."""
        self._check_user(user)
        return self.intent(user).squeeze(-1)

    def repeat_probability(self, user: Tensor) -> Tensor:
        r"""The repeat probability :math:`P(r \mid u) = \sigma(a_u)`,
        :obj:`[B]`.
        """
        return torch.sigmoid(self.intent_logit(user))

    def link_weights(self, user: Tensor) -> Tensor:
        r"""The per-user link weights :math:`w + V p_u`, :obj:`[B, A]`."""
        out = self.link_weight.expand(user.size(0), -1)
        if self.link_proj is not None:
            out = out + self.link_proj(user)
        return out

    def _check_user(self, user: Tensor) -> None:
        if user.dim() != 2 or user.size(-1) != self.embedding_dim:
            raise ValueError(f"'user' must have shape [B, "
                             f"{self.embedding_dim}] (got "
                             f"{list(user.shape)})")

    def _check_links(self, links: Tensor, shape: Sequence[int]) -> None:
        want = list(shape) + [self.num_links]
        if list(links.shape) != want:
            raise ValueError(f"'links' must have shape {want} "
                             f"(got {list(links.shape)})")

    def _feature_scores(self, features: Optional[Tensor],
                        shape: Sequence[int]) -> Tuple[Tensor, Tensor]:
        # The repeat and explore terms f_i^T w_r, f_i^T w_e ([*shape]).
        if self.feature_weight is None:
            if features is not None:
                raise ValueError("'item_features' given, but the head was "
                                 "built with num_item_features=0")
            return 0.0, 0.0
        want = list(shape) + [self.num_item_features]
        if features is None or list(features.shape) != want:
            got = None if features is None else list(features.shape)
            raise ValueError(f"'item_features' must have shape {want} "
                             f"(got {got})")
        out = features.matmul(self.feature_weight.t())
        return out[..., 0], out[..., 1]

    def _pair_scores(self, features: Optional[Tensor],
                     shape: Sequence[int]):
        # The repeat term g_ui^T w_g ([*shape]), or 0.
        if self.pair_weight is None:
            if features is not None:
                raise ValueError("'pair_features' given, but the head was "
                                 "built with num_pair_features=0")
            return 0.0
        want = list(shape) + [self.num_pair_features]
        if features is None or list(features.shape) != want:
            got = None if features is None else list(features.shape)
            raise ValueError(f"'pair_features' must have shape {want} "
                             f"(got {got})")
        return features.matmul(self.pair_weight)

    def _scores(self, user: Tensor, item: Tensor, links: Tensor,
                features: Optional[Tensor] = None,
                pair_features: Optional[Tensor] = None
                ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        self._check_user(user)
        B, D = user.shape
        if item.dim() == 2 and list(item.shape) == [B, D]:
            def dot(h: Tensor) -> Tensor:
                return ((user * h) * item).sum(-1)
            intent = self.intent_logit(user)
            coef = self.link_weights(user)
        elif item.dim() == 3 and item.size(0) == B and item.size(-1) == D:
            def dot(h: Tensor) -> Tensor:
                return torch.einsum('bd,bkd->bk', user * h, item)
            intent = self.intent_logit(user).unsqueeze(-1)
            coef = self.link_weights(user).unsqueeze(1)
        else:
            raise ValueError(f"'item' must have shape [{B}, {D}] or "
                             f"[{B}, K, {D}] (got {list(item.shape)})")
        self._check_links(links, item.shape[:-1])
        f_r, f_e = self._feature_scores(features, item.shape[:-1])
        g_r = self._pair_scores(pair_features, item.shape[:-1])
        repeat = (dot(self.repeat_weight) + (links * coef).sum(-1)
                  + self.repeat_bias + f_r + g_r)
        explore = dot(self.explore_weight) + self.explore_bias + f_e
        return intent, repeat, explore, links.amax(dim=-1) > 0

    def forward(self, user: Tensor, item: Tensor, links: Tensor,
                base: Optional[Tensor] = None,
                item_features: Optional[Tensor] = None,
                pair_features: Optional[Tensor] = None) -> Tensor:
        r"""The logit of :math:`P(y_{ui} = 1)` for given pairs.

        Args:
            user (Tensor): User vectors :obj:`[B, D]`.
            item (Tensor): Item vectors :obj:`[B, D]` or :obj:`[B, K, D]`.
            links (Tensor): Link indicators :obj:`[B, A]` or
                :obj:`[B, K, A]` (0/1; visited when any is positive).
            base (Tensor, optional): A score of the same pairs from another
                module (e.g. a fused or cascaded logit), added to both
                :math:`s^r` and :math:`s^e`. (default: :obj:`None`)
            item_features (Tensor, optional): The items' features
                :obj:`[B, F]` or :obj:`[B, K, F]`, needed when the head
                has :obj:`num_item_features > 0`. (default: :obj:`None`)
            pair_features (Tensor, optional): The pairs' features
                :obj:`[B, G]` or :obj:`[B, K, G]` (any value on unvisited
                pairs: the repeat score is not used there), needed when the
                head has :obj:`num_pair_features > 0`.
                (default: :obj:`None`)

        Returns:
            Logits :obj:`[B]` or :obj:`[B, K]`.
        """
        intent, repeat, explore, visited = self._scores(
            user, item, links, item_features, pair_features)
        if base is not None:
            repeat, explore = repeat + base, explore + base
        return mixture_logit(intent, repeat, explore, visited)

    def components(self, user: Tensor, item: Tensor, links: Tensor,
                   item_features: Optional[Tensor] = None,
                   pair_features: Optional[Tensor] = None
                   ) -> Dict[str, Tensor]:
        r"""The parts of the mixture for given pairs, as probabilities:
        :obj:`'repeat'` :math:`P(r \mid u)`, :obj:`'explore'` :math:`P(e
        \mid u)` (both broadcast to the pairs), :obj:`'given_repeat'`
        :math:`P(y \mid r)`, :obj:`'given_explore'` :math:`P(y \mid e)`,
        :obj:`'visited'` and :obj:`'prob'` :math:`P(y = 1)`.
        """
        intent, repeat, explore, visited = self._scores(
            user, item, links, item_features, pair_features)
        p_r = torch.sigmoid(intent).expand_as(repeat)
        p_yr, p_ye = torch.sigmoid(repeat), torch.sigmoid(explore)
        prob = torch.where(visited, p_r * p_yr, (1 - p_r) * p_ye)
        return {'repeat': p_r, 'explore': 1 - p_r, 'given_repeat': p_yr,
                'given_explore': p_ye, 'visited': visited, 'prob': prob}

    def score_all(self, user: Tensor, item: Tensor, links: Tensor,
                  base: Optional[Tensor] = None,
                  item_features: Optional[Tensor] = None,
                  pair_features: Optional[Tensor] = None) -> Tensor:
        r"""The logits of every user against every item, equal to
        :meth:`forward` on each pair, by two matrix products plus
        elementwise work.

        Args:
            user (Tensor): User vectors :obj:`[B, D]`.
            item (Tensor): All item vectors :obj:`[I, D]`.
            links (Tensor): Dense link indicators :obj:`[B, I, A]`
                (:meth:`VisitLinks.dense`).
            base (Tensor, optional): Scores :obj:`[B, I]` added to both mode
                scores, as in :meth:`forward`. (default: :obj:`None`)
            item_features (Tensor, optional): Features of all items
                :obj:`[I, F]`. (default: :obj:`None`)
            pair_features (Tensor, optional): Dense pair features
                :obj:`[B, I, G]`. (default: :obj:`None`)

        Returns:
            Logits :obj:`[B, I]`.
        """
        self._check_user(user)
        if item.dim() != 2 or item.size(-1) != self.embedding_dim:
            raise ValueError(f"'item' must have shape [I, "
                             f"{self.embedding_dim}] (got "
                             f"{list(item.shape)})")
        self._check_links(links, (user.size(0), item.size(0)))
        coef = self.link_weights(user).unsqueeze(-1)  # [B, A, 1]
        repeat = torch.baddbmm(self.repeat_bias + (user * self.repeat_weight)
                               .matmul(item.t()).unsqueeze(-1), links, coef)
        repeat = repeat.squeeze(-1)
        explore = torch.addmm(self.explore_bias, user * self.explore_weight,
                              item.t())
        f_r, f_e = self._feature_scores(item_features, item.shape[:-1])
        if self.feature_weight is not None:
            repeat, explore = repeat + f_r, explore + f_e
        if self.pair_weight is not None:
            repeat = repeat + self._pair_scores(
                pair_features, (user.size(0), item.size(0)))
        if base is not None:
            repeat, explore = repeat + base, explore + base
        visited = links.amax(dim=-1) > 0
        intent = self.intent_logit(user).unsqueeze(-1)
        return mixture_logit(intent, repeat, explore, visited)

    def auxiliary_loss(self, user: Tensor, visited_share: Tensor) -> Tensor:
        r"""Binary cross-entropy of :math:`P(r \mid u)` against the users'
        observed visited shares :math:`r_u \in [0, 1]`
        (:func:`visited_share`), averaged over the batch (unweighted).

        Args:
            user (Tensor): User vectors :obj:`[B, D]`.
            visited_share (Tensor): Shares :obj:`[B]`.
        """
        intent = self.intent_logit(user)
        if visited_share.shape != intent.shape:
            raise ValueError(f"'visited_share' must have shape "
                             f"{list(intent.shape)} "
                             f"(got {list(visited_share.shape)})")
        return bce_loss(intent, visited_share)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.embedding_dim}, '
                f'num_links={self.num_links}, hidden_dim={self.hidden_dim})')
