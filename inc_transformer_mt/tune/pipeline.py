"""``inc-mt tune RECIPE``: recipe -> calibrated, accuracy-tuned INT8 graph, report, resolved recipe.

Steps: validate the recipe and the output directory (before any work); load the model and the three
sentence sets; score FP32 on the tuning set (cached by model, data and metric); collect activation
statistics over the calibration sentences (loop steps included) and choose ranges (KL mode or min/max);
run the tuner (INC ``quantize_model`` per trial, BLEU per trial, sensitivity fallback); score the
held-out set; write everything into a staging directory and move it into place. Exit 0 when the
criterion is met, 1 when no configuration meets it (the report says so and no model is written).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inc_transformer_mt import __version__
from inc_transformer_mt.atomic import atomic_write
from inc_transformer_mt.errors import UserError
from inc_transformer_mt.model.graph import source_node
from inc_transformer_mt.recipe import Recipe, dump_recipe, load_recipe, resolve_paths
from inc_transformer_mt.recipe.schema import SplitSpec
from inc_transformer_mt.regress.manifest import write_manifest

__all__ = ["TuneResult", "check_output_dir", "matmul_precision", "run_tune"]

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------ data
def load_split(recipe: Recipe, spec: SplitSpec, key: str) -> tuple[list[str], list[str]]:
    from inc_transformer_mt.data.corpus import multi30k_split, read_parallel

    d = recipe.data
    if spec.split is not None:
        src_path = multi30k_split(spec.split, d.src_lang, d.data_dir)
        ref_path = multi30k_split(spec.split, d.tgt_lang, d.data_dir)
    else:
        src_path, ref_path = Path(spec.source), Path(spec.reference)
    src, ref = read_parallel(src_path, ref_path)
    if spec.start + spec.size > len(src):
        raise UserError(f"data.{key}: start {spec.start} + size {spec.size} is past the end of {src_path} "
                        f"({len(src)} sentences)")
    return src[spec.start: spec.start + spec.size], ref[spec.start: spec.start + spec.size]


# ----------------------------------------------------------------------------------------------- output
def check_output_dir(out: Path, policy: str) -> None:
    """Refuse (exit 2) before any work when the output directory cannot be written under the policy."""
    if out.exists() and not out.is_dir():
        raise UserError(f"outputs.dir: {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and policy == "never":
        raise UserError(f"outputs.dir: {out} is not empty and outputs.overwrite is 'never' "
                        "(use --set outputs.overwrite=replace to replace it)")
    parent = out.parent
    if not parent.exists():
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"outputs.dir: cannot create {parent} ({exc.strerror})") from None
    if not os.access(parent, os.W_OK):
        raise UserError(f"outputs.dir: {parent} is not writable")


def publish_dir(staging: Path, out: Path, policy: str) -> None:
    """Move a finished staging directory to ``out`` (swapping out an old one under 'replace')."""
    if out.exists() and any(out.iterdir()):
        if policy == "never":
            raise UserError(f"outputs.dir: {out} appeared while tuning and outputs.overwrite is 'never'; "
                            f"the results are left in {staging}")
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(staging, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        if out.exists():
            out.rmdir()
        os.replace(staging, out)


# ---------------------------------------------------------------------------------------------- census
def matmul_precision(q_graph_def, matmuls: list[str]) -> dict[str, str]:
    """FP32 MatMul name -> 'int8' or 'fp32' in a quantized graph (QDQ for ITEX, fused ops for default)."""
    by_name = {n.name: n for n in q_graph_def.node}
    fused = [n.name for n in q_graph_def.node if n.op.startswith("Quantized") and "MatMul" in n.op]

    def from_dequantize(inp: str) -> bool:
        node = source_node(by_name, inp)
        return node is not None and node.op == "Dequantize"

    out = {}
    for mm in matmuls:
        node = by_name.get(mm)
        if node is not None and node.op == "MatMul":
            out[mm] = "int8" if from_dequantize(node.input[0]) and from_dequantize(node.input[1]) else "fp32"
        else:
            out[mm] = "int8" if any(f.startswith(mm + "_eightbit") for f in fused) else "fp32"
    return out


def graph_format(q_graph_def) -> str:
    """'fused' (default backend: QuantizedMatMul* ops), 'qdq' (ITEX: QuantizeV2/Dequantize around MatMul), or 'fp32'."""
    ops = {n.op for n in q_graph_def.node}
    if any(op.startswith("Quantized") and "MatMul" in op for op in ops):
        return "fused"
    return "qdq" if "Dequantize" in ops else "fp32"


def int8_matmul_count(graph_def) -> tuple[int, int]:
    """(INT8 MatMuls, all MatMuls) of a frozen graph in any of the formats of :func:`graph_format`."""
    by_name = {n.name: n for n in graph_def.node}

    def dq(inp: str) -> bool:
        node = source_node(by_name, inp)
        return node is not None and node.op == "Dequantize"

    fused = sum(1 for n in graph_def.node if n.op.startswith("Quantized") and "MatMul" in n.op)
    plain = [n for n in graph_def.node if n.op == "MatMul"]
    qdq = sum(1 for n in plain if dq(n.input[0]) and dq(n.input[1]))
    return fused + qdq, fused + len(plain)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"inc_transformer_mt": __version__, "python": platform.python_version()}
    for pkg in ("tensorflow", "intel-extension-for-tensorflow", "neural-compressor", "sacrebleu"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _machine() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "cpus": os.cpu_count()}
    try:
        import cpuinfo

        ci = cpuinfo.get_cpu_info()
        info["cpu"] = ci.get("brand_raw")
        flags = set(ci.get("flags", []))
        info["isa"] = sorted(f for f in flags if f in ("avx512f", "avx512_vnni", "avx512vnni", "avx512_bf16",
                                                         "amx_int8", "amx_tile", "avx_vnni"))
    except (ImportError, OSError, ValueError, KeyError) as exc:  # pragma: no cover - best effort
        logger.debug("no CPU details for the report: %s", exc)
    return info


# ----------------------------------------------------------------------------------------------- result
@dataclass
class TuneResult:
    status: str  # "passed" | "failed"
    out_dir: Path
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return 0 if self.status == "passed" else 1


def _cache_dir() -> Path:
    return Path(os.environ.get("INC_MT_CACHE", Path.home() / ".cache" / "inc_transformer_mt"))


def run_tune(recipe_path: str | Path, overrides: list[str] | None = None, *,
             log: Callable[[str], None] = print) -> TuneResult:
    recipe_path = Path(recipe_path)
    recipe = resolve_paths(load_recipe(recipe_path, overrides or ()), recipe_path.resolve().parent)
    out_dir = Path(recipe.outputs.dir)
    check_output_dir(out_dir, recipe.outputs.overwrite)
    t_start = time.perf_counter()
    walls: dict[str, float] = {}

    from inc_transformer_mt.inference.translate import Translator
    from inc_transformer_mt.metrics.bleu import score as bleu_score
    from inc_transformer_mt.model.graph import op_census, resolve_model
    from inc_transformer_mt.quant.calibrate import collect_stats
    from inc_transformer_mt.quant.inc_bridge import inc_quantize, requant_targets
    from inc_transformer_mt.quant.kl import kl_range
    from inc_transformer_mt.quant.sensitivity import fake_quant_graph, rank_units, units
    from inc_transformer_mt.tune.tuner import Criterion, Tuner

    m = recipe.model
    model = resolve_model(m.path, input_tensor=m.input_tensor, output_tensor=m.output_tensor, tokenizer=m.tokenizer)
    graph_bytes = model.graph_path.read_bytes() if model.graph_path.is_file() else b""
    fp32 = Translator(model)
    gd = fp32.graph_def
    d = recipe.data
    calib_src, _ = load_split(recipe, d.calibration, "calibration")
    tune_src, tune_ref = load_split(recipe, d.tuning, "tuning")
    held = load_split(recipe, d.heldout, "heldout") if d.heldout is not None else None

    def translate(tr, src, name):
        return tr.translate(src, max_tokens=d.max_tokens, max_sentences=d.max_sentences, source_name=name,
                            progress=False)

    # --- FP32 baseline (cached)
    t = time.perf_counter()
    key = _sha256(graph_bytes + json.dumps([model.meta.to_dict(), tune_src, tune_ref, d.max_tokens,
                                             d.max_sentences, library_versions()]).encode())
    cache_file = _cache_dir() / "baseline" / f"{key}.json"
    cached = None
    if cache_file.is_file():
        try:
            cached = json.loads(cache_file.read_text())
        except (OSError, json.JSONDecodeError):
            cached = None
    if cached is not None:
        fp32_hyps = cached["hyps"]
        log(f"FP32 baseline: cached ({cache_file})")
    else:
        fp32_hyps = translate(fp32, tune_src, "tuning source")
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(cache_file, json.dumps({"hyps": fp32_hyps}))
        except (OSError, UserError):
            logger.warning("could not write the baseline cache %s", cache_file)
    fp32_bleu = bleu_score(fp32_hyps, tune_ref)
    baseline = fp32_bleu.score
    walls["fp32_baseline_s"] = time.perf_counter() - t
    log(f"FP32 BLEU on the tuning set ({len(tune_src)} sentences): {baseline:.2f}")

    # --- calibration statistics and ranges
    t = time.perf_counter()
    cal = recipe.calibration
    ids = fp32.encode(calib_src, "calibration source")
    from inc_transformer_mt.data.batching import pad_batch

    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    batches = [pad_batch([ids[i] for i in order[k:k + cal.batch_size]], model.meta.pad_id)
               for k in range(0, len(order), cal.batch_size)]
    in_name, out_name = fp32.input_name, fp32.output_name
    stats = collect_stats(gd, in_name, out_name, batches, bins=cal.bins)
    all_mm = sorted(stats.matmul_input)
    tensor_range = {}
    for tensor, s in stats.stats.items():
        tensor_range[tensor] = kl_range(s, cal.kl_mode) if cal.method == "kl" else (s.minimum, s.maximum)
    mm_range = {mm: tensor_range[t_] for mm, t_ in stats.matmul_input.items()}
    requant = {mm: tensor_range[t_] for mm, t_ in requant_targets(gd, stats.matmul_input).items()}
    weights_n = {}
    by_name = {n.name: n for n in gd.node}
    from tensorflow.python.framework import tensor_util

    for mm in all_mm:
        w = source_node(by_name, by_name[mm].input[1])
        shape = tensor_util.MakeNdarray(w.attr["value"].tensor).shape
        weights_n[mm] = int(shape[-1])
    # FLOPs per MatMul over the calibration run: 2 * (elements of its input = rows * K) * N
    flops = {mm: 2.0 * float(stats.stats[stats.matmul_input[mm]].hist.sum()) * weights_n[mm] for mm in all_mm}
    walls["calibration_s"] = time.perf_counter() - t
    clipped = {t_: (s.minimum, s.maximum, tensor_range[t_]) for t_, s in stats.stats.items()}
    log(f"calibration: {stats.sentences} sentences, {len(stats.stats)} MatMul input tensors "
        f"({cal.method}{'/' + cal.kl_mode if cal.method == 'kl' else ''}), {walls['calibration_s']:.0f} s")

    # --- which MatMuls the recipe allows in INT8
    decision = {mm: "int8" for mm in all_mm}
    for rule in recipe.quantization.rules:
        if rule.op_type == "MatMul":
            decision = {mm: rule.dtype for mm in all_mm}
        elif rule.op_name is not None:
            rx = re.compile(rule.op_name)
            for mm in all_mm:
                if rx.match(mm):
                    decision[mm] = rule.dtype
    forced = sorted(mm for mm, v in decision.items() if v == "fp32")
    candidates = sorted(mm for mm, v in decision.items() if v == "int8")
    if not candidates:
        raise UserError(f"{recipe_path}: quantization.rules leave no MatMul in int8")

    from inc_transformer_mt.model.graph import loop_nodes

    loop = loop_nodes(gd)
    total_flops = sum(flops.values()) or 1.0

    def precision_of(q_gd):
        return matmul_precision(q_gd, all_mm)

    def quantize(fp32_ops):
        res = inc_quantize(gd, input_names=[in_name], output_names=[out_name] +
                           ([model.meta.score_tensor] if model.meta.score_tensor else []),
                           backend=recipe.backend, calib_batches=batches, fp32_ops=fp32_ops,
                           ranges=mm_range if cal.method == "kl" else None,
                           requant_ranges=requant if cal.method == "kl" else None)
        prec = precision_of(res.graph_def)
        n8 = sum(v == "int8" for v in prec.values())
        share = sum(flops[mm] for mm, v in prec.items() if v == "int8") / total_flops
        quantize.info[id(res.graph_def)] = (len(res.replaced_ranges), res.enter_fixes)  # small: no graphs kept
        return res.graph_def, n8, share, graph_format(res.graph_def)

    quantize.info = {}

    def evaluate(q_gd):
        with Translator(model, graph_def=q_gd) as tr:
            hyps = translate(tr, tune_src, "tuning source")
        return bleu_score(hyps, tune_ref).score

    n_sens = min(recipe.tuning.sensitivity_sentences, len(tune_src))
    sens_src = tune_src[:n_sens]
    sens_ref_hyps = fp32_hyps[:n_sens]

    def measure(ops):
        with Translator(model, graph_def=fake_quant_graph(gd, mm_range, ops)) as tr:
            hyps = translate(tr, sens_src, "tuning source")
        return 100.0 - bleu_score(hyps, sens_ref_hyps).score

    def rank():
        log(f"trial 1 missed the criterion: measuring the sensitivity of each {recipe.tuning.granularity} "
            f"on {n_sens} sentences")
        unit_ops = units(candidates, recipe.tuning.granularity)
        ranking = rank_units(unit_ops, measure, time.perf_counter)
        for s in ranking[:5]:
            log(f"  {s.unit}: {s.score:.2f}")
        return ranking

    tuning = recipe.tuning
    tuner = Tuner(baseline=baseline, criterion=Criterion(tuning.criterion.type, tuning.criterion.max_drop),
                  quantize=quantize, evaluate=evaluate, rank=rank, candidate_ops=candidates, forced_fp32=forced,
                  max_trials=tuning.max_trials, time_budget_s=tuning.time_budget_min * 60.0,
                  fallback=tuning.fallback, clock=time.perf_counter, log=log)
    t = time.perf_counter()
    outcome = tuner.run()
    walls["tuning_s"] = time.perf_counter() - t

    # --- held-out and report
    report: dict[str, Any] = {
        "status": "passed" if outcome.passed else "failed",
        "recipe": str(recipe_path),
        "model": {"path": str(model.graph_path), "sha256": _sha256(graph_bytes),
                  "input_tensor": in_name, "output_tensor": out_name},
        "backend": recipe.backend,
        "criterion": {"type": tuning.criterion.type, "max_drop": tuning.criterion.max_drop,
                      "allowed_drop_bleu": outcome.criterion.allowed_drop(baseline),
                      "text": outcome.criterion.describe(baseline)},
        "signature": fp32_bleu.signature,
        "tuning_set": {**d.tuning.model_dump(), "sentences": len(tune_src)},
        "fp32": {"tuning_bleu": round(baseline, 2)},
        "trials": [tr_.to_dict() for tr_ in outcome.trials],
        "stop_reason": outcome.stop_reason,
        "sensitivity": None if outcome.ranking is None else [
            {"unit": s.unit, "ops": s.ops, "score": round(s.score, 3), "seconds": round(s.seconds, 2)}
            for s in outcome.ranking],
        "calibration": {
            "method": cal.method, "kl_mode": cal.kl_mode if cal.method == "kl" else None, "bins": cal.bins,
            "sentences": stats.sentences, "batches": stats.batches, "tensors": len(stats.stats),
            "ranges": {t_: {"observed": [round(lo, 5), round(hi, 5)], "chosen": [round(r[0], 5), round(r[1], 5)],
                            "kept_fraction": round((r[1] - r[0]) / (hi - lo), 4) if hi > lo else 1.0}
                       for t_, (lo, hi, r) in sorted(clipped.items())},
        },
        "versions": library_versions(),
        "machine": _machine(),
    }
    best = outcome.best
    chosen, chosen_model = (best, outcome.best_model) if best is not None else (outcome.closest, outcome.closest_model)
    q_gd = chosen_model
    if chosen is not None:
        replaced, enter_fixes = quantize.info[id(chosen_model)]
        prec = precision_of(q_gd)
        census = op_census(q_gd).to_dict()
        mm_census = {"int8": {"outside_loop": 0, "inside_loop": 0}, "fp32": {"outside_loop": 0, "inside_loop": 0}}
        for mm, v in prec.items():
            mm_census[v]["inside_loop" if mm in loop else "outside_loop"] += 1
        # INT8 vs FP32 by op type, inside vs outside the loop: MatMuls as classified above; the other compute
        # types of the FP32 graph are never quantized by INC 3.10 on CPU (the recipe schema rejects int8 for them)
        fp32_census = op_census(gd).to_dict()["ops"]
        precision_census = {"MatMul": mm_census}
        for op in ("BatchMatMulV2", "Softmax", "LayerNorm", "GatherNd"):
            c = fp32_census.get(op, {"outside_loop": 0, "inside_loop": 0})
            precision_census[op] = {"int8": {"outside_loop": 0, "inside_loop": 0},
                                    "fp32": {"outside_loop": c["outside_loop"], "inside_loop": c["inside_loop"]}}
        report["int8" if best is not None else "closest_trial"] = {
            "tuning_bleu": round(chosen.bleu, 2), "drop": round(chosen.drop, 2), "trial": chosen.index,
            "matmuls_int8": chosen.int8_ops, "matmuls_total": len(all_mm),
            "matmul_flops_int8_share": round(chosen.int8_flops_share, 4),
            "matmul_precision": prec, "matmul_census": mm_census, "precision_census": precision_census,
            "op_census": census,
            "ranges_replaced": replaced, "enter_fixes": enter_fixes}
        if best is not None and recipe.passes:
            # post-tuning graph passes: BLEU measured again; kept only if the criterion still holds
            t = time.perf_counter()
            from inc_transformer_mt.passes import apply_passes

            p_gd, pass_reports = apply_passes(q_gd, recipe.passes)
            after = evaluate(p_gd)
            drop_after = baseline - after
            accepted = outcome.criterion.passes(baseline, after)
            report["passes"] = {"names": list(recipe.passes), "reports": pass_reports,
                                "tuning_bleu_before": round(chosen.bleu, 2), "tuning_bleu_after": round(after, 2),
                                "drop_after": round(drop_after, 2), "accepted": accepted}
            log(f"passes {', '.join(recipe.passes)}: tuning BLEU {chosen.bleu:.2f} -> {after:.2f} "
                f"({'kept' if accepted else 'rejected: criterion no longer holds, model written without them'})")
            if accepted:
                q_gd = p_gd
                report["int8"].update(tuning_bleu=round(after, 2), drop=round(drop_after, 2),
                                      op_census=op_census(q_gd).to_dict())
            walls["passes_s"] = time.perf_counter() - t
        if held is not None:
            # scored for information; a failing model's held-out score does not make it pass
            t = time.perf_counter()
            h_src, h_ref = held
            fp32_h = bleu_score(translate(fp32, h_src, "held-out source"), h_ref).score
            with Translator(model, graph_def=q_gd) as tr:
                int8_h = bleu_score(translate(tr, h_src, "held-out source"), h_ref).score
            report["heldout"] = {**d.heldout.model_dump(), "sentences": len(h_src), "fp32_bleu": round(fp32_h, 2),
                                 "int8_bleu": round(int8_h, 2), "drop": round(fp32_h - int8_h, 2),
                                 "int8_model": "tuned" if best is not None else f"closest trial {chosen.index} (rejected)"}
            walls["heldout_s"] = time.perf_counter() - t
    fp32.close()
    walls["total_s"] = time.perf_counter() - t_start
    report["wall_seconds"] = {k: round(v, 1) for k, v in walls.items()}

    # --- write atomically: staging directory, then rename
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.staging-", dir=out_dir.parent))
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(staging, 0o777 & ~mask)  # mkdtemp makes 0700 directories
    try:
        if best is not None:
            q_name = "model.pb.gz"
            atomic_write(staging / q_name, q_gd.SerializeToString(deterministic=True), gzip_level=6)
            meta = model.meta.to_dict()
            meta["tokenizer"] = "spm.model" if model.tokenizer_path else None
            applied = list(recipe.passes) if report.get("passes", {}).get("accepted") else []
            meta["model"] = {**(meta.get("model") or {}), "graph": q_name, "quantized": "int8",
                             "backend": recipe.backend, "source_sha256": _sha256(graph_bytes),
                             "passes": applied, "runtime": recipe.runtime.model_dump()}
            atomic_write(staging / "model.json", json.dumps(meta, indent=2) + "\n")
            if model.tokenizer_path:
                atomic_write(staging / "spm.model", Path(model.tokenizer_path).read_bytes())
            report["int8"]["graph"] = str(out_dir / q_name)
            write_manifest(_manifest(report, recipe, recipe_path, staging / q_name, model.graph_path, out_dir),
                           staging / "manifest.json")
        atomic_write(staging / "recipe.resolved.yaml", dump_recipe(recipe))
        atomic_write(staging / "report.json", json.dumps(report, indent=2) + "\n")
        atomic_write(staging / "report.md", render_markdown(report))
        publish_dir(staging, out_dir, recipe.outputs.overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return TuneResult(status=report["status"], out_dir=out_dir, report=report)


def _manifest(report, recipe: Recipe, recipe_path: Path, graph: Path, fp32_graph: Path, out_dir: Path):
    """The baseline manifest of a passing model: held-out (first) and tuning-set BLEU, census, hashes."""
    from inc_transformer_mt.regress.check import manifest_from_report
    from inc_transformer_mt.regress.manifest import EvalSet, Evaluation

    def eval_set(spec: SplitSpec) -> EvalSet:
        rel = (lambda p: os.path.relpath(p, out_dir)) if spec.split is None else (lambda p: None)
        return EvalSet(split=spec.split, source=rel(spec.source), reference=rel(spec.reference),
                       src_lang=recipe.data.src_lang, tgt_lang=recipe.data.tgt_lang, start=spec.start, size=spec.size)

    from inc_transformer_mt.runtime import isa_class

    isa = isa_class()

    def evaluation(spec: SplitSpec, fp32_bleu: float, int8_bleu: float) -> Evaluation:
        return Evaluation(data=eval_set(spec), fp32_bleu=fp32_bleu, int8_bleu=int8_bleu,
                          signature=report["signature"], isa=isa, int8_bleu_by_isa={isa: int8_bleu})

    evaluations = []
    if report.get("heldout"):
        h = report["heldout"]
        evaluations.append(evaluation(recipe.data.heldout, h["fp32_bleu"], h["int8_bleu"]))
    evaluations.append(evaluation(recipe.data.tuning, report["fp32"]["tuning_bleu"], report["int8"]["tuning_bleu"]))
    manifest = manifest_from_report(report, out_dir, graph, fp32_graph, _sha256(recipe_path.read_bytes()),
                                    evaluations)
    manifest.model.graph = graph.name
    return manifest


def render_markdown(r: dict[str, Any]) -> str:
    lines = [f"# INT8 tuning report: {r['status'].upper()}", ""]
    lines += [f"- recipe: `{r['recipe']}`", f"- model: `{r['model']['path']}` (sha256 {r['model']['sha256'][:12]}…)",
              f"- backend: {r['backend']}", f"- criterion: {r['criterion']['text']}",
              f"- sacreBLEU signature: `{r['signature']}`",
              f"- tuning set: {r['tuning_set']['sentences']} sentences; stop: {r['stop_reason']}", ""]
    lines += ["## BLEU", "", "| set | FP32 | INT8 | drop |", "|---|---|---|---|"]
    i8 = r.get("int8")
    close = r.get("closest_trial")
    if i8:
        lines.append(f"| tuning | {r['fp32']['tuning_bleu']:.2f} | {i8['tuning_bleu']:.2f} | {i8['drop']:+.2f} |")
    elif close:
        lines.append(f"| tuning | {r['fp32']['tuning_bleu']:.2f} | {close['tuning_bleu']:.2f} (closest trial "
                     f"{close['trial']}, rejected) | {close['drop']:+.2f} |")
    if r.get("heldout"):
        h = r["heldout"]
        lines.append(f"| held-out ({h['sentences']}) | {h['fp32_bleu']:.2f} | {h['int8_bleu']:.2f} | {h['drop']:+.2f} |")
    lines.append("")
    if r.get("passes"):
        ps = r["passes"]
        lines += [f"Graph passes {', '.join(ps['names'])}: tuning BLEU {ps['tuning_bleu_before']:.2f} before, "
                  f"{ps['tuning_bleu_after']:.2f} after (drop {ps['drop_after']:+.2f}); "
                  + ("kept." if ps["accepted"] else "**rejected** (criterion no longer holds): model written without them.")]
        lines += [f"- {p['pass']}: {p['rewritten']} rewritten, {len(p['skipped'])} left alone" for p in ps["reports"]]
        lines.append("")
    if i8:
        lines += [f"INT8 MatMuls: {i8['matmuls_int8']} of {i8['matmuls_total']} "
                  f"({i8['matmul_flops_int8_share']:.1%} of MatMul FLOPs); KL/min-max ranges frozen: "
                  f"{i8['ranges_replaced']}; loop Enter fixes: {i8['enter_fixes']}", "",
                  "| op type | INT8 outside loop | INT8 inside loop | FP32 outside loop | FP32 inside loop |",
                  "|---|---|---|---|---|"]
        for op, c in i8["precision_census"].items():
            lines.append(f"| {op} | {c['int8']['outside_loop']} | {c['int8']['inside_loop']} | "
                         f"{c['fp32']['outside_loop']} | {c['fp32']['inside_loop']} |")
        lines += ["", "All ops of the INT8 graph:", "", "| op | outside loop | inside loop |", "|---|---|---|"]
        for op, c in i8["op_census"]["ops"].items():
            lines.append(f"| {op} | {c['outside_loop']} | {c['inside_loop']} |")
        lines.append("")
    else:
        lines += ["**No configuration met the criterion. No model was written.**", ""]
        if close:
            lines += [f"Closest trial {close['trial']}: INT8 MatMuls {close['matmuls_int8']} of "
                      f"{close['matmuls_total']} ({close['matmul_flops_int8_share']:.1%} of MatMul FLOPs).", ""]
    lines += ["## Trials", "", "| # | FP32 units | FP32 MatMuls | INT8 MatMuls | FLOPs INT8 | BLEU | drop | pass | "
              "quantize s | evaluate s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for t in r["trials"]:
        share = "" if t["int8_flops_share"] is None else f"{t['int8_flops_share']:.1%}"
        lines.append(f"| {t['index']} | {len(t['fp32_units'])} | {len(t['fp32_ops'])} | {t['int8_ops']} | {share} | "
                     f"{t['bleu']:.2f} | {t['drop']:+.2f} | {'yes' if t['passed'] else 'no'} | "
                     f"{t['quantize_s']:.0f} | {t['evaluate_s']:.0f} |")
    if r.get("sensitivity"):
        lines += ["", "## Sensitivity (100 - BLEU against FP32 output, one unit simulated INT8)", "",
                  "| unit | MatMuls | score |", "|---|---|---|"]
        for s in r["sensitivity"]:
            lines.append(f"| `{s['unit']}` | {len(s['ops'])} | {s['score']:.2f} |")
    c = r["calibration"]
    kept = [v["kept_fraction"] for v in c["ranges"].values()]
    lines += ["", "## Calibration", "",
              f"{c['method']}{' (' + c['kl_mode'] + ')' if c['kl_mode'] else ''}, {c['sentences']} sentences in "
              f"{c['batches']} batches, {c['tensors']} MatMul input tensors, {c['bins']} bins per side; "
              f"median share of the observed range kept: {float(np.median(kept)) if kept else 1:.3f}", "",
              "## Environment", ""]
    lines += [f"- {k}: {v}" for k, v in r["versions"].items()]
    lines += [f"- machine: {r['machine'].get('cpu', '?')}, {r['machine'].get('cpus')} CPUs, "
              f"ISA {', '.join(r['machine'].get('isa', []))}"]
    lines += ["", "## Wall time (s)", ""] + [f"- {k}: {v}" for k, v in r["wall_seconds"].items()]
    return "\n".join(lines) + "\n"
