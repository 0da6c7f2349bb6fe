r"""CPU/GPU parity: propagation, every backbone's forward and scores,
full-ranking evaluation and training steps agree within 1e-5 between the
CPU and each accelerator of :data:`graphrec.testing.DEVICES`.

Without a GPU the parity cases are skipped (the parameter lists are
empty); on a GPU machine they run automatically. :func:`check_*` are plain
functions, also run against ``'cpu'`` itself on every machine as a check of
the test code.
"""
import copy
import math

import pytest
import torch

from graphrec.cli import main
from graphrec.data import carve_validation
from graphrec.data.graph import BehaviorGraph, BipartiteAdjacency
from graphrec.datasets import make_synthetic
from graphrec.eval import Evaluator
from graphrec.models import build_model
from graphrec.nn import bipartite_propagate
from graphrec.testing import DEVICES
from graphrec.train import TrainConfig, Trainer, seed_everything

ACCELERATORS = [d for d in DEVICES if d != 'cpu']

# name -> constructor arguments: every registered backbone and the full
# model, small.
BACKBONES = {
    'mf': {},
    'lightgcn': {'num_layers': 2},
    'nmtr': {},
    'mbcgcn': {'num_layers': 2},
    'crgcn': {'num_layers': 2},
    'plugins': {'backbone': 'cascade', 'num_layers': 2,
                'fusion': 'moe', 'backdoor': 'popularity'},
    'causal_cascade': {},
}
ATOL = 1e-5


@pytest.fixture(scope='module')
def data():
    return carve_validation(make_synthetic(num_users=80, num_items=40,
                                           views_per_user=8, seed=5))


def check_propagation(device: str) -> None:
    gen = torch.Generator().manual_seed(0)
    keys = torch.randperm(50 * 30, generator=gen)[:300]
    adj = BipartiteAdjacency(torch.stack([keys // 30, keys % 30]), 50, 30,
                             torch.rand(300, generator=gen))
    xu = torch.randn(50, 16, generator=gen)
    xi = torch.randn(30, 16, generator=gen)
    outs, grads = [], []
    for dev, a in (('cpu', adj), (device, adj.to(device))):
        u = xu.detach().to(dev).requires_grad_()
        i = xi.detach().to(dev).requires_grad_()
        out = bipartite_propagate(a, u, i)
        assert all(o.device.type == torch.device(dev).type for o in out)
        grads.append(torch.autograd.grad(
            sum((o * o).sum() for o in out), (u, i)))
        outs.append(out)
    for a, b in zip(outs[0] + grads[0], outs[1] + grads[1]):
        assert torch.allclose(a, b.cpu(), atol=ATOL)


def check_forward_and_evaluation(data, name: str, device: str) -> None:
    seed_everything(0)
    cpu = build_model(name, data.num_users, data.num_items, data.behaviors,
                      embedding_dim=16, **BACKBONES[name])
    other = copy.deepcopy(cpu).to(device)
    graph = BehaviorGraph.from_dataset(data)
    users = torch.arange(data.num_users)
    fn_cpu = cpu.score_fn(graph)
    fn_other = other.score_fn(graph.to(device))
    a, b = fn_cpu(users), fn_other(users)
    assert b.device.type == torch.device(device).type
    assert torch.allclose(a, b.cpu(), atol=ATOL)
    evaluator = Evaluator(ks=(5, 10), chunk_size=32)
    ra = evaluator.evaluate(fn_cpu, data, 'valid')
    rb = evaluator.evaluate(fn_other, data, 'valid')
    assert ra.keys() == rb.keys()
    for key, value in ra.items():
        if isinstance(value, float) and not math.isnan(value):
            assert rb[key] == pytest.approx(value, abs=ATOL), key
        else:
            assert rb[key] == value or (math.isnan(value)
                                        and math.isnan(rb[key])), key


def check_training(data, device: str) -> None:
    states = []
    for dev in ('cpu', device):
        seed_everything(0)
        net = build_model('lightgcn', data.num_users, data.num_items,
                          data.behaviors, embedding_dim=16, num_layers=2)
        trainer = Trainer(net, data, TrainConfig(
            epochs=2, batch_size=64, lr=0.01, progress=False, device=dev))
        result = trainer.fit()
        assert all(p.device.type == torch.device(dev).type
                   for p in net.parameters())
        states.append((net.state_dict(), result.history))
    (sa, ha), (sb, hb) = states
    for key in sa:
        assert torch.allclose(sa[key], sb[key].cpu(), atol=1e-4), key
    for ra, rb in zip(ha, hb):
        assert rb['loss'] == pytest.approx(ra['loss'], rel=1e-4)


@pytest.mark.parametrize('device', ACCELERATORS)
def test_propagation_parity(device):
    check_propagation(device)


@pytest.mark.parametrize('device', ACCELERATORS)
@pytest.mark.parametrize('name', list(BACKBONES))
def test_forward_and_evaluation_parity(data, name, device):
    check_forward_and_evaluation(data, name, device)


@pytest.mark.parametrize('device', ACCELERATORS)
def test_training_parity(data, device):
    check_training(data, device)


@pytest.mark.parametrize('device', ACCELERATORS)
def test_cli_trains_on_the_device(tmp_path, device):
    out = tmp_path / 'run'
    code = main(['train', '--model', 'lightgcn', '--dataset', 'synthetic',
                 '--epochs', '1', '--batch-size', '2048', '--no-progress',
                 '--device', device, '--out', str(out), '--results',
                 str(tmp_path / 'rows.jsonl')])
    assert code == 0 and (out / 'model.pt').exists()


# The checks themselves, against the CPU: they run everywhere, so the code
# that the GPU cases use is exercised on every machine.
def test_checks_run_cpu_against_cpu(data):
    check_propagation('cpu')
    check_forward_and_evaluation(data, 'causal_cascade', 'cpu')
    check_training(data, 'cpu')
