r"""Fuzzed loaders: malformed dataset folders and event logs either load a
valid dataset or raise :class:`DataFormatError` naming the file (and the
line, where one line is at fault), never another exception.

Each ``@given`` test runs :data:`MAX_EXAMPLES` = 150 generated cases (4 tests,
600 cases per CI run); hypothesis draws new cases every run and replays
failures from its local database.
"""
import json
import re
import tempfile
import warnings
from pathlib import Path

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graphrec.data import DataFormatError, MultiBehaviorDataset
from graphrec.data.io import read_event_log, read_folder, sha256_bytes

MAX_EXAMPLES = 150
FUZZ = settings(max_examples=MAX_EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow,
                                       HealthCheck.data_too_large])

META = {'name': 'tiny', 'num_users': 3, 'num_items': 4,
        'behaviors': ['view', 'buy'], 'target': 'buy'}
FILES = {
    'meta.json': json.dumps(META).encode(),
    'train/view.txt': b'0\t0\n0\t1\n1\t1\n1\t2\n2\t3\n',
    'train/buy.txt': b'0\t1\n1\t2\n2\t0\n',
    'test/buy.txt': b'0\t2\n1\t0\n2\t3\n',
}
BOM = b'\xef\xbb\xbf'


def check_loaded(ds):
    r"""A loaded dataset is a valid one."""
    assert isinstance(ds, MultiBehaviorDataset)
    ds.validate()
    for b in ds.behaviors:
        edges = ds.train[b]
        assert edges.dtype == torch.long and edges.size(0) == 2


def check_located(error: DataFormatError, *files: Path):
    r"""The error names one of :obj:`files` (or a file inside one of them,
    a folder) and, when it gives a line, the message shows ``path:line``.
    """
    assert error.path is not None, str(error)
    path = Path(error.path)
    assert any(path == f or f in path.parents for f in files), (path, files)
    message = str(error)
    if error.line is None:
        assert message.startswith(f'{error.path}: '), message
    else:
        assert isinstance(error.line, int) and error.line >= 1
        assert message.startswith(f'{error.path}:{error.line}: '), message


def load_or_locate(load, *files: Path):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        try:
            ds = load()
        except DataFormatError as e:
            check_located(e, *files)
            return e
    check_loaded(ds)
    return ds


# Building blocks ############################################################

huge = st.integers(2**62, 10**40).map(str)
digits = st.text('0123456789', min_size=4300, max_size=4400)
field = st.one_of(
    st.integers(0, 5).map(str),
    st.integers(-3, 10**6).map(str),
    huge,
    st.just('-0'),
    st.sampled_from(['', ' ', 'nan', 'inf', '1e400', '1.5', '0x10', '١٢',
                     '"', '""', '\u00a0', '\x00', 'NULL']),
    st.text(max_size=6),
)
sep = st.sampled_from(['\t', ',', ' ', ';', '\t\t', ' \t', '|'])
eol = st.sampled_from(['\n', '\r\n', '\r', '\n\n'])
bad_bytes = st.sampled_from([b'\xff', b'\xc3', b'\xc3\x28', b'\xed\xa0\x80',
                             b'\x00', BOM, b'\x80\x80', b'\xfe\xff'])


@st.composite
def table(draw, columns=None, max_rows=6):
    r"""Bytes of a table of random fields, separators and line ends."""
    ncol = columns if columns is not None else draw(st.integers(1, 4))
    rows = draw(st.lists(st.lists(field, min_size=max(ncol - 1, 0),
                                  max_size=ncol + 1), max_size=max_rows))
    s, e = draw(sep), draw(eol)
    text = ''.join(s.join(r) + e for r in rows)
    data = text.encode('utf-8', errors='surrogatepass')
    return (BOM if draw(st.booleans()) else b'') + data


@st.composite
def corrupt(draw, data: bytes) -> bytes:
    r"""Applies one byte-level corruption to :obj:`data`."""
    op = draw(st.sampled_from(['insert', 'truncate', 'flip', 'keep']))
    at = draw(st.integers(0, len(data)))
    if op == 'insert':
        return data[:at] + draw(bad_bytes) + data[at:]
    if op == 'truncate':
        return data[:at]
    if op == 'flip' and data:
        at = min(at, len(data) - 1)
        bit = 1 << draw(st.integers(0, 7))
        return data[:at] + bytes([data[at] ^ bit]) + data[at + 1:]
    return data


json_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10, 10), huge.map(int),
              st.floats(allow_nan=False), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=4), inner,
                                            max_size=3)),
    max_leaves=6)


@st.composite
def meta_bytes(draw) -> bytes:
    meta = dict(META)
    for _ in range(draw(st.integers(0, 2))):
        key = draw(st.sampled_from(sorted(META) + ['extra']))
        action = draw(st.sampled_from(['set', 'delete', 'size', 'names']))
        if action == 'delete':
            meta.pop(key, None)
        elif action == 'size':
            meta[draw(st.sampled_from(['num_users', 'num_items']))] = draw(
                st.one_of(st.integers(-1, 3), huge.map(int),
                          st.integers(2**31, 2**40), st.just(True),
                          st.just(3.0)))
        elif action == 'names':
            meta[draw(st.sampled_from(['behaviors', 'target']))] = draw(
                st.one_of(st.lists(st.sampled_from(
                    ['view', 'buy', 'cart', '', '../x', 'a/b', 'buy']),
                    max_size=3), st.sampled_from(['buy', 'view', 'x'])))
        else:
            meta[key] = draw(json_value)
    text = json.dumps(meta)
    if draw(st.integers(0, 9)) == 0:  # a huge int literal or deep nesting
        text = draw(st.sampled_from([
            text[:-1] + ', "x": ' + '9' * 5000 + '}',
            '[' * 5000 + ']' * 5000,
        ]))
    return text.encode()


def write_files(root: Path, files):
    for rel, data in files.items():
        if data is None:
            continue
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


# Folders ####################################################################

@st.composite
def folder(draw):
    r"""The tiny folder with 1-3 files replaced, corrupted or deleted, and a
    ``SHA256SUMS`` that is recomputed, stale, missing or malformed.
    """
    files = dict(FILES)
    for _ in range(draw(st.integers(1, 3))):
        rel = draw(st.sampled_from(sorted(FILES) + ['train/cart.txt']))
        how = draw(st.sampled_from(['table', 'corrupt', 'delete', 'empty',
                                    'random', 'meta']))
        if how == 'table':
            files[rel] = draw(table())
        elif how == 'corrupt' and files.get(rel) is not None:
            files[rel] = draw(corrupt(files[rel]))
        elif how == 'delete':
            files[rel] = None
        elif how == 'empty':
            files[rel] = b''
        elif how == 'random':
            files[rel] = draw(st.binary(max_size=64))
        elif how == 'meta':
            files['meta.json'] = draw(meta_bytes())
    sums = draw(st.sampled_from(['fresh', 'stale', 'none', 'bad']))
    listed = {rel: data for rel, data in files.items() if data is not None}
    if sums == 'stale':
        listed = FILES
    if sums in ('fresh', 'stale'):
        files['SHA256SUMS'] = ''.join(
            f'{sha256_bytes(data)}  ./{rel}\n'
            for rel, data in sorted(listed.items())).encode()
    elif sums == 'bad':
        name = draw(st.sampled_from(['../meta.json', '/etc/passwd', 'a\x00b',
                                     'x' * 300 + '/y', 'train', '.', '',
                                     'meta.json']))
        line = draw(st.sampled_from([
            f'{"0" * 64}  ./{name}\n', f'{"g" * 64}  {name}\n',
            f'{name}\n', f'{"a" * 64} *{name}\n']))
        files['SHA256SUMS'] = draw(corrupt(line.encode(
            'utf-8', errors='surrogatepass')))
    return files


@FUZZ
@given(files=folder(), verify=st.booleans(),
       duplicates=st.sampled_from(['drop', 'error']))
def test_fuzzed_folders_load_or_raise_located(files, verify, duplicates):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / 'tiny'
        root.mkdir()
        write_files(root, files)
        load_or_locate(lambda: read_folder(root, duplicates=duplicates,
                                           verify=verify), root)


LINES = [f'{u}\t{i}' for u in range(3) for i in range(4)]


@st.composite
def one_bad_line(draw):
    r"""A valid train file of the target with one bad line at index k."""
    good = draw(st.lists(st.sampled_from(LINES), min_size=1, max_size=8,
                         unique=True))
    k = draw(st.integers(0, len(good)))
    bad = draw(st.one_of(
        st.sampled_from(['0\tx', 'a\t1', '0\t1\t2\t3', '0', '0 1', '0,1',
                         '-1\t0', '3\t0', '0\t4', '0\t1.0', '0\t' + '9' * 30,
                         '0\t' + '9' * 5000]
                        + ([''] if k < len(good) else [])),
        # Not an integer even after stripping white space.
        st.text(st.characters(blacklist_characters='\t\n\r'), min_size=1,
                max_size=4).filter(lambda t: re.fullmatch(
                    '[0-9]+', t.strip()) is None).map(lambda t: '0\t' + t),
    ))
    data = '\n'.join(good[:k] + [bad] + good[k:]).encode(
        'utf-8', errors='surrogatepass') + b'\n'
    if draw(st.booleans()):  # invalid UTF-8 in the bad line instead
        data = '\n'.join(good[:k] + ['0\t1'] + good[k:]).encode() + b'\n'
        at = sum(len(g) + 1 for g in good[:k]) + 1
        data = data[:at] + draw(bad_bytes.filter(lambda b: b != BOM)) + \
            data[at:]
    return data, k + 1


@FUZZ
@given(case=one_bad_line(), crlf=st.booleans(), bom=st.booleans())
def test_fuzzed_bad_line_is_named(case, crlf, bom):
    data, line = case
    if crlf:
        data = data.replace(b'\n', b'\r\n')
    if bom:
        data = BOM + data
    files = dict(FILES)
    files['train/buy.txt'] = data
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / 'tiny'
        root.mkdir()
        write_files(root, files)
        error = load_or_locate(lambda: read_folder(root), root)
        assert isinstance(error, DataFormatError), 'the bad line was read'
        assert Path(error.path) == root / 'train' / 'buy.txt'
        assert error.line == line, str(error)


# Event logs #################################################################

COLUMNS = ['user', 'item', 'behavior', 'ts']
weird = st.one_of(
    field, digits,
    st.sampled_from(['1970-01-01T00:00:10', '2020-02-30',
                     '9999-12-31T23:59:59-23:59', '0001-01-01T00:00:00+14:00',
                     '1' + '0' * 30, '1e300', '-1e300', '12.5Z', 'a,b',
                     '"q""uote"', 'x\ny']))
# Mostly plausible values, so that cases get past the header and reach the
# rows; one in five is anything.
by_column = {
    'user': st.sampled_from(['a', 'b', 'c', '1', '2', '10', '007']),
    'item': st.sampled_from(['x', 'y', 'z', '1', '2', '3']),
    'behavior': st.sampled_from(['view', 'cart', 'buy', 'buy', 'buy']),
    'ts': st.one_of(st.integers(0, 99).map(str),
                    st.floats(0, 1e3).map(str)),
}


@st.composite
def event_log(draw, columns=COLUMNS):
    r"""Bytes of an event log: a header (maybe with missing, duplicate or
    unknown columns) and rows of random fields, separators and line ends.
    """
    if draw(st.integers(0, 3)):
        header = draw(st.permutations(columns))
        if not draw(st.integers(0, 4)):
            header = header + [draw(st.sampled_from(header + ['x', '']))]
    else:
        header = draw(st.lists(st.sampled_from(
            columns + ['x', '', 'user ', '"user"']), min_size=1, max_size=6))
    rows = []
    for _ in range(draw(st.integers(0, 10))):
        row = [draw(st.one_of(by_column.get(c, field), weird)
                    if not draw(st.integers(0, 4)) else
                    by_column.get(c, field)) for c in header]
        if not draw(st.integers(0, 19)):
            row = row[:-1] if draw(st.booleans()) else row + ['extra']
        rows.append(row)
    s = draw(st.sampled_from([',', '\t']))
    row_sep = s if draw(st.integers(0, 9)) else draw(st.sampled_from(
        [',', '\t', ' ', ';']))
    e = draw(eol)
    text = s.join(header) + e + ''.join(row_sep.join(r) + e for r in rows)
    data = text.encode('utf-8', errors='surrogatepass')
    if draw(st.booleans()):
        data = BOM + data
    return draw(corrupt(data)) if not draw(st.integers(0, 3)) else data


@FUZZ
@given(data=event_log(), suffix=st.sampled_from(['.csv', '.tsv']),
       explicit_sep=st.booleans(), time_col=st.sampled_from([None, 'ts']),
       behaviors=st.sampled_from([['view', 'buy'], ['buy'],
                                  ['view', 'cart', 'buy']]),
       duplicates=st.sampled_from(['drop', 'error']),
       ignore_unknown=st.booleans())
def test_fuzzed_event_logs_load_or_raise_located(
        data, suffix, explicit_sep, time_col, behaviors, duplicates,
        ignore_unknown):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f'events{suffix}'
        path.write_bytes(data)
        sep = None
        if explicit_sep:
            sep = ',' if suffix == '.csv' else '\t'
        load_or_locate(lambda: read_event_log(
            path, time_col=time_col, behaviors=behaviors, sep=sep,
            duplicates=duplicates,
            ignore_unknown_behaviors=ignore_unknown), path)


@FUZZ
@given(log=st.sampled_from([b'user,item,behavior\na,x,view\na,x,buy\n'
                            b'b,y,buy\na,y,buy\n']),
       test=st.one_of(event_log(columns=['user', 'item', 'behavior']),
                      st.binary(max_size=64)))
def test_fuzzed_event_log_test_files(log, test):
    with tempfile.TemporaryDirectory() as tmp:
        path, test_path = Path(tmp) / 'e.csv', Path(tmp) / 't.csv'
        path.write_bytes(log)
        test_path.write_bytes(test)
        load_or_locate(lambda: read_event_log(
            path, behaviors=['view', 'buy'], test=test_path), test_path)
