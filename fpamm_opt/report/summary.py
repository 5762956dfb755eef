"""``fpamm report DIR``: PNG figures and a Markdown summary of a run, comparison or batch.

Role
----
:func:`write_report` detects what ``DIR`` is: a comparison directory (``comparison.json``,
from ``fpamm compare``), a batch directory (``index.parquet``, from ``fpamm batch``) or a run
directory (``manifest.json``); it writes the figures of :mod:`fpamm_opt.report.figures` into
``DIR/report/`` and ``DIR/report/summary.md``, which embeds them with relative links, starts
with a headline table, lists the verification of each run and explains in plain words where
each number comes from.

Only the columns a figure needs are read; a comparison of three ``T = 5000`` runs on 100
nodes is reported in a few seconds. A run directory's report runs ``verify_run`` (cold
re-solves included) unless ``verify=False``; a comparison's report reuses the verification
stored in ``comparison.json``.

No Pyomo here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fpamm_opt.errors import RunDirectoryError
from fpamm_opt.io.reader import COMPARISON_NAME, DirectoryKind, directory_kind, read_manifest
from fpamm_opt.report import figures as fg
from fpamm_opt.report import metrics as mt
from fpamm_opt.report.compare import POLICY_LABELS, read_comparison
from fpamm_opt.tolerances import DEFAULT_COLD_SAMPLE
from fpamm_opt.verify.context import RunContext

REPORT_DIR = "report"
SUMMARY_NAME = "summary.md"

#: What the paper reports (MECHANISM.md section 1), quoted next to our numbers.
PAPER_CLAIM = (
    "the paper reports that the peak weak-bus fairness error falls 54% on IEEE-57 and up to "
    "55% against an equal-weight baseline during scarcity windows (T = 5000)"
)


def detect_kind(path: Path | str) -> DirectoryKind:
    """Comparison (``comparison.json``), batch (``index.parquet``) or run (``manifest.json``).

    Raises
    ------
    RunDirectoryError
        When ``path`` is none of them.
    """
    p = Path(path)
    kind = directory_kind(p)
    if kind is not None:
        return kind
    raise RunDirectoryError(
        f"{p}: not a run, comparison or batch directory (no manifest.json, {COMPARISON_NAME} "
        "or index.parquet)"
    )


# ------------------------------------------------------------------ formatting
def _f(value: Any, fmt: str = ".4f") -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "n/a"
    return format(v, fmt) if math.isfinite(v) else "n/a"


def _pct(value: Any) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "n/a"
    return f"{100 * v:.1f}%" if math.isfinite(v) else "n/a"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _label(policy: str) -> str:
    return POLICY_LABELS.get(policy, policy)


def _t5(value: Any) -> str:
    return {True: "PASS", False: "FAIL"}.get(value, "n/a")


def verification_table(checks: Sequence[Mapping[str, Any]]) -> str:
    """Markdown table of ``fpamm verify --json`` entries, then each check's detail."""
    rows = []
    for c in checks:
        status = "n/a" if not c.get("applicable", True) else ("PASS" if c["passed"] else "FAIL")
        rows.append((c["name"], status, _f(c.get("measured"), ".4g"), _f(c.get("bound"), ".4g")))
    out = [md_table(("check", "status", "measured", "bound"), rows), ""]
    for c in checks:
        if c.get("detail"):
            out.append(f"- **{c['name']}**: {c['detail']}")
    return "\n".join(out)


def _figure_md(name: str, caption: str) -> str:
    alt = Path(name).stem.replace("_", " ")
    return f"![{alt}]({name})\n\n*{caption}*\n"


# ------------------------------------------------------------------ run data
@dataclass(frozen=True, eq=False)
class _RunArrays:
    t: np.ndarray
    node: np.ndarray
    bus: np.ndarray
    panel: mt.NodePanel
    memory: np.ndarray
    intervals: pd.DataFrame

    def labels(self) -> list[str]:
        return [f"{int(n)} ({int(b)})" for n, b in zip(self.node, self.bus)]

    def position(self, node: int) -> int:
        return int(np.flatnonzero(self.node == node)[0])


def _load_run(run_dir: Path) -> _RunArrays:
    t, node, bus, tier, arr = fg.node_arrays(run_dir, ["demand_mw", "served_mw", "memory_after"])
    panel = mt.NodePanel(
        t=t,
        node=node,
        tier=tier.astype(int),
        demand_mw=np.nan_to_num(arr["demand_mw"]),
        served_mw=np.nan_to_num(arr["served_mw"]),
    )
    iv = fg.interval_arrays(
        run_dir, ["scarce", "window", "status", "amm_price", "demand_mw", "deliverable_mw"]
    )
    return _RunArrays(t, node, bus, panel, arr["memory_after"], iv)


def _node_name(r: _RunArrays, node: int) -> str:
    k = r.position(node)
    return f"node {node} at bus {int(r.bus[k])}, tier {int(r.panel.tier[k])}"


# ------------------------------------------------------------------ figures
class _Figures:
    """Writes figures into the report directory and remembers the Markdown to embed them."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.items: list[tuple[str, str]] = []

    def add(self, name: str, caption: str, make: Callable[[], Any]) -> None:
        fg.save_figure(make(), self.out / name)
        self.items.append((name, caption))

    def markdown(self) -> str:
        return "\n".join(_figure_md(n, c) for n, c in self.items)


def _delivery_figure(
    runs: Mapping[str, _RunArrays], node: int, scarce: np.ndarray, what: str, burn_in: int
) -> Any:
    ratios, targets = {}, {}
    for p, r in runs.items():
        ratios[p], targets[p] = mt.node_delivery_series(r.panel, node)
    first = next(iter(runs.values()))
    return fg.plot_delivery_ratio(
        first.t,
        ratios,
        targets,
        scarce,
        title=f"{what}: {_node_name(first, node)}",
        burn_in=burn_in,
    )


def _amm_price_figure(r: _RunArrays, scarce: np.ndarray) -> Any:
    """AMM price and screened shortfall of run ``r`` (the same in every policy)."""
    return fg.plot_amm_price(
        r.t,
        r.intervals["amm_price"].to_numpy(dtype=float),
        fg.shortfall_fraction(r.intervals),
        scarce,
    )


def _deviation(r: _RunArrays) -> np.ndarray:
    f = mt.delivery_ratio(r.panel)[-1]
    agg = mt.tier_delivery_ratio(r.panel)[-1][np.searchsorted(r.panel.tiers, r.panel.tier)]
    return f - agg


# ------------------------------------------------------------------ comparison
def _comparison_report(root: Path, out: Path) -> str:
    data = read_comparison(root)
    pol: dict[str, Any] = data["policies"]
    order = [p for p in data.get("policy_order", list(pol)) if p in pol]
    runs = {p: _load_run(root / str(pol[p]["run_dir"])) for p in order}
    fp = runs["fpamm"]
    scarce = fg.scarce_mask(fp.intervals)
    wb, ab = data["weak_bus"], data["weak_bus_abs"]
    red = data["reductions"]
    skip = int(data["burn_in"]["intervals"])
    figs = _comparison_figures(out, runs, fp, wb, ab, scarce, skip)
    cols = [_label(p) for p in order]
    rows = _headline_rows(pol, red, order, wb, ab)
    title = (
        f"# FP-AMM vs equal weights vs LMP: {data.get('case') or 'case'}, "
        f"T = {data.get('intervals')}, seed {data.get('seed')}"
    )
    sc = data["scarcity"]
    parts = [
        title,
        "",
        f"Spec `{data.get('spec_source')}` (FP-AMM spec hash `{data.get('spec_hash')}`); the "
        "three runs share the spec and the seed and differ only in `run.policy` (common random "
        f"numbers). {sc['scarce_intervals']} of {data.get('intervals')} intervals are scarce, "
        f"in {sc['windows']} scarcity windows.",
        "",
        "## Headline",
        "",
        md_table(("", *cols), rows),
        "",
        f"FP-AMM cuts the peak weak-bus fairness error by **{_pct(red['peak_weak_bus_error'])}** "
        f"against equal weights and the limiting spread by **{_pct(red['spread'])}**; for "
        f"reference, {PAPER_CLAIM}.",
        "",
        "## Figures",
        "",
        figs.markdown(),
        "## Notes",
        "",
        *_comparison_notes(data, fp),
        "",
        "## Verification",
        "",
    ]
    for p in order:
        parts += [
            f"### {_label(p)} (`{pol[p]['run_dir']}/`)",
            "",
            verification_table(pol[p]["checks"]),
            "",
        ]
    parts += _runs_section(pol, order, data["burn_in"])
    return "\n".join(parts) + "\n"


def _comparison_figures(
    out: Path,
    runs: Mapping[str, _RunArrays],
    fp: _RunArrays,
    wb: Mapping[str, Any],
    ab: Mapping[str, Any],
    scarce: np.ndarray,
    skip: int,
) -> _Figures:
    """The figures of a comparison report (written lazily under ``out``)."""
    figs = _Figures(out)
    figs.add(
        "weak_bus_delivery.png",
        f"Delivery ratio of the weak bus ({_node_name(fp, wb['node'])}) under each policy "
        "(solid) against its target, its tier's aggregate delivery ratio (dashed); scarce "
        "intervals shaded. The peak weak-bus error is the largest gap between the two during "
        "scarce intervals after the burn-in.",
        lambda: _delivery_figure(runs, int(wb["node"]), scarce, "weak bus", skip),
    )
    if int(ab["node"]) != int(wb["node"]):
        figs.add(
            "largest_error_delivery.png",
            f"Delivery ratio of the node with the largest absolute final error under equal "
            f"weights ({_node_name(fp, ab['node'])}) against its tier's aggregate (dashed).",
            lambda: _delivery_figure(runs, int(ab["node"]), scarce, "largest-error node", skip),
        )
    figs.add(
        "fairness_decay.png",
        "Largest fairness error over all nodes, max_i |F_i(t) - F_tier(t)|, on log-log axes; "
        "the dotted line falls as t^(-1/2), the O(1/√T) rate of Thm 5; the grey band is the "
        "window T5 judges, [T/20, T].",
        lambda: fg.plot_fairness_decay(
            {p: mt.max_fairness_error(r.panel) for p, r in runs.items()}
        ),
    )
    mem = {p: runs[p].memory for p in ("fpamm", "equal") if p in runs}
    figs.add(
        "memory_heatmap.png",
        "Shortage memory s_i(t) of every node (rows, labelled node (bus)) over time, FP-AMM "
        "above equal weights, one colour scale; the strip on top marks scarce intervals. "
        "FP-AMM weighs nodes with more memory more, so their memory is worked down.",
        lambda: fg.plot_memory_heatmap(fp.t, mem, scarce, fp.labels()),
    )
    figs.add(
        "amm_price.png",
        "AMM scarcity price p(t) = p_cap (1 - min(1, S/D)) and the screened shortfall "
        "(share of demand the network cannot deliver); the same in every policy (common "
        "random numbers).",
        lambda: _amm_price_figure(fp, scarce),
    )
    figs.add(
        "final_deviation.png",
        "Final delivery ratio of each node relative to its tier's, F_i(T) - F_tier(T) "
        "(0: exactly the tier's ratio; the limiting spread is the largest absolute value).",
        lambda: fg.plot_final_deviation(
            fp.labels(),
            {p: _deviation(r) for p, r in runs.items()},
            {
                "weak bus": fp.position(int(wb["node"])),
                "largest |error|": fp.position(int(ab["node"])),
            },
        ),
    )
    return figs


def _headline_rows(
    pol: Mapping[str, Any],
    red: Mapping[str, Any],
    order: Sequence[str],
    wb: Mapping[str, Any],
    ab: Mapping[str, Any],
) -> list[tuple[str, ...]]:
    """The rows of a comparison report's headline table, one column per policy."""
    return [
        (
            f"peak weak-bus error (node {wb['node']}, bus {wb['bus']})",
            *[_f(pol[p]["peak_weak_bus_error"]) for p in order],
        ),
        (
            "reduction by FP-AMM (1 - FP/baseline)",
            "",
            *[
                _pct(red["peak_weak_bus_error" + ("" if p == "equal" else "_vs_" + p)])
                for p in order[1:]
            ],
        ),
        (
            f"peak error, largest |final error| (node {ab['node']}, bus {ab['bus']})",
            *[_f(pol[p]["peak_weak_bus_abs_error"]) for p in order],
        ),
        (
            "reduction by FP-AMM",
            "",
            *[
                _pct(red["peak_weak_bus_abs_error" + ("" if p == "equal" else "_vs_" + p)])
                for p in order[1:]
            ],
        ),
        (
            "limiting under-service max (F_tier(T) - F_i(T))+",
            *[_f(pol[p]["under_service"]) for p in order],
        ),
        (
            "reduction by FP-AMM",
            "",
            *[_pct(red["under_service" + ("" if p == "equal" else "_vs_" + p)]) for p in order[1:]],
        ),
        ("limiting spread max |F_i(T) - F_tier(T)|", *[_f(pol[p]["spread"]) for p in order]),
        (
            "reduction by FP-AMM",
            "",
            *[_pct(red["spread" + ("" if p == "equal" else "_vs_" + p)]) for p in order[1:]],
        ),
        ("final max fairness error", *[_f(pol[p]["final_max_fairness_error"]) for p in order]),
        ("T5 (O(1/√t) convergence)", *[_t5(pol[p]["t5_passed"]) for p in order]),
        ("feasible fraction", *[_f(pol[p]["feasible_fraction"], ".3f") for p in order]),
        (
            "all applicable checks",
            *[
                "PASS"
                if pol[p]["all_checks_passed"]
                else "FAIL: " + ", ".join(pol[p]["checks_failed"])
                for p in order
            ],
        ),
        (
            "served / shed energy (MWh)",
            *[
                f"{_f(pol[p]['served_energy_mwh'], '.0f')} / {_f(pol[p]['shed_energy_mwh'], '.0f')}"
                for p in order
            ],
        ),
    ]


def _runs_section(pol: Mapping[str, Any], order: Sequence[str], bi: Mapping[str, Any]) -> list[str]:
    """The ``## Runs`` section of a comparison report."""
    return [
        "## Runs",
        "",
        md_table(
            ("policy", "run directory", "spec hash", "wall time (s)", "verify (s)", "reused"),
            [
                (
                    _label(p),
                    f"`{pol[p]['run_dir']}/`",
                    f"`{pol[p]['spec_hash']}`",
                    _f(pol[p]["wall_s"], ".1f"),
                    _f(pol[p].get("verify_s"), ".1f"),
                    "yes" if pol[p].get("reused") else "no",
                )
                for p in order
            ],
        ),
        "",
        f"Burn-in: the first {bi['intervals']} intervals ({bi['rule']}); "
        f"{bi['scarce_after']} scarce intervals remain for the peak errors.",
    ]


def _comparison_notes(data: Mapping[str, Any], fp: _RunArrays) -> list[str]:
    wb, ab = data["weak_bus"], data["weak_bus_abs"]
    pol = data["policies"]
    ab_f = ab["final_delivery_ratio"]["equal"]
    ab_agg = ab["final_tier_ratio"]["equal"]
    notes = [
        "- **Delivery ratio and fairness error.** A node's delivery ratio F_i(t) is the energy "
        "it was served divided by the energy it asked for, from the first interval through t. "
        "Its fairness error is how far that ratio stands from its tier's common ratio "
        "(the tier's served energy over the tier's demand): |F_i(t) - F_tier(t)|.",
        f"- **The weak bus** is the most under-served node under the equal-weight baseline, "
        f"the lowest F_i(T) - F_tier(T) (MECHANISM.md section 6): "
        f"{_node_name(fp, int(wb['node']))}, {wb['chosen_by']} (F = "
        f"{wb['final_delivery_ratio']['equal']:.4f} against its tier's "
        f"{wb['final_tier_ratio']['equal']:.4f}). In a power system a weak bus is a weakly "
        "connected one, which the network leaves short: the case inverse-fairness weighting "
        "is for. Its **peak weak-bus error** is the largest fairness error it shows during "
        "scarce intervals after the burn-in (the first scarcity window is skipped: ratios "
        "there rest on very little history). The reduction is "
        "1 - peak(FP-AMM) / peak(baseline).",
    ]
    if int(ab["node"]) != int(wb["node"]):
        side = "above" if ab.get("over_served") else "below"
        notes.append(
            f"- **Largest absolute final error** (second row): "
            f"{_node_name(fp, int(ab['node']))} ends at F = {ab_f:.4f} under equal weights, "
            f"{side} its tier's {ab_agg:.4f}; its peak error falls "
            f"{_pct(data['reductions']['peak_weak_bus_abs_error'])} under FP-AMM."
            + (
                " A node next to generation that a congested corridor strands gets that "
                "energy because no other node can; the clearing first maximises each tier's "
                "served energy, so no weighting can lower its ratio without throwing energy "
                "away."
                if ab.get("over_served")
                else ""
            )
        )
    else:
        notes.append(
            "- The weak bus also has the largest absolute final error under equal weights."
        )
    notes += [
        "- **Limiting spread**: the largest |F_i(T) - F_tier(T)| over all nodes at the end of "
        "the run (the right end of the delivery-ratio figures, the bars of the last figure); "
        "**limiting under-service**: the largest F_tier(T) - F_i(T) (0 when nobody is below "
        "their tier's ratio).",
        "- **T5** checks that every node's ratio converges to its contracted target F* at "
        "rate O(1/√t), on under-service only: the energy a node is owed against F*, "
        "(F*_i - F_i(t)) times its requested energy, must stay within b_i σ_i √t over "
        "t in [T/20, T] (σ_i that gap's own noise scale, b_i the level a random-walk gap "
        "crosses with probability 2.5%). F* is the tier's aggregate ratio (or the spec's "
        "tier target), contracted only for nodes that cold re-solves show the network could "
        "not serve; the detail under Verification names them with their evidence. One run "
        "cannot reveal a drift much below 4 σ/√T: a batch of seeds gets the replicated "
        "verdict (fpamm verify BATCH_DIR; docs/verification.md).",
        "- **LMP** is the memoryless market: least-cost DC-OPF with one value of lost load, "
        "so shedding falls where the network and costs put it"
        + (
            f" (node {pol['lmp']['shortfall_max_node']} carries "
            f"{_pct(pol['lmp']['shortfall_max_share'])} of all shed energy)."
            if "lmp" in pol and pol["lmp"].get("shortfall_max_node") is not None
            else "."
        ),
        "- **Feasible fraction**: the share of intervals whose status says the stored "
        "allocation is a verified point of X(t); "
        "T3-feasibility re-checks every stored interval against the DC-OPF set in NumPy.",
        f"- **Where the numbers come from**: `../{COMPARISON_NAME}` (computed by "
        "`fpamm_opt.report.metrics` from `nodes.parquet` columns demand_mw and served_mw and "
        "`intervals.parquet` columns scarce, window and status of each run); the "
        "verification tables are `fpamm verify` on each run, FP-AMM's fairness-spread check "
        "against the equal-weight run.",
    ]
    return notes


# ------------------------------------------------------------------ single run
def _run_report(root: Path, out: Path, verify: bool, cold_sample: int) -> str:
    man = read_manifest(root)
    policy = str(man.get("policy") or "fpamm")
    r = _load_run(root)
    scarce = fg.scarce_mask(r.intervals)
    named = RunContext.from_manifest(man).weak_node
    weak = mt.weak_node(r.panel, named)
    abs_node = mt.largest_error_node(r.panel)
    skip = mt.burn_in_end(r.intervals)
    peak = mt.peak_weak_bus_error(r.panel, r.intervals, weak, skip)
    spread = mt.limiting_spread(r.panel)
    err = mt.max_fairness_error(r.panel)
    figs = _run_figures(out, r, policy, weak, abs_node, scarce, skip, err)
    checks: list[dict[str, Any]] | None = None
    t5 = "not verified"
    if verify:
        from fpamm_opt.verify import verify_run

        rep = verify_run(root, cold_sample=cold_sample)
        checks = rep.to_json()
        t5c = next((c for c in checks if c["name"] == "T5-convergence"), None)
        t5 = "n/a" if t5c is None or not t5c["applicable"] else _t5(t5c["passed"])
        verdict = "PASS" if rep.passed else "FAIL: " + ", ".join(str(c.name) for c in rep.failed)
    hours = float(((man.get("spec") or {}).get("scenario") or {}).get("interval_minutes", 30)) / 60
    shed = float(np.clip(r.panel.demand_mw - r.panel.served_mw, 0, None).sum()) * hours
    rows = [
        ("policy", _label(policy)),
        (f"peak weak-bus error (node {weak}, after {skip} burn-in intervals)", _f(peak.value)),
        ("final max fairness error", _f(err[-1] if err.size else math.nan)),
        ("limiting spread", _f(spread.overall)),
        ("limiting under-service", _f(mt.limiting_under_service(r.panel))),
        ("T5 (O(1/√t) convergence)", t5),
        ("feasible fraction", _f(mt.feasible_fraction(r.intervals), ".3f")),
        (
            "served / shed energy (MWh)",
            f"{_f(r.panel.served_mw.sum() * hours, '.0f')} / {_f(shed, '.0f')}",
        ),
    ]
    if checks is not None:
        rows.append(("all applicable checks", verdict))
    net = man.get("network") or {}
    parts = [
        f"# Run report: {net.get('name', 'case')} {_label(policy)}, "
        f"T = {r.t.size}, seed {man.get('seed')}",
        "",
        f"Run directory `{root}` (spec hash `{man.get('spec_hash')}`). "
        f"{int(scarce.sum())} of {r.t.size} intervals are scarce.",
        "",
        "## Headline",
        "",
        md_table(("quantity", "value"), rows),
        "",
        "## Figures",
        "",
        figs.markdown(),
        "## Notes",
        "",
        "- The weak bus of a single run is its own most under-served node, the lowest "
        "F_i(T) - F_tier(T) (or the node the spec names); in `fpamm compare` it is chosen "
        "under the equal-weight baseline instead, so the policies are measured on the same "
        "node.",
        "- Numbers come from `nodes.parquet` (demand_mw, served_mw, memory_after) and "
        "`intervals.parquet` (scarce, window, status, amm_price, deliverable_mw) of this run.",
        "",
    ]
    if checks is not None:
        parts += ["## Verification", "", verification_table(checks), ""]
    return "\n".join(parts) + "\n"


def _run_figures(
    out: Path,
    r: _RunArrays,
    policy: str,
    weak: int,
    abs_node: int,
    scarce: np.ndarray,
    skip: int,
    err: np.ndarray,
) -> _Figures:
    """The figures of a single run's report (written lazily under ``out``)."""
    runs = {policy: r}
    figs = _Figures(out)
    figs.add(
        "weak_bus_delivery.png",
        f"Delivery ratio of this run's weak bus ({_node_name(r, weak)}, the most under-served "
        "node) against its tier's aggregate (dashed); scarce intervals shaded.",
        lambda: _delivery_figure(runs, weak, scarce, "weak bus", skip),
    )
    if abs_node != weak:
        figs.add(
            "largest_error_delivery.png",
            f"Delivery ratio of the node with the largest absolute final error "
            f"({_node_name(r, abs_node)}) against its tier's aggregate (dashed).",
            lambda: _delivery_figure(runs, abs_node, scarce, "largest-error node", skip),
        )
    figs.add(
        "fairness_decay.png",
        "Largest fairness error max_i |F_i(t) - F_tier(t)| on log-log axes with a t^(-1/2) "
        "reference line; grey: the window T5 judges.",
        lambda: fg.plot_fairness_decay({policy: err}),
    )
    figs.add(
        "memory_heatmap.png",
        "Shortage memory s_i(t) of every node over time; the strip on top marks scarce intervals.",
        lambda: fg.plot_memory_heatmap(r.t, {policy: r.memory}, scarce, r.labels()),
    )
    figs.add(
        "amm_price.png",
        "AMM scarcity price and the screened shortfall (share of demand the network cannot "
        "deliver).",
        lambda: _amm_price_figure(r, scarce),
    )
    figs.add(
        "final_deviation.png",
        "Final delivery ratio of each node relative to its tier's, F_i(T) - F_tier(T).",
        lambda: fg.plot_final_deviation(
            r.labels(),
            {policy: _deviation(r)},
            {"weak bus": r.position(weak), "largest |error|": r.position(abs_node)},
        ),
    )
    return figs


# ------------------------------------------------------------------ batch
def _batch_report(root: Path, out: Path) -> str:
    from fpamm_opt.io.batch import read_index, read_index_table, swept_columns

    index = read_index(root)
    swept = swept_columns(read_index_table(root))
    parts = [
        f"# Batch report: `{root}`",
        "",
        f"{len(index)} runs, swept: " + (", ".join(f"`{c}`" for c in swept) or "nothing"),
        "",
    ]
    trade = fg.tradeoff_data(root)
    if trade is not None:
        figs = _Figures(out)
        figs.add(
            "tradeoff.png",
            "Computation-fidelity trade-off of event-triggered execution (Thm 4): each point "
            "is one trigger threshold θ, the fraction of intervals actually cleared against "
            "the largest tracking error ‖r(t) - r*(t)‖∞ of the held allocation (audited "
            "against the exact clearing).",
            lambda: fg.plot_tradeoff(trade),
        )
        parts += [
            "## Computation vs fidelity",
            "",
            md_table(
                ("θ", "fraction solved", "max tracking error", "runs", "audited intervals"),
                [
                    (
                        f"{row.theta:g}",
                        _f(row.fraction_solved, ".3f"),
                        _f(row.max_tracking_error, ".4g"),
                        row.n_runs,
                        row.n_audited,
                    )
                    for row in trade.itertuples()
                ],
            ),
            "",
            figs.markdown(),
        ]
    cols = [
        c
        for c in ("run_id", "status", *swept, "seed", "policy", "wall_s", "error")
        if c in index.columns
    ]
    cols = list(dict.fromkeys(cols))
    rows = [
        [
            _f(v, ".1f") if c == "wall_s" else ("" if v is None or v is pd.NA else v)
            for c, v in zip(cols, rec)
        ]
        for rec in index[cols].itertuples(index=False)
    ]
    parts += ["## Runs", "", md_table(cols, rows), ""]
    return "\n".join(parts) + "\n"


# ------------------------------------------------------------------ entry point
def write_report(
    path: Path | str, verify: bool = True, cold_sample: int = DEFAULT_COLD_SAMPLE
) -> Path:
    """Write ``path/report/`` (PNG figures) and ``path/report/summary.md``.

    Parameters
    ----------
    path : path
        A run, comparison or batch directory (see :func:`detect_kind`).
    verify : bool
        For a run directory: run the verification and include it (a comparison uses the one
        stored in ``comparison.json``).
    cold_sample : int
        Intervals re-solved cold by the verification of a run directory.

    Returns
    -------
    Path
        ``summary.md``.

    Raises
    ------
    RunDirectoryError
        When ``path`` is none of the three kinds, or a table is missing.
    """
    root = Path(path)
    kind = detect_kind(root)
    out = root / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    if kind is DirectoryKind.COMPARISON:
        text = _comparison_report(root, out)
    elif kind is DirectoryKind.BATCH:
        text = _batch_report(root, out)
    else:
        text = _run_report(root, out, verify, cold_sample)
    summary = out / SUMMARY_NAME
    tmp = out / f".{SUMMARY_NAME}.tmp"
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(summary)
    return summary


def report_figures(summary: Path | str) -> list[Path]:
    """The PNG files a summary embeds (relative links resolved against its directory)."""
    import re

    p = Path(summary)
    names = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", p.read_text(encoding="utf-8"))
    return [p.parent / n for n in names]
