"""Activation statistics of every MatMul input, decode-loop steps included, for KL calibration.

Tensors inside a while-loop frame cannot be fetched with ``Session.run``. So the frozen graph is
instrumented in place: each watched tensor gets in-graph update ops that accumulate into resource
variables (entered into the loop frame with ``Enter``), and the consuming MatMul gets a control dependency
on the update so that it runs at every step. Two passes over the calibration batches: the first records
min / max (``ResourceScatterMin/Max``), the second a signed histogram over ``[-absmax, absmax]``
(``HistogramFixedWidth`` + ``AssignAddVariableOp``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from inc_transformer_mt.errors import UserError
from inc_transformer_mt.model.analysis import input_op, node_frames, source_node
from inc_transformer_mt.quant.kl import TensorStats

__all__ = ["MASKED_BELOW", "CalibrationData", "collect_stats", "matmul_inputs"]

#: values below minus this in a masked tensor are the additive padding/causal mask (-1e9), not scores
MASKED_BELOW = 1e4

logger = logging.getLogger(__name__)


def _tensor(name: str) -> str:
    return name if ":" in name else name + ":0"


def matmul_inputs(graph_def) -> dict[str, str]:
    """MatMul op name -> its activation input tensor (input 0), for MatMuls with a constant weight."""
    by_name = {n.name: n for n in graph_def.node}

    def constant(name: str) -> bool:
        node = source_node(by_name, name)
        return node is not None and node.op == "Const"

    return {n.name: _tensor(n.input[0]) for n in graph_def.node
            if n.op == "MatMul" and len(n.input) >= 2 and constant(n.input[1]) and not constant(n.input[0])}


@dataclass
class CalibrationData:
    """Statistics per watched tensor, and which MatMuls read which tensor."""

    stats: dict[str, TensorStats]
    matmul_input: dict[str, str]
    batches: int
    sentences: int
    #: the other watched ops (attention BatchMatMul, Softmax, LayerNorm reader) -> the tensors they read
    extra_input: dict[str, list[str]] = field(default_factory=dict)


class _Instrumented:
    """The FP32 graph imported with update ops on the watched tensors."""

    def __init__(self, graph_def, input_name: str, output_name: str, matmul_input: dict[str, str],
                 extra: Mapping[str, Sequence[str]] | None = None, masked: Iterable[str] = ()):
        import tensorflow as tf

        self.tf = tf
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf.import_graph_def(graph_def, name="")
        self.input = self.graph.get_tensor_by_name(input_name)
        self.output = self.graph.get_tensor_by_name(output_name)
        self.frames, self.parallel = node_frames(graph_def, strict=True)
        self.readers: dict[str, list[str]] = {}
        for mm, tensor in matmul_input.items():
            self.readers.setdefault(tensor, []).append(mm)
        for op, tensors in (extra or {}).items():
            for tensor in tensors:
                if op not in self.readers.setdefault(tensor, []):
                    self.readers[tensor].append(op)
        self.tensors = sorted(self.readers)
        self.masked = set(masked)

    def _values(self, name: str, x):
        """x as float32; in a masked tensor (attention logits) the additive-mask values become 0, so the
        statistics describe the scores, not the -1e9 of the padding bias."""
        tf = self.tf
        xf = tf.cast(x, tf.float32)
        if name in self.masked:
            xf = tf.where(xf > -MASKED_BELOW, xf, tf.zeros_like(xf))
        return xf

    def _in_frame(self, tensor_name: str, handle):
        tf = self.tf
        frame = self.frames.get(input_op(tensor_name))
        if frame is None:
            return handle
        return tf.raw_ops.Enter(data=handle, frame_name=frame, is_constant=True,
                                parallel_iterations=self.parallel[frame])

    def _attach(self, tensor_name: str, update_op) -> None:
        for mm in self.readers[tensor_name]:
            self.graph.get_operation_by_name(mm)._add_control_input(update_op)

    def add_range_ops(self):
        tf = self.tf
        variables = {}
        inits = []
        with self.graph.as_default():
            for i, name in enumerate(self.tensors):
                x = self.graph.get_tensor_by_name(name)
                with tf.name_scope(f"inc_mt_calib/range_{i}"):
                    h_min = tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=[1], shared_name=f"inc_mt_min_{i}")
                    h_max = tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=[1], shared_name=f"inc_mt_max_{i}")
                    inits.append(tf.raw_ops.AssignVariableOp(resource=h_min, value=tf.constant([np.inf], tf.float32)))
                    inits.append(tf.raw_ops.AssignVariableOp(resource=h_max, value=tf.constant([-np.inf], tf.float32)))
                    e_min, e_max = self._in_frame(name, h_min), self._in_frame(name, h_max)
                    # every op (constants too) depends on x, so that it lives in x's loop frame
                    with tf.control_dependencies([x.op]):
                        idx = tf.constant([0], tf.int32)
                        xf = tf.reshape(self._values(name, x), [-1])
                        u1 = tf.raw_ops.ResourceScatterMin(resource=e_min, indices=idx,
                                                            updates=tf.reshape(tf.reduce_min(xf), [1]))
                        u2 = tf.raw_ops.ResourceScatterMax(resource=e_max, indices=idx,
                                                            updates=tf.reshape(tf.reduce_max(xf), [1]))
                    self._attach(name, u1)
                    self._attach(name, u2)
                    variables[name] = (tf.raw_ops.ReadVariableOp(resource=h_min, dtype=tf.float32),
                                       tf.raw_ops.ReadVariableOp(resource=h_max, dtype=tf.float32))
        return inits, variables

    def add_hist_ops(self, ranges: dict[str, float], bins: int):
        tf = self.tf
        variables = {}
        inits = []
        with self.graph.as_default():
            for i, name in enumerate(self.tensors):
                x = self.graph.get_tensor_by_name(name)
                r = float(ranges[name]) or 1.0
                with tf.name_scope(f"inc_mt_calib/hist_{i}"):
                    # 2 * bins histogram counts, then the number of exact zeros
                    h = tf.raw_ops.VarHandleOp(dtype=tf.int64, shape=[2 * bins + 1], shared_name=f"inc_mt_hist_{i}")
                    inits.append(tf.raw_ops.AssignVariableOp(resource=h, value=tf.zeros([2 * bins + 1], tf.int64)))
                    e = self._in_frame(name, h)
                    with tf.control_dependencies([x.op]):  # in x's loop frame
                        xf = self._values(name, x)
                        value_range = tf.constant([-r, r], tf.float32)
                        counts = tf.raw_ops.HistogramFixedWidth(
                            values=xf, value_range=value_range,
                            nbins=tf.constant(2 * bins, tf.int32), dtype=tf.int64)
                        zeros = tf.reshape(tf.reduce_sum(tf.cast(tf.equal(xf, 0.0), tf.int64)), [1])
                        update = tf.raw_ops.AssignAddVariableOp(resource=e, value=tf.concat([counts, zeros], 0))
                    self._attach(name, update)
                    variables[name] = tf.raw_ops.ReadVariableOp(resource=h, dtype=tf.int64)
        return inits, variables

    def run(self, inits, fetch, batches: Sequence[np.ndarray]):
        tf = self.tf
        # Grappler's remapper fuses MatMul+BiasAdd and drops the MatMul's control inputs (the update ops
        # would then never run): calibration runs the graph unoptimised.
        config = tf.compat.v1.ConfigProto()
        config.graph_options.rewrite_options.disable_meta_optimizer = True
        with tf.compat.v1.Session(graph=self.graph, config=config) as sess:
            sess.run(inits)
            for batch in batches:
                sess.run(self.output, {self.input: batch})
            return sess.run(fetch)


def collect_stats(graph_def, input_name: str, output_name: str, batches: Sequence[np.ndarray], *,
                  bins: int = 2048, matmuls: Iterable[str] | None = None,
                  extra: Mapping[str, Sequence[str]] | None = None, masked: Iterable[str] = ()) -> CalibrationData:
    """Min/max and histograms of every (selected) MatMul input over ``batches``, all loop steps included.

    ``extra``: other ops -> the tensors they read, watched the same way (the 8-bit attention, Softmax and
    LayerNorm rewrites need their inputs' ranges); ``masked``: tensors whose additive-mask values (below
    -:data:`MASKED_BELOW`) are left out of the statistics."""
    mm_input = matmul_inputs(graph_def)
    if matmuls is not None:
        wanted = set(matmuls)
        mm_input = {k: v for k, v in mm_input.items() if k in wanted}
    if not mm_input:
        raise UserError("no MatMul with a constant weight to calibrate in the graph")
    batches = list(batches)
    # pass 1: ranges
    extra = {op: [_tensor(t) for t in ts] for op, ts in (extra or {}).items()}
    masked = {_tensor(t) for t in masked}
    inst = _Instrumented(graph_def, input_name, output_name, mm_input, extra, masked)
    inits, variables = inst.add_range_ops()
    values = inst.run(inits, variables, batches)
    ranges: dict[str, tuple[float, float]] = {}
    for name, (lo, hi) in values.items():
        if not np.isfinite(lo[0]) or not np.isfinite(hi[0]):
            raise UserError(f"calibration never reached tensor {name} (is it on the path to the output?)")
        ranges[name] = (float(lo[0]), float(hi[0]))
    # pass 2: histograms over [-absmax, absmax]
    inst = _Instrumented(graph_def, input_name, output_name, mm_input, extra, masked)
    absmax = {k: max(abs(lo), abs(hi)) for k, (lo, hi) in ranges.items()}
    inits, variables = inst.add_hist_ops(absmax, bins)
    hists = inst.run(inits, variables, batches)
    stats = {}
    for name in ranges:
        counts = np.asarray(hists[name], np.int64)
        stats[name] = TensorStats(ranges[name][0], ranges[name][1], counts[:-1], zeros=int(counts[-1]))
    sentences = int(sum(b.shape[0] for b in batches))
    return CalibrationData(stats=stats, matmul_input=mm_input, batches=len(batches), sentences=sentences,
                           extra_input=extra)
