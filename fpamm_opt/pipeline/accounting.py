"""Solve accounting of one clear (:class:`SolveLog`) and path statistics of a run
(:class:`PathStats`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fpamm_opt.engine import LPSolution
from fpamm_opt.mechanism.types import ClearEvent, ClearEventKind


@dataclass
class SolveLog:
    """Solves, solver time and notes of one clear.

    Attributes
    ----------
    n_solves : int
        Engine solves (a KKT search counts as one).
    solve_s : float
        Their time (s).
    notes : list of str
        Recoveries worth recording in the interval's status.
    widened : list of str
        ``"<what>:<how>"`` for each solve whose fixed loads had to be widened.
    events : list of ClearEvent
        The typed twins of the recoveries (:meth:`event`, and ``WIDENED`` per widened solve).
    """

    n_solves: int = 0
    solve_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    widened: list[str] = field(default_factory=list)
    events: list[ClearEvent] = field(default_factory=list)

    def event(self, event: ClearEvent) -> None:
        """Record a tier's recovery: the typed event and its note in the status text."""
        self.events.append(event)
        self.notes.append(event.note)

    def add(self, n: int, secs: float) -> None:
        """Count ``n`` solves taking ``secs`` seconds."""
        self.n_solves += n
        self.solve_s += secs

    def record(self, what: str, sol: LPSolution, n: int, secs: float, how: str) -> None:
        """Count a fixed-load solve of ``what`` (``how``: its widening, ``""`` for none) and
        keep the solver's message."""
        if how:
            self.widened.append(f"{what}:{how}")
            self.events.append(ClearEvent(ClearEventKind.WIDENED, None, f"{what}:{how}"))
        if sol.message:
            self.notes.append(sol.message)
        self.add(n, secs)


def _zero_tier_paths() -> dict[str, int]:
    return {"cp": 0, "rule": 0, "skipped": 0}


def _zero_qp_paths() -> dict[str, int]:
    return {"kkt_warm": 0, "kkt_carry": 0, "kkt_lp": 0, "solver": 0}


@dataclass
class PathStats:
    """How an allocator's tiers were cleared, over its lifetime (the manifest's ``solve_paths``).

    Attributes
    ----------
    tier_paths : dict
        ``"cp"`` water-fill trial accepted (solved, or reused: see ``cp_reused``), ``"rule"``
        trial infeasible and the rule's solves ran, ``"skipped"`` no trial (failed earlier in
        the interval, or rationed).
    cp_reused : int
        Accepted trials of tiers served in full reused, without a solve, by a later clear of
        the interval under the same bounds.
    qp_paths : dict
        Within-tier QPs: ``"kkt_warm"``, ``"kkt_carry"``, ``"kkt_lp"`` certified by the KKT
        search from that guess; ``"solver"`` the solver's QP.
    qp_misses : dict
        Failed KKT searches by ``"<guess>:<reason>"``.
    kkt_iterations : int
        Active-set iterations of all KKT searches.
    anchored_tiers : int
        Tier clears that kept the tier's anchor from an earlier clear of the interval
        (:meth:`~fpamm_opt.pipeline.session.IntervalSession.anchor`).
    """

    tier_paths: dict[str, int] = field(default_factory=_zero_tier_paths)
    qp_paths: dict[str, int] = field(default_factory=_zero_qp_paths)
    qp_misses: dict[str, int] = field(default_factory=dict)
    kkt_iterations: int = 0
    anchored_tiers: int = 0
    cp_reused: int = 0

    def miss(self, reason: str) -> None:
        """Count one failed KKT search."""
        self.qp_misses[reason] = self.qp_misses.get(reason, 0) + 1

    def as_manifest(self) -> dict[str, Any]:
        """Plain copies for the manifest's ``solve_paths``."""
        return {
            "tier_paths": dict(self.tier_paths),
            "qp_paths": dict(self.qp_paths),
            "qp_misses": dict(self.qp_misses),
            "kkt_iterations": int(self.kkt_iterations),
            "anchored_tiers": int(self.anchored_tiers),
            "cp_reused": int(self.cp_reused),
        }
