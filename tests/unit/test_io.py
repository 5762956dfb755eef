"""Unit tests of fpamm_opt.io: schemas, the atomic streaming writer, readers, manifest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from fpamm_opt.errors import RunDirectoryError
from fpamm_opt.io import (
    MANIFEST_NAME,
    META_SPEC_HASH,
    SCHEMAS,
    TABLE_NAMES,
    RunWriter,
    build_manifest,
    clean_stale_temporaries,
    is_run_dir,
    iter_table,
    num_row_groups,
    package_versions,
    read_manifest,
    read_metadata,
    read_run,
    read_table,
)
from fpamm_opt.io.writer import temporary_dir

pytestmark = pytest.mark.unit

HASH = "0123456789abcdef"
N_NODE, N_BRANCH, N_GEN = 4, 5, 3

INTERFACE_COLUMNS = {
    "intervals": [
        "t",
        "scarce",
        "window",
        "tier_order",
        "demand_mw",
        "served_mw",
        "available_mw",
        "amm_price",
        "iterations",
        "q_hat",
        "q_bound",
        "executed",
        "status",
        "solve_s",
    ],
    "nodes": [
        "t",
        "node",
        "bus",
        "tier",
        "demand_mw",
        "served_mw",
        "shortfall_ratio",
        "memory_before",
        "memory_after",
        "weight",
        "delivery_ratio",
        "lmp",
    ],
    "branches": ["t", "branch", "flow_mw", "rate_mw"],
    "generators": ["t", "gen", "bus", "p_mw", "available_mw"],
    "iterations": ["t", "m", "residual"],
}
DESIGN_EXTRA = {
    "intervals": [
        "gamma",
        "tier_level_max",
        "q_bound_applies",
        "n_solves",
        "tracking_error",
        "cost",
        "deliverable_mw",
    ],
    "nodes": ["served_ratio_exact"],
}


def _interval_tables(t: int) -> dict[str, dict]:
    scarce = t % 3 == 1
    m = 3 if scarce else 0
    return {
        "intervals": {
            "t": t,
            "scarce": scarce,
            "window": t // 3 if scarce else None,
            "tier_order": "0>1" if scarce else "",
            "demand_mw": 100.0 + t,
            "served_mw": 90.0 if scarce else 100.0 + t,
            "available_mw": 95.0,
            "amm_price": 50.0 if scarce else 0.0,
            "iterations": m,
            "q_hat": 0.3 if scarce else np.nan,
            "q_bound": 0.5,
            "q_bound_applies": scarce,
            "gamma": 0.2,
            "tier_level_max": np.nan,
            "executed": True,
            "status": "optimal",
            "solve_s": 0.01,
            "n_solves": 2,
            "tracking_error": np.nan,
            "cost": 1234.5,
            "deliverable_mw": 92.0,
        },
        "nodes": {
            "t": t,
            "node": np.arange(N_NODE),
            "bus": np.arange(N_NODE) + 1,
            "tier": np.array([0, 1, 1, 0]),
            "demand_mw": np.full(N_NODE, 25.0),
            "served_mw": np.full(N_NODE, 22.5 if scarce else 25.0),
            "shortfall_ratio": np.full(N_NODE, 0.1 if scarce else 0.0),
            "memory_before": np.linspace(0, 0.3, N_NODE),
            "memory_after": np.linspace(0, 0.3, N_NODE),
            "weight": np.ones(N_NODE),
            "delivery_ratio": np.ones(N_NODE),
            "lmp": np.full(N_NODE, 30.0),
        },
        "branches": {
            "t": t,
            "branch": np.arange(N_BRANCH),
            "flow_mw": np.arange(N_BRANCH, dtype=float) * t,
            "rate_mw": np.full(N_BRANCH, 100.0),
        },
        "generators": {
            "t": t,
            "gen": np.arange(N_GEN),
            "bus": np.array([1, 2, 3]),
            "p_mw": np.full(N_GEN, 10.0),
            "available_mw": np.full(N_GEN, 30.0),
        },
        "iterations": {"t": t, "m": np.arange(m), "residual": 0.5 ** np.arange(m)},
    }


def _write_run(final: Path, n: int = 7, flush_every: int = 3, **kwargs) -> Path:
    manifest = build_manifest({"run": {"seed": 1}}, HASH, seed=1, policy="fpamm")
    with RunWriter(final, HASH, manifest, flush_every=flush_every, **kwargs) as w:
        for t in range(n):
            w.add_interval(_interval_tables(t))
        assert not final.exists()
        assert w.tmp_dir.is_dir()
        out = w.close({"timings": {"total_s": 1.5}, "timestamps": {"started_utc": "x"}})
    assert out == final
    return final


# ------------------------------------------------------------------ schemas
def test_schemas_have_interface_and_design_columns():
    # INTERFACE.md's five tables first, then the typed clear events
    assert TABLE_NAMES == ("intervals", "nodes", "branches", "generators", "iterations", "events")
    assert SCHEMAS["events"].names == ["t", "kind", "tier", "detail"]
    assert SCHEMAS["events"].field("tier").type == pa.int16()
    for name, cols in INTERFACE_COLUMNS.items():
        have = SCHEMAS[name].names
        assert have[: len(cols)] == cols
        for extra in DESIGN_EXTRA.get(name, []):
            assert extra in have
    sch = SCHEMAS["intervals"]
    assert sch.field("window").type == pa.int64() and sch.field("iterations").type == pa.int32()
    assert sch.field("tier_order").type == pa.string()
    assert SCHEMAS["nodes"].field("tier").type == pa.int16()


# ------------------------------------------------------------------ writer and reader
def test_write_and_read_back(tmp_path):
    final = _write_run(tmp_path / "runs" / "r1")
    assert is_run_dir(final)
    assert sorted(p.name for p in final.iterdir()) == sorted(
        [MANIFEST_NAME] + [f"{t}.parquet" for t in TABLE_NAMES]
    )
    assert not temporary_dir(final).exists()
    man = read_manifest(final)
    assert man["status"] == "complete" and man["spec_hash"] == HASH and man["n_intervals"] == 7
    assert man["timings"] == {"total_s": 1.5}
    assert man["timestamps"]["started_utc"] == "x" and "finished_utc" in man["timestamps"]
    assert man["tables"]["nodes"]["rows"] == 7 * N_NODE
    json.loads((final / MANIFEST_NAME).read_text())  # strict JSON

    iv = read_table(final, "intervals")
    assert list(iv.columns) == SCHEMAS["intervals"].names
    assert list(iv["t"]) == list(range(7))
    assert str(iv["window"].dtype) == "Int64"
    assert iv["window"].isna().sum() == 5 and list(iv["window"].dropna()) == [0, 1]
    assert iv["t"].dtype == np.int64 and iv["scarce"].dtype == bool
    assert iv["q_hat"].isna().sum() == 5  # NaN preserved as NaN
    assert list(iv["tier_order"][:2]) == ["", "0>1"]
    nodes = read_table(final, "nodes")
    assert len(nodes) == 7 * N_NODE and nodes["tier"].dtype == np.int16
    assert nodes["served_ratio_exact"].isna().all()  # column never given: null
    it = read_table(final, "iterations")
    assert len(it) == 2 * 3 and list(it["m"][:3]) == [0, 1, 2]
    sub = read_table(final, "branches", columns=["t", "flow_mw"], filters=[("t", "=", 2)])
    assert list(sub.columns) == ["t", "flow_mw"] and len(sub) == N_BRANCH
    assert np.allclose(sub["flow_mw"], np.arange(N_BRANCH) * 2.0)


def test_metadata_and_row_groups(tmp_path):
    final = _write_run(tmp_path / "r", n=7, flush_every=3)
    for name in TABLE_NAMES:
        meta = read_metadata(final, name)
        assert meta[META_SPEC_HASH] == HASH and meta["fpamm.table"] == name
    assert num_row_groups(final, "nodes") == 3  # 3 + 3 + 1 intervals
    groups = list(iter_table(final, "nodes", columns=["t"]))
    assert [sorted(set(g["t"])) for g in groups] == [[0, 1, 2], [3, 4, 5], [6]]
    run = read_run(final)
    run.check_spec_hash()
    assert run.spec_hash == HASH and run.intervals is run["intervals"]
    assert len(run.generators) == 7 * N_GEN


def test_buffers_flushed_each_group(tmp_path):
    manifest = build_manifest({}, HASH, seed=0, policy="equal")
    w = RunWriter(tmp_path / "r", HASH, manifest, flush_every=2)
    for t in range(5):
        w.add_interval(_interval_tables(t))
        assert w.buffer.rows("nodes") <= 2 * N_NODE
    w.close()
    assert read_manifest(tmp_path / "r")["tables"]["intervals"]["row_groups"] == 3


def test_disabled_table_is_skipped(tmp_path):
    final = _write_run(tmp_path / "r", tables=("intervals", "nodes", "iterations"))
    assert not (final / "branches.parquet").exists()
    with pytest.raises(RunDirectoryError, match="has no branches table"):
        read_table(final, "branches")
    assert not read_run(final).has("branches")


def test_final_dir_absent_until_close_and_abort(tmp_path):
    final = tmp_path / "r"
    w = RunWriter(final, HASH, {}, flush_every=1)
    w.add_interval(_interval_tables(0))
    assert not final.exists() and w.tmp_dir.exists()
    w.abort()
    assert not final.exists() and not w.tmp_dir.exists()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RunDirectoryError, match="aborted"):
        w.add("intervals", {"t": 1})


@pytest.mark.parametrize("exc_type", [ValueError, KeyboardInterrupt])
def test_exception_in_context_leaves_nothing(tmp_path, exc_type):
    final = tmp_path / "r"
    with pytest.raises(exc_type), RunWriter(final, HASH, {}, flush_every=2) as w:
        for t in range(3):
            w.add_interval(_interval_tables(t))
        raise exc_type("boom")
    assert list(tmp_path.iterdir()) == []


def test_normal_context_exit_closes(tmp_path):
    with RunWriter(tmp_path / "r", HASH, {}) as w:
        w.add_interval(_interval_tables(0))
    assert read_manifest(tmp_path / "r")["status"] == "complete"


def test_existing_dir_refused_or_replaced_at_close(tmp_path):
    final = _write_run(tmp_path / "r", n=2)
    with pytest.raises(RunDirectoryError, match="already exists"):
        RunWriter(final, HASH, {})
    w = RunWriter(final, "fedcba9876543210", {}, overwrite=True)
    w.add_interval(_interval_tables(0))
    assert read_manifest(final)["spec_hash"] == HASH  # old run intact until close
    w.close()
    assert read_manifest(final)["spec_hash"] == "fedcba9876543210"
    assert len(read_table(final, "intervals")) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


def test_bad_rows_raise(tmp_path):
    w = RunWriter(tmp_path / "r", HASH, {})
    with pytest.raises(RunDirectoryError, match="no column 'lmpp'"):
        w.add("nodes", {"t": 0, "lmpp": 1.0})
    with pytest.raises(RunDirectoryError, match=r"nodes\.node expects int32, got float64"):
        w.add("nodes", {"t": 0, "node": np.array([0.5, 1.0])})
    with pytest.raises(RunDirectoryError, match="has 3 rows, other columns 2"):
        w.add("nodes", {"node": np.arange(2), "lmp": np.zeros(3)})
    with pytest.raises(RunDirectoryError, match="unknown table 'nodez'"):
        w.add("nodez", {"t": 0})
    with pytest.raises(RunDirectoryError, match="scalar or 1-D"):
        w.add("nodes", {"lmp": np.zeros((2, 2))})
    w.add("nodes", {"t": 0, "node": np.array([2**40])})  # out of int32 range: caught at flush
    with pytest.raises(RunDirectoryError, match=r"nodes\.node cannot be stored as int32"):
        w.flush()
    w.abort()
    assert not (tmp_path / "r").exists()
    with pytest.raises(RunDirectoryError, match="unknown table"):
        RunWriter(tmp_path / "s", HASH, {}, tables=("intervals", "bogus"))
    with pytest.raises(RunDirectoryError, match="flush_every"):
        RunWriter(tmp_path / "s", HASH, {}, flush_every=0)


def test_reader_errors(tmp_path):
    with pytest.raises(RunDirectoryError, match=r"not a run directory: .* \(no manifest.json\)"):
        read_manifest(tmp_path)
    assert not is_run_dir(tmp_path)
    final = _write_run(tmp_path / "r", n=1)
    with pytest.raises(RunDirectoryError, match="unknown table 'foo'"):
        read_table(final, "foo")
    with pytest.raises(RunDirectoryError, match="has no column 'nope'"):
        read_table(final, "intervals", columns=["t", "nope"])
    (final / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(RunDirectoryError, match=r"manifest\.json is unreadable"):
        read_manifest(final)


def test_clean_stale_temporaries(tmp_path):
    dead = tmp_path / ".old_run.tmp-2147483646"
    dead.mkdir()
    (dead / "x").write_text("1")
    mine = tmp_path / f".live.tmp-{os.getpid()}"
    mine.mkdir()
    keep = tmp_path / "plain"
    keep.mkdir()
    removed = clean_stale_temporaries(tmp_path)
    assert removed == [dead]
    assert mine.exists() and keep.exists() and not dead.exists()
    assert clean_stale_temporaries(tmp_path / "missing") == []


# ------------------------------------------------------------------ manifest helpers
def test_manifest_helpers():
    versions = package_versions()
    assert set(versions) >= {
        "fpamm_opt",
        "numpy",
        "pandas",
        "pyarrow",
        "pyomo",
        "highspy",
        "pandapower",
    }
    assert versions["numpy"] == np.__version__ and versions["pandas"] == pd.__version__
    man = build_manifest(
        {"a": 1},
        HASH,
        seed=np.int64(3),
        policy="fpamm",
        extra={"x": np.float64("nan"), "arr": np.arange(2), "p": Path("/tmp")},
    )
    text = json.dumps(man, allow_nan=False)
    assert '"x": null' in text and man["arr"] == [0, 1] and man["p"] == "/tmp"
    assert man["status"] == "running" and man["seed"] == 3
    assert man["environment"]["python"].startswith("3.")


def test_no_pyomo_import():
    code = (
        "import sys, fpamm_opt.io, fpamm_opt.scenario, fpamm_opt.spec\n"
        "fpamm_opt.io.package_versions()\n"
        "assert not any(m == 'pyomo' or m.startswith('pyomo.') for m in sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_empty_intervals_do_not_accumulate_buffers(tmp_path):
    """A table that gets no rows for many intervals keeps no buffered pieces after a flush."""
    import numpy as np

    from fpamm_opt.io.writer import RunWriter

    w = RunWriter(tmp_path / "run", "h" * 16, {"status": "running"}, flush_every=10)
    for t in range(30):
        w.add("iterations", {"t": t, "m": np.zeros(0, dtype=np.int32), "residual": np.zeros(0)})
        w.end_interval()
    assert w.buffer.n_pieces("iterations") == 0
    w.abort()
