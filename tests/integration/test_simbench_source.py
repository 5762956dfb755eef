"""The SimBench scenario source on SimBench's EHV grid, over a short horizon.

Needs the optional extra ``simbench`` (``pip install -e ".[simbench]"``); skips without it.
The grid's own profiles drive demand and renewables (checked against
``simbench.get_absolute_values``), conventional units sit at ``capacity_scale · pmax`` unless
out, a horizon is a prefix of a longer one, bad input is one line, and a short run of the
shipped spec passes ``fpamm verify``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.integration

sb = pytest.importorskip(
    "simbench", reason="simbench not installed (optional extra: pip install -e '.[simbench]')"
)

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "models" / "simbench_ehv.toml"
T = 96  # one day of 15-minute steps
T_RUN = 32  # 8 hours: the first 19 intervals are not scarce, the rest are


@pytest.fixture(scope="module")
def scenario():
    from fpamm_opt.scenario_sources import make_scenario
    from fpamm_opt.spec import load_spec

    spec = load_spec(SPEC)
    net = spec.network.load()
    return make_scenario(net, spec.scenario, seed=3, intervals=T)


def test_demand_and_renewables_follow_the_grid_profiles(scenario) -> None:
    from fpamm_opt.network import simbench_case

    case = simbench_case("1-EHV-mixed--0-no_sw")
    prof = scenario.profiles
    absolute = sb.get_absolute_values(case.net, profiles_instead_of_study_cases=True)
    loads = absolute[("load", "p_mw")].to_numpy()[:T]
    sgens = absolute[("sgen", "p_mw")].to_numpy()[:T]
    net = scenario.net
    for si in scenario.iter_intervals(T):
        node_mw = np.bincount(prof.load_node, loads[si.t], minlength=net.n_node)
        assert np.allclose(si.demand_mw, np.maximum(node_mw, 0.0), atol=1e-9)
        ren = prof.sgen_gen
        assert np.allclose(si.available_mw[ren], np.clip(sgens[si.t], 0, None), atol=1e-9)
        conv = prof.conv_gen
        cap = scenario.cfg.capacity_scale * net.gen_pmax_mw[conv]
        out = si.outage[conv]
        assert np.allclose(si.available_mw[conv], np.where(out, 0.0, cap))


def test_a_shorter_horizon_is_a_prefix(scenario) -> None:
    a = list(scenario.iter_intervals(10))
    b = list(scenario.iter_intervals(T))[:10]
    for x, y in zip(a, b):
        assert np.array_equal(x.available_mw, y.available_mw)
        assert np.array_equal(x.demand_mw, y.demand_mw)


def test_manifest_summary_names_the_source(scenario) -> None:
    d = scenario.describe()["simbench"]
    assert d["steps"] == 35136 and d["loads"] == 390 and d["renewables"] == 225
    assert d["conventional_units"] == {"ext_grid": 7, "gen": 338}


def _cli(*args: str) -> tuple[int, str, str]:
    """The command in process (the grid and its conversion stay cached between tests)."""
    from click.testing import CliRunner

    from fpamm_opt.cli import app

    res = CliRunner().invoke(app, list(args))
    return res.exit_code, res.stdout, res.stderr


@pytest.mark.parametrize(
    ("sets", "match"),
    [
        (["scenario.grid=1-EHV-nothing--0-no_sw"], "unknown SimBench grid code"),
        (["network.case=case14"], "is not that SimBench grid"),
        (["run.intervals=40000"], "longer than the 35136"),
    ],
)
def test_bad_input_is_one_line(tmp_path: Path, sets: list[str], match: str) -> None:
    args = ["run", str(SPEC), "--out", str(tmp_path / "r"), "--no-progress"]
    for s in sets:
        args += ["--set", s]
    code, _, err = _cli(*args)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and match in lines[0], err
    assert not (tmp_path / "r").exists()


def test_a_day_runs_and_verifies(tmp_path: Path) -> None:
    out = tmp_path / "run"
    code, _, err = _cli("run", str(SPEC), "-T", str(T_RUN), "--out", str(out), "--no-progress")
    assert code == 0, err
    code, stdout, err = _cli("verify", str(out), "--cold-sample", "10")
    assert code == 0, stdout + err
