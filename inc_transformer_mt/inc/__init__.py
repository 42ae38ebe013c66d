"""Plug-ins for INC's own API (``neural_compressor.tensorflow.quantize_model`` / ``autotune``), public and typed.

- :class:`BleuEval`: the sacreBLEU ``eval_fn`` (absolute or relative criterion, FP32 score cached, every
  trial recorded, optional time budget);
- :func:`kl_ranges`: the KL calibration as a verified hook (context manager taking the ranges);
- :func:`keep_backend`: the backend kept for every trial;
- :func:`fallback_config_set`: the measured-sensitivity fallback as INC configs;
- :class:`CalibrationLoader`: length-sorted calibration batches; :func:`inc_model`: INC's model wrapper with
  the tensor names set; :func:`quiet_inc`: INC's per-quantization log tables silenced;
- :func:`prepare_model` / :func:`finalize_model`: the default backend's exact rewrites around INC.

docs/inc.md shows them used from plain INC code.
"""

from inc_transformer_mt.inc.fallback import FallbackStep, fallback_config_set, fallback_steps
from inc_transformer_mt.inc.metric import BleuEval, EvalRecord, TuningStopped
from inc_transformer_mt.quant.inc_bridge import finalize_model, prepare_model
from inc_transformer_mt.quant.inc_hooks import (
    TESTED_INC_VERSIONS,
    CalibrationLoader,
    RangeHook,
    check_inc_version,
    inc_model,
    inc_tempdir,
    keep_backend,
    kl_ranges,
    quant_config,
    quiet_inc,
)

__all__ = [
    "TESTED_INC_VERSIONS",
    "BleuEval",
    "CalibrationLoader",
    "EvalRecord",
    "FallbackStep",
    "RangeHook",
    "TuningStopped",
    "check_inc_version",
    "fallback_config_set",
    "fallback_steps",
    "finalize_model",
    "inc_model",
    "inc_tempdir",
    "keep_backend",
    "kl_ranges",
    "prepare_model",
    "quant_config",
    "quiet_inc",
]
