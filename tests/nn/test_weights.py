import copy
import math

import pytest
import torch

from graphrec.data.graph import BehaviorGraph, BipartiteAdjacency
from graphrec.data.split import carve_validation
from graphrec.datasets.synthetic import make_synthetic
from graphrec.models import build_model
from graphrec.models.mf import LightGCN
from graphrec.models.multi import MultiBehaviorRecommender
from graphrec.nn.encoders import CascadeEncoder, ParallelEncoder
from graphrec.nn.weights import (
    CAGED,
    ConditionalVAE,
    EdgeCVAE,
    build_edge_weights,
    edge_scores,
    gaussian_kl,
    momentum_update,
    reconstruction_error,
    renormalize,
)
from graphrec.testing import DEVICES
from graphrec.train.trainer import TrainConfig, Trainer

BEHAVIORS = ('view', 'cart', 'buy')
# 3 users, 4 items; view degrees: users (2, 2, 1), items (1, 2, 1, 1).
VIEW = torch.tensor([[0, 0, 1, 1, 2], [0, 1, 1, 2, 3]])


@pytest.fixture
def graph():
    return BehaviorGraph(3, 4, {
        'view': VIEW,
        'cart': torch.tensor([[0, 1, 2], [1, 2, 3]]),
        'buy': torch.tensor([[0, 1], [1, 2]]),
    }, BEHAVIORS)


def _embeddings(seed=0, scale=0.3):
    gen = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(3, 8, generator=gen),
            scale * torch.randn(4, 8, generator=gen))


# -- the ELBO pieces --------------------------------------------------------
def test_gaussian_kl_and_reconstruction_error_by_hand():
    mu = torch.tensor([[0.0, 0.0], [1.0, -2.0]])
    logvar = torch.tensor([[0.0, 0.0], [math.log(2.0), 0.0]])
    # Row 1: 0.5 * ((1 + 2 - 1 - log 2) + (4 + 1 - 1 - 0)).
    want = torch.tensor([0.0, 0.5 * (2.0 - math.log(2.0) + 4.0)])
    assert torch.allclose(gaussian_kl(mu, logvar), want)
    x_hat = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    assert torch.equal(reconstruction_error(x_hat, x),
                       torch.tensor([5.0, 25.0]))


def test_elbo_pieces_pass_gradcheck_in_float64():
    gen = torch.Generator().manual_seed(0)
    mu = torch.randn(4, 3, dtype=torch.double, generator=gen,
                     requires_grad=True)
    logvar = torch.randn(4, 3, dtype=torch.double, generator=gen,
                         requires_grad=True)
    assert torch.autograd.gradcheck(gaussian_kl, (mu, logvar))
    x_hat = torch.randn(4, 5, dtype=torch.double, generator=gen,
                        requires_grad=True)
    x = torch.randn(4, 5, dtype=torch.double, generator=gen,
                    requires_grad=True)
    assert torch.autograd.gradcheck(reconstruction_error, (x_hat, x))
    recon = torch.rand(6, dtype=torch.double, generator=gen,
                       requires_grad=True)
    kl = torch.rand(6, dtype=torch.double, generator=gen,
                    requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda r, k: edge_scores(r, k, a=0.7, beta=1.3), (recon, kl))

    torch.manual_seed(0)
    vae = ConditionalVAE(5, hidden_dim=6, latent_dim=3).double()
    noise = torch.randn(4, 3, dtype=torch.double, generator=gen,
                        requires_grad=True)
    cond = torch.randn(4, 5, dtype=torch.double, generator=gen,
                       requires_grad=True)

    def negative_elbo(x, cond, noise):
        x_hat, mu, logvar = vae(x, cond, noise=noise)
        return reconstruction_error(x_hat, x) + gaussian_kl(mu, logvar)
    assert torch.autograd.gradcheck(negative_elbo, (x, cond, noise))

    pair = EdgeCVAE(5, hidden_dim=6, latent_dim=3).double()
    assert torch.autograd.gradcheck(
        lambda u, i: pair(u, i, sample=False), (cond, x))


def test_scores_are_in_zero_one():
    recon = torch.tensor([0.0, 0.5, 3.0, 1e4, float('inf')])
    kl = torch.tensor([0.0, 0.2, 0.0, 1e4, 0.0])
    s = edge_scores(recon, kl, a=2.0, beta=0.5)
    assert bool((s > 0).all()) and bool((s <= 1).all())
    assert s[0] == 1.0
    assert torch.isclose(s[1], torch.tensor(math.exp(-1.1)))
    assert torch.isclose(s[2], torch.tensor(math.exp(-6.0)))

    caged = CAGED(['view'], embedding_dim=8)
    x_user, x_item = _embeddings(scale=5.0)  # large errors: tiny scores
    s = caged.scores('view', x_user, x_item, VIEW)
    assert s.shape == (5, )
    assert bool((s > 0).all()) and bool((s <= 1).all())


# -- the momentum update and the renormalisation ------------------------------
def test_momentum_update_on_literal_numbers():
    w = torch.tensor([0.5, 0.25, 1.0])
    norm = torch.tensor([0.5, 0.25, 0.1])
    s = torch.tensor([1.0, 0.5, 0.0])
    out = momentum_update(w, norm, s, eps=0.1, scale=2.0)
    # 0.9 * 0.5 + 0.1 * 2 * 0.5 * 1; 0.9 * 0.25 + 0.1 * 2 * 0.25 * 0.5;
    # 0.9 * 1 + 0.
    assert torch.allclose(out, torch.tensor([0.55, 0.25, 0.9]))
    assert torch.equal(momentum_update(w, norm, s, eps=0.0, scale=2.0), w)


def test_refresh_applies_the_momentum_formula(graph, monkeypatch):
    caged = CAGED(['view'], embedding_dim=8, eps=0.5, renormalize=False)
    s = torch.tensor([1.0, 0.5, 0.25, 1.0, 0.5])
    monkeypatch.setattr(caged, 'scores', lambda *args: s)
    adj = graph.adjacency('view')
    d_u = torch.tensor([2.0, 2.0, 2.0, 2.0, 1.0])
    d_i = torch.tensor([1.0, 2.0, 2.0, 1.0, 1.0])
    norm = (d_u * d_i).rsqrt()
    c = float((d_u * d_i).sqrt().mean())
    caged.refresh({'view': _embeddings()}, {'view': adj})
    want = 0.5 * norm + 0.5 * c * norm * s  # W starts at A_hat
    assert torch.allclose(caged.weight('view'), want)
    assert caged.last_refresh['view']['scale'] == pytest.approx(c)
    caged.refresh({'view': _embeddings()}, {'view': adj})
    assert torch.allclose(caged.weight('view'),
                          0.5 * want + 0.5 * c * norm * s)
    # The propagated values are the weights, gathered in CSR order.
    weighted = caged.adjacency('view', adj)
    assert weighted is not adj and weighted.crow is adj.crow
    assert torch.allclose(weighted.value, caged.weight('view'))
    assert torch.allclose(weighted.val, caged.weight('view')[adj.perm])
    assert caged.adjacency('view', adj) is weighted  # cached


def test_renormalize_gives_a_hat_back_for_equal_weights(graph):
    norm = graph.adjacency('view').norm()
    assert torch.allclose(renormalize(3.0 * norm, norm, VIEW, 3, 4), norm)
    w = torch.tensor([0.3, 2.0, 0.1, 5.0, 1.0])
    out = renormalize(w, norm, VIEW, 3, 4)
    dense = torch.zeros(3, 4)
    dense[VIEW[0], VIEW[1]] = out
    assert torch.linalg.matrix_norm(dense, ord=2) <= 1 + 1e-5


def test_renormalize_option_keeps_the_scale(graph, monkeypatch):
    caged = CAGED(['view'], embedding_dim=8, eps=1.0, renormalize=True)
    monkeypatch.setattr(caged, 'scores', lambda *args: torch.ones(5))
    caged.refresh({'view': _embeddings()}, {'view': graph.adjacency('view')})
    # eps = 1 and S = 1: W = c * A_hat, renormalised back to A_hat.
    assert torch.allclose(caged.weight('view'),
                          graph.adjacency('view').norm(), atol=1e-6)


# -- alignment with edges -----------------------------------------------------
def test_weights_follow_their_edges_under_permutation(graph):
    perm = torch.tensor([3, 0, 4, 2, 1])
    permuted = BehaviorGraph(3, 4, {**graph.edge_index_dict,
                                    'view': VIEW[:, perm]}, BEHAVIORS)
    torch.manual_seed(0)
    enc = ParallelEncoder(3, 4, BEHAVIORS, embedding_dim=8, num_layers=2,
                          edge_weights='caged')
    other = copy.deepcopy(enc)
    with torch.no_grad():
        per = enc(graph)
        enc.edge_weights.refresh(
            per, {b: graph.adjacency(b) for b in BEHAVIORS})
        other.edge_weights.refresh(
            other(permuted), {b: permuted.adjacency(b) for b in BEHAVIORS})
    w, w_perm = enc.edge_weights.weight('view'), \
        other.edge_weights.weight('view')
    assert not torch.allclose(w, graph.adjacency('view').norm())
    assert torch.allclose(w_perm, w[perm], atol=1e-6)
    out, out_perm = enc(graph), other(permuted)
    for b in BEHAVIORS:
        assert torch.allclose(out[b][0], out_perm[b][0], atol=1e-6)
        assert torch.allclose(out[b][1], out_perm[b][1], atol=1e-6)
    # Weights of one edge order on the other are refused, not misaligned.
    with pytest.raises(ValueError, match='edge order'):
        enc(permuted)
    small = BehaviorGraph(3, 4, {**graph.edge_index_dict,
                                 'view': VIEW[:, :4]}, BEHAVIORS)
    with pytest.raises(ValueError, match='has 4'):
        enc(small)


# -- off reproduces the plain encoder -----------------------------------------
@pytest.mark.parametrize('kind', ['lightgcn', 'parallel', 'cascade'])
def test_off_reproduces_the_plain_encoder(graph, kind):
    def make(**kw):
        torch.manual_seed(3)
        if kind == 'lightgcn':
            return LightGCN(3, 4, 8, num_layers=2, behaviors='all', **kw)
        return MultiBehaviorRecommender(3, 4, BEHAVIORS, encoder=kind,
                                        embedding_dim=8, transform='linear',
                                        **kw) if kind == 'cascade' else \
            MultiBehaviorRecommender(3, 4, BEHAVIORS, encoder=kind,
                                     embedding_dim=8, **kw)
    plain, off, on = make(), make(edge_weights=None), make(
        edge_weights='caged')
    assert off.state_dict().keys() == plain.state_dict().keys()
    for key, value in plain.state_dict().items():
        assert torch.equal(off.state_dict()[key], value)
        assert torch.equal(on.state_dict()[key], value)  # same init
    assert off.auxiliary_loss(off(graph), graph, {}) == {}
    off.on_validation(graph, improved=True)  # no-op
    want = plain(graph)
    for model in (off, on):
        got = model(graph)
        assert torch.equal(got['user'], want['user'])
        assert torch.equal(got['item'], want['item'])
    # eps = 0: a refresh keeps W = A_hat, bit for bit.
    frozen = make(edge_weights='caged', edge_weight_kwargs={'eps': 0.0})
    frozen.on_validation(graph, improved=True)
    assert frozen.edge_weights.weight(frozen.edge_weights.keys[0]) \
        is not None
    got = frozen(graph)
    assert torch.equal(got['user'], want['user'])
    assert torch.equal(got['item'], want['item'])


def test_lightgcn_estimator_uses_the_propagated_edges(graph):
    model = LightGCN(3, 4, 8, num_layers=2, behaviors=['view', 'buy'],
                     edge_weights='caged')
    assert model.edge_weights.keys == ('view+buy', )
    model.on_validation(graph, improved=True)
    union = graph.adjacency(['view', 'buy'])
    assert model.edge_weights.weight('view+buy').shape == (
        union.num_edges, )
    model.on_validation(graph, improved=False)  # 'improved': no refresh
    before = model.edge_weights.weight('view+buy').clone()
    model.on_validation(graph, improved=False)
    assert torch.equal(model.edge_weights.weight('view+buy'), before)


def test_schedule_always_refreshes_after_every_validation(graph):
    model = LightGCN(3, 4, 8, num_layers=1, behaviors='view',
                     edge_weights='caged',
                     edge_weight_kwargs={'schedule': 'always'})
    model.on_validation(graph, improved=False)
    assert model.edge_weights.weight('view') is not None


# -- training, checkpoints, devices -------------------------------------------
def test_loss_trains_the_cvaes_on_detached_embeddings(graph):
    enc = CascadeEncoder(3, 4, BEHAVIORS, embedding_dim=8,
                         edge_weights='caged',
                         edge_weight_kwargs={'num_samples': 16})
    per = enc(graph)
    loss = enc.edge_weights.loss(
        per, {b: graph.adjacency(b) for b in BEHAVIORS})
    loss.backward()
    assert enc.user_embedding.weight.grad is None  # detached
    for name, p in enc.edge_weights.named_parameters():
        assert p.grad is not None and bool(p.grad.abs().sum() > 0), name


def test_state_dict_carries_the_weights(graph):
    torch.manual_seed(0)
    model = build_model('plugins', 3, 4, BEHAVIORS, backbone='cascade',
                        embedding_dim=8,
                        backbone_kwargs={'edge_weights': 'caged'})
    model.on_validation(graph, improved=True)
    state = model.state_dict()
    assert state['backbone.encoder.edge_weights.weight_view'].shape == (5, )
    fresh = build_model('plugins', 3, 4, BEHAVIORS, backbone='cascade',
                        embedding_dim=8,
                        backbone_kwargs={'edge_weights': 'caged'})
    fresh.load_state_dict(state)  # [0] buffers take the stored shape
    want, got = model(graph), fresh(graph)
    assert torch.equal(got['user'], want['user'])
    fresh.reset_parameters()
    assert fresh.backbone.edge_weights.weight('view') is None


@pytest.mark.parametrize('device', DEVICES)
def test_weights_move_with_the_model(graph, device):
    torch.manual_seed(0)
    model = MultiBehaviorRecommender(3, 4, BEHAVIORS, encoder='parallel',
                                     embedding_dim=8, edge_weights='caged')
    model.on_validation(graph, improved=True)
    want = model(graph)
    moved = copy.deepcopy(model).to(device)
    assert moved.edge_weights.weight('view').device.type == device
    on_device = graph.to(device)
    got = moved(on_device)
    assert torch.allclose(got['user'].cpu(), want['user'], atol=1e-6)
    moved.on_validation(on_device, improved=True)  # refresh on the device
    assert moved.edge_weights.weight('view').device.type == device


def test_trainer_alternates_and_resumes_exactly(tmp_path):
    torch.manual_seed(0)
    data = carve_validation(make_synthetic(60, 40, views_per_user=8.0,
                                           seed=1), seed=0)
    cfg = TrainConfig(epochs=4, eval_every=1, batch_size=64, lr=0.01,
                      progress=False)

    def make():
        torch.manual_seed(0)
        return build_model('lightgcn', 60, 40, num_layers=2,
                           behaviors='all', edge_weights='caged',
                           edge_weight_kwargs={'num_samples': 64,
                                               'schedule': 'always'})
    model = make()
    full = Trainer(model, data, cfg).fit()
    assert all('aux/caged' in row for row in full.history)
    assert model.edge_weights.last_refresh['all']['scale'] > 1.0

    # Stop after 2 epochs, resume in a fresh model: the same run.
    first = Trainer(make(), data, TrainConfig(**{**cfg.__dict__,
                                                 'epochs': 2}),
                    out_dir=str(tmp_path)).fit()
    assert first.epochs_run == 2
    resumed = Trainer(make(), data, cfg, out_dir=str(tmp_path)).fit(
        resume=True)
    assert [r['loss'] for r in resumed.history] == \
        [r['loss'] for r in full.history]
    assert resumed.best_valid == full.best_valid


def test_full_model_accepts_caged(graph):
    model = build_model('causal_cascade', 3, 4, BEHAVIORS, embedding_dim=8,
                        edge_weights='caged', visited_head=False,
                        contrastive=0.0)
    assert model.backbone.edge_weights is not None
    model.on_validation(graph, improved=True)
    assert model.backbone.edge_weights.weight('buy').shape == (2, )


# -- input checks -----------------------------------------------------------
def test_errors(graph):
    with pytest.raises(ValueError, match="'keys' must name distinct"):
        CAGED([], 8)
    with pytest.raises(ValueError, match="'keys' must name distinct"):
        CAGED(['a', 'a'], 8)
    with pytest.raises(ValueError, match="without '.'"):
        CAGED(['a.b'], 8)
    with pytest.raises(ValueError, match="'eps' must be in"):
        CAGED(['a'], 8, eps=1.5)
    with pytest.raises(ValueError, match="'beta' must be a non-negative"):
        CAGED(['a'], 8, beta=-1.0)
    with pytest.raises(ValueError, match="'num_samples' must be a positive"):
        CAGED(['a'], 8, num_samples=0)
    with pytest.raises(ValueError, match="'schedule' must be one of"):
        CAGED(['a'], 8, schedule='test')
    with pytest.raises(ValueError, match="'latent_dim' must be a positive"):
        ConditionalVAE(8, latent_dim=0)
    with pytest.raises(ValueError, match="unknown edge set 'buy'"):
        CAGED(['view'], 8).weight('buy')
    with pytest.raises(ValueError, match="must be None or 'caged'"):
        build_edge_weights('ips', ['view'], 8)
    with pytest.raises(ValueError, match="need edge_weights='caged'"):
        build_edge_weights(None, ['view'], 8, {'eps': 0.1})
    with pytest.raises(ValueError, match='do not fit CAGED'):
        build_edge_weights('caged', ['view'], 8, {'epsilon': 0.1})
    with pytest.raises(ValueError, match="needs a graph encoder"):
        MultiBehaviorRecommender(3, 4, BEHAVIORS, encoder='shared',
                                 edge_weights='caged')


def test_adjacency_copy_shares_structure(graph):
    adj = graph.adjacency('buy')
    assert isinstance(adj, BipartiteAdjacency)
    caged = CAGED(['buy'], 8)
    assert caged.adjacency('buy', adj) is adj  # before any refresh
