"""Reading a frozen GraphDef: who feeds whom, which loop frame a node runs in, op census, INT8 precision of
each MatMul, the graph's quantized format, MatMul FLOPs.

The one place for graph analysis: tuning, the regression check, the streams, the benchmark and the passes
all ask these questions, so they all get the same answers. Works on GraphDef protos; imports TensorFlow
only to read constant tensors.
"""

from __future__ import annotations

import re
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from inc_transformer_mt.errors import UserError

__all__ = [
    "CENSUS_OPS",
    "Census",
    "compute_ops",
    "const_shape",
    "consumers",
    "graph_format",
    "input_op",
    "int8_matmul_count",
    "layer_norm_scopes",
    "loop_nodes",
    "matmul_flops",
    "matmul_output_width",
    "matmul_precision",
    "node_frames",
    "op_census",
    "op_precision_census",
    "poly_attention_scopes",
    "source_node",
]

#: Op types the census reports individually (plus LayerNorm, counted by name scope or fused op).
CENSUS_OPS = ("MatMul", "BatchMatMulV2", "GatherNd", "Softmax")
_QUANT_OPS = re.compile(r"Quantize|Dequantize|Quantized|Requantize")
_LAYER_NORM_SCOPE = re.compile(r"^(.*?(?:^|/)layer_norm\w*)(?:/|$)")
#: Lin et al. (2020)'s Softmax-free attention weights (model/transformer.py:polynomial_attention), by name scope
_POLY_SCOPE = re.compile(r"^(.*?(?:^|/)polynomial_attention)(?:/|$)")
_LAYER_NORM_OPS = {"LayerNorm", "_MklLayerNorm", "_ITEXLayerNorm", "ITEXLayerNorm"}
_BATCH_MATMULS = ("BatchMatMul", "BatchMatMulV2", "BatchMatMulV3")


def _computing_scope(pattern: re.Pattern, node) -> str | None:
    """The scope ``pattern`` finds in a computing node's name (constants and their Enter/Identity left out)."""
    m = pattern.match(node.name)
    return m.group(1) if m and node.op not in ("Const", "Enter", "Identity") else None


def _composite_layer_norm(node) -> str | None:
    """The ``.../layer_norm*`` scope a computing node of a composite (mean/variance/rsqrt) LayerNorm belongs to."""
    return _computing_scope(_LAYER_NORM_SCOPE, node)


def _poly_attention(node) -> str | None:
    """The ``.../polynomial_attention`` scope a computing node of a polynomial attention belongs to."""
    return _computing_scope(_POLY_SCOPE, node)


# ------------------------------------------------------------------------------------------- edges
def input_op(name: str) -> str:
    """The op name of a node input (``^ctrl``, ``op:1`` -> ``op``)."""
    name = name.lstrip("^")
    return name.split(":", 1)[0]


def consumers(graph_def, *, control: bool = True) -> dict[str, list[Any]]:
    """Op name -> the nodes that read it (``control=False``: data edges only)."""
    out: dict[str, list[Any]] = {}
    for node in graph_def.node:
        for inp in node.input:
            if control or not inp.startswith("^"):
                out.setdefault(input_op(inp), []).append(node)
    return out


def source_node(by_name: Mapping[str, Any], name: str, through: tuple[str, ...] = ("Enter", "Identity")):
    """The node that produces input ``name``, looking through ``Enter``/``Identity`` (None if absent)."""
    node = by_name.get(input_op(name))
    while node is not None and node.op in through:
        node = by_name.get(input_op(node.input[0]))
    return node


def const_shape(node) -> tuple[int, ...]:
    """Shape of a ``Const`` node's tensor."""
    return tuple(int(d.size) for d in node.attr["value"].tensor.tensor_shape.dim)


# ------------------------------------------------------------------------------------------ frames
def node_frames(graph_def, *, strict: bool = False) -> tuple[dict[str, str], dict[str, int]]:
    """(node -> while-loop frame, frame -> parallel_iterations) for v1 control flow.

    A node is in a frame when its outputs live there: everything reachable from the frame's ``Enter`` nodes
    (data and control edges), up to but not including the ``Exit`` nodes, whose outputs belong to the
    enclosing frame. One level of loops: a node reachable from two frames stays in the first
    (``strict=True``: a UserError, for the calibrator, which cannot instrument nested loops).
    """
    index = consumers(graph_def)
    frames: dict[str, str] = {}
    parallel: dict[str, int] = {}
    for enter in (n for n in graph_def.node if n.op in ("Enter", "RefEnter")):
        frame = enter.attr["frame_name"].s.decode()
        parallel[frame] = enter.attr["parallel_iterations"].i
        queue = deque([enter])
        while queue:
            node = queue.popleft()
            if node.op in ("Exit", "RefExit"):
                continue
            seen = frames.get(node.name)
            if seen is not None:
                if seen != frame and strict:
                    raise UserError(f"node {node.name} is in two loop frames ({seen}, {frame}): nested loops "
                                    "are not supported by the calibrator")
                continue
            frames[node.name] = frame
            queue.extend(index.get(node.name, ()))
    return frames, parallel


def loop_nodes(graph_def) -> set[str]:
    """Names of the nodes inside a while-loop frame (see :func:`node_frames`)."""
    return set(node_frames(graph_def)[0])


# ------------------------------------------------------------------------------------------ census
@dataclass
class Census:
    """Counts by op type, outside and inside the decode loop."""

    outside: Counter = field(default_factory=Counter)
    inside: Counter = field(default_factory=Counter)
    control_flow: str = "none"
    has_function_library: bool = False

    def to_dict(self) -> dict[str, Any]:
        keys = sorted(set(self.outside) | set(self.inside))
        return {
            "control_flow": self.control_flow,
            "has_function_library": self.has_function_library,
            "ops": {k: {"outside_loop": self.outside[k], "inside_loop": self.inside[k],
                        "total": self.outside[k] + self.inside[k]} for k in keys},
        }


def op_census(graph_def) -> Census:
    """Census of MatMul, BatchMatMulV2, GatherNd, Softmax, LayerNorm and quantization ops by loop frame."""
    inside_names = loop_nodes(graph_def)
    census = Census(has_function_library=bool(graph_def.library.function))
    ops = Counter(n.op for n in graph_def.node)
    if ops["Enter"]:
        census.control_flow = "v1 (Enter/Exit/Merge/Switch)"
    elif ops["While"] or ops["StatelessWhile"]:
        census.control_flow = "v2 (functional While)"
    scopes: dict[tuple[str, str], bool] = {}
    for node in graph_def.node:
        where = census.inside if node.name in inside_names else census.outside
        if node.op in CENSUS_OPS or _QUANT_OPS.search(node.op) or node.op in _LAYER_NORM_OPS:
            where["LayerNorm" if node.op in _LAYER_NORM_OPS else node.op] += 1
            continue
        for op_type, scope in (("LayerNorm", _composite_layer_norm(node)), ("PolyAttention", _poly_attention(node))):
            if scope is not None:
                scopes[op_type, scope] = scopes.get((op_type, scope), False) or node.name in inside_names
    for (op_type, _), in_loop in scopes.items():
        (census.inside if in_loop else census.outside)[op_type] += 1
    return census


# --------------------------------------------------------------------------------------- precision
def _is_fused_matmul(op: str) -> bool:
    return op.startswith("Quantized") and "MatMul" in op


def graph_format(graph_def) -> str:
    """'fused' (default backend: QuantizedMatMul* ops), 'qdq' (ITEX: QuantizeV2/Dequantize around MatMul), or 'fp32'."""
    ops = {n.op for n in graph_def.node}
    if any(_is_fused_matmul(op) for op in ops):
        return "fused"
    return "qdq" if "Dequantize" in ops else "fp32"


def _reads_dequantized(by_name: Mapping[str, Any], node) -> bool:
    def dq(inp: str) -> bool:
        src = source_node(by_name, inp)
        return src is not None and src.op == "Dequantize"

    return dq(node.input[0]) and dq(node.input[1])


def matmul_precision(graph_def, matmuls: Iterable[str]) -> dict[str, str]:
    """FP32 MatMul name -> 'int8' or 'fp32' in a quantized graph (QDQ for ITEX, fused ops for default)."""
    by_name = {n.name: n for n in graph_def.node}
    fused = [n.name for n in graph_def.node if _is_fused_matmul(n.op)]
    out = {}
    for mm in matmuls:
        node = by_name.get(mm)
        if node is not None and node.op == "MatMul":
            out[mm] = "int8" if _reads_dequantized(by_name, node) else "fp32"
        else:
            out[mm] = "int8" if any(f.startswith(mm + "_eightbit") for f in fused) else "fp32"
    return out


def int8_matmul_count(graph_def) -> tuple[int, int]:
    """(INT8 MatMuls, all MatMuls) of a frozen graph in any of the formats of :func:`graph_format`."""
    by_name = {n.name: n for n in graph_def.node}
    fused = sum(1 for n in graph_def.node if _is_fused_matmul(n.op))
    plain = [n for n in graph_def.node if n.op == "MatMul"]
    qdq = sum(1 for n in plain if _reads_dequantized(by_name, n))
    return fused + qdq, fused + len(plain)


# ------------------------------------------------------------------------------------------- FLOPs
_MATMUL_TYPES = ("MatMul", *_BATCH_MATMULS)


def matmul_output_width(by_name: Mapping[str, Any], node) -> int:
    """N of a MatMul ``[.., M, K] x [.., K, N] -> [.., M, N]``: the output width, read from its right operand.

    The operand is looked up through Enter/Identity to a Const; ``transpose_b`` (MatMul) and ``adj_y``
    (BatchMatMul*) mean the constant is stored ``[.., N, K]``, as the tied logits projection
    ``matmul(x, embedding, transpose_b=True)`` is. Raises ValueError for a right operand that is not a
    constant (its width is not a property of the graph).
    """
    if node.op not in _MATMUL_TYPES:
        raise ValueError(f"{node.name} is a {node.op}, not a MatMul")
    weight = source_node(by_name, node.input[1])
    if weight is None or weight.op != "Const":
        raise ValueError(f"{node.name}: right operand {node.input[1]} is not a constant")
    shape = const_shape(weight)
    if len(shape) < 2:
        raise ValueError(f"{node.name}: right operand {weight.name} has rank {len(shape)}, not >= 2")
    transposed = node.attr["transpose_b"].b if node.op == "MatMul" else node.attr["adj_y"].b
    return shape[-2] if transposed else shape[-1]


def matmul_flops(graph_def, input_elements: Mapping[str, float]) -> dict[str, float]:
    """FLOPs of each MatMul given how many elements its left operand carried (over any run).

    A MatMul ``[M, K] x [K, N]`` does ``2 * M * K * N`` FLOPs and its left operand has ``M * K`` elements
    (``transpose_a`` only reorders them; batch dimensions multiply both sides alike), so FLOPs are
    ``2 * elements * N`` with N from :func:`matmul_output_width`.
    """
    by_name = {n.name: n for n in graph_def.node}
    return {mm: 2.0 * float(elements) * matmul_output_width(by_name, by_name[mm])
            for mm, elements in input_elements.items()}


# ---------------------------------------------------------------------------- ops a recipe can name
#: the op types a recipe rule can name, in report order
RULE_OP_TYPES = ("MatMul", "BatchMatMulV2", "Softmax", "LayerNorm", "GatherNd", "PolyAttention")


def layer_norm_scopes(graph_def) -> list[str]:
    """The LayerNorms of a graph: fused LayerNorm ops by name, or the name scopes of composite ones
    (``.../layer_norm*``), as :func:`op_census` counts them."""
    out: list[str] = []
    seen: set[str] = set()
    for node in graph_def.node:
        name = node.name if node.op in _LAYER_NORM_OPS else _composite_layer_norm(node)
        if name is not None and name not in seen:
            seen.add(name)
            out.append(name)
    return out


def compute_ops(graph_def) -> dict[str, str]:
    """Op name -> type for every op a quantization rule can name (:data:`RULE_OP_TYPES`; a composite
    LayerNorm is named by its scope). MatMuls are those with a constant weight (the quantizable ones)."""
    by_name = {n.name: n for n in graph_def.node}
    out: dict[str, str] = {}
    for node in graph_def.node:
        if node.op == "MatMul":
            w = source_node(by_name, node.input[1])
            if w is not None and w.op == "Const":
                out[node.name] = "MatMul"
        elif node.op in _BATCH_MATMULS:
            out[node.name] = "BatchMatMulV2"
        elif node.op in ("Softmax", "GatherNd"):
            out[node.name] = node.op
    out.update(dict.fromkeys(layer_norm_scopes(graph_def), "LayerNorm"))
    out.update(dict.fromkeys(poly_attention_scopes(graph_def), "PolyAttention"))
    return out


def poly_attention_scopes(graph_def) -> list[str]:
    """The polynomial attentions (Lin et al. 2020) of a graph, by their ``.../polynomial_attention`` scope."""
    return list(dict.fromkeys(s for s in map(_poly_attention, graph_def.node) if s is not None))


_EIGHT_BIT = {4, 6, 11, 12}  # DT_UINT8, DT_INT8, DT_QINT8, DT_QUINT8
_FLOATS = {1, 14, 19}  # DT_FLOAT, DT_BFLOAT16, DT_HALF


def _op_is_int8(by_name: Mapping[str, Any], node) -> bool:
    """Does this op run on 8-bit data in the final graph (a quantized kernel, or both float inputs read straight
    from Dequantize, which ITEX fuses)?"""
    if node.op.startswith("Quantized"):
        return True
    if node.op == "GatherNd":
        return node.attr["Tparams"].type in _EIGHT_BIT
    data = [i for i in node.input if not i.startswith("^")]
    if node.op in _MATMUL_TYPES:
        return len(data) >= 2 and _reads_dequantized(by_name, node)
    srcs = [source_node(by_name, i) for i in data[:1]]
    return bool(srcs) and all(s is not None and s.op == "Dequantize" for s in srcs)


#: the op the INT8 attention rewrite runs (ITEX's s8 x s8 batched matmul; passes/int8_attention.py)
INT8_BATCH_MATMUL = "_QuantizedBatchMatMulV2AndDequantize"
#: the name scopes under which the integer-only rewrites put their nodes (passes/integer_ops.py)
INTEGER_SCOPES = {"integer_softmax": "Softmax", "integer_layer_norm": "LayerNorm",
                  "integer_poly_attention": "PolyAttention"}


def integer_replacements(graph_def) -> dict[str, str]:
    """Ops replaced by an integer-only sub-graph -> their type: a Softmax node ``S`` whose sub-graph lies under
    ``S/integer_softmax/``, a LayerNorm scope ``L`` with nodes under ``L/integer_layer_norm/``."""
    out: dict[str, str] = {}
    names = {n.name for n in graph_def.node}
    for name in names:
        for marker, op_type in INTEGER_SCOPES.items():
            head, sep, _ = name.partition(f"/{marker}/")
            if sep:
                out[head] = op_type
    return {k: v for k, v in out.items() if k in names or v in _SCOPED}


#: op types named by a name scope rather than a node
_SCOPED = ("LayerNorm", "PolyAttention")


def op_precision_census(graph_def) -> dict[str, dict[str, dict[str, int]]]:
    """Measured on the final graph: for every :data:`RULE_OP_TYPES` type, how many ops run INT8 and FP32,
    outside and inside the decode loop (by the graph's own loop frames, so hoisted ops count outside).

    A fused default-backend MatMul (``QuantizedMatMulWithBias*``) counts as an INT8 MatMul; an ITEX MatMul
    counts INT8 when both inputs come from Dequantize. Softmax and LayerNorm count INT8 only for a quantized
    kernel or a Dequantize input; a LayerNorm scope counts by its first computing node. GatherNd counts by the
    data it moves (8-bit or float; gathers of integer ids are not a precision choice and are left out).
    """
    by_name = {n.name: n for n in graph_def.node}
    inside = loop_nodes(graph_def)
    out = {t: {k: {"outside_loop": 0, "inside_loop": 0} for k in ("int8", "integer", "fp32")}
           for t in RULE_OP_TYPES}

    def add(op_type: str, node, int8: bool | str) -> None:
        key = int8 if isinstance(int8, str) else ("int8" if int8 else "fp32")
        out[op_type][key]["inside_loop" if node.name in inside else "outside_loop"] += 1

    replaced = integer_replacements(graph_def)
    ln_first: dict[str, Any] = {}
    poly_first: dict[str, Any] = {}
    for node in graph_def.node:
        if node.name in replaced:
            add(replaced[node.name], node, "integer")
        elif node.op == INT8_BATCH_MATMUL:
            add("BatchMatMulV2", node, True)
        elif _is_fused_matmul(node.op) and "BatchMatMul" not in node.op:
            add("MatMul", node, True)
        elif node.op == "MatMul":
            w = source_node(by_name, node.input[1])
            if w is not None and w.op in ("Const", "Dequantize"):
                add("MatMul", node, _op_is_int8(by_name, node))
        elif node.op in _BATCH_MATMULS or (node.op.startswith("Quantized") and "BatchMatMul" in node.op):
            add("BatchMatMulV2", node, _op_is_int8(by_name, node))
        elif node.op == "Softmax" or (node.op == "GatherNd" and node.attr["Tparams"].type in _EIGHT_BIT | _FLOATS):
            add(node.op, node, _op_is_int8(by_name, node))
        elif node.op in _LAYER_NORM_OPS:
            add("LayerNorm", node, False)
        elif (scope := _composite_layer_norm(node)) is not None and scope not in replaced:
            ln_first.setdefault(scope, node)
        elif (scope := _poly_attention(node)) is not None and scope not in replaced:
            poly_first.setdefault(scope, node)
    for op_type, first in (("LayerNorm", ln_first), ("PolyAttention", poly_first)):
        for node in first.values():
            add(op_type, node, _op_is_int8(by_name, node))
    for scope, op_type in replaced.items():
        if op_type in _SCOPED and scope not in by_name:
            add(op_type, next(n for n in graph_def.node if n.name.startswith(scope + "/")), "integer")
    return out
