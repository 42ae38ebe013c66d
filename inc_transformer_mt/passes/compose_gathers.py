"""Fuse the two beam reorders of every cache into one gather: GatherNd(GatherNd(x, c1), c2) -> GatherNd(x, c1[c2]).

Each beam-search step reorders every cached tensor twice: once to the 2K best continuations (``c1``: [B, 2K,
2] coordinates) and again to the K that stay alive (``c2``: [B, K, 2] coordinates into the 2K). The second
gather reads only the first, so the two compose into one gather of the cache with the composed coordinates
``GatherNd(c1, c2)``, a [B, K, 2] integer gather computed once per step and shared by every cache. Each
cache then moves once per step instead of twice, and the 2K-beam intermediate (twice the cache's size) is
never built.

Exact for any coordinates: ``GatherNd(g1, c2)[i] = g1[c2[i]] = x[c1[c2[i]]]`` when ``c2`` indexes exactly
the leading (batch) dimensions of ``g1 = GatherNd(x, c1)``, i.e. ``c2``'s index depth is ``rank(c1) - 1``
(checked with TensorFlow's shape inference). An inner gather that is also read elsewhere is left alone: the
rewrite would then add a gather, not remove one.
"""

from __future__ import annotations

import copy

from inc_transformer_mt.model.analysis import input_op
from inc_transformer_mt.model.rewrite import unique_name
from inc_transformer_mt.passes.graph_edit import (
    GraphIndex,
    PassReport,
    prune_unreachable,
    sinks,
    tensor_types,
)

__all__ = ["compose_beam_gathers"]


def _why_not(index: GraphIndex, outer, types: dict) -> str | None:
    inner = index.node(outer.input[0])
    if inner is None or inner.op != "GatherNd":
        return "params are not a GatherNd"
    for c in index.consumers(inner.name):
        if c.op != "GatherNd" or input_op(c.input[0]) != inner.name or input_op(c.input[1]) == inner.name:
            return "inner gather is also read by something other than a gather of it"
    c1 = types.get(input_op(inner.input[1]))
    c2 = types.get(input_op(outer.input[1]))
    if c1 is None or c2 is None:
        return "coordinates have no inferred shape"
    s1, s2 = c1[0][1], c2[0][1]
    if s1.rank is None or s2.rank is None or s2[-1] is None or s1[-1] is None:
        return "coordinate ranks or index depths are not static"
    if s2[-1] != s1.rank - 1:
        return f"outer index depth {s2[-1]} does not cover the inner gather's {s1.rank - 1} leading dimensions"
    return None


def compose_beam_gathers(graph_def):
    """(new graph_def, PassReport). The input graph is not modified."""
    gd = copy.deepcopy(graph_def)
    report = PassReport(name="compose_beam_gathers")
    if not any(n.op == "GatherNd" for n in gd.node):
        return gd, report.not_applicable("no GatherNd in the graph")
    keep = sinks(gd)
    names = {n.name for n in gd.node}
    added = 0
    while True:  # a chain of three composes in two rounds
        index = GraphIndex(gd)
        types = tensor_types(gd)
        composed: dict[tuple[str, str], str] = {}
        new_nodes = []
        changed = False
        for outer in [n for n in gd.node if n.op == "GatherNd"]:
            why = _why_not(index, outer, types)
            if why:
                if index.node(outer.input[0]) is not None and index.node(outer.input[0]).op == "GatherNd":
                    report.skipped[outer.name] = why
                continue
            inner = index.node(outer.input[0])
            key = (inner.input[1], outer.input[1])
            if key not in composed:
                cc = copy.deepcopy(outer)  # GatherNd(c1, c2): same device / frame placement as the outer gather
                cc.name = unique_name(names, f"{outer.name}/inc_mt_composed_index")
                names.add(cc.name)
                del cc.input[:]
                cc.input.extend([inner.input[1], outer.input[1]])
                cc.attr["Tparams"].type = inner.attr["Tindices"].type
                cc.attr["Tindices"].type = outer.attr["Tindices"].type
                cc.attr.pop("_class", None)
                new_nodes.append(cc)
                composed[key] = cc.name
            outer.input[0] = inner.input[0]
            outer.input[1] = composed[key]
            outer.attr["Tindices"].type = inner.attr["Tindices"].type
            report.skipped.pop(outer.name, None)
            report.rewritten.append(outer.name)
            changed = True
        gd.node.extend(new_nodes)
        added += len(new_nodes)
        if not changed:
            break
    if not report.rewritten:
        return gd, report.not_applicable("no gather of a gather that composes (each cache is reordered once)")
    report.added_nodes = added
    report.removed_nodes = prune_unreachable(gd, keep)
    report.details = {"gathers_before": sum(n.op == "GatherNd" for n in graph_def.node),
                      "gathers_after": sum(n.op == "GatherNd" for n in gd.node)}
    return gd, report
