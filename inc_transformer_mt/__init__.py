"""inc_transformer_mt: INT8 Transformer translation models with Intel Neural Compressor.

The public API (:mod:`inc_transformer_mt.api`) is exported here and loaded on first use, so importing the
package stays instant and imports no TensorFlow.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["DataOptions", "EvaluationResult", "ModelOptions", "RunOptions", "__version__", "benchmark", "evaluate",
           "optimized_model", "plan", "regress", "translate", "tune", "validate"]
_API = frozenset(__all__) - {"__version__"}


def __getattr__(name: str):
    if name in _API:
        from inc_transformer_mt import api

        return getattr(api, name)
    raise AttributeError(f"module 'inc_transformer_mt' has no attribute {name!r}")
