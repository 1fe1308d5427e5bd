"""Model adapters of the common test conditions (CTC).

Each adapter reads one model's original tensors, runs the network on fixed
real inputs and reports the fidelity of a reconstructed copy of its tensors
(see :class:`~nntm.ce.models.base.ModelAdapter`)::

    from nntm.ce.models import get_adapter

    adapter = get_adapter("minilm")
    ok, why = adapter.available()
    tensors = adapter.load()                   # name -> np.ndarray, original dtypes
    metrics = adapter.evaluate(decoded)        # {"cos_db": ..., "cos_mean": ..., ...}
    metrics[adapter.primary_metric]            # the value a BD-rate uses

Importing this package needs numpy only; torch and the model packages are
imported when a model is loaded or evaluated.
"""

from __future__ import annotations

from nntm.ce.models.base import ModelAdapter
from nntm.ce.models.ddddocr import DdddOcrAdapter, DdddOcrDetAdapter
from nntm.ce.models.digits import DigitsAdapter
from nntm.ce.models.minilm import MiniLMAdapter
from nntm.ce.models.mobilenetv2 import MobileNetV2Adapter
from nntm.ce.models.mtcnn import MTCNNAdapter
from nntm.ce.models.smollm2 import SmolLM2Adapter
from nntm.errors import ConfigError

__all__ = [
    "ADAPTERS",
    "DdddOcrAdapter",
    "DdddOcrDetAdapter",
    "DigitsAdapter",
    "MTCNNAdapter",
    "MiniLMAdapter",
    "MobileNetV2Adapter",
    "ModelAdapter",
    "SmolLM2Adapter",
    "get_adapter",
]

ADAPTERS: dict[str, type[ModelAdapter]] = {
    cls.name: cls for cls in (DigitsAdapter, MiniLMAdapter, MobileNetV2Adapter, MTCNNAdapter)
}
ADAPTERS[SmolLM2Adapter.name] = SmolLM2Adapter  # the language model (docs/ctc.md, SmolLM2)
ADAPTERS.update({cls.name: cls for cls in (DdddOcrAdapter, DdddOcrDetAdapter)})  # ONNX models
"""Adapter classes by model name, in CTC order."""


def get_adapter(name: str) -> ModelAdapter:
    """A new adapter for the model called ``name`` (a key of :data:`ADAPTERS`)."""
    try:
        cls = ADAPTERS[name]
    except KeyError:
        raise ConfigError(
            f"unknown CE model {name!r}; known models: {', '.join(ADAPTERS)}"
        ) from None
    return cls()
