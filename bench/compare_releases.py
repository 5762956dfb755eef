"""Behaviour equivalence of two source trees: the same runs, the same stored allocations.

Run from the repository root::

    .venv/bin/python bench/compare_releases.py --base ../main --head . [--intervals 600]
                                               [--out runs/compare-releases] [--reuse]
                                               [--case NAME=SPEC[;KEY=VALUE...]] [--tol 1e-9]

Each case is one ``fpamm run`` of a spec (600 intervals by default, the spec's seed) executed
twice, once with each tree's code (``PYTHONPATH=<tree>``, the same interpreter, the same spec
file), into ``OUT/<base|head>/<case>``. Then, per case:

- ``nodes.parquet``: ``served_mw`` (and ``demand_mw``) on every ``(t, node)`` row, largest
  absolute difference, which must be at most ``--tol`` MW (default 1e-9);
- ``intervals.parquet``: ``n_solves`` and ``iterations`` per interval, which must be equal;
- the manifest's ``solve_paths`` (solves per tier path and QP path), which must be equal.

Default cases: ``models/ieee14.toml``, ``ieee57``, ``ieee118``, and IEEE-14 with
``mechanism.rule=maxmin``. The interpreter must be able to import the package's dependencies;
the package itself is taken from each tree (checked: ``fpamm_opt.__file__`` must lie in it).
Exit status 0 when every case matches, 1 otherwise. ``--reuse`` keeps run directories that
already exist (complete), so a fixed base is run once.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

DEFAULT_CASES = (
    "ieee14=models/ieee14.toml",
    "ieee57=models/ieee57.toml",
    "ieee118=models/ieee118.toml",
    "ieee14-maxmin=models/ieee14.toml;mechanism.rule=maxmin",
)


@dataclass(frozen=True)
class Case:
    """One run to repeat on both trees: a name, a spec file and ``--set`` overrides."""

    name: str
    spec: Path
    overrides: tuple[str, ...]

    @classmethod
    def parse(cls, text: str, root: Path) -> Case:
        """``NAME=SPEC[;KEY=VALUE...]``; a relative spec path is taken from ``root``."""
        name, _, rest = text.partition("=")
        spec, *overrides = rest.split(";")
        path = Path(spec)
        return cls(name.strip(), path if path.is_absolute() else root / path, tuple(overrides))


def _env(tree: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree)
    return env


def check_tree(python: str, tree: Path) -> str:
    """The ``fpamm_opt.__file__`` the interpreter imports with ``PYTHONPATH=tree``."""
    code = "import fpamm_opt; print(fpamm_opt.__file__)"
    out = subprocess.run(
        [python, "-c", code], env=_env(tree), cwd=tree, capture_output=True, text=True, check=True
    ).stdout.strip()
    if not Path(out).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"PYTHONPATH={tree} imports fpamm_opt from {out}, not from the tree")
    return out


def run_case(python: str, tree: Path, case: Case, intervals: int, out: Path, reuse: bool) -> float:
    """One ``fpamm run`` of ``case`` with ``tree``'s code; returns its wall seconds."""
    if reuse and (out / "manifest.json").is_file():
        return 0.0
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [python, "-m", "fpamm_opt.cli", "run", str(case.spec), "-T", str(intervals)]
    cmd += ["--out", str(out), "--overwrite", "--no-progress"]
    for kv in case.overrides:
        cmd += ["--set", kv]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=_env(tree), cwd=tree, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{case.name} on {tree}: exit {proc.returncode}: {proc.stderr.strip()}")
    return time.perf_counter() - t0


def _frame(run_dir: Path, table: str, keys: list[str]) -> pd.DataFrame:
    df = pd.read_parquet(run_dir / f"{table}.parquet")
    return df.sort_values(keys, kind="stable").reset_index(drop=True)


def compare_runs(base: Path, head: Path) -> dict[str, Any]:
    """The differences between two run directories of the same case."""
    nb, nh = _frame(base, "nodes", ["t", "node"]), _frame(head, "nodes", ["t", "node"])
    ib, ih = _frame(base, "intervals", ["t"]), _frame(head, "intervals", ["t"])
    same_rows = nb[["t", "node"]].equals(nh[["t", "node"]])
    diff = {
        col: float(np.nanmax(np.abs(nb[col].to_numpy() - nh[col].to_numpy()), initial=0.0))
        for col in ("served_mw", "demand_mw")
        if same_rows
    }
    paths = [json.loads((d / "manifest.json").read_text()).get("solve_paths") for d in (base, head)]
    return {
        "rows": len(nb),
        "same_rows": bool(same_rows),
        "scarce": int(ib["scarce"].sum()),
        "max_abs_diff_mw": diff,
        "n_solves_equal": bool(ib["n_solves"].equals(ih["n_solves"])),
        "iterations_equal": bool(ib["iterations"].equals(ih["iterations"])),
        "n_solves": [int(ib["n_solves"].sum()), int(ih["n_solves"].sum())],
        "solve_paths_equal": paths[0] == paths[1],
        "solve_paths": paths[1],
    }


def verdict(res: dict[str, Any], tol: float) -> bool:
    """Whether two runs match: same rows, allocations within ``tol``, same solve counts."""
    return (
        res["same_rows"]
        and all(v <= tol for v in res["max_abs_diff_mw"].values())
        and res["n_solves_equal"]
        and res["iterations_equal"]
        and res["solve_paths_equal"]
    )


def main(argv: list[str] | None = None) -> int:
    """Run every case on both trees, print one line per case and a JSON summary."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", type=Path, required=True, help="The reference tree (e.g. main).")
    ap.add_argument("--head", type=Path, default=Path("."), help="The tree under test.")
    ap.add_argument("--python", default=sys.executable, help="Interpreter for both trees.")
    ap.add_argument("--intervals", "-T", type=int, default=600)
    ap.add_argument("--out", type=Path, default=Path("runs/compare-releases"))
    ap.add_argument("--case", action="append", help="NAME=SPEC[;KEY=VALUE...] (repeatable).")
    ap.add_argument("--tol", type=float, default=1e-9, help="MW.")
    ap.add_argument("--reuse", action="store_true", help="Keep existing run directories.")
    args = ap.parse_args(argv)
    head = args.head.resolve()
    trees = {"base": args.base.resolve(), "head": head}
    for label, tree in trees.items():
        print(f"{label}: {tree} (fpamm_opt from {check_tree(args.python, tree)})")
    cases = [Case.parse(c, head) for c in (args.case or DEFAULT_CASES)]
    ok_all, summary = True, {}
    for case in cases:
        dirs = {k: args.out.resolve() / k / case.name for k in trees}
        walls = {
            k: run_case(args.python, t, case, args.intervals, dirs[k], args.reuse)
            for k, t in trees.items()
        }
        res = compare_runs(dirs["base"], dirs["head"])
        ok = verdict(res, args.tol)
        ok_all &= ok
        summary[case.name] = {**res, "match": ok, "wall_s": walls}
        print(
            f"{case.name:14s} {'MATCH' if ok else 'DIFFER'}: T={args.intervals} "
            f"({res['scarce']} scarce), {res['rows']} node rows, max |d served_mw| "
            f"{res['max_abs_diff_mw'].get('served_mw', float('nan')):.3g} MW, n_solves "
            f"{res['n_solves'][0]} / {res['n_solves'][1]} (per interval equal: "
            f"{res['n_solves_equal']}), iterations equal: {res['iterations_equal']}, "
            f"solve_paths equal: {res['solve_paths_equal']}"
        )
    print(json.dumps(summary, indent=1, default=str))
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
