"""The SimBench scenario source: a grid's own year of profiles, with forced outages.

Role
----
``[scenario] source = "simbench"`` with ``grid = "<SimBench code>"`` and ``[network] case =
"simbench:<the same code>"`` runs FP-AMM on a SimBench grid (optional package ``simbench``,
``pip install -e ".[simbench]"``) with its own time series instead of the synthetic Markov
scarcity chain of :mod:`fpamm_opt.scenario`:

Demand
    Each load's active power is its ``p_mw`` times its relative profile (``<profile>_pload``
    in ``net.profiles["load"]``), at SimBench's 15-minute resolution (a leap year: 35,136
    steps from 2016-01-01 00:00). A load node's demand is the sum over the loads at its bus.
    Some SimBench load profiles are net loads of the grids below and go negative (feed-in);
    a node's demand is clipped at 0 (the clipped energy is recorded in the manifest).
Renewables
    Each ``sgen`` (wind, PV, hydro, biomass) is available up to ``p_mw`` times its relative
    profile (``net.profiles["renewables"]``, or ``powerplants``), clipped into ``[0, pmax]``;
    the DC model may curtail it (docs/networks.md).
Conventional units
    Each ``gen`` and ``ext_grid`` (SimBench's power plants and the imports it models as
    external grids) is available at ``capacity_scale · pmax`` while in service and at 0 during a
    forced outage. SimBench's power-plant profiles are market dispatch, not availability, and
    are not used.
Forced outages
    A two-state Markov chain per conventional unit (in service / out), per interval of length
    ``Δt``: ``P(out → in) = Δt / MTTR`` (``MTTR = mean_repair_hours``) and ``P(in → out) =
    FOR/(1 - FOR) · Δt / MTTR`` (``FOR = forced_outage_rate``), so an outage lasts ``MTTR`` on
    average and a unit is out a fraction ``FOR`` of the time. The state at ``t = 0`` is drawn
    from that stationary distribution. One uniform per unit per interval on the scenario's
    ``outage`` stream, whatever the state, so a shorter horizon is a prefix of a longer one.
Capacity adequacy
    ``capacity_scale`` is the one knob: scarcity comes from high load and low renewables
    meeting a conventional fleet reduced by it and by outages, and from the network. No
    synthetic window or derating is applied (``window`` is null in every interval).
Tiers and priorities
    As for the synthetic scenario (seeded rule, or ``tiers_file``); ``demand_file`` and
    ``availability_file`` replace entries as there.

No Pyomo here (import rule); the simbench package is imported only through
:func:`fpamm_opt.network.simbench_case`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from fpamm_opt.errors import InputError
from fpamm_opt.network import (
    _BUS_TYPE,
    _GEN_BUS,
    _GEN_STATUS,
    SIMBENCH_PREFIX,
    NetworkData,
    SimbenchCase,
    simbench_case,
)
from fpamm_opt.scenario import Scenario, ScenarioConfig, ScenarioInterval, ScenarioSource

#: Conventional unit tables of a SimBench grid (subject to forced outages and the knob).
CONVENTIONAL_KINDS: tuple[str, ...] = ("ext_grid", "gen")

#: Rows per block when the whole year is scanned once (the clipped-energy summary).
_BLOCK = 4096


@dataclass(frozen=True, eq=False)
class SimbenchProfiles:
    """A SimBench grid's relative profiles, mapped onto a :class:`NetworkData`'s indices.

    Attributes
    ----------
    n_steps : int
        Length of the profiles (35,136 for a SimBench year).
    start, end : str
        Time stamps of the first and last step.
    load_rel : (n_steps, n_load_profiles) float
        Relative load profiles (only those some load uses).
    load_col, load_node : (n_load,) int
        Column of each load's profile; its load node (-1: not a load node).
    load_p_mw : (n_load,) float
        ``p_mw`` of each load.
    ren_rel : (n_steps, n_ren_profiles) float
        Relative renewable profiles (only those some ``sgen`` uses).
    sgen_col, sgen_gen : (n_sgen,) int
        Column of each sgen's profile; its generator index (-1: not a generator).
    sgen_p_mw : (n_sgen,) float
        ``p_mw`` of each sgen.
    conv_gen : (n_conv,) int
        Generator index of each conventional unit (``ext_grid`` then ``gen``).
    conv_kind : tuple of str
        Its table (``ext_grid`` or ``gen``).
    """

    n_steps: int
    start: str
    end: str
    load_rel: np.ndarray
    load_col: np.ndarray
    load_node: np.ndarray
    load_p_mw: np.ndarray
    ren_rel: np.ndarray
    sgen_col: np.ndarray
    sgen_gen: np.ndarray
    sgen_p_mw: np.ndarray
    conv_gen: np.ndarray
    conv_kind: tuple[str, ...]

    def demand_mw(self, t: int, n_node: int) -> np.ndarray:
        """Node demand of step ``t`` (MW, ``>= 0``)."""
        p = self.load_rel[t, self.load_col] * self.load_p_mw
        on = self.load_node >= 0
        d = np.bincount(self.load_node[on], weights=p[on], minlength=n_node)
        return np.maximum(d, 0.0)

    def renewable_mw(self, t: int) -> np.ndarray:
        """Available power of each mapped sgen at step ``t`` (MW, ``>= 0``; unclipped above)."""
        return np.maximum(self.ren_rel[t, self.sgen_col] * self.sgen_p_mw, 0.0)

    def clipped_demand_mwh(self, n_node: int, interval_h: float) -> float:
        """Energy of negative node demand over the whole year, clipped to 0 (MWh)."""
        on = self.load_node >= 0
        agg = np.zeros((self.load_col.size, n_node))
        agg[np.flatnonzero(on), self.load_node[on]] = 1.0
        total = 0.0
        for a in range(0, self.n_steps, _BLOCK):
            block = self.load_rel[a : a + _BLOCK][:, self.load_col] * self.load_p_mw
            total += float(np.minimum(block @ agg, 0.0).sum())
        return -total * interval_h


def _rel_columns(frame: pd.DataFrame, names: pd.Series, what: str) -> tuple[np.ndarray, np.ndarray]:
    """The relative profile columns ``names`` use: ``(values (T, k), column of each name)``.

    A missing profile name (NaN) is a constant 1, as in ``simbench.get_absolute_values``.
    """
    filled = names.fillna("__one__").astype(str)
    unique = sorted(set(filled))
    missing = [u for u in unique if u != "__one__" and u not in frame.columns]
    if missing:
        raise InputError(f"scenario: SimBench {what} profiles missing: {', '.join(missing[:5])}")
    cols = [
        frame[u].to_numpy(dtype=float) if u != "__one__" else np.ones(len(frame)) for u in unique
    ]
    values = np.column_stack(cols) if cols else np.zeros((len(frame), 0))
    pos = {u: k for k, u in enumerate(unique)}
    return values, np.array([pos[u] for u in filled], dtype=int)


def _gen_rows(case: SimbenchCase, net: NetworkData) -> np.ndarray:
    """NetworkData generator index of every raw generator row (-1: dropped)."""
    raw = case.raw
    bus_in = raw.bus[:, _BUS_TYPE] != 4
    kept_ids = set(raw.bus[bus_in, 0].astype(int).tolist())
    g_ok = (raw.gen[:, _GEN_STATUS] > 0) & np.array(
        [int(b) in kept_ids for b in raw.gen[:, _GEN_BUS]], dtype=bool
    )
    out = np.full(raw.gen.shape[0], -1, dtype=int)
    out[g_ok] = np.arange(int(g_ok.sum()))
    buses = raw.gen[g_ok, _GEN_BUS].astype(int)
    if int(g_ok.sum()) != net.n_gen or not np.array_equal(buses, net.bus_ids[net.gen_bus]):
        raise InputError(
            f"scenario.grid {case.code!r}: network {net.name!r} is not that SimBench grid "
            f"(set network.case = '{SIMBENCH_PREFIX}{case.code}')"
        )
    return out


def _element_rows(case: SimbenchCase, key: str, index: pd.Index) -> np.ndarray:
    """Raw row of each element of a table through pandapower's lookup (-1: none)."""
    look = case.lookups.get(key)
    if look is None:
        return np.full(len(index), -1, dtype=int)
    arr = np.asarray(look).astype(int)
    idx = index.to_numpy(dtype=int)
    return np.where(idx < arr.size, arr[np.minimum(idx, arr.size - 1)], -1)


def _load_nodes(case: SimbenchCase, net: NetworkData) -> np.ndarray:
    """Load node of each SimBench load (-1 where its bus is not a load node)."""
    raw = case.raw
    bus_in = raw.bus[:, _BUS_TYPE] != 4
    kept_pos = np.cumsum(bus_in) - 1
    look = np.asarray(case.lookups["bus"]).astype(int)
    ppc_row = look[case.net.load["bus"].to_numpy(dtype=int)]
    pos = np.where((ppc_row >= 0) & bus_in[np.maximum(ppc_row, 0)], kept_pos[ppc_row], -1)
    node = np.searchsorted(net.node_bus, pos)
    hit = (pos >= 0) & (node < net.n_node)
    hit[hit] &= net.node_bus[node[hit]] == pos[hit]
    return np.where(hit, node, -1)


def map_profiles(case: SimbenchCase, net: NetworkData) -> SimbenchProfiles:
    """Map a SimBench grid's profiles onto ``net`` (which must be that grid).

    Raises
    ------
    InputError
        When ``net`` is not the grid (generators or load nodes do not match).
    """
    sb = case.net
    gen_of_row = _gen_rows(case, net)
    load = sb.load
    load_rel, load_col = _rel_columns(sb.profiles["load"], load["profile"] + "_pload", "load")
    load_node = _load_nodes(case, net)
    base = np.bincount(
        load_node[load_node >= 0],
        weights=load["p_mw"].to_numpy(dtype=float)[load_node >= 0],
        minlength=net.n_node,
    )
    if not np.allclose(base, net.node_demand_mw, rtol=1e-6, atol=1e-6):
        raise InputError(
            f"scenario.grid {case.code!r}: the load nodes of network {net.name!r} do not match "
            f"the grid's loads (set network.case = '{SIMBENCH_PREFIX}{case.code}')"
        )
    ren = pd.concat(
        [sb.profiles["powerplants"].drop(columns="time"), sb.profiles["renewables"]], axis=1
    )
    ren_rel, sgen_col = _rel_columns(ren, sb.sgen["profile"], "renewable")
    sgen_row = _element_rows(case, "sgen_controllable", sb.sgen.index)
    sgen_gen = np.where(sgen_row >= 0, gen_of_row[np.maximum(sgen_row, 0)], -1)
    conv: list[np.ndarray] = []
    kinds: list[str] = []
    for kind in CONVENTIONAL_KINDS:
        rows = _element_rows(case, kind, sb[kind].index)
        g = np.where(rows >= 0, gen_of_row[np.maximum(rows, 0)], -1)
        conv.append(g[g >= 0])
        kinds.extend([kind] * int((g >= 0).sum()))
    times = sb.profiles["load"]["time"]
    return SimbenchProfiles(
        n_steps=len(times),
        start=str(times.iloc[0]) if len(times) else "",
        end=str(times.iloc[-1]) if len(times) else "",
        load_rel=load_rel,
        load_col=load_col,
        load_node=load_node,
        load_p_mw=load["p_mw"].to_numpy(dtype=float),
        ren_rel=ren_rel,
        sgen_col=sgen_col,
        sgen_gen=sgen_gen,
        sgen_p_mw=sb.sgen["p_mw"].to_numpy(dtype=float),
        conv_gen=np.concatenate(conv) if conv else np.zeros(0, dtype=int),
        conv_kind=tuple(kinds),
    )


class MarkovOutages:
    """Forced outages of ``n`` units: a two-state Markov chain each (module docstring).

    Parameters
    ----------
    n
        Number of units.
    forced_outage_rate
        Stationary probability of being out, ``FOR``.
    mean_repair_hours
        Mean outage length ``MTTR`` (h).
    interval_h
        Interval length ``Δt`` (h).
    rng
        The scenario's ``outage`` stream (``n`` uniforms per interval).
    """

    def __init__(
        self,
        n: int,
        forced_outage_rate: float,
        mean_repair_hours: float,
        interval_h: float,
        rng: np.random.Generator,
    ) -> None:
        self.n = int(n)
        self.rng = rng
        self.forced_outage_rate = float(forced_outage_rate)
        self.p_repair = float(interval_h) / float(mean_repair_hours)
        f = self.forced_outage_rate
        self.p_fail = f / (1.0 - f) * self.p_repair
        self.out: np.ndarray | None = None

    def step(self) -> np.ndarray:
        """The outage state of the next interval, ``(n,)`` bool (True: out)."""
        u = self.rng.random(self.n)
        if self.out is None:
            self.out = u < self.forced_outage_rate
        else:
            self.out = np.where(self.out, u >= self.p_repair, u < self.p_fail)
        return self.out.copy()


class SimbenchScenario(Scenario):
    """A :class:`~fpamm_opt.scenario.Scenario` from a SimBench grid (module docstring).

    Parameters
    ----------
    net
        The grid as :class:`NetworkData` (``network.case = "simbench:<code>"``).
    cfg
        ``source = "simbench"``, ``grid`` its code.
    seed
        Seeds the outages (``outage`` stream), the tiers and the priority draws.
    """

    def __init__(self, net: NetworkData, cfg: ScenarioConfig, seed: int = 0) -> None:
        if cfg.source is not ScenarioSource.SIMBENCH or cfg.grid is None:
            raise InputError("scenario: SimbenchScenario needs source = 'simbench' and a grid")
        super().__init__(net, cfg, seed)
        self.profiles = map_profiles(simbench_case(cfg.grid), net)
        self.interval_h = float(cfg.interval_minutes) / 60.0

    def check_horizon(self, n_intervals: int) -> None:
        """One :class:`InputError` line when the horizon is longer than the profiles."""
        if n_intervals > self.profiles.n_steps:
            raise InputError(
                f"run.intervals: {n_intervals} is longer than the {self.profiles.n_steps} "
                f"15-minute steps of SimBench grid {self.cfg.grid!r}"
            )

    def iter_intervals(self, n_intervals: int) -> Iterator[ScenarioInterval]:
        """Yield ``t = 0 .. n_intervals-1`` (sequential; a shorter horizon is a prefix)."""
        n = int(n_intervals)
        if n < 0:
            raise InputError(f"scenario: number of intervals must be >= 0, got {n_intervals!r}")
        self.check_horizon(n)
        c = self.cfg
        prof = self.profiles
        outages = MarkovOutages(
            prof.conv_gen.size,
            c.forced_outage_rate,
            c.mean_repair_hours,
            self.interval_h,
            self.stream("outage"),
        )
        conv_cap = c.capacity_scale * self._pmax[prof.conv_gen]
        ren = prof.sgen_gen >= 0
        ren_gen = prof.sgen_gen[ren]
        for t in range(n):
            yield self._interval(t, outages.step(), conv_cap, ren, ren_gen)

    def _interval(
        self,
        t: int,
        out: np.ndarray,
        conv_cap: np.ndarray,
        ren: np.ndarray,
        ren_gen: np.ndarray,
    ) -> ScenarioInterval:
        prof, pmax = self.profiles, self._pmax
        demand = prof.demand_mw(t, self.net.n_node)
        if self._demand is not None:
            self._demand.apply(t, demand)
        available = pmax.copy()
        available[ren_gen] = np.minimum(prof.renewable_mw(t)[ren], pmax[ren_gen])
        available[prof.conv_gen] = np.where(out, 0.0, conv_cap)
        outage = np.zeros(self.net.n_gen, dtype=bool)
        outage[prof.conv_gen] = out
        if self._avail is not None:
            self._avail.apply(t, available)
        return ScenarioInterval(
            t=t,
            demand_mw=demand,
            available_mw=available,
            window=None,
            state_scarce=False,
            outage=outage,
        )

    def describe(self) -> dict[str, Any]:
        """The synthetic scenario's summary plus the SimBench source's own."""
        out = super().describe()
        prof, c = self.profiles, self.cfg
        out["simbench"] = {
            "grid": c.grid,
            "steps": prof.n_steps,
            "start": prof.start,
            "end": prof.end,
            "loads": int((prof.load_node >= 0).sum()),
            "renewables": int((prof.sgen_gen >= 0).sum()),
            "conventional_units": {k: prof.conv_kind.count(k) for k in CONVENTIONAL_KINDS},
            "capacity_scale": c.capacity_scale,
            "forced_outage_rate": c.forced_outage_rate,
            "mean_repair_hours": c.mean_repair_hours,
            "outage_model": "two-state Markov chain per conventional unit (stationary start)",
            "negative_demand_clipped_mwh": prof.clipped_demand_mwh(
                self.net.n_node, self.interval_h
            ),
            "unused": "power-plant dispatch profiles; the synthetic chain's fields",
        }
        return out


__all__ = [
    "CONVENTIONAL_KINDS",
    "MarkovOutages",
    "SimbenchProfiles",
    "SimbenchScenario",
    "map_profiles",
]
