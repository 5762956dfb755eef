"""fpamm-opt: the Fair Play Automatic Market Maker (FP-AMM) on DC-OPF networks.

When a network cannot serve every load, FP-AMM chooses who is curtailed, interval after
interval, so that shortfalls even out over time: a memory of past shortfalls sets fairness
weights, and each interval's allocation is a point of the DC-OPF feasible set cleared tier by
tier (Pyomo, HiGHS by default). Every run can be checked against the theorems it claims.

Quick start::

    import fpamm_opt

    res = fpamm_opt.simulate("models/ieee14.toml", intervals=100)  # in memory, pandas tables
    print(res.intervals[["t", "scarce", "demand_mw", "served_mw"]].head())
    print(fpamm_opt.verify(res).to_table())  # the theorem and feasibility checks
    fpamm_opt.run("models/ieee14.toml", "runs/ieee14", intervals=100)  # a run directory

API (every name is loaded on first use, so ``import fpamm_opt`` stays light)
-----------------------------------------------------------------------------
Networks and the Pyomo model
    load_network            a pandapower case name or a MATPOWER / pandapower file -> NetworkData
    NetworkData             the network as frozen NumPy arrays (MW, per unit inside)
    build_dcopf_block       the DC-OPF feasible set X(t) on a Pyomo Block of your model
    build_allocation_block  served load, tiers and fairness weights on top of that block
    build_model             both blocks in one ConcreteModel, plus your extensions
    Formulation             btheta or ptdf: two descriptions of the same feasible set
    solve_dcopf             one least-cost DC-OPF of a network -> DCOPFResult
    DCOPFResult             status, cost, dispatch, flows and LMPs of solve_dcopf
Runs
    load_spec               a TOML run specification (models/*.toml) -> RunSpec
    RunSpec                 a resolved, validated run specification
    simulate                one run in memory -> SimulationResult (.tables, .manifest)
    SimulationResult        a run's pandas tables and manifest, nothing on disk
    run                     one run written to a run directory -> RunResult
    RunResult               where a run directory went and its manifest
    read_run                lazy, cached pandas tables of a run directory
    run_batch               a sweep of runs in worker processes (or on Dask), resumable
    compare                 FP-AMM against equal weights and LMP on common random numbers
    verify                  the theorem and feasibility checks of a run -> VerificationReport
The mechanism (NumPy only)
    Mechanism               FP-AMM (or a baseline) as a stateful process over intervals
    MechanismConfig         its parameters (beta, epsilon, rule, trigger, ...)
    Policy                  fpamm, equal or lmp
    Rule                    the within-tier rule: maxmin or qp
    WeightForm              how memory becomes weights
    WeightSource            what the weights read: memory, deficit or both
    TierEnergy              free or max: how much energy a tier is given
Errors
    FpammError              the base of every error the package raises

Solvers: ``solve_dcopf``, ``simulate`` and ``run`` take ``solver=``, a name Pyomo knows
(``"highs"``, ``"appsi_highs"``, ``"glpk"``, ``"gurobi"``, ...) or a Pyomo solver object of
yours (``pyo.SolverFactory("appsi_highs")``). See docs/quickstart.md and
examples/own_model.py.

Layers (an import rule enforced by ``tests/unit/test_layering.py``):

- ``network``, ``scenario``, ``mechanism``, ``io``, ``verify``: NumPy/pandas only, no Pyomo.
- ``blocks``, ``problem``, ``solvers``: the Pyomo layer.
- ``sim``, ``report``, ``cli``: orchestration on top.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from fpamm_opt.errors import FpammError

if TYPE_CHECKING:
    from fpamm_opt.blocks.allocation import build_allocation_block
    from fpamm_opt.blocks.dcopf import Formulation, build_dcopf_block
    from fpamm_opt.io.reader import read_run
    from fpamm_opt.mechanism.config import (
        MechanismConfig,
        Policy,
        Rule,
        TierEnergy,
        WeightForm,
        WeightSource,
    )
    from fpamm_opt.mechanism.engine import Mechanism
    from fpamm_opt.network import NetworkData, load_network
    from fpamm_opt.problem import DCOPFResult, build_model, solve_dcopf
    from fpamm_opt.report.compare import run_comparison as compare
    from fpamm_opt.sim.batch import run_batch
    from fpamm_opt.sim.run import RunResult, SimulationResult, run, simulate
    from fpamm_opt.spec import RunSpec, load_spec
    from fpamm_opt.verify import verify_run as verify

__version__ = "0.1.0"

#: Public name -> (module, attribute); imported on first access (PEP 562).
_LAZY: dict[str, tuple[str, str]] = {
    "load_network": ("fpamm_opt.network", "load_network"),
    "NetworkData": ("fpamm_opt.network", "NetworkData"),
    "build_dcopf_block": ("fpamm_opt.blocks.dcopf", "build_dcopf_block"),
    "build_allocation_block": ("fpamm_opt.blocks.allocation", "build_allocation_block"),
    "build_model": ("fpamm_opt.problem", "build_model"),
    "Formulation": ("fpamm_opt.blocks.dcopf", "Formulation"),
    "solve_dcopf": ("fpamm_opt.problem", "solve_dcopf"),
    "DCOPFResult": ("fpamm_opt.problem", "DCOPFResult"),
    "load_spec": ("fpamm_opt.spec", "load_spec"),
    "RunSpec": ("fpamm_opt.spec", "RunSpec"),
    "simulate": ("fpamm_opt.sim.run", "simulate"),
    "SimulationResult": ("fpamm_opt.sim.run", "SimulationResult"),
    "run": ("fpamm_opt.sim.run", "run"),
    "RunResult": ("fpamm_opt.sim.run", "RunResult"),
    "read_run": ("fpamm_opt.io.reader", "read_run"),
    "run_batch": ("fpamm_opt.sim.batch", "run_batch"),
    "compare": ("fpamm_opt.report.compare", "run_comparison"),
    # The ``verify`` package is callable: ``fpamm_opt.verify(run)`` is ``verify_run(run)``.
    "verify": ("fpamm_opt.verify", ""),
    "Mechanism": ("fpamm_opt.mechanism.engine", "Mechanism"),
    "MechanismConfig": ("fpamm_opt.mechanism.config", "MechanismConfig"),
    "Policy": ("fpamm_opt.mechanism.config", "Policy"),
    "Rule": ("fpamm_opt.mechanism.config", "Rule"),
    "WeightForm": ("fpamm_opt.mechanism.config", "WeightForm"),
    "WeightSource": ("fpamm_opt.mechanism.config", "WeightSource"),
    "TierEnergy": ("fpamm_opt.mechanism.config", "TierEnergy"),
}

__all__ = [
    "DCOPFResult",
    "Formulation",
    "FpammError",
    "Mechanism",
    "MechanismConfig",
    "NetworkData",
    "Policy",
    "Rule",
    "RunResult",
    "RunSpec",
    "SimulationResult",
    "TierEnergy",
    "WeightForm",
    "WeightSource",
    "__version__",
    "build_allocation_block",
    "build_dcopf_block",
    "build_model",
    "compare",
    "load_network",
    "load_spec",
    "read_run",
    "run",
    "run_batch",
    "simulate",
    "solve_dcopf",
    "verify",
]


def __getattr__(name: str) -> Any:
    """Import a public name on first use (PEP 562)."""
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    mod = importlib.import_module(module)
    value = getattr(mod, attr) if attr else mod
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
