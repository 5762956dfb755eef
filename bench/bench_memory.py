"""Peak memory of a run at T and at 10T: is memory flat in the horizon?

Run from the repository root::

    .venv/bin/python bench/bench_memory.py [--out bench/results_memory.json]
                                           [--T 5000] [--fpamm-T 500] [--quick]

Every measurement is one complete ``fpamm_opt.sim.run.run`` (scenario, mechanism, Parquet
writer, manifest, atomic rename) in a **fresh Python process** (``python bench_memory.py
--child ...``). The child reads its own peak resident set size
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) when the run is over and prints it as one
JSON line; the parent never reads ``RUSAGE_CHILDREN`` (which is a maximum over *all* its
children, so it could not tell the runs apart). The child also samples its current RSS
(``/proc/self/status``, ``VmRSS``) about 20 times along the run, so growth shows as a slope.

Two pairs, run one after the other in one invocation:

* ``lmp`` policy at ``T`` and ``10T`` (default 5000 / 50000): one cheap screening LP per
  interval, but the same scenario stream, mechanism bookkeeping, writer and row groups as an
  FP-AMM run, so a long horizon fits in a few minutes.
* ``fpamm`` policy at ``T`` and ``10T`` (default 500 / 5000): the full clearing (max-min rule,
  ~4 ms per interval on IEEE-14).

``--quick``: 300 / 3000 for both. The spec is ``models/ieee14.toml`` with
``mechanism.rule=maxmin`` (``--spec``, ``--set`` change that).

Reported per pair: ``peak(10T) / peak(T)`` (target <= 1.3) and the absolute peaks in MB (on
*this machine*: the interpreter, NumPy, pandas/pandapower, Pyomo, HiGHS and pyarrow alone are
most of it), plus the growth of the peak above the RSS at the first interval, which is the
part that could depend on ``T``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SPEC = ROOT / "models" / "ieee14.toml"
DEFAULT_SETS = ("mechanism.rule=maxmin",)
TARGET = 1.3
MARK = "BENCH_MEMORY_RESULT "


def rss_mb() -> float:
    """Current resident set size (MB) of this process."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def maxrss_mb() -> float:
    """Peak resident set size (MB) of this process so far (Linux: ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(spec_path: str, policy: str, intervals: int, sets: list[str]) -> dict:
    """One run in this (fresh) process; returns its memory and time figures."""
    sys.path.insert(0, str(ROOT))
    t0 = time.perf_counter()
    rss_start = rss_mb()
    from fpamm_opt.sim.run import run
    from fpamm_opt.spec import load_spec

    spec = load_spec(spec_path, [*sets, f"run.policy={policy}", f"run.intervals={intervals}"])
    every = max(1, intervals // 20)
    trace: list[tuple[int, float]] = []
    first: list[float] = []

    def on_step(rec) -> None:
        t = int(rec.t)
        if not first:
            first.append(rss_mb())  # imports, network, model, writer all in place
        if t % every == 0 or t == intervals - 1:
            trace.append((t, round(rss_mb(), 2)))

    with tempfile.TemporaryDirectory(prefix="fpamm-bench-mem-") as tmp:
        res = run(spec, Path(tmp) / "run", progress=False, on_step=on_step)
        m = res.manifest
        peak = maxrss_mb()
        rss_end = rss_mb()
        size = sum(f.stat().st_size for f in Path(res.run_dir).rglob("*") if f.is_file())
    half = [r for t, r in trace if t >= intervals // 2]
    slope = (
        (half[-1] - half[0]) / max(1, trace[-1][0] - (intervals // 2)) * 1000.0
        if len(half) >= 2
        else float("nan")
    )
    return {
        "policy": policy,
        "intervals": intervals,
        "peak_rss_mb": peak,
        "rss_start_mb": rss_start,
        "rss_first_interval_mb": first[0] if first else float("nan"),
        "rss_end_mb": rss_end,
        "growth_above_first_interval_mb": peak - (first[0] if first else float("nan")),
        "rss_slope_mb_per_1000_intervals_second_half": slope,
        "rss_trace_mb": trace,
        "run_dir_mb": size / 2**20,
        "scarce": m["summary"]["scarce"],
        "per_interval_ms": m["timings"]["per_interval_ms"],
        "loop_s": m["timings"]["loop_s"],
        "wall_s": time.perf_counter() - t0,
        "flush_every": m["spec"]["run"]["flush_every"],
    }


def measure(spec: str, policy: str, intervals: int, sets: list[str], timeout: float) -> dict:
    """Run :func:`child` in a fresh interpreter and parse its JSON line."""
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        "--spec",
        spec,
        "--policy",
        policy,
        "--intervals",
        str(intervals),
    ]
    for s in sets:
        cmd += ["--set", s]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"policy": policy, "intervals": intervals, "error": f"timeout after {timeout} s"}
    for line in reversed(p.stdout.splitlines()):
        if line.startswith(MARK):
            return json.loads(line[len(MARK) :])
    tail = (p.stderr or p.stdout).strip().splitlines()[-5:]
    return {
        "policy": policy,
        "intervals": intervals,
        "error": f"exit {p.returncode}",
        "stderr_tail": tail,
        "wall_s": time.perf_counter() - t0,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results_memory.json"))
    ap.add_argument("--spec", default=str(DEFAULT_SPEC))
    ap.add_argument(
        "--set",
        action="append",
        default=None,
        metavar="SECTION.KEY=VALUE",
        help=f"spec overrides (default: {' '.join(DEFAULT_SETS)})",
    )
    ap.add_argument("--T", type=int, default=None, help="lmp pair: T and 10T (default 5000)")
    ap.add_argument("--fpamm-T", type=int, default=None, help="fpamm pair: T and 10T (default 500)")
    ap.add_argument("--quick", action="store_true", help="T = 300 / 3000 for both pairs")
    ap.add_argument("--timeout", type=float, default=1200.0, help="per child run (s)")
    # child mode (internal)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--policy", help=argparse.SUPPRESS)
    ap.add_argument("--intervals", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    sets = list(DEFAULT_SETS) if args.set is None else args.set

    if args.child:
        out = child(args.spec, args.policy, args.intervals, sets)
        print(MARK + json.dumps(out), flush=True)
        return 0

    t_lmp = args.T or (300 if args.quick else 5000)
    t_fp = args.fpamm_T or (300 if args.quick else 500)
    load0 = os.getloadavg()
    t_all = time.perf_counter()
    pairs = {}
    for policy, T in (("lmp", t_lmp), ("fpamm", t_fp)):
        a = measure(args.spec, policy, T, sets, args.timeout)
        b = measure(args.spec, policy, 10 * T, sets, args.timeout)
        ok = "error" not in a and "error" not in b
        pairs[policy] = {
            "T": T,
            "run_T": a,
            "run_10T": b,
            "peak_ratio": b["peak_rss_mb"] / a["peak_rss_mb"] if ok else None,
            "growth_ratio": (
                b["growth_above_first_interval_mb"] / a["growth_above_first_interval_mb"]
                if ok and a["growth_above_first_interval_mb"] > 0
                else None
            ),
        }
    total_s = time.perf_counter() - t_all

    print(
        f"peak RSS of one run at T and 10T, each in a fresh process; spec {args.spec} "
        f"with {' '.join(sets) or 'no overrides'}"
    )
    print(
        f"this machine: {os.cpu_count()} cores, load average {load0[0]:.1f} at start "
        "(MB are this machine's: the interpreter and the libraries are most of them)"
    )
    hdr = (
        f"{'policy':7s} {'T':>7s} {'peak MB':>9s} {'1st-int MB':>10s} {'growth MB':>10s} "
        f"{'ms/int':>8s} {'wall s':>7s}"
    )
    print(hdr)
    for policy, p in pairs.items():
        for key in ("run_T", "run_10T"):
            r = p[key]
            if "error" in r:
                print(
                    f"{policy:7s} {r['intervals']:7d}  FAILED: {r['error']} "
                    f"{' | '.join(r.get('stderr_tail', []))}"
                )
                continue
            print(
                f"{policy:7s} {r['intervals']:7d} {r['peak_rss_mb']:9.1f} "
                f"{r['rss_first_interval_mb']:10.1f} "
                f"{r['growth_above_first_interval_mb']:10.1f} {r['per_interval_ms']:8.2f} "
                f"{r['wall_s']:7.1f}"
            )
    for policy, p in pairs.items():
        if p["peak_ratio"] is None:
            print(f"{policy}: peak(10T)/peak(T) not measured (a run failed)")
            continue
        met = "met" if p["peak_ratio"] <= TARGET else "NOT met"
        b = p["run_10T"]
        print(
            f"{policy}: peak(10T)/peak(T) = {p['peak_ratio']:.3f} (target <= {TARGET}: {met}); "
            f"RSS slope over the second half of the 10T run "
            f"{b['rss_slope_mb_per_1000_intervals_second_half']:+.2f} MB per 1000 intervals"
        )
    print(f"total bench time {total_s:.1f} s")

    out = {
        "spec": str(args.spec),
        "overrides": sets,
        "target_peak_ratio": TARGET,
        "pairs": pairs,
        "peak_ratio_max": max(
            (p["peak_ratio"] for p in pairs.values() if p["peak_ratio"] is not None),
            default=None,
        ),
        "all_measured": all(p["peak_ratio"] is not None for p in pairs.values()),
        "machine": {
            "note": "this machine",
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "load_average_start": load0,
            "load_average_end": os.getloadavg(),
            "python": platform.python_version(),
        },
        "total_s": total_s,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")
    return 0 if out["all_measured"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
