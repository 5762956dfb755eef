"""``fpamm verify BATCH_DIR``: every run of a batch plus T5 over the seeds of each group.

One small batch (IEEE-14, seeds 0-1, FP-AMM and equal weights, 300 intervals) is run once and
verified as a whole: a table and ``--json`` with one entry per run and one T5-replicated check
per (spec, policy) group, exit 0 when all pass and 3 when a check fails (here: one run's
stored memory tampered with).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from fpamm_opt.cli import app
from fpamm_opt.io import read_index

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

SWEEP = """
base = "ieee14.toml"
[sweep]
seed = [0, 1]
policy = ["fpamm", "equal"]
[set]
"run.intervals" = 300
"""


def _cli(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return res.exit_code, res.stdout, res.stderr


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("vbatch")
    shutil.copy(REPO / "models" / "ieee14.toml", folder / "ieee14.toml")
    (folder / "sweep.toml").write_text(SWEEP)
    out = folder / "batch"
    code, stdout, stderr = _cli(
        "batch", str(folder / "sweep.toml"), "--out", str(out), "--workers", "2", "--no-progress"
    )
    assert code == 0, stdout + stderr
    return out


def test_verify_batch_json_and_table(batch: Path) -> None:
    code, stdout, stderr = _cli("verify", str(batch), "--json", "--cold-sample", "2")
    data = json.loads(stdout)
    assert code == (0 if data["passed"] else 3), stderr
    assert data["kind"] == "batch" and len(data["runs"]) == 4 and not data["not_verified"]
    for run in data["runs"]:
        names = [c["name"] for c in run["checks"]]
        assert "T5-convergence" in names and "T3-feasibility" in names
        assert run["passed"] == all(c["passed"] for c in run["checks"] if c["applicable"])
    groups = {g["group"]: g for g in data["groups"]}
    assert set(groups) == {"policy=fpamm", "policy=equal"}
    for g in groups.values():
        assert sorted(g["seeds"]) == [0, 1]
        (check,) = g["checks"]
        assert check["name"] == "T5-replicated" and check["applicable"], check
        assert {"measured", "bound", "statement", "detail"} <= set(check)
    code_t, table, _ = _cli("verify", str(batch), "--cold-sample", "2")
    assert code_t == code
    assert "T5-replicated" in table and "policy=fpamm" in table and "max M / bound" in table
    for run_id in read_index(batch)["run_id"]:
        assert run_id in table


def test_verify_batch_exits_3_when_a_run_fails(batch: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(batch, bad)
    idx = read_index(bad)
    victim = bad / str(idx.loc[0, "path"])
    nodes = pd.read_parquet(victim / "nodes.parquet")
    nodes.loc[nodes["t"] == 5, "memory_after"] = 2.0  # outside [0, 1]: T1 fails
    nodes.to_parquet(victim / "nodes.parquet")
    code, stdout, _ = _cli("verify", str(bad), "--cold-sample", "2")
    assert code == 3
    assert f"{idx.loc[0, 'run_id']} T1-invariance [FAIL]" in stdout
    assert "FAILED: " in stdout


def test_verify_refuses_a_directory_that_is_none_of_them(tmp_path: Path) -> None:
    code, _, stderr = _cli("verify", str(tmp_path))
    assert code == 1 and "nor a batch or comparison directory" in stderr


def test_verify_a_comparison_directory(tmp_path: Path) -> None:
    """A comparison is verified run by run; FP-AMM's spread is judged against equal weights'."""
    out = tmp_path / "cmp"
    spec = str(REPO / "models" / "ieee14.toml")
    code, stdout, stderr = _cli("compare", spec, "--out", str(out), "-T", "60", "--workers", "2")
    assert code == 0, stdout + stderr
    code, stdout, _ = _cli("verify", str(out), "--json", "--cold-sample", "2")
    data = json.loads(stdout)
    assert code == (0 if data["passed"] else 3)
    assert data["kind"] == "comparison"
    assert {r["policy"] for r in data["runs"]} == {"fpamm", "equal", "lmp"}
    fp = next(r for r in data["runs"] if r["policy"] == "fpamm")
    spread = next(c for c in fp["checks"] if c["name"] == "fairness-spread")
    assert spread["bound"] is not None and "baseline" in spread["detail"]
    assert all(not g["checks"][0]["applicable"] for g in data["groups"])  # one seed each
