"""Length-sorted batching: order round trip and token budget (property tests, no TensorFlow)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inc_transformer_mt.data.batching import make_batches, restore_order, sort_by_length

pytestmark = pytest.mark.unit

lengths_st = st.lists(st.integers(min_value=1, max_value=300), max_size=200)


@given(lengths_st)
def test_restore_order_inverts_sort(lengths):
    items = [f"s{i}:{n}" for i, n in enumerate(lengths)]
    order = sort_by_length(lengths)
    assert restore_order([items[i] for i in order], order) == items


@given(lengths_st)
def test_sort_is_by_decreasing_length_and_stable(lengths):
    order = sort_by_length(lengths)
    assert sorted(order) == list(range(len(lengths)))
    for a, b in zip(order, order[1:]):
        assert lengths[a] > lengths[b] or (lengths[a] == lengths[b] and a < b)


@given(lengths_st, st.integers(min_value=1, max_value=2000), st.integers(min_value=1, max_value=64))
def test_batches_partition_the_order_within_budget(lengths, max_tokens, max_sentences):
    order = sort_by_length(lengths)
    batches = make_batches(order, lengths, max_tokens=max_tokens, max_sentences=max_sentences)
    assert [i for b in batches for i in b] == order
    for batch in batches:
        assert 1 <= len(batch) <= max_sentences
        if len(batch) > 1:
            assert max(lengths[i] for i in batch) * len(batch) <= max_tokens


@given(lengths_st, st.integers(min_value=1, max_value=2000))
def test_batched_results_come_back_in_input_order(lengths, max_tokens):
    """What the translator does: run batches in sorted order, then restore."""
    order = sort_by_length(lengths)
    batches = make_batches(order, lengths, max_tokens=max_tokens, max_sentences=16)
    outputs = [f"out{i}" for b in batches for i in b]
    assert restore_order(outputs, [i for b in batches for i in b]) == [f"out{i}" for i in range(len(lengths))]


def test_restore_order_rejects_wrong_length():
    with pytest.raises(ValueError):
        restore_order(["a"], [0, 1])


def test_make_batches_rejects_nonpositive_budget():
    with pytest.raises(ValueError):
        make_batches([0], [3], max_tokens=0, max_sentences=1)
