r"""Graph ablations as dataset transforms: the same model, a different train
graph, no code edits.

Each transform returns a new :class:`MultiBehaviorDataset` whose *train*
interactions differ; validation and test pairs are never touched, so results
stay comparable with the untransformed run. Each records what it did in
``info['transforms']``, which result rows carry.
"""
from __future__ import annotations

from typing import Sequence

import torch

from graphrec.data.dataset import MultiBehaviorDataset

__all__ = ['keep_behaviors', 'subsample_behavior', 'reorder_behaviors',
           'apply_transform']


def _with(dataset: MultiBehaviorDataset, note: str,
          **changes) -> MultiBehaviorDataset:
    out = dataset.replace(**changes)
    out.info['transforms'] = list(dataset.info.get('transforms', [])) + [
        note]
    return out


def keep_behaviors(dataset: MultiBehaviorDataset,
                   behaviors: Sequence[str]) -> MultiBehaviorDataset:
    r"""Keeps only :obj:`behaviors` (e.g. buy + view, NMTR's behavior
    study); their cascade order stays the dataset's and the target must be
    among them.
    """
    if isinstance(behaviors, str):
        behaviors = [behaviors]
    unknown = [b for b in behaviors if b not in dataset.behaviors]
    if unknown:
        raise ValueError(f"'behaviors' names unknown behaviors {unknown} "
                         f"(dataset behaviors: {list(dataset.behaviors)})")
    if dataset.target not in behaviors:
        raise ValueError(f"'behaviors' must keep the target "
                         f"'{dataset.target}' (got {list(behaviors)})")
    keep = tuple(b for b in dataset.behaviors if b in behaviors)
    return _with(dataset, 'behaviors=' + '+'.join(keep), behaviors=keep,
                 train={b: dataset.train[b] for b in keep},
                 timestamps={b: dataset.timestamps.get(b) for b in keep})


def subsample_behavior(dataset: MultiBehaviorDataset, behavior: str,
                       fraction: float,
                       seed: int = 0) -> MultiBehaviorDataset:
    r"""Keeps a uniformly random :obj:`fraction` of the train edges of
    :obj:`behavior` (NMTR's "purchase + 50% view" study), seeded.
    """
    if behavior not in dataset.behaviors:
        raise ValueError(f"'behavior' must be one of "
                         f"{list(dataset.behaviors)} (got {behavior!r})")
    if (not isinstance(fraction, (int, float)) or isinstance(fraction, bool)
            or not 0.0 < fraction <= 1.0):
        raise ValueError(f"'fraction' must be a number in (0, 1] "
                         f"(got {fraction!r})")
    edges = dataset.train[behavior]
    num = edges.size(1)
    keep = max(1, int(round(fraction * num)))
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(num, generator=gen)[:keep].sort().values
    train = dict(dataset.train)
    train[behavior] = edges[:, idx]
    timestamps = dict(dataset.timestamps)
    if timestamps.get(behavior) is not None:
        timestamps[behavior] = timestamps[behavior][idx]
    return _with(dataset, f'{behavior}@{fraction:g}(seed {seed})',
                 train=train, timestamps=timestamps)


def reorder_behaviors(dataset: MultiBehaviorDataset,
                      order: Sequence[str]) -> MultiBehaviorDataset:
    r"""Permutes the cascade order of the auxiliary behaviors; :obj:`order`
    is a permutation of all behaviors with the target last.
    """
    order = tuple(order)
    if sorted(order) != sorted(dataset.behaviors):
        raise ValueError(f"'order' must be a permutation of "
                         f"{list(dataset.behaviors)} (got {list(order)})")
    if order[-1] != dataset.target:
        raise ValueError(f"'order' must end with the target "
                         f"'{dataset.target}' (got {list(order)})")
    return _with(dataset, 'order=' + '>'.join(order), behaviors=order)


def apply_transform(dataset: MultiBehaviorDataset,
                    spec: str) -> MultiBehaviorDataset:
    r"""Applies a transform written as text, as the CLI takes them:

    - ``behaviors=view+buy``: :func:`keep_behaviors`;
    - ``view@0.5`` (or ``view@0.5:SEED``): :func:`subsample_behavior`;
    - ``order=cart>view>buy``: :func:`reorder_behaviors`.
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"a transform must be a non-empty string such as "
                         f"'behaviors=view+buy', 'view@0.5' or "
                         f"'order=cart>view>buy' (got {spec!r})")
    if spec.startswith('behaviors='):
        return keep_behaviors(dataset, spec[len('behaviors='):].split('+'))
    if spec.startswith('order='):
        return reorder_behaviors(dataset, spec[len('order='):].split('>'))
    if '@' in spec:
        behavior, rest = spec.split('@', 1)
        fraction, _, seed = rest.partition(':')
        try:
            value, seed_value = float(fraction), int(seed or 0)
        except ValueError:
            raise ValueError(f"transform {spec!r}: expected "
                             f"'behavior@fraction[:seed]', e.g. 'view@0.5'"
                             ) from None
        return subsample_behavior(dataset, behavior, value, seed_value)
    raise ValueError(f"unknown transform {spec!r}: expected "
                     f"'behaviors=a+b', 'behavior@fraction[:seed]' or "
                     f"'order=a>b>target'")
