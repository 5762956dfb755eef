"""Evidence that a node is network-limited (fpamm_opt.verify.evidence) on a 3-bus network.

The conftest's 3-bus case with a 30 MW load added at bus 1 (where the cheap generator is):
with generator 2 unavailable, branch 1-3 (80 MW) carries ``(x_2 + 2 x_3) / 3``, so bus 3 can
receive at most ``(240 - x_2) / 2``. Node 1 (bus 2) is in tier 0, cleared first; nodes 0
(bus 1) and 2 (bus 3) share tier 1.

- *behind the line*: bus 2 served 50 MW, so bus 3 gets at most 95 MW while its tier's ratio
  asks 96.15: the network cannot deliver 1.15 MW to it whatever tier 1 does;
- *left short*: generation covers all but 15 MW and the allocation puts all of it on bus 3,
  which could have had 95 MW without its tier losing any energy (bus 1 giving way).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import tiny3_text

from fpamm_opt.verify.context import RunData
from fpamm_opt.verify.convergence import analyse_t5, check_convergence
from fpamm_opt.verify.evidence import EvidenceSearch
from fpamm_opt.verify.underservice import UnderService

pytestmark = pytest.mark.component

BASE_MW = np.array([30.0, 50.0, 100.0])  # buses 1, 2, 3
TIER = (1, 0, 1)


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> Path:
    text = tiny3_text().replace("\t1\t3\t0\t0\t0\t0", "\t1\t3\t30\t0\t0\t0", 1)
    path = tmp_path_factory.mktemp("evidence") / "tiny3_load1.m"
    path.write_text(text)
    return path


def allocation(scale: float, limited: bool) -> tuple[np.ndarray, np.ndarray]:
    """Demand and the stored allocation of one scarce interval."""
    d = BASE_MW * scale
    x = d.copy()
    if limited:
        x[2] = (240.0 - x[1]) / 2.0  # the line binds
    else:
        x[2] = d[2] - 15.0  # all of the shortage on bus 3
    return d, x


def make_run(case: Path, n_t: int, limited: bool, seed: int = 0) -> RunData:
    """Windows of 10 normal and 10 scarce intervals; demand scaled by 1 +- 2 %."""
    rng = np.random.default_rng(seed)
    rows_n, rows_g, rows_i = [], [], []
    for t in range(n_t):
        scarce = (t // 10) % 2 == 1
        s = float(rng.uniform(0.98, 1.02))
        if scarce:
            d, x = allocation(s, limited)
        else:
            d = BASE_MW * 0.8 * s
            x = d.copy()
        for j in range(3):
            rows_n.append(
                {
                    "t": t,
                    "node": j,
                    "bus": j + 1,
                    "tier": TIER[j],
                    "demand_mw": d[j],
                    "served_mw": x[j],
                }
            )
        avail = float(x.sum()) if scarce else 200.0
        rows_g.append({"t": t, "gen": 0, "p_mw": x.sum(), "available_mw": avail})
        rows_g.append({"t": t, "gen": 1, "p_mw": 0.0, "available_mw": 0.0})
        rows_i.append({"t": t, "scarce": scarce, "tier_order": "0>1" if scarce else ""})
    manifest = {
        "policy": "fpamm",
        "spec": {"network": {"case": str(case), "convention": "matpower", "ratings": "case"}},
    }
    tables = {
        "nodes": pd.DataFrame(rows_n),
        "generators": pd.DataFrame(rows_g),
        "intervals": pd.DataFrame(rows_i),
    }
    return RunData(manifest=manifest, tables=tables)


def test_a_node_behind_a_binding_line_is_network_limited(case: Path) -> None:
    run = make_run(case, 20, limited=True)
    us = UnderService.from_run(run)
    ev = EvidenceSearch(run, us).node(2)
    scarce = np.flatnonzero((np.arange(20) // 10) % 2 == 1)
    assert ev.short_intervals == ev.limited_intervals == scarce.size
    d, x = us.demand_mw[scarce, 2], us.served_mw[scarce, 2]
    want = us.interval_ratio[scarce, 2] * d
    # The network could not deliver r d - x at all: x is the most bus 3 can get.
    assert ev.undeliverable_mw == pytest.approx(float(np.sum(want - x)), rel=1e-6)
    assert ev.contraction_mw[scarce] == pytest.approx(want - x, rel=1e-6)
    assert ev.at_cost_mw == pytest.approx(0.0, abs=1e-6) and ev.reachable_mw < 1e-6
    assert "could not have had its tier's ratio" in ev.describe(0.5)


def test_a_node_that_could_have_been_served_more_is_not(case: Path) -> None:
    run = make_run(case, 20, limited=False)
    us = UnderService.from_run(run)
    ev = EvidenceSearch(run, us).node(2)
    assert ev.short_intervals == 10 and not ev.network_limited
    assert not ev.contraction_mw.any()
    scarce = np.flatnonzero((np.arange(20) // 10) % 2 == 1)
    short = us.interval_ratio[scarce, 2] * us.demand_mw[scarce, 2] - us.served_mw[scarce, 2]
    assert ev.reachable_mw == pytest.approx(float(short.sum()), rel=1e-6)
    assert "no interval in which the network kept it from its ratio" in ev.describe(0.5)


def test_the_cost_is_named_when_serving_more_takes_the_tiers_energy(case: Path) -> None:
    """Both loads in one tier, bus 3 at 95 MW behind the line with bus 2 at 50: serving bus
    3 its tier's ratio would need bus 2 to give up two MW for each one (x_2 + 2 x_3 <= 240)."""
    run = make_run(case, 20, limited=True)
    nodes = run.tables["nodes"]
    nodes.loc[nodes["node"] == 1, "tier"] = 1
    run.tables["intervals"]["tier_order"] = run.tables["intervals"]["tier_order"].replace(
        "0>1", "1"
    )
    us = UnderService.from_run(run)
    ev = EvidenceSearch(run, us).node(2)
    assert ev.network_limited and ev.at_cost_mw > 0 and ev.cost_mw > 0
    # Each MW more at bus 3 costs a net MW of the tier's energy (bus 2 gives two).
    assert ev.cost_mw == pytest.approx(ev.at_cost_mw, rel=1e-4)
    assert "only at a cost of" in ev.describe(0.5)


def test_t5_contracts_only_with_evidence(case: Path) -> None:
    limited = make_run(case, 400, limited=True)
    a = analyse_t5(limited)
    assert not a.plain_verdict.passed  # bus 3 drifts behind its tier's ratio
    assert a.verdict.passed and [e.node for e in a.network_limited] == [2]
    res = check_convergence(limited, analysis=a)
    assert res.passed and "re-solved the short intervals of 1 node(s)" in res.detail

    short = check_convergence(make_run(case, 400, limited=False))
    assert not short.passed
    assert "node 2 (tier 1) is under-served beyond the random-walk bound" in short.detail
    assert "re-solves show it is not network-limited" in short.detail
