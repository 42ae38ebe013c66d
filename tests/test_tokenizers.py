"""Tokenizers behind one interface: golden tests against the reference implementation of each format, the
tokenizer spec (tokenizer.json) and copying a tokenizer with its files. No TensorFlow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inc_transformer_mt.data.tokenizer import (
    OpenNMTTokenizer,
    SentencePieceTokenizer,
    SubwordTokenizer,
    copy_tokenizer,
    load_tokenizer,
    tokenizer_files,
)
from inc_transformer_mt.errors import UserError

SUBWORD = Path(__file__).parent / "data" / "subword"
SPM = Path(__file__).resolve().parent.parent / "inc_transformer_mt" / "reference" / "spm.model"


# ---------------------------------------------------------------------------------- TF-official subword
GOLDEN = json.loads((SUBWORD / "golden.json").read_text(encoding="utf-8"))["cases"]


@pytest.mark.parametrize("case", GOLDEN, ids=[repr(c["text"])[:30] for c in GOLDEN])
def test_subword_matches_the_tf_model_garden_subtokenizer(case):
    """ids and round trip equal to official.legacy.transformer.utils.tokenizer.Subtokenizer's on fixed strings
    (golden.json, made by tests/data/subword/make_golden.py), escapes of characters outside the alphabet included."""
    tok = SubwordTokenizer(SUBWORD / "vocab.subwords", append_eos=False)
    assert tok.encode(case["text"]) == case["ids"]
    assert tok.decode(case["ids"]) == case["decoded"]


def test_subword_eos_and_padding():
    tok = SubwordTokenizer(SUBWORD / "vocab.subwords")
    ids = tok.encode("A man")
    assert ids[-1] == 1 and tok.eos_id == 1 and tok.pad_id == 0
    assert tok.decode([*ids, 57, 58, 0, 0]) == "A man"  # stops at EOS
    assert tok.decode([0, *ids[:-1]]) == "A man"  # padding dropped


def test_subword_bad_vocabulary_names_file_and_line(tmp_path):
    bad = tmp_path / "v.subwords"
    bad.write_text("'<pad>'\n'<EOS>'\n'a_'\nb_\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"v\.subwords:4: not a subword vocabulary line"):
        SubwordTokenizer(bad)


# ------------------------------------------------------------------------------------------- OpenNMT
def _onmt(tmp_path, options=None, **kw):
    pyonmttok = pytest.importorskip("pyonmttok")
    options = options or {"mode": "none", "sp_model_path": str(SPM)}
    words = ["<blank>", "<s>", "</s>", "▁Ein", "▁Mann", "▁fährt", ".", "▁A", "▁man", "▁is", "▁riding"]
    (tmp_path / "vocab.txt").write_text("".join(w + "\n" for w in words), encoding="utf-8")
    tok = OpenNMTTokenizer(tmp_path / "tokenizer.json", options, tmp_path / "vocab.txt", tmp_path / "vocab.txt",
                           eos_id=2, pad_id=0, skip_ids=(1,), **kw)
    return tok, pyonmttok.Tokenizer(**options), words


def test_opennmt_ids_are_the_vocabulary_lines_of_pyonmttok_tokens(tmp_path):
    tok, ref, words = _onmt(tmp_path)
    text = "A man is riding."
    tokens = ref.tokenize(text)[0]
    assert tok.tokens(text) == tokens
    assert tok.encode(text) == [words.index(t) if t in words else len(words) for t in tokens]
    assert tok.encode("zebra")[0] == len(words)  # unknown -> the one out-of-vocabulary bucket
    assert tok.decode([1, 3, 4, 5, 6, 2, 7, 0]) == ref.detokenize(["▁Ein", "▁Mann", "▁fährt", "."])


def test_opennmt_append_eos(tmp_path):
    tok, _, _ = _onmt(tmp_path, append_eos=True)
    assert tok.encode("A man")[-1] == 2


def test_opennmt_bad_options_name_the_key(tmp_path):
    with pytest.raises(UserError, match="options: not valid OpenNMT Tokenizer options"):
        _onmt(tmp_path, options={"mode": "nonsense"})


# ------------------------------------------------------------------------------------ spec and loading
def _spec(tmp_path, data) -> Path:
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_load_tokenizer_by_file(tmp_path):
    assert isinstance(load_tokenizer(SPM), SentencePieceTokenizer)
    (tmp_path / "vocab.subwords").write_bytes((SUBWORD / "vocab.subwords").read_bytes())
    tok = load_tokenizer(_spec(tmp_path, {"type": "subword", "vocab": "vocab.subwords", "append_eos": False}),
                         eos_id=1, pad_id=0)
    assert isinstance(tok, SubwordTokenizer) and tok.encode(GOLDEN[0]["text"]) == GOLDEN[0]["ids"]


@pytest.mark.parametrize(("data", "message"), [
    ({"type": "bpe"}, "type: expected one of"),
    ({"type": "subword"}, "vocab: required"),
    ({"type": "subword", "vocab": "v", "extra": 1}, "extra: unknown key"),
    ({"type": "opennmt", "options": [], "source_vocab": "s", "target_vocab": "t"}, "options: expected an object"),
    ({"type": "subword", "vocab": "v", "append_eos": "yes"}, "append_eos: expected true or false"),
    ({"type": "subword", "vocab": "v", "skip_ids": ["1"]}, "skip_ids: expected a list of ids"),
    ([], "a tokenizer spec is a JSON object"),
])
def test_bad_spec_names_file_and_key(tmp_path, data, message):
    with pytest.raises(UserError, match=message) as info:
        load_tokenizer(_spec(tmp_path, data))
    assert str(info.value).startswith(str(tmp_path / "tokenizer.json"))


def test_copy_tokenizer_copies_the_files_a_spec_names(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "sp.model").write_bytes(SPM.read_bytes())
    (src / "vocab.txt").write_text("<blank>\n<s>\n</s>\n", encoding="utf-8")
    spec = _spec(src, {"type": "opennmt", "options": {"mode": "none", "sp_model_path": "sp.model"},
                       "source_vocab": "vocab.txt", "target_vocab": "vocab.txt"})
    assert [p.name for p in tokenizer_files(spec)] == ["tokenizer.json", "vocab.txt", "sp.model"]
    out = tmp_path / "out"
    out.mkdir()
    assert copy_tokenizer(spec, out) == "tokenizer.json"
    assert sorted(p.name for p in out.iterdir()) == ["sp.model", "tokenizer.json", "vocab.txt"]
    assert copy_tokenizer(SPM, out) == "spm.model" and (out / "spm.model").read_bytes() == SPM.read_bytes()


def test_copy_tokenizer_refuses_paths_outside_the_spec(tmp_path):
    spec = _spec(tmp_path, {"type": "subword", "vocab": "../elsewhere.subwords"})
    with pytest.raises(UserError, match="must be given relative to it"):
        copy_tokenizer(spec, tmp_path)
