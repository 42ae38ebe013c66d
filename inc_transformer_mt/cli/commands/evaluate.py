"""``inc-mt evaluate``: translate a test set and report sacreBLEU with its signature."""

from __future__ import annotations

import json

from inc_transformer_mt.cli import options

NAME = "evaluate"
HELP = "translate a test set and report sacreBLEU with its signature"


def add_arguments(p) -> None:
    options.add_data_options(p)
    p.add_argument("--hyp-out", help="also write the translations to this file")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    options.add_model_options(p)
    options.add_batching_options(p)
    options.add_runtime_options(p)


def run(args) -> int:
    from inc_transformer_mt.api import evaluate

    r = evaluate(model=options.model_options(args), data=options.data_options(args), run=options.run_options(args),
                 hyp_out=args.hyp_out)
    if args.json:
        print(json.dumps(r.to_dict(), indent=2))
        return 0
    print(f"{r.dataset}: {r.sentences} sentences, BLEU {r.bleu:.2f}")
    print(f"signature: {r.signature}")
    print(f"time: {r.seconds:.1f} s ({r.sentences_per_second} sentences/s, {r.batches} length-sorted batches)")
    return 0
