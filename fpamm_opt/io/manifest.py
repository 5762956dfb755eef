"""Helpers to build a run manifest (``manifest.json``).

Role
----
The manifest records what a run was: the resolved spec and its hash, seed, policy, package
versions (read with :mod:`importlib.metadata`, so nothing heavy is imported; in particular
Pyomo is never imported here), the Python version and platform, and timestamps. The run loop
builds it with :func:`build_manifest` at the start (``status: "running"``) and passes its
timings and summaries to :meth:`fpamm_opt.io.writer.RunWriter.close`, which sets
``status: "complete"``.

No Pyomo here.
"""

from __future__ import annotations

import datetime as _dt
import enum
import math
import platform
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

#: Version of the manifest layout. 2: the ``intervals.status`` of a scarce interval marks
#: ``final-rule[k]=maxmin`` when the final clear replaced tier ``k``'s QP by the max-min LPs
#: (version 1 recorded the fallback only as a note of *some* clear of the fixed point).
#: 3: the allocator holds earlier tiers exactly at their allocation (widened only where a solve
#: calls that infeasible, noted ``widened[...]``), and each QP tier keeps one solve path per
#: interval (a change restarts the fixed point, noted ``fixed-point-restarted:path-change``).
MANIFEST_VERSION = 3

#: Distribution names whose versions every manifest records (key: the import-style name).
PACKAGES: dict[str, str] = {
    "fpamm_opt": "fpamm-opt",
    "numpy": "numpy",
    "scipy": "scipy",
    "pandas": "pandas",
    "pyarrow": "pyarrow",
    "pyomo": "pyomo",
    "highspy": "highspy",
    "pandapower": "pandapower",
}


def package_versions(packages: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """Installed versions by :mod:`importlib.metadata` (``None`` when not installed)."""
    out: dict[str, str | None] = {}
    for key, dist in (packages or PACKAGES).items():
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[key] = None
    return out


def environment_info() -> dict[str, str]:
    """Python version and implementation, platform, machine and host name."""
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "host": platform.node(),
    }


def utc_now() -> str:
    """Current UTC time, ISO 8601 with seconds and a ``Z`` suffix."""
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def to_jsonable(value: Any) -> Any:
    """Recursively convert to JSON-safe values.

    NumPy scalars and arrays become Python numbers and lists, enums their values, paths
    strings; non-finite floats become ``None`` (strict JSON has no NaN).
    """
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value)
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [to_jsonable(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


def build_manifest(
    spec: Mapping[str, Any],
    spec_hash: str,
    *,
    seed: int,
    policy: str,
    network: Mapping[str, Any] | None = None,
    scenario: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest of a run at its start.

    Parameters
    ----------
    spec
        The resolved spec as a plain dict (``RunSpec.to_dict()``).
    spec_hash
        ``fpamm_opt.spec.spec_hash`` of it.
    seed, policy
        The run's seed and policy.
    network, scenario
        Optional summaries (``NetworkData.summary()``, ``Scenario.describe()``).
    extra
        Anything else (merged last, e.g. solver name/version, ``lower_bounds_relaxed``).

    Returns
    -------
    dict
        JSON-safe; ``status`` is ``"running"``.
    """
    manifest: dict[str, Any] = {
        "manifest_version": MANIFEST_VERSION,
        "status": "running",
        "spec_hash": spec_hash,
        "seed": int(seed),
        "policy": str(policy.value if isinstance(policy, enum.Enum) else policy),
        "spec": dict(spec),
        "versions": package_versions(),
        "environment": environment_info(),
        "timestamps": {"created_utc": utc_now()},
    }
    if network is not None:
        manifest["network"] = dict(network)
    if scenario is not None:
        manifest["scenario"] = dict(scenario)
    if extra:
        manifest.update(extra)
    return to_jsonable(manifest)


def complete_manifest(
    manifest: Mapping[str, Any],
    updates: Mapping[str, Any] | None,
    *,
    spec_hash: str,
    n_intervals: int,
    tables: Mapping[str, Mapping[str, Any]],
    write_s: float,
) -> dict[str, Any]:
    """The manifest of a finished run: ``manifest`` with ``updates`` merged (a ``timestamps``
    mapping key by key, ``finished_utc`` added), ``status: "complete"``, the spec hash, the
    number of intervals, what each table holds and the time spent storing them."""
    out = dict(manifest)
    extra = dict(updates or {})
    stamps = dict(out.get("timestamps") or {})
    stamps.update(extra.pop("timestamps", None) or {})
    stamps["finished_utc"] = utc_now()
    out.update(extra)
    out.update(
        {
            "status": "complete",
            "spec_hash": spec_hash,
            "n_intervals": n_intervals,
            "timestamps": stamps,
            "tables": {t: dict(info) for t, info in tables.items()},
            "write_s": write_s,
        }
    )
    return out


__all__ = [
    "MANIFEST_VERSION",
    "PACKAGES",
    "build_manifest",
    "complete_manifest",
    "environment_info",
    "package_versions",
    "to_jsonable",
    "utc_now",
]
