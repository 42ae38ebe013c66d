"""``inc-mt info``: tensor names and op census (inside / outside the decode loop)."""

from __future__ import annotations

import json

from inc_transformer_mt.cli import options

NAME = "info"
HELP = "tensor names and op census (inside / outside the decode loop)"


def add_arguments(p) -> None:
    options.add_model_options(p)
    p.add_argument("--json", action="store_true", help="print JSON")


def run(args) -> int:
    from inc_transformer_mt.model.analysis import op_census
    from inc_transformer_mt.model.graph import check_tensor, load_graph_def

    model = options.model_options(args).resolve()
    graph_def = load_graph_def(model.graph_path)
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
