"""Token identity of two graphs of one model: the check every exact graph pass must pass.

Both graphs translate the same sentences in the same length-sorted batches; their output token ids are
compared row by row (not the detokenized text, which can hide a changed subword split).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from inc_transformer_mt.data.batching import make_batches, sort_by_length
from inc_transformer_mt.defaults import MAX_TOKENS, RUNTIME_MAX_SENTENCES

__all__ = ["IdentityResult", "compare_translations"]


@dataclass
class IdentityResult:
    """Whether two graphs produced the same token ids; ``differing_lines`` are 1-based (the first 20)."""

    sentences: int
    differing: int = 0
    differing_lines: list[int] = field(default_factory=list)
    texts_b: list[str] = field(default_factory=list, repr=False)  # the second graph's translations, input order

    @property
    def identical(self) -> bool:
        return self.differing == 0

    def to_dict(self) -> dict:
        return {"sentences": self.sentences, "identical": self.identical, "differing": self.differing,
                "differing_lines": self.differing_lines}


def _strip(row: np.ndarray) -> tuple[int, ...]:
    """Token ids up to the first padding zero (graphs may pad their outputs to different lengths)."""
    ids = row.tolist()
    return tuple(ids[: ids.index(0)] if 0 in ids else ids)


def compare_translations(model, graph_a, graph_b, sentences: Sequence[str], *,
                         max_sentences: int = RUNTIME_MAX_SENTENCES, max_tokens: int = MAX_TOKENS,
                         threads: int = 0) -> IdentityResult:
    """Translate ``sentences`` with both graphs of ``model`` (a ResolvedModel) and compare the token ids."""
    from inc_transformer_mt.inference.translate import Translator

    result = IdentityResult(sentences=len(sentences))
    differ: list[int] = []
    texts: dict[int, str] = {}
    with Translator(model, graph_def=graph_a, intra_threads=threads) as a, \
            Translator(model, graph_def=graph_b, intra_threads=threads) as b:
        ids = a.encode(sentences)
        lengths = [len(r) for r in ids]
        for batch in make_batches(sort_by_length(lengths), lengths, max_tokens=max_tokens,
                                  max_sentences=max_sentences):
            rows = [ids[i] for i in batch]
            out_a, out_b = a.run_batch(rows), b.run_batch(rows)
            for i, ra, rb in zip(batch, out_a, out_b, strict=True):
                if _strip(ra) != _strip(rb):
                    differ.append(i + 1)
                texts[i] = b.tokenizer.decode(rb)
    result.differing, result.differing_lines = len(differ), sorted(differ)[:20]
    result.texts_b = [texts[i] for i in range(len(sentences))]
    return result
