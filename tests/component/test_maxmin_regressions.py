"""Regression tests for the max-min rule's wrong answers on IEEE-118 (issue 13, max-min part).

Each fixture in ``tests/fixtures/issue13/seed0_t*_fpamm_maxmin`` is one interval of
``fpamm run models/ieee118.toml --set mechanism.rule=maxmin --seed 0`` made by 9725761, with the
mechanism state at the start of the interval (``state.json``: deficits ``D(t)`` and requested
energy ``C(t)``), so that the fixed point can be replayed from where the run stood:

- ``seed0_t4771_fpamm_maxmin``: the full audit's worst disagreement (node 64 stored 112.4 MW,
  the rule 141.8 MW) and a T2 failure (``q_hat`` 2.1);
- ``seed0_t1535_fpamm_maxmin``: a disagreement of 10.3 MW and a T2 failure (``q_hat`` 1.45).

Root cause: the max-min rounds blocked nodes whose level-row dual share was 1.1e-7 to 3.3e-7,
just above the old threshold of 1e-7 and within the error of the solver's duals; those rows
were not bottlenecks (the next round could lower their level by 10), and which of them got
blocked depended on the warm-started vertex, so the clears of the fixed point jumped between
allocations hundreds of MW apart. A node is now blocked only when its dual is above 1e-3
times the largest (``MaxMinLPs.BLOCK_DUAL_REL``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fpamm_opt.engine import LPSolution
from fpamm_opt.mechanism.clearing import clear_interval
from fpamm_opt.mechanism.config import MechanismConfig
from fpamm_opt.mechanism.deficit import DeficitState
from fpamm_opt.mechanism.types import IntervalInput, SolveStatus
from fpamm_opt.pipeline.strategies import MaxMinLPs
from fpamm_opt.problem import AllocationProblem
from fpamm_opt.verify import RunData, check_cold_resolve

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "issue13"
CASES = ["seed0_t4771_fpamm_maxmin", "seed0_t1535_fpamm_maxmin"]
EVERY = 10**6  # re-solve every interval of the fixture (one)


def _replay(name: str) -> tuple[RunData, dict, object]:
    """The fixture's run and its interval re-cleared by today's allocator from the stored
    state (a fresh allocator: no warm start carried from earlier intervals)."""
    run = RunData.open(FIXTURES / name)
    state = json.loads((FIXTURES / name / "state.json").read_text())
    nodes = run.table("nodes").sort_values("node")
    gens = run.table("generators").sort_values("gen")
    iv = run.table("intervals").iloc[0]
    tier = nodes["tier"].to_numpy().astype(int)
    cfg = MechanismConfig.from_dict(run.manifest["mechanism_resolved"])
    deficit = DeficitState(
        np.asarray(state["deficit_mwh"]),
        np.asarray(state["requested_mwh"]),
        float(state["interval_hours"]),
    )
    alloc = AllocationProblem(
        run.network, tier, int(tier.max()) + 1, rule=cfg.rule,
        formulation=run.manifest["formulation"], voll=cfg.voll,
    )  # fmt: skip
    inp = IntervalInput(
        int(iv["t"]), nodes["demand_mw"].to_numpy(), gens["available_mw"].to_numpy()
    )
    order = [int(s) for s in str(iv["tier_order"]).split(">")]
    res = clear_interval(
        alloc, inp, nodes["memory_before"].to_numpy(), tier, int(tier.max()) + 1, order,
        run.manifest["policy"], cfg, deficit,
    )  # fmt: skip
    return run, {"nodes": nodes, "gens": gens}, res


def _with(run: RunData, tables: dict, res) -> RunData:  # type: ignore[no-untyped-def]
    """The fixture's run with the re-cleared allocation, its dispatch and final weights."""
    nodes = tables["nodes"].copy()
    gens = tables["gens"].copy()
    nodes["served_mw"], nodes["weight"] = res.dispatch.served_mw, res.weights
    gens["p_mw"] = res.dispatch.p_gen_mw
    iv = run.table("intervals").copy()
    iv["status"] = res.status
    return RunData(
        manifest=run.manifest, tables={"nodes": nodes, "generators": gens, "intervals": iv}
    )


@pytest.mark.component
@pytest.mark.parametrize("name", CASES)
def test_the_audit_rejects_the_stored_allocation(name: str) -> None:
    run = RunData.open(FIXTURES / name)
    res = check_cold_resolve(run, sample=EVERY)
    assert not res.passed, res.detail
    assert "tier 1" in res.detail and "not leximin" in res.detail
    assert run.table("intervals")["q_hat"].iloc[0] > 1.0  # T2 failed on the stored run


@pytest.mark.component
@pytest.mark.parametrize("name", CASES)
def test_fixed_point_agrees_with_the_cold_resolve_and_contracts(name: str) -> None:
    run, tables, res = _replay(name)
    assert res.ok and res.scarce
    assert len(res.residuals) >= 2
    assert np.isnan(res.q_hat) or res.q_hat < 1.0, res.residuals
    check = check_cold_resolve(_with(run, tables, res), sample=EVERY)
    assert check.passed, check.detail


def _round(mu: np.ndarray, level: float = 2.0) -> LPSolution:
    n = mu.size
    sol = LPSolution(
        SolveStatus.OPTIMAL, "optimal", np.zeros(1), np.zeros(n), np.zeros(1), level, level, 0.0
    )
    sol.level_duals = mu
    return sol


@pytest.mark.unit
def test_a_dual_far_below_the_bottleneck_does_not_block() -> None:
    free = np.ones(4, dtype=bool)
    x, coef, rhs = np.zeros(4), np.array([40.0, 20.0, 5.0, 0.5]), np.full(4, 20.0)
    # every row tight at λ = 2 ... only duals within 1e-3 of the largest block
    mu = np.array([0.02, 2.0e-8, 0.0, 1.0e-4])  # shares 0.8, 4e-7 (the noise of t = 4771), 0, 5e-5
    bott = MaxMinLPs._bottlenecks(free, x, coef, rhs, _round(mu), 1e-5)
    np.testing.assert_array_equal(bott, [True, False, False, True])
    assert not bott[2]  # a tight row with a zero dual is not blocked (tight is not blocked)


@pytest.mark.unit
def test_equal_prices_block_every_row_whatever_its_size() -> None:
    # a copper plate: every level row has the same price, small nodes included
    free = np.array([True, True, True, False])
    coef = np.array([100.0, 1.0, 0.05, 1.0])
    mu = np.array([0.01, 0.01, 0.01, 5.0])  # node 3 is not free: its row is inactive
    bott = MaxMinLPs._bottlenecks(free, np.zeros(4), coef, np.full(4, 2.0), _round(mu), 1e-5)
    np.testing.assert_array_equal(bott, [True, True, True, False])


@pytest.mark.unit
def test_a_tier_served_in_full_needs_no_last_round() -> None:
    d = np.array([10.0, 5.0, 3.0])
    free = np.array([False, True, True])
    tight = 1e-9 * d + 1e-9
    assert MaxMinLPs._served_in_full(np.array([2.0, 5.0, 3.0 - 1e-9]), d, free, tight)
    assert not MaxMinLPs._served_in_full(np.array([2.0, 5.0, 2.9]), d, free, tight)
