"""The per-interval allocation as a Pyomo block on top of the DC-OPF block.

Build contract
--------------
``build_allocation_block(a, dc, net, node_tier, n_tier)`` populates ``a`` with

Mutable parameters (set by :mod:`fpamm_opt.problem` between solves; the model is built once)
    ``weight[node]`` inverse-fairness weight ``w_i``; ``tier_priority[tier]`` ``π_ℓ``;
    ``c_gen[gen]`` ($/MWh), ``c_served[node]`` ($/MWh, negative = value of serving),
    ``q_served[node]`` (quadratic coefficient on served load, $/MW²h),
    ``c_level`` (cost of the max-min level), ``level_coef[node]``, ``level_rhs[node]``,
    ``tier_member[node]`` (0/1), ``tier_min_served`` (MW).
Variables
    ``level >= 0``: the common shortfall level ``λ`` of the weighted max-min rule.
Constraints
    ``ineq_level[node]``: ``x_i + coef_i λ >= rhs_i``; with ``coef_i = d_i v_i`` and
    ``rhs_i = d_i`` this is ``u_i <= λ v_i`` (shortfall ratio at most the level times
    ``v_i = 1/w_i``); with ``coef = 1, rhs = 0`` it is inactive (``x, λ >= 0``).
    ``ineq_tier_total``: ``Σ_i member_i x_i >= tier_min_served`` (the tier's deliverable
    energy, fixed lexicographically).
Objectives (exactly one active, chosen by the problem)
    ``obj_lp``: ``Σ c_gen p + Σ c_served x + c_level λ``.
    ``obj_qp``: ``obj_lp + Σ q_served x² / 2`` (the reference QP rule
    ``min Σ w_i d_i u_i²/2 = Σ (w_i/d_i) x_i²/2 - w_i x_i + const``).
    ``obj_case``: the case's own generation cost (plain DC-OPF).
"""

from __future__ import annotations

import numpy as np
import pyomo.environ as pyo

from fpamm_opt.blocks.dcopf import secant_price
from fpamm_opt.network import NetworkData


def build_allocation_block(
    a: pyo.Block, dc: pyo.Block, net: NetworkData, node_tier: np.ndarray, n_tier: int
) -> None:
    """Populate ``a`` (see module docstring); ``dc`` is a built DC-OPF block."""
    a.tier = pyo.Set(initialize=range(n_tier), ordered=True)
    tiers = np.asarray(node_tier, dtype=int)
    a.node_tier = pyo.Param(dc.node, initialize=lambda _a, i: int(tiers[i]), within=pyo.Integers)
    a.tier_priority = pyo.Param(a.tier, mutable=True, initialize=1.0)
    a.weight = pyo.Param(dc.node, mutable=True, initialize=1.0)
    price = secant_price(net)
    a.c_gen = pyo.Param(dc.gen, mutable=True, initialize=lambda _a, g: float(price[g]))
    a.c_served = pyo.Param(dc.node, mutable=True, initialize=0.0)
    a.q_served = pyo.Param(dc.node, mutable=True, initialize=0.0)
    a.c_level = pyo.Param(mutable=True, initialize=0.0)
    # Inactive rows are x_i + λ >= 0 and Σ x >= 0: coefficients never zero (see problem.py).
    a.level_coef = pyo.Param(dc.node, mutable=True, initialize=1.0)
    a.level_rhs = pyo.Param(dc.node, mutable=True, initialize=0.0)
    a.tier_member = pyo.Param(dc.node, mutable=True, initialize=1.0)
    a.tier_min_served = pyo.Param(mutable=True, initialize=0.0)

    a.level = pyo.Var(bounds=(0.0, None), initialize=0.0)

    @a.Constraint(dc.node)
    def ineq_level(_a, i):
        r"""Weighted level :math:`x_i + d_i v_i \lambda \ge d_i`, i.e. :math:`u_i \le \lambda v_i`."""
        return dc.pl[i] + _a.level_coef[i] * _a.level >= _a.level_rhs[i]

    @a.Constraint()
    def ineq_tier_total(_a):
        r"""Tier energy :math:`\sum_{i \in \ell} x_i \ge Q_\ell` (MW)."""
        return sum(_a.tier_member[i] * dc.pl[i] for i in dc.node) >= _a.tier_min_served

    def lp_expr(_a):
        return (
            sum(_a.c_gen[g] * dc.pg[g] for g in dc.gen)
            + sum(_a.c_served[i] * dc.pl[i] for i in dc.node)
            + _a.c_level * _a.level
        )

    a.obj_lp = pyo.Objective(rule=lp_expr, sense=pyo.minimize)
    a.obj_qp = pyo.Objective(
        expr=lp_expr(a) + sum(0.5 * a.q_served[i] * dc.pl[i] ** 2 for i in dc.node),
        sense=pyo.minimize,
    )
    a.obj_case = pyo.Objective(expr=dc.gen_cost, sense=pyo.minimize)
    a.obj_qp.deactivate()
    a.obj_case.deactivate()
