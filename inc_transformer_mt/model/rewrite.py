"""Small GraphDef edits shared by the quantization code and the graph passes: fresh node names, and a private
copy of a constant for one reader (through the Enter/Identity chain that carries it into a loop frame).

Works on GraphDef protos; imports TensorFlow only to write constant tensors.
"""

from __future__ import annotations

from collections.abc import Collection, MutableMapping
from typing import Any

from inc_transformer_mt.model.analysis import input_op

__all__ = ["private_constant", "unique_name", "weight_chain"]


def unique_name(taken: Collection[str], base: str) -> str:
    """``base``, or ``base_1``, ``base_2``, ... : the first name not in ``taken``."""
    name, k = base, 1
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    return name


def weight_chain(by_name: MutableMapping[str, Any], name: str):
    """(the Const behind input ``name``, [the Enter/Identity nodes from that Const towards the reader]), or
    (None, []) when the input is not a constant."""
    chain = []
    node = by_name.get(input_op(name))
    while node is not None and node.op in ("Enter", "Identity"):
        chain.append(node)
        node = by_name.get(input_op(node.input[0]))
    if node is None or node.op != "Const":
        return None, []
    return node, list(reversed(chain))


def private_constant(graph_def, by_name: MutableMapping[str, Any], reader, index: int, value, suffix: str) -> bool:
    """In place: input ``index`` of ``reader`` reads its own copy of the constant behind it, holding ``value``.

    The Enter/Identity chain from the constant to ``reader`` is copied too, so a reader inside a loop frame
    gets its copy in the same frame; every other reader of the original keeps it unchanged. New nodes are
    named ``<original><suffix>`` (made unique) and added to ``by_name``. False (nothing changed) when the
    input is not a constant.
    """
    from tensorflow.python.framework import tensor_util

    name = reader.input[index]
    const, chain = weight_chain(by_name, name)
    if const is None:
        return False
    prev = None
    for original in [const, *chain]:
        node = graph_def.node.add()
        node.CopyFrom(original)
        node.name = unique_name(by_name, original.name + suffix)
        if prev is None:
            node.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(value))
        else:
            node.input[0] = prev
        by_name[node.name] = node
        prev = node.name
    port = name.split(":", 1)[1] if ":" in name else "0"
    reader.input[index] = prev if port == "0" else f"{prev}:{port}"
    return True
