"""Batch runs: a sweep file -> many run directories and an index, locally or on Dask.

Sweep file
----------
A TOML file::

    base = "ieee14.toml"                 # run spec, relative to the sweep file
    description = "..."                  # optional

    [sweep]                              # the cartesian product of these lists is the batch
    "mechanism.beta" = [0.05, 0.1]       # any spec field by its dotted name
    seed = [0, 1]                        # short for run.seed
    policy = ["fpamm", "equal"]          # short for run.policy

    [set]                                # optional: fixed overrides applied to every run
    "run.intervals" = 100

Unquoted dotted keys (``mechanism.beta = [...]``) mean the same. Field names are checked when
the sweep is loaded (unknown field, empty or duplicated list, missing base: one
:class:`~fpamm_opt.errors.InputError` naming it); values are checked per run, so an invalid
value fails that run only (it is recorded in the index, the others go on). Spec and mechanism
values are checked in the parent before anything is dispatched; what needs the network or the
solver (an unknown case, a missing solver) fails inside the run. Relative paths in
values are resolved against the base spec's directory, as in the base spec itself.

Runs
----
Each sweep point is one :class:`RunTask` with a stable ``run_id`` made of its position, the
swept values and a hash of them (``r0003-seed1-policy_equal-beta0.1-1a2b3c4d``), and one run
directory ``DIR/runs/<run_id>`` written by :func:`fpamm_opt.sim.run.run` (atomically).
:func:`execute_run` is the unit of work: it takes a plain dict (the resolved spec, the output
path, the run id), builds its own model and returns a plain dict, so it runs unchanged in a
local process pool (``spawn``) or on a Dask worker; no Pyomo object is ever pickled.
:class:`Executor` is the package's one local pool: ``fpamm compare`` runs its policy runs
(and their verification) through it too.

Resume
------
A run whose directory holds a complete manifest with the same spec hash is skipped
(``skipped-complete``); any other run is (re)run, replacing a stale directory only when the new
one is complete. Failures are recorded with their one-line error. ``DIR/index.parquet``
(:mod:`fpamm_opt.io.batch`) is rewritten atomically as runs finish. On ``KeyboardInterrupt``
or SIGTERM the pending runs are cancelled, the workers stopped (a run in progress removes its
temporary directory), the index written and :class:`BatchInterrupted` raised.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures as cf
import contextlib
import copy
import dataclasses
import hashlib
import itertools
import json
import math
import multiprocessing
import os
import re
import secrets
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fpamm_opt.errors import FpammError, InputError, one_line_error
from fpamm_opt.io.batch import (
    INDEX_NAME,
    RUNS_DIR,
    RunStatus,
    index_table,
    write_batch_meta,
    write_index,
)
from fpamm_opt.io.manifest import package_versions, utc_now
from fpamm_opt.io.reader import complete_spec_hash
from fpamm_opt.io.writer import clean_stale_temporaries
from fpamm_opt.mechanism.config import MechanismConfig
from fpamm_opt.scenario import ScenarioConfig
from fpamm_opt.sim.signals import terminate_as_interrupt
from fpamm_opt.spec import (
    SECTIONS,
    NetworkSpec,
    OutputsSpec,
    RunSection,
    RunSpec,
    SolverSection,
    read_toml,
    spec_hash,
)

#: Short names accepted for ``[sweep]`` and ``[set]`` keys.
ALIASES: dict[str, str] = {"seed": "run.seed", "policy": "run.policy"}

#: Keys allowed at the top of a sweep file.
TOP_KEYS: tuple[str, ...] = ("base", "description", "sweep", "set")

_FIELD_CLASSES: dict[str, type] = {
    "network": NetworkSpec,
    "scenario": ScenarioConfig,
    "mechanism": MechanismConfig,
    "solver": SolverSection,
    "run": RunSection,
    "outputs": OutputsSpec,
}

#: Fields holding a table, whose keys may be addressed one level deeper.
_TABLE_FIELDS: tuple[str, ...] = ("solver.options",)

#: Seconds between two index writes while runs finish (the last write is always done).
INDEX_WRITE_EVERY_S = 0.2

_RUN_LOCK = threading.Lock()

_Results = Generator[dict[str, Any], None, None]


# ------------------------------------------------------------------ sweep file
def _flatten(where: str, table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": v}}`` -> ``{"a.b": v}`` (quoted and unquoted dotted keys alike)."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(_flatten(where, value, name))
        elif name in out:
            raise InputError(f"{where}: field {name!r} is given twice")
        else:
            out[name] = value
    return out


def check_field(name: str, where: str = "sweep") -> tuple[str, ...]:
    """Validate a dotted spec field name and return its key path.

    Parameters
    ----------
    name
        ``section.key`` (``solver.options.<key>`` for a solver option), or an alias of
        :data:`ALIASES`.
    where
        Prefix of the error message.

    Raises
    ------
    InputError
        Naming the field and what is known.
    """
    full = ALIASES.get(name, name)
    path = tuple(full.split("."))
    if len(path) < 2 or any(not p.strip() for p in path):
        raise InputError(
            f"{where}: unknown field {name!r} (use section.key, e.g. mechanism.beta, "
            f"or {' / '.join(ALIASES)})"
        )
    section = path[0]
    if section not in SECTIONS:
        raise InputError(
            f"{where}: unknown field {name!r}: no section {section!r} "
            f"(known: {', '.join(SECTIONS)})"
        )
    known = sorted(f.name for f in dataclasses.fields(_FIELD_CLASSES[section]))
    if path[1] not in known:
        raise InputError(
            f"{where}: unknown field {name!r} (known {section} fields: {', '.join(known)})"
        )
    if len(path) > 2 and ".".join(path[:2]) not in _TABLE_FIELDS:
        raise InputError(f"{where}: unknown field {name!r}: {section}.{path[1]} is not a table")
    return path


def _set_path(data: dict[str, Any], path: Sequence[str], value: Any) -> None:
    node = data
    for part in path[:-1]:
        nxt = node.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise InputError(f"spec field {'.'.join(path)}: {part!r} is not a table")
        node = nxt
    node[path[-1]] = copy.deepcopy(value)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _value_text(value: Any) -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | float | str):
        text = str(value)
    else:
        text = _canonical(value)
    text = re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_")
    return text[:24] or "x"


def _full_name(name: str) -> str:
    return ALIASES.get(name, name)


def make_run_id(position: int, width: int, values: Mapping[str, Any]) -> str:
    """Readable, stable id of one sweep point.

    ``r<position>`` then ``<short name><value>`` for each swept field (``seed`` and ``policy``
    first; string values as ``<name>_<value>``), then 8 hex digits of the SHA-256 of the
    canonical JSON of the values by full field name, so ids are unique and do not depend on
    how the names were spelled.
    """
    rank = {"run.seed": 0, "run.policy": 1}
    names = sorted(values, key=lambda n: rank.get(_full_name(n), 2))
    parts = [f"r{position:0{width}d}"]
    for name in names:
        value = values[name]
        short = _full_name(name).split(".")[-1]
        sep = "_" if isinstance(value, str) else ""
        parts.append(f"{short}{sep}{_value_text(value)}")
    readable = "-".join(parts)[:96].rstrip("-")
    full = {_full_name(n): v for n, v in values.items()}
    digest = hashlib.sha256(_canonical(full).encode("utf-8")).hexdigest()[:8]
    return f"{readable}-{digest}"


@dataclass(frozen=True)
class RunTask:
    """One point of a sweep.

    Attributes
    ----------
    position : int
        Position in the cartesian product (0-based).
    run_id : str
        See :func:`make_run_id`.
    values : dict
        Swept field name (as written in the sweep file) -> value.
    spec : dict or None
        The resolved spec (``RunSpec.to_dict()``); ``None`` when the point is invalid.
    spec_hash : str or None
        :func:`fpamm_opt.spec.spec_hash` of the resolved spec.
    seed, policy
        The run's seed and policy (as far as known for an invalid point).
    source : str or None
        The base spec file (recorded as the run's source).
    error : str or None
        Why the point is invalid (its run fails without being started).
    """

    position: int
    run_id: str
    values: dict[str, Any] = field(hash=False)
    spec: dict[str, Any] | None = field(hash=False)
    spec_hash: str | None
    seed: int | None
    policy: str | None
    source: str | None
    error: str | None = None

    def payload(self, runs_dir: Path | str, overwrite: bool = False) -> dict[str, Any]:
        """The plain dict :func:`execute_run` takes (picklable, no Pyomo objects)."""
        return {
            "run_id": self.run_id,
            "spec": self.spec,
            "spec_hash": self.spec_hash,
            "source": self.source,
            "out": str(Path(runs_dir) / self.run_id),
            "overwrite": bool(overwrite),
        }


@dataclass(frozen=True)
class Sweep:
    """A loaded sweep file (see the module docstring).

    Attributes
    ----------
    path : Path
        The sweep file.
    base : Path
        The base run spec.
    base_data : dict
        The parsed base spec.
    fields : tuple of (name, values)
        Swept fields in file order (names as written).
    fixed : tuple of (name, value)
        The ``[set]`` overrides.
    description : str or None
    """

    path: Path
    base: Path
    base_data: dict[str, Any] = field(hash=False)
    fields: tuple[tuple[str, tuple[Any, ...]], ...]
    fixed: tuple[tuple[str, Any], ...] = ()
    description: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        """Swept field names (the index's swept columns)."""
        return tuple(name for name, _ in self.fields)

    @property
    def size(self) -> int:
        """Number of runs (product of the list lengths)."""
        return math.prod(len(values) for _, values in self.fields)

    def tasks(self) -> list[RunTask]:
        """Every run of the sweep, in cartesian-product order (last field fastest)."""
        width = max(4, len(str(self.size - 1)))
        base_dir = self.base.resolve().parent
        data0 = copy.deepcopy(self.base_data)
        for name, value in self.fixed:
            _set_path(data0, check_field(name, "[set]"), value)
        paths = [check_field(name) for name in self.names]
        out: list[RunTask] = []
        for position, combo in enumerate(itertools.product(*(v for _, v in self.fields))):
            values = dict(zip(self.names, combo, strict=True))
            data = copy.deepcopy(data0)
            for path, value in zip(paths, combo, strict=True):
                _set_path(data, path, value)
            run: dict[str, Any] = data["run"] if isinstance(data.get("run"), dict) else {}
            seed, policy = run.get("seed", RunSection.seed), run.get("policy", RunSection.policy)
            seed = seed if isinstance(seed, int) and not isinstance(seed, bool) else None
            policy = None if policy is None else str(policy)
            spec: dict[str, Any] | None = None
            h: str | None = None
            error: str | None = None
            try:
                resolved = RunSpec.from_dict(data, base_dir=base_dir, source=str(self.base))
                MechanismConfig.from_dict(resolved.mechanism)  # values too, before any worker
                spec, h = resolved.to_dict(), spec_hash(resolved)
                seed, policy = int(resolved.run.seed), str(resolved.run.policy)
            except FpammError as exc:
                error = one_line_error(exc)
            out.append(
                RunTask(
                    position,
                    make_run_id(position, width, values),
                    values,
                    spec,
                    h,
                    seed,
                    policy,
                    str(self.base),
                    error,
                )
            )
        return out

    def describe(self) -> dict[str, Any]:
        """JSON-friendly description (written to ``DIR/batch.json``)."""
        return {
            "sweep_file": str(self.path.resolve()),
            "base": str(self.base.resolve()),
            "description": self.description,
            "sweep": {name: list(values) for name, values in self.fields},
            "set": dict(self.fixed),
            "n_runs": self.size,
        }


def load_sweep(path: Path | str) -> Sweep:
    """Read and check a sweep file.

    Parameters
    ----------
    path
        The sweep TOML file.

    Returns
    -------
    Sweep

    Raises
    ------
    InputError
        Missing or unreadable file, missing base, unknown top-level key or field, a swept
        value that is not a non-empty list, a duplicated value, a field both swept and set.
    """
    p = Path(path)
    where = f"sweep {p}"
    doc = read_toml(p)
    for key in doc:
        if key not in TOP_KEYS:
            hint = " (put swept fields under [sweep])" if key in ALIASES or key in SECTIONS else ""
            raise InputError(f"{where}: unknown key {key!r}{hint} (known: {', '.join(TOP_KEYS)})")
    base_name = doc.get("base")
    if not isinstance(base_name, str) or not base_name.strip():
        raise InputError(f'{where}: missing base = "<run spec>.toml" (relative to the sweep file)')
    base = Path(base_name)
    if not base.is_absolute():
        base = p.parent / base
    if not base.is_file():
        raise InputError(f"{where}: base spec {base_name!r} not found (looked for {base})")
    base_data = read_toml(base)
    description = doc.get("description")
    if description is not None and not isinstance(description, str):
        raise InputError(f"{where}: description must be a string, got {description!r}")
    raw_sweep = doc.get("sweep")
    if not isinstance(raw_sweep, Mapping) or not raw_sweep:
        raise InputError(f"{where}: missing [sweep] table (field = [values, ...])")
    raw_set = doc.get("set", {})
    if not isinstance(raw_set, Mapping):
        raise InputError(f"{where}: [set] must be a table, got {raw_set!r}")
    sweep = _flatten(f"{where} [sweep]", raw_sweep)
    fixed = _flatten(f"{where} [set]", raw_set)
    seen: dict[tuple[str, ...], str] = {}
    fields_: list[tuple[str, tuple[Any, ...]]] = []
    for name, values in sweep.items():
        field_path = check_field(name, f"{where} [sweep]")
        if field_path in seen:
            raise InputError(
                f"{where} [sweep]: {name!r} and {seen[field_path]!r} are the same field"
            )
        seen[field_path] = name
        if not isinstance(values, list):
            raise InputError(f"{where} [sweep]: {name!r} must be a list of values, got {values!r}")
        if not values:
            raise InputError(f"{where} [sweep]: {name!r} has an empty list of values")
        texts = [_canonical(v) for v in values]
        if len(set(texts)) != len(texts):
            dup = next(v for v, t in zip(values, texts, strict=True) if texts.count(t) > 1)
            raise InputError(f"{where} [sweep]: {name!r} lists {dup!r} more than once")
        fields_.append((name, tuple(values)))
    fixed_items: list[tuple[str, Any]] = []
    for name, value in fixed.items():
        if check_field(name, f"{where} [set]") in seen:
            raise InputError(f"{where}: {name!r} is both swept and set")
        fixed_items.append((name, value))
    return Sweep(p, base, base_data, tuple(fields_), tuple(fixed_items), description)


# ------------------------------------------------------------------ one run
def execute_run(task: Mapping[str, Any]) -> dict[str, Any]:
    """Run one sweep point; the unit of work of local and Dask batches and of comparisons.

    Parameters
    ----------
    task
        :meth:`RunTask.payload`: ``run_id``, ``spec`` (resolved spec dict), ``spec_hash``,
        ``source``, ``out`` (the run directory to create), ``overwrite``.

    Returns
    -------
    dict
        ``run_id``, ``status`` (``complete`` or ``failed``), ``error`` (one line or ``None``),
        ``wall_s``, ``spec_hash``, ``host``, ``pid``, and ``traceback`` for unexpected errors.
        Errors are returned, not raised (``KeyboardInterrupt`` propagates).
    """
    t0 = time.perf_counter()
    out: dict[str, Any] = {
        "run_id": task.get("run_id"),
        "status": RunStatus.FAILED.value,
        "error": None,
        "spec_hash": task.get("spec_hash"),
        "host": os.uname().nodename if hasattr(os, "uname") else None,
        "pid": os.getpid(),
    }
    try:
        from fpamm_opt.sim.run import run

        if task.get("spec") is None:
            raise InputError(f"run {task.get('run_id')}: no valid spec")
        # One run at a time per process: Pyomo is not thread-safe (Dask threads).
        with _RUN_LOCK:
            spec = RunSpec.from_dict(task["spec"], source=task.get("source"))
            out["spec_hash"] = spec_hash(spec)
            run(spec, Path(task["out"]), progress=False, overwrite=bool(task.get("overwrite")))
        out["status"] = RunStatus.COMPLETE.value
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:
        out["error"] = one_line_error(exc)
        if not isinstance(exc, FpammError):
            out["traceback"] = traceback.format_exc(limit=20)
    out["wall_s"] = time.perf_counter() - t0
    return out


def _failed(run_id: str, exc: BaseException) -> dict[str, Any]:
    """The result of a job whose worker raised ``exc`` (kept under ``exception``)."""
    return {
        "run_id": run_id,
        "status": RunStatus.FAILED.value,
        "error": one_line_error(exc),
        "wall_s": None,
        "exception": exc,
    }


# ------------------------------------------------------------------ executors
#: Seconds a stopped pool gets for its runs in progress to abort before its workers are killed.
STOP_GRACE_S = 60.0

_WORKER = {"busy": False, "stop": False}

#: A job function: a plain dict with a ``run_id`` in, a plain dict with that ``run_id`` out.
Job = Callable[[Mapping[str, Any]], dict[str, Any]]


def _on_worker_sigterm(signum: int, frame: Any) -> None:
    _WORKER["stop"] = True
    if _WORKER["busy"]:
        raise KeyboardInterrupt(f"signal {signum}")


def _fast_exit() -> None:
    """Leave a pool worker without the interpreter teardown.

    Tearing down the solver and case libraries takes seconds; every file a worker writes is
    already fsynced and renamed by the run writer when its task returns, so nothing is lost.
    """
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(0)


#: Seconds between a pool worker's checks that its parent is alive, and the grace an orphaned
#: worker gives its run to abort (its writer removes the temporary directory) before leaving.
ORPHAN_POLL_S = 1.0
ORPHAN_GRACE_S = 10.0


def _leave_when_orphaned(parent: int) -> None:
    """Watch the parent process; once it is gone (killed before it could stop the pool),
    stop this worker's run as SIGTERM would, then leave.

    Idle workers only record a SIGTERM and wait for the parent to shut the pool down; without
    this watch they would outlive a parent that was killed (``fpamm compare`` stopped by a
    SIGTERM to its own PID left two idle workers for half an hour).
    """
    while os.getppid() == parent:
        time.sleep(ORPHAN_POLL_S)
    os.kill(os.getpid(), signal.SIGTERM)
    deadline = time.monotonic() + ORPHAN_GRACE_S
    while _WORKER["busy"] and time.monotonic() < deadline:
        time.sleep(0.1)
    _fast_exit()


def _pool_init() -> None:
    """Pool workers ignore SIGINT (the parent stops them); SIGTERM stops the worker's run; a
    worker whose parent dies stops and leaves (:func:`_leave_when_orphaned`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_worker_sigterm)
    atexit.register(_fast_exit)
    watch = threading.Thread(
        target=_leave_when_orphaned, args=(os.getppid(),), name="orphan-watch", daemon=True
    )
    watch.start()


def _pool_entry(fn: Job, task: Mapping[str, Any]) -> dict[str, Any]:
    """``fn(task)`` in a pool worker.

    After SIGTERM the job in progress aborts (a run's writer removes its temporary directory)
    and this worker returns every task it still gets as ``pending`` without starting it, so
    the pool can be shut down cleanly.
    """
    pending = {
        "run_id": task.get("run_id"),
        "status": RunStatus.PENDING.value,
        "error": None,
        "wall_s": None,
    }
    try:
        _WORKER["busy"] = True
        if _WORKER["stop"]:
            return pending
        return fn(task)
    except KeyboardInterrupt:  # raised by our SIGTERM handler or by the run loop's own
        _WORKER["stop"] = True
        return pending
    finally:
        _WORKER["busy"] = False


class Executor:
    """The package's one local executor: ``spawn`` worker processes, or this process.

    Batches run their sweep points and comparisons their policy runs (then the runs'
    verification) through it. A job is a plain dict with a ``run_id``; the job function is a
    module-level function (pickled by name) that returns a plain dict with the same
    ``run_id``; nothing Pyomo crosses a process boundary.

    Parameters
    ----------
    workers : int
        Worker processes; ``0`` runs every job in this process, one after the other (errors
        then propagate as they are raised).
    """

    def __init__(self, workers: int) -> None:
        self.workers = int(workers)
        self._pool: cf.ProcessPoolExecutor | None = None

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ensure_pool(self) -> cf.ProcessPoolExecutor:
        if self._pool is None:
            ctx = multiprocessing.get_context("spawn")
            self._pool = cf.ProcessPoolExecutor(
                max_workers=self.workers, mp_context=ctx, initializer=_pool_init
            )
        return self._pool

    def map(self, fn: Job, jobs: Sequence[Mapping[str, Any]]) -> _Results:
        """Yield ``fn(job)`` for every job, in the order they finish.

        A job whose worker raised (a worker that died, an error that ``fn`` lets through)
        yields :func:`_failed`'s result. Leaving the generator early (Ctrl-C, SIGTERM, an
        error) cancels the jobs not started and stops the workers: see :meth:`_stop`.
        """
        if self.workers == 0:
            for job in jobs:
                yield fn(job)
            return
        pool = self._ensure_pool()
        futures = {pool.submit(_pool_entry, fn, job): str(job["run_id"]) for job in jobs}
        finished = False
        try:
            for fut in cf.as_completed(futures):
                try:
                    yield fut.result()
                except Exception as exc:  # a worker that died (BrokenProcessPool), pickling...
                    yield _failed(futures[fut], exc)
            finished = True
        finally:
            if not finished:
                self._stop(list(futures))

    def _stop(self, futures: list[cf.Future[dict[str, Any]]]) -> None:
        """Cancel ``futures`` and stop the workers; the executor is then closed.

        SIGTERM makes a run in progress abort its writer (no partial run directory) and the
        worker start nothing more; a worker stuck beyond :data:`STOP_GRACE_S` is killed.
        """
        pool, self._pool = self._pool, None
        if pool is None:
            return
        for fut in futures:
            fut.cancel()
        procs = list((getattr(pool, "_processes", None) or {}).values())
        for proc in procs:
            with contextlib.suppress(Exception):
                proc.terminate()
        _, stuck = cf.wait(futures, timeout=STOP_GRACE_S)
        if stuck:
            for proc in procs:
                with contextlib.suppress(Exception):
                    proc.kill()
        pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        """Wait for the workers to exit (nothing is pending once every map has finished)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)


def connect_scheduler(address: str) -> Any:
    """A :class:`distributed.Client` connected to ``address`` (``tcp://host:port``).

    Raises
    ------
    InputError
        Dask distributed is not installed, the address is malformed or nothing answers there
        within Dask's connect timeout.
    """
    try:
        from distributed import Client
        from distributed.comm import get_address_host_port
    except ImportError:
        raise InputError(
            "--scheduler needs dask.distributed: pip install 'fpamm-opt[dask]'"
        ) from None
    try:
        get_address_host_port(address)
    except (ValueError, TypeError) as exc:
        raise InputError(f"bad Dask scheduler address {address!r}: {exc}") from None
    try:
        return Client(address, set_as_default=False)  # connect timeout: Dask's config
    except (OSError, TimeoutError, ValueError) as exc:
        raise InputError(
            f"cannot connect to the Dask scheduler {address!r}: {one_line_error(exc)}"
        ) from None


def _run_dask(payloads: Sequence[dict[str, Any]], client: Any) -> _Results:
    from distributed import as_completed

    finished = False
    futures: dict[Any, str] = {}
    try:
        token = secrets.token_hex(4)
        for p in payloads:
            fut = client.submit(execute_run, p, key=f"fpamm-{p['run_id']}-{token}", pure=False)
            futures[fut] = p["run_id"]
        for fut in as_completed(list(futures), loop=client.loop):
            try:
                yield fut.result()
            except (Exception, asyncio.CancelledError) as exc:  # KilledWorker, import error...
                yield _failed(futures[fut], exc)
        finished = True
    finally:
        if not finished:
            with contextlib.suppress(Exception):
                client.cancel(list(futures))


# ------------------------------------------------------------------ the batch
@dataclass(frozen=True)
class BatchResult:
    """What a batch did.

    Attributes
    ----------
    out_dir, index_path : Path
    n_total : int
        Runs in the sweep.
    n_complete : int
        Runs completed by this invocation.
    n_skipped : int
        Runs already complete (same spec hash), not re-run.
    n_failed : int
    n_pending : int
        Runs not finished (only when interrupted).
    wall_s : float
    interrupted : bool
    failed : tuple of (run_id, error)
    """

    out_dir: Path
    index_path: Path
    n_total: int
    n_complete: int
    n_skipped: int
    n_failed: int
    n_pending: int
    wall_s: float
    interrupted: bool = False
    failed: tuple[tuple[str, str], ...] = ()

    @property
    def ok(self) -> bool:
        """True when every run is complete (run now or before)."""
        return self.n_complete + self.n_skipped == self.n_total

    def summary(self) -> str:
        """One line: counts, time and where the index is."""
        return (
            f"{self.n_total} runs: {self.n_complete} complete, {self.n_skipped} skipped "
            f"(already complete), {self.n_failed} failed"
            + (f", {self.n_pending} not run (interrupted)" if self.n_pending else "")
            + f" in {self.wall_s:.1f} s; index: {self.index_path}"
        )


class BatchInterrupted(KeyboardInterrupt):
    """A batch stopped by Ctrl-C or SIGTERM; :attr:`result` says what was finished."""

    def __init__(self, result: BatchResult) -> None:
        super().__init__("batch interrupted")
        self.result = result


class _Index:
    """The index rows of a batch and their throttled atomic writes."""

    def __init__(self, out_dir: Path, names: Sequence[str], rows: list[dict[str, Any]]) -> None:
        self.out_dir, self.names, self.rows = out_dir, list(names), rows
        self.by_id = {r["run_id"]: r for r in rows}
        self.last = -math.inf
        self.dirty = True

    def update(self, result: Mapping[str, Any]) -> dict[str, Any]:
        row = self.by_id[result["run_id"]]
        row["status"] = result.get("status", RunStatus.FAILED.value)
        row["error"] = result.get("error")
        if row["status"] == RunStatus.PENDING.value:  # its worker was stopped from outside
            row["status"] = RunStatus.FAILED.value
            row["error"] = "the run was stopped: its worker process received SIGTERM"
        row["wall_s"] = result.get("wall_s")
        if result.get("spec_hash"):
            row["spec_hash"] = result["spec_hash"]
        self.dirty = True
        return row

    def write(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.dirty and (force or now - self.last >= INDEX_WRITE_EVERY_S):
            write_index(self.out_dir, index_table(self.rows, self.names))
            self.last, self.dirty = now, False

    def count(self, status: RunStatus) -> int:
        return sum(r["status"] == status.value for r in self.rows)


def _default_workers(n: int) -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, n))


def _drive(
    sw: Sweep,
    out: Path,
    rows: list[dict[str, Any]],
    todo: list[dict[str, Any]],
    workers: int | None,
    scheduler: str | None,
    client: Any,
    progress: bool | None,
) -> tuple[_Index, bool]:
    """Write the sweep and the first index, run ``todo``, keep the index current.

    Returns the index and whether the batch was interrupted (Ctrl-C or SIGTERM).
    """
    n_total = len(rows)
    meta = sw.describe()
    meta.update(
        out_dir=str(out),
        started_utc=utc_now(),
        scheduler=scheduler,
        workers=workers,
        fpamm_opt=package_versions({"v": "fpamm-opt"})["v"],
    )
    write_batch_meta(out, meta)
    index = _Index(out, sw.names, rows)
    index.write(force=True)

    show = sys.stderr.isatty() if progress is None else bool(progress)
    bar = None
    if show:
        from tqdm import tqdm

        bar = tqdm(
            total=n_total,
            initial=n_total - len(todo),
            desc="batch",
            unit="run",
            file=sys.stderr,
            dynamic_ncols=True,
        )

    def postfix() -> None:
        if bar is not None:
            bar.set_postfix(
                done=index.count(RunStatus.COMPLETE),
                failed=index.count(RunStatus.FAILED),
                skipped=index.count(RunStatus.SKIPPED),
                refresh=False,
            )

    postfix()
    interrupted = False
    try:
        with terminate_as_interrupt():
            if todo:
                with contextlib.ExitStack() as stack:
                    if client is not None:
                        results = _run_dask(todo, client)
                    else:
                        n = _default_workers(len(todo)) if workers is None else workers
                        ex = stack.enter_context(Executor(min(n, len(todo))))
                        results = ex.map(execute_run, todo)
                    for res in stack.enter_context(contextlib.closing(results)):
                        index.update(res)
                        index.write()
                        if bar is not None:
                            postfix()
                            bar.update(1)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if bar is not None:
            bar.close()
        index.write(force=True)
    return index, interrupted


def _index_rows(
    tasks: Sequence[RunTask], runs_dir: Path
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The index row of every task (failed, skipped when already complete, else pending) and
    the payloads of the runs to do."""
    rows: list[dict[str, Any]] = []
    todo: list[dict[str, Any]] = []
    for task in tasks:
        run_dir = runs_dir / task.run_id
        row: dict[str, Any] = {
            "run_id": task.run_id,
            **task.values,
            "seed": task.seed,
            "policy": task.policy,
            "path": f"{RUNS_DIR}/{task.run_id}",
            "wall_s": None,
            "error": None,
            "spec_hash": task.spec_hash,
        }
        if task.error is not None:
            row.update(status=RunStatus.FAILED.value, error=task.error)
        elif task.spec_hash is not None and complete_spec_hash(run_dir) == task.spec_hash:
            row["status"] = RunStatus.SKIPPED.value
        else:
            row["status"] = RunStatus.PENDING.value
            todo.append(task.payload(runs_dir, overwrite=run_dir.exists()))
        rows.append(row)
    return rows, todo


def run_batch(
    sweep: Sweep | Path | str,
    out_dir: Path | str,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool | None = None,
) -> BatchResult:
    """Run (or resume) every run of a sweep.

    Parameters
    ----------
    sweep
        A :class:`Sweep` or the path of a sweep file.
    out_dir
        The batch directory (``index.parquet``, ``batch.json``, ``runs/<run_id>/``).
    workers
        Local worker processes (``spawn``); default ``min(CPUs, runs to do)``; ``0`` runs in
        this process, one after the other. Not used with ``scheduler``.
    scheduler
        Address of a Dask scheduler (``tcp://host:8786``); runs go to its workers, which need
        the package installed and the output directory reachable at the same path.
    progress
        tqdm bar over runs on stderr (default: when stderr is a terminal).

    Returns
    -------
    BatchResult

    Raises
    ------
    InputError
        Bad sweep, bad ``workers``, both ``workers`` and ``scheduler``, no Dask scheduler.
    BatchInterrupted
        On Ctrl-C or SIGTERM, after cancelling pending runs and writing the index.
    """
    sw = sweep if isinstance(sweep, Sweep) else load_sweep(sweep)
    if workers is not None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise InputError(f"workers must be an integer >= 0, got {workers!r}")
        if scheduler:
            raise InputError("give either a number of local workers or a Dask scheduler")
    t0 = time.perf_counter()
    out = Path(out_dir).resolve()
    runs_dir = out / RUNS_DIR
    runs_dir.mkdir(parents=True, exist_ok=True)
    if not scheduler:
        # Temporaries are named by pid, which only means something on this host.
        clean_stale_temporaries(runs_dir)
    tasks = sw.tasks()
    rows, todo = _index_rows(tasks, runs_dir)
    client = connect_scheduler(scheduler) if scheduler and todo else None
    try:
        index, interrupted = _drive(sw, out, rows, todo, workers, scheduler, client, progress)
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
    result = BatchResult(
        out_dir=out,
        index_path=out / INDEX_NAME,
        n_total=len(tasks),
        n_complete=index.count(RunStatus.COMPLETE),
        n_skipped=index.count(RunStatus.SKIPPED),
        n_failed=index.count(RunStatus.FAILED),
        n_pending=index.count(RunStatus.PENDING),
        wall_s=time.perf_counter() - t0,
        interrupted=interrupted,
        failed=tuple(
            (r["run_id"], str(r["error"])) for r in rows if r["status"] == RunStatus.FAILED.value
        ),
    )
    if interrupted:
        raise BatchInterrupted(result)
    return result


__all__ = [
    "ALIASES",
    "BatchInterrupted",
    "BatchResult",
    "Executor",
    "RunTask",
    "Sweep",
    "check_field",
    "execute_run",
    "load_sweep",
    "make_run_id",
    "one_line_error",
    "run_batch",
]
