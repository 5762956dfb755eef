"""The benchmark suite: run every benchmark, collect their JSON, check the issue's targets.

Run from the repository root (``make bench`` runs the full suite)::

    .venv/bin/python bench/run_all.py [--quick] [--out FILE] [--only interval,memory,scale]

Runs, each as its own subprocess (one failing does not stop the others; ``--quick`` is passed
through), one after the other so they do not compete for the cores:

* ``bench_interval.py``: per-interval cost on case118 (fast path, Pyomo engine, rebuild,
  pandapower ``rundcopp``), 40 synthetic scarce intervals, max-min rule (``--quick``: 12);
* ``bench_mechanism.py``: the shipped ``models/ieee118.toml`` run interval by interval (QP
  rule, fixed point, storage): as shipped, with every QP by HiGHS, rebuilt every interval,
  and one ``rundcopp`` per sampled interval;
* ``bench_memory.py``: peak RSS at T and 10T (lmp 5000/50000 and fpamm 500/5000 on IEEE-14;
  ``--quick``: 300/3000);
* ``bench_scale.py``: 1000 FP-AMM intervals on a 2000-bus network (``--quick``: 150);
* ``bench_large.py``: ``fpamm dcopf`` on case10000_goc (B-θ and PTDF, against case2000_goc)
  and case3012wp_k (PTDF against B-θ), each command in its own process with its peak RSS
  (``--quick``: without case10000_goc's B-θ); skipped without ``../shared/data/pglib-large``.
* ``bench_batch.py``: batch throughput, 1 and 2 local workers and a Dask LocalCluster of 2
  (8 IEEE-14 runs of 1000 intervals; ``--quick``: 4 of 200);
* ``bench_year.py``: a year of IEEE-118 FP-AMM (17,520 half-hours) as one run against a tenth
  of it, each in a fresh process: wall time and peak RSS (``--quick``: 1750 against 175).

Each writes ``bench/results_<name>.json`` (``--quick``: ``results_<name>_quick.json``); this
script writes ``bench/results.json`` (``--quick``: ``bench/results_quick.json``, so a quick run
never overwrites the full results) with a machine block and the targets of the issue:

(a) the IEEE-118 FP-AMM clearing loop takes at most 2x the bare solver time inside it;
(b) an interval is at least 10x faster than one pandapower ``rundcopp`` call;
(c) an interval is at least 10x faster than rebuilding the model;
(d) peak memory at 10T is at most 1.3x that at T;
(year) a year of IEEE-118 FP-AMM in at most 3 minutes, peak RSS at most 1.1x a tenth of it.

Every reading is marked met or not met on its own. The ``.run`` rows are the user's run
(``bench_mechanism``): the mean interval of the shipped IEEE-118 run and its scarce intervals
alone. The others come from ``bench_interval``'s synthetic max-min intervals: the full scarce
interval (~35 LPs), one LP (the screening LP against one ``rundcopp`` / against building a
new model and solving that LP), and a 26 % scarce mix.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"

#: Share of scarce intervals in a realistic mix (IEEE-118 model, seed 0: 1301 of 5000).
SCARCE_SHARE = 0.26

BENCHES = {
    "interval": ("bench_interval.py", 900, 600),  # script, timeout full (s), timeout quick
    "mechanism": ("bench_mechanism.py", 1800, 600),
    "memory": ("bench_memory.py", 1800, 600),
    "scale": ("bench_scale.py", 2700, 900),
    "large": ("bench_large.py", 1800, 900),
    "year": ("bench_year.py", 2400, 900),
    "batch": ("bench_batch.py", 900, 300),
}


def machine_block() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for name in ("highspy", "pyomo", "pandapower", "numpy", "pyarrow"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "absent"
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:
        nproc = os.cpu_count()
    return {
        "note": "absolute times and MB are this machine's; ratios are what carries over",
        "nproc": nproc,
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "load_average_start": list(os.getloadavg()),
    }


def run_bench(name: str, quick: bool) -> dict:
    """Run one benchmark script, echoing its output; return its JSON (or the failure)."""
    script, t_full, t_quick = BENCHES[name]
    out = BENCH / f"results_{name}{'_quick' if quick else ''}.json"
    cmd = [sys.executable, str(BENCH / script), "--out", str(out)]
    if quick:
        cmd.append("--quick")
    timeout = t_quick if quick else t_full
    print(f"\n=== {script}{' --quick' if quick else ''} (timeout {timeout} s)", flush=True)
    if out.exists():
        out.unlink()  # never report a stale file as this run's result
    t0 = time.perf_counter()
    lines: list[str] = []
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        proc.kill()

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            print(f"  {line}", end="", flush=True)
        rc = proc.wait()
    finally:
        timer.cancel()
    wall = time.perf_counter() - t0
    rec = {"script": script, "returncode": rc, "wall_s": wall, "json": str(out.relative_to(ROOT))}
    if timed_out.is_set():
        rec["error"] = f"timed out after {timeout} s"
    elif rc != 0:
        rec["error"] = f"exit code {rc}"
    if out.exists():
        rec["result"] = json.loads(out.read_text())
    else:
        rec.setdefault("error", "no JSON written")
        rec["output_tail"] = lines[-15:]
    print(
        f"=== {script}: {'ok' if 'error' not in rec else rec['error']} in {wall:.0f} s", flush=True
    )
    return rec


def _row(
    key: str, target: str, measured: float | None, fmt: str, met: bool | None, what: str
) -> dict:
    return {
        "key": key,
        "target": target,
        "measured": measured,
        "measured_text": "not measured" if measured is None else fmt.format(measured),
        "met": met,
        "what": what,
    }


def targets(res: dict, share: float) -> list[dict]:
    rows: list[dict] = []
    iv = res.get("interval", {}).get("result")
    if iv:
        r = iv["results_ms"]
        h, pp = r["highs"], r.get("pandapower_rundcopp")
        rb = r["rebuild_pyomo"]
        full, screen = h["wall_ms"], h["screen_wall_ms"]
        mix = share * full + (1 - share) * screen
        a = full / h["solver_ms"]
        rows.append(
            _row(
                "a",
                "<= 2.0x",
                a,
                "{:.2f}x",
                a <= 2.0,
                f"case118 fast path: screen+clear wall {full:.1f} ms / solver time "
                f"inside it {h['solver_ms']:.1f} ms ({h['lp_per_interval']:.1f} LPs)",
            )
        )
        if pp:
            p = pp["wall_ms"]
            for key, ours, what in (
                (
                    "b.full",
                    full,
                    f"one rundcopp {p:.1f} ms / one full scarce FP-AMM interval "
                    f"{full:.1f} ms ({h['lp_per_interval']:.1f} LPs)",
                ),
                (
                    "b.per_lp",
                    screen,
                    f"one rundcopp {p:.1f} ms / one screening LP on the fast "
                    f"path {screen:.2f} ms (same LP, same optimum)",
                ),
                (
                    "b.mix",
                    mix,
                    f"one rundcopp {p:.1f} ms / mean interval of a {share:.0%} "
                    f"scarce mix {mix:.1f} ms",
                ),
            ):
                rows.append(_row(key, ">= 10x", p / ours, "{:.1f}x", p / ours >= 10, what))
        else:
            rows.append(_row("b", ">= 10x", None, "", None, "pandapower not run"))
        build = rb.get("build_ms")
        if build is not None:
            rb_lp = build + rb["screen_wall_ms"]
            rb_mix = share * rb["wall_ms"] + (1 - share) * rb_lp
            for key, num, den, what in (
                (
                    "c.full",
                    rb["wall_ms"],
                    full,
                    f"rebuild the Pyomo model each interval + Pyomo engine {rb['wall_ms']:.1f} ms "
                    f"/ fast path {full:.1f} ms (full scarce interval)",
                ),
                (
                    "c.per_lp",
                    rb_lp,
                    screen,
                    f"build a new model ({build:.1f} ms) + solve the screening LP "
                    f"({rb['screen_wall_ms']:.1f} ms) / one screening LP on the fast path "
                    f"{screen:.2f} ms",
                ),
                (
                    "c.mix",
                    rb_mix,
                    mix,
                    f"rebuild per interval, {share:.0%} scarce mix {rb_mix:.1f} ms / fast path "
                    f"mix {mix:.1f} ms",
                ),
            ):
                rows.append(_row(key, ">= 10x", num / den, "{:.1f}x", num / den >= 10, what))
    else:
        rows += [
            _row(k, t, None, "", None, "bench_interval failed")
            for k, t in (("a", "<= 2.0x"), ("b", ">= 10x"), ("c", ">= 10x"))
        ]
    me = res.get("mechanism", {}).get("result")
    if me:
        fp, pp_ms = me["fpamm_shipped"], me["pandapower_rundcopp"]["wall_ms"]
        ppr = me["pandapower_rundcopp"]
        conv = f"{ppr.get('converged', '?')} of {ppr.get('converged', 0) + ppr['failed']}"
        shipped = f"{me['spec']} as shipped (QP rule, fixed point, storage)"
        a_run = me["ratios"]["loop_over_solver"]
        rows.append(
            _row(
                "a.run",
                "<= 2.0x",
                a_run,
                "{:.2f}x",
                a_run <= 2.0,
                f"{shipped}, {fp['intervals']} intervals: loop {fp['loop_s']:.2f} s / time "
                f"solving inside it {fp['solver_s']:.2f} s (HiGHS runs + KKT tier solves)",
            )
        )
        for key, ours, what in (
            ("b.run", fp["ms_per_interval"], "mean interval"),
            ("b.run_scarce", fp["ms_per_scarce"], "mean scarce interval"),
        ):
            rows.append(
                _row(
                    key,
                    ">= 10x",
                    pp_ms / ours,
                    "{:.2f}x",
                    pp_ms / ours >= 10,
                    f"{shipped}, {fp['intervals']} intervals: one converged rundcopp "
                    f"{pp_ms:.1f} ms ({conv} converged) / FP-AMM {what} {ours:.1f} ms",
                )
            )
        mt = me["rebuild_matched"]
        for key, num, den, what in (
            ("c.run", mt["ms_a"], mt["ms_b"], "mean interval"),
            ("c.run_scarce", mt["ms_a_scarce"], mt["ms_b_scarce"], "mean scarce interval"),
        ):
            ok = bool(np.isfinite(num / den)) if den else False
            rows.append(
                _row(
                    key,
                    ">= 10x",
                    num / den if ok else None,
                    "{:.1f}x",
                    (num / den >= 10) if ok else None,
                    f"{shipped}, the same {mt['intervals']} intervals ({mt['scarce']} scarce): "
                    f"new Pyomo model + Pyomo engine every interval {num:.1f} ms / as shipped "
                    f"{den:.1f} ms ({what})",
                )
            )
    else:
        rows.append(_row("b.run", ">= 10x", None, "", None, "bench_mechanism failed"))
    mem = res.get("memory", {}).get("result")
    if mem:
        for policy, p in mem["pairs"].items():
            ratio = p.get("peak_ratio")
            if ratio is None:
                rows.append(_row(f"d.{policy}", "<= 1.3x", None, "", None, "a run failed"))
                continue
            a, b = p["run_T"], p["run_10T"]
            rows.append(
                _row(
                    f"d.{policy}",
                    "<= 1.3x",
                    ratio,
                    "{:.3f}x",
                    ratio <= 1.3,
                    f"IEEE-14 {policy}: peak RSS {b['peak_rss_mb']:.0f} MB at T={b['intervals']} / "
                    f"{a['peak_rss_mb']:.0f} MB at T={a['intervals']} (fresh process each)",
                )
            )
    else:
        rows.append(_row("d", "<= 1.3x", None, "", None, "bench_memory failed"))
    sc = res.get("scale", {}).get("result")
    if sc:
        n_bus = sc["network"]["n_bus"]
        done = sc["intervals_done"]
        ok = sc["completed"] and n_bus >= 2000 and done >= 1000
        per = sc["per_interval"]
        rows.append(
            _row(
                "scale",
                "1000 int.",
                float(done),
                "{:.0f} intervals",
                ok if done >= 1000 or not sc["completed"] else None,
                f"needs >= 2000 buses: {sc['network']['name']} ({n_bus} buses), {done} intervals, mean "
                f"{per['mean_ms']:.0f} ms/interval (scarce {per['scarce_mean_ms'] or 0:.0f}, "
                f"non-scarce {per['nonscarce_mean_ms'] or 0:.0f}), solver share "
                f"{100 * (sc['solver_share'] or 0):.0f} %, {sc['n_retries']} retries"
                + ("" if done >= 1000 else " (fewer intervals than the target: quick mode)"),
            )
        )
    else:
        rows.append(_row("scale", "1000 int.", None, "", None, "bench_scale failed"))
    rows.extend(large_targets(res.get("large", {}).get("result")))
    rows.extend(_year_rows(res.get("year", {}).get("result")))
    rows.extend(_batch_rows(res.get("batch", {}).get("result")))
    return rows


def large_targets(lg: dict | None) -> list[dict]:
    """Rows of ``bench_large``: case10000_goc build + solve, whole command, objective;
    case3012wp_k PTDF against B-θ (time, peak RSS)."""
    if not lg:
        return [_row("large", "", None, "", None, "bench_large failed")]
    if "skipped" in lg:
        return [_row("large", "", None, "", None, lg["skipped"])]
    rows = []
    ratios = lg.get("ratios", {})
    for r in lg.get("runs", []):
        if r["case"] != "pglib_opf_case10000_goc" or "error" in r:
            continue
        f = r["formulation"]
        bs = r["build_plus_solve_s"]
        rows.append(
            _row(
                f"10k.{f}",
                "<= 3 s",
                bs,
                "{:.2f} s",
                bs <= 3.0 and r["status"] == "optimal",
                f"case10000_goc {f}: build {r['build_s']:.2f} + solve {r['solve_s']:.2f} s "
                f"(load {r['load_s']:.2f} s, command {r['command_s']:.1f} s, "
                f"{r['peak_rss_mb']:.0f} MB)",
            )
        )
        ratio = ratios.get(f"command_10k_over_2000_{f}")
        if ratio is not None:
            rows.append(
                _row(f"10k.cmd.{f}", "<= 5x", ratio, "{:.2f}x", ratio <= 5.0, "command vs 2000")
            )
        gap = ratios.get(f"objective_10k_vs_baseline_{f}")
        if gap is not None:
            rows.append(
                _row(
                    f"10k.obj.{f}",
                    "<= 0.5 %",
                    100 * abs(gap),
                    "{:.4f} %",
                    abs(gap) <= 0.005,
                    "objective vs PowerModels' BASELINE 1.3461e+06",
                )
            )
    t = ratios.get("case3012_ptdf_over_btheta_command")
    pt = next(
        (
            r
            for r in lg.get("runs", [])
            if r["case"] == "pglib_opf_case3012wp_k" and r["formulation"] == "ptdf"
        ),
        None,
    )
    if t is not None and pt is not None:
        rows.append(_row("3012.t", "<= 2x", t, "{:.2f}x", t <= 2.0, "PTDF / B-θ, whole command"))
        mb = pt["peak_rss_mb"]
        rows.append(_row("3012.rss", "<= 1 GB", mb, "{:.0f} MB", mb <= 1024, "PTDF peak RSS"))
    return rows


def _year_rows(yr: dict | None) -> list[dict]:
    """Issue 16's year of IEEE-118 FP-AMM: wall time and RSS(T) / RSS(T/10)."""
    if not yr or yr.get("rss_ratio") is None:
        return [_row("year", "<= 3 min", None, "", None, "bench_year failed")]
    a, b = yr["run_tenth"], yr["run_whole"]
    full = b["intervals"] >= 17520
    return [
        _row(
            "year.t",
            "<= 3 min",
            b["wall_s"] / 60.0,
            "{:.1f} min",
            yr["wall_met"] if full else None,
            f"IEEE-118 FP-AMM, {b['intervals']} intervals as one run: "
            f"{b['per_interval_ms']:.1f} ms/interval, {b['scarce']} scarce"
            + ("" if full else " (shorter than a year: quick mode)"),
        ),
        _row(
            "year.rss",
            "<= 1.1x",
            yr["rss_ratio"],
            "{:.3f}x",
            yr["rss_ratio_met"],
            f"peak RSS {b['peak_rss_mb']:.0f} MB at T={b['intervals']} / "
            f"{a['peak_rss_mb']:.0f} MB at T={a['intervals']} (fresh process each)",
        ),
    ]


def _batch_rows(bt: dict | None) -> list[dict]:
    """Issue 16's batch throughput: 2 local workers (and a Dask LocalCluster of 2) against one."""
    if not bt or "batches" not in bt:
        return [_row("batch", ">= 1.8x", None, "", None, "bench_batch failed")]
    rows = []
    for name in ("local_2", "dask_2"):
        b = bt["batches"][name]
        rows.append(
            _row(
                f"batch.{name}",
                ">= 1.8x",
                b["speedup"],
                "{:.2f}x",
                b["speedup"] >= 1.8,
                f"{bt['runs']} IEEE-14 runs of {bt['intervals']} intervals: "
                f"{b['runs_per_min']:.1f} runs/min against "
                f"{bt['batches']['local_1']['runs_per_min']:.1f} with one worker "
                f"(efficiency {b['efficiency']:.0%})",
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument(
        "--out", default=None, help="default bench/results.json (--quick: bench/results_quick.json)"
    )
    ap.add_argument("--only", default=",".join(BENCHES), help="comma-separated subset")
    ap.add_argument("--scarce-share", type=float, default=SCARCE_SHARE)
    args = ap.parse_args(argv)
    out = (
        Path(args.out)
        if args.out
        else BENCH / ("results_quick.json" if args.quick else "results.json")
    )
    machine = machine_block()
    print(
        f"fpamm-opt benchmarks ({'quick' if args.quick else 'full'}) on {machine['cpu_model']}, "
        f"{machine['nproc']} cores, load average {machine['load_average_start'][0]:.1f}",
        flush=True,
    )
    t0 = time.perf_counter()
    res = {}
    for name in [n.strip() for n in args.only.split(",") if n.strip()]:
        if name not in BENCHES:
            print(f"unknown benchmark {name!r} (known: {', '.join(BENCHES)})", file=sys.stderr)
            return 2
        res[name] = run_bench(name, args.quick)
    machine["load_average_end"] = list(os.getloadavg())
    total = time.perf_counter() - t0
    rows = targets(res, args.scarce_share)

    print(
        f"\nTargets ({'quick' if args.quick else 'full'} run; this machine: "
        f"{machine['nproc']} cores, load average {machine['load_average_start'][0]:.1f} -> "
        f"{machine['load_average_end'][0]:.1f}, shared with other jobs)"
    )
    print(f"{'':8s} {'target':>10s} {'measured':>16s} {'met':>8s}  what")
    for r in rows:
        met = {True: "met", False: "NOT met", None: "n/a"}[r["met"]]
        print(
            f"{r['key']:8s} {r['target'][:10]:>10s} {r['measured_text']:>16s} {met:>8s}  "
            f"{r['what']}"
        )
    failed = [k for k, v in res.items() if "error" in v]
    print(f"benchmarks failed: {', '.join(failed) or 'none'}; total {total / 60:.1f} min")

    doc = {
        "mode": "quick" if args.quick else "full",
        "machine": machine,
        "scarce_share_for_mix": args.scarce_share,
        "targets": rows,
        "benchmarks": {
            k: {kk: vv for kk, vv in v.items() if kk != "result"} for k, v in res.items()
        },
        "results": {k: v.get("result") for k, v in res.items()},
        "total_s": total,
    }
    out.write_text(json.dumps(doc, indent=2))
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
