"""inc_transformer_mt: INT8 Transformer translation models with Intel Neural Compressor."""

__version__ = "0.1.0"
__all__ = ["__version__"]
