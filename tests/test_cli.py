"""The ``inc-mt`` command line on the tiny model: outputs, and every bad-input case (exit 2, one line)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from inc_transformer_mt.cli.main import main

pytestmark = pytest.mark.tf

SRC = ["A dog runs.", "Two men are talking.", "A child plays in the water."]
REF = ["Ein Hund rennt.", "Zwei Männer unterhalten sich.", "Ein Kind spielt im Wasser."]


@pytest.fixture()
def corpus(tmp_path):
    (tmp_path / "src.en").write_text("\n".join(SRC) + "\n", encoding="utf-8")
    (tmp_path / "ref.de").write_text("\n".join(REF) + "\n", encoding="utf-8")
    return tmp_path


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(code, err, *fragments):
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_translate_file_to_file(tiny_model_dir, corpus, capsys):
    out = corpus / "hyp.de"
    code, stdout, _ = run(["translate", corpus / "src.en", "-o", out, "--model", tiny_model_dir], capsys)
    assert code == 0 and stdout == ""
    assert len(out.read_text(encoding="utf-8").splitlines()) == len(SRC)


def test_translate_stdin_to_stdout(tiny_model_dir, capsys, monkeypatch):
    import io

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"A dog runs.\nA cat.\n")))
    code, stdout, _ = run(["translate", "--model", tiny_model_dir], capsys)
    assert code == 0 and len(stdout.splitlines()) == 2


def test_evaluate_json(tiny_model_dir, corpus, capsys):
    code, stdout, _ = run(["evaluate", "--source", corpus / "src.en", "--reference", corpus / "ref.de",
                           "--model", tiny_model_dir, "--json"], capsys)
    assert code == 0
    result = json.loads(stdout)
    assert result["sentences"] == 3 and result["signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    assert 0.0 <= result["bleu"] <= 100.0


def test_info_census(tiny_model_dir, capsys):
    code, stdout, _ = run(["info", "--model", tiny_model_dir, "--json"], capsys)
    info = json.loads(stdout)
    assert code == 0 and info["census"]["control_flow"].startswith("v1")
    assert info["census"]["ops"]["MatMul"]["inside_loop"] > 0


# ------------------------------------------------------------------------------------------- bad input
def test_missing_model_file(corpus, capsys):
    code, _, err = run(["translate", corpus / "src.en", "--model", corpus / "nope.pb"], capsys)
    assert_user_error(code, err, "nope.pb", "model file not found")


def test_corrupt_model_file(tiny_model_dir, corpus, capsys):
    bad = corpus / "bad.pb"
    bad.write_bytes(os.urandom(2000))
    code, _, err = run(["translate", corpus / "src.en", "--model", bad, "--tokenizer",
                        tiny_model_dir / "spm.model"], capsys)
    assert_user_error(code, err, "bad.pb", "not a frozen TensorFlow GraphDef")


def test_truncated_gzip_model(tiny_model_dir, corpus, capsys):
    bad = corpus / "model.pb.gz"
    bad.write_bytes((tiny_model_dir / "model.pb.gz").read_bytes()[:5000])
    code, _, err = run(["translate", corpus / "src.en", "--model", bad, "--tokenizer",
                        tiny_model_dir / "spm.model"], capsys)
    assert_user_error(code, err, "model.pb.gz", "cannot read model file")


def test_corrupt_model_json(tiny_model_dir, corpus, capsys):
    broken = corpus / "m"
    broken.mkdir()
    (broken / "model.json").write_text("{not json", encoding="utf-8")
    code, _, err = run(["translate", corpus / "src.en", "--model", broken], capsys)
    assert_user_error(code, err, "model.json", "not valid JSON")


@pytest.mark.parametrize("flag, key", [("--input-tensor", "input tensor"), ("--output-tensor", "output tensor")])
def test_wrong_tensor_names(tiny_model_dir, corpus, capsys, flag, key):
    code, _, err = run(["translate", corpus / "src.en", "--model", tiny_model_dir, flag, "no_such:0"], capsys)
    assert_user_error(code, err, key, "'no_such:0'", "model.pb.gz")


def test_line_count_mismatch(tiny_model_dir, corpus, capsys):
    (corpus / "short.de").write_text("Ein Hund.\n", encoding="utf-8")
    code, _, err = run(["evaluate", "--source", corpus / "src.en", "--reference", corpus / "short.de",
                        "--model", tiny_model_dir], capsys)
    assert_user_error(code, err, "line-count mismatch", "src.en has 3 lines", "short.de has 1")


def test_empty_line_in_a_test_set(tiny_model_dir, corpus, capsys):
    """A blank source line would shift every later reference: refused in evaluation data (translate keeps it:
    a blank line translates to a blank line, see tests/reliability_cases.yaml)."""
    (corpus / "gap.en").write_text("A dog.\n\nA cat.\n", encoding="utf-8")
    (corpus / "gap.de").write_text("Ein Hund.\nNichts.\nEine Katze.\n", encoding="utf-8")
    code, _, err = run(["evaluate", "--source", corpus / "gap.en", "--reference", corpus / "gap.de",
                        "--model", tiny_model_dir], capsys)
    assert_user_error(code, err, "gap.en:2", "empty line")


def test_blank_lines_translate_to_blank_lines(tiny_model_dir, corpus, capsys):
    (corpus / "gap.en").write_text("A dog.\n\n  \nA cat.\n", encoding="utf-8")
    code, out, _ = run(["translate", corpus / "gap.en", "--model", tiny_model_dir], capsys)
    lines = out.split("\n")
    assert code == 0 and len(lines) == 5 and lines[1] == lines[2] == "" and lines[0] and lines[3]


def test_invalid_utf8(tiny_model_dir, corpus, capsys):
    (corpus / "latin1.en").write_bytes("A dog.\nA café.\n".encode("latin-1"))
    code, _, err = run(["evaluate", "--source", corpus / "latin1.en", "--reference", corpus / "ref.de",
                        "--model", tiny_model_dir], capsys)
    assert_user_error(code, err, "latin1.en:2", "invalid UTF-8")


def test_sentence_over_the_model_limit(tiny_model_dir, corpus, capsys):
    long = " ".join(["elephant"] * 60)
    (corpus / "long.en").write_text(f"A dog.\n{long}\n", encoding="utf-8")
    code, _, err = run(["translate", corpus / "long.en", "--model", tiny_model_dir], capsys)
    assert_user_error(code, err, "long.en:2", "over the model's limit of 40")


def test_failed_run_writes_nothing_and_keeps_existing_output(tiny_model_dir, corpus, capsys):
    (corpus / "gap.en").write_bytes("A dog.\nA cat.\nA café.\n".encode("latin-1"))
    out = corpus / "existing.de"
    out.write_text("keep me\n", encoding="utf-8")
    code, _, err = run(["translate", corpus / "gap.en", "-o", out, "--model", tiny_model_dir], capsys)
    assert_user_error(code, err, "gap.en:3", "invalid UTF-8")
    assert out.read_text(encoding="utf-8") == "keep me\n"
    assert sorted(p.name for p in corpus.iterdir()) == ["existing.de", "gap.en", "ref.de", "src.en"]


def test_error_is_one_stderr_line_in_a_real_process(tiny_model_dir, corpus):
    """No TensorFlow start-up chatter or traceback around the error line."""
    proc = subprocess.run(
        [sys.executable, "-m", "inc_transformer_mt.cli.main", "translate", str(corpus / "src.en"),
         "--model", str(tiny_model_dir), "--input-tensor", "wrong"],
        capture_output=True, text=True, timeout=300, check=False, env={k: v for k, v in os.environ.items()
                                                          if not k.endswith("MIN_LOG_LEVEL")},
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        (f"error: {tiny_model_dir / 'model.pb.gz'}: input tensor 'wrong:0' is not a tensor of this graph "
         "(no node named 'wrong')")
    ]
    assert proc.stdout == ""


def test_help_does_not_import_tensorflow():
    code = (
        "import sys\n"
        "from inc_transformer_mt.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
        "for sub in ('translate', 'evaluate', 'info', 'demo', 'fetch-data', 'tune', 'recipe', 'regress', 'profile', 'optimize'):\n"
        "    try:\n        main([sub, '--help'])\n    except SystemExit as e:\n        assert e.code == 0\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'neural_compressor', 'sacrebleu')]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "usage: inc-mt" in proc.stdout


def test_usage_error_exit_code(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["translate", "--max-tokens", "many"])
    assert exc.value.code == 2


def _recipe(tmp_path, body):
    path = tmp_path / "r.yaml"
    path.write_text(body)
    return path


@pytest.mark.tf
def test_tune_bad_inputs_give_one_error_line_and_write_nothing(tmp_path, tiny_model_dir, capsys):
    base = ("model: {{path: {model}}}\ndata:\n  calibration: {{split: val, start: 900, size: 8}}\n"
            "  tuning: {{split: val, start: {start}, size: {size}}}\noutputs: {{dir: out, overwrite: never}}\n")
    cases = [
        (base.format(model=tmp_path / "missing", start=0, size=10), "model"),
        (base.format(model=tiny_model_dir, start=1000, size=100), "data.tuning: start 1000 + size 100 is past the end"),
        # a rule that selects nothing in this model: stopped before any work, naming the rule and its line
        (base.format(model=tiny_model_dir, start=0, size=10) + "quantization:\n  rules:\n"
         "    - {op_type: MatMul, dtype: int8}\n    - {op_name: '^transformer/while/layer_9/.*$', dtype: fp32}\n",
         "r.yaml:9: quantization.rules[1] (op_name: '^transformer/while/layer_9/.*$' -> fp32) matches no op"),
    ]
    for body, expected in cases:
        code = main(["tune", str(_recipe(tmp_path, body))])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and expected in err, err
        assert not (tmp_path / "out").exists()
        assert not [p for p in tmp_path.iterdir() if ".staging-" in p.name]
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("user data")
    code = main(["tune", str(_recipe(tmp_path, base.format(model=tiny_model_dir, start=0, size=10)))])
    err = capsys.readouterr().err
    assert code == 2 and "outputs.dir" in err and "not empty" in err
    assert (tmp_path / "out" / "keep.txt").read_text() == "user data"
    # 'replace' never deletes a directory of other files, nor the FP32 model's own directory
    replace = base.replace("overwrite: never", "overwrite: replace").format(model=tiny_model_dir, start=0, size=10)
    code = main(["tune", str(_recipe(tmp_path, replace))])
    err = capsys.readouterr().err
    assert code == 2 and "did not write" in err and (tmp_path / "out" / "keep.txt").read_text() == "user data"
    before = sorted(p.name for p in tiny_model_dir.iterdir())
    into_model = replace.replace("dir: out", f"dir: {tiny_model_dir}")
    code = main(["tune", str(_recipe(tmp_path, into_model))])
    err = capsys.readouterr().err
    assert code == 2 and "holds the FP32 model" in err and sorted(p.name for p in tiny_model_dir.iterdir()) == before


def test_evaluate_on_empty_files_is_bad_input(tiny_model_dir, tmp_path, capsys):
    (tmp_path / "s.en").write_text("")
    (tmp_path / "r.de").write_text("")
    code = main(["evaluate", "--model", str(tiny_model_dir), "--source", str(tmp_path / "s.en"),
                 "--reference", str(tmp_path / "r.de")])
    err = capsys.readouterr().err
    assert code == 2 and "no sentences" in err and err.count("\n") == 1


@pytest.mark.tf
def test_recipe_plan_shows_what_each_rule_selects(tmp_path, tiny_model_dir, capsys):
    body = (f"model: {{path: {tiny_model_dir}}}\ndata:\n  calibration: {{split: val, start: 900, size: 8}}\n"
            "  tuning: {split: val, start: 0, size: 10}\nquantization:\n  rules:\n"
            "    - {op_type: MatMul, dtype: int8}\n"
            "    - {op_name: '^transformer/while/layer_1/.*$', dtype: fp32}\n")
    code, out, _ = run(["recipe", "plan", _recipe(tmp_path, body)], capsys)
    assert code == 0
    assert "rule 0 (line 7): op_type: MatMul -> int8: matches 33 MatMul" in out
    # layer 1 of the decoder: 10 MatMuls (self 4, cross 4, FFN 2), 2 Softmax, 2 attention BatchMatMulV2 each,
    # 3 LayerNorms; the GatherNd of its K/V cache live in the loop body, not in the layer scope
    assert "rule 1 (line 8): op_name: '^transformer/while/layer_1/.*$' -> fp32: matches 4 BatchMatMulV2, " \
           "3 LayerNorm, 10 MatMul, 2 Softmax" in out
    assert "MatMul: 10 fp32, 23 int8" in out
