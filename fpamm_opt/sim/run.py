"""The run loop: one simulation from a :class:`~fpamm_opt.spec.RunSpec` to its tables.

:class:`Simulation` is the runner (its :meth:`~Simulation.steps` yield one
:class:`~fpamm_opt.sim.records.IntervalRecord` per interval); :func:`run` writes the records
to a run directory, :func:`simulate` keeps them in memory as pandas tables
(:class:`SimulationResult`). Both convert records to tables the same way
(:class:`~fpamm_opt.sim.records.TableLayout`, then :class:`~fpamm_opt.io.tables.TableBuffer`).

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
   ``flush_every`` intervals (memory flat in ``T``), the manifest, an atomic rename; or, for
   :func:`simulate`, keep the row groups in memory (:class:`~fpamm_opt.io.tables.MemoryTables`).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fpamm_opt.errors import InputError, SolverError
from fpamm_opt.feasible import x_violations
from fpamm_opt.io.manifest import build_manifest, complete_manifest, to_jsonable
from fpamm_opt.io.schema import TABLE_NAMES
from fpamm_opt.io.tables import MemoryTables
from fpamm_opt.io.writer import RunWriter, clean_stale_temporaries
from fpamm_opt.mechanism.config import MechanismConfig, Policy
from fpamm_opt.mechanism.engine import Mechanism, StepRecord
from fpamm_opt.mechanism.types import (
    ClearEvent,
    ClearEventKind,
    Dispatch,
    IntervalInput,
    IntervalStatus,
    SolveStatus,
    keep_deferred,
)
from fpamm_opt.network import NetworkData
from fpamm_opt.scenario import Scenario
from fpamm_opt.scenario_sources import make_scenario
from fpamm_opt.sim.records import IntervalRecord, TableLayout
from fpamm_opt.spec import RunSpec, as_spec, spec_hash
from fpamm_opt.verify.context import RunContext, RunData
from fpamm_opt.verify.runner import applicable_checks

#: Solvers that cannot take the QP rule's quadratic objective (APPSI's HiGHS interface
#: accepts linear objectives only; ``highs`` is the one that takes QPs).
LP_ONLY_SOLVERS = frozenset({"glpk", "cbc", "clp", "appsi_highs"})

#: Feasibility tolerance of stored allocations (MW), relative part times total demand.
FEAS_TOL_REL = 1e-6
FEAS_TOL_ABS_MW = 1e-5


def dispatch_violation_mw(
    net: NetworkData, demand_mw: np.ndarray, available_mw: np.ndarray, disp: Dispatch
) -> float:
    """Largest violation (MW) of ``X(t)`` by a dispatch, recomputed in NumPy.

    :func:`~fpamm_opt.feasible.x_violations` of the dispatch (balance per island,
    ``min(pmin, 0) <= p <= available``, ``0 <= x <= d``, flow limits with flows recomputed from
    the injections, independently of the solver's own ``pf``); ``inf`` when a value is not
    finite.
    """
    p, x = disp.p_gen_mw, disp.served_mw
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(x))):
        return float("inf")
    return float(x_violations(net, p, x, available_mw, demand_mw).worst_mw()[0])


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
        # (tier order, weights) of the latest deferred clears, by their deferred_token
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
            event = ClearEvent(ClearEventKind.RETRIED, None, f"{what}:{reason}")
            events = (*second.events, event)
            return Dispatch(**{**second.__dict__, "note": event.note, "events": events})
        self.events.append(f"t={inp.t}:{what}:{reason}->failed")
        event = ClearEvent(ClearEventKind.RETRY_FAILED, None, f"{what}:{reason}")
        return Dispatch(
            **{
                **second.__dict__,
                "status": SolveStatus.ERROR,
                "note": event.note,
                "events": (*second.events, event),
            }
        )

    def begin_interval(self, inp: IntervalInput) -> None:
        """Open ``inp`` on the primary (and the fallback, once built): see
        :meth:`fpamm_opt.problem.AllocationProblem.begin_interval`."""
        for alloc in (self.primary, self._fallback):
            begin = getattr(alloc, "begin_interval", None)
            if callable(begin):
                begin(inp)

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
        if d.deferred and d.deferred_token is not None and self._served_ok(inp, d):
            self._pending = keep_deferred(self._pending, d.deferred_token, (tier_order, weights))
            return d
        if not d.deferred and self._ok(inp, d):
            return d
        return self._retry("clear", inp, d, lambda a: a.clear(inp, tier_order, weights))

    def complete(self, inp: IntervalInput, disp: Dispatch) -> Dispatch:
        """The primary's dispatch of a deferred clear, checked; else the clear on the fallback."""
        if not disp.deferred:
            return disp
        assert disp.deferred_token is not None
        tier_order, weights = self._pending[disp.deferred_token]
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
    #: A Pyomo solver object to use instead of one made from ``spec.solver.name``.
    solver_instance: Any = None


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


def prepare(spec: RunSpec, solver_instance: Any = None) -> PreparedRun:
    """Phase 1: validate the whole spec and build the inputs (no solver call yet).

    ``solver_instance``: a Pyomo solver object used instead of ``spec.solver.name``.
    """
    from fpamm_opt.solvers import SolverSpec, require_solver

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
    if solver_instance is not None and str(spec.solver.engine) == "highs":
        raise InputError(
            "solver.engine: 'highs' drives highspy itself; a solver object needs 'auto' or 'pyomo'"
        )
    require_solver(SolverSpec(name=spec.solver.name, instance=solver_instance))
    from fpamm_opt.extensions import resolve_extensions

    base = Path(spec.source).resolve().parent if spec.source else None
    exts = resolve_extensions(spec.extensions, base_dir=base)
    net = spec.network.load()
    scenario = make_scenario(
        net, spec.scenario, seed=int(spec.run.seed), intervals=int(spec.run.intervals)
    )
    return PreparedRun(
        spec,
        net,
        scenario,
        cfg,
        policy,
        int(spec.run.seed),
        int(spec.run.intervals),
        exts,
        solver_instance,
    )


def _solve_paths(alloc: Any) -> dict[str, Any]:
    """How the primary allocator cleared tiers and solved QPs (counts, for the manifest)."""
    from fpamm_opt.pipeline.accounting import PathStats

    prim = alloc.primary if isinstance(alloc, RetryingAllocator) else alloc
    stats = getattr(prim, "stats", None)
    return stats.as_manifest() if isinstance(stats, PathStats) else {}


def build_allocator(prep: PreparedRun, extensions: Sequence[Any] = ()) -> RetryingAllocator:
    """Phase 2: the model is built once per run; a fallback on the other formulation."""
    from fpamm_opt.blocks.dcopf import Formulation
    from fpamm_opt.problem import AllocationProblem
    from fpamm_opt.solvers import SolverSpec

    s = prep.spec
    solver = SolverSpec(
        name=s.solver.name,
        time_limit_s=s.solver.time_limit_s,
        options=dict(s.solver.options),
        instance=prep.solver_instance,
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
    """The table rows of one step (kept for callers of the former helper; see
    :meth:`~fpamm_opt.sim.records.TableLayout.columns`)."""
    layout = TableLayout(
        node=node_idx,
        bus=node_bus,
        tier=tiers,
        branch=br_idx,
        rate_mw=net.branch_rate_mw,
        gen=gen_idx,
        gen_bus=gen_bus,
    )
    return layout.columns(IntervalRecord(rec, si.window))


# ----------------------------------------------------------------- the runner
class Simulation:
    """One simulation of a spec, interval by interval: phases 1 to 3 of the module docstring.

    Building one validates the spec and builds the allocator and the mechanism (nothing is
    written anywhere); :meth:`steps` then yields one
    :class:`~fpamm_opt.sim.records.IntervalRecord` per interval. :func:`run` streams the
    records to a run directory, :func:`simulate` keeps them in memory; both turn them into
    table rows with :meth:`columns`.

    Parameters
    ----------
    spec : RunSpec
        Resolved (policy, seed and horizon applied).
    extensions : sequence of callables ``f(model, net)``
        Added to the spec's own ``[[extensions]]``.
    solver_instance : Pyomo solver object, optional
        Used instead of one made from ``spec.solver.name``
        (:func:`fpamm_opt.solvers.as_solver_spec`).

    Attributes
    ----------
    prep : PreparedRun
    allocator : RetryingAllocator
    mechanism : Mechanism
    manifest : dict
        The manifest at the start of the run (``status: "running"``).
    spec_hash : str
    tables : tuple of str
        The tables the spec's ``[outputs]`` asks for.
    """

    def __init__(
        self, spec: RunSpec, extensions: Sequence[Any] = (), solver_instance: Any = None
    ) -> None:
        self._t_start = time.perf_counter()
        self.prep = prepare(spec, solver_instance=solver_instance)
        t_build0 = time.perf_counter()
        self.allocator = build_allocator(self.prep, extensions)
        self.build_s = time.perf_counter() - t_build0
        prep = self.prep
        net, sc, cfg = prep.net, prep.scenario, prep.cfg
        interval_h = float(spec.scenario.interval_minutes) / 60.0
        self.mechanism = Mechanism(
            self.allocator,
            net,
            sc.node_tier,
            sc.tier_priority,
            prep.policy,
            cfg,
            sc.priority_rng(),
            interval_h=interval_h,
        )
        self.spec_hash = spec_hash(spec)
        alloc: Any = self.allocator
        self.manifest = build_manifest(
            spec.to_dict(),
            self.spec_hash,
            seed=prep.seed,
            policy=prep.policy.value,
            network=net.summary(),
            scenario=sc.describe(),
            extra={
                "rule": cfg.rule.value,
                "weight_form": cfg.weight_form.value,
                "weight_source": cfg.weight_source.value,
                "interval_hours": interval_h,
                "formulation": alloc.formulation,
                "engine": alloc.engine_kind,
                "solver": spec.solver.name,
                "qp_method": alloc.qp_method,
                "cost_model": "linear",
                "cost_model_note": "LP price per MW = c1 + c2*pmax (secant of the case's cost)",
                "lower_bounds_relaxed": (
                    "generator minimum outputs relaxed to 0 so X(t) is never empty"
                ),
                "ratings": net.ratings.describe(),
                "checks": [
                    c.value
                    for c in applicable_checks(
                        RunContext(policy=prep.policy.value, trigger_theta=cfg.trigger_theta)
                    )
                ],
                "mechanism_resolved": cfg.to_dict(),
                "intervals": prep.intervals,
            },
        )
        outputs = spec.outputs.tables() if hasattr(spec.outputs, "tables") else None
        self.tables: tuple[str, ...] = TABLE_NAMES if outputs is None else tuple(outputs)
        self.layout = TableLayout.of(net, sc.node_tier)
        self.n_scarce = self.n_executed = self.n_failed = 0
        self.solver_s = 0.0
        self.loop_s = 0.0

    def steps(self) -> Iterator[IntervalRecord]:
        """Run the intervals, yielding each one's record as soon as it is cleared.

        Raises
        ------
        SolverError
            When an interval ends without a verified feasible allocation.
        """
        prep = self.prep
        t_loop0 = time.perf_counter()
        for si in prep.scenario.iter_intervals(prep.intervals):
            inp = IntervalInput(si.t, np.asarray(si.demand_mw), np.asarray(si.available_mw))
            rec = self.mechanism.step(inp)
            if not rec.status.verified:
                raise SolverError(
                    f"interval {si.t}: no verified feasible allocation ({rec.status}); "
                    "the run is abandoned and nothing is written"
                )
            self.n_scarce += bool(rec.scarce)
            self.n_executed += bool(rec.executed)
            # kept a verified allocation, but some solve of the interval failed for good
            self.n_failed += rec.status is IntervalStatus.SOLVE_ERROR
            self.solver_s += float(rec.solve_s)
            yield IntervalRecord(rec, si.window)
            self.loop_s = time.perf_counter() - t_loop0

    def columns(self, record: IntervalRecord) -> dict[str, dict[str, Any]]:
        """The table rows of one record (the run directory's columns)."""
        return self.layout.columns(record)

    def manifest_updates(self) -> dict[str, Any]:
        """What the manifest learns at the end: timings, summary, solve-path counts."""
        n = self.prep.intervals
        alloc = self.allocator
        return {
            "timings": {
                "build_s": self.build_s,
                "loop_s": self.loop_s,
                "solver_s": self.solver_s,
                "total_s": time.perf_counter() - self._t_start,
                "per_interval_ms": 1000 * self.loop_s / max(n, 1),
            },
            "summary": {
                "intervals": n,
                "scarce": self.n_scarce,
                "executed": self.n_executed,
                "failed": self.n_failed,
                "retries": list(alloc.events[:100]),
                "n_retries": len(alloc.events),
                "final_memory_max": float(np.max(self.mechanism.memory, initial=0.0)),
            },
            "solve_paths": _solve_paths(alloc),
        }

    def progress_bar(self, show: bool | None) -> Any:
        """A tqdm bar over the intervals on stderr (``None``: when stderr is a terminal)."""
        if not (sys.stderr.isatty() if show is None else show):
            return None
        from tqdm import tqdm

        return tqdm(
            total=self.prep.intervals,
            desc=f"{self.prep.net.name} {self.prep.policy.value}",
            unit="int",
            file=sys.stderr,
            mininterval=0.5,
        )


#: ``spec`` loaded (a TOML path) or taken as is, with overrides (:func:`fpamm_opt.spec.as_spec`).
as_run_spec = as_spec


def with_solver(spec: RunSpec, solver: Any = None) -> tuple[RunSpec, Any]:
    """``spec`` with its solver chosen by a ``solver=`` argument, and the solver object if any.

    A name replaces ``solver.name``; a :class:`fpamm_opt.solvers.SolverSpec` also its time
    limit and options; a Pyomo solver object is returned to be used as given (its name is
    recorded). ``None`` keeps the spec's solver.
    """
    if solver is None:
        return spec, None
    from fpamm_opt.solvers import SolverSpec, as_solver_spec

    chosen = as_solver_spec(solver)
    changes: dict[str, Any] = {"name": chosen.name}
    if isinstance(solver, SolverSpec):
        changes.update(time_limit_s=chosen.time_limit_s, options=dict(chosen.options))
    return spec.replace(solver=dataclasses.replace(spec.solver, **changes)), chosen.instance


def _resolve(
    spec: RunSpec | str | Path,
    policy: str | None,
    seed: int | None,
    intervals: int | None,
    overrides: Iterable[str],
    solver: Any,
) -> tuple[RunSpec, Any]:
    resolved = resolve_run_spec(as_run_spec(spec, overrides), policy, seed, intervals)
    return with_solver(resolved, solver)


@dataclass(frozen=True)
class RunResult:
    """Where a run went and what it measured (a path-like: ``fpamm_opt.verify(result)``)."""

    run_dir: Path
    manifest: dict[str, Any]

    def __fspath__(self) -> str:
        return str(self.run_dir)


@dataclass(frozen=True, eq=False)
class SimulationResult(RunData):
    """A run kept in memory: the manifest and the tables of a run directory, as pandas.

    ``tables`` maps ``intervals``, ``nodes``, ``branches``, ``generators`` and
    ``iterations`` (those the spec's ``[outputs]`` enables) to data frames with exactly the
    columns and dtypes :func:`fpamm_opt.read_run` gives for the same run written to disk.
    It is a :class:`~fpamm_opt.verify.context.RunData`: ``fpamm_opt.verify(result)`` checks it.
    """

    @property
    def intervals(self) -> pd.DataFrame:
        """One row per interval."""
        return self.tables["intervals"]

    @property
    def nodes(self) -> pd.DataFrame:
        """One row per (interval, load node)."""
        return self.tables["nodes"]

    @property
    def branches(self) -> pd.DataFrame:
        """One row per (interval, branch)."""
        return self.tables["branches"]

    @property
    def generators(self) -> pd.DataFrame:
        """One row per (interval, generator)."""
        return self.tables["generators"]

    @property
    def iterations(self) -> pd.DataFrame:
        """One row per (interval, fixed-point iteration)."""
        return self.tables["iterations"]


def run(
    spec: RunSpec | str | Path,
    out_dir: Path | str,
    progress: bool | None = None,
    extensions: Sequence[Any] = (),
    overwrite: bool = False,
    on_step: Callable[[StepRecord], None] | None = None,
    *,
    policy: str | None = None,
    seed: int | None = None,
    intervals: int | None = None,
    overrides: Iterable[str] = (),
    solver: Any = None,
) -> RunResult:
    """Run one simulation and write its run directory (see the module docstring).

    Parameters
    ----------
    spec : RunSpec or path
        A loaded spec or a TOML file.
    out_dir : path
        The run directory to create (atomically: it exists only once complete).
    progress : bool, optional
        tqdm bar on stderr (default: when stderr is a terminal).
    extensions : sequence of callables ``f(model, net)``
        Added to the spec's own ``[[extensions]]``.
    overwrite : bool
        Replace an existing run directory.
    on_step : callable, optional
        Called with each interval's :class:`~fpamm_opt.mechanism.engine.StepRecord`.
    policy, seed, intervals : optional
        Override ``run.policy``, ``run.seed`` and the horizon ``run.intervals``.
    overrides : iterable of str
        ``section.key=value`` overrides, applied first (``--set``).
    solver : str, SolverSpec or Pyomo solver object, optional
        Replaces the spec's solver (:func:`with_solver`).

    Returns
    -------
    RunResult
    """
    spec, instance = _resolve(spec, policy, seed, intervals, overrides, solver)
    sim = Simulation(spec, extensions, instance)
    # Only now, with everything validated and built, touch the file system.
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(out_dir.parent)
    writer_kw: dict[str, Any] = {
        "flush_every": spec.run.flush_every,
        "overwrite": overwrite,
        "tables": sim.tables,
    }
    bar = sim.progress_bar(progress)
    from fpamm_opt.sim.signals import terminate_as_interrupt

    with (
        terminate_as_interrupt(),
        RunWriter(out_dir, sim.spec_hash, sim.manifest, **writer_kw) as w,
    ):
        for record in sim.steps():
            w.add_interval(sim.columns(record))
            if on_step is not None:
                on_step(record.step)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        final = w.close(sim.manifest_updates())
    from fpamm_opt.io.reader import read_manifest

    return RunResult(Path(final), read_manifest(final))


def simulate(
    spec: RunSpec | str | Path,
    policy: str | None = None,
    seed: int | None = None,
    intervals: int | None = None,
    overrides: Iterable[str] = (),
    solver: Any = None,
    *,
    extensions: Sequence[Any] = (),
    progress: bool = False,
) -> SimulationResult:
    """Run one simulation in memory and return its tables as pandas (nothing is written).

    The same run as :func:`run` (same records, same conversion to tables), kept in memory.

    Parameters
    ----------
    spec : RunSpec or path
        A loaded spec or a TOML file.
    policy, seed, intervals : optional
        Override ``run.policy`` (``fpamm``, ``equal``, ``lmp``), ``run.seed`` and the horizon.
    overrides : iterable of str
        ``section.key=value`` overrides, applied first.
    solver : str, SolverSpec or Pyomo solver object, optional
        Replaces the spec's solver (:func:`with_solver`).
    extensions : sequence of callables ``f(model, net)``
        Added to the spec's own ``[[extensions]]``.
    progress : bool
        tqdm bar on stderr.

    Returns
    -------
    SimulationResult
        ``.tables`` (``intervals``, ``nodes``, ``branches``, ``generators``, ``iterations``)
        and ``.manifest``.
    """
    spec, instance = _resolve(spec, policy, seed, intervals, overrides, solver)
    sim = Simulation(spec, extensions, instance)
    t0 = time.perf_counter()
    store = MemoryTables(sim.spec_hash, sim.tables, flush_every=spec.run.flush_every)
    bar = sim.progress_bar(progress)
    for record in sim.steps():
        store.add_interval(sim.columns(record))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    frames = store.frames()
    manifest = complete_manifest(
        sim.manifest,
        sim.manifest_updates(),
        spec_hash=sim.spec_hash,
        n_intervals=store.n_intervals,
        tables=store.table_info(),
        write_s=time.perf_counter() - t0,
    )
    return SimulationResult(manifest=to_jsonable(manifest), tables=frames)
