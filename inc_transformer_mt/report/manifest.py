"""The baseline manifest (``manifest.json``) written next to a tuned INT8 model.

Human-readable JSON, versioned, committed by users with their model. It records what the model must keep:
its hash (and the FP32 model's), the recipe hash, FP32 and INT8 BLEU on named evaluation sets with the
sacreBLEU signature, the INT8/FP32 precision of every MatMul, optionally the INT8/FP32 speed ratio and how
it was measured, and the tolerances the check applies. No TensorFlow here.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from inc_transformer_mt.atomic import atomic_write
from inc_transformer_mt.defaults import CRITERION_TYPES, MAX_ABSOLUTE_DROP
from inc_transformer_mt.errors import UserError
from inc_transformer_mt.metrics.criterion import Criterion
from inc_transformer_mt.recipe.loader import first_error
from inc_transformer_mt.report.tune_report import SetInfo, TuneReport

__all__ = [
    "MANIFEST_NAME",
    "MANIFEST_VERSION",
    "EvalSet",
    "Evaluation",
    "Manifest",
    "load_manifest",
    "manifest_from_report",
    "sha256_file",
    "write_manifest",
]

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # a NaN BLEU would make every check pass


class EvalSet(_Strict):
    """Sentences to score: a Multi30k split or a source/reference pair (paths relative to the manifest)."""

    split: str | None = None
    source: str | None = None
    reference: str | None = None
    src_lang: str = "en"
    tgt_lang: str = "de"
    start: int = Field(0, ge=0)
    size: int = Field(gt=0)

    def key(self) -> tuple:
        return (self.split, self.source, self.reference, self.src_lang, self.tgt_lang, self.start, self.size)


class Evaluation(_Strict):
    data: EvalSet
    fp32_bleu: float
    int8_bleu: float = Field(description="INT8 BLEU on the CPU class ``isa`` (the first one recorded)")
    signature: str
    isa: str | None = Field(None, description="CPU class int8_bleu was recorded on (None: older manifests, "
                            "compared on any CPU)")
    int8_bleu_by_isa: dict[str, float] = Field(
        default_factory=dict, description="INT8 BLEU per CPU class (INT8 kernels differ between AVX2, "
        "AVX512-VNNI and AMX, and so do the outputs); each class is compared only with its own value")

    def int8_expected(self, isa: str) -> float | None:
        """The INT8 BLEU recorded for CPU class ``isa``, or None when none was recorded for it."""
        if isa in self.int8_bleu_by_isa:
            return self.int8_bleu_by_isa[isa]
        if self.isa is None or self.isa == isa:
            return self.int8_bleu
        return None


class Speed(_Strict):
    int8_over_fp32: float = Field(gt=0, description="median INT8/FP32 throughput ratio, measured side by side")
    method: str
    floor: float = Field(gt=0, description="the check fails below this ratio")


class Tolerances(_Strict):
    bleu: float = Field(0.3, ge=0, description="allowed |INT8 BLEU - recorded INT8 BLEU|")
    speed_fraction: float = Field(0.8, gt=0, le=1, description="speed floor = recorded ratio x this, at rebaseline")


class ModelRef(_Strict):
    graph: str = Field(description="INT8 graph file, relative to the manifest")
    sha256: str
    fp32_model: str = Field(description="FP32 model (directory or graph), relative to the manifest")
    fp32_sha256: str


class CriterionRecord(_Strict):
    """The criterion the model was tuned to (``drop_vs_fp32`` checks it), bounded as in recipes."""

    type: Literal[CRITERION_TYPES]  # type: ignore[valid-type]
    max_drop: float = Field(gt=0, le=MAX_ABSOLUTE_DROP)

    @model_validator(mode="after")
    def _relative_below_one(self) -> CriterionRecord:
        if self.type == "relative" and self.max_drop >= 1:
            raise ValueError("a relative max_drop is a fraction of the FP32 score, below 1")
        return self


class Manifest(_Strict):
    manifest_version: Literal[1] = MANIFEST_VERSION
    created: str
    model: ModelRef
    recipe: str | None = Field(None, description="the recipe file the model was tuned with, relative to the manifest")
    recipe_sha256: str | None = Field(None, description="its hash then: regress warns when the file has changed")
    backend: str
    criterion: CriterionRecord
    signature: str
    evaluations: list[Evaluation] = Field(default_factory=list)
    matmul_precision: dict[str, Literal["int8", "fp32"]]
    speed: Speed | None = None
    tolerances: Tolerances = Field(default_factory=Tolerances)
    versions: dict[str, str] = Field(default_factory=dict)

    def find(self, data: EvalSet) -> Evaluation | None:
        for ev in self.evaluations:
            if ev.data.key() == data.key():
                return ev
        return None

    def allowed_drop(self, fp32_bleu: float) -> float:
        return Criterion(self.criterion.type, self.criterion.max_drop).allowed_drop(fp32_bleu)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_manifest(path: str | Path) -> Manifest:
    """Parse a manifest; any problem is a UserError naming the file and the key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: manifest not found (inc-mt tune writes one beside every passing model; --manifest names another)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read manifest ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: manifest is not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: a manifest is a JSON object")
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        raise UserError(f"{path}: {first_error(exc)}") from None


def write_manifest(manifest: Manifest, path: str | Path) -> Path:
    return atomic_write(Path(path), json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n")


def _rel(path: str | Path, base: Path) -> str:
    return os.path.relpath(Path(path).resolve(), base.resolve())


def manifest_from_report(report: TuneReport, *, out_dir: Path, graph: Path, fp32_graph: Path, recipe: Path,
                         src_lang: str, tgt_lang: str, isa: str) -> Manifest:
    """The manifest ``inc-mt tune`` writes next to a passing model: the held-out set first (the one
    ``regress`` checks), then the tuning set; paths relative to ``out_dir``, where the manifest will live.

    ``graph`` is the INT8 graph file as written (it may still be in a staging directory: only its name and
    hash are recorded).
    """
    if report.int8 is None:
        raise ValueError("a manifest is written for a passing tune only")

    def evaluation(s: SetInfo, fp32_bleu: float, int8_bleu: float) -> Evaluation:
        data = EvalSet(split=s.split, source=None if s.source is None else _rel(s.source, out_dir),
                       reference=None if s.reference is None else _rel(s.reference, out_dir),
                       src_lang=src_lang, tgt_lang=tgt_lang, start=s.start, size=s.size)
        return Evaluation(data=data, fp32_bleu=fp32_bleu, int8_bleu=int8_bleu, signature=report.signature, isa=isa,
                          int8_bleu_by_isa={isa: int8_bleu})

    evaluations = []
    if report.heldout is not None:
        evaluations.append(evaluation(report.heldout, report.heldout.fp32_bleu, report.heldout.int8_bleu))
    evaluations.append(evaluation(report.tuning_set, report.fp32.tuning_bleu, report.int8.tuning_bleu))
    return Manifest(
        created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        model=ModelRef(graph=graph.name, sha256=sha256_file(graph), fp32_model=_rel(fp32_graph, out_dir),
                       fp32_sha256=sha256_file(fp32_graph)),
        recipe=_rel(recipe, out_dir), recipe_sha256=sha256_file(recipe), backend=report.backend,
        criterion={"type": report.criterion.type, "max_drop": report.criterion.max_drop},
        signature=report.signature, evaluations=evaluations, matmul_precision=report.int8.matmul_precision,
        versions=report.versions,
    )
