"""``inc-mt import``: a TF2 SavedModel -> a model directory (frozen graph, v1 control flow, ids in and out)."""

from __future__ import annotations

import dataclasses
import json

from inc_transformer_mt.cli import options
from inc_transformer_mt.errors import EXIT_CHECK_FAILED

NAME = "import"
HELP = ("import a TF2 SavedModel (serving signature: token ids or strings in, ids or strings out) as a frozen "
        "model directory with v1 control flow that tune, evaluate and regress run")


def add_arguments(p) -> None:
    p.add_argument("saved_model", help="SavedModel directory")
    p.add_argument("--out", required=True, help="output model directory (must be empty or new)")
    g = p.add_argument_group("signature")
    g.add_argument("--signature", help="signature key (default serving_default, or the only one)")
    g.add_argument("--input-key", help="signature input holding the source tokens (default: the only rank-2 "
                   "string/integer input)")
    g.add_argument("--output-key", help="signature output holding the output tokens (default: the only rank-2/3 "
                   "string/integer output, else 'tokens'/'ids')")
    g.add_argument("--score-key", help="signature output holding the score (default: log_probs/scores if present)")
    g = p.add_argument_group("tokenizer")
    g.add_argument("--tokenizer", help="SentencePiece model or tokenizer.json (default, for a signature over strings: "
                   "the OpenNMT Tokenizer options in the SavedModel's assets.extra)")
    g.add_argument("--eos-id", type=int, help="end-of-sentence id (default: </s> of the target vocabulary, else 1)")
    g.add_argument("--pad-id", type=int, help="padding id (default: <blank>/<pad> of the vocabulary, else 0)")
    g.add_argument("--max-source-tokens", type=int, default=200, help="longest source accepted (default 200)")
    g = p.add_argument_group("check")
    g.add_argument("--check-split", metavar="SPLIT", help="Multi30k split (or --source file) on which the import "
                   "must translate token-identically to the SavedModel; a difference exits 1 and writes nothing")
    g.add_argument("--json", action="store_true", help="print the result as JSON")
    options.add_data_options(p, reference=False)


def run(args) -> int:
    from inc_transformer_mt.api import import_model

    check = None
    if args.check_split or args.source:
        check = options.data_options(args)
        if check.source is None:
            check = dataclasses.replace(check, split=args.check_split)
    result = import_model(args.saved_model, args.out, signature=args.signature, input_key=args.input_key,
                          output_key=args.output_key, score_key=args.score_key, tokenizer=args.tokenizer,
                          eos_id=args.eos_id, pad_id=args.pad_id, max_source_tokens=args.max_source_tokens,
                          check=check, log=print if not args.json else (lambda s: None))
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        for note in result.notes:
            print(note)
        ops = result.census["ops"]
        print("decode-loop ops: " + ", ".join(f"{op} {c['inside_loop']}/{c['total']}" for op, c in ops.items()))
        if result.check is not None:
            c = result.check
            print(f"{c['data']}: {c['sentences'] - c['differing']}/{c['sentences']} translations token-identical "
                  "to the SavedModel")
    if not result.identical:
        print(f"FAILED: the import translates {result.check['differing']} sentence(s) differently "
              f"(first at line {result.check['differing_lines'][0]}); nothing written")
        return EXIT_CHECK_FAILED
    if not args.json:
        print(f"written: {args.out}")
    return 0
