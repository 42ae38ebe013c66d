"""The tune report: one typed contract (``report.json``) that the markdown report, the CLI summary and the
regression manifest all read.

Pydantic models, no TensorFlow: a CI step can load and check a report anywhere. The JSON schema is committed
(``docs/report.schema.json``) and a test fails when the models drift from it.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from inc_transformer_mt.errors import UserError

__all__ = [
    "CalibrationInfo",
    "CriterionInfo",
    "HeldoutInfo",
    "Int8Info",
    "PassesInfo",
    "TrialRecord",
    "TuneReport",
    "load_report",
    "render_markdown",
    "render_summary",
    "report_json_schema",
]

REPORT_NAME = "report.json"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelInfo(_Strict):
    path: str
    sha256: str
    input_tensor: str
    output_tensor: str


class CriterionInfo(_Strict):
    type: Literal["absolute", "relative"]
    max_drop: float
    allowed_drop_bleu: float = Field(description="the drop allowed on this baseline, in BLEU points")
    text: str


class SetInfo(_Strict):
    """A slice of a corpus (the recipe's SplitSpec) and how many sentences it held."""

    split: str | None = None
    source: str | None = None
    reference: str | None = None
    start: int = 0
    size: int
    sentences: int


class FP32Info(_Strict):
    tuning_bleu: float


class TrialRecord(_Strict):
    index: int
    fp32_units: list[str]
    fp32_ops: list[str]
    int8_ops: int
    int8_flops_share: float | None = None
    bleu: float
    drop: float
    passed: bool
    quantize_s: float
    evaluate_s: float
    note: str = Field("", description="the graph format the trial produced (qdq, fused)")


class SensitivityRecord(_Strict):
    unit: str
    ops: list[str]
    score: float = Field(description="100 - BLEU against the FP32 output with this unit alone simulated INT8")
    seconds: float


class RangeInfo(_Strict):
    observed: tuple[float, float]
    chosen: tuple[float, float]
    kept_fraction: float


class CalibrationInfo(_Strict):
    method: str
    kl_mode: str | None = None
    bins: int
    sentences: int
    batches: int
    tensors: int
    ranges: dict[str, RangeInfo]
    matmul_flops: dict[str, float] | None = Field(
        None, description="MatMul -> FLOPs over the calibration run (2 x input elements x output width); the "
        "weights of the INT8 FLOPs share")


class LoopCount(_Strict):
    outside_loop: int = 0
    inside_loop: int = 0


class PrecisionCount(_Strict):
    int8: LoopCount = Field(default_factory=LoopCount)
    integer: LoopCount = Field(default_factory=LoopCount, description="integer-only replacements (Softmax, "
                               "LayerNorm: recipe dtype integer)")
    fp32: LoopCount = Field(default_factory=LoopCount)


class Int8Info(_Strict):
    """The chosen trial's model (``int8``) or, when none passed, the closest one (``closest_trial``)."""

    tuning_bleu: float
    drop: float
    trial: int
    matmuls_int8: int
    matmuls_total: int
    matmul_flops_int8_share: float
    matmul_precision: dict[str, Literal["int8", "fp32"]]
    matmul_census: PrecisionCount
    precision_census: dict[str, PrecisionCount]
    op_census: dict[str, Any]
    ranges_replaced: int
    enter_fixes: int
    graph: str | None = None


class PassesInfo(_Strict):
    names: list[str]
    reports: list[dict[str, Any]]
    tuning_bleu_before: float
    tuning_bleu_after: float
    drop_after: float
    accepted: bool
    #: token ids of the tuning translations after the passes equal to those before (every pass is meant exact)
    token_identical: bool | None = None
    differing_sentences: int = 0


class HeldoutInfo(SetInfo):
    fp32_bleu: float
    int8_bleu: float
    drop: float
    int8_model: str


class PlanRule(_Strict):
    """One recipe rule as resolved against the graph."""

    index: int
    rule: str
    line: int | None = None
    matched: dict[str, int] = Field(description="op type -> ops the rule selected")


class PlanInfo(_Strict):
    """The quantization plan: every rule with what it matched, and the planned dtype counts per op type."""

    rules: list[PlanRule]
    planned: dict[str, dict[str, int]] = Field(description="op type -> dtype -> ops")
    engine: Literal["own", "inc"] = "own"


class TuneReport(_Strict):
    status: Literal["passed", "failed"]
    recipe: str
    model: ModelInfo
    backend: str
    criterion: CriterionInfo
    signature: str = Field(description="sacreBLEU signature of every BLEU in the report")
    tuning_set: SetInfo
    fp32: FP32Info
    plan: PlanInfo | None = None
    trials: list[TrialRecord]
    stop_reason: str
    sensitivity: list[SensitivityRecord] | None = None
    calibration: CalibrationInfo
    versions: dict[str, str]
    machine: dict[str, Any]
    int8: Int8Info | None = None
    closest_trial: Int8Info | None = None
    passes: PassesInfo | None = None
    heldout: HeldoutInfo | None = None
    wall_seconds: dict[str, float] = Field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json", exclude_none=True), indent=2) + "\n"


def report_json_schema() -> str:
    return json.dumps(TuneReport.model_json_schema(), indent=2, sort_keys=True) + "\n"


def load_report(path: str | Path) -> TuneReport:
    """Parse a ``report.json``; a UserError naming the file and key when it is not one."""
    path = Path(path)
    try:
        return TuneReport.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: tune report not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read the tune report ({exc})") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise UserError(f"{path}: {key}: {err['msg']}") from None


# ------------------------------------------------------------------------------------------- renderers
def render_summary(r: TuneReport, out_dir: Path) -> str:
    """The few lines ``inc-mt tune`` prints at the end."""
    lines = [f"FP32 BLEU (tuning set): {r.fp32.tuning_bleu:.2f}"]
    if r.int8 is not None and r.passed:
        i8 = r.int8
        lines.append(f"INT8 BLEU (tuning set): {i8.tuning_bleu:.2f}  drop {i8.drop:+.2f}  ({r.criterion.text}: met)")
        if r.heldout is not None:
            h = r.heldout
            lines.append(f"held-out ({h.sentences} sentences): FP32 {h.fp32_bleu:.2f}  INT8 {h.int8_bleu:.2f}  "
                         f"drop {h.drop:+.2f}")
        lines.append(f"INT8 MatMuls: {i8.matmuls_int8}/{i8.matmuls_total} "
                     f"({i8.matmul_flops_int8_share:.1%} of MatMul FLOPs), trial {i8.trial} of {len(r.trials)}")
        lines.append(f"INT8 model: {i8.graph}")
    else:
        lines.append(f"FAILED: no configuration met the criterion ({r.criterion.text}); {r.stop_reason}; "
                     "no model written")
    lines.append(f"report: {out_dir / 'report.md'} (and report.json)")
    return "\n".join(lines) + "\n"


def _bleu_rows(r: TuneReport) -> list[str]:
    lines = ["## BLEU", "", "| set | FP32 | INT8 | drop |", "|---|---|---|---|"]
    if r.int8 is not None:
        lines.append(f"| tuning | {r.fp32.tuning_bleu:.2f} | {r.int8.tuning_bleu:.2f} | {r.int8.drop:+.2f} |")
    elif r.closest_trial is not None:
        c = r.closest_trial
        lines.append(f"| tuning | {r.fp32.tuning_bleu:.2f} | {c.tuning_bleu:.2f} (closest trial {c.trial}, rejected) "
                     f"| {c.drop:+.2f} |")
    if r.heldout is not None:
        h = r.heldout
        lines.append(f"| held-out ({h.sentences}) | {h.fp32_bleu:.2f} | {h.int8_bleu:.2f} | {h.drop:+.2f} |")
    return lines + [""]


def _passes_rows(ps: PassesInfo) -> list[str]:
    verdict = "kept." if ps.accepted else "**rejected** (criterion no longer holds): model written without them."
    lines = [(f"Graph passes {', '.join(ps.names)}: tuning BLEU {ps.tuning_bleu_before:.2f} before, "
              f"{ps.tuning_bleu_after:.2f} after (drop {ps.drop_after:+.2f}); {verdict}")]
    if ps.token_identical is not None:
        lines.append("Translations of the tuning set are token-identical before and after." if ps.token_identical
                     else f"**{ps.differing_sentences} tuning translation(s) changed** (the passes are meant exact).")
    lines += ["", "| pass | rewritten | nodes | nodes run per decode step | note |", "|---|---|---|---|---|"]
    for p in ps.reports:
        note = p.get("reason", "") if not p.get("applicable", True) else f"{len(p['skipped'])} left alone"
        nodes = (f"{p['nodes_before']} -> {p['nodes_after']}" if "nodes_before" in p else "")
        step = (f"{p['step_nodes_before']} -> {p['step_nodes_after']}" if "step_nodes_before" in p else "")
        lines.append(f"| {p['pass']} | {p['rewritten']} | {nodes} | {step} | {note} |")
    return lines + [""]


def _plan_rows(p: PlanInfo) -> list[str]:
    lines = [f"## Quantization plan (engine: {p.engine})", "", "| # | rule | recipe line | matched |", "|---|---|---|---|"]
    for r in p.rules:
        matched = ", ".join(f"{n} {t}" for t, n in sorted(r.matched.items()))
        lines.append(f"| {r.index} | `{r.rule}` | {'' if r.line is None else r.line} | {matched} |")
    planned = "; ".join(f"{t}: " + ", ".join(f"{n} {d}" for d, n in sorted(c.items()))
                        for t, c in sorted(p.planned.items()))
    return lines + ["", f"Planned: {planned}.", ""]


def _census_rows(i8: Int8Info) -> list[str]:
    lines = [(f"INT8 MatMuls: {i8.matmuls_int8} of {i8.matmuls_total} ({i8.matmul_flops_int8_share:.1%} of MatMul "
              f"FLOPs); KL/min-max ranges frozen: {i8.ranges_replaced}; loop Enter fixes: {i8.enter_fixes}"), "",
             ("Precision of every op type, measured on the final graph (after the passes: hoisted ops count outside "
              "the loop):"), "",
             ("| op type | INT8 outside loop | INT8 inside loop | integer outside loop | integer inside loop "
              "| FP32 outside loop | FP32 inside loop |"),
             "|---|---|---|---|---|---|---|"]
    for op, c in i8.precision_census.items():
        lines.append(f"| {op} | {c.int8.outside_loop} | {c.int8.inside_loop} | {c.integer.outside_loop} | "
                     f"{c.integer.inside_loop} | {c.fp32.outside_loop} | {c.fp32.inside_loop} |")
    lines += ["", "All ops of the INT8 graph:", "", "| op | outside loop | inside loop |", "|---|---|---|"]
    for op, c in i8.op_census["ops"].items():
        lines.append(f"| {op} | {c['outside_loop']} | {c['inside_loop']} |")
    return lines + [""]


def _trial_rows(r: TuneReport) -> list[str]:
    lines = ["## Trials", "", ("| # | FP32 units | FP32 MatMuls | INT8 MatMuls | FLOPs INT8 | BLEU | drop | pass | "
                               "quantize s | evaluate s |"), "|---|---|---|---|---|---|---|---|---|---|"]
    for t in r.trials:
        share = "" if t.int8_flops_share is None else f"{t.int8_flops_share:.1%}"
        lines.append(f"| {t.index} | {len(t.fp32_units)} | {len(t.fp32_ops)} | {t.int8_ops} | {share} | "
                     f"{t.bleu:.2f} | {t.drop:+.2f} | {'yes' if t.passed else 'no'} | "
                     f"{t.quantize_s:.0f} | {t.evaluate_s:.0f} |")
    if r.sensitivity:
        lines += ["", "## Sensitivity (100 - BLEU against FP32 output, one unit simulated INT8)", "",
                  "| unit | MatMuls | score |", "|---|---|---|"]
        lines += [f"| `{s.unit}` | {len(s.ops)} | {s.score:.2f} |" for s in r.sensitivity]
    return lines


def _environment_rows(r: TuneReport) -> list[str]:
    c = r.calibration
    kept = [v.kept_fraction for v in c.ranges.values()]
    mode = f" ({c.kl_mode})" if c.kl_mode else ""
    m = r.machine
    lines = ["", "## Calibration", "",
             (f"{c.method}{mode}, {c.sentences} sentences in {c.batches} batches, {c.tensors} MatMul input tensors, "
              f"{c.bins} bins per side; median share of the observed range kept: "
              f"{statistics.median(kept) if kept else 1:.3f}"), "", "## Environment", ""]
    lines += [f"- {k}: {v}" for k, v in r.versions.items()]
    lines.append(f"- machine: {m.get('cpu_model', m.get('cpu', '?'))}, {m.get('cpus')} CPUs, "
                 f"ISA class {m.get('isa_class', '?')}")
    lines += ["", "## Wall time (s)", ""] + [f"- {k}: {v}" for k, v in r.wall_seconds.items()]
    return lines


def render_markdown(r: TuneReport) -> str:
    """``report.md``: BLEU table, passes, INT8 census, trials, sensitivity, calibration, environment."""
    lines = [f"# INT8 tuning report: {r.status.upper()}", "",
             f"- recipe: `{r.recipe}`", f"- model: `{r.model.path}` (sha256 {r.model.sha256[:12]}…)",
             f"- backend: {r.backend}", f"- criterion: {r.criterion.text}", f"- sacreBLEU signature: `{r.signature}`",
             f"- tuning set: {r.tuning_set.sentences} sentences; stop: {r.stop_reason}", ""]
    lines += _bleu_rows(r)
    if r.plan is not None:
        lines += _plan_rows(r.plan)
    if r.passes is not None:
        lines += _passes_rows(r.passes)
    if r.int8 is not None:
        lines += _census_rows(r.int8)
    else:
        lines += ["**No configuration met the criterion. No model was written.**", ""]
        if r.closest_trial is not None:
            c = r.closest_trial
            lines += [(f"Closest trial {c.trial}: INT8 MatMuls {c.matmuls_int8} of {c.matmuls_total} "
                       f"({c.matmul_flops_int8_share:.1%} of MatMul FLOPs)."), ""]
    lines += _trial_rows(r) + _environment_rows(r)
    return "\n".join(lines) + "\n"
