"""Tune stages tested alone: the quantization plan (rules resolved against a graph) and the baseline cache."""

from __future__ import annotations

import json

import pytest

from inc_transformer_mt.errors import UserError
from inc_transformer_mt.quant.plan import resolve_plan
from inc_transformer_mt.recipe.schema import Recipe
from inc_transformer_mt.tuning.stages import _read_cached_hyps

pytestmark = pytest.mark.unit

MATMULS = ["dec/layer_0/ffn/MatMul", "dec/layer_0/self/q/MatMul", "enc/layer_0/ffn/MatMul", "logits/MatMul"]
OPS = {**dict.fromkeys(MATMULS, "MatMul"), "dec/layer_0/self/Softmax": "Softmax",
       "dec/layer_0/self/MatMul_3": "BatchMatMulV2", "dec/layer_0/layer_norm": "LayerNorm"}


def _rules(rules):
    return Recipe.model_validate({"model": {"path": "m"}, "quantization": {"rules": rules},
                                  "data": {"calibration": {"split": "val", "start": 900, "size": 8},
                                           "tuning": {"split": "val", "start": 0, "size": 10}}}).quantization.rules


def test_rules_apply_in_order_and_later_ones_win():
    plan = resolve_plan(_rules([{"op_type": "MatMul", "dtype": "int8"},
                                {"op_name": "^dec/.*$", "dtype": "fp32"},
                                {"op_name": "^dec/layer_0/ffn/MatMul$", "dtype": "int8"}]), OPS)
    assert plan.forced_fp32 == ["dec/layer_0/self/q/MatMul"]
    assert plan.candidates == ["dec/layer_0/ffn/MatMul", "enc/layer_0/ffn/MatMul", "logits/MatMul"]
    assert [r.matched for r in plan.rules] == [{"MatMul": 4}, {"MatMul": 2, "Softmax": 1, "BatchMatMulV2": 1,
                                                                "LayerNorm": 1}, {"MatMul": 1}]
    assert plan.by_type() == {"MatMul": {"int8": 3, "fp32": 1}, "Softmax": {"fp32": 1},
                              "BatchMatMulV2": {"fp32": 1}, "LayerNorm": {"fp32": 1}}


def test_rules_that_leave_nothing_in_int8_are_an_error():
    with pytest.raises(UserError, match="quantization.rules"):
        resolve_plan(_rules([{"op_type": "MatMul", "dtype": "fp32"}]), OPS)


@pytest.mark.parametrize("rule", [{"op_type": "GatherNd", "dtype": "fp32"},
                                  {"op_name": "^dec/layer_9/.*$", "dtype": "fp32"},
                                  {"op_name": "^enc/layer_0/ffn/MatMul_1$", "dtype": "fp32"}])
def test_a_rule_that_matches_nothing_is_an_error_naming_it_and_its_line(rule):
    with pytest.raises(UserError, match=r"^r\.yaml:17: quantization\.rules\[1\] \(.*\) matches no op in the model"):
        resolve_plan(_rules([{"op_type": "MatMul", "dtype": "int8"}, rule]), OPS, rule_lines={0: 16, 1: 17},
                     source="r.yaml")


def test_int8_for_an_op_int8_cannot_run_is_refused_even_through_a_name_pattern():
    # attention BatchMatMulV2 may be int8 (the package's INT8 attention); the Softmax the pattern reaches may not
    with pytest.raises(UserError, match=r"selects Softmax op\(s\).*Softmax has no int8 kernel; use dtype integer"):
        resolve_plan(_rules([{"op_name": "^dec/layer_0/self/.*$", "dtype": "int8"}]), OPS)


def test_only_calibrated_matmuls_can_be_quantized():
    plan = resolve_plan(_rules([{"op_type": "MatMul", "dtype": "int8"}]), OPS, matmuls=MATMULS[:2])
    assert plan.candidates == MATMULS[:2]


def test_the_tune_stage_names_the_recipe_line(tmp_path, tiny_model_dir):
    """End to end through the recipe file: the plan is resolved on the real graph, before any work."""
    from inc_transformer_mt.model.graph import load_graph_def, resolve_model
    from inc_transformer_mt.recipe import load_recipe
    from inc_transformer_mt.tuning.stages import plan_quantization

    path = tmp_path / "r.yaml"
    path.write_text(f"""model: {{path: {tiny_model_dir}}}
data:
  calibration: {{split: val, start: 900, size: 8}}
  tuning: {{split: val, start: 0, size: 10}}
quantization:
  rules:
    - {{op_type: MatMul, dtype: int8}}
    - {{op_type: Softmax, dtype: fp32}}
    - {{op_name: '^transformer/while/layer_7/.*$', dtype: fp32}}
""")
    gd = load_graph_def(resolve_model(str(tiny_model_dir)).graph_path)
    with pytest.raises(UserError, match=rf"^{path}:9: quantization\.rules\[2\]"):
        plan_quantization(path, load_recipe(path), gd)
    recipe = load_recipe(path, [("quantization.rules=[{op_type: MatMul, dtype: int8}, "
                                        "{op_type: LayerNorm, dtype: fp32}]")])
    plan = plan_quantization(path, recipe, gd, ["quantization.rules=..."])
    assert plan.by_type()["LayerNorm"] == {"fp32": 12}  # 2 encoder layers x 2 + 2 decoder x 3 + 2 final norms
    assert len(plan.candidates) == 33


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
