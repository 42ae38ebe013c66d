"""``inc-mt demo``: the built-in default job: tune the reference model with the default recipe."""

from __future__ import annotations

from pathlib import Path

from inc_transformer_mt.cli.commands.tune import add_set_option, tune_and_summarise
from inc_transformer_mt.errors import UserError

NAME = "demo"
HELP = ("the built-in default job: tune the reference model to INT8 with the default recipe "
        "(recipes/reference_kl.yaml) and report FP32 vs INT8 BLEU")


def add_arguments(p) -> None:
    p.add_argument("--out", default="out/demo", help="output directory, replaced if present (default out/demo)")
    p.add_argument("--recipe", help="recipe to use instead of recipes/reference_kl.yaml")
    add_set_option(p)


def run(args) -> int:
    from inc_transformer_mt.api import DEFAULT_RECIPE

    recipe = Path(args.recipe) if args.recipe else DEFAULT_RECIPE
    if not recipe.is_file():
        raise UserError(f"{recipe}: default recipe not found (run from a checkout, or give --recipe)")
    overrides = [f"outputs.dir={Path(args.out).resolve()}", "outputs.overwrite=replace", *(args.set or [])]
    print(f"tuning the reference model with {recipe} (about 3-4 minutes on 2 cores; longer when the fallback runs)",
          flush=True)
    return tune_and_summarise(recipe, overrides)
