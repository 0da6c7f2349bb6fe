r"""Training runs for tests/train/test_reliability.py, in the test process or
as a child process that the tests kill or interrupt (not a test module).

    python child_train.py fit SLEEP OUT_DIR       # Trainer.fit into OUT_DIR
    python child_train.py cli SLEEP ARGS...       # graphrec ARGS...

SLEEP seconds pass before every epoch, so that a test can reliably stop
the child in the middle of a run however loaded the machine is; sleeping
touches no random state, so the run is the same as without it.
"""
import hashlib
import json
import signal
import sys
import time
from pathlib import Path

import torch

from graphrec.data import carve_validation
from graphrec.datasets import make_synthetic
from graphrec.models import build_model
from graphrec.train import TrainConfig, Trainer, seed_everything
from graphrec.train.trainer import Trainer as TrainerClass

# lr=0.03 and patience=4 stop early at epoch 32 with evaluations that do not
# improve before that, so a resume must carry the early-stopping state.
CONFIG = dict(epochs=40, batch_size=128, lr=0.03, patience=4, seed=7,
              progress=False)


def make_data():
    return carve_validation(make_synthetic(num_users=150, num_items=80,
                                           seed=1))


def make_trainer(out_dir=None) -> Trainer:
    data = make_data()
    seed_everything(0)
    net = build_model('mf', data.num_users, data.num_items, data.behaviors,
                      embedding_dim=16)
    return Trainer(net, data, TrainConfig(**CONFIG), out_dir=out_dir)


def write_folder(root: Path) -> Path:
    r"""Writes the synthetic dataset of :func:`make_data` (before carving)
    as a dataset folder with a ``SHA256SUMS``.
    """
    data = make_synthetic(num_users=150, num_items=80, seed=1)
    files = {'meta.json': json.dumps({
        'name': 'small', 'num_users': data.num_users,
        'num_items': data.num_items, 'behaviors': list(data.behaviors),
        'target': data.target})}
    for b in data.behaviors:
        files[f'train/{b}.txt'] = ''.join(
            f'{u}\t{i}\n' for u, i in data.train[b].t().tolist())
    files[f'test/{data.target}.txt'] = ''.join(
        f'{u}\t{i}\n' for u, i in data.test.t().tolist())
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / 'SHA256SUMS').write_text(''.join(
        f'{hashlib.sha256((root / rel).read_bytes()).hexdigest()}  ./{rel}\n'
        for rel in sorted(files)))
    return root


def sleep_before_epochs(seconds: float) -> None:
    original = TrainerClass.train_epoch

    def train_epoch(self):
        time.sleep(seconds)
        return original(self)

    TrainerClass.train_epoch = train_epoch


if __name__ == '__main__':
    torch.set_num_threads(1)
    # A shell that starts a job in the background makes it ignore SIGINT;
    # a user's Ctrl-C reaches a foreground run, which this one plays.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    mode, sleep = sys.argv[1], float(sys.argv[2])
    sleep_before_epochs(sleep)
    if mode == 'fit':
        make_trainer(sys.argv[3]).fit()
    else:
        from graphrec.cli import main
        sys.exit(main(sys.argv[3:]))
