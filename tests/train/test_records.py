import hashlib
import json
import multiprocessing as mp
import os
import socket

import pytest
import torch

from graphrec.report import markdown_table, mean_std, provenance
from graphrec.train.records import (
    CheckpointError,
    RunLockedError,
    append_jsonl,
    atomic_torch_save,
    atomic_write_bytes,
    load_checkpoint,
    lock_run_dir,
    read_jsonl,
    run_row,
)


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / 'a' / 'x.bin'
    atomic_write_bytes(path, b'first')
    atomic_write_bytes(path, b'second')
    assert path.read_bytes() == b'second'
    assert [p.name for p in path.parent.iterdir()] == ['x.bin']


def test_atomic_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / 'x.bin'
    atomic_write_bytes(path, b'good')

    def boom(*args):
        raise OSError('disk full')

    monkeypatch.setattr(os, 'replace', boom)
    with pytest.raises(OSError, match='disk full'):
        atomic_write_bytes(path, b'partial')
    assert path.read_bytes() == b'good'
    assert [p.name for p in tmp_path.iterdir()] == ['x.bin']


def test_atomic_torch_save_roundtrip(tmp_path):
    path = tmp_path / 'c.pt'
    atomic_torch_save({'w': torch.arange(3)}, path)
    data = path.read_bytes()
    header, payload = data.split(b'\n', 1)
    assert header == (b'GRAPHREC-CHECKPOINT 1 sha256=' +
                      hashlib.sha256(payload).hexdigest().encode() +
                      b' bytes=%d' % len(payload))
    assert torch.equal(load_checkpoint(path)['w'], torch.arange(3))
    # A plain torch.save file (nothing to verify) still loads.
    torch.save({'w': torch.ones(2)}, tmp_path / 'plain.pt')
    assert torch.equal(load_checkpoint(tmp_path / 'plain.pt')['w'],
                       torch.ones(2))
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / 'none.pt')


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x10]) + data[at + 1:]


@pytest.mark.parametrize('damage, match', [
    (lambda b: b[:-1], r'truncated: the header promises \d+ bytes after it, '
     r'the file has \d+; it is damaged \(e.g. a copy cut short\)'),
    (lambda b: b[:b.index(b'\n') + 10], 'truncated'),
    (lambda b: b + b'\0', 'too long'),
    (lambda b: _flip(b, len(b) // 2), r'sha256 mismatch: the header says '
     r'[0-9a-f]{64}, the contents hash to [0-9a-f]{64}; the file is corrupt'),
    (lambda b: _flip(b, len(b) - 1), 'sha256 mismatch'),
    (lambda b: b[:30], r"damaged header b'GRAPHREC-CHECKPOINT 1 sha256="),
    (lambda b: b.replace(b'sha256=', b'sha265=', 1), 'damaged header'),
    (lambda b: b.replace(b'CHECKPOINT 1 ', b'CHECKPOINT 2 ', 1),
     'format version 2, but this graphrec reads version 1'),
    (lambda b: b[:5], r'not a readable torch checkpoint'),
    (lambda b: b'', r'not a readable torch checkpoint'),
    (lambda b: _flip(b, 0), r'not a readable torch checkpoint'),
])
def test_damaged_checkpoints_are_detected(tmp_path, damage, match):
    path = tmp_path / 'c.pt'
    atomic_torch_save({'w': torch.randn(100)}, path)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CheckpointError, match=rf"checkpoint '{path}': "
                       + match):
        load_checkpoint(path)


def test_checkpoint_bytes_flipped_anywhere_are_detected(tmp_path):
    path = tmp_path / 'c.pt'
    atomic_torch_save({'w': torch.arange(50.0)}, path)
    data = path.read_bytes()
    for at in range(0, len(data), max(len(data) // 64, 1)):
        path.write_bytes(_flip(data, at))
        with pytest.raises(CheckpointError, match=str(path)):
            load_checkpoint(path)


def test_lock_run_dir_is_exclusive_and_released(tmp_path):
    folder = tmp_path / 'run'
    with lock_run_dir(folder) as lock:
        assert lock == folder / 'LOCK'
        assert lock.read_text() == (f'pid {os.getpid()} on '
                                    f'{socket.gethostname()}\n')
        with pytest.raises(RunLockedError, match=rf"run folder '{folder}' is "
                           rf'in use: another run \(pid {os.getpid()} on '
                           r'.*\) holds its lock file LOCK; wait for it'):
            with lock_run_dir(folder):
                pass
    with lock_run_dir(folder):  # free again
        pass


def _writer(path, k):
    for i in range(50):
        append_jsonl(path, {'writer': k, 'i': i, 'pad': 'x' * 2000})


def test_concurrent_appends_do_not_interleave(tmp_path):
    path = tmp_path / 'rows.jsonl'
    procs = [mp.get_context('fork').Process(target=_writer, args=(path, k))
             for k in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    rows = read_jsonl(path)
    assert len(rows) == 150
    assert sorted((r['writer'], r['i']) for r in rows) == [
        (k, i) for k in range(3) for i in range(50)]


def test_run_row_records_provenance():
    row = run_row(dataset='d', seed=3)
    assert row['seed'] == 3 and row['dataset'] == 'd'
    assert set(row['versions']) >= {'torch', 'torch_geometric', 'python'}
    assert 'command' in row and 'git' in row and 'time' in row
    json.dumps(row, default=str)


def test_markdown_table_mean_and_sample_std():
    rows = [{'dataset': 'd', 'model': 'm', 'seed': s,
             'metrics': {'hr@10': v}} for s, v in enumerate([0.1, 0.2, 0.3])]
    table = markdown_table(rows, ['hr@10'])
    assert '| d | m | 3 | 0.2000 ± 0.1000 |' in table
    assert mean_std([1.0]) == (1.0, 0.0)
    # a rerun of the same seed replaces the older row
    rows.append({'dataset': 'd', 'model': 'm', 'seed': 2,
                 'metrics': {'hr@10': 0.2}})
    assert '| d | m | 3 | 0.1667 ± 0.0577 |' in markdown_table(rows,
                                                               ['hr@10'])


def test_markdown_table_shows_undefined_metrics_as_missing():
    # A dataset without visited test items has no visited/hr@10: NaN.
    rows = [{'dataset': 'd', 'model': 'm', 'seed': s,
             'metrics': {'hr@10': 0.1, 'visited/hr@10': float('nan')}}
            for s in range(2)]
    table = markdown_table(rows, ['hr@10', 'visited/hr@10'])
    assert '| d | m | 2 | 0.1000 ± 0.0000 | – |' in table
    assert 'nan' not in table


def test_report_skips_interrupted_rows():
    done = {'dataset': 'd', 'model': 'm', 'seed': 0, 'status': 'complete',
            'metrics': {'hr@10': 0.5}, 'git': 'abc'}
    old = {'dataset': 'd', 'model': 'm', 'seed': 1, 'metrics': {'hr@10': 0.3},
           'git': 'abc'}
    cut = {'dataset': 'd', 'model': 'm', 'seed': 0, 'status': 'interrupted',
           'epochs_run': 3, 'git': 'xyz'}
    # The later interrupted row of seed 0 does not replace the complete one;
    # rows without a status (older files) count as complete.
    table = markdown_table([done, old, cut], ['hr@10'])
    assert '| d | m | 2 | 0.4000 ± 0.1414 |' in table
    assert 'xyz' not in provenance([done, cut])
