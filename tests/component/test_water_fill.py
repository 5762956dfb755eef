"""The water-fill shortcut of :meth:`AllocationProblem.clear` against the rule's own solves.

The shortcut water-fills a tier to the copper-plate bound on its energy and keeps the point
when one LP finds it inside ``X(t)``; otherwise the rule runs. It must give the rule's
answer on every interval, congested or not, for both rules and both engines, and it must be
taken (a shortcut that never fires would pass the parity test vacuously).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fpamm_opt.mechanism.types import IntervalInput
from fpamm_opt.network import load_network
from fpamm_opt.problem import AllocationProblem
from fpamm_opt.solvers import SolverSpec

pytestmark = pytest.mark.component

SPEC = SolverSpec(time_limit_s=5.0, options={"qp_regularization_value": 0.0})


def mechanism_like_intervals(net, seed: int, n: int = 25):
    """Mechanism-like intervals: availability 75-100 % of demand, generators derated
    unevenly (so some intervals congest), weights in [1, 20] with most nodes near 1."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(n):
        d = net.node_demand_mw * rng.uniform(0.9, 1.1, net.n_node)
        share = rng.uniform(0.75, 1.0) * d.sum() / net.gen_pmax_mw.sum()
        a = net.gen_pmax_mw * np.clip(share * rng.uniform(0.3, 1.7, net.n_gen), 0.0, 1.0)
        w = np.where(rng.random(net.n_node) < 0.3, rng.uniform(1.0, 20.0, net.n_node), 1.0)
        out.append((IntervalInput(t, d, a), w, [int(k) for k in rng.permutation(2)]))
    return out


@pytest.mark.parametrize("engine", ["highs", "pyomo"])
@pytest.mark.parametrize("rule", ["maxmin", "qp"])
@pytest.mark.parametrize("tier_energy", ["free", "max"])
def test_shortcut_gives_the_rules_answer(engine: str, rule: str, tier_energy: str) -> None:
    net = load_network("case57", ratings="derived", rating_alpha=1.2, rating_min_mw=20.0)
    tiers = np.random.default_rng(3).integers(0, 2, net.n_node)
    # Every PTDF row: two lazy models warmed by different solves carry different monitored
    # rows, and max-min bottlenecks at degenerate optima then differ by ~1e-4 MW, above this
    # test's 1e-5 d (test_lazy_ptdf.py holds lazy rows to the full model).
    kw = dict(
        rule=rule,
        formulation="ptdf",
        solver=SPEC,
        engine=engine,
        tier_energy=tier_energy,
        lazy_rows=False,
    )
    fast = AllocationProblem(net, tiers, 2, water_fill=True, **kw)
    full = AllocationProblem(net, tiers, 2, water_fill=False, **kw)
    n = net.n_node
    compared = 0
    for inp, w, order in mechanism_like_intervals(net, seed=11):
        a, b = fast.clear(inp, order, w), full.clear(inp, order, w)
        assert a.ok and b.ok, (a.note, b.note)
        if "->maxmin" in a.note + b.note:
            continue  # a failed QP replaced by the LP rule: not the same rule
        compared += 1
        # Rule solves fix each bottleneck within 1e-6 d + 1e-6 MW (problem.py) and the QP
        # meets HiGHS's tolerances; the water-fill is exact.
        tol = (1e-4 if rule == "qp" else 1e-5) * np.maximum(inp.demand_mw, 1.0)
        gap = np.abs(a.served_mw - b.served_mw)
        assert np.all(gap <= tol), f"t={inp.t}: largest gap {gap.max():.3g} MW"
        np.testing.assert_allclose(a.tier_deliverable_mw, b.tier_deliverable_mw, atol=1e-4 * n)
        np.testing.assert_allclose(a.tier_level, b.tier_level, rtol=1e-4, atol=1e-6)
        assert a.cap_active == b.cap_active
        assert a.objective == pytest.approx(b.objective, rel=1e-5, abs=1e-3)
    assert compared >= 20
    paths = fast.stats.tier_paths
    # Both branches were exercised: accepted water-fills and infeasible trials.
    assert paths["cp"] >= 5 and paths["rule"] >= 3, paths
    assert full.stats.tier_paths == {"cp": 0, "rule": 0, "skipped": 0}


def test_a_repeat_clear_of_the_same_interval_skips_the_failed_trial() -> None:
    net = load_network("case57", ratings="derived", rating_alpha=1.2, rating_min_mw=20.0)
    tiers = np.random.default_rng(3).integers(0, 2, net.n_node)
    prob = AllocationProblem(net, tiers, 2, rule="maxmin", formulation="ptdf", solver=SPEC)
    for inp, w, order in mechanism_like_intervals(net, seed=11):
        first = prob.clear(inp, order, w)
        failed = prob.stats.tier_paths["rule"]
        again = prob.clear(inp, order, w * 1.01)
        if prob.stats.tier_paths["rule"] == failed and prob.stats.tier_paths["skipped"] > 0:
            # The trial that failed was not repeated, and the answer is unchanged.
            np.testing.assert_allclose(again.served_mw, first.served_mw, atol=1e-4 * net.n_node)
            assert again.n_solves < first.n_solves
            return
    pytest.fail("no interval had a failed trial to skip")


def test_trials_are_rationed_when_they_rarely_succeed() -> None:
    """Below TRIAL_MIN_RATE only every TRIAL_PROBE-th weighted tier is tried; the answer is
    the rule's either way."""
    net = load_network("case57", ratings="derived", rating_alpha=1.2, rating_min_mw=20.0)
    tiers = np.zeros(net.n_node, dtype=int)
    prob = AllocationProblem(net, tiers, 1, rule="maxmin", formulation="ptdf", solver=SPEC)
    ref = AllocationProblem(
        net, tiers, 1, rule="maxmin", formulation="ptdf", solver=SPEC, water_fill=False
    )
    inp, w, _ = mechanism_like_intervals(net, seed=11)[0]
    prob.rationing.rate = 0.0  # as after a long run of congested intervals
    probe = AllocationProblem.TRIAL_PROBE
    tried = []
    for _ in range(2 * probe):
        before = prob.stats.tier_paths["cp"] + prob.stats.tier_paths["rule"]
        got = prob.clear(dataclasses.replace(inp, t=len(tried)), [0], w)
        tried.append(prob.stats.tier_paths["cp"] + prob.stats.tier_paths["rule"] > before)
        gap = np.abs(got.served_mw - ref.clear(inp, [0], w).served_mw)
        assert np.all(gap <= 1e-5 * np.maximum(inp.demand_mw, 1.0))
        prob.rationing.rate = 0.0
    # One single tier per clear: tried exactly on the probe turns.
    assert tried == [(i + 1) % probe == 0 for i in range(2 * probe)]


def _add_import(m, net) -> None:
    """An extension that puts a 30 MW source into the (PTDF island) power balance."""
    import pyomo.environ as pyo

    m.imp = pyo.Var(bounds=(0.0, 30.0))
    con = m.dcopf.eq_p_balance[next(iter(m.dcopf.eq_p_balance))]
    con.set_value((con.lower, con.body + m.imp, con.upper))


def _cap_gen0(m, net) -> None:
    """An extension that only restricts: generator 0 at most 50 MW."""
    import pyomo.environ as pyo

    m.cap0 = pyo.Constraint(expr=m.dcopf.pg[next(iter(m.dcopf.gen))] <= 50.0)


def test_an_extension_that_adds_supply_turns_the_shortcut_off() -> None:
    """The copper-plate bound (available generation) is only valid when nothing else feeds
    the balance; with an added source the allocator runs the rule and uses the source."""
    net = load_network("case57", ratings="derived", rating_alpha=1.2, rating_min_mw=20.0)
    tiers = np.zeros(net.n_node, dtype=int)
    kw = dict(rule="maxmin", formulation="ptdf", solver=SPEC, engine="pyomo")
    assert AllocationProblem(net, tiers, 1, extensions=[_cap_gen0], **kw).water_fill
    prob = AllocationProblem(net, tiers, 1, extensions=[_add_import], **kw)
    assert not prob.water_fill
    inp, w, _ = mechanism_like_intervals(net, seed=11)[0]
    got = prob.clear(inp, [0], w)
    assert got.ok
    # The source counts: the tier could get more than the generators can supply, which the
    # copper-plate bound of the shortcut would have missed.
    assert got.tier_deliverable_mw[0] > float(np.sum(inp.available_mw)) + 1.0
    assert prob.stats.tier_paths == {"cp": 0, "rule": 0, "skipped": 0}
