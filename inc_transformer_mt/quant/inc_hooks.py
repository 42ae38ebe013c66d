"""The points where this package attaches to INC 3.10's TensorFlow quantizer, each one a context manager or a
small object usable from plain INC code (``quantize_model`` or ``autotune``).

- :func:`kl_ranges`: INC 3.10 has no KL search for MatMul and no calibrator registry. The one hook both
  backends share is the min/max INC parses from its calibration log in ``FreezeValueTransformer`` (and the
  requantization ranges, default backend), before they are frozen. Inside the context, the ranges given
  replace INC's; on exit it checks that INC did call the hook and that every expected op got its range, and
  raises :class:`~inc_transformer_mt.errors.RuntimeFailure` otherwise -- a KL recipe never silently ships
  min/max ranges.
- :func:`keep_backend`: INC resets its global config (backend ``default``) after every quantization, so in
  ``autotune`` trial 1 uses ITEX and trials 2+ silently do not; and ``Model(graph)`` picks ITEX whenever it is
  importable. Inside the context the backend (and BF16 off, and a private workspace) is put back after both.
- :func:`quant_config`: a ``StaticQuantConfig`` that keeps the named MatMuls FP32 (anchored op-name keys;
  INC matches keys with ``re.match``).
- :class:`CalibrationLoader`: the dataloader INC wants (``batch_size``, iteration of ``(inputs, label)``).

:func:`check_inc_version` refuses an INC other than the tested version: the hooks replace private methods
whose names and behaviour are not a public contract.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inc_transformer_mt.errors import RuntimeFailure

__all__ = ["TESTED_INC_VERSIONS", "CalibrationLoader", "RangeHook", "check_inc_version", "inc_model", "keep_backend",
           "kl_ranges", "quant_config", "quiet_inc"]

#: INC versions whose private calibration hooks and global-config reset this module was tested against
TESTED_INC_VERSIONS = ("3.10",)

Ranges = Mapping[str, tuple[float, float]]


def check_inc_version(version: str | None = None) -> str:
    """The installed INC version; RuntimeFailure if it is not one of :data:`TESTED_INC_VERSIONS`."""
    if version is None:
        try:
            from neural_compressor.version import __version__ as version
        except ImportError:
            raise RuntimeFailure("neural-compressor is not installed (pip install neural-compressor==3.10)") from None
    if version not in TESTED_INC_VERSIONS:
        raise RuntimeFailure(f"neural-compressor {version} is not supported: the calibration hooks were tested with "
                             f"{', '.join(TESTED_INC_VERSIONS)} only (pip install neural-compressor==3.10)")
    return version


@dataclass
class RangeHook:
    """What the calibration hook saw: INC's own values and the ones frozen instead (keys are INC's log keys,
    ``<op>_eightbit_{min,max}_<input>`` and ``<op>_eightbit_requant_range:{min,max}``)."""

    ranges: dict[str, tuple[float, float]]
    requant: dict[str, tuple[float, float]]
    replaced: dict[str, float] = field(default_factory=dict)
    minmax: dict[str, float] = field(default_factory=dict)
    calls: int = 0

    def ops_replaced(self) -> set[str]:
        """The ops whose min and max were both replaced."""
        ops: dict[str, set[str]] = {}
        for key in self.replaced:
            for marker, side in (("_eightbit_max_", "max"), ("_eightbit_min_", "min")):
                if marker in key:
                    ops.setdefault(key.split(marker, 1)[0], set()).add(side)
        return {op for op, sides in ops.items() if sides == {"min", "max"}}

    def ops_calibrated(self) -> set[str]:
        """The ops INC calibrated (had min/max parsed), whether or not a range was given for them."""
        return {key.split(m, 1)[0] for key in self.minmax for m in ("_eightbit_max_", "_eightbit_min_") if m in key}

    def verify(self, expect: Iterable[str] = ()) -> None:
        """RuntimeFailure unless the hook fired, every op INC calibrated that has a range got it, and every op
        in ``expect`` was among them."""
        if self.calls == 0:
            raise RuntimeFailure("INC never called the calibration hook (FreezeValueTransformer._parse_max_min_log): "
                                 "the KL ranges were not applied; is this INC 3.10?")
        missing = sorted((self.ops_calibrated() & set(self.ranges)) - self.ops_replaced())
        missing += sorted(set(expect) - self.ops_replaced() - set(missing))
        if missing:
            more = f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""
            raise RuntimeFailure(f"the calibration hook did not replace the range of {len(missing)} op(s): "
                                 f"{', '.join(missing[:3])}{more}; the model would ship INC's min/max ranges")


@contextlib.contextmanager
def kl_ranges(ranges: Ranges, requant: Ranges | None = None, *, expect: Iterable[str] = (),
              verify: bool = True) -> Iterator[RangeHook]:
    """Within the context, INC freezes ``ranges[op] = (min, max)`` for the activation input of each MatMul op
    (and ``requant[op]`` for its requantization range) instead of the min/max it calibrated.

    On a clean exit the hook is verified (:meth:`RangeHook.verify` with ``expect``) unless ``verify=False``.
    """
    check_inc_version()
    from neural_compressor.tensorflow.quantization.utils.graph_rewriter.int8 import freeze_value as fv
    from neural_compressor.tensorflow.utils import utility as inc_utility

    hook = RangeHook(ranges=dict(ranges), requant=dict(requant or {}))
    cls = fv.FreezeValueTransformer
    orig_minmax, orig_requant = cls._parse_max_min_log, cls._parse_requantization_ranges

    def parse_minmax(self):
        res = orig_minmax(self)
        hook.calls += 1
        is_max = self.postfix.startswith("__max")
        marker = "_eightbit_max_" if is_max else "_eightbit_min_"
        for key, value in res.items():
            hook.minmax[key] = float(value)
            op = key.split(marker, 1)[0]
            if op in hook.ranges:
                res[key] = float(hook.ranges[op][1 if is_max else 0])
                hook.replaced[key] = res[key]
        return res

    def parse_requant(self):
        res = orig_requant(self)
        for key, value in res.items():
            op = key.removesuffix("_eightbit_requant_range")
            hook.minmax[key + ":min"], hook.minmax[key + ":max"] = map(float, value[:2])
            if op in hook.requant:
                lo, hi = hook.requant[op]
                res[key] = [float(lo), float(hi)]
                hook.replaced[key + ":min"], hook.replaced[key + ":max"] = float(lo), float(hi)
        return res

    # INC reads the calibration Print output by redirecting the file descriptor of the ``sys.stderr`` it saw at
    # import time; under pytest or Jupyter that object is not fd 2 (where TensorFlow prints) and calibration
    # reads nothing. Point it at the process's real stderr.
    capture = inc_utility.CaptureOutputToFile.__init__
    orig_defaults = capture.__defaults__
    capture.__defaults__ = (sys.__stderr__,)
    cls._parse_max_min_log, cls._parse_requantization_ranges = parse_minmax, parse_requant
    try:
        yield hook
    finally:
        cls._parse_max_min_log, cls._parse_requantization_ranges = orig_minmax, orig_requant
        capture.__defaults__ = orig_defaults
    if verify:
        hook.verify(expect)


@contextlib.contextmanager
def keep_backend(backend: str) -> Iterator[str]:
    """Within the context every INC quantization uses ``backend`` (``itex`` or ``default``), BF16 off and a
    private temporary workspace (removed on exit; INC's default is ``./nc_workspace`` in the current
    directory). Yields the workspace path."""
    check_inc_version()
    from neural_compressor.tensorflow.utils import TFConfig
    from neural_compressor.tensorflow.utils import model as inc_model

    workspace = tempfile.TemporaryDirectory(prefix="inc_mt_workspace_")
    had_own = "reset_global_config" in vars(TFConfig)
    orig_reset = TFConfig.reset_global_config

    def apply() -> None:
        TFConfig.global_config["backend"] = backend
        TFConfig.global_config["use_bf16"] = False
        TFConfig.global_config["workspace_path"] = workspace.name

    def reset() -> None:
        orig_reset()
        apply()

    # ``Model(graph)`` also sets the backend (to itex whenever ITEX is importable): re-apply after it too
    orig_set = inc_model.Model.__dict__["set_tf_config"]

    def set_tf_config(conf, model):
        orig_set.__func__(conf, model)
        apply()

    apply()
    TFConfig.reset_global_config = reset
    inc_model.Model.set_tf_config = staticmethod(set_tf_config)
    try:
        yield workspace.name
    finally:
        inc_model.Model.set_tf_config = orig_set
        if had_own:
            TFConfig.reset_global_config = orig_reset
        else:
            del TFConfig.reset_global_config
        orig_reset()
        workspace.cleanup()


@contextlib.contextmanager
def inc_tempdir() -> Iterator[Path]:
    """A private temporary directory for INC's files, removed on the way out however the context ends.

    INC 3.10's graph converter dumps the calibration output of every quantization to ``tempfile.mkstemp(".log")``
    (0.3-1.8 MB here) and never removes it; with ``tempfile.tempdir`` pointed here for the duration, nothing of
    INC's outlives the command."""
    previous = tempfile.tempdir
    with tempfile.TemporaryDirectory(prefix="inc_mt_inc_") as private:
        tempfile.tempdir = private
        try:
            yield Path(private)
        finally:
            tempfile.tempdir = previous


@contextlib.contextmanager
def quiet_inc(quiet: bool = True) -> Iterator[None]:
    """INC's logger at ERROR within the context (its INFO tables are per quantization); restored after."""
    inc_logger = logging.getLogger("neural_compressor")
    old_level = inc_logger.level
    if quiet:
        inc_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        inc_logger.setLevel(old_level)


def inc_model(graph_def, input_names: Sequence[str], output_names: Sequence[str]):
    """INC's model wrapper of a frozen graph with its input and output ops named (``name:0`` or ``name``)."""
    from neural_compressor.tensorflow import Model

    from inc_transformer_mt.model.analysis import input_op

    model = Model(graph_def)
    model.input_tensor_names = [input_op(n) for n in input_names]
    model.output_tensor_names = [input_op(n) for n in output_names]
    return model


def quant_config(fp32_ops: Iterable[str] = (), weight_granularity: str = "per_tensor"):
    """INC ``StaticQuantConfig``: every quantizable op INT8 except ``fp32_ops`` (anchored op-name keys)."""
    from neural_compressor.tensorflow import StaticQuantConfig

    config = StaticQuantConfig(weight_granularity=weight_granularity)
    for op in sorted(set(fp32_ops)):
        config.set_local(f"^{re.escape(op)}$", StaticQuantConfig(act_dtype="fp32", weight_dtype="fp32"))
    return config


class CalibrationLoader:
    """INC calibration dataloader over fixed int32 batches (``(batch, None)`` pairs; ``batch_size`` of the first).

    :meth:`length_sorted` builds the batches the way the paper does: sentences sorted by token length, so a
    batch carries little padding.
    """

    def __init__(self, batches: Sequence[np.ndarray]):
        self.batches = list(batches)
        self.batch_size = int(self.batches[0].shape[0]) if self.batches else 1

    @classmethod
    def length_sorted(cls, ids: Sequence[Sequence[int]], batch_size: int, pad_id: int = 0) -> CalibrationLoader:
        from inc_transformer_mt.data.batching import pad_batch

        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        return cls([pad_batch([ids[i] for i in order[k:k + batch_size]], pad_id)
                    for k in range(0, len(order), batch_size)])

    def __iter__(self):
        for b in self.batches:
            yield b, None

    def __len__(self) -> int:
        return len(self.batches)
