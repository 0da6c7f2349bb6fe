"""Figures of the plug-ins: learned MoE gate weights per behavior across
users, and MUSENET-style views of the latent scenarios.

    python benchmarks/plot_plugins.py --dataset retailrocket --seed 0
    python benchmarks/plot_plugins.py --time-ranking --dataset tmall \
        --threads 2

Trains two models of benchmarks/configs/plugins.json with that config's
settings for the dataset (epochs chosen on validation), the per-user-gate
MoE and the latent scenarios on the cascade backbone by default, and writes

- docs/results/plugins-gates-<dataset>.png: the distribution over users of
  each behavior's gate weight g_b(u);
- docs/results/plugins-scenarios-<dataset>.png: (a) train purchase pairs in
  the scenario metric space f(x), projected on its first two principal
  components and coloured by their most likely scenario (up to 150 pairs
  per scenario, preferring pairs with assignment probability > 0.8, as in
  MUSENET's Fig. 5a); (b) per scenario, the share of its pairs already
  visited (viewed or carted) by the user, the mean user repeat share r_u
  and the learned repeat propensity p_r^k (Fig. 5b).

With --time-ranking it trains nothing and times full ranking (scores of
every user against every item, then the top 20, users in chunks of 1024 as
the evaluator does) of the cascade backbone with the per-pair MoE gate,
the factorized path against the dense reference on a sample of users, and
writes docs/results/plugins-timing-<dataset>.md.
"""
import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import matplotlib
import torch

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import load_config  # noqa: E402

from graphrec.cli import load_data  # noqa: E402
from graphrec.data import BehaviorGraph  # noqa: E402
from graphrec.models.plugins import _Links  # noqa: E402
from graphrec.nn.visited import visited_share  # noqa: E402
from graphrec.train.experiment import run_experiment  # noqa: E402
from graphrec.train.trainer import TrainConfig  # noqa: E402


def train(label, settings, dataset, seed, epochs):
    spec = settings[label]
    model, kwargs, cfg = spec.model, spec.kwargs, spec.train
    if epochs is not None:
        cfg = {**cfg, 'epochs': epochs}
    row = run_experiment(model, dataset, kwargs,
                         TrainConfig(**cfg, seed=seed, progress=False),
                         return_model=True)
    m = row['metrics']
    print(f"{label}: best epoch {row['best_epoch']}, test HR@10 "
          f"{m['hr@10']:.4f} NDCG@10 {m['ndcg@10']:.4f}", file=sys.stderr)
    return row['_model'].eval(), row


@torch.no_grad()
def plot_gates(model, graph, path, title):
    emb = model(graph)
    g = model.gate_weights(emb).cpu()  # [U, B]
    behaviors = list(model.behaviors)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    parts = ax.violinplot([g[:, b].numpy() for b in range(len(behaviors))],
                          showmeans=True, showextrema=True)
    for body in parts['bodies']:
        body.set_alpha(0.5)
    ax.set_xticks(range(1, len(behaviors) + 1), behaviors)
    ax.axhline(1 / len(behaviors), color='grey', lw=0.8, ls='--',
               label=f'uniform 1/{len(behaviors)}')
    for b in range(len(behaviors)):
        ax.annotate(f'mean {g[:, b].mean():.2f}', (b + 1, g[:, b].max()),
                    textcoords='offset points', xytext=(0, 4),
                    ha='center', fontsize=8)
    ax.set_ylabel('gate weight $g_b(u)$')
    ax.set_xlabel('behavior (expert)')
    ax.set_ylim(0, 1.12)  # room for the means above the violins
    ax.set_title(title, fontsize=9)
    ax.legend(loc='upper center', fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return g


@torch.no_grad()
def plot_scenarios(model, graph, path, title, per_scenario=150):
    sc = model.backdoor
    emb = model(graph)
    pairs = graph.edge_index_dict[graph.target]
    p, q = emb['user'][pairs[0]], emb['item'][pairs[1]]
    x = sc.project(p, q)
    pi = sc.logits(x).softmax(-1)
    k = sc.num_scenarios
    best, top = pi.argmax(-1), pi.max(-1).values
    visited = _Links(graph, graph.behaviors[:-1]).pairs(
        pairs[0], pairs[1]).amax(-1)
    share = visited_share(graph, graph.behaviors[:-1])[pairs[0]]
    p_r = sc.repeat_probability(p)  # [N, K]
    gen = torch.Generator().manual_seed(0)
    chosen = []
    for c in range(k):
        idx = (best == c).nonzero().flatten()
        confident = idx[top[idx] > 0.8]
        pool = confident if confident.numel() >= 20 else idx
        pick = pool[torch.randperm(pool.numel(), generator=gen)
                    [:per_scenario]]
        chosen.append(pick)
    sel = torch.cat(chosen)
    centred = x[sel] - x[sel].mean(0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    xy = centred @ v[:2].t()
    colors = plt.get_cmap('tab10')
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    start = 0
    for c in range(k):
        n = chosen[c].numel()
        pts = xy[start:start + n]
        start += n
        a1.scatter(pts[:, 0], pts[:, 1], s=8, alpha=0.6, color=colors(c),
                   label=f's{c + 1} ({int((best == c).sum())} pairs)')
    a1.set_title('(a) train purchases in the scenario space\n'
                 '(PCA of $f_\\omega(x)$, coloured by arg-max scenario)',
                 fontsize=9)
    a1.set_xlabel('PC 1')
    a1.set_ylabel('PC 2')
    a1.legend(fontsize=8, markerscale=2)
    width = 0.27
    pos = torch.arange(k).float()
    vis = [float(visited[best == c].mean()) if (best == c).any() else 0.0
           for c in range(k)]
    rus = [float(share[best == c].mean()) if (best == c).any() else 0.0
           for c in range(k)]
    prk = [float(p_r[best == c, c].mean()) if (best == c).any() else 0.0
           for c in range(k)]
    a2.bar(pos - width, vis, width, label='visited share of its pairs')
    a2.bar(pos, rus, width, label='mean user repeat share $r_u$')
    a2.bar(pos + width, prk, width, label='repeat propensity $p_r^k$')
    a2.set_xticks(pos.tolist(), [f's{c + 1}' for c in range(k)])
    a2.set_ylim(0, 1.15)
    a2.set_title('(b) repeat behavior per scenario', fontsize=9)
    a2.legend(fontsize=8, loc='upper right')
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return {'pairs_per_scenario': [int((best == c).sum()) for c in range(k)],
            'visited_share': vis, 'user_repeat_share': rus,
            'repeat_propensity': prk}


@torch.no_grad()
def time_ranking(dataset, graph, threads, path, repeats=3):
    from graphrec.models import build_model
    rows = []
    for label, kwargs in [('cascade (plain)', {}),
                          ('cascade + MoE per-user gate',
                           {'fusion': 'moe', 'gate': 'user'}),
                          ('cascade + MoE per-pair gate',
                           {'fusion': 'moe', 'gate': 'pair'}),
                          ('cascade + latent scenarios (soft)',
                           {'backdoor': 'latent'})]:
        torch.manual_seed(0)
        model = build_model('plugins', dataset.num_users, dataset.num_items,
                            dataset.behaviors, backbone='cascade',
                            embedding_dim=64, num_layers=2,
                            backbone_kwargs={'transform': 'linear',
                                             'aggregate': 'sum'}, **kwargs)
        for module in (model.fusion, model.backdoor):
            for p in ([] if module is None else module.parameters()):
                p.normal_(std=0.1)  # a non-uniform gate, as after training
        if model.backdoor is not None:
            model.backdoor.prototypes.normal_()
        model.eval()
        users = torch.arange(dataset.num_users)
        best = float('inf')
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn = model.score_fn(graph)
            for s in range(0, users.numel(), 1024):
                torch.topk(fn(users[s:s + 1024]), 20, dim=1)
            best = min(best, time.perf_counter() - t0)
        row = {'model': label, 'seconds': best}
        if kwargs.get('gate') == 'pair':
            # The dense [N_B, B, I] reference on 1024 users, extrapolated.
            emb = model(graph)
            sample = users[:1024]
            per = emb['behaviors']
            t0 = time.perf_counter()
            for s in range(0, sample.numel(), 256):
                u = sample[s:s + 256]
                model.fusion.score_dense(
                    torch.stack([per[b][0][u] for b in model.behaviors], -2),
                    torch.stack([per[b][1] for b in model.behaviors], -2),
                    emb['user'][u], emb['item'], model._links.dense(u))
            row['dense_reference_seconds'] = ((time.perf_counter() - t0) *
                                              users.numel() / sample.numel())
        rows.append(row)
        print(row, file=sys.stderr, flush=True)
    load = os.getloadavg()[0]
    cpu = platform.processor() or platform.machine()
    text = [f'# Full-ranking time of the plug-ins on {dataset.name}', '',
            f'Generated by `python benchmarks/plot_plugins.py --time-ranking '
            f'--dataset {dataset.name} --threads {threads}`. All '
            f'{dataset.num_users} users scored against all '
            f'{dataset.num_items} items and their top 20 taken, users in '
            f'chunks of 1024 (as the evaluator), including one forward pass '
            f'of the cascade encoder (dim 64, 2 layers per behavior); best '
            f'of {repeats}; torch threads {threads}, {cpu}, '
            f'load average {load:.1f} when it finished (the machine is '
            f'shared).', '',
            '| model | seconds |', '|---|---|']
    for row in rows:
        text.append(f"| {row['model']} | {row['seconds']:.2f} |")
    dense = [r for r in rows if 'dense_reference_seconds' in r]
    if dense:
        text += ['', f"Per-pair gate computed densely (`MoEFusion.score_dense`"
                 f", a [behaviors, users, items] tensor), extrapolated from "
                 f"1024 users: {dense[0]['dense_reference_seconds']:.1f} s "
                 f"for the scores alone. The factorized path "
                 f"(`MoEFusion.score_all`) computes the same numbers "
                 f"(tests/nn/test_fusion.py) with two matrix products plus "
                 f"an exact rescoring of the pairs that an auxiliary "
                 f"behavior links.", '']
    path.write_text('\n'.join(text) + '\n')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--dataset', default='retailrocket')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--gate-model', default='cascade+moe-user')
    parser.add_argument('--scenario-model', default='cascade+latent')
    parser.add_argument('--epochs', type=int, default=None)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--out', default=str(ROOT / 'docs' / 'results'))
    parser.add_argument('--time-ranking', action='store_true')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.time_ranking:
        dataset = load_data(args.dataset)
        time_ranking(dataset, BehaviorGraph.from_dataset(dataset),
                     args.threads, Path(args.out) /
                     f'plugins-timing-{dataset.name}.md')
        return
    config = ROOT / 'benchmarks' / 'configs' / 'plugins.json'
    _, settings, _ = load_config(config, args.dataset)
    dataset = load_data(args.dataset)
    graph = BehaviorGraph.from_dataset(dataset)
    out = Path(args.out)
    summary = {}
    model, row = train(args.gate_model, settings, dataset, args.seed,
                       args.epochs)
    g = plot_gates(model, graph, out / f'plugins-gates-{dataset.name}.png',
                   f'{args.gate_model} on {dataset.name}, seed {args.seed}'
                   f' (best epoch {row["best_epoch"]}): per-user gate '
                   f'weights, {dataset.num_users} users')
    summary['gate_mean'] = dict(zip(dataset.behaviors,
                                    g.mean(0).tolist()))
    model, row = train(args.scenario_model, settings, dataset, args.seed,
                       args.epochs)
    summary['scenarios'] = plot_scenarios(
        model, graph, out / f'plugins-scenarios-{dataset.name}.png',
        f'{args.scenario_model} on {dataset.name}, seed {args.seed} '
        f'(best epoch {row["best_epoch"]}): latent scenarios (K = '
        f'{model.backdoor.num_scenarios}, soft)')
    print(json.dumps(summary, indent=1))


if __name__ == '__main__':
    main()
