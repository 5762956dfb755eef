"""The fast path: the per-interval Pyomo model compiled once and driven in place by ``highspy``.

Role
----
:class:`HighsEngine` is the ``engine="highs"`` of :mod:`fpamm_opt.problem`. It walks the
*same* Pyomo model the Pyomo engine solves (DC-OPF block, allocation block and every user
extension) once, turns it into sparse arrays (:func:`compile_model`), loads them into a
``highspy`` instance and from then on only changes numbers in place: column bounds, costs,
row bounds, single matrix coefficients and the Hessian. HiGHS keeps its basis across those
changes, so consecutive LPs of an interval (and of consecutive intervals) are hot-started.

What changes between solves, and where it lives in HiGHS
--------------------------------------------------------
=======================  ==============================================================
``set_served_bounds``    bounds of the ``pl`` columns (``pl_lo``, ``pl_hi``)
``set_gen_bounds``       bounds of the ``pg`` columns (``pg_min``, ``pg_max``)
``set_level``            coefficient of ``level`` in row ``ineq_level[i]`` and its lower
                         bound (``level_coef``, ``level_rhs``)
``set_tier_total``       coefficients of ``pl`` in row ``ineq_tier_total`` and its lower
                         bound (``tier_member``, ``tier_min_served``)
``set_objective``        column costs; QP rule: diagonal Hessian ``q_served`` on ``pl``;
                         case cost: the compiled ``obj_case`` (Hessian, costs, offset)
=======================  ==============================================================

The setters only write the *target* numbers (NumPy arrays, plus a change counter per kind);
at :meth:`HighsEngine.solve` the HiGHS instance that will run catches up, sending only the
entries that differ from what it holds, with the vectorised ``changeColsBounds`` /
``changeColsCost`` / ``changeRowsBounds`` calls (``changeCoeff`` one by one).

LPs and QPs run on two instances of the same compiled model (see :class:`HighsEngine`):
the LP one stays hot across a QP in between and never holds a Hessian, so no QP -> LP switch
has to clear one (the bug worked around in :mod:`fpamm_opt.solvers`).

Robustness (all recorded in ``LPSolution.message``): a non-optimal hot solve is retried cold,
then without presolve (LP), or with other QP regularisations (QP); HiGHS's ``time_limit`` is
cumulative over an instance's life, so it is moved forward before each run.

Extensions whose constraints (or variable bounds) involve mutable parameters are supported
too: their rows are re-evaluated before each solve (then the setters also write the Pyomo
parameters, which costs Python time). ``engine="auto"`` still prefers the Pyomo engine for
them (:func:`fpamm_opt.problem.extension_is_static`). A variable fixed *after* the engine is
built, or a constraint added or deactivated later, is not seen: build a new problem.

Duals are HiGHS's ``row_dual`` of rows written exactly as Pyomo's HiGHS interface writes them
(``con.body`` coefficients, bounds minus the body constant), so their signs are those of the
Pyomo engine.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import highspy
import numpy as np
import pyomo.environ as pyo
from pyomo.core.expr.visitor import identify_mutable_parameters
from pyomo.repn import generate_standard_repn

from fpamm_opt.blocks.dcopf import Formulation
from fpamm_opt.engine import EngineKind, LPSolution
from fpamm_opt.errors import InputError
from fpamm_opt.lazyflow import FlowCheck, FlowMonitor, FlowRow
from fpamm_opt.mechanism.types import SolveStatus
from fpamm_opt.network import NetworkData
from fpamm_opt.solvers import SolverSpec

_INF = math.inf
_NATIVE = (int, float)
_MS = highspy.HighsModelStatus

# ``highspy.Highs`` wraps the core class with Python callbacks (and prints a banner when it is
# created); the bare core class is silent and has no per-call callback overhead.
_HighsClass: Any = getattr(highspy, "_Highs", highspy.Highs)

#: ``qp_regularization_value`` of QP solves: the first is used, the others are tried (cold)
#: when HiGHS's QP solver fails. 0 failed least often on congested case57 allocations.
QP_REGULARIZATION: tuple[float, ...] = (0.0, 1e-9, 1e-7)

#: HiGHS defaults of the options a retry changes (restored afterwards).
_DEFAULT_OPTION: dict[str, Any] = {
    "presolve": "choose",
    "qp_regularization_value": 1e-7,
}


def _mutable(expr: Any) -> bool:
    """True when ``expr`` (a number, a parameter or an expression) involves a mutable Param."""
    if expr is None or isinstance(expr, _NATIVE):
        return False
    return any(True for _ in identify_mutable_parameters(expr))


def _num(expr: Any, default: float) -> float:
    return default if expr is None else float(pyo.value(expr))


@dataclass
class _DynamicRow:
    """A row whose coefficients or bounds depend on mutable parameters (re-evaluated)."""

    row: int
    con: Any
    coefs: list[tuple[int, Any]]  #: (column, coefficient expression)
    constant: Any  #: body constant (expression or number)


@dataclass
class CompiledModel:
    """The linear part of a Pyomo model as arrays (rows in CSR form).

    ``row_lb``/``row_ub`` already have the body constant of each row subtracted, as Pyomo's
    HiGHS interface does.
    """

    col_lb: np.ndarray
    col_ub: np.ndarray
    col_integer: np.ndarray
    row_lb: np.ndarray
    row_ub: np.ndarray
    row_const: np.ndarray
    a_start: np.ndarray
    a_index: np.ndarray
    a_value: np.ndarray
    col_of: dict[int, int]  #: id(VarData) -> column
    row_of: dict[int, int]  #: id(ConstraintData) -> row
    variables: list[Any]
    dynamic_rows: list[_DynamicRow] = field(default_factory=list)
    dynamic_cols: list[tuple[int, Any]] = field(default_factory=list)

    @property
    def n_col(self) -> int:
        return int(self.col_lb.shape[0])

    @property
    def n_row(self) -> int:
        return int(self.row_lb.shape[0])

    @property
    def nnz(self) -> int:
        return int(self.a_value.shape[0])

    def a_coef(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Compiled coefficients ``A[rows[k], cols[k]]`` (0 where there is no entry)."""
        out = np.zeros(len(rows))
        for k, (r, c) in enumerate(zip(np.asarray(rows).tolist(), np.asarray(cols).tolist())):
            lo, hi = int(self.a_start[r]), int(self.a_start[r + 1])
            hit = np.flatnonzero(self.a_index[lo:hi] == c)
            if hit.size:
                out[k] = self.a_value[lo + hit[0]]
        return out


class _RowBuilder:
    """Accumulates compiled rows in CSR form and the columns they use (see
    :func:`compile_model`)."""

    def __init__(self, skip_rows: set[int]) -> None:
        self.skip_rows = skip_rows
        self.variables: list[Any] = []
        self.col_of: dict[int, int] = {}
        self.row_of: dict[int, int] = {}
        self.starts: list[int] = []
        self.index: list[int] = []
        self.value: list[float] = []
        self.lbs: list[float] = []
        self.ubs: list[float] = []
        self.consts: list[float] = []
        self.dynamic_rows: list[_DynamicRow] = []

    def col(self, v: Any) -> int:
        """Column of variable ``v`` (a new one at its first use)."""
        k = id(v)
        j = self.col_of.get(k)
        if j is None:
            j = self.col_of[k] = len(self.variables)
            self.variables.append(v)
        return j

    def add(self, con: Any) -> None:
        """Row of ``con``: ``lb - c0 <= Σ a_j x_j <= ub - c0`` with ``c0`` the body constant."""
        repn = generate_standard_repn(con.body, compute_values=False, quadratic=False)
        if repn.nonlinear_expr is not None or repn.quadratic_vars:
            raise InputError(f"constraint {con.name!r} is not linear; the fast path needs LPs")
        track = id(con) not in self.skip_rows
        mut: list[tuple[int, Any]] = []
        self.starts.append(len(self.value))
        for coef, v in zip(repn.linear_coefs, repn.linear_vars):
            j = self.col(v)
            if isinstance(coef, _NATIVE):
                c = float(coef)
            else:
                c = float(pyo.value(coef))
                if track and _mutable(coef):
                    mut.append((j, coef))
            if c != 0.0:
                self.index.append(j)
                self.value.append(c)
        const = repn.constant
        c0 = float(pyo.value(const))
        self.lbs.append(_num(con.lower, -_INF) - c0 if con.has_lb() else -_INF)
        self.ubs.append(_num(con.upper, _INF) - c0 if con.has_ub() else _INF)
        self.consts.append(c0)
        r = len(self.row_of)
        self.row_of[id(con)] = r
        if track and (mut or _mutable(const) or _mutable(con.lower) or _mutable(con.upper)):
            self.dynamic_rows.append(_DynamicRow(r, con, mut, const))


def _column_arrays(
    variables: list[Any], skip_cols: set[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[int, Any]]]:
    """Bounds, integrality and the dynamic columns (bounds with mutable parameters)."""
    n = len(variables)
    col_lb = np.empty(n)
    col_ub = np.empty(n)
    col_int = np.zeros(n, dtype=bool)
    dynamic_cols: list[tuple[int, Any]] = []
    for j, v in enumerate(variables):
        if v.fixed:
            col_lb[j] = col_ub[j] = float(v.value)
        else:
            col_lb[j] = -_INF if v.lb is None else float(v.lb)
            col_ub[j] = _INF if v.ub is None else float(v.ub)
            if id(v) not in skip_cols and (_mutable(v.lower) or _mutable(v.upper)):
                dynamic_cols.append((j, v))
        col_int[j] = bool(v.is_integer())
    return col_lb, col_ub, col_int, dynamic_cols


def compile_model(
    m: pyo.Block,
    static_rows: Iterable[Any] = (),
    static_cols: Iterable[Any] = (),
) -> CompiledModel:
    """Compile every active constraint of ``m`` into sparse rows, one column per variable.

    Parameters
    ----------
    m : Block
        The model (all active constraints, in ``component_data_objects`` order, the order
        Pyomo's HiGHS interface uses).
    static_rows, static_cols : iterables of ConstraintData / VarData
        Rows and columns whose mutable numbers the caller pushes itself; every *other* row or
        column that involves a mutable parameter is recorded as dynamic.

    Fixed variables become columns with ``lb = ub = value`` (they are unfixed while their
    rows are compiled, then fixed again).

    Raises
    ------
    InputError
        A constraint is not linear.
    """
    rb = _RowBuilder({id(c) for c in static_rows})
    fixed = [
        v for v in m.component_data_objects(pyo.Var, active=True, descend_into=True) if v.fixed
    ]
    for v in fixed:
        v.unfix()
    try:
        for con in m.component_data_objects(pyo.Constraint, active=True, descend_into=True):
            rb.add(con)
    finally:
        for v in fixed:
            v.fix()
    # Variables no active constraint uses (objective-only, or unused) still get a column.
    for v in m.component_data_objects(pyo.Var, active=True, descend_into=True):
        rb.col(v)
    col_lb, col_ub, col_int, dynamic_cols = _column_arrays(
        rb.variables, {id(v) for v in static_cols}
    )
    rb.starts.append(len(rb.value))
    return CompiledModel(
        col_lb=col_lb,
        col_ub=col_ub,
        col_integer=col_int,
        row_lb=np.asarray(rb.lbs, dtype=float),
        row_ub=np.asarray(rb.ubs, dtype=float),
        row_const=np.asarray(rb.consts, dtype=float),
        a_start=np.asarray(rb.starts, dtype=np.int32),
        a_index=np.asarray(rb.index, dtype=np.int32),
        a_value=np.asarray(rb.value, dtype=float),
        col_of=rb.col_of,
        row_of=rb.row_of,
        variables=rb.variables,
        dynamic_rows=rb.dynamic_rows,
        dynamic_cols=dynamic_cols,
    )


def _status(ms: Any) -> SolveStatus:
    if ms == _MS.kOptimal:
        return SolveStatus.OPTIMAL
    if ms in (_MS.kInfeasible, _MS.kUnboundedOrInfeasible):
        return SolveStatus.INFEASIBLE
    if ms == _MS.kTimeLimit:
        return SolveStatus.TIME_LIMIT
    return SolveStatus.ERROR


#: Hessian entries ``(row, col, value)`` with ``row >= col`` (lower triangle), column space.
_Hess = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass
class _Target:
    """The numbers the next solve must see (unscaled); each HiGHS instance catches up."""

    lb: np.ndarray
    ub: np.ndarray
    rlb: np.ndarray
    rub: np.ndarray
    cost: np.ndarray
    level_coef: np.ndarray
    tier_coef: np.ndarray
    offset: float = 0.0
    #: lower-triangular Hessian entries (row, col, value) in column space, None = LP
    hess: _Hess | None = None
    hess_version: int = 0
    dyn_coef: dict[tuple[int, int], float] = field(default_factory=dict)
    #: change counters per kind (_COLS, _ROWS, _COST, _LEVEL, _TIER, _DYN): an instance
    #: compares arrays only for the kinds touched since it last caught up
    ver: list[int] = field(default_factory=lambda: [0] * 6)


_COLS, _ROWS, _COST, _LEVEL, _TIER, _DYN = range(6)


class _Instance:
    """One ``highspy`` instance loaded with the compiled model, and what it holds now."""

    def __init__(
        self,
        cm: CompiledModel,
        scale: np.ndarray,
        options: dict[str, Any],
        level: tuple[np.ndarray, int],
        tier: tuple[int, np.ndarray],
        target: _Target,
    ) -> None:
        h = _HighsClass()
        for k, v in options.items():
            if h.setOptionValue(k, v) == highspy.HighsStatus.kError:
                raise InputError(f"HiGHS rejected option {k}={v!r}")
        n = cm.n_col
        empty_i = np.zeros(0, dtype=np.int32)
        h.addCols(
            n, np.zeros(n), cm.col_lb / scale, cm.col_ub / scale, 0, empty_i, empty_i, np.zeros(0)
        )
        h.addRows(
            cm.n_row,
            cm.row_lb,
            cm.row_ub,
            cm.nnz,
            cm.a_start[:-1],
            cm.a_index,
            cm.a_value * scale[cm.a_index],
        )
        if cm.col_integer.any():
            idx = np.flatnonzero(cm.col_integer).astype(np.int32)
            h.changeColsIntegrality(idx.size, idx, np.full(idx.size, highspy.HighsVarType.kInteger))
        h.changeObjectiveSense(highspy.ObjSense.kMinimize)
        self.h = h
        self.options = options
        self.s = scale
        self.level_rows, self.level_col = level
        self.tier_row, self.tier_cols = tier
        self.lb = cm.col_lb.copy()
        self.ub = cm.col_ub.copy()
        self.rlb = cm.row_lb.copy()
        self.rub = cm.row_ub.copy()
        self.cost = np.zeros(n)
        self.offset = 0.0
        # the coefficients just loaded (the compiled ones, whatever the target says now)
        self.level_coef = cm.a_coef(self.level_rows, np.full(self.level_rows.size, self.level_col))
        self.tier_coef = cm.a_coef(np.full(self.tier_cols.size, self.tier_row), self.tier_cols)
        self.hess_version = -1
        self.has_hess = False
        self.seen = [-1] * 6
        self.dyn_coef: dict[tuple[int, int], float] = {}
        #: version and row index of each lazy flow row this instance holds
        self.lazy_version: list[int] = []
        self.lazy_row: list[int] = []
        #: epigraph columns of the tangent cost form (:class:`_TangentCost`), if attached
        self.tangent_z: np.ndarray | None = None
        self.tangent_rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def catch_up(self, t: _Target) -> None:
        """Push every number of ``t`` that differs from what HiGHS holds (vectorised)."""
        h, s, seen, ver = self.h, self.s, self.seen, t.ver
        if seen[_COLS] != ver[_COLS]:
            ch = np.flatnonzero((self.lb != t.lb) | (self.ub != t.ub))
            if ch.size:
                idx = ch.astype(np.int32)
                h.changeColsBounds(idx.size, idx, t.lb[ch] / s[ch], t.ub[ch] / s[ch])
                self.lb[ch] = t.lb[ch]
                self.ub[ch] = t.ub[ch]
        if seen[_ROWS] != ver[_ROWS]:
            ch = np.flatnonzero((self.rlb != t.rlb) | (self.rub != t.rub))
            if ch.size:
                idx = ch.astype(np.int32)
                h.changeRowsBounds(idx.size, idx, t.rlb[ch], t.rub[ch])
                self.rlb[ch] = t.rlb[ch]
                self.rub[ch] = t.rub[ch]
        if seen[_COST] != ver[_COST]:
            ch = np.flatnonzero(self.cost != t.cost)
            if ch.size:
                idx = ch.astype(np.int32)
                h.changeColsCost(idx.size, idx, t.cost[ch] * s[ch])
                self.cost[ch] = t.cost[ch]
            if self.offset != t.offset:
                h.changeObjectiveOffset(t.offset)
                self.offset = t.offset
        # Single coefficients (no vectorised call in highspy). A zero removes the entry and
        # a later non-zero puts it back.
        if seen[_LEVEL] != ver[_LEVEL]:
            ch = np.flatnonzero(self.level_coef != t.level_coef)
            if ch.size:
                col, sc = self.level_col, float(s[self.level_col])
                for r, c in zip(self.level_rows[ch].tolist(), t.level_coef[ch].tolist()):
                    h.changeCoeff(r, col, c * sc)
                self.level_coef[ch] = t.level_coef[ch]
        if seen[_TIER] != ver[_TIER]:
            ch = np.flatnonzero(self.tier_coef != t.tier_coef)
            if ch.size:
                row = self.tier_row
                for k, c in zip(self.tier_cols[ch].tolist(), t.tier_coef[ch].tolist()):
                    h.changeCoeff(row, k, c * float(s[k]))
                self.tier_coef[ch] = t.tier_coef[ch]
        if seen[_DYN] != ver[_DYN]:
            for (r, k), c in t.dyn_coef.items():
                if self.dyn_coef.get((r, k)) != c:
                    h.changeCoeff(r, k, c * float(s[k]))
                    self.dyn_coef[(r, k)] = c
        seen[:] = ver
        if self.hess_version != t.hess_version:
            # An LP instance never gets an (empty) Hessian: that would be a model change.
            if t.hess is not None or self.has_hess:
                self._pass_hessian(t.hess)
                self.has_hess = t.hess is not None
            self.hess_version = t.hess_version

    def _pass_hessian(self, hess: _Hess | None) -> None:
        n = self.h.getNumCol()
        if hess is None:
            start = np.zeros(n, dtype=np.int32)
            index = np.zeros(0, dtype=np.int32)
            value = np.zeros(0)
        else:
            r, k, v = hess
            v = v * self.s[r] * self.s[k]
            order = np.lexsort((r, k))
            r, k, v = r[order], k[order], v[order]
            start = np.searchsorted(k, np.arange(n), side="left").astype(np.int32)
            index = r.astype(np.int32)
            value = v.astype(float)
        st = self.h.passHessian(
            n, int(value.size), highspy.HessianFormat.kTriangular, start, index, value
        )
        if st == highspy.HighsStatus.kError:
            raise InputError("HiGHS rejected the Hessian (not positive semidefinite?)")


class _LazyRows:
    """The lazy PTDF rows of a :class:`HighsEngine` (:class:`~fpamm_opt.lazyflow.FlowMonitor`)
    as ``highspy`` rows appended after the compiled ones, the same in every instance."""

    #: Flow-check rounds per solve before the engine gives up (status ``error``).
    MAX_ROUNDS = 200

    def __init__(
        self, monitor: FlowMonitor, pg: np.ndarray, pl: np.ndarray, pf: np.ndarray
    ) -> None:
        self.monitor = monitor
        self.pg, self.pl, self.pf = pg, pl, pf

    def _entries(self, row: FlowRow, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Columns and (scaled) coefficients of ``row``: ``pf``, kept ``pg``, kept ``pl``."""
        cols = np.r_[self.pf[row.branch], self.pg[row.gen], self.pl[row.node]].astype(np.int32)
        vals = np.r_[1.0, row.gen_coef, row.node_coef] * s[cols]
        return cols, vals

    def sync(self, inst: _Instance) -> None:
        """Send ``inst`` the rows it lacks and the repaired rows it holds stale."""
        rows, version = self.monitor.rows, self.monitor.version
        h, s, held = inst.h, inst.s, inst.lazy_version
        for pos in range(len(held)):
            if held[pos] != version[pos]:
                cols, vals = self._entries(rows[pos], s)
                r = inst.lazy_row[pos]
                for c, v in zip(cols.tolist(), vals.tolist()):
                    h.changeCoeff(r, c, v)
                held[pos] = version[pos]
        new = rows[len(held) :]
        if not new:
            return
        parts = [self._entries(row, s) for row in new]
        starts = np.cumsum([0] + [c.size for c, _ in parts[:-1]]).astype(np.int32)
        rhs = np.array([row.rhs for row in new])
        index = np.concatenate([c for c, _ in parts])
        first = h.getNumRow()
        h.addRows(
            len(new), rhs, rhs, index.size, starts, index, np.concatenate([v for _, v in parts])
        )
        inst.lazy_row.extend(range(first, first + len(new)))
        held.extend(version[len(held) :])

    def step(self, inst: _Instance, x: np.ndarray) -> FlowCheck | None:
        """Flow check of the solution ``x``; ``None`` when rows were added (run again)."""
        chk = self.monitor.check(x[self.pg], x[self.pl])
        if chk.done:
            return chk
        self.monitor.apply(chk)
        self.sync(inst)
        return None

    def flow_duals(self, inst: _Instance, y: np.ndarray, n_branch: int) -> np.ndarray:
        """Per-branch duals: the monitored rows' duals, zero for the others."""
        out = np.zeros(n_branch)
        out[self.monitor.monitored] = y[np.asarray(inst.lazy_row, dtype=int)]
        return out


class _TangentCost:
    """A separable convex quadratic cost as tangent cuts: the case cost solved by LPs.

    ``Σ_j (½ Q_j x_j² + c_j x_j)`` becomes ``Σ_j z_j`` with epigraph columns ``z_j`` and
    rows ``z_j - (Q_j a + c_j) x_j >= -½ Q_j a²``, the tangent at ``a``. Tangents start on
    :attr:`GRID` points of each column's range; after each optimal run one is added at the
    solution for every column whose cost is under-estimated (Kelley's cutting planes), and
    one where its marginal cost meets its price in the LP (a Newton step), until the total
    under-estimate is below :attr:`REL_GAP` of the cost (or :attr:`ABS_GAP` per column). The LPs are hot-started
    (dual simplex after new rows), where HiGHS's active-set QP needs one iteration per
    generator off its bounds (2,466 iterations, 8-10 s, on case10000_goc). The point is
    feasible and its cost is within ``REL_GAP`` of the optimum (the LP is a lower bound).
    """

    GRID = 9
    REL_GAP = 1e-11
    #: Per column ($/h): below what the LP's feasibility tolerance lets a cut be missed by.
    ABS_GAP = 1e-6
    #: Tangent rounds per solve before the engine gives up (status ``error``).
    MAX_ROUNDS = 100

    def __init__(self, cols: np.ndarray, q: np.ndarray, c: np.ndarray) -> None:
        self.cols = cols.astype(np.int32)
        self.q = q
        self.c = c

    def cost(self, x: np.ndarray) -> np.ndarray:
        """Exact cost of each column at ``x``."""
        v = x[self.cols]
        return 0.5 * self.q * v * v + self.c * v

    def _add(self, inst: _Instance, which: np.ndarray, at: np.ndarray) -> None:
        """Tangent rows of columns ``which`` (positions in :attr:`cols`) at points ``at``."""
        assert inst.tangent_z is not None
        n = which.size
        slope = self.q[which] * at + self.c[which]
        first = inst.h.getNumRow()
        inst.tangent_rows.append((np.arange(first, first + n), which, slope))
        index = np.empty(2 * n, dtype=np.int32)
        index[0::2] = inst.tangent_z[which]
        index[1::2] = self.cols[which]
        value = np.empty(2 * n)
        value[0::2] = 1.0
        value[1::2] = -slope
        lower = -0.5 * self.q[which] * at * at
        inst.h.addRows(
            n, lower, np.full(n, _INF), 2 * n, np.arange(0, 2 * n, 2, dtype=np.int32), index, value
        )

    def attach(self, inst: _Instance, lb: np.ndarray, ub: np.ndarray) -> None:
        """Add the epigraph columns (cost 1) and the first tangents to ``inst``."""
        n = self.cols.size
        first = inst.h.getNumCol()
        empty_i = np.zeros(0, dtype=np.int32)
        inst.h.addCols(
            n, np.ones(n), np.full(n, -_INF), np.full(n, _INF), 0, empty_i, empty_i, np.zeros(0)
        )
        inst.tangent_z = np.arange(first, first + n, dtype=np.int32)
        lo = np.where(np.isfinite(lb[self.cols]), lb[self.cols], 0.0)
        hi = np.where(np.isfinite(ub[self.cols]), ub[self.cols], lo + 1.0)
        pos = np.arange(n)
        for f in np.linspace(0.0, 1.0, self.GRID):
            self._add(inst, pos, lo + f * (hi - lo))

    def _price_point(self, inst: _Instance, sol: Any, lb: np.ndarray, ub: np.ndarray) -> np.ndarray:
        """Where each column's marginal cost meets the price the rest of the LP puts on it.

        With reduced costs ``d = cost - Aᵀy`` (cost 0 on these columns) and the tangent rows'
        part of ``Aᵀy`` equal to ``-Σ_t y_t slope_t``, the other rows price a unit of column
        ``j`` at ``π_j = Σ_t y_t slope_t - d_j``; the QP would put it at
        ``clip((π_j - c_j) / Q_j, lb, ub)``. A tangent there is a Newton step of the cuts.
        """
        y = np.asarray(sol.row_dual)
        d = np.asarray(sol.col_dual)[self.cols]
        s_bar = np.zeros(self.cols.size)
        for rows, which, slope in inst.tangent_rows:
            s_bar += np.bincount(which, weights=y[rows] * slope, minlength=self.cols.size)
        price = s_bar - d
        return np.clip((price - self.c) / self.q, lb[self.cols], ub[self.cols])

    def step(self, inst: _Instance, sol: Any, lb: np.ndarray, ub: np.ndarray) -> bool:
        """Add tangents where the solution's cost is under-estimated, at the solution and at
        its price point (:meth:`_price_point`); ``False`` when close enough."""
        assert inst.tangent_z is not None
        x = np.asarray(sol.col_value)
        f = self.cost(x)
        gap = np.maximum(f - x[inst.tangent_z], 0.0)
        # Floor: HiGHS keeps each cut only to its feasibility tolerance (1e-7).
        tol = max(self.REL_GAP * float(np.abs(f).sum()), self.ABS_GAP * f.size)
        if gap.sum() <= tol:
            return False
        which = np.flatnonzero(gap > tol / (10.0 * gap.size))
        at = self._price_point(inst, sol, lb, ub)[which] if sol.dual_valid else None
        self._add(inst, which, x[self.cols[which]])
        if at is not None:
            far = np.abs(at - x[self.cols[which]]) > 1e-9 * (1.0 + np.abs(at))
            self._add(inst, which[far], at[far])
        return True


class HighsEngine:
    """The :class:`~fpamm_opt.engine.Engine` of ``engine="highs"``: ``highspy`` in place.

    Parameters
    ----------
    m : ConcreteModel
        A model from :func:`fpamm_opt.problem.build_model` (extensions included), fully built.
    net : NetworkData
    solver : SolverSpec
        ``time_limit_s`` (per solve) and ``options`` are passed to HiGHS (after
        ``output_flag=False``, ``threads=1``, which they may override).
    formulation : Formulation

    Notes
    -----
    Two HiGHS instances hold the same compiled model. LPs run on the first, exactly the rows
    and columns Pyomo's HiGHS interface would build, and stay hot across a QP in between.
    QPs (the QP rule, a quadratic case cost) run on a second one, created on first use, whose
    free columns are scaled (:meth:`column_scale`) and whose ``qp_regularization_value`` is
    0 by default (:data:`QP_REGULARIZATION`): HiGHS's active-set QP solver does not scale the
    model and its default regularisation (1e-7 on every column) moves the optimum by ~1e-4 MW
    on case14. Either instance catches up with the numbers set since it last ran.

    Attributes
    ----------
    compiled : CompiledModel
        The arrays loaded into HiGHS.
    """

    kind = EngineKind.HIGHS
    #: How the case's quadratic cost is solved: ``"tangents"`` (LPs with tangent cuts,
    #: :class:`_TangentCost`), ``"qp"`` (HiGHS's QP solver on the Hessian) or ``"auto"``:
    #: tangents with lazy PTDF rows, the QP otherwise. Measured (docs/performance.md): the
    #: cut rounds are cheap on the small lazy PTDF LP (case10000_goc: 0.8 s against 8-10 s
    #: for the QP) and expensive on B-θ, whose re-solves after new rows cost 0.7 s a round
    #: on case2000_goc and 14 s on case10000_goc (the QP: 1.6 s and about 30 s).
    case_cost_form = "auto"

    def __init__(
        self,
        m: pyo.ConcreteModel,
        net: NetworkData,
        solver: SolverSpec,
        formulation: Formulation | str,
    ) -> None:
        self.m = m
        self.net = net
        self.spec = solver
        self.formulation = Formulation(formulation)
        dc, al = m.dcopf, m.alloc
        self._node = list(dc.node)
        self._gen = list(dc.gen)
        self._nn, self._ng = len(self._node), len(self._gen)
        level_cons = [al.ineq_level[i] for i in self._node]
        static_rows = [*level_cons, al.ineq_tier_total]
        static_cols = [*(dc.pl[i] for i in self._node), *(dc.pg[g] for g in self._gen)]
        cm = compile_model(m, static_rows, static_cols)
        self.compiled = cm

        def cols(vs: Iterable[Any]) -> np.ndarray:
            return np.asarray([cm.col_of[id(v)] for v in vs], dtype=np.int32)

        def rows(cs: Iterable[Any]) -> np.ndarray:
            return np.asarray([cm.row_of[id(c)] for c in cs], dtype=np.int32)

        self._pg = cols(dc.pg[g] for g in self._gen)
        self._pl = cols(dc.pl[i] for i in self._node)
        self._pf = cols(dc.pf[k] for k in dc.branch)
        self._level = int(cm.col_of[id(al.level)])
        self._level_rows = rows(level_cons)
        self._tier_row = int(cm.row_of[id(al.ineq_tier_total)])
        self._balance_rows = rows(dc.eq_p_balance.values())
        self._flow_rows = (
            rows(dc.eq_pf_ptdf.values()) if hasattr(dc, "eq_pf_ptdf") else np.zeros(0, np.int32)
        )
        #: Lazy PTDF rows: a PTDF block built without its flow rows (``flow_rows=False``).
        self._lazy: _LazyRows | None = None
        if dc.formulation == Formulation.PTDF.value and not hasattr(dc, "eq_pf_ptdf"):
            self._lazy = _LazyRows(FlowMonitor(net), self._pg, self._pl, self._pf)
        #: The case cost as tangent cuts on a third instance (:class:`_TangentCost`).
        self._tangent: _TangentCost | None = None
        self._tangent_mode = False
        self._case_inst: _Instance | None = None
        self._level_const = cm.row_const[self._level_rows]
        self._tier_const = float(cm.row_const[self._tier_row])

        self._t = _Target(
            lb=cm.col_lb.copy(),
            ub=cm.col_ub.copy(),
            rlb=cm.row_lb.copy(),
            rub=cm.row_ub.copy(),
            cost=np.zeros(cm.n_col),
            level_coef=np.array([pyo.value(al.level_coef[i]) for i in self._node], dtype=float),
            tier_coef=np.array([pyo.value(al.tier_member[i]) for i in self._node], dtype=float),
        )
        self._hess_q = np.zeros(0)
        self._hess_kind = "none"  # "none" | "qp" | "case"
        self._case: tuple[np.ndarray, float, _Hess] | None = None
        self._weights = np.ones(self._nn)
        self._demand = np.asarray(net.node_demand_mw, dtype=float).copy()
        # Parameters are written to the Pyomo model only when some row needs them.
        self._sync = bool(cm.dynamic_rows or cm.dynamic_cols)

        opts: dict[str, Any] = {"output_flag": False, "threads": 1, **solver.options}
        self._time_limit = float(opts.pop("time_limit", solver.time_limit_s) or 0.0)
        self._qp_iter_limit = int(opts.pop("qp_iteration_limit", 0)) or max(
            1000, 10 * (cm.n_col + cm.n_row)
        )
        self._qp_reg = float(opts.pop("qp_regularization_value", QP_REGULARIZATION[0]))
        self._options = opts
        self._lp = self._instance(np.ones(cm.n_col))
        self._qp: _Instance | None = None

    # ------------------------------------------------------------------ setup
    def _instance(self, scale: np.ndarray, qp: bool = False) -> _Instance:
        opts = dict(self._options)
        if qp:
            opts["qp_iteration_limit"] = self._qp_iter_limit
            opts["qp_regularization_value"] = self._qp_reg
        return _Instance(
            self.compiled,
            scale,
            opts,
            (self._level_rows, self._level),
            (self._tier_row, self._pl),
            self._t,
        )

    @property
    def highs(self) -> Any:
        """The ``highspy`` instance of the LP solves."""
        return self._lp.h

    def column_scale(self) -> np.ndarray:
        """Column scale ``x = s y`` of the QP instance: ``s = 1/max|A_j|`` for free,
        continuous columns nothing else touches (B-θ angles: coefficients up to 1e4 MW/rad).

        HiGHS's simplex scales by itself, its QP solver does not: unscaled angles made it
        stop with "claims optimality, but with primal infeasibilities" or cycle. Row duals
        do not change under column scaling; primal values are scaled back.
        """
        cm = self.compiled
        s = np.ones(cm.n_col)
        free = np.isinf(cm.col_lb) & np.isinf(cm.col_ub) & ~cm.col_integer
        free[self._pg] = free[self._pl] = free[self._level] = False
        for j, _ in cm.dynamic_cols:
            free[j] = False
        for dr in cm.dynamic_rows:
            for j, _ in dr.coefs:
                free[j] = False
        if not free.any() or cm.nnz == 0:
            return s
        amax = np.zeros(cm.n_col)
        np.maximum.at(amax, cm.a_index, np.abs(cm.a_value))
        big = free & (amax > 1.0)
        s[big] = 1.0 / amax[big]
        return s

    @staticmethod
    def _f(a: Any, n: int) -> np.ndarray:
        x = np.asarray(a, dtype=float)
        return np.broadcast_to(x, (n,)) if x.ndim == 0 else x

    def _sync_param(self, param: Any, values: np.ndarray, keys: list[int]) -> None:
        for k in keys:
            param[k].set_value(float(values[k]))

    # ------------------------------------------------------------ interface
    def set_demand(self, d: np.ndarray) -> None:
        self._demand = self._f(d, self._nn).copy()
        if self._sync:
            self._sync_param(self.m.dcopf.pd, self._demand, self._node)

    def set_served_bounds(self, lo: np.ndarray, hi: np.ndarray) -> None:
        lo, hi = self._f(lo, self._nn), self._f(hi, self._nn)
        self._t.lb[self._pl] = lo
        self._t.ub[self._pl] = hi
        self._t.ver[_COLS] += 1
        if self._sync:
            self._sync_param(self.m.dcopf.pl_lo, lo, self._node)
            self._sync_param(self.m.dcopf.pl_hi, hi, self._node)

    def set_gen_bounds(self, lo: np.ndarray, hi: np.ndarray) -> None:
        lo, hi = self._f(lo, self._ng), self._f(hi, self._ng)
        self._t.lb[self._pg] = lo
        self._t.ub[self._pg] = hi
        self._t.ver[_COLS] += 1
        if self._sync:
            self._sync_param(self.m.dcopf.pg_min, lo, self._gen)
            self._sync_param(self.m.dcopf.pg_max, hi, self._gen)

    def set_level(self, coef: np.ndarray, rhs: np.ndarray) -> None:
        coef, rhs = self._f(coef, self._nn), self._f(rhs, self._nn)
        t = self._t
        t.level_coef[:] = coef
        t.rlb[self._level_rows] = rhs - self._level_const
        t.ver[_LEVEL] += 1
        t.ver[_ROWS] += 1
        if self._sync:
            self._sync_param(self.m.alloc.level_coef, coef, self._node)
            self._sync_param(self.m.alloc.level_rhs, rhs, self._node)

    def set_tier_total(self, member: np.ndarray, q: float) -> None:
        member = self._f(member, self._nn)
        t = self._t
        t.tier_coef[:] = member
        t.rlb[self._tier_row] = float(q) - self._tier_const
        t.ver[_TIER] += 1
        t.ver[_ROWS] += 1
        if self._sync:
            self._sync_param(self.m.alloc.tier_member, member, self._node)
            self.m.alloc.tier_min_served.set_value(float(q))

    def set_objective(
        self,
        c_gen: np.ndarray,
        c_served: np.ndarray,
        c_level: float,
        q_served: np.ndarray | None = None,
        case_cost: bool = False,
    ) -> None:
        t = self._t
        t.ver[_COST] += 1
        self._tangent_mode = False
        if case_cost:
            cost, offset, hess = self._case_objective()
            t.cost[:] = cost
            t.offset = offset
            form = self.case_cost_form
            if form == "auto":
                form = "tangents" if self._lazy is not None else "qp"
            if form == "tangents" and self._tangents_fit(hess):
                t.cost[hess[0]] = 0.0  # carried by the epigraph columns
                self._tangent_mode = True
                if self._hess_kind != "none":
                    self._set_hessian("none", None)
            elif self._hess_kind != "case":
                self._set_hessian("case", hess if hess[0].size else None)
        else:
            t.cost[:] = 0.0
            t.cost[self._pg] = self._f(c_gen, self._ng)
            t.cost[self._pl] = self._f(c_served, self._nn)
            t.cost[self._level] = float(c_level)
            t.offset = 0.0
            if q_served is None:
                if self._hess_kind != "none":
                    self._set_hessian("none", None)
            else:
                q = self._f(q_served, self._nn)
                if self._hess_kind != "qp" or not np.array_equal(q, self._hess_q):
                    nz = np.flatnonzero(q != 0.0)
                    cols = self._pl[nz]
                    self._set_hessian("qp", (cols, cols, q[nz].astype(float)) if nz.size else None)
                    self._hess_q = q.copy()
        if self._sync:
            al = self.m.alloc
            self._sync_param(al.c_gen, self._f(c_gen, self._ng), self._gen)
            self._sync_param(al.c_served, self._f(c_served, self._nn), self._node)
            al.c_level.set_value(float(c_level))
            if q_served is not None:
                self._sync_param(al.q_served, self._f(q_served, self._nn), self._node)

    def set_weights(self, w: np.ndarray) -> None:
        self._weights = self._f(w, self._nn).copy()
        if self._sync:
            self._sync_param(self.m.alloc.weight, self._weights, self._node)

    def _tangents_fit(self, hess: _Hess) -> bool:
        """Whether the case cost's Hessian is diagonal and non-zero (then :class:`_TangentCost`
        holds it; the same cost each time: ``obj_case`` is compiled once)."""
        r, k, v = hess
        if r.size == 0 or np.any(r != k) or np.any(v <= 0):
            return False
        if self._tangent is None:
            cost = self._case_objective()[0]
            self._tangent = _TangentCost(k.astype(np.int32), v.copy(), cost[k].copy())
        return True

    def _case_instance(self) -> _Instance:
        """The LP instance of the tangent cost form (created on first use)."""
        if self._case_inst is None:
            assert self._tangent is not None
            inst = self._instance(np.ones(self.compiled.n_col))
            self._tangent.attach(inst, self._t.lb, self._t.ub)
            self._case_inst = inst
        return self._case_inst

    # --------------------------------------------------------------- Hessian
    def _set_hessian(self, kind: str, hess: _Hess | None) -> None:
        self._hess_kind = kind
        self._t.hess = hess
        self._t.hess_version += 1

    def _case_objective(self) -> tuple[np.ndarray, float, _Hess]:
        """``obj_case`` compiled once: costs, offset, Hessian entries (row >= col)."""
        if self._case is None:
            repn = generate_standard_repn(
                self.m.alloc.obj_case.expr, compute_values=True, quadratic=True
            )
            if repn.nonlinear_expr is not None:
                raise InputError("obj_case is not quadratic; the fast path needs a QP")
            col_of = self.compiled.col_of
            cost = np.zeros(self.compiled.n_col)
            for c, v in zip(repn.linear_coefs, repn.linear_vars):
                cost[col_of[id(v)]] += float(c)
            q: dict[tuple[int, int], float] = {}
            for c, (v1, v2) in zip(repn.quadratic_coefs, repn.quadratic_vars or ()):
                i, j = col_of[id(v1)], col_of[id(v2)]
                key = (max(i, j), min(i, j))
                # c x_i x_j  ->  Q_ij = c off the diagonal, Q_ii = 2c (HiGHS: ½ x'Qx)
                q[key] = q.get(key, 0.0) + (2.0 * float(c) if i == j else float(c))
            ent = [(r, k, v) for (r, k), v in q.items() if v != 0.0]
            hess = (
                np.asarray([e[0] for e in ent], dtype=np.int64),
                np.asarray([e[1] for e in ent], dtype=np.int64),
                np.asarray([e[2] for e in ent], dtype=float),
            )
            self._case = (cost, float(repn.constant), hess)
        return self._case

    # ----------------------------------------------------------------- solve
    def _eval_dynamic(self) -> None:
        """Re-evaluate the rows and columns that depend on mutable parameters."""
        t = self._t
        for k in (_COLS, _ROWS, _DYN):
            t.ver[k] += 1
        for dr in self.compiled.dynamic_rows:
            for j, expr in dr.coefs:
                t.dyn_coef[(dr.row, j)] = float(pyo.value(expr))
            c0 = float(pyo.value(dr.constant))
            con = dr.con
            t.rlb[dr.row] = _num(con.lower, -_INF) - c0 if con.has_lb() else -_INF
            t.rub[dr.row] = _num(con.upper, _INF) - c0 if con.has_ub() else _INF
        for j, v in self.compiled.dynamic_cols:
            t.lb[j] = -_INF if v.lb is None else float(v.lb)
            t.ub[j] = _INF if v.ub is None else float(v.ub)

    def _run(self, inst: _Instance, cold: bool = False, extra: dict[str, Any] | None = None) -> Any:
        h = inst.h
        if cold:
            h.clearSolver()
        for k, v in (extra or {}).items():
            h.setOptionValue(k, v)
        if self._time_limit:
            # HiGHS compares ``time_limit`` with its *cumulative* run time (ERGO-Code/HiGHS
            # #1331, #1477): after that much solving in one instance every run would stop at
            # once. The limit is therefore moved forward before each run.
            h.setOptionValue("time_limit", h.getRunTime() + self._time_limit)
        h.run()
        ms = h.getModelStatus()
        for k in extra or {}:
            h.setOptionValue(k, inst.options.get(k, _DEFAULT_OPTION[k]))
        return ms

    def _retries(self, is_qp: bool) -> list[dict[str, Any]]:
        """Option changes of the cold retries, in order."""
        if not is_qp:
            # A cold start runs presolve, which has declared LPs with many fixed columns
            # infeasible that solve without it (case57, lexicographic max-min rounds).
            return [{}, {"presolve": "off"}]
        reg = self._qp_reg
        return [
            {},
            *({"qp_regularization_value": r} for r in QP_REGULARIZATION if r != reg),
            {"presolve": "off"},
        ]

    def _run_retrying(self, inst: _Instance, is_qp: bool, retry: bool) -> tuple[Any, str]:
        """One hot run; when it is not optimal (and ``retry``), the cold retries in turn."""
        ms = self._run(inst)
        message = ""
        if ms != _MS.kOptimal and retry:
            for extra in self._retries(is_qp):
                ms = self._run(inst, cold=True, extra=extra)
                message = "cold-retry" + "".join(f":{k}={v}" for k, v in extra.items())
                if ms == _MS.kOptimal:
                    break
        return ms, message

    def _rounds(
        self, inst: _Instance, is_qp: bool, retry: bool, ms: Any, message: str
    ) -> tuple[Any, str, FlowCheck | None]:
        """Row generation after each optimal run: lazy flow rows first, then tangents of
        the case cost; re-run until neither adds a row."""
        lazy = self._lazy
        tangent = self._tangent if inst is self._case_inst else None
        limit = _LazyRows.MAX_ROUNDS + _TangentCost.MAX_ROUNDS
        for _ in range(limit):
            if ms != _MS.kOptimal:
                return ms, message, None
            sol = inst.h.getSolution()
            x = np.asarray(sol.col_value)
            chk = None if lazy is None else lazy.step(inst, x)
            if lazy is None or chk is not None:
                if tangent is None or not tangent.step(inst, sol, self._t.lb, self._t.ub):
                    return ms, message, chk
            ms, message = self._run_retrying(inst, is_qp, retry)
        return _MS.kNotset, f"row generation: no end after {limit} rounds", None

    def solve(self, duals: bool = False, retry: bool = True) -> LPSolution:
        """Solve in place (hot start); from scratch when that is not optimal.

        ``retry=False`` skips the cold retries: for a trial solve whose infeasibility is an
        expected answer (the water-fill check of :class:`~fpamm_opt.problem.AllocationProblem`).

        LP: a cold retry, then one without presolve. QP: cold retries over
        :data:`QP_REGULARIZATION` and without presolve (HiGHS's active-set QP solver
        sometimes cycles at the optimum or reports "Solve error" for a slightly infeasible
        point; another regularisation usually gets through). ``message`` names the retry
        that succeeded (or the last one tried). Lazy PTDF: after each optimal run the flows
        are checked and violated rows added (:class:`~fpamm_opt.lazyflow.FlowMonitor`) until
        none is; ``pf`` are then the exact flows.
        """
        t = self._t
        is_qp = t.hess is not None
        if is_qp and self._qp is None:
            self._qp = self._instance(self.column_scale(), qp=True)
        inst = self._qp if is_qp and self._qp is not None else self._lp
        if self._tangent_mode:
            inst = self._case_instance()
        h = inst.h
        t0 = h.getRunTime()
        chk: FlowCheck | None = None
        try:
            if self._sync:
                self._eval_dynamic()
            inst.catch_up(t)
            if self._lazy is not None:
                self._lazy.sync(inst)
            ms, message = self._run_retrying(inst, is_qp, retry)
            if self._lazy is not None or inst is self._case_inst:
                ms, message, chk = self._rounds(inst, is_qp, retry, ms, message)
        except Exception as exc:  # HiGHS raises on invalid models and internal errors
            text = str(exc).splitlines()[0][:200] if str(exc) else repr(exc)
            return self._failed(SolveStatus.ERROR, "error", h.getRunTime() - t0, text)
        solve_s = h.getRunTime() - t0
        word = h.modelStatusToString(ms)
        status = _status(ms)
        if status is not SolveStatus.OPTIMAL:
            return self._failed(status, word, solve_s, message)
        return self._solution(inst, word, solve_s, message, duals, chk)

    def _solution(
        self,
        inst: _Instance,
        word: str,
        solve_s: float,
        message: str,
        duals: bool,
        chk: FlowCheck | None,
    ) -> LPSolution:
        """The optimal solution of ``inst`` as an :class:`LPSolution` (exact flows if lazy)."""
        h = inst.h
        sol = h.getSolution()
        x = np.asarray(sol.col_value)
        out = LPSolution(
            SolveStatus.OPTIMAL,
            word,
            x[self._pg],
            x[self._pl],
            chk.flows_mw if chk is not None else x[self._pf] * inst.s[self._pf],
            float(x[self._level]),
            float(h.getObjectiveValue()),
            solve_s,
            message,
        )
        if inst is self._case_inst and self._tangent is not None:
            # The exact case cost of the point (the LP's value is a lower bound on it).
            tg = self._tangent
            rest = np.delete(np.arange(self.compiled.n_col), tg.cols)
            out.objective = float(tg.cost(x).sum() + self._t.cost[rest] @ x[rest] + self._t.offset)
        if duals and sol.dual_valid:
            y = np.asarray(sol.row_dual)
            out.balance_duals = y[self._balance_rows]
            out.level_duals = y[self._level_rows]
            if self._lazy is not None:
                out.flow_duals = self._lazy.flow_duals(inst, y, self._pf.size)
            elif self._flow_rows.size:
                out.flow_duals = y[self._flow_rows]
        return out

    def _failed(self, status: SolveStatus, word: str, solve_s: float, message: str) -> LPSolution:
        nan = np.nan
        return LPSolution(
            status,
            word,
            np.full(self._ng, nan),
            np.full(self._nn, nan),
            np.full(self._pf.size, nan),
            nan,
            nan,
            solve_s,
            message,
        )
