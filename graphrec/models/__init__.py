"""Named recommenders, built from graphrec.nn parts and looked up by name."""
from __future__ import annotations

import inspect
from typing import Any, Callable, Dict

from graphrec.models.base import Recommender, mask_pairs_
from graphrec.models.heuristic import AuxiliaryReranker, ItemPopularity
from graphrec.models.mf import MF, LightGCN

#: name -> constructor taking (num_users, num_items, **kwargs).
MODELS: Dict[str, Callable[..., Recommender]] = {
    'pop': ItemPopularity,
    'reranker': AuxiliaryReranker,
    'mf': MF,
    'lightgcn': LightGCN,
}


def register_model(name: str, constructor: Callable[..., Recommender]
                   ) -> Callable[..., Recommender]:
    r"""Adds :obj:`constructor` to the registry under :obj:`name`."""
    if name in MODELS:
        raise ValueError(f"a model named '{name}' is already registered")
    MODELS[name] = constructor
    return constructor


def build_model(name: str, num_users: int, num_items: int,
                **kwargs: Any) -> Recommender:
    r"""Builds a registered model by name with constructor arguments.

    Example:
        >>> build_model('lightgcn', 100, 50, num_layers=2)
    """
    if name not in MODELS:
        raise ValueError(f"unknown model '{name}': choose one of "
                         f"{sorted(MODELS)}")
    constructor = MODELS[name]
    params = inspect.signature(constructor).parameters
    unknown = [k for k in kwargs if k not in params]
    if unknown:
        allowed = [p for p in params if p not in ('num_users', 'num_items')]
        raise ValueError(f"model '{name}' takes no argument(s) {unknown}; "
                         f"its arguments are {allowed}")
    return constructor(num_users, num_items, **kwargs)


__all__ = ['MODELS', 'register_model', 'build_model', 'Recommender', 'MF',
           'LightGCN', 'ItemPopularity', 'AuxiliaryReranker', 'mask_pairs_']
