r"""Multi-process training: two CPU processes (gloo) take the steps of one
process with the same global batch, stay identical, and only rank 0 writes.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import graphrec
from graphrec.data import carve_validation
from graphrec.datasets import make_synthetic
from graphrec.models import build_model
from graphrec.train import TrainConfig, Trainer, seed_everything
from graphrec.train.distributed import (
    DistributedTrainer,
    make_trainer,
    shard_bounds,
)
from graphrec.train.records import read_jsonl

pytestmark = pytest.mark.skipif(
    sys.platform == 'win32' or not dist.is_available()
    or not dist.is_gloo_available(), reason='needs torch.distributed gloo')

# (model, model kwargs, config): a graph model, and a multi-behavior model
# trained on several behaviors with hard negatives, BCE and a global batch
# that two processes do not divide evenly (68 train pairs, odd batches).
CASES = [
    ('lightgcn', {'embedding_dim': 8, 'num_layers': 2},
     dict(batch_size=45)),
    ('nmtr', {'embedding_dim': 8},
     dict(batch_size=25, loss='bce', hard_negative_ratio=0.5,
          behavior_weights={'view': 0.5, 'buy': 1.0})),
]
COMMON = dict(epochs=2, lr=0.02, seed=3, progress=False, eval_every=1)


def make_data():
    return carve_validation(make_synthetic(num_users=60, num_items=30,
                                           views_per_user=6, seed=2))


def train(case: int, out_dir=None, resume=False, **overrides):
    name, kwargs, config = CASES[case]
    data = make_data()
    seed_everything(0)
    net = build_model(name, data.num_users, data.num_items, data.behaviors,
                      **kwargs)
    trainer = make_trainer(net, data,
                           TrainConfig(**{**COMMON, **config, **overrides}),
                           out_dir=out_dir)
    epoch, trainer.epochs_trained = trainer.train_epoch, 0

    def counted():
        trainer.epochs_trained += 1
        return epoch()

    trainer.train_epoch = counted
    result = trainer.fit(resume=resume)
    return trainer, result


def worker(rank: int, world: int, init: str, out: str):
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=init, rank=rank,
                            world_size=world)
    # Count this rank's checkpoint writes (both ranks share the folders, so
    # their listings alone cannot tell who wrote).
    import graphrec.train.trainer as trainer_module
    saves, save = [], trainer_module.atomic_torch_save

    def counted_save(obj, path, *args, **kwargs):
        saves.append(str(path))
        return save(obj, path, *args, **kwargs)

    trainer_module.atomic_torch_save = counted_save
    try:
        states = []
        for case in range(len(CASES)):
            trainer, result = train(case, out_dir=f'{out}/run{case}')
            assert isinstance(trainer, DistributedTrainer)
            states.append({'state': trainer.model.state_dict(),
                           'history': result.history,
                           'files': sorted(os.listdir(f'{out}/run{case}')),
                           'saves': len(saves)})
        # One epoch, then resumed from rank 0's last.pt to the second.
        train(0, out_dir=f'{out}/resume', epochs=1)
        trainer, result = train(0, out_dir=f'{out}/resume', resume=True)
        states.append({'state': trainer.model.state_dict(),
                       'history': result.history,
                       'epochs_trained': trainer.epochs_trained})
        torch.save(states, f'{out}/rank{rank}.pt')
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope='module')
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp('ddp')
    init = f'file://{out / "store"}'
    # fork: the worker is a function of this test module, which a spawned
    # interpreter could not import by name.
    mp.start_processes(worker, args=(2, init, str(out)), nprocs=2,
                       join=True, start_method='fork')
    return [torch.load(out / f'rank{r}.pt', weights_only=False)
            for r in range(2)]


def test_shard_bounds():
    assert [shard_bounds(5, 2, r) for r in range(2)] == [(0, 3), (3, 5)]
    assert [shard_bounds(1, 3, r) for r in range(3)] == [(0, 1), (1, 1),
                                                         (1, 1)]
    for size in range(10):
        parts = [shard_bounds(size, 4, r) for r in range(4)]
        assert parts[0][0] == 0 and parts[-1][1] == size
        assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))


def test_ranks_stay_identical(two_ranks):
    assert len(two_ranks[0]) == len(CASES) + 1
    for a, b in zip(*two_ranks):
        assert a['state'].keys() == b['state'].keys()
        for key in a['state']:
            assert torch.equal(a['state'][key], b['state'][key]), key
        assert a['history'] == b['history']


@pytest.mark.parametrize('case', range(len(CASES)))
def test_matches_one_process_with_the_same_global_batch(two_ranks, case):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer, result = train(case)
    finally:
        torch.set_num_threads(threads)
    assert type(trainer) is Trainer
    ddp = two_ranks[0][case]
    moved = False
    for key, value in trainer.model.state_dict().items():
        assert torch.allclose(ddp['state'][key], value, atol=1e-5,
                              rtol=1e-4), key
        moved |= value.is_floating_point()
    assert moved
    for ours, theirs in zip(ddp['history'], result.history):
        assert ours['loss'] == pytest.approx(theirs['loss'], rel=1e-5)
        assert ours['ndcg@10'] == pytest.approx(theirs['ndcg@10'], abs=1e-6)


def test_resume_is_bit_identical(two_ranks):
    for states in two_ranks:
        resumed, straight = states[-1], states[0]
        assert resumed['epochs_trained'] == 1  # epoch 2 only
        for key, value in straight['state'].items():
            assert torch.equal(resumed['state'][key], value), key
        assert resumed['history'] == straight['history']


def test_only_rank_zero_writes_checkpoints(two_ranks):
    files = two_ranks[0][0]['files']
    assert 'last.pt' in files and 'best.pt' in files
    assert two_ranks[0][0]['saves'] > 0
    assert two_ranks[1][0]['saves'] == 0


def test_distributed_trainer_needs_a_process_group():
    data = make_data()
    net = build_model('mf', data.num_users, data.num_items, data.behaviors)
    with pytest.raises(RuntimeError, match='initialized process group'):
        DistributedTrainer(net, data, TrainConfig(progress=False))


def test_torchrun_cli_writes_one_row(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=os.pathsep.join(
        [str(Path(graphrec.__file__).resolve().parents[1])] +
        os.environ.get('PYTHONPATH', '').split(os.pathsep)))
    results, out = tmp_path / 'rows.jsonl', tmp_path / 'run'
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone',
           '--nproc_per_node', '2', '-m', 'graphrec.cli', 'train',
           '--model', 'mf', '--dataset', 'synthetic', '--epochs', '2',
           '--batch-size', '512', '--no-progress', '--out', str(out),
           '--results', str(results)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_jsonl(results)
    assert len(rows) == 1
    assert rows[0]['world_size'] == 2 and rows[0]['status'] == 'complete'
    assert rows[0]['epochs_run'] == 2 and 'hr@10' in rows[0]['metrics']
    assert (out / 'model.pt').exists() and (out / 'last.pt').exists()
    assert proc.stdout.count('model written to') == 1
