import pytest
import torch

from graphrec.data import BehaviorGraph
from graphrec.data.split import carve_validation
from graphrec.datasets import make_synthetic
from graphrec.models import MF, MODELS, LightGCN, build_model
from graphrec.models.multi import MultiBehaviorRecommender
from graphrec.models.plugins import (
    PluginRecommender,
    item_popularity_strata,
    user_activity_strata,
)
from graphrec.nn.causal import LatentScenarios
from graphrec.nn.contrastive import BiasAwareContrastive
from graphrec.train import TrainConfig, Trainer

BEHAVIORS = ('view', 'buy')


@pytest.fixture
def graph(tiny):
    return BehaviorGraph.from_dataset(tiny)


def plain_backbone(name, tiny):
    u, i = tiny.num_users, tiny.num_items
    if name == 'mf':
        return MF(u, i, embedding_dim=8)
    if name == 'lightgcn':
        return LightGCN(u, i, embedding_dim=8, num_layers=2, behaviors='all')
    return MultiBehaviorRecommender(u, i, BEHAVIORS, encoder=name,
                                    embedding_dim=8, num_layers=2,
                                    transform='linear')


@pytest.mark.parametrize('name', ['mf', 'lightgcn', 'parallel', 'cascade'])
def test_every_plugin_off_reproduces_the_backbone_exactly(tiny, graph,
                                                          name):
    torch.manual_seed(0)
    plain = plain_backbone(name, tiny)
    kwargs = {'behaviors': 'all'} if name == 'lightgcn' else (
        {} if name == 'mf' else {'transform': 'linear'})
    torch.manual_seed(0)
    model = PluginRecommender(tiny.num_users, tiny.num_items, BEHAVIORS,
                              backbone=name, embedding_dim=8,
                              backbone_kwargs=kwargs)
    assert model.decomposable == plain.decomposable
    e1, e2 = plain(graph), model(graph)
    assert torch.equal(e1['user'], e2['user'])
    assert torch.equal(e1['item'], e2['item'])
    users = torch.tensor([0, 2, 1])
    assert torch.equal(plain.score(e1, users), model.score(e2, users))
    items = torch.tensor([[1, 3], [0, 2], [2, 2]])
    assert torch.equal(plain.score(e1, users, items),
                       model.score(e2, users, items))
    if hasattr(plain, 'score_behavior'):
        assert torch.equal(plain.score_behavior(e1, 'view', users),
                           model.score_behavior(e2, 'view', users))
    # One training step moves both identically.
    cfg = TrainConfig(epochs=1, batch_size=2, lr=0.1, progress=False,
                      behavior_weights=(None if name in ('mf', 'lightgcn')
                                        else {'view': 0.5, 'buy': 1.0}))
    loss = []
    for m in (plain, model):
        torch.manual_seed(1)
        trainer = Trainer(m, tiny, cfg)
        trainer._aux_totals = {}
        loss.append(trainer.loss(torch.tensor([0, 1]), torch.tensor([1, 2])))
    assert torch.equal(loss[0], loss[1])


def test_stratified_backdoor_at_start_reproduces_the_backbone(tiny, graph):
    torch.manual_seed(0)
    plain = MF(tiny.num_users, tiny.num_items, embedding_dim=8)
    torch.manual_seed(0)
    model = PluginRecommender(tiny.num_users, tiny.num_items, BEHAVIORS,
                              embedding_dim=8, backdoor='popularity')
    model.eval()
    users = torch.arange(3)
    assert torch.equal(plain.score(plain(graph), users),
                       model.score(model(graph), users))


def test_strata_repeat_share_and_links_from_the_graph(tiny, graph):
    # Distinct users per item over view + buy: i0 2 (u0, u2), i1 2 (u0,
    # u1), i2 1, i3 1; the median 1.5 splits them. Buy pairs hit items
    # 1, 2, 0 -> strata 1, 0, 1.
    stratum, prior = item_popularity_strata(graph, 2)
    assert stratum.tolist() == [1, 1, 0, 0]
    assert prior.tolist() == pytest.approx([1 / 3, 2 / 3])
    # Every user has 2 distinct items: one stratum.
    stratum, prior = user_activity_strata(graph, 2)
    assert stratum.tolist() == [0, 0, 0]
    assert prior.tolist() == [1.0, 0.0]
    # Views per user 2, 2, 1: tertile bounds 5/3 and 2.
    stratum, prior = user_activity_strata(graph, 3, behaviors='view')
    assert stratum.tolist() == [1, 1, 0]
    assert prior.tolist() == pytest.approx([1 / 3, 2 / 3, 0.0])
    # u0 bought i1 (viewed), u1 bought i2 (viewed), u2 bought i0 (not).
    model = PluginRecommender(3, 4, BEHAVIORS, embedding_dim=4,
                              backbone='parallel', fusion='moe', gate='pair',
                              backdoor='latent')
    model(graph)
    assert model._repeat.tolist() == [1.0, 1.0, 0.0]
    links = model._links
    assert links.pairs(torch.tensor([0, 0, 2]),
                       torch.tensor([1, 2, 3])).tolist() == [[1.], [0.],
                                                             [1.]]
    assert links.dense(torch.tensor([0, 2]))[..., 0].tolist() == [
        [1., 1., 0., 0.], [0., 0., 0., 1.]]


PLUGINS = [
    {'fusion': 'moe', 'gate': 'user'},
    {'fusion': 'moe', 'gate': 'pair'},
    {'backdoor': 'popularity'},
    {'backdoor': 'activity', 'backdoor_mean': 'prob'},
    {'backdoor': 'latent'},
    {'backdoor': 'latent', 'scenario_assignment': 'hard'},
    {'fusion': 'moe', 'gate': 'pair', 'backdoor': 'popularity'},
    {'visited_head': True},
    {'visited_head': True, 'item_features': True},
    {'visited_head': True, 'item_features': True, 'pair_features': True},
    {'contrastive': 0.5},
    {'visited_head': True, 'backdoor': 'latent', 'contrastive': 0.1},
    {'fusion': 'moe', 'gate': 'pair', 'visited_head': True},
    {'fusion': 'mean', 'visited_head': True, 'backdoor': 'popularity'},
]


def randomize_plugins(model, seed=0):
    torch.manual_seed(seed)
    with torch.no_grad():
        for module in (model.fusion, model.backdoor, model.visited):
            if module is None:
                continue
            for p in module.parameters():
                p.normal_(std=0.3)
        if isinstance(model.backdoor, LatentScenarios):
            model.backdoor.prototypes.normal_()
            model.backdoor.seeded.fill_(True)


@pytest.mark.parametrize('backbone', ['mf', 'cascade'])
@pytest.mark.parametrize('kwargs', PLUGINS)
def test_all_items_equal_given_items_and_chunking(tiny, graph, backbone,
                                                  kwargs):
    torch.manual_seed(0)
    if backbone == 'mf' and ('fusion' in kwargs or 'contrastive' in kwargs):
        with pytest.raises(ValueError, match="needs per-behavior embed"):
            PluginRecommender(3, 4, BEHAVIORS, backbone=backbone, **kwargs)
        return
    model = PluginRecommender(3, 4, BEHAVIORS, backbone=backbone,
                              embedding_dim=4, chunk_size=2, **kwargs)
    randomize_plugins(model)
    model.eval()
    emb = model(graph)
    users = torch.tensor([0, 1, 2, 0])
    full = model.score(emb, users)
    items = torch.tensor([[0, 1, 2, 3]] * 4)
    assert torch.allclose(full, model.score(emb, users, items), atol=1e-5)
    assert torch.allclose(full[:, 2], model.score(emb, users, items[:, 2]),
                          atol=1e-5)
    model.chunk_size = 256
    assert torch.allclose(full, model.score(emb, users), atol=1e-6)
    if 'backdoor' in kwargs and kwargs['backdoor'] != 'latent':
        # In training mode the pair's own stratum is used, on both paths.
        model.train()
        train_full = model.score(emb, users)
        assert torch.allclose(train_full, model.score(emb, users, items),
                              atol=1e-5)
        if kwargs['backdoor'] == 'popularity':  # tiny: 2 strata in use
            assert not torch.allclose(train_full, full)


def test_per_user_gate_full_ranking_equals_per_pair_sum(tiny, graph):
    torch.manual_seed(0)
    model = PluginRecommender(3, 4, BEHAVIORS, backbone='parallel',
                              embedding_dim=4, fusion='moe', gate='user')
    randomize_plugins(model)
    assert model.decomposable
    emb = model(graph)
    g = model.gate_weights(emb)
    assert g.shape == (3, 2) and torch.allclose(g.sum(-1), torch.ones(3))
    full = model.score(emb, torch.arange(3))
    per = emb['behaviors']
    w = model.fusion.expert_weight
    for u in range(3):
        for i in range(4):
            expected = sum(g[u, b] * (w[b] @ per[name][0][u]) @ per[name][1][i]
                           for b, name in enumerate(BEHAVIORS))
            assert full[u, i].item() == pytest.approx(expected.item(),
                                                      abs=1e-5)


@pytest.mark.parametrize('kwargs', PLUGINS)
def test_every_parameter_gets_a_gradient_in_one_step(kwargs):
    data = carve_validation(make_synthetic(num_users=40, num_items=30,
                                           seed=2), seed=0)
    torch.manual_seed(0)
    model = build_model('plugins', data.num_users, data.num_items,
                        data.behaviors, backbone='cascade', embedding_dim=8,
                        backbone_kwargs={'transform': 'linear'}, **kwargs)
    cfg = TrainConfig(epochs=1, batch_size=64, progress=False,
                      behavior_weights={'view': 0.5, 'cart': 0.5,
                                        'buy': 1.0})
    trainer = Trainer(model, data, cfg)
    trainer._aux_totals = {}
    pos = trainer.positives[:, :64]
    if isinstance(model.backdoor, LatentScenarios):
        # Seed the prototypes first (the first step only seeds them).
        trainer.loss(pos[0], pos[1])
        assert bool(model.backdoor.seeded)
    trainer.loss(pos[0], pos[1]).backward()
    for name, p in model.named_parameters():
        if not p.requires_grad:  # the frozen uniform gate of 'mean'
            assert kwargs.get('fusion') == 'mean' and '.gate_' in name
            continue
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    expected = set()
    if kwargs.get('backdoor') == 'latent':
        expected |= {'kl', 'repeat'}
    if kwargs.get('visited_head'):
        expected.add('visited')
    if kwargs.get('contrastive'):
        expected.add('contrastive')
    assert set(trainer._aux_totals) == expected


@pytest.mark.parametrize('feature_lr', [1.0, 30.0])
def test_feature_weights_train_at_their_own_learning_rate(feature_lr):
    data = carve_validation(make_synthetic(num_users=40, num_items=30,
                                           seed=2), seed=0)
    torch.manual_seed(0)
    model = build_model('plugins', data.num_users, data.num_items,
                        data.behaviors, backbone='cascade', embedding_dim=8,
                        visited_head=True, item_features=True,
                        pair_features=True, feature_lr=feature_lr)
    groups = model.parameter_groups(0.01)
    # every parameter exactly once; the two feature weights in the second
    assert sorted(id(p) for g in groups for p in g['params']) == \
        sorted(id(p) for p in model.parameters())
    assert [p is q for p, q in zip(groups[1]['params'],
                                   (model.visited.feature_weight,
                                    model.visited.pair_weight))] == \
        [True, True]
    assert groups[0]['lr'] == 0.01
    assert groups[1]['lr'] == pytest.approx(0.01 * feature_lr)
    trainer = Trainer(model, data, TrainConfig(epochs=1, batch_size=64,
                                               lr=0.01, progress=False))
    lrs = [g['lr'] for g in trainer.optimizer.param_groups]
    assert lrs == pytest.approx([0.01, 0.01 * feature_lr])
    # one Adam step moves a zero-initialised weight by about lr each
    before = model.visited.pair_weight.detach().clone()
    trainer._aux_totals = {}
    trainer.optimizer.zero_grad()
    pos = trainer.positives[:, :64]
    trainer.loss(pos[0], pos[1]).backward()
    trainer.optimizer.step()
    step = (model.visited.pair_weight.detach() - before).abs().max()
    assert step == pytest.approx(0.01 * feature_lr, rel=1e-3)
    with pytest.raises(ValueError, match="'feature_lr' must be a positive"):
        build_model('plugins', 3, 4, BEHAVIORS, feature_lr=0.0)


def test_latent_training_moves_prototypes_and_logs_terms():
    data = carve_validation(make_synthetic(num_users=40, num_items=30,
                                           seed=2), seed=0)
    torch.manual_seed(0)
    model = PluginRecommender(data.num_users, data.num_items,
                              data.behaviors, embedding_dim=8,
                              backdoor='latent')
    cfg = TrainConfig(epochs=2, batch_size=64, lr=0.01, progress=False)
    result = Trainer(model, data, cfg).fit()
    assert bool(model.backdoor.seeded)
    assert all(row['aux/kl'] >= 0 and row['aux/repeat'] >= 0
               for row in result.history)
    # Prototypes are a buffer: checkpoints carry them.
    assert 'backdoor.prototypes' in model.state_dict()


def test_registered_and_repr(tiny):
    assert MODELS['plugins'] is PluginRecommender
    model = build_model('plugins', 3, 4, BEHAVIORS, fusion='moe',
                        backdoor='latent', embedding_dim=4,
                        backbone='cascade')
    assert model.behaviors == BEHAVIORS
    assert model.extra_repr() == (
        "num_users=3, num_items=4, backbone='cascade', fusion='moe', "
        "gate='user', backdoor='latent'")


def test_plugin_input_errors(tiny, graph):
    def make(**kwargs):
        return PluginRecommender(3, 4, kwargs.pop('behaviors', BEHAVIORS),
                                 embedding_dim=4, **kwargs)

    with pytest.raises(ValueError, match="'behaviors' must be a non-empty"):
        make(behaviors='buy')
    with pytest.raises(ValueError, match="'fusion' must be one of"):
        make(fusion='sum')
    with pytest.raises(ValueError, match="'backdoor' must be one of"):
        make(backdoor='front')
    with pytest.raises(ValueError, match="'chunk_size' must be a positive"):
        make(chunk_size=0)
    with pytest.raises(ValueError, match="need visited_head=True"):
        make(item_features=True)
    with pytest.raises(ValueError, match="'pair_features' feed the visited"):
        make(pair_features=True)
    with pytest.raises(TypeError, match="'visited_head' must be a bool"):
        make(visited_head=1)
    with pytest.raises(ValueError, match="'contrastive' must be a non-neg"):
        make(contrastive=-1.0)
    with pytest.raises(ValueError, match="need auxiliary behaviors"):
        make(behaviors=('buy', ), contrastive=0.1)
    with pytest.raises(ValueError, match="'backbone' must be a Recommender"):
        make(backbone='ngcf')
    with pytest.raises(ValueError, match=r"'backbone_kwargs' \['depth'\]"):
        make(backbone='mf', backbone_kwargs={'depth': 2})
    with pytest.raises(ValueError, match="given by name only"):
        make(backbone=MF(3, 4), backbone_kwargs={'init_std': 1.0})
    with pytest.raises(ValueError, match="the backbone has 5 users"):
        make(backbone=MF(5, 4))
    with pytest.raises(ValueError, match="cannot find the embedding size"):
        make(backbone=build_model('pop', 3, 4))
    model = make(backdoor='latent')
    with pytest.raises(ValueError, match="gate weights need fusion='moe'"):
        model.gate_weights(model(graph))
    with pytest.raises(ValueError, match="must hold the target behavior"):
        model.auxiliary_loss(model(graph), graph, {})
    other = BehaviorGraph(3, 4, tiny.train, ('buy', 'view'))
    with pytest.raises(ValueError, match="the graph's behaviors"):
        model(other)
    # MoE and contrastive alignment on one embedding per behavior.
    for backbone in ('mf', 'lightgcn'):
        with pytest.raises(ValueError, match=(
                f"fusion='moe' needs per-behavior embeddings, but backbone "
                f"'{backbone}' gives every behavior the same ones")):
            make(backbone=backbone, fusion='moe')
        with pytest.raises(ValueError, match="contrastive=0.5 needs per-b"):
            make(backbone=backbone, contrastive=0.5)
    with pytest.raises(ValueError, match="the anchor itself"):
        make(backbone='mf', contrastive=0.5)
    nmtr = build_model('nmtr', 3, 4, BEHAVIORS, embedding_dim=4)
    model = PluginRecommender(3, 4, BEHAVIORS, fusion='moe', backbone=nmtr)
    with pytest.raises(ValueError, match="fusion='moe' needs per-behavior "
                       "embeddings, but backbone 'MultiBehaviorRecommender'"):
        model.score(model(graph), torch.tensor([0]))
    model = PluginRecommender(3, 4, BEHAVIORS, fusion='mean',
                              backbone=LightGCN(3, 4, embedding_dim=4))
    with pytest.raises(ValueError, match="fusion='mean' needs per-behavior "
                       "embeddings, but backbone 'LightGCN'"):
        model.score(model(graph), torch.tensor([0]))
    model = make(fusion='moe', gate='pair', backbone='parallel')
    with pytest.raises(ValueError, match="the pair gate needs 'item_index'"):
        model.gate_weights(model(graph))
    g = model.gate_weights(model(graph), torch.tensor([0, 1]),
                           torch.tensor([[0, 1], [2, 3]]))
    assert g.shape == (2, 2, 2)


def test_given_backbone_instance_is_wrapped(tiny, graph):
    torch.manual_seed(0)
    backbone = LightGCN(3, 4, embedding_dim=4, num_layers=1)
    model = PluginRecommender(3, 4, BEHAVIORS, backbone=backbone,
                              backdoor='activity')
    assert model.backbone is backbone and model.embedding_dim == 4
    assert model.backbone_name == 'LightGCN'
    assert model(graph)['user'].shape == (3, 4)


def test_contrastive_term_is_the_bias_aware_infonce_of_behavior_views(
        tiny, graph):
    torch.manual_seed(0)
    model = PluginRecommender(3, 4, BEHAVIORS, backbone='parallel',
                              embedding_dim=4, contrastive=0.5,
                              num_strata=3)
    emb = model(graph)
    user = torch.tensor([2, 0, 2])
    batch = {'buy': (user, torch.tensor([0, 1, 0]),
                     torch.tensor([[3], [2], [1]]))}
    terms = model.auxiliary_loss(emb, graph, batch)
    assert set(terms) == {'contrastive'}
    # Distinct users 0 and 2; every user has 2 distinct items over
    # view + buy, so both sit in activity stratum 0.
    strata, _ = user_activity_strata(graph, 3)
    assert strata.tolist() == [0, 0, 0]
    uniq = torch.tensor([0, 2])
    views = {b: emb['behaviors'][b][0][uniq] for b in BEHAVIORS}
    expected = BiasAwareContrastive(weight=0.5)(views, strata[uniq])
    assert terms['contrastive'].item() == pytest.approx(expected.item())
    # Scores are untouched: the plain parallel model's.
    assert model.decomposable
    torch.manual_seed(0)
    plain = MultiBehaviorRecommender(3, 4, BEHAVIORS, encoder='parallel',
                                     embedding_dim=4)
    assert torch.equal(plain.score(plain(graph), uniq),
                       model.score(emb, uniq))


def test_contrastive_users_bounds_the_in_batch_term(tiny, graph):
    torch.manual_seed(0)
    model = PluginRecommender(3, 4, BEHAVIORS, backbone='parallel',
                              embedding_dim=4, contrastive=0.5,
                              num_strata=3, contrastive_users=2)
    emb = model(graph)
    # Only the first two pairs give the users: 1 and 0, not 2.
    user = torch.tensor([1, 0, 2, 1])
    batch = {'buy': (user, torch.tensor([0, 1, 0, 2]),
                     torch.tensor([[3], [2], [1], [3]]))}
    term = model.auxiliary_loss(emb, graph, batch)['contrastive']
    strata, _ = user_activity_strata(graph, 3)
    uniq = torch.tensor([0, 1])
    views = {b: emb['behaviors'][b][0][uniq] for b in BEHAVIORS}
    expected = BiasAwareContrastive(weight=0.5)(views, strata[uniq])
    assert term.item() == pytest.approx(expected.item())
    with pytest.raises(ValueError, match="'contrastive_users' must be a po"):
        PluginRecommender(3, 4, BEHAVIORS, contrastive=0.5,
                          contrastive_users=0)


def test_visited_head_scores_visited_pairs_in_repeat_mode(tiny, graph):
    torch.manual_seed(0)
    model = PluginRecommender(3, 4, BEHAVIORS, embedding_dim=4,
                              visited_head=True)
    assert not model.decomposable
    model.eval()
    emb = model(graph)
    head = model.visited
    users, items = torch.tensor([0, 0]), torch.tensor([1, 2])
    # u0 viewed i1 (repeat mode) but not i2 (explore mode).
    p = head.components(emb['user'][users], emb['item'][items],
                        torch.tensor([[1.0], [0.0]]))
    assert p['visited'].tolist() == [True, False]
    prob = torch.sigmoid(model.score(emb, users, items))
    assert torch.allclose(prob, p['prob'], atol=1e-6)


def test_visited_head_adds_the_fusion_and_cascade_scores(tiny, graph):
    # With MoE fusion and a backbone with NMTR's cascaded heads, the target
    # logit is the visited mixture with base = fusion + cascade logit added
    # to both mode scores.
    torch.manual_seed(0)
    model = PluginRecommender(3, 4, BEHAVIORS, backbone='cascade',
                              embedding_dim=4, fusion='moe',
                              visited_head=True,
                              backbone_kwargs={'head': 'cascaded'})
    randomize_plugins(model)
    model.eval()
    emb = model(graph)
    users = torch.tensor([0, 1, 2])
    full = model.score(emb, users)
    per = emb['behaviors']
    moe = model.fusion.score_all(
        torch.stack([per[b][0][users] for b in BEHAVIORS], -2),
        torch.stack([per[b][1] for b in BEHAVIORS], -2), emb['user'][users],
        emb['item'], None)
    cascade = model.backbone.score_behavior(emb, 'buy', users)
    links = model._links.dense(users)
    expected = model.visited.score_all(emb['user'][users], emb['item'],
                                       links, moe + cascade)
    assert torch.allclose(full, expected, atol=1e-6)
    # The head's own formula with that base, on one visited and one new
    # pair by hand: u0 viewed i0, not i3.
    parts = model.visited.components(emb['user'][:1], emb['item'][[0, 3]]
                                     .unsqueeze(0), links[:1, [0, 3]])
    p_r = parts['repeat'][0, 0]
    base = (moe + cascade)[0, [0, 3]]
    h = model.visited
    p, q = emb['user'][0], emb['item'][[0, 3]]
    s_r = (p * h.repeat_weight) @ q[0] + h.link_weights(p[None])[0] @ \
        links[0, 0] + h.repeat_bias + base[0]
    s_e = (p * h.explore_weight) @ q[1] + h.explore_bias + base[1]
    prob = torch.stack([p_r * torch.sigmoid(s_r),
                        (1 - p_r) * torch.sigmoid(s_e)])
    assert torch.allclose(torch.sigmoid(full[0, [0, 3]]), prob, atol=1e-6)


def test_mean_fusion_keeps_a_uniform_gate(tiny):
    data = carve_validation(make_synthetic(num_users=40, num_items=30,
                                           seed=2), seed=0)
    torch.manual_seed(0)
    model = PluginRecommender(data.num_users, data.num_items,
                              data.behaviors, backbone='parallel',
                              embedding_dim=8, fusion='mean')
    Trainer(model, data, TrainConfig(epochs=2, batch_size=64, lr=0.05,
                                     progress=False)).fit()
    emb = model(BehaviorGraph.from_dataset(data))
    g = model.gate_weights(emb)
    assert torch.allclose(g, torch.full_like(g, 1 / 3))
    # The experts themselves did train.
    assert not torch.allclose(model.fusion.expert_weight[0], torch.eye(8))


def test_pair_features_without_any_visited_pair(graph):
    # Auxiliary behaviors with no edges: no pair has features, and scoring
    # given pairs and all items still agrees.
    empty = BehaviorGraph(3, 4, {'view': torch.zeros(2, 0, dtype=torch.long),
                                 'buy': graph.edge_index_dict['buy']},
                          BEHAVIORS)
    torch.manual_seed(0)
    model = PluginRecommender(3, 4, BEHAVIORS, embedding_dim=4,
                              visited_head=True, pair_features=True)
    model.eval()
    with torch.no_grad():
        emb = model(empty)
        items = torch.arange(4).expand(3, 4)
        assert torch.allclose(model.score(emb, torch.arange(3), items),
                              model.score(emb, torch.arange(3)), atol=1e-6)


def test_leave_one_out_statistics_for_train_purchases_in_training():
    from graphrec.nn.visited import item_statistics
    data = make_synthetic(num_users=30, num_items=40, seed=3)
    graph = BehaviorGraph.from_dataset(data)

    def make(leave_one_out):
        torch.manual_seed(0)
        return PluginRecommender(
            data.num_users, data.num_items, data.behaviors,
            backbone='cascade', embedding_dim=8, visited_head=True,
            item_features=True, leave_one_out=leave_one_out)

    model, plain = make(True), make(False)
    with torch.no_grad():
        model.visited.feature_weight.normal_()
    plain.load_state_dict(model.state_dict())
    bought = graph.edge_index_dict[data.target]
    key = set((bought[0] * data.num_items + bought[1]).tolist())
    user = bought[0, :12]
    # items others bought (so their two tables differ) that u did not
    other = torch.tensor([next(i for i in bought[1].tolist()
                               if int(u) * data.num_items + i not in key)
                          for u in user])
    items = torch.stack([bought[1, :12], other], -1)  # [B, 2]
    for m in (model, plain):
        m.train()
    emb = model(graph)
    assert torch.equal(plain(graph)['user'], emb['user'])
    out, ref = model.score(emb, user, items), plain.score(emb, user, items)
    # the unbought pairs: the plain statistics
    assert torch.allclose(out[:, 1], ref[:, 1])
    # the train purchases: exactly the head on the held-out statistics
    assert not torch.allclose(out[:, 0], ref[:, 0])
    plain._item_features = item_statistics(graph, leave_one_out=True)
    held = plain.score(emb, user, items)
    assert torch.allclose(out[:, 0], held[:, 0], atol=1e-6)
    assert torch.allclose(model.score(emb, user, items[:, 0]), out[:, 0])
    # evaluation: plain statistics for every pair and all-item scores
    model.eval()
    plain._item_features = item_statistics(graph)
    plain.eval()
    assert torch.allclose(model.score(emb, user, items),
                          plain.score(emb, user, items))
    assert torch.allclose(model.score(emb, user), plain.score(emb, user))
    with pytest.raises(ValueError, match="it needs item_features=True"):
        PluginRecommender(3, 4, BEHAVIORS, visited_head=True,
                          leave_one_out=True)
    with pytest.raises(TypeError, match="'leave_one_out' must be a bool"):
        PluginRecommender(3, 4, BEHAVIORS, visited_head=True,
                          item_features=True, leave_one_out=1)


def test_full_model_leave_one_out_follows_the_item_features():
    data = make_synthetic(num_users=30, num_items=40, seed=1)

    def make(**kwargs):
        return build_model('causal_cascade', data.num_users, data.num_items,
                           behaviors=data.behaviors, embedding_dim=8,
                           **kwargs)

    assert make(leave_one_out=True).leave_one_out is True
    assert make().leave_one_out is False
    # the ablations that drop the item statistics drop it too
    assert make(leave_one_out=True, item_features=False).leave_one_out \
        is False
    assert make(leave_one_out=True, visited_head=False).leave_one_out \
        is False


@pytest.mark.parametrize('kwargs', [
    {'backdoor': 'popularity'},
    {'backdoor': 'latent', 'scenario_assignment': 'hard'},
])
def test_score_fn_scores_in_evaluation_mode(graph, tiny, kwargs):
    # A trainer validates between epochs with the model in training mode;
    # the scores must be the evaluation-mode ones (the backdoor adjustment,
    # not the training formula; no sampled scenarios) and the mode kept.
    torch.manual_seed(0)
    model = PluginRecommender(tiny.num_users, tiny.num_items, BEHAVIORS,
                              backbone='cascade', embedding_dim=8,
                              num_strata=2, **kwargs)
    with torch.no_grad():
        for p in model.backdoor.parameters():
            p.normal_()
    users = torch.arange(tiny.num_users)
    model.eval()
    with torch.no_grad():
        expected = model.score(model(graph), users)
    model.train()
    fn = model.score_fn(graph)
    assert model.training
    first, second = fn(users), fn(users)
    assert model.training
    assert torch.allclose(first, expected, atol=1e-6)
    assert torch.equal(first, second)
    with torch.no_grad():
        trained = model.score(model(graph), users)
    assert not torch.allclose(trained, expected, atol=1e-4)
