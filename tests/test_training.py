"""The training script on a tiny synthetic corpus: it trains, checkpoints, resumes, and exports."""

from __future__ import annotations

import gzip
import json
import random

import numpy as np
import pytest

pytestmark = [pytest.mark.tf, pytest.mark.slow]  # 40 s of training: not in the fast tier

WORDS_EN = ["a", "dog", "cat", "man", "woman", "runs", "sits", "on", "the", "grass", "red", "big", "small", "ball"]
WORDS_DE = ["ein", "hund", "katze", "mann", "frau", "rennt", "sitzt", "auf", "dem", "gras", "rot", "groß", "klein", "ball"]


@pytest.fixture()
def synthetic_corpus(tmp_path):
    """A word-for-word 'translation' task in the Multi30k file layout."""
    rng = random.Random(3)
    root = tmp_path / "corpus"
    root.mkdir()
    for split, n in (("train", 300), ("val", 20)):
        en, de = [], []
        for _ in range(n):
            idx = [rng.randrange(len(WORDS_EN)) for _ in range(rng.randint(2, 7))]
            en.append(" ".join(WORDS_EN[i] for i in idx))
            de.append(" ".join(WORDS_DE[i] for i in idx))
        (root / f"{split}.en.gz").write_bytes(gzip.compress(("\n".join(en) + "\n").encode()))
        (root / f"{split}.de.gz").write_bytes(gzip.compress(("\n".join(de) + "\n").encode()))
    return root


def test_train_checkpoints_resumes_and_exports(synthetic_corpus, tmp_path):
    from inc_transformer_mt.model.export import main as export_main
    from inc_transformer_mt.model.train import main as train_main

    work = tmp_path / "train"
    common = ["--workdir", str(work), "--data-dir", str(synthetic_corpus), "--d-model", "16", "--heads", "2",
              "--ffn", "32", "--layers", "1", "--vocab", "40", "--max-tokens", "400", "--warmup", "10",
              "--average", "2"]
    assert train_main(common + ["--max-epochs", "1"]) == 0
    log = json.loads((work / "train_log.json").read_text())
    assert [e["epoch"] for e in log["epochs"]] == [1]
    first_loss = log["epochs"][0]["train_loss"]

    # Second run resumes at epoch 2 (the first is not repeated) and averages epochs 1-2.
    assert train_main(common + ["--max-epochs", "2"]) == 0
    log = json.loads((work / "train_log.json").read_text())
    assert [e["epoch"] for e in log["epochs"]] == [1, 2]
    assert log["epochs"][1]["step"] == 2 * log["epochs"][0]["step"]
    assert log["epochs"][1]["train_loss"] < first_loss
    assert log["final"]["averaged"] == ["epoch_001.npz", "epoch_002.npz"]
    final = np.load(work / "final.npz")
    e1, e2 = np.load(work / "epoch_001.npz"), np.load(work / "epoch_002.npz")
    np.testing.assert_allclose(final["embedding"], (e1["embedding"] + e2["embedding"]) / 2, rtol=1e-6)

    out = tmp_path / "model"
    assert export_main(["--workdir", str(work), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["model.json", "model.pb.gz", "spm.model"]
    meta = json.loads((out / "model.json").read_text())
    assert meta["model"]["d_model"] == 16 and meta["model"]["fp16_rounded_weights"] is True
