"""Large networks end to end: ``fpamm dcopf`` on case10000_goc and case3012wp_k, side by side.

Run from the repository root::

    .venv/bin/python bench/bench_large.py [--out bench/results_large.json] [--quick]
                                          [--fpamm-intervals N]

Every measurement is one ``fpamm dcopf CASE --convention powermodels --formulation F --json``
in its own process (the whole command a user types, interpreter start and imports included),
its peak RSS read from ``os.wait4`` for that process alone. Reported, in one run:

- ``case10000_goc``, B-θ and PTDF: the command's wall time, its ``load_s`` / ``build_s`` /
  ``solve_s`` split (the ``dcopf`` JSON), the objective against PowerModels' BASELINE
  (1.3461e+06 $/h), peak RSS;
- the same command on ``case2000_goc`` (from ``../shared/data/pglib``), and the ratio of the
  whole commands (target: at most 5x);
- ``case3012wp_k``, PTDF against B-θ: wall time and peak RSS (targets: at most 2x B-θ's
  time, at most 1 GB).
- with ``--fpamm-intervals N`` (default 0: off; the full run uses 200): FP-AMM on
  case10000_goc, N intervals with derived scarcity (the scenario of ``models/ieee118.toml``,
  a spec built in code as in ``bench_scale.py``), ms per interval; ``fpamm verify`` after
  it with ``--verify-cold-sample N`` (T3 on this network is slow, docs/performance.md).

The PGLib cases are read from ``../shared/data/pglib-large`` (CC BY 4.0), never copied into
the project; without that folder the script says so and exits 0 with a skipped result.
``--quick`` leaves out case10000_goc's B-θ run (the slow one). Times are this machine's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LARGE = ROOT.parent / "shared" / "data" / "pglib-large"
PGLIB = ROOT.parent / "shared" / "data" / "pglib"
CASE10K = LARGE / "pglib_opf_case10000_goc.m"
CASE3012 = LARGE / "pglib_opf_case3012wp_k.m"
CASE2000 = PGLIB / "pglib_opf_case2000_goc.m"
#: PowerModels' DC objective of case10000_goc ($/h), ../shared/data/pglib/BASELINE.md.
BASELINE_10K = 1.3461e06
BASE_SPEC = ROOT / "models" / "ieee118.toml"


def dcopf_command(case: Path, formulation: str) -> dict[str, Any]:
    """One ``fpamm dcopf`` in a fresh process: its JSON, wall time and own peak RSS."""
    cmd = [
        sys.executable,
        "-m",
        "fpamm_opt.cli",
        "dcopf",
        str(case),
        "--convention",
        "powermodels",
        "--formulation",
        formulation,
        "--json",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    text = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    rec: dict[str, Any] = {
        "case": case.stem,
        "formulation": formulation,
        "command_s": wall,
        "peak_rss_mb": usage.ru_maxrss / 1024.0,
        "returncode": proc.returncode,
    }
    try:
        out = json.loads(text.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        rec["error"] = f"no JSON from the command (exit {proc.returncode})"
        return rec
    for k in ("status", "objective", "engine", "load_s", "build_s", "solve_s", "time_limit_s"):
        rec[k] = out.get(k)
    rec["build_plus_solve_s"] = (out.get("build_s") or 0.0) + (out.get("solve_s") or 0.0)
    rec["reason"] = out.get("reason")
    return rec


def fpamm_run(intervals: int, cold_sample: int = 10, keep: Path | None = None) -> dict[str, Any]:
    """FP-AMM on case10000_goc (PTDF, lazy rows, max-min rule), then ``fpamm verify`` with
    ``--cold-sample cold_sample`` (0: no verify; T3's cold re-solve builds the dense PTDF and
    did not finish in 25 minutes here, docs/performance.md); ``keep``: write the run there
    instead of a temporary directory."""
    from fpamm_opt.sim.run import run
    from fpamm_opt.spec import RunSpec, read_toml

    base = read_toml(BASE_SPEC)
    data = {
        "network": {
            "case": str(CASE10K),
            "convention": "powermodels",
            "ratings": "case",
            "formulation": "ptdf",
        },
        "scenario": dict(base["scenario"]),
        "mechanism": {**base["mechanism"], "rule": "maxmin"},
        "solver": {"name": "highs", "time_limit_s": 120.0, "engine": "auto"},
        "run": {"intervals": intervals, "seed": 0, "policy": "fpamm", "name": "bench_large"},
    }
    spec = RunSpec.from_dict(data, base_dir=ROOT)
    stamps: list[float] = []
    scarce: list[bool] = []

    def on_step(rec: Any) -> None:
        stamps.append(time.perf_counter())
        scarce.append(bool(rec.scarce))

    out: dict[str, Any] = {"intervals_requested": intervals}
    with tempfile.TemporaryDirectory(prefix="fpamm-bench-large-") as tmp:
        t0 = time.perf_counter()
        try:
            res = run(spec, keep or Path(tmp) / "run", progress=False, on_step=on_step)
        except Exception as exc:  # report what was measured up to the failure
            out["error"] = f"{type(exc).__name__}: {exc}"
            out["intervals_done"] = len(stamps)
            return out
        wall = time.perf_counter() - t0
        timings = res.manifest.get("timings", {})
        loop_s = float(timings.get("loop_s", wall))
        out.update(
            intervals_done=len(stamps),
            scarce_intervals=int(sum(scarce)),
            run_wall_s=wall,
            build_s=timings.get("build_s"),
            loop_s=loop_s,
            per_interval_ms=1e3 * loop_s / max(len(stamps), 1),
            scarce_mean_ms=_class_ms(stamps, scarce, True),
            nonscarce_mean_ms=_class_ms(stamps, scarce, False),
            cold_sample=cold_sample,
        )
        if cold_sample <= 0:
            return out
        t1 = time.perf_counter()
        verify = subprocess.run(
            [
                sys.executable,
                "-m",
                "fpamm_opt.cli",
                "verify",
                str(res.run_dir),
                "--cold-sample",
                str(cold_sample),
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
        )
        out["verify_s"] = time.perf_counter() - t1
        out["verify_returncode"] = verify.returncode
        out["verify_tail"] = (verify.stdout + verify.stderr).strip().splitlines()[-12:]
    return out


def _class_ms(stamps: list[float], scarce: list[bool], which: bool) -> float | None:
    """Mean wall time (ms) between consecutive intervals of one class (scarce or not)."""
    dt = [b - a for a, b, s in zip(stamps, stamps[1:], scarce[1:]) if s == which]
    return 1e3 * sum(dt) / len(dt) if dt else None


def _fmt(rec: dict[str, Any]) -> str:
    if "error" in rec:
        return f"{rec['case']} {rec['formulation']}: {rec['error']}"
    obj = rec.get("objective")
    return (
        f"{rec['case']:24s} {rec['formulation']:6s} {rec['status']:10s} "
        f"command {rec['command_s']:6.2f} s = load {rec['load_s']:.2f} + build "
        f"{rec['build_s']:.2f} + solve {rec['solve_s']:.2f} (+ imports); "
        f"objective {obj if obj is None else f'{obj:.6e}'}; peak RSS {rec['peak_rss_mb']:.0f} MB"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results_large.json"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--fpamm-intervals", type=int, default=None, help="default 0 (off)")
    ap.add_argument(
        "--verify-cold-sample", type=int, default=0, help="T3 sample after FP-AMM (0: skip)"
    )
    args = ap.parse_args(argv)
    machine = {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_start": os.getloadavg(),
    }
    if not (CASE10K.exists() and CASE3012.exists()):
        msg = f"skipped: the large PGLib cases are not in {LARGE}"
        print(msg)
        Path(args.out).write_text(json.dumps({"skipped": msg, "machine": machine}, indent=2))
        return 0
    runs: list[dict[str, Any]] = []
    plan = [(CASE10K, "ptdf")]
    if not args.quick:
        plan.append((CASE10K, "btheta"))
    if CASE2000.exists():
        plan += [(CASE2000, "ptdf"), (CASE2000, "btheta")]
    plan += [(CASE3012, "btheta"), (CASE3012, "ptdf")]
    for case, form in plan:
        rec = dcopf_command(case, form)
        runs.append(rec)
        print(_fmt(rec), flush=True)

    def find(case: Path, form: str) -> dict[str, Any] | None:
        return next((r for r in runs if r["case"] == case.stem and r["formulation"] == form), None)

    ratios: dict[str, Any] = {}
    for form in ("ptdf", "btheta"):
        big, ref = find(CASE10K, form), find(CASE2000, form)
        if big and ref and "error" not in big and "error" not in ref:
            ratios[f"command_10k_over_2000_{form}"] = big["command_s"] / ref["command_s"]
        if big and big.get("objective"):
            ratios[f"objective_10k_vs_baseline_{form}"] = big["objective"] / BASELINE_10K - 1.0
    pt, bt = find(CASE3012, "ptdf"), find(CASE3012, "btheta")
    if pt and bt and "error" not in pt and "error" not in bt:
        ratios["case3012_ptdf_over_btheta_command"] = pt["command_s"] / bt["command_s"]
        ratios["case3012_ptdf_over_btheta_build_solve"] = (
            pt["build_plus_solve_s"] / bt["build_plus_solve_s"]
        )
        ratios["case3012_ptdf_objective_rel_diff"] = abs(pt["objective"] / bt["objective"] - 1)
    for k, v in ratios.items():
        print(f"{k}: {v:.3g}")
    n_fp = args.fpamm_intervals if args.fpamm_intervals is not None else 0
    fp = fpamm_run(n_fp, args.verify_cold_sample) if n_fp > 0 else None
    if fp is not None:
        print(f"FP-AMM case10000_goc: {json.dumps(fp)}")
    machine["load_average_end"] = os.getloadavg()
    doc = {"machine": machine, "runs": runs, "ratios": ratios, "fpamm": fp}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2))
    print(f"wrote {args.out}")
    return 0 if all("error" not in r for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
