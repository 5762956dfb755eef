"""The engine contract: what :mod:`fpamm_opt.problem` asks of the thing that solves its model.

Role
----
An *engine* holds the per-interval Pyomo model (built once by
:func:`fpamm_opt.problem.build_model`), receives new numbers through a handful of setters and
solves. Two implement :class:`Engine`:

- :class:`fpamm_opt.problem.PyomoEngine` (``kind = EngineKind.PYOMO``): mutable ``Param``
  updates and a :mod:`fpamm_opt.solvers` adapter (any solver Pyomo knows);
- :class:`fpamm_opt.fastpath.HighsEngine` (``kind = EngineKind.HIGHS``): the same model
  compiled into arrays and driven in place through ``highspy``.

Both return :class:`LPSolution`. This module is the one both depend on (so neither imports
the other) and it stays free of Pyomo: NumPy only.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from fpamm_opt.mechanism.types import SolveStatus


class EngineKind(enum.StrEnum):
    """Which engine drives the model (``[solver].engine`` of a run spec).

    ``auto`` is the fast path when it can be used (solver ``highs`` and extensions without
    mutable parameters), ``pyomo`` otherwise.
    """

    AUTO = "auto"
    PYOMO = "pyomo"
    HIGHS = "highs"


@dataclass
class LPSolution:
    """Raw numbers of one engine solve.

    Attributes
    ----------
    status : SolveStatus
        What may be used (``OPTIMAL``) or why not.
    termination : str
        The solver's own word.
    pg, pl, pf : ndarray
        Generation ``(n_gen,)``, served load ``(n_node,)`` and branch flow ``(n_branch,)``
        (MW); NaN when the solve failed.
    level : float
        The max-min level ``λ`` of the allocation block.
    objective : float
        Objective value (NaN when the solve failed).
    solve_s : float
        Solver time (s).
    message : str
        What went wrong or which retry succeeded.
    balance_duals, level_duals, flow_duals : ndarray, optional
        Duals of ``eq_p_balance``, ``ineq_level`` and (PTDF only) ``eq_pf_ptdf`` when asked.
    """

    status: SolveStatus
    termination: str
    pg: np.ndarray
    pl: np.ndarray
    pf: np.ndarray
    level: float
    objective: float
    solve_s: float
    message: str = ""
    balance_duals: np.ndarray | None = None
    level_duals: np.ndarray | None = None
    flow_duals: np.ndarray | None = None  #: PTDF only: duals of ``eq_pf_ptdf``


class Engine(Protocol):
    """Pushes numbers into the per-interval model and solves it.

    The setters write the model's mutable parameters (names of
    :mod:`fpamm_opt.blocks.dcopf` and :mod:`fpamm_opt.blocks.allocation`); node arrays have
    shape ``(n_node,)``, generator arrays ``(n_gen,)``, all in MW or $/MWh.
    """

    #: Which engine this is (recorded in the run manifest as ``engine``).
    kind: EngineKind

    def set_demand(self, d: np.ndarray) -> None:
        """Demand ``pd`` (MW)."""
        ...

    def set_served_bounds(self, lo: np.ndarray, hi: np.ndarray) -> None:
        """Bounds ``pl_lo``, ``pl_hi`` of the served loads (MW)."""
        ...

    def set_gen_bounds(self, lo: np.ndarray, hi: np.ndarray) -> None:
        """Bounds ``pg_min``, ``pg_max`` of the generator outputs (MW)."""
        ...

    def set_level(self, coef: np.ndarray, rhs: np.ndarray) -> None:
        """Rows ``ineq_level``: ``x_i + coef_i λ >= rhs_i``."""
        ...

    def set_tier_total(self, member: np.ndarray, q: float) -> None:
        """Row ``ineq_tier_total``: ``Σ member_i x_i >= q``."""
        ...

    def set_objective(
        self,
        c_gen: np.ndarray,
        c_served: np.ndarray,
        c_level: float,
        q_served: np.ndarray | None = None,
        case_cost: bool = False,
    ) -> None:
        """The LP costs, the QP's diagonal ``q_served`` when given, or the case's own cost."""
        ...

    def set_weights(self, w: np.ndarray) -> None:
        """Fairness weights ``weight`` (kept in the model for extensions that read them)."""
        ...

    def solve(self, duals: bool = False, retry: bool = True) -> LPSolution:
        """Solve the model as it stands; duals when asked (and the solver gives them)."""
        ...


__all__ = ["Engine", "EngineKind", "LPSolution"]
