"""The runtime switch: stock TensorFlow really runs without ITEX; the default has it."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import sys
from inc_transformer_mt.runtime import import_tensorflow, itex_loaded
import_tensorflow(sys.argv[1])
print("itex_loaded=" + str(itex_loaded()))
"""


@pytest.mark.tf
@pytest.mark.parametrize("runtime, expected", [("stock", False), ("itex", True)])
def test_runtime_controls_the_itex_plugin(runtime, expected):
    proc = subprocess.run([sys.executable, "-c", PROBE, runtime], capture_output=True, text=True, check=False,
                          env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"itex_loaded={expected}" in proc.stdout


@pytest.mark.unit
def test_unknown_runtime_is_rejected():
    from inc_transformer_mt.runtime import import_tensorflow

    with pytest.raises(ValueError, match="unknown runtime"):
        import_tensorflow("cuda")  # type: ignore[arg-type]
