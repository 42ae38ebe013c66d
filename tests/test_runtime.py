"""The runtime switch: stock TensorFlow really runs without ITEX; the default has it."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import sys
from inc_transformer_mt.runtime import import_tensorflow, itex_loaded
tf = import_tensorflow(sys.argv[1])
print("itex_loaded=" + str(itex_loaded()))
if sys.argv[1] == "stock-xla":  # an XLA cluster really compiles and runs
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 8])
        y = tf.nn.relu(tf.matmul(x, tf.ones([8, 8])) + 1.0) * 2.0
    meta = tf.compat.v1.RunMetadata()
    with tf.compat.v1.Session(graph=g) as s:
        s.run(y, {x: [[1.0] * 8]}, options=tf.compat.v1.RunOptions(trace_level=3), run_metadata=meta)
    ops = {n.timeline_label.split(" = ")[-1].split("(")[0] for d in meta.step_stats.dev_stats for n in d.node_stats}
    print("xla_ran=" + str(any("Xla" in o or "_XlaRun" in o for o in ops)))
"""


@pytest.mark.tf
@pytest.mark.parametrize("runtime, expected", [("stock", False), ("itex", True), ("stock-xla", False)])
def test_runtime_controls_the_itex_plugin(runtime, expected):
    proc = subprocess.run([sys.executable, "-c", PROBE, runtime], capture_output=True, text=True, check=False,
                          env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"itex_loaded={expected}" in proc.stdout
    if runtime == "stock-xla":
        assert "xla_ran=True" in proc.stdout, proc.stdout


@pytest.mark.unit
def test_unknown_runtime_is_rejected():
    from inc_transformer_mt.runtime import import_tensorflow

    with pytest.raises(ValueError, match="unknown runtime"):
        import_tensorflow("cuda")  # type: ignore[arg-type]
