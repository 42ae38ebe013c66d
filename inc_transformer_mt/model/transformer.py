"""The reference Transformer, written once as plain TF functions over a dict of weights.

Training calls these functions eagerly / in ``tf.function`` with ``tf.Variable`` weights; export calls the
same functions inside a TF1 graph with constant weights and a v1 ``while_loop`` beam search
(:mod:`inc_transformer_mt.model.export`). One definition, so the exported graph is the trained model.

Layout follows the TensorFlow official Transformer (the model of INC's Transformer-LT example): tied
embedding scaled by sqrt(d_model) with the pad id embedded as zeros, sinusoidal positions, pre-LayerNorm
sub-blocks, Q/K/V/output projections without bias, ReLU feed-forward with bias, a final LayerNorm on
each stack, and logits from the transposed embedding. Dense layers are explicit Reshape -> MatMul so
INC sees plain ``MatMul`` nodes with constant weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from inc_transformer_mt.model.config import L1_NORM_SCALE, PAD_ID, ModelConfig

__all__ = [
    "NEG_INF",
    "POLY_DELTA_INIT",
    "decode_step",
    "decode_train",
    "encode",
    "init_params",
    "padding_bias",
    "param_shapes",
    "polynomial_attention",
    "position_encoding",
]

NEG_INF = -1e9
#: initial |delta| of polynomial attention: the floor that keeps a row with no positive score well defined
POLY_DELTA_INIT = 0.01
Params = Mapping[str, tf.Tensor]


def _attention_shapes(prefix: str, d: int, cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    shapes = {f"{prefix}/{w}": (d, d) for w in ("q", "k", "v", "output")}
    if cfg.attention == "polynomial":
        shapes[f"{prefix}/poly/bias"] = ()
        shapes[f"{prefix}/poly/delta"] = ()
    shapes[f"{prefix}/layer_norm/gamma"] = (d,)
    shapes[f"{prefix}/layer_norm/beta"] = (d,)
    return shapes


def _ffn_shapes(prefix: str, d: int, f: int) -> dict[str, tuple[int, ...]]:
    return {
        f"{prefix}/filter/kernel": (d, f),
        f"{prefix}/filter/bias": (f,),
        f"{prefix}/output/kernel": (f, d),
        f"{prefix}/output/bias": (d,),
        f"{prefix}/layer_norm/gamma": (d,),
        f"{prefix}/layer_norm/beta": (d,),
    }


def param_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every weight, in a fixed order."""
    d = cfg.d_model
    shapes: dict[str, tuple[int, ...]] = {"embedding": (cfg.vocab_size, d)}
    for i in range(cfg.num_encoder_layers):
        shapes.update(_attention_shapes(f"encoder/layer_{i}/self_attention", d, cfg))
        shapes.update(_ffn_shapes(f"encoder/layer_{i}/ffn", d, cfg.ffn_dim))
    shapes["encoder/layer_norm/gamma"] = (d,)
    shapes["encoder/layer_norm/beta"] = (d,)
    for i in range(cfg.num_decoder_layers):
        shapes.update(_attention_shapes(f"decoder/layer_{i}/self_attention", d, cfg))
        shapes.update(_attention_shapes(f"decoder/layer_{i}/encdec_attention", d, cfg))
        shapes.update(_ffn_shapes(f"decoder/layer_{i}/ffn", d, cfg.ffn_dim))
    shapes["decoder/layer_norm/gamma"] = (d,)
    shapes["decoder/layer_norm/beta"] = (d,)
    return shapes


def init_params(cfg: ModelConfig, seed: int) -> dict[str, np.ndarray]:
    """Initial weights (numpy, float32): Glorot-uniform kernels, N(0, d^-0.5) embedding, LN at identity."""
    rng = np.random.default_rng(seed)
    params: dict[str, np.ndarray] = {}
    for name, shape in param_shapes(cfg).items():
        if name.endswith("poly/delta"):
            value = np.full(shape, POLY_DELTA_INIT)
        elif name == "embedding":
            value = rng.normal(0.0, cfg.d_model**-0.5, size=shape)
        elif name.endswith("gamma"):
            value = np.ones(shape)
        elif name.endswith(("beta", "bias")):
            value = np.zeros(shape)
        else:
            limit = math.sqrt(6.0 / (shape[0] + shape[1]))
            value = rng.uniform(-limit, limit, size=shape)
        params[name] = value.astype(np.float32)
    return params


# --------------------------------------------------------------------------------------------- blocks
def _dense(x: tf.Tensor, kernel: tf.Tensor, bias: tf.Tensor | None = None) -> tf.Tensor:
    """x[..., in] @ kernel[in, out] as Reshape -> MatMul -> Reshape (a plain MatMul node for INC)."""
    in_dim = kernel.shape[0]
    out_dim = kernel.shape[1]
    lead = tf.shape(x)[:-1]
    y = tf.matmul(tf.reshape(x, [-1, in_dim]), kernel)
    if bias is not None:
        y = tf.nn.bias_add(y, bias)
    return tf.reshape(y, tf.concat([lead, [out_dim]], axis=0))


def _layer_norm(x: tf.Tensor, p: Params, prefix: str, cfg: ModelConfig, eps: float = 1e-6) -> tf.Tensor:
    with tf.name_scope("layer_norm"):
        mean = tf.reduce_mean(x, axis=-1, keepdims=True)
        if cfg.layer_norm == "l1":
            # Lin et al. (2020), L1 LayerNorm: the deviation is measured by the L1 norm, no square root
            dev = tf.reduce_mean(tf.abs(x - mean), axis=-1, keepdims=True)
            norm = (x - mean) / (dev * L1_NORM_SCALE + eps)
        else:
            var = tf.reduce_mean(tf.square(x - mean), axis=-1, keepdims=True)
            norm = (x - mean) * tf.math.rsqrt(var + eps)
        return norm * p[f"{prefix}/layer_norm/gamma"] + p[f"{prefix}/layer_norm/beta"]


def _dropout(x: tf.Tensor, rate: float, training: bool) -> tf.Tensor:
    if training and rate > 0:
        return tf.nn.dropout(x, rate=rate)
    return x


def _split_heads(x: tf.Tensor, heads: int) -> tf.Tensor:
    batch, length = tf.shape(x)[0], tf.shape(x)[1]
    depth = x.shape[-1] // heads
    x = tf.reshape(x, [batch, length, heads, depth])
    return tf.transpose(x, [0, 2, 1, 3])


def _combine_heads(x: tf.Tensor) -> tf.Tensor:
    batch, length = tf.shape(x)[0], tf.shape(x)[2]
    d = x.shape[1] * x.shape[3]
    x = tf.transpose(x, [0, 2, 1, 3])
    return tf.reshape(x, [batch, length, d])


def _attention(
    p: Params,
    prefix: str,
    x: tf.Tensor,
    memory: tf.Tensor,
    bias: tf.Tensor,
    cfg: ModelConfig,
    training: bool,
    cache: dict[str, tf.Tensor] | None = None,
) -> tf.Tensor:
    with tf.name_scope(prefix.rsplit("/", 1)[-1]):
        q = _dense(x, p[f"{prefix}/q"])
        k = _dense(memory, p[f"{prefix}/k"])
        v = _dense(memory, p[f"{prefix}/v"])
        if cache is not None:
            k = tf.concat([cache["k"], k], axis=1)
            v = tf.concat([cache["v"], v], axis=1)
            cache["k"], cache["v"] = k, v
        heads = cfg.num_heads
        q = _split_heads(q, heads) * (cfg.d_model // heads) ** -0.5
        k = _split_heads(k, heads)
        v = _split_heads(v, heads)
        logits = tf.matmul(q, k, transpose_b=True) + bias
        if cfg.attention == "polynomial":
            weights = polynomial_attention(logits, bias, p[f"{prefix}/poly/bias"], p[f"{prefix}/poly/delta"], cfg)
        else:
            weights = tf.nn.softmax(logits, name="attention_weights")
        weights = _dropout(weights, cfg.attention_dropout, training)
        context = _combine_heads(tf.matmul(weights, v))
        return _dense(context, p[f"{prefix}/output"])


def polynomial_attention(
    logits: tf.Tensor, bias: tf.Tensor, b: tf.Tensor, delta: tf.Tensor, cfg: ModelConfig
) -> tf.Tensor:
    """Lin et al. (2020)'s Softmax-free attention weights: Poly(s) = ReLU(s + b)^n + |delta|, normalised by
    their sum over the keys. Masked keys (``bias`` at NEG_INF) get weight 0, the |delta| floor included."""
    with tf.name_scope("polynomial_attention"):
        keep = tf.cast(bias > 0.5 * NEG_INF, tf.float32)
        r = tf.nn.relu(logits + b)
        power = r
        for _ in range(cfg.poly_degree - 1):
            power = power * r
        poly = (power + tf.abs(delta)) * keep
        return tf.math.divide(poly, tf.reduce_sum(poly, axis=-1, keepdims=True), name="attention_weights")


def _sublayer(x: tf.Tensor, fn, p: Params, prefix: str, cfg: ModelConfig, training: bool) -> tf.Tensor:
    """Pre-LayerNorm residual block: x + dropout(fn(layer_norm(x)))."""
    y = fn(_layer_norm(x, p, prefix, cfg))
    return x + _dropout(y, cfg.dropout, training)


def _ffn(p: Params, prefix: str, x: tf.Tensor, cfg: ModelConfig, training: bool) -> tf.Tensor:
    with tf.name_scope("ffn"):
        h = tf.nn.relu(_dense(x, p[f"{prefix}/filter/kernel"], p[f"{prefix}/filter/bias"]))
        h = _dropout(h, cfg.relu_dropout, training)
        return _dense(h, p[f"{prefix}/output/kernel"], p[f"{prefix}/output/bias"])


# ---------------------------------------------------------------------------------------------- model
def position_encoding(length: tf.Tensor, d_model: int) -> tf.Tensor:
    """Sinusoidal positions [length, d_model]: sin on the first half, cos on the second (TF official)."""
    position = tf.cast(tf.range(length), tf.float32)
    num_timescales = d_model // 2
    log_increment = math.log(1.0e4) / max(num_timescales - 1, 1)
    inv = tf.exp(tf.cast(tf.range(num_timescales), tf.float32) * -log_increment)
    scaled = tf.expand_dims(position, 1) * tf.expand_dims(inv, 0)
    return tf.concat([tf.sin(scaled), tf.cos(scaled)], axis=1)


def padding_bias(ids: tf.Tensor) -> tf.Tensor:
    """[batch, 1, 1, length] additive bias, NEG_INF where ids is the pad id."""
    pad = tf.cast(tf.equal(ids, PAD_ID), tf.float32)
    return tf.expand_dims(tf.expand_dims(pad * NEG_INF, 1), 1)


def _embed(p: Params, ids: tf.Tensor, cfg: ModelConfig) -> tf.Tensor:
    with tf.name_scope("embedding"):
        emb = tf.gather(p["embedding"], ids)
        mask = tf.cast(tf.not_equal(ids, PAD_ID), tf.float32)
        return emb * tf.expand_dims(mask, -1) * (cfg.d_model**0.5)


def logits_from_hidden(p: Params, hidden: tf.Tensor, cfg: ModelConfig) -> tf.Tensor:
    """Tied output projection: hidden[..., d] @ embedding^T."""
    with tf.name_scope("logits"):
        lead = tf.shape(hidden)[:-1]
        flat = tf.reshape(hidden, [-1, cfg.d_model])
        logits = tf.matmul(flat, p["embedding"], transpose_b=True)
        return tf.reshape(logits, tf.concat([lead, [cfg.vocab_size]], axis=0))


def encode(p: Params, src: tf.Tensor, cfg: ModelConfig, training: bool) -> tuple[tf.Tensor, tf.Tensor]:
    """Encoder. Returns (outputs [batch, src_len, d], attention bias [batch, 1, 1, src_len])."""
    with tf.name_scope("encode"):
        bias = padding_bias(src)
        x = _embed(p, src, cfg) + position_encoding(tf.shape(src)[1], cfg.d_model)
        x = _dropout(x, cfg.dropout, training)
        for i in range(cfg.num_encoder_layers):
            pre = f"encoder/layer_{i}"
            with tf.name_scope(f"layer_{i}"):
                x = _sublayer(
                    x,
                    lambda y, pre=pre: _attention(p, f"{pre}/self_attention", y, y, bias, cfg, training),
                    p, f"{pre}/self_attention", cfg, training,
                )
                x = _sublayer(
                    x, lambda y, pre=pre: _ffn(p, f"{pre}/ffn", y, cfg, training), p, f"{pre}/ffn", cfg, training
                )
        return _layer_norm(x, p, "encoder", cfg), bias


def _decoder_stack(
    p: Params,
    x: tf.Tensor,
    memory: tf.Tensor,
    self_bias: tf.Tensor,
    memory_bias: tf.Tensor,
    cfg: ModelConfig,
    training: bool,
    cache: dict[str, dict[str, tf.Tensor]] | None = None,
) -> tf.Tensor:
    for i in range(cfg.num_decoder_layers):
        pre = f"decoder/layer_{i}"
        layer_cache = cache[f"layer_{i}"] if cache is not None else None
        with tf.name_scope(f"layer_{i}"):
            x = _sublayer(
                x,
                lambda y, pre=pre, layer_cache=layer_cache: _attention(
                    p, f"{pre}/self_attention", y, y, self_bias, cfg, training, layer_cache
                ),
                p, f"{pre}/self_attention", cfg, training,
            )
            x = _sublayer(
                x,
                lambda y, pre=pre: _attention(
                    p, f"{pre}/encdec_attention", y, memory, memory_bias, cfg, training
                ),
                p, f"{pre}/encdec_attention", cfg, training,
            )
            x = _sublayer(
                x, lambda y, pre=pre: _ffn(p, f"{pre}/ffn", y, cfg, training), p, f"{pre}/ffn", cfg, training
            )
    return _layer_norm(x, p, "decoder", cfg)


def causal_bias(length: tf.Tensor) -> tf.Tensor:
    """[1, 1, length, length] bias that hides future positions."""
    lower = tf.linalg.band_part(tf.ones([length, length]), -1, 0)
    return tf.reshape(NEG_INF * (1.0 - lower), [1, 1, length, length])


def decode_train(
    p: Params, memory: tf.Tensor, memory_bias: tf.Tensor, tgt: tf.Tensor, cfg: ModelConfig, training: bool
) -> tf.Tensor:
    """Teacher-forced decoder: logits [batch, tgt_len, vocab] for targets shifted right by one."""
    with tf.name_scope("decode"):
        length = tf.shape(tgt)[1]
        shifted = tf.pad(tgt, [[0, 0], [1, 0]])[:, :-1]  # first input is the pad id (zero embedding)
        x = _embed(p, shifted, cfg) + position_encoding(length, cfg.d_model)
        x = _dropout(x, cfg.dropout, training)
        h = _decoder_stack(p, x, memory, causal_bias(length), memory_bias, cfg, training)
        return logits_from_hidden(p, h, cfg)


def decode_step(
    p: Params,
    ids: tf.Tensor,
    step: tf.Tensor,
    timing: tf.Tensor,
    cache: dict,
    cfg: ModelConfig,
) -> tuple[tf.Tensor, dict]:
    """One incremental decoder step for beam search.

    Args:
        ids: [batch*beam, step+1] tokens so far (last column is the newest input).
        step: scalar int32 decode position.
        timing: [max_len, d] position table computed once outside the loop.
        cache: {"layer_i": {"k", "v"}, "encoder_outputs", "encoder_bias"}; updated in place.

    Returns:
        (logits [batch*beam, vocab], cache).
    """
    x = _embed(p, ids[:, -1:], cfg) + timing[step : step + 1]
    h = _decoder_stack(
        p, x, cache["encoder_outputs"], tf.zeros([1, 1, 1, 1]), cache["encoder_bias"], cfg, False, cache
    )
    return logits_from_hidden(p, h[:, -1, :], cfg), cache
