"""The fallback search with scripted BLEU scores: order, stopping rules, failure, time budget."""

from __future__ import annotations

import pytest

from inc_transformer_mt.quant.sensitivity import Sensitivity, rank_units, unit_of, units
from inc_transformer_mt.tuning.tuner import Criterion, Tuner

pytestmark = pytest.mark.unit

OPS = [f"enc/layer_{i}/{part}/MatMul" for i in range(2) for part in ("attn", "ffn")] + ["dec/logits/MatMul"]


class Script:
    """quantize/evaluate/rank stand-ins: scores come from a fixed list, calls are recorded."""

    def __init__(self, scores, ranking=("enc/layer_1/ffn", "dec/logits", "enc/layer_0/attn",
                                        "enc/layer_1/attn", "enc/layer_0/ffn"), clock_step=0.0):
        self.scores = list(scores)
        self.quantized: list[list[str]] = []
        self.ranked = 0
        self.ranking = ranking
        self.now = 0.0
        self.step = clock_step

    def quantize(self, fp32_ops):
        self.quantized.append(list(fp32_ops))
        self.now += self.step
        return ("model", len(fp32_ops)), len(OPS) - len(fp32_ops), None, "qdq"

    def evaluate(self, model):
        return self.scores.pop(0)

    def rank(self):
        self.ranked += 1
        unit_ops = units(OPS)
        return [Sensitivity(u, unit_ops[u], 10.0 - i, 0.0) for i, u in enumerate(self.ranking)]

    def clock(self):
        return self.now


def tuner(script, **kw):
    args = dict(baseline=40.0, criterion=Criterion("absolute", 0.5), quantize=script.quantize,
                evaluate=script.evaluate, rank=script.rank, candidate_ops=OPS, clock=script.clock)
    args.update(kw)
    return Tuner(**args)


def test_stops_at_first_passing_trial_without_ranking():
    s = Script([39.6, 0.0])
    out = tuner(s).run()
    assert out.passed and out.best.index == 1 and len(out.trials) == 1
    assert s.ranked == 0 and s.quantized == [[]]
    assert out.trials[0].drop == pytest.approx(0.4)


def test_fallback_follows_the_measured_ranking_cumulatively():
    s = Script([38.0, 39.0, 39.4, 39.9])
    out = tuner(s).run()
    assert s.ranked == 1
    assert [t.fp32_units for t in out.trials] == [[], ["enc/layer_1/ffn"], ["enc/layer_1/ffn", "dec/logits"],
                                                  ["enc/layer_1/ffn", "dec/logits", "enc/layer_0/attn"]]
    assert s.quantized[1] == ["enc/layer_1/ffn/MatMul"]
    assert s.quantized[2] == ["dec/logits/MatMul", "enc/layer_1/ffn/MatMul"]
    assert out.best.index == 4 and out.best.passed
    assert all(not t.passed for t in out.trials[:3])
    assert out.best_model == ("model", 3)


def test_nothing_passes_reports_failure_and_no_model():
    s = Script([30.0] * 10)
    out = tuner(s).run()
    assert not out.passed and out.best is None and out.best_model is None
    # 1 all-INT8 trial + 4 fallbacks (the 5th would leave nothing in INT8, which is not tried)
    assert len(out.trials) == 5
    assert out.stop_reason == "no configuration left to try"


def test_max_trials_and_no_fallback():
    s = Script([30.0] * 10)
    out = tuner(s, max_trials=2).run()
    assert len(out.trials) == 2 and "max_trials" in out.stop_reason and not out.passed
    s = Script([30.0] * 10)
    out = tuner(s, fallback="none").run()
    assert len(out.trials) == 1 and s.ranked == 0 and not out.passed


def test_time_budget_stops_before_a_trial_that_would_not_fit():
    s = Script([30.0] * 10, clock_step=100.0)  # each trial takes 100 s
    out = tuner(s, time_budget_s=250.0).run()
    assert len(out.trials) == 2  # after 200 s, a third 100 s trial would pass 250 s
    assert out.stop_reason.startswith("time budget")


def test_relative_criterion():
    crit = Criterion("relative", 0.01)
    assert crit.allowed_drop(40.0) == pytest.approx(0.4)
    s = Script([39.55, 39.65])
    out = tuner(s, criterion=crit).run()
    assert [t.passed for t in out.trials] == [False, True]


def test_forced_fp32_ops_stay_fp32_in_every_trial_and_duplicates_are_skipped():
    s = Script([30.0, 30.0, 39.9], ranking=("dec/logits", "enc/layer_1/ffn", "enc/layer_0/attn"))
    out = tuner(s, forced_fp32=["dec/logits/MatMul"]).run()
    assert all("dec/logits/MatMul" in q for q in s.quantized)
    # falling back dec/logits adds nothing (already FP32): no duplicate trial
    assert len({tuple(q) for q in s.quantized}) == len(s.quantized)
    assert out.best.fp32_units == ["dec/logits", "enc/layer_1/ffn", "enc/layer_0/attn"]


def test_units_group_by_sublayer():
    assert unit_of("transformer/while/layer_2/self_attention/MatMul_5") == "transformer/while/layer_2/self_attention"
    assert unit_of("transformer/while/logits/MatMul") == "transformer/while/logits"
    assert unit_of("a/layer_0/ffn/MatMul", "op") == "a/layer_0/ffn/MatMul"
    t = iter([0.0, 1.0, 1.0, 3.0])
    ranked = rank_units({"a": ["x"], "b": ["y"]}, lambda ops: {"x": 1.0, "y": 5.0}[ops[0]], lambda: next(t))
    assert [r.unit for r in ranked] == ["b", "a"] and ranked[0].seconds == 2.0
