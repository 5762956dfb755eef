"""The scenario source switch and the SimBench source's parts that need no SimBench data.

``[scenario] source`` and the SimBench-only fields are validated with one clear line; a
synthetic scenario's dict (hence its spec hash) does not carry them; the two-state Markov
outage model has the stated forced outage rate and mean repair time; a missing ``simbench``
package is one line naming the extra to install.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from fpamm_opt.errors import CaseError, InputError
from fpamm_opt.network import SIMBENCH_HINT, simbench_codes
from fpamm_opt.scenario import SIMBENCH_FIELDS, ScenarioConfig, ScenarioSource
from fpamm_opt.scenarios_simbench import MarkovOutages

pytestmark = pytest.mark.unit

SB = {"source": "simbench", "grid": "1-EHV-mixed--0-no_sw", "interval_minutes": 15}


def test_synthetic_dict_leaves_out_the_simbench_fields() -> None:
    d = ScenarioConfig().to_dict()
    assert "source" not in d
    assert not set(SIMBENCH_FIELDS) & set(d)
    assert ScenarioConfig.from_dict(d) == ScenarioConfig()


def test_simbench_dict_round_trip() -> None:
    cfg = ScenarioConfig.from_dict({**SB, "capacity_scale": 0.5})
    assert cfg.source is ScenarioSource.SIMBENCH
    d = cfg.to_dict()
    assert d["source"] == "simbench" and d["capacity_scale"] == 0.5
    assert ScenarioConfig.from_dict(d) == cfg


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"capacity_scale": 0.5}, "only used with source = 'simbench'"),
        ({"grid": "1-EHV-mixed--0-no_sw"}, "only used with source = 'simbench'"),
        ({"source": "nope"}, "scenario.source"),
        ({"source": "simbench", "interval_minutes": 15}, "needs a SimBench grid code"),
        ({**SB, "interval_minutes": 30}, "15-minute"),
        ({**SB, "capacity_scale": 0.0}, "capacity_scale"),
        ({**SB, "capacity_scale": 1.5}, "capacity_scale"),
        ({**SB, "forced_outage_rate": 1.0}, "forced_outage_rate"),
        ({**SB, "mean_repair_hours": 0.1}, "mean_repair_hours"),
    ],
)
def test_bad_source_fields_are_one_line(data: dict, match: str) -> None:
    with pytest.raises(InputError, match=match) as err:
        ScenarioConfig.from_dict(data)
    assert "\n" not in str(err.value)


def test_markov_outages_have_the_stated_rate_and_repair_time() -> None:
    dt_h, mttr, rate = 0.25, 50.0, 0.05
    chain = MarkovOutages(400, rate, mttr, dt_h, np.random.default_rng(7))
    states = np.array([chain.step() for _ in range(20000)])
    assert abs(states.mean() - rate) < 0.005
    # outage lengths (in intervals): runs of True along each unit's path
    starts = states[1:] & ~states[:-1]
    ends = ~states[1:] & states[:-1]
    n_done = int(ends.sum())
    mean_len_h = float(states[1:].sum()) / max(int(starts.sum()), 1) * dt_h
    assert n_done > 500
    assert abs(mean_len_h - mttr) / mttr < 0.1


def test_markov_outages_draw_the_same_numbers_whatever_the_state() -> None:
    a = MarkovOutages(5, 0.5, 1.0, 0.25, np.random.default_rng(1))
    b = MarkovOutages(5, 0.0, 1.0, 0.25, np.random.default_rng(1))
    for _ in range(10):
        a.step()
        b.step()
    assert a.rng.random() == b.rng.random()


def test_missing_simbench_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "simbench", None)
    with pytest.raises(CaseError) as err:
        simbench_codes()
    assert str(err.value) == SIMBENCH_HINT and "pip install" in SIMBENCH_HINT
