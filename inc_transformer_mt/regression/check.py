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


def run_regress(model_dir: str | Path, manifest_path: str | Path | None = None, *, limit: int | None = None,
                speed: bool = False, speed_reps: int = REGRESS_SPEED_REPS, rebaseline: bool = False,
                input_tensor: str | None = None, output_tensor: str | None = None, tokenizer: str | None = None,
                log: Callable[[str], None] = lambda s: None) -> RegressResult:
    """Re-measure a tuned model against its manifest (see the module docstring).

    ``input_tensor`` / ``output_tensor`` / ``tokenizer`` override the models' model.json (both models).
    """
    from inc_transformer_mt.env import isa_class
    from inc_transformer_mt.inference.translate import Translator
    from inc_transformer_mt.metrics.bleu import score as bleu_score
    from inc_transformer_mt.model.analysis import matmul_precision
    from inc_transformer_mt.model.graph import resolve_model

    overrides = {"input_tensor": input_tensor, "output_tensor": output_tensor, "tokenizer": tokenizer}

    t0 = time.perf_counter()
    model_dir = Path(model_dir)
    manifest_path = Path(manifest_path) if manifest_path else model_dir / MANIFEST_NAME
    manifest = load_manifest(manifest_path)
    base = manifest_path.resolve().parent
    int8_model = resolve_model(model_dir, **overrides)
    fp32_path = base / manifest.model.fp32_model
    fp32_model = resolve_model(fp32_path, **overrides)
    graph = int8_model.graph_path
    if not graph.is_file():
        raise UserError(f"{graph}: INT8 model file not found")
    if not fp32_model.graph_path.is_file():
        raise UserError(f"{manifest_path}: model.fp32_model: {fp32_model.graph_path} not found")
    data = _eval_set(manifest, limit)
    result = RegressResult(model=str(model_dir), manifest=str(manifest_path),
                           data={**data.model_dump(), "subset_of_recorded_set": limit is not None})
    checks = result.checks

    digest = sha256_file(graph)
    fp32_digest = sha256_file(fp32_model.graph_path)
    checks.append(Check("model_sha256", "pass" if digest == manifest.model.sha256 else "fail", digest[:16],
                        manifest.model.sha256[:16], "" if digest == manifest.model.sha256 else
                        f"{graph.name} is not the file the manifest was recorded for"))
    checks.append(Check("fp32_model_sha256", "pass" if fp32_digest == manifest.model.fp32_sha256 else "fail",
                        fp32_digest[:16], manifest.model.fp32_sha256[:16], "" if fp32_digest == manifest.model.fp32_sha256
                        else "the FP32 reference the drop is measured against changed"))

    checks.append(_recipe_check(manifest, base))
    if checks[-1].status == "warn":
        log(f"warning: {checks[-1].detail}")
    src, ref = _load_pair(data, base)
    log(f"scoring FP32 and INT8 on {len(src)} sentences"
        + (f" (first {len(src)} of the recorded set: a subset, for the CI budget)" if limit is not None else ""))
    with Translator(fp32_model) as fp32, Translator(int8_model) as int8:
        fp32_hyp = fp32.translate(src, progress=False)
        int8_hyp = int8.translate(src, progress=False)
        fp32_b, int8_b = bleu_score(fp32_hyp, ref), bleu_score(int8_hyp, ref)
        ratio = None
        if speed:
            runs: dict[str, list[float]] = {"fp32": [], "int8": []}
            for _ in range(speed_reps):  # alternating, after the scoring runs above warmed both up
                for name, tr in (("fp32", fp32), ("int8", int8)):
                    t = time.perf_counter()
                    tr.translate(src, progress=False)
                    runs[name].append(len(src) / (time.perf_counter() - t))
            ratio = statistics.median(runs["int8"]) / statistics.median(runs["fp32"])
        census = matmul_precision(int8.graph_def, sorted(manifest.matmul_precision))

    sig_ok = int8_b.signature == manifest.signature
    checks.append(Check("bleu_signature", "pass" if sig_ok else "fail", "same" if sig_ok else int8_b.signature,
                        "recorded" if sig_ok else manifest.signature,
                        "" if sig_ok else "BLEU is computed differently from the recorded value"))
    recorded = manifest.find(data)
    drop = fp32_b.score - int8_b.score
    if recorded is None and not rebaseline:
        raise UserError(f"{manifest_path}: no BLEU recorded for {data.split or data.source} sentences "
                        f"{data.start}-{data.start + data.size}; record it deliberately with "
                        f"`inc-mt regress {model_dir} --rebaseline" + (f" --limit {limit}`" if limit else "`"))
    isa = isa_class()
    result.data["cpu_isa_class"] = isa
    if recorded is not None:
        tol = manifest.tolerances.bleu
        expected = recorded.int8_expected(isa)
        if expected is None:
            known = sorted({*recorded.int8_bleu_by_isa, *([recorded.isa] if recorded.isa else [])})
            checks.append(Check("int8_bleu", "skipped", round(int8_b.score, 2), None,
                                f"no INT8 BLEU recorded for CPU class {isa} (recorded: {', '.join(known)}); INT8 "
                                f"kernels differ by CPU class, so the drop check below guards quality here; record "
                                f"this class with --rebaseline"))
        else:
            diff = int8_b.score - expected
            checks.append(Check("int8_bleu", "pass" if abs(diff) <= tol + 1e-9 else "fail", round(int8_b.score, 2),
                                f"{expected:.2f} ± {tol:g}", f"difference {diff:+.2f} (CPU class {isa})"))
    allowed = manifest.allowed_drop(fp32_b.score)
    checks.append(Check("drop_vs_fp32", "pass" if drop <= allowed + 1e-9 else "fail", round(drop, 2),
                        f"<= {allowed:g}", f"FP32 {fp32_b.score:.2f}, INT8 {int8_b.score:.2f}"))
    changed = {op: (manifest.matmul_precision[op], census[op]) for op in census
               if census[op] != manifest.matmul_precision[op]}
    n8 = sum(v == "int8" for v in census.values())
    n8_rec = sum(v == "int8" for v in manifest.matmul_precision.values())
    checks.append(Check("int8_census", "fail" if changed else "pass", f"{n8} INT8 MatMuls", f"{n8_rec} INT8 MatMuls",
                        "; ".join(f"{op}: {a} -> {b}" for op, (a, b) in sorted(changed.items()))))
    if speed:
        if manifest.speed is None:
            checks.append(Check("speed_ratio", "skipped", round(ratio, 3), None,
                                "no recorded speed ratio; record one with --rebaseline --speed"))
        else:
            ok = ratio >= manifest.speed.floor
            checks.append(Check("speed_ratio", "pass" if ok else "fail", round(ratio, 3),
                                f">= {manifest.speed.floor:.3f}", f"median INT8/FP32 sentences/s over {speed_reps} "
                                "alternating runs each, same process"))
    else:
        checks.append(Check("speed_ratio", "skipped", None, None, "not measured (use --speed; CI machines are noisy)"))

    if rebaseline:
        evals = [e for e in manifest.evaluations if e.data.key() != data.key()]
        # values of other CPU classes stay valid only for the same graph, BLEU definition and FP32 reference
        same = (digest == manifest.model.sha256 and fp32_digest == manifest.model.fp32_sha256 and sig_ok
                and recorded is not None)
        others = {}
        if same:
            others = dict(recorded.int8_bleu_by_isa)
            if recorded.isa is not None:
                others.setdefault(recorded.isa, recorded.int8_bleu)
        new_eval = Evaluation(data=data, fp32_bleu=round(fp32_b.score, 2), int8_bleu=round(int8_b.score, 2),
                              signature=int8_b.signature, isa=isa,
                              int8_bleu_by_isa={**others, isa: round(int8_b.score, 2)})
        if data.key() == manifest.evaluations[0].data.key():
            evals.insert(0, new_eval)
        else:
            evals.append(new_eval)
        update: dict[str, Any] = {
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "model": manifest.model.model_copy(update={"sha256": digest, "fp32_sha256": fp32_digest}),
            "signature": int8_b.signature, "evaluations": evals, "matmul_precision": census}
        if ratio is not None:
            update["speed"] = Speed(int8_over_fp32=round(ratio, 3), floor=round(ratio * manifest.tolerances.speed_fraction, 3),
                                    method=f"median sentences/s INT8 over FP32, {speed_reps} alternating runs each on "
                                           f"{len(src)} sentences, one process, {os.cpu_count()} CPUs")
        write_manifest(manifest.model_copy(update=update), manifest_path)
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
