"""The stages of ``inc-mt tune``, each a function with typed inputs and outputs, testable alone.

inputs -> quantization plan -> FP32 baseline -> calibration -> search -> passes -> held-out -> report
(-> publish, in :mod:`inc_transformer_mt.tuning.publish`). :func:`inc_transformer_mt.tuning.pipeline.run_tune`
calls them in that order and nothing else.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from inc_transformer_mt.atomic import atomic_write
from inc_transformer_mt.env import library_versions, machine_info
from inc_transformer_mt.errors import UserError
from inc_transformer_mt.metrics.criterion import Criterion
from inc_transformer_mt.model.graph import ResolvedModel
from inc_transformer_mt.quant.plan import QuantPlan
from inc_transformer_mt.recipe import Recipe, load_recipe, resolve_paths
from inc_transformer_mt.recipe.loader import error_message, key_lines
from inc_transformer_mt.recipe.schema import SplitSpec
from inc_transformer_mt.report.tune_report import (
    CalibrationInfo,
    CriterionInfo,
    HeldoutInfo,
    Int8Info,
    ModelInfo,
    PassesInfo,
    PlanInfo,
    PlanRule,
    PrecisionCount,
    SensitivityRecord,
    SetInfo,
    TrialRecord,
    TuneReport,
)
from inc_transformer_mt.tuning.tuner import TuneOutcome

__all__ = [
    "Baseline",
    "Calibration",
    "Search",
    "TuneInputs",
    "build_report",
    "calibrate",
    "fp32_baseline",
    "load_inputs",
    "plan_quantization",
    "run_passes",
    "score_heldout",
    "search",
]

logger = logging.getLogger(__name__)
Log = Callable[[str], None]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cache_dir() -> Path:
    """Where FP32 baselines are cached (``$INC_MT_CACHE`` or ``~/.cache/inc_transformer_mt``)."""
    return Path(os.environ.get("INC_MT_CACHE", Path.home() / ".cache" / "inc_transformer_mt"))


# ---------------------------------------------------------------------------------------------- inputs
@dataclass
class Sentences:
    source: list[str]
    reference: list[str]
    path: str = "source"  # the source file (its real path), for errors that name a line
    first_line: int = 1  # the source file's line of ``source[0]``

    def lines(self) -> range:
        return range(self.first_line, self.first_line + len(self.source))


@dataclass
class TuneInputs:
    """Everything a tune reads: the resolved recipe, the FP32 model, and the three sentence sets."""

    recipe_path: Path
    recipe: Recipe
    model: ResolvedModel
    graph_bytes: bytes
    calibration: Sentences
    tuning: Sentences
    heldout: Sentences | None

    def translate(self, translator, sentences: Sequence[str], name: str) -> list[str]:
        """Translate with the recipe's batch settings (every stage translates through this)."""
        d = self.recipe.data
        return translator.translate(sentences, max_tokens=d.max_tokens, max_sentences=d.max_sentences,
                                    source_name=name, progress=False)

    @property
    def criterion(self) -> Criterion:
        c = self.recipe.tuning.criterion
        return Criterion(c.type, c.max_drop)


def load_split(recipe: Recipe, spec: SplitSpec, key: str, recipe_path: Path | None = None) -> Sentences:
    """The sentences of one recipe data slice; a UserError naming ``data.<key>`` (and its line in
    ``recipe_path``) when it is too short."""
    from inc_transformer_mt.data.corpus import multi30k_split, read_parallel

    d = recipe.data
    if spec.split is not None:
        src_path = multi30k_split(spec.split, d.src_lang, d.data_dir)
        ref_path = multi30k_split(spec.split, d.tgt_lang, d.data_dir)
    else:
        src_path, ref_path = Path(spec.source), Path(spec.reference)
    src, ref = read_parallel(src_path, ref_path)
    if spec.start + spec.size > len(src):
        where = _where(recipe_path, "data", key) if recipe_path is not None else f"data.{key}"
        raise UserError(f"{where}: start {spec.start} + size {spec.size} is past the end of {src_path} "
                        f"({len(src)} sentences)")
    end = spec.start + spec.size
    return Sentences(src[spec.start:end], ref[spec.start:end], path=os.path.realpath(src_path),
                     first_line=spec.start + 1)


def load_recipe_file(recipe_path: Path, overrides: Sequence[str]) -> Recipe:
    """The recipe, validated, with its paths resolved (a check that only fails once paths are resolved, such as
    two spellings of one file, names the recipe)."""
    try:
        return resolve_paths(load_recipe(recipe_path, overrides), recipe_path.resolve().parent)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise UserError(f"{_where(recipe_path, *map(str, err['loc']))}: {error_message(err)}") from None


def load_inputs(recipe_path: Path, recipe: Recipe) -> TuneInputs:
    """Stage 1: the FP32 model and the calibration, tuning and held-out sentences."""
    from inc_transformer_mt.model.graph import resolve_model

    m = recipe.model
    if not Path(m.path).exists():
        raise UserError(f"{_where(recipe_path, 'model', 'path')}: {m.path} not found")
    model = resolve_model(m.path, input_tensor=m.input_tensor, output_tensor=m.output_tensor, tokenizer=m.tokenizer)
    if not model.graph_path.is_file():
        raise UserError(f"{_where(recipe_path, 'model', 'path')}: no graph file {model.graph_path}")
    d = recipe.data
    sets = {"calibration": load_split(recipe, d.calibration, "calibration", recipe_path),
            "tuning": load_split(recipe, d.tuning, "tuning", recipe_path)}
    if d.heldout is not None:
        sets["heldout"] = load_split(recipe, d.heldout, "heldout", recipe_path)
    check_disjoint(recipe_path, sets)
    check_lengths(model, sets)
    return TuneInputs(recipe_path=recipe_path, recipe=recipe, model=model, graph_bytes=model.graph_path.read_bytes(),
                      calibration=sets["calibration"], tuning=sets["tuning"], heldout=sets.get("heldout"))


#: a share of identical source sentences above this between two data sets is the same data under another name;
#: below it, a few natural duplicates (Multi30k: 1 of val's 1,014 sentences is also in train) are only logged
MAX_SHARED_FRACTION = 0.10


def _where(recipe_path: Path, *keys: str) -> str:
    """``recipe.yaml:LINE: a.b`` for errors found after validation (the line when the key is written)."""

    line = key_lines(recipe_path).get(tuple(keys))
    return f"{recipe_path}:{line}: {'.'.join(keys)}" if line else f"{recipe_path}: {'.'.join(keys)}"


def check_disjoint(recipe_path: Path, sets: dict[str, Sentences]) -> None:
    """Calibration, tuning and held-out sentences must not overlap: not as lines of one file (by real path, so
    ``./d/src.en``, ``d/../d/src.en`` and a split named by its file are one file), nor in content (a copy)."""
    names = list(sets)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            x, y = sets[a], sets[b]
            if x.path == y.path and x.first_line < y.lines().stop and y.first_line < x.lines().stop:
                raise UserError(f"{_where(recipe_path, 'data', b)}: overlaps data.{a}: lines {y.first_line}-"
                                f"{y.lines().stop - 1} and {x.first_line}-{x.lines().stop - 1} of {x.path}")
            seen = {s.strip() for s in x.source}
            shared = sum(1 for s in y.source if s.strip() in seen)
            if shared and shared > MAX_SHARED_FRACTION * min(len(x.source), len(y.source)):
                raise UserError(f"{_where(recipe_path, 'data', b)}: {shared} of its {len(y.source)} source sentences "
                                f"are identical to sentences of data.{a}: the same data under another name "
                                "(an overlap that would hide the quantization error)")
            if shared:
                logger.warning("data.%s and data.%s share %d identical source sentence(s)", a, b, shared)


def check_lengths(model: ResolvedModel, sets: dict[str, Sentences]) -> None:
    """Every sentence fits the model's source limit; an error names the file and its line."""
    from inc_transformer_mt.data.tokenizer import load_tokenizer
    from inc_transformer_mt.inference.translate import encode_checked

    if model.tokenizer_path is None or not Path(model.tokenizer_path).is_file():
        raise UserError(f"{model.graph_path}: tokenizer {model.tokenizer_path} not found")
    tokenizer = load_tokenizer(model.tokenizer_path, eos_id=model.meta.eos_id, pad_id=model.meta.pad_id)
    for part in sets.values():
        encode_checked(tokenizer, part.source, model.meta.max_source_tokens, part.path, first_line=part.first_line)


# -------------------------------------------------------------------------------------------- baseline
@dataclass
class Baseline:
    hyps: list[str]
    bleu: float
    signature: str
    cached: bool


def _read_cached_hyps(path: Path, expected: int) -> list[str] | None:
    """Cached FP32 outputs, or None when the file is missing or not a list of ``expected`` strings."""
    try:
        hyps = json.loads(path.read_text())["hyps"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(hyps, list) or len(hyps) != expected or not all(isinstance(h, str) for h in hyps):
        return None
    return hyps


def fp32_baseline(inputs: TuneInputs, fp32, log: Log) -> Baseline:
    """Stage 3: FP32 outputs and BLEU on the tuning set (cached by graph, data, batching and library versions)."""
    from inc_transformer_mt.metrics.bleu import score as bleu_score

    d, tuning = inputs.recipe.data, inputs.tuning
    key = _sha256(inputs.graph_bytes + json.dumps([inputs.model.meta.to_dict(), tuning.source, tuning.reference,
                                                   d.max_tokens, d.max_sentences, library_versions()]).encode())
    cache_file = cache_dir() / "baseline" / f"{key}.json"
    hyps = _read_cached_hyps(cache_file, len(tuning.source))
    cached = hyps is not None
    if cached:
        log(f"FP32 baseline: cached ({cache_file})")
    else:
        hyps = inputs.translate(fp32, tuning.source, "tuning source")
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(cache_file, json.dumps({"hyps": hyps}))
        except (OSError, UserError):
            logger.warning("could not write the baseline cache %s", cache_file)
    bleu = bleu_score(hyps, tuning.reference)
    log(f"FP32 BLEU on the tuning set ({len(tuning.source)} sentences): {bleu.score:.2f}")
    return Baseline(hyps=hyps, bleu=bleu.score, signature=bleu.signature, cached=cached)


# ----------------------------------------------------------------------------------------- calibration
@dataclass
class Calibration:
    """Statistics of every MatMul input over the calibration run, and the ranges chosen from them."""

    batches: list[Any]  # int32 arrays, length-sorted
    stats: Any  # quant.calibrate.CalibrationData
    tensor_range: dict[str, tuple[float, float]]
    matmul_range: dict[str, tuple[float, float]]
    requant_range: dict[str, tuple[float, float]]
    flops: dict[str, float]  # MatMul -> FLOPs over the calibration run
    observed_range: dict[str, tuple[float, float]] = field(default_factory=dict)  # tensor -> calibrated min/max

    @property
    def matmuls(self) -> list[str]:
        return sorted(self.stats.matmul_input)


def _matmul_flops(graph_def, stats) -> dict[str, float]:
    """FLOPs per MatMul over the calibration run (every decode step): 2 * input elements * output width."""
    from inc_transformer_mt.model.analysis import matmul_flops

    return matmul_flops(graph_def, {mm: float(stats.stats[t].hist.sum()) for mm, t in stats.matmul_input.items()})


def calibrate(inputs: TuneInputs, fp32, log: Log, plan: QuantPlan | None = None) -> Calibration:
    """Stage 4: activation statistics over the calibration sentences (every decode step) and their ranges: of
    every MatMul input, and of the inputs of the plan's ops beyond MatMul (attention, Softmax, LayerNorm)."""
    from inc_transformer_mt.passes.eight_bit import watched_tensors
    from inc_transformer_mt.quant.calibrate import collect_stats
    from inc_transformer_mt.quant.inc_bridge import requant_targets
    from inc_transformer_mt.quant.inc_hooks import CalibrationLoader
    from inc_transformer_mt.quant.kl import kl_range

    t = time.perf_counter()
    cal = inputs.recipe.calibration
    ids = fp32.encode(inputs.calibration.source, "calibration source")
    batches = CalibrationLoader.length_sorted(ids, cal.batch_size, inputs.model.meta.pad_id).batches
    gd = fp32.graph_def
    extra, masked = watched_tensors(gd, plan.beyond_matmul) if plan is not None else ({}, set())
    stats = collect_stats(gd, fp32.input_name, fp32.output_name, batches, bins=cal.bins, extra=extra, masked=masked)
    tensor_range = {t_: kl_range(s, cal.kl_mode) if cal.method == "kl" else (s.minimum, s.maximum)
                    for t_, s in stats.stats.items()}
    result = Calibration(
        batches=batches, stats=stats, tensor_range=tensor_range,
        matmul_range={mm: tensor_range[t_] for mm, t_ in stats.matmul_input.items()},
        requant_range={mm: tensor_range[t_] for mm, t_ in requant_targets(gd, stats.matmul_input).items()},
        flops=_matmul_flops(gd, stats),
        observed_range={t_: (s.minimum, s.maximum) for t_, s in stats.stats.items()})
    mode = f"/{cal.kl_mode}" if cal.method == "kl" else ""
    log(f"calibration: {stats.sentences} sentences, {len(stats.stats)} input tensors "
        f"({cal.method}{mode}), {time.perf_counter() - t:.0f} s")
    return result


# ------------------------------------------------------------------------------------ quantization plan
def plan_quantization(recipe_path: Path, recipe: Recipe, graph_def, overrides: Sequence[str] = ()) -> QuantPlan:
    """Stage 2 (before any work): the recipe's op-wise rules resolved against the FP32 graph
    (:mod:`inc_transformer_mt.quant.plan`); a rule that matches nothing is an error naming it and its line."""
    from inc_transformer_mt.model.analysis import compute_ops
    from inc_transformer_mt.quant.calibrate import matmul_inputs
    from inc_transformer_mt.quant.plan import resolve_plan
    from inc_transformer_mt.recipe.loader import key_lines

    rules_overridden = any(o.split("=", 1)[0].strip().startswith("quantization") for o in overrides)
    lines = {} if rules_overridden else key_lines(recipe_path)
    rule_lines = {k[2]: v for k, v in lines.items() if len(k) == 3 and k[:2] == ("quantization", "rules")}
    plan = resolve_plan(recipe.quantization.rules, compute_ops(graph_def), matmuls=sorted(matmul_inputs(graph_def)),
                        rule_lines=rule_lines, source=f"{recipe_path} (rules from --set)" if rules_overridden
                        else str(recipe_path))
    if plan.beyond_matmul:
        from inc_transformer_mt.passes.eight_bit import check_supported

        if recipe.tuning.engine == "inc":
            raise UserError(f"{_where(recipe_path, 'tuning', 'engine')}: INC's autotune runs only INC's MatMul "
                            f"quantization; the rules take {len(plan.beyond_matmul)} op(s) beyond MatMul "
                            "(INT8 attention, integer Softmax/LayerNorm): use tuning.engine own")
        check_supported(graph_def, plan.beyond_matmul)
        if "BatchMatMulV2" in plan.beyond_matmul.values():
            from inc_transformer_mt.passes.int8_attention import require_itex

            require_itex()
    return plan


# ---------------------------------------------------------------------------------------------- search
@dataclass
class QuantizedGraph:
    """One trial's INT8 graph and what quantizing it reported (the tuner's opaque "model")."""

    graph_def: Any
    precision: dict[str, str]
    ranges_replaced: int
    enter_fixes: int


@dataclass
class Search:
    """The tuner's outcome; its models are :class:`QuantizedGraph` (only the passing and closest are kept)."""

    outcome: TuneOutcome

    @property
    def chosen(self) -> tuple[Any, QuantizedGraph | None]:
        """(trial, graph) of the passing trial, else of the closest one, else (None, None)."""
        o = self.outcome
        return (o.best, o.best_model) if o.best is not None else (o.closest, o.closest_model)


class _TrialRunner:
    """The tuner's three callbacks (quantize, evaluate, rank) over one FP32 model and calibration."""

    def __init__(self, inputs: TuneInputs, fp32, baseline: Baseline, calibration: Calibration, plan: QuantPlan,
                 log: Log):
        self.inputs, self.fp32, self.baseline, self.cal, self.plan = inputs, fp32, baseline, calibration, plan
        self.log = log
        self.total_flops = sum(calibration.flops.values()) or 1.0

    def quantize(self, fp32_ops: list[str]):
        from inc_transformer_mt.model.analysis import graph_format, matmul_precision
        from inc_transformer_mt.quant.inc_bridge import inc_quantize

        r, fp32, kl = self.inputs.recipe, self.fp32, self.inputs.recipe.calibration.method == "kl"
        score = self.inputs.model.meta.score_tensor
        beyond = self.plan.beyond_matmul
        res = inc_quantize(fp32.graph_def, input_names=[fp32.input_name],
                           output_names=[fp32.output_name] + ([score] if score else []), backend=r.backend,
                           calib_batches=self.cal.batches, fp32_ops=[o for o in fp32_ops if o not in beyond],
                           ranges=self.cal.matmul_range if kl else None,
                           requant_ranges=self.cal.requant_range if kl else None,
                           weight_granularity=r.quantization.weight_granularity)
        prec = matmul_precision(res.graph_def, self.cal.matmuls)
        n8 = sum(v == "int8" for v in prec.values())
        share = sum(self.cal.flops[mm] for mm, v in prec.items() if v == "int8") / self.total_flops
        final, note = res.graph_def, graph_format(res.graph_def)
        below = {op: t for op, t in beyond.items() if op not in fp32_ops}
        if below:
            final = self._eight_bit(final, below)
            note += f"; beyond MatMul: {_count_types(below)}"
        graph = QuantizedGraph(final, prec, len(res.replaced_ranges), res.enter_fixes)
        return graph, n8, share, note

    def _eight_bit(self, graph_def, ops: dict[str, str]):
        from inc_transformer_mt.passes.eight_bit import apply_eight_bit

        return apply_eight_bit(graph_def, ops, self.cal.tensor_range, self.cal.observed_range)[0]

    def evaluate(self, graph: QuantizedGraph) -> float:
        return _bleu_of(self.inputs, graph.graph_def, self.inputs.tuning)

    def rank(self):
        from inc_transformer_mt.inference.translate import Translator
        from inc_transformer_mt.metrics.bleu import score as bleu_score
        from inc_transformer_mt.quant.sensitivity import fake_quant_graph, rank_units, units

        tuning = self.inputs.recipe.tuning
        n = min(tuning.sensitivity_sentences, len(self.inputs.tuning.source))
        src, ref_hyps = self.inputs.tuning.source[:n], self.baseline.hyps[:n]

        from inc_transformer_mt.passes.eight_bit import EXACT

        beyond = self.plan.beyond_matmul

        def measure(ops):
            graph = fake_quant_graph(self.fp32.graph_def, self.cal.matmul_range, [o for o in ops if o not in beyond])
            below = {o: beyond[o] for o in ops if o in beyond and beyond[o] not in EXACT}
            if below:
                graph = self._eight_bit(graph, below)
            with Translator(self.inputs.model, graph_def=graph) as tr:
                hyps = self.inputs.translate(tr, src, "tuning source")
            return 100.0 - bleu_score(hyps, ref_hyps).score

        self.log(f"trial 1 missed the criterion: measuring the sensitivity of each {tuning.granularity} "
                 f"on {n} sentences")
        ranking = rank_units(units(_fallback_candidates(self.plan), tuning.granularity), measure,
                             time.perf_counter)
        for s in ranking[:5]:
            self.log(f"  {s.unit}: {s.score:.2f}")
        return ranking


def _fallback_candidates(plan: QuantPlan) -> list[str]:
    """The ops the tuner may return to FP32: the INT8 MatMuls and the rewrites beyond MatMul that add error of
    their own (not the INT8 cache, exact given INT8 attention)."""
    from inc_transformer_mt.passes.eight_bit import EXACT

    return plan.candidates + [op for op, t in plan.beyond_matmul.items() if t not in EXACT]


def _count_types(ops: dict[str, str]) -> str:
    from collections import Counter

    return ", ".join(f"{n} {t}" for t, n in sorted(Counter(ops.values()).items()))


def _bleu_of(inputs: TuneInputs, graph_def, sentences: Sentences) -> float:
    from inc_transformer_mt.inference.translate import Translator
    from inc_transformer_mt.metrics.bleu import score as bleu_score

    with Translator(inputs.model, graph_def=graph_def) as tr:
        hyps = inputs.translate(tr, sentences.source, "tuning source")
    return bleu_score(hyps, sentences.reference).score


def search(inputs: TuneInputs, fp32, baseline: Baseline, calibration: Calibration, plan: QuantPlan,
           log: Log) -> Search:
    """Stage 5: INC quantization per trial, BLEU per trial, sensitivity fallback until the criterion holds."""
    from inc_transformer_mt.tuning.tuner import Tuner

    t = inputs.recipe.tuning
    runner = _TrialRunner(inputs, fp32, baseline, calibration, plan, log)
    tuner = Tuner(baseline=baseline.bleu, criterion=inputs.criterion, quantize=runner.quantize,
                  evaluate=runner.evaluate, rank=runner.rank, candidate_ops=_fallback_candidates(plan),
                  forced_fp32=plan.forced_fp32, max_trials=t.max_trials, time_budget_s=t.time_budget_min * 60.0,
                  fallback=t.fallback, clock=time.perf_counter, log=log)
    return Search(outcome=tuner.run())


# ---------------------------------------------------------------------------------------------- passes
@dataclass
class PassesOutcome:
    info: PassesInfo
    graph_def: Any  # the graph with the passes when accepted, else the input graph
    bleu: float  # tuning BLEU of graph_def


def run_passes(inputs: TuneInputs, graph_def, bleu_before: float, baseline: Baseline, log: Log) -> PassesOutcome:
    """Stage 6: the recipe's graph passes; BLEU measured again; kept only if the criterion still holds."""
    from inc_transformer_mt.inference.identity import compare_translations
    from inc_transformer_mt.passes import apply_passes

    names = list(inputs.recipe.passes)
    new, reports = apply_passes(graph_def, names)
    from inc_transformer_mt.metrics.bleu import score as bleu_score

    d = inputs.recipe.data
    identity = compare_translations(inputs.model, graph_def, new, inputs.tuning.source, max_tokens=d.max_tokens,
                                    max_sentences=d.max_sentences)
    after = bleu_score(identity.texts_b, inputs.tuning.reference).score
    accepted = inputs.criterion.passes(baseline.bleu, after)
    log(f"passes {', '.join(names)}: tuning BLEU {bleu_before:.2f} -> {after:.2f}, "
        f"{'token-identical' if identity.identical else f'{identity.differing} translation(s) changed'} "
        f"({'kept' if accepted else 'rejected: criterion no longer holds, model written without them'})")
    info = PassesInfo(names=names, reports=reports, tuning_bleu_before=round(bleu_before, 2),
                      tuning_bleu_after=round(after, 2), drop_after=round(baseline.bleu - after, 2),
                      accepted=accepted, token_identical=identity.identical,
                      differing_sentences=identity.differing)
    return PassesOutcome(info=info, graph_def=new if accepted else graph_def, bleu=after if accepted else bleu_before)


# -------------------------------------------------------------------------------------------- held-out
def score_heldout(inputs: TuneInputs, fp32, graph_def, int8_model: str) -> HeldoutInfo | None:
    """Stage 7: FP32 and INT8 BLEU on the held-out set (information only: never a decision)."""
    from inc_transformer_mt.inference.translate import Translator
    from inc_transformer_mt.metrics.bleu import score as bleu_score

    held, spec = inputs.heldout, inputs.recipe.data.heldout
    if held is None or spec is None:
        return None
    fp32_bleu = bleu_score(inputs.translate(fp32, held.source, "held-out source"), held.reference).score
    with Translator(inputs.model, graph_def=graph_def) as tr:
        int8_bleu = bleu_score(inputs.translate(tr, held.source, "held-out source"), held.reference).score
    return HeldoutInfo(**spec.model_dump(), sentences=len(held.source), fp32_bleu=round(fp32_bleu, 2),
                       int8_bleu=round(int8_bleu, 2), drop=round(fp32_bleu - int8_bleu, 2), int8_model=int8_model)


# ---------------------------------------------------------------------------------------------- report
def int8_info(trial, graph: QuantizedGraph, graph_def, bleu: float, drop: float, matmuls: int) -> Int8Info:
    """What the report says about one quantized graph (``graph_def``: after the passes, when kept); the
    precision census of every rule-nameable op type is measured on that final graph."""
    from inc_transformer_mt.model.analysis import op_census, op_precision_census

    census = {op: PrecisionCount.model_validate(c) for op, c in op_precision_census(graph_def).items()}
    return Int8Info(tuning_bleu=round(bleu, 2), drop=round(drop, 2), trial=trial.index,
                    matmuls_int8=trial.int8_ops, matmuls_total=matmuls,
                    matmul_flops_int8_share=round(trial.int8_flops_share, 4), matmul_precision=graph.precision,
                    matmul_census=census["MatMul"], precision_census=census,
                    op_census=op_census(graph_def).to_dict(), ranges_replaced=graph.ranges_replaced,
                    enter_fixes=graph.enter_fixes)


def _calibration_info(recipe: Recipe, cal: Calibration) -> CalibrationInfo:
    c, stats = recipe.calibration, cal.stats
    ranges = {}
    for t_, s in sorted(stats.stats.items()):
        lo, hi, r = s.minimum, s.maximum, cal.tensor_range[t_]
        ranges[t_] = {"observed": [round(lo, 5), round(hi, 5)], "chosen": [round(r[0], 5), round(r[1], 5)],
                      "kept_fraction": round((r[1] - r[0]) / (hi - lo), 4) if hi > lo else 1.0}
    return CalibrationInfo(method=c.method, kl_mode=c.kl_mode if c.method == "kl" else None, bins=c.bins,
                           sentences=stats.sentences, batches=stats.batches, tensors=len(stats.stats), ranges=ranges,
                           matmul_flops={mm: float(f) for mm, f in sorted(cal.flops.items())})


def plan_info(plan: QuantPlan, engine: str = "own") -> PlanInfo:
    return PlanInfo(rules=[PlanRule(index=r.index, rule=r.rule, line=r.line, matched=r.matched) for r in plan.rules],
                    planned=plan.by_type(), engine=engine)


def build_report(inputs: TuneInputs, fp32, baseline: Baseline, cal: Calibration, found: Search, *,
                 plan: PlanInfo | None = None,
                 int8: Int8Info | None, passes: PassesInfo | None, heldout: HeldoutInfo | None,
                 walls: dict[str, float]) -> TuneReport:
    """Stage 8: the typed report of the whole run."""
    o, recipe = found.outcome, inputs.recipe
    crit = inputs.criterion
    passed = o.best is not None
    return TuneReport(
        status="passed" if passed else "failed", recipe=str(inputs.recipe_path),
        model=ModelInfo(path=str(inputs.model.graph_path), sha256=_sha256(inputs.graph_bytes),
                        input_tensor=fp32.input_name, output_tensor=fp32.output_name),
        backend=recipe.backend,
        criterion=CriterionInfo(type=crit.type, max_drop=crit.max_drop, allowed_drop_bleu=crit.allowed_drop(
            baseline.bleu), text=crit.describe(baseline.bleu)),
        signature=baseline.signature,
        tuning_set=SetInfo(**recipe.data.tuning.model_dump(), sentences=len(inputs.tuning.source)),
        fp32={"tuning_bleu": round(baseline.bleu, 2)},
        plan=plan, trials=[TrialRecord(**t.to_dict()) for t in o.trials], stop_reason=o.stop_reason,
        sensitivity=None if o.ranking is None else [
            SensitivityRecord(unit=s.unit, ops=s.ops, score=round(s.score, 3), seconds=round(s.seconds, 2))
            for s in o.ranking],
        calibration=_calibration_info(recipe, cal), versions=library_versions(), machine=machine_info(),
        int8=int8 if passed else None, closest_trial=None if passed else int8, passes=passes, heldout=heldout,
        wall_seconds={k: round(v, 1) for k, v in walls.items()})
