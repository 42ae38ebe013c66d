"""``inc-mt optimize``: apply graph passes to a model; optionally check translations stay token-identical."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

from inc_transformer_mt.atomic import atomic_write
from inc_transformer_mt.cli import options
from inc_transformer_mt.defaults import PASS_NAMES
from inc_transformer_mt.errors import EXIT_CHECK_FAILED, UserError

NAME = "optimize"
HELP = "apply graph passes (GatherNd -> flattened Gather, redundant QuantizeV2 removal) to a model directory"


def add_arguments(p) -> None:
    p.add_argument("model", help="model directory or graph")
    p.add_argument("--out", required=True, help="output model directory (must be empty or new)")
    p.add_argument("--passes", default=PASS_NAMES[0],
                   help=f"comma-separated passes, run in order: {', '.join(PASS_NAMES)} (default {PASS_NAMES[0]})")
    p.add_argument("--check-split", metavar="SPLIT", help="Multi30k split (or --source file) on which translations "
                   "must stay token-identical; a difference exits 1 and writes nothing")
    options.add_model_options(p, path=False)
    options.add_data_options(p, reference=False)


def _check(model, graph, new, args) -> dict[str, Any]:
    from inc_transformer_mt.data.corpus import read_lines
    from inc_transformer_mt.inference.translate import Translator

    data = options.data_options(args)
    if data.source is None:
        data = dataclasses.replace(data, split=args.check_split)
    src_path, _, label = data.files()
    src = read_lines(src_path, what="source file")[: data.limit]
    with Translator(model, graph_def=graph) as a, Translator(model, graph_def=new) as b:
        ha, hb = a.translate(src, progress=False), b.translate(src, progress=False)
    differ = [i + 1 for i, (x, y) in enumerate(zip(ha, hb, strict=True)) if x != y]
    return {"split": label, "sentences": len(src), "differing_lines": differ[:20], "identical": not differ}


def _write(out: Path, model, new, names, result) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "model.pb.gz", new.SerializeToString(deterministic=True), gzip_level=6)
    meta_path = model.graph_path.parent / "model.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else model.meta.to_dict()
    meta["model"] = {**(meta.get("model") or {}), "graph": "model.pb.gz",
                     "passes": [*(meta.get("model") or {}).get("passes", []), *names]}
    atomic_write(out / "model.json", json.dumps(meta, indent=2) + "\n")
    if model.tokenizer_path and Path(model.tokenizer_path).is_file():
        shutil.copyfile(model.tokenizer_path, out / "spm.model")
    atomic_write(out / "passes.json", json.dumps(result, indent=2) + "\n")


def run(args) -> int:
    from inc_transformer_mt.model.analysis import op_census
    from inc_transformer_mt.model.graph import load_graph_def
    from inc_transformer_mt.passes import apply_passes

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
        print(f"{r['pass']}: {r['rewritten']} rewritten, {len(r['skipped'])} left alone")
    if args.check_split or args.source:
        result["check"] = check = _check(model, graph, new, args)
        if not check["identical"]:
            d = check["differing_lines"]
            print(f"FAILED: the passes changed {len(d)}{'+' if len(d) == 20 else ''} translation(s) of "
                  f"{check['split']} (first at line {d[0]}); nothing written")
            return EXIT_CHECK_FAILED
        print(f"{check['split']}: translations identical on {check['sentences']} sentences")
    _write(out, model, new, names, result)
    print(f"file size: {model.graph_path.stat().st_size / 2**20:.1f} MiB -> "
          f"{(out / 'model.pb.gz').stat().st_size / 2**20:.1f} MiB")
    print(f"written: {out}")
    return 0
