r"""benchmarks/speed.py on tiny inputs: the synthetic scaling graphs, the
like-for-like propagation comparison with PyG, and a model worker's
figures.
"""
import sys
from argparse import Namespace
from pathlib import Path

import pytest
import torch

from graphrec.data import carve_validation
from graphrec.data.dataset import pair_keys
from graphrec.datasets import make_synthetic

BENCH = Path(__file__).resolve().parent.parent / 'benchmarks'


@pytest.fixture
def speed(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    sys.modules.pop('speed', None)
    import speed
    return speed


def test_synthetic_graph_has_unique_pairs_and_the_degrees(speed):
    edge_index, users, items = speed.synthetic_graph(5000, seed=1)
    assert (users, items) == (200, 100)
    assert edge_index.size(1) == 5000
    keys = pair_keys(edge_index, items)
    assert keys.unique().numel() == 5000
    assert int(edge_index[0].max()) < users
    assert int(edge_index[1].max()) < items
    # Skewed popularity: the first tenth of the items gets more than a
    # tenth of the edges.
    assert (edge_index[1] < items // 10).float().mean() > 0.15


def test_scaling_worker_reports_per_edge_figures(speed):
    out = speed.worker_scaling(Namespace(edges='4000', dim=8, repeat=1))
    assert out['edges'] == 4000
    assert out['ns_per_edge'] == pytest.approx(
        out['layer_seconds'] / 4000 * 1e9)
    assert out['rss_peak'] > 0 and out['rss_graph'] > 0
    # int64 edge list (16), permutations (16), CSR columns (16), three
    # float32 value arrays (12), plus per-node pointers and degrees.
    assert 60 <= out['graph_bytes_per_edge'] < 64


def test_propagation_against_pyg_rows(speed):
    data = carve_validation(make_synthetic(num_users=60, num_items=30,
                                           views_per_user=6, seed=2))
    rows, meta = speed.propagation_vs_pyg(data, repeat=1)
    assert meta['nodes'] == 90 and meta['dim'] == 64
    assert rows[0][2] == 1.0 and len(rows) == 6
    for what, (median, best), ratio in rows:
        assert median >= best > 0 and ratio > 0, what


def test_model_spec_reads_the_benchmark_configs(speed):
    name, kwargs, train = speed.model_spec('crgcn', 'tmall')
    assert name == 'crgcn' and kwargs['num_layers'] == 2
    assert set(train['behavior_weights']) == {'view', 'cart', 'buy'}
    name, kwargs, _ = speed.model_spec('plugins/cascade', 'tmall')
    assert name == 'plugins' and kwargs['backbone'] == 'cascade'
    assert speed.model_spec('causal_cascade', 'tmall')[0] == 'causal_cascade'
    assert set(speed.MODELS) >= {'mf', 'nmtr', 'mbcgcn', 'crgcn',
                                 'causal_cascade'}


def test_median_time_skips_the_warmup(speed):
    calls = []
    med, best = speed.median_time(lambda: calls.append(1), repeat=3,
                                  warmup=2)
    assert len(calls) == 5 and med >= best >= 0
    assert torch.get_num_threads() >= 1
