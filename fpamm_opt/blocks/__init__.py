"""Reusable Pyomo blocks: the DC-OPF feasibility set and the per-interval allocation."""

from __future__ import annotations

from fpamm_opt.blocks.allocation import build_allocation_block
from fpamm_opt.blocks.dcopf import Formulation, build_dcopf_block, count_components

__all__ = ["Formulation", "build_allocation_block", "build_dcopf_block", "count_components"]
