"""A year of half-hours as one run: IEEE-118 FP-AMM for 17,520 intervals, time and memory.

Run from the repository root::

    .venv/bin/python bench/bench_year.py [--out bench/results_year.json]
                                         [--intervals 17520] [--short 1750]
                                         [--quick] [--keep DIR]

The spec is the shipped ``models/ieee118.toml`` (QP rule, deficit weights, derived ratings,
25 % of the time in scarcity windows) with ``run.intervals`` set to the horizon, FP-AMM,
seed 0, written to a temporary run directory (``--keep DIR``: the whole-horizon run is kept
there, e.g. for ``fpamm ac``) through ``fpamm_opt.sim.run.run`` (Parquet row
groups every ``run.flush_every`` intervals, the manifest, the atomic rename).

Two runs, one after the other in one invocation, each in a **fresh Python process**
(``bench_year.py --child ...``) that reads its own peak resident set size
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) when the run is over:

* a short run, about a tenth of a year (``--short``, default 1,750; ``--quick``: 175);
* the whole horizon (``--intervals``, default 17,520; ``--quick``: 1,750).

Reported: the wall time of the whole-horizon run (issue 16 target: at most 3 minutes), its
loop time per interval, the peak RSS of both runs and their ratio (target: at most 1.1), the
RSS sampled about 20 times along each run (growth shows as a slope), and the run directory's
size. Times and memory are *this machine's*, shared with other jobs.
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
DEFAULT_SPEC = ROOT / "models" / "ieee118.toml"
YEAR = 17520
TARGET_RATIO = 1.1
TARGET_WALL_S = 180.0
MARK = "BENCH_YEAR_RESULT "

sys.path.insert(0, str(ROOT / "bench"))
from bench_memory import maxrss_mb, rss_mb  # noqa: E402


def _cpu_s() -> float:
    """CPU time (user + system, s) of this process so far: the wall time less the waiting
    for a core on a shared machine."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def child(spec_path: str, intervals: int, keep: str | None = None) -> dict:
    """One run in this (fresh) process; returns its time and memory figures.

    ``keep``: write the run directory there (replacing one) instead of a temporary one.
    """
    sys.path.insert(0, str(ROOT))
    t0 = time.perf_counter()
    from fpamm_opt.sim.run import run
    from fpamm_opt.spec import load_spec

    spec = load_spec(spec_path, ["run.policy=fpamm", f"run.intervals={intervals}"])
    every = max(1, intervals // 20)
    trace: list[tuple[int, float]] = []

    def on_step(rec) -> None:
        t = int(rec.t)
        if t % every == 0 or t == intervals - 1:
            trace.append((t, round(rss_mb(), 2)))

    with tempfile.TemporaryDirectory(prefix="fpamm-bench-year-") as tmp:
        out = Path(keep) if keep else Path(tmp) / "run"
        res = run(spec, out, progress=False, on_step=on_step, overwrite=bool(keep))
        wall = time.perf_counter() - t0
        m = res.manifest
        size = sum(f.stat().st_size for f in Path(res.run_dir).rglob("*") if f.is_file())
    return {
        "intervals": intervals,
        "wall_s": wall,
        "cpu_s": _cpu_s(),
        "peak_rss_mb": maxrss_mb(),
        "rss_trace_mb": trace,
        "run_dir_mb": size / 2**20,
        "scarce": m["summary"]["scarce"],
        "per_interval_ms": m["timings"]["per_interval_ms"],
        "loop_s": m["timings"]["loop_s"],
        "build_s": m["timings"]["build_s"],
        "flush_every": m["spec"]["run"]["flush_every"],
    }


def measure(spec: str, intervals: int, timeout: float, keep: str | None = None) -> dict:
    """Run :func:`child` in a fresh interpreter and parse its JSON line."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--spec", spec]
    cmd += ["--intervals", str(intervals)] + (["--keep", keep] if keep else [])
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"intervals": intervals, "error": f"timeout after {timeout} s"}
    for line in reversed(p.stdout.splitlines()):
        if line.startswith(MARK):
            return json.loads(line[len(MARK) :])
    return {
        "intervals": intervals,
        "error": f"exit {p.returncode}",
        "stderr_tail": (p.stderr or p.stdout).strip().splitlines()[-5:],
        "wall_s": time.perf_counter() - t0,
    }


def summarise(short: dict, year: dict) -> dict:
    """The targets: wall time of the whole horizon, and the peak RSS ratio."""
    ok = "error" not in short and "error" not in year
    ratio = year["peak_rss_mb"] / short["peak_rss_mb"] if ok else None
    return {
        "rss_ratio": ratio,
        "rss_ratio_target": TARGET_RATIO,
        "rss_ratio_met": None if ratio is None else ratio <= TARGET_RATIO,
        "wall_s": year.get("wall_s"),
        "wall_target_s": TARGET_WALL_S,
        "wall_met": None if "error" in year else year["wall_s"] <= TARGET_WALL_S,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results_year.json"))
    ap.add_argument("--spec", default=str(DEFAULT_SPEC))
    ap.add_argument("--intervals", type=int, default=None, help=f"horizon (default {YEAR})")
    ap.add_argument("--short", type=int, default=None, help="the short run (default 1750)")
    ap.add_argument("--quick", action="store_true", help="horizon 1750 (and 175)")
    ap.add_argument("--timeout", type=float, default=1800.0, help="per child run (s)")
    ap.add_argument("--keep", default=None, help="keep the whole-horizon run directory here")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        print(MARK + json.dumps(child(args.spec, args.intervals, args.keep)), flush=True)
        return 0

    horizon = args.intervals or (1750 if args.quick else YEAR)
    load0 = os.getloadavg()
    n_short = args.short or (175 if args.quick else 1750)
    short = measure(args.spec, n_short, args.timeout)
    year = measure(args.spec, horizon, args.timeout, args.keep)
    s = summarise(short, year)
    for r in (short, year):
        if "error" in r:
            print(f"T={r['intervals']}: {r['error']} {r.get('stderr_tail', '')}")
        else:
            print(
                f"T={r['intervals']}: wall {r['wall_s']:.1f} s (CPU {r.get('cpu_s', 0):.1f} s), loop {r['per_interval_ms']:.2f} "
                f"ms/interval, {r['scarce']} scarce, peak RSS {r['peak_rss_mb']:.0f} MB, "
                f"run directory {r['run_dir_mb']:.1f} MB"
            )
    if s["rss_ratio"] is not None:
        print(
            f"peak RSS ratio {s['rss_ratio']:.3f} (target <= {TARGET_RATIO}); whole horizon "
            f"{s['wall_s']:.0f} s (target <= {TARGET_WALL_S:.0f} s)"
        )
    doc = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "nproc": os.cpu_count(),
            "load_average_start": list(load0),
            "load_average_end": list(os.getloadavg()),
        },
        "spec": str(
            Path(args.spec).relative_to(ROOT) if Path(args.spec).is_relative_to(ROOT) else args.spec
        ),
        "horizon": horizon,
        "run_tenth": short,
        "run_whole": year,
        **s,
    }
    Path(args.out).write_text(json.dumps(doc, indent=2))
    print(f"wrote {args.out}")
    return 0 if "error" not in short and "error" not in year else 1


if __name__ == "__main__":
    raise SystemExit(main())
