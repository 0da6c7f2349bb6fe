r"""Vectorised per-behavior negative sampling."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

from graphrec.data.dataset import MultiBehaviorDataset, pair_keys


def viewed_not_bought(dataset: MultiBehaviorDataset,
                      behaviors: Optional[Sequence[str]] = None) -> Tensor:
    r"""Pairs :obj:`[2, P]` the user had in an auxiliary behavior but not in
    the train target behavior: the "viewed but not bought" hard negatives.

    Held-out (validation and test) pairs stay in: the model must not know
    which items the user buys later. Leaving them out would tell it, since
    each held-out item would be the one visited item never pushed down
    (on tmall 83% of the test items are among the user's viewed ones).

    Args:
        dataset (MultiBehaviorDataset): The data.
        behaviors (Sequence[str], optional): Auxiliary behaviors to take the
            pairs from. (default: :obj:`None`, all of them)
    """
    behaviors = dataset.auxiliary if behaviors is None else tuple(behaviors)
    bad = [b for b in behaviors if b not in dataset.auxiliary]
    if bad:
        raise ValueError(f"'behaviors' must be auxiliary behaviors of "
                         f"dataset '{dataset.name}' {list(dataset.auxiliary)}"
                         f" (got {bad})")
    n = dataset.num_items
    if not behaviors:
        return torch.empty(2, 0, dtype=torch.long)
    keys = torch.unique(torch.cat([pair_keys(dataset.train[b], n)
                                   for b in behaviors]))
    drop = pair_keys(dataset.train[dataset.target], n)
    keys = keys[~torch.isin(keys, drop)]
    return torch.stack([keys // n, keys % n])


class NegativeSampler:
    r"""Draws, for each given user, items the user has no positive pair
    with, uniformly, by vectorised rejection sampling.

    Forbidden pairs are the positives of the behavior and the
    :obj:`exclude_index` pairs. Do not pass held-out (validation or test)
    pairs there: a negative pool without them leaks the held-out labels
    into training (the :class:`~graphrec.train.Trainer` excludes train
    positives only). With
    :obj:`hard_index` and :obj:`hard_ratio`, each negative is drawn with
    probability :obj:`hard_ratio` from the user's hard candidates (e.g.
    :func:`viewed_not_bought`) when the user has any.

    Args:
        num_users (int): Number of users.
        num_items (int): Number of items.
        positive_index (Tensor): Positive pairs :obj:`[2, E]`.
        exclude_index (Tensor, optional): More forbidden pairs.
        hard_index (Tensor, optional): Hard-negative candidates :obj:`[2, H]`.
        hard_ratio (float): Share of hard negatives. (default: :obj:`0.0`)
        max_rounds (int): Rejection rounds before the exact per-user
            fallback for the few users left. (default: :obj:`20`)
    """
    def __init__(self, num_users: int, num_items: int, positive_index: Tensor,
                 exclude_index: Optional[Tensor] = None,
                 hard_index: Optional[Tensor] = None, hard_ratio: float = 0.0,
                 max_rounds: int = 20):
        if not 0.0 <= float(hard_ratio) <= 1.0:
            raise ValueError(f"'hard_ratio' must be in [0, 1] "
                             f"(got {hard_ratio!r})")
        if hard_ratio > 0 and hard_index is None:
            raise ValueError("'hard_ratio' > 0 needs 'hard_index'")
        self.num_users, self.num_items = int(num_users), int(num_items)
        self.device = positive_index.device
        parts = [pair_keys(positive_index.cpu(), num_items)]
        if exclude_index is not None:
            parts.append(pair_keys(exclude_index.cpu(), num_items))
        self.forbidden = torch.unique(torch.cat(parts))  # sorted
        users = self.forbidden // num_items
        self.forbidden_count = torch.bincount(users, minlength=num_users)
        full = (self.forbidden_count >= num_items).nonzero().view(-1)
        self.full_users = full
        self.hard_ratio = float(hard_ratio)
        self.max_rounds = int(max_rounds)
        self.hard_ptr = self.hard_items = None
        if hard_index is not None:
            keys = torch.unique(pair_keys(hard_index.cpu(), num_items))
            keys = keys[~self.is_forbidden_keys(keys)]
            count = torch.bincount(keys // num_items, minlength=num_users)
            self.hard_ptr = torch.zeros(num_users + 1, dtype=torch.long)
            self.hard_ptr[1:] = torch.cumsum(count, 0)
            self.hard_items = keys % num_items

    def is_forbidden_keys(self, keys: Tensor) -> Tensor:
        r"""Whether each pair key is a forbidden pair."""
        if self.forbidden.numel() == 0:
            return torch.zeros_like(keys, dtype=torch.bool)
        pos = torch.searchsorted(self.forbidden, keys)
        pos = pos.clamp(max=self.forbidden.numel() - 1)
        return self.forbidden[pos] == keys

    def is_forbidden(self, user: Tensor, item: Tensor) -> Tensor:
        r"""Whether each (user, item) pair may not be drawn."""
        return self.is_forbidden_keys(user.cpu().long() * self.num_items +
                                      item.cpu().long())

    def sample(self, user_index: Tensor, num_negatives: int = 1,
               generator: Optional[torch.Generator] = None) -> Tensor:
        r"""Draws :obj:`num_negatives` items per entry of :obj:`user_index`.

        Returns:
            Tensor: :obj:`[B, num_negatives]` item ids on the device of the
            positives.
        """
        user = user_index.cpu().long().view(-1)
        if self.full_users.numel() > 0:
            bad = torch.isin(user, self.full_users)
            if bool(bad.any()):
                raise ValueError(f'user {int(user[bad][0])} has no item left '
                                 f'to draw as a negative: every item is a '
                                 f'positive or excluded pair')
        k = int(num_negatives)
        users = user.view(-1, 1).expand(-1, k).reshape(-1)
        items = torch.randint(self.num_items, (users.numel(), ),
                              generator=generator)
        if self.hard_ratio > 0:
            start = self.hard_ptr[users]
            count = self.hard_ptr[users + 1] - start
            hard = (torch.rand(users.numel(), generator=generator)
                    < self.hard_ratio) & (count > 0)
            offset = (torch.rand(users.numel(), generator=generator) *
                      count.clamp(min=1)).long()
            items[hard] = self.hard_items[(start + offset)[hard]]
        todo = self.is_forbidden(users, items).nonzero().view(-1)
        for _ in range(self.max_rounds):
            if todo.numel() == 0:
                break
            items[todo] = torch.randint(self.num_items, (todo.numel(), ),
                                        generator=generator)
            todo = todo[self.is_forbidden(users[todo], items[todo])]
        for pos in todo.tolist():  # users with almost every item forbidden
            u = int(users[pos])
            lo = torch.searchsorted(self.forbidden, u * self.num_items)
            hi = torch.searchsorted(self.forbidden, (u + 1) * self.num_items)
            allowed = torch.ones(self.num_items, dtype=torch.bool)
            allowed[self.forbidden[lo:hi] % self.num_items] = False
            choices = allowed.nonzero().view(-1)
            pick = torch.randint(choices.numel(), (1, ), generator=generator)
            items[pos] = choices[pick]
        return items.view(-1, k).to(self.device)
