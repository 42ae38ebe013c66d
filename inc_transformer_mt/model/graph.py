"""Loading frozen graphs, checking tensor names, and the op census (inside / outside the decode loop)."""

from __future__ import annotations

import gzip
import re
import zlib
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inc_transformer_mt.errors import UserError
from inc_transformer_mt.model.config import GraphMeta

__all__ = [
    "CENSUS_OPS",
    "ResolvedModel",
    "check_tensor",
    "input_op",
    "load_graph_def",
    "loop_nodes",
    "op_census",
    "resolve_model",
    "source_node",
]

#: Op types the census reports individually (plus LayerNorm, counted by name scope or fused op).
CENSUS_OPS = ("MatMul", "BatchMatMulV2", "GatherNd", "Softmax")
_QUANT_OPS = re.compile(r"Quantize|Dequantize|Quantized|Requantize")
_LAYER_NORM_SCOPE = re.compile(r"^(.*?(?:^|/)layer_norm\w*)(?:/|$)")
_LAYER_NORM_OPS = {"LayerNorm", "_MklLayerNorm", "_ITEXLayerNorm", "ITEXLayerNorm"}


def load_graph_def(path: str | Path):
    """Parse a frozen GraphDef from ``.pb`` or gzip-compressed ``.pb.gz``.

    Raises:
        UserError: file missing, unreadable, not a GraphDef, or empty.
    """
    from google.protobuf.message import DecodeError
    from tensorflow.core.framework import graph_pb2

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: model file not found")
    try:
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise UserError(f"{path}: cannot read model file ({exc})") from None
    graph_def = graph_pb2.GraphDef()
    try:
        graph_def.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise UserError(f"{path}: not a frozen TensorFlow GraphDef ({exc})") from None
    if not graph_def.node:
        raise UserError(f"{path}: not a frozen TensorFlow GraphDef (no nodes)")
    return graph_def


def _tensor_name(name: str) -> str:
    return name if ":" in name else f"{name}:0"


def check_tensor(graph_def, name: str, key: str, path: Path) -> str:
    """``name`` normalised to ``op:index``; a UserError naming ``key`` when the op is not in the graph."""
    full = _tensor_name(name)
    op = full.rsplit(":", 1)[0]
    if not any(n.name == op for n in graph_def.node):
        raise UserError(f"{path}: {key} {full!r} is not a tensor of this graph (no node named {op!r})")
    return full


@dataclass
class ResolvedModel:
    """A graph file plus the metadata used to run it (tensor names, tokenizer, limits)."""

    graph_path: Path
    meta: GraphMeta
    tokenizer_path: Path | None


def resolve_model(
    model: str | Path,
    *,
    input_tensor: str | None = None,
    output_tensor: str | None = None,
    tokenizer: str | Path | None = None,
) -> ResolvedModel:
    """Find the graph and its metadata from a model directory or a graph file, applying overrides.

    A directory must hold ``model.json`` (tensor names, tokenizer) or ``model.pb[.gz]``; a graph file uses a
    ``model.json`` beside it when there is one. Overrides from the command line win.
    """
    model = Path(model)
    if model.is_dir():
        meta_path = model / "model.json"
        meta = GraphMeta.load(meta_path) if meta_path.is_file() else GraphMeta()
        graph_name = (meta.model or {}).get("graph")
        candidates = [graph_name] if graph_name else ["model.pb", "model.pb.gz"]
        graph_path = next((model / c for c in candidates if (model / c).is_file()), model / candidates[0])
        base = model
    else:
        meta_path = model.parent / "model.json"
        meta = GraphMeta.load(meta_path) if meta_path.is_file() else GraphMeta()
        graph_path = model
        base = model.parent
    changes: dict[str, Any] = {}
    if input_tensor:
        changes["input_tensor"] = input_tensor
    if output_tensor:
        changes["output_tensor"] = output_tensor
        changes["score_tensor"] = None
    if changes:
        meta = GraphMeta(**{**meta.to_dict(), **changes})
    if tokenizer:
        tok_path: Path | None = Path(tokenizer)
    elif meta.tokenizer:
        tok_path = base / meta.tokenizer
    else:
        tok_path = None
    return ResolvedModel(graph_path=graph_path, meta=meta, tokenizer_path=tok_path)


def input_op(name: str) -> str:
    """The op name of a node input (``^ctrl``, ``op:1`` -> ``op``)."""
    name = name.lstrip("^")
    return name.split(":", 1)[0]


def source_node(by_name: dict[str, Any], name: str, through: tuple[str, ...] = ("Enter", "Identity")):
    """The node that produces input ``name``, looking through ``Enter``/``Identity`` (None if absent)."""
    node = by_name.get(input_op(name))
    while node is not None and node.op in through:
        node = by_name.get(input_op(node.input[0]))
    return node


def loop_nodes(graph_def) -> set[str]:
    """Names of the nodes inside a while-loop frame (v1 control flow): reachable from an Enter, not past an Exit."""
    consumers: dict[str, list[Any]] = {}
    for node in graph_def.node:
        for inp in node.input:
            consumers.setdefault(input_op(inp), []).append(node)
    inside: set[str] = set()
    queue = deque(n for n in graph_def.node if n.op in ("Enter", "RefEnter"))
    for n in queue:
        inside.add(n.name)
    while queue:
        node = queue.popleft()
        if node.op in ("Exit", "RefExit"):
            continue
        for consumer in consumers.get(node.name, ()):
            if consumer.name not in inside:
                inside.add(consumer.name)
                queue.append(consumer)
    return inside


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
    ln_scopes: dict[str, bool] = {}
    for node in graph_def.node:
        where = census.inside if node.name in inside_names else census.outside
        if node.op in CENSUS_OPS or _QUANT_OPS.search(node.op) or node.op in _LAYER_NORM_OPS:
            where["LayerNorm" if node.op in _LAYER_NORM_OPS else node.op] += 1
            continue
        m = _LAYER_NORM_SCOPE.match(node.name)
        if m and node.op not in ("Const", "Enter", "Identity"):
            scope = m.group(1)
            ln_scopes[scope] = ln_scopes.get(scope, False) or node.name in inside_names
    for in_loop in ln_scopes.values():
        (census.inside if in_loop else census.outside)["LayerNorm"] += 1
    return census
