"""Inverse-fairness weights and the coupled memory of the clearing operator.

Role
----
The shipped clearing operator (docs/design.md, "Shipped clearing operator"):

- tier normaliser, frozen at the start of the interval,
  ``M_k = max(max_{j in k} s_j(t), s_floor)``;
- coupled memory ``s_gamma(x) = clip((1 - gamma beta) s + gamma beta u(x), 0, 1)``;
- fairness ``phi_i = clip(1 - s_gamma_i / M_k(i), 0, 1)`` (RELATIVE),
  ``phi_i = 1 - s_gamma_i`` (RAW); weight ``w_i = 1 / (epsilon + phi_i)``; EQUAL: ``w = 1``.

Within a tier the weights are weakly increasing in the memory: nodes short of service weigh
more.
"""

from __future__ import annotations

import numpy as np

from fpamm_opt.mechanism.config import WeightForm

__all__ = ["coupled_memory", "fairness_weights", "tier_normalisers"]


def tier_normalisers(
    s: np.ndarray, node_tier: np.ndarray, n_tier: int, s_floor: float
) -> np.ndarray:
    """Per-tier normaliser ``M_k = max(max_{j in tier k} s_j, s_floor)``.

    Parameters
    ----------
    s : (n_node,) array
        Memory.
    node_tier : (n_node,) int array
        Tier of each node, ``0..n_tier-1``.
    n_tier : int
        Number of tiers ``K``.
    s_floor : float
        Floor in ``(0, 1]``; an empty tier gets ``s_floor``.

    Returns
    -------
    (n_tier,) array
    """
    m = np.full(int(n_tier), float(s_floor))
    np.maximum.at(m, np.asarray(node_tier, dtype=int), np.asarray(s, dtype=float))
    return m


def fairness_weights(
    s_gamma: np.ndarray,
    node_tier: np.ndarray,
    m: np.ndarray,
    epsilon: float,
    form: WeightForm | str,
) -> np.ndarray:
    """Inverse-fairness weight per node, ``w = 1 / (epsilon + phi)``.

    Parameters
    ----------
    s_gamma : (n_node,) array
        The memory the weights are computed from (``s(t)`` or a coupled memory).
    node_tier : (n_node,) int array
        Tier of each node.
    m : (n_tier,) array
        Tier normalisers (used by RELATIVE only).
    epsilon : float
        Offset ``> 0``.
    form : WeightForm
        RELATIVE: ``phi = clip(1 - s_gamma / M[tier], 0, 1)``; RAW: ``phi = 1 - s_gamma``;
        EQUAL: ``w = 1``.

    Returns
    -------
    (n_node,) array
        Weights in ``[1 / (1 + epsilon), 1 / epsilon]`` (ones for EQUAL).
    """
    form = WeightForm(form)
    s_arr = np.asarray(s_gamma, dtype=float)
    if form is WeightForm.EQUAL:
        return np.ones_like(s_arr)
    if form is WeightForm.RAW:
        phi = 1.0 - s_arr
    else:
        norm = np.asarray(m, dtype=float)[np.asarray(node_tier, dtype=int)]
        phi = np.clip(1.0 - s_arr / norm, 0.0, 1.0)
    return 1.0 / (epsilon + phi)


def coupled_memory(s: np.ndarray, u: np.ndarray, beta: float, gamma: float) -> np.ndarray:
    """Memory the interval would leave with coupling ``gamma``.

    ``s_gamma = clip((1 - gamma beta) s + gamma beta u, 0, 1)``.
    """
    gb = float(gamma) * float(beta)
    return np.clip(
        (1.0 - gb) * np.asarray(s, dtype=float) + gb * np.asarray(u, dtype=float), 0.0, 1.0
    )
