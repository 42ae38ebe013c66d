"""``inc-mt profile``: per-op time breakdown of one or more graphs, side by side."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from inc_transformer_mt.atomic import atomic_write, check_output_path
from inc_transformer_mt.cli import options
from inc_transformer_mt.defaults import MAX_SENTENCES, MAX_TOKENS

NAME = "profile"
HELP = ("per-op time breakdown (MatMul, Q/DQ, GatherNd, Softmax, LayerNorm, ...) of one or more graphs, "
        "side by side")


def add_arguments(p) -> None:
    p.add_argument("models", nargs="+", metavar="[LABEL=]MODEL", help="model directories or graphs to profile")
    options.add_model_options(p, path=False)
    options.add_data_options(p, reference=False)
    options.add_batching_options(p)
    options.add_runtime_options(p, streams=False)
    p.add_argument("--md", help="also write the markdown table to this file")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")


def run(args) -> int:
    from inc_transformer_mt.bench.profile import profile_translation, render_profiles
    from inc_transformer_mt.env import cpu_model, isa_class
    from inc_transformer_mt.inference.translate import Translator

    if args.md:
        check_output_path(args.md)
    sentences, _, name = options.data_options(args).load(need_reference=False)
    max_tokens = args.max_tokens or MAX_TOKENS
    max_sentences = args.max_sentences or MAX_SENTENCES
    threads = args.threads or 0
    profiles = []
    for label, spec in options.labelled_models(args.models, args):
        # the same batches and threads for every graph (not each model's own runtime settings): a side-by-side
        with Translator(spec.resolve(), intra_threads=threads, inter_threads=threads) as tr:
            profiles.append(profile_translation(tr, sentences, label, max_tokens=max_tokens,
                                                max_sentences=max_sentences))
    header = (f"Per-op time on {name}, {len(sentences)} sentences, beam search as exported; {cpu_model()} "
              f"(ISA class {isa_class()}), {os.cpu_count()} CPUs. Share of summed op time "
              "(TensorFlow step stats, FULL_TRACE; ms in brackets).\n")
    text = render_profiles(profiles, header)
    if args.md:
        atomic_write(Path(args.md), text)
    if args.json:
        print(json.dumps([p.to_dict() for p in profiles], indent=2))
    else:
        sys.stdout.write(text)
    return 0
