"""The DC-OPF feasibility set ``X(t)`` as a reusable Pyomo block.

Build contract
--------------
``build_dcopf_block(b, net, formulation, flow_rows=True)`` populates an empty ``Block`` ``b``
with

Sets
    ``bus``, ``node`` (load nodes), ``gen``, ``branch`` (0-based internal indices).
Mutable parameters (the only things that change between solves)
    ``pd[node]`` demand ``d_i(t)`` (MW); ``pl_lo[node]``, ``pl_hi[node]`` bounds of served
    load (``0`` and ``d`` in ``X(t)``; ``d`` and ``d`` for a plain DC-OPF; narrowed while tiers
    are fixed lexicographically); ``pg_max[gen]`` available capacity ``ḡ_g(t)`` (MW),
    ``pg_min[gen]`` minimum output (0 in the mechanism: relaxed so that ``X(t)`` is never
    empty).
Variables
    ``pg[gen]`` generation (MW), ``pl[node]`` served load (MW), ``pf[branch]`` from-side flow
    (MW); B-θ only: ``va[bus]`` voltage angle (rad).
Expressions
    ``p_load_shed[node] = pd - pl`` (MW), ``gen_cost`` ($/h, the case's own polynomial),
    ``gen_cost_linear`` ($/h, with the secant price ``c1 + c2 pmax`` per MW).
Constraints
    B-θ: ``eq_p_balance[bus]``, ``eq_pf[branch]``; reference angles fixed to 0.
    PTDF: ``eq_p_balance[island]``, ``eq_pf_ptdf[branch]`` (rows generated from the sparse
    LU of the reduced ``B``, never the dense PTDF, coefficients below ``1e-10`` dropped; left
    out with ``flow_rows=False``, when the ``highs`` engine carries them lazily and drops
    below ``max(1e-10, 1e-6 · max|row|)`` until a row binds, :mod:`fpamm_opt.lazyflow`).
    Thermal and angle-difference limits are bounds of ``pf``: ``|pf| <= rate`` and
    ``angmin <= pf/(base b) + shift <= angmax`` (the angle difference of a branch is a linear
    function of its flow), so both formulations describe the same set.

Extension seam: a user adds constraints to ``b`` (or to the model around it) after it is
built; nothing here depends on the block being closed. See ``fpamm_opt.problem``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

import numpy as np
import pyomo.environ as pyo

from fpamm_opt.network import PTDF_ROW_CHUNK, NetworkData, ptdf_keep_mask


class Formulation(enum.StrEnum):
    """Two descriptions of the same DC feasibility set."""

    BTHETA = "btheta"
    PTDF = "ptdf"


def flow_bounds_mw(net: NetworkData) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of ``pf``: thermal ratings and angle-difference limits (see NetworkData)."""
    return net.flow_limits_mw()


def _bound(v: float) -> float | None:
    return None if not np.isfinite(v) else float(v)


def build_dcopf_block(
    b: pyo.Block, net: NetworkData, formulation: Formulation | str, flow_rows: bool = True
) -> None:
    """Populate ``b`` with the DC-OPF feasibility set (see module docstring).

    ``flow_rows=False`` (PTDF only) leaves out ``eq_pf_ptdf``: the ``highs`` engine then
    carries the branch rows lazily (:mod:`fpamm_opt.lazyflow`); any other solver needs them,
    :func:`add_ptdf_flow_rows` adds them later.
    """
    formulation = Formulation(formulation)
    b.formulation = formulation.value
    _add_sets_and_params(b, net)
    _add_variables(b, net)
    _add_cost_expressions(b, net)
    if formulation is Formulation.BTHETA:
        _add_btheta_rows(b, net)
    else:
        _add_ptdf_balance(b, net)
        if flow_rows:
            add_ptdf_flow_rows(b, net)


def _add_sets_and_params(b: pyo.Block, net: NetworkData) -> None:
    """Sets ``bus``, ``node``, ``gen``, ``branch``; mutable ``pd``, ``pl_lo``, ``pl_hi``,
    ``pg_max``, ``pg_min`` (MW)."""
    b.bus = pyo.Set(initialize=range(net.n_bus), ordered=True)
    b.node = pyo.Set(initialize=range(net.n_node), ordered=True)
    b.gen = pyo.Set(initialize=range(net.n_gen), ordered=True)
    b.branch = pyo.Set(initialize=range(net.n_branch), ordered=True)
    d0 = net.node_demand_mw
    b.pd = pyo.Param(b.node, mutable=True, initialize=lambda _b, i: float(d0[i]))
    b.pl_lo = pyo.Param(b.node, mutable=True, initialize=0.0)
    b.pl_hi = pyo.Param(b.node, mutable=True, initialize=lambda _b, i: float(d0[i]))
    b.pg_max = pyo.Param(b.gen, mutable=True, initialize=lambda _b, g: float(net.gen_pmax_mw[g]))
    b.pg_min = pyo.Param(b.gen, mutable=True, initialize=0.0)


def _add_variables(b: pyo.Block, net: NetworkData) -> None:
    r"""``pg ∈ [pg_min, pg_max]``, ``pl ∈ [pl_lo, pl_hi]``, ``pf ∈ [f_lo, f_hi]`` (MW): the
    flow bounds are the ratings and angle limits (:func:`flow_bounds_mw`)."""
    b.pg = pyo.Var(b.gen, bounds=lambda _b, g: (_b.pg_min[g], _b.pg_max[g]), initialize=0.0)
    b.pl = pyo.Var(b.node, bounds=lambda _b, i: (_b.pl_lo[i], _b.pl_hi[i]), initialize=0.0)
    f_lo, f_hi = flow_bounds_mw(net)
    b.pf = pyo.Var(
        b.branch,
        bounds=lambda _b, k: (_bound(float(f_lo[k])), _bound(float(f_hi[k]))),
        initialize=0.0,
    )


def _add_cost_expressions(b: pyo.Block, net: NetworkData) -> None:
    """``p_load_shed``, ``gen_cost`` (the case's polynomial), ``gen_cost_linear`` (secant)."""

    @b.Expression(b.node)
    def p_load_shed(_b, i):
        r"""Shed load :math:`d_i - x_i` (MW)."""
        return _b.pd[i] - _b.pl[i]

    c2, c1, c0 = net.gen_cost_c2, net.gen_cost_c1, net.gen_cost_c0

    @b.Expression()
    def gen_cost(_b):
        r"""Case cost :math:`\sum_g c_{2,g} p_g^2 + c_{1,g} p_g + c_{0,g}` ($/h)."""
        # Quadratic terms only where c2 > 0, so a linear-cost case stays an LP for LP solvers.
        return sum(
            (c2[g] * _b.pg[g] ** 2 if c2[g] != 0 else 0) + c1[g] * _b.pg[g] + c0[g] for g in _b.gen
        )

    price = secant_price(net)

    @b.Expression()
    def gen_cost_linear(_b):
        r"""LP cost :math:`\sum_g (c_{1,g} + c_{2,g}\,\bar p_g) p_g` ($/h), the secant price."""
        return sum(price[g] * _b.pg[g] for g in _b.gen)


def _at_bus(n_bus: int, where: np.ndarray) -> list[list[int]]:
    """For each bus, the elements (generators, nodes, branch ends) ``where`` puts there."""
    out: list[list[int]] = [[] for _ in range(n_bus)]
    for k, bus in enumerate(np.asarray(where).tolist()):
        out[bus].append(k)
    return out


def _injection_rule(net: NetworkData) -> Callable[[pyo.Block, int], Any]:
    """Rule of the net injection of a bus: generation minus served load minus fixed (MW)."""
    gens_at = _at_bus(net.n_bus, net.gen_bus)
    nodes_at = _at_bus(net.n_bus, net.node_bus)
    fixed = net.bus_fixed_withdrawal_mw

    def injection(_b, bus):
        r""":math:`\text{inj}_b = \sum_{g\in b} p_g - \sum_{i\in b} x_i - p^{fix}_b` (MW)."""
        return (
            sum(_b.pg[g] for g in gens_at[bus])
            - sum(_b.pl[i] for i in nodes_at[bus])
            - float(fixed[bus])
        )

    return injection


def _add_btheta_rows(b: pyo.Block, net: NetworkData) -> None:
    """``va`` (reference angles fixed to 0), ``eq_p_balance[bus]``, ``eq_pf[branch]``."""
    b.va = pyo.Var(b.bus, initialize=0.0)
    for bus in np.flatnonzero(net.bus_ref):
        b.va[int(bus)].fix(0.0)
    out_of = _at_bus(net.n_bus, net.branch_from)
    into = _at_bus(net.n_bus, net.branch_to)
    bb = net.base_mva * net.branch_b_pu
    shift = net.branch_shift_rad
    injection = _injection_rule(net)

    @b.Constraint(b.bus)
    def eq_p_balance(_b, bus):
        r"""Nodal balance :math:`\sum_{g\in b} p_g - \sum_{i\in b} x_i - p^{fix}_b
        = \sum_{l: f(l)=b} p^f_l - \sum_{l: t(l)=b} p^f_l` (MW)."""
        return injection(_b, bus) == sum(_b.pf[k] for k in out_of[bus]) - sum(
            _b.pf[k] for k in into[bus]
        )

    @b.Constraint(b.branch)
    def eq_pf(_b, k):
        r"""DC flow :math:`p^f_l = S_{base} b_l (\theta_{f(l)} - \theta_{t(l)} - \phi_l)`."""
        f, t = int(net.branch_from[k]), int(net.branch_to[k])
        return _b.pf[k] == float(bb[k]) * (_b.va[f] - _b.va[t] - float(shift[k]))


def _add_ptdf_balance(b: pyo.Block, net: NetworkData) -> None:
    """``island`` set, ``p_inj[bus]`` expression, ``eq_p_balance[island]``."""
    islands = sorted({int(v) for v in net.bus_island})
    b.island = pyo.Set(initialize=islands, ordered=True)
    members = {isl: np.flatnonzero(net.bus_island == isl) for isl in islands}
    b.p_inj = pyo.Expression(b.bus, rule=_injection_rule(net))

    @b.Constraint(b.island)
    def eq_p_balance(_b, isl):
        r"""Island balance :math:`\sum_{b \in I} (\text{injection}_b) = 0` (MW)."""
        return sum(_b.p_inj[int(bus)] for bus in members[isl]) == 0


def add_ptdf_flow_rows(b: pyo.Block, net: NetworkData) -> None:
    """``eq_pf_ptdf[branch]`` on a PTDF block, every row, without the dense PTDF.

    Rows come from the sparse LU in chunks of :data:`~fpamm_opt.network.PTDF_ROW_CHUNK`;
    coefficients below :data:`~fpamm_opt.network.PTDF_DROP_ABS` (noise) are dropped.
    """
    shift_inj = net.shift_injection_mw
    shift_flow = net.shift_flow_mw
    coef: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def row(k: int) -> tuple[np.ndarray, np.ndarray]:
        if k not in coef:
            coef.clear()
            chunk = np.arange(k, min(k + PTDF_ROW_CHUNK, net.n_branch))
            h = net.ptdf_rows(chunk)
            keep = ptdf_keep_mask(h, rel=0.0)
            for r, kk in enumerate(chunk.tolist()):
                cols = np.flatnonzero(keep[r])
                coef[kk] = (cols, h[r, cols])
        return coef[k]

    @b.Constraint(b.branch)
    def eq_pf_ptdf(_b, k):
        r"""PTDF flow :math:`p^f_l = \sum_b H_{lb} (\text{inj}_b + p^{\phi}_b) - p^{\phi}_l`."""
        cols, h = row(int(k))
        const = float(h @ shift_inj[cols]) - float(shift_flow[k])
        return _b.pf[k] == sum(float(v) * _b.p_inj[int(c)] for c, v in zip(cols, h)) + const


def secant_price(net: NetworkData) -> np.ndarray:
    """Per-MW price of each generator in the LP cost model: ``c1 + c2 * pmax`` ($/MWh).

    The secant of the quadratic cost over ``[0, pmax]``: an LP keeps the fast hot-started
    solves of the mechanism; ``fpamm dcopf`` uses the case's own (quadratic) costs.
    """
    return net.gen_cost_c1 + net.gen_cost_c2 * net.gen_pmax_mw


def count_components(b: pyo.Block) -> dict[str, int]:
    """Number of variables and constraints (scalar entries) in a block, for build tests."""
    n_var = sum(1 for _ in b.component_data_objects(pyo.Var, descend_into=True))
    n_con = sum(1 for _ in b.component_data_objects(pyo.Constraint, descend_into=True))
    n_fixed = sum(1 for v in b.component_data_objects(pyo.Var, descend_into=True) if v.fixed)
    return {"variables": n_var, "constraints": n_con, "fixed": n_fixed}
