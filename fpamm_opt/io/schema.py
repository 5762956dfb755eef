"""Parquet schemas of the run-directory tables (INTERFACE.md "Run directory").

Role
----
One :class:`pyarrow.Schema` per table, with INTERFACE.md's columns first and the extra ones of
``docs/design.md`` after them. Floats are ``float64`` (``NaN`` means "not applicable", e.g.
``tracking_error`` when not audited); ``window`` is the only column that is ``null`` by design
(normal intervals). Units: MW for ``*_mw``, seconds for ``*_s``, $/MWh for prices, $/h for
``cost``; ratios are dimensionless.

Key-value metadata on every file: ``fpamm.spec_hash`` (the manifest's spec hash),
``fpamm.table`` (table name) and ``fpamm.schema_version``.

No Pyomo here.
"""

from __future__ import annotations

import enum

import pyarrow as pa

#: Bumped when a column is renamed or retyped (adding columns keeps the version).
SCHEMA_VERSION = "1"

#: Parquet key-value metadata keys.
META_SPEC_HASH = "fpamm.spec_hash"
META_TABLE = "fpamm.table"
META_SCHEMA_VERSION = "fpamm.schema_version"


class Table(enum.StrEnum):
    """The tables of a run directory (file ``<name>.parquet``): INTERFACE.md's five and
    ``events`` (runs written before it existed do not have it)."""

    INTERVALS = "intervals"
    NODES = "nodes"
    BRANCHES = "branches"
    GENERATORS = "generators"
    ITERATIONS = "iterations"
    EVENTS = "events"


TABLE_NAMES: tuple[str, ...] = tuple(t.value for t in Table)

_F = pa.float64()

INTERVALS = pa.schema(
    [
        pa.field("t", pa.int64(), nullable=False),
        pa.field("scarce", pa.bool_()),
        pa.field("window", pa.int64()),  # scarcity-window id, null in normal intervals
        pa.field("tier_order", pa.string()),  # e.g. "0>1"; "" when no tier order was drawn
        pa.field("demand_mw", _F),
        pa.field("served_mw", _F),
        pa.field("available_mw", _F),
        pa.field("amm_price", _F),  # $/MWh
        pa.field("iterations", pa.int32()),
        pa.field("q_hat", _F),
        pa.field("q_bound", _F),
        pa.field("executed", pa.bool_()),
        pa.field("status", pa.string()),  # IntervalStatus: optimal, held, retried, solve-error
        pa.field("solve_s", _F),
        # extra columns (docs/design.md)
        pa.field("q_bound_applies", pa.bool_()),
        pa.field("gamma", _F),
        pa.field("tier_level_max", _F),
        pa.field("n_solves", pa.int32()),
        pa.field("tracking_error", _F),
        pa.field("cost", _F),  # $/h
        pa.field("deliverable_mw", _F),
    ]
)

NODES = pa.schema(
    [
        pa.field("t", pa.int64(), nullable=False),
        pa.field("node", pa.int32(), nullable=False),
        pa.field("bus", pa.int32()),
        pa.field("tier", pa.int16()),
        pa.field("demand_mw", _F),
        pa.field("served_mw", _F),
        pa.field("shortfall_ratio", _F),
        pa.field("memory_before", _F),
        pa.field("memory_after", _F),
        pa.field("weight", _F),
        pa.field("delivery_ratio", _F),  # cumulative through t
        pa.field("lmp", _F),  # $/MWh
        pa.field("deficit_mwh", _F),  # D(t+1), after the interval's update (MECHANISM.md s.3)
        # extra column (docs/design.md)
        pa.field("served_ratio_exact", _F),
    ]
)

BRANCHES = pa.schema(
    [
        pa.field("t", pa.int64(), nullable=False),
        pa.field("branch", pa.int32(), nullable=False),
        pa.field("flow_mw", _F),
        pa.field("rate_mw", _F),
    ]
)

GENERATORS = pa.schema(
    [
        pa.field("t", pa.int64(), nullable=False),
        pa.field("gen", pa.int32(), nullable=False),
        pa.field("bus", pa.int32()),
        pa.field("p_mw", _F),
        pa.field("available_mw", _F),
    ]
)

ITERATIONS = pa.schema(
    [
        pa.field("t", pa.int64(), nullable=False),
        pa.field("m", pa.int32(), nullable=False),
        pa.field("residual", _F),  # ||x^{m+1} - x^m||_1, MW
    ]
)

#: Typed clear events (:class:`fpamm_opt.mechanism.types.ClearEvent`), one row per
#: (interval, event): what happened in the interval in detail (``intervals.status`` is one word
#: of a fixed vocabulary since manifest version 4; before, ``;``-joined notes).
EVENTS = pa.schema(
    [
        pa.field("t", pa.int64(), nullable=False),
        pa.field("kind", pa.string()),  # ClearEventKind: qp-fallback, retried, widened, ...
        pa.field("tier", pa.int16()),  # null for events of no tier (widened, retried, ...)
        pa.field("detail", pa.string()),  # termination word, solve, retry reason, or ""
    ]
)

SCHEMAS: dict[str, pa.Schema] = {
    Table.INTERVALS.value: INTERVALS,
    Table.NODES.value: NODES,
    Table.BRANCHES.value: BRANCHES,
    Table.GENERATORS.value: GENERATORS,
    Table.ITERATIONS.value: ITERATIONS,
    Table.EVENTS.value: EVENTS,
}


def table_schema(name: str, spec_hash: str | None = None) -> pa.Schema:
    """Schema of table ``name``, with the fpamm key-value metadata when ``spec_hash`` is given.

    Raises
    ------
    KeyError
        For an unknown table name (callers turn it into a domain error).
    """
    schema = SCHEMAS[str(name)]
    if spec_hash is None:
        return schema
    return schema.with_metadata(
        {
            META_SPEC_HASH: spec_hash,
            META_TABLE: str(name),
            META_SCHEMA_VERSION: SCHEMA_VERSION,
        }
    )


def file_name(name: str) -> str:
    """File name of table ``name`` inside a run directory."""
    return f"{name}.parquet"


__all__ = [
    "BRANCHES",
    "EVENTS",
    "GENERATORS",
    "INTERVALS",
    "ITERATIONS",
    "META_SCHEMA_VERSION",
    "META_SPEC_HASH",
    "META_TABLE",
    "NODES",
    "SCHEMAS",
    "SCHEMA_VERSION",
    "TABLE_NAMES",
    "Table",
    "file_name",
    "table_schema",
]
