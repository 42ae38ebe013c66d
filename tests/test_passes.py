"""Graph passes on the tiny in-code graph: op counts before/after, identical outputs, input not mutated."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.tf


def test_gather_nd_to_gather_is_exact_and_leaves_the_input_alone(tiny_model_dir):
    from conftest import run_graph

    from inc_transformer_mt.model.graph import load_graph_def, op_census
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
    for length in (3, 12, 30):
        batch = rng.integers(3, 8000, size=(3, length)).astype(np.int32)
        ids_a, scores_a = run_graph(graph, batch)
        ids_b, scores_b = run_graph(new, batch)
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
