"""The measured-sensitivity fallback as INC configurations: one ``StaticQuantConfig`` per fallback step, in
order, for ``TuningConfig(config_set=...)``. INC 3.10's own default config set gives only two distinct MatMul
graphs (all INT8 or all FP32); these give the accuracy-driven order of Bhandare et al.: keep the most
BLEU-sensitive units FP32, one more per trial."""

from __future__ import annotations

from collections.abc import Sequence

from inc_transformer_mt.quant.inc_hooks import quant_config
from inc_transformer_mt.quant.sensitivity import FallbackStep, Sensitivity, fallback_steps

__all__ = ["FallbackStep", "fallback_config_set", "fallback_steps"]


def fallback_config_set(ranking: Sequence[Sensitivity], candidates: Sequence[str], forced_fp32: Sequence[str] = (),
                        *, weight_granularity: str = "per_tensor", include_all_int8: bool = False,
                        max_configs: int | None = None) -> tuple[list, list[FallbackStep]]:
    """(INC configs, the step each one is): ``include_all_int8`` puts the all-INT8 config (only ``forced_fp32``
    FP32) first; ``max_configs`` caps the list."""
    steps = ([FallbackStep(units=[], fp32_ops=sorted(set(forced_fp32)))] if include_all_int8 else [])
    steps += fallback_steps(ranking, candidates, forced_fp32)
    if max_configs is not None:
        steps = steps[:max_configs]
    return [quant_config(s.fp32_ops, weight_granularity) for s in steps], steps
