"""In-graph beam search in the style of the TensorFlow official Transformer (v1 ``while_loop``).

Every step keeps the 2*beam best candidates, splits them into alive and finished hypotheses, and
reorders every cached tensor (per-layer self-attention keys/values, encoder outputs and bias) with
``tf.gather_nd`` -- the data movement the Intel INT8 paper singles out. Scores use the GNMT length
penalty ((5 + length) / 6) ** alpha.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

__all__ = ["beam_search"]

INF = 1.0e7


def _length_penalty(length: tf.Tensor, alpha: float) -> tf.Tensor:
    return tf.pow((5.0 + tf.cast(length, tf.float32)) / 6.0, alpha)


def _expand_to_beam(t: tf.Tensor, beam: int) -> tf.Tensor:
    t = tf.expand_dims(t, 1)
    multiples = [1, beam] + [1] * (t.shape.ndims - 2)
    return tf.tile(t, multiples)


def _flatten_beam(t: tf.Tensor) -> tf.Tensor:
    shape = tf.shape(t)
    return tf.reshape(t, tf.concat([[shape[0] * shape[1]], shape[2:]], axis=0))


def _unflatten_beam(t: tf.Tensor, batch: tf.Tensor, beam: int) -> tf.Tensor:
    shape = tf.shape(t)
    return tf.reshape(t, tf.concat([[batch, beam], shape[1:]], axis=0))


def _gather_beams(nested, beam_indices: tf.Tensor, batch: tf.Tensor, new_beam: int):
    """nested[b, beam_indices[b, j], ...] for every tensor in ``nested``, via ``tf.gather_nd``."""
    batch_pos = tf.range(batch * new_beam) // new_beam
    batch_pos = tf.reshape(batch_pos, [batch, new_beam])
    coordinates = tf.stack([batch_pos, beam_indices], axis=2)
    return tf.nest.map_structure(lambda s: tf.gather_nd(s, coordinates), nested)


def _shape_invariant(t: tf.Tensor) -> tf.TensorShape:
    """Batch and every length axis unknown; keep the static last dimension when there is one."""
    dims = [None] * t.shape.ndims
    if t.shape.ndims >= 3 and t.shape[-1] is not None:
        dims[-1] = t.shape[-1]
    dims[1] = t.shape[1]  # the beam axis is static
    return tf.TensorShape(dims)


def beam_search(
    symbols_to_logits: Callable[[tf.Tensor, tf.Tensor, dict], tuple[tf.Tensor, dict]],
    initial_ids: tf.Tensor,
    initial_cache: dict,
    vocab_size: int,
    beam_size: int,
    alpha: float,
    max_decode_length: tf.Tensor,
    eos_id: int,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Beam search decode.

    Args:
        symbols_to_logits: (ids [batch*beam, i+1], i, flat cache) -> (logits [batch*beam, vocab], cache).
        initial_ids: [batch] start tokens.
        initial_cache: nested dict of [batch, ...] tensors, expanded to beams here.
        max_decode_length: scalar int32.

    Returns:
        (sequences [batch, beam, length+1] including the start token, scores [batch, beam]).
    """
    batch = tf.shape(initial_ids)[0]
    K = beam_size
    alive_seq = tf.expand_dims(_expand_to_beam(initial_ids, K), 2)
    alive_log_probs = tf.tile(tf.constant([[0.0] + [-INF] * (K - 1)]), [batch, 1])
    alive_cache = tf.nest.map_structure(lambda t: _expand_to_beam(t, K), initial_cache)
    state = {
        "i": tf.constant(0),
        "alive_seq": alive_seq,
        "alive_log_probs": alive_log_probs,
        "alive_cache": alive_cache,
        "finished_seq": tf.zeros_like(alive_seq),
        "finished_scores": tf.ones([batch, K]) * -INF,
        "finished_flags": tf.zeros([batch, K], tf.bool),
    }
    invariants = {
        "i": tf.TensorShape([]),
        "alive_seq": tf.TensorShape([None, K, None]),
        "alive_log_probs": tf.TensorShape([None, K]),
        "alive_cache": tf.nest.map_structure(_shape_invariant, alive_cache),
        "finished_seq": tf.TensorShape([None, K, None]),
        "finished_scores": tf.TensorShape([None, K]),
        "finished_flags": tf.TensorShape([None, K]),
    }

    def continue_search(s):
        not_at_max = tf.less(s["i"], max_decode_length)
        best_alive = s["alive_log_probs"][:, 0] / _length_penalty(max_decode_length, alpha)
        flags = tf.cast(s["finished_flags"], tf.float32)
        lowest_finished = tf.reduce_min(s["finished_scores"] * flags, axis=1)
        lowest_finished += (1.0 - tf.cast(tf.reduce_any(s["finished_flags"], 1), tf.float32)) * -INF
        done = tf.reduce_all(tf.greater(lowest_finished, best_alive))
        return tf.logical_and(not_at_max, tf.logical_not(done))

    def search_step(s):
        i = s["i"]
        # Grow: 2K best continuations of the alive hypotheses.
        flat_ids = _flatten_beam(s["alive_seq"])
        flat_cache = tf.nest.map_structure(_flatten_beam, s["alive_cache"])
        flat_logits, flat_cache = symbols_to_logits(flat_ids, i, flat_cache)
        logits = tf.reshape(flat_logits, [batch, K, vocab_size])
        new_cache = tf.nest.map_structure(lambda t: _unflatten_beam(t, batch, K), flat_cache)
        log_probs = tf.nn.log_softmax(logits) + tf.expand_dims(s["alive_log_probs"], 2)
        penalty = _length_penalty(i + 1, alpha)
        flat_scores = tf.reshape(log_probs / penalty, [batch, K * vocab_size])
        topk_scores, topk_indices = tf.nn.top_k(flat_scores, k=2 * K)
        topk_log_probs = topk_scores * penalty
        topk_beams = topk_indices // vocab_size
        topk_ids = tf.expand_dims(topk_indices % vocab_size, 2)
        topk_seq, topk_cache = _gather_beams([s["alive_seq"], new_cache], topk_beams, batch, 2 * K)
        topk_seq = tf.concat([topk_seq, topk_ids], axis=2)
        is_eos = tf.equal(topk_ids[:, :, 0], eos_id)

        # Alive: the K best that did not just end.
        alive_scores = topk_log_probs + tf.cast(is_eos, tf.float32) * -INF
        _, alive_idx = tf.nn.top_k(alive_scores, k=K)
        alive_seq, alive_log_probs, alive_cache = _gather_beams(
            [topk_seq, topk_log_probs, topk_cache], alive_idx, batch, K
        )

        # Finished: the K best among the finished so far and those that just ended.
        finished_seq = tf.concat([s["finished_seq"], tf.zeros([batch, K, 1], tf.int32)], axis=2)
        new_scores = topk_log_probs / penalty + (1.0 - tf.cast(is_eos, tf.float32)) * -INF
        all_seq = tf.concat([finished_seq, topk_seq], axis=1)
        all_scores = tf.concat([s["finished_scores"], new_scores], axis=1)
        all_flags = tf.concat([s["finished_flags"], is_eos], axis=1)
        _, fin_idx = tf.nn.top_k(all_scores, k=K)
        finished_seq, finished_scores, finished_flags = _gather_beams(
            [all_seq, all_scores, all_flags], fin_idx, batch, K
        )
        return [{
            "i": i + 1,
            "alive_seq": alive_seq,
            "alive_log_probs": alive_log_probs,
            "alive_cache": alive_cache,
            "finished_seq": finished_seq,
            "finished_scores": finished_scores,
            "finished_flags": finished_flags,
        }]

    final = tf.compat.v1.while_loop(
        continue_search,
        search_step,
        loop_vars=[state],
        shape_invariants=[invariants],
        parallel_iterations=1,
        back_prop=False,
        return_same_structure=True,
    )[0]
    # A sentence with no finished hypothesis returns its alive ones.
    any_finished = tf.reduce_any(final["finished_flags"], axis=1)
    seq = tf.where(tf.reshape(any_finished, [-1, 1, 1]) & tf.ones_like(final["finished_seq"], tf.bool),
                   final["finished_seq"], final["alive_seq"])
    scores = tf.where(tf.reshape(any_finished, [-1, 1]) & tf.ones_like(final["finished_flags"]),
                      final["finished_scores"], final["alive_log_probs"])
    return seq, scores
