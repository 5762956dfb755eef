"""The tier-clearing pipeline of :class:`fpamm_opt.problem.AllocationProblem`.

:meth:`~fpamm_opt.problem.AllocationProblem.clear` is a short loop over tiers; each tier runs
an ordered chain of strategies with one interface, ``try_tier(ctx) -> TierOutcome | None``
(the first outcome clears the tier):

1. :class:`~fpamm_opt.pipeline.strategies.WaterFillTrial` - the copper-plate answer, checked
   by one LP, rationed by :class:`~fpamm_opt.pipeline.rationing.TrialRationing`;
2. :class:`~fpamm_opt.pipeline.strategies.DeliverableLP` - the tier's deliverable energy
   (clears a tier that can be fully served);
3. :class:`~fpamm_opt.pipeline.strategies.KKTTier` - the QP rule's certified KKT search;
4. :class:`~fpamm_opt.pipeline.strategies.SolverQP` - the solver's QP, earlier tiers exactly
   first, then widened;
5. :class:`~fpamm_opt.pipeline.strategies.MaxMinLPs` - the max-min LPs (bottleneck rounds).

State has an owner: the lexicographic bounds of one clear live in
:class:`~fpamm_opt.pipeline.bounds.LexBounds`; what lives for one interval (failed trials,
QP paths and guesses, deliverable LPs, deferred clears) in
:class:`~fpamm_opt.pipeline.session.IntervalSession`, opened per interval; solves in one
:class:`~fpamm_opt.pipeline.accounting.SolveLog`; path counts in one
:class:`~fpamm_opt.pipeline.accounting.PathStats`. The package is NumPy only (no Pyomo): it
talks to the model through the :class:`~fpamm_opt.engine.Engine` protocol.
"""
