"""Least-cost DC-OPF against references: pandapower, PowerModels (PGLib BASELINE), by hand.

- MATPOWER convention == pandapower ``rundcopp`` (``res_cost``), 1e-5 relative.
- PowerModels convention == BASELINE.md DC column within 0.5 %; ``__sad`` infeasible.
- The persistent model updated through its parameters == a fresh build, every time.
- Flows, balances and prices agree with NumPy and across formulations.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pyomo.environ as pyo
import pytest

from fpamm_opt.blocks import Formulation
from fpamm_opt.network import NetworkData, load_network
from fpamm_opt.problem import AllocationProblem, DCOPFResult, solve_dcopf

pytestmark = pytest.mark.component

FORMULATIONS = [f.value for f in Formulation]
PANDAPOWER_CASES = ["case14", "case57", "case118"]
PGLIB_MATPOWER = [
    "pglib_opf_case14_ieee",
    "pglib_opf_case57_ieee",
    "pglib_opf_case118_ieee",
    "pglib_opf_case300_ieee",
]
#: Above this size the dense PTDF model takes long to build (O(n_branch * n_bus) terms:
#: ~10 s for case500_goc, ~2 min for case2000_goc); B-θ covers the large cases.
PTDF_MAX_BUS = 300
BASELINE_RTOL = 5e-3


def _problem(net: NetworkData, formulation: str, **kw) -> AllocationProblem:
    return AllocationProblem(
        net, np.zeros(net.n_node, dtype=int), 1, formulation=formulation, engine="pyomo", **kw
    )


def _rundcopp(pnet) -> float:
    import pandapower as pp

    logging.getLogger("pandapower").setLevel(logging.ERROR)
    pp.rundcopp(pnet)
    return float(pnet.res_cost)


@pytest.fixture(scope="module")
def pandapower_reference() -> dict[str, float]:
    """``rundcopp`` objective ($/h) per pandapower case name, computed once."""
    import pandapower.networks as pn

    return {name: _rundcopp(getattr(pn, name)()) for name in PANDAPOWER_CASES}


def _assert_balanced(net: NetworkData, res: DCOPFResult, served: np.ndarray) -> None:
    """Conservation residual: every island's generation meets its withdrawals."""
    inj = net.bus_injection_mw(res.p_gen_mw, served)
    for isl in np.unique(net.bus_island):
        assert abs(inj[net.bus_island == isl].sum()) < 1e-6 * max(1.0, served.sum())


# ------------------------------------------------------ (a) pandapower rundcopp --
@pytest.mark.parametrize("formulation", FORMULATIONS)
@pytest.mark.parametrize("case", PANDAPOWER_CASES)
def test_matpower_convention_matches_rundcopp(
    case: str, formulation: str, pandapower_reference: dict[str, float]
) -> None:
    net = load_network(case)
    res = solve_dcopf(net, formulation)
    assert res.status == "optimal"
    assert res.objective == pytest.approx(pandapower_reference[case], rel=1e-5)
    _assert_balanced(net, res, net.node_demand_mw)


@pytest.fixture(scope="module")
def pglib_rundcopp(pglib_dir: Path) -> dict[str, float | str]:
    """``rundcopp`` on the PGLib files read by pandapower's own MATPOWER reader.

    A value that is a string is the reason pandapower could not produce a reference.
    """
    from pandapower.converter.matpower.from_mpc import from_mpc

    out: dict[str, float | str] = {}
    for name in PGLIB_MATPOWER:
        path = pglib_dir / f"{name}.m"
        if not path.is_file():
            out[name] = f"{path} not present"
            continue
        try:
            out[name] = _rundcopp(from_mpc(str(path)))
        except Exception as exc:
            out[name] = f"pandapower rundcopp failed on {name}: {type(exc).__name__}: {exc}"
    return out


@pytest.mark.parametrize("formulation", FORMULATIONS)
@pytest.mark.parametrize("name", PGLIB_MATPOWER)
def test_matpower_convention_matches_rundcopp_on_pglib(
    name: str, formulation: str, pglib_dir: Path, pglib_rundcopp: dict[str, float | str]
) -> None:
    ref = pglib_rundcopp[name]
    if isinstance(ref, str):
        pytest.skip(ref)
    net = load_network(pglib_dir / f"{name}.m", convention="matpower")
    res = solve_dcopf(net, formulation)
    assert res.status == "optimal"
    assert res.objective == pytest.approx(ref, rel=1e-5)


# ------------------------------------------------------- (b) PowerModels / PGLib --
def _check_baseline(
    pglib_dir: Path, baseline: dict[str, float | None], name: str, formulations: list[str]
) -> None:
    if name not in baseline:
        pytest.skip(f"{name} has no row in BASELINE.md")
    expect = baseline[name]
    net = load_network(pglib_dir / f"{name}.m", convention="powermodels")
    for formulation in formulations:
        res = solve_dcopf(net, formulation)
        if expect is None:
            assert res.status == "infeasible", (formulation, res.termination)
            assert res.objective is None
        else:
            assert res.status == "optimal", (formulation, res.termination, res.message)
            assert res.objective == pytest.approx(expect, rel=BASELINE_RTOL), formulation


def _formulations_for(pglib_dir: Path, name: str) -> list[str]:
    small = load_network(pglib_dir / f"{name}.m", convention="powermodels").n_bus
    return FORMULATIONS if small <= PTDF_MAX_BUS else ["btheta"]


def test_powermodels_convention_matches_baseline_typ(
    pglib_typ_case: str, pglib_dir: Path, pglib_baseline: dict[str, float | None]
) -> None:
    if pglib_typ_case in ("pglib_opf_case4661_sdet", "pglib_opf_case500_goc"):
        pytest.skip("covered by test_cases_rundcopp_gives_up_on")
    _check_baseline(
        pglib_dir, pglib_baseline, pglib_typ_case, _formulations_for(pglib_dir, pglib_typ_case)
    )


def test_powermodels_convention_matches_baseline_api(
    pglib_api_case: str, pglib_dir: Path, pglib_baseline: dict[str, float | None]
) -> None:
    _check_baseline(
        pglib_dir, pglib_baseline, pglib_api_case, _formulations_for(pglib_dir, pglib_api_case)
    )


def test_small_angle_difference_cases_are_infeasible(
    pglib_sad_case: str, pglib_dir: Path, pglib_baseline: dict[str, float | None]
) -> None:
    assert pglib_baseline.get(pglib_sad_case, None) is None
    _check_baseline(pglib_dir, pglib_baseline, pglib_sad_case, FORMULATIONS)


def test_baseline_parser_reads_all_three_tables(pglib_baseline: dict[str, float | None]) -> None:
    assert pglib_baseline["pglib_opf_case14_ieee"] == pytest.approx(2051.5)
    assert pglib_baseline["pglib_opf_case14_ieee__api"] == pytest.approx(4797.6)
    assert pglib_baseline["pglib_opf_case14_ieee__sad"] is None
    assert len(pglib_baseline) > 100


# --------------------------------------------------- (c) where rundcopp gives up --
@pytest.mark.parametrize(
    ("name", "formulations"),
    [
        # pandapower refuses: no reference bus in the file (we pick the largest generator).
        ("pglib_opf_case500_goc", ["btheta"]),
        ("pglib_opf_case4661_sdet", ["btheta"]),
    ],
)
def test_cases_rundcopp_gives_up_on(
    name: str,
    formulations: list[str],
    pglib_dir: Path,
    pglib_baseline: dict[str, float | None],
) -> None:
    if not (pglib_dir / f"{name}.m").is_file():
        pytest.skip(f"{name}.m not present in {pglib_dir}")
    t0 = time.perf_counter()
    _check_baseline(pglib_dir, pglib_baseline, name, formulations)
    assert time.perf_counter() - t0 < 60.0


# ----------------------------------------- (d) persistent update == fresh rebuild --
def _random_inputs(net: NetworkData, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Demand 50-160 % of base, availability 60-100 % of pmax (some draws infeasible)."""
    demand = net.node_demand_mw * rng.uniform(0.5, 1.6, net.n_node)
    available = net.gen_pmax_mw * rng.uniform(0.6, 1.0, net.n_gen)
    return demand, available


@pytest.mark.parametrize("formulation", FORMULATIONS)
@pytest.mark.parametrize(
    ("name", "draws"), [("pglib_opf_case14_ieee", 50), ("pglib_opf_case57_ieee", 10)]
)
def test_persistent_updates_equal_fresh_builds(
    name: str, draws: int, formulation: str, pglib_dir: Path
) -> None:
    net = load_network(pglib_dir / f"{name}.m")
    persistent = _problem(net, formulation)
    rng = np.random.default_rng(20240601)
    statuses = []
    for _ in range(draws):
        demand, available = _random_inputs(net, rng)
        hot = persistent.solve_dcopf(demand, available)
        cold = _problem(net, formulation).solve_dcopf(demand, available)
        statuses.append(cold.status)
        assert hot.status == cold.status, (hot.termination, cold.termination)
        if cold.status != "optimal":
            assert hot.objective is None and cold.objective is None
            continue
        assert hot.objective == pytest.approx(cold.objective, rel=1e-7)
        assert hot.p_gen_mw.sum() == pytest.approx(cold.p_gen_mw.sum(), rel=1e-7)
        np.testing.assert_array_less(hot.p_gen_mw, available + 1e-6)
    assert "optimal" in statuses
    if draws >= 50:  # the long run must exercise infeasible draws as well
        assert "infeasible" in statuses, statuses


def test_persistent_updates_equal_fresh_builds_quadratic() -> None:
    """pandapower case14 has strictly convex costs: the dispatch itself is unique."""
    net = load_network("case14")
    for formulation in FORMULATIONS:
        persistent = _problem(net, formulation)
        rng = np.random.default_rng(7)
        for _ in range(5):
            demand = net.node_demand_mw * rng.uniform(0.8, 1.2, net.n_node)
            available = net.gen_pmax_mw * rng.uniform(0.9, 1.0, net.n_gen)
            hot = persistent.solve_dcopf(demand, available)
            cold = _problem(net, formulation).solve_dcopf(demand, available)
            assert hot.status == cold.status
            if cold.status == "optimal":
                assert hot.objective == pytest.approx(cold.objective, rel=1e-7)
                np.testing.assert_allclose(hot.p_gen_mw, cold.p_gen_mw, atol=1e-5)


def test_formulations_agree_on_random_quadratic_draws() -> None:
    """B-θ and PTDF describe one set: on the same feasible draw both must be optimal.

    pandapower case14 has no ratings, quadratic costs and ample capacity here, so every
    draw is feasible and the optimum is unique.
    """
    net = load_network("case14")
    rng = np.random.default_rng(0)
    failures = []
    for k in range(10):
        demand = net.node_demand_mw * rng.uniform(0.5, 1.6, net.n_node)
        available = net.gen_pmax_mw * rng.uniform(0.6, 1.0, net.n_gen)
        assert available.sum() > 1.5 * demand.sum()
        res = {f: _problem(net, f).solve_dcopf(demand, available) for f in FORMULATIONS}
        if any(r.status != "optimal" for r in res.values()):
            failures.append((k, {f: (r.status, r.termination) for f, r in res.items()}))
            continue
        assert res["btheta"].objective == pytest.approx(res["ptdf"].objective, rel=1e-7)
        np.testing.assert_allclose(res["btheta"].p_gen_mw, res["ptdf"].p_gen_mw, atol=1e-5)
    assert failures == [], f"feasible draws not solved: {failures}"


# ------------------------------------------------------- (e) flows from the PTDF --
@pytest.mark.parametrize(
    ("convention", "formulation"),
    [("matpower", "btheta"), ("matpower", "ptdf"), ("powermodels", "btheta")],
)
def test_block_flows_equal_numpy_flows(formulation: str, convention: str, pglib_dir: Path) -> None:
    """Case 300 has a phase shifter and shunt withdrawals: both offsets must agree."""
    net = load_network(pglib_dir / "pglib_opf_case300_ieee.m", convention=convention)
    res = solve_dcopf(net, formulation)
    assert res.status == "optimal"
    served = net.node_demand_mw
    inj = net.bus_injection_mw(res.p_gen_mw, served)
    sparse = net.flows_from_injections(inj)
    dense = net.ptdf @ (inj + net.shift_injection_mw) - net.shift_flow_mw
    scale = max(1.0, float(np.abs(res.flow_mw).max()))
    np.testing.assert_allclose(sparse, res.flow_mw, atol=1e-6 * scale)
    np.testing.assert_allclose(dense, res.flow_mw, atol=1e-6 * scale)
    _assert_balanced(net, res, served)
    # And within limits.
    lim = net.branch_rate_mw
    assert np.all(np.abs(res.flow_mw) <= lim + 1e-6)


# ---------------------------------------------------------------- (f) prices --
@pytest.mark.parametrize("formulation", FORMULATIONS)
def test_tiny_case_by_hand(tiny_case: Path, tiny_case_solution: dict, formulation: str) -> None:
    """Objective, dispatch, flows and congestion prices computed by hand (see conftest)."""
    net = load_network(tiny_case)
    res = solve_dcopf(net, formulation)
    assert res.status == "optimal"
    assert res.objective == pytest.approx(tiny_case_solution["objective"], rel=1e-9)
    for key in ("p_gen_mw", "flow_mw", "lmp"):
        np.testing.assert_allclose(getattr(res, key), tiny_case_solution[key], atol=1e-7)


def test_lmps_equal_between_formulations_congested() -> None:
    """Derived ratings congest case118; quadratic costs make the prices unique."""
    net = load_network("case118", ratings="derived")
    bt = solve_dcopf(net, "btheta")
    pt = solve_dcopf(net, "ptdf")
    assert bt.status == pt.status == "optimal"
    assert bt.lmp is not None and pt.lmp is not None
    assert bt.lmp.shape == (net.n_node,)
    assert np.ptp(bt.lmp) > 1.0, "expected congestion to separate the prices"
    np.testing.assert_allclose(bt.lmp, pt.lmp, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("formulation", FORMULATIONS)
def test_uncongested_lmp_is_the_marginal_cost(formulation: str) -> None:
    """pandapower case14 has no ratings: one price, the marginal cost of any interior gen."""
    net = load_network("case14")
    res = solve_dcopf(net, formulation)
    assert res.lmp is not None
    np.testing.assert_allclose(res.lmp, res.lmp[0], rtol=1e-6)  # QP dual accuracy
    pg = res.p_gen_mw
    interior = (pg > net.gen_pmin_mw + 1e-4) & (pg < net.gen_pmax_mw - 1e-4)
    assert interior.any()
    marginal = 2 * net.gen_cost_c2 * pg + net.gen_cost_c1
    np.testing.assert_allclose(marginal[interior], res.lmp[0], rtol=1e-5)


@pytest.mark.parametrize("name", ["pglib_opf_case14_ieee", "pglib_opf_case57_ieee"])
def test_lmps_equal_between_formulations_pglib(name: str, pglib_dir: Path) -> None:
    net = load_network(pglib_dir / f"{name}.m")
    bt, pt = (solve_dcopf(net, f) for f in FORMULATIONS)
    np.testing.assert_allclose(bt.lmp, pt.lmp, rtol=1e-6, atol=1e-6)


# -------------------------------------------------------- (g) extension seam --
@pytest.mark.parametrize("formulation", FORMULATIONS)
def test_extension_cap_binds(formulation: str, pglib_dir: Path) -> None:
    net = load_network(pglib_dir / "pglib_opf_case57_ieee.m")
    base = solve_dcopf(net, formulation)
    k = int(np.argmax(base.p_gen_mw))
    cap = 0.8 * float(base.p_gen_mw[k])

    def add_cap(m: pyo.ConcreteModel, _net: NetworkData) -> None:
        m.cap = pyo.Constraint(expr=m.dcopf.pg[k] <= cap)

    capped = solve_dcopf(net, formulation, extensions=[add_cap])
    assert capped.status == "optimal"
    assert capped.p_gen_mw[k] <= cap + 1e-6
    assert capped.p_gen_mw[k] == pytest.approx(cap, abs=1e-5)  # it binds
    assert capped.objective > base.objective + 1e-6
    assert capped.p_gen_mw.sum() == pytest.approx(base.p_gen_mw.sum(), rel=1e-9)
