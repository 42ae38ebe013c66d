"""Real INC quantization of the tiny in-code model: calibration inside the loop, KL ranges frozen into the
graph, loop MatMuls INT8 on both backends, the default-backend graph running without ITEX, `inc-mt tune`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.tf

INPUT, OUTPUTS = "input_ids:0", ["output_ids", "output_scores"]


@pytest.fixture(scope="module")
def tiny_graph(tiny_model_dir):
    from inc_transformer_mt.model.graph import load_graph_def

    return load_graph_def(tiny_model_dir / "model.pb.gz")


@pytest.fixture(scope="module")
def batches():
    rng = np.random.default_rng(0)
    return [rng.integers(3, 8000, size=(4, 10)).astype(np.int32) for _ in range(2)]


@pytest.fixture(scope="module")
def calibration(tiny_graph, batches):
    from inc_transformer_mt.quant.calibrate import collect_stats

    return collect_stats(tiny_graph, INPUT, "output_ids:0", batches, bins=256)


def test_calibration_sees_every_decode_step(tiny_graph, calibration, batches):
    from inc_transformer_mt.model.analysis import loop_nodes

    loop = loop_nodes(tiny_graph)
    stats, mm_input = calibration.stats, calibration.matmul_input
    assert len(mm_input) == 33  # 2+2 layers: 12 encoder, 20 decoder, 1 logits
    enc = stats[mm_input["transformer/encode/layer_0/ffn/MatMul"]]
    logits = stats[mm_input["transformer/while/logits/MatMul"]]
    assert "transformer/while/logits/MatMul" in loop
    d_model = 32
    src_tokens = sum(b.size for b in batches)
    assert enc.hist.sum() == src_tokens * d_model  # one pass over the source tokens
    # the logits MatMul runs once per decode step for every beam: many times the source-side count
    beams = 4
    assert logits.hist.sum() % (d_model * beams * 4) == 0
    assert logits.hist.sum() > 2 * beams * sum(b.shape[0] for b in batches) * d_model
    for s in stats.values():
        assert s.minimum <= s.maximum and s.hist.sum() > 0


def _frozen_ranges(graph_def):
    """Activation QuantizeV2 node -> (min, max) constants frozen into it (weight quantizers left out)."""
    from tensorflow.python.framework import tensor_util

    by_name = {n.name: n for n in graph_def.node}

    def const(name):
        node = by_name[name.split(":")[0].lstrip("^")]
        while node.op in ("Enter", "Identity"):
            node = by_name[node.input[0].split(":")[0]]
        return float(tensor_util.MakeNdarray(node.attr["value"].tensor))

    def is_weight(name):
        node = by_name[name.split(":")[0]]
        while node.op in ("Enter", "Identity"):
            node = by_name[node.input[0].split(":")[0]]
        return node.op == "Const"

    return {n.name: (const(n.input[1]), const(n.input[2])) for n in graph_def.node
            if n.op == "QuantizeV2" and not is_weight(n.input[0])}


@pytest.mark.parametrize("backend", ["itex", "default"])
def test_kl_ranges_are_the_ones_frozen_and_loop_matmuls_are_int8(tiny_graph, calibration, batches, backend, tmp_path):
    from inc_transformer_mt.model.analysis import loop_nodes, matmul_precision
    from inc_transformer_mt.quant.inc_bridge import inc_quantize
    from inc_transformer_mt.quant.kl import kl_range

    tensor_range = {t: kl_range(s, "symmetric") for t, s in calibration.stats.items()}
    ranges = {mm: tensor_range[t] for mm, t in calibration.matmul_input.items()}
    kept_fp32 = "transformer/while/layer_1/self_attention/MatMul_5"
    res = inc_quantize(tiny_graph, input_names=[INPUT], output_names=OUTPUTS, backend=backend,
                       calib_batches=batches, ranges=ranges, fp32_ops=[kept_fp32])
    q = res.graph_def
    # every range INC parsed for a MatMul input was replaced by its KL range ...
    assert res.replaced_ranges
    minmax_keys = [k for k in res.minmax_ranges if "_eightbit_m" in k]
    assert {k for k in minmax_keys} <= set(res.replaced_ranges)
    # ... and those are the values frozen in the graph's QuantizeV2 nodes
    frozen = _frozen_ranges(q)
    chosen = {round(v, 5) for r in ranges.values() for v in r}
    assert frozen, "no QuantizeV2 in the quantized graph"
    for name, (lo, hi) in frozen.items():
        assert round(lo, 5) in chosen and round(hi, 5) in chosen, (name, lo, hi)
    # KL actually clipped something (min/max would have frozen the observed extremes)
    assert any(tensor_range[t] != (s.minimum, s.maximum) for t, s in calibration.stats.items())
    # loop MatMuls are INT8; the named one stays FP32
    prec = matmul_precision(q, sorted(calibration.matmul_input))
    loop = loop_nodes(tiny_graph)
    assert prec[kept_fp32] == "fp32"
    in_loop_int8 = [mm for mm, v in prec.items() if v == "int8" and mm in loop]
    # both backends: every MatMul not named FP32 is INT8, the decode loop's included (on the default backend
    # thanks to quant/default_backend.py: the in-loop FFN-1 and the transpose_b logits MatMul)
    assert [mm for mm, v in prec.items() if v == "fp32"] == [kept_fp32]
    assert "transformer/while/logits/MatMul" in in_loop_int8 and "transformer/while/layer_0/ffn/MatMul" in in_loop_int8
    # the benchmark's count of INT8 MatMuls (no list of FP32 MatMul names needed) agrees
    from inc_transformer_mt.model.analysis import int8_matmul_count

    assert int8_matmul_count(q) == (sum(v == "int8" for v in prec.values()), len(prec))
    assert int8_matmul_count(tiny_graph) == (0, len(prec))
    # the report's census is measured on the quantized graph itself, for every op type a rule can name
    from inc_transformer_mt.model.analysis import op_census, op_precision_census

    census = op_precision_census(q)
    total = lambda c: c["outside_loop"] + c["inside_loop"]
    assert (total(census["MatMul"]["int8"]), total(census["MatMul"]["fp32"])) == (len(prec) - 1, 1)
    assert census["MatMul"]["fp32"]["inside_loop"] == 1  # the one kept FP32 is in the loop
    fp32_ops = op_census(tiny_graph).to_dict()["ops"]
    float_gathers = sum(n.op == "GatherNd" and n.attr["Tparams"].type == 1 for n in tiny_graph.node)
    assert total(census["GatherNd"]["fp32"]) == float_gathers > 0
    for op in ("Softmax", "BatchMatMulV2", "LayerNorm"):
        assert total(census[op]["int8"]) == 0, (op, census[op])
        assert census[op]["fp32"] == {k: fp32_ops[op][k] for k in ("outside_loop", "inside_loop")}, op
    if backend == "default":
        assert sorted(res.prepared["relu_split"]) == ["transformer/while/layer_0/ffn/MatMul",
                                                     "transformer/while/layer_1/ffn/MatMul"]
        assert res.prepared["untransposed"] == ["transformer/while/logits/MatMul"]
        # the disguised Relus are Relus again: same op counts as the FP32 graph
        count = lambda gd, op: sum(n.op == op for n in gd.node)
        assert count(q, "Maximum") == count(tiny_graph, "Maximum")
        assert not [n.name for n in q.node if "inc_mt_relu_zero" in n.name]
        in_loop_relus = [n.name for n in q.node if n.op == "Relu" and n.name.startswith("transformer/while/")]
        assert sorted(in_loop_relus) == ["transformer/while/layer_0/ffn/Relu", "transformer/while/layer_1/ffn/Relu"]
        assert res.enter_fixes > 0
        assert not [n for n in q.node if n.op == "Enter" and n.attr["T"].type in (11, 12, 13)]
    path = tmp_path / f"{backend}.pb"
    path.write_bytes(q.SerializeToString())


NO_ITEX = """
import sys
from inc_transformer_mt.runtime import import_tensorflow, itex_loaded
tf = import_tensorflow(sys.argv[4])
from tensorflow.core.framework import graph_pb2
import numpy as np
gd = graph_pb2.GraphDef(); gd.ParseFromString(open(sys.argv[1], "rb").read())
g = tf.Graph()
with g.as_default():
    tf.import_graph_def(gd, name="")
with tf.compat.v1.Session(graph=g) as s:
    out = s.run("output_ids:0", {"input_ids:0": np.load(sys.argv[2])})
np.save(sys.argv[3], out)
print("itex_loaded=" + str(itex_loaded()))
"""


@pytest.fixture(scope="module")
def default_backend_int8(tiny_graph, batches, tmp_path_factory):
    """The tiny graph quantized once on the default backend, with the system temp directory watched: (result,
    what INC left in the temp directory)."""
    import tempfile

    from inc_transformer_mt.quant.inc_bridge import inc_quantize

    system_temp = tmp_path_factory.mktemp("system_temp")
    previous, tempfile.tempdir = tempfile.tempdir, str(system_temp)
    try:
        res = inc_quantize(tiny_graph, input_names=[INPUT], output_names=OUTPUTS, backend="default",
                           calib_batches=batches)
        assert tempfile.gettempdir() == str(system_temp)
    finally:
        tempfile.tempdir = previous
    return res, sorted(p.name for p in system_temp.iterdir())


def test_inc_leaves_no_temporary_files(default_backend_int8):
    """INC's converter dumps calibration output to mkstemp(".log") and never removes it; the package runs INC
    in a private temp directory that it removes."""
    assert default_backend_int8[1] == []


@pytest.mark.parametrize("runtime", [
    "itex",
    pytest.param("stock", marks=pytest.mark.xfail(strict=True, reason=(
        "known limitation: stock TensorFlow 2.15 fails on the default backend's in-loop "
        "QuantizedMatMulWithBiasAndDequantize ('Missing 0-th output'); ITEX supplies working kernels"))),
])
def test_default_backend_graph_runs_in_a_fresh_process(default_backend_int8, batches, tmp_path, runtime):
    """TF 2.15 has no qint8 Enter kernel: without the Enter fix this graph cannot run at all."""
    res = default_backend_int8[0]
    graph = tmp_path / "q.pb"
    graph.write_bytes(res.graph_def.SerializeToString())
    np.save(tmp_path / "in.npy", batches[0])
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", NO_ITEX, str(graph), str(tmp_path / "in.npy"),
                           str(tmp_path / "out.npy"), runtime], capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"itex_loaded={runtime == 'itex'}" in proc.stdout
    ids = np.load(tmp_path / "out.npy")
    assert ids.shape[0] == batches[0].shape[0] and ids.dtype == np.int32


def _tiny_recipe(tmp_path, tiny_model_dir, multi30k, backend, tuning="max_trials: 3, sensitivity_sentences: 12"):
    from inc_transformer_mt.data.corpus import read_lines
    from inc_transformer_mt.inference.translate import Translator
    from inc_transformer_mt.model.graph import resolve_model

    # references = the tiny FP32 model's own translations: FP32 BLEU is 100 and INT8 error shows as a drop
    src = read_lines(multi30k / "val.en.gz")[:48]
    with Translator(resolve_model(tiny_model_dir)) as tr:
        hyps = tr.translate(src, progress=False)
    hyps = [h if h.strip() else "." for h in hyps]
    (tmp_path / "src.en").write_text("".join(s + "\n" for s in src))
    (tmp_path / "ref.de").write_text("".join(h + "\n" for h in hyps))
    recipe = tmp_path / f"{backend}.yaml"
    recipe.write_text(f"""
model: {{path: {tiny_model_dir}}}
data:
  calibration: {{source: src.en, reference: ref.de, start: 40, size: 8}}
  tuning: {{source: src.en, reference: ref.de, start: 0, size: 40}}
calibration: {{method: kl, kl_mode: symmetric, bins: 256, batch_size: 4}}
tuning: {{{tuning}}}
backend: {backend}
passes: [gather_nd_to_gather]
runtime: {{streams: 2, threads_per_stream: 1, max_sentences: 8}}
outputs: {{dir: out_{backend}, overwrite: never}}
""")
    return recipe


@pytest.fixture(scope="module")
def multi30k():
    from inc_transformer_mt.data.corpus import multi30k_dir

    return multi30k_dir()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["itex", "default"])
def test_inc_mt_tune_end_to_end(tmp_path, tiny_model_dir, multi30k, backend, monkeypatch):
    """The whole CLI tune on both backends; the fallback (sensitivity ranking, more trials) runs on ITEX only,
    the default backend's run is one trial (its fallback is the same code: tests/test_tuner.py, test_stages.py)."""
    monkeypatch.setenv("INC_MT_CACHE", str(tmp_path / "cache"))
    tuning = "max_trials: 3, sensitivity_sentences: 12" if backend == "itex" else "max_trials: 1, fallback: none"
    recipe = _tiny_recipe(tmp_path, tiny_model_dir, multi30k, backend, tuning)
    cmd = [sys.executable, "-m", "inc_transformer_mt.cli.main", "tune", str(recipe)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, check=False)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    out = tmp_path / f"out_{backend}"
    report = json.loads((out / "report.json").read_text())
    assert report["backend"] == backend
    assert report["fp32"]["tuning_bleu"] == pytest.approx(100.0)
    assert report["trials"] and report["trials"][0]["fp32_ops"] == []
    # the backend chosen is the one every trial used (INC alone would drop ITEX after trial 1)
    assert {t["note"] for t in report["trials"]} == {"qdq" if backend == "itex" else "fused"}
    assert (out / "report.md").is_file() and (out / "recipe.resolved.yaml").is_file()
    assert report["calibration"]["method"] == "kl" and report["calibration"]["tensors"] == 33
    closest = report.get("int8") or report.get("closest_trial")
    assert closest["precision_census"]["Softmax"]["int8"] == {"outside_loop": 0, "inside_loop": 0}
    if proc.returncode == 0:
        assert report["status"] == "passed" and (out / "model.pb.gz").is_file()
        assert report["int8"]["drop"] <= 0.5 and report["int8"]["matmul_census"]["int8"]["inside_loop"] > 0
        assert "INT8 BLEU" in proc.stdout
        # the recipe's pass ran after tuning, BLEU was measured again, and the report shows both
        ps = report["passes"]
        assert ps["names"] == ["gather_nd_to_gather"] and ps["reports"][0]["rewritten"] > 0
        assert {"tuning_bleu_before", "tuning_bleu_after", "accepted"} <= set(ps)
        meta = json.loads((out / "model.json").read_text())["model"]
        assert meta["runtime"]["streams"] == 2
        if ps["accepted"]:
            assert meta["passes"] == ["gather_nd_to_gather"]
            assert report["int8"]["tuning_bleu"] == ps["tuning_bleu_after"]
            assert "GatherNd" not in report["int8"]["op_census"]["ops"]
        assert "Graph passes gather_nd_to_gather" in (out / "report.md").read_text()
    else:
        assert report["status"] == "failed" and not (out / "model.pb.gz").exists()
        assert "FAILED" in proc.stdout
    if len(report["trials"]) > 1:  # the fallback ran: its order is the measured ranking
        ranking = [s["unit"] for s in report["sensitivity"]]
        for k, trial in enumerate(report["trials"][1:], start=1):
            assert trial["fp32_units"] == ranking[:len(trial["fp32_units"])]
    assert not [p for p in tmp_path.iterdir() if ".staging-" in p.name or p.name.endswith(".lock")]
    # (a second tune on a non-empty 'never' directory: tests/reliability_cases.yaml, recipe-outputs-dir-not-empty-never)
