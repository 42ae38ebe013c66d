"""Option groups shared by the commands, and their conversion to the API's option objects.

Every command that runs a graph takes the same groups: model (path, tensor names, tokenizer), data (a
Multi30k split or source/reference files, data directory, languages, limit), batching and runtime. A group's
flags mean the same on every command.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from inc_transformer_mt.api import REFERENCE_MODEL, DataOptions, ModelOptions, RunOptions
from inc_transformer_mt.defaults import MAX_SENTENCES, MAX_TOKENS, MULTI30K_SPLITS, RUNTIMES, SPLIT, SRC_LANG, TGT_LANG
from inc_transformer_mt.errors import UserError

__all__ = [
    "add_batching_options",
    "add_data_options",
    "add_model_options",
    "add_runtime_options",
    "data_options",
    "int_list",
    "labelled_models",
    "model_options",
    "quiet_tensorflow",
    "run_options",
]


def quiet_tensorflow() -> None:
    """Keep TensorFlow's and ITEX's C++ start-up chatter off stderr (``-v`` or the variables bring it back)."""
    if logging.getLogger().isEnabledFor(logging.INFO):
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("ITEX_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


# ------------------------------------------------------------------------------------------------ model
def add_model_options(p: argparse.ArgumentParser, *, path: bool = True) -> None:
    """``--model`` (unless the command takes models as arguments) and the tensor-name/tokenizer overrides."""
    g = p.add_argument_group("model")
    if path:
        g.add_argument("--model", default=str(REFERENCE_MODEL),
                       help="model directory (with model.json) or frozen graph .pb/.pb.gz (default: the reference "
                       "model)")
    g.add_argument("--input-tensor", help="input token-id tensor, int32 [batch, length] (default from model.json)")
    g.add_argument("--output-tensor", help="output token-id tensor, int32 [batch, length] (default from model.json)")
    g.add_argument("--tokenizer", help="SentencePiece model (default from model.json)")


def model_options(args: argparse.Namespace, path: str | Path | None = None) -> ModelOptions:
    return ModelOptions(path=path if path is not None else getattr(args, "model", REFERENCE_MODEL),
                        input_tensor=args.input_tensor, output_tensor=args.output_tensor, tokenizer=args.tokenizer)


def labelled_models(specs: Sequence[str], args: argparse.Namespace) -> list[tuple[str, ModelOptions]]:
    """``[LABEL=]PATH`` arguments as (label, ModelOptions); the label defaults to the directory or file name."""
    out = []
    for spec in specs:
        label, _, path = spec.partition("=") if "=" in spec else ("", "", spec)
        out.append((label or Path(path).name, model_options(args, path)))
    return out


# ------------------------------------------------------------------------------------------------- data
def add_data_options(p: argparse.ArgumentParser, *, reference: bool = True, limit: bool = True) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--source", help="source sentences (plain or .gz) instead of a Multi30k split")
    if reference:
        g.add_argument("--reference", help="reference translations, line-aligned with --source")
    g.add_argument("--split", default=SPLIT, choices=MULTI30K_SPLITS,
                   help=f"Multi30k split when no --source is given (default {SPLIT})")
    g.add_argument("--data-dir", help="Multi30k directory (default: $INC_MT_MULTI30K or ../shared/data/multi30k)")
    g.add_argument("--src-lang", default=SRC_LANG, help=f"source language of the split (default {SRC_LANG})")
    g.add_argument("--tgt-lang", default=TGT_LANG, help=f"target language of the split (default {TGT_LANG})")
    if limit:
        g.add_argument("--limit", type=int, help="only the first N sentences")


def data_options(args: argparse.Namespace) -> DataOptions:
    return DataOptions(split=args.split, source=args.source, reference=getattr(args, "reference", None),
                       data_dir=args.data_dir, src_lang=args.src_lang, tgt_lang=args.tgt_lang,
                       limit=getattr(args, "limit", None))


# ------------------------------------------------------------------------------------- batching, runtime
def add_batching_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("batching")
    g.add_argument("--max-tokens", type=int, help="padded source tokens per batch (default: the model's runtime "
                   f"settings in model.json, else {MAX_TOKENS})")
    g.add_argument("--max-sentences", type=int,
                   help=f"sentences per batch (default: model.json runtime, else {MAX_SENTENCES})")


def add_runtime_options(p: argparse.ArgumentParser, *, streams: bool = True) -> None:
    g = p.add_argument_group("runtime")
    if streams:
        g.add_argument("--streams", type=int, help="parallel streams, each a process pinned to its own cores "
                       "(default: model.json runtime, else 1 in this process)")
        g.add_argument("--runtime", choices=RUNTIMES,
                       help="TensorFlow runtime of the streams (default: model.json runtime, else itex)")
    g.add_argument("--threads", type=int, help="intra-op threads (per stream; 0 or unset: all of its cores)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_options(args: argparse.Namespace) -> RunOptions:
    return RunOptions(max_tokens=getattr(args, "max_tokens", None), max_sentences=getattr(args, "max_sentences", None),
                      streams=getattr(args, "streams", None), runtime=getattr(args, "runtime", None),
                      threads=args.threads, progress=False if args.no_progress else None)


def int_list(text: str, flag: str) -> tuple[int, ...]:
    """A comma-separated list of positive integers; a UserError naming ``flag`` otherwise."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UserError(f"{flag}: expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise UserError(f"{flag}: expected positive integers, got {text!r}")
    return values
