"""``tuning.engine: inc``: the search stage driven by INC's own ``autotune`` with this package's plug-ins.

Same inputs and same :class:`~inc_transformer_mt.tuning.stages.Search` outcome as the ``own`` engine, so the
report, the passes, the held-out score and the manifest are written the same way. What runs:

1. ``autotune`` with one config (every planned MatMul INT8), :class:`~inc_transformer_mt.inc.BleuEval` as
   ``eval_fn`` (FP32 score from the cached baseline, absolute drop expressed in ``tolerable_loss``), the KL
   ranges through :func:`~inc_transformer_mt.inc.kl_ranges` (verified), the backend kept by
   :func:`~inc_transformer_mt.inc.keep_backend`, length-sorted calibration batches;
2. if that trial misses the criterion and the recipe's fallback is ``sensitivity``: units ranked by measured
   sensitivity (as the own engine does), then ``autotune`` again over
   :func:`~inc_transformer_mt.inc.fallback_config_set` -- INC stops at the first passing config.

INC returns its best model even when it fails the goal; the outcome is decided from the recorded trials, and
the model kept is the graph the eval function ran (checked against INC's returned model).
"""

from __future__ import annotations

import time

from inc_transformer_mt.errors import RuntimeFailure
from inc_transformer_mt.tuning.stages import (
    Baseline,
    Calibration,
    Log,
    QuantizedGraph,
    Search,
    TuneInputs,
    _TrialRunner,
)
from inc_transformer_mt.tuning.tuner import Trial, TuneOutcome

__all__ = ["search_inc"]


def _autotune(prepared, inputs: TuneInputs, configs: list, evaluator, cal: Calibration):
    from neural_compressor.tensorflow import autotune
    from neural_compressor.tensorflow.quantization import TuningConfig

    from inc_transformer_mt.inc import CalibrationLoader, TuningStopped, inc_model

    meta = inputs.model.meta
    model = inc_model(prepared, [meta.input_tensor], [meta.output_tensor] + ([meta.score_tensor]
                                                                          if meta.score_tensor else []))
    config = TuningConfig(config_set=configs, tolerable_loss=evaluator.tolerable_loss, max_trials=len(configs))
    try:
        return autotune(model, config, eval_fn=evaluator, calib_dataloader=CalibrationLoader(cal.batches),
                        calib_iteration=len(cal.batches)), None
    except TuningStopped as stop:
        return None, str(stop)


def search_inc(inputs: TuneInputs, fp32, baseline: Baseline, cal: Calibration, plan, log: Log) -> Search:
    """Stage 5 with INC's ``autotune`` (see the module docstring)."""
    from inc_transformer_mt.inc import (
        BleuEval,
        fallback_config_set,
        finalize_model,
        inc_tempdir,
        keep_backend,
        kl_ranges,
        prepare_model,
        quiet_inc,
    )
    from inc_transformer_mt.model.analysis import matmul_precision

    r = inputs.recipe
    t, kl = r.tuning, r.calibration.method == "kl"
    start = time.perf_counter()
    evaluator = BleuEval(inputs.model, inputs.tuning.source, inputs.tuning.reference, criterion=inputs.criterion,
                         fp32_bleu=baseline.bleu, max_tokens=r.data.max_tokens, max_sentences=r.data.max_sentences,
                         postprocess=lambda gd: finalize_model(gd, r.backend), flops=cal.flops,
                         time_budget_s=t.time_budget_min * 60.0, log=log)
    prepared, _ = prepare_model(fp32.graph_def, r.backend, plan.forced_fp32)
    configs, steps = fallback_config_set([], plan.candidates, plan.forced_fp32, include_all_int8=True,
                                         weight_granularity=r.quantization.weight_granularity)
    outcome = TuneOutcome(baseline=baseline.bleu, criterion=inputs.criterion)
    tried: list = []
    with inc_tempdir(), quiet_inc(), keep_backend(r.backend), \
            kl_ranges(cal.matmul_range if kl else {}, cal.requant_range if kl else None,
                      expect=plan.candidates if kl else (), verify=kl) as hook:
        returned, stop = _autotune(prepared, inputs, configs, evaluator, cal)
        tried += steps
        passed = any(rec.passed for rec in evaluator.records if rec.trial > 0)
        if not passed and stop is None and t.fallback == "sensitivity" and t.max_trials > 1:
            runner = _TrialRunner(inputs, fp32, baseline, cal, plan, log)
            outcome.ranking = runner.rank()
            configs, steps = fallback_config_set(outcome.ranking, plan.candidates, plan.forced_fp32,
                                                 weight_granularity=r.quantization.weight_granularity,
                                                 max_configs=t.max_trials - 1)
            if configs:
                returned, stop = _autotune(prepared, inputs, configs, evaluator, cal)
                tried += steps
    records = [rec for rec in evaluator.records if rec.trial > 0]
    previous_end = 0.0
    for rec, step in zip(records, tried, strict=False):
        outcome.trials.append(Trial(index=rec.trial, fp32_units=step.units, fp32_ops=step.fp32_ops,
                                    int8_ops=rec.int8_matmuls, int8_flops_share=rec.int8_flops_share, bleu=rec.bleu,
                                    drop=rec.drop, passed=rec.passed,
                                    # INC does not time its trials: the gap since the previous evaluation
                                    quantize_s=max(rec.started - previous_end, 0.0),
                                    evaluate_s=rec.seconds, note=f"inc autotune, {rec.graph_format}"))
        previous_end = rec.started + rec.seconds
    passing = [tr for tr in outcome.trials if tr.passed]

    def graph(gd) -> QuantizedGraph:
        enter_fixes = sum(n.name.endswith("/inc_mt_to_q") for n in gd.node)
        return QuantizedGraph(gd, matmul_precision(gd, cal.matmuls), len(hook.replaced), enter_fixes)

    if passing:
        outcome.best = passing[0]
        chosen = evaluator.last_graph
        if returned is None or matmul_precision(evaluator.as_run(returned.graph_def), cal.matmuls) != \
                matmul_precision(chosen, cal.matmuls):
            raise RuntimeFailure("INC's autotune returned a different model than the passing trial it evaluated")
        outcome.best_model = graph(chosen)
        outcome.stop_reason = f"trial {outcome.best.index} meets the criterion (INC autotune)"
    elif outcome.trials:
        outcome.closest = max(outcome.trials, key=lambda tr: tr.bleu)
        outcome.closest_model = graph(evaluator.closest_graph)
        outcome.stop_reason = stop or "no configuration left to try (INC autotune)"
    else:
        outcome.stop_reason = stop or "INC ran no trial"
    outcome.seconds = time.perf_counter() - start
    return Search(outcome=outcome)
