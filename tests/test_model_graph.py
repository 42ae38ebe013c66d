"""The exported graph: v1 control flow, op census, and the same scores as the eager model it came from."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SPM, eager_sequence_score, run_graph, tiny_config, tiny_params

from inc_transformer_mt.data.batching import pad_batch

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
    from inc_transformer_mt.model.analysis import op_census

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


def test_export_is_deterministic(tiny_graph_def):
    from inc_transformer_mt.model.export import build_inference_graph

    again = build_inference_graph(tiny_params(), tiny_config())
    assert again.SerializeToString(deterministic=True) == tiny_graph_def.SerializeToString(deterministic=True)


def test_export_does_not_leak_v1_control_flow_setting():
    from tensorflow.python.ops import control_flow_util

    from inc_transformer_mt.model.export import build_inference_graph

    before = control_flow_util.ENABLE_CONTROL_FLOW_V2
    build_inference_graph(tiny_params(), tiny_config())
    assert control_flow_util.ENABLE_CONTROL_FLOW_V2 == before


def test_graph_scores_equal_eager_teacher_forced_scores(tiny_graph_def):
    """The in-graph incremental decoder (cache, gather_nd, loop) computes the same model as training."""
    from inc_transformer_mt.data.tokenizer import Tokenizer

    tok = Tokenizer(SPM)
    batch = pad_batch(tok.encode_batch(["A dog runs.", "Two men are talking in a small room."]))
    ids, scores = run_graph(tiny_graph_def, batch)
    assert ids.dtype == np.int32 and ids.shape[0] == 2
    for i in range(2):
        expected = eager_sequence_score(tiny_params(), tiny_config(), batch[i], ids[i])
        assert scores[i] == pytest.approx(expected, rel=1e-4, abs=1e-4)


def test_padding_does_not_change_the_translation(tiny_graph_def):
    from inc_transformer_mt.data.tokenizer import Tokenizer

    row = Tokenizer(SPM).encode("A dog runs.")
    alone = np.array([row], np.int32)
    padded = np.zeros((2, len(row) + 4), np.int32)
    padded[0, : len(row)] = row
    padded[1, :] = Tokenizer(SPM).encode("Two men are talking in a small room today .")[: len(row) + 4]
    ids_alone, _ = run_graph(tiny_graph_def, alone)
    ids_padded, _ = run_graph(tiny_graph_def, padded)
    n = ids_alone.shape[1]
    # The padded batch decodes longer (max length follows the padded width); the common prefix agrees.
    assert ids_padded[0, :n].tolist() == ids_alone[0].tolist()


def test_tokenizer_uses_the_model_json_eos_and_pad_ids(tiny_model_dir):
    """model.json's eos_id/pad_id reach the tokenizer (a graph exported with other ids decodes right)."""
    from inc_transformer_mt.data.tokenizer import Tokenizer
    from inc_transformer_mt.inference.translate import Translator
    from inc_transformer_mt.model.config import GraphMeta
    from inc_transformer_mt.model.graph import resolve_model

    tok = Tokenizer(SPM, eos_id=7999, pad_id=7998)
    ids = tok.encode("A dog runs.")
    assert ids[-1] == 7999 and 7999 not in Tokenizer(SPM).encode("A dog runs.")[:-1]
    assert tok.decode([*ids[:-1], 7998, 7999, 99]) == Tokenizer(SPM).decode(Tokenizer(SPM).encode("A dog runs."))
    model = resolve_model(tiny_model_dir)
    model.meta = GraphMeta(**{**model.meta.to_dict(), "eos_id": 7999, "pad_id": 7998})
    with Translator(model) as tr:
        assert (tr.tokenizer.eos_id, tr.tokenizer.pad_id) == (7999, 7998)


# ------------------------------------------------------------ Lin et al.'s Integer Transformer (issue 13, item 4)
def _lin_config():
    import dataclasses

    return dataclasses.replace(tiny_config(), attention="polynomial", layer_norm="l1")


def _lin_params():
    """tiny_params' spread-out weights, plus the polynomial attentions' b and delta (spread out too)."""
    from inc_transformer_mt.model.transformer import param_shapes

    rng = np.random.default_rng(13)
    params = tiny_params()
    for name, shape in param_shapes(_lin_config()).items():
        if name not in params:
            params[name] = np.asarray(rng.normal(0.0, 0.5) if name.endswith("bias") else rng.uniform(0.01, 0.1),
                                      np.float32).reshape(shape)
    return params


@pytest.fixture(scope="module")
def lin_graph_def():
    from inc_transformer_mt.model.export import build_inference_graph

    return build_inference_graph(_lin_params(), _lin_config())


def test_integer_transformer_graph_scores_equal_eager_and_census_names_its_ops(lin_graph_def):
    """Polynomial attention with its masks and the L1 LayerNorm export into the beam-search graph as the model
    trains them (incremental decoder included); the census finds no Softmax and every PolyAttention."""
    from inc_transformer_mt.data.tokenizer import Tokenizer
    from inc_transformer_mt.model.analysis import op_census
    from inc_transformer_mt.passes.integer_ops import layer_norm_parts, poly_attention_parts

    tok = Tokenizer(SPM)
    batch = pad_batch(tok.encode_batch(["A dog runs.", "Two men are talking in a small room."]))
    ids, scores = run_graph(lin_graph_def, batch)
    for i in range(2):
        assert scores[i] == pytest.approx(eager_sequence_score(_lin_params(), _lin_config(), batch[i], ids[i]),
                                          rel=1e-4, abs=1e-4)
    cfg = _lin_config()
    ops = op_census(lin_graph_def).to_dict()["ops"]
    enc, dec = cfg.num_encoder_layers, cfg.num_decoder_layers
    assert "Softmax" not in ops and "Rsqrt" not in {n.op for n in lin_graph_def.node}
    assert ops["PolyAttention"] == {"outside_loop": enc, "inside_loop": 2 * dec, "total": enc + 2 * dec}
    parts = poly_attention_parts(lin_graph_def)
    assert len(parts) == enc + 2 * dec and all(not isinstance(p, str) and p.degree == 2 for p in parts.values())
    lns = layer_norm_parts(lin_graph_def)
    assert len(lns) == 2 * enc + 3 * dec + 2 and all(not isinstance(p, str) and p.norm == "l1" for p in lns.values())


def test_integer_transformer_integer_ops_run_inside_the_decode_loop(lin_graph_def):
    """Every PolyAttention and LayerNorm replaced (loop frames included): the graph still translates, close to
    the float one (the first tokens agree)."""
    from inc_transformer_mt.data.tokenizer import Tokenizer
    from inc_transformer_mt.model.analysis import op_precision_census
    from inc_transformer_mt.passes.eight_bit import apply_eight_bit, watched_tensors
    from inc_transformer_mt.passes.integer_ops import layer_norm_parts, poly_attention_parts

    poly = {s: "PolyAttention" for s in poly_attention_parts(lin_graph_def)}
    lns = {s: "LayerNorm" for s in layer_norm_parts(lin_graph_def)}
    extra, masked = watched_tensors(lin_graph_def, {**poly, **lns})
    assert len(masked) == len(poly)
    # generous ranges stand in for calibration: logits within +-40, the residual stream within +-60
    ranges = {t: ((-40.0, 40.0) if t in masked else (-60.0, 60.0)) for ts in extra.values() for t in ts}
    new, _ = apply_eight_bit(lin_graph_def, {**poly, **lns}, ranges, ranges)
    census = op_precision_census(new)
    assert sum(census["PolyAttention"]["integer"].values()) == len(poly)
    assert sum(census["LayerNorm"]["integer"].values()) == len(lns)
    batch = pad_batch(Tokenizer(SPM).encode_batch(["A dog runs.", "Two men are talking in a small room."]))
    want, _ = run_graph(lin_graph_def, batch)
    got, _ = run_graph(new, batch)
    assert got.shape[0] == 2 and (got[:, :2] == want[:, :2]).all()
