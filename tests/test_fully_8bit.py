"""Beyond INC's MatMuls (issue 13): INT8 attention, integer Softmax and LayerNorm.

Each rewrite on a small graph built here: op counts, and outputs against a NumPy reference of the integer
algorithm (bit for bit) and against the float op (within a stated tolerance); the recipe rules that select
them; calibration statistics of masked logits; and one tiny-model tune through the whole pipeline.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.unit


def _float_softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _float_layer_norm(x, gamma, beta, eps):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + eps) * gamma + beta


def _logits(seed=0, shape=(3, 2, 5, 24), masked_from=17):
    x = (np.random.default_rng(seed).standard_normal(shape) * 4.0).astype(np.float32)
    x[..., masked_from:] += np.float32(-1e9)
    return x


def _attention_graph(x_shape, y_shape, mask_from=None, layer_norm=False):
    """A frozen graph: q, k -> BatchMatMulV2(q, k^T) [+ mask] -> Softmax -> BatchMatMulV2(., v) [-> LayerNorm]."""
    import tensorflow as tf

    rng = np.random.default_rng(3)
    graph = tf.Graph()
    with graph.as_default():
        q = tf.compat.v1.placeholder(tf.float32, x_shape, name="q")
        k = tf.compat.v1.placeholder(tf.float32, y_shape, name="k")
        v = tf.compat.v1.placeholder(tf.float32, y_shape, name="v")
        with tf.name_scope("att"):
            logits = tf.matmul(q, k, transpose_b=True)
            if mask_from is not None:
                n = y_shape[-2]
                logits = logits + tf.constant(np.where(np.arange(n) >= mask_from, -1e9, 0.0).astype(np.float32))
            w = tf.nn.softmax(logits, name="weights")
            out = tf.matmul(w, v)
        if layer_norm:
            d = y_shape[-1]
            gamma = tf.constant(rng.uniform(0.5, 2.0, d).astype(np.float32))
            beta = tf.constant(rng.normal(0, 0.3, d).astype(np.float32))
            with tf.name_scope("layer_norm"):
                mean = tf.reduce_mean(out, axis=-1, keepdims=True)
                var = tf.reduce_mean(tf.square(out - mean), axis=-1, keepdims=True)
                out = (out - mean) * tf.math.rsqrt(var + 1e-6) * gamma + beta
        tf.identity(out, name="out")
    return graph.as_graph_def()


def _run(graph_def, feeds, fetch="out:0"):
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as sess:
        return sess.run(fetch, {f"{k}:0": v for k, v in feeds.items()})


# ---------------------------------------------------------------------------------------------- softmax
def test_integer_softmax_graph_equals_numpy_reference_and_float_softmax():
    import tensorflow as tf

    from inc_transformer_mt.passes.integer_ops import OUT_LEVELS, SoftmaxConsts, _softmax_graph, softmax_reference

    x = _logits()
    k = SoftmaxConsts.for_range(float(np.abs(x[x > -1e4]).max()))
    ref = softmax_reference(x, k)
    assert np.array_equal(_softmax_graph(tf.constant(x), k).numpy(), ref)
    # 8-bit output: each probability within 1.5 steps of 1/255 of the float softmax; masked keys exactly 0
    assert np.abs(ref - _float_softmax(x)).max() < 1.5 / OUT_LEVELS
    assert (ref[..., 17:] == 0).all()
    assert np.abs(ref.sum(-1) - 1).max() < 24 / OUT_LEVELS


def test_integer_softmax_constants_bound_the_int32_polynomial():
    from inc_transformer_mt.passes.integer_ops import MIN_SOFTMAX_SCALE, SoftmaxConsts

    for absmax in (0.01, 1.0, 20.0, 500.0):
        k = SoftmaxConsts.for_range(absmax)
        assert k.scale >= MIN_SOFTMAX_SCALE
        assert k.q_b**2 + k.q_c < 2**22  # the largest q_l: 511 keys sum below 2^31
        assert k.clip_lo <= -(k.clip_hi + 30 * k.q_ln2)  # the mask lands at exp < 2^-30


# ------------------------------------------------------------------------------------------- layer norm
def test_integer_layer_norm_graph_equals_numpy_reference_and_float_layer_norm():
    import tensorflow as tf

    from inc_transformer_mt.passes.integer_ops import LayerNormConsts, _layer_norm_graph, layer_norm_reference

    rng = np.random.default_rng(1)
    x = (rng.standard_normal((4, 7, 64)) * 3 + 2).astype(np.float32)
    x[0, 0, 5] = 40.0  # an outlier sets the range
    gamma = rng.uniform(0.5, 1.5, 64).astype(np.float32)
    beta = (rng.standard_normal(64) * 0.1).astype(np.float32)
    k = LayerNormConsts.for_range(float(np.abs(x).max()), gamma, beta, 1e-6)
    ref = layer_norm_reference(x, k)
    assert np.array_equal(_layer_norm_graph(tf.constant(x), k, 64).numpy(), ref)
    want = _float_layer_norm(x, gamma, beta, 1e-6)
    # int8 gamma (0.4% of its max) and 2^-10 normalised steps: within 1% of the output's range
    assert np.abs(ref - want).max() < 0.01 * np.abs(want).max()


def test_integer_square_root_is_the_exact_floor_root():
    from inc_transformer_mt.passes.integer_ops import _isqrt_reference

    v = np.concatenate([np.arange(0, 5000, dtype=np.int64),
                        np.random.default_rng(2).integers(1, 2**44, 5000, dtype=np.int64)])
    r = _isqrt_reference(v)
    v1 = np.maximum(v, 1)
    assert ((r * r <= v1) & ((r + 1) * (r + 1) > v1)).all()


# -------------------------------------------------------------------------------------------- rewrites
def test_rewrites_on_a_small_attention_graph():
    from inc_transformer_mt.model.analysis import op_precision_census
    from inc_transformer_mt.passes.eight_bit import apply_eight_bit, watched_tensors
    from inc_transformer_mt.passes.int8_attention import QBMM_OP
    from inc_transformer_mt.passes.integer_ops import LayerNormConsts, SoftmaxConsts

    xs, ys = [2, 2, 3, 16], [2, 2, 9, 16]
    gd = _attention_graph(xs, ys, mask_from=7, layer_norm=True)
    rng = np.random.default_rng(5)
    feeds = {"q": rng.standard_normal(xs).astype(np.float32), "k": rng.standard_normal(ys).astype(np.float32),
             "v": rng.standard_normal(ys).astype(np.float32)}
    ops = {"att/MatMul": "BatchMatMulV2", "att/MatMul_1": "BatchMatMulV2", "att/weights": "Softmax",
           "layer_norm": "LayerNorm"}
    extra, masked = watched_tensors(gd, ops)
    assert extra["att/MatMul"] == ["q", "k"] and masked == {"att/add"}
    # ranges: the operands' true |max|; the logits' and the LayerNorm input's observed |max|
    logits = _run(gd, feeds, "att/add:0")
    pre_ln = _run(gd, feeds, "att/MatMul_1:0")
    absmax = {"q": np.abs(feeds["q"]).max(), "k": np.abs(feeds["k"]).max(), "v": np.abs(feeds["v"]).max(),
              "att/weights": 1.0, "att/add": np.abs(logits[logits > -1e4]).max(), "att/MatMul_1": np.abs(pre_ln).max()}
    ranges = {t: (-float(a), float(a)) for t, a in absmax.items()}
    new, reports = apply_eight_bit(gd, ops, ranges, ranges)
    assert [r["pass"] for r in reports] == ["int8_attention", "integer_softmax", "integer_layer_norm"]
    types = [n.op for n in new.node]
    assert types.count(QBMM_OP) == 2 and "Softmax" not in types and "Rsqrt" not in types
    census = op_precision_census(new)
    assert census["BatchMatMulV2"]["int8"]["outside_loop"] == 2
    assert census["Softmax"]["integer"]["outside_loop"] == 1 and census["LayerNorm"]["integer"]["outside_loop"] == 1
    # the integer ops alone (float BatchMatMuls) reproduce the NumPy references on the float graph's tensors
    only_int, _ = apply_eight_bit(gd, {"att/weights": "Softmax", "layer_norm": "LayerNorm"}, ranges, ranges)
    k = SoftmaxConsts.for_range(absmax["att/add"])
    from inc_transformer_mt.passes.integer_ops import layer_norm_parts, layer_norm_reference, softmax_reference

    assert np.array_equal(_run(only_int, feeds, "att/weights:0"), softmax_reference(logits, k))
    parts = layer_norm_parts(gd)["layer_norm"]
    kl = LayerNormConsts.for_range(absmax["att/MatMul_1"], parts.gamma, parts.beta, parts.eps)
    pre_ln_int = _run(only_int, feeds, "att/MatMul_1:0")
    assert np.array_equal(_run(only_int, feeds), layer_norm_reference(pre_ln_int, kl))
    # everything together stays close to the float graph
    want, got = _run(gd, feeds), _run(new, feeds)
    assert np.abs(got - want).max() < 0.1 * np.abs(want).max()


def test_int8_attention_quantizes_the_second_operand_to_seven_bits():
    """On CPUs without VNNI, full 8-bit operands saturate the s8 kernel's int16 pair sums; the rewrite keeps the
    second operand within [-64, 63] and the result close to float on data that saturated before."""
    from inc_transformer_mt.passes.int8_attention import int8_attention, quantize_range

    assert quantize_range(-3.0, 2.0) == 3.0 and quantize_range(-3.0, 2.0, reduced=True) == 6.0
    xs, ys = [8, 4, 1, 64], [8, 4, 20, 64]
    gd = _attention_graph(xs, ys)
    rng = np.random.default_rng(0)
    q = np.clip(rng.standard_normal(xs), -3, 3).astype(np.float32)
    k = np.clip(rng.standard_normal(ys), -3, 3).astype(np.float32)
    new, report = int8_attention(gd, {"q": (-3.0, 3.0), "k": (-3.0, 3.0), "att/weights": (0.0, 1.0),
                                      "v": (-3.0, 3.0)}, ["att/MatMul"])
    assert report.rewritten == ["att/MatMul"] and report.details["att/MatMul"]["y_range"] == 6.0
    feeds = {"q": q, "k": k, "v": k}
    want, got = _run(gd, feeds, "att/MatMul:0"), _run(new, feeds, "att/MatMul:0")
    # 8-bit q (step 3/127) and 7-bit k (step 6/127) over 64 products: within 1.5% of the logits' range
    assert np.abs(got - want).max() < 0.015 * np.abs(want).max() * 64 / 8


def test_layer_norm_outside_the_supported_form_is_refused_by_name():
    import tensorflow as tf

    from inc_transformer_mt.errors import UserError
    from inc_transformer_mt.passes.eight_bit import check_supported

    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [2, 8], name="x")
        with tf.name_scope("layer_norm"):
            mean = tf.reduce_mean(x, axis=-1, keepdims=True)
            out = (x - mean) * tf.math.rsqrt(tf.reduce_mean(tf.square(x - mean), -1, keepdims=True) + x[:, :1])
        tf.identity(out, name="out")
    with pytest.raises(UserError, match="LayerNorm layer_norm cannot be made integer"):
        check_supported(graph.as_graph_def(), {"layer_norm": "LayerNorm"})


def test_calibration_leaves_the_attention_mask_out_of_masked_tensors():
    import tensorflow as tf

    from inc_transformer_mt.quant.calibrate import _Instrumented

    gd = _attention_graph([1, 1, 2, 4], [1, 1, 6, 4], mask_from=3)
    inst = _Instrumented.__new__(_Instrumented)
    inst.tf, inst.masked = tf, {"att/add:0"}
    logits = _run(gd, {"q": np.ones([1, 1, 2, 4], np.float32), "k": np.ones([1, 1, 6, 4], np.float32),
                       "v": np.ones([1, 1, 6, 4], np.float32)}, "att/add:0")
    seen = inst._values("att/add:0", tf.constant(logits)).numpy()
    assert logits.min() < -1e8 and seen.min() == 0.0 and seen.max() == pytest.approx(4.0)
    assert inst._values("other:0", tf.constant(logits)).numpy().min() < -1e8


# ---------------------------------------------------------------------------------------------- recipes
def test_recipe_accepts_the_new_dtypes():
    """The refusals (Softmax/LayerNorm int8, MatMul integer) are tests/data/recipes/*.yaml, each
    with its expected error line (tests/test_recipe.py)."""
    from inc_transformer_mt.recipe import load_recipe

    recipe = load_recipe(ROOT / "recipes" / "reference_fully_8bit.yaml")
    assert [(r.op_type, r.dtype) for r in recipe.quantization.rules] == [
        ("MatMul", "int8"), ("BatchMatMulV2", "int8"), ("GatherNd", "int8"), ("Softmax", "integer"),
        ("LayerNorm", "integer")]
    lin = load_recipe(ROOT / "recipes" / "integer_transformer_fully_8bit.yaml")
    assert [(r.op_type, r.dtype) for r in lin.quantization.rules][3:] == [("PolyAttention", "integer"),
                                                                          ("LayerNorm", "integer")]


def test_plan_refuses_an_op_name_rule_that_reaches_a_softmax_with_int8():
    from inc_transformer_mt.errors import UserError
    from inc_transformer_mt.quant.plan import resolve_plan
    from inc_transformer_mt.recipe.schema import QuantRule

    ops = {"a/MatMul": "MatMul", "a/att/weights": "Softmax", "a/layer_norm": "LayerNorm", "a/att/MatMul_3":
           "BatchMatMulV2"}
    rules = [QuantRule(op_type="MatMul", dtype="int8"), QuantRule(op_name="^a/att/.*$", dtype="int8")]
    with pytest.raises(UserError, match=r"r.yaml:9: quantization.rules\[1\].*Softmax.*use dtype integer"):
        resolve_plan(rules, ops, rule_lines={1: 9}, source="r.yaml")
    plan = resolve_plan([QuantRule(op_type="MatMul", dtype="int8"), QuantRule(op_type="Softmax", dtype="integer"),
                         QuantRule(op_name="^a/att/MatMul_3$", dtype="int8")], ops)
    assert plan.beyond_matmul == {"a/att/MatMul_3": "BatchMatMulV2", "a/att/weights": "Softmax"}
    assert plan.candidates == ["a/MatMul"]


# ------------------------------------------------------------------------------------------ whole tune
@pytest.mark.slow
def test_tune_honours_every_rule_beyond_matmul_on_the_tiny_model(tmp_path, tiny_model_dir, monkeypatch):
    """The tiny model through ``inc-mt tune`` with every rule beyond MatMul: calibrated, rewritten in the
    trial, and visible in the report's census measured on the written graph."""
    import inc_transformer_mt as mt
    from inc_transformer_mt.data.corpus import multi30k_split, read_lines
    from inc_transformer_mt.model.analysis import op_precision_census
    from inc_transformer_mt.model.graph import load_graph_def

    # the references are only scored (criterion: a relative drop of at most 0.99): the German side of val
    src = read_lines(multi30k_split("val", "en"))[:20]
    (tmp_path / "src.en").write_text("".join(s + "\n" for s in src))
    (tmp_path / "ref.de").write_text("".join(s + "\n" for s in read_lines(multi30k_split("val", "de"))[:20]))
    (tmp_path / "recipe.yaml").write_text(f"""
model: {{path: {tiny_model_dir}}}
data:
  calibration: {{source: src.en, reference: ref.de, start: 12, size: 8}}
  tuning: {{source: src.en, reference: ref.de, start: 0, size: 12}}
quantization:
  rules:
    - {{op_type: MatMul, dtype: int8}}
    - {{op_type: BatchMatMulV2, dtype: int8}}
    - {{op_type: GatherNd, dtype: int8}}
    - {{op_type: Softmax, dtype: integer}}
    - {{op_type: LayerNorm, dtype: integer}}
calibration: {{method: minmax, batch_size: 4}}
tuning: {{fallback: none, max_trials: 1, criterion: {{type: relative, max_drop: 0.99}}}}
backend: itex
passes: []
outputs: {{dir: tuned, overwrite: never}}
""")
    monkeypatch.setenv("INC_MT_CACHE", str(tmp_path / "cache"))
    result = mt.tune(tmp_path / "recipe.yaml", log=lambda s: None)
    assert result.passed, result.report.stop_reason
    census = result.report.int8.precision_census
    # tiny model, 2 encoder + 2 decoder layers: 2*2 + 2*4 = 12 attention BatchMatMuls, 2 + 4 Softmax,
    # 2*2 + 1 LayerNorms in the encoder and 2*3 + 1 in the decoder loop
    assert census["BatchMatMulV2"].int8.outside_loop + census["BatchMatMulV2"].int8.inside_loop == 12
    assert census["BatchMatMulV2"].fp32.outside_loop + census["BatchMatMulV2"].fp32.inside_loop == 0
    assert census["Softmax"].integer.inside_loop == 4 and census["Softmax"].integer.outside_loop == 2
    assert (census["LayerNorm"].integer.outside_loop, census["LayerNorm"].integer.inside_loop) == (5, 7)
    assert census["GatherNd"].int8.inside_loop == 8  # 2 layers x K and V x the two beam gathers
    assert census["LayerNorm"].fp32.inside_loop + census["LayerNorm"].fp32.outside_loop == 0
    written = load_graph_def(result.out_dir / "model.pb.gz")
    assert op_precision_census(written)["Softmax"]["integer"]["inside_loop"] == 4
    assert len(mt.translate(src[:4], model=mt.ModelOptions(result.out_dir))) == 4


# -------------------------------------------------------------------------------------------- K/V cache
@pytest.fixture(scope="module")
def tiny_int8_attention(tiny_model_dir):
    """The tiny model's graph with INT8 attention (ranges: min/max over two batches), and those batches."""
    from inc_transformer_mt.model.graph import load_graph_def
    from inc_transformer_mt.passes.int8_attention import attention_inputs, int8_attention
    from inc_transformer_mt.quant.calibrate import collect_stats

    gd = load_graph_def(tiny_model_dir / "model.pb.gz")
    rng = np.random.default_rng(4)
    batches = [rng.integers(3, 8000, size=(3, n)).astype(np.int32) for n in (5, 9)]
    att = attention_inputs(gd)
    stats = collect_stats(gd, "input_ids:0", "output_ids:0", batches, extra=att, bins=64).stats
    graph, _ = int8_attention(gd, {t: (s.minimum, s.maximum) for t, s in stats.items()}, att)
    return graph, batches


def test_int8_cache_moves_the_reorder_before_quantization_token_identically(tiny_int8_attention):
    """Gather-then-quantize (INT8 attention quantizes the float cache at every step) against quantize-then-
    gather (the cache stored, concatenated and reordered in int8): the same output ids and scores."""
    from conftest import run_graph_batches

    from inc_transformer_mt.model.analysis import op_precision_census
    from inc_transformer_mt.passes.int8_cache import find_caches, int8_cache

    graph, batches = tiny_int8_attention
    caches = find_caches(graph)
    assert len(caches) == 4  # K and V of the 2 decoder layers; the cross-attention reads no loop cache
    gathers = [n.name for n in graph.node if n.op == "GatherNd"]
    cached, report = int8_cache(graph, gathers)
    assert len(report.rewritten) == 4
    by_name = {n.name: n for n in cached.node}
    for c in caches:  # the loop variable itself is int8, Enter to NextIteration
        merge = next(n for n in c.nodes.values() if n.op == "Merge")
        assert by_name[merge.name].attr["T"].type == 6  # DT_INT8
    census = op_precision_census(cached)["GatherNd"]
    assert census["int8"]["inside_loop"] == 8 and census["int8"]["outside_loop"] == 0
    before = run_graph_batches(graph, batches)
    after = run_graph_batches(cached, batches)
    for (ids_a, scores_a), (ids_b, scores_b) in zip(before, after, strict=True):
        assert np.array_equal(ids_a, ids_b)
        assert np.array_equal(scores_a, scores_b)
    # with only part of a cache's gathers selected that cache stays float
    _, rep = int8_cache(graph, [caches[0].gathers[0]])
    assert not rep.applicable and "reorder no cache" in rep.reason


def test_int8_cache_without_int8_attention_is_refused_before_any_work():
    from inc_transformer_mt.errors import UserError
    from inc_transformer_mt.passes.eight_bit import check_supported

    gd = _attention_graph([1, 1, 2, 4], [1, 1, 3, 4])
    with pytest.raises(UserError, match=r"GatherNd int8 \(the INT8 K/V cache\) needs .* BatchMatMulV2, dtype: int8"):
        check_supported(gd, {"some/GatherNd": "GatherNd"})


def test_ops_beyond_matmul_are_fallback_candidates_except_the_exact_int8_cache():
    from inc_transformer_mt.quant.plan import resolve_plan
    from inc_transformer_mt.recipe.schema import QuantRule
    from inc_transformer_mt.tuning.stages import _fallback_candidates

    ops = {"a/MatMul": "MatMul", "a/att/weights": "Softmax", "a/layer_norm": "LayerNorm",
           "a/att/MatMul_3": "BatchMatMulV2", "a/GatherNd": "GatherNd"}
    rules = [QuantRule(op_type=t, dtype=d) for t, d in (("MatMul", "int8"), ("BatchMatMulV2", "int8"),
                                                        ("GatherNd", "int8"), ("Softmax", "integer"),
                                                        ("LayerNorm", "integer"))]
    plan = resolve_plan(rules, ops)
    assert plan.beyond_matmul["a/GatherNd"] == "GatherNd"
    assert _fallback_candidates(plan) == ["a/MatMul", "a/att/MatMul_3", "a/att/weights", "a/layer_norm"]


def test_a_graph_with_an_itex_only_op_names_the_runtime_it_needs():
    from inc_transformer_mt.inference.translate import _load_problem

    msg = ("Op type not registered '_QuantizedBatchMatMulV2AndDequantize' in binary running on vm. Make sure the "
           "Op and Kernel are registered\nmore")
    assert _load_problem(msg) == ("op _QuantizedBatchMatMulV2AndDequantize is not registered in this process: the "
                                  "model needs the itex runtime (ITEX loaded), not stock TensorFlow")
    assert _load_problem("Input 0 of node x was passed float\nmore") == "Input 0 of node x was passed float"


# ------------------------------------------------------------------ Lin et al.'s Integer Transformer (item 4)
def _lin_graph(shape=(2, 2, 3, 9), d=16, mask_from=6, degree=2):
    """A frozen graph of the model's own Lin et al. ops: masked logits -> polynomial attention -> P.V -> L1
    LayerNorm (model/transformer.py, so the rewrites are held to the structure the trained model has)."""
    import tensorflow as tf

    from inc_transformer_mt.model import transformer as T
    from inc_transformer_mt.model.config import ModelConfig

    cfg = ModelConfig(attention="polynomial", layer_norm="l1", poly_degree=degree)
    rng = np.random.default_rng(4)
    graph = tf.Graph()
    with graph.as_default():
        logits = tf.compat.v1.placeholder(tf.float32, shape, name="logits")
        v = tf.compat.v1.placeholder(tf.float32, (*shape[:2], shape[-1], d), name="v")
        bias = tf.constant(np.where(np.arange(shape[-1]) >= mask_from, T.NEG_INF, 0.0).astype(np.float32))
        with tf.name_scope("att"):
            w = T.polynomial_attention(logits + bias, bias, tf.constant(0.3), tf.constant(-0.05), cfg)
            out = tf.matmul(w, v)
        p = {"x/layer_norm/gamma": tf.constant(rng.uniform(0.5, 2.0, d).astype(np.float32)),
             "x/layer_norm/beta": tf.constant(rng.normal(0, 0.3, d).astype(np.float32))}
        tf.identity(T._layer_norm(out, p, "x", cfg), name="out")
    return graph.as_graph_def()


def _float_poly(x, b, delta, degree, keep):
    p = (np.maximum(x + b, 0) ** degree + abs(delta)) * keep
    return p / p.sum(-1, keepdims=True)


def _float_l1_layer_norm(x, gamma, beta, eps):
    m = x.mean(-1, keepdims=True)
    dev = np.abs(x - m).mean(-1, keepdims=True) * np.sqrt(np.pi / 2)
    return (x - m) / (dev + eps) * gamma + beta


@pytest.mark.parametrize("degree", [2, 3])
def test_integer_transformer_ops_match_numpy_references_and_float(degree):
    """Lin et al.'s polynomial attention and L1 LayerNorm: found by structure, calibrated, replaced by integer
    sub-graphs that equal their NumPy references bit for bit and stay close to the float ops."""
    from inc_transformer_mt.model.analysis import compute_ops, op_census, op_precision_census
    from inc_transformer_mt.passes.eight_bit import apply_eight_bit, watched_tensors
    from inc_transformer_mt.passes.integer_ops import (
        LayerNormConsts,
        PolyConsts,
        layer_norm_parts,
        layer_norm_reference,
        poly_attention_parts,
        poly_attention_reference,
    )

    gd = _lin_graph(degree=degree)
    ops = {op: t for op, t in compute_ops(gd).items() if t in ("PolyAttention", "LayerNorm")}
    assert ops == {"att/polynomial_attention": "PolyAttention", "layer_norm": "LayerNorm"}
    assert op_census(gd).outside["PolyAttention"] == 1 and op_census(gd).outside["Softmax"] == 0
    parts = poly_attention_parts(gd)["att/polynomial_attention"]
    assert (parts.bias, parts.delta, parts.degree) == (pytest.approx(0.3), pytest.approx(0.05), degree)
    ln = layer_norm_parts(gd)["layer_norm"]
    assert ln.norm == "l1" and ln.eps == pytest.approx(1e-6)
    extra, masked = watched_tensors(gd, ops)
    assert masked == {parts.x} and extra[parts.reader] == [parts.x]

    rng = np.random.default_rng(8)
    feeds = {"logits": (rng.standard_normal((2, 2, 3, 9)) * 3).astype(np.float32),
             "v": rng.standard_normal((2, 2, 9, 16)).astype(np.float32)}
    x = _run(gd, feeds, parts.x + ":0")
    pre_ln = _run(gd, feeds, "att/MatMul:0")
    ranges = {parts.x: (-float(np.abs(x[x > -1e4]).max()),) * 2, ln.x: (0.0, float(np.abs(pre_ln).max()))}
    new, reports = apply_eight_bit(gd, ops, ranges, ranges)
    assert [r["pass"] for r in reports] == ["integer_poly_attention", "integer_layer_norm"]
    assert not {"Relu", "Abs", "RealDiv"} & {n.op for n in new.node if "integer" not in n.name}
    census = op_precision_census(new)
    assert census["PolyAttention"]["integer"]["outside_loop"] == 1
    assert census["LayerNorm"]["integer"]["outside_loop"] == 1
    # bit for bit against the NumPy references, on the tensors the integer graph itself computes
    kp = PolyConsts.for_range(np.abs(x[x > -1e4]).max(), parts)
    got_w = _run(new, feeds, parts.output + ":0")
    assert np.array_equal(got_w, poly_attention_reference(x, kp))
    kl = LayerNormConsts.for_range(np.abs(pre_ln).max(), ln.gamma, ln.beta, ln.eps)
    pre_ln_int = _run(new, feeds, "att/MatMul:0")
    assert np.array_equal(_run(new, feeds), layer_norm_reference(pre_ln_int, kl, "l1"))
    # and close to the float ops: 8-bit weights (steps of 1/255), masked keys exactly 0
    keep = (np.arange(9) < 6).astype(np.float32)
    want_w = _float_poly(feeds["logits"], 0.3, -0.05, degree, keep)
    assert np.abs(got_w - want_w).max() <= 1.0 / 255 and (got_w[..., 6:] == 0).all()
    want = _float_l1_layer_norm(pre_ln, ln.gamma, ln.beta, ln.eps)
    got = _run(new, feeds)
    assert np.abs(got - want).max() < 0.03 * np.abs(want).max()
