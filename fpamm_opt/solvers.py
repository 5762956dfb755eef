"""The solver layer: the only module that imports Pyomo's solver interfaces.

Two adapters behind one small contract (:class:`ModelSolver`):

- :class:`PersistentHighs`: ``pyomo.contrib.solver`` HiGHS, persistent. The model is handed
  over once (``set_instance``); between solves only mutable parameters change and the adapter
  pushes them with ``update_parameters`` (the other automatic checks are switched off, which
  is what makes it fast). Accepts quadratic objectives.
- :class:`GenericSolver`: any solver Pyomo knows by name (``glpk``, ``cbc``, ``scip``,
  ``gurobi``, ``cplex``, ``ipopt``, ...), through the classic ``SolverFactory``; the model is
  written out at every solve.

A ``solver=`` argument of the public API (:func:`fpamm_opt.solve_dcopf`,
:func:`fpamm_opt.simulate`, :func:`fpamm_opt.run`) is turned into a :class:`SolverSpec` by
:func:`as_solver_spec`: a name, a :class:`SolverSpec`, or a Pyomo solver object of the
user's (``pyo.SolverFactory("appsi_highs")``, ``pyo.SolverFactory("highs")``,
``pyomo.contrib.solver`` HiGHS, ``pyo.SolverFactory("gurobi")``, ...). An object is used as
given (its own options stay; :attr:`SolverSpec.time_limit_s` and ``options`` are set on top):
a HiGHS object of ``pyomo.contrib.solver`` (which is what ``pyo.SolverFactory("highs")``
returns) is driven persistently by :class:`PersistentHighs`, any other object with the
classic interface by :class:`GenericSolver`.

Termination (what the solver said, its own word) is kept apart from the solution status
(:class:`~fpamm_opt.mechanism.types.SolveStatus`, what we may use).
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyomo.environ as pyo

from fpamm_opt.errors import InputError, SolverUnavailableError
from fpamm_opt.mechanism.types import SolveStatus

#: Name of the default solver (persistent HiGHS through ``pyomo.contrib.solver``).
DEFAULT_SOLVER = "highs"

# Time-limit option name per classic solver.
_TIME_LIMIT_OPTION = {
    "glpk": "tmlim",
    "cbc": "sec",
    "scip": "limits/time",
    "gurobi": "TimeLimit",
    "gurobi_direct": "TimeLimit",
    "gurobi_persistent": "TimeLimit",
    "cplex": "timelimit",
    "ipopt": "max_cpu_time",
    "appsi_highs": "time_limit",
}

logging.getLogger("pyomo.core").setLevel(logging.ERROR)
logging.getLogger("pyomo.solvers").setLevel(logging.ERROR)
logging.getLogger("pyomo.opt").setLevel(logging.ERROR)


@dataclass(frozen=True)
class SolverSpec:
    """Which solver to use and how.

    Attributes
    ----------
    name : str
        A solver Pyomo knows (``highs``: persistent HiGHS, the default); with ``instance``,
        the object's name (recorded in the run manifest).
    time_limit_s : float
        Per solve (s).
    options : dict
        Solver options, set on top of the solver's defaults (or the object's own).
    instance : object, optional
        A Pyomo solver object of the user's, used instead of one made from ``name``
        (see :func:`as_solver_spec`). Such a spec is solved through Pyomo, never by the
        ``highs`` fast path, which drives ``highspy`` itself.
    """

    name: str = DEFAULT_SOLVER
    time_limit_s: float = 10.0
    options: dict[str, Any] = field(default_factory=dict)
    instance: Any = field(default=None, compare=False, repr=False)


#: What a ``solver=`` argument takes: a solver name, a :class:`SolverSpec` or a Pyomo solver
#: object (anything with ``solve`` and ``available``; see :func:`as_solver_spec`).
SolverLike = str | SolverSpec | object


def is_solver_object(obj: object) -> bool:
    """True when ``obj`` looks like a Pyomo solver object (``solve`` and ``available``)."""
    return not isinstance(obj, str | SolverSpec) and all(
        callable(getattr(obj, a, None)) for a in ("solve", "available")
    )


def solver_object_name(obj: object) -> str:
    """The name of a Pyomo solver object (``highs``, ``glpk``, ``appsi_highs``, ...)."""
    name = getattr(obj, "name", None)
    if isinstance(name, str) and name:
        return name
    for cls in type(obj).__mro__:
        if cls.__module__.startswith("pyomo.contrib.appsi.solvers"):
            return f"appsi_{cls.__name__.lower()}"
    return type(obj).__name__.lower()


def as_solver_spec(
    solver: SolverLike | None = None,
    time_limit_s: float | None = None,
    options: dict[str, Any] | None = None,
) -> SolverSpec:
    """The :class:`SolverSpec` of a ``solver=`` argument.

    Parameters
    ----------
    solver : str, SolverSpec or Pyomo solver object, optional
        ``None``: persistent HiGHS. A name: any solver Pyomo knows (``highs``,
        ``appsi_highs``, ``glpk``, ``cbc``, ``gurobi``, ...). An object: used as given, e.g.
        ``pyo.SolverFactory("appsi_highs")`` or ``pyo.SolverFactory("gurobi")`` with the
        options already set.
    time_limit_s, options : optional
        Replace the spec's time limit and options (a :class:`SolverSpec` keeps its own).

    Raises
    ------
    InputError
        When ``solver`` is none of these.
    """
    if isinstance(solver, SolverSpec):
        return solver
    kw: dict[str, Any] = {}
    if time_limit_s is not None:
        kw["time_limit_s"] = float(time_limit_s)
    if options is not None:
        kw["options"] = dict(options)
    if solver is None:
        return SolverSpec(**kw)
    if isinstance(solver, str):
        if not solver.strip():
            raise InputError("solver: the name is empty")
        return SolverSpec(name=solver.strip(), **kw)
    if not is_solver_object(solver):
        raise InputError(
            f"solver: expected a name, a SolverSpec or a Pyomo solver object, "
            f"got {type(solver).__name__}"
        )
    return SolverSpec(name=solver_object_name(solver), instance=solver, **kw)


@dataclass(frozen=True)
class SolveResult:
    """Outcome of one solve: termination word, usable status, objective, time."""

    termination: str
    status: SolveStatus
    objective: float
    solve_s: float
    message: str = ""


class ModelSolver(Protocol):
    """What the problem layer needs from a solver."""

    name: str
    supports_duals: bool

    def set_objective(self, obj: pyo.Objective) -> None: ...

    def solve(self) -> SolveResult: ...

    def duals(self, cons: list[Any]) -> list[float]: ...


def _is_highs(name: str) -> bool:
    return name.lower() in ("highs", "highs_persistent")


def solver_available(name: str) -> bool:
    """True when Pyomo can run ``name`` on this machine."""
    try:
        if _is_highs(name):
            from pyomo.contrib.solver.solvers.highs import Highs

            return bool(Highs().available())
        with _quiet():
            opt = pyo.SolverFactory(name)
            return bool(opt is not None and opt.available(exception_flag=False))
    except Exception:
        return False


def _object_available(obj: Any) -> bool:
    try:
        try:
            return bool(obj.available(exception_flag=False))
        except TypeError:  # pyomo.contrib.solver objects take no exception_flag
            return bool(obj.available())
    except Exception:
        return False


def require_solver(solver: str | SolverSpec) -> None:
    """Raise :class:`SolverUnavailableError` naming the solver when it cannot be used."""
    spec = as_solver_spec(solver)
    ok = solver_available(spec.name) if spec.instance is None else _object_available(spec.instance)
    if not ok:
        raise SolverUnavailableError(
            f"solver {spec.name!r} is not available (not installed or not known to Pyomo)"
        )


def _contrib_highs(obj: Any) -> bool:
    """True for a ``pyomo.contrib.solver`` HiGHS object (or its classic-interface wrapper)."""
    from pyomo.contrib.solver.solvers.highs import Highs

    return isinstance(obj, Highs)


def _check_instance(obj: Any) -> None:
    from pyomo.contrib.solver.common.base import LegacySolverWrapper, SolverBase

    if isinstance(obj, SolverBase) and not isinstance(obj, LegacySolverWrapper):
        if not _contrib_highs(obj):
            raise InputError(
                f"solver: {type(obj).__name__} objects of pyomo.contrib.solver are not "
                "supported (HiGHS is); pass pyo.SolverFactory(name) instead"
            )


def make_solver(model: pyo.Block, spec: SolverSpec) -> ModelSolver:
    """A solver adapter bound to ``model`` (which must be fully built, extensions included)."""
    require_solver(spec)
    if spec.instance is not None:
        _check_instance(spec.instance)
        if _contrib_highs(spec.instance):
            return PersistentHighs(model, spec)
        return GenericSolver(model, spec)
    if _is_highs(spec.name):
        return PersistentHighs(model, spec)
    return GenericSolver(model, spec)


@contextlib.contextmanager
def _quiet():
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        yield


class PersistentHighs:
    """Persistent HiGHS through ``pyomo.contrib.solver`` (see module docstring).

    ``spec.instance``, when given, is the HiGHS object to drive (a ``pyomo.contrib.solver``
    HiGHS or ``pyo.SolverFactory("highs")``); it is bound to ``model`` and configured for
    parameter-only updates.
    """

    supports_duals = True

    def __init__(self, model: pyo.Block, spec: SolverSpec) -> None:
        from pyomo.contrib.solver.solvers.highs import Highs

        self.name = "highs"
        self._model = model
        self._spec = spec
        self._opt = spec.instance if spec.instance is not None else Highs()
        # The classic-interface wrapper's own ``solve`` returns classic results: call HiGHS's.
        self._solve = functools.partial(Highs.solve, self._opt)
        au = self._opt.config.auto_updates
        au.check_for_new_or_removed_constraints = False
        au.check_for_new_or_removed_vars = False
        au.check_for_new_or_removed_params = False
        au.check_for_new_objective = False
        au.update_constraints = False
        au.update_vars = False
        au.update_named_expressions = False
        au.update_objective = False
        au.update_parameters = True
        self._opt.config.load_solutions = False
        self._opt.config.raise_exception_on_nonoptimal_result = False
        # HiGHS wants ``threads`` fixed before its first run in a process: always 1 here
        # (a run is sequential; parallelism is across runs, in separate processes).
        self._opt.config.threads = 1
        self._opt.config.time_limit = spec.time_limit_s
        self._opt.config.solver_options.update({"output_flag": False, **spec.options})
        self._opt.set_instance(model)
        self._opt._solver_model.setOptionValue("output_flag", False)
        self._results: Any = None

    def set_objective(self, obj: pyo.Objective) -> None:
        self._opt.set_objective(obj)
        # pyomo.contrib.solver HiGHS (6.10) does not clear the Hessian when the new objective
        # is linear, so a QP -> LP switch would silently keep the old quadratic terms.
        if obj.expr.polynomial_degree() is not None and obj.expr.polynomial_degree() <= 1:
            self._clear_hessian()

    def _clear_hessian(self) -> None:
        import highspy
        import numpy as np

        h = self._opt._solver_model
        dim = h.getNumCol()
        h.passHessian(
            dim,
            0,
            highspy.HessianFormat.kTriangular,
            np.zeros(dim, dtype=np.int32),
            np.zeros(0, dtype=np.int32),
            np.zeros(0, dtype=np.double),
        )

    def solve(self) -> SolveResult:
        from pyomo.contrib.solver.common.results import SolutionStatus, TerminationCondition

        # HiGHS compares time_limit with the cumulative run time of the Highs object (HiGHS
        # issues #1331, #1477): a persistent model would time out after time_limit seconds
        # in total. Same fix as HiGHS.jl: limit = run time so far + the per-solve limit.
        self._opt.config.time_limit = self._opt._solver_model.getRunTime() + self._spec.time_limit_s
        t0 = time.perf_counter()
        try:
            res = self._solve(self._model)
        except Exception as exc:  # HiGHS "Solve error" and friends
            return SolveResult(
                "error",
                SolveStatus.ERROR,
                float("nan"),
                time.perf_counter() - t0,
                str(exc).splitlines()[0],
            )
        dt = time.perf_counter() - t0
        self._results = res
        tc = res.termination_condition
        word = tc.name
        if res.solution_status == SolutionStatus.optimal:
            res.solution_loader.load_vars()
            obj = res.incumbent_objective
            return SolveResult(
                word, SolveStatus.OPTIMAL, float(obj if obj is not None else 0.0), dt
            )
        if tc in (
            TerminationCondition.provenInfeasible,
            TerminationCondition.locallyInfeasible,
            TerminationCondition.infeasibleOrUnbounded,
        ):
            return SolveResult(word, SolveStatus.INFEASIBLE, float("nan"), dt)
        if tc == TerminationCondition.maxTimeLimit:
            return SolveResult(word, SolveStatus.TIME_LIMIT, float("nan"), dt)
        return SolveResult(
            word,
            SolveStatus.ERROR,
            float("nan"),
            dt,
            f"HiGHS: {word}, solution status {res.solution_status.name}",
        )

    def duals(self, cons: list[Any]) -> list[float]:
        d = self._results.solution_loader.get_duals(cons)
        return [float(d[c]) for c in cons]


class GenericSolver:
    """Any solver known to Pyomo's ``SolverFactory``; the model is rewritten each solve."""

    def __init__(self, model: pyo.Block, spec: SolverSpec) -> None:
        from pyomo.opt.base.solvers import OptSolver

        self.name = spec.name
        self._model = model
        self._spec = spec
        if spec.instance is not None:
            self._opt = spec.instance
        else:
            with _quiet():
                self._opt = pyo.SolverFactory(spec.name)
        # Only the classic shell interfaces write a log (APPSI's ``logfile`` is not implemented).
        self._logs = isinstance(self._opt, OptSolver)
        opt_name = _TIME_LIMIT_OPTION.get(spec.name)
        if spec.instance is not None and opt_name in self._opt.options:
            opt_name = None  # the user's object keeps its own time limit
        if opt_name is not None and spec.time_limit_s:
            # GLPK and CBC want whole seconds.
            limit = spec.time_limit_s
            self._opt.options[opt_name] = (
                max(1, int(-(-limit // 1))) if spec.name in ("glpk", "cbc") else limit
            )
        for k, v in spec.options.items():
            self._opt.options[k] = v
        if not hasattr(model, "dual"):
            model.dual = pyo.Suffix(direction=pyo.Suffix.IMPORT)
        # Quadratic-capable solvers report duals; LP-only ones too. Mixed-integer never here.
        self.supports_duals = True

    def set_objective(self, obj: pyo.Objective) -> None:
        for o in self._model.component_data_objects(pyo.Objective, active=True):
            o.deactivate()
        obj.activate()

    def solve(self) -> SolveResult:
        import tempfile
        from pathlib import Path

        from pyomo.opt import SolutionStatus, TerminationCondition

        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            log = Path(tmp) / "solver.log"
            kw: dict[str, Any] = {"logfile": str(log)} if self._logs else {}
            try:
                with _quiet():
                    res = self._opt.solve(self._model, load_solutions=False, tee=False, **kw)
            except Exception as exc:
                return SolveResult(
                    "error",
                    SolveStatus.ERROR,
                    float("nan"),
                    time.perf_counter() - t0,
                    str(exc).splitlines()[0][:200],
                )
            log_text = log.read_text(errors="replace") if log.exists() else ""
        dt = time.perf_counter() - t0
        tc = res.solver.termination_condition
        word = str(tc)
        # GLPK 5 prints this for an infeasible LP; Pyomo's parser reports "other" (or
        # "unbounded" without presolve), so read the log.
        if "NO PRIMAL FEASIBLE SOLUTION" in log_text.upper() and tc in (
            TerminationCondition.other,
            TerminationCondition.unbounded,
            TerminationCondition.unknown,
            TerminationCondition.error,
        ):
            return SolveResult(
                word,
                SolveStatus.INFEASIBLE,
                float("nan"),
                dt,
                "solver log: no primal feasible solution",
            )
        if tc == TerminationCondition.optimal or (
            len(res.solution) > 0 and res.solution(0).status == SolutionStatus.optimal
        ):
            self._model.solutions.load_from(res)
            obj = next(self._model.component_data_objects(pyo.Objective, active=True))
            return SolveResult(word, SolveStatus.OPTIMAL, float(pyo.value(obj)), dt)
        if tc in (TerminationCondition.infeasible, TerminationCondition.infeasibleOrUnbounded):
            return SolveResult(word, SolveStatus.INFEASIBLE, float("nan"), dt)
        if tc == TerminationCondition.maxTimeLimit:
            return SolveResult(word, SolveStatus.TIME_LIMIT, float("nan"), dt)
        return SolveResult(word, SolveStatus.ERROR, float("nan"), dt, f"termination {word}")

    def duals(self, cons: list[Any]) -> list[float]:
        return [float(self._model.dual.get(c, float("nan"))) for c in cons]
