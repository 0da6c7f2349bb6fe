"""Markdown tables of mean ± std over seeds, from JSONL result rows."""
from __future__ import annotations

import json
import math
from collections import OrderedDict
from typing import Dict, Iterable, List, Sequence


def mean_std(values: Sequence[float]) -> tuple:
    r"""Mean and sample standard deviation (0 for a single value)."""
    values = [float(v) for v in values]
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    var = sum((v - mean)**2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var)


def run_label(row: Dict) -> str:
    r"""Model name plus its non-default constructor arguments."""
    kwargs = row.get('model_kwargs') or {}
    if not kwargs:
        return row['model']
    args = ', '.join(f'{k}={v}' for k, v in sorted(kwargs.items()))
    return f"{row['model']}({args})"


def complete(rows: Iterable[Dict]) -> List[Dict]:
    r"""The rows of finished runs: without a ``status`` (rows written before
    it existed) or with ``"status": "complete"``; interrupted runs have no
    test metrics.
    """
    return [r for r in rows if r.get('status', 'complete') == 'complete']


def group_rows(rows: Iterable[Dict]) -> OrderedDict[tuple, List[Dict]]:
    r"""Groups the :func:`complete` rows by (dataset, label), keeping the
    rows of the latest settings only (the ``spec`` of the group's last row:
    a smoke run or a changed config replaces the earlier runs instead of
    joining them) and the latest row per seed.
    """
    groups: OrderedDict[tuple, List[Dict]] = OrderedDict()
    for row in complete(rows):
        key = (row['dataset'], row.get('label') or run_label(row))
        groups.setdefault(key, []).append(row)
    out: OrderedDict[tuple, List[Dict]] = OrderedDict()
    for key, group in groups.items():
        spec = group[-1].get('spec')
        seeds: Dict = {}
        for row in group:
            if row.get('spec') == spec:
                seeds[row.get('seed')] = row
        out[key] = list(seeds.values())
    return out


def markdown_table(rows: Iterable[Dict], metrics: Sequence[str],
                   digits: int = 4, extra: Sequence[str] = ()) -> str:
    r"""One line per (dataset, model): each metric as mean ± std over
    seeds, plus the number of seeds; :obj:`extra` names top-level numeric
    fields (e.g. ``epoch_seconds``) shown the same way.
    """
    header = ['dataset', 'model', 'seeds', *metrics, *extra]
    lines = ['| ' + ' | '.join(header) + ' |',
             '|' + '---|' * len(header)]
    for (dataset, label), group in group_rows(rows).items():
        cells = [dataset, label.replace('|', '/'), str(len(group))]
        for name in list(metrics) + list(extra):
            source = [r.get('metrics', {}).get(name, r.get(name))
                      for r in group]
            # NaN: the metric is undefined for the run (e.g. no visited
            # test items), shown as missing rather than averaged.
            values = [v for v in source if isinstance(v, (int, float))
                      and not math.isnan(v)]
            if not values:
                cells.append('–')
                continue
            mean, std = mean_std(values)
            cells.append(f'{mean:.{digits}f} ± {std:.{digits}f}')
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def provenance(rows: Iterable[Dict]) -> str:
    r"""A short list of the checksums, git revisions, splits and masking
    policies the :func:`complete` rows come from.
    """
    rows = complete(rows)
    fields = OrderedDict()
    for key in ('checksum', 'git', 'split', 'masking', 'selection'):
        values = sorted({json.dumps(r.get(key)) for r in rows})
        fields[key] = ', '.join(v.strip('"') for v in values)
    versions = sorted({json.dumps(r.get('versions'), sort_keys=True)
                       for r in rows})
    fields['versions'] = '; '.join(versions)
    return '\n'.join(f'- {k}: {v}' for k, v in fields.items())
