"""MatMul FLOPs from the real output width, and a sensitivity simulation that leaves shared weights alone."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_graph

pytestmark = pytest.mark.unit


def _graph():
    """x[6,4] @ W[4,5]; x @ E[7,4]^T (transpose_b, like tied logits); batched x3[2,6,4] @ B[2,3,4] (adj_y)."""
    import tensorflow as tf

    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [6, 4], name="x")
        x3 = tf.compat.v1.placeholder(tf.float32, [2, 6, 4], name="x3")
        tf.matmul(x, tf.constant(np.ones((4, 5), np.float32)), name="plain")
        tf.matmul(x, tf.constant(np.ones((7, 4), np.float32)), transpose_b=True, name="tied")
        tf.raw_ops.BatchMatMulV2(x=x3, y=tf.constant(np.ones((2, 3, 4), np.float32)), adj_y=True, name="batched")
        tf.raw_ops.BatchMatMulV2(x=x3, y=tf.constant(np.ones((2, 4, 9), np.float32)), name="batched_plain")
    return g.as_graph_def()


def test_output_width_follows_transpose_b_and_adj_y():
    from inc_transformer_mt.model.analysis import matmul_output_width

    gd = _graph()
    by = {n.name: n for n in gd.node}
    assert {k: matmul_output_width(by, by[k]) for k in ("plain", "tied", "batched", "batched_plain")} == {
        "plain": 5, "tied": 7, "batched": 3, "batched_plain": 9}


def test_flops_are_two_m_k_n_from_the_left_operand_elements():
    from inc_transformer_mt.model.analysis import matmul_flops

    flops = matmul_flops(_graph(), {"plain": 6 * 4, "tied": 6 * 4, "batched": 2 * 6 * 4})
    assert flops == {"plain": 2 * 6 * 4 * 5, "tied": 2 * 6 * 4 * 7, "batched": 2 * 2 * 6 * 4 * 3}


def test_a_matmul_without_a_constant_operand_has_no_width():
    import tensorflow as tf

    from inc_transformer_mt.model.analysis import matmul_output_width

    g = tf.Graph()
    with g.as_default():
        a = tf.compat.v1.placeholder(tf.float32, [2, 2], name="a")
        tf.matmul(a, a, name="mm")
    by = {n.name: n for n in g.as_graph_def().node}
    with pytest.raises(ValueError, match="not a constant"):
        matmul_output_width(by, by["mm"])


def test_the_reference_logits_matmul_is_vocabulary_wide(reference_dir):
    """The tied logits MatMul (transpose_b) produces one score per vocabulary entry, not d_model."""
    from inc_transformer_mt.model.analysis import matmul_output_width
    from inc_transformer_mt.model.graph import load_graph_def, resolve_model

    model = resolve_model(str(reference_dir))
    vocab = model.meta.model["vocab_size"]
    gd = load_graph_def(model.graph_path)
    by = {n.name: n for n in gd.node}
    logits = [n for n in gd.node if n.op == "MatMul" and n.attr["transpose_b"].b]
    assert len(logits) == 1
    assert matmul_output_width(by, logits[0]) == vocab
    widths = {matmul_output_width(by, n) for n in gd.node if n.op == "MatMul" and n is not logits[0]}
    assert max(widths) < vocab


def test_simulating_the_tied_logits_matmul_leaves_the_embedding_lookup_fp32(tiny_model_dir):
    from tensorflow.python.framework import tensor_util

    from inc_transformer_mt.model.analysis import source_node
    from inc_transformer_mt.model.graph import load_graph_def, resolve_model
    from inc_transformer_mt.quant.sensitivity import fake_quant_graph

    gd = load_graph_def(resolve_model(str(tiny_model_dir)).graph_path)
    by = {n.name: n for n in gd.node}
    logits = next(n for n in gd.node if n.op == "MatMul" and n.attr["transpose_b"].b)
    embedding = source_node(by, logits.input[1])
    lookups = [n.name for n in gd.node if n.op == "GatherV2" and source_node(by, n.input[0]) is embedding]
    assert len(lookups) == 2  # encoder and decoder embedding lookups read the tied weight
    original = tensor_util.MakeNdarray(embedding.attr["value"].tensor)

    fq = fake_quant_graph(gd, {logits.name: (-4.0, 4.0)}, [logits.name])
    fby = {n.name: n for n in fq.node}
    for name in lookups:
        read = tensor_util.MakeNdarray(source_node(fby, fby[name].input[0]).attr["value"].tensor)
        np.testing.assert_array_equal(read, original)
    weight = tensor_util.MakeNdarray(source_node(fby, fby[logits.name].input[1]).attr["value"].tensor)
    assert not np.array_equal(weight, original)  # the MatMul reads the rounded copy
    scale = np.abs(original).max() / 127.0
    np.testing.assert_allclose(weight / scale, np.round(original / scale), atol=1e-3)
    # the encoder's embedding lookup (outside the loop, fetchable) gives the same values as in FP32
    batch = np.array([[5, 6, 7, 2]], np.int32)
    enc = "transformer/encode/embedding/GatherV2:0"
    np.testing.assert_array_equal(_fetch(gd, batch, enc), _fetch(fq, batch, enc))
    # and the simulation does change what the decoder outputs' scores are computed from
    assert not np.array_equal(run_graph(gd, batch)[1], run_graph(fq, batch)[1])


def _fetch(graph_def, batch, tensor):
    import tensorflow as tf

    g = tf.Graph()
    with g.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=g) as sess:
        return sess.run(tensor, {"input_ids:0": batch})


def test_precision_census_counts_a_gather_on_int8_data_as_int8():
    import tensorflow as tf

    from inc_transformer_mt.model.analysis import op_precision_census

    g = tf.Graph()
    with g.as_default():
        idx = tf.compat.v1.placeholder(tf.int32, [2, 1], name="idx")
        tf.gather_nd(tf.constant(np.ones((3, 4), np.int8)), idx, name="g8")
        tf.gather_nd(tf.constant(np.ones((3, 4), np.float32)), idx, name="g32")
        x = tf.compat.v1.placeholder(tf.float32, [2, 4], name="x")
        tf.nn.softmax(x, name="sm")
    census = op_precision_census(g.as_graph_def())
    assert census["GatherNd"] == {"int8": {"outside_loop": 1, "inside_loop": 0},
                                  "integer": {"outside_loop": 0, "inside_loop": 0},
                                  "fp32": {"outside_loop": 1, "inside_loop": 0}}
    assert census["Softmax"]["fp32"]["outside_loop"] == 1 and census["MatMul"]["int8"]["outside_loop"] == 0
