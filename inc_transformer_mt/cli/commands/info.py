"""``inc-mt info``: tensor names and op census (inside / outside the decode loop)."""

from __future__ import annotations

import json

from inc_transformer_mt.cli import options
from inc_transformer_mt.errors import EXIT_BAD_INPUT

NAME = "info"
HELP = ("tensor names and op census (inside / outside the decode loop); for a graph without those tensors, the "
        "integer token-id inputs and outputs it has, as proposed --input-tensor/--output-tensor")


def add_arguments(p) -> None:
    options.add_model_options(p)
    p.add_argument("--json", action="store_true", help="print JSON")


def _propose(graph_def, model, as_json: bool) -> int:
    """The graph does not have the tensors its metadata (or the defaults) name: propose candidates."""
    from inc_transformer_mt.model.graph import propose_tensors

    found = propose_tensors(graph_def)
    if as_json:
        print(json.dumps({"graph": str(model.graph_path), "nodes": len(graph_def.node), "proposed": found}, indent=2))
    else:
        print(f"graph: {model.graph_path} ({len(graph_def.node)} nodes): no tensors "
              f"{model.meta.input_tensor!r} / {model.meta.output_tensor!r}")
        print("integer token-id inputs:  " + (", ".join(found["inputs"]) or "(none)"))
        print("integer token-id outputs: " + (", ".join(found["outputs"]) or "(none)"))
        if found["inputs"] and found["outputs"]:
            print(f"proposed: --input-tensor {found['inputs'][0]} --output-tensor {found['outputs'][0]} "
                  "(and --tokenizer), or write them into a model.json beside the graph")
    return 0 if found["inputs"] and found["outputs"] else EXIT_BAD_INPUT


def run(args) -> int:
    from inc_transformer_mt.model.analysis import op_census
    from inc_transformer_mt.model.graph import check_tensor, load_graph_def

    model = options.model_options(args).resolve()
    graph_def = load_graph_def(model.graph_path)
    names = {n.name for n in graph_def.node}
    unknown_graph = not args.input_tensor and not args.output_tensor and not (
        model.graph_path.parent / "model.json").is_file()
    if unknown_graph and not {model.meta.input_tensor.split(":")[0], model.meta.output_tensor.split(":")[0]} <= names:
        return _propose(graph_def, model, args.json)
    check_tensor(graph_def, model.meta.input_tensor, "input tensor", model.graph_path)
    check_tensor(graph_def, model.meta.output_tensor, "output tensor", model.graph_path)
    info = {"graph": str(model.graph_path), "nodes": len(graph_def.node), "meta": model.meta.to_dict(),
            "census": op_census(graph_def).to_dict()}
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"graph: {info['graph']} ({info['nodes']} nodes, control flow {info['census']['control_flow']})")
    print(f"input: {model.meta.input_tensor}  output: {model.meta.output_tensor}")
    print(f"{'op':<16}{'outside loop':>14}{'inside loop':>13}{'total':>8}")
    for op, c in info["census"]["ops"].items():
        print(f"{op:<16}{c['outside_loop']:>14}{c['inside_loop']:>13}{c['total']:>8}")
    return 0
