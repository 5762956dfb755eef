"""Seeded scarcity scenarios and user time series -> per-interval inputs (MECHANISM.md §5).

Role
----
:class:`Scenario` turns a :class:`~fpamm_opt.network.NetworkData`, a :class:`ScenarioConfig`
and a seed into a deterministic sequence of :class:`ScenarioInterval` (demand per load node,
available capacity per generator, scarcity-window id), plus the node tiers and the tier
priorities. Generation is **sequential**: :meth:`Scenario.iter_intervals` yields one interval
at a time and nothing of size ``T x n`` is ever held in memory.

Random streams
--------------
One ``numpy.random.SeedSequence(seed)`` is spawned into named child streams, in this fixed
order (a reproducibility contract; new streams are only ever appended):
``demand, markov, kappa, derate, outage, tiers, priority``. Each stream consumes a fixed number
of draws per interval (or per scarcity window), whatever the state and whatever user series
replace, so replacing one part never shifts the random numbers of another part, and the first
``n`` intervals are the same for every horizon ``T >= n``. :meth:`Scenario.priority_rng` hands
the mechanism a fresh generator on the ``priority`` stream (the Plackett–Luce tier order), so
every policy run on the same seed sees the same draws (common random numbers).

Generated parts (defaults in :class:`ScenarioConfig`)
------------------------------------------------------
Demand
    ``d_i(t) = d_i^base · scale · profile(h(t)) · (1 + σ_d ξ_i(t))``, ``ξ ~ N(0,1)`` clipped to
    ``±3``, then ``d >= 0``; ``h(t) = (t · interval_minutes / 60) mod 24`` (``t = 0`` is
    midnight). The ``daily`` profile is a two-harmonic cosine mix with mean exactly 1 over a day
    (when the intervals divide the day into at least three equal parts):
    ``1 + 0.18 cos(2π(h-15)/24) + 0.07 cos(4π(h-9)/24)``: night trough 0.75 at 03:00,
    two peaks of 1.128 at 11:40 (commercial) and 18:20 (residential), a shallow 1.11 dip at
    15:00. ``flat`` is the constant 1.
Scarcity windows
    A two-state Markov chain (normal/scarce): ``P(scarce->normal) = 1/L``,
    ``P(normal->scarce) = f/(1-f) · 1/L`` with ``L = mean_window_intervals`` and
    ``f = scarce_fraction`` (the stationary scarce fraction); the state at ``t = 0`` is drawn
    from the stationary distribution. ``f = 1`` is allowed and means "always scarce" (one
    window). Consecutive scarce intervals share a window id ``0, 1, 2, ...``; normal intervals
    have ``None``.
Derating (scarce intervals)
    ``κ ~ U(κ_lo, κ_hi)`` drawn once per window; the target total availability is
    ``max(0, κ · Σ_i d_i(t) + Σ fixed withdrawal)`` (so that copper-plate deliverable load is
    ``κ`` of demand). The target is spread over the generators pro rata to
    ``pmax_g · v_g`` with a mean-one lognormal variation ``v_g = exp(σ_g z_g - σ_g²/2)``,
    ``z`` clipped to ``±3``, drawn once per window (``variation_scope = "window"``, default) or
    every interval (``"interval"``); shares are capped at ``pmax`` and the excess is
    redistributed to the uncapped generators (water-filling); if ``Σ pmax`` is below the
    target every generator is at ``pmax``. Then forced outages set a generator's
    availability to 0 with probability ``outage_prob`` per generator per interval.
    Normal intervals: ``available = pmax`` with outages at ``outage_prob_normal`` (default 0).
    The derating target uses the final demand (after user series replacement).
Tiers
    A random ``round(high_tier_fraction · n_node)`` (at least 1) nodes are tier 0, the rest are
    split evenly over tiers ``1..K-1`` (``K = n_tiers``); every tier must be non-empty.

User time series (long format; ``.csv`` or ``.parquet`` by suffix)
------------------------------------------------------------------
``demand_file``: columns ``t, node, demand_mw`` (``node`` = load-node index ``0..n_node-1``;
a ``bus`` column with the external bus number may replace ``node``; if both are given they
must agree). ``availability_file``: ``t, gen, available_mw`` (``gen`` = 0-based generator
index, ``0 <= available_mw <= pmax`` within 1e-6 MW, then clipped into ``[0, pmax]``).
``tiers_file``: ``node`` (or ``bus``), ``tier`` (``0..n_tiers-1``).

Coverage rule (documented choice): a user series replaces **per entry**. Every ``(t, node)``
(or ``(t, gen)``, or ``node``) it lists replaces the generated value; everything it does not
list falls back to the generated value. Rows with ``t`` beyond the run horizon are ignored.
User availability replaces the value after outages; the Markov state and window ids always
come from the chain (they label the scenario, the run itself decides scarcity by a DC-OPF).
Files are read and fully validated when the :class:`Scenario` is constructed (before any
interval is produced) and indexed by ``t`` for O(1) per-interval lookup; every problem raises
:class:`~fpamm_opt.errors.InputError` naming the file, the column and the offending value.

No Pyomo here (import rule).
"""

from __future__ import annotations

import collections
import enum
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fpamm_opt.errors import InputError
from fpamm_opt.network import NetworkData

#: Named child streams of the run's ``SeedSequence``, in spawn order (append only).
STREAM_NAMES: tuple[str, ...] = (
    "demand",
    "markov",
    "kappa",
    "derate",
    "outage",
    "tiers",
    "priority",
)

#: Tolerance (MW) on ``available_mw <= pmax`` in a user availability file.
AVAILABILITY_TOL_MW = 1e-6

#: Clip of the standard normal draws (demand noise and generator variation), in sigmas.
NOISE_CLIP = 3.0


class Profile(enum.StrEnum):
    """Shape of the demand over a day."""

    DAILY = "daily"  #: two-peak residential/commercial cosine mix, mean 1, range 0.75..1.128
    FLAT = "flat"  #: constant 1


class ScenarioSource(enum.StrEnum):
    """Where a scenario's demand and availability come from."""

    SYNTHETIC = "synthetic"  #: the seeded Markov scarcity scenario of this module
    SIMBENCH = "simbench"  #: a SimBench grid's own profiles (fpamm_opt.scenarios_simbench)


#: Interval length of SimBench's profiles (minutes).
SIMBENCH_INTERVAL_MINUTES = 15.0

#: Fields that only ``source = "simbench"`` reads, with their defaults. They are left out of
#: :meth:`ScenarioConfig.to_dict` for a synthetic scenario, so the spec hashes of synthetic
#: specs stay what they were before the SimBench source existed.
SIMBENCH_FIELDS: dict[str, Any] = {
    "grid": None,
    "capacity_scale": 1.0,
    "forced_outage_rate": 0.05,
    "mean_repair_hours": 50.0,
}


class VariationScope(enum.StrEnum):
    """How often the per-generator derating variation is redrawn."""

    WINDOW = "window"  #: once per scarcity window
    INTERVAL = "interval"  #: every interval


def profile_value(profile: Profile | str, hour: float | np.ndarray) -> float | np.ndarray:
    """Demand profile factor at hour-of-day ``hour`` (0 <= hour < 24), mean 1 over a day.

    Parameters
    ----------
    profile
        :class:`Profile` name.
    hour
        Hour of the day (any real; taken modulo 24).

    Returns
    -------
    float or ndarray
        ``1 + 0.18 cos(2π(h-15)/24) + 0.07 cos(4π(h-9)/24)`` for ``daily``, 1 for ``flat``.
    """
    profile = Profile(profile)
    h = np.mod(hour, 24.0)
    if profile is Profile.FLAT:
        out = np.ones_like(h, dtype=float)
    else:
        out = (
            1.0
            + 0.18 * np.cos(2.0 * np.pi * (h - 15.0) / 24.0)
            + 0.07 * np.cos(4.0 * np.pi * (h - 9.0) / 24.0)
        )
    return float(out) if np.ndim(out) == 0 else out


# ---------------------------------------------------------------- validation helpers
def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise InputError(f"scenario.{name}: expected a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise InputError(f"scenario.{name}: expected a finite number, got {value!r}")
    return v


def _integer(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer | float | np.floating):
        raise InputError(f"scenario.{name}: expected an integer, got {value!r}")
    if isinstance(value, float | np.floating) and (
        not math.isfinite(value) or value != math.floor(value)
    ):
        raise InputError(f"scenario.{name}: expected an integer, got {value!r}")
    return int(value)


def _check(ok: bool, name: str, requirement: str, value: Any) -> None:
    if not ok:
        raise InputError(f"scenario.{name}: must be {requirement}, got {value!r}")


def _enum(name: str, cls: type[enum.StrEnum], value: Any) -> Any:
    try:
        return cls(value)
    except ValueError:
        choices = ", ".join(m.value for m in cls)
        raise InputError(f"scenario.{name}: {value!r} is not one of {choices}") from None


def _path(name: str, value: Any) -> Path | None:
    if value is None:
        return None
    if isinstance(value, str | Path) and str(value).strip():
        return Path(value)
    raise InputError(f"scenario.{name}: expected a file path or nothing, got {value!r}")


@dataclass(frozen=True)
class ScenarioConfig:
    """Parameters of the seeded scarcity scenario (MECHANISM.md §5); validated on creation.

    Attributes
    ----------
    interval_minutes : float
        Interval length (min); sets the hour of the day of each interval.
    demand_noise : float
        ``σ_d`` of the clipped Gaussian multiplicative demand noise (clipped at ±3σ).
    profile : Profile
        Daily demand shape (see module docstring).
    profile_scale : float
        Multiplier of the base demand (> 0).
    mean_window_intervals : float
        Mean scarce-window length ``L`` in intervals (>= 1).
    scarce_fraction : float
        Stationary scarce fraction ``f`` in ``[0, 1]``; needs ``f/(1-f) <= L`` when ``f < 1``.
    kappa_lo, kappa_hi : float
        Bounds of the per-window coverage ``κ ~ U(κ_lo, κ_hi)``; values >= 1 give windows whose
        scarcity can only come from the network or outages.
    gen_variation : float
        ``σ_g`` of the mean-one lognormal per-generator variation of the derating.
    variation_scope : VariationScope
        Redraw the variation per window (default) or per interval.
    outage_prob : float
        Forced-outage probability per generator per scarce interval.
    outage_prob_normal : float
        Forced-outage probability per generator per normal interval.
    n_tiers : int
        Number of service levels ``K`` (>= 1).
    high_tier_fraction : float
        Share of nodes in tier 0 (in ``(0, 1)`` when ``K >= 2``; ignored when ``K = 1``).
    tier_priorities : tuple of float
        ``π``, one positive value per tier (tier 0 first).
    demand_file, availability_file, tiers_file : Path or None
        Optional user series (see module docstring).
    tier_targets : tuple of (float or None), or None
        Contracted delivery-ratio target ``F*`` of each tier (MECHANISM.md §6, T5), each in
        ``[0, 1]``; ``None`` (or NaN, as TOML has no null) = no target for that tier, and the
        check uses the run's own limit. A single number applies to every tier. Not used to
        generate the scenario; recorded for ``verify``.
    weak_node : int or None
        The weak node named by the spec (MECHANISM.md §6); ``None`` = the node with the largest
        final fairness error under the equal-weight baseline. Checked against ``n_node``.
    source : ScenarioSource
        ``synthetic`` (this module) or ``simbench`` (:mod:`fpamm_opt.scenarios_simbench`: the
        grid's own load and renewable profiles, conventional units with Markov forced
        outages). With ``simbench`` the synthetic chain's fields (``demand_noise``,
        ``profile``, ``scarce_fraction``, ``kappa_*``, ``gen_variation``, ``outage_prob*``,
        ...) are not used; tiers, priorities, targets and the user files are.
    grid : str or None
        SimBench grid code (``source = "simbench"`` only), e.g. ``"1-EHV-mixed--0-no_sw"``.
    capacity_scale : float
        The SimBench source's capacity-adequacy knob, in ``(0, 1]``: each conventional unit
        (``gen``, ``ext_grid``) is available at ``capacity_scale · pmax`` while in service.
    forced_outage_rate : float
        SimBench source: forced outage rate (FOR) of each conventional unit, the stationary
        probability of being out, in ``[0, 1)``.
    mean_repair_hours : float
        SimBench source: mean time to repair of a forced outage (hours, at least one interval).
    """

    interval_minutes: float = 30.0
    demand_noise: float = 0.05
    profile: Profile = Profile.DAILY
    profile_scale: float = 1.0
    mean_window_intervals: float = 12.0
    scarce_fraction: float = 0.25
    kappa_lo: float = 0.75
    kappa_hi: float = 0.92
    gen_variation: float = 0.15
    variation_scope: VariationScope = VariationScope.WINDOW
    outage_prob: float = 0.02
    outage_prob_normal: float = 0.0
    n_tiers: int = 2
    high_tier_fraction: float = 1.0 / 3.0
    tier_priorities: tuple[float, ...] = (0.7, 0.3)
    demand_file: Path | None = None
    availability_file: Path | None = None
    tiers_file: Path | None = None
    tier_targets: tuple[float | None, ...] | None = None
    weak_node: int | None = None
    source: ScenarioSource = ScenarioSource.SYNTHETIC
    grid: str | None = None
    capacity_scale: float = 1.0
    forced_outage_rate: float = 0.05
    mean_repair_hours: float = 50.0

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        for name in (
            "interval_minutes",
            "demand_noise",
            "profile_scale",
            "mean_window_intervals",
            "scarce_fraction",
            "kappa_lo",
            "kappa_hi",
            "gen_variation",
            "outage_prob",
            "outage_prob_normal",
            "high_tier_fraction",
        ):
            put(name, _number(name, getattr(self, name)))
        put("n_tiers", _integer("n_tiers", self.n_tiers))
        put("profile", _enum("profile", Profile, self.profile))
        put("variation_scope", _enum("variation_scope", VariationScope, self.variation_scope))
        for name in ("demand_file", "availability_file", "tiers_file"):
            put(name, _path(name, getattr(self, name)))

        _check(self.interval_minutes > 0, "interval_minutes", "> 0", self.interval_minutes)
        _check(self.demand_noise >= 0, "demand_noise", ">= 0", self.demand_noise)
        _check(self.profile_scale > 0, "profile_scale", "> 0", self.profile_scale)
        L, f = self.mean_window_intervals, self.scarce_fraction
        _check(L >= 1, "mean_window_intervals", ">= 1", L)
        _check(0 <= f <= 1, "scarce_fraction", "in [0, 1]", f)
        if f < 1 and f / (1 - f) / L > 1:
            raise InputError(
                f"scenario.scarce_fraction: {f!r} is unreachable with mean_window_intervals "
                f"{L!r} (needs scarce_fraction <= L/(L+1) = {L / (L + 1):.4g})"
            )
        _check(self.kappa_lo >= 0, "kappa_lo", ">= 0", self.kappa_lo)
        _check(
            self.kappa_hi >= self.kappa_lo,
            "kappa_hi",
            f">= kappa_lo ({self.kappa_lo})",
            self.kappa_hi,
        )
        _check(self.gen_variation >= 0, "gen_variation", ">= 0", self.gen_variation)
        _check(0 <= self.outage_prob <= 1, "outage_prob", "in [0, 1]", self.outage_prob)
        _check(
            0 <= self.outage_prob_normal <= 1,
            "outage_prob_normal",
            "in [0, 1]",
            self.outage_prob_normal,
        )
        _check(self.n_tiers >= 1, "n_tiers", ">= 1", self.n_tiers)
        if self.n_tiers >= 2:
            _check(
                0 < self.high_tier_fraction < 1,
                "high_tier_fraction",
                "in (0, 1) with n_tiers >= 2",
                self.high_tier_fraction,
            )
        pri = self.tier_priorities
        if isinstance(pri, str | bytes) or not isinstance(pri, list | tuple | np.ndarray):
            raise InputError(f"scenario.tier_priorities: expected a list of numbers, got {pri!r}")
        pri_t = tuple(_number("tier_priorities", p) for p in pri)
        if len(pri_t) != self.n_tiers:
            raise InputError(
                f"scenario.tier_priorities: has {len(pri_t)} values but scenario.n_tiers is "
                f"{self.n_tiers}"
            )
        _check(all(p > 0 for p in pri_t), "tier_priorities", "all > 0", list(pri_t))
        put("tier_priorities", pri_t)
        put("tier_targets", self._targets(self.tier_targets))
        if self.weak_node is not None:
            weak = _integer("weak_node", self.weak_node)
            _check(weak >= 0, "weak_node", ">= 0", self.weak_node)
            put("weak_node", weak)
        self._check_source()

    def _check_source(self) -> None:
        """Validate ``source`` and the fields only the SimBench source reads."""
        object.__setattr__(self, "source", _enum("source", ScenarioSource, self.source))
        for name in ("capacity_scale", "forced_outage_rate", "mean_repair_hours"):
            object.__setattr__(self, name, _number(name, getattr(self, name)))
        if self.source is ScenarioSource.SYNTHETIC:
            for name, default in SIMBENCH_FIELDS.items():
                if getattr(self, name) != default:
                    raise InputError(
                        f"scenario.{name}: only used with source = 'simbench' "
                        f"(source is {self.source.value!r})"
                    )
            return
        if not isinstance(self.grid, str) or not self.grid.strip():
            raise InputError(
                "scenario.grid: source = 'simbench' needs a SimBench grid code, "
                "e.g. grid = '1-EHV-mixed--0-no_sw'"
            )
        if self.interval_minutes != SIMBENCH_INTERVAL_MINUTES:
            raise InputError(
                f"scenario.interval_minutes: SimBench profiles are 15-minute; set "
                f"interval_minutes = 15 (got {self.interval_minutes!r})"
            )
        c, f, r = self.capacity_scale, self.forced_outage_rate, self.mean_repair_hours
        _check(0 < c <= 1, "capacity_scale", "in (0, 1]", c)
        _check(0 <= f < 1, "forced_outage_rate", "in [0, 1)", f)
        dt_h = self.interval_minutes / 60.0
        _check(r >= dt_h, "mean_repair_hours", f">= one interval ({dt_h:g} h)", r)
        if f / (1 - f) * dt_h / r > 1:
            raise InputError(
                f"scenario.forced_outage_rate: {f!r} is unreachable with mean_repair_hours {r!r}"
            )

    def _targets(self, raw: Any) -> tuple[float | None, ...] | None:
        if raw is None:
            return None
        if isinstance(raw, int | float | np.integer | np.floating) and not isinstance(raw, bool):
            raw = [raw] * self.n_tiers
        if isinstance(raw, str | bytes) or not isinstance(raw, list | tuple | np.ndarray):
            raise InputError(f"scenario.tier_targets: expected a list of numbers, got {raw!r}")
        out: list[float | None] = []
        for v in raw:
            if v is None or (isinstance(v, float) and math.isnan(v)):
                out.append(None)
                continue
            x = _number("tier_targets", v)
            _check(0 <= x <= 1, "tier_targets", "in [0, 1]", v)
            out.append(x)
        if len(out) != self.n_tiers:
            raise InputError(
                f"scenario.tier_targets: has {len(out)} values but scenario.n_tiers is "
                f"{self.n_tiers}"
            )
        return tuple(out)

    # ------------------------------------------------------------- dict round trip
    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], base_dir: Path | str | None = None
    ) -> ScenarioConfig:
        """Build from a plain mapping (a TOML table); unknown keys raise :class:`InputError`.

        Relative file paths are resolved against ``base_dir`` when it is given.
        """
        if not isinstance(data, Mapping):
            raise InputError(f"scenario: expected a table, got {data!r}")
        known = {f.name for f in fields(cls)}
        for key in data:
            if key not in known:
                raise InputError(
                    f"scenario: unknown key {key!r} (known: {', '.join(sorted(known))})"
                )
        kwargs = dict(data)
        if base_dir is not None:
            for name in ("demand_file", "availability_file", "tiers_file"):
                value = kwargs.get(name)
                if isinstance(value, str | Path) and str(value).strip():
                    p = Path(value)
                    kwargs[name] = p if p.is_absolute() else (Path(base_dir) / p).resolve()
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/TOML-friendly dict (enums as strings, paths as strings, ``None`` kept).

        A synthetic scenario leaves out ``source`` and the SimBench-only fields
        (:data:`SIMBENCH_FIELDS`), so its spec hash is unchanged by their existence.
        """
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, enum.Enum):
                v = v.value
            elif isinstance(v, Path):
                v = str(v)
            elif isinstance(v, tuple):
                v = list(v)
            out[f.name] = v
        if self.source is ScenarioSource.SYNTHETIC:
            del out["source"]
            for name in SIMBENCH_FIELDS:
                del out[name]
        return out

    # ------------------------------------------------------------- derived values
    @property
    def p_scarce_to_normal(self) -> float:
        """Per-interval probability of leaving a scarce window, ``1/L`` (0 if ``f = 1``)."""
        return 0.0 if self.scarce_fraction >= 1 else 1.0 / self.mean_window_intervals

    @property
    def p_normal_to_scarce(self) -> float:
        """Per-interval probability of entering a scarce window, ``f/(1-f) · 1/L``."""
        f = self.scarce_fraction
        if f >= 1:
            return 1.0
        return f / (1.0 - f) / self.mean_window_intervals


@dataclass(frozen=True, eq=False)
class ScenarioInterval:
    """The scenario's inputs of one interval (arrays are read-only).

    Attributes
    ----------
    t : int
        Interval index (0-based).
    demand_mw : (n_node,) float
        Demand of each load node (>= 0).
    available_mw : (n_gen,) float
        Available capacity of each generator, ``0 <= available <= pmax``.
    window : int or None
        Scarcity-window id of the Markov chain, ``None`` in the normal state.
    state_scarce : bool
        Markov state (``window is not None``).
    kappa : float or None
        Coverage ``κ`` of the window (``None`` in the normal state).
    outage : (n_gen,) bool or None
        Forced outages drawn in this interval.
    """

    t: int
    demand_mw: np.ndarray
    available_mw: np.ndarray
    window: int | None
    state_scarce: bool
    kappa: float | None = None
    outage: np.ndarray | None = None

    def __post_init__(self) -> None:
        for name in ("demand_mw", "available_mw", "outage"):
            v = getattr(self, name)
            if isinstance(v, np.ndarray):
                v.setflags(write=False)


# ---------------------------------------------------------------- user series
@dataclass(frozen=True)
class _IndexedSeries:
    """A user long-format series indexed by ``t``: ``t -> (ids, values)``."""

    path: str
    n_rows: int
    t_min: int | None
    t_max: int | None
    by_t: dict[int, tuple[np.ndarray, np.ndarray]]

    def get(self, t: int) -> tuple[np.ndarray, np.ndarray] | None:
        return self.by_t.get(t)

    def apply(self, t: int, values: np.ndarray) -> None:
        """Overwrite ``values`` in place where the series has a row for interval ``t``."""
        hit = self.by_t.get(t)
        if hit is not None:
            values[hit[0]] = hit[1]

    def describe(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "rows": self.n_rows,
            "t_min": self.t_min,
            "t_max": self.t_max,
            "intervals": len(self.by_t),
        }


def _fmt(x: Any) -> str:
    """A value for a message: plain Python repr of a float, rounded to 9 decimals."""
    return repr(round(float(x), 9))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no detail"


def _read_frame(label: str, path: Path) -> pd.DataFrame:
    """Read a CSV or Parquet file; any failure is one :class:`InputError` line."""
    where = f"{label} {path}"
    if not path.is_file():
        raise InputError(f"{where}: file not found")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise InputError(f"{where}: unsupported file type {suffix!r} (expected .csv or .parquet)")
    try:
        if suffix == ".csv":
            df = pd.read_csv(path, skipinitialspace=True)
        else:
            df = pd.read_parquet(path)
    except Exception as exc:  # the readers raise many types on a broken file
        raise InputError(
            f"{where}: cannot read ({type(exc).__name__}: {_first_line(exc)})"
        ) from None
    names = [str(c).strip() for c in df.columns]
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise InputError(f"{where}: duplicate column {n!r}")
        seen.add(n)
    df.columns = pd.Index(names)
    return df


def _numeric_column(where: str, df: pd.DataFrame, col: str, integer: bool) -> np.ndarray:
    """Column ``col`` as float64 (or int64), rejecting non-numeric, NaN, inf, non-integers."""
    raw = df[col]
    try:
        num = pd.to_numeric(raw, errors="coerce")
        values = np.asarray(num, dtype=float)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{where}: column {col!r} is not numeric") from None
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        i = int(bad[0])
        orig = raw.iloc[i]
        if pd.isna(orig):
            raise InputError(f"{where}: NaN in column {col!r} at data row {i + 1}")
        if np.isnan(values[i]):
            raise InputError(f"{where}: non-numeric {col} {orig!r} at data row {i + 1}")
        raise InputError(f"{where}: non-finite {col} {orig!r} at data row {i + 1}")
    if not integer:
        return values
    frac = np.flatnonzero(values != np.floor(values))
    if frac.size:
        i = int(frac[0])
        raise InputError(f"{where}: non-integer {col} {_fmt(values[i])} at data row {i + 1}")
    big = np.flatnonzero(np.abs(values) >= 2.0**53)
    if big.size:
        i = int(big[0])
        raise InputError(f"{where}: {col} {_fmt(values[i])} out of range at data row {i + 1}")
    return values.astype(np.int64)


def _require_columns(where: str, df: pd.DataFrame, required: tuple[str, ...]) -> None:
    for col in required:
        if col not in df.columns:
            have = ", ".join(map(str, df.columns)) or "none"
            raise InputError(f"{where}: missing column {col!r} (columns: {have})")


def _node_ids(where: str, df: pd.DataFrame, net: NetworkData) -> tuple[np.ndarray, str]:
    """Node indices from a ``node`` or ``bus`` column (both given: must agree)."""
    n_node = net.n_node
    has_node, has_bus = "node" in df.columns, "bus" in df.columns
    if not has_node and not has_bus:
        have = ", ".join(map(str, df.columns)) or "none"
        raise InputError(f"{where}: missing column 'node' (or 'bus') (columns: {have})")
    node: np.ndarray | None = None
    if has_node:
        node = _numeric_column(where, df, "node", integer=True)
        out = np.flatnonzero((node < 0) | (node >= n_node))
        if out.size:
            i = int(out[0])
            raise InputError(
                f"{where}: unknown node {int(node[i])} at data row {i + 1} "
                f"(nodes are 0..{n_node - 1})"
            )
    if has_bus:
        bus = _numeric_column(where, df, "bus", integer=True)
        lookup = {int(b): k for k, b in enumerate(net.node_ids)}
        from_bus = np.array([lookup.get(int(b), -1) for b in bus], dtype=np.int64)
        unknown = np.flatnonzero(from_bus < 0)
        if unknown.size:
            i = int(unknown[0])
            raise InputError(
                f"{where}: unknown bus {int(bus[i])} at data row {i + 1} (not a load bus of "
                f"{net.name})"
            )
        if node is not None:
            differ = np.flatnonzero(node != from_bus)
            if differ.size:
                i = int(differ[0])
                raise InputError(
                    f"{where}: node {int(node[i])} and bus {int(bus[i])} disagree at data row "
                    f"{i + 1}"
                )
        else:
            node = from_bus
    assert node is not None
    return node, ("node" if has_node else "bus")


def _index_by_t(
    where: str,
    t: np.ndarray,
    ids: np.ndarray,
    values: np.ndarray,
    id_name: str,
    id_display: np.ndarray,
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Check ``(t, id)`` uniqueness and group the rows by ``t``."""
    neg = np.flatnonzero(t < 0)
    if neg.size:
        i = int(neg[0])
        raise InputError(f"{where}: negative t {int(t[i])} at data row {i + 1}")
    if t.size == 0:
        return {}
    order = np.lexsort((ids, t))
    ts, ids_s, vals_s, disp_s = t[order], ids[order], values[order], id_display[order]
    dup = np.flatnonzero((ts[1:] == ts[:-1]) & (ids_s[1:] == ids_s[:-1]))
    if dup.size:
        k = int(dup[0]) + 1
        raise InputError(f"{where}: duplicate row t={int(ts[k])}, {id_name}={int(disp_s[k])}")
    bounds = np.flatnonzero(np.diff(ts)) + 1
    starts = np.r_[0, bounds]
    ends = np.r_[bounds, ts.size]
    by_t: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for s, e in zip(starts, ends):
        i_arr, v_arr = ids_s[s:e].copy(), vals_s[s:e].copy()
        i_arr.setflags(write=False)
        v_arr.setflags(write=False)
        by_t[int(ts[s])] = (i_arr, v_arr)
    return by_t


def load_demand_series(path: Path | str, net: NetworkData) -> _IndexedSeries:
    """Read and validate a user demand series (``t, node|bus, demand_mw``)."""
    path = Path(path)
    where = f"demand_file {path}"
    df = _read_frame("demand_file", path)
    _require_columns(where, df, ("t", "demand_mw"))
    node, id_col = _node_ids(where, df, net)
    t = _numeric_column(where, df, "t", integer=True)
    d = _numeric_column(where, df, "demand_mw", integer=False)
    display = node if id_col == "node" else net.node_ids[node]
    neg = np.flatnonzero(d < 0)
    if neg.size:
        i = int(neg[0])
        raise InputError(
            f"{where}: negative demand_mw {_fmt(d[i])} at t={int(t[i])}, {id_col}={int(display[i])}"
        )
    by_t = _index_by_t(where, t, node, d, id_col, np.asarray(display))
    return _IndexedSeries(str(path), int(t.size), _tmin(t), _tmax(t), by_t)


def load_availability_series(path: Path | str, net: NetworkData) -> _IndexedSeries:
    """Read and validate a user availability series (``t, gen, available_mw``)."""
    path = Path(path)
    where = f"availability_file {path}"
    df = _read_frame("availability_file", path)
    _require_columns(where, df, ("t", "gen", "available_mw"))
    t = _numeric_column(where, df, "t", integer=True)
    gen = _numeric_column(where, df, "gen", integer=True)
    a = _numeric_column(where, df, "available_mw", integer=False)
    n_gen = net.n_gen
    out = np.flatnonzero((gen < 0) | (gen >= n_gen))
    if out.size:
        i = int(out[0])
        raise InputError(
            f"{where}: unknown gen {int(gen[i])} at data row {i + 1} (generators are "
            f"0..{n_gen - 1})"
        )
    neg = np.flatnonzero(a < 0)
    if neg.size:
        i = int(neg[0])
        raise InputError(
            f"{where}: negative available_mw {_fmt(a[i])} at t={int(t[i])}, gen={int(gen[i])}"
        )
    pmax = net.gen_pmax_mw[gen]
    above = np.flatnonzero(a > pmax + AVAILABILITY_TOL_MW)
    if above.size:
        i = int(above[0])
        raise InputError(
            f"{where}: available_mw {_fmt(a[i])} above pmax {_fmt(float(pmax[i]))} at t={int(t[i])}, "
            f"gen={int(gen[i])}"
        )
    a = np.clip(a, 0.0, pmax)
    by_t = _index_by_t(where, t, gen, a, "gen", gen)
    return _IndexedSeries(str(path), int(t.size), _tmin(t), _tmax(t), by_t)


def load_tiers_file(
    path: Path | str, net: NetworkData, n_tiers: int
) -> tuple[np.ndarray, np.ndarray]:
    """Read and validate a user tier assignment (``node|bus, tier``): ``(nodes, tiers)``."""
    path = Path(path)
    where = f"tiers_file {path}"
    df = _read_frame("tiers_file", path)
    _require_columns(where, df, ("tier",))
    node, id_col = _node_ids(where, df, net)
    tier = _numeric_column(where, df, "tier", integer=True)
    display = node if id_col == "node" else net.node_ids[node]
    out = np.flatnonzero((tier < 0) | (tier >= n_tiers))
    if out.size:
        i = int(out[0])
        raise InputError(
            f"{where}: tier {int(tier[i])} out of range at {id_col}={int(display[i])} "
            f"(tiers are 0..{n_tiers - 1})"
        )
    order = np.argsort(node, kind="stable")
    ns = node[order]
    dup = np.flatnonzero(ns[1:] == ns[:-1])
    if dup.size:
        k = int(order[int(dup[0]) + 1])
        raise InputError(f"{where}: duplicate row {id_col}={int(display[k])}")
    return node, tier


def _tmin(t: np.ndarray) -> int | None:
    return int(t.min()) if t.size else None


def _tmax(t: np.ndarray) -> int | None:
    return int(t.max()) if t.size else None


# ---------------------------------------------------------------- derating
def waterfill(target_mw: float, weight: np.ndarray, cap_mw: np.ndarray) -> np.ndarray:
    """Spread ``target_mw`` pro rata to ``weight``, capped at ``cap_mw``, excess redistributed.

    Parameters
    ----------
    target_mw
        Total to distribute (MW).
    weight : (n,) float, >= 0
        Relative shares.
    cap_mw : (n,) float, >= 0
        Upper bound of each share.

    Returns
    -------
    (n,) float
        Shares with ``0 <= share <= cap`` summing to ``min(target, Σ cap)`` (up to rounding;
        entries with zero weight only receive their cap when the target exceeds ``Σ cap`` of
        the weighted ones, in which case everything is at its cap).
    """
    cap = np.asarray(cap_mw, dtype=float)
    out = np.zeros_like(cap)
    if target_mw <= 0:
        return out
    if target_mw >= cap.sum():
        return cap.copy()
    free = (np.asarray(weight, dtype=float) > 0) & (cap > 0)
    remaining = float(target_mw)
    while free.any():
        w = np.where(free, weight, 0.0)
        share = remaining * w / w.sum()
        over = free & (share > cap)
        if not over.any():
            out[free] = share[free]
            break
        out[over] = cap[over]
        remaining -= float(cap[over].sum())
        free &= ~over
        if remaining <= 0:
            break
    if not free.any() and remaining > 0:
        # Weighted generators all capped but target not reached: fill the zero-weight ones.
        rest = (out == 0) & (cap > 0)
        out[rest] = waterfill(remaining, np.where(rest, cap, 0.0), np.where(rest, cap, 0.0))[rest]
    return out


# ---------------------------------------------------------------- the scenario
class Scenario:
    """A seeded scarcity scenario on a network (see the module docstring).

    Parameters
    ----------
    net
        The network (its load nodes and generators define the array shapes).
    cfg
        Scenario parameters; user files are read and validated here.
    seed
        Non-negative integer; the same seed gives a bit-identical sequence.

    Attributes
    ----------
    node_tier : (n_node,) int
        Tier of each load node, ``0..K-1`` (0 = highest priority).
    tier_priority : (K,) float
        Plackett–Luce priorities ``π`` (tier 0 first).
    """

    def __init__(self, net: NetworkData, cfg: ScenarioConfig | None = None, seed: int = 0) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise InputError(f"scenario: seed must be a non-negative integer, got {seed!r}")
        self.net = net
        self.cfg = cfg if cfg is not None else ScenarioConfig()
        self.seed = int(seed)
        children = np.random.SeedSequence(self.seed).spawn(len(STREAM_NAMES))
        self._seeds: dict[str, np.random.SeedSequence] = dict(zip(STREAM_NAMES, children))
        self._pmax = np.asarray(net.gen_pmax_mw, dtype=float).copy()
        self._base = np.asarray(net.node_demand_mw, dtype=float).copy()
        self._fixed_mw = float(np.sum(net.bus_fixed_withdrawal_mw))

        c = self.cfg
        self._demand = load_demand_series(c.demand_file, net) if c.demand_file else None
        self._avail = (
            load_availability_series(c.availability_file, net) if c.availability_file else None
        )
        tiers = self._seeded_tiers()
        if c.tiers_file is not None:
            nodes, user_tiers = load_tiers_file(c.tiers_file, net, c.n_tiers)
            tiers[nodes] = user_tiers
        for k in range(c.n_tiers):
            if not np.any(tiers == k):
                source = f", tiers_file {c.tiers_file}" if c.tiers_file is not None else ""
                raise InputError(
                    f"scenario: tier {k} has no nodes (scenario.n_tiers = {c.n_tiers}, "
                    f"{net.n_node} load nodes{source})"
                )
        tiers.setflags(write=False)
        self.node_tier: np.ndarray = tiers
        if c.weak_node is not None and c.weak_node >= net.n_node:
            raise InputError(
                f"scenario.weak_node: {c.weak_node} is not a node of {net.name} "
                f"(nodes are 0..{net.n_node - 1})"
            )
        pri = np.asarray(c.tier_priorities, dtype=float)
        pri.setflags(write=False)
        self.tier_priority: np.ndarray = pri

    # ------------------------------------------------------------- streams
    def stream(self, name: str) -> np.random.Generator:
        """A fresh generator on the named child stream (see :data:`STREAM_NAMES`)."""
        try:
            seq = self._seeds[name]
        except KeyError:
            raise InputError(
                f"scenario: unknown random stream {name!r} (known: {', '.join(STREAM_NAMES)})"
            ) from None
        return np.random.Generator(np.random.PCG64(seq))

    def priority_rng(self) -> np.random.Generator:
        """A fresh generator on the ``priority`` stream (same draws on every call)."""
        return self.stream("priority")

    @property
    def n_tiers(self) -> int:
        return self.cfg.n_tiers

    def tier_sizes(self) -> np.ndarray:
        """Number of nodes in each tier, ``(K,)``."""
        return np.bincount(self.node_tier, minlength=self.cfg.n_tiers)

    def _seeded_tiers(self) -> np.ndarray:
        n, k = self.net.n_node, self.cfg.n_tiers
        tiers = np.zeros(n, dtype=np.int64)
        if k == 1 or n == 0:
            return tiers
        perm = self.stream("tiers").permutation(n)
        n_high = max(1, math.floor(self.cfg.high_tier_fraction * n + 0.5))
        rest = perm[n_high:]
        for j, part in enumerate(np.array_split(rest, k - 1)):
            tiers[part] = j + 1
        return tiers

    # ------------------------------------------------------------- generation
    def iter_intervals(self, n_intervals: int) -> Iterator[ScenarioInterval]:
        """Yield intervals ``t = 0 .. n_intervals-1`` (sequential, O(n) memory per interval).

        Every call starts again from ``t = 0`` with fresh generators, so two iterations are
        bit-identical, and a shorter horizon is a prefix of a longer one.
        """
        n = _integer("intervals", n_intervals)
        if n < 0:
            raise InputError(f"scenario: number of intervals must be >= 0, got {n_intervals!r}")
        state = _GeneratorState(self)
        for t in range(n):
            yield state.step(t)

    def interval(self, t: int) -> ScenarioInterval:
        """Interval ``t`` alone; regenerates ``0..t`` (O(t)): for tests and debugging."""
        t = _integer("t", t)
        if t < 0:
            raise InputError(f"scenario: interval index must be >= 0, got {t}")
        return collections.deque(self.iter_intervals(t + 1), maxlen=1)[0]

    def scarce_target_mw(self, total_demand_mw: float, kappa: float) -> float:
        """Target total availability of a scarce interval, ``max(0, κ Σd + Σ fixed)``."""
        return max(0.0, kappa * total_demand_mw + self._fixed_mw)

    def describe(self) -> dict[str, Any]:
        """JSON-friendly summary for a run manifest."""
        return {
            "seed": self.seed,
            "config": self.cfg.to_dict(),
            "streams": list(STREAM_NAMES),
            "tier_sizes": [int(x) for x in self.tier_sizes()],
            "tier_priority": [float(x) for x in self.tier_priority],
            "coverage_rule": "per entry; entries not listed fall back to generated values",
            "demand_file": None if self._demand is None else self._demand.describe(),
            "availability_file": None if self._avail is None else self._avail.describe(),
            "tiers_file": None if self.cfg.tiers_file is None else str(self.cfg.tiers_file),
        }


class _GeneratorState:
    """Mutable state of one sequential pass over the scenario."""

    def __init__(self, sc: Scenario) -> None:
        self.sc = sc
        self.rng_demand = sc.stream("demand")
        self.rng_markov = sc.stream("markov")
        self.rng_kappa = sc.stream("kappa")
        self.rng_derate = sc.stream("derate")
        self.rng_outage = sc.stream("outage")
        self.scarce = False
        self.window = -1
        self.kappa = float("nan")
        self.variation = np.ones(sc.net.n_gen)

    def _draw_variation(self) -> np.ndarray:
        sigma = self.sc.cfg.gen_variation
        z = np.clip(self.rng_derate.standard_normal(self.sc.net.n_gen), -NOISE_CLIP, NOISE_CLIP)
        return np.exp(sigma * z - 0.5 * sigma * sigma)

    def step(self, t: int) -> ScenarioInterval:
        sc, cfg = self.sc, self.sc.cfg
        # Demand: one normal per node per interval, always drawn.
        hour = (t * cfg.interval_minutes / 60.0) % 24.0
        level = cfg.profile_scale * profile_value(cfg.profile, hour)
        xi = np.clip(self.rng_demand.standard_normal(sc.net.n_node), -NOISE_CLIP, NOISE_CLIP)
        demand = np.maximum(sc._base * level * (1.0 + cfg.demand_noise * xi), 0.0)
        if sc._demand is not None:
            sc._demand.apply(t, demand)

        # Markov chain: one uniform per interval.
        u = self.rng_markov.random()
        if t == 0:
            scarce = u < cfg.scarce_fraction
        elif self.scarce:
            scarce = u >= cfg.p_scarce_to_normal
        else:
            scarce = u < cfg.p_normal_to_scarce
        if scarce and not self.scarce:
            self.window += 1
            self.kappa = float(self.rng_kappa.uniform(cfg.kappa_lo, cfg.kappa_hi))
            if cfg.variation_scope is VariationScope.WINDOW:
                self.variation = self._draw_variation()
        self.scarce = scarce
        if cfg.variation_scope is VariationScope.INTERVAL:
            self.variation = self._draw_variation()

        # Availability: derating in scarce windows, then outages (one uniform per gen).
        pmax = sc._pmax
        if scarce:
            target = sc.scarce_target_mw(float(demand.sum()), self.kappa)
            available = waterfill(target, pmax * self.variation, pmax)
            p_out = cfg.outage_prob
        else:
            available = pmax.copy()
            p_out = cfg.outage_prob_normal
        outage = self.rng_outage.random(sc.net.n_gen) < p_out
        available[outage] = 0.0
        if sc._avail is not None:
            sc._avail.apply(t, available)

        return ScenarioInterval(
            t=t,
            demand_mw=demand,
            available_mw=available,
            window=self.window if scarce else None,
            state_scarce=bool(scarce),
            kappa=self.kappa if scarce else None,
            outage=outage,
        )


__all__ = [
    "AVAILABILITY_TOL_MW",
    "SIMBENCH_INTERVAL_MINUTES",
    "STREAM_NAMES",
    "Profile",
    "Scenario",
    "ScenarioConfig",
    "ScenarioInterval",
    "ScenarioSource",
    "VariationScope",
    "load_availability_series",
    "load_demand_series",
    "load_tiers_file",
    "profile_value",
    "waterfill",
]
