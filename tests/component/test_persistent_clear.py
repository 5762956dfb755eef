"""An interval cleared on a persistent, parameter-updated model equals a fresh model's clearing."""

from __future__ import annotations

import numpy as np
import pytest

from fpamm_opt.mechanism.types import IntervalInput
from fpamm_opt.network import load_network
from fpamm_opt.problem import AllocationProblem

pytestmark = pytest.mark.component


@pytest.mark.parametrize("engine", ["pyomo", "highs"])
@pytest.mark.parametrize("rule", ["maxmin", "qp"])
def test_persistent_clear_equals_fresh_model(engine: str, rule: str) -> None:
    net = load_network("case14", ratings="derived", rating_min_mw=10.0)
    rng = np.random.default_rng(7)
    tiers = (rng.random(net.n_node) < 0.4).astype(int)
    tiers[0], tiers[1] = 0, 1  # both tiers non-empty
    persistent = AllocationProblem(net, tiers, 2, rule=rule, formulation="ptdf", engine=engine)
    checked = 0
    for t in range(12):
        d = net.node_demand_mw * rng.uniform(0.8, 1.2, net.n_node)
        g = net.gen_pmax_mw * rng.uniform(0.2, 0.6, net.n_gen)
        w = rng.uniform(1.0, 20.0, net.n_node)
        order = list(rng.permutation(2))
        inp = IntervalInput(t, d, g)
        # the persistent model has been updated by earlier intervals (screen and clear)
        persistent.screen(inp)
        got = persistent.clear(inp, order, w)
        fresh = AllocationProblem(net, tiers, 2, rule=rule, formulation="ptdf", engine=engine)
        ref = fresh.clear(inp, order, w)
        assert got.ok and ref.ok
        if "->maxmin" in got.note or "->maxmin" in ref.note:
            continue  # a QP fallback on one side only is a different rule, not a state leak
        np.testing.assert_allclose(got.served_mw, ref.served_mw, atol=1e-4 * d.sum() ** 0.5)
        checked += 1
    assert checked >= 8
