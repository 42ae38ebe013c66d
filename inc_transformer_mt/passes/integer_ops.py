"""Integer-only Softmax and LayerNorm (recipe ``dtype: integer``), after I-BERT (Kim et al. 2021).

Each op is replaced by a sub-graph that quantizes its float input once, with a scale calibrated on the
calibration sentences (every decode step included), computes in integers only, and dequantizes its result:

**Softmax** (I-BERT's i-exp, Algorithm 2, and its integer softmax):

1. ``q = round(clip(x / S))``, int32 (the attention logits at 2^-10 or finer: the integer domain of an
   int8 x int8 accumulator; ``S = max(R / 32767, 2^-10)``, ``R`` the calibrated |max| of the unmasked logits);
2. ``q -= max(q)`` along the row, then clamped at ``-30 q_ln2`` (everything below is exp < 2^-30);
3. range reduction by shifts: ``z = floor(-q / q_ln2)``, ``q_p = q + z q_ln2`` in ``(-ln2, 0]``, with
   ``q_ln2 = floor(ln 2 / S)``;
4. the second-order polynomial ``exp(p) ~ 0.3585 (p + 1.353)^2 + 0.344`` in integers:
   ``q_l = (q_p + floor(1.353 / S))^2 + floor(0.344 / (0.3585 S^2))`` (scale ``0.3585 S^2``, < 2^22), and
   ``q_exp = q_l >> z``;
5. the 8-bit output ``p = round(255 q_exp / sum(q_exp))`` (the sum and this division in int64), scale 1/255.

The additive attention mask (-1e9) clips to the bottom of the range and comes out as exactly 0.

**LayerNorm** (I-BERT's integer LayerNorm with an integer Newton square root):

1. ``q = round(clip(x / S))``, int32, ``S = R / 32767`` (the residual stream at 16 bits, ``R`` its calibrated
   |max|);
2. ``y = q - floor(sum(q) / n)``; ``var = floor(sum(y^2) / n) + round(eps / S^2)`` (int64);
3. ``std = isqrt(var)``: start at ``2^ceil(bits(var) / 2)`` (>= the root; ``bits`` by integer comparisons) and
   take 6 Newton steps ``x = min(x, (x + var // x) // 2)`` (monotone, exact floor root for var < 2^48);
4. ``norm = (y << 10) // std`` (scale 2^-10), ``out = norm * gamma_q + beta_q`` with gamma in int8
   (``S_g = max|gamma| / 127``) and beta in int32 at scale ``S_g 2^-10``; dequantized by that scale.

:func:`softmax_reference` and :func:`layer_norm_reference` are the same algorithms in NumPy (the tests hold
the graph to them bit for bit). The rewrites match the ops by structure: ``Softmax`` nodes, and composite
LayerNorms ``mean -> (x - mean)^2 -> mean -> + eps -> rsqrt -> * gamma -> + beta`` by their name scope.

**Lin et al. (2020)'s Integer Transformer** (a model trained with ``--attention polynomial --layer-norm l1``)
has no Softmax and no square root to approximate; its two ops become integer-only directly:

- *L1 LayerNorm* (``mean -> |x - mean| -> mean -> * sqrt(pi/2) + eps -> divide -> * gamma + beta``): steps 1-2
  as above, then ``dev = floor(sum(|y|) * round(sqrt(pi/2) 2^16) / (n 2^16)) + round(eps / S)`` replaces the
  variance and its square root; step 4 as above.
- *Polynomial attention* (op type ``PolyAttention``: ``ReLU(x + b)^n + |delta|`` over its sum): ``q`` as the
  softmax's step 1 at ``S = R / 32767`` (masked logits fall below the range and get weight 0),
  ``p = max(q + round(b / S), 0)^n + round(|delta| / S^n)`` in int64, ``w = round(255 p / sum(p))``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from inc_transformer_mt.errors import UserError
from inc_transformer_mt.model.analysis import compute_ops, input_op, source_node
from inc_transformer_mt.model.config import L1_NORM_SCALE
from inc_transformer_mt.passes.graph_edit import PassReport, build_subgraph, calibrated_range, splice

__all__ = [
    "LayerNormConsts",
    "LayerNormParts",
    "PolyAttentionParts",
    "PolyConsts",
    "SoftmaxConsts",
    "integer_layer_norm",
    "integer_poly_attention",
    "integer_softmax",
    "layer_norm_parts",
    "layer_norm_reference",
    "poly_attention_parts",
    "poly_attention_reference",
    "softmax_inputs",
    "softmax_reference",
]

_LN2, _A, _B, _C = math.log(2.0), 0.3585, 1.353, 0.344
#: the input levels of the integer domain (16 bits, as an int8 x int8 accumulator carries)
INPUT_LEVELS = 32767
#: the coarsest softmax input scale: keeps the polynomial below 2^22 (and the row sum of 511 keys in int32)
MIN_SOFTMAX_SCALE = 2.0**-10
MAX_SHIFT = 30
OUT_LEVELS = 255
NORM_BITS = 10
NEWTON_STEPS = 6
#: sqrt(pi/2) in fixed point (the L1 LayerNorm's deviation -> standard deviation factor)
L1_SCALE_BITS = 16
L1_SCALE_Q = round(L1_NORM_SCALE * 2**L1_SCALE_BITS)


# ------------------------------------------------------------------------------------------------ softmax
@dataclass(frozen=True)
class SoftmaxConsts:
    scale: float
    clip_lo: int
    clip_hi: int
    q_ln2: int
    q_b: int
    q_c: int

    @classmethod
    def for_range(cls, absmax: float) -> SoftmaxConsts:
        s = max(float(absmax) / INPUT_LEVELS, MIN_SOFTMAX_SCALE)
        q_ln2 = math.floor(_LN2 / s)
        hi = max(1, math.ceil(float(absmax) / s))
        return cls(scale=s, clip_lo=-(hi + 32 * q_ln2), clip_hi=hi, q_ln2=q_ln2, q_b=math.floor(_B / s),
                   q_c=math.floor(_C / (_A * s * s)))


def softmax_reference(x: np.ndarray, k: SoftmaxConsts) -> np.ndarray:
    """The integer softmax of the module docstring in NumPy (float in, dequantized float out)."""
    q = np.round(np.clip(np.asarray(x, np.float32) / np.float32(k.scale), k.clip_lo, k.clip_hi)).astype(np.int32)
    q = q - q.max(axis=-1, keepdims=True)
    q = np.maximum(q, -MAX_SHIFT * k.q_ln2)
    z = (-q) // k.q_ln2
    q_p = q + z * k.q_ln2
    q_l = (q_p + k.q_b) ** 2 + k.q_c
    q_exp = (q_l >> z).astype(np.int64)
    total = q_exp.sum(axis=-1, keepdims=True)
    p = (q_exp * OUT_LEVELS + total // 2) // total
    return p.astype(np.float32) * np.float32(1.0 / OUT_LEVELS)


def _softmax_graph(x, k: SoftmaxConsts):
    import tensorflow as tf

    q = tf.cast(tf.round(tf.clip_by_value(x / np.float32(k.scale), float(k.clip_lo), float(k.clip_hi))), tf.int32)
    q = q - tf.reduce_max(q, axis=-1, keepdims=True)
    q = tf.maximum(q, -MAX_SHIFT * k.q_ln2)
    z = tf.math.floordiv(-q, k.q_ln2)
    q_p = q + z * k.q_ln2
    q_l = tf.square(q_p + k.q_b) + k.q_c
    q_exp = tf.cast(tf.bitwise.right_shift(q_l, z), tf.int64)
    total = tf.reduce_sum(q_exp, axis=-1, keepdims=True)
    p = tf.math.floordiv(q_exp * OUT_LEVELS + tf.math.floordiv(total, 2), total)
    return tf.multiply(tf.cast(p, tf.float32), np.float32(1.0 / OUT_LEVELS), name="integer_softmax")


def softmax_inputs(graph_def) -> dict[str, str]:
    """Softmax op -> the tensor it reads."""
    return {n.name: n.input[0] for n in graph_def.node if n.op == "Softmax"}


def integer_softmax(graph_def, ranges: Mapping[str, tuple[float, float]], ops: Iterable[str]):
    """(new graph_def, PassReport): each Softmax in ``ops`` replaced by the integer softmax, with the range of
    its input tensor from ``ranges`` (tensor -> (min, max)). The input graph is not modified."""
    gd = copy.deepcopy(graph_def)
    report = PassReport(name="integer_softmax")
    inputs = softmax_inputs(gd)
    for op in sorted(set(ops)):
        if op not in inputs:
            raise UserError(f"integer softmax: {op} is not a Softmax of the graph")
        tensor = inputs[op]
        k = SoftmaxConsts.for_range(_absmax(ranges, tensor, op))
        sub, out = build_subgraph(lambda x, k=k: _softmax_graph(x, k), {"x": None})
        splice(gd, op, sub, out, {"x": tensor}, anchor=tensor, prefix=f"{op}/integer_softmax")
        report.rewritten.append(op)
        report.details[op] = {"input_scale": k.scale, "q_ln2": k.q_ln2}
    return gd, report


def _absmax(ranges: Mapping[str, tuple[float, float]], tensor: str, op: str) -> float:
    lo, hi = calibrated_range(ranges, tensor, op)
    return max(abs(lo), abs(hi), 1e-6)


# ---------------------------------------------------------------------------------------------- layer norm
@dataclass(frozen=True)
class LayerNormConsts:
    scale: float
    eps_q: int  # eps at the variance's scale S^2 (L2)
    eps_l1_q: int  # eps at the deviation's scale S (L1)
    gamma_q: np.ndarray  # int32 values in [-127, 127]
    gamma_scale: float
    beta_q: np.ndarray  # int32

    @classmethod
    def for_range(cls, absmax: float, gamma: np.ndarray, beta: np.ndarray, eps: float) -> LayerNormConsts:
        s = float(absmax) / INPUT_LEVELS
        g_scale = max(float(np.abs(gamma).max()), 1e-12) / 127.0
        out_scale = g_scale * 2.0**-NORM_BITS
        return cls(scale=s, eps_q=round(eps / (s * s)), eps_l1_q=round(eps / s),
                   gamma_q=np.clip(np.round(gamma / g_scale), -127, 127).astype(np.int32), gamma_scale=g_scale,
                   beta_q=np.round(np.asarray(beta, np.float64) / out_scale).astype(np.int32))

    @property
    def out_scale(self) -> float:
        return self.gamma_scale * 2.0**-NORM_BITS


def _isqrt_reference(v: np.ndarray) -> np.ndarray:
    v = np.maximum(v, 1)
    bits = (v[..., None] >= (np.int64(1) << np.arange(48, dtype=np.int64))).sum(-1).astype(np.int64)
    x = np.left_shift(np.int64(1), (bits + 1) // 2)
    for _ in range(NEWTON_STEPS):
        x = np.minimum(x, (x + v // x) // 2)
    return x


def layer_norm_reference(x: np.ndarray, k: LayerNormConsts, norm_kind: str = "l2") -> np.ndarray:
    """The integer LayerNorm of the module docstring in NumPy (float in, dequantized float out); ``norm_kind``
    "l1" is the integer L1 LayerNorm."""
    n = x.shape[-1]
    q = np.round(np.clip(np.asarray(x, np.float32) / np.float32(k.scale), -INPUT_LEVELS, INPUT_LEVELS)).astype(np.int32)
    y = q - q.sum(axis=-1, keepdims=True) // n
    y64 = y.astype(np.int64)
    if norm_kind == "l1":
        std = np.maximum((np.abs(y64).sum(axis=-1, keepdims=True) * L1_SCALE_Q) // (n << L1_SCALE_BITS) + k.eps_l1_q, 1)
    else:
        var = (y64 * y64).sum(axis=-1, keepdims=True) // n + k.eps_q
        std = _isqrt_reference(var)
    norm = ((y64 << NORM_BITS) // std).astype(np.int32)
    out = norm * k.gamma_q + k.beta_q
    return out.astype(np.float32) * np.float32(k.out_scale)


def _layer_norm_graph(x, k: LayerNormConsts, n: int, norm_kind: str = "l2"):
    import tensorflow as tf

    q = tf.cast(tf.round(tf.clip_by_value(x / np.float32(k.scale), -float(INPUT_LEVELS), float(INPUT_LEVELS))),
                tf.int32)
    y = q - tf.math.floordiv(tf.reduce_sum(q, axis=-1, keepdims=True), n)
    y64 = tf.cast(y, tf.int64)
    if norm_kind == "l1":
        dev = tf.math.floordiv(tf.reduce_sum(tf.abs(y64), axis=-1, keepdims=True) * L1_SCALE_Q, n << L1_SCALE_BITS)
        r = tf.maximum(dev + k.eps_l1_q, 1)
    else:
        var = tf.math.floordiv(tf.reduce_sum(y64 * y64, axis=-1, keepdims=True), n) + k.eps_q
        v = tf.maximum(var, 1)
        powers = tf.constant([1 << i for i in range(48)], tf.int64)
        bits = tf.reduce_sum(tf.cast(tf.expand_dims(v, -1) >= powers, tf.int64), axis=-1)
        r = tf.bitwise.left_shift(tf.ones_like(bits), tf.math.floordiv(bits + 1, 2))
        for _ in range(NEWTON_STEPS):
            r = tf.minimum(r, tf.math.floordiv(r + tf.math.floordiv(v, r), 2))
    norm = tf.cast(tf.math.floordiv(tf.bitwise.left_shift(y64, NORM_BITS), r), tf.int32)
    out = norm * tf.constant(k.gamma_q) + tf.constant(k.beta_q)
    return tf.multiply(tf.cast(out, tf.float32), np.float32(k.out_scale), name="integer_layer_norm")


@dataclass(frozen=True)
class LayerNormParts:
    """A composite LayerNorm found by structure: its input tensor, output node and constants."""

    scope: str
    x: str
    output: str
    gamma: np.ndarray
    beta: np.ndarray
    eps: float
    reader: str  # the op that reads x first (the calibration watches x there)
    norm: str = "l2"  # "l1": Lin et al.'s L1 LayerNorm (mean absolute deviation, no square root)


def _const_value(by_name, name: str) -> np.ndarray | None:
    from tensorflow.python.framework import tensor_util

    node = source_node(by_name, name)
    if node is None or node.op != "Const":
        return None
    return tensor_util.MakeNdarray(node.attr["value"].tensor)


def layer_norm_parts(graph_def) -> dict[str, LayerNormParts | str]:
    """LayerNorm scope -> its parts, or the reason it is not in the supported composite form."""
    by_name = {n.name: n for n in graph_def.node}
    scopes = [s for s, t in compute_ops(graph_def).items() if t == "LayerNorm"]
    out: dict[str, LayerNormParts | str] = {}
    for scope in scopes:
        inside = [n for n in graph_def.node if n.name.startswith(scope + "/")]
        names = {n.name for n in inside}
        rsqrt = [n for n in inside if n.op == "Rsqrt"]
        means = [n for n in inside if n.op == "Mean" and input_op(n.input[0]) not in names]
        l1 = not rsqrt and any(n.op == "Abs" for n in inside)
        # the L1 form divides by (mean|x - mu| * sqrt(pi/2) + eps)
        divs = [n for n in inside if n.op == "RealDiv"] if l1 else rsqrt
        eps_adds = {input_op(d.input[1 if l1 else 0]) for d in divs}
        adds = [n for n in inside if n.op in ("AddV2", "Add") and n.name not in eps_adds]
        if len(divs) != 1 or len(means) != 1:
            out[scope] = "not mean / variance / rsqrt (or mean / mean absolute deviation) in one scope"
            continue
        eps_add = by_name.get(input_op(divs[0].input[1 if l1 else 0]))
        eps = None if eps_add is None else next((v for v in (_const_value(by_name, i) for i in eps_add.input)
                                                 if v is not None), None)
        final = [n for n in adds if _const_value(by_name, n.input[1]) is not None
                 and by_name.get(input_op(n.input[0])) is not None and by_name[input_op(n.input[0])].op == "Mul"]
        if eps is None or len(final) != 1:
            out[scope] = "no constant epsilon, or no final '* gamma + beta'"
            continue
        mul = by_name[input_op(final[0].input[0])]
        gamma = next((v for v in (_const_value(by_name, i) for i in mul.input) if v is not None), None)
        beta = _const_value(by_name, final[0].input[1])
        if gamma is None or beta is None or gamma.ndim != 1 or beta.shape != gamma.shape:
            out[scope] = "gamma / beta are not constant vectors"
            continue
        out[scope] = LayerNormParts(scope=scope, x=means[0].input[0], output=final[0].name, gamma=gamma,
                                    beta=beta, eps=float(np.asarray(eps).reshape(-1)[0]), reader=means[0].name,
                                    norm="l1" if l1 else "l2")
    return out


def _replace_scopes(graph_def, pass_name: str, parts_of: Mapping[str, Any], ops: Iterable[str], what: str,
                    missing: str, rewrite) -> tuple[Any, PassReport]:
    """(new graph_def, PassReport): each scope in ``ops`` replaced by ``rewrite(parts)`` -> (graph function of x,
    report details), spliced in at the scope's output and fed its input; the old scope's nodes are pruned.
    ``parts_of``: scope -> its parts, or why it is not in the supported form. The input graph is not modified."""
    from inc_transformer_mt.passes.graph_edit import prune_unreachable, sinks

    gd = copy.deepcopy(graph_def)
    report = PassReport(name=pass_name)
    outputs = sinks(gd)
    for scope in sorted(set(ops)):
        parts: Any = parts_of.get(scope)
        if parts is None or isinstance(parts, str):
            raise UserError(f"{what}: {scope}: {parts or missing}")
        fn, details = rewrite(parts)
        sub, out = build_subgraph(fn, {"x": None})
        splice(gd, parts.output, sub, out, {"x": parts.x}, anchor=parts.x, prefix=f"{scope}/{pass_name}")
        report.rewritten.append(scope)
        report.details[scope] = details
    prune_unreachable(gd, outputs)
    return gd, report


def integer_layer_norm(graph_def, ranges: Mapping[str, tuple[float, float]], ops: Iterable[str]):
    """(new graph_def, PassReport): each LayerNorm scope in ``ops`` replaced by the integer LayerNorm (L2 or L1, as
    the scope computes), with the range of its input from ``ranges``. The input graph is not modified."""

    def rewrite(parts: LayerNormParts):
        k = LayerNormConsts.for_range(_absmax(ranges, parts.x, parts.scope), parts.gamma, parts.beta, parts.eps)
        n = int(parts.gamma.shape[0])
        return (lambda x: _layer_norm_graph(x, k, n, parts.norm),
                {"input_scale": k.scale, "gamma_scale": k.gamma_scale, "norm": parts.norm})

    return _replace_scopes(graph_def, "integer_layer_norm", layer_norm_parts(graph_def), ops, "integer LayerNorm",
                           "not a LayerNorm of the graph", rewrite)


# ------------------------------------------------------------------------------------ polynomial attention
@dataclass(frozen=True)
class PolyAttentionParts:
    """A polynomial attention (Lin et al. 2020; model/transformer.py) found by structure."""

    scope: str
    x: str  # the masked attention logits it reads
    output: str  # the normalised weights (RealDiv)
    bias: float  # b of ReLU(x + b)^n
    delta: float  # |delta|
    degree: int
    reader: str  # the op that reads x (the calibration watches x there)


@dataclass(frozen=True)
class PolyConsts:
    scale: float
    b_q: int
    delta_q: int
    degree: int

    @classmethod
    def for_range(cls, absmax: float, parts: PolyAttentionParts) -> PolyConsts:
        s = float(absmax) / INPUT_LEVELS
        return cls(scale=s, b_q=round(parts.bias / s), delta_q=max(1, round(abs(parts.delta) / s**parts.degree)),
                   degree=parts.degree)


def poly_attention_reference(x: np.ndarray, k: PolyConsts) -> np.ndarray:
    """The integer polynomial attention in NumPy (float logits in, dequantized weights out):
    ``q = round(clip(x / S))`` (masked logits fall below the range and are dropped), ``r = max(q + b_q, 0)``,
    ``p = r^n + delta_q`` (int64, scale S^n), ``w = round(255 p / sum(p))``, scale 1/255."""
    q = np.round(np.clip(np.asarray(x, np.float32) / np.float32(k.scale), -INPUT_LEVELS - 1, INPUT_LEVELS))
    q = q.astype(np.int64)
    r = np.maximum(q + k.b_q, 0)
    p = np.where(q >= -INPUT_LEVELS, r**k.degree + k.delta_q, 0)
    total = np.maximum(p.sum(axis=-1, keepdims=True), 1)
    w = (p * OUT_LEVELS + total // 2) // total
    return w.astype(np.float32) * np.float32(1.0 / OUT_LEVELS)


def _poly_graph(x, k: PolyConsts):
    import tensorflow as tf

    lo, hi = -float(INPUT_LEVELS + 1), float(INPUT_LEVELS)
    q = tf.cast(tf.round(tf.clip_by_value(x / np.float32(k.scale), lo, hi)), tf.int64)
    r = tf.maximum(q + k.b_q, 0)
    power = r
    for _ in range(k.degree - 1):
        power = power * r
    p = tf.where(q >= -INPUT_LEVELS, power + k.delta_q, tf.zeros_like(power))
    total = tf.maximum(tf.reduce_sum(p, axis=-1, keepdims=True), 1)
    w = tf.math.floordiv(p * OUT_LEVELS + tf.math.floordiv(total, 2), total)
    return tf.multiply(tf.cast(w, tf.float32), np.float32(1.0 / OUT_LEVELS), name="integer_poly_attention")


def poly_attention_parts(graph_def) -> dict[str, PolyAttentionParts | str]:
    """Polynomial-attention scope -> its parts, or the reason it is not in the form the model writes."""
    from inc_transformer_mt.model.analysis import poly_attention_scopes

    by_name = {n.name: n for n in graph_def.node}
    out: dict[str, PolyAttentionParts | str] = {}
    for scope in poly_attention_scopes(graph_def):
        inside = [n for n in graph_def.node if n.name.startswith(scope + "/")]
        relus = [n for n in inside if n.op == "Relu"]
        divs = [n for n in inside if n.op == "RealDiv"]
        abs_ = [n for n in inside if n.op == "Abs"]
        if len(relus) != 1 or len(divs) != 1:
            out[scope] = "not ReLU(x + b)^n + |delta| over its sum in one scope"
            continue
        add = by_name.get(input_op(relus[0].input[0]))
        consts = [] if add is None else [(_const_value(by_name, i), i) for i in add.input]
        b = next((v for v, _ in consts if v is not None), None)
        x = next((i for v, i in consts if v is None), None)
        delta = _const_value(by_name, abs_[0].input[0]) if len(abs_) == 1 else None
        if delta is None:  # |delta| folded into a constant
            adds = [n for n in inside if n.op in ("AddV2", "Add") and n is not add]
            delta = next((v for n in adds for v in (_const_value(by_name, i) for i in n.input) if v is not None),
                         None)
        if b is None or x is None or delta is None:
            out[scope] = "b or delta is not a constant"
            continue
        degree = 1 + sum(1 for n in inside if n.op == "Mul" and relus[0].name in map(input_op, n.input))
        out[scope] = PolyAttentionParts(scope=scope, x=x, output=divs[0].name, bias=float(np.asarray(b).reshape(-1)[0]),
                                        delta=float(np.abs(np.asarray(delta)).reshape(-1)[0]), degree=degree,
                                        reader=add.name)
    return out


def integer_poly_attention(graph_def, ranges: Mapping[str, tuple[float, float]], ops: Iterable[str]):
    """(new graph_def, PassReport): each polynomial attention in ``ops`` replaced by its integer-only form, with
    the range of its (unmasked) logits from ``ranges``. The input graph is not modified."""

    def rewrite(parts: PolyAttentionParts):
        k = PolyConsts.for_range(_absmax(ranges, parts.x, parts.scope), parts)
        return lambda x: _poly_graph(x, k), {"input_scale": k.scale, "degree": k.degree, "b_q": k.b_q}

    return _replace_scopes(graph_def, "integer_poly_attention", poly_attention_parts(graph_def), ops,
                           "integer polynomial attention", "not a polynomial attention", rewrite)
