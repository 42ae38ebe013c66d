"""A model directory for a graph the passes produced: the graph, model.json (listing the passes) and tokenizer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from inc_transformer_mt.atomic import atomic_write
from inc_transformer_mt.data.tokenizer import copy_tokenizer

__all__ = ["write_optimized_model"]


def write_optimized_model(model, graph_def, names: list[str], out: Path, record: dict[str, Any]) -> Path:
    """Write ``model.pb.gz``, ``model.json``, ``spm.model`` and ``passes.json`` (``record``) into ``out``.

    ``model`` is the ResolvedModel the graph came from; its metadata is kept, with the passes appended.
    """
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "model.pb.gz", graph_def.SerializeToString(deterministic=True), gzip_level=6)
    meta_path = model.graph_path.parent / "model.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else model.meta.to_dict()
    meta["model"] = {**(meta.get("model") or {}), "graph": "model.pb.gz",
                     "passes": [*(meta.get("model") or {}).get("passes", []), *names]}
    if model.tokenizer_path and Path(model.tokenizer_path).is_file():
        meta["tokenizer"] = copy_tokenizer(model.tokenizer_path, out)
    atomic_write(out / "model.json", json.dumps(meta, indent=2) + "\n")
    atomic_write(out / "passes.json", json.dumps(record, indent=2) + "\n")
    return out
