"""The deficit-replay check: passes on a real mechanism run, fails on tampered tables."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from fpamm_opt.io.writer import RunWriter
from fpamm_opt.mechanism.config import MechanismConfig, Policy
from fpamm_opt.mechanism.copperplate import CopperPlateAllocator, single_bus_network
from fpamm_opt.mechanism.engine import Mechanism
from fpamm_opt.mechanism.types import Dispatch, IntervalInput
from fpamm_opt.sim.run import _tables_of
from fpamm_opt.verify import verify_run
from fpamm_opt.verify.context import RunContext, RunData
from fpamm_opt.verify.deficit import check_deficit_replay, replay_deficit
from fpamm_opt.verify.result import CheckName
from fpamm_opt.verify.synthetic import synthetic_run
from fpamm_opt.verify.tracking import _deficit_levels

pytestmark = pytest.mark.unit

D_BASE = np.array([10.0, 12.0, 8.0, 20.0, 15.0])
TIER = np.array([0, 1, 1, 1, 0])
DT_H = 0.25


class WeakNode(CopperPlateAllocator):
    """Copper plate where node 1 gets at most 40 % of its demand every other interval."""

    def clear(self, inp: IntervalInput, tier_order: Sequence[int], weights: np.ndarray) -> Dispatch:
        disp = super().clear(inp, tier_order, weights)
        x = disp.served_mw.copy()
        cap = 0.4 * inp.demand_mw[1]
        if inp.t % 2 or x[1] <= cap:
            return disp
        spare = x[1] - cap  # move it to the other tier-1 nodes that have room
        x[1] = cap
        for j in (2, 3):
            take = min(spare, inp.demand_mw[j] - x[j])
            x[j] += take
            spare -= take
        x[1] += spare
        return dataclasses.replace(disp, served_mw=x, rounds=np.full(2, 2), cap_active=True)


def mechanism_run(
    tmp_path: Path,
    policy: str = "fpamm",
    source: str = "deficit",
    z_seen: dict[int, np.ndarray] | None = None,
) -> Path:
    """A real run of the mechanism (copper plate, 120 intervals) written as a run directory.

    ``z_seen`` collects the trigger state of every executed interval.
    """
    pmax = np.array([40.0, 40.0])
    net = single_bus_network(D_BASE, pmax, np.array([10.0, 30.0]))
    mech = Mechanism(
        WeakNode.from_network(net, TIER, 2),
        net,
        TIER,
        np.array([0.7, 0.3]),
        policy,
        MechanismConfig(weight_source=source, trigger_theta=0.05),
        np.random.default_rng(0),
        interval_h=DT_H,
    )
    manifest = {
        "status": "complete",
        "policy": policy,
        "interval_hours": DT_H,
        "mechanism_resolved": mech.cfg.to_dict(),
    }
    rng = np.random.default_rng(1)
    out = tmp_path / f"{policy}-{source}"
    w = RunWriter(out, "test", manifest, flush_every=16)
    idx = np.arange(D_BASE.size, dtype=np.int32)
    for t in range(120):
        d = D_BASE * rng.uniform(0.98, 1.02, D_BASE.size)
        avail = pmax * (0.6 if (t // 12) % 2 else 1.2)
        rec = mech.step(IntervalInput(t, d, avail))
        if z_seen is not None and rec.executed:
            assert mech.z_last is not None
            z_seen[t] = mech.z_last
        si = SimpleNamespace(window=(t // 12) if (t // 12) % 2 else None)
        w.add_interval(
            _tables_of(
                rec,
                si,
                net,
                TIER.astype(np.int16),
                idx,
                idx,
                np.zeros(0, np.int32),
                np.arange(2, dtype=np.int32),
                np.zeros(2, np.int32),
            )
        )
    return Path(w.close())


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> RunData:
    return RunData.open(mechanism_run(tmp_path_factory.mktemp("deficit")))


def tampered(run: RunData, **changes: object) -> RunData:
    nodes = run.table("nodes").copy()
    manifest = copy.deepcopy(dict(run.manifest))
    manifest.update(changes.pop("manifest", {}))  # type: ignore[arg-type]
    for fn in changes.values():
        nodes = fn(nodes)  # type: ignore[operator]
    return RunData(manifest=manifest, tables={"nodes": nodes})


def test_real_run_passes_and_records_a_moving_deficit(real_run: RunData) -> None:
    res = check_deficit_replay(real_run)
    assert res.applicable and res.passed, res.detail
    assert res.measured <= 1.0 and res.bound == 1.0
    nodes = real_run.table("nodes")
    assert nodes["deficit_mwh"].abs().max() > 0.1  # scarcity moved it
    per_tier = nodes.groupby(["t", "tier"])["deficit_mwh"].sum()
    assert per_tier.abs().max() < 1e-9  # each tier's deficits sum to 0
    held = real_run.table("intervals")["executed"].eq(False).sum()
    assert held > 0  # held intervals were replayed too
    report = verify_run(real_run.path, checks=["deficit-replay"])  # type: ignore[arg-type]
    assert report.passed and report.get(CheckName.DEFICIT_REPLAY.value).applicable


def test_replay_by_hand() -> None:
    x = np.array([[5.0, 10.0], [4.0, 4.0]])
    d = np.array([[10.0, 10.0], [4.0, 4.0]])
    np.testing.assert_allclose(
        replay_deficit(x, d, np.array([0, 0]), 0.5), [[1.25, -1.25], [1.25, -1.25]]
    )


def _bump(rows: pd.Series, by: float):  # type: ignore[no-untyped-def]
    def fn(nodes: pd.DataFrame) -> pd.DataFrame:
        nodes = nodes.copy()
        nodes.loc[rows, "deficit_mwh"] += by
        return nodes

    return fn


@pytest.mark.parametrize(
    "how",
    ["deficit", "served", "tier", "interval", "missing"],
)
def test_tampered_tables_fail(real_run: RunData, how: str) -> None:
    nodes = real_run.table("nodes")
    late = (nodes["t"] == 100) & (nodes["node"] == 1)
    if how == "deficit":
        bad = tampered(real_run, d=_bump(late, 1e-5))
        want = "does not follow the recursion"
    elif how == "served":

        def serve_more(n: pd.DataFrame) -> pd.DataFrame:
            n = n.copy()
            n.loc[(n["t"] == 40) & (n["node"] == 1), "served_mw"] -= 0.01
            return n

        bad = tampered(real_run, s=serve_more)
        want = "does not follow the recursion"
    elif how == "tier":

        def retier(n: pd.DataFrame) -> pd.DataFrame:
            n = n.copy()
            n.loc[n["node"] == 2, "tier"] = 0
            return n

        bad = tampered(real_run, r=retier)
        want = "does not follow the recursion"
    elif how == "interval":
        bad = tampered(real_run, manifest={"interval_hours": 0.5})
        want = "dt = 0.5 h"
    else:
        bad = tampered(real_run, m=lambda n: n[~late])
        want = "missing or not finite"
    res = check_deficit_replay(bad)
    assert res.applicable and not res.passed
    assert res.measured > 1.0 or want == "missing or not finite"
    assert want in res.detail


def test_runs_without_the_column_are_not_applicable(real_run: RunData) -> None:
    old = tampered(real_run, d=lambda n: n.drop(columns=["deficit_mwh"]))
    res = check_deficit_replay(old)
    assert not res.applicable and res.passed and "recorded no deficit" in res.detail
    nulls = tampered(real_run, d=lambda n: n.assign(deficit_mwh=np.nan))
    assert not check_deficit_replay(nulls).applicable
    syn = synthetic_run(24)
    report = verify_run(syn.data(), checks=["deficit-replay"])
    assert report.passed and not report.get("deficit-replay").applicable


def test_interval_length_from_the_manifest() -> None:
    assert RunContext.from_manifest({}).interval_h == 0.5
    assert RunContext.from_manifest({"spec": {"scenario": {"interval_minutes": 15}}}).interval_h
    assert (
        RunContext.from_manifest({"spec": {"scenario": {"interval_minutes": 15}}}).interval_h
        == 0.25
    )
    assert RunContext.from_manifest({"interval_hours": 1.0}).interval_h == 1.0


@pytest.mark.parametrize("policy", [Policy.EQUAL, Policy.LMP])
def test_baselines_pass_too(tmp_path: Path, policy: Policy) -> None:
    run = RunData.open(mechanism_run(tmp_path, policy.value, "memory"))
    res = check_deficit_replay(run)
    assert res.applicable and res.passed, res.detail


@pytest.mark.parametrize("source", ["deficit", "both", "memory"])
def test_trigger_state_carries_the_deficit_level(tmp_path: Path, source: str) -> None:
    """The engine's trigger vector ends with the level the deficit weights read, and T4's
    rebuild from the stored tables gives the same numbers."""
    seen: dict[int, np.ndarray] = {}
    run = RunData.open(mechanism_run(tmp_path, "fpamm", source, z_seen=seen))
    n = D_BASE.size
    size = 2 * n + 2 + (n if source != "memory" else 0)
    assert all(z.size == size for z in seen.values())
    assert run.context.weights_read_deficit == (source != "memory")
    if source == "memory":
        return
    levels = _deficit_levels(run, run.table("nodes"))
    got = np.array([z[-n:] for z in seen.values()])
    np.testing.assert_allclose(levels[sorted(seen)], got, atol=1e-9)
    assert got.max() == 1.0 and got.min() == 0.0  # the most under-served node of a tier is 1
