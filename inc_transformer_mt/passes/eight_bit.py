"""The package's own rewrites below FP32 beyond INC's MatMuls, applied to a trial's graph after INC.

A quantization plan's ``beyond_matmul`` ops (op name -> type) select them: attention ``BatchMatMulV2`` ->
INT8 attention (:mod:`~inc_transformer_mt.passes.int8_attention`), ``GatherNd`` -> the INT8 K/V cache
(:mod:`~inc_transformer_mt.passes.int8_cache`), ``Softmax``, ``LayerNorm`` and ``PolyAttention`` (Lin et al.'s
Softmax-free attention) -> the integer-only replacements (:mod:`~inc_transformer_mt.passes.integer_ops`). :func:`watched_tensors` says what
the calibration must watch for them; :func:`apply_eight_bit` rewrites.

Ranges: the attention operands use the recipe's range method (KL or min/max, as the MatMuls); the integer
Softmax and LayerNorm use the observed |max| of their input, since they run at 16-bit input precision and
clipping a logit or a residual is worse than a coarser step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from inc_transformer_mt.errors import UserError

__all__ = ["EXACT", "KINDS", "apply_eight_bit", "check_supported", "watched_tensors"]

#: op type -> the rewrite's name
KINDS = {"BatchMatMulV2": "int8_attention", "GatherNd": "int8_kv_cache", "Softmax": "integer_softmax",
         "LayerNorm": "integer_layer_norm", "PolyAttention": "integer_poly_attention"}
#: op types whose rewrite adds no error of its own (the INT8 cache holds exactly the integers INT8 attention
#: computes): not fallback candidates
EXACT = ("GatherNd",)


def _by_type(ops: Mapping[str, str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for op, t in ops.items():
        if t not in KINDS:
            raise UserError(f"{op}: no rewrite below FP32 for op type {t}")
        out.setdefault(t, []).append(op)
    return out


def check_supported(graph_def, ops: Mapping[str, str]) -> None:
    """UserError naming the first selected LayerNorm that is not in the supported composite form, or an INT8
    cache without the INT8 attention that reads it."""
    kinds = _by_type(ops)
    if kinds.get("GatherNd") and not kinds.get("BatchMatMulV2"):
        raise UserError("GatherNd int8 (the INT8 K/V cache) needs the attention that reads the cache in INT8: "
                        "add {op_type: BatchMatMulV2, dtype: int8}")
    for op_type in ("LayerNorm", "PolyAttention"):
        if kinds.get(op_type):
            _supported(graph_def, op_type, kinds[op_type])


def _supported(graph_def, op_type: str, scopes: list[str]) -> dict[str, Any]:
    """scope -> parts of the selected LayerNorms or polynomial attentions (``op_type``); UserError naming the first
    in another form."""
    from inc_transformer_mt.passes.integer_ops import layer_norm_parts, poly_attention_parts

    parts = (layer_norm_parts if op_type == "LayerNorm" else poly_attention_parts)(graph_def)
    for scope in scopes:
        if isinstance(parts.get(scope), str):
            raise UserError(f"{op_type} {scope} cannot be made integer: {parts[scope]} (keep it fp32)")
    return {scope: parts[scope] for scope in scopes}


def watched_tensors(graph_def, ops: Mapping[str, str]) -> tuple[dict[str, list[str]], set[str]]:
    """(reader op -> the tensors to calibrate, the masked tensors) for the selected ops."""
    from inc_transformer_mt.passes.int8_attention import attention_inputs
    from inc_transformer_mt.passes.integer_ops import softmax_inputs

    kinds = _by_type(ops)
    extra: dict[str, list[str]] = {}
    masked: set[str] = set()
    if "BatchMatMulV2" in kinds:
        att = attention_inputs(graph_def)
        extra.update({op: att[op] for op in kinds["BatchMatMulV2"]})
    if "Softmax" in kinds:
        sm = softmax_inputs(graph_def)
        for op in kinds["Softmax"]:
            extra[op] = [sm[op]]
            masked.add(sm[op])
    for op_type in ("LayerNorm", "PolyAttention"):
        for p in _supported(graph_def, op_type, kinds.get(op_type, [])).values():
            extra.setdefault(p.reader, []).append(p.x)
            if op_type == "PolyAttention":
                masked.add(p.x)  # attention logits: the mask's -1e9 stays out of the statistics
    return extra, masked


def apply_eight_bit(graph_def, ops: Mapping[str, str], chosen: Mapping[str, tuple[float, float]],
                    observed: Mapping[str, tuple[float, float]]) -> tuple[Any, list[dict[str, Any]]]:
    """(new graph, one report dict per rewrite run) for the selected ops; the input graph is not modified.

    ``chosen``: the recipe method's ranges per tensor (attention operands); ``observed``: calibrated min/max
    per tensor (Softmax, LayerNorm and PolyAttention inputs)."""
    from inc_transformer_mt.passes.int8_attention import int8_attention
    from inc_transformer_mt.passes.integer_ops import integer_layer_norm, integer_poly_attention, integer_softmax

    kinds = _by_type(ops)
    reports = []
    gd = graph_def
    if kinds.get("BatchMatMulV2"):
        gd, r = int8_attention(gd, chosen, kinds["BatchMatMulV2"])
        reports.append(r.to_dict())
    if kinds.get("GatherNd"):
        from inc_transformer_mt.passes.int8_cache import int8_cache

        gd, r = int8_cache(gd, kinds["GatherNd"])
        reports.append(r.to_dict())
    if kinds.get("Softmax"):
        gd, r = integer_softmax(gd, observed, kinds["Softmax"])
        reports.append(r.to_dict())
    if kinds.get("PolyAttention"):
        gd, r = integer_poly_attention(gd, observed, kinds["PolyAttention"])
        reports.append(r.to_dict())
    if kinds.get("LayerNorm"):
        gd, r = integer_layer_norm(gd, observed, kinds["LayerNorm"])
        reports.append(r.to_dict())
    return gd, reports
