"""Interruption: SIGTERM or Ctrl-C during a run leaves no partial run directory.

A real ``python -m fpamm_opt.cli run`` subprocess with a long horizon is signalled as soon as
its temporary directory ``.X.tmp-<pid>`` appears (the run is then inside its interval loop).
It must exit non-zero, leave neither ``X`` nor the temporary directory behind, and the next
command on the same ``--out`` must start cleanly and complete.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from fpamm_opt.cli import app

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "models" / "ieee14.toml"
#: Generous: interpreter start-up and model build on a loaded 2-core machine.
STARTUP_TIMEOUT_S = 180.0


def _default_sigint() -> None:
    # A child of a non-interactive shell may inherit SIGINT ignored; Python only installs its
    # KeyboardInterrupt handler when SIGINT is at its default, so restore that first.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_leaves_no_partial_run_directory(tmp_path: Path, sig: signal.Signals) -> None:
    out = tmp_path / "X"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fpamm_opt.cli",
            "run",
            str(SPEC),
            "-T",
            "3000",
            "--no-progress",
            "--out",
            str(out),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )
    tmp_dir = tmp_path / f".X.tmp-{proc.pid}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not tmp_dir.exists():
            if proc.poll() is not None:
                pytest.fail(f"run ended before it was signalled: {proc.communicate()}")
            if time.monotonic() > deadline:
                pytest.fail("the run's temporary directory never appeared")
            time.sleep(0.05)
        time.sleep(0.2)  # well inside the interval loop
        os.kill(proc.pid, sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()

    assert proc.returncode != 0
    assert "Traceback" not in err
    assert "interrupted" in err
    assert not out.exists()
    assert not tmp_dir.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []

    # the next command starts cleanly on the same --out
    res = CliRunner().invoke(
        app, ["run", str(SPEC), "-T", "30", "--no-progress", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert (out / "manifest.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["X"]
