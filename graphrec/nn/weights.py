r"""Learned aggregation weights for graph encoders: CAGED, causality-aware
graph aggregation weights (Que et al., "Causality-aware graph aggregation
weight estimator for popularity debiasing in top-K recommendation").

Light graph convolutions aggregate neighbours with
:math:`\hat{A}_{ui} = 1 / \sqrt{d_u d_i}`. Read as a backdoor adjustment,
the aggregation weight of an edge should be the (unbiased) likelihood of
the interaction; the degree product instead echoes popularity. Per edge set
(one per behavior), a conditional VAE on the current embeddings estimates
that likelihood through its evidence lower bound, and the weights move
towards it by momentum. The weights stay in the values of the CSR matrices
(:meth:`~graphrec.data.graph.BipartiteAdjacency.set_edge_weight`), so
propagation remains one SpMM per direction and nothing is re-sorted.
"""
from __future__ import annotations

import copy
import math
import time
from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor

from graphrec.data.graph import BipartiteAdjacency

__all__ = ['ConditionalVAE', 'EdgeCVAE', 'CAGED', 'gaussian_kl',
           'reconstruction_error', 'edge_scores', 'momentum_update',
           'renormalize', 'edge_fingerprint', 'build_edge_weights']

Pair = Tuple[Tensor, Tensor]


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    r"""KL divergence of :math:`\mathcal{N}(\mu, \sigma^2 I)` from the
    standard normal prior, per row:

    .. math::
        \mathrm{KL} = \frac{1}{2} \sum_k \left(\mu_k^2 + \sigma_k^2 - 1
            - \log \sigma_k^2\right) \ge 0.

    Args:
        mu (Tensor): Means :obj:`[N, K]`.
        logvar (Tensor): Log-variances :math:`\log \sigma^2`, :obj:`[N, K]`.

    Returns:
        Tensor: :obj:`[N]`.
    """
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)


def reconstruction_error(x_hat: Tensor, x: Tensor) -> Tensor:
    r"""Squared error :math:`\lVert \hat{x} - x \rVert^2` per row, the
    negative log-likelihood of a unit-variance Gaussian decoder up to a
    constant; :obj:`[N, D]` to :obj:`[N]`.
    """
    return (x_hat - x).pow(2).sum(-1)


def edge_scores(recon: Tensor, kl: Tensor, a: float = 1.0,
                beta: float = 1.0) -> Tensor:
    r"""Edge scores from the two terms of the negative ELBO,

    .. math::
        s_{ui} = \exp\!\big(-(a\, \mathrm{rec}_{ui}
                 + \beta\, \mathrm{KL}_{ui})\big) \in (0, 1],

    an estimate (a lower bound, up to constants) of the interaction's
    likelihood. Scores are floored at the smallest positive float so that
    no edge is ever cut.

    Args:
        recon (Tensor): Reconstruction errors :obj:`[E]`, non-negative.
        kl (Tensor): KL terms :obj:`[E]`, non-negative.
        a (float): Weight :math:`a` of the reconstruction error.
            (default: :obj:`1.0`)
        beta (float): Weight :math:`\beta` of the KL term.
            (default: :obj:`1.0`)
    """
    energy = (a * recon + beta * kl).clamp_min(0.0)
    return torch.exp(-energy).clamp_min(torch.finfo(energy.dtype).tiny)


def momentum_update(weight: Tensor, norm: Tensor, score: Tensor,
                    eps: float, scale: float) -> Tensor:
    r"""One momentum step of the aggregation weights,

    .. math::
        W \leftarrow (1 - \epsilon) W + \epsilon\, (c \hat{A}) \odot S,

    all tensors aligned edge by edge (:obj:`[E]`).

    Args:
        weight (Tensor): Current weights :math:`W`, :obj:`[E]`.
        norm (Tensor): :math:`\hat{A}_{ui} = 1/\sqrt{d_u d_i}`, :obj:`[E]`.
        score (Tensor): Edge scores :math:`S`, :obj:`[E]`.
        eps (float): Momentum :math:`\epsilon \in [0, 1]`.
        scale (float): :math:`c`, the mean of :math:`\sqrt{d_u d_i}` over
            the edges.
    """
    return (1.0 - eps) * weight + eps * (scale * norm) * score


def renormalize(weight: Tensor, norm: Tensor, edge_index: Tensor,
                num_users: int, num_items: int) -> Tensor:
    r"""Symmetric normalisation of the raw edge weights
    :math:`M = W \oslash \hat{A}` by their weighted degrees,

    .. math::
        W_{ui} \leftarrow \frac{M_{ui}}{\sqrt{r_u r_i}}, \qquad
        r_u = \sum_i M_{ui}, \quad r_i = \sum_u M_{ui},

    the GCN normalisation of the graph whose edge weights are :math:`M`:
    for :math:`W \propto \hat{A}` it gives :math:`\hat{A}` back, and the
    largest singular value of the result is 1, as that of :math:`\hat{A}`,
    so repeated propagation cannot blow up.

    Args:
        weight (Tensor): :math:`W`, :obj:`[E]`.
        norm (Tensor): :math:`\hat{A}_{ui} = 1/\sqrt{d_u d_i}`, :obj:`[E]`.
        edge_index (Tensor): The edges :obj:`[2, E]`.
        num_users (int): Number of users.
        num_items (int): Number of items.
    """
    user, item = edge_index
    raw = weight / norm
    r_user = raw.new_zeros(num_users).index_add_(0, user, raw)
    r_item = raw.new_zeros(num_items).index_add_(0, item, raw)
    denom = (r_user[user] * r_item[item]).clamp_min(
        torch.finfo(raw.dtype).tiny)
    return raw * denom.rsqrt()


def edge_fingerprint(edge_index: Tensor, num_items: int) -> Tensor:
    r"""A cheap order-sensitive checksum of an edge list (int64 scalar), to
    tell whether stored weights belong to this edge order. Terms stay below
    :math:`2^{30}`, so the sum cannot overflow for fewer than :math:`2^{33}`
    edges and does not depend on the summation order.
    """
    key = (edge_index[0].long() * num_items + edge_index[1].long()) % 32749
    pos = torch.arange(edge_index.size(1), device=edge_index.device) % 32719
    return (key * (pos + 1)).sum()


class ConditionalVAE(torch.nn.Module):
    r"""A conditional VAE of :math:`x` given a condition :math:`c`, both
    embeddings of size :math:`D`:

    .. math::
        (\mu, \log \sigma^2) = \mathrm{enc}([x; c]), \quad
        z = \mu + \sigma \odot \varepsilon, \quad
        \hat{x} = \mathrm{dec}([z; c]),

    encoder and decoder one-hidden-layer MLPs with :math:`\tanh`.

    Args:
        embedding_dim (int): :math:`D`.
        hidden_dim (int): Hidden width. (default: :obj:`64`)
        latent_dim (int): Latent size :math:`K`. (default: :obj:`16`)

    Example:
        >>> vae = ConditionalVAE(8)
        >>> x_hat, mu, logvar = vae(torch.randn(5, 8), torch.randn(5, 8))
        >>> x_hat.shape, mu.shape
        (torch.Size([5, 8]), torch.Size([5, 16]))
    """
    def __init__(self, embedding_dim: int, hidden_dim: int = 64,
                 latent_dim: int = 16):
        super().__init__()
        for name, value in (('embedding_dim', embedding_dim),
                            ('hidden_dim', hidden_dim),
                            ('latent_dim', latent_dim)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"'{name}' must be a positive int "
                                 f"(got {value!r})")
        self.embedding_dim = embedding_dim
        self.latent_dim = latent_dim
        self.enc_hidden = torch.nn.Linear(2 * embedding_dim, hidden_dim)
        self.enc_out = torch.nn.Linear(hidden_dim, 2 * latent_dim)
        self.dec_hidden = torch.nn.Linear(latent_dim + embedding_dim,
                                          hidden_dim)
        self.dec_out = torch.nn.Linear(hidden_dim, embedding_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        r"""Re-initialises the four linear layers."""
        for lin in (self.enc_hidden, self.enc_out, self.dec_hidden,
                    self.dec_out):
            lin.reset_parameters()

    def encode(self, x: Tensor, cond: Tensor) -> Pair:
        r"""Posterior :obj:`(mu [N, K], logvar [N, K])` of :obj:`x` given
        :obj:`cond`.
        """
        h = torch.tanh(self.enc_hidden(torch.cat([x, cond], -1)))
        mu, logvar = self.enc_out(h).chunk(2, dim=-1)
        # Bounded log-variance: exp() stays finite in float32.
        return mu, logvar.clamp(-10.0, 10.0)

    def decode(self, z: Tensor, cond: Tensor) -> Tensor:
        r"""Reconstruction :obj:`[N, D]` of :obj:`x` from :obj:`z` and
        :obj:`cond`.
        """
        h = torch.tanh(self.dec_hidden(torch.cat([z, cond], -1)))
        return self.dec_out(h)

    def forward(self, x: Tensor, cond: Tensor, sample: bool = True,
                noise: Optional[Tensor] = None) -> Tuple[Tensor, Tensor,
                                                         Tensor]:
        r"""Encodes, draws :math:`z` (the mean with :obj:`sample=False`, or
        with the given standard-normal :obj:`noise`) and decodes; returns
        :obj:`(x_hat, mu, logvar)`.
        """
        mu, logvar = self.encode(x, cond)
        z = mu
        if noise is not None or sample:
            if noise is None:
                noise = torch.randn_like(mu)
            z = mu + noise * (0.5 * logvar).exp()
        return self.decode(z, cond), mu, logvar

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.embedding_dim}, '
                f'latent_dim={self.latent_dim})')


class EdgeCVAE(torch.nn.Module):
    r"""The two conditional VAEs of one edge set: item given user and user
    given item. It returns the unweighted terms of both directions; their
    plain sum is the negative ELBO the VAEs train on, and the weighted energy

    .. math::
        \mathcal{L}_{ui} = \tfrac{1}{2}\big(a\, \mathrm{rec}(x_i \mid e_u)
        + \beta\, \mathrm{KL}(x_i \mid e_u) + a\, \mathrm{rec}(x_u \mid e_i)
        + \beta\, \mathrm{KL}(x_u \mid e_i)\big)

    is what the edge scores :math:`\exp(-\mathcal{L}_{ui})` use
    (:class:`CAGED`'s :obj:`a` and :obj:`beta`).

    Args:
        embedding_dim (int): Embedding size :math:`D`.
        hidden_dim (int): Hidden width. (default: :obj:`64`)
        latent_dim (int): Latent size. (default: :obj:`16`)
    """
    def __init__(self, embedding_dim: int, hidden_dim: int = 64,
                 latent_dim: int = 16):
        super().__init__()
        self.item_given_user = ConditionalVAE(embedding_dim, hidden_dim,
                                              latent_dim)
        self.user_given_item = ConditionalVAE(embedding_dim, hidden_dim,
                                              latent_dim)

    def reset_parameters(self) -> None:
        r"""Resets both directions."""
        self.item_given_user.reset_parameters()
        self.user_given_item.reset_parameters()

    def forward(self, x_user: Tensor, x_item: Tensor,
                sample: bool = True) -> Pair:
        r"""Reconstruction error and KL, each the mean of the two
        directions, :obj:`(recon [N], kl [N])` for the edges whose
        endpoint embeddings are :obj:`x_user [N, D]` and
        :obj:`x_item [N, D]`.
        """
        item_hat, mu_i, lv_i = self.item_given_user(x_item, x_user, sample)
        user_hat, mu_u, lv_u = self.user_given_item(x_user, x_item, sample)
        recon = 0.5 * (reconstruction_error(item_hat, x_item) +
                       reconstruction_error(user_hat, x_user))
        kl = 0.5 * (gaussian_kl(mu_i, lv_i) + gaussian_kl(mu_u, lv_u))
        return recon, kl


class CAGED(torch.nn.Module):
    r"""Causality-aware graph aggregation weight estimator (CAGED, Que et
    al.) for one or several edge sets (behaviors), a plug-in of any light
    graph encoder.

    For each edge set :math:`b`, an :class:`EdgeCVAE` learns the
    interactions from the current (detached) embeddings by minimising the
    negative ELBO (reconstruction error plus KL) on sampled train edges
    (:meth:`loss`, added to the recommender's loss, so the two alternate
    step by step while neither's gradient reaches the other). A refresh
    (:meth:`refresh`) scores every train edge with :func:`edge_scores`
    (posterior mean, no sampling) and moves the aggregation weights by
    momentum,

    .. math::
        W_b \leftarrow (1 - \epsilon) W_b + \epsilon\, (c_b \hat{A}_b)
            \odot S_b, \qquad
        c_b = \frac{1}{|E_b|} \sum_{(u, i) \in E_b} \sqrt{d_u d_i},

    starting from :math:`W_b = \hat{A}_b`; with :obj:`renormalize=True`
    the raw weights :math:`W_b \oslash \hat{A}_b` are then symmetrically
    normalised by their weighted degrees (:func:`renormalize`). The owner
    refreshes after a validation run (:meth:`should_refresh`: when the
    validation metric improved, or after every validation), never on test.

    The weights are buffers :obj:`weight_<b>` (:obj:`[E_b]`, in the edge
    order of the adjacency, empty until the first refresh) with the edge
    order's :func:`edge_fingerprint`, so checkpoints, exact resume and
    device moves carry them; :meth:`adjacency` returns a copy of the graph's
    adjacency sharing its CSR structure with the weights as values.

    Args:
        keys (Sequence[str]): Names of the edge sets (behaviors).
        embedding_dim (int): Embedding size :math:`D`.
        hidden_dim (int): CVAE hidden width. (default: :obj:`64`)
        latent_dim (int): CVAE latent size. (default: :obj:`16`)
        a (float): Weight :math:`a` of the reconstruction error.
            (default: :obj:`1.0`)
        beta (float): Weight :math:`\beta` of the KL term.
            (default: :obj:`1.0`)
        eps (float): Momentum :math:`\epsilon`. (default: :obj:`0.2`)
        renormalize (bool): Normalise :math:`W` after each update
            (:func:`renormalize`); :obj:`False` is the paper's update, whose
            scale drifts with the mean score :math:`c \bar{s}` (measured in
            ``docs/results/caged-synthetic.md``: it shrinks or inflates the
            propagated signal and loses on validation).
            (default: :obj:`True`)
        schedule (str): :obj:`'improved'` (refresh after a validation run
            that improved the metric) or :obj:`'always'` (after every
            validation run). (default: :obj:`'improved'`)
        loss_weight (float): Weight of the negative ELBO in the training
            loss. (default: :obj:`1.0`)
        num_samples (int): Train edges per edge set in each step's ELBO.
            (default: :obj:`1024`)
        chunk_size (int): Edges scored at once in a refresh.
            (default: :obj:`65536`)

    Example:
        >>> caged = CAGED(['view', 'buy'], embedding_dim=64)
        >>> adj = caged.adjacency('buy', graph.adjacency('buy'))
    """
    schedules = ('improved', 'always')

    def __init__(self, keys: Sequence[str], embedding_dim: int,
                 hidden_dim: int = 64, latent_dim: int = 16, a: float = 1.0,
                 beta: float = 1.0, eps: float = 0.2,
                 renormalize: bool = True, schedule: str = 'improved',
                 loss_weight: float = 1.0, num_samples: int = 1024,
                 chunk_size: int = 65536):
        super().__init__()
        keys = [keys] if isinstance(keys, str) else list(keys)
        if not keys or len(set(keys)) != len(keys):
            raise ValueError(f"'keys' must name distinct edge sets "
                             f"(got {keys!r})")
        bad = [k for k in keys if not isinstance(k, str) or not k
               or '.' in k]
        if bad:
            raise ValueError(f"'keys' must be non-empty strings without "
                             f"'.' (got {bad!r})")
        if not 0.0 <= eps <= 1.0:
            raise ValueError(f"'eps' must be in [0, 1] (got {eps!r})")
        for name, value in (('a', a), ('beta', beta),
                            ('loss_weight', loss_weight)):
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"'{name}' must be a non-negative number "
                                 f"(got {value!r})")
        for name, value in (('num_samples', num_samples),
                            ('chunk_size', chunk_size)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"'{name}' must be a positive int "
                                 f"(got {value!r})")
        if schedule not in self.schedules:
            raise ValueError(f"'schedule' must be one of {self.schedules} "
                             f"(got {schedule!r})")
        self.keys = tuple(keys)
        self.embedding_dim = embedding_dim
        self.a, self.beta, self.eps = float(a), float(beta), float(eps)
        self.renormalize = bool(renormalize)
        self.schedule = schedule
        self.loss_weight = float(loss_weight)
        self.num_samples, self.chunk_size = num_samples, chunk_size
        self.cvaes = torch.nn.ModuleDict({
            k: EdgeCVAE(embedding_dim, hidden_dim, latent_dim)
            for k in self.keys})
        for k in self.keys:
            self.register_buffer(f'weight_{k}', torch.zeros(0))
            self.register_buffer(f'fingerprint_{k}',
                                 torch.zeros((), dtype=torch.long))
        #: Summary of the last refresh per key (mean score, weight range).
        self.last_refresh: Dict[str, Dict[str, float]] = {}
        #: Wall-clock seconds spent in :meth:`refresh` (this process).
        self.refresh_seconds = 0.0
        self._cache: Dict[str, tuple] = {}
        self.reset_parameters()

    def reset_parameters(self) -> None:
        r"""Re-initialises the CVAEs and forgets the learned weights
        (:math:`W = \hat{A}` again).
        """
        for cvae in self.cvaes.values():
            cvae.reset_parameters()
        for k in self.keys:
            setattr(self, f'weight_{k}', getattr(self, f'weight_{k}')
                    .new_zeros(0))
            getattr(self, f'fingerprint_{k}').zero_()
        self._cache = {}

    def _check_key(self, key: str) -> None:
        if key not in self.keys:
            raise ValueError(f"unknown edge set {key!r} (CAGED has "
                             f"{list(self.keys)})")

    def weight(self, key: str) -> Optional[Tensor]:
        r"""The learned weights of :obj:`key` (:obj:`[E]`, edge order of the
        adjacency), or :obj:`None` before the first refresh.
        """
        self._check_key(key)
        w = getattr(self, f'weight_{key}')
        return w if w.numel() > 0 else None

    def _check_edges(self, key: str, adj: BipartiteAdjacency,
                     w: Tensor) -> None:
        if w.numel() != adj.num_edges:
            raise ValueError(
                f"the CAGED weights of {key!r} have {w.numel()} edges but "
                f"the graph's adjacency has {adj.num_edges}: they were "
                f"estimated on another graph")
        stored = getattr(self, f'fingerprint_{key}')
        if int(edge_fingerprint(adj.edge_index, adj.num_items)) != int(
                stored):
            raise ValueError(
                f"the CAGED weights of {key!r} were estimated on another "
                f"edge order or edge set (fingerprint mismatch); refresh "
                f"them on this graph or reset_parameters()")

    def adjacency(self, key: str,
                  adj: BipartiteAdjacency) -> BipartiteAdjacency:
        r""":obj:`adj` itself before the first refresh; afterwards a copy
        sharing its CSR structure whose values are the learned weights (no
        re-sorting: the values are gathered through the stored
        permutations).

        Raises :class:`ValueError` when the weights belong to another edge
        set or edge order.
        """
        w = self.weight(key)
        if w is None:
            return adj
        hit = self._cache.get(key)
        if (hit is not None and hit[0] is adj and hit[1] is w
                and hit[2] == w._version):
            return hit[3]
        self._check_edges(key, adj, w)
        out = copy.copy(adj)
        out.normalize = False  # the weights already hold the normalisation
        out.set_edge_weight(w.to(adj.edge_index.device))
        self._cache[key] = (adj, w, w._version, out)
        return out

    def loss(self, embeddings: Dict[str, Pair],
             adjacencies: Dict[str, BipartiteAdjacency]) -> Tensor:
        r"""The negative ELBO (reconstruction error plus KL, mean over
        edges) summed over edge sets, times :obj:`loss_weight`, on
        :obj:`num_samples` uniformly drawn train edges of each. The
        embeddings are detached: the CVAEs learn from the recommender,
        never the reverse. (:obj:`a` and :obj:`beta` weigh the two terms in
        the edge scores only: training them into the objective would let
        a small :obj:`a` collapse the posterior.)

        Args:
            embeddings (Dict[str, Tuple[Tensor, Tensor]]): Current
                :obj:`(user [U, D], item [I, D])` per key.
            adjacencies (Dict[str, BipartiteAdjacency]): The train edges
                per key.
        """
        total = None
        for key in self.keys:
            x_user, x_item = embeddings[key]
            edges = adjacencies[key].edge_index
            if edges.size(1) == 0:
                continue
            pick = torch.randint(edges.size(1), (self.num_samples, ),
                                 device=edges.device)
            user, item = edges[0, pick], edges[1, pick]
            recon, kl = self.cvaes[key](x_user.detach()[user],
                                        x_item.detach()[item])
            term = (recon + kl).mean()
            total = term if total is None else total + term
        if total is None:
            return next(self.parameters()).new_zeros(())
        return self.loss_weight * total

    @torch.no_grad()
    def scores(self, key: str, x_user: Tensor, x_item: Tensor,
               edge_index: Tensor) -> Tensor:
        r"""Scores :math:`s_{ui} \in (0, 1]` of the edges :obj:`[2, E]`
        (:func:`edge_scores` at the posterior mean), :obj:`[E]`, in edge
        order.
        """
        self._check_key(key)
        cvae = self.cvaes[key]
        out = []
        for start in range(0, edge_index.size(1), self.chunk_size):
            user, item = edge_index[:, start:start + self.chunk_size]
            recon, kl = cvae(x_user[user], x_item[item], sample=False)
            out.append(edge_scores(recon, kl, self.a, self.beta))
        if not out:
            return x_user.new_zeros(0)
        return torch.cat(out)

    def should_refresh(self, improved: bool) -> bool:
        r"""Whether a validation run with outcome :obj:`improved` triggers
        a refresh under :obj:`schedule`.
        """
        return self.schedule == 'always' or bool(improved)

    @torch.no_grad()
    def refresh(self, embeddings: Dict[str, Pair],
                adjacencies: Dict[str, BipartiteAdjacency]) -> None:
        r"""Scores every train edge and applies one momentum update (and
        the renormalisation, if on) to the weights of every key.
        """
        start = time.perf_counter()
        for key in self.keys:
            adj = adjacencies[key]
            x_user, x_item = embeddings[key]
            norm = adj.norm().to(x_user.dtype)
            w = self.weight(key)
            if w is None:
                w = norm
            else:
                self._check_edges(key, adj, w)
            score = self.scores(key, x_user, x_item, adj.edge_index)
            user, item = adj.edge_index
            deg = (adj.user_degree[user] * adj.item_degree[item]).to(
                norm.dtype)
            scale = float(deg.sqrt().mean()) if deg.numel() else 1.0
            w = momentum_update(w.to(norm.dtype), norm, score, self.eps,
                                scale)
            if self.renormalize:
                w = renormalize(w, norm, adj.edge_index, adj.num_users,
                                adj.num_items)
            setattr(self, f'weight_{key}', w.detach().float())
            getattr(self, f'fingerprint_{key}').copy_(
                edge_fingerprint(adj.edge_index, adj.num_items))
            self.last_refresh[key] = {
                'score_mean': float(score.mean()) if score.numel() else
                math.nan,
                'scale': scale,
                'weight_mean': float(w.mean()) if w.numel() else math.nan,
                'weight_max': float(w.max()) if w.numel() else math.nan}
        self._cache = {}
        self.refresh_seconds += time.perf_counter() - start

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The weights are [0] until the first refresh and [E] afterwards:
        # take the stored shape before the values are copied in.
        for k in self.keys:
            name = f'weight_{k}'
            stored = state_dict.get(prefix + name)
            if (isinstance(stored, Tensor)
                    and stored.shape != self._buffers[name].shape):
                self._buffers[name] = self._buffers[name].new_empty(
                    stored.shape)
        self._cache = {}
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(keys={list(self.keys)}, '
                f'a={self.a}, beta={self.beta}, eps={self.eps}, '
                f'renormalize={self.renormalize}, '
                f'schedule={self.schedule!r})')


def build_edge_weights(kind: Optional[str], keys: Sequence[str],
                       embedding_dim: int,
                       kwargs: Optional[Dict] = None) -> Optional[CAGED]:
    r"""The weight estimator named by an encoder's :obj:`edge_weights`
    argument: :obj:`None` (the fixed :math:`1/\sqrt{d_u d_i}`) or
    :obj:`'caged'` (:class:`CAGED` with :obj:`kwargs`).

    The estimator is built without drawing from the global random stream,
    so an encoder's own initialisation is the same with and without it;
    the owner's :meth:`reset_parameters` initialises it afterwards.
    """
    if kind is None:
        if kwargs:
            raise ValueError(f"'edge_weight_kwargs' {sorted(kwargs)} need "
                             f"edge_weights='caged'")
        return None
    if kind != 'caged':
        raise ValueError(f"'edge_weights' must be None or 'caged' "
                         f"(got {kind!r})")
    with torch.random.fork_rng(devices=[]):
        try:
            return CAGED(keys, embedding_dim, **(kwargs or {}))
        except TypeError as e:
            raise ValueError(f"'edge_weight_kwargs' {sorted(kwargs or {})} "
                             f"do not fit CAGED: {e}") from None
