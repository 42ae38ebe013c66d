"""Shared fixtures: a tiny Transformer built in code with a fixed seed, exported like the reference model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("ITEX_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parent.parent
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
