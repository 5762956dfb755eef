"""The pipeline inside AllocationProblem: interval sessions, and the plain DC-OPF problem on
the DC-OPF block alone against the same problem on the full model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from fpamm_opt.mechanism.types import IntervalInput
from fpamm_opt.network import load_network
from fpamm_opt.opf import DCOPFProblem
from fpamm_opt.problem import AllocationProblem

pytestmark = pytest.mark.component


def _scarce(net, t: int = 0, share: float = 0.6) -> IntervalInput:
    return IntervalInput(t, net.node_demand_mw.copy(), net.gen_pmax_mw * share)


def test_a_session_per_interval_object(tiny_case: Path) -> None:
    net = load_network(tiny_case)
    prob = AllocationProblem(net, np.zeros(net.n_node, dtype=int), 1, rule="qp")
    inp = _scarce(net)
    opened = prob.begin_interval(inp)
    w = np.ones(net.n_node)
    assert prob.clear(inp, [0], w).ok and prob.session_for(inp) is opened
    assert prob.clear(inp, [0], w * 1.1).ok and prob.session_for(inp) is opened
    # an equal input in a new object is a new interval: nothing is keyed by its numbers
    twin = dataclasses.replace(inp)
    assert prob.clear(twin, [0], w).ok and prob.session_for(twin) is not opened


def test_the_deferred_token_completes_its_own_clear(tiny_case: Path) -> None:
    net = load_network(tiny_case)
    tiers = np.zeros(net.n_node, dtype=int)
    prob = AllocationProblem(net, tiers, 1, rule="maxmin", water_fill=False)
    inp = _scarce(net)
    w = np.ones(net.n_node)
    full = prob.clear(inp, [0], w)
    assert full.deferred_token is None
    lazy = prob.clear(inp, [0], w, dispatch=False)
    assert lazy.deferred and lazy.deferred_token is not None
    done = prob.complete(inp, lazy)
    assert done.ok and not done.deferred and done.deferred_token is None
    np.testing.assert_allclose(done.served_mw, full.served_mw, atol=1e-9)


@pytest.mark.parametrize("formulation", ["btheta", "ptdf"])
def test_dcopf_problem_on_the_block_alone_equals_the_full_model(formulation: str) -> None:
    net = load_network("case14", ratings="derived")
    alone = DCOPFProblem(net, formulation)
    full = AllocationProblem(
        net, np.zeros(net.n_node, dtype=int), 1, formulation=formulation, engine="pyomo"
    )
    assert not hasattr(alone.model, "alloc")
    for scale in (1.0, 0.9):
        d = net.node_demand_mw * scale
        a, b = alone.solve(d), full.solve_dcopf(d)
        assert a.status == b.status == "optimal"
        assert a.objective == pytest.approx(b.objective, rel=1e-9)
        np.testing.assert_allclose(a.p_gen_mw, b.p_gen_mw, atol=1e-6)
        np.testing.assert_allclose(a.lmp, b.lmp, atol=1e-6)
