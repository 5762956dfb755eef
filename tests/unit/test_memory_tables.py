"""The one converter from per-interval columns to tables: Parquet and memory agree.

:class:`~fpamm_opt.io.tables.MemoryTables` (what :func:`fpamm_opt.simulate` keeps) and
:class:`~fpamm_opt.io.writer.RunWriter` (what :func:`fpamm_opt.run` writes) share
:class:`~fpamm_opt.io.tables.TableBuffer`; the frames in memory equal the frames read back
from the Parquet files, dtypes included (nullable ``window``, an empty table, row groups).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fpamm_opt.errors import RunDirectoryError
from fpamm_opt.io import TABLE_NAMES, RunWriter, build_manifest, read_manifest, read_run
from fpamm_opt.io.tables import MemoryTables, TableBuffer

pytestmark = pytest.mark.unit

HASH = "0123456789abcdef"


def _columns(t: int) -> dict[str, dict[str, object]]:
    scarce = t % 3 == 1
    m = 2 if scarce else 0
    return {
        "intervals": {
            "t": t,
            "scarce": scarce,
            "window": t // 3 if scarce else None,
            "tier_order": "0>1",
            "demand_mw": 100.0 + t,
            "served_mw": 90.0,
            "q_hat": np.nan,
            "executed": True,
            "status": "optimal",
        },
        "nodes": {
            "t": t,
            "node": np.arange(3, dtype=np.int32),
            "bus": np.arange(3, dtype=np.int32) + 1,
            "tier": np.array([0, 1, 1], dtype=np.int16),
            "demand_mw": np.array([1.0, 2.0, 3.0]) * (t + 1),
            "lmp": None,
        },
        "iterations": {"t": t, "m": np.arange(m, dtype=np.int32), "residual": np.ones(m)},
    }


@pytest.mark.parametrize("n_intervals", [7, 1])
def test_memory_tables_equal_the_parquet_tables(tmp_path: Path, n_intervals: int) -> None:
    manifest = build_manifest({}, HASH, seed=0, policy="fpamm")
    mem = MemoryTables(HASH, flush_every=3)
    with RunWriter(tmp_path / "run", HASH, manifest, flush_every=3) as w:
        for t in range(n_intervals):
            w.add_interval(_columns(t))
            mem.add_interval(_columns(t))
        final = w.close()
    frames = mem.frames()
    disk = read_run(final)
    assert set(frames) == set(TABLE_NAMES)
    for name in TABLE_NAMES:
        pd.testing.assert_frame_equal(frames[name], disk.table(name), check_exact=True)
    stored = read_manifest(final)["tables"]
    for name, info in mem.table_info().items():
        assert info == {"rows": stored[name]["rows"], "row_groups": stored[name]["row_groups"]}
    if n_intervals == 1:  # no iterations at all: an empty table with its columns and dtypes
        assert frames["iterations"].empty and frames["branches"].empty
        assert str(frames["iterations"]["m"].dtype) == "int32"
    else:
        assert str(frames["intervals"]["window"].dtype) == "Int64"


def test_buffer_checks_columns_and_keeps_only_selected_tables() -> None:
    buf = TableBuffer(("nodes",), HASH, who="simulation")
    buf.add("intervals", {"t": 1})  # a known table that is not kept: ignored
    with pytest.raises(RunDirectoryError, match="simulation: table 'nodes' has no column 'x'"):
        buf.add("nodes", {"x": 1})
    with pytest.raises(RunDirectoryError, match="unknown table 'nodez'"):
        buf.add("nodez", {})
    buf.add("nodes", {"t": 0, "node": np.arange(2, dtype=np.int32)})
    assert buf.rows("nodes") == 2 and buf.n_pieces("nodes") == 1
    got = buf.take("nodes")
    assert got is not None and got.num_rows == 2 and buf.rows("nodes") == 0
    assert buf.take("nodes") is None
