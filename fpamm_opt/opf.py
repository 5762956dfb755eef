"""The plain least-cost DC-OPF as its own short problem, on the DC-OPF block alone.

``min Σ_g C_g(p_g)`` (the case's own cost curves, ``dc.gen_cost``) over the DC-OPF block of
:mod:`fpamm_opt.blocks.dcopf` with every load served (``pl = pd``) and generators within
``[pmin, available]``. Nodal prices come from the balance duals (:func:`lmp_from_duals`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyomo.environ as pyo

from fpamm_opt.blocks.dcopf import Formulation, build_dcopf_block
from fpamm_opt.engine import LPSolution
from fpamm_opt.mechanism.types import SolveStatus
from fpamm_opt.network import NetworkData
from fpamm_opt.solvers import SolverLike, as_solver_spec, make_solver


@dataclass(frozen=True)
class DCOPFResult:
    """Result of :func:`fpamm_opt.problem.solve_dcopf` and :meth:`DCOPFProblem.solve`."""

    status: str
    termination: str
    objective: float | None
    p_gen_mw: np.ndarray
    flow_mw: np.ndarray
    lmp: np.ndarray | None
    solve_s: float
    message: str = ""
    build_s: float = 0.0  #: building the model (and compiling it, on the fast path)
    engine: str = "pyomo"  #: the engine that solved it


def lmp_from_duals(
    net: NetworkData, formulation: Formulation, sol: LPSolution
) -> np.ndarray | None:
    """Nodal prices ($/MWh) at each load node from the duals of ``sol``.

    B-θ: the dual of the bus balance. PTDF: ``λ_island - Σ_l H_lb μ_l`` (an extra MW
    withdrawn at ``b`` moves the island balance by one and each flow row by ``-H_lb``).
    """
    if sol.balance_duals is None:
        return None
    if formulation is Formulation.BTHETA:
        bus_price = sol.balance_duals
    else:
        islands = np.unique(net.bus_island)
        isl = np.searchsorted(islands, net.bus_island)
        flow = sol.flow_duals if sol.flow_duals is not None else np.zeros(net.n_branch)
        bus_price = sol.balance_duals[isl] - net.ptdf_transpose_dot(flow)
    return np.asarray(bus_price)[net.node_bus]


class DCOPFProblem:
    """A model holding only ``m.dcopf`` (plus the user's extensions) and ``m.obj = gen_cost``,
    solved by a :mod:`fpamm_opt.solvers` adapter (persistent where the solver is).

    Parameters
    ----------
    net : NetworkData
    formulation : Formulation or str
    solver : str, SolverSpec or Pyomo solver object, optional
    extensions : sequence of callables ``f(model, net)``
        Run after the block exists (``model.dcopf`` is the handle; there is no allocation
        block here).
    """

    def __init__(
        self,
        net: NetworkData,
        formulation: Formulation | str = Formulation.BTHETA,
        solver: SolverLike | None = None,
        extensions: Sequence[Callable[[pyo.ConcreteModel, NetworkData], None]] = (),
    ) -> None:
        self.net = net
        self.formulation = Formulation(formulation)
        m = pyo.ConcreteModel(name=f"dcopf[{net.name}]")
        m.dcopf = pyo.Block()
        build_dcopf_block(m.dcopf, net, self.formulation)
        for ext in extensions:
            ext(m, net)
        m.obj = pyo.Objective(expr=m.dcopf.gen_cost, sense=pyo.minimize)
        self.model = m
        self.solver = make_solver(m, as_solver_spec(solver))
        self.solver.set_objective(m.obj)

    def _set(self, param: pyo.Param, values: np.ndarray) -> None:
        for k in param:
            param[k].set_value(float(values[k]))

    def solve(
        self, demand_mw: np.ndarray | None = None, available_mw: np.ndarray | None = None
    ) -> DCOPFResult:
        """Least-cost dispatch serving ``demand_mw`` (default: the case's) with outputs in
        ``[pmin, available_mw]`` (default ``pmax``)."""
        net, dc = self.net, self.model.dcopf
        d = net.node_demand_mw if demand_mw is None else np.asarray(demand_mw, dtype=float)
        g = net.gen_pmax_mw if available_mw is None else np.asarray(available_mw, dtype=float)
        for param, values in ((dc.pd, d), (dc.pl_lo, d), (dc.pl_hi, d)):
            self._set(param, values)
        self._set(dc.pg_min, net.gen_pmin_mw)
        self._set(dc.pg_max, g)
        t0 = time.perf_counter()
        res = self.solver.solve()
        ok = res.status is SolveStatus.OPTIMAL
        nan_g, nan_b = np.full(net.n_gen, np.nan), np.full(net.n_branch, np.nan)
        sol = LPSolution(res.status, res.termination, nan_g, nan_g, nan_b, np.nan, np.nan, 0.0)
        if ok and self.solver.supports_duals:
            sol.balance_duals = np.array(self.solver.duals(list(dc.eq_p_balance.values())))
            if hasattr(dc, "eq_pf_ptdf"):
                sol.flow_duals = np.array(self.solver.duals(list(dc.eq_pf_ptdf.values())))
        wall = time.perf_counter() - t0
        return DCOPFResult(
            status="optimal" if ok else res.status.value,
            termination=res.termination,
            objective=float(res.objective) if ok else None,
            p_gen_mw=np.array([dc.pg[k].value for k in dc.gen], dtype=float) if ok else nan_g,
            flow_mw=np.array([dc.pf[k].value for k in dc.branch], dtype=float) if ok else nan_b,
            lmp=lmp_from_duals(net, self.formulation, sol) if ok else None,
            solve_s=wall,
            message=res.message,
        )
