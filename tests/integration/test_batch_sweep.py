"""Sweep files, run ids, the batch index and the batch readers, without a solver.

These are unit-tier tests (no solver, fast); they sit next to the batch integration tests.
Synthetic run directories are written with :class:`fpamm_opt.io.RunWriter`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from fpamm_opt.cli import app
from fpamm_opt.errors import InputError, RunDirectoryError
from fpamm_opt.io import RunWriter, batch_dataset, read_batch, read_index
from fpamm_opt.io.batch import META_SWEPT, index_table, write_index
from fpamm_opt.sim.batch import execute_run, load_sweep, make_run_id, run_batch

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def _sweep(folder: Path, body: str, base: str = "ieee14.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ieee14.toml").write_text((REPO / "models" / "ieee14.toml").read_text())
    path = folder / "sweep.toml"
    path.write_text(f'base = "{base}"\n{body}')
    return path


# ------------------------------------------------------------------ sweep files
def test_load_sweep_expands_the_product(tmp_path: Path) -> None:
    path = _sweep(
        tmp_path,
        """
[sweep]
seed = [0, 1]
mechanism.beta = [0.05, 0.1]
policy = ["fpamm", "equal"]
[set]
"run.intervals" = 7
solver.options.presolve = "off"
""",
    )
    sw = load_sweep(path)
    assert sw.names == ("seed", "mechanism.beta", "policy") and sw.size == 8
    assert sw.base == tmp_path / "ieee14.toml"
    tasks = sw.tasks()
    assert [t.position for t in tasks] == list(range(8))
    assert tasks[3].values == {"seed": 0, "mechanism.beta": 0.1, "policy": "equal"}
    assert tasks[3].run_id.startswith("r0003-seed0-policy_equal-beta0.1-")
    assert len({t.run_id for t in tasks}) == 8
    assert [t.run_id for t in load_sweep(path).tasks()] == [t.run_id for t in tasks]  # stable
    assert len({t.spec_hash for t in tasks}) == 8
    for t in tasks:
        assert t.error is None and t.spec is not None
        assert t.spec["run"]["intervals"] == 7 and t.spec["run"]["seed"] == t.values["seed"]
        assert t.spec["run"]["policy"] == t.policy == t.values["policy"]
        assert t.spec["mechanism"]["beta"] == t.values["mechanism.beta"]
        assert t.spec["solver"]["options"] == {"presolve": "off"}
    payload = tasks[0].payload(tmp_path / "runs")
    assert json.loads(json.dumps(payload)) == payload  # plain data only
    assert payload["out"] == str(tmp_path / "runs" / tasks[0].run_id)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[sweep]\n"mechanism.betta" = [1]', "unknown field 'mechanism.betta'"),
        ('[sweep]\n"grid.beta" = [1]', "no section 'grid'"),
        ("[sweep]\nintervals = [1, 2]", "unknown field 'intervals'"),
        ('[sweep]\n"run.seed.x" = [1]', "run.seed is not a table"),
        ('[sweep]\n"mechanism.beta" = []', "'mechanism.beta' has an empty list"),
        ('[sweep]\n"mechanism.beta" = 0.1', "must be a list of values"),
        ('[sweep]\n"mechanism.beta" = [0.1, 0.1]', "lists 0.1 more than once"),
        ('[sweep]\nseed = [0]\n"run.seed" = [1]', "are the same field"),
        ('[sweep]\nseed = [0]\n[set]\n"run.seed" = 3', "both swept and set"),
        ('[sweep]\nseed = [0]\n[set]\n"mechanism.nope" = 3', "unknown field 'mechanism.nope'"),
        ("seed = [0, 1]", "unknown key 'seed' (put swept fields under [sweep])"),
        ('[set]\n"run.intervals" = 3', "missing [sweep] table"),
    ],
)
def test_sweep_errors_name_the_field(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(InputError) as err:
        load_sweep(_sweep(tmp_path, body))
    assert message in str(err.value)


def test_missing_base(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"base spec 'nope\.toml' not found"):
        load_sweep(_sweep(tmp_path, "[sweep]\nseed = [0]", base="nope.toml"))
    path = tmp_path / "nobase.toml"
    path.write_text("[sweep]\nseed = [0]\n")
    with pytest.raises(InputError, match="missing base"):
        load_sweep(path)
    with pytest.raises(InputError, match="file not found"):
        load_sweep(tmp_path / "absent.toml")


def test_invalid_values_fail_their_run_only(tmp_path: Path) -> None:
    sw = load_sweep(
        _sweep(tmp_path, '[sweep]\n"mechanism.beta" = [0.1, 2.0]\n"run.intervals" = [5, 0]')
    )
    errors = {(t.values["mechanism.beta"], t.values["run.intervals"]): t.error for t in sw.tasks()}
    assert errors[(0.1, 5)] is None
    assert errors[(2.0, 5)] == "mechanism.beta must be in (0, 1], got 2.0"
    assert "run.intervals" in errors[(0.1, 0)] and "\n" not in errors[(0.1, 0)]


def test_run_ids() -> None:
    a = make_run_id(3, 4, {"mechanism.beta": 0.1, "policy": "equal", "seed": 1})
    assert a.startswith("r0003-seed1-policy_equal-beta0.1-") and len(a.split("-")[-1]) == 8
    b = make_run_id(3, 4, {"run.seed": 1, "run.policy": "equal", "mechanism.beta": 0.1})
    assert a == b  # short and full names hash alike
    c = make_run_id(12, 5, {"network.case": "/some where/case 57.m", "x.y": [1, 2]})
    assert c.startswith("r00012-case_some_where_case_57.m-y1_2-")
    long = make_run_id(0, 4, {f"s.k{i}": "v" * 40 for i in range(10)})
    assert len(long) <= 96 + 9 and "/" not in long


def test_execute_run_returns_errors() -> None:
    res = execute_run({"run_id": "r0000-x", "spec": None, "out": "/nonexistent/x"})
    assert res["status"] == "failed" and res["error"] == "run r0000-x: no valid spec"
    assert res["run_id"] == "r0000-x" and res["wall_s"] >= 0


def test_batch_of_invalid_runs_starts_no_worker(tmp_path: Path) -> None:
    path = _sweep(tmp_path, '[sweep]\n"mechanism.beta" = [2.0, 3.0]')
    with pytest.raises(InputError, match="workers"):
        run_batch(path, tmp_path / "out", workers=-1)
    with pytest.raises(InputError, match="either"):
        run_batch(path, tmp_path / "out", workers=2, scheduler="tcp://127.0.0.1:1")
    res = CliRunner().invoke(app, ["batch", str(path), "--out", str(tmp_path / "out")])
    assert res.exit_code == 1
    assert "2 runs: 0 complete, 0 skipped (already complete), 2 failed" in res.stdout
    assert "2 of 2 runs failed" in res.stderr
    idx = read_index(tmp_path / "out")
    assert list(idx["status"]) == ["failed", "failed"]
    assert list(idx["mechanism.beta"]) == [2.0, 3.0]
    meta = json.loads((tmp_path / "out" / "batch.json").read_text())
    assert meta["sweep"] == {"mechanism.beta": [2.0, 3.0]} and meta["n_runs"] == 2
    assert read_batch(tmp_path / "out", "nodes").empty
    usage = CliRunner().invoke(app, ["batch", str(path), "--workers", "1", "--scheduler", "x"])
    assert usage.exit_code == 2


# ------------------------------------------------------------------ index and readers
def test_index_table_types() -> None:
    rows = [
        {
            "run_id": "a",
            "status": "complete",
            "scenario.tier_priorities": [0.7, 0.3],
            "k.mixed": 1,
            "seed": 0,
            "policy": "fpamm",
            "wall_s": 1.5,
        },
        {
            "run_id": "b",
            "status": "failed",
            "scenario.tier_priorities": [0.5, 0.5],
            "k.mixed": "x",
            "seed": None,
            "policy": None,
            "error": "boom",
            "wall_s": None,
        },
    ]
    t = index_table(rows, ["scenario.tier_priorities", "k.mixed"])
    assert t.column_names == [
        "run_id",
        "status",
        "scenario.tier_priorities",
        "k.mixed",
        "seed",
        "policy",
        "path",
        "wall_s",
        "error",
        "spec_hash",
    ]
    assert t["scenario.tier_priorities"].to_pylist() == ["[0.7,0.3]", "[0.5,0.5]"]
    assert t["k.mixed"].to_pylist() == ["1", "x"]
    assert str(t.schema.field("seed").type) == "int64" and t["seed"].to_pylist() == [0, None]
    assert json.loads(t.schema.metadata[META_SWEPT.encode()]) == [
        "scenario.tier_priorities",
        "k.mixed",
    ]


def _fake_run(
    run_dir: Path,
    spec_hash: str,
    n_t: int,
    offset: float,
    tables: tuple[str, ...] = ("intervals", "nodes"),
) -> None:
    with RunWriter(run_dir, spec_hash, {"seed": 0}, flush_every=2, tables=tables) as w:
        for t in range(n_t):
            w.add_interval(
                {
                    "intervals": {
                        "t": t,
                        "served_mw": offset + t,
                        "executed": True,
                        "window": None,
                    },
                    "nodes": {
                        "t": t,
                        "node": np.arange(3, dtype=np.int32),
                        "shortfall_ratio": np.full(3, offset),
                    },
                }
            )
        w.close()


@pytest.fixture
def fake_batch(tmp_path: Path) -> Path:
    out = tmp_path / "batch"
    rows = []
    spec = [
        ("r0", "complete", 0.1, "fpamm"),
        ("r1", "skipped-complete", 0.2, "fpamm"),
        ("r2", "failed", 0.3, "equal"),
        ("r3", "pending", 0.4, "equal"),
        ("r4", "complete", 0.5, "equal"),
    ]
    for i, (rid, status, beta, policy) in enumerate(spec):
        if status in ("complete", "skipped-complete", "pending"):
            tables = ("intervals",) if rid == "r4" else ("intervals", "nodes")
            _fake_run(out / "runs" / rid, f"h{i}", n_t=3, offset=10 * i, tables=tables)
        rows.append(
            {
                "run_id": rid,
                "status": status,
                "mechanism.beta": beta,
                "seed": i,
                "policy": policy,
                "path": f"runs/{rid}",
                "spec_hash": f"h{i}",
            }
        )
    write_index(out, index_table(rows, ["mechanism.beta"]))
    return out


def test_read_batch_on_synthetic_runs(fake_batch: Path) -> None:
    df = read_batch(fake_batch, "intervals")
    assert list(df.columns[:4]) == ["run_id", "mechanism.beta", "seed", "policy"]
    assert sorted(df["run_id"].unique()) == ["r0", "r1", "r4"]  # not failed, not pending
    assert len(df) == 9 and str(df["window"].dtype) == "Int64"
    r1 = df[df["run_id"] == "r1"]
    assert list(r1["served_mw"]) == [10.0, 11.0, 12.0] and set(r1["mechanism.beta"]) == {0.2}
    nodes = read_batch(fake_batch, "nodes", columns=["shortfall_ratio"])
    assert sorted(nodes["run_id"].unique()) == ["r0", "r1"]  # r4 has no nodes table
    assert list(nodes.columns) == ["run_id", "mechanism.beta", "seed", "policy", "shortfall_ratio"]
    sub = read_batch(
        fake_batch,
        "intervals",
        columns=["t"],
        filters=[("mechanism.beta", ">", 0.15), ("t", ">=", 1)],
    )
    assert sorted(set(sub["run_id"])) == ["r1", "r4"] and set(sub["t"]) == {1, 2}
    expr = read_batch(fake_batch, "intervals", filters=pc.field("policy") == "equal")
    assert set(expr["run_id"]) == {"r4"}
    dset = batch_dataset(fake_batch, "intervals")
    assert dset.count_rows() == 9
    assert dset.count_rows(filter=pc.field("run_id") == "r0") == 3
    with pytest.raises(RunDirectoryError, match="no column 'nope'"):
        read_batch(fake_batch, "intervals", columns=["nope"])
    with pytest.raises(RunDirectoryError, match="unknown table"):
        read_batch(fake_batch, "buses")
    with pytest.raises(RunDirectoryError, match="not a batch directory"):
        read_batch(fake_batch / "runs", "intervals")


def test_index_is_replaced_atomically(fake_batch: Path) -> None:
    before = pq.read_table(fake_batch / "index.parquet")
    write_index(fake_batch, before.slice(0, 2))
    assert pq.read_table(fake_batch / "index.parquet").num_rows == 2
    assert not [p for p in fake_batch.iterdir() if p.name.startswith(".")]


def test_bad_scheduler_address_writes_nothing(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    path = _sweep(tmp_path, '[sweep]\n"mechanism.beta" = [0.05]')
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["batch", str(path), "--out", str(out), "--scheduler", "nope"])
    assert res.exit_code == 1
    assert "bad Dask scheduler address 'nope'" in res.stderr
    assert not (out / "index.parquet").exists()
