"""Tokenizers behind one small interface: text <-> the token ids a translation graph reads and writes.

Three formats, chosen by the tokenizer file a model names (``model.json`` ``tokenizer`` or ``--tokenizer``):

- a SentencePiece model (``*.model``): the project's own models (pad 0, eos 1, unk 2, no bos, EOS appended);
- a tokenizer spec, ``tokenizer.json`` ``{"type": ...}``, for the other two:
  - ``"subword"``: the TensorFlow-official Transformer's subword vocabulary (``Subtokenizer`` of the TF model garden,
    INC's Transformer-LT): a file of quoted subtokens, ``<pad>`` 0 and ``<EOS>`` 1 first;
  - ``"opennmt"``: the OpenNMT Tokenizer (pyonmttok, with its options, e.g. a SentencePiece model) and the token
    vocabularies of an OpenNMT-tf model (one token a line, in id order; an unknown token gets the id after the last).

Spec paths are relative to the spec file. :func:`copy_tokenizer` copies a tokenizer with the files it names.
"""

from __future__ import annotations

import json
import re
import sys
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from inc_transformer_mt.atomic import atomic_write
from inc_transformer_mt.errors import UserError

__all__ = [
    "EOS_ID",
    "PAD_ID",
    "TOKENIZER_TYPES",
    "UNK_ID",
    "OpenNMTTokenizer",
    "SentencePieceTokenizer",
    "SubwordTokenizer",
    "Tokenizer",
    "TokenizerLike",
    "copy_tokenizer",
    "load_tokenizer",
    "read_spec",
    "tokenizer_files",
    "train_tokenizer",
]

#: the project's id conventions (SentencePiece trained with these); a model.json may name others
PAD_ID = 0
EOS_ID = 1
UNK_ID = 2

TOKENIZER_TYPES = ("sentencepiece", "subword", "opennmt")
SPEC_NAME = "tokenizer.json"


class TokenizerLike(Protocol):
    """What a translator needs from a tokenizer."""

    eos_id: int
    pad_id: int
    path: Path

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]: ...

    def decode(self, ids: Iterable[int]) -> str: ...


def _until_eos(ids: Iterable[int], eos_id: int, skip: set[int]) -> list[int]:
    """The ids of one output row up to (not including) the first EOS, without ``skip`` ids (padding, BOS)."""
    out: list[int] = []
    for i in ids:
        i = int(i)
        if i == eos_id:
            break
        if i not in skip:
            out.append(i)
    return out


# ----------------------------------------------------------------------------------------- SentencePiece
class SentencePieceTokenizer:
    """Thin wrapper over ``sentencepiece.SentencePieceProcessor``.

    Args:
        path: the SentencePiece model.
        eos_id / pad_id: the graph's end-of-sentence and padding ids (``model.json``'s ``eos_id``/``pad_id``).
        append_eos: add EOS after each source sentence (the project's models are trained so).
    """

    def __init__(self, path: str | Path, *, eos_id: int = EOS_ID, pad_id: int = PAD_ID, append_eos: bool = True):
        import sentencepiece as spm

        self.eos_id, self.pad_id, self.append_eos = eos_id, pad_id, append_eos
        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"{self.path}: tokenizer model not found")
        self._sp = spm.SentencePieceProcessor()
        try:
            self._sp.Load(str(self.path))
        except (OSError, RuntimeError) as exc:
            raise UserError(f"{self.path}: not a SentencePiece model ({exc})") from None

    @property
    def vocab_size(self) -> int:
        return self._sp.GetPieceSize()

    def encode(self, text: str) -> list[int]:
        """Subword ids of one sentence, followed by EOS."""
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        tail = [self.eos_id] if self.append_eos else []
        return [ids + tail for ids in self._sp.EncodeAsIds(list(texts))]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of one output row: stops at the first EOS, drops padding."""
        return self._sp.DecodeIds(_until_eos(ids, self.eos_id, {self.pad_id}))


#: the project's name for its SentencePiece tokenizer
Tokenizer = SentencePieceTokenizer


# ------------------------------------------------------------------------------- TF-official subword vocab
@lru_cache(maxsize=1)
def _alphanumeric() -> frozenset[str]:
    """Every letter and number character (Unicode categories L* and N*): the subword tokenizer's word characters."""
    return frozenset(ch for ch in map(chr, range(sys.maxunicode))
                     if unicodedata.category(ch)[0] in "LN")


_UNESCAPE = re.compile(r"\\u|\\\\|\\([0-9]+);")


class SubwordTokenizer:
    """The TensorFlow-official Transformer's subword format (the TF model garden's ``Subtokenizer``).

    Text splits into runs of word characters and runs of other characters (a single space between two words is
    dropped); each run is escaped (``\\`` -> ``\\\\``, ``_`` -> ``\\u``, characters outside the vocabulary's
    alphabet -> ``\\NNN;``), ends with ``_``, and is cut greedily into the longest subtokens of the vocabulary.
    Decoding joins the subtokens, splits at ``_``, unescapes, and puts a space between two word runs.
    """

    RESERVED = ("<pad>", "<EOS>")

    def __init__(self, path: str | Path, *, eos_id: int = 1, pad_id: int = 0, append_eos: bool = True):
        self.path = Path(path)
        self.eos_id, self.pad_id, self.append_eos = eos_id, pad_id, append_eos
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise UserError(f"{self.path}: subword vocabulary not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"{self.path}: cannot read subword vocabulary ({exc})") from None
        pieces: list[str] = []
        for number, line in enumerate(lines, start=1):
            line = line.strip()
            if len(line) < 2 or line[0] != line[-1] or line[0] not in "'\"":
                raise UserError(f"{self.path}:{number}: not a subword vocabulary line (a quoted subtoken): {line!r}")
            piece = line[1:-1]
            if piece not in self.RESERVED:
                pieces.append(piece)
        if not pieces:
            raise UserError(f"{self.path}: subword vocabulary has no subtokens")
        self.pieces = [*self.RESERVED, *pieces]
        self.ids = {p: i for i, p in enumerate(self.pieces)}
        self.alphabet = {c for p in self.pieces for c in p} | set("\\_u;0123456789")
        self.longest = max(map(len, self.pieces))
        self._cache: dict[str, list[int]] = {}

    @property
    def vocab_size(self) -> int:
        return len(self.pieces)

    def _runs(self, text: str) -> list[str]:
        if not text:
            return []
        word = _alphanumeric()
        runs, start = [], 0
        for pos in range(1, len(text)):
            if (text[pos] in word) != (text[pos - 1] in word):
                run = text[start:pos]
                if run != " " or start == 0:
                    runs.append(run)
                start = pos
        runs.append(text[start:])
        return runs

    def _escape(self, run: str) -> str:
        run = run.replace("\\", "\\\\").replace("_", "\\u")
        return "".join(c if c in self.alphabet and c != "\n" else f"\\{ord(c)};" for c in run) + "_"

    def _run_ids(self, run: str) -> list[int]:
        cached = self._cache.get(run)
        if cached is not None:
            return cached
        escaped, out, start = self._escape(run), [], 0
        while start < len(escaped):
            for end in range(min(len(escaped), start + self.longest), start, -1):
                piece_id = self.ids.get(escaped[start:end])
                if piece_id is not None:
                    out.append(piece_id)
                    start = end
                    break
            else:
                raise UserError(f"{self.path}: cannot split {run!r} into subtokens (the vocabulary lacks a "
                                f"character of {escaped[start:]!r})")
        if len(self._cache) < 1 << 16:
            self._cache[run] = out
        return out

    def encode(self, text: str) -> list[int]:
        ids = [i for run in self._runs(text) for i in self._run_ids(run)]
        return ids + [self.eos_id] if self.append_eos else ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids: Iterable[int]) -> str:
        kept = _until_eos(ids, self.eos_id, {self.pad_id})
        joined = "".join(self.pieces[i] for i in kept if i < len(self.pieces))

        def unescape(m: re.Match[str]) -> str:
            if m.group(1) is None:
                return "_" if m.group(0) == "\\u" else "\\"
            try:
                return chr(int(m.group(1)))
            except (ValueError, OverflowError):
                return "\u3013"

        runs = [_UNESCAPE.sub(unescape, t) for t in joined.split("_") if t]
        word = _alphanumeric()
        out: list[str] = []
        for k, run in enumerate(runs):
            if k and runs[k - 1][0] in word and run[0] in word:
                out.append(" ")
            out.append(run)
        return "".join(out)


# ----------------------------------------------------------------------------------------------- OpenNMT
def _read_vocab(path: Path, what: str) -> list[str]:
    try:
        tokens = path.read_text(encoding="utf-8").split("\n")
    except FileNotFoundError:
        raise UserError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read {what} ({exc})") from None
    if tokens and tokens[-1] == "":
        tokens.pop()
    if not tokens:
        raise UserError(f"{path}: {what} is empty")
    return tokens


class OpenNMTTokenizer:
    """The OpenNMT Tokenizer (``pyonmttok.Tokenizer(**options)``) with an OpenNMT-tf model's vocabularies.

    Source tokens map to their line number in ``source_vocab`` (an unknown token to the id after the last line:
    OpenNMT-tf's one out-of-vocabulary bucket); output ids map back through ``target_vocab`` and are detokenized.
    """

    def __init__(self, path: Path, options: dict[str, Any], source_vocab: Path, target_vocab: Path, *,
                 eos_id: int, pad_id: int, append_eos: bool = False, skip_ids: Sequence[int] = ()):
        try:
            import pyonmttok
        except ImportError:
            raise UserError(f"{path}: an OpenNMT tokenizer needs the pyonmttok package (pip install pyonmttok)") \
                from None
        self.path = path
        self.eos_id, self.pad_id, self.append_eos = eos_id, pad_id, append_eos
        self.skip = {pad_id, *skip_ids}
        try:
            self._tok = pyonmttok.Tokenizer(**options)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise UserError(f"{path}: options: not valid OpenNMT Tokenizer options ({exc})") from None
        self.source = {t: i for i, t in reversed(list(enumerate(_read_vocab(source_vocab, "source vocabulary"))))}
        self.unk_id = len(self.source)
        self.target = _read_vocab(target_vocab, "target vocabulary")

    @property
    def vocab_size(self) -> int:
        return len(self.target)

    def tokens(self, text: str) -> list[str]:
        return self._tok.tokenize(text)[0]

    def encode(self, text: str) -> list[int]:
        ids = [self.source.get(t, self.unk_id) for t in self.tokens(text)]
        return ids + [self.eos_id] if self.append_eos else ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids: Iterable[int]) -> str:
        kept = _until_eos(ids, self.eos_id, self.skip)
        return self._tok.detokenize([self.target[i] if i < len(self.target) else "<unk>" for i in kept])


# ---------------------------------------------------------------------------------------- spec and loading
@dataclass(frozen=True)
class TokenizerSpec:
    """A ``tokenizer.json``: the type and, relative to it, the files it uses."""

    path: Path
    type: str
    vocab: str | None = None
    options: dict[str, Any] | None = None
    source_vocab: str | None = None
    target_vocab: str | None = None
    append_eos: bool | None = None
    skip_ids: tuple[int, ...] = ()

    def file(self, name: str) -> Path:
        return self.path.parent / name

    def files(self) -> list[str]:
        """Every file the spec names, relative to it (the options' ``*_path`` values included)."""
        names = [n for n in (self.vocab, self.source_vocab, self.target_vocab) if n]
        names += [v for k, v in (self.options or {}).items() if k.endswith("_path") and isinstance(v, str) and v]
        return list(dict.fromkeys(names))


_SPEC_KEYS = {"type", "vocab", "options", "source_vocab", "target_vocab", "append_eos", "skip_ids"}


def read_spec(path: Path) -> TokenizerSpec:
    """Read and check ``tokenizer.json``; errors name the file and the key."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: tokenizer spec not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a valid tokenizer spec ({exc})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: a tokenizer spec is a JSON object")
    unknown = sorted(set(data) - _SPEC_KEYS)
    if unknown:
        raise UserError(f"{path}: {unknown[0]}: unknown key (known: {', '.join(sorted(_SPEC_KEYS))})")
    kind = data.get("type")
    if kind not in TOKENIZER_TYPES:
        raise UserError(f"{path}: type: expected one of {', '.join(TOKENIZER_TYPES)}, got {kind!r}")
    need = {"sentencepiece": ("vocab",), "subword": ("vocab",), "opennmt": ("options", "source_vocab", "target_vocab")}
    for key in need[kind]:
        if data.get(key) in (None, ""):
            raise UserError(f"{path}: {key}: required for a {kind} tokenizer")
    for key in ("vocab", "source_vocab", "target_vocab"):
        if key in data and not isinstance(data[key], str):
            raise UserError(f"{path}: {key}: expected a file name")
    if "options" in data and not isinstance(data["options"], dict):
        raise UserError(f"{path}: options: expected an object")
    if "append_eos" in data and not isinstance(data["append_eos"], bool):
        raise UserError(f"{path}: append_eos: expected true or false")
    skip = data.get("skip_ids", [])
    if not isinstance(skip, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in skip):
        raise UserError(f"{path}: skip_ids: expected a list of ids")
    return TokenizerSpec(path=path, type=kind, vocab=data.get("vocab"), options=data.get("options"),
                         source_vocab=data.get("source_vocab"), target_vocab=data.get("target_vocab"),
                         append_eos=data.get("append_eos"), skip_ids=tuple(skip))


def _is_spec(path: Path) -> bool:
    return path.suffix == ".json"


def load_tokenizer(path: str | Path, *, eos_id: int = EOS_ID, pad_id: int = PAD_ID) -> TokenizerLike:
    """The tokenizer a file describes: a SentencePiece model, or a ``tokenizer.json`` spec."""
    path = Path(path)
    if not _is_spec(path):
        return SentencePieceTokenizer(path, eos_id=eos_id, pad_id=pad_id)
    spec = read_spec(path)
    append = spec.append_eos
    if spec.type == "sentencepiece":
        return SentencePieceTokenizer(spec.file(spec.vocab or ""), eos_id=eos_id, pad_id=pad_id,
                                      append_eos=True if append is None else append)
    if spec.type == "subword":
        return SubwordTokenizer(spec.file(spec.vocab or ""), eos_id=eos_id, pad_id=pad_id,
                                append_eos=True if append is None else append)
    options = {k: str(spec.file(v)) if k.endswith("_path") and isinstance(v, str) and v else v
               for k, v in (spec.options or {}).items()}
    return OpenNMTTokenizer(path, options, spec.file(spec.source_vocab or ""), spec.file(spec.target_vocab or ""),
                            eos_id=eos_id, pad_id=pad_id, append_eos=bool(append), skip_ids=spec.skip_ids)


def tokenizer_files(path: str | Path) -> list[Path]:
    """The tokenizer file and every file it names (what a copy of the model needs)."""
    path = Path(path)
    if not _is_spec(path):
        return [path]
    spec = read_spec(path)
    return [path, *(spec.file(n) for n in spec.files())]


def copy_tokenizer(path: str | Path, out_dir: Path) -> str:
    """Copy a tokenizer (with the files it names) into ``out_dir``; returns the name for model.json.

    A SentencePiece model is written as ``spm.model``; a spec keeps its file names (which must stay inside the
    spec's directory).
    """
    path = Path(path)
    if not _is_spec(path):
        atomic_write(out_dir / "spm.model", path.read_bytes())
        return "spm.model"
    spec = read_spec(path)
    for name in spec.files():
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise UserError(f"{path}: {name}: a spec's files must be given relative to it, inside its directory")
        (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
        try:
            atomic_write(out_dir / name, spec.file(name).read_bytes())
        except FileNotFoundError:
            raise UserError(f"{path}: {name}: file not found") from None
    atomic_write(out_dir / SPEC_NAME, path.read_bytes())
    return SPEC_NAME


def train_tokenizer(texts_files: Sequence[Path], prefix: Path, vocab_size: int) -> Path:
    """Train a shared unigram SentencePiece model on the given text files; returns ``prefix.model``."""
    import sentencepiece as spm

    spm.SentencePieceTrainer.Train(
        input=",".join(str(p) for p in texts_files),
        model_prefix=str(prefix),
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=1.0,
        pad_id=PAD_ID,
        eos_id=EOS_ID,
        unk_id=UNK_ID,
        bos_id=-1,
        num_threads=1,
        input_sentence_size=0,
        shuffle_input_sentence=False,
        minloglevel=2,
    )
    return Path(f"{prefix}.model")
