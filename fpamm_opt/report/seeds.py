"""Seed robustness: FP-AMM vs equal weights paired by seed from a batch directory.

``python -m fpamm_opt.report.seeds DIR`` reads ``DIR/index.parquet`` (a batch whose sweep
varies ``seed`` and ``policy``), pairs each seed's ``fpamm`` and ``equal`` runs (common random
numbers), and prints per seed the weak bus, both peak weak-bus errors, the reduction, both
limiting spreads and both one-run T5 verdicts, then the mean and range of the reductions and
how many seeds pass T5 under each policy (the replicated T5 verdict over the seeds is
``fpamm verify BATCH_DIR``'s; docs/verification.md). ``--json`` prints the same.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fpamm_opt.io.batch import read_index
from fpamm_opt.io.reader import read_manifest, read_table
from fpamm_opt.report.metrics import compare_weak_bus, limiting_spread
from fpamm_opt.verify.context import RunData
from fpamm_opt.verify.convergence import check_convergence

_NODE_COLS = ["t", "node", "bus", "tier", "demand_mw", "served_mw"]


@dataclass(frozen=True)
class SeedResult:
    """One seed's FP-AMM vs equal-weight comparison."""

    seed: int
    weak_node: int
    peak_fp: float
    peak_ew: float
    reduction: float
    spread_fp: float
    spread_ew: float
    t5_fp: bool  #: T5 verdict of the FP-AMM run
    t5_ew: bool  #: T5 verdict of the equal-weight run


def seed_results(batch_dir: Path | str) -> list[SeedResult]:
    """Pair the complete ``fpamm`` and ``equal`` runs of each seed and compare them."""
    root = Path(batch_dir)
    idx = read_index(root)
    idx = idx[idx["status"].astype(str).str.startswith(("complete", "skipped"))]
    out: list[SeedResult] = []
    # Pair runs that differ only in the policy (other swept columns are part of the key).
    fixed = {"run_id", "status", "policy", "path", "wall_s", "error", "spec_hash"}
    keys = [c for c in idx.columns if c not in fixed]
    for key, grp in idx.groupby(keys, dropna=False):
        seed = key[keys.index("seed")] if isinstance(key, tuple) else key
        runs = {str(r.policy): root / str(r.path) for r in grp.itertuples()}
        if "fpamm" not in runs or "equal" not in runs:
            continue
        fp = read_table(runs["fpamm"], "nodes", columns=_NODE_COLS)
        ew = read_table(runs["equal"], "nodes", columns=_NODE_COLS)
        # T5 reads the same columns: hand it the tables already loaded.
        fp_run, ew_run = (
            RunData(manifest=read_manifest(runs[p]), path=runs[p], tables={"nodes": n})
            for p, n in (("fpamm", fp), ("equal", ew))
        )
        iv = read_table(runs["fpamm"], "intervals", columns=["t", "scarce", "window"])
        cmp_ = compare_weak_bus(fp, ew, iv)
        out.append(
            SeedResult(
                int(seed),
                int(cmp_.node),
                float(cmp_.peak_fp.value),
                float(cmp_.peak_ew.value),
                float(cmp_.reduction),
                float(limiting_spread(fp).overall),
                float(limiting_spread(ew).overall),
                bool(check_convergence(fp_run).passed),
                bool(check_convergence(ew_run).passed),
            )
        )
    return out


def summary(results: list[SeedResult]) -> dict[str, float]:
    """Mean, min and max of the reductions (peak weak-bus error and spread)."""
    red = np.array([r.reduction for r in results])
    spr = np.array([1 - r.spread_fp / r.spread_ew for r in results if r.spread_ew > 0])
    return {
        "seeds": len(results),
        "reduction_mean": float(np.mean(red)) if red.size else float("nan"),
        "reduction_min": float(np.min(red)) if red.size else float("nan"),
        "reduction_max": float(np.max(red)) if red.size else float("nan"),
        "spread_reduction_mean": float(np.mean(spr)) if spr.size else float("nan"),
        "spread_reduction_min": float(np.min(spr)) if spr.size else float("nan"),
        "spread_reduction_max": float(np.max(spr)) if spr.size else float("nan"),
        "t5_passed_fpamm": sum(r.t5_fp for r in results),
        "t5_passed_equal": sum(r.t5_ew for r in results),
    }


def main(argv: list[str] | None = None) -> int:
    """Command-line entry (prints; this module is a report script)."""
    args = sys.argv[1:] if argv is None else argv
    as_json = "--json" in args
    dirs = [a for a in args if a != "--json"]
    if len(dirs) != 1:
        sys.stderr.write("usage: python -m fpamm_opt.report.seeds BATCH_DIR [--json]\n")
        return 2
    res = seed_results(dirs[0])
    summ = summary(res)
    if as_json:
        sys.stdout.write(
            json.dumps({"seeds": [asdict(r) for r in res], "summary": summ}, indent=2) + "\n"
        )
        return 0
    for r in res:
        sys.stdout.write(
            f"seed {r.seed}: weak node {r.weak_node}: peak FP {r.peak_fp:.4f} vs EW "
            f"{r.peak_ew:.4f} (reduction {r.reduction:.1%}); spread FP {r.spread_fp:.4f} "
            f"vs EW {r.spread_ew:.4f}; T5 FP {'pass' if r.t5_fp else 'fail'}, EW "
            f"{'pass' if r.t5_ew else 'fail'}\n"
        )
    sys.stdout.write(
        f"{summ['seeds']} seeds: peak weak-bus error reduction mean "
        f"{summ['reduction_mean']:.1%} (range {summ['reduction_min']:.1%} to "
        f"{summ['reduction_max']:.1%}); spread reduction mean "
        f"{summ['spread_reduction_mean']:.1%} (range {summ['spread_reduction_min']:.1%} to "
        f"{summ['spread_reduction_max']:.1%}); T5 passed on {summ['t5_passed_fpamm']} "
        f"(FP-AMM) and {summ['t5_passed_equal']} (equal weights) of {summ['seeds']} seeds\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
