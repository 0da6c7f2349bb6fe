"""The in-memory multi-behavior dataset every other part of graphrec reads."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor


class DataFormatError(ValueError):
    r"""Bad input data, located by file and line where they are known.

    Args:
        message (str): What is wrong, with the expected and the actual value.
        path (str, optional): The file the problem was found in.
        line (int, optional): The 1-based line number in :obj:`path`.
    """
    def __init__(self, message: str, path: Optional[str] = None,
                 line: Optional[int] = None):
        self.message = message
        self.path = None if path is None else str(path)
        self.line = line
        where = ''
        if self.path is not None:
            where = self.path if line is None else f'{self.path}:{line}'
            where += ': '
        super().__init__(where + message)


def pair_keys(edge_index: Tensor, num_items: int) -> Tensor:
    r"""Encodes user-item pairs :obj:`[2, E]` as one int64 key per pair."""
    return edge_index[0].long() * int(num_items) + edge_index[1].long()


def _check_edge_index(name: str, edge_index: Tensor, num_users: int,
                      num_items: int) -> None:
    if not isinstance(edge_index, Tensor):
        raise TypeError(f"'{name}' must be a LongTensor of shape [2, E] "
                        f"(got {type(edge_index).__name__})")
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"'{name}' must have shape [2, E] "
                         f"(got {list(edge_index.shape)})")
    if edge_index.dtype != torch.long:
        raise TypeError(f"'{name}' must have dtype torch.long "
                        f"(got {edge_index.dtype})")
    if edge_index.numel() == 0:
        return
    for row, size, what in ((0, num_users, 'user'), (1, num_items, 'item')):
        lo, hi = int(edge_index[row].min()), int(edge_index[row].max())
        if lo < 0 or hi >= size:
            bad = lo if lo < 0 else hi
            raise ValueError(f"'{name}' has {what} id {bad} outside "
                             f"[0, {size - 1}] (num_{what}s={size})")


@dataclass
class MultiBehaviorDataset:
    r"""Users, items and their interactions under several behaviors.

    Ids are 0-based and contiguous. :obj:`behaviors` lists the behaviors in
    cascade order, from the weakest signal to the target, which comes last.
    Only :obj:`train` ever enters a graph; :obj:`valid` and :obj:`test` hold
    target interactions that are kept out of it (and that the negative
    sampling of training does not know about either).

    Args:
        name (str): A short name, recorded with every result.
        num_users (int): Number of users :math:`U`.
        num_items (int): Number of items :math:`I`.
        behaviors (Sequence[str]): Behavior names, target last.
        train (Dict[str, Tensor]): Train interactions per behavior, each a
            :obj:`[2, E_b]` LongTensor of (user, item).
        test (Tensor): Held-out target interactions :obj:`[2, T]`.
        valid (Tensor, optional): Validation target interactions
            :obj:`[2, V]`, carved from train. (default: :obj:`None`)
        timestamps (Dict[str, Tensor], optional): Unix time per train edge,
            per behavior, aligned with :obj:`train`. (default: :obj:`None`)
        user_ids (List, optional): Original id of each user index.
        item_ids (List, optional): Original id of each item index.
        checksum (str, optional): Checksum of the source files.
        info (dict, optional): Provenance: source, split and policies.
    """
    name: str
    num_users: int
    num_items: int
    behaviors: Sequence[str]
    train: Dict[str, Tensor]
    test: Tensor
    valid: Optional[Tensor] = None
    timestamps: Optional[Dict[str, Optional[Tensor]]] = None
    user_ids: Optional[List] = None
    item_ids: Optional[List] = None
    checksum: Optional[str] = None
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        self.behaviors = tuple(self.behaviors)
        if self.timestamps is None:
            self.timestamps = {b: None for b in self.behaviors}
        self.validate()

    @property
    def target(self) -> str:
        r"""The target behavior (the last one)."""
        return self.behaviors[-1]

    @property
    def auxiliary(self) -> tuple:
        r"""The behaviors other than the target, in cascade order."""
        return self.behaviors[:-1]

    def validate(self) -> MultiBehaviorDataset:
        r"""Checks shapes, id ranges and that train, validation and test are
        disjoint; raises :class:`ValueError` naming the problem.
        """
        for arg in ('num_users', 'num_items'):
            value = getattr(self, arg)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"'{arg}' must be a positive int "
                                 f"(got {value!r})")
        if len(self.behaviors) == 0:
            raise ValueError("'behaviors' must name at least one behavior "
                             "(got an empty sequence)")
        if len(set(self.behaviors)) != len(self.behaviors):
            raise ValueError(f"'behaviors' has duplicates "
                             f"(got {list(self.behaviors)})")
        unknown = set(self.train) - set(self.behaviors)
        if unknown:
            raise ValueError(f"'train' has behaviors {sorted(unknown)} that "
                             f"are not in 'behaviors' {list(self.behaviors)}")
        missing = [b for b in self.behaviors if b not in self.train]
        if missing:
            raise ValueError(f"'train' has no interactions for behaviors "
                             f"{missing} (behaviors: {list(self.behaviors)})")
        for b in self.behaviors:
            _check_edge_index(f'train[{b!r}]', self.train[b], self.num_users,
                              self.num_items)
            ts = self.timestamps.get(b)
            if ts is not None and ts.numel() != self.train[b].size(1):
                raise ValueError(
                    f"'timestamps[{b!r}]' has {ts.numel()} entries but "
                    f"train[{b!r}] has {self.train[b].size(1)} edges")
        if self.train[self.target].size(1) == 0:
            raise ValueError(f"the target behavior '{self.target}' has no "
                             f"train interactions")
        _check_edge_index('test', self.test, self.num_users, self.num_items)
        if self.valid is not None:
            _check_edge_index('valid', self.valid, self.num_users,
                              self.num_items)
        self.check_disjoint()
        return self

    def check_disjoint(self) -> None:
        r"""Raises :class:`ValueError` if a validation or test pair is in the
        train target behavior, if validation and test share a pair, or if
        validation equals test.
        """
        n = self.num_items
        train = pair_keys(self.train[self.target], n)
        test = pair_keys(self.test, n)
        parts = [('test', test)]
        if self.valid is not None:
            valid = pair_keys(self.valid, n)
            if valid.numel() > 0 and torch.equal(valid.sort().values,
                                                 test.sort().values):
                raise ValueError("'valid' is identical to 'test': validation "
                                 "must be carved from train, not copied from "
                                 "the test set")
            parts.append(('valid', valid))
            clash = torch.isin(valid, test)
            if bool(clash.any()):
                k = int(valid[clash][0])
                raise ValueError(f"'valid' and 'test' share {int(clash.sum())}"
                                 f" pair(s), e.g. (user {k // n}, item "
                                 f"{k % n})")
        for what, keys in parts:
            clash = torch.isin(keys, train)
            if bool(clash.any()):
                k = int(keys[clash][0])
                raise ValueError(
                    f"'{what}' has {int(clash.sum())} pair(s) that are also "
                    f"train '{self.target}' interactions, e.g. (user "
                    f"{k // n}, item {k % n}); held-out pairs must not be in "
                    f"the training graph")

    def heldout_index(self) -> Tensor:
        r"""All held-out target pairs (validation and test), :obj:`[2, *]`."""
        parts = [self.test] if self.valid is None else [self.valid, self.test]
        return torch.cat(parts, dim=1)

    def replace(self, **changes) -> MultiBehaviorDataset:
        r"""Returns a validated shallow copy with some fields replaced."""
        out = copy.copy(self)
        out.train = dict(self.train)
        out.timestamps = dict(self.timestamps)
        out.info = dict(self.info)
        for key, value in changes.items():
            setattr(out, key, value)
        out.validate()
        return out

    def stats(self) -> dict:
        r"""Counts per behavior and split, for dataset cards and logs."""
        out = {
            'name': self.name,
            'num_users': self.num_users,
            'num_items': self.num_items,
            'behaviors': list(self.behaviors),
            'target': self.target,
            'train': {b: int(self.train[b].size(1)) for b in self.behaviors},
            'valid': 0 if self.valid is None else int(self.valid.size(1)),
            'test': int(self.test.size(1)),
        }
        n = self.num_items
        if self.auxiliary:
            # Shares of target pairs already viewed/carted in train: a test
            # far from train's says the release treats them differently.
            aux = torch.cat([pair_keys(self.train[b], n)
                             for b in self.auxiliary])
            for key, pairs in (('train', self.train[self.target]),
                               ('test', self.test)):
                if pairs.numel() > 0:
                    out[f'{key}_visited_share'] = float(torch.isin(
                        pair_keys(pairs, n), aux).float().mean())
        if self.checksum is not None:
            out['checksum'] = self.checksum
        return out

    def __repr__(self) -> str:
        counts = ', '.join(f'{b}={self.train[b].size(1)}'
                           for b in self.behaviors)
        valid = 0 if self.valid is None else self.valid.size(1)
        return (f'{self.__class__.__name__}(name={self.name!r}, '
                f'num_users={self.num_users}, num_items={self.num_items}, '
                f'train=({counts}), valid={valid}, test={self.test.size(1)})')
