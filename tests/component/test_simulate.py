"""Runs in memory: ``simulate`` gives exactly the tables ``run`` writes, and nothing on disk.

A 60-interval IEEE-14 run both ways: the five tables are equal column for column, dtype for
dtype (all but the solver wall time ``solve_s``, which differs between any two runs), the
manifests describe the same run, and ``verify`` accepts the in-memory result, the
:class:`RunResult` and the run directory alike. ``solver=`` reaches the run (a name or a
Pyomo solver object; recorded in the manifest).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyomo.environ as pyo
import pytest

import fpamm_opt
import fpamm_opt.sim.run as run_mod
from fpamm_opt.io import TABLE_NAMES, read_run
from fpamm_opt.sim.records import IntervalRecord
from fpamm_opt.sim.run import Simulation, SimulationResult, as_run_spec

pytestmark = pytest.mark.component

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "models" / "ieee14.toml"
T = 60
#: Wall-clock columns: the only ones two runs of the same spec may disagree on.
TIMING = ("solve_s",)


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("simulate") / "run"
    written = fpamm_opt.run(SPEC, out, progress=False, intervals=T)
    kept = fpamm_opt.simulate(SPEC, intervals=T)
    return {"run": written, "sim": kept}


def test_simulate_gives_the_tables_run_writes(both: dict[str, Any]) -> None:
    sim: SimulationResult = both["sim"]
    disk = read_run(both["run"].run_dir)
    assert set(sim.tables) == set(TABLE_NAMES)
    for name in TABLE_NAMES:
        a, b = disk.table(name), sim.tables[name]
        assert list(a.columns) == list(b.columns), name
        assert a.dtypes.equals(b.dtypes), name
        drop = [c for c in TIMING if c in a.columns]
        pd.testing.assert_frame_equal(a.drop(columns=drop), b.drop(columns=drop), check_exact=True)
    assert len(sim.intervals) == T and sim.nodes is sim.tables["nodes"]
    assert sim.intervals["scarce"].any()  # the comparison covers cleared scarce intervals


def test_the_manifests_describe_the_same_run(both: dict[str, Any]) -> None:
    m_run, m_sim = both["run"].manifest, both["sim"].manifest
    assert set(m_run) == set(m_sim)
    for key in ("spec_hash", "spec", "seed", "policy", "engine", "solver", "n_intervals", "status"):
        assert m_run[key] == m_sim[key], key
    assert m_sim["status"] == "complete" and m_sim["n_intervals"] == T
    for name, info in m_sim["tables"].items():
        assert info["rows"] == m_run["tables"][name]["rows"]
        assert "file" not in info  # nothing was written
    assert m_run["summary"] == m_sim["summary"]
    assert m_run["solve_paths"] == m_sim["solve_paths"]
    # the run records the checks the verifier's one rule says apply
    assert m_run["checks"] == [c.value for c in fpamm_opt.verify.applicable_checks(m_run)]
    assert "T4-tracking" not in m_run["checks"] and "T5-convergence" in m_run["checks"]


def test_verify_takes_the_result_in_memory_or_on_disk(both: dict[str, Any]) -> None:
    checks = ["T1", "T2", "T3-feasibility", "deficit-replay"]
    reports = [
        fpamm_opt.verify(both["sim"], checks=checks),
        fpamm_opt.verify(both["run"], checks=checks),
        fpamm_opt.verify(both["run"].run_dir, checks=checks),
    ]
    for rep in reports:
        assert rep.passed, rep.to_table()
    measured = [[c.measured for c in rep if c.applicable] for rep in reports]
    assert measured[0] == measured[1] == measured[2]
    assert reports[0].run_dir is None and reports[2].run_dir == both["run"].run_dir


def test_simulate_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_writer(*args: object, **kwargs: object) -> None:
        raise AssertionError("simulate opened a run writer")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(run_mod, "RunWriter", no_writer)
    res = fpamm_opt.simulate(SPEC, intervals=5, seed=3, policy="equal")
    assert list(tmp_path.iterdir()) == []
    assert res.manifest["policy"] == "equal" and res.manifest["seed"] == 3
    assert res.intervals["t"].tolist() == [0, 1, 2, 3, 4]


def test_the_runner_yields_one_record_per_interval() -> None:
    spec = run_mod.resolve_run_spec(as_run_spec(SPEC), intervals=4)
    sim = Simulation(spec)
    records = list(sim.steps())
    assert [r.t for r in records] == [0, 1, 2, 3]
    assert all(isinstance(r, IntervalRecord) for r in records)
    assert set(sim.columns(records[0])) == set(TABLE_NAMES)
    assert sim.manifest_updates()["summary"]["intervals"] == 4


def test_solver_name_and_object_reach_the_run(tmp_path: Path) -> None:
    """APPSI HiGHS by name clears the max-min rule (LPs) like the fast path; a solver object
    is recorded by name and run on the Pyomo engine."""
    over = ["mechanism.rule=maxmin"]
    ref = fpamm_opt.simulate(SPEC, intervals=T, overrides=over)
    appsi = fpamm_opt.simulate(SPEC, intervals=T, overrides=over, solver="appsi_highs")
    assert appsi.manifest["solver"] == "appsi_highs" and appsi.manifest["engine"] == "pyomo"
    assert ref.manifest["engine"] == "highs"
    assert appsi.intervals["scarce"].any()
    np.testing.assert_allclose(appsi.nodes["served_mw"], ref.nodes["served_mw"], atol=1e-4)
    res = fpamm_opt.run(
        SPEC, tmp_path / "obj", progress=False, intervals=5, solver=pyo.SolverFactory("highs")
    )
    assert res.manifest["solver"] == "highs" and res.manifest["engine"] == "pyomo"
    with pytest.raises(fpamm_opt.FpammError, match="solves LPs only"):
        fpamm_opt.simulate(SPEC, intervals=2, overrides=["mechanism.rule=qp"], solver="appsi_highs")
    with pytest.raises(fpamm_opt.FpammError, match="solver object"):
        fpamm_opt.simulate(
            SPEC, intervals=2, overrides=["solver.engine=highs"], solver=pyo.SolverFactory("highs")
        )


def test_every_scarce_interval_records_each_tier_path() -> None:
    """The per-tier path record: one ``tier-path`` event per tier of every scarce interval's
    final clear, with a word of ``TIER_PATHS``; none for the others."""
    from fpamm_opt.mechanism.types import TIER_PATHS

    spec = fpamm_opt.load_spec(SPEC)
    res = fpamm_opt.simulate(spec, intervals=120)
    iv, ev = res.tables["intervals"], res.tables["events"]
    paths = ev[ev["kind"] == "tier-path"]
    scarce = set(iv.loc[iv["scarce"] & iv["executed"], "t"])
    assert scarce and set(paths["t"]) == scarce
    n_tier = int(res.tables["nodes"]["tier"].max()) + 1
    assert (paths.groupby("t").size() == n_tier).all()
    assert set(paths["detail"]) <= set(TIER_PATHS)
