"""End-to-end ``fpamm compare`` and ``fpamm report`` on IEEE-14 (60 intervals).

One comparison (FP-AMM, equal weights, LMP; two worker processes) is run once per module
and reused: its ``comparison.json``, its report, a report of one of its run directories,
a resumed compare that must reuse the runs, and a compare of another spec into the same
directory that must refuse.

Seed 6 puts two scarcity windows in the first 60 intervals (23-29 and 48-59), so scarce
intervals remain after the burn-in (the first window) and the peak errors are defined.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from fpamm_opt.cli import app
from fpamm_opt.io import read_manifest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "models" / "ieee14.toml"
ARGS = ["-T", "60", "--seed", "6", "--workers", "2"]
POLICIES = ("fpamm", "equal", "lmp")

POLICY_KEYS = {
    "peak_weak_bus_error",
    "final_max_fairness_error",
    "t5_statistic",
    "t5_bound",
    "t5_passed",
    "t5_detail",
    "checks_passed",
    "checks_failed",
    "all_checks_passed",
    "feasible_fraction",
    "spread",
    "served_energy_mwh",
    "shed_energy_mwh",
    "run_dir",
    "wall_s",
    "spec_hash",
    "peak_weak_bus_abs_error",
    "under_service",
}


def _cli(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return res.exit_code, res.stdout, res.stderr


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("compare") / "c14"
    code, stdout, stderr = _cli("compare", str(SPEC), "--out", str(out), *ARGS)
    assert code == 0, stderr
    return out, stdout


def test_comparison_json(compared: tuple[Path, str]) -> None:
    out, _ = compared
    data = json.loads((out / "comparison.json").read_text())
    for key in (
        "weak_bus",
        "weak_bus_abs",
        "burn_in",
        "reductions",
        "spec_hash",
        "seed",
        "intervals",
        "policies",
    ):
        assert key in data
    assert data["seed"] == 6 and data["intervals"] == 60
    assert set(data["policies"]) == set(POLICIES)
    for p in POLICIES:
        entry = data["policies"][p]
        assert POLICY_KEYS <= set(entry), POLICY_KEYS - set(entry)
        assert entry["feasible_fraction"] == 1.0
        run_dir = out / entry["run_dir"]
        assert (run_dir / "manifest.json").is_file()
        man = read_manifest(run_dir)
        assert man["policy"] == p and man["seed"] == 6 and man["spec_hash"] == entry["spec_hash"]
        assert "T3-feasibility" in entry["checks_passed"]
    # Common random numbers: the specs differ in run.policy only.
    specs = {p: read_manifest(out / p)["spec"] for p in POLICIES}
    for p in POLICIES:
        specs[p]["run"].pop("policy")
    assert specs["fpamm"] == specs["equal"] == specs["lmp"]
    assert data["spec_hash"] == data["policies"]["fpamm"]["spec_hash"]
    red = data["reductions"]
    for key in ("peak_weak_bus_error", "spread", "peak_weak_bus_error_vs_lmp", "spread_vs_lmp"):
        assert isinstance(red[key], float) and math.isfinite(red[key]), key
    wb = data["weak_bus"]
    assert {"node", "bus", "tier", "peak", "reduction", "over_served"} <= set(wb)
    assert wb["reduction"] == pytest.approx(red["peak_weak_bus_error"])
    # MECHANISM.md section 6: the weak bus is the most under-served node under equal weights
    assert wb["final_gap_equal"] >= data["weak_bus_abs"]["final_gap_equal"]
    assert wb["final_gap_equal"] == pytest.approx(data["policies"]["equal"]["under_service"])
    assert data["weak_bus_abs"]["final_error_equal"] >= wb["final_error_equal"]
    assert data["burn_in"]["scarce_after"] > 0
    assert data["policies"]["lmp"]["t5_passed"] is None  # T5 does not apply to LMP


def test_compare_prints_headline(compared: tuple[Path, str]) -> None:
    out, stdout = compared
    assert "peak weak-bus error" in stdout and "reduction" in stdout
    assert "limiting spread" in stdout and "verification:" in stdout
    assert "limiting under-service" in stdout and "largest absolute final error" in stdout
    assert str(out / "comparison.json") in stdout
    assert str(out / "report" / "summary.md") in stdout


def test_comparison_report(compared: tuple[Path, str]) -> None:
    out, _ = compared
    summary = out / "report" / "summary.md"
    text = summary.read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(links) >= 5
    for link in links:
        assert not Path(link).is_absolute()
        png = summary.parent / link
        assert png.suffix == ".png" and png.is_file() and png.stat().st_size > 1000
    assert "## Headline" in text and "## Verification" in text and "weak bus" in text


def test_report_of_one_run(compared: tuple[Path, str]) -> None:
    out, _ = compared
    run_dir = out / "lmp"
    code, stdout, stderr = _cli("report", str(run_dir))
    assert code == 0, stderr
    summary = run_dir / "report" / "summary.md"
    assert summary.is_file() and "run report" in stdout
    text = summary.read_text()
    assert "T3-feasibility" in text
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert (summary.parent / link).stat().st_size > 1000


def test_resume_reuses_runs(compared: tuple[Path, str]) -> None:
    out, _ = compared
    files = [out / p / name for p in POLICIES for name in ("manifest.json", "nodes.parquet")]
    before = {f: f.stat().st_mtime_ns for f in files}
    # Only the verification runs again: in this process (--workers 0), no pool to spawn.
    args = ["-T", "60", "--seed", "6", "--workers", "0", "--no-report"]
    code, _, stderr = _cli("compare", str(SPEC), "--out", str(out), *args)
    assert code == 0, stderr
    assert stderr.count("reusing the complete run") == len(POLICIES)
    assert {f: f.stat().st_mtime_ns for f in files} == before
    data = json.loads((out / "comparison.json").read_text())
    assert all(v["reused"] for v in data["policies"].values())


def test_other_spec_refused(compared: tuple[Path, str]) -> None:
    out, _ = compared
    code, _, stderr = _cli(
        "compare", str(SPEC), "--out", str(out), *ARGS, "--set", "mechanism.beta=0.1"
    )
    assert code == 1
    assert "another spec" in stderr and "--overwrite" in stderr
