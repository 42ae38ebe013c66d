"""`inc-mt regress`: degraded models are caught, an untouched one passes, bad manifests exit 2; and the
project's own check of the committed tuned reference model."""

from __future__ import annotations

import gzip
import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from inc_transformer_mt.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "inc_transformer_mt" / "reference_int8"

pytestmark = pytest.mark.tf


@pytest.fixture(scope="module")
def tuned_tiny(tuned_tiny_result):
    return tuned_tiny_result.out_dir


def _copy(src: Path, dst: Path) -> Path:
    """A copy beside the original (the manifest's data paths are relative to its directory)."""
    dst = src.parent / f"{dst.parent.name}_{dst.name}"
    shutil.copytree(src, dst)
    return dst


def _graph(model_dir: Path):
    from inc_transformer_mt.model.graph import load_graph_def

    return load_graph_def(model_dir / "model.pb.gz")


def _save(graph_def, model_dir: Path) -> None:
    (model_dir / "model.pb.gz").write_bytes(gzip.compress(graph_def.SerializeToString()))


def _regress(model_dir: Path, *extra: str, capsys=None) -> tuple[int, dict]:
    code = main(["regress", str(model_dir), "--json", *extra])
    captured = capsys.readouterr()
    assert code != 2, captured.err
    return code, json.loads(captured.out)


def _failed(result: dict) -> set[str]:
    return {c["name"] for c in result["checks"] if c["status"] == "fail"}


def test_manifest_records_what_the_check_needs(tuned_tiny):
    m = json.loads((tuned_tiny / "manifest.json").read_text())
    assert m["manifest_version"] == 1 and len(m["model"]["sha256"]) == 64
    assert m["evaluations"][0]["data"]["start"] == 24  # the held-out set comes first
    assert sum(v == "int8" for v in m["matmul_precision"].values()) == 33
    assert m["signature"].startswith("nrefs:1|case:mixed")


def test_untouched_model_passes_and_writes_junit(tuned_tiny, tmp_path, capsys):
    junit = tmp_path / "regress.xml"
    code, result = _regress(tuned_tiny, "--junit", str(junit), capsys=capsys)
    assert code == 0 and result["status"] == "pass" and not _failed(result)
    suite = ET.parse(junit).getroot()
    assert suite.tag == "testsuite" and suite.get("failures") == "0" and int(suite.get("tests")) == 8
    assert {c["name"]: c["status"] for c in result["checks"]}["recipe_sha256"] == "pass"


def test_changed_recipe_is_a_warning_not_a_failure(tuned_tiny, tmp_path, capsys):
    bad = _copy(tuned_tiny, tmp_path / "recipe_changed")
    m = json.loads((bad / "manifest.json").read_text())
    recipe = bad.parent / "changed_recipe.yaml"
    recipe.write_text((bad / m["recipe"]).read_text() + "# edited after tuning\n")
    m["recipe"] = "../changed_recipe.yaml"
    (bad / "manifest.json").write_text(json.dumps(m))
    code, result = _regress(bad, capsys=capsys)
    checks = {c["name"]: c for c in result["checks"]}
    assert code == 0 and checks["recipe_sha256"]["status"] == "warn"
    assert "changed since this model was tuned" in checks["recipe_sha256"]["detail"]


def test_corrupted_calibration_threshold_is_caught(tuned_tiny, tmp_path, capsys):
    from tensorflow.python.framework import tensor_util

    bad = _copy(tuned_tiny, tmp_path / "bad_threshold")
    gd = _graph(bad)
    changed = 0
    for node in gd.node:  # shrink every frozen activation max: inputs saturate
        if node.name.endswith("/frozen_max_only"):
            value = float(tensor_util.MakeNdarray(node.attr["value"].tensor))
            node.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(value * 0.02))
            changed += 1
    assert changed > 10
    _save(gd, bad)
    manifest = json.loads((bad / "manifest.json").read_text())  # the tiny fixture's relative 0.99 is too loose
    manifest["criterion"] = {"type": "absolute", "max_drop": 0.5}  # for a drop to show
    (bad / "manifest.json").write_text(json.dumps(manifest))
    junit = tmp_path / "bad.xml"
    code, result = _regress(bad, "--junit", str(junit), capsys=capsys)
    assert code == 1
    assert {"int8_bleu", "model_sha256", "drop_vs_fp32"} <= _failed(result)
    assert "int8_census" not in _failed(result)
    suite = ET.parse(junit).getroot()
    failed_cases = {case.get("name") for case in suite.findall("testcase") if case.find("failure") is not None}
    assert failed_cases == _failed(result) and int(suite.get("failures")) == len(failed_cases)
    assert "measured" in suite.find("testcase/failure").text


def test_matmul_forced_back_to_fp32_is_caught(tuned_tiny, tiny_model_dir, tmp_path, capsys):
    import numpy as np

    from inc_transformer_mt.model.graph import load_graph_def
    from inc_transformer_mt.quant.inc_bridge import inc_quantize

    victim = "transformer/while/layer_1/ffn/MatMul"
    fp32 = load_graph_def(tiny_model_dir / "model.pb.gz")
    rng = np.random.default_rng(0)
    res = inc_quantize(fp32, input_names=["input_ids:0"], output_names=["output_ids", "output_scores"],
                       backend="itex", calib_batches=[rng.integers(3, 8000, (4, 10)).astype(np.int32)],
                       fp32_ops=[victim])
    bad = _copy(tuned_tiny, tmp_path / "fell_back")
    _save(res.graph_def, bad)
    code, result = _regress(bad, capsys=capsys)
    assert code == 1 and "int8_census" in _failed(result)
    census = next(c for c in result["checks"] if c["name"] == "int8_census")
    assert f"{victim}: int8 -> fp32" in census["detail"]


def test_swapped_model_file_is_caught(tuned_tiny, tiny_model_dir, tmp_path, capsys):
    bad = _copy(tuned_tiny, tmp_path / "swapped")
    shutil.copy(tiny_model_dir / "model.pb.gz", bad / "model.pb.gz")  # the FP32 graph in place of the INT8 one
    code, result = _regress(bad, capsys=capsys)
    assert code == 1 and {"model_sha256", "int8_census"} <= _failed(result)


@pytest.mark.parametrize("mutate, expected", [
    (lambda m: "{not json", "manifest is not valid JSON"),
    (lambda m: json.dumps({**m, "colour": "red"}), "colour: unknown key"),
    (lambda m: json.dumps({**m, "manifest_version": 7}), "manifest_version"),
    (lambda m: json.dumps({k: v for k, v in m.items() if k != "model"}), "model: missing required key"),
    (lambda m: json.dumps({**m, "evaluations": []}), "evaluations: empty"),
    # a NaN (Python's json writes and reads it) would make every comparison false, so the check could not fail
    (lambda m: json.dumps({**m, "evaluations": [{**m["evaluations"][0], "int8_bleu": float("nan")}]}),
     "evaluations.0.int8_bleu: Input should be a finite number"),
    (lambda m: json.dumps({**m, "tolerances": {"bleu": float("inf")}}), "tolerances.bleu"),
    (lambda m: json.dumps({**m, "criterion": {"type": "absolute"}}), "criterion.max_drop: missing required key"),
    (lambda m: json.dumps({**m, "criterion": {"type": "absolute", "max_drop": "half"}}), "criterion.max_drop"),
    (lambda m: json.dumps({**m, "criterion": {"type": "absolute", "max_drop": 1e9}}), "criterion.max_drop"),
])
def test_malformed_manifest_exits_2_with_the_reason(tuned_tiny, tmp_path, capsys, mutate, expected):
    model = _copy(tuned_tiny, tmp_path / "m")
    manifest = json.loads((model / "manifest.json").read_text())
    (model / "manifest.json").write_text(mutate(manifest))
    code = main(["regress", str(model)])
    err = capsys.readouterr().err
    assert code == 2 and expected in err and err.strip().splitlines()[-1].startswith("error: ")


def test_subset_needs_a_value_recorded_on_it_then_rebaseline(tuned_tiny, tmp_path, capsys):
    model = _copy(tuned_tiny, tmp_path / "sub")
    code = main(["regress", str(model), "--limit", "8"])
    assert code == 2 and "--rebaseline --limit 8" in capsys.readouterr().err
    assert main(["regress", str(model), "--limit", "8", "--rebaseline"]) == 0
    capsys.readouterr()
    code, result = _regress(model, "--limit", "8", capsys=capsys)
    assert code == 0 and result["data"]["size"] == 8 and result["data"]["subset_of_recorded_set"] is True


@pytest.mark.slow
def test_committed_tuned_reference_model_passes_its_manifest(capsys):
    """The project's own CI check: the committed INT8 reference model against its committed manifest."""
    assert (COMMITTED / "manifest.json").is_file(), "the tuned reference model is not committed"
    code, result = _regress(COMMITTED, "--limit", "200", capsys=capsys)
    assert code == 0, json.dumps(result, indent=2)
    assert result["data"]["size"] == 200


def test_int8_bleu_is_compared_per_cpu_class(tuned_tiny, tmp_path, capsys):
    """INT8 kernels differ by CPU class: a value recorded on another class is not compared; drop still is."""
    from inc_transformer_mt.env import isa_class

    here = isa_class()
    other = "amx_int8" if here != "amx_int8" else "avx2"
    model = _copy(tuned_tiny, tmp_path / "isa")
    manifest = json.loads((model / "manifest.json").read_text())
    first = manifest["evaluations"][0]
    assert first["isa"] == here and first["int8_bleu_by_isa"] == {here: first["int8_bleu"]}
    for e in manifest["evaluations"]:  # as if recorded on another CPU class, with a far-off value
        e.update(isa=other, int8_bleu=e["int8_bleu"] - 20, int8_bleu_by_isa={other: e["int8_bleu"] - 20})
    (model / "manifest.json").write_text(json.dumps(manifest))
    code, result = _regress(model, capsys=capsys)
    checks = {c["name"]: c for c in result["checks"]}
    assert code == 0 and checks["int8_bleu"]["status"] == "skipped" and here in checks["int8_bleu"]["detail"]
    assert checks["drop_vs_fp32"]["status"] == "pass" and result["data"]["cpu_isa_class"] == here
    # recording this class keeps the other class's value (same graph) and compares from then on
    assert main(["regress", str(model), "--rebaseline"]) == 0
    capsys.readouterr()
    first = json.loads((model / "manifest.json").read_text())["evaluations"][0]
    assert set(first["int8_bleu_by_isa"]) == {here, other} and first["isa"] == here
    code, result = _regress(model, capsys=capsys)
    assert code == 0 and {c["name"]: c for c in result["checks"]}["int8_bleu"]["status"] == "pass"


@pytest.mark.unit
def test_isa_class_order():
    from inc_transformer_mt.env import isa_class

    assert isa_class({"avx2", "avx512f", "avx512_vnni", "amx_int8"}) == "amx_int8"
    assert isa_class({"avx2", "avx512f", "avx512_vnni"}) == "avx512_vnni"
    assert isa_class({"avx2", "fma"}) == "avx2"
    assert isa_class({"sse4_2"}) == "baseline"


@pytest.mark.slow  # a second end-to-end tune
def test_failing_tune_never_replaces_a_passing_model(tuned_tiny, tmp_path, capsys):
    """outputs.overwrite 'replace' on a passing model's directory, and the new tune fails: the model stays,
    the failed report goes beside it."""
    import yaml

    model = _copy(tuned_tiny, tmp_path / "keep")
    before = (model / "model.pb.gz").read_bytes()
    recipe = yaml.safe_load((tuned_tiny / "recipe.resolved.yaml").read_text())
    recipe["tuning"]["criterion"] = {"type": "absolute", "max_drop": 0.001}  # the tiny model cannot meet it
    recipe["outputs"] = {"dir": str(model), "overwrite": "replace"}
    path = tmp_path / "failing.yaml"
    path.write_text(yaml.safe_dump(recipe))
    code = main(["tune", str(path)])
    out = capsys.readouterr().out
    assert code == 1 and "FAILED" in out
    assert (model / "model.pb.gz").read_bytes() == before and json.loads((model / "report.json").read_text())[
        "status"] == "passed"
    failed = model.with_name(model.name + ".failed")
    assert json.loads((failed / "report.json").read_text())["status"] == "failed" and str(failed) in out


def test_speed_reps_must_be_positive(tuned_tiny, capsys):
    code = main(["regress", str(tuned_tiny), "--speed", "--speed-reps", "0"])
    err = capsys.readouterr().err
    assert code == 2 and err.strip() == "error: --speed-reps must be at least 1 (got 0)"
