"""Neural building blocks: sparse propagation, encoders, heads."""
from graphrec.nn.causal import (
    LatentScenarios,
    StratifiedBackdoor,
    check_backdoor,
)
from graphrec.nn.fusion import MoEFusion
from graphrec.nn.propagation import (
                                     bipartite_propagate,
                                     bipartite_propagate_scatter,
                                     item_to_user,
                                     user_to_item,
)

__all__ = ['bipartite_propagate', 'bipartite_propagate_scatter',
           'item_to_user', 'user_to_item', 'MoEFusion', 'StratifiedBackdoor',
           'LatentScenarios', 'check_backdoor']
