"""Rationing of water-fill trials on tiers that cannot be fully served."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrialRationing:
    """Across intervals: how often a *weighted* tier (one that cannot be fully served) gets a
    water-fill trial.

    The success rate is an exponential average over about the last ten trials,
    ``rate <- 0.9 rate + 0.1 ok``. On a network whose scarcity always congests, trials almost
    never succeed; below ``min_rate`` only every ``probe``-th weighted tier is tried, so the
    rate can recover. Speed only: either path gives the rule's answer.

    Attributes
    ----------
    min_rate : float
        Below this rate trials are rationed.
    probe : int
        While rationed, every ``probe``-th turn is tried.
    rate : float
        Current success rate (starts at 1).
    turns : int
        Weighted tiers asked about so far.
    """

    min_rate: float = 0.2
    probe: int = 10
    rate: float = 1.0
    turns: int = 0

    def due(self) -> bool:
        """Whether this weighted tier gets a trial (counts one turn)."""
        self.turns += 1
        return self.rate >= self.min_rate or self.turns % self.probe == 0

    def record(self, ok: bool) -> None:
        """The outcome of a weighted tier's trial."""
        self.rate = 0.9 * self.rate + 0.1 * ok
