"""Remove redundant Quantize ops: one ``QuantizeV2`` per (tensor, range, attributes) instead of one per consumer.

INC's default (oneDNN) backend quantizes an activation once for every MatMul that reads it, even when the
ranges are the same: the attention input is quantized three times (Q, K, V projections), and the encoder
output read by every decoder layer's cross-attention six times, inside the decode loop, at every step.
Nodes with the same input tensor, the same min/max values (constants, looked up through ``Enter`` /
``Identity``) and the same attributes compute the same three outputs, so all but the first are removed and
their consumers (data and control) read the one kept. The min/max constants that fed only the removed
nodes go too. Exact by construction; ``inc-mt optimize --check-split`` checks the translations anyway.
"""

from __future__ import annotations

import copy

from inc_transformer_mt.model.analysis import input_op
from inc_transformer_mt.passes.graph_edit import PassReport, drop_repeated_controls

__all__ = ["dedupe_quantize"]

_FOLLOW = ("Enter", "Identity")


def _const_value(by_name: dict, name: str):
    """Bytes of the constant behind input ``name`` (through Enter/Identity), with the frame it entered; or None."""
    frames = []
    node = by_name.get(input_op(name))
    while node is not None and node.op in _FOLLOW:
        if node.op == "Enter":
            frames.append(node.attr["frame_name"].s)
        node = by_name.get(input_op(node.input[0]))
    if node is None or node.op not in ("Const", "HostConst"):
        return None
    return (tuple(frames), node.attr["dtype"].type, node.attr["value"].tensor.SerializeToString(deterministic=True))


def dedupe_quantize(graph_def):
    """(new graph_def, PassReport). The input graph is not modified."""
    gd = copy.deepcopy(graph_def)
    report = PassReport(name="dedupe_quantize")
    by_name = {n.name: n for n in gd.node}
    kept: dict[tuple, str] = {}
    alias: dict[str, str] = {}  # removed QuantizeV2 -> kept one
    for n in gd.node:
        if n.op != "QuantizeV2" or len(n.input) < 3:
            continue
        lo, hi = _const_value(by_name, n.input[1]), _const_value(by_name, n.input[2])
        if lo is None or hi is None:
            report.skipped[n.name] = "range is not constant"
            continue
        data = n.input[0] if ":" in n.input[0] else f"{n.input[0]}:0"
        controls = tuple(sorted(i for i in n.input[3:] if i.startswith("^")))
        attrs = tuple(sorted((k, v.SerializeToString(deterministic=True)) for k, v in n.attr.items()))
        key = (data, lo, hi, controls, attrs, n.device)
        if key in kept:
            alias[n.name] = kept[key]
            report.rewritten.append(n.name)
        else:
            kept[key] = n.name
    if not alias:
        return gd, report
    for n in gd.node:
        for i, inp in enumerate(n.input):
            op = input_op(inp)
            if op in alias:
                if inp.startswith("^"):
                    n.input[i] = f"^{alias[op]}"
                else:
                    port = inp.split(":", 1)[1] if ":" in inp else "0"
                    n.input[i] = alias[op] if port == "0" else f"{alias[op]}:{port}"
        drop_repeated_controls(n)  # a node may now list the same control input twice
    # drop the removed nodes, then whatever fed only them (their min/max constants and Enters)
    removable = set(alias)
    for name in alias:
        stack = [input_op(i) for i in by_name[name].input[1:3]]
        while stack:
            node = by_name.get(stack.pop())
            if node is not None and node.op in (*_FOLLOW, "Const", "HostConst") and node.name not in removable:
                removable.add(node.name)
                stack.extend(input_op(i) for i in node.input)
    while True:
        used = {input_op(i) for n in gd.node for i in n.input}
        dead = {n.name for n in gd.node if n.name in removable and n.name not in used}
        if not dead:
            break
        nodes = [n for n in gd.node if n.name not in dead]
        del gd.node[:]
        gd.node.extend(nodes)
        removable -= dead
        report.removed_nodes += len(dead)
    return gd, report
