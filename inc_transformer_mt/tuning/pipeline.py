"""``inc-mt tune RECIPE``: recipe -> calibrated, accuracy-tuned INT8 graph, report, resolved recipe.

One straight line of the stages in :mod:`inc_transformer_mt.tuning.stages`: validate the recipe and the output
directory (before any work); load the model and the three sentence sets; resolve the recipe's rules against
the graph into a quantization plan (a rule that matches nothing stops here); score FP32 on the tuning set
(cached); collect activation statistics over the calibration sentences (loop steps included) and choose
ranges; search (engine ``own``: INC ``quantize_model`` per trial, BLEU
per trial, sensitivity fallback; engine ``inc``: INC's ``autotune`` with the plug-ins); run the recipe's graph passes; score the held-out set; build the typed
report; publish everything atomically. Passed: exit 0 with a model; failed: exit 1, report only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from inc_transformer_mt.errors import EXIT_CHECK_FAILED, EXIT_OK
from inc_transformer_mt.report.tune_report import TuneReport
from inc_transformer_mt.tuning import stages
from inc_transformer_mt.tuning.publish import check_output_dir, output_lock, publish

__all__ = ["TuneResult", "run_tune"]


@dataclass
class TuneResult:
    report: TuneReport
    out_dir: Path

    @property
    def passed(self) -> bool:
        return self.report.passed

    @property
    def status(self) -> str:
        return self.report.status

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.passed else EXIT_CHECK_FAILED


def run_tune(recipe_path: str | Path, overrides: Sequence[str] = (), *,
             log: Callable[[str], None] = print) -> TuneResult:
    """Tune the recipe's model to INT8 (see the module docstring); the result says whether it passed."""
    recipe_path = Path(recipe_path)
    recipe = stages.load_recipe_file(recipe_path, overrides)
    with output_lock(Path(recipe.outputs.dir)):
        return _tune_locked(recipe_path, recipe, overrides, log)


def _tune_locked(recipe_path: Path, recipe, overrides: Sequence[str], log: Callable[[str], None]) -> TuneResult:
    from inc_transformer_mt.inference.translate import Translator

    check_output_dir(Path(recipe.outputs.dir), recipe.outputs.overwrite, protected=Path(recipe.model.path))
    clock = _Walls()
    inputs = stages.load_inputs(recipe_path, recipe)
    with Translator(inputs.model) as fp32:
        plan = stages.plan_quantization(recipe_path, recipe, fp32.graph_def, overrides)
        baseline = clock("fp32_baseline_s", stages.fp32_baseline, inputs, fp32, log)
        cal = clock("calibration_s", stages.calibrate, inputs, fp32, log, plan)
        found = clock("tuning_s", _search(recipe.tuning.engine), inputs, fp32, baseline, cal, plan, log)
        trial, graph = found.chosen
        final = graph.graph_def if graph is not None else None
        int8 = passes = heldout = None
        bleu = trial.bleu if trial is not None else 0.0
        if found.outcome.passed and recipe.passes:
            outcome = clock("passes_s", stages.run_passes, inputs, final, trial.bleu, baseline, log)
            passes, final, bleu = outcome.info, outcome.graph_def, outcome.bleu
        if trial is not None:
            int8 = stages.int8_info(trial, graph, final, bleu, baseline.bleu - bleu, len(cal.matmuls))
            label = "tuned" if found.outcome.passed else f"closest trial {trial.index} (rejected)"
            heldout = clock("heldout_s", stages.score_heldout, inputs, fp32, final, label)
    report = stages.build_report(inputs, fp32, baseline, cal, found, plan=stages.plan_info(plan, recipe.tuning.engine), int8=int8, passes=passes, heldout=heldout,
                                 walls=clock.total())
    report, out_dir = publish(report, final, inputs.model, recipe, recipe_path)
    return TuneResult(report=report, out_dir=out_dir)


def _search(engine: str):
    """The search stage of the recipe's ``tuning.engine``."""
    if engine == "inc":
        from inc_transformer_mt.tuning.inc_engine import search_inc

        return search_inc
    return stages.search


class _Walls:
    """Runs a stage and records its wall time under a name."""

    def __init__(self) -> None:
        self.start, self.walls = time.perf_counter(), {}

    def __call__(self, name: str, stage, *args):
        t = time.perf_counter()
        try:
            return stage(*args)
        finally:
            self.walls[name] = time.perf_counter() - t

    def total(self) -> dict[str, float]:
        return {**self.walls, "total_s": time.perf_counter() - self.start}
