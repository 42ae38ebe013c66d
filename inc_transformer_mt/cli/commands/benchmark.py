"""``inc-mt benchmark``: FP32 and INT8 speed side by side, each with its best runtime/stream/batch setting."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from inc_transformer_mt.atomic import atomic_write
from inc_transformer_mt.cli import options
from inc_transformer_mt.defaults import (
    BENCH_BATCH_SENTENCES,
    BENCH_LATENCY_SENTENCES,
    BENCH_REPS,
    BENCH_SEARCH_SENTENCES,
    BENCH_STREAMS,
    MAX_TOKENS,
    RUNTIMES,
)
from inc_transformer_mt.errors import UserError

NAME = "benchmark"
HELP = ("FP32 and INT8 speed side by side (alternating, repeated, each with its best runtime/stream/batch "
        "setting): sentences/s, tokens/s, batch-1 latency, memory, BLEU")


def _csv(values) -> str:
    return ",".join(str(v) for v in values)


def add_arguments(p) -> None:
    p.add_argument("models", nargs="*", metavar="[LABEL=]MODEL",
                   help="model directories or graphs (default: the reference FP32 model and the committed INT8 one)")
    options.add_model_options(p, path=False)
    options.add_data_options(p)
    g = p.add_argument_group("benchmark")
    g.add_argument("--reps", type=int, default=BENCH_REPS, help=f"timed passes per configuration (default {BENCH_REPS})")
    g.add_argument("--search-sentences", type=int, default=BENCH_SEARCH_SENTENCES,
                   help=f"sentences for the settings search (default {BENCH_SEARCH_SENTENCES})")
    g.add_argument("--latency-sentences", type=int, default=BENCH_LATENCY_SENTENCES,
                   help=f"batch-1 latency sentences (default {BENCH_LATENCY_SENTENCES}; 0: skip)")
    g.add_argument("--runtimes", default=_csv(RUNTIMES), help=f"TensorFlow runtimes to try (default {_csv(RUNTIMES)})")
    g.add_argument("--streams", default=_csv(BENCH_STREAMS),
                   help=f"parallel stream counts to try (default {_csv(BENCH_STREAMS)})")
    g.add_argument("--batch-sentences", default=_csv(BENCH_BATCH_SENTENCES),
                   help=f"batch sizes (sentences) to try (default {_csv(BENCH_BATCH_SENTENCES)})")
    g.add_argument("--max-tokens", type=int, default=MAX_TOKENS, help=f"padded source tokens per batch (default "
                   f"{MAX_TOKENS})")
    g.add_argument("--out", default="out/benchmark", help="output directory (default out/benchmark)")
    g.add_argument("--no-plot", action="store_true", help="no PNG")


def _grid(args):
    from inc_transformer_mt.bench.benchmark import Grid

    runtimes = tuple(r.strip() for r in args.runtimes.split(",") if r.strip())
    bad = [r for r in runtimes if r not in RUNTIMES]
    if bad or not runtimes:
        raise UserError(f"--runtimes: expected some of {', '.join(RUNTIMES)}, got {args.runtimes!r}")
    if args.max_tokens < 1:
        raise UserError("--max-tokens must be positive")
    return Grid(runtimes=runtimes, streams=options.int_list(args.streams, "--streams"),
                batch_sentences=options.int_list(args.batch_sentences, "--batch-sentences"), max_tokens=args.max_tokens)


def run(args) -> int:
    from inc_transformer_mt.api import benchmark
    from inc_transformer_mt.bench.benchmark import render_markdown, render_plot

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: --out exists and is not a directory")
    models = options.labelled_models(args.models, args) if args.models else None
    report = benchmark(models, data=options.data_options(args), grid=_grid(args), reps=args.reps,
                       search_sentences=args.search_sentences, latency_sentences=args.latency_sentences,
                       command=shlex.join(["inc-mt", *args.argv]), log=lambda s: print(s, file=sys.stderr, flush=True))
    out.mkdir(parents=True, exist_ok=True)
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
