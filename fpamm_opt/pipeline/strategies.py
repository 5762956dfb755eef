"""The strategies that clear one tier, and the context they share.

Each strategy has one method, ``try_tier(ctx) -> TierOutcome | None``: an outcome clears the
tier (its allocation fixed in ``ctx.bounds``), None hands the tier to the next strategy of the
chain, :class:`TierFailed` ends the clear. A strategy owns its state (the trial's rationing,
the KKT search's carried active sets); what lives for one interval is in ``ctx.session``.

Notation (docs/design.md): tier members ``mem``, demand ``d``, weights ``w``, ``v = 1/w``,
shed fraction ``u_i = 1 - x_i / d_i``, deliverable energy ``q``.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from fpamm_opt.engine import Engine, LPSolution
from fpamm_opt.mechanism.config import TierEnergy
from fpamm_opt.mechanism.copperplate import water_fill
from fpamm_opt.mechanism.tierqp import ActiveSet, TierQP, TierQPResult
from fpamm_opt.mechanism.types import ClearEvent, ClearEventKind, IntervalInput, SolveStatus
from fpamm_opt.pipeline.accounting import PathStats, SolveLog
from fpamm_opt.pipeline.bounds import RULE_BAND, TIGHT_BAND, LexBounds
from fpamm_opt.pipeline.rationing import TrialRationing
from fpamm_opt.pipeline.session import IntervalSession, TierKey


class TierFailed(Exception):
    """A solve the clear cannot do without failed: ``sol`` of ``what`` (``"maxmin[2]"``)."""

    def __init__(self, sol: LPSolution, what: str) -> None:
        super().__init__(what)
        self.sol = sol
        self.what = what


@dataclass
class TierOutcome:
    """How a tier was cleared.

    Attributes
    ----------
    level : float
        Tier level ``max u_i w_i`` over uncapped members (0 when fully served).
    capped : bool
        A cap ``u_i <= 1`` binds.
    rounds : int
        Solves of the rule (max-min rounds; 1 for a QP or an accepted trial with shedding).
    delivered : float
        The tier's deliverable energy (MW): the LP's, or the copper-plate bound of a trial.
    point : LPSolution or None
        A solve whose loads are exactly the allocation (the rule's own), for the final
        dispatch when its exact fix fails.
    final : LPSolution or None
        An accepted trial's LP: the least-cost dispatch of the allocation itself.
    """

    level: float
    capped: bool
    rounds: int
    delivered: float
    point: LPSolution | None = None
    final: LPSolution | None = None
    #: how the tier was cleared (one of :data:`~fpamm_opt.mechanism.types.TIER_PATHS`)
    path: str = ""


def tier_level(
    d: np.ndarray,
    x: np.ndarray,
    w: np.ndarray,
    v: np.ndarray,
    mem: np.ndarray,
    q: float,
    tol_mw: float,
) -> tuple[float, bool]:
    """Tier level ``max_i u_i w_i`` over uncapped members (``u_i < 1``), and whether a cap
    ``u_i <= 1`` binds: some capped member would shed more at that level,
    ``level · v_i > 1`` (only when the tier gets ``q > tol_mw``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.where(d > 0, 1.0 - x / d, 0.0)
    uncapped = mem & (d > 0) & (u < 1.0 - 1e-9)
    capped = mem & (d > 0) & (u >= 1.0 - 1e-9)
    level = float(np.max(u[uncapped] * w[uncapped])) if uncapped.any() else 1.0
    cap = bool(q > tol_mw and capped.any() and np.any(level * v[capped] > 1.0 + 1e-9))
    return level, cap


@dataclass
class TierContext:
    """One tier of one clear, as the strategies see it.

    ``deliverable``, ``q`` and ``q_min`` are set by :class:`DeliverableLP`; ``path`` and
    ``first`` by the QP strategies (:meth:`open_path`); ``switched`` by :meth:`settle_path`.
    """

    k: int
    pos: int
    mem: np.ndarray
    inp: IntervalInput
    d: np.ndarray
    w: np.ndarray
    v: np.ndarray
    tol_mw: float
    avail_total: float
    bounds: LexBounds
    log: SolveLog
    session: IntervalSession
    deliverable: LPSolution | None = None
    q: float = float("nan")
    q_min: float | None = None
    path: str | None = None
    first: bool = False
    switched: bool = False
    #: served-load bounds when the tier opened (see :meth:`IntervalSession.anchor`)
    opened: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def key(self) -> TierKey:
        return (self.k, self.pos)

    @property
    def d_tier(self) -> float:
        return float(self.d[self.mem].sum())

    def open_path(self, default: str) -> None:
        """The tier's QP path in this interval (``default`` at its first clear)."""
        if self.path is None:
            self.first = self.key not in self.session.qp_path
            self.path = self.session.qp_path.get(self.key, default)

    def settle_path(self) -> None:
        """Record the QP path chosen (paths only move right: kkt -> solver -> maxmin)."""
        assert self.path is not None
        self.switched = self.session.settle_path(self.key, self.path, self.first)

    def rule_outcome(
        self, x: np.ndarray, point: LPSolution | None, rounds: int, path: str
    ) -> TierOutcome:
        """Fix the rule's allocation ``x`` of the tier exactly (or, for a QP-rule tier, its
        anchor from an earlier clear, :meth:`IntervalSession.anchor`) and report it."""
        if self.opened is not None and path != "maxmin":
            # QP-rule tiers only: max-min rounds keep bottleneck levels within a band and
            # converge slowly, so an anchor's drift past tol_mw came back as a jump that T2
            # read as non-contraction (IEEE-118, seed 0: q_hat 2.9; docs/design.md)
            x, point = self.session.anchor(self.key, self.mem, self.opened, x, point, self.tol_mw)
        level, capped = tier_level(self.d, x, self.w, self.v, self.mem, self.q, self.tol_mw)
        self.bounds.fix(self.mem, x)
        return TierOutcome(level, capped, rounds, self.q, point=point, path=path)


class TierStrategy(Protocol):
    """One way to clear a tier."""

    def try_tier(self, ctx: TierContext) -> TierOutcome | None:
        """Clear the tier (fixing it in ``ctx.bounds``), or None to pass it on."""
        ...


def run_chain(chain: list[TierStrategy], ctx: TierContext) -> TierOutcome:
    """The first outcome of ``chain`` (whose last strategy always gives one)."""
    for strategy in chain:
        out = strategy.try_tier(ctx)
        if out is not None:
            return out
    raise RuntimeError(f"no strategy cleared tier {ctx.k}")


# ------------------------------------------------------------------ solves --
@dataclass
class FixedLoadSolves:
    """The engine solves every strategy shares.

    :meth:`solve` holds earlier tiers **exactly** (``lo == hi``) and widens them only when the
    solver calls that infeasible by its tolerances: first to the tight band
    ``1e-9 d + 1e-9``, then to the rule's band ``1e-6 d + 1e-6`` MW (docs/design.md, "Earlier
    tiers held exactly").
    """

    engine: Engine
    price: np.ndarray
    n_node: int
    n_gen: int
    tight: tuple[float, float] = TIGHT_BAND
    band: tuple[float, float] = RULE_BAND
    zeros_gen: np.ndarray = field(init=False, repr=False)
    _ones: np.ndarray = field(init=False, repr=False)
    _zeros: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._ones, self._zeros = np.ones(self.n_node), np.zeros(self.n_node)
        self.zeros_gen = np.zeros(self.n_gen)

    def plain_rows(self) -> None:
        """Level rows ``x_i + λ >= 0`` (inactive) and no tier-total row."""
        self.engine.set_level(self._ones, self._zeros)
        self.engine.set_tier_total(self._ones, 0.0)

    def least_cost_lp(self, lo: np.ndarray, hi: np.ndarray, retry: bool = True) -> LPSolution:
        """``min price · p`` with served loads in ``[lo, hi]``."""
        self.plain_rows()
        self.engine.set_served_bounds(lo, hi)
        self.engine.set_objective(self.price, self._zeros, 0.0)
        return self.engine.solve(retry=retry)

    def solve(
        self,
        lo: np.ndarray,
        hi: np.ndarray,
        fixed: np.ndarray,
        d: np.ndarray,
        duals: bool = False,
        widen_first: np.ndarray | None = None,
        point: LPSolution | None = None,
        start: str = "",
    ) -> tuple[LPSolution, int, float, str]:
        """Solve the current objective with the loads of ``fixed`` held at ``lo == hi``.

        When the exact fix fails, ``fixed`` loads ``i`` are widened by
        ``b_i = rel d_i + abs`` to ``max(lo - b, 0) <= x <= min(hi + b, max(d, hi))``:
        ``"tight"`` then ``"band"``. With ``widen_first`` (the last tier, for the final
        dispatch) only those nodes are widened first (``"last-tight"``, ``"last-band"``).
        ``point`` (final dispatch only) is returned as ``"rule-point"`` when the exact solve
        fails, before anything is widened: the last tier's own solve is a point of ``X(t)``
        with the allocation's loads. ``start`` (a label) skips the widths before it.

        Returns the solution, the solves used, their time and the widening (``""``: none).
        """
        e = self.engine
        n, secs = 0, 0.0
        steps = [("tight", *self.tight), ("band", *self.band)]
        widths = [("", fixed, 0.0, 0.0)]
        if widen_first is not None and widen_first.any():
            widths += [(f"last-{name}", widen_first & fixed, r, a) for name, r, a in steps]
        widths += [(name, fixed, r, a) for name, r, a in steps]
        if not fixed.any():
            widths = widths[:1]
        elif start:
            widths = widths[[w[0] for w in widths].index(start) :]
        for i, (label, which, rel, abs_mw) in enumerate(widths):  # noqa: B007 (label: last)
            b = np.where(which, rel * d + abs_mw, 0.0)
            e.set_served_bounds(np.maximum(lo - b, 0.0), np.minimum(hi + b, np.maximum(d, hi)))
            sol = e.solve(duals=duals, retry=i == len(widths) - 1)
            n += 1
            secs += sol.solve_s
            if sol.status is SolveStatus.OPTIMAL:
                break
            if i == 0 and point is not None and not start:
                e.set_served_bounds(lo, hi)
                return point, n, secs, "rule-point"
        if label:
            e.set_served_bounds(lo, hi)
        return sol, n, secs, label

    def dispatch(
        self,
        lo: np.ndarray,
        hi: np.ndarray,
        d: np.ndarray,
        last: np.ndarray,
        point: LPSolution | None = None,
    ) -> tuple[LPSolution, int, float, str]:
        """Least-cost dispatch ``min price · p`` of the allocation in ``[lo, hi]``: every
        fixed load exact first, then only the last tier ``last`` widened (:meth:`solve`);
        ``point`` (its objective priced ``price · p``) before anything is widened."""
        self.plain_rows()
        self.engine.set_objective(self.price, self._zeros, 0.0)
        if point is not None:
            point = dataclasses.replace(point, objective=float(np.dot(self.price, point.pg)))
        return self.solve(lo, hi, lo == hi, d, widen_first=last, point=point)


# -------------------------------------------------------------- strategies --
@dataclass
class WaterFillTrial:
    """The copper-plate answer, checked by one LP.

    Both rules have the copper-plate answer ``u_i = min(1, λ v_i)`` with
    ``Σ d_i u_i = Σ d_i - q_cp`` over ``{0 <= x <= d, Σ_tier x <= q_cp}``, where
    ``q_cp = min(Σ_tier d, Σ avail - fixed_mw)``. That set contains the tier's slice of
    ``X(t)`` (earlier tiers fixed, later at zero), so a water-filled point that the least-cost
    LP (tier fixed within the tight band, exactly when fully served) finds feasible is the
    rule's unique answer over ``X(t)``. A failed trial is not repeated in the interval; trials
    of weighted tiers are rationed by ``rationing``. A tier served in full is the same LP
    whatever the weights: a later clear of the interval under the same bounds reuses the
    accepted answer (counted in ``stats.cp_reused``) instead of solving it again.
    """

    solves: FixedLoadSolves
    stats: PathStats
    rationing: TrialRationing = field(default_factory=TrialRationing)

    def try_tier(self, ctx: TierContext) -> TierOutcome | None:
        b, mem, d = ctx.bounds, ctx.mem, ctx.d
        q_cp = b.available_to(mem, ctx.avail_total)
        weighted = q_cp < ctx.d_tier
        if ctx.key in ctx.session.trial_failed or (weighted and not self.rationing.due()):
            self.stats.tier_paths["skipped"] += 1
            return None
        x = np.zeros(d.size)
        on = mem & (d > 0)
        u, _ = water_fill(d[on], ctx.v[on], max(float(d[on].sum()) - q_cp, 0.0))
        x[on] = d[on] * (1.0 - u)
        band = None if q_cp >= ctx.d_tier else b.tight
        lo_t, hi_t = b.pinned(mem, x, band)
        if not weighted:
            seen = ctx.session.seen_full_trial(ctx.key, lo_t, hi_t)
            if seen is not None:
                self.stats.tier_paths["cp"] += 1
                self.stats.cp_reused += 1
                b.fix(mem, x, band)
                return TierOutcome(0.0, False, 0, q_cp, final=seen, path="cp")
        sol = self.solves.least_cost_lp(lo_t, hi_t, retry=False)
        ok = sol.status is SolveStatus.OPTIMAL
        if not ok:
            self.solves.engine.set_served_bounds(b.lo, b.hi)  # the tier free again
        elif not weighted:
            ctx.session.full_trial[ctx.key] = (lo_t, hi_t, sol)
        ctx.log.add(1, sol.solve_s)
        if weighted:
            self.rationing.record(ok)
        if not ok:
            self.stats.tier_paths["rule"] += 1
            ctx.session.trial_failed.add(ctx.key)
            return None
        self.stats.tier_paths["cp"] += 1
        level, capped = tier_level(d, x, ctx.w, ctx.v, mem, q_cp, ctx.tol_mw)
        b.fix(mem, x, band)
        return TierOutcome(level, capped, 0 if level == 0.0 else 1, q_cp, final=sol, path="cp")


@dataclass
class DeliverableLP:
    """The tier's deliverable energy ``q = max Σ_tier x`` over ``X(t)`` (earlier tiers fixed,
    later at zero), reused within the interval when its bounds repeat.

    ``q >= Σ_tier d - tol`` clears the tier (fully served, level 0); otherwise ``q`` and the
    LP go to the rule's strategies, with ``Σ_tier x >= q - tol`` imposed when
    ``tier_energy`` is ``MAX``.
    """

    solves: FixedLoadSolves
    tier_energy: TierEnergy = TierEnergy.FREE

    def try_tier(self, ctx: TierContext) -> TierOutcome | None:
        e, b, mem = self.solves.engine, ctx.bounds, ctx.mem
        e.set_served_bounds(b.lo, b.hi)
        self.solves.plain_rows()
        e.set_objective(self.solves.zeros_gen, np.where(mem, -1.0, 0.0), 0.0)
        sol = ctx.session.seen_deliverable(ctx.key, b.lo, b.hi)
        if sol is None:
            sol, n, secs, how = self.solves.solve(b.lo, b.hi, b.fixed, ctx.d)
            ctx.log.record(f"deliverable[{ctx.k}]", sol, n, secs, how)
            if sol.status is SolveStatus.OPTIMAL:
                ctx.session.deliverable[ctx.key] = (b.lo.copy(), b.hi.copy(), sol)
        if sol.status is not SolveStatus.OPTIMAL:
            raise TierFailed(sol, f"deliverable[{ctx.k}]")
        q = float(sol.pl[mem].sum())
        if q >= ctx.d_tier - ctx.tol_mw:
            b.fix(mem, ctx.d)
            return TierOutcome(0.0, False, 0, q, path="full")
        if self.tier_energy is TierEnergy.MAX:
            e.set_tier_total(mem.astype(float), q - ctx.tol_mw)
            ctx.q_min = q - ctx.tol_mw
        ctx.deliverable, ctx.q = sol, q
        return None


@dataclass
class KKTTier:
    """The QP rule's tier problem by :class:`~fpamm_opt.mechanism.tierqp.TierQP`, accepted
    only when its KKT conditions certify the answer.

    Guesses tried in turn: the tier's active set from earlier in this interval (warm), else
    its latest certified one from an earlier interval (carry, at most ``carry_iter``
    corrections); then the one read off the LP (``lp``). ``last`` (per tier, across
    intervals) is this strategy's own state.
    """

    qp: TierQP
    pg_lo: np.ndarray
    stats: PathStats
    carry_iter: int = 4
    last: dict[int, ActiveSet] = field(default_factory=dict)

    def try_tier(self, ctx: TierContext) -> TierOutcome | None:
        ctx.open_path("kkt")
        if ctx.path != "kkt":
            return None
        assert ctx.deliverable is not None
        res = self.search(ctx, ctx.deliverable)
        if res is None:
            return None
        ctx.settle_path()
        return ctx.rule_outcome(res.served_mw, self.point_of(res), 1, "kkt")

    def search(self, ctx: TierContext, lp: LPSolution) -> TierQPResult | None:
        """The certified answer (None if none), guesses from the session, ``last`` and
        ``lp``; counts one solve in ``ctx.log``."""
        t0 = time.perf_counter()
        d, w, mem, key = ctx.d, ctx.w, ctx.mem, ctx.key
        g_hi = np.asarray(ctx.inp.available_mw, dtype=float)
        tries: list[tuple[str, ActiveSet | None, int | None]] = []
        if key in ctx.session.qp_guess:
            tries.append(("warm", ctx.session.qp_guess[key], None))
        elif ctx.k in self.last:
            tries.append(("carry", self.last[ctx.k], self.carry_iter))
        tries.append(("lp", None, None))
        for how, guess, limit in tries:
            start = guess or self._from_lp(ctx, lp, g_hi)
            res = self.qp.solve(
                d, w, mem, ctx.bounds.x_fixed, self.pg_lo, g_hi, ctx.q_min, start, limit
            )
            self.stats.kkt_iterations += res.iterations
            if res.ok:
                self.stats.qp_paths[f"kkt_{how}"] += 1
                break
            self.stats.miss(f"{how}:{res.reason.split(':')[0]}")
        if res.active is not None:
            ctx.session.qp_guess[key] = res.active
            if res.ok:
                self.last[ctx.k] = res.active
        ctx.log.add(1, time.perf_counter() - t0)
        return res if res.ok else None

    def _from_lp(self, ctx: TierContext, lp: LPSolution, g_hi: np.ndarray) -> ActiveSet:
        """Branches and generators as ``lp`` binds them; members capped as the copper-plate
        answer at ``lp``'s delivered energy caps them."""
        d, mem = ctx.d, ctx.mem
        guess = self.qp.guess_from(lp.pf, lp.pg, self.pg_lo, g_hi, ctx.q_min is not None)
        on = mem & (d > 0)
        short = float(d[on].sum() - lp.pl[on].sum())
        u, _ = water_fill(d[on], 1.0 / ctx.w[on], short)
        guess.node_state = np.zeros(d.size, dtype=np.int8)
        guess.node_state[np.flatnonzero(on)[u >= 1.0]] = 1
        return guess

    @staticmethod
    def point_of(res: TierQPResult) -> LPSolution:
        """A certified answer as a point of ``X(t)`` (loads, outputs, flows)."""
        nan = float("nan")
        return LPSolution(
            SolveStatus.OPTIMAL, "kkt", res.p_gen_mw, res.served_mw, res.flow_mw, nan, nan, 0.0
        )


@dataclass
class SolverQP:
    """The solver's QP ``min Σ_tier w_i (d_i - x_i)^2 / (2 d_i)``-equivalent
    (``-w·x + (w/d)·x²/2``), earlier tiers exactly first, then widened.

    At the tier's first clear of the interval with the KKT path, the search runs once more,
    warm from the solver's answer, and keeps the KKT path if it certifies. When the solver
    stops, the tier goes to the max-min LPs for the rest of the interval (noted).
    """

    solves: FixedLoadSolves
    stats: PathStats
    kkt: KKTTier | None = None

    def try_tier(self, ctx: TierContext) -> TierOutcome | None:
        ctx.open_path("kkt" if self.kkt is not None else "solver")
        if ctx.path == "maxmin":
            # HiGHS's QP stopped on this tier earlier in the interval: every later clear
            # uses the max-min LPs, and says so, so that the final clear's rule is marked
            # (final-rule[k]=maxmin) for the audit
            ctx.log.event(ClearEvent(ClearEventKind.QP_FALLBACK, ctx.k, "earlier-clear"))
            ctx.settle_path()
            return None
        b, d, mem, w = ctx.bounds, ctx.d, ctx.mem, ctx.w
        with np.errstate(divide="ignore", invalid="ignore"):
            qcoef = np.where(mem & (d > 0), w / d, 0.0)
        e = self.solves.engine
        e.set_objective(self.solves.zeros_gen, np.where(mem, -w, 0.0), 0.0, q_served=qcoef)
        self.stats.qp_paths["solver"] += 1
        sol, n, secs, how = self.solves.solve(b.lo, b.hi, b.fixed, d)
        ctx.log.record(f"qp[{ctx.k}]", sol, n, secs, how)
        if sol.status is not SolveStatus.OPTIMAL:
            ctx.log.event(ClearEvent(ClearEventKind.QP_FALLBACK, ctx.k, sol.termination))
            ctx.path = "maxmin"
            ctx.settle_path()
            return None
        x, point = np.clip(sol.pl, b.lo, b.hi), sol
        if self.kkt is not None:  # a warm start for the KKT search
            ctx.session.qp_guess[ctx.key] = self.kkt.qp.guess_from(
                sol.pf, sol.pg, self.kkt.pg_lo, ctx.inp.available_mw, ctx.q_min is not None
            )
        if ctx.first and ctx.path == "kkt" and self.kkt is not None:
            res = self.kkt.search(ctx, sol)
            ctx.path = "solver" if res is None else "kkt"
            if res is not None:
                x, point = res.served_mw, self.kkt.point_of(res)
        else:
            ctx.path = "solver"
        ctx.settle_path()
        return ctx.rule_outcome(x, point, 1, ctx.path or "solver")


@dataclass
class MaxMinLPs:
    """Weighted max-min by bottleneck rounds.

    Each round solves ``max λ`` s.t. ``x_i + λ d_i v_i >= d_i`` for free members (every
    other row inactive as ``x_i + λ >= 0``), earlier tiers fixed. Bottlenecks are the free
    nodes whose level-row dual ``μ_i`` is above ``BLOCK_DUAL_REL`` times the largest one;
    they keep their level as a lower bound within the rule's band, ``x_i >= x_i* - band_i``,
    and leave the free set. When every node still free is served in full at the round's
    point, the tier is done (the next round would find ``λ = 0`` there). At most
    ``max_rounds`` rounds; past it the rest keep the last solution (noted ``rounds-capped``).

    A positive dual proves a row tight in every optimum of the round only in exact
    arithmetic. The previous test, a dual share ``|μ_i| coef_i > 1e-7``, blocked rows whose
    duals were within HiGHS's error: on IEEE-118 (seed 0, t = 4771) warm-started rounds
    blocked nodes with shares of 1.1e-7 to 3.3e-7 whose level the next round could lower by
    10 (29 MW for one node), and which of them got blocked depended on the vertex, so the
    fixed point jumped between clears (``q_hat`` 2.1). A threshold on the share itself does
    not work either: at 1e-6 the fixed point cycled where a share sat at the threshold, and
    at 1e-3 small nodes of an uncongested tier (small ``coef``, the same price as every
    other) were left free, and later rounds handed them the band of the blocked ones. The
    dual relative to the largest one has neither problem: on a copper plate every level row
    has the same price and all are blocked at once (the water-fill answer), and rows priced
    a thousand times below the bottleneck are left to the next round. Blocking wrongly is
    final (no later round raises the node), while leaving a true bottleneck free costs one
    more round (it binds again at the same level), so the threshold errs on the high side.
    """

    #: A free node is blocked when its level-row dual exceeds this fraction of the largest
    #: (see the class docstring); the largest is always blocked, so every round blocks one.
    BLOCK_DUAL_REL = 1e-3

    solves: FixedLoadSolves
    max_rounds: int = 50

    def try_tier(self, ctx: TierContext) -> TierOutcome:
        e, b, d, mem = self.solves.engine, ctx.bounds, ctx.d, ctx.mem
        assert ctx.deliverable is not None
        e.set_objective(self.solves.zeros_gen, np.zeros(d.size), 1.0)
        free = mem & (d > 0)
        b.lo[mem & (d <= 0)] = b.hi[mem & (d <= 0)] = 0.0
        x = ctx.deliverable.pl.copy()
        rounds, point = 0, None
        while free.any() and rounds < self.max_rounds:
            coef = np.where(free, d * ctx.v, 1.0)
            rhs = np.where(free, d, 0.0)
            e.set_level(coef, rhs)
            start = ctx.session.widened.get(ctx.key, "")
            sol, n, secs, how = self.solves.solve(b.lo, b.hi, b.fixed, d, duals=True, start=start)
            if how and how != start:
                # every later round of the tier in this interval starts at this width, so
                # that the clears of the fixed point hold the earlier tiers alike
                ctx.session.widened[ctx.key] = how
            point = sol
            ctx.log.record(f"maxmin[{ctx.k}]", sol, n, secs, how)
            if sol.status is not SolveStatus.OPTIMAL:
                raise TierFailed(sol, f"maxmin[{ctx.k}]")
            rounds += 1
            x = np.clip(sol.pl, 0.0, d)
            bott = self._bottlenecks(free, x, coef, rhs, sol, ctx.tol_mw)
            b.lo[bott] = np.maximum(x[bott] - b.band[bott], 0.0)
            free &= ~bott
            if sol.level <= 1e-12:
                break
            if self._served_in_full(x, d, free, b.tight):
                free[:] = False  # every free node at level 0: nothing left to lower
                break
        if free.any():
            ctx.log.event(ClearEvent(ClearEventKind.ROUNDS_CAPPED, ctx.k))
        x = np.where(mem, np.clip(x, 0.0, d), x)
        return ctx.rule_outcome(x, point, rounds, "maxmin")

    @staticmethod
    def _served_in_full(x: np.ndarray, d: np.ndarray, free: np.ndarray, tight: np.ndarray) -> bool:
        """Every node still free is served in full at the round's point (within the tight
        band): the next round's optimum is ``λ = 0`` at this very point, so it is not
        solved (``λ >= 0`` is its bound, and the point satisfies every row at ``λ = 0``)."""
        return bool(free.any() and np.all(x[free] >= d[free] - tight[free]))

    @staticmethod
    def _bottlenecks(
        free: np.ndarray,
        x: np.ndarray,
        coef: np.ndarray,
        rhs: np.ndarray,
        sol: LPSolution,
        tol_mw: float,
    ) -> np.ndarray:
        """Free nodes whose level-row dual ``|μ_i|`` exceeds ``BLOCK_DUAL_REL`` times the
        largest over free nodes; without duals, rows with slack ``x_i + coef_i λ - rhs_i <=
        tol_mw``; else (or when ``λ <= 1e-12``) all free."""
        lam = sol.level
        mu = sol.level_duals
        price = np.where(free, np.abs(mu), 0.0) if mu is not None else None
        if price is not None and price.max(initial=0.0) > 0.0:
            bott = price > MaxMinLPs.BLOCK_DUAL_REL * float(price.max())
        else:
            bott = free & (x + coef * lam - rhs <= tol_mw)
        if not bott.any() or lam <= 1e-12:
            bott = free.copy()
        return bott
