"""Figure functions (fpamm_opt.report.figures) and the metrics they plot, on synthetic data."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from matplotlib.figure import Figure

from fpamm_opt.io.batch import index_table, write_index
from fpamm_opt.io.schema import SCHEMAS
from fpamm_opt.report import figures as fg
from fpamm_opt.report import metrics as mt
from fpamm_opt.report.compare import headline_lines, write_json_atomic
from fpamm_opt.report.summary import md_table, verification_table

pytestmark = pytest.mark.unit


def _panel(n_t: int, n: int, seed: int = 0) -> mt.NodePanel:
    rng = np.random.default_rng(seed)
    demand = rng.uniform(5, 10, (n_t, n))
    served = demand * np.clip(
        1 - rng.uniform(0, 0.3, (n_t, n)) * (rng.random((n_t, 1)) < 0.25), 0, 1
    )
    tier = np.arange(n) % 2
    return mt.NodePanel(np.arange(n_t), np.arange(n), tier, demand, served)


def _png_ok(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 1000


# ------------------------------------------------------------------ metrics additions
def test_underserved_node_and_series() -> None:
    # Tier 0: nodes 0, 1; node 1 gets half its demand in interval 1. Tier 1: node 2 alone.
    demand = np.array([[10.0, 10.0, 5.0], [10.0, 10.0, 5.0]])
    served = np.array([[10.0, 10.0, 5.0], [10.0, 5.0, 5.0]])
    panel = mt.NodePanel(np.arange(2), np.array([0, 1, 2]), np.array([0, 0, 1]), demand, served)
    assert mt.underserved_node(panel) == 1 == mt.weak_node(panel)
    assert mt.largest_error_node(panel) in (0, 1)  # |F - agg| ties between the tier-0 nodes
    f, agg = mt.node_delivery_series(panel, 1)
    np.testing.assert_allclose(f, [1.0, 15 / 20])
    np.testing.assert_allclose(agg, [1.0, 35 / 40])
    with pytest.raises(Exception, match="not a node"):
        mt.node_delivery_series(panel, 7)


# ------------------------------------------------------------------ helpers
def test_scarce_spans_and_bin_max() -> None:
    t = np.arange(10)
    s = np.array([0, 1, 1, 0, 0, 1, 0, 0, 1, 1], bool)
    assert fg.scarce_spans(t, s) == [(0.5, 2.5), (4.5, 5.5), (7.5, 9.5)]
    assert fg.scarce_spans(t, np.zeros(10, bool)) == []
    a = np.arange(10, dtype=float)[:, None] * np.ones((1, 2))
    b, k = fg.bin_max(a, max_columns=4)
    assert k == 3 and b.shape == (4, 2)
    np.testing.assert_allclose(b[:, 0], [2, 5, 8, 9])
    same, k1 = fg.bin_max(a, max_columns=100)
    assert k1 == 1 and same.shape == a.shape


def test_shortfall_fraction() -> None:
    iv = pd.DataFrame({"demand_mw": [100.0, 100.0, 0.0], "deliverable_mw": [100.0, 80.0, 0.0]})
    np.testing.assert_allclose(fg.shortfall_fraction(iv), [0.0, 0.2, 0.0])


# ------------------------------------------------------------------ figures
def test_figures_render(tmp_path: Path) -> None:
    panel = _panel(200, 6)
    t = panel.t
    scarce = np.zeros(t.size, bool)
    scarce[40:60] = scarce[120:150] = True
    f, agg = mt.node_delivery_series(panel, 3)
    figs = {
        "a": fg.plot_delivery_ratio(
            t, {"fpamm": f, "equal": f * 0.99}, {"fpamm": agg}, scarce, burn_in=60
        ),
        "b": fg.plot_fairness_decay({"fpamm": mt.max_fairness_error(panel)}),
        "c": fg.plot_memory_heatmap(
            t,
            {"fpamm": np.random.default_rng(1).random((200, 6))},
            scarce,
            [str(i) for i in range(6)],
        ),
        "d": fg.plot_amm_price(t, 1000 * scarce * 0.1, scarce * 0.1, scarce),
        "f": fg.plot_final_deviation(
            [str(i) for i in range(6)],
            {"fpamm": np.linspace(-0.01, 0.01, 6), "lmp": np.linspace(-0.1, 0.1, 6)},
            {"weak bus": 2},
        ),
        "e": fg.plot_tradeoff(
            pd.DataFrame(
                {
                    "theta": [0.0, 0.05, 0.1],
                    "fraction_solved": [1.0, 0.6, 0.3],
                    "max_tracking_error": [0.0, 0.01, 0.03],
                }
            )
        ),
    }
    for name, fig in figs.items():
        assert isinstance(fig, Figure)
        _png_ok(fg.save_figure(fig, tmp_path / f"{name}.png"))


def test_no_pyplot_state() -> None:
    import matplotlib.pyplot as plt

    n_before = len(plt.get_fignums())
    fig = fg.plot_fairness_decay({"fpamm": np.linspace(1, 0.01, 50)})
    assert len(plt.get_fignums()) == n_before
    del fig


def test_large_run_plots_fast(tmp_path: Path) -> None:
    """T = 5000 intervals x 100 nodes: every figure in a few seconds (CPU time: robust to a
    loaded machine)."""
    panel = _panel(5000, 100, seed=2)
    t = panel.t
    scarce = (t // 25) % 4 == 0
    mem = np.random.default_rng(3).random((5000, 100))
    t0 = time.process_time()
    f, agg = mt.node_delivery_series(panel, 7)
    series = {p: (f, agg) for p in ("fpamm", "equal", "lmp")}
    fg.save_figure(
        fg.plot_delivery_ratio(
            t,
            {p: v[0] for p, v in series.items()},
            {p: v[1] for p, v in series.items()},
            scarce,
            burn_in=50,
        ),
        tmp_path / "a.png",
    )
    err = mt.max_fairness_error(panel)
    fg.save_figure(
        fg.plot_fairness_decay({"fpamm": err, "equal": err * 1.1, "lmp": err * 3}),
        tmp_path / "b.png",
    )
    fig = fg.plot_memory_heatmap(t, {"fpamm": mem, "equal": mem}, scarce)
    fg.save_figure(fig, tmp_path / "c.png")
    fg.save_figure(fg.plot_amm_price(t, scarce * 100.0, scarce * 0.1, scarce), tmp_path / "d.png")
    elapsed = time.process_time() - t0
    assert elapsed < 10, elapsed  # about 3 s of CPU
    for name in "abcd":
        _png_ok(tmp_path / f"{name}.png")


# ------------------------------------------------------------------ trigger sweep
def _fake_batch(root: Path, thetas: list[float]) -> None:
    records = []
    schema = SCHEMAS["intervals"]
    rng = np.random.default_rng(0)
    for k, theta in enumerate(thetas):
        run_id = f"{k:02d}"
        n = 50
        executed = np.ones(n, bool) if theta == 0 else rng.random(n) < 1 - 4 * theta
        err = np.where(executed, np.nan, theta * rng.random(n))
        cols = {f.name: pa.nulls(n, f.type) for f in schema}
        cols["t"] = pa.array(np.arange(n), pa.int64())
        cols["executed"] = pa.array(executed)
        cols["tracking_error"] = pa.array(err, pa.float64())
        (root / "runs" / run_id).mkdir(parents=True)
        pq.write_table(pa.table(cols, schema=schema), root / "runs" / run_id / "intervals.parquet")
        records.append(
            {
                "run_id": run_id,
                "status": "complete",
                "mechanism.trigger_theta": theta,
                "seed": 0,
                "policy": "fpamm",
                "path": f"runs/{run_id}",
            }
        )
    write_index(root, index_table(records, ["mechanism.trigger_theta"]))


def test_tradeoff_data(tmp_path: Path) -> None:
    _fake_batch(tmp_path, [0.0, 0.05, 0.1])
    df = fg.tradeoff_data(tmp_path)
    assert df is not None
    assert list(df["theta"]) == [0.0, 0.05, 0.1]
    assert df["fraction_solved"].iloc[0] == 1.0 and df["max_tracking_error"].iloc[0] == 0.0
    assert (df["fraction_solved"].iloc[1:] < 1).all()
    assert (df["max_tracking_error"].iloc[1:] > 0).all()
    _png_ok(fg.save_figure(fg.plot_tradeoff(df), tmp_path / "tradeoff.png"))


def test_batch_report(tmp_path: Path) -> None:
    from fpamm_opt.report.summary import report_figures, write_report

    _fake_batch(tmp_path, [0.0, 0.1])
    summary = write_report(tmp_path)
    text = summary.read_text()
    assert "Computation vs fidelity" in text and "## Runs" in text
    figs = report_figures(summary)
    assert [f.name for f in figs] == ["tradeoff.png"]
    _png_ok(figs[0])


# ------------------------------------------------------------------ text helpers
def test_markdown_helpers() -> None:
    table = md_table(("a", "b"), [(1, "x|y")])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| 1 | x\\|y |"]
    checks = [
        {
            "name": "T1-invariance",
            "passed": True,
            "measured": 0.0,
            "bound": 1e-12,
            "applicable": True,
            "detail": "fine",
        },
        {
            "name": "T4-tracking",
            "passed": True,
            "measured": None,
            "bound": None,
            "applicable": False,
            "detail": "not applicable",
        },
    ]
    text = verification_table(checks)
    assert "| T1-invariance | PASS |" in text and "| T4-tracking | n/a |" in text


def test_write_json_atomic_and_headline(tmp_path: Path) -> None:
    pol = {
        p: {
            "peak_weak_bus_error": v,
            "peak_weak_bus_abs_error": v / 2,
            "spread": v,
            "under_service": v / 4,
            "all_checks_passed": p != "fpamm",
            "checks_passed": ["T1-invariance"],
            "checks_failed": ["T5-convergence"] if p == "fpamm" else [],
            "t5_passed": {"fpamm": False, "equal": True, "lmp": None}[p],
            "feasible_fraction": 1.0,
        }
        for p, v in (("fpamm", 0.01), ("equal", 0.02), ("lmp", 0.2))
    }
    data = {
        "case": "case14",
        "intervals": 100,
        "seed": 0,
        "policies": pol,
        "scarcity": {"scarce_intervals": 20, "windows": 2},
        "burn_in": {"intervals": 30, "scarce_after": 10},
        "weak_bus": {
            "node": 1,
            "bus": 2,
            "tier": 1,
            "over_served": False,
            "chosen_by": "most under-served under equal weights",
        },
        "weak_bus_abs": {"node": 3, "bus": 4, "tier": 1, "over_served": True},
        "reductions": {
            "peak_weak_bus_error": 0.5,
            "spread": 0.5,
            "peak_weak_bus_abs_error": 0.5,
            "under_service": 0.75,
            "peak_weak_bus_error_vs_lmp": math.nan,
        },
    }
    text = "\n".join(headline_lines(data))
    assert "reduction 50.0%" in text and "FAILED T5-convergence" in text and "n/a" in text
    assert "weak bus (most under-served under equal weights): node 1" in text
    assert "largest absolute final error under equal weights: node 3" in text
    assert "limiting under-service" in text and "reduction 75.0%" in text
    path = write_json_atomic(tmp_path / "c.json", {"x": 1})
    assert json.loads(path.read_text()) == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["c.json"]
