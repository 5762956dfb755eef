"""Why a DC-OPF at full service is infeasible: one line a user can act on (HiGHS)."""

from __future__ import annotations

import dataclasses
import warnings

import pytest

from fpamm_opt.network import _net_to_raw, network_from_raw
from fpamm_opt.problem import explain_infeasible, solve_dcopf

pp = pytest.importorskip("pandapower")

pytestmark = pytest.mark.component


def _net(line_mva: float | None = None, island_load: bool = False) -> object:
    """ext_grid - bus 1 (gen) - bus 2 (load 80 MW); line 1-2 rated ``line_mva``."""
    net = pp.create_empty_network()
    b = [pp.create_bus(net, 110) for _ in range(3)]
    pp.create_ext_grid(net, b[0], max_p_mw=100, min_p_mw=0)
    pp.create_gen(net, b[1], p_mw=10, max_p_mw=30, min_p_mw=0)
    pp.create_load(net, b[2], p_mw=80)
    big = 99.0  # kA: no limit that binds
    pp.create_line_from_parameters(net, b[0], b[1], 10, 0.1, 0.4, 10, max_i_ka=big)
    ka = big if line_mva is None else line_mva / (110 * 3**0.5)
    pp.create_line_from_parameters(net, b[1], b[2], 10, 0.1, 0.4, 10, max_i_ka=ka)
    if island_load:
        c = pp.create_bus(net, 110)
        c2 = pp.create_bus(net, 110)
        pp.create_line_from_parameters(net, c, c2, 10, 0.1, 0.4, 10, max_i_ka=big)
        pp.create_load(net, c2, p_mw=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return network_from_raw(_net_to_raw("small", "small", net), "matpower")


def test_feasible_case_solves() -> None:
    res = solve_dcopf(_net(line_mva=200.0))
    assert res.status == "optimal"


def test_line_too_small_is_named_with_its_violation() -> None:
    net = _net(line_mva=50.0)
    assert solve_dcopf(net).status == "infeasible"
    why = explain_infeasible(net)
    assert "\n" not in why
    assert "1 branches cannot carry the flow" in why
    assert "branch 2 (line 1, pandapower buses 1-2) needs 30.0 MW over its 50.0 MW limit" in why


def test_island_without_generation_is_the_reason() -> None:
    net = _net(island_load=True)
    assert solve_dcopf(net).status == "infeasible"
    why = explain_infeasible(net)
    assert "5.0 MW of demand and no generator" in why


def test_no_network_reason_when_feasible() -> None:
    net = _net(line_mva=200.0)
    why = explain_infeasible(net)
    assert why.startswith("no network reason") and why.endswith("(numerical)")
    quad = dataclasses.replace(net, gen_cost_c2=net.gen_cost_c2 + 0.01)
    assert "quadratic costs" in explain_infeasible(quad)
