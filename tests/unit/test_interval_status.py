"""The interval status vocabulary (manifest version 4) and its reading of older runs."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pytest

from fpamm_opt.mechanism.clearing import clear_interval
from fpamm_opt.mechanism.config import MechanismConfig, Policy
from fpamm_opt.mechanism.copperplate import CopperPlateAllocator
from fpamm_opt.mechanism.deficit import DeficitState
from fpamm_opt.mechanism.types import (
    ClearEvent,
    ClearEventKind,
    Dispatch,
    IntervalInput,
    IntervalStatus,
    SolveStatus,
    status_solve_error,
    status_verified,
)

pytestmark = pytest.mark.unit

K = ClearEventKind


@pytest.mark.parametrize(
    ("ok", "kinds", "status"),
    [
        (True, [], IntervalStatus.OPTIMAL),
        (True, [K.WIDENED, K.QP_FALLBACK, K.FIXED_POINT_RESTARTED], IntervalStatus.OPTIMAL),
        (True, [K.RETRIED], IntervalStatus.RETRIED),
        (True, [K.RETRIED, K.SOLVE_FAILED], IntervalStatus.SOLVE_ERROR),
        (True, [K.RETRY_FAILED], IntervalStatus.SOLVE_ERROR),
        (False, [], IntervalStatus.FAILED),
    ],
)
def test_status_of_a_clearing(ok: bool, kinds: list[ClearEventKind], status: str) -> None:
    assert IntervalStatus.of_clearing(ok, [ClearEvent(k) for k in kinds]) is status


def test_every_status_but_failed_is_verified() -> None:
    assert {s for s in IntervalStatus if s.verified} == set(IntervalStatus) - {
        IntervalStatus.FAILED
    }


@pytest.mark.parametrize(
    ("text", "verified", "solve_error"),
    [
        ("optimal", True, False),
        ("held", True, False),
        ("retried", True, False),
        ("solve-error", True, True),
        ("failed", False, False),
        # manifest versions 1-3: ;-joined text
        ("optimal;held", True, False),
        ("optimal;retried(clear:dc-infeasible)", True, False),
        ("optimal;error:clear:time_limit", True, True),
        ("optimal;failed(clear:dc-infeasible);error:clear:error", True, True),
        ("infeasible;error:screen:infeasible", False, True),
    ],
)
def test_stored_statuses_of_every_version(text: str, verified: bool, solve_error: bool) -> None:
    assert status_verified(text) is verified
    assert status_solve_error(text) is solve_error


def test_events_keep_the_text_grammar_of_older_runs() -> None:
    assert ClearEvent(K.RETRIED, None, "clear:dc-infeasible").note == "retried(clear:dc-infeasible)"
    assert ClearEvent(K.RETRY_FAILED, None, "screen:x").note == "failed(screen:x)"
    assert ClearEvent(K.SOLVE_FAILED, None, "clear:error").note == "error:clear:error"
    restarted = ClearEvent(K.FIXED_POINT_RESTARTED, None, "path-change")
    assert restarted.note == "fixed-point-restarted:path-change"
    assert ClearEvent(K.WIDENED, None, "dispatch:band").note == "widened[dispatch:band]"


class _ClearFails(CopperPlateAllocator):
    def clear(self, inp: IntervalInput, tier_order: Sequence[int], weights: np.ndarray) -> Dispatch:
        return dataclasses.replace(
            super().clear(inp, tier_order, weights), status=SolveStatus.TIME_LIMIT
        )


def test_a_failed_clear_is_a_typed_event() -> None:
    """The screen's point is kept: verified, but not the rule's (``solve-error``)."""
    demand, pmax = np.array([10.0, 20.0]), np.array([12.0])
    tier = np.array([0, 0])
    alloc = _ClearFails(pmax, np.array([1.0]), tier, 1)
    inp = IntervalInput(0, demand, pmax)
    cfg, deficit = MechanismConfig(), DeficitState.zero(2, 0.5)
    res = clear_interval(alloc, inp, np.zeros(2), tier, 1, [0], Policy.FPAMM, cfg, deficit)
    assert res.ok and res.scarce
    assert ClearEvent(K.SOLVE_FAILED, None, "clear:time_limit") in res.events
    assert "error:clear:time_limit" in res.status
    assert IntervalStatus.of_clearing(res.ok, res.events) is IntervalStatus.SOLVE_ERROR
