"""Result rows (JSONL) and atomic file writes."""
from __future__ import annotations

import datetime
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional

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


def atomic_torch_save(obj: Any, path) -> None:
    r""":func:`torch.save` through :func:`atomic_write_bytes`."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def append_jsonl(path, row: Dict[str, Any]) -> None:
    r"""Appends one JSON line with a single locked write, so rows of
    concurrent runs never interleave.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(row, sort_keys=True, default=str) + '\n').encode()
    with open(path, 'ab') as f:
        try:
            import fcntl
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover (Windows)
            pass
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path) -> list:
    r"""Reads the rows of a JSONL file, skipping blank lines."""
    with open(path, encoding='utf-8') as f:
        return [json.loads(line) for line in f if line.strip()]


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
        'time': datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec='seconds'),
        'command': ' '.join(sys.argv),
        'versions': versions(),
        'git': git_revision(),
    }
    row.update(fields)
    return row
