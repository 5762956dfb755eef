"""Per-interval clearing: screen, scarcity test, and the fixed-point clearing (Thm 2).

Role
----
:func:`clear_interval` is MECHANISM.md section 3 with the shipped operator of docs/design.md:

1. ``screen = allocator.screen(inp)`` (least cost, one VOLL). The interval is **scarce** iff the
   screen is optimal and sheds more than ``scarcity_tol * sum d``. A failed screen is treated
   as scarce (conservative) and recorded in ``status``.
2. Not scarce, or policy LMP: the screen is the allocation; no fixed point.
3. Scarce, EQUAL weights (policy EQUAL, or ``weight_form = EQUAL``): ``x^0 = A(1)``. The operator
   is constant, so its residual is identically 0: ``residuals = [0.0]`` is recorded **without**
   a second solve.
4. Scarce, FP-AMM: normalisers ``M_k`` frozen from ``s(t)`` (and ``delta+(t)``);
   ``x^0 = A(w(s(t), delta+(t)))``; ``x^{m+1} = A(w(s_gamma(x^m), delta_gamma(x^m)))`` until
   ``r_m = ||x^{m+1} - x^m||_1 <= tol sum d`` or ``m + 1 = m_max``. Which of the memory and
   the deficit the weights read is ``cfg.weight_source``
   (:class:`~fpamm_opt.mechanism.weights.WeightMap`).

Contraction bound and adaptive coupling
---------------------------------------
Call a tier **weighted** in a clearing when its deliverable energy ``Q_k`` is strictly between
0 and its demand ``D_k`` (by more than ``tol sum d``), or unknown (nan). Other tiers are fully
served or get nothing whatever the weights, so they cannot contribute to ``||Delta x||``.

*Allocation step.* With one max-min round per tier (copper-plate-like), no active cap
``u <= 1`` and the same served energy ``X_k`` of tier ``k`` in every clear (shortfall
``S_k = D_k - X_k``), tier ``k`` has ``u_i = lam_k v_i``, ``v = 1/w = epsilon + phi``,
``lam_k = S_k / <d, v>``, so ``Delta u_i = lam_k Delta v_i - u_i <d, Delta v> / <d, v>`` and,
with ``sum_i d_i u_i = S_k = lam_k <d, v>``,

    ``||Delta x_k||_1 = sum_{i in k} d_i |Delta u_i| <= 2 lam_k sum_{i in k} d_i |Delta v_i|``.

*Weight step.* The source enters only through a constant ``c_k`` (per unit coupling) with
``|Delta v_i| <= gamma c_k |Delta u'_i|`` for ``i`` in tier ``k``, ``u'`` the shortfall ratios
of the previous iterate (``d_i |Delta u'_i| = |Delta x'_i|``); ``clip`` is 1-Lipschitz:

- memory: ``s_gamma`` is ``gamma beta``-Lipschitz in ``u``, ``phi = clip(1 - s_gamma / M_k)``:
  ``c_k = beta / M_k`` (RAW: ``beta``);
- deficit: ``D_gamma,i(x) = D_i + gamma (r_k(x) d_i - x_i) dt`` with ``r_k(x) = X_k / D_k`` the
  same in both clears, so ``|Delta D_gamma,i| = gamma dt |Delta x_i|``; the positive part is
  1-Lipschitz and ``delta_gamma,i = D_gamma,i^+ / C_i`` with ``C_i = sum_{tau<=t} d_i dt`` (this
  interval included, so ``C_i >= d_i dt``), ``phi = clip(1 - delta_gamma / M^delta_k)``:
  ``|Delta v_i| <= gamma kappa_i |Delta u'_i| / M^delta_k``, ``kappa_i = d_i dt / C_i`` in
  ``(0, 1]`` (the interval's share of the node's requested energy; ``dt`` cancels), so
  ``c_k = max_{i in k} kappa_i / M^delta_k`` (RAW: ``M^delta_k = 1``). Without a fixed
  ``X_k``, ``|Delta r_k| <= ||Delta x'_k||_1 / D_k`` adds ``gamma dt d_i ||Delta x'_k||_1 /
  (C_i M^delta_k D_k)`` per node, which summed with the weights ``d_i`` doubles ``c_k``; the
  allocation step needs a fixed ``X_k`` anyway, and ``q_bound_applies`` checks it;
- both: ``max`` is 1-Lipschitz in each argument: ``c_k`` is the larger of the two.

Together, ``sum_{i in k} d_i |Delta v_i| <= gamma c_k ||Delta x'_k||_1`` and

    ``||Delta x_k||_1 <= 2 gamma lam_k c_k ||Delta x'_k||_1``,  ``q_bound = 2 gamma max_k lam_k c_k``

over weighted tiers, ``lam_k`` the largest level of tier ``k`` over the interval's clears. For
memory weights this is ``2 gamma beta rho``, ``rho = max_k lam_k / M_k``, the design's
``2 gamma beta lam / M_min`` made tier-wise (never larger). The coupling is

    ``gamma_t = min(gamma_max, q_target epsilon / (2 max_k c_k))``

over the tiers with a level in the first clear (memory: ``q_target epsilon M_t / (2 beta)``
with ``M_t`` the smallest normaliser of those tiers, computed in that form). Every recorded
level is ``max_i u_i w_i`` over uncapped nodes, so ``lam <= max w <= 1/epsilon`` whatever the
network does; hence ``q_bound <= q_target < 1`` in every interval whose later clears weight
no other tier than the first (always where the bound applies: its fixed ``Q`` fixes the
weighted tiers), a priori. (A first version
scaled ``gamma`` with the first iterate's level; on a congested network later iterates'
levels jumped and the recorded bound exceeded 1.) For the deficit, ``kappa_i`` is about
``1 / t``, so ``gamma_t`` grows with the history like ``q_target epsilon t M^delta / 2``
(about 0.002 after 300 intervals of IEEE-14): the deficit a node carries is set over many
intervals, and one interval's outcome moves its own weight little.

``q_hat`` is the largest ratio ``r_{m+1} / r_m`` over pairs with ``r_m > residual_floor sum d``
(nan if none). ``q_bound_applies`` requires, in every clear: ``rounds <= 1`` and a finite level
on every weighted tier, no ``cap_active`` (which allocators should report for weighted tiers
only), and ``Q`` and each tier's served energy constant across clears within ``tol sum d``.

Failures
--------
If a clear is not optimal the iteration stops and the last optimal dispatch (else the screen)
is returned; ``status`` says what failed. A non-optimal dispatch is never presented as optimal:
``ClearingResult.ok`` is ``dispatch.ok``.

``status`` is ``;``-joined: first the final dispatch's status (``optimal``), then
``error:screen:<status>`` / ``error:clear:<status>`` for failures, then the allocators' notes
(for instance a retry). A clean interval has ``status == "optimal"``. The notes gather every
clear of the fixed point; when the *final* clear itself replaced a tier's QP by the max-min
LPs, ``final-rule[k]=maxmin`` follows, so an auditor knows which rule produced the stored
allocation of tier ``k`` (without the token, the final clear used the run's own rule).
The same facts travel typed in ``ClearingResult.events``
(:class:`~fpamm_opt.mechanism.types.ClearEvent`: the allocators' events, then a
``FINAL_MAXMIN`` per tier): the marks are computed from the final dispatch's events, never
parsed from its note.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from fpamm_opt.mechanism.config import MechanismConfig, Policy, WeightForm, WeightSource
from fpamm_opt.mechanism.deficit import DeficitState
from fpamm_opt.mechanism.types import (
    Allocator,
    ClearEvent,
    ClearEventKind,
    Dispatch,
    IntervalInput,
    tiers_with,
)
from fpamm_opt.mechanism.weights import WeightMap

__all__ = ["ClearingResult", "clear_interval"]

#: A tier's solve path moves at most twice per interval (KKT search -> solver's QP -> max-min
#: LPs), so the fixed point restarts at most this many times per tier.
MAX_RESTARTS_PER_TIER = 2
#: Status note of an interval whose fixed point restarted after a path change.
RESTART_NOTE = "fixed-point-restarted:path-change"


@dataclass(frozen=True)
class ClearingResult:
    """Outcome of :func:`clear_interval` for one interval.

    Attributes
    ----------
    scarce : bool
        The screen shed load (or failed).
    dispatch : Dispatch
        The allocation to apply (optimal unless ``ok`` is false).
    screen : Dispatch
        The least-cost screen (also the LMP baseline's allocation).
    weights : (n_node,) array
        Weights of the final clearing; ``w(s(t))`` for a non-scarce FP-AMM interval
        (information only); ones for EQUAL and LMP.
    residuals : (n_iter,) array
        ``r_m = ||x^{m+1} - x^m||_1`` (MW); empty when no fixed point was run.
    q_hat, q_bound : float
        Measured and bounded contraction factors (nan when not applicable).
    q_bound_applies : bool
        Whether the assumptions of ``q_bound`` held in every clear of the interval.
    gamma : float
        Coupling used (nan when no fixed point, 0 for EQUAL weights).
    lambda_max : float
        Largest tier level on weighted tiers over the interval's clears (nan if none).
    n_solves : int
        Solves used (screen plus clears).
    solve_s : float
        Time inside the solves (s).
    status : str
        ``"optimal"`` when clean; see the module docstring.
    events : tuple of ClearEvent
        ``SOLVE_FAILED`` per failed solve and ``FIXED_POINT_RESTARTED``, the typed events of
        the interval's clears (deduplicated, in order), then a ``FINAL_MAXMIN`` per tier whose
        QP the final clear replaced by the max-min LPs: the typed twin of ``status``.
    deliverable_mw : float
        ``S`` of the AMM price: the screen's served total (estimate ``min(D, sum available)``
        when the screen failed, flagged by ``deliverable_estimated``).
    deliverable_estimated : bool
        ``deliverable_mw`` is the copper-plate estimate, not the screen.
    """

    scarce: bool
    dispatch: Dispatch
    screen: Dispatch
    weights: np.ndarray
    residuals: np.ndarray
    q_hat: float
    q_bound: float
    q_bound_applies: bool
    gamma: float
    lambda_max: float
    n_solves: int
    solve_s: float
    status: str
    deliverable_mw: float
    deliverable_estimated: bool = field(default=False)
    events: tuple[ClearEvent, ...] = ()

    @property
    def ok(self) -> bool:
        """The returned dispatch is optimal (usable)."""
        return self.dispatch.ok


def _measured_q(residuals: Sequence[float], floor_mw: float) -> float:
    ratios = [
        residuals[m + 1] / residuals[m]
        for m in range(len(residuals) - 1)
        if residuals[m] > floor_mw
    ]
    return float(max(ratios)) if ratios else float("nan")


class _Tracker:
    """Accumulates solve counts, notes and the per-tier quantities of the bound."""

    def __init__(self, tier_demand: np.ndarray, node_tier: np.ndarray, tol_mw: float) -> None:
        self.tier_demand = tier_demand
        self.node_tier = node_tier
        self.tol_mw = tol_mw
        k = tier_demand.size
        self.n_solves = 0
        self.solve_s = 0.0
        self.notes: list[str] = []
        self.events: list[ClearEvent] = []
        self.errors: list[str] = []
        self.lam_tier = np.full(k, np.nan)
        self.any_weighted = False
        self.structural_ok = True
        self.q_first: np.ndarray | None = None
        self.served_first: np.ndarray | None = None

    def _vec(self, a: np.ndarray, fill: float) -> np.ndarray:
        a = np.asarray(a, dtype=float)
        return a if a.shape == self.tier_demand.shape else np.full(self.tier_demand.size, fill)

    def account(self, disp: Dispatch) -> None:
        self.n_solves += int(disp.n_solves)
        self.solve_s += float(disp.solve_s)
        if disp.note and disp.note not in self.notes:
            self.notes.append(disp.note)
        self.events += [e for e in disp.events if e not in self.events]

    def weighted(self, disp: Dispatch) -> np.ndarray:
        q = self._vec(disp.tier_deliverable_mw, np.nan)
        with np.errstate(invalid="ignore"):
            inner = (q > self.tol_mw) & (q < self.tier_demand - self.tol_mw)
        return ~np.isfinite(q) | inner

    def record_clear(self, disp: Dispatch) -> np.ndarray:
        """Record one optimal clear; return its tier levels on weighted tiers (nan elsewhere)."""
        wt = self.weighted(disp)
        lam = np.where(wt, self._vec(disp.tier_level, np.nan), np.nan)
        self.any_weighted |= bool(wt.any())
        self.lam_tier = np.fmax(self.lam_tier, lam)
        rounds = self._vec(disp.rounds, np.inf)
        q = self._vec(disp.tier_deliverable_mw, np.nan)
        served = np.bincount(
            self.node_tier,
            weights=np.asarray(disp.served_mw, dtype=float),
            minlength=self.tier_demand.size,
        )
        if self.q_first is None or self.served_first is None:
            self.q_first, self.served_first = q, served
        same_q = bool(np.all(np.abs(q - self.q_first) <= self.tol_mw))
        same_served = bool(np.all(np.abs(served - self.served_first) <= self.tol_mw))
        finite_lam = bool(np.all(np.isfinite(lam[wt])))
        self.structural_ok &= (
            bool(np.all(rounds[wt] <= 1))
            and not disp.cap_active
            and same_q
            and same_served
            and finite_lam
        )
        return lam

    @staticmethod
    def final_marks(final: Dispatch) -> list[ClearEvent]:
        """``FINAL_MAXMIN`` for each tier whose QP the final clear replaced by max-min."""
        fell_back = tiers_with(final.events, ClearEventKind.QP_FALLBACK)
        return [ClearEvent(ClearEventKind.FINAL_MAXMIN, k) for k in fell_back]

    def status(self, final: Dispatch) -> str:
        marks = [e.note for e in self.final_marks(final)]
        return ";".join([str(final.status), *self.errors, *self.notes, *marks])

    def all_events(self, final: Dispatch) -> tuple[ClearEvent, ...]:
        """The interval's failed solves and restart, the events of every clear of the
        interval, then the final clear's marks and the path of each of its tiers."""
        failed = [
            ClearEvent(ClearEventKind.SOLVE_FAILED, None, e.removeprefix("error:"))
            for e in self.errors
        ]
        if RESTART_NOTE in self.notes:
            restart = RESTART_NOTE.partition(":")[2]
            failed.append(ClearEvent(ClearEventKind.FIXED_POINT_RESTARTED, None, restart))
        paths = [ClearEvent(ClearEventKind.TIER_PATH, k, path) for k, path in final.tier_paths]
        return (*failed, *self.events, *self.final_marks(final), *paths)


def _weighted_normaliser(lam: np.ndarray, m: np.ndarray) -> float:
    """Smallest normaliser ``M_k`` over tiers with a finite level (1.0 when there is none)."""
    ok = np.isfinite(lam)
    return float(np.min(m[ok])) if np.any(ok) else 1.0


def _rho(lam: np.ndarray, m: np.ndarray) -> float:
    ratio = lam / m
    return float(np.nanmax(ratio)) if np.any(np.isfinite(ratio)) else float("nan")


def _coupling(wmap: WeightMap, lam0: np.ndarray, cfg: MechanismConfig) -> float:
    """A-priori coupling ``gamma_t`` with ``q_bound <= q_target`` (module docstring).

    Every recorded level is ``max_i u_i w_i`` over uncapped nodes, so ``lam <= max w <=
    1/epsilon`` whatever the network does; ``gamma = q_target epsilon / (2 c)``, ``c`` the
    largest constant ``c_k`` over the tiers with a level in the first clear, then keeps
    ``q_bound = 2 gamma max_k lam_k c_k <= q_target``.
    """
    if wmap.source is WeightSource.MEMORY:
        # c_k = beta / M_k, written as in the first release so that memory runs are unchanged
        raw = cfg.weight_form is WeightForm.RAW
        m_w = 1.0 if raw else _weighted_normaliser(lam0, wmap.m_memory)
        return min(cfg.gamma_max, cfg.q_target * cfg.epsilon * m_w / (2.0 * cfg.beta))
    c = wmap.tier_lipschitz()
    ok = np.isfinite(lam0)
    c_max = float(np.max(c[ok] if np.any(ok) else c, initial=0.0))
    if c_max <= 0.0:
        return cfg.gamma_max  # no node with demand: the weights ignore the outcome
    return min(cfg.gamma_max, cfg.q_target * cfg.epsilon / (2.0 * c_max))


def _q_bound(wmap: WeightMap, gamma: float, lam: np.ndarray, beta: float) -> float:
    """``q_bound = 2 gamma max_k lam_k c_k`` over the tiers with a level (nan if none)."""
    if wmap.source is WeightSource.MEMORY:
        return 2.0 * gamma * beta * _rho(lam, wmap.m_memory)
    prod = lam * wmap.tier_lipschitz()
    return 2.0 * gamma * float(np.nanmax(prod)) if np.any(np.isfinite(prod)) else float("nan")


def clear_interval(
    allocator: Allocator,
    inp: IntervalInput,
    memory: np.ndarray,
    node_tier: np.ndarray,
    n_tier: int,
    tier_order: Sequence[int],
    policy: Policy | str,
    cfg: MechanismConfig,
    deficit: DeficitState | None = None,
) -> ClearingResult:
    """Clear one interval (see the module docstring).

    Parameters
    ----------
    allocator : Allocator
        Chooses points of ``X(t)``.
    inp : IntervalInput
        Demand and available capacity of the interval.
    memory : (n_node,) array
        Memory ``s(t)`` at the start of the interval (not modified).
    node_tier : (n_node,) int array
        Tier of each node.
    n_tier : int
        Number of tiers ``K``.
    tier_order : sequence of int
        Tier order ``sigma(t)`` (first = cleared first).
    policy : Policy
        FPAMM, EQUAL or LMP.
    cfg : MechanismConfig
        Mechanism parameters.
    deficit : DeficitState, optional
        Deficit ``D(t)`` and requested energy ``C(t)`` at the start of the interval (not
        modified); required when FP-AMM's weights read the deficit (``cfg.weight_source``
        DEFICIT or BOTH).

    Returns
    -------
    ClearingResult

    Raises
    ------
    InputError
        The weights read the deficit and ``deficit`` is missing.
    """
    policy = Policy(policy)
    s = np.asarray(memory, dtype=float)
    node_tier = np.asarray(node_tier, dtype=int)
    fpamm_weights = policy is Policy.FPAMM and cfg.weight_form is not WeightForm.EQUAL
    wmap = (
        WeightMap.build(cfg, s, deficit, node_tier, n_tier, inp.demand_mw)
        if fpamm_weights
        else None
    )
    run = _IntervalClearing(allocator, inp, list(tier_order), cfg, node_tier, n_tier)
    w_start = wmap.start() if wmap is not None else run.ones
    if not run.screen_interval() or policy is Policy.LMP:
        return run.result(run.screen, w_start, [])
    x = run.clear(w_start)
    if not x.ok:
        return run.failed(x, w_start)
    lam0 = run.tr.record_clear(x)
    if wmap is None:
        return run.equal_weights(x, lam0)
    return run.fixed_point(wmap, x, _coupling(wmap, lam0, cfg))


class _IntervalClearing:
    """One interval's clearing: the screen, the clears and the fixed point, with the
    tracker of their solves and the quantities of the contraction bound."""

    def __init__(
        self,
        allocator: Allocator,
        inp: IntervalInput,
        tier_order: list[int],
        cfg: MechanismConfig,
        node_tier: np.ndarray,
        n_tier: int,
    ) -> None:
        self.allocator, self.inp, self.tier_order, self.cfg = allocator, inp, tier_order, cfg
        d = np.asarray(inp.demand_mw, dtype=float)
        self.total = float(d.sum())
        self.tol_mw = cfg.tol * self.total
        tier_demand = np.bincount(node_tier, weights=d, minlength=n_tier).astype(float)
        self.tr = _Tracker(tier_demand, node_tier, self.tol_mw)
        self.ones = np.ones(d.size)
        self.defer = callable(getattr(allocator, "complete", None))
        self.screen: Dispatch
        self.scarce = True
        self.deliverable = 0.0
        self.estimated = False

    def screen_interval(self) -> bool:
        """Open the interval, solve the screen; True when the interval is scarce."""
        begin = getattr(self.allocator, "begin_interval", None)
        if callable(begin):  # interval-scoped caches of the allocator: opened here, per interval
            begin(self.inp)
        screen = self.allocator.screen(self.inp)
        self.screen = screen
        self.tr.account(screen)
        if screen.ok:
            self.deliverable = float(np.sum(screen.served_mw))
            self.scarce = (self.total - self.deliverable) > self.cfg.scarcity_tol * self.total
        else:
            self.tr.errors.append(f"error:screen:{screen.status}")
            self.deliverable = min(self.total, float(np.sum(self.inp.available_mw)))
            self.estimated = True
        return self.scarce

    def clear(self, weights: np.ndarray) -> Dispatch:
        """One clear with ``weights`` (deferred dispatch when the allocator supports it)."""
        if self.defer:
            disp = self.allocator.clear(self.inp, self.tier_order, weights, dispatch=False)  # type: ignore[call-arg]
        else:
            disp = self.allocator.clear(self.inp, self.tier_order, weights)
        self.tr.account(disp)
        return disp

    def completed(self, disp: Dispatch) -> Dispatch:
        """The kept allocation with its least-cost dispatch (deferred clears only)."""
        if not disp.deferred:
            return disp
        done = self.allocator.complete(self.inp, disp)  # type: ignore[attr-defined]
        self.tr.account(done)
        return done

    def result(
        self,
        dispatch: Dispatch,
        weights: np.ndarray,
        residuals: list[float],
        q_hat: float = math.nan,
        q_bound: float = math.nan,
        applies: bool = False,
        gamma: float = math.nan,
        lam_max: float = math.nan,
    ) -> ClearingResult:
        return ClearingResult(
            scarce=bool(self.scarce),
            dispatch=dispatch,
            screen=self.screen,
            weights=np.asarray(weights, dtype=float),
            residuals=np.asarray(residuals, dtype=float),
            q_hat=q_hat,
            q_bound=q_bound,
            q_bound_applies=applies,
            gamma=gamma,
            lambda_max=lam_max,
            n_solves=self.tr.n_solves,
            solve_s=self.tr.solve_s,
            status=self.tr.status(dispatch),
            events=self.tr.all_events(dispatch),
            deliverable_mw=self.deliverable,
            deliverable_estimated=self.estimated,
        )

    def failed(self, disp: Dispatch, weights: np.ndarray) -> ClearingResult:
        """A clear that failed: the screen is the allocation, the error in the status."""
        self.tr.errors.append(f"error:clear:{disp.status}")
        return self.result(self.screen, weights, [])

    def equal_weights(self, x: Dispatch, lam0: np.ndarray) -> ClearingResult:
        """Equal weights: the operator is constant, ``x^0`` is the answer (residual 0)."""
        lam_max = _nanmax(lam0)
        x = self.completed(x)
        if not x.ok:
            return self.failed(x, self.ones)
        return self.result(
            x, self.ones, [0.0], q_bound=0.0, applies=True, gamma=0.0, lam_max=lam_max
        )

    def fixed_point(self, wmap: WeightMap, x: Dispatch, gamma: float) -> ClearingResult:
        """``x^{m+1} = A(w(x^m))`` from ``x^0 = x`` until the residual is within ``tol``."""
        tr, cfg = self.tr, self.cfg
        w_start = wmap.start()
        residuals: list[float] = []
        w_final = w_start
        failure: Dispatch | None = None
        restarts = 0
        while True:
            w = wmap.coupled(x.served_mw, gamma)
            nxt = self.clear(w)
            if not nxt.ok:
                failure = nxt
                break
            if nxt.path_switched and restarts < MAX_RESTARTS_PER_TIER * tr.tier_demand.size:
                # A tier's solve path changed (paths only move one way, so this happens at most
                # twice per tier): start again from x^0 so that every recorded iterate comes from
                # the same operator and the residuals measure its contraction alone.
                restarts += 1
                if RESTART_NOTE not in tr.notes:
                    tr.notes.append(RESTART_NOTE)
                x0 = self.clear(w_start)
                if not x0.ok:
                    failure = x0
                    break
                tr.record_clear(x0)
                x, w_final, residuals = x0, w_start, []
                continue
            tr.record_clear(nxt)
            residuals.append(float(np.abs(nxt.served_mw - x.served_mw).sum()))
            x, w_final = nxt, w
            if residuals[-1] <= self.tol_mw or len(residuals) >= cfg.m_max:
                break
        return self._fixed_point_result(wmap, x, w_final, residuals, gamma, failure)

    def _fixed_point_result(
        self,
        wmap: WeightMap,
        x: Dispatch,
        w_final: np.ndarray,
        residuals: list[float],
        gamma: float,
        failure: Dispatch | None,
    ) -> ClearingResult:
        """The kept iterate with its dispatch, ``q̂`` and the bound ``q_bound``."""
        tr = self.tr
        if tr.any_weighted:
            q_bound = _q_bound(wmap, gamma, tr.lam_tier, self.cfg.beta)
        else:
            q_bound = 0.0  # every tier fully served or empty: the allocation ignores the weights
        if failure is not None:
            tr.errors.append(f"error:clear:{failure.status}")
        x = self.completed(x)
        if not x.ok:
            return self.failed(x, w_final)
        return self.result(
            x,
            w_final,
            residuals,
            q_hat=_measured_q(residuals, self.cfg.residual_floor * self.total),
            q_bound=float(q_bound),
            applies=bool(tr.structural_ok and np.isfinite(q_bound) and failure is None),
            gamma=float(gamma),
            lam_max=_nanmax(tr.lam_tier),
        )


def _nanmax(a: np.ndarray) -> float:
    """Largest finite entry (nan when there is none)."""
    return float(np.nanmax(a)) if np.any(np.isfinite(a)) else math.nan
