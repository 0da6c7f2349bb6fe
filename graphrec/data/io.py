r"""Readers for multi-behavior data on disk: dataset folders and event logs.

Two formats are read into a :class:`~graphrec.data.MultiBehaviorDataset`:

* a dataset folder (:func:`read_folder`), the layout of
  ``../shared/datasets``::

    <name>/meta.json             {"name", "num_users", "num_items",
                                  "behaviors": [...], "target"}
    <name>/train/<behavior>.txt  user<TAB>item[<TAB>unix_time], 0-based ids
    <name>/test/<target>.txt     user<TAB>item
    <name>/SHA256SUMS            <sha256>  ./relative/path

* an event log (:func:`read_event_log`): a CSV, TSV or Parquet table with a
  header row and one interaction a row, ids of any kind.

Every problem with the data raises :class:`~graphrec.data.DataFormatError`
naming the file and, where one is at fault, the 1-based line.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import (
    Callable,
    Dict,
    Iterable,
    List,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import numpy as np
import torch

from graphrec.data.dataset import DataFormatError, MultiBehaviorDataset

PathLike = Union[str, os.PathLike]

#: Policies for repeated (user, item) pairs within one behavior.
DUPLICATE_POLICIES = ('drop', 'error')

#: The checkout's root (the parent of the ``graphrec`` package folder);
#: ``<REPO_ROOT>/../shared/datasets`` is one place :func:`find_data_root`
#: looks in.
REPO_ROOT = Path(__file__).resolve().parents[2]

_BOM = b'\xef\xbb\xbf'
_INT = re.compile(r'-?[0-9]+')
_SHA_LINE = re.compile(r'([0-9a-fA-F]{64}) [ *](.+)')
_NAME = re.compile(r'[A-Za-z0-9_][A-Za-z0-9_.+-]*')
_INT64_MAX = 2**63 - 1
# At most 18 digits can never overflow int64, so the fast path needs no
# overflow check; longer fields go the line-by-line way.
_FAST_MAX_DIGITS = 18
_TRAIN_COLUMNS = ('user', 'item', 'unix_time')
_META_KEYS = ('name', 'num_users', 'num_items', 'behaviors', 'target')


# Checksums ##################################################################

def sha256_bytes(data: bytes) -> str:
    r"""Returns the hex sha256 digest of :obj:`data`."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: PathLike) -> str:
    r"""Returns the hex sha256 digest of the file at :obj:`path`."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def read_sha256sums(path: PathLike) -> Dict[str, Tuple[str, int]]:
    r"""Reads a ``SHA256SUMS`` file (the output of ``sha256sum``).

    Args:
        path (str or Path): The ``SHA256SUMS`` file.

    Returns:
        Dict[str, Tuple[str, int]]: For each listed relative path (without a
        leading ``./``), its lower-case digest and the 1-based line it is
        listed on.
    """
    path = Path(path)
    text = _strip_bom(path.read_bytes()).decode('utf-8', errors='replace')
    out: Dict[str, Tuple[str, int]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        match = _SHA_LINE.fullmatch(line.rstrip())
        if match is None:
            raise DataFormatError(
                f"malformed checksum line {line!r}: expected "
                f"'<64 hex digits>  ./relative/path'", path, number)
        rel = _relative_path(match.group(2))
        if rel is None:
            raise DataFormatError(
                f"checksum path {match.group(2)!r} must be relative and stay "
                f"inside the dataset folder", path, number)
        out[rel] = (match.group(1).lower(), number)
    return out


def _is_file(path: Path) -> bool:
    # A name too long for the file system is a file that is not there.
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _relative_path(listed: str) -> Optional[str]:
    parts = [p for p in listed.strip().replace('\\', '/').split('/')
             if p not in ('', '.')]
    if not parts or '..' in parts or listed.strip().startswith('/') \
            or '\x00' in listed:
        return None
    return '/'.join(parts)


# Integer tables #############################################################

def _clip(text: str, limit: int = 60) -> str:
    r"""The repr of :obj:`text`, cut short for error messages."""
    shown = repr(text)
    if len(shown) <= limit:
        return shown
    return f'{shown[:limit]}... ({len(text)} characters)'


def _fits_int64(text: str) -> bool:
    r"""Whether the decimal integer :obj:`text` fits in int64.

    The length is checked before :func:`int`, which refuses to convert more
    than 4300 digits.
    """
    digits = text.lstrip('+-').lstrip('0')
    return len(digits) <= 19 and abs(int(text)) <= _INT64_MAX


def _strip_bom(data: bytes) -> bytes:
    return data[len(_BOM):] if data.startswith(_BOM) else data


def _normalize(data: bytes) -> bytes:
    # BOM and CRLF are tolerated; empty lines are only allowed at the end.
    data = _strip_bom(data)
    if b'\r' in data:
        data = data.replace(b'\r\n', b'\n')
    return data.rstrip(b'\n')


def _parse_fast(data: bytes, ncols: Sequence[int]) -> Optional[np.ndarray]:
    r"""Parses a plain table of digits, tabs and newlines in one go.

    :obj:`data` is normalised and non-empty. Returns :obj:`None` for anything
    else, which then goes to :func:`_parse_lines` to be parsed or located.
    """
    buf = np.frombuffer(data + b'\n', dtype=np.uint8)
    is_nl = buf == 10
    is_sep = is_nl | (buf == 9)
    if not bool((is_sep | ((buf >= 48) & (buf <= 57))).all()):
        return None
    seps = np.flatnonzero(is_sep)
    ends = is_nl[seps]
    ncol = int(np.argmax(ends)) + 1
    if ncol not in ncols or seps.size % ncol != 0:
        return None
    ends = ends.reshape(-1, ncol)
    # Every line must be exactly ncol - 1 tabs and one newline.
    if not bool(ends[:, -1].all()) or bool(ends[:, :-1].any()):
        return None
    lengths = np.diff(seps, prepend=-1) - 1
    if int(lengths.min()) < 1 or int(lengths.max()) > _FAST_MAX_DIGITS:
        return None
    values = np.fromstring(data, dtype=np.int64, sep=' ')
    if values.size != seps.size:
        return None
    return values.reshape(-1, ncol)


def _parse_lines(data: bytes, path: Path, ncols: Sequence[int],
                 names: Sequence[str]) -> np.ndarray:
    r"""Parses line by line; the reference for :func:`_parse_fast`.

    Returns the table or raises a :class:`DataFormatError` at the first bad
    line.
    """
    expected = ' or '.join(str(n) for n in ncols)
    what = ', '.join(names[:min(ncols)])
    if max(ncols) > min(ncols):
        what += '[, ' + ', '.join(names[min(ncols):max(ncols)]) + ']'
    rows: List[List[int]] = []
    ncol = None
    for number, raw in enumerate(data.split(b'\n'), start=1):
        try:
            line = raw.decode('utf-8')
        except UnicodeDecodeError as e:
            raise DataFormatError(f'not UTF-8 text ({e.reason} at byte '
                                  f'{e.start} of the line)', path,
                                  number) from None
        if not line.strip():
            raise DataFormatError('empty line; empty lines are only allowed '
                                  'at the end of the file', path, number)
        fields = line.split('\t')
        if len(fields) not in ncols:
            raise DataFormatError(
                f'malformed line {_clip(line)}: expected {expected} '
                f'tab-separated columns ({what}), got {len(fields)}', path,
                number)
        if ncol is None:
            ncol = len(fields)
        elif len(fields) != ncol:
            raise DataFormatError(
                f'malformed line {_clip(line)}: {len(fields)} columns, but '
                f'line 1 has {ncol}; the time column must be on every line '
                f'or on none', path, number)
        row = []
        for name, field in zip(names, fields):
            text = field.strip()
            if _INT.fullmatch(text) is None:
                raise DataFormatError(f'malformed line {_clip(line)}: '
                                      f'{name} {_clip(text)} is not an '
                                      f'integer', path, number)
            if not _fits_int64(text):
                raise DataFormatError(f'{name} {_clip(text)} does not fit '
                                      f'in a 64-bit integer', path, number)
            value = int(text)
            if value < 0 and name != 'unix_time':
                raise DataFormatError(f'negative {name} id {value}: ids are '
                                      f'0-based, expected >= 0', path,
                                      number)
            row.append(value)
        rows.append(row)
    return np.array(rows, dtype=np.int64).reshape(-1, ncol)


def parse_int_table(data: bytes, path: PathLike,
                    ncols: Sequence[int] = (2, 3),
                    names: Sequence[str] = _TRAIN_COLUMNS,
                    fast: bool = True) -> np.ndarray:
    r"""Parses tab-separated non-negative integer columns.

    The vectorised path reads the whole text at once; only when it rejects
    the text is it scanned line by line, which either parses it the same
    way (e.g. a negative time, spaces around a field) or raises at the first
    bad line.

    Args:
        data (bytes): The file contents. A BOM, CRLF line ends and empty
            lines at the end are tolerated.
        path (str or Path): The file, named in errors.
        ncols (Sequence[int]): Allowed column counts; all lines must have
            the same one. (default: :obj:`(2, 3)`)
        names (Sequence[str]): Column names for messages; columns other than
            ``'unix_time'`` must be non-negative. (default:
            :obj:`('user', 'item', 'unix_time')`)
        fast (bool): Try the vectorised path first. (default: :obj:`True`)

    Returns:
        np.ndarray: An int64 array :obj:`[N, C]`, row :obj:`k` from line
        :obj:`k + 1`; :obj:`[0, min(ncols)]` for an empty file.
    """
    path = Path(path)
    data = _normalize(data)
    if not data:
        return np.zeros((0, min(ncols)), dtype=np.int64)
    table = _parse_fast(data, ncols) if fast else None
    if table is None:
        table = _parse_lines(data, path, ncols, names)
    return table


# Shared checks ##############################################################

def _check_policy(duplicates: str) -> None:
    if duplicates not in DUPLICATE_POLICIES:
        raise ValueError(f"'duplicates' must be one of {DUPLICATE_POLICIES} "
                         f"(got {duplicates!r})")


def _dedup(keys: np.ndarray, lines: np.ndarray, path: Path, policy: str,
           describe: Callable[[int], str]) -> Tuple[Optional[np.ndarray],
                                                    int]:
    r"""Finds repeated keys and applies :obj:`policy` to them.

    Returns (mask of rows to keep or :obj:`None`, number dropped), or raises
    naming both lines.
    """
    _, first = np.unique(keys, return_index=True)
    dropped = int(keys.size - first.size)
    if dropped == 0:
        return None, 0
    keep = np.zeros(keys.size, dtype=bool)
    keep[first] = True
    if policy == 'error':
        row = int(np.flatnonzero(~keep)[0])
        earlier = int(np.flatnonzero(keys == keys[row])[0])
        raise DataFormatError(
            f'duplicate interaction {describe(row)}: same user and item as '
            f'line {int(lines[earlier])} ({dropped} duplicate(s) in the '
            f"file; duplicates='drop' keeps the first occurrence)", path,
            int(lines[row]))
    warnings.warn(f"{path}: dropped {dropped} duplicate line(s) (same user "
                  f"and item); the first occurrence of each is kept",
                  stacklevel=3)
    return keep, dropped


def _check_range(values: np.ndarray, size: int, what: str, path: Path,
                 lines: np.ndarray, source: str) -> None:
    bad = np.flatnonzero(values >= size)
    if bad.size:
        k = int(bad[0])
        raise DataFormatError(
            f'{what} id {int(values[k])} out of range: {source} num_{what}s='
            f'{size}, so ids must be in [0, {size - 1}]', path,
            int(lines[k]))


def _build(path: Path, test_path: Path, test_lines: np.ndarray,
           **fields) -> MultiBehaviorDataset:
    r"""Constructs the dataset, locating :meth:`validate` errors.

    A :class:`ValueError` becomes a :class:`DataFormatError`, located in the
    test file (and line) where it concerns the test pairs.
    """
    try:
        return MultiBehaviorDataset(**fields)
    except DataFormatError:
        raise
    except ValueError as e:
        message = str(e)
        if "'test'" not in message:
            raise DataFormatError(message, path) from e
        n = fields['num_items']
        target = fields['behaviors'][-1]
        train = fields['train'][target]
        test = fields['test']
        clash = torch.isin(test[0] * n + test[1], train[0] * n + train[1])
        line = None
        if bool(clash.any()):
            line = int(test_lines[int(clash.nonzero()[0, 0])])
        raise DataFormatError(message, test_path, line) from e


def _edge_index(table: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(table[:, :2].T)).long()


# Folders ####################################################################

def _read_meta(path: Path, data: bytes) -> dict:
    try:
        meta = json.loads(_strip_bom(data).decode('utf-8'))
    except UnicodeDecodeError as e:
        raise DataFormatError(f'not UTF-8 text ({e.reason})', path) from None
    except json.JSONDecodeError as e:
        raise DataFormatError(f'invalid JSON: {e.msg} (column {e.colno})',
                              path, e.lineno) from None
    except (ValueError, RecursionError) as e:
        # An integer literal too long to convert, or nesting too deep.
        raise DataFormatError(f'invalid JSON: {e}', path) from None
    if not isinstance(meta, dict):
        raise DataFormatError(f'expected a JSON object with keys '
                              f'{list(_META_KEYS)} (got a '
                              f'{type(meta).__name__})', path)
    for key in _META_KEYS:
        if key not in meta:
            raise DataFormatError(f"missing key '{key}' (expected keys "
                                  f"{list(_META_KEYS)}, found "
                                  f"{list(meta)})", path)
    if not isinstance(meta['name'], str) or not meta['name']:
        raise DataFormatError(f"key 'name' must be a non-empty string "
                              f"(got {meta['name']!r})", path)
    for key in ('num_users', 'num_items'):
        value = meta[key]
        if isinstance(value, bool) or not isinstance(value, int) \
                or value <= 0:
            raise DataFormatError(f"key '{key}' must be a positive integer "
                                  f"(got {value!r})", path)
    if meta['num_users'] * meta['num_items'] > _INT64_MAX + 1:
        raise DataFormatError(
            f"num_users * num_items must be at most 2**63, since a (user, "
            f"item) pair is encoded as one int64 (got {meta['num_users']} * "
            f"{meta['num_items']})", path)
    behaviors = meta['behaviors']
    if not isinstance(behaviors, list) or not behaviors:
        raise DataFormatError(f"key 'behaviors' must be a non-empty list of "
                              f"names, target last (got {behaviors!r})",
                              path)
    for b in behaviors:
        if not isinstance(b, str) or _NAME.fullmatch(b) is None:
            raise DataFormatError(
                f"key 'behaviors' has {b!r}, expected plain names usable as "
                f"file names (letters, digits, '_', '-', '.')", path)
    if len(set(behaviors)) != len(behaviors):
        raise DataFormatError(f"key 'behaviors' has duplicates (got "
                              f"{behaviors})", path)
    target = meta['target']
    if target not in behaviors:
        raise DataFormatError(f"key 'target' is {target!r}, which is not in "
                              f"'behaviors' {behaviors}", path)
    if behaviors[-1] != target:
        raise DataFormatError(
            f"key 'target' is {target!r} but 'behaviors' {behaviors} ends "
            f"with {behaviors[-1]!r}: behaviors are in cascade order, the "
            f"target last", path)
    return meta


def read_folder(path: PathLike, name: Optional[str] = None,
                duplicates: str = 'drop',
                verify: bool = True) -> MultiBehaviorDataset:
    r"""Reads a dataset folder into a :class:`MultiBehaviorDataset`.

    The folder holds ``meta.json``, ``train/<behavior>.txt``,
    ``test/<target>.txt`` and ``SHA256SUMS``.

    Train files hold ``user<TAB>item[<TAB>unix_time]`` lines, 0-based ids,
    the time column on every line of a file or on none; the test file of the
    target behavior holds ``user<TAB>item`` lines. With :obj:`verify`, every
    file listed in ``SHA256SUMS`` is hashed and compared; without a
    ``SHA256SUMS`` a warning is issued and nothing is checked.

    The dataset's :obj:`checksum` is the sha256 of the ``SHA256SUMS``
    contents, or, without one, of the ``sha256sum``-style listing of
    ``meta.json``, the train files and the test file (sorted by path), which
    is the same value a ``SHA256SUMS`` of exactly those files would give.
    :obj:`info` records the source, the duplicate policy and the number of
    duplicates dropped per behavior (and for ``'test'``).

    Args:
        path (str or Path): The dataset folder.
        name (str, optional): Overrides the name in ``meta.json``.
            (default: :obj:`None`)
        duplicates (str): What to do with a (user, item) pair repeated within
            one file: ``'drop'`` keeps the first occurrence, counts and warns;
            ``'error'`` raises, naming both lines. (default: ``'drop'``)
        verify (bool): Check the files against ``SHA256SUMS``.
            (default: :obj:`True`)

    Raises:
        DataFormatError: A missing or malformed file, line or key; an id out
            of range; an unknown behavior; an empty target behavior; a
            checksum mismatch; a duplicate under ``duplicates='error'``; a
            test pair that is also a train target pair.
        FileNotFoundError: :obj:`path` is not a folder.

    Example:
        >>> dataset = read_folder('../shared/datasets/tmall')  # doctest: +SKIP
        >>> dataset.stats()['train']                           # doctest: +SKIP
        {'view': 858505, 'cart': 180027, 'buy': 92180}
    """
    _check_policy(duplicates)
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder '{root}' does not exist or "
                                f"is not a folder")
    cache: Dict[str, bytes] = {}

    def read(rel: str) -> bytes:
        if rel not in cache:
            cache[rel] = (root / rel).read_bytes()
        return cache[rel]

    sums_path = root / 'SHA256SUMS'
    sums: Optional[Dict[str, Tuple[str, int]]] = None
    if sums_path.is_file():
        sums_bytes = sums_path.read_bytes()
        sums = read_sha256sums(sums_path)
        if verify:
            for rel, (expected, number) in sums.items():
                if not _is_file(root / rel):
                    raise DataFormatError(
                        f'file listed in SHA256SUMS (line {number}) is '
                        f'missing', root / rel)
                actual = sha256_bytes(read(rel))
                if actual != expected:
                    raise DataFormatError(
                        f'sha256 mismatch: expected {expected} (SHA256SUMS '
                        f'line {number}), got {actual}; the file is damaged '
                        f'or not the released version', root / rel)
    else:
        warnings.warn(f"{root}: no SHA256SUMS file, so the data files are "
                      f"not verified", stacklevel=2)

    meta_path = root / 'meta.json'
    if not meta_path.is_file():
        raise DataFormatError(f"missing meta.json (expected keys "
                              f"{list(_META_KEYS)})", meta_path)
    meta = _read_meta(meta_path, read('meta.json'))
    behaviors: List[str] = list(meta['behaviors'])
    target: str = meta['target']
    num_users, num_items = meta['num_users'], meta['num_items']

    train_dir = root / 'train'
    if train_dir.is_dir():
        for file in sorted(train_dir.glob('*.txt')):
            if file.stem not in behaviors:
                raise DataFormatError(
                    f"unknown behavior {file.stem!r}: not in meta.json "
                    f"'behaviors' {behaviors}", file)
    for b in behaviors:
        if not (train_dir / f'{b}.txt').is_file():
            raise DataFormatError(f"missing train file of behavior {b!r} "
                                  f"(listed in meta.json 'behaviors' "
                                  f"{behaviors})", train_dir / f'{b}.txt')
    test_rel = f'test/{target}.txt'
    test_path = root / test_rel
    if not test_path.is_file():
        raise DataFormatError(f'missing test file of the target behavior '
                              f'{target!r}', test_path)

    rels = ['meta.json'] + [f'train/{b}.txt' for b in behaviors] + [test_rel]
    if sums is None:
        listing = ''.join(f'{sha256_bytes(read(rel))}  ./{rel}\n'
                          for rel in sorted(rels))
        checksum = sha256_bytes(listing.encode())
    else:
        checksum = sha256_bytes(sums_bytes)
        uncovered = [rel for rel in rels if rel not in sums]
        if verify and uncovered:
            warnings.warn(f'{sums_path}: {uncovered} are not listed, so '
                          f'they are not verified', stacklevel=2)

    train: Dict[str, torch.Tensor] = {}
    timestamps: Dict[str, Optional[torch.Tensor]] = {}
    dropped: Dict[str, int] = {}
    for b in behaviors:
        file = root / 'train' / f'{b}.txt'
        table = parse_int_table(read(f'train/{b}.txt'), file)
        if b == target and table.shape[0] == 0:
            raise DataFormatError(f'the target behavior {target!r} has no '
                                  f'train interactions (empty file)', file)
        table, dropped[b] = _check_table(table, file, num_users, num_items,
                                         duplicates)[:2]
        train[b] = _edge_index(table)
        timestamps[b] = (torch.from_numpy(np.ascontiguousarray(table[:, 2]))
                         if table.shape[1] == 3 else None)

    table = parse_int_table(read(test_rel), test_path, ncols=(2,))
    if table.shape[0] == 0:
        raise DataFormatError(f'the test file of {target!r} is empty; '
                              f'expected held-out user<TAB>item lines',
                              test_path)
    table, dropped['test'], test_lines = _check_table(
        table, test_path, num_users, num_items, duplicates)

    info = {
        'source': str(root.resolve()),
        'format': 'folder',
        'duplicates': duplicates,
        'duplicates_dropped': dropped,
        'verified': bool(verify and sums is not None),
        'checksum_of': 'SHA256SUMS' if sums is not None else 'data files',
    }
    return _build(root, test_path, test_lines,
                  name=meta['name'] if name is None else name,
                  num_users=num_users, num_items=num_items,
                  behaviors=behaviors, train=train, test=_edge_index(table),
                  timestamps=timestamps, checksum=checksum, info=info)


def _check_table(table: np.ndarray, path: Path, num_users: int,
                 num_items: int, duplicates: str):
    lines = np.arange(1, table.shape[0] + 1)
    for col, size, what in ((0, num_users, 'user'), (1, num_items, 'item')):
        _check_range(table[:, col], size, what, path, lines, 'meta.json')
    keep, dropped = _dedup(
        table[:, 0] * num_items + table[:, 1], lines, path, duplicates,
        lambda k: f'(user {table[k, 0]}, item {table[k, 1]})')
    if keep is not None:
        table, lines = table[keep], lines[keep]
    return table, dropped, lines


# Event logs #################################################################

def _csv_records(path: Path, sep: str):
    data = path.read_bytes()
    try:
        text = data.decode('utf-8-sig')
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b'\n') + 1
        raise DataFormatError(f'not UTF-8 text ({e.reason})', path,
                              line) from None
    reader = csv.reader(io.StringIO(text, newline=''), delimiter=sep)
    try:
        header = next(reader, None)
        if header is None:
            raise DataFormatError('empty file; expected a header row '
                                  'naming the columns', path, 1)
        rows = [(reader.line_num, row) for row in reader if row]
    except csv.Error as e:
        raise DataFormatError(f'malformed CSV: {e}', path,
                              max(reader.line_num, 1)) from None
    return [h.strip() for h in header], rows


def _parquet_records(path: Path):
    try:
        import pandas as pd
    except ImportError as e:
        raise ImportError(
            f"reading the Parquet file '{path}' needs pandas with pyarrow "
            f"(pip install pandas pyarrow), which are not installed; or "
            f"convert it to CSV/TSV") from e
    frame = pd.read_parquet(path)
    header = [str(c) for c in frame.columns]
    # Line numbers count the header as line 1, as in a CSV file.
    rows = [(k + 2, ['' if v is None else str(v) for v in row])
            for k, row in enumerate(frame.itertuples(index=False))]
    return header, rows


def _records(path: Path, sep: Optional[str]):
    if sep is None:
        suffix = path.suffix.lower()
        if suffix in ('.parquet', '.pq'):
            return _parquet_records(path)
        if suffix not in ('.csv', '.tsv'):
            raise ValueError(
                f"cannot tell the separator of '{path}' from its extension "
                f"{suffix!r}: pass sep=',' or sep='\\t', or use a .csv, .tsv "
                f"or .parquet file")
        sep = ',' if suffix == '.csv' else '\t'
    return _csv_records(path, sep)


def _columns(header: List[str], wanted: Dict[str, str],
             path: Path) -> Dict[str, int]:
    out = {}
    for arg, column in wanted.items():
        if column not in header:
            raise DataFormatError(f"missing column {column!r} (argument "
                                  f"'{arg}'); the header has {header}",
                                  path, 1)
        if header.count(column) > 1:
            raise DataFormatError(f"column {column!r} (argument '{arg}') "
                                  f"appears {header.count(column)} times in "
                                  f"the header {header}", path, 1)
        out[arg] = header.index(column)
    return out


def _parse_time(text: str, column: str, path: Path,
                line: int) -> Union[int, float]:
    text = text.strip()
    if _INT.fullmatch(text):
        if not _fits_int64(text):
            raise DataFormatError(f'time {_clip(text)} in column {column!r} '
                                  f'does not fit in a 64-bit integer', path,
                                  line)
        return int(text)
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None:
        try:
            when = datetime.fromisoformat(text[:-1] + '+00:00'
                                          if text.endswith('Z') else text)
        except ValueError:
            raise DataFormatError(
                f'time {_clip(text)} in column {column!r} is neither a '
                f'number (unix time) nor an ISO 8601 date', path,
                line) from None
        if when.tzinfo is None:  # naive times are read as UTC, everywhere
            when = when.replace(tzinfo=timezone.utc)
        value = when.timestamp()
    if not math.isfinite(value):
        raise DataFormatError(f'time {_clip(text)} in column {column!r} is '
                              f'not finite', path, line)
    if abs(value) >= 2**63:
        raise DataFormatError(f'time {_clip(text)} in column {column!r} is '
                              f'out of range: expected unix seconds below '
                              f'2**63 in magnitude', path, line)
    return int(value) if value.is_integer() else value


def _vocabulary(values: Iterable[str]) -> Tuple[List, Dict[str, int]]:
    r"""Returns the sorted unique ids and a map from id text to index.

    Ids are sorted numerically (and kept as ints) when every one is a
    canonical integer that fits in int64, else as strings.
    """
    unique = set(values)
    if all(_INT.fullmatch(v) and _fits_int64(v) and str(int(v)) == v
           for v in unique):
        ids: List = sorted(int(v) for v in unique)
        return ids, {str(v): k for k, v in enumerate(ids)}
    ids = sorted(unique)
    return ids, {v: k for k, v in enumerate(ids)}


def _read_log(path: Path, sep: Optional[str], wanted: Dict[str, str],
              optional: Dict[str, str], behaviors: Sequence[str],
              only: Optional[str], ignore_unknown: bool):
    r"""Reads the rows of an event log.

    Returns (lines, users, items, behavior indices, times, number of rows
    skipped for an unknown behavior).
    """
    header, rows = _records(path, sep)
    cols = _columns(header, wanted, path)
    cols.update({arg: header.index(c) for arg, c in optional.items()
                 if c is not None and c in header})
    index = {b: k for k, b in enumerate(behaviors)}
    lines, users, items, behs, times = [], [], [], [], []
    skipped = 0
    for line, row in rows:
        if len(row) != len(header):
            raise DataFormatError(f'expected {len(header)} fields as in the '
                                  f'header {header}, got {len(row)}: {row}',
                                  path, line)
        if 'behavior_col' in cols:
            b = row[cols['behavior_col']].strip()
            if only is not None and b != only:
                raise DataFormatError(
                    f'behavior {b!r} in a test file; test rows must be the '
                    f'target behavior {only!r}', path, line)
            if b not in index:
                if ignore_unknown:
                    skipped += 1
                    continue
                raise DataFormatError(
                    f'unknown behavior {b!r} in column '
                    f"{header[cols['behavior_col']]!r}: expected one of "
                    f'{list(behaviors)} (or pass ignore_unknown_behaviors='
                    f'True)', path, line)
        else:
            b = only
        for arg, into in (('user_col', users), ('item_col', items)):
            value = row[cols[arg]].strip()
            if not value:
                raise DataFormatError(f'empty {arg[:4]} id in column '
                                      f'{header[cols[arg]]!r}', path, line)
            into.append(value)
        if 'time_col' in cols:
            times.append(_parse_time(row[cols['time_col']],
                                     header[cols['time_col']], path, line))
        lines.append(line)
        behs.append(index[b])
    return lines, users, items, behs, times, skipped


def _times_tensor(times: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(times))


def read_event_log(path: PathLike, user_col: str = 'user',
                   item_col: str = 'item', behavior_col: str = 'behavior',
                   time_col: Optional[str] = None,
                   behaviors: Optional[Sequence[str]] = None,
                   test: Optional[PathLike] = None,
                   sep: Optional[str] = None, name: Optional[str] = None,
                   duplicates: str = 'drop',
                   ignore_unknown_behaviors: bool = False,
                   drop_later: bool = True) -> MultiBehaviorDataset:
    r"""Reads an event log into a :class:`MultiBehaviorDataset`.

    The log is a table with a header row and one interaction a row.

    User and item ids of any kind are mapped to contiguous indices in
    sorted order (numeric order when every id is an integer that fits in
    64 bits), the same for the same set of ids whatever the row order;
    :obj:`user_ids` and :obj:`item_ids` map each index back to its original
    id.

    Without a :obj:`test` file, the last target interaction of each user
    with at least two (the latest by :obj:`time_col`, ties and the no-time
    case by file order) is held out as test, and :obj:`info['split']` says
    so. A (user, item) pair repeated within a behavior keeps its first
    occurrence (and that occurrence's time) under ``duplicates='drop'``.

    With a time column, the held-out purchase is the user's present: her
    events of any behavior after it are removed from train under
    :obj:`drop_later` (counted in :obj:`info['split']['later_removed']`),
    since a view of the item after she bought it would tell the model the
    answer. Events at the same time as the purchase stay (the view that led
    to it is usually logged in the same second).

    Args:
        path (str or Path): A ``.csv``, ``.tsv`` or ``.parquet`` file (any
            extension with :obj:`sep`). Parquet needs pandas and pyarrow.
        user_col (str): Column of user ids. (default: ``'user'``)
        item_col (str): Column of item ids. (default: ``'item'``)
        behavior_col (str): Column of behavior names.
            (default: ``'behavior'``)
        time_col (str, optional): Column of times: unix seconds or ISO 8601
            dates (naive ones read as UTC). (default: :obj:`None`)
        behaviors (Sequence[str]): The behaviors to keep, in cascade order,
            target last. Required.
        test (str or Path, optional): A file of held-out target pairs with
            the same columns (its behavior column, if any, must hold the
            target). (default: :obj:`None`)
        sep (str, optional): Field separator; by default ``','`` for
            ``.csv`` and ``'\t'`` for ``.tsv``. (default: :obj:`None`)
        name (str, optional): Dataset name. (default: the file's stem)
        duplicates (str): ``'drop'`` or ``'error'``, as in
            :func:`read_folder`. (default: ``'drop'``)
        ignore_unknown_behaviors (bool): Skip rows whose behavior is not in
            :obj:`behaviors` (counted in :obj:`info`) instead of raising.
            (default: :obj:`False`)
        drop_later (bool): Remove each user's train events later than her
            held-out purchase (needs :obj:`time_col`; without a
            :obj:`test` file only). (default: :obj:`True`)

    Raises:
        ValueError: A bad argument (e.g. :obj:`behaviors` missing).
        DataFormatError: A missing column, an unknown behavior, a malformed
            row or time, a duplicate under ``duplicates='error'``, no target
            interactions, a test pair that is also a train target pair.
        ImportError: A Parquet file without pandas/pyarrow installed.

    Example:
        >>> dataset = read_event_log(  # doctest: +SKIP
        ...     'events.csv', time_col='ts', behaviors=['view', 'buy'])
        >>> dataset.user_ids[dataset.test[0, 0]]  # doctest: +SKIP
        'alice'
    """
    if behaviors is None:
        raise ValueError("'behaviors' is required: the behavior names to "
                         "keep in cascade order, target last (e.g. ['view', "
                         "'cart', 'buy'])")
    if isinstance(behaviors, str) or not all(
            isinstance(b, str) and b for b in behaviors):
        raise ValueError(f"'behaviors' must be a sequence of non-empty "
                         f"strings (got {behaviors!r})")
    behaviors = [str(b) for b in behaviors]
    if not behaviors or len(set(behaviors)) != len(behaviors):
        raise ValueError(f"'behaviors' must be non-empty without duplicates "
                         f"(got {behaviors})")
    _check_policy(duplicates)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"event log '{path}' does not exist")
    target = behaviors[-1]
    wanted = {'user_col': user_col, 'item_col': item_col,
              'behavior_col': behavior_col}
    if time_col is not None:
        wanted['time_col'] = time_col
    lines, users, items, behs, times, skipped = _read_log(
        path, sep, wanted, {}, behaviors, None, ignore_unknown_behaviors)

    test_path = None if test is None else Path(test)
    t_lines, t_users, t_items = [], [], []
    if test_path is not None:
        if not test_path.is_file():
            raise FileNotFoundError(f"test file '{test_path}' does not "
                                    f"exist")
        t_lines, t_users, t_items = _read_log(
            test_path, sep, {'user_col': user_col, 'item_col': item_col},
            {'behavior_col': behavior_col}, behaviors, target, False)[:3]

    user_ids, user_map = _vocabulary(users + t_users)
    item_ids, item_map = _vocabulary(items + t_items)
    num_users, num_items = max(len(user_ids), 1), max(len(item_ids), 1)
    u = np.fromiter((user_map[v] for v in users), np.int64, len(users))
    i = np.fromiter((item_map[v] for v in items), np.int64, len(items))
    beh = np.asarray(behs, dtype=np.int64)
    line = np.asarray(lines, dtype=np.int64)
    t = None
    if time_col is not None:
        floats = any(isinstance(v, float) for v in times)
        t = np.asarray(times, dtype=np.float64 if floats else np.int64)

    def describe(rows):
        return lambda k: (f'(user {users[rows[k]]!r}, item '
                          f'{items[rows[k]]!r})')

    train, timestamps, dropped = {}, {}, {}
    rows_of: Dict[str, np.ndarray] = {}
    for k, b in enumerate(behaviors):
        rows = np.flatnonzero(beh == k)
        keep, dropped[b] = _dedup(u[rows] * num_items + i[rows], line[rows],
                                  path, duplicates, describe(rows))
        rows_of[b] = rows if keep is None else rows[keep]
    if rows_of[target].size == 0:
        raise DataFormatError(f'the target behavior {target!r} has no train '
                              f'interactions (column {behavior_col!r})',
                              path)

    if test_path is None:
        rows = rows_of[target]
        order = (np.lexsort((rows, u[rows])) if t is None
                 else np.lexsort((rows, t[rows], u[rows])))
        ordered = rows[order]
        users_sorted = u[ordered]
        change = users_sorted[1:] != users_sorted[:-1]
        last = np.r_[change, True][:rows.size]
        first = np.r_[True, change][:rows.size]
        held = ordered[last & ~first]  # last of a user with >= 2
        held.sort()
        rows_of[target] = np.setdiff1d(rows, held, assume_unique=True)
        test_index = torch.from_numpy(np.stack([u[held], i[held]])).long()
        test_lines = line[held]
        single = int((last & first).sum())
        split = {'method': 'last target interaction per user',
                 'order': ('file order' if t is None
                           else f'time column {time_col!r}'),
                 'min_target_interactions': 2, 'test': int(held.size),
                 'users_with_one_target': single}
        if t is not None and drop_later:
            # Each user's present is her held-out purchase; later events
            # of hers are the future (users without one keep everything).
            present = np.full(num_users, np.inf)
            present[u[held]] = t[held]
            later = {}
            for b in behaviors:
                kept = rows_of[b]
                future = t[kept] > present[u[kept]]
                later[b] = int(future.sum())
                rows_of[b] = kept[~future]
            split['later_removed'] = later
        if held.size == 0:
            warnings.warn(f'{path}: no user has two or more {target!r} '
                          f'interactions, so the test set is empty',
                          stacklevel=2)
        test_report = path
    else:
        tu = np.fromiter((user_map[v] for v in t_users), np.int64,
                         len(t_users))
        ti = np.fromiter((item_map[v] for v in t_items), np.int64,
                         len(t_items))
        test_lines = np.asarray(t_lines, dtype=np.int64)
        keep, dropped['test'] = _dedup(
            tu * num_items + ti, test_lines, test_path, duplicates,
            lambda k: f'(user {t_users[k]!r}, item {t_items[k]!r})')
        if keep is not None:
            tu, ti, test_lines = tu[keep], ti[keep], test_lines[keep]
        test_index = torch.from_numpy(np.stack([tu, ti])).long()
        split = {'method': 'test file', 'test_file': str(test_path.resolve())}
        test_report = test_path

    for b in behaviors:
        rows = rows_of[b]
        train[b] = torch.from_numpy(np.stack([u[rows], i[rows]])).long()
        timestamps[b] = None if t is None else _times_tensor(t[rows])

    files = [path] + ([] if test_path is None else [test_path])
    listing = ''.join(f'{sha256_file(f)}  ./{f.name}\n' for f in files)
    info = {
        'source': str(path.resolve()),
        'format': 'event_log',
        'columns': dict(wanted),
        'duplicates': duplicates,
        'duplicates_dropped': dropped,
        'unknown_behavior_rows_skipped': skipped,
        'split': split,
    }
    return _build(path, test_report, test_lines,
                  name=path.stem if name is None else name,
                  num_users=num_users, num_items=num_items,
                  behaviors=behaviors, train=train, test=test_index,
                  timestamps=timestamps, user_ids=user_ids,
                  item_ids=item_ids,
                  checksum=sha256_bytes(listing.encode()), info=info)


# Where data lives ###########################################################

def data_root_candidates(name: str) -> List[Path]:
    r"""Returns the folders :func:`find_data_root` tries, in order.

    They are ``$GRAPHREC_DATA/<name>`` (when the variable is set),
    ``<repo>/../shared/datasets/<name>`` and ``~/.cache/graphrec/<name>``.
    """
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        raise ValueError(f"'name' must be a plain dataset name without path "
                         f"separators (got {name!r})")
    out = []
    env = os.environ.get('GRAPHREC_DATA')
    if env:
        out.append(Path(env).expanduser() / name)
    out.append(REPO_ROOT.parent / 'shared' / 'datasets' / name)
    out.append(Path.home() / '.cache' / 'graphrec' / name)
    return out


def find_data_root(name: str, instructions: Optional[str] = None) -> Path:
    r"""Finds the folder of dataset :obj:`name`.

    It is the first of :func:`data_root_candidates` that holds a
    ``meta.json``.

    Args:
        name (str): Dataset name, e.g. ``'tmall'``.
        instructions (str, optional): How to get the data, appended to the
            error when no folder is found (the registry passes
            :meth:`~graphrec.datasets.PublicDataset.fetch_instructions`).
            (default: :obj:`None`)

    Raises:
        FileNotFoundError: No candidate holds the dataset; the message lists
            each place searched and why it was passed over.
    """
    candidates = data_root_candidates(name)
    searched = []
    for folder in candidates:
        if (folder / 'meta.json').is_file():
            return folder
        why = ('exists but has no meta.json' if folder.is_dir()
               else 'does not exist')
        searched.append(f'  {folder} ({why})')
    if not os.environ.get('GRAPHREC_DATA'):
        searched.insert(0, '  $GRAPHREC_DATA/<name> (GRAPHREC_DATA is not '
                           'set)')
    if instructions is None:
        instructions = (
            f'To get it: put a folder in the dataset layout (meta.json, '
            f'train/<behavior>.txt, test/<target>.txt, SHA256SUMS; see '
            f'docs/data.md) at $GRAPHREC_DATA/{name}; for a registered '
            f'public dataset see graphrec.datasets.PUBLIC_DATASETS'
            f'[{name!r}].fetch_instructions().')
    raise FileNotFoundError(
        f'no folder for dataset {name!r} (a folder with meta.json); '
        f'searched, in order:\n' + '\n'.join(searched) + '\n' + instructions)
