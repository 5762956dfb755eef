"""Network data: frozen arrays with units, built once per case.

Role
----
This module turns a case (a pandapower network name, a MATPOWER ``.m`` file or a pandapower
JSON file) into :class:`NetworkData`: a frozen, solver-free description of the DC network with
units in every name. It also derives everything linear-algebraic the rest of the package needs
(incidence, the bus susceptance matrix ``B``, the PTDF) exactly once, lazily, and caches it.

Conventions (``Convention``)
----------------------------
``MATPOWER``
    Series susceptance ``b = 1 / (x * tap)``; phase shifters inject ``-b * shift`` as in
    MATPOWER's ``makeBdc``; no angle-difference limits. This is what pandapower's ``rundcopp``
    solves.
``POWERMODELS``
    Series susceptance from the full impedance ``b = x / (r^2 + x^2)``; taps and shifts are
    ignored (as PowerModels' ``DCPPowerModel``); angle-difference limits ``angmin``/``angmax``
    are enforced.

pandapower networks as users bring them
---------------------------------------
A pandapower network is converted element by element (:func:`map_pandapower_elements`); every
element kind present is recorded with what it became in ``NetworkData.elements`` (and in the
``dcopf`` JSON and a run's manifest). Elements the DC model cannot represent are named in one
:class:`NetworkMappingWarning` line. See ``docs/networks.md``.

No Pyomo here (import rule); a solver is never needed to build or validate a network.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from fpamm_opt.errors import CaseError

#: Ratings at or above this value (MVA) are treated as "no rating" (pandapower's IEEE cases
#: carry 9900 MVA; MATPOWER uses 0 for unlimited).
UNLIMITED_RATING_MVA = 9000.0

#: Numerical bound (MW) replacing "no limit" on branch flows in optimisation models.
UNBOUNDED_FLOW_MW = 1e6

#: PTDF coefficient dropping: in row ``l``, entries with
#: ``|H_lb| < max(PTDF_DROP_ABS, PTDF_DROP_REL · max_b |H_lb|)`` are left out
#: (:func:`ptdf_keep_mask`) of the lazy rows (:mod:`fpamm_opt.lazyflow`); the flow error
#: this makes on a row is at most ``Σ_dropped |H_lb| |inj_b|``, and the lazy flow check,
#: which recomputes every flow exactly, gives a row its dropped entries back once it binds.
#: The full PTDF block of the Pyomo engine, which has no such check, drops only entries
#: below ``PTDF_DROP_ABS`` (numerical noise of the solve).
PTDF_DROP_ABS = 1e-10
PTDF_DROP_REL = 1e-6

#: Branches per sparse-LU solve when PTDF rows are generated in bulk (bounds memory to
#: ``PTDF_ROW_CHUNK · n_bus`` floats at a time).
PTDF_ROW_CHUNK = 256

#: Directory of case files shipped with the project (see ``data/README.md``).
DATA_DIR = Path(__file__).resolve().parent.parent / "data"

#: Default merit order ($/MWh, linear) for pandapower elements that carry no cost data
#: (``poly_cost``/``pwl_cost`` empty for the element): renewables first, then conventional
#: generators, then imports through external grids. Ties within a kind are left to the solver.
DEFAULT_COST_RENEWABLE = 0.0
DEFAULT_COST_GEN = 50.0
DEFAULT_COST_IMPORT = 100.0

#: pandapower element tables the DC model does not represent: set out of service on
#: conversion and named in one :class:`NetworkMappingWarning` line.
UNSUPPORTED_PANDAPOWER = (
    "storage",
    "dcline",
    "xward",
    "svc",
    "ssc",
    "tcsc",
    "vsc",
    "line_dc",
    "asymmetric_load",
    "asymmetric_sgen",
)

#: pandapower network constructors offered as built-in cases (all offline).
PANDAPOWER_CASES: tuple[str, ...] = (
    "case4gs",
    "case5",
    "case6ww",
    "case9",
    "case14",
    "case24_ieee_rts",
    "case30",
    "case_ieee30",
    "case33bw",
    "case39",
    "case57",
    "case89pegase",
    "case118",
    "case145",
    "case300",
    "case1354pegase",
    "case1888rte",
    "case2848rte",
    "case2869pegase",
    "case3120sp",
    "case6470rte",
    "case6495rte",
    "case6515rte",
    "case9241pegase",
    "GBnetwork",
    "GBreducednetwork",
    "iceland",
    "case_illinois200",
)


class NetworkMappingWarning(UserWarning):
    """Elements of a user's network that the DC model does not represent (one line)."""


@dataclass(frozen=True)
class ElementMapping:
    """What one kind of pandapower element became in the DC model.

    Attributes
    ----------
    kind : str
        pandapower table name (``sgen``, ``ext_grid``, ...).
    count : int
        In-service elements of that kind in the source network.
    became : str
        What they became (one phrase, with the defaults used).
    """

    kind: str
    count: int
    became: str

    def as_dict(self) -> dict[str, Any]:
        """JSON form ``{"kind", "count", "became"}``."""
        return {"kind": self.kind, "count": self.count, "became": self.became}


class Convention(enum.StrEnum):
    """Branch model of the DC approximation (see module docstring)."""

    MATPOWER = "matpower"
    POWERMODELS = "powermodels"


class RatingPolicy(enum.StrEnum):
    """Where branch ratings come from."""

    AUTO = "auto"  #: case ratings if the case has usable ones, otherwise derived
    CASE = "case"  #: the case's own ratings (possibly none: unlimited)
    DERIVED = "derived"  #: always derive ``max(alpha*|f_base|, f_min)`` from a base DC flow


@dataclass(frozen=True)
class RatingInfo:
    """How branch ratings were obtained (recorded in every run manifest)."""

    source: str  #: "case", "derived" or "none"
    alpha: float | None = None
    min_mw: float | None = None
    n_limited: int = 0

    def describe(self) -> str:
        if self.source == "derived":
            return (
                f"derived from a base DC flow: max({self.alpha}*|f_base|, {self.min_mw} MW) "
                f"on {self.n_limited} branches"
            )
        if self.source == "case":
            return f"from the case file ({self.n_limited} limited branches)"
        return "none (no branch has a usable rating)"


@dataclass(frozen=True, eq=False)
class NetworkData:
    """A DC network with units, 0-based internal indices, out-of-service elements removed.

    Attributes
    ----------
    name : str
        Case name (file stem or pandapower name).
    source : str
        How it was loaded (``pandapower:case57``, a file path).
    base_mva : float
        System MVA base.
    convention : Convention
        Branch model used for ``branch_b_pu`` and ``branch_shift_rad``.
    bus_ids : (n_bus,) int
        External bus numbers.
    bus_ref : (n_bus,) bool
        Angle reference bus of each island.
    bus_island : (n_bus,) int
        Connected-component id of each bus.
    bus_fixed_withdrawal_mw : (n_bus,) float
        Fixed withdrawal not subject to allocation: shunt conductance at 1 p.u. plus negative
        loads (which are injections).
    node_bus : (n_node,) int
        Bus index of each load node (a bus with positive base demand).
    node_demand_mw : (n_node,) float
        Base demand of each load node.
    gen_bus, gen_pmin_mw, gen_pmax_mw : (n_gen,)
        Generator bus index and active limits.
    gen_cost_c2, gen_cost_c1, gen_cost_c0 : (n_gen,)
        Polynomial cost ``c2 p^2 + c1 p + c0`` in $/MW^2h, $/MWh, $/h.
    gen_p_set_mw : (n_gen,)
        Set-point in the case file (used only for a base flow).
    branch_from, branch_to : (n_branch,) int
        Bus indices.
    branch_b_pu : (n_branch,) float
        DC series susceptance under ``convention`` (per unit on ``base_mva``).
    branch_shift_rad : (n_branch,) float
        Phase shift (zero under POWERMODELS).
    branch_rate_mw : (n_branch,) float
        Thermal rating, ``inf`` where unlimited.
    branch_angmin_rad, branch_angmax_rad : (n_branch,) float
        Angle-difference limits (``-inf``/``inf`` under MATPOWER).
    branch_ids : (n_branch,) int
        Row number of the branch in the source case (1-based).
    ratings : RatingInfo
        Where ``branch_rate_mw`` came from.
    elements : tuple of ElementMapping
        How each kind of source element was mapped (empty for MATPOWER files).
    mapping_warning : str
        The one-line warning naming unsupported elements ("" when none).
    branch_labels : tuple of str
        Source element of each case branch row (``"line 665, pandapower buses 1646-1650"``), by
        ``branch_ids - 1``; empty for MATPOWER files.
    """

    name: str
    source: str
    base_mva: float
    convention: Convention
    bus_ids: np.ndarray
    bus_ref: np.ndarray
    bus_island: np.ndarray
    bus_fixed_withdrawal_mw: np.ndarray
    node_bus: np.ndarray
    node_demand_mw: np.ndarray
    gen_bus: np.ndarray
    gen_pmin_mw: np.ndarray
    gen_pmax_mw: np.ndarray
    gen_cost_c2: np.ndarray
    gen_cost_c1: np.ndarray
    gen_cost_c0: np.ndarray
    gen_p_set_mw: np.ndarray
    branch_from: np.ndarray
    branch_to: np.ndarray
    branch_b_pu: np.ndarray
    branch_shift_rad: np.ndarray
    branch_rate_mw: np.ndarray
    branch_angmin_rad: np.ndarray
    branch_angmax_rad: np.ndarray
    branch_ids: np.ndarray
    ratings: RatingInfo = field(default_factory=lambda: RatingInfo("none"))
    elements: tuple[ElementMapping, ...] = ()
    mapping_warning: str = ""
    branch_labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, np.ndarray):
                v.setflags(write=False)

    # ---------------------------------------------------------------- sizes
    @property
    def n_bus(self) -> int:
        return int(self.bus_ids.shape[0])

    @property
    def n_node(self) -> int:
        return int(self.node_bus.shape[0])

    @property
    def n_gen(self) -> int:
        return int(self.gen_bus.shape[0])

    @property
    def n_branch(self) -> int:
        return int(self.branch_from.shape[0])

    @property
    def node_ids(self) -> np.ndarray:
        """External bus number of each load node (a node is named by its bus)."""
        return self.bus_ids[self.node_bus]

    @property
    def has_quadratic_cost(self) -> bool:
        return bool(np.any(self.gen_cost_c2 > 0))

    # ------------------------------------------------------- linear algebra
    @functools.cached_property
    def incidence(self) -> sp.csr_matrix:
        """Branch-bus incidence ``A`` (n_branch x n_bus): +1 at from, -1 at to."""
        n_l = self.n_branch
        rows = np.r_[np.arange(n_l), np.arange(n_l)]
        cols = np.r_[self.branch_from, self.branch_to]
        vals = np.r_[np.ones(n_l), -np.ones(n_l)]
        return sp.csr_matrix((vals, (rows, cols)), shape=(n_l, self.n_bus))

    @functools.cached_property
    def flow_sensitivity_mw(self) -> sp.csr_matrix:
        """``Bf`` in MW/rad: ``pf = Bf @ va - shift_flow_mw``."""
        return sp.diags(self.base_mva * self.branch_b_pu) @ self.incidence

    @functools.cached_property
    def shift_flow_mw(self) -> np.ndarray:
        """Flow offset of phase shifters, ``b * shift * base`` (MW); ``pf = Bf va - this``."""
        return _frozen(self.base_mva * self.branch_b_pu * self.branch_shift_rad)

    @functools.cached_property
    def bbus_mw(self) -> sp.csr_matrix:
        """Bus susceptance matrix ``B = A^T diag(b) A`` in MW/rad."""
        return (self.incidence.T @ self.flow_sensitivity_mw).tocsr()

    @functools.cached_property
    def shift_injection_mw(self) -> np.ndarray:
        """Equivalent bus injection of phase shifters (MW): ``A^T (b*shift*base)``."""
        return _frozen(np.asarray(self.incidence.T @ self.shift_flow_mw).ravel())

    @functools.cached_property
    def _reduced_lu(self) -> Any:
        keep = ~self.bus_ref
        b_red = self.bbus_mw[keep][:, keep].tocsc()
        if b_red.shape[0] == 0:
            return None
        return spla.splu(b_red)

    def angles_from_injections(self, injection_mw: np.ndarray) -> np.ndarray:
        """Bus angles (rad, reference buses at 0) for net injections (MW), any leading shape.

        ``injection_mw`` is generation minus withdrawal per bus; the phase-shifter injection
        is accounted for here. Each island must be balanced for the result to be meaningful.
        """
        inj = np.asarray(injection_mw, dtype=float)
        flat = inj.reshape(-1, self.n_bus)
        rhs = flat + self.shift_injection_mw
        keep = ~self.bus_ref
        va = np.zeros_like(flat)
        if self._reduced_lu is not None:
            va[:, keep] = self._reduced_lu.solve(np.ascontiguousarray(rhs[:, keep].T)).T
        return va.reshape(inj.shape)

    def flows_from_injections(self, injection_mw: np.ndarray) -> np.ndarray:
        """DC branch flows (MW, from-side) for net bus injections (MW); sparse solve."""
        va = self.angles_from_injections(injection_mw)
        flat = va.reshape(-1, self.n_bus)
        pf = (self.flow_sensitivity_mw @ flat.T).T - self.shift_flow_mw
        return pf.reshape(*np.shape(injection_mw)[:-1], self.n_branch)

    def ptdf_rows(self, branches: np.ndarray) -> np.ndarray:
        """Rows ``branches`` of the PTDF (``(len(branches), n_bus)``, MW/MW), without the
        dense matrix: one sparse-LU solve ``B_redᵀ X = Bf[branches]ᵀ`` for all of them.

        Equal to ``ptdf[branches]``; costs ``O(len(branches) · n_bus)`` memory. Callers
        asking for many rows should do so in chunks (:data:`PTDF_ROW_CHUNK`).
        """
        rows = np.asarray(branches, dtype=int)
        out = np.zeros((rows.size, self.n_bus))
        if self._reduced_lu is None or rows.size == 0:
            return out
        keep = np.flatnonzero(~self.bus_ref)
        bf = self.flow_sensitivity_mw[rows][:, keep].toarray()  # (k, n_keep)
        out[:, keep] = self._reduced_lu.solve(np.ascontiguousarray(bf.T), trans="T").T
        return out

    def ptdf_transpose_dot(self, flow_weights: np.ndarray) -> np.ndarray:
        """``PTDFᵀ @ flow_weights`` (``(n_bus,)``) with one sparse-LU solve, no dense PTDF.

        Used for nodal prices from flow-row duals (``λ - PTDFᵀ μ``).
        """
        mu = np.asarray(flow_weights, dtype=float)
        out = np.zeros(self.n_bus)
        if self._reduced_lu is None:
            return out
        keep = np.flatnonzero(~self.bus_ref)
        rhs = np.asarray(self.flow_sensitivity_mw.T @ mu).ravel()[keep]
        out[keep] = self._reduced_lu.solve(rhs)
        return out

    @functools.cached_property
    def ptdf(self) -> np.ndarray:
        """Dense PTDF (n_branch x n_bus, MW/MW), reference buses as slack of their island.

        Flows are ``ptdf @ (injection + shift_injection) - shift_flow``.
        """
        n = self.n_bus
        keep = np.flatnonzero(~self.bus_ref)
        out = np.zeros((self.n_branch, n))
        if self._reduced_lu is None:
            return _frozen(out)
        rhs = np.zeros((keep.size, keep.size))
        np.fill_diagonal(rhs, 1.0)
        x_red = self._reduced_lu.solve(rhs)  # inverse of reduced B
        bf = self.flow_sensitivity_mw.tocsc()[:, keep]
        out[:, keep] = np.asarray(bf @ x_red)
        return _frozen(out)

    def flow_limits_mw(self) -> tuple[np.ndarray, np.ndarray]:
        """Bounds of each branch flow (MW): ``|pf| <= rate`` and the angle-difference limits.

        ``pf = S_base b (Δθ - shift)`` makes ``angmin <= Δθ <= angmax`` a pair of bounds on
        ``pf``, so both DC formulations (and the NumPy checks) share one set of flow bounds.
        """
        rate = self.branch_rate_mw
        bb = self.base_mva * self.branch_b_pu
        with np.errstate(invalid="ignore"):
            a_lo = bb * (self.branch_angmin_rad - self.branch_shift_rad)
            a_hi = bb * (self.branch_angmax_rad - self.branch_shift_rad)
        ang_lo = np.where(bb >= 0, a_lo, a_hi)
        ang_hi = np.where(bb >= 0, a_hi, a_lo)
        ang_lo = np.where(np.isnan(ang_lo), -np.inf, ang_lo)
        ang_hi = np.where(np.isnan(ang_hi), np.inf, ang_hi)
        lo = np.maximum(-rate, ang_lo)
        hi = np.minimum(rate, ang_hi)
        # Unlimited flows get a finite bound that never binds: HiGHS's QP solver reports
        # "Solve error" on some feasible B-θ problems with free flow variables (seen on
        # pandapower case14 with quadratic costs, 4 of 50 random draws); bounded, all solve.
        return np.maximum(lo, -UNBOUNDED_FLOW_MW), np.minimum(hi, UNBOUNDED_FLOW_MW)

    # --------------------------------------------------------------- helpers
    def bus_injection_mw(self, p_gen_mw: np.ndarray, served_mw: np.ndarray) -> np.ndarray:
        """Net injection per bus: generation - served load - fixed withdrawal (MW)."""
        p = np.asarray(p_gen_mw, dtype=float)
        x = np.asarray(served_mw, dtype=float)
        lead = np.broadcast_shapes(p.shape[:-1], x.shape[:-1])
        gen = self._gen_to_bus @ p.reshape(-1, self.n_gen).T  # (n_bus, k)
        load = self._node_to_bus @ x.reshape(-1, self.n_node).T
        both = (gen - load).T  # (k, n_bus), k = prod(lead) or 1
        if not lead:
            return both[0] - self.bus_fixed_withdrawal_mw
        k = int(np.prod(lead))
        inj = (
            both.reshape(*lead, self.n_bus)
            if both.shape[0] == k
            else np.broadcast_to(both, (*lead, self.n_bus))
        )
        return inj - self.bus_fixed_withdrawal_mw

    @functools.cached_property
    def _gen_to_bus(self) -> sp.csr_matrix:
        n = self.n_gen
        return sp.csr_matrix((np.ones(n), (self.gen_bus, np.arange(n))), shape=(self.n_bus, n))

    @functools.cached_property
    def _node_to_bus(self) -> sp.csr_matrix:
        n = self.n_node
        return sp.csr_matrix((np.ones(n), (self.node_bus, np.arange(n))), shape=(self.n_bus, n))

    def with_ratings(
        self, policy: RatingPolicy | str, alpha: float = 1.2, min_mw: float = 5.0
    ) -> NetworkData:
        """A copy whose ratings follow ``policy`` (see MECHANISM.md section 5)."""
        policy = RatingPolicy(policy)
        limited = np.isfinite(self.branch_rate_mw)
        if policy is RatingPolicy.CASE or (policy is RatingPolicy.AUTO and limited.any()):
            return self
        if alpha <= 0 or min_mw < 0:
            raise CaseError(
                f"derived ratings need alpha > 0 and min_mw >= 0 (got {alpha}, {min_mw})"
            )
        f_base = self.base_flow_mw()
        rate = np.maximum(alpha * np.abs(f_base), min_mw)
        return dataclasses.replace(
            self,
            branch_rate_mw=rate,
            ratings=RatingInfo("derived", alpha=alpha, min_mw=min_mw, n_limited=self.n_branch),
        )

    def base_dispatch_mw(self) -> np.ndarray:
        """A balanced base dispatch: each island's base demand shared pro rata to ``pmax``.

        Documented choice (MECHANISM.md leaves the base flow open). Pro rata is the pattern
        the scenario's scarcity derating follows on average (available capacity is derated
        pro rata to ``pmax``), so ratings ``alpha |f_base|`` leave the normal operating
        range feasible (flows scale with the demand profile, peaking below ``alpha``) while
        the per-generator variation and forced outages of scarcity windows move the dispatch
        away from it and congest the network in different places from window to window.
        A merit-order base flow was tried first and rejected: it rates the lines around
        cheap-but-idle units at ``f_min``, which strands their output in every scarcity
        window and makes the fairness error a fixed artefact of location.
        """
        demand = np.zeros(self.n_bus)
        np.add.at(demand, self.node_bus, self.node_demand_mw)
        demand += self.bus_fixed_withdrawal_mw
        p = np.zeros(self.n_gen)
        isl_gen = self.bus_island[self.gen_bus]
        for isl in np.unique(self.bus_island):
            g = isl_gen == isl
            cap = self.gen_pmax_mw[g].astype(float)
            if cap.sum() > 0:
                p[g] = cap * float(demand[self.bus_island == isl].sum()) / cap.sum()
        return p

    def base_flow_mw(self) -> np.ndarray:
        """DC flows of the base demand served by :meth:`base_dispatch_mw`."""
        inj = self.bus_injection_mw(self.base_dispatch_mw(), self.node_demand_mw)
        return self.flows_from_injections(inj)

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "n_bus": self.n_bus,
            "n_node": self.n_node,
            "n_gen": self.n_gen,
            "n_branch": self.n_branch,
            "base_mva": self.base_mva,
            "convention": self.convention.value,
            "ratings": self.ratings.describe(),
            "demand_mw": float(self.node_demand_mw.sum()),
            "capacity_mw": float(self.gen_pmax_mw.sum()),
            "elements": [e.as_dict() for e in self.elements],
            "mapping_warning": self.mapping_warning,
        }


def ptdf_keep_mask(rows: np.ndarray, rel: float = PTDF_DROP_REL) -> np.ndarray:
    """Which PTDF entries a formulation keeps: ``|H_lb| >= max(abs, rel · max_b |H_lb|)``.

    Parameters
    ----------
    rows : (k, n_bus) array
        PTDF rows (:meth:`NetworkData.ptdf_rows`).
    rel : float
        Relative threshold (:data:`PTDF_DROP_REL`; 0 keeps all but numerical noise).

    Returns
    -------
    (k, n_bus) bool array
        ``True`` where the coefficient is kept (:data:`PTDF_DROP_ABS`, :data:`PTDF_DROP_REL`).
    """
    mag = np.abs(rows)
    cut = np.maximum(PTDF_DROP_ABS, rel * mag.max(axis=1, initial=0.0))
    return mag >= cut[:, None]


def _frozen(a: np.ndarray) -> np.ndarray:
    """Mark a cached array read-only: NetworkData instances are shared (``load_network``)."""
    a.setflags(write=False)
    return a


# ============================================================== loading ==
# MATPOWER column indices (0-based).
_BUS_I, _BUS_TYPE, _PD, _GS = 0, 1, 2, 4
_GEN_BUS, _PG, _PMAX, _PMIN, _GEN_STATUS = 0, 1, 8, 9, 7
_F_BUS, _T_BUS, _BR_R, _BR_X, _RATE_A, _TAP, _SHIFT, _BR_STATUS, _ANGMIN, _ANGMAX = (
    0,
    1,
    2,
    3,
    5,
    8,
    9,
    10,
    11,
    12,
)


@dataclass(frozen=True)
class RawCase:
    """MATPOWER-style arrays (``bus``, ``gen``, ``branch``, ``gencost``) before filtering."""

    name: str
    source: str
    base_mva: float
    bus: np.ndarray
    gen: np.ndarray
    branch: np.ndarray
    gencost: np.ndarray | None
    elements: tuple[ElementMapping, ...] = ()
    mapping_warning: str = ""
    branch_labels: tuple[str, ...] = ()


def list_cases() -> dict[str, list[str]]:
    """Built-in pandapower case names and the case files shipped in ``data/``."""
    shipped: list[str] = []
    if DATA_DIR.is_dir():
        shipped = sorted(
            str(p.relative_to(DATA_DIR.parent))
            for p in DATA_DIR.rglob("*")
            if p.suffix in (".m", ".json")
        )
    return {"pandapower": list(PANDAPOWER_CASES), "files": shipped}


def read_raw_case(case: str | Path) -> RawCase:
    """Read a case into MATPOWER arrays; raises :class:`CaseError` with one clear line."""
    text = str(case)
    path = Path(text)
    if path.suffix.lower() == ".m" or (path.exists() and path.suffix.lower() == ".m"):
        return _read_matpower_file(path)
    if path.suffix.lower() == ".json":
        return _read_pandapower_json(path)
    if path.exists():
        raise CaseError(f"case file {text!r} is neither a MATPOWER .m nor a pandapower .json file")
    if text in PANDAPOWER_CASES:
        return _read_pandapower_name(text)
    if text.startswith(SIMBENCH_PREFIX):
        return simbench_case(text[len(SIMBENCH_PREFIX) :]).raw
    shipped = DATA_DIR / text
    if shipped.exists():
        return read_raw_case(shipped)
    raise CaseError(
        f"unknown case {text!r}: not a pandapower case name (see `fpamm cases`), "
        f"nor {SIMBENCH_PREFIX}<grid code>, nor an existing .m/.json file"
    )


def _read_matpower_file(path: Path) -> RawCase:
    if not path.exists():
        raise CaseError(f"case file {str(path)!r} does not exist")
    try:
        import matpowercaseframes as mcf  # declared dependency; pandapower needs it for .m

        cf = mcf.CaseFrames(str(path))
        bus = np.asarray(cf.bus.to_numpy(dtype=float))
        gen = np.asarray(cf.gen.to_numpy(dtype=float))
        branch = np.asarray(cf.branch.to_numpy(dtype=float))
        gencost = np.asarray(cf.gencost.to_numpy(dtype=float)) if hasattr(cf, "gencost") else None
        base = float(cf.baseMVA)
    except CaseError:
        raise
    except Exception as exc:  # the parser raises many types on a non-case file
        import re

        try:
            text = path.read_text(errors="replace")
        except OSError:
            text = ""
        for table, what in (("gen", "generator"), ("bus", "bus"), ("branch", "branch")):
            if re.search(rf"mpc\.{table}\s*=\s*\[\s*\]", text):
                raise CaseError(
                    f"case {path.stem!r} has no {what} (empty mpc.{table} table)"
                ) from None
        raise CaseError(
            f"{str(path)!r} is not a readable MATPOWER case ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no detail'})"
        ) from None
    return RawCase(path.stem, str(path), base, bus, gen, branch, gencost)


def _ppc_to_raw(
    name: str,
    source: str,
    ppc: dict[str, Any],
    elements: tuple[ElementMapping, ...] = (),
    mapping_warning: str = "",
    branch_labels: tuple[str, ...] = (),
) -> RawCase:
    gencost = ppc.get("gencost")
    return RawCase(
        name,
        source,
        float(ppc["baseMVA"]),
        np.asarray(ppc["bus"], dtype=float),
        np.asarray(ppc["gen"], dtype=float),
        np.asarray(ppc["branch"], dtype=float).real,
        None if gencost is None else np.asarray(gencost, dtype=float),
        elements,
        mapping_warning,
        branch_labels,
    )


def _in_service(table: Any) -> Any:
    """Rows of a pandapower element table that are in service (all rows if no column)."""
    if "in_service" in table.columns:
        return table[table["in_service"].fillna(False).astype(bool)]
    return table


def _has_cost(net: Any, et: str) -> np.ndarray:
    """Per row of table ``et``: does a ``poly_cost`` or ``pwl_cost`` entry name it?"""
    idx = net[et].index
    named: set[Any] = set()
    for tab in ("poly_cost", "pwl_cost"):
        if tab in net and len(net[tab]):
            costs = net[tab]
            named.update(costs.loc[costs["et"] == et, "element"].tolist())
    return np.array([i in named for i in idx], dtype=bool)


def _bool_column(table: Any, name: str, default: bool) -> np.ndarray:
    """A boolean column of a pandapower table, ``default`` where absent or missing."""
    if name not in table.columns:
        return np.full(len(table), default, dtype=bool)
    vals = table[name].to_numpy(dtype=object)
    return np.array([default if v is None or v != v else bool(v) for v in vals], dtype=bool)


def _fill_opf_columns(table: Any) -> None:
    """Reactive limits pandapower's OPF conversion requires of controllable elements.

    They play no part in the DC model; missing ones become ``±max_p_mw``.
    """
    pmax = np.abs(_column(table, "max_p_mw"))
    for col, sign in (("max_q_mvar", 1.0), ("min_q_mvar", -1.0)):
        q = _column(table, col)
        table[col] = np.where(np.isfinite(q), q, sign * np.nan_to_num(pmax))


def _column(table: Any, name: str) -> np.ndarray:
    """A float column of a pandapower table, NaN where absent."""
    if name in table.columns:
        return table[name].to_numpy(dtype=float, na_value=np.nan)
    return np.full(len(table), np.nan)


def map_pandapower_elements(net: Any) -> tuple[Any, tuple[ElementMapping, ...], list[str]]:
    """Map a user's pandapower network onto the DC model, element by element.

    The network is copied; the copy is what pandapower's own converter (``to_ppc`` in its
    OPF mode) then turns into MATPOWER arrays. Elements that carry cost data are left to
    pandapower's OPF rules, so networks converted from MATPOWER (pandapower's IEEE and PGLib
    cases, every element costed) convert exactly as before. Elements without cost data get:

    - ``sgen`` (renewables) not ``controllable``: generation available up to ``p_mw *
      scaling`` (curtailable down to 0), at :data:`DEFAULT_COST_RENEWABLE`. pandapower's
      converter would make them negative load (not curtailable). Exception: an sgen
      *declared* ``controllable=False`` in a network that carries cost data (pandapower's
      MATPOWER-derived cases) stays a fixed injection at ``p_mw``, as pandapower's OPF has it.
    - ``gen``: dispatchable in ``[min_p_mw, max_p_mw]``; a missing ``max_p_mw`` becomes
      ``sn_mva`` (else ``p_mw``), a missing ``min_p_mw`` 0; :data:`DEFAULT_COST_GEN`.
    - ``ext_grid``: an import in ``[min_p_mw, max_p_mw]``; a missing ``max_p_mw`` becomes the
      network's total load (the grid can supply all of it), a missing ``min_p_mw`` 0 (no
      export); :data:`DEFAULT_COST_IMPORT`.

    Controllable loads are held at their ``p_mw`` (demand is what FP-AMM allocates). Tables
    in :data:`UNSUPPORTED_PANDAPOWER` are set out of service and returned by name.

    Parameters
    ----------
    net : pandapowerNet
        The network as the user brings it (not modified).

    Returns
    -------
    mapped : pandapowerNet
        The prepared copy.
    elements : tuple of ElementMapping
        Each element kind present, its in-service count and what it became.
    unsupported : list of str
        ``"<count> <kind>"`` for each unsupported kind present (empty when none).
    """
    net = copy_net(net)
    out: list[ElementMapping] = []
    costed_net = bool(len(net.poly_cost) if "poly_cost" in net else 0) or bool(
        len(net.pwl_cost) if "pwl_cost" in net else 0
    )
    load = _in_service(net.load)
    total_load = float((load["p_mw"] * load.get("scaling", 1.0)).clip(lower=0).sum())
    _map_passive(net, out)
    if len(net.gen):
        _record(out, net, "gen", _map_gen(net))
    if len(net.sgen):
        _record(out, net, "sgen", _map_sgen(net, costed_net))
    if len(net.ext_grid):
        _record(out, net, "ext_grid", _map_ext_grid(net, total_load))
    unsupported: list[str] = []
    for kind in UNSUPPORTED_PANDAPOWER:
        if kind in net and len(net[kind]) and "in_service" in net[kind].columns:
            n = len(_in_service(net[kind]))
            if n:
                unsupported.append(f"{n} {kind}")
                out.append(ElementMapping(kind, n, "not modelled (set out of service)"))
                net[kind]["in_service"] = False
    return net, tuple(out), unsupported


def _record(out: list[ElementMapping], net: Any, kind: str, became: str) -> None:
    """Append what ``kind`` became to ``out`` when ``net`` has in-service elements of it."""
    n = len(_in_service(net[kind])) if kind in net else 0
    if n:
        out.append(ElementMapping(kind, n, became))


def _map_passive(net: Any, out: list[ElementMapping]) -> None:
    """Buses, branches, switches, loads and shunts (mutates the copy ``net``)."""
    _record(out, net, "bus", "bus (out-of-service buses dropped)")
    for kind in ("line", "trafo", "trafo3w", "impedance"):
        became = "branch (DC series reactance, pandapower's converter)"
        if kind != "impedance" and kind in net and len(net[kind]):
            # pandapower's OPF conversion rates a branch at max_loading_percent of its rated
            # current (lines) or power (transformers) and leaves it unrated without one.
            mlp = _column(net[kind], "max_loading_percent")
            miss = ~np.isfinite(mlp)
            if miss.any():
                net[kind]["max_loading_percent"] = np.where(miss, 100.0, mlp)
                became += f"; {int(miss.sum())} without max_loading_percent: rated at 100%"
        _record(out, net, kind, became)
    n_switch = len(net.switch) if "switch" in net else 0
    if n_switch:
        out.append(
            ElementMapping("switch", n_switch, "topology: closed bus-bus switches fuse buses")
        )
    if _bool_column(net.load, "controllable", False).any():
        net.load["controllable"] = False
        _record(
            out, net, "load", "demand held at p_mw (controllable loads treated as fixed demand)"
        )
    else:
        _record(out, net, "load", "demand at its bus (allocatable node demand)")
    for kind in ("motor", "ward"):
        _record(out, net, kind, "load at its bus and shunt (pandapower's converter)")
    if "shunt" in net and len(_in_service(net.shunt)):
        sh = _in_service(net.shunt)
        p_sh = np.abs(_column(sh, "p_mw")) > 0
        became = (
            f"fixed withdrawal p_mw at 1 p.u. ({int(p_sh.sum())} with active power); "
            "reactive part only in the AC check"
        )
        _record(out, net, "shunt", became)


def _map_gen(net: Any) -> str:
    """``gen``: dispatchable in its limits, missing ones and costs filled; what it became."""
    import pandapower as pp

    gen = net.gen
    bare = ~_has_cost(net, "gen")
    pmax, pmin = _column(gen, "max_p_mw"), _column(gen, "min_p_mw")
    sn, p = _column(gen, "sn_mva"), _column(gen, "p_mw")
    fill_max = bare & ~np.isfinite(pmax)
    default_max = np.where(np.isfinite(sn) & (sn > 0), sn, p)
    net.gen["max_p_mw"] = np.where(fill_max, default_max, pmax)
    net.gen["min_p_mw"] = np.where(bare & ~np.isfinite(pmin), 0.0, pmin)
    if "controllable" in gen.columns:
        net.gen["controllable"] = _bool_column(gen, "controllable", True)
    _fill_opf_columns(net.gen)
    for i in gen.index[bare]:
        pp.create_poly_cost(net, i, "gen", cp1_eur_per_mw=DEFAULT_COST_GEN)
    n_bare = int((bare & gen["in_service"].to_numpy(dtype=bool)).sum())
    became = "dispatchable generation in [min_p_mw, max_p_mw] (non-controllable: at p_mw)"
    if n_bare:
        became += (
            f"; {n_bare} without cost at {DEFAULT_COST_GEN:g} $/MWh"
            f" ({int(fill_max.sum())} without max_p_mw: sn_mva)"
        )
    return became


def _map_sgen(net: Any, costed_net: bool) -> str:
    """``sgen``: curtailable renewables unless declared fixed in a costed network."""
    import pandapower as pp

    sgen = net.sgen
    ctrl = _bool_column(sgen, "controllable", False)
    declared = (
        ~sgen["controllable"].isna().to_numpy()
        if "controllable" in sgen.columns
        else np.zeros(len(sgen), dtype=bool)
    )
    scale = _column(sgen, "scaling")
    p_av = _column(sgen, "p_mw") * np.where(np.isfinite(scale), scale, 1.0)
    # Declared non-controllable in a costed network (pandapower's MATPOWER cases): kept
    # as pandapower's OPF keeps them, a fixed injection at p_mw.
    conv = ~ctrl & (p_av >= 0) & (~declared | (not costed_net))
    costed = _has_cost(net, "sgen")
    net.sgen["controllable"] = ctrl | conv
    net.sgen["max_p_mw"] = np.where(conv, p_av, _column(sgen, "max_p_mw"))
    net.sgen["min_p_mw"] = np.where(conv, 0.0, _column(sgen, "min_p_mw"))
    _fill_opf_columns(net.sgen)
    for i in sgen.index[conv & ~costed]:
        pp.create_poly_cost(net, i, "sgen", cp1_eur_per_mw=DEFAULT_COST_RENEWABLE)
    on = sgen["in_service"].to_numpy(dtype=bool)
    parts = []
    if (ctrl & on).any():
        parts.append(f"{int((ctrl & on).sum())} controllable: generation in their limits")
    if (conv & on).any():
        parts.append(
            f"{int((conv & on).sum())} non-controllable: generation available up to "
            f"p_mw*scaling, curtailable to 0, {DEFAULT_COST_RENEWABLE:g} $/MWh if no cost"
        )
    fixed = ~ctrl & ~conv & on
    if fixed.any():
        parts.append(
            f"{int(fixed.sum())} declared non-controllable in a costed network or with "
            "p_mw < 0: fixed injection at p_mw (pandapower's OPF rule)"
        )
    return "; ".join(parts)


def _map_ext_grid(net: Any, total_load: float) -> str:
    """``ext_grid``: an import up to the total load by default; what it became."""
    import pandapower as pp

    eg = net.ext_grid
    bare = ~_has_cost(net, "ext_grid")
    pmax, pmin = _column(eg, "max_p_mw"), _column(eg, "min_p_mw")
    fill_max = bare & ~np.isfinite(pmax)
    fill_min = bare & ~np.isfinite(pmin)
    net.ext_grid["max_p_mw"] = np.where(fill_max, total_load, pmax)
    net.ext_grid["min_p_mw"] = np.where(fill_min, 0.0, pmin)
    if "controllable" in eg.columns:
        net.ext_grid["controllable"] = True
    _fill_opf_columns(net.ext_grid)
    for i in eg.index[bare]:
        pp.create_poly_cost(net, i, "ext_grid", cp1_eur_per_mw=DEFAULT_COST_IMPORT)
    became = "import in [min_p_mw, max_p_mw]"
    if bare.any():
        became += f"; {int(bare.sum())} without cost at {DEFAULT_COST_IMPORT:g} $/MWh"
    if fill_max.any() or fill_min.any():
        became += (
            f"; {int(fill_max.sum())} without max_p_mw: total load {total_load:.1f} MW, "
            f"{int(fill_min.sum())} without min_p_mw: 0 (no export)"
        )
    return became


def copy_net(net: Any) -> Any:
    """A deep copy of a pandapower network (the user's object is never modified)."""
    import copy

    return copy.deepcopy(net)


def _net_to_raw(name: str, source: str, net: Any) -> RawCase:
    return _convert_net(name, source, net)[0]


def _convert_net(name: str, source: str, net: Any) -> tuple[RawCase, Any]:
    """The mapped network's MATPOWER arrays, and the mapped copy (it holds pandapower's
    element-to-row lookups ``_pd2ppc_lookups``)."""
    import logging

    from pandapower.converter.pypower import to_ppc

    logging.getLogger("pandapower").setLevel(logging.ERROR)
    try:
        mapped, elements, unsupported = map_pandapower_elements(net)
    except Exception as exc:
        raise CaseError(f"pandapower network {source!r} cannot be mapped: {exc}") from None
    note = ""
    if unsupported:
        note = f"network {name!r}: not modelled (set out of service): {', '.join(unsupported)}"
    try:
        ppc = to_ppc(mapped, init="flat", check_connectivity=False)
    except Exception as exc:
        raise CaseError(f"pandapower could not convert {source!r}: {exc}") from None
    dropped = _dropped_load_mw(mapped, np.asarray(ppc["bus"], dtype=float))
    if dropped[0]:
        drop = (
            f"{dropped[1]:.1f} MW of load on {dropped[0]} in-service buses without any branch "
            "(pandapower's converter isolates them)"
        )
        note = f"{note}; {drop}" if note else f"network {name!r}: {drop}"
    if note:
        warnings.warn(note, NetworkMappingWarning, stacklevel=3)
    labels = _branch_labels(mapped, len(ppc["branch"]))
    return _ppc_to_raw(name, source, ppc, elements, note, labels), mapped


def _branch_labels(net: Any, n_branch: int) -> tuple[str, ...]:
    """``"<table> <index>, pandapower buses a-b"`` per converted branch row (pandapower's lookup).

    pandapower's converter renumbers buses; the label gives the user's own numbers.
    """
    look = getattr(net, "_pd2ppc_lookups", {}).get("branch") or {}
    labels = [""] * n_branch
    for table, span in look.items():
        start, stop = int(span[0]), int(span[1])
        if table not in net or len(net[table]) == 0:
            continue
        idx = net[table].index.tolist()
        if len(idx) != stop - start:
            idx = _in_service(net[table]).index.tolist()
        if len(idx) != stop - start:  # not a one-to-one table: leave unlabelled
            continue
        ends = {"line": ("from_bus", "to_bus"), "trafo": ("hv_bus", "lv_bus")}.get(
            table, ("from_bus", "to_bus")
        )
        tab = net[table]
        for k, el in zip(range(start, min(stop, n_branch)), idx):
            if ends[0] in tab.columns and ends[1] in tab.columns:
                a, b = tab.at[el, ends[0]], tab.at[el, ends[1]]
                labels[k] = f"{table} {el}, pandapower buses {a}-{b}"
            else:
                labels[k] = f"{table} {el}"
    return tuple(labels) if any(labels) else ()


def _dropped_load_mw(net: Any, ppc_bus: np.ndarray) -> tuple[int, float]:
    """In-service buses with in-service load that the converter set out of service (type 4)."""
    lookup = net._pd2ppc_lookups.get("bus") if hasattr(net, "_pd2ppc_lookups") else None
    if lookup is None:
        return 0, 0.0
    load = _in_service(net.load)
    p = load["p_mw"].to_numpy(dtype=float) * _column(load, "scaling")
    p = np.where(np.isfinite(p), p, load["p_mw"].to_numpy(dtype=float))
    per_bus: dict[int, float] = {}
    for b, v in zip(load["bus"].to_numpy(dtype=int), p):
        if v > 0:
            per_bus[int(b)] = per_bus.get(int(b), 0.0) + float(v)
    on = set(_in_service(net.bus).index.tolist())
    n_ppc = ppc_bus.shape[0]

    def isolated(b: int) -> bool:
        k = int(lookup[b]) if b < len(lookup) else -1
        return k < 0 or k >= n_ppc or ppc_bus[k, _BUS_TYPE] == 4

    lost = [v for b, v in per_bus.items() if b in on and isolated(b)]
    return len(lost), float(sum(lost))


def _read_pandapower_name(name: str) -> RawCase:
    import pandapower.networks as pn

    net = getattr(pn, name)()
    return _net_to_raw(name, f"pandapower:{name}", net)


def _read_pandapower_json(path: Path) -> RawCase:
    if not path.exists():
        raise CaseError(f"case file {str(path)!r} does not exist")
    import pandapower as pp

    try:
        net = pp.from_json(str(path))
    except Exception as exc:
        raise CaseError(
            f"{str(path)!r} is not a pandapower JSON network ({type(exc).__name__})"
        ) from None
    return _net_to_raw(path.stem, str(path), net)


#: ``[network].case`` prefix of a SimBench grid: ``"simbench:1-EHV-mixed--0-no_sw"``.
SIMBENCH_PREFIX = "simbench:"

#: What to install for SimBench grids (the optional extra).
SIMBENCH_HINT = "SimBench grids need the optional package simbench: pip install -e '.[simbench]'"


@dataclass(frozen=True, eq=False)
class SimbenchCase:
    """A SimBench grid with its profiles, and its MATPOWER arrays after the element mapping.

    Attributes
    ----------
    code : str
        SimBench grid code.
    net : pandapowerNet
        The grid as SimBench gives it (with ``net.profiles``); do not modify.
    raw : RawCase
        Its MATPOWER arrays (:func:`map_pandapower_elements`, then pandapower's converter).
    lookups : dict
        pandapower's element-to-row lookups of the conversion (``bus``, ``gen``,
        ``ext_grid``, ``sgen_controllable``: arrays indexed by element index).
    """

    code: str
    net: Any
    raw: RawCase
    lookups: dict[str, Any]


def simbench_codes() -> list[str]:
    """Every SimBench grid code (needs the optional package simbench)."""
    try:
        import simbench
    except ImportError:
        raise CaseError(SIMBENCH_HINT) from None
    return list(simbench.collect_all_simbench_codes())


@functools.lru_cache(maxsize=2)
def simbench_case(code: str) -> SimbenchCase:
    """Load a SimBench grid by its code (cached); one :class:`CaseError` line on bad input.

    Parameters
    ----------
    code
        A SimBench code such as ``"1-EHV-mixed--0-no_sw"`` (``simbench.collect_all_simbench_codes()``).
    """
    codes = simbench_codes()
    if code not in codes:
        ehv = [c for c in codes if "-EHV-" in c or "-HV-" in c][:4]
        raise CaseError(
            f"unknown SimBench grid code {code!r} (e.g. {', '.join(ehv)}; "
            "simbench.collect_all_simbench_codes() lists all)"
        )
    import simbench

    try:
        net = simbench.get_simbench_net(code)
    except Exception as exc:  # the package raises many types on data problems
        raise CaseError(f"SimBench grid {code!r} cannot be loaded ({type(exc).__name__})") from None
    raw, mapped = _convert_net(code, f"{SIMBENCH_PREFIX}{code}", net)
    lookups = dict(getattr(mapped, "_pd2ppc_lookups", {}))
    return SimbenchCase(code, net, raw, lookups)


def load_network(
    case: str | Path,
    convention: Convention | str = Convention.MATPOWER,
    ratings: RatingPolicy | str = RatingPolicy.CASE,
    rating_alpha: float = 1.2,
    rating_min_mw: float = 5.0,
) -> NetworkData:
    """Load a case as :class:`NetworkData` (cached per arguments).

    Parameters
    ----------
    case
        pandapower case name, ``simbench:<grid code>`` (optional package simbench), or
        path to a MATPOWER ``.m`` or pandapower ``.json`` file.
    convention
        Branch model, see :class:`Convention`.
    ratings
        :class:`RatingPolicy`; ``auto`` derives ratings only where the case has none.
    """
    key = (
        str(case),
        Convention(convention),
        RatingPolicy(ratings),
        float(rating_alpha),
        float(rating_min_mw),
    )
    return _load_cached(*key)


@functools.lru_cache(maxsize=16)
def _load_cached(
    case: str, convention: Convention, ratings: RatingPolicy, alpha: float, min_mw: float
) -> NetworkData:
    raw = read_raw_case(case)
    net = network_from_raw(raw, convention)
    return net.with_ratings(ratings, alpha=alpha, min_mw=min_mw)


def network_from_raw(raw: RawCase, convention: Convention | str) -> NetworkData:
    """Filter, index and convert MATPOWER arrays into :class:`NetworkData`."""
    convention = Convention(convention)
    bus, gen, branch = raw.bus, raw.gen, raw.branch
    _check_raw(raw)
    bus_in = bus[:, _BUS_TYPE] != 4
    ext_ids = bus[:, _BUS_I].astype(int)
    if len(np.unique(ext_ids)) != len(ext_ids):
        raise CaseError(f"case {raw.name!r} has duplicate bus numbers")
    keep_ids = ext_ids[bus_in]
    pos = {b: k for k, b in enumerate(keep_ids)}

    def idx(col: np.ndarray) -> np.ndarray:
        return np.array([pos.get(int(b), -1) for b in col], dtype=int)

    g_bus = idx(gen[:, _GEN_BUS])
    g_ok = (gen[:, _GEN_STATUS] > 0) & (g_bus >= 0)
    br_f = idx(branch[:, _F_BUS])
    br_t = idx(branch[:, _T_BUS])
    br_ok = (branch[:, _BR_STATUS] > 0) & (br_f >= 0) & (br_t >= 0)
    if not g_ok.any():
        raise CaseError(f"case {raw.name!r} has no in-service generator")

    c2, c1, c0 = _gen_costs(raw, gen.shape[0])
    kb = bus[bus_in]
    pd_mw = kb[:, _PD]
    gs_mw = kb[:, _GS]  # MW at 1 p.u. voltage
    node_mask = pd_mw > 0
    fixed = gs_mw + np.where(pd_mw < 0, pd_mw, 0.0)

    br = branch[br_ok]
    b, shift, angmin, angmax = _branch_susceptance(raw.name, br, br_ok, convention)
    rate = br[:, _RATE_A].astype(float)
    rate = np.where((rate <= 0) | (rate >= UNLIMITED_RATING_MVA), np.inf, rate)
    n_lim = int(np.isfinite(rate).sum())

    n_bus = kb.shape[0]
    f, t = br_f[br_ok], br_t[br_ok]
    island = _islands(n_bus, f, t)
    gb = g_bus[g_ok]
    pmax = gen[g_ok, _PMAX]
    ref = _reference_buses(island, kb[:, _BUS_TYPE], gb, pmax)
    return NetworkData(
        name=raw.name,
        source=raw.source,
        base_mva=raw.base_mva,
        convention=convention,
        bus_ids=keep_ids.astype(int),
        bus_ref=ref,
        bus_island=island,
        bus_fixed_withdrawal_mw=fixed.astype(float),
        node_bus=np.flatnonzero(node_mask).astype(int),
        node_demand_mw=pd_mw[node_mask].astype(float),
        gen_bus=gb.astype(int),
        gen_pmin_mw=gen[g_ok, _PMIN].astype(float),
        gen_pmax_mw=np.maximum(pmax, 0.0).astype(float),
        gen_cost_c2=c2[g_ok],
        gen_cost_c1=c1[g_ok],
        gen_cost_c0=c0[g_ok],
        gen_p_set_mw=gen[g_ok, _PG].astype(float),
        branch_from=f.astype(int),
        branch_to=t.astype(int),
        branch_b_pu=b.astype(float),
        branch_shift_rad=shift.astype(float),
        branch_rate_mw=rate,
        branch_angmin_rad=angmin,
        branch_angmax_rad=angmax,
        branch_ids=(np.flatnonzero(br_ok) + 1).astype(int),
        ratings=RatingInfo("case" if n_lim else "none", n_limited=n_lim),
        elements=raw.elements,
        mapping_warning=raw.mapping_warning,
        branch_labels=raw.branch_labels,
    )


def _check_raw(raw: RawCase) -> None:
    """The tables a case needs are there, with finite values in the columns used."""
    bus, gen, branch = raw.bus, raw.gen, raw.branch
    if bus.ndim != 2 or bus.shape[0] == 0 or bus.shape[1] < 13:
        raise CaseError(f"case {raw.name!r} has no valid bus table")
    if gen.ndim != 2 or gen.shape[0] == 0:
        raise CaseError(f"case {raw.name!r} has no generator")
    if gen.shape[1] <= _PMIN:
        raise CaseError(f"case {raw.name!r} has no valid gen table")
    if not (np.isfinite(raw.base_mva) and raw.base_mva > 0):
        raise CaseError(f"case {raw.name!r}: baseMVA must be a positive number, got {raw.base_mva}")
    if branch.ndim != 2 or branch.shape[1] < 11:
        raise CaseError(f"case {raw.name!r} has no valid branch table")
    used = (
        ("bus", bus[:, [_BUS_I, _BUS_TYPE, _PD, _GS]]),
        ("gen", gen[:, [_GEN_BUS, _PG, _GEN_STATUS, _PMAX, _PMIN]]),
        ("branch", branch[:, [_F_BUS, _T_BUS, _BR_R, _BR_X, _RATE_A, _TAP, _SHIFT, _BR_STATUS]]),
    )
    for nm, arr in used:
        if not np.all(np.isfinite(arr)):
            raise CaseError(f"case {raw.name!r} has non-finite values in its {nm} table")


def _gen_costs(raw: RawCase, n_gen_all: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cost coefficients ``(c2, c1, c0)`` of every generator row (in service or not)."""
    # Costs: polynomial (model 2) up to quadratic; first n_gen rows are active power.
    c2 = np.zeros(n_gen_all)
    c1 = np.zeros(n_gen_all)
    c0 = np.zeros(n_gen_all)
    gc = raw.gencost
    if gc is not None and gc.size:
        if gc.ndim != 2 or gc.shape[1] < 4:
            raise CaseError(f"case {raw.name!r} has no valid gencost table")
        gc = gc[:n_gen_all]
        for k, row in enumerate(gc):
            head = row[[0, 3]]
            if not np.all(np.isfinite(head)) or np.any(head != np.floor(head)) or row[3] < 0:
                raise CaseError(
                    f"case {raw.name!r}: gencost row {k + 1} has an invalid model or "
                    f"number of cost terms ({row[0]}, {row[3]})"
                )
            model, ncost = int(row[0]), int(row[3])
            if model not in (1, 2):
                raise CaseError(
                    f"case {raw.name!r}: unknown cost model {model} for generator {k + 1}"
                )
            width = ncost if model == 2 else 2 * ncost
            terms = row[4 : 4 + width]
            if terms.size != width or not np.all(np.isfinite(terms)):
                raise CaseError(
                    f"case {raw.name!r}: gencost row {k + 1} needs {width} finite values "
                    "after its first four columns"
                )
            coefs = row[4 : 4 + ncost]
            if model == 2:
                if ncost > 3 and np.any(coefs[: ncost - 3] != 0):
                    raise CaseError(
                        f"case {raw.name!r}: generator {k + 1} has a cost polynomial of "
                        f"degree {ncost - 1}; only up to quadratic is supported"
                    )
                padded = np.r_[np.zeros(3), coefs][-3:]
                c2[k], c1[k], c0[k] = padded
            elif model == 1:
                # Convex piecewise linear: use the secant through its first and last points
                # (an LP-friendly summary); recorded by the caller via source.
                pts = row[4 : 4 + 2 * ncost].reshape(-1, 2)
                if pts.shape[0] >= 2 and pts[-1, 0] > pts[0, 0]:
                    slope = (pts[-1, 1] - pts[0, 1]) / (pts[-1, 0] - pts[0, 0])
                    c1[k] = slope
                    c0[k] = pts[0, 1] - slope * pts[0, 0]
            else:
                raise CaseError(
                    f"case {raw.name!r}: unknown cost model {model} for generator {k + 1}"
                )
    if np.any(c2 < 0):
        raise CaseError(f"case {raw.name!r} has a concave (negative quadratic) generator cost")

    return c2, c1, c0


def _branch_susceptance(
    name: str, br: np.ndarray, br_ok: np.ndarray, convention: Convention
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Series susceptance ``b`` (p.u.), phase shift and angle limits (rad) of the in-service
    branch rows ``br`` under ``convention``."""
    r, x = br[:, _BR_R], br[:, _BR_X]
    if convention is Convention.MATPOWER:
        tap = np.where(br[:, _TAP] == 0, 1.0, br[:, _TAP])
        with np.errstate(divide="ignore"):
            b = 1.0 / (x * tap)
        shift = np.deg2rad(br[:, _SHIFT])
        angmin = np.full(br.shape[0], -np.inf)
        angmax = np.full(br.shape[0], np.inf)
    else:
        z2 = r * r + x * x
        with np.errstate(divide="ignore", invalid="ignore"):
            b = x / z2
        shift = np.zeros(br.shape[0])
        if br.shape[1] > _ANGMAX:
            angmin = np.deg2rad(br[:, _ANGMIN])
            angmax = np.deg2rad(br[:, _ANGMAX])
            # PowerModels treats |limit| >= 360 degrees as none.
            angmin = np.where(angmin <= -2 * np.pi, -np.inf, angmin)
            angmax = np.where(angmax >= 2 * np.pi, np.inf, angmax)
        else:
            angmin = np.full(br.shape[0], -np.inf)
            angmax = np.full(br.shape[0], np.inf)
    if not np.all(np.isfinite(b)):
        bad = int(np.flatnonzero(~np.isfinite(b))[0])
        raise CaseError(
            f"case {name!r}: branch {int(np.flatnonzero(br_ok)[bad]) + 1} has zero reactance"
        )
    return b, shift, angmin, angmax


def _reference_buses(
    island: np.ndarray, types: np.ndarray, gb: np.ndarray, pmax: np.ndarray
) -> np.ndarray:
    """One reference bus per island: its slack bus, else its largest generator's bus, else
    its first bus."""
    n_bus = island.size
    ref = np.zeros(n_bus, dtype=bool)
    for isl in np.unique(island):
        members = np.flatnonzero(island == isl)
        slack = members[types[members] == 3]
        if slack.size:
            ref[slack[0]] = True
            continue
        on_island = np.isin(gb, members)
        if on_island.any():
            # No reference bus given (pandapower then refuses): use the largest generator's bus.
            ref[gb[on_island][np.argmax(pmax[on_island])]] = True
        else:
            ref[members[0]] = True

    return ref


def _islands(n_bus: int, f: np.ndarray, t: np.ndarray) -> np.ndarray:
    from scipy.sparse.csgraph import connected_components

    adj = sp.coo_matrix((np.ones(f.size), (f, t)), shape=(n_bus, n_bus))
    _, labels = connected_components(adj, directed=False)
    return labels.astype(int)


@dataclass(frozen=True)
class IslandBalance:
    """Demand and generation limits of one island (connected component) at full service.

    Attributes
    ----------
    island : int
        Component id (``NetworkData.bus_island``).
    bus_ids : tuple of int
        External numbers of its buses.
    demand_mw : float
        Base node demand plus fixed withdrawal (negative loads and shunts reduce it).
    pmin_mw, pmax_mw : float
        Sum of its generators' lower and upper limits.
    n_gen : int
        Its in-service generators.
    """

    island: int
    bus_ids: tuple[int, ...]
    demand_mw: float
    pmin_mw: float
    pmax_mw: float
    n_gen: int

    @property
    def short_mw(self) -> float:
        """Demand not coverable by the island's generation (MW, 0 when adequate)."""
        return max(self.demand_mw - self.pmax_mw, 0.0)

    @property
    def surplus_must_run_mw(self) -> float:
        """Generation forced above demand by lower limits (MW, 0 when none)."""
        return max(self.pmin_mw - self.demand_mw, 0.0)


def island_balances(
    net: NetworkData, demand_mw: np.ndarray | None = None, available_mw: np.ndarray | None = None
) -> list[IslandBalance]:
    """Per-island demand and generation limits (NumPy; no solver).

    Parameters
    ----------
    net : NetworkData
        The network.
    demand_mw : (n_node,) array, optional
        Node demand; default the base demand.
    available_mw : (n_gen,) array, optional
        Generator upper limits; default ``gen_pmax_mw``.

    Returns
    -------
    list of IslandBalance
        One per island, in island-id order.
    """
    d = net.node_demand_mw if demand_mw is None else np.asarray(demand_mw, dtype=float)
    g = net.gen_pmax_mw if available_mw is None else np.asarray(available_mw, dtype=float)
    n_isl = int(net.bus_island.max()) + 1 if net.n_bus else 0
    dem = np.bincount(net.bus_island[net.node_bus], weights=d, minlength=n_isl)
    dem = dem + np.bincount(net.bus_island, weights=net.bus_fixed_withdrawal_mw, minlength=n_isl)
    gi = net.bus_island[net.gen_bus]
    pmax = np.bincount(gi, weights=g, minlength=n_isl)
    pmin = np.bincount(gi, weights=net.gen_pmin_mw, minlength=n_isl)
    ng = np.bincount(gi, minlength=n_isl)
    return [
        IslandBalance(
            island=k,
            bus_ids=tuple(int(b) for b in net.bus_ids[net.bus_island == k]),
            demand_mw=float(dem[k]),
            pmin_mw=float(pmin[k]),
            pmax_mw=float(pmax[k]),
            n_gen=int(ng[k]),
        )
        for k in range(n_isl)
    ]


def _buses_text(ids: tuple[int, ...], limit: int = 4) -> str:
    head = ", ".join(str(b) for b in ids[:limit])
    return f"bus {head}" if len(ids) == 1 else f"buses {head}{', ...' if len(ids) > limit else ''}"


def adequacy_reason(
    net: NetworkData,
    demand_mw: np.ndarray | None = None,
    available_mw: np.ndarray | None = None,
    tol_mw: float = 1e-6,
) -> str | None:
    """Why full service is impossible before any branch limit is looked at, or ``None``.

    Names, in one line, the islands with demand but no generator, the islands whose
    generation is short of demand (by how many MW) and those whose generators' lower limits
    exceed demand.

    Parameters
    ----------
    net : NetworkData
        The network.
    demand_mw, available_mw : arrays, optional
        As in :func:`island_balances`.
    tol_mw : float
        Imbalances up to this size are ignored.

    Returns
    -------
    str or None
        ``None`` when every island can balance its demand.
    """
    parts: list[str] = []
    for isl in island_balances(net, demand_mw, available_mw):
        where = f"island {isl.island} ({len(isl.bus_ids)} buses: {_buses_text(isl.bus_ids)})"
        if isl.n_gen == 0 and isl.demand_mw > tol_mw:
            parts.append(f"{where} has {isl.demand_mw:.1f} MW of demand and no generator")
        elif isl.short_mw > tol_mw:
            parts.append(
                f"{where}: generation {isl.pmax_mw:.1f} MW is short of demand "
                f"{isl.demand_mw:.1f} MW by {isl.short_mw:.1f} MW"
            )
        elif isl.surplus_must_run_mw > tol_mw:
            parts.append(
                f"{where}: generators' lower limits {isl.pmin_mw:.1f} MW exceed demand "
                f"{isl.demand_mw:.1f} MW by {isl.surplus_must_run_mw:.1f} MW"
            )
    if not parts:
        return None
    more = f" (and {len(parts) - 3} more islands)" if len(parts) > 3 else ""
    return "; ".join(parts[:3]) + more
