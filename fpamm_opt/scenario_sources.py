"""One entry point for every scenario source: ``[scenario] source`` -> a :class:`Scenario`.

``synthetic`` (default) is :class:`fpamm_opt.scenario.Scenario`; ``simbench`` is
:class:`fpamm_opt.scenarios_simbench.SimbenchScenario`, imported only when asked for (the
simbench package itself is optional and imported only by
:func:`fpamm_opt.network.simbench_case`). No Pyomo here.
"""

from __future__ import annotations

from fpamm_opt.network import NetworkData
from fpamm_opt.scenario import Scenario, ScenarioConfig, ScenarioSource


def make_scenario(
    net: NetworkData, cfg: ScenarioConfig, seed: int = 0, intervals: int | None = None
) -> Scenario:
    """The scenario ``cfg.source`` names, checked against the horizon when one is given.

    Parameters
    ----------
    net
        The run's network.
    cfg
        Scenario configuration.
    seed
        Scenario seed.
    intervals
        The run's horizon; a SimBench source rejects one longer than its profiles here,
        before anything is built or written.

    Returns
    -------
    Scenario
    """
    if cfg.source is ScenarioSource.SIMBENCH:
        from fpamm_opt.scenarios_simbench import SimbenchScenario

        sc = SimbenchScenario(net, cfg, seed)
        if intervals is not None:
            sc.check_horizon(int(intervals))
        return sc
    return Scenario(net, cfg, seed)


__all__ = ["make_scenario"]
