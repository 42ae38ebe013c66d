"""One INC 3.10 static quantization of a frozen translation graph, with this package's fixes.

- The backend is set for every call (INC resets its global config after each quantization, so a second
  call would silently fall back from ``itex`` to ``default``); BF16 conversion is off (INT8 or FP32 only).
- MatMuls kept FP32 are named by anchored op-name keys (INC matches keys with ``re.match``).
- KL ranges replace INC's min/max at the one point both backends share: the values
  ``FreezeValueTransformer`` parses from the calibration log, before they are frozen (and before the
  default backend quantizes biases with them). Requantization ranges (fused MatMul+Relu outputs on the
  default backend) are replaced with the range of the tensor they feed.
- Default backend: the decoder's in-loop MatMul+BiasAdd+Relu and the tied logits MatMul (transpose_b) are
  rewritten first so INC's fusion rules accept them (:mod:`inc_transformer_mt.quant.default_backend`).
- Default backend: qint8 weights entering the decode loop frame are carried as int8 and bitcast back
  inside (TensorFlow 2.15 has no ``Enter`` kernel for qint8 without ITEX; tensorflow issue 61761).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import re
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from inc_transformer_mt.defaults import BACKENDS
from inc_transformer_mt.errors import RuntimeFailure, UserError
from inc_transformer_mt.model.analysis import consumers, input_op

__all__ = ["BACKENDS", "QuantResult", "fix_quantized_enter", "inc_quantize", "requant_targets"]

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


@contextlib.contextmanager
def _range_override(ranges: Mapping[str, tuple[float, float]] | None, result: QuantResult,
                    requant: Mapping[str, tuple[float, float]] | None):
    from neural_compressor.tensorflow.quantization.utils.graph_rewriter.int8 import freeze_value as fv

    orig_minmax = fv.FreezeValueTransformer._parse_max_min_log
    orig_requant = fv.FreezeValueTransformer._parse_requantization_ranges

    def parse_minmax(self):
        res = orig_minmax(self)
        is_max = self.postfix.startswith("__max")
        marker = "_eightbit_max_" if is_max else "_eightbit_min_"
        for key, value in res.items():
            result.minmax_ranges[key] = float(value)
            op = key.split(marker, 1)[0]
            if ranges is not None and op in ranges:
                res[key] = float(ranges[op][1 if is_max else 0])
                result.replaced_ranges[key] = res[key]
        return res

    def parse_requant(self):
        res = orig_requant(self)
        for key, value in res.items():
            op = key.removesuffix("_eightbit_requant_range")
            result.minmax_ranges[key + ":min"], result.minmax_ranges[key + ":max"] = map(float, value[:2])
            if requant is not None and op in requant:
                lo, hi = requant[op]
                res[key] = [float(lo), float(hi)]
                result.replaced_ranges[key + ":min"], result.replaced_ranges[key + ":max"] = float(lo), float(hi)
        return res

    # INC reads the calibration Print output by redirecting the file descriptor of the ``sys.stderr`` it saw at
    # import time; under pytest or Jupyter that object is not fd 2 (where TensorFlow prints) and calibration
    # reads nothing. Point it at the process's real stderr.
    from neural_compressor.tensorflow.utils import utility as inc_utility

    capture = inc_utility.CaptureOutputToFile.__init__
    orig_defaults = capture.__defaults__
    capture.__defaults__ = (sys.__stderr__,)
    fv.FreezeValueTransformer._parse_max_min_log = parse_minmax
    fv.FreezeValueTransformer._parse_requantization_ranges = parse_requant
    try:
        yield
    finally:
        fv.FreezeValueTransformer._parse_max_min_log = orig_minmax
        fv.FreezeValueTransformer._parse_requantization_ranges = orig_requant
        capture.__defaults__ = orig_defaults


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


class _DataLoader:
    def __init__(self, batches: Sequence[np.ndarray]):
        self.batches = list(batches)
        self.batch_size = int(self.batches[0].shape[0]) if self.batches else 1

    def __iter__(self):
        for b in self.batches:
            yield b, None

    def __len__(self) -> int:
        return len(self.batches)


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
    from neural_compressor.tensorflow import Model, StaticQuantConfig, quantize_model
    from neural_compressor.tensorflow.utils import TFConfig

    # not INC's itex_installed(): its bare `except:` turns a Ctrl-C into "ITEX is not installed"
    if backend == "itex" and importlib.util.find_spec("intel_extension_for_tensorflow") is None:
        raise RuntimeFailure("backend 'itex' needs intel-extension-for-tensorflow[cpu]==2.15.0.0 installed")
    fp32_ops = sorted(set(fp32_ops))
    config = StaticQuantConfig(weight_granularity=weight_granularity)
    for op in fp32_ops:
        config.set_local(f"^{re.escape(op)}$", StaticQuantConfig(act_dtype="fp32", weight_dtype="fp32"))
    prep = None
    if backend == "default":
        from inc_transformer_mt.quant.default_backend import prepare_default_backend

        graph_def, prep = prepare_default_backend(graph_def, fp32_ops)
    model = Model(graph_def)
    model.input_tensor_names = [input_op(n) for n in input_names]
    model.output_tensor_names = [input_op(n) for n in output_names]
    TFConfig.global_config["backend"] = backend
    TFConfig.global_config["use_bf16"] = False
    # INC's default workspace is ./nc_workspace/<timestamp> in the current directory: keep it out of users' trees
    workspace = tempfile.TemporaryDirectory(prefix="inc_mt_workspace_")
    TFConfig.global_config["workspace_path"] = workspace.name
    result = QuantResult(graph_def=None, backend=backend, fp32_ops=fp32_ops)
    inc_logger = logging.getLogger("neural_compressor")
    old_level = inc_logger.level
    if quiet:
        inc_logger.setLevel(logging.ERROR)
    try:
        with _range_override(ranges, result, requant_ranges):
            q_model = quantize_model(model, config, calib_dataloader=_DataLoader(calib_batches),
                                     calib_iteration=len(calib_batches))
    finally:
        inc_logger.setLevel(old_level)
        TFConfig.reset_global_config()
        workspace.cleanup()
    if q_model is None:
        raise RuntimeError("INC returned no quantized model")
    out = q_model.graph_def
    if backend == "default":
        from inc_transformer_mt.quant.default_backend import restore_relus

        restore_relus(out)
        result.enter_fixes = fix_quantized_enter(out)
        result.prepared = prep.to_dict()
    result.graph_def = out
    return result
