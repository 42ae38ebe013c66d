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
