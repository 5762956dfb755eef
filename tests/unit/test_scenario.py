"""Unit tests of fpamm_opt.scenario: determinism, the Markov chain, derating, tiers, user series."""

from __future__ import annotations

import itertools
import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fpamm_opt.errors import InputError
from fpamm_opt.network import load_network
from fpamm_opt.scenario import (
    STREAM_NAMES,
    Profile,
    Scenario,
    ScenarioConfig,
    VariationScope,
    profile_value,
    waterfill,
)

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def net():
    return load_network("case14", ratings="auto")


def _arrays(sc: Scenario, n: int) -> tuple[np.ndarray, np.ndarray, list]:
    ivs = list(sc.iter_intervals(n))
    return (
        np.stack([iv.demand_mw for iv in ivs]),
        np.stack([iv.available_mw for iv in ivs]),
        [iv.window for iv in ivs],
    )


# ------------------------------------------------------------------ determinism
def test_same_seed_is_bit_identical(net):
    d1, a1, w1 = _arrays(Scenario(net, ScenarioConfig(), seed=7), 400)
    d2, a2, w2 = _arrays(Scenario(net, ScenarioConfig(), seed=7), 400)
    assert np.array_equal(d1, d2) and np.array_equal(a1, a2) and w1 == w2
    # the same Scenario object iterated twice restarts from t = 0
    sc = Scenario(net, ScenarioConfig(), seed=7)
    assert np.array_equal(_arrays(sc, 50)[0], _arrays(sc, 50)[0])


def test_other_seed_differs(net):
    d1, a1, _ = _arrays(Scenario(net, ScenarioConfig(), seed=1), 400)
    d2, a2, _ = _arrays(Scenario(net, ScenarioConfig(), seed=2), 400)
    assert not np.array_equal(d1, d2)
    assert not np.array_equal(a1, a2)


def test_prefix_independent_of_horizon(net):
    sc = Scenario(net, ScenarioConfig(), seed=3)
    short = _arrays(sc, 100)
    long = _arrays(sc, 1000)
    assert np.array_equal(short[0], long[0][:100])
    assert np.array_equal(short[1], long[1][:100])
    assert short[2] == long[2][:100]
    iv = sc.interval(57)
    assert np.array_equal(iv.demand_mw, long[0][57]) and iv.t == 57


def test_streams_and_priority_rng(net):
    sc = Scenario(net, ScenarioConfig(), seed=11)
    a = sc.priority_rng().random(5)
    b = sc.priority_rng().random(5)
    assert np.array_equal(a, b)
    draws = {name: sc.stream(name).random() for name in STREAM_NAMES}
    assert len(set(draws.values())) == len(STREAM_NAMES)
    with pytest.raises(InputError, match="unknown random stream"):
        sc.stream("nope")


def test_arrays_are_read_only(net):
    iv = next(Scenario(net, ScenarioConfig(), seed=0).iter_intervals(1))
    with pytest.raises(ValueError):
        iv.demand_mw[0] = 1.0


# ------------------------------------------------------------------ Markov chain
def test_stationary_fraction_and_window_length(net):
    cfg = ScenarioConfig(scarce_fraction=0.25, mean_window_intervals=12)
    ivs = list(Scenario(net, cfg, seed=5).iter_intervals(20000))
    scarce = np.array([iv.state_scarce for iv in ivs])
    assert abs(scarce.mean() - 0.25) < 0.04
    windows = [iv.window for iv in ivs if iv.window is not None]
    n_windows = max(windows) + 1
    assert abs(scarce.sum() / n_windows - 12) < 2.0
    # ids: consecutive scarce intervals share an id, ids increase by one per window
    for prev, cur in itertools.pairwise(ivs):
        assert (cur.window is None) == (not cur.state_scarce)
        assert (cur.kappa is None) == (not cur.state_scarce)
        if prev.state_scarce and cur.state_scarce:
            assert cur.window == prev.window and cur.kappa == prev.kappa
    starts = [
        cur.window
        for prev, cur in zip([None, *ivs[:-1]], ivs)
        if cur.state_scarce and (prev is None or not prev.state_scarce)
    ]
    assert starts == list(range(n_windows))


def test_extreme_fractions(net):
    never = list(Scenario(net, ScenarioConfig(scarce_fraction=0.0), seed=0).iter_intervals(500))
    assert not any(iv.state_scarce for iv in never)
    always = list(Scenario(net, ScenarioConfig(scarce_fraction=1.0), seed=0).iter_intervals(500))
    assert all(iv.window == 0 for iv in always)


# ------------------------------------------------------------------ demand and derating
def test_daily_profile_shape():
    h = np.arange(48) / 2
    p = profile_value(Profile.DAILY, h)
    assert math.isclose(float(np.mean(p)), 1.0, abs_tol=1e-12)
    assert 0.74 <= p.min() <= 0.76 and 1.1 <= p.max() <= 1.16
    assert profile_value("flat", 7.5) == 1.0


def test_noise_free_flat_demand_is_base(net):
    cfg = ScenarioConfig(demand_noise=0.0, profile="flat", profile_scale=1.5, scarce_fraction=0)
    for iv in Scenario(net, cfg, seed=0).iter_intervals(5):
        assert np.allclose(iv.demand_mw, 1.5 * net.node_demand_mw)
        assert np.array_equal(iv.available_mw, net.gen_pmax_mw)


def test_demand_noise_clipped(net):
    cfg = ScenarioConfig(demand_noise=0.5, profile="flat")
    d, _, _ = _arrays(Scenario(net, cfg, seed=0), 2000)
    ratio = d / net.node_demand_mw
    assert ratio.min() >= 0.0 and ratio.max() <= 1 + 3 * 0.5 + 1e-12
    assert (ratio == 0).any()  # 1 - 3*0.5 < 0 is clipped at zero


@pytest.mark.parametrize("scope", list(VariationScope))
def test_scarce_availability_covers_kappa(net, scope):
    cfg = ScenarioConfig(scarce_fraction=0.5, outage_prob=0.05, variation_scope=scope)
    sc = Scenario(net, cfg, seed=9)
    pmax = net.gen_pmax_mw
    seen_outage = seen_clean = 0
    for iv in sc.iter_intervals(3000):
        assert np.all(iv.available_mw >= 0) and np.all(iv.available_mw <= pmax)
        if not iv.state_scarce:
            assert np.array_equal(iv.available_mw, pmax)
            continue
        assert cfg.kappa_lo <= iv.kappa <= cfg.kappa_hi
        assert np.all(iv.available_mw[iv.outage] == 0)
        if iv.outage.any():
            seen_outage += 1
            continue
        seen_clean += 1
        target = min(iv.kappa * iv.demand_mw.sum(), pmax.sum())
        assert math.isclose(iv.available_mw.sum(), target, rel_tol=1e-9)
    assert seen_outage > 10 and seen_clean > 100


def test_waterfill_caps_and_redistributes():
    cap = np.array([10.0, 100.0, 50.0, 0.0])
    out = waterfill(120.0, np.array([10.0, 1.0, 1.0, 5.0]), cap)
    assert math.isclose(out.sum(), 120.0) and np.all(out <= cap) and out[0] == 10.0
    assert np.allclose(out, [10.0, 60.0, 50.0, 0.0])
    assert np.array_equal(waterfill(1e6, np.ones(4), cap), cap)
    assert np.array_equal(waterfill(0.0, np.ones(4), cap), np.zeros(4))


# ------------------------------------------------------------------ tiers
def test_tiers_sized_and_nonempty(net):
    sc = Scenario(net, ScenarioConfig(), seed=0)
    assert sc.node_tier.shape == (net.n_node,)
    assert list(sc.tier_sizes()) == [4, 7]  # round(11/3) = 4 in tier 0
    assert np.array_equal(sc.tier_priority, [0.7, 0.3])
    other = Scenario(net, ScenarioConfig(), seed=1)
    assert list(other.tier_sizes()) == [4, 7]
    three = Scenario(net, ScenarioConfig(n_tiers=3, tier_priorities=(3, 2, 1)), seed=0)
    assert list(three.tier_sizes()) == [4, 4, 3]
    one = Scenario(net, ScenarioConfig(n_tiers=1, tier_priorities=(1.0,)), seed=0)
    assert np.all(one.node_tier == 0)


def test_empty_tier_raises(net):
    with pytest.raises(InputError, match="scenario: tier 1 has no nodes"):
        Scenario(net, ScenarioConfig(high_tier_fraction=0.99), seed=0)


# ------------------------------------------------------------------ config validation
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"interval_minutes": 0}, "interval_minutes"),
        ({"demand_noise": -0.1}, "demand_noise"),
        ({"profile": "weekly"}, "profile"),
        ({"profile_scale": 0}, "profile_scale"),
        ({"mean_window_intervals": 0.5}, "mean_window_intervals"),
        ({"scarce_fraction": 1.5}, "scarce_fraction"),
        ({"scarce_fraction": 0.99}, "scarce_fraction"),
        ({"kappa_lo": 0.9, "kappa_hi": 0.8}, "kappa_hi"),
        ({"kappa_lo": -0.1}, "kappa_lo"),
        ({"gen_variation": -1}, "gen_variation"),
        ({"outage_prob": 2}, "outage_prob"),
        ({"outage_prob_normal": -0.5}, "outage_prob_normal"),
        ({"n_tiers": 0, "tier_priorities": ()}, "n_tiers"),
        ({"n_tiers": 2.5}, "n_tiers"),
        ({"high_tier_fraction": 1.0}, "high_tier_fraction"),
        ({"tier_priorities": (0.7,)}, "tier_priorities"),
        ({"tier_priorities": (0.7, 0.0)}, "tier_priorities"),
        ({"tier_priorities": "0.7"}, "tier_priorities"),
        ({"demand_noise": "x"}, "demand_noise"),
        ({"demand_noise": float("nan")}, "demand_noise"),
        ({"kappa_lo": True}, "kappa_lo"),
        ({"variation_scope": "year"}, "variation_scope"),
        ({"demand_file": 3}, "demand_file"),
    ],
)
def test_config_validation(kwargs, field):
    with pytest.raises(InputError, match=rf"scenario\.{field}"):
        ScenarioConfig(**kwargs)


def test_tier_targets_and_weak_node(net):
    assert ScenarioConfig(tier_targets=0.9).tier_targets == (0.9, 0.9)
    assert ScenarioConfig(tier_targets=[0.95, float("nan")]).tier_targets == (0.95, None)
    assert ScenarioConfig(tier_targets=[None, 1]).tier_targets == (None, 1.0)
    for bad in ([0.9], [0.9, 1.2], "0.9", [0.9, "x"]):
        with pytest.raises(InputError, match=r"scenario\.tier_targets"):
            ScenarioConfig(tier_targets=bad)
    assert Scenario(net, ScenarioConfig(weak_node=10)).cfg.weak_node == 10
    with pytest.raises(InputError, match=r"scenario\.weak_node: 11 is not a node of case14"):
        Scenario(net, ScenarioConfig(weak_node=11))
    with pytest.raises(InputError, match=r"scenario\.weak_node"):
        ScenarioConfig(weak_node=-1)


def test_config_dict_round_trip(tmp_path):
    cfg = ScenarioConfig.from_dict(
        {
            "kappa_lo": 0.6,
            "tier_priorities": [0.5, 0.5],
            "demand_file": "d.csv",
            "tier_targets": [0.9, None],
        },
        base_dir=tmp_path,
    )
    assert cfg.demand_file == (tmp_path / "d.csv").resolve()
    assert cfg.tier_priorities == (0.5, 0.5)
    assert ScenarioConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(InputError, match="scenario: unknown key 'kapa'"):
        ScenarioConfig.from_dict({"kapa": 1})


def test_bad_seed(net):
    for seed in (-1, 1.5, True, "3"):
        with pytest.raises(InputError, match="seed"):
            Scenario(net, ScenarioConfig(), seed=seed)


# ------------------------------------------------------------------ user series
def _write(path: Path, df: pd.DataFrame) -> Path:
    if path.suffix == ".csv":
        df.to_csv(path, index=False)
    else:
        df.to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_user_demand_replaces_entries(net, tmp_path, suffix):
    f = _write(
        tmp_path / f"demand{suffix}",
        pd.DataFrame({"t": [2, 2, 5], "node": [1, 3, 0], "demand_mw": [42.0, 0.0, 7.5]}),
    )
    base = list(Scenario(net, ScenarioConfig(), seed=4).iter_intervals(8))
    user = list(Scenario(net, ScenarioConfig(demand_file=f), seed=4).iter_intervals(8))
    for b, u in zip(base, user):
        expect = b.demand_mw.copy()
        if b.t == 2:
            expect[[1, 3]] = [42.0, 0.0]
        if b.t == 5:
            expect[0] = 7.5
        assert np.array_equal(u.demand_mw, expect)
        assert u.window == b.window


def test_user_demand_by_bus(net, tmp_path):
    bus = int(net.node_ids[4])
    f = _write(tmp_path / "d.csv", pd.DataFrame({"t": [0], "bus": [bus], "demand_mw": [3.25]}))
    iv = next(Scenario(net, ScenarioConfig(demand_file=f), seed=0).iter_intervals(1))
    assert iv.demand_mw[4] == 3.25


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_user_availability_and_tiers(net, tmp_path, suffix):
    pmax = net.gen_pmax_mw
    fa = _write(
        tmp_path / f"a{suffix}",
        pd.DataFrame({"t": [0, 1], "gen": [0, 2], "available_mw": [10.0, pmax[2] + 1e-9]}),
    )
    ft = _write(tmp_path / f"tiers{suffix}", pd.DataFrame({"node": [0, 1, 2], "tier": [1, 0, 0]}))
    cfg = ScenarioConfig(availability_file=fa, tiers_file=ft, scarce_fraction=0.0)
    sc = Scenario(net, cfg, seed=0)
    ivs = list(sc.iter_intervals(3))
    assert ivs[0].available_mw[0] == 10.0 and ivs[0].available_mw[1] == pmax[1]
    assert ivs[1].available_mw[2] == pmax[2]  # within tolerance, clipped to pmax
    assert np.array_equal(ivs[2].available_mw, pmax)
    assert list(sc.node_tier[:3]) == [1, 0, 0]
    desc = sc.describe()
    assert desc["availability_file"]["rows"] == 2 and desc["tier_sizes"] == list(sc.tier_sizes())


CASES = [
    ("demand", "t,node\n0,1\n", "missing column 'demand_mw'"),
    ("demand", "t,x,demand_mw\n0,1,2\n", "missing column 'node'"),
    ("demand", "t,node,demand_mw\n0,1,\n", "NaN in column 'demand_mw'"),
    ("demand", "t,node,demand_mw\n5,2,-3.0\n", "negative demand_mw -3.0 at t=5, node=2"),
    ("demand", "t,node,demand_mw\n0,99,1\n", "unknown node 99"),
    ("demand", "t,bus,demand_mw\n0,7,1\n", "unknown bus 7"),
    ("demand", "t,node,bus,demand_mw\n0,0,3,1\n", "node 0 and bus 3 disagree"),
    ("demand", "t,node,demand_mw\n0,1,1\n0,1,2\n", "duplicate row t=0, node=1"),
    ("demand", "t,node,demand_mw\n0.5,1,1\n", "non-integer t 0.5"),
    ("demand", "t,node,demand_mw\n-1,1,1\n", "negative t -1"),
    ("demand", "t,node,demand_mw\n0,1,abc\n", "non-numeric demand_mw 'abc'"),
    ("demand", "t,node,demand_mw\n0,1,inf\n", "non-finite demand_mw"),
    ("demand", "t,t,demand_mw\n0,1,1\n", "missing column 'node'"),
    ("demand", "", "cannot read"),
    (
        "availability",
        "t,gen,available_mw\n3,1,1000\n",
        "available_mw 1000.0 above pmax 140.0 at t=3, gen=1",
    ),
    ("availability", "t,gen,available_mw\n3,1,-1\n", "negative available_mw -1.0 at t=3, gen=1"),
    ("availability", "t,gen,available_mw\n3,9,1\n", "unknown gen 9"),
    ("availability", "t,gen\n3,9\n", "missing column 'available_mw'"),
    ("availability", "t,gen,available_mw\n1,1,1\n1,1,1\n", "duplicate row t=1, gen=1"),
    ("tiers", "node,tier\n0,5\n", "tier 5 out of range"),
    ("tiers", "node,tier\n0,1\n0,0\n", "duplicate row node=0"),
    ("tiers", "node\n0\n", "missing column 'tier'"),
    (
        "tiers",
        "node,tier\n0,1\n1,1\n2,1\n3,1\n5,1\n6,1\n7,1\n8,1\n9,1\n10,1\n4,1\n",
        "tier 0 has no nodes",
    ),
]


@pytest.mark.parametrize(("kind", "text", "message"), CASES)
def test_bad_user_series(net, tmp_path, kind, text, message):
    f = tmp_path / f"bad_{kind}.csv"
    f.write_text(text)
    cfg = ScenarioConfig(**{f"{kind}_file": f})
    with pytest.raises(InputError) as info:
        Scenario(net, cfg, seed=0)
    msg = str(info.value)
    assert message in msg
    assert "\n" not in msg
    if "tier 0 has no nodes" not in message:
        assert msg.startswith(f"{kind}_file {f}")


def test_missing_and_unsupported_files(net, tmp_path):
    with pytest.raises(InputError, match=r"demand_file .*nope\.csv: file not found"):
        Scenario(net, ScenarioConfig(demand_file=tmp_path / "nope.csv"))
    f = tmp_path / "x.xlsx"
    f.write_text("t")
    with pytest.raises(InputError, match=r"unsupported file type '\.xlsx'"):
        Scenario(net, ScenarioConfig(availability_file=f))
    g = tmp_path / "broken.parquet"
    g.write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match=r"tiers_file .*broken\.parquet: cannot read"):
        Scenario(net, ScenarioConfig(tiers_file=g))


_COLS = st.sampled_from(["t", "node", "bus", "gen", "tier", "demand_mw", "available_mw", "x", ""])
_CELLS = st.one_of(
    st.integers(-5, 20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=6),
    st.just(""),
    st.just("1e400"),
    st.just("99999999999999999999999"),
)


@st.composite
def _garbage_csv(draw):
    if draw(st.booleans()):
        return draw(st.text(max_size=200))
    cols = draw(st.lists(_COLS, min_size=1, max_size=5))
    rows = draw(st.lists(st.lists(_CELLS, min_size=0, max_size=6), max_size=6))
    return "\n".join([",".join(cols)] + [",".join(r) for r in rows])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_garbage_csv(), kind=st.sampled_from(["demand", "availability", "tiers"]))
def test_fuzz_garbage_csv_only_input_error(net, text, kind):
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "fuzz.csv"
        f.write_text(text, encoding="utf-8", errors="surrogatepass")
        cfg = ScenarioConfig(**{f"{kind}_file": f})
        try:
            sc = Scenario(net, cfg, seed=0)
            for iv in sc.iter_intervals(3):
                assert np.all(iv.demand_mw >= 0)
                assert np.all(iv.available_mw <= net.gen_pmax_mw)
        except InputError as exc:
            assert "\n" not in str(exc)
