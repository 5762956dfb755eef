"""Mechanism configuration: the choices (enums) and parameters of FP-AMM.

Role
----
:class:`MechanismConfig` holds every parameter of the per-interval clearing, the memory update,
the event trigger and the AMM price (docs/design.md, "Mechanism config"). It validates itself on
construction and raises :class:`~fpamm_opt.errors.InputError` with one clear message naming the
field (``mechanism.<field>``) and the offending value. :meth:`MechanismConfig.from_dict` builds
one from a spec table (TOML), accepting strings for the enum fields.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fpamm_opt.errors import InputError

__all__ = ["MechanismConfig", "Policy", "Rule", "WeightForm", "WeightSource"]


class WeightForm(enum.StrEnum):
    """How the inverse-fairness weight is computed from the memory (MECHANISM.md section 3)."""

    RAW = "raw"  #: ``phi = 1 - s``
    RELATIVE = "relative"  #: ``phi = clip(1 - s / M_tier, 0, 1)`` (shipped default)
    EQUAL = "equal"  #: ``w = 1`` (the equal-weight baseline's weights)


class WeightSource(enum.StrEnum):
    """What a node's within-tier weight rises with (MECHANISM.md section 3, the Fair Play rule).

    Each source gives a level ``s_hat_i`` in ``[0, 1]`` (RELATIVE: against the most-short node
    of the tier); the weight is ``w_i = 1 / (epsilon + 1 - s_hat_i)``.
    """

    #: The shortage memory: ``s_hat = s / max(max_{j in tier} s_j, s_floor)``.
    MEMORY = "memory"
    #: The positive under-service ``delta+ = max(D, 0) / sum_{tau<t} d dt`` of the deficit
    #: recursion: ``s_hat = delta+ / max(max_{j in tier} delta+_j, deficit_floor)`` (the
    #: default: on IEEE-14/57, seeds 0-4, T = 2000 it cut the limiting under-service 95% / 83%
    #: below equal weights on average, against 64% / 58% with the memory; docs/design.md).
    DEFICIT = "deficit"
    #: Per node the larger of the two levels above.
    BOTH = "both"

    @property
    def uses_memory(self) -> bool:
        """The weights read the memory."""
        return self is not WeightSource.DEFICIT

    @property
    def uses_deficit(self) -> bool:
        """The weights read the deficit."""
        return self is not WeightSource.MEMORY


class Rule(enum.StrEnum):
    """Within-tier allocation rule used by the allocator."""

    MAXMIN = "maxmin"  #: weighted max-min fair, successive LPs
    QP = "qp"  #: ``min sum_i w_i d_i u_i^2 / 2`` (reference rule)


class TierEnergy(enum.StrEnum):
    """How much energy a tier's within-tier rule must serve (MECHANISM.md section 3)."""

    #: The rule chooses over ``X(t)`` (earlier tiers fixed, later tiers at zero): the
    #: weighted leximin / weighted QP allocation, which may serve less than the tier's
    #: maximum when serving a remote node costs more than 1:1 (the shipped default).
    FREE = "free"
    #: The tier's served energy is first maximised and then held: the rule only
    #: redistributes the maximum (efficient, but leaves network-limited nodes short).
    MAX = "max"


class Policy(enum.StrEnum):
    """Which market is simulated (INTERFACE.md ``--policy``)."""

    FPAMM = "fpamm"  #: the mechanism: memory-driven weights and the fixed-point clearing
    EQUAL = "equal"  #: equal-weight baseline, identical pipeline with ``w = 1``
    LMP = "lmp"  #: memoryless least-cost market with one value of lost load


_ENUM_FIELDS: dict[str, type[enum.StrEnum]] = {
    "weight_form": WeightForm,
    "weight_source": WeightSource,
    "rule": Rule,
    "tier_energy": TierEnergy,
}
_INT_FIELDS = ("m_max", "audit_every")


@dataclass(frozen=True)
class MechanismConfig:
    """Parameters of FP-AMM (frozen; validated on construction).

    Attributes
    ----------
    beta : float
        Memory gain ``beta`` in ``(0, 1]`` (Thm 1 contraction rate ``1 - beta``).
    epsilon : float
        Weight offset ``epsilon > 0``; weights run from about 1 to ``1 / epsilon``.
    weight_form : WeightForm
        RAW, RELATIVE (default) or EQUAL.
    weight_source : WeightSource
        What the weights rise with: MEMORY, DEFICIT (default) or BOTH (see
        :class:`WeightSource`).
    s_floor : float
        Floor of the tier normaliser ``M_k = max(max_{j in k} s_j, s_floor)``, in ``(0, 1]``.
    deficit_floor : float
        Floor of the deficit normaliser ``M_k = max(max_{j in k} delta+_j, deficit_floor)``,
        in ``(0, 1]``.
    gamma_max : float
        Largest coupling ``gamma`` of the clearing operator, in ``(0, 1]``.
    q_target : float
        Contraction factor the adaptive coupling aims at, in ``(0, 1)``.
    tol : float
        Fixed-point stopping tolerance, relative to total demand (``r_m <= tol * sum d``).
    m_max : int
        Largest number of fixed-point iterations (operator applications), ``>= 1``.
    residual_floor : float
        Residuals below ``residual_floor * sum d`` are numerical noise and are not used as the
        denominator of a measured ratio ``q_hat``.
    rule : Rule
        Within-tier rule (MAXMIN successive LPs or QP).
    trigger_theta : float
        Event-trigger threshold ``theta >= 0`` (0 = clear every interval).
    audit_every : int
        Compute the exact clearing on every ``audit_every``-th held interval (0 = never).
    p_cap : float
        AMM price cap ($/MWh), ``>= 0``.
    voll : float
        Value of lost load ($/MWh) of the least-cost screen and the LMP baseline, ``> 0``.
    scarcity_tol : float
        An interval is scarce when the screen sheds more than ``scarcity_tol * sum d``.
    tier_energy : TierEnergy
        FREE (default): the within-tier rule chooses over ``X(t)``; MAX: the tier's maximum
        deliverable energy is served and the rule only redistributes it.
    """

    beta: float = 0.05
    epsilon: float = 0.05
    weight_form: WeightForm = WeightForm.RELATIVE
    weight_source: WeightSource = WeightSource.DEFICIT
    s_floor: float = 0.01
    deficit_floor: float = 1e-4
    gamma_max: float = 0.5
    q_target: float = 0.5
    tol: float = 1e-6
    m_max: int = 50
    residual_floor: float = 1e-6
    rule: Rule = Rule.MAXMIN
    trigger_theta: float = 0.0
    audit_every: int = 1
    p_cap: float = 1000.0
    voll: float = 10000.0
    scarcity_tol: float = 1e-6
    tier_energy: TierEnergy = TierEnergy.FREE

    def __post_init__(self) -> None:
        for name, kind in _ENUM_FIELDS.items():
            object.__setattr__(self, name, _as_enum(name, getattr(self, name), kind))
        self.validate()

    def validate(self) -> None:
        """Check every field; raise :class:`InputError` naming the first bad one.

        Raises
        ------
        InputError
            ``"mechanism.<field> must be ..., got <value>"``.
        """
        for f in dataclasses.fields(self):
            if f.name in _ENUM_FIELDS:
                continue
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise InputError(f"mechanism.{f.name} must be a number, got {value!r}")
            number = float(value)
            if not math.isfinite(number):
                raise InputError(f"mechanism.{f.name} must be a finite number, got {value!r}")
            if f.name in _INT_FIELDS:
                if not number.is_integer():
                    raise InputError(f"mechanism.{f.name} must be an integer, got {value!r}")
                object.__setattr__(self, f.name, int(number))
            else:
                object.__setattr__(self, f.name, number)
        checks: tuple[tuple[str, bool, str], ...] = (
            ("beta", 0.0 < self.beta <= 1.0, "in (0, 1]"),
            ("epsilon", self.epsilon > 0.0, "> 0"),
            ("s_floor", 0.0 < self.s_floor <= 1.0, "in (0, 1]"),
            ("deficit_floor", 0.0 < self.deficit_floor <= 1.0, "in (0, 1]"),
            ("gamma_max", 0.0 < self.gamma_max <= 1.0, "in (0, 1]"),
            ("q_target", 0.0 < self.q_target < 1.0, "in (0, 1)"),
            ("tol", self.tol > 0.0, "> 0"),
            ("m_max", self.m_max >= 1, ">= 1"),
            ("residual_floor", self.residual_floor >= 0.0, ">= 0"),
            ("trigger_theta", self.trigger_theta >= 0.0, ">= 0"),
            ("audit_every", self.audit_every >= 0, ">= 0"),
            ("p_cap", self.p_cap >= 0.0, ">= 0"),
            ("voll", self.voll > 0.0, "> 0"),
            ("scarcity_tol", self.scarcity_tol >= 0.0, ">= 0"),
        )
        for name, ok, what in checks:
            if not ok:
                raise InputError(f"mechanism.{name} must be {what}, got {getattr(self, name)!r}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MechanismConfig:
        """Build from a mapping (a spec's ``[mechanism]`` table).

        Enum fields accept their string values (case-insensitive); integers are accepted for
        float fields. Unknown keys are rejected.

        Raises
        ------
        InputError
            Unknown key, bad enum string or invalid value.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        for key in d:
            if key not in known:
                raise InputError(
                    f"unknown mechanism parameter mechanism.{key} "
                    f"(known: {', '.join(sorted(known))})"
                )
        kwargs: dict[str, Any] = {}
        for key, value in d.items():
            if key in _ENUM_FIELDS:
                kwargs[key] = _as_enum(key, value, _ENUM_FIELDS[key])
            else:
                kwargs[key] = value
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping (enum fields as their string values) for manifests."""
        out = dataclasses.asdict(self)
        for key in _ENUM_FIELDS:
            out[key] = str(out[key])
        return out


def _as_enum(name: str, value: Any, kind: type[enum.StrEnum]) -> Any:
    if isinstance(value, kind):
        return value
    if isinstance(value, str):
        try:
            return kind(value.strip().lower())
        except ValueError:
            pass
    choices = ", ".join(m.value for m in kind)
    raise InputError(f"mechanism.{name} must be one of {choices}, got {value!r}")
