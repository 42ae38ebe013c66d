"""Graph passes on the tiny in-code graph: op counts before/after, identical outputs, input not mutated."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.tf


def test_gather_nd_to_gather_is_exact_and_leaves_the_input_alone(tiny_model_dir):
    from conftest import run_graph_batches

    from inc_transformer_mt.model.analysis import op_census
    from inc_transformer_mt.model.graph import load_graph_def
    from inc_transformer_mt.passes.gather_nd import gather_nd_to_gather

    graph = load_graph_def(tiny_model_dir / "model.pb.gz")
    before = graph.SerializeToString(deterministic=True)
    new, report = gather_nd_to_gather(graph)
    assert graph.SerializeToString(deterministic=True) == before  # the input graph is not mutated
    old_ops = op_census(graph).to_dict()["ops"]
    new_ops = op_census(new).to_dict()["ops"]
    assert old_ops["GatherNd"]["inside_loop"] == 18 and "GatherNd" not in new_ops
    assert len(report.rewritten) == 18 and not report.skipped
    assert sum(n.op == "GatherV2" for n in new.node) - sum(n.op == "GatherV2" for n in graph.node) == 18
    rng = np.random.default_rng(5)
    batches = [rng.integers(3, 8000, size=(3, length)).astype(np.int32) for length in (3, 12, 30)]
    for (ids_a, scores_a), (ids_b, scores_b) in zip(run_graph_batches(graph, batches),
                                                    run_graph_batches(new, batches), strict=True):
        np.testing.assert_array_equal(ids_a, ids_b)
        np.testing.assert_array_equal(scores_a, scores_b)


def test_gather_nd_pass_skips_what_it_does_not_understand():
    import tensorflow as tf

    from inc_transformer_mt.passes.gather_nd import gather_nd_to_gather

    g = tf.Graph()
    with g.as_default():
        params = tf.compat.v1.placeholder(tf.float32, [4, 5], name="params")
        idx = tf.constant([[1, 2], [3, 4]], tf.int32, name="idx")
        tf.gather_nd(params, idx, name="plain")
    new, report = gather_nd_to_gather(g.as_graph_def())
    assert report.rewritten == [] and "plain" in report.skipped
    assert [n.op for n in new.node if n.name == "plain"] == ["GatherNd"]


def _quantize_graph():
    """x -> three QuantizeV2 (two with equal ranges from separate constants, one different) -> Dequantize -> sum."""
    import tensorflow as tf

    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        outs = []
        for k, (lo, hi) in enumerate([(-2.0, 2.0), (-2.0, 2.0), (-1.0, 1.0)]):
            q = tf.raw_ops.QuantizeV2(input=x, min_range=tf.constant(lo, name=f"lo{k}"),
                                      max_range=tf.constant(hi, name=f"hi{k}"), T=tf.qint8, mode="SCALED",
                                      name=f"q{k}")
            outs.append(tf.raw_ops.Dequantize(input=q.output, min_range=q.output_min, max_range=q.output_max,
                                              mode="SCALED", name=f"dq{k}"))
        tf.identity(outs[0] * 1.0 + outs[1] * 2.0 + outs[2] * 3.0, name="y")
    return g.as_graph_def()


def _run(graph_def, x):
    import tensorflow as tf

    g = tf.Graph()
    with g.as_default():
        tf.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=g) as s:
        return s.run("y:0", {"x:0": x})


def test_dedupe_quantize_keeps_one_per_tensor_and_range():
    from inc_transformer_mt.passes import apply_passes

    graph = _quantize_graph()
    before = graph.SerializeToString(deterministic=True)
    new, (report,) = apply_passes(graph, ["dedupe_quantize"])
    assert graph.SerializeToString(deterministic=True) == before  # the input graph is not mutated
    assert sum(n.op == "QuantizeV2" for n in graph.node) == 3
    assert sorted(n.name for n in new.node if n.op == "QuantizeV2") == ["q0", "q2"]  # q1 = q0: same x, same range
    assert report["rewritten"] == 1 and report["removed_nodes"] == 3  # q1 and its two range constants
    assert {"lo1", "hi1"}.isdisjoint(n.name for n in new.node)
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32) * 3
    np.testing.assert_array_equal(_run(graph, x), _run(new, x))


def test_dedupe_quantize_is_a_no_op_without_duplicates(tiny_model_dir):
    from inc_transformer_mt.model.graph import load_graph_def
    from inc_transformer_mt.passes.dedupe_quantize import dedupe_quantize

    graph = load_graph_def(tiny_model_dir / "model.pb.gz")  # FP32: no QuantizeV2 at all
    new, report = dedupe_quantize(graph)
    assert report.rewritten == [] and new.SerializeToString(deterministic=True) == graph.SerializeToString(
        deterministic=True)
