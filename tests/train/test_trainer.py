import os
import signal

import pytest
import torch

from graphrec.data import carve_validation, pair_keys, viewed_not_bought
from graphrec.datasets import make_synthetic
from graphrec.models import build_model
from graphrec.testing import DEVICES
from graphrec.train import (
    CheckpointError,
    RunLockedError,
    TrainConfig,
    Trainer,
    TrainingInterrupted,
    load_checkpoint,
    lock_run_dir,
)


@pytest.fixture(scope='module')
def small():
    return carve_validation(make_synthetic(num_users=120, num_items=60,
                                           views_per_user=15, seed=3))


def _trainer(data, model='mf', out_dir=None, **config):
    torch.manual_seed(0)
    net = build_model(model, data.num_users, data.num_items, data.behaviors,
                      embedding_dim=8)
    config.setdefault('progress', False)
    config.setdefault('batch_size', 256)
    return Trainer(net, data, TrainConfig(**config), out_dir=out_dir)


def test_early_stopping_keeps_the_best_state(small, monkeypatch):
    trainer = _trainer(small, epochs=30, patience=2)
    scripted = iter([0.1, 0.3, 0.2, 0.25, 0.9])
    states = {}

    def fake_validate():
        epoch = len(states) + 1
        states[epoch] = {k: v.clone() for k, v in
                         trainer.model.state_dict().items()}
        return {'ndcg@10': next(scripted)}

    monkeypatch.setattr(trainer, 'validate', fake_validate)
    result = trainer.fit()
    assert result.best_epoch == 2 and result.best_valid == 0.3
    assert result.epochs_run == 4 and result.stopped_early
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, states[2][key])


def test_min_epochs_delays_stopping(small, monkeypatch):
    trainer = _trainer(small, epochs=30, patience=1, min_epochs=5)
    monkeypatch.setattr(trainer, 'validate', lambda: {'ndcg@10': 0.0})
    result = trainer.fit()
    assert result.epochs_run == 5 and result.best_epoch == 1


def test_validation_only_never_test(small, monkeypatch):
    trainer = _trainer(small, epochs=3)
    seen = []
    evaluate = trainer.evaluator.evaluate

    def spy(score_fn, dataset, split='test', **kw):
        seen.append(split)
        return evaluate(score_fn, dataset, split=split, **kw)

    monkeypatch.setattr(trainer.evaluator, 'evaluate', spy)
    result = trainer.fit()
    assert seen == ['valid'] * 3
    assert result.best_valid > 0


def test_training_improves_over_init(small):
    trainer = _trainer(small, epochs=30, lr=1e-2, eval_every=10)
    before = trainer.validate()['ndcg@10']
    result = trainer.fit()
    assert result.best_valid > before + 0.02
    losses = [h['loss'] for h in result.history]
    assert losses[-1] < losses[0]


def test_checkpoints_and_resume_match_uninterrupted(small, tmp_path):
    full = _trainer(small, epochs=6, out_dir=tmp_path / 'full')
    full.fit()
    assert (tmp_path / 'full' / 'best.pt').exists()
    assert (tmp_path / 'full' / 'last.pt').exists()
    first = _trainer(small, epochs=3, out_dir=tmp_path / 'cut')
    first.fit()
    again = _trainer(small, epochs=6, out_dir=tmp_path / 'cut')
    result = again.fit(resume=True)
    assert result.epochs_run == 6
    assert [h['epoch'] for h in result.history] == list(range(1, 7))
    for key, value in full.model.state_dict().items():
        torch.testing.assert_close(again.model.state_dict()[key], value)
    best = load_checkpoint(tmp_path / 'cut' / 'best.pt')
    assert best['epoch'] == result.best_epoch


def test_nan_loss_stops_with_a_clear_error(small, tmp_path, monkeypatch):
    trainer = _trainer(small, epochs=5, out_dir=tmp_path)
    good_epoch = trainer.train_epoch
    epochs = []

    def epoch():
        # Two good epochs, then the loss turns NaN.
        epochs.append(1)
        if len(epochs) > 2:
            monkeypatch.setattr(trainer, 'loss',
                                lambda user, pos: torch.tensor(float('nan')))
        return good_epoch()

    monkeypatch.setattr(trainer, 'train_epoch', epoch)
    with pytest.raises(FloatingPointError, match="loss became nan.*'lr'"):
        trainer.fit()
    # The last good checkpoint is kept, whole and loadable.
    saved = load_checkpoint(tmp_path / 'last.pt')
    assert saved['epoch'] == 2
    assert all(torch.isfinite(v).all() for v in saved['model'].values()
               if v.is_floating_point())


@pytest.mark.parametrize('loss', ['bpr', 'bce'])
def test_several_negatives_per_positive(small, loss):
    # Every positive against K = 4 negatives, with either loss, on a model
    # trained on every behavior (BPR with K > 1 used to fail on shapes).
    trainer = _trainer(small, model='crgcn', epochs=3, lr=1e-2, loss=loss,
                       num_negatives=4, hard_negative_ratio=0.5,
                       behavior_weights={'view': 1.0, 'cart': 1.0,
                                         'buy': 1.0})
    before = trainer.validate()['ndcg@10']
    result = trainer.fit()
    losses = [h['loss'] for h in result.history]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]
    assert result.best_valid > before


def test_multi_behavior_weights(small):
    trainer = _trainer(small, model='nmtr', epochs=2, loss='bce',
                       behavior_weights={'view': 0.3, 'cart': 0.3,
                                         'buy': 1.0})
    assert set(trainer.samplers) == {'view', 'cart', 'buy'}
    result = trainer.fit()
    assert all(h['loss'] > 0 for h in result.history)
    with pytest.raises(ValueError, match='unknown behaviors'):
        _trainer(small, behavior_weights={'like': 1.0})
    with pytest.raises(ValueError, match="scores the target only"):
        _trainer(small, model='mf', behavior_weights={'view': 1.0,
                                                      'buy': 1.0})


def test_heldout_pairs_stay_in_the_negative_pool(small):
    # The model must not know which items the users buy later: only train
    # positives are forbidden, validation and test pairs may be drawn.
    trainer = _trainer(small, hard_negative_ratio=0.5)
    sampler = trainer.samplers['buy']
    held = small.heldout_index()
    assert not sampler.is_forbidden(held[0], held[1]).any()
    train = small.train['buy']
    assert sampler.is_forbidden(train[0], train[1]).all()


def test_hard_negatives_come_from_viewed_not_bought(small):
    trainer = _trainer(small, hard_negative_ratio=1.0)
    sampler = trainer.samplers['buy']
    users = small.train['buy'][0]
    neg = sampler.sample(users, 2, generator=torch.Generator().manual_seed(0))
    hard = viewed_not_bought(small)
    n = small.num_items
    keys = pair_keys(torch.stack([users.repeat_interleave(2),
                                  neg.reshape(-1)]), n)
    has_hard = torch.isin(users, hard[0]).repeat_interleave(2)
    assert torch.isin(keys[has_hard], pair_keys(hard, n)).all()
    assert not sampler.is_forbidden(users.repeat_interleave(2),
                                    neg.reshape(-1)).any()


@pytest.mark.parametrize('kwargs,match', [
    ({'hard_negative_ratio': 1.5}, "'hard_negative_ratio' must be in"),
    ({'loss': 'hinge'}, "'loss' must be 'bpr' or 'bce'"),
    ({'epochs': 0}, "'epochs' must be a positive int"),
    ({'lr': -1.0}, "'lr' must be a non-negative number"),
    ({'min_epochs': -1}, "'min_epochs' must be a non-negative int"),
])
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)
    with pytest.raises(TypeError, match="'deterministic' must be a bool "
                       r"\(got 'yes'\)"):
        TrainConfig(deterministic='yes')


# Reliability: resume, interruption, lock, determinism ######################

def _states_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _scripted(trainer, monkeypatch, values):
    values = iter(values)
    monkeypatch.setattr(trainer, 'validate',
                        lambda: {'ndcg@10': next(values)})


def test_resume_after_early_stop_trains_no_further(small, tmp_path,
                                                    monkeypatch):
    first = _trainer(small, epochs=30, patience=2, out_dir=tmp_path)
    _scripted(first, monkeypatch, [0.1, 0.3, 0.2, 0.25])
    done = first.fit()
    assert done.stopped_early and done.epochs_run == 4
    again = _trainer(small, epochs=30, patience=2, out_dir=tmp_path)
    monkeypatch.setattr(again, 'train_epoch', lambda: pytest.fail('trained'))
    result = again.fit(resume=True)
    assert result.stopped_early and result.epochs_run == 4
    assert result.history == done.history
    assert _states_equal(again.model.state_dict(), first.model.state_dict())
    # With more patience the stopped run goes on, from the saved counter.
    longer = _trainer(small, epochs=30, patience=3, out_dir=tmp_path)
    _scripted(longer, monkeypatch, [0.2])
    result = longer.fit(resume=True)
    assert result.epochs_run == 5 and result.stopped_early
    assert result.best_epoch == 2


def test_resume_refuses_other_settings_or_model(small, tmp_path):
    _trainer(small, epochs=2, out_dir=tmp_path).fit()
    with pytest.raises(ValueError, match=r"cannot resume from '.*last.pt': "
                       r'it was written with other training settings \(lr: '
                       r"0.001 -> 0.01, seed: 0 -> 1\); only \['epochs', "):
        _trainer(small, epochs=4, lr=0.01, seed=1,
                 out_dir=tmp_path).fit(resume=True)
    torch.manual_seed(0)
    other = build_model('mf', small.num_users, small.num_items,
                        small.behaviors, embedding_dim=4)
    trainer = Trainer(other, small, TrainConfig(epochs=4, progress=False,
                                                batch_size=256),
                      out_dir=tmp_path)
    with pytest.raises(ValueError, match=r"'.*last.pt': it holds another "
                       'model'):
        trainer.fit(resume=True)
    # epochs, patience and the progress bar may change.
    result = _trainer(small, epochs=3, patience=5, progress=True,
                      out_dir=tmp_path).fit(resume=True)
    assert result.epochs_run == 3


@pytest.mark.parametrize('damage, match', [
    (lambda b: b[:len(b) // 2], r'truncated: the header promises \d+ bytes'),
    (lambda b: b[:-1] + bytes([b[-1] ^ 1]), 'sha256 mismatch'),
])
def test_resume_from_damaged_checkpoint(small, tmp_path, damage, match):
    _trainer(small, epochs=2, out_dir=tmp_path).fit()
    last = tmp_path / 'last.pt'
    last.write_bytes(damage(last.read_bytes()))
    with pytest.raises(CheckpointError, match=rf"checkpoint '{last}': "
                       + match):
        _trainer(small, epochs=4, out_dir=tmp_path).fit(resume=True)


def test_held_folder_is_refused_and_stale_temporaries_removed(small,
                                                               tmp_path):
    with lock_run_dir(tmp_path):
        with pytest.raises(RunLockedError, match=rf"run folder '{tmp_path}' "
                           rf'is in use: another run \(pid {os.getpid()} '):
            _trainer(small, epochs=1, out_dir=tmp_path).fit()
    assert not (tmp_path / 'last.pt').exists()
    stale = tmp_path / '.last.pt.abc123.tmp'
    stale.write_bytes(b'half a checkpoint')
    _trainer(small, epochs=1, out_dir=tmp_path).fit()
    assert not stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        'LOCK', 'best.pt', 'last.pt']


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_signal_during_fit_keeps_last_completed_epoch(small, tmp_path,
                                                      monkeypatch, signum):
    trainer = _trainer(small, epochs=6, out_dir=tmp_path)
    train_epoch = trainer.train_epoch
    epochs = []

    def train_epoch_then_signal():
        epochs.append(len(epochs) + 1)
        loss = train_epoch()
        if len(epochs) == 3:  # in epoch 3, before its checkpoint
            signal.raise_signal(signum)
        return loss

    monkeypatch.setattr(trainer, 'train_epoch', train_epoch_then_signal)
    # A shell starts background jobs with SIGINT ignored; give it Python's
    # own handler (what an interactive run has) for this test.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(TrainingInterrupted, match=rf'interrupted by '
                           rf'{signal.Signals(signum).name} after 2 '
                           r'completed epoch\(s\); .*last.pt holds '
                           r'epoch 2') as info:
            trainer.fit()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert info.value.exit_code == 128 + signum
    assert info.value.result.epochs_run == 2
    assert [h['epoch'] for h in info.value.result.history] == [1, 2]
    assert info.value.checkpoint == tmp_path / 'last.pt'
    assert load_checkpoint(tmp_path / 'last.pt')['epoch'] == 2
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    # The folder is free again, and the resumed run is the uninterrupted one.
    resumed = _trainer(small, epochs=6, out_dir=tmp_path)
    result = resumed.fit(resume=True)
    full = _trainer(small, epochs=6)
    assert result.history == full.fit().history
    assert _states_equal(resumed.model.state_dict(), full.model.state_dict())


def test_signal_without_out_dir(small, monkeypatch):
    trainer = _trainer(small, epochs=3)

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, 'train_epoch', interrupted)
    with pytest.raises(TrainingInterrupted, match='after 0 completed '
                       r'epoch\(s\); no checkpoint to resume from') as info:
        trainer.fit()
    assert info.value.checkpoint is None and info.value.exit_code == 130


@pytest.mark.parametrize('device', DEVICES)
def test_deterministic_runs_are_bit_identical(small, monkeypatch, device):
    seen = []
    validate = Trainer.validate

    def spy(self):
        seen.append(torch.are_deterministic_algorithms_enabled())
        return validate(self)

    monkeypatch.setattr(Trainer, 'validate', spy)
    runs = []
    for _ in range(2):
        trainer = _trainer(small, model='lightgcn', epochs=3,
                           deterministic=True, device=device)
        result = trainer.fit()
        runs.append((trainer.model(trainer.graph), result.history))
    assert seen == [True] * 6
    assert not torch.are_deterministic_algorithms_enabled()
    (emb_a, hist_a), (emb_b, hist_b) = runs
    assert hist_a == hist_b and len(hist_a) == 3
    for key in emb_a:
        assert torch.equal(emb_a[key], emb_b[key])


def test_plugin_hooks_add_auxiliary_terms_and_see_validation(tiny):
    from graphrec.data.split import carve_validation
    from graphrec.datasets import make_synthetic
    from graphrec.models import MF

    class Hooked(MF):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.register_buffer('refreshes',
                                 torch.zeros((), dtype=torch.long))
            self.calls = []

        def auxiliary_loss(self, emb, graph, batch):
            assert set(batch) == {'buy'}
            u, p, n = batch['buy']
            assert u.shape == p.shape and n.shape == (u.numel(), 1)
            # A term with a gradient: pulls user norms down.
            return {'norm': 0.5 * emb['user'][u].pow(2).sum(-1).mean()}

        def on_validation(self, graph, improved):
            self.calls.append(bool(improved))
            if improved:
                self.refreshes += 1

    data = carve_validation(make_synthetic(num_users=60, num_items=40,
                                           seed=1), seed=0)
    torch.manual_seed(0)
    model = Hooked(data.num_users, data.num_items, embedding_dim=8)
    cfg = TrainConfig(epochs=4, batch_size=64, lr=0.01, progress=False)
    result = Trainer(model, data, cfg).fit()
    assert len(model.calls) == 4
    assert model.calls[0] is True  # the first validation always improves
    # The refresh counter is a buffer: the best state keeps the value it had
    # when the best epoch was judged, before that epoch's refresh.
    assert int(model.refreshes) == sum(model.calls[:result.best_epoch - 1])
    terms = [row['aux/norm'] for row in result.history]
    assert all(t > 0 for t in terms)

    # The auxiliary term really enters the loss: the user norms shrink.
    torch.manual_seed(0)
    plain = MF(data.num_users, data.num_items, embedding_dim=8)
    Trainer(plain, data, cfg).fit()
    assert (model.user_embedding.weight.norm() <
            plain.user_embedding.weight.norm())


def test_refit_retrains_on_train_plus_valid_for_the_chosen_epochs():
    import dataclasses

    from graphrec.data import BehaviorGraph
    from graphrec.eval import Evaluator
    from graphrec.train import run_experiment, seed_everything
    from graphrec.train.experiment import merge_validation

    data = carve_validation(make_synthetic(num_users=80, num_items=50,
                                           seed=2), seed=0)
    cfg = TrainConfig(epochs=6, batch_size=128, lr=0.02, patience=2,
                      progress=False, seed=3, refit=True)
    row = run_experiment('mf', data, {'embedding_dim': 8}, cfg)
    chosen = row['best_epoch']
    assert row['selection'].startswith(f'epochs chosen on validation '
                                       f'({chosen})')
    # By hand: the same seed, train + valid, `chosen` epochs, then test.
    merged = merge_validation(data)
    assert merged.valid is None
    assert merged.train['buy'].size(1) == (data.train['buy'].size(1) +
                                           data.valid.size(1))
    assert torch.equal(merged.test, data.test)
    seed_everything(3)
    net = build_model('mf', data.num_users, data.num_items, data.behaviors,
                      embedding_dim=8)
    Trainer(net, merged, dataclasses.replace(cfg, epochs=chosen,
                                             refit=False)).fit()
    test = Evaluator(ks=(10, 20)).evaluate(
        net.score_fn(BehaviorGraph.from_dataset(merged)), data)
    assert row['metrics']['ndcg@10'] == test['ndcg@10']
    assert row['metrics']['hr@20'] == test['hr@20']
    with pytest.raises(ValueError, match='no validation pairs'):
        merge_validation(merged)
    with pytest.raises(TypeError, match="'refit' must be a bool"):
        TrainConfig(refit=1)


def test_refit_replays_the_validation_hooks_before_the_best_epoch():
    from graphrec.models import MF
    from graphrec.train import run_experiment
    from graphrec.train.experiment import (
        merge_validation,
        replayed_validations,
    )
    from graphrec.train.trainer import TrainResult

    class Hooked(MF):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.calls = []

        def on_validation(self, graph, improved):
            self.calls.append(bool(improved))

    # Literal history: validations at 2, 4, 6, 8 with values .1 .3 .2 .4;
    # best epoch 8: epochs 2 (improved), 4 (improved), 6 (not) replayed.
    fit = TrainResult(best_epoch=8, history=[
        {'epoch': e, 'loss': 1.0, **({'ndcg@10': v} if v else {})}
        for e, v in [(1, None), (2, .1), (3, None), (4, .3), (6, .2),
                     (8, .4), (10, .35)]])
    assert replayed_validations(fit, 'ndcg@10') == [
        (2, True), (4, True), (6, False)]
    assert replayed_validations(fit, 'hr@10') == []

    data = carve_validation(make_synthetic(num_users=60, num_items=40,
                                           seed=1), seed=0)
    merged = merge_validation(data)
    cfg = TrainConfig(epochs=5, batch_size=64, lr=0.01, progress=False,
                      replay_validations=[(2, True), (4, False), (9, True)])
    model = Hooked(data.num_users, data.num_items, embedding_dim=8)
    history = Trainer(model, merged, cfg).fit().history
    assert model.calls == [True, False] and len(history) == 5
    # With validation pairs the real validations drive the hook instead.
    model = Hooked(data.num_users, data.num_items, embedding_dim=8)
    cfg = TrainConfig(epochs=3, batch_size=64, lr=0.01, progress=False,
                      eval_every=3, replay_validations=[(1, False)])
    Trainer(model, data, cfg).fit()
    assert model.calls == [True]
    # run_experiment's refit passes the selecting run's validations on.
    seen = {}
    original = Trainer.__init__

    def spy(self, model, dataset, config=None, *args, **kwargs):
        if dataset.valid is None:
            seen['replay'] = config.replay_validations
        original(self, model, dataset, config, *args, **kwargs)

    try:
        Trainer.__init__ = spy
        row = run_experiment('mf', data, {'embedding_dim': 8}, TrainConfig(
            epochs=6, batch_size=128, lr=0.02, patience=6, progress=False,
            refit=True))
    finally:
        Trainer.__init__ = original
    best = row['best_epoch']
    assert best > 2  # something to replay
    expected, top = [], None
    for epoch, _, value in row['curve']:
        if value is not None and epoch < best:
            expected.append((epoch, top is None or value > top))
            top = value if expected[-1][1] else top
    assert seen['replay'] == expected and len(expected) == best - 1
    with pytest.raises(ValueError, match="'replay_validations' must be a "
                       "list of \\(epoch > 0, improved: bool\\) pairs"):
        TrainConfig(replay_validations=[(0, True)])


def test_run_without_validation_says_nothing_was_chosen_on_it():
    from graphrec.train import run_experiment
    data = make_synthetic(num_users=40, num_items=30, seed=2)
    assert data.valid is None
    cfg = TrainConfig(epochs=2, batch_size=128, lr=0.02, progress=False)
    row = run_experiment('mf', data, {'embedding_dim': 8}, cfg)
    assert row['selection'].startswith('no validation pairs: the last '
                                       'epoch')
    assert 'best validation' not in row['selection']
