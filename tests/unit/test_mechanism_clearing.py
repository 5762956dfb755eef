"""Copper-plate allocator and the per-interval clearing (MECHANISM.md section 3, Thm 2)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fpamm_opt.errors import InputError
from fpamm_opt.mechanism.clearing import ClearingResult, clear_interval
from fpamm_opt.mechanism.config import MechanismConfig, Policy, WeightForm
from fpamm_opt.mechanism.copperplate import CopperPlateAllocator, water_fill
from fpamm_opt.mechanism.deficit import DeficitState
from fpamm_opt.mechanism.memory import shortfall_ratio
from fpamm_opt.mechanism.types import (
    ClearEvent,
    ClearEventKind,
    Dispatch,
    IntervalInput,
    SolveStatus,
)
from fpamm_opt.mechanism.weights import fairness_weights, tier_normalisers

pytestmark = pytest.mark.unit

SETTINGS = settings(max_examples=100, deadline=None)


# ----------------------------------------------------------------- helpers
@dataclasses.dataclass
class Instance:
    d: np.ndarray
    s: np.ndarray
    tier: np.ndarray
    k: int
    order: list[int]
    pmax: np.ndarray
    avail: np.ndarray
    cost: np.ndarray
    #: deficit and requested energy at the start of the interval (no history by default)
    deficit: DeficitState | None = None

    def alloc(self) -> CopperPlateAllocator:
        return CopperPlateAllocator(self.pmax, self.cost, self.tier, self.k)

    def inp(self, t: int = 0) -> IntervalInput:
        return IntervalInput(t, self.d, self.avail)


@st.composite
def instances(draw: st.DrawFn) -> Instance:
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    k = draw(st.integers(1, 3))
    n = draw(st.integers(2, 9))
    tier = rng.integers(0, k, n)
    d = rng.uniform(0.5, 20.0, n)
    d[rng.random(n) < 0.1] = 0.0  # some nodes without demand
    s = rng.uniform(0.0, 1.0, n) * draw(st.sampled_from([0.05, 0.3, 1.0]))
    frac = draw(st.floats(0.1, 1.2))
    n_gen = int(rng.integers(1, 4))
    share = rng.dirichlet(np.ones(n_gen))
    avail = share * frac * d.sum()
    pmax = avail * rng.uniform(1.0, 1.5, n_gen)
    order = list(draw(st.permutations(range(k))))
    hist = d * rng.uniform(0.0, 50.0, n) * 0.5 * (rng.random(n) < 0.9)
    deficit = rng.normal(0.0, 0.02, n) * hist
    for j in range(k):  # a reachable state: each tier's deficits sum to 0
        if np.any(tier == j):
            deficit[tier == j] -= deficit[tier == j].mean()
    state = DeficitState(deficit, hist, 0.5)
    return Instance(d, s, tier, k, order, pmax, avail, rng.uniform(5, 50, n_gen), state)


def run(inst: Instance, policy: Policy | str, cfg: MechanismConfig) -> ClearingResult:
    deficit = inst.deficit or DeficitState.zero(inst.d.size, 0.5)
    return clear_interval(
        inst.alloc(), inst.inp(), inst.s, inst.tier, inst.k, inst.order, policy, cfg, deficit
    )


def check_lexicographic(inst: Instance, served: np.ndarray) -> None:
    tier_d = np.bincount(inst.tier, weights=inst.d, minlength=inst.k)
    tier_x = np.bincount(inst.tier, weights=served, minlength=inst.k)
    for pos, k in enumerate(inst.order):
        if tier_x[k] > 1e-9:
            for earlier in inst.order[:pos]:
                assert tier_x[earlier] >= tier_d[earlier] - 1e-7


# ------------------------------------------------------------ water-filling
def test_water_fill_by_hand() -> None:
    d = np.array([10.0, 10.0, 20.0])
    v = np.array([1.0, 2.0, 1.0])
    u, lam = water_fill(d, v, 8.0)  # lam (10 + 20 + 20) = 8
    np.testing.assert_allclose(u, [0.16, 0.32, 0.16])
    assert lam == pytest.approx(0.16)
    u, lam = water_fill(d, v, 38.5)  # node 1 capped at 1: lam (10 + 20) + 10 = 38.5
    np.testing.assert_allclose(u, [0.95, 1.0, 0.95])
    assert lam == pytest.approx(0.95)
    assert water_fill(d, v, 0.0)[1] == 0.0
    u, lam = water_fill(d, v, 40.0)
    np.testing.assert_array_equal(u, 1.0)
    assert lam == pytest.approx(1.0)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), frac=st.floats(0.0, 1.0))
def test_water_fill_property(seed: int, frac: float) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 10))
    d = rng.uniform(0.1, 10, n)
    v = rng.uniform(0.05, 1.05, n)
    r = frac * d.sum()
    u, lam = water_fill(d, v, r)
    assert np.all((u >= 0) & (u <= 1))
    assert d @ u == pytest.approx(r, abs=1e-9 * d.sum())
    np.testing.assert_allclose(u, np.minimum(1.0, lam * v), atol=1e-9)


# ------------------------------------------------------------- copper plate
def test_screen_merit_order_prices_and_pro_rata_shedding() -> None:
    alloc = CopperPlateAllocator([50.0, 50.0], [30.0, 10.0], [0, 0], 1, voll=9000.0)
    ok = alloc.screen(IntervalInput(0, np.array([30.0, 30.0]), np.array([50.0, 50.0])))
    assert ok.status is SolveStatus.OPTIMAL and ok.flow_mw.shape == (0,)
    np.testing.assert_allclose(ok.p_gen_mw, [10.0, 50.0])
    np.testing.assert_allclose(ok.lmp, [30.0, 30.0])
    short = alloc.screen(IntervalInput(1, np.array([60.0, 20.0]), np.array([20.0, 40.0])))
    np.testing.assert_allclose(short.served_mw, [45.0, 15.0])
    np.testing.assert_allclose(short.p_gen_mw, [20.0, 40.0])
    np.testing.assert_allclose(short.lmp, 9000.0)


def test_clear_lexicographic_and_weighted_by_hand() -> None:
    alloc = CopperPlateAllocator([100.0], [10.0], [0, 0, 1, 1], 2)
    inp = IntervalInput(0, np.array([10.0, 10.0, 20.0, 20.0]), np.array([50.0]))
    x = alloc.clear(inp, [1, 0], np.array([1.0, 3.0, 1.0, 1.0]))
    # Tier 1 first: all 40 MW; tier 0 gets 10 of 20 MW, u = lam v with v = (1, 1/3).
    np.testing.assert_allclose(x.served_mw, [2.5, 7.5, 20.0, 20.0])
    np.testing.assert_allclose(x.tier_deliverable_mw, [10.0, 40.0])
    np.testing.assert_allclose(x.tier_level, [0.75, 0.0])
    assert not x.cap_active and list(x.rounds) == [1, 1]
    np.testing.assert_allclose(x.p_gen_mw, [50.0])


def test_clear_rejects_bad_arguments() -> None:
    alloc = CopperPlateAllocator([100.0], [10.0], [0, 1], 2)
    inp = IntervalInput(0, np.array([10.0, 10.0]), np.array([5.0]))
    with pytest.raises(InputError, match="tier_order"):
        alloc.clear(inp, [0, 0], np.ones(2))
    with pytest.raises(InputError, match="weights"):
        alloc.clear(inp, [0, 1], np.array([1.0, 0.0]))
    with pytest.raises(InputError, match="demand"):
        alloc.screen(IntervalInput(0, np.array([10.0]), np.array([5.0])))


# ------------------------------------------------------------ clear_interval
MEMORY = MechanismConfig(weight_source="memory")
CONFIGS = [
    MEMORY,
    MechanismConfig(weight_source="memory", weight_form=WeightForm.RAW),
    MechanismConfig(
        weight_source="memory", q_target=0.9, gamma_max=1.0, s_floor=0.001, epsilon=0.02
    ),
    MechanismConfig(weight_source="memory", beta=0.5, q_target=0.2, m_max=5),
    MechanismConfig(),  # the deficit
    MechanismConfig(weight_form=WeightForm.RAW),
    MechanismConfig(weight_source="both", q_target=0.9, gamma_max=1.0, deficit_floor=1e-3),
    MechanismConfig(weight_source="both", beta=0.5, q_target=0.2, m_max=5),
]


@SETTINGS
@given(inst=instances(), cfg=st.sampled_from(CONFIGS), policy=st.sampled_from(list(Policy)))
def test_clearing_properties(inst: Instance, cfg: MechanismConfig, policy: Policy) -> None:
    res = run(inst, policy, cfg)
    x = res.dispatch.served_mw
    assert res.ok and res.status == "optimal"
    assert np.all(x >= -1e-12) and np.all(x <= inst.d + 1e-9)
    total_d = inst.d.sum()
    supply = min(total_d, inst.avail.sum())
    assert x.sum() == pytest.approx(supply, abs=1e-7 * max(total_d, 1))
    assert res.dispatch.p_gen_mw.sum() == pytest.approx(x.sum(), abs=1e-7 * max(total_d, 1))
    assert np.all(res.dispatch.p_gen_mw <= inst.avail + 1e-9)
    assert res.scarce == (inst.avail.sum() < total_d * (1 - cfg.scarcity_tol))
    assert res.deliverable_mw == pytest.approx(supply)
    if res.scarce and policy is not Policy.LMP:
        check_lexicographic(inst, x)
    if not res.scarce or policy is Policy.LMP:
        assert res.residuals.size == 0 and np.isnan(res.q_hat)
    if res.scarce and policy is Policy.EQUAL:
        np.testing.assert_array_equal(res.residuals, [0.0])
        assert res.n_solves == 2 and res.q_bound == 0.0
    if res.scarce and policy is Policy.FPAMM:
        r = res.residuals
        assert 1 <= r.size <= cfg.m_max
        assert r[-1] <= cfg.tol * total_d or r.size == cfg.m_max
        assert res.n_solves == 2 + r.size
        assert 0 < res.gamma <= cfg.gamma_max
        if res.q_bound_applies:
            assert res.q_bound <= cfg.q_target + 1e-12
            if np.isfinite(res.q_hat):
                assert res.q_hat <= res.q_bound * (1 + 1e-6) + 1e-9


def test_bound_applies_and_is_tight_enough_on_many_instances() -> None:
    """Sweep: the bound applies in most scarce copper-plate intervals and always holds."""
    rng = np.random.default_rng(2024)
    n_applies = n_measured = 0
    worst = 0.0
    for _ in range(300):
        k = int(rng.integers(1, 3))
        n = int(rng.integers(3, 8))
        tier = rng.integers(0, k, n)
        d = rng.uniform(1, 10, n)
        s = rng.uniform(0, 0.4, n)
        # Supply serves every tier but the last in the order partially: weighted tiers.
        order = list(rng.permutation(k))
        tier_d = np.bincount(tier, weights=d, minlength=k)
        first = sum(tier_d[j] for j in order[:-1])
        avail = np.array([first + rng.uniform(0.5, 0.95) * tier_d[order[-1]]])
        inst = Instance(d, s, tier, k, order, avail * 1.1, avail, np.array([10.0]))
        res = run(inst, Policy.FPAMM, dataclasses.replace(MEMORY, q_target=0.8, gamma_max=1.0))
        if res.q_bound_applies:
            n_applies += 1
            assert res.q_bound <= 0.8 + 1e-12
            if np.isfinite(res.q_hat):
                n_measured += 1
                worst = max(worst, res.q_hat / res.q_bound)
                assert res.q_hat <= res.q_bound * (1 + 1e-6)
    assert n_applies > 200 and n_measured > 100
    assert worst > 0.05  # the bound is not vacuous


def test_non_scarce_fpamm_records_memory_weights() -> None:
    inst = Instance(
        np.array([10.0, 20.0]),
        np.array([0.1, 0.3]),
        np.array([0, 0]),
        1,
        [0],
        np.array([50.0]),
        np.array([40.0]),
        np.array([10.0]),
    )
    cfg = MEMORY
    res = run(inst, Policy.FPAMM, cfg)
    assert not res.scarce and res.dispatch is res.screen and res.n_solves == 1
    m = tier_normalisers(inst.s, inst.tier, 1, cfg.s_floor)
    np.testing.assert_allclose(
        res.weights, fairness_weights(inst.s, inst.tier, m, 0.05, WeightForm.RELATIVE)
    )
    assert np.isnan(res.q_bound) and np.isnan(res.gamma)
    np.testing.assert_array_equal(run(inst, Policy.EQUAL, cfg).weights, 1.0)


def test_fpamm_favours_the_node_with_more_memory() -> None:
    inst = Instance(
        np.array([10.0, 10.0]),
        np.array([0.0, 0.2]),
        np.array([0, 0]),
        1,
        [0],
        np.array([50.0]),
        np.array([15.0]),
        np.array([10.0]),
    )
    fp = run(inst, Policy.FPAMM, MEMORY)
    ew = run(inst, Policy.EQUAL, MEMORY)
    np.testing.assert_allclose(ew.dispatch.served_mw, [7.5, 7.5])
    u = shortfall_ratio(fp.dispatch.served_mw, inst.d)
    assert u[1] < u[0]
    assert fp.q_bound_applies and fp.q_bound <= 0.5
    assert fp.weights[1] > fp.weights[0]


# ----------------------------------------------------------------- failures
class Flaky(CopperPlateAllocator):
    """Copper plate whose ``clear`` fails from its ``fail_at``-th call on."""

    def __init__(self, fail_at: int, screen_fails: bool = False) -> None:
        super().__init__([100.0], [10.0], [0, 0], 1)
        self.calls = 0
        self.fail_at = fail_at
        self.screen_fails = screen_fails

    def screen(self, inp: IntervalInput) -> Dispatch:
        disp = super().screen(inp)
        if self.screen_fails:
            return dataclasses.replace(disp, status=SolveStatus.ERROR)
        return disp

    def clear(self, inp: IntervalInput, tier_order: Sequence[int], weights: np.ndarray) -> Dispatch:
        self.calls += 1
        disp = super().clear(inp, tier_order, weights)
        if self.calls >= self.fail_at:
            return dataclasses.replace(disp, status=SolveStatus.INFEASIBLE)
        return dataclasses.replace(disp, note="retry")


def _flaky_run(alloc: Flaky) -> ClearingResult:
    inp = IntervalInput(0, np.array([10.0, 10.0]), np.array([12.0]))
    return clear_interval(
        alloc, inp, np.array([0.0, 0.3]), np.array([0, 0]), 1, [0], Policy.FPAMM, MEMORY
    )


def test_clear_failure_returns_last_ok_iterate() -> None:
    res = _flaky_run(Flaky(fail_at=3))
    assert res.ok and res.dispatch.ok
    assert res.status == "optimal;error:clear:infeasible;retry"
    assert res.residuals.size == 1 and not res.q_bound_applies


class Fallback(CopperPlateAllocator):
    """Copper plate whose clears number ``marked`` carry the allocator's QP-fallback event
    (and its note)."""

    def __init__(self, marked: set[int]) -> None:
        super().__init__([100.0], [10.0], [0, 0], 1)
        self.calls = 0
        self.marked = marked

    def clear(self, inp: IntervalInput, tier_order: Sequence[int], weights: np.ndarray) -> Dispatch:
        self.calls += 1
        disp = super().clear(inp, tier_order, weights)
        if self.calls not in self.marked:
            return dataclasses.replace(disp, note="")
        ev = ClearEvent(ClearEventKind.QP_FALLBACK, 0, "Solve error")
        return dataclasses.replace(disp, note=ev.note, events=(ev,))


def _fallback_run(marked: set[int]) -> tuple[ClearingResult, int]:
    alloc = Fallback(marked)
    inp = IntervalInput(0, np.array([10.0, 10.0]), np.array([12.0]))
    res = clear_interval(
        alloc, inp, np.array([0.0, 0.3]), np.array([0, 0]), 1, [0], Policy.FPAMM, MEMORY
    )
    return res, alloc.calls


def test_status_marks_the_final_clears_rule() -> None:
    """An earlier iterate's fallback is a note; only the final clear's earns ``final-rule``."""
    fell_back = ClearEvent(ClearEventKind.QP_FALLBACK, 0, "Solve error")
    final = ClearEvent(ClearEventKind.FINAL_MAXMIN, 0)
    res, calls = _fallback_run({1})
    assert calls > 1
    assert "qp[0]:Solve error->maxmin" in res.status and "final-rule" not in res.status
    assert res.events == (fell_back,)  # typed: the event, no final mark
    res, calls = _fallback_run(set(range(1, 100)))
    assert res.status.endswith("final-rule[0]=maxmin")
    assert res.events == (fell_back, final) and final.note == "final-rule[0]=maxmin"


def test_first_clear_failure_falls_back_to_screen() -> None:
    res = _flaky_run(Flaky(fail_at=1))
    assert res.ok and res.dispatch is res.screen
    assert res.status.startswith("optimal;error:clear:infeasible")


def test_screen_failure_is_scarce_and_estimated() -> None:
    res = _flaky_run(Flaky(fail_at=100, screen_fails=True))
    assert res.scarce and res.ok and res.deliverable_estimated
    assert res.deliverable_mw == pytest.approx(12.0)
    assert res.status.startswith("optimal;error:screen:error")
    both = _flaky_run(Flaky(fail_at=1, screen_fails=True))
    assert not both.ok and both.status.startswith("error;")


# ------------------------------------------------------- one path per interval
class _SwitchOnce:
    """A copper-plate allocator whose ``switch_at``-th clear reports a solve-path change
    (and answers with every load nudged, as another path's tolerance would)."""

    def __init__(self, inner: CopperPlateAllocator, switch_at: int) -> None:
        self.inner, self.switch_at, self.n_clear = inner, switch_at, 0
        self.n_node, self.n_gen = inner.n_node, inner.n_gen
        self.n_branch, self.n_tier = inner.n_branch, inner.n_tier

    def screen(self, inp: IntervalInput) -> Dispatch:
        return self.inner.screen(inp)

    def clear(self, inp: IntervalInput, order: Sequence[int], w: np.ndarray) -> Dispatch:
        self.n_clear += 1
        disp = self.inner.clear(inp, order, w)
        if self.n_clear == self.switch_at:
            nudged = disp.served_mw * (1.0 - 1e-3)
            return dataclasses.replace(disp, served_mw=nudged, path_switched=True)
        return disp


def test_a_solve_path_change_restarts_the_fixed_point() -> None:
    """The residuals recorded after a path change come from one operator: the iteration
    starts again from x^0, the status says so, and the clear before the change is not
    compared with the ones after it."""
    d = np.array([10.0, 20.0, 30.0])
    inner = CopperPlateAllocator(np.array([40.0]), np.array([1.0]), np.zeros(3, int), 1)
    alloc = _SwitchOnce(inner, switch_at=2)
    cfg = MechanismConfig(beta=0.2, epsilon=0.05, weight_source="memory")
    s = np.array([0.0, 0.5, 1.0])
    res = clear_interval(
        alloc, IntervalInput(0, d, np.array([40.0])), s, np.zeros(3, int), 1, [0], "fpamm", cfg
    )
    plain = clear_interval(
        inner, IntervalInput(0, d, np.array([40.0])), s, np.zeros(3, int), 1, [0], "fpamm", cfg
    )
    assert res.ok and "fixed-point-restarted:path-change" in res.status
    assert "fixed-point-restarted" not in plain.status
    # the nudged clear never enters a residual: after the restart the iterates are the plain
    # operator's, from x^0
    np.testing.assert_allclose(res.residuals, plain.residuals, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(res.dispatch.served_mw, plain.dispatch.served_mw, atol=1e-9)
