"""The exact rewrites that let INC's default backend quantize the in-loop FFN-1 and the tied logits MatMul."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_graph

pytestmark = pytest.mark.unit

LOGITS = "transformer/while/logits/MatMul"
FFN1 = ["transformer/while/layer_0/ffn/MatMul", "transformer/while/layer_1/ffn/MatMul"]


@pytest.fixture(scope="module")
def tiny_graph(tiny_model_dir):
    from inc_transformer_mt.model.graph import load_graph_def, resolve_model

    return load_graph_def(resolve_model(str(tiny_model_dir)).graph_path)


BATCH = np.array([[5, 9, 33, 410, 2], [7, 12, 2, 0, 0]], np.int32)


def test_the_rewritten_fp32_graph_computes_bitwise_the_same(tiny_graph):
    from inc_transformer_mt.quant.default_backend import prepare_default_backend

    prepared, prep = prepare_default_backend(tiny_graph)
    assert prep.untransposed == [LOGITS]
    assert sorted(prep.relu_split) == FFN1  # only where the weight enters the loop: not the encoder's FFN-1
    by = {n.name: n for n in prepared.node}
    assert not by[LOGITS].attr["transpose_b"].b
    assert [by[mm.removesuffix("MatMul") + "Relu"].op for mm in FFN1] == ["Maximum", "Maximum"]
    ids, scores = run_graph(tiny_graph, BATCH)
    ids2, scores2 = run_graph(prepared, BATCH)
    np.testing.assert_array_equal(ids, ids2)
    np.testing.assert_array_equal(scores, scores2)


def test_the_embedding_lookup_keeps_the_original_weight(tiny_graph):
    from inc_transformer_mt.model.analysis import source_node
    from inc_transformer_mt.quant.default_backend import prepare_default_backend

    prepared, _ = prepare_default_backend(tiny_graph)
    by = {n.name: n for n in prepared.node}
    lookup = by["transformer/while/embedding/GatherV2"]
    assert source_node(by, lookup.input[0]).name == "weights/embedding"
    logits_weight = source_node(by, by[LOGITS].input[1])
    assert logits_weight.name != "weights/embedding"
    shape = [d.size for d in logits_weight.attr["value"].tensor.tensor_shape.dim]
    assert shape == [32, 8000]  # [d_model, vocab]: W^T


def test_matmuls_kept_fp32_are_not_rewritten_and_relus_come_back(tiny_graph):
    from inc_transformer_mt.quant.default_backend import prepare_default_backend, restore_relus

    prepared, prep = prepare_default_backend(tiny_graph, fp32_ops=[LOGITS, FFN1[0]])
    assert prep.untransposed == [] and prep.relu_split == [FFN1[1]]
    assert restore_relus(prepared) == 1
    ops = lambda gd: sorted(n.op for n in gd.node)
    assert ops(prepared) == ops(tiny_graph)
