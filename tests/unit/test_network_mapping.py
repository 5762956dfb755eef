"""pandapower networks as users bring them: the element mapping and the island balance.

No solver here: the mapping and :func:`fpamm_opt.network.adequacy_reason` are NumPy.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from fpamm_opt.network import (
    DEFAULT_COST_GEN,
    DEFAULT_COST_IMPORT,
    DEFAULT_COST_RENEWABLE,
    NetworkMappingWarning,
    _net_to_raw,
    adequacy_reason,
    island_balances,
    load_network,
    network_from_raw,
)

pp = pytest.importorskip("pandapower")

pytestmark = pytest.mark.unit


def _user_net(storage: bool = True, eg_limits: bool = True) -> object:
    """4 buses in a chain: ext_grid (limits), gen without cost, sgen, storage, load, shunt."""
    net = pp.create_empty_network()
    b = [pp.create_bus(net, 110) for _ in range(4)]
    if eg_limits:
        pp.create_ext_grid(net, b[0], max_p_mw=50, min_p_mw=-10)
    else:
        pp.create_ext_grid(net, b[0])
    pp.create_gen(net, b[1], p_mw=20, max_p_mw=40, min_p_mw=0)
    pp.create_sgen(net, b[2], p_mw=15, scaling=0.8)
    if storage:
        pp.create_storage(net, b[3], p_mw=5, max_e_mwh=10)
    pp.create_load(net, b[3], p_mw=60, q_mvar=10)
    pp.create_shunt(net, b[2], q_mvar=1, p_mw=0.5)
    for i in range(3):
        pp.create_line_from_parameters(net, b[i], b[i + 1], 10, 0.1, 0.4, 10, 0.5)
    return net


def _convert(net: object) -> tuple[object, list[str]]:
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        raw = _net_to_raw("user", "user", net)
    msgs = [str(w.message) for w in got if issubclass(w.category, NetworkMappingWarning)]
    return network_from_raw(raw, "matpower"), msgs


def test_elements_become_generation_imports_and_one_warning_line() -> None:
    user = _user_net()
    net, msgs = _convert(user)
    # ext_grid (limits kept), gen (no cost: default), sgen (available at p_mw * scaling)
    assert net.n_gen == 3
    np.testing.assert_allclose(net.gen_pmax_mw, [50.0, 40.0, 12.0])
    np.testing.assert_allclose(net.gen_pmin_mw, [-10.0, 0.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(
        net.gen_cost_c1, [DEFAULT_COST_IMPORT, DEFAULT_COST_GEN, DEFAULT_COST_RENEWABLE]
    )
    # storage is not modelled: not in the demand, named in exactly one warning line
    np.testing.assert_allclose(net.node_demand_mw, [60.0])
    assert len(msgs) == 1 and "1 storage" in msgs[0] and "\n" not in msgs[0]
    assert net.mapping_warning == msgs[0]
    kinds = {e.kind: e for e in net.elements}
    assert {"bus", "line", "load", "shunt", "gen", "sgen", "ext_grid", "storage"} <= set(kinds)
    assert kinds["storage"].count == 1 and "not modelled" in kinds["storage"].became
    assert "non-controllable" in kinds["sgen"].became
    assert f"{DEFAULT_COST_GEN:g} $/MWh" in kinds["gen"].became
    # shunt active power is a fixed withdrawal at 1 p.u.
    assert net.bus_fixed_withdrawal_mw.sum() == pytest.approx(0.5)
    # the user's network is untouched
    assert len(user.poly_cost) == 0 and bool(user.storage.in_service.iat[0])
    assert net.summary()["elements"][0]["kind"] == "bus"


def test_ext_grid_without_limits_gets_the_documented_default() -> None:
    net, msgs = _convert(_user_net(storage=False, eg_limits=False))
    assert msgs == [] and net.mapping_warning == ""
    assert net.gen_pmax_mw[0] == pytest.approx(60.0)  # total load
    assert net.gen_pmin_mw[0] == pytest.approx(0.0, abs=1e-9)  # no export


def test_costed_cases_convert_as_before() -> None:
    # pandapower's IEEE cases carry costs for every element: nothing defaulted
    net = load_network("case14")
    assert net.mapping_warning == ""
    np.testing.assert_allclose(net.gen_cost_c1, [20.0, 20.0, 40.0, 40.0, 40.0])
    assert net.gen_pmax_mw[0] == pytest.approx(332.4)
    assert not any("$/MWh" in e.became for e in net.elements)
    # sgens declared non-controllable in a costed case stay fixed injections (6 of them)
    pegase = load_network("case89pegase")
    assert pegase.n_gen == 12
    assert "fixed injection" in {e.kind: e for e in pegase.elements}["sgen"].became


def test_island_without_generation_is_named() -> None:
    user = _user_net(storage=False)
    b = pp.create_bus(user, 110)
    b2 = pp.create_bus(user, 110)
    pp.create_line_from_parameters(user, b, b2, 10, 0.1, 0.4, 10, 0.5)
    pp.create_load(user, b2, p_mw=7)
    net, _ = _convert(user)
    isl = island_balances(net)
    assert len(isl) == 2
    why = adequacy_reason(net)
    assert why is not None and "7.0 MW of demand and no generator" in why
    assert "\n" not in why


def test_generation_short_of_demand_by_how_much() -> None:
    net, _ = _convert(_user_net(storage=False))
    assert adequacy_reason(net) is None  # 102 MW of generation for 60.5 MW
    why = adequacy_reason(net, demand_mw=np.array([120.0]))
    assert why is not None and "short of demand 120.5 MW by 18.5 MW" in why
    why = adequacy_reason(net, demand_mw=np.array([1.0]), available_mw=np.array([50, 40, 12]))
    assert why is None  # export allowed down to -10 MW covers the 0 MW lower limits


def test_load_on_a_bus_without_branches_is_named_not_lost_silently() -> None:
    user = _user_net(storage=False)
    b = pp.create_bus(user, 110)
    pp.create_load(user, b, p_mw=3)
    _, msgs = _convert(user)
    assert len(msgs) == 1 and "3.0 MW of load on 1 in-service buses without any branch" in msgs[0]
    user.bus.loc[b, "in_service"] = False  # switched off on purpose: nothing to say
    _, msgs = _convert(user)
    assert msgs == []


def test_lines_without_max_loading_percent_are_rated_at_100() -> None:
    user = _user_net(storage=False)
    user.line["max_i_ka"] = 0.1  # 19.05 MVA at 110 kV
    net, _ = _convert(user)
    np.testing.assert_allclose(net.branch_rate_mw, 0.1 * 110 * 3**0.5, rtol=1e-9)
    assert "rated at 100%" in {e.kind: e for e in net.elements}["line"].became
