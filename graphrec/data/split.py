r"""Validation carved from train, and a global temporal split.

Both return a new :class:`~graphrec.data.dataset.MultiBehaviorDataset` whose
disjointness is checked on construction, and record how they split in
:obj:`info['split']` so that every result row says which split it used.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from graphrec.data.dataset import MultiBehaviorDataset, pair_keys


def _pick_one_per_user(users: Tensor, order_key: Tensor) -> Tensor:
    r"""Returns, for every user with at least two entries, the position of
    its entry with the largest :obj:`order_key` (ties: the last position).
    """
    num = users.numel()
    pos = torch.arange(num)
    # Sort by (user, key, position); the last entry of each user wins.
    perm = torch.argsort(order_key, stable=True)
    perm = perm[torch.argsort(users[perm], stable=True)]
    sorted_users = users[perm]
    last = torch.ones(num, dtype=torch.bool)
    last[:-1] = sorted_users[1:] != sorted_users[:-1]
    counts = torch.bincount(users)
    keep = last & (counts[sorted_users] >= 2)
    return pos[perm[keep]]


def carve_validation(dataset: MultiBehaviorDataset, seed: int = 0,
                     by: str = 'auto',
                     drop_auxiliary: Optional[bool] = None
                     ) -> MultiBehaviorDataset:
    r"""Moves one train target interaction of every user with at least two
    into a validation split.

    The held-out interaction is the user's latest by timestamp when the
    target behavior has timestamps (and :obj:`by` is :obj:`'auto'` or
    :obj:`'time'`), else one drawn at random with :obj:`seed`. Users with a
    single train target interaction keep it, so that no user loses all
    training signal. By default only the target behavior changes; the moved
    pairs stay in the auxiliary behaviors, as they would at serving time.
    With timestamps, the user's events after the validation purchase stay
    too: one model serves validation and test, and they are the past of the
    test purchase (its views before it, above all).

    Validation must look like test. Where the test pairs were removed from
    the users' auxiliary behaviors too (retailrocket's release: no test item
    was viewed or carted in train), so must the validation pairs be, or
    validation would reward re-ranking the user's history, which the test
    never does: :obj:`drop_auxiliary` does that.

    Args:
        dataset (MultiBehaviorDataset): Data without a validation split.
        seed (int): Seed of the random choice. (default: :obj:`0`)
        by (str): :obj:`'auto'`, :obj:`'time'` or :obj:`'random'`.
            (default: :obj:`'auto'`)
        drop_auxiliary (bool, optional): Also remove each validation pair
            from every auxiliary behavior. (default: :obj:`None`, what
            :obj:`dataset.info['test_unvisited']` says, which the public
            dataset registry sets from the release's documentation)

    Returns:
        MultiBehaviorDataset: A copy with :obj:`valid` set and
        :obj:`info['split']['valid']` describing the rule.
    """
    if dataset.valid is not None:
        raise ValueError(f"dataset '{dataset.name}' already has a validation "
                         f"split ({dataset.valid.size(1)} pairs); carve it "
                         f"once")
    if by not in ('auto', 'time', 'random'):
        raise ValueError(f"'by' must be 'auto', 'time' or 'random' "
                         f"(got {by!r})")
    target = dataset.target
    edges = dataset.train[target]
    times = dataset.timestamps.get(target)
    if by == 'time' and times is None:
        raise ValueError(f"'by' is 'time' but the target behavior "
                         f"'{target}' of dataset '{dataset.name}' has no "
                         f"timestamps")
    use_time = times is not None and by != 'random'
    if use_time:
        key = times.double()
        rule = 'latest target interaction by timestamp'
    else:
        gen = torch.Generator().manual_seed(int(seed))
        key = torch.rand(edges.size(1), generator=gen, dtype=torch.float64)
        rule = f'one random target interaction (seed {seed})'
    chosen = _pick_one_per_user(edges[0], key)
    keep = torch.ones(edges.size(1), dtype=torch.bool)
    keep[chosen] = False
    train = dict(dataset.train)
    train[target] = edges[:, keep]
    timestamps = dict(dataset.timestamps)
    if times is not None:
        timestamps[target] = times[keep]
    if drop_auxiliary is None:
        drop_auxiliary = bool(dataset.info.get('test_unvisited', False))
    dropped = 0
    if drop_auxiliary:
        held = pair_keys(edges[:, chosen], dataset.num_items)
        for b in dataset.auxiliary:
            out = torch.isin(pair_keys(train[b], dataset.num_items), held)
            dropped += int(out.sum())
            train[b] = train[b][:, ~out]
            if timestamps.get(b) is not None:
                timestamps[b] = timestamps[b][~out]
    info = dict(dataset.info)
    split = dict(info.get('split') or {})
    split['valid'] = {'rule': rule + ' of every user with at least two',
                      'seed': None if use_time else int(seed),
                      'pairs': int(chosen.numel())}
    if drop_auxiliary:
        split['valid']['auxiliary_removed'] = dropped
    info['split'] = split
    return dataset.replace(train=train, valid=edges[:, chosen].clone(),
                           timestamps=timestamps, info=info)


def temporal_split(dataset: MultiBehaviorDataset, test_fraction: float = 0.1,
                   valid_fraction: float = 0.1,
                   cutoff: Optional[float] = None) -> MultiBehaviorDataset:
    r"""Splits all interactions at global time cut-offs.

    Target interactions after the test cut-off become the test set, those
    between the validation and the test cut-off the validation set, and
    auxiliary interactions after the validation cut-off are dropped (they
    would leak the future into the graph). Test and validation pairs that
    are already train target pairs, or test pairs already in validation, are
    dropped, so the three stay disjoint. The split is built from the train
    interactions alone; an existing test set of :obj:`dataset` (which has no
    timestamps) is replaced, and its size recorded in :obj:`info['split']`.

    Args:
        dataset (MultiBehaviorDataset): Data with timestamps on every
            behavior.
        test_fraction (float): Share of target interactions, by time, for
            test. (default: :obj:`0.1`)
        valid_fraction (float): Share for validation. (default: :obj:`0.1`)
        cutoff (float, optional): Explicit test cut-off time instead of the
            quantile. (default: :obj:`None`)
    """
    missing = [b for b in dataset.behaviors
               if dataset.timestamps.get(b) is None]
    if missing:
        raise ValueError(f"temporal_split needs timestamps on every behavior;"
                         f" dataset '{dataset.name}' has none for {missing}")
    for name, value in (('test_fraction', test_fraction),
                        ('valid_fraction', valid_fraction)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"'{name}' must be in [0, 1) (got {value!r})")
    if test_fraction + valid_fraction >= 1.0:
        raise ValueError(f"'test_fraction' + 'valid_fraction' must be below 1"
                         f" (got {test_fraction + valid_fraction})")
    target, n = dataset.target, dataset.num_items
    times = dataset.timestamps[target].double()
    if cutoff is None:
        t_test = float(torch.quantile(times, 1.0 - test_fraction))
    else:
        t_test = float(cutoff)
    before = times[times < t_test]
    if before.numel() == 0:
        raise ValueError(f'no target interaction before the test cut-off '
                         f'{t_test}')
    t_valid = float(torch.quantile(
        before, 1.0 - valid_fraction / max(1.0 - test_fraction, 1e-12)))
    edges = dataset.train[target]
    train_mask = times < t_valid
    train_t = edges[:, train_mask]
    train_keys = pair_keys(train_t, n)

    def _fresh(index: Tensor, exclude: Tensor) -> Tensor:
        keys = pair_keys(index, n)
        keep = ~torch.isin(keys, exclude)
        keys = torch.unique(keys[keep])
        return torch.stack([keys // n, keys % n])

    valid = _fresh(edges[:, (times >= t_valid) & (times < t_test)],
                   train_keys)
    test = _fresh(edges[:, times >= t_test],
                  torch.cat([train_keys, pair_keys(valid, n)]))
    train, timestamps = {}, {}
    for b in dataset.behaviors:
        ts = dataset.timestamps[b]
        keep = ts.double() < t_valid
        train[b] = dataset.train[b][:, keep]
        timestamps[b] = ts[keep]
    info = dict(dataset.info)
    info['split'] = {'method': 'global temporal', 'valid_cutoff': t_valid,
                     'test_cutoff': t_test, 'valid': int(valid.size(1)),
                     'test': int(test.size(1)),
                     'dropped_original_test': int(dataset.test.size(1))}
    return dataset.replace(train=train, timestamps=timestamps, valid=valid,
                           test=test, info=info)
