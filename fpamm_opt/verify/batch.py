"""``fpamm verify BATCH_DIR``: every run of a batch, plus T5 over replications (seeds).

A batch directory (``fpamm batch``, :mod:`fpamm_opt.io.batch`) holds ``index.parquet`` and
``runs/<run_id>/``. Every complete run is verified as ``fpamm verify RUN_DIR`` would
(:func:`~fpamm_opt.verify.runner.verify_run`). Runs are then grouped by everything the sweep
varies except the seed (so by spec and policy), and each group of two or more runs of a policy
with the Fair Play priority rule gets the replicated T5 criterion
(:func:`~fpamm_opt.verify.rate.replicated_criterion`) on the runs' under-service gaps, with
the targets each run's own T5 contracted. When it fails, the nodes that fail it are examined
in every run where they were not yet (cold re-solves, :mod:`fpamm_opt.verify.evidence`),
worst first, until it passes or a node fails even with its evidence.

A comparison directory (``fpamm compare``: ``comparison.json`` and one run directory per
policy) is verified the same way; each policy has one seed there, so the replicated check
does not apply. In both, an FP-AMM run's fairness-spread check is judged against the
equal-weight run that differs from it only in the policy, when the directory has one.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fpamm_opt.errors import FpammError, RunDirectoryError
from fpamm_opt.io.batch import DONE_STATUSES, INDEX_NAME, read_index
from fpamm_opt.io.reader import COMPARISON_NAME, DirectoryKind, directory_kind
from fpamm_opt.tolerances import DEFAULT_COLD_SAMPLE
from fpamm_opt.verify.context import RunData, as_run
from fpamm_opt.verify.convergence import T5Analysis, analyse_t5, interval_hours
from fpamm_opt.verify.evidence import EvidenceSearch, NodeEvidence
from fpamm_opt.verify.rate import ALPHA, ReplicatedVerdict, replicated_criterion
from fpamm_opt.verify.result import CheckResult, VerificationReport, not_applicable
from fpamm_opt.verify.runner import verify_run
from fpamm_opt.verify.underservice import UnderService

#: Policies with the Fair Play priority rule (T5 is about them).
PRIORITY_POLICIES = ("fpamm", "equal")
#: Index columns that identify a run, not its spec.
_NOT_SPEC = frozenset({"run_id", "status", "path", "wall_s", "error", "spec_hash", "seed"})


class BatchCheckName(enum.StrEnum):
    """Checks that need several runs."""

    T5_REPLICATED = "T5-replicated"


STATEMENT_REPLICATED = (
    "Thm 5 over replications: for the runs (seeds) of one spec and policy, t times the mean "
    "squared under-service across runs stays bounded: every node's M_i(t) = mean_r "
    "(G_ir(t)⁺ / (σ_i √t))² <= m_i for t in [T/20, T] (G = (F* - F) C the gap to the "
    "contracted target, σ_i its noise scale pooled over the runs, m_i the level R "
    f"random-walk gaps exceed with probability {ALPHA:g} per group)"
)


@dataclass(frozen=True)
class RunEntry:
    """One run of the batch and its verification (``None`` when it could not be read)."""

    run_id: str
    path: Path
    policy: str
    seed: int | None
    group: str
    report: VerificationReport | None
    note: str = ""

    @property
    def passed(self) -> bool:
        return self.report is not None and self.report.passed


@dataclass(frozen=True)
class GroupResult:
    """The replicated T5 check of one group (spec and policy)."""

    group: str
    policy: str
    run_ids: tuple[str, ...]
    seeds: tuple[int | None, ...]
    check: CheckResult
    verdict: ReplicatedVerdict | None = None
    worst_node: int | None = None  #: node with the largest ``M / m`` (when applicable)


@dataclass(frozen=True)
class BatchReport:
    """All runs of a batch (or comparison) and the replicated checks of its groups."""

    root: Path
    kind: DirectoryKind
    runs: tuple[RunEntry, ...]
    groups: tuple[GroupResult, ...]
    not_verified: tuple[tuple[str, str], ...] = ()  #: ``(run_id, status)`` of incomplete runs

    @property
    def passed(self) -> bool:
        """Every verified run passed and every applicable group check passed."""
        runs_ok = all(r.passed for r in self.runs)
        return runs_ok and all(g.check.passed for g in self.groups if g.check.applicable)

    def __iter__(self) -> Iterator[RunEntry]:
        return iter(self.runs)

    def to_json(self) -> dict[str, Any]:
        """``{kind, directory, passed, runs: [...], groups: [...], not_verified: [...]}``."""
        return {
            "kind": str(self.kind),
            "directory": str(self.root),
            "passed": bool(self.passed),
            "runs": [
                {
                    "run_id": r.run_id,
                    "path": str(r.path),
                    "policy": r.policy,
                    "seed": r.seed,
                    "group": r.group,
                    "passed": bool(r.passed),
                    "note": r.note,
                    "checks": r.report.to_json() if r.report is not None else [],
                }
                for r in self.runs
            ],
            "groups": [
                {
                    "group": g.group,
                    "policy": g.policy,
                    "run_ids": list(g.run_ids),
                    "seeds": list(g.seeds),
                    "worst_node": g.worst_node,
                    "checks": [g.check.to_dict()],
                }
                for g in self.groups
            ],
            "not_verified": [{"run_id": i, "status": s} for i, s in self.not_verified],
        }

    def to_table(self) -> str:
        """Per-run verdicts, then the replicated checks per group, then their details."""
        head = ("run", "policy", "seed", "status", "failed checks", "T5 max Z / bound")
        rows = []
        for r in self.runs:
            if r.report is None:
                rows.append((r.run_id, r.policy, _seed(r.seed), "ERROR", r.note, "-"))
                continue
            t5 = _get(r.report, "T5-convergence")
            t5_text = "-" if t5 is None or not t5.applicable else _ratio(t5.measured, t5.bound)
            failed = ", ".join(str(c.name) for c in r.report.failed) or "-"
            status = "PASS" if r.report.passed else "FAIL"
            rows.append((r.run_id, r.policy, _seed(r.seed), status, failed, t5_text))
        lines = _columns(head, rows)
        lines.append("")
        ghead = ("group", "runs", "T5-replicated", "max M / bound", "worst node")
        grows = []
        for g in self.groups:
            grows.append(
                (
                    g.group,
                    str(len(g.run_ids)),
                    g.check.status,
                    _ratio(g.check.measured, g.check.bound),
                    "-" if g.worst_node is None else str(g.worst_node),
                )
            )
        lines += _columns(ghead, grows)
        lines.append("")
        for g in self.groups:
            lines.append(f"{g.check.name} [{g.check.status}] {g.group}: {g.check.statement}")
            if g.check.detail:
                lines.append(f"    {g.check.detail}")
        for r in self.runs:
            if r.report is None:
                continue
            for c in r.report.failed:
                lines.append(f"{r.run_id} {c.name} [FAIL]: {c.detail}")
        for run_id, status in self.not_verified:
            lines.append(f"{run_id}: not verified (status {status})")
        n_fail = sum(not r.passed for r in self.runs)
        g_fail = [g for g in self.groups if g.check.applicable and not g.check.passed]
        lines.append("")
        if self.passed:
            lines.append(
                f"all {len(self.runs)} runs and {sum(g.check.applicable for g in self.groups)} "
                "replicated checks passed"
            )
        else:
            lines.append(
                f"FAILED: {n_fail} of {len(self.runs)} runs, {len(g_fail)} replicated check(s)"
                + (": " + ", ".join(g.group for g in g_fail) if g_fail else "")
            )
        return "\n".join(lines)


def _get(report: VerificationReport, name: str) -> CheckResult | None:
    try:
        return report.get(name)
    except KeyError:
        return None


def _seed(seed: int | None) -> str:
    return "-" if seed is None else str(seed)


def _ratio(measured: float, bound: float) -> str:
    if not (math.isfinite(measured) and math.isfinite(bound)):
        return "-"
    return f"{measured:.3g} / {bound:.3g}"


def _columns(head: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[k]) for r in [head, *rows]) for k in range(len(head))]
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows]
    return out


@dataclass
class _Member:
    """One run of a group while its replicated check is computed."""

    run: RunData
    run_id: str
    seed: int | None
    analysis: T5Analysis
    evidence: dict[int, NodeEvidence] = field(default_factory=dict)
    contraction: np.ndarray | None = None
    search: EvidenceSearch | None = None

    @property
    def under(self) -> UnderService:
        base = self.analysis.plain
        if self.contraction is None:
            return self.analysis.contracted
        return base.contracted(self.contraction)

    def examine(self, col: int) -> NodeEvidence | None:
        """Evidence for node ``col`` in this run (gathered once)."""
        if col in self.evidence:
            return self.evidence[col]
        if self.search is None:
            self.search = EvidenceSearch(self.run, self.analysis.plain)
        ev = self.search.node(col)
        self.evidence[col] = ev
        if ev.network_limited:
            if self.contraction is None:
                self.contraction = self.analysis.contracted.contraction_mw.copy()
            self.contraction[:, col] = ev.contraction_mw
        return ev


def _group_key(row: Any, spec_cols: Sequence[str]) -> str:
    parts = [f"policy={row['policy']}"]
    parts += [f"{c}={row[c]}" for c in spec_cols if c != "policy"]
    return ", ".join(parts)


def _pair_key(row: Any, spec_cols: Sequence[str]) -> str:
    """Everything but the policy: an FP-AMM run and its equal-weight baseline share it."""
    return ", ".join(
        [f"seed={row['seed']}", *(f"{c}={row[c]}" for c in spec_cols if c != "policy")]
    )


#: One run to verify: id, directory, policy, seed, group key (T5), pair key (baseline).
_Entry = tuple[str, Path, str, int | None, str, str]


def _entries(path: Path, kind: DirectoryKind) -> tuple[list[_Entry], list[tuple[str, str]]]:
    """The runs of a batch (``kind`` BATCH) or comparison directory, and the
    ``(run_id, status)`` of the runs of a batch that are not done (not verified)."""
    entries: list[_Entry] = []
    not_verified: list[tuple[str, str]] = []
    if kind is DirectoryKind.BATCH:
        idx = read_index(path)
        spec_cols = [c for c in idx.columns if c not in _NOT_SPEC and c != "run.seed"]
        for _, row in idx.iterrows():
            run_id, status = str(row["run_id"]), str(row["status"])
            if status not in DONE_STATUSES or row["path"] is None:
                not_verified.append((run_id, status))
                continue
            s = row["seed"]
            entries.append(
                (
                    run_id,
                    path / str(row["path"]),
                    str(row["policy"]),
                    None if s is None or (isinstance(s, float) and math.isnan(s)) else int(s),
                    _group_key(row, spec_cols),
                    _pair_key(row, spec_cols),
                )
            )
    else:
        data = json.loads((path / COMPARISON_NAME).read_text())
        for policy, block in (data.get("policies") or {}).items():
            entries.append(
                (
                    str(policy),
                    path / str(block.get("run_dir", policy)),
                    str(policy),
                    data.get("seed"),
                    f"policy={policy}",
                    "",
                )
            )
    return entries, not_verified


def verify_batch(
    root: str | Path, cold_sample: int | None = DEFAULT_COLD_SAMPLE, seed: int = 0
) -> BatchReport:
    """Verify every run of a batch or comparison directory and the replicated T5 per group.

    Parameters
    ----------
    root : path
        A batch directory (``index.parquet``) or a comparison directory (``comparison.json``).
    cold_sample : int or None
        Intervals re-solved cold per run (T3); None for every executed interval.
    seed : int
        Seed of the cold-resolve samples and of the memory perturbations (T1).

    Raises
    ------
    RunDirectoryError
        When ``root`` is neither.
    """
    path = Path(root)
    kind = directory_kind(path)
    if kind not in (DirectoryKind.BATCH, DirectoryKind.COMPARISON):
        raise RunDirectoryError(
            f"not a run, batch or comparison directory: {path} "
            f"(no manifest.json, {INDEX_NAME} or {COMPARISON_NAME})"
        )
    entries, not_verified = _entries(path, kind)
    runs: list[RunEntry] = []
    members: dict[str, list[_Member]] = {}
    policies: dict[str, str] = {}
    baselines = {pair: p for _, p, policy, _, _, pair in entries if policy == "equal"}
    for run_id, run_path, policy, run_seed, group, pair in entries:
        base = baselines.get(pair) if policy == "fpamm" else None
        try:
            run = RunData.open(run_path)
            analysis = analyse_t5(run) if policy in PRIORITY_POLICIES else None
            report = verify_run(run, cold_sample=cold_sample, seed=seed, baseline=base, t5=analysis)
        except (FpammError, KeyError, ValueError, OSError) as exc:
            runs.append(RunEntry(run_id, run_path, policy, run_seed, group, None, str(exc)))
            continue
        runs.append(RunEntry(run_id, run_path, policy, run_seed, group, report))
        policies[group] = policy
        if analysis is not None:
            members.setdefault(group, []).append(_Member(run, run_id, run_seed, analysis))
        else:
            members.setdefault(group, [])
    groups = []
    for group, mem in members.items():
        done = [r for r in runs if r.group == group and r.report is not None]
        ids = tuple(r.run_id for r in done)
        groups.append(_replicated(group, policies[group], mem, ids, tuple(r.seed for r in done)))
    return BatchReport(path, kind, tuple(runs), tuple(groups), tuple(not_verified))


def check_replicated(
    runs: Sequence[RunData | str | Path],
    analyses: Sequence[T5Analysis] | None = None,
    group: str = "",
    policy: str = "fpamm",
    run_ids: Sequence[str] | None = None,
    seeds: Sequence[int | None] | None = None,
) -> GroupResult:
    """The replicated T5 check on the runs (seeds) of one spec and policy.

    Parameters
    ----------
    runs : sequence of RunData or path
    analyses : sequence of T5Analysis, optional
        Each run's :func:`analyse_t5` (computed when not given).
    group, policy, run_ids, seeds
        Labels of the group and its runs.
    """
    data = [as_run(r) for r in runs]
    ids = tuple(run_ids) if run_ids is not None else tuple(str(r.path) for r in data)
    sd = tuple(seeds) if seeds is not None else tuple(None for _ in data)
    if policy not in PRIORITY_POLICIES:
        members: list[_Member] = []
    else:
        an = list(analyses) if analyses is not None else [analyse_t5(r) for r in data]
        members = [_Member(r, i, s, a) for r, i, s, a in zip(data, ids, sd, an)]
    return _replicated(group, policy, members, ids, sd)


def _replicated(
    group: str,
    policy: str,
    members: list[_Member],
    ids: tuple[str, ...],
    seeds: tuple[int | None, ...],
) -> GroupResult:
    """The replicated T5 check of one group (module docstring)."""
    name = BatchCheckName.T5_REPLICATED
    if policy not in PRIORITY_POLICIES:
        why = f"policy {policy!r} has no Fair Play priority rule"
        return GroupResult(
            group, policy, ids, seeds, not_applicable(name, STATEMENT_REPLICATED, why)
        )
    if len(members) < 2:
        why = f"{len(members)} run(s) of this spec and policy: replications need two or more seeds"
        return GroupResult(
            group, policy, ids, seeds, not_applicable(name, STATEMENT_REPLICATED, why)
        )
    nodes = members[0].analysis.plain.node
    if any(not np.array_equal(m.analysis.plain.node, nodes) for m in members):
        why = "the runs do not share one node set"
        return GroupResult(
            group, policy, ids, seeds, not_applicable(name, STATEMENT_REPLICATED, why)
        )

    def judge() -> ReplicatedVerdict:
        us = [m.under for m in members]
        return replicated_criterion(
            [u.gap_mw for u in us],
            [u.cuts for u in us],
            [u.tol_mw for u in us],
            [u.error for u in us],
        )

    verdict = judge()
    examined: list[int] = []
    note = ""
    while verdict.applicable and not verdict.passed:
        fails = np.flatnonzero(verdict.m_max > verdict.thresholds)
        fails = fails[np.argsort(-(verdict.m_max / verdict.thresholds)[fails], kind="stable")]
        todo = [int(c) for c in fails if int(c) not in examined]
        if not todo:
            break
        col = todo[0]
        examined.append(col)
        try:
            for m in members:
                m.examine(col)
        except (FpammError, KeyError, ValueError) as exc:
            note = f"no re-solves possible ({exc})"
            break
        verdict = judge()
        if verdict.m_max[col] > verdict.thresholds[col]:
            break  # fails even with its evidence: the verdict is FAIL
    check = _group_check(verdict, members, examined, note)
    worst = int(nodes[verdict.node]) if verdict.applicable and verdict.node >= 0 else None
    return GroupResult(group, policy, ids, seeds, check, verdict, worst)


def _tier_text(members: list[_Member], col: int) -> str:
    tiers = {int(m.analysis.plain.tier[col]) for m in members}
    return f" (tier {tiers.pop()})" if len(tiers) == 1 else " (its tier varies by seed)"


def _evidence_total(members: list[_Member], col: int) -> str:
    """The re-solves' findings for node ``col`` summed over the runs (MWh)."""
    short = contracted = reachable = 0.0
    seen = 0
    for m in members:
        hours = interval_hours(m.run)
        ev = m.evidence.get(col) or m.analysis.evidence.get(col)
        short += float(m.analysis.plain.shortfall_mw[:, col].sum()) * hours
        if ev is not None:
            seen += 1
            contracted += ev.contracted_mw * hours
            reachable += ev.reachable_mw * hours
    node = int(members[0].analysis.plain.node[col])
    return (
        f"node {node} over the {len(members)} runs: {short:.4g} MWh short of its tier's ratio; "
        f"re-solved in {seen} run(s): target contracted by {contracted:.4g} MWh (the network "
        f"could not deliver it without taking its tier's energy), {reachable:.4g} MWh it could "
        "have had at no cost to its tier"
    )


def _group_check(
    v: ReplicatedVerdict, members: list[_Member], examined: list[int], note: str
) -> CheckResult:
    name = BatchCheckName.T5_REPLICATED
    if not v.applicable:
        return not_applicable(name, STATEMENT_REPLICATED, v.reason)
    us0 = members[0].under
    node = int(us0.node[v.node])
    worst = (
        f"node {node}{_tier_text(members, v.node)}: max_t M = {v.statistic:.3g} at "
        f"t={int(us0.t[v.k])} (bound {v.threshold:.3g})"
    )
    profile = ", ".join(f"{t}: {val:.3g}" for t, val in v.t_mse)
    parts = [
        worst,
        f"{v.replications} runs, {v.n_nodes} nodes whose gap moves, {v.blocks} blocks pooled",
        f"t·MSE(t) of E across runs at t = {profile}",
    ]
    limited: dict[int, list[str]] = {}
    for m in members:
        evs = dict(m.analysis.evidence)
        evs.update(m.evidence)
        for ev in evs.values():
            if ev.network_limited:
                limited.setdefault(ev.node, []).append(m.run_id)
    if limited:
        parts.append(
            "targets contracted by re-solves (network-limited): "
            + "; ".join(f"node {k} in {len(v_)} run(s)" for k, v_ in sorted(limited.items()))
        )
    if examined:
        cols = ", ".join(str(int(us0.node[c])) for c in examined)
        solves = sum(e.solves for m in members for c, e in m.evidence.items() if c in examined)
        parts.append(
            f"re-solved for this check: node(s) {cols} in every run where its own T5 had not "
            f"examined them ({solves} cold LPs)"
        )
    if not v.passed:
        bad = np.flatnonzero(v.m_max > v.thresholds)
        parts.insert(
            0,
            "under-service does not fall like 1/√t across the runs at node(s) "
            + ", ".join(str(int(us0.node[c])) for c in bad),
        )
        for c in bad:
            parts.append(_evidence_total(members, int(c)))
    if note:
        parts.append(note)
    return CheckResult(
        name, STATEMENT_REPLICATED, v.statistic, v.threshold, v.passed, True, "; ".join(parts)
    )
