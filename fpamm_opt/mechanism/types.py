"""Data passed between the mechanism and an allocator (see docs/design.md)."""

from __future__ import annotations

import enum
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


class SolveStatus(enum.StrEnum):
    """Solution status of one allocation, kept apart from the solver's termination word."""

    OPTIMAL = "optimal"
    INFEASIBLE = "infeasible"
    TIME_LIMIT = "time_limit"
    ERROR = "error"


class ClearEventKind(enum.StrEnum):
    """What a clear recorded besides its allocation (the ``kind`` of the ``events`` table)."""

    #: Tier ``tier``'s QP stopped (``detail``: the solver's word); the max-min LPs replaced it.
    QP_FALLBACK = "qp-fallback"
    #: Tier ``tier``'s max-min loop stopped at its round cap.
    ROUNDS_CAPPED = "rounds-capped"
    #: The *final* clear of the interval used the max-min LPs for tier ``tier``.
    FINAL_MAXMIN = "final-maxmin"
    #: Earlier tiers were held within a band in the solve named by ``detail``.
    WIDENED = "widened"
    #: A solve failed or left ``X(t)`` and its retry on the fallback model was kept
    #: (``detail``: ``<screen|clear|complete>:<reason>``).
    RETRIED = "retried"
    #: A solve failed, and its retry too (``detail``: ``<screen|clear|complete>:<reason>``).
    RETRY_FAILED = "retry-failed"
    #: A solve of the interval failed for good (``detail``: ``screen:<status>`` or
    #: ``clear:<status>``): the screen's estimate, or the last optimal clear, was kept.
    SOLVE_FAILED = "solve-failed"
    #: The fixed point restarted from ``x^0`` (``detail``: ``path-change``).
    FIXED_POINT_RESTARTED = "fixed-point-restarted"
    #: The audit of a held interval (its exact clearing) found no usable allocation.
    AUDIT_FAILED = "audit-failed"
    #: How the interval's final clear cleared tier ``tier`` (``detail``, :data:`TIER_PATHS`).
    TIER_PATH = "tier-path"


#: The paths of a ``TIER_PATH`` event: ``full`` the deliverable LP serves the tier in full;
#: ``cp`` the water-fill trial (copper-plate answer) checked feasible by one LP; ``kkt`` the
#: QP rule from its KKT conditions, certified; ``solver`` the solver's QP; ``maxmin`` the
#: max-min LPs (the max-min rule, or the QP rule's fallback).
TIER_PATHS: tuple[str, ...] = ("full", "cp", "kkt", "solver", "maxmin")


class IntervalStatus(enum.StrEnum):
    """The ``status`` of an interval (the ``intervals.status`` column since manifest
    version 4): a fixed vocabulary; what happened in detail is in the interval's events.

    Every status but ``FAILED`` means the stored allocation is a verified point of ``X(t)``
    (``FAILED`` is never stored: a run abandons the interval).
    """

    #: Cleared (or screened) and every solve of the interval was optimal.
    OPTIMAL = "optimal"
    #: The event trigger held the last execution's allocation (verified in ``X(t)``).
    HELD = "held"
    #: A solve was retried on the fallback model and the retry kept (``retried`` events).
    RETRIED = "retried"
    #: Some solve failed for good (``solve-failed`` / ``retry-failed`` events): the screen's
    #: point or the last optimal clear was kept, not necessarily the rule's fixed point.
    SOLVE_ERROR = "solve-error"
    #: No verified allocation.
    FAILED = "failed"

    @property
    def verified(self) -> bool:
        """The stored allocation is a verified point of ``X(t)``."""
        return self is not IntervalStatus.FAILED

    @classmethod
    def of_clearing(cls, ok: bool, events: Sequence[ClearEvent]) -> IntervalStatus:
        """The status of a cleared interval whose final dispatch is ``ok`` (or not)."""
        if not ok:
            return cls.FAILED
        kinds = {e.kind for e in events}
        if kinds & {ClearEventKind.SOLVE_FAILED, ClearEventKind.RETRY_FAILED}:
            return cls.SOLVE_ERROR
        return cls.RETRIED if ClearEventKind.RETRIED in kinds else cls.OPTIMAL


#: Statuses of verified allocations, as stored (the vocabulary of manifest version >= 4).
VERIFIED_STATUSES: frozenset[str] = frozenset(s.value for s in IntervalStatus if s.verified)


def status_verified(status: str) -> bool:
    """Whether a stored ``intervals.status`` says the allocation is a verified point of
    ``X(t)``: a word of :data:`VERIFIED_STATUSES`, or (manifest versions 1-3, ``;``-joined
    text) a status that starts with ``optimal``."""
    text = str(status)
    return text in VERIFIED_STATUSES or text.startswith("optimal")


def status_solve_error(status: str) -> bool:
    """Whether a stored ``intervals.status`` records a solve that failed for good:
    ``solve-error``, or (manifest versions 1-3) an ``error:`` or ``failed(`` note."""
    text = str(status)
    return text == IntervalStatus.SOLVE_ERROR.value or "error:" in text or "failed(" in text


@dataclass(frozen=True)
class ClearEvent:
    """One typed event of a clear: what the interval's ``status`` text also says.

    Allocators attach them to :attr:`Dispatch.events`; :func:`~fpamm_opt.mechanism.clearing.
    clear_interval` gathers those of the interval's clears (and adds ``FINAL_MAXMIN``), the run
    writes them as the ``events`` table, and the verifier reads them instead of parsing the
    status (which it still parses for runs written before the table existed).

    Attributes
    ----------
    kind : ClearEventKind
    tier : int or None
        The tier it concerns (None for ``WIDENED``).
    detail : str
        The solver's termination word (``QP_FALLBACK``) or the widened solve (``WIDENED``).
    """

    kind: ClearEventKind
    tier: int | None = None
    detail: str = ""

    @property
    def note(self) -> str:
        """The event in the status text's grammar (``WIDENED``: one solve; see
        :func:`widened_note` for the note of a clear)."""
        if self.kind is ClearEventKind.QP_FALLBACK:
            return qp_fallback_note(int(self.tier or 0), self.detail)
        if self.kind is ClearEventKind.ROUNDS_CAPPED:
            return rounds_capped_note(int(self.tier or 0))
        if self.kind is ClearEventKind.FINAL_MAXMIN:
            return final_rule_mark(int(self.tier or 0))
        if self.kind is ClearEventKind.WIDENED:
            return widened_note([self.detail])
        return _TEXT_OF[self.kind].format(self.detail)


#: The text of the other kinds in the ``;``-joined status of manifest versions 1-3.
_TEXT_OF: dict[ClearEventKind, str] = {
    ClearEventKind.RETRIED: "retried({})",
    ClearEventKind.RETRY_FAILED: "failed({})",
    ClearEventKind.SOLVE_FAILED: "error:{}",
    ClearEventKind.FIXED_POINT_RESTARTED: "fixed-point-restarted:{}",
    ClearEventKind.AUDIT_FAILED: "audit_failed{}",
    ClearEventKind.TIER_PATH: "path[{}]",
}


def tiers_with(events: Sequence[ClearEvent], kind: ClearEventKind) -> list[int]:
    """The tiers of the ``kind`` events, in their order."""
    return [int(e.tier) for e in events if e.kind is kind and e.tier is not None]


# Notes an allocator records in ``Dispatch.note`` and the mechanism copies into the interval's
# ``status`` (``;``-joined): the text twin of :class:`ClearEvent` (one grammar, written here
# only). The verifier parses them back only for runs without an ``events`` table.
def qp_fallback_note(tier: int, termination: str) -> str:
    """Tier ``tier``'s QP stopped (``termination``) and the max-min LPs replaced it."""
    return f"qp[{tier}]:{termination}->maxmin"


def rounds_capped_note(tier: int) -> str:
    """Tier ``tier``'s max-min loop stopped at its round cap."""
    return f"maxmin[{tier}]:rounds-capped"


def final_rule_mark(tier: int) -> str:
    """The *final* clear of the interval used the max-min LPs for tier ``tier``."""
    return f"final-rule[{tier}]=maxmin"


def widened_note(solves: Sequence[str]) -> str:
    """Earlier tiers were held within a band, not exactly, in the named solves
    (``"deliverable[1]:tight"``, ``"dispatch:band"``...), because the solver called the
    exact fix infeasible by its tolerances (informational; the audit fixes them exactly
    first and widens the same way)."""
    return "widened[" + ",".join(solves) + "]"


#: Patterns of the notes above, for runs written without an ``events`` table; group 1 is
#: the tier.
QP_FALLBACK_RE = re.compile(r"qp\[(\d+)\]:[^;]*->maxmin")
ROUNDS_CAPPED_RE = re.compile(r"maxmin\[(\d+)\]:rounds-capped")
FINAL_RULE_RE = re.compile(r"final-rule\[(\d+)\]=maxmin")


@dataclass(frozen=True)
class IntervalInput:
    """What the allocator needs to know about interval ``t``."""

    t: int
    demand_mw: np.ndarray  #: (n_node,) >= 0
    available_mw: np.ndarray  #: (n_gen,) in [0, pmax]


def _nan(k: int) -> np.ndarray:
    return np.full(k, np.nan)


@dataclass(frozen=True)
class Dispatch:
    """One point of the DC-OPF set ``X(t)`` chosen by an allocator."""

    status: SolveStatus
    served_mw: np.ndarray
    p_gen_mw: np.ndarray
    flow_mw: np.ndarray
    lmp: np.ndarray | None = None
    objective: float = float("nan")
    n_solves: int = 0
    solve_s: float = 0.0
    tier_level: np.ndarray = field(default_factory=lambda: _nan(0))
    tier_deliverable_mw: np.ndarray = field(default_factory=lambda: _nan(0))
    rounds: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    cap_active: bool = False
    note: str = ""
    #: Served loads fixed, dispatch not solved yet (``p_gen_mw``, ``flow_mw`` are NaN): an
    #: allocator with ``complete`` returns these from ``clear(..., dispatch=False)``.
    deferred: bool = False
    #: A tier's solve path (KKT search, the solver's QP, the max-min LPs) changed since an
    #: earlier clear of the same interval: the fixed point restarts so that every iterate it
    #: records comes from one operator (mechanism/clearing.py).
    path_switched: bool = False
    #: A deferred clear's ticket for ``complete`` (:func:`new_deferred_token`; None otherwise).
    deferred_token: int | None = None
    #: Typed events of the clear (the typed twin of the recoveries in ``note``).
    events: tuple[ClearEvent, ...] = ()
    #: ``(tier, path)`` for each tier the clear cleared, in its order (paths: :data:`TIER_PATHS`).
    tier_paths: tuple[tuple[int, str], ...] = ()

    @property
    def ok(self) -> bool:
        return self.status is SolveStatus.OPTIMAL


class Allocator(Protocol):
    """Chooses points of ``X(t)``; implemented by :mod:`fpamm_opt.problem` (and test doubles)."""

    n_node: int
    n_gen: int
    n_branch: int
    n_tier: int

    def screen(self, inp: IntervalInput) -> Dispatch:
        """Least-cost DC-OPF with one value of lost load for every node."""
        ...

    def clear(self, inp: IntervalInput, tier_order: Sequence[int], weights: np.ndarray) -> Dispatch:
        """Lexicographic tier clearing with the within-tier rule and weights ``w``."""
        ...


#: How many deferred clears an allocator keeps completable: the fixed point keeps its last
#: iterate, or the one before when the last clear failed.
DEFERRED_KEPT = 2


_DEFERRED_TOKENS = itertools.count(1)


def new_deferred_token() -> int:
    """A fresh ticket for a deferred clear (unique within the process)."""
    return next(_DEFERRED_TOKENS)


def keep_deferred(store: dict[int, Any], token: int, value: Any) -> dict[int, Any]:
    """``store`` with ``value`` filed under a deferred clear's ``deferred_token``, keeping
    the latest :data:`DEFERRED_KEPT` entries."""
    kept = list(store.items())[-(DEFERRED_KEPT - 1) :]
    return dict([*kept, (token, value)])


class DeferringAllocator(Allocator, Protocol):
    """An allocator that can leave the least-cost dispatch of a clear for later.

    The fixed point of the clearing operator only reads the served loads of its iterates;
    :func:`~fpamm_opt.mechanism.clearing.clear_interval` asks for ``dispatch=False`` and
    completes the one allocation it keeps.
    """

    def clear(  # type: ignore[override]
        self,
        inp: IntervalInput,
        tier_order: Sequence[int],
        weights: np.ndarray,
        dispatch: bool = True,
    ) -> Dispatch: ...

    def complete(self, inp: IntervalInput, disp: Dispatch) -> Dispatch:
        """The least-cost dispatch of a deferred clear's served loads (same note)."""
        ...
