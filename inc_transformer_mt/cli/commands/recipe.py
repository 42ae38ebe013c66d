"""``inc-mt recipe validate|show|plan|schema``: check a tuning recipe, show it resolved, show what its
quantization rules select in its model, print its JSON schema."""

from __future__ import annotations

import json
import sys
from pathlib import Path

NAME = "recipe"
HELP = "check a tuning recipe, show it resolved, show its quantization plan, or print its JSON schema"
QUIET_TENSORFLOW = True  # only `plan` imports TensorFlow (to read the graph)


def add_arguments(p) -> None:
    from inc_transformer_mt.cli.commands.tune import add_set_option

    sub = p.add_subparsers(dest="recipe_command", metavar="ACTION", required=True)
    for name, text in (("validate", "check a recipe, its model and its data (exit 0 valid, 2 invalid, naming file, line and key)"),
                       ("show", "print the recipe with defaults filled in and paths resolved"),
                       ("plan", ("resolve the quantization rules against the model's graph: what each rule "
                                 "matches and the planned dtype per op type (exit 2 for a rule matching nothing)"))):
        r = sub.add_parser(name, help=text)
        r.add_argument("recipe", help="recipe YAML file")
        add_set_option(r)
        if name == "show":
            r.add_argument("--json", action="store_true", help="print JSON instead of YAML")
    sub.add_parser("schema", help="print the recipe JSON schema")


def run(args) -> int:
    from inc_transformer_mt.recipe import dump_recipe, load_recipe, recipe_json_schema, resolve_paths

    if args.recipe_command == "schema":
        sys.stdout.write(recipe_json_schema())
        return 0
    recipe = load_recipe(args.recipe, args.set or ())
    if args.recipe_command == "validate":
        from inc_transformer_mt.api import validate

        validate(args.recipe, args.set or ())
        print(f"ok: {args.recipe} is a valid recipe (its model and data files checked too)")
        return 0
    if args.recipe_command == "plan":
        from inc_transformer_mt.api import plan

        p = plan(args.recipe, args.set or ())
        for r in p.rules:
            where = f"line {r.line}" if r.line is not None else "default"
            matched = ", ".join(f"{n} {t}" for t, n in sorted(r.matched.items()))
            print(f"rule {r.index} ({where}): {r.rule}: matches {matched}")
        for op_type, counts in sorted(p.by_type().items()):
            print(f"{op_type}: " + ", ".join(f"{n} {d}" for d, n in sorted(counts.items())))
        return 0
    resolved = resolve_paths(recipe, Path(args.recipe).resolve().parent)
    if args.json:
        print(json.dumps(resolved.model_dump(mode="json"), indent=2))
    else:
        sys.stdout.write(dump_recipe(resolved))
    return 0
