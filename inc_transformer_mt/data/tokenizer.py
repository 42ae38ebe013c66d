"""SentencePiece subword tokenizer shared by source and target (pad 0, eos 1, unk 2, no bos)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from inc_transformer_mt.errors import UserError

__all__ = ["EOS_ID", "PAD_ID", "UNK_ID", "Tokenizer", "train_tokenizer"]

#: the project's id conventions (SentencePiece trained with these); a model.json may name others
PAD_ID = 0
EOS_ID = 1
UNK_ID = 2


class Tokenizer:
    """Thin wrapper over ``sentencepiece.SentencePieceProcessor``.

    Args:
        path: the SentencePiece model.
        eos_id / pad_id: the graph's end-of-sentence and padding ids (``model.json``'s ``eos_id``/``pad_id``).
    """

    def __init__(self, path: str | Path, *, eos_id: int = EOS_ID, pad_id: int = PAD_ID):
        import sentencepiece as spm

        self.eos_id, self.pad_id = eos_id, pad_id
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
        return list(self._sp.EncodeAsIds(text)) + [self.eos_id]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [ids + [self.eos_id] for ids in self._sp.EncodeAsIds(list(texts))]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of one output row: stops at the first EOS, drops padding."""
        out: list[int] = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i != self.pad_id:
                out.append(i)
        return self._sp.DecodeIds(out)


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
