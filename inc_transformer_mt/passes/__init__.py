"""Post-tuning GraphDef -> GraphDef passes. Each returns a new graph and a record of what it changed.

Passes are named in recipes (``passes: [...]``) and on ``inc-mt optimize --passes``; they run in the order
given. Every pass must leave translations token-identical.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from inc_transformer_mt.defaults import PASS_NAMES

__all__ = ["PASS_NAMES", "apply_passes", "get_pass"]

#: name -> (module, function); imported lazily (the passes import TensorFlow)
_REGISTRY = {
    "beam_invariant_state": ("inc_transformer_mt.passes.beam_invariant", "beam_invariant_state"),
    "hoist_loop_invariants": ("inc_transformer_mt.passes.hoist", "hoist_loop_invariants"),
    "compose_beam_gathers": ("inc_transformer_mt.passes.compose_gathers", "compose_beam_gathers"),
    "gather_nd_to_gather": ("inc_transformer_mt.passes.gather_nd", "gather_nd_to_gather"),
    "dedupe_quantize": ("inc_transformer_mt.passes.dedupe_quantize", "dedupe_quantize"),
}
assert tuple(_REGISTRY) == PASS_NAMES, "defaults.PASS_NAMES and the pass registry disagree"


def get_pass(name: str) -> Callable[[Any], tuple[Any, Any]]:
    import importlib

    if name not in _REGISTRY:
        raise KeyError(f"unknown pass {name!r} (known: {', '.join(PASS_NAMES)})")
    module, func = _REGISTRY[name]
    return getattr(importlib.import_module(module), func)


def apply_passes(graph_def, names: Sequence[str]) -> tuple[Any, list[dict[str, Any]]]:
    """Run the named passes in order; (final graph, one report dict per pass). The input is not modified."""
    reports = []
    for name in names:
        graph_def, report = get_pass(name)(graph_def)
        reports.append(report.to_dict())
    return graph_def, reports
