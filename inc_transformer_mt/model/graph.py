"""Loading frozen graphs, finding a model's graph and metadata, checking tensor names (analysis: model/analysis.py)."""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inc_transformer_mt.errors import UserError
from inc_transformer_mt.model.config import GraphMeta

__all__ = ["ResolvedModel", "check_tensor", "load_graph_def", "propose_tensors", "resolve_model"]


#: a GraphDef cannot be larger than protobuf's 2 GiB message limit
MAX_GRAPH_BYTES = 2**31 - 1
#: float weights compress about 1.1x; a model that inflates past this size at more than this ratio is a
#: decompression bomb, refused before it fills memory
BOMB_BYTES, BOMB_RATIO = 64 << 20, 50


def _gunzip_capped(data: bytes, path: Path) -> bytes:
    """``data`` gunzipped in chunks (all members), refusing output beyond the caps above."""
    out = bytearray()
    rest = data
    while rest:
        inflater = zlib.decompressobj(wbits=31)
        chunk = inflater.decompress(rest, 1 << 20)
        while True:
            out += chunk
            if len(out) > MAX_GRAPH_BYTES or (len(out) > BOMB_BYTES and len(out) > BOMB_RATIO * len(data)):
                raise UserError(f"{path}: inflates to more than {len(out) >> 20} MiB from {len(data) >> 10} KiB "
                                "(over protobuf's 2 GiB limit or a decompression bomb); refused")
            if inflater.eof or not inflater.unconsumed_tail:
                break
            chunk = inflater.decompress(inflater.unconsumed_tail, 1 << 20)
        if not inflater.eof:
            raise EOFError("compressed file ended before the end-of-stream marker was reached")
        rest = inflater.unused_data.lstrip(b"\0")
    return bytes(out)


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
            data = _gunzip_capped(data, path)
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


def propose_tensors(graph_def) -> dict[str, list[str]]:
    """Candidate translator tensors of an unknown graph: inputs are placeholders of integer token ids
    ([batch, length] or unknown shape); outputs are integer tensors of rank 2 (or unknown) that nothing reads,
    int32 first. What ``inc-mt info`` proposes for ``--input-tensor``/``--output-tensor``."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    read = {i.lstrip("^").split(":")[0] for n in graph_def.node for i in n.input}
    inputs, outputs = [], []
    for op in graph.get_operations():
        for t in op.outputs:
            if not t.dtype.is_integer or t.shape.rank not in (None, 2):
                continue
            if op.type == "Placeholder":
                inputs.append(t)
            elif op.name not in read and op.type not in ("Const", "Shape"):
                outputs.append(t)
    def order(t) -> tuple[bool, str]:
        return t.dtype != tf.int32, t.name

    return {"inputs": [t.name for t in sorted(inputs, key=order)],
            "outputs": [t.name for t in sorted(outputs, key=order)]}


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
