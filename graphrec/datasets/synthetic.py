r"""A synthetic multi-behavior dataset with planted ground truth.

Users and items have latent factors; the true preference of user :math:`u`
for item :math:`i` is :math:`r_{ui} = \langle p_u, q_i \rangle`. Items also
have a popularity :math:`\pi_i` that is drawn independently of :math:`q_i`:
it drives exposure (what gets viewed) but not preference. Each user views
:math:`n_u` items drawn without replacement with probability proportional to

.. math::
    \exp(\gamma \log \pi_i + \alpha_v r_{ui}),

where :math:`\gamma` is the confounding strength; a viewed item is carted
with probability :math:`\sigma(\alpha_c r_{ui} + b_c)` and a carted item
bought with probability :math:`\sigma(\alpha_b r_{ui} + b_b)`. Purchases
are always logged, views and carts only with a probability, so that, as in
real logs, some purchases have no logged view. Observed
purchases therefore over-represent popular items although popularity does
not make anyone like an item more: the bias that a debiasing method should
remove, measured against :func:`true_preference`.

Each user's latest purchase (by the generated timestamps) is the test pair
when the user has at least two purchases.
"""
from __future__ import annotations

import hashlib
import json
from typing import Optional

import torch
from torch import Tensor

from graphrec.data.dataset import MultiBehaviorDataset


def make_synthetic(num_users: int = 1000, num_items: int = 500,
                   embedding_dim: int = 8, confounding: float = 1.0,
                   views_per_user: float = 30.0, preference_strength:
                   float = 1.0, cart_strength: float = 2.0,
                   buy_strength: float = 2.0, cart_bias: float = -1.5,
                   buy_bias: float = -1.0, popularity_skew: float = 1.5,
                   view_logged: float = 0.7, cart_logged: float = 0.5,
                   seed: int = 0) -> MultiBehaviorDataset:
    r"""Generates the dataset described in the module docstring.

    Args:
        num_users (int): Number of users. (default: :obj:`1000`)
        num_items (int): Number of items. (default: :obj:`500`)
        embedding_dim (int): Dimension of the latent factors.
            (default: :obj:`8`)
        confounding (float): :math:`\gamma`, how strongly popularity drives
            exposure; :obj:`0` makes exposure independent of popularity.
            (default: :obj:`1.0`)
        views_per_user (float): Mean number of viewed items per user.
            (default: :obj:`30.0`)
        preference_strength (float): :math:`\alpha_v`, how much preference
            drives views. (default: :obj:`1.0`)
        cart_strength (float): :math:`\alpha_c`. (default: :obj:`2.0`)
        buy_strength (float): :math:`\alpha_b`. (default: :obj:`2.0`)
        cart_bias (float): :math:`b_c`. (default: :obj:`-1.5`)
        buy_bias (float): :math:`b_b`. (default: :obj:`-1.0`)
        popularity_skew (float): Standard deviation of :math:`\log \pi_i`
            (log-normal popularity). (default: :obj:`1.5`)
        view_logged (float): Probability that a view is logged; purchases
            always are, so some purchases have no logged view ("unvisited"
            test items). (default: :obj:`0.7`)
        cart_logged (float): Probability that a cart is logged.
            (default: :obj:`0.5`)
        seed (int): Seed of everything. (default: :obj:`0`)

    Returns:
        MultiBehaviorDataset: Behaviors ``view, cart, buy`` with timestamps;
        :obj:`info['truth']` holds ``user_factors``, ``item_factors`` and
        ``log_popularity``.
    """
    params = dict(num_users=num_users, num_items=num_items,
                  embedding_dim=embedding_dim, confounding=confounding,
                  views_per_user=views_per_user,
                  preference_strength=preference_strength,
                  cart_strength=cart_strength, buy_strength=buy_strength,
                  cart_bias=cart_bias, buy_bias=buy_bias,
                  popularity_skew=popularity_skew, view_logged=view_logged,
                  cart_logged=cart_logged, seed=seed)
    for name in ('num_users', 'num_items', 'embedding_dim'):
        value = params[name]
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"'{name}' must be a positive int "
                             f"(got {value!r})")
    if num_items < 2:
        raise ValueError(f"'num_items' must be at least 2 (got {num_items})")
    if not 0 < views_per_user <= num_items:
        raise ValueError(f"'views_per_user' must be in (0, num_items="
                         f"{num_items}] (got {views_per_user!r})")
    gen = torch.Generator().manual_seed(int(seed))
    d = embedding_dim
    user_factors = torch.randn(num_users, d, generator=gen) / d**0.25
    item_factors = torch.randn(num_items, d, generator=gen) / d**0.25
    log_pop = popularity_skew * torch.randn(num_items, generator=gen)
    pref = user_factors @ item_factors.t()  # [U, I], unit variance

    # Views: n_u items without replacement, Gumbel top-k on the logits.
    n_views = torch.poisson(torch.full((num_users, ), float(views_per_user)),
                            generator=gen).long().clamp(2, num_items)
    logits = confounding * log_pop.view(1, -1) + preference_strength * pref
    gumbel = -torch.log(-torch.log(
        torch.rand(num_users, num_items, generator=gen).clamp(1e-12, 1.0)))
    order = torch.argsort(logits + gumbel, dim=1, descending=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(num_items).expand(num_users, -1))
    viewed = rank < n_views.view(-1, 1)
    cart = viewed & (torch.rand(num_users, num_items, generator=gen) <
                     torch.sigmoid(cart_strength * pref + cart_bias))
    buy = cart & (torch.rand(num_users, num_items, generator=gen) <
                  torch.sigmoid(buy_strength * pref + buy_bias))

    for name in ('view_logged', 'cart_logged'):
        if not 0.0 <= params[name] <= 1.0:
            raise ValueError(f"'{name}' must be in [0, 1] "
                             f"(got {params[name]!r})")
    # Logging is incomplete, as in real logs: a purchase may have no logged
    # view or cart.
    logged_view = viewed & (torch.rand(num_users, num_items, generator=gen)
                            < view_logged)
    logged_cart = cart & (torch.rand(num_users, num_items, generator=gen)
                          < cart_logged)

    # Timestamps: view, then cart, then buy, each a little later.
    t_view = torch.randint(0, 10**6, (num_users, num_items), generator=gen)
    t_cart = t_view + torch.randint(1, 10**4, t_view.shape, generator=gen)
    t_buy = t_cart + torch.randint(1, 10**4, t_view.shape, generator=gen)

    def _edges(mask: Tensor, times: Tensor):
        index = mask.nonzero().t().contiguous()
        return index, times[index[0], index[1]]

    view_index, view_t = _edges(logged_view, t_view)
    cart_index, cart_t = _edges(logged_cart, t_cart)
    buy_index, buy_t = _edges(buy, t_buy)

    # Test: the latest purchase of every user with at least two.
    from graphrec.data.split import _pick_one_per_user
    chosen = _pick_one_per_user(buy_index[0], buy_t.double())
    keep = torch.ones(buy_index.size(1), dtype=torch.bool)
    keep[chosen] = False
    test = buy_index[:, chosen].clone()
    checksum = hashlib.sha256(json.dumps(
        params, sort_keys=True).encode()).hexdigest()
    info = {
        'source': 'graphrec.datasets.synthetic.make_synthetic',
        'params': params,
        'split': {'method': 'latest purchase of every user with at least '
                  'two (by generated timestamp)'},
        'truth': {'user_factors': user_factors,
                  'item_factors': item_factors,
                  'log_popularity': log_pop},
    }
    return MultiBehaviorDataset(
        name='synthetic', num_users=num_users, num_items=num_items,
        behaviors=('view', 'cart', 'buy'),
        train={'view': view_index, 'cart': cart_index,
               'buy': buy_index[:, keep]},
        timestamps={'view': view_t, 'cart': cart_t, 'buy': buy_t[keep]},
        test=test, checksum=checksum, info=info)


def true_preference(dataset: MultiBehaviorDataset,
                    user_index: Optional[Tensor] = None) -> Tensor:
    r"""The planted preference :math:`r_{ui}` of :obj:`user_index` (all
    users by default) for every item, :obj:`[B, I]`.

    Raises:
        ValueError: :obj:`dataset` was not made by :func:`make_synthetic`.
    """
    truth = dataset.info.get('truth')
    if truth is None:
        raise ValueError(f"dataset '{dataset.name}' has no planted truth; "
                         f"only make_synthetic() datasets have one")
    users = truth['user_factors']
    if user_index is not None:
        users = users[user_index.cpu().long()]
    return users @ truth['item_factors'].t()
