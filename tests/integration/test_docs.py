"""Executable docs: the Python quickstart and ``examples/own_model.py`` run as written.

Every ```python block of docs/quickstart.md and of README.md is executed in order (one namespace, in a scratch
directory where ``models/`` is the repository's, so nothing lands in the checkout), and
the example's ``main()`` runs with a solver name and with a solver object.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
from pathlib import Path
from typing import Any

import pyomo.environ as pyo
import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "docs" / "quickstart.md"
README = REPO / "README.md"
EXAMPLE = REPO / "examples" / "own_model.py"


def python_blocks(markdown: str) -> list[str]:
    """The bodies of the ```python fenced blocks of ``markdown``, in order."""
    return re.findall(r"^```python\n(.*?)^```$", markdown, flags=re.MULTILINE | re.DOTALL)


def test_python_blocks_are_found() -> None:
    text = "a\n```python\nx = 1\n```\n```sh\nls\n```\n```python\ny = 2\n```\n"
    assert python_blocks(text) == ["x = 1\n", "y = 2\n"]


@pytest.mark.parametrize("doc", [QUICKSTART, README], ids=["quickstart", "readme"])
def test_quickstart_runs(doc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = python_blocks(doc.read_text(encoding="utf-8"))
    assert blocks, f"{doc.name} has no ```python block"
    (tmp_path / "models").symlink_to(REPO / "models", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": "quickstart"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for k, code in enumerate(blocks):
            exec(compile(code, f"{doc.name}[block {k}]", "exec"), namespace)
    res, report = namespace["res"], namespace["report"]
    assert len(res.tables["intervals"]) == 100 and report.passed
    assert "scarce intervals" in out.getvalue()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]  # nothing written


def _example() -> Any:
    spec = importlib.util.spec_from_file_location("own_model_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("solver", ["default", "highs", "object"])
def test_own_model_example_runs(solver: str) -> None:
    main = _example().main
    if solver == "default":
        out = main()
    elif solver == "object":
        out = main(solver=pyo.SolverFactory("appsi_highs"))
    else:
        out = main(solver)
    assert out["pg_capped_mw"] <= out["cap_mw"] + 1e-6 < out["pg_free_mw"]  # the cap binds
    assert out["cost_capped"] > out["cost_free"]
    assert out["served_mw"] == pytest.approx(259.0, abs=1e-6)  # every load of case14 served
