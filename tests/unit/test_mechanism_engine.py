"""The stateful mechanism: steps, common random numbers, trigger and hold, fairness effect."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pytest

from fpamm_opt.errors import InputError, SolverError
from fpamm_opt.mechanism.config import MechanismConfig, Policy
from fpamm_opt.mechanism.copperplate import CopperPlateAllocator, single_bus_network
from fpamm_opt.mechanism.engine import Mechanism, StepRecord
from fpamm_opt.mechanism.memory import update_memory
from fpamm_opt.mechanism.trigger import HoldChecker, TriggerState, trigger_vector
from fpamm_opt.mechanism.types import Dispatch, IntervalInput, IntervalStatus, SolveStatus
from fpamm_opt.network import Convention, NetworkData

pytestmark = pytest.mark.unit

D_BASE = np.array([10.0, 20.0, 15.0, 5.0])
TIER = np.array([0, 1, 1, 1])
PMAX = np.array([30.0, 30.0])
COST = np.array([10.0, 40.0])


def make(policy: Policy | str, seed: int = 7, **cfg_kw: float) -> Mechanism:
    net = single_bus_network(D_BASE, PMAX, COST)
    alloc = CopperPlateAllocator.from_network(net, TIER, 2)
    return Mechanism(
        alloc,
        net,
        TIER,
        np.array([0.7, 0.3]),
        policy,
        MechanismConfig(**cfg_kw),
        np.random.default_rng(seed),
    )


def inputs(n: int, seed: int = 1) -> list[IntervalInput]:
    rng = np.random.default_rng(seed)
    out = []
    for t in range(n):
        d = D_BASE * rng.uniform(0.8, 1.2, D_BASE.size)
        scarce = (t // 10) % 2 == 1
        avail = PMAX * (rng.uniform(0.4, 0.7, 2) if scarce else np.ones(2))
        out.append(IntervalInput(t, d, avail))
    return out


def records_equal(a: StepRecord, b: StepRecord) -> bool:
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if f.name == "solve_s":
            continue
        if isinstance(x, np.ndarray):
            if not np.array_equal(x, y, equal_nan=True):
                return False
        elif isinstance(x, float) and np.isnan(x):
            if not np.isnan(y):
                return False
        elif x != y:
            return False
    return True


# ------------------------------------------------------------------- steps
def test_step_records_are_consistent() -> None:
    mech = make(Policy.FPAMM)
    cum_x = np.zeros(4)
    cum_d = np.zeros(4)
    s = np.zeros(4)
    n_scarce = 0
    for inp in inputs(60):
        r = mech.step(inp)
        np.testing.assert_array_equal(r.memory_before, s)
        np.testing.assert_allclose(r.memory_after, update_memory(s, r.shortfall_ratio, 0.05))
        s = r.memory_after
        cum_x += r.served_mw
        cum_d += r.demand_mw
        np.testing.assert_allclose(r.delivery_ratio, cum_x / cum_d)
        assert np.all(r.served_mw <= r.demand_mw + 1e-9)
        assert r.executed and r.status == "optimal"
        assert 0 <= r.amm_price <= 1000.0
        assert r.cost == pytest.approx(COST @ r.p_gen_mw)
        assert r.flow_mw.shape == (0,) and r.lmp.shape == (4,)
        n_scarce += r.scarce
        if r.scarce:
            assert r.amm_price > 0 and r.residuals.size >= 1
            assert r.q_bound <= 0.5 + 1e-12 or not r.q_bound_applies
        else:
            assert r.amm_price == 0 and r.residuals.size == 0
    assert 20 <= n_scarce <= 40
    np.testing.assert_array_equal(mech.memory, s)


def test_determinism_same_seed_same_records() -> None:
    a, b = make(Policy.FPAMM, seed=11), make(Policy.FPAMM, seed=11)
    for inp in inputs(40):
        assert records_equal(a.step(inp), b.step(inp))


def test_common_random_numbers_across_policies() -> None:
    mechs = [make(p, seed=3) for p in Policy]
    for inp in inputs(40):
        orders = [m.step(inp).tier_order.tolist() for m in mechs]
        assert orders[0] == orders[1] == orders[2]


def test_lmp_policy_uses_screen_and_equal_uses_unit_weights() -> None:
    lmp, ew = make(Policy.LMP), make(Policy.EQUAL)
    for inp in inputs(30):
        r_lmp, r_ew = lmp.step(inp), ew.step(inp)
        np.testing.assert_array_equal(r_ew.weights, 1.0)
        if r_lmp.scarce:
            ratio = r_lmp.served_mw / r_lmp.demand_mw
            np.testing.assert_allclose(ratio, ratio[0])  # copper-plate screen: pro rata
            assert r_lmp.residuals.size == 0
            np.testing.assert_array_equal(r_ew.residuals, [0.0])


class Broken(CopperPlateAllocator):
    def screen(self, inp: IntervalInput) -> Dispatch:
        return dataclasses.replace(super().screen(inp), status=SolveStatus.ERROR)

    def clear(self, inp: IntervalInput, tier_order: Sequence[int], weights: np.ndarray) -> Dispatch:
        return dataclasses.replace(
            super().clear(inp, tier_order, weights), status=SolveStatus.TIME_LIMIT
        )


def test_failed_step_raises_and_leaves_state_unchanged() -> None:
    net = single_bus_network(D_BASE, PMAX, COST)
    rng = np.random.default_rng(0)
    mech = Mechanism(
        Broken.from_network(net, TIER, 2),
        net,
        TIER,
        np.array([0.7, 0.3]),
        Policy.FPAMM,
        MechanismConfig(),
        rng,
        initial_memory=np.full(4, 0.2),
    )
    before = rng.bit_generator.state
    with pytest.raises(SolverError, match="interval 0"):
        mech.step(inputs(1)[0])
    assert rng.bit_generator.state == before
    np.testing.assert_array_equal(mech.memory, 0.2)


def test_constructor_validates() -> None:
    net = single_bus_network(D_BASE, PMAX, COST)
    alloc = CopperPlateAllocator.from_network(net, TIER, 2)
    rng = np.random.default_rng(0)
    with pytest.raises(InputError, match="node_tier"):
        Mechanism(
            alloc, net, np.array([0, 1]), np.array([0.7, 0.3]), "fpamm", MechanismConfig(), rng
        )
    with pytest.raises(InputError, match="initial_memory"):
        Mechanism(
            alloc,
            net,
            TIER,
            np.array([0.7, 0.3]),
            "fpamm",
            MechanismConfig(),
            rng,
            initial_memory=np.full(4, 1.5),
        )
    with pytest.raises(InputError, match="allocator sizes"):
        Mechanism(
            alloc, net, np.zeros(4, dtype=int), np.array([1.0]), "fpamm", MechanismConfig(), rng
        )


# ------------------------------------------------------------ trigger / hold
def test_trigger_vector_and_state() -> None:
    z = trigger_vector(
        np.array([5.0, 0.0]),
        np.array([10.0, 0.0]),
        np.array([0.0, 3.0]),
        np.array([0.0, 6.0]),
        np.array([0.1, 0.2]),
    )
    np.testing.assert_allclose(z, [0.5, 1.0, 1.0, 0.5, 0.1, 0.2])
    st = TriggerState(0.1)
    assert st.should_execute(z)
    st.record_execution(0, z, np.ones(2), np.ones(2), np.array([0]), np.ones(2))
    assert not st.should_execute(z + 0.05)
    assert st.should_execute(z + np.r_[0, 0, 0, 0, 0, 0.2])


def three_bus(rate_mw: float) -> NetworkData:
    """Gen at bus 0, loads at buses 1 and 2, a triangle of identical lines."""
    i = np.array
    return NetworkData(
        name="tri",
        source="test",
        base_mva=100.0,
        convention=Convention.MATPOWER,
        bus_ids=i([1, 2, 3]),
        bus_ref=i([True, False, False]),
        bus_island=i([0, 0, 0]),
        bus_fixed_withdrawal_mw=np.zeros(3),
        node_bus=i([1, 2]),
        node_demand_mw=i([30.0, 30.0]),
        gen_bus=i([0]),
        gen_pmin_mw=np.zeros(1),
        gen_pmax_mw=i([100.0]),
        gen_cost_c2=np.zeros(1),
        gen_cost_c1=i([10.0]),
        gen_cost_c0=np.zeros(1),
        gen_p_set_mw=np.zeros(1),
        branch_from=i([0, 0, 1]),
        branch_to=i([1, 2, 2]),
        branch_b_pu=np.full(3, 10.0),
        branch_shift_rad=np.zeros(3),
        branch_rate_mw=np.full(3, rate_mw),
        branch_angmin_rad=np.full(3, -np.inf),
        branch_angmax_rad=np.full(3, np.inf),
        branch_ids=i([1, 2, 3]),
    )


def test_hold_checker_on_a_network() -> None:
    hc = HoldChecker(three_bus(rate_mw=35.0))
    ratio = np.array([1.0, 0.5])
    held = hc.held_dispatch(ratio, np.array([40.0]), np.array([40.0, 40.0]), np.array([100.0]))
    assert held is not None and held.status is SolveStatus.OPTIMAL and held.n_solves == 0
    np.testing.assert_allclose(held.served_mw, [40.0, 20.0])
    np.testing.assert_allclose(held.p_gen_mw, [60.0])
    # Symmetric triangle: 0->1 = (2*40 + 20)/3, 0->2 = (40 + 2*20)/3, 1->2 = (20 - 40)/3.
    np.testing.assert_allclose(held.flow_mw, [100 / 3, 80 / 3, -20 / 3])
    assert (
        hc.held_dispatch(ratio, np.array([40.0]), np.array([40.0, 40.0]), np.array([50.0])) is None
    )  # p > available
    assert (
        hc.held_dispatch(ratio, np.array([40.0]), np.array([50.0, 40.0]), np.array([100.0])) is None
    )  # flow 0->1 = 40 > 35
    zero = hc.held_dispatch(ratio, np.array([0.0]), np.array([10.0, 10.0]), np.array([100.0]))
    assert zero is not None and zero.p_gen_mw[0] == pytest.approx(15.0)


def test_event_trigger_holds_and_audits_without_changing_state() -> None:
    rng = np.random.default_rng(5)
    seq = []
    for t in range(80):
        d = D_BASE * (1 + 0.01 * rng.standard_normal(4))
        seq.append(IntervalInput(t, d, PMAX * 0.6))  # always scarce, small jitter
    audit = make(Policy.FPAMM, trigger_theta=0.05, audit_every=1)
    quiet = make(Policy.FPAMM, trigger_theta=0.05, audit_every=0)
    every2 = make(Policy.FPAMM, trigger_theta=0.05, audit_every=2)
    n_held = n_audited = n_audited2 = 0
    for inp in seq:
        ra, rq, r2 = audit.step(inp), quiet.step(inp), every2.step(inp)
        for f in ("served_mw", "memory_after", "tier_order", "executed"):
            np.testing.assert_array_equal(getattr(ra, f), getattr(rq, f))
        if not ra.executed:
            n_held += 1
            assert (
                ra.status is IntervalStatus.HELD and ra.n_solves == 0 and ra.deliverable_estimated
            )
            assert np.isfinite(ra.tracking_error) and ra.audit_n_solves > 0
            assert np.isnan(rq.tracking_error) and rq.audit_n_solves == 0
            assert ra.tracking_error <= 0.5
            n_audited += 1
        n_audited2 += bool(np.isfinite(r2.tracking_error))
    assert audit.z_last is not None
    assert 0 < audit.n_executed < 80 and n_held == audit.n_held > 10
    assert n_audited2 == n_held // 2


def test_held_interval_keeps_tier_order_of_last_execution() -> None:
    mech = make(Policy.EQUAL, trigger_theta=0.5)
    inp = IntervalInput(0, D_BASE, PMAX * 0.6)
    first = mech.step(inp)
    for t in range(1, 15):
        r = mech.step(dataclasses.replace(inp, t=t))
        assert not r.executed
        np.testing.assert_array_equal(r.tier_order, first.tier_order)
        np.testing.assert_allclose(r.served_mw, first.served_mw)


def test_hold_is_dropped_when_infeasible() -> None:
    mech = make(Policy.FPAMM, trigger_theta=10.0)  # z never moves enough
    r0 = mech.step(IntervalInput(0, D_BASE, PMAX))  # everything served
    r1 = mech.step(IntervalInput(1, D_BASE, PMAX * 0.5))  # holding ratio 1 needs 50 > 30 MW
    assert r0.executed and r1.executed and r1.scarce


# ---------------------------------------------------------- fairness effect
class IntermittentWeakBus(CopperPlateAllocator):
    """Copper plate where node 0 is behind a line congested every third interval.

    In those intervals node 0 can receive at most ``cap * d_0`` (a network limit the weights
    cannot undo). Within a tier the max-min rule then gives ``u_i = clip(lam v_i, l_i, 1)``
    with ``l_0 = 1 - cap``; ``lam`` by bisection.
    """

    cap = 0.5

    def clear(self, inp: IntervalInput, tier_order: Sequence[int], weights: np.ndarray) -> Dispatch:
        if inp.t % 3:
            return super().clear(inp, tier_order, weights)
        d = np.asarray(inp.demand_mw, dtype=float)
        lo = np.zeros(d.size)
        lo[0] = 1.0 - self.cap
        v = 1.0 / np.asarray(weights, dtype=float)
        supply = min(float(inp.available_mw.sum()), float(d @ (1 - lo)))
        shortfall = d.sum() - supply
        a, b = 0.0, 1.0 / v.min()
        for _ in range(200):
            lam = 0.5 * (a + b)
            if d @ np.clip(lam * v, lo, 1.0) < shortfall:
                a = lam
            else:
                b = lam
        served = d * (1 - np.clip(b * v, lo, 1.0))
        base = super().clear(inp, tier_order, weights)
        return dataclasses.replace(
            base,
            served_mw=served,
            p_gen_mw=self._merit_dispatch(served.sum(), inp.available_mw),
            tier_level=np.array([b]),
            tier_deliverable_mw=np.array([supply]),
            rounds=np.array([2]),
            cap_active=True,
        )


def test_fpamm_compensates_an_intermittently_weak_bus() -> None:
    """FP-AMM narrows the spread of delivery ratios that equal weights leave.

    Three equal nodes in one tier, supply 80 % of demand every interval; every third interval
    node 0 is congested and gets at most half its demand. Equal weights: node 0 ends near
    F = 0.70, the others near 0.85 (tier aggregate 0.80). FP-AMM's memory makes node 0 weigh
    more in the uncongested intervals, so it catches up there.
    """
    d = np.full(3, 10.0)
    tier = np.zeros(3, dtype=int)
    net = single_bus_network(d, np.array([30.0]), np.array([10.0]))
    seq = [IntervalInput(t, d, np.array([24.0])) for t in range(300)]
    final = {}
    served = {}
    for policy in (Policy.EQUAL, Policy.FPAMM):
        alloc = IntermittentWeakBus.from_network(net, tier, 1)
        mech = Mechanism(
            alloc, net, tier, np.array([1.0]), policy, MechanismConfig(), np.random.default_rng(0)
        )
        recs = [mech.step(inp) for inp in seq]
        assert all(r.scarce and r.status == "optimal" for r in recs)
        final[policy] = recs[-1].delivery_ratio
        served[policy] = np.array([r.served_mw for r in recs])
    agg = 0.8  # the copper plate serves all 24 MW under both policies
    for policy in Policy.EQUAL, Policy.FPAMM:
        assert served[policy].sum(axis=1) == pytest.approx(24.0)
    spread_ew = np.max(np.abs(final[Policy.EQUAL] - agg))
    spread_fp = np.max(np.abs(final[Policy.FPAMM] - agg))
    assert spread_ew == pytest.approx(0.1, abs=0.005)
    assert not np.allclose(served[Policy.EQUAL], served[Policy.FPAMM])
    assert spread_fp < 0.4 * spread_ew
    assert final[Policy.FPAMM][0] > final[Policy.EQUAL][0] + 0.05


def test_stored_flows_are_the_dc_flows_of_the_stored_injections() -> None:
    """A solver's ``pf`` off the flow of its own injections (B-θ rows met only to a scaled
    tolerance: SimBench EHV t = 1228, 4.1 MW) is not what a run stores."""
    from fpamm_opt.mechanism.engine import stored_flows_mw
    from fpamm_opt.network import load_network

    net = load_network("case14")
    x = net.node_demand_mw * 0.9
    p = np.full(net.n_gen, float(x.sum() + net.bus_fixed_withdrawal_mw.sum()) / net.n_gen)
    exact = net.flows_from_injections(net.bus_injection_mw(p, x))
    solver = exact.copy()
    solver[3] += 4.1
    np.testing.assert_allclose(stored_flows_mw(net, p, x, solver), exact, atol=1e-9)
    plate = np.zeros(0)  # a copper plate has no flows: kept as they are
    assert stored_flows_mw(net, p, x, plate).shape == (0,)
    nan_p = np.full(net.n_gen, np.nan)
    assert np.array_equal(stored_flows_mw(net, nan_p, x, solver), solver)
