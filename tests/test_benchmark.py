"""inc-mt benchmark on the tiny model: the JSON report's schema and bookkeeping (no speed is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _run(args, cwd):
    return subprocess.run([sys.executable, "-m", "inc_transformer_mt.cli.main", "benchmark", *args],
                          capture_output=True, text=True, cwd=cwd, check=False)


@pytest.mark.tf
def test_benchmark_json_markdown_and_plot(tmp_path, tiny_model_dir):
    from inc_transformer_mt.bench.benchmark import BenchmarkReport

    src = [f"a man in a red shirt number {i} is riding a bike" for i in range(12)]
    (tmp_path / "src.en").write_text("".join(s + "\n" for s in src))
    (tmp_path / "ref.de").write_text("".join("ein Mann fährt Fahrrad\n" for _ in src))
    proc = _run([f"a={tiny_model_dir}", f"b={tiny_model_dir}", "--source", "src.en", "--reference", "ref.de",
                 "--runtimes", "itex", "--streams", "1", "--batch-sentences", "4,16", "--reps", "2",
                 "--search-sentences", "6", "--latency-sentences", "3", "--out", "bench"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "bench" / "benchmark.json").read_text())
    report = BenchmarkReport.model_validate(data)  # the schema: unknown or missing keys fail here
    assert report.dataset["sentences"] == 12 and report.options["reps"] == 2
    assert [m.label for m in report.models] == ["a", "b"]
    for m in report.models:
        assert m.precision == "fp32" and m.int8_matmuls == 0 and m.matmuls > 0 and m.file_bytes > 0
        assert [p.setting.max_sentences for p in m.search] == [4, 16]
        assert all(p.sentences == 6 for p in m.search)
        (t,) = m.throughput
        assert m.best == t and t.reps == 2 and len(t.sentences_per_s_runs) == 2 and t.outputs_stable
        assert min(t.sentences_per_s_runs) <= t.sentences_per_s <= max(t.sentences_per_s_runs)
        assert t.peak_rss_mb > 0 and t.bleu is not None
        assert m.latency is not None and m.latency.sentences == 3 and m.latency.p50_ms <= m.latency.p90_ms
    # the same graph twice: the same outputs, so the same BLEU
    assert report.models[0].best.bleu == report.models[1].best.bleu
    assert report.headline is not None and report.headline.best_int8 is None and report.headline.speedup is None
    assert report.machine["cores_usable"] >= 1 and "tensorflow" in report.machine
    md = (tmp_path / "bench" / "benchmark.md").read_text()
    assert "## Throughput" in md and "## Batch-1 latency" in md and "![throughput and latency](benchmark.png)" in md
    assert (tmp_path / "bench" / "benchmark.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.unit
@pytest.mark.parametrize("args, message", [
    (["--runtimes", "cuda"], "--runtimes: expected some of itex, stock, stock-xla"),
    (["--streams", "0"], "--streams: expected positive integers"),
    (["--batch-sentences", "x"], "--batch-sentences: expected comma-separated integers"),
    (["no/such/model"], "model file not found"),
])
def test_benchmark_bad_input_is_one_error_line(tmp_path, args, message):
    proc = _run([*args, "--out", "bench"], tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and message in proc.stderr
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "bench").exists()
