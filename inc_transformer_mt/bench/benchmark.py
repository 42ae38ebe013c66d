"""``inc-mt benchmark``: FP32 and INT8 translation speed side by side, each with its own best settings.

Three phases, all in one run on one machine:

1. **Search.** For every model and runtime (stock TensorFlow, ITEX) and stream count, a pool of pinned
   worker processes (:mod:`~inc_transformer_mt.inference.streams`) translates a search subset once per batch
   setting (warm-up pass, then a timed pass). Graphs in ITEX's QDQ format are only run with ITEX: stock
   TensorFlow would execute their Quantize/Dequantize pairs in FP32, which is not an INT8 configuration.
2. **Throughput.** The fastest setting of each (model, runtime) pair is measured again on the whole set:
   all those pools are started together, warmed up with one full pass (whose outputs are scored with
   sacreBLEU), then run ``reps`` times, alternating between configurations and rotating their order every
   repetition. Sentences/s and target tokens/s are medians over the repetitions; every timed pass must give
   the same outputs as the warm-up. "Best FP32" is the fastest FP32 configuration of this phase; each INT8
   model's headline is its fastest configuration over best FP32.
3. **Batch-1 latency.** One single-stream pool per model (its best runtime, all cores) translates the
   first ``latency_sentences`` sentences one at a time, alternating between models sentence by sentence;
   p50/p90 over the sentences.

Peak memory is the summed VmHWM of a pool's worker processes (model, TensorFlow runtime, activations).
Speed is never asserted in tests: this module is exercised for its schema and its bookkeeping only.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from inc_transformer_mt import __version__
from inc_transformer_mt.defaults import (
    BENCH_BATCH_SENTENCES,
    BENCH_LATENCY_SENTENCES,
    BENCH_REPS,
    BENCH_SEARCH_SENTENCES,
    BENCH_STREAMS,
    MAX_TOKENS,
    RUNTIMES,
)
from inc_transformer_mt.env import ISA_FLAGS, available_cores, machine_info
from inc_transformer_mt.errors import RuntimeFailure, UserError
from inc_transformer_mt.inference.streams import RunStats, StreamPool, StreamSpec
from inc_transformer_mt.model.graph import ResolvedModel

__all__ = ["BenchmarkReport", "Grid", "ModelArg", "render_markdown", "render_plot", "run_benchmark"]

SCHEMA_VERSION = 1


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Setting(_M):
    runtime: Literal[RUNTIMES]  # type: ignore[valid-type]
    streams: int = Field(ge=1)
    threads_per_stream: int = Field(ge=1)
    max_sentences: int = Field(ge=1)
    max_tokens: int = Field(ge=1)

    def label(self) -> str:
        return (f"{self.runtime}, {self.streams} stream{'s' if self.streams > 1 else ''} x {self.threads_per_stream} "
                f"thread{'s' if self.threads_per_stream > 1 else ''}, batch <= {self.max_sentences} sent")


class SearchPoint(_M):
    setting: Setting
    sentences: int
    seconds: float
    sentences_per_s: float


class Throughput(_M):
    setting: Setting
    sentences: int
    reps: int
    seconds: list[float]
    sentences_per_s: float = Field(description="median over the timed repetitions")
    sentences_per_s_runs: list[float]
    target_tokens_per_s: float = Field(description="median; subword tokens of the outputs, EOS included")
    peak_rss_mb: float = Field(description="summed VmHWM of the pool's worker processes")
    bleu: float | None = Field(description="sacreBLEU of these outputs (None without references)")
    outputs_stable: bool = Field(description="every timed pass gave the warm-up pass's outputs")


class Latency(_M):
    runtime: Literal[RUNTIMES]  # type: ignore[valid-type]
    threads: int
    sentences: int
    p50_ms: float
    p90_ms: float
    mean_ms: float


class ModelResult(_M):
    label: str
    path: str
    precision: Literal["fp32", "int8"]
    graph_format: str
    int8_matmuls: int
    matmuls: int
    file_bytes: int
    search: list[SearchPoint]
    skipped: list[str] = Field(description="runtimes not measured, with the reason")
    throughput: list[Throughput] = Field(description="the best setting of each runtime, measured alternating")
    best: Throughput | None
    latency: Latency | None
    speedup_vs_best_fp32: float | None = Field(description="best sentences/s over best FP32 sentences/s")
    bleu_drop_vs_fp32: float | None = Field(description="best FP32 configuration's BLEU minus this model's")


class Headline(_M):
    best_fp32: str = Field(description="label of the best FP32 configuration")
    best_fp32_sentences_per_s: float
    best_int8: str | None
    best_int8_sentences_per_s: float | None
    speedup: float | None
    bleu_drop: float | None


class BenchmarkReport(_M):
    schema_version: Literal[1] = SCHEMA_VERSION
    tool_version: str
    created: str
    command: str
    machine: dict[str, str | int | float | bool]
    dataset: dict[str, str | int | None]
    options: dict[str, int | str | list[int] | list[str]]
    models: list[ModelResult]
    headline: Headline | None
    seconds: float


@dataclass(frozen=True)
class ModelArg:
    label: str
    model: ResolvedModel


@dataclass(frozen=True)
class Grid:
    runtimes: tuple[str, ...] = RUNTIMES
    streams: tuple[int, ...] = BENCH_STREAMS
    batch_sentences: tuple[int, ...] = BENCH_BATCH_SENTENCES
    max_tokens: int = MAX_TOKENS


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _setting(pool: StreamPool, max_sentences: int, max_tokens: int) -> Setting:
    return Setting(runtime=pool.spec.runtime, streams=len(pool.plan), threads_per_stream=pool.plan[0][1],
                   max_sentences=max_sentences, max_tokens=max_tokens)


def _log(msg: str, log: Callable[[str], None] | None) -> None:
    if log is not None:
        log(msg)


def _check_args(models: Sequence[ModelArg], grid: Grid, reps: int, search_sentences: int,
                latency_sentences: int) -> list[int]:
    """Refuse bad arguments before any worker starts; the stream counts that fit this machine."""
    if not models:
        raise UserError("benchmark: no model given")
    if reps < 1 or search_sentences < 1 or latency_sentences < 0:
        raise UserError("benchmark: --reps and --search-sentences must be at least 1, --latency-sentences 0 or more")
    if len({m.label for m in models}) != len(models):
        raise UserError("benchmark: two models have the same label (name them as LABEL=PATH)")
    cores = available_cores()
    streams_grid = [s for s in grid.streams if s <= len(cores)]
    if not streams_grid:
        raise UserError(f"benchmark: every stream count in {list(grid.streams)} exceeds the {len(cores)} usable cores")
    return streams_grid


@dataclass
class _Search:
    facts: dict[str, dict]  # label -> what the first worker reported (graph format, INT8 MatMuls, ...)
    points: dict[str, list[SearchPoint]]
    skipped: dict[str, list[str]]
    itex_build: str = "not loaded"

    def best_settings(self, models: Sequence[ModelArg], runtimes: Sequence[str]) -> list[tuple[ModelArg, Setting]]:
        """The fastest setting of every (model, runtime) pair that ran."""
        chosen = []
        for m in models:
            for runtime in runtimes:
                points = [p for p in self.points[m.label] if p.setting.runtime == runtime]
                if points:
                    chosen.append((m, max(points, key=lambda p: p.sentences_per_s).setting))
        return chosen


def _search_pool(m: ModelArg, pool: StreamPool, ids, grid: Grid, found: _Search, log) -> None:
    for bs in grid.batch_sentences:
        pool.run_ids(ids, max_sentences=bs)  # warm-up for this batch setting
        st = RunStats()
        pool.run_ids(ids, st, max_sentences=bs)
        point = SearchPoint(setting=_setting(pool, bs, grid.max_tokens), sentences=st.sentences,
                            seconds=round(st.seconds, 3), sentences_per_s=round(st.sentences / st.seconds, 3))
        found.points[m.label].append(point)
        _log(f"[search] {m.label}: {point.setting.label()}: {point.sentences_per_s:.2f} sent/s", log)


def _search(models: Sequence[ModelArg], search_src: list[str], grid: Grid, streams_grid: list[int], log) -> _Search:
    """Phase 1: every model x runtime x stream count x batch size on the search subset."""
    found = _Search(facts={}, points={m.label: [] for m in models}, skipped={m.label: [] for m in models})
    for m in models:
        for runtime in grid.runtimes:
            if runtime != "itex" and found.facts.get(m.label, {}).get("graph_format") == "qdq":
                _log(f"[search] {m.label}: QDQ graph, skipping stock TensorFlow (it would run the Q/DQ in FP32)", log)
                continue
            for streams in streams_grid:
                spec = StreamSpec(streams=streams, runtime=runtime, max_tokens=grid.max_tokens)
                try:
                    with StreamPool(m.model, spec) as pool:
                        worker = pool.workers[0]
                        found.facts.setdefault(m.label, worker)
                        found.itex_build = worker.get("itex_build") or found.itex_build
                        if runtime != "itex" and worker["graph_format"] == "qdq":
                            found.skipped[m.label].append(f"{runtime}: QDQ graph (stock TensorFlow would run its "
                                                          "Q/DQ in FP32)")
                            _log(f"[search] {m.label}: QDQ graph, skipping stock TensorFlow", log)
                            break
                        _search_pool(m, pool, pool.encode(search_src), grid, found, log)
                except (UserError, RuntimeFailure) as exc:  # e.g. a graph whose kernels exist only with ITEX
                    found.skipped[m.label].append(f"{runtime}: {exc}")
                    _log(f"[search] {m.label}: {runtime} skipped: {exc}", log)
                    break
        if m.label not in found.facts:
            raise UserError(f"benchmark: {m.model.graph_path} could not be run with any runtime "
                            f"({'; '.join(found.skipped[m.label])})")
    return found


def _throughput(chosen: list[tuple[ModelArg, Setting]], sources: Sequence[str], references: Sequence[str] | None,
                reps: int, log) -> dict[tuple[str, str], Throughput]:
    """Phase 2: each chosen setting on the whole set; a warm-up pass, then ``reps`` passes alternating."""
    from inc_transformer_mt.metrics.bleu import score

    results: dict[tuple[str, str], Throughput] = {}
    pools: list[StreamPool] = []
    try:
        for m, s in chosen:
            pools.append(StreamPool(m.model, StreamSpec(streams=s.streams, runtime=s.runtime,
                                                        max_sentences=s.max_sentences, max_tokens=s.max_tokens)))
        ids = pools[0].encode(sources) if pools else []
        warm: list[list[str]] = []
        for (m, s), pool in zip(chosen, pools, strict=True):
            warm.append([pool.tokenizer.decode(r) for r in pool.run_ids(ids)])
            _log(f"[throughput] {m.label} ({s.label()}): warm-up pass done", log)
        runs: list[list[RunStats]] = [[] for _ in chosen]
        stable = [True] * len(chosen)
        for rep in range(reps):
            order = list(range(len(chosen)))
            for i in order[rep % len(order):] + order[:rep % len(order)]:
                st = RunStats()
                rows = pools[i].run_ids(ids, st)
                stable[i] &= [pools[i].tokenizer.decode(r) for r in rows] == warm[i]
                runs[i].append(st)
                _log(f"[throughput] rep {rep + 1}/{reps} {chosen[i][0].label} ({chosen[i][1].label()}): "
                     f"{st.sentences / st.seconds:.2f} sent/s", log)
        for i, ((m, s), pool) in enumerate(zip(chosen, pools, strict=True)):
            sps = [r.sentences / r.seconds for r in runs[i]]
            tps = [r.output_tokens / r.seconds for r in runs[i]]
            results[(m.label, s.runtime)] = Throughput(
                setting=s, sentences=len(sources), reps=reps, seconds=[round(r.seconds, 3) for r in runs[i]],
                sentences_per_s=round(_median(sps), 3), sentences_per_s_runs=[round(v, 3) for v in sps],
                target_tokens_per_s=round(_median(tps), 1), peak_rss_mb=round(pool.peak_rss_bytes() / 2**20, 1),
                bleu=round(score(warm[i], references).score, 2) if references is not None else None,
                outputs_stable=stable[i])
    finally:
        for pool in pools:
            pool.close()
    return results


def _latency(models: Sequence[ModelArg], best: dict[str, Throughput | None], sources: Sequence[str],
             latency_sentences: int, log) -> dict[str, Latency]:
    """Phase 3: batch-1 latency, one single-stream pool per model, alternating sentence by sentence."""
    latency: dict[str, Latency] = {}
    if latency_sentences < 1:
        return latency
    lat_pools: list[tuple[ModelArg, StreamPool]] = []
    try:
        for m in models:
            b = best[m.label]
            if b is not None:
                lat_pools.append((m, StreamPool(m.model, StreamSpec(streams=1, runtime=b.setting.runtime))))
        lat_src = list(sources[:latency_sentences])
        times: dict[str, list[float]] = {m.label: [] for m, _ in lat_pools}
        for _, pool in lat_pools:  # warm-up
            for sent in lat_src[:5]:
                pool.translate([sent])
        for k, sent in enumerate(lat_src):
            for m, pool in lat_pools[k % len(lat_pools):] + lat_pools[:k % len(lat_pools)]:
                start = time.perf_counter()
                pool.translate([sent])
                times[m.label].append((time.perf_counter() - start) * 1000)
        for m, pool in lat_pools:
            v = times[m.label]
            latency[m.label] = Latency(runtime=pool.spec.runtime, threads=pool.plan[0][1], sentences=len(v),
                                       p50_ms=round(_percentile(v, 0.5), 2), p90_ms=round(_percentile(v, 0.9), 2),
                                       mean_ms=round(statistics.fmean(v), 2))
            _log(f"[latency] {m.label}: p50 {latency[m.label].p50_ms:.1f} ms, p90 {latency[m.label].p90_ms:.1f} ms", log)
    finally:
        for _, pool in lat_pools:
            pool.close()
    return latency


def _headline(model_results: list[ModelResult]) -> Headline | None:
    """Every model's ratio to the best FP32 configuration (set on the results), and the best INT8's headline."""
    fp32 = [(r, r.best) for r in model_results if r.precision == "fp32" and r.best is not None]
    if not fp32:
        return None
    ref_model, ref = max(fp32, key=lambda x: x[1].sentences_per_s)
    for r in model_results:
        if r.best is not None:
            r.speedup_vs_best_fp32 = round(r.best.sentences_per_s / ref.sentences_per_s, 3)
            if r.best.bleu is not None and ref.bleu is not None:
                r.bleu_drop_vs_fp32 = round(ref.bleu - r.best.bleu, 2)
    int8 = [r for r in model_results if r.precision == "int8" and r.best is not None]
    top = max(int8, key=lambda r: r.best.sentences_per_s) if int8 else None  # type: ignore[union-attr]
    return Headline(
        best_fp32=f"{ref_model.label} ({ref.setting.label()})", best_fp32_sentences_per_s=ref.sentences_per_s,
        best_int8=f"{top.label} ({top.best.setting.label()})" if top and top.best else None,
        best_int8_sentences_per_s=top.best.sentences_per_s if top and top.best else None,
        speedup=top.speedup_vs_best_fp32 if top else None, bleu_drop=top.bleu_drop_vs_fp32 if top else None)


def run_benchmark(models: Sequence[ModelArg], sources: Sequence[str], references: Sequence[str] | None, *,
                  dataset: dict[str, str | int | None], grid: Grid = Grid(), reps: int = BENCH_REPS,
                  search_sentences: int = BENCH_SEARCH_SENTENCES, latency_sentences: int = BENCH_LATENCY_SENTENCES,
                  command: str = "", log: Callable[[str], None] | None = print) -> BenchmarkReport:
    """Run the three phases (see the module docstring) and return the report."""
    t0 = time.perf_counter()
    streams_grid = _check_args(models, grid, reps, search_sentences, latency_sentences)
    found = _search(models, list(sources[:search_sentences]), grid, streams_grid, log)
    results = _throughput(found.best_settings(models, grid.runtimes), sources, references, reps, log)
    best: dict[str, Throughput | None] = {}
    for m in models:
        mine = [t for (label, _), t in results.items() if label == m.label]
        best[m.label] = max(mine, key=lambda t: t.sentences_per_s) if mine else None
    latency = _latency(models, best, sources, latency_sentences, log)
    model_results = []
    for m in models:
        f = found.facts[m.label]
        model_results.append(ModelResult(
            label=m.label, path=str(m.model.graph_path), precision="int8" if f["int8_matmuls"] else "fp32",
            graph_format=f["graph_format"], int8_matmuls=f["int8_matmuls"], matmuls=f["matmuls"],
            file_bytes=os.path.getsize(m.model.graph_path), search=found.points[m.label],
            skipped=found.skipped[m.label], throughput=[t for (label, _), t in results.items() if label == m.label],
            best=best[m.label], latency=latency.get(m.label), speedup_vs_best_fp32=None, bleu_drop_vs_fp32=None))
    headline = _headline(model_results)
    return BenchmarkReport(
        tool_version=__version__, created=datetime.now(UTC).isoformat(timespec="seconds"), command=command,
        machine={**machine_info(), "itex_cpu_build": found.itex_build}, dataset=dataset,
        options={"reps": reps, "search_sentences": min(search_sentences, len(sources)),
                 "latency_sentences": min(latency_sentences, len(sources)), "runtimes": list(grid.runtimes),
                 "streams": list(streams_grid), "batch_sentences": list(grid.batch_sentences),
                 "max_tokens": grid.max_tokens},
        models=model_results, headline=headline, seconds=round(time.perf_counter() - t0, 1))


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def render_markdown(report: BenchmarkReport, plot_name: str | None = None) -> str:
    """The benchmark as markdown: headline, throughput table, latency, the search, the machine."""
    mc = report.machine
    ds = report.dataset
    lines = ["# Benchmark", ""]
    cpu = f"{mc.get('cpu_vendor', '?')} {mc.get('cpu_model', '?')}"
    isa = [f for f in ISA_FLAGS if mc.get(f)]
    missing = [f for f in ("avx512f", "avx512_vnni", "amx_int8") if f in mc and not mc.get(f)]
    lines.append(f"Machine: {cpu}, {mc.get('cores_usable')} usable cores, {mc.get('memory_gib')} GiB; ISA: "
                 f"{', '.join(isa) or '?'}" + (f" (no {', '.join(missing)})" if missing else "")
                 + f". TensorFlow {mc.get('tensorflow')}, ITEX {mc.get('intel-extension-for-tensorflow')} "
                 f"(CPU build loaded: {mc.get('itex_cpu_build')}), INC {mc.get('neural-compressor')}.")
    lines.append(f"Data: {ds.get('name')} ({ds.get('sentences')} sentences), beam {ds.get('beam_size')}. "
                 f"Throughput: median of {report.options['reps']} timed passes per configuration, alternating, after "
                 f"a warm-up pass; each model's best setting per runtime from a search on the first "
                 f"{report.options['search_sentences']} sentences. Run took {report.seconds / 60:.1f} min.")
    lines.append("")
    h = report.headline
    if h is not None:
        if h.speedup is not None:
            lines.append(f"**INT8 over best FP32: {h.speedup:.2f}x** sentences/s ({h.best_int8}: "
                         f"{h.best_int8_sentences_per_s:.2f} sent/s vs {h.best_fp32}: {h.best_fp32_sentences_per_s:.2f} "
                         f"sent/s); BLEU drop {h.bleu_drop if h.bleu_drop is not None else 'n/a'}.")
        else:
            lines.append(f"Best FP32: {h.best_fp32}, {h.best_fp32_sentences_per_s:.2f} sent/s (no INT8 model given).")
        lines.append("")
    lines += ["## Throughput (best setting of each runtime)", "",
              ("| model | INT8 MatMuls | file | setting | sent/s (median) | runs | tokens/s | vs best FP32 | "
               "peak RSS | BLEU | stable |"),
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    best_fp32 = h.best_fp32_sentences_per_s if h else None
    for r in report.models:
        for t in r.throughput:
            ratio = f"{t.sentences_per_s / best_fp32:.2f}x" if best_fp32 else "-"
            mark = " **(best)**" if r.best is t else ""
            lines.append(f"| {r.label}{mark} | {r.int8_matmuls}/{r.matmuls} | {_mib(r.file_bytes)} | "
                         f"{t.setting.label()} | {t.sentences_per_s:.2f} | "
                         f"{', '.join(f'{v:.2f}' for v in t.sentences_per_s_runs)} | {t.target_tokens_per_s:.0f} | "
                         f"{ratio} | {t.peak_rss_mb:.0f} MiB | {t.bleu if t.bleu is not None else '-'} | "
                         f"{'yes' if t.outputs_stable else 'NO'} |")
    lat = [r for r in report.models if r.latency is not None]
    if lat:
        lines += ["", "## Batch-1 latency (one stream, all cores, best runtime; alternating sentence by sentence)", "",
                  "| model | runtime | sentences | p50 | p90 | mean |", "|---|---|---|---|---|---|"]
        for r in lat:
            la = r.latency
            assert la is not None
            lines.append(f"| {r.label} | {la.runtime} x {la.threads} threads | {la.sentences} | {la.p50_ms:.1f} ms | "
                         f"{la.p90_ms:.1f} ms | {la.mean_ms:.1f} ms |")
    if plot_name:
        lines += ["", f"![throughput and latency]({plot_name})"]
    lines += ["", "## Search (one timed pass each, after a warm-up pass)", "",
              "| model | setting | sent/s |", "|---|---|---|"]
    for r in report.models:
        for p in r.search:
            lines.append(f"| {r.label} | {p.setting.label()} | {p.sentences_per_s:.2f} |")
    skips = [(r.label, s) for r in report.models for s in r.skipped]
    if skips:
        lines += ["", "Not measured:"] + [f"- {label}, {s}" for label, s in skips]
    lines += ["", f"Command: `{report.command}`", ""]
    return "\n".join(lines)


def render_plot(report: BenchmarkReport) -> bytes:
    """PNG: throughput of every measured configuration (median, min-max bars) and batch-1 latency."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(f"{r.label}\n{t.setting.runtime}, {t.setting.streams}s, b{t.setting.max_sentences}", t,
             r.precision) for r in report.models for t in r.throughput]
    lat = [(r.label, r.latency) for r in report.models if r.latency is not None]
    fig, axes = plt.subplots(1, 2 if lat else 1, figsize=(11 if lat else 7, 0.6 * max(len(rows), 3) + 1.5),
                             squeeze=False)
    ax = axes[0][0]
    ys = range(len(rows))
    med = [t.sentences_per_s for _, t, _ in rows]
    lo = [t.sentences_per_s - min(t.sentences_per_s_runs) for _, t, _ in rows]
    hi = [max(t.sentences_per_s_runs) - t.sentences_per_s for _, t, _ in rows]
    colors = ["#1f77b4" if p == "fp32" else "#d62728" for _, _, p in rows]
    ax.barh(list(ys), med, xerr=[lo, hi], color=colors, capsize=3)
    ax.set_yticks(list(ys), [r[0] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("sentences / s (median; bars: min-max)")
    h = report.headline
    title = "throughput"
    if h is not None and h.speedup is not None:
        title += f" - INT8 / best FP32 = {h.speedup:.2f}x"
    ax.set_title(title, fontsize=10)
    if h is not None:
        ax.axvline(h.best_fp32_sentences_per_s, color="gray", linestyle="--", linewidth=1)
    if lat:
        ax2 = axes[0][1]
        names = [n for n, _ in lat]
        p50 = [la.p50_ms for _, la in lat]
        p90 = [la.p90_ms for _, la in lat]
        x = range(len(lat))
        ax2.bar([i - 0.2 for i in x], p50, width=0.4, label="p50")
        ax2.bar([i + 0.2 for i in x], p90, width=0.4, label="p90")
        ax2.set_xticks(list(x), names, fontsize=8)
        ax2.set_ylabel("batch-1 latency (ms)")
        ax2.set_title("batch-1 latency", fontsize=10)
        ax2.legend(fontsize=8)
    cpu = report.machine.get("cpu_model", "")
    fig.suptitle(f"{report.dataset.get('name')}, {report.dataset.get('sentences')} sentences, beam "
                 f"{report.dataset.get('beam_size')} - {cpu}, {report.machine.get('cores_usable')} cores", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
