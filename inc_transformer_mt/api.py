"""The public Python API: what the ``inc-mt`` commands do, callable from code.

``tune``, ``translate``, ``evaluate``, ``regress`` and ``benchmark`` (exported from the package root). The CLI
is a thin wrapper: it turns its option groups into the option objects below and calls these functions, so
both behave the same. TensorFlow is imported only when a function runs a graph.

    >>> import inc_transformer_mt as mt
    >>> mt.translate(["A dog runs."])                                  # the reference model
    >>> mt.evaluate(data=mt.DataOptions(split="val", limit=100)).bleu
    >>> result = mt.tune("recipes/reference_kl.yaml", ["tuning.criterion.max_drop=0.3"])
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inc_transformer_mt.atomic import atomic_write, check_output_path
from inc_transformer_mt.defaults import MAX_SENTENCES, MAX_TOKENS, PLUGIN_DIVERGENCE_MAX, SPLIT, SRC_LANG, TGT_LANG
from inc_transformer_mt.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    from inc_transformer_mt.bench.benchmark import BenchmarkReport, Grid
    from inc_transformer_mt.model.graph import ResolvedModel
    from inc_transformer_mt.quant.plan import QuantPlan
    from inc_transformer_mt.regression.check import RegressResult
    from inc_transformer_mt.tuning.pipeline import TuneResult

__all__ = [
    "DEFAULT_RECIPE",
    "REFERENCE_INT8",
    "REFERENCE_MODEL",
    "DataOptions",
    "EvaluationResult",
    "ModelOptions",
    "RunOptions",
    "benchmark",
    "evaluate",
    "import_model",
    "open_translator",
    "optimized_model",
    "plan",
    "regress",
    "translate",
    "tune",
    "validate",
]

_PACKAGE = Path(__file__).resolve().parent
REFERENCE_MODEL = _PACKAGE / "reference"
REFERENCE_INT8 = _PACKAGE / "reference_int8"
DEFAULT_RECIPE = _PACKAGE.parent / "recipes" / "reference_kl.yaml"

Log = Callable[[str], None]


# ---------------------------------------------------------------------------------------------- options
@dataclass(frozen=True)
class ModelOptions:
    """A frozen translation graph: a model directory (with model.json) or a .pb/.pb.gz file, plus overrides
    of its tensor names and tokenizer (needed for a graph without model.json)."""

    path: str | Path = REFERENCE_MODEL
    input_tensor: str | None = None
    output_tensor: str | None = None
    tokenizer: str | Path | None = None

    def resolve(self) -> ResolvedModel:
        from inc_transformer_mt.model.graph import resolve_model

        return resolve_model(self.path, input_tensor=self.input_tensor, output_tensor=self.output_tensor,
                             tokenizer=self.tokenizer)

    def with_path(self, path: str | Path) -> ModelOptions:
        return ModelOptions(path, self.input_tensor, self.output_tensor, self.tokenizer)


@dataclass(frozen=True)
class DataOptions:
    """Sentences to translate and score: a Multi30k split, or source (and reference) files."""

    split: str = SPLIT
    source: str | Path | None = None
    reference: str | Path | None = None
    data_dir: str | Path | None = None
    src_lang: str = SRC_LANG
    tgt_lang: str = TGT_LANG
    limit: int | None = None

    def files(self) -> tuple[Path, Path | None, str]:
        """(source file, reference file or None, a label for reports)."""
        from inc_transformer_mt.data.corpus import multi30k_split

        if self.source is not None:
            return Path(self.source), None if self.reference is None else Path(self.reference), str(self.source)
        if self.reference is not None:
            raise UserError("--reference needs --source")
        return (multi30k_split(self.split, self.src_lang, self.data_dir),
                multi30k_split(self.split, self.tgt_lang, self.data_dir), f"multi30k/{self.split}")

    def load(self, *, need_reference: bool) -> tuple[list[str], list[str] | None, str]:
        """(sources, references or None, label), cut to ``limit``; a reference is required when asked for."""
        src_path, ref_path, label = self.files()
        src, ref = self.read(src_path, ref_path, need_reference=need_reference)
        return src, ref, label

    def read(self, src_path: Path, ref_path: Path | None, *,
             need_reference: bool) -> tuple[list[str], list[str] | None]:
        """The sentences of :meth:`files`' paths, cut to ``limit``."""
        from inc_transformer_mt.data.corpus import read_lines, read_parallel

        if need_reference and ref_path is None:
            raise UserError("--source needs --reference here (BLEU is scored against it)")
        if ref_path is not None:
            src, ref = read_parallel(src_path, ref_path)
        else:
            src, ref = read_lines(src_path, what="source file"), None
        if self.limit is not None:
            if self.limit < 1:
                raise UserError("--limit must be positive")
            src, ref = src[: self.limit], None if ref is None else ref[: self.limit]
        if not src:
            raise UserError(f"{src_path}: no sentences to translate")
        return src, ref


@dataclass(frozen=True)
class RunOptions:
    """How to run a graph. None means: the model's ``runtime`` settings in model.json, else the defaults
    (in this process, TensorFlow's threads, batches of defaults.MAX_TOKENS tokens / MAX_SENTENCES sentences)."""

    max_tokens: int | None = None
    max_sentences: int | None = None
    streams: int | None = None
    runtime: str | None = None
    threads: int | None = None
    progress: bool | None = False

    def settled(self, model: ResolvedModel) -> RunOptions:
        """Every None filled in from the model's model.json runtime settings, else the defaults."""
        rt = (model.meta.model or {}).get("runtime") or {}
        out = RunOptions(
            max_tokens=self.max_tokens if self.max_tokens is not None else int(rt.get("max_tokens", MAX_TOKENS)),
            max_sentences=self.max_sentences if self.max_sentences is not None else int(rt.get("max_sentences",
                                                                                              MAX_SENTENCES)),
            streams=self.streams if self.streams is not None else int(rt.get("streams", 1)),
            runtime=self.runtime, threads=self.threads if self.threads is not None else int(rt.get(
                "threads_per_stream", 0)), progress=self.progress)
        if out.max_tokens < 1 or out.max_sentences < 1:
            raise UserError("--max-tokens and --max-sentences must be positive")
        if out.streams < 1 or out.threads < 0:
            raise UserError("--streams must be at least 1 and --threads 0 or more")
        return out


class _PoolTranslator:
    """A StreamPool behind the Translator interface (``translate``, ``stats``, ``model``, context manager)."""

    def __init__(self, pool):
        from inc_transformer_mt.inference.streams import RunStats

        self.pool, self.model, self.stats = pool, pool.model, RunStats()

    def translate(self, sentences, *, max_tokens, max_sentences, source_name, progress=None):
        return self.pool.translate(sentences, source_name=source_name, stats=self.stats, max_tokens=max_tokens,
                                   max_sentences=max_sentences)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        self.pool.close(now=exc_type is not None)


def open_translator(model: ResolvedModel, run: RunOptions):
    """A Translator in this process or, with several streams or a named runtime, a pool of pinned streams.
    ``run`` must be :meth:`RunOptions.settled`."""
    if run.streams > 1 or run.runtime is not None:
        from inc_transformer_mt.inference.streams import StreamPool, StreamSpec

        rt = (model.meta.model or {}).get("runtime") or {}
        spec = StreamSpec(streams=run.streams, threads=run.threads, runtime=run.runtime or rt.get("runtime", "itex"),
                          max_tokens=run.max_tokens, max_sentences=run.max_sentences)
        return _PoolTranslator(StreamPool(model, spec))
    from inc_transformer_mt.inference.translate import Translator

    return Translator(model, intra_threads=run.threads, inter_threads=run.threads)


def _run(translator, sentences: Sequence[str], run: RunOptions, name: str) -> list[str]:
    return translator.translate(sentences, max_tokens=run.max_tokens, max_sentences=run.max_sentences,
                                source_name=name, progress=run.progress)


# ------------------------------------------------------------------------------------------- functions
def tune(recipe: str | Path, overrides: Sequence[str] = (), *, log: Log = print) -> TuneResult:
    """Tune the recipe's model to INT8 until the BLEU criterion holds; the result holds the typed report.

    ``overrides`` are ``KEY=VALUE`` strings, as ``inc-mt tune --set``. Nothing is written on bad input
    (UserError); a failed criterion still writes the report (``result.passed`` is False).
    """
    from inc_transformer_mt.tuning.pipeline import run_tune

    return run_tune(recipe, list(overrides), log=log)


def plan(recipe: str | Path, overrides: Sequence[str] = ()) -> QuantPlan:
    """The recipe's quantization rules resolved against its model's graph, as ``tune`` resolves them first:
    what each rule matches, and the planned dtype of every op. Runs nothing; UserError for a rule that
    matches no op (naming the rule and its line)."""
    from inc_transformer_mt.model.graph import load_graph_def, resolve_model
    from inc_transformer_mt.tuning.stages import load_recipe_file, plan_quantization

    recipe_path = Path(recipe)
    r = load_recipe_file(recipe_path, overrides)
    m = resolve_model(r.model.path, input_tensor=r.model.input_tensor,
                      output_tensor=r.model.output_tensor, tokenizer=r.model.tokenizer)
    return plan_quantization(recipe_path, r, load_graph_def(m.graph_path), overrides)


def validate(recipe: str | Path, overrides: Sequence[str] = ()) -> None:
    """Check a recipe as ``tune`` does before any work: the schema, the model's files, every data slice (in
    range, line-aligned, sentences within the model's limit) and that the slices are disjoint (by real path and
    by content). Loads no TensorFlow graph; UserError naming the file, line and key."""
    from inc_transformer_mt.tuning.stages import load_inputs, load_recipe_file

    recipe_path = Path(recipe)
    load_inputs(recipe_path, load_recipe_file(recipe_path, overrides))


def translate(sentences: Sequence[str], *, model: ModelOptions = ModelOptions(), run: RunOptions = RunOptions(),
              source_name: str = "input") -> list[str]:
    """Translations of ``sentences``, in input order; an empty (or blank) sentence translates to ""."""
    resolved = model.resolve()
    run = run.settled(resolved)
    sentences = list(sentences)
    with open_translator(resolved, run) as translator:
        outputs = _run(translator, sentences, run, source_name)
    return [out if src.strip() else "" for src, out in zip(sentences, outputs, strict=True)]


@dataclass
class EvaluationResult:
    model: str
    dataset: str
    source: str
    reference: str
    sentences: int
    bleu: float
    signature: str
    bleu_details: dict[str, Any]
    seconds: float
    sentences_per_second: float | None
    batches: int
    hypotheses: list[str] = field(repr=False, default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        del out["hypotheses"]
        return out


def evaluate(*, model: ModelOptions = ModelOptions(), data: DataOptions = DataOptions(),
             run: RunOptions = RunOptions(), hyp_out: str | Path | None = None) -> EvaluationResult:
    """Translate a test set and score it with sacreBLEU (signature included)."""
    from inc_transformer_mt.metrics.bleu import score

    if hyp_out:
        check_output_path(hyp_out)
    source, reference, label = data.files()
    src, ref = data.read(source, reference, need_reference=True)
    resolved = model.resolve()
    run = run.settled(resolved)
    with open_translator(resolved, run) as translator:
        start = time.perf_counter()
        hyps = _run(translator, src, run, str(source))
        seconds = time.perf_counter() - start
        batches = translator.stats.batches
    bleu = score(hyps, ref)
    if hyp_out:
        atomic_write(Path(hyp_out), "".join(h + "\n" for h in hyps))
    return EvaluationResult(model=str(resolved.graph_path), dataset=label, source=str(source),
                            reference=str(reference), sentences=len(src), bleu=round(bleu.score, 2),
                            signature=bleu.signature, bleu_details=bleu.to_dict(), seconds=round(seconds, 2),
                            sentences_per_second=round(len(src) / seconds, 2) if seconds else None,
                            batches=batches, hypotheses=hyps)


@dataclass
class ImportResult:
    """What ``import_model`` wrote and checked."""

    out: str
    signature: str
    roles: dict[str, Any]
    notes: list[str]
    census: dict[str, Any]
    check: dict[str, Any] | None = None

    @property
    def identical(self) -> bool:
        return self.check is None or bool(self.check["identical"])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def import_model(saved_model: str | Path, out: str | Path, *, signature: str | None = None,
                 input_key: str | None = None, output_key: str | None = None, score_key: str | None = None,
                 tokenizer: str | Path | None = None, eos_id: int | None = None, pad_id: int | None = None,
                 max_source_tokens: int = 200, check: DataOptions | None = None,
                 log: Log = lambda s: None) -> ImportResult:
    """A TF2 SavedModel as a model directory the package runs and tunes (frozen, v1 control flow, ids in and
    out; :mod:`inc_transformer_mt.model.importer`). With ``check``, the SavedModel's own signature and the imported
    graph translate the check sentences, and the directory is written only when they agree token for token."""
    import dataclasses
    import os
    import shutil

    import tensorflow as tf

    from inc_transformer_mt.model import importer
    from inc_transformer_mt.model.analysis import op_census

    saved_model, out = Path(saved_model), Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out}: output directory is not empty")
    if tokenizer is not None and not Path(tokenizer).is_file():
        raise UserError(f"{tokenizer}: tokenizer file not found")
    log(f"loading {saved_model}")
    imported, roles, src_vocab, tgt_vocab, key = importer.import_saved_model(
        saved_model, signature=signature, input_key=input_key, output_key=output_key, score_key=score_key,
        pad_id=pad_id)
    eos, pad, skip = importer.special_ids(tgt_vocab, eos_id=eos_id, pad_id=pad_id, path=saved_model)
    provenance = {"saved_model": str(saved_model.resolve()), "signature": key, "cut": imported.notes,
                  "tensorflow": tf.__version__}
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.import-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        importer.write_model_dir(staging, imported, tokenizer=None if tokenizer is None else Path(tokenizer),
                                 tokenizer_options=importer.toolkit_tokenizer_options(saved_model),
                                 source_vocab=src_vocab, target_vocab=tgt_vocab, eos_id=eos, pad_id=pad,
                                 skip_ids=skip, max_source_tokens=max_source_tokens, provenance=provenance)
        result = ImportResult(out=str(out), signature=key, roles=dataclasses.asdict(roles), notes=imported.notes,
                              census=op_census(imported.graph_def).to_dict())
        if check is not None:
            result.check = _check_import(staging, saved_model, key, roles, check, result.notes, log)
            if not result.identical:
                return result
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
        return result
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _ids_of(translator, sentences: Sequence[str], batch: int = 32) -> list[list[int]]:
    tok = translator.tokenizer
    out: list[list[int]] = []
    for start in range(0, len(sentences), batch):
        out.extend([int(i) for i in row] for row in translator.run_batch([tok.encode(s) for s in
                                                                           sentences[start:start + batch]]))
    return out


def _check_import(staging: Path, saved_model: Path, signature: str, roles, check: DataOptions, notes: list[str],
                  log: Log) -> dict[str, Any]:
    """The imported graph against the SavedModel's own signature, token by token on ``check``'s sentences, both
    run without plug-in graph optimizers (stock TensorFlow's optimizations). When ITEX is loaded, the imported graph
    also runs with ITEX's graph optimizer; if that changes a translation, the model is marked to run without it
    (model.json ``model.plugin_optimizers: false``)."""
    from inc_transformer_mt.inference.translate import Translator
    from inc_transformer_mt.model import importer
    from inc_transformer_mt.model.graph import resolve_model
    from inc_transformer_mt.runtime import itex_loaded

    src, _, label = check.load(need_reference=False)
    log(f"checking the import against the SavedModel on {len(src)} sentences of {label}")
    model = resolve_model(staging)
    with Translator(model, plugin_optimizers=False) as translator:
        tok = translator.tokenizer
        tokens_of = getattr(tok, "tokens", None) if roles.input_is_string else tok.encode
        if tokens_of is None:
            raise UserError(f"{saved_model}: the signature takes token strings; the tokenizer must give them "
                            "(a tokenizer.json of type opennmt)")
        theirs = importer.saved_model_outputs(saved_model, signature, roles, [tokens_of(s) for s in src],
                                              model.meta.pad_id)
        result = {"data": label, **importer.compare(theirs, _ids_of(translator, src), tok, roles)}
    if result["identical"] and itex_loaded():
        with Translator(model, plugin_optimizers=True) as translator:
            with_plugin = importer.compare(theirs, _ids_of(translator, src), tok, roles)
        result["itex_graph_optimizer"] = {k: with_plugin[k] for k in ("differing", "differing_lines")}
        changed = f"ITEX's graph optimizer changes {with_plugin['differing']}/{len(src)} translations of this graph"
        if with_plugin["differing"] <= PLUGIN_DIVERGENCE_MAX * len(src):
            if with_plugin["differing"]:
                notes.append(f"{changed} (floating-point order; at most {PLUGIN_DIVERGENCE_MAX:.0%} is accepted)")
        else:
            notes.append(f"{changed}: it runs with plug-in graph optimizers off (model.plugin_optimizers false)")
            meta = json.loads((staging / "model.json").read_text())
            meta["model"]["plugin_optimizers"] = False
            atomic_write(staging / "model.json", json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    return result


def regress(model_dir: str | Path, manifest: str | Path | None = None, *, model: ModelOptions = ModelOptions(),
            limit: int | None = None, speed: bool = False, speed_reps: int | None = None, rebaseline: bool = False,
            log: Log = lambda s: None) -> RegressResult:
    """Re-measure a tuned model against its manifest; ``result.passed`` / ``result.checks`` say what moved.

    Only ``model``'s tensor names and tokenizer are used (they override both models' model.json).
    """
    from inc_transformer_mt.defaults import REGRESS_SPEED_REPS
    from inc_transformer_mt.regression.check import run_regress

    return run_regress(model_dir, manifest, limit=limit, speed=speed,
                       speed_reps=REGRESS_SPEED_REPS if speed_reps is None else speed_reps, rebaseline=rebaseline,
                       input_tensor=model.input_tensor, output_tensor=model.output_tensor,
                       tokenizer=None if model.tokenizer is None else str(model.tokenizer), log=log)


def _cached_graph_intact(out: Path) -> bool:
    """Whether a cached optimized model directory is complete and its graph unchanged since it was written."""
    from inc_transformer_mt.report.manifest import sha256_file

    try:
        recorded = json.loads((out / "cache.json").read_text())["graph_sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return (out / "passes.json").is_file() and (out / "model.pb.gz").is_file() \
        and sha256_file(out / "model.pb.gz") == recorded


def optimized_model(model: ModelOptions, passes: Sequence[str] | None = None, *, log: Log | None = None) -> Path:
    """A model directory with the exact graph passes applied (default: the default passes), kept in the cache.

    The directory is keyed by the graph's bytes, the passes and this package's version, and written
    atomically (a temporary directory renamed into place), so concurrent callers never see half of it. A cached
    directory is used only when its graph still has the sha256 recorded when it was written; otherwise it is
    rebuilt.
    """
    import hashlib
    import os
    import shutil

    from inc_transformer_mt import __version__
    from inc_transformer_mt.defaults import DEFAULT_PASSES
    from inc_transformer_mt.model.graph import load_graph_def
    from inc_transformer_mt.passes import apply_passes
    from inc_transformer_mt.passes.output import write_optimized_model
    from inc_transformer_mt.report.manifest import sha256_file
    from inc_transformer_mt.tuning.stages import cache_dir

    names = list(DEFAULT_PASSES if passes is None else passes)
    resolved = model.resolve()
    key = hashlib.sha256(resolved.graph_path.read_bytes() + repr((names, __version__)).encode()).hexdigest()[:20]
    out = cache_dir() / "optimized" / key
    if _cached_graph_intact(out):
        return out
    if out.exists():
        logging.getLogger(__name__).warning("the cached optimized model %s is damaged; rebuilding it", out)
        shutil.rmtree(out, ignore_errors=True)
    if log:
        log(f"applying {', '.join(names)} to {resolved.graph_path} (cached in {out})")
    new, reports = apply_passes(load_graph_def(resolved.graph_path), names)
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    write_optimized_model(resolved, new, names, tmp, {"model": str(resolved.graph_path), "passes": reports})
    (tmp / "cache.json").write_text(json.dumps({"graph_sha256": sha256_file(tmp / "model.pb.gz")}))
    try:
        os.replace(tmp, out)
    except OSError:  # another process won the race: its copy is the same
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def benchmark(models: Sequence[tuple[str, ModelOptions]] | None = None, *, data: DataOptions = DataOptions(),
              grid: Grid | None = None, reps: int | None = None, search_sentences: int | None = None,
              latency_sentences: int | None = None, command: str = "", log: Log | None = None) -> BenchmarkReport:
    """FP32 and INT8 side by side, each with its best runtime/stream/batch setting (see bench/benchmark.py).

    ``models``: (label, model) pairs; default the reference FP32 model, the same with the exact graph passes
    (the best FP32 a user can have), and the committed INT8 one (tuned with the passes).
    """
    from inc_transformer_mt.bench.benchmark import Grid, ModelArg, run_benchmark
    from inc_transformer_mt.defaults import BENCH_LATENCY_SENTENCES, BENCH_REPS, BENCH_SEARCH_SENTENCES

    if models is None:  # the best FP32 a user can have includes the exact passes: the ratio stays honest
        models = [("fp32", ModelOptions(REFERENCE_MODEL)),
                  ("fp32+passes", ModelOptions(optimized_model(ModelOptions(REFERENCE_MODEL)))),
                  ("int8", ModelOptions(REFERENCE_INT8))]
    resolved = []
    for label, m in models:
        r = m.resolve()
        if not r.graph_path.is_file():
            raise UserError(f"{r.graph_path}: model file not found")
        resolved.append(ModelArg(label, r))
    sources, refs, name = data.load(need_reference=False)
    beam = (resolved[0].model.meta.model or {}).get("beam_size") if resolved else None
    if data.source is None:
        name = f"{name} {data.src_lang}-{data.tgt_lang}"
    return run_benchmark(
        resolved, sources, refs, grid=grid or Grid(), reps=BENCH_REPS if reps is None else reps,
        search_sentences=BENCH_SEARCH_SENTENCES if search_sentences is None else search_sentences,
        latency_sentences=BENCH_LATENCY_SENTENCES if latency_sentences is None else latency_sentences,
        command=command, dataset={"name": name, "sentences": len(sources), "beam_size": beam}, log=log)
