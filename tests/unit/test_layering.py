"""The import rule of ARCHITECTURE.md: the NumPy layers never import Pyomo.

``network``, ``scenario``, ``mechanism``, ``io``, ``verify`` and ``report.metrics`` (and the
engine contract ``engine`` and the run records ``sim.records``) must stay
importable (and usable) without Pyomo, and must not reach into the Pyomo layer (``blocks``,
``problem``, ``solvers``, ``fastpath``). Checked twice: at run time in a fresh interpreter,
and statically over every ``import`` statement of their source files (function-level imports
included).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
PKG = REPO / "fpamm_opt"

#: Solver-free layers: single modules and packages (all their submodules).
PURE_MODULES = (
    "fpamm_opt.network",
    "fpamm_opt.scenario",
    "fpamm_opt.report.metrics",
    "fpamm_opt.engine",
    "fpamm_opt.feasible",
    "fpamm_opt.lazyflow",
    "fpamm_opt.sim.records",
)
PURE_PACKAGES = ("fpamm_opt.mechanism", "fpamm_opt.io", "fpamm_opt.verify", "fpamm_opt.pipeline")
#: The Pyomo layer, off limits for the pure layers.
PYOMO_LAYER = (
    "fpamm_opt.blocks",
    "fpamm_opt.problem",
    "fpamm_opt.opf",
    "fpamm_opt.solvers",
    "fpamm_opt.fastpath",
)


def _module_path(name: str) -> Path | None:
    rel = Path(*name.split("."))
    for cand in (REPO / rel.with_suffix(".py"), REPO / rel / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _pure_sources() -> list[Path]:
    files = [p for name in PURE_MODULES if (p := _module_path(name)) is not None]
    for name in PURE_PACKAGES:
        folder = REPO / Path(*name.split("."))
        if folder.is_dir():
            files.extend(sorted(folder.rglob("*.py")))
    return files


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported_names(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """Absolute names of everything ``source`` (module ``module``) imports, relative resolved."""
    tree = ast.parse(source)
    package = module if is_package else module.rpartition(".")[0]
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, node.module] if node.module else parts)
            else:
                base = node.module or ""
            out.append((node.lineno, base))
            # ``from fpamm_opt import problem`` imports a module by its attribute name.
            out.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names)
    return out


def _file_imports(path: Path) -> list[tuple[int, str]]:
    return _imported_names(path.read_text(), _module_name(path), path.name == "__init__.py")


def _violates(name: str) -> bool:
    if name == "pyomo" or name.startswith("pyomo."):
        return True
    return any(name == mod or name.startswith(mod + ".") for mod in PYOMO_LAYER)


def test_pure_layers_do_not_load_pyomo_at_run_time() -> None:
    """Import every pure module (all submodules of the packages) in a fresh interpreter."""
    script = textwrap.dedent(
        f"""
        import importlib, importlib.util, json, pkgutil, sys
        imported, missing = [], []
        for name in {list(PURE_MODULES)!r}:
            try:
                spec = importlib.util.find_spec(name)
            except ModuleNotFoundError:
                spec = None
            if spec is None:
                missing.append(name)
                continue
            importlib.import_module(name)
            imported.append(name)
        for name in {list(PURE_PACKAGES)!r}:
            if importlib.util.find_spec(name) is None:
                missing.append(name)
                continue
            pkg = importlib.import_module(name)
            imported.append(name)
            for info in pkgutil.walk_packages(pkg.__path__, name + "."):
                importlib.import_module(info.name)
                imported.append(info.name)
        loaded = sorted(m for m in sys.modules
                        if m == "pyomo" or m.startswith("pyomo.")
                        or any(m == p or m.startswith(p + ".") for p in {list(PYOMO_LAYER)!r}))
        print(json.dumps({{"imported": imported, "missing": missing, "loaded": loaded}}))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"importing the pure layers failed:\n{proc.stderr}"
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "fpamm_opt.network" in report["imported"]
    assert "fpamm_opt.mechanism" in report["imported"]
    assert report["loaded"] == [], f"pure layers pulled in the Pyomo layer: {report['loaded'][:10]}"


def test_pure_layers_have_no_pyomo_imports_in_source() -> None:
    files = _pure_sources()
    assert any(p.name == "network.py" for p in files)
    offenders = [
        f"{path.relative_to(REPO)}:{line}: {name}"
        for path in files
        for line, name in _file_imports(path)
        if _violates(name)
    ]
    assert offenders == [], "forbidden imports in pure layers:\n" + "\n".join(offenders)


def test_import_scan_catches_violations() -> None:
    """The static scan sees plain, aliased, from-, function-level and relative imports."""
    src = textwrap.dedent(
        """
        import pyomo.environ as pyo
        from pyomo.core import Var
        from fpamm_opt import problem
        from .. import solvers
        from ..blocks.dcopf import Formulation
        def late():
            import fpamm_opt.fastpath
        import numpy as np
        from fpamm_opt.network import NetworkData
        from . import memory
        """
    )
    names = [n for _, n in _imported_names(src, "fpamm_opt.mechanism.probe", False)]
    bad = sorted({n for n in names if _violates(n)})
    assert bad == [
        "fpamm_opt.blocks.dcopf",
        "fpamm_opt.blocks.dcopf.Formulation",
        "fpamm_opt.fastpath",
        "fpamm_opt.problem",
        "fpamm_opt.solvers",
        "pyomo.core",
        "pyomo.core.Var",
        "pyomo.environ",
    ]
    assert "fpamm_opt.mechanism.memory" in names


def test_tier_marker_rule_is_enforced(tmp_path: Path) -> None:
    """A test without a tier marker (or with two) stops collection with a usage error."""
    (tmp_path / "conftest.py").write_text((REPO / "tests" / "conftest.py").read_text())
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nmarkers =\n  unit: u\n  component: c\n  integration: i\n"
    )
    (tmp_path / "test_probe.py").write_text(
        "import pytest\n\n"
        "def test_none():\n    pass\n\n"
        "@pytest.mark.unit\n@pytest.mark.component\ndef test_two():\n    pass\n\n"
        "@pytest.mark.unit\ndef test_one():\n    pass\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, out
    assert "test_none" in out and "test_two" in out
    assert "test_one" not in out.split("exactly one")[-1]
