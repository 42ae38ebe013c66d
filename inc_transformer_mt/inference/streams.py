"""Parallel translation streams: length-sorted, token-budget batches spread over N pinned worker processes.

Bhandare et al. (2019) got their throughput from sorting sentences by length, packing them into batches
and running several batches at once, each instance on its own cores. Here each stream is a spawned
process that pins itself to its own cores (``sched_setaffinity``), sets its own TensorFlow thread pools,
imports TensorFlow with the requested runtime (ITEX or stock) and loads the graph once. The parent process
tokenizes, sorts by source subword length, cuts token-budget batches (longest first) and hands them out
from one queue, so a stream that finishes early takes the next batch (longest-processing-time-first
scheduling). Outputs are decoded and put back in input order.

The parent never imports TensorFlow: a pool can run a runtime other than the caller's.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing as mp
import os
import queue
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inc_transformer_mt.data.batching import make_batches, restore_order, sort_by_length
from inc_transformer_mt.data.tokenizer import load_tokenizer
from inc_transformer_mt.defaults import MAX_SENTENCES, MAX_TOKENS
from inc_transformer_mt.env import available_cores
from inc_transformer_mt.errors import RuntimeFailure, UserError
from inc_transformer_mt.inference.translate import TranslationStats, encode_checked
from inc_transformer_mt.model.graph import ResolvedModel

__all__ = ["RunStats", "StreamPool", "StreamSpec", "available_cores", "plan_cores"]


@dataclass(frozen=True)
class StreamSpec:
    """How to run a model: ``streams`` worker processes with ``threads`` intra-op threads each.

    ``threads=0`` gives each stream all of its cores (cores // streams). ``cores`` defaults to the cores this
    process may run on.
    """

    streams: int = 1
    threads: int = 0
    runtime: str = "itex"
    max_tokens: int = MAX_TOKENS
    max_sentences: int = MAX_SENTENCES
    cores: tuple[int, ...] | None = None


@dataclass
class RunStats(TranslationStats):
    """TranslationStats of a pool (``seconds``: first batch handed out to last output received)."""

    per_stream_batches: list[int] = field(default_factory=list)


def plan_cores(cores: Sequence[int], streams: int, threads: int = 0) -> list[tuple[list[int], int]]:
    """Contiguous core groups, one per stream, and each stream's thread count.

    Raises:
        UserError: fewer cores than streams, or a non-positive stream count.
    """
    if streams < 1:
        raise UserError(f"streams must be at least 1 (got {streams})")
    if threads < 0:
        raise UserError(f"threads per stream must be 0 (all of the stream's cores) or more (got {threads})")
    cores = list(cores)
    if streams > len(cores):
        raise UserError(f"{streams} streams need at least {streams} cores; this process may use {len(cores)} "
                        f"({', '.join(map(str, cores))})")
    size, extra = divmod(len(cores), streams)
    plan, start = [], 0
    for i in range(streams):
        n = size + (1 if i < extra else 0)
        group = cores[start:start + n]
        plan.append((group, threads or len(group)))
        start += n
    return plan


def _die_with_parent(parent: int) -> None:
    """Make this worker end when the parent does, however the parent ends (SIGKILL included): Linux's
    PR_SET_PDEATHSIG; and Ctrl-C is the parent's to handle (it stops the workers), so no worker tracebacks."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):  # not Linux: the parent's close() and the daemon flag remain
        return
    if os.getppid() != parent:  # the parent died before the call above
        os._exit(1)


def _worker(index: int, graph_path: str, meta: dict[str, Any], tokenizer_path: str, runtime: str,
            cpus: list[int], threads: int, tasks, results, parent: int) -> None:
    """One stream: pin, import TensorFlow with ``runtime``, load the graph, then run batches until None."""
    _die_with_parent(parent)
    try:
        if cpus and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, cpus)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("ITEX_CPP_MIN_LOG_LEVEL", "2")
        from inc_transformer_mt.runtime import import_tensorflow, itex_cpu_build, itex_loaded

        import_tensorflow(runtime)  # type: ignore[arg-type]  # first TensorFlow import of this process
        from inc_transformer_mt.inference.translate import Translator
        from inc_transformer_mt.model.analysis import graph_format, int8_matmul_count
        from inc_transformer_mt.model.config import GraphMeta

        model = ResolvedModel(Path(graph_path), GraphMeta(**meta), Path(tokenizer_path))
        translator = Translator(model, intra_threads=threads, inter_threads=threads)
        int8, matmuls = int8_matmul_count(translator.graph_def)
        results.put(("ready", index, {"pid": os.getpid(), "itex": itex_loaded(), "itex_build": itex_cpu_build(),
                                      "cores": cpus, "threads": threads,
                                      "graph_format": graph_format(translator.graph_def),
                                      "int8_matmuls": int8, "matmuls": matmuls}))
    except UserError as exc:
        results.put(("error", index, ("input", str(exc))))
        return
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one line
        results.put(("error", index, ("runtime", f"stream {index} failed to start: {type(exc).__name__}: {exc}")))
        return
    while True:
        task = tasks.get()
        if task is None:
            return
        job, rows = task
        try:
            results.put(("out", index, (job, translator.run_batch(rows))))
        except UserError as exc:
            results.put(("error", index, ("input", str(exc))))
        except RuntimeFailure as exc:
            results.put(("error", index, ("runtime", str(exc))))


def _raise_worker_error(payload: tuple[str, str]) -> None:
    """A worker's error, re-raised in the parent as bad input or as a runtime failure."""
    kind, message = payload
    raise (UserError if kind == "input" else RuntimeFailure)(message)


def _peak_rss(pid: int) -> int:
    """VmHWM of a process in bytes (0 where /proc is not there)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class StreamPool:
    """N translation streams of one model. Use as a context manager; :meth:`close` stops the workers."""

    def __init__(self, model: ResolvedModel, spec: StreamSpec = StreamSpec(), *, start_timeout: float = 600.0):
        if model.tokenizer_path is None:
            raise UserError(f"{model.graph_path}: no tokenizer given (use --tokenizer or a model.json)")
        if spec.max_tokens < 1 or spec.max_sentences < 1:
            raise UserError("max_tokens and max_sentences must be positive")
        self.model, self.spec = model, spec
        self.tokenizer = load_tokenizer(model.tokenizer_path, eos_id=model.meta.eos_id, pad_id=model.meta.pad_id)
        self.plan = plan_cores(spec.cores if spec.cores is not None else available_cores(), spec.streams,
                               spec.threads)
        ctx = mp.get_context("spawn")
        self._tasks = ctx.Queue()
        self._results = ctx.Queue()
        self._procs = []
        self.workers: list[dict[str, Any]] = [{} for _ in self.plan]
        self._job = 0
        meta = self.model.meta.to_dict()
        for i, (cpus, threads) in enumerate(self.plan):
            p = ctx.Process(target=_worker, daemon=True,
                            args=(i, str(model.graph_path), meta, str(model.tokenizer_path), spec.runtime, cpus,
                                  threads, self._tasks, self._results, os.getpid()))
            p.start()
            self._procs.append(p)
        try:
            ready = 0
            while ready < len(self._procs):
                kind, index, payload = self._get(start_timeout)
                if kind == "error":
                    _raise_worker_error(payload)
                if kind == "ready":
                    self.workers[index] = payload
                    ready += 1
        except BaseException:
            self.close(now=True)
            raise
        if spec.runtime == "itex" and not all(w["itex"] for w in self.workers):
            self.close()
            raise RuntimeFailure("runtime 'itex' asked for, but the ITEX plugin did not load (is "
                                 "intel-extension-for-tensorflow installed?)")

    def _get(self, timeout: float):
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self._results.get(timeout=1.0)
            except queue.Empty:
                dead = [i for i, p in enumerate(self._procs) if not p.is_alive()]
                if dead:
                    raise RuntimeFailure(f"translation stream {dead[0]} exited unexpectedly (exit code "
                                         f"{self._procs[dead[0]].exitcode}); out of memory?") from None
                if time.monotonic() > deadline:
                    raise RuntimeFailure(f"translation streams gave no answer in {timeout:.0f} s") from None

    def close(self, *, now: bool = False) -> None:
        """Stop the workers: after the queued work (``now=False``, the normal end), or at once (an error,
        Ctrl-C, SIGTERM: the queued batches are abandoned)."""
        for queue_ in (self._tasks, self._results):
            queue_.cancel_join_thread()  # never block the interpreter's exit on flushing abandoned batches
        if not now:
            for _ in self._procs:
                try:
                    self._tasks.put(None)
                except (OSError, ValueError):
                    pass
        for p in self._procs:
            if not now:
                p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join()
        self._procs = []

    def __enter__(self) -> StreamPool:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(now=exc_type is not None)

    def peak_rss_bytes(self) -> int:
        """Sum of the streams' peak resident memory (VmHWM) so far."""
        return sum(_peak_rss(p.pid) for p in self._procs if p.pid is not None)

    def encode(self, sentences: Sequence[str], source_name: str = "input") -> list[list[int]]:
        return encode_checked(self.tokenizer, sentences, self.model.meta.max_source_tokens, source_name)

    def run_ids(self, ids: Sequence[Sequence[int]], stats: RunStats | None = None, *, max_tokens: int | None = None,
                max_sentences: int | None = None) -> list[np.ndarray]:
        """Output id rows for every input row, in input order (sorted, batched and run in parallel).

        ``max_tokens`` / ``max_sentences`` override the pool's batch settings for this call.
        """
        lengths = [len(r) for r in ids]
        order = sort_by_length(lengths)
        batches = make_batches(order, lengths, max_tokens=max_tokens or self.spec.max_tokens,
                               max_sentences=max_sentences or self.spec.max_sentences)
        base = self._job
        self._job += len(batches)
        start = time.perf_counter()
        for b, batch in enumerate(batches):
            self._tasks.put((base + b, [list(ids[i]) for i in batch]))
        outputs: dict[int, np.ndarray] = {}
        per_stream = [0] * len(self._procs)
        while len(outputs) < len(batches):
            kind, index, payload = self._get(3600.0)
            if kind == "error":
                _raise_worker_error(payload)
            job, out = payload
            outputs[job - base] = out
            per_stream[index] += 1
        seconds = time.perf_counter() - start
        rows = [row for b in range(len(batches)) for row in outputs[b]]
        result = restore_order(rows, [i for batch in batches for i in batch])
        if stats is not None:
            stats.sentences += len(ids)
            stats.batches += len(batches)
            stats.source_tokens += sum(lengths)
            stats.output_tokens += int(sum(np.count_nonzero(r) for r in result))
            stats.seconds += seconds
            stats.per_stream_batches = [a + b for a, b in
                                        zip(stats.per_stream_batches or [0] * len(per_stream), per_stream)]
        return result

    def translate(self, sentences: Sequence[str], *, source_name: str = "input", stats: RunStats | None = None,
                  max_tokens: int | None = None, max_sentences: int | None = None) -> list[str]:
        """Translations in input order."""
        rows = self.run_ids(self.encode(sentences, source_name), stats, max_tokens=max_tokens,
                            max_sentences=max_sentences)
        return [self.tokenizer.decode(r) for r in rows]
