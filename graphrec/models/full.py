r"""The full graphrec model: every component of the library in one
composition, registered as ``'causal_cascade'``.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

from graphrec.models.plugins import PluginRecommender

__all__ = ['CausalCascade', 'FULL_ABLATIONS']


def CausalCascade(num_users: int, num_items: int, behaviors: Sequence[str],
                  encoder: str = 'cascade', embedding_dim: int = 64,
                  num_layers: int = 2, residual: bool = True,
                  cascade_heads: bool = True,
                  edge_weights: Optional[str] = None,
                  fusion: Optional[str] = 'moe', gate: str = 'user',
                  backdoor: Optional[str] = 'popularity',
                  visited_head: bool = True, item_features: bool = True,
                  pair_features: bool = False,
                  leave_one_out: bool = False,
                  contrastive: float = 0.05,
                  **plugin_kwargs: Any) -> PluginRecommender:
    r"""Cascade encoder, mixture-of-experts fusion with backdoor
    adjustment, visited-aware head, bias-aware contrastive alignment and
    NMTR's cascaded heads, with causal aggregation weights (CAGED) one
    argument away, as one :class:`~graphrec.models.plugins.PluginRecommender`.

    The parts and their papers:

    - **encoder** (:obj:`'cascade'`): behaviors propagate in cascade order,
      each stage starting from the previous stage's output with a residual
      (MB-CGCN, Cheng et al., WWW 2023; CRGCN, Yan et al., TOIS 2023), on
      SpMM (:class:`~graphrec.nn.encoders.CascadeEncoder`);
    - **edge weights** (:obj:`edge_weights='caged'`, off by default):
      learned, popularity-debiased aggregation weights from a conditional
      VAE per behavior, refreshed on validation (CAGED, Que et al.); off
      by default because on the benchmarks here it cost several times the
      cascade's epoch time for no gain (``docs/results/caged-*.md``; the
      ``with_caged`` ablation turns it on);
    - **cascaded heads** (:obj:`cascade_heads`): each behavior's logit adds
      an interaction term and an item bias to the logit of the behavior
      before it (NMTR, Gao et al., ICDE 2019), trained multi-task through
      :obj:`TrainConfig.behavior_weights`;
    - **MoE fusion** (:obj:`fusion='moe'`): per-behavior experts weighed by
      a gate on the user (or the user-item context, :obj:`gate='pair'`),
      added to the cascade's target logit (MCLMR);
    - **backdoor adjustment** (:obj:`backdoor='popularity'`, or
      :obj:`'activity'` / :obj:`'latent'`): trained with the pair's
      confounder stratum, predicted with
      :math:`\sum_c P(Y \mid X, c) P(c)` (MCLMR; latent scenarios as in
      MUSENET, Xu et al., WSDM 2023);
    - **visited-aware head** (:obj:`visited_head`): MUSENET's repeat /
      explore mixture on whether the user already viewed or carted the
      item, with the fused score as the base of both modes, and with the
      items' train counts and conversion rates as fixed features
      (:obj:`item_features`), and optionally item-neighbourhood scores of
      each visited pair (:obj:`pair_features`: item-based collaborative
      filtering from the user's history, as fixed features);
    - **contrastive alignment** (:obj:`contrastive`, a loss weight): MCLMR's
      bias-aware InfoNCE between each auxiliary behavior's user embeddings
      and the target's.

    Every part is one argument; :data:`FULL_ABLATIONS` lists the named
    overrides ``graphrec ablate`` runs. Train it with every behavior in
    :obj:`TrainConfig.behavior_weights` (see
    ``benchmarks/configs/full.json`` for the per-dataset defaults: hard
    "viewed but not bought" negatives matter on tmall, where 83% of the
    test purchases were viewed or carted before; on retailrocket, where
    none was, the visited-aware head is off and negatives are uniform).

    Args:
        num_users (int): Number of users.
        num_items (int): Number of items.
        behaviors (Sequence[str]): Behaviors in cascade order, target last.
        encoder (str): :obj:`'cascade'`, :obj:`'parallel'`,
            :obj:`'lightgcn'` or :obj:`'mf'`; the last two give every
            behavior the same embeddings, so MoE fusion and contrastive
            alignment are off with them, whatever :obj:`fusion`,
            :obj:`gate` and :obj:`contrastive` say (checkpoints of such
            models written before this rule carried fusion weights and no
            longer load). (default: :obj:`'cascade'`)
        embedding_dim (int): Embedding size. (default: :obj:`64`)
        num_layers (int): Convolutions per behavior. (default: :obj:`2`)
        residual (bool): Cascade residual. (default: :obj:`True`)
        cascade_heads (bool): NMTR's cascaded heads (multi-behavior
            encoders only). (default: :obj:`True`)
        edge_weights (str, optional): :obj:`'caged'` or :obj:`None`.
            (default: :obj:`None`)
        fusion (str, optional): :obj:`'moe'`, :obj:`'mean'` or :obj:`None`.
            (default: :obj:`'moe'`)
        gate (str): :obj:`'user'` or :obj:`'pair'`. (default: :obj:`'user'`)
        backdoor (str, optional): :obj:`'popularity'`, :obj:`'activity'`,
            :obj:`'latent'` or :obj:`None`. (default: :obj:`'popularity'`)
        visited_head (bool): The visited-aware head. (default: :obj:`True`)
        item_features (bool): Item counts and conversion rates in the
            visited-aware head (:func:`~graphrec.nn.visited.item_statistics`;
            needs :obj:`visited_head`). (default: :obj:`True`)
        pair_features (bool): Item-neighbourhood scores of visited pairs in
            the visited-aware head
            (:func:`~graphrec.nn.visited.pair_statistics`; needs
            :obj:`visited_head`). (default: :obj:`False`)
        leave_one_out (bool): In training, a train purchase's item
            statistics leave that purchase out, as a held-out purchase's
            do (:class:`PluginRecommender`; only with
            :obj:`item_features`). (default: :obj:`False`)
        contrastive (float): Weight of the contrastive term; :obj:`0` turns
            it off. (default: :obj:`0.05`)
        **plugin_kwargs: Further :class:`PluginRecommender` arguments (e.g.
            :obj:`num_strata`, :obj:`beta`, :obj:`chunk_size`).
    """
    multi = encoder in ('cascade', 'parallel')
    if encoder not in PluginRecommender.backbones:
        raise ValueError(f"'encoder' must be one of "
                         f"{PluginRecommender.backbones} (got {encoder!r})")
    backbone_kwargs: Dict[str, Any] = dict(
        plugin_kwargs.pop('backbone_kwargs', None) or {})
    if multi:
        if cascade_heads:
            backbone_kwargs.setdefault('head', 'cascaded')
        if encoder == 'cascade':
            backbone_kwargs.setdefault('residual', residual)
    elif encoder == 'lightgcn':
        backbone_kwargs.setdefault('behaviors', 'all')
    if edge_weights is not None:
        if encoder == 'mf':
            raise ValueError("'edge_weights' needs a graph encoder (got "
                             "encoder='mf')")
        backbone_kwargs['edge_weights'] = edge_weights
    item_features = bool(item_features and visited_head)
    pair_features = bool(pair_features and visited_head)
    leave_one_out = bool(leave_one_out and item_features)
    if not multi:
        # One embedding for every behavior: no experts to fuse, no views to
        # align (PluginRecommender refuses both there).
        fusion, contrastive = None, 0.0
    return PluginRecommender(
        num_users, num_items, behaviors, backbone=encoder,
        embedding_dim=embedding_dim, num_layers=num_layers,
        backbone_kwargs=backbone_kwargs, fusion=fusion, gate=gate,
        backdoor=backdoor, visited_head=visited_head,
        item_features=item_features, pair_features=pair_features,
        leave_one_out=leave_one_out, contrastive=contrastive,
        **plugin_kwargs)


CausalCascade.needs_behaviors = True
CausalCascade.passes_kwargs_to = PluginRecommender

#: The components ``graphrec ablate`` removes or swaps, one named set of
#: constructor overrides each.
FULL_ABLATIONS: Dict[str, Dict[str, Any]] = {
    'with_caged': {'edge_weights': 'caged'},
    'mean_fusion': {'fusion': 'mean'},
    'no_fusion': {'fusion': None},
    'pair_gate': {'gate': 'pair'},
    'no_backdoor': {'backdoor': None},
    'latent_backdoor': {'backdoor': 'latent'},
    'no_visited_head': {'visited_head': False},
    'with_visited_head': {'visited_head': True},
    'no_item_features': {'item_features': False},
    'with_pair_features': {'pair_features': True},
    'no_contrastive': {'contrastive': 0.0},
    'no_cascade_heads': {'cascade_heads': False},
    'no_cascade': {'encoder': 'parallel'},
    'backbone_lightgcn': {'encoder': 'lightgcn'},
    'backbone_mf': {'encoder': 'mf', 'edge_weights': None},
    # The cascade encoder alone: every plug-in off at once.
    'no_plugins': {'cascade_heads': False, 'fusion': None, 'backdoor': None,
                   'visited_head': False, 'contrastive': 0.0},
}
