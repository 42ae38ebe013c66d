"""``inc-mt optimize``: apply graph passes to a model; optionally check translations stay token-identical."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from inc_transformer_mt.cli import options
from inc_transformer_mt.defaults import DEFAULT_PASSES, PASS_NAMES
from inc_transformer_mt.errors import EXIT_CHECK_FAILED, UserError

NAME = "optimize"
HELP = ("apply the exact decode-loop graph passes (beam-invariant state, loop-invariant code motion, one cache "
        "reorder per step, one Quantize per tensor) to a model directory")


def add_arguments(p) -> None:
    p.add_argument("model", help="model directory or graph")
    p.add_argument("--out", required=True, help="output model directory (must be empty or new)")
    p.add_argument("--passes", default=",".join(DEFAULT_PASSES),
                   help=f"comma-separated passes, run in order: {', '.join(PASS_NAMES)} "
                        f"(default {','.join(DEFAULT_PASSES)})")
    p.add_argument("--check-split", metavar="SPLIT", help="Multi30k split (or --source file) on which translations "
                   "must stay token-identical; a difference exits 1 and writes nothing")
    options.add_model_options(p, path=False)
    options.add_data_options(p, reference=False)


def _check(model, graph, new, args) -> dict[str, Any]:
    """Token ids of both graphs on the check set, compared sentence by sentence."""
    from inc_transformer_mt.data.corpus import read_lines
    from inc_transformer_mt.inference.identity import compare_translations

    data = options.data_options(args)
    if data.source is None:
        data = dataclasses.replace(data, split=args.check_split)
    src_path, _, label = data.files()
    src = read_lines(src_path, what="source file")[: data.limit]
    result = compare_translations(model, graph, new, src).to_dict()
    return {"split": label, **result}


def run(args) -> int:
    from inc_transformer_mt.model.analysis import op_census
    from inc_transformer_mt.model.graph import load_graph_def
    from inc_transformer_mt.passes import apply_passes
    from inc_transformer_mt.passes.output import write_optimized_model

    names = [p.strip() for p in args.passes.split(",") if p.strip()]
    unknown = [p for p in names if p not in PASS_NAMES]
    if unknown or not names:
        raise UserError(f"--passes: unknown pass {unknown[0] if unknown else '(none)'!r}; known: {', '.join(PASS_NAMES)}")
    model = options.model_options(args, args.model).resolve()
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out}: output directory is not empty")
    graph = load_graph_def(model.graph_path)
    new, reports = apply_passes(graph, names)
    result: dict[str, Any] = {"model": str(model.graph_path), "passes": reports,
                              "census_before": op_census(graph).to_dict()["ops"],
                              "census_after": op_census(new).to_dict()["ops"]}
    for r in reports:
        what = (f"{r['rewritten']} rewritten, {len(r['skipped'])} left alone" if r.get("applicable", True)
                else f"not applicable: {r['reason']}")
        print(f"{r['pass']}: {what}; nodes {r['nodes_before']} -> {r['nodes_after']}, run per decode step "
              f"{r['step_nodes_before']} -> {r['step_nodes_after']}")
    if args.check_split or args.source:
        result["check"] = check = _check(model, graph, new, args)
        if not check["identical"]:
            d = check["differing_lines"]
            print(f"FAILED: the passes changed {check['differing']} translation(s) of "
                  f"{check['split']} (first at line {d[0]}); nothing written")
            return EXIT_CHECK_FAILED
        print(f"{check['split']}: translations token-identical on {check['sentences']} sentences")
    write_optimized_model(model, new, names, out, result)
    print(f"file size: {model.graph_path.stat().st_size / 2**20:.1f} MiB -> "
          f"{(out / 'model.pb.gz').stat().st_size / 2**20:.1f} MiB")
    print(f"written: {out}")
    return 0
