"""A run on a network of >= 2000 buses: 1000 FP-AMM intervals, cost per interval.

Run from the repository root::

    .venv/bin/python bench/bench_scale.py [--out bench/results_scale.json]
                                          [--intervals 1000] [--quick]
                                          [--case PATH_OR_NAME] [--ratings case|derived]

The network is PGLib-OPF ``pglib_opf_case2000_goc`` (2000 buses, 3633 branches, 238
generators) with the **case's own ratings** (``--case`` changes it; PGLib-OPF v23.07,
CC BY 4.0, read from ``../shared/data/pglib`` like the tests, not copied into the project).
pandapower's ``GBnetwork`` (2224 buses, offline) was tried first: it has no usable ratings,
and with derived ratings (``max(1.2 |f_base|, 50 MW)``) its scarce intervals took 10-25 s
each on this machine, the max-min clearing LPs ending in HiGHS status "Unknown" (retried,
some failed for good), so it is only the fallback when the PGLib file is absent.
``--case GBnetwork --ratings derived`` reproduces that.

The spec is built in code (``RunSpec.from_dict``): the scenario and mechanism of
``models/ieee118.toml`` (25 % of the time in scarcity windows of 6 h on average, coverage
75-92 %), the **max-min** rule, the **B-theta** formulation (a dense PTDF of 2000 buses is
too slow to build and to solve), the FP-AMM policy, ``engine = "auto"`` (the highspy fast
path), seed 0. One complete ``fpamm_opt.sim.run.run`` into a temporary run directory.

Reported: network load + scenario time (``prepare``), model build time (Pyomo model and its
compilation into HiGHS), per-interval milliseconds (mean over the run; mean of scarce and of
non-scarce intervals, from the wall time between consecutive intervals), the solver's share
of the loop, solves per scarce interval, retries, peak RSS. Times are *this machine's*.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: PGLib-OPF v23.07 (CC BY 4.0), read where the tests read it (``../shared/data/pglib``).
DEFAULT_CASE = str(ROOT.parent / "shared" / "data" / "pglib" / "pglib_opf_case2000_goc.m")
BASE_SPEC = ROOT / "models" / "ieee118.toml"


def make_spec(case: str, ratings: str, intervals: int, seed: int, rating_min_mw: float):
    from fpamm_opt.spec import RunSpec, read_toml

    base = read_toml(BASE_SPEC)
    data = {
        "network": {
            "case": case,
            "convention": "matpower",
            "ratings": ratings,
            "rating_alpha": 1.2,
            "rating_min_mw": rating_min_mw,
            "formulation": "btheta",
        },
        "scenario": dict(base["scenario"]),
        "mechanism": {**base["mechanism"], "rule": "maxmin"},
        "solver": {"name": "highs", "time_limit_s": 60.0, "engine": "auto"},
        "run": {"intervals": intervals, "seed": seed, "policy": "fpamm", "name": "bench_scale"},
    }
    return RunSpec.from_dict(data, base_dir=ROOT)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results_scale.json"))
    ap.add_argument("--intervals", type=int, default=None, help="default 1000 (--quick: 150)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--case", default=DEFAULT_CASE)
    ap.add_argument("--ratings", default="case", choices=["case", "derived", "auto"])
    ap.add_argument("--rating-min-mw", type=float, default=50.0, help="derived ratings only")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    T = args.intervals or (150 if args.quick else 1000)
    if args.case == DEFAULT_CASE and not Path(DEFAULT_CASE).exists():
        print(
            f"{DEFAULT_CASE} not found; falling back to pandapower GBnetwork with derived "
            "ratings (slow and failure-prone, see the module docstring)",
            file=sys.stderr,
        )
        args.case, args.ratings = "GBnetwork", "derived"

    import warnings

    warnings.simplefilter("ignore")
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    from fpamm_opt.sim.run import prepare, run

    import_s = time.perf_counter() - t0
    spec = make_spec(args.case, args.ratings, T, args.seed, args.rating_min_mw)
    t1 = time.perf_counter()
    prep = prepare(spec)  # loads (and caches) the network, builds the scenario
    prepare_s = time.perf_counter() - t1
    net = prep.net

    stamps: list[float] = []
    scarce: list[bool] = []
    solve_s: list[float] = []
    n_solves: list[int] = []
    status: list[str] = []

    def on_step(rec) -> None:
        stamps.append(time.perf_counter())
        scarce.append(bool(rec.scarce))
        solve_s.append(float(rec.solve_s))
        n_solves.append(int(rec.n_solves))
        status.append(str(rec.status))
        k = len(stamps)
        if k % 100 == 0:
            print(f"  {k}/{T} intervals, {stamps[-1] - t_run:.0f} s", file=sys.stderr, flush=True)

    error = None
    with tempfile.TemporaryDirectory(prefix="fpamm-bench-scale-") as tmp:
        t_run = time.perf_counter()
        try:
            res = run(spec, Path(tmp) / "run", progress=False, on_step=on_step)
            m = res.manifest
            run_dir_mb = (
                sum(f.stat().st_size for f in Path(res.run_dir).rglob("*") if f.is_file()) / 2**20
            )
        except Exception as exc:  # report what was measured up to the failure
            error = f"{type(exc).__name__}: {exc}"
            m, run_dir_mb = None, None
        run_wall_s = time.perf_counter() - t_run
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    sc = np.array(scarce, dtype=bool)
    dt = np.diff(np.array(stamps)) if len(stamps) > 1 else np.array([])
    # Class means over intervals 1..T-1: the wall time of an interval is the time between
    # its stamp and the previous one, so the first interval (HiGHS's cold start) has none;
    # its solver time is left out of the class means too, for the same population.
    sc_dt = sc[1:]
    solve = np.array(solve_s)
    ns = np.array(n_solves)

    def mean_ms(x: np.ndarray) -> float | None:
        return 1e3 * float(np.mean(x)) if x.size else None

    timings = m["timings"] if m else {}
    summary = m["summary"] if m else {}
    done = len(stamps)
    loop_s = timings.get("loop_s", run_wall_s)
    per = {
        "mean_ms": 1e3 * loop_s / max(done, 1),
        "scarce_mean_ms": mean_ms(dt[sc_dt]),
        "scarce_median_ms": 1e3 * float(np.median(dt[sc_dt])) if sc_dt.any() else None,
        "nonscarce_mean_ms": mean_ms(dt[~sc_dt]),
        "nonscarce_median_ms": 1e3 * float(np.median(dt[~sc_dt])) if (~sc_dt).any() else None,
        "scarce_solver_ms": mean_ms(solve[1:][sc_dt]),
        "nonscarce_solver_ms": mean_ms(solve[1:][~sc_dt]),
        "first_interval_ms": 1e3 * (stamps[0] - t_run) if stamps else None,
    }
    out = {
        "case": args.case,
        "ratings": args.ratings,
        "network": net.summary(),
        "rating_info": net.ratings.describe(),
        "formulation": "btheta",
        "rule": "maxmin",
        "policy": "fpamm",
        "engine": m.get("engine") if m else None,
        "seed": args.seed,
        "intervals_requested": T,
        "intervals_done": done,
        "completed": error is None and done == T,
        "error": error,
        "import_s": import_s,
        "prepare_s": prepare_s,
        "build_s": timings.get("build_s"),
        "loop_s": loop_s,
        "solver_s": timings.get("solver_s", float(solve.sum())),
        "solver_share": (timings.get("solver_s", float(solve.sum())) / loop_s) if loop_s else None,
        "per_interval": per,
        "scarce_intervals": int(sc.sum()),
        "scarce_fraction": float(sc.mean()) if done else None,
        "solves_per_scarce_interval": float(ns[sc].mean()) if sc.any() else None,
        "solves_per_nonscarce_interval": float(ns[~sc].mean()) if (~sc).any() else None,
        "solver_ms_per_lp_scarce": (
            1e3 * float(solve[sc].sum() / ns[sc].sum()) if sc.any() and ns[sc].sum() else None
        ),
        "n_retries": summary.get("n_retries"),
        "retries": summary.get("retries", [])[:20],
        "failed_intervals": summary.get("failed"),
        "statuses": sorted(set(status)),
        "run_wall_s": run_wall_s,
        "run_dir_mb": run_dir_mb,
        "peak_rss_mb": peak_mb,
        "machine": {
            "note": "this machine",
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "load_average_start": load0,
            "load_average_end": os.getloadavg(),
            "python": platform.python_version(),
        },
    }

    s = net.summary()
    print(
        f"{s['name']}: {s['n_bus']} buses, {s['n_branch']} branches, {s['n_gen']} generators, "
        f"{s['n_node']} load nodes; ratings {net.ratings.describe()}"
    )
    print(
        f"btheta, maxmin, fpamm, engine {out['engine']}; {done}/{T} intervals "
        f"({out['scarce_intervals']} scarce); load average {load0[0]:.1f} at start "
        "(times are this machine's)"
    )
    if error:
        print(f"RUN FAILED after {done} intervals: {error}")
    print(
        f"network load + scenario {prepare_s:.1f} s, model build {out['build_s'] or 0:.2f} s, "
        f"loop {loop_s:.1f} s"
    )

    def f(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.1f}"

    print(
        f"per interval: mean {f(per['mean_ms'])} ms; scarce {f(per['scarce_mean_ms'])} ms "
        f"(median {f(per['scarce_median_ms'])}, "
        f"{f(out['solves_per_scarce_interval'])} solves, "
        f"solver {f(per['scarce_solver_ms'])} ms); non-scarce {f(per['nonscarce_mean_ms'])} ms "
        f"(median {f(per['nonscarce_median_ms'])}, solver {f(per['nonscarce_solver_ms'])} ms)"
    )
    share = out["solver_share"]
    print(
        f"solver share of the loop {100 * share:.1f} %; retries {out['n_retries']}; "
        f"failed {out['failed_intervals']}; peak RSS {peak_mb:.0f} MB; "
        f"statuses {', '.join(out['statuses'])}"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")
    return 0 if out["completed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
