"""The within-tier QP from its KKT conditions (fpamm_opt.mechanism.tierqp), solver-free.

The answers are held to the copper-plate closed form, and the certificate
(:func:`kkt_violation`) is shown to fail on points that are not optimal or not feasible.
Parity with HiGHS's QP is in tests/component/test_tierqp_parity.py.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fpamm_opt.mechanism.copperplate import single_bus_network, water_fill
from fpamm_opt.mechanism.tierqp import ActiveSet, KKTPoint, TierQP, kkt_violation
from fpamm_opt.network import load_network

pytestmark = pytest.mark.unit


def _congested(seed: int = 3):
    """A scarce, congested single-tier instance on IEEE-57 (derived ratings) and its answer."""
    net = load_network("case57", ratings="derived")
    qp = TierQP(net)
    rng = np.random.default_rng(seed)
    for _ in range(50):
        d = net.node_demand_mw * rng.uniform(0.8, 1.2, net.n_node)
        g_hi = net.gen_pmax_mw * rng.uniform(0.3, 1.0, net.n_gen)
        w = rng.uniform(1.0, 20.0, net.n_node)
        tier = np.ones(net.n_node, dtype=bool)
        g_lo = np.zeros(net.n_gen)
        res = qp.solve(d, w, tier, np.zeros(net.n_node), g_lo, g_hi, None, ActiveSet())
        if not res.ok or len(res.active.branches) < 2:
            continue
        return qp, net, (d, w, tier, np.zeros(net.n_node), g_lo, g_hi), res
    pytest.fail("no congested instance found")


def _point(qp: TierQP, args, res) -> KKTPoint:
    """The primal-dual point behind a certified answer (duals re-solved from its active set)."""
    d, w, tier, xf, g_lo, g_hi = args
    var = tier & (d > 0)
    c = np.where(var, d / np.where(var, w, 1.0), 0.0)
    base = np.where(tier, 0.0, xf)
    lam, mu_b, eta, x, p, *_ = qp._solve_linear(res.active, d, c, var, base, g_lo, g_hi, None)
    mu = np.zeros(qp.net.n_branch)
    mu[np.fromiter(res.active.branches, dtype=int)] = mu_b
    return KKTPoint(x, p, lam, mu, eta)


def test_copper_plate_answer_is_the_water_fill():
    d = np.array([10.0, 20.0, 30.0, 40.0])
    w = np.array([1.0, 2.0, 4.0, 20.0])
    net = single_bus_network(d, np.array([60.0, 10.0]))
    qp = TierQP(net)
    tier = np.ones(4, dtype=bool)
    res = qp.solve(d, w, tier, np.zeros(4), np.zeros(2), np.array([50.0, 10.0]))
    assert res.ok, res.reason
    u, _ = water_fill(d, 1.0 / w, d.sum() - 60.0)
    np.testing.assert_allclose(res.served_mw, d * (1 - u), atol=1e-9)
    assert res.p_gen_mw.sum() == pytest.approx(60.0)
    assert max(res.violation.values()) <= 1e-9


def test_only_the_tier_moves_and_the_energy_row_binds():
    d = np.array([10.0, 20.0, 30.0, 40.0])
    w = np.array([1.0, 2.0, 4.0, 20.0])
    net = single_bus_network(d, np.array([60.0]))
    qp = TierQP(net)
    tier = np.array([False, True, True, True])
    fixed = np.array([10.0, 0.0, 0.0, 0.0])  # the earlier tier took 10 MW
    res = qp.solve(d, w, tier, fixed, np.zeros(1), np.array([60.0]), q_min=50.0)
    assert res.ok, res.reason
    assert res.served_mw[0] == 10.0
    assert res.served_mw[1:].sum() == pytest.approx(50.0)
    u, _ = water_fill(d[1:], 1.0 / w[1:], d[1:].sum() - 50.0)
    np.testing.assert_allclose(res.served_mw[1:], d[1:] * (1 - u), atol=1e-9)


def test_congested_answer_is_certified_and_feasible():
    qp, net, args, res = _congested()
    d = args[0]
    f = net.flows_from_injections(net.bus_injection_mw(res.p_gen_mw, res.served_mw))
    lo, hi = net.flow_limits_mw()
    assert np.all(f <= hi + 1e-6) and np.all(f >= lo - 1e-6)
    assert np.any(np.isclose(f, hi, atol=1e-6) | np.isclose(f, lo, atol=1e-6))
    assert np.all(res.served_mw >= -1e-12) and np.all(res.served_mw <= d + 1e-12)
    viol = kkt_violation(qp, _point(qp, args, res), *args)
    assert max(viol.values()) <= 1e-6, viol


@pytest.mark.parametrize(
    "tamper, condition",
    [
        ("shift_load", "stationarity"),
        ("flip_branch_dual", "dual_branch"),
        ("overserve", "primal_balance"),
        ("free_priced_gen", "dual_gen"),
        ("negative_eta", "dual_energy"),
        ("exceed_flow", "primal_flows"),
    ],
)
def test_certificate_fails_on_tampered_points(tamper, condition):
    qp, _net, args, res = _congested()
    d, w, tier, xf, g_lo, g_hi = args
    pt = _point(qp, args, res)
    assert max(kkt_violation(qp, pt, *args).values()) <= 1e-6
    x, p, mu = pt.served_mw.copy(), pt.p_gen_mw.copy(), pt.mu.copy()
    q_min = None
    if tamper == "shift_load":
        # move 1 MW between two free nodes of the same bus or, failing that, any two free ones
        free = np.flatnonzero((x > 1.0) & (x < d - 1.0))
        x[free[0]] -= 0.5
        x[free[1]] += 0.5
        pt = dataclasses.replace(pt, served_mw=x)
    elif tamper == "flip_branch_dual":
        b = int(np.flatnonzero(mu)[0])
        mu[b] = -mu[b]
        pt = dataclasses.replace(pt, mu=mu)
    elif tamper == "overserve":
        x[np.argmax(d - x)] += 1.0
        pt = dataclasses.replace(pt, served_mw=np.minimum(x, d))
    elif tamper == "free_priced_gen":
        _, pi = qp.prices(pt.lam, mu[mu != 0], np.flatnonzero(mu), 0.0, tier)
        g = int(np.argmax(np.abs(pi) * (g_hi - g_lo > 1.0)))
        assert abs(pi[g]) > 1e-6
        p[g] = 0.5 * (g_lo[g] + g_hi[g])  # strictly inside while its price is not zero
        pt = dataclasses.replace(pt, p_gen_mw=p)
    elif tamper == "negative_eta":
        q_min = float(x[tier].sum())
        pt = dataclasses.replace(pt, eta=-1.0)
    elif tamper == "exceed_flow":
        # more generation at one bus, less at another: balanced, but flows move
        f = qp.flows(x, p)
        b = int(np.argmax(np.minimum(qp.flow_hi - f, f - qp.flow_lo) < 1e-6))
        sens = qp.h_gen[b]
        g_up, g_dn = int(np.argmax(sens)), int(np.argmin(sens))
        p[g_up] += 5.0
        p[g_dn] -= 5.0
        pt = dataclasses.replace(pt, p_gen_mw=p)
    viol = kkt_violation(qp, pt, d, w, tier, xf, g_lo, g_hi, q_min)
    assert viol[condition] > 1e-6, viol


def test_no_answer_rather_than_a_wrong_one():
    """A search that cannot finish says so; it never returns an uncertified point as ok."""
    net = load_network("case118", ratings="derived")
    qp = TierQP(net, max_iter=2)
    rng = np.random.default_rng(11)
    misses = 0
    for _ in range(10):
        d = net.node_demand_mw * rng.uniform(0.8, 1.2, net.n_node)
        g_hi = net.gen_pmax_mw * rng.uniform(0.3, 1.0, net.n_gen)
        w = rng.uniform(1.0, 20.0, net.n_node)
        tier = np.ones(net.n_node, dtype=bool)
        args = (d, w, tier, np.zeros(net.n_node), np.zeros(net.n_gen), g_hi)
        res = qp.solve(*args, None, ActiveSet())
        if res.ok:
            assert max(kkt_violation(qp, _point(qp, args, res), *args).values()) <= 1e-6
        else:
            misses += 1
            assert res.reason
    assert misses > 0  # two corrections are not enough from an empty guess here
