"""Shared fixtures: a tiny Transformer built in code with a fixed seed, exported like the reference model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("ITEX_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parent.parent

#: `python -m inc_transformer_mt.cli.main` with Ctrl-C's default action, as a terminal's foreground job has it: a
#: suite started in the background (``make test &``) passes SIGINT on ignored, and Python then never raises
#: KeyboardInterrupt. Append the command's arguments.
CLI_WITH_CTRL_C = ["-c", ("import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
                          "runpy.run_module('inc_transformer_mt.cli.main', run_name='__main__', alter_sys=True)")]
REFERENCE = ROOT / "inc_transformer_mt" / "reference"
SPM = REFERENCE / "spm.model"


def tiny_config():
    from inc_transformer_mt.model.config import ModelConfig

    return ModelConfig(vocab_size=8000, d_model=32, num_heads=2, ffn_dim=64, num_encoder_layers=2,
                       num_decoder_layers=2, extra_decode_length=10, max_source_tokens=40)


def tiny_params():
    """Seeded random weights with LayerNorm gains/biases and biases spread out, so that a wrongly wired
    gamma, beta or bias changes the outputs (at their initial values 1 and 0 it would not)."""
    import numpy as np

    from inc_transformer_mt.model.transformer import init_params

    params = init_params(tiny_config(), seed=7)
    rng = np.random.default_rng(11)
    params["embedding"] = params["embedding"] * 6.0
    for name in params:
        if name.endswith("gamma"):
            params[name] = rng.uniform(0.5, 3.0, params[name].shape).astype(np.float32)
        elif name.endswith(("beta", "bias")):
            params[name] = rng.normal(0.0, 0.5, params[name].shape).astype(np.float32)
    return params


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """model.pb.gz + model.json + spm.model of the tiny model (seconds to build)."""
    from inc_transformer_mt.model.export import write_model_dir

    out = tmp_path_factory.mktemp("tiny_model")
    write_model_dir(tiny_params(), tiny_config(), SPM, out, fp16_weights=False, compress=True)
    return out


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not (REFERENCE / "model.json").is_file():
        pytest.fail(f"the reference model is missing from {REFERENCE}")
    return REFERENCE


def run_graph(graph_def, batch):
    """(output ids, scores) of a frozen graph for an int32 batch."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as sess:
        return sess.run(["output_ids:0", "output_scores:0"], {"input_ids:0": batch})


def run_graph_batches(graph_def, batches):
    """[(output ids, scores)] of a frozen graph for several int32 batches, in one session."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as sess:
        return [sess.run(["output_ids:0", "output_scores:0"], {"input_ids:0": b}) for b in batches]


def eager_sequence_score(params, cfg, src_row, out_row):
    """Log-probability of out_row given src_row under the teacher-forced (training-path) model,
    length-normalised as the beam search does when the hypothesis ended with EOS."""
    import tensorflow as tf

    from inc_transformer_mt.model import transformer as T
    from inc_transformer_mt.model.config import EOS_ID

    out = list(out_row)
    ended = EOS_ID in out
    if ended:
        out = out[: out.index(EOS_ID) + 1]
    p = {k: tf.constant(v) for k, v in params.items()}
    src = tf.constant([src_row], tf.int32)
    tgt = tf.constant([out], tf.int32)
    memory, bias = T.encode(p, src, cfg, training=False)
    logits = T.decode_train(p, memory, bias, tgt, cfg, training=False)
    logp = tf.nn.log_softmax(logits)[0].numpy()
    total = float(sum(logp[i, t] for i, t in enumerate(out)))
    if ended:
        total /= ((5.0 + len(out)) / 6.0) ** cfg.alpha
    return total


@pytest.fixture(scope="session")
def tuned_tiny_result(tmp_path_factory, tiny_model_dir):
    """The tiny model tuned through the Python API (ITEX, min/max, one trial); references = its own FP32
    output, so BLEU moves visibly when a test degrades a copy. Used by the API, regress and reliability tests.

    Under xdist it is built once per run, by whichever worker asks first (the others wait on a lock and read
    it); tests only ever change copies of it."""
    import fcntl

    from inc_transformer_mt.report.tune_report import load_report
    from inc_transformer_mt.tuning.pipeline import TuneResult

    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return _tune_tiny(tmp_path_factory.mktemp("tuned_tiny"), tiny_model_dir)
    shared = tmp_path_factory.getbasetemp().parent  # this run's directory, common to its workers
    with open(shared / "tuned_tiny.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        work = shared / "tuned_tiny"
        if (work / "done").is_file():
            os.environ["INC_MT_CACHE"] = str(work / "cache")
            out = Path((work / "done").read_text())
            return TuneResult(report=load_report(out / "report.json"), out_dir=out)
        if work.exists():  # a worker that died half-way
            import shutil

            shutil.rmtree(work)
        work.mkdir()
        result = _tune_tiny(work, tiny_model_dir)
        (work / "done").write_text(str(result.out_dir))
        return result


def _tune_tiny(work: Path, tiny_model_dir: Path):
    import inc_transformer_mt as mt
    from inc_transformer_mt.data.corpus import multi30k_split, read_lines

    src = read_lines(multi30k_split("val", "en"))[:56]
    hyps = [h if h.strip() else "." for h in mt.translate(src, model=mt.ModelOptions(tiny_model_dir))]
    (work / "src.en").write_text("".join(s + "\n" for s in src))
    (work / "ref.de").write_text("".join(h + "\n" for h in hyps))
    (work / "recipe.yaml").write_text(f"""
model: {{path: {tiny_model_dir}}}
data:
  calibration: {{source: src.en, reference: ref.de, start: 48, size: 8}}
  tuning: {{source: src.en, reference: ref.de, start: 0, size: 24}}
  heldout: {{source: src.en, reference: ref.de, start: 24, size: 24}}
calibration: {{method: minmax, batch_size: 4}}
tuning: {{fallback: none, max_trials: 1, criterion: {{type: relative, max_drop: 0.99}}}}
backend: itex
outputs: {{dir: tuned, overwrite: never}}
""")
    os.environ["INC_MT_CACHE"] = str(work / "cache")
    result = mt.tune(work / "recipe.yaml", log=lambda s: None)
    assert result.passed, result.report.stop_reason
    return result
