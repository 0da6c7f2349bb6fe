"""Neural building blocks: sparse propagation, encoders, heads."""
from graphrec.nn.causal import (
    LatentScenarios,
    StratifiedBackdoor,
    check_backdoor,
)
from graphrec.nn.contrastive import (
    BiasAwareContrastive,
    activity_strata,
    popularity_strata,
    quantile_strata,
)
from graphrec.nn.fusion import MoEFusion
from graphrec.nn.propagation import (
    bipartite_propagate,
    bipartite_propagate_scatter,
    item_to_user,
    user_to_item,
)
from graphrec.nn.rerank import (
    CandidateFeatures,
    Candidates,
    ListwiseReranker,
    RerankedScores,
    RerankerBag,
)
from graphrec.nn.visited import (
    VisitedAwareHead,
    VisitLinks,
    pair_links,
    visited_share,
)
from graphrec.nn.weights import (
    CAGED,
    ConditionalVAE,
    EdgeCVAE,
    edge_scores,
    momentum_update,
    renormalize,
)

__all__ = ['bipartite_propagate', 'bipartite_propagate_scatter',
           'item_to_user', 'user_to_item', 'VisitLinks', 'pair_links',
           'visited_share', 'VisitedAwareHead', 'BiasAwareContrastive',
           'quantile_strata', 'popularity_strata', 'activity_strata',
           'MoEFusion', 'StratifiedBackdoor', 'LatentScenarios',
           'check_backdoor', 'CAGED', 'ConditionalVAE', 'EdgeCVAE',
           'edge_scores', 'momentum_update', 'renormalize',
           'Candidates', 'CandidateFeatures', 'ListwiseReranker',
           'RerankerBag', 'RerankedScores']
