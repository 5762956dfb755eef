"""Unit tests of fpamm_opt.spec: TOML loading, overrides, validation, hashing."""

from __future__ import annotations

from pathlib import Path

import pytest

from fpamm_opt.errors import InputError
from fpamm_opt.network import Convention, RatingPolicy
from fpamm_opt.scenario import ScenarioConfig
from fpamm_opt.spec import (
    Policy,
    RunSpec,
    apply_overrides,
    canonical_json,
    load_spec,
    parse_override,
    read_toml,
    spec_hash,
)

pytestmark = pytest.mark.unit

SPEC = """
[network]
case = "case57"
ratings = "derived"
rating_alpha = 1

[scenario]
kappa_lo = 0.7
tier_priorities = [0.6, 0.4]
demand_file = "series/demand.csv"

[mechanism]
beta = 0.05
weight_form = "relative"

[solver]
time_limit_s = 5
options = { presolve = "on" }

[run]
intervals = 200
seed = 4
policy = "equal"
name = "demo"

[outputs]
branches = false
"""


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    d = tmp_path / "models"
    d.mkdir()
    f = d / "demo.toml"
    f.write_text(SPEC)
    return f


def test_load_resolves_and_types(spec_file):
    spec = load_spec(spec_file)
    assert spec.network.case == "case57"
    assert spec.network.ratings is RatingPolicy.DERIVED
    assert spec.network.convention is Convention.MATPOWER
    assert spec.network.rating_alpha == 1.0 and isinstance(spec.network.rating_alpha, float)
    assert isinstance(spec.scenario, ScenarioConfig)
    assert spec.scenario.kappa_lo == 0.7 and spec.scenario.tier_priorities == (0.6, 0.4)
    assert spec.scenario.demand_file == (spec_file.parent / "series/demand.csv").resolve()
    assert spec.mechanism == {"beta": 0.05, "weight_form": "relative"}
    assert spec.solver.name == "highs" and spec.solver.time_limit_s == 5.0
    assert spec.solver.options == {"presolve": "on"}
    assert spec.run.intervals == 200 and spec.run.seed == 4 and spec.run.policy is Policy.EQUAL
    assert spec.run.flush_every == 500 and spec.run.name == "demo"
    assert spec.outputs.tables() == ("intervals", "nodes", "generators", "iterations", "events")
    assert spec.source == str(spec_file)


def test_case_path_resolution(tmp_path, monkeypatch):
    d = tmp_path / "models"
    d.mkdir()
    (d / "grid.m").write_text("% not read here")
    f = d / "s.toml"
    f.write_text('[network]\ncase = "grid.m"\n')
    assert load_spec(f).network.case == str((d / "grid.m").resolve())
    # not next to the spec: falls back to the current directory
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "other.m").write_text("%")
    monkeypatch.chdir(cwd)
    g = d / "t.toml"
    g.write_text('[network]\ncase = "other.m"\n')
    assert load_spec(g).network.case == str((cwd / "other.m").resolve())


def test_overrides(spec_file):
    spec = load_spec(
        spec_file,
        [
            "mechanism.beta=0.1",
            "scenario.kappa_hi=0.95",
            "network.ratings=case",
            "solver.options.threads=2",
            "run.seed=9",
            "run.name=other run",
            "outputs.branches=true",
            'mechanism.rule="qp"',
            "network.formulation=ptdf",
            "solver.engine=pyomo",
            "scenario.tier_targets=[0.95, 0.9]",
            "scenario.weak_node=3",
        ],
    )
    assert spec.mechanism["beta"] == 0.1 and spec.mechanism["rule"] == "qp"
    assert spec.scenario.kappa_hi == 0.95
    assert spec.network.ratings is RatingPolicy.CASE
    assert spec.solver.options == {"presolve": "on", "threads": 2}
    assert spec.run.seed == 9 and spec.run.name == "other run"
    assert spec.outputs.branches is True
    assert spec.network.formulation == "ptdf" and spec.solver.engine == "pyomo"
    assert spec.scenario.tier_targets == (0.95, 0.9) and spec.scenario.weak_node == 3


def test_parse_override_values():
    assert parse_override("a.b=1") == (["a", "b"], 1)
    assert parse_override("a.b = [1, 2]") == (["a", "b"], [1, 2])
    assert parse_override("a.b=true") == (["a", "b"], True)
    assert parse_override("a.b=derived") == (["a", "b"], "derived")
    assert parse_override("a.b.c=x=y") == (["a", "b", "c"], "x=y")
    for bad in ("novalue", "nosection=1", ".b=1", "a..b=1"):
        with pytest.raises(InputError, match=r"section\.key=value"):
            parse_override(bad)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("bogus.x=1", "unknown section 'bogus'"),
        ("run.sed=1", "unknown key run.sed"),
        ("scenario.kapa=1", "unknown key scenario.kapa"),
        ("network.case.x=1", "network.case is not a table"),
        ("run.policy=greedy", "run.policy: 'greedy' is not one of fpamm, equal, lmp"),
        ("run.intervals=0", "run.intervals: must be >= 1"),
        ("run.seed=-1", "run.seed"),
        ("scenario.kappa_lo=2", "scenario.kappa_hi"),
        ("outputs.branches=1", "outputs.branches: expected true or false"),
        ("solver.time_limit_s=0", "solver.time_limit_s"),
        ("network.convention=x", "network.convention"),
        ("network.formulation=acopf", "network.formulation: 'acopf' is not one of btheta, ptdf"),
        ("solver.engine=gurobi", "solver.engine"),
        ("solver.qp_method=ipm", "solver.qp_method: 'ipm' is not one of auto, kkt, solver"),
        ("mechanism.betta=0.1", "unknown key mechanism.betta"),
    ],
)
def test_bad_overrides(spec_file, override, message):
    with pytest.raises(InputError, match=message.replace(".", r"\.")):
        load_spec(spec_file, [override])


def test_unknown_section_and_key_in_file(tmp_path):
    f = tmp_path / "a.toml"
    f.write_text('[network]\ncase = "case14"\n[extras]\nx = 1\n')
    with pytest.raises(InputError, match=r"unknown section \[extras\]"):
        load_spec(f)
    f.write_text('[network]\ncase = "case14"\ncases = 1\n')
    with pytest.raises(InputError, match=r"unknown key network\.cases"):
        load_spec(f)
    f.write_text("[run]\nseed = 1\n")
    with pytest.raises(InputError, match=r"missing network\.case"):
        load_spec(f)


def test_bad_toml_and_missing_file(tmp_path):
    f = tmp_path / "broken.toml"
    f.write_text('[network]\ncase = "case14\n')
    with pytest.raises(InputError) as info:
        load_spec(f)
    msg = str(info.value)
    assert str(f) in msg and "invalid TOML" in msg and "line" in msg and "\n" not in msg
    with pytest.raises(InputError, match=r"nothere\.toml: file not found"):
        load_spec(tmp_path / "nothere.toml")


def test_round_trip_and_hash(spec_file):
    a = load_spec(spec_file)
    b = load_spec(spec_file)
    h = spec_hash(a)
    assert h == spec_hash(b) and len(h) == 16 and int(h, 16) >= 0
    again = RunSpec.from_dict(a.to_dict())
    assert again == a and spec_hash(again) == h
    assert canonical_json(a) == canonical_json(again)
    assert spec_hash(load_spec(spec_file, ["run.seed=5"])) != h
    # the equivalent integer and float spellings hash alike for typed fields
    assert spec_hash(load_spec(spec_file, ["network.rating_alpha=1.0"])) == h


def test_apply_overrides_does_not_mutate():
    data = {"run": {"seed": 1}}
    out = apply_overrides(data, ["run.seed=2", "mechanism.beta=0.2"])
    assert data == {"run": {"seed": 1}}
    assert out == {"run": {"seed": 2}, "mechanism": {"beta": 0.2}}


def test_defaults():
    spec = RunSpec.from_dict({"network": {"case": "case14"}})
    assert spec.run.intervals == 5000 and spec.run.policy is Policy.FPAMM
    assert spec.solver.name == "highs" and spec.solver.time_limit_s == 10.0
    assert spec.outputs.tables() == (
        "intervals",
        "nodes",
        "branches",
        "generators",
        "iterations",
        "events",
    )
    assert spec.network.ratings is RatingPolicy.AUTO and spec.network.formulation == "btheta"
    assert spec.solver.engine == "auto"
    assert spec.mechanism == {}
    assert spec.scenario.tier_targets is None and spec.scenario.weak_node is None


def test_shipped_models_load():
    models = Path(__file__).resolve().parents[2] / "models"
    files = sorted(models.glob("*.toml"))
    assert files
    for f in files:
        if "base" in read_toml(f):  # a sweep file: every run of it must load
            from fpamm_opt.sim.batch import load_sweep

            assert load_sweep(f).tasks()
            continue
        spec = load_spec(f)
        assert spec_hash(spec) == spec_hash(RunSpec.from_dict(spec.to_dict()))


def test_policy_is_the_mechanism_enum():
    from fpamm_opt.mechanism.config import Policy as MechPolicy

    assert Policy is MechPolicy
