"""Shared fixtures of the test suite and the one-tier-marker rule.

- ``pglib_dir``: the PGLib-OPF files the lead keeps in ``../shared/data/pglib`` (never copied
  into the project); tests that need them skip with a clear reason when the folder is absent.
- ``pglib_baseline``: PowerModels' DC objectives from ``BASELINE.md`` (``None`` for "inf.").
- ``require_solver``: skip when a solver is missing, *fail* when ``FPAMM_REQUIRE_SOLVERS``
  (comma list, set by CI) names it.
- ``tiny_case``: a hand-checked 3-bus MATPOWER case (see :data:`TINY3_M` for the numbers).
- Every test carries exactly one of the tier markers ``unit``, ``component``, ``integration``
  (declared in ``pyproject.toml``); collection stops with a usage error otherwise.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

#: Root of the repository (the parent of ``tests/``).
REPO_ROOT = Path(__file__).resolve().parents[1]
#: Where the lead keeps the PGLib-OPF files (outside the project).
PGLIB_DIR = REPO_ROOT.parent / "shared" / "data" / "pglib"
PGLIB_SKIP_REASON = f"PGLib data not found at {PGLIB_DIR} (CI provides ../shared)"

TIERS = frozenset({"unit", "component", "integration"})

#: A 3-bus case whose DC-OPF is solved by hand. Equal reactances, so a MW injected at bus 1
#: and withdrawn at bus 3 flows 2/3 on branch 1-3 and 1/3 via bus 2. Gen 1 (bus 1) costs
#: 10 $/MWh, gen 2 (bus 2) 20 $/MWh; loads 50 MW (bus 2) and 100 MW (bus 3).
#: Unlimited, gen 1 serves all: flow 1-3 = 2/3*100 + 1/3*50 = 83.33 MW. Branch 1-3 is rated
#: 80 MW: each MW moved to gen 2 lowers it by 1/3 MW, so pg = (140, 10), cost 1600 $/h.
#: Prices: bus 1 at 10, bus 2 at 20 (marginal gen 2), so the line's shadow price is
#: mu = (20 - 10) / (1/3) = 30 and bus 3 pays 10 + 30 * 2/3 = 30 $/MWh.
TINY3_M = """\
function mpc = tiny3
mpc.version = '2';
mpc.baseMVA = 100;
%% bus_i type Pd Qd Gs Bs area Vm Va baseKV zone Vmax Vmin
mpc.bus = [
\t1\t3\t0\t0\t0\t0\t1\t1\t0\t230\t1\t1.1\t0.9;
\t2\t2\t50\t0\t0\t0\t1\t1\t0\t230\t1\t1.1\t0.9;
\t3\t1\t100\t0\t0\t0\t1\t1\t0\t230\t1\t1.1\t0.9;
];
%% bus Pg Qg Qmax Qmin Vg mBase status Pmax Pmin
mpc.gen = [
\t1\t0\t0\t100\t-100\t1\t100\t{g1_status}\t200\t0;
\t2\t0\t0\t100\t-100\t1\t100\t{g2_status}\t100\t0;
];
%% fbus tbus r x b rateA rateB rateC ratio angle status angmin angmax
mpc.branch = [
\t1\t2\t0\t0.1\t0\t0\t0\t0\t0\t0\t1\t-360\t360;
\t2\t3\t0\t0.1\t0\t0\t0\t0\t0\t0\t{br2_status}\t-360\t360;
\t1\t3\t0\t0.1\t0\t{rate13}\t0\t0\t0\t0\t1\t-360\t360;
];
%% model startup shutdown n c1 c0
mpc.gencost = [
\t2\t0\t0\t2\t10\t0;
\t2\t0\t0\t2\t20\t0;
];
"""

#: Hand-computed answer of the tiny case with branch 1-3 rated 80 MW (see :data:`TINY3_M`):
#: objective ($/h), dispatch (MW), flows of branches 1-2, 2-3, 1-3 (MW), prices at the load
#: nodes (bus 2, bus 3; $/MWh).
TINY3_SOLUTION = {
    "objective": 1600.0,
    "p_gen_mw": (140.0, 10.0),
    "flow_mw": (60.0, 20.0, 80.0),
    "lmp": (20.0, 30.0),
}


def tiny3_text(
    g1_status: int = 1, g2_status: int = 1, br2_status: int = 1, rate13: float = 80.0
) -> str:
    """MATPOWER text of the tiny case, with optional out-of-service elements."""
    return TINY3_M.format(
        g1_status=g1_status, g2_status=g2_status, br2_status=br2_status, rate13=rate13
    )


def parse_baseline(path: Path) -> dict[str, float | None]:
    """``case name -> DC objective ($/h)`` from PGLib's ``BASELINE.md`` (``None`` for inf.).

    The tables (TYP, API, SAD) share one layout: name, nodes, edges, DC, AC, ...
    """
    out: dict[str, float | None] = {}
    row = re.compile(r"^\|\s*(pglib_opf_\S+)\s*\|[^|]*\|[^|]*\|\s*([^|]*?)\s*\|")
    for line in path.read_text().splitlines():
        m = row.match(line)
        if m is None:
            continue
        value = m.group(2)
        out[m.group(1)] = None if value.lower().startswith("inf") else float(value)
    return out


def pglib_case_names(kind: str) -> list[str]:
    """Stems of the PGLib files present, by kind: ``typ``, ``api`` or ``sad``."""
    if not PGLIB_DIR.is_dir():
        return []
    stems = sorted(p.stem for p in PGLIB_DIR.glob("pglib_opf_*.m"))
    if kind == "api":
        return [s for s in stems if s.endswith("__api")]
    if kind == "sad":
        return [s for s in stems if s.endswith("__sad")]
    return [s for s in stems if "__" not in s]


# ------------------------------------------------------------------ fixtures --
@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def pglib_dir() -> Path:
    """The PGLib-OPF folder, or a skip naming where it was looked for."""
    if not PGLIB_DIR.is_dir():
        pytest.skip(PGLIB_SKIP_REASON)
    return PGLIB_DIR


@pytest.fixture(scope="session")
def pglib_baseline(pglib_dir: Path) -> dict[str, float | None]:
    """PowerModels' DC objective per PGLib case (``None`` where it reports infeasible)."""
    path = pglib_dir / "BASELINE.md"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return parse_baseline(path)


def _required_solvers() -> set[str]:
    raw = os.environ.get("FPAMM_REQUIRE_SOLVERS", "")
    return {s.strip().lower() for s in raw.split(",") if s.strip()}


@pytest.fixture(scope="session")
def require_solver() -> Callable[[str], None]:
    """``require_solver(name)``: skip when ``name`` is missing, unless CI requires it.

    ``FPAMM_REQUIRE_SOLVERS=glpk,cbc`` turns the skip into a failure for those names, so CI
    can never pass by skipping the solver-swap tests.
    """
    from fpamm_opt.solvers import solver_available

    def _require(name: str) -> None:
        if solver_available(name):
            return
        if name.lower() in _required_solvers():
            pytest.fail(f"solver {name!r} is required (FPAMM_REQUIRE_SOLVERS) but not available")
        pytest.skip(f"solver {name!r} is not available on this machine")

    return _require


@pytest.fixture(scope="session")
def tiny_case_text() -> Callable[..., str]:
    """:func:`tiny3_text`: the tiny case's MATPOWER text, with optional changes."""
    return tiny3_text


@pytest.fixture(scope="session")
def tiny_case_solution() -> dict[str, object]:
    """The hand-computed DC-OPF answer of ``tiny_case`` (:data:`TINY3_SOLUTION`)."""
    return dict(TINY3_SOLUTION)


@pytest.fixture
def tiny_case(tmp_path: Path) -> Path:
    """The hand-checked 3-bus case as a ``.m`` file (see :data:`TINY3_M`)."""
    path = tmp_path / "tiny3.m"
    path.write_text(tiny3_text())
    return path


@pytest.fixture
def write_case(tmp_path: Path) -> Callable[..., Path]:
    """``write_case(name, text=None, **tiny3_options)``: a ``.m`` file in ``tmp_path``."""

    def _write(name: str, text: str | None = None, **options: float) -> Path:
        path = tmp_path / name
        path.write_text(tiny3_text(**options) if text is None else text)
        return path

    return _write


# --------------------------------------------------------------------- hooks --
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``pglib_typ_case``, ``pglib_api_case``, ``pglib_sad_case`` by file stem."""
    for kind in ("typ", "api", "sad"):
        arg = f"pglib_{kind}_case"
        if arg not in metafunc.fixturenames:
            continue
        names = pglib_case_names(kind)
        if names:
            metafunc.parametrize(arg, names)
        else:
            metafunc.parametrize(
                arg, [pytest.param(None, marks=pytest.mark.skip(reason=PGLIB_SKIP_REASON))]
            )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test carries exactly one tier marker (``unit``, ``component``, ``integration``)."""
    bad = []
    for item in items:
        tiers = sorted({m.name for m in item.iter_markers() if m.name in TIERS})
        if len(tiers) != 1:
            bad.append(f"{item.nodeid}: {tiers or 'no tier marker'}")
    if bad:
        raise pytest.UsageError(
            "each test needs exactly one of the markers unit/component/integration:\n  "
            + "\n  ".join(bad)
        )
