"""An interrupted batch (SIGTERM to ``fpamm batch``): exit 130, index written, no partial runs."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fpamm_opt.errors import RunDirectoryError
from fpamm_opt.io import read_index, read_manifest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

SWEEP = """
base = "ieee14.toml"
[sweep]
seed = [0, 1, 2, 3]
[set]
"run.intervals" = 120
"""


def _n_complete(out: Path) -> int:
    """Complete runs in the index (0 while it does not exist yet)."""
    try:
        return int((read_index(out)["status"] == "complete").sum())
    except RunDirectoryError:
        return 0


def test_sigterm_stops_the_batch_cleanly(tmp_path: Path) -> None:
    shutil.copy(REPO / "models" / "ieee14.toml", tmp_path / "ieee14.toml")
    (tmp_path / "sweep.toml").write_text(SWEEP)
    out = tmp_path / "out"
    runs = out / "runs"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fpamm_opt.cli",
            "batch",
            "sweep.toml",
            "--out",
            "out",
            "--workers",
            "2",
            "--no-progress",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if _n_complete(out) >= 1:
                break
            time.sleep(0.1)
        assert proc.poll() is None, "the batch ended before it could be interrupted"
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr
    assert "interrupted:" in stderr and str(out / "index.parquet") in stderr
    assert "Traceback" not in stderr
    names = sorted(p.name for p in runs.iterdir())
    assert not [n for n in names if n.startswith(".")], names  # no temporary directories left
    idx = read_index(out)
    assert len(idx) == 4 and set(idx["status"]) <= {"complete", "pending"}
    done = idx[idx["status"] == "complete"]
    assert 1 <= len(done) < 4
    # A run may finish in its worker just as the parent stops: its directory is then whole
    # but still "pending" in the index (the next batch skips it).
    assert set(done["run_id"]) <= set(names) and len(names) < 4
    hashes = dict(zip(idx["run_id"], idx["spec_hash"], strict=True))
    for name in names:
        man = read_manifest(runs / name)
        assert man["status"] == "complete" and man["spec_hash"] == hashes[name]


def test_workers_leave_when_the_batch_process_is_killed(tmp_path: Path) -> None:
    """SIGKILL to ``fpamm batch`` leaves no time to stop the pool: its workers notice that
    their parent is gone, abort their runs (no temporary directory left) and exit."""
    import psutil

    from fpamm_opt.sim.batch import ORPHAN_GRACE_S, ORPHAN_POLL_S

    shutil.copy(REPO / "models" / "ieee14.toml", tmp_path / "ieee14.toml")
    (tmp_path / "sweep.toml").write_text(SWEEP.replace("= 120", "= 3000"))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "fpamm_opt.cli", "batch", "sweep.toml", "--out", "out"]
    proc = subprocess.Popen(
        [*cmd, "--workers", "2", "--no-progress"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        parent = psutil.Process(proc.pid)
        deadline = time.monotonic() + 120
        workers: list[psutil.Process] = []
        while time.monotonic() < deadline and len(workers) < 2:
            workers = [
                c for c in parent.children(recursive=True) if "spawn_main" in " ".join(c.cmdline())
            ]
            time.sleep(0.2)
        assert len(workers) == 2, "the pool did not start"
        time.sleep(3.0)  # the workers are inside their runs
        proc.kill()
        proc.wait(timeout=30)
        _, alive = psutil.wait_procs(workers, timeout=ORPHAN_POLL_S + ORPHAN_GRACE_S + 20)
        assert not alive, f"workers still running after their parent was killed: {alive}"
    finally:
        if proc.poll() is None:
            proc.kill()
    runs = out / "runs"
    names = sorted(p.name for p in runs.iterdir()) if runs.exists() else []
    assert not [n for n in names if n.startswith(".")], names  # no temporary directories left
