"""Which MatMuls hurt the translation most when quantized: measured, one unit at a time.

A unit is one MatMul (granularity "op") or the MatMuls of one sublayer (granularity "block", e.g.
``.../layer_2/self_attention``). For each unit, the FP32 graph gets simulated INT8 on that unit only:
``FakeQuantWithMinMaxArgs`` on the activation with the calibrated range (asymmetric 8-bit, as INC's
uint8 activations) and per-tensor symmetric int8 rounding of the weight (as INC's weights), on a private copy
of the weight constant so that other readers of a shared weight (the embedding lookup of the tied logits
weight) still read FP32 values. The unit's
sensitivity is how far its translations move from the FP32 translations: 100 - BLEU(unit, FP32) on the
first ``sensitivity_sentences`` tuning sentences. Units are ranked most sensitive first.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from inc_transformer_mt.model.rewrite import private_constant, unique_name, weight_chain

__all__ = ["FallbackStep", "Sensitivity", "fake_quant_graph", "fallback_steps", "rank_units", "unit_of", "units"]

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


def _int8_rounded(value: np.ndarray) -> np.ndarray:
    """Per-tensor symmetric int8 rounding, as INC quantizes MatMul weights."""
    scale = float(np.abs(value).max()) / 127.0 or 1.0
    return (np.clip(np.round(value / scale), -127, 127) * scale).astype(np.float32)


def fake_quant_graph(graph_def, ranges: Mapping[str, tuple[float, float]], ops: Sequence[str]):
    """Copy of ``graph_def`` with simulated INT8 on ``ops`` only: the activation through
    ``FakeQuantWithMinMaxArgs`` with its calibrated range, the weight replaced by a private int8-rounded
    copy (a weight constant shared with other readers is left as it was for them)."""
    from tensorflow.core.framework import node_def_pb2
    from tensorflow.python.framework import tensor_util

    gd = copy.deepcopy(graph_def)
    by_name = {n.name: n for n in gd.node}
    for mm in ops:
        node = by_name[mm]
        lo, hi = ranges[mm]
        lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
        if hi - lo <= 0:
            continue
        fq = gd.node.add()
        fq.CopyFrom(node_def_pb2.NodeDef(name=unique_name(by_name, f"{mm}/inc_mt_fake_quant"),
                                         op="FakeQuantWithMinMaxArgs", input=[node.input[0]]))
        fq.attr["min"].f, fq.attr["max"].f = lo, hi
        fq.attr["num_bits"].i = 8
        fq.attr["narrow_range"].b = False
        by_name[fq.name] = fq
        node.input[0] = fq.name
        const, _ = weight_chain(by_name, node.input[1])
        if const is not None:
            value = tensor_util.MakeNdarray(const.attr["value"].tensor).astype(np.float32)
            private_constant(gd, by_name, node, 1, _int8_rounded(value), "/inc_mt_int8_copy")
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


@dataclass(frozen=True)
class FallbackStep:
    """One fallback configuration: the units kept FP32 so far (most sensitive first) and all FP32 MatMuls."""

    units: list[str]
    fp32_ops: list[str]


def fallback_steps(ranking: Sequence[Sensitivity], candidates: Sequence[str],
                   forced_fp32: Sequence[str] = ()) -> list[FallbackStep]:
    """The fallback order after an all-INT8 trial fails: step k keeps the k most sensitive units FP32
    (cumulative; units adding no new candidate are folded into the next step), never all candidates."""
    out: list[FallbackStep] = []
    units: list[str] = []
    ops: set[str] = set(forced_fp32)
    cands = set(candidates)
    for sens in ranking:
        new = set(sens.ops) & cands - ops
        units.append(sens.unit)
        if not new:
            continue
        ops |= new
        if cands <= ops:
            break  # nothing left in INT8: not a quantized model
        out.append(FallbackStep(units=list(units), fp32_ops=sorted(ops)))
    return out
