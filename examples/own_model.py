"""Your own Pyomo model with fpamm-opt's DC-OPF block in it, a constraint of yours, your solver.

The DC-OPF feasible set is a reusable Pyomo block (``fpamm_opt.build_dcopf_block``, build
contract in ``fpamm_opt/blocks/dcopf.py``): generation ``pg[g]``, served load ``pl[i]`` and
branch flows ``pf[l]`` in MW, nodal balance and flow limits already in place. Here it goes into
a plain ``ConcreteModel``; we ask it to serve every load, add a cap on one generator and
minimise the linear generation cost with a solver of your choice::

    python examples/own_model.py                 # Pyomo's APPSI HiGHS (appsi_highs)
    python examples/own_model.py highs           # any name Pyomo's SolverFactory knows

or from Python, with a solver object you configured yourself::

    import pyomo.environ as pyo
    from own_model import main
    main(solver=pyo.SolverFactory("appsi_highs"))

The same constraint can ride along fpamm-opt's own problems as an *extension* (a callable
``f(model, net)``): ``fpamm_opt.solve_dcopf(net, extensions=[cap])``, or ``[[extensions]]``
in a run spec (see examples/zonal_limit.py).
"""

from __future__ import annotations

import sys
from typing import Any

import pyomo.environ as pyo

import fpamm_opt


def build(net: fpamm_opt.NetworkData, cap_mw: dict[int, float]) -> pyo.ConcreteModel:
    """A least-cost dispatch serving every load of ``net``, generator ``g`` at most
    ``cap_mw[g]`` MW."""
    m = pyo.ConcreteModel()
    m.dcopf = pyo.Block()
    fpamm_opt.build_dcopf_block(m.dcopf, net, "btheta")
    dc = m.dcopf
    for i in dc.node:  # the block lets load be shed (pl in [0, d]): serve all of it
        dc.pl_lo[i] = dc.pd[i]
    m.cap = pyo.Constraint(list(cap_mw), rule=lambda m, g: m.dcopf.pg[g] <= cap_mw[g])
    m.cost = pyo.Objective(expr=dc.gen_cost_linear)  # $/h, linear: any LP solver will do
    return m


def solve(m: pyo.ConcreteModel, solver: Any) -> None:
    """Solve ``m`` with ``solver``, a name or a Pyomo solver object; fail unless optimal."""
    opt = pyo.SolverFactory(solver) if isinstance(solver, str) else solver
    res = opt.solve(m)
    tc = res.solver.termination_condition
    if tc != pyo.TerminationCondition.optimal:
        raise RuntimeError(f"the solver stopped with {tc}")


def main(solver: Any = "appsi_highs", case: str = "case14", gen: int = 0) -> dict[str, float]:
    """Dispatch ``case`` without a cap, then with generator ``gen`` capped at half its output.

    Returns
    -------
    dict
        Costs ($/h), the generator's output (MW) and the cap (MW) of the two solves.
    """
    net = fpamm_opt.load_network(case)
    free = build(net, {})
    solve(free, solver)
    cap = 0.5 * pyo.value(free.dcopf.pg[gen])
    capped = build(net, {gen: cap})
    solve(capped, solver)
    return {
        "cost_free": pyo.value(free.cost),
        "cost_capped": pyo.value(capped.cost),
        "pg_free_mw": pyo.value(free.dcopf.pg[gen]),
        "pg_capped_mw": pyo.value(capped.dcopf.pg[gen]),
        "cap_mw": cap,
        "served_mw": sum(pyo.value(capped.dcopf.pl[i]) for i in capped.dcopf.node),
    }


if __name__ == "__main__":
    out = main(*sys.argv[1:2])
    print(
        f"generator 0: {out['pg_free_mw']:.1f} MW -> {out['pg_capped_mw']:.1f} MW "
        f"(cap {out['cap_mw']:.1f} MW); cost {out['cost_free']:.0f} -> "
        f"{out['cost_capped']:.0f} $/h; served {out['served_mw']:.1f} MW"
    )
