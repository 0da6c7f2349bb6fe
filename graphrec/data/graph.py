"""Training graphs: one bipartite user-item edge type per behavior."""
from __future__ import annotations

import warnings
from typing import Dict, Iterable, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from graphrec.data.dataset import MultiBehaviorDataset, pair_keys

# Sparse CSR products are the supported fast path on CPU and CUDA here.
warnings.filterwarnings('ignore', message='Sparse CSR tensor support')

BehaviorSpec = Union[str, Sequence[str]]


class BipartiteAdjacency:
    r"""A weighted user-item adjacency :math:`R \in \mathbb{R}^{U \times I}`
    stored twice, as CSR of :math:`R` and of :math:`R^\top`, so that both
    propagation directions are one sparse-dense product with no transpose at
    run time.

    With :obj:`normalize=True` the value of edge :math:`(u, i)` is
    :math:`w_{ui} / \sqrt{d_u d_i}`, degrees counted over this edge set.
    Edge values can be replaced in place with :meth:`set_edge_weight`
    (aligned with the original edge order), so learned weights keep the
    sparse layout and need no re-sorting.

    Args:
        edge_index (Tensor): Unique (user, item) pairs :obj:`[2, E]`.
        num_users (int): Number of users :math:`U`.
        num_items (int): Number of items :math:`I`.
        edge_weight (Tensor, optional): Weights :obj:`[E]`.
            (default: :obj:`None`, all ones)
        normalize (bool, optional): Apply the symmetric
            :math:`1/\sqrt{d_u d_i}` normalisation. (default: :obj:`True`)
    """
    def __init__(self, edge_index: Tensor, num_users: int, num_items: int,
                 edge_weight: Optional[Tensor] = None,
                 normalize: bool = True):
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError(f"'edge_index' must have shape [2, E] "
                             f"(got {list(edge_index.shape)})")
        self.num_users, self.num_items = int(num_users), int(num_items)
        self.edge_index = edge_index.long()
        self.normalize = normalize
        user, item = self.edge_index
        device = edge_index.device

        self.user_degree = torch.bincount(user, minlength=num_users)
        self.item_degree = torch.bincount(item, minlength=num_items)

        # Edge e sits at position inv_perm[e] in the CSR values of R
        # (rows = users) and at inv_perm_t[e] in those of R^T (rows = items).
        perm = torch.argsort(pair_keys(self.edge_index, num_items))
        perm_t = torch.argsort(item * num_users + user)
        self.perm, self.perm_t = perm, perm_t
        self.crow = torch.zeros(num_users + 1, dtype=torch.long,
                                device=device)
        self.crow[1:] = torch.cumsum(self.user_degree, 0)
        self.col = item[perm].contiguous()
        self.crow_t = torch.zeros(num_items + 1, dtype=torch.long,
                                  device=device)
        self.crow_t[1:] = torch.cumsum(self.item_degree, 0)
        self.col_t = user[perm_t].contiguous()
        self.set_edge_weight(edge_weight)

    @property
    def num_edges(self) -> int:
        r"""The number of edges :math:`E`."""
        return self.edge_index.size(1)

    def norm(self) -> Tensor:
        r"""The per-edge factor :math:`1/\sqrt{d_u d_i}`, :obj:`[E]`."""
        user, item = self.edge_index
        deg = (self.user_degree[user] * self.item_degree[item]).float()
        return deg.clamp(min=1).rsqrt()

    def set_edge_weight(self, edge_weight: Optional[Tensor] = None) -> None:
        r"""Replaces the edge values, :obj:`[E]` in original edge order."""
        if edge_weight is None:
            value = torch.ones(self.num_edges, device=self.edge_index.device)
        else:
            if edge_weight.shape != (self.num_edges, ):
                raise ValueError(f"'edge_weight' must have shape "
                                 f"[{self.num_edges}] (got "
                                 f"{list(edge_weight.shape)})")
            value = edge_weight.detach().float()
        if self.normalize:
            value = value * self.norm()
        self.value = value
        self.val = value[self.perm].contiguous()
        self.val_t = value[self.perm_t].contiguous()

    def matrix(self, dtype: Optional[torch.dtype] = None) -> Tensor:
        r"""CSR :math:`R` of shape :obj:`[U, I]`."""
        val = self.val if dtype is None else self.val.to(dtype)
        return torch.sparse_csr_tensor(self.crow, self.col, val,
                                       (self.num_users, self.num_items),
                                       check_invariants=False)

    def matrix_t(self, dtype: Optional[torch.dtype] = None) -> Tensor:
        r"""CSR :math:`R^\top` of shape :obj:`[I, U]`."""
        val = self.val_t if dtype is None else self.val_t.to(dtype)
        return torch.sparse_csr_tensor(self.crow_t, self.col_t, val,
                                       (self.num_items, self.num_users),
                                       check_invariants=False)

    def to(self, device) -> BipartiteAdjacency:
        r"""A copy with every tensor moved to :obj:`device`."""
        out = object.__new__(BipartiteAdjacency)
        for key, value in self.__dict__.items():
            out.__dict__[key] = (value.to(device)
                                 if isinstance(value, Tensor) else value)
        return out

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_users={self.num_users}, '
                f'num_items={self.num_items}, num_edges={self.num_edges}, '
                f'normalize={self.normalize})')


def unique_pairs(edge_index: Tensor, num_items: int) -> Tensor:
    r"""Drops repeated (user, item) pairs, sorted by user then item."""
    keys = torch.unique(pair_keys(edge_index, num_items))
    return torch.stack([keys // num_items, keys % num_items])


class BehaviorGraph:
    r"""The training graph of a multi-behavior dataset: one user-item edge
    set per behavior, train edges only, with cached sparse adjacencies.

    Validation and test pairs never enter it. :meth:`adjacency` returns the
    (cached) normalised :class:`BipartiteAdjacency` of one behavior or of
    the union of several; :meth:`to_hetero_data` gives the same graph as a
    PyG :class:`~torch_geometric.data.HeteroData`.

    Args:
        num_users (int): Number of users.
        num_items (int): Number of items.
        edge_index_dict (Dict[str, Tensor]): Train pairs :obj:`[2, E_b]` per
            behavior.
        behaviors (Sequence[str]): Behaviors in cascade order, target last.
        timestamps (Dict[str, Tensor], optional): Unix time per edge.
    """
    def __init__(self, num_users: int, num_items: int,
                 edge_index_dict: Dict[str, Tensor],
                 behaviors: Sequence[str],
                 timestamps: Optional[Dict[str, Optional[Tensor]]] = None):
        self.num_users, self.num_items = int(num_users), int(num_items)
        self.behaviors = tuple(behaviors)
        missing = [b for b in self.behaviors if b not in edge_index_dict]
        if missing:
            raise ValueError(f"'edge_index_dict' lacks behaviors {missing} "
                             f"(got {sorted(edge_index_dict)})")
        self.edge_index_dict = {b: edge_index_dict[b] for b in self.behaviors}
        self.timestamps = {b: (timestamps or {}).get(b)
                           for b in self.behaviors}
        self._cache: Dict[Tuple, BipartiteAdjacency] = {}

    @classmethod
    def from_dataset(cls, dataset: MultiBehaviorDataset) -> BehaviorGraph:
        r"""The train graph of :obj:`dataset` (held-out pairs excluded)."""
        return cls(dataset.num_users, dataset.num_items, dataset.train,
                   dataset.behaviors, dataset.timestamps)

    @property
    def target(self) -> str:
        r"""The target behavior, the last in cascade order."""
        return self.behaviors[-1]

    @property
    def device(self) -> torch.device:
        r"""The device of the graph's edges."""
        return self.edge_index_dict[self.target].device

    def resolve(self, behaviors: Optional[BehaviorSpec]) -> Tuple[str, ...]:
        r"""Turns :obj:`'target'`, :obj:`'all'`, a name or a list of names
        into a tuple of known behavior names.
        """
        if behaviors is None or behaviors == 'all':
            return self.behaviors
        if behaviors == 'target':
            return (self.target, )
        names = (behaviors, ) if isinstance(behaviors, str) else tuple(
            behaviors)
        unknown = [b for b in names if b not in self.behaviors]
        if unknown or not names:
            raise ValueError(f"unknown behaviors {unknown or names}: expected"
                             f" names from {list(self.behaviors)}, 'target' "
                             f"or 'all'")
        return names

    def edge_index(self, behaviors: Optional[BehaviorSpec] = None) -> Tensor:
        r"""The unique pairs of one behavior or of a union of behaviors."""
        names = self.resolve(behaviors)
        if len(names) == 1:
            return self.edge_index_dict[names[0]]
        return unique_pairs(
            torch.cat([self.edge_index_dict[b] for b in names], dim=1),
            self.num_items)

    def adjacency(self, behaviors: Optional[BehaviorSpec] = None,
                  normalize: bool = True) -> BipartiteAdjacency:
        r"""The cached adjacency of one behavior or of a union."""
        key = (self.resolve(behaviors), normalize)
        if key not in self._cache:
            self._cache[key] = BipartiteAdjacency(
                self.edge_index(key[0]), self.num_users, self.num_items,
                normalize=normalize)
        return self._cache[key]

    def to(self, device) -> BehaviorGraph:
        r"""A copy with edges, timestamps and cached adjacencies moved to
        :obj:`device`.
        """
        out = BehaviorGraph(
            self.num_users, self.num_items,
            {b: e.to(device) for b, e in self.edge_index_dict.items()},
            self.behaviors,
            {b: None if t is None else t.to(device)
             for b, t in self.timestamps.items()})
        out._cache = {k: v.to(device) for k, v in self._cache.items()}
        return out

    def to_hetero_data(self):
        r"""The graph as :class:`~torch_geometric.data.HeteroData` with edge
        types :obj:`('user', b, 'item')` and :obj:`('item', 'rev_' + b,
        'user')` per behavior.
        """
        from torch_geometric.data import HeteroData
        data = HeteroData()
        data['user'].num_nodes = self.num_users
        data['item'].num_nodes = self.num_items
        for b in self.behaviors:
            edge_index = self.edge_index_dict[b]
            data['user', b, 'item'].edge_index = edge_index
            data['item', f'rev_{b}', 'user'].edge_index = edge_index.flip(0)
            if self.timestamps.get(b) is not None:
                data['user', b, 'item'].time = self.timestamps[b]
        return data

    @classmethod
    def from_hetero_data(cls, data, behaviors: Iterable[str]
                         ) -> BehaviorGraph:
        r"""Reads the :obj:`('user', b, 'item')` edge types of a
        :class:`~torch_geometric.data.HeteroData`.
        """
        behaviors = tuple(behaviors)
        return cls(data['user'].num_nodes, data['item'].num_nodes,
                   {b: data['user', b, 'item'].edge_index for b in behaviors},
                   behaviors)

    def __repr__(self) -> str:
        counts = ', '.join(f'{b}={e.size(1)}'
                           for b, e in self.edge_index_dict.items())
        return (f'{self.__class__.__name__}(num_users={self.num_users}, '
                f'num_items={self.num_items}, {counts})')


def to_hetero_data(dataset: MultiBehaviorDataset):
    r"""The train graph of :obj:`dataset` as a PyG
    :class:`~torch_geometric.data.HeteroData` (train edges only).
    """
    return BehaviorGraph.from_dataset(dataset).to_hetero_data()
