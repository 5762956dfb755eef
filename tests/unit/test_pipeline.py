"""The tier-clearing pipeline's pieces, each alone: bounds, session, accounting, rationing and
the five strategies against a fake engine (no Pyomo, no solver)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pytest

from fpamm_opt.engine import EngineKind, LPSolution
from fpamm_opt.mechanism.config import TierEnergy
from fpamm_opt.mechanism.tierqp import ActiveSet, TierQPResult
from fpamm_opt.mechanism.types import (
    QP_FALLBACK_RE,
    ClearEvent,
    ClearEventKind,
    IntervalInput,
    SolveStatus,
)
from fpamm_opt.pipeline.accounting import PathStats, SolveLog
from fpamm_opt.pipeline.bounds import LexBounds
from fpamm_opt.pipeline.ledger import ClearLedger
from fpamm_opt.pipeline.rationing import TrialRationing
from fpamm_opt.pipeline.session import DeferredClear, IntervalSession
from fpamm_opt.pipeline.strategies import (
    DeliverableLP,
    FixedLoadSolves,
    KKTTier,
    MaxMinLPs,
    SolverQP,
    TierContext,
    TierFailed,
    WaterFillTrial,
    run_chain,
    tier_level,
)

pytestmark = pytest.mark.unit

N_NODE, N_GEN = 3, 1
D = np.array([10.0, 20.0, 30.0])


def _sol(pl: np.ndarray | None = None, ok: bool = True, **kw: object) -> LPSolution:
    status = SolveStatus.OPTIMAL if ok else SolveStatus.INFEASIBLE
    pl = np.zeros(N_NODE) if pl is None else np.asarray(pl, dtype=float)
    sol = LPSolution(status, "t", np.array([pl.sum()]), pl, np.zeros(2), 0.0, 1.0, 0.01)
    for k, v in kw.items():
        setattr(sol, k, v)
    return sol


@dataclass
class FakeEngine:
    """Records what it is told; ``respond(engine) -> LPSolution`` answers each solve."""

    respond: Callable[[FakeEngine], LPSolution]
    kind: EngineKind = EngineKind.PYOMO
    lo: np.ndarray = field(default_factory=lambda: np.zeros(N_NODE))
    hi: np.ndarray = field(default_factory=lambda: np.zeros(N_NODE))
    objective: tuple = ()
    level: tuple = ()
    tier_total: tuple = ()
    solves: int = 0
    bounds_seen: list = field(default_factory=list)

    def set_demand(self, d: np.ndarray) -> None: ...

    def set_gen_bounds(self, lo: np.ndarray, hi: np.ndarray) -> None: ...

    def set_weights(self, w: np.ndarray) -> None: ...

    def set_served_bounds(self, lo: np.ndarray, hi: np.ndarray) -> None:
        self.lo, self.hi = np.array(lo, dtype=float), np.array(hi, dtype=float)

    def set_level(self, coef: np.ndarray, rhs: np.ndarray) -> None:
        self.level = (np.array(coef), np.array(rhs))

    def set_tier_total(self, member: np.ndarray, q: float) -> None:
        self.tier_total = (np.array(member), q)

    def set_objective(self, c_gen, c_served, c_level, q_served=None, case_cost=False) -> None:
        self.objective = (np.array(c_served), c_level, q_served)

    def solve(self, duals: bool = False, retry: bool = True) -> LPSolution:
        self.solves += 1
        self.bounds_seen.append((self.lo.copy(), self.hi.copy()))
        return self.respond(self)


def _setup(respond: Callable[[FakeEngine], LPSolution], w=(1.0, 1.0, 1.0), avail=40.0):
    eng = FakeEngine(respond)
    solves = FixedLoadSolves(eng, np.array([1.0]), N_NODE, N_GEN)
    inp = IntervalInput(0, D.copy(), np.array([avail]))
    session = IntervalSession(inp)
    ledger = ClearLedger(inp, np.asarray(w, dtype=float), 2)
    return eng, solves, session, ledger


MEM0 = np.array([True, True, False])  # tier 0: nodes 0, 1
MEM1 = ~MEM0


# ------------------------------------------------------------------ pieces --
def test_lex_bounds_open_pin_fix() -> None:
    b = LexBounds(D)
    b.open(MEM0)
    np.testing.assert_array_equal(b.hi, [10.0, 20.0, 0.0])
    assert b.available_to(MEM0, 25.0) == 25.0 and b.available_to(MEM0, 50.0) == 30.0
    lo, hi = b.pinned(MEM0, np.array([5.0, 20.0, 0.0]), b.band)
    np.testing.assert_allclose(lo[:2], [5.0 - 1e-6 * 10 - 1e-6, 20.0 - 1e-6 * 20 - 1e-6])
    np.testing.assert_allclose(hi[:2], [5.0 + 1e-6 * 10 + 1e-6, 20.0])  # never above d
    b.fix(MEM0, np.array([5.0, 20.0, 0.0]))
    np.testing.assert_array_equal(b.lo, b.hi)
    assert b.fixed_mw == 25.0 and list(b.fixed) == [True, True, False]
    assert b.available_to(MEM1, 40.0) == 15.0


def test_session_reuse_paths_and_deferred() -> None:
    s = IntervalSession(IntervalInput(0, D, np.array([40.0])))
    lo, hi = np.zeros(3), D.copy()
    sol = _sol()
    s.deliverable[(0, 0)] = (lo.copy(), hi.copy(), sol)
    assert s.seen_deliverable((0, 0), lo, hi) is sol
    assert s.seen_deliverable((0, 0), lo, hi * 0.5) is None
    s.qp_path[(0, 0)] = "kkt"
    assert not s.settle_path((0, 0), "kkt", first=False)
    assert s.settle_path((0, 0), "solver", first=False)
    assert not s.settle_path((1, 1), "solver", first=True) and s.qp_path[(1, 1)] == "solver"
    for token in (1, 2, 3):
        s.keep_deferred(token, DeferredClear(lo, hi, MEM0, None))
    assert list(s.deferred) == [2, 3]


def test_accounting_and_rationing() -> None:
    log = SolveLog()
    log.record("qp[1]", _sol(message="retried"), 2, 0.5, "tight")
    log.record("maxmin[0]", _sol(), 1, 0.25, "")
    assert (log.n_solves, log.solve_s) == (3, 0.75)
    assert log.widened == ["qp[1]:tight"] and log.notes == ["retried"]
    assert log.events == [ClearEvent(ClearEventKind.WIDENED, None, "qp[1]:tight")]
    stats = PathStats()
    stats.miss("lp:cycled")
    stats.miss("lp:cycled")
    out = stats.as_manifest()
    assert out["qp_misses"] == {"lp:cycled": 2} and out["tier_paths"]["cp"] == 0
    r = TrialRationing(min_rate=0.5, probe=3, rate=1.0)
    assert r.due()
    for _ in range(10):
        r.record(False)
    assert r.rate < 0.5
    assert [r.due() for _ in range(6)] == [False, True, False, False, True, False]


def test_tier_level_and_cap() -> None:
    x = np.array([5.0, 10.0, 30.0])  # u = 0.5, 0.5 on tier 0
    level, cap = tier_level(D, x, np.array([2.0, 1.0, 1.0]), np.array([0.5, 1, 1]), MEM0, 15, 1e-5)
    assert level == 1.0 and not cap
    x0 = np.array([0.0, 10.0, 30.0])  # node 0 capped (u = 1), level 0.5 with v_0 = 4 > 1/0.5
    level, cap = tier_level(D, x0, np.array([0.25, 1, 1]), np.array([4.0, 1, 1]), MEM0, 10, 1e-5)
    assert level == 0.5 and cap


# -------------------------------------------------------------- strategies --
def test_water_fill_trial_accepted_fixes_the_copper_plate_answer() -> None:
    _eng, solves, session, led = _setup(lambda e: _sol(e.lo))
    stats = PathStats()
    trial = WaterFillTrial(solves, stats, TrialRationing())
    ctx = led.tier(0, 0, MEM0, session)
    out = trial.try_tier(ctx)
    assert out is not None and out.final is not None
    # q_cp = 30 = the tier's demand: fully served, held exactly
    np.testing.assert_array_equal(led.bounds.lo[MEM0], D[MEM0])
    assert out.level == 0.0 and out.rounds == 0
    assert stats.tier_paths == {"cp": 1, "rule": 0, "skipped": 0}
    ctx1 = led.tier(1, 1, MEM1, session)  # 10 MW left of 40 for 30 MW: weighted
    out1 = trial.try_tier(ctx1)
    assert out1 is not None and led.bounds.x_fixed[2] == pytest.approx(10.0)
    assert out1.delivered == pytest.approx(10.0) and out1.rounds == 1
    assert trial.rationing.turns == 1


def test_water_fill_trial_failed_is_not_repeated_in_the_interval() -> None:
    eng, solves, session, led = _setup(lambda e: _sol(ok=False), avail=20.0)
    stats = PathStats()
    trial = WaterFillTrial(solves, stats, TrialRationing())
    ctx = led.tier(0, 0, MEM0, session)
    assert trial.try_tier(ctx) is None
    np.testing.assert_array_equal(eng.hi, led.bounds.hi)  # the engine sees the tier free again
    assert (0, 0) in session.trial_failed and trial.rationing.rate == pytest.approx(0.9)
    assert trial.try_tier(led.tier(0, 0, MEM0, session)) is None
    assert eng.solves == 1 and stats.tier_paths == {"cp": 0, "rule": 1, "skipped": 1}


def test_water_fill_trial_rationing_is_injectable() -> None:
    eng, solves, session, led = _setup(lambda e: _sol(e.lo), avail=20.0)
    stats = PathStats()
    trial = WaterFillTrial(solves, stats, TrialRationing(rate=0.0, probe=2))
    assert trial.try_tier(led.tier(0, 0, MEM0, session)) is None  # turn 1: rationed
    assert trial.try_tier(led.tier(0, 0, MEM0, session)) is not None  # turn 2: probe
    assert stats.tier_paths == {"cp": 1, "rule": 0, "skipped": 1} and eng.solves == 1


def test_deliverable_lp_fully_served_partial_and_reused() -> None:
    _eng, solves, session, led = _setup(lambda e: _sol(e.hi))
    lp = DeliverableLP(solves)
    out = lp.try_tier(led.tier(0, 0, MEM0, session))
    assert out is not None and out.level == 0.0 and out.delivered == 30.0
    eng2, solves2, session2, led2 = _setup(lambda e: _sol(e.hi * 0.5))
    lp2 = DeliverableLP(solves2, TierEnergy.MAX)
    ctx = led2.tier(0, 0, MEM0, session2)
    assert lp2.try_tier(ctx) is None and ctx.q == 15.0
    assert ctx.q_min == pytest.approx(15.0 - led2.tol_mw) and eng2.tier_total[1] == ctx.q_min
    ctx_again = ClearLedger(session2.inp, np.ones(3), 2).tier(0, 0, MEM0, session2)
    assert lp2.try_tier(ctx_again) is None and eng2.solves == 1  # reused in the interval


def test_deliverable_lp_failure_ends_the_clear() -> None:
    eng, solves, session, led = _setup(lambda e: _sol(ok=False))
    with pytest.raises(TierFailed, match=r"deliverable\[0\]"):
        DeliverableLP(solves).try_tier(led.tier(0, 0, MEM0, session))
    assert eng.solves == 1  # nothing fixed, so no widening


def _partial(ctx: TierContext) -> None:
    ctx.deliverable, ctx.q = _sol(np.array([5.0, 10.0, 0.0])), 15.0


@dataclass
class FakeQP:
    """A TierQP double: answers ``ok`` with ``x`` and records the guesses it gets."""

    ok: bool
    x: np.ndarray
    guesses: list = field(default_factory=list)

    def solve(self, d, w, mem, x_fixed, g_lo, g_hi, q_min, guess, limit):
        self.guesses.append((guess, limit))
        return TierQPResult(
            self.ok, self.x, np.zeros(1), np.zeros(2), 3, "" if self.ok else "cycled: x", guess
        )

    def guess_from(self, pf, pg, g_lo, g_hi, energy) -> ActiveSet:
        return ActiveSet()


def test_kkt_tier_warm_carry_and_lp_guesses() -> None:
    eng, _solves, session, led = _setup(lambda e: _sol())
    stats = PathStats()
    qp = FakeQP(True, np.array([7.5, 7.5, 0.0]))
    kkt = KKTTier(qp, np.zeros(1), stats, carry_iter=4)  # type: ignore[arg-type]
    ctx = led.tier(0, 0, MEM0, session)
    _partial(ctx)
    out = kkt.try_tier(ctx)
    assert out is not None and out.rounds == 1 and session.qp_path[(0, 0)] == "kkt"
    np.testing.assert_array_equal(led.bounds.x_fixed[MEM0], [7.5, 7.5])
    assert stats.qp_paths["kkt_lp"] == 1 and 0 in kkt.last and eng.solves == 0
    ctx2 = ClearLedger(session.inp, np.ones(3), 2).tier(0, 0, MEM0, session)
    _partial(ctx2)
    kkt.try_tier(ctx2)
    assert stats.qp_paths["kkt_warm"] == 1 and qp.guesses[-1][1] is None
    other = IntervalSession(session.inp)  # the next interval: the carried guess, limited
    ctx3 = ClearLedger(other.inp, np.ones(3), 2).tier(0, 0, MEM0, other)
    _partial(ctx3)
    kkt.try_tier(ctx3)
    assert stats.qp_paths["kkt_carry"] == 1 and qp.guesses[-1][1] == 4


def test_kkt_tier_passes_when_not_certified_or_off_its_path() -> None:
    _eng, _solves, session, led = _setup(lambda e: _sol())
    stats = PathStats()
    kkt = KKTTier(FakeQP(False, np.zeros(3)), np.zeros(1), stats)  # type: ignore[arg-type]
    ctx = led.tier(0, 0, MEM0, session)
    _partial(ctx)
    assert kkt.try_tier(ctx) is None and stats.qp_misses == {"lp:cycled": 1}
    session.qp_path[(0, 0)] = "solver"
    ctx2 = ClearLedger(session.inp, np.ones(3), 2).tier(0, 0, MEM0, session)
    _partial(ctx2)
    assert kkt.try_tier(ctx2) is None and ctx2.path == "solver"
    assert stats.qp_misses == {"lp:cycled": 1}  # not searched again


def test_solver_qp_answers_then_the_kkt_search_keeps_its_path() -> None:
    eng, solves, session, led = _setup(lambda e: _sol(np.array([6.0, 9.0, 0.0])))
    stats = PathStats()
    kkt = KKTTier(FakeQP(True, np.array([6.0, 9.0, 0.0])), np.zeros(1), stats)  # type: ignore[arg-type]
    ctx = led.tier(0, 0, MEM0, session)
    _partial(ctx)
    ctx.open_path("kkt")
    out = SolverQP(solves, stats, kkt).try_tier(ctx)
    assert out is not None and stats.qp_paths["solver"] == 1 and stats.qp_paths["kkt_warm"] == 1
    assert session.qp_path[(0, 0)] == "kkt" and not ctx.switched
    assert eng.objective[2] is not None  # the QP's diagonal was set


def test_solver_qp_failure_moves_the_tier_to_maxmin_and_reports_a_switch() -> None:
    _eng, solves, session, led = _setup(lambda e: _sol(ok=False))
    session.qp_path[(0, 0)] = "solver"  # chosen by an earlier clear of the interval
    ctx = led.tier(0, 0, MEM0, session)
    _partial(ctx)
    assert SolverQP(solves, PathStats()).try_tier(ctx) is None
    assert session.qp_path[(0, 0)] == "maxmin" and ctx.switched
    assert led.log.notes and "qp" in led.log.notes[-1]
    fell = ClearEvent(ClearEventKind.QP_FALLBACK, 0, "t")  # "t": the fake's termination word
    assert led.log.events == [fell] and led.log.notes[-1] == fell.note == "qp[0]:t->maxmin"


def test_a_tier_on_the_maxmin_path_says_so_in_every_later_clear() -> None:
    """After HiGHS's QP stopped in an earlier clear, the tier goes straight to the max-min
    LPs, and the clear's note still names the fallback: the final clear's rule is what the
    audit replays (final-rule[k]=maxmin); without the note IEEE-57 seed 11 t=1480 was
    replayed with the QP and rejected."""
    eng, solves, session, led = _setup(lambda e: _sol(ok=False))
    session.qp_path[(0, 0)] = "maxmin"  # HiGHS's QP stopped in an earlier clear
    ctx = led.tier(0, 0, MEM0, session)
    _partial(ctx)
    assert SolverQP(solves, PathStats()).try_tier(ctx) is None
    assert eng.solves == 0 and not ctx.switched
    assert QP_FALLBACK_RE.findall(";".join(led.log.notes)) == ["0"]
    assert [(e.kind, e.tier) for e in led.log.events] == [(ClearEventKind.QP_FALLBACK, 0)]


def test_max_min_lps_fix_bottlenecks_round_by_round() -> None:
    # round 1: node 0 is the bottleneck (dual share); round 2: node 1
    answers = iter(
        [
            _sol(np.array([5.0, 12.0, 0.0]), level=0.5, level_duals=np.array([0.1, 0.0, 0.0])),
            _sol(np.array([5.0, 14.0, 0.0]), level=0.3, level_duals=np.array([0.0, 0.05, 0.0])),
        ]
    )
    eng, solves, session, led = _setup(lambda e: next(answers))
    ctx = led.tier(0, 0, MEM0, session)
    _partial(ctx)
    out = MaxMinLPs(solves, max_rounds=50).try_tier(ctx)
    assert out.rounds == 2 and eng.solves == 2
    np.testing.assert_array_equal(led.bounds.x_fixed[MEM0], [5.0, 14.0])
    # the second round held node 0 at its level within the rule's band
    lo2 = eng.bounds_seen[1][0]
    assert lo2[0] == pytest.approx(5.0 - led.bounds.band[0])
    capped = iter([_sol(np.array([5.0, 12.0, 0.0]), level=0.5, level_duals=np.array([0.1, 0, 0]))])
    _eng3, solves3, session3, led3 = _setup(lambda e: next(capped))
    ctx3 = led3.tier(0, 0, MEM0, session3)
    _partial(ctx3)
    assert MaxMinLPs(solves3, max_rounds=1).try_tier(ctx3).rounds == 1
    assert any("rounds-capped" in n for n in led3.log.notes)
    assert led3.log.events == [ClearEvent(ClearEventKind.ROUNDS_CAPPED, 0)]


def test_run_chain_takes_the_first_outcome() -> None:
    eng, solves, session, led = _setup(lambda e: _sol(e.hi))
    stats = PathStats()
    chain = [WaterFillTrial(solves, stats), DeliverableLP(solves), MaxMinLPs(solves)]
    out = run_chain(chain, led.tier(0, 0, MEM0, session))  # type: ignore[arg-type]
    assert out.final is not None and eng.solves == 1 and stats.tier_paths["cp"] == 1


def test_clear_interval_opens_the_interval_on_the_allocator() -> None:
    from fpamm_opt.mechanism.clearing import clear_interval
    from fpamm_opt.mechanism.config import MechanismConfig, Policy
    from fpamm_opt.mechanism.copperplate import CopperPlateAllocator

    class Opening(CopperPlateAllocator):
        opened: ClassVar[list[IntervalInput]] = []

        def begin_interval(self, inp: IntervalInput) -> None:
            self.opened.append(inp)

    alloc = Opening([100.0], [10.0], [0, 0, 1], 2)
    inp = IntervalInput(0, np.array([10.0, 10.0, 20.0]), np.array([30.0]))
    res = clear_interval(
        alloc, inp, np.zeros(3), np.array([0, 0, 1]), 2, [1, 0], Policy.EQUAL, MechanismConfig()
    )
    assert res.dispatch.ok and alloc.opened == [inp] and alloc.opened[0] is inp


def test_session_holds_a_tier_anchor_only_under_the_same_bounds_and_within_tolerance() -> None:
    s = IntervalSession(IntervalInput(0, np.ones(3), np.ones(1)))
    mem = np.array([True, True, False])
    opened = (np.zeros(3), np.array([1.0, 1.0, 0.0]))
    x0 = np.array([0.5, 0.25, 0.0])
    x, _ = s.anchor((0, 0), mem, opened, x0, None, 1e-3)
    assert np.array_equal(x, x0) and s.n_anchored == 0  # the first answer is the anchor
    x, _ = s.anchor((0, 0), mem, opened, x0 + np.array([4e-4, 4e-4, 0.0]), None, 1e-3)
    assert np.array_equal(x, x0) and s.n_anchored == 1  # 8e-4 MW from the anchor: held
    x, _ = s.anchor((0, 0), mem, opened, x0 + np.array([6e-4, 6e-4, 0.0]), None, 1e-3)
    assert (
        np.allclose(x, x0 + np.array([6e-4, 6e-4, 0.0])) and s.n_anchored == 1
    )  # beyond: the new answer
    other = (np.zeros(3), np.array([1.0, 1.0, 1.0]))  # other bounds: an earlier tier moved
    y = x + np.array([1e-5, 0.0, 0.0])
    x, _ = s.anchor((0, 0), mem, other, y, None, 1e-3)
    assert np.array_equal(x, y) and s.n_anchored == 1
