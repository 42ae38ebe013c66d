"""The accuracy-driven search: quantize, score, fall back the most sensitive units until the criterion holds.

Pure control logic: quantization, scoring and sensitivity measurement are injected, so the search order and
stopping rules are tested with scripted scores. It replaces ``neural_compressor.tensorflow.autotune``, which in
INC 3.10 has no absolute criterion, no op-wise fallback, no time budget, no trial history, can return a
failing model or None, and loses the ITEX backend after the first trial (see docs/design.md).

Trial 1 quantizes every MatMul the recipe allows. If it misses the criterion and the fallback is
"sensitivity", the units are ranked once by measured sensitivity and trial k+1 keeps the k most sensitive
units in FP32 (cumulative, so every trial is a distinct configuration with less INT8 work than the one
before). The first trial within the criterion is the answer: it has the most INT8 work of all passing
configurations of this order. A trial is started only if the time left covers the previous trial's time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from inc_transformer_mt.metrics.criterion import Criterion
from inc_transformer_mt.quant.sensitivity import Sensitivity, fallback_steps

__all__ = ["Criterion", "Trial", "TuneOutcome", "Tuner"]


@dataclass
class Trial:
    index: int
    fp32_units: list[str]
    fp32_ops: list[str]
    int8_ops: int
    int8_flops_share: float | None
    bleu: float
    drop: float
    passed: bool
    quantize_s: float
    evaluate_s: float
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TuneOutcome:
    baseline: float
    criterion: Criterion
    trials: list[Trial] = field(default_factory=list)
    ranking: list[Sensitivity] | None = None
    best: Trial | None = None
    best_model: Any = None
    closest: Trial | None = None  # the highest-scoring trial when none passes
    closest_model: Any = None
    stop_reason: str = ""
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.best is not None


class Tuner:
    """Args:
    baseline: FP32 score on the tuning set.
    criterion: absolute or relative allowed drop.
    quantize: ``fp32_ops -> (model, int8_ops, int8_flops_share, note)``.
    evaluate: ``model -> score``.
    rank: ``() -> [Sensitivity]`` most sensitive first (called once, only when trial 1 fails).
    candidate_ops: the MatMuls the recipe allows in INT8; forced_fp32: the ones its rules keep FP32.
    """

    def __init__(self, *, baseline: float, criterion: Criterion, quantize: Callable[[list[str]], tuple[Any, int, float | None, str]],
                 evaluate: Callable[[Any], float], rank: Callable[[], list[Sensitivity]],
                 candidate_ops: Sequence[str], forced_fp32: Sequence[str] = (), max_trials: int = 20,
                 time_budget_s: float = 900.0, fallback: str = "sensitivity",
                 clock: Callable[[], float] = time.monotonic, log: Callable[[str], None] = lambda s: None):
        self.baseline = baseline
        self.criterion = criterion
        self.quantize = quantize
        self.evaluate = evaluate
        self.rank = rank
        self.candidate_ops = list(candidate_ops)
        self.forced = sorted(set(forced_fp32))
        self.max_trials = max_trials
        self.budget = time_budget_s
        self.fallback = fallback
        self.clock = clock
        self.log = log

    def _configs(self, outcome: TuneOutcome):
        yield [], list(self.forced)
        if self.fallback != "sensitivity":
            return
        outcome.ranking = self.rank()
        for step in fallback_steps(outcome.ranking, self.candidate_ops, self.forced):
            yield step.units, step.fp32_ops

    def run(self) -> TuneOutcome:
        start = self.clock()
        outcome = TuneOutcome(baseline=self.baseline, criterion=self.criterion)
        allowed = self.criterion.allowed_drop(self.baseline)
        last_trial_s = 0.0
        configs = self._configs(outcome)
        outcome.stop_reason = "no configuration left to try"
        while True:
            if len(outcome.trials) >= self.max_trials:
                outcome.stop_reason = f"max_trials ({self.max_trials}) reached"
                break
            elapsed = self.clock() - start
            if outcome.trials and elapsed + last_trial_s > self.budget:
                outcome.stop_reason = (f"time budget: {elapsed:.0f} s used of {self.budget:.0f} s, "
                                       f"a trial takes about {last_trial_s:.0f} s")
                break
            try:
                units, fp32_ops = next(configs)
            except StopIteration:
                break
            t0 = self.clock()
            model, int8_ops, share, note = self.quantize(fp32_ops)
            t1 = self.clock()
            score = float(self.evaluate(model))
            t2 = self.clock()
            drop = self.baseline - score
            passed = drop <= allowed + 1e-9
            trial = Trial(index=len(outcome.trials) + 1, fp32_units=units, fp32_ops=fp32_ops, int8_ops=int8_ops,
                          int8_flops_share=share, bleu=score, drop=drop, passed=passed, quantize_s=t1 - t0,
                          evaluate_s=t2 - t1, note=note)
            outcome.trials.append(trial)
            self.log(f"trial {trial.index}: {len(fp32_ops)} op(s) FP32, {int8_ops} MatMul(s) INT8, BLEU {score:.2f} "
                     f"(drop {drop:+.2f}) {'PASS' if passed else 'fail'}")
            last_trial_s = t2 - t0
            if passed:
                outcome.best, outcome.best_model = trial, model
                outcome.stop_reason = f"trial {trial.index} meets the criterion"
                break
            if outcome.closest is None or score > outcome.closest.bleu:
                outcome.closest, outcome.closest_model = trial, model
            del model
        outcome.seconds = self.clock() - start
        return outcome
