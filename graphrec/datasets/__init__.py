"""Public datasets by name, the synthetic dataset, and :func:`load_dataset`.

``graphrec.datasets.synthetic`` is imported only when asked for
(``load_dataset('synthetic')`` or ``graphrec.datasets.make_synthetic``).
"""
from graphrec.datasets.public import (
    PUBLIC_DATASETS,
    SYNTHETIC,
    PublicDataset,
    get_public_dataset,
    list_datasets,
    load_dataset,
)

__all__ = ['PUBLIC_DATASETS', 'SYNTHETIC', 'PublicDataset',
           'get_public_dataset', 'list_datasets', 'load_dataset',
           'make_synthetic']


def __getattr__(name):
    if name == 'make_synthetic':
        from graphrec.datasets.synthetic import make_synthetic
        return make_synthetic
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
