import json
from pathlib import Path

import pytest

from graphrec.bench import (
    RunSpec,
    ablation_specs,
    bench_page,
    load_config,
    run_grid,
)
from graphrec.cli import main
from graphrec.train.records import load_checkpoint, read_jsonl

CONFIG = {
    'defaults': {'train': {'epochs': 2, 'batch_size': 1024, 'lr': 0.01,
                           'eval_every': 1, 'patience': 2}},
    'datasets': {'synthetic': {'train': {'epochs': 3}}},
    'models': {
        'pop': {'model': 'pop', 'baseline': True},
        'mf': {'model': 'mf', 'kwargs': {'embedding_dim': 8},
               'baseline': True},
        'mbcgcn': {'model': 'mbcgcn', 'kwargs': {'embedding_dim': 8},
                   'train': {'lr': 0.02}},
    },
}


@pytest.fixture
def config(tmp_path):
    path = tmp_path / 'small.json'
    path.write_text(json.dumps(CONFIG))
    return path


def test_load_config_merges_defaults_dataset_model_and_tuned(config):
    _, specs, tuned = load_config(config, 'synthetic')
    assert tuned is None
    assert specs['mbcgcn'].train == {'epochs': 3, 'batch_size': 1024,
                                     'lr': 0.02, 'eval_every': 1,
                                     'patience': 2}
    assert specs['mf'].baseline and not specs['mbcgcn'].baseline
    (config.parent / 'tuned-small-synthetic.json').write_text(json.dumps(
        {'chosen': {'mf': {'train': {'lr': 0.5}}}}))
    _, specs, tuned = load_config(config, 'synthetic')
    assert tuned.name == 'tuned-small-synthetic.json'
    assert specs['mf'].train['lr'] == 0.5
    bad = config.parent / 'bad.json'
    bad.write_text(json.dumps({'models': {}}))
    with pytest.raises(ValueError, match="has no 'defaults' entry"):
        load_config(bad, 'synthetic')


def test_load_config_per_dataset_model_overrides(config):
    data = json.loads(config.read_text())
    data['datasets']['synthetic']['models'] = {
        'mbcgcn': {'kwargs': {'embedding_dim': 4}, 'train': {'lr': 0.03}}}
    config.write_text(json.dumps(data))
    _, specs, _ = load_config(config, 'synthetic')
    assert specs['mbcgcn'].kwargs == {'embedding_dim': 4}
    assert specs['mbcgcn'].train['lr'] == 0.03
    assert specs['mbcgcn'].train['epochs'] == 3
    assert specs['mf'].kwargs == {'embedding_dim': 8}
    # Another dataset keeps the model's own entry.
    _, specs, _ = load_config(config, 'tmall')
    assert specs['mbcgcn'].kwargs == {'embedding_dim': 8}
    assert specs['mbcgcn'].train['lr'] == 0.02
    # The tuned values still come last.
    (config.parent / 'tuned-small-synthetic.json').write_text(json.dumps(
        {'chosen': {'mbcgcn': {'train': {'lr': 0.5}}}}))
    _, specs, _ = load_config(config, 'synthetic')
    assert specs['mbcgcn'].train['lr'] == 0.5
    data['datasets']['synthetic']['models'] = {'gcn': {'kwargs': {}}}
    config.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"names \['gcn'\], which are not"):
        load_config(config, 'synthetic')
    data['datasets']['synthetic']['models'] = {'mf': {'kwarg': {}}}
    config.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"'train' only \(got \['kwarg'\]"):
        load_config(config, 'synthetic')


def test_load_config_model_on_some_datasets_only(config):
    data = json.loads(config.read_text())
    data['models']['mf']['datasets'] = ['tmall']
    config.write_text(json.dumps(data))
    assert 'mf' not in load_config(config, 'synthetic')[1]
    assert 'mf' in load_config(config, 'tmall')[1]
    data['models']['mf']['datasets'] = 'tmall'
    config.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="'datasets' must be a list"):
        load_config(config, 'tmall')


def test_ablation_specs_are_overrides_and_transforms():
    base = RunSpec('full', 'mbcgcn', {'embedding_dim': 8}, {'lr': 0.1})
    specs = ablation_specs(base, {'no_transform': {'transform': 'none'}},
                           ['view@0.5'])
    assert [s.label for s in specs] == ['full', 'full/no_transform',
                                        'full/graph:view@0.5']
    assert specs[1].kwargs == {'embedding_dim': 8, 'transform': 'none'}
    assert specs[2].transforms == ('view@0.5', )
    assert all(s.train == {'lr': 0.1} for s in specs)
    assert len({s.fingerprint() for s in specs}) == 3


def test_run_grid_resumes_and_writes_per_user(config, tmp_path):
    _, specs, _ = load_config(config, 'synthetic')
    results = tmp_path / 'rows.jsonl'
    lines = []
    rows = run_grid([specs['pop'], specs['mf']], ['synthetic'], [0, 1],
                    results, progress=False, log=lines.append)
    assert len(rows) == 4 and len(lines) == 4
    per = load_checkpoint(rows[2]['per_user_file'])
    assert per['hr@10'].mean().item() == pytest.approx(
        rows[2]['metrics']['hr@10'])
    assert rows[2]['curve'][0][0] == 1  # [epoch, loss, valid metric]
    # A second call runs nothing: every (dataset, label, seed, spec) is done.
    again = run_grid([specs['pop'], specs['mf']], ['synthetic'], [0, 1],
                     results, progress=False, log=lines.append)
    assert len(lines) == 4
    assert [r['metrics'] for r in again] == [r['metrics'] for r in rows]
    # Changing the settings makes it a different run.
    specs['mf'].train['lr'] = 0.05
    run_grid([specs['mf']], ['synthetic'], [0], results, progress=False,
             log=lines.append)
    assert len(lines) == 5 and len(read_jsonl(results)) == 5


def test_per_user_files_survive_moving_the_results(config, tmp_path):
    import shutil

    from graphrec.bench import significance

    _, specs, _ = load_config(config, 'synthetic')
    results = tmp_path / 'a' / 'rows.jsonl'
    run_grid([specs['pop'], specs['mf']], ['synthetic'], [0, 1], results,
             store=tmp_path / 'a' / 'per-user', progress=False)
    # Stored relative to the results file, read back as existing paths.
    stored = [json.loads(line)['per_user_file']
              for line in results.read_text().splitlines()]
    assert stored[0].startswith('per-user/')
    before = significance(read_jsonl(results))
    assert len(before) == 1 and before[0]['label'] == 'mf'
    # The folder moved (another clone): the rows still find their files.
    shutil.move(str(tmp_path / 'a'), str(tmp_path / 'b'))
    rows = read_jsonl(tmp_path / 'b' / 'rows.jsonl')
    assert all(str(tmp_path / 'b') in r['per_user_file'] for r in rows)
    assert significance(rows) == before
    # Rows of older versions hold absolute paths; those that no longer
    # exist are found by their trailing parts under the results folder.
    old = tmp_path / 'b' / 'old.jsonl'
    old.write_text(''.join(
        json.dumps({**json.loads(line), 'per_user_file': str(
            tmp_path / 'gone' / 'per-user' / Path(
                json.loads(line)['per_user_file']).name)}) + '\n'
        for line in (tmp_path / 'b' / 'rows.jsonl').read_text(
        ).splitlines()))
    assert significance(read_jsonl(old)) == before


def test_significance_uses_the_latest_run_per_seed(config, tmp_path):
    from graphrec.bench import significance

    _, specs, _ = load_config(config, 'synthetic')
    results = tmp_path / 'rows.jsonl'
    run_grid([specs['pop'], specs['mf']], ['synthetic'], [0, 1], results,
             progress=False)
    # The same seeds of 'mf' rerun with other settings (a changed default):
    # the table shows the new runs only, and so must the test.
    specs['mf'].train['lr'] = 0.05
    run_grid([specs['mf']], ['synthetic'], [0, 1], results, progress=False)
    rows = read_jsonl(results)
    assert len(rows) == 6
    latest = [r for r in rows[:2]] + rows[4:]
    (entry, ) = significance(rows)
    assert entry['seeds'] == 2
    assert significance(latest) == [entry]
    assert significance(rows[:4]) != [entry]


def test_tables_keep_the_latest_settings_only(config, tmp_path):
    # Three seeds of one setting, then one seed of another (a smoke run or
    # a changed config): the label's figures are the new run's alone.
    from graphrec.report import group_rows, markdown_table
    _, specs, _ = load_config(config, 'synthetic')
    results = tmp_path / 'rows.jsonl'
    run_grid([specs['mf']], ['synthetic'], [0, 1, 2], results,
             progress=False)
    specs['mf'].train['lr'] = 0.05
    (new, ) = run_grid([specs['mf']], ['synthetic'], [0], results,
                       progress=False)
    rows = read_jsonl(results)
    (group, ) = group_rows(rows).values()
    assert [r['spec'] for r in group] == [new['spec']]
    assert group[0]['metrics'] == new['metrics']
    assert '| synthetic | mf | 1 |' in markdown_table(rows, ['hr@10'])
    # the earlier settings alone still make a table of three seeds
    (old, ) = group_rows(rows[:3]).values()
    assert len(old) == 3


@pytest.mark.parametrize('label', ['mf', 'mf/an_ablation'])
def test_rerun_runs_complete_runs_again(config, tmp_path, label):
    from dataclasses import replace
    _, specs, _ = load_config(config, 'synthetic')
    # an ablation's label has a '/' (its per-user files sit in a folder)
    specs['mf'] = replace(specs['mf'], label=label)
    results = tmp_path / 'rows.jsonl'
    lines = []
    first = run_grid([specs['mf']], ['synthetic'], [0], results,
                     progress=False, log=lines.append)
    run_grid([specs['mf']], ['synthetic'], [0], results, progress=False,
             log=lines.append)
    assert len(lines) == 1
    again = run_grid([specs['mf']], ['synthetic'], [0], results,
                     progress=False, log=lines.append, rerun=True)
    assert len(lines) == 2 and len(read_jsonl(results)) == 2
    # same code, same seed: the same figures
    assert again[0]['metrics'] == first[0]['metrics']
    # the earlier row keeps its own per-user file
    old, new = (Path(r['per_user_file']) for r in read_jsonl(results))
    assert old != new and old.exists() and new.exists()
    assert new.name.endswith('-s0-rerun1.pt')


def test_an_interrupted_rerun_resumes(config, tmp_path):
    from datetime import datetime

    from graphrec.bench import rerun_since

    _, specs, _ = load_config(config, 'synthetic')
    results = tmp_path / 'rows.jsonl'
    lines = []
    run_grid([specs['mf']], ['synthetic'], [0, 1], results, progress=False,
             log=lines.append)
    logged = []
    since = rerun_since('now', log=logged.append)
    assert f'--rerun {since}' in logged[0]
    # a rerun that stopped after seed 0 ...
    run_grid([specs['mf']], ['synthetic'], [0], results, progress=False,
             log=lines.append, rerun=since)
    assert len(lines) == 3
    # ... resumed with the same time runs seed 1 only
    rows = run_grid([specs['mf']], ['synthetic'], [0, 1], results,
                    progress=False, log=lines.append, rerun=since)
    assert len(lines) == 4 and 'seed 1' in lines[-1]
    assert len(read_jsonl(results)) == 4
    assert all(datetime.fromisoformat(r['time']) >= datetime.fromisoformat(
        since) for r in rows)
    assert rerun_since(None) is False
    with pytest.raises(ValueError, match="'--rerun' expects an ISO time"):
        rerun_since('yesterday')


def test_significance_needs_the_same_users(config, tmp_path):
    import torch

    from graphrec.bench import significance
    from graphrec.train.records import atomic_torch_save

    _, specs, _ = load_config(config, 'synthetic')
    results = tmp_path / 'rows.jsonl'
    run_grid([specs['pop'], specs['mf']], ['synthetic'], [0], results,
             progress=False)
    rows = read_jsonl(results)
    path = Path(rows[1]['per_user_file'])
    data = load_checkpoint(path)
    data['user'] = torch.flip(data['user'], [0])
    atomic_torch_save(data, path)
    with pytest.raises(ValueError, match='evaluated on different users'):
        significance(read_jsonl(results))


def test_bench_and_ablate_commands_write_pages(config, tmp_path, capsys):
    pages = tmp_path / 'pages'
    code = main(['bench', '--config', str(config), '--datasets',
                 'synthetic', '--seeds', '0', '1', '--pages', str(pages),
                 '--no-progress'])
    assert code == 0
    page = (pages / 'small-synthetic.md').read_text()
    assert '| synthetic | mbcgcn | 2 |' in page
    assert '## Paired significance' in page
    # The strongest baseline by mean HR@10 is the reference.
    rows = read_jsonl(pages / 'small.jsonl')
    hr = {lab: sum(r['metrics']['hr@10'] for r in rows
                   if r['label'] == lab) / 2 for lab in ('pop', 'mf')}
    ref = max(hr, key=hr.get)
    assert f'| synthetic | mbcgcn | {ref} |' in page
    assert (pages / 'small-synthetic-bars.png').stat().st_size > 1000
    # the config's notes on a dataset's ablations go onto its page
    config.write_text(json.dumps({**CONFIG, 'ablation_notes': {
        'synthetic': ['- A note on', '  two lines.']}}))
    # (into a folder that does not exist yet, results kept elsewhere)
    pages = tmp_path / 'ablation-pages'
    code = main(['ablate', '--config', str(config), '--model', 'mbcgcn',
                 '--dataset', 'synthetic', '--seeds', '0', '--pages',
                 str(pages), '--graph', 'behaviors=view+buy',
                 '--results', str(tmp_path / 'pages' / 'ablation.jsonl'),
                 '--no-progress'])
    assert code == 0
    page = (pages / 'ablation-mbcgcn-synthetic.md').read_text()
    assert '- A note on\n  two lines.\n' in page
    for label in ('mbcgcn/no_transform', 'mbcgcn/target_only',
                  'mbcgcn/graph:behaviors=view+buy'):
        assert f'| synthetic | {label} | 1 |' in page
    assert '## HR@10 by user sparsity' in page
    rows = [r for r in read_jsonl(tmp_path / 'pages' / 'ablation.jsonl')
            if r['label'] == 'mbcgcn/graph:behaviors=view+buy']
    assert rows[0]['transforms'] == ['behaviors=view+buy']
    assert (pages / 'ablation-mbcgcn-synthetic-sparsity.png').exists()
    assert main(['ablate', '--config', str(config), '--model', 'mbcgcn',
                 '--dataset', 'synthetic', '--ablations', 'nope',
                 '--pages', str(pages)]) == 2
    assert 'unknown ablations' in capsys.readouterr().err


def test_behavior_subset_drops_the_removed_behaviors_weights(tmp_path):
    # A multi-task model of view, cart and buy under the graph ablation
    # 'behaviors=view+buy': the cart weight goes, the run goes through.
    spec = RunSpec('nmtr', 'nmtr', {'embedding_dim': 8},
                   {'epochs': 1, 'batch_size': 1024, 'loss': 'bce',
                    'behavior_weights': {'view': 0.5, 'cart': 0.5,
                                         'buy': 1.0}},
                   transforms=('behaviors=view+buy', ))
    rows = run_grid([spec], ['synthetic'], [0], tmp_path / 'rows.jsonl',
                    progress=False, log=lambda line: None)
    assert rows[0]['transforms'] == ['behaviors=view+buy']
    assert rows[0]['config']['behavior_weights'] == {'view': 0.5,
                                                     'buy': 1.0}


def test_a_rerank_entry_runs_a_second_stage(config, tmp_path):
    data = json.loads(config.read_text())
    data['models']['mf-rerank'] = {
        'model': 'mf', 'kwargs': {'embedding_dim': 8},
        'rerank': {'epochs': 1, 'hidden': 0}}
    config.write_text(json.dumps(data))
    _, specs, _ = load_config(config, 'synthetic')
    assert specs['mf-rerank'].rerank == {'epochs': 1, 'hidden': 0}
    assert specs['mf'].rerank is None
    assert specs['mf-rerank'].fingerprint() != specs['mf'].fingerprint()
    results = tmp_path / 'rows.jsonl'
    rows = run_grid([specs['mf'], specs['mf-rerank']], ['synthetic'], [0],
                    results, progress=False, log=lambda line: None)
    assert 'rerank' not in rows[0]
    assert rows[1]['stage1_valid'] == pytest.approx(rows[0]['valid'])
    assert rows[1]['valid'] == rows[1]['rerank']['valid']['ndcg@10']
    # a page into a folder that does not exist yet
    page = bench_page(rows, tmp_path / 'new' / 'pages', 'rr', 'rr', 'cmd')
    assert page.exists() and (page.parent / 'rr-bars.png').exists()
