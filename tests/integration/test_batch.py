"""End-to-end batches: local process pool, resume, Dask on loopback, failures, readers, DuckDB.

One 8-run sweep (2 seeds x 2 betas x 2 policies on IEEE-14, 20 intervals) is run once with two
local workers (module fixture) and reused: resumed, rerun through a Dask ``LocalCluster`` and
read back with :func:`fpamm_opt.io.read_batch` and DuckDB.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from fpamm_opt.cli import app
from fpamm_opt.io import batch_dataset, read_batch, read_index, read_manifest, read_table

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
INTERVALS = 20

SWEEP = f"""
base = "ieee14.toml"
[sweep]
seed = [0, 1]
"mechanism.beta" = [0.05, 0.1]
policy = ["fpamm", "equal"]
[set]
"run.intervals" = {INTERVALS}
"""

#: Columns that hold timings or solver notes, not results.
VOLATILE = ("solve_s", "status")

INDEX_COLUMNS = [
    "run_id",
    "status",
    "seed",
    "mechanism.beta",
    "policy",
    "path",
    "wall_s",
    "error",
    "spec_hash",
]


def _cli(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return res.exit_code, res.stdout, res.stderr


def _write_sweep(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "models" / "ieee14.toml", folder / "ieee14.toml")
    path = folder / "sweep.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def sweep_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_sweep(tmp_path_factory.mktemp("sweep"), SWEEP)


@pytest.fixture(scope="module")
def local_batch(sweep_file: Path) -> Path:
    out = sweep_file.parent / "local"
    code, stdout, stderr = _cli(
        "batch", str(sweep_file), "--out", str(out), "--workers", "2", "--no-progress"
    )
    assert code == 0, stdout + stderr
    assert "8 runs: 8 complete, 0 skipped" in stdout
    return out


def _stable(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=[c for c in VOLATILE if c in df.columns])


def test_local_batch_and_resume(local_batch: Path, sweep_file: Path) -> None:
    idx = read_index(local_batch)
    assert list(idx.columns) == INDEX_COLUMNS
    assert len(idx) == 8 and set(idx["status"]) == {"complete"}
    assert idx["error"].isna().all() and (idx["wall_s"] > 0).all()
    assert sorted(idx["mechanism.beta"].unique()) == [0.05, 0.1]
    assert set(idx["policy"]) == {"fpamm", "equal"} and set(idx["seed"]) == {0, 1}
    assert idx["run_id"].is_unique
    first = idx.iloc[0]
    assert first["run_id"].startswith("r0000-seed0-policy_fpamm-beta0.05-")
    runs = local_batch / "runs"
    assert sorted(p.name for p in runs.iterdir()) == sorted(idx["run_id"])  # no temporaries
    for _, row in idx.iterrows():
        man = read_manifest(local_batch / row["path"])
        assert man["status"] == "complete" and man["spec_hash"] == row["spec_hash"]
        assert man["seed"] == row["seed"] and man["policy"] == row["policy"]
        assert man["spec"]["mechanism"]["beta"] == row["mechanism.beta"]
        assert man["n_intervals"] == INTERVALS
    stamps = {p: p.stat().st_mtime_ns for d in runs.iterdir() for p in (d, *d.iterdir())}

    t0 = time.perf_counter()
    code, stdout, stderr = _cli(
        "batch", str(sweep_file), "--out", str(local_batch), "--workers", "2", "--no-progress"
    )
    assert code == 0, stdout + stderr
    assert "8 runs: 0 complete, 8 skipped (already complete), 0 failed" in stdout
    assert time.perf_counter() - t0 < 10  # nothing was started
    again = read_index(local_batch)
    assert set(again["status"]) == {"skipped-complete"} and again["wall_s"].isna().all()
    assert list(again["run_id"]) == list(idx["run_id"])
    assert list(again["spec_hash"]) == list(idx["spec_hash"])
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_dask_scheduler_gives_the_same_tables(local_batch: Path, sweep_file: Path) -> None:
    distributed = pytest.importorskip("distributed")
    out = sweep_file.parent / "dask"
    with distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        code, stdout, stderr = _cli(
            "batch",
            str(sweep_file),
            "--out",
            str(out),
            "--scheduler",
            cluster.scheduler_address,
            "--no-progress",
        )
    assert code == 0, stdout + stderr
    assert "8 runs: 8 complete" in stdout
    local, remote = read_index(local_batch), read_index(out)
    assert list(remote["run_id"]) == list(local["run_id"])
    assert list(remote["spec_hash"]) == list(local["spec_hash"])
    assert set(remote["status"]) == {"complete"}
    for run_id in local["run_id"]:
        for table in ("intervals", "nodes"):
            a = _stable(read_table(local_batch / "runs" / run_id, table))
            b = _stable(read_table(out / "runs" / run_id, table))
            pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9, atol=1e-9)


def test_read_batch(local_batch: Path) -> None:
    idx = read_index(local_batch)
    df = read_batch(local_batch, "intervals")
    assert len(df) == 8 * INTERVALS
    assert list(df.columns[:4]) == ["run_id", "seed", "mechanism.beta", "policy"]
    assert {"t", "executed", "tracking_error", "served_mw"} <= set(df.columns)
    assert set(df["run_id"]) == set(idx["run_id"])
    merged = df.merge(idx, on="run_id", suffixes=("", "_idx"))
    assert (merged["mechanism.beta"] == merged["mechanism.beta_idx"]).all()
    assert (merged["policy"] == merged["policy_idx"]).all()
    one = idx.iloc[3]
    got = df[df["run_id"] == one["run_id"]].drop(
        columns=["run_id", "seed", "mechanism.beta", "policy"]
    )
    want = read_table(local_batch / one["path"], "intervals")
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want)

    nodes = read_batch(
        local_batch,
        "nodes",
        columns=["t", "shortfall_ratio"],
        filters=[("policy", "==", "equal"), ("t", "<", 5)],
    )
    assert list(nodes.columns) == [
        "run_id",
        "seed",
        "mechanism.beta",
        "policy",
        "t",
        "shortfall_ratio",
    ]
    assert set(nodes["policy"]) == {"equal"} and nodes["t"].max() == 4
    assert nodes["run_id"].nunique() == 4
    dset = batch_dataset(local_batch, "nodes")
    assert dset.count_rows() == sum(
        len(read_table(local_batch / p, "nodes", columns=["t"])) for p in idx["path"]
    )
    assert sum(b.num_rows for b in dset.to_batches(columns=["run_id"])) == dset.count_rows()


def test_duckdb_query_from_the_docs(local_batch: Path) -> None:
    duckdb = pytest.importorskip("duckdb")
    d = local_batch.as_posix()
    query = f"""
        SELECT i.policy, i."mechanism.beta" AS beta, avg(n.shortfall_ratio) AS shortfall
        FROM read_parquet('{d}/runs/*/nodes.parquet', filename = true) AS n
        JOIN read_parquet('{d}/index.parquet') AS i
          ON regexp_extract(n.filename, '.*/runs/([^/]+)/nodes\\.parquet$', 1) = i.run_id
        WHERE i.status IN ('complete', 'skipped-complete')
        GROUP BY i.policy, beta
        ORDER BY i.policy, beta
    """
    got = duckdb.sql(query).df()
    want = (
        read_batch(local_batch, "nodes", columns=["shortfall_ratio"])
        .groupby(["policy", "mechanism.beta"], as_index=False)["shortfall_ratio"]
        .mean()
        .sort_values(["policy", "mechanism.beta"])
        .reset_index(drop=True)
    )
    assert len(got) == 4
    assert list(got["policy"]) == list(want["policy"])
    assert list(got["beta"]) == list(want["mechanism.beta"])
    assert got["shortfall"].to_numpy() == pytest.approx(want["shortfall_ratio"].to_numpy())


def test_failed_runs_are_recorded_and_the_others_complete(tmp_path: Path) -> None:
    text = """
base = "ieee14.toml"
[sweep]
"network.case" = ["case14", "no_such_case.m"]
"mechanism.beta" = [0.05, 2.0]
[set]
"run.intervals" = 5
"run.policy" = "equal"
"""
    sweep = _write_sweep(tmp_path, text)
    out = tmp_path / "out"
    code, stdout, stderr = _cli(
        "batch", str(sweep), "--out", str(out), "--workers", "2", "--no-progress"
    )
    assert code == 1
    assert "4 runs: 1 complete, 0 skipped (already complete), 3 failed" in stdout
    assert "3 of 4 runs failed" in stderr and str(out / "index.parquet") in stderr
    idx = read_index(out).set_index(["network.case", "mechanism.beta"])
    assert idx.loc[("case14", 0.05), "status"] == "complete"
    bad_beta = idx.xs(2.0, level="mechanism.beta")
    assert set(bad_beta["status"]) == {"failed"}
    assert all(e == "mechanism.beta must be in (0, 1], got 2.0" for e in bad_beta["error"])
    missing = idx.loc[("no_such_case.m", 0.05)]
    assert missing["status"] == "failed" and "no_such_case" in missing["error"]
    assert "\n" not in missing["error"]
    assert [p.name for p in (out / "runs").iterdir()] == [idx.loc[("case14", 0.05), "run_id"]]
    assert len(read_batch(out, "intervals")) == 5


def test_seed_report_pairs_policies_by_swept_values(local_batch: Path) -> None:
    """The seed-robustness report pairs fpamm/equal runs that share every other swept value."""
    from fpamm_opt.report.seeds import seed_results, summary

    res = seed_results(local_batch)
    # 2 seeds x 2 betas, each with an fpamm and an equal run.
    assert len(res) == 4
    assert sorted({r.seed for r in res}) == [0, 1]
    import math

    for r in res:
        # A short horizon may leave no scarce interval after the burn-in: nan, never a number.
        if math.isfinite(r.peak_ew) and r.peak_ew > 0:
            assert r.reduction == pytest.approx(1 - r.peak_fp / r.peak_ew)
        else:
            assert math.isnan(r.reduction)
        assert r.spread_fp >= 0 and r.spread_ew >= 0
    summ = summary(res)
    assert summ["seeds"] == 4
    assert summ["t5_passed_fpamm"] == sum(r.t5_fp for r in res)
    assert summ["t5_passed_equal"] == sum(r.t5_ew for r in res)
