"""``inc-mt tune``: tune an INT8 model from a recipe until the BLEU criterion holds (exit 1 if nothing does)."""

from __future__ import annotations

import sys

NAME = "tune"
HELP = "tune an INT8 model from a recipe until the BLEU criterion holds (exit 1 if nothing does)"


def add_arguments(p) -> None:
    p.add_argument("recipe", help="recipe YAML file (see recipes/)")
    add_set_option(p)


def add_set_option(p) -> None:
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a recipe value, e.g. --set calibration.kl_mode=conjugate (repeatable)")


def tune_and_summarise(recipe, overrides) -> int:
    """Run the tune, printing progress, then the summary the report gives; the tune's exit code."""
    from inc_transformer_mt.api import tune
    from inc_transformer_mt.report.tune_report import render_summary

    result = tune(recipe, overrides, log=lambda s: print(s, flush=True))
    sys.stdout.write(render_summary(result.report, result.out_dir))
    return result.exit_code


def run(args) -> int:
    return tune_and_summarise(args.recipe, args.set or [])
