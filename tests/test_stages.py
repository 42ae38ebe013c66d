"""Tune stages that need no TensorFlow, tested alone: the quantization plan and the baseline cache."""

from __future__ import annotations

import json

import pytest

from inc_transformer_mt.errors import UserError
from inc_transformer_mt.recipe.schema import Recipe
from inc_transformer_mt.tuning.stages import _read_cached_hyps, plan_quantization

pytestmark = pytest.mark.unit

MATMULS = ["dec/layer_0/ffn/MatMul", "dec/layer_0/self/q/MatMul", "enc/layer_0/ffn/MatMul", "logits/MatMul"]


def _recipe(rules):
    return Recipe.model_validate({"model": {"path": "m"}, "quantization": {"rules": rules},
                                  "data": {"calibration": {"split": "val", "start": 900, "size": 8},
                                           "tuning": {"split": "val", "start": 0, "size": 10}}})


def test_rules_apply_in_order_and_later_ones_win():
    plan = plan_quantization(_recipe([{"op_type": "MatMul", "dtype": "int8"},
                                      {"op_name": "^dec/.*$", "dtype": "fp32"},
                                      {"op_name": "^dec/layer_0/ffn/MatMul$", "dtype": "int8"}]), MATMULS)
    assert plan.forced_fp32 == ["dec/layer_0/self/q/MatMul"]
    assert plan.candidates == ["dec/layer_0/ffn/MatMul", "enc/layer_0/ffn/MatMul", "logits/MatMul"]


def test_rules_that_leave_nothing_in_int8_are_an_error():
    with pytest.raises(UserError, match="quantization.rules"):
        plan_quantization(_recipe([{"op_type": "MatMul", "dtype": "fp32"}]), MATMULS)


@pytest.mark.parametrize("content", ['{"hyps": []}', '{"hyps": [1, 2]}', "[]", "{", '{"other": 1}',
                                     '{"hyps": ["a", "b", "c"]}'])
def test_a_wrong_baseline_cache_is_ignored(tmp_path, content):
    path = tmp_path / "c.json"
    path.write_text(content)
    assert _read_cached_hyps(path, expected=2) is None


def test_a_right_baseline_cache_is_read(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"hyps": ["a", "b"]}))
    assert _read_cached_hyps(path, expected=2) == ["a", "b"]
    assert _read_cached_hyps(tmp_path / "missing.json", expected=2) is None
