"""Per-op time breakdown of translating with a frozen graph, from TensorFlow's step stats.

Each batch is run untraced twice (warm-up, then timed: ``wall_s``) and once with ``FULL_TRACE``; op times (end - start of every
executed node, decode-loop steps included) are summed by category. ITEX rewrites INT8 MatMuls with their
Quantize/Dequantize into oneDNN Graph ("LLGA") partitions, which are timed as one op: they get their own
category. Op times are summed CPU-side durations, so their total can differ from wall time (ops overlap,
tracing adds overhead): read the shares, not the absolute numbers, and compare models side by side.

Ops per decode step: the executed nodes of the loop frame (by name; nodes Grappler adds under a loop name
scope count too) over the decode steps (``LoopCond`` executions, which include each loop's final test).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from inc_transformer_mt.defaults import MAX_SENTENCES, MAX_TOKENS

__all__ = ["CATEGORIES", "OpProfile", "categorize", "profile_translation", "render_profiles"]

CATEGORIES = (
    "MatMul",
    "INT8 MatMul partitions (ITEX oneDNN Graph, Q/DQ fused)",
    "Quantize/Dequantize",
    "BatchMatMulV2",
    "GatherNd (beam cache reorder)",
    "Softmax",
    "LayerNorm",
    "beam search top-k + log-softmax",
    "rest",
)
_LABEL = re.compile(r"^(?:\[[^\]]*\]\s*)?(\S+) = ([A-Za-z0-9_]+)")


def categorize(op: str, name: str) -> str:
    """The category of one executed node (op type as TensorFlow ran it, node name)."""
    if op == "OneDnnGraphCPU" or name.endswith("_LLGA"):
        return "INT8 MatMul partitions (ITEX oneDNN Graph, Q/DQ fused)"
    if "BatchMatMul" in op:
        return "BatchMatMulV2"
    if "MatMul" in op:
        return "MatMul"
    if re.search(r"Quantize|Dequantize|Requantize", op):
        return "Quantize/Dequantize"
    if op == "GatherNd" or op.endswith("GatherNd") or "/inc_mt_gather/" in name:
        return "GatherNd (beam cache reorder)"  # GatherNd, or the flattened Gather the pass puts in its place
    if op.endswith(("LogSoftmax", "TopKV2")):
        return "beam search top-k + log-softmax"
    # the integer-only softmax's ops (dtype integer), and the attention weights of a model without Softmax (Lin et
    # al.'s polynomial attention, float or integer): the same place in the model
    if op.endswith("Softmax") or "/integer_softmax/" in name or "/polynomial_attention" in name:
        return "Softmax"
    if "LayerNorm" in op or "/layer_norm" in name or name.startswith("layer_norm"):
        return "LayerNorm"
    return "rest"


@dataclass
class OpProfile:
    label: str
    sentences: int
    wall_s: float  # untraced wall time of the batches (after a warm-up run of each)
    op_us: dict[str, float] = field(default_factory=dict)  # category -> summed op microseconds
    op_types: dict[str, float] = field(default_factory=dict)  # op type -> summed op microseconds
    loop_ops: int = 0  # executed nodes of the decode loop frame (traced runs)
    decode_steps: int = 0  # decode steps of the traced runs (LoopCond runs once per step, plus the final test)

    @property
    def ops_per_step(self) -> float | None:
        """Nodes TensorFlow executed per decode step (of this graph's loop frame; Grappler's rewrites included)."""
        return self.loop_ops / self.decode_steps if self.decode_steps else None

    @property
    def total_us(self) -> float:
        return sum(self.op_us.values())

    def shares(self) -> dict[str, float]:
        total = self.total_us or 1.0
        return {c: self.op_us.get(c, 0.0) / total for c in CATEGORIES}

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "sentences": self.sentences, "wall_s": round(self.wall_s, 3),
                "op_ms": {c: round(self.op_us.get(c, 0.0) / 1000, 2) for c in CATEGORIES},
                "share": {c: round(v, 4) for c, v in self.shares().items()},
                "top_op_types_ms": {k: round(v / 1000, 2) for k, v in
                                    sorted(self.op_types.items(), key=lambda kv: -kv[1])[:15]},
                "decode_steps": self.decode_steps,
                "ops_per_decode_step": None if self.ops_per_step is None else round(self.ops_per_step, 1)}


def profile_translation(translator, sentences: Sequence[str], label: str, *, max_tokens: int = MAX_TOKENS,
                        max_sentences: int = MAX_SENTENCES) -> OpProfile:
    """Breakdown of ``translator`` (an :class:`~inc_transformer_mt.inference.translate.Translator`) on sentences."""
    import tensorflow as tf

    from inc_transformer_mt.data.batching import make_batches, pad_batch, sort_by_length

    ids = translator.encode(sentences)
    lengths = [len(r) for r in ids]
    batches = make_batches(sort_by_length(lengths), lengths, max_tokens=max_tokens, max_sentences=max_sentences)
    from inc_transformer_mt.model.analysis import node_frames

    graph_ops = {n.name: n.op for n in translator.graph_def.node}
    frames = node_frames(translator.graph_def)[0]
    loop_prefixes = tuple({name.rsplit("/", 1)[0] + "/" for name in frames if "/" in name})
    prof = OpProfile(label=label, sentences=len(sentences), wall_s=0.0)
    by_cat: Counter = Counter()
    by_type: Counter = Counter()
    options = tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
    pad = translator.model.meta.pad_id
    for batch in batches:
        feed = {translator._input: pad_batch([ids[i] for i in batch], pad)}
        translator.session.run(translator._output, feed)  # warm-up for this batch shape
        t = time.perf_counter()
        translator.session.run(translator._output, feed)
        prof.wall_s += time.perf_counter() - t
        meta = tf.compat.v1.RunMetadata()
        translator.session.run(translator._output, feed, options=options, run_metadata=meta)
        for dev in meta.step_stats.dev_stats:
            for ns in dev.node_stats:
                m = _LABEL.match(ns.timeline_label)
                op = m.group(2) if m else graph_ops.get(ns.node_name, "unknown")
                us = float(ns.op_end_rel_micros - ns.op_start_rel_micros)
                by_cat[categorize(op, ns.node_name)] += us
                by_type[op] += us
                if op == "LoopCond":
                    prof.decode_steps += 1
                if ns.node_name in frames or (ns.node_name not in graph_ops and
                                              ns.node_name.startswith(loop_prefixes)):
                    prof.loop_ops += 1
    prof.op_us, prof.op_types = dict(by_cat), dict(by_type)
    return prof


def render_profiles(profiles: Sequence[OpProfile], header: str = "") -> str:
    """Markdown: one column per profiled graph, share of summed op time (and ms) per category."""
    lines = [header] if header else []
    lines.append("| category | " + " | ".join(p.label for p in profiles) + " |")
    lines.append("|---|" + "---|" * len(profiles))
    for c in CATEGORIES:
        cells = [f"{p.shares()[c]:.1%} ({p.op_us.get(c, 0.0) / 1000:.0f} ms)" for p in profiles]
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    lines.append("| **summed op time** | " + " | ".join(f"{p.total_us / 1000:.0f} ms" for p in profiles) + " |")
    lines.append("| untraced wall time | " + " | ".join(f"{p.wall_s:.2f} s" for p in profiles) + " |")
    lines.append("| ops executed per decode step | " + " | ".join(
        "?" if p.ops_per_step is None else f"{p.ops_per_step:.0f}" for p in profiles) + " |")
    return "\n".join(lines) + "\n"
