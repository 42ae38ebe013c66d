"""The tuning recipe: a YAML file validated by these pydantic models (unknown keys are errors).

No TensorFlow here: validating a recipe is instant. Settings that the stack (INC 3.10 on TensorFlow 2.15)
cannot honour are rejected with the reason, never silently changed.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from inc_transformer_mt.defaults import (
    BACKENDS,
    CALIBRATION_METHODS,
    CRITERION_TYPES,
    DEFAULT_PASSES,
    ENGINES,
    FALLBACKS,
    GRANULARITIES,
    KL_MODES,
    MAX_ABSOLUTE_DROP,
    MAX_DROP,
    MAX_SENTENCES,
    MAX_TOKENS,
    MULTI30K_SPLITS,
    OVERWRITE_POLICIES,
    PASS_NAMES,
    RUNTIME_MAX_SENTENCES,
    RUNTIMES,
    SRC_LANG,
    TGT_LANG,
    WEIGHT_GRANULARITIES,
)

__all__ = [
    "RECIPE_VERSION",
    "CalibrationSpec",
    "CriterionSpec",
    "DataSpec",
    "ModelSpec",
    "OutputsSpec",
    "QuantRule",
    "QuantizationSpec",
    "Recipe",
    "RuntimeSpec",
    "SplitSpec",
    "TuningSpec",
]

RECIPE_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)


class ModelSpec(_Strict):
    """The FP32 frozen graph to quantize. Relative paths are relative to the recipe file."""

    path: str = Field(description="model directory (with model.json) or frozen graph .pb/.pb.gz")
    input_tensor: str | None = Field(None, description="int32 [batch, length] token ids (default: model.json)")
    output_tensor: str | None = Field(None, description="int32 [batch, length] token ids (default: model.json)")
    tokenizer: str | None = Field(None, description="SentencePiece model (default: model.json)")


class SplitSpec(_Strict):
    """A slice of a corpus: a Multi30k split, or a source/reference file pair."""

    split: Literal[MULTI30K_SPLITS] | None = Field(None, description="Multi30k split")  # type: ignore[valid-type]
    source: str | None = Field(None, description="source sentences file (instead of split)")
    reference: str | None = Field(None, description="reference translations file (instead of split)")
    start: int = Field(0, ge=0, description="first sentence (0-based)")
    size: int = Field(gt=0, description="number of sentences")

    @model_validator(mode="after")
    def _one_source(self) -> SplitSpec:
        files = self.source is not None or self.reference is not None
        if files and self.split is not None:
            raise ValueError("give either split or source/reference, not both")
        if not files and self.split is None:
            raise ValueError("give a split or source/reference files")
        if files and (self.source is None or self.reference is None):
            raise ValueError("source and reference go together")
        return self

    def key(self) -> tuple[str, ...]:
        return (self.split,) if self.split else (str(self.source), str(self.reference))

    def overlaps(self, other: SplitSpec) -> bool:
        return self.key() == other.key() and self.start < other.start + other.size and other.start < self.start + self.size


class DataSpec(_Strict):
    """Sentences for calibration and for the tuning metric; they must not overlap."""

    data_dir: str | None = Field(None, description="Multi30k directory (default: auto-detected)")
    src_lang: str = SRC_LANG
    tgt_lang: str = TGT_LANG
    calibration: SplitSpec = Field(description="sentences whose activations set the quantization ranges")
    tuning: SplitSpec = Field(description="sentences the BLEU criterion is measured on")
    heldout: SplitSpec | None = Field(None, description="optional held-out set scored for FP32 and the final "
                                      "INT8 model only (never used for decisions)")
    max_tokens: int = Field(MAX_TOKENS, gt=0, description="padded source tokens per batch")
    max_sentences: int = Field(MAX_SENTENCES, gt=0, description="sentences per batch")

    @model_validator(mode="after")
    def _separate(self) -> DataSpec:
        if self.calibration.overlaps(self.tuning):
            raise ValueError("calibration and tuning sentences overlap: calibrating on the evaluation set "
                             "hides quantization error")
        if self.heldout is not None and (self.heldout.overlaps(self.tuning) or self.heldout.overlaps(self.calibration)):
            raise ValueError("the held-out set overlaps the calibration or tuning sentences")
        return self


class QuantRule(_Strict):
    """One op-wise rule. Rules apply in order; a later match overrides an earlier one."""

    op_type: Literal["MatMul", "BatchMatMulV2", "Softmax", "LayerNorm", "GatherNd", "PolyAttention"] | None = Field(
        None, description="op type the rule applies to (PolyAttention: the Softmax-free attention weights of Lin "
                          "et al. 2020's Integer Transformer, a model trained with --attention polynomial)"
    )
    op_name: str | None = Field(None, description="anchored regular expression (^...$) on op names")
    dtype: Literal["int8", "fp32", "integer"] = Field(
        description="int8 (MatMul via INC; attention BatchMatMulV2 and the K/V cache GatherNd via the package's "
                    "rewrites), fp32 (keep float), integer (integer-only Softmax/LayerNorm, I-BERT; "
                    "integer-only polynomial attention and L1 LayerNorm, Lin et al. 2020)"
    )

    @field_validator("op_name")
    @classmethod
    def _anchored(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not (value.startswith("^") and value.endswith("$")):
            raise ValueError(f"op_name pattern {value!r} must be anchored as ^...$ (INC matches regex prefixes, "
                             "so an unanchored pattern can select more ops than intended)")
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"op_name pattern {value!r} is not a valid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _supported(self) -> QuantRule:
        if (self.op_type is None) == (self.op_name is None):
            raise ValueError("a rule names exactly one of op_type or op_name")
        if self.op_type is not None:
            problem = dtype_problem(self.op_type, self.dtype)
            if problem:
                raise ValueError(problem)
        return self


#: op type -> the dtypes a rule may give it
DTYPES_BY_OP = {"MatMul": ("int8", "fp32"), "BatchMatMulV2": ("int8", "fp32"), "Softmax": ("integer", "fp32"),
                "LayerNorm": ("integer", "fp32"), "GatherNd": ("int8", "fp32"), "PolyAttention": ("integer", "fp32")}
_WHY = {
    ("MatMul", "integer"): "dtype integer is for Softmax, LayerNorm and PolyAttention; a MatMul is int8 or fp32",
    ("BatchMatMulV2", "integer"): "dtype integer is for Softmax, LayerNorm and PolyAttention; attention BatchMatMulV2 is int8 "
                                  "(the package's INT8 attention) or fp32",
    ("Softmax", "int8"): "Softmax has no int8 kernel; use dtype integer (integer-only softmax) or fp32",
    ("LayerNorm", "int8"): "LayerNorm has no int8 kernel; use dtype integer (integer-only LayerNorm) or fp32",
    ("PolyAttention", "int8"): "PolyAttention has no int8 kernel; use dtype integer (integer-only polynomial "
                               "attention) or fp32",
    ("GatherNd", "integer"): "dtype integer is for Softmax, LayerNorm and PolyAttention; GatherNd is int8 (the INT8 K/V cache) "
                             "or fp32",
}


def dtype_problem(op_type: str, dtype: str) -> str | None:
    """Why ``dtype`` is not allowed for ``op_type`` (None when it is)."""
    if dtype in DTYPES_BY_OP.get(op_type, ()):
        return None
    return _WHY.get((op_type, dtype), f"{op_type} cannot be {dtype}")


class QuantizationSpec(_Strict):
    rules: list[QuantRule] = Field(
        default_factory=lambda: [QuantRule(op_type="MatMul", dtype="int8")],
        description="op-wise rules, applied in order",
    )
    weight_granularity: Literal[WEIGHT_GRANULARITIES] = Field(  # type: ignore[valid-type]
        "per_tensor", description="MatMul weight scales, passed to INC's StaticQuantConfig (per_tensor only in 3.10)")

    @field_validator("weight_granularity")
    @classmethod
    def _granularity(cls, value: str) -> str:
        if value == "per_channel":
            raise ValueError("per_channel weights are not available for MatMul in INC 3.10 on TensorFlow "
                             "(its capability is per-tensor symmetric int8); use per_tensor")
        return value


class CalibrationSpec(_Strict):
    method: Literal[CALIBRATION_METHODS] = Field(  # type: ignore[valid-type]
        "kl", description="range selection for MatMul inputs")
    kl_mode: Literal[KL_MODES] = Field(  # type: ignore[valid-type]
        "symmetric", description="how KL thresholds treat the negative and positive sides (Bhandare et al. 2019)"
    )
    bins: int = Field(2048, ge=128, le=65536, description="histogram bins for KL")
    batch_size: int = Field(25, gt=0, description="calibration sentences per batch")


class CriterionSpec(_Strict):
    type: Literal[CRITERION_TYPES] = "absolute"  # type: ignore[valid-type]
    max_drop: float = Field(MAX_DROP, gt=0, description="BLEU points (absolute) or a fraction of FP32 BLEU (relative)")

    @model_validator(mode="after")
    def _range(self) -> CriterionSpec:
        if self.type == "relative" and self.max_drop >= 1:
            raise ValueError("a relative max_drop is a fraction of the FP32 score, below 1 (0.01 = 1%)")
        if self.type == "absolute" and self.max_drop > MAX_ABSOLUTE_DROP:
            raise ValueError(f"an absolute max_drop above {MAX_ABSOLUTE_DROP:g} BLEU points accepts almost any model, "
                             "so the check could not fail")
        return self


class TuningSpec(_Strict):
    engine: Literal[ENGINES] = Field(  # type: ignore[valid-type]
        "own", description="own: this package's tuner; inc: INC's autotune with this package's plug-ins (BLEU "
        "eval_fn, verified KL hook, backend kept, sensitivity fallback as INC configs); same report either way")
    metric: Literal["bleu"] = "bleu"
    criterion: CriterionSpec = Field(default_factory=CriterionSpec)
    max_trials: int = Field(20, gt=0)
    time_budget_min: float = Field(15.0, gt=0, description="wall-clock budget for the whole tuning")
    fallback: Literal[FALLBACKS] = Field(  # type: ignore[valid-type]
        "sensitivity", description="sensitivity: keep the most BLEU-sensitive MatMuls fp32 until the criterion holds"
    )
    granularity: Literal[GRANULARITIES] = Field(  # type: ignore[valid-type]
        "block", description="fallback unit: block (the MatMuls of one sublayer, e.g. layer_2/self_attention) or op"
    )
    sensitivity_sentences: int = Field(
        200, gt=0, description="tuning sentences used to measure each unit's sensitivity (the first N)"
    )


class OutputsSpec(_Strict):
    dir: str = Field("out/tuned", description="output directory (relative to the recipe file)")
    overwrite: Literal[OVERWRITE_POLICIES] = Field(  # type: ignore[valid-type]
        "never", description="never: refuse a non-empty output directory; replace: swap out a previous tune's output "
        "atomically (never a directory of other files or the FP32 model's; a failing tune writes DIR.failed "
        "instead of replacing a passing model)"
    )


class RuntimeSpec(_Strict):
    """How the tuned model is meant to run: written into its model.json, used by translate/evaluate/benchmark
    unless the command line says otherwise."""

    runtime: Literal[RUNTIMES] = Field(  # type: ignore[valid-type]
        "itex", description="TensorFlow with ITEX, stock TensorFlow, or stock with XLA auto-clustering (INT8 "
        "graphs need itex)")
    streams: int = Field(1, ge=1, description="parallel streams, each a process pinned to its own cores")
    threads_per_stream: int = Field(0, ge=0, description="intra-op threads per stream (0: the stream's cores)")
    max_tokens: int = Field(MAX_TOKENS, gt=0, description="padded source tokens per batch")
    max_sentences: int = Field(RUNTIME_MAX_SENTENCES, gt=0, description="sentences per batch (sorted by length, packed by token budget)")

    @field_validator("runtime")
    @classmethod
    def _int8_needs_itex(cls, value: str) -> str:
        if value in ("stock", "stock-xla"):
            raise ValueError("stock TensorFlow 2.15 cannot run INC's INT8 graphs of either backend (QDQ graphs need "
                             "ITEX; the default backend's in-loop quantized MatMuls fail without ITEX's kernels); "
                             "use itex")
        return value


class Recipe(_Strict):
    """A complete tuning recipe."""

    version: Literal[1] = Field(RECIPE_VERSION, description="recipe format version")
    model: ModelSpec
    data: DataSpec
    quantization: QuantizationSpec = Field(default_factory=QuantizationSpec)
    calibration: CalibrationSpec = Field(default_factory=CalibrationSpec)
    tuning: TuningSpec = Field(default_factory=TuningSpec)
    backend: Literal[BACKENDS] = Field(  # type: ignore[valid-type]
        "itex", description="itex (QDQ, fused by ITEX) or default (oneDNN)")
    passes: list[Literal[PASS_NAMES]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: list(DEFAULT_PASSES),
        description="exact graph passes run after tuning, in order ([] for none); BLEU and token identity are "
        "measured again after them and the model is kept without them if the criterion no longer holds")
    runtime: RuntimeSpec = Field(default_factory=RuntimeSpec)
    outputs: OutputsSpec = Field(default_factory=OutputsSpec)

