"""Property-based fuzzing of every reader of user input (Hypothesis).

Each reader must either return its result or raise the package's one input error, never
anything else (a ``KeyError``, ``ValueError``, ``TypeError`` ... escaping would be a
traceback at the command line):

- the spec loader on random TOML documents (mostly the real section and key names with
  random values, so that validation is exercised deeply) and on random ``--set`` strings:
  a :class:`~fpamm_opt.spec.RunSpec` that can be hashed and round-trips, or ``InputError``;
- the time-series readers on random CSV bytes and on structured random CSV rows:
  ``InputError`` or a validated series;
- the MATPOWER reader on random mutations of a small valid ``.m`` case: ``CaseError`` or a
  :class:`~fpamm_opt.network.NetworkData` whose arrays are finite where the model needs them.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fpamm_opt.errors import CaseError, InputError
from fpamm_opt.network import Convention, NetworkData, network_from_raw, read_raw_case
from fpamm_opt.scenario import load_availability_series, load_demand_series, load_tiers_file
from fpamm_opt.spec import RunSpec, load_spec, spec_hash

pytestmark = pytest.mark.unit

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

# ----------------------------------------------------------------- a small valid case --
CASE4_M = """\
function mpc = case4f
mpc.version = '2';
mpc.baseMVA = 100;
%% bus_i type Pd Qd Gs Bs area Vm Va baseKV zone Vmax Vmin
mpc.bus = [
\t1\t3\t0\t0\t0\t0\t1\t1\t0\t230\t1\t1.1\t0.9;
\t2\t2\t40\t0\t0\t0\t1\t1\t0\t230\t1\t1.1\t0.9;
\t3\t1\t60\t0\t0\t0\t1\t1\t0\t230\t1\t1.1\t0.9;
\t4\t1\t25\t0\t1.5\t0\t1\t1\t0\t230\t1\t1.1\t0.9;
];
%% bus Pg Qg Qmax Qmin Vg mBase status Pmax Pmin
mpc.gen = [
\t1\t0\t0\t100\t-100\t1\t100\t1\t150\t0;
\t2\t0\t0\t100\t-100\t1\t100\t1\t80\t10;
];
%% fbus tbus r x b rateA rateB rateC ratio angle status angmin angmax
mpc.branch = [
\t1\t2\t0.01\t0.1\t0\t100\t0\t0\t0\t0\t1\t-360\t360;
\t2\t3\t0.01\t0.1\t0\t60\t0\t0\t0\t0\t1\t-360\t360;
\t1\t3\t0.01\t0.2\t0\t80\t0\t0\t0\t0\t1\t-360\t360;
\t3\t4\t0.01\t0.1\t0\t40\t0\t0\t0.98\t2\t1\t-360\t360;
];
%% model startup shutdown n c2 c1 c0
mpc.gencost = [
\t2\t0\t0\t3\t0.01\t10\t0;
\t2\t0\t0\t3\t0.02\t20\t5;
];
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def net(workdir: Path) -> NetworkData:
    path = workdir / "case4f.m"
    path.write_text(CASE4_M)
    return network_from_raw(read_raw_case(path), Convention.MATPOWER)


def test_base_case_is_valid(net: NetworkData) -> None:
    assert (net.n_bus, net.n_node, net.n_gen, net.n_branch) == (4, 3, 2, 4)


# --------------------------------------------------------------------- TOML writer --
_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(k: str) -> str:
    return k if _BARE.match(k) else json.dumps(k, ensure_ascii=False)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, dt.date | dt.datetime):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(v)


def to_toml(doc: dict[str, Any]) -> str:
    lines = []
    for name, body in doc.items():
        if isinstance(body, dict):
            lines.append(f"[{_key(name)}]")
            lines += [f"{_key(k)} = {_toml_value(v)}" for k, v in body.items()]
        else:
            lines.insert(0, f"{_key(name)} = {_toml_value(body)}")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------- value strategies --
scalars = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.booleans(),
    st.dates(),
    st.datetimes(),
)
any_value = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(min_size=1, max_size=6), inner, max_size=3),
    ),
    max_leaves=8,
)
small_num = st.one_of(st.floats(min_value=-2, max_value=50, allow_nan=False), st.integers(-3, 100))


def field(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a plausible value, sometimes anything at all."""
    return st.one_of(valid, valid, any_value)


NETWORK = {
    "case": field(st.sampled_from(["case14", "case4f.m", "missing.m", "nosuch", "x.json", ""])),
    "convention": field(st.sampled_from(["matpower", "powermodels", "MATPOWER", "dc"])),
    "ratings": field(st.sampled_from(["auto", "case", "derived", "none"])),
    "rating_alpha": field(small_num),
    "rating_min_mw": field(small_num),
    "formulation": field(st.sampled_from(["btheta", "ptdf", " PTDF ", "acp"])),
}
SCENARIO = {
    "interval_minutes": field(small_num),
    "demand_noise": field(small_num),
    "profile": field(st.sampled_from(["daily", "flat", "weekly"])),
    "profile_scale": field(small_num),
    "mean_window_intervals": field(small_num),
    "scarce_fraction": field(st.floats(-0.5, 1.5)),
    "kappa_lo": field(st.floats(0, 2)),
    "kappa_hi": field(st.floats(0, 2)),
    "gen_variation": field(small_num),
    "variation_scope": field(st.sampled_from(["window", "interval", "day"])),
    "outage_prob": field(st.floats(-0.5, 1.5)),
    "n_tiers": field(st.integers(-1, 5)),
    "high_tier_fraction": field(st.floats(-0.5, 1.5)),
    "tier_priorities": field(st.lists(small_num, max_size=5)),
    "tier_targets": field(st.one_of(st.lists(st.floats(-1, 2), max_size=4), small_num)),
    "demand_file": field(st.sampled_from(["d.csv", "missing.parquet", "", "d.txt"])),
    "weak_node": field(st.integers(-2, 20)),
}
MECHANISM = {
    "beta": field(st.floats(-1, 2)),
    "epsilon": field(st.floats(-1, 2)),
    "weight_form": field(st.sampled_from(["raw", "relative", "equal", "odd"])),
    "rule": field(st.sampled_from(["maxmin", "qp", "lottery"])),
    "m_max": field(st.integers(-2, 80)),
    "tol": field(st.floats(-1e-3, 1e-3)),
    "trigger_theta": field(st.floats(-1, 1)),
    "p_cap": field(small_num),
}
SOLVER = {
    "name": field(st.sampled_from(["highs", "glpk", "cbc", "nosuch", ""])),
    "time_limit_s": field(small_num),
    "options": field(st.dictionaries(st.sampled_from(["presolve", "tol", "x y"]), scalars)),
    "engine": field(st.sampled_from(["auto", "pyomo", "highs", "fast"])),
}
RUN = {
    "intervals": field(st.integers(-5, 10**6)),
    "seed": field(st.integers(-5, 2**64)),
    "policy": field(st.sampled_from(["fpamm", "equal", "lmp", "auction"])),
    "flush_every": field(st.integers(-1, 1000)),
    "name": field(st.text(max_size=8)),
}
OUTPUTS = {"branches": field(st.booleans()), "generators": field(st.booleans())}
EXTENSION = {
    "function": field(
        st.sampled_from(["ext.py:build", "pkg.mod:fn", "ext.py", ":fn", "a b:c", "ext.py:1x"])
    ),
    "limit_mw": any_value,
    "buses": field(st.lists(st.integers(0, 20), max_size=4)),
}


def section(fields_: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    known = st.fixed_dictionaries({}, optional=fields_)
    extra = st.dictionaries(st.text(min_size=1, max_size=8), any_value, max_size=1)
    return st.one_of(known, known, known, st.builds(lambda a, b: {**a, **b}, known, extra))


documents = st.fixed_dictionaries(
    {"network": section(NETWORK)},
    optional={
        "scenario": section(SCENARIO),
        "mechanism": section(MECHANISM),
        "solver": section(SOLVER),
        "run": section(RUN),
        "outputs": section(OUTPUTS),
        "extensions": st.one_of(st.lists(section(EXTENSION), max_size=2), any_value),
        "bogus": st.dictionaries(st.text(min_size=1, max_size=5), scalars, max_size=2),
    },
)


def _check_spec(spec: RunSpec) -> None:
    assert isinstance(spec, RunSpec)
    h = spec_hash(spec)  # a loaded spec is always JSON-able (the manifest and hash need it)
    again = RunSpec.from_dict(spec.to_dict(), source=spec.source)
    assert spec_hash(again) == h


@FUZZ
@given(doc=documents)
def test_spec_loader_on_random_documents(workdir: Path, doc: dict[str, Any]) -> None:
    path = workdir / "spec.toml"
    path.write_text(to_toml(doc), encoding="utf-8")
    try:
        spec = load_spec(path)
    except InputError:
        return
    _check_spec(spec)


@FUZZ
@given(text=st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_spec_loader_on_random_text(workdir: Path, text: str | bytes) -> None:
    path = workdir / "raw.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        spec = load_spec(path)
    except InputError:
        return
    _check_spec(spec)


override_keys = st.one_of(
    st.sampled_from(
        [f"network.{k}" for k in NETWORK]
        + [f"scenario.{k}" for k in SCENARIO]
        + [f"mechanism.{k}" for k in MECHANISM]
        + [f"solver.{k}" for k in SOLVER]
        + [
            "solver.options.presolve",
            "solver.options.a.b",
            "run.intervals",
            "run.policy",
            "outputs.branches",
            "extensions.0.limit_mw",
            "extensions.x",
            "extensions",
            "run",
            "",
            ".",
            "a..b",
            "network.case.x",
        ]
    ),
    st.text(max_size=15),
)
override_values = st.one_of(
    st.builds(_toml_value, any_value), st.text(max_size=15), st.sampled_from(["", "[", "{a=", "'"])
)
overrides = st.one_of(
    st.builds(lambda k, v: f"{k}={v}", override_keys, override_values), st.text(max_size=30)
)


@FUZZ
@given(sets=st.lists(overrides, min_size=1, max_size=3))
def test_spec_overrides_on_random_strings(workdir: Path, sets: list[str]) -> None:
    path = workdir / "base.toml"
    path.write_text(
        '[network]\ncase = "case14"\n[mechanism]\nbeta = 0.1\n'
        '[[extensions]]\nfunction = "ext.py:build"\nlimit_mw = 3\n'
    )
    try:
        spec = load_spec(path, sets)
    except InputError:
        return
    _check_spec(spec)


# ------------------------------------------------------------------ time series --
cell = st.one_of(
    st.integers(-5, 12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(
        [
            "",
            "nan",
            "NaN",
            "inf",
            "-inf",
            "1e400",
            "1.5",
            "-0.0",
            "x",
            '"3"',
            "9007199254740993",
            "1e20",
            " 2 ",
            "True",
        ]
    ),
)
columns = st.lists(
    st.sampled_from(["t", "node", "bus", "gen", "demand_mw", "available_mw", "tier", "x", ""]),
    min_size=1,
    max_size=5,
)


@st.composite
def structured_csv(draw: st.DrawFn) -> bytes:
    cols = draw(columns)
    rows = draw(st.lists(st.lists(cell, min_size=len(cols), max_size=len(cols)), max_size=6))
    sep = draw(st.sampled_from([",", ",", ";"]))
    text = sep.join(cols) + "\n" + "".join(sep.join(r) + "\n" for r in rows)
    return text.encode()


csv_bytes = st.one_of(structured_csv(), structured_csv(), st.binary(max_size=120))


@FUZZ
@given(data=csv_bytes, kind=st.sampled_from(["demand", "availability", "tiers"]))
def test_series_readers_on_random_csv(
    workdir: Path, net: NetworkData, data: bytes, kind: str
) -> None:
    path = workdir / f"{kind}.csv"
    path.write_bytes(data)
    try:
        if kind == "demand":
            series = load_demand_series(path, net)
            for ids, values in series.by_t.values():
                assert np.all((ids >= 0) & (ids < net.n_node)) and np.all(values >= 0)
                assert np.all(np.isfinite(values))
        elif kind == "availability":
            series = load_availability_series(path, net)
            for ids, values in series.by_t.values():
                assert np.all((ids >= 0) & (ids < net.n_gen))
                assert np.all((values >= 0) & (values <= net.gen_pmax_mw[ids]))
        else:
            nodes, tiers = load_tiers_file(path, net, 2)
            assert np.all((nodes >= 0) & (nodes < net.n_node)) and np.all(
                (tiers >= 0) & (tiers < 2)
            )
    except InputError:
        return


def test_series_reader_rejects_nan_and_unknown_suffix(workdir: Path, net: NetworkData) -> None:
    p = workdir / "nan.csv"
    p.write_text("t,node,demand_mw\n0,0,nan\n")
    with pytest.raises(InputError, match="NaN"):
        load_demand_series(p, net)
    q = workdir / "d.txt"
    q.write_text("t,node,demand_mw\n")
    with pytest.raises(InputError, match="unsupported file type"):
        load_demand_series(q, net)


# ------------------------------------------------------------------ MATPOWER reader --
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e-?\d+)?(?![\w.])")
replacement_tokens = st.sampled_from(
    [
        "nan",
        "Inf",
        "-Inf",
        "-1",
        "0",
        "1e400",
        "",
        "abc",
        "1 2",
        ";",
        "]",
        "[",
        "'",
        "3",
        "99",
        "0.0",
        "-0.0",
        "4.5",
        "1e-300",
    ]
)


@st.composite
def mutated_case(draw: st.DrawFn) -> str:
    text = CASE4_M
    for _ in range(draw(st.integers(1, 3))):
        op = draw(
            st.sampled_from(
                ["number", "number", "number", "delete_line", "dup_line", "cut", "insert"]
            )
        )
        if op == "number":
            spans = [m.span() for m in _NUMBER.finditer(text)]
            a, b = draw(st.sampled_from(spans))
            text = text[:a] + draw(replacement_tokens) + text[b:]
        elif op in ("delete_line", "dup_line"):
            lines = text.splitlines(keepends=True)
            i = draw(st.integers(0, len(lines) - 1))
            lines[i : i + 1] = [] if op == "delete_line" else [lines[i], lines[i]]
            text = "".join(lines)
        elif op == "cut":
            a = draw(st.integers(0, len(text)))
            b = draw(st.integers(a, min(len(text), a + 40)))
            text = text[:a] + text[b:]
        else:
            a = draw(st.integers(0, len(text)))
            text = text[:a] + draw(st.text(max_size=6)) + text[a:]
    return text


def _check_network(n: NetworkData) -> None:
    assert math.isfinite(n.base_mva) and n.base_mva > 0
    for name in (
        "gen_pmax_mw",
        "gen_pmin_mw",
        "gen_cost_c2",
        "gen_cost_c1",
        "gen_cost_c0",
        "node_demand_mw",
        "bus_fixed_withdrawal_mw",
        "branch_b_pu",
        "branch_shift_rad",
    ):
        assert np.all(np.isfinite(getattr(n, name))), name
    assert np.all(n.gen_pmax_mw >= 0) and np.all(n.node_demand_mw > 0)
    assert not np.any(np.isnan(n.branch_rate_mw)) and np.all(n.branch_rate_mw > 0)
    for arr, size in (
        (n.node_bus, n.n_bus),
        (n.gen_bus, n.n_bus),
        (n.branch_from, n.n_bus),
        (n.branch_to, n.n_bus),
    ):
        assert np.all((arr >= 0) & (arr < size))
    assert n.bus_ref.sum() == np.unique(n.bus_island).size


@FUZZ
@given(text=mutated_case(), convention=st.sampled_from(list(Convention)))
def test_matpower_reader_on_mutated_cases(workdir: Path, text: str, convention: Convention) -> None:
    path = workdir / "mutant.m"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        n = network_from_raw(read_raw_case(path), convention)
    except CaseError:
        return
    _check_network(n)
