"""Helpers to build a run manifest (``manifest.json``).

Role
----
The manifest records what a run was: the resolved spec and its hash, seed, policy, package
versions (read with :mod:`importlib.metadata`, so nothing heavy is imported; in particular
Pyomo is never imported here), the Python version and platform, and timestamps. The run loop
builds it with :func:`build_manifest` at the start (``status: "running"``) and passes its
timings and summaries to :meth:`fpamm_opt.io.writer.RunWriter.close`, which sets
``status: "complete"``.

Reading: :meth:`Manifest.from_dict` turns the JSON of any manifest version written so far
(:data:`READABLE_VERSIONS`; a manifest without ``manifest_version`` is version 1) into one
frozen :class:`Manifest`, the fields the verifier reads, typed, each found where its version
(or a hand-built run) put it. A manifest it cannot read fails with one line naming the
version (:class:`~fpamm_opt.errors.ManifestError`).

No Pyomo here.
"""

from __future__ import annotations

import datetime as _dt
import enum
import math
import platform
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from fpamm_opt.errors import ManifestError

#: Version of the manifest layout. 2: the ``intervals.status`` of a scarce interval marks
#: ``final-rule[k]=maxmin`` when the final clear replaced tier ``k``'s QP by the max-min LPs
#: (version 1 recorded the fallback only as a note of *some* clear of the fixed point).
#: 3: the allocator holds earlier tiers exactly at their allocation (widened only where a solve
#: calls that infeasible, noted ``widened[...]``), and each QP tier keeps one solve path per
#: interval (a change restarts the fixed point, noted ``fixed-point-restarted:path-change``).
#: 4: ``intervals.status`` is a fixed vocabulary (:class:`~fpamm_opt.mechanism.types.
#: IntervalStatus`: ``optimal``, ``held``, ``retried``, ``solve-error``); every detail the
#: earlier ``;``-joined notes carried is a row of the ``events`` table.
MANIFEST_VERSION = 4

#: Manifest versions :meth:`Manifest.from_dict` reads.
READABLE_VERSIONS: tuple[int, ...] = (1, 2, 3, 4)

#: First version whose interval status marks the tiers whose final clear used the max-min
#: LPs (``final-rule[k]=maxmin``, :data:`~fpamm_opt.mechanism.types.FINAL_RULE_RE`).
FINAL_RULE_VERSION = 2

#: Clearing claimed by a ``mechanism_resolved`` that predates the keys (the allocator was
#: then max-min and served each tier's maximum).
DEFAULT_RULE = "maxmin"
DEFAULT_TIER_ENERGY = "max"

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


def _get(data: Any, *path: str) -> Any:
    cur = data
    for key in path:
        if not isinstance(cur, Mapping) or key not in cur:
            return None
        cur = cur[key]
    return cur


def _first(data: Mapping[str, Any], *paths: tuple[str, ...]) -> Any:
    for p in paths:
        v = _get(data, *p)
        if v is not None:
            return v
    return None


def _version(data: Mapping[str, Any]) -> int:
    raw = data.get("manifest_version", 1)
    try:
        version = int(raw)
        ok = not isinstance(raw, bool) and float(raw) == version
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ManifestError(f"manifest_version {raw!r} is not a version number")
    if version not in READABLE_VERSIONS:
        newest = max(READABLE_VERSIONS)
        hint = (
            "written by a newer fpamm-opt; upgrade to read it"
            if version > newest
            else "not a version fpamm-opt ever wrote"
        )
        raise ManifestError(
            f"manifest version {version} cannot be read (this fpamm-opt reads versions "
            f"{min(READABLE_VERSIONS)}-{newest}): {hint}"
        )
    return version


@dataclass(frozen=True)
class Manifest:
    """The fields of a run's ``manifest.json`` that the verifier reads, typed.

    Built by :meth:`from_dict` from any readable version; absent fields get the defaults
    below (those of ``docs/design.md``; hand-built runs omit most of them).

    Attributes
    ----------
    version : int
        ``manifest_version`` (1 when absent).
    status, spec_hash : str or None
        ``complete`` for a finished run; the hash of the resolved spec.
    seed : int or None
        The run's seed.
    policy : str
        ``policy``, else ``spec.run.policy``, ``spec.policy``, ``spec.mechanism.policy``
        (default ``fpamm``).
    mechanism : mapping
        ``spec.mechanism`` overlaid by ``mechanism_resolved`` (the run loop's full
        configuration); read by the ``mechanism_*`` accessors below.
    resolved : bool
        The manifest has ``mechanism_resolved`` (every run-loop manifest does).
    rule : str or None
        The within-tier rule claimed: ``mechanism_resolved.rule`` (default ``maxmin``), else
        ``spec.mechanism.rule`` or a top-level ``rule``; None when nothing names one.
    tier_energy : str
        ``free`` or ``max`` (default ``max``: older versions always served a tier's maximum).
    network : mapping or None
        ``spec.network``, else ``network``: the first with a ``case``.
    tier_targets : object
        ``spec.mechanism.targets``, else ``spec.scenario.tier_targets`` (as written).
    cost_model : str
        ``cost_model``, ``spec.cost_model`` or ``spec.solver.cost_model`` (default
        ``linear``).
    checks : tuple of str or None
        The checks the run loop asked for (names or prefixes).
    weak_node : int or None
        ``spec.report.weak_node``, else ``spec.scenario.weak_node``.
    interval_h : float
        ``interval_hours``, else ``spec.scenario.interval_minutes / 60`` (default 0.5).
    versions : mapping
        Package versions (``fpamm_opt``, ``numpy``, ...).
    scenario : mapping
        ``spec.scenario``.
    """

    version: int = MANIFEST_VERSION
    status: str | None = None
    spec_hash: str | None = None
    seed: int | None = None
    policy: str = "fpamm"
    mechanism: Mapping[str, Any] = field(default_factory=dict)
    resolved: bool = False
    rule: str | None = None
    tier_energy: str = DEFAULT_TIER_ENERGY
    network: Mapping[str, Any] | None = None
    tier_targets: Any = None
    cost_model: str = "linear"
    checks: tuple[str, ...] | None = None
    weak_node: int | None = None
    interval_h: float = 0.5
    versions: Mapping[str, Any] = field(default_factory=dict)
    scenario: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        """Read a manifest of any version in :data:`READABLE_VERSIONS`.

        Raises
        ------
        ManifestError
            One line naming the version when it is not one this package reads.
        """
        version = _version(data)
        mech = dict(_get(data, "spec", "mechanism") or {})
        spec_mech = dict(mech)
        resolved = _get(data, "mechanism_resolved")
        mech.update(resolved or {})
        if isinstance(resolved, Mapping):
            rule = resolved.get("rule", DEFAULT_RULE)
            energy = resolved.get("tier_energy", DEFAULT_TIER_ENERGY)
        else:
            rule = spec_mech.get("rule", data.get("rule"))
            energy = spec_mech.get("tier_energy", DEFAULT_TIER_ENERGY)
        network = None
        for section in (_get(data, "spec", "network"), _get(data, "network")):
            if isinstance(section, Mapping) and section.get("case") is not None:
                network = dict(section)
                break
        checks = data.get("checks")
        weak = _first(data, ("spec", "report", "weak_node"), ("spec", "scenario", "weak_node"))
        hours = data.get("interval_hours")
        if hours is None:
            minutes = _get(data, "spec", "scenario", "interval_minutes")
            hours = 0.5 if minutes is None else float(minutes) / 60.0
        policy = _first(
            data,
            ("policy",),
            ("spec", "run", "policy"),
            ("spec", "policy"),
            ("spec", "mechanism", "policy"),
        )
        cost = _first(
            data, ("cost_model",), ("spec", "cost_model"), ("spec", "solver", "cost_model")
        )
        seed = data.get("seed")
        versions = data.get("versions")
        return cls(
            version=version,
            status=None if data.get("status") is None else str(data["status"]),
            spec_hash=None if data.get("spec_hash") is None else str(data["spec_hash"]),
            seed=None if seed is None else int(seed),
            policy=str(policy or "fpamm"),
            mechanism=mech,
            resolved=isinstance(resolved, Mapping),
            rule=None if rule is None else str(rule).strip().lower(),
            tier_energy=str(energy).strip().lower(),
            network=network,
            tier_targets=_first(
                data, ("spec", "mechanism", "targets"), ("spec", "scenario", "tier_targets")
            ),
            cost_model=str(cost or "linear").lower(),
            checks=None if checks is None else tuple(str(c) for c in checks),
            weak_node=None if weak is None else int(weak),
            interval_h=float(hours),
            versions=dict(versions) if isinstance(versions, Mapping) else {},
            scenario=dict(_get(data, "spec", "scenario") or {}),
        )

    @property
    def marks_final_rule(self) -> bool:
        """The interval status marks ``final-rule[k]=maxmin`` (version 2 on)."""
        return self.version >= FINAL_RULE_VERSION

    def mechanism_float(self, key: str, default: float, *aliases: str) -> float:
        """A numeric mechanism parameter (``key``, else an older ``alias``), or ``default``."""
        for k in (key, *aliases):
            v = self.mechanism.get(k)
            if v is not None:
                return float(v)
        return float(default)

    def mechanism_str(self, key: str, default: str) -> str:
        """A mechanism choice such as ``weight_source``, or ``default``."""
        v = self.mechanism.get(key)
        return default if v is None else str(v)


__all__ = [
    "DEFAULT_RULE",
    "DEFAULT_TIER_ENERGY",
    "FINAL_RULE_VERSION",
    "MANIFEST_VERSION",
    "PACKAGES",
    "READABLE_VERSIONS",
    "Manifest",
    "build_manifest",
    "complete_manifest",
    "environment_info",
    "package_versions",
    "to_jsonable",
    "utc_now",
]
