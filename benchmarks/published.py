"""Published figures on the shipped dataset files, for comparison only.

Sources: ../shared/datasets/README.md. Those papers chose epochs or
hyperparameters on the test set; ours are chosen on validation only.
"""
PUBLISHED = {
    'tmall': [
        ('LightGCN (buy only)', 0.0411, 0.0240, 'MuLe paper'),
        ('NMTR', 0.0195, 0.0086, 'DA-GCN paper'),
        ('CRGCN', 0.0855, 0.0439, 'MuLe paper'),
        ('MB-CGCN', 0.1233, 0.0677, 'MuLe paper (DA-GCN: 0.1279 / 0.0703)'),
        ('PKEF', 0.1385, 0.0785, 'MuLe paper'),
        ('DA-GCN', 0.1458, 0.0841, 'DA-GCN paper'),
        ('MuLe', 0.1918, 0.1103, 'MuLe paper'),
        ('CascadingRank (no training)', 0.3324, 0.1626,
         'CascadingRank README (arXiv 2502.11335)'),
    ],
}


def published_table(dataset: str) -> str:
    rows = PUBLISHED.get(dataset)
    if not rows:
        return ''
    lines = ['Published on the same files (their protocols chose epochs on '
             'the test set):', '', '| model | HR@10 | NDCG@10 | reported in |',
             '|---|---|---|---|']
    lines += [f'| {m} | {hr:.4f} | {nd:.4f} | {src} |'
              for m, hr, nd, src in rows]
    return '\n'.join(lines) + '\n'
