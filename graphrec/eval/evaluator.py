r"""Full-ranking evaluation of held-out target interactions.

Every held-out item is ranked against all items, with an explicit, recorded
masking policy, pessimistic tie breaking, a visited/unvisited split of every
metric and bias metrics.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from graphrec.data.dataset import MultiBehaviorDataset, pair_keys
from graphrec.eval.metrics import _check_ks, ranking_metrics

__all__ = ['evaluate_ranking', 'MaskingPolicy', 'Evaluator',
           'DotProductScores', 'auto_chunk_size']

ScoreFn = Callable[[Tensor], Tensor]

# Elements of the [rows, num_items] comparison block counted at once: small
# enough to stay in cache, which makes counting several times faster than
# one comparison over the whole chunk.
_BLOCK_ELEMENTS = 1 << 20


def _check_positive_int(name: str, value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"'{name}' must be a positive int (got {value!r})")
    return value


#: Default :obj:`memory_budget` of ``chunk_size='auto'``: 256 MiB.
DEFAULT_MEMORY_BUDGET = 256 * 2**20

#: Bytes per (user, item) score that ``chunk_size='auto'`` provisions: the
#: float32 scores of a chunk and one temporary of the same size (a masked
#: copy, or a model's intermediate product).
BYTES_PER_SCORE = 8


def auto_chunk_size(num_items: int,
                    memory_budget: int = DEFAULT_MEMORY_BUDGET,
                    bytes_per_score: int = BYTES_PER_SCORE) -> int:
    r"""The number of users whose full score rows fit in
    :obj:`memory_budget` bytes,

    .. math::
        B = \max\left(1, \left\lfloor \frac{\text{memory\_budget}}
            {I \cdot \text{bytes\_per\_score}} \right\rfloor\right),

    the chunk size of ``chunk_size='auto'`` in :func:`evaluate_ranking`.
    One user is scored at a time when even one row exceeds the budget.

    Args:
        num_items (int): Number of items :math:`I`.
        memory_budget (int): Bytes for one chunk's scores and temporaries.
            (default: :obj:`256 * 2**20`)
        bytes_per_score (int): Bytes provisioned per score.
            (default: :obj:`8`, float32 scores and one same-sized
            temporary)

    Example:
        >>> auto_chunk_size(10_000, memory_budget=80_000_000)
        1000
    """
    num_items = _check_positive_int('num_items', num_items)
    memory_budget = _check_positive_int('memory_budget', memory_budget)
    bytes_per_score = _check_positive_int('bytes_per_score', bytes_per_score)
    return max(1, memory_budget // (num_items * bytes_per_score))


class DotProductScores:
    r"""The scores :math:`S = U_{\mathcal{B}} I^\top` of a decomposable
    model as a :obj:`score_fn` that can write into a given buffer.

    Called as :obj:`fn(user_index)` it returns a new :obj:`[B, I]` tensor,
    like any :obj:`score_fn`; :func:`evaluate_ranking` calls it as
    :obj:`fn(user_index, out=buffer)` with one buffer reused by every
    chunk after the first, which saves allocating (and the kernel
    zero-filling) a fresh block of :math:`B \times I` scores per chunk,
    about a third of the time of a full-ranking evaluation on CPU.

    Args:
        user (Tensor): User embeddings :obj:`[U, D]`.
        item (Tensor): Item embeddings :obj:`[I, D]`, on the same device and
            of the same dtype.

    Example:
        >>> fn = DotProductScores(torch.eye(2), torch.tensor([[1., 2.]]))
        >>> fn(torch.tensor([1]))
        tensor([[2.]])
    """
    #: :func:`evaluate_ranking` may pass :obj:`out=`.
    accepts_out = True

    def __init__(self, user: Tensor, item: Tensor):
        for name, x in (('user', user), ('item', item)):
            if not isinstance(x, Tensor) or x.dim() != 2:
                got = (f'shape {list(x.shape)}' if isinstance(x, Tensor)
                       else type(x).__name__)
                raise ValueError(f"'{name}' must be a 2-D tensor [N, D] "
                                 f"(got {got})")
        if user.size(1) != item.size(1):
            raise ValueError(f"'user' and 'item' must have the same "
                             f"embedding size (got {user.size(1)} and "
                             f"{item.size(1)})")
        if user.device != item.device or user.dtype != item.dtype:
            raise ValueError(f"'user' and 'item' must share device and "
                             f"dtype (got {user.device}/{user.dtype} and "
                             f"{item.device}/{item.dtype})")
        self.user = user.detach()
        self.item = item.detach()

    @property
    def num_items(self) -> int:
        r"""The number of items :math:`I`."""
        return self.item.size(0)

    def __call__(self, user_index: Tensor,
                 out: Optional[Tensor] = None) -> Tensor:
        r"""Scores :obj:`[B, I]` of the users :obj:`user_index` :obj:`[B]`,
        written into :obj:`out` when given.
        """
        user = self.user[user_index.to(self.user.device)]
        if out is None:
            return user @ self.item.t()
        return torch.mm(user, self.item.t(), out=out)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(users={self.user.size(0)}, '
                f'items={self.item.size(0)}, dim={self.user.size(1)})')


def _check_chunk_size(value) -> Union[int, str]:
    if value == 'auto':
        return value
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"'chunk_size' must be a positive int or 'auto' "
                         f"(got {value!r})")
    return value


def _check_tail_fraction(value) -> float:
    if (not isinstance(value, (int, float)) or isinstance(value, bool)
            or not 0.0 <= value <= 1.0):
        raise ValueError(f"'tail_fraction' must be a float in [0, 1] "
                         f"(got {value!r})")
    return float(value)


def _check_pairs(name: str, index, num_items: int) -> Tensor:
    if not isinstance(index, Tensor):
        raise TypeError(f"'{name}' must be a LongTensor of shape [2, E] "
                        f"(got {type(index).__name__})")
    if index.dim() != 2 or index.size(0) != 2:
        raise ValueError(f"'{name}' must have shape [2, E] "
                         f"(got {list(index.shape)})")
    if index.is_floating_point() or index.dtype == torch.bool:
        raise TypeError(f"'{name}' must hold integer ids "
                        f"(got dtype {index.dtype})")
    index = index.long()
    if index.numel() > 0:
        if int(index[0].min()) < 0:
            raise ValueError(f"'{name}' has user id {int(index[0].min())} "
                             f"< 0")
        lo, hi = int(index[1].min()), int(index[1].max())
        if lo < 0 or hi >= num_items:
            raise ValueError(f"'{name}' has item id {lo if lo < 0 else hi} "
                             f"outside [0, {num_items - 1}] "
                             f"(num_items={num_items})")
    return index


def _csr(pos: Tensor, n: int) -> Tensor:
    r"""Row pointers :obj:`[n + 1]` of the sorted row positions :obj:`pos`."""
    ptr = pos.new_zeros(n + 1)
    ptr[1:] = torch.bincount(pos, minlength=n).cumsum(0)
    return ptr


def _count_ge(scores: Tensor, row: Tensor, thr: Tensor) -> Tensor:
    r"""For every pair :math:`p`, :math:`|\{j : s_{row_p, j} \ge thr_p\}|`.

    Counted in blocks of rows that fit in cache.
    """
    num_items = scores.size(1)
    out = torch.empty(row.numel(), dtype=torch.long, device=scores.device)
    block = max(1, _BLOCK_ELEMENTS // num_items)
    # Without repeated rows, slicing avoids a gather copy.
    identity = (row.numel() == scores.size(0) and bool(
        (row == torch.arange(row.numel(), device=row.device)).all()))
    for a in range(0, row.numel(), block):
        b = min(a + block, row.numel())
        sub = scores[a:b] if identity else scores.index_select(0, row[a:b])
        out[a:b] = torch.count_nonzero(sub >= thr[a:b, None], dim=1)
    return out


def _exact_top(sub: Tensor, kth: Tensor, k: int, masked: Tensor) -> Tensor:
    r"""Exact top-:math:`k` lists :obj:`[b, k]` of rows with boundary ties.

    For rows where ties at the :math:`k`-th score make :func:`torch.topk`
    ambiguous: descending score, ties by lower item index, masked items
    excluded, -1 padded.
    """
    b = sub.size(0)
    gt = sub > kth[:, None]
    eq = (sub == kth[:, None]) & ~masked
    need = k - gt.sum(1)
    sel = gt | (eq & (eq.long().cumsum(1) <= need[:, None]))
    r, c = sel.nonzero(as_tuple=True)  # row-major: lower index first
    order = sub[r, c].argsort(descending=True, stable=True)
    order = order[r[order].argsort(stable=True)]
    r, c = r[order], c[order]
    ptr = _csr(r, b)
    pos = torch.arange(r.numel(), device=r.device) - ptr[r]
    out = torch.full((b, k), -1, dtype=torch.long, device=sub.device)
    out[r, pos] = c
    return out


def _top_lists(scores: Tensor, k: int, mask_row: Tensor,
               mask_item: Tensor) -> Tuple[Tensor, Tensor]:
    r"""Deterministic top-:math:`k` lists of a masked chunk and row maxima.

    Masked entries are :obj:`-inf`; the row maxima serve the finiteness
    check.
    """
    num_items = scores.size(1)
    k = min(k, num_items)
    top = scores.topk(min(k + 1, num_items), dim=1)
    vals, idx = top.values[:, :k], top.indices[:, :k]
    kth = vals[:, k - 1]
    # A row is ambiguous if the k-th score ties with one outside the list,
    # or if the list reaches -inf scores (masked items may be among them).
    ambiguous = kth == float('-inf')
    if top.values.size(1) > k:
        ambiguous |= top.values[:, k] == kth
    # Order every list by (score desc, item asc): sort by item, then a
    # stable sort by score.
    idx, order = idx.sort(dim=1)
    vals = vals.gather(1, order)
    idx = idx.gather(1, vals.argsort(dim=1, descending=True, stable=True))
    if bool(ambiguous.any()):
        rows = ambiguous.nonzero().view(-1)
        row_of = torch.full((scores.size(0), ), -1, dtype=torch.long,
                            device=scores.device)
        row_of[rows] = torch.arange(rows.numel(), device=scores.device)
        masked = torch.zeros(rows.numel(), num_items, dtype=torch.bool,
                             device=scores.device)
        r = row_of[mask_row]
        keep = r >= 0
        masked[r[keep], mask_item[keep]] = True
        idx[rows] = _exact_top(scores[rows], kth[rows], k, masked)
    return idx, top.values[:, 0]


def evaluate_ranking(
    score_fn: ScoreFn,
    truth_index: Tensor,
    num_items: int,
    *,
    ks: Sequence[int] = (10, 20),
    mask_index: Optional[Tensor] = None,
    visited_index: Optional[Tensor] = None,
    item_popularity: Optional[Tensor] = None,
    chunk_size: Union[int, str] = 1024,
    tail_fraction: float = 0.8,
    user_index: Optional[Tensor] = None,
    per_user: bool = False,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> Dict[str, Any]:
    r"""Full-ranking evaluation of held-out (user, item) pairs.

    Every evaluated user's scores over all :math:`I` items come from
    :obj:`score_fn`; the user's :obj:`mask_index` items are removed from the
    ranking; each held-out (truth) item :math:`p` of user :math:`u` with
    score :math:`s_p` gets the 0-based rank

    .. math::
        r_p = |\{j \notin T_u \cup M_u : s_j \ge s_p\}|
            + |\{q \in T_u : s_q > s_p \lor (s_q = s_p \land q < p)\}|,

    where :math:`T_u` are the user's truth items and :math:`M_u` the masked
    ones: ties are broken **pessimistically** (a truth item goes after every
    non-truth item with the same score; tied truth items among themselves by
    item index). Hence "a constant scorer scores at chance" means exactly
    this: with :math:`N` unmasked items and one truth item, a constant
    scorer ranks it last (:math:`r = N - 1`), so HR@K = 0 for :math:`K < N`
    and MRR = :math:`1/N`, the worst case, never better than chance; a
    scorer with random, untied scores gets HR@K = :math:`K/N` in
    expectation. Metrics (see :func:`~graphrec.eval.metrics.ranking_metrics`)
    at each :math:`K` in :obj:`ks`: :obj:`hr@K`, :obj:`recall@K`,
    :obj:`precision@K`, :obj:`ndcg@K`, and :obj:`mrr` (untruncated),
    averaged over the evaluated users.

    **Visited split.** With :obj:`visited_index` (pairs the user had in an
    auxiliary train behavior), every metric is also reported as
    :obj:`visited/<metric>` and :obj:`unvisited/<metric>`: per user over only
    the truth items of that subset (ranks unchanged), averaged over users
    with at least one such item (NaN if none); plus :obj:`visited/share`
    (fraction of truth pairs visited), :obj:`visited/users` and
    :obj:`unvisited/users`.

    **Bias metrics** from every evaluated user's top-:math:`K` list (masked
    items excluded, ties broken by lower item index): :obj:`coverage@K`, the
    fraction of the :math:`I` items in at least one list; with
    :obj:`item_popularity`, :obj:`avg_pop@K`, the mean popularity over all
    recommended (user, item) entries, and :obj:`tail_share@K`, the fraction
    of those entries in the tail. The head is the
    :math:`\lfloor (1 - \text{tail\_fraction}) I \rfloor` most popular items
    (popularity ties by lower item index), the tail all others.

    Users are processed in chunks of :obj:`chunk_size` (with
    :obj:`'auto'`, as many as :func:`auto_chunk_size` fits in
    :obj:`memory_budget` bytes, so that the memory of the score blocks is
    bounded whatever the number of users); ranks are exact integer counts
    and all averaging happens once at the end, so results are
    bit-identical for every chunk size. The masked entries of a chunk are
    set to :obj:`-inf` in place and restored afterwards, so :obj:`score_fn`
    may return a view of a stored tensor (non-contiguous, integer or
    gradient-tracking outputs are copied first). A :obj:`score_fn` with
    the attribute :obj:`accepts_out = True` (e.g.
    :class:`DotProductScores`) is called as :obj:`score_fn(users,
    out=buffer)` after the first chunk, with one buffer of the
    evaluator's own, shaped like the first chunk's scores, for every later
    chunk; it must write its scores into :obj:`out` and return it.

    Args:
        score_fn (Callable): Maps users :obj:`[B]` (LongTensor, on the device
            of :obj:`truth_index`) to scores over all items :obj:`[B, I]`.
            Scores must not be NaN or :obj:`+inf`; :obj:`-inf` is allowed.
        truth_index (Tensor): Held-out pairs :obj:`[2, T]` (user, item);
            duplicate pairs count once.
        num_items (int): Number of items :math:`I`.
        ks (Sequence[int]): Cut-offs. (default: :obj:`(10, 20)`)
        mask_index (Tensor, optional): Pairs :obj:`[2, M]` removed from the
            ranking, e.g. train interactions; must not contain a truth pair.
            (default: :obj:`None`)
        visited_index (Tensor, optional): Pairs :obj:`[2, V]` the user had
            in an auxiliary behavior. (default: :obj:`None`, no split)
        item_popularity (Tensor, optional): Popularity per item :obj:`[I]`,
            e.g. train interaction counts. (default: :obj:`None`)
        chunk_size (int or str): Users scored at once, or :obj:`'auto'`
            for the most that fit in :obj:`memory_budget`.
            (default: :obj:`1024`)
        tail_fraction (float): Fraction of items in the tail.
            (default: :obj:`0.8`, head = the 20% most popular items)
        user_index (Tensor, optional): Evaluate only these users (those of
            them with at least one truth pair). (default: :obj:`None`, every
            user in :obj:`truth_index`)
        per_user (bool): Also return :obj:`'per_user'`: the evaluated users
            :obj:`'user'` :obj:`[N]` (ascending) and each ranking metric per
            user as a float64 tensor :obj:`[N]`, for paired significance
            tests and user groups. (default: :obj:`False`)
        memory_budget (int): Bytes for one chunk's scores with
            :obj:`chunk_size='auto'` (see :func:`auto_chunk_size`).
            (default: :obj:`256 * 2**20`)

    Returns:
        A dict of floats (the metrics above, NaN where undefined) with
        :obj:`users` (evaluated users) and :obj:`truth_pairs` (distinct
        truth pairs) as ints.

    Example:
        >>> scores = torch.tensor([[3., 2., 1.], [1., 2., 3.]])
        >>> out = evaluate_ranking(lambda u: scores[u],
        ...                        torch.tensor([[0, 1], [1, 1]]), 3, ks=(1,))
        >>> out['hr@1'], out['mrr']
        (0.0, 0.5)
    """
    if not callable(score_fn):
        raise TypeError(f"'score_fn' must be callable (got "
                        f"{type(score_fn).__name__})")
    num_items = _check_positive_int('num_items', num_items)
    ks = _check_ks(ks)
    chunk_size = _check_chunk_size(chunk_size)
    memory_budget = _check_positive_int('memory_budget', memory_budget)
    if chunk_size == 'auto':
        chunk_size = auto_chunk_size(num_items, memory_budget)
    tail_fraction = _check_tail_fraction(tail_fraction)
    truth_index = _check_pairs('truth_index', truth_index, num_items)
    device = truth_index.device
    n_items = num_items

    keys = torch.unique(pair_keys(truth_index, n_items))  # sorted
    if mask_index is not None:
        mask_index = _check_pairs('mask_index', mask_index, n_items)
        mkeys = torch.unique(pair_keys(mask_index.to(device), n_items))
        clash = torch.isin(keys, mkeys)
        if bool(clash.any()):
            k = int(keys[clash][0])
            raise ValueError(
                f"'truth_index' has {int(clash.sum())} pair(s) that are also "
                f"in 'mask_index', e.g. (user {k // n_items}, item "
                f"{k % n_items}); a masked item cannot be ranked")
    else:
        mkeys = keys.new_empty(0)
    if user_index is not None:
        if (not isinstance(user_index, Tensor) or user_index.dim() != 1
                or user_index.is_floating_point()
                or user_index.dtype == torch.bool):
            got = (f'shape {list(user_index.shape)}, dtype {user_index.dtype}'
                   if isinstance(user_index, Tensor) else
                   type(user_index).__name__)
            raise ValueError(f"'user_index' must be a 1-D integer tensor "
                             f"(got {got})")
        keys = keys[torch.isin(keys // n_items, user_index.to(device).long())]
    if keys.numel() == 0:
        raise ValueError("'truth_index' has no pair to evaluate (got 0 "
                         "pairs" + ("" if user_index is None else
                                    " for the users in 'user_index'") + ")")

    users = torch.unique_consecutive(keys // n_items)
    n_users = users.numel()
    t_pos = torch.searchsorted(users, keys // n_items)
    t_item = keys % n_items
    t_ptr = _csr(t_pos, n_users)
    mkeys = mkeys[torch.isin(mkeys // n_items, users)]
    m_pos = torch.searchsorted(users, mkeys // n_items)
    m_item = mkeys % n_items
    m_ptr = _csr(m_pos, n_users)
    n_masked = m_ptr[1:] - m_ptr[:-1]
    k_list = min(max(ks), n_items)

    # A score_fn that writes into a buffer (DotProductScores) gets one
    # buffer of the evaluator's own for every chunk after the first, free to
    # mask in place without restoring.
    into = bool(getattr(score_fn, 'accepts_out', False))
    buffer = None
    n_ge, truth_score, tops = [], [], []
    for start in range(0, n_users, chunk_size):
        end = min(start + chunk_size, n_users)
        if buffer is None:
            scores = score_fn(users[start:end])
        else:
            scores = score_fn(users[start:end], out=buffer[:end - start])
        if not isinstance(scores, Tensor) or scores.dim() != 2 or tuple(
                scores.shape) != (end - start, n_items):
            got = (list(scores.shape) if isinstance(scores, Tensor) else
                   type(scores).__name__)
            raise ValueError(f"'score_fn' must return a Tensor of shape "
                             f"[B, num_items] = [{end - start}, {n_items}] "
                             f"(got {got})")
        with torch.no_grad():
            out = _score_chunk(scores, users[start:end], start, end, t_pos,
                               t_item, t_ptr, m_pos, m_item, m_ptr,
                               n_masked, k_list, scratch=(
                                   buffer is not None and isinstance(
                                       scores, Tensor) and scores.data_ptr()
                                   == buffer.data_ptr()))
        if into and buffer is None and end < n_users:
            # The first chunk is the largest: later ones fit.
            buffer = torch.empty_like(scores,
                                      memory_format=torch.contiguous_format)
        n_ge.append(out[0].cpu())
        truth_score.append(out[1].cpu())
        tops.append(out[2].cpu())

    t_pos = t_pos.cpu()
    rank = _pessimistic_ranks(torch.cat(n_ge), torch.cat(truth_score), t_pos)
    result: Dict[str, Any] = {'users': n_users, 'truth_pairs': keys.numel()}
    overall = ranking_metrics(rank, t_pos, n_users, ks)
    overall.pop('users')
    result.update(overall)
    if per_user:
        values = ranking_metrics(rank, t_pos, n_users, ks, per_group=True)
        values.pop('users')
        result['per_user'] = {'user': users.cpu(), **values}

    if visited_index is not None:
        visited_index = _check_pairs('visited_index', visited_index,
                                     n_items)
        vkeys = pair_keys(visited_index.to(device), n_items)
        visited = torch.isin(keys, vkeys).cpu()
        result['visited/share'] = float(visited.double().mean())
        for name, sub in (('visited', visited), ('unvisited', ~visited)):
            part = ranking_metrics(rank[sub], t_pos[sub], n_users, ks)
            result[f'{name}/users'] = part.pop('users')
            result.update({f'{name}/{m}': v for m, v in part.items()})

    top = torch.cat(tops)
    is_tail = popularity = None
    if item_popularity is not None:
        popularity = _check_popularity(item_popularity, n_items)
        n_head = int(math.floor((1.0 - tail_fraction) * n_items + 1e-9))
        order = popularity.argsort(descending=True, stable=True)
        is_tail = torch.ones(n_items, dtype=torch.bool)
        is_tail[order[:n_head]] = False
    for k in ks:
        items = top[:, :min(k, k_list)]
        items = items[items >= 0]
        seen = torch.bincount(items, minlength=n_items) > 0
        result[f'coverage@{k}'] = float(seen.double().mean())
        if popularity is not None:
            empty = items.numel() == 0
            result[f'avg_pop@{k}'] = (float('nan') if empty else float(
                popularity[items].mean()))
            result[f'tail_share@{k}'] = (float('nan') if empty else float(
                is_tail[items].double().mean()))
    return result


def _check_popularity(item_popularity, num_items: int) -> Tensor:
    if (not isinstance(item_popularity, Tensor)
            or tuple(item_popularity.shape) != (num_items, )):
        got = (list(item_popularity.shape) if isinstance(
            item_popularity, Tensor) else type(item_popularity).__name__)
        raise ValueError(f"'item_popularity' must be a tensor of shape "
                         f"[num_items] = [{num_items}] (got {got})")
    return item_popularity.detach().cpu().double()


def _score_chunk(scores: Tensor, users: Tensor, start: int, end: int,
                 t_pos: Tensor, t_item: Tensor, t_ptr: Tensor,
                 m_pos: Tensor, m_item: Tensor, m_ptr: Tensor,
                 n_masked: Tensor, k_list: int,
                 scratch: bool = False) -> Tuple[Tensor, Tensor, Tensor]:
    r"""Counts, truth scores and top lists of one chunk of users.

    The count of pair :math:`p` is :math:`|\{j \text{ unmasked} : s_j \ge
    s_p\}|`. Raises if an unmasked score is NaN or :obj:`+inf`.
    :obj:`scratch` means :obj:`scores` is the evaluator's own buffer, to be
    overwritten without restoring.
    """
    # Work on a copy where writing in place is unsafe or impossible
    # (autograd, expanded tensors); otherwise mask in place and restore.
    owned = True
    if not scores.is_floating_point():
        scores = scores.double()
    elif scores.requires_grad or not scores.is_contiguous():
        scores = scores.detach().clone(memory_format=torch.contiguous_format)
    else:
        owned = scratch
    dev = scores.device
    m_lo, m_hi = int(m_ptr[start]), int(m_ptr[end])
    m_row = (m_pos[m_lo:m_hi] - start).to(dev)
    m_col = m_item[m_lo:m_hi].to(dev)
    saved = None if owned else scores[m_row, m_col]
    scores[m_row, m_col] = float('-inf')
    try:
        top, row_max = _top_lists(scores, k_list, m_row, m_col)
        # topk ranks NaN above +inf: a bad row has a bad maximum.
        bad = torch.isnan(row_max) | (row_max == float('inf'))
        if bool(bad.any()):
            row = int(bad.nonzero()[0, 0])
            raise ValueError(f"'score_fn' returned a non-finite score (NaN "
                             f"or +inf) for user {int(users[row])}; scores "
                             f"must be finite or -inf")
        t_lo, t_hi = int(t_ptr[start]), int(t_ptr[end])
        t_row = (t_pos[t_lo:t_hi] - start).to(dev)
        st = scores[t_row, t_item[t_lo:t_hi].to(dev)]
        count = _count_ge(scores, t_row, st)
        # Masked entries are -inf: they count only for a -inf truth score.
        count -= torch.where(st == float('-inf'),
                             n_masked[start:end].to(dev)[t_row], 0)
        return count, st.double(), top
    finally:
        if saved is not None:
            scores[m_row, m_col] = saved


def _pessimistic_ranks(n_ge: Tensor, score: Tensor, pos: Tensor) -> Tensor:
    r"""Pessimistic 0-based ranks of the truth pairs.

    :math:`n_p = |\{j \text{ unmasked}: s_j \ge s_p\}|` counts the truth
    items too. Removing the truth items with :math:`s_q \ge s_p` and adding
    back those ordered before :math:`p` (:math:`s_q > s_p`, or
    :math:`s_q = s_p` and :math:`q < p`) amounts to
    :math:`r_p = n_p - |\{q : s_q = s_p, q \ge p\}|`.
    """
    n = score.numel()
    # Pairs arrive sorted by (user, item): two stable sorts give (user,
    # score, item) order, so equal (user, score) runs list items ascending.
    order = score.argsort(stable=True)
    order = order[pos[order].argsort(stable=True)]
    s, g = score[order], pos[order]
    new_run = torch.ones(n, dtype=torch.bool)
    new_run[1:] = (s[1:] != s[:-1]) | (g[1:] != g[:-1])
    run = new_run.long().cumsum(0) - 1
    run_end = torch.bincount(run).cumsum(0)
    tied_from_p = run_end[run] - torch.arange(n)  # q tied with p, q >= p
    rank = torch.empty(n, dtype=torch.long)
    rank[order] = n_ge[order] - tied_from_p
    return rank


@dataclass(frozen=True)
class MaskingPolicy:
    r"""Which items are removed from each user's ranking.

    Recorded with every result (see :meth:`describe`).

    Args:
        train_behaviors (Sequence[str], optional): Train behaviors whose
            (user, item) pairs are masked; :obj:`None` means the target
            behavior, :obj:`()` none. (default: :obj:`None`)
        mask_valid (bool): When evaluating on test, also mask the validation
            pairs. When evaluating on validation the test pairs are never
            read, let alone masked. (default: :obj:`True`)

    Example:
        >>> MaskingPolicy().describe('buy')
        'train:buy+valid'
        >>> MaskingPolicy.none().describe('buy')
        'none'
    """
    train_behaviors: Optional[Tuple[str, ...]] = None
    mask_valid: bool = True

    def __post_init__(self):
        b = self.train_behaviors
        if isinstance(b, str):
            b = (b, )
        if b is not None:
            if not isinstance(b, (list, tuple)) or not all(
                    isinstance(x, str) for x in b):
                raise ValueError(f"'train_behaviors' must be None or a "
                                 f"sequence of behavior names (got {b!r})")
            object.__setattr__(self, 'train_behaviors', tuple(b))
        if not isinstance(self.mask_valid, bool):
            raise ValueError(f"'mask_valid' must be a bool "
                             f"(got {self.mask_valid!r})")

    @classmethod
    def none(cls) -> MaskingPolicy:
        r"""Masks nothing: every item is ranked."""
        return cls(train_behaviors=(), mask_valid=False)

    def behaviors(self, target: Optional[str] = None) -> Tuple[str, ...]:
        r"""The masked train behaviors (:obj:`None` means :obj:`target`)."""
        if self.train_behaviors is None:
            return (target if target is not None else 'target', )
        return self.train_behaviors

    def describe(self, target: Optional[str] = None, split: str = 'test',
                 has_valid: bool = True) -> str:
        r"""A short description, e.g. :obj:`'train:buy+valid'`.

        Args:
            target (str, optional): Name of the target behavior.
            split (str): The evaluated split; validation pairs are masked
                only on :obj:`'test'`. (default: :obj:`'test'`)
            has_valid (bool): Whether the dataset has validation pairs.
                (default: :obj:`True`)
        """
        parts = []
        behaviors = self.behaviors(target)
        if behaviors:
            parts.append('train:' + ','.join(behaviors))
        if self.mask_valid and split == 'test' and has_valid:
            parts.append('valid')
        return '+'.join(parts) if parts else 'none'


class Evaluator:
    r"""Full-ranking evaluator of a :class:`MultiBehaviorDataset` split.

    Follows the evaluation protocol of DESIGN.md (see
    :func:`evaluate_ranking` for the metrics and tie breaking).

    The mask comes from :obj:`masking`; the visited split from the union of
    the train edges of the auxiliary behaviors; item popularity is the
    train target-behavior interaction count per item.

    Args:
        ks (Sequence[int]): Cut-offs. (default: :obj:`(10, 20)`)
        masking (MaskingPolicy): What to mask.
            (default: :obj:`MaskingPolicy()`, train target + validation)
        chunk_size (int or str): Users scored at once, or :obj:`'auto'`
            (see :func:`auto_chunk_size`). (default: :obj:`1024`)
        tail_fraction (float): Fraction of items in the popularity tail.
            (default: :obj:`0.8`)
        memory_budget (int): Bytes for one chunk's scores with
            :obj:`chunk_size='auto'`. (default: :obj:`256 * 2**20`)

    Example:
        .. code-block:: python

            evaluator = Evaluator(ks=(10, 20))
            result = evaluator.evaluate(model.score_fn(graph), dataset)
            result['hr@10'], result['visited/hr@10'], result['masking']
            # (0.31..., 0.36..., 'train:buy+valid')
    """
    def __init__(self, ks: Sequence[int] = (10, 20),
                 masking: Optional[MaskingPolicy] = None,
                 chunk_size: Union[int, str] = 1024,
                 tail_fraction: float = 0.8,
                 memory_budget: int = DEFAULT_MEMORY_BUDGET):
        self.ks = _check_ks(ks)
        masking = MaskingPolicy() if masking is None else masking
        if not isinstance(masking, MaskingPolicy):
            raise ValueError(f"'masking' must be a MaskingPolicy "
                             f"(got {type(masking).__name__})")
        self.masking = masking
        self.chunk_size = _check_chunk_size(chunk_size)
        self.memory_budget = _check_positive_int('memory_budget',
                                                 memory_budget)
        self.tail_fraction = _check_tail_fraction(tail_fraction)

    def mask_index(self, dataset: MultiBehaviorDataset,
                   split: str = 'test') -> Optional[Tensor]:
        r"""The masked pairs :obj:`[2, M]` for :obj:`split`, or None."""
        split = self._check_split(dataset, split)
        behaviors = self.masking.behaviors(dataset.target)
        unknown = [b for b in behaviors if b not in dataset.behaviors]
        if unknown:
            raise ValueError(f"'masking' names behaviors {unknown} that are "
                             f"not in the dataset (behaviors: "
                             f"{list(dataset.behaviors)})")
        parts = [dataset.train[b] for b in behaviors]
        if (split == 'test' and self.masking.mask_valid
                and dataset.valid is not None):
            parts.append(dataset.valid)
        return torch.cat(parts, dim=1) if parts else None

    @staticmethod
    def _check_split(dataset: MultiBehaviorDataset, split: str) -> str:
        if split not in ('test', 'valid'):
            raise ValueError(f"'split' must be 'test' or 'valid' "
                             f"(got {split!r})")
        if split == 'valid' and dataset.valid is None:
            raise ValueError(f"'split' is 'valid' but dataset "
                             f"'{dataset.name}' has no validation pairs "
                             f"(dataset.valid is None)")
        return split

    def evaluate(self, score_fn: ScoreFn, dataset: MultiBehaviorDataset,
                 split: str = 'test',
                 user_index: Optional[Tensor] = None,
                 per_user: bool = False
                 ) -> Dict[str, Union[float, int, str]]:
        r"""Evaluates :obj:`score_fn` on :obj:`split` of :obj:`dataset`.

        Args:
            score_fn (Callable): Users :obj:`[B]` to scores :obj:`[B, I]`.
            dataset (MultiBehaviorDataset): The data.
            split (str): :obj:`'test'` or :obj:`'valid'`.
                (default: :obj:`'test'`)
            user_index (Tensor, optional): Evaluate only these users.
            per_user (bool): Add per-user metrics under :obj:`'per_user'`
                (see :func:`evaluate_ranking`). (default: :obj:`False`)

        Returns:
            The dict of :func:`evaluate_ranking` plus :obj:`'split'` and
            :obj:`'masking'` (:meth:`MaskingPolicy.describe`).
        """
        split = self._check_split(dataset, split)
        truth = dataset.valid if split == 'valid' else dataset.test
        aux = [dataset.train[b] for b in dataset.auxiliary]
        visited = (torch.cat(aux, dim=1) if aux else
                   truth.new_empty(2, 0))
        popularity = torch.bincount(dataset.train[dataset.target][1],
                                    minlength=dataset.num_items)
        result = evaluate_ranking(
            score_fn, truth, dataset.num_items, ks=self.ks,
            mask_index=self.mask_index(dataset, split),
            visited_index=visited, item_popularity=popularity,
            chunk_size=self.chunk_size, tail_fraction=self.tail_fraction,
            user_index=user_index, per_user=per_user,
            memory_budget=self.memory_budget)
        result['split'] = split
        result['masking'] = self.masking.describe(
            dataset.target, split, dataset.valid is not None)
        return result

    def __repr__(self) -> str:
        budget = (f', memory_budget={self.memory_budget}'
                  if self.chunk_size == 'auto' else '')
        return (f'{self.__class__.__name__}(ks={self.ks}, masking='
                f'{self.masking.describe()!r}, chunk_size={self.chunk_size!r}'
                f'{budget})')
