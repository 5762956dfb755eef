"""Atomic, streaming writer of a run directory (INTERFACE.md "Run directory").

Role
----
:class:`RunWriter` writes the five Parquet tables and ``manifest.json`` of one run under a
temporary directory ``<parent>/.<name>.tmp-<pid>`` and renames it to ``<parent>/<name>`` only
when :meth:`RunWriter.close` succeeds, so a run directory that exists is whole.

Usage (the run loop calls :meth:`~RunWriter.add` once per table per interval, then
:meth:`~RunWriter.end_interval`; :meth:`~RunWriter.add_interval` does both)::

    with RunWriter(out_dir, spec_hash, manifest, flush_every=500) as w:
        for t, ...:
            w.add("intervals", {"t": t, "scarce": True, "window": 3, ...})   # scalars
            w.add("nodes", {"t": t, "node": np.arange(n), "served_mw": x, ...})  # arrays
            w.end_interval()
        w.close({"timings": {...}})

Columns
    ``columns`` maps column names of :mod:`fpamm_opt.io.schema` to 1-D arrays (all of one
    length: the rows this interval adds) or scalars (broadcast). A column that is left out or
    given as ``None`` is written as null; an unknown column raises
    :class:`~fpamm_opt.errors.RunDirectoryError` at once, as does a value of the wrong kind
    (e.g. floats for an integer column). Arrays are copied, so the caller may reuse them.
    Checking, buffering and the conversion to Arrow are :class:`~fpamm_opt.io.tables.TableBuffer`'s,
    shared with the in-memory runs of :func:`fpamm_opt.simulate`.
Memory
    Rows are buffered per table and written as one Parquet row group per ``flush_every``
    intervals (so row group ``k`` of every table covers the same intervals), or earlier when a
    table buffers more than ``max_buffer_rows`` rows; memory does not grow with ``T``.
Tables
    Only the tables named in ``tables`` are written; :meth:`~RunWriter.add` for another known
    table is a no-op (so the loop need not know which outputs are enabled).
Lifecycle
    :meth:`~RunWriter.close` flushes, writes ``manifest.json`` (``status: "complete"``),
    fsyncs every file and the directory, and renames atomically; with ``overwrite=True`` an
    existing run is replaced only at that moment. :meth:`~RunWriter.abort` removes the
    temporary directory. As a context manager the writer aborts on any exception (including
    ``KeyboardInterrupt``) and closes on a normal exit.
Stale temporaries
    :func:`clean_stale_temporaries` removes ``.<name>.tmp-<pid>`` (and ``.old-<pid>``)
    directories whose process is gone (pids are only meaningful on one host).

No Pyomo here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import pyarrow.parquet as pq

from fpamm_opt.errors import RunDirectoryError
from fpamm_opt.io.manifest import complete_manifest, to_jsonable
from fpamm_opt.io.schema import TABLE_NAMES, file_name
from fpamm_opt.io.tables import TableBuffer, check_table_names

MANIFEST_NAME = "manifest.json"

#: File in a temporary run directory naming the host that writes it (removed on publish).
HOST_MARKER = ".writer-host"

_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)$")


def temporary_dir(final_dir: Path | str, pid: int | None = None) -> Path:
    """The temporary directory used while writing ``final_dir``."""
    final = Path(final_dir)
    return final.parent / f".{final.name}.tmp-{os.getpid() if pid is None else pid}"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, OSError):
        return False
    return True


def clean_stale_temporaries(parent: Path | str) -> list[Path]:
    """Remove ``.*.tmp-<pid>`` / ``.*.old-<pid>`` directories of dead processes in ``parent``.

    Returns
    -------
    list of Path
        The directories removed.
    """
    root = Path(parent)
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    for entry in sorted(root.iterdir()):
        m = _TEMP_RE.match(entry.name)
        if m is None or not entry.is_dir() or entry.is_symlink():
            continue
        marker = entry / HOST_MARKER
        try:
            host = marker.read_text().strip() if marker.exists() else None
        except OSError:
            host = None
        if host is not None and host != socket.gethostname():
            continue  # another host's writer: its pid cannot be checked from here
        if _pid_alive(int(m.group("pid"))):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on directories
        pass
    finally:
        os.close(fd)


class RunWriter:
    """Streams the tables of one run to Parquet and publishes the directory atomically.

    Parameters
    ----------
    final_dir
        The run directory to create (must not exist unless ``overwrite``).
    spec_hash
        Written to the manifest and to every file's key-value metadata.
    manifest
        Initial manifest (see :func:`fpamm_opt.io.manifest.build_manifest`).
    flush_every
        Intervals per Parquet row group.
    tables
        Tables to write (subset of :data:`fpamm_opt.io.schema.TABLE_NAMES`).
    overwrite
        Replace an existing ``final_dir`` at the final rename.
    max_buffer_rows
        Flush a table early when it buffers more rows than this.
    compression
        Parquet compression codec.
    """

    def __init__(
        self,
        final_dir: Path | str,
        spec_hash: str,
        manifest: Mapping[str, Any],
        flush_every: int = 500,
        tables: Iterable[str] = TABLE_NAMES,
        *,
        overwrite: bool = False,
        max_buffer_rows: int = 1_000_000,
        compression: str = "zstd",
    ) -> None:
        self.final_dir = Path(final_dir)
        if not isinstance(spec_hash, str) or not spec_hash:
            raise RunDirectoryError(
                f"run writer: spec_hash must be a non-empty string, got {spec_hash!r}"
            )
        if isinstance(flush_every, bool) or not isinstance(flush_every, int) or flush_every < 1:
            raise RunDirectoryError(
                f"run writer: flush_every must be an integer >= 1, got {flush_every!r}"
            )
        selected = check_table_names(tables)
        if self.final_dir.exists() and not overwrite:
            raise RunDirectoryError(
                f"run directory {self.final_dir} already exists (choose another --out or overwrite)"
            )
        self.spec_hash = spec_hash
        self.manifest: dict[str, Any] = dict(manifest)
        self.flush_every = flush_every
        self.tables: tuple[str, ...] = selected
        self.overwrite = overwrite
        self.max_buffer_rows = int(max_buffer_rows)
        self.tmp_dir = temporary_dir(self.final_dir)
        self.n_intervals = 0
        self._pending = 0
        self._state = "open"
        self._t_start = time.perf_counter()
        self._written_rows = dict.fromkeys(self.tables, 0)
        self._row_groups = dict.fromkeys(self.tables, 0)
        #: The rows not yet written (checked and converted to Arrow by the buffer).
        self.buffer = TableBuffer(self.tables, spec_hash)
        if self.tmp_dir.exists():
            raise RunDirectoryError(
                f"run writer: temporary directory {self.tmp_dir} already exists (another writer "
                "for the same run in this process?)"
            )
        self.final_dir.parent.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir()
        # Which host writes here: pids mean nothing across hosts sharing a filesystem (a Dask
        # cluster), so stale-temporary cleaning only touches this host's directories.
        (self.tmp_dir / HOST_MARKER).write_text(socket.gethostname())
        self._writers: dict[str, pq.ParquetWriter] = {}
        try:
            for t in self.tables:
                self._writers[t] = pq.ParquetWriter(
                    self.tmp_dir / file_name(t), self.buffer.schemas[t], compression=compression
                )
        except BaseException:
            self.abort()
            raise

    # ------------------------------------------------------------- state
    @property
    def closed(self) -> bool:
        """True after :meth:`close` or :meth:`abort`."""
        return self._state != "open"

    @property
    def state(self) -> str:
        """``"open"``, ``"complete"`` or ``"aborted"``."""
        return self._state

    def _require_open(self) -> None:
        if self._state != "open":
            raise RunDirectoryError(f"run writer for {self.final_dir} is {self._state}")

    # ------------------------------------------------------------- adding rows
    def add(self, table: str, columns: Mapping[str, Any]) -> None:
        """Buffer the rows of one interval for ``table`` (see the module docstring).

        Parameters
        ----------
        table
            Table name.
        columns
            Column name -> 1-D array (one entry per row) or scalar (broadcast) or ``None``.
        """
        self._require_open()
        self.buffer.add(table, columns)
        if table in self.buffer.tables and self.buffer.rows(table) >= self.max_buffer_rows:
            self._flush_table(table)

    def end_interval(self) -> None:
        """Mark the end of one interval; writes a row group every ``flush_every`` intervals."""
        self._require_open()
        self.n_intervals += 1
        self._pending += 1
        if self._pending >= self.flush_every:
            self.flush()

    def add_interval(self, tables: Mapping[str, Mapping[str, Any]]) -> None:
        """:meth:`add` each ``{table: columns}`` entry, then :meth:`end_interval`."""
        for table, columns in tables.items():
            self.add(table, columns)
        self.end_interval()

    # ------------------------------------------------------------- flushing
    def _flush_table(self, table: str) -> None:
        batch = self.buffer.take(table)
        if batch is None:
            return
        self._writers[table].write_table(batch, row_group_size=max(1, batch.num_rows))
        self._written_rows[table] += batch.num_rows
        self._row_groups[table] += 1

    def flush(self) -> None:
        """Write every buffered row as one row group per table."""
        self._require_open()
        for table in self.tables:
            self._flush_table(table)
        self._pending = 0

    # ------------------------------------------------------------- finishing
    def close(self, manifest_updates: Mapping[str, Any] | None = None) -> Path:
        """Flush, write ``manifest.json``, fsync and rename to ``final_dir``.

        Parameters
        ----------
        manifest_updates
            Merged into the manifest (a ``timestamps`` mapping is merged key by key).

        Returns
        -------
        Path
            The published run directory.
        """
        self._require_open()
        try:
            self.flush()
            for w in self._writers.values():
                w.close()
            self._writers.clear()
            manifest = complete_manifest(
                self.manifest,
                manifest_updates,
                spec_hash=self.spec_hash,
                n_intervals=self.n_intervals,
                tables={
                    t: {
                        "file": file_name(t),
                        "rows": self._written_rows[t],
                        "row_groups": self._row_groups[t],
                    }
                    for t in self.tables
                },
                write_s=time.perf_counter() - self._t_start,
            )
            text = json.dumps(to_jsonable(manifest), indent=2, allow_nan=False)
            path = self.tmp_dir / MANIFEST_NAME
            with path.open("w", encoding="utf-8") as fh:
                fh.write(text + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            for t in self.tables:
                _fsync_path(self.tmp_dir / file_name(t))
            _fsync_path(self.tmp_dir)
        except BaseException:
            self.abort()
            raise
        try:
            self._publish()
        except RunDirectoryError:
            raise  # final_dir appeared meanwhile: the complete run is kept in tmp_dir
        except BaseException:
            self.abort()
            raise
        self.manifest = manifest
        self._state = "complete"
        return self.final_dir

    def _publish(self) -> None:
        final = self.final_dir
        (self.tmp_dir / HOST_MARKER).unlink(missing_ok=True)
        if final.exists() or final.is_symlink():
            if not self.overwrite:
                self._state = "aborted"
                raise RunDirectoryError(
                    f"run directory {final} appeared while writing; the complete run is kept in "
                    f"{self.tmp_dir}"
                )
            old = final.parent / f".{final.name}.old-{os.getpid()}"
            if old.exists():
                shutil.rmtree(old)
            os.replace(final, old)
            os.replace(self.tmp_dir, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.tmp_dir, final)
        _fsync_path(final.parent)

    def abort(self) -> None:
        """Discard everything: close the Parquet writers and remove the temporary directory."""
        if self._state == "complete":
            return
        for w in list(getattr(self, "_writers", {}).values()):
            try:
                w.close()
            except Exception:  # the directory goes anyway
                pass
        getattr(self, "_writers", {}).clear()
        shutil.rmtree(self.tmp_dir, ignore_errors=True)
        self._state = "aborted"

    # ------------------------------------------------------------- context manager
    def __enter__(self) -> RunWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.abort()
            return
        if self._state == "open":
            self.close()

    def __repr__(self) -> str:
        return (
            f"RunWriter({str(self.final_dir)!r}, state={self._state}, intervals={self.n_intervals})"
        )


__all__ = ["MANIFEST_NAME", "RunWriter", "clean_stale_temporaries", "temporary_dir"]
