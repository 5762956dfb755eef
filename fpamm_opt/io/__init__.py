"""Run-directory I/O: Parquet schemas, the atomic streaming writer, manifest helpers, readers.

See INTERFACE.md ("Run directory") for the layout and :mod:`fpamm_opt.io.schema` for the
columns. No Pyomo here.
"""

from __future__ import annotations

from fpamm_opt.io.batch import (
    RunStatus,
    batch_dataset,
    read_batch,
    read_index,
)
from fpamm_opt.io.manifest import (
    build_manifest,
    environment_info,
    package_versions,
    to_jsonable,
    utc_now,
)
from fpamm_opt.io.reader import (
    RunTables,
    has_table,
    is_run_dir,
    iter_table,
    num_row_groups,
    read_manifest,
    read_metadata,
    read_run,
    read_table,
)
from fpamm_opt.io.schema import META_SPEC_HASH, SCHEMAS, TABLE_NAMES, Table, table_schema
from fpamm_opt.io.writer import MANIFEST_NAME, RunWriter, clean_stale_temporaries

__all__ = [
    "MANIFEST_NAME",
    "META_SPEC_HASH",
    "SCHEMAS",
    "TABLE_NAMES",
    "RunStatus",
    "RunTables",
    "RunWriter",
    "Table",
    "batch_dataset",
    "build_manifest",
    "clean_stale_temporaries",
    "environment_info",
    "has_table",
    "is_run_dir",
    "iter_table",
    "num_row_groups",
    "package_versions",
    "read_batch",
    "read_index",
    "read_manifest",
    "read_metadata",
    "read_run",
    "read_table",
    "table_schema",
    "to_jsonable",
    "utc_now",
]
