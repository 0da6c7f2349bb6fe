r"""Backdoor adjustment for multi-behavior recommendation: observed confounder
strata (MCLMR) and latent scenarios (MUSENET), each with its structural
causal graph checked by d-separation.

The treatment :math:`X` is the user-item match a recommender learns, the
outcome :math:`Y` the target behavior. A confounder :math:`C` (item
popularity, user activity, or a latent scenario) drives both the auxiliary
behaviors the representations are learned from and the target, opening the
backdoor path :math:`X \leftarrow A \leftarrow C \rightarrow Y`. Training
:math:`P(Y \mid X, c)` with the sample's own stratum and predicting

.. math::
    P(Y \mid do(X)) = \sum_c P(Y \mid X, c)\, P(c)

removes it (Pearl's backdoor adjustment; MCLMR, arXiv 2024; MUSENET, Xu et
al., WSDM 2023, Eq. 1).
"""
from __future__ import annotations

from typing import Iterable, List, Optional, Sequence

import networkx as nx
import torch
import torch.nn.functional as F
from torch import Tensor

from graphrec.losses import kl_to_uniform, scenario_repeat_loss

__all__ = ['backdoor_paths', 'open_backdoor_path', 'check_backdoor',
           'confounding_dag', 'StratifiedBackdoor',
           'LatentScenarios']


# ---------------------------------------------------------------------------
# The backdoor criterion
# ---------------------------------------------------------------------------

def backdoor_paths(dag: nx.DiGraph, treatment: str,
                   outcome: str) -> List[List[str]]:
    r"""Every simple path between :obj:`treatment` and :obj:`outcome` in the
    skeleton of :obj:`dag` whose first edge points into the treatment
    (:math:`X \leftarrow \cdots\ Y`), shortest first.
    """
    skeleton = dag.to_undirected(as_view=True)
    paths = [p for p in nx.all_simple_paths(skeleton, treatment, outcome)
             if dag.has_edge(p[1], p[0])]
    return sorted(paths, key=lambda p: (len(p), p))


def _path_is_open(dag: nx.DiGraph, path: Sequence[str],
                  given: set) -> bool:
    # A path is blocked by a non-collider in the set, or by a collider
    # that is not in the set and has no descendant in it.
    for prev, node, nxt in zip(path[:-2], path[1:-1], path[2:]):
        collider = dag.has_edge(prev, node) and dag.has_edge(nxt, node)
        if collider:
            if node not in given and not (nx.descendants(dag, node) & given):
                return False
        elif node in given:
            return False
    return True


def _format_path(dag: nx.DiGraph, path: Sequence[str]) -> str:
    out = str(path[0])
    for a, b in zip(path[:-1], path[1:]):
        out += f' -> {b}' if dag.has_edge(a, b) else f' <- {b}'
    return out


def open_backdoor_path(dag: nx.DiGraph, treatment: str, outcome: str,
                       adjustment: Iterable[str]) -> Optional[List[str]]:
    r"""The shortest backdoor path left open by conditioning on
    :obj:`adjustment`, or :obj:`None` when all are blocked.
    """
    given = set(adjustment)
    for path in backdoor_paths(dag, treatment, outcome):
        if _path_is_open(dag, path, given):
            return path
    return None


def check_backdoor(dag: nx.DiGraph, treatment: str, outcome: str,
                   adjustment: Iterable[str]) -> None:
    r"""Checks that :obj:`adjustment` satisfies Pearl's backdoor criterion
    relative to :math:`(X, Y)` = (:obj:`treatment`, :obj:`outcome`):

    1. no node of :math:`Z` is a descendant of :math:`X`;
    2. :math:`Z` blocks every path between :math:`X` and :math:`Y` that
       starts with an arrow into :math:`X`, i.e. :math:`X \perp Y \mid Z` in
       the graph with the edges out of :math:`X` removed (decided with
       :func:`networkx.is_d_separator`).

    Raises:
        ValueError: :obj:`dag` is not a DAG, a node is unknown, :math:`Z`
            holds :math:`X`, :math:`Y` or a descendant of :math:`X`, or a
            backdoor path stays open (the message names the path).

    Example:
        >>> dag = nx.DiGraph([('Z', 'X'), ('Z', 'Y'), ('X', 'Y')])
        >>> check_backdoor(dag, 'X', 'Y', {'Z'})  # fine
        >>> check_backdoor(dag, 'X', 'Y', set())
        ValueError: ... open backdoor path X <- Z -> Y
    """
    if not isinstance(dag, nx.DiGraph) or not nx.is_directed_acyclic_graph(
            dag):
        raise ValueError(f"'dag' must be a networkx.DiGraph without cycles "
                         f"(got {type(dag).__name__})")
    given = set(adjustment)
    unknown = sorted(str(n) for n in {treatment, outcome} | given
                     if n not in dag)
    if unknown:
        raise ValueError(f"the causal graph has no node(s) {unknown} "
                         f"(nodes: {sorted(map(str, dag.nodes))})")
    if treatment in given or outcome in given:
        raise ValueError(f"the adjustment set {sorted(given)} must not hold "
                         f"the treatment {treatment!r} or the outcome "
                         f"{outcome!r}")
    bad = sorted(given & nx.descendants(dag, treatment))
    if bad:
        raise ValueError(f"the adjustment set holds {bad}, descendant(s) of "
                         f"the treatment {treatment!r} (e.g. a mediator); "
                         f"conditioning on them biases the effect")
    cut = dag.copy()
    cut.remove_edges_from(list(dag.out_edges(treatment)))
    if not nx.is_d_separator(cut, {treatment}, {outcome}, given):
        path = open_backdoor_path(dag, treatment, outcome, given)
        raise ValueError(f"the adjustment set {sorted(given)} does not "
                         f"satisfy the backdoor criterion for {treatment!r}"
                         f" -> {outcome!r}: open backdoor path "
                         f"{_format_path(dag, path)}")


def confounding_dag(confounder: str, treatment: str = 'X',
                    outcome: str = 'Y', auxiliary: str = 'A'
                    ) -> nx.DiGraph:
    r"""The structural causal graph of multi-behavior recommendation with a
    confounder :math:`C`:

    .. math::
        C \rightarrow A \rightarrow X \rightarrow Y, \qquad C \rightarrow Y,

    :math:`A` the auxiliary behaviors (popular items get viewed, active
    users view more), :math:`X` the user-item representation learned from
    them, :math:`Y` the target behavior. The backdoor path
    :math:`X \leftarrow A \leftarrow C \rightarrow Y` is blocked by
    :math:`\{C\}`.
    """
    return nx.DiGraph([(confounder, auxiliary), (auxiliary, treatment),
                       (treatment, outcome), (confounder, outcome)])


# ---------------------------------------------------------------------------
# Observed strata
# ---------------------------------------------------------------------------

class StratifiedBackdoor(torch.nn.Module):
    r"""Backdoor adjustment over observed confounder strata (MCLMR): item
    popularity strata (:obj:`side='item'`) or user activity strata
    (:obj:`side='user'`).

    The stratum-conditioned logit adds a stratum term to any base logit
    :math:`s(u, i)`,

    .. math::
        s(u, i, c) = s(u, i) + (p_u + q_i)^\top e_c + b_c,

    trained with the pair's actual stratum :math:`c`, and the prediction is
    the backdoor sum with the prior :math:`P(c)`, in logit space
    (:obj:`mean='logit'`, decomposable: an item bias plus a user bias)

    .. math::
        \sum_c P(c)\, s(u, i, c),

    or in probability space (:obj:`mean='prob'`), the logit of
    :math:`\sum_c P(c)\, \sigma(s(u, i, c))`. :math:`e_c, b_c` start at
    zero, so the module starts as the identity. With user strata
    :math:`b_c` is a zero constant: it would shift all of a user's scores
    alike, which neither ranking nor BPR can see.

    The strata and the prior are buffers set by :meth:`set_strata` (the
    wrapper computes them from the training graph).

    Args:
        num_strata (int): Number of strata :math:`K`. (default: :obj:`4`)
        embedding_dim (int): Size of :math:`p_u, q_i`. (default: :obj:`64`)
        num_nodes (int): Users (:obj:`side='user'`) or items
            (:obj:`side='item'`) that carry a stratum.
        side (str): :obj:`'item'` or :obj:`'user'`. (default: :obj:`'item'`)
        mean (str): :obj:`'logit'` or :obj:`'prob'`.
            (default: :obj:`'logit'`)
    """
    sides = ('item', 'user')
    means = ('logit', 'prob')

    def __init__(self, num_strata: int = 4, embedding_dim: int = 64,
                 num_nodes: int = 1, side: str = 'item',
                 mean: str = 'logit'):
        super().__init__()
        for arg, value in (('num_strata', num_strata),
                           ('embedding_dim', embedding_dim),
                           ('num_nodes', num_nodes)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"'{arg}' must be a positive int "
                                 f"(got {value!r})")
        if side not in self.sides:
            raise ValueError(f"'side' must be one of {self.sides} "
                             f"(got {side!r})")
        if mean not in self.means:
            raise ValueError(f"'mean' must be one of {self.means} "
                             f"(got {mean!r})")
        self.num_strata, self.side, self.mean = num_strata, side, mean
        self.embedding = torch.nn.Parameter(
            torch.empty(num_strata, embedding_dim))
        if side == 'item':
            self.bias = torch.nn.Parameter(torch.empty(num_strata))
        else:  # constant per user: invisible to ranking and to BPR
            self.register_buffer('bias', torch.zeros(num_strata))
        self.register_buffer('stratum', torch.zeros(num_nodes,
                                                    dtype=torch.long))
        self.register_buffer('prior', torch.full((num_strata, ),
                                                 1.0 / num_strata))
        name = 'popularity' if side == 'item' else 'activity'
        self.dag = confounding_dag(name)
        self.adjustment = {name}
        check_backdoor(self.dag, 'X', 'Y', self.adjustment)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        r"""Sets the stratum terms to zero (the identity adjustment)."""
        torch.nn.init.zeros_(self.embedding)
        torch.nn.init.zeros_(self.bias)

    def set_strata(self, stratum: Tensor, prior: Tensor) -> None:
        r"""Stores each node's stratum :obj:`[N]` and the prior
        :math:`P(c)` :obj:`[K]` (non-negative, summing to one).
        """
        if stratum.shape != self.stratum.shape:
            raise ValueError(f"'stratum' must have shape "
                             f"{list(self.stratum.shape)} (got "
                             f"{list(stratum.shape)})")
        if stratum.numel() and (int(stratum.min()) < 0 or int(
                stratum.max()) >= self.num_strata):
            raise ValueError(f"'stratum' must hold ids in [0, "
                             f"{self.num_strata - 1}] (got "
                             f"[{int(stratum.min())}, {int(stratum.max())}])")
        if (prior.shape != (self.num_strata, ) or bool((prior < 0).any())
                or abs(float(prior.sum()) - 1.0) > 1e-4):
            raise ValueError(f"'prior' must be {self.num_strata} "
                             f"non-negative numbers summing to 1 (got "
                             f"{prior.tolist()})")
        self.stratum.copy_(stratum)
        self.prior.copy_(prior.to(self.prior.dtype))

    def term(self, user: Tensor, item: Tensor, stratum: Tensor) -> Tensor:
        r"""The stratum term :math:`(p_u + q_i)^\top e_c + b_c` for pairs
        with embeddings :obj:`user, item [*, D]` and strata :obj:`[*]`.
        """
        e = self.embedding[stratum]
        return ((user + item) * e).sum(-1) + self.bias[stratum]

    def conditioned(self, base: Tensor, user: Tensor, item: Tensor,
                    node_index: Tensor) -> Tensor:
        r"""Training logits :math:`s(u, i, c)` with the pair's own stratum;
        :obj:`node_index` :obj:`[*]` are the pairs' items (or users).
        """
        return base + self.term(user, item, self.stratum[node_index])

    def adjusted(self, base: Tensor, user: Tensor, item: Tensor) -> Tensor:
        r"""The backdoor sum over strata for pairs :obj:`[*]`."""
        shape = base.shape
        terms = ((user + item).unsqueeze(-2) * self.embedding).sum(-1) \
            + self.bias  # [*, K]
        return self._mix(base.unsqueeze(-1) + terms).reshape(shape)

    def adjusted_all(self, base: Tensor, user: Tensor,
                     item: Tensor) -> Tensor:
        r"""The backdoor sum for all pairs of users :obj:`[B, D]` and items
        :obj:`[I, D]` given base logits :obj:`[B, I]`.
        """
        if self.mean == 'logit':
            e_bar = self.prior @ self.embedding  # [D]
            b_bar = self.prior @ self.bias
            return (base + (user @ e_bar).unsqueeze(-1) +
                    (item @ e_bar).unsqueeze(0) + b_bar)
        t_user = user @ self.embedding.t()  # [B, K]
        t_item = item @ self.embedding.t() + self.bias  # [I, K]
        x = base.unsqueeze(-1) + t_user.unsqueeze(1) + t_item.unsqueeze(0)
        return self._mix(x)

    def _mix(self, x: Tensor) -> Tensor:
        # x: [..., K] stratum-conditioned logits.
        if self.mean == 'logit':
            return x @ self.prior
        log_prior = self.prior.clamp_min(1e-30).log()
        log_p = torch.logsumexp(log_prior + F.logsigmoid(x), dim=-1)
        log_q = torch.logsumexp(log_prior + F.logsigmoid(-x), dim=-1)
        return log_p - log_q

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_strata={self.num_strata}, '
                f'side={self.side!r}, mean={self.mean!r})')


# ---------------------------------------------------------------------------
# Latent scenarios (MUSENET)
# ---------------------------------------------------------------------------

class LatentScenarios(torch.nn.Module):
    r"""Latent scenarios as confounders (MUSENET, Xu et al., WSDM 2023).

    A pair :math:`x = (p_u, q_i)` is projected into a metric space,
    :math:`f_\omega(x) = W_u p_u + W_i q_i + w_0`, and compared with
    :math:`K` prototypes :math:`c_k` (a buffer):

    .. math::
        \pi_k(x) = \frac{\exp(-\|f_\omega(x) - c_k\|^2)}
                        {\sum_{k'} \exp(-\|f_\omega(x) - c_{k'}\|^2)}.

    Soft assignment :math:`a = \pi` (Eq. 3); hard assignment by
    Gumbel-softmax with temperature :math:`\tau` and the straight-through
    estimator in training (Eq. 7: one-hot values, gradients of the relaxed
    sample), :math:`\arg\max_k \pi_k` in evaluation (Eq. 4). Each scenario
    scores :math:`z_k(u, i) = s(u, i) + (p_u \odot g_k)^\top q_i + b_k` on
    top of the base logit :math:`s`, and the prediction is
    :math:`\sum_k a_k z_k` (:obj:`predict='assignment'`, Sec. 3.2.3) or the
    backdoor sum with the uniform prior :math:`\frac{1}{K}\sum_k z_k`
    (:obj:`predict='prior'`, Eq. 1).

    The objective :math:`\mathcal{L}_T + \mathcal{D}_{KL} +
    \beta\mathcal{L}_A` (Eq. 13): :math:`\mathcal{L}_T` is the trainer's
    ranking loss; :meth:`auxiliary_loss` returns the KL to the uniform prior
    (Eq. 12, on :math:`\pi`) and :math:`\beta \mathcal{L}_A`, the squared
    error between the user's repeat share :math:`r_u` and the
    scenario-mixed repeat propensity :math:`\sum_k p^k_r(u)\, \pi_k`
    (Eq. 10, written there with a stray minus sign). Prototypes follow the
    moving average of Eq. 14 over the batch,

    .. math::
        c_k \leftarrow (1 - \alpha)\, c_k + \alpha
            \frac{\sum_i a_{k,i} f_\omega(x_i)}{\sum_i a_{k,i}},

    applied by :meth:`update_prototypes` (called under :func:`torch.no_grad`
    once per training step from :meth:`auxiliary_loss`, after the step's
    terms are built; scenarios with no mass in the batch keep their
    prototype). The first update seeds the prototypes with :math:`K`
    distinct batch samples.

    Args:
        embedding_dim (int): Size :math:`D` of :math:`p_u, q_i`.
            (default: :obj:`64`)
        num_scenarios (int): :math:`K`. (default: :obj:`4`)
        proj_dim (int): Size of the metric space. (default: :obj:`16`)
        assignment (str): :obj:`'soft'` or :obj:`'hard'`.
            (default: :obj:`'soft'`)
        tau (float): Gumbel-softmax temperature. (default: :obj:`0.1`)
        alpha (float): Prototype moving-average rate. (default: :obj:`0.2`)
        kl_weight (float): Weight of the KL term. (default: :obj:`1.0`)
        beta (float): Weight of :math:`\mathcal{L}_A`. (default: :obj:`0.1`)
        predict (str): :obj:`'assignment'` or :obj:`'prior'`.
            (default: :obj:`'assignment'`)
    """
    assignments = ('soft', 'hard')
    predicts = ('assignment', 'prior')

    def __init__(self, embedding_dim: int = 64, num_scenarios: int = 4,
                 proj_dim: int = 16, assignment: str = 'soft',
                 tau: float = 0.1, alpha: float = 0.2,
                 kl_weight: float = 1.0, beta: float = 0.1,
                 predict: str = 'assignment'):
        super().__init__()
        for arg, value in (('embedding_dim', embedding_dim),
                           ('num_scenarios', num_scenarios),
                           ('proj_dim', proj_dim)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"'{arg}' must be a positive int "
                                 f"(got {value!r})")
        if assignment not in self.assignments:
            raise ValueError(f"'assignment' must be one of "
                             f"{self.assignments} (got {assignment!r})")
        if predict not in self.predicts:
            raise ValueError(f"'predict' must be one of {self.predicts} "
                             f"(got {predict!r})")
        if not tau > 0:
            raise ValueError(f"'tau' must be positive (got {tau!r})")
        if not 0 < alpha <= 1:
            raise ValueError(f"'alpha' must be in (0, 1] (got {alpha!r})")
        for arg, value in (('kl_weight', kl_weight), ('beta', beta)):
            if not value >= 0:
                raise ValueError(f"'{arg}' must be non-negative "
                                 f"(got {value!r})")
        self.embedding_dim, self.num_scenarios = embedding_dim, num_scenarios
        self.proj_dim, self.assignment, self.predict = (proj_dim, assignment,
                                                        predict)
        self.tau, self.alpha = float(tau), float(alpha)
        self.kl_weight, self.beta = float(kl_weight), float(beta)
        self.proj_user = torch.nn.Linear(embedding_dim, proj_dim, bias=False)
        self.proj_item = torch.nn.Linear(embedding_dim, proj_dim)
        self.gain = torch.nn.Parameter(torch.empty(num_scenarios,
                                                   embedding_dim))
        self.bias = torch.nn.Parameter(torch.empty(num_scenarios))
        self.repeat = torch.nn.Linear(embedding_dim, num_scenarios)
        self.register_buffer('prototypes', torch.zeros(num_scenarios,
                                                       proj_dim))
        self.register_buffer('seeded', torch.zeros((), dtype=torch.bool))
        self.dag = confounding_dag('scenario')
        self.adjustment = {'scenario'}
        check_backdoor(self.dag, 'X', 'Y', self.adjustment)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        r"""Re-draws the projection and repeat head, zeroes the scenario
        terms (each :math:`z_k` starts equal to the base logit) and unseeds
        the prototypes.
        """
        self.proj_user.reset_parameters()
        self.proj_item.reset_parameters()
        self.repeat.reset_parameters()
        torch.nn.init.zeros_(self.gain)
        torch.nn.init.zeros_(self.bias)
        self.prototypes.zero_()
        self.seeded.fill_(False)

    # -- assignment ---------------------------------------------------------
    def project(self, user: Tensor, item: Tensor) -> Tensor:
        r""":math:`f_\omega(x)` for pairs :obj:`[*, D]` -> :obj:`[*, P]`."""
        return self.proj_user(user) + self.proj_item(item)

    def logits(self, x: Tensor) -> Tensor:
        r""":math:`\log \pi` up to a constant, :obj:`[*, K]`:
        :math:`-\|x - c_k\|^2 + \|x\|^2 = 2 x^\top c_k - \|c_k\|^2`
        (MUSENET Eq. 15-16).
        """
        c = self.prototypes.clone()  # later in-place updates stay safe
        return 2 * x @ c.t() - c.pow(2).sum(-1)

    def assign(self, logits: Tensor) -> Tensor:
        r"""The assignment :math:`a` :obj:`[*, K]`: :math:`\pi` (soft), a
        straight-through Gumbel-softmax sample in training or the arg-max
        one-hot in evaluation (hard).
        """
        if self.assignment == 'soft':
            return logits.softmax(-1)
        if self.training:
            return F.gumbel_softmax(logits, tau=self.tau, hard=True)
        index = logits.argmax(-1, keepdim=True)
        return torch.zeros_like(logits).scatter_(-1, index, 1.0)

    # -- scores -------------------------------------------------------------
    def forward(self, base: Tensor, user: Tensor, item: Tensor) -> Tensor:
        r"""Scenario-mixed logits of pairs: :obj:`base [*]`, :obj:`user`,
        :obj:`item` :obj:`[*, D]`.
        """
        z = (base.unsqueeze(-1) + (user.unsqueeze(-2) * self.gain *
                                   item.unsqueeze(-2)).sum(-1) + self.bias)
        if self.predict == 'prior':
            return z.mean(-1)
        a = self.assign(self.logits(self.project(user, item)))
        return (a * z).sum(-1)

    def score_all(self, base: Tensor, user: Tensor, item: Tensor) -> Tensor:
        r"""Logits of users :obj:`[B, D]` against all items :obj:`[I, D]`
        given base logits :obj:`[B, I]`.

        The assignment logits are a user part plus an item part (Eq. 15-16
        with :math:`f_\omega` linear), so soft assignments factorize: with
        :math:`\epsilon_k(u) = e^{2 c_k^\top W_u p_u}` and
        :math:`\eta_k(i) = e^{2 c_k^\top (W_i q_i + w_0) - \|c_k\|^2}`
        (each shifted by its maximum),

        .. math::
            \sum_k \pi_k z_k = s(u, i) + \frac{\sum_k \epsilon_k \eta_k
                (b_k + (p_u \odot g_k)^\top q_i)}{\sum_k \epsilon_k
                \eta_k},

        a few matrix products. Hard assignments (arg-max) and rows whose
        denominator underflows use :meth:`score_dense`.
        """
        if self.predict == 'prior':
            return base + (user * self.gain.mean(0)) @ item.t() + \
                self.bias.mean()
        if self.assignment == 'hard':
            return self.score_dense(base, user, item)
        c = self.prototypes.clone()
        lu = 2 * self.proj_user(user) @ c.t()  # [B, K]
        li = 2 * self.proj_item(item) @ c.t() - c.pow(2).sum(-1)  # [I, K]
        eu = (lu - lu.amax(-1, keepdim=True)).exp()
        ei = (li - li.amax(-1, keepdim=True)).exp()
        den = eu @ ei.t()
        num = (eu * self.bias) @ ei.t() + (
            (eu.unsqueeze(-1) * user.unsqueeze(1) * self.gain).flatten(1) @
            (ei.unsqueeze(-1) * item.unsqueeze(1)).flatten(1).t())
        out = base + num / den
        bad = (den.amin(-1) < 1e-30).nonzero().flatten()
        if bad.numel():
            out[bad] = self.score_dense(base[bad], user[bad], item)
        return out

    def score_dense(self, base: Tensor, user: Tensor,
                    item: Tensor) -> Tensor:
        r"""The reference all-item computation on a dense :obj:`[K, B, I]`
        tensor.
        """
        # Scenario-major [K, B, I] layout: K matrix products, a softmax
        # over the leading dimension.
        z = torch.stack([(user * g) @ item.t() for g in self.gain])
        z = z + base + self.bias.view(-1, 1, 1)
        if self.predict == 'prior':
            return z.mean(0)
        c = self.prototypes.clone()
        lu = 2 * self.proj_user(user) @ c.t()  # [B, K]
        li = 2 * self.proj_item(item) @ c.t() - c.pow(2).sum(-1)  # [I, K]
        logits = lu.t().unsqueeze(-1) + li.t().unsqueeze(1)  # [K, B, I]
        a = self.assign(logits.movedim(0, -1)).movedim(-1, 0)
        return (a * z).sum(0)

    # -- objective ----------------------------------------------------------
    def auxiliary_loss(self, user: Tensor, item: Tensor,
                       repeat_share: Tensor, update: bool = True
                       ) -> dict:
        r"""The weighted :math:`\mathcal{D}_{KL}` and
        :math:`\beta\mathcal{L}_A` of samples :obj:`user, item [N, D]` with
        their users' repeat shares :math:`r` :obj:`[N]`; then (with
        :obj:`update`) one prototype moving-average step on these samples.
        """
        x = self.project(user, item)
        pi = self.logits(x).softmax(-1)
        p_repeat = torch.sigmoid(self.repeat(user))
        out = {'kl': self.kl_weight * kl_to_uniform(pi),
               'repeat': self.beta * scenario_repeat_loss(
                   repeat_share, p_repeat, pi)}
        if update:
            with torch.no_grad():
                if self.assignment == 'hard':
                    a = F.one_hot(pi.argmax(-1), self.num_scenarios).float()
                else:
                    a = pi
                self.update_prototypes(x.detach(), a.detach())
        return out

    @torch.no_grad()
    def update_prototypes(self, x: Tensor, a: Tensor) -> None:
        r"""One step of Eq. 14 on projected samples :obj:`x [N, P]` with
        assignments :obj:`a [N, K]`; the first call seeds the prototypes
        with :math:`K` distinct samples instead.
        """
        if x.dim() != 2 or x.size(1) != self.proj_dim:
            raise ValueError(f"'x' must have shape [N, {self.proj_dim}] "
                             f"(got {list(x.shape)})")
        if a.shape != (x.size(0), self.num_scenarios):
            raise ValueError(f"'a' must have shape [{x.size(0)}, "
                             f"{self.num_scenarios}] (got {list(a.shape)})")
        if not bool(self.seeded):
            uniq = torch.unique(x, dim=0)
            if uniq.size(0) >= self.num_scenarios:
                pick = torch.randperm(uniq.size(0))[:self.num_scenarios]
                self.prototypes.copy_(uniq[pick.to(x.device)])
                self.seeded.fill_(True)
            return
        mass = a.sum(0)  # [K]
        mean = (a.t() @ x) / mass.clamp_min(1e-12).unsqueeze(-1)
        new = (1 - self.alpha) * self.prototypes + self.alpha * mean
        keep = (mass > 0).unsqueeze(-1)
        self.prototypes.copy_(torch.where(keep, new, self.prototypes))

    def repeat_probability(self, user: Tensor) -> Tensor:
        r"""Per-scenario repeat propensity :math:`p^k_r(u)`,
        :obj:`[*, K]`.
        """
        return torch.sigmoid(self.repeat(user))

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_scenarios='
                f'{self.num_scenarios}, assignment={self.assignment!r}, '
                f'tau={self.tau}, alpha={self.alpha}, '
                f'predict={self.predict!r})')
