"""Model hyper-parameters and exported-graph metadata (no TensorFlow import)."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, ValidationError

from inc_transformer_mt.data.tokenizer import EOS_ID, PAD_ID, UNK_ID
from inc_transformer_mt.defaults import BACKENDS
from inc_transformer_mt.errors import UserError
from inc_transformer_mt.recipe.loader import first_error
from inc_transformer_mt.recipe.schema import RuntimeSpec

__all__ = ["ATTENTIONS", "EOS_ID", "L1_NORM_SCALE", "LAYER_NORMS", "PAD_ID", "UNK_ID", "GraphMeta", "MetaFile", "ModelConfig"]

ATTENTIONS = ("softmax", "polynomial")
LAYER_NORMS = ("l2", "l1")
#: sqrt(pi/2): mean |x - mu| times this is the standard deviation of a normal distribution (Wu et al. 2018); the
#: L1 LayerNorm's factor, in the model (model/transformer.py) and in its integer form (passes/integer_ops.py)
L1_NORM_SCALE = math.sqrt(math.pi / 2)


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
    #: "softmax", or "polynomial": Lin et al. (2020)'s Softmax-free attention, weights proportional to
    #: ReLU(score + b)^n + |delta| with a learned b and delta per attention (n = ``poly_degree``)
    attention: str = "softmax"
    #: "l2" (the usual LayerNorm), or "l1": Lin et al. (2020)'s L1 LayerNorm, the standard deviation replaced by
    #: sqrt(pi/2) times the mean absolute deviation (no square root)
    layer_norm: str = "l2"
    poly_degree: int = 2

    def __post_init__(self) -> None:
        if self.attention not in ATTENTIONS:
            raise UserError(f"model config: attention {self.attention!r} is not one of {', '.join(ATTENTIONS)}")
        if self.layer_norm not in LAYER_NORMS:
            raise UserError(f"model config: layer_norm {self.layer_norm!r} is not one of {', '.join(LAYER_NORMS)}")
        if not 1 <= self.poly_degree <= 3:
            raise UserError(f"model config: poly_degree {self.poly_degree} is not 1, 2 or 3")

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
        """Read and check ``model.json`` (:class:`MetaFile`); errors name the file and the key."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError(f"{path}: model metadata file not found") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserError(f"{path}: not valid JSON metadata ({exc})") from None
        except OSError as exc:
            raise UserError(f"{path}: cannot read model metadata ({exc.strerror})") from None
        if not isinstance(data, dict):
            raise UserError(f"{path}: model metadata must be a JSON object, not {type(data).__name__}")
        try:
            checked = MetaFile.model_validate(data)
        except ValidationError as exc:
            raise UserError(f"{path}: {first_error(exc)}") from None
        fields = checked.model_dump(exclude_unset=True, exclude={"model"})
        model = checked.model.model_dump(exclude_unset=True) if checked.model is not None else None
        return cls(**fields, model=model)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------------------ model.json
class _Checked(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class ImportSection(_Checked):
    """model.json ``model.imported_from``: the SavedModel ``inc-mt import`` made this graph from."""

    saved_model: StrictStr
    signature: StrictStr
    cut: list[StrictStr] = []
    tensorflow: StrictStr | None = None


class ModelSection(_Checked):
    """model.json ``model``: the architecture (:class:`ModelConfig`, every key optional) and how the graph was
    made (its file, quantization, passes and the runtime a tuned model is meant to run with)."""

    vocab_size: int | None = Field(None, gt=0)
    d_model: int | None = Field(None, gt=0)
    num_heads: int | None = Field(None, gt=0)
    ffn_dim: int | None = Field(None, gt=0)
    num_encoder_layers: int | None = Field(None, ge=0)
    num_decoder_layers: int | None = Field(None, ge=0)
    dropout: float | None = Field(None, ge=0, lt=1)
    attention_dropout: float | None = Field(None, ge=0, lt=1)
    relu_dropout: float | None = Field(None, ge=0, lt=1)
    label_smoothing: float | None = Field(None, ge=0, lt=1)
    beam_size: int | None = Field(None, gt=0)
    alpha: float | None = Field(None, ge=0)
    extra_decode_length: int | None = Field(None, ge=0)
    max_source_tokens: int | None = Field(None, gt=0)
    attention: Literal[ATTENTIONS] | None = None  # type: ignore[valid-type]
    layer_norm: Literal[LAYER_NORMS] | None = None  # type: ignore[valid-type]
    poly_degree: int | None = Field(None, ge=1, le=3)
    graph: StrictStr | None = Field(None, min_length=1, description="graph file name, beside model.json")
    fp16_rounded_weights: StrictBool | None = None
    quantized: Literal["int8"] | None = None
    backend: Literal[BACKENDS] | None = None  # type: ignore[valid-type]
    source_sha256: StrictStr | None = None
    passes: list[StrictStr] | None = None
    runtime: RuntimeSpec | None = None
    imported_from: ImportSection | None = None
    plugin_optimizers: StrictBool | None = Field(None, description="false: run sessions without the graph "
                                                 "optimizers of TensorFlow plug-ins (ITEX), which change this "
                                                 "graph's translations")


class MetaFile(_Checked):
    """The schema of ``model.json`` (every key optional; defaults as :class:`GraphMeta`)."""

    input_tensor: StrictStr = Field(GraphMeta.input_tensor, min_length=1)
    output_tensor: StrictStr = Field(GraphMeta.output_tensor, min_length=1)
    score_tensor: StrictStr | None = GraphMeta.score_tensor
    tokenizer: StrictStr | None = GraphMeta.tokenizer
    max_source_tokens: int = Field(GraphMeta.max_source_tokens, gt=0)
    eos_id: int = Field(GraphMeta.eos_id, ge=0)
    pad_id: int = Field(GraphMeta.pad_id, ge=0)
    model: ModelSection | None = None

