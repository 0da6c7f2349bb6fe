import json
import re
import shutil
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / 'benchmarks'


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    for name in ('run', 'tune', 'published'):
        sys.modules.pop(name, None)
    import run
    import tune
    return run, tune


def test_tune_then_run_on_synthetic(bench, tmp_path, capsys):
    run, tune = bench
    config = tmp_path / 'multi.json'
    spec = json.loads((BENCH / 'configs' / 'multi.json').read_text())
    spec['defaults']['train'].update(epochs=2, min_epochs=0, eval_every=1)
    spec['search'] = {'lr': [0.001, 0.01]}
    spec['models'] = {k: spec['models'][k] for k in ('mbcgcn', 'crgcn')}
    config.write_text(json.dumps(spec))
    tune.main(['--config', str(config), '--dataset', 'synthetic',
               '--no-progress'])
    tuned = json.loads((tmp_path / 'tuned-multi-synthetic.json').read_text())
    for label in ('mbcgcn', 'crgcn'):
        trials = tuned['trials'][label]
        assert [t['point']['lr'] for t in trials] == [0.001, 0.01]
        best = max(trials, key=lambda t: t['valid'])
        assert tuned['chosen'][label]['train'] == best['point']
    # An interrupted search resumes: nothing is trained twice.
    shutil.copy(tmp_path / 'tuned-multi-synthetic.json', tmp_path / 'a')
    tune.main(['--config', str(config), '--dataset', 'synthetic',
               '--no-progress'])
    assert (tmp_path / 'a').read_text() == (
        tmp_path / 'tuned-multi-synthetic.json').read_text()
    # Changed settings make the trials stale: the tuner says so instead of
    # reusing them.
    changed = json.loads(config.read_text())
    changed['models']['crgcn']['kwargs']['embedding_dim'] = 16
    config.write_text(json.dumps(changed))
    with pytest.raises(SystemExit):
        tune.main(['--config', str(config), '--dataset', 'synthetic',
                   '--no-progress'])
    assert "for 'crgcn' under other settings" in capsys.readouterr().err
    # ... and so does the benchmark, instead of running with stale values.
    with pytest.raises(ValueError, match="for 'crgcn' under other settings"):
        run.main(['--config', str(config), '--dataset', 'synthetic',
                  '--seeds', '0', '--results', str(tmp_path / 'x.jsonl'),
                  '--pages', str(tmp_path), '--no-progress'])
    config.write_text(json.dumps(spec))
    # Another seed is another search.
    with pytest.raises(SystemExit):
        tune.main(['--config', str(config), '--dataset', 'synthetic',
                   '--no-progress', '--seed', '1'])
    assert 'was made with --seed 0' in capsys.readouterr().err

    results = tmp_path / 'rows.jsonl'
    run.main(['--config', str(config), '--dataset', 'synthetic', '--seeds',
              '0', '1', '--results', str(results), '--pages', str(tmp_path),
              '--no-progress'])
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert len(rows) == 4
    for row in rows:
        assert row['config']['lr'] == tuned['chosen'][row['label']][
            'train']['lr']
        assert row['selection'].startswith('best validation epoch')
    page = (tmp_path / 'multi-synthetic.md').read_text()
    assert '| synthetic | mbcgcn | 2 |' in page
    assert 'tuned-multi-synthetic.json' in page

    # Rows appended out of order (runs split across processes) are listed
    # in the config's order, and '--compare' given twice keeps both files.
    results.write_text(''.join(reversed(
        results.read_text().splitlines(keepends=True))))
    for name in ('a', 'b'):
        (tmp_path / f'{name}.jsonl').write_text(''.join(
            json.dumps({**row, 'label': f'other-{name}'}) + '\n'
            for row in rows if row['label'] == 'crgcn'))
    run.main(['--config', str(config), '--dataset', 'synthetic', '--seeds',
              '0', '1', '--results', str(results), '--pages', str(tmp_path),
              '--report-only', '--compare', str(tmp_path / 'a.jsonl'),
              '--compare', str(tmp_path / 'b.jsonl')])
    page = (tmp_path / 'multi-synthetic.md').read_text()
    assert page.index('| synthetic | mbcgcn |') < page.index(
        '| synthetic | crgcn |')
    assert '| synthetic | other-a | 2 |' in page
    assert '| synthetic | other-b | 2 |' in page
    # Compared rows count as baselines: the significance reference is one
    # of them (copies of crgcn, not marked as baselines in their files).
    assert re.search(r'\| synthetic \| mbcgcn \| other-[ab] \|', page)


def test_caged_overhead_on_synthetic(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(BENCH))
    sys.modules.pop('caged_overhead', None)
    import caged_overhead
    caged_overhead.main(['--dataset', 'synthetic', '--epochs', '2',
                         '--repeats', '2', '--out', str(tmp_path)])
    rows = [json.loads(line) for line in
            (tmp_path / 'caged-overhead.jsonl').read_text().splitlines()]
    # Every pair, every repeat; the order alternates between repeats.
    assert [(r['label'], r['repeat']) for r in rows] == [
        ('lightgcn-all', 0), ('lightgcn-all+caged', 0),
        ('lightgcn-all+caged', 1), ('lightgcn-all', 1),
        ('crgcn', 0), ('crgcn+caged', 0), ('crgcn+caged', 1), ('crgcn', 1)]
    for row in rows:
        assert row['epochs'] == 2
        # Only the estimator refreshes (the trainer validates at the end).
        assert (row['refresh_seconds'] > 0) == row['label'].endswith('caged')
        assert row['amortised_epoch_seconds'] == pytest.approx(
            (row['train_seconds'] + row['refresh_seconds']) / 2)
    page = (tmp_path / 'caged-overhead-synthetic.md').read_text()
    a, b = rows[0], rows[1]
    ratio = b['amortised_epoch_seconds'] / a['amortised_epoch_seconds']
    assert '| lightgcn-all | 0 | backbone first | ' in page
    assert f'{ratio:.2f}x |' in page
    with pytest.raises(SystemExit):
        caged_overhead.main(['--dataset', 'synthetic', '--epochs', '0'])


def test_slot_tradeoff_lists_and_page(monkeypatch, tmp_path):
    import torch
    monkeypatch.syspath_prepend(str(BENCH))
    sys.modules.pop('slot_tradeoff', None)
    import slot_tradeoff
    # Two users, six items: visited items 0-2 (user 0) and 4 (user 1).
    visited = torch.tensor([[1, 1, 1, 0, 0, 0], [0, 0, 0, 0, 1, 0]]).bool()
    bought = torch.tensor([[0, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1]]).bool()
    vis_score = torch.tensor([[3., 9., 3., 0., 0., 0.],
                              [0., 0., 0., 0., 1., 0.]])
    new_score = torch.tensor([[0., 0., 0., 5., 1., 7.],
                              [4., 3., 3., 1., 0., 9.]])

    def hits(truth, ks, size=3):
        return slot_tradeoff.pessimistic_hits(
            vis_score, new_score, visited, bought, torch.tensor(truth), ks,
            size).tolist()

    # User 0, visited truth 0: tied with item 2 (item 1 was bought), so
    # its pessimistic rank is 2: in the list while two visited places
    # remain (k <= 1).
    assert [h[0] for h in hits([0, 4], [0, 1, 2, 3])] == [True, True,
                                                          False, False]
    # User 1 has one visited item: it stays while one place is visited,
    # and new items fill the rest; new item 2 ties with item 1, so it is
    # third among the new ones and needs all three places.
    assert [h[1] for h in hits([0, 4], [0, 2, 3])] == [True, True, False]
    assert [h[1] for h in hits([0, 2], [0, 2, 3])] == [False, False, True]
    # New item 0 is first among the new ones: with one place in all, it
    # needs that place (k = 1).
    assert [h[1] for h in hits([0, 0], [0, 1], size=1)] == [False, True]
    # A bought item is never a hit, whatever its score.
    assert hits([1, 5], [0, 3]) == [[False, False], [False, False]]
    with pytest.raises(ValueError, match="'k' must be in"):
        hits([0, 4], [4])
    slot_tradeoff.main(['--dataset', 'synthetic', '--epochs', '2',
                        '--pages', str(tmp_path)])
    page = (tmp_path / 'slot-tradeoff-synthetic.md').read_text()
    assert page.count('\n| ') == 12  # header and k = 0 ... 10
    assert (tmp_path / 'slot-tradeoff-synthetic.png').exists()


def test_explore_rerank_scores_every_variant_on_both_graphs(monkeypatch,
                                                             capsys):
    monkeypatch.syspath_prepend(str(BENCH))
    sys.modules.pop('explore_rerank', None)
    import explore_rerank
    explore_rerank.main(['--dataset', 'synthetic', '--epochs', '2',
                         '--variants', 'hidden=0, epochs=3', 'hidden=8'])
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if 'hr@10' in line]
    assert [line.split(' hr@10')[0].strip() for line in lines] == [
        'first stage, its graph', 'first stage, V2 put back',
        're-ranker hidden=0, epochs=3, its graph',
        're-ranker hidden=0, epochs=3, V2 put back',
        're-ranker hidden=8, its graph', 're-ranker hidden=8, V2 put back']
    # The re-ranker learns synthetic's visited signal (first stage ~0.1).
    ndcg = [float(line.split('ndcg@10 ')[1].split()[0]) for line in lines]
    assert min(ndcg[4:]) > 2 * max(ndcg[:2])


def test_slot_tradeoff_with_user_cf(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(BENCH))
    for name in ('slot_tradeoff', 'explore_signals'):
        sys.modules.pop(name, None)
    import slot_tradeoff
    slot_tradeoff.main(['--dataset', 'synthetic', '--unvisited', 'user-cf',
                        '--neighbours', '20', '--pages', str(tmp_path)])
    page = (tmp_path / 'slot-tradeoff-synthetic-user-cf.md').read_text()
    assert '--unvisited user-cf --neighbours 20' in page
    rows = [line.split(' | ') for line in page.splitlines()
            if line.startswith('| ') and line[2].isdigit()]
    assert [int(r[0][2:]) for r in rows] == list(range(11))
    # All ten places to unvisited items: no visited validation item is hit.
    assert float(rows[-1][2]) == 0.0


def test_explore_signals_cf_scores_match_dense_formulas(monkeypatch):
    import torch
    monkeypatch.syspath_prepend(str(BENCH))
    sys.modules.pop('explore_signals', None)
    import explore_signals

    from graphrec.cli import load_data
    data = load_data('synthetic', split_seed=0)
    U, n_items = data.num_users, data.num_items
    cf = explore_signals.CFScores(data)

    def dense(b):
        m = torch.zeros(U, n_items)
        m[data.train[b][0], data.train[b][1]] = 1.0
        return m

    Y, user = dense(data.target), torch.arange(0, U, 3)
    for x in data.behaviors:
        X = dense(x)
        nx, ny = X.sum(0).clamp(min=1), Y.sum(0).clamp(min=1)
        S = (X.t() @ Y) / (nx.sqrt()[:, None] * ny.sqrt()[None])
        S.fill_diagonal_(0)  # the item itself left out
        expect = X[user] @ S / X[user].sum(1, keepdim=True).clamp(min=1)
        assert torch.allclose(cf.item(x, user), expect, atol=1e-5)
        # Every other user as a neighbour (no ties to break).
        n = X.sum(1).clamp(min=1)
        W = X[user] @ X.t() / (n[user].sqrt()[:, None] * n.sqrt()[None])
        W[torch.arange(user.numel()), user] = 0
        assert torch.allclose(cf.user(x, U - 1, user), W @ Y, atol=1e-4)
        # k = 1: only the nearest user weighs in (a user whose nearest one
        # is not tied).
        top = W.topk(2, dim=1).values
        r = int(torch.nonzero(top[:, 0] > top[:, 1] + 1e-4)[0])
        best = W[r].argmax()
        assert torch.allclose(cf.user(x, 1, user[r:r + 1])[0],
                              W[r, best] * Y[best], atol=1e-5)


def test_explore_signals_page(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(BENCH))
    sys.modules.pop('explore_signals', None)
    import explore_signals
    explore_signals.main(['--dataset', 'synthetic', '--epochs', '2',
                          '--rerank-seeds', '0', '--neighbours', '20',
                          '--pages', str(tmp_path / 'new')])
    page = (tmp_path / 'new' / 'signals-synthetic.md').read_text()
    rows = [line.strip('| ').split(' | ') for line in page.splitlines()
            if line.startswith('| ') and '---' not in line
            and not line.startswith(('| ranker', '| features', '| k |'))]
    # 2 + 3 item-based + 2 user-based rankers; 4 feature sets; k = 0..10.
    assert len(rows) == 7 + 4 + 11
    assert 'the test set is not read' in page
    # All ten places to unvisited items: no visited item is hit, and the
    # unvisited ones get what user-based CF on purchases gets alone.
    alone = dict((r[0], r[1]) for r in rows[:7])['user-based CF, buy, k = 20']
    assert rows[-1][0] == '10' and float(rows[-1][2]) == 0.0
    assert rows[-1][3] == alone


def test_explore_signals_ranks_ties_pessimistically_and_cross_fits(
        monkeypatch):
    import torch
    monkeypatch.syspath_prepend(str(BENCH))
    sys.modules.pop('explore_signals', None)
    import explore_signals

    from graphrec.train import RerankConfig
    # The truth (item 1) ties with item 2: it goes after it (rank 2).
    score = torch.tensor([[3.0, 1.0, 1.0, 0.0]])
    keep = torch.ones(1, 4, dtype=torch.bool)
    hit, ndcg = explore_signals.rank_metrics(score, torch.tensor([1]), keep)
    assert hit.item() == 1.0
    assert abs(ndcg.item() - 1 / torch.log2(torch.tensor(4.0)).item()) < 1e-6
    # Out of the ranking (keep) items do not count.
    keep[0, 0] = False
    _, ndcg = explore_signals.rank_metrics(score, torch.tensor([1]), keep)
    assert abs(ndcg.item() - 1 / torch.log2(torch.tensor(3.0)).item()) < 1e-6

    # A feature marks each user's truth with +1 in fold 0 and -1 in fold 1.
    # Fitted on the other fold, the re-ranker learns the opposite sign and
    # puts the truth last; fitted on the scored fold it would find it.
    U, K = 400, 30
    fold = torch.randint(2, (U, ), generator=torch.Generator().manual_seed(0))
    truth = torch.randint(K, (U, ), generator=torch.Generator().manual_seed(1))
    feature = torch.zeros(U, K, 1)
    feature[torch.arange(U), truth, 0] = torch.where(fold == 0, 1.0, -1.0)
    chunks = [[torch.arange(s, s + 100), feature[s:s + 100],
               torch.zeros(100, K, 0), torch.ones(100, K, dtype=torch.bool),
               truth[s:s + 100], None] for s in range(0, U, 100)]
    (hr, _), scores = explore_signals.cross_fit(
        chunks, [], RerankConfig(epochs=3), 0, U)
    assert hr < 0.2
    assert len(scores) == 4 and scores[0].shape == (100, K)


def test_crossfit_rerank_prints_every_variant(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCH))
    sys.modules.pop('crossfit_rerank', None)
    import crossfit_rerank
    crossfit_rerank.main([
        '--config', str(BENCH / 'configs' / 'full.json'),
        '--dataset', 'synthetic', '--label', 'causal_cascade-rerank',
        '--variants', 'epochs=2, hidden=8',
        'epochs=2, hidden=8, neighbours=20', '--neighbours', '20'])
    lines = [line.strip() for line in capsys.readouterr().out.splitlines()
             if 'valid NDCG@10' in line]
    assert [line.split(' valid')[0].split(' (')[0].strip()
            for line in lines] == [
        'userknn k=20', 'first stage', 're-ranker epochs=2, hidden=8',
        're-ranker epochs=2, hidden=8, neighbours=20']
    with pytest.raises(SystemExit):
        crossfit_rerank.main(['--config', str(BENCH / 'configs' /
                                              'full.json'),
                              '--dataset', 'synthetic', '--label', 'nope'])
