"""``inc-mt``: translate, evaluate and inspect TensorFlow Transformer translation graphs.

Exit codes: 0 ok, 1 a check failed, 2 usage or input error (one ``error:`` line, no traceback).
TensorFlow is imported only by the commands that run a graph, so ``inc-mt --help`` is instant.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from inc_transformer_mt import __version__
from inc_transformer_mt.atomic import atomic_write
from inc_transformer_mt.errors import UserError

__all__ = ["REFERENCE_MODEL", "build_parser", "main"]

REFERENCE_MODEL = Path(__file__).resolve().parent.parent / "reference"
REFERENCE_INT8 = Path(__file__).resolve().parent.parent / "reference_int8"
DEFAULT_RECIPE = Path(__file__).resolve().parent.parent.parent / "recipes" / "reference_kl.yaml"


# ----------------------------------------------------------------------------------------------- helpers
def _quiet_tensorflow() -> None:
    """Keep TensorFlow's and ITEX's C++ start-up chatter off stderr (``-v`` or the variables bring it back)."""
    if logging.getLogger().isEnabledFor(logging.INFO):
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("ITEX_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", default=str(REFERENCE_MODEL),
                   help="model directory (with model.json) or frozen graph .pb/.pb.gz (default: the reference model)")
    g.add_argument("--input-tensor", help="input token-id tensor, int32 [batch, length] (default from model.json)")
    g.add_argument("--output-tensor", help="output token-id tensor, int32 [batch, length] (default from model.json)")
    g.add_argument("--tokenizer", help="SentencePiece model (default from model.json)")
    g.add_argument("--max-tokens", type=int, help="padded source tokens per batch (default: the model's runtime "
                   "settings in model.json, else 4096)")
    g.add_argument("--max-sentences", type=int, help="sentences per batch (default: model.json runtime, else 128)")
    g.add_argument("--streams", type=int, help="parallel streams, each a process pinned to its own cores "
                   "(default: model.json runtime, else 1 in this process)")
    g.add_argument("--runtime", choices=("itex", "stock"),
                   help="TensorFlow runtime of the streams (default: model.json runtime, else itex)")
    g.add_argument("--threads", type=int, help="intra-op threads (per stream; 0 or unset: all of its cores)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


class _PoolTranslator:
    """A StreamPool behind the Translator interface the commands use."""

    def __init__(self, pool):
        from inc_transformer_mt.inference.streams import RunStats

        self.pool, self.model, self.stats = pool, pool.model, RunStats()

    def translate(self, sentences, *, max_tokens, max_sentences, source_name, progress=None):
        return self.pool.translate(sentences, source_name=source_name, stats=self.stats, max_tokens=max_tokens,
                                   max_sentences=max_sentences)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.pool.close()


def _translator(args: argparse.Namespace):
    """A Translator (one session in this process) or, with streams/runtime settings, a pool of pinned streams."""
    _quiet_tensorflow()
    from inc_transformer_mt.model.graph import resolve_model

    model = resolve_model(args.model, input_tensor=args.input_tensor, output_tensor=args.output_tensor,
                          tokenizer=args.tokenizer)
    rt = (model.meta.model or {}).get("runtime") or {}
    args.max_tokens = args.max_tokens if args.max_tokens is not None else int(rt.get("max_tokens", 4096))
    args.max_sentences = args.max_sentences if args.max_sentences is not None else int(rt.get("max_sentences", 128))
    if args.max_tokens < 1 or args.max_sentences < 1:
        raise UserError("--max-tokens and --max-sentences must be positive")
    streams = args.streams if args.streams is not None else int(rt.get("streams", 1))
    threads = args.threads if args.threads is not None else int(rt.get("threads_per_stream", 0))
    if streams < 1 or threads < 0:
        raise UserError("--streams must be at least 1 and --threads 0 or more")
    if streams > 1 or args.runtime is not None:
        from inc_transformer_mt.inference.streams import StreamPool, StreamSpec

        spec = StreamSpec(streams=streams, threads=threads, runtime=args.runtime or rt.get("runtime", "itex"),
                          max_tokens=args.max_tokens, max_sentences=args.max_sentences)
        return _PoolTranslator(StreamPool(model, spec))
    from inc_transformer_mt.inference.translate import Translator

    return Translator(model, intra_threads=threads, inter_threads=threads)


def _translate(translator, sentences: Sequence[str], args: argparse.Namespace, name: str) -> list[str]:
    return translator.translate(sentences, max_tokens=args.max_tokens, max_sentences=args.max_sentences,
                                source_name=name, progress=False if args.no_progress else None)


# ---------------------------------------------------------------------------------------------- commands
def cmd_translate(args: argparse.Namespace) -> int:
    from inc_transformer_mt.data.corpus import parse_lines, read_lines

    if args.input == "-":
        name = "<stdin>"
        sentences = parse_lines(sys.stdin.buffer, name)
    else:
        name = args.input
        sentences = read_lines(args.input, what="input file")
    with _translator(args) as translator:
        outputs = _translate(translator, sentences, args, name)
    text = "".join(line + "\n" for line in outputs)
    if args.output:
        atomic_write(Path(args.output), text)
    else:
        sys.stdout.write(text)
    return 0


def _eval_files(args: argparse.Namespace) -> tuple[str, str, str]:
    from inc_transformer_mt.data.corpus import multi30k_split

    if args.source or args.reference:
        if not (args.source and args.reference):
            raise UserError("--source and --reference go together")
        return str(args.source), str(args.reference), "custom"
    src = multi30k_split(args.split, args.src_lang, args.data_dir)
    ref = multi30k_split(args.split, args.tgt_lang, args.data_dir)
    return str(src), str(ref), f"multi30k/{args.split}"


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Translate a test set and score it; returns the result as a JSON-ready dict."""
    from inc_transformer_mt.data.corpus import read_parallel
    from inc_transformer_mt.metrics.bleu import score

    source, reference, label = _eval_files(args)
    src, ref = read_parallel(source, reference)
    if args.limit is not None:
        if args.limit < 1:
            raise UserError("--limit must be positive")
        src, ref = src[: args.limit], ref[: args.limit]
    with _translator(args) as translator:
        start = time.perf_counter()
        hyps = _translate(translator, src, args, source)
        seconds = time.perf_counter() - start
        stats = translator.stats
        graph_path = str(translator.model.graph_path)
    bleu = score(hyps, ref)
    if args.hyp_out:
        atomic_write(Path(args.hyp_out), "".join(h + "\n" for h in hyps))
    return {
        "model": graph_path,
        "dataset": label,
        "source": source,
        "reference": reference,
        "sentences": len(src),
        "bleu": round(bleu.score, 2),
        "signature": bleu.signature,
        "bleu_details": bleu.to_dict(),
        "seconds": round(seconds, 2),
        "sentences_per_second": round(len(src) / seconds, 2) if seconds else None,
        "batches": stats.batches,
    }


def cmd_evaluate(args: argparse.Namespace) -> int:
    result = evaluate(args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['dataset']}: {result['sentences']} sentences, BLEU {result['bleu']:.2f}")
        print(f"signature: {result['signature']}")
        print(f"time: {result['seconds']:.1f} s ({result['sentences_per_second']} sentences/s, "
              f"{result['batches']} length-sorted batches)")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    _quiet_tensorflow()
    from inc_transformer_mt.model.graph import check_tensor, load_graph_def, resolve_model
    from inc_transformer_mt.model.analysis import op_census

    model = resolve_model(args.model, input_tensor=args.input_tensor, output_tensor=args.output_tensor)
    graph_def = load_graph_def(model.graph_path)
    check_tensor(graph_def, model.meta.input_tensor, "input tensor", model.graph_path)
    check_tensor(graph_def, model.meta.output_tensor, "output tensor", model.graph_path)
    info = {"graph": str(model.graph_path), "nodes": len(graph_def.node), "meta": model.meta.to_dict(),
            "census": op_census(graph_def).to_dict()}
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"graph: {info['graph']} ({info['nodes']} nodes, control flow {info['census']['control_flow']})")
    print(f"input: {model.meta.input_tensor}  output: {model.meta.output_tensor}")
    print(f"{'op':<16}{'outside loop':>14}{'inside loop':>13}{'total':>8}")
    for op, c in info["census"]["ops"].items():
        print(f"{op:<16}{c['outside_loop']:>14}{c['inside_loop']:>13}{c['total']:>8}")
    return 0


def cmd_fetch_data(args: argparse.Namespace) -> int:
    from inc_transformer_mt.data.corpus import fetch_multi30k

    written = fetch_multi30k(args.dest)
    print(f"{len(written)} file(s) written to {args.dest}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job on the built-in default: tune the reference model with the default KL recipe."""
    from inc_transformer_mt.tune.pipeline import run_tune

    recipe = Path(args.recipe) if args.recipe else DEFAULT_RECIPE
    if not recipe.is_file():
        raise UserError(f"{recipe}: default recipe not found (run from a checkout, or give --recipe)")
    out = Path(args.out).resolve()
    overrides = [f"outputs.dir={out}", "outputs.overwrite=replace", *(args.set or [])]
    print(f"tuning the reference model with {recipe} (about 2-3 minutes on 2 cores; longer when the fallback runs)", flush=True)
    result = run_tune(recipe, overrides, log=lambda s: print(s, flush=True))
    _print_tune_summary(result)
    return result.exit_code


def cmd_tune(args: argparse.Namespace) -> int:
    _quiet_tensorflow()
    from inc_transformer_mt.tune.pipeline import run_tune

    result = run_tune(args.recipe, args.set or [], log=lambda s: print(s, flush=True))
    _print_tune_summary(result)
    return result.exit_code


def _print_tune_summary(result) -> None:
    r = result.report
    print(f"FP32 BLEU (tuning set): {r['fp32']['tuning_bleu']:.2f}")
    if r["status"] == "passed":
        i8 = r["int8"]
        print(f"INT8 BLEU (tuning set): {i8['tuning_bleu']:.2f}  drop {i8['drop']:+.2f}  "
              f"({r['criterion']['text']}: met)")
        if r.get("heldout"):
            h = r["heldout"]
            print(f"held-out ({h['sentences']} sentences): FP32 {h['fp32_bleu']:.2f}  INT8 {h['int8_bleu']:.2f}  "
                  f"drop {h['drop']:+.2f}")
        print(f"INT8 MatMuls: {i8['matmuls_int8']}/{i8['matmuls_total']} "
              f"({i8['matmul_flops_int8_share']:.1%} of MatMul FLOPs), trial {i8['trial']} of {len(r['trials'])}")
        print(f"INT8 model: {i8['graph']}")
    else:
        print(f"FAILED: no configuration met the criterion ({r['criterion']['text']}); {r['stop_reason']}; "
              "no model written")
    print(f"report: {result.out_dir / 'report.md'} (and report.json)")


def cmd_regress(args: argparse.Namespace) -> int:
    _quiet_tensorflow()
    from inc_transformer_mt.regress.check import render_table, run_regress, write_outputs

    result = run_regress(args.model, args.manifest, limit=args.limit, speed=args.speed, speed_reps=args.speed_reps,
                         rebaseline=args.rebaseline, log=lambda s: print(s, file=sys.stderr, flush=True))
    write_outputs(result, None, args.junit)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        sys.stdout.write(render_table(result))
    return 0 if args.rebaseline else result.exit_code


def cmd_profile(args: argparse.Namespace) -> int:
    _quiet_tensorflow()
    import platform

    from inc_transformer_mt.bench.profile import profile_translation, render_profiles
    from inc_transformer_mt.data.corpus import multi30k_split, read_lines
    from inc_transformer_mt.inference.translate import Translator
    from inc_transformer_mt.model.graph import resolve_model

    if args.source:
        sentences, name = read_lines(args.source, what="source file"), args.source
    else:
        sentences, name = read_lines(multi30k_split(args.split, "en", args.data_dir)), f"multi30k/{args.split}"
    if args.limit is not None:
        if args.limit < 1:
            raise UserError("--limit must be positive")
        sentences = sentences[: args.limit]
    profiles = []
    for label, path in _model_specs(args.models):
        with Translator(resolve_model(path), intra_threads=args.threads, inter_threads=args.threads) as tr:
            profiles.append(profile_translation(tr, sentences, label,
                                                max_tokens=args.max_tokens, max_sentences=args.max_sentences))
    header = (f"Per-op time on {name}, {len(sentences)} sentences, beam search as exported; "
              f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs. Share of summed op time "
              "(TensorFlow step stats, FULL_TRACE; ms in brackets).\n")
    text = render_profiles(profiles, header)
    if args.md:
        atomic_write(Path(args.md), text)
    if args.json:
        print(json.dumps([p.to_dict() for p in profiles], indent=2))
    else:
        sys.stdout.write(text)
    return 0


def _model_specs(specs: Sequence[str]) -> list[tuple[str, str]]:
    """``[LABEL=]PATH`` arguments as (label, path); the label defaults to the directory or file name."""
    out = []
    for spec in specs:
        label, _, path = spec.partition("=") if "=" in spec else ("", "", spec)
        out.append((label or Path(path).name, path))
    return out


def _int_list(text: str, flag: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UserError(f"{flag}: expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise UserError(f"{flag}: expected positive integers, got {text!r}")
    return values


def cmd_benchmark(args: argparse.Namespace) -> int:
    """FP32 and INT8 side by side; JSON, markdown and PNG under --out."""
    from inc_transformer_mt.bench.benchmark import Grid, ModelArg, render_markdown, render_plot, run_benchmark
    from inc_transformer_mt.data.corpus import multi30k_split, read_lines, read_parallel
    from inc_transformer_mt.model.graph import resolve_model

    runtimes = tuple(r.strip() for r in args.runtimes.split(",") if r.strip())
    bad = [r for r in runtimes if r not in ("itex", "stock")]
    if bad or not runtimes:
        raise UserError(f"--runtimes: expected itex and/or stock, got {args.runtimes!r}")
    grid = Grid(runtimes=runtimes, streams=_int_list(args.streams, "--streams"),
                batch_sentences=_int_list(args.batch_sentences, "--batch-sentences"), max_tokens=args.max_tokens)
    if args.max_tokens < 1:
        raise UserError("--max-tokens must be positive")
    models = []
    for label, path in _model_specs(args.models or [f"fp32={REFERENCE_MODEL}", f"int8={REFERENCE_INT8}"]):
        model = resolve_model(path)
        if not model.graph_path.is_file():
            raise UserError(f"{model.graph_path}: model file not found")
        models.append(ModelArg(label, model))
    beam = (models[0].model.meta.model or {}).get("beam_size")
    if args.source:
        if args.reference:
            sources, refs = read_parallel(args.source, args.reference)
        else:
            sources, refs = read_lines(args.source, what="source file"), None
        name = args.source
    else:
        sources, refs = read_parallel(multi30k_split(args.split, args.src_lang, args.data_dir),
                                      multi30k_split(args.split, args.tgt_lang, args.data_dir))
        name = f"multi30k/{args.split} {args.src_lang}-{args.tgt_lang}"
    if args.limit is not None:
        if args.limit < 1:
            raise UserError("--limit must be positive")
        sources, refs = sources[: args.limit], (refs[: args.limit] if refs is not None else None)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: --out exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    command = "inc-mt benchmark " + " ".join(sys.argv[2:]) if len(sys.argv) > 1 else "inc-mt benchmark"
    report = run_benchmark(models, sources, refs, grid=grid, reps=args.reps, search_sentences=args.search_sentences,
                           latency_sentences=args.latency_sentences, command=command.strip(),
                           dataset={"name": name, "sentences": len(sources), "beam_size": beam},
                           log=lambda s: print(s, file=sys.stderr, flush=True))
    atomic_write(out / "benchmark.json", report.model_dump_json(indent=2) + "\n")
    plot = None
    if not args.no_plot:
        atomic_write(out / "benchmark.png", render_plot(report))
        plot = "benchmark.png"
    text = render_markdown(report, plot)
    atomic_write(out / "benchmark.md", text)
    sys.stdout.write(text)
    print(f"wrote {out / 'benchmark.json'}, {out / 'benchmark.md'}" + (f", {out / plot}" if plot else ""),
          file=sys.stderr)
    return 0


def cmd_optimize(args: argparse.Namespace) -> int:
    """Apply graph passes to a model directory; optionally check the translations stay token-identical."""
    _quiet_tensorflow()
    import shutil

    from inc_transformer_mt.model.graph import load_graph_def, resolve_model

    from inc_transformer_mt.model.analysis import op_census
    from inc_transformer_mt.passes import PASS_NAMES, apply_passes

    names = [p.strip() for p in args.passes.split(",") if p.strip()]
    unknown = [p for p in names if p not in PASS_NAMES]
    if unknown or not names:
        raise UserError(f"--passes: unknown pass {unknown[0] if unknown else '(none)'!r}; known: {', '.join(PASS_NAMES)}")
    model = resolve_model(args.model)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out}: output directory is not empty")
    graph = load_graph_def(model.graph_path)
    new, reports = apply_passes(graph, names)
    result: dict[str, Any] = {"model": str(model.graph_path), "passes": reports,
                              "census_before": op_census(graph).to_dict()["ops"],
                              "census_after": op_census(new).to_dict()["ops"]}
    if args.check_split:
        from inc_transformer_mt.data.corpus import multi30k_split, read_lines
        from inc_transformer_mt.inference.translate import Translator

        src = read_lines(multi30k_split(args.check_split, "en"))
        with Translator(model, graph_def=graph) as a, Translator(model, graph_def=new) as b:
            ha, hb = a.translate(src, progress=False), b.translate(src, progress=False)
        differ = [i + 1 for i, (x, y) in enumerate(zip(ha, hb, strict=True)) if x != y]
        result["check"] = {"split": args.check_split, "sentences": len(src), "differing_lines": differ[:20],
                           "identical": not differ}
        if differ:
            raise UserError(f"the passes changed {len(differ)} translation(s) of {args.check_split} "
                            f"(first at line {differ[0]}); nothing written")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "model.pb.gz", new.SerializeToString(deterministic=True), gzip_level=6)
    meta = json.loads((model.graph_path.parent / "model.json").read_text()) if (
        model.graph_path.parent / "model.json").is_file() else model.meta.to_dict()
    meta["model"] = {**(meta.get("model") or {}), "graph": "model.pb.gz",
                     "passes": [*(meta.get("model") or {}).get("passes", []), *names]}
    atomic_write(out / "model.json", json.dumps(meta, indent=2) + "\n")
    if model.tokenizer_path and Path(model.tokenizer_path).is_file():
        shutil.copyfile(model.tokenizer_path, out / "spm.model")
    atomic_write(out / "passes.json", json.dumps(result, indent=2) + "\n")
    for r in reports:
        print(f"{r['pass']}: {r['rewritten']} rewritten, {len(r['skipped'])} left alone")
    if args.check_split:
        print(f"{args.check_split}: translations identical on {result['check']['sentences']} sentences")
    print(f"file size: {model.graph_path.stat().st_size / 2**20:.1f} MiB -> "
          f"{(out / 'model.pb.gz').stat().st_size / 2**20:.1f} MiB")
    print(f"written: {out}")
    return 0


def cmd_recipe(args: argparse.Namespace) -> int:
    from inc_transformer_mt.recipe import dump_recipe, load_recipe, recipe_json_schema, resolve_paths

    if args.recipe_command == "schema":
        sys.stdout.write(recipe_json_schema())
        return 0
    recipe = load_recipe(args.recipe, args.set or ())
    if args.recipe_command == "validate":
        print(f"ok: {args.recipe} is a valid recipe")
        return 0
    resolved = resolve_paths(recipe, Path(args.recipe).resolve().parent)
    if args.json:
        print(json.dumps(resolved.model_dump(mode="json"), indent=2))
    else:
        sys.stdout.write(dump_recipe(resolved))
    return 0


# ------------------------------------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inc-mt", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("translate", help="translate a file (or stdin) to stdout or a file")
    p.add_argument("input", nargs="?", default="-", help="source file, plain or .gz, one sentence a line (- = stdin)")
    p.add_argument("-o", "--output", help="write translations here (atomically) instead of stdout")
    _add_model_args(p)
    p.set_defaults(func=cmd_translate)

    def data_args(p: argparse.ArgumentParser) -> None:
        g = p.add_argument_group("data")
        g.add_argument("--source", help="source sentences (plain or .gz)")
        g.add_argument("--reference", help="reference translations, line-aligned with --source")
        g.add_argument("--split", default="test_2016_flickr", choices=["train", "val", "test_2016_flickr"],
                       help="Multi30k split when no --source/--reference (default test_2016_flickr)")
        g.add_argument("--data-dir", help="Multi30k directory (default: $INC_MT_MULTI30K or ../shared/data/multi30k)")
        g.add_argument("--src-lang", default="en")
        g.add_argument("--tgt-lang", default="de")
        g.add_argument("--limit", type=int, help="only the first N sentences")

    p = sub.add_parser("evaluate", help="translate a test set and report sacreBLEU with its signature")
    data_args(p)
    p.add_argument("--hyp-out", help="also write the translations to this file")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    _add_model_args(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("info", help="tensor names and op census (inside / outside the decode loop)")
    p.add_argument("--model", default=str(REFERENCE_MODEL))
    p.add_argument("--input-tensor")
    p.add_argument("--output-tensor")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("fetch-data", help="download Multi30k (en, de) from its public repository")
    p.add_argument("dest", help="directory to write train/val/test_2016_flickr .gz files into")
    p.set_defaults(func=cmd_fetch_data)

    p = sub.add_parser("tune", help="tune an INT8 model from a recipe until the BLEU criterion holds (exit 1 if "
                       "nothing does)")
    p.add_argument("recipe", help="recipe YAML file (see recipes/)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a recipe value, e.g. --set calibration.kl_mode=conjugate (repeatable)")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("regress", help="check a tuned model against its manifest: hash, BLEU, drop, INT8 census, "
                       "speed ratio (exit 1 on regression)")
    p.add_argument("model", help="tuned model directory (with model.json and manifest.json)")
    p.add_argument("--manifest", help="manifest file (default MODEL/manifest.json)")
    p.add_argument("--limit", type=int, help="score only the first N sentences of the recorded set (needs a value "
                   "recorded on that subset)")
    p.add_argument("--speed", action="store_true", help="also measure the INT8/FP32 speed ratio side by side")
    p.add_argument("--speed-reps", type=int, default=3, help="alternating timed runs per model (default 3)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--junit", metavar="FILE", help="write JUnit XML for CI systems")
    p.add_argument("--rebaseline", action="store_true", help="record the current hashes, BLEU, census (and speed) "
                   "in the manifest, deliberately")
    p.set_defaults(func=cmd_regress)

    p = sub.add_parser("profile", help="per-op time breakdown (MatMul, Q/DQ, GatherNd, Softmax, LayerNorm, ...) "
                       "of one or more graphs, side by side")
    p.add_argument("models", nargs="+", metavar="[LABEL=]MODEL", help="model directories or graphs to profile")
    p.add_argument("--split", default="test_2016_flickr", help="Multi30k split (default test_2016_flickr)")
    p.add_argument("--source", help="a source file instead of a Multi30k split")
    p.add_argument("--data-dir")
    p.add_argument("--limit", type=int, help="only the first N sentences")
    p.add_argument("--max-tokens", type=int, default=4096)
    p.add_argument("--max-sentences", type=int, default=128)
    p.add_argument("--threads", type=int, default=0, help="intra/inter-op threads (0: TensorFlow's default)")
    p.add_argument("--md", help="also write the markdown table to this file")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("benchmark", help="FP32 and INT8 speed side by side (alternating, repeated, each with its "
                       "best runtime/stream/batch setting): sentences/s, tokens/s, batch-1 latency, memory, BLEU")
    p.add_argument("models", nargs="*", metavar="[LABEL=]MODEL",
                   help="model directories or graphs (default: the reference FP32 model and the committed INT8 one)")
    p.add_argument("--split", default="test_2016_flickr", help="Multi30k split (default test_2016_flickr)")
    p.add_argument("--src-lang", default="en")
    p.add_argument("--tgt-lang", default="de")
    p.add_argument("--source", help="a source file instead of a Multi30k split")
    p.add_argument("--reference", help="its reference translations (for BLEU)")
    p.add_argument("--data-dir")
    p.add_argument("--limit", type=int, help="only the first N sentences")
    p.add_argument("--reps", type=int, default=3, help="timed passes per configuration (default 3)")
    p.add_argument("--search-sentences", type=int, default=150,
                   help="sentences for the settings search (default 150)")
    p.add_argument("--latency-sentences", type=int, default=100, help="batch-1 latency sentences (default 100; 0: skip)")
    p.add_argument("--runtimes", default="itex,stock", help="TensorFlow runtimes to try (default itex,stock)")
    p.add_argument("--streams", default="1,2", help="parallel stream counts to try (default 1,2)")
    p.add_argument("--batch-sentences", default="4,8,32", help="batch sizes (sentences) to try (default 4,8,32)")
    p.add_argument("--max-tokens", type=int, default=4096, help="padded source tokens per batch (default 4096)")
    p.add_argument("--out", default="out/benchmark", help="output directory (default out/benchmark)")
    p.add_argument("--no-plot", action="store_true", help="no PNG")
    p.set_defaults(func=cmd_benchmark)

    p = sub.add_parser("optimize", help="apply graph passes (GatherNd -> flattened Gather, redundant QuantizeV2 "
                       "removal) to a model directory")
    p.add_argument("model", help="model directory or graph")
    p.add_argument("--out", required=True, help="output model directory (must be empty or new)")
    p.add_argument("--passes", default="gather_nd_to_gather",
                   help="comma-separated passes, run in order: gather_nd_to_gather (the default), dedupe_quantize")
    p.add_argument("--check-split", help="Multi30k split on which translations must stay token-identical")
    p.set_defaults(func=cmd_optimize)

    p = sub.add_parser("recipe", help="check a tuning recipe, show it resolved, or print its JSON schema")
    rsub = p.add_subparsers(dest="recipe_command", metavar="ACTION", required=True)
    for name, text in (("validate", "check a recipe (exit 0 valid, 2 invalid, naming key and line)"),
                       ("show", "print the recipe with defaults filled in and paths resolved")):
        r = rsub.add_parser(name, help=text)
        r.add_argument("recipe", help="recipe YAML file")
        r.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override a value, e.g. --set tuning.max_trials=5 (repeatable)")
        if name == "show":
            r.add_argument("--json", action="store_true", help="print JSON instead of YAML")
    rsub.add_parser("schema", help="print the recipe JSON schema")
    p.set_defaults(func=cmd_recipe)

    p = sub.add_parser("demo", help="the built-in default job: tune the reference model to INT8 with the default "
                       "recipe (recipes/reference_kl.yaml) and report FP32 vs INT8 BLEU")
    p.add_argument("--out", default="out/demo", help="output directory, replaced if present (default out/demo)")
    p.add_argument("--recipe", help="recipe to use instead of recipes/reference_kl.yaml")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a recipe value (repeatable)")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.command != "fetch-data":
        _quiet_tensorflow()
    try:
        return int(args.func(args))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
