"""The INC plug-ins (inc_transformer_mt.inc) alone, from plain INC code (the docs/inc.md snippet), and the
``tuning.engine: inc`` search on the tiny model."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from inc_transformer_mt.errors import RuntimeFailure

ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------------------ unit tier
@pytest.mark.unit
@pytest.mark.parametrize(("fp32", "bleu", "stops"), [(40.0, 39.5, True), (40.0, 39.49, False), (40.0, 41.0, True),
                                                     (12.3, 11.8, True), (12.3, 11.79, False)])
def test_the_absolute_criterion_is_exact_in_incs_own_stopping_rule(fp32, bleu, stops):
    """INC's TuningMonitor (relative tolerable_loss) stops exactly when the drop is <= 0.5 BLEU points."""
    from neural_compressor.common.base_tuning import TuningConfig, TuningMonitor

    from inc_transformer_mt.inc import BleuEval
    from inc_transformer_mt.metrics.criterion import Criterion

    ev = BleuEval.__new__(BleuEval)  # the scoring rule only: no model needed
    ev.criterion, ev.fp32_bleu = Criterion("absolute", 0.5), fp32
    monitor = TuningMonitor(TuningConfig(config_set=[None], tolerable_loss=ev.tolerable_loss, max_trials=100))
    monitor.set_baseline(ev.score_of(fp32))
    monitor.add_trial_result(1, ev.score_of(bleu), None)
    assert monitor.need_stop() is stops
    assert Criterion("absolute", 0.5).passes(fp32, bleu) is stops


@pytest.mark.unit
def test_the_relative_criterion_is_incs_own():
    from neural_compressor.common.base_tuning import TuningConfig, TuningMonitor

    from inc_transformer_mt.inc import BleuEval
    from inc_transformer_mt.metrics.criterion import Criterion

    ev = BleuEval.__new__(BleuEval)
    ev.criterion, ev.fp32_bleu = Criterion("relative", 0.01), 40.0
    monitor = TuningMonitor(TuningConfig(config_set=[None], tolerable_loss=ev.tolerable_loss, max_trials=100))
    monitor.set_baseline(ev.score_of(40.0))
    monitor.add_trial_result(1, ev.score_of(39.59), None)  # 1% of 40 is 0.4: a drop of 0.41 fails
    assert not monitor.need_stop()
    monitor.add_trial_result(2, ev.score_of(39.6), None)
    assert monitor.need_stop()


@pytest.mark.unit
def test_an_untested_inc_version_is_refused_with_a_clear_error():
    from inc_transformer_mt.inc import check_inc_version

    assert check_inc_version() == "3.10"
    with pytest.raises(RuntimeFailure, match=r"neural-compressor 3\.11 is not supported.*3\.10"):
        check_inc_version("3.11")


@pytest.mark.unit
def test_the_kl_hook_fails_loudly_when_inc_never_calls_it():
    from inc_transformer_mt.inc import kl_ranges

    with pytest.raises(RuntimeFailure, match="never called the calibration hook"), \
            kl_ranges({"mm": (-1.0, 1.0)}, expect=["mm"]):
        pass  # no quantization ran


@pytest.mark.unit
def test_the_kl_hook_names_an_expected_op_whose_range_was_not_replaced():
    from inc_transformer_mt.inc import RangeHook

    hook = RangeHook(ranges={"a": (-1, 1), "b": (-2, 2)}, requant={}, calls=1,
                     replaced={"a_eightbit_min_x": -1.0, "a_eightbit_max_x": 1.0},
                     minmax={"a_eightbit_min_x": -3.0, "a_eightbit_max_x": 3.0,
                             "b_eightbit_min_y": -5.0, "b_eightbit_max_y": 5.0})
    with pytest.raises(RuntimeFailure, match=r"did not replace the range of 1 op\(s\): b;"):
        hook.verify()
    hook.replaced.update({"b_eightbit_min_y": -2.0, "b_eightbit_max_y": 2.0})
    hook.verify(["a", "b"])
    with pytest.raises(RuntimeFailure, match=": c;"):
        hook.verify(["a", "b", "c"])


@pytest.mark.unit
def test_the_backend_survives_incs_resets_and_model_wrapping(tiny_model_dir):
    from neural_compressor.tensorflow import Model
    from neural_compressor.tensorflow.utils import TFConfig

    from inc_transformer_mt.inc import keep_backend
    from inc_transformer_mt.model.graph import load_graph_def, resolve_model

    gd = load_graph_def(resolve_model(str(tiny_model_dir)).graph_path)
    with keep_backend("default") as workspace:
        Model(gd)  # picks itex whenever ITEX is importable, without the context
        assert TFConfig.global_config["backend"] == "default"
        TFConfig.reset_global_config()  # what INC does after every quantization
        assert TFConfig.global_config["backend"] == "default"
        assert TFConfig.global_config["use_bf16"] is False and Path(workspace).is_dir()
    assert not Path(workspace).exists()
    TFConfig.reset_global_config()
    assert TFConfig.global_config["backend"] == "default" and "reset_global_config" not in vars(TFConfig)


@pytest.mark.unit
def test_calibration_batches_are_length_sorted():
    from inc_transformer_mt.inc import CalibrationLoader

    ids = [[1] * n for n in (5, 2, 9, 3, 7)]
    loader = CalibrationLoader.length_sorted(ids, batch_size=2, pad_id=0)
    assert len(loader) == 3 and loader.batch_size == 2
    assert [b.shape for b, _ in loader] == [(2, 3), (2, 7), (1, 9)]
    assert all(b.dtype == np.int32 for b in loader.batches)


@pytest.mark.unit
def test_the_fallback_config_set_keeps_one_more_unit_fp32_per_config():
    from inc_transformer_mt.inc import fallback_config_set
    from inc_transformer_mt.quant.sensitivity import Sensitivity

    ranking = [Sensitivity("u1", ["a", "b"], 9, 0), Sensitivity("u2", ["c"], 5, 0), Sensitivity("u3", ["d"], 1, 0)]
    configs, steps = fallback_config_set(ranking, ["a", "b", "c", "d"], ["z"], include_all_int8=True)
    assert [s.fp32_ops for s in steps] == [["z"], ["a", "b", "z"], ["a", "b", "c", "z"]]  # never all four
    assert [s.units for s in steps] == [[], ["u1"], ["u1", "u2"]]
    keys = [sorted(k[0] if isinstance(k, tuple) else k for k in c.to_dict().get("local", {})) for c in configs]
    assert keys[1] == ["^a$", "^b$", "^z$"]


# ------------------------------------------------------------------------------- plain INC code (docs)
def _doc_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "inc.md").read_text(), flags=re.DOTALL)


@pytest.mark.slow
def test_the_docs_snippet_runs_inc_autotune_with_the_plugins(tiny_model_dir):
    """docs/inc.md's second block, run as written with the tiny model as input."""
    from inc_transformer_mt.data.corpus import multi30k_split, read_lines
    from inc_transformer_mt.inference.translate import Translator
    from inc_transformer_mt.metrics.criterion import Criterion
    from inc_transformer_mt.model.graph import resolve_model

    inputs, snippet = _doc_blocks()
    assert "MODEL_DIR" in inputs and "autotune(" in snippet
    src = read_lines(multi30k_split("val", "en"))[:32]
    with Translator(resolve_model(str(tiny_model_dir))) as tr:
        refs = [h or "." for h in tr.translate(src[:24], progress=False)]
    scope = {"MODEL_DIR": str(tiny_model_dir), "calib_src": src[24:], "tune_src": src[:24], "tune_ref": refs,
             "CRITERION": Criterion("relative", 0.99), "BACKEND": "itex"}
    exec(compile(snippet, "docs/inc.md", "exec"), scope)  # noqa: S102 - the documented code, verbatim
    records = scope["eval_fn"].records
    assert [r.trial for r in records] == [0, 1] and records[0].cached is False and records[0].bleu == pytest.approx(100.0)
    assert records[1].passed and records[1].graph_format == "qdq" and records[1].int8_matmuls == 33
    assert len(scope["hook"].ops_replaced()) == 33


# ------------------------------------------------------------------------------------- the inc engine
@pytest.mark.slow
def test_the_inc_engine_reaches_a_passing_model_like_the_own_engine(tuned_tiny_result, tmp_path):
    import inc_transformer_mt as mt

    recipe = Path(tuned_tiny_result.report.recipe)
    own = tuned_tiny_result.report
    result = mt.tune(recipe, [f"outputs.dir={tmp_path / 'inc'}", "tuning.engine=inc", "calibration.method=kl",
                              "calibration.bins=256", "passes=[]", "data.heldout="], log=lambda s: None)
    assert result.passed and own.passed
    r = result.report
    assert r.plan is not None and r.plan.engine == "inc" and own.plan.engine == "own"
    assert [t.note for t in r.trials] == ["inc autotune, qdq"]
    assert r.int8.matmuls_int8 == r.int8.matmuls_total == own.int8.matmuls_total == 33
    assert r.int8.ranges_replaced >= 66  # min and max of every MatMul input, verified by the hook
    assert (result.out_dir / "model.pb.gz").is_file()
    assert json.loads((result.out_dir / "report.json").read_text())["plan"]["engine"] == "inc"


@pytest.mark.slow
def test_the_inc_engine_falls_back_by_sensitivity_and_keeps_itex_on_every_trial(tuned_tiny_result, tmp_path):
    """A criterion the tiny model cannot meet: INC's loop runs the fallback configs in order, all on ITEX.
    The recipe keeps the encoder FP32 (a rule), so the fallback ranks only the decoder's 7 blocks."""
    import inc_transformer_mt as mt

    recipe = Path(tuned_tiny_result.report.recipe)
    rules = "quantization.rules=[{op_type: MatMul, dtype: int8}, {op_name: '^transformer/encode/.*$', dtype: fp32}]"
    result = mt.tune(recipe, [f"outputs.dir={tmp_path / 'inc'}", "tuning.engine=inc", "tuning.fallback=sensitivity",
                              "tuning.max_trials=3", "tuning.sensitivity_sentences=8", rules,
                              "tuning.criterion={type: absolute, max_drop: 0.01}", "data.heldout="],
                     log=lambda s: None)
    r = result.report
    assert not result.passed and r.sensitivity
    assert len(r.sensitivity) == 7 and not any("encode" in s.unit for s in r.sensitivity)
    assert [t.note for t in r.trials] == ["inc autotune, qdq"] * 3
    fp32_counts = [len(t.fp32_ops) for t in r.trials]
    assert fp32_counts[0] == 12 and fp32_counts == sorted(fp32_counts) and len(set(fp32_counts)) == 3
    assert r.trials[1].fp32_units == [r.sensitivity[0].unit]
    # each trial's published INT8 FLOPs share is the FLOPs of its INT8 MatMuls over all MatMul FLOPs
    flops = r.calibration.matmul_flops
    for t in r.trials:
        assert t.int8_flops_share == pytest.approx(1 - sum(flops[mm] for mm in t.fp32_ops) / sum(flops.values()))
    assert r.closest_trial is not None
    assert r.closest_trial.tuning_bleu == pytest.approx(max(t.bleu for t in r.trials), abs=0.005)
