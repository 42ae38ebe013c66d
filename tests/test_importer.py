"""``inc-mt import`` on a TF2 SavedModel built here: a string signature (vocabulary lookups in the graph), a
greedy decoder in a functional ``While`` with a ``cond`` inside (as OpenNMT-tf's cross-attention cache has),
exported as TF2 toolkits export. The import must give a frozen graph with v1 control flow, no function library,
the loop MatMuls' weights readable as Const -> Enter, and the SavedModel's translations token for token."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

WORDS = ["<blank>", "<s>", "</s>", "a", "man", "dog", "runs", "sits", "the", "park", "ein", "mann", "hund",
         "läuft", "sitzt", "im", "garten", "."]
SENTENCES = ["a man runs", "the dog sits in the park", "a dog", "zebra man", "park park park a the",
             "a man sits . the dog runs"]


def _build_saved_model(path: Path, *, signatures: str = "strings") -> None:
    import numpy as np
    import tensorflow as tf

    vocab, dim = len(WORDS), 16
    rng = np.random.default_rng(3)

    class Toy(tf.Module):
        def __init__(self):
            super().__init__()
            keys = tf.constant(WORDS)
            ids = tf.range(vocab, dtype=tf.int64)
            self.src = tf.lookup.StaticVocabularyTable(tf.lookup.KeyValueTensorInitializer(keys, ids), 1)
            self.tgt = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(ids, keys), "<unk>")
            self.emb = tf.Variable(rng.normal(size=(vocab + 1, dim)).astype(np.float32))
            self.w_mem = tf.Variable(rng.normal(size=(dim, dim)).astype(np.float32) * 0.5)
            self.w_in = tf.Variable(rng.normal(size=(dim, dim)).astype(np.float32) * 0.5)
            self.w_out = tf.Variable(rng.normal(size=(dim, vocab)).astype(np.float32))
            self.norm = tf.keras.layers.LayerNormalization()  # a training-mode FusedBatchNormV3 in the graph
            self.norm.build((None, dim))
            self.norm.gamma.assign(rng.uniform(0.5, 2.0, dim).astype(np.float32))

        def decode(self, ids, length):
            mask = tf.sequence_mask(length, tf.shape(ids)[1], dtype=tf.float32)[:, :, None]
            memory = tf.reduce_sum(tf.gather(self.emb, ids) * mask, 1) / tf.maximum(tf.reduce_sum(mask, 1), 1.0)
            batch = tf.shape(ids)[0]
            steps = tf.reduce_max(length) + 3

            def body(step, prev, keys, finished, out, score):
                # computed on the first step only, then carried: a cond inside the loop
                keys = tf.cond(tf.equal(step, 0), lambda: tf.matmul(memory, self.w_mem), lambda: keys)
                h = self.norm(tf.tanh(tf.matmul(tf.gather(self.emb, prev), self.w_in) + keys))
                logits = tf.nn.log_softmax(tf.matmul(h, self.w_out))
                nxt = tf.cast(tf.argmax(logits, -1), tf.int32)
                nxt = tf.where(finished, tf.fill([batch], 2), nxt)
                score += tf.where(finished, 0.0, tf.reduce_max(logits, -1))
                return step + 1, nxt, keys, finished | tf.equal(nxt, 2), out.write(step, nxt), score

            _, _, _, _, out, score = tf.while_loop(
                lambda step, prev, keys, finished, out, score: (step < steps) & ~tf.reduce_all(finished), body,
                (0, tf.fill([batch], 1), tf.zeros([batch, dim]), tf.zeros([batch], tf.bool),
                 tf.TensorArray(tf.int32, size=0, dynamic_size=True), tf.zeros([batch])))
            return tf.transpose(out.stack()), score

        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.string, name="tokens"),
                                      tf.TensorSpec([None], tf.int32, name="length")])
        def serve(self, tokens, length):
            ids = self.src.lookup(tokens)
            out, score = self.decode(ids, length)
            strings = self.tgt.lookup(tf.cast(out, tf.int64))
            return {"tokens": tf.expand_dims(strings, 1), "log_probs": tf.expand_dims(score, 1),
                    "length": tf.expand_dims(tf.reduce_sum(tf.cast(tf.not_equal(out, 2), tf.int32), 1), 1)}

        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32, name="features")])
        def unusable(self, features):
            return {"scores": tf.reduce_sum(features, 1)}

    toy = Toy()
    sigs = {"serving_default": toy.serve.get_concrete_function()} if signatures == "strings" else {
        "regress": toy.unusable.get_concrete_function()}
    tf.saved_model.save(toy, str(path), signatures=sigs)
    if signatures == "strings":  # the OpenNMT-tf export layout: tokenizer options in assets.extra
        (path / "assets.extra").mkdir()
        (path / "assets.extra" / "source_tokenizer_config.yml").write_text("mode: space\n")


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("toy") / "saved_model"
    _build_saved_model(path)
    return path


@pytest.fixture(scope="module")
def imported(saved_model, tmp_path_factory):
    from inc_transformer_mt.api import DataOptions, import_model

    source = tmp_path_factory.mktemp("src") / "check.txt"
    source.write_text("".join(s + "\n" for s in SENTENCES), encoding="utf-8")
    out = tmp_path_factory.mktemp("imported") / "model"
    result = import_model(saved_model, out, check=DataOptions(source=source))
    return out, result


def test_import_is_frozen_v1_control_flow_with_the_loop_weights_as_constants(imported):
    from inc_transformer_mt.model.analysis import node_frames, source_node
    from inc_transformer_mt.model.graph import load_graph_def

    out, result = imported
    graph = load_graph_def(out / "model.pb.gz")
    ops = {n.op for n in graph.node}
    assert not graph.library.function and not ops & {"While", "StatelessWhile", "If", "StatelessIf",
                                                   "PartitionedCall", "StatefulPartitionedCall"}
    assert {"Enter", "Exit", "Merge", "Switch", "NextIteration", "LoopCond"} <= ops
    assert not any("Table" in op for op in ops)
    placeholders = [n.name for n in graph.node if n.op == "Placeholder"]
    assert placeholders == ["input_ids"]
    frames, _ = node_frames(graph)
    by_name = {n.name: n for n in graph.node}
    loop_matmuls = [n for n in graph.node if n.op == "MatMul" and n.name in frames]
    assert len(loop_matmuls) == 3  # w_mem (inside the cond), w_in, w_out
    for mm in loop_matmuls:  # INC quantizes a loop weight it sees as Const -> Enter(is_constant)
        enter = by_name[mm.input[1].split(":")[0]]
        assert enter.op == "Enter" and enter.attr["is_constant"].b, mm.name
        assert source_node(by_name, mm.input[1]).op == "Const"
    assert result.census["ops"]["MatMul"]["inside_loop"] == 3
    # the in-loop layer norm is plain ops (ITEX mistranslates an in-loop FusedBatchNormV3)
    assert not [n for n in graph.node if n.op == "FusedBatchNormV3" and n.name in frames]
    assert any("layer norm(s) written as plain ops" in note for note in result.notes)


def test_import_translates_token_for_token_like_the_saved_model(imported):
    out, result = imported
    assert result.check is not None and result.check["identical"], result.check
    assert result.check["sentences"] == len(SENTENCES)
    meta = json.loads((out / "model.json").read_text())
    assert meta["input_tensor"] == "input_ids:0" and meta["output_tensor"] == "output_ids:0"
    assert meta["eos_id"] == WORDS.index("</s>") and meta["pad_id"] == 0
    assert meta["model"]["imported_from"]["signature"] == "serving_default"
    spec = json.loads((out / "tokenizer.json").read_text())
    assert spec["type"] == "opennmt" and spec["options"] == {"mode": "space"}
    assert (out / "source_vocab.txt").read_text().split("\n")[:-1] == WORDS


def test_imported_model_runs_through_translate(imported):
    from inc_transformer_mt.api import ModelOptions, translate

    out, _ = imported
    texts = translate(SENTENCES[:3], model=ModelOptions(out))
    assert len(texts) == 3 and all(isinstance(t, str) for t in texts)
    assert all(w in WORDS for t in texts for w in t.split())


def test_model_json_can_turn_plugin_graph_optimizers_off(imported, tmp_path):
    """``model.plugin_optimizers: false`` (written by the import when ITEX's graph optimizer changes translations)
    reaches the session; without it the plug-in optimizers run."""
    import shutil

    from inc_transformer_mt.inference.translate import Translator
    from inc_transformer_mt.model.graph import resolve_model

    out, _ = imported
    copy = tmp_path / "m"
    shutil.copytree(out, copy)
    meta = json.loads((copy / "model.json").read_text())
    meta["model"].pop("plugin_optimizers", None)
    (copy / "model.json").write_text(json.dumps(meta))
    with Translator(resolve_model(copy)) as on:
        assert on.plugin_optimizers is True
        assert on.session._config.graph_options.rewrite_options.use_plugin_optimizers == 0  # DEFAULT
    meta["model"]["plugin_optimizers"] = False
    (copy / "model.json").write_text(json.dumps(meta))
    with Translator(resolve_model(copy)) as off:
        assert off.plugin_optimizers is False
        assert off.session._config.graph_options.rewrite_options.use_plugin_optimizers == 2  # OFF


def test_cut_replays_the_output_layout_on_ids():
    """The output side follows Identity/Reshape/... back to the reverse lookup and replays them on int64 ids."""
    import tensorflow as tf

    from inc_transformer_mt.model.importer import _replay_on_ids

    graph = tf.Graph()
    with graph.as_default():
        ids = tf.compat.v1.placeholder(tf.int64, [None, None], name="ids")
        table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            tf.constant([0, 1], tf.int64), tf.constant(["x", "y"])), "?")
        strings = tf.identity(tf.expand_dims(tf.transpose(table.lookup(ids)), 1), name="out")
    graph_def = graph.as_graph_def()
    with tf.Graph().as_default() as probe:
        tf.import_graph_def(graph_def, name="")
    name = _replay_on_ids(graph_def, probe, strings.name, Path("toy"))
    with tf.Graph().as_default() as g:
        tf.import_graph_def(graph_def, name="")
        with tf.compat.v1.Session(graph=g) as sess:
            got = sess.run(name, {"ids:0": [[0, 1, 1]]})
    assert got.tolist() == [[[0]], [[1]], [[1]]]  # transposed, expanded: the string layout, in ids


def test_import_errors_are_one_line_exit_2(tmp_path, saved_model, capsys):
    from inc_transformer_mt.cli.main import main

    assert main(["import", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "not a SavedModel directory" in capsys.readouterr().err
    assert main(["import", str(saved_model), "--out", str(tmp_path / "o"), "--signature", "nope"]) == 2
    err = capsys.readouterr().err
    assert "no signature 'nope' (found: serving_default (length: int32" in err and err.count("error:") == 1
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    assert main(["import", str(saved_model), "--out", str(tmp_path / "full")]) == 2
    assert "output directory is not empty" in capsys.readouterr().err


def test_signature_without_token_input_is_refused_with_what_was_found(tmp_path):
    from inc_transformer_mt.errors import UserError
    from inc_transformer_mt.model.importer import find_roles, load_signature

    path = tmp_path / "unusable"
    _build_saved_model(path, signatures="unusable")
    loaded, fn, key = load_signature(path, None)
    assert key == "regress"
    with pytest.raises(UserError, match=r"no usable source input .* signature \(features: float32"):
        find_roles(fn, path)
    del loaded


def test_info_proposes_the_tensor_names_of_an_unknown_graph(tmp_path, capsys):
    import tensorflow as tf

    from inc_transformer_mt.cli.main import main

    with tf.Graph().as_default() as g:
        src = tf.compat.v1.placeholder(tf.int32, [None, None], name="source")
        tf.compat.v1.placeholder(tf.float32, [None], name="temperature")
        tf.identity(tf.reverse(src * 2 + 1, [1]), name="hypotheses")
        tf.identity(tf.cast(tf.reduce_sum(src, 1), tf.float32), name="scores")
    path = tmp_path / "graph.pb"
    path.write_bytes(g.as_graph_def().SerializeToString())
    assert main(["info", "--model", str(path)]) == 0
    out = capsys.readouterr().out
    assert "proposed: --input-tensor source:0 --output-tensor hypotheses:0" in out
    assert main(["info", "--model", str(path), "--input-tensor", "source:0", "--output-tensor",
                 "hypotheses:0"]) == 0
    assert "input: source:0  output: hypotheses:0" in capsys.readouterr().out
