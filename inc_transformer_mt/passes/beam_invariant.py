"""Beam-invariant loop state: read it from a loop constant instead of gathering it at every step.

Beam search keeps everything the decoder needs in its loop state and reorders all of it after every step.
Some of that state is the same for every beam of a sentence and never changes: the encoder output and its
attention bias enter the loop tiled across the beams (``Tile(ExpandDims(x, 1), [1, K, 1, ...])``) and their
only update is the beam reorder (``GatherNd`` with (batch position, beam) coordinates, between the flatten /
unflatten reshapes of the beam axis). Reordering beams that hold equal values changes nothing, so the value
the body reads is, at every step, the tiled initial value. This pass makes the body read that value through
``Enter(is_constant=True)``; the loop variable, its gathers and reshapes are then dead and removed.

What is checked, by structure only: the initial value is a Tile of an ExpandDims on axis 1 with multiples
``[1, K>1, 1, ...]``; the update reaches the body read through Identity, Reshape and GatherNd only; each
GatherNd's coordinates are ``Pack([batch_pos, beams], axis=-1)`` with ``batch_pos = reshape(range(0, n*M, 1)
// M, [n, M])`` (every row gathers within its own sentence); the reshapes restore the body read's rank and its
statically known dimensions (TensorFlow's shape inference knows few inside an imported loop, so the reshapes
are checked only where it does; translations are compared token by token after the passes, in the tune
report and by ``inc-mt optimize --check-split``). Anything else is left alone, with the reason in the report.
"""

from __future__ import annotations

import copy

import numpy as np

from inc_transformer_mt.model.analysis import input_op, source_node
from inc_transformer_mt.model.rewrite import unique_name
from inc_transformer_mt.passes.graph_edit import (
    GraphIndex,
    LoopVar,
    PassReport,
    port_of,
    prune_unreachable,
    rewire,
    sinks,
    tensor_types,
)

__all__ = ["beam_invariant_state"]

def _const(index: GraphIndex, name: str):
    """The numpy value of the Const behind input ``name`` (through Identity/Enter), or None."""
    node = source_node(index.by_name, name)
    if node is None or node.op not in ("Const", "HostConst"):
        return None
    from tensorflow.python.framework import tensor_util

    return tensor_util.MakeNdarray(node.attr["value"].tensor)


def _source(index: GraphIndex, name: str):
    """The node behind input ``name``, through Identity only (a loop Enter is a boundary here)."""
    return source_node(index.by_name, name, through=("Identity",))


def _tiled_across_beams(index: GraphIndex, var: LoopVar) -> str | None:
    """None when the initial value is Tile(ExpandDims(x, 1), [1, K>1, 1, ...]); else why not."""
    tile = _source(index, var.enter.input[0])
    if tile is None or tile.op != "Tile":
        return "initial value is not a Tile"
    multiples = _const(index, tile.input[1])
    if multiples is None or multiples.ndim != 1 or len(multiples) < 2:
        return "Tile multiples are not constant"
    if multiples[0] != 1 or multiples[1] < 2 or np.any(multiples[2:] != 1):
        return f"Tile multiples {multiples.tolist()} do not tile axis 1 only"
    expand = _source(index, tile.input[0])
    if expand is None or expand.op != "ExpandDims" or _const(index, expand.input[1]) is None \
            or int(_const(index, expand.input[1])) != 1:
        return "tiled value is not ExpandDims(x, axis=1)"
    return None


def _within_sentence(index: GraphIndex, coords_name: str) -> str | None:
    """None when GatherNd coordinates are Pack([batch_pos, beams], axis=-1) with batch_pos[b, j] == b."""
    pack = _source(index, coords_name)
    if pack is None or pack.op != "Pack" or pack.attr["N"].i != 2 or pack.attr["axis"].i not in (2, -1):
        return "gather coordinates are not a Pack of (batch, beam) indices"
    reshape = _source(index, pack.input[0])
    if reshape is None or reshape.op != "Reshape":
        return "batch coordinate is not reshape(range(n*M) // M, [n, M])"
    div = _source(index, reshape.input[0])
    if div is None or div.op != "FloorDiv":
        return "batch coordinate is not range(n*M) // M"
    m = _const(index, div.input[1])
    rng = _source(index, div.input[0])
    if m is None or m.ndim != 0 or rng is None or rng.op != "Range":
        return "batch coordinate is not range(n*M) // M with a constant M"
    start, delta = _const(index, rng.input[0]), _const(index, rng.input[2])
    if start is None or delta is None or int(start) != 0 or int(delta) != 1:
        return "batch coordinate range does not start at 0 with step 1"
    limit = _source(index, rng.input[1])
    if limit is None or limit.op != "Mul" or not any(
            (v := _const(index, i)) is not None and v.ndim == 0 and int(v) == int(m) for i in limit.input[:2]):
        return "batch coordinate range is not n*M"
    shape = _source(index, reshape.input[1])
    last = None
    if shape is not None and shape.op == "Pack" and shape.attr["N"].i == 2:
        last = _const(index, shape.input[1])
    elif (v := _const(index, reshape.input[1])) is not None and v.ndim == 1 and len(v) == 2:
        last = v[1]
    if last is None or int(last) != int(m):
        return "batch coordinate is not reshaped to [n, M]"
    return None


def _reorder_only(index: GraphIndex, var: LoopVar, types: dict) -> str | None:
    """None when the update reaches the body read through Identity / Reshape / within-sentence GatherNd only."""
    read_op, read_port = var.read_port
    if var.body_read is None and any(c.op == "Identity" for c in index.consumers(var.switch.name, port=1)):
        return "loop variable is read through more than one Identity"
    # the loop variable's shape: what the body read is known to be, merged with the initial value's (an
    # imported graph loses the shape invariants, so the Merge may have no static shape)
    init = var.enter.input[0]
    read_shape = types[read_op][read_port][1]
    init_shape = types[input_op(init)][port_of(init)][1]
    if not read_shape.is_compatible_with(init_shape):
        return "the initial value's shape does not match the loop variable's"
    read_shape = read_shape.merge_with(init_shape)
    if read_shape.rank is None:
        return "the loop variable's rank is not static"
    current = var.next_iteration.input[0]
    node = index.node(current)
    gathers = 0
    seen = 0
    while node is not None and node.name != read_op:
        seen += 1
        if seen > 64:
            return "update chain longer than 64 nodes"
        if node.op in ("Identity", "Reshape"):
            current = node.input[0]
            node = index.node(current)
        elif node.op == "GatherNd":
            why = _within_sentence(index, node.input[1])
            if why:
                return why
            shape = types[input_op(node.input[0])][0][1] if input_op(node.input[0]) in types else None
            # a gather may change the number of beams (K -> 2K -> K), nothing else: same rank, same trailing dims
            # (inside an imported loop TensorFlow often knows no shape at all: then nothing contradicts)
            if shape is not None and shape.rank is not None and (
                    shape.rank != read_shape.rank or not shape[2:].is_compatible_with(read_shape[2:])):
                return "a gathered tensor does not have the loop variable's shape"
            gathers += 1
            current = node.input[0]
            node = index.node(current)
        else:
            return f"updated by {node.op}, not only by beam reordering"
    if node is None:
        return "update chain leaves the graph"
    if port_of(current) != read_port:
        return "update does not start from the value the body reads"
    if not gathers:
        return "update has no beam gather"
    final = types[input_op(var.next_iteration.input[0])][0][1]
    if not final.is_compatible_with(read_shape):
        return "update does not restore the loop variable's shape"
    return None


def beam_invariant_state(graph_def):
    """(new graph_def, PassReport). The input graph is not modified."""
    gd = copy.deepcopy(graph_def)
    report = PassReport(name="beam_invariant_state")
    index = GraphIndex(gd)
    if not index.frames():
        return gd, report.not_applicable("no while loop (v1 control flow) in the graph")
    types = tensor_types(gd)
    keep = sinks(gd)
    mapping: dict[str, str] = {}
    new_nodes = []
    names = set(index.by_name)
    for frame in index.frames():
        loop_vars = index.loop_vars(frame)
        chosen = []
        for var in loop_vars:
            why = _tiled_across_beams(index, var) or _reorder_only(index, var, types)
            if not why and any(c.op != "Switch" for c in index.consumers(var.merge.name, control=False)):
                why = "read by the loop condition"
            if why:
                report.skipped[var.enter.name] = why
            else:
                chosen.append(var)
        kept = [v for v in loop_vars if v not in chosen]
        if not kept:  # the frame needs a Merge left to anchor its constants (never the case in beam search)
            for var in chosen:
                report.skipped[var.enter.name] = "every loop variable would go"
            chosen = []
        for var in chosen:
            enter = copy.deepcopy(var.enter)
            enter.name = unique_name(names, f"{var.read_port[0]}/inc_mt_beam_invariant")
            names.add(enter.name)
            enter.attr["is_constant"].b = True
            new_nodes.append(enter)
            if var.body_read is not None:
                mapping[var.body_read.name] = enter.name
                mapping[f"{var.body_read.name}:0"] = enter.name
                mapping[f"^{var.body_read.name}"] = f"^{enter.name}"
            else:
                mapping[var.read_tensor] = enter.name
            if var.exit is not None:  # after the loop the variable still holds its initial value
                mapping[var.exit.name] = var.enter.input[0]
                mapping[f"{var.exit.name}:0"] = var.enter.input[0]
                keep.discard(var.exit.name)  # an Exit nothing reads is not an output worth keeping the loop for
            # constants of the loop condition hang off a Merge by control edge: move them to a kept one
            mapping[f"^{var.merge.name}"] = f"^{kept[0].merge.name}"
            report.rewritten.append(var.enter.name)
    if not report.rewritten:
        return gd, report.not_applicable("no loop variable is tiled across beams and updated only by beam "
                                         "reordering")
    gd.node.extend(new_nodes)
    rewire(gd, mapping)
    report.added_nodes = len(new_nodes)
    report.removed_nodes = prune_unreachable(gd, keep)
    return gd, report
