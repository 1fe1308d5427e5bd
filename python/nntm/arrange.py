"""Tensor classes and the arrangement of a tensor into a 2-D kernel tensor.

The foundation arrangement is the NNR layout: rows are output channels (the
first dimension), columns are the rest, in C order; a 1-D tensor is one row.
The inverse is a reshape, so it is exact.
"""

from __future__ import annotations

import enum
import math

import numpy as np


class LayerType(enum.IntEnum):
    """layer_type in the tensor parameter set."""

    OTHER = 0
    CONV = 1
    POINTWISE_CONV = 2
    DEPTHWISE_CONV = 3
    LINEAR = 4
    EMBEDDING = 5
    ONE_D = 6
    SCALAR = 7

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    LayerType.OTHER: "other",
    LayerType.CONV: "conv",
    LayerType.POINTWISE_CONV: "pw-conv",
    LayerType.DEPTHWISE_CONV: "dw-conv",
    LayerType.LINEAR: "linear",
    LayerType.EMBEDDING: "embedding",
    LayerType.ONE_D: "1-D",
    LayerType.SCALAR: "scalar",
}


class Arrangement(enum.IntEnum):
    """arrangement_type in the tensor parameter set."""

    ROWS = 0          # rows = output channels, columns = the rest (C order)
    KERNEL_TILES = 1  # O x I x kh x kw -> (O*kh) x (I*kw): each kernel a kh x kw tile


def classify(name: str, shape: tuple[int, ...]) -> LayerType:
    """Layer type from a tensor's shape and name."""
    if len(shape) == 0:
        return LayerType.SCALAR
    if len(shape) == 1:
        return LayerType.ONE_D
    if len(shape) == 2:
        lowered = name.lower()
        return LayerType.EMBEDDING if "embed" in lowered else LayerType.LINEAR
    if len(shape) >= 3:
        spatial = math.prod(shape[2:])
        if shape[1] == 1 and shape[0] > 1 and spatial > 1:
            return LayerType.DEPTHWISE_CONV
        return LayerType.POINTWISE_CONV if spatial == 1 else LayerType.CONV
    return LayerType.OTHER


def kernel_shape(
    shape: tuple[int, ...], arrangement: Arrangement = Arrangement.ROWS
) -> tuple[int, int]:
    """(rows, cols) of the kernel tensor of a tensor of this shape."""
    if arrangement == Arrangement.KERNEL_TILES:
        if len(shape) != 4:
            raise ValueError(f"kernel tiles need a 4-D tensor, not shape {shape}")
        return shape[0] * shape[2], shape[1] * shape[3]
    if arrangement != Arrangement.ROWS:
        raise ValueError(f"unknown arrangement {arrangement}")
    if len(shape) <= 1:
        return 1, math.prod(shape)
    return shape[0], math.prod(shape[1:])


def to_kernel(array: np.ndarray, arrangement: Arrangement = Arrangement.ROWS) -> np.ndarray:
    """The 2-D kernel tensor of array."""
    rows, cols = kernel_shape(array.shape, arrangement)
    if arrangement == Arrangement.KERNEL_TILES:
        # (o, i, y, x) -> row o*kh + y, column i*kw + x
        return np.ascontiguousarray(array.transpose(0, 2, 1, 3)).reshape(rows, cols)
    return np.ascontiguousarray(array).reshape(rows, cols)


def from_kernel(
    kernel: np.ndarray, shape: tuple[int, ...], arrangement: Arrangement = Arrangement.ROWS
) -> np.ndarray:
    """Inverse of to_kernel (exact: a permutation of the elements)."""
    if arrangement == Arrangement.KERNEL_TILES:
        o, i, kh, kw = shape
        return np.ascontiguousarray(kernel.reshape(o, kh, i, kw).transpose(0, 2, 1, 3))
    if arrangement != Arrangement.ROWS:
        raise ValueError(f"unknown arrangement {arrangement}")
    return kernel.reshape(shape)
