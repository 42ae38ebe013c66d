"""The accuracy criterion: how far INT8 BLEU may fall below FP32 BLEU (absolute points or a fraction)."""

from __future__ import annotations

from dataclasses import dataclass

from inc_transformer_mt.defaults import MAX_DROP

__all__ = ["Criterion"]


@dataclass(frozen=True)
class Criterion:
    """``absolute``: the drop may be at most ``max_drop`` BLEU points; ``relative``: ``max_drop`` x FP32 BLEU.

    The one implementation of the rule, used by the tuner, the tune report and the regression check.
    """

    type: str = "absolute"  # or "relative"
    max_drop: float = MAX_DROP

    def allowed_drop(self, baseline: float) -> float:
        return self.max_drop if self.type == "absolute" else self.max_drop * baseline

    def passes(self, baseline: float, score: float) -> bool:
        return baseline - score <= self.allowed_drop(baseline) + 1e-9

    def describe(self, baseline: float) -> str:
        if self.type == "absolute":
            return f"BLEU drop <= {self.max_drop:g} points"
        return f"BLEU drop <= {self.max_drop:.2%} of FP32 ({self.allowed_drop(baseline):.2f} points)"
