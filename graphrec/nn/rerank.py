r"""A second stage over any trained recommender: candidates, their features
and a listwise re-ranker.

A model trained with pairwise losses on the train purchases learns what
separates a train purchase from a random item. The next purchase is
another question: on tmall 83% of test purchases are items the user already
viewed or carted, and which of those ~50 items comes next depends on
statistics such as the item's conversion rate and what the user's other
items lead to, which the first stage is never trained to weigh against
each other. A second stage fitted on *held-out* purchases (the validation
pairs, which the first stage did not train on) learns that weighting.

:class:`CandidateFeatures` takes, per user, every visited, not yet bought
item and the :obj:`num_unvisited` best-scored other items of the first
stage, and describes each by

* the first-stage score :math:`s_{ui}` and :math:`s_{ui} - \bar{s}_u`
  (its mean over the user's candidates),
* the auxiliary links :math:`\ell_{ui}` (see :class:`VisitLinks`) and
  whether any is set,
* the item statistics of :func:`item_statistics` (log counts per behavior,
  smoothed conversion rates),
* the pair statistics of :func:`pair_statistics` (item-based collaborative
  filtering from the user's history; zero for unvisited pairs),
* the user's log degree per behavior and log number of visited candidates,
* with :obj:`neighbours`, the user-based collaborative-filtering score of
  :class:`~graphrec.models.UserKNN` over the user's best one (0 to 1).

:class:`ListwiseReranker` scores them (a linear term plus an MLP, on
standardised features) and is fitted with a softmax over each user's
candidates (:func:`graphrec.train.fit_reranker`); :class:`RerankedScores`
turns it into a full-ranking score function: candidates by the re-ranker,
every other item below them in first-stage order.
"""
from __future__ import annotations

from typing import Callable, List, NamedTuple, Optional, Sequence

import torch
from torch import Tensor

from graphrec.data.graph import BehaviorGraph
from graphrec.nn.visited import (
    VisitLinks,
    _check_index,
    _ranges,
    item_statistics,
    pair_statistics,
)

__all__ = ['Candidates', 'CandidateFeatures', 'ListwiseReranker',
           'RerankerBag', 'RerankedScores', 'candidate_feature_names']


def candidate_feature_names(behaviors: Sequence[str],
                            neighbours: int = 0) -> List[str]:
    r"""The names of the features of :class:`CandidateFeatures` for
    behaviors in cascade order, target last (and :obj:`neighbours` > 0
    for the user-based CF feature).
    """
    b = tuple(behaviors)
    aux, tgt = b[:-1], b[-1]
    return (['score', 'score_centered']
            + [f'link_{a}' for a in aux] + ['visited']
            + [f'item_log_{x}' for x in b]
            + [f'item_conversion_{a}' for a in aux]
            + [f'pair_cf_{x}_{tgt}' for x in b]
            + [f'pair_cf_{a}_{a}' for a in aux]
            + [f'user_log_{x}' for x in b] + ['user_log_candidates']
            + (['user_cf'] if neighbours else []))


def check_drop(drop: Sequence[str], behaviors: Sequence[str],
               neighbours: int = 0) -> None:
    r"""Raises a :class:`ValueError` if a prefix of :obj:`drop` names no
    feature of :func:`candidate_feature_names`.
    """
    names = candidate_feature_names(behaviors, neighbours)
    unknown = [p for p in drop if not any(n.startswith(p) for n in names)]
    if unknown:
        raise ValueError(f"'drop' names no feature: {unknown} (the "
                         f"features are {names})")


class Candidates(NamedTuple):
    r"""The candidates of a chunk of :math:`B` users, padded to :math:`K`.

    Attributes:
        item (Tensor): Candidate items :obj:`[B, K]`.
        features (Tensor): Their features :obj:`[B, K, F]`.
        valid (Tensor): Which positions are candidates :obj:`[B, K]` (the
            rest is padding).
        scores (Tensor): The first-stage scores of all items :obj:`[B, I]`.
    """
    item: Tensor
    features: Tensor
    valid: Tensor
    scores: Tensor


class CandidateFeatures:
    r"""Candidates and their features for a second-stage re-ranker (see the
    module docstring for the list of features).

    The candidates of a user are her visited items (linked by an auxiliary
    behavior) that are not train purchases, then (with :obj:`neighbours`)
    the collaborative filter's :obj:`num_unvisited` best others, then the
    :obj:`stage_unvisited` (by default :obj:`num_unvisited`) other items
    the first stage scores highest; train purchases are never candidates.
    All statistics are counted on :obj:`graph`, so held-out pairs never
    enter.

    Args:
        graph (BehaviorGraph): The train graph of the first stage.
        score_fn (Callable): First-stage scores, :obj:`user_index -> [B, I]`
            (e.g. :meth:`Recommender.score_fn`).
        num_unvisited (int): Unvisited candidates per user.
            (default: :obj:`100`)
        drop (Sequence[str]): Features set to zero, by name prefix of
            :meth:`feature_names` (e.g. :obj:`['pair_cf']`), for ablations.
            (default: none)
        neighbours (int): With :math:`k > 0`, user-based collaborative
            filtering (:class:`~graphrec.models.UserKNN` over every
            behavior, :math:`k` neighbours) adds its :obj:`num_unvisited`
            best unvisited items to the candidates (before the first
            stage's) and its score to the features. (default: :obj:`0`)
        stage_unvisited (int, optional): Unvisited candidates per user from
            the first stage, if not :obj:`num_unvisited` (0 where its
            scores must not choose any, as for the carved lists of
            :func:`graphrec.train.fit_reranker`). (default: :obj:`None`)
    """
    def __init__(self, graph: BehaviorGraph,
                 score_fn: Callable[[Tensor], Tensor],
                 num_unvisited: int = 100, drop: Sequence[str] = (),
                 neighbours: int = 0,
                 stage_unvisited: Optional[int] = None):
        if not isinstance(graph, BehaviorGraph):
            raise TypeError(f"'graph' must be a BehaviorGraph "
                            f"(got {type(graph).__name__})")
        if not callable(score_fn):
            raise TypeError(f"'score_fn' must be callable "
                            f"(got {type(score_fn).__name__})")
        if not isinstance(num_unvisited, int) or \
                isinstance(num_unvisited, bool) or num_unvisited < 0:
            raise ValueError(f"'num_unvisited' must be an int >= 0 "
                             f"(got {num_unvisited!r})")
        if stage_unvisited is None:
            stage_unvisited = num_unvisited
        if not isinstance(stage_unvisited, int) or \
                isinstance(stage_unvisited, bool) or stage_unvisited < 0:
            raise ValueError(f"'stage_unvisited' must be an int >= 0 "
                             f"(got {stage_unvisited!r})")
        if len(graph.behaviors) < 2:
            raise ValueError(f"candidate features need auxiliary behaviors "
                             f"(the graph has {list(graph.behaviors)})")
        if not isinstance(neighbours, int) or \
                isinstance(neighbours, bool) or neighbours < 0:
            raise ValueError(f"'neighbours' must be an int >= 0 "
                             f"(got {neighbours!r})")
        self.graph, self.score_fn = graph, score_fn
        self.num_unvisited = num_unvisited
        self.stage_unvisited = stage_unvisited
        self.neighbours = neighbours
        self.knn = None
        if neighbours:
            from graphrec.models.heuristic import UserKNN
            model = UserKNN(graph.num_users, graph.num_items, 'all',
                            neighbours)
            self.knn = (model, model(graph))
        self.num_users, self.num_items = graph.num_users, graph.num_items
        self.links = VisitLinks(graph, graph.behaviors[:-1])
        self.item_features = item_statistics(graph)
        self.pair_keys, self.pair_features = pair_statistics(graph)
        self.user_features = torch.stack(
            [torch.log1p(graph.adjacency(b, normalize=False)
                         .user_degree.float()) for b in graph.behaviors], -1)
        self.bought = graph.adjacency(graph.target, normalize=False)
        if isinstance(drop, str):
            drop = [drop]
        check_drop(drop, graph.behaviors, neighbours)
        names = self.feature_names()
        self.drop = tuple(drop)
        self.keep = torch.tensor(
            [not any(n.startswith(p) for p in self.drop) for n in names],
            dtype=torch.float, device=graph.device)

    @property
    def num_features(self) -> int:
        r"""The feature size :math:`F`."""
        return (2 + self.links.num_links + 1 + self.item_features.size(1)
                + self.pair_features.size(1) + self.user_features.size(1)
                + 1 + (1 if self.knn is not None else 0))

    def feature_names(self) -> Sequence[str]:
        r"""One name per feature, in order."""
        return candidate_feature_names(self.graph.behaviors,
                                       self.neighbours)

    def _bought(self, user: Tensor) -> Tensor:
        out = torch.zeros(user.numel(), self.num_items, dtype=torch.bool,
                          device=user.device)
        start = self.bought.crow[user]
        row, pos = _ranges(start, self.bought.crow[user + 1] - start)
        out[row, self.bought.col[pos]] = True
        return out

    def __call__(self, user_index: Tensor) -> Candidates:
        r"""The candidates of users :obj:`[B]`."""
        _check_index('user_index', user_index, self.num_users)
        if user_index.dim() != 1:
            raise ValueError(f"'user_index' must have shape [B] "
                             f"(got {list(user_index.shape)})")
        device = self.graph.device
        user = user_index.to(device)
        scores = self.score_fn(user).float()
        links = self.links.dense(user)  # [B, I, A]
        # Items the first stage rules out (-inf) are never candidates.
        excluded = self._bought(user) | ~torch.isfinite(scores)
        finite = scores.masked_fill(excluded, 0.0)
        visited = (links.sum(-1) > 0) & ~excluded
        n_visited = visited.sum(1)
        available = (~excluded).sum(1)
        # Visited items first, then the CF's best (with neighbours), then
        # the rest, each tier in first-stage order.
        tier = 2 * visited.float()
        n_first = n_visited
        cf = None
        if self.knn is not None:
            model, emb = self.knn
            cf = model.score(emb, user).float()
            open_ = ~excluded & ~visited & (cf > 0)
            top = cf.masked_fill(~open_, float('-inf')).topk(
                min(self.num_unvisited, self.num_items), dim=1).indices
            pick = torch.zeros_like(visited).scatter_(1, top, True) & open_
            tier = tier + pick.float()
            n_first = n_visited + pick.sum(1)
            cf = cf / cf.amax(1, keepdim=True).clamp(min=1e-12)
        shift = 2 * finite.abs().amax(1, keepdim=True) + 1 \
            if user.numel() else 0.0
        priority = (finite + shift * tier).masked_fill_(excluded,
                                                        float('-inf'))
        K = max(min(int(n_first.max()) + self.stage_unvisited,
                    self.num_items), 1) if user.numel() else 1
        item = priority.topk(K, dim=1).indices
        count = torch.minimum(n_first + self.stage_unvisited, available)
        valid = torch.arange(K, device=device)[None] < count[:, None]

        s = finite.gather(1, item)
        mean = (s * valid).sum(1, keepdim=True) / \
            valid.sum(1, keepdim=True).clamp(min=1)
        lnk = links.gather(1, item.unsqueeze(-1).expand(-1, -1,
                                                        links.size(-1)))
        query = user[:, None] * self.num_items + item
        if self.pair_keys.numel():
            pos = torch.searchsorted(self.pair_keys, query).clamp_(
                max=self.pair_keys.numel() - 1)
            found = (self.pair_keys[pos] == query).unsqueeze(-1)
            pair = self.pair_features[pos] * found
        else:
            pair = s.new_zeros(*s.shape, self.pair_features.size(1))
        per_user = torch.cat([self.user_features[user],
                              torch.log1p(n_visited.float())[:, None]], -1)
        features = torch.cat([
            s.unsqueeze(-1), (s - mean).unsqueeze(-1), lnk,
            visited.gather(1, item).float().unsqueeze(-1),
            self.item_features[item], pair,
            per_user.unsqueeze(1).expand(-1, K, -1)]
            + ([cf.gather(1, item).unsqueeze(-1)] if cf is not None else []),
            dim=-1)
        features = features * valid.unsqueeze(-1) * self.keep
        return Candidates(item, features, valid, scores)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_users={self.num_users}, '
                f'num_items={self.num_items}, '
                f'num_unvisited={self.num_unvisited}, '
                + (f'stage_unvisited={self.stage_unvisited}, '
                   if self.stage_unvisited != self.num_unvisited else '')
                + f'num_features={self.num_features}'
                + (f', neighbours={self.neighbours}' if self.neighbours
                   else '')
                + (f', drop={list(self.drop)}' if self.drop else '') + ')')


class ListwiseReranker(torch.nn.Module):
    r"""Scores candidates from their features:

    .. math::
        r(x) = w^\top \hat{x} + \mathrm{MLP}(\hat{x}), \qquad
        \hat{x} = (x - \mu) / \sigma,

    with :math:`\mu, \sigma` buffers set from the fitting candidates
    (:meth:`set_scaling`) and an MLP of :obj:`num_layers` ReLU layers of
    :obj:`hidden` units (none when :obj:`hidden` is 0: a linear model).

    Args:
        num_features (int): :math:`F`.
        hidden (int): Hidden units. (default: :obj:`32`)
        num_layers (int): Hidden layers. (default: :obj:`2`)
    """
    def __init__(self, num_features: int, hidden: int = 32,
                 num_layers: int = 2):
        super().__init__()
        for name, value, low in (('num_features', num_features, 1),
                                 ('hidden', hidden, 0),
                                 ('num_layers', num_layers, 1)):
            if not isinstance(value, int) or isinstance(value, bool) \
                    or value < low:
                raise ValueError(f"'{name}' must be an int >= {low} "
                                 f"(got {value!r})")
        self.num_features, self.hidden = num_features, hidden
        self.linear = torch.nn.Linear(num_features, 1)
        layers, size = [], num_features
        for _ in range(num_layers if hidden else 0):
            layers += [torch.nn.Linear(size, hidden), torch.nn.ReLU()]
            size = hidden
        self.mlp = torch.nn.Sequential(*layers, torch.nn.Linear(size, 1)) \
            if hidden else None
        self.register_buffer('mean', torch.zeros(num_features))
        self.register_buffer('std', torch.ones(num_features))

    def reset_parameters(self) -> None:
        r"""Re-initialises the layers (the scaling stays)."""
        for m in self.modules():
            if isinstance(m, torch.nn.Linear):
                m.reset_parameters()

    @torch.no_grad()
    def set_scaling(self, features: Tensor) -> None:
        r"""Sets :math:`\mu, \sigma` from features :obj:`[N, F]`."""
        if features.dim() != 2 or features.size(1) != self.num_features:
            raise ValueError(f"'features' must have shape [N, "
                             f"{self.num_features}] (got "
                             f"{list(features.shape)})")
        self.mean.copy_(features.mean(0))
        if features.size(0) > 1:
            # A feature (nearly) constant in the fitting data keeps its
            # scale: dividing by a tiny spread would blow it up wherever it
            # varies later.
            std = features.std(0)
            self.std.copy_(torch.where(std < 1e-3, torch.ones_like(std),
                                       std))

    def forward(self, features: Tensor) -> Tensor:
        r"""Scores :obj:`[..., F] -> [...]`."""
        if features.size(-1) != self.num_features:
            raise ValueError(f"'features' must have {self.num_features} "
                             f"features in the last dimension (got shape "
                             f"{list(features.shape)})")
        x = (features - self.mean) / self.std
        out = self.linear(x)
        if self.mlp is not None:
            out = out + self.mlp(x)
        return out.squeeze(-1)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_features}, '
                f'hidden={self.hidden}, '
                f'num_layers={len(self.mlp) // 2 if self.mlp else 0})')


class RerankerBag(torch.nn.Module):
    r"""The mean score of several re-rankers fitted on the same lists from
    different initialisations and shuffles (:obj:`RerankConfig.bag`):

    .. math::
        r(x) = \frac{1}{M} \sum_{m=1}^M r_m(x).

    A re-ranker fitted on a few hundred lists (retailrocket's validation
    and carved pairs) depends on its seed; the mean of :math:`M` averages
    that part of the variance out.

    Args:
        members (Sequence[ListwiseReranker]): The re-rankers, all with the
            same :obj:`num_features`.
    """
    def __init__(self, members: Sequence[ListwiseReranker]):
        super().__init__()
        members = list(members)
        if not members or not all(isinstance(m, ListwiseReranker)
                                  for m in members):
            raise TypeError(f"'members' must be a non-empty sequence of "
                            f"ListwiseReranker (got "
                            f"{[type(m).__name__ for m in members]})")
        sizes = {m.num_features for m in members}
        if len(sizes) != 1:
            raise ValueError(f"'members' must share num_features (got "
                             f"{sorted(sizes)})")
        self.members = torch.nn.ModuleList(members)
        self.num_features = members[0].num_features

    def forward(self, features: Tensor) -> Tensor:
        r"""Scores :obj:`[..., F] -> [...]`, the members' mean."""
        return torch.stack([m(features) for m in self.members]).mean(0)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({len(self.members)} x '
                f'{self.members[0]!r})')


class RerankedScores:
    r"""A full-ranking score function :obj:`user_index -> [B, I]` from a
    re-ranker: each user's candidates get the re-ranker's scores, every
    other item a score below all of them that keeps the first-stage order.

    With :obj:`fold` (the fold of every user, :obj:`[U]`) and one re-ranker
    per fold, a user is scored by the re-ranker of her fold: the
    cross-fitted scores of :func:`graphrec.train.fit_reranker`.

    Args:
        candidates (CandidateFeatures): Candidates and features.
        reranker (ListwiseReranker or RerankerBag, or a sequence of
            them): One re-ranker, or one per fold.
        fold (Tensor, optional): The fold of every user :obj:`[U]`.
    """
    def __init__(self, candidates: CandidateFeatures, reranker,
                 fold: Optional[Tensor] = None):
        models = [reranker] if callable(reranker) and not isinstance(
            reranker, torch.nn.ModuleList) else list(reranker)
        if fold is None and len(models) != 1:
            raise ValueError(f"'fold' is needed with {len(models)} "
                             f"re-rankers")
        if fold is not None:
            if not isinstance(fold, Tensor) or fold.dtype != torch.long:
                raise TypeError(f"'fold' must be a LongTensor (got "
                                f"{getattr(fold, 'dtype', type(fold))})")
            if fold.shape != (candidates.num_users, ):
                raise ValueError(f"'fold' must have shape "
                                 f"[{candidates.num_users}] (got "
                                 f"{list(fold.shape)})")
            if fold.numel() and not 0 <= int(fold.min()) <= int(
                    fold.max()) < len(models):
                raise ValueError(f"'fold' must hold folds in [0, "
                                 f"{len(models)}) (got values in "
                                 f"[{int(fold.min())}, {int(fold.max())}])")
        self.candidates, self.models, self.fold = candidates, models, fold

    @property
    def num_items(self) -> int:
        r"""The number of items :math:`I`."""
        return self.candidates.num_items

    @torch.no_grad()
    def __call__(self, user_index: Tensor) -> Tensor:
        r"""The scores of users :obj:`[B]` for all items :obj:`[B, I]`."""
        c = self.candidates(user_index)
        score = torch.stack([m(c.features) for m in self.models])  # [M,B,K]
        if self.fold is None:
            score = score[0]
        else:
            f = self.fold.to(score.device)[user_index.to(score.device)]
            score = score.gather(0, f[None, :, None].expand(
                1, -1, score.size(-1)))[0]
        # Relative to the user's best candidate, so that the margin below
        # depends on the spread of the scores, not on their size.
        top = score.masked_fill(~c.valid, float('-inf')).amax(1, keepdim=True)
        score = score - torch.where(torch.isfinite(top), top,
                                    torch.zeros_like(top))
        low = score.masked_fill(~c.valid, float('inf')).amin(1,
                                                             keepdim=True)
        low = torch.where(torch.isfinite(low), low, torch.zeros_like(low))
        # Below every candidate, in first-stage order (-inf stays -inf).
        finite = torch.isfinite(c.scores)
        best = c.scores.masked_fill(~finite, float('-inf')).amax(
            1, keepdim=True)
        best = torch.where(torch.isfinite(best), best, torch.zeros_like(best))
        # A margin of at least a few float32 steps at |low|.
        margin = 1 + low.abs() * 2.0 ** -20
        out = torch.where(finite, c.scores - best + low - margin, c.scores)
        keep = out.gather(1, c.item)
        out.scatter_(1, c.item, torch.where(c.valid, score, keep))
        return out

    def recommend(self, user_index: Tensor, k: int = 10,
                  exclude_index: Optional[Tensor] = None,
                  chunk_size: int = 1024):
        r"""Top-:math:`k` items per user, as
        :meth:`~graphrec.models.Recommender.recommend`.

        Returns:
            :obj:`(scores [B, k], item_index [B, k])`, best first.
        """
        from graphrec.models.base import top_k
        return top_k(self, self.candidates.num_users, self.num_items,
                     user_index, k, exclude_index, chunk_size,
                     device=self.candidates.graph.device)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.candidates!r}, '
                f'rerankers={len(self.models)})')
