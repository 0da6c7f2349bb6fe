import pytest
import torch

from graphrec.data.transforms import (
    apply_transform,
    keep_behaviors,
    reorder_behaviors,
    subsample_behavior,
)
from graphrec.datasets import make_synthetic


def test_keep_behaviors_keeps_heldout_pairs_and_records(tiny):
    out = keep_behaviors(tiny, ['buy'])
    assert out.behaviors == ('buy', )
    assert set(out.train) == {'buy'}
    assert torch.equal(out.test, tiny.test)
    assert out.info['transforms'] == ['behaviors=buy']
    assert tiny.behaviors == ('view', 'buy')  # the input is unchanged
    with pytest.raises(ValueError, match="must keep the target 'buy'"):
        keep_behaviors(tiny, ['view'])
    with pytest.raises(ValueError, match="unknown behaviors \\['cart'\\]"):
        keep_behaviors(tiny, ['cart', 'buy'])


def test_subsample_behavior_fraction_seed_and_timestamps():
    data = make_synthetic(num_users=80, num_items=50, seed=0)
    view = data.train['view']
    half = subsample_behavior(data, 'view', 0.5, seed=3)
    assert half.train['view'].size(1) == round(0.5 * view.size(1))
    # A subset of the original pairs, in the original order.
    keys = view[0] * data.num_items + view[1]
    sub = half.train['view'][0] * data.num_items + half.train['view'][1]
    assert torch.isin(sub, keys).all()
    pos = torch.searchsorted(keys, sub) if bool(
        (keys[1:] >= keys[:-1]).all()) else None
    if pos is not None:
        assert bool((pos[1:] > pos[:-1]).all())
    ts = data.timestamps.get('view')
    if ts is not None:
        assert half.timestamps['view'].numel() == half.train['view'].size(1)
    assert torch.equal(half.train['buy'], data.train['buy'])
    again = subsample_behavior(data, 'view', 0.5, seed=3)
    assert torch.equal(again.train['view'], half.train['view'])
    other = subsample_behavior(data, 'view', 0.5, seed=4)
    assert not torch.equal(other.train['view'], half.train['view'])
    assert half.info['transforms'] == ['view@0.5(seed 3)']
    for bad in (0.0, 1.5, True):
        with pytest.raises(ValueError, match="'fraction' must be a number"):
            subsample_behavior(data, 'view', bad)
    with pytest.raises(ValueError, match="'behavior' must be one of"):
        subsample_behavior(data, 'like', 0.5)


def test_reorder_and_text_specs(tiny):
    data = make_synthetic(num_users=40, num_items=30, seed=0)
    out = reorder_behaviors(data, ['cart', 'view', 'buy'])
    assert out.behaviors == ('cart', 'view', 'buy')
    assert torch.equal(out.train['view'], data.train['view'])
    with pytest.raises(ValueError, match="must end with the target"):
        reorder_behaviors(data, ['buy', 'view', 'cart'])
    with pytest.raises(ValueError, match="must be a permutation"):
        reorder_behaviors(data, ['view', 'buy'])
    assert apply_transform(data, 'order=cart>view>buy').behaviors == \
        out.behaviors
    assert apply_transform(data, 'behaviors=view+buy').behaviors == (
        'view', 'buy')
    assert torch.equal(apply_transform(data, 'view@0.5:3').train['view'],
                       subsample_behavior(data, 'view', 0.5, 3).train['view'])
    with pytest.raises(ValueError, match="unknown transform"):
        apply_transform(data, 'nonsense')
    with pytest.raises(ValueError, match="behavior@fraction"):
        apply_transform(data, 'view@half')
    with pytest.raises(ValueError, match="non-empty string"):
        apply_transform(data, '')
