"""Choosing the TensorFlow runtime of a process: with Intel Extension for TensorFlow (ITEX) or stock.

ITEX is a PluggableDevice: TensorFlow loads it at import time from ``site-packages/tensorflow-plugins``
whenever it is installed, and there is no switch to turn it off afterwards. To run stock TensorFlow in a
process where ITEX is installed, :func:`import_tensorflow` hides that directory from TensorFlow's plugin
loader for the duration of the import. It must be the first TensorFlow import of the process, so a
different runtime means a different process (the benchmark and the parallel streams use spawned workers).
"""

from __future__ import annotations

import os
import sys
from typing import Literal

from inc_transformer_mt.defaults import RUNTIMES, XLA_FLAGS

__all__ = ["RUNTIMES", "Runtime", "import_tensorflow", "itex_cpu_build", "itex_loaded"]

Runtime = Literal[RUNTIMES]  # type: ignore[valid-type]


def import_tensorflow(runtime: Runtime = "itex"):
    """Import TensorFlow with (``itex``) or without (``stock``) the ITEX plugin; returns the module.

    ``stock-xla`` is stock TensorFlow with XLA auto-clustering on (``TF_XLA_FLAGS``, set for this process
    before the import), the stock switch most likely to speed an FP32 graph up.

    Raises:
        RuntimeError: TensorFlow is already imported with the other runtime.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r} (choose from {', '.join(RUNTIMES)})")
    if "tensorflow" in sys.modules:
        import tensorflow as tf

        if runtime != "itex" and itex_loaded():
            raise RuntimeError(f"TensorFlow is already imported with ITEX in this process; {runtime} needs a new one")
        if runtime == "stock-xla" and os.environ.get("TF_XLA_FLAGS") != XLA_FLAGS:
            raise RuntimeError("TensorFlow is already imported without XLA auto-clustering; stock-xla needs a new "
                               "process")
        return tf
    if runtime == "stock-xla":
        os.environ["TF_XLA_FLAGS"] = XLA_FLAGS
    if runtime in ("stock", "stock-xla"):
        exists = os.path.exists
        os.path.exists = lambda p: False if str(p).rstrip("/").endswith("tensorflow-plugins") else exists(p)
        try:
            import tensorflow as tf
        finally:
            os.path.exists = exists
        return tf
    import tensorflow as tf

    return tf


def itex_loaded() -> bool:
    """Whether the ITEX plugin is active in this process (its ops are in TensorFlow's op registry).

    ITEX's CPU build registers no device of its own (``list_physical_devices`` shows only the CPU), so the
    registry is the reliable sign.
    """
    from tensorflow.python.framework import op_def_registry

    return op_def_registry.get("_ITEXFusedMatMul") is not None


def itex_cpu_build() -> str | None:
    """Which of ITEX's CPU builds this process loaded ('avx512', 'avx2', ...), from its memory map; None if none.

    ITEX picks the build by the CPU's features at import; on a CPU without AVX-512 it runs its AVX2 build.
    """
    import re

    try:
        with open("/proc/self/maps") as fh:
            maps = fh.read()
    except OSError:
        return None
    found = re.search(r"libitex_cpu_internal_(\w+)\.so", maps)
    return found.group(1) if found else None
