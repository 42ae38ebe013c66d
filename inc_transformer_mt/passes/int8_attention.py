"""INT8 attention: both batched matmuls of an attention (Q.K^T and P.V) on 8-bit operands.

INC 3.10 never quantizes BatchMatMulV2 (docs/inc.md), so the package rewrites them after INC: each selected
``BatchMatMulV2(x, y)`` becomes ``QuantizeV2(x), QuantizeV2(y) -> _QuantizedBatchMatMulV2AndDequantize``,
ITEX's integer kernel (s8 x s8 -> s32 accumulation -> float output, oneDNN), with static ranges calibrated on
the calibration sentences (every decode step included).

The second operand is quantized to 7 bits (values in [-64, 63], its range doubled): on CPUs without VNNI the
s8 x s8 kernel multiplies through ``vpmaddubsw``, whose int16 pair sums saturate when both operands use the
full 8 bits. Measured on the AVX2-only EPYC: full 8-bit operands gave errors up to 25% of the output's range
on about 1% of the outputs; with the 7-bit second operand, none beyond the quantization error. A graph may
be deployed on any CPU, so the rewrite always reduces the range (docs/fully-8bit.md).

The ITEX op exists only where ITEX is loaded: a graph with it does not import under stock TensorFlow.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping

from inc_transformer_mt.errors import RuntimeFailure, UserError
from inc_transformer_mt.model.analysis import compute_ops
from inc_transformer_mt.passes.graph_edit import PassReport, build_subgraph, calibrated_range, splice

__all__ = ["QBMM_OP", "attention_inputs", "int8_attention", "quantize_range", "require_itex"]

QBMM_OP = "_QuantizedBatchMatMulV2AndDequantize"


def attention_inputs(graph_def) -> dict[str, list[str]]:
    """Attention BatchMatMul op -> its two input tensors."""
    by_name = {n.name: n for n in graph_def.node}
    return {op: [i for i in by_name[op].input if not i.startswith("^")][:2]
            for op, t in compute_ops(graph_def).items() if t == "BatchMatMulV2"}


def quantize_range(lo: float, hi: float, *, reduced: bool = False) -> float:
    """The symmetric SCALED range (+-r) of a calibrated (lo, hi); doubled for a 7-bit (``reduced``) operand."""
    r = max(abs(float(lo)), abs(float(hi)), 1e-6)
    return 2.0 * r if reduced else r


def _qbmm_graph(x, y, rx: float, ry: float, adj_x: bool, adj_y: bool):
    import tensorflow as tf
    from tensorflow.core.framework import attr_value_pb2

    def q(t, r):
        out = tf.raw_ops.QuantizeV2(input=t, min_range=-r, max_range=r, T=tf.qint8, mode="SCALED",
                                    round_mode="HALF_TO_EVEN")
        return out.output, out.output_min, out.output_max

    (qx, x_lo, x_hi), (qy, y_lo, y_hi) = q(x, rx), q(y, ry)
    graph = tf.compat.v1.get_default_graph()
    attrs = {"T1": attr_value_pb2.AttrValue(type=tf.qint8.as_datatype_enum),
             "T2": attr_value_pb2.AttrValue(type=tf.qint8.as_datatype_enum),
             "Toutput": attr_value_pb2.AttrValue(type=tf.float32.as_datatype_enum),
             "adj_x": attr_value_pb2.AttrValue(b=adj_x), "adj_y": attr_value_pb2.AttrValue(b=adj_y),
             "is_filter_const": attr_value_pb2.AttrValue(b=False)}
    op = graph.create_op(QBMM_OP, [qx, qy, x_lo, x_hi, y_lo, y_hi], [tf.float32], attrs=attrs, name="qbmm")
    return op.outputs[0]


def require_itex() -> None:
    from tensorflow.python.framework import op_def_registry

    if op_def_registry.get(QBMM_OP) is None:
        raise RuntimeFailure(f"INT8 attention needs ITEX's {QBMM_OP} kernel, and ITEX is not loaded in this "
                             "process (install intel-extension-for-tensorflow[cpu]==2.15.0.0; not the stock runtime)")


def int8_attention(graph_def, ranges: Mapping[str, tuple[float, float]], ops: Iterable[str]):
    """(new graph_def, PassReport): each attention BatchMatMul in ``ops`` on INT8 operands, with the ranges of
    its two inputs from ``ranges`` (tensor -> (min, max)). The input graph is not modified."""
    require_itex()
    gd = copy.deepcopy(graph_def)
    report = PassReport(name="int8_attention")
    inputs = attention_inputs(gd)
    by_name = {n.name: n for n in gd.node}
    for op in sorted(set(ops)):
        if op not in inputs:
            raise UserError(f"INT8 attention: {op} is not an attention BatchMatMul of the graph")
        node = by_name[op]
        x, y = inputs[op]
        rx = quantize_range(*calibrated_range(ranges, x, op))
        ry = quantize_range(*calibrated_range(ranges, y, op), reduced=True)
        adj_x, adj_y = node.attr["adj_x"].b, node.attr["adj_y"].b
        sub, out = build_subgraph(lambda x, y, rx=rx, ry=ry, ax=adj_x, ay=adj_y: _qbmm_graph(x, y, rx, ry, ax, ay),
                                  {"x": None, "y": None})
        splice(gd, op, sub, out, {"x": x, "y": y}, anchor=x, prefix=f"{op}/int8")
        report.rewritten.append(op)
        report.details[op] = {"x_range": rx, "y_range": ry}
    return gd, report

