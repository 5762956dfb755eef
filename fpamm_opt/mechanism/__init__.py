"""FP-AMM mechanism in NumPy: memory, priority sampling, weights, clearing loop, triggers.

The allocator (a point of the DC-OPF set chosen by a rule) is injected through the
:class:`~fpamm_opt.mechanism.types.Allocator` protocol; nothing here imports Pyomo.
"""
