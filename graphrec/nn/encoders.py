"""Multi-behavior graph encoders: per-behavior user and item embeddings."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import networkx as nx
import torch
from torch import Tensor

from graphrec.data.graph import BehaviorGraph
from graphrec.nn.propagation import bipartite_propagate
from graphrec.nn.weights import build_edge_weights

Pair = Tuple[Tensor, Tensor]


def behavior_dag(behaviors: Sequence[str],
                 edges: Optional[Sequence[Tuple[str, str]]] = None
                 ) -> nx.DiGraph:
    r"""The cascade order of behaviors as a DAG: a chain in the given order
    by default, or the given (parent, child) edges for a partial order.

    Raises :class:`ValueError` on a cycle, a self-loop, or a node that is
    not a behavior or a behavior missing from the graph.
    """
    behaviors = list(behaviors)
    dag = nx.DiGraph()
    dag.add_nodes_from(behaviors)
    if edges is None:
        dag.add_edges_from(zip(behaviors[:-1], behaviors[1:]))
    else:
        for edge in edges:
            if len(edge) != 2:
                raise ValueError(f"'edges' must hold (parent, child) pairs "
                                 f"(got {edge!r})")
            unknown = [b for b in edge if b not in behaviors]
            if unknown:
                raise ValueError(f"'edges' names unknown behaviors {unknown}"
                                 f" (behaviors: {behaviors})")
            dag.add_edge(*edge)
    if not nx.is_directed_acyclic_graph(dag):
        cycle = nx.find_cycle(dag)
        raise ValueError(f"the behavior graph must be acyclic (found the "
                         f"cycle {cycle})")
    return dag


def _check_dag(dag: nx.DiGraph, behaviors: Sequence[str]) -> None:
    missing = [b for b in behaviors if b not in dag]
    extra = [b for b in dag if b not in behaviors]
    if missing or extra:
        raise ValueError(f"the behavior graph must have exactly the nodes "
                         f"{list(behaviors)} (missing {missing}, unknown "
                         f"{extra})")
    if not nx.is_directed_acyclic_graph(dag):
        raise ValueError(f"the behavior graph must be acyclic (found the "
                         f"cycle {nx.find_cycle(dag)})")


class LightStack(torch.nn.Module):
    r"""A stack of :math:`L` parameter-free light graph convolutions on one
    behavior's bipartite graph, with the layer outputs combined:

    .. math::
        e^{(l+1)}_u = \sum_{i \in \mathcal{N}_b(u)} w_{ui} e^{(l)}_i,
        \quad e^{(l+1)}_i = \sum_{u \in \mathcal{N}_b(i)} w_{ui} e^{(l)}_u,

    default :math:`w_{ui} = 1 / \sqrt{d^b_u d^b_i}`, each step one SpMM.

    Args:
        num_layers (int): :math:`L`.
        combine (str): :obj:`'mean'` of layers :math:`0..L`, :obj:`'sum'`,
            or :obj:`'last'`. (default: :obj:`'mean'`)
    """
    combines = ('mean', 'sum', 'last')

    def __init__(self, num_layers: int = 2, combine: str = 'mean'):
        super().__init__()
        if not isinstance(num_layers, int) or num_layers < 0:
            raise ValueError(f"'num_layers' must be a non-negative int "
                             f"(got {num_layers!r})")
        if combine not in self.combines:
            raise ValueError(f"'combine' must be one of {self.combines} "
                             f"(got {combine!r})")
        self.num_layers = num_layers
        self.combine = combine

    def reset_parameters(self) -> None:
        r"""Does nothing: the stack has no parameters."""
        pass

    def forward(self, adj, x_user: Tensor, x_item: Tensor) -> Pair:
        r"""Runs the :math:`L` convolutions on :obj:`adj`, a
        :class:`~graphrec.data.graph.BipartiteAdjacency`, and combines the
        layers; returns :obj:`(user [U, D], item [I, D])`.
        """
        outs_u, outs_i = [x_user], [x_item]
        for _ in range(self.num_layers):
            x_user, x_item = bipartite_propagate(adj, x_user, x_item)
            outs_u.append(x_user)
            outs_i.append(x_item)
        if self.combine == 'last':
            return outs_u[-1], outs_i[-1]
        out_u, out_i = torch.stack(outs_u).sum(0), torch.stack(outs_i).sum(0)
        if self.combine == 'mean':
            out_u, out_i = out_u / len(outs_u), out_i / len(outs_i)
        return out_u, out_i

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_layers={self.num_layers}, '
                f'combine={self.combine!r})')


class _BaseEncoder(torch.nn.Module):
    def __init__(self, num_users: int, num_items: int,
                 behaviors: Sequence[str], embedding_dim: int,
                 num_layers: int, combine: str, init_std: float,
                 edge_weights: Optional[str] = None,
                 edge_weight_kwargs: Optional[Dict[str, Any]] = None):
        super().__init__()
        if not behaviors:
            raise ValueError("'behaviors' must name at least one behavior")
        self.num_users, self.num_items = num_users, num_items
        self.behaviors = tuple(behaviors)
        self.embedding_dim = embedding_dim
        self.init_std = init_std
        self.user_embedding = torch.nn.Embedding(num_users, embedding_dim)
        self.item_embedding = torch.nn.Embedding(num_items, embedding_dim)
        self.convs = torch.nn.ModuleDict(
            {b: LightStack(num_layers, combine) for b in self.behaviors})
        #: Optional learned aggregation weights per behavior
        #: (:class:`~graphrec.nn.weights.CAGED`), :obj:`None` when off.
        self.edge_weights = build_edge_weights(
            edge_weights, self.behaviors, embedding_dim, edge_weight_kwargs)

    def reset_parameters(self) -> None:
        torch.nn.init.normal_(self.user_embedding.weight, std=self.init_std)
        torch.nn.init.normal_(self.item_embedding.weight, std=self.init_std)
        if self.edge_weights is not None:
            self.edge_weights.reset_parameters()

    def adjacency(self, graph: BehaviorGraph, behavior: str):
        r"""The adjacency behavior :obj:`behavior` propagates on: the
        graph's, with the learned weights as values when an estimator is on.
        """
        adj = graph.adjacency(behavior)
        if self.edge_weights is None:
            return adj
        return self.edge_weights.adjacency(behavior, adj)

    def regularization(self, user_index: Tensor,
                       item_index: Tensor) -> List[Tensor]:
        return [self.user_embedding(user_index),
                self.item_embedding(item_index)]


class ParallelEncoder(_BaseEncoder):
    r"""Every behavior propagates from the same base embeddings on its own
    graph (NMTR/MBGCN style); returns per-behavior embeddings.

    Args:
        num_users (int): Number of users.
        num_items (int): Number of items.
        behaviors (Sequence[str]): Behaviors, target last.
        embedding_dim (int): Embedding size. (default: :obj:`64`)
        num_layers (int): Convolutions per behavior. (default: :obj:`2`)
        combine (str): Layer combination. (default: :obj:`'mean'`)
        init_std (float): Std of the initial embeddings.
            (default: :obj:`0.1`)
        edge_weights (str, optional): :obj:`'caged'` for learned
            aggregation weights per behavior
            (:class:`~graphrec.nn.weights.CAGED`), :obj:`None` for
            :math:`1/\sqrt{d_u d_i}`. (default: :obj:`None`)
        edge_weight_kwargs (Dict[str, Any], optional): Arguments of the
            estimator, e.g. :obj:`{'renormalize': True}`.
    """
    def __init__(self, num_users: int, num_items: int,
                 behaviors: Sequence[str], embedding_dim: int = 64,
                 num_layers: int = 2, combine: str = 'mean',
                 init_std: float = 0.1, edge_weights: Optional[str] = None,
                 edge_weight_kwargs: Optional[Dict[str, Any]] = None):
        super().__init__(num_users, num_items, behaviors, embedding_dim,
                         num_layers, combine, init_std, edge_weights,
                         edge_weight_kwargs)
        self.reset_parameters()

    def forward(self, graph: BehaviorGraph) -> Dict[str, Pair]:
        r"""Per-behavior :obj:`(user [U, D], item [I, D])`, each propagated
        from the base embeddings on its own graph.
        """
        x_u, x_i = self.user_embedding.weight, self.item_embedding.weight
        return {b: self.convs[b](self.adjacency(graph, b), x_u, x_i)
                for b in self.behaviors}


class CascadeEncoder(_BaseEncoder):
    r"""Behaviors propagate in cascade order: the input of behavior
    :math:`b` is the output of its parents in the behavior DAG (a chain by
    default), so each stage refines the previous one (MB-CGCN, Cheng et
    al., WWW 2023; CRGCN, Yan et al., TOIS 2023):

    .. math::
        x_b = T_b\Big(\frac{1}{|\mathrm{pa}(b)|}
              \sum_{p \in \mathrm{pa}(b)} h_p\Big), \qquad
        h_b = \mathrm{LightStack}_b(x_b) + \rho\, x_b,

    with :math:`h_b = \mathrm{LightStack}_b(e^{(0)})` for a root,
    :math:`T_b` a linear map (:obj:`transform='linear'`, MB-CGCN) or the
    identity, and :math:`\rho = 1` with :obj:`residual=True` (CRGCN).

    Args:
        num_users (int): Number of users.
        num_items (int): Number of items.
        behaviors (Sequence[str]): Behaviors in cascade order, target last.
        embedding_dim (int): Embedding size. (default: :obj:`64`)
        num_layers (int): Convolutions per behavior. (default: :obj:`2`)
        combine (str): Layer combination. (default: :obj:`'mean'`)
        transform (str): :obj:`'none'` or :obj:`'linear'` between stages.
            (default: :obj:`'none'`)
        residual (bool): Add the stage input to its output.
            (default: :obj:`False`)
        dag (networkx.DiGraph, optional): Partial order of behaviors.
            (default: :obj:`None`, the chain in :obj:`behaviors` order)
        init_std (float): Std of the initial embeddings.
            (default: :obj:`0.1`)
        edge_weights (str, optional): :obj:`'caged'` for learned
            aggregation weights per behavior
            (:class:`~graphrec.nn.weights.CAGED`), :obj:`None` for
            :math:`1/\sqrt{d_u d_i}`. (default: :obj:`None`)
        edge_weight_kwargs (Dict[str, Any], optional): Arguments of the
            estimator, e.g. :obj:`{'renormalize': True}`.
    """
    transforms = ('none', 'linear')

    def __init__(self, num_users: int, num_items: int,
                 behaviors: Sequence[str], embedding_dim: int = 64,
                 num_layers: int = 2, combine: str = 'mean',
                 transform: str = 'none', residual: bool = False,
                 dag: Optional[nx.DiGraph] = None, init_std: float = 0.1,
                 edge_weights: Optional[str] = None,
                 edge_weight_kwargs: Optional[Dict[str, Any]] = None):
        super().__init__(num_users, num_items, behaviors, embedding_dim,
                         num_layers, combine, init_std, edge_weights,
                         edge_weight_kwargs)
        if transform not in self.transforms:
            raise ValueError(f"'transform' must be one of {self.transforms}"
                             f" (got {transform!r})")
        self.dag = behavior_dag(behaviors) if dag is None else dag
        _check_dag(self.dag, self.behaviors)
        self.order = [b for b in nx.topological_sort(self.dag)]
        self.transform = transform
        self.residual = residual
        self.lins = torch.nn.ModuleDict()
        if transform == 'linear':
            for b in self.behaviors:
                if self.dag.in_degree(b) > 0:
                    self.lins[b] = torch.nn.Linear(embedding_dim,
                                                   embedding_dim, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        r"""Re-draws the base embeddings and sets the stage transforms to the
        identity.
        """
        super().reset_parameters()
        for lin in self.lins.values():
            torch.nn.init.eye_(lin.weight)  # a stage starts as a pass-through

    def stage_input(self, b: str, out: Dict[str, Pair]) -> Optional[Pair]:
        r"""The input of stage :obj:`b`: the mean of its parents' outputs,
        linearly transformed if configured; :obj:`None` for a root.
        """
        parents = sorted(self.dag.predecessors(b),
                         key=self.behaviors.index)
        if not parents:
            return None
        x_u = torch.stack([out[p][0] for p in parents]).mean(0)
        x_i = torch.stack([out[p][1] for p in parents]).mean(0)
        if b in self.lins:
            x_u, x_i = self.lins[b](x_u), self.lins[b](x_i)
        return x_u, x_i

    def forward(self, graph: BehaviorGraph) -> Dict[str, Pair]:
        r"""Runs the stages in topological order; returns per-behavior
        :obj:`(user [U, D], item [I, D])` in :obj:`behaviors` order.
        """
        base = (self.user_embedding.weight, self.item_embedding.weight)
        out: Dict[str, Pair] = {}
        for b in self.order:
            x = self.stage_input(b, out) or base
            h_u, h_i = self.convs[b](self.adjacency(graph, b), *x)
            if self.residual and self.dag.in_degree(b) > 0:
                h_u, h_i = h_u + x[0], h_i + x[1]
            out[b] = (h_u, h_i)
        return {b: out[b] for b in self.behaviors}
