"""T5 on under-service against contracted targets: quantities, criteria and their calibration.

The criteria (fpamm_opt.verify.rate) are exercised on synthetic gap series whose behaviour is
known, passing and failing both ways; the calibration study (fpamm_opt.verify.power) runs in a
small version and must keep the direction of its rates (a criterion that always passed or
always failed would fail it). No network and no solver here (evidence: component tests).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from fpamm_opt.verify.batch import check_replicated
from fpamm_opt.verify.context import RunData
from fpamm_opt.verify.convergence import analyse_t5, check_convergence
from fpamm_opt.verify.panel import NodePanel
from fpamm_opt.verify.power import SERIES, power_table
from fpamm_opt.verify.rate import (
    block_ends,
    long_run_scale,
    one_run_criterion,
    one_run_threshold,
    replicated_criterion,
    replicated_threshold,
)
from fpamm_opt.verify.underservice import UnderService

pytestmark = pytest.mark.unit


def nodes_table(demand: np.ndarray, served: np.ndarray, tier: list[int]) -> pd.DataFrame:
    """A long ``nodes`` table from ``(T, n)`` arrays."""
    n_t, n = demand.shape
    return pd.DataFrame(
        {
            "t": np.repeat(np.arange(n_t), n),
            "node": np.tile(np.arange(n), n_t),
            "bus": np.tile(np.arange(n), n_t),
            "tier": np.tile(np.asarray(tier), n_t),
            "demand_mw": demand.ravel(),
            "served_mw": served.ravel(),
        }
    )


def two_node_run(drift: float, n_t: int = 3000, seed: int = 0) -> RunData:
    """One tier of two nodes in scarcity windows (every other block of 10 intervals).

    In a scarce interval the tier is served 80 %; node 1 gets its share minus ``drift`` of
    its demand plus noise, node 0 the rest (so the tier's ratio is unchanged).
    """
    rng = np.random.default_rng(seed)
    d = np.full((n_t, 2), 10.0)
    scarce = (np.arange(n_t) // 10) % 2 == 1
    noise = rng.normal(0.0, 0.05, n_t)
    x = d.copy()
    x[scarce, 1] = 10.0 * (0.8 - drift + noise[scarce])
    x[scarce, 0] = 16.0 - x[scarce, 1]
    return RunData(manifest={"policy": "fpamm"}, tables={"nodes": nodes_table(d, x, [0, 0])})


# ------------------------------------------------------------------ quantities
def test_gap_is_the_deficit_recursion_and_over_service_is_no_deficit() -> None:
    """With constant demand shares, G is the deficit D of MECHANISM.md §3; E is one-sided."""
    rng = np.random.default_rng(3)
    n_t = 50
    d = np.tile([10.0, 20.0, 5.0], (n_t, 1))
    x = d * rng.uniform(0.6, 1.0, (n_t, 3))
    us = UnderService.from_panel(NodePanel.from_nodes(nodes_table(d, x, [0, 0, 1])))
    r = np.stack([x[:, :2].sum(1) / d[:, :2].sum(1)] * 2 + [x[:, 2] / d[:, 2]], axis=1)
    deficit = np.cumsum(r * d - x, axis=0)
    assert np.allclose(us.gap_mw, deficit, atol=1e-9)
    assert np.allclose(us.gap_mw.sum(axis=1), 0.0, atol=1e-9)  # tiers balance
    expect = np.clip(deficit - 1e-6 * np.cumsum(d, axis=0), 0.0, None) / np.cumsum(d, axis=0)
    assert np.allclose(us.under_service, expect)
    assert np.allclose(us.error, expect.max(axis=1))
    assert np.all(us.under_service[:, 2] == 0.0)  # alone in its tier: never behind it
    over = np.argmin(deficit[-1, :2])
    assert us.under_service[-1, over] == 0.0  # over-served: no deficit


def test_contraction_lowers_the_target_and_spec_targets_replace_the_tier_ratio() -> None:
    d = np.full((20, 2), 10.0)
    x = d.copy()
    x[:, 1] = 8.0
    panel = NodePanel.from_nodes(nodes_table(d, x, [0, 0]))
    us = UnderService.from_panel(panel)
    assert np.all(us.shortfall_mw[:, 1] == pytest.approx(1.0))  # r = 0.9, x = 8 of 10
    u = np.zeros_like(d)
    u[:, 1] = 1.0  # the network could not deliver that MW
    c = us.contracted(u)
    assert np.allclose(c.gap_mw[:, 1], 0.0) and np.allclose(c.target[:, 1], 0.8)
    fixed = UnderService.from_panel(panel, {0: 0.95})
    assert np.allclose(fixed.gap_mw[:, 1], 1.5 * np.arange(1, 21))


# ------------------------------------------------------------------ scale and thresholds
def test_blocks_never_split_a_window() -> None:
    cuts = np.ones(100, dtype=bool)
    cuts[5:40] = False  # a window: no block may end inside it
    ends = block_ends(cuts, 20)
    assert ends.tolist() == [40, 60, 80]
    assert not np.any((ends >= 5) & (ends < 40))


def test_long_run_scale_recovers_a_random_walk_and_ignores_a_drift() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(0.0, 2.0, (20_000, 1))
    cuts = np.ones(20_000, dtype=bool)
    walk = long_run_scale(np.cumsum(y, axis=0), cuts)
    drift = long_run_scale(np.cumsum(y + 0.5, axis=0), cuts)
    assert walk.long_run[0] == pytest.approx(2.0, rel=0.2)  # 141 blocks: sd 7 %
    assert drift.long_run[0] == pytest.approx(walk.long_run[0], rel=0.02)
    assert walk.dof[0] > 50


def test_thresholds_grow_with_nodes_and_fall_with_precision_and_replications() -> None:
    span = math.log(20)
    assert one_run_threshold(10, span, 40.0) > one_run_threshold(1, span, 40.0)
    assert one_run_threshold(1, span, 5.0) > one_run_threshold(1, span, 40.0)
    assert replicated_threshold(10, 1, span, 200.0) < replicated_threshold(3, 1, span, 200.0)
    assert replicated_threshold(10, 10, span, 200.0) > replicated_threshold(10, 1, span, 200.0)


# ------------------------------------------------------------------ criteria
def test_one_run_criterion_passes_bounded_and_fails_growing_gaps() -> None:
    rng = np.random.default_rng(1)
    n_t = 4000
    cuts = np.ones(n_t, dtype=bool)
    noise = rng.normal(0.0, 1.0, n_t)
    bounded = np.sin(np.arange(n_t) / 7.0)[:, None] * 3.0 + noise[:, None] * 0.1
    v = one_run_criterion(bounded, cuts)
    assert v.applicable and v.passed and v.statistic < 0.5 * v.threshold
    growing = np.cumsum(noise + 0.2)[:, None]  # a drift of 0.2 sigma per interval
    v = one_run_criterion(growing, cuts)
    assert v.applicable and not v.passed and v.statistic > 2 * v.threshold
    assert v.failing().tolist() == [0]
    over = -growing  # over-served the same way: never a deficit
    assert one_run_criterion(over, cuts).passed


def test_one_run_criterion_needs_blocks() -> None:
    v = one_run_criterion(np.ones((50, 2)), np.ones(50, dtype=bool))
    assert not v.applicable and v.passed and "blocks" in v.reason


def test_replicated_criterion_both_ways() -> None:
    rng = np.random.default_rng(2)
    n_t, runs = 3000, 8
    cuts = [np.ones(n_t, dtype=bool)] * runs
    walks = [np.cumsum(rng.normal(0.0, 1.0, (n_t, 1)), axis=0) for _ in range(runs)]
    drifted = [w + 0.1 * np.arange(1, n_t + 1)[:, None] for w in walks]
    errors = [np.clip(w[:, 0], 0, None) / np.arange(1, n_t + 1) for w in walks]
    ok = replicated_criterion(walks, cuts, errors=errors)
    assert ok.applicable and ok.passed and len(ok.t_mse) == 5
    bad = replicated_criterion(drifted, cuts)
    assert bad.applicable and not bad.passed and bad.statistic > 3 * bad.threshold
    one = replicated_criterion(walks[:1], cuts[:1])
    assert not one.applicable and one.passed


def test_power_study_keeps_the_calibration_direction() -> None:
    """A small run of ``python -m fpamm_opt.verify.power``.

    Series that satisfy the statement must rarely fail, series that do not must mostly fail,
    for both criteria; the bounds leave room for the small sample (the shipped table uses
    2000 paths and 400 groups).
    """
    rows = power_table(paths=150, groups=20, runs=10, n_interval=3000, seed=1)
    assert [r.series.name for r in rows] == [s.name for s in SERIES]
    for r in rows:
        if r.series.satisfies:
            assert r.one_run_fail <= 0.08 and r.replicated_fail <= 0.15, r
        else:
            assert r.one_run_fail >= 0.85 and r.replicated_fail >= 0.85, r


# ------------------------------------------------------------------ the checks
def test_check_convergence_fails_a_node_left_behind_and_says_why() -> None:
    res = check_convergence(two_node_run(drift=0.02))
    assert not res.passed and res.measured > res.bound
    assert "node 1 (tier 0) is under-served beyond the random-walk bound" in res.detail
    assert "no re-solves possible" in res.detail  # no network: no evidence, no contraction


def test_check_convergence_passes_a_node_that_is_even_on_average() -> None:
    res = check_convergence(two_node_run(drift=0.0))
    assert res.applicable and res.passed and res.measured <= res.bound
    a = analyse_t5(two_node_run(drift=0.0))
    assert not a.evidence  # nothing failed: nothing re-solved


def test_check_replicated_both_ways() -> None:
    fair = [two_node_run(0.0, n_t=2000, seed=s) for s in range(4)]
    res = check_replicated(fair, group="policy=fpamm", run_ids=["a", "b", "c", "d"])
    assert res.check.applicable and res.check.passed, res.check.detail
    assert "t·MSE(t) of E across runs" in res.check.detail
    unfair = [two_node_run(0.01, n_t=2000, seed=s) for s in range(4)]
    res = check_replicated(unfair)
    assert not res.check.passed and res.worst_node == 1
    assert "does not fall like 1/√t across the runs at node(s) 1" in res.check.detail
    lmp = check_replicated(unfair, policy="lmp")
    assert not lmp.check.applicable


def spread_run(short: tuple[float, float, float]) -> RunData:
    """Three nodes of one tier served ``1 - short_i`` of their demand in every interval."""
    d = np.full((30, 3), 10.0)
    x = d * (1.0 - np.asarray(short))[None, :]
    return RunData(manifest={"policy": "fpamm"}, tables={"nodes": nodes_table(d, x, [0, 0, 0])})


def test_fairness_spread_judges_under_service_and_names_the_over_served() -> None:
    from fpamm_opt.verify.convergence import check_fairness_spread

    fp = spread_run((0.0, 0.11, 0.12))  # tier ratio 0.923; node 0 well above it
    ew = spread_run((0.0, 0.05, 0.18))
    alone = check_fairness_spread(fp)
    assert alone.passed and math.isnan(alone.bound)
    assert alone.measured == pytest.approx(0.12 - 0.23 / 3)
    assert "set by over-served node 0 (tier 0)" in alone.detail
    ok = check_fairness_spread(fp, baseline=ew)
    assert ok.passed and ok.measured < ok.bound and "smaller than" in ok.detail
    bad = check_fairness_spread(ew, baseline=fp)
    assert not bad.passed and "NOT smaller than" in bad.detail
    flat = check_fairness_spread(spread_run((0.1, 0.1, 0.1005)), baseline=spread_run((0.1,) * 3))
    assert flat.passed and "within 0.001" in flat.detail  # nothing to correct under either
