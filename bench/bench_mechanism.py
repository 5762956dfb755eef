"""A full FP-AMM interval of the shipped IEEE-118 spec against one pandapower ``rundcopp``.

Run from the repository root::

    .venv/bin/python bench/bench_mechanism.py [--intervals 300] [--spec models/ieee118.toml]
                                              [--out bench/results_mechanism.json]

``bench_interval.py`` times one screen + one clear on synthetic inputs; this script times what
a user's run does per interval: ``fpamm run`` of the shipped spec (QP rule, PTDF, relative
weights, the fixed point of the clearing operator, storage to Parquet), measured between
consecutive intervals of the loop, once with the water-fill shortcut of
``AllocationProblem.clear`` (default) and once without it. Then one pandapower ``rundcopp``
(the screening LP: one VOLL, same network, ratings, demand and availability) on a sample of
the same intervals. Times are this machine's; ratios are what carries over.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_interval import run_pandapower  # noqa: E402
from run_all import machine_block  # noqa: E402

import fpamm_opt.problem as problem_mod  # noqa: E402
from fpamm_opt.mechanism.types import IntervalInput  # noqa: E402
from fpamm_opt.sim.run import prepare, run  # noqa: E402
from fpamm_opt.spec import load_spec  # noqa: E402


def timed_run(spec, water_fill: bool) -> dict:
    """Run ``spec`` and time every interval (wall between loop steps)."""
    steps: list[tuple[int, bool, float, np.ndarray, np.ndarray]] = []
    clock = [time.perf_counter()]

    def on_step(rec) -> None:
        now = time.perf_counter()
        steps.append((rec.t, bool(rec.scarce), now - clock[0], rec.demand_mw, rec.available_mw))
        clock[0] = now

    real_init = problem_mod.AllocationProblem.__init__

    def init(self, *args, **kw):
        kw["water_fill"] = water_fill
        real_init(self, *args, **kw)

    problem_mod.AllocationProblem.__init__ = init  # type: ignore[method-assign]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            res = run(spec, Path(tmp) / "run", progress=False, on_step=on_step)
    finally:
        problem_mod.AllocationProblem.__init__ = real_init  # type: ignore[method-assign]
    steps = steps[1:]  # the first step also carries the loop's start-up
    wall = np.array([s[2] for s in steps])
    scarce = np.array([s[1] for s in steps])
    return {
        "water_fill": water_fill,
        "intervals": len(steps),
        "scarce": int(scarce.sum()),
        "ms_per_interval": 1e3 * float(wall.mean()),
        "ms_per_scarce": 1e3 * float(wall[scarce].mean()) if scarce.any() else float("nan"),
        "ms_per_normal": 1e3 * float(wall[~scarce].mean()) if (~scarce).any() else float("nan"),
        "solver_s": float(res.manifest["timings"]["solver_s"]),
        "_steps": steps,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default=str(ROOT / "models" / "ieee118.toml"))
    ap.add_argument("--intervals", type=int, default=300)
    ap.add_argument("--sample", type=int, default=60, help="intervals given to rundcopp")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results_mechanism.json"))
    ap.add_argument("--quick", action="store_true", help="60 intervals, 10 rundcopp samples")
    a = ap.parse_args(argv)
    if a.quick:
        a.intervals, a.sample = min(a.intervals, 60), min(a.sample, 10)
    spec = load_spec(a.spec, [f"run.intervals={a.intervals}"])
    info = machine_block()
    # Warm-up (imports, first model build, caches): the first timed run would pay for it.
    timed_run(load_spec(a.spec, ["run.intervals=20"]), water_fill=True)
    fast = timed_run(spec, water_fill=True)
    full = timed_run(spec, water_fill=False)
    steps = fast.pop("_steps")
    full.pop("_steps")
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
        "shortcut_speedup_scarce": full["ms_per_scarce"] / fast["ms_per_scarce"],
    }
    out = {
        "spec": str(Path(a.spec).name),
        "machine": info,
        "fpamm_water_fill": fast,
        "fpamm_rule_only": full,
        "pandapower_rundcopp": {k: v for k, v in pp.items() if k != "objective"},
        "ratios": ratio,
    }
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"{out['spec']}: {fast['intervals']} intervals ({fast['scarce']} scarce), this machine")
    print(f"{'per interval':<44}{'mean ms':>10}")
    for label, r in (("FP-AMM, water-fill shortcut", fast), ("FP-AMM, rule only", full)):
        print(f"{label + ': all':<44}{r['ms_per_interval']:>10.2f}")
        print(f"{label + ': scarce':<44}{r['ms_per_scarce']:>10.2f}")
        print(f"{label + ': not scarce':<44}{r['ms_per_normal']:>10.2f}")
    print(
        f"{'pandapower rundcopp (one LP, converged calls)':<44}{pp['wall_ms']:>10.2f}"
        f"  ({pp['converged']} of {pp['converged'] + pp['failed']} converged)"
    )
    print(
        f"rundcopp / FP-AMM interval: {ratio['rundcopp_over_fpamm_interval']:.2f}x over the mix, "
        f"{ratio['rundcopp_over_fpamm_scarce']:.2f}x scarce, "
        f"{ratio['rundcopp_over_fpamm_normal']:.2f}x not scarce; water-fill shortcut speeds a "
        f"scarce interval up {ratio['shortcut_speedup_scarce']:.2f}x"
    )
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
