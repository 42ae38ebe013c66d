"""SentencePiece subword tokenizer shared by source and target (pad 0, eos 1, unk 2, no bos)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from inc_transformer_mt.errors import UserError
from inc_transformer_mt.model.config import EOS_ID, PAD_ID, UNK_ID

__all__ = ["Tokenizer", "train_tokenizer"]


class Tokenizer:
    """Thin wrapper over ``sentencepiece.SentencePieceProcessor`` with the project's id conventions."""

    def __init__(self, path: str | Path):
        import sentencepiece as spm

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
        return list(self._sp.EncodeAsIds(text)) + [EOS_ID]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [ids + [EOS_ID] for ids in self._sp.EncodeAsIds(list(texts))]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of one output row: stops at the first EOS, drops padding."""
        out: list[int] = []
        for i in ids:
            i = int(i)
            if i == EOS_ID:
                break
            if i != PAD_ID:
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
