"""The exported graph: v1 control flow, op census, and the same scores as the eager model it came from."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import SPM, tiny_config, tiny_params

pytestmark = pytest.mark.tf


@pytest.fixture(scope="module")
def tiny_graph_def():
    from inc_transformer_mt.model.export import build_inference_graph

    return build_inference_graph(tiny_params(), tiny_config())


def test_graph_uses_v1_control_flow_and_no_function_library(tiny_graph_def):
    ops = {n.op for n in tiny_graph_def.node}
    assert {"Enter", "Exit", "Merge", "Switch", "NextIteration", "LoopCond"} <= ops
    assert not ops & {"While", "StatelessWhile", "PartitionedCall", "StatefulPartitionedCall"}
    assert len(tiny_graph_def.library.function) == 0
    assert not [n.name for n in tiny_graph_def.node if n.op in ("Placeholder",) and n.name != "input_ids"]


def test_census_counts_match_architecture(tiny_graph_def):
    from inc_transformer_mt.model.graph import op_census

    cfg = tiny_config()
    ops = op_census(tiny_graph_def).to_dict()["ops"]
    enc, dec = cfg.num_encoder_layers, cfg.num_decoder_layers
    # encoder: q,k,v,o + 2 FFN per layer; decoder step: 2 x (q,k,v,o) + 2 FFN per layer + tied logits.
    assert ops["MatMul"] == {"outside_loop": 6 * enc, "inside_loop": 10 * dec + 1, "total": 6 * enc + 10 * dec + 1}
    assert ops["BatchMatMulV2"]["outside_loop"] == 2 * enc and ops["BatchMatMulV2"]["inside_loop"] == 4 * dec
    assert ops["Softmax"] == {"outside_loop": enc, "inside_loop": 2 * dec, "total": enc + 2 * dec}
    # 2 LNs per encoder layer + final; 3 per decoder layer + final.
    assert ops["LayerNorm"] == {"outside_loop": 2 * enc + 1, "inside_loop": 3 * dec + 1, "total": 2 * enc + 3 * dec + 2}
    # Cache reorder: every cached tensor (K/V per layer, encoder output and bias) gathered twice a step,
    # plus sequences, scores and flags.
    assert ops["GatherNd"] == {"outside_loop": 0, "inside_loop": 2 * (2 * dec + 2) + 6, "total": 2 * (2 * dec + 2) + 6}


def test_export_does_not_leak_v1_control_flow_setting():
    from tensorflow.python.ops import control_flow_util

    from inc_transformer_mt.model.export import build_inference_graph

    before = control_flow_util.ENABLE_CONTROL_FLOW_V2
    build_inference_graph(tiny_params(), tiny_config())
    assert control_flow_util.ENABLE_CONTROL_FLOW_V2 == before


def _run_graph(graph_def, batch):
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as sess:
        return sess.run(["output_ids:0", "output_scores:0"], {"input_ids:0": batch})


def _eager_sequence_score(params, cfg, src_row, out_row):
    """Log-probability of out_row given src_row under the teacher-forced (training-path) model,
    length-normalised as the beam search does when the hypothesis ended with EOS."""
    import tensorflow as tf

    from inc_transformer_mt.model import transformer as T
    from inc_transformer_mt.model.config import EOS_ID

    out = list(out_row)
    ended = EOS_ID in out
    if ended:
        out = out[: out.index(EOS_ID) + 1]
    p = {k: tf.constant(v) for k, v in params.items()}
    src = tf.constant([src_row], tf.int32)
    tgt = tf.constant([out], tf.int32)
    memory, bias = T.encode(p, src, cfg, training=False)
    logits = T.decode_train(p, memory, bias, tgt, cfg, training=False)
    logp = tf.nn.log_softmax(logits)[0].numpy()
    total = float(sum(logp[i, t] for i, t in enumerate(out)))
    if ended:
        total /= ((5.0 + len(out)) / 6.0) ** cfg.alpha
    return total


def test_graph_scores_equal_eager_teacher_forced_scores(tiny_graph_def):
    """The in-graph incremental decoder (cache, gather_nd, loop) computes the same model as training."""
    from inc_transformer_mt.data.tokenizer import Tokenizer

    tok = Tokenizer(SPM)
    rows = tok.encode_batch(["A dog runs.", "Two men are talking in a small room."])
    batch = np.zeros((2, max(map(len, rows))), np.int32)
    for i, r in enumerate(rows):
        batch[i, : len(r)] = r
    ids, scores = _run_graph(tiny_graph_def, batch)
    assert ids.dtype == np.int32 and ids.shape[0] == 2
    for i in range(2):
        expected = _eager_sequence_score(tiny_params(), tiny_config(), batch[i], ids[i])
        assert scores[i] == pytest.approx(expected, rel=1e-4, abs=1e-4)


def test_padding_does_not_change_the_translation(tiny_graph_def):
    from inc_transformer_mt.data.tokenizer import Tokenizer

    row = Tokenizer(SPM).encode("A dog runs.")
    alone = np.array([row], np.int32)
    padded = np.zeros((2, len(row) + 4), np.int32)
    padded[0, : len(row)] = row
    padded[1, :] = Tokenizer(SPM).encode("Two men are talking in a small room today .")[: len(row) + 4]
    ids_alone, sc_alone = _run_graph(tiny_graph_def, alone)
    ids_padded, sc_padded = _run_graph(tiny_graph_def, padded)
    n = ids_alone.shape[1]
    # The padded batch decodes longer (max length follows the padded width); the common prefix agrees.
    assert ids_padded[0, :n].tolist() == ids_alone[0].tolist()
