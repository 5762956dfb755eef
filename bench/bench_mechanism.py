"""A full FP-AMM interval of the shipped IEEE-118 spec: against ``rundcopp`` and a rebuild.

Run from the repository root::

    .venv/bin/python bench/bench_mechanism.py [--intervals 300] [--rebuild 100]
                                              [--spec models/ieee118.toml]
                                              [--rule qp|maxmin]
                                              [--out bench/results_mechanism.json]

``bench_interval.py`` times one screen + one clear on synthetic inputs; this script times what
a user's run does per interval: ``fpamm run`` of the shipped spec (QP rule, B-θ, relative
weights, the fixed point of the clearing operator, the NumPy feasibility check, storage to
Parquet), measured between consecutive intervals of the loop. Variants, same spec and inputs:

1. as shipped: ``[solver] qp_method = "auto"``, i.e. the within-tier QPs solved from their
   KKT conditions (``fpamm_opt.mechanism.tierqp``), HiGHS's QP only when no certified answer;
2. ``qp_method = "solver"``: every within-tier QP solved by HiGHS's QP (the previous code);
3. rebuild: a new Pyomo model and solver every interval (``engine = "pyomo"``,
   ``qp_method = "solver"``), what a user scripting it without persistence would do; over
   the first ``--rebuild`` intervals only (it is slow), compared with variant 1 on the same
   intervals;
4. one pandapower ``rundcopp`` (the screening LP: one VOLL, same network, ratings, demand and
   availability) on a sample of the same intervals; converged calls only.

``--rule maxmin`` runs the same spec with ``mechanism.rule = "maxmin"`` (the weighted leximin
by successive LPs; variant 2 does not apply) and writes ``results_mechanism_maxmin.json`` by
default. Solves per scarce interval (screen, clears and dispatch) are reported for every variant.

Times are this machine's; ratios are what carries over.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_interval import run_pandapower  # noqa: E402
from run_all import machine_block  # noqa: E402

import fpamm_opt.sim.run as run_mod  # noqa: E402
from fpamm_opt.mechanism.types import IntervalInput  # noqa: E402
from fpamm_opt.problem import AllocationProblem  # noqa: E402
from fpamm_opt.sim.run import prepare, run  # noqa: E402
from fpamm_opt.spec import load_spec  # noqa: E402


class Rebuilding:
    """An allocator that builds a new ``AllocationProblem`` at the start of every interval."""

    def __init__(self, factory: Any) -> None:
        self._factory = factory
        self.cur = factory()
        self.n_node, self.n_gen = self.cur.n_node, self.cur.n_gen
        self.n_branch, self.n_tier = self.cur.n_branch, self.cur.n_tier

    def screen(self, inp: IntervalInput) -> Any:
        self.cur = self._factory()
        return self.cur.screen(inp)

    def clear(self, inp: IntervalInput, order: Any, w: Any, dispatch: bool = True) -> Any:
        return self.cur.clear(inp, order, w, dispatch=dispatch)

    def complete(self, inp: IntervalInput, disp: Any) -> Any:
        return self.cur.complete(inp, disp)


def _rebuilding_build(prep: Any, extensions: Any = ()) -> Any:
    alloc = ORIGINAL_BUILD(prep, extensions)
    sc, cfg = prep.scenario, prep.cfg
    prim = alloc.primary

    def factory() -> AllocationProblem:
        return AllocationProblem(
            prep.net,
            sc.node_tier,
            sc.n_tiers,
            rule=cfg.rule,
            voll=cfg.voll,
            formulation=prim.formulation,
            solver=prim.solver_spec,
            engine="pyomo",
            extensions=(*prep.extensions, *extensions),
            tier_energy=cfg.tier_energy,
            qp_method="solver",
        )

    alloc.primary = Rebuilding(factory)
    return alloc


ORIGINAL_BUILD = run_mod.build_allocator


def timed_run(spec_path: str, intervals: int, variant: str, rule: str | None = None) -> dict:
    """Run the spec for ``intervals`` as ``variant`` (shipped | solver | rebuild), timed;
    ``rule`` overrides ``mechanism.rule``."""
    steps: list[tuple[int, bool, float, np.ndarray, np.ndarray]] = []
    solves: list[tuple[bool, int]] = []
    clock = [time.perf_counter()]

    def on_step(rec) -> None:
        now = time.perf_counter()
        steps.append((rec.t, bool(rec.scarce), now - clock[0], rec.demand_mw, rec.available_mw))
        solves.append((bool(rec.scarce), int(rec.n_solves)))
        clock[0] = now

    overrides = [f"run.intervals={intervals}"]
    if rule is not None:
        overrides.append(f"mechanism.rule={rule}")
    if variant == "solver":
        overrides.append("solver.qp_method=solver")
    spec = load_spec(spec_path, overrides)
    if variant == "rebuild":
        run_mod.build_allocator = _rebuilding_build
    try:
        with tempfile.TemporaryDirectory() as tmp:
            res = run(spec, Path(tmp) / "run", progress=False, on_step=on_step)
    finally:
        run_mod.build_allocator = ORIGINAL_BUILD
    steps = steps[1:]  # the first step also carries the loop's start-up
    n_scarce = [n for sc, n in solves if sc]
    wall = np.array([s[2] for s in steps])
    scarce = np.array([s[1] for s in steps])
    man = res.manifest
    return {
        "variant": variant,
        "intervals": len(steps),
        "scarce": int(scarce.sum()),
        "ms_per_interval": 1e3 * float(wall.mean()),
        "ms_per_scarce": 1e3 * float(wall[scarce].mean()) if scarce.any() else float("nan"),
        "ms_per_normal": 1e3 * float(wall[~scarce].mean()) if (~scarce).any() else float("nan"),
        "loop_s": float(man["timings"]["loop_s"]),
        "solver_s": float(man["timings"]["solver_s"]),
        "solves_per_scarce": float(np.mean(n_scarce)) if n_scarce else float("nan"),
        "qp_method": man.get("qp_method"),
        "solve_paths": man.get("solve_paths", {}),
        "_steps": steps,
    }


def _matched(a: dict, b: dict) -> dict:
    """Per-interval means of two runs over the intervals both timed (same t)."""
    ta = {s[0]: (s[1], s[2]) for s in a["_steps"]}
    tb = {s[0]: (s[1], s[2]) for s in b["_steps"]}
    ts = sorted(set(ta) & set(tb))
    sc = np.array([ta[t][0] for t in ts])
    wa = np.array([ta[t][1] for t in ts])
    wb = np.array([tb[t][1] for t in ts])
    return {
        "intervals": len(ts),
        "scarce": int(sc.sum()),
        "ms_a": 1e3 * float(wa.mean()),
        "ms_b": 1e3 * float(wb.mean()),
        "ms_a_scarce": 1e3 * float(wa[sc].mean()),
        "ms_b_scarce": 1e3 * float(wb[sc].mean()),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default=str(ROOT / "models" / "ieee118.toml"))
    ap.add_argument("--intervals", type=int, default=300)
    ap.add_argument("--rebuild", type=int, default=100, help="intervals of the rebuild run")
    ap.add_argument("--sample", type=int, default=60, help="intervals given to rundcopp")
    ap.add_argument("--out", default=None, help="default bench/results_mechanism[_maxmin].json")
    ap.add_argument("--rule", choices=["qp", "maxmin"], default=None, help="override the spec's")
    ap.add_argument("--quick", action="store_true", help="60 intervals, 10 rundcopp samples")
    a = ap.parse_args(argv)
    if a.out is None:
        name = "results_mechanism_maxmin.json" if a.rule == "maxmin" else "results_mechanism.json"
        a.out = str(ROOT / "bench" / name)
    if a.quick:
        a.intervals, a.sample, a.rebuild = min(a.intervals, 60), min(a.sample, 10), 30
    spec = load_spec(a.spec, [f"run.intervals={a.intervals}"])
    info = machine_block()
    # Warm-up (imports, first model build, caches): the first timed run would pay for it.
    timed_run(a.spec, 20, "shipped", a.rule)
    fast = timed_run(a.spec, a.intervals, "shipped", a.rule)
    maxmin = a.rule == "maxmin"
    solver = fast if maxmin else timed_run(a.spec, a.intervals, "solver", a.rule)
    rebuild = timed_run(a.spec, a.rebuild, "rebuild", a.rule)
    match = _matched(rebuild, fast)
    steps = fast.pop("_steps")
    solver.pop("_steps", None)
    rebuild.pop("_steps")
    net = prepare(spec).net
    rng = np.random.default_rng(0)
    pick = rng.choice(len(steps), size=min(a.sample, len(steps)), replace=False)
    inputs = [(IntervalInput(steps[k][0], steps[k][3], steps[k][4]), None, None) for k in pick]
    pp = run_pandapower(net, inputs)
    if pp["converged"] == 0:
        raise SystemExit("pandapower rundcopp converged on none of the sampled intervals")
    # Only converged rundcopp calls count (PIPS does not converge on some intervals of this
    # congested case; a failed call runs to its iteration limit).
    pp["wall_ms"] = pp["wall_ms_converged"]
    ratio = {
        "rundcopp_over_fpamm_interval": pp["wall_ms"] / fast["ms_per_interval"],
        "rundcopp_over_fpamm_scarce": pp["wall_ms"] / fast["ms_per_scarce"],
        "rundcopp_over_fpamm_normal": pp["wall_ms"] / fast["ms_per_normal"],
        "rebuild_over_fpamm_interval": match["ms_a"] / match["ms_b"],
        "rebuild_over_fpamm_scarce": match["ms_a_scarce"] / match["ms_b_scarce"],
        "kkt_speedup_scarce": solver["ms_per_scarce"] / fast["ms_per_scarce"],
        "loop_over_solver": fast["loop_s"] / fast["solver_s"],
    }
    out = {
        "spec": str(Path(a.spec).name),
        "rule": a.rule or "as in the spec",
        "machine": info,
        "fpamm_shipped": fast,
        "fpamm_qp_by_solver": solver,
        "rebuild_each_interval": rebuild,
        "rebuild_matched": match,
        "pandapower_rundcopp": {k: v for k, v in pp.items() if k != "objective"},
        "ratios": ratio,
    }
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    rule = f", rule {a.rule}" if a.rule else ""
    print(
        f"{out['spec']}{rule}: {fast['intervals']} intervals ({fast['scarce']} scarce), "
        "this machine"
    )
    print(f"{'per interval, ms':<52}{'mean':>9}{'scarce':>9}{'normal':>9}{'solves/sc.':>11}")
    rows = [("FP-AMM as shipped (QPs by KKT)" if not maxmin else "FP-AMM, max-min rule", fast)]
    if not maxmin:
        rows.append(("FP-AMM, QPs by HiGHS (qp_method=solver)", solver))
    rows.append((f"rebuild model each interval ({rebuild['intervals']} int.)", rebuild))
    for label, r in rows:
        print(
            f"{label:<52}{r['ms_per_interval']:>9.2f}{r['ms_per_scarce']:>9.2f}"
            f"{r['ms_per_normal']:>9.2f}{r['solves_per_scarce']:>11.1f}"
        )
    print(
        f"{'pandapower rundcopp (one LP, converged calls)':<52}{pp['wall_ms']:>9.2f}"
        f"  ({pp['converged']} of {pp['converged'] + pp['failed']} converged)"
    )
    print(f"QP paths as shipped: {fast['solve_paths'].get('qp_paths')}")
    print(
        f"rundcopp / FP-AMM interval: {ratio['rundcopp_over_fpamm_interval']:.2f}x mean, "
        f"{ratio['rundcopp_over_fpamm_scarce']:.2f}x scarce; rebuild / FP-AMM (same "
        f"{match['intervals']} intervals): {ratio['rebuild_over_fpamm_interval']:.1f}x mean, "
        f"{ratio['rebuild_over_fpamm_scarce']:.1f}x scarce; KKT vs HiGHS QP on a scarce "
        f"interval: {ratio['kkt_speedup_scarce']:.2f}x; loop / solver time "
        f"{ratio['loop_over_solver']:.2f}x"
    )
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
