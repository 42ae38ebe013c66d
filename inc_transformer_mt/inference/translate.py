"""Translating with a frozen graph: tokenize, sort by length, batch by token budget, run, restore order."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from inc_transformer_mt.data.batching import make_batches, pad_batch, restore_order, sort_by_length
from inc_transformer_mt.data.tokenizer import TokenizerLike, load_tokenizer
from inc_transformer_mt.defaults import MAX_SENTENCES, MAX_TOKENS
from inc_transformer_mt.errors import RuntimeFailure, UserError
from inc_transformer_mt.model.graph import ResolvedModel, check_tensor, load_graph_def

__all__ = ["TranslationStats", "Translator", "encode_checked"]

logger = logging.getLogger(__name__)


def encode_checked(tokenizer: TokenizerLike, sentences: Sequence[str], max_source_tokens: int,
                   source_name: str = "input", *, first_line: int = 1) -> list[list[int]]:
    """Subword ids of every sentence; a UserError naming the line (``sentences[0]`` is ``first_line``) when one is
    over the model's limit."""
    ids = tokenizer.encode_batch(sentences)
    for number, row in enumerate(ids, start=first_line):
        if len(row) > max_source_tokens:
            raise UserError(
                f"{source_name}:{number}: sentence has {len(row)} subword tokens, over the model's limit "
                f"of {max_source_tokens}"
            )
    return ids


def _load_problem(message: str) -> str:
    """The first line of TensorFlow's import error, shortened for an op only ITEX registers (the INT8 attention
    kernel): the model needs the itex runtime."""
    m = re.match(r"Op type not registered '([^']+)'", message)
    if m:
        return (f"op {m.group(1)} is not registered in this process: the model needs the itex runtime (ITEX "
                "loaded), not stock TensorFlow")
    return message.splitlines()[0]


def op_error_line(exc) -> str:
    """The line of a TensorFlow OpError that says what failed: graph-mode messages start with "Graph execution
    error:" and "Detected at node" traces; the cause is the last line that is not part of those."""
    lines = [ln.strip() for ln in str(getattr(exc, "message", exc)).splitlines() if ln.strip()]
    noise = ("Graph execution error", "Detected at node", "Node:", "defined at", "Original stack trace",
             "[[", "File ", "Function call stack")
    useful = [ln for ln in lines if not ln.startswith(noise)]
    return (useful[-1] if useful else lines[0] if lines else type(exc).__name__)[:500]


@dataclass
class TranslationStats:
    sentences: int = 0
    batches: int = 0
    source_tokens: int = 0
    output_tokens: int = 0
    seconds: float = 0.0


def _check_translator_tensor(tensor, role: str, flag: str, path) -> None:
    """A translator reads and writes int32 token ids of shape [batch, length]; anything else is refused
    when the graph is loaded, naming the tensor and what it has (an unknown rank is let through)."""
    import tensorflow as tf

    rank = tensor.shape.rank
    if tensor.dtype == tf.int32 and rank in (None, 2):
        return
    shape = "unknown shape" if rank is None else f"rank {rank}, shape {tensor.shape.as_list()}"
    raise UserError(f"{path}: {role} {tensor.name!r} is {tensor.dtype.name} with {shape}; a translator's "
                    f"{role} is int32 [batch, length] token ids (see {flag} or model.json)")


class Translator:
    """Runs a frozen translation graph in a TF1 session.

    Args:
        model: graph path, metadata and tokenizer (see :func:`resolve_model`).
        graph_def: an already loaded GraphDef (skips reading ``model.graph_path``).
        intra_threads / inter_threads: TF thread pools (0 = TensorFlow's default).
        plugin_optimizers: run the graph optimizers of TensorFlow plug-ins (ITEX's) on the graph; default:
            model.json's ``model.plugin_optimizers``, else on. ``inc-mt import`` turns them off for a graph whose
            translations they change.
    """

    def __init__(self, model: ResolvedModel, *, graph_def=None, intra_threads: int = 0, inter_threads: int = 0,
                 plugin_optimizers: bool | None = None):
        import tensorflow as tf

        self.model = model
        path = model.graph_path
        self.graph_def = graph_def if graph_def is not None else load_graph_def(path)
        if model.tokenizer_path is None:
            raise UserError(f"{path}: no tokenizer given (use --tokenizer or a model.json)")
        self.tokenizer = load_tokenizer(model.tokenizer_path, eos_id=model.meta.eos_id, pad_id=model.meta.pad_id)
        meta = model.meta
        self.input_name = check_tensor(self.graph_def, meta.input_tensor, "input tensor", path)
        self.output_name = check_tensor(self.graph_def, meta.output_tensor, "output tensor", path)
        self.max_source_tokens = meta.max_source_tokens
        graph = tf.Graph()
        with graph.as_default():
            try:
                tf.import_graph_def(self.graph_def, name="")
            except (ValueError, TypeError, tf.errors.OpError) as exc:
                raise UserError(f"{path}: the graph cannot be loaded ({_load_problem(str(exc))})") from None
            try:
                self._input = graph.get_tensor_by_name(self.input_name)
                self._output = graph.get_tensor_by_name(self.output_name)
            except (KeyError, ValueError) as exc:
                raise UserError(f"{path}: {exc}") from None
        _check_translator_tensor(self._input, "input tensor", "--input-tensor", path)
        _check_translator_tensor(self._output, "output tensor", "--output-tensor", path)
        config = tf.compat.v1.ConfigProto(
            intra_op_parallelism_threads=intra_threads, inter_op_parallelism_threads=inter_threads
        )
        if plugin_optimizers is None:
            plugin_optimizers = (meta.model or {}).get("plugin_optimizers") is not False
        if not plugin_optimizers:
            from tensorflow.core.protobuf import rewriter_config_pb2

            config.graph_options.rewrite_options.use_plugin_optimizers = rewriter_config_pb2.RewriterConfig.OFF
        self.plugin_optimizers = plugin_optimizers
        self.session = tf.compat.v1.Session(graph=graph, config=config)
        self.stats = TranslationStats()

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Translator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def encode(self, sentences: Sequence[str], source_name: str = "input") -> list[list[int]]:
        """Subword ids of every sentence; a UserError naming the line when one is over the model's limit."""
        return encode_checked(self.tokenizer, sentences, self.max_source_tokens, source_name)

    def run_batch(self, rows: Sequence[Sequence[int]]) -> np.ndarray:
        import tensorflow as tf

        batch = pad_batch(rows, self.model.meta.pad_id)
        try:
            return self.session.run(self._output, {self._input: batch})
        except tf.errors.OpError as exc:
            raise RuntimeFailure(
                f"{self.model.graph_path}: running the graph failed ({exc.__class__.__name__}: "
                f"{op_error_line(exc)})"
            ) from None

    def translate(
        self,
        sentences: Sequence[str],
        *,
        max_tokens: int = MAX_TOKENS,
        max_sentences: int = MAX_SENTENCES,
        source_name: str = "input",
        progress: bool | None = None,
    ) -> list[str]:
        """Translations of ``sentences`` in input order (computed in length-sorted token-budget batches)."""
        from tqdm import tqdm

        ids = self.encode(sentences, source_name)
        lengths = [len(r) for r in ids]
        order = sort_by_length(lengths)
        batches = make_batches(order, lengths, max_tokens=max_tokens, max_sentences=max_sentences)
        outputs: list[str] = []
        start = time.perf_counter()
        bar = tqdm(total=len(sentences), unit="sent", disable=None if progress is None else not progress,
                   leave=False, desc="translating")
        try:
            for batch in batches:
                out = self.run_batch([ids[i] for i in batch])
                for row in out:
                    text = self.tokenizer.decode(row)
                    outputs.append(text)
                    self.stats.output_tokens += int(np.count_nonzero(row))
                bar.update(len(batch))
        finally:
            bar.close()
        self.stats.sentences += len(sentences)
        self.stats.batches += len(batches)
        self.stats.source_tokens += sum(lengths)
        self.stats.seconds += time.perf_counter() - start
        return restore_order(outputs, [i for b in batches for i in b])
