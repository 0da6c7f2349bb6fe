import json
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


def test_tune_then_run_on_synthetic(bench, tmp_path):
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
