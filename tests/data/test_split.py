import pytest
import torch

from graphrec.data import MultiBehaviorDataset, carve_validation, pair_keys
from graphrec.data.split import temporal_split


def _timed():
    # u0 buys i0 (t=5), i1 (t=9), i2 (t=1); u1 buys i3 once; u2 buys i0, i3.
    return MultiBehaviorDataset(
        name='timed', num_users=3, num_items=5, behaviors=('view', 'buy'),
        train={'view': torch.tensor([[0, 1, 2], [4, 4, 4]]),
               'buy': torch.tensor([[0, 0, 0, 1, 2, 2], [0, 1, 2, 3, 0, 3]])},
        timestamps={'view': torch.tensor([1, 2, 3]),
                    'buy': torch.tensor([5, 9, 1, 4, 7, 2])},
        test=torch.tensor([[0, 2], [4, 1]]))


def test_carve_validation_takes_latest_by_time():
    out = carve_validation(_timed())
    # u0's latest is i1 (t=9), u2's latest is i0 (t=7); u1 has one buy.
    assert sorted(map(tuple, out.valid.t().tolist())) == [(0, 1), (2, 0)]
    assert out.train['buy'].size(1) == 4
    assert out.timestamps['buy'].tolist() == [5, 1, 4, 2]
    assert out.train['view'] is not None
    assert out.info['split']['valid']['pairs'] == 2
    assert 'timestamp' in out.info['split']['valid']['rule']


def test_carve_validation_random_is_seeded_and_disjoint(tiny):
    data = tiny.replace(train={**tiny.train, 'buy': torch.tensor(
        [[0, 0, 0, 1, 1, 2], [0, 1, 3, 2, 3, 0]])})
    a = carve_validation(data, seed=3)
    b = carve_validation(data, seed=3)
    assert torch.equal(a.valid, b.valid)
    # u0 and u1 have >= 2 buys, u2 has one: exactly two validation pairs.
    assert sorted(a.valid[0].tolist()) == [0, 1]
    train = pair_keys(a.train['buy'], 4)
    assert not torch.isin(pair_keys(a.valid, 4), train).any()
    assert train.numel() + a.valid.size(1) == 6
    seeds = {tuple(carve_validation(data, seed=s).valid[1].tolist())
             for s in range(20)}
    assert len(seeds) > 1  # the seed matters


def test_carve_validation_refuses_twice_and_bad_args(tiny):
    with pytest.raises(ValueError, match="'by' must be"):
        carve_validation(tiny, by='latest')
    with pytest.raises(ValueError, match='has no timestamps'):
        carve_validation(tiny, by='time')
    once = carve_validation(tiny.replace(train={**tiny.train, 'buy':
                                                torch.tensor([[0, 0],
                                                              [0, 1]])}))
    with pytest.raises(ValueError, match='already has a validation split'):
        carve_validation(once)


def test_temporal_split_cuts_globally():
    data = _timed()
    out = temporal_split(data, cutoff=6, valid_fraction=0.25)
    times = data.timestamps['buy']
    # Test: buys at t >= 6, i.e. (0, 1) and (2, 0).
    assert sorted(map(tuple, out.test.t().tolist())) == [(0, 1), (2, 0)]
    assert (out.timestamps['buy'] < out.info['split']['valid_cutoff']).all()
    assert out.valid.size(1) + out.train['buy'].size(1) + 2 == times.numel()
    with pytest.raises(ValueError, match='needs timestamps'):
        temporal_split(data.replace(timestamps={'view': None,
                                                'buy': times}))
    with pytest.raises(ValueError, match="'test_fraction'"):
        temporal_split(data, test_fraction=1.5)


def test_carve_validation_can_mirror_an_unvisited_test(tiny):
    # tiny: view u0-i0, u0-i1, u1-i1, u1-i2, u2-i3; buy u0-i1, u1-i2, u2-i0.
    # Give u0 a second purchase so that one is carved: u0 buys i0 too.
    data = tiny.replace(train={'view': tiny.train['view'],
                               'buy': torch.tensor([[0, 1, 2, 0],
                                                    [1, 2, 0, 0]])})
    kept = carve_validation(data, seed=0)
    assert kept.valid.size(1) == 1
    assert torch.equal(kept.train['view'], data.train['view'])
    assert 'auxiliary_removed' not in kept.info['split']['valid']
    mirrored = carve_validation(data, seed=0, drop_auxiliary=True)
    assert torch.equal(mirrored.valid, kept.valid)
    u, i = mirrored.valid[:, 0].tolist()
    assert (u, i) in {(0, 0), (0, 1)}  # both were viewed by u0
    view = set(map(tuple, mirrored.train['view'].t().tolist()))
    assert view == set(map(tuple, data.train['view'].t().tolist())) - {
        (u, i)}
    assert mirrored.info['split']['valid']['auxiliary_removed'] == 1
    # The default follows what the dataset declares about its test.
    data.info['test_unvisited'] = True
    auto = carve_validation(data, seed=0)
    assert torch.equal(auto.train['view'], mirrored.train['view'])


def test_registry_declares_retailrocket_test_unvisited():
    from graphrec.datasets.public import PUBLIC_DATASETS
    assert PUBLIC_DATASETS['retailrocket'].test_unvisited
    assert not PUBLIC_DATASETS['tmall'].test_unvisited
