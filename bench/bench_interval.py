"""Per-interval cost of the allocation on case118: fast path, Pyomo engine, rebuild, pandapower.

Run from the repository root::

    .venv/bin/python bench/bench_interval.py [--out bench/results_interval.json]
                                             [--intervals 40] [--quick] [--formulation btheta]

One process, one scarce interval mix (case118, derived ratings, demand = base x U(0.9, 1.1),
total availability 50-90 % of demand, two random tiers, random weights in [1, 20], the
max-min rule), measured side by side:

1. ``AllocationProblem.screen`` + ``clear`` with ``engine="highs"``: wall time per interval
   against the bare solver time inside it (sum of HiGHS run times, ``Dispatch.solve_s``).
2. The same with ``engine="pyomo"`` (mutable Params + persistent HiGHS through Pyomo).
3. Rebuilding the Pyomo model every interval (a new ``AllocationProblem``, then screen +
   clear), with either engine.
4. One pandapower ``rundcopp`` of the screening problem (same network, ratings, demand,
   availability; loads controllable with a VOLL bid, generators at the secant price).

Times are wall-clock milliseconds on *this machine*; ratios are what carries over.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fpamm_opt.blocks.dcopf import secant_price  # noqa: E402
from fpamm_opt.mechanism.types import IntervalInput  # noqa: E402
from fpamm_opt.network import load_network  # noqa: E402
from fpamm_opt.problem import AllocationProblem  # noqa: E402

CASE = "case118"
VOLL = 10_000.0


def make_intervals(net, n: int, seed: int):
    rng = np.random.default_rng(seed)
    out = []
    for t in range(n):
        d = net.node_demand_mw * rng.uniform(0.9, 1.1, net.n_node)
        share = rng.uniform(0.5, 0.9)
        a = net.gen_pmax_mw * min(1.0, share * d.sum() / net.gen_pmax_mw.sum())
        w = rng.uniform(1.0, 20.0, net.n_node)
        out.append((IntervalInput(t, d, a), w, [int(k) for k in rng.permutation(2)]))
    return out


def run_engine(net, tiers, intervals, engine: str, formulation: str, rebuild: bool = False):
    """Screen + clear every interval; wall and solver seconds per interval."""
    prob = (
        None
        if rebuild
        else AllocationProblem(net, tiers, 2, engine=engine, formulation=formulation, voll=VOLL)
    )
    if prob is not None:  # warm-up: HiGHS's first run in a process starts its threads
        prob.screen(intervals[0][0])
    wall, solver, build, n_lp, failed = [], [], [], 0, 0
    screen_wall, screen_solver, notes = [], [], []
    screens = []
    for inp, w, order in intervals:
        t0 = time.perf_counter()
        p = prob or AllocationProblem(
            net, tiers, 2, engine=engine, formulation=formulation, voll=VOLL
        )
        t1 = time.perf_counter()
        build.append(t1 - t0)
        s = p.screen(inp)
        screen_wall.append(time.perf_counter() - t1)
        screen_solver.append(s.solve_s)
        c = p.clear(inp, order, w)
        wall.append(time.perf_counter() - t0)
        solver.append(s.solve_s + c.solve_s)
        notes += [n for n in (s.note, c.note) if n]
        n_lp += s.n_solves + c.n_solves
        failed += (not s.ok) + (not c.ok)
        screens.append(s.objective)
    return {
        "wall_ms": 1e3 * float(np.mean(wall)),
        "wall_ms_median": 1e3 * float(np.median(wall)),
        "solver_ms": 1e3 * float(np.mean(solver)),
        "build_ms": 1e3 * float(np.mean(build)),  # a new AllocationProblem (0 when reused)
        "screen_wall_ms": 1e3 * float(np.mean(screen_wall)),
        "screen_solver_ms": 1e3 * float(np.mean(screen_solver)),
        "lp_per_interval": n_lp / len(intervals),
        "failed_solves": int(failed),
        "notes": sorted(set(notes)),
        "screen_objective": screens,
    }


def pandapower_net(net):
    """pandapower case118 with our derived ratings, a VOLL bid on loads, secant prices."""
    import pandapower.networks as pn

    ppn = pn.case118()
    n_line = len(ppn.line)
    rate = net.branch_rate_mw
    assert len(ppn.line) + len(ppn.trafo) == net.n_branch
    vn = ppn.bus.vn_kv.loc[ppn.line.from_bus].to_numpy()
    ppn.line["max_loading_percent"] = 100.0
    ppn.line["max_i_ka"] = rate[:n_line] / (np.sqrt(3) * vn * ppn.line.df * ppn.line.parallel)
    ppn.trafo["max_loading_percent"] = (
        100.0 * rate[n_line:] / (ppn.trafo.sn_mva * ppn.trafo.df * ppn.trafo.parallel)
    )
    price = secant_price(net)
    ppn.poly_cost.drop(ppn.poly_cost.index, inplace=True)
    import pandapower as pp

    pp.create_poly_cost(ppn, 0, "ext_grid", cp1_eur_per_mw=float(price[0]))
    for k, g in enumerate(ppn.gen.index):
        pp.create_poly_cost(ppn, g, "gen", cp1_eur_per_mw=float(price[k + 1]))
    ppn.load["controllable"] = True
    ppn.load["min_p_mw"] = 0.0
    ppn.load["min_q_mvar"] = -1e3
    ppn.load["max_q_mvar"] = 1e3
    for ld in ppn.load.index:
        pp.create_poly_cost(ppn, ld, "load", cp1_eur_per_mw=-VOLL)
    node_of_bus = {int(b): i for i, b in enumerate(net.node_bus)}
    load_node = np.array([node_of_bus[int(b)] for b in ppn.load.bus])
    return ppn, load_node


def run_pandapower(net, intervals):
    import pandapower as pp

    ppn, load_node = pandapower_net(net)
    wall, obj, failed, ok_wall = [], [], 0, []
    for inp, _, _ in intervals:
        d = inp.demand_mw[load_node]
        ppn.load["p_mw"] = d
        ppn.load["max_p_mw"] = d
        a = inp.available_mw
        ppn.ext_grid["max_p_mw"] = a[0]
        ppn.ext_grid["min_p_mw"] = min(net.gen_pmin_mw[0], 0.0)
        ppn.gen["max_p_mw"] = a[1:]
        ppn.gen["min_p_mw"] = np.minimum(net.gen_pmin_mw[1:], 0.0)
        t0 = time.perf_counter()
        try:
            pp.rundcopp(ppn)
            obj.append(float(ppn.res_cost))
            ok_wall.append(time.perf_counter() - t0)
        except Exception:
            failed += 1
            obj.append(float("nan"))
        wall.append(time.perf_counter() - t0)
    return {
        "wall_ms": 1e3 * float(np.mean(wall)),
        "wall_ms_median": 1e3 * float(np.median(wall)),
        "failed": failed,
        # Converged calls only: a failed call runs to PIPS's iteration limit and would flatter
        # any comparison against it.
        "wall_ms_converged": 1e3 * float(np.mean(ok_wall)) if ok_wall else float("nan"),
        "converged": len(ok_wall),
        "objective": obj,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results_interval.json"))
    ap.add_argument("--intervals", type=int, default=None, help="default 40 (--quick: 12)")
    ap.add_argument("--quick", action="store_true", help="12 intervals")
    ap.add_argument("--formulation", default="btheta", choices=["btheta", "ptdf"])
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--no-pandapower", action="store_true")
    args = ap.parse_args(argv)
    if args.intervals is None:
        args.intervals = 12 if args.quick else 40
    warnings.simplefilter("ignore")
    logging.getLogger("pandapower").setLevel(logging.ERROR)

    load0 = os.getloadavg()
    net = load_network(CASE, ratings="derived")
    tiers = np.random.default_rng(args.seed).integers(0, 2, net.n_node)
    intervals = make_intervals(net, args.intervals, args.seed + 1)
    f = args.formulation
    t_all = time.perf_counter()
    res = {
        "highs": run_engine(net, tiers, intervals, "highs", f),
        "pyomo": run_engine(net, tiers, intervals, "pyomo", f),
        "rebuild_pyomo": run_engine(net, tiers, intervals, "pyomo", f, rebuild=True),
        "rebuild_highs": run_engine(net, tiers, intervals, "highs", f, rebuild=True),
    }
    if not args.no_pandapower:
        res["pandapower_rundcopp"] = run_pandapower(net, intervals)
    total_s = time.perf_counter() - t_all

    h = res["highs"]
    base = h["wall_ms"]
    rows = [
        ("highs: screen+clear (wall)", base),
        ("highs: solver time inside it", h["solver_ms"]),
        ("highs: screen only (wall)", h["screen_wall_ms"]),
        ("highs: screen only (solver)", h["screen_solver_ms"]),
        ("pyomo engine: screen+clear", res["pyomo"]["wall_ms"]),
        ("pyomo engine: screen only (wall)", res["pyomo"]["screen_wall_ms"]),
        ("rebuild model + pyomo engine", res["rebuild_pyomo"]["wall_ms"]),
        ("rebuild model + highs engine", res["rebuild_highs"]["wall_ms"]),
    ]
    if "pandapower_rundcopp" in res:
        rows.append(("pandapower rundcopp (screen LP only)", res["pandapower_rundcopp"]["wall_ms"]))
    ratios = {
        "highs_wall_over_solver": base / h["solver_ms"],
        "pyomo_over_highs": res["pyomo"]["wall_ms"] / base,
        "rebuild_pyomo_over_highs": res["rebuild_pyomo"]["wall_ms"] / base,
        "rebuild_highs_over_highs": res["rebuild_highs"]["wall_ms"] / base,
        "highs_overhead_ms_per_lp": (base - h["solver_ms"]) / h["lp_per_interval"],
        "highs_solver_ms_per_lp": h["solver_ms"] / h["lp_per_interval"],
        "pyomo_ms_per_lp": res["pyomo"]["wall_ms"] / res["pyomo"]["lp_per_interval"],
        "screen_pyomo_over_highs": res["pyomo"]["screen_wall_ms"] / h["screen_wall_ms"],
    }
    if "pandapower_rundcopp" in res:
        pp_res = res["pandapower_rundcopp"]
        ratios["pandapower_over_highs"] = pp_res["wall_ms"] / base
        ratios["pandapower_over_highs_screen"] = pp_res["wall_ms"] / h["screen_wall_ms"]
        ours = np.asarray(h["screen_objective"])
        theirs = np.asarray(pp_res["objective"])
        ok = np.isfinite(ours) & np.isfinite(theirs)
        ratios["screen_vs_pandapower_max_rel_diff"] = (
            float(np.max(np.abs(ours[ok] - theirs[ok]) / np.abs(theirs[ok])))
            if ok.any()
            else float("nan")
        )

    print(
        f"{CASE} ({net.n_bus} buses, {net.n_gen} gens, {net.n_branch} branches), "
        f"{f}, {args.intervals} scarce intervals, "
        f"{h['lp_per_interval']:.1f} solves per interval (fast path)"
    )
    print(
        f"this machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {load0[0]:.1f} at start"
    )
    print(f"{'per interval':44s} {'ms (this machine)':>18s} {'x highs':>9s}")
    for label, ms in rows:
        print(f"{label:44s} {ms:18.2f} {ms / base:9.2f}")
    print(
        f"fast path: wall / solver = {ratios['highs_wall_over_solver']:.2f}; "
        f"Python overhead {ratios['highs_overhead_ms_per_lp']:.3f} ms per LP "
        f"(solver {ratios['highs_solver_ms_per_lp']:.3f} ms per LP)"
    )
    print(
        f"same screening LP: pyomo engine / highs = {ratios['screen_pyomo_over_highs']:.1f}x"
        + (
            f", pandapower rundcopp / highs = {ratios['pandapower_over_highs_screen']:.1f}x"
            if "pandapower_over_highs_screen" in ratios
            else ""
        )
    )
    if "screen_vs_pandapower_max_rel_diff" in ratios:
        print(
            f"screen objective vs pandapower: max rel. diff "
            f"{ratios['screen_vs_pandapower_max_rel_diff']:.2e}"
        )
    fails = {k: v.get("failed_solves", v.get("failed", 0)) for k, v in res.items()}
    print(f"failed solves: {fails}; total bench time {total_s:.1f} s")
    for k in ("highs", "pyomo"):
        if res[k]["notes"]:
            print(f"notes ({k}): {', '.join(res[k]['notes'])}")

    out = {
        "case": CASE,
        "formulation": f,
        "intervals": args.intervals,
        "seed": args.seed,
        "machine": {
            "note": "this machine",
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "load_average_start": load0,
            "load_average_end": os.getloadavg(),
            "python": platform.python_version(),
        },
        "versions": _versions(),
        "results_ms": {
            k: {kk: vv for kk, vv in v.items() if not isinstance(vv, list)} for k, v in res.items()
        },
        "ratios": ratios,
        "total_s": total_s,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")
    return 0


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("highspy", "pyomo", "pandapower", "numpy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "absent"
    return out


if __name__ == "__main__":
    raise SystemExit(main())
