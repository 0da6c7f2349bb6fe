r"""Fitting a second-stage re-ranker on held-out pairs (see
:mod:`graphrec.nn.rerank`).

The held-out pairs are the validation pairs of a first stage trained
without them: to the first stage they are unseen purchases, as the test
purchases will be. The re-ranker is fitted with a softmax over each user's
candidates (the held-out item is the class). Since that uses the validation
pairs, its own validation figure is *cross-fitted*: users are split into
folds, each fold is scored by a re-ranker fitted on the others, and the
re-ranker used on test is fitted on all of them.

With :obj:`RerankConfig.carves` the re-ranker also fits on purchases held
out of the first stage's own train graph (:func:`carve_graph`). The first
stage trained on those, so they enter without its score and without its
choice of candidates (see :class:`RerankConfig`).
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from graphrec.data.dataset import pair_keys
from graphrec.data.graph import BehaviorGraph
from graphrec.nn.rerank import (
    CandidateFeatures,
    ListwiseReranker,
    RerankedScores,
    RerankerBag,
)
from graphrec.nn.visited import _check_index

__all__ = ['RerankConfig', 'Reranked', 'carve_graph', 'fit_reranker',
           'second_stage_scores']


@dataclass
class RerankConfig:
    r"""Settings of :func:`fit_reranker`.

    Args:
        num_unvisited (int): Unvisited candidates per user, the first
            stage's best. (default: :obj:`100`)
        hidden (int): Hidden units of the MLP; 0 for a linear re-ranker.
            (default: :obj:`32`)
        num_layers (int): Hidden layers. (default: :obj:`2`)
        epochs (int): Passes over the fitting lists (the held-out pairs'
            and the carved ones). (default: :obj:`5`)
        lr (float): Adam learning rate. (default: :obj:`0.003`)
        weight_decay (float): Adam weight decay. (default: :obj:`1e-5`)
        batch_size (int): Fitting lists per step. (default: :obj:`128`)
        folds (int): Folds of the cross-fitted validation figure; 1 for
            none. (default: :obj:`2`)
        chunk_size (int): Users whose candidates are built at once.
            (default: :obj:`512`)
        seed (int): Seed of the folds, the shuffles and the initialisation;
            :func:`~graphrec.train.run_experiment` gives it the run's seed
            unless set. (default: :obj:`0`)
        merge_validation (bool): In :func:`~graphrec.train.run_experiment`,
            build the test candidates, their features and the first-stage
            scores on the train graph with the validation pairs put back
            (the user's whole train history, as each fitting pair had the
            rest of its user's; before it in time only for a split by time),
            rather than on the first stage's train graph.
            On tmall this scored higher in a nested validation (a first
            stage and re-ranker fitted inside train minus validation, scored
            on the validation pairs with either graph).
            (default: :obj:`False`)
        drop (List[str]): Features left out (set to zero), by name prefix
            of :meth:`CandidateFeatures.feature_names`, for ablations.
            (default: none)
        neighbours (int): With :math:`k > 0`, user-based collaborative
            filtering (:class:`~graphrec.models.UserKNN`, :math:`k`
            neighbours) adds its best unvisited items to the candidates and
            its score to the features (see :class:`CandidateFeatures`).
            (default: :obj:`0`, off)
        carves (int): More fitting lists, carved from the first stage's
            train graph (:func:`carve_graph`): :obj:`carves` times, one
            train purchase of every user with at least two is held out at
            random, and each held-out item among its user's candidates
            adds a softmax over those, with candidates and features built
            on the graph without them. The first stage trained on these
            purchases, so its scores must not enter: :obj:`drop` has to
            cover :obj:`'score'`, and the carved lists hold the visited
            candidates and, with :obj:`neighbours`, the collaborative
            filter's, never the first stage's (its choice would know the
            held-out items). The draws are independent, so a user with
            two purchases may give the same list twice; and the carved
            graph has one purchase per user fewer than the validation
            lists' graph. (default: :obj:`0`, off)
        bag (int): Re-rankers fitted per fit (each fold's and the final
            one) from different initialisations and shuffles of the same
            lists; their mean score ranks (:class:`RerankerBag`). 1 fits
            one re-ranker, exactly as before the option. (default: :obj:`1`)
        carve_auxiliary (bool, optional): Remove the carved pairs from the
            auxiliary behaviors too, as
            :func:`~graphrec.data.split.carve_validation` does with
            :obj:`drop_auxiliary` (where no test item was viewed or carted,
            as in retailrocket's release). :obj:`None` decides from the
            held-out pairs: on where none of them is in an auxiliary
            behavior of the graph. (default: :obj:`None`)
    """
    num_unvisited: int = 100
    hidden: int = 32
    num_layers: int = 2
    epochs: int = 5
    lr: float = 3e-3
    weight_decay: float = 1e-5
    batch_size: int = 128
    folds: int = 2
    chunk_size: int = 512
    seed: int = 0
    merge_validation: bool = False
    drop: List[str] = dataclasses.field(default_factory=list)
    neighbours: int = 0
    carves: int = 0
    carve_auxiliary: Optional[bool] = None
    bag: int = 1

    def __post_init__(self):
        for name, low in (('num_unvisited', 0), ('neighbours', 0),
                          ('carves', 0), ('bag', 1),
                          ('hidden', 0),
                          ('num_layers', 1), ('epochs', 1),
                          ('batch_size', 1), ('folds', 1),
                          ('chunk_size', 1), ('seed', 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) \
                    or value < low:
                raise ValueError(f"RerankConfig '{name}' must be an int >= "
                                 f"{low} (got {value!r})")
        if not isinstance(self.merge_validation, bool):
            raise ValueError(f"RerankConfig 'merge_validation' must be a "
                             f"bool (got {self.merge_validation!r})")
        if self.carve_auxiliary is not None and not isinstance(
                self.carve_auxiliary, bool):
            raise ValueError(f"RerankConfig 'carve_auxiliary' must be a "
                             f"bool or None (got {self.carve_auxiliary!r})")
        if isinstance(self.drop, str) or not all(
                isinstance(p, str) for p in self.drop):
            raise ValueError(f"RerankConfig 'drop' must be a list of "
                             f"feature-name prefixes (got {self.drop!r})")
        self.drop = list(self.drop)
        if self.carves and not all(
                any(n.startswith(p) for p in self.drop)
                for n in ('score', 'score_centered')):
            raise ValueError(f"RerankConfig 'carves' needs the first-stage "
                             f"score dropped (drop=['score']): the first "
                             f"stage trained on the carved purchases (got "
                             f"drop={self.drop!r})")
        for name in ('lr', 'weight_decay'):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(
                    value, (int, float)) or not value >= 0 or (
                    name == 'lr' and value == 0):
                raise ValueError(f"RerankConfig '{name}' must be a "
                                 f"{'positive' if name == 'lr' else '>= 0'}"
                                 f" number (got {value!r})")

    def to_dict(self) -> Dict[str, Any]:
        r"""The settings as a plain dict."""
        return dataclasses.asdict(self)


@dataclass
class Reranked:
    r"""A fitted second stage.

    Attributes:
        score_fn (RerankedScores): Full-ranking scores with the re-ranker
            fitted on all held-out pairs (for test).
        cross_fitted (RerankedScores or None): Each held-out user scored by
            the re-ranker of the folds she is not in (for an honest
            validation figure); :obj:`None` with one fold.
        reranker (ListwiseReranker or RerankerBag): The re-ranker fitted
            on all pairs (a :class:`RerankerBag` with :obj:`config.bag` > 1).
        candidates (CandidateFeatures): Candidates and features.
        losses (List[float]): Mean training loss per epoch of the final fit
            (with :obj:`config.bag` > 1, averaged over the members).
        coverage (float): Share of held-out pairs (not counting the carved
            ones) whose item is a candidate (the others cannot be ranked
            first and are left out of the loss).
        seconds (float): Time of the whole fit.
        carved_lists (int): Fitting lists from :obj:`config.carves`.
    """
    score_fn: RerankedScores
    cross_fitted: Any
    reranker: Any
    candidates: CandidateFeatures
    losses: List[float]
    coverage: float
    seconds: float
    carved_lists: int = 0


def carve_graph(graph: BehaviorGraph, generator: torch.Generator,
                drop_auxiliary: bool = False
                ) -> Tuple[BehaviorGraph, Tensor]:
    r"""Holds out one target edge, drawn at random, of every user with at
    least two.

    Args:
        graph (BehaviorGraph): The graph.
        generator (torch.Generator): The draw's random source.
        drop_auxiliary (bool): Remove the held-out pairs from the auxiliary
            behaviors too. (default: :obj:`False`)

    Returns:
        :obj:`(graph, pairs)`: the graph without them (the auxiliary
        behaviors unchanged unless :obj:`drop_auxiliary`) and the held-out
        pairs :obj:`[2, N]`.
    """
    from graphrec.data.split import _pick_one_per_user
    edges = graph.edge_index_dict[graph.target]
    key = torch.rand(edges.size(1), generator=generator)
    pick = _pick_one_per_user(edges[0].cpu(), key).to(edges.device)
    keep = torch.ones(edges.size(1), dtype=torch.bool, device=edges.device)
    keep[pick] = False
    times = dict(graph.timestamps)
    if times.get(graph.target) is not None:
        t = times[graph.target]
        times[graph.target] = t[keep.to(t.device)]
    edge_index_dict = {**graph.edge_index_dict, graph.target: edges[:, keep]}
    if drop_auxiliary:
        held = pair_keys(edges[:, pick], graph.num_items)
        for b in graph.behaviors[:-1]:
            out = torch.isin(pair_keys(edge_index_dict[b], graph.num_items),
                             held)
            edge_index_dict[b] = edge_index_dict[b][:, ~out]
            if times.get(b) is not None:
                times[b] = times[b][~out.to(times[b].device)]
    carved = BehaviorGraph(graph.num_users, graph.num_items,
                           edge_index_dict, graph.behaviors, times)
    return carved, edges[:, pick]


def _carved_lists(graph: BehaviorGraph, pairs: Tensor, config: RerankConfig,
                  generator: torch.Generator, fold_of_user: Tensor) -> list:
    r"""The fitting lists of :obj:`config.carves` (see :class:`RerankConfig`):
    chunks of :obj:`(features, valid, target, fold)` over the visited and
    the collaborative filter's candidates, without any first-stage score.
    """
    def no_score(user: Tensor) -> Tensor:
        return torch.zeros(user.numel(), graph.num_items,
                           device=graph.device)

    drop_auxiliary = config.carve_auxiliary
    if drop_auxiliary is None:  # as the held-out pairs were carved
        seen = pair_keys(graph.edge_index(graph.behaviors[:-1]),
                         graph.num_items)
        drop_auxiliary = not bool(torch.isin(
            pair_keys(pairs, graph.num_items), seen).any())
    chunks = []
    for _ in range(config.carves):
        carved, extra = carve_graph(graph, generator, drop_auxiliary)
        candidates = CandidateFeatures(carved, no_score, config.num_unvisited,
                                       config.drop, config.neighbours,
                                       stage_unvisited=0)
        # The validation pairs are purchases too: never negatives.
        held = torch.unique(pair_keys(torch.cat([extra, pairs], 1),
                                      graph.num_items))
        # Users with similar numbers of visited items share a chunk, so
        # that little of it is padding.
        degree = carved.adjacency(carved.behaviors[:-1],
                                  normalize=False).user_degree
        extra = extra[:, torch.argsort(degree[extra[0]])]
        chunks += _fitting_lists(candidates, extra, held, config.chunk_size,
                                 fold_of_user)
    return chunks


def _fitting_lists(candidates: CandidateFeatures, pairs: Tensor,
                   held: Tensor, chunk_size: int,
                   fold_of_user: Tensor) -> list:
    r"""Chunks of :obj:`(features, valid, target, fold)`, one softmax per
    pair of :obj:`pairs` whose item is among its user's candidates (see
    :func:`softmax_rows`; :obj:`held` are the keys of every held-out pair).
    """
    chunks = []
    for s in range(0, pairs.size(1), chunk_size):
        user, item = pairs[0, s:s + chunk_size], pairs[1, s:s + chunk_size]
        c = candidates(user)
        valid, target = softmax_rows(user, item, c.item, c.valid, held,
                                     candidates.num_items)
        keep = target >= 0
        if bool(keep.any()):
            chunks.append((c.features[keep], valid[keep], target[keep],
                           fold_of_user[user[keep]]))
    return chunks


def softmax_rows(user: Tensor, item: Tensor, cand_item: Tensor,
                 cand_valid: Tensor, held: Tensor,
                 num_items: int) -> tuple:
    r"""The classes of each held-out pair's softmax: her valid candidates
    less her other held-out items (positives, not negatives), and the
    position of the pair's item among them (-1 where it is no candidate).

    Args:
        user (Tensor): The pairs' users :obj:`[B]`.
        item (Tensor): The pairs' items :obj:`[B]`.
        cand_item (Tensor): Their users' candidates :obj:`[B, C]`.
        cand_valid (Tensor): Which candidate slots are real :obj:`[B, C]`.
        held (Tensor): Sorted unique keys ``user * num_items + item`` of
            every held-out pair.
        num_items (int): Items of the graph.
    """
    match = (cand_item == item[:, None]) & cand_valid
    other = torch.isin(user[:, None] * num_items + cand_item, held) & ~match
    target = torch.where(match.any(1), match.float().argmax(1),
                         torch.full_like(item, -1))
    return cand_valid & ~other, target


def fit_reranker(graph: BehaviorGraph, score_fn: Callable[[Tensor], Tensor],
                 pairs: Tensor, config: RerankConfig = None,
                 progress: bool = False) -> Reranked:
    r"""Fits a :class:`~graphrec.nn.rerank.ListwiseReranker` on held-out
    (user, item) :obj:`pairs` :obj:`[2, N]` over the candidates of a first
    stage.

    Args:
        graph (BehaviorGraph): The first stage's train graph (without the
            held-out pairs).
        score_fn (Callable): The first stage's scores,
            :obj:`user_index -> [B, I]`.
        pairs (Tensor): Held-out pairs :obj:`[2, N]`, e.g.
            :obj:`dataset.valid`. A user with several has one softmax per
            pair, over her candidates less her other held-out items (which
            are positives too, not negatives).
        config (RerankConfig, optional): Settings.
        progress (bool): A progress bar over the epochs.
    """
    config = config or RerankConfig()
    if not isinstance(config, RerankConfig):
        raise TypeError(f"'config' must be a RerankConfig "
                        f"(got {type(config).__name__})")
    if not isinstance(pairs, Tensor):
        raise TypeError(f"'pairs' must be a tensor [2, N] of held-out "
                        f"(user, item) pairs (got {type(pairs).__name__})")
    if pairs.dim() != 2 or pairs.size(0) != 2 or pairs.size(1) == 0:
        raise ValueError(f"'pairs' must be a non-empty tensor [2, N] of "
                         f"held-out (user, item) pairs (got shape "
                         f"{list(pairs.shape)})")
    _check_index('pairs[0]', pairs[0], graph.num_users)
    _check_index('pairs[1]', pairs[1], graph.num_items)
    start = time.perf_counter()
    candidates = CandidateFeatures(graph, score_fn, config.num_unvisited,
                                   config.drop, config.neighbours)
    pairs = pairs.long().to(graph.device)
    gen = torch.Generator().manual_seed(config.seed)
    fold_of_user = torch.randint(config.folds, (graph.num_users, ),
                                 generator=gen).to(graph.device)

    # Candidates of every held-out pair, built once: the first stage is
    # fixed.
    held = torch.unique(pair_keys(pairs, graph.num_items))
    chunks = _fitting_lists(candidates, pairs, held, config.chunk_size,
                            fold_of_user)
    covered = sum(int(c[2].numel()) for c in chunks)
    coverage = covered / pairs.size(1)
    if covered == 0:
        raise ValueError(f"none of the {pairs.size(1)} held-out items is "
                         f"among its user's candidates (visited items and "
                         f"num_unvisited={config.num_unvisited} others): "
                         f"raise 'num_unvisited'")
    per_fold = torch.bincount(torch.cat([c[3] for c in chunks]),
                              minlength=config.folds)
    if config.folds > 1 and bool((per_fold == covered).any()):
        raise ValueError(f"'folds': every held-out pair among the "
                         f"candidates falls in one of the {config.folds} "
                         f"folds (pairs per fold {per_fold.tolist()}), so "
                         f"another fold has nothing to fit on; use more "
                         f"pairs or folds=1")
    carved = _carved_lists(graph, pairs, config, gen, fold_of_user) \
        if config.carves else []
    chunks += carved

    def fit(exclude_fold: int, bar) -> tuple:
        data = [(f, v, t) if bool(k.all()) else (f[k], v[k], t[k])
                for f, v, t, fo in chunks for k in [fo != exclude_fold]
                if bool(k.any())]
        members, losses = [], []
        for member in range(config.bag):
            model, member_losses = fit_one(data, exclude_fold, member, bar)
            members.append(model)
            losses.append(member_losses)
        losses = [sum(epoch) / len(epoch) for epoch in zip(*losses)]
        return (members[0] if config.bag == 1 else
                RerankerBag(members).eval()), losses

    def fit_one(data: list, exclude_fold: int, member: int, bar) -> tuple:
        with torch.random.fork_rng(devices=[]):
            # Member 0 has the seed a single re-ranker always had.
            torch.manual_seed(config.seed + exclude_fold + 1
                              + 1_000_003 * member)
            model = ListwiseReranker(candidates.num_features, config.hidden,
                                     config.num_layers).to(graph.device)
        rows = torch.cat([f[v] for f, v, _ in data])
        sample = torch.randperm(rows.size(0), generator=gen)[:1_000_000]
        model.set_scaling(rows[sample.to(rows.device)])
        del rows
        opt = torch.optim.Adam(model.parameters(), lr=config.lr,
                               weight_decay=config.weight_decay)
        losses = []
        for _ in range(config.epochs):
            total, count = 0.0, 0
            order = torch.randperm(len(data), generator=gen).tolist()
            for c in order:
                f, v, t = data[c]
                perm = torch.randperm(t.numel(), generator=gen)
                for b in range(0, t.numel(), config.batch_size):
                    idx = perm[b:b + config.batch_size].to(f.device)
                    logit = model(f[idx]).masked_fill(~v[idx],
                                                      float('-inf'))
                    loss = F.cross_entropy(logit, t[idx])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    total += loss.item() * idx.numel()
                    count += idx.numel()
            losses.append(total / max(count, 1))
            if bar is not None:
                bar.update(1)
        return model.eval(), losses

    folds = config.folds if config.folds > 1 else 0
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=config.epochs * (folds + 1) * config.bag,
                   desc='re-ranker', unit='epoch')
    try:
        fold_models = [fit(f, bar)[0] for f in range(folds)]
        reranker, losses = fit(-1, bar)  # every pair
    finally:
        if bar is not None:
            bar.close()
    return Reranked(
        score_fn=RerankedScores(candidates, reranker),
        cross_fitted=RerankedScores(candidates, fold_models, fold_of_user)
        if folds else None,
        reranker=reranker, candidates=candidates, losses=losses,
        coverage=coverage, seconds=time.perf_counter() - start,
        carved_lists=sum(int(c[2].numel()) for c in carved))


def second_stage_scores(model, dataset, reranker,
                config: RerankConfig) -> RerankedScores:
    r"""The test-time score function of a fitted second stage over
    :obj:`model` (the first stage, trained without the validation pairs):
    candidates, features and first-stage scores on the train graph of
    :obj:`dataset`, with its validation pairs put back when
    :obj:`config.merge_validation` is set.
    """
    from graphrec.train.experiment import merge_validation
    data = (merge_validation(dataset) if config.merge_validation
            and dataset.valid is not None else dataset)
    device = next(reranker.buffers()).device
    graph = BehaviorGraph.from_dataset(data).to(device)
    return RerankedScores(
        CandidateFeatures(graph, model.score_fn(graph), config.num_unvisited,
                          config.drop, config.neighbours), reranker)
