"""``fpamm cases`` and ``fpamm dcopf`` end to end, in subprocesses (INTERFACE.md).

Both entry points are exercised: ``python -m fpamm_opt.cli`` and ``python cli.py`` from the
repository root. The commands of this module start together (each pays the interpreter and
Pyomo import once) and the tests read their results.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PGLIB = REPO.parent / "shared" / "data" / "pglib"
PGLIB_SAD = PGLIB / "pglib_opf_case14_ieee__sad.m"
MODULE = [sys.executable, "-m", "fpamm_opt.cli"]
PTDF_POWERMODELS = ["--formulation", "ptdf", "--convention", "powermodels"]
SHIM = [sys.executable, "cli.py"]
JSON_KEYS = {
    "load_s",
    "build_s",
    "engine",
    "time_limit_s",
    "objective",
    "status",
    "solver",
    "formulation",
    "convention",
    "n_bus",
    "n_branch",
    "solve_s",
}
#: Golden: pandapower ``rundcopp`` on case14 (the MATPOWER convention matches to ~1e-12).
CASE14_OBJECTIVE = 7642.593734939243


@dataclass(frozen=True)
class Run:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"{' '.join(self.args)} -> {self.returncode}\n{self.stdout}\n{self.stderr}"


def _commands(tmp: Path, tiny_text: Callable[..., str]) -> dict[str, list[str]]:
    garbage = tmp / "garbage.m"
    garbage.write_text("this is not\na MATPOWER case\n")
    nogen = tmp / "nogen.m"
    nogen.write_text(tiny_text(g1_status=0, g2_status=0))
    tiny_path = tmp / "tiny3.m"
    tiny_path.write_text(tiny_text())
    cmds = {
        "cases": [*MODULE, "cases"],
        "cases_shim": [*SHIM, "cases"],
        "help": [*MODULE, "--help"],
        "help_shim": [*SHIM, "--help"],
        "case14": [*MODULE, "dcopf", "case14", "--json"],
        "tiny_ptdf_shim": [*SHIM, "dcopf", str(tiny_path), "--json", *PTDF_POWERMODELS],
        "unknown_case": [*MODULE, "dcopf", "no_such_case_xyz", "--json"],
        "not_matpower": [*SHIM, "dcopf", str(garbage), "--json"],
        "no_generator": [*MODULE, "dcopf", str(nogen), "--json"],
        "unknown_solver": [*MODULE, "dcopf", str(tiny_path), "--solver", "no_such_solver_xyz"],
        "usage_missing_case": [*MODULE, "dcopf"],
        "usage_bad_choice": [*SHIM, "dcopf", "case14", "--formulation", "nonsense"],
        "usage_bad_option": [*MODULE, "dcopf", "case14", "--no-such-option"],
    }
    if PGLIB.is_dir():
        cmds["sad"] = [*SHIM, "dcopf", str(PGLIB_SAD), "--json", "--convention", "powermodels"]
    return cmds


def _start(args: Sequence[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        list(args), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.fixture(scope="module")
def runs(
    tmp_path_factory: pytest.TempPathFactory, tiny_case_text: Callable[..., str]
) -> dict[str, Run]:
    """Every command of the module, started at once, then collected."""
    cmds = _commands(tmp_path_factory.mktemp("cli"), tiny_case_text)
    procs = {name: _start(args) for name, args in cmds.items()}
    out = {}
    for name, proc in procs.items():
        try:
            stdout, stderr = proc.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        out[name] = Run(tuple(cmds[name][1:]), proc.returncode, stdout, stderr)
    return out


def _json(run: Run) -> dict:
    lines = run.stdout.strip().splitlines()
    assert len(lines) == 1, f"expected one JSON line:\n{run}"
    obj = json.loads(lines[0])
    assert isinstance(obj, dict)
    return obj


def _error_line(run: Run) -> str:
    assert run.returncode == 1, str(run)
    assert "Traceback" not in run.stderr, str(run)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected exactly one stderr line:\n{run}"
    assert run.stdout.strip() == "", str(run)
    return lines[0]


# ----------------------------------------------------------------- fpamm cases --
@pytest.mark.parametrize("key", ["cases", "cases_shim"])
def test_cases_lists_builtin_networks(runs: dict[str, Run], key: str) -> None:
    run = runs[key]
    assert run.returncode == 0, str(run)
    listed = {line.strip() for line in run.stdout.splitlines()}
    for name in ("case14", "case57", "case118", "GBnetwork"):
        assert name in listed, str(run)


def test_module_and_shim_are_the_same_app(runs: dict[str, Run]) -> None:
    assert runs["help"].returncode == runs["help_shim"].returncode == 0
    assert runs["help"].stdout == runs["help_shim"].stdout
    for command in ("cases", "dcopf"):
        assert command in runs["help"].stdout


# ----------------------------------------------------------------- fpamm dcopf --
def test_dcopf_case14_json(runs: dict[str, Run]) -> None:
    run = runs["case14"]
    assert run.returncode == 0, str(run)
    obj = _json(run)
    assert JSON_KEYS <= obj.keys()
    assert obj["status"] == "optimal"
    assert obj["objective"] == pytest.approx(CASE14_OBJECTIVE, rel=1e-6)
    assert (obj["solver"], obj["formulation"], obj["convention"]) == (
        "highs",
        "btheta",
        "matpower",
    )
    assert (obj["n_bus"], obj["n_branch"]) == (14, 20)
    assert isinstance(obj["solve_s"], float) and obj["solve_s"] >= 0


def test_dcopf_through_the_shim_with_options(
    runs: dict[str, Run], tiny_case_solution: dict
) -> None:
    obj = _json(runs["tiny_ptdf_shim"])
    assert obj["status"] == "optimal"
    assert (obj["formulation"], obj["convention"]) == ("ptdf", "powermodels")
    assert obj["objective"] == pytest.approx(tiny_case_solution["objective"], rel=1e-9)
    assert (obj["n_bus"], obj["n_branch"]) == (3, 3)
    # The highspy fast path by default (lazy PTDF rows), with the time split printed.
    assert obj["engine"] == "highs"
    assert all(obj[k] >= 0 for k in ("load_s", "build_s", "solve_s"))
    assert obj["time_limit_s"] == 10.0  # 10 s per 1000 buses, at least 10 s


def test_dcopf_infeasible_case_exits_zero(runs: dict[str, Run], pglib_dir: Path) -> None:
    run = runs["sad"]
    assert run.returncode == 0, str(run)
    obj = _json(run)
    assert obj["status"] == "infeasible"
    assert obj["objective"] is None
    assert JSON_KEYS <= obj.keys()


# ------------------------------------------------------------------ bad input --
@pytest.mark.parametrize(
    ("key", "phrases"),
    [
        ("unknown_case", ["unknown case", "no_such_case_xyz"]),
        ("not_matpower", ["garbage.m", "not a readable MATPOWER case"]),
        ("no_generator", ["nogen", "no in-service generator"]),
        ("unknown_solver", ["no_such_solver_xyz", "not available"]),
    ],
)
def test_bad_input_exits_one_with_one_line(
    runs: dict[str, Run], key: str, phrases: list[str]
) -> None:
    line = _error_line(runs[key])
    assert line.startswith("error: ")
    for phrase in phrases:
        assert phrase in line, line


@pytest.mark.parametrize("key", ["usage_missing_case", "usage_bad_choice", "usage_bad_option"])
def test_usage_errors_exit_two(runs: dict[str, Run], key: str) -> None:
    run = runs[key]
    assert run.returncode == 2, str(run)
    assert "Usage:" in run.stderr
    assert "Traceback" not in run.stderr


def test_dcopf_time_limit_names_the_option(pglib_dir: Path) -> None:
    """A solve stopped by its time limit says which option raises it."""
    from click.testing import CliRunner

    from fpamm_opt.cli import app

    case = pglib_dir / "pglib_opf_case300_ieee.m"
    res = CliRunner().invoke(app, ["dcopf", str(case), "--time-limit", "1e-6", "--json"])
    assert res.exit_code == 0, res.output
    obj = json.loads(res.output.strip().splitlines()[-1])
    assert obj["status"] == "time_limit"
    assert "--time-limit" in obj["reason"]
