"""Fairness and delivery metrics (fpamm_opt.report.metrics) on small hand-made tables."""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest

from fpamm_opt.errors import InputError
from fpamm_opt.report import metrics as mt

pytestmark = pytest.mark.unit


def nodes_table(demand: np.ndarray, served: np.ndarray, tier: np.ndarray) -> pd.DataFrame:
    """Long ``nodes`` table from ``(T, n)`` arrays (rows deliberately shuffled)."""
    n_t, n = demand.shape
    df = pd.DataFrame(
        {
            "t": np.repeat(np.arange(n_t), n),
            "node": np.tile(np.arange(n), n_t),
            "tier": np.tile(tier, n_t),
            "demand_mw": demand.ravel(),
            "served_mw": served.ravel(),
        }
    )
    return df.sample(frac=1.0, random_state=0)


def intervals_table(scarce: list[bool], window: list[int | None] | None = None) -> pd.DataFrame:
    df = pd.DataFrame({"t": np.arange(len(scarce)), "scarce": scarce})
    if window is not None:
        df["window"] = pd.array(window, dtype="Int64")
    return df


# Three nodes, two tiers, four intervals.
D = np.array([[10.0, 10.0, 20.0], [10.0, 10.0, 20.0], [10.0, 10.0, 20.0], [10.0, 10.0, 20.0]])
X = np.array([[10.0, 5.0, 20.0], [10.0, 10.0, 10.0], [4.0, 10.0, 20.0], [10.0, 10.0, 20.0]])
TIER = np.array([0, 0, 1])


def test_cumulative_delivery_ratio_by_hand() -> None:
    f = mt.cumulative_delivery_ratio(nodes_table(D, X, TIER))
    assert list(f.columns) == [0, 1, 2] and list(f.index) == [0, 1, 2, 3]
    np.testing.assert_allclose(f[0], [1.0, 1.0, 24 / 30, 34 / 40])
    np.testing.assert_allclose(f[1], [0.5, 15 / 20, 25 / 30, 35 / 40])
    np.testing.assert_allclose(f[2], [1.0, 30 / 40, 50 / 60, 70 / 80])


def test_delivery_ratio_is_one_before_any_demand() -> None:
    d = np.array([[0.0, 1.0], [2.0, 1.0]])
    x = np.array([[0.0, 1.0], [1.0, 0.5]])
    f = mt.delivery_ratio(mt.as_panel(nodes_table(d, x, np.array([0, 0]))))
    np.testing.assert_allclose(f, [[1.0, 1.0], [0.5, 0.75]])


def test_tier_aggregate_and_fairness_error() -> None:
    panel = mt.as_panel(nodes_table(D, X, TIER))
    agg = mt.tier_delivery_ratio(panel)
    np.testing.assert_allclose(agg[:, 0], [15 / 20, 35 / 40, 49 / 60, 69 / 80])
    np.testing.assert_allclose(agg[:, 1], [1.0, 30 / 40, 50 / 60, 70 / 80])
    e = mt.fairness_error(panel)
    assert e.shape == (4, 3)
    np.testing.assert_allclose(e[:, 0], np.abs([1.0, 1.0, 24 / 30, 34 / 40] - agg[:, 0]))
    np.testing.assert_allclose(e[:, 2], 0.0)  # alone in its tier
    np.testing.assert_allclose(mt.max_fairness_error(panel), e.max(axis=1))


def test_weak_node_is_the_most_under_served() -> None:
    nodes = nodes_table(D, X, TIER)
    # final: node 0 F = 0.85 below its tier's 0.8625, node 1 0.875 above, node 2 alone
    assert mt.weak_node(nodes) == 0 == mt.underserved_node(nodes)
    assert mt.weak_node(nodes, named=2) == 2
    with pytest.raises(InputError, match="not a node"):
        mt.weak_node(nodes, named=7)
    # one tier; node 0 is over-served by the most, node 1 under-served by the most
    d = np.full((2, 3), 10.0)
    x = np.array([[10.0, 7.0, 8.0], [10.0, 7.0, 8.0]])
    one = nodes_table(d, x, np.zeros(3, dtype=int))
    assert mt.weak_node(one) == 1
    assert mt.largest_error_node(one) == 0
    assert mt.limiting_under_service(one) == pytest.approx(25 / 30 - 0.7)
    assert mt.limiting_under_service(nodes_table(d, d, np.zeros(3, dtype=int))) == 0.0


def test_burn_in_end() -> None:
    iv = intervals_table([False, True, True, False, True, True], [None, 0, 0, None, 1, 1])
    assert mt.burn_in_end(iv) == 3
    assert mt.burn_in_end(iv, burn_in=5) == 5
    no_window = intervals_table([False, True, True, False, True])
    assert mt.burn_in_end(no_window) == 3
    assert mt.burn_in_end(intervals_table([False, False])) == 0
    assert mt.burn_in_end(intervals_table([True, True])) == 2
    with pytest.raises(InputError):
        mt.burn_in_end(iv, burn_in=-1)


def _two_node_run(served_weak: list[float]) -> pd.DataFrame:
    n_t = len(served_weak)
    d = np.ones((n_t, 2))
    x = np.ones((n_t, 2))
    x[:, 1] = served_weak
    return nodes_table(d, x, np.array([0, 0]))


def test_peak_weak_bus_error_and_reduction() -> None:
    iv = intervals_table([True, True, False, True, True, False], [0, 0, None, 1, 1, None])
    ew = _two_node_run([0.0, 0.5, 1.0, 0.0, 0.0, 1.0])
    fp = _two_node_run([0.5, 0.5, 1.0, 0.5, 0.5, 1.0])
    p_ew = mt.peak_weak_bus_error(ew, iv)
    assert p_ew.node == 1 and p_ew.burn_in == 2 and p_ew.n_intervals == 2
    # node 1 after t=4: F = (0.5+1+0+0)/5 = 0.3, node 0: 1, tier agg 0.65 -> e = 0.35
    assert p_ew.value == pytest.approx(0.35) and p_ew.t == 4
    cmp = mt.compare_weak_bus(fp, ew, iv)
    assert cmp.node == 1
    # FP node 1 at t=4: F = 3/5 = 0.6, agg 0.8 -> 0.2
    assert cmp.peak_fp.value == pytest.approx(0.2)
    assert cmp.reduction == pytest.approx(1 - 0.2 / 0.35)
    assert mt.reduction(0.1, 0.2) == pytest.approx(0.5)
    assert math.isnan(mt.reduction(0.1, 0.0))
    none_left = mt.peak_weak_bus_error(ew, iv, burn_in=6)
    assert math.isnan(none_left.value) and none_left.t is None


def test_limiting_spread() -> None:
    sp = mt.limiting_spread(nodes_table(D, X, TIER))
    assert sp.per_tier[0] == pytest.approx(abs(34 / 40 - 69 / 80))
    assert sp.per_tier[1] == 0.0
    assert sp.overall == pytest.approx(sp.per_tier[0])


def test_feasible_fraction() -> None:
    # manifest version 4's vocabulary, and the ;-joined text of versions 1-3
    words = ["optimal", "held", "retried", "solve-error", "failed"]
    texts = ["optimal;held", "optimal;retried(clear:error)", "infeasible;error:clear:infeasible"]
    iv = pd.DataFrame({"status": words + texts})
    assert mt.feasible_fraction(iv) == 6 / 8
    assert math.isnan(mt.feasible_fraction(iv.iloc[:0]))
    with pytest.raises(InputError):
        mt.feasible_fraction(pd.DataFrame({"t": [0]}))


def test_shortfall_distribution() -> None:
    d = np.full((3, 4), 10.0)
    x = d.copy()
    x[:, 0] -= [1.0, 2.0, 3.0]  # 6 MW shed
    x[1, 2] -= 2.0  # 2 MW shed
    dist = mt.shortfall_distribution(nodes_table(d, x, np.zeros(4, dtype=int)))
    assert dist.total_shed_mw == pytest.approx(8.0)
    np.testing.assert_allclose(dist.share.to_numpy(), [0.75, 0.0, 0.25, 0.0])
    assert dist.share.sum() == pytest.approx(1.0)
    assert dist.max_node == 0 and dist.max_share == pytest.approx(0.75)
    assert dist.quantiles[0.5] == pytest.approx(0.125)
    none = mt.shortfall_distribution(nodes_table(d, d, np.zeros(4, dtype=int)))
    assert none.total_shed_mw == 0.0 and none.max_node is None


def test_metrics_agree_with_the_stored_delivery_ratio() -> None:
    from fpamm_opt.verify.synthetic import synthetic_run

    nodes = synthetic_run(60).tables["nodes"]
    f = mt.cumulative_delivery_ratio(nodes)
    stored = nodes.pivot(index="t", columns="node", values="delivery_ratio")
    np.testing.assert_allclose(f.to_numpy(), stored.to_numpy(), rtol=1e-12)


def test_metrics_are_fast_at_full_scale() -> None:
    rng = np.random.default_rng(0)
    n_t, n = 5000, 100
    d = rng.uniform(1.0, 10.0, (n_t, n))
    x = d * rng.uniform(0.5, 1.0, (n_t, n))
    tier = (np.arange(n) % 3 == 0).astype(int)
    nodes = nodes_table(d, x, tier)
    iv = intervals_table(list(rng.uniform(size=n_t) < 0.3))
    start = time.perf_counter()
    panel = mt.as_panel(nodes)
    e = mt.fairness_error(panel)
    weak = mt.weak_node(panel)
    peak = mt.peak_weak_bus_error(panel, iv, weak)
    mt.limiting_spread(panel)
    mt.shortfall_distribution(panel)
    mt.max_fairness_error(panel)
    elapsed = time.perf_counter() - start
    assert e.shape == (n_t, n) and math.isfinite(peak.value)
    assert elapsed < 3.0
