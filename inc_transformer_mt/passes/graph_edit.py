"""What the decode-loop passes share: a pass report, an index of a GraphDef, v1 loop structure, and dead-node pruning.

The passes find their patterns by graph structure (op types, edges, constant values, TensorFlow's own shape
inference) and never by node names, so they apply to any frozen graph with TF1-style (v1) control flow: this
project's exports and the TensorFlow-official Transformer layout (INC's Transformer-LT) alike.

A v1 ``while_loop`` variable is the chain ``Enter -> Merge -> Switch``; ``Switch:1`` feeds an ``Identity``
(the value the body reads), ``Switch:0`` an ``Exit`` (the value after the loop), and the body's new value
returns through ``NextIteration`` into the ``Merge``. Loop constants enter with ``Enter(is_constant=True)``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from inc_transformer_mt.model.analysis import input_op, node_frames

__all__ = [
    "CONTROL_FLOW_OPS",
    "GraphIndex",
    "LoopVar",
    "PassReport",
    "calibrated_range",
    "drop_repeated_controls",
    "port_of",
    "prune_unreachable",
    "rewire",
    "tensor_name",
]

CONTROL_FLOW_OPS = frozenset({"Enter", "RefEnter", "Exit", "RefExit", "Merge", "RefMerge", "Switch", "RefSwitch",
                              "NextIteration", "RefNextIteration", "LoopCond", "ControlTrigger"})


@dataclass
class PassReport:
    """What one pass did. ``applicable=False`` with a ``reason`` when its pattern is absent from the graph."""

    name: str
    rewritten: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    added_nodes: int = 0
    replaced_by_identity: int = 0
    removed_nodes: int = 0
    applicable: bool = True
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def not_applicable(self, reason: str) -> PassReport:
        self.applicable, self.reason = False, reason
        return self

    def to_dict(self) -> dict:
        out = {"pass": self.name, "rewritten": len(self.rewritten), "skipped": self.skipped,
               "added_nodes": self.added_nodes, "replaced_by_identity": self.replaced_by_identity,
               "removed_nodes": self.removed_nodes, "applicable": self.applicable}
        if self.reason:
            out["reason"] = self.reason
        if self.details:
            out["details"] = self.details
        return out


def port_of(name: str) -> int:
    """The output index of a data input (``op`` -> 0, ``op:2`` -> 2)."""
    return int(name.split(":", 1)[1]) if ":" in name else 0


def tensor_name(op: str, port: int) -> str:
    """The input string for output ``port`` of ``op``."""
    return op if port == 0 else f"{op}:{port}"


@dataclass
class LoopVar:
    """One v1 loop variable: its Enter, Merge, Switch, NextIteration, body read (Identity) and Exit (or None)."""

    enter: Any
    merge: Any
    switch: Any
    next_iteration: Any
    body_read: Any | None  # the Identity of Switch:1, when there is one (optimized graphs read Switch:1 directly)
    exit: Any | None

    @property
    def read_tensor(self) -> str:
        """The tensor the loop body reads: the Identity's output, or Switch:1."""
        return self.body_read.name if self.body_read is not None else f"{self.switch.name}:1"

    @property
    def read_port(self) -> tuple[str, int]:
        return (self.body_read.name, 0) if self.body_read is not None else (self.switch.name, 1)


class GraphIndex:
    """Names, consumers and loop frames of a GraphDef (rebuild it after editing the graph)."""

    def __init__(self, graph_def) -> None:
        self.graph_def = graph_def
        self.by_name = {n.name: n for n in graph_def.node}
        self.readers: dict[str, list[tuple[Any, int]]] = {}  # op -> [(consumer, input index)], data and control
        for node in graph_def.node:
            for i, inp in enumerate(node.input):
                self.readers.setdefault(input_op(inp), []).append((node, i))
        self.frame_of, self.parallel = node_frames(graph_def)

    def node(self, name: str):
        return self.by_name.get(input_op(name))

    def consumers(self, op: str, *, port: int | None = None, control: bool = True) -> list[Any]:
        """Nodes reading ``op`` (``port``: only that output; ``control=False``: data edges only)."""
        out = []
        for node, i in self.readers.get(op, ()):
            inp = node.input[i]
            if inp.startswith("^"):
                if control and port is None:
                    out.append(node)
            elif port is None or port_of(inp) == port:
                out.append(node)
        return out

    def loop_vars(self, frame: str) -> list[LoopVar]:
        """The variables of the loop ``frame`` (those whose chain is not the standard one are left out)."""
        out = []
        for enter in self.graph_def.node:
            if enter.op != "Enter" or enter.attr["is_constant"].b or enter.attr["frame_name"].s.decode() != frame:
                continue
            merges = [n for n in self.consumers(enter.name, control=False) if n.op == "Merge"]
            if len(merges) != 1:
                continue
            merge = merges[0]
            nexts = [self.node(i) for i in merge.input if not i.startswith("^") and input_op(i) != enter.name]
            switches = [n for n in self.consumers(merge.name, control=False) if n.op == "Switch"]
            if len(nexts) != 1 or nexts[0] is None or nexts[0].op != "NextIteration" or len(switches) != 1:
                continue
            switch = switches[0]
            on_read = self.consumers(switch.name, port=1, control=False)
            reads = [n for n in on_read if n.op == "Identity"]
            exits = [n for n in self.consumers(switch.name, port=0, control=False) if n.op == "Exit"]
            out.append(LoopVar(enter, merge, switch, nexts[0], reads[0] if len(reads) == len(on_read) == 1 else None,
                               exits[0] if len(exits) == 1 else None))
        return out

    def frames(self) -> list[str]:
        return sorted(self.parallel)


def rewire(graph_def, mapping: dict[str, str]) -> int:
    """Replace every input equal to a key of ``mapping`` (a tensor name, or ``^op``) by its value; returns count.

    A control input whose op is a key of ``mapping`` through ``^op`` follows the op of the new tensor. Duplicate
    control inputs that result are dropped.
    """
    count = 0
    for node in graph_def.node:
        changed = False
        for i, inp in enumerate(node.input):
            new = mapping.get(inp)
            if new is None and not inp.startswith("^") and ":" not in inp:
                new = mapping.get(f"{inp}:0")
            if new is None:
                continue
            node.input[i] = new
            changed = True
            count += 1
        if changed:
            drop_repeated_controls(node)
    return count


def drop_repeated_controls(node) -> None:
    """Keep one of each control input of ``node`` (rewiring can make two the same)."""
    if len(set(node.input)) == len(node.input):
        return
    seen: set[str] = set()
    unique = []
    for inp in node.input:
        if inp.startswith("^") and inp in seen:
            continue
        seen.add(inp)
        unique.append(inp)
    del node.input[:]
    node.input.extend(unique)


def sinks(graph_def) -> set[str]:
    """Nodes nothing reads: the graph's outputs (and anything else left dangling on purpose)."""
    used = {input_op(i) for n in graph_def.node for i in n.input}
    return {n.name for n in graph_def.node if n.name not in used}


def prune_unreachable(graph_def, keep: Iterable[str]) -> int:
    """Remove, in place, every node the nodes in ``keep`` do not depend on (data or control); returns the count."""
    by_name = {n.name: n for n in graph_def.node}
    live: set[str] = set()
    queue = deque(k for k in keep if k in by_name)
    while queue:
        name = queue.popleft()
        if name in live:
            continue
        live.add(name)
        queue.extend(input_op(i) for i in by_name[name].input if input_op(i) in by_name)
    dead = len(graph_def.node) - len(live)
    if dead:
        nodes = [n for n in graph_def.node if n.name in live]
        del graph_def.node[:]
        graph_def.node.extend(nodes)
    return dead


def tensor_types(graph_def) -> dict[str, list[Any]]:
    """op -> [(dtype, static shape) per output], from TensorFlow's own graph import and shape inference.

    Ops TensorFlow does not know (none in the graphs this project handles) make the import fail: a
    RuntimeError naming them, since a pass must not guess.
    """
    import tensorflow as tf

    graph = tf.Graph()
    try:
        with graph.as_default():
            tf.graph_util.import_graph_def(graph_def, name="")
    except (ValueError, tf.errors.OpError) as e:
        raise RuntimeError(f"the graph cannot be imported for shape inference: {e}") from e
    return {op.name: [(t.dtype, t.shape) for t in op.outputs] for op in graph.get_operations()}


def build_subgraph(build, inputs: dict[str, Any]):
    """A GraphDef built by ``build(**placeholders)`` in a fresh graph, with one float32 Placeholder per key of
    ``inputs`` (value: its static shape, or None), and the name of the tensor ``build`` returned. Only
    the ops of ``build`` are kept: what a splice inserts is written as ordinary TensorFlow code."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        holders = {k: tf.compat.v1.placeholder(tf.float32, shape, name=k) for k, shape in inputs.items()}
        out = build(**holders)
    return graph.as_graph_def(), out.name


def splice(graph_def, target: str, sub_graph_def, output: str, feeds: dict[str, str], *,
           anchor: str | None = None, prefix: str | None = None) -> list[str]:
    """Replace the node ``target`` of ``graph_def`` (in place) by the nodes of ``sub_graph_def``.

    The sub-graph's Placeholders named in ``feeds`` read the given tensors instead; its other nodes are renamed
    ``<prefix>/<name>`` (``prefix`` default ``target``); the node of ``output`` (port 0) takes ``target``'s name,
    so every reader of ``target`` reads it. Nodes with no input (constants) get the control input ``^anchor``,
    which puts them in the anchor's loop frame. Returns the names of the nodes added.
    """
    prefix = prefix or target
    out_op = input_op(output)
    if ":" in output and not output.endswith(":0"):
        raise ValueError(f"splice output must be port 0, got {output}")
    rename = {n.name: (target if n.name == out_op else f"{prefix}/{n.name}")
              for n in sub_graph_def.node if n.name not in feeds}
    added = []
    keep = [n for n in graph_def.node if n.name != target]
    for n in sub_graph_def.node:
        if n.name in feeds:
            continue
        new = type(n)()
        new.CopyFrom(n)
        new.name = rename[n.name]
        del new.input[:]
        for inp in n.input:
            ctrl = inp.startswith("^")
            op = input_op(inp)
            if op in feeds:
                new.input.append(f"^{input_op(feeds[op])}" if ctrl else feeds[op])
            else:
                port = port_of(inp.lstrip("^"))
                new.input.append(f"^{rename[op]}" if ctrl else tensor_name(rename[op], port))
        if not new.input and anchor is not None:
            new.input.append(f"^{input_op(anchor)}")
        new.ClearField("device")
        added.append(new.name)
        keep.append(new)
    del graph_def.node[:]
    graph_def.node.extend(keep)
    return added


def calibrated_range(ranges, tensor: str, op: str) -> tuple[float, float]:
    """The calibrated (min, max) of ``tensor`` (keyed ``name`` or ``name:0``); UserError naming ``op``."""
    from inc_transformer_mt.errors import UserError

    for key in (tensor, f"{tensor}:0"):
        if key in ranges:
            lo, hi = ranges[key]
            return float(lo), float(hi)
    raise UserError(f"{op}: no calibrated range for its input {tensor}")
