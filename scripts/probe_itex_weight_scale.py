"""Probe (docs/fully-8bit.md, "Memory"): the scale ITEX 2.15's fused INT8 MatMul gives a weight that INC's ITEX
format stores as ``Const(float) -> QuantizeV2 -> Dequantize``.

One MatMul with a Q/DQ activation (MIN_FIRST quint8, as INC writes it) and three weight paths:
``folded``: INC's pattern (QuantizeV2 of the constant, constant-folded); ``reported``: the same qint8 values as a
constant with QuantizeV2's reported range; ``requested``: the same values with the range QuantizeV2 was asked
for. Each output is compared with NumPy: the dequantized activation times the qint8 weights at the scale
TensorFlow's Dequantize defines (range / 127).

    .venv/bin/python scripts/probe_itex_weight_scale.py
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def main() -> None:
    tf.compat.v1.disable_eager_execution()
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((256, 256)) * 0.05).astype(np.float32)
    x = rng.standard_normal((64, 256)).astype(np.float32)
    m = float(np.abs(w).max())
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        q = tf.raw_ops.QuantizeV2(input=tf.constant(w), min_range=-m, max_range=m, T=tf.qint8, mode="SCALED",
                                  round_mode="HALF_TO_EVEN")
        w8, lo, hi = sess.run([tf.bitcast(q.output, tf.int8), q.output_min, q.output_max])
    g = tf.Graph()
    with g.as_default():
        xp = tf.compat.v1.placeholder(tf.float32, x.shape)
        qx = tf.raw_ops.QuantizeV2(input=xp, min_range=-4.0, max_range=4.0, T=tf.quint8, mode="MIN_FIRST")
        dx = tf.raw_ops.Dequantize(input=qx.output, min_range=qx.output_min, max_range=qx.output_max, mode="MIN_FIRST")
        qa = tf.raw_ops.QuantizeV2(input=tf.constant(w), min_range=tf.constant(-m), max_range=tf.constant(m),
                                   T=tf.qint8, mode="SCALED", round_mode="HALF_TO_EVEN")
        paths = {"folded": (qa.output, qa.output_min, qa.output_max)}
        const8 = tf.bitcast(tf.constant(w8), tf.qint8)
        paths["reported"] = (const8, tf.constant(lo), tf.constant(hi))
        paths["requested"] = (const8, tf.constant(-m), tf.constant(m))
        outs = {k: tf.matmul(dx, tf.raw_ops.Dequantize(input=a, min_range=b, max_range=c, mode="SCALED"))
                for k, (a, b, c) in paths.items()}
        act = tf.identity(dx)
    with tf.compat.v1.Session(graph=g) as sess:
        got = sess.run({**outs, "x": act}, {xp: x})
    ref = got["x"].astype(np.float64) @ (w8.astype(np.float64) * (m / 127))
    print(f"weight |max| {m:.5f}; QuantizeV2 reports [{lo:.5f}, {hi:.5f}]; |output| max {np.abs(ref).max():.3f}")
    for k in paths:
        big = np.abs(ref) > 0.1
        print(f"{k:>9}: largest |output - reference| {np.abs(got[k] - ref).max():.2e}, "
              f"median output / reference {np.median(got[k][big] / ref[big]):.6f}  (128/127 = {128 / 127:.6f})")


if __name__ == "__main__":
    main()
