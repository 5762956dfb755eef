"""Inverse-fairness weights and the coupled state of the clearing operator.

Role
----
The shipped clearing operator (docs/design.md, "Shipped clearing operator"):

- tier normaliser, frozen at the start of the interval,
  ``M_k = max(max_{j in k} s_j(t), s_floor)``;
- coupled memory ``s_gamma(x) = clip((1 - gamma beta) s + gamma beta u(x), 0, 1)``;
- fairness ``phi_i = clip(1 - s_gamma_i / M_k(i), 0, 1)`` (RELATIVE),
  ``phi_i = 1 - s_gamma_i`` (RAW); weight ``w_i = 1 / (epsilon + phi_i)``; EQUAL: ``w = 1``.

With the deficit as the weight source (:class:`~fpamm_opt.mechanism.config.WeightSource`) the
same relative form is applied to the positive under-service: ``M_k = max(max_{j in k}
delta+_j(t), deficit_floor)`` frozen from ``delta+(t) = max(D(t), 0) / C(t)``, and the coupled
``delta_gamma(x) = max(D + gamma (r_l(x) d - x) dt, 0) / (C(t) + d dt)``
(:mod:`~fpamm_opt.mechanism.deficit`). BOTH takes per node the larger weight (the larger of the
two relative levels). :class:`WeightMap` is that operator's weight part for one interval.

Within a tier the weights are weakly increasing in the memory (and the deficit): nodes short
of service weigh more.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fpamm_opt.errors import InputError
from fpamm_opt.mechanism.config import MechanismConfig, WeightForm, WeightSource
from fpamm_opt.mechanism.deficit import (
    DeficitState,
    coupled_deficit,
    deficit_share,
    under_service,
)
from fpamm_opt.mechanism.memory import shortfall_ratio

__all__ = [
    "WeightMap",
    "coupled_memory",
    "deficit_level",
    "fairness_weights",
    "tier_normalisers",
]


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


def deficit_level(
    deficit: DeficitState,
    node_tier: np.ndarray,
    n_tier: int,
    deficit_floor: float,
    form: WeightForm | str,
) -> np.ndarray:
    """Level ``s_hat`` the deficit weights read at the start of an interval, in ``[0, 1]``.

    RELATIVE: ``clip(delta+_i / M_k, 0, 1)`` with ``M_k = max(max_{j in k} delta+_j,
    deficit_floor)``; RAW: ``clip(delta+_i, 0, 1)``. Part of the event trigger's state
    (:func:`~fpamm_opt.mechanism.trigger.trigger_vector`) when the weights read the deficit.
    """
    delta = deficit.under_service
    if WeightForm(form) is WeightForm.RELATIVE:
        m = tier_normalisers(delta, node_tier, n_tier, deficit_floor)
        delta = delta / m[np.asarray(node_tier, dtype=int)]
    return np.clip(delta, 0.0, 1.0)


def _tier_max(values: np.ndarray, node_tier: np.ndarray, n_tier: int) -> np.ndarray:
    out = np.zeros(int(n_tier))
    np.maximum.at(out, np.asarray(node_tier, dtype=int), np.asarray(values, dtype=float))
    return out


@dataclass(frozen=True, eq=False)
class WeightMap:
    """The weights of one interval as a function of its own outcome (normalisers frozen).

    Build with :meth:`build`; :meth:`start` gives ``w(s(t), delta(t))`` (the first clear and
    the weights recorded for a non-scarce interval), :meth:`coupled` gives ``w`` of the state
    the interval would leave with outcome ``x`` and coupling ``gamma``, and
    :meth:`tier_lipschitz` the per-tier constant ``c_k`` with
    ``|v_i(x) - v_i(x')| <= gamma c_k |u_i(x) - u_i(x')|`` for ``v = 1 / w`` and ``i`` in tier
    ``k`` (when the tier's served energy is the same under ``x`` and ``x'``; clearing.py).

    Attributes
    ----------
    source, form : WeightSource, WeightForm
        What the weights read and how (EQUAL forms are not mapped here).
    epsilon, beta : float
        Weight offset and memory gain.
    node_tier : (n_node,) int array
    n_tier : int
    demand : (n_node,) array
        ``d(t)`` (MW).
    memory : (n_node,) array
        ``s(t)``.
    m_memory : (n_tier,) array
        Memory normalisers (ones for RAW).
    deficit : DeficitState or None
        ``D(t)``, ``C(t)``, ``dt`` (required by DEFICIT and BOTH).
    m_deficit : (n_tier,) array
        Deficit normalisers (ones for RAW; unused by MEMORY).
    """

    source: WeightSource
    form: WeightForm
    epsilon: float
    beta: float
    node_tier: np.ndarray
    n_tier: int
    demand: np.ndarray
    memory: np.ndarray
    m_memory: np.ndarray
    deficit: DeficitState | None
    m_deficit: np.ndarray

    @classmethod
    def build(
        cls,
        cfg: MechanismConfig,
        memory: np.ndarray,
        deficit: DeficitState | None,
        node_tier: np.ndarray,
        n_tier: int,
        demand: np.ndarray,
    ) -> WeightMap:
        """Freeze the normalisers of interval ``t`` from ``s(t)`` and ``delta+(t)``.

        Raises
        ------
        InputError
            The weight source reads the deficit and ``deficit`` is None or of another size.
        """
        source, form = WeightSource(cfg.weight_source), WeightForm(cfg.weight_form)
        s = np.asarray(memory, dtype=float)
        tier = np.asarray(node_tier, dtype=int)
        k = int(n_tier)
        relative = form is WeightForm.RELATIVE
        m_s = tier_normalisers(s, tier, k, cfg.s_floor) if relative else np.ones(k)
        m_d = np.ones(k)
        if source.uses_deficit:
            if deficit is None or deficit.deficit_mwh.shape != s.shape:
                raise InputError(
                    f"mechanism.weight_source = {source.value!r} needs the deficit state of "
                    f"every node ({s.size})"
                )
            if relative:
                m_d = tier_normalisers(deficit.under_service, tier, k, cfg.deficit_floor)
        return cls(
            source=source,
            form=form,
            epsilon=float(cfg.epsilon),
            beta=float(cfg.beta),
            node_tier=tier,
            n_tier=k,
            demand=np.asarray(demand, dtype=float),
            memory=s,
            m_memory=m_s,
            deficit=deficit,
            m_deficit=m_d,
        )

    def _weights(self, s: np.ndarray | None, delta: np.ndarray | None) -> np.ndarray:
        w_s = w_d = None
        if s is not None:
            w_s = fairness_weights(s, self.node_tier, self.m_memory, self.epsilon, self.form)
        if delta is not None:
            # RAW reads delta+ itself; it is at most 1 (D <= C), clipped against rounding
            level = np.minimum(delta, 1.0) if self.form is WeightForm.RAW else delta
            w_d = fairness_weights(level, self.node_tier, self.m_deficit, self.epsilon, self.form)
        if w_s is not None and w_d is not None:
            return np.maximum(w_s, w_d)
        out = w_s if w_s is not None else w_d
        assert out is not None
        return out

    def start(self) -> np.ndarray:
        """Weights at the start of the interval, ``w(s(t), delta+(t))``."""
        s = self.memory if self.source.uses_memory else None
        delta = None
        if self.source.uses_deficit:
            assert self.deficit is not None
            delta = self.deficit.under_service
        return self._weights(s, delta)

    def coupled(self, served: np.ndarray, gamma: float) -> np.ndarray:
        """Weights of the state the interval would leave with outcome ``served`` (MW).

        Memory: ``s_gamma(x)``; deficit: ``delta_gamma(x) = max(D_gamma(x), 0) / (C + d dt)``
        with ``D_gamma(x) = D + gamma (r_l(x) d - x) dt``.
        """
        s = delta = None
        if self.source.uses_memory:
            s = coupled_memory(self.memory, shortfall_ratio(served, self.demand), self.beta, gamma)
        if self.source.uses_deficit:
            st = self.deficit
            assert st is not None
            dt = st.interval_h
            d_gamma = coupled_deficit(
                st.deficit_mwh, served, self.demand, self.node_tier, self.n_tier, dt, gamma
            )
            delta = under_service(d_gamma, st.demand_mwh + self.demand * dt)
        return self._weights(s, delta)

    def tier_lipschitz(self) -> np.ndarray:
        """Per-tier ``c_k`` (per unit coupling) of ``v = 1 / w`` in the shortfall ratios.

        Memory: ``beta / M_k`` (RAW: ``beta``); deficit: ``max_{i in k} kappa_i / M_k`` with
        ``kappa_i = d_i dt / (C_i + d_i dt)`` (RAW: ``M_k = 1``); BOTH: the larger of the two.
        """
        c = np.zeros(self.n_tier)
        if self.source.uses_memory:
            c = self.beta / self.m_memory
        if self.source.uses_deficit:
            st = self.deficit
            assert st is not None
            dt = st.interval_h
            kappa = deficit_share(self.demand, st.demand_mwh + self.demand * dt, dt)
            c = np.maximum(c, _tier_max(kappa, self.node_tier, self.n_tier) / self.m_deficit)
        return c
