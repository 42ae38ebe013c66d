"""The BLEU metric is sacrebleu's, signature included (no TensorFlow)."""

from __future__ import annotations

import pytest
import sacrebleu

from inc_transformer_mt.metrics.bleu import score

pytestmark = pytest.mark.unit

HYPS = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee.", "Eine Frau liest ein Buch im Park."]
REFS = ["Ein Mann fährt ein Fahrrad.", "Zwei Hunde spielen im Schnee.", "Eine Frau liest im Park ein Buch."]


def test_equals_sacrebleu_corpus_bleu():
    ours = score(HYPS, REFS)
    theirs = sacrebleu.corpus_bleu(HYPS, [REFS])
    assert ours.score == theirs.score
    assert list(ours.precisions) == list(theirs.precisions)
    assert ours.brevity_penalty == theirs.bp
    assert (ours.sys_len, ours.ref_len) == (theirs.sys_len, theirs.ref_len)


def test_signature_is_the_default_detokenized_cased_13a_one():
    sig = score(HYPS, REFS).signature
    assert sig == f"nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:{sacrebleu.__version__}"


def test_golden_values():
    assert score(REFS, REFS).score == pytest.approx(100.0)
    assert score(["völlig anders"], ["Ein Mann fährt Fahrrad."]).score == pytest.approx(0.0)
    # Hand-checked with sacrebleu 2.6.0 on these fixed strings.
    assert round(score(HYPS, REFS).score, 2) == round(sacrebleu.corpus_bleu(HYPS, [REFS]).score, 2)


def test_case_matters_and_lowercase_option():
    upper = [h.upper() for h in HYPS]
    assert score(upper, REFS).score < 5
    assert score(upper, REFS, lowercase=True).score == pytest.approx(score(HYPS, REFS).score)
    assert "case:lc" in score(upper, REFS, lowercase=True).signature


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError):
        score(["a"], ["a", "b"])
