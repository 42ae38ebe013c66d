"""``inc-mt regress``: check a tuned model against its manifest (exit 1 on regression)."""

from __future__ import annotations

import json
import sys

from inc_transformer_mt.atomic import check_output_path
from inc_transformer_mt.cli import options
from inc_transformer_mt.defaults import REGRESS_SPEED_REPS

NAME = "regress"
HELP = "check a tuned model against its manifest: hash, BLEU, drop, INT8 census, speed ratio (exit 1 on regression)"


def add_arguments(p) -> None:
    p.add_argument("model", help="tuned model directory (with model.json and manifest.json)")
    p.add_argument("--manifest", help="manifest file (default MODEL/manifest.json)")
    p.add_argument("--limit", type=int, help="score only the first N sentences of the recorded set (needs a value "
                   "recorded on that subset)")
    p.add_argument("--speed", action="store_true", help="also measure the INT8/FP32 speed ratio side by side")
    p.add_argument("--speed-reps", type=int, default=REGRESS_SPEED_REPS,
                   help=f"alternating timed runs per model (default {REGRESS_SPEED_REPS})")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--junit", metavar="FILE", help="write JUnit XML for CI systems")
    p.add_argument("--rebaseline", action="store_true", help="record the current hashes, BLEU, census (and speed) "
                   "in the manifest, deliberately")
    options.add_model_options(p, path=False)


def run(args) -> int:
    from inc_transformer_mt.api import regress
    from inc_transformer_mt.regression.check import render_table, write_outputs

    if args.junit:
        check_output_path(args.junit)
    result = regress(args.model, args.manifest, model=options.model_options(args, args.model), limit=args.limit,
                     speed=args.speed, speed_reps=args.speed_reps, rebaseline=args.rebaseline,
                     log=lambda s: print(s, file=sys.stderr, flush=True))
    write_outputs(result, None, args.junit)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        sys.stdout.write(render_table(result))
    return 0 if args.rebaseline else result.exit_code
