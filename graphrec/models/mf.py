"""Matrix factorisation and LightGCN on sparse propagation."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Union

import torch
from torch import Tensor

from graphrec.data.graph import BehaviorGraph
from graphrec.models.base import Recommender
from graphrec.nn.propagation import bipartite_propagate
from graphrec.nn.weights import build_edge_weights


class MF(Recommender):
    r"""Matrix factorisation, :math:`\hat{y}_{ui} = p_u^\top q_i`, usually
    trained with BPR (Rendle et al., UAI 2009).

    Args:
        num_users (int): Number of users.
        num_items (int): Number of items.
        embedding_dim (int): Embedding size :math:`D`. (default: :obj:`64`)
        init_std (float): Std of the normal initialisation.
            (default: :obj:`0.1`)

    Example:
        >>> model = MF(num_users=3, num_items=4, embedding_dim=8)
        >>> emb = model(graph)
        >>> model.score(emb, torch.tensor([0, 2])).shape
        torch.Size([2, 4])
    """
    def __init__(self, num_users: int, num_items: int,
                 embedding_dim: int = 64, init_std: float = 0.1):
        super().__init__(num_users, num_items)
        if not isinstance(embedding_dim, int) or embedding_dim <= 0:
            raise ValueError(f"'embedding_dim' must be a positive int "
                             f"(got {embedding_dim!r})")
        self.embedding_dim = embedding_dim
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

    def forward(self, graph: Optional[BehaviorGraph] = None
                ) -> Dict[str, Tensor]:
        r"""The embedding tables, :obj:`'user'` :obj:`[U, D]` and :obj:`'item'`
        :obj:`[I, D]`; :obj:`graph` is not used.
        """
        return {'user': self.user_embedding.weight,
                'item': self.item_embedding.weight}

    def regularization(self, user_index: Tensor,
                       item_index: Tensor) -> List[Tensor]:
        r"""The ego embeddings of the batch's users and items."""
        return [self.user_embedding(user_index),
                self.item_embedding(item_index)]

    def extra_repr(self) -> str:
        r"""Adds the embedding size to the base representation."""
        return (f'{super().extra_repr()}, '
                f'embedding_dim={self.embedding_dim}')


class LightGCN(MF):
    r"""LightGCN (He et al., SIGIR 2020) on the bipartite user-item graph of
    one behavior or of several behaviors merged.

    .. math::
        e_u^{(l+1)} = \sum_{i \in \mathcal{N}(u)}
            \frac{1}{\sqrt{d_u d_i}} e_i^{(l)}, \qquad
        e_i^{(l+1)} = \sum_{u \in \mathcal{N}(i)}
            \frac{1}{\sqrt{d_u d_i}} e_u^{(l)}, \qquad
        e = \sum_{l=0}^{L} \alpha_l e^{(l)},

    each step one CSR sparse-dense product per direction.

    Args:
        num_users (int): Number of users.
        num_items (int): Number of items.
        embedding_dim (int): Embedding size. (default: :obj:`64`)
        num_layers (int): Number of propagation steps :math:`L`.
            (default: :obj:`3`)
        behaviors (str or Sequence[str]): Edges to propagate on:
            :obj:`'target'`, :obj:`'all'` (merged) or behavior names.
            (default: :obj:`'target'`)
        alpha (Sequence[float], optional): Layer weights :math:`\alpha_l`.
            (default: :obj:`None`, uniform :math:`1/(L+1)`)
        init_std (float): Std of the normal initialisation.
            (default: :obj:`0.1`)
        edge_weights (str, optional): :obj:`'caged'`: learned aggregation
            weights on the propagated edge set
            (:class:`~graphrec.nn.weights.CAGED`), trained through
            :meth:`auxiliary_loss` and refreshed in :meth:`on_validation`;
            :obj:`None`: :math:`1/\sqrt{d_u d_i}`. (default: :obj:`None`)
        edge_weight_kwargs (Dict[str, Any], optional): Arguments of the
            estimator, e.g. :obj:`{'renormalize': True}`.
    """
    def __init__(self, num_users: int, num_items: int,
                 embedding_dim: int = 64, num_layers: int = 3,
                 behaviors: Union[str, Sequence[str]] = 'target',
                 alpha: Optional[Sequence[float]] = None,
                 init_std: float = 0.1, edge_weights: Optional[str] = None,
                 edge_weight_kwargs: Optional[Dict[str, Any]] = None):
        if not isinstance(num_layers, int) or num_layers < 0:
            raise ValueError(f"'num_layers' must be a non-negative int "
                             f"(got {num_layers!r})")
        if alpha is None:
            alpha = [1.0 / (num_layers + 1)] * (num_layers + 1)
        if len(alpha) != num_layers + 1:
            raise ValueError(f"'alpha' must have num_layers + 1 = "
                             f"{num_layers + 1} entries (got {len(alpha)})")
        super().__init__(num_users, num_items, embedding_dim, init_std)
        self.num_layers = num_layers
        self.behaviors = (behaviors if isinstance(behaviors, str) else
                          tuple(behaviors))
        self.register_buffer('alpha', torch.tensor(alpha,
                                                   dtype=torch.float))
        # The estimator's one edge set: the propagated behaviors.
        self.edge_key = (self.behaviors if isinstance(self.behaviors, str)
                         else '+'.join(self.behaviors))
        self.edge_weights = build_edge_weights(
            edge_weights, [self.edge_key], embedding_dim, edge_weight_kwargs)
        if self.edge_weights is not None:
            self.edge_weights.reset_parameters()

    def reset_parameters(self) -> None:
        r"""Re-draws both embedding tables and resets the aggregation-weight
        estimator, if any.
        """
        super().reset_parameters()
        if getattr(self, 'edge_weights', None) is not None:
            self.edge_weights.reset_parameters()

    def adjacency(self, graph: BehaviorGraph):
        r"""The adjacency LightGCN propagates on, with the learned weights
        as values when the estimator is on.
        """
        adj = graph.adjacency(self.behaviors)
        if self.edge_weights is None:
            return adj
        return self.edge_weights.adjacency(self.edge_key, adj)

    def forward(self, graph: BehaviorGraph) -> Dict[str, Tensor]:
        r"""Propagates :math:`L` times on the behaviors' graph and returns the
        :math:`\alpha`-weighted sum of the layers, :obj:`'user'` :obj:`[U, D]`
        and :obj:`'item'` :obj:`[I, D]`.
        """
        adj = self.adjacency(graph)
        x_user = self.user_embedding.weight
        x_item = self.item_embedding.weight
        out_user, out_item = x_user * self.alpha[0], x_item * self.alpha[0]
        for layer in range(self.num_layers):
            x_user, x_item = bipartite_propagate(adj, x_user, x_item)
            out_user = out_user + x_user * self.alpha[layer + 1]
            out_item = out_item + x_item * self.alpha[layer + 1]
        return {'user': out_user, 'item': out_item}

    def auxiliary_loss(self, emb: Dict[str, Tensor], graph: BehaviorGraph,
                       batch: Optional[Dict] = None) -> Dict[str, Tensor]:
        r"""Trainer hook: with :obj:`edge_weights='caged'`, the CVAEs'
        negative ELBO on the detached embeddings under :obj:`'caged'`;
        otherwise empty.
        """
        if self.edge_weights is None:
            return {}
        pair = (emb['user'], emb['item'])
        return {'caged': self.edge_weights.loss(
            {self.edge_key: pair},
            {self.edge_key: graph.adjacency(self.behaviors)})}

    def on_validation(self, graph: BehaviorGraph, improved: bool) -> None:
        r"""Trainer hook: refreshes the learned aggregation weights after
        a validation run, as the estimator's schedule says (by default when
        the validation metric improved).
        """
        est = self.edge_weights
        if est is None or not est.should_refresh(improved):
            return
        with torch.no_grad():
            emb = self(graph)
        est.refresh({self.edge_key: (emb['user'], emb['item'])},
                    {self.edge_key: graph.adjacency(self.behaviors)})

    def extra_repr(self) -> str:
        r"""Adds the number of layers and the behaviors to the repr."""
        return (f'{super().extra_repr()}, num_layers={self.num_layers}, '
                f'behaviors={self.behaviors!r}')
