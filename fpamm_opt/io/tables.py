"""The one converter from a run's per-interval columns to its tables (Arrow, then pandas).

Role
----
The run loop turns each interval's record into ``{table: {column: values}}``
(:class:`fpamm_opt.sim.records.TableLayout`); :class:`TableBuffer` checks those columns against
:mod:`fpamm_opt.io.schema`, buffers them and hands back :class:`pyarrow.Table` row groups.
Both sinks of a run use it:

- :class:`~fpamm_opt.io.writer.RunWriter` writes each row group to Parquet (``fpamm run``);
- :class:`MemoryTables` keeps them and gives pandas frames (:func:`fpamm_opt.simulate`).

:func:`to_frame` is the one Arrow -> pandas conversion, also used by the readers of a run
directory, so a table kept in memory and the same table read back from Parquet are equal
(dtypes included: integer columns holding nulls become pandas' nullable ``Int64`` & co.).

Columns
    ``columns`` maps column names of the table's schema to 1-D arrays (all of one length:
    the rows this interval adds) or scalars (broadcast). A column that is left out or given
    as ``None`` is null; an unknown column, or a value of the wrong kind (floats for an
    integer column), raises :class:`~fpamm_opt.errors.RunDirectoryError` at once. Arrays are
    copied, so the caller may reuse them.

No Pyomo here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from fpamm_opt.errors import RunDirectoryError
from fpamm_opt.io.schema import SCHEMAS, TABLE_NAMES, table_schema

_NULLABLE_INT = {
    pa.int8(): pd.Int8Dtype(),
    pa.int16(): pd.Int16Dtype(),
    pa.int32(): pd.Int32Dtype(),
    pa.int64(): pd.Int64Dtype(),
}


def to_frame(table: pa.Table) -> pd.DataFrame:
    """A run table as pandas: NumPy dtypes, except integer columns with nulls (nullable)."""
    df = table.to_pandas()
    for i, field in enumerate(table.schema):
        if pa.types.is_integer(field.type) and table.column(i).null_count > 0:
            dtype = _NULLABLE_INT.get(field.type, pd.Int64Dtype())
            df[field.name] = table.column(i).to_pandas(types_mapper={field.type: dtype}.get)
    return df


def _accepted_kinds(arrow_type: pa.DataType) -> str:
    """NumPy dtype kinds acceptable for an Arrow column type (object arrays always are)."""
    if pa.types.is_integer(arrow_type):
        return "iuO"
    if pa.types.is_floating(arrow_type):
        return "fiuO"
    if pa.types.is_boolean(arrow_type):
        return "bO"
    if pa.types.is_string(arrow_type):
        return "USO"
    return "biufcUSO"


#: ``{table: {column: (arrow type, accepted NumPy kinds)}}``.
_COLUMNS: dict[str, dict[str, tuple[pa.DataType, str]]] = {
    t: {f.name: (f.type, _accepted_kinds(f.type)) for f in schema} for t, schema in SCHEMAS.items()
}


class _Nulls:
    """``n`` nulls in a column buffer."""

    __slots__ = ("n",)

    def __init__(self, n: int) -> None:
        self.n = n


def check_table_names(tables: Iterable[str], who: str = "run writer") -> tuple[str, ...]:
    """``tables`` in the order of :data:`~fpamm_opt.io.schema.TABLE_NAMES` (unknown: error)."""
    names = tuple(str(t) for t in tables)
    for name in names:
        if name not in SCHEMAS:
            raise RunDirectoryError(
                f"{who}: unknown table {name!r} (known: {', '.join(TABLE_NAMES)})"
            )
    return tuple(t for t in TABLE_NAMES if t in names)


class TableBuffer:
    """Per-interval columns of the selected tables, checked and buffered until taken.

    Parameters
    ----------
    tables
        Tables to keep (subset of :data:`~fpamm_opt.io.schema.TABLE_NAMES`); :meth:`add` for
        another known table is a no-op (so the loop need not know which outputs are enabled).
    spec_hash
        Written to each Arrow schema's key-value metadata.
    who
        Names the owner in error messages.
    """

    def __init__(
        self,
        tables: Iterable[str] = TABLE_NAMES,
        spec_hash: str | None = None,
        who: str = "run writer",
    ) -> None:
        self.who = who
        self.tables: tuple[str, ...] = check_table_names(tables, who)
        self.schemas: dict[str, pa.Schema] = {t: table_schema(t, spec_hash) for t in self.tables}
        self._rows = dict.fromkeys(self.tables, 0)
        self._buf: dict[str, dict[str, list[Any]]] = {
            t: {c: [] for c in SCHEMAS[t].names} for t in self.tables
        }

    def rows(self, table: str) -> int:
        """Rows of ``table`` buffered since it was last taken."""
        return self._rows[table]

    def n_pieces(self, table: str) -> int:
        """Buffered pieces (one per :meth:`add`) of ``table``, whether or not they hold rows."""
        return max((len(p) for p in self._buf[table].values()), default=0)

    def add(self, table: str, columns: Mapping[str, Any]) -> None:
        """Buffer the rows of one interval for ``table`` (see the module docstring)."""
        if table not in self._buf:
            if table in SCHEMAS:
                return  # a known table that this run does not keep
            raise RunDirectoryError(
                f"{self.who}: unknown table {table!r} (known: {', '.join(TABLE_NAMES)})"
            )
        known = _COLUMNS[table]
        n: int | None = None
        prepared: dict[str, np.ndarray] = {}
        for col, value in columns.items():
            info = known.get(col)
            if info is None:
                raise RunDirectoryError(f"{self.who}: table {table!r} has no column {col!r}")
            if value is None:
                continue
            arr = np.array(value, copy=True)
            if arr.ndim > 1:
                raise RunDirectoryError(
                    f"{self.who}: {table}.{col} must be a scalar or 1-D, got shape {arr.shape}"
                )
            if arr.dtype.kind not in info[1]:
                raise RunDirectoryError(
                    f"{self.who}: {table}.{col} expects {info[0]}, got {arr.dtype}"
                )
            if arr.ndim == 1:
                if n is None:
                    n = arr.shape[0]
                elif arr.shape[0] != n:
                    raise RunDirectoryError(
                        f"{self.who}: {table}.{col} has {arr.shape[0]} rows, other columns {n}"
                    )
            prepared[col] = arr
        rows = 1 if n is None else n
        buf = self._buf[table]
        for col in known:
            got = prepared.get(col)
            if got is None:
                buf[col].append(_Nulls(rows))
            elif got.ndim == 0:
                buf[col].append(np.full(rows, got))
            else:
                buf[col].append(got)
        self._rows[table] += rows

    def add_interval(self, tables: Mapping[str, Mapping[str, Any]]) -> None:
        """:meth:`add` each ``{table: columns}`` entry of one interval."""
        for table, columns in tables.items():
            self.add(table, columns)

    def _column_array(self, table: str, col: str, pieces: list[Any], typ: pa.DataType) -> pa.Array:
        if any(isinstance(p, _Nulls) for p in pieces):
            if all(isinstance(p, _Nulls) for p in pieces):
                return pa.nulls(sum(p.n for p in pieces), type=typ)
            parts = [
                np.full(p.n, None, dtype=object) if isinstance(p, _Nulls) else p.astype(object)
                for p in pieces
            ]
            data = np.concatenate(parts)
        else:
            data = np.concatenate(pieces) if len(pieces) > 1 else pieces[0]
        try:
            return pa.array(data, type=typ)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as exc:
            raise RunDirectoryError(
                f"{self.who}: {table}.{col} cannot be stored as {typ} ({exc})"
            ) from None

    def take(self, table: str) -> pa.Table | None:
        """The buffered rows of ``table`` as one Arrow table (``None`` when there are none);
        the buffer is emptied either way."""
        buf = self._buf[table]
        if self._rows[table] == 0:
            # Intervals that add no rows (no fixed-point iterations) still buffer empty
            # pieces; drop them, or memory grows with T.
            for pieces in buf.values():
                pieces.clear()
            return None
        schema = self.schemas[table]
        arrays = [self._column_array(table, f.name, buf[f.name], f.type) for f in schema]
        self._rows[table] = 0
        for pieces in buf.values():
            pieces.clear()
        return pa.Table.from_arrays(arrays, schema=schema)


class MemoryTables:
    """A run's tables kept in memory: the same buffer and row groups as
    :class:`~fpamm_opt.io.writer.RunWriter`, handed back as pandas instead of written.

    Parameters
    ----------
    spec_hash
        Recorded in each table's schema metadata (as in the Parquet files).
    tables
        Tables to keep.
    flush_every
        Intervals per row group (as the writer's).
    """

    def __init__(
        self, spec_hash: str, tables: Iterable[str] = TABLE_NAMES, flush_every: int = 500
    ) -> None:
        self.buffer = TableBuffer(tables, spec_hash, who="simulation")
        self.tables = self.buffer.tables
        self.flush_every = max(1, int(flush_every))
        self.n_intervals = 0
        self._pending = 0
        self._groups: dict[str, list[pa.Table]] = {t: [] for t in self.tables}

    def add_interval(self, tables: Mapping[str, Mapping[str, Any]]) -> None:
        """Buffer one interval's ``{table: columns}``; a row group every ``flush_every``."""
        self.buffer.add_interval(tables)
        self.n_intervals += 1
        self._pending += 1
        if self._pending >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        """Turn every buffered row into one row group per table."""
        for t in self.tables:
            got = self.buffer.take(t)
            if got is not None:
                self._groups[t].append(got)
        self._pending = 0

    def table_info(self) -> dict[str, dict[str, int]]:
        """``{table: {"rows": ..., "row_groups": ...}}`` of what is kept (after :meth:`flush`)."""
        return {
            t: {"rows": sum(g.num_rows for g in groups), "row_groups": len(groups)}
            for t, groups in self._groups.items()
        }

    def arrow(self) -> dict[str, pa.Table]:
        """Every kept table as one Arrow table (flushes first)."""
        self.flush()
        return {
            t: pa.concat_tables(g) if g else self.buffer.schemas[t].empty_table()
            for t, g in self._groups.items()
        }

    def frames(self) -> dict[str, pd.DataFrame]:
        """Every kept table as a pandas frame (:func:`to_frame`)."""
        return {t: to_frame(tab) for t, tab in self.arrow().items()}


__all__ = ["MemoryTables", "TableBuffer", "check_table_names", "to_frame"]
