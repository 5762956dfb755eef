"""What lives for one interval: :class:`IntervalSession`."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fpamm_opt.engine import LPSolution
from fpamm_opt.mechanism.tierqp import ActiveSet
from fpamm_opt.mechanism.types import IntervalInput, keep_deferred

#: A tier's place in one clear: ``(tier, position in the tier order)``.
TierKey = tuple[int, int]


@dataclass(frozen=True)
class DeferredClear:
    """What :meth:`~fpamm_opt.problem.AllocationProblem.complete` needs of a deferred clear:
    its served-load bounds, the tier cleared last and that tier's own solve (or None)."""

    lo: np.ndarray
    hi: np.ndarray
    last_mem: np.ndarray
    point: LPSolution | None


@dataclass(frozen=True)
class TierAnchor:
    """A tier's answer in an earlier clear of the interval, with the served-load bounds it
    was cleared under (earlier tiers fixed, the tier free, later tiers at 0)."""

    lo: np.ndarray
    hi: np.ndarray
    x: np.ndarray
    point: LPSolution | None


@dataclass
class IntervalSession:
    """Caches of one interval, opened by
    :meth:`~fpamm_opt.problem.AllocationProblem.begin_interval` and dropped with the next.

    The fixed point of :func:`~fpamm_opt.mechanism.clearing.clear_interval` clears one
    interval several times with nearby weights; these let later clears reuse earlier work.

    Attributes
    ----------
    inp : IntervalInput
        The interval (the session belongs to this very object).
    trial_failed : set of (tier, position)
        Water-fill trials found infeasible: a congested tier stays congested.
    qp_guess : dict (tier, position) -> ActiveSet
        The latest active set of the tier's KKT search or the solver's QP (warm starts).
    qp_path : dict (tier, position) -> str
        The tier's QP path, ``"kkt"``, ``"solver"`` or ``"maxmin"``, chosen at its first
        clear; it only ever moves right (docs/design.md, "One solve path per tier").
    deliverable : dict (tier, position) -> (lo, hi, LPSolution)
        Deliverable LPs with the bounds they ran under (the first tier's is the same in every
        clear).
    full_trial : dict (tier, position) -> (lo, hi, LPSolution)
        Accepted water-fill trials of tiers served in full, with the bounds they ran under:
        the same least-cost LP whatever the weights, so a later clear with the same bounds
        reuses its answer.
    widened : dict (tier, position) -> str
        The widest fixing of the earlier tiers (``"tight"``, ``"band"``) that a max-min
        round of the tier needed in this interval; its later rounds start there. Where the
        exact fix is infeasible by HiGHS's tolerances in some warm starts and not in others,
        clears that widened only sometimes differed by ~1e-2 MW, which the fixed point
        recorded as residuals that did not contract (IEEE-118, seed 0, t = 4771).
    deferred : dict token -> DeferredClear
        The latest :data:`~fpamm_opt.mechanism.types.DEFERRED_KEPT` deferred clears.
    anchors : dict (tier, position) -> TierAnchor
        Each tier's anchor answer (:meth:`anchor`).
    n_anchored : int
        Clears of a tier that kept its anchor.
    """

    inp: IntervalInput
    trial_failed: set[TierKey] = field(default_factory=set)
    qp_guess: dict[TierKey, ActiveSet] = field(default_factory=dict)
    qp_path: dict[TierKey, str] = field(default_factory=dict)
    deliverable: dict[TierKey, tuple[np.ndarray, np.ndarray, LPSolution]] = field(
        default_factory=dict
    )
    full_trial: dict[TierKey, tuple[np.ndarray, np.ndarray, LPSolution]] = field(
        default_factory=dict
    )
    widened: dict[TierKey, str] = field(default_factory=dict)
    deferred: dict[int, DeferredClear] = field(default_factory=dict)
    anchors: dict[TierKey, TierAnchor] = field(default_factory=dict)
    n_anchored: int = 0

    def seen_deliverable(self, key: TierKey, lo: np.ndarray, hi: np.ndarray) -> LPSolution | None:
        """The deliverable LP of ``key`` solved earlier under the same bounds, if any."""
        return _seen(self.deliverable, key, lo, hi)

    def seen_full_trial(self, key: TierKey, lo: np.ndarray, hi: np.ndarray) -> LPSolution | None:
        """The accepted full-service trial of ``key`` under the same bounds, if any."""
        return _seen(self.full_trial, key, lo, hi)

    def settle_path(self, key: TierKey, path: str, first: bool) -> bool:
        """Record the tier's QP path; True when it changed after the tier's first clear."""
        switched = not first and path != self.qp_path[key]
        self.qp_path[key] = path
        return switched

    def keep_deferred(self, token: int, clear: DeferredClear) -> None:
        """File a deferred clear under its token, keeping the latest ``DEFERRED_KEPT``."""
        self.deferred = keep_deferred(self.deferred, token, clear)

    def anchor(
        self,
        key: TierKey,
        mem: np.ndarray,
        opened: tuple[np.ndarray, np.ndarray],
        x: np.ndarray,
        point: LPSolution | None,
        tol_mw: float,
    ) -> tuple[np.ndarray, LPSolution | None]:
        """The tier's answer for this clear: its anchor from an earlier clear when that was
        cleared under the very same bounds ``opened`` and ``x`` is within ``tol_mw`` of it
        (L1 over the tier), else ``x`` (which becomes the anchor).

        The fixed point re-clears the interval with weights that differ less and less. A tier
        whose answer moves by less than the residual floor keeps the anchor, so the tiers
        after it are cleared against identical constraints: on congested networks a later
        tier's answer can move tens of MW for 1e-4 MW of an earlier tier's loads (IEEE-118
        seed 7 t=1370), numerical noise the fixed point would otherwise read as residual.
        The anchor is the rule's exact answer for the weights of the clear that set it, and
        the current exact answer is within ``tol_mw`` of it (docs/design.md, "Anchored tiers").
        """
        prev = self.anchors.get(key)
        if (
            prev is not None
            and np.array_equal(prev.lo, opened[0])
            and np.array_equal(prev.hi, opened[1])
            and float(np.abs(x[mem] - prev.x[mem]).sum()) <= tol_mw
        ):
            self.n_anchored += 1
            return prev.x.copy(), prev.point
        self.anchors[key] = TierAnchor(opened[0].copy(), opened[1].copy(), x.copy(), point)
        return x, point


def _seen(
    cache: dict[TierKey, tuple[np.ndarray, np.ndarray, LPSolution]],
    key: TierKey,
    lo: np.ndarray,
    hi: np.ndarray,
) -> LPSolution | None:
    """The solution cached under ``key`` when it ran under exactly ``lo``, ``hi``."""
    seen = cache.get(key)
    if seen is not None and np.array_equal(seen[0], lo) and np.array_equal(seen[1], hi):
        return seen[2]
    return None
