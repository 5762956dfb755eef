"""The command-line interface (click): the only place that writes to the terminal.

Exit codes (INTERFACE.md): 0 success, 1 error (one line on stderr, no traceback unless
``--debug``), 2 usage (click), 3 a verification check failed.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from fpamm_opt.errors import FpammError, InputError, one_line_error
from fpamm_opt.tolerances import DEFAULT_COLD_SAMPLE

EXIT_ERROR = 1
EXIT_CHECK_FAILED = 3


def _fail(msg: str) -> None:
    click.echo(f"error: {msg}", err=True)
    sys.exit(EXIT_ERROR)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn library errors into one line on stderr and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        debug = bool(ctx.find_root().params.get("debug"))
        try:
            return fn(*args, **kwargs)
        except FpammError as exc:
            if debug:
                raise
            _fail(one_line_error(exc))
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except (OSError, ValueError) as exc:
            if debug:
                raise
            _fail(one_line_error(exc))

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.version_option(package_name="fpamm-opt")
def app(debug: bool) -> None:
    """fpamm: the Fair Play Automatic Market Maker on DC-OPF networks."""


#: ``--set KEY=VALUE`` (repeatable), shared by every command that loads a spec.
_overrides_option = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a spec field, e.g. --set mechanism.beta=0.1 (repeatable).",
)


@app.command("cases")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def cases_cmd(as_json: bool) -> None:
    """List built-in cases (pandapower names) and the case files shipped in data/."""
    from fpamm_opt.network import list_cases

    cases = list_cases()
    if as_json:
        click.echo(json.dumps(cases, indent=2))
        return
    click.echo("pandapower cases (offline, built in):")
    for name in cases["pandapower"]:
        click.echo(f"  {name}")
    click.echo("shipped files (data/):")
    for name in cases["files"] or ["  (none)"]:
        click.echo(f"  {name}")
    click.echo("Any MATPOWER .m file or pandapower .json file path also works as CASE, and")
    click.echo(
        "simbench:<grid code> (optional extra simbench), e.g. simbench:1-EHV-mixed--0-no_sw."
    )


@app.command("dcopf")
@click.argument("case")
@click.option(
    "--formulation", type=click.Choice(["btheta", "ptdf"]), default="btheta", show_default=True
)
@click.option(
    "--convention",
    type=click.Choice(["matpower", "powermodels"]),
    default="matpower",
    show_default=True,
)
@click.option("--solver", default="highs", show_default=True, help="Any Pyomo solver name.")
@click.option(
    "--ratings",
    type=click.Choice(["case", "auto", "derived"]),
    default="case",
    show_default=True,
    help="Branch ratings: the case's, or derived from a base flow.",
)
@click.option(
    "--engine",
    type=click.Choice(["auto", "highs", "pyomo"]),
    default="auto",
    show_default=True,
    help="auto: the highspy fast path for HiGHS (lazy PTDF rows), Pyomo otherwise.",
)
@click.option(
    "--time-limit",
    "time_limit_s",
    type=float,
    default=None,
    help="Seconds per solve (default: 10 s per 1000 buses, at least 10 s).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@handle_errors
def dcopf_cmd(
    case: str,
    formulation: str,
    convention: str,
    solver: str,
    ratings: str,
    engine: str,
    time_limit_s: float | None,
    as_json: bool,
) -> None:
    """One least-cost DC-OPF of CASE (no load shedding, the case's own costs)."""
    import warnings

    from fpamm_opt.network import NetworkMappingWarning, load_network
    from fpamm_opt.problem import default_time_limit_s, explain_infeasible, solve_dcopf
    from fpamm_opt.solvers import SolverSpec, require_solver

    require_solver(solver)
    t_load = time.perf_counter()
    with warnings.catch_warnings():
        # Printed below from the network's own record (also when the load was cached).
        warnings.simplefilter("ignore", NetworkMappingWarning)
        net = load_network(case, convention=convention, ratings=ratings)
    load_s = time.perf_counter() - t_load
    if net.mapping_warning:
        click.echo(f"warning: {net.mapping_warning}", err=True)
    limit = default_time_limit_s(net) if time_limit_s is None else float(time_limit_s)
    spec = SolverSpec(name=solver, time_limit_s=limit)
    t0 = time.perf_counter()
    res = solve_dcopf(net, formulation, spec, engine=engine)
    reason = None
    if res.status == "time_limit":
        reason = f"the solver stopped at its time limit of {limit:g} s: raise --time-limit"
    elif res.status != "optimal":
        reason = explain_infeasible(net, spec)
    wall = time.perf_counter() - t0
    out = {
        "case": net.name,
        "objective": res.objective,
        "status": res.status,
        "termination": res.termination,
        "solver": solver,
        "formulation": formulation,
        "convention": convention,
        "ratings": net.ratings.describe(),
        "n_bus": net.n_bus,
        "n_branch": net.n_branch,
        "n_gen": net.n_gen,
        "demand_mw": float(net.node_demand_mw.sum()),
        "engine": res.engine,
        "time_limit_s": limit,
        "load_s": load_s,
        "build_s": res.build_s,
        "solve_s": res.solve_s,
        "wall_s": wall,
        "message": res.message,
        "reason": reason,
        "elements": [e.as_dict() for e in net.elements],
        "mapping_warning": net.mapping_warning or None,
    }
    if as_json:
        click.echo(json.dumps(out))
        return
    for k, v in out.items():
        if k in ("elements", "mapping_warning") or (k == "reason" and v is None):
            continue
        click.echo(f"{k:12s} {v}")
    for e in net.elements:
        click.echo(f"{'element':12s} {e.count} {e.kind}: {e.became}")


def _default_out(spec_path: str, policy: str, seed: int | None) -> Path:
    stem = Path(spec_path).stem
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stem}-{policy}-s{seed if seed is not None else 'spec'}-{stamp}"


@app.command("run")
@click.argument("spec_path", metavar="SPEC")
@click.option("--out", "out_dir", type=click.Path(), help="Run directory to create.")
@click.option(
    "--policy",
    type=click.Choice(["fpamm", "equal", "lmp"]),
    default=None,
    help="Allocation policy (default: the spec's, fpamm).",
)
@click.option("--seed", type=int, default=None, help="Scenario and priority seed.")
@click.option("--intervals", "-T", type=int, default=None, help="Number of intervals.")
@_overrides_option
@click.option("--overwrite", is_flag=True, help="Replace an existing run directory.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a tty).")
@handle_errors
def run_cmd(
    spec_path: str,
    out_dir: str | None,
    policy: str | None,
    seed: int | None,
    intervals: int | None,
    overrides: tuple[str, ...],
    overwrite: bool,
    progress: bool | None,
) -> None:
    """Run one simulation of SPEC and write a run directory."""
    from fpamm_opt.sim.run import resolve_run_spec, run
    from fpamm_opt.spec import load_spec

    spec = resolve_run_spec(load_spec(spec_path, overrides), policy, seed, intervals)
    out = Path(out_dir) if out_dir else _default_out(spec_path, str(spec.run.policy), seed)
    if out.exists() and not overwrite:
        raise InputError(f"run directory {str(out)!r} already exists (use --overwrite)")
    res = run(spec, out, progress=progress, overwrite=overwrite)
    m = res.manifest
    t = m.get("timings", {})
    sm = m.get("summary", {})
    click.echo(f"run directory: {res.run_dir}")
    click.echo(
        f"{sm.get('intervals')} intervals, {sm.get('scarce')} scarce, "
        f"{sm.get('n_retries', 0)} retries; loop {t.get('loop_s', 0):.1f} s "
        f"({t.get('per_interval_ms', 0):.2f} ms/interval, solver {t.get('solver_s', 0):.1f} s)"
    )


class ColdSample(click.ParamType):
    """``--cold-sample``: a count of intervals (``>= 0``), or ``all`` (None: every one)."""

    name = "N|all"

    def get_metavar(self, param: Any, ctx: Any = None) -> str:
        return "[N|all]"

    def convert(self, value: Any, param: Any, ctx: Any) -> int | None:
        if value is None or isinstance(value, int):
            return value
        text = str(value).strip().lower()
        if text == "all":
            return None
        try:
            n = int(text)
        except ValueError:
            self.fail(f"expected a whole number or 'all', got {value!r}", param, ctx)
        if n < 0:
            self.fail(f"expected a number >= 0 or 'all', got {n}", param, ctx)
        return n


@app.command("ac")
@click.argument("run_dir", metavar="RUN", type=click.Path(exists=True, file_okay=False))
@click.option("--sample", "-n", type=int, default=20, show_default=True, help="Intervals to check.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the draw.")
@click.option("--f-hz", type=float, default=50.0, show_default=True, help="Network frequency.")
@click.option(
    "--strict",
    is_flag=True,
    help="Exit 3 when an interval does not converge or leaves 0.9-1.1 p.u. or 100% loading.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@handle_errors
def ac_cmd(run_dir: str, sample: int, seed: int, f_hz: float, strict: bool, as_json: bool) -> None:
    """AC power flow (pandapower) of N sampled executed intervals of RUN.

    A realism indicator beside `fpamm verify`, not a theorem: the stored dispatch and served
    loads (reactive demand at each load's own power factor) go into pandapower's AC power
    flow; each interval reports convergence, the bus voltage range and the largest branch
    loading. Exit code 0 unless --strict.
    """
    from fpamm_opt.accheck import VM_RANGE_PU, ac_check_run

    rep = ac_check_run(run_dir, sample=sample, seed=seed, f_hz=f_hz)
    sm = rep.summary()
    if as_json:
        click.echo(json.dumps(rep.as_dict()))
    else:
        click.echo(f"AC check of {run_dir} ({rep.case}): {sm['sampled']} sampled intervals")
        click.echo(f"{'t':>7s} {'converged':>9s} {'vm_min':>7s} {'vm_max':>7s} {'loading%':>9s}")
        for r in rep.results:
            if not r.converged:
                click.echo(f"{r.t:7d} {'NO':>9s}  {r.message}")
                continue
            ld = "-" if r.max_loading_percent is None else f"{r.max_loading_percent:9.1f}"
            click.echo(
                f"{r.t:7d} {'yes':>9s} {r.vm_min_pu:7.3f} {r.vm_max_pu:7.3f} {ld:>9s}"
                f"{'' if r.in_range else '  out of range'}"
            )
        rate = sm["convergence_rate"]

        def fmt(v: float | None, spec: str) -> str:
            return "-" if v is None else format(v, spec)

        click.echo(
            f"converged {sm['converged']}/{sm['sampled']} ({100 * (rate or 0):.0f}%); "
            f"within {VM_RANGE_PU[0]}-{VM_RANGE_PU[1]} p.u. and 100% loading: {sm['in_range']}; "
            f"voltage {fmt(sm['vm_min_pu'], '.3f')}-{fmt(sm['vm_max_pu'], '.3f')} p.u.; "
            f"largest loading {fmt(sm['max_loading_percent'], '.1f')}%"
        )
        click.echo("(a realism indicator, not a theorem: DC feasibility is what T3 guarantees)")
    if strict and rep.n_in_range < len(rep.results):
        sys.exit(EXIT_CHECK_FAILED)


@app.command("verify")
@click.argument("run_dir", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of checks.")
@click.option(
    "--cold-sample",
    type=ColdSample(),
    default=str(DEFAULT_COLD_SAMPLE),
    show_default=True,
    help="Intervals re-solved cold (independently of the run's solver), or 'all'.",
)
@handle_errors
def verify_cmd(run_dir: str, as_json: bool, cold_sample: int | None) -> None:
    """Theorem and feasibility checks on a run directory (exit 3 when one fails).

    RUN_DIR may also be a batch (or comparison) directory: every run is verified, and T5 is
    judged over the seeds of each spec and policy (T5-replicated).
    """
    from fpamm_opt.io.reader import is_run_dir
    from fpamm_opt.verify import verify_run
    from fpamm_opt.verify.batch import directory_kind, verify_batch

    if not is_run_dir(run_dir):
        if directory_kind(run_dir) is not None:
            t0 = time.perf_counter()
            batch = verify_batch(run_dir, cold_sample=cold_sample)
            if as_json:
                click.echo(json.dumps(batch.to_json(), indent=2))
            else:
                click.echo(batch.to_table())
                click.echo(f"({time.perf_counter() - t0:.1f} s)")
            if not batch.passed:
                sys.exit(EXIT_CHECK_FAILED)
            return
        from fpamm_opt.errors import RunDirectoryError

        raise RunDirectoryError(
            f"not a run directory: {run_dir} (no complete manifest.json; nor a batch or "
            "comparison directory)"
        )
    t0 = time.perf_counter()
    report = verify_run(run_dir, cold_sample=cold_sample)
    elapsed = time.perf_counter() - t0
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo(report.to_table())
        verdict = "all applicable checks passed" if report.passed else "CHECK FAILED"
        click.echo(f"{verdict} ({elapsed:.1f} s)")
    if not report.passed:
        sys.exit(EXIT_CHECK_FAILED)


@app.command("batch")
@click.argument("sweep_path", metavar="SWEEP")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(),
    help="Batch directory (default: runs/<sweep name>); rerun to resume.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=None,
    help="Local worker processes (default: one per CPU; 0: in this process).",
)
@click.option(
    "--scheduler",
    default=None,
    metavar="ADDRESS",
    help="Dask scheduler, e.g. tcp://host:8786 (instead of local workers).",
)
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a tty).")
@handle_errors
def batch_cmd(
    sweep_path: str,
    out_dir: str | None,
    workers: int | None,
    scheduler: str | None,
    progress: bool | None,
) -> None:
    """Run every point of the sweep SWEEP (resumable: complete runs are skipped)."""
    from fpamm_opt.sim.batch import BatchInterrupted, load_sweep, run_batch

    if workers is not None and scheduler:
        raise click.UsageError("--workers and --scheduler exclude each other")
    sweep = load_sweep(sweep_path)
    out = Path(out_dir) if out_dir else Path("runs") / Path(sweep_path).stem
    try:
        res = run_batch(sweep, out, workers=workers, scheduler=scheduler, progress=progress)
    except BatchInterrupted as exc:
        click.echo(f"interrupted: {exc.result.summary()}", err=True)
        sys.exit(130)
    click.echo(res.summary())
    if res.n_failed:
        click.echo(
            f"error: {res.n_failed} of {res.n_total} runs failed (see the error column "
            f"of {res.index_path})",
            err=True,
        )
        sys.exit(EXIT_ERROR)


def _compare_and_report(
    spec_path: str,
    out: Path,
    seed: int | None,
    intervals: int | None,
    overrides: tuple[str, ...],
    workers: int,
    report: bool,
    overwrite: bool,
) -> None:
    """Run a comparison, write its report and print the headline (compare and demo)."""
    from fpamm_opt.report.compare import headline_lines, run_comparison

    t0 = time.perf_counter()
    res = run_comparison(
        spec_path,
        out,
        seed=seed,
        intervals=intervals,
        overrides=overrides,
        workers=workers,
        overwrite=overwrite,
        progress=lambda msg: click.echo(f"  {msg}", err=True),
    )
    summary = None
    if report:
        from fpamm_opt.report.summary import write_report

        summary = write_report(out)
    click.echo("")
    for line in headline_lines(res.data):
        click.echo(line)
    failed = {p: v for p, v in res.failed_checks.items() if v}
    if failed:
        for p, names in failed.items():
            click.echo(
                f"checks failed for {p}: {', '.join(names)} "
                f"(details: fpamm verify {res.run_dir(p)})"
            )
    else:
        click.echo("every applicable verification check passed for every policy")
    click.echo("")
    for p in res.data["policies"]:
        click.echo(f"run directory ({p}): {res.run_dir(p)}")
    click.echo(f"comparison: {res.path}")
    if summary is not None:
        click.echo(f"report: {summary}")
    click.echo(f"({time.perf_counter() - t0:.1f} s)")


@app.command("compare")
@click.argument("spec_path", metavar="SPEC")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(),
    help="Comparison directory (default: runs/<spec stem>-compare); rerun to resume.",
)
@click.option("--seed", type=int, default=None, help="Scenario and priority seed (all runs).")
@click.option("--intervals", "-T", type=int, default=None, help="Number of intervals.")
@_overrides_option
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="Worker processes (0: in this process).",
)
@click.option("--no-report", is_flag=True, help="Do not write the figures and summary.md.")
@click.option("--overwrite", is_flag=True, help="Re-run even when complete runs exist.")
@handle_errors
def compare_cmd(
    spec_path: str,
    out_dir: str | None,
    seed: int | None,
    intervals: int | None,
    overrides: tuple[str, ...],
    workers: int,
    no_report: bool,
    overwrite: bool,
) -> None:
    """FP-AMM vs equal weights vs LMP on common random numbers (same spec and seed).

    Writes OUT/fpamm, OUT/equal, OUT/lmp, OUT/comparison.json and OUT/report/. Exits 0 once
    the comparison is written, also when a verification check failed (they are listed).
    """
    out = Path(out_dir) if out_dir else Path("runs") / f"{Path(spec_path).stem}-compare"
    _compare_and_report(
        spec_path, out, seed, intervals, overrides, workers, not no_report, overwrite
    )


@app.command("report")
@click.argument("directory", metavar="DIR", type=click.Path())
@click.option("--no-verify", is_flag=True, help="Run directory: skip the verification.")
@handle_errors
def report_cmd(directory: str, no_verify: bool) -> None:
    """Figures (PNG) and DIR/report/summary.md for a run, comparison or batch directory."""
    from fpamm_opt.report.summary import detect_kind, report_figures, write_report

    t0 = time.perf_counter()
    kind = detect_kind(directory)
    summary = write_report(directory, verify=not no_verify)
    click.echo(f"{kind.value} report: {summary}")
    for f in report_figures(summary):
        click.echo(f"  {f}")
    click.echo(f"({time.perf_counter() - t0:.1f} s)")


def _shipped_model(name: str) -> Path:
    """``models/<name>`` in the current directory, else the one next to the package."""
    local = Path("models") / name
    if local.is_file():
        return local
    return Path(__file__).resolve().parents[1] / "models" / name


@app.command("demo")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(),
    default="runs/demo",
    show_default=True,
    help="Comparison directory; rerun to reuse the finished runs.",
)
@click.option(
    "--intervals",
    "-T",
    type=int,
    default=None,
    help="Number of intervals (default: the spec's, 5000).",
)
@click.option(
    "--workers", type=click.IntRange(min=0), default=2, show_default=True, help="Worker processes."
)
@handle_errors
def demo_cmd(out_dir: str, intervals: int | None, workers: int) -> None:
    """The paper's headline experiment: compare models/ieee57.toml and write the report."""
    spec = _shipped_model("ieee57.toml")
    click.echo(f"demo: FP-AMM vs equal weights vs LMP on {spec} -> {out_dir}", err=True)
    _compare_and_report(str(spec), Path(out_dir), None, intervals, (), workers, True, False)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="fpamm")


if __name__ == "__main__":
    main()
