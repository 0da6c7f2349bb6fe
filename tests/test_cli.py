import json
import re
from pathlib import Path

import pytest
import torch

from graphrec.cli import build_parser, main, train_config
from graphrec.data import pair_keys
from graphrec.datasets import load_dataset
from graphrec.train import load_checkpoint, lock_run_dir

README = Path(__file__).resolve().parent.parent / 'README.md'


def test_demo_prints_a_metrics_table(capsys, tmp_path):
    results = tmp_path / 'demo.jsonl'
    assert main(['demo', '--seeds', '0', '1', '--epochs', '5',
                 '--no-progress', '--results', str(results)]) == 0
    out = capsys.readouterr().out
    for model in ('pop', 'reranker', 'mf', 'lightgcn'):
        assert re.search(rf'\| synthetic \| {model} \| 2 \| 0\.\d{{4}} ± ',
                         out), model
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert len(rows) == 8
    assert {r['seed'] for r in rows} == {0, 1}
    assert all(r['masking'] and r['checksum'] for r in rows)


@pytest.mark.parametrize('merge,bag', [('false', 1), ('true', 3)])
def test_train_with_a_second_stage_saves_and_reuses_it(capsys, tmp_path,
                                                       merge, bag):
    out, results = tmp_path / 'run', tmp_path / 'r.jsonl'
    assert main(['train', '--model', 'lightgcn', '--epochs', '3',
                 '--no-progress', '--out', str(out), '--results',
                 str(results), '--rerank', 'epochs=2', 'hidden=8',
                 f'merge_validation={merge}', f'bag={bag}']) == 0
    row = json.loads(results.read_text().splitlines()[-1])
    assert row['rerank']['hidden'] == 8 and 'stage1_valid' in row
    saved = load_checkpoint(out / 'model.pt')['rerank']
    assert saved['config']['merge_validation'] is (merge == 'true')
    assert saved['config']['bag'] == bag
    capsys.readouterr()
    # The saved second stage reproduces the run's test figures.
    assert main(['evaluate', '--checkpoint', str(out / 'model.pt')]) == 0
    lines = dict(line.split('\t') for line in
                 capsys.readouterr().out.strip().splitlines())
    for key in ('hr@10', 'ndcg@10', 'unvisited/hr@10'):
        assert float(lines[key]) == pytest.approx(row['metrics'][key])
    assert main(['recommend', '--checkpoint', str(out / 'model.pt'),
                 '--users', '3', '--k', '5']) == 0
    rec = json.loads(capsys.readouterr().out)
    data = load_dataset('synthetic')
    bought = pair_keys(data.train['buy'], data.num_items)
    assert not torch.isin(3 * data.num_items + torch.tensor(rec['items']),
                          bought).any()
    with pytest.raises(SystemExit, match='--rerank expects key=value'):
        main(['train', '--model', 'mf', '--rerank', 'hidden'])


def test_train_evaluate_recommend_roundtrip(capsys, tmp_path):
    out = tmp_path / 'run'
    assert main(['train', '--model', 'mf', '--epochs', '3', '--no-progress',
                 '--out', str(out), '--results',
                 str(tmp_path / 'r.jsonl'), '--model-arg',
                 'embedding_dim=16']) == 0
    assert (out / 'model.pt').exists() and (out / 'best.pt').exists()
    capsys.readouterr()
    assert main(['evaluate', '--checkpoint', str(out / 'model.pt'),
                 '--split', 'valid', '--k', '5']) == 0
    lines = dict(line.split('\t') for line in
                 capsys.readouterr().out.strip().splitlines())
    assert 0.0 <= float(lines['hr@5']) <= 1.0 and lines['split'] == 'valid'
    assert main(['recommend', '--checkpoint', str(out / 'model.pt'),
                 '--users', '0', '7', '--k', '5']) == 0
    recs = [json.loads(line) for line in
            capsys.readouterr().out.strip().splitlines()]
    assert [r['user'] for r in recs] == ['0', '7']
    data = load_dataset('synthetic')
    bought = pair_keys(data.train['buy'], data.num_items)
    for rec in recs:
        assert len(rec['items']) == 5
        assert rec['scores'] == sorted(rec['scores'], reverse=True)
        keys = int(rec['user']) * data.num_items + torch.tensor(rec['items'])
        assert not torch.isin(keys, bought).any()
    with pytest.raises(SystemExit, match=r'user id must be an int in '
                       r'\[0, 999\]'):
        main(['recommend', '--checkpoint', str(out / 'model.pt'),
              '--users', '5000'])

    # A damaged model.pt is reported, not unpickled.
    data = (out / 'model.pt').read_bytes()
    (out / 'model.pt').write_bytes(data[:-100])
    capsys.readouterr()
    assert main(['evaluate', '--checkpoint', str(out / 'model.pt')]) == 2
    assert capsys.readouterr().err.startswith(
        f"error: checkpoint '{out / 'model.pt'}': truncated")
    # A folder another run holds is refused before anything is written.
    with lock_run_dir(out):
        assert main(['train', '--model', 'mf', '--epochs', '1',
                     '--no-progress', '--out', str(out), '--results',
                     str(tmp_path / 'r.jsonl')]) == 2
    assert f"run folder '{out}' is in use" in capsys.readouterr().err
    assert len((tmp_path / 'r.jsonl').read_text().splitlines()) == 1


def test_deterministic_flag():
    args = build_parser().parse_args(['train', '--model', 'mf',
                                      '--deterministic'])
    assert train_config(args).deterministic is True
    args = build_parser().parse_args(['train', '--model', 'mf'])
    assert train_config(args).deterministic is False


def test_cli_errors_name_the_argument(capsys):
    with pytest.raises(SystemExit, match='--model-arg expects key=value'):
        main(['train', '--model', 'mf', '--model-arg', 'dim'])
    assert main(['train', '--model', 'nope', '--epochs', '1']) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err.lower()
    assert main(['datasets', 'list']) == 0
    assert capsys.readouterr().out.split() == ['retailrocket', 'synthetic',
                                               'tmall']


def test_readme_library_example_runs():
    text = README.read_text()
    code = re.search(r'## Library in ten lines\n\n```python\n(.*?)```',
                     text, re.S).group(1)
    assert len(code.strip().splitlines()) <= 12
    scope = {}
    exec(compile(code, str(README), 'exec'), scope)
    assert 0.0 < scope['row']['metrics']['hr@10'] <= 1.0
    assert scope['items'].shape == (2, 10)
