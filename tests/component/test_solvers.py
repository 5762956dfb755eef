"""The solver layer: the same DC-OPF through any Pyomo solver by name, clean failures.

GLPK and CBC are optional on a developer machine (the tests skip) and required in CI
(``FPAMM_REQUIRE_SOLVERS=glpk,cbc`` turns the skip into a failure; see ``.ci/run``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fpamm_opt.errors import FpammError, SolverUnavailableError
from fpamm_opt.network import load_network
from fpamm_opt.problem import AllocationProblem, build_model, solve_dcopf
from fpamm_opt.solvers import SolverSpec, make_solver, require_solver, solver_available

pytestmark = pytest.mark.component

LINEAR_CASES = ["pglib_opf_case14_ieee", "pglib_opf_case57_ieee"]
MISSING = "no_such_solver_xyz"


@pytest.fixture(scope="module")
def highs_reference(pglib_dir: Path) -> dict[tuple[str, str], float]:
    out = {}
    for name in LINEAR_CASES:
        net = load_network(pglib_dir / f"{name}.m")
        for formulation in ("btheta", "ptdf"):
            res = solve_dcopf(net, formulation, SolverSpec("highs"))
            assert res.status == "optimal"
            out[(name, formulation)] = float(res.objective)
    return out


@pytest.mark.parametrize("formulation", ["btheta", "ptdf"])
@pytest.mark.parametrize("name", LINEAR_CASES)
@pytest.mark.parametrize("solver", ["glpk", "cbc"])
def test_classic_solver_matches_highs(
    solver: str,
    name: str,
    formulation: str,
    pglib_dir: Path,
    highs_reference: dict[tuple[str, str], float],
    require_solver,
) -> None:
    require_solver(solver)
    net = load_network(pglib_dir / f"{name}.m")
    assert not net.has_quadratic_cost
    res = solve_dcopf(net, formulation, SolverSpec(solver))
    assert res.status == "optimal", (res.termination, res.message)
    assert res.objective == pytest.approx(highs_reference[(name, formulation)], rel=1e-6)
    assert res.p_gen_mw.sum() == pytest.approx(net.node_demand_mw.sum(), rel=1e-9)
    assert np.all(res.p_gen_mw <= net.gen_pmax_mw + 1e-6)


@pytest.mark.parametrize("solver", ["glpk", "cbc"])
def test_classic_solver_reports_infeasible(solver: str, pglib_dir: Path, require_solver) -> None:
    require_solver(solver)
    net = load_network(pglib_dir / "pglib_opf_case14_ieee__sad.m", convention="powermodels")
    res = solve_dcopf(net, "btheta", SolverSpec(solver))
    assert res.status == "infeasible", (res.termination, res.message)
    assert res.objective is None


def test_classic_solver_in_the_persistent_loop(pglib_dir: Path, require_solver) -> None:
    """Repeated solves through GLPK track HiGHS as the parameters change."""
    require_solver("glpk")
    net = load_network(pglib_dir / "pglib_opf_case14_ieee.m")
    tiers = np.zeros(net.n_node, dtype=int)
    glpk = AllocationProblem(net, tiers, 1, solver=SolverSpec("glpk"), engine="pyomo")
    highs = AllocationProblem(net, tiers, 1, solver=SolverSpec("highs"), engine="pyomo")
    for scale in (0.8, 1.0, 1.2):
        demand = net.node_demand_mw * scale
        a, b = glpk.solve_dcopf(demand), highs.solve_dcopf(demand)
        assert a.status == b.status == "optimal"
        assert a.objective == pytest.approx(b.objective, rel=1e-6)


def test_missing_solver_is_named() -> None:
    assert not solver_available(MISSING)
    with pytest.raises(SolverUnavailableError) as exc:
        require_solver(MISSING)
    assert MISSING in str(exc.value)
    assert issubclass(SolverUnavailableError, FpammError)


def test_missing_solver_when_building_a_problem(tiny_case: Path) -> None:
    net = load_network(tiny_case)
    with pytest.raises(SolverUnavailableError, match=MISSING):
        solve_dcopf(net, "btheta", SolverSpec(MISSING))
    with pytest.raises(SolverUnavailableError, match=MISSING):
        make_solver(build_model(net), SolverSpec(MISSING))


def test_quadratic_cost_with_glpk_is_an_error_not_a_crash(pglib_dir: Path, require_solver) -> None:
    require_solver("glpk")
    net = load_network(pglib_dir / "pglib_opf_case24_ieee_rts.m")
    assert net.has_quadratic_cost
    res = solve_dcopf(net, "btheta", SolverSpec("glpk"))
    assert res.status == "error"
    assert res.objective is None
    assert res.message and "\n" not in res.message
    assert "nonlinear" in res.message or "quadratic" in res.message
    # HiGHS takes the same case as a QP.
    ok = solve_dcopf(net, "btheta", SolverSpec("highs"))
    assert ok.status == "optimal"


def test_highs_is_available() -> None:
    assert solver_available("highs")


def test_require_solver_skips_or_fails_by_environment(
    require_solver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The conftest helper: a skip on a developer machine, a failure when CI requires it."""
    monkeypatch.delenv("FPAMM_REQUIRE_SOLVERS", raising=False)
    with pytest.raises(pytest.skip.Exception, match=MISSING):
        require_solver(MISSING)
    monkeypatch.setenv("FPAMM_REQUIRE_SOLVERS", f"glpk, {MISSING.upper()}")
    with pytest.raises(pytest.fail.Exception, match="FPAMM_REQUIRE_SOLVERS"):
        require_solver(MISSING)
    require_solver("highs")  # present: neither
