"""T1: the shortage memory stays in ``[0,1]^N`` and its update is a ``(1-β)``-contraction.

Computed from the ``nodes`` table only (``memory_before``, ``memory_after``,
``shortfall_ratio``, ``served_mw``, ``demand_mw``) and ``β`` from the manifest.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from fpamm_opt.verify.context import RunData, as_run
from fpamm_opt.verify.panel import pivot, require_columns
from fpamm_opt.verify.result import CheckName, CheckResult, not_applicable

_MEMORY_COLUMNS = ("memory_before", "memory_after")

STATEMENT_INVARIANCE = "Thm 1: every shortage memory s_i(t) stays in [0, 1]"
STATEMENT_UPDATE = (
    "Thm 1: stored s(t+1) = clip((1-β) s(t) + β u(t), 0, 1) with the stored u(t), "
    "and memory_before(t+1) = memory_after(t)"
)
STATEMENT_CONTRACTION = (
    "Thm 1: the memory update is a contraction with rate 1-β: replayed from a perturbed "
    "s'(0), ||s'(t) - s(t)||_inf <= (1-β)^t ||s'(0) - s(0)||_inf"
)


def _memory_recorded(run: RunData) -> bool:
    nodes = run.table("nodes")
    if any(c not in nodes.columns for c in _MEMORY_COLUMNS):
        return False
    return bool(nodes[list(_MEMORY_COLUMNS)].notna().any().any())


def check_memory_invariance(run: RunData | str | Path, tol: float = 1e-12) -> CheckResult:
    """T1 invariance: ``memory_before`` and ``memory_after`` lie in ``[0, 1]`` within ``tol``.

    Parameters
    ----------
    run : RunData or path
        The run.
    tol : float
        Allowed excursion outside ``[0, 1]``.

    Returns
    -------
    CheckResult
        ``measured`` is the largest excursion outside ``[0, 1]`` (0 when none).
    """
    run = as_run(run)
    name = CheckName.T1_INVARIANCE
    if not _memory_recorded(run):
        return not_applicable(name, STATEMENT_INVARIANCE, "the run recorded no memory")
    nodes = run.table("nodes")
    require_columns(nodes, "nodes", ["t", "node", *_MEMORY_COLUMNS])
    ts, ns = nodes["t"].to_numpy(), nodes["node"].to_numpy()
    worst, where, top, top_where = 0.0, "", -np.inf, ""
    for col in _MEMORY_COLUMNS:
        s = nodes[col].to_numpy(dtype=float, na_value=np.nan)
        if s.size == 0:
            continue
        excursion = np.maximum(np.maximum(-s, s - 1.0), 0.0)
        excursion = np.where(np.isfinite(s), excursion, np.inf)
        k = int(np.argmax(excursion))
        if excursion[k] > worst:
            worst = float(excursion[k])
            where = f"{col}={s[k]:.6g} at t={ts[k]}, node={ns[k]}"
        j = int(np.nanargmax(s)) if np.isfinite(s).any() else 0
        if s[j] > top:
            top, top_where = float(s[j]), f"{col}={s[j]:.6g} at t={ts[j]}, node={ns[j]}"
    passed = worst <= tol
    detail = (
        f"all {len(nodes)} rows in [0, 1]; largest memory {top_where}"
        if passed
        else f"memory leaves [0, 1]: {where} (excursion {worst:.3g})"
    )
    return CheckResult(name, STATEMENT_INVARIANCE, worst, tol, passed, True, detail)


def _shortfall_from_served(served: np.ndarray, demand: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        u = 1.0 - served / np.where(demand > 0, demand, 1.0)
    return np.where(demand > 0, np.clip(u, 0.0, 1.0), 0.0)


def check_memory_update(
    run: RunData | str | Path, tol: float = 1e-9, shortfall_tol: float = 1e-6
) -> CheckResult:
    """T1 update: stored memories follow the saturated integrator exactly.

    Three comparisons (each ``(t, node)`` row):

    - ``memory_after == clip((1-β) memory_before + β shortfall_ratio, 0, 1)`` within ``tol``;
    - ``memory_before(t+1) == memory_after(t)`` within ``tol``;
    - ``shortfall_ratio == clip(1 - served_mw / demand_mw, 0, 1)`` (0 when no demand) within
      ``shortfall_tol``.

    Returns
    -------
    CheckResult
        ``measured`` is the largest difference of the first two comparisons; a shortfall
        mismatch fails the check as well and is named in ``detail``.
    """
    run = as_run(run)
    name = CheckName.T1_UPDATE
    if not _memory_recorded(run):
        return not_applicable(name, STATEMENT_UPDATE, "the run recorded no memory")
    beta = run.context.beta
    nodes = run.table("nodes")
    cols = ["memory_before", "memory_after", "shortfall_ratio", "served_mw", "demand_mw"]
    t, node, a = pivot(nodes, "node", cols, table="nodes")
    before, after, u = a["memory_before"], a["memory_after"], a["shortfall_ratio"]
    expected = np.clip((1.0 - beta) * before + beta * u, 0.0, 1.0)
    err_update = np.where(np.isnan(expected) & np.isnan(after), 0.0, np.abs(after - expected))
    err_update = np.nan_to_num(err_update, nan=np.inf)
    err_cont = np.abs(before[1:] - after[:-1])
    err_cont = np.where(np.isnan(err_cont), 0.0, err_cont)  # a node absent in one interval
    err_u = np.abs(u - _shortfall_from_served(a["served_mw"], a["demand_mw"]))
    err_u = np.nan_to_num(err_u, nan=np.inf)

    problems: list[str] = []
    worst = 0.0
    ti, ni = np.unravel_index(int(np.argmax(err_update)), err_update.shape)
    worst = max(worst, float(err_update[ti, ni]))
    if err_update[ti, ni] > tol:
        n_bad = int((err_update > tol).sum())
        problems.append(
            f"memory_after does not follow the update in {n_bad} rows; worst t={t[ti]}, "
            f"node={node[ni]}: stored {after[ti, ni]:.12g}, update gives {expected[ti, ni]:.12g} "
            f"(β={beta})"
        )
    if err_cont.size:
        ti, ni = np.unravel_index(int(np.argmax(err_cont)), err_cont.shape)
        worst = max(worst, float(err_cont[ti, ni]))
        if err_cont[ti, ni] > tol:
            n_bad = int((err_cont > tol).sum())
            problems.append(
                f"memory_before(t+1) != memory_after(t) in {n_bad} rows; worst t={t[ti + 1]}, "
                f"node={node[ni]}: memory_before {before[ti + 1, ni]:.12g}, previous "
                f"memory_after {after[ti, ni]:.12g}"
            )
    ti, ni = np.unravel_index(int(np.argmax(err_u)), err_u.shape)
    if err_u[ti, ni] > shortfall_tol:
        n_bad = int((err_u > shortfall_tol).sum())
        problems.append(
            f"shortfall_ratio != 1 - served/demand in {n_bad} rows; worst t={t[ti]}, "
            f"node={node[ni]} (difference {err_u[ti, ni]:.3g})"
        )
    passed = not problems
    detail = (
        f"{before.size} rows follow the update with β={beta}; largest difference {worst:.3g}"
        if passed
        else "; ".join(problems)
    )
    return CheckResult(name, STATEMENT_UPDATE, worst, tol, passed, True, detail)


def _perturbed_starts(
    s: np.ndarray, n_perturb: int, seed: int, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """Perturbed initial memories ``clip(s + δ, 0, 1)`` (``n_perturb`` seeded draws
    ``δ ~ U(-scale, scale)^N`` and the corners ``δ = ±1``) that differ from ``s``, and their
    distances ``||s' - s||_inf``."""
    n = s.size
    rng = np.random.default_rng(seed)
    deltas = np.vstack(
        [rng.uniform(-scale, scale, size=(n_perturb, n)), np.ones((1, n)), -np.ones((1, n))]
    )
    sp = np.clip(s[None, :] + deltas, 0.0, 1.0)
    d0 = np.max(np.abs(sp - s[None, :]), axis=1)
    keep = d0 > 0
    return sp[keep], d0[keep]


def _replay_memory(
    s: np.ndarray,
    sp: np.ndarray,
    before: np.ndarray,
    after: np.ndarray,
    u: np.ndarray,
    t: np.ndarray,
    node: np.ndarray,
    beta: float,
) -> tuple[np.ndarray, float, tuple[Any, Any]]:
    """Replay the memory update from ``s`` (nominal) and the rows of ``sp`` (perturbed).

    Returns
    -------
    dist : (T + 1, n_perturbed) array
        ``||s'(t) - s(t)||_inf`` of every perturbed replay before each step and at the end.
    replay_err : float
        Largest difference of the nominal replay from the stored memory (NaN entries skipped).
    replay_at : (t, node)
        Where it is.
    """
    rate = 1.0 - beta
    n_t = u.shape[0]
    dist = np.empty((n_t + 1, sp.shape[0]))
    replay_err = 0.0
    replay_at = (t[0], node[0])
    for k in range(n_t):
        dist[k] = np.max(np.abs(sp - s[None, :]), axis=1)
        e = np.abs(s - before[k])
        e = np.where(np.isnan(before[k]), 0.0, e)
        if e.max() > replay_err:
            replay_err, replay_at = float(e.max()), (t[k], node[int(np.argmax(e))])
        s = np.clip(rate * s + beta * u[k], 0.0, 1.0)
        sp = np.clip(rate * sp + beta * u[k][None, :], 0.0, 1.0)
        e = np.abs(s - after[k])
        e = np.where(np.isnan(after[k]), 0.0, e)
        if e.max() > replay_err:
            replay_err, replay_at = float(e.max()), (t[k], node[int(np.argmax(e))])
    dist[n_t] = np.max(np.abs(sp - s[None, :]), axis=1)
    return dist, replay_err, replay_at


def check_memory_contraction(
    run: RunData | str | Path,
    n_perturb: int = 8,
    seed: int = 0,
    scale: float = 0.5,
    tol: float = 1e-12,
    replay_tol: float = 1e-9,
) -> CheckResult:
    """T1 contraction: replay the memory from perturbed initial states with the stored ``u``.

    The nominal replay starts from the stored ``memory_before`` of the first interval and
    must reproduce every stored ``memory_before``/``memory_after`` within ``replay_tol``.
    Perturbed replays start from ``s'(0) = clip(s(0) + δ, 0, 1)``: ``n_perturb`` seeded
    draws ``δ ~ U(-scale, scale)^N`` plus the two corners ``δ = ±1``. For every ``t``,
    ``||s'(t) - s(t)||_inf <= (1-β)^t ||s'(0) - s(0)||_inf + tol`` (``clip`` is 1-Lipschitz,
    so saturation keeps the bound).

    Returns
    -------
    CheckResult
        ``measured`` is the empirical rate, the largest one-step ratio
        ``||Δs(t+1)|| / ||Δs(t)||`` over steps with ``||Δs(t)|| > 1e-6``; ``bound`` is ``1-β``.
    """
    run = as_run(run)
    name = CheckName.T1_CONTRACTION
    if not _memory_recorded(run):
        return not_applicable(name, STATEMENT_CONTRACTION, "the run recorded no memory")
    beta = run.context.beta
    rate = 1.0 - beta
    nodes = run.table("nodes")
    t, node, a = pivot(
        nodes, "node", ["memory_before", "memory_after", "shortfall_ratio"], table="nodes"
    )
    before, after, u = a["memory_before"], a["memory_after"], a["shortfall_ratio"]
    if not (np.isfinite(u).all() and np.isfinite(before[0]).all()):
        return CheckResult(
            name,
            STATEMENT_CONTRACTION,
            math.nan,
            rate,
            False,
            True,
            "cannot replay: shortfall_ratio or the initial memory is missing for some (t, node)",
        )
    n_t = u.shape[0]
    s = before[0].copy()
    sp, d0 = _perturbed_starts(s, n_perturb, seed, scale)
    dist, replay_err, replay_at = _replay_memory(s, sp, before, after, u, t, node, beta)

    steps = np.arange(n_t + 1)[:, None]
    envelope = rate ** steps.astype(float) * d0[None, :]
    excess = dist - envelope
    k_bad, p_bad = np.unravel_index(int(np.argmax(excess)), excess.shape)
    big = dist[:-1] > 1e-6
    ratios = np.where(big, dist[1:] / np.where(big, dist[:-1], 1.0), -np.inf)
    measured = float(ratios.max()) if big.any() else math.nan

    problems: list[str] = []
    if excess[k_bad, p_bad] > tol:
        problems.append(
            f"contraction bound broken after {k_bad} steps: ||s'-s|| = {dist[k_bad, p_bad]:.6g} "
            f"> (1-β)^t ||s'(0)-s(0)|| = {envelope[k_bad, p_bad]:.6g}"
        )
    if replay_err > replay_tol:
        problems.append(
            f"replaying the update from the stored s(0) with the stored u does not reproduce "
            f"the stored memory: difference {replay_err:.3g} at t={replay_at[0]}, "
            f"node={replay_at[1]} (β={beta})"
        )
    passed = not problems
    detail = (
        f"{sp.shape[0]} perturbed replays over {n_t} intervals stay within (1-β)^t of the "
        f"nominal one; replay reproduces the stored memory within {replay_err:.2g}"
        if passed
        else "; ".join(problems)
    )
    return CheckResult(name, STATEMENT_CONTRACTION, measured, rate, passed, True, detail)
