"""INT8 K/V cache: the decode loop's self-attention keys and values stored and reordered in 8 bits.

With INT8 attention (:mod:`~inc_transformer_mt.passes.int8_attention`) the Q.K^T and P.V batched matmuls
quantize the whole cache at every step with one static range. Quantizing with a fixed range is elementwise,
so it commutes with everything a cache goes through between steps (concat, reshape, transpose, the beam
gathers): ``Q(gather(concat(c, k))) == gather(concat(Q(c), Q(k)))``. This pass moves the quantization to
where values enter the cache: the new step's keys/values (and the loop's initial value) are quantized once
with the attention operand's own range, the loop variable and every op on its way carry int8, and the INT8
attention reads the cache directly (a ``Bitcast`` to qint8). The integers the kernel sees are unchanged, so
translations are token-identical to INT8 attention alone (tested), and the per-step reorder moves a quarter
of the bytes.

The loop variable is plain ``int8`` (TensorFlow 2.15 has no qint8 kernels for Enter/Merge/Switch/
NextIteration/Exit); ``Bitcast`` reinterprets it as qint8 where the kernel needs it. A reader that needs
float (none in this project's graphs) gets ``Dequantize`` with the same range.

A cache is found from an INT8 attention's quantized operand: walking back through data-movement ops to a
loop variable's body read, then forward from it over data-movement ops (its region). It is rewritten when
every GatherNd in its region is selected (``op_type: GatherNd, dtype: int8`` selects them all).
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from inc_transformer_mt.model.analysis import INT8_BATCH_MATMUL, input_op, source_node
from inc_transformer_mt.passes.graph_edit import GraphIndex, PassReport, port_of, rewire

__all__ = ["CacheRegion", "find_caches", "int8_cache"]

#: data-movement ops -> (the attr holding their data type, which inputs carry the data; None: all data inputs)
MOVERS: dict[str, tuple[str, tuple[int, ...] | None]] = {
    "Identity": ("T", (0,)), "Reshape": ("T", (0,)), "Transpose": ("T", (0,)), "ExpandDims": ("T", (0,)),
    "Squeeze": ("T", (0,)), "StridedSlice": ("T", (0,)), "Slice": ("T", (0,)), "Tile": ("T", (0,)),
    "GatherV2": ("Tparams", (0,)), "GatherNd": ("Tparams", (0,)), "ConcatV2": ("T", None),
    "Enter": ("T", (0,)), "Merge": ("T", None), "Switch": ("T", (0,)), "NextIteration": ("T", (0,)),
    "Exit": ("T", (0,)),
}
#: ops that read only their input's shape
SHAPE_READERS = {"Shape": "T", "Size": "T", "ShapeN": "T", "Rank": None}


def _data_ports(node) -> list[int]:
    _, ports = MOVERS[node.op]
    data = [i for i, inp in enumerate(node.input) if not inp.startswith("^")]
    if node.op == "ConcatV2":
        return data[:-1]  # the last input is the axis
    return data if ports is None else [p for p in ports if p in data]


@dataclass
class CacheRegion:
    """One K or V cache: the ops that carry it (to int8), where float enters, and who reads it."""

    quantize: Any  # the INT8 attention's QuantizeV2 of this cache
    read: str  # the loop variable's body read
    range: tuple[float, float]  # that QuantizeV2's requested (min, max): the cache's static range
    nodes: dict[str, Any] = field(default_factory=dict)  # region ops (int8 after the rewrite)
    sources: list[tuple[Any, int]] = field(default_factory=list)  # (region op, input index) fed by float
    shape_readers: list[Any] = field(default_factory=list)
    quantize_readers: list[tuple[Any, int]] = field(default_factory=list)  # (QuantizeV2 of this range, 0)
    float_readers: list[tuple[Any, int]] = field(default_factory=list)

    @property
    def gathers(self) -> list[str]:
        return sorted(n.name for n in self.nodes.values() if n.op == "GatherNd")


def _range_of(by_name, quantize) -> tuple[float, float] | None:
    from tensorflow.python.framework import tensor_util

    vals = []
    for inp in quantize.input[1:3]:
        c = source_node(by_name, inp)
        if c is None or c.op != "Const":
            return None
        vals.append(float(tensor_util.MakeNdarray(c.attr["value"].tensor)))
    return vals[0], vals[1]


def _loop_read(index: GraphIndex, tensor: str) -> str | None:
    """Walk back from ``tensor`` through data-movement ops to a loop variable's body read (Identity of
    Switch:1, or Switch:1); its op name, or None."""
    seen: set[str] = set()
    queue = deque([tensor])
    while queue:
        t = queue.popleft()
        node = index.node(t)
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if node.op == "Switch" and port_of(t) == 1:
            return node.name
        if node.op == "Identity" and index.node(node.input[0]) is not None and \
                index.node(node.input[0]).op == "Switch" and port_of(node.input[0]) == 1:
            return node.name
        if node.op in MOVERS and node.op not in ("Merge", "Enter", "NextIteration", "Exit", "Switch"):
            queue.extend(node.input[p] for p in _data_ports(node))
    return None


def find_caches(graph_def) -> list[CacheRegion]:
    """The caches read by INT8 attention in the decode loop (see the module docstring)."""
    return _find_caches(GraphIndex(graph_def))


def _find_caches(index: GraphIndex) -> list[CacheRegion]:
    out: list[CacheRegion] = []
    claimed: set[str] = set()
    for qbmm in index.graph_def.node:
        if qbmm.op != INT8_BATCH_MATMUL:
            continue
        for operand in qbmm.input[:2]:
            quantize = index.node(operand)
            rng = _range_of(index.by_name, quantize) if quantize is not None and quantize.op == "QuantizeV2" else None
            if rng is None:
                continue
            read = _loop_read(index, quantize.input[0])
            if read is None or read in claimed:
                continue
            region = _region(index, quantize, rng, read)
            if region is not None:
                claimed.add(read)
                out.append(region)
    return out


def _region(index: GraphIndex, quantize, rng: tuple[float, float], read: str) -> CacheRegion | None:
    by_name = index.by_name
    read_node = by_name[read]
    switch = read_node if read_node.op == "Switch" else index.node(read_node.input[0])
    merge = index.node(switch.input[0])
    if merge is None or merge.op != "Merge":
        return None
    region = CacheRegion(quantize=quantize, read=read, range=rng)
    seeds = [merge, switch, read_node] + [index.node(i) for i in merge.input if not i.startswith("^")]
    for s in seeds:
        if s is None or s.op not in MOVERS:
            return None
        region.nodes[s.name] = s
    queue = deque(region.nodes.values())
    while queue:
        node = queue.popleft()
        for c in index.consumers(node.name, control=False):
            for i, inp in enumerate(c.input):
                if inp.startswith("^") or input_op(inp) != node.name:
                    continue
                if c.op in MOVERS and i in _data_ports(c):
                    if c.name not in region.nodes:
                        region.nodes[c.name] = c
                        queue.append(c)
                elif c.op in SHAPE_READERS:
                    if c not in region.shape_readers:
                        region.shape_readers.append(c)
                elif c.op == "QuantizeV2" and i == 0 and _range_of(by_name, c) == rng:
                    region.quantize_readers.append((c, i))
                else:
                    region.float_readers.append((c, i))
    for node in region.nodes.values():
        for i in _data_ports(node):
            if input_op(node.input[i]) not in region.nodes:
                region.sources.append((node, i))
    return region


def int8_cache(graph_def, gathers: Iterable[str]):
    """(new graph_def, PassReport): every cache whose GatherNds are all in ``gathers`` made INT8. The input
    graph is not modified; not applicable when no selected cache is read by INT8 attention."""
    from tensorflow.core.framework import types_pb2

    gd = copy.deepcopy(graph_def)
    report = PassReport(name="int8_kv_cache")
    _unshare_enters(gd)
    selected = set(gathers)
    index = GraphIndex(gd)
    caches = [c for c in _find_caches(index) if c.gathers and set(c.gathers) <= selected]
    if not caches:
        return gd, report.not_applicable("the selected GatherNds reorder no cache read by INT8 attention")
    new_nodes: list = []
    frames = index.frame_of
    removed: set[str] = set()
    readers: dict[str, str] = {}  # QuantizeV2 output -> what its readers read instead
    for cache in caches:
        lo, hi = cache.range
        base = f"{cache.read}/inc_mt_int8_cache"
        for node in cache.nodes.values():
            node.attr[MOVERS[node.op][0]].type = types_pb2.DT_INT8
        for node in cache.shape_readers:
            if SHAPE_READERS[node.op]:
                node.attr[SHAPE_READERS[node.op]].type = types_pb2.DT_INT8
        for j, (node, i) in enumerate(cache.sources):
            src = node.input[i]
            anchor = input_op(src) if input_op(src) in frames else None
            q = _quantize(new_nodes, f"{base}/in_{j}", src, lo, hi, anchor)
            node.input[i] = _bitcast(new_nodes, f"{base}/in_{j}/int8", q, types_pb2.DT_QINT8, types_pb2.DT_INT8)
        tensor = cache.quantize.input[0]  # the cache tensor the attention quantized
        for j, (qnode, _) in enumerate(cache.quantize_readers):
            anchor = input_op(qnode.input[0])
            as_q = _bitcast(new_nodes, f"{base}/q_{j}", qnode.input[0], types_pb2.DT_INT8, types_pb2.DT_QINT8)
            # the kernel's range inputs become the requested range itself: ITEX's s8 batched matmul reads
            # constant min/max as max(|min|, |max|) / 127, so QuantizeV2's reported min (-128/127 of the range)
            # would scale every product by 128/127 once constant-folded (measured; docs/fully-8bit.md)
            readers[f"{qnode.name}:0"] = as_q
            readers[f"{qnode.name}:1"] = _const(new_nodes, f"{base}/q_{j}/min", lo, anchor)
            readers[f"{qnode.name}:2"] = _const(new_nodes, f"{base}/q_{j}/max", hi, anchor)
            removed.add(qnode.name)
        for j, (node, i) in enumerate(cache.float_readers):
            src = node.input[i]
            anchor = input_op(src) if input_op(src) in frames else None
            node.input[i] = _dequantize(new_nodes, f"{base}/out_{j}", src, lo, hi, anchor)
        report.rewritten.append(tensor)
        report.details[tensor] = {"read": cache.read, "gathers": cache.gathers, "range": [lo, hi],
                                  "ops_int8": len(cache.nodes)}
    rewire(gd, readers)
    # (node objects are edited in place above: the graph's node list is rebuilt only at the end)
    keep = [n for n in gd.node if n.name not in removed]
    del gd.node[:]
    gd.node.extend(keep)
    gd.node.extend(new_nodes)
    report.added_nodes = len(new_nodes)
    return gd, report


def _unshare_enters(graph_def) -> int:
    """Give every loop variable its own Enter (in place; returns the clones made). INC's graph optimizer
    merges identical Enters, so the K and V caches, both starting from the same empty tensor, can share one;
    each cache needs its own to carry its own range."""
    index = GraphIndex(graph_def)
    clones = []
    for enter in list(graph_def.node):
        if enter.op != "Enter" or enter.attr["is_constant"].b:
            continue
        merges = [n for n in index.consumers(enter.name, control=False) if n.op == "Merge"]
        for k, merge in enumerate(merges[1:], start=1):
            clone = type(enter)()
            clone.CopyFrom(enter)
            clone.name = f"{enter.name}/inc_mt_unshared_{k}"
            for i, inp in enumerate(merge.input):
                if input_op(inp) == enter.name and not inp.startswith("^"):
                    merge.input[i] = clone.name
            clones.append(clone)
    graph_def.node.extend(clones)
    return len(clones)


def _node(new_nodes: list, name: str, op: str, inputs: list[str]):
    from tensorflow.core.framework import node_def_pb2

    n = node_def_pb2.NodeDef(name=name, op=op, input=inputs)
    new_nodes.append(n)
    return n


def _const(new_nodes: list, name: str, value: float, anchor: str | None) -> str:
    from tensorflow.core.framework import types_pb2
    from tensorflow.python.framework import tensor_util

    n = _node(new_nodes, name, "Const", [f"^{anchor}"] if anchor else [])
    n.attr["dtype"].type = types_pb2.DT_FLOAT
    n.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(value, dtype="float32"))
    return name


def _quantize(new_nodes: list, name: str, src: str, lo: float, hi: float, anchor: str | None) -> str:
    from tensorflow.core.framework import types_pb2

    n = _node(new_nodes, name, "QuantizeV2", [src, _const(new_nodes, f"{name}/min", lo, anchor),
                                                 _const(new_nodes, f"{name}/max", hi, anchor)])
    n.attr["T"].type = types_pb2.DT_QINT8
    n.attr["mode"].s = b"SCALED"
    n.attr["round_mode"].s = b"HALF_TO_EVEN"
    n.attr["narrow_range"].b = False
    n.attr["axis"].i = -1
    n.attr["ensure_minimum_range"].f = 0.01
    return name


def _bitcast(new_nodes: list, name: str, src: str, t_in: int, t_out: int) -> str:
    n = _node(new_nodes, name, "Bitcast", [src])
    n.attr["T"].type = t_in
    n.attr["type"].type = t_out
    return name


def _dequantize(new_nodes: list, name: str, src: str, lo: float, hi: float, anchor: str | None) -> str:
    """Float of an int8 cache tensor: Bitcast to qint8, then Dequantize with the requested range as constants
    (TensorFlow's scale max(-min / 128, max / 127) is then the range / 127, as ITEX reads constants)."""
    from tensorflow.core.framework import types_pb2

    as_q = _bitcast(new_nodes, f"{name}/qint8", src, types_pb2.DT_INT8, types_pb2.DT_QINT8)
    n = _node(new_nodes, name, "Dequantize", [as_q, _const(new_nodes, f"{name}/min", lo, anchor),
                                              _const(new_nodes, f"{name}/max", hi, anchor)])
    n.attr["T"].type = types_pb2.DT_QINT8
    n.attr["mode"].s = b"SCALED"
    n.attr["narrow_range"].b = False
    n.attr["axis"].i = -1
    n.attr["dtype"].type = types_pb2.DT_FLOAT
    return name
