"""``solver=`` takes a name or a Pyomo solver object, and the answers do not change.

- ``solve_dcopf`` gives the default's cost and LMPs with ``pyo.SolverFactory("highs")``
  (the classic-interface wrapper of ``pyomo.contrib.solver`` HiGHS) and a
  ``pyomo.contrib.solver`` HiGHS object, both driven by the persistent adapter (which clears
  the Hessian on a QP -> LP switch that the object alone keeps);
- APPSI HiGHS, by name or as an object, clears a max-min allocation (an LP) like the fast path;
- a solver object always goes through the Pyomo engine, never ``engine="highs"``.
"""

from __future__ import annotations

import numpy as np
import pyomo.environ as pyo
import pytest
from pyomo.contrib.solver.common.factory import SolverFactory as ContribFactory

from fpamm_opt.engine import EngineKind
from fpamm_opt.errors import InputError
from fpamm_opt.mechanism.types import IntervalInput, SolveStatus
from fpamm_opt.network import NetworkData, load_network
from fpamm_opt.problem import AllocationProblem, solve_dcopf
from fpamm_opt.solvers import as_solver_spec

pytestmark = pytest.mark.component


@pytest.fixture(scope="module")
def case14() -> NetworkData:
    return load_network("case14")


@pytest.mark.parametrize(
    "make", [lambda: pyo.SolverFactory("highs"), lambda: ContribFactory("highs")]
)
def test_dcopf_with_a_highs_object_matches_the_default(case14: NetworkData, make) -> None:
    ref = solve_dcopf(case14)
    opt = make()
    got = solve_dcopf(case14, solver=opt)
    assert got.status == "optimal" and ref.objective is not None and got.objective is not None
    assert got.objective == pytest.approx(ref.objective, rel=1e-9)
    assert got.lmp is not None and ref.lmp is not None
    np.testing.assert_allclose(got.lmp, ref.lmp, atol=1e-6)


def test_a_highs_object_is_cleared_of_the_qp_when_the_lp_follows(case14: NetworkData) -> None:
    """The QP rule then a plain LP on one object: the LP's answer is the LP's (pyomo 6.10's
    HiGHS keeps the old Hessian on its own)."""
    opt = pyo.SolverFactory("highs")
    prob = AllocationProblem(
        case14, np.zeros(case14.n_node, dtype=int), 1, rule="qp", solver=opt, qp_method="solver"
    )
    ref = AllocationProblem(case14, np.zeros(case14.n_node, dtype=int), 1, engine="pyomo")
    assert prob.engine_kind is EngineKind.PYOMO
    inp = IntervalInput(0, case14.node_demand_mw, 0.6 * case14.gen_pmax_mw)
    qp = prob.clear(inp, [0], np.ones(case14.n_node))
    assert qp.status is SolveStatus.OPTIMAL
    lp, lp_ref = prob.screen(inp), ref.screen(inp)
    assert lp.status is SolveStatus.OPTIMAL
    assert lp.objective == pytest.approx(lp_ref.objective, rel=1e-9)


@pytest.mark.parametrize("solver", ["appsi_highs", "object"])
def test_appsi_highs_clears_a_maxmin_interval_like_the_fast_path(
    case14: NetworkData, solver: str
) -> None:
    choice = pyo.SolverFactory("appsi_highs") if solver == "object" else solver
    tiers = np.zeros(case14.n_node, dtype=int)
    tiers[::2] = 1
    prob = AllocationProblem(case14, tiers, 2, solver=choice)
    fast = AllocationProblem(case14, tiers, 2)
    assert prob.engine_kind is EngineKind.PYOMO and fast.engine_kind is EngineKind.HIGHS
    assert prob.solver_spec.name == "appsi_highs"
    inp = IntervalInput(0, case14.node_demand_mw, 0.3 * case14.gen_pmax_mw)
    w = np.linspace(1.0, 2.0, case14.n_node)
    got, ref = prob.clear(inp, [1, 0], w), fast.clear(inp, [1, 0], w)
    assert got.status is SolveStatus.OPTIMAL
    assert got.served_mw.sum() < case14.node_demand_mw.sum() - 1.0  # scarce
    np.testing.assert_allclose(got.served_mw, ref.served_mw, atol=1e-5)


def test_a_solver_object_never_takes_the_fast_path(case14: NetworkData) -> None:
    tiers = np.zeros(case14.n_node, dtype=int)
    with pytest.raises(InputError, match="solver object"):
        AllocationProblem(case14, tiers, 1, solver=pyo.SolverFactory("highs"), engine="highs")
    spec = as_solver_spec(pyo.SolverFactory("appsi_highs"), time_limit_s=5.0)
    assert spec.name == "appsi_highs" and spec.time_limit_s == 5.0 and spec.instance is not None


def test_unsupported_objects_and_names_fail_with_one_line() -> None:
    with pytest.raises(InputError, match="expected a name"):
        as_solver_spec(42)
    with pytest.raises(InputError, match="empty"):
        as_solver_spec("  ")
