"""How often the T5 criterion passes on one path: a Monte Carlo study of the shipped check.

T5 (MECHANISM.md section 6) fits the decay of ``E(t) = max_i |F_i(t) - F*_i|`` over one
decade ``[T/20, T/2]`` of a single run. A cumulative ratio that converges at exactly the
theorem's rate still wanders: ``F(t) - F(T)`` behaves like a Brownian bridge scaled by
``1/t``, which crosses zero, so the fitted slope of one path is a random variable with a wide
spread. This module runs :func:`~fpamm_opt.verify.convergence.t5_criterion` -- the very
function ``fpamm verify`` uses -- on synthetic delivery series whose behaviour is known:

``iid``
    Served fraction i.i.d. per interval: converges at rate ``1/√t`` (should pass).
``scarcity``
    The scenario's shape: a two-state Markov chain (mean window 12 intervals, 25 % scarce),
    shortfall 8-25 % in a window: converges at ``1/√t`` with a larger constant (should pass).
``no-settle``
    Regimes of service 1.0 and 0.8 whose lengths double: ``F(t)`` keeps oscillating with a
    constant amplitude and never settles (must fail).
``undelivered``
    The ``iid`` series measured against a target 0.02 above its limit (must fail).

``python -m fpamm_opt.verify.power [--paths 400] [--T 5000]`` prints the pass rates;
docs/verification.md quotes them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np

from fpamm_opt.verify.convergence import t5_criterion

Process = Callable[[np.random.Generator, int], tuple[np.ndarray, float | None]]


def _iid(rng: np.random.Generator, n: int) -> tuple[np.ndarray, float | None]:
    return rng.uniform(0.8, 1.0, n), None


def _scarcity(rng: np.random.Generator, n: int) -> tuple[np.ndarray, float | None]:
    mean_window, scarce_fraction = 12.0, 0.25
    p_exit = 1.0 / mean_window
    p_enter = p_exit * scarce_fraction / (1.0 - scarce_fraction)
    u = rng.random(n)
    x = np.ones(n)
    scarce, short = False, 0.0
    for t in range(n):
        if not scarce and u[t] < p_enter:
            scarce, short = True, rng.uniform(0.08, 0.25)
        elif scarce and u[t] < p_exit:
            scarce = False
        if scarce:
            x[t] = 1.0 - short
    return x, None


def _no_settle(rng: np.random.Generator, n: int) -> tuple[np.ndarray, float | None]:
    x = np.empty(n)
    start, length, level = 0, int(rng.integers(20, 60)), 1.0
    while start < n:
        x[start : start + length] = level
        start += length
        length *= 2
        level = 1.8 - level  # 1.0 <-> 0.8
    return x + rng.normal(0.0, 0.01, n), None


def _undelivered(rng: np.random.Generator, n: int) -> tuple[np.ndarray, float | None]:
    return rng.uniform(0.8, 1.0, n), 0.92  # the limit is 0.9


PROCESSES: dict[str, tuple[Process, bool]] = {
    "iid": (_iid, True),
    "scarcity": (_scarcity, True),
    "no-settle": (_no_settle, False),
    "undelivered": (_undelivered, False),
}


def pass_rate(name: str, paths: int = 400, n_interval: int = 5000, seed: int = 0) -> float:
    """Share of ``paths`` synthetic runs of process ``name`` that pass the T5 criterion.

    Each path is one node served ``x(t)`` of a unit demand; ``F*`` is the path's own
    ``F(T)`` unless the process sets a target.
    """
    make, _ = PROCESSES[name]
    rng = np.random.default_rng(seed)
    steps = np.arange(1, n_interval + 1)
    passed = 0
    for _ in range(paths):
        x, target = make(rng, n_interval)
        f = np.cumsum(x) / steps
        passed += t5_criterion(np.abs(f - (f[-1] if target is None else target))).passed
    return passed / paths


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--paths", type=int, default=400)
    ap.add_argument("--T", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    print(f"T5 criterion on one path, {a.paths} paths of T={a.T} each (seed {a.seed})")
    print(f"{'process':<12} {'converges at 1/sqrt(t)':<24} pass rate")
    for name, (_, converges) in PROCESSES.items():
        rate = pass_rate(name, a.paths, a.T, a.seed)
        print(f"{name:<12} {'yes' if converges else 'no':<24} {rate:6.1%}")


if __name__ == "__main__":
    main()
