"""Service-level priority sampling: Plackett-Luce tier orders (MECHANISM.md section 3, stage 1).

Role
----
A tier order is a Plackett-Luce sample without replacement with probabilities proportional to
the tier priorities ``pi``. It is drawn with the Gumbel-max trick,
``order = argsort(-(log pi + G))`` with ``G`` i.i.d. standard Gumbel: exactly ``K`` draws per
call whatever ``pi`` is, so policies sharing a seed keep their random streams aligned (common
random numbers).
"""

from __future__ import annotations

import numpy as np

from fpamm_opt.errors import InputError

__all__ = ["plackett_luce"]


def plackett_luce(rng: np.random.Generator, pi: np.ndarray) -> np.ndarray:
    """Draw a tier order by Plackett-Luce sampling.

    Parameters
    ----------
    rng : numpy.random.Generator
        The run's priority stream; advanced by exactly ``len(pi)`` Gumbel draws.
    pi : (K,) array
        Tier priorities, finite and ``> 0`` (need not sum to 1).

    Returns
    -------
    (K,) int array
        A permutation of ``0..K-1``; ``order[0]`` is cleared first.

    Raises
    ------
    InputError
        If ``pi`` is empty, not finite or not positive.
    """
    p = np.asarray(pi, dtype=float).ravel()
    if p.size == 0 or not np.all(np.isfinite(p)) or np.any(p <= 0):
        raise InputError(f"tier priorities must be finite and > 0, got {p.tolist()}")
    g = rng.gumbel(size=p.size)
    return np.argsort(-(np.log(p) + g), kind="stable").astype(int)
