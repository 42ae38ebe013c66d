"""Which MatMuls hurt the translation most when quantized: measured, one unit at a time.

A unit is one MatMul (granularity "op") or the MatMuls of one sublayer (granularity "block", e.g.
``.../layer_2/self_attention``). For each unit, the FP32 graph gets simulated INT8 on that unit only:
``FakeQuantWithMinMaxArgs`` on the activation with the calibrated range (asymmetric 8-bit, as INC's
uint8 activations) and per-tensor symmetric int8 rounding of the weight (as INC's weights). The unit's
sensitivity is how far its translations move from the FP32 translations: 100 - BLEU(unit, FP32) on the
first ``sensitivity_sentences`` tuning sentences. Units are ranked most sensitive first.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from inc_transformer_mt.model.analysis import source_node

__all__ = ["Sensitivity", "fake_quant_graph", "rank_units", "unit_of", "units"]

_BLOCK = re.compile(r"^(.*?layer_\d+/[^/]+)/")


def unit_of(op_name: str, granularity: str = "block") -> str:
    """The fallback unit an op belongs to."""
    if granularity == "op":
        return op_name
    m = _BLOCK.match(op_name)
    if m:
        return m.group(1)
    return op_name.rsplit("/", 1)[0] if "/" in op_name else op_name


def units(matmuls: Sequence[str], granularity: str = "block") -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for mm in sorted(matmuls):
        out.setdefault(unit_of(mm, granularity), []).append(mm)
    return out


def fake_quant_graph(graph_def, ranges: Mapping[str, tuple[float, float]], ops: Sequence[str]):
    """Copy of ``graph_def`` with simulated INT8 (activation range from ``ranges``, int8 weights) on ``ops``."""
    from tensorflow.core.framework import node_def_pb2
    from tensorflow.python.framework import tensor_util

    gd = copy.deepcopy(graph_def)
    by_name = {n.name: n for n in gd.node}
    new_nodes = []
    done_weights: set[str] = set()
    for mm in ops:
        node = by_name[mm]
        lo, hi = ranges[mm]
        lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
        if hi - lo <= 0:
            continue
        fq = node_def_pb2.NodeDef(name=f"{mm}/inc_mt_fake_quant", op="FakeQuantWithMinMaxArgs", input=[node.input[0]])
        fq.attr["min"].f, fq.attr["max"].f = lo, hi
        fq.attr["num_bits"].i = 8
        fq.attr["narrow_range"].b = False
        new_nodes.append(fq)
        node.input[0] = fq.name
        w = source_node(by_name, node.input[1])
        if w.name in done_weights:
            continue
        done_weights.add(w.name)
        value = tensor_util.MakeNdarray(w.attr["value"].tensor).astype(np.float32)
        scale = float(np.abs(value).max()) / 127.0 or 1.0
        q = np.clip(np.round(value / scale), -127, 127) * scale
        w.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(q.astype(np.float32)))
    gd.node.extend(new_nodes)
    return gd


@dataclass
class Sensitivity:
    unit: str
    ops: list[str]
    score: float  # 100 - BLEU against the FP32 translations (higher = more sensitive)
    seconds: float


def rank_units(unit_ops: Mapping[str, list[str]], measure: Callable[[list[str]], float],
               clock: Callable[[], float]) -> list[Sensitivity]:
    """Measure every unit with ``measure(ops) -> score`` and rank them, most sensitive first (ties: name)."""
    out = []
    for unit, ops in unit_ops.items():
        t = clock()
        s = float(measure(ops))
        out.append(Sensitivity(unit=unit, ops=list(ops), score=s, seconds=clock() - t))
    out.sort(key=lambda x: (-x.score, x.unit))
    return out
