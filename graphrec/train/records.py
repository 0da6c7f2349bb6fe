"""Result rows (JSONL), atomic and verified checkpoint writes, and the
run-folder lock.
"""
from __future__ import annotations

import contextlib
import datetime
import hashlib
import io
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

import torch

import graphrec


def atomic_write_bytes(path, data: bytes) -> None:
    r"""Writes :obj:`data` to a temporary file beside :obj:`path`, syncs it
    and renames it over :obj:`path`: readers see the old file or the new
    one, never a truncated one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp',
                               dir=path.parent)
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


#: First bytes of a checkpoint written by :func:`atomic_torch_save`.
CHECKPOINT_MAGIC = b'GRAPHREC-CHECKPOINT'
_CHECKPOINT_VERSION = 1
_HEADER = re.compile(rb'GRAPHREC-CHECKPOINT (\d+) sha256=([0-9a-f]{64}) '
                     rb'bytes=(\d+)')


class CheckpointError(ValueError):
    r"""A checkpoint file that is truncated, corrupt or not a checkpoint.

    Args:
        message (str): What is wrong.
        path (str): The file.
    """
    def __init__(self, message: str, path):
        self.path = str(path)
        super().__init__(f"checkpoint '{self.path}': {message}")


def atomic_torch_save(obj: Any, path) -> None:
    r""":func:`torch.save` through :func:`atomic_write_bytes`, behind a
    one-line header with the sha256 and length of the payload, which
    :func:`load_checkpoint` verifies.

    The file is ``GRAPHREC-CHECKPOINT 1 sha256=<hex> bytes=<n>\n``
    followed by the :func:`torch.save` bytes; read it with
    :func:`load_checkpoint`, not :func:`torch.load`.
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    payload = buffer.getvalue()
    header = (f'{CHECKPOINT_MAGIC.decode()} {_CHECKPOINT_VERSION} '
              f'sha256={hashlib.sha256(payload).hexdigest()} '
              f'bytes={len(payload)}\n').encode()
    atomic_write_bytes(path, header + payload)


def load_checkpoint(path, map_location=None) -> Any:
    r"""Reads a checkpoint written by :func:`atomic_torch_save`, verifying
    its length and sha256 first.

    A file without the header (a plain :func:`torch.save` file) is read as
    it is, with nothing to verify. Checkpoints are pickles: load only your
    own.

    Args:
        path (str or Path): The file.
        map_location (optional): As in :func:`torch.load`.
            (default: :obj:`None`)

    Raises:
        CheckpointError: The file is truncated or has extra bytes, its
            sha256 does not match, its header is damaged or of an unknown
            version, or :func:`torch.load` cannot read it.
        FileNotFoundError: :obj:`path` does not exist.
    """
    path = Path(path)
    data = path.read_bytes()
    payload = data
    if data.startswith(CHECKPOINT_MAGIC):
        end = data.find(b'\n', 0, 256)
        match = _HEADER.fullmatch(data[:end]) if end >= 0 else None
        if match is None:
            raise CheckpointError(
                f'damaged header {data[:end if end >= 0 else 80]!r}; '
                f'expected {CHECKPOINT_MAGIC.decode()} <version> '
                f'sha256=<hex> bytes=<n>', path)
        version, digest, size = (int(match.group(1)),
                                 match.group(2).decode(),
                                 int(match.group(3)))
        if version != _CHECKPOINT_VERSION:
            raise CheckpointError(
                f'format version {version}, but this graphrec reads version '
                f'{_CHECKPOINT_VERSION}', path)
        payload = data[end + 1:]
        if len(payload) != size:
            what = 'truncated' if len(payload) < size else 'too long'
            raise CheckpointError(
                f'{what}: the header promises {size} bytes after it, the '
                f'file has {len(payload)}; it is damaged (e.g. a copy cut '
                f'short), delete it or restore it', path)
        actual = hashlib.sha256(payload).hexdigest()
        if actual != digest:
            raise CheckpointError(
                f'sha256 mismatch: the header says {digest}, the contents '
                f'hash to {actual}; the file is corrupt, delete it or '
                f'restore it', path)
    try:
        return torch.load(io.BytesIO(payload), map_location=map_location,
                          weights_only=False)
    except Exception as e:
        raise CheckpointError(f'not a readable torch checkpoint '
                              f'({type(e).__name__}: {e})', path) from e


class RunLockedError(RuntimeError):
    r"""Another process holds the lock of a run folder.

    Args:
        folder (str): The run folder.
        holder (str): What the lock file says about its holder.
    """
    def __init__(self, folder, holder: str = ''):
        self.folder = str(folder)
        who = f' ({holder})' if holder else ''
        super().__init__(
            f"run folder '{self.folder}' is in use: another run{who} holds "
            f"its lock file {LOCK_NAME}; wait for it to finish, or use "
            f"another folder")


#: Name of the lock file :func:`lock_run_dir` holds in a run folder.
LOCK_NAME = 'LOCK'


@contextlib.contextmanager
def lock_run_dir(folder) -> Iterator[Path]:
    r"""Holds an exclusive lock on the run folder :obj:`folder` (created if
    needed) for the duration of the ``with`` block, so that two runs never
    write the same checkpoints.

    The lock is :func:`fcntl.flock` on ``<folder>/LOCK``, taken without
    waiting; the operating system drops it when the process ends, however
    it ends (even by ``SIGKILL``), so a crashed run never leaves a stale
    lock. Without :mod:`fcntl` (Windows) nothing is locked.

    Raises:
        RunLockedError: Another open lock (of another process, or of this
            one) holds the folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover (Windows)
        yield folder / LOCK_NAME
        return
    path = folder / LOCK_NAME
    f = open(path, 'a+')
    try:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise RunLockedError(folder, f.read().strip()) from None
        f.seek(0)
        f.truncate()
        f.write(f'pid {os.getpid()} on {socket.gethostname()}\n')
        f.flush()
        yield path
    finally:
        f.close()  # releases the lock


def append_jsonl(path, row: Dict[str, Any]) -> None:
    r"""Appends one JSON line with a single locked write, so rows of
    concurrent runs never interleave.

    The line goes out in one :func:`os.write` to a file opened for
    appending, which a signal cannot cut in two: an interrupted run leaves
    whole rows only.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(row, sort_keys=True, default=str) + '\n').encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        try:
            import fcntl
            fcntl.flock(fd, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover (Windows)
            pass
        view = memoryview(line)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def read_jsonl(path) -> list:
    r"""Reads the rows of a JSONL file, skipping blank lines.

    A row's ``per_user_file`` is stored relative to the results file (see
    :func:`relative_to_results`) and comes back resolved against the
    file's folder; an absolute path written by an older version that does
    not exist here is looked up by its trailing parts under that folder,
    so that results copied or cloned elsewhere keep their per-user files.
    """
    path = Path(path)
    with open(path, encoding='utf-8') as f:
        rows = [json.loads(line) for line in f if line.strip()]
    for row in rows:
        if row.get('per_user_file'):
            row['per_user_file'] = _resolve(row['per_user_file'],
                                            path.parent)
    return rows


def _resolve(name: str, base: Path) -> str:
    p = Path(name)
    if not p.is_absolute():
        return str(base / p)
    if p.exists():
        return name
    parts = p.parts[1:]
    for k in range(1, len(parts) + 1):
        candidate = base.joinpath(*parts[-k:])
        if candidate.exists():
            return str(candidate)
    return name


def relative_to_results(name: str, results) -> str:
    r""":obj:`name` relative to the folder of the results file
    :obj:`results` when it lies under it (how rows store
    ``per_user_file``), else unchanged.
    """
    base = Path(results).resolve().parent
    try:
        return str(Path(name).resolve().relative_to(base))
    except ValueError:
        return str(name)


def git_revision() -> Optional[str]:
    r"""The git revision of the graphrec checkout (suffixed ``-dirty`` when
    it has uncommitted changes), or :obj:`None` outside a checkout.
    """
    root = Path(graphrec.__file__).resolve().parent.parent
    try:
        rev = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=root,
                             capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(['git', 'status', '--porcelain',
                                '--untracked-files=no'], cwd=root,
                               capture_output=True, text=True, timeout=5)
        return rev.stdout.strip() + ('-dirty' if dirty.stdout.strip() else '')
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> Dict[str, str]:
    r"""Versions of Python and the packages a result depends on."""
    import numpy
    import torch_geometric
    return {'python': platform.python_version(), 'torch': torch.__version__,
            'torch_geometric': torch_geometric.__version__,
            'numpy': numpy.__version__, 'graphrec': graphrec.__version__}


def run_row(**fields: Any) -> Dict[str, Any]:
    r"""A result row: the given fields plus time, command line, versions and
    git revision.
    """
    row = {
        # to the microsecond: `--rerun TIME` tells rows before and after
        'time': datetime.datetime.now(datetime.timezone.utc).isoformat(),
        'command': ' '.join(sys.argv),
        'versions': versions(),
        'git': git_revision(),
    }
    row.update(fields)
    return row
