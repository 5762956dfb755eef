"""Lazy PTDF rows (``highs`` engine) against B-θ and the full PTDF: the same answers.

Parity on IEEE-14/57/118 (pandapower) and PGLib cases: the DC-OPF objective and prices, the
screening LP of the mechanism over many intervals (the monitored rows carried from interval
to interval), and each tier's deliverable energy of a lexicographic clear. The flows of a
lazy answer are checked against every branch limit, and the dense PTDF is never formed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fpamm_opt.lazyflow import FLOW_TOL_MW, FlowMonitor
from fpamm_opt.mechanism.types import IntervalInput
from fpamm_opt.network import (
    PTDF_DROP_ABS,
    PTDF_DROP_REL,
    load_network,
    network_from_raw,
    ptdf_keep_mask,
    read_raw_case,
)
from fpamm_opt.problem import AllocationProblem, solve_dcopf

pytestmark = pytest.mark.component

PGLIB_LARGE = Path(__file__).resolve().parents[3] / "shared" / "data" / "pglib-large"


def _dcopf_all(net):
    """The DC-OPF by every engine / formulation pair."""
    return {
        (e, f): solve_dcopf(net, f, engine=e)
        for e in ("highs", "pyomo")
        for f in ("btheta", "ptdf")
    }


def _assert_parity(res, net) -> None:
    ref = res[("pyomo", "btheta")]
    assert ref.status == "optimal"
    lo, hi = net.flow_limits_mw()
    for key, r in res.items():
        assert r.status == "optimal", key
        assert r.objective == pytest.approx(ref.objective, rel=1e-6), key
        scale = max(1.0, float(np.abs(ref.lmp).max()))
        # Prices are QP duals (quadratic costs): equal to the QP solver's tolerance.
        np.testing.assert_allclose(r.lmp, ref.lmp, rtol=0, atol=1e-5 * scale, err_msg=str(key))
    lazy = res[("highs", "ptdf")]
    assert np.all(lazy.flow_mw <= hi + FLOW_TOL_MW) and np.all(lazy.flow_mw >= lo - FLOW_TOL_MW)


@pytest.mark.parametrize("case", ["case14", "case57", "case118"])
def test_dcopf_parity_ieee(case: str) -> None:
    net = load_network(case, ratings="derived")
    _assert_parity(_dcopf_all(net), net)


@pytest.mark.parametrize("case", ["pglib_opf_case118_ieee", "pglib_opf_case300_ieee"])
def test_dcopf_parity_pglib(case: str, pglib_dir: Path) -> None:
    net = load_network(pglib_dir / f"{case}.m", convention="powermodels")
    _assert_parity(_dcopf_all(net), net)


def test_lazy_never_forms_the_dense_ptdf(pglib_dir: Path) -> None:
    net = network_from_raw(read_raw_case(pglib_dir / "pglib_opf_case300_ieee.m"), "powermodels")
    ref = solve_dcopf(net, "btheta", engine="highs")
    lazy = solve_dcopf(net, "ptdf", engine="highs")
    assert lazy.objective == pytest.approx(ref.objective, rel=1e-6)
    assert "ptdf" not in net.__dict__  # functools.cached_property stores it there


def test_case3012wp_k_lazy_matches_btheta() -> None:
    path = PGLIB_LARGE / "pglib_opf_case3012wp_k.m"
    if not path.exists():
        pytest.skip(f"{path} not found (large PGLib cases live in ../shared/data/pglib-large)")
    net = network_from_raw(read_raw_case(path), "powermodels")
    ref = solve_dcopf(net, "btheta", engine="highs")
    lazy = solve_dcopf(net, "ptdf", engine="highs")
    assert lazy.objective == pytest.approx(ref.objective, rel=1e-6)
    assert "ptdf" not in net.__dict__


def _scarce_intervals(net, n: int, seed: int = 3):
    rng = np.random.default_rng(seed)
    for t in range(n):
        d = net.node_demand_mw * rng.uniform(0.8, 1.2, net.n_node)
        a = net.gen_pmax_mw * rng.uniform(0.4, 1.0, net.n_gen)
        yield IntervalInput(t, d, a), rng.uniform(1.0, 20.0, net.n_node)


@pytest.mark.parametrize("case", ["case57", "case118"])
def test_screen_and_tiers_match_btheta_over_intervals(case: str) -> None:
    net = load_network(case, ratings="derived")
    tiers = np.random.default_rng(1).integers(0, 2, net.n_node)
    lazy = AllocationProblem(net, tiers, 2, formulation="ptdf", engine="highs")
    ref = AllocationProblem(net, tiers, 2, formulation="btheta", engine="highs")
    monitor = lazy.engine._lazy.monitor  # type: ignore[attr-defined]
    sizes = []
    for inp, w in _scarce_intervals(net, 20):
        s_lazy, s_ref = lazy.screen(inp), ref.screen(inp)
        assert s_lazy.ok and s_ref.ok
        assert s_lazy.objective == pytest.approx(s_ref.objective, rel=1e-6)
        c_lazy, c_ref = lazy.clear(inp, [0, 1], w), ref.clear(inp, [0, 1], w)
        assert c_lazy.ok and c_ref.ok
        total = float(inp.demand_mw.sum())
        np.testing.assert_allclose(
            c_lazy.tier_deliverable_mw, c_ref.tier_deliverable_mw, rtol=1e-6, atol=1e-6 * total
        )
        sizes.append(len(monitor.rows))
    # Rows are carried from interval to interval: the set only grows, and it stays a small
    # part of the network.
    assert sizes == sorted(sizes)
    assert 0 < sizes[-1] < net.n_branch


def test_monitor_rows_are_the_ptdf_rows_with_the_stated_drop() -> None:
    net = load_network("case118", ratings="derived")
    mon = FlowMonitor(net)
    ks = np.arange(0, net.n_branch, 5)
    h = net.ptdf[ks]
    keep = ptdf_keep_mask(h)
    cut = np.maximum(PTDF_DROP_ABS, PTDF_DROP_REL * np.abs(h).max(axis=1))
    assert np.all(np.abs(h[~keep]) < np.repeat(cut, (~keep).sum(axis=1)))
    for row, hk, kk in zip(mon.make_rows(ks), h, keep):
        g_keep = kk[net.gen_bus]
        np.testing.assert_allclose(row.gen_coef, -hk[net.gen_bus][g_keep], atol=1e-12)
        np.testing.assert_allclose(row.node_coef, hk[net.node_bus][kk[net.node_bus]], atol=1e-12)
    exact = mon.make_rows(ks, exact=True)
    assert all(r.exact for r in exact)


def test_ptdf_without_the_dense_matrix_equals_it() -> None:
    net = load_network("case118", ratings="derived")
    ks = np.arange(net.n_branch)
    np.testing.assert_allclose(net.ptdf_rows(ks), net.ptdf, atol=1e-12)
    mu = np.random.default_rng(0).normal(size=net.n_branch)
    np.testing.assert_allclose(net.ptdf_transpose_dot(mu), net.ptdf.T @ mu, atol=1e-9)


@pytest.mark.parametrize("case", ["case57", "case118"])
def test_tangent_cost_matches_the_qp(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The case's quadratic cost as tangent cuts (LPs) gives the QP's optimum (1e-9 gap)."""
    from fpamm_opt.fastpath import HighsEngine

    net = load_network(case, ratings="derived")
    assert net.has_quadratic_cost
    out = {}
    for form in ("tangents", "qp"):
        monkeypatch.setattr(HighsEngine, "case_cost_form", form)
        out[form] = solve_dcopf(net, "ptdf", engine="highs")
        assert out[form].status == "optimal"
    assert out["tangents"].objective == pytest.approx(out["qp"].objective, rel=1e-8)
    # Within REL_GAP = 1e-11 of the cost, the point is the QP's to about 1e-2 MW and the
    # prices (subgradients of the cuts) to about 1e-5 relative.
    np.testing.assert_allclose(out["tangents"].p_gen_mw, out["qp"].p_gen_mw, atol=1e-2)
    scale = float(np.abs(out["qp"].lmp).max())
    np.testing.assert_allclose(out["tangents"].lmp, out["qp"].lmp, rtol=0, atol=1e-5 * scale)
