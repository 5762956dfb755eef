"""The run loop: one simulation from a :class:`~fpamm_opt.spec.RunSpec` to a run directory.

Phases
------
1. *Validate* everything before any solve: the network loads, the scenario (and any user time
   series) is consistent, the mechanism configuration is valid, the solver is installed.
   Bad input raises :class:`~fpamm_opt.errors.InputError` and nothing is written.
2. *Build* the allocator once (Pyomo model, engine) and the stateful
   :class:`~fpamm_opt.mechanism.engine.Mechanism`.
3. *Step* through the intervals: every stored allocation is first re-checked for DC
   feasibility in NumPy (:func:`dispatch_violation_mw`); a failed or infeasible clearing is
   retried by :class:`RetryingAllocator` (cold re-solve inside the fast engine, then the other
   formulation on the Pyomo engine) and what happened is recorded in the interval's status.
4. *Write* through :class:`~fpamm_opt.io.writer.RunWriter`: Parquet row groups streamed every
   ``flush_every`` intervals (memory flat in ``T``), the manifest, an atomic rename.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fpamm_opt.errors import InputError, SolverError
from fpamm_opt.io.manifest import build_manifest
from fpamm_opt.io.writer import RunWriter, clean_stale_temporaries
from fpamm_opt.mechanism.config import MechanismConfig, Policy
from fpamm_opt.mechanism.engine import Mechanism, StepRecord
from fpamm_opt.mechanism.types import Dispatch, IntervalInput, SolveStatus, keep_deferred
from fpamm_opt.network import NetworkData
from fpamm_opt.scenario import Scenario
from fpamm_opt.spec import RunSpec, spec_hash

#: Solvers that cannot take the QP rule's quadratic objective.
LP_ONLY_SOLVERS = frozenset({"glpk", "cbc", "clp"})

#: Feasibility tolerance of stored allocations (MW), relative part times total demand.
FEAS_TOL_REL = 1e-6
FEAS_TOL_ABS_MW = 1e-5


def dispatch_violation_mw(
    net: NetworkData, demand_mw: np.ndarray, available_mw: np.ndarray, disp: Dispatch
) -> float:
    """Largest violation (MW) of ``X(t)`` by a dispatch, recomputed in NumPy.

    Balance per island, ``0 <= p <= available``, ``0 <= x <= d``, ``|flow| <= rate`` with flows
    recomputed from injections (independently of the solver's own ``pf``).
    """
    p, x = disp.p_gen_mw, disp.served_mw
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(x))):
        return float("inf")
    inj = net.bus_injection_mw(p, x)
    bal = np.zeros(int(net.bus_island.max()) + 1)
    np.add.at(bal, net.bus_island, inj)
    flows = net.flows_from_injections(inj)
    lo, hi = net.flow_limits_mw()
    v = [
        np.max(np.abs(bal), initial=0.0),
        np.max(-p + np.minimum(net.gen_pmin_mw, 0.0), initial=0.0),
        np.max(p - available_mw, initial=0.0),
        np.max(-x, initial=0.0),
        np.max(x - demand_mw, initial=0.0),
        np.max(lo - flows, initial=0.0),
        np.max(flows - hi, initial=0.0),
    ]
    return float(max(v))


class RetryingAllocator:
    """Wraps an allocator; a failed or DC-infeasible answer is retried on a fallback.

    The fallback (the other formulation on the Pyomo engine, built lazily on first need) is
    independent of the primary's warm state. Each retry is counted in :attr:`events`.
    """

    def __init__(
        self, primary: Any, fallback_factory: Callable[[], Any], net: NetworkData, tol_mw: float
    ) -> None:
        self.primary = primary
        self._factory = fallback_factory
        self._fallback: Any = None
        self.net = net
        self.tol_mw = tol_mw
        self.n_node, self.n_gen = primary.n_node, primary.n_gen
        self.n_branch, self.n_tier = primary.n_branch, primary.n_tier
        self.events: list[str] = []
        # (tier order, weights) of the latest deferred clears, by their served array
        self._pending: dict[int, tuple[Sequence[int], np.ndarray]] = {}

    def _ok(self, inp: IntervalInput, d: Dispatch) -> bool:
        return (
            d.status is SolveStatus.OPTIMAL
            and dispatch_violation_mw(self.net, inp.demand_mw, inp.available_mw, d) <= self.tol_mw
        )

    def _served_ok(self, inp: IntervalInput, d: Dispatch) -> bool:
        """What can be checked of a deferred answer: served loads finite, within [0, d]."""
        x = np.asarray(d.served_mw, dtype=float)
        demand = np.asarray(inp.demand_mw, dtype=float)
        return (
            d.status is SolveStatus.OPTIMAL
            and bool(np.all(np.isfinite(x)))
            and float(np.max(np.maximum(-x, x - demand), initial=0.0)) <= self.tol_mw
        )

    def _retry(
        self, what: str, inp: IntervalInput, first: Dispatch, call: Callable[[Any], Dispatch]
    ) -> Dispatch:
        if self._fallback is None:
            self._fallback = self._factory()
        second = call(self._fallback)
        reason = first.note or first.status.value
        if first.status is SolveStatus.OPTIMAL:  # optimal, but outside X(t) when re-checked
            reason = "dc-infeasible" + (f"[{first.note}]" if first.note else "")
        if self._ok(inp, second):
            self.events.append(f"t={inp.t}:{what}:{reason}->fallback")
            note = f"retried({what}:{reason})"
            return Dispatch(**{**second.__dict__, "note": note})
        self.events.append(f"t={inp.t}:{what}:{reason}->failed")
        return Dispatch(
            **{**second.__dict__, "status": SolveStatus.ERROR, "note": f"failed({what}:{reason})"}
        )

    def screen(self, inp: IntervalInput) -> Dispatch:
        d = self.primary.screen(inp)
        if self._ok(inp, d):
            return d
        return self._retry("screen", inp, d, lambda a: a.screen(inp))

    def clear(
        self,
        inp: IntervalInput,
        tier_order: Sequence[int],
        weights: np.ndarray,
        dispatch: bool = True,
    ) -> Dispatch:
        """As the primary's; a deferred answer is DC-checked when :meth:`complete` solves it."""
        if dispatch or not callable(getattr(self.primary, "complete", None)):
            d = self.primary.clear(inp, tier_order, weights)
        else:
            d = self.primary.clear(inp, tier_order, weights, dispatch=False)
        if d.deferred and self._served_ok(inp, d):
            self._pending = keep_deferred(self._pending, d.served_mw, (tier_order, weights))
            return d
        if not d.deferred and self._ok(inp, d):
            return d
        return self._retry("clear", inp, d, lambda a: a.clear(inp, tier_order, weights))

    def complete(self, inp: IntervalInput, disp: Dispatch) -> Dispatch:
        """The primary's dispatch of a deferred clear, checked; else the clear on the fallback."""
        if not disp.deferred:
            return disp
        tier_order, weights = self._pending[id(disp.served_mw)]
        d = self.primary.complete(inp, disp)
        # the dispatch must be in X(t) and serve what the fixed point worked with
        moved = float(np.max(np.abs(d.served_mw - disp.served_mw), initial=0.0))
        if self._ok(inp, d) and moved <= self.tol_mw:
            return d
        return self._retry("clear", inp, d, lambda a: a.clear(inp, tier_order, weights))


@dataclass(frozen=True)
class PreparedRun:
    """Everything validated and built, ready to step."""

    spec: RunSpec
    net: NetworkData
    scenario: Scenario
    cfg: MechanismConfig
    policy: Policy
    seed: int
    intervals: int
    #: The spec's ``[[extensions]]``, resolved to ``f(model, net)`` callables.
    extensions: tuple[Any, ...] = ()


def resolve_run_spec(
    spec: RunSpec, policy: str | None = None, seed: int | None = None, intervals: int | None = None
) -> RunSpec:
    """Apply CLI choices (policy, seed, horizon) to the spec so the manifest records them."""
    changes: dict[str, Any] = {}
    if policy is not None:
        changes["policy"] = policy
    if seed is not None:
        changes["seed"] = int(seed)
    if intervals is not None:
        changes["intervals"] = int(intervals)
    if not changes:
        return spec
    data = spec.to_dict()
    data["run"].update(changes)
    return RunSpec.from_dict(data, source=spec.source)


def prepare(spec: RunSpec) -> PreparedRun:
    """Phase 1: validate the whole spec and build the inputs (no solver call yet)."""
    from fpamm_opt.solvers import require_solver

    cfg = MechanismConfig.from_dict(spec.mechanism)
    try:
        policy = Policy(str(spec.run.policy))
    except ValueError:
        raise InputError(
            f"run.policy: unknown policy {spec.run.policy!r} "
            f"(known: {', '.join(p.value for p in Policy)})"
        ) from None
    # Mistakes in the spec itself come first, whatever solvers this machine has.
    if cfg.rule.value == "qp" and spec.solver.name.lower() in LP_ONLY_SOLVERS:
        raise InputError(
            f"mechanism.rule = 'qp' needs a solver with quadratic objectives; "
            f"solver.name = {spec.solver.name!r} solves LPs only (use mechanism.rule = 'maxmin')"
        )
    if str(spec.solver.engine) == "highs" and spec.solver.name.lower() != "highs":
        raise InputError(
            f"solver.engine: 'highs' needs solver.name 'highs', got {spec.solver.name!r}"
        )
    require_solver(spec.solver.name)
    from fpamm_opt.extensions import resolve_extensions

    base = Path(spec.source).resolve().parent if spec.source else None
    exts = resolve_extensions(spec.extensions, base_dir=base)
    net = spec.network.load()
    scenario = Scenario(net, spec.scenario, seed=int(spec.run.seed))
    return PreparedRun(
        spec, net, scenario, cfg, policy, int(spec.run.seed), int(spec.run.intervals), exts
    )


def _solve_paths(alloc: Any) -> dict[str, Any]:
    """How the primary allocator cleared tiers and solved QPs (counts, for the manifest)."""
    prim = getattr(alloc, "primary", alloc)
    out: dict[str, Any] = {}
    for name in ("tier_paths", "qp_paths", "qp_misses", "kkt_iterations"):
        if hasattr(prim, name):
            val = getattr(prim, name)
            out[name] = dict(val) if isinstance(val, dict) else int(val)
    return out


def build_allocator(prep: PreparedRun, extensions: Sequence[Any] = ()) -> RetryingAllocator:
    """Phase 2: the model is built once per run; a fallback on the other formulation."""
    from fpamm_opt.blocks.dcopf import Formulation
    from fpamm_opt.problem import AllocationProblem
    from fpamm_opt.solvers import SolverSpec

    s = prep.spec
    solver = SolverSpec(
        name=s.solver.name, time_limit_s=s.solver.time_limit_s, options=dict(s.solver.options)
    )
    form = Formulation(getattr(s.network, "formulation", "btheta"))
    engine = getattr(s.solver, "engine", "auto")
    sc = prep.scenario
    kw: dict[str, Any] = dict(
        rule=prep.cfg.rule,
        voll=prep.cfg.voll,
        solver=solver,
        extensions=(*prep.extensions, *extensions),
        tier_energy=prep.cfg.tier_energy,
        qp_method=getattr(s.solver, "qp_method", "auto"),
    )
    primary = AllocationProblem(
        prep.net, sc.node_tier, sc.n_tiers, formulation=form, engine=engine, **kw
    )
    other = Formulation.PTDF if form is Formulation.BTHETA else Formulation.BTHETA

    def fallback() -> AllocationProblem:
        return AllocationProblem(
            prep.net, sc.node_tier, sc.n_tiers, formulation=other, engine="pyomo", **kw
        )

    tol = FEAS_TOL_ABS_MW + FEAS_TOL_REL * float(prep.net.node_demand_mw.sum()) * 2
    wrapped = RetryingAllocator(primary, fallback, prep.net, tol)
    wrapped.engine_kind = primary.engine_kind  # type: ignore[attr-defined]
    wrapped.formulation = form.value  # type: ignore[attr-defined]
    # what actually solves the QP rule's tier problems (kkt: mechanism/tierqp.py)
    wrapped.qp_method = (  # type: ignore[attr-defined]
        ("kkt" if primary.kkt_enabled else "solver") if prep.cfg.rule.value == "qp" else None
    )
    return wrapped


def applicable_checks(cfg: MechanismConfig, policy: Policy) -> list[str]:
    """Which theorem checks apply to a run (T4 only with a trigger threshold above zero)."""
    checks = ["T1", "T2", "T3", "T5", "deficit-replay"]
    if cfg.trigger_theta > 0:
        checks.insert(3, "T4")
    return checks


def _tables_of(
    rec: StepRecord,
    si: Any,
    net: NetworkData,
    tiers: np.ndarray,
    node_idx: np.ndarray,
    node_bus: np.ndarray,
    br_idx: np.ndarray,
    gen_idx: np.ndarray,
    gen_bus: np.ndarray,
) -> dict[str, dict[str, Any]]:
    t = int(rec.t)
    res = np.asarray(rec.residuals, dtype=float)
    return {
        "intervals": {
            "t": t,
            "scarce": bool(rec.scarce),
            "window": si.window,
            "tier_order": ">".join(str(int(k)) for k in rec.tier_order),
            "demand_mw": float(rec.demand_mw.sum()),
            "served_mw": float(rec.served_mw.sum()),
            "available_mw": float(np.sum(rec.available_mw)),
            "amm_price": float(rec.amm_price),
            "iterations": int(res.size),
            "q_hat": float(rec.q_hat),
            "q_bound": float(rec.q_bound),
            "q_bound_applies": bool(rec.q_bound_applies),
            "gamma": float(rec.gamma),
            "tier_level_max": float(rec.lambda_max),
            "executed": bool(rec.executed),
            "status": rec.status,
            "solve_s": float(rec.solve_s),
            "n_solves": int(rec.n_solves),
            "tracking_error": float(rec.tracking_error),
            "cost": float(rec.cost),
            "deliverable_mw": float(rec.deliverable_mw),
        },
        "nodes": {
            "t": t,
            "node": node_idx,
            "bus": node_bus,
            "tier": tiers,
            "demand_mw": rec.demand_mw,
            "served_mw": rec.served_mw,
            "shortfall_ratio": rec.shortfall_ratio,
            "memory_before": rec.memory_before,
            "memory_after": rec.memory_after,
            "weight": rec.weights,
            "delivery_ratio": rec.delivery_ratio,
            "lmp": rec.lmp,
            "deficit_mwh": rec.deficit_mwh,
            "served_ratio_exact": rec.served_ratio_exact,
        },
        "branches": {
            "t": t,
            "branch": br_idx,
            "flow_mw": rec.flow_mw,
            "rate_mw": net.branch_rate_mw,
        },
        "generators": {
            "t": t,
            "gen": gen_idx,
            "bus": gen_bus,
            "p_mw": rec.p_gen_mw,
            "available_mw": rec.available_mw,
        },
        "iterations": {"t": t, "m": np.arange(res.size, dtype=np.int32), "residual": res},
    }


@dataclass(frozen=True)
class RunResult:
    """Where a run went and what it measured."""

    run_dir: Path
    manifest: dict[str, Any]


def run(
    spec: RunSpec,
    out_dir: Path | str,
    progress: bool | None = None,
    extensions: Sequence[Any] = (),
    overwrite: bool = False,
    on_step: Callable[[StepRecord], None] | None = None,
) -> RunResult:
    """Run one simulation and write its run directory (see module docstring)."""
    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    prep = prepare(spec)
    t_build0 = time.perf_counter()
    alloc = build_allocator(prep, extensions)
    build_s = time.perf_counter() - t_build0
    # Only now, with everything validated and built, touch the file system.
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(out_dir.parent)
    net, sc, cfg = prep.net, prep.scenario, prep.cfg
    mech = Mechanism(
        alloc,
        net,
        sc.node_tier,
        sc.tier_priority,
        prep.policy,
        cfg,
        sc.priority_rng(),
        interval_h=float(spec.scenario.interval_minutes) / 60.0,
    )
    h = spec_hash(spec)
    manifest = build_manifest(
        spec.to_dict(),
        h,
        seed=prep.seed,
        policy=prep.policy.value,
        network=net.summary(),
        scenario=sc.describe(),
        extra={
            "rule": cfg.rule.value,
            "weight_form": cfg.weight_form.value,
            "weight_source": cfg.weight_source.value,
            "interval_hours": float(spec.scenario.interval_minutes) / 60.0,
            "formulation": alloc.formulation,  # type: ignore[attr-defined]
            "engine": alloc.engine_kind,  # type: ignore[attr-defined]
            "solver": spec.solver.name,
            "qp_method": alloc.qp_method,  # type: ignore[attr-defined]
            "cost_model": "linear",
            "cost_model_note": "LP price per MW = c1 + c2*pmax (secant of the case's cost)",
            "lower_bounds_relaxed": "generator minimum outputs relaxed to 0 so X(t) is never empty",
            "ratings": net.ratings.describe(),
            "checks": applicable_checks(cfg, prep.policy),
            "mechanism_resolved": cfg.to_dict(),
            "intervals": prep.intervals,
        },
    )
    tables = spec.outputs.tables() if hasattr(spec.outputs, "tables") else None
    writer_kw: dict[str, Any] = {"flush_every": spec.run.flush_every, "overwrite": overwrite}
    if tables is not None:
        writer_kw["tables"] = tables
    node_idx = np.arange(net.n_node, dtype=np.int32)
    node_bus = net.node_ids.astype(np.int32)
    br_idx = np.arange(net.n_branch, dtype=np.int32)
    gen_idx = np.arange(net.n_gen, dtype=np.int32)
    gen_bus = net.bus_ids[net.gen_bus].astype(np.int32)
    tiers = sc.node_tier.astype(np.int16)
    show = sys.stderr.isatty() if progress is None else progress
    bar = None
    if show:
        from tqdm import tqdm

        bar = tqdm(
            total=prep.intervals,
            desc=f"{net.name} {prep.policy.value}",
            unit="int",
            file=sys.stderr,
            mininterval=0.5,
        )
    n_scarce = n_exec = n_fail = 0
    solve_s = 0.0
    t_loop0 = time.perf_counter()
    from fpamm_opt.sim.signals import terminate_as_interrupt

    with terminate_as_interrupt(), RunWriter(out_dir, h, manifest, **writer_kw) as w:
        for si in sc.iter_intervals(prep.intervals):
            inp = IntervalInput(si.t, np.asarray(si.demand_mw), np.asarray(si.available_mw))
            rec = mech.step(inp)
            if not rec.status.startswith("optimal"):
                raise SolverError(
                    f"interval {si.t}: no verified feasible allocation ({rec.status}); "
                    "the run is abandoned and nothing is written"
                )
            n_scarce += bool(rec.scarce)
            n_exec += bool(rec.executed)
            # kept a verified allocation, but some solve of the interval failed for good
            n_fail += "error:" in rec.status or "failed(" in rec.status
            solve_s += float(rec.solve_s)
            w.add_interval(
                _tables_of(rec, si, net, tiers, node_idx, node_bus, br_idx, gen_idx, gen_bus)
            )
            if on_step is not None:
                on_step(rec)
            if bar is not None:
                bar.update(1)
        loop_s = time.perf_counter() - t_loop0
        if bar is not None:
            bar.close()
        final = w.close(
            {
                "timings": {
                    "build_s": build_s,
                    "loop_s": loop_s,
                    "solver_s": solve_s,
                    "total_s": time.perf_counter() - t_start,
                    "per_interval_ms": 1000 * loop_s / max(prep.intervals, 1),
                },
                "summary": {
                    "intervals": prep.intervals,
                    "scarce": n_scarce,
                    "executed": n_exec,
                    "failed": n_fail,
                    "retries": list(alloc.events[:100]),
                    "n_retries": len(alloc.events),
                    "final_memory_max": float(np.max(mech.memory, initial=0.0)),
                },
                "solve_paths": _solve_paths(alloc),
            }
        )
    from fpamm_opt.io.reader import read_manifest

    return RunResult(Path(final), read_manifest(final))
