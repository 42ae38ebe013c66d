"""Post-tuning GraphDef -> GraphDef passes. Each returns a new graph and a record of what it changed.

Passes are named in recipes (``passes: [...]``) and on ``inc-mt optimize --passes``; they run in the order
given. Every pass must leave translations token-identical.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from inc_transformer_mt.defaults import DEFAULT_PASSES, PASS_NAMES

__all__ = ["DEFAULT_PASSES", "PASS_NAMES", "apply_passes", "get_pass", "step_nodes"]

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


def step_nodes(graph_def) -> int:
    """Graph nodes run at every decode step: those of the loop frames, less the constant Enters (run once per
    loop). Grappler may still fold some at run time; ``inc-mt profile`` counts the ones actually executed."""
    from inc_transformer_mt.model.analysis import node_frames

    frames = node_frames(graph_def)[0]
    return sum(1 for n in graph_def.node
               if n.name in frames and not (n.op == "Enter" and n.attr["is_constant"].b))


def apply_passes(graph_def, names: Sequence[str]) -> tuple[Any, list[dict[str, Any]]]:
    """Run the named passes in order; (final graph, one report dict per pass). The input is not modified.

    Each report also gives the graph's node count and nodes run per decode step before and after the pass.
    """
    reports = []
    for name in names:
        before, step_before = len(graph_def.node), step_nodes(graph_def)
        graph_def, report = get_pass(name)(graph_def)
        reports.append({**report.to_dict(), "nodes_before": before, "nodes_after": len(graph_def.node),
                        "step_nodes_before": step_before, "step_nodes_after": step_nodes(graph_def)})
    return graph_def, reports
