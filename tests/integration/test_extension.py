"""Extension through the public seam: ``[[extensions]]`` and ``examples/zonal_limit.py``.

``examples/zonal_limit.toml`` is IEEE-14 with a 30 MW cap on the net import of the zone
``{5, 10, 11, 12, 13}``. Against the same spec without the extension:

- the cap binds: the stored flows put the import exactly at the cap in scarce intervals,
  and never above it; without the extension the import goes well above it;
- the allocations change (the zone sheds what the network could otherwise have served);
- the extended run passes the checks of ``fpamm verify`` that apply to it (T1, T2 and the
  T3 feasibility re-check; see examples/README.md for T3-cold-resolve), and every stored
  allocation is re-checked for DC feasibility in NumPy;
- the extension is static (no mutable parameter), so the fast HiGHS engine is kept.
"""

from __future__ import annotations

import functools
import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from fpamm_opt.errors import InputError
from fpamm_opt.extensions import parse_target, resolve_extensions
from fpamm_opt.mechanism.types import Dispatch, SolveStatus
from fpamm_opt.sim.run import (
    FEAS_TOL_ABS_MW,
    FEAS_TOL_REL,
    dispatch_violation_mw,
    resolve_run_spec,
    run,
)
from fpamm_opt.spec import load_spec, spec_hash

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
SPEC_PATH = EXAMPLES / "zonal_limit.toml"
ZONE = [5, 10, 11, 12, 13]
LIMIT_MW = 10.0
T = 60


def _example_module() -> Any:
    spec = importlib.util.spec_from_file_location(
        "zonal_limit_example", EXAMPLES / "zonal_limit.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _tables(out: Path) -> dict[str, pd.DataFrame]:
    return {
        n: pd.read_parquet(out / f"{n}.parquet")
        for n in ("intervals", "nodes", "branches", "generators")
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("zonal")
    spec_on = resolve_run_spec(load_spec(SPEC_PATH), intervals=T)
    spec_off = spec_on.replace(extensions=())
    res_on = run(spec_on, base / "on", progress=False)
    res_off = run(spec_off, base / "off", progress=False)
    net = spec_on.network.load()
    zl = _example_module()

    def imports(tables: dict[str, pd.DataFrame]) -> pd.Series:
        flows = tables["branches"].pivot(index="t", columns="branch", values="flow_mw")
        return pd.Series(zl.zonal_import_mw(net, flows.to_numpy(), buses=ZONE), index=flows.index)

    on, off = _tables(base / "on"), _tables(base / "off")
    return {
        "spec_on": spec_on,
        "spec_off": spec_off,
        "net": net,
        "zl": zl,
        "dir_on": base / "on",
        "manifest_on": res_on.manifest,
        "manifest_off": res_off.manifest,
        "on": on,
        "off": off,
        "import_on": imports(on),
        "import_off": imports(off),
    }


def test_spec_resolves_the_extension(runs: dict[str, Any]) -> None:
    spec = runs["spec_on"]
    (ext,) = spec.extensions
    path, attr = ext.function.rsplit(":", 1)
    assert Path(path) == (EXAMPLES / "zonal_limit.py").resolve() and attr == "zonal_import_limit"
    assert ext.kwargs == {"buses": ZONE, "limit_mw": LIMIT_MW}
    stored = runs["manifest_on"]["spec"]["extensions"]
    assert stored == [{"function": ext.function, "buses": ZONE, "limit_mw": LIMIT_MW}]
    assert spec_hash(spec) != spec_hash(runs["spec_off"])
    (fn,) = resolve_extensions(spec.extensions)
    assert isinstance(fn, functools.partial) and fn.keywords == ext.kwargs
    assert fn.func.__name__ == "zonal_import_limit"


def test_zonal_limit_binds(runs: dict[str, Any]) -> None:
    imp_on, imp_off = runs["import_on"], runs["import_off"]
    scarce = runs["on"]["intervals"].set_index("t").scarce
    assert imp_on.max() <= LIMIT_MW + 1e-6
    # "at the cap" within 1e-4 MW: the allocator fixes served load within a tiny band
    at_cap = imp_on[(imp_on >= LIMIT_MW - 1e-4) & scarce.reindex(imp_on.index)]
    assert len(at_cap) >= 5, "the cap should bind in several scarce intervals"
    assert imp_off.max() > LIMIT_MW + 5.0  # without the extension the zone imports more


def test_zonal_limit_changes_allocations(runs: dict[str, Any]) -> None:
    on, off = runs["on"]["nodes"], runs["off"]["nodes"]
    assert on[["t", "node"]].equals(off[["t", "node"]])
    diff = np.abs(on.served_mw.to_numpy() - off.served_mw.to_numpy())
    assert diff.max() > 1.0
    # the zone's own load is what the cap takes away
    zone_nodes = np.isin(on.bus.to_numpy(), ZONE)
    shed_on = (on.demand_mw - on.served_mw)[zone_nodes].sum()
    shed_off = (off.demand_mw - off.served_mw)[zone_nodes].sum()
    assert shed_on > shed_off + 10.0


def test_extended_run_is_feasible_and_verifies(runs: dict[str, Any]) -> None:
    net, on = runs["net"], runs["on"]
    assert (on["intervals"].status == "optimal").all()
    assert runs["manifest_on"]["summary"]["n_retries"] == 0
    tol = FEAS_TOL_ABS_MW + 2 * FEAS_TOL_REL * float(net.node_demand_mw.sum())
    nodes = on["nodes"].sort_values(["t", "node"])
    gens = on["generators"].sort_values(["t", "gen"])
    for (_t, nd), (_, gd) in zip(nodes.groupby("t"), gens.groupby("t")):
        d = Dispatch(
            SolveStatus.OPTIMAL, nd.served_mw.to_numpy(), gd.p_mw.to_numpy(), np.zeros(net.n_branch)
        )
        assert (
            dispatch_violation_mw(net, nd.demand_mw.to_numpy(), gd.available_mw.to_numpy(), d)
            <= tol
        )

    from fpamm_opt.verify import verify_run

    report = verify_run(runs["dir_on"], checks=["T1", "T2", "T3-feasibility"])
    assert report.passed, [(c.name, c.measured, c.bound, c.detail) for c in report.failed]
    assert {c.name for c in report.checks if c.applicable} >= {"T1-update", "T3-feasibility"}


def test_static_extension_keeps_the_fast_engine(runs: dict[str, Any]) -> None:
    from fpamm_opt.problem import AllocationProblem, extension_is_static

    assert runs["manifest_on"]["engine"] == "highs"
    net = runs["net"]
    exts = resolve_extensions(runs["spec_on"].extensions)
    prob = AllocationProblem(net, np.zeros(net.n_node, dtype=int), 1, extensions=exts)
    blk = prob.model.zonal
    assert extension_is_static(prob.model) and prob.engine_kind == "highs"
    zone_idx = {int(np.flatnonzero(net.bus_ids == b)[0]) for b in ZONE}
    assert set(blk.bus) == zone_idx
    for k in blk.branch_in:
        assert net.branch_to[k] in zone_idx and net.branch_from[k] not in zone_idx
    for k in blk.branch_out:
        assert net.branch_from[k] in zone_idx and net.branch_to[k] not in zone_idx
    assert len(blk.branch_in) + len(blk.branch_out) >= 2
    import pyomo.environ as pyo

    assert pyo.value(blk.ineq_import.upper) == LIMIT_MW


def test_connected_area_and_bad_zone_arguments(runs: dict[str, Any]) -> None:
    zl, net = runs["zl"], runs["net"]
    around5 = zl.zone_buses(net, center_bus=5, radius=1)
    assert sorted(net.bus_ids[around5].tolist()) == [4, 5, 10, 11, 12]
    assert net.bus_ids[zl.zone_buses(net, center_bus=5, radius=0)].tolist() == [5]
    for kwargs, needle in [
        ({"buses": [5, 99]}, "bus 99"),
        ({"buses": []}, "non-empty"),
        ({}, "exactly one"),
        ({"buses": [5], "center_bus": 5}, "exactly one"),
        ({"center_bus": 5, "radius": -1}, "radius"),
    ]:
        with pytest.raises(InputError, match=needle):
            zl.zone_buses(net, **kwargs)
    whole = net.bus_ids.tolist()
    import pyomo.environ as pyo

    m = pyo.ConcreteModel()
    m.dcopf = pyo.Block()
    m.dcopf.pf = pyo.Var(range(net.n_branch))
    with pytest.raises(InputError, match="no boundary branch"):
        zl.zonal_import_limit(m, net, buses=whole, limit_mw=10.0)
    with pytest.raises(InputError, match="limit_mw"):
        zl.zonal_import_limit(m, net, buses=ZONE, limit_mw=-1.0)


def test_set_override_of_an_extension_argument() -> None:
    spec = load_spec(SPEC_PATH, ["extensions.0.limit_mw=40"])
    assert spec.extensions[0].kwargs["limit_mw"] == 40
    with pytest.raises(InputError, match="no extension 3"):
        load_spec(SPEC_PATH, ["extensions.3.limit_mw=40"])
    with pytest.raises(InputError, match=r"extensions\.<index>\.<key>"):
        load_spec(SPEC_PATH, ["extensions.limit_mw=40"])


def test_module_form_of_the_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "my_fpamm_ext"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "limits.py").write_text(
        "calls = []\n\nclass Builders:\n    @staticmethod\n"
        "    def cap(model, net, *, mw):\n        calls.append((model, net, mw))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    target = parse_target("my_fpamm_ext.limits:Builders.cap")
    assert (target.module, target.attr, target.is_file) == (
        "my_fpamm_ext.limits",
        "Builders.cap",
        False,
    )
    (fn,) = resolve_extensions([{"function": "my_fpamm_ext.limits:Builders.cap", "mw": 3}])
    fn("model", "net")
    mod = sys.modules["my_fpamm_ext.limits"]
    assert mod.calls == [("model", "net", 3)]
    with pytest.raises(InputError, match=r"extensions\[0\].*mw"):
        resolve_extensions([{"function": "my_fpamm_ext.limits:Builders.cap", "megawatts": 3}])


def test_extension_layer_imports_no_pyomo() -> None:
    code = (
        "import sys, fpamm_opt.extensions, fpamm_opt.spec; "
        "assert not [m for m in sys.modules if m.split('.')[0] == 'pyomo'], 'pyomo'"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
