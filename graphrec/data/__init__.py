"""Datasets in memory, graphs, splits and negative sampling."""
from graphrec.data.dataset import (DataFormatError, MultiBehaviorDataset,
                                   pair_keys)

__all__ = ['DataFormatError', 'MultiBehaviorDataset', 'pair_keys']
