import pytest
import torch

from graphrec.data import carve_validation, pair_keys, viewed_not_bought
from graphrec.datasets import make_synthetic
from graphrec.models import build_model
from graphrec.train import TrainConfig, Trainer


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
    best = torch.load(tmp_path / 'cut' / 'best.pt', weights_only=False)
    assert best['epoch'] == result.best_epoch


def test_nan_loss_stops_with_a_clear_error(small, tmp_path, monkeypatch):
    trainer = _trainer(small, epochs=5, out_dir=tmp_path)
    trainer.fit()
    saved = torch.load(tmp_path / 'last.pt', weights_only=False)
    bad = _trainer(small, epochs=5, out_dir=tmp_path / 'nan')
    monkeypatch.setattr(bad, 'loss',
                        lambda user, pos: torch.tensor(float('nan')))
    with pytest.raises(FloatingPointError, match="loss became nan.*'lr'"):
        bad.fit()
    assert saved['epoch'] == 5


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


def test_negatives_exclude_heldout(small):
    trainer = _trainer(small)
    sampler = trainer.samplers['buy']
    held = small.heldout_index()
    assert sampler.is_forbidden(held[0], held[1]).all()


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
