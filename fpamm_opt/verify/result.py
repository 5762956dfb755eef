"""Results of the theorem and feasibility checks: one :class:`CheckResult` per check.

A :class:`VerificationReport` collects them; ``passed`` is true when every *applicable* check
passed. A check that cannot apply (for example T4 when the event trigger is off) is reported
with ``applicable=False`` and ``passed=True`` (vacuously) and says why in ``detail``.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class CheckName(enum.StrEnum):
    """Stable names of the checks (the ``name`` field of ``fpamm verify --json``)."""

    T1_INVARIANCE = "T1-invariance"
    T1_UPDATE = "T1-update"
    T1_CONTRACTION = "T1-contraction"
    T2_FIXED_POINT = "T2-fixed-point"
    T2_BOUND = "T2-bound"
    T3_FEASIBILITY = "T3-feasibility"
    T3_COLD_RESOLVE = "T3-cold-resolve"
    T4_TRACKING = "T4-tracking"
    T5_CONVERGENCE = "T5-convergence"
    DEFICIT_REPLAY = "deficit-replay"
    FAIRNESS_SPREAD = "fairness-spread"


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one check.

    Attributes
    ----------
    name : str
        A :class:`CheckName` value.
    statement : str
        The property checked, in words.
    measured : float
        The measured quantity (``nan`` when it could not be measured).
    bound : float
        The bound the measured quantity is compared with (``nan`` when there is none).
    passed : bool
        Whether the property holds (``True`` when not applicable).
    applicable : bool
        Whether the check applies to this run.
    detail : str
        Where it was worst (interval, node) and, when failing, what failed, in plain words.
    """

    name: str
    statement: str
    measured: float
    bound: float
    passed: bool
    applicable: bool = True
    detail: str = ""

    @property
    def status(self) -> str:
        """``PASS``, ``FAIL`` or ``n/a``."""
        if not self.applicable:
            return "n/a"
        return "PASS" if self.passed else "FAIL"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping; non-finite numbers become ``None`` (JSON has no NaN)."""
        return {
            "name": str(self.name),
            "passed": bool(self.passed),
            "measured": _json_float(self.measured),
            "bound": _json_float(self.bound),
            "statement": self.statement,
            "applicable": bool(self.applicable),
            "detail": self.detail,
        }


def not_applicable(name: str, statement: str, why: str) -> CheckResult:
    """A vacuous result for a check that does not apply, saying why."""
    return CheckResult(
        name=name,
        statement=statement,
        measured=math.nan,
        bound=math.nan,
        passed=True,
        applicable=False,
        detail=f"not applicable: {why}",
    )


def _json_float(value: float) -> float | None:
    v = float(value)
    return v if math.isfinite(v) else None


def _fmt(value: float) -> str:
    v = float(value)
    if math.isnan(v):
        return "-"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.4g}"


@dataclass(frozen=True)
class VerificationReport:
    """All checks run on one run directory."""

    checks: tuple[CheckResult, ...]
    run_dir: Path | None = None

    @property
    def passed(self) -> bool:
        """True when every applicable check passed."""
        return all(c.passed for c in self.checks if c.applicable)

    @property
    def failed(self) -> tuple[CheckResult, ...]:
        """The applicable checks that failed."""
        return tuple(c for c in self.checks if c.applicable and not c.passed)

    def __iter__(self) -> Iterator[CheckResult]:
        return iter(self.checks)

    def __len__(self) -> int:
        return len(self.checks)

    def get(self, name: str) -> CheckResult:
        """The result of check ``name``; ``KeyError`` when it was not run."""
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_json(self) -> list[dict[str, Any]]:
        """List of ``{name, passed, measured, bound, statement, applicable, detail}``."""
        return [c.to_dict() for c in self.checks]

    def to_table(self) -> str:
        """A plain-text table, one check per line, details after the table."""
        header = ("check", "status", "measured", "bound")
        rows = [(str(c.name), c.status, _fmt(c.measured), _fmt(c.bound)) for c in self.checks]
        widths = [max(len(r[k]) for r in [header, *rows]) for k in range(len(header))]
        lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
        lines.append("  ".join("-" * w for w in widths))
        lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows]
        lines.append("")
        for c in self.checks:
            lines.append(f"{c.name} [{c.status}]: {c.statement}")
            if c.detail:
                lines.append(f"    {c.detail}")
        verdict = (
            "all applicable checks passed"
            if self.passed
            else ("FAILED: " + ", ".join(str(c.name) for c in self.failed))
        )
        lines.append("")
        lines.append(verdict)
        return "\n".join(lines)
