"""The decode-loop passes: exact (token ids and scores unchanged) on real beam-search graphs, and left alone, with a
reason, where their pattern is absent or would not be exact."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

pytestmark = pytest.mark.tf

DECODE_PASSES = ("beam_invariant_state", "hoist_loop_invariants", "compose_beam_gathers")


def _loop_ops(graph_def) -> Counter:
    from inc_transformer_mt.model.analysis import node_frames

    frames = node_frames(graph_def)[0]
    return Counter(n.op for n in graph_def.node if n.name in frames)


def _assert_same_outputs(graph_a, graph_b, seed: int = 5) -> None:
    from conftest import run_graph_batches

    rng = np.random.default_rng(seed)
    batches = []
    for length in (3, 12, 30):
        batch = rng.integers(3, 8000, size=(3, length)).astype(np.int32)
        batch[1, length // 2:] = 0  # a padded row: the encoder bias matters
        batches.append(batch)
    for (ids_a, scores_a), (ids_b, scores_b) in zip(run_graph_batches(graph_a, batches), run_graph_batches(graph_b, batches),
                                                    strict=True):
        np.testing.assert_array_equal(ids_a, ids_b)
        np.testing.assert_array_equal(scores_a, scores_b)


@pytest.mark.parametrize("names", [pytest.param((p,), marks=pytest.mark.slow) for p in DECODE_PASSES]
                         + [DECODE_PASSES])
def test_decode_passes_are_exact_on_the_tiny_graph(tiny_model_dir, names):
    from inc_transformer_mt.model.graph import load_graph_def
    from inc_transformer_mt.passes import apply_passes

    graph = load_graph_def(tiny_model_dir / "model.pb.gz")
    before = graph.SerializeToString(deterministic=True)
    new, reports = apply_passes(graph, names)
    assert graph.SerializeToString(deterministic=True) == before  # the input graph is not mutated
    assert all(r["applicable"] and r["rewritten"] > 0 for r in reports), reports
    assert reports[-1]["step_nodes_after"] < reports[0]["step_nodes_before"]
    _assert_same_outputs(graph, new)


def test_decode_passes_do_what_they_say_on_the_tiny_graph(tiny_model_dir):
    """Two decoder layers, beam 4: 4L+10 = 18 cache gathers a step before; the encoder output and bias
    (2 variables x 2 gathers) go, each of the 2L self-attention caches is reordered once instead of twice
    (one shared index gather added); the 2L cross-attention K/V MatMuls leave the loop."""
    from conftest import tiny_config

    from inc_transformer_mt.model.graph import load_graph_def
    from inc_transformer_mt.passes import apply_passes

    graph = load_graph_def(tiny_model_dir / "model.pb.gz")
    new, reports = apply_passes(graph, DECODE_PASSES)
    by = {r["pass"]: r for r in reports}
    layers = tiny_config().num_decoder_layers
    assert by["beam_invariant_state"]["rewritten"] == 2
    assert by["hoist_loop_invariants"]["details"]["moved_matmuls"] == 2 * layers
    assert by["compose_beam_gathers"]["rewritten"] == 2 * layers
    old, now = _loop_ops(graph), _loop_ops(new)
    assert old["GatherNd"] == 4 * layers + 10
    assert now["GatherNd"] == old["GatherNd"] - 4 - 2 * layers + 1
    assert now["MatMul"] == old["MatMul"] - 2 * layers
    assert now["Merge"] == old["Merge"] - 2  # two loop variables fewer
    # the whole graph still has every MatMul (moved, not dropped)
    assert sum(n.op == "MatMul" for n in new.node) == sum(n.op == "MatMul" for n in graph.node)


@pytest.mark.slow
def test_token_identity_check_sees_a_changed_graph(tiny_model_dir):
    """compare_translations is the check the tune report and `inc-mt optimize` rely on: it must catch a change."""
    import copy

    from inc_transformer_mt.data.corpus import multi30k_split, read_lines
    from inc_transformer_mt.inference.identity import compare_translations
    from inc_transformer_mt.model.graph import load_graph_def, resolve_model
    from inc_transformer_mt.passes import apply_passes

    model = resolve_model(tiny_model_dir)
    graph = load_graph_def(model.graph_path)
    src = read_lines(multi30k_split("val", "en"))[:8]
    new, _ = apply_passes(graph, DECODE_PASSES)
    same = compare_translations(model, graph, new, src)
    assert same.identical and same.sentences == 8 and len(same.texts_b) == 8
    broken = copy.deepcopy(graph)
    from tensorflow.python.framework import tensor_util

    for n in broken.node:  # scale the output embedding: other tokens win
        if n.op == "Const" and n.name == "weights/embedding":
            value = tensor_util.MakeNdarray(n.attr["value"].tensor)
            rng = np.random.default_rng(0)
            n.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(
                value * rng.uniform(0.2, 3.0, value.shape[:1])[:, None].astype(np.float32)))
    changed = compare_translations(model, graph, broken, src)
    assert not changed.identical and changed.differing == len(changed.differing_lines) > 0


# ------------------------------------------------------------------------ hand-built loops
def _toy_loop(kind: str):
    """A v1 while loop over x tiled across K=2 beams, reordered each step; returns (graph_def, output name).

    kind: "ok" (a within-sentence reorder), "cross" (the batch coordinate is shifted: rows move between
    sentences), "untiled" (beams differ from the start), "stateful" (a random op with constant inputs).
    """
    import tensorflow as tf

    from inc_transformer_mt.model.export import v1_control_flow

    g = tf.Graph()
    k = 2
    with v1_control_flow(), g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="x")
        w = tf.constant(np.arange(9, dtype=np.float32).reshape(3, 3) / 7.0, name="w")
        batch = tf.shape(x)[0]
        tiled = tf.tile(tf.expand_dims(x, 1), [1, k, 1])
        if kind == "untiled":
            tiled = tiled * tf.constant([[[1.0], [2.0]]])

        def body(i, s, acc):
            batch_pos = tf.reshape(tf.range(batch * k) // k, [batch, k])
            if kind == "cross":
                batch_pos = tf.math.floormod(batch_pos + 1, batch)
            beams = tf.math.floormod(tf.reshape(tf.range(batch * k), [batch, k]) + i, k)
            flat = tf.reshape(s, [batch * k, 3])
            y = tf.matmul(flat, w)  # step-invariant when s is
            if kind == "stateful":
                y = y + tf.random.uniform([1, 3])
            acc = acc + y * tf.cast(i + 1, tf.float32)
            unflat = tf.reshape(flat, [batch, k, 3])
            s = tf.gather_nd(unflat, tf.stack([batch_pos, beams], axis=2))
            return i + 1, s, acc

        _, _, acc = tf.compat.v1.while_loop(
            lambda i, s, acc: i < 4, body, [tf.constant(0), tiled, tf.zeros([batch * k, 3])],
            shape_invariants=[tf.TensorShape([]), tf.TensorShape([None, k, 3]), tf.TensorShape([None, 3])])
        tf.identity(acc, name="out")
    return g.as_graph_def()


def _run_toy(graph_def):
    import tensorflow as tf

    g = tf.Graph()
    with g.as_default():
        tf.import_graph_def(graph_def, name="")
    x = np.array([[1.0, -2.0, 0.5], [3.0, 0.25, -1.0], [0.0, 2.0, 4.0]], np.float32)
    with tf.compat.v1.Session(graph=g) as s:
        return s.run("out:0", {"x:0": x})


def test_beam_invariant_and_hoist_on_a_hand_built_loop():
    from inc_transformer_mt.passes import apply_passes

    graph = _toy_loop("ok")
    new, (bi, hoist) = apply_passes(graph, ["beam_invariant_state", "hoist_loop_invariants"])
    assert bi["rewritten"] == 1 and hoist["details"]["moved_matmuls"] == 1
    assert _loop_ops(new)["GatherNd"] == 0 and _loop_ops(new)["MatMul"] == 0
    np.testing.assert_array_equal(_run_toy(graph), _run_toy(new))


@pytest.mark.parametrize("kind,reason", [
    ("cross", "batch coordinate"),
    ("untiled", "initial value is not a Tile"),
])
def test_beam_invariant_leaves_a_state_alone_when_it_is_not_invariant(kind, reason):
    from inc_transformer_mt.passes.beam_invariant import beam_invariant_state

    graph = _toy_loop(kind)
    new, report = beam_invariant_state(graph)
    assert not report.applicable and report.rewritten == []
    assert any(reason in why for why in report.skipped.values()), report.skipped
    assert _loop_ops(new)["GatherNd"] == 1
    np.testing.assert_array_equal(_run_toy(graph), _run_toy(new))


def test_hoist_keeps_stateful_ops_in_the_loop():
    from inc_transformer_mt.passes import apply_passes

    new, (_, hoist) = apply_passes(_toy_loop("stateful"), ["beam_invariant_state", "hoist_loop_invariants"])
    assert hoist["details"]["moved_matmuls"] == 1
    assert _loop_ops(new)["RandomUniform"] == 1  # same inputs every step, a different value every step


def test_passes_without_a_loop_say_why():
    import tensorflow as tf

    from inc_transformer_mt.passes import apply_passes

    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        tf.identity(tf.matmul(x, tf.ones([4, 4])), name="y")
    _, reports = apply_passes(g.as_graph_def(), DECODE_PASSES)
    reasons = {r["pass"]: r.get("reason", "") for r in reports}
    assert not any(r["applicable"] for r in reports)
    assert "no while loop" in reasons["beam_invariant_state"] and "no while loop" in reasons["hoist_loop_invariants"]
    assert "no GatherNd" in reasons["compose_beam_gathers"]


def test_compose_gathers_is_exact_for_any_coordinates():
    """GatherNd(GatherNd(x, c1), c2) == GatherNd(x, GatherNd(c1, c2)) with arbitrary (not beam-shaped) indices."""
    import tensorflow as tf

    from inc_transformer_mt.passes.compose_gathers import compose_beam_gathers

    rng = np.random.default_rng(3)
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [5, 6, 7], name="x")
        c1 = tf.constant(np.stack([rng.integers(0, 5, (4, 3)), rng.integers(0, 6, (4, 3))], -1), tf.int32)
        c2 = tf.constant(np.stack([rng.integers(0, 4, (2, 8)), rng.integers(0, 3, (2, 8))], -1), tf.int32)
        tf.identity(tf.gather_nd(tf.gather_nd(x, c1), c2), name="out")
    graph = g.as_graph_def()
    new, report = compose_beam_gathers(graph)
    assert len(report.rewritten) == 1 and report.removed_nodes == 1
    xv = rng.standard_normal((5, 6, 7)).astype(np.float32)
    outs = []
    for gd in (graph, new):
        gg = tf.Graph()
        with gg.as_default():
            tf.import_graph_def(gd, name="")
        with tf.compat.v1.Session(graph=gg) as s:
            outs.append(s.run("out:0", {"x:0": xv}))
    np.testing.assert_array_equal(outs[0], outs[1])


@pytest.mark.slow
def test_optimized_model_is_cached_and_runnable(tiny_model_dir, tmp_path, monkeypatch):
    import json

    import inc_transformer_mt as mt
    from inc_transformer_mt.defaults import DEFAULT_PASSES

    monkeypatch.setenv("INC_MT_CACHE", str(tmp_path / "cache"))
    out = mt.optimized_model(mt.ModelOptions(tiny_model_dir))
    meta = json.loads((out / "model.json").read_text())
    assert meta["model"]["passes"] == list(DEFAULT_PASSES)
    reports = json.loads((out / "passes.json").read_text())["passes"]
    assert [r["pass"] for r in reports] == list(DEFAULT_PASSES)
    stamp = (out / "model.pb.gz").stat().st_mtime_ns
    assert mt.optimized_model(mt.ModelOptions(tiny_model_dir)) == out  # cached: not rebuilt
    assert (out / "model.pb.gz").stat().st_mtime_ns == stamp
    assert not [p for p in out.parent.iterdir() if ".tmp-" in p.name]  # no staging directory left behind
    good = (out / "model.pb.gz").read_bytes()
    (out / "model.pb.gz").write_bytes(good[:-100])  # damaged in the cache: found on read, rebuilt
    assert mt.optimized_model(mt.ModelOptions(tiny_model_dir)) == out
    assert (out / "model.pb.gz").read_bytes() == good
    src = ["A dog runs in the park.", "Two men are talking."]
    assert mt.translate(src, model=mt.ModelOptions(out)) == mt.translate(src, model=mt.ModelOptions(tiny_model_dir))


def test_hoist_leaves_a_loop_with_a_cond_alone():
    """A v1 cond in the body: a constant computed in a branch must stay there (dead when not taken)."""
    import tensorflow as tf

    from inc_transformer_mt.model.export import v1_control_flow
    from inc_transformer_mt.passes.hoist import hoist_loop_invariants

    g = tf.Graph()
    with v1_control_flow(), g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [3], name="x")

        def body(i, acc):
            step = tf.compat.v1.cond(i % 2 > 0, lambda: tf.constant([1.0, 2.0, 3.0]) * 2.0, lambda: acc * 0.5)
            return i + 1, acc + step

        _, acc = tf.compat.v1.while_loop(lambda i, acc: i < 5, body, [tf.constant(0), x])
        tf.identity(acc, name="out")
    graph = g.as_graph_def()
    new, report = hoist_loop_invariants(graph)
    assert not report.applicable and "cond" in next(iter(report.skipped.values()))
    assert new == graph


@pytest.mark.slow
def test_optimize_command_checks_token_identity_and_writes_the_model(tiny_model_dir, tmp_path, capsys):
    import json

    from inc_transformer_mt.cli.main import main
    from inc_transformer_mt.defaults import DEFAULT_PASSES

    out = tmp_path / "opt"
    code = main(["optimize", str(tiny_model_dir), "--out", str(out), "--check-split", "val", "--limit", "6"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "token-identical on 6 sentences" in printed and "run per decode step" in printed
    record = json.loads((out / "passes.json").read_text())
    assert record["check"]["identical"] and record["check"]["sentences"] == 6
    assert json.loads((out / "model.json").read_text())["model"]["passes"] == list(DEFAULT_PASSES)
    again = main(["optimize", str(tiny_model_dir), "--out", str(out)])  # never over a non-empty directory
    assert again == 2
