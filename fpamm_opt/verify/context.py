"""What the checks need to know about a run: manifest fields and the stored tables.

:class:`RunContext` is the checks' view of the manifest: the fields of the typed, versioned
:class:`~fpamm_opt.io.manifest.Manifest` (which finds each one where its version put it)
with the defaults of ``docs/design.md`` and the network rebuilt as a
:class:`~fpamm_opt.spec.NetworkSpec`; :class:`RunData` gives the stored tables, read once
and cached, from a run directory or from DataFrames in memory.

Manifest keys read (first found wins)
-------------------------------------
Mechanism parameters come from ``mechanism_resolved`` (the run loop's full configuration)
and, for keys it lacks, from ``spec.mechanism``:

- ``beta`` (default 0.05)
- ``trigger_theta`` (default 0.0)
- ``residual_floor`` (default 1e-6, relative to total demand)
- ``voll`` (default 10000 $/MWh; the LMP baseline's value of lost load)
- ``scarcity_tol`` (default 1e-6: shedding below this share of demand is not scarcity)
- ``weight_source`` (default ``"memory"``: runs written before the deficit existed),
  ``weight_form`` (``"relative"``), ``deficit_floor`` (1e-4)

Other keys:

- ``policy``, ``spec.run.policy``, ``spec.policy``, ``spec.mechanism.policy`` (default
  ``"fpamm"``)
- network: ``spec.network`` or ``network`` with ``case``, ``convention`` (``matpower``),
  ``ratings`` (``auto``; a string policy or a mapping with ``source``/``alpha``/``min_mw``),
  ``rating_alpha`` (1.2), ``rating_min_mw`` (5.0)
- tier targets: ``spec.mechanism.targets`` or ``spec.scenario.tier_targets`` (a list per tier,
  a ``{tier: value}`` mapping, or one number for every tier; ``None`` entries mean no target)
- ``cost_model``, ``spec.cost_model``, ``spec.solver.cost_model`` (default ``"linear"``)
- ``checks``: list of check names (or prefixes such as ``"T1"``) the run loop asks for
- weak bus: ``spec.report.weak_node`` or ``spec.scenario.weak_node`` (a node index)
- interval length: ``interval_hours``, else ``spec.scenario.interval_minutes / 60`` (default
  0.5 h)
"""

from __future__ import annotations

import enum
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from fpamm_opt.errors import RunDirectoryError
from fpamm_opt.io import reader as _io
from fpamm_opt.io.manifest import Manifest
from fpamm_opt.network import NetworkData
from fpamm_opt.spec import NetworkSpec


class CostModel(enum.StrEnum):
    """How generator cost is priced in the cold re-solve (must match the run's allocator)."""

    #: ``c1 + c2 * pmax`` $/MWh per generator (secant of the quadratic over ``[0, pmax]``).
    LINEAR = "linear"
    #: The case's quadratic cost; the cold least-cost re-solve is skipped (LP only).
    QUADRATIC = "quadratic"


def _network_spec(section: Mapping[str, Any] | None) -> NetworkSpec | None:
    """The :class:`NetworkSpec` of a manifest's network section (old layouts included)."""
    if section is None:
        return None
    ratings = section.get("ratings", "auto")
    alpha = section.get("rating_alpha", section.get("alpha"))
    min_mw = section.get("rating_min_mw", section.get("min_mw"))
    if isinstance(ratings, Mapping):
        alpha = ratings.get("alpha", alpha)
        min_mw = ratings.get("min_mw", min_mw)
        src = str(ratings.get("source", "auto"))
        ratings = {"derived": "derived", "case": "case", "none": "case"}.get(src, "auto")
    fields: dict[str, Any] = {  # validated as the spec loader does (InputError)
        "case": str(section["case"]),
        "convention": str(section.get("convention", "matpower")),
        "ratings": str(ratings),
        "rating_alpha": float(1.2 if alpha is None else alpha),
        "rating_min_mw": float(5.0 if min_mw is None else min_mw),
    }
    return NetworkSpec(**fields)


def _targets(raw: Any) -> tuple[float | None, ...] | Mapping[int, float | None] | None:
    if raw is None:
        return None
    if isinstance(raw, int | float):
        return {-1: float(raw)}  # -1: every tier
    if isinstance(raw, Mapping):
        return {int(k): (None if v is None else float(v)) for k, v in raw.items()}
    return tuple(None if v is None else float(v) for v in raw)


@dataclass(frozen=True)
class RunContext:
    """The manifest fields the checks use, with documented defaults.

    Attributes
    ----------
    beta : float
        Memory gain of the saturated integrator.
    policy : str
        ``fpamm``, ``equal`` or ``lmp``.
    trigger_theta : float
        Event-trigger threshold (0: every interval cleared).
    residual_floor : float
        Numerical floor of the fixed-point residuals, relative to total demand.
    network : NetworkSpec or None
        The run's ``[network]`` section, enough to rebuild the network with
        :meth:`~fpamm_opt.spec.NetworkSpec.load` (``None`` when the manifest does not say).
    tier_targets : tuple or mapping or None
        Contracted targets ``F*`` per tier, see :meth:`target_of_tier`.
    cost_model : CostModel
        Generator pricing of the cold re-solve.
    checks : tuple of str or None
        Checks requested by the run loop, if it recorded any.
    weak_node : int or None
        Weak bus named in the spec (a node index).
    voll : float
        Value of lost load ($/MWh) of the LMP baseline.
    scarcity_tol : float
        Shedding (share of total demand) below which an interval is not scarce.
    interval_h : float
        Interval length ``dt`` (h) of the deficit recursion.
    weight_source, weight_form : str
        What FP-AMM's weights read (``memory``, ``deficit``, ``both``) and how.
    deficit_floor : float
        Floor of the deficit normaliser.
    """

    beta: float = 0.05
    policy: str = "fpamm"
    trigger_theta: float = 0.0
    residual_floor: float = 1e-6
    network: NetworkSpec | None = None
    tier_targets: tuple[float | None, ...] | Mapping[int, float | None] | None = None
    cost_model: CostModel = CostModel.LINEAR
    checks: tuple[str, ...] | None = None
    weak_node: int | None = None
    voll: float = 10000.0
    scarcity_tol: float = 1e-6
    interval_h: float = 0.5
    weight_source: str = "memory"
    weight_form: str = "relative"
    deficit_floor: float = 1e-4

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any] | Manifest) -> RunContext:
        """The checks' view of a manifest (:meth:`fpamm_opt.io.manifest.Manifest.from_dict`).

        Raises
        ------
        ManifestError
            When the manifest's version is not one this package reads.
        """
        m = manifest if isinstance(manifest, Manifest) else Manifest.from_dict(manifest)
        return cls(
            beta=m.mechanism_float("beta", 0.05),
            policy=m.policy,
            trigger_theta=m.mechanism_float("trigger_theta", 0.0, "theta"),
            residual_floor=m.mechanism_float("residual_floor", 1e-6),
            network=_network_spec(m.network),
            tier_targets=_targets(m.tier_targets),
            cost_model=CostModel(m.cost_model),
            checks=m.checks,
            weak_node=m.weak_node,
            voll=m.mechanism_float("voll", 10000.0),
            scarcity_tol=m.mechanism_float("scarcity_tol", 1e-6),
            interval_h=m.interval_h,
            weight_source=m.mechanism_str("weight_source", "memory"),
            weight_form=m.mechanism_str("weight_form", "relative"),
            deficit_floor=m.mechanism_float("deficit_floor", 1e-4),
        )

    @property
    def weights_read_deficit(self) -> bool:
        """FP-AMM's weights read the deficit (the trigger state then carries its level)."""
        return (
            self.policy == "fpamm"
            and self.weight_form != "equal"
            and self.weight_source in ("deficit", "both")
        )

    def target_of_tier(self, tier: int) -> float | None:
        """The contracted target ``F*`` of ``tier``, or ``None`` when the spec sets none."""
        tt = self.tier_targets
        if tt is None:
            return None
        if isinstance(tt, Mapping):
            v = tt.get(int(tier), tt.get(-1))
        else:
            v = tt[tier] if 0 <= tier < len(tt) else None
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    """``manifest.json`` of a run directory (:func:`fpamm_opt.io.reader.read_manifest`).

    Raises
    ------
    RunDirectoryError
        When the directory or its manifest is missing or unreadable.
    """
    return _io.read_manifest(run_dir)


def read_table(run_dir: str | Path, name: str) -> pd.DataFrame:
    """One stored table of a run directory (:func:`fpamm_opt.io.reader.read_table`).

    Raises
    ------
    RunDirectoryError
        When the table is missing or unreadable.
    """
    return _io.read_table(run_dir, name)


@dataclass(frozen=True, eq=False)
class RunData:
    """A run's manifest and tables (read lazily from ``path``, or given in memory).

    Parameters
    ----------
    manifest : mapping
        The manifest (``manifest.json``).
    path : Path, optional
        Run directory to read tables from when they are not given.
    tables : dict, optional
        Tables already in memory, by name (override the directory).
    """

    manifest: Mapping[str, Any]
    path: Path | None = None
    tables: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, run_dir: str | Path) -> RunData:
        """A run directory (its manifest is read now, tables on first use)."""
        run_dir = Path(run_dir)
        return cls(manifest=read_manifest(run_dir), path=run_dir)

    @functools.cached_property
    def context(self) -> RunContext:
        """The manifest fields the checks use."""
        return RunContext.from_manifest(self.manifest)

    def has(self, name: str) -> bool:
        """Whether table ``name`` is available (in memory or in the run directory)."""
        if name in self.tables:
            return True
        return self.path is not None and _io.has_table(self.path, name)

    def table(self, name: str) -> pd.DataFrame:
        """Stored table ``name`` (cached after the first read)."""
        if name not in self.tables:
            if self.path is None:
                raise RunDirectoryError(f"table {name!r} was not given and the run has no path")
            self.tables[name] = read_table(self.path, name)
        return self.tables[name]

    @functools.cached_property
    def network(self) -> NetworkData:
        """The run's network rebuilt from the manifest."""
        spec = self.context.network
        if spec is None:
            raise RunDirectoryError(
                "the manifest does not say which network the run used (spec.network.case)"
            )
        return spec.load()


def as_run(run: RunData | str | Path) -> RunData:
    """``run`` itself, or the run directory it names opened as :class:`RunData`."""
    return run if isinstance(run, RunData) else RunData.open(run)
