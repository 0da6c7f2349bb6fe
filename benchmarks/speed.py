"""Speed and memory: per-model epoch and evaluation time with peak memory,
propagation against the SpMM floor and PyG's LightGCN, and a scaling curve
on synthetic graphs, every comparison measured within one run.

    python benchmarks/speed.py --dataset tmall
    python benchmarks/speed.py --dataset retailrocket
    python benchmarks/speed.py --scaling --threads 1 \
        --edges 1e6 2e6 5e6 1e7 2e7 2.5e7

The dataset runs write docs/results/speed-<dataset>.md, the scaling run
docs/results/speed-scaling.md and speed-scaling.png; every figure is also
appended as a row to docs/results/speed.jsonl. Each model and each graph
size is measured in a fresh subprocess, so that its peak resident memory
(``ru_maxrss``) is its own. Seconds are medians of repeats (the first
epoch or call is a warm-up and not counted).
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / 'docs' / 'results'

#: label -> (benchmark config, label in it): each backbone as benchmarked.
CONFIG_MODELS = {
    'mf': ('baselines', 'mf'),
    'lightgcn-buy': ('baselines', 'lightgcn-buy'),
    'lightgcn-all': ('baselines', 'lightgcn-all'),
    'nmtr': ('multi', 'nmtr'),
    'mbcgcn': ('multi', 'mbcgcn'),
    'crgcn': ('multi', 'crgcn'),
    'plugins/cascade': ('plugins', 'cascade'),
}
#: The full model has no benchmark config yet: its defaults, trained on
#: every behavior as its docstring asks.
FULL_MODEL = ('causal_cascade', {'embedding_dim': 64},
              {'batch_size': 8192, 'lr': 0.005, 'weight_decay': 1e-4,
               'behavior_weights': 'all'})
MODELS = list(CONFIG_MODELS) + ['causal_cascade']
#: Models whose scores of all items are one matrix product (a chunk of
#: users times the item table, plus per-item terms).
DECOMPOSABLE = {'mf', 'lightgcn-buy', 'lightgcn-all', 'mbcgcn', 'crgcn',
                'plugins/cascade', 'nmtr'}


def median_time(fn, repeat: int, warmup: int = 1):
    r"""Median and min seconds of :obj:`repeat` calls after :obj:`warmup`."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def alternated(fns: dict, repeat: int) -> dict:
    r"""Median and min seconds of each function, called in turn for
    :obj:`repeat` rounds after one warm-up round, so that all of them see
    the same disturbances from other jobs on the machine.
    """
    times = {key: [] for key in fns}
    for round_ in range(repeat + 1):
        for key, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            if round_:
                times[key].append(time.perf_counter() - t0)
    return {key: (statistics.median(v), min(v)) for key, v in times.items()}


def peak_rss() -> int:
    r"""Peak resident memory of this process in bytes (Linux: KiB)."""
    scale = 1 if sys.platform == 'darwin' else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def model_spec(label: str, dataset: str):
    r"""(model name, constructor kwargs, TrainConfig fields) of a label."""
    from graphrec.bench import load_config
    if label == 'causal_cascade':
        name, kwargs, train = FULL_MODEL
        return name, dict(kwargs), dict(train)
    config, key = CONFIG_MODELS[label]
    _, specs, _ = load_config(ROOT / 'benchmarks' / 'configs' /
                              f'{config}.json', dataset)
    spec = specs[key]
    return spec.model, dict(spec.kwargs), dict(spec.train)


# ---------------------------------------------------------------- workers


def worker_model(args) -> dict:
    r"""One model on one dataset: training epochs, embedding computation,
    full-ranking test evaluation, peak memory. Runs in its own process.
    """
    from graphrec.cli import load_data
    from graphrec.data.graph import BehaviorGraph
    from graphrec.eval import Evaluator
    from graphrec.models import build_model
    from graphrec.train import TrainConfig, Trainer, seed_everything
    base_rss = peak_rss()
    dataset = load_data(args.dataset)
    name, kwargs, train = model_spec(args.model, dataset.name)
    if train.get('behavior_weights') == 'all':
        train['behavior_weights'] = {b: 1.0 for b in dataset.behaviors}
    fields = TrainConfig.__annotations__
    train = {k: v for k, v in train.items() if k in fields}
    train.update(epochs=args.epochs, progress=False, device=args.device)
    seed_everything(0)
    net = build_model(name, dataset.num_users, dataset.num_items,
                      dataset.behaviors, **kwargs)
    trainer = Trainer(net, dataset, TrainConfig(**train))
    data_rss = peak_rss()
    epochs = []
    for _ in range(args.epochs):
        t0 = time.perf_counter()
        trainer.train_epoch()
        epochs.append(time.perf_counter() - t0)
    train_rss = peak_rss()
    graph = BehaviorGraph.from_dataset(dataset).to(trainer.device)
    net.eval()
    evaluator = Evaluator(ks=(10, 20), chunk_size='auto')
    forward = median_time(lambda: net.score_fn(graph), args.repeat)
    fn = net.score_fn(graph)
    evaluation = median_time(lambda: evaluator.evaluate(fn, dataset, 'test'),
                             args.repeat)
    users = int(dataset.test[0].unique().numel())
    return {
        'model': args.model, 'name': name, 'dataset': dataset.name,
        'checksum': dataset.checksum, 'kwargs': kwargs,
        'batch_size': train.get('batch_size'),
        'behavior_weights': train.get('behavior_weights'),
        'parameters': sum(p.numel() for p in net.parameters()),
        'epoch_seconds': statistics.median(epochs[1:] or epochs),
        'epoch_seconds_all': epochs,
        'forward_seconds': forward[0], 'eval_seconds': evaluation[0],
        'eval_seconds_min': evaluation[1],
        'eval_users': users, 'num_items': dataset.num_items,
        'rss_start': base_rss, 'rss_data': data_rss,
        'rss_train': train_rss, 'rss_peak': peak_rss(),
        'threads': torch.get_num_threads(),
    }


def synthetic_graph(num_edges: int, seed: int = 0, num_users: int = None,
                    num_items: int = None):
    r"""A random bipartite graph with :obj:`num_edges` unique pairs and
    skewed item popularity (ids drawn as :math:`\lfloor I u^{1.5} \rfloor`,
    :math:`u` uniform); by default with average user degree 25 and item
    degree 50 (the node counts grow with the edges).
    """
    from graphrec.data.dataset import pair_keys
    num_users = num_users or max(num_edges // 25, 1)
    num_items = num_items or max(num_edges // 50, 1)
    gen = torch.Generator().manual_seed(seed)
    keys = torch.empty(0, dtype=torch.long)
    while keys.numel() < num_edges:  # duplicates are dropped: draw more
        draw = int((num_edges - keys.numel()) * 1.2) + 16
        user = torch.randint(num_users, (draw, ), generator=gen)
        item = (torch.rand(draw, generator=gen).pow(1.5) * num_items).long()
        keys = torch.unique(torch.cat([
            keys, pair_keys(torch.stack([user, item]), num_items)]))
    keys = keys[torch.randperm(keys.numel(), generator=gen)[:num_edges]]
    return (torch.stack([keys // num_items, keys % num_items]), num_users,
            num_items)


def worker_scaling(args) -> dict:
    r"""One synthetic graph size: CSR build, one propagation layer forward +
    backward (ours and the SpMM floor), memory. Runs in its own process.
    """
    from graphrec.data.graph import BipartiteAdjacency
    from graphrec.nn import bipartite_propagate
    edges = int(float(args.edges))
    nodes = {}
    if getattr(args, 'nodes_of', None):  # the node set of a graph that size
        size = int(float(args.nodes_of))
        nodes = {'num_users': max(size // 25, 1),
                 'num_items': max(size // 50, 1)}
    edge_index, num_users, num_items = synthetic_graph(edges, **nodes)
    rss_edges = current_rss()
    t0 = time.perf_counter()
    adj = BipartiteAdjacency(edge_index, num_users, num_items)
    build = time.perf_counter() - t0
    rss_graph = current_rss()
    dim = args.dim
    xu = torch.randn(num_users, dim, requires_grad=True)
    xi = torch.randn(num_items, dim, requires_grad=True)

    a, a_t = adj.matrix(), adj.matrix_t()
    gu, gi = torch.ones(num_users, dim), torch.ones(num_items, dim)

    def ours():  # as in training: upstream gradients given, .grad reset
        xu.grad = xi.grad = None
        torch.autograd.backward(bipartite_propagate(adj, xu, xi), (gu, gi))

    def floor():  # the four products of a layer's forward and backward
        torch.sparse.mm(a, xi.detach())
        torch.sparse.mm(a_t, xu.detach())
        torch.sparse.mm(a_t, gu)
        torch.sparse.mm(a, gi)

    # Alternate the two so that both see the same disturbances; the best
    # of the repeats is the one the other jobs on the machine disturbed
    # least.
    ours(), floor()
    times = {'ours': [], 'floor': []}
    for _ in range(args.repeat):
        for key, fn in (('ours', ours), ('floor', floor)):
            t0 = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t0)
    best, med = ({k: f(v) for k, v in times.items()}
                 for f in (min, statistics.median))
    num = adj.num_edges
    return {
        'edges': num, 'num_users': num_users, 'num_items': num_items,
        'dim': dim, 'build_seconds': build,
        'layer_seconds': best['ours'], 'floor_seconds': best['floor'],
        'layer_seconds_median': med['ours'],
        'floor_seconds_median': med['floor'],
        'ns_per_edge': best['ours'] / num * 1e9,
        'floor_ns_per_edge': best['floor'] / num * 1e9,
        'rss_edges': rss_edges, 'rss_graph': rss_graph,
        'rss_peak': peak_rss(),
        'graph_bytes_per_edge': tensor_bytes(adj) / num,
        'graph_rss_per_edge': (rss_graph - rss_edges) / num,
        'peak_bytes_per_edge': peak_rss() / num,
        'threads': torch.get_num_threads(),
    }


def current_rss() -> int:
    r"""Resident memory of this process now, in bytes (Linux; else the
    peak).
    """
    try:
        pages = int(Path('/proc/self/statm').read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return peak_rss()
    return pages * os.sysconf('SC_PAGE_SIZE')


def tensor_bytes(obj) -> int:
    r"""Bytes held by the tensors among :obj:`obj`'s attributes."""
    return sum(v.numel() * v.element_size() for v in vars(obj).values()
               if isinstance(v, torch.Tensor))


def run_worker(kind: str, threads: int, **kwargs) -> dict:
    r"""Runs this file as a worker subprocess and returns its JSON."""
    cmd = [sys.executable, __file__, '--worker', kind,
           '--threads', str(threads)]
    for key, value in kwargs.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f'{" ".join(cmd)} failed:\n{proc.stderr[-3000:]}')
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------- in-process parts


def propagation_vs_pyg(dataset, repeat: int):
    r"""One LightGCN layer, forward + backward, on the merged behaviors:
    the SpMM floor, ours, and PyG's ``LGConv`` (edge_index as in
    ``torch_geometric.nn.models.LightGCN``, which normalizes at every call,
    and on a precomputed sparse CSR adjacency); then the 3-layer LightGCN
    of both libraries. Returns table lines and rows.
    """
    from torch_geometric.nn import LGConv
    from torch_geometric.nn.models import LightGCN as PyGLightGCN

    from graphrec.data.graph import BehaviorGraph
    from graphrec.models import LightGCN
    from graphrec.nn import bipartite_propagate
    graph = BehaviorGraph.from_dataset(dataset)
    adj = graph.adjacency('all')
    U, num_items, E = dataset.num_users, dataset.num_items, adj.num_edges
    N = U + num_items
    user, item = adj.edge_index
    # Homogeneous graph: items are nodes U..U+I-1, both directions.
    edge_index = torch.cat([torch.stack([user, item + U]),
                            torch.stack([item + U, user])], dim=1)
    dim = 64
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(N, dim, generator=gen)
    xu = x[:U].clone().requires_grad_()
    xi = x[U:].clone().requires_grad_()
    xh = x.clone().requires_grad_()
    a, a_t = adj.matrix(), adj.matrix_t()
    gu, gi = torch.ones(U, dim), torch.ones(num_items, dim)

    def floor():
        torch.sparse.mm(a, xi.detach())
        torch.sparse.mm(a_t, xu.detach())
        torch.sparse.mm(a_t, gu)
        torch.sparse.mm(a, gi)

    # Forward, then backward from given upstream gradients with .grad
    # reset, as a training step does (optimizer.zero_grad sets None).
    def ours():
        xu.grad = xi.grad = None
        torch.autograd.backward(bipartite_propagate(adj, xu, xi), (gu, gi))

    conv = LGConv()

    g_all = torch.ones(N, dim)

    def pyg_edge_index():
        xh.grad = None
        conv(xh, edge_index).backward(g_all)

    # The normalized symmetric adjacency as one CSR matrix, built once.
    value = adj.value
    sym = torch.sparse_coo_tensor(
        edge_index, torch.cat([value, value]), (N, N),
        check_invariants=False).coalesce()
    sym = sym.to_sparse_csr()
    conv_plain = LGConv(normalize=False)

    def pyg_sparse():
        xh.grad = None
        conv_plain(xh, sym).backward(g_all)

    # Outputs agree (checks that the comparison is like for like).
    out_u, out_i = bipartite_propagate(adj, xu.detach(), xi.detach())
    ref = conv(x, edge_index)
    assert torch.allclose(torch.cat([out_u, out_i]), ref, atol=1e-4)

    ours_model = LightGCN(U, num_items, dim, 3, behaviors='all')
    pyg_model = PyGLightGCN(N, dim, 3)

    def ours_3():
        ours_model.zero_grad(set_to_none=True)
        emb = ours_model(graph)
        torch.autograd.backward((emb['user'], emb['item']), (gu, gi))

    def pyg_3():
        pyg_model.zero_grad(set_to_none=True)
        pyg_model.get_embedding(edge_index).backward(g_all)

    t = alternated({'floor': floor, 'ours': ours,
                    'pyg_edge_index': pyg_edge_index,
                    'pyg_sparse': pyg_sparse, 'ours_3': ours_3,
                    'pyg_3': pyg_3}, repeat)
    f = t['floor'][1]  # ratios of the best runs
    rows = [
        (f'SpMM floor: the 4 CSR products of one layer (fwd + bwd), {E} '
         f'pairs, dim {dim}', t['floor'], 1.0),
        ('ours: bipartite_propagate, one layer fwd + bwd', t['ours'],
         t['ours'][1] / f),
        ('PyG LGConv(edge_index), one layer fwd + bwd (normalizes each '
         'call, gather/scatter)', t['pyg_edge_index'],
         t['pyg_edge_index'][1] / f),
        ('PyG LGConv(normalize=False) on a precomputed CSR adjacency, one '
         'layer fwd + bwd', t['pyg_sparse'], t['pyg_sparse'][1] / f),
        ('ours: LightGCN 3 layers (all behaviors) fwd + bwd', t['ours_3'],
         t['ours_3'][1] / (3 * f)),
        ('PyG models.LightGCN 3 layers, get_embedding fwd + bwd',
         t['pyg_3'], t['pyg_3'][1] / (3 * f)),
    ]
    return rows, {'edges': E, 'nodes': N, 'dim': dim}


def fmt_bytes(n) -> str:
    return f'{n / 2**30:.2f} GiB' if n >= 2**30 else f'{n / 2**20:.0f} MiB'


def dataset_page(args) -> None:
    from graphrec.cli import load_data
    from graphrec.train.records import (
        append_jsonl,
        atomic_write_bytes,
        run_row,
    )
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    dataset = load_data(args.dataset)
    command = ('python benchmarks/speed.py ' + ' '.join(sys.argv[1:])).strip()
    common = dict(benchmark='speed', dataset=dataset.name,
                  checksum=dataset.checksum, threads=threads)
    rows = []
    lines = [f'# Speed and memory on {dataset.name}', '',
             f'Generated by `{command}`', '',
             f'CPU, {threads} torch thread(s), torch {torch.__version__}, '
             f'on a 2-core machine shared with other jobs while it ran: '
             f'absolute seconds are noisy, the ratios within one table were '
             f'measured in the same run and are the figures to read. '
             f'{dataset}.', '']

    models = args.models or MODELS
    table = ['| model | batch | epoch s | embeddings s | evaluation s, '
             'median / best (all test users) | peak memory | of which data '
             '+ model | parameters |', '|---|---|---|---|---|---|---|---|']
    checks = []
    for label in models:
        print(f'model {label} ...', file=sys.stderr, flush=True)
        out = run_worker('model', threads, dataset=args.dataset,
                         model=label, epochs=args.epochs,
                         repeat=args.repeat)
        rows.append(run_row(**{**common, **out}, what='model'))
        if label in DECOMPOSABLE:
            checks.append((f'full-ranking evaluation of all test users, '
                           f'{label} (best of {args.repeat})',
                           f"{out['eval_seconds_min']:.2f} s", '< 1 s',
                           out['eval_seconds_min'] < 1.0))
        if label == 'causal_cascade':
            checks.append(('peak memory of the full model (causal_cascade)',
                           fmt_bytes(out['rss_peak']), '< 3 GB',
                           out['rss_peak'] < 3e9))
        table.append(
            f"| {label} | {out['batch_size']} | {out['epoch_seconds']:.2f} "
            f"| {out['forward_seconds']:.3f} | {out['eval_seconds']:.3f} / "
            f"{out['eval_seconds_min']:.3f} "
            f"| {fmt_bytes(out['rss_peak'])} | {fmt_bytes(out['rss_data'])} "
            f"| {out['parameters']:,} |")
        print(table[-1], file=sys.stderr, flush=True)
    first = rows[0] if rows else None
    lines += ['## Every backbone', '',
              f'Training epoch (median of epochs 2..{args.epochs}, the '
              f'batch size and behaviors of its benchmark config; '
              f'causal_cascade: defaults, every behavior weighted 1), '
              f'embedding computation (`score_fn`, one forward in eval '
              f'mode) and full-ranking evaluation of every test user '
              f"({first['eval_users'] if first else '?'} users x "
              f"{dataset.num_items} items, masking, pessimistic ties, "
              f"visited split, bias metrics; `chunk_size='auto'`), medians "
              f'of {args.repeat}. Peak memory is the resident set '
              f'(`ru_maxrss`) of a fresh process per model, Python and '
              f'torch included; the next column is the peak after loading '
              f'the data and building the model and trainer.', '',
              *table, '']

    if not args.skip_propagation:
        print('propagation ...', file=sys.stderr, flush=True)
        prop, meta = propagation_vs_pyg(dataset, args.repeat)
        lines += ['## Propagation against the SpMM floor and PyG', '',
                  f"One light graph convolution on the union of the "
                  f"behaviors ({meta['edges']} user-item pairs; PyG on the "
                  f"homogeneous graph of {meta['nodes']} nodes and "
                  f"{2 * meta['edges']} directed edges), dim "
                  f"{meta['dim']}, forward + backward. The floor is the "
                  f'four CSR products a layer needs (R X_i, R^T X_u forward; '
                  f'their transposes backward) with no autograd; the '
                  f'others run forward, then backward from the same '
                  f'upstream gradients with `.grad` reset, as a training '
                  f'step does. All six '
                  f'are called in turn for {args.repeat} rounds after a '
                  f'warm-up; the ratios are of the best runs (the least '
                  f'disturbed by the other jobs). The 3-layer rows are '
                  f'relative to 3 x the floor.', '',
                  '| what | median s | min s | x floor |',
                  '|---|---|---|---|']
        for what, (med, best), ratio in prop:
            lines.append(f'| {what} | {med:.4f} | {best:.4f} | '
                         f'{ratio:.2f} |')
            rows.append(run_row(**common, what=what, seconds_median=med,
                                seconds_min=best, ratio_to_floor=ratio,
                                **meta))
        lines.append('')
        for what, _, ratio in (prop[1], prop[4]):
            checks.append((what, f'{ratio:.2f} x floor (best runs)',
                           '<= 1.5 x',
                           ratio <= 1.5))
    if checks:
        lines += ['## Targets of the speed issue', '',
                  f'As measured in this run ({threads} torch thread(s) on '
                  f'the shared machine).', '',
                  '| target | measured | goal | met |', '|---|---|---|---|']
        lines += [f'| {what} | {value} | {goal} | '
                  f"{'yes' if ok else 'no'} |"
                  for what, value, goal, ok in checks]
        lines.append('')
    for row in rows:
        append_jsonl(args.results, row)
    out = Path(args.pages) / f'speed-{dataset.name}.md'
    atomic_write_bytes(out, '\n'.join(lines).encode())
    print(f'wrote {out}', file=sys.stderr)


def scaling_page(args) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    from graphrec.train.records import (
        append_jsonl,
        atomic_write_bytes,
        run_row,
    )
    threads = args.threads or torch.get_num_threads()
    command = ('python benchmarks/speed.py ' + ' '.join(sys.argv[1:])).strip()
    smallest = args.edges[0]
    series = {
        'degree': ('nodes grow with the edges (user degree 25, item '
                   'degree 50)', {}),
        'nodes': (f'fixed node set (that of the '
                  f'{int(float(smallest)):,}-edge graph), degrees grow with '
                  f'the edges',
                  {'nodes_of': smallest}),
    }
    results = {}
    for key, (_, extra) in series.items():
        results[key] = []
        for edges in args.edges:
            print(f'scaling {key} {edges} ...', file=sys.stderr, flush=True)
            out = run_worker('scaling', threads, edges=edges, dim=args.dim,
                             repeat=args.repeat, **extra)
            out['series'] = key
            results[key].append(out)
            append_jsonl(args.results, run_row(benchmark='speed-scaling',
                                               what='scaling', **out))
            print(out, file=sys.stderr, flush=True)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for (key, outs), color in zip(results.items(), ('C0', 'C1')):
        x = [o['edges'] / 1e6 for o in outs]
        ax1.plot(x, [o['ns_per_edge'] for o in outs], 'o-', color=color,
                 label=f'ours, {key} series')
        ax1.plot(x, [o['floor_ns_per_edge'] for o in outs], 's:',
                 color=color, label=f'SpMM floor, {key} series')
        ax2.plot(x, [o['graph_bytes_per_edge'] for o in outs], 'o-',
                 color=color, label=f'adjacency tensors, {key} series')
        ax2.plot(x, [o['peak_bytes_per_edge'] for o in outs], 's:',
                 color=color, label=f'process peak / edges, {key} series')
    for ax in (ax1, ax2):
        ax.set_xscale('log')
        ax.set_xlabel('edges (millions)')
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7)
    ax1.set_ylabel('ns per edge, one layer fwd + bwd')
    ax1.set_title(f'time per edge (dim {args.dim}, {threads} thread(s))')
    ax2.set_ylabel('bytes per edge')
    ax2.set_title('memory per edge')
    fig.tight_layout()
    png = Path(args.pages) / 'speed-scaling.png'
    fig.savefig(png, dpi=110)
    plt.close(fig)
    lines = ['# Scaling of propagation with the number of edges', '',
             f'Generated by `{command}`', '',
             f'Random bipartite graphs with skewed item popularity, one light '
             f'graph convolution forward + backward at dim {args.dim} (ours, '
             f'and the SpMM floor: the same four CSR products without '
             f'autograd), the two alternated, best of {args.repeat} after '
             f'a warm-up (the run the other jobs disturbed least), CPU, '
             f'{threads} torch thread(s), each size in a fresh process; the '
             f'machine (2 cores) was shared with other jobs. Two series: the '
             f'node counts growing with the edges (constant degrees), and a '
             f'fixed node set with growing degrees. Memory per edge: the '
             f"bytes of the adjacency's tensors (CSR of R and R^T, edge "
             f'list, permutations, values; int64 indices), and the process '
             f'peak (edge generation, embeddings, gradients, Python and '
             f'torch included) divided by the edges.', '',
             '![scaling](speed-scaling.png)', '']
    for key, outs in results.items():
        ns = [o['ns_per_edge'] for o in outs]
        floor = [o['floor_ns_per_edge'] for o in outs]
        mid = statistics.median(ns)
        lines += [f'## {series[key][0]}', '',
                  '| edges | users | items | build s | layer s | ns / edge | '
                  'floor ns / edge | x floor | adjacency B / edge | peak |',
                  '|---|---|---|---|---|---|---|---|---|---|']
        for o in outs:
            lines.append(
                f"| {o['edges']:,} | {o['num_users']:,} | "
                f"{o['num_items']:,} | {o['build_seconds']:.2f} | "
                f"{o['layer_seconds']:.3f} | {o['ns_per_edge']:.1f} | "
                f"{o['floor_ns_per_edge']:.1f} | "
                f"{o['layer_seconds'] / o['floor_seconds']:.2f} | "
                f"{o['graph_bytes_per_edge']:.0f} | "
                f"{fmt_bytes(o['rss_peak'])} |")
        lines += ['', f'Time per edge: median {mid:.1f} ns, range '
                  f'{min(ns) / mid - 1:+.0%} to {max(ns) / mid - 1:+.0%} '
                  f'of the median (floor: {min(floor):.0f} to '
                  f'{max(floor):.0f} ns) from {outs[0]["edges"]:,} to '
                  f'{outs[-1]["edges"]:,} edges.', '']
    page = Path(args.pages) / 'speed-scaling.md'
    atomic_write_bytes(page, '\n'.join(lines).encode())
    print(f'wrote {page} and {png}', file=sys.stderr)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('--dataset', default='tmall')
    parser.add_argument('--models', nargs='+', default=None,
                        choices=MODELS, help='default: all')
    parser.add_argument('--epochs', type=int, default=3,
                        help='training epochs per model; the first is a '
                        'warm-up (default: 3)')
    parser.add_argument('--repeat', type=int, default=5)
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--skip-propagation', action='store_true')
    parser.add_argument('--scaling', action='store_true',
                        help='the synthetic scaling curve instead')
    parser.add_argument('--edges', nargs='+',
                        default=['1e6', '2e6', '5e6', '1e7', '2e7', '2.5e7'])
    parser.add_argument('--dim', type=int, default=64)
    parser.add_argument('--results', default=str(RESULTS / 'speed.jsonl'))
    parser.add_argument('--pages', default=str(RESULTS),
                        help='folder of the pages and plot')
    parser.add_argument('--worker', choices=['model', 'scaling'],
                        help=argparse.SUPPRESS)
    parser.add_argument('--model', help=argparse.SUPPRESS)
    parser.add_argument('--device', default='cpu', help=argparse.SUPPRESS)
    parser.add_argument('--nodes-of', default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        if args.threads:
            torch.set_num_threads(args.threads)
        fn = worker_model if args.worker == 'model' else worker_scaling
        if args.worker == 'scaling':
            args.edges = args.edges[0] if isinstance(args.edges, list) \
                else args.edges
        print(json.dumps(fn(args)))
        return
    if args.scaling:
        scaling_page(args)
    else:
        dataset_page(args)


if __name__ == '__main__':
    main()
