"""The one NumPy ``X(t)`` check (fpamm_opt.feasible) and the three callers that share it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fpamm_opt.feasible import XComponent, dc_flows_mw, x_violations
from fpamm_opt.mechanism.trigger import HoldChecker
from fpamm_opt.mechanism.types import Dispatch, SolveStatus
from fpamm_opt.sim.run import dispatch_violation_mw
from tests.unit.test_mechanism_engine import three_bus

pytestmark = pytest.mark.unit

AVAIL = np.array([100.0])
DEMAND = np.array([40.0, 40.0])


def _dispatch(p: list[float], x: list[float]) -> Dispatch:
    return Dispatch(SolveStatus.OPTIMAL, np.array(x), np.array(p), np.zeros(3), None, 1, 0.0)


def test_a_point_of_x_has_no_violation() -> None:
    net = three_bus(rate_mw=50.0)
    v = x_violations(net, np.array([60.0]), np.array([40.0, 20.0]), AVAIL, DEMAND)
    assert set(v.by_component()) == set(XComponent)
    assert v.worst_mw().shape == (1,)
    assert v.worst_mw()[0] == pytest.approx(0.0, abs=1e-9)
    # Symmetric triangle: 0->1 = (2*40 + 20)/3, 0->2 = (40 + 2*20)/3, 1->2 = (20 - 40)/3.
    np.testing.assert_allclose(v.flows_mw[0], [100 / 3, 80 / 3, -20 / 3])


@pytest.mark.parametrize(
    ("p", "x", "component", "mw"),
    [
        ([70.0], [40.0, 20.0], XComponent.BALANCE, 10.0),
        ([-5.0], [-5.0, 0.0], XComponent.GEN_BELOW_LOWER, 5.0),
        ([110.0], [40.0, 70.0], XComponent.GEN_ABOVE_AVAILABLE, 10.0),
        ([40.0], [-2.0, 42.0], XComponent.SERVED_BELOW_ZERO, 2.0),
        ([85.0], [40.0, 45.0], XComponent.SERVED_ABOVE_DEMAND, 5.0),
        ([75.0], [40.0, 35.0], XComponent.FLOW_ABOVE_RATING, 115 / 3 - 35.0),
    ],
)
def test_each_component_is_measured_in_mw(
    p: list[float], x: list[float], component: XComponent, mw: float
) -> None:
    net = three_bus(rate_mw=35.0) if component is XComponent.FLOW_ABOVE_RATING else three_bus(1e3)
    v = x_violations(net, np.array(p), np.array(x), AVAIL, np.array([45.0, 40.0]))
    worst = {c: float(a.max()) for c, a in v.by_component().items()}
    assert worst[component] == pytest.approx(mw)
    assert v.worst_mw()[0] == pytest.approx(max(worst.values()))


def test_many_intervals_and_given_flows_agree_with_one_at_a_time() -> None:
    net = three_bus(rate_mw=35.0)
    rng = np.random.default_rng(3)
    x = rng.uniform(0.0, 45.0, size=(20, 2))
    p = x.sum(axis=1, keepdims=True) + rng.normal(0.0, 1.0, size=(20, 1))
    avail = np.full((20, 1), 80.0)
    demand = np.full((20, 2), 40.0)
    inj = net.bus_injection_mw(p, x)
    many = x_violations(net, p, x, avail, demand, flows_mw=dc_flows_mw(net, inj))
    for t in range(20):
        one = x_violations(net, p[t], x[t], avail[t], demand[t])
        assert one.worst_mw()[0] == pytest.approx(many.worst_mw()[t], abs=1e-9)
        # the run loop's check is the same number
        assert dispatch_violation_mw(
            net, demand[t], avail[t], _dispatch(list(p[t]), list(x[t]))
        ) == pytest.approx(many.worst_mw()[t], abs=1e-9)


def test_nan_is_a_violation_and_the_run_loop_says_inf() -> None:
    net = three_bus(rate_mw=50.0)
    v = x_violations(net, np.array([np.nan]), np.array([40.0, 20.0]), AVAIL, DEMAND)
    assert np.isinf(v.worst_mw()[0])
    assert dispatch_violation_mw(net, DEMAND, AVAIL, _dispatch([np.nan], [40.0, 20.0])) == np.inf


def test_hold_checker_uses_the_x_t_bounds_and_angle_limits_as_flow_bounds() -> None:
    base = three_bus(rate_mw=1e3)
    # angle limit 0.02 rad on line 0->1 is a flow bound of 100 MVA * 10 pu * 0.02 = 20 MW
    net = dataclasses.replace(base, branch_angmax_rad=np.array([0.02, np.inf, np.inf]))
    hc = HoldChecker(net)
    ratio = np.array([1.0, 0.5])
    assert hc.held_dispatch(ratio, np.array([40.0]), np.array([40.0, 40.0]), AVAIL) is None
    held = hc.held_dispatch(ratio, np.array([40.0]), np.array([10.0, 10.0]), AVAIL)
    assert held is not None
    assert x_violations(net, held.p_gen_mw, held.served_mw, AVAIL, DEMAND).worst_mw()[0] <= 1e-6
