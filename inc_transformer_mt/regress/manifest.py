"""The baseline manifest (``manifest.json``) written next to a tuned INT8 model.

Human-readable JSON, versioned, committed by users with their model. It records what the model must keep:
its hash (and the FP32 model's), the recipe hash, FP32 and INT8 BLEU on named evaluation sets with the
sacreBLEU signature, the INT8/FP32 precision of every MatMul, optionally the INT8/FP32 speed ratio and how
it was measured, and the tolerances the check applies. No TensorFlow here.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from inc_transformer_mt.atomic import atomic_write
from inc_transformer_mt.errors import UserError

__all__ = [
    "MANIFEST_NAME",
    "MANIFEST_VERSION",
    "EvalSet",
    "Evaluation",
    "Manifest",
    "load_manifest",
    "sha256_file",
    "write_manifest",
]

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


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


class Manifest(_Strict):
    manifest_version: Literal[1] = MANIFEST_VERSION
    created: str
    model: ModelRef
    recipe_sha256: str | None = None
    backend: str
    criterion: dict[str, float | str]
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
        value = float(self.criterion["max_drop"])
        return value if self.criterion.get("type", "absolute") == "absolute" else value * fp32_bleu


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
        raise UserError(f"{path}: manifest not found (create one with `inc-mt regress --rebaseline`)") from None
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
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = {"extra_forbidden": "unknown key", "missing": "missing required key"}.get(err["type"], err["msg"])
        raise UserError(f"{path}: {key}: {msg}") from None


def write_manifest(manifest: Manifest, path: str | Path) -> Path:
    return atomic_write(Path(path), json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n")
