"""Named recommenders, built from graphrec.nn parts and looked up by name."""
from __future__ import annotations

import inspect
from typing import Any, Callable, Dict

from graphrec.models.base import Recommender, mask_pairs_
from graphrec.models.full import FULL_ABLATIONS, CausalCascade
from graphrec.models.heuristic import (
    AuxiliaryReranker,
    ItemKNN,
    ItemPopularity,
    UserKNN,
)
from graphrec.models.mf import MF, LightGCN
from graphrec.models.multi import CRGCN, MBCGCN, NMTR, MultiBehaviorRecommender
from graphrec.models.plugins import PluginRecommender

#: name -> constructor taking (num_users, num_items, **kwargs).
MODELS: Dict[str, Callable[..., Recommender]] = {
    'pop': ItemPopularity,
    'reranker': AuxiliaryReranker,
    'userknn': UserKNN,
    'itemknn': ItemKNN,
    'mf': MF,
    'lightgcn': LightGCN,
    'multi': MultiBehaviorRecommender,
    'nmtr': NMTR,
    'mbcgcn': MBCGCN,
    'crgcn': CRGCN,
    'plugins': PluginRecommender,
    'causal_cascade': CausalCascade,
}


#: model name -> {ablation name -> constructor overrides}: the components
#: ``graphrec ablate`` removes or swaps, one named set of overrides each.
ABLATIONS: Dict[str, Dict[str, Dict[str, Any]]] = {
    'mbcgcn': {'no_transform': {'transform': 'none'},
               'target_only': {'aggregate': 'target'}},
    'crgcn': {'no_residual': {'residual': False}},
    'causal_cascade': FULL_ABLATIONS,
}


def register_model(name: str, constructor: Callable[..., Recommender]
                   ) -> Callable[..., Recommender]:
    r"""Adds :obj:`constructor` to the registry under :obj:`name`."""
    if name in MODELS:
        raise ValueError(f"a model named '{name}' is already registered")
    MODELS[name] = constructor
    return constructor


def build_model(name: str, num_users: int, num_items: int,
                dataset_behaviors=None, **kwargs: Any) -> Recommender:
    r"""Builds a registered model by name with constructor arguments.

    Multi-behavior models get :obj:`behaviors=dataset_behaviors` unless
    :obj:`behaviors` is given.

    Example:
        >>> build_model('lightgcn', 100, 50, num_layers=2)
        >>> build_model('mbcgcn', 100, 50, ('view', 'cart', 'buy'))
    """
    if name not in MODELS:
        raise ValueError(f"unknown model '{name}': choose one of "
                         f"{sorted(MODELS)}")
    constructor = MODELS[name]
    params = inspect.signature(constructor).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        # A composition passes its other arguments on to the class it builds.
        target = getattr(constructor, 'passes_kwargs_to',
                         MultiBehaviorRecommender)
        params = {**params, **inspect.signature(target).parameters}
    unknown = [k for k in kwargs if k not in params]
    if unknown:
        allowed = [p for p in params if p not in ('num_users', 'num_items')]
        raise ValueError(f"model '{name}' takes no argument(s) {unknown}; "
                         f"its arguments are {allowed}")
    if getattr(constructor, 'needs_behaviors', False):
        if 'behaviors' not in kwargs:
            if dataset_behaviors is None:
                raise ValueError(f"model '{name}' needs the dataset's "
                                 f"'behaviors' (target last)")
            kwargs['behaviors'] = tuple(dataset_behaviors)
    return constructor(num_users, num_items, **kwargs)


__all__ = ['MODELS', 'ABLATIONS', 'register_model', 'build_model',
           'Recommender', 'MF', 'LightGCN', 'ItemPopularity',
           'MultiBehaviorRecommender', 'NMTR', 'MBCGCN', 'CRGCN',
           'AuxiliaryReranker', 'UserKNN', 'ItemKNN', 'PluginRecommender',
           'CausalCascade',
           'mask_pairs_']
