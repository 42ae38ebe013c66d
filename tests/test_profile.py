"""The per-op breakdown: categories of executed ops, sums, and the CLI on the tiny model (no timed assertions)."""

from __future__ import annotations

import json

import pytest

from inc_transformer_mt.bench.profile import CATEGORIES, categorize


@pytest.mark.unit
@pytest.mark.parametrize("op, name, expected", [
    ("MatMul", "transformer/encode/layer_0/ffn/MatMul", "MatMul"),
    ("_FusedMatMul", "x/MatMul", "MatMul"),
    ("QuantizedMatMulWithBiasAndDequantize", "x/MatMul_eightbit_requantize", "MatMul"),
    ("OneDnnGraphCPU", "transformer/while/layer_0/ffn/MatMul_1_LLGA", "INT8 MatMul partitions (ITEX oneDNN Graph, Q/DQ fused)"),
    ("_ITEXBatchMatMulV2", "x/MatMul_3", "BatchMatMulV2"),
    ("QuantizeV2", "x_eightbit_quantize", "Quantize/Dequantize"),
    ("_ITEXQuantizeV2", "x", "Quantize/Dequantize"),
    ("Dequantize", "x", "Quantize/Dequantize"),
    ("GatherNd", "transformer/while/GatherNd_3", "GatherNd (beam cache reorder)"),
    ("GatherV2", "transformer/while/GatherNd_3/inc_mt_gather/gather", "GatherNd (beam cache reorder)"),
    ("Reshape", "transformer/while/GatherNd_3/inc_mt_gather/flat_params", "GatherNd (beam cache reorder)"),
    ("_ITEXSoftmax", "x/Softmax", "Softmax"),
    ("RightShift", "x/attention_weights/integer_softmax/RightShift", "Softmax"),
    ("FloorDiv", "x/layer_norm/integer_layer_norm/FloorDiv", "LayerNorm"),
    ("Relu", "x/self_attention/polynomial_attention/Relu", "Softmax"),
    ("FloorDiv", "x/polynomial_attention/integer_poly_attention/FloorDiv", "Softmax"),
    ("_ITEXQuantizedBatchMatMulV2AndDequantize", "x/MatMul_3", "BatchMatMulV2"),
    ("LogSoftmax", "x", "beam search top-k + log-softmax"),
    ("TopKV2", "x", "beam search top-k + log-softmax"),
    ("_ITEXMklLayerNorm", "x", "LayerNorm"),
    ("Mean", "transformer/encode/layer_0/self_attention/layer_norm/Mean", "LayerNorm"),
    ("AddV2", "transformer/encode/add", "rest"),
])
def test_categories(op, name, expected):
    assert categorize(op, name) == expected
    assert expected in CATEGORIES


@pytest.mark.tf
def test_profile_sums_every_executed_op(tiny_model_dir, capsys):
    from inc_transformer_mt.bench.profile import profile_translation
    from inc_transformer_mt.cli.main import main
    from inc_transformer_mt.inference.translate import Translator
    from inc_transformer_mt.model.graph import resolve_model

    with Translator(resolve_model(tiny_model_dir)) as tr:
        prof = profile_translation(tr, ["A dog runs.", "Two men talk on a bench near the water."], "tiny")
    assert prof.sentences == 2 and prof.wall_s > 0
    assert prof.total_us == pytest.approx(sum(prof.op_types.values()))
    shares = prof.shares()
    assert sum(shares.values()) == pytest.approx(1.0)
    for category in ("MatMul", "GatherNd (beam cache reorder)", "Softmax", "LayerNorm", "BatchMatMulV2"):
        assert prof.op_us.get(category, 0) > 0, category  # all present in the exported beam-search graph
    code = main(["profile", f"tiny={tiny_model_dir}", "--limit", "3", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out[0]["label"] == "tiny" and set(out[0]["share"]) == set(CATEGORIES)


@pytest.mark.tf
@pytest.mark.slow
def test_ops_per_decode_step_counts_the_loop_and_sees_the_passes(tiny_model_dir):
    """One sentence, one batch: LoopCond runs once per decode step plus the final test (the output has one
    token per step); the graph with the passes runs fewer ops per step."""
    from inc_transformer_mt.bench.profile import profile_translation
    from inc_transformer_mt.defaults import DEFAULT_PASSES
    from inc_transformer_mt.inference.translate import Translator
    from inc_transformer_mt.model.graph import load_graph_def, resolve_model
    from inc_transformer_mt.passes import apply_passes, step_nodes

    model = resolve_model(tiny_model_dir)
    graph = load_graph_def(model.graph_path)
    new, _ = apply_passes(graph, DEFAULT_PASSES)
    profiles = []
    for g in (graph, new):
        with Translator(model, graph_def=g) as tr:
            profiles.append(profile_translation(tr, ["A dog runs in the park."], "x"))
            steps = tr.run_batch(tr.encode(["A dog runs in the park."])).shape[1]
    raw, passed = profiles
    assert raw.decode_steps == passed.decode_steps == steps + 1
    assert 0 < raw.ops_per_step <= step_nodes(graph) * (steps + 1) / steps  # Grappler may fold some
    assert passed.ops_per_step < raw.ops_per_step
