"""The Pyomo blocks built without a solver: sizes, parameters, coefficients, objectives.

IDAES habit: count variables and constraints per formulation before any solve.
B-θ:  n_gen + n_node + n_branch + n_bus (+1 level) variables; n_bus + n_branch DC rows.
PTDF: n_gen + n_node + n_branch (+1 level) variables; n_island + n_branch DC rows.
Allocation: n_node level rows + 1 tier row; one level variable.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyomo.environ as pyo
import pytest
from pyomo.repn import generate_standard_repn

from fpamm_opt.blocks import Formulation, build_dcopf_block, count_components
from fpamm_opt.blocks.dcopf import flow_bounds_mw, secant_price
from fpamm_opt.network import NetworkData, load_network
from fpamm_opt.problem import build_model

pytestmark = pytest.mark.unit

DCOPF_PARAMS = ("pd", "pl_lo", "pl_hi", "pg_max", "pg_min")
ALLOC_PARAMS = (
    "tier_priority",
    "weight",
    "c_gen",
    "c_served",
    "q_served",
    "c_level",
    "level_coef",
    "level_rhs",
    "tier_member",
    "tier_min_served",
)


@pytest.fixture(scope="module")
def case14() -> NetworkData:
    return load_network("case14")


@pytest.fixture
def tiny(tiny_case: Path) -> NetworkData:
    return load_network(tiny_case)


@pytest.fixture(params=["case14", "tiny3"])
def net(request: pytest.FixtureRequest) -> NetworkData:
    if request.param == "case14":
        return request.getfixturevalue("case14")
    return request.getfixturevalue("tiny")


def _n_islands(net: NetworkData) -> int:
    return int(np.unique(net.bus_island).size)


def _count(block: pyo.Block, ctype: type) -> int:
    return sum(1 for _ in block.component_data_objects(ctype, descend_into=True))


def _coefs(con: pyo.Constraint) -> dict[str, float]:
    repn = generate_standard_repn(con.body, compute_values=True)
    assert repn.is_linear()
    return {v.name: float(c) for v, c in zip(repn.linear_vars, repn.linear_coefs)}


# ---------------------------------------------------------------------- sizes --
def test_btheta_sizes(net: NetworkData) -> None:
    m = build_model(net, Formulation.BTHETA)
    n_var = net.n_gen + net.n_node + net.n_branch + net.n_bus
    n_dc = net.n_bus + net.n_branch
    assert count_components(m.dcopf) == {
        "variables": n_var,
        "constraints": n_dc,
        "fixed": _n_islands(net),
    }
    assert count_components(m.alloc) == {
        "variables": 1,
        "constraints": net.n_node + 1,
        "fixed": 0,
    }
    assert _count(m, pyo.Var) == n_var + 1
    assert _count(m, pyo.Constraint) == n_dc + net.n_node + 1
    assert len(m.dcopf.eq_p_balance) == net.n_bus
    assert len(m.dcopf.eq_pf) == net.n_branch
    assert len(m.dcopf.va) == net.n_bus
    assert not hasattr(m.dcopf, "eq_pf_ptdf")


def test_ptdf_sizes(net: NetworkData) -> None:
    m = build_model(net, Formulation.PTDF)
    n_var = net.n_gen + net.n_node + net.n_branch
    n_dc = _n_islands(net) + net.n_branch
    assert count_components(m.dcopf) == {"variables": n_var, "constraints": n_dc, "fixed": 0}
    assert _count(m, pyo.Var) == n_var + 1
    assert _count(m, pyo.Constraint) == n_dc + net.n_node + 1
    assert len(m.dcopf.eq_p_balance) == _n_islands(net)
    assert len(m.dcopf.eq_pf_ptdf) == net.n_branch
    assert not hasattr(m.dcopf, "va")


def test_case14_golden_counts(case14: NetworkData) -> None:
    """Written out once for the IEEE 14-bus case (5 gens, 11 loads, 20 branches)."""
    bt = count_components(build_model(case14, "btheta"))
    pt = count_components(build_model(case14, "ptdf"))
    assert bt == {"variables": 51, "constraints": 46, "fixed": 1}
    assert pt == {"variables": 37, "constraints": 33, "fixed": 0}


def test_reference_angles_fixed_at_zero(net: NetworkData) -> None:
    m = build_model(net, "btheta")
    for bus in m.dcopf.bus:
        va = m.dcopf.va[bus]
        assert va.fixed == bool(net.bus_ref[bus])
        if va.fixed:
            assert va.value == 0.0


# ------------------------------------------------------------------ parameters --
def test_mutable_parameters_exist(net: NetworkData) -> None:
    m = build_model(net, "ptdf")
    for name in DCOPF_PARAMS:
        param = getattr(m.dcopf, name)
        assert isinstance(param, pyo.Param) and param.mutable, name
    for name in ALLOC_PARAMS:
        param = getattr(m.alloc, name)
        assert isinstance(param, pyo.Param) and param.mutable, name
    assert len(m.dcopf.pd) == net.n_node and len(m.dcopf.pg_max) == net.n_gen
    np.testing.assert_allclose([pyo.value(m.dcopf.pd[i]) for i in m.dcopf.node], net.node_demand_mw)
    np.testing.assert_allclose(
        [pyo.value(m.alloc.c_gen[g]) for g in m.dcopf.gen], secant_price(net)
    )


def test_parameters_drive_bounds_without_rebuild(tiny: NetworkData) -> None:
    m = build_model(tiny, "btheta")
    dc = m.dcopf
    assert dc.pg[0].ub == pytest.approx(200.0) and dc.pg[0].lb == 0.0
    dc.pg_max[0].set_value(42.0)
    dc.pg_min[0].set_value(-1.0)
    dc.pl_lo[1].set_value(7.0)
    dc.pl_hi[1].set_value(9.0)
    assert (dc.pg[0].lb, dc.pg[0].ub) == (-1.0, 42.0)
    assert (dc.pl[1].lb, dc.pl[1].ub) == (7.0, 9.0)
    dc.pd[1].set_value(120.0)
    assert pyo.value(dc.p_load_shed[1]) == pytest.approx(120.0 - (dc.pl[1].value or 0.0))


def test_tiers_are_recorded(tiny: NetworkData) -> None:
    m = build_model(tiny, "btheta", node_tier=np.array([1, 0]), n_tier=2)
    assert list(m.alloc.tier) == [0, 1]
    assert [m.alloc.node_tier[i] for i in m.dcopf.node] == [1, 0]


# ---------------------------------------------------------------- coefficients --
def test_btheta_flow_rows_use_susceptance(tiny: NetworkData) -> None:
    m = build_model(tiny, "btheta")
    bb = tiny.base_mva * tiny.branch_b_pu
    assert bb == pytest.approx([1000.0] * 3)
    for k in m.dcopf.branch:
        c = _coefs(m.dcopf.eq_pf[k])
        f, t = int(tiny.branch_from[k]), int(tiny.branch_to[k])
        scale = c[m.dcopf.pf[k].name]
        for bus, sign in ((f, -1.0), (t, 1.0)):
            if not tiny.bus_ref[bus]:
                assert c[m.dcopf.va[bus].name] / scale == pytest.approx(sign * bb[k])


def test_ptdf_rows_use_the_ptdf(tiny: NetworkData) -> None:
    m = build_model(tiny, "ptdf")
    dc = m.dcopf
    for k in dc.branch:
        c = _coefs(dc.eq_pf_ptdf[k])
        scale = c[dc.pf[k].name]
        for g in dc.gen:
            h = tiny.ptdf[k, tiny.gen_bus[g]]
            assert -c.get(dc.pg[g].name, 0.0) / scale == pytest.approx(h, abs=1e-12)
        for i in dc.node:
            h = tiny.ptdf[k, tiny.node_bus[i]]
            assert c.get(dc.pl[i].name, 0.0) / scale == pytest.approx(h, abs=1e-12)


def test_balance_rows_see_every_generator_and_load(tiny: NetworkData) -> None:
    m = build_model(tiny, "ptdf")
    c = _coefs(m.dcopf.eq_p_balance[0])  # the one island
    dc = m.dcopf
    signs = {dc.pg[g].name: 1.0 for g in dc.gen} | {dc.pl[i].name: -1.0 for i in dc.node}
    ref = next(iter(c.values()))
    assert {name: v / abs(ref) for name, v in c.items()} == pytest.approx(
        {n: s * np.sign(ref) for n, s in signs.items()}
    )


def test_flow_bounds_combine_rating_and_angle_limits(pglib_dir: Path) -> None:
    net = load_network(pglib_dir / "pglib_opf_case14_ieee.m", convention="powermodels")
    lo, hi = flow_bounds_mw(net)
    bb = net.base_mva * net.branch_b_pu
    assert np.all(bb > 0)
    np.testing.assert_allclose(hi, np.minimum(net.branch_rate_mw, bb * net.branch_angmax_rad))
    np.testing.assert_allclose(lo, np.maximum(-net.branch_rate_mw, bb * net.branch_angmin_rad))
    m = build_model(net, "btheta")
    for k in m.dcopf.branch:
        assert (m.dcopf.pf[k].lb, m.dcopf.pf[k].ub) == pytest.approx((lo[k], hi[k]))


def test_unlimited_branches_get_a_finite_bound_that_never_binds(tiny: NetworkData) -> None:
    from fpamm_opt.network import UNBOUNDED_FLOW_MW

    m = build_model(tiny, "btheta")
    bounds = [(m.dcopf.pf[k].lb, m.dcopf.pf[k].ub) for k in m.dcopf.branch]
    big = (-UNBOUNDED_FLOW_MW, UNBOUNDED_FLOW_MW)
    assert bounds == [big, big, (-80.0, 80.0)]


# ------------------------------------------------------------------ objectives --
def test_exactly_one_objective_active(net: NetworkData) -> None:
    for formulation in Formulation:
        m = build_model(net, formulation)
        active = list(m.component_data_objects(pyo.Objective, active=True))
        assert active == [m.alloc.obj_lp]
        assert {o.local_name for o in m.alloc.component_objects(pyo.Objective)} == {
            "obj_lp",
            "obj_qp",
            "obj_case",
        }
        assert m.alloc.obj_case.expr.polynomial_degree() == (2 if net.has_quadratic_cost else 1)
        assert m.alloc.obj_lp.expr.polynomial_degree() == 1


def test_linear_cost_case_keeps_a_linear_case_objective(tiny: NetworkData) -> None:
    m = build_model(tiny, "btheta")
    assert not tiny.has_quadratic_cost
    assert m.dcopf.gen_cost.expr.polynomial_degree() == 1


# ------------------------------------------------------------------ extensions --
def test_extensions_run_after_both_blocks(tiny: NetworkData) -> None:
    seen = []

    def ext(m: pyo.ConcreteModel, net: NetworkData) -> None:
        seen.append((hasattr(m, "dcopf"), hasattr(m, "alloc"), net is tiny))
        m.cap = pyo.Constraint(expr=m.dcopf.pg[0] <= 100.0)

    m = build_model(tiny, "btheta", extensions=[ext])
    assert seen == [(True, True, True)]
    base = count_components(build_model(tiny, "btheta"))
    assert count_components(m)["constraints"] == base["constraints"] + 1


def test_block_builds_standalone(tiny: NetworkData) -> None:
    """The DC-OPF block needs nothing around it (reusable on any model)."""
    m = pyo.ConcreteModel()
    m.x = pyo.Block()
    build_dcopf_block(m.x, tiny, "ptdf")
    assert m.x.formulation == "ptdf"
    assert count_components(m.x)["constraints"] == 1 + tiny.n_branch
