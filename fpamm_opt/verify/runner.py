"""``verify_run``: every applicable check on one run directory (``fpamm verify``)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from fpamm_opt.errors import FpammError, InputError
from fpamm_opt.tolerances import DEFAULT_COLD_SAMPLE
from fpamm_opt.verify.context import RunContext, RunData, as_run
from fpamm_opt.verify.convergence import (
    STATEMENT_CONVERGENCE,
    STATEMENT_SPREAD,
    T5Analysis,
    check_convergence,
    check_fairness_spread,
)
from fpamm_opt.verify.deficit import STATEMENT_DEFICIT, check_deficit_replay
from fpamm_opt.verify.feasibility import (
    STATEMENT_COLD,
    STATEMENT_FEASIBILITY,
    check_cold_resolve,
    check_dc_feasibility,
)
from fpamm_opt.verify.fixed_point import (
    STATEMENT_BOUND,
    STATEMENT_FIXED_POINT,
    check_fixed_point,
    check_fixed_point_bound,
)
from fpamm_opt.verify.memory import (
    STATEMENT_CONTRACTION,
    STATEMENT_INVARIANCE,
    STATEMENT_UPDATE,
    check_memory_contraction,
    check_memory_invariance,
    check_memory_update,
)
from fpamm_opt.verify.result import CheckName, CheckResult, VerificationReport, not_applicable
from fpamm_opt.verify.tracking import STATEMENT_TRACKING, check_tracking

STATEMENTS: dict[CheckName, str] = {
    CheckName.T1_INVARIANCE: STATEMENT_INVARIANCE,
    CheckName.T1_UPDATE: STATEMENT_UPDATE,
    CheckName.T1_CONTRACTION: STATEMENT_CONTRACTION,
    CheckName.T2_FIXED_POINT: STATEMENT_FIXED_POINT,
    CheckName.T2_BOUND: STATEMENT_BOUND,
    CheckName.T3_FEASIBILITY: STATEMENT_FEASIBILITY,
    CheckName.T3_COLD_RESOLVE: STATEMENT_COLD,
    CheckName.T4_TRACKING: STATEMENT_TRACKING,
    CheckName.T5_CONVERGENCE: STATEMENT_CONVERGENCE,
    CheckName.DEFICIT_REPLAY: STATEMENT_DEFICIT,
    CheckName.FAIRNESS_SPREAD: STATEMENT_SPREAD,
}

#: Tables each check reads; a run that did not write one of them cannot be checked.
REQUIRED_TABLES: dict[CheckName, tuple[str, ...]] = {
    CheckName.T1_INVARIANCE: ("nodes",),
    CheckName.T1_UPDATE: ("nodes",),
    CheckName.T1_CONTRACTION: ("nodes",),
    CheckName.T2_FIXED_POINT: ("intervals", "iterations"),
    CheckName.T2_BOUND: ("intervals", "iterations"),
    CheckName.T3_FEASIBILITY: ("nodes", "generators", "branches"),
    CheckName.T3_COLD_RESOLVE: ("intervals", "nodes", "generators"),
    CheckName.T4_TRACKING: ("intervals", "nodes", "generators"),
    CheckName.T5_CONVERGENCE: ("nodes",),
    CheckName.DEFICIT_REPLAY: ("nodes",),
    CheckName.FAIRNESS_SPREAD: ("nodes",),
}

#: Checks run whatever the manifest's ``checks`` list says: the informational spread, and the
#: deficit replay (which says itself when a run recorded no deficit).
_ALWAYS = (CheckName.FAIRNESS_SPREAD, CheckName.DEFICIT_REPLAY)

#: Policies that use the Fair Play priority rule (Thm 5 is about them).
_PRIORITY_POLICIES = ("fpamm", "equal")


def select_checks(requested: Iterable[str], strict: bool = True) -> tuple[CheckName, ...]:
    """Check names matching ``requested`` entries: a full name or a prefix such as ``"T1"``.

    Parameters
    ----------
    requested : iterable of str
        Names or prefixes.
    strict : bool
        Raise on an entry that matches no check (otherwise it is ignored).

    Raises
    ------
    InputError
        When ``strict`` and an entry matches no check.
    """
    out: list[CheckName] = []
    for entry in requested:
        e = str(entry).strip()
        hits = [c for c in CheckName if c.value == e or c.value.startswith(e + "-")]
        if not hits and strict:
            known = ", ".join(c.value for c in CheckName)
            raise InputError(f"unknown check {e!r} (known: {known}; or a prefix such as T1)")
        out += [c for c in hits if c not in out]
    return tuple(c for c in CheckName if c in out)


def _reasons(ctx: RunContext) -> dict[CheckName, str]:
    """Checks that do not apply to a run, with the reason."""
    why: dict[CheckName, str] = {}
    if ctx.trigger_theta <= 0:
        why[CheckName.T4_TRACKING] = "trigger θ = 0 (every interval cleared)"
    if ctx.policy not in _PRIORITY_POLICIES:
        why[CheckName.T5_CONVERGENCE] = f"policy {ctx.policy!r} has no Fair Play priority rule"
    if ctx.checks is not None:
        wanted = select_checks(ctx.checks, strict=False)
        for c in CheckName:
            if c not in wanted and c not in _ALWAYS:
                why.setdefault(c, "not requested by the run (manifest checks)")
    return why


def applicable_checks(run: Mapping[str, Any] | RunContext) -> tuple[CheckName, ...]:
    """The checks that apply to a run: the one rule, used by the verifier and the run loop.

    All checks, except T4 when the trigger threshold is 0 and T5 for a policy without the
    Fair Play priority rule (``lmp``); a ``checks`` list in the manifest (names or prefixes)
    further restricts the theorem checks (the informational fairness spread and the deficit
    replay are always reported). The run loop asks with the :class:`RunContext` of the run it
    starts and records the answer as the manifest's ``checks``.

    Parameters
    ----------
    run : mapping or RunContext
        A run's manifest, or the fields the rule reads.
    """
    ctx = run if isinstance(run, RunContext) else RunContext.from_manifest(run)
    why = _reasons(ctx)
    return tuple(c for c in CheckName if c not in why)


def _runner(
    name: CheckName,
    cold_sample: int | None,
    seed: int,
    baseline: RunData | None,
    t5: T5Analysis | None = None,
) -> Callable[[RunData], CheckResult]:
    table: dict[CheckName, Callable[[RunData], CheckResult]] = {
        CheckName.T1_INVARIANCE: check_memory_invariance,
        CheckName.T1_UPDATE: check_memory_update,
        CheckName.T1_CONTRACTION: lambda r: check_memory_contraction(r, seed=seed),
        CheckName.T2_FIXED_POINT: check_fixed_point,
        CheckName.T2_BOUND: check_fixed_point_bound,
        CheckName.T3_FEASIBILITY: check_dc_feasibility,
        CheckName.T3_COLD_RESOLVE: lambda r: check_cold_resolve(r, sample=cold_sample, seed=seed),
        CheckName.T4_TRACKING: check_tracking,
        CheckName.T5_CONVERGENCE: lambda r: check_convergence(r, analysis=t5),
        CheckName.DEFICIT_REPLAY: check_deficit_replay,
        CheckName.FAIRNESS_SPREAD: lambda r: check_fairness_spread(r, baseline=baseline),
    }
    return table[name]


def run_check(
    name: CheckName,
    run: RunData,
    cold_sample: int | None = DEFAULT_COLD_SAMPLE,
    seed: int = 0,
    baseline: RunData | None = None,
    t5: T5Analysis | None = None,
) -> CheckResult:
    """Run one check (``t5``: a precomputed :func:`analyse_t5` of ``run`` for T5).

    A check whose tables the run did not write is not applicable; a check that cannot run for
    another reason (a missing column, an unreadable table) fails and says why.
    """
    missing = [t for t in REQUIRED_TABLES[name] if not run.has(t)]
    if missing:
        return not_applicable(
            name, STATEMENTS[name], f"the run did not write the {', '.join(missing)} table(s)"
        )
    try:
        return _runner(name, cold_sample, seed, baseline, t5)(run)
    except (FpammError, KeyError, ValueError) as exc:
        msg = str(exc) or type(exc).__name__
        return CheckResult(
            name, STATEMENTS[name], math.nan, math.nan, False, True, f"could not run: {msg}"
        )


def verify_run(
    run_dir: str | Path | RunData,
    checks: Iterable[str] | None = None,
    cold_sample: int | None = DEFAULT_COLD_SAMPLE,
    seed: int = 0,
    baseline: str | Path | RunData | None = None,
    t5: T5Analysis | None = None,
) -> VerificationReport:
    """Run the theorem and feasibility checks on a run directory.

    Parameters
    ----------
    run_dir : path or RunData
        A complete run directory.
    checks : iterable of str, optional
        Names or prefixes (``"T1"``) of the checks to run; by default every check, the ones
        that do not apply (see :func:`applicable_checks`) reported as not applicable.
    cold_sample : int or None
        Number of intervals re-solved cold (T3); None re-solves every executed one.
    seed : int
        Seed of the cold-resolve sample and of the memory perturbations (T1).
    baseline : path or RunData, optional
        Equal-weight run to compare the fairness spread with.
    t5 : T5Analysis, optional
        A precomputed :func:`~fpamm_opt.verify.convergence.analyse_t5` of the run (the
        batch verifier's, reused so the re-solves run once).

    Returns
    -------
    VerificationReport
        ``passed`` is true when every applicable check passed.

    Raises
    ------
    RunDirectoryError
        When ``run_dir`` is not a readable run directory.
    """
    run = as_run(run_dir)
    base = None if baseline is None else as_run(baseline)
    if checks is not None:
        names = select_checks(checks)
        why: dict[CheckName, str] = {}
    else:
        names = tuple(CheckName)
        why = _reasons(run.context)
    results = []
    for name in names:
        if name in why:
            results.append(not_applicable(name, STATEMENTS[name], why[name]))
        else:
            results.append(run_check(name, run, cold_sample, seed, base, t5))
    return VerificationReport(checks=tuple(results), run_dir=run.path)
