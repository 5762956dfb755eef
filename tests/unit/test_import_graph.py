"""No import cycle among the modules of ``fpamm_opt``, and no type read from a class name.

The graph is built from every ``import`` statement of the package's source (``ast``;
function-level imports included, ``if TYPE_CHECKING:`` blocks excluded since they never run).
An edge goes to the module named (``from fpamm_opt.verify import cold`` is an edge to
``fpamm_opt.verify.cold``; ``from fpamm_opt.verify import verify_run`` one to the package).
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
PKG = REPO / "fpamm_opt"


def _modules(root: Path = PKG) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of ``tree`` except the bodies of ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                stack.extend(child.orelse)
                continue
            stack.append(child)


def _imports(source: str, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The ``known`` modules ``source`` (module ``module``) imports."""
    package = module if is_package else module.rpartition(".")[0]
    names: list[str] = []
    for node in _runtime_nodes(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, node.module] if node.module else parts)
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                names.append(sub if sub in known else base)
    out: set[str] = set()
    for name in names:
        while name and name not in known:  # ``import a.b.c`` of a module: longest known prefix
            name = name.rpartition(".")[0]
        if name and name != module:
            out.add(name)
    return out


def import_graph(root: Path = PKG) -> dict[str, set[str]]:
    """``{module: modules it imports}`` over the package at ``root``."""
    mods = _modules(root)
    known = set(mods)
    return {
        m: _imports(p.read_text(encoding="utf-8"), m, p.name == "__init__.py", known)
        for m, p in mods.items()
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle ``[a, b, ..., a]`` of ``graph``, or ``None`` (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    for start in sorted(graph):
        if start in state:
            continue
        path = [start]
        state[start] = 1
        todo = [iter(sorted(graph[start]))]
        while todo:
            nxt = next(todo[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                todo.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                todo.append(iter(sorted(graph.get(nxt, ()))))
    return None


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_no_import_cycle_in_the_package(graph: dict[str, set[str]]) -> None:
    assert "fpamm_opt.problem" in graph and "fpamm_opt.fastpath" in graph["fpamm_opt.problem"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_former_cycles_stay_one_way(graph: dict[str, set[str]]) -> None:
    assert "fpamm_opt.problem" not in graph["fpamm_opt.fastpath"]
    assert "fpamm_opt.verify.feasibility" not in graph["fpamm_opt.verify.cold"]
    for user in ("fpamm_opt.problem", "fpamm_opt.fastpath"):
        assert "fpamm_opt.engine" in graph[user]
    for user in ("fpamm_opt.verify.cold", "fpamm_opt.verify.feasibility"):
        assert "fpamm_opt.feasible" in graph[user]


def test_one_x_t_check_for_run_loop_trigger_and_verifier(graph: dict[str, set[str]]) -> None:
    for user in (
        "fpamm_opt.sim.run",
        "fpamm_opt.mechanism.trigger",
        "fpamm_opt.verify.feasibility",
    ):
        assert "fpamm_opt.feasible" in graph[user]


def test_cycle_finder_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "pk"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "a.py": "from pk.b import f\n",
        "b.py": "def f():\n    from .sub import c\n",
        "sub/__init__.py": "",
        "sub/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pk.a\n",
        "d.py": "import pk.sub.c\n",
    }
    for name, text in files.items():
        (pkg / name).write_text(textwrap.dedent(text))
    graph = import_graph(pkg)
    assert graph["pk.b"] == {"pk.sub.c"} and graph["pk.sub.c"] == set()
    assert find_cycle(graph) is None  # the TYPE_CHECKING import never runs
    (pkg / "sub" / "c.py").write_text("def g():\n    from .. import a\n")
    assert find_cycle(import_graph(pkg)) == ["pk.a", "pk.b", "pk.sub.c", "pk.a"]


def test_engines_say_their_kind() -> None:
    from fpamm_opt.engine import EngineKind
    from fpamm_opt.fastpath import HighsEngine
    from fpamm_opt.problem import PyomoEngine

    assert HighsEngine.kind is EngineKind.HIGHS
    assert PyomoEngine.kind is EngineKind.PYOMO


@pytest.mark.parametrize("kind", ["pyomo", "highs"])
def test_engine_kind_is_read_from_the_engine_not_its_class_name(
    monkeypatch: pytest.MonkeyPatch, tiny_case: Path, kind: str
) -> None:
    """An engine named like the other one still reports its own kind."""
    import fpamm_opt.problem as problem
    from fpamm_opt.engine import EngineKind
    from fpamm_opt.network import load_network

    misnamed = type("HighsEngine" if kind == "pyomo" else "PyomoEngine", (), {})
    engine = misnamed()
    engine.kind = EngineKind(kind)  # type: ignore[attr-defined]
    monkeypatch.setattr(problem, "make_engine", lambda *a, **k: engine)
    net = load_network(tiny_case)
    prob = problem.AllocationProblem(net, np.zeros(net.n_node, dtype=int), 1)
    assert prob.engine is engine
    assert prob.engine_kind is EngineKind(kind) and prob.engine_kind == kind


def test_problem_never_compares_class_names() -> None:
    src = (PKG / "problem.py").read_text(encoding="utf-8")
    hits = [
        ast.unparse(node)
        for node in ast.walk(ast.parse(src))
        if isinstance(node, ast.Attribute) and node.attr == "__name__"
    ]
    assert hits == [], hits


def test_graph_edges_end_at_package_modules(graph: dict[str, set[str]]) -> None:
    """Every edge ends at a module of the package (no dangling names)."""
    ends = {m for targets in graph.values() for m in targets}
    assert ends <= set(graph), sorted(ends - set(graph))
    assert len(graph) > 50


def test_no_two_classes_of_the_package_share_a_name() -> None:
    """One class per name (issue 15: two ``SolverSpec``, ``NetworkSpec``, ``LPSolution``)."""
    where: dict[str, list[str]] = {}
    for path in sorted(PKG.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                where.setdefault(node.name, []).append(str(path.relative_to(PKG)))
    assert {k: v for k, v in where.items() if len(v) > 1} == {}
