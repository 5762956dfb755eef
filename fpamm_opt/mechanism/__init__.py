"""FP-AMM mechanism in NumPy: memory, priority sampling, weights, clearing loop, triggers.

The allocator (a point of the DC-OPF set chosen by a rule) is injected through the
:class:`~fpamm_opt.mechanism.types.Allocator` protocol; nothing here imports Pyomo.
"""

from fpamm_opt.mechanism.clearing import ClearingResult, clear_interval
from fpamm_opt.mechanism.config import MechanismConfig, Policy, Rule, WeightForm, WeightSource
from fpamm_opt.mechanism.copperplate import CopperPlateAllocator, single_bus_network
from fpamm_opt.mechanism.deficit import DeficitState, update_deficit
from fpamm_opt.mechanism.engine import Mechanism, StepRecord
from fpamm_opt.mechanism.memory import shortfall_ratio, update_memory
from fpamm_opt.mechanism.price import amm_price
from fpamm_opt.mechanism.priority import plackett_luce
from fpamm_opt.mechanism.trigger import HoldChecker, TriggerState, trigger_vector
from fpamm_opt.mechanism.types import (
    Allocator,
    Dispatch,
    IntervalInput,
    SolveStatus,
)
from fpamm_opt.mechanism.weights import (
    WeightMap,
    coupled_memory,
    fairness_weights,
    tier_normalisers,
)

__all__ = [
    "Allocator",
    "ClearingResult",
    "CopperPlateAllocator",
    "DeficitState",
    "Dispatch",
    "HoldChecker",
    "IntervalInput",
    "Mechanism",
    "MechanismConfig",
    "Policy",
    "Rule",
    "SolveStatus",
    "StepRecord",
    "TriggerState",
    "WeightForm",
    "WeightMap",
    "WeightSource",
    "amm_price",
    "clear_interval",
    "coupled_memory",
    "fairness_weights",
    "plackett_luce",
    "shortfall_ratio",
    "single_bus_network",
    "tier_normalisers",
    "trigger_vector",
    "update_deficit",
    "update_memory",
]
