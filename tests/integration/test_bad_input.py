"""Validation at the edge: bad input to ``fpamm run`` is one clear line, exit 1, nothing written.

Every class of bad input (unknown case or file, malformed MATPOWER, NaN or negative demand,
availability above capacity, ``beta`` outside (0, 1], non-positive ``epsilon``, unknown
policy, unknown or uninstalled solver, a tier with no nodes, unknown ``--set`` keys, a bad
extension) goes through the real command (click's runner, in process) and must give

- exit code 1 through ``SystemExit`` (not an escaped exception),
- exactly one line on stderr, ``error: ...``, naming the field and the value, no traceback,
- no run directory, no ``.<name>.tmp-<pid>`` sibling, not even the ``--out`` parent.

One case also runs as a real subprocess (stderr of the whole process, warnings included).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from fpamm_opt.cli import app

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "models" / "ieee14.toml"


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """Bad input files (case14 has 11 load nodes and 5 generators, pmax of gen 0 332.4 MW)."""
    d = tmp_path / "inputs"
    d.mkdir()
    (d / "bad.m").write_text("function mpc = bad\nmpc.version = '2';\nmpc.baseMVA = 100;\n")
    (d / "nan.csv").write_text("t,node,demand_mw\n0,0,1.0\n1,1,nan\n")
    (d / "neg.csv").write_text("t,node,demand_mw\n0,0,5.0\n0,3,-2.5\n")
    (d / "avail.csv").write_text("t,gen,available_mw\n0,1,10\n2,0,1000\n")
    (d / "tiers.csv").write_text("node,tier\n" + "".join(f"{i},0\n" for i in range(11)))
    (d / "ext.py").write_text("def build(model, net, limit_mw):\n    pass\n")
    return d


def run_cli(out: Path, *args: str) -> tuple[int, str, BaseException | None]:
    res = CliRunner().invoke(
        app, ["run", str(SPEC), "-T", "3", "--out", str(out), "--no-progress", *args]
    )
    return res.exit_code, res.stderr, res.exception


def assert_clean_failure(
    tmp_path: Path, code: int, stderr: str, exc: BaseException | None, *needles: str
) -> None:
    assert code == 1, stderr
    assert isinstance(exc, SystemExit), f"escaped exception: {exc!r}"
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    runs = tmp_path / "runs"
    assert not runs.exists(), f"{runs} was created on bad input"
    leftovers = [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]
    assert not leftovers


# (test id, --set overrides, substrings the message must contain: field and value)
CASES = [
    ("unknown-case", ["network.case=nosuchcase"], ["unknown case", "'nosuchcase'"]),
    ("missing-case-file", ["network.case={d}/missing.m"], ["missing.m", "does not exist"]),
    ("malformed-matpower", ["network.case={d}/bad.m"], ["bad.m", "not a readable MATPOWER"]),
    ("missing-series-file", ["scenario.demand_file={d}/none.csv"], ["demand_file", "not found"]),
    ("nan-demand", ["scenario.demand_file={d}/nan.csv"], ["demand_file", "NaN", "demand_mw"]),
    ("negative-demand", ["scenario.demand_file={d}/neg.csv"], ["negative demand_mw -2.5"]),
    (
        "availability-above-pmax",
        ["scenario.availability_file={d}/avail.csv"],
        ["availability_file", "available_mw 1000.0 above pmax 332.4", "gen=0"],
    ),
    ("beta-above-one", ["mechanism.beta=1.5"], ["mechanism.beta", "(0, 1]", "1.5"]),
    ("beta-zero", ["mechanism.beta=0"], ["mechanism.beta", "0.0"]),
    ("epsilon-zero", ["mechanism.epsilon=0"], ["mechanism.epsilon", "> 0", "0.0"]),
    ("epsilon-negative", ["mechanism.epsilon=-0.1"], ["mechanism.epsilon", "-0.1"]),
    ("unknown-policy", ["run.policy=auction"], ["run.policy", "'auction'"]),
    ("unknown-rule", ["mechanism.rule=lottery"], ["mechanism.rule", "'lottery'"]),
    ("unknown-solver", ["solver.name=nosuchsolver"], ["solver 'nosuchsolver'", "not available"]),
    (
        "engine-solver-mismatch",
        ["solver.engine=highs", "solver.name=glpk", "mechanism.rule=maxmin"],
        ["solver.engine", "'glpk'"],
    ),
    (
        "qp-rule-on-lp-solver",
        ["solver.name=glpk"],
        ["mechanism.rule", "'glpk'"],
    ),
    ("tier-without-nodes", ["scenario.tiers_file={d}/tiers.csv"], ["tier 1 has no nodes"]),
    ("tier-fraction-one", ["scenario.high_tier_fraction=1.0"], ["high_tier_fraction", "1.0"]),
    ("unknown-set-key", ["mechanism.gain=2"], ["mechanism.gain"]),
    ("unknown-set-section", ["market.price=2"], ["unknown section 'market'"]),
    ("set-without-value", ["mechanism.beta"], ["mechanism.beta", "section.key=value"]),
    ("bad-run-intervals", ["run.intervals=0"], ["run.intervals", ">= 1", "0"]),
]


@pytest.mark.parametrize(
    ("overrides", "needles"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_is_one_line_and_writes_nothing(
    tmp_path: Path, files: Path, overrides: list[str], needles: list[str]
) -> None:
    args: list[str] = []
    for o in overrides:
        args += ["--set", o.format(d=files)]
    out = tmp_path / "runs" / "deep" / "X"
    code, err, exc = run_cli(out, *args)
    assert_clean_failure(tmp_path, code, err, exc, *needles)


# (test id, [[extensions]] entry, substrings of the message)
EXTENSION_CASES = [
    (
        "missing-file",
        'function = "nofile.py:build"',
        ["extensions[0].function", "nofile.py", "not found"],
    ),
    ("no-colon", 'function = "ext.py"', ["extensions[0].function", "no ':'"]),
    (
        "no-attribute",
        'function = "ext.py:missing"',
        ["extensions[0].function", "no attribute 'missing'"],
    ),
    ("not-callable", 'function = "ext.py:VALUE"', ["extensions[0].function", "not callable"]),
    (
        "import-error",
        'function = "broken.py:build"',
        ["extensions[0].function", "broken.py", "ZeroDivisionError"],
    ),
    ("unknown-module", 'function = "no_such_pkg.sub:build"', ["no_such_pkg.sub", "cannot import"]),
    (
        "unexpected-argument",
        'function = "ext.py:build"\nlimit_mw = 3\nzone = 1',
        ["extensions[0]", "ext.py:build", "zone"],
    ),
    ("missing-argument", 'function = "ext.py:build"', ["extensions[0]", "limit_mw"]),
    (
        "date-argument",
        'function = "ext.py:build"\nlimit_mw = 1979-05-27',
        ["extensions", "1979-05-27"],
    ),
    ("no-function", "limit_mw = 3", ["extensions[0]", "missing key 'function'"]),
]


@pytest.mark.parametrize(
    ("entry", "needles"), [c[1:] for c in EXTENSION_CASES], ids=[c[0] for c in EXTENSION_CASES]
)
def test_bad_extension_is_one_line_and_writes_nothing(
    tmp_path: Path, entry: str, needles: list[str]
) -> None:
    """``[[extensions]]`` targets are resolved (relative to the spec) before anything else."""
    spec_dir = tmp_path / "spec"
    spec_dir.mkdir()
    (spec_dir / "ext.py").write_text("VALUE = 3\n\ndef build(model, net, *, limit_mw):\n    pass\n")
    (spec_dir / "broken.py").write_text("1 / 0\n")
    spec = spec_dir / "spec.toml"
    spec.write_text(SPEC.read_text() + "\n[[extensions]]\n" + entry + "\n")
    res = CliRunner().invoke(
        app, ["run", str(spec), "-T", "3", "--no-progress", "--out", str(tmp_path / "runs" / "X")]
    )
    assert_clean_failure(tmp_path, res.exit_code, res.stderr, res.exception, *needles)


def test_solver_known_to_pyomo_but_not_installed(tmp_path: Path) -> None:
    from fpamm_opt.solvers import solver_available

    missing = next(
        (s for s in ("gurobi", "cplex", "xpress", "scip", "mosek") if not solver_available(s)),
        None,
    )
    if missing is None:
        pytest.skip("every commercial solver probed is installed")
    code, err, exc = run_cli(tmp_path / "runs" / "X", "--set", f"solver.name={missing}")
    assert_clean_failure(tmp_path, code, err, exc, f"solver {missing!r}", "not available")


def test_missing_spec_and_bad_toml(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app, ["run", str(tmp_path / "nope.toml"), "--out", str(tmp_path / "runs" / "X")]
    )
    assert_clean_failure(
        tmp_path, res.exit_code, res.stderr, res.exception, "nope.toml", "not found"
    )
    bad = tmp_path / "bad.toml"
    bad.write_text("[network\ncase = 14\n")
    res = CliRunner().invoke(app, ["run", str(bad), "--out", str(tmp_path / "runs" / "X")])
    assert_clean_failure(
        tmp_path, res.exit_code, res.stderr, res.exception, "bad.toml", "invalid TOML"
    )


def test_existing_out_dir_is_refused_and_kept(tmp_path: Path) -> None:
    out = tmp_path / "X"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, err, exc = run_cli(out)
    assert code == 1 and isinstance(exc, SystemExit)
    assert "already exists" in err and str(out) in err
    assert (out / "keep.txt").read_text() == "mine"
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_policy_option_typo_is_a_usage_error(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app, ["run", str(SPEC), "--policy", "auction", "--out", str(tmp_path / "runs" / "X")]
    )
    assert res.exit_code == 2
    assert not (tmp_path / "runs").exists()


def test_real_process_prints_one_line(tmp_path: Path) -> None:
    """The whole process's stderr (library warnings included) is the one error line."""
    out = tmp_path / "runs" / "X"
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fpamm_opt.cli",
            "run",
            str(SPEC),
            "-T",
            "3",
            "--out",
            str(out),
            "--set",
            "mechanism.beta=2",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == ["error: mechanism.beta must be in (0, 1], got 2.0"]
    assert not (tmp_path / "runs").exists()
