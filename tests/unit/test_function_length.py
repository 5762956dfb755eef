"""No function of ``fpamm_opt`` is longer than 80 lines (issue 15: code a newcomer can read).

A function's length is ``end_lineno - lineno + 1`` of its ``def`` (decorators excluded,
docstring and nested functions included). Methods are named ``Class.method``, nested
functions ``outer.inner``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
PKG = REPO / "fpamm_opt"
MAX_LINES = 80

#: Functions allowed over the limit, each with its reason (none: every function is short).
ALLOWED: dict[str, str] = {}


def function_lengths(root: Path = PKG) -> Iterator[tuple[str, int]]:
    """``("path::qualified.name", lines)`` for every function and method under ``root``."""
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).as_posix()
        yield from _walk(ast.parse(path.read_text(encoding="utf-8")), f"{rel}::")


def _walk(node: ast.AST, prefix: str) -> Iterator[tuple[str, int]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            name = prefix + child.name
            yield name, int(child.end_lineno or child.lineno) - child.lineno + 1
            yield from _walk(child, name + ".")
        elif isinstance(child, ast.ClassDef):
            yield from _walk(child, prefix + child.name + ".")
        else:
            yield from _walk(child, prefix)


def _allowed(name: str) -> bool:
    return name in ALLOWED or f"{name.split('::')[0]}::*" in ALLOWED


def test_no_function_over_80_lines() -> None:
    long = {name: n for name, n in function_lengths() if n > MAX_LINES and not _allowed(name)}
    assert not long, f"functions over {MAX_LINES} lines (split them): {long}"


def test_the_measure_sees_methods_and_nested_functions(tmp_path: Path) -> None:
    pkg = tmp_path / "fpamm_opt"
    pkg.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    src = f"class A:\n    def m(self):\n    {body.replace(chr(10), chr(10) + '    ')}\n"
    src += f"def f():\n    def g():\n    {body.replace(chr(10), chr(10) + '    ')}\n"
    (pkg / "m.py").write_text(src, encoding="utf-8")
    found = dict(function_lengths(pkg))
    assert found["fpamm_opt/m.py::A.m"] == MAX_LINES + 1
    assert found["fpamm_opt/m.py::f.g"] == MAX_LINES + 1
    assert found["fpamm_opt/m.py::f"] == MAX_LINES + 2
