"""Theorem and feasibility checks (fpamm_opt.verify) on hand-built synthetic runs.

Every check has a passing case (the consistent synthetic run of
:mod:`fpamm_opt.verify.synthetic` on case14 with derived ratings) and a tampered case that must
fail and say what failed.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fpamm_opt.errors import InputError, RunDirectoryError
from fpamm_opt.verify import (
    CheckName,
    RunContext,
    RunData,
    applicable_checks,
    check_cold_resolve,
    check_convergence,
    check_dc_feasibility,
    check_fairness_spread,
    check_fixed_point,
    check_fixed_point_bound,
    check_memory_contraction,
    check_memory_invariance,
    check_memory_update,
    check_tracking,
    select_checks,
    tradeoff_table,
    verify_run,
)
from fpamm_opt.verify.synthetic import SyntheticRun, synthetic_run

pytestmark = pytest.mark.unit

T = 240


@pytest.fixture(scope="module")
def base() -> SyntheticRun:
    return synthetic_run(T)


@pytest.fixture(scope="module")
def held() -> SyntheticRun:
    return synthetic_run(T, theta=0.05)


@pytest.fixture
def run(base: SyntheticRun) -> SyntheticRun:
    return base.copy()


def _row(df: pd.DataFrame, **key: int) -> pd.Series:
    mask = np.ones(len(df), dtype=bool)
    for k, v in key.items():
        mask &= df[k].to_numpy() == v
    assert mask.sum() == 1
    return pd.Series(mask, index=df.index)


def _scarce_ts(r: SyntheticRun) -> np.ndarray:
    iv = r.tables["intervals"]
    return iv.loc[iv["scarce"], "t"].to_numpy()


# ------------------------------------------------------------------ T1
def test_memory_invariance_passes(run: SyntheticRun) -> None:
    res = check_memory_invariance(run.data())
    assert res.passed and res.applicable and res.measured == 0.0
    assert res.name == CheckName.T1_INVARIANCE


def test_memory_invariance_fails_above_one(run: SyntheticRun) -> None:
    nodes = run.tables["nodes"]
    nodes.loc[_row(nodes, t=30, node=4), "memory_after"] = 1.2
    res = check_memory_invariance(run.data())
    assert not res.passed
    assert res.measured == pytest.approx(0.2)
    assert "memory leaves [0, 1]" in res.detail and "t=30" in res.detail


def test_memory_update_passes(run: SyntheticRun) -> None:
    res = check_memory_update(run.data())
    assert res.passed and res.measured <= 1e-12


def test_memory_update_fails_on_row_off_the_update(run: SyntheticRun) -> None:
    nodes = run.tables["nodes"]
    # Shift memory_after(50) and memory_before(51) together: only the update equation breaks.
    nodes.loc[_row(nodes, t=50, node=2), "memory_after"] += 0.01
    nodes.loc[_row(nodes, t=51, node=2), "memory_before"] += 0.01
    res = check_memory_update(run.data())
    assert not res.passed
    assert "does not follow the update" in res.detail and "t=50" in res.detail
    assert "memory_before(t+1)" not in res.detail
    assert res.measured == pytest.approx(0.01, rel=1e-6)


def test_memory_update_fails_on_broken_continuity(run: SyntheticRun) -> None:
    nodes = run.tables["nodes"]
    beta = 0.05
    m = _row(nodes, t=80, node=5)
    s0 = float(nodes.loc[m, "memory_before"].iloc[0]) + 0.02
    u = float(nodes.loc[m, "shortfall_ratio"].iloc[0])
    nodes.loc[m, "memory_before"] = s0
    nodes.loc[m, "memory_after"] = min(max((1 - beta) * s0 + beta * u, 0.0), 1.0)
    nodes.loc[_row(nodes, t=81, node=5), "memory_before"] = nodes.loc[m, "memory_after"].iloc[0]
    res = check_memory_update(run.data())
    assert not res.passed
    assert "memory_before(t+1) != memory_after(t)" in res.detail and "t=80" in res.detail


def test_memory_update_fails_on_inconsistent_shortfall(run: SyntheticRun) -> None:
    nodes = run.tables["nodes"]
    nodes.loc[_row(nodes, t=7, node=1), "served_mw"] *= 0.5
    res = check_memory_update(run.data())
    assert not res.passed and "shortfall_ratio != 1 - served/demand" in res.detail


def test_memory_contraction_passes(run: SyntheticRun) -> None:
    res = check_memory_contraction(run.data(), n_perturb=6, seed=3)
    assert res.passed
    assert res.bound == pytest.approx(0.95)
    assert res.measured <= 0.95 * (1 + 1e-9)


def test_memory_contraction_fails_when_replay_differs(run: SyntheticRun) -> None:
    run.manifest["spec"]["mechanism"]["beta"] = 0.1  # the stored memory used β = 0.05
    res = check_memory_contraction(run.data())
    assert not res.passed
    assert "does not reproduce the stored memory" in res.detail
    assert res.bound == pytest.approx(0.9)


def test_memory_checks_not_applicable_without_memory(run: SyntheticRun) -> None:
    nodes = run.tables["nodes"]
    nodes["memory_before"] = np.nan
    nodes["memory_after"] = np.nan
    for check in (check_memory_invariance, check_memory_update, check_memory_contraction):
        res = check(run.data())
        assert not res.applicable and res.passed and "no memory" in res.detail


@settings(max_examples=15, deadline=None)
@given(
    beta=st.floats(0.01, 1.0),
    n=st.integers(1, 4),
    steps=st.integers(2, 30),
    seed=st.integers(0, 2**16),
    s0=st.floats(0.0, 1.0),
)
def test_memory_contraction_holds_for_any_shortfall_sequence(
    beta: float, n: int, steps: int, seed: int, s0: float
) -> None:
    rng = np.random.default_rng(seed)
    u = rng.choice([0.0, 1.0, 0.5], size=(steps, n)) * rng.uniform(0, 1, size=(steps, n))
    s = np.full(n, s0)
    rows = []
    for t in range(steps):
        nxt = np.clip((1 - beta) * s + beta * u[t], 0.0, 1.0)
        rows.append(
            pd.DataFrame(
                {
                    "t": t,
                    "node": np.arange(n),
                    "tier": 0,
                    "demand_mw": 1.0,
                    "served_mw": 1.0 - u[t],
                    "shortfall_ratio": u[t],
                    "memory_before": s,
                    "memory_after": nxt,
                }
            )
        )
        s = nxt
    data = RunData(
        manifest={"spec": {"mechanism": {"beta": beta}}},
        tables={"nodes": pd.concat(rows, ignore_index=True)},
    )
    assert check_memory_invariance(data).passed
    assert check_memory_update(data).passed
    res = check_memory_contraction(data, n_perturb=4, seed=seed)
    assert res.passed, res.detail


# ------------------------------------------------------------------ T2
def test_fixed_point_passes(run: SyntheticRun) -> None:
    res = check_fixed_point(run.data())
    assert res.passed and res.measured == pytest.approx(0.5) and res.bound == 1.0


def _set_residuals(r: SyntheticRun, t: int, values: np.ndarray) -> None:
    it = r.tables["iterations"]
    it = it[it["t"] != t]
    new = pd.DataFrame({"t": t, "m": np.arange(values.size, dtype=np.int32), "residual": values})
    r.tables["iterations"] = pd.concat([it, new], ignore_index=True)


def test_fixed_point_fails_on_growing_residuals(run: SyntheticRun) -> None:
    t = int(_scarce_ts(run)[10])
    _set_residuals(run, t, 0.5 * 1.2 ** np.arange(5))
    res = check_fixed_point(run.data())
    assert not res.passed
    assert res.measured == pytest.approx(1.2)
    assert "do not contract" in res.detail and f"t={t}" in res.detail


def test_fixed_point_fails_on_inconsistent_q_hat(run: SyntheticRun) -> None:
    iv = run.tables["intervals"]
    t = int(_scarce_ts(run)[3])
    iv.loc[iv["t"] == t, "q_hat"] = 0.1
    res = check_fixed_point(run.data())
    assert not res.passed and "stored q_hat disagrees" in res.detail and f"t={t}" in res.detail


def test_fixed_point_ignores_ratios_below_the_floor(run: SyntheticRun) -> None:
    t = int(_scarce_ts(run)[5])
    demand = float(run.tables["intervals"].set_index("t").loc[t, "demand_mw"])
    floor = 1e-6 * demand
    # Falls fast, then numerical noise below the floor grows: not a contraction failure.
    _set_residuals(run, t, np.array([10.0, 1.0, 0.1 * floor, 0.5 * floor, 0.9 * floor]))
    iv = run.tables["intervals"]
    iv.loc[iv["t"] == t, "q_hat"] = 0.1
    res = check_fixed_point(run.data())
    assert res.passed, res.detail


def test_fixed_point_bound_passes_and_fails(run: SyntheticRun) -> None:
    assert check_fixed_point_bound(run.data()).passed
    iv = run.tables["intervals"]
    applies = iv["q_bound_applies"].to_numpy(dtype=bool) & (iv["iterations"] >= 3).to_numpy()
    t_on = int(iv.loc[applies, "t"].iloc[0])
    t_off = int(iv.loc[~applies & (iv["iterations"] >= 3).to_numpy(), "t"].iloc[0])
    iv.loc[iv["t"] == t_off, "q_bound"] = 0.01  # bound does not apply there: ignored
    assert check_fixed_point_bound(run.data()).passed
    iv.loc[iv["t"] == t_on, "q_bound"] = 0.2
    res = check_fixed_point_bound(run.data())
    assert not res.passed
    assert res.bound == pytest.approx(0.2) and res.measured > 0.2
    assert "exceeds q_bound" in res.detail and f"t={t_on}" in res.detail


def test_fixed_point_not_applicable_without_iterations(run: SyntheticRun) -> None:
    run.tables["iterations"] = run.tables["iterations"].iloc[:0]
    assert not check_fixed_point(run.data()).applicable
    assert not check_fixed_point_bound(run.data()).applicable


# ------------------------------------------------------------------ T3
def test_dc_feasibility_passes(run: SyntheticRun) -> None:
    res = check_dc_feasibility(run.data())
    assert res.passed and res.measured < 1e-9 and res.bound > 0


def _net():
    from fpamm_opt.network import load_network

    return load_network("case14", "matpower", "derived", 4.0, 5.0)


def test_dc_feasibility_fails_on_flow_above_rating(run: SyntheticRun) -> None:
    # Move generation from generator 0 to another one until a branch overloads: balanced,
    # within the available capacity, stored flows recomputed consistently; only the rating
    # is violated.
    net = _net()
    g, br, nd = run.tables["generators"], run.tables["branches"], run.tables["nodes"]
    p = g[g["t"] == 0].sort_values("gen")["p_mw"].to_numpy()
    x = nd[nd["t"] == 0].sort_values("node")["served_mw"].to_numpy()
    found = None
    for j in range(1, net.n_gen):
        for amount in (10.0, 30.0, 60.0, 90.0):
            q = p.copy()
            q[0] -= amount
            q[j] += amount
            if q[0] < 0 or q[j] > net.gen_pmax_mw[j]:
                continue
            flows = net.flows_from_injections(net.bus_injection_mw(q, x))
            over = np.abs(flows) - net.branch_rate_mw
            if over.max() > 1.0:
                found = (q, flows, int(np.argmax(over)))
                break
        if found:
            break
    assert found is not None
    q, flows, k = found
    g.loc[g["t"] == 0, "p_mw"] = q
    g.loc[g["t"] == 0, "available_mw"] = np.maximum(
        g.loc[g["t"] == 0, "available_mw"].to_numpy(), q
    )
    br.loc[br["t"] == 0, "flow_mw"] = flows
    res = check_dc_feasibility(run.data())
    assert not res.passed
    assert res.detail.startswith("recomputed flow outside the branch limits")
    assert f"t=0, branch {k}" in res.detail
    assert "differs" not in res.detail and "balance" not in res.detail
    assert res.measured > res.bound


def test_dc_feasibility_fails_when_the_rebuilt_network_has_other_ratings(
    run: SyntheticRun,
) -> None:
    # The stored flows are right, but the network of the manifest has tighter ratings.
    run.manifest["spec"]["network"]["rating_alpha"] = 0.3
    res = check_dc_feasibility(run.data())
    assert not res.passed
    assert res.detail.startswith("the network rebuilt from the manifest does not have")
    assert "recomputed flow outside the branch limits" in res.detail
    assert "stored rate_mw differs" in res.detail


def test_dc_feasibility_fails_on_stored_flow(run: SyntheticRun) -> None:
    br = run.tables["branches"]
    m = _row(br, t=12, branch=3)
    br.loc[m, "flow_mw"] = br.loc[m, "rate_mw"] + 1.0
    res = check_dc_feasibility(run.data())
    assert not res.passed and "stored flow_mw differs" in res.detail and "t=12" in res.detail


def test_dc_feasibility_fails_on_broken_balance(run: SyntheticRun) -> None:
    g = run.tables["generators"]
    g.loc[_row(g, t=20, gen=0), "p_mw"] -= 1.0
    res = check_dc_feasibility(run.data())
    assert not res.passed and "island power balance" in res.detail and "t=20" in res.detail
    assert res.measured == pytest.approx(1.0, rel=1e-6)


def test_dc_feasibility_fails_on_served_above_demand(run: SyntheticRun) -> None:
    nodes = run.tables["nodes"]
    m = _row(nodes, t=9, node=1)
    nodes.loc[m, "served_mw"] = nodes.loc[m, "demand_mw"] + 0.5
    res = check_dc_feasibility(run.data())
    assert not res.passed and "served load above demand" in res.detail and "t=9" in res.detail
    assert "node 1" in res.detail


def test_dc_feasibility_fails_on_output_above_available(run: SyntheticRun) -> None:
    g = run.tables["generators"]
    m = _row(g, t=33, gen=1)
    g.loc[m, "available_mw"] = g.loc[m, "p_mw"] - 2.0
    res = check_dc_feasibility(run.data())
    assert not res.passed and "above its available capacity" in res.detail


def test_dc_feasibility_reports_a_network_mismatch(run: SyntheticRun) -> None:
    nodes = run.tables["nodes"]
    run.tables["nodes"] = nodes[nodes["node"] != 10]
    from fpamm_opt.verify.runner import run_check

    res = run_check(CheckName.T3_FEASIBILITY, run.data())
    assert not res.passed and res.detail.startswith("could not run")
    assert "do not match the network" in res.detail


def test_cold_resolve_passes(run: SyntheticRun) -> None:
    res = check_cold_resolve(run.data(), sample=8, seed=1)
    assert res.passed, res.detail
    assert "4 non-scarce and 4 scarce" in res.detail


def test_cold_resolve_fails_on_a_costlier_dispatch(run: SyntheticRun) -> None:
    g, iv = run.tables["generators"], run.tables["intervals"]
    normal = iv.loc[~iv["scarce"], "t"].to_numpy()
    # Move 5 MW from the cheapest generator (bus 1) to generator 1 in every normal interval.
    cheap = g["t"].isin(normal) & (g["gen"] == 0)
    dear = g["t"].isin(normal) & (g["gen"] == 1)
    assert (g.loc[cheap, "p_mw"] > 5).all()
    g.loc[cheap, "p_mw"] -= 5.0
    g.loc[dear, "p_mw"] += 5.0
    g.loc[dear, "available_mw"] = np.maximum(g.loc[dear, "available_mw"], g.loc[dear, "p_mw"])
    res = check_cold_resolve(run.data(), sample=4, seed=0)
    assert not res.passed
    assert "least-cost" in res.detail and "stored dispatch" in res.detail
    assert res.measured > 1e-6


def test_cold_resolve_fails_when_a_tier_gets_less_than_deliverable(run: SyntheticRun) -> None:
    nodes, g = run.tables["nodes"], run.tables["generators"]
    scarce = _scarce_ts(run)
    # Tier-1 node 1 gets 1 MW less in every scarce interval (generation follows): tier 1 could
    # have had that energy.
    m = nodes["t"].isin(scarce) & (nodes["node"] == 1)
    nodes.loc[m, "served_mw"] -= 1.0
    gm = g["t"].isin(scarce) & (g["gen"] == 0)
    g.loc[gm, "p_mw"] -= 1.0
    res = check_cold_resolve(run.data(), sample=4, seed=0)
    assert not res.passed
    assert "tier 1 got" in res.detail and "was deliverable" in res.detail
    assert "tier 0" not in res.detail


def test_cold_resolve_fails_without_tier_order(run: SyntheticRun) -> None:
    iv = run.tables["intervals"]
    iv.loc[iv["scarce"], "tier_order"] = ""
    res = check_cold_resolve(run.data(), sample=2)
    assert not res.passed and "without a tier_order" in res.detail


# ------------------------------------------------------------------ T4
def _lipschitz_by_hand(r: SyntheticRun) -> float:
    from fpamm_opt.network import load_network

    net = load_network("case14", "matpower", "derived", 4.0, 5.0)
    iv = r.tables["intervals"].sort_values("t")
    nodes = r.tables["nodes"].sort_values(["t", "node"])
    gens = r.tables["generators"].sort_values(["t", "gen"])
    ex = iv.loc[iv["executed"], "t"].tolist()
    best = 0.0
    for a, b in itertools.pairwise(ex):
        oa = iv.loc[iv["t"] == a, "tier_order"].iloc[0]
        ob = iv.loc[iv["t"] == b, "tier_order"].iloc[0]
        if oa != ob:
            continue

        def zr(t: int) -> tuple[np.ndarray, np.ndarray]:
            nd = nodes[nodes["t"] == t]
            gd = gens[gens["t"] == t]
            z = np.r_[
                nd["demand_mw"].to_numpy() / net.node_demand_mw,
                gd["available_mw"].to_numpy() / net.gen_pmax_mw,
                nd["memory_before"].to_numpy(),
            ]
            return z, nd["served_mw"].to_numpy() / nd["demand_mw"].to_numpy()

        za, ra = zr(a)
        zb, rb = zr(b)
        dz = np.abs(za - zb).max()
        if dz > 1e-12:
            best = max(best, np.abs(ra - rb).max() / dz)
    return best


def test_tracking_not_applicable_without_trigger(run: SyntheticRun) -> None:
    res = check_tracking(run.data())
    assert not res.applicable and "θ = 0" in res.detail


def test_tracking_passes_and_fails(held: SyntheticRun) -> None:
    r = held.copy()
    theta = 0.05
    lip = _lipschitz_by_hand(r)
    assert lip > 0
    iv = r.tables["intervals"]
    hold = ~iv["executed"].to_numpy(dtype=bool)
    assert hold.sum() > 10
    iv.loc[hold, "tracking_error"] = 0.5 * lip * theta
    res = check_tracking(r.data())
    assert res.passed, res.detail
    assert res.bound == pytest.approx(lip * theta + 1e-6, rel=1e-9)
    t_bad = int(iv.loc[hold, "t"].iloc[4])
    iv.loc[iv["t"] == t_bad, "tracking_error"] = 2 * lip * theta + 0.01
    res = check_tracking(r.data())
    assert not res.passed
    assert "tracking error above" in res.detail and f"t={t_bad}" in res.detail


def test_tracking_not_applicable_without_audit(held: SyntheticRun) -> None:
    res = check_tracking(held.data())
    assert not res.applicable and "no audited held interval" in res.detail


def test_tradeoff_table(base: SyntheticRun, held: SyntheticRun) -> None:
    r = held.copy()
    iv = r.tables["intervals"]
    iv.loc[~iv["executed"], "tracking_error"] = 0.01
    tab = tradeoff_table([r.data(), base.data()])
    assert list(tab.columns[:3]) == ["theta", "fraction_solved", "max_tracking_error"]
    assert tab["theta"].tolist() == [0.0, 0.05]
    assert tab.loc[0, "fraction_solved"] == 1.0 and math.isnan(tab.loc[0, "max_tracking_error"])
    assert tab.loc[1, "fraction_solved"] == pytest.approx(iv["executed"].mean())
    assert tab.loc[1, "max_tracking_error"] == pytest.approx(0.01)


# ------------------------------------------------------------------ T5
def test_convergence_passes_on_the_consistent_run(run: SyntheticRun) -> None:
    res = check_convergence(run.data())
    assert res.applicable and res.passed, res.detail
    assert res.measured <= res.bound


def test_convergence_passes_with_a_deliverable_target(run: SyntheticRun) -> None:
    run.manifest["spec"]["scenario"]["tier_targets"] = [1.0, 0.7]
    res = check_convergence(run.data())
    assert res.passed, res.detail


def test_convergence_fails_on_an_undeliverable_target(run: SyntheticRun) -> None:
    run.manifest["spec"]["mechanism"]["targets"] = [1.0, 0.99]
    res = check_convergence(run.data())
    assert not res.passed
    assert "target F*=0.99 for tier 1 is not delivered: F(T)=0.69" in res.detail


def test_fairness_spread_informational_and_against_a_baseline(run: SyntheticRun) -> None:
    res = check_fairness_spread(run.data())
    assert res.passed and res.measured > 0 and math.isnan(res.bound)
    wider = run.copy()
    nodes = wider.tables["nodes"]
    m = nodes["t"].isin(_scarce_ts(run)) & (nodes["node"] == 1)
    nodes.loc[m, "served_mw"] *= 0.8  # node 1 falls behind its tier
    ok = check_fairness_spread(run.data(), baseline=wider.data())
    assert ok.passed and ok.measured < ok.bound and "smaller than" in ok.detail
    bad = check_fairness_spread(wider.data(), baseline=run.data())
    assert not bad.passed and "NOT smaller than" in bad.detail


# ------------------------------------------------------------------ runner
def test_verify_run_on_a_run_directory(base: SyntheticRun, tmp_path) -> None:
    path = base.write(tmp_path / "run")
    report = verify_run(path, cold_sample=6)
    assert report.passed, report.to_table()
    names = [c.name for c in report]
    assert names == [c.value for c in CheckName]
    assert not report.get(CheckName.T4_TRACKING).applicable
    js = report.to_json()
    text = json.dumps(js, allow_nan=False)
    assert {"name", "passed", "measured", "bound", "statement", "applicable", "detail"} <= set(
        js[0]
    )
    assert "T5-convergence" in text
    table = report.to_table()
    assert (
        "T3-cold-resolve" in table and "PASS" in table and "all applicable checks passed" in table
    )


def test_verify_run_reports_failures_plainly(base: SyntheticRun, tmp_path) -> None:
    r = base.copy()
    nodes = r.tables["nodes"]
    nodes.loc[_row(nodes, t=3, node=0), "memory_before"] = -0.5
    report = verify_run(r.write(tmp_path / "bad"), checks=["T1"])
    assert [c.name for c in report] == ["T1-invariance", "T1-update", "T1-contraction"]
    assert not report.passed
    assert report.get("T1-invariance").passed is False
    assert "FAILED: T1-invariance" in report.to_table()


def test_verify_run_missing_table_is_not_applicable(base: SyntheticRun, tmp_path) -> None:
    path = base.write(tmp_path / "nobranches")
    (path / "branches.parquet").unlink()
    res = verify_run(path, checks=["T3-feasibility"]).get("T3-feasibility")
    assert not res.applicable and "branches" in res.detail


def test_verify_run_rejects_a_non_run_directory(tmp_path) -> None:
    with pytest.raises(RunDirectoryError):
        verify_run(tmp_path)


def test_manifest_checks_list_is_honoured(run: SyntheticRun) -> None:
    run.manifest["checks"] = ["T1", "T3", "T5"]
    assert applicable_checks(run.manifest) == (
        CheckName.T1_INVARIANCE,
        CheckName.T1_UPDATE,
        CheckName.T1_CONTRACTION,
        CheckName.T3_FEASIBILITY,
        CheckName.T3_COLD_RESOLVE,
        CheckName.T5_CONVERGENCE,
        CheckName.DEFICIT_REPLAY,  # always run; says itself when no deficit was recorded
        CheckName.FAIRNESS_SPREAD,  # informational, always reported
    )
    report = verify_run(run.data(), cold_sample=2)
    t2 = report.get("T2-fixed-point")
    assert not t2.applicable and "not requested" in t2.detail


def test_applicable_checks_follow_theta_and_policy() -> None:
    assert CheckName.T4_TRACKING not in applicable_checks({})
    m = {"mechanism_resolved": {"trigger_theta": 0.1}, "policy": "lmp"}
    got = applicable_checks(m)
    assert CheckName.T4_TRACKING in got and CheckName.T5_CONVERGENCE not in got


@pytest.mark.parametrize("policy", ["fpamm", "equal", "lmp"])
@pytest.mark.parametrize("theta", [0.0, 0.1])
def test_the_checks_a_run_records_are_the_ones_that_apply(policy: str, theta: float) -> None:
    """The run loop records ``applicable_checks`` of its context; reading the manifest back
    (new full names, or the prefixes older runs recorded) gives the same checks."""
    got = applicable_checks(RunContext(policy=policy, trigger_theta=theta))
    assert (CheckName.T4_TRACKING in got) == (theta > 0)
    assert (CheckName.T5_CONVERGENCE in got) == (policy != "lmp")
    m = {"mechanism_resolved": {"trigger_theta": theta}, "policy": policy}
    assert applicable_checks(m) == got
    assert applicable_checks({**m, "checks": [c.value for c in got]}) == got
    old = ["T1", "T2", "T3", "T5", "deficit-replay"] + (["T4"] if theta > 0 else [])
    assert applicable_checks({**m, "checks": old}) == got


def test_select_checks() -> None:
    assert select_checks(["T2"]) == (CheckName.T2_FIXED_POINT, CheckName.T2_BOUND)
    assert select_checks(["T3-cold-resolve"]) == (CheckName.T3_COLD_RESOLVE,)
    with pytest.raises(InputError, match="unknown check"):
        select_checks(["T9"])


def test_run_context_reads_the_manifest() -> None:
    m = {
        "policy": "equal",
        "cost_model": "linear",
        "spec": {
            "network": {
                "case": "case57",
                "convention": "powermodels",
                "ratings": "derived",
                "rating_alpha": 1.5,
                "rating_min_mw": 2.0,
            },
            "mechanism": {"beta": 0.2, "trigger_theta": 0.3},
            "scenario": {"tier_targets": [0.95, None]},
        },
        "mechanism_resolved": {"beta": 0.1, "residual_floor": 1e-8},
    }
    ctx = RunContext.from_manifest(m)
    assert ctx.beta == 0.1 and ctx.trigger_theta == 0.3 and ctx.residual_floor == 1e-8
    assert ctx.policy == "equal"
    assert ctx.network is not None and ctx.network.convention == "powermodels"
    assert ctx.network.rating_alpha == 1.5 and ctx.network.rating_min_mw == 2.0
    assert ctx.target_of_tier(0) == 0.95 and ctx.target_of_tier(1) is None
    d = RunContext.from_manifest({})
    assert d.beta == 0.05 and d.trigger_theta == 0.0 and d.network is None
    assert d.target_of_tier(0) is None
