"""Model hyper-parameters and exported-graph metadata (no TensorFlow import)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inc_transformer_mt.data.tokenizer import EOS_ID, PAD_ID, UNK_ID
from inc_transformer_mt.errors import UserError

__all__ = ["EOS_ID", "PAD_ID", "UNK_ID", "GraphMeta", "ModelConfig"]


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the TF-official ("Transformer-LT") style model.

    Shared source/target subword vocabulary with tied input/output embedding, sinusoidal positions,
    pre-LayerNorm residual blocks, multi-head attention without projection biases, ReLU feed-forward,
    and an in-graph beam search whose caches are reordered with ``tf.gather_nd`` at every step.
    """

    vocab_size: int = 8000
    d_model: int = 256
    num_heads: int = 4
    ffn_dim: int = 1024
    num_encoder_layers: int = 3
    num_decoder_layers: int = 3
    dropout: float = 0.1
    attention_dropout: float = 0.1
    relu_dropout: float = 0.1
    label_smoothing: float = 0.1
    beam_size: int = 4
    alpha: float = 0.6
    extra_decode_length: int = 50
    max_source_tokens: int = 200

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise UserError(f"model config: unknown key(s) {', '.join(unknown)}")
        return cls(**data)


@dataclass(frozen=True)
class GraphMeta:
    """What a user needs to run a frozen translation graph: tensor names, limits, tokenizer.

    Stored as ``model.json`` next to a graph. Every field can be overridden on the command line,
    so graphs exported by other tools (INC's Transformer-LT, for example) work without one.
    """

    input_tensor: str = "input_ids:0"
    output_tensor: str = "output_ids:0"
    score_tensor: str | None = "output_scores:0"
    tokenizer: str | None = "spm.model"
    max_source_tokens: int = 200
    eos_id: int = EOS_ID
    pad_id: int = PAD_ID
    model: dict[str, Any] | None = None

    @classmethod
    def load(cls, path: Path) -> GraphMeta:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError(f"{path}: model metadata file not found") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserError(f"{path}: not valid JSON metadata ({exc})") from None
        if not isinstance(data, dict):
            raise UserError(f"{path}: metadata must be a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise UserError(f"{path}: unknown key(s) {', '.join(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
