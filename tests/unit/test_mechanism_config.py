"""MechanismConfig: defaults, validation messages, from_dict."""

from __future__ import annotations

import math

import pytest

from fpamm_opt.errors import InputError
from fpamm_opt.mechanism.config import MechanismConfig, Policy, Rule, WeightForm, WeightSource

pytestmark = pytest.mark.unit


def test_defaults_match_design() -> None:
    cfg = MechanismConfig()
    assert cfg.beta == 0.05 and cfg.epsilon == 0.05
    assert cfg.weight_form is WeightForm.RELATIVE and cfg.rule is Rule.MAXMIN
    assert cfg.weight_source is WeightSource.DEFICIT and cfg.deficit_floor == 1e-4
    assert (cfg.s_floor, cfg.gamma_max, cfg.q_target) == (0.01, 0.5, 0.5)
    assert (cfg.tol, cfg.m_max, cfg.residual_floor) == (1e-6, 50, 1e-6)
    assert (cfg.trigger_theta, cfg.audit_every) == (0.0, 1)
    assert (cfg.p_cap, cfg.voll, cfg.scarcity_tol) == (1000.0, 10000.0, 1e-6)
    assert Policy("fpamm") is Policy.FPAMM and Policy("lmp") is Policy.LMP


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("beta", 0.0),
        ("beta", 1.5),
        ("beta", math.nan),
        ("epsilon", 0.0),
        ("epsilon", math.nan),
        ("s_floor", 0.0),
        ("gamma_max", 1.2),
        ("q_target", 1.0),
        ("tol", 0.0),
        ("m_max", 0),
        ("m_max", 2.5),
        ("trigger_theta", -0.1),
        ("p_cap", -1.0),
        ("voll", 0.0),
        ("voll", math.inf),
        ("audit_every", -1),
        ("deficit_floor", 0.0),
        ("deficit_floor", 2.0),
    ],
)
def test_invalid_values_raise_with_field_name(field: str, value: float) -> None:
    with pytest.raises(InputError, match=rf"mechanism\.{field}\b") as info:
        MechanismConfig(**{field: value})
    assert repr(value) in str(info.value)


def test_beta_message_is_clear() -> None:
    with pytest.raises(InputError, match=r"mechanism\.beta must be in \(0, 1\], got 1\.5"):
        MechanismConfig(beta=1.5)


def test_beta_one_is_allowed() -> None:
    assert MechanismConfig(beta=1.0).beta == 1.0


def test_from_dict_accepts_enum_strings_and_round_trips() -> None:
    cfg = MechanismConfig.from_dict({"weight_form": "RAW", "rule": "qp", "beta": 0.1, "m_max": 7})
    assert cfg.weight_form is WeightForm.RAW and cfg.rule is Rule.QP
    assert cfg.beta == 0.1 and cfg.m_max == 7 and isinstance(cfg.m_max, int)
    assert MechanismConfig.from_dict(cfg.to_dict()) == cfg


def test_from_dict_rejects_unknown_key_and_bad_enum() -> None:
    with pytest.raises(InputError, match=r"mechanism\.betta"):
        MechanismConfig.from_dict({"betta": 0.1})
    with pytest.raises(InputError, match=r"mechanism\.weight_form"):
        MechanismConfig.from_dict({"weight_form": "fancy"})
    with pytest.raises(InputError, match=r"mechanism\.beta"):
        MechanismConfig.from_dict({"beta": "0.1"})


def test_weight_source_is_an_enum_from_strings() -> None:
    cfg = MechanismConfig.from_dict({"weight_source": "Deficit", "deficit_floor": 1e-3})
    assert cfg.weight_source is WeightSource.DEFICIT and cfg.deficit_floor == 1e-3
    assert cfg.to_dict()["weight_source"] == "deficit"
    assert MechanismConfig.from_dict(cfg.to_dict()) == cfg
    assert WeightSource.BOTH.uses_memory and WeightSource.BOTH.uses_deficit
    assert not WeightSource.MEMORY.uses_deficit and not WeightSource.DEFICIT.uses_memory
    with pytest.raises(InputError, match=r"mechanism\.weight_source must be one of memory, "):
        MechanismConfig.from_dict({"weight_source": "oracle"})


def test_frozen() -> None:
    cfg = MechanismConfig()
    with pytest.raises(AttributeError):
        cfg.beta = 0.2  # type: ignore[misc]
