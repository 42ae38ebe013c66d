"""Every default and every closed set of choices, in one place.

The recipe schema's ``Literal`` types, the CLI's option defaults and choices, and the library functions'
keyword defaults all read these, so a default changes in one line. Pure constants: no imports from the
package, importable from every layer.
"""

from __future__ import annotations

__all__ = [
    "BACKENDS",
    "BENCH_BATCH_SENTENCES",
    "BENCH_LATENCY_SENTENCES",
    "BENCH_REPS",
    "BENCH_SEARCH_SENTENCES",
    "BENCH_STREAMS",
    "CALIBRATION_METHODS",
    "CRITERION_TYPES",
    "DEFAULT_PASSES",
    "ENGINES",
    "FALLBACKS",
    "GRANULARITIES",
    "KL_MODES",
    "MAX_ABSOLUTE_DROP",
    "MAX_DROP",
    "MAX_SENTENCES",
    "MAX_TOKENS",
    "MULTI30K_SPLITS",
    "OVERWRITE_POLICIES",
    "PASS_NAMES",
    "REGRESS_SPEED_REPS",
    "RUNTIMES",
    "RUNTIME_MAX_SENTENCES",
    "SPLIT",
    "SRC_LANG",
    "TGT_LANG",
    "WEIGHT_GRANULARITIES",
    "XLA_FLAGS",
]

# --- batching: padded source tokens and sentences per length-sorted batch
MAX_TOKENS = 4096
MAX_SENTENCES = 128
#: sentences per batch written into a tuned model's runtime settings (the benchmark's best on 2 cores:
#: a batch decodes until its longest sentence ends, so small batches waste less)
RUNTIME_MAX_SENTENCES = 8

# --- data
MULTI30K_SPLITS = ("train", "val", "test_2016_flickr")
SPLIT = "test_2016_flickr"
SRC_LANG = "en"
TGT_LANG = "de"

# --- running graphs
# TensorFlow with the ITEX plugin, stock TensorFlow, or stock TensorFlow with XLA auto-clustering on the CPU
RUNTIMES = ("itex", "stock", "stock-xla")
#: what stock-xla sets before TensorFlow is imported (auto-clustering of every graph, CPU included)
XLA_FLAGS = "--tf_xla_auto_jit=2 --tf_xla_cpu_global_jit"
BACKENDS = ("itex", "default")  # INC's TensorFlow backends: QDQ for ITEX, or fused quantized ops (oneDNN)

# --- recipes
CALIBRATION_METHODS = ("minmax", "kl")
KL_MODES = ("symmetric", "independent", "conjugate")
CRITERION_TYPES = ("absolute", "relative")
MAX_DROP = 0.5  # BLEU points
#: `inc-mt import`: ITEX's graph optimizer is switched off for a model when it changes more than this share of the
#: check translations (a miscompile changes nearly all; a different floating-point order flips the odd beam)
PLUGIN_DIVERGENCE_MAX = 0.02
MAX_ABSOLUTE_DROP = 10.0  # above this an absolute criterion passes almost anything
#: who drives the accuracy-driven search: this package's tuner, or INC's own ``autotune`` with its plug-ins
ENGINES = ("own", "inc")
FALLBACKS = ("sensitivity", "none")
GRANULARITIES = ("block", "op")
WEIGHT_GRANULARITIES = ("per_tensor", "per_channel")
OVERWRITE_POLICIES = ("never", "replace")
PASS_NAMES = ("beam_invariant_state", "hoist_loop_invariants", "compose_beam_gathers", "gather_nd_to_gather",
              "dedupe_quantize")
#: the decode-loop passes every recipe and `inc-mt optimize` run unless told otherwise (all exact)
DEFAULT_PASSES = ("dedupe_quantize", "beam_invariant_state", "hoist_loop_invariants", "compose_beam_gathers")

# --- benchmark and regression check
BENCH_REPS = 3
BENCH_SEARCH_SENTENCES = 150
BENCH_LATENCY_SENTENCES = 100
BENCH_STREAMS = (1, 2)
BENCH_BATCH_SENTENCES = (4, 8, 32)
REGRESS_SPEED_REPS = 3
