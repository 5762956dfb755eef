"""NetworkData: loaders, filtering, linear algebra, ratings, immutability, bad input.

No solver here: every number is checked against NumPy or against the source case.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

from fpamm_opt.errors import CaseError, FpammError
from fpamm_opt.network import (
    Convention,
    NetworkData,
    RatingPolicy,
    list_cases,
    load_network,
)

pytestmark = pytest.mark.unit

PGLIB14 = "pglib_opf_case14_ieee.m"
PGLIB300 = "pglib_opf_case300_ieee.m"


@pytest.fixture(scope="module")
def pp_case14() -> NetworkData:
    return load_network("case14")


def _one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    msg = str(exc.value)
    assert msg and "\n" not in msg, f"error message must be one line, got {msg!r}"
    return msg


def _balanced_injections(net: NetworkData, n: int, seed: int = 0) -> np.ndarray:
    """Random injections summing to zero on every island (MW)."""
    rng = np.random.default_rng(seed)
    inj = rng.normal(0.0, 50.0, size=(n, net.n_bus))
    for isl in np.unique(net.bus_island):
        members = net.bus_island == isl
        inj[:, members] -= inj[:, members].mean(axis=1, keepdims=True)
    return inj


# ------------------------------------------------------------------ loaders --
def test_pandapower_name_loads_case14(pp_case14: NetworkData) -> None:
    net = pp_case14
    assert (net.n_bus, net.n_branch, net.n_gen, net.n_node) == (14, 20, 5, 11)
    assert net.source == "pandapower:case14"
    assert net.base_mva == pytest.approx(100.0)
    assert net.convention is Convention.MATPOWER
    assert net.node_demand_mw.sum() == pytest.approx(259.0)
    assert int(net.bus_ref.sum()) == 1
    assert np.all(net.node_demand_mw > 0)
    assert np.all(net.gen_pmax_mw >= net.gen_pmin_mw)


def test_matpower_file_loads(pglib_dir: Path) -> None:
    net = load_network(pglib_dir / PGLIB14)
    assert net.name == "pglib_opf_case14_ieee"
    assert (net.n_bus, net.n_branch, net.n_gen) == (14, 20, 5)
    assert net.node_demand_mw.sum() == pytest.approx(259.0)
    assert net.ratings.source == "case" and net.ratings.n_limited == 20
    assert np.all(np.isfinite(net.branch_rate_mw))
    # MATPOWER convention: b = 1/(x*tap); compare one plain line with the file (0.05917).
    assert net.branch_b_pu[0] == pytest.approx(1 / 0.05917)


def test_conventions_differ_only_in_branch_model(pglib_dir: Path) -> None:
    mp = load_network(pglib_dir / PGLIB14, convention="matpower")
    pm = load_network(pglib_dir / PGLIB14, convention="powermodels")
    assert mp.convention is Convention.MATPOWER and pm.convention is Convention.POWERMODELS
    np.testing.assert_array_equal(mp.node_demand_mw, pm.node_demand_mw)
    np.testing.assert_array_equal(mp.gen_pmax_mw, pm.gen_pmax_mw)
    # PowerModels: b = x / (r^2 + x^2) on branch 1 (r = 0.01938, x = 0.05917).
    r, x = 0.01938, 0.05917
    assert pm.branch_b_pu[0] == pytest.approx(x / (r * r + x * x))
    assert np.all(pm.branch_shift_rad == 0)
    assert np.all(np.isinf(mp.branch_angmin_rad)) and np.all(np.isinf(mp.branch_angmax_rad))
    assert np.all(np.isfinite(pm.branch_angmin_rad))  # pglib: +-30 degrees


def test_pandapower_json_loads_like_the_name(tmp_path: Path, pp_case14: NetworkData) -> None:
    import pandapower as pp
    import pandapower.networks as pn

    path = tmp_path / "c14.json"
    pp.to_json(pn.case14(), str(path))
    net = load_network(path)
    assert net.name == "c14" and net.source == str(path)
    assert (net.n_bus, net.n_branch, net.n_gen, net.n_node) == (14, 20, 5, 11)
    np.testing.assert_allclose(net.branch_b_pu, pp_case14.branch_b_pu, rtol=1e-12)
    np.testing.assert_allclose(net.node_demand_mw, pp_case14.node_demand_mw, rtol=1e-12)
    np.testing.assert_allclose(net.gen_cost_c1, pp_case14.gen_cost_c1, rtol=1e-12)


def test_out_of_service_elements_are_dropped_from_json(tmp_path: Path) -> None:
    import pandapower as pp
    import pandapower.networks as pn

    pnet = pn.case14()
    pnet.line.loc[pnet.line.index[0], "in_service"] = False
    pnet.gen.loc[pnet.gen.index[0], "in_service"] = False
    path = tmp_path / "c14_oos.json"
    pp.to_json(pnet, str(path))
    net = load_network(path)
    assert (net.n_branch, net.n_gen) == (19, 4)
    assert net.n_bus == 14


def test_out_of_service_elements_are_dropped_from_matpower(write_case) -> None:
    full = load_network(write_case("full.m"))
    cut = load_network(write_case("cut.m", g2_status=0, br2_status=0))
    assert (full.n_gen, full.n_branch) == (2, 3)
    assert (cut.n_gen, cut.n_branch) == (1, 2)
    # Branch ids keep the row numbers of the source case.
    np.testing.assert_array_equal(cut.branch_ids, [1, 3])
    np.testing.assert_array_equal(cut.gen_bus, [0])


def test_list_cases_offers_pandapower_names() -> None:
    cases = list_cases()
    for name in ("case14", "case57", "case118", "GBnetwork"):
        assert name in cases["pandapower"]
    assert isinstance(cases["files"], list)


# ------------------------------------------------------------ linear algebra --
@pytest.mark.parametrize("convention", ["matpower", "powermodels"])
def test_ptdf_flows_equal_sparse_flows(pglib_dir: Path, convention: str) -> None:
    """Case 300 has a phase shifter and shunts: the offsets must match as well."""
    net = load_network(pglib_dir / PGLIB300, convention=convention)
    inj = _balanced_injections(net, 5)
    sparse = net.flows_from_injections(inj)
    dense = (inj + net.shift_injection_mw) @ net.ptdf.T - net.shift_flow_mw
    assert sparse.shape == (5, net.n_branch)
    np.testing.assert_allclose(dense, sparse, rtol=1e-9, atol=1e-8)
    if convention == "matpower":
        assert np.any(net.branch_shift_rad != 0)


def test_ptdf_flows_equal_sparse_flows_case14(pp_case14: NetworkData) -> None:
    net = pp_case14
    inj = _balanced_injections(net, 3, seed=1)
    np.testing.assert_allclose(net.ptdf @ inj[0], net.flows_from_injections(inj[0]), atol=1e-9)
    np.testing.assert_allclose(inj @ net.ptdf.T, net.flows_from_injections(inj), atol=1e-9)


def test_flows_satisfy_kirchhoff(pp_case14: NetworkData) -> None:
    """Flows out of each bus sum to its injection (A^T pf = inj), single vector too."""
    net = pp_case14
    inj = _balanced_injections(net, 1)[0]
    pf = net.flows_from_injections(inj)
    assert pf.shape == (net.n_branch,)
    np.testing.assert_allclose(net.incidence.T @ pf, inj, atol=1e-9)


def test_ptdf_reference_columns_are_zero(pp_case14: NetworkData, pglib_dir: Path) -> None:
    for net in (pp_case14, load_network(pglib_dir / PGLIB300)):
        assert net.ptdf.shape == (net.n_branch, net.n_bus)
        ref = np.flatnonzero(net.bus_ref)
        assert ref.size == np.unique(net.bus_island).size
        np.testing.assert_array_equal(net.ptdf[:, ref], 0.0)


def test_bbus_symmetric_with_zero_row_sums(pp_case14: NetworkData, pglib_dir: Path) -> None:
    for net in (pp_case14, load_network(pglib_dir / PGLIB300)):
        b = net.bbus_mw.toarray()
        assert b.shape == (net.n_bus, net.n_bus)
        np.testing.assert_allclose(b, b.T, rtol=0, atol=1e-9 * np.abs(b).max())
        np.testing.assert_allclose(b.sum(axis=1), 0.0, atol=1e-9 * np.abs(b).max())
        # Diagonal: the sum of the susceptances (MW/rad) of the branches at the bus.
        expect = np.zeros(net.n_bus)
        bb = net.base_mva * net.branch_b_pu
        np.add.at(expect, net.branch_from, bb)
        np.add.at(expect, net.branch_to, bb)
        np.testing.assert_allclose(np.diag(b), expect, rtol=1e-12)


def test_bus_injection_accounts_for_everything(tiny_case: Path) -> None:
    net = load_network(tiny_case)
    inj = net.bus_injection_mw(np.array([140.0, 10.0]), net.node_demand_mw)
    np.testing.assert_allclose(inj, [140.0, 10.0 - 50.0, -100.0])
    batch = net.bus_injection_mw(np.ones((4, 2)), np.zeros(2))
    assert batch.shape == (4, 3)


def test_tiny_case_flows_by_hand(tiny_case: Path) -> None:
    """Equal reactances: 2/3 of a 1->3 transfer takes the direct branch (see conftest)."""
    net = load_network(tiny_case)
    pf = net.flows_from_injections(np.array([150.0, -50.0, -100.0]))
    # branches: 1-2, 2-3, 1-3
    np.testing.assert_allclose(pf, [200 / 3, 50 / 3, 250 / 3], rtol=1e-12)


# -------------------------------------------------------------------- ratings --
def test_auto_ratings_derive_only_when_the_case_has_none(
    pp_case14: NetworkData, pglib_dir: Path
) -> None:
    derived = load_network("case14", ratings="auto")
    assert pp_case14.ratings.source == "none"
    assert derived.ratings.source == "derived"
    assert derived.ratings.n_limited == derived.n_branch
    expect = np.maximum(1.2 * np.abs(derived.base_flow_mw()), 5.0)
    np.testing.assert_allclose(derived.branch_rate_mw, expect)
    assert "derived" in derived.ratings.describe()

    case = load_network(pglib_dir / PGLIB14, ratings="auto")
    assert case.ratings.source == "case"
    raw = load_network(pglib_dir / PGLIB14, ratings="case")
    np.testing.assert_array_equal(case.branch_rate_mw, raw.branch_rate_mw)


def test_derived_ratings_policy_and_bad_parameters(pp_case14: NetworkData) -> None:
    net = pp_case14.with_ratings(RatingPolicy.DERIVED, alpha=2.0, min_mw=10.0)
    assert net.ratings.alpha == 2.0 and net.ratings.min_mw == 10.0
    assert np.all(net.branch_rate_mw >= 10.0)
    # The base dispatch is balanced, so the base flow is a real DC flow.
    assert pp_case14.base_dispatch_mw().sum() == pytest.approx(pp_case14.node_demand_mw.sum())
    with pytest.raises(CaseError) as exc:
        pp_case14.with_ratings("derived", alpha=0.0)
    assert "alpha" in _one_line(exc)


# ---------------------------------------------------------------- immutability --
def test_arrays_are_read_only(pp_case14: NetworkData) -> None:
    net = pp_case14
    arrays = {
        f.name: getattr(net, f.name)
        for f in dataclasses.fields(net)
        if isinstance(getattr(net, f.name), np.ndarray)
    }
    assert len(arrays) >= 20
    for name, arr in arrays.items():
        assert not arr.flags.writeable, name
    with pytest.raises(ValueError):
        net.node_demand_mw[0] = 0.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        net.name = "other"  # type: ignore[misc]


def test_cached_derived_arrays_are_read_only(pp_case14: NetworkData) -> None:
    """``load_network`` shares one NetworkData per case: its cached arrays must be frozen too.

    Otherwise ``net.ptdf[...] = ...`` in one caller silently corrupts every later PTDF model
    and flow of that case in the process.
    """
    net = pp_case14
    for name in ("ptdf", "shift_flow_mw", "shift_injection_mw"):
        assert not getattr(net, name).flags.writeable, name


def test_load_network_is_cached_and_keyed_by_arguments(tiny_case: Path) -> None:
    net = load_network(tiny_case)
    assert load_network(str(tiny_case)) is net
    assert load_network(tiny_case, convention="powermodels") is not net
    assert load_network(tiny_case, ratings="derived") is not net


# ------------------------------------------------------------------ bad input --
def test_unknown_case_name() -> None:
    with pytest.raises(CaseError) as exc:
        load_network("no_such_case_xyz")
    msg = _one_line(exc)
    assert "no_such_case_xyz" in msg and "unknown case" in msg


def test_missing_matpower_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.m"
    with pytest.raises(CaseError) as exc:
        load_network(path)
    assert "does not exist" in _one_line(exc)


def test_text_file_that_is_not_a_matpower_case(write_case) -> None:
    path = write_case("garbage.m", text="this is not\na MATPOWER case\n")
    with pytest.raises(CaseError) as exc:
        load_network(path)
    msg = _one_line(exc)
    assert "garbage.m" in msg and "not a readable MATPOWER case" in msg


def test_file_with_unknown_suffix(write_case) -> None:
    path = write_case("case.txt", text="hello\n")
    with pytest.raises(CaseError) as exc:
        load_network(path)
    assert "neither a MATPOWER" in _one_line(exc)


def test_json_that_is_not_a_pandapower_network(write_case) -> None:
    path = write_case("bad.json", text='{"hello": 1}\n')
    with pytest.raises(CaseError) as exc:
        load_network(path)
    assert "bad.json" in _one_line(exc)


def test_case_without_in_service_generator(write_case) -> None:
    path = write_case("nogen.m", g1_status=0, g2_status=0)
    with pytest.raises(CaseError) as exc:
        load_network(path)
    msg = _one_line(exc)
    assert "nogen" in msg and "no in-service generator" in msg.replace(str(path), "")


def test_case_with_empty_generator_table(tiny_case: Path, write_case) -> None:
    """``mpc.gen = [];`` is a case with no generator: the message must say so."""
    text = tiny_case.read_text()
    for table in ("gen", "gencost"):
        text = re.sub(rf"mpc\.{table} = \[.*?\];", f"mpc.{table} = [];", text, flags=re.S)
    assert "mpc.gen = [];" in text
    path = write_case("emptygen.m", text=text)
    with pytest.raises(CaseError) as exc:
        load_network(path)
    msg = _one_line(exc)
    assert "emptygen" in msg, msg
    # The tmp path names the test, so look for the problem in the rest of the message.
    assert re.search(r"\bno (in-service )?generator", msg.replace(str(path), "")), msg


def test_errors_belong_to_the_family() -> None:
    assert issubclass(CaseError, FpammError)
