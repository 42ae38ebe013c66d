"""``inc-mt regress``: re-evaluate a tuned model against its manifest; exit 0 pass, 1 regression, 2 bad input.

Checks (each named in the output): the INT8 graph's hash, the FP32 model's hash, the sacreBLEU signature,
INT8 BLEU within tolerance of the recorded value, the drop vs FP32 within the criterion, every MatMul's
INT8/FP32 precision unchanged, and (``--speed``) the INT8/FP32 throughput ratio, measured side by side in
the same run, above its floor. ``--limit N`` scores the first N sentences of the recorded set (the manifest
must hold a value recorded on that subset). ``--rebaseline`` records the current state deliberately.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import statistics
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from inc_transformer_mt.atomic import atomic_write
from inc_transformer_mt.defaults import REGRESS_SPEED_REPS
from inc_transformer_mt.errors import UserError
from inc_transformer_mt.report.manifest import (
    MANIFEST_NAME,
    EvalSet,
    Evaluation,
    Manifest,
    Speed,
    load_manifest,
    sha256_file,
    write_manifest,
)

__all__ = ["Check", "RegressResult", "junit_xml", "render_table", "run_regress", "write_outputs"]


@dataclass
class Check:
    name: str
    status: str  # "pass" | "fail" | "skipped" | "warn" (shown, does not fail the run)
    measured: Any = None
    expected: Any = None
    detail: str = ""


@dataclass
class RegressResult:
    model: str
    manifest: str
    data: dict[str, Any]
    checks: list[Check] = field(default_factory=list)
    rebaselined: bool = False
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(c.status != "fail" for c in self.checks)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def to_dict(self) -> dict[str, Any]:
        return {"status": "pass" if self.passed else "regression", "model": self.model, "manifest": self.manifest,
                "data": self.data, "rebaselined": self.rebaselined, "seconds": round(self.seconds, 1),
                "checks": [asdict(c) for c in self.checks]}


def junit_xml(result: RegressResult) -> str:
    """JUnit XML: one testcase per check; failures carry the numbers."""
    suite = ET.Element("testsuite", name="inc-mt regress", tests=str(len(result.checks)),
                       failures=str(sum(c.status == "fail" for c in result.checks)),
                       skipped=str(sum(c.status == "skipped" for c in result.checks)),
                       time=f"{result.seconds:.1f}")
    for c in result.checks:
        case = ET.SubElement(suite, "testcase", classname=f"regress.{Path(result.model).name}", name=c.name)
        text = f"measured {c.measured!r}, expected {c.expected!r}. {c.detail}".strip()
        if c.status == "fail":
            ET.SubElement(case, "failure", message=text[:300]).text = text
        elif c.status == "skipped":
            ET.SubElement(case, "skipped", message=c.detail)
        elif c.status == "warn":
            ET.SubElement(case, "system-out").text = f"warning: {text}"
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def _eval_set(manifest: Manifest, limit: int | None) -> EvalSet:
    if not manifest.evaluations:
        raise UserError("manifest: evaluations: empty (no recorded BLEU to check against)")
    base = manifest.evaluations[0].data
    if limit is None:
        return base
    if limit < 1:
        raise UserError("--limit must be positive")
    return base.model_copy(update={"size": min(limit, base.size)})


def _load_pair(data: EvalSet, base: Path) -> tuple[list[str], list[str]]:
    from inc_transformer_mt.data.corpus import multi30k_split, read_parallel

    if data.split is not None:
        src, ref = multi30k_split(data.split, data.src_lang), multi30k_split(data.split, data.tgt_lang)
    elif data.source and data.reference:
        src, ref = base / data.source, base / data.reference
    else:
        raise UserError("manifest: evaluations.0.data: give a split or source and reference")
    s, r = read_parallel(src, ref)
    if data.start + data.size > len(s):
        raise UserError(f"manifest: evaluation set {data.start}+{data.size} is past the end of {src} ({len(s)} lines)")
    return s[data.start: data.start + data.size], r[data.start: data.start + data.size]


def _recipe_check(manifest: Manifest, base: Path) -> Check:
    """Warn when the recipe the model was tuned with has changed since (the model may no longer be what the
    recipe makes); skipped when the manifest names no recipe or the file is not there."""
    if manifest.recipe is None or manifest.recipe_sha256 is None:
        return Check("recipe_sha256", "skipped", detail="the manifest names no recipe file")
    path = base / manifest.recipe
    if not path.is_file():
        return Check("recipe_sha256", "skipped", detail=f"recipe {path} not found")
    digest = sha256_file(path)
    if digest == manifest.recipe_sha256:
        return Check("recipe_sha256", "pass", digest[:16], manifest.recipe_sha256[:16])
    return Check("recipe_sha256", "warn", digest[:16], manifest.recipe_sha256[:16],
                 f"{manifest.recipe} changed since this model was tuned; re-tune (and re-baseline) to ship what "
                 "the recipe now makes")


@dataclass
class _Subject:
    """What is checked: the manifest, both models, and the evaluation set."""

    model_dir: Path
    manifest_path: Path
    manifest: Manifest
    int8: Any  # ResolvedModel
    fp32: Any  # ResolvedModel
    data: EvalSet
    recorded: Evaluation | None  # the manifest's values for ``data`` (None: only --rebaseline can run)
    limit: int | None

    @property
    def base(self) -> Path:
        return self.manifest_path.resolve().parent


def _load_subject(model_dir: Path, manifest_path: Path, limit: int | None, rebaseline: bool,
                  overrides: dict[str, str | None]) -> _Subject:
    """Stage 1: manifest, models and evaluation set, all checked before anything runs."""
    from inc_transformer_mt.model.graph import resolve_model

    manifest = load_manifest(manifest_path)
    base = manifest_path.resolve().parent
    int8 = resolve_model(model_dir, **overrides)
    fp32 = resolve_model(base / manifest.model.fp32_model, **overrides)
    if not int8.graph_path.is_file():
        raise UserError(f"{int8.graph_path}: INT8 model file not found")
    if not fp32.graph_path.is_file():
        raise UserError(f"{manifest_path}: model.fp32_model: {fp32.graph_path} not found")
    data = _eval_set(manifest, limit)
    recorded = manifest.find(data)
    if recorded is None and not rebaseline:
        raise UserError(f"{manifest_path}: no BLEU recorded for {data.split or data.source} sentences "
                        f"{data.start}-{data.start + data.size}; record it deliberately with "
                        f"`inc-mt regress {model_dir} --rebaseline" + (f" --limit {limit}`" if limit else "`"))
    return _Subject(model_dir, manifest_path, manifest, int8, fp32, data, recorded, limit)


@dataclass
class _Digests:
    int8: str
    fp32: str

    def same_as(self, manifest: Manifest) -> bool:
        return self.int8 == manifest.model.sha256 and self.fp32 == manifest.model.fp32_sha256


def _hash_checks(s: _Subject) -> tuple[_Digests, list[Check]]:
    """Stage 2: the INT8 and FP32 graph files, and the recipe, against their recorded hashes."""
    d = _Digests(sha256_file(s.int8.graph_path), sha256_file(s.fp32.graph_path))
    rec = s.manifest.model
    return d, [
        Check("model_sha256", "pass" if d.int8 == rec.sha256 else "fail", d.int8[:16], rec.sha256[:16],
              "" if d.int8 == rec.sha256 else f"{s.int8.graph_path.name} is not the file the manifest was recorded for"),
        Check("fp32_model_sha256", "pass" if d.fp32 == rec.fp32_sha256 else "fail", d.fp32[:16], rec.fp32_sha256[:16],
              "" if d.fp32 == rec.fp32_sha256 else "the FP32 reference the drop is measured against changed"),
        _recipe_check(s.manifest, s.base)]


@dataclass
class _Measurement:
    fp32: Any  # metrics.bleu.BleuResult
    int8: Any
    census: dict[str, str]
    sentences: int
    ratio: float | None  # median INT8/FP32 sentences/s (with --speed)

    @property
    def drop(self) -> float:
        return self.fp32.score - self.int8.score


def _measure(s: _Subject, speed: bool, speed_reps: int, log: Callable[[str], None]) -> _Measurement:
    """Stage 3: BLEU of both models on the set, the INT8 graph's MatMul census, optionally the speed ratio."""
    from inc_transformer_mt.inference.translate import Translator
    from inc_transformer_mt.metrics.bleu import score as bleu_score
    from inc_transformer_mt.model.analysis import matmul_precision

    src, ref = _load_pair(s.data, s.base)
    log(f"scoring FP32 and INT8 on {len(src)} sentences"
        + (f" (first {len(src)} of the recorded set: a subset, for the CI budget)" if s.limit is not None else ""))
    with Translator(s.fp32) as fp32, Translator(s.int8) as int8:
        fp32_b = bleu_score(fp32.translate(src, progress=False), ref)
        int8_b = bleu_score(int8.translate(src, progress=False), ref)
        ratio = None
        if speed:
            runs: dict[str, list[float]] = {"fp32": [], "int8": []}
            for _ in range(speed_reps):  # alternating, after the scoring runs above warmed both up
                for name, tr in (("fp32", fp32), ("int8", int8)):
                    t = time.perf_counter()
                    tr.translate(src, progress=False)
                    runs[name].append(len(src) / (time.perf_counter() - t))
            ratio = statistics.median(runs["int8"]) / statistics.median(runs["fp32"])
        census = matmul_precision(int8.graph_def, sorted(s.manifest.matmul_precision))
    return _Measurement(fp32_b, int8_b, census, len(src), ratio)


def _int8_bleu_check(s: _Subject, m: _Measurement, isa: str) -> Check | None:
    if s.recorded is None:
        return None
    tol, expected = s.manifest.tolerances.bleu, s.recorded.int8_expected(isa)
    if expected is None:
        known = sorted({*s.recorded.int8_bleu_by_isa, *([s.recorded.isa] if s.recorded.isa else [])})
        return Check("int8_bleu", "skipped", round(m.int8.score, 2), None,
                     f"no INT8 BLEU recorded for CPU class {isa} (recorded: {', '.join(known)}); INT8 kernels differ "
                     "by CPU class, so the drop check below guards quality here; record this class with --rebaseline")
    diff = m.int8.score - expected
    return Check("int8_bleu", "pass" if abs(diff) <= tol + 1e-9 else "fail", round(m.int8.score, 2),
                 f"{expected:.2f} ± {tol:g}", f"difference {diff:+.2f} (CPU class {isa})")


def _census_check(s: _Subject, m: _Measurement) -> Check:
    recorded = s.manifest.matmul_precision
    changed = {op: (recorded[op], m.census[op]) for op in m.census if m.census[op] != recorded[op]}
    n8, n8_rec = (sum(v == "int8" for v in c.values()) for c in (m.census, recorded))
    return Check("int8_census", "fail" if changed else "pass", f"{n8} INT8 MatMuls", f"{n8_rec} INT8 MatMuls",
                 "; ".join(f"{op}: {a} -> {b}" for op, (a, b) in sorted(changed.items())))


def _speed_check(s: _Subject, m: _Measurement, speed_reps: int) -> Check:
    if m.ratio is None:
        return Check("speed_ratio", "skipped", None, None, "not measured (use --speed; CI machines are noisy)")
    if s.manifest.speed is None:
        return Check("speed_ratio", "skipped", round(m.ratio, 3), None,
                     "no recorded speed ratio; record one with --rebaseline --speed")
    floor = s.manifest.speed.floor
    return Check("speed_ratio", "pass" if m.ratio >= floor else "fail", round(m.ratio, 3), f">= {floor:.3f}",
                 f"median INT8/FP32 sentences/s over {speed_reps} alternating runs each, same process")


MEASURED_CHECKS = ("bleu_signature", "int8_bleu", "drop_vs_fp32", "int8_census", "speed_ratio")


def _measured_checks(s: _Subject, m: _Measurement, isa: str, speed_reps: int) -> list[Check]:
    """Stage 4: the measurement against the manifest."""
    sig_ok = m.int8.signature == s.manifest.signature
    allowed = s.manifest.allowed_drop(m.fp32.score)
    checks = [Check("bleu_signature", "pass" if sig_ok else "fail", "same" if sig_ok else m.int8.signature,
                    "recorded" if sig_ok else s.manifest.signature,
                    "" if sig_ok else "BLEU is computed differently from the recorded value"),
              _int8_bleu_check(s, m, isa),
              Check("drop_vs_fp32", "pass" if m.drop <= allowed + 1e-9 else "fail", round(m.drop, 2),
                    f"<= {allowed:g}", f"FP32 {m.fp32.score:.2f}, INT8 {m.int8.score:.2f}"),
              _census_check(s, m), _speed_check(s, m, speed_reps)]
    return [c for c in checks if c is not None]


def _rebaselined(s: _Subject, m: _Measurement, digests: _Digests, isa: str, speed_reps: int) -> Manifest:
    """Stage 5 (``--rebaseline``): the manifest with the values measured now."""
    manifest, data = s.manifest, s.data
    evals = [e for e in manifest.evaluations if e.data.key() != data.key()]
    # values of other CPU classes stay valid only for the same graph, BLEU definition and FP32 reference
    others: dict[str, float] = {}
    if digests.same_as(manifest) and m.int8.signature == manifest.signature and s.recorded is not None:
        others = dict(s.recorded.int8_bleu_by_isa)
        if s.recorded.isa is not None:
            others.setdefault(s.recorded.isa, s.recorded.int8_bleu)
    new_eval = Evaluation(data=data, fp32_bleu=round(m.fp32.score, 2), int8_bleu=round(m.int8.score, 2),
                          signature=m.int8.signature, isa=isa, int8_bleu_by_isa={**others, isa: round(m.int8.score, 2)})
    evals.insert(0 if data.key() == manifest.evaluations[0].data.key() else len(evals), new_eval)
    update: dict[str, Any] = {
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "model": manifest.model.model_copy(update={"sha256": digests.int8, "fp32_sha256": digests.fp32}),
        "signature": m.int8.signature, "evaluations": evals, "matmul_precision": m.census}
    if m.ratio is not None:
        update["speed"] = Speed(int8_over_fp32=round(m.ratio, 3),
                                floor=round(m.ratio * manifest.tolerances.speed_fraction, 3),
                                method=f"median sentences/s INT8 over FP32, {speed_reps} alternating runs each on "
                                       f"{m.sentences} sentences, one process, {os.cpu_count()} CPUs")
    return manifest.model_copy(update=update)


def run_regress(model_dir: str | Path, manifest_path: str | Path | None = None, *, limit: int | None = None,
                speed: bool = False, speed_reps: int = REGRESS_SPEED_REPS, rebaseline: bool = False,
                input_tensor: str | None = None, output_tensor: str | None = None, tokenizer: str | None = None,
                log: Callable[[str], None] = lambda s: None) -> RegressResult:
    """Re-measure a tuned model against its manifest (see the module docstring).

    ``input_tensor`` / ``output_tensor`` / ``tokenizer`` override the models' model.json (both models).
    """
    from inc_transformer_mt.env import isa_class

    if speed_reps < 1:
        raise UserError(f"--speed-reps must be at least 1 (got {speed_reps})")
    t0 = time.perf_counter()
    model_dir = Path(model_dir)
    manifest_path = Path(manifest_path) if manifest_path else model_dir / MANIFEST_NAME
    overrides = {"input_tensor": input_tensor, "output_tensor": output_tensor, "tokenizer": tokenizer}
    subject = _load_subject(model_dir, manifest_path, limit, rebaseline, overrides)
    digests, checks = _hash_checks(subject)
    if checks[-1].status == "warn":
        log(f"warning: {checks[-1].detail}")
    isa = isa_class()
    changed = [c.name for c in checks if c.name in ("model_sha256", "fp32_model_sha256") and c.status == "fail"]
    try:
        measured = _measure(subject, speed, speed_reps, log)
    except UserError as exc:
        if not changed or rebaseline:
            raise
        # a graph that changed and no longer loads (a flipped byte): the hash check above is the failure to
        # report, with the table and the JUnit file, not an input error
        checks += [Check(name, "skipped", detail=f"not measured: {' and '.join(changed)} failed and the graph "
                         f"does not load ({exc})") for name in MEASURED_CHECKS]
        measured = None
    if measured is not None:
        checks += _measured_checks(subject, measured, isa, speed_reps)
    result = RegressResult(model=str(model_dir), manifest=str(manifest_path), checks=checks,
                           data={**subject.data.model_dump(), "subset_of_recorded_set": limit is not None,
                                 "cpu_isa_class": isa})
    if rebaseline:
        write_manifest(_rebaselined(subject, measured, digests, isa, speed_reps), manifest_path)
        result.rebaselined = True
        log(f"manifest re-baselined: {manifest_path}")
    result.seconds = time.perf_counter() - t0
    return result


def render_table(result: RegressResult) -> str:
    rows = [("check", "status", "measured", "expected", "detail")]
    for c in result.checks:
        rows.append((c.name, c.status.upper(), "" if c.measured is None else str(c.measured),
                     "" if c.expected is None else str(c.expected), c.detail))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(4)) + "  " + r[4] for r in rows]
    d = result.data
    where = d.get("split") or d.get("source")
    lines.append(f"data: {where} sentences {d['start']}-{d['start'] + d['size']}"
                 + (" (a subset of the recorded set)" if d.get("subset_of_recorded_set") else ""))
    failed = [c.name for c in result.checks if c.status == "fail"]
    lines.append("REGRESSION: " + ", ".join(failed) if failed else "PASS")
    return "\n".join(lines) + "\n"


def write_outputs(result: RegressResult, json_path: str | None, junit_path: str | None) -> None:
    if json_path:
        atomic_write(Path(json_path), json.dumps(result.to_dict(), indent=2) + "\n")
    if junit_path:
        atomic_write(Path(junit_path), junit_xml(result))
