"""Batch directories: the run index and readers across many run directories.

Role
----
``fpamm batch SWEEP --out DIR`` (:mod:`fpamm_opt.sim.batch`) writes::

    DIR/index.parquet        one row per run of the sweep (this module writes it atomically)
    DIR/batch.json           the sweep that produced it (file, base spec, swept and fixed values)
    DIR/runs/<run_id>/       one ordinary run directory per run (INTERFACE.md "Run directory")

Index columns, in order: ``run_id``, ``status`` (:class:`RunStatus`), one column per swept
field named by its dotted name (``mechanism.beta``; ``seed`` and ``policy`` when swept under
those names), ``seed``, ``policy``, ``path`` (the run directory relative to ``DIR``),
``wall_s`` (seconds this batch spent on the run; null when skipped or not run), ``error`` (one
line, null unless failed) and ``spec_hash``. Swept values that are lists or tables are stored
as canonical JSON text; a column whose values mix kinds (numbers and strings) as text. The
swept column names are also in the file's key-value metadata (``fpamm.swept``).

Readers
-------
:func:`batch_dataset` is a :class:`pyarrow.dataset.Dataset` over one table of every complete
run: each file is a fragment whose partition expression carries the run's index row
(``run_id``, the swept values, ``seed``, ``policy``), so those columns appear in every row, and
filters on them prune whole runs before any file is read (the join with the index is done
per fragment, nothing is loaded up front). :func:`read_batch` materialises it as a
:class:`pandas.DataFrame` with column and filter push-down; stream a batch larger than memory
with ``batch_dataset(...).to_batches()``.

No Pyomo here.
"""

from __future__ import annotations

import enum
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from fpamm_opt.errors import RunDirectoryError
from fpamm_opt.io.schema import SCHEMAS, TABLE_NAMES, file_name
from fpamm_opt.io.tables import to_frame

INDEX_NAME = "index.parquet"
BATCH_META_NAME = "batch.json"
RUNS_DIR = "runs"

#: Key-value metadata key of the index listing the swept columns (JSON list).
META_SWEPT = "fpamm.swept"

#: Index columns before and after the swept ones.
INDEX_HEAD: tuple[str, ...] = ("run_id", "status")
INDEX_TAIL: tuple[str, ...] = ("seed", "policy", "path", "wall_s", "error", "spec_hash")

_TAIL_TYPES: dict[str, pa.DataType] = {
    "seed": pa.int64(),
    "policy": pa.string(),
    "path": pa.string(),
    "wall_s": pa.float64(),
    "error": pa.string(),
    "spec_hash": pa.string(),
}


class RunStatus(enum.StrEnum):
    """Status of one run in the index."""

    COMPLETE = "complete"  # run by this invocation of the batch
    FAILED = "failed"
    SKIPPED = "skipped-complete"  # already complete with the same spec hash: not re-run
    PENDING = "pending"  # not finished (the batch was interrupted)


#: Statuses whose run directory is complete and readable.
DONE_STATUSES: tuple[str, ...] = (RunStatus.COMPLETE.value, RunStatus.SKIPPED.value)


# ------------------------------------------------------------------ writing
def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _swept_array(values: Sequence[Any]) -> pa.Array:
    """Arrow array of one swept column (lists/tables as JSON text; mixed kinds as text)."""
    plain = [_canonical(v) if isinstance(v, list | tuple | dict) else v for v in values]
    try:
        arr = pa.array(plain)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        arr = None
    if arr is None:
        arr = pa.array([v if isinstance(v, str) or v is None else _canonical(v) for v in plain])
    return arr


def index_table(records: Sequence[Mapping[str, Any]], swept: Sequence[str]) -> pa.Table:
    """Build the index as an Arrow table.

    Parameters
    ----------
    records
        One mapping per run with the keys of :data:`INDEX_HEAD`, ``swept`` and
        :data:`INDEX_TAIL` (missing keys are null).
    swept
        Swept column names (dotted), in sweep order.

    Returns
    -------
    pyarrow.Table
        With :data:`META_SWEPT` in the schema metadata.
    """
    swept = list(swept)
    names: list[str] = list(INDEX_HEAD) + swept
    names += [c for c in INDEX_TAIL if c not in swept]
    arrays: list[pa.Array] = []
    for name in names:
        col = [r.get(name) for r in records]
        if name in swept:
            arrays.append(_swept_array(col))
        elif name in INDEX_HEAD:
            arrays.append(pa.array([None if v is None else str(v) for v in col], pa.string()))
        else:
            typ = _TAIL_TYPES[name]
            if name == "wall_s":
                col = [None if v is None or not math.isfinite(float(v)) else float(v) for v in col]
            elif name == "seed":
                col = [None if v is None else int(v) for v in col]
            else:
                col = [None if v is None else str(v) for v in col]
            arrays.append(pa.array(col, typ))
    table = pa.Table.from_arrays(arrays, names=names)
    return table.replace_schema_metadata({META_SWEPT: json.dumps(swept)})


def _replace_atomically(path: Path, write: Any) -> Path:
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_index(out_dir: Path | str, table: pa.Table) -> Path:
    """Write ``DIR/index.parquet`` through a temporary file and :func:`os.replace`.

    A reader never sees a partial index: it sees the previous one or the new one.
    """
    path = Path(out_dir) / INDEX_NAME
    return _replace_atomically(path, lambda tmp: pq.write_table(table, tmp))


def write_batch_meta(out_dir: Path | str, meta: Mapping[str, Any]) -> Path:
    """Write ``DIR/batch.json`` (the sweep description) atomically."""
    path = Path(out_dir) / BATCH_META_NAME
    text = json.dumps(meta, indent=2, sort_keys=False, default=str) + "\n"
    return _replace_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


# ------------------------------------------------------------------ reading
def _index_path(out_dir: Path | str) -> Path:
    path = Path(out_dir) / INDEX_NAME
    if not path.is_file():
        raise RunDirectoryError(f"not a batch directory: {Path(out_dir)} (no {INDEX_NAME})")
    return path


def read_index_table(out_dir: Path | str) -> pa.Table:
    """The index of a batch directory as an Arrow table."""
    path = _index_path(out_dir)
    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise RunDirectoryError(f"cannot read {path} ({type(exc).__name__}: {exc})") from None


def read_index(out_dir: Path | str) -> pd.DataFrame:
    """The index of a batch directory (one row per run, see the module docstring)."""
    return to_frame(read_index_table(out_dir))


def swept_columns(index: pa.Table) -> list[str]:
    """Swept column names recorded in an index table's metadata."""
    meta = index.schema.metadata or {}
    raw = meta.get(META_SWEPT.encode())
    if raw is None:
        return []
    return [str(c) for c in json.loads(raw.decode())]


def _id_columns(index: pa.Table) -> list[str]:
    cols = ["run_id", *swept_columns(index)]
    cols += [c for c in ("seed", "policy") if c not in cols]
    return [c for c in cols if c in index.column_names]


def batch_dataset(out_dir: Path | str, table: str) -> ds.Dataset:
    """A :class:`pyarrow.dataset.Dataset` of one table over every complete run of a batch.

    Parameters
    ----------
    out_dir
        The batch directory (holding ``index.parquet``).
    table
        ``intervals``, ``nodes``, ``branches``, ``generators`` or ``iterations``.

    Returns
    -------
    pyarrow.dataset.Dataset
        Columns: ``run_id``, the swept columns, ``seed``, ``policy`` (partition-like, from the
        index), then the table's columns. Runs whose status is not complete, or that do not
        hold the table (disabled in ``[outputs]``), are left out.

    Examples
    --------
    >>> dset = batch_dataset("runs/sweep", "nodes")          # doctest: +SKIP
    >>> for rb in dset.to_batches(columns=["run_id", "shortfall_ratio"]):   # doctest: +SKIP
    ...     ...
    """
    if table not in SCHEMAS:
        raise RunDirectoryError(f"unknown table {table!r} (known: {', '.join(TABLE_NAMES)})")
    root = Path(out_dir).resolve()
    index = read_index_table(root)
    done = index.filter(pc.is_in(index["status"], pa.array(DONE_STATUSES)))
    id_cols = _id_columns(done)
    id_fields = [done.schema.field(c).remove_metadata() for c in id_cols]
    schema = pa.schema([*id_fields, *SCHEMAS[table]])
    fmt = ds.ParquetFileFormat()
    fs = pafs.LocalFileSystem()
    fragments = []
    rows = done.select([*id_cols, "path"]).to_pylist()
    for i, row in enumerate(rows):
        f = root / str(row["path"] or f"{RUNS_DIR}/{row['run_id']}") / file_name(table)
        if not f.is_file():
            continue
        guarantee = None
        for c in id_cols:
            if row[c] is None:
                continue
            term = pc.field(c) == done.column(c)[i]
            guarantee = term if guarantee is None else guarantee & term
        fragments.append(fmt.make_fragment(str(f), fs, partition_expression=guarantee))
    return ds.FileSystemDataset(fragments, schema, fmt, fs)


def read_batch(
    out_dir: Path | str,
    table: str,
    columns: Sequence[str] | None = None,
    filters: Any = None,
) -> pd.DataFrame:
    """One table across all complete runs of a batch, with the swept values as columns.

    Parameters
    ----------
    out_dir
        The batch directory.
    table
        Table name (``intervals``, ``nodes``, ...).
    columns
        Table columns to read (default: all). ``run_id``, the swept columns, ``seed`` and
        ``policy`` are always included.
    filters
        A :class:`pyarrow.compute.Expression` or DNF tuples as in
        :func:`pyarrow.parquet.read_table` (``[("t", "<", 100), ("policy", "==", "equal")]``);
        conditions on index columns prune whole runs.

    Returns
    -------
    pandas.DataFrame
        Rows of every complete run, in index order (within a run, file order).
    """
    dset = batch_dataset(out_dir, table)
    names = dset.schema.names
    n_id = len(names) - len(SCHEMAS[table])
    cols: list[str] | None = None
    if columns is not None:
        unknown = [c for c in columns if c not in names]
        if unknown:
            raise RunDirectoryError(f"table {table!r} has no column {unknown[0]!r}")
        cols = names[:n_id] + [c for c in columns if c not in names[:n_id]]
    expr = filters
    if filters is not None and not isinstance(filters, pc.Expression):
        try:
            expr = pq.filters_to_expression(filters)
        except (TypeError, ValueError) as exc:
            raise RunDirectoryError(f"invalid filters {filters!r} ({exc})") from None
    try:
        result = dset.to_table(columns=cols, filter=expr)
    except (OSError, pa.ArrowException) as exc:
        raise RunDirectoryError(
            f"cannot read the {table} table of batch {out_dir} ({type(exc).__name__}: {exc})"
        ) from None
    return to_frame(result)


__all__ = [
    "BATCH_META_NAME",
    "DONE_STATUSES",
    "INDEX_NAME",
    "META_SWEPT",
    "RUNS_DIR",
    "RunStatus",
    "batch_dataset",
    "index_table",
    "read_batch",
    "read_index",
    "read_index_table",
    "swept_columns",
    "write_batch_meta",
    "write_index",
]
