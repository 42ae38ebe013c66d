"""Exact rewrites that let INC 3.10's default (oneDNN) backend quantize the two MatMul shapes it leaves FP32.

INC's default backend builds ``QuantizedMatMulWithBias*`` ops in
``quantize_graph/quantize_graph_matmul.py``. Two of its rules skip MatMuls of a Transformer decoder:

1. ``apply_matmul_biasadd_fusion`` refuses ``transpose_b=True`` ("TODO ... once the TF enabled the old
   QuantizedMatMul while transpose_a/transpose_b could be set to True"). The tied logits projection
   ``matmul(x, embedding, transpose_b=True)`` is one: FP32, and it is the widest MatMul of the model.
   :func:`untranspose_weights` gives such a MatMul its own constant ``W^T`` (carried through a copy of the
   Enter/Identity chain into the loop frame) and ``transpose_b=False``. Other readers of ``W`` (the embedding
   lookup) keep the original.
2. ``apply_matmul_biasadd_relu_fusion`` accepts only a weight that is a ``Const`` read directly; it has no
   ``Enter`` branch (``apply_matmul_biasadd_fusion`` does). So MatMul+BiasAdd+Relu inside a while loop -- every
   decoder FFN-1 -- stays FP32. :func:`split_bias_relu` writes the Relu there as ``Maximum(x, 0)``, so INC
   matches MatMul+BiasAdd (which handles Enter) and the Relu runs after its Dequantize; :func:`restore_relus`
   makes it a Relu again after quantization.

Each rewrite computes the same function (a transpose of a constant, Relu as Maximum with 0); the tests check the
outputs of the rewritten FP32 graph are bitwise equal and that INC then quantizes the MatMuls.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from inc_transformer_mt.model.analysis import consumers, input_op
from inc_transformer_mt.model.rewrite import private_constant, unique_name, weight_chain

__all__ = ["DefaultBackendPrep", "prepare_default_backend", "restore_relus", "split_bias_relu",
           "untranspose_weights"]

SUFFIX = "/inc_mt_"
_ZERO = SUFFIX + "relu_zero"


@dataclass
class DefaultBackendPrep:
    """What :func:`prepare_default_backend` changed (MatMul names)."""

    untransposed: list[str] = field(default_factory=list)
    relu_split: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, list[str]]:
        return {"untransposed": self.untransposed, "relu_split": self.relu_split}


def untranspose_weights(graph_def, *, skip: frozenset[str] = frozenset()) -> list[str]:
    """In place: every ``MatMul(x, W, transpose_b=True)`` with a constant ``W`` reads its own ``W^T``."""
    from tensorflow.python.framework import tensor_util

    by_name = {n.name: n for n in graph_def.node}
    changed = []
    for node in list(graph_def.node):
        if node.op != "MatMul" or node.name in skip or not node.attr["transpose_b"].b or node.attr["transpose_a"].b:
            continue
        const, _ = weight_chain(by_name, node.input[1])
        if const is None:
            continue
        value = tensor_util.MakeNdarray(const.attr["value"].tensor)
        if value.ndim != 2:
            continue
        private_constant(graph_def, by_name, node, 1, np.ascontiguousarray(value.T), f"{SUFFIX}weight_t")
        node.attr["transpose_b"].b = False
        changed.append(node.name)
    return changed


def _frame_pivots(graph_def) -> dict[str, str]:
    """Loop frame name -> an Identity that runs once per iteration in it (``Switch:1 -> Identity``), the node TF
    itself hangs in-loop constants on. INC keeps these (they are control flow)."""
    readers = consumers(graph_def, control=False)
    out: dict[str, str] = {}
    for enter in graph_def.node:
        frame = enter.attr["frame_name"].s.decode() if enter.op == "Enter" else ""
        if not frame or frame in out or enter.attr["is_constant"].b:
            continue
        for merge in (n for n in readers.get(enter.name, []) if n.op == "Merge"):
            for switch in (n for n in readers.get(merge.name, []) if n.op == "Switch"):
                for ident in readers.get(switch.name, []):
                    if ident.op == "Identity" and ident.input[0] == f"{switch.name}:1":
                        out[frame] = ident.name
                        break
                if frame in out:
                    break
            if frame in out:
                break
    return out


def split_bias_relu(graph_def, *, skip: frozenset[str] = frozenset(), in_loop_only: bool = True) -> list[str]:
    """In place: ``MatMul -> BiasAdd [-> Reshape] -> Relu`` whose weight enters a loop frame gets ``Maximum(x, 0)``
    for the Relu.

    INC strips an Identity before matching, so the Relu itself is disguised: ``Maximum`` with a zero constant
    (in the Relu's frame through a control edge from the loop's pivot Identity) computes the same values, is not part of
    any MatMul fusion rule, and is turned back into the Relu by :func:`restore_relus` after quantization.
    ``in_loop_only``: only where the weight is read through an ``Enter`` (the case INC cannot fuse).
    """
    from tensorflow.python.framework import tensor_util

    by_name = {n.name: n for n in graph_def.node}
    readers = consumers(graph_def, control=False)
    pivots = _frame_pivots(graph_def)
    changed = []
    for mm in list(graph_def.node):
        if mm.op != "MatMul" or mm.name in skip:
            continue
        const, chain = weight_chain(by_name, mm.input[1])
        enters = [n for n in chain if n.op == "Enter"]
        if const is None or (in_loop_only and not enters):
            continue
        pivot = pivots.get(enters[0].attr["frame_name"].s.decode()) if enters else None
        if enters and pivot is None:
            continue
        after = readers.get(mm.name, [])
        if len(after) != 1 or after[0].op != "BiasAdd":
            continue
        bias_add = after[0]
        relus = readers.get(bias_add.name, [])
        while len(relus) == 1 and relus[0].op == "Reshape":  # INC's pre-optimisation folds such Reshapes away
            relus = readers.get(relus[0].name, [])
        if len(relus) != 1 or relus[0].op != "Relu" or len(relus[0].input) != 1:
            continue
        relu = relus[0]
        zero = graph_def.node.add()
        zero.name = unique_name(by_name, relu.name + _ZERO)
        zero.op = "Const"
        by_name[zero.name] = zero
        if pivot is not None:
            zero.input.append("^" + pivot)
        zero.attr["dtype"].type = relu.attr["T"].type
        zero.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(np.zeros((), np.float32)))
        relu.op = "Maximum"
        relu.input.append(zero.name)
        changed.append(mm.name)
    return changed


def restore_relus(graph_def) -> int:
    """In place: undo :func:`split_bias_relu` (each ``Maximum(x, zero)`` it made is a Relu again)."""
    zeros = {n.name for n in graph_def.node if n.op == "Const" and _ZERO in n.name}
    if not zeros:
        return 0
    restored = 0
    for node in graph_def.node:
        if node.op == "Maximum" and len(node.input) >= 2 and input_op(node.input[1]) in zeros:
            del node.input[1]
            node.op = "Relu"
            restored += 1
    keep = [n for n in graph_def.node if n.name not in zeros]
    del graph_def.node[:]
    graph_def.node.extend(keep)
    return restored


def prepare_default_backend(graph_def, fp32_ops: Iterable[str] = ()) -> tuple[object, DefaultBackendPrep]:
    """A copy of ``graph_def`` with both rewrites applied to the MatMuls that are not kept FP32."""
    gd = copy.deepcopy(graph_def)
    skip = frozenset(fp32_ops)
    return gd, DefaultBackendPrep(untransposed=untranspose_weights(gd, skip=skip),
                                  relu_split=split_bias_relu(gd, skip=skip))
