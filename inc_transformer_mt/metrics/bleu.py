"""Corpus BLEU through sacrebleu, with its reproducibility signature (detokenized, cased, 13a by default)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["BleuResult", "score"]


@dataclass(frozen=True)
class BleuResult:
    """A corpus BLEU score with everything needed to compare it with another one."""

    score: float
    signature: str
    precisions: tuple[float, ...]
    brevity_penalty: float
    sys_len: int
    ref_len: int
    sentences: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return f"BLEU {self.score:.2f} ({self.signature})"


def score(
    hypotheses: Sequence[str], references: Sequence[str], *, tokenize: str = "13a", lowercase: bool = False
) -> BleuResult:
    """sacreBLEU corpus score of detokenized hypotheses against one reference stream.

    Raises:
        ValueError: the two sequences differ in length.
    """
    from sacrebleu.metrics import BLEU

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    metric = BLEU(tokenize=tokenize, lowercase=lowercase)
    result = metric.corpus_score(list(hypotheses), [list(references)])
    return BleuResult(
        score=float(result.score),
        signature=str(metric.get_signature()),
        precisions=tuple(float(p) for p in result.precisions),
        brevity_penalty=float(result.bp),
        sys_len=int(result.sys_len),
        ref_len=int(result.ref_len),
        sentences=len(hypotheses),
    )
