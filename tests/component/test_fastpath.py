"""The fast path (``engine="highs"``) against the Pyomo engine and pandapower.

Parity is checked through :class:`fpamm_opt.problem.AllocationProblem`, the way the mechanism
uses the engines: screening (least cost with one VOLL) and lexicographic clearing with random
weights, on congested pandapower cases, both formulations, both within-tier rules.
"""

from __future__ import annotations

import time
import zlib

import numpy as np
import pyomo.environ as pyo
import pytest

from fpamm_opt.fastpath import HighsEngine, compile_model
from fpamm_opt.mechanism.types import IntervalInput, SolveStatus
from fpamm_opt.network import load_network
from fpamm_opt.problem import AllocationProblem, build_model
from fpamm_opt.solvers import SolverSpec

pytestmark = pytest.mark.component

N_INTERVALS = 30
# The Pyomo engine runs HiGHS with its default QP regularisation (1e-7 on every column),
# which moves a QP optimum by ~1e-4 MW; the fast path uses 0. Same options for both here.
SPEC = {
    "maxmin": SolverSpec(time_limit_s=5.0),
    "qp": SolverSpec(time_limit_s=5.0, options={"qp_regularization_value": 0.0}),
}


def _intervals(net, seed: int, n: int = N_INTERVALS):
    rng = np.random.default_rng(seed)
    out = []
    for t in range(n):
        d = net.node_demand_mw * rng.uniform(0.8, 1.2, net.n_node)
        a = net.gen_pmax_mw * rng.uniform(0.3, 1.0, net.n_gen)
        w = rng.uniform(1.0, 20.0, net.n_node)
        out.append((IntervalInput(t, d, a), w, [int(k) for k in rng.permutation(2)]))
    return out


@pytest.mark.parametrize("case", ["case14", "case57"])
@pytest.mark.parametrize("formulation", ["btheta", "ptdf"])
@pytest.mark.parametrize("rule", ["maxmin", "qp"])
def test_parity_with_pyomo_engine(case, formulation, rule):
    net = load_network(case, ratings="derived")
    rng = np.random.default_rng(7)
    tiers = rng.integers(0, 2, net.n_node)
    # The engines' own QP solves (qp_method="kkt" bypasses both; its parity with the solver's
    # QP is tested in test_tierqp.py).
    kw = dict(rule=rule, formulation=formulation, solver=SPEC[rule], qp_method="solver")
    ref = AllocationProblem(net, tiers, 2, engine="pyomo", **kw)
    # The same model on both engines: every PTDF row (the lazy rows have their own tests,
    # test_lazy_ptdf.py).
    fast = AllocationProblem(net, tiers, 2, engine="highs", lazy_rows=False, **kw)
    assert ref.engine_kind == "pyomo" and fast.engine_kind == "highs"
    n = net.n_node
    compared = fast_failed = rounds_differ = 0
    for inp, w, order in _intervals(net, seed=zlib.crc32(f"{case}/{formulation}/{rule}".encode())):
        sp, sf = ref.screen(inp), fast.screen(inp)
        assert sf.ok or not sp.ok, sf.note
        if sp.ok:
            # Served per node is not unique with one VOLL for all nodes; totals, cost and
            # prices are.
            assert sf.served_mw.sum() == pytest.approx(sp.served_mw.sum(), rel=1e-9, abs=1e-6)
            assert sf.objective == pytest.approx(sp.objective, rel=1e-6)
            scale = np.abs(sp.lmp).max()
            np.testing.assert_allclose(sf.lmp, sp.lmp, rtol=0, atol=1e-4 * scale)
        cp, cf = ref.clear(inp, order, w), fast.clear(inp, order, w)
        assert cf.ok or not cp.ok, f"fast path failed where Pyomo did not: {cf.note}"
        # A tier whose QP HiGHS could not solve is cleared by the max-min rule instead.
        ref_ok = cp.ok and "->maxmin" not in cp.note
        fast_ok = cf.ok and "->maxmin" not in cf.note
        fast_failed += not fast_ok
        if not (ref_ok and fast_ok):
            continue
        compared += 1
        np.testing.assert_allclose(cf.served_mw, cp.served_mw, rtol=1e-6, atol=1e-5 * n)
        np.testing.assert_allclose(cf.tier_level, cp.tier_level, rtol=1e-5, atol=1e-6)
        # The bottleneck partition of a max-min round comes from level duals, which are not
        # unique at degenerate optima: the same allocation may take one round more or less.
        assert np.abs(cf.rounds - cp.rounds).max() <= 1
        rounds_differ += not np.array_equal(cf.rounds, cp.rounds)
    # The Pyomo engine's QP solves fail now and then (HiGHS QP on unscaled angles, default
    # regularisation); the fast path's (scaled, retried) should not.
    assert fast_failed <= 1
    assert compared >= N_INTERVALS - 6
    assert rounds_differ <= max(1, compared // 10)


def test_solve_dcopf_case118_against_pyomo_and_pandapower():
    pp = pytest.importorskip("pandapower")
    pn = pytest.importorskip("pandapower.networks")
    net = load_network("case118")
    assert net.has_quadratic_cost
    res = {}
    for engine in ("pyomo", "highs"):
        prob = AllocationProblem(net, np.zeros(net.n_node, dtype=int), 1, engine=engine)
        res[engine] = prob.solve_dcopf()
        assert res[engine].status == "optimal", res[engine].message
    ppn = pn.case118()
    pp.rundcopp(ppn)
    assert res["highs"].objective == pytest.approx(float(ppn.res_cost), rel=1e-6)
    assert res["highs"].objective == pytest.approx(res["pyomo"].objective, rel=1e-6)
    np.testing.assert_allclose(
        res["highs"].lmp, res["pyomo"].lmp, atol=1e-4 * np.abs(res["pyomo"].lmp).max()
    )


def test_qp_then_lp_keeps_no_hessian():
    """A quadratic case cost, then an LP screen: the screen equals a fresh problem's."""
    net = load_network("case118", ratings="derived")
    tiers = np.zeros(net.n_node, dtype=int)
    inp = _intervals(net, seed=3, n=1)[0][0]
    a = AllocationProblem(net, tiers, 1, engine="highs")
    assert a.solve_dcopf().status == "optimal"
    s1 = a.screen(inp)
    s2 = AllocationProblem(net, tiers, 1, engine="highs").screen(inp)
    assert s1.ok and s2.ok
    assert s1.objective == pytest.approx(s2.objective, rel=1e-9)


def test_compiled_model_matches_pyomo_counts():
    net = load_network("case57", ratings="derived")
    for formulation in ("btheta", "ptdf"):
        m = build_model(net, formulation, np.zeros(net.n_node, dtype=int), 1)
        cm = compile_model(m)
        n_con = sum(1 for _ in m.component_data_objects(pyo.Constraint, active=True))
        n_var = sum(1 for _ in m.component_data_objects(pyo.Var))
        assert cm.n_row == n_con
        assert cm.n_col == n_var
        # the block's own mutable numbers are recorded as dynamic unless declared static
        assert cm.dynamic_rows and cm.dynamic_cols
        # fixed variables (reference angles) are columns with lb = ub = value, still fixed
        fixed = [v for v in m.component_data_objects(pyo.Var) if v.fixed]
        assert len(fixed) == (int(net.bus_ref.sum()) if formulation == "btheta" else 0)
        for v in fixed:
            j = cm.col_of[id(v)]
            assert cm.col_lb[j] == cm.col_ub[j] == v.value


def test_static_extension_is_compiled_in():
    net = load_network("case14", ratings="derived")
    tiers = np.zeros(net.n_node, dtype=int)

    def cap(m, _net):
        m.cap = pyo.Constraint(expr=m.dcopf.pg[0] <= 50.0)

    inp = IntervalInput(0, net.node_demand_mw, net.gen_pmax_mw.copy())
    free = AllocationProblem(net, tiers, 1, engine="highs").screen(inp)
    assert free.p_gen_mw[0] > 50.0 + 1e-6  # the cap binds
    probs = {
        e: AllocationProblem(net, tiers, 1, engine=e, extensions=[cap])
        for e in ("auto", "pyomo", "highs")
    }
    assert probs["auto"].engine_kind == "highs"
    out = {e: p.screen(inp) for e, p in probs.items()}
    assert out["highs"].p_gen_mw[0] <= 50.0 + 1e-6
    assert out["highs"].objective == pytest.approx(out["pyomo"].objective, rel=1e-9)
    assert out["auto"].objective == pytest.approx(out["pyomo"].objective, rel=1e-9)


def _guarantees(i: int, j: int):
    """Node ``i`` gets at least 90 % of its demand through a coefficient that is the mutable
    ``pd``; node ``j`` at least 80 % through a bound that is."""

    def ext(m, _net):
        m.alloc.one = pyo.Var(bounds=(1.0, 1.0))
        m.g_coef = pyo.Constraint(expr=m.dcopf.pl[i] - 0.9 * m.dcopf.pd[i] * m.alloc.one >= 0)
        m.g_bound = pyo.Constraint(expr=m.dcopf.pl[j] >= 0.8 * m.dcopf.pd[j])

    return ext


def test_mutable_extension_auto_picks_pyomo_and_highs_tracks_it():
    net = load_network("case14", ratings="derived")
    tiers = np.zeros(net.n_node, dtype=int)
    intervals = [  # scarce: capacity 60 % of demand
        (
            IntervalInput(
                t,
                inp.demand_mw,
                0.6 * inp.demand_mw.sum() / net.gen_pmax_mw.sum() * net.gen_pmax_mw,
            ),
            w,
            order,
        )
        for t, (inp, w, order) in enumerate(_intervals(net, seed=11, n=6))
    ]
    plain = AllocationProblem(net, tiers, 1, engine="highs")
    ratio = np.mean(
        [plain.clear(inp, [0], w).served_mw / inp.demand_mw for inp, w, _ in intervals], axis=0
    )
    i, j = (int(k) for k in np.argsort(ratio)[:2])  # the most shed nodes
    assert ratio[i] < 0.8 and ratio[j] < 0.9
    ext = [_guarantees(i, j)]
    probs = {
        e: AllocationProblem(net, tiers, 1, engine=e, extensions=ext)
        for e in ("auto", "pyomo", "highs")
    }
    assert probs["auto"].engine_kind == "pyomo"
    eng = probs["highs"].engine
    assert isinstance(eng, HighsEngine) and len(eng.compiled.dynamic_rows) == 2
    for inp, w, _ in intervals:
        ref = probs["pyomo"].clear(inp, [0], w)
        got = probs["highs"].clear(inp, [0], w)
        assert ref.ok and got.ok
        assert got.served_mw[i] >= 0.9 * inp.demand_mw[i] - 1e-6
        assert got.served_mw[j] >= 0.8 * inp.demand_mw[j] - 1e-6
        np.testing.assert_allclose(got.served_mw, ref.served_mw, atol=1e-5 * net.n_node)


def test_mutable_param_in_a_bound_makes_auto_pick_pyomo():
    net = load_network("case14", ratings="derived")

    def bound(m, _net):
        m.half = pyo.Constraint(expr=m.dcopf.pl[0] >= 0.9 * m.dcopf.pd[0])

    prob = AllocationProblem(net, np.zeros(net.n_node, dtype=int), 1, extensions=[bound])
    assert prob.engine_kind == "pyomo"


def test_zero_coefficient_round_trip():
    """A zero level coefficient removes the entry; putting it back restores the model."""
    net = load_network("case14", ratings="derived")
    m = build_model(net, "btheta", np.zeros(net.n_node, dtype=int), 1)
    eng = HighsEngine(m, net, SolverSpec(), "btheta")
    d = net.node_demand_mw
    ones, zeros = np.ones(net.n_node), np.zeros(net.n_node)
    eng.set_gen_bounds(np.zeros(net.n_gen), 0.5 * net.gen_pmax_mw)
    eng.set_served_bounds(zeros, d)
    eng.set_objective(np.zeros(net.n_gen), zeros, 1.0)
    eng.set_tier_total(ones, 0.0)
    eng.set_level(d, d)
    first = eng.solve()
    coef = d.copy()
    coef[0] = 0.0  # row 0 becomes x_0 >= d_0 (infeasible or binding)
    eng.set_level(coef, d)
    eng.solve()
    eng.set_level(d, d)
    again = eng.solve()
    assert first.status is SolveStatus.OPTIMAL and again.status is SolveStatus.OPTIMAL
    assert again.level == pytest.approx(first.level, rel=1e-9)


def test_solve_time_is_highs_run_time():
    net = load_network("case57", ratings="derived")
    prob = AllocationProblem(net, np.zeros(net.n_node, dtype=int), 1, engine="highs")
    inp, w, _ = _intervals(net, seed=5, n=1)[0]
    prob.screen(inp)
    t0 = time.perf_counter()
    out = prob.clear(inp, [0], w)
    wall = time.perf_counter() - t0
    assert out.ok
    assert 0.0 < out.solve_s <= wall


def test_time_limit_is_per_solve():
    """HiGHS measures ``time_limit`` on its cumulative run time; the engine moves it."""
    net = load_network("case57", ratings="derived")
    prob = AllocationProblem(
        net,
        np.zeros(net.n_node, dtype=int),
        1,
        engine="highs",
        solver=SolverSpec(time_limit_s=0.05),
    )
    spent = 0.0
    for inp, w, _ in _intervals(net, seed=9, n=40):
        out = prob.clear(inp, [0], w)
        assert out.ok, out.note
        spent += out.solve_s
        if spent > 0.2:
            break
    assert spent > 0.05  # more than one time limit of solving in one HiGHS instance


def _lp_arrays(h):
    import highspy
    import scipy.sparse as sp

    lp = h.getLp()
    a = lp.a_matrix_
    shape = (lp.num_row_, lp.num_col_)
    arr = (np.asarray(a.value_), np.asarray(a.index_), np.asarray(a.start_))
    rowwise = a.format_ != highspy.MatrixFormat.kColwise
    mat = sp.csr_matrix(arr, shape=shape) if rowwise else sp.csc_matrix(arr, shape=shape)
    return (
        mat.toarray(),
        np.asarray(lp.col_lower_),
        np.asarray(lp.col_upper_),
        np.asarray(lp.row_lower_),
        np.asarray(lp.row_upper_),
        np.asarray(lp.col_cost_),
    )


def test_lp_and_qp_instances_hold_the_same_model():
    """After QP clearings (the QP instance is created mid-interval), both HiGHS instances
    describe the same problem once caught up: A_qp = A_lp diag(s), bounds and costs too."""
    net = load_network("case57", ratings="derived")
    rng = np.random.default_rng(3)
    prob = AllocationProblem(
        net,
        rng.integers(0, 2, net.n_node),
        2,
        rule="qp",
        engine="highs",
        tier_energy="max",
        solver=SPEC["qp"],
    )
    eng = prob.engine

    def beliefs_hold():  # what each instance believes HiGHS holds, it holds
        for inst in (eng._lp, eng._qp):
            a = _lp_arrays(inst.h)[0]
            np.testing.assert_array_equal(a[inst.level_rows, inst.level_col], inst.level_coef)
            np.testing.assert_array_equal(a[inst.tier_row, inst.tier_cols], inst.tier_coef)

    intervals = _intervals(net, seed=4, n=4)
    prob.screen(intervals[0][0])
    assert eng._qp is None
    # the first QP comes after the coefficients moved away from the compiled ones
    member = (np.arange(net.n_node) % 2 == 0).astype(float)
    eng.set_level(np.linspace(1.0, 2.0, net.n_node), np.zeros(net.n_node))
    eng.set_tier_total(member, 0.0)
    eng.set_objective(np.zeros(net.n_gen), -member, 0.0, q_served=member)
    assert eng.solve().status is SolveStatus.OPTIMAL
    beliefs_hold()
    for inp, w, order in intervals:
        assert prob.clear(inp, order, w).ok
        beliefs_hold()
    eng.set_level(np.arange(1.0, net.n_node + 1.0), np.zeros(net.n_node))
    eng.set_tier_total((np.arange(net.n_node) % 3 == 0).astype(float), 1.0)
    for inst in (eng._lp, eng._qp):
        inst.catch_up(eng._t)
    a_lp, cl_lp, cu_lp, rl_lp, ru_lp, c_lp = _lp_arrays(eng._lp.h)
    a_qp, cl_qp, cu_qp, rl_qp, ru_qp, c_qp = _lp_arrays(eng._qp.h)
    s = eng._qp.s
    assert np.any(s != 1.0)
    np.testing.assert_allclose(a_qp, a_lp * s[None, :], rtol=1e-12)
    np.testing.assert_allclose(cl_qp * s, cl_lp, rtol=1e-12)
    np.testing.assert_allclose(cu_qp * s, cu_lp, rtol=1e-12)
    np.testing.assert_array_equal(rl_qp, rl_lp)
    np.testing.assert_array_equal(ru_qp, ru_lp)
    np.testing.assert_allclose(c_qp, c_lp * s, rtol=1e-12)
