r"""The documentation's code runs: every ```python block of the tutorial,
in order, in a fresh folder, and its command-line block."""
import re
import shlex
from pathlib import Path

import pytest

from graphrec.cli import main

DOCS = Path(__file__).resolve().parent.parent / 'docs'


def blocks(page: str, lang: str):
    return re.findall(rf'```{lang}\n(.*?)```', (DOCS / page).read_text(),
                      flags=re.S)


def test_tutorial_runs_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace = {}
    code = blocks('tutorial.md', 'python')
    assert len(code) == 5
    for block in code:
        exec(compile(block, 'docs/tutorial.md', 'exec'), namespace)
    out = capsys.readouterr().out
    assert 'best epoch' in out and 'c0042 [' in out
    # Recommendations come back in the original ids, purchases excluded.
    items = namespace['items']
    assert items.shape == (2, 5)
    bought = namespace['bought']
    for user, row, again in zip(namespace['users'], items.tolist(),
                                namespace['reranked'].tolist()):
        assert not set(row) & set(bought[1][bought[0] == user].tolist())
        assert not set(again) & set(bought[1][bought[0] == user].tolist())
    assert namespace['reranked'].shape == (2, 5)
    assert 'with the re-ranker' in out
    # The command-line block, with the same file.
    commands = [line for line in ' '.join(
        blocks('tutorial.md', 'bash')[0].replace('\\\n', ' ').splitlines()
    ).split('graphrec ') if line.strip()]
    assert len(commands) == 2
    for command in commands:
        argv = shlex.split(command)
        if argv[0] == 'train':
            argv += ['--no-progress', '--batch-size', '512']
        assert main(argv) == 0
    assert re.search(r'"user": "c0001", "items": \["p-\d+"',
                     capsys.readouterr().out)


def test_event_log_needs_its_behaviors(tmp_path):
    path = tmp_path / 'log.csv'
    path.write_text('user,item,behavior\na,x,buy\n')
    with pytest.raises(ValueError, match='--behaviors view cart buy'):
        from graphrec.datasets import load_dataset
        load_dataset(path)
    with pytest.raises(ValueError, match="'columns' must name"):
        load_dataset(path, behaviors=['buy'], columns=['user'])
