"""One INC 3.10 static quantization of a frozen translation graph, with this package's fixes.

- The backend is set for every call (INC resets its global config after each quantization, so a second
  call would silently fall back from ``itex`` to ``default``); BF16 conversion is off (INT8 or FP32 only).
- MatMuls kept FP32 are named by anchored op-name keys (INC matches keys with ``re.match``).
- KL ranges replace INC's min/max through :func:`inc_transformer_mt.quant.inc_hooks.kl_ranges` (verified:
  every MatMul INC calibrates gets its range). Requantization ranges (fused MatMul+Relu outputs on the
  default backend) are replaced with the range of the tensor they feed.
- Default backend: the decoder's in-loop MatMul+BiasAdd+Relu and the tied logits MatMul (transpose_b) are
  rewritten first so INC's fusion rules accept them (:mod:`inc_transformer_mt.quant.default_backend`).
- Default backend: qint8 weights entering the decode loop frame are carried as int8 and bitcast back
  inside (TensorFlow 2.15 has no ``Enter`` kernel for qint8 without ITEX; tensorflow issue 61761).
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from inc_transformer_mt.defaults import BACKENDS
from inc_transformer_mt.errors import RuntimeFailure, UserError
from inc_transformer_mt.model.analysis import consumers, input_op

__all__ = ["BACKENDS", "QuantResult", "finalize_model", "fix_quantized_enter", "inc_quantize", "prepare_model",
           "requant_targets"]

logger = logging.getLogger(__name__)



@dataclass
class QuantResult:
    graph_def: object
    backend: str
    fp32_ops: list[str]
    replaced_ranges: dict[str, float] = field(default_factory=dict)  # INC log key -> value frozen
    minmax_ranges: dict[str, float] = field(default_factory=dict)  # INC log key -> INC's own value
    enter_fixes: int = 0
    prepared: dict[str, list[str]] = field(default_factory=dict)  # default backend: MatMuls rewritten for INC


def requant_targets(graph_def, matmul_input: Mapping[str, str]) -> dict[str, str]:
    """MatMul -> the quantized-MatMul input tensor its output becomes through BiasAdd/Relu/Reshape/Identity."""
    index = consumers(graph_def, control=False)
    inputs = set(matmul_input.values())
    out: dict[str, str] = {}
    for mm in matmul_input:
        name = mm
        for _ in range(6):
            nxt = index.get(name, [])
            if len(nxt) != 1 or nxt[0].op not in ("BiasAdd", "Relu", "Relu6", "Reshape", "Identity"):
                break
            name = nxt[0].name
            if f"{name}:0" in inputs:
                out[mm] = f"{name}:0"
                break
    return out


_QTYPES = {11: 6, 12: 4, 13: 3}  # DT_QINT8 -> DT_INT8, DT_QUINT8 -> DT_UINT8, DT_QINT32 -> DT_INT32


def fix_quantized_enter(graph_def) -> int:
    """Carry quantized tensors into loop frames as plain integers: ``x -> Bitcast(int) -> Enter -> Bitcast(q)``.

    Returns the number of Enter nodes rewritten. The graph then runs on TensorFlow without ITEX.
    """
    from tensorflow.core.framework import node_def_pb2

    fixes = 0
    new_nodes = []
    renames: dict[str, str] = {}
    for node in graph_def.node:
        if node.op != "Enter" or node.attr["T"].type not in _QTYPES:
            continue
        qtype = node.attr["T"].type
        itype = _QTYPES[qtype]
        to_int = node_def_pb2.NodeDef(name=node.name + "/inc_mt_to_int", op="Bitcast", input=[node.input[0]])
        to_int.attr["T"].type = qtype
        to_int.attr["type"].type = itype
        node.input[0] = to_int.name
        node.attr["T"].type = itype
        back = node_def_pb2.NodeDef(name=node.name + "/inc_mt_to_q", op="Bitcast", input=[node.name])
        back.attr["T"].type = itype
        back.attr["type"].type = qtype
        renames[node.name] = back.name
        new_nodes += [to_int, back]
        fixes += 1
    if fixes:
        for node in graph_def.node:
            for i, inp in enumerate(node.input):
                ctrl = inp.startswith("^")
                op = input_op(inp)
                if op in renames and not ctrl:
                    node.input[i] = renames[op] + inp[len(op):]
        graph_def.node.extend(new_nodes)
    return fixes


def prepare_model(graph_def, backend: str, fp32_ops: Iterable[str] = ()):
    """(graph INC should quantize, what was rewritten): the default backend's exact pre-rewrites
    (:mod:`inc_transformer_mt.quant.default_backend`) for the MatMuls not kept FP32; ITEX: the graph as is."""
    if backend != "default":
        return graph_def, None
    from inc_transformer_mt.quant.default_backend import prepare_default_backend

    return prepare_default_backend(graph_def, fp32_ops)


def finalize_model(graph_def, backend: str) -> int:
    """In place, on INC's output: undo the pre-rewrites and carry qint8 into loop frames as int8 (default
    backend). Returns the number of Enter nodes fixed."""
    if backend != "default":
        return 0
    from inc_transformer_mt.quant.default_backend import restore_relus

    restore_relus(graph_def)
    return fix_quantized_enter(graph_def)


def inc_quantize(
    graph_def,
    *,
    input_names: Sequence[str],
    output_names: Sequence[str],
    backend: str,
    calib_batches: Sequence[np.ndarray],
    fp32_ops: Iterable[str] = (),
    ranges: Mapping[str, tuple[float, float]] | None = None,
    requant_ranges: Mapping[str, tuple[float, float]] | None = None,
    weight_granularity: str = "per_tensor",
    quiet: bool = True,
) -> QuantResult:
    """INT8 graph from INC's static quantization (``quantize_model``) with the given backend and fallbacks."""
    if backend not in BACKENDS:
        raise UserError(f"backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    from neural_compressor.tensorflow import quantize_model

    # not INC's itex_installed(): its bare `except:` turns a Ctrl-C into "ITEX is not installed"
    if backend == "itex" and importlib.util.find_spec("intel_extension_for_tensorflow") is None:
        raise RuntimeFailure("backend 'itex' needs intel-extension-for-tensorflow[cpu]==2.15.0.0 installed")
    from inc_transformer_mt.quant.inc_hooks import (
        CalibrationLoader,
        inc_model,
        inc_tempdir,
        keep_backend,
        kl_ranges,
        quant_config,
        quiet_inc,
    )

    fp32_ops = sorted(set(fp32_ops))
    prepared, prep = prepare_model(graph_def, backend, fp32_ops)
    result = QuantResult(graph_def=None, backend=backend, fp32_ops=fp32_ops)
    with inc_tempdir(), quiet_inc(quiet), keep_backend(backend), \
            kl_ranges(ranges or {}, requant_ranges, verify=ranges is not None) as hook:
        try:
            q_model = quantize_model(inc_model(prepared, input_names, output_names),
                                     quant_config(fp32_ops, weight_granularity),
                                     calib_dataloader=CalibrationLoader(calib_batches),
                                     calib_iteration=len(calib_batches))
        except (AttributeError, KeyError, IndexError, TypeError) as exc:  # INC's own failure, logged above
            raise RuntimeFailure(f"INC's {backend} backend could not quantize this graph ({type(exc).__name__}: "
                                 f"{exc}); INC's log above names the node") from exc
    result.replaced_ranges, result.minmax_ranges = hook.replaced, hook.minmax
    if q_model is None:
        raise RuntimeFailure("INC returned no quantized model")
    out = q_model.graph_def
    result.enter_fixes = finalize_model(out, backend)
    result.prepared = prep.to_dict() if prep is not None else {}
    result.graph_def = out
    return result
