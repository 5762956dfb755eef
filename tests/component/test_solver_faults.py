"""Solver faults: retried, recorded, and never a stored allocation that was not verified.

The retry path has two levels: the fast HiGHS engine re-solves cold once when a hot-started
solve is not optimal; then :class:`fpamm_opt.sim.run.RetryingAllocator` re-checks every answer
in NumPy (:func:`dispatch_violation_mw`) and, on a failure or a DC-infeasible answer, asks a
fallback allocator (the other formulation on the Pyomo engine). Faults are injected by
wrapping :func:`fpamm_opt.sim.run.build_allocator` (which ``run`` looks up at call time):

- the primary engine's ``solve`` returns an ERROR ``LPSolution`` in one chosen call;
- the primary allocator returns an "optimal" dispatch that serves more than the demand;
- the fallback fails too: then the interval keeps a verified allocation (the screen), or,
  when nothing verified is left, the run raises ``SolverError`` and leaves no directory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import fpamm_opt.sim.run as run_mod
from fpamm_opt.errors import SolverError
from fpamm_opt.mechanism.types import Dispatch, SolveStatus
from fpamm_opt.problem import LPSolution
from fpamm_opt.sim.run import dispatch_violation_mw, resolve_run_spec, run
from fpamm_opt.spec import load_spec

pytestmark = pytest.mark.component

REPO = Path(__file__).resolve().parents[2]
SPEC_PATH = REPO / "models" / "ieee14.toml"
T = 40
MW_TOL = 1e-4


def _spec() -> Any:
    return resolve_run_spec(load_spec(SPEC_PATH, ["outputs.branches=false"]), intervals=T)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A fault-free reference run and its first scarce interval."""
    out = tmp_path_factory.mktemp("clean") / "run"
    res = run(_spec(), out, progress=False)
    iv = pd.read_parquet(out / "intervals.parquet")
    scarce = iv.loc[iv.scarce, "t"].to_numpy()
    assert scarce.size >= 2, "the reference scenario needs scarce intervals"
    assert (iv.status == "optimal").all()
    return {
        "dir": out,
        "manifest": res.manifest,
        "intervals": iv,
        "nodes": pd.read_parquet(out / "nodes.parquet"),
        "t_scarce": int(scarce[0]),
        "t_normal": int(iv.loc[~iv.scarce, "t"].iloc[0]),
    }


def _error_solution(net: Any) -> LPSolution:
    nan = np.nan
    return LPSolution(
        SolveStatus.ERROR,
        "injected",
        np.full(net.n_gen, nan),
        np.full(net.n_node, nan),
        np.full(net.n_branch, nan),
        nan,
        nan,
        0.0,
        "injected fault",
    )


def _patch_build(
    monkeypatch: pytest.MonkeyPatch, tweak: Callable[[run_mod.RetryingAllocator], None]
) -> None:
    original = run_mod.build_allocator

    def build(prep: Any, extensions: Any = ()) -> run_mod.RetryingAllocator:
        alloc = original(prep, extensions)
        tweak(alloc)
        return alloc

    monkeypatch.setattr(run_mod, "build_allocator", build)


def _fail_engine_once(
    alloc: run_mod.RetryingAllocator, method: str, t_fail: int, any_solve: bool = False
) -> dict:
    """The primary engine's next ``solve`` after ``method`` starts at ``t_fail`` errors (the
    next one with cold retries allowed, unless ``any_solve``)."""
    prim = alloc.primary
    eng = prim.engine
    state = {"armed": False, "fired": 0, "solves": 0}
    real_solve, real_method = eng.solve, getattr(prim, method)

    def solve(duals: bool = False, retry: bool = True) -> LPSolution:
        state["solves"] += 1
        # A water-fill trial (retry=False) that fails only sends the tier to the rule's
        # solves; the fault is injected into the first solve whose failure counts.
        if state["armed"] and (retry or any_solve):
            state["armed"] = False
            state["fired"] += 1
            return _error_solution(prim.net)
        return real_solve(duals=duals, retry=retry)

    def wrapped(inp: Any, *args: Any, **kw: Any) -> Dispatch:
        if inp.t == t_fail and not state["fired"]:
            state["armed"] = True
        return real_method(inp, *args, **kw)

    eng.solve = solve
    setattr(prim, method, wrapped)
    return state


def _stored_violation(run_dir: Path, spec: Any) -> float:
    """Largest DC-feasibility violation of the stored allocations (NumPy re-check)."""
    net = spec.network.load()
    nodes = pd.read_parquet(run_dir / "nodes.parquet").sort_values(["t", "node"])
    gens = pd.read_parquet(run_dir / "generators.parquet").sort_values(["t", "gen"])
    worst = 0.0
    for (_t, nd), (_, gd) in zip(nodes.groupby("t"), gens.groupby("t")):
        d = Dispatch(
            SolveStatus.OPTIMAL,
            nd.served_mw.to_numpy(),
            gd.p_mw.to_numpy(),
            np.zeros(net.n_branch),
            None,
            0.0,
            0,
            0.0,
            np.zeros(0),
            np.zeros(0),
            np.zeros(0),
            False,
        )
        worst = max(
            worst,
            dispatch_violation_mw(net, nd.demand_mw.to_numpy(), gd.available_mw.to_numpy(), d),
        )
    return worst


def _tol(spec: Any) -> float:
    net = spec.network.load()
    return run_mod.FEAS_TOL_ABS_MW + 2 * run_mod.FEAS_TOL_REL * float(net.node_demand_mw.sum())


# ------------------------------------------------------------------ engine level --
def test_fast_engine_recovers_with_a_cold_resolve() -> None:
    """Level 1: a non-optimal hot-started solve is repeated from scratch inside the engine."""
    import highspy

    from fpamm_opt.mechanism.types import IntervalInput
    from fpamm_opt.problem import AllocationProblem

    net = _spec().network.load()
    prob = AllocationProblem(net, np.zeros(net.n_node, dtype=int), 1, engine="highs")
    assert prob.engine_kind == "highs"
    eng = prob.engine
    inp = IntervalInput(0, net.node_demand_mw.copy(), net.gen_pmax_mw.copy())
    reference = prob.screen(inp)
    real_run, calls = eng._run, {"n": 0}

    def flaky_run(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        status = real_run(*args, **kwargs)
        return highspy.HighsModelStatus.kSolveError if calls["n"] == 1 else status

    eng._run = flaky_run
    sol = eng.solve()
    assert calls["n"] == 2
    assert sol.status is SolveStatus.OPTIMAL
    assert sol.message.startswith("cold-retry")
    again = prob.screen(inp)
    assert again.ok and np.allclose(again.served_mw, reference.served_mw, atol=1e-7)


# ------------------------------------------------------------------ run level --
def test_failed_clear_is_retried_and_recorded(
    clean: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    t_fail = clean["t_scarce"]
    states: list[dict] = []
    _patch_build(monkeypatch, lambda a: states.append(_fail_engine_once(a, "clear", t_fail)))
    out = tmp_path / "run"
    res = run(_spec(), out, progress=False)
    assert states[0]["fired"] == 1

    iv = pd.read_parquet(out / "intervals.parquet").set_index("t")
    assert iv.loc[t_fail, "status"] == "retried"
    retried = [d for k, d in _events_at(out, t_fail) if k == "retried"]
    assert len(retried) == 1 and retried[0].startswith("clear:deliverable[")
    assert retried[0].endswith(":injected")
    assert (iv.drop(index=t_fail).status == "optimal").all()
    summary = res.manifest["summary"]
    assert summary["n_retries"] == 1
    assert summary["retries"][0].startswith(f"t={t_fail}:clear:")
    assert summary["retries"][0].endswith("->fallback")
    assert summary["failed"] == 0

    # the fallback (other formulation, Pyomo engine) gives the same allocation
    nodes = pd.read_parquet(out / "nodes.parquet")
    diff = np.abs(nodes.served_mw.to_numpy() - clean["nodes"].served_mw.to_numpy())
    assert diff.max() <= MW_TOL
    assert _stored_violation(out, _spec()) <= _tol(_spec())


def test_failed_dispatch_keeps_the_rule_point(
    clean: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The least-cost dispatch of the kept allocation (``complete``) fails: the last tier's
    own solve, whose loads are exactly the allocation, is stored as the dispatch (not least
    cost), so the allocation is unchanged, feasible, and no retry is needed."""
    t_fail = clean["t_scarce"]
    states: list[dict] = []
    _patch_build(
        monkeypatch,
        lambda a: states.append(_fail_engine_once(a, "complete", t_fail, any_solve=True)),
    )
    out = tmp_path / "run"
    res = run(_spec(), out, progress=False)
    assert states[0]["fired"] == 1
    iv = pd.read_parquet(out / "intervals.parquet").set_index("t")
    assert iv.loc[t_fail, "status"] == "optimal"  # widened is informational: in the events
    ev = pd.read_parquet(out / "events.parquet")
    at = ev[ev["t"] == t_fail]
    assert ("widened", "dispatch:rule-point") in set(zip(at["kind"], at["detail"], strict=True))
    recoveries = at[at["kind"] != "tier-path"]  # the per-tier path record has its tier
    assert recoveries["tier"].isna().all()
    # every other interval has the reference run's events
    ref = pd.read_parquet(clean["dir"] / "events.parquet")
    pd.testing.assert_frame_equal(
        ev[ev["t"] != t_fail].reset_index(drop=True),
        ref[ref["t"] != t_fail].reset_index(drop=True),
        check_dtype=False,  # a null tier makes the column float
    )
    assert res.manifest["summary"]["n_retries"] == 0
    nodes = pd.read_parquet(out / "nodes.parquet")
    diff = np.abs(nodes.served_mw.to_numpy() - clean["nodes"].served_mw.to_numpy())
    assert diff.max() <= MW_TOL
    assert _stored_violation(out, _spec()) <= _tol(_spec())


def test_failed_completion_of_the_kept_allocation_is_retried(
    clean: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``complete`` itself returns no dispatch: the clear is redone on the fallback and the
    interval records it."""
    t_fail = clean["t_scarce"]
    fired: list[int] = []

    def tweak(alloc: run_mod.RetryingAllocator) -> None:
        prim = alloc.primary
        real = prim.complete

        def complete(inp: Any, disp: Dispatch) -> Dispatch:
            if inp.t == t_fail and not fired:
                fired.append(inp.t)
                return replace(disp, status=SolveStatus.ERROR, note="dispatch:injected")
            return real(inp, disp)

        prim.complete = complete

    _patch_build(monkeypatch, tweak)
    out = tmp_path / "run"
    res = run(_spec(), out, progress=False)
    assert fired == [t_fail]
    iv = pd.read_parquet(out / "intervals.parquet").set_index("t")
    assert iv.loc[t_fail, "status"] == "retried"
    assert ("retried", "clear:dispatch:injected") in _events_at(out, t_fail)
    assert res.manifest["summary"]["n_retries"] == 1
    nodes = pd.read_parquet(out / "nodes.parquet")
    diff = np.abs(nodes.served_mw.to_numpy() - clean["nodes"].served_mw.to_numpy())
    assert diff.max() <= MW_TOL
    assert _stored_violation(out, _spec()) <= _tol(_spec())


def test_failed_screen_is_retried_and_recorded(
    clean: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    t_fail = clean["t_normal"]
    _patch_build(monkeypatch, lambda a: _fail_engine_once(a, "screen", t_fail))
    out = tmp_path / "run"
    res = run(_spec(), out, progress=False)
    iv = pd.read_parquet(out / "intervals.parquet").set_index("t")
    assert iv.loc[t_fail, "status"] == "retried"
    assert ("retried", "screen:screen:injected") in _events_at(out, t_fail)
    assert not iv.loc[t_fail, "scarce"]
    assert res.manifest["summary"]["n_retries"] == 1


def _events_at(out: Path, t: int) -> set[tuple[str, str]]:
    """``(kind, detail)`` of the events the run recorded in interval ``t``."""
    ev = pd.read_parquet(out / "events.parquet")
    at = ev[ev["t"] == t]
    return set(zip(at["kind"], at["detail"], strict=True))


def _patch_allocators(
    alloc: run_mod.RetryingAllocator, patch: Callable[[Any], None], fallback_too: bool = True
) -> None:
    """Apply ``patch`` to the primary allocator and, unless told not to, to every fallback
    allocator the retry wrapper builds later."""
    patch(alloc.primary)
    if not fallback_too:
        return
    factory = alloc._factory

    def make() -> Any:
        fb = factory()
        patch(fb)
        return fb

    alloc._factory = make


def _dc_infeasible(d: Dispatch, demand: np.ndarray) -> Dispatch:
    return replace(d, served_mw=np.asarray(demand) * 1.1 + 1.0)


def _infeasible_clear(alloc: run_mod.RetryingAllocator, t_bad: int, fallback_too: bool) -> None:
    def corrupt(target: Any) -> None:
        real = target.clear

        def clear(inp: Any, order: Any, w: Any, **kw: Any) -> Dispatch:
            d = real(inp, order, w, **kw)
            return _dc_infeasible(d, inp.demand_mw) if inp.t == t_bad else d

        target.clear = clear

    _patch_allocators(alloc, corrupt, fallback_too)


def test_dc_infeasible_answer_is_retried_not_stored(
    clean: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    t_bad = clean["t_scarce"]
    _patch_build(monkeypatch, lambda a: _infeasible_clear(a, t_bad, fallback_too=False))
    out = tmp_path / "run"
    res = run(_spec(), out, progress=False)
    iv = pd.read_parquet(out / "intervals.parquet").set_index("t")
    assert iv.loc[t_bad, "status"] == "retried"
    assert ("retried", "clear:dc-infeasible") in _events_at(out, t_bad)
    assert res.manifest["summary"]["n_retries"] >= 1
    nodes = pd.read_parquet(out / "nodes.parquet")
    assert (nodes.served_mw <= nodes.demand_mw + 1e-6).all()
    diff = np.abs(nodes.served_mw.to_numpy() - clean["nodes"].served_mw.to_numpy())
    assert diff.max() <= MW_TOL
    assert _stored_violation(out, _spec()) <= _tol(_spec())


def test_dc_infeasible_everywhere_keeps_a_verified_allocation(
    clean: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Primary and fallback both answer outside X(t): the interval keeps the verified screen."""
    t_bad = clean["t_scarce"]
    _patch_build(monkeypatch, lambda a: _infeasible_clear(a, t_bad, fallback_too=True))
    out = tmp_path / "run"
    res = run(_spec(), out, progress=False)
    iv = pd.read_parquet(out / "intervals.parquet").set_index("t")
    assert iv.loc[t_bad, "status"] == "solve-error"  # verified (the screen), not the rule's
    events = _events_at(out, t_bad)
    assert ("retry-failed", "clear:dc-infeasible") in events
    assert any(k == "solve-failed" and d.startswith("clear:") for k, d in events)
    summary = res.manifest["summary"]
    assert any("->failed" in e for e in summary["retries"])
    assert summary["failed"] == 1 and summary["n_retries"] >= 1
    nodes = pd.read_parquet(out / "nodes.parquet")
    assert (nodes.served_mw <= nodes.demand_mw + 1e-6).all()
    assert _stored_violation(out, _spec()) <= _tol(_spec())


def _always_fail_from(alloc: run_mod.RetryingAllocator, t_fail: int) -> None:
    """Every solve of the primary and the fallback fails from interval ``t_fail`` on."""
    current = {"t": -1}

    def break_engine(target: Any) -> None:
        eng, net = target.engine, target.net
        real_solve = eng.solve
        eng.solve = lambda duals=False, retry=True: (
            _error_solution(net) if current["t"] >= t_fail else real_solve(duals=duals, retry=retry)
        )
        for method in ("screen", "clear"):
            real = getattr(target, method)

            def track(inp: Any, *args: Any, _real: Any = real, **kw: Any) -> Dispatch:
                current["t"] = inp.t
                return _real(inp, *args, **kw)

            setattr(target, method, track)

    _patch_allocators(alloc, break_engine)


def test_unrecoverable_fault_aborts_the_run_without_a_directory(
    clean: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    t_fail = clean["t_scarce"] + 1
    _patch_build(monkeypatch, lambda a: _always_fail_from(a, t_fail))
    out = tmp_path / "runs" / "X"
    with pytest.raises(SolverError, match=f"interval {t_fail}"):
        run(_spec(), out, progress=False)
    assert not out.exists()
    assert not [p.name for p in out.parent.iterdir() if ".tmp-" in p.name]


def test_unrecoverable_fault_through_the_cli(
    clean: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fpamm_opt.cli import app

    t_fail = clean["t_normal"]
    _patch_build(monkeypatch, lambda a: _always_fail_from(a, t_fail))
    out = tmp_path / "runs" / "X"
    res = CliRunner().invoke(
        app, ["run", str(SPEC_PATH), "-T", str(T), "--no-progress", "--out", str(out)]
    )
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: interval {t_fail}")
    assert not out.exists()
    assert not [p.name for p in out.parent.iterdir() if ".tmp-" in p.name]
