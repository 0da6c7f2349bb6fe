import pytest
import torch

from graphrec.data import carve_validation, pair_keys
from graphrec.datasets import make_synthetic
from graphrec.datasets.synthetic import true_preference


def test_synthetic_is_deterministic_and_valid():
    a = make_synthetic(num_users=200, num_items=100, seed=4)
    b = make_synthetic(num_users=200, num_items=100, seed=4)
    c = make_synthetic(num_users=200, num_items=100, seed=5)
    assert a.behaviors == ('view', 'cart', 'buy')
    for beh in a.behaviors:
        assert torch.equal(a.train[beh], b.train[beh])
    assert a.checksum == b.checksum != c.checksum
    assert a.test.size(1) > 150
    carve_validation(a).validate()


def test_funnel_view_cart_buy():
    d = make_synthetic(num_users=300, num_items=150, seed=0, view_logged=1.0,
                       cart_logged=1.0)
    n = d.num_items
    view = pair_keys(d.train['view'], n)
    cart = pair_keys(d.train['cart'], n)
    buy = torch.cat([pair_keys(d.train['buy'], n), pair_keys(d.test, n)])
    assert torch.isin(cart, view).all() and torch.isin(buy, cart).all()
    assert view.numel() > cart.numel() > buy.numel()
    # With incomplete logging, some purchases have no logged view.
    share = make_synthetic(num_users=300, num_items=150,
                           seed=0).stats()['test_visited_share']
    assert 0.6 < share < 0.95
    with pytest.raises(ValueError, match="'cart_logged' must be in"):
        make_synthetic(cart_logged=1.5)


def _buy_popularity_correlation(confounding):
    d = make_synthetic(num_users=1000, num_items=300, seed=1,
                       confounding=confounding)
    lp = d.info['truth']['log_popularity']
    counts = torch.bincount(d.train['buy'][1], minlength=300).float()
    return float(torch.corrcoef(torch.stack([lp, counts]))[0, 1])


def test_confounding_drives_purchases_not_preference():
    assert abs(_buy_popularity_correlation(0.0)) < 0.2
    assert _buy_popularity_correlation(2.0) > 0.5
    d = make_synthetic(num_users=500, num_items=300, seed=1)
    pref = true_preference(d).mean(0)  # mean preference per item
    lp = d.info['truth']['log_popularity']
    assert abs(float(torch.corrcoef(torch.stack([lp, pref]))[0, 1])) < 0.2


def test_true_preference_predicts_purchases():
    d = make_synthetic(num_users=300, num_items=200, seed=2)
    pref = true_preference(d, d.test[0])
    bought = pref[torch.arange(d.test.size(1)), d.test[1]]
    assert float(bought.mean()) > float(pref.mean()) + 0.5
    assert true_preference(d, torch.tensor([0, 1])).shape == (2, 200)
    with pytest.raises(ValueError, match='no planted truth'):
        true_preference(d.replace(info={}))


def test_bad_arguments():
    with pytest.raises(ValueError, match="'num_users' must be a positive"):
        make_synthetic(num_users=0)
    with pytest.raises(ValueError, match="'views_per_user'"):
        make_synthetic(num_items=10, views_per_user=50)
