"""The NumPy dtypes of the codec, with bfloat16 loaded only where one is met.

NumPy has no bfloat16; ``ml_dtypes`` provides it, but importing ``ml_dtypes`` costs about
half a second, which every app paid at start-up even for a model without a bfloat16 tensor.
Code that needs a dtype by name asks :func:`by_name`; only ``"bfloat16"`` imports
``ml_dtypes``, on first use.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

__all__ = ["BF16_MAX", "bfloat16", "by_name"]

#: the largest finite bfloat16 value, (2 - 2**-7) * 2**127 (8 significand bits, 8 exponent bits)
BF16_MAX = (2.0 - 2.0**-7) * 2.0**127


@functools.cache
def bfloat16() -> np.dtype[Any]:
    """``ml_dtypes.bfloat16`` as a NumPy dtype (imports ``ml_dtypes`` on the first call)."""
    import ml_dtypes

    return np.dtype(ml_dtypes.bfloat16)


def by_name(name: str) -> np.dtype[Any]:
    """The dtype of a NumPy dtype name, ``"bfloat16"`` included."""
    return bfloat16() if name == "bfloat16" else np.dtype(name)
