r"""Crash, interruption and concurrency tests with real child processes: a
run killed with ``SIGKILL`` resumes to the bit-identical result, ``SIGTERM``
and ``SIGINT`` leave a checkpoint, an ``"interrupted"`` row and a resume
command, and a second run into a held folder is refused.
"""
import importlib.util
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import graphrec
from graphrec.cli import main
from graphrec.train import RunLockedError, load_checkpoint
from graphrec.train.records import read_jsonl

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location('child_train',
                                               HERE / 'child_train.py')
child_train = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(child_train)

pytestmark = pytest.mark.skipif(sys.platform == 'win32',
                                reason='POSIX signals and flock')


@pytest.fixture
def one_thread():
    r"""One intra-op thread, as in the child, so that the float sums of a
    run in this process and of one in a child are the same.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def start_child(*args, sleep=0.3) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=os.pathsep.join(
        [str(Path(graphrec.__file__).resolve().parents[1])] +
        os.environ.get('PYTHONPATH', '').split(os.pathsep)))
    return subprocess.Popen(
        [sys.executable, str(HERE / 'child_train.py'), args[0], str(sleep),
         *map(str, args[1:])], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)


def wait_for_epoch(child: subprocess.Popen, last: Path, epoch: int,
                   timeout: float = 120.0) -> int:
    r"""Polls ``last.pt`` until it holds :obj:`epoch` or later; returns the
    epoch it holds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            out, err = child.communicate()
            pytest.fail(f'child ended early ({child.returncode}):\n{err}')
        if last.exists():
            held = load_checkpoint(last)['epoch']
            if held >= epoch:
                return held
        time.sleep(0.02)
    child.kill()
    pytest.fail(f'no checkpoint of epoch {epoch} after {timeout} s')


def assert_same_state(a: dict, b: dict):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_sigkill_then_resume_is_bit_identical(tmp_path, one_thread):
    out = tmp_path / 'run'
    child = start_child('fit', out)
    try:
        killed_at = wait_for_epoch(child, out / 'last.pt', 2)
        # While the child trains, the folder is taken.
        with pytest.raises(RunLockedError, match=rf"run folder '{out}' is in "
                           rf"use: another run \(pid {child.pid} on .*\) "
                           r'holds its lock file LOCK'):
            child_train.make_trainer(out).fit()
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == -signal.SIGKILL

    # The kernel dropped the dead child's lock: resuming needs no clean-up.
    resumed = child_train.make_trainer(out)
    result = resumed.fit(resume=True)
    reference = child_train.make_trainer(tmp_path / 'reference')
    expected = reference.fit()
    assert killed_at < expected.epochs_run
    assert expected.stopped_early and result.stopped_early
    assert_same_state(resumed.model.state_dict(),
                      reference.model.state_dict())
    assert resumed.validate() == reference.validate()
    assert result.history == expected.history
    assert (result.best_epoch, result.best_valid, result.epochs_run) == (
        expected.best_epoch, expected.best_valid, expected.epochs_run)


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_cli_signal_checkpoints_records_and_resumes(tmp_path, one_thread,
                                                    signum):
    data = child_train.write_folder(tmp_path / 'small')
    results = tmp_path / 'results.jsonl'
    argv = ['train', '--model', 'mf', '--dataset', str(data), '--epochs',
            '8', '--batch-size', '128', '--lr', '0.03', '--seed', '3',
            '--no-progress', '--out', str(tmp_path / 'run'), '--results',
            str(results)]
    child = start_child('cli', *argv)
    try:
        wait_for_epoch(child, tmp_path / 'run' / 'last.pt', 2)
        child.send_signal(signum)
        _, err = child.communicate(timeout=60)
    finally:
        child.kill()
    name = signal.Signals(signum).name
    assert child.returncode == 128 + signum, err
    held = load_checkpoint(tmp_path / 'run' / 'last.pt')
    assert 2 <= held['epoch'] < 8
    assert f'training interrupted by {name} after {held["epoch"]} ' \
           f'completed epoch(s)' in err
    assert 'resume with: graphrec train --model mf' in err
    assert err.rstrip().endswith(' --resume')
    assert not (tmp_path / 'run' / 'model.pt').exists()
    [row] = read_jsonl(results)
    assert row['status'] == 'interrupted' and row['signal'] == name
    assert row['epochs_run'] == held['epoch'] == held['result']['epochs_run']
    assert row['checkpoint'] == str(tmp_path / 'run' / 'last.pt')
    assert 'metrics' not in row

    # The printed command finishes the run, the same as an uninterrupted
    # one: same model, same test metrics.
    command = shlex.split(err.rstrip().rsplit('resume with: graphrec ', 1)[1])
    assert command == argv + ['--resume']
    assert main(command) == 0
    rows = read_jsonl(results)
    assert [r['status'] for r in rows] == ['interrupted', 'complete']
    assert rows[1]['epochs_run'] == 8
    ref_argv = argv[:argv.index('--out')] + [
        '--out', str(tmp_path / 'ref'), '--results', str(tmp_path / 'r.jsonl')]
    assert main(ref_argv) == 0
    [ref] = read_jsonl(tmp_path / 'r.jsonl')
    assert rows[1]['metrics'] == ref['metrics']
    assert rows[1]['valid'] == ref['valid']
    assert_same_state(load_checkpoint(tmp_path / 'run' / 'model.pt')['state'],
                      load_checkpoint(tmp_path / 'ref' / 'model.pt')['state'])
