"""Full-ranking evaluation, masking policies and pointwise metrics."""
from graphrec.eval.evaluator import (
    DotProductScores,
    Evaluator,
    MaskingPolicy,
    auto_chunk_size,
    evaluate_ranking,
)
from graphrec.eval.metrics import auc, gauc, logloss, ranking_metrics

__all__ = [
    'DotProductScores',
    'Evaluator',
    'MaskingPolicy',
    'evaluate_ranking',
    'auto_chunk_size',
    'ranking_metrics',
    'auc',
    'gauc',
    'logloss',
]
