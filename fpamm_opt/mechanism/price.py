"""The AMM scarcity price of the companion paper (MECHANISM.md section 3).

``p(t) = p_cap * (1 - min(1, S(t) / D(t)))`` with ``S`` the deliverable supply and ``D`` the
total demand; ``0`` when ``D == 0``. The result lies in ``[0, p_cap]``.
"""

from __future__ import annotations

__all__ = ["amm_price"]


def amm_price(deliverable_mw: float, demand_mw: float, p_cap: float) -> float:
    """AMM scarcity price ($/MWh).

    Parameters
    ----------
    deliverable_mw : float
        Deliverable supply ``S`` (MW); negative values count as 0.
    demand_mw : float
        Total demand ``D`` (MW).
    p_cap : float
        Price cap ($/MWh).

    Returns
    -------
    float
        ``p_cap * (1 - min(1, S / D))``; 0 when ``D <= 0``; nan if ``S`` is nan.
    """
    d = float(demand_mw)
    if d <= 0.0:
        return 0.0
    ratio = max(float(deliverable_mw), 0.0) / d
    return float(p_cap) * (1.0 - min(1.0, ratio))
