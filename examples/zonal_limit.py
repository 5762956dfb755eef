"""Example extension: a zonal import limit on the DC-OPF (the public extension seam).

A *zone* ``Z`` is a set of buses. Its net import is the power flowing into ``Z`` over the
branches that cross its boundary; this extension caps it::

    I_Z = Σ_{l ∈ L_in(Z)} pf_l - Σ_{l ∈ L_out(Z)} pf_l  <=  limit_mw

``L_in(Z)``: branches with the to-bus in ``Z`` and the from-bus outside; ``L_out(Z)``: the
reverse (``pf_l`` is the from-side flow, so a branch leaving ``Z`` imports ``-pf_l``).

Use it from a run specification (see ``examples/zonal_limit.toml``)::

    [[extensions]]
    function = "zonal_limit.py:zonal_import_limit"   # relative to the spec file
    buses = [5, 10, 11, 12, 13]                      # external bus numbers, or:
    # center_bus = 5, radius = 1                     # every bus within 1 branch of bus 5
    limit_mw = 20.0

The callable is called as ``zonal_import_limit(model, net, **kwargs)`` after the DC-OPF block
``model.dcopf`` and the allocation block ``model.alloc`` exist. It only adds a block
``model.<name>`` with a constraint on ``model.dcopf.pf``: no mutable parameter is involved, so
the fast HiGHS engine keeps working (``fpamm_opt.problem.extension_is_static``). Because the
constraint only restricts the feasible set, ``X(t)`` stays non-empty as long as the zone can
shed its own load (``limit_mw`` at least the zone's fixed withdrawal).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyomo.environ as pyo

from fpamm_opt.errors import InputError
from fpamm_opt.network import NetworkData


def zone_buses(
    net: NetworkData,
    buses: Sequence[int] | None = None,
    center_bus: int | None = None,
    radius: int = 1,
) -> np.ndarray:
    """Internal indices of the zone's buses.

    Parameters
    ----------
    net : NetworkData
    buses : sequence of int, optional
        External bus numbers (``net.bus_ids``) of the zone.
    center_bus : int, optional
        External number of a bus; the zone is every bus within ``radius`` in-service branches
        of it (a connected area). Exactly one of ``buses`` and ``center_bus`` is given.
    radius : int
        Number of branch hops from ``center_bus`` (>= 0).
    """
    lookup = {int(b): k for k, b in enumerate(net.bus_ids)}
    if (buses is None) == (center_bus is None):
        raise InputError("zonal limit: give exactly one of 'buses' and 'center_bus'")
    if buses is not None:
        if isinstance(buses, str | bytes) or not isinstance(buses, Sequence) or not buses:
            raise InputError(f"zonal limit: 'buses' must be a non-empty list, got {buses!r}")
        out = []
        for b in buses:
            if isinstance(b, bool) or not isinstance(b, int) or int(b) not in lookup:
                raise InputError(f"zonal limit: bus {b!r} is not a bus of {net.name}")
            out.append(lookup[int(b)])
        return np.unique(np.asarray(out, dtype=int))
    if isinstance(center_bus, bool) or not isinstance(center_bus, int) or center_bus not in lookup:
        raise InputError(f"zonal limit: center_bus {center_bus!r} is not a bus of {net.name}")
    if isinstance(radius, bool) or not isinstance(radius, int) or radius < 0:
        raise InputError(f"zonal limit: radius must be an integer >= 0, got {radius!r}")
    zone = {lookup[center_bus]}
    frontier = set(zone)
    for _ in range(radius):
        nxt = set()
        for f, t in zip(net.branch_from.tolist(), net.branch_to.tolist()):
            if f in frontier and t not in zone:
                nxt.add(t)
            if t in frontier and f not in zone:
                nxt.add(f)
        zone |= nxt
        frontier = nxt
    return np.array(sorted(zone), dtype=int)


def boundary_branches(net: NetworkData, zone: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Branch indices ``(L_in, L_out)`` crossing the boundary of ``zone`` (bus indices)."""
    inside = np.zeros(net.n_bus, dtype=bool)
    inside[zone] = True
    f_in, t_in = inside[net.branch_from], inside[net.branch_to]
    return np.flatnonzero(t_in & ~f_in), np.flatnonzero(f_in & ~t_in)


def zonal_import_limit(
    model: pyo.ConcreteModel,
    net: NetworkData,
    *,
    limit_mw: float,
    buses: Sequence[int] | None = None,
    center_bus: int | None = None,
    radius: int = 1,
    name: str = "zonal",
) -> None:
    """Add the block ``model.<name>`` limiting the zone's net import (module docstring).

    Block contents
    --------------
    ``bus``, ``branch_in``, ``branch_out`` (Sets), ``limit_mw`` (Param, MW, not mutable),
    ``import_mw`` (Expression, MW) and the constraint ``ineq_import``::

        Σ_{l ∈ branch_in} pf_l - Σ_{l ∈ branch_out} pf_l <= limit_mw

    Raises
    ------
    InputError
        Unknown buses, an empty boundary, a negative or non-finite limit, a name in use.
    """
    if isinstance(limit_mw, bool) or not isinstance(limit_mw, int | float):
        raise InputError(f"zonal limit: limit_mw must be a number, got {limit_mw!r}")
    if not np.isfinite(limit_mw) or limit_mw < 0:
        raise InputError(f"zonal limit: limit_mw must be finite and >= 0, got {limit_mw!r}")
    if not isinstance(name, str) or not name.isidentifier() or hasattr(model, name):
        raise InputError(f"zonal limit: name {name!r} is not a free component name")
    zone = zone_buses(net, buses, center_bus, radius)
    into, out = boundary_branches(net, zone)
    if into.size + out.size == 0:
        raise InputError(
            f"zonal limit: the zone {net.bus_ids[zone].tolist()} has no boundary branch"
        )
    pf = model.dcopf.pf

    blk = pyo.Block(doc="Zonal import limit: Σ_in pf - Σ_out pf <= limit_mw")
    model.add_component(name, blk)
    blk.bus = pyo.Set(initialize=zone.tolist(), ordered=True, doc="buses of the zone")
    blk.branch_in = pyo.Set(initialize=into.tolist(), ordered=True, doc="to-bus in the zone")
    blk.branch_out = pyo.Set(initialize=out.tolist(), ordered=True, doc="from-bus in the zone")
    blk.limit_mw = pyo.Param(initialize=float(limit_mw), mutable=False, doc="import cap (MW)")

    @blk.Expression(doc="net import into the zone (MW)")
    def import_mw(b: pyo.Block) -> pyo.Expression:
        return sum(pf[k] for k in b.branch_in) - sum(pf[k] for k in b.branch_out)

    @blk.Constraint(doc="I_Z = Σ_in pf_l - Σ_out pf_l <= limit_mw")
    def ineq_import(b: pyo.Block) -> pyo.Expression:
        return b.import_mw <= b.limit_mw


def zonal_import_mw(
    net: NetworkData,
    flow_mw: np.ndarray,
    buses: Sequence[int] | None = None,
    center_bus: int | None = None,
    radius: int = 1,
) -> np.ndarray:
    """The zone's net import (MW) from stored flows ``(..., n_branch)`` (for checks, plots)."""
    zone = zone_buses(net, buses, center_bus, radius)
    into, out = boundary_branches(net, zone)
    f = np.asarray(flow_mw, dtype=float)
    return f[..., into].sum(axis=-1) - f[..., out].sum(axis=-1)
