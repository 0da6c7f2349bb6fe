import hashlib
import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from graphrec.data import DataFormatError, io
from graphrec.data.io import (
    find_data_root,
    parse_int_table,
    read_event_log,
    read_folder,
)

META = {'name': 'tiny', 'num_users': 3, 'num_items': 4,
        'behaviors': ['view', 'buy'], 'target': 'buy'}
# The `tiny` fixture of tests/conftest.py, written as a folder.
VIEW = '0\t0\n0\t1\n1\t1\n1\t2\n2\t3\n'
BUY = '0\t1\n1\t2\n2\t0\n'
TEST = '0\t2\n1\t0\n2\t3\n'


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_folder(root: Path, meta=None, train=None, test=TEST, sums=True,
                 meta_text=None) -> Path:
    r"""Writes a dataset folder; SHA256SUMS covers the files written."""
    root.mkdir(parents=True, exist_ok=True)
    files = {'meta.json': meta_text if meta_text is not None else
             json.dumps(META if meta is None else meta)}
    train = {'view': VIEW, 'buy': BUY} if train is None else train
    for b, text in train.items():
        files[f'train/{b}.txt'] = text
    if test is not None:
        files['test/buy.txt'] = test
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    if sums:
        (root / 'SHA256SUMS').write_text(''.join(
            f'{sha((root / rel).read_bytes())}  ./{rel}\n'
            for rel in sorted(files)))
    return root


def where(rel: str, line=None) -> str:
    r"""Regex for the 'path:line: ' prefix of a DataFormatError."""
    out = re.escape(rel)
    return out + (f':{line}: ' if line is not None else ': ') + '.*'



# Folders ####################################################################

def test_read_folder_matches_tiny_fixture(tmp_path, tiny):
    root = write_folder(tmp_path / 'tiny')
    ds = read_folder(root)
    assert ds.behaviors == ('view', 'buy')
    assert (ds.num_users, ds.num_items) == (3, 4)
    for b in ds.behaviors:
        assert torch.equal(ds.train[b], tiny.train[b])
        assert ds.timestamps[b] is None
    assert torch.equal(ds.test, tiny.test)
    assert ds.checksum == sha((root / 'SHA256SUMS').read_bytes())
    assert ds.info['source'] == str(root.resolve())
    assert ds.info['duplicates'] == 'drop'
    assert ds.info['duplicates_dropped'] == {'view': 0, 'buy': 0, 'test': 0}
    assert ds.info['verified'] is True
    assert read_folder(root, name='other').name == 'other'


def test_timestamps_column(tmp_path):
    root = write_folder(tmp_path / 'd', train={
        'view': '0\t0\t100\n2\t3\t50\n', 'buy': BUY})
    ds = read_folder(root)
    assert torch.equal(ds.timestamps['view'], torch.tensor([100, 50]))
    assert ds.timestamps['view'].dtype == torch.long
    assert ds.timestamps['buy'] is None


def test_bom_crlf_and_trailing_empty_lines_are_tolerated(tmp_path):
    plain = read_folder(write_folder(tmp_path / 'a'))
    messy = read_folder(write_folder(
        tmp_path / 'b', train={
            'view': b'\xef\xbb\xbf' + VIEW.replace('\n', '\r\n').encode()
            + b'\r\n\n\n',
            'buy': BUY + '\n\n'},
        test=TEST.rstrip('\n')))
    for b in plain.behaviors:
        assert torch.equal(plain.train[b], messy.train[b])
    assert torch.equal(plain.test, messy.test)


def test_checksum_without_sha256sums_equals_canonical_listing(tmp_path):
    root = write_folder(tmp_path / 'd')
    with_sums = read_folder(root).checksum
    (root / 'SHA256SUMS').unlink()
    with pytest.warns(UserWarning, match='no SHA256SUMS file'):
        ds = read_folder(root)
    # The listing written by write_folder is the canonical one (sorted,
    # './'-prefixed), so both ways give the same checksum.
    assert ds.checksum == with_sums
    assert ds.info['verified'] is False
    assert ds.info['checksum_of'] == 'data files'


def test_checksum_mismatch(tmp_path):
    root = write_folder(tmp_path / 'd')
    expected = sha(VIEW.encode())
    changed = VIEW.replace('2\t3', '2\t2').encode()
    (root / 'train/view.txt').write_bytes(changed)
    with pytest.raises(DataFormatError, match=(
            where('train/view.txt') + f'sha256 mismatch: expected {expected}'
            rf' \(SHA256SUMS line 4\), got {sha(changed)}')):
        read_folder(root)
    # Unverified, the changed (still valid) file is read.
    assert read_folder(root, verify=False).train['view'][1, -1] == 2


def test_sha256sums_errors(tmp_path):
    root = write_folder(tmp_path / 'd')
    sums = (root / 'SHA256SUMS').read_text()
    (root / 'SHA256SUMS').write_text(sums + f'{"0" * 64}  ./extra.txt\n')
    with pytest.raises(DataFormatError, match=where('extra.txt') +
                       r"file listed in SHA256SUMS \(line 5\) is missing"):
        read_folder(root)
    (root / 'SHA256SUMS').write_text(sums + 'not a checksum line\n')
    with pytest.raises(DataFormatError, match=where("SHA256SUMS", 5) +
                       'malformed checksum line'):
        read_folder(root)
    (root / 'SHA256SUMS').write_text(f'{"0" * 64}  ../outside.txt\n')
    with pytest.raises(DataFormatError, match=where('SHA256SUMS', 1) +
                       'must be relative'):
        read_folder(root)


def test_file_not_in_sha256sums_warns(tmp_path):
    root = write_folder(tmp_path / 'd')
    lines = (root / 'SHA256SUMS').read_text().splitlines(keepends=True)
    (root / 'SHA256SUMS').write_text(''.join(
        line for line in lines if 'view' not in line))
    with pytest.warns(UserWarning, match=r"\['train/view.txt'\] are not "
                      r"listed"):
        read_folder(root)


@pytest.mark.parametrize('rel, text, line, message', [
    ('train/view.txt', '0\t0\n0\t1\t5\t6\n', 2,
     r"malformed line '0\\t1\\t5\\t6': expected 2 or 3 tab-separated "
     r'columns \(user, item\[, unix_time\]\), got 4'),
    ('train/view.txt', '0\t0\n1\n', 2, 'expected 2 or 3 tab-separated'),
    ('train/view.txt', '0\t0\n1\tx\n', 2, "item 'x' is not an integer"),
    ('train/view.txt', '0\t0\n1\t1.5\n', 2, "item '1.5' is not an integer"),
    ('train/view.txt', '0 0\n', 1, 'got 1'),
    ('train/view.txt', '0\t0\t7\n1\t1\n', 2,
     '2 columns, but line 1 has 3; the time column must be on every line'),
    ('train/view.txt', '0\t0\n1\t1\t7\n', 2, '3 columns, but line 1 has 2'),
    ('train/view.txt', '0\t0\t7\n1\t1\tnoon\n', 2,
     "unix_time 'noon' is not an integer"),
    ('train/view.txt', '0\t0\n\n1\t1\n', 2, 'empty line'),
    ('train/view.txt', '0\t0\n-1\t2\n', 2,
     r'negative user id -1: ids are 0-based, expected >= 0'),
    ('train/view.txt', '0\t-2\n', 1, 'negative item id -2'),
    ('train/view.txt', '0\t0\n1\t1\n3\t0\n', 3,
     r'user id 3 out of range: meta.json num_users=3, so ids must be in '
     r'\[0, 2\]'),
    ('train/buy.txt', '0\t1\n1\t4\n', 2,
     r'item id 4 out of range: meta.json num_items=4'),
    ('train/view.txt', '0\t99999999999999999999\n', 1,
     'does not fit in a 64-bit integer'),
    ('train/view.txt', b'0\t0\n1\t\xff\n', 2, 'not UTF-8 text'),
    ('test/buy.txt', '0\t2\t5\n', 1, r'expected 2 tab-separated columns '
     r'\(user, item\), got 3'),
    ('test/buy.txt', '0\t2\n3\t0\n', 2, 'user id 3 out of range'),
])
def test_malformed_lines(tmp_path, rel, text, line, message):
    train = {'view': VIEW, 'buy': BUY}
    test = TEST
    if rel.startswith('train/'):
        train[rel[6:-4]] = text
    else:
        test = text
    root = write_folder(tmp_path / 'd', train=train, test=test)
    with pytest.raises(DataFormatError, match=where(rel, line) + message) \
            as info:
        read_folder(root)
    assert info.value.line == line
    assert info.value.path.endswith(rel)


@pytest.mark.parametrize('key', ['name', 'num_users', 'num_items',
                                 'behaviors', 'target'])
def test_meta_missing_key(tmp_path, key):
    meta = {k: v for k, v in META.items() if k != key}
    root = write_folder(tmp_path / 'd', meta=meta)
    with pytest.raises(DataFormatError, match=where('meta.json') +
                       f"missing key '{key}'"):
        read_folder(root)


@pytest.mark.parametrize('change, message', [
    ({'num_users': 0}, "key 'num_users' must be a positive integer "
     r'\(got 0\)'),
    ({'num_items': '4'}, "key 'num_items' must be a positive integer"),
    ({'num_users': True}, "key 'num_users' must be a positive integer"),
    ({'behaviors': []}, "key 'behaviors' must be a non-empty list"),
    ({'behaviors': ['view', 'view', 'buy']}, "key 'behaviors' has "
     'duplicates'),
    ({'behaviors': ['a/b', 'buy']}, "key 'behaviors' has 'a/b'"),
    ({'target': 'cart'}, "key 'target' is 'cart', which is not in "
     r"'behaviors' \['view', 'buy'\]"),
    ({'behaviors': ['buy', 'view']}, "key 'target' is 'buy' but "
     r"'behaviors' \['buy', 'view'\] ends with 'view'"),
    ({'name': ''}, "key 'name' must be a non-empty string"),
])
def test_meta_bad_values(tmp_path, change, message):
    root = write_folder(tmp_path / 'd', meta={**META, **change})
    with pytest.raises(DataFormatError, match=where('meta.json') + message):
        read_folder(root)


def test_meta_not_json_or_missing(tmp_path):
    root = write_folder(tmp_path / 'd', meta_text='{\n "name": "tiny",\n}')
    with pytest.raises(DataFormatError, match=where('meta.json', 3) +
                       'invalid JSON'):
        read_folder(root)
    root = write_folder(tmp_path / 'e', meta_text='[1, 2]')
    with pytest.raises(DataFormatError, match='expected a JSON object'):
        read_folder(root)
    (root / 'meta.json').unlink()
    (root / 'SHA256SUMS').unlink()
    with pytest.warns(UserWarning, match='no SHA256SUMS'), \
            pytest.raises(DataFormatError, match=where('meta.json') +
                          'missing meta.json'):
        read_folder(root)


def test_unknown_and_missing_behaviors(tmp_path):
    root = write_folder(tmp_path / 'a', train={'view': VIEW, 'buy': BUY,
                                               'click': VIEW})
    with pytest.raises(DataFormatError, match=where('train/click.txt') +
                       r"unknown behavior 'click': not in meta.json "
                       r"'behaviors' \['view', 'buy'\]"):
        read_folder(root)
    root = write_folder(tmp_path / 'b', train={'buy': BUY})
    with pytest.raises(DataFormatError, match=where('train/view.txt') +
                       "missing train file of behavior 'view'"):
        read_folder(root)


def test_empty_target_and_test(tmp_path):
    root = write_folder(tmp_path / 'a', train={'view': VIEW, 'buy': '\n'})
    with pytest.raises(DataFormatError, match=where('train/buy.txt') +
                       "the target behavior 'buy' has no train "
                       'interactions'):
        read_folder(root)
    root = write_folder(tmp_path / 'b', test=None)
    with pytest.raises(DataFormatError, match=where('test/buy.txt') +
                       "missing test file of the target behavior 'buy'"):
        read_folder(root)
    root = write_folder(tmp_path / 'c', test='')
    with pytest.raises(DataFormatError, match=where('test/buy.txt') +
                       "the test file of 'buy' is empty"):
        read_folder(root)
    # An empty auxiliary behavior is allowed.
    ds = read_folder(write_folder(tmp_path / 'd',
                                  train={'view': '', 'buy': BUY}))
    assert ds.train['view'].shape == (2, 0)


def test_test_pair_in_train_target(tmp_path):
    root = write_folder(tmp_path / 'd', test='0\t2\n1\t2\n')
    with pytest.raises(DataFormatError, match=where('test/buy.txt', 2) +
                       r"'test' has 1 pair\(s\) that are also train 'buy' "
                       r'interactions, e.g. \(user 1, item 2\)'):
        read_folder(root)


def test_duplicates_drop(tmp_path):
    view = '0\t0\n0\t1\n2\t3\n0\t1\n0\t0\n1\t2\n'
    root = write_folder(tmp_path / 'd', train={'view': view, 'buy': BUY},
                        test='0\t2\n0\t2\n')
    with pytest.warns(UserWarning) as record:
        ds = read_folder(root)
    messages = [str(w.message) for w in record]
    assert any('view.txt: dropped 2 duplicate line(s)' in m
               for m in messages)
    assert any('buy.txt: dropped 1 duplicate line(s)' in m for m in messages)
    # First occurrences are kept, in file order.
    assert ds.train['view'].tolist() == [[0, 0, 2, 1], [0, 1, 3, 2]]
    assert ds.test.tolist() == [[0], [2]]
    assert ds.info['duplicates_dropped'] == {'view': 2, 'buy': 0, 'test': 1}


def test_duplicates_error(tmp_path):
    view = '0\t0\n0\t1\n2\t3\n0\t1\n0\t0\n'
    root = write_folder(tmp_path / 'd', train={'view': view, 'buy': BUY})
    with pytest.raises(DataFormatError, match=where('train/view.txt', 4) +
                       r'duplicate interaction \(user 0, item 1\): same '
                       r'user and item as line 2 \(2 duplicate\(s\)'):
        read_folder(root, duplicates='error')
    with pytest.raises(ValueError, match=r"'duplicates' must be one of "
                       r"\('drop', 'error'\) \(got 'keep'\)"):
        read_folder(root, duplicates='keep')


def test_duplicates_with_timestamps_keep_first_time(tmp_path):
    view = '0\t0\t5\n0\t0\t1\n'
    root = write_folder(tmp_path / 'd', train={'view': view, 'buy': BUY})
    with pytest.warns(UserWarning, match='dropped 1 duplicate'):
        ds = read_folder(root)
    assert ds.timestamps['view'].tolist() == [5]


def test_read_folder_not_a_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match='does not exist or is not '
                       'a folder'):
        read_folder(tmp_path / 'missing')


# Fast and line-by-line parsing agree ########################################

@pytest.mark.parametrize('text', [
    VIEW, '0\t0\t1433222501\n7\t3\t1433222502\n', '5\t6', '0\t0\n\n\n',
    '\ufeff1\t2\r\n3\t4\r\n', '0\t 1\n2 \t3\n', '0\t0\t-5\n',
    '000\t0012\n', '',
])
def test_fast_and_line_paths_agree(text):
    data = text.encode()
    fast = parse_int_table(data, 'x.txt')
    slow = parse_int_table(data, 'x.txt', fast=False)
    assert fast.dtype == slow.dtype == np.int64
    assert np.array_equal(fast, slow)


def test_fast_path_is_taken_on_plain_text(monkeypatch):
    def fail(*args):
        raise AssertionError('line-by-line path used')
    monkeypatch.setattr(io, '_parse_lines', fail)
    table = parse_int_table(b'0\t1\t99\n2\t3\t100\n', 'x.txt')
    assert table.tolist() == [[0, 1, 99], [2, 3, 100]]
    # A space falls back to the line-by-line path.
    with pytest.raises(AssertionError, match='line-by-line'):
        parse_int_table(b'0 \t1\n', 'x.txt')


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**12), st.integers(0, 10**6),
                          st.integers(0, 2**40)), min_size=1, max_size=30),
       st.booleans(), st.booleans())
def test_fast_and_line_paths_agree_random(rows, with_time, crlf):
    ncol = 3 if with_time else 2
    end = '\r\n' if crlf else '\n'
    text = ''.join('\t'.join(str(v) for v in row[:ncol]) + end
                   for row in rows)
    expected = np.array([row[:ncol] for row in rows], dtype=np.int64)
    for fast in (True, False):
        assert np.array_equal(
            parse_int_table(text.encode(), 'x.txt', fast=fast), expected)


def test_tmall_view_fast_equals_line_by_line():
    path = io.REPO_ROOT.parent / 'shared/datasets/tmall/train/cart.txt'
    if not path.is_file():
        pytest.skip(f'shared data not found at {path}')
    data = path.read_bytes()[:200_000]
    data = data[:data.rindex(b'\n') + 1]
    assert np.array_equal(parse_int_table(data, path),
                          parse_int_table(data, path, fast=False))


# Event logs #################################################################

def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


EVENTS = (
    'user,item,behavior,ts\n'
    'bob,y,view,1\n'
    'alice,x,buy,9\n'
    'alice,y,buy,1\n'
    'alice,z,buy,5\n'
    'carol,x,cart,2\n'
    'bob,x,buy,3\n'
    'alice,x,view,0\n'
    'carol,z,buy,4\n'
    'carol,y,buy,8\n'
)


def edges(ds, b):
    return {(ds.user_ids[u], ds.item_ids[i])
            for u, i in ds.train[b].t().tolist()}


def test_event_log_string_ids_and_last_target_by_time(tmp_path):
    path = write(tmp_path / 'events.csv', EVENTS)
    ds = read_event_log(path, time_col='ts',
                        behaviors=['view', 'cart', 'buy'])
    assert ds.name == 'events'
    assert ds.behaviors == ('view', 'cart', 'buy')
    assert ds.user_ids == ['alice', 'bob', 'carol']
    assert ds.item_ids == ['x', 'y', 'z']
    assert edges(ds, 'view') == {('bob', 'y'), ('alice', 'x')}
    assert edges(ds, 'cart') == {('carol', 'x')}
    # alice's latest buy is x (t=9), carol's y (t=8); bob has one buy.
    test = {(ds.user_ids[u], ds.item_ids[i]) for u, i in ds.test.t().tolist()}
    assert test == {('alice', 'x'), ('carol', 'y')}
    assert edges(ds, 'buy') == {('alice', 'y'), ('alice', 'z'), ('bob', 'x'),
                                ('carol', 'z')}
    assert ds.timestamps['buy'].tolist() == [1, 5, 3, 4]
    assert ds.info['split'] == {
        'method': 'last target interaction per user',
        'order': "time column 'ts'", 'min_target_interactions': 2,
        'test': 2, 'users_with_one_target': 1,
        'later_removed': {'view': 0, 'cart': 0, 'buy': 0}}


def test_event_log_removes_events_after_the_heldout_purchase(tmp_path):
    later = EVENTS + (
        'alice,x,cart,10\n'   # after her held-out buy of x (t=9): future
        'alice,w,view,12\n'   # future too
        'carol,w,view,8\n'    # the same second as her held-out buy: kept
        'bob,w,view,100\n')   # bob has no held-out buy: kept
    path = write(tmp_path / 'events.csv', later)
    ds = read_event_log(path, time_col='ts',
                        behaviors=['view', 'cart', 'buy'])
    assert edges(ds, 'view') == {('bob', 'y'), ('alice', 'x'),
                                 ('carol', 'w'), ('bob', 'w')}
    assert edges(ds, 'cart') == {('carol', 'x')}
    assert ds.info['split']['later_removed'] == {'view': 1, 'cart': 1,
                                                 'buy': 0}
    # the test pairs and the train purchases are those of the plain log
    plain = read_event_log(write(tmp_path / 'plain.csv', EVENTS),
                           time_col='ts', behaviors=['view', 'cart', 'buy'])
    def test_pairs(d):
        return {(d.user_ids[u], d.item_ids[i]) for u, i in d.test.t().tolist()}

    assert test_pairs(ds) == test_pairs(plain) == {('alice', 'x'),
                                                   ('carol', 'y')}
    assert edges(ds, 'buy') == edges(plain, 'buy')
    kept = read_event_log(path, time_col='ts',
                          behaviors=['view', 'cart', 'buy'], drop_later=False)
    assert ('alice', 'w') in edges(kept, 'view')
    assert edges(kept, 'cart') == {('carol', 'x'), ('alice', 'x')}
    assert 'later_removed' not in kept.info['split']


def test_event_log_last_target_by_file_order(tmp_path):
    path = write(tmp_path / 'events.csv', EVENTS)
    ds = read_event_log(path, behaviors=['view', 'cart', 'buy'])
    test = {(ds.user_ids[u], ds.item_ids[i]) for u, i in ds.test.t().tolist()}
    assert test == {('alice', 'z'), ('carol', 'y')}
    assert ds.info['split']['order'] == 'file order'
    assert all(ds.timestamps[b] is None for b in ds.behaviors)


def test_event_log_ids_independent_of_row_order(tmp_path):
    lines = EVENTS.splitlines(keepends=True)
    a = read_event_log(write(tmp_path / 'a.csv', EVENTS), time_col='ts',
                       behaviors=['view', 'cart', 'buy'])
    b = read_event_log(write(tmp_path / 'b.csv', lines[0] + ''.join(
        reversed(lines[1:]))), time_col='ts',
        behaviors=['view', 'cart', 'buy'])
    assert a.user_ids == b.user_ids and a.item_ids == b.item_ids
    for beh in a.behaviors:
        assert edges(a, beh) == edges(b, beh)


def test_event_log_integer_ids_sort_numerically(tmp_path):
    path = write(tmp_path / 'e.tsv', 'u\ti\tb\n10\t7\tbuy\n9\t7\tbuy\n'
                 '10\t100\tbuy\n007\t1\tbuy\n')
    ds = read_event_log(path, user_col='u', item_col='i', behavior_col='b',
                        behaviors=['buy'])
    # '007' is not a canonical integer, so all user ids stay strings.
    assert ds.user_ids == ['007', '10', '9']
    assert ds.item_ids == [1, 7, 100]
    path = write(tmp_path / 'f.txt', 'u;i;b\n10;7;buy\n9;7;buy\n10;8;buy\n')
    ds = read_event_log(path, user_col='u', item_col='i', behavior_col='b',
                        behaviors=['buy'], sep=';')
    assert ds.user_ids == [9, 10]
    assert ds.test.tolist() == [[1], [1]]  # user 10's last buy, item 8


def test_event_log_missing_column_and_unknown_behavior(tmp_path):
    path = write(tmp_path / 'events.csv', EVENTS)
    with pytest.raises(DataFormatError, match=where('events.csv', 1) +
                       r"missing column 'uid' \(argument 'user_col'\); the "
                       r"header has \['user', 'item', 'behavior', 'ts'\]"):
        read_event_log(path, user_col='uid', behaviors=['view', 'buy'])
    with pytest.raises(DataFormatError, match=r"missing column 'time'.*"
                       "'time_col'"):
        read_event_log(path, time_col='time', behaviors=['view', 'buy'])
    with pytest.raises(DataFormatError, match=where('events.csv', 6) +
                       r"unknown behavior 'cart' in column 'behavior': "
                       r"expected one of \['view', 'buy'\]"):
        read_event_log(path, behaviors=['view', 'buy'])
    ds = read_event_log(path, behaviors=['view', 'buy'],
                        ignore_unknown_behaviors=True)
    assert ds.info['unknown_behavior_rows_skipped'] == 1
    assert ds.behaviors == ('view', 'buy')


def test_event_log_bad_rows(tmp_path):
    with pytest.raises(DataFormatError, match=where('a.csv', 3) +
                       'expected 3 fields as in the header'):
        read_event_log(write(tmp_path / 'a.csv', 'user,item,behavior\n'
                             'a,x,buy\nb,y\n'), behaviors=['buy'])
    with pytest.raises(DataFormatError, match=where('b.csv', 2) +
                       "empty user id in column 'user'"):
        read_event_log(write(tmp_path / 'b.csv', 'user,item,behavior\n'
                             ',x,buy\n'), behaviors=['buy'])
    with pytest.raises(DataFormatError, match=where('c.csv', 2) +
                       "time 'soon' in column 't' is neither a number"):
        read_event_log(write(tmp_path / 'c.csv', 'user,item,behavior,t\n'
                             'a,x,buy,soon\n'), behaviors=['buy'],
                       time_col='t')
    with pytest.raises(DataFormatError, match=where('d.csv', 1) +
                       'empty file; expected a header row'):
        read_event_log(write(tmp_path / 'd.csv', ''), behaviors=['buy'])
    with pytest.raises(DataFormatError, match=where('e.csv') +
                       "the target behavior 'buy' has no train"):
        read_event_log(write(tmp_path / 'e.csv', 'user,item,behavior\n'
                             'a,x,view\n'), behaviors=['view', 'buy'])


def test_event_log_times_iso_and_float(tmp_path):
    path = write(tmp_path / 'e.csv', 'user,item,behavior,t\n'
                 'a,x,buy,1970-01-01T00:00:10\n'
                 'a,y,buy,1970-01-01T00:00:20Z\n'
                 'a,z,buy,15.5\n')
    ds = read_event_log(path, behaviors=['buy'], time_col='t')
    assert ds.timestamps['buy'].dtype == torch.float64
    assert ds.timestamps['buy'].tolist() == [10.0, 15.5]
    assert ds.item_ids[int(ds.test[1, 0])] == 'y'


def test_event_log_duplicates(tmp_path):
    path = write(tmp_path / 'e.csv', 'user,item,behavior\n'
                 'a,x,view\na,x,buy\na,x,view\na,y,buy\n')
    with pytest.warns(UserWarning, match=r'e.csv: dropped 1 duplicate'):
        ds = read_event_log(path, behaviors=['view', 'buy'])
    assert ds.info['duplicates_dropped'] == {'view': 1, 'buy': 0}
    with pytest.raises(DataFormatError, match=where('e.csv', 4) +
                       r"duplicate interaction \(user 'a', item 'x'\): same "
                       'user and item as line 2'):
        read_event_log(path, behaviors=['view', 'buy'], duplicates='error')


def test_event_log_with_test_file(tmp_path):
    path = write(tmp_path / 'e.csv', 'user,item,behavior\n'
                 'a,x,view\na,x,buy\nb,y,buy\n')
    test = write(tmp_path / 't.csv', 'user,item\nb,x\nc,z\n')
    ds = read_event_log(path, behaviors=['view', 'buy'], test=test)
    # Test-only ids get indices too, in the same sorted order.
    assert ds.user_ids == ['a', 'b', 'c'] and ds.item_ids == ['x', 'y', 'z']
    assert ds.test.tolist() == [[1, 2], [0, 2]]
    assert ds.info['split']['method'] == 'test file'
    bad = write(tmp_path / 'bad.csv', 'user,item\nc,z\nb,y\n')
    with pytest.raises(DataFormatError, match=where('bad.csv', 3) +
                       r"'test' has 1 pair\(s\) that are also train 'buy'"):
        read_event_log(path, behaviors=['view', 'buy'], test=bad)
    wrong = write(tmp_path / 'w.csv', 'user,item,behavior\nc,z,view\n')
    with pytest.raises(DataFormatError, match=where('w.csv', 2) +
                       "behavior 'view' in a test file"):
        read_event_log(path, behaviors=['view', 'buy'], test=wrong)


def test_event_log_arguments(tmp_path):
    path = write(tmp_path / 'e.csv', EVENTS)
    with pytest.raises(ValueError, match="'behaviors' is required"):
        read_event_log(path)
    with pytest.raises(ValueError, match="'behaviors' must be a sequence"):
        read_event_log(path, behaviors='buy')
    with pytest.raises(ValueError, match="'behaviors' must be non-empty "
                       'without duplicates'):
        read_event_log(path, behaviors=['buy', 'buy'])
    with pytest.raises(ValueError, match="'duplicates' must be one of"):
        read_event_log(path, behaviors=['buy'], duplicates='sum')
    other = write(tmp_path / 'e.log', EVENTS)
    with pytest.raises(ValueError, match=r"cannot tell the separator.*"
                       r"'\.log': pass sep=','"):
        read_event_log(other, behaviors=['buy'])
    with pytest.raises(FileNotFoundError, match='does not exist'):
        read_event_log(tmp_path / 'none.csv', behaviors=['buy'])


@pytest.mark.skipif(importlib.util.find_spec('pandas') is not None,
                    reason='pandas is installed')
def test_parquet_without_pandas(tmp_path):
    path = tmp_path / 'e.parquet'
    path.write_bytes(b'PAR1')
    with pytest.raises(ImportError, match='needs pandas with pyarrow'):
        read_event_log(path, behaviors=['buy'])


# Where data lives ###########################################################

def test_find_data_root_order(tmp_path, monkeypatch):
    env = tmp_path / 'env'
    repo = tmp_path / 'work' / 'repo'
    shared = tmp_path / 'work' / 'shared' / 'datasets'
    home = tmp_path / 'home'
    cache = home / '.cache' / 'graphrec'
    for base in (env, shared, cache):
        (base / 'tiny').mkdir(parents=True)
        (base / 'tiny' / 'meta.json').write_text('{}')
    monkeypatch.setattr(io, 'REPO_ROOT', repo)
    monkeypatch.setenv('HOME', str(home))
    monkeypatch.setenv('GRAPHREC_DATA', str(env))
    assert find_data_root('tiny') == env / 'tiny'
    # A folder without meta.json is passed over.
    (env / 'tiny' / 'meta.json').unlink()
    assert find_data_root('tiny') == shared / 'tiny'
    monkeypatch.delenv('GRAPHREC_DATA')
    assert find_data_root('tiny') == shared / 'tiny'
    (shared / 'tiny' / 'meta.json').unlink()
    assert find_data_root('tiny') == cache / 'tiny'
    (cache / 'tiny' / 'meta.json').unlink()
    with pytest.raises(FileNotFoundError) as info:
        find_data_root('tiny', instructions='Get it from X.')
    message = str(info.value)
    assert 'GRAPHREC_DATA is not set' in message
    assert f'{shared / "tiny"} (exists but has no meta.json)' in message
    assert f'{cache / "tiny"} (exists but has no meta.json)' in message
    assert message.endswith('Get it from X.')
    monkeypatch.setenv('GRAPHREC_DATA', str(env))
    with pytest.raises(FileNotFoundError, match='fetch_instructions'):
        find_data_root('other')
    with pytest.raises(ValueError, match="'name' must be a plain dataset "
                       "name without path separators"):
        find_data_root('../tiny')
