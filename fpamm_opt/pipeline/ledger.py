"""What one clear records tier by tier: :class:`ClearLedger`."""

from __future__ import annotations

import numpy as np

from fpamm_opt.engine import LPSolution
from fpamm_opt.mechanism.types import IntervalInput
from fpamm_opt.pipeline.accounting import SolveLog
from fpamm_opt.pipeline.bounds import LexBounds
from fpamm_opt.pipeline.session import IntervalSession
from fpamm_opt.pipeline.strategies import TierContext, TierOutcome


class ClearLedger:
    """The state of one clear: bounds, solve log and per-tier results.

    Parameters
    ----------
    inp : IntervalInput
    weights : (n_node,) array
        Fairness weights ``w`` (``v = 1/w``).
    n_tier : int

    Attributes
    ----------
    bounds : LexBounds
    log : SolveLog
    tol_mw : float
        Slack on a tier's energy, ``max(1e-6 Σ d, 1e-5)`` MW: well above LP feasibility
        tolerances, far below anything that matters.
    levels, deliver, rounds : (n_tier,) arrays
    cap : bool
        A cap ``u_i <= 1`` binds in some tier.
    switched : bool
        A tier's QP path changed since an earlier clear of the interval.
    last_mem : (n_node,) bool array
        The tier cleared last.
    point, final : LPSolution or None
        The last tier's own solve, and its accepted trial's LP (see :class:`TierOutcome`).
    paths : list of (tier, path)
        How each tier was cleared, in the clear's order.
    """

    def __init__(self, inp: IntervalInput, weights: np.ndarray, n_tier: int) -> None:
        self.inp = inp
        d = np.asarray(inp.demand_mw, dtype=float)
        self.w = np.asarray(weights, dtype=float)
        self.v = 1.0 / self.w
        self.tol_mw = max(1e-6 * float(d.sum()), 1e-5)
        self.avail_total = float(np.sum(np.asarray(inp.available_mw, dtype=float)))
        self.bounds = LexBounds(d)
        self.log = SolveLog()
        self.levels = np.full(n_tier, np.nan)
        self.deliver = np.full(n_tier, np.nan)
        self.rounds = np.zeros(n_tier, dtype=int)
        self.cap = False
        self.switched = False
        self.last_mem = np.zeros(d.size, dtype=bool)
        self.point: LPSolution | None = None
        self.final: LPSolution | None = None
        self.paths: list[tuple[int, str]] = []

    def tier(self, k: int, pos: int, mem: np.ndarray, session: IntervalSession) -> TierContext:
        """Open tier ``k`` (at ``pos`` in the order): its loads free in the bounds."""
        self.bounds.open(mem)
        opened = (self.bounds.lo.copy(), self.bounds.hi.copy())
        return TierContext(
            k, pos, mem, self.inp, self.bounds.d, self.w, self.v, self.tol_mw,
            self.avail_total, self.bounds, self.log, session, opened=opened,
        )  # fmt: skip

    def record(self, ctx: TierContext, out: TierOutcome) -> None:
        """Keep tier ``ctx.k``'s outcome."""
        k = ctx.k
        self.levels[k], self.deliver[k], self.rounds[k] = out.level, out.delivered, out.rounds
        self.cap |= out.capped
        self.switched |= ctx.switched
        self.last_mem, self.point, self.final = ctx.mem, out.point, out.final
        self.paths.append((k, out.path))
