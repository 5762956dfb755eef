"""FP-AMM against the equal-weight and LMP baselines on common random numbers (``fpamm compare``).

Role
----
:func:`run_comparison` is a batch of policy runs plus a summary. It runs one spec under each
policy with the same seed and horizon (only ``run.policy`` differs, so the scenario, the
scarcity windows and the tier orders are the same random draws: any difference is the
allocation rule), as ``OUT/fpamm``, ``OUT/equal`` and ``OUT/lmp``: one
:class:`~fpamm_opt.sim.batch.RunTask` per policy (:func:`policy_jobs`), run by
:func:`~fpamm_opt.sim.batch.execute_run` on the package's one process pool,
:class:`~fpamm_opt.sim.batch.Executor` (each worker receives the spec as a plain dict and
builds its own Pyomo model; nothing Pyomo is pickled). A run directory that already exists,
complete and with the expected spec hash (:func:`~fpamm_opt.io.reader.complete_spec_hash`,
the resume check of batches too), is reused. Each run is then verified on the same workers
(:func:`fpamm_opt.verify.verify_run`; FP-AMM with the equal-weight run as the baseline of the
fairness-spread check), the metrics of MECHANISM.md section 6 are computed
(:mod:`fpamm_opt.report.metrics`) and ``OUT/comparison.json`` is written atomically.

``comparison.json``
-------------------
``schema``, ``created``, ``spec_source``, ``spec_hash`` (the FP-AMM run's; the other runs
differ only in ``run.policy``, their hashes are under ``policies``), ``seed``, ``intervals``
(``T``), ``case``, ``interval_hours``;

``policies.<policy>``: ``peak_weak_bus_error`` (and ``peak_weak_bus_t``) at the weak bus,
``peak_weak_bus_abs_error`` (and ``peak_weak_bus_abs_t``) at the node with the largest absolute
final error, ``under_service`` (limiting under-service ``max_i (F^agg_l(T) - F_i(T))^+``),
``final_max_fairness_error`` (``max_i e_i(T)``), ``t5_statistic`` and ``t5_bound`` (T5's
largest standardized under-service ``Z`` and its bound, ``null`` when T5 does not apply),
``t5_passed`` (``null`` when T5 does not apply), ``t5_detail``, ``checks_passed`` / ``checks_failed`` / ``checks_not_applicable`` (check
names), ``all_checks_passed``, ``checks`` (the full verification, as ``fpamm verify --json``),
``feasible_fraction``, ``spread`` (limiting fairness spread ``max_l max_{i in l} |F_i(T) -
F^agg_l(T)|``) and ``spread_per_tier``, ``served_energy_mwh``, ``shed_energy_mwh``,
``shortfall_max_node`` / ``shortfall_max_share`` (where shedding fell most), ``run_dir``
(relative to the comparison directory), ``spec_hash``, ``wall_s`` (the run's own wall time from
its manifest), ``reused``, ``verify_s``;

``weak_bus``: MECHANISM.md section 6's weak bus, the most under-served node under the
equal-weight baseline (lowest ``F_i(T) - F^agg_l(T)``), or ``scenario.weak_node`` of the spec:
``node``, ``bus``, ``tier``, ``chosen_by``, ``final_error_equal``, ``final_gap_equal``
(``F^agg - F_i`` under equal weights), ``over_served`` (its final ratio is *above* its
tier's), ``final_delivery_ratio`` and ``final_tier_ratio`` per policy, ``peak`` per policy
(``value``, ``t``), ``reduction`` (``1 - FP/EW``) and ``reduction_vs_lmp``;

``weak_bus_abs``: the same for the node with the largest absolute final error
``|F_i(T) - F^agg_l(T)|`` under equal weights (the second row). It is often an over-served
node beside generation stranded behind a congested corridor: that energy can reach no other
node, so no weighting can lower its ratio;

``burn_in``: ``intervals`` excluded (through the end of the first scarcity window),
``scarce_after`` (scarce intervals left), ``rule``; ``scarcity``: ``scarce_intervals``,
``windows``;

``reductions``: ``peak_weak_bus_error``, ``peak_weak_bus_abs_error``, ``spread``,
``under_service`` (each ``1 - FP/EW``) and the same against LMP (``*_vs_lmp``). Numbers that cannot be computed (no
scarce interval after the burn-in, a zero baseline) are ``null``.

No Pyomo here (the worker processes import it through :mod:`fpamm_opt.sim.run`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fpamm_opt.errors import InputError, RunDirectoryError, SolverError
from fpamm_opt.io.batch import RunStatus
from fpamm_opt.io.reader import COMPARISON_NAME, complete_spec_hash, read_manifest, read_table
from fpamm_opt.mechanism.config import Policy
from fpamm_opt.report import metrics as mt
from fpamm_opt.sim.batch import Executor, RunTask, execute_run
from fpamm_opt.spec import RunSpec, as_spec, spec_hash
from fpamm_opt.tolerances import DEFAULT_COLD_SAMPLE
from fpamm_opt.verify import VerificationReport, verify_run
from fpamm_opt.verify.context import RunContext
from fpamm_opt.verify.panel import bool_array
from fpamm_opt.verify.result import CheckName

SCHEMA = "fpamm.comparison/1"
#: Policies of a comparison, in display order.
DEFAULT_POLICIES: tuple[str, ...] = ("fpamm", "equal", "lmp")
#: Display names.
POLICY_LABELS: dict[str, str] = {"fpamm": "FP-AMM", "equal": "equal weights", "lmp": "LMP"}
BURN_IN_RULE = "through the end of the first scarcity window"

#: Columns read from each run (nothing else is loaded).
NODE_COLUMNS = ("t", "node", "bus", "tier", "demand_mw", "served_mw")
INTERVAL_COLUMNS = ("t", "scarce", "window", "status")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ComparisonResult:
    """What :func:`run_comparison` produced.

    Attributes
    ----------
    out_dir : Path
        The comparison directory.
    path : Path
        ``out_dir / "comparison.json"``.
    data : dict
        The content of ``comparison.json``.
    reports : dict
        :class:`~fpamm_opt.verify.VerificationReport` per policy.
    reused : dict
        Per policy, whether an existing complete run was reused.
    """

    out_dir: Path
    path: Path
    data: dict[str, Any]
    reports: dict[str, VerificationReport] = field(default_factory=dict)
    reused: dict[str, bool] = field(default_factory=dict)

    def run_dir(self, policy: str) -> Path:
        """The run directory of ``policy``."""
        return self.out_dir / str(self.data["policies"][policy]["run_dir"])

    @property
    def failed_checks(self) -> dict[str, list[str]]:
        """Per policy, the applicable checks that failed (empty lists when all passed)."""
        return {p: list(v["checks_failed"]) for p, v in self.data["policies"].items()}


# ------------------------------------------------------------------ spec and policies
def _check_policies(policies: Sequence[str]) -> tuple[str, ...]:
    known = {p.value for p in Policy}
    out: list[str] = []
    for p in policies:
        if str(p) not in known:
            raise InputError(f"unknown policy {p!r} (known: {', '.join(sorted(known))})")
        if str(p) not in out:
            out.append(str(p))
    for need in ("fpamm", "equal"):
        if need not in out:
            raise InputError(
                f"a comparison needs the {need!r} policy (the weak bus is chosen under equal "
                "weights and FP-AMM is measured against it)"
            )
    return tuple(out)


def policy_specs(
    spec: RunSpec,
    seed: int | None = None,
    intervals: int | None = None,
    policies: Sequence[str] = DEFAULT_POLICIES,
) -> dict[str, RunSpec]:
    """The spec of each policy's run: the same spec, seed and horizon, only ``run.policy`` set."""
    from fpamm_opt.sim.run import resolve_run_spec

    return {p: resolve_run_spec(spec, p, seed, intervals) for p in _check_policies(policies)}


def verify_job(job: Mapping[str, Any]) -> dict[str, Any]:
    """Verify one policy's run (a job of :class:`~fpamm_opt.sim.batch.Executor`).

    ``job``: ``run_id`` (the policy), ``run_dir``, ``baseline`` (the equal-weight run for
    FP-AMM, else ``None``), ``cold_sample`` and ``seed``. Returns ``run_id``, ``status``
    (``complete``), ``report`` (:class:`~fpamm_opt.verify.VerificationReport`) and
    ``verify_s``; errors are raised.
    """
    t0 = time.perf_counter()
    rep = verify_run(
        job["run_dir"], cold_sample=job["cold_sample"], seed=job["seed"], baseline=job["baseline"]
    )
    return {
        "run_id": job["run_id"],
        "status": "complete",
        "report": rep,
        "verify_s": time.perf_counter() - t0,
    }


# ------------------------------------------------------------------ metrics
def _finite(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _jsonable(value: Any) -> Any:
    """Plain JSON values: NaN/inf become ``None``, NumPy scalars Python ones."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return _finite(value)
    if isinstance(value, Path):
        return str(value)
    return value


@dataclass(frozen=True, eq=False)
class _RunTables:
    manifest: dict[str, Any]
    intervals: pd.DataFrame
    panel: mt.NodePanel
    bus_of: dict[int, int]


def _load(run_dir: Path) -> _RunTables:
    man = read_manifest(run_dir)
    iv = read_table(run_dir, "intervals", columns=list(INTERVAL_COLUMNS))
    iv = iv.sort_values("t", kind="stable").reset_index(drop=True)
    nodes = read_table(run_dir, "nodes", columns=list(NODE_COLUMNS))
    first = nodes.drop_duplicates("node")
    bus_of = dict(zip(first["node"].astype(int), first["bus"].astype(int)))
    return _RunTables(man, iv, mt.NodePanel.from_nodes(nodes), bus_of)


def _policy_metrics(
    tables: _RunTables,
    report: VerificationReport,
    weak: int,
    abs_node: int,
    burn_in: int,
    hours: float,
) -> dict[str, Any]:
    panel, iv = tables.panel, tables.intervals
    peak = mt.peak_weak_bus_error(panel, iv, weak, burn_in)
    peak_a = mt.peak_weak_bus_error(panel, iv, abs_node, burn_in)
    err = mt.max_fairness_error(panel)
    spread = mt.limiting_spread(panel)
    shed = mt.shortfall_distribution(panel)
    try:
        t5 = report.get(CheckName.T5_CONVERGENCE.value)
    except KeyError:
        t5 = None
    applicable = [c for c in report if c.applicable]
    timings = tables.manifest.get("timings") or {}
    return {
        "peak_weak_bus_error": peak.value,
        "peak_weak_bus_t": peak.t,
        "peak_weak_bus_abs_error": peak_a.value,
        "peak_weak_bus_abs_t": peak_a.t,
        "under_service": mt.limiting_under_service(panel),
        "final_max_fairness_error": float(err[-1]) if err.size else math.nan,
        "t5_statistic": None if t5 is None or not t5.applicable else _finite(t5.measured),
        "t5_bound": None if t5 is None or not t5.applicable else _finite(t5.bound),
        "t5_passed": None if t5 is None or not t5.applicable else bool(t5.passed),
        "t5_detail": "" if t5 is None else t5.detail,
        "checks_passed": [str(c.name) for c in applicable if c.passed],
        "checks_failed": [str(c.name) for c in applicable if not c.passed],
        "checks_not_applicable": [str(c.name) for c in report if not c.applicable],
        "all_checks_passed": bool(report.passed),
        "checks": report.to_json(),
        "feasible_fraction": mt.feasible_fraction(iv),
        "spread": spread.overall,
        "spread_per_tier": {str(k): v for k, v in spread.per_tier.items()},
        "served_energy_mwh": float(panel.served_mw.sum()) * hours,
        "shed_energy_mwh": float(np.clip(panel.demand_mw - panel.served_mw, 0, None).sum()) * hours,
        "shortfall_max_node": shed.max_node,
        "shortfall_max_share": shed.max_share,
        "spec_hash": tables.manifest.get("spec_hash"),
        "wall_s": _finite(timings.get("total_s")),
    }


def _node_entry(
    node: int,
    runs: Mapping[str, _RunTables],
    metric: str,
    chosen_by: str,
) -> dict[str, Any]:
    ew = runs["equal"]
    col = int(np.flatnonzero(ew.panel.node == node)[0])
    entry: dict[str, Any] = {
        "node": int(node),
        "bus": ew.bus_of.get(int(node)),
        "tier": int(ew.panel.tier[col]),
        "chosen_by": chosen_by,
    }
    f_final: dict[str, float] = {}
    agg_final: dict[str, float] = {}
    for p, r in runs.items():
        f, agg = mt.node_delivery_series(r.panel, node)
        f_final[p] = float(f[-1])
        agg_final[p] = float(agg[-1])
    entry["final_error_equal"] = abs(f_final["equal"] - agg_final["equal"])
    entry["final_gap_equal"] = agg_final["equal"] - f_final["equal"]
    entry["over_served"] = bool(f_final["equal"] > agg_final["equal"])
    entry["final_delivery_ratio"] = f_final
    entry["final_tier_ratio"] = agg_final
    entry["metric"] = metric
    return entry


def _node_block(
    runs: Mapping[str, Any], pol: Mapping[str, Any], node: int, key: str, chosen_by: str
) -> dict[str, Any]:
    """The ``weak_bus`` (or ``weak_bus_abs``) entry: the node, its peaks and reductions."""
    entry = _node_entry(node, runs, key, chosen_by)
    entry["peak"] = {
        p: {"value": pol[p][key], "t": pol[p][key.replace("_error", "_t")]} for p in runs
    }
    entry["reduction"] = mt.reduction(pol["fpamm"][key], pol["equal"][key])
    entry["reduction_vs_lmp"] = (
        mt.reduction(pol["fpamm"][key], pol["lmp"][key]) if "lmp" in pol else math.nan
    )
    return entry


def summarise(
    run_dirs: Mapping[str, Path],
    reports: Mapping[str, VerificationReport],
    burn_in: int | None = None,
) -> dict[str, Any]:
    """The metrics part of ``comparison.json`` from complete run directories.

    Parameters
    ----------
    run_dirs : mapping
        Run directory per policy (at least ``fpamm`` and ``equal``).
    reports : mapping
        Verification report per policy.
    burn_in : int, optional
        Leading intervals excluded from the peak errors (default: through the end of the
        first scarcity window of the FP-AMM run; the runs share their scarcity windows).

    Returns
    -------
    dict
        ``policies``, ``weak_bus``, ``weak_bus_abs``, ``burn_in``, ``scarcity``,
        ``reductions`` (see the module docstring), not yet JSON-cleaned.
    """
    _check_policies(list(run_dirs))
    runs = {p: _load(Path(d)) for p, d in run_dirs.items()}
    fp, ew = runs["fpamm"], runs["equal"]
    ref_t = fp.intervals["t"].to_numpy()
    for p, r in runs.items():
        if not np.array_equal(r.intervals["t"].to_numpy(), ref_t):
            raise InputError(f"the {p} run covers other intervals than the fpamm run")
    skip = mt.burn_in_end(fp.intervals, burn_in)
    scarce = bool_array(fp.intervals["scarce"])
    named = RunContext.from_manifest(ew.manifest).weak_node
    weak = mt.weak_node(ew.panel, named)
    abs_node = mt.largest_error_node(ew.panel)
    hours = (
        float(((fp.manifest.get("spec") or {}).get("scenario") or {}).get("interval_minutes", 30))
        / 60.0
    )
    pol: dict[str, Any] = {}
    for p, r in runs.items():
        pol[p] = _policy_metrics(r, reports[p], weak, abs_node, skip, hours)
        pol[p]["run_dir"] = str(run_dirs[p])

    weak_by = (
        "named in the spec (scenario.weak_node)"
        if named is not None
        else "most under-served under equal weights: lowest F_i(T) - F_tier(T)"
    )
    red: dict[str, Any] = {}
    for key in ("peak_weak_bus_error", "peak_weak_bus_abs_error", "spread", "under_service"):
        red[key] = mt.reduction(pol["fpamm"][key], pol["equal"][key])
        if "lmp" in pol:
            red[f"{key}_vs_lmp"] = mt.reduction(pol["fpamm"][key], pol["lmp"][key])
    windows = fp.intervals["window"].dropna().nunique() if "window" in fp.intervals else 0
    after = scarce.copy()
    after[:skip] = False
    return {
        "policies": pol,
        "weak_bus": _node_block(runs, pol, weak, "peak_weak_bus_error", weak_by),
        "weak_bus_abs": _node_block(
            runs,
            pol,
            abs_node,
            "peak_weak_bus_abs_error",
            "largest final fairness error |F_i(T) - F_tier(T)| under equal weights",
        ),
        "burn_in": {
            "intervals": int(skip),
            "scarce_after": int(after.sum()),
            "rule": BURN_IN_RULE if burn_in is None else "given explicitly",
        },
        "scarcity": {"scarce_intervals": int(scarce.sum()), "windows": int(windows)},
        "reductions": red,
    }


def write_json_atomic(path: Path, data: Any) -> Path:
    """Write ``data`` as indented JSON to ``path`` through a temporary file and a rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, allow_nan=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return path


def read_comparison(out_dir: Path | str) -> dict[str, Any]:
    """The parsed ``comparison.json`` of a comparison directory."""
    p = Path(out_dir) / COMPARISON_NAME
    if not p.is_file():
        raise RunDirectoryError(f"not a comparison directory: {out_dir} (no {COMPARISON_NAME})")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunDirectoryError(f"{p} is unreadable ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or "policies" not in data:
        raise RunDirectoryError(f"{p} is not a comparison (no policies)")
    return data


# ------------------------------------------------------------------ the comparison
def run_comparison(
    spec_path_or_spec: RunSpec | str | Path,
    out_dir: Path | str,
    seed: int | None = None,
    intervals: int | None = None,
    overrides: Iterable[str] = (),
    workers: int = 2,
    policies: Sequence[str] = DEFAULT_POLICIES,
    progress: Progress | None = None,
    overwrite: bool = False,
    cold_sample: int = DEFAULT_COLD_SAMPLE,
    burn_in: int | None = None,
) -> ComparisonResult:
    """Run (or resume) FP-AMM and its baselines on common random numbers, verify, compare.

    Parameters
    ----------
    spec_path_or_spec : RunSpec or path
        The spec (a TOML file or a loaded :class:`~fpamm_opt.spec.RunSpec`).
    out_dir : path
        Comparison directory: ``<policy>/`` run directories and ``comparison.json``.
    seed, intervals : int, optional
        Override the spec's seed and horizon ``T`` (for every run).
    overrides : iterable of str
        ``section.key=value`` overrides applied to the spec first.
    workers : int
        Worker processes (``spawn``), at most one per run; ``0`` runs everything in this
        process. The verification of the runs is spread over the same workers.
    policies : sequence of str
        Must contain ``fpamm`` and ``equal``; ``lmp`` is optional.
    progress : callable, optional
        Called with one line of text per event (run started, reused, finished, verified).
    overwrite : bool
        Re-run every policy even when a complete run directory exists (a run directory of
        another spec is an error without it).
    cold_sample : int
        Intervals re-solved cold per run by the T3 check.
    burn_in : int, optional
        See :func:`summarise`.

    Returns
    -------
    ComparisonResult

    Raises
    ------
    InputError
        Bad spec, policies or workers; a run directory of another spec without ``overwrite``.
    SolverError
        When a run fails (the other runs are kept and reused next time).
    """
    t_start = time.perf_counter()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise InputError(f"workers must be an integer >= 0, got {workers!r}")
    say = progress or (lambda _msg: None)
    spec = as_spec(spec_path_or_spec, overrides)
    specs = policy_specs(spec, seed, intervals, policies)
    out = Path(out_dir)
    jobs = policy_jobs(specs, out)
    reused, todo = _plan(jobs, out, overwrite, say)
    out.mkdir(parents=True, exist_ok=True)
    with Executor(min(workers, len(specs))) as ex:
        _run_all(ex, todo, specs, out, say)
        reports, verify_s = _verify_all(ex, specs, out, cold_sample, say)
    data = summarise({p: out / p for p in specs}, reports, burn_in)
    for p in specs:  # run_dir relative to the comparison directory
        data["policies"][p].update(run_dir=p, reused=reused[p], verify_s=verify_s[p])
    fpamm_hash = next(j.spec_hash for j in jobs if j.run_id == "fpamm")
    head = _comparison_head(spec, specs, str(fpamm_hash), out / "fpamm", t_start)
    full = _jsonable({**head, **data})
    path = write_json_atomic(out / COMPARISON_NAME, full)
    say(f"comparison written to {path}")
    return ComparisonResult(out, path, full, reports, reused)


def policy_jobs(specs: Mapping[str, RunSpec], out: Path) -> list[RunTask]:
    """The comparison as a batch: one :class:`~fpamm_opt.sim.batch.RunTask` per policy.

    The run id is the policy, so :meth:`RunTask.payload` with ``out`` puts each run at
    ``out/<policy>`` (INTERFACE.md's comparison layout).
    """
    return [
        RunTask(
            position=k,
            run_id=p,
            values={"policy": p},
            spec=s.to_dict(),
            spec_hash=spec_hash(s),
            seed=int(s.run.seed),
            policy=p,
            source=s.source,
        )
        for k, (p, s) in enumerate(specs.items())
    ]


def _plan(
    jobs: Sequence[RunTask], out: Path, overwrite: bool, say: Progress
) -> tuple[dict[str, bool], list[dict[str, Any]]]:
    """Which policy runs are reused (complete, same spec hash) and the payloads of the others."""
    reused: dict[str, bool] = {}
    todo: list[dict[str, Any]] = []
    for job in jobs:
        p, run_dir = job.run_id, out / job.run_id
        existing = complete_spec_hash(run_dir)
        if existing == job.spec_hash and not overwrite:
            reused[p] = True
            say(f"{p}: reusing the complete run {run_dir}")
            continue
        if run_dir.exists() and not overwrite:
            what = f"a run of another spec (hash {existing})" if existing else "something else"
            raise InputError(
                f"{run_dir} holds {what}, not this comparison's {p} run "
                f"(hash {job.spec_hash}): use another --out or --overwrite"
            )
        reused[p] = False
        todo.append(job.payload(out, overwrite=overwrite))
    return reused, todo


def _run_all(
    ex: Executor,
    todo: list[dict[str, Any]],
    specs: Mapping[str, RunSpec],
    out: Path,
    say: Progress,
) -> None:
    """Run the payloads; then every policy's run must be complete and of its spec."""
    errors: list[str] = []
    for task in todo:
        say(f"{task['run_id']}: running {specs[task['run_id']].run.intervals} intervals")
    with contextlib.closing(ex.map(execute_run, todo)) as results:
        for res in results:
            p = res["run_id"]
            if res["status"] == RunStatus.COMPLETE.value:
                say(f"{p}: done in {res['wall_s']:.1f} s -> {out / p}")
            else:
                errors.append(f"{p}: {res['error'] or 'stopped before it started'}")
                say(f"{p}: FAILED: {errors[-1].partition(': ')[2]}")
    if errors:
        raise SolverError("run failed: " + "; ".join(errors))
    for p, s in specs.items():
        got, want = complete_spec_hash(out / p), spec_hash(s)
        if got != want:
            raise RunDirectoryError(
                f"{out / p}: expected a complete run with spec hash {want}, found {got}"
            )


def _verify_all(
    ex: Executor,
    specs: Mapping[str, RunSpec],
    out: Path,
    cold_sample: int | None,
    say: Progress,
) -> tuple[dict[str, VerificationReport], dict[str, float]]:
    """Verify every policy's run (FP-AMM against the equal-weight baseline)."""
    reports: dict[str, VerificationReport] = {}
    verify_s: dict[str, float] = {}
    jobs = [
        {
            "run_id": p,
            "run_dir": str(out / p),
            "baseline": str(out / "equal") if p == "fpamm" else None,
            "cold_sample": cold_sample,
            "seed": int(s.run.seed),
        }
        for p, s in specs.items()
    ]
    with contextlib.closing(ex.map(verify_job, jobs)) as results:
        for res in results:
            p, rep = res["run_id"], _report_of(res)
            reports[p], verify_s[p] = rep, res["verify_s"]
            verdict = (
                "all checks passed"
                if rep.passed
                else "FAILED " + ", ".join(str(c.name) for c in rep.failed)
            )
            say(f"{p}: verified in {res['verify_s']:.1f} s: {verdict}")
    return reports, verify_s


def _report_of(res: Mapping[str, Any]) -> VerificationReport:
    """The report of a verification job; what a worker raised is raised here."""
    if "exception" in res:
        raise res["exception"]
    if "report" not in res:  # its worker was stopped before it started (SIGTERM)
        raise RunDirectoryError(f"{res['run_id']}: not verified (its worker was stopped)")
    report: VerificationReport = res["report"]
    return report


def _comparison_head(
    spec: RunSpec,
    specs: Mapping[str, RunSpec],
    fpamm_hash: str,
    fpamm_dir: Path,
    t_start: float,
) -> dict[str, Any]:
    """The head of ``comparison.json``: what was compared, on which case, how long it took."""
    fp_man = read_manifest(fpamm_dir)
    net = fp_man.get("network") or {}
    head = {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "spec_source": spec.source,
        "spec_hash": fpamm_hash,
        "seed": int(specs["fpamm"].run.seed),
        "intervals": int(specs["fpamm"].run.intervals),
        "case": net.get("name") if isinstance(net, Mapping) else None,
        "interval_hours": float(getattr(specs["fpamm"].scenario, "interval_minutes", 30)) / 60,
        "policy_order": list(specs),
        "wall_s": time.perf_counter() - t_start,
    }
    return head


# ------------------------------------------------------------------ plain-text headline
def _pct(value: Any) -> str:
    v = _finite(value)
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _num(value: Any, fmt: str = ".4f") -> str:
    v = _finite(value)
    return "n/a" if v is None else format(v, fmt)


def headline_lines(data: Mapping[str, Any]) -> list[str]:
    """A few plain-text lines summarising a comparison (what ``fpamm compare`` prints)."""
    pol = data["policies"]
    wb = data["weak_bus"]
    ab = data["weak_bus_abs"]
    red = data["reductions"]
    lines = [
        f"{data.get('case') or 'case'}: T={data.get('intervals')}, seed={data.get('seed')}, "
        f"{data['scarcity']['scarce_intervals']} scarce intervals in "
        f"{data['scarcity']['windows']} windows; burn-in {data['burn_in']['intervals']} "
        f"intervals ({data['burn_in']['scarce_after']} scarce intervals after it)",
        f"weak bus ({wb['chosen_by']}): node {wb['node']} "
        f"(bus {wb['bus']}, tier {wb['tier']}, "
        f"{'over' if wb['over_served'] else 'under'}-served)",
        f"  peak weak-bus error  FP-AMM {_num(pol['fpamm']['peak_weak_bus_error'])}  vs  "
        f"equal {_num(pol['equal']['peak_weak_bus_error'])}: reduction "
        f"{_pct(red['peak_weak_bus_error'])}"
        + (
            f"  (vs LMP {_num(pol['lmp']['peak_weak_bus_error'])}: "
            f"{_pct(red.get('peak_weak_bus_error_vs_lmp'))})"
            if "lmp" in pol
            else ""
        ),
        f"largest absolute final error under equal weights: node {ab['node']} "
        f"(bus {ab['bus']}, tier {ab['tier']}, {'over' if ab['over_served'] else 'under'}-served)",
        f"  peak error           FP-AMM {_num(pol['fpamm']['peak_weak_bus_abs_error'])}  vs  "
        f"equal {_num(pol['equal']['peak_weak_bus_abs_error'])}: reduction "
        f"{_pct(red['peak_weak_bus_abs_error'])}",
        "limiting under-service "
        + "  ".join(f"{POLICY_LABELS.get(p, p)} {_num(v['under_service'])}" for p, v in pol.items())
        + f": reduction {_pct(red['under_service'])}",
        "limiting spread       "
        + "  ".join(f"{POLICY_LABELS.get(p, p)} {_num(v['spread'])}" for p, v in pol.items())
        + f": reduction {_pct(red['spread'])}",
    ]
    lines.append("verification:")
    for p, v in pol.items():
        name = POLICY_LABELS.get(p, p)
        if v["all_checks_passed"]:
            verdict = f"all {len(v['checks_passed'])} applicable checks passed"
        else:
            verdict = "FAILED " + ", ".join(v["checks_failed"])
        t5 = {True: "T5 PASS", False: "T5 FAIL", None: "T5 n/a"}[v["t5_passed"]]
        lines.append(
            f"  {name:14s} {verdict}; {t5}; feasible fraction {_num(v['feasible_fraction'], '.3f')}"
        )
    return lines
