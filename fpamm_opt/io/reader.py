"""Readers of a run directory: manifest, Parquet tables, metadata.

Role
----
Everything downstream (``verify``, ``report``, comparisons) reads runs through this module.
A run directory is a directory holding ``manifest.json`` (see :mod:`fpamm_opt.io.writer`);
:func:`read_table` returns a :class:`pandas.DataFrame` (optionally a subset of columns or a
row filter pushed down to Parquet), :func:`iter_table` streams it one row group at a time,
and :class:`RunTables` (from :func:`read_run`) reads tables lazily and caches them.

Integer columns that hold nulls (``intervals.window``) are returned with pandas' nullable
integer dtype (``Int64``), so window ids stay integers; every other column keeps its NumPy
dtype.

All failures raise :class:`~fpamm_opt.errors.RunDirectoryError` with one line naming the path.
(A batch reader over many run directories lives elsewhere.)

No Pyomo here.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from fpamm_opt.errors import RunDirectoryError
from fpamm_opt.io.batch import INDEX_NAME
from fpamm_opt.io.schema import META_SPEC_HASH, SCHEMAS, TABLE_NAMES, file_name
from fpamm_opt.io.tables import to_frame
from fpamm_opt.io.writer import MANIFEST_NAME


def is_run_dir(path: Path | str) -> bool:
    """True when ``path`` is a directory holding ``manifest.json``."""
    p = Path(path)
    return p.is_dir() and (p / MANIFEST_NAME).is_file()


#: ``comparison.json`` of a comparison directory (``fpamm compare``).
COMPARISON_NAME = "comparison.json"


class DirectoryKind(enum.StrEnum):
    """What a results directory holds (``fpamm verify`` and ``fpamm report`` take all three)."""

    RUN = "run"
    BATCH = "batch"
    COMPARISON = "comparison"


def directory_kind(path: Path | str) -> DirectoryKind | None:
    """Run (``manifest.json``), batch (``index.parquet``) or comparison
    (``comparison.json``) directory; ``None`` for anything else."""
    p = Path(path)
    if is_run_dir(p):
        return DirectoryKind.RUN
    if (p / INDEX_NAME).is_file():
        return DirectoryKind.BATCH
    if (p / COMPARISON_NAME).is_file():
        return DirectoryKind.COMPARISON
    return None


def _require_run_dir(path: Path | str) -> Path:
    p = Path(path)
    if not is_run_dir(p):
        raise RunDirectoryError(f"not a run directory: {p} (no {MANIFEST_NAME})")
    return p


def read_manifest(path: Path | str) -> dict[str, Any]:
    """The parsed ``manifest.json`` of a run directory."""
    p = _require_run_dir(path)
    try:
        data = json.loads((p / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunDirectoryError(
            f"run directory {p}: {MANIFEST_NAME} is unreadable ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(data, dict):
        raise RunDirectoryError(f"run directory {p}: {MANIFEST_NAME} is not a JSON object")
    return data


def complete_spec_hash(path: Path | str) -> str | None:
    """The spec hash of the complete run directory ``path``; ``None`` when it is not one.

    The one resume check of batches and comparisons: a run is reused only when this equals
    the hash of the spec it would be run with. An unreadable manifest, or one whose ``status``
    is not ``complete``, counts as no run.
    """
    if not is_run_dir(path):
        return None
    try:
        man = read_manifest(path)
    except RunDirectoryError:
        return None
    h = man.get("spec_hash")
    return None if man.get("status") != "complete" or h is None else str(h)


def table_path(path: Path | str, name: str) -> Path:
    """Path of table ``name`` in run directory ``path`` (checked to exist)."""
    p = _require_run_dir(path)
    if name not in SCHEMAS:
        raise RunDirectoryError(f"unknown table {name!r} (known: {', '.join(TABLE_NAMES)})")
    f = p / file_name(name)
    if not f.is_file():
        raise RunDirectoryError(f"run directory {p} has no {name} table (disabled in [outputs]?)")
    return f


def has_table(path: Path | str, name: str) -> bool:
    """True when run directory ``path`` holds table ``name``."""
    return name in SCHEMAS and is_run_dir(path) and (Path(path) / file_name(name)).is_file()


def read_table(
    path: Path | str,
    name: str,
    columns: Sequence[str] | None = None,
    filters: Any = None,
) -> pd.DataFrame:
    """Read one table of a run directory.

    Parameters
    ----------
    path
        Run directory.
    name
        ``intervals``, ``nodes``, ``branches``, ``generators`` or ``iterations``.
    columns
        Subset of columns (default: all).
    filters
        Passed to :func:`pyarrow.parquet.read_table` (e.g. ``[("t", "<", 100)]``).
    """
    f = table_path(path, name)
    if columns is not None:
        unknown = [c for c in columns if c not in SCHEMAS[name].names]
        if unknown:
            raise RunDirectoryError(f"table {name!r} has no column {unknown[0]!r}")
    try:
        table = pq.read_table(
            f, columns=None if columns is None else list(columns), filters=filters
        )
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise RunDirectoryError(f"cannot read {f} ({type(exc).__name__}: {exc})") from None
    return to_frame(table)


def iter_table(
    path: Path | str, name: str, columns: Sequence[str] | None = None
) -> Iterator[pd.DataFrame]:
    """Yield table ``name`` one Parquet row group at a time (bounded memory)."""
    f = table_path(path, name)
    try:
        pf = pq.ParquetFile(f)
        for k in range(pf.num_row_groups):
            yield to_frame(pf.read_row_group(k, columns=None if columns is None else list(columns)))
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise RunDirectoryError(f"cannot read {f} ({type(exc).__name__}: {exc})") from None


def read_metadata(path: Path | str, name: str) -> dict[str, str]:
    """Decoded Parquet key-value metadata of table ``name`` (without Arrow's own schema key)."""
    f = table_path(path, name)
    try:
        meta = pq.read_metadata(f).metadata or {}
    except (OSError, pa.ArrowException) as exc:
        raise RunDirectoryError(f"cannot read {f} ({type(exc).__name__}: {exc})") from None
    return {k.decode(): v.decode(errors="replace") for k, v in meta.items() if k != b"ARROW:schema"}


def num_row_groups(path: Path | str, name: str) -> int:
    """Number of Parquet row groups of table ``name``."""
    f = table_path(path, name)
    return int(pq.ParquetFile(f).num_row_groups)


class RunTables:
    """Lazy, cached access to a run directory.

    Parameters
    ----------
    path
        The run directory (checked on construction).

    Examples
    --------
    >>> run = read_run("runs/ieee57")          # doctest: +SKIP
    >>> run.manifest["spec_hash"], run.intervals.shape   # doctest: +SKIP
    """

    def __init__(self, path: Path | str) -> None:
        self.path = _require_run_dir(path)
        self._manifest: dict[str, Any] | None = None
        self._cache: dict[str, pd.DataFrame] = {}

    @property
    def manifest(self) -> dict[str, Any]:
        if self._manifest is None:
            self._manifest = read_manifest(self.path)
        return self._manifest

    @property
    def spec_hash(self) -> str | None:
        return self.manifest.get("spec_hash")

    def has(self, name: str) -> bool:
        """True when the run holds table ``name``."""
        return has_table(self.path, name)

    def table(self, name: str, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Read ``name`` (uncached when ``columns`` is given, cached otherwise)."""
        if columns is not None:
            return read_table(self.path, name, columns)
        if name not in self._cache:
            self._cache[name] = read_table(self.path, name)
        return self._cache[name]

    def __getitem__(self, name: str) -> pd.DataFrame:
        return self.table(name)

    def metadata(self, name: str) -> dict[str, str]:
        return read_metadata(self.path, name)

    def check_spec_hash(self) -> None:
        """Raise :class:`RunDirectoryError` if a table's metadata disagrees with the manifest."""
        expected = self.spec_hash
        for name in TABLE_NAMES:
            if not self.has(name):
                continue
            got = self.metadata(name).get(META_SPEC_HASH)
            if got != expected:
                raise RunDirectoryError(
                    f"run directory {self.path}: {name} has spec hash {got!r}, manifest {expected!r}"
                )

    @property
    def intervals(self) -> pd.DataFrame:
        return self.table("intervals")

    @property
    def nodes(self) -> pd.DataFrame:
        return self.table("nodes")

    @property
    def branches(self) -> pd.DataFrame:
        return self.table("branches")

    @property
    def generators(self) -> pd.DataFrame:
        return self.table("generators")

    @property
    def iterations(self) -> pd.DataFrame:
        return self.table("iterations")

    def __repr__(self) -> str:
        return f"RunTables({str(self.path)!r})"


def read_run(path: Path | str) -> RunTables:
    """A :class:`RunTables` for run directory ``path``."""
    return RunTables(path)


__all__ = [
    "COMPARISON_NAME",
    "DirectoryKind",
    "RunTables",
    "complete_spec_hash",
    "directory_kind",
    "has_table",
    "is_run_dir",
    "iter_table",
    "num_row_groups",
    "read_manifest",
    "read_metadata",
    "read_run",
    "read_table",
    "table_path",
]
