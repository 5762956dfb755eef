"""The AC check of stored allocations (``fpamm ac``): a realism indicator, never a crash.

A 50-interval IEEE-14 FP-AMM run is checked in AC: every sampled interval converges with
voltages in a plausible range. Tampered allocations (absurd loads) are reported as not
converged or out of range, and a wrong-sized allocation is one clear error.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fpamm_opt.accheck import ac_check_interval, ac_check_run, in_service_gen_rows
from fpamm_opt.errors import RunDirectoryError
from fpamm_opt.network import load_network, read_raw_case

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "fpamm_opt.cli"]


@pytest.fixture(scope="module")
def run14(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ac") / "ieee14"
    subprocess.run(
        [*CLI, "run", str(REPO / "models" / "ieee14.toml"), "-T", "50", "--out", str(out)],
        check=True,
        capture_output=True,
        cwd=REPO,
    )
    return out


def test_ac_check_of_a_short_ieee14_run_converges(run14: Path) -> None:
    proc = subprocess.run(
        [*CLI, "ac", str(run14), "--sample", "8", "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(proc.stdout)
    assert rep["sampled"] == 8 and rep["converged"] == 8
    assert 0.9 <= rep["vm_min_pu"] <= rep["vm_max_pu"] <= 1.1
    assert rep["max_loading_percent"] > 0
    assert len(rep["intervals"]) == 8 and all(r["converged"] for r in rep["intervals"])


def test_strict_exit_code_follows_the_report(run14: Path) -> None:
    rep = ac_check_run(run14, sample=8)
    proc = subprocess.run(
        [*CLI, "ac", str(run14), "--sample", "8", "--strict"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert "converged 8/8" in proc.stdout
    assert proc.returncode == (0 if rep.n_in_range == 8 else 3)


def test_absurd_loads_are_reported_never_a_crash() -> None:
    net = load_network("case14")
    raw = read_raw_case("case14")
    p = np.zeros(net.n_gen)
    p[0] = 30.0 * net.node_demand_mw.sum()
    bad = ac_check_interval(raw, net, 0, p, 30.0 * net.node_demand_mw)
    assert not bad.in_range
    assert (not bad.converged) or bad.vm_min_pu < 0.9
    if not bad.converged:
        assert bad.message.startswith("not converged") and bad.vm_min_pu is None
    ok = ac_check_interval(raw, net, 0, net.gen_p_set_mw, net.node_demand_mw)
    assert ok.converged and ok.vm_min_pu is not None and ok.vm_min_pu > 0.9


def test_wrong_sized_allocation_is_one_clear_error() -> None:
    net = load_network("case14")
    raw = read_raw_case("case14")
    assert in_service_gen_rows(raw).size == net.n_gen
    with pytest.raises(RunDirectoryError, match="stored generators"):
        ac_check_interval(raw, net, 3, np.zeros(net.n_gen + 1), net.node_demand_mw)


def test_sample_must_be_positive(run14: Path) -> None:
    proc = subprocess.run([*CLI, "ac", str(run14), "--sample", "0"], capture_output=True, text=True)
    assert proc.returncode == 1 and "at least 1" in proc.stderr
