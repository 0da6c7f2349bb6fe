import dataclasses
import hashlib
import importlib.util
import json

import pytest
import torch

from graphrec.data import DataFormatError, MultiBehaviorDataset, io, pair_keys
from graphrec.data.io import find_data_root, read_sha256sums
from graphrec.datasets import (
    PUBLIC_DATASETS,
    get_public_dataset,
    list_datasets,
    load_dataset,
)


def data_folder(name):
    try:
        return find_data_root(name)
    except FileNotFoundError:
        pytest.skip(f'the {name!r} data folder is not available')


@pytest.fixture(scope='module')
def tmall():
    data_folder('tmall')
    return load_dataset('tmall')


@pytest.fixture(scope='module')
def retailrocket():
    data_folder('retailrocket')
    return load_dataset('retailrocket')


def test_tmall_counts(tmall):
    assert tmall.name == 'tmall'
    assert (tmall.num_users, tmall.num_items) == (15449, 11953)
    assert tmall.behaviors == ('view', 'cart', 'buy')
    stats = tmall.stats()
    assert stats['train'] == {'view': 858505, 'cart': 180027, 'buy': 92180}
    assert stats['test'] == 15449
    # One test purchase per user.
    assert torch.equal(tmall.test[0].sort().values, torch.arange(15449))
    # 12,852 test purchases were viewed or carted in train (datasets/README).
    assert round(stats['test_visited_share'] * 15449) == 12852
    assert all(tmall.timestamps[b] is None for b in tmall.behaviors)


def test_tmall_checksums_verified(tmall):
    root = find_data_root('tmall')
    sums = (root / 'SHA256SUMS').read_bytes()
    assert tmall.checksum == hashlib.sha256(sums).hexdigest()
    assert tmall.info['verified'] is True
    assert tmall.info['duplicates_dropped'] == {
        'view': 0, 'cart': 0, 'buy': 0, 'test': 0}
    listed = {rel: d for rel, (d, _) in read_sha256sums(
        root / 'SHA256SUMS').items()}
    assert listed == PUBLIC_DATASETS['tmall'].files


def test_retailrocket_counts_and_timestamps(retailrocket):
    ds = retailrocket
    assert (ds.num_users, ds.num_items) == (2174, 30113)
    assert ds.stats()['train'] == {'view': 75374, 'cart': 12456,
                                   'buy': 9551}
    assert ds.stats()['test'] == 2174
    for b in ds.behaviors:
        ts = ds.timestamps[b]
        assert ts is not None and ts.dtype == torch.long
        assert ts.numel() == ds.train[b].size(1)
        # May to September 2015.
        assert 1430000000 < int(ts.min()) <= int(ts.max()) < 1443000000
    # No test item appears in that user's train behaviors (datasets/README).
    test = pair_keys(ds.test, ds.num_items)
    for b in ds.behaviors:
        assert not torch.isin(test, pair_keys(ds.train[b],
                                              ds.num_items)).any()
    root = find_data_root('retailrocket')
    listed = {rel: d for rel, (d, _) in read_sha256sums(
        root / 'SHA256SUMS').items()}
    assert listed == PUBLIC_DATASETS['retailrocket'].files


def test_registry():
    assert list_datasets() == ['retailrocket', 'synthetic', 'tmall']
    spec = get_public_dataset('tmall')
    assert spec.release_url == 'https://github.com/SS-00-SS/MBCGCN'
    assert PUBLIC_DATASETS['retailrocket'].release_url == (
        'https://github.com/HKUDS/SSLRec')
    for spec in PUBLIC_DATASETS.values():
        assert set(spec.files) == {'meta.json', 'test/buy.txt',
                                   'train/view.txt', 'train/cart.txt',
                                   'train/buy.txt'}
        assert all(len(d) == 64 for d in spec.files.values())
        assert spec.citation and spec.license_note and spec.derivation
        text = spec.fetch_instructions()
        assert spec.release_url in text
        assert f'$GRAPHREC_DATA/{spec.name}' in text
        assert all(d in text for d in spec.files.values())
    with pytest.raises(ValueError, match=r"unknown public dataset 'x' "
                       r"\(choices: \['retailrocket', 'tmall'\]\)"):
        get_public_dataset('x')
    assert repr(spec).startswith("PublicDataset(name='retailrocket'")


def test_unknown_name_and_file(tmp_path):
    with pytest.raises(ValueError, match=r"unknown dataset 'nope': neither "
                       r"a registered name \(choices: \['retailrocket', "
                       r"'synthetic', 'tmall'\]\)"):
        load_dataset('nope')
    path = tmp_path / 'events.csv'
    path.write_text('user,item,behavior\n')
    with pytest.raises(ValueError, match='is a file, not a dataset folder; '
                       r'an event log needs its behaviors in cascade order'):
        load_dataset(path)


def write_tiny(root, name='tiny'):
    (root / 'train').mkdir(parents=True)
    (root / 'test').mkdir()
    (root / 'meta.json').write_text(json.dumps({
        'name': name, 'num_users': 2, 'num_items': 2,
        'behaviors': ['view', 'buy'], 'target': 'buy'}))
    (root / 'train/view.txt').write_text('0\t0\n1\t1\n')
    (root / 'train/buy.txt').write_text('0\t0\n')
    (root / 'test/buy.txt').write_text('1\t1\n')
    rels = ['meta.json', 'test/buy.txt', 'train/buy.txt', 'train/view.txt']
    (root / 'SHA256SUMS').write_text(''.join(
        f'{hashlib.sha256((root / r).read_bytes()).hexdigest()}  ./{r}\n'
        for r in rels))
    return root


def test_load_folder_path(tmp_path):
    root = write_tiny(tmp_path / 'mine')
    ds = load_dataset(root)
    assert ds.name == 'tiny' and ds.test.tolist() == [[1], [1]]
    assert load_dataset(str(root)).checksum == ds.checksum


def test_registered_name_checks_files_and_counts(tmp_path):
    write_tiny(tmp_path / 'tmall', name='tmall')
    with pytest.raises(DataFormatError, match=r"meta\.json: sha256 mismatch "
                       r"with the registered 'tmall' release: expected "
                       + PUBLIC_DATASETS['tmall'].files['meta.json']):
        load_dataset('tmall', root=tmp_path)
    with pytest.raises(DataFormatError, match=r"'num_users' of dataset "
                       r"'tmall' is 2, expected 15449"):
        load_dataset('tmall', root=tmp_path, verify=False)
    ds = load_dataset(tmp_path / 'tmall')  # as a plain folder: no checks
    assert ds.num_users == 2


def test_check_files(tmp_path):
    root = write_tiny(tmp_path / 'tmall', name='tmall')
    view = hashlib.sha256((root / 'train/view.txt').read_bytes()).hexdigest()
    spec = dataclasses.replace(PUBLIC_DATASETS['tmall'],
                               files={'train/view.txt': view})
    spec.check_files(root)  # by the digest listed in SHA256SUMS
    (root / 'SHA256SUMS').unlink()
    spec.check_files(root)  # by hashing the file
    wrong = dataclasses.replace(spec, files={'train/view.txt': '0' * 64})
    with pytest.raises(DataFormatError, match=r"train/view\.txt: sha256 "
                       f'mismatch .*expected {"0" * 64}, got {view}'):
        wrong.check_files(root)
    missing = dataclasses.replace(spec, files={'train/cart.txt': '0' * 64})
    with pytest.raises(DataFormatError, match=r"train/cart\.txt: file of the "
                       r"registered 'tmall' release is missing"):
        missing.check_files(root)


def test_registered_name_not_found(tmp_path, monkeypatch):
    monkeypatch.setattr(io, 'REPO_ROOT', tmp_path / 'repo')
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    monkeypatch.setenv('GRAPHREC_DATA', str(tmp_path / 'data'))
    with pytest.raises(FileNotFoundError) as info:
        load_dataset('retailrocket')
    message = str(info.value)
    assert str(tmp_path / 'data' / 'retailrocket') in message
    assert 'https://github.com/HKUDS/SSLRec' in message
    assert '$GRAPHREC_DATA/retailrocket' in message
    with pytest.raises(FileNotFoundError, match=r"no folder for dataset "
                       r"'tmall' at .*no meta\.json there"):
        load_dataset('tmall', root=tmp_path)


def test_synthetic_is_loaded_lazily():
    if importlib.util.find_spec('graphrec.datasets.synthetic') is None:
        with pytest.raises(ImportError, match=r"dataset 'synthetic' needs "
                           r"graphrec\.datasets\.synthetic\.make_synthetic"):
            load_dataset('synthetic')
    else:
        assert isinstance(load_dataset('synthetic'), MultiBehaviorDataset)
