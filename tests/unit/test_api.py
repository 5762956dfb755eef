"""The public API of ``import fpamm_opt``: light to import, every name there, documented.

- ``import fpamm_opt`` loads neither Pyomo nor pandapower (names load on first use, PEP 562);
- every name of ``__all__`` resolves to the object its home module defines, and
  ``fpamm_opt.verify`` is both the ``verify`` package and callable as ``verify_run``;
- ``help(fpamm_opt)`` lists every public name with a one-line description;
- the package ships ``py.typed``;
- a ``solver=`` argument is a name, a ``SolverSpec`` or a Pyomo solver object.
"""

from __future__ import annotations

import importlib
import json
import pydoc
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import fpamm_opt

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]

#: Where each public name lives.
HOMES = {
    "load_network": "fpamm_opt.network",
    "NetworkData": "fpamm_opt.network",
    "build_dcopf_block": "fpamm_opt.blocks.dcopf",
    "build_allocation_block": "fpamm_opt.blocks.allocation",
    "build_model": "fpamm_opt.problem",
    "Formulation": "fpamm_opt.blocks.dcopf",
    "solve_dcopf": "fpamm_opt.problem",
    "DCOPFResult": "fpamm_opt.problem",
    "load_spec": "fpamm_opt.spec",
    "RunSpec": "fpamm_opt.spec",
    "simulate": "fpamm_opt.sim.run",
    "SimulationResult": "fpamm_opt.sim.run",
    "run": "fpamm_opt.sim.run",
    "RunResult": "fpamm_opt.sim.run",
    "read_run": "fpamm_opt.io.reader",
    "run_batch": "fpamm_opt.sim.batch",
    "compare": "fpamm_opt.report.compare:run_comparison",
    "Mechanism": "fpamm_opt.mechanism.engine",
    "MechanismConfig": "fpamm_opt.mechanism.config",
    "Policy": "fpamm_opt.mechanism.config",
    "Rule": "fpamm_opt.mechanism.config",
    "WeightForm": "fpamm_opt.mechanism.config",
    "WeightSource": "fpamm_opt.mechanism.config",
    "TierEnergy": "fpamm_opt.mechanism.config",
    "FpammError": "fpamm_opt.errors",
}


def test_import_is_light() -> None:
    code = (
        "import json, sys, fpamm_opt\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('pyomo', 'pandapower')"
        " or m.startswith(('fpamm_opt.sim', 'fpamm_opt.problem', 'fpamm_opt.verify')))\n"
        "print(json.dumps(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_every_public_name_resolves_to_its_home() -> None:
    assert set(fpamm_opt.__all__) == {*HOMES, "verify", "__version__"}
    for name, home in HOMES.items():
        module, _, attr = home.partition(":")
        expected = getattr(importlib.import_module(module), attr or name)
        assert getattr(fpamm_opt, name) is expected, name
    assert set(fpamm_opt.__all__) <= set(dir(fpamm_opt))


def test_verify_is_the_package_and_callable() -> None:
    import fpamm_opt.verify as verify_pkg
    from fpamm_opt.verify.runner import verify_run

    assert fpamm_opt.verify is verify_pkg and callable(fpamm_opt.verify)
    assert verify_pkg.verify_run is verify_run
    assert verify_pkg.check_dc_feasibility is not None  # the package's own names stay


def test_unknown_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = fpamm_opt.nope  # type: ignore[attr-defined]


def test_help_lists_the_api_with_one_line_each() -> None:
    text = pydoc.render_doc(fpamm_opt, renderer=pydoc.plaintext)
    doc = fpamm_opt.__doc__ or ""
    assert "simulate(" in doc and "verify(" in doc  # a usage example
    for name in {*HOMES, "verify"}:
        line = re.search(rf"^\s+{re.escape(name)}\s{{2,}}(\S.*)$", doc, re.MULTILINE)
        assert line is not None, f"{name} has no one-line description in the module docstring"
        assert name in text
    assert "SimulationResult" in text and "docs/quickstart.md" in text


def test_the_package_ships_py_typed() -> None:
    assert (REPO / "fpamm_opt" / "py.typed").is_file()
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert "py.typed" in project["tool"]["setuptools"]["package-data"]["fpamm_opt"]


def test_solver_arguments_become_solver_specs() -> None:
    import pyomo.environ as pyo

    from fpamm_opt.solvers import SolverSpec, as_solver_spec, solver_object_name

    assert as_solver_spec(None) == SolverSpec()
    assert as_solver_spec("glpk", time_limit_s=3) == SolverSpec("glpk", 3.0)
    own = SolverSpec("cbc", 7.0, {"threads": 2})
    assert as_solver_spec(own) is own
    for name in ("appsi_highs", "highs", "glpk"):
        obj = pyo.SolverFactory(name)
        spec = as_solver_spec(obj)
        assert spec.name == name == solver_object_name(obj) and spec.instance is obj


def test_with_solver_replaces_the_run_spec_solver() -> None:
    import pyomo.environ as pyo

    from fpamm_opt.sim.run import as_run_spec, with_solver
    from fpamm_opt.solvers import SolverSpec

    spec = as_run_spec(REPO / "models" / "ieee14.toml", ["solver.time_limit_s=5"])
    same, none = with_solver(spec, None)
    assert same is spec and none is None
    named, none = with_solver(spec, "appsi_highs")
    assert named.solver.name == "appsi_highs" and named.solver.time_limit_s == 5.0
    assert none is None
    full, _ = with_solver(spec, SolverSpec("glpk", 2.0, {"msg_lev": 1}))
    assert (full.solver.name, full.solver.time_limit_s, full.solver.options) == (
        "glpk",
        2.0,
        {"msg_lev": 1},
    )
    obj = pyo.SolverFactory("appsi_highs")
    by_obj, instance = with_solver(spec, obj)
    assert by_obj.solver.name == "appsi_highs" and instance is obj
