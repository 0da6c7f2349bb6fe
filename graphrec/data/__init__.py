"""Datasets in memory, graphs, splits and negative sampling."""
from graphrec.data.dataset import (
                                   DataFormatError,
                                   MultiBehaviorDataset,
                                   pair_keys,
)
from graphrec.data.graph import BehaviorGraph, BipartiteAdjacency
from graphrec.data.sampling import NegativeSampler, viewed_not_bought
from graphrec.data.split import carve_validation, temporal_split

__all__ = ['BehaviorGraph', 'BipartiteAdjacency', 'DataFormatError',
           'MultiBehaviorDataset', 'NegativeSampler', 'carve_validation',
           'pair_keys', 'temporal_split', 'viewed_not_bought']
