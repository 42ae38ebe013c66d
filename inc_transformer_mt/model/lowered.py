"""Making a loop that TensorFlow lowered from a functional ``While`` look like a TF1 loop, for INC and for ITEX.

``convert_variables_to_constants_v2(lower_control_flow=True)`` gives v1 control flow, but not the shape a TF1
graph has: loop weights reach their MatMul through chains of function-input identities (and through the
``Switch`` of a lowered ``cond``), a constant can be left without its frame's control input, and keras'
LayerNormalization stays a training-mode ``FusedBatchNormV3``. Each function here rewrites one of these, exactly,
in place, and returns how many it rewrote (``inc-mt import`` reports the counts). Works on GraphDef protos.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from inc_transformer_mt.model.analysis import input_op as _op

__all__ = ["anchor_loop_constants", "bypass_constant_identities", "decompose_loop_layer_norms",
           "unswitch_branch_weights"]


def _tensor(name: str) -> str:
    return name if ":" in name else f"{name}:0"


def bypass_constant_identities(graph_def, keep: Iterable[str] = ()) -> int:
    """In place: an ``Identity`` that passes on a constant (a ``Const``, or a loop-constant ``Enter``) in its own
    frame is bypassed, so a loop weight reads ``Const -> Enter(is_constant) -> MatMul`` as in a TF1 graph (where INC
    recognises it) instead of through the chain of function-input identities the lowering leaves
    (``Const -> Identity -> Enter -> Identity -> Identity -> MatMul``). Control edges from a bypassed identity move
    to its input. Returns the number bypassed."""
    from inc_transformer_mt.model.analysis import node_frames

    frames, _ = node_frames(graph_def)
    by_name = {n.name: n for n in graph_def.node}
    keep = {_op(t) for t in keep}

    def constant(node) -> bool:
        return node.op == "Const" or (node.op == "Enter" and node.attr["is_constant"].b)

    target: dict[str, str] = {}
    for n in graph_def.node:
        if n.op != "Identity" or n.name in keep:
            continue
        src = by_name.get(_op(n.input[0]))
        if src is None or n.input[0].startswith("^") or _tensor(n.input[0]).rsplit(":", 1)[1] != "0":
            continue
        while src is not None and src.name in target:
            src = by_name[target[src.name]]
        if src is not None and constant(src) and frames.get(src.name, "") == frames.get(n.name, ""):
            target[n.name] = src.name

    def final(name: str) -> str:
        while name in target:
            name = target[name]
        return name

    if not target:
        return 0
    for n in graph_def.node:
        if n.name in target:
            continue
        new = []
        for i in n.input:
            op = _op(i)
            if op in target:
                i = f"^{final(op)}" if i.startswith("^") else final(op)
            if not (i.startswith("^") and i in new):
                new.append(i)
        n.input[:] = new
    kept = [n for n in graph_def.node if n.name not in target]
    del graph_def.node[:]
    graph_def.node.extend(kept)
    return len(target)


def unswitch_branch_weights(graph_def) -> int:
    """In place: a MatMul inside a lowered ``cond`` branch reads its constant weight through the branch's
    ``Switch`` (``Enter(is_constant) -> Switch -> Identity -> MatMul``); it reads the constant directly instead.
    The MatMul stays gated by the branch through its other input (a dead input makes it dead), so the branch
    semantics do not change, and INC sees a loop weight it can quantize. Returns the number rewired."""
    by_name = {n.name: n for n in graph_def.node}

    def constant_behind(tensor: str) -> str | None:
        node, switched = by_name.get(_op(tensor)), False
        while node is not None and node.op in ("Identity", "Switch"):
            switched |= node.op == "Switch"
            node = by_name.get(_op(node.input[0]))
        if node is not None and switched and (node.op == "Const" or (node.op == "Enter" and node.attr["is_constant"].b)):
            return node.name
        return None

    done = 0
    for n in graph_def.node:
        if n.op == "MatMul" and len(n.input) >= 2 and constant_behind(n.input[0]) is None:
            src = constant_behind(n.input[1])
            if src is not None:
                n.input[1] = src
                done += 1
    return done


def _frame_anchors(graph_def, frames: dict[str, str]) -> dict[str, str]:
    """frame -> the control input most of the frame's constants have (the frame's pivot for constants)."""
    from collections import Counter

    counts: dict[str, Counter[str]] = {}
    for n in graph_def.node:
        if n.op == "Const" and n.name in frames:
            for i in n.input:
                if i.startswith("^"):
                    counts.setdefault(frames[n.name], Counter())[i] += 1
    return {frame: c.most_common(1)[0][0] for frame, c in counts.items()}


def _fill_value(by_name: dict[str, Any], tensor: str) -> float | None:
    """The value of a ``Fill`` of a scalar constant (keras LayerNormalization's ones/zeros), else None."""
    import tensorflow as tf

    node = by_name.get(_op(tensor))
    if node is None or node.op != "Fill":
        return None
    value = by_name.get(_op(node.input[1]))
    if value is None or value.op != "Const":
        return None
    array = tf.make_ndarray(value.attr["value"].tensor)
    return float(array) if array.size == 1 else None


def decompose_loop_layer_norms(graph_def) -> int:
    """In place: a ``FusedBatchNormV3`` inside a while-loop frame that computes a layer norm (keras
    LayerNormalization's form: training mode over a [1, N, D, 1] reshape, scale ones, offset zeros, only the output
    read) becomes ``(x - mean) * rsqrt(variance + epsilon)`` in plain ops (the same arithmetic: the biased variance
    over the normalised axes). ITEX 2.15's graph optimizer turns an in-loop FusedBatchNormV3 into
    ``_ITEXFusedBatchNormV3``, whose output is wrong inside the decode loop of an OpenNMT-tf model (translations are
    repeated tokens); its LayerNorm fusion of the plain form is right. Returns the number rewritten."""
    import tensorflow as tf

    from inc_transformer_mt.model.analysis import consumers, node_frames

    frames, _ = node_frames(graph_def)
    anchors = _frame_anchors(graph_def, frames)
    by_name = {n.name: n for n in graph_def.node}
    readers = consumers(graph_def, control=False)
    f32 = tf.float32.as_datatype_enum
    done = 0
    for bn in [n for n in graph_def.node if n.op == "FusedBatchNormV3" and n.name in frames]:
        if (not bn.attr["is_training"].b or bn.attr["T"].type != f32
                or _fill_value(by_name, bn.input[1]) != 1.0 or _fill_value(by_name, bn.input[2]) != 0.0
                or any(_tensor(i).rsplit(":", 1)[1] != "0" for r in readers.get(bn.name, ()) for i in r.input
                       if _op(i) == bn.name and not i.startswith("^"))
                or frames[bn.name] not in anchors):
            continue
        axes = [0, 2, 3] if bn.attr["data_format"].s in (b"NCHW", b"NCDHW") else [0, 1, 2]
        anchor = anchors[frames[bn.name]]
        base = f"{bn.name}/layer_norm"

        def add(name: str, op: str, inputs: list[str], *, _base: str = base, **attrs) -> str:
            node = graph_def.node.add()
            node.name, node.op = f"{_base}/{name}", op
            node.input.extend(inputs)
            for key, value in attrs.items():
                node.attr[key].CopyFrom(value)
            return node.name

        def const(name: str, value, dtype, _anchor: str = anchor) -> str:
            return add(name, "Const", [_anchor], dtype=tf.compat.v1.AttrValue(type=dtype.as_datatype_enum),
                       value=tf.compat.v1.AttrValue(tensor=tf.make_tensor_proto(value, dtype)))

        t = tf.compat.v1.AttrValue(type=f32)
        keep = {"T": t, "Tidx": tf.compat.v1.AttrValue(type=tf.int32.as_datatype_enum),
                "keep_dims": tf.compat.v1.AttrValue(b=True)}
        x = bn.input[0]
        axis = const("axes", axes, tf.int32)
        mean = add("mean", "Mean", [x, axis], **keep)
        var = add("variance", "Mean", [add("squared_difference", "SquaredDifference", [x, mean], T=t), axis], **keep)
        scale = add("rsqrt", "Rsqrt", [add("add_epsilon", "AddV2", [var, const("epsilon", bn.attr["epsilon"].f,
                                                                               tf.float32)], T=t)], T=t)
        out = add("normalized", "Mul", [add("centered", "Sub", [x, mean], T=t), scale], T=t)
        for r in readers.get(bn.name, ()):
            r.input[:] = [out if _op(i) == bn.name and not i.startswith("^") else i for i in r.input]
        done += 1
    return done


def anchor_loop_constants(graph_def) -> int:
    """In place: a constant with no inputs that is read inside a while-loop frame gets the control input the
    frame's other constants have (so the executor runs it in that frame); one read in several frames gets a copy
    per frame. TensorFlow's lowering of a functional ``While`` can leave such a constant unanchored (it then lives
    in the root frame, and Grappler merges it with an equal constant outside the loop: "inputs from different
    frames"). Returns the number of constants anchored."""
    from inc_transformer_mt.model.analysis import consumers, node_frames

    frames, _ = node_frames(graph_def)
    anchors = _frame_anchors(graph_def, frames)
    readers = consumers(graph_def, control=False)
    fixed = 0
    for n in list(graph_def.node):
        if n.op != "Const" or n.input:
            continue
        # an Enter reads its input in the enclosing frame
        used_in = {"" if r.op in ("Enter", "RefEnter") else frames.get(r.name, "") for r in readers.get(n.name, ())}
        looped = sorted(f for f in used_in if f and f in anchors)
        for k, frame in enumerate(looped):
            anchor = anchors[frame]
            if used_in == {frame}:
                n.input.append(anchor)
            else:
                copy = graph_def.node.add()
                copy.CopyFrom(n)
                copy.name = f"{n.name}/frame_{k}"
                copy.input.append(anchor)
                for r in readers[n.name]:
                    if r.op not in ("Enter", "RefEnter") and frames.get(r.name, "") == frame:
                        r.input[:] = [copy.name + i[len(n.name):] if _op(i) == n.name and not i.startswith("^")
                                      else i for i in r.input]
            fixed += 1
    return fixed
