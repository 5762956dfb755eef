"""Calibration of the T5 criteria: false-failure and detection rates on synthetic series.

The criteria of :mod:`fpamm_opt.verify.rate` -- the very functions ``fpamm verify`` calls --
run on synthetic gap series ``G(t)`` of one node (unit demand, so ``G`` counts intervals of
demand and ``E(t) = G(t)⁺ / t``) whose behaviour is known. Series that satisfy the statement
(``E = O(1/√t)``):

``mechanism``
    Markov scarcity windows (mean 12 intervals, 25 % of the time, the shipped scenario's
    shape); in a scarce interval the node deviates from its tier's ratio by ``N(0, 0.05)``
    and the Fair Play rule pays back a fifth of its deficit, from the second window on (the
    first has no history): ``G`` stays bounded, ``E ~ 1/t``.
``iid-walk``
    Served fraction i.i.d. ``U(0.8, 1)`` against its mean 0.9: ``G`` is a random walk,
    ``E`` converges at exactly ``1/√t``.
``window-walk``
    The same windows; the node is off its tier's ratio by ``N(0, 0.03)`` for a whole window
    (plus ``N(0, 0.01)`` per interval): a random walk with correlated increments, exactly
    ``1/√t``.

Series that do not:

``no-settle``
    Regimes 0.1 above and below the target whose lengths double (20-60 intervals at
    first): ``F(t)`` oscillates with a constant amplitude.
``constant-gap``
    ``iid-walk`` measured against a target 0.005 above its limit (misses the target).
``linear-deficit``
    ``window-walk`` plus 2.5 % of demand short in every scarce interval (a weak node the rule
    never makes whole): ``G`` grows like ``0.006 t``.

``python -m fpamm_opt.verify.power [--paths 2000] [--groups 400] [--runs 10] [--T 5000]
[--seed 0]`` prints the rates (under a minute); docs/verification.md quotes them. The violations
are sized against the noise: at ``T = 5000`` the two drifts' gaps exceed the random-walk
scale ``σ √T`` about six times; one path cannot reveal a drift much below ``4 σ / √T``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fpamm_opt.verify.rate import ALPHA, one_run_criterion, replicated_criterion

#: A process makes ``(increments, cuts)``, both ``(T, P)``, for ``P`` independent paths.
Process = Callable[[np.random.Generator, int, int], tuple[np.ndarray, np.ndarray]]

#: Scarcity windows of the synthetic series (the shipped scenario's defaults).
MEAN_WINDOW = 12.0
SCARCE_FRACTION = 0.25


def _markov(rng: np.random.Generator, n_t: int, paths: int) -> np.ndarray:
    """Scarce flags ``(T, P)`` of a two-state chain (stationary start)."""
    p_exit = 1.0 / MEAN_WINDOW
    p_enter = p_exit * SCARCE_FRACTION / (1.0 - SCARCE_FRACTION)
    u = rng.random((n_t, paths))
    out = np.zeros((n_t, paths), dtype=bool)
    state = rng.random(paths) < SCARCE_FRACTION
    for k in range(n_t):
        state = np.where(state, u[k] >= p_exit, u[k] < p_enter)
        out[k] = state
    return out


def _window_cuts(scarce: np.ndarray) -> np.ndarray:
    """A block may end before a non-scarce interval (as :attr:`UnderService.cuts`)."""
    return np.vstack([~scarce[1:], np.ones((1, scarce.shape[1]), dtype=bool)])


def _window_walk_parts(
    rng: np.random.Generator, n_t: int, paths: int
) -> tuple[np.ndarray, np.ndarray]:
    scarce = _markov(rng, n_t, paths)
    start = scarce & ~np.vstack([np.zeros((1, paths), dtype=bool), scarce[:-1]])
    wid = np.cumsum(start, axis=0)
    eps = rng.normal(0.0, 0.03, (int(wid.max()) + 1, paths))
    per_window = np.take_along_axis(eps, wid, axis=0)
    y = np.where(scarce, per_window + rng.normal(0.0, 0.01, (n_t, paths)), 0.0)
    return y, scarce


def mechanism(rng: np.random.Generator, n_t: int, paths: int) -> tuple[np.ndarray, np.ndarray]:
    scarce = _markov(rng, n_t, paths)
    xi = np.where(scarce, rng.normal(0.0, 0.05, (n_t, paths)), 0.0)
    # No history in the first window: the deficit it leaves is repaid only afterwards.
    first = np.cumsum(scarce & ~np.vstack([np.zeros((1, paths), bool), scarce[:-1]]), axis=0)
    pay = np.where(scarce & (first > 1), 0.2, 0.0)
    g = np.zeros(paths)
    y = np.empty((n_t, paths))
    for k in range(n_t):
        new = (1.0 - pay[k]) * g + xi[k]
        y[k] = new - g
        g = new
    return y, _window_cuts(scarce)


def iid_walk(rng: np.random.Generator, n_t: int, paths: int) -> tuple[np.ndarray, np.ndarray]:
    return 0.9 - rng.uniform(0.8, 1.0, (n_t, paths)), np.ones((n_t, paths), dtype=bool)


def window_walk(rng: np.random.Generator, n_t: int, paths: int) -> tuple[np.ndarray, np.ndarray]:
    y, scarce = _window_walk_parts(rng, n_t, paths)
    return y, _window_cuts(scarce)


def no_settle(rng: np.random.Generator, n_t: int, paths: int) -> tuple[np.ndarray, np.ndarray]:
    y = rng.normal(0.0, 0.01, (n_t, paths))
    for p in range(paths):
        start, length, level = 0, int(rng.integers(20, 61)), 0.1 * rng.choice([-1.0, 1.0])
        while start < n_t:
            y[start : start + length, p] += level
            start += length
            length *= 2
            level = -level
    return y, np.ones((n_t, paths), dtype=bool)


def constant_gap(rng: np.random.Generator, n_t: int, paths: int) -> tuple[np.ndarray, np.ndarray]:
    y, cuts = iid_walk(rng, n_t, paths)
    return y + 0.005, cuts


def linear_deficit(rng: np.random.Generator, n_t: int, paths: int) -> tuple[np.ndarray, np.ndarray]:
    y, scarce = _window_walk_parts(rng, n_t, paths)
    return y + np.where(scarce, 0.025, 0.0), _window_cuts(scarce)


@dataclass(frozen=True)
class Series:
    """A synthetic process and whether it satisfies the statement."""

    name: str
    make: Process
    satisfies: bool
    label: str


SERIES: tuple[Series, ...] = (
    Series("mechanism", mechanism, True, "deficit paid back, E ~ 1/t"),
    Series("iid-walk", iid_walk, True, "random walk, E ~ 1/sqrt(t)"),
    Series("window-walk", window_walk, True, "random walk in windows, 1/sqrt(t)"),
    Series("no-settle", no_settle, False, "never settles"),
    Series("constant-gap", constant_gap, False, "misses the target by 0.005"),
    Series("linear-deficit", linear_deficit, False, "gap grows like 0.006 t"),
)


@dataclass(frozen=True)
class PowerRow:
    """Fail rates of both criteria on one series."""

    series: Series
    one_run_fail: float
    replicated_fail: float


def one_run_fail_rate(series: Series, paths: int, n_interval: int, seed: int) -> float:
    """Share of ``paths`` single paths that fail :func:`one_run_criterion`."""
    rng = np.random.default_rng([seed, SERIES.index(series), 0])
    y, cuts = series.make(rng, n_interval, paths)
    g = np.cumsum(y, axis=0)
    fails = sum(not one_run_criterion(g[:, p : p + 1], cuts[:, p]).passed for p in range(paths))
    return fails / paths


def replicated_fail_rate(
    series: Series, groups: int, runs: int, n_interval: int, seed: int
) -> float:
    """Share of ``groups`` groups of ``runs`` paths that fail :func:`replicated_criterion`."""
    rng = np.random.default_rng([seed, SERIES.index(series), 1])
    y, cuts = series.make(rng, n_interval, groups * runs)
    g = np.cumsum(y, axis=0)
    fails = 0
    for k in range(groups):
        cols = range(k * runs, (k + 1) * runs)
        v = replicated_criterion([g[:, c : c + 1] for c in cols], [cuts[:, c] for c in cols])
        fails += not v.passed
    return fails / groups


def power_table(
    paths: int = 2000, groups: int = 400, runs: int = 10, n_interval: int = 5000, seed: int = 0
) -> list[PowerRow]:
    """Both criteria's fail rates on every series of :data:`SERIES`."""
    return [
        PowerRow(
            s,
            one_run_fail_rate(s, paths, n_interval, seed),
            replicated_fail_rate(s, groups, runs, n_interval, seed),
        )
        for s in SERIES
    ]


def format_table(
    rows: list[PowerRow], paths: int, groups: int, runs: int, n_interval: int, seed: int
) -> str:
    """The table ``python -m fpamm_opt.verify.power`` prints."""
    se1 = math.sqrt(0.05 * 0.95 / paths)
    se2 = math.sqrt(0.05 * 0.95 / groups)
    lines = [
        f"T5 criteria on synthetic series: T = {n_interval}, alpha = {ALPHA}, seed {seed}",
        f"one run: {paths} paths per series; replicated: {groups} groups of {runs} runs "
        f"per series (standard error at a 5% rate: {se1:.1%} and {se2:.1%})",
        "",
        f"{'series':<16}{'behaviour':<36}{'satisfies':<11}{'one run fails':>15}"
        f"{'replicated fails':>18}",
    ]
    for r in rows:
        lines.append(
            f"{r.series.name:<16}{r.series.label:<36}{'yes' if r.series.satisfies else 'no':<11}"
            f"{r.one_run_fail:>15.1%}{r.replicated_fail:>18.1%}"
        )
    good = [r for r in rows if r.series.satisfies]
    bad = [r for r in rows if not r.series.satisfies]
    lines += [
        "",
        f"{'false-failure rate (worst satisfying series, <= 5%)':<63}"
        f"{max(r.one_run_fail for r in good):>15.1%}{max(r.replicated_fail for r in good):>18.1%}",
        f"{'detection rate (worst violating series, >= 95%)':<63}"
        f"{min(r.one_run_fail for r in bad):>15.1%}{min(r.replicated_fail for r in bad):>18.1%}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--paths", type=int, default=2000, help="single paths per series")
    ap.add_argument("--groups", type=int, default=400, help="replicated groups per series")
    ap.add_argument("--runs", type=int, default=10, help="runs (seeds) per group")
    ap.add_argument("--T", type=int, default=5000, help="intervals per path")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    rows = power_table(a.paths, a.groups, a.runs, a.T, a.seed)
    print(format_table(rows, a.paths, a.groups, a.runs, a.T, a.seed))


if __name__ == "__main__":
    main()
