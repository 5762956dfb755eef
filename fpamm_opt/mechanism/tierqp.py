"""The within-tier QP solved exactly from its optimality conditions (an active-set method).

The reference rule of MECHANISM.md section 3 clears one tier with

    min  sum_i w_i (d_i - x_i)^2 / (2 d_i)        (i in the tier, d_i > 0)
    s.t. (x, p) in X(t), earlier tiers fixed, later tiers at 0 [, sum_tier x >= q]

HiGHS's QP solver takes about 17 ms for it on IEEE-118 and does not hot-start, while the
fixed point of the clearing operator solves it several times per scarce interval with nearly
the same weights. This module solves the same problem from its KKT conditions in the PTDF
form of ``X(t)`` (the same set as B-θ), with dense algebra on a system whose size is the
number of *binding* constraints, and certifies every answer.

Optimality conditions (``H`` the PTDF, ``β_b = λ_k(b) - Σ_l μ_l H_lb`` the bus price)
--------------------------------------------------------------------------------------
- tier node ``i``: ``u_i = clip(ρ_i / w_i, 0, 1)`` with ``ρ_i = β_b(i) - η``, i.e.
  ``x_i = d_i (1 - u_i)``;
- generator ``g``: ``π_g = β_b(g)``; ``π_g > 0`` ⇒ ``p_g`` at its upper bound, ``π_g < 0`` ⇒
  at its lower bound, strictly inside ⇒ ``π_g = 0``;
- branch ``l``: ``μ_l > 0`` ⇒ flow at its upper limit, ``μ_l < 0`` ⇒ at its lower limit;
- tier energy (``TierEnergy.MAX`` only): ``η >= 0``, ``η > 0`` ⇒ ``Σ x = q``;
- primal feasibility: per-island balance, flow limits, generator bounds.

For a convex QP these are sufficient: a point that satisfies them is *the* optimum (the
served loads are unique; the objective is strictly convex in them). :func:`kkt_violation`
measures every condition from the numbers alone, and :class:`TierQP` returns a point only
when all of them hold within tolerance. Otherwise it says so, and the caller solves the QP
with the solver (:class:`fpamm_opt.problem.AllocationProblem` does).

Search (primal-dual active set)
-------------------------------
Given the binding branches (with their side), the free generators, the free nodes and whether
``η`` is active, the conditions are linear in ``(λ, μ_B, η, p_free)``: one small dense solve.
The guess is then corrected (nodes re-clipped by their new price, violated branches added,
branches with a multiplier of the wrong sign dropped, a generator whose price has the wrong
sign for its bound freed, a free generator outside its bounds fixed) until nothing changes.
Warm-started from the previous solution of the same tier (the fixed point changes weights
only slightly) it usually stops after one solve.

Scope: the plain blocks only. A user extension adds constraints this module does not know,
so :class:`~fpamm_opt.problem.AllocationProblem` does not use it when there are extensions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fpamm_opt.network import NetworkData

__all__ = ["ActiveSet", "TierQP", "TierQPResult", "kkt_violation"]


@dataclass
class ActiveSet:
    """A guess of which constraints bind at the optimum."""

    #: branch index -> +1 (at its upper limit) or -1 (at its lower limit)
    branches: dict[int, int] = field(default_factory=dict)
    #: generators strictly inside their bounds
    free_gens: set[int] = field(default_factory=set)
    #: tier energy row ``Σ x >= q`` binding (TierEnergy.MAX)
    energy: bool = False
    #: generators not free: True at the upper bound, False at the lower (None: from prices)
    gen_upper: np.ndarray | None = None
    #: node state: 0 free, 1 capped (x = 0), 2 full (x = d); None: all free
    node_state: np.ndarray | None = None

    def copy(self) -> ActiveSet:
        return ActiveSet(
            dict(self.branches),
            set(self.free_gens),
            self.energy,
            None if self.gen_upper is None else self.gen_upper.copy(),
            None if self.node_state is None else self.node_state.copy(),
        )

    def key(self) -> tuple:
        return (
            tuple(sorted(self.branches.items())),
            tuple(sorted(self.free_gens)),
            self.energy,
            None if self.gen_upper is None else self.gen_upper.tobytes(),
            None if self.node_state is None else self.node_state.tobytes(),
        )


@dataclass
class TierQPResult:
    """Outcome of :meth:`TierQP.solve`."""

    ok: bool
    served_mw: np.ndarray  #: all nodes: the tier's answer, the others as given
    p_gen_mw: np.ndarray
    flow_mw: np.ndarray
    iterations: int
    reason: str = ""  #: why no certified answer (empty when ok)
    active: ActiveSet | None = None  #: the final guess (warm start of the next solve)
    violation: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class KKTPoint:
    """A primal-dual point of the tier QP (see the module docstring for the symbols)."""

    served_mw: np.ndarray
    p_gen_mw: np.ndarray
    lam: np.ndarray  #: per island
    mu: np.ndarray  #: per branch (0 off the binding set)
    eta: float


class TierQP:
    """Exact solver of the within-tier QP on network ``net`` (plain DC-OPF block only).

    Parameters
    ----------
    net : NetworkData
    tol_mw : float
        Primal tolerance (MW) of the certificate: balance, flow limits, generator bounds,
        served loads.
    tol_price : float
        Dual tolerance, relative to the largest weight of the tier.
    max_iter : int
        Corrections of the active set before giving up.
    """

    def __init__(
        self,
        net: NetworkData,
        tol_mw: float = 1e-6,
        tol_price: float = 1e-9,
        max_iter: int = 30,
    ) -> None:
        self.net = net
        self.tol_mw = float(tol_mw)
        self.tol_price = float(tol_price)
        self.max_iter = int(max_iter)
        h = np.asarray(net.ptdf, dtype=float)
        self.h_node = np.ascontiguousarray(h[:, net.node_bus])
        self.h_gen = np.ascontiguousarray(h[:, net.gen_bus])
        islands, bus_isl = np.unique(net.bus_island, return_inverse=True)
        self.n_isl = int(islands.size)
        self.isl_node = bus_isl[net.node_bus]
        self.isl_gen = bus_isl[net.gen_bus]
        fixed = np.asarray(net.bus_fixed_withdrawal_mw, dtype=float)
        self.isl_fixed = np.bincount(bus_isl, weights=fixed, minlength=self.n_isl)
        # Flows are H (inj + shift_inj) - shift_flow with inj = gen - served - fixed.
        self.flow_const = h @ (np.asarray(net.shift_injection_mw) - fixed) - np.asarray(
            net.shift_flow_mw
        )
        self.flow_lo, self.flow_hi = net.flow_limits_mw()

    # ----------------------------------------------------------------- physics
    def flows(self, x: np.ndarray, p: np.ndarray) -> np.ndarray:
        return self.h_gen @ p - self.h_node @ x + self.flow_const

    def imbalance(self, x: np.ndarray, p: np.ndarray) -> np.ndarray:
        """Per island: generation - served load - fixed withdrawal (MW)."""
        gen = np.bincount(self.isl_gen, weights=p, minlength=self.n_isl)
        load = np.bincount(self.isl_node, weights=x, minlength=self.n_isl)
        return gen - load - self.isl_fixed

    def prices(
        self, lam: np.ndarray, mu_b: np.ndarray, branches: np.ndarray, eta: float, tier: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``ρ`` per node (η applies to tier nodes) and ``π`` per generator."""
        rho = lam[self.isl_node] - mu_b @ self.h_node[branches] - eta * tier
        pi = lam[self.isl_gen] - mu_b @ self.h_gen[branches]
        return rho, pi

    # ------------------------------------------------------------------ solve
    def guess_from(
        self,
        flow_mw: np.ndarray,
        p_gen_mw: np.ndarray,
        g_lo: np.ndarray,
        g_hi: np.ndarray,
        energy: bool,
    ) -> ActiveSet:
        """An initial active set read off a feasible point (e.g. the deliverable LP)."""
        tol = 10 * self.tol_mw
        f = np.asarray(flow_mw, dtype=float)
        br: dict[int, int] = {}
        for b in np.flatnonzero(f >= self.flow_hi - tol):
            br[int(b)] = 1
        for b in np.flatnonzero(f <= self.flow_lo + tol):
            br[int(b)] = -1
        p = np.asarray(p_gen_mw, dtype=float)
        free = (p > g_lo + tol) & (p < g_hi - tol)
        upper = p >= 0.5 * (g_lo + g_hi)
        return ActiveSet(br, set(np.flatnonzero(free).tolist()), energy, upper, None)

    def solve(
        self,
        d: np.ndarray,
        w: np.ndarray,
        tier: np.ndarray,
        served_fixed: np.ndarray,
        g_lo: np.ndarray,
        g_hi: np.ndarray,
        q_min: float | None = None,
        guess: ActiveSet | None = None,
        max_iter: int | None = None,
    ) -> TierQPResult:
        """Clear tier ``tier`` (bool mask) with weights ``w``; other nodes at ``served_fixed``.

        ``q_min``: the tier-energy row ``Σ_tier x >= q_min`` (TierEnergy.MAX), or None.
        """
        d = np.asarray(d, dtype=float)
        w = np.asarray(w, dtype=float)
        tier = np.asarray(tier, dtype=bool)
        g_lo = np.asarray(g_lo, dtype=float)
        g_hi = np.asarray(g_hi, dtype=float)
        var = tier & (d > 0)  # the QP's own nodes
        base_x = np.where(tier, 0.0, np.asarray(served_fixed, dtype=float))
        c = np.where(var, d / np.where(var, w, 1.0), 0.0)  # dx/dρ = -d/w on free nodes
        wmax = float(np.max(w[var])) if var.any() else 1.0
        tol_p = self.tol_price * max(wmax, 1.0)
        tol = self.tol_mw
        act = (guess or ActiveSet()).copy()
        act.energy = bool(act.energy and q_min is not None)
        if act.node_state is None or act.node_state.shape != d.shape:
            act.node_state = np.zeros(d.size, dtype=np.int8)
        act.node_state = np.where(var, act.node_state, 0).astype(np.int8)
        if act.gen_upper is None or act.gen_upper.shape != g_lo.shape:
            act.gen_upper = np.ones(g_lo.size, dtype=bool)
        seen: set[tuple] = set()
        restarted = False
        x = base_x.copy()
        p = np.where(act.gen_upper, g_hi, g_lo)
        limit = self.max_iter if max_iter is None else int(max_iter)
        for it in range(1, limit + 1):
            key = act.key()
            if key in seen:
                return self._fail(x, p, it, "the active-set search cycled", act)
            seen.add(key)
            sol = self._solve_linear(act, d, c, var, base_x, g_lo, g_hi, q_min)
            if sol is None:
                return self._fail(x, p, it, "singular or inconsistent active set", act)
            lam, mu_b, eta, x, p, rho, pi, consistent = sol
            if not consistent and not restarted and np.any(act.node_state[var] != 0):
                # No point satisfies the guess's equalities (clipped nodes cannot absorb the
                # balance or a binding branch); its prices mean nothing. Free every node once.
                act.node_state[:] = 0
                restarted = True
                continue
            changed = self._correct(
                act, d, w, var, x, p, rho, pi, mu_b, eta, g_lo, g_hi, q_min, tol, tol_p
            )
            if not changed:
                mu = np.zeros(self.net.n_branch)
                br = np.fromiter(act.branches, dtype=int, count=len(act.branches))
                mu[br] = mu_b
                point = KKTPoint(x, p, lam, mu, eta)
                viol = kkt_violation(self, point, d, w, tier, served_fixed, g_lo, g_hi, q_min)
                bad = {
                    k: v
                    for k, v in viol.items()
                    if v > (tol_p if k.startswith("dual") else 10 * tol)
                }
                if bad:
                    return self._fail(x, p, it, f"certificate failed: {bad}", act, viol)
                return TierQPResult(True, x, p, self.flows(x, p), it, "", act, viol)
        return self._fail(x, p, limit, "iteration limit", act)

    def _fail(self, x, p, it, reason, act, viol=None) -> TierQPResult:
        return TierQPResult(False, x, p, self.flows(x, p), it, reason, act, viol or {})

    def _solve_linear(self, act, d, c, var, base_x, g_lo, g_hi, q_min):
        """Solve the conditions that are linear for the guess ``act``; None if impossible."""
        nb, ng = len(act.branches), len(act.free_gens)
        br = np.fromiter(act.branches, dtype=np.intp, count=nb)
        side = np.fromiter(act.branches.values(), dtype=float, count=nb)
        gf = np.fromiter(act.free_gens, dtype=np.intp, count=ng)
        state = act.node_state
        fn = np.flatnonzero(var & (state == 0))
        K = self.n_isl
        ne = 1 if act.energy else 0
        nz = K + nb + ne + ng
        # x = x0 + D z on free nodes; p = p0 + z_p on free generators.
        x0 = base_x.copy()
        x0[var] = np.where(state[var] == 1, 0.0, d[var])
        p0 = np.where(act.gen_upper, g_hi, g_lo)
        p0[gf] = 0.0
        cn = c[fn]
        hb = self.h_node[br][:, fn]  # (nb, free nodes)
        D = np.zeros((fn.size, nz))
        D[np.arange(fn.size), self.isl_node[fn]] = -cn
        D[:, K : K + nb] = (hb * cn).T
        if ne:
            D[:, K + nb] = cn
        hg = self.h_gen[br][:, gf]  # (nb, free generators)
        M = np.zeros((nz, nz))
        r = np.empty(nz)
        pz = K + nb + ne  # first column of the free generators
        # (E1) island balance: Σ p - Σ x - fixed = 0
        if K == 1:
            M[0] = -D.sum(axis=0)
            M[0, pz:] = 1.0
            r[0] = self.isl_fixed[0] - p0.sum() + x0.sum()
        else:
            sn = (self.isl_node[fn] == np.arange(K)[:, None]).astype(float)
            M[:K] = -(sn @ D)
            M[:K, pz:] = self.isl_gen[gf] == np.arange(K)[:, None]
            gen0 = np.bincount(self.isl_gen, weights=p0, minlength=K)
            load0 = np.bincount(self.isl_node, weights=x0, minlength=K)
            r[:K] = self.isl_fixed - gen0 + load0
        # (E2) binding branches at their limit
        if nb:
            M[K : K + nb] = -(hb @ D)
            M[K : K + nb, pz:] += hg
            bound = np.where(side > 0, self.flow_hi[br], self.flow_lo[br])
            f0 = self.h_gen[br] @ p0 - self.h_node[br] @ x0 + self.flow_const[br]
            r[K : K + nb] = bound - f0
        # (E3) tier energy
        if ne:
            M[K + nb] = D.sum(axis=0)
            r[K + nb] = float(q_min) - float(x0[var].sum())
        # (E4) free generators: π_g = λ_k - Σ μ_l H_lg = 0
        if ng:
            M[pz + np.arange(ng), self.isl_gen[gf]] = 1.0
            M[pz:, K : K + nb] = -hg.T
            r[pz:] = 0.0
        z = self._lin_solve(M, r)
        if z is None:
            return None
        consistent = bool(np.all(np.abs(M @ z - r) <= 1e-6 + 1e-9 * np.abs(r)))
        lam = z[:K]
        mu_b = z[K : K + nb]
        eta = float(z[K + nb]) if ne else 0.0
        x = x0
        x[fn] += D @ z
        p = p0
        p[gf] = z[pz:]
        rho, pi = self.prices(lam, mu_b, br, eta, var)
        return lam, mu_b, eta, x, p, rho, pi, consistent

    @staticmethod
    def _lin_solve(M: np.ndarray, r: np.ndarray) -> np.ndarray | None:
        """``M z = r``; least squares (minimum norm) when ``M`` is singular.

        A degenerate guess (a binding branch no free node can move, two free generators the
        binding set does not separate) still gives a point; the corrections and the
        certificate decide what it is worth.
        """
        if r.size == 0:
            return np.zeros(0)
        z = np.linalg.lstsq(M, r, rcond=1e-12)[0]
        return z if np.all(np.isfinite(z)) else None

    def _correct(self, act, d, w, var, x, p, rho, pi, mu_b, eta, g_lo, g_hi, q_min, tol, tol_p):
        """Move the guess towards the conditions it violates; False when it violates none.

        In order, and returning after the first kind that needs a change: the nodes are
        re-clipped by their new prices (all at once: a semismooth Newton step on the box);
        free generators outside their bounds are fixed there; the most violated branch limit
        is added; the single most wrong-signed multiplier (branch, generator bound, tier
        energy) is released. One combinatorial change at a time keeps the search stable.
        """
        # nodes: re-clip by the new prices
        with np.errstate(divide="ignore", invalid="ignore"):
            u = np.where(var, rho / np.where(var, w, 1.0), 0.0)
        new = np.where(u >= 1.0, 1, np.where(u <= 0.0, 2, 0)).astype(np.int8)
        new = np.where(var, new, 0).astype(np.int8)
        # keep the state where the price sits on the boundary within tolerance
        edge1 = var & (np.abs(rho - w) <= tol_p)
        edge2 = var & (np.abs(rho) <= tol_p)
        keep = (edge1 & (act.node_state != 2)) | (edge2 & (act.node_state != 1))
        new = np.where(keep, act.node_state, new).astype(np.int8)
        if np.any(new != act.node_state):
            act.node_state = new
            return True
        # free generators outside their bounds
        out = False
        for g in list(act.free_gens):
            if p[g] > g_hi[g] + tol or p[g] < g_lo[g] - tol:
                act.free_gens.discard(g)
                act.gen_upper[g] = bool(p[g] > g_hi[g])
                out = True
        if out:
            return True
        # the most violated branch limit
        f = self.flows(x, p)
        scale = np.maximum(np.abs(self.flow_hi - self.flow_lo), 1.0)
        over = np.maximum(f - self.flow_hi, self.flow_lo - f) / scale
        if act.branches:
            over[np.fromiter(act.branches, dtype=int, count=len(act.branches))] = -np.inf
        b = int(np.argmax(over)) if over.size else -1
        if b >= 0 and over[b] * scale[b] > tol:
            act.branches[b] = 1 if f[b] > self.flow_hi[b] else -1
            return True
        # tier energy below its minimum
        if q_min is not None and not act.energy and float(x[var].sum()) < q_min - tol:
            act.energy = True
            return True
        # the most wrong-signed multiplier
        worst, what = tol_p, None
        for j, b in enumerate(act.branches):
            if -mu_b[j] * act.branches[b] > worst:
                worst, what = -mu_b[j] * act.branches[b], ("branch", b)
        fixed = np.ones(p.size, dtype=bool)
        if act.free_gens:
            fixed[list(act.free_gens)] = False
        fixed &= g_hi > g_lo + tol  # a generator with no room stays where it is
        wrong = np.where(fixed, np.where(act.gen_upper, -pi, pi), -np.inf)
        g = int(np.argmax(wrong)) if wrong.size else -1
        if g >= 0 and wrong[g] > worst:
            worst, what = wrong[g], ("gen", g)
        if act.energy and -eta > worst:
            worst, what = -eta, ("energy", 0)
        if what is None:
            return False
        kind, idx = what
        if kind == "branch":
            del act.branches[idx]
        elif kind == "gen":
            act.free_gens.add(idx)
        else:
            act.energy = False
        return True


def kkt_violation(
    qp: TierQP,
    point: KKTPoint,
    d: np.ndarray,
    w: np.ndarray,
    tier: np.ndarray,
    served_fixed: np.ndarray,
    g_lo: np.ndarray,
    g_hi: np.ndarray,
    q_min: float | None = None,
) -> dict[str, float]:
    """Largest violation of each optimality condition of the tier QP at ``point``.

    ``primal_*`` in MW; ``dual_*`` in price units (the weights' scale); ``stationarity`` in MW
    (distance of each tier node from ``d (1 - clip(ρ / w, 0, 1))``). All zero at the optimum.
    Computed from the numbers alone, whatever produced them.
    """
    d = np.asarray(d, dtype=float)
    w = np.asarray(w, dtype=float)
    tier = np.asarray(tier, dtype=bool)
    var = tier & (d > 0)
    x, p = point.served_mw, point.p_gen_mw
    big = 10 * qp.tol_mw  # "away from a bound" for complementarity
    out: dict[str, float] = {}
    out["primal_fixed_nodes"] = float(
        np.max(np.abs(np.where(tier, np.where(var, 0.0, x), x - served_fixed)), initial=0.0)
    )
    out["primal_node_bounds"] = float(np.max(np.maximum(-x[var], x[var] - d[var]), initial=0.0))
    out["primal_gen_bounds"] = float(np.max(np.maximum(g_lo - p, p - g_hi), initial=0.0))
    out["primal_balance"] = float(np.max(np.abs(qp.imbalance(x, p)), initial=0.0))
    f = qp.flows(x, p)
    out["primal_flows"] = float(np.max(np.maximum(qp.flow_lo - f, f - qp.flow_hi), initial=0.0))
    energy = float(x[var].sum())
    out["primal_energy"] = max(0.0, float(q_min) - energy) if q_min is not None else 0.0
    mu = np.asarray(point.mu, dtype=float)
    on = np.flatnonzero(mu != 0.0)
    rho, pi = qp.prices(np.asarray(point.lam), mu[on], on, point.eta, var)
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.clip(np.where(var, rho / np.where(var, w, 1.0), 0.0), 0.0, 1.0)
    out["stationarity"] = float(np.max(np.abs(x[var] - d[var] * (1.0 - u[var])), initial=0.0))
    # generators: a positive price needs the upper bound, a negative one the lower bound
    room_hi = g_hi - p > big
    room_lo = p - g_lo > big
    out["dual_gen"] = float(
        np.max(np.r_[pi[room_hi & (pi > 0)], -pi[room_lo & (pi < 0)]], initial=0.0)
    )
    # branches: μ > 0 needs the upper limit, μ < 0 the lower limit
    away_hi = qp.flow_hi - f > big
    away_lo = f - qp.flow_lo > big
    out["dual_branch"] = float(
        np.max(np.r_[mu[away_hi & (mu > 0)], -mu[away_lo & (mu < 0)]], initial=0.0)
    )
    eta = float(point.eta)
    dual_energy = max(0.0, -eta)
    if q_min is not None and eta > 0 and energy - float(q_min) > big:
        dual_energy = max(dual_energy, eta)
    if q_min is None and eta != 0.0:
        dual_energy = abs(eta)
    out["dual_energy"] = dual_energy
    return out
