import itertools
import math

import networkx as nx
import pytest
import torch

from graphrec.losses import kl_to_uniform, scenario_repeat_loss
from graphrec.nn.causal import (
    LatentScenarios,
    StratifiedBackdoor,
    backdoor_paths,
    check_backdoor,
    confounding_dag,
    open_backdoor_path,
)


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


# -- the backdoor criterion on textbook graphs --------------------------------

def test_confounder_must_be_adjusted():
    dag = nx.DiGraph([('Z', 'X'), ('Z', 'Y'), ('X', 'Y')])
    check_backdoor(dag, 'X', 'Y', {'Z'})
    assert backdoor_paths(dag, 'X', 'Y') == [['X', 'Z', 'Y']]
    with pytest.raises(ValueError, match='open backdoor path X <- Z -> Y'):
        check_backdoor(dag, 'X', 'Y', set())


def test_mediator_must_not_be_adjusted():
    dag = nx.DiGraph([('Z', 'X'), ('Z', 'Y'), ('X', 'M'), ('M', 'Y')])
    check_backdoor(dag, 'X', 'Y', {'Z'})
    with pytest.raises(ValueError, match=r"holds \['M'\], descendant"):
        check_backdoor(dag, 'X', 'Y', {'Z', 'M'})


def test_m_structure_collider_opens_the_path():
    dag = nx.DiGraph([('A', 'X'), ('A', 'M'), ('B', 'M'), ('B', 'Y'),
                      ('X', 'Y')])
    check_backdoor(dag, 'X', 'Y', set())  # blocked by the collider M
    with pytest.raises(ValueError,
                       match='open backdoor path X <- A -> M <- B -> Y'):
        check_backdoor(dag, 'X', 'Y', {'M'})
    check_backdoor(dag, 'X', 'Y', {'M', 'A'})
    check_backdoor(dag, 'X', 'Y', {'M', 'B'})


def test_path_enumeration_agrees_with_networkx_d_separation():
    # Every adjustment set of three textbook graphs: the hand-written path
    # check and networkx's d-separation in the graph without X's out-edges
    # must agree.
    dags = [nx.DiGraph([('Z', 'X'), ('Z', 'Y'), ('X', 'Y')]),
            nx.DiGraph([('A', 'X'), ('A', 'M'), ('B', 'M'), ('B', 'Y'),
                        ('X', 'Y')]),
            confounding_dag('C')]
    checked = 0
    for dag in dags:
        cut = dag.copy()
        cut.remove_edges_from(list(dag.out_edges('X')))
        others = [n for n in dag if n not in ('X', 'Y')]
        for r in range(len(others) + 1):
            for z in itertools.combinations(others, r):
                blocked = open_backdoor_path(dag, 'X', 'Y', z) is None
                assert blocked == nx.is_d_separator(cut, {'X'}, {'Y'},
                                                    set(z))
                checked += 1
    assert checked == 2 + 8 + 4


def test_confounding_dag_is_adjusted_by_the_confounder():
    dag = confounding_dag('popularity')
    assert set(dag.edges) == {('popularity', 'A'), ('A', 'X'), ('X', 'Y'),
                              ('popularity', 'Y')}
    check_backdoor(dag, 'X', 'Y', {'popularity'})
    check_backdoor(dag, 'X', 'Y', {'A'})
    with pytest.raises(ValueError,
                       match='open backdoor path X <- A <- popularity -> Y'):
        check_backdoor(dag, 'X', 'Y', set())


def test_check_backdoor_input_errors():
    dag = nx.DiGraph([('Z', 'X'), ('Z', 'Y'), ('X', 'Y')])
    with pytest.raises(ValueError, match="'dag' must be a networkx.DiGraph"):
        check_backdoor(nx.DiGraph([('X', 'Y'), ('Y', 'X')]), 'X', 'Y', [])
    with pytest.raises(ValueError, match="'dag' must be a networkx.DiGraph"):
        check_backdoor(nx.Graph([('X', 'Y')]), 'X', 'Y', [])
    with pytest.raises(ValueError, match=r"no node\(s\) \['W'\]"):
        check_backdoor(dag, 'X', 'Y', {'W'})
    with pytest.raises(ValueError, match="must not hold the treatment"):
        check_backdoor(dag, 'X', 'Y', {'X', 'Z'})


# -- observed strata ----------------------------------------------------------

def make_strata(mean):
    bd = StratifiedBackdoor(num_strata=2, embedding_dim=2, num_nodes=3,
                            side='item', mean=mean)
    with torch.no_grad():
        bd.embedding.copy_(torch.tensor([[1., 0], [0, 2]]))
        bd.bias.copy_(torch.tensor([0.5, -1.0]))
    bd.set_strata(torch.tensor([0, 1, 1]), torch.tensor([0.25, 0.75]))
    return bd


def test_backdoor_sum_with_known_prior():
    # p = [1, 1], q = [0, 1], base 0.3: p + q = [1, 2];
    # stratum 0: 0.3 + 1 + 0.5 = 1.8; stratum 1: 0.3 + 4 - 1 = 3.3.
    p, q, base = torch.tensor([1., 1]), torch.tensor([0., 1]), \
        torch.tensor(0.3)
    bd = make_strata('logit')
    assert bd.conditioned(base, p, q, torch.tensor(0)).item() == \
        pytest.approx(1.8)
    assert bd.conditioned(base, p, q, torch.tensor(2)).item() == \
        pytest.approx(3.3)
    # sum_c P(c) s(u, i, c) = 0.25 * 1.8 + 0.75 * 3.3 = 2.925
    assert bd.adjusted(base, p, q).item() == pytest.approx(2.925)
    bd = make_strata('prob')
    mix = 0.25 * sigmoid(1.8) + 0.75 * sigmoid(3.3)
    assert bd.adjusted(base, p, q).item() == pytest.approx(
        math.log(mix / (1 - mix)), abs=1e-5)


@pytest.mark.parametrize('mean', ['logit', 'prob'])
def test_backdoor_all_items_equals_pairs(mean):
    torch.manual_seed(0)
    bd = make_strata(mean)
    user, item = torch.randn(4, 2), torch.randn(3, 2)
    base = torch.randn(4, 3)
    full = bd.adjusted_all(base, user, item)
    for b in range(4):
        for i in range(3):
            assert full[b, i].item() == pytest.approx(
                bd.adjusted(base[b, i], user[b], item[i]).item(), abs=1e-5)


def test_stratified_backdoor_starts_as_identity_and_errors():
    bd = StratifiedBackdoor(3, 4, num_nodes=5)
    base = torch.randn(5)
    assert torch.equal(bd.adjusted(base, torch.randn(5, 4),
                                   torch.randn(5, 4)), base)
    assert bd.adjustment == {'popularity'} and 'popularity' in bd.dag
    with pytest.raises(ValueError, match="'stratum' must have shape"):
        bd.set_strata(torch.zeros(4, dtype=torch.long), torch.ones(3) / 3)
    with pytest.raises(ValueError, match=r"ids in \[0, 2\]"):
        bd.set_strata(torch.full((5, ), 3), torch.ones(3) / 3)
    with pytest.raises(ValueError, match="summing to 1"):
        bd.set_strata(torch.zeros(5, dtype=torch.long), torch.ones(3))
    with pytest.raises(ValueError, match="'num_strata' must be a positive"):
        StratifiedBackdoor(0)
    with pytest.raises(ValueError, match="'side' must be one of"):
        StratifiedBackdoor(side='pair')
    with pytest.raises(ValueError, match="'mean' must be one of"):
        StratifiedBackdoor(mean='median')


# -- latent scenarios ---------------------------------------------------------

def test_soft_assignment_is_softmax_of_negative_distances():
    sc = LatentScenarios(embedding_dim=2, num_scenarios=2, proj_dim=2)
    sc.prototypes.copy_(torch.tensor([[0., 0], [1, 0]]))
    # x = [1, 0]: squared distances 1 and 0 -> softmax(-1, 0).
    pi = sc.logits(torch.tensor([[1., 0]])).softmax(-1)
    e = math.e
    assert pi[0].tolist() == pytest.approx([1 / (1 + e), e / (1 + e)])


def test_hard_gumbel_assignment_is_one_hot_and_gradient_flows():
    torch.manual_seed(0)
    sc = LatentScenarios(embedding_dim=4, num_scenarios=4, proj_dim=3,
                         assignment='hard', tau=0.1)
    sc.prototypes.copy_(torch.randn(4, 3))
    with torch.no_grad():
        sc.bias.copy_(torch.tensor([0., 1, 2, 3]))  # scenarios differ
    sc.train()
    user, item = torch.randn(6, 4), torch.randn(6, 4)
    a = sc.assign(sc.logits(sc.project(user, item)))
    assert set(a.detach().unique().tolist()) == {0.0, 1.0}
    assert a.sum(-1).tolist() == [1.0] * 6
    out = sc(torch.zeros(6), user, item)
    # One-hot values: each output is the base (0) plus its scenario's bias.
    assert set(out.detach().tolist()) <= {0.0, 1.0, 2.0, 3.0}
    out.sum().backward()
    assert sc.proj_user.weight.grad.abs().sum() > 0
    assert sc.proj_item.weight.grad.abs().sum() > 0
    # Evaluation: the arg-max one-hot, deterministic.
    sc.eval()
    logits = sc.logits(sc.project(user, item))
    hard = sc.assign(logits)
    assert torch.equal(hard.argmax(-1), logits.argmax(-1))
    assert hard.sum().item() == 6.0


def test_prototype_moving_average_formula():
    sc = LatentScenarios(embedding_dim=2, num_scenarios=3, proj_dim=2,
                         alpha=0.2)
    sc.prototypes.copy_(torch.tensor([[0., 0], [10, 10], [5, 5]]))
    sc.seeded.fill_(True)
    x = torch.tensor([[1., 1], [3, 3], [9, 9]])
    a = torch.tensor([[1., 0, 0], [1, 0, 0], [0, 1, 0]])
    sc.update_prototypes(x, a)
    # c0 = 0.8 * 0 + 0.2 * mean(1, 3) = 0.4; c1 = 0.8 * 10 + 0.2 * 9 = 9.8;
    # c2 has no mass: unchanged.
    assert torch.allclose(sc.prototypes, torch.tensor(
        [[0.4, 0.4], [9.8, 9.8], [5.0, 5.0]]))
    # Soft weights: c0 <- 0.8 * 0.4 + 0.2 * (0.5 * 1 + 0.25 * 3) / 0.75.
    sc.update_prototypes(x[:2], torch.tensor([[0.5, 0.5, 0], [0.25, 0, 0]]))
    assert sc.prototypes[0, 0].item() == pytest.approx(
        0.32 + 0.2 * 1.25 / 0.75)


def test_first_update_seeds_prototypes_with_samples():
    torch.manual_seed(0)
    sc = LatentScenarios(embedding_dim=2, num_scenarios=2, proj_dim=2)
    x = torch.tensor([[1., 2], [3, 4], [5, 6]])
    sc.update_prototypes(x, torch.ones(3, 2) / 2)
    assert bool(sc.seeded)
    rows = {tuple(r) for r in sc.prototypes.tolist()}
    assert len(rows) == 2 and rows <= {(1., 2.), (3., 4.), (5., 6.)}
    sc.reset_parameters()
    assert not bool(sc.seeded) and sc.prototypes.abs().sum() == 0


def test_kl_term_and_repeat_loss_by_hand():
    # Row 1 uniform: KL 0; row 2 one-hot over K = 2: log 2.
    prob = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    assert kl_to_uniform(prob).item() == pytest.approx(math.log(2) / 2)
    # Mixed propensities 0.75 and 0.2 against shares 1 and 0.
    loss = scenario_repeat_loss(torch.tensor([1., 0]),
                                torch.tensor([[0.5, 1.0], [0.2, 0.4]]),
                                torch.tensor([[0.5, 0.5], [1.0, 0.0]]))
    assert loss.item() == pytest.approx((0.25 ** 2 + 0.2 ** 2) / 2)
    with pytest.raises(ValueError, match="'prob' must have shape"):
        kl_to_uniform(torch.tensor(1.0))
    with pytest.raises(ValueError, match="must agree"):
        scenario_repeat_loss(torch.ones(3), torch.ones(2, 2),
                             torch.ones(2, 2))


def test_auxiliary_loss_terms_weights_and_prototype_step():
    torch.manual_seed(0)
    sc = LatentScenarios(embedding_dim=4, num_scenarios=2, proj_dim=2,
                         kl_weight=2.0, beta=0.5)
    sc.prototypes.copy_(torch.tensor([[0., 0], [1, 1]]))
    sc.seeded.fill_(True)
    user, item = torch.randn(5, 4), torch.randn(5, 4)
    share = torch.rand(5)
    x = sc.project(user, item).detach()
    pi = sc.logits(x).softmax(-1).detach()
    before = sc.prototypes.clone()
    terms = sc.auxiliary_loss(user, item, share)
    assert terms['kl'].item() == pytest.approx(
        2.0 * kl_to_uniform(pi).item(), rel=1e-5)
    p_r = sc.repeat_probability(user).detach()
    assert terms['repeat'].item() == pytest.approx(
        0.5 * scenario_repeat_loss(share, p_r, pi).item(), rel=1e-5)
    mean = (pi.t() @ x) / pi.sum(0).unsqueeze(-1)
    assert torch.allclose(sc.prototypes, 0.8 * before + 0.2 * mean,
                          atol=1e-6)
    # The terms still backpropagate after the in-place prototype update.
    (terms['kl'] + terms['repeat']).backward()
    assert sc.repeat.weight.grad.abs().sum() > 0


@pytest.mark.parametrize('assignment', ['soft', 'hard'])
@pytest.mark.parametrize('predict', ['assignment', 'prior'])
def test_latent_all_items_equals_pairs(assignment, predict):
    torch.manual_seed(0)
    sc = LatentScenarios(embedding_dim=3, num_scenarios=3, proj_dim=2,
                         assignment=assignment, predict=predict)
    sc.prototypes.copy_(torch.randn(3, 2))
    with torch.no_grad():
        sc.gain.normal_()
        sc.bias.normal_()
    sc.eval()
    user, item, base = torch.randn(4, 3), torch.randn(5, 3), \
        torch.randn(4, 5)
    full = sc.score_all(base, user, item)
    pairs = sc(base, user.unsqueeze(1).expand(4, 5, 3),
               item.unsqueeze(0).expand(4, 5, 3))
    assert torch.allclose(full, pairs, atol=1e-5)
    if predict == 'prior':
        z = base.unsqueeze(-1) + torch.einsum('bd,kd,id->bik', user,
                                              sc.gain, item) + sc.bias
        assert torch.allclose(full, z.mean(-1), atol=1e-5)


def test_latent_scenarios_input_errors():
    sc = LatentScenarios(embedding_dim=2, num_scenarios=2, proj_dim=2)
    with pytest.raises(ValueError, match=r"'x' must have shape \[N, 2\]"):
        sc.update_prototypes(torch.ones(3, 5), torch.ones(3, 2))
    with pytest.raises(ValueError, match=r"'a' must have shape \[3, 2\]"):
        sc.update_prototypes(torch.ones(3, 2), torch.ones(3, 3))
    for kwargs, match in [({'num_scenarios': 0}, "'num_scenarios'"),
                          ({'assignment': 'x'}, "'assignment' must be"),
                          ({'predict': 'x'}, "'predict' must be"),
                          ({'tau': 0.0}, "'tau' must be positive"),
                          ({'alpha': 1.5}, r"'alpha' must be in \(0, 1\]"),
                          ({'beta': -1.0}, "'beta' must be non-negative")]:
        with pytest.raises(ValueError, match=match):
            LatentScenarios(**kwargs)
