"""fpamm-opt: the Fair Play Automatic Market Maker (FP-AMM) on DC-OPF networks.

Layers (an import rule enforced by ``tests/unit/test_layering.py``):

- ``network``, ``scenario``, ``mechanism``, ``io``, ``verify``: NumPy/pandas only, no Pyomo.
- ``blocks``, ``problem``, ``solvers``: the Pyomo layer.
- ``sim``, ``report``, ``cli``: orchestration on top.
"""

from __future__ import annotations

from fpamm_opt.errors import FpammError

__version__ = "0.1.0"
__all__ = ["FpammError", "__version__"]
