import json
import multiprocessing as mp
import os

import pytest
import torch

from graphrec.report import markdown_table, mean_std
from graphrec.train.records import (
    append_jsonl,
    atomic_torch_save,
    atomic_write_bytes,
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
    atomic_torch_save({'w': torch.arange(3)}, tmp_path / 'c.pt')
    assert torch.equal(torch.load(tmp_path / 'c.pt')['w'], torch.arange(3))


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
