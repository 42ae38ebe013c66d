"""Length-sorted batching, padding and order restoration (no TensorFlow).

Sentences are sorted by source subword length (longest first, so the biggest batch runs first and memory
problems show up at once), cut into batches whose padded size fits a token budget, and the outputs are put
back in input order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np

__all__ = ["make_batches", "pad_batch", "restore_order", "sort_by_length"]

T = TypeVar("T")


def sort_by_length(lengths: Sequence[int]) -> list[int]:
    """Indices ordered by decreasing length; ties keep input order (stable)."""
    return sorted(range(len(lengths)), key=lambda i: -lengths[i])


def restore_order(items_in_sorted_order: Sequence[T], order: Sequence[int]) -> list[T]:
    """Inverse of the permutation: ``restore_order([x[i] for i in order], order) == list(x)``."""
    if len(items_in_sorted_order) != len(order):
        raise ValueError(f"{len(items_in_sorted_order)} items for a permutation of {len(order)}")
    out: list[T | None] = [None] * len(order)
    for item, index in zip(items_in_sorted_order, order):
        out[index] = item
    return out  # type: ignore[return-value]


def make_batches(
    order: Sequence[int], lengths: Sequence[int], *, max_tokens: int, max_sentences: int
) -> list[list[int]]:
    """Consecutive runs of ``order`` whose padded size (rows x longest row) is within ``max_tokens``.

    A sentence longer than ``max_tokens`` gets a batch of its own.
    """
    if max_tokens < 1 or max_sentences < 1:
        raise ValueError("max_tokens and max_sentences must be positive")
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for index in order:
        candidate = max(longest, lengths[index])
        if current and (candidate * (len(current) + 1) > max_tokens or len(current) >= max_sentences):
            batches.append(current)
            current, candidate = [], lengths[index]
        current.append(index)
        longest = candidate
    if current:
        batches.append(current)
    return batches


def pad_batch(rows: Sequence[Sequence[int]], pad_id: int = 0) -> np.ndarray:
    """int32 [len(rows), longest row] matrix, right-padded with ``pad_id``."""
    out = np.full((len(rows), max(len(r) for r in rows)), pad_id, dtype=np.int32)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out
