"""AC check of stored allocations: pandapower's AC power flow on sampled intervals of a run.

Role
----
FP-AMM's theorems, and T3 among them, guarantee DC feasibility only. This module answers a
power engineer's first question about a run: does the stored allocation also work in AC?
For each sampled executed interval it rebuilds the run's case as a pandapower network
(from the same MATPOWER arrays the DC model was built from, after the element mapping of
:func:`fpamm_opt.network.map_pandapower_elements`), sets

- each generator's active power to its stored dispatch (the reference generator of each
  island is the AC slack and also takes the losses), generators with no availability in the
  interval out of service (except reference generators);
- each load bus's active demand to its stored served load, and its reactive demand scaled by
  the same factor (each load keeps its own power factor);

runs :func:`pandapower.runpp` and reports convergence, the bus voltage range (p.u.) and the
largest branch loading (apparent power over the DC model's rating, %).

It is a realism indicator, not a theorem: a DC-feasible allocation may be AC-stressed
(voltages outside 0.9-1.1 p.u., branches above 100% once reactive flows and losses count) or
have no AC solution at all. It needs pandapower (which does not import Pyomo) and is kept
outside ``verify`` so that package stays free of the power-flow engine.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fpamm_opt.errors import RunDirectoryError
from fpamm_opt.network import NetworkData, NetworkMappingWarning, RawCase, read_raw_case

#: Bus voltage band (p.u.) called "in range" in the summary.
VM_RANGE_PU = (0.9, 1.1)

#: Branch loading (%) above which an interval counts as overloaded in the summary.
MAX_LOADING_PERCENT = 100.0

# MATPOWER column indices (0-based) used here.
_PD, _QD, _BUS_TYPE, _BUS_I = 2, 3, 1, 0
_GEN_BUS, _PG, _GEN_STATUS = 0, 1, 7


@dataclass(frozen=True)
class ACIntervalResult:
    """AC power flow of one stored interval.

    Attributes
    ----------
    t : int
        Interval.
    converged : bool
        Whether Newton-Raphson converged.
    vm_min_pu, vm_max_pu : float or None
        Bus voltage range (None when not converged).
    max_loading_percent : float or None
        Largest apparent-power loading of a rated branch (None when not converged or no
        branch is rated).
    max_loading_branch : int or None
        That branch's row number in the case (1-based, as ``NetworkData.branch_ids``).
    slack_p_mw : float or None
        Active power of the reference generators in AC (the stored dispatch plus losses).
    message : str
        Why it did not converge, or "".
    """

    t: int
    converged: bool
    vm_min_pu: float | None
    vm_max_pu: float | None
    max_loading_percent: float | None
    max_loading_branch: int | None
    slack_p_mw: float | None
    message: str = ""

    @property
    def in_range(self) -> bool:
        """Converged, voltages within :data:`VM_RANGE_PU`, no branch above 100%."""
        if not self.converged or self.vm_min_pu is None or self.vm_max_pu is None:
            return False
        lo, hi = VM_RANGE_PU
        load_ok = (
            self.max_loading_percent is None or self.max_loading_percent <= MAX_LOADING_PERCENT
        )
        return bool(lo <= self.vm_min_pu and self.vm_max_pu <= hi and load_ok)

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "t": self.t,
            "converged": self.converged,
            "vm_min_pu": self.vm_min_pu,
            "vm_max_pu": self.vm_max_pu,
            "max_loading_percent": self.max_loading_percent,
            "max_loading_branch": self.max_loading_branch,
            "slack_p_mw": self.slack_p_mw,
            "in_range": self.in_range,
            "message": self.message,
        }


@dataclass(frozen=True)
class ACReport:
    """The AC check of a run: one :class:`ACIntervalResult` per sampled interval."""

    run_dir: str
    case: str
    results: tuple[ACIntervalResult, ...]

    @property
    def n_converged(self) -> int:
        return sum(r.converged for r in self.results)

    @property
    def n_in_range(self) -> int:
        return sum(r.in_range for r in self.results)

    def summary(self) -> dict[str, Any]:
        """Convergence rate, voltage range and largest loading over the converged intervals."""
        conv = [r for r in self.results if r.converged]
        loads = [r.max_loading_percent for r in conv if r.max_loading_percent is not None]
        n = len(self.results)
        return {
            "run_dir": self.run_dir,
            "case": self.case,
            "sampled": n,
            "converged": len(conv),
            "convergence_rate": (len(conv) / n) if n else None,
            "in_range": self.n_in_range,
            "vm_min_pu": min((r.vm_min_pu for r in conv if r.vm_min_pu is not None), default=None),
            "vm_max_pu": max((r.vm_max_pu for r in conv if r.vm_max_pu is not None), default=None),
            "max_loading_percent": max(loads, default=None),
            "vm_range_pu": list(VM_RANGE_PU),
        }

    def as_dict(self) -> dict[str, Any]:
        """JSON form: the summary and every interval."""
        return {**self.summary(), "intervals": [r.as_dict() for r in self.results]}


def in_service_gen_rows(raw: RawCase) -> np.ndarray:
    """Rows of ``raw.gen`` that :func:`fpamm_opt.network.network_from_raw` keeps, in order.

    Parameters
    ----------
    raw : RawCase
        MATPOWER arrays of the case.

    Returns
    -------
    (n_gen,) int array
        Row numbers (0-based) of the in-service generators on in-service buses.
    """
    bus_on = raw.bus[:, _BUS_TYPE] != 4
    on_ids = set(raw.bus[bus_on, _BUS_I].astype(int).tolist())
    ok = (raw.gen[:, _GEN_STATUS] > 0) & np.array(
        [int(b) in on_ids for b in raw.gen[:, _GEN_BUS]], dtype=bool
    )
    return np.flatnonzero(ok)


def _ac_net(raw: RawCase, f_hz: float) -> Any:
    from pandapower.converter.pypower.from_ppc import from_ppc

    ppc = {
        "version": "2",
        "baseMVA": raw.base_mva,
        "bus": raw.bus.copy(),
        "gen": raw.gen.copy(),
        "branch": raw.branch.copy(),
    }
    return from_ppc(ppc, f_hz=f_hz, validate_conversion=False)


def _interval_case(
    raw: RawCase,
    net: NetworkData,
    t: int,
    p_gen_mw: np.ndarray,
    served_mw: np.ndarray,
    gen_available: np.ndarray | None,
) -> RawCase:
    """The case with interval ``t``'s stored dispatch and served load (reactive load scaled
    with it; unavailable generators out of service unless they are an island's reference)."""
    rows = in_service_gen_rows(raw)
    if rows.size != net.n_gen or np.shape(p_gen_mw) != (net.n_gen,):
        raise RunDirectoryError(
            f"interval {t}: {np.size(p_gen_mw)} stored generators, the case has {rows.size}"
        )
    bus = raw.bus.copy()
    gen = raw.gen.copy()
    bus_on = np.flatnonzero(bus[:, _BUS_TYPE] != 4)
    node_rows = bus_on[net.node_bus]
    base_pd = bus[node_rows, _PD]
    ratio = np.divide(
        np.asarray(served_mw, dtype=float), base_pd, out=np.zeros(net.n_node), where=base_pd > 0
    )
    bus[node_rows, _PD] = np.asarray(served_mw, dtype=float)
    bus[node_rows, _QD] = bus[node_rows, _QD] * ratio
    gen[rows, _PG] = np.asarray(p_gen_mw, dtype=float)
    ref_ids = set(net.bus_ids[net.bus_ref].tolist())
    if gen_available is not None:
        off = ~np.asarray(gen_available, dtype=bool)
        is_ref = np.array([int(b) in ref_ids for b in gen[rows, _GEN_BUS]], dtype=bool)
        gen[rows[off & ~is_ref], _GEN_STATUS] = 0
    return RawCase(raw.name, raw.source, raw.base_mva, bus, gen, raw.branch, None)


def ac_check_interval(
    raw: RawCase,
    net: NetworkData,
    t: int,
    p_gen_mw: np.ndarray,
    served_mw: np.ndarray,
    gen_available: np.ndarray | None = None,
    f_hz: float = 50.0,
) -> ACIntervalResult:
    """AC power flow of one allocation; never raises on a non-converging or absurd input.

    Parameters
    ----------
    raw : RawCase
        The case's MATPOWER arrays (:func:`fpamm_opt.network.read_raw_case`).
    net : NetworkData
        The run's DC network (for node buses and ratings).
    t : int
        Interval label.
    p_gen_mw : (n_gen,) array
        Stored dispatch.
    served_mw : (n_node,) array
        Stored served load.
    gen_available : (n_gen,) bool array, optional
        False for generators unavailable in the interval (taken out of service unless they
        are an island's reference).
    f_hz : float
        Network frequency (only shapes pandapower's line parameters).

    Returns
    -------
    ACIntervalResult
    """
    import pandapower as pp

    case = _interval_case(raw, net, t, p_gen_mw, served_mw, gen_available)
    try:
        ac = _ac_net(case, f_hz)
    except Exception as exc:
        return ACIntervalResult(t, False, None, None, None, None, None, f"conversion: {exc}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pp.runpp(ac, init="auto", max_iteration=30, numba=False)
    except Exception as exc:  # LoadflowNotConverged, singular Jacobian, ...
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return ACIntervalResult(t, False, None, None, None, None, None, f"not converged: {msg}")
    if not bool(ac.converged):
        return ACIntervalResult(t, False, None, None, None, None, None, "not converged")
    vm = ac.res_bus.vm_pu.to_numpy(dtype=float)
    vm = vm[np.isfinite(vm)]
    s_mva = _branch_apparent_mva(ac, raw.branch.shape[0])
    rate = np.full(raw.branch.shape[0], np.inf)
    rate[net.branch_ids - 1] = net.branch_rate_mw
    rated = np.isfinite(rate) & (rate > 0) & np.isfinite(s_mva)
    load_pct: float | None = None
    load_br: int | None = None
    if rated.any():
        pct = np.where(rated, s_mva / np.where(rated, rate, 1.0) * 100.0, -np.inf)
        k = int(np.argmax(pct))
        load_pct, load_br = float(pct[k]), k + 1
    slack = float(ac.res_ext_grid.p_mw.sum()) if len(ac.ext_grid) else None
    if vm.size == 0:
        return ACIntervalResult(t, False, None, None, None, None, None, "no bus voltage")
    return ACIntervalResult(t, True, float(vm.min()), float(vm.max()), load_pct, load_br, slack, "")


def _branch_apparent_mva(ac: Any, n_branch: int) -> np.ndarray:
    """Larger end's apparent power (MVA) per case branch row, NaN where unknown."""
    look = ac._from_ppc_lookups["branch"]
    out = np.full(n_branch, np.nan)
    cols = {
        "line": ("p_from_mw", "q_from_mvar", "p_to_mw", "q_to_mvar", "res_line"),
        "trafo": ("p_hv_mw", "q_hv_mvar", "p_lv_mw", "q_lv_mvar", "res_trafo"),
        "impedance": ("p_from_mw", "q_from_mvar", "p_to_mw", "q_to_mvar", "res_impedance"),
    }
    for row in range(min(n_branch, len(look))):
        et = str(look["element_type"].iat[row])
        if et not in cols:
            continue
        pf, qf, pt, qt, tab = cols[et]
        res = ac[tab]
        el = int(look["element"].iat[row])
        if el not in res.index:
            continue
        r = res.loc[el]
        out[row] = max(np.hypot(r[pf], r[qf]), np.hypot(r[pt], r[qt]))
    return out


def ac_check_run(
    run_dir: str | Path, sample: int = 20, seed: int = 0, f_hz: float = 50.0
) -> ACReport:
    """AC power flow of ``sample`` executed intervals of a run directory, drawn at random.

    Parameters
    ----------
    run_dir : str or Path
        A run directory (``fpamm run``).
    sample : int
        How many executed intervals to check (all when fewer); scarce intervals are drawn
        first, half of the sample at most, so stressed allocations are always looked at.
    seed : int
        Seed of the draw (reproducible).
    f_hz : float
        Network frequency.

    Returns
    -------
    ACReport
    """
    from fpamm_opt.io.reader import read_run
    from fpamm_opt.verify.context import RunContext

    if sample < 1:
        raise RunDirectoryError(f"the AC check needs a sample of at least 1 (got {sample})")
    run = read_run(run_dir)
    spec = RunContext.from_manifest(run.manifest).network
    if spec is None:
        raise RunDirectoryError(f"run directory {run_dir}: the manifest names no network case")
    logging.getLogger("pandapower").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NetworkMappingWarning)
        net = spec.load()
        raw = read_raw_case(spec.case)
    iv = run.intervals
    ex = iv[iv["executed"].astype(bool)] if "executed" in iv.columns else iv
    rng = np.random.default_rng(seed)
    scarce = ex["t"][ex["scarce"].astype(bool)].to_numpy() if "scarce" in ex else np.array([])
    normal = np.setdiff1d(ex["t"].to_numpy(), scarce)
    n_sc = min(scarce.size, max(sample // 2, sample - normal.size))
    pick = np.r_[
        rng.choice(scarce, n_sc, replace=False) if n_sc else np.array([], dtype=int),
        rng.choice(normal, min(sample - n_sc, normal.size), replace=False)
        if normal.size
        else np.array([], dtype=int),
    ].astype(int)
    pick.sort()
    gens = run.generators
    nodes = run.nodes
    gens = gens[gens["t"].isin(pick)].sort_values(["t", "gen"])
    nodes = nodes[nodes["t"].isin(pick)].sort_values(["t", "node"])
    out = []
    for t in pick:
        g = gens[gens["t"] == t]
        n = nodes[nodes["t"] == t]
        avail = g["available_mw"].to_numpy(dtype=float) > 0 if "available_mw" in g else None
        out.append(
            ac_check_interval(
                raw,
                net,
                int(t),
                g["p_mw"].to_numpy(dtype=float),
                n["served_mw"].to_numpy(dtype=float),
                avail,
                f_hz,
            )
        )
    return ACReport(str(run_dir), net.name, tuple(out))
