"""Batch throughput: runs per minute with 1 and 2 local workers and a Dask LocalCluster of 2.

Run from the repository root::

    .venv/bin/python bench/bench_batch.py [--runs 8] [--intervals 1000]
                                          [--out bench/results_batch.json] [--quick]

One sweep (``models/ieee14.toml``, FP-AMM, seeds ``0..runs-1``, ``--intervals`` each) is run
three times, side by side in this one process, each time into a fresh batch directory with
the command a user types:

1. ``fpamm batch SWEEP --workers 1``;
2. ``fpamm batch SWEEP --workers 2``;
3. ``fpamm batch SWEEP --scheduler ADDRESS`` against a ``distributed.LocalCluster`` of two
   single-threaded worker processes started here (its start-up is not timed).

Reported: wall time, runs per minute, the speed-up of each over one worker and the parallel
efficiency ``speed-up / workers``. Every run of every batch must be complete (the batch index
says so), or the script exits 1. Wall times include each command's Python start-up (about a
second), which a longer batch amortises. Times are this machine's (2 cores); ratios are what
carries over, and they need a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from run_all import machine_block  # noqa: E402


def write_sweep(folder: Path, runs: int, intervals: int) -> Path:
    """The sweep file of the benchmark (FP-AMM on IEEE-14, ``runs`` seeds)."""
    path = folder / "bench_sweep.toml"
    seeds = ", ".join(str(s) for s in range(runs))
    path.write_text(
        f'base = "{(ROOT / "models" / "ieee14.toml").as_posix()}"\n'
        'description = "batch throughput benchmark"\n'
        f"[sweep]\nseed = [{seeds}]\n"
        f'[set]\n"run.intervals" = {intervals}\n"run.policy" = "fpamm"\n'
    )
    return path


def run_batch_command(sweep: Path, out: Path, extra: list[str]) -> float:
    """Wall seconds of ``fpamm batch SWEEP --out OUT EXTRA``; raises when a run is missing."""
    cmd = [sys.executable, "-m", "fpamm_opt.cli", "batch", str(sweep), "--out", str(out)]
    t0 = time.perf_counter()
    subprocess.run([*cmd, "--no-progress", *extra], check=True, cwd=ROOT, capture_output=True)
    wall = time.perf_counter() - t0
    index = pd.read_parquet(out / "index.parquet")
    if len(index) == 0 or not bool((index["status"] == "complete").all()):
        raise RuntimeError(f"{out}: not every run completed")
    return wall


def measure(runs: int, intervals: int) -> dict[str, Any]:
    """The three batches, timed side by side."""
    from distributed import LocalCluster

    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sweep = write_sweep(folder, runs, intervals)
        for name, extra in (("local_1", ["--workers", "1"]), ("local_2", ["--workers", "2"])):
            wall = run_batch_command(sweep, folder / name, extra)
            rows[name] = {"workers": int(extra[1]), "wall_s": wall}
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster:
            wall = run_batch_command(
                sweep, folder / "dask_2", ["--scheduler", cluster.scheduler_address]
            )
        rows["dask_2"] = {"workers": 2, "wall_s": wall}
    base = rows["local_1"]["wall_s"]
    for r in rows.values():
        r["runs_per_min"] = 60.0 * runs / r["wall_s"]
        r["speedup"] = base / r["wall_s"]
        r["efficiency"] = r["speedup"] / r["workers"]
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--intervals", type=int, default=1000)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results_batch.json"))
    ap.add_argument("--quick", action="store_true", help="4 runs of 200 intervals")
    args = ap.parse_args(argv)
    runs, intervals = (4, 200) if args.quick else (args.runs, args.intervals)
    rows = measure(runs, intervals)
    for name, r in rows.items():
        print(
            f"{name:8s} {r['wall_s']:7.1f} s  {r['runs_per_min']:6.1f} runs/min  "
            f"speed-up {r['speedup']:.2f}x  efficiency {r['efficiency']:.0%}"
        )
    result = {
        "runs": runs,
        "intervals": intervals,
        "spec": "models/ieee14.toml, FP-AMM",
        "batches": rows,
        "machine": machine_block(),
    }
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
