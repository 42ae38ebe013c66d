"""Parallel pinned streams: outputs in input order, same as one in-process session; core plans."""

from __future__ import annotations

import random

import pytest

from inc_transformer_mt.errors import UserError
from inc_transformer_mt.inference.streams import available_cores, plan_cores


@pytest.mark.unit
def test_plan_cores_splits_contiguously_and_defaults_threads():
    assert plan_cores([0, 1, 2, 3], 2) == [([0, 1], 2), ([2, 3], 2)]
    assert plan_cores([0, 1, 2], 2) == [([0, 1], 2), ([2], 1)]
    assert plan_cores([4, 5], 1, threads=1) == [([4, 5], 1)]
    with pytest.raises(UserError, match="3 streams need at least 3 cores"):
        plan_cores([0, 1], 3)
    with pytest.raises(UserError, match="at least 1"):
        plan_cores([0, 1], 0)


def _random_sentences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    words = ["a", "man", "in", "a", "red", "shirt", "is", "riding", "a", "bike", "down", "the", "street", "two", "dogs",
             "play", "on", "the", "grass"]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(1, 25))) for _ in range(n)]


@pytest.mark.tf
def test_two_streams_return_outputs_in_input_order(tiny_model_dir):
    """Random lengths, small batches, two streams: every row is the one the in-process session gives."""
    from inc_transformer_mt.inference.streams import RunStats, StreamPool, StreamSpec
    from inc_transformer_mt.inference.translate import Translator
    from inc_transformer_mt.model.graph import resolve_model

    model = resolve_model(tiny_model_dir)
    sentences = _random_sentences(37, seed=3)
    with Translator(model) as tr:
        expected = tr.translate(sentences, max_sentences=3, progress=False)  # same batches, one session
    assert len(set(expected)) > 10  # distinct outputs, so a mix-up of rows cannot go unseen
    stats = RunStats()
    one_core = tuple(available_cores()[:1])
    # both streams on the first core, so the test means the same on a 1-core machine
    with StreamPool(model, StreamSpec(streams=2, max_sentences=3, cores=one_core * 2)) as pool:
        assert [w["threads"] for w in pool.workers] == [1, 1]
        assert [w["cores"] for w in pool.workers] == [list(one_core), list(one_core)]
        assert pool.workers[0]["matmuls"] > 0 and pool.workers[0]["int8_matmuls"] == 0
        texts = pool.translate(sentences, stats=stats)
        assert pool.peak_rss_bytes() > 0
    assert texts == expected
    assert stats.sentences == 37 and stats.batches >= 13 and sum(stats.per_stream_batches) == stats.batches
    assert stats.output_tokens > 0


@pytest.mark.tf
def test_stream_start_failure_is_one_user_error(tmp_path, tiny_model_dir):
    from inc_transformer_mt.inference.streams import StreamPool, StreamSpec
    from inc_transformer_mt.model.graph import resolve_model

    bad = tmp_path / "model"
    bad.mkdir()
    for f in tiny_model_dir.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    graph = resolve_model(bad).graph_path
    graph.write_bytes(b"not a graph")
    with pytest.raises(UserError, match="not a frozen TensorFlow GraphDef"):
        StreamPool(resolve_model(bad), StreamSpec(streams=1))


def _start_translate_with_streams(tiny_model_dir, tmp_path):
    """`inc-mt translate --streams 2` on a long input, returned once both worker processes exist."""
    import subprocess
    import sys
    import time

    import psutil

    (tmp_path / "in.en").write_text("".join(s + "\n" for s in _random_sentences(4000, seed=5)))
    from conftest import CLI_WITH_CTRL_C

    proc = subprocess.Popen([sys.executable, *CLI_WITH_CTRL_C, "translate", str(tmp_path / "in.en"),
                             "--model", str(tiny_model_dir), "--streams", "2", "--max-sentences", "1",
                             "-o", str(tmp_path / "out.de")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    def is_worker(child) -> bool:
        try:
            return "spawn_main" in " ".join(child.cmdline())
        except psutil.Error:  # a short-lived helper (e.g. a CPU probe) that ended between listing and reading
            return False

    deadline = time.monotonic() + 120
    workers: list = []
    while time.monotonic() < deadline and proc.poll() is None:
        workers = [c for c in psutil.Process(proc.pid).children(recursive=True) if is_worker(c)]
        if len(workers) == 2:
            time.sleep(3)  # let them load the graph and start translating
            return proc, workers
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"no two workers appeared: {proc.communicate()[1][-2000:]}")


@pytest.mark.tf
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGKILL", "SIGINT"])
def test_workers_end_with_their_parent(tiny_model_dir, tmp_path, sig):
    """A CI timeout (SIGTERM), a kill -9 of the command, or Ctrl-C (SIGINT to the whole process group, as a
    terminal sends it) leaves no worker process behind and no half-written output; SIGTERM and Ctrl-C end in
    one line (no worker tracebacks) and exit 143 / 130."""
    import os
    import signal

    import psutil

    proc, workers = _start_translate_with_streams(tiny_model_dir, tmp_path)
    if sig == "SIGINT":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=60)
    _, alive = psutil.wait_procs(workers, timeout=20)
    assert not alive, f"orphaned workers: {[p.pid for p in alive]}"
    assert not (tmp_path / "out.de").exists() and not list(tmp_path.glob(".out.de.*"))
    if sig == "SIGTERM":
        assert proc.returncode == 143 and err.strip().splitlines() == ["error: terminated (SIGTERM)"], err
    if sig == "SIGINT":
        assert proc.returncode == 130 and err.strip().splitlines() == ["error: interrupted"], err
