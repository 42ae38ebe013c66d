"""A sacreBLEU ``eval_fn`` for INC's ``autotune``: translate the tuning set with each candidate graph, score it.

INC 3.10's stopping rule is relative only: a trial passes when ``score >= baseline * (1 - tolerable_loss)``.
An absolute criterion ("drop at most 0.5 BLEU") is expressed exactly by returning ``1 + BLEU - BLEU_fp32``
(the FP32 model then scores 1) with ``tolerable_loss = max_drop``: ``1 + BLEU - BLEU_fp32 >= 1 - max_drop``
is ``BLEU_fp32 - BLEU <= max_drop``. A relative criterion returns BLEU itself. :attr:`BleuEval.tolerable_loss`
gives the matching value for ``TuningConfig``.

The FP32 score is computed on the first FP32 call (INC evaluates the FP32 model first) or given up front
(``fp32_bleu``, e.g. from a cache), and every call is recorded in :attr:`BleuEval.records`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from inc_transformer_mt.defaults import MAX_SENTENCES, MAX_TOKENS
from inc_transformer_mt.metrics.criterion import Criterion
from inc_transformer_mt.model.graph import ResolvedModel

__all__ = ["BleuEval", "EvalRecord", "TuningStopped"]

_EPS = 1e-9


class TuningStopped(Exception):
    """Raised from the eval function to end INC's loop early (the time budget cannot cover another trial)."""


@dataclass
class EvalRecord:
    """One evaluation INC asked for (trial 0 is the FP32 model)."""

    trial: int
    bleu: float
    drop: float
    passed: bool
    returned: float  # what INC received
    graph_format: str
    int8_matmuls: int
    matmuls: int
    int8_flops_share: float | None
    started: float
    seconds: float
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _graph_def_of(model):
    gd = getattr(model, "graph_def", model)
    return gd() if callable(gd) else gd


class BleuEval:
    """``eval_fn(model) -> float`` for ``neural_compressor.tensorflow.autotune``.

    Args:
        model: the FP32 model's metadata and tokenizer (the candidate graphs replace its graph).
        source, reference: the tuning sentences.
        criterion: absolute or relative allowed BLEU drop.
        fp32_bleu: the FP32 BLEU if already known (the FP32 call then translates nothing).
        postprocess: applied in place to a copy of each quantized graph before it is run (e.g. the default backend's
            loop-Enter fix); the evaluated graph is kept as :attr:`last_graph`.
        flops: MatMul -> FLOPs, to record each trial's INT8 share of MatMul FLOPs.
        time_budget_s: after a failing trial, :class:`TuningStopped` is raised when the time used plus the
            last trial's time would pass the budget (INC has no time limit of its own).
    """

    def __init__(self, model: ResolvedModel, source: Sequence[str], reference: Sequence[str], *,
                 criterion: Criterion | None = None, fp32_bleu: float | None = None, max_tokens: int = MAX_TOKENS,
                 max_sentences: int = MAX_SENTENCES, postprocess: Callable[[Any], Any] | None = None,
                 flops: Mapping[str, float] | None = None, time_budget_s: float | None = None,
                 clock: Callable[[], float] = time.perf_counter, log: Callable[[str], None] = lambda s: None):
        if len(source) != len(reference) or not source:
            raise ValueError("source and reference must be non-empty and of equal length")
        self.model, self.source, self.reference = model, list(source), list(reference)
        self.criterion, self.fp32_bleu = criterion or Criterion(), fp32_bleu
        self.max_tokens, self.max_sentences = max_tokens, max_sentences
        self.postprocess, self.flops = postprocess, dict(flops or {})
        self.time_budget_s, self.clock, self.log = time_budget_s, clock, log
        self.records: list[EvalRecord] = []
        self.last_graph = None  # the last quantized graph evaluated (as run: after ``postprocess``)
        self.closest_graph = None  # the quantized graph with the highest BLEU so far
        self._closest_bleu = float("-inf")
        self.start = self._last_end = clock()

    @property
    def tolerable_loss(self) -> float:
        """``TuningConfig.tolerable_loss`` that makes INC stop exactly when the criterion holds."""
        return self.criterion.max_drop + _EPS

    def score_of(self, bleu: float) -> float:
        """What INC receives for a BLEU score."""
        if self.criterion.type == "absolute":
            return 1.0 + bleu - float(self.fp32_bleu)
        return bleu

    def bleu(self, graph_def) -> float:
        """sacreBLEU of ``graph_def``'s translations of the tuning set."""
        from inc_transformer_mt.inference.translate import Translator
        from inc_transformer_mt.metrics.bleu import score as bleu_score

        with Translator(self.model, graph_def=graph_def) as tr:
            hyps = tr.translate(self.source, max_tokens=self.max_tokens, max_sentences=self.max_sentences,
                                source_name="tuning source", progress=False)
        return bleu_score(hyps, self.reference).score

    def as_run(self, graph_def):
        """The graph as this eval function runs it: a quantized graph is copied and ``postprocess``-ed."""
        from inc_transformer_mt.model.analysis import graph_format

        if self.postprocess is None or graph_format(graph_def) == "fp32":
            return graph_def
        gd = copy.deepcopy(graph_def)
        self.postprocess(gd)
        return gd

    def __call__(self, model) -> float:
        from inc_transformer_mt.model.analysis import graph_format, int8_matmul_count, matmul_precision

        started = self.clock()
        gd = self.as_run(_graph_def_of(model))
        fmt = graph_format(gd)
        trial = 0 if fmt == "fp32" else 1 + sum(r.trial > 0 for r in self.records)
        cached = fmt == "fp32" and self.fp32_bleu is not None
        bleu = float(self.fp32_bleu) if cached else self.bleu(gd)
        if self.fp32_bleu is None:
            self.fp32_bleu = bleu
        n8, total = int8_matmul_count(gd)
        share = None
        if self.flops and fmt != "fp32":
            prec = matmul_precision(gd, self.flops)
            share = sum(f for mm, f in self.flops.items() if prec[mm] == "int8") / (sum(self.flops.values()) or 1.0)
        drop = float(self.fp32_bleu) - bleu
        passed = self.criterion.passes(float(self.fp32_bleu), bleu)
        ended = self.clock()
        record = EvalRecord(trial=trial, bleu=bleu, drop=drop, passed=passed, returned=self.score_of(bleu),
                            graph_format=fmt, int8_matmuls=n8, matmuls=total, int8_flops_share=share,
                            started=started - self.start, seconds=ended - started, cached=cached)
        self.records.append(record)
        if trial > 0:
            if bleu > self._closest_bleu:
                self.closest_graph, self._closest_bleu = gd, bleu
            self.last_graph = gd
            self.log(f"INC trial {trial}: {n8}/{total} MatMuls INT8, BLEU {bleu:.2f} (drop {drop:+.2f}) "
                     f"{'PASS' if passed else 'fail'}")
            trial_s, self._last_end = ended - self._last_end, ended  # quantize + evaluate, as INC ran them
            if not passed:
                self._check_budget(trial_s)
        return record.returned

    def _check_budget(self, trial_s: float) -> None:
        """TuningStopped when the time used plus one more trial like the last would pass the budget."""
        if self.time_budget_s is None:
            return
        used = self.clock() - self.start
        if used + trial_s > self.time_budget_s:
            raise TuningStopped(f"time budget: {used:.0f} s used of {self.time_budget_s:.0f} s, "
                                f"a trial takes about {trial_s:.0f} s")
