"""GatherNd -> flattened Gather: the beam-search cache reorder as one ``GatherV2`` on axis 0.

The official Transformer's beam search reorders every cached tensor at every step with
``gather_nd(params[B, D1, ...], coords[B, K, 2])``. The same result is
``gather(reshape(params, [B*D1, ...]), coords[..., 0] * D1 + coords[..., 1], axis=0)`` — Intel's INT8
Transformer code made this change. The pass rewrites every GatherNd whose indices are int32 ``[B, K, 2]``
pairs (checked from the graph where shapes are known) and leaves any other GatherNd alone. The flat index
is computed once per (coords, D1) pair and shared. Nodes created inside a loop frame get a control input
from the coordinates so that their constants live in the same frame.
"""

from __future__ import annotations

import copy

from inc_transformer_mt.model.analysis import input_op
from inc_transformer_mt.passes.graph_edit import PassReport

__all__ = ["gather_nd_to_gather"]


def gather_nd_to_gather(graph_def):
    """(new graph_def, PassReport). The input graph is not modified."""
    from tensorflow.core.framework import attr_value_pb2, node_def_pb2, tensor_pb2, types_pb2
    from tensorflow.python.framework import tensor_util

    gd = copy.deepcopy(graph_def)
    report = PassReport(name="gather_nd_to_gather")
    by_name = {n.name: n for n in gd.node}
    new_nodes: list = []

    def node(name, op, inputs, **attrs):
        n = node_def_pb2.NodeDef(name=name, op=op, input=list(inputs))
        for k, v in attrs.items():
            if isinstance(v, attr_value_pb2.AttrValue):
                n.attr[k].CopyFrom(v)
            elif isinstance(v, bool):
                n.attr[k].b = v
            elif isinstance(v, int) and k in ("T", "Tidx", "Tindices", "Tparams", "Taxis", "Tshape", "out_type",
                                                "dtype", "Index"):
                n.attr[k].type = v
            elif isinstance(v, int):
                n.attr[k].i = v
            elif isinstance(v, tensor_pb2.TensorProto):
                n.attr[k].tensor.CopyFrom(v)
        new_nodes.append(n)
        return n.name

    def const(name, value, anchor):  # int32 constant in the frame of ``anchor``
        return node(name, "Const", [f"^{anchor}"], dtype=types_pb2.DT_INT32,
                    value=tensor_util.make_tensor_proto(value, dtype="int32"))

    flat_cache: dict[tuple[str, str], str] = {}
    for g in list(gd.node):
        if g.op != "GatherNd":
            continue
        if g.attr["Tindices"].type != types_pb2.DT_INT32:
            report.skipped[g.name] = "indices are not int32"
            continue
        params, coords = g.input[0], g.input[1]
        coords_node = by_name.get(input_op(coords))
        # the coordinates of the beam search come from Pack(..., axis=2) of two [B, K] tensors
        if coords_node is None or coords_node.op != "Pack" or coords_node.attr["N"].i != 2 or \
                coords_node.attr["axis"].i not in (2, -1):
            report.skipped[g.name] = "indices are not a [B, K, 2] stack of (batch, beam) coordinates"
            continue
        anchor = coords_node.name
        base = g.name + "/inc_mt_gather"
        c0, c1 = coords_node.input[0], coords_node.input[1]
        shape = node(f"{base}/shape", "Shape", [params], T=g.attr["Tparams"].type, out_type=types_pb2.DT_INT32)
        key = (coords_node.name, params)
        begin1 = const(f"{base}/b1", [1], anchor)
        end2 = const(f"{base}/e2", [2], anchor)
        one = const(f"{base}/s1", [1], anchor)
        d1 = node(f"{base}/d1", "StridedSlice", [shape, begin1, end2, one], T=types_pb2.DT_INT32,
                  Index=types_pb2.DT_INT32, shrink_axis_mask=1, begin_mask=0, end_mask=0, ellipsis_mask=0,
                  new_axis_mask=0)
        rest = node(f"{base}/rest", "StridedSlice", [shape, end2, end2, one], T=types_pb2.DT_INT32,
                    Index=types_pb2.DT_INT32, shrink_axis_mask=0, begin_mask=0, end_mask=1, ellipsis_mask=0,
                    new_axis_mask=0)
        minus1 = const(f"{base}/m1", [-1], anchor)
        axis0 = const(f"{base}/axis0", 0, anchor)
        new_shape = node(f"{base}/new_shape", "ConcatV2", [minus1, rest, axis0], T=types_pb2.DT_INT32, N=2,
                         Tidx=types_pb2.DT_INT32)
        flat_params = node(f"{base}/flat_params", "Reshape", [params, new_shape], T=g.attr["Tparams"].type,
                           Tshape=types_pb2.DT_INT32)
        if key not in flat_cache:
            scaled = node(f"{base}/row", "Mul", [c0, d1], T=types_pb2.DT_INT32)
            flat_cache[key] = node(f"{base}/flat_index", "AddV2", [scaled, c1], T=types_pb2.DT_INT32)
        gathered = node(f"{base}/gather", "GatherV2", [flat_params, flat_cache[key], axis0],
                        Tparams=g.attr["Tparams"].type, Tindices=types_pb2.DT_INT32, Taxis=types_pb2.DT_INT32,
                        batch_dims=0)
        # consumers of the GatherNd now read the Gather (the GatherNd node is replaced by an Identity)
        g.op = "Identity"
        g.input[:] = [gathered]
        t = g.attr["Tparams"].type
        for k in list(g.attr):
            del g.attr[k]
        g.attr["T"].type = t
        report.rewritten.append(g.name)
    gd.node.extend(new_nodes)
    report.added_nodes = len(new_nodes)
    report.replaced_by_identity = len(report.rewritten)
    return gd, report
