"""Multi-behavior recommenders composed from an encoder and heads."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from graphrec.data.graph import BehaviorGraph
from graphrec.models.base import Recommender
from graphrec.nn.encoders import CascadeEncoder, ParallelEncoder, behavior_dag
from graphrec.nn.heads import CascadedHeads


class SharedEmbedding(torch.nn.Module):
    r"""No graph: every behavior sees the same base embeddings (NMTR)."""
    def __init__(self, num_users: int, num_items: int,
                 behaviors: Sequence[str], embedding_dim: int = 64,
                 init_std: float = 0.1):
        super().__init__()
        self.behaviors = tuple(behaviors)
        self.init_std = init_std
        self.user_embedding = torch.nn.Embedding(num_users, embedding_dim)
        self.item_embedding = torch.nn.Embedding(num_items, embedding_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        r"""Re-draws both embedding tables from a normal with std
        :obj:`init_std`.
        """
        torch.nn.init.normal_(self.user_embedding.weight, std=self.init_std)
        torch.nn.init.normal_(self.item_embedding.weight, std=self.init_std)

    def forward(self, graph: Optional[BehaviorGraph] = None):
        r"""The same base embeddings :obj:`(user [U, D], item [I, D])` for
        every behavior; :obj:`graph` is not used.
        """
        pair = (self.user_embedding.weight, self.item_embedding.weight)
        return {b: pair for b in self.behaviors}

    def regularization(self, user_index: Tensor,
                       item_index: Tensor) -> List[Tensor]:
        r"""The ego embeddings of the batch's users and items."""
        return [self.user_embedding(user_index),
                self.item_embedding(item_index)]


class MultiBehaviorRecommender(Recommender):
    r"""An encoder giving per-behavior embeddings, an aggregation into the
    target representation, and a head per behavior.

    - :obj:`encoder`: :obj:`'shared'` (no graph), :obj:`'parallel'` or
      :obj:`'cascade'` (see :mod:`graphrec.nn.encoders`).
    - :obj:`aggregate`: the target's score uses its own embeddings
      (:obj:`'target'`) or the sum over behaviors (:obj:`'sum'`, MB-CGCN).
    - :obj:`head`: :obj:`'dot'` (each behavior scored by a dot product of
      its embeddings) or :obj:`'cascaded'` (NMTR's chained logits with an
      interaction :obj:`unit`).

    Named compositions are registered in :mod:`graphrec.models`
    (:obj:`'nmtr'`, :obj:`'mbcgcn'`, :obj:`'crgcn'`).

    Args:
        num_users (int): Number of users.
        num_items (int): Number of items.
        behaviors (Sequence[str]): Behaviors in cascade order, target last.
        encoder (str): Encoder kind. (default: :obj:`'cascade'`)
        embedding_dim (int): Embedding size. (default: :obj:`64`)
        num_layers (int): Convolutions per behavior. (default: :obj:`2`)
        combine (str): Layer combination. (default: :obj:`'mean'`)
        transform (str): Cascade stage transform. (default: :obj:`'none'`)
        residual (bool): Cascade residual. (default: :obj:`False`)
        dag_edges (Sequence[Tuple[str, str]], optional): Partial order of
            behaviors for the cascade. (default: :obj:`None`, a chain)
        aggregate (str): :obj:`'target'` or :obj:`'sum'`.
            (default: :obj:`'target'`)
        head (str): :obj:`'dot'` or :obj:`'cascaded'`.
            (default: :obj:`'dot'`)
        unit (str): Interaction unit of cascaded heads.
            (default: :obj:`'gmf'`)
        hidden_dim (int): MLP width of MLP units. (default: :obj:`64`)
        edge_weights (str, optional): :obj:`'caged'`: learned aggregation
            weights per behavior (:class:`~graphrec.nn.weights.CAGED`,
            graph encoders only), trained through :meth:`auxiliary_loss`
            and refreshed in :meth:`on_validation`. (default: :obj:`None`)
        edge_weight_kwargs (Dict[str, Any], optional): Arguments of the
            estimator, e.g. :obj:`{'renormalize': True, 'eps': 0.2}`.
    """
    needs_behaviors = True
    encoders = ('shared', 'parallel', 'cascade')
    aggregates = ('target', 'sum')
    heads = ('dot', 'cascaded')

    def __init__(self, num_users: int, num_items: int,
                 behaviors: Sequence[str], encoder: str = 'cascade',
                 embedding_dim: int = 64, num_layers: int = 2,
                 combine: str = 'mean', transform: str = 'none',
                 residual: bool = False,
                 dag_edges: Optional[Sequence[Tuple[str, str]]] = None,
                 aggregate: str = 'target', head: str = 'dot',
                 unit: str = 'gmf', hidden_dim: int = 64,
                 edge_weights: Optional[str] = None,
                 edge_weight_kwargs: Optional[Dict[str, Any]] = None):
        super().__init__(num_users, num_items)
        if encoder == 'shared' and (edge_weights is not None
                                    or edge_weight_kwargs):
            raise ValueError(f"'edge_weights' needs a graph encoder "
                             f"('parallel' or 'cascade', got "
                             f"encoder={encoder!r})")
        for arg, value, choices in (('encoder', encoder, self.encoders),
                                    ('aggregate', aggregate,
                                     self.aggregates), ('head', head,
                                                        self.heads)):
            if value not in choices:
                raise ValueError(f"'{arg}' must be one of {choices} (got "
                                 f"{value!r})")
        if isinstance(behaviors, str) or not behaviors:
            raise ValueError(f"'behaviors' must be a non-empty sequence of "
                             f"names, target last (got {behaviors!r})")
        self.behaviors = tuple(behaviors)
        self.target = self.behaviors[-1]
        self.aggregate = aggregate
        self.head_kind = head
        if encoder == 'shared':
            self.encoder = SharedEmbedding(num_users, num_items, behaviors,
                                           embedding_dim)
        elif encoder == 'parallel':
            self.encoder = ParallelEncoder(
                num_users, num_items, behaviors, embedding_dim, num_layers,
                combine, edge_weights=edge_weights,
                edge_weight_kwargs=edge_weight_kwargs)
        else:
            dag = None if dag_edges is None else behavior_dag(
                behaviors, [tuple(e) for e in dag_edges])
            self.encoder = CascadeEncoder(
                num_users, num_items, behaviors, embedding_dim, num_layers,
                combine, transform, residual, dag,
                edge_weights=edge_weights,
                edge_weight_kwargs=edge_weight_kwargs)
        self.head = None
        if head == 'cascaded':
            self.head = CascadedHeads(behaviors, num_items, embedding_dim,
                                      unit, hidden_dim)
        self.decomposable = self.head is None or self.head.decomposable

    def reset_parameters(self) -> None:
        r"""Resets the encoder and the cascaded heads, if any."""
        self.encoder.reset_parameters()
        if self.head is not None:
            self.head.reset_parameters()

    def forward(self, graph: BehaviorGraph) -> Dict:
        r"""Encodes the graph: the aggregated :obj:`'user'` :obj:`[U, D]` and
        :obj:`'item'` :obj:`[I, D]`, and the per-behavior :obj:`(user, item)`
        pairs under :obj:`'behaviors'`.
        """
        per = self.encoder(graph)
        if self.aggregate == 'sum':
            user = torch.stack([per[b][0] for b in self.behaviors]).sum(0)
            item = torch.stack([per[b][1] for b in self.behaviors]).sum(0)
        else:
            user, item = per[self.target]
        return {'user': user, 'item': item, 'behaviors': per}

    def _pair(self, emb: Dict, behavior: str):
        # The target uses the aggregated representation, the others their
        # own stage's embeddings.
        if behavior == self.target:
            return emb['user'], emb['item']
        return emb['behaviors'][behavior]

    def score_behavior(self, emb: Dict, behavior: str, user_index: Tensor,
                       item_index: Optional[Tensor] = None) -> Tensor:
        r"""Scores (logits) of :obj:`behavior`; all items when
        :obj:`item_index` is :obj:`None`.
        """
        if self.head is None:
            user, item = self._pair(emb, behavior)
            return Recommender.score(self, {'user': user, 'item': item},
                                     user_index, item_index)
        per = emb['behaviors']
        if self.aggregate == 'sum':
            per = {b: (emb['user'], emb['item']) for b in self.behaviors}
        users = {b: per[b][0][user_index] for b in self.behaviors}
        if item_index is None:
            items = {b: per[b][1] for b in self.behaviors}
            return self.head.score_all(users, items, behavior)
        items = {b: per[b][1][item_index] for b in self.behaviors}
        if item_index.dim() == user_index.dim() + 1:
            users = {b: u.unsqueeze(-2) for b, u in users.items()}
        return self.head(users, items, item_index, behavior)

    def score(self, emb: Dict, user_index: Tensor,
              item_index: Optional[Tensor] = None) -> Tensor:
        r"""Target-behavior scores (logits); see :meth:`score_behavior`."""
        return self.score_behavior(emb, self.target, user_index, item_index)

    def score_factors(self, emb: Dict) -> Optional[Tuple[Tensor, Tensor]]:
        r"""The target's score factors (see
        :meth:`Recommender.score_factors`): its embeddings, or with
        decomposable cascaded heads the chain's
        (:meth:`~graphrec.nn.heads.CascadedHeads.factors`).
        """
        if self.head is None:
            return self._pair(emb, self.target)
        if not self.head.decomposable:
            return None
        per = emb['behaviors']
        if self.aggregate == 'sum':
            per = {b: (emb['user'], emb['item']) for b in self.behaviors}
        return self.head.factors({b: per[b][0] for b in self.behaviors},
                                 {b: per[b][1] for b in self.behaviors},
                                 self.target)

    def regularization(self, user_index: Tensor,
                       item_index: Tensor) -> List[Tensor]:
        r"""The encoder's ego embeddings of the batch's users and items."""
        return self.encoder.regularization(user_index, item_index)

    @property
    def edge_weights(self):
        r"""The encoder's aggregation-weight estimator, or :obj:`None`."""
        return getattr(self.encoder, 'edge_weights', None)

    def auxiliary_loss(self, emb: Dict, graph: BehaviorGraph,
                       batch: Optional[Dict] = None) -> Dict[str, Tensor]:
        r"""Trainer hook: with :obj:`edge_weights='caged'`, the negative
        ELBO of the per-behavior CVAEs on the detached per-behavior
        embeddings under :obj:`'caged'`; otherwise empty.
        """
        est = self.edge_weights
        if est is None:
            return {}
        return {'caged': est.loss(
            emb['behaviors'], {b: graph.adjacency(b) for b in est.keys})}

    def on_validation(self, graph: BehaviorGraph, improved: bool) -> None:
        r"""Trainer hook: refreshes the learned aggregation weights after
        a validation run, as the estimator's schedule says (by default when
        the validation metric improved).
        """
        est = self.edge_weights
        if est is None or not est.should_refresh(improved):
            return
        with torch.no_grad():
            per = self.encoder(graph)
        est.refresh(per, {b: graph.adjacency(b) for b in est.keys})

    def extra_repr(self) -> str:
        r"""Adds the behaviors, aggregation and head to the base
        representation.
        """
        return (f'{super().extra_repr()}, behaviors={self.behaviors}, '
                f'aggregate={self.aggregate!r}, head={self.head_kind!r}')


def NMTR(num_users: int, num_items: int, behaviors: Sequence[str],
         embedding_dim: int = 64, unit: str = 'gmf', hidden_dim: int = 64,
         **kwargs) -> MultiBehaviorRecommender:
    r"""NMTR (Gao et al., ICDE 2019): shared embeddings, cascaded heads with
    GMF/MLP/NeuMF units; train with per-behavior BCE.
    """
    return MultiBehaviorRecommender(num_users, num_items, behaviors,
                                    encoder='shared',
                                    embedding_dim=embedding_dim,
                                    head='cascaded', unit=unit,
                                    hidden_dim=hidden_dim, **kwargs)


def MBCGCN(num_users: int, num_items: int, behaviors: Sequence[str],
           embedding_dim: int = 64, num_layers: int = 2,
           **kwargs) -> MultiBehaviorRecommender:
    r"""MB-CGCN (Cheng et al., WWW 2023): cascade of light convolutions
    with a linear transform between stages; the behaviors' embeddings are
    summed and scored by a dot product; trained on the target only.
    """
    kwargs.setdefault('transform', 'linear')
    kwargs.setdefault('aggregate', 'sum')
    return MultiBehaviorRecommender(num_users, num_items, behaviors,
                                    encoder='cascade',
                                    embedding_dim=embedding_dim,
                                    num_layers=num_layers, **kwargs)


def CRGCN(num_users: int, num_items: int, behaviors: Sequence[str],
          embedding_dim: int = 64, num_layers: int = 2,
          **kwargs) -> MultiBehaviorRecommender:
    r"""CRGCN (Yan et al., TOIS 2023): cascade with residual connections,
    each behavior predicted from its stage (multi-task BPR).
    """
    kwargs.setdefault('residual', True)
    return MultiBehaviorRecommender(num_users, num_items, behaviors,
                                    encoder='cascade',
                                    embedding_dim=embedding_dim,
                                    num_layers=num_layers, **kwargs)


for _f in (NMTR, MBCGCN, CRGCN):
    _f.needs_behaviors = True
