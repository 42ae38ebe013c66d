"""The public Python API, driven from code: tune, translate, evaluate, regress, benchmark; and the CLI's
exit code for a runtime failure."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import inc_transformer_mt as mt

pytestmark = pytest.mark.tf


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    from inc_transformer_mt.data.corpus import multi30k_split, read_lines

    d = tmp_path_factory.mktemp("api")
    src = read_lines(multi30k_split("val", "en"))[:12]
    ref = read_lines(multi30k_split("val", "de"))[:12]
    (d / "s.en").write_text("".join(s + "\n" for s in src))
    (d / "r.de").write_text("".join(s + "\n" for s in ref))
    return d / "s.en", d / "r.de", src


def test_root_exports_the_api_lazily():
    code = ("import sys, inc_transformer_mt as mt\nassert 'tensorflow' not in sys.modules\n"
            "assert callable(mt.tune) and callable(mt.benchmark)\nassert 'tensorflow' not in sys.modules\n"
            "import inc_transformer_mt.tuning.pipeline, inc_transformer_mt.regression.check\n"
            "assert callable(mt.tune) and callable(mt.regress)  # no subpackage shadows an API function\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_translate_matches_the_translator(tiny_model_dir, pair):
    from inc_transformer_mt.inference.translate import Translator
    from inc_transformer_mt.model.graph import resolve_model

    _, _, src = pair
    out = mt.translate(src, model=mt.ModelOptions(tiny_model_dir), run=mt.RunOptions(max_sentences=5))
    with Translator(resolve_model(tiny_model_dir)) as tr:
        assert out == tr.translate(src, max_sentences=5, progress=False)


def test_evaluate_scores_with_sacrebleu(tiny_model_dir, pair, tmp_path):
    import sacrebleu

    s, r, _ = pair
    result = mt.evaluate(model=mt.ModelOptions(tiny_model_dir), data=mt.DataOptions(source=s, reference=r, limit=10),
                         hyp_out=tmp_path / "hyp.de")
    refs = r.read_text().splitlines()[:10]
    assert result.sentences == 10 and result.hypotheses == (tmp_path / "hyp.de").read_text().splitlines()
    assert result.bleu == round(sacrebleu.corpus_bleu(result.hypotheses, [refs]).score, 2)
    assert "hypotheses" not in result.to_dict() and result.signature.startswith("nrefs:1")


def test_tune_returns_the_typed_report_it_wrote(tuned_tiny_result):
    from inc_transformer_mt.report.tune_report import load_report

    r = tuned_tiny_result
    assert r.passed and r.exit_code == 0 and r.report.int8 is not None
    assert load_report(r.out_dir / "report.json") == r.report
    assert r.report.int8.graph == str(r.out_dir / "model.pb.gz") and r.report.machine["isa_class"]
    manifest = json.loads((r.out_dir / "manifest.json").read_text())
    assert manifest["matmul_precision"] == r.report.int8.matmul_precision
    assert manifest["recipe"] == "../recipe.yaml"


def test_regress_from_python(tuned_tiny_result):
    result = mt.regress(tuned_tiny_result.out_dir)
    statuses = {c.name: c.status for c in result.checks}
    assert result.passed and statuses["model_sha256"] == "pass" and statuses["int8_census"] == "pass"


def test_benchmark_from_python(tiny_model_dir, pair):
    from inc_transformer_mt.bench.benchmark import Grid

    s, r, _ = pair
    report = mt.benchmark([("tiny", mt.ModelOptions(tiny_model_dir))],
                          data=mt.DataOptions(source=s, reference=r, limit=6),
                          grid=Grid(runtimes=("itex",), streams=(1,), batch_sentences=(4,)), reps=1,
                          search_sentences=3, latency_sentences=0)
    m = report.models[0]
    assert m.label == "tiny" and m.best is not None and m.best.sentences == 6 and m.best.bleu is not None
    assert report.machine["isa_class"] and report.dataset["sentences"] == 6


def test_runtime_failure_is_one_line_and_exit_3(tiny_model_dir, pair, tmp_path):
    """Writing the output fails (a directory nothing can be created in): the input was fine, so exit 3."""
    s, _, _ = pair
    cmd = [sys.executable, "-m", "inc_transformer_mt.cli.main", "translate", str(s), "--model", str(tiny_model_dir),
           "-o", "/proc/self/out.de"]
    p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert p.returncode == 3, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: runtime failure:") and "Traceback" not in p.stderr
    p = subprocess.run([*cmd[:3], "--debug", *cmd[3:]], capture_output=True, text=True, check=False)
    assert p.returncode == 3 and "Traceback" in p.stderr


def test_tune_runs_the_default_passes_on_the_int8_graph_exactly(tuned_tiny_result):
    """The tiny tune (ITEX QDQ graph, recipe without `passes:`) runs the default passes: they apply to the
    INT8 graph, keep every MatMul INT8 (the Q/DQ pairs are never cut) and the tuning translations' ids."""
    from inc_transformer_mt.defaults import DEFAULT_PASSES
    from inc_transformer_mt.model.analysis import int8_matmul_count
    from inc_transformer_mt.model.graph import load_graph_def

    ps = tuned_tiny_result.report.passes
    assert ps is not None and ps.names == list(DEFAULT_PASSES) and ps.accepted
    assert ps.token_identical is True and ps.differing_sentences == 0
    by = {r["pass"]: r for r in ps.reports}
    assert by["beam_invariant_state"]["rewritten"] == 2 and by["hoist_loop_invariants"]["details"]["moved_matmuls"] == 4
    assert by["compose_beam_gathers"]["step_nodes_after"] < by["beam_invariant_state"]["step_nodes_before"]
    int8, total = int8_matmul_count(load_graph_def(tuned_tiny_result.out_dir / "model.pb.gz"))
    assert int8 == total == tuned_tiny_result.report.int8.matmuls_int8
    assert all(v == "int8" for v in tuned_tiny_result.report.int8.matmul_precision.values())
