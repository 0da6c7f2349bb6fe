"""Full-ranking evaluation, masking policies and pointwise metrics."""
from graphrec.eval.evaluator import Evaluator, MaskingPolicy, evaluate_ranking
from graphrec.eval.metrics import auc, gauc, logloss, ranking_metrics

__all__ = [
    'Evaluator',
    'MaskingPolicy',
    'evaluate_ranking',
    'ranking_metrics',
    'auc',
    'gauc',
    'logloss',
]
