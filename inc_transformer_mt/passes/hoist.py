"""Loop-invariant code motion for v1 while loops: compute once, before the loop, what every step recomputes.

A node inside a loop frame whose inputs are all loop constants (``Enter(is_constant=True)``, constants in the
frame, or other such nodes) computes the same value at every step. This pass moves every such node before
the loop and brings its value in with one ``Enter(is_constant=True)``, which runs once per loop, not once
per step. After ``beam_invariant_state`` has made the encoder output a loop constant, this moves the
cross-attention key and value projections (MatMul, bias, reshapes, head split) of every decoder layer out of
the loop, together with their INT8 quantization when the graph is quantized.

Exact: the same ops run on the same inputs, only earlier. Left inside: stateful ops and ops TensorFlow does
not know (they may not be pure), control-flow ops, everything of a loop whose body holds a v1 cond (a value
moved out of a branch would no longer be dead when the branch is not taken), and any node whose value would have to enter the loop as
a quantized type (TensorFlow has no ``Enter`` kernel for qint8) or straight out of a ``QuantizeV2`` /
``Dequantize`` / ``Bitcast``: the INT8 backends fuse those with the MatMul they feed, and cutting the pair
apart would turn an INT8 MatMul into an FP32 one. Nested loops are left alone.
"""

from __future__ import annotations

import copy
from collections import Counter

from inc_transformer_mt.model.analysis import input_op
from inc_transformer_mt.model.rewrite import unique_name
from inc_transformer_mt.passes.graph_edit import (
    CONTROL_FLOW_OPS,
    GraphIndex,
    PassReport,
    port_of,
    prune_unreachable,
    rewire,
    sinks,
    tensor_name,
    tensor_types,
)

__all__ = ["hoist_loop_invariants"]

#: producers whose output must stay next to its consumer (INT8 fusion patterns)
_NO_CUT_OPS = frozenset({"QuantizeV2", "Quantize", "Dequantize", "Bitcast", "QuantizeAndDequantizeV2",
                         "QuantizeAndDequantizeV3", "QuantizeAndDequantizeV4"})
_CONST_OPS = ("Const", "HostConst")


def _pure(op: str) -> bool:
    from tensorflow.python.framework import op_def_registry

    op_def = op_def_registry.get(op)
    return op_def is not None and not op_def.is_stateful and op not in CONTROL_FLOW_OPS


def _enterable(dtype) -> bool:
    """A tensor of this type can enter a loop on CPU (TensorFlow registers Enter for no quantized type)."""
    return not dtype.is_quantized and dtype.name != "resource" and dtype.name != "variant"


def _has_cond(index: GraphIndex, frame: str) -> bool:
    """Whether the loop body has a Switch other than the loop variables' (whose predicate is the LoopCond)."""
    for n in index.graph_def.node:
        if n.op in ("Switch", "RefSwitch") and index.frame_of.get(n.name) == frame:
            pred = index.node(n.input[1])
            if pred is None or pred.op != "LoopCond":
                return True
    return False


def _invariant_nodes(index: GraphIndex, frame: str) -> tuple[set[str], set[str], set[str]]:
    """(constant Enters, constants, pure computed nodes) of ``frame`` whose value is the same at every step."""
    members = [n for n in index.graph_def.node if index.frame_of.get(n.name) == frame]
    enters = {n.name for n in members if n.op == "Enter" and n.attr["is_constant"].b}
    consts = {n.name for n in members if n.op in _CONST_OPS}
    invariant = enters | consts
    computed: set[str] = set()
    changed = True
    while changed:
        changed = False
        for n in members:
            if n.name in invariant or not _pure(n.op):
                continue
            if all(input_op(i) in invariant for i in n.input):
                invariant.add(n.name)
                computed.add(n.name)
                changed = True
    return enters, consts, computed


def _hoistable(index: GraphIndex, computed: set[str], consts: set[str], types: dict) -> set[str]:
    """The computed invariants that can move out without an Enter the backends cannot run or fuse across."""
    hoist = set(computed)
    changed = True
    while changed:
        changed = False
        for name in sorted(hoist):
            node = index.by_name[name]
            inputs_ok = all(input_op(i) in hoist or input_op(i) in consts or
                            index.by_name[input_op(i)].op == "Enter" for i in node.input)
            cut_ok = True
            for consumer in index.consumers(name):
                if consumer.name in hoist:
                    continue
                if node.op in _NO_CUT_OPS:
                    cut_ok = False
                    break
                ports = [port_of(i) for i in consumer.input if input_op(i) == name and not i.startswith("^")] or [0]
                if any(not _enterable(types[name][p][0]) for p in ports):
                    cut_ok = False
                    break
            if not (inputs_ok and cut_ok):
                hoist.discard(name)
                changed = True
    return hoist


def hoist_loop_invariants(graph_def):
    """(new graph_def, PassReport). The input graph is not modified."""
    gd = copy.deepcopy(graph_def)
    report = PassReport(name="hoist_loop_invariants")
    index = GraphIndex(gd)
    if not index.frames():
        return gd, report.not_applicable("no while loop (v1 control flow) in the graph")
    types = tensor_types(gd)
    keep = sinks(gd)
    names = set(index.by_name)
    new_nodes: list = []
    mapping: dict[str, str] = {}
    moved_ops: Counter = Counter()
    moved: set[str] = set()
    for frame in index.frames():
        frame_enters = [n for n in gd.node if n.op == "Enter" and n.attr["frame_name"].s.decode() == frame]
        if any(index.frame_of.get(input_op(e.input[0])) for e in frame_enters):
            report.skipped[frame] = "nested loop"
            continue
        if _has_cond(index, frame):
            # a value moved out of a cond branch would stay live in the branch not taken
            report.skipped[frame] = "the loop body contains a v1 cond (Switch/Merge not of the loop)"
            continue
        _, consts, computed = _invariant_nodes(index, frame)
        hoist = _hoistable(index, computed, consts, types)
        if not hoist:
            report.skipped[frame] = "no step-invariant computation that can leave the loop"
            continue
        template = frame_enters[0]
        outside: dict[str, str] = {}  # in-frame op -> its copy before the loop

        def outer(inp: str, outside: dict[str, str] = outside) -> str:
            op, ctrl = input_op(inp), inp.startswith("^")
            node = index.by_name[op]
            if node.op == "Enter":
                src = node.input[0]
                return f"^{input_op(src)}" if ctrl else src
            if op not in outside:  # a constant of the frame: a copy without its anchoring control input
                c = copy.deepcopy(node)
                c.name = unique_name(names, f"{op}/inc_mt_hoisted")
                names.add(c.name)
                del c.input[:]
                new_nodes.append(c)
                outside[op] = c.name
            return f"^{outside[op]}" if ctrl else tensor_name(outside[op], port_of(inp))

        order = [n for n in gd.node if n.name in hoist]
        pending = {n.name for n in order}
        while pending:  # create the copies producers first
            progressed = False
            for n in order:
                if n.name not in pending or any(input_op(i) in pending for i in n.input):
                    continue
                c = copy.deepcopy(n)
                # the copy keeps the node's name (reports and precision censuses find it); the node inside
                # the loop is removed below, once its consumers read the copy through an Enter
                c.attr.pop("_class", None)
                del c.input[:]
                c.input.extend(outer(i) if input_op(i) not in hoist else
                               (f"^{outside[input_op(i)]}" if i.startswith("^")
                                else tensor_name(outside[input_op(i)], port_of(i))) for i in n.input)
                new_nodes.append(c)
                outside[n.name] = c.name
                pending.discard(n.name)
                moved_ops[n.op] += 1
                moved.add(n.name)
                report.rewritten.append(n.name)
                progressed = True
            if not progressed:
                raise RuntimeError(f"hoist_loop_invariants: cycle among loop-invariant nodes in {frame}")
        # what the loop still reads from a moved node comes in through one constant Enter per output used
        for name in sorted(hoist):
            for consumer in index.consumers(name):
                if consumer.name in hoist:
                    continue
                for inp in consumer.input:
                    if input_op(inp) != name:
                        continue
                    port = 0 if inp.startswith("^") else port_of(inp)
                    key = tensor_name(name, port)
                    if key not in mapping:
                        enter = copy.deepcopy(template)
                        enter.name = unique_name(names, f"{name}/inc_mt_enter" + (f"_{port}" if port else ""))
                        names.add(enter.name)
                        del enter.input[:]
                        enter.input.append(tensor_name(outside[name], port))
                        enter.attr["T"].type = types[name][port][0].as_datatype_enum
                        enter.attr["is_constant"].b = True
                        enter.attr.pop("_class", None)
                        new_nodes.append(enter)
                        mapping[key] = enter.name
                        if port == 0:
                            mapping[f"{name}:0"] = enter.name
                    if inp.startswith("^"):
                        mapping[inp] = f"^{mapping[key]}"
    if not report.rewritten:
        return gd, report.not_applicable("no step-invariant computation that can leave the loop")
    rewire(gd, mapping)  # the loop's readers of moved nodes now read their Enters
    kept = [n for n in gd.node if n.name not in moved]
    del gd.node[:]
    gd.node.extend(kept)
    gd.node.extend(new_nodes)
    report.added_nodes = len(new_nodes)
    report.removed_nodes = prune_unreachable(gd, keep) + len(moved)  # the moved originals, and what died
    report.details = {"moved_ops": dict(sorted(moved_ops.items())),
                      "moved_matmuls": sum(v for k, v in moved_ops.items() if "MatMul" in k),
                      "enters_added": sum(1 for n in new_nodes if n.op == "Enter")}
    return gd, report
