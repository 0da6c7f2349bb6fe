r"""A model-agnostic wrapper putting causal and fusion plug-ins on any
backbone (MCLMR's model-agnostic framework; MUSENET's latent scenarios).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from graphrec.data.dataset import pair_keys
from graphrec.data.graph import BehaviorGraph
from graphrec.models.base import Recommender
from graphrec.models.mf import MF, LightGCN
from graphrec.models.multi import MultiBehaviorRecommender
from graphrec.nn.causal import LatentScenarios, StratifiedBackdoor
from graphrec.nn.contrastive import BiasAwareContrastive, quantile_strata
from graphrec.nn.fusion import MoEFusion
from graphrec.nn.visited import (
    VisitedAwareHead,
    _ranges,
    item_statistics,
    pair_statistics,
    visited_share,
)

__all__ = ['PluginRecommender', 'item_popularity_strata',
           'user_activity_strata']


def _degree(graph: BehaviorGraph, behaviors, side: str) -> Tensor:
    edges = graph.edge_index(behaviors)
    row, size = ((edges[1], graph.num_items) if side == 'item' else
                 (edges[0], graph.num_users))
    return torch.bincount(row, minlength=size)


def _strata(graph: BehaviorGraph, num_strata: int, behaviors,
            side: str):
    stratum = quantile_strata(_degree(graph, behaviors, side), num_strata)
    target = graph.edge_index_dict[graph.target]
    of_pair = stratum[target[1] if side == 'item' else target[0]]
    prior = torch.bincount(of_pair, minlength=num_strata).float()
    return stratum, prior / prior.sum().clamp_min(1)


def item_popularity_strata(graph: BehaviorGraph, num_strata: int = 4,
                           behaviors: Union[str, Sequence[str]] = 'all'):
    r"""Item popularity strata: quantiles of the items' train degree over
    :obj:`behaviors`, and the prior :math:`P(c)`, the share of train target
    pairs whose item is in stratum :math:`c`.

    Returns:
        :obj:`(stratum [I], prior [K])`.
    """
    return _strata(graph, num_strata, behaviors, 'item')


def user_activity_strata(graph: BehaviorGraph, num_strata: int = 4,
                         behaviors: Union[str, Sequence[str]] = 'all'):
    r"""User activity strata: quantiles of the users' train degree over
    :obj:`behaviors`, and the prior :math:`P(c)` over train target pairs.

    Returns:
        :obj:`(stratum [U], prior [K])`.
    """
    return _strata(graph, num_strata, behaviors, 'user')


class _Links:
    # Membership of (user, item) pairs in each auxiliary behavior's train
    # edges: sorted pair keys for given pairs, CSR rows for all items.
    def __init__(self, graph: BehaviorGraph, behaviors: Sequence[str],
                 features: Optional[Tuple[Tensor, Tensor]] = None):
        # 'features': (sorted keys, values [E, G]) of linked pairs, e.g.
        # pair_statistics(graph); looked up by features() / dense_features().
        self.num_items = graph.num_items
        self.feature_keys, self.feature_values = features or (None, None)
        self.keys = [torch.unique(pair_keys(graph.edge_index_dict[b],
                                            graph.num_items))
                     for b in behaviors]
        self.adj = [graph.adjacency(b) for b in behaviors]

    def pairs(self, user: Tensor, item: Tensor) -> Tensor:
        user, item = torch.broadcast_tensors(user, item)
        key = user.long() * self.num_items + item.long()
        out = []
        for keys in self.keys:
            if keys.numel() == 0:
                out.append(torch.zeros_like(key, dtype=torch.float))
                continue
            pos = torch.searchsorted(keys, key).clamp_max(keys.numel() - 1)
            out.append((keys[pos] == key).float())
        return torch.stack(out, -1)

    def _rows(self, adj, user: Tensor) -> Tensor:
        # Keys row * I + item of the CSR rows of 'user' (rows = positions).
        start = adj.crow[user]
        row, pos = _ranges(start, adj.crow[user + 1] - start)
        return row * self.num_items + adj.col[pos]

    def sparse(self, user: Tensor):
        # The linked (row, item) pairs of 'user' against all items and their
        # indicators: (pair_index [2, E], value [E, A]).
        keys = [self._rows(adj, user) for adj in self.adj]
        union = torch.unique(torch.cat(keys)) if keys else \
            torch.zeros(0, dtype=torch.long, device=user.device)
        value = torch.stack([torch.isin(union, k) for k in keys], -1) \
            if keys else union.new_zeros(0, 0)
        index = torch.stack([union // self.num_items,
                             union % self.num_items])
        return index, value.float()

    def features(self, user: Tensor, item: Tensor) -> Tensor:
        # [..., G] features of the pairs; zero for pairs without any.
        user, item = torch.broadcast_tensors(user, item)
        key = user.long() * self.num_items + item.long()
        keys, values = self.feature_keys, self.feature_values
        if keys.numel() == 0:  # no visited pair at all
            return values.new_zeros(*key.shape, values.size(1))
        pos = torch.searchsorted(keys, key).clamp_max(keys.numel() - 1)
        found = (keys[pos] == key).unsqueeze(-1)
        return torch.where(found, values[pos], values.new_zeros(()))

    def dense_features(self, user: Tensor) -> Tensor:
        # [B, I, G] features of 'user' against all items.
        keys, values = self.feature_keys, self.feature_values
        out = values.new_zeros(user.numel(), self.num_items, values.size(1))
        lo = torch.searchsorted(keys, user.long() * self.num_items)
        hi = torch.searchsorted(keys, (user.long() + 1) * self.num_items)
        row, pos = _ranges(lo, hi - lo)
        out[row, keys[pos] % self.num_items] = values[pos]
        return out

    def dense(self, user: Tensor) -> Tensor:
        # [B, I, A] indicators of 'user' against all items.
        index, value = self.sparse(user)
        out = value.new_zeros(user.numel(), self.num_items, len(self.adj))
        out[index[0], index[1]] = value
        return out


class PluginRecommender(Recommender):
    r"""Any backbone with causal and fusion plug-ins, each switched by one
    constructor argument (MCLMR, "model-agnostic causal learning for
    multi-behavior recommendation"; MUSENET, Xu et al., WSDM 2023).

    Target logits are built in stages on the backbone's embeddings
    (per-behavior :math:`p^b_u, q^b_i` and fused :math:`p_u, q_i`):

    1. base: the backbone's own target score, or with :obj:`fusion='moe'` a
       gated mixture of per-behavior experts
       (:class:`~graphrec.nn.fusion.MoEFusion`, :obj:`gate='user'` or
       :obj:`'pair'`; the pair gate sees which auxiliary behaviors link the
       pair). With :obj:`visited_head=True`, MUSENET's repeat / explore
       mixture on :math:`p_u, q_i` and the pair's links
       (:class:`~graphrec.nn.visited.VisitedAwareHead`, its repeat-intent
       loss weighted by :obj:`beta`) scores the target; when MoE fusion or
       cascaded heads give a base score, it is added to both of the head's
       mode scores. A backbone with NMTR's cascaded heads keeps its chained
       target logit (with its item biases) in every case, the fusion score
       adding to it;
    2. :obj:`backdoor='popularity'` / :obj:`'activity'`: a stratum term,
       trained with the pair's own item popularity / user activity stratum
       and summed over strata with the prior :math:`P(c)` for prediction
       (:class:`~graphrec.nn.causal.StratifiedBackdoor`);
       :obj:`backdoor='latent'`: MUSENET's latent scenarios
       (:class:`~graphrec.nn.causal.LatentScenarios`), whose KL and
       repeat terms come through :meth:`auxiliary_loss`;
    3. :obj:`contrastive` :math:`> 0`: MCLMR's bias-aware contrastive
       alignment of each auxiliary behavior's user embeddings with the
       target's (:class:`~graphrec.nn.contrastive.BiasAwareContrastive`,
       negatives weighted by user activity stratum, :obj:`contrastive` the
       loss weight), through :meth:`auxiliary_loss`.

    MoE fusion and contrastive alignment need per-behavior embeddings:
    with :obj:`'mf'` and :obj:`'lightgcn'` (or a given backbone such as
    NMTR that shares one table between behaviors) every behavior has the
    same ones, so the experts would be identical (the gate would get no
    gradient: any gate gives the same score) and the alignment's positive
    view would be the anchor itself; they are refused with an error there.

    Strata, link indicators and repeat shares are computed from the
    :class:`~graphrec.data.BehaviorGraph` given to :meth:`forward` and
    cached per graph. Non-target behaviors are scored by the backbone. With
    every plug-in off the wrapper returns the backbone's outputs unchanged.

    The backdoor and fusion modules act on :meth:`score_behavior` of the
    target; the stratum term uses the pair's actual stratum while the
    model is in training mode (:meth:`train`) and the backdoor sum in
    evaluation mode (what :meth:`score_fn` uses).

    Args:
        num_users (int): Number of users.
        num_items (int): Number of items.
        behaviors (Sequence[str]): Behaviors in cascade order, target last.
        backbone (str or Recommender): :obj:`'mf'` (one embedding table
            shared by every behavior), :obj:`'lightgcn'`, :obj:`'parallel'`
            or :obj:`'cascade'` (:class:`MultiBehaviorRecommender`
            encoders), or a built :class:`Recommender`.
            (default: :obj:`'mf'`)
        embedding_dim (int): Embedding size of a named backbone.
            (default: :obj:`64`)
        num_layers (int): Convolutions of a named graph backbone.
            (default: :obj:`2`)
        backbone_kwargs (Dict[str, Any], optional): Further arguments of a
            named backbone, e.g. :obj:`{'behaviors': 'all'}` for LightGCN or
            :obj:`{'transform': 'linear'}` for the cascade.
        fusion (str, optional): :obj:`None`, :obj:`'moe'`, or
            :obj:`'mean'` (the same experts under a fixed uniform gate: the
            ablation of the routing).
        gate (str): MoE gate, :obj:`'user'` or :obj:`'pair'`.
            (default: :obj:`'user'`)
        backdoor (str, optional): :obj:`None`, :obj:`'popularity'`,
            :obj:`'activity'` or :obj:`'latent'`.
        num_strata (int): Strata or latent scenarios :math:`K`.
            (default: :obj:`4`)
        strata_behaviors (str or Sequence[str]): Behaviors counted for the
            popularity / activity strata. (default: :obj:`'all'`)
        backdoor_mean (str): Observed strata mixed in :obj:`'logit'` or
            :obj:`'prob'` space. (default: :obj:`'logit'`)
        scenario_assignment (str): :obj:`'soft'` or :obj:`'hard'`.
            (default: :obj:`'soft'`)
        scenario_predict (str): :obj:`'assignment'` or :obj:`'prior'`.
            (default: :obj:`'assignment'`)
        tau (float): Gumbel temperature. (default: :obj:`0.1`)
        alpha (float): Prototype moving average. (default: :obj:`0.2`)
        kl_weight (float): Weight of the KL term. (default: :obj:`1.0`)
        beta (float): Weight of the repeat losses (latent scenarios, visited
            head). (default: :obj:`0.1`)
        visited_head (bool): Score the target with the visited-aware head.
            (default: :obj:`False`)
        item_features (bool): Give the visited-aware head the items' train
            counts and conversion rates
            (:func:`~graphrec.nn.visited.item_statistics`), so that its
            repeat mode can order a user's visited items by how often they
            convert. (default: :obj:`False`)
        leave_one_out (bool): With :obj:`item_features`, a training pair
            that is a train target interaction (a positive) gets the item
            statistics with that interaction left out
            (:func:`~graphrec.nn.visited.item_statistics` with
            :obj:`leave_one_out=True`), as a held-out purchase has them;
            otherwise every positive looks bought at least once and the head
            learns to favour items with purchases more than held-out
            purchases warrant. Evaluation always uses the plain statistics.
            (default: :obj:`False`)
        pair_features (bool): Give the visited-aware head item-neighbourhood
            scores of each visited pair
            (:func:`~graphrec.nn.visited.pair_statistics`: how strongly the
            user's bought, viewed, ... items point at the item through other
            users), so that its repeat mode can order a user's visited items
            by collaborative evidence too. (default: :obj:`False`)
        feature_lr (float): Multiplier of the training learning rate for the
            weights of the fixed item and pair features in the
            visited-aware head (:meth:`parameter_groups`): they start at zero
            and, at a learning rate suited to embeddings, barely move before
            the embeddings peak. (default: :obj:`1.0`)
        contrastive (float): Weight of the bias-aware contrastive term;
            :obj:`0` turns it off. (default: :obj:`0.0`)
        contrastive_users (int): At most this many of the batch's target
            pairs give the users of the in-batch contrastive term, whose
            cost is quadratic in them. (default: :obj:`1024`)
        chunk_size (int): Users per chunk of all-item scoring of
            non-decomposable plug-ins. (default: :obj:`256`)

    Example:
        >>> model = PluginRecommender(100, 50, ('view', 'buy'),
        ...                           backbone='lightgcn', fusion='moe',
        ...                           backdoor='popularity')
        >>> emb = model(graph)
        >>> model.score(emb, torch.tensor([0, 1])).shape
        torch.Size([2, 50])
    """
    needs_behaviors = True
    backbones = ('mf', 'lightgcn', 'parallel', 'cascade')
    fusions = (None, 'moe', 'mean')
    backdoors = (None, 'popularity', 'activity', 'latent')

    def __init__(self, num_users: int, num_items: int,
                 behaviors: Sequence[str],
                 backbone: Union[str, Recommender] = 'mf',
                 embedding_dim: int = 64, num_layers: int = 2,
                 backbone_kwargs: Optional[Dict[str, Any]] = None,
                 fusion: Optional[str] = None, gate: str = 'user',
                 backdoor: Optional[str] = None, num_strata: int = 4,
                 strata_behaviors: Union[str, Sequence[str]] = 'all',
                 backdoor_mean: str = 'logit',
                 scenario_assignment: str = 'soft',
                 scenario_predict: str = 'assignment', tau: float = 0.1,
                 alpha: float = 0.2, kl_weight: float = 1.0,
                 beta: float = 0.1, visited_head: bool = False,
                 item_features: bool = False, pair_features: bool = False,
                 leave_one_out: bool = False, feature_lr: float = 1.0,
                 contrastive: float = 0.0, contrastive_users: int = 1024,
                 chunk_size: int = 256):
        super().__init__(num_users, num_items)
        if isinstance(behaviors, str) or not behaviors:
            raise ValueError(f"'behaviors' must be a non-empty sequence of "
                             f"names, target last (got {behaviors!r})")
        for arg, value, choices in (('fusion', fusion, self.fusions),
                                    ('backdoor', backdoor, self.backdoors)):
            if value not in choices:
                raise ValueError(f"'{arg}' must be one of {choices} "
                                 f"(got {value!r})")
        for name, value in (('chunk_size', chunk_size),
                            ('contrastive_users', contrastive_users)):
            if not isinstance(value, int) or isinstance(value, bool) \
                    or value < 1:
                raise ValueError(f"'{name}' must be a positive int "
                                 f"(got {value!r})")
        if not isinstance(visited_head, bool):
            raise TypeError(f"'visited_head' must be a bool "
                            f"(got {visited_head!r})")
        if not isinstance(feature_lr, (int, float)) \
                or isinstance(feature_lr, bool) or not feature_lr > 0:
            raise ValueError(f"'feature_lr' must be a positive multiplier "
                             f"(got {feature_lr!r})")
        if not isinstance(contrastive, (int, float)) or contrastive < 0:
            raise ValueError(f"'contrastive' must be a non-negative weight "
                             f"(got {contrastive!r})")
        if not isinstance(leave_one_out, bool):
            raise TypeError(f"'leave_one_out' must be a bool "
                            f"(got {leave_one_out!r})")
        if leave_one_out and not item_features:
            raise ValueError("'leave_one_out' changes the item statistics of "
                             "the visited-aware head; it needs "
                             "item_features=True")
        for name, value in (('item_features', item_features),
                            ('pair_features', pair_features)):
            if value and not visited_head:
                raise ValueError(f"'{name}' feed the visited-aware head; "
                                 f"they need visited_head=True")
        if (visited_head or contrastive) and len(behaviors) < 2:
            raise ValueError(f"'visited_head' and 'contrastive' need "
                             f"auxiliary behaviors (got {behaviors!r})")
        if (fusion or contrastive) and backbone in ('mf', 'lightgcn'):
            raise ValueError(self._single_embedding_error(
                backbone, fusion, contrastive))
        self.behaviors = tuple(behaviors)
        self.target = self.behaviors[-1]
        self.auxiliary = self.behaviors[:-1]
        self.backbone_name = (backbone if isinstance(backbone, str) else
                              type(backbone).__name__)
        self.backbone = self._build_backbone(backbone, embedding_dim,
                                             num_layers,
                                             dict(backbone_kwargs or {}))
        dim = self._embedding_dim(self.backbone)
        self.embedding_dim = dim
        self.chunk_size = chunk_size
        self.feature_lr = float(feature_lr)
        self.leave_one_out = leave_one_out
        self.contrastive_users = contrastive_users
        self.fusion_kind, self.backdoor_kind = fusion, backdoor
        self.strata_behaviors = strata_behaviors
        self.fusion = self.backdoor = self.visited = self.contrastive = None
        self.num_strata, self.beta = num_strata, float(beta)
        if fusion in ('moe', 'mean'):
            self.fusion = MoEFusion(self.behaviors, dim, gate,
                                    len(self.auxiliary) if gate == 'pair'
                                    else 0)
            if fusion == 'mean':
                # The gate stays at its uniform start: a plain mean of the
                # experts (the ablation of the routing).
                for name, param in self.fusion.named_parameters():
                    if name.startswith('gate_'):
                        param.requires_grad_(False)
        if backdoor in ('popularity', 'activity'):
            side = 'item' if backdoor == 'popularity' else 'user'
            self.backdoor = StratifiedBackdoor(
                num_strata, dim, num_items if side == 'item' else num_users,
                side, backdoor_mean)
        elif backdoor == 'latent':
            self.backdoor = LatentScenarios(
                dim, num_strata, max(dim // 4, 2), scenario_assignment, tau,
                alpha, kl_weight, beta, scenario_predict)
        if visited_head:
            self.visited = VisitedAwareHead(
                dim, len(self.auxiliary), num_item_features=(
                    2 * len(self.behaviors) - 1 if item_features else 0),
                num_pair_features=(2 * len(self.behaviors) - 1
                                   if pair_features else 0))
        if contrastive:
            self.contrastive = BiasAwareContrastive(weight=float(contrastive))
        self.decomposable = bool(
            getattr(self.backbone, 'decomposable', True)
            and (self.fusion is None or self.fusion.decomposable)
            and self.visited is None
            and (backdoor is None or (backdoor != 'latent'
                                      and backdoor_mean == 'logit')))
        self._graph: Optional[BehaviorGraph] = None
        self._links: Optional[_Links] = None
        self._repeat: Optional[Tensor] = None
        self._activity: Optional[Tensor] = None
        self._item_features: Optional[Tensor] = None
        self._held_out_features: Optional[Tensor] = None
        self._target_keys: Optional[Tensor] = None

    # -- construction -------------------------------------------------------
    def _build_backbone(self, backbone, embedding_dim: int, num_layers: int,
                        kwargs: Dict[str, Any]) -> Recommender:
        if isinstance(backbone, Recommender):
            if kwargs:
                raise ValueError("'backbone_kwargs' applies to a backbone "
                                 "given by name only")
            if (backbone.num_users, backbone.num_items) != (self.num_users,
                                                            self.num_items):
                raise ValueError(
                    f"the backbone has {backbone.num_users} users and "
                    f"{backbone.num_items} items (expected "
                    f"{self.num_users} and {self.num_items})")
            return backbone
        if backbone not in self.backbones:
            raise ValueError(f"'backbone' must be a Recommender or one of "
                             f"{self.backbones} (got {backbone!r})")
        try:
            if backbone == 'mf':
                return MF(self.num_users, self.num_items, embedding_dim,
                          **kwargs)
            if backbone == 'lightgcn':
                return LightGCN(self.num_users, self.num_items,
                                embedding_dim, num_layers, **kwargs)
            return MultiBehaviorRecommender(
                self.num_users, self.num_items, self.behaviors,
                encoder=backbone, embedding_dim=embedding_dim,
                num_layers=num_layers, **kwargs)
        except TypeError as e:
            raise ValueError(f"'backbone_kwargs' {sorted(kwargs)} do not fit "
                             f"backbone {backbone!r}: {e}") from None

    @staticmethod
    def _single_embedding_error(backbone: str, fusion, contrastive) -> str:
        # With one embedding per user and item for every behavior, the MoE
        # experts are identical (the gate gets no gradient and the mixture
        # is one linear map) and contrastive alignment has no second view
        # to align (its positives are the anchors themselves): neither
        # plug-in would do what it says.
        if fusion:
            what, why = (f"fusion={fusion!r}", "its experts would be "
                         "identical and the gate would get no gradient")
        else:
            what, why = (f"contrastive={contrastive!r}", "each user's "
                         "positive view would be the anchor itself")
        return (f"{what} needs per-behavior embeddings, but backbone "
                f"{backbone!r} gives every behavior the same ones ({why}); "
                f"use backbone 'parallel' or 'cascade'")

    @staticmethod
    def _embedding_dim(backbone: Recommender) -> int:
        for module in backbone.modules():
            if isinstance(module, torch.nn.Embedding):
                return module.embedding_dim
        raise ValueError(f"cannot find the embedding size of the backbone "
                         f"{type(backbone).__name__} (no torch.nn.Embedding)"
                         )

    def reset_parameters(self) -> None:
        r"""Resets the backbone and every plug-in."""
        self.backbone.reset_parameters()
        for module in (self.fusion, self.backdoor, self.visited,
                       self.contrastive):
            if module is not None:
                module.reset_parameters()

    # -- graph-derived data -------------------------------------------------
    def _prepare(self, graph: BehaviorGraph) -> None:
        if graph is self._graph:
            return
        if tuple(graph.behaviors) != self.behaviors:
            raise ValueError(f"the graph's behaviors {list(graph.behaviors)}"
                             f" differ from the model's "
                             f"{list(self.behaviors)}")
        self._links = _Links(
            graph, self.auxiliary,
            pair_statistics(graph) if self.visited is not None
            and self.visited.num_pair_features else None)
        if isinstance(self.backdoor, StratifiedBackdoor):
            fn = (item_popularity_strata if self.backdoor.side == 'item'
                  else user_activity_strata)
            stratum, prior = fn(graph, self.backdoor.num_strata,
                                self.strata_behaviors)
            self.backdoor.set_strata(stratum, prior)
        if isinstance(self.backdoor, LatentScenarios) or self.visited:
            self._repeat = visited_share(graph, self.auxiliary)
        if self.visited is not None and self.visited.num_item_features:
            self._item_features = item_statistics(graph)
            if self.leave_one_out:
                self._held_out_features = item_statistics(
                    graph, leave_one_out=True)
                self._target_keys = torch.unique(pair_keys(
                    graph.edge_index_dict[self.target], graph.num_items))
        if self.contrastive is not None:
            self._activity, _ = user_activity_strata(graph, self.num_strata)
        self._graph = graph

    def forward(self, graph: BehaviorGraph) -> Dict:
        r"""The backbone's embeddings (:obj:`'user'`, :obj:`'item'`, and
        :obj:`'behaviors'` for multi-behavior backbones); with a plug-in on,
        also the graph under :obj:`'graph'`.
        """
        emb = self.backbone(graph)
        if not self._plugged:
            return emb
        self._prepare(graph)
        return {**emb, 'graph': graph}

    @property
    def _plugged(self) -> bool:
        return any(m is not None for m in (self.fusion, self.backdoor,
                                           self.visited, self.contrastive))

    @property
    def _cascaded(self) -> bool:
        # Whether the backbone scores behaviors with NMTR's cascaded heads.
        return getattr(self.backbone, 'head', None) is not None

    @property
    def _keeps_backbone_score(self) -> bool:
        # The backbone's own target logit is part of the target score
        # unless MoE fusion or the visited head replaces it; with cascaded
        # heads it always is (the chained logits and item biases), and the
        # fusion and visited scores add to it.
        if self._cascaded:
            return True
        return self.fusion is None and self.visited is None

    @property
    def _rescored(self) -> bool:
        # Whether the target's logits differ from the backbone's.
        return any(m is not None for m in (self.fusion, self.backdoor,
                                           self.visited))

    def _per_behavior(self, emb: Dict):
        per = emb.get('behaviors')
        shared = len(self.behaviors) > 1 and (per is None or all(
            per[b][0] is per[self.target][0]
            and per[b][1] is per[self.target][1] for b in self.behaviors))
        if shared and (self.fusion is not None
                       or self.contrastive is not None):
            # e.g. a given NMTR backbone: one table for every behavior
            raise ValueError(self._single_embedding_error(
                self.backbone_name, self.fusion_kind,
                self.contrastive is not None and self.contrastive.weight))
        if per is None:
            return {b: (emb['user'], emb['item']) for b in self.behaviors}
        return per

    # -- scoring ------------------------------------------------------------
    def _backbone_score(self, emb: Dict, behavior: str, user_index: Tensor,
                        item_index: Optional[Tensor]) -> Tensor:
        if hasattr(self.backbone, 'score_behavior'):
            return self.backbone.score_behavior(emb, behavior, user_index,
                                                item_index)
        return self.backbone.score(emb, user_index, item_index)

    def score_behavior(self, emb: Dict, behavior: str, user_index: Tensor,
                       item_index: Optional[Tensor] = None) -> Tensor:
        r"""Logits of :obj:`behavior` for given items (:obj:`[B]` or
        :obj:`[B, K]`) or all items (:obj:`[B, I]`); plug-ins act on the
        target only.
        """
        if behavior != self.target or not self._rescored:
            return self._backbone_score(emb, behavior, user_index,
                                        item_index)
        if item_index is None:
            return self._score_all(emb, user_index)
        return self._score_pairs(emb, user_index, item_index)

    def score(self, emb: Dict, user_index: Tensor,
              item_index: Optional[Tensor] = None) -> Tensor:
        r"""Target logits; see :meth:`score_behavior`."""
        return self.score_behavior(emb, self.target, user_index, item_index)

    def score_factors(self, emb: Dict):
        r"""The backbone's score factors while no plug-in rescores the
        target (see :meth:`Recommender.score_factors`), else :obj:`None`.
        """
        if self._rescored:
            return None
        return self.backbone.score_factors(emb)

    def _score_pairs(self, emb: Dict, user_index: Tensor,
                     item_index: Tensor) -> Tensor:
        u = user_index
        if item_index.dim() == user_index.dim() + 1:
            u = user_index.unsqueeze(-1)
        u = u.expand_as(item_index)
        p, q = emb['user'][u], emb['item'][item_index]
        base = None
        if self.fusion is not None:
            per = self._per_behavior(emb)
            users = torch.stack([per[b][0][u] for b in self.behaviors], -2)
            items = torch.stack([per[b][1][item_index]
                                 for b in self.behaviors], -2)
            links = (self._links.pairs(u, item_index)
                     if self.fusion.gate == 'pair' else None)
            base = self.fusion(users, items, p, q, links)
        if self._keeps_backbone_score:
            score = self._backbone_score(emb, self.target, user_index,
                                         item_index)
            base = score if base is None else base + score
        if self.visited is not None:
            feats = self._pair_item_features(u, item_index)
            pair = (self._links.features(u, item_index)
                    if self.visited.num_pair_features else None)
            base = self.visited(emb['user'][user_index], q,
                                self._links.pairs(u, item_index), base,
                                item_features=feats, pair_features=pair)
        return self._adjust_pairs(base, p, q, u, item_index)

    def _pair_item_features(self, u: Tensor,
                            item_index: Tensor) -> Optional[Tensor]:
        # The item statistics of the pairs (u, item_index) of one shape;
        # in training with leave_one_out, those of the train target pairs
        # with the pair's own interaction left out.
        if self._item_features is None:
            return None
        feats = self._item_features[item_index]
        if not (self.training and self._held_out_features is not None):
            return feats
        keys = self._target_keys
        if keys.numel() == 0:
            return feats
        key = u.long() * self.num_items + item_index.long()
        pos = torch.searchsorted(keys, key).clamp_max(keys.numel() - 1)
        own = (keys[pos] == key).unsqueeze(-1)
        return torch.where(own, self._held_out_features[item_index], feats)

    def _adjust_pairs(self, base: Tensor, p: Tensor, q: Tensor, u: Tensor,
                      i: Tensor) -> Tensor:
        bd = self.backdoor
        if bd is None:
            return base
        if isinstance(bd, LatentScenarios):
            return bd(base, p, q)
        if self.training:
            return bd.conditioned(base, p, q, i if bd.side == 'item' else u)
        return bd.adjusted(base, p, q)

    def _score_all(self, emb: Dict, user_index: Tensor) -> Tensor:
        if self.decomposable or user_index.numel() <= self.chunk_size:
            return self._score_all_chunk(emb, user_index)
        out = None
        for s in range(0, user_index.numel(), self.chunk_size):
            part = self._score_all_chunk(emb,
                                         user_index[s:s + self.chunk_size])
            if out is None:
                out = part.new_empty(user_index.numel(), part.size(1))
            out[s:s + part.size(0)] = part
        return out

    def _score_all_chunk(self, emb: Dict, user_index: Tensor) -> Tensor:
        p, q = emb['user'][user_index], emb['item']
        base = None
        if self.fusion is not None:
            per = self._per_behavior(emb)
            users = torch.stack([per[b][0][user_index]
                                 for b in self.behaviors], -2)
            items = torch.stack([per[b][1] for b in self.behaviors], -2)
            links = (self._links.sparse(user_index)
                     if self.fusion.gate == 'pair' else None)
            base = self.fusion.score_all(users, items, p, q, links)
        if self._keeps_backbone_score:
            score = self._backbone_score(emb, self.target, user_index, None)
            base = score if base is None else base + score
        if self.visited is not None:
            pair = (self._links.dense_features(user_index)
                    if self.visited.num_pair_features else None)
            base = self.visited.score_all(p, q, self._links.dense(user_index),
                                          base,
                                          item_features=self._item_features,
                                          pair_features=pair)
        bd = self.backdoor
        if bd is None:
            return base
        if isinstance(bd, LatentScenarios):
            return bd.score_all(base, p, q)
        if not self.training:
            return bd.adjusted_all(base, p, q)
        if bd.side == 'item':
            e = bd.embedding[bd.stratum]  # [I, D]
            return (base + p @ e.t() + ((q * e).sum(-1) +
                                        bd.bias[bd.stratum]))
        c = bd.stratum[user_index]
        e = bd.embedding[c]  # [B, D]
        return (base + ((p * e).sum(-1) + bd.bias[c]).unsqueeze(-1) +
                e @ q.t())

    # -- plug-in objectives and introspection ---------------------------------
    def auxiliary_loss(self, emb: Dict, graph: BehaviorGraph,
                       batch: Dict) -> Dict[str, Tensor]:
        r"""Trainer hook: the plug-ins' weighted objectives on the step's
        target batch; empty when no plug-in has one.

        - latent scenarios: :obj:`'kl'` (KL to the uniform prior) and
          :obj:`'repeat'` (:math:`\beta \mathcal{L}_A`) on the positives
          and negatives, then one prototype moving-average step;
        - visited head: :obj:`'visited'`, :math:`\beta` times the
          cross-entropy of the repeat intent against the user's visited
          share;
        - contrastive: :obj:`'contrastive'` over the distinct users of the
          batch's first :obj:`contrastive_users` pairs,
          auxiliary views against the target view, negatives weighted by
          activity stratum;
        - the backbone's own terms first (e.g. :obj:`'caged'`, the CVAEs'
          negative ELBO of learned aggregation weights).
        """
        own = getattr(self.backbone, 'auxiliary_loss', None)
        terms = dict(own(emb, graph, batch)) if own is not None else {}
        latent = isinstance(self.backdoor, LatentScenarios)
        if not (latent or self.visited is not None
                or self.contrastive is not None):
            return terms
        if self.target not in batch:
            raise ValueError(f"'batch' must hold the target behavior "
                             f"{self.target!r} (got {sorted(batch)})")
        self._prepare(graph)
        user, pos, neg = batch[self.target]
        if latent:
            users = torch.cat([user, user.unsqueeze(-1).expand_as(neg)
                               .reshape(-1)])
            items = torch.cat([pos, neg.reshape(-1)])
            terms.update(self.backdoor.auxiliary_loss(
                emb['user'][users], emb['item'][items],
                self._repeat.to(users.device)[users]))
        if self.visited is not None:
            share = self._repeat.to(user.device)[user]
            terms['visited'] = self.beta * self.visited.auxiliary_loss(
                emb['user'][user], share)
        if self.contrastive is not None:
            per = self._per_behavior(emb)
            # In-batch InfoNCE is quadratic in the users: the distinct users
            # of the first `contrastive_users` pairs (a random subset, the
            # batch being shuffled) keep it cheap at large batch sizes.
            uniq = torch.unique(user[:self.contrastive_users])
            views = {b: per[b][0][uniq] for b in self.behaviors}
            terms['contrastive'] = self.contrastive(
                views, self._activity.to(uniq.device)[uniq])
        return terms

    def on_validation(self, graph: BehaviorGraph, improved: bool) -> None:
        r"""Trainer hook, passed on to the backbone (e.g. the refresh of
        learned aggregation weights, :obj:`edge_weights='caged'`).
        """
        hook = getattr(self.backbone, 'on_validation', None)
        if hook is not None:
            hook(graph, improved=improved)

    def gate_weights(self, emb: Dict, user_index: Optional[Tensor] = None,
                     item_index: Optional[Tensor] = None) -> Tensor:
        r"""MoE gate weights per behavior: :obj:`[U, N_B]` (or :obj:`[B,
        N_B]` for :obj:`user_index`) with the per-user gate; the pair gate
        needs :obj:`item_index` (:obj:`[B]` or :obj:`[B, K]`).
        """
        if self.fusion is None:
            raise ValueError("gate weights need fusion='moe'")
        if user_index is None:
            user_index = torch.arange(self.num_users,
                                      device=emb['user'].device)
        if self.fusion.gate == 'user':
            return self.fusion.gate_weights(emb['user'][user_index])
        if item_index is None:
            raise ValueError("the pair gate needs 'item_index'")
        u = user_index
        if item_index.dim() == user_index.dim() + 1:
            u = user_index.unsqueeze(-1)
        u = u.expand_as(item_index)
        return self.fusion.gate_weights(emb['user'][u],
                                        emb['item'][item_index],
                                        self._links.pairs(u, item_index))

    def parameter_groups(self, lr: float) -> List[Dict[str, Any]]:
        r"""Optimizer parameter groups (the trainer's hook): the
        visited-aware head's fixed-feature weights at :obj:`lr *
        feature_lr`, every other parameter at :obj:`lr`.
        """
        special = []
        if self.visited is not None:
            special = [p for p in (self.visited.feature_weight,
                                   self.visited.pair_weight) if p is not None]
        ids = {id(p) for p in special}
        rest = [p for p in self.parameters() if id(p) not in ids]
        groups = [{'params': rest, 'lr': lr}]
        if special:
            groups.append({'params': special, 'lr': lr * self.feature_lr})
        return groups

    def regularization(self, user_index: Tensor,
                       item_index: Tensor) -> List[Tensor]:
        r"""The backbone's ego embeddings of the batch."""
        return self.backbone.regularization(user_index, item_index)

    def extra_repr(self) -> str:
        r"""Backbone and plug-ins, for :func:`repr`."""
        gate = (f', gate={self.fusion.gate!r}' if self.fusion is not None
                else '')
        extra = (', visited_head=True' if self.visited is not None else '')
        if self.contrastive is not None:
            extra += f', contrastive={self.contrastive.weight}'
        return (f'{super().extra_repr()}, backbone={self.backbone_name!r}, '
                f'fusion={self.fusion_kind!r}{gate}, '
                f'backdoor={self.backdoor_kind!r}{extra}')
