"""A long run streams: the writer holds at most ``flush_every`` intervals of rows, whatever T.

Behaviour, not time or bytes: along 1,200 intervals written with ``flush_every = 50`` the
buffered rows of every table never exceed 50 intervals' worth and drop to zero at each flush;
every 50 intervals one Parquet row group is written, and the file holds every row
(``bench/bench_year.py`` measures the whole run's memory).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from fpamm_opt.io import RunWriter

pytestmark = pytest.mark.unit

HASH = "0123456789abcdef"
N_NODE = 7


def _tables(t: int) -> dict:
    return {
        "nodes": {
            "t": t,
            "node": np.arange(N_NODE),
            "bus": np.arange(N_NODE) + 1,
            "tier": np.zeros(N_NODE, dtype=int),
            "demand_mw": np.full(N_NODE, 25.0),
            "served_mw": np.full(N_NODE, 25.0),
            "shortfall_ratio": np.zeros(N_NODE),
            "memory_before": np.zeros(N_NODE),
            "memory_after": np.zeros(N_NODE),
            "weight": np.ones(N_NODE),
            "delivery_ratio": np.ones(N_NODE),
            "lmp": np.full(N_NODE, 30.0),
        },
        "iterations": {"t": t, "m": np.arange(2), "residual": np.array([1.0, 0.5])},
    }


def test_buffer_is_bounded_by_flush_every(tmp_path: Path) -> None:
    n, every = 1200, 50
    final = tmp_path / "run"
    most = 0
    with RunWriter(final, HASH, {}, flush_every=every, tables=("nodes", "iterations")) as w:
        for t in range(n):
            w.add_interval(_tables(t))
            rows = w.buffer.rows("nodes")
            most = max(most, rows)
            assert rows == ((t + 1) % every) * N_NODE
            assert w.buffer.n_pieces("nodes") <= every
        w.close()
    assert most == (every - 1) * N_NODE
    f = pq.ParquetFile(final / "nodes.parquet")
    assert f.metadata.num_row_groups == n // every
    assert f.metadata.num_rows == n * N_NODE
    assert pq.ParquetFile(final / "iterations.parquet").metadata.num_rows == 2 * n
