"""NNTM: a reference codec (test model) for trained neural-network weights.

Public API::

    cfg = nntm.Config.from_files(["cfg/encoder_default.cfg"], overrides={"QP": -30})
    data = nntm.encode(tensors, cfg)            # bytes
    tensors2 = nntm.decode(data)                # dict[str, numpy.ndarray], hashes checked
                                                # (the C stream reader; decoder="python"
                                                # or nntm.decode_python: the Python one)
    tensors = nntm.read_model("model.safetensors"); nntm.write_model("out.npz", tensors)

ONNX (the onnx extra): the graph travels in the stream's container unit::

    tensors, template = nntm.read_model_container("model.onnx")
    data = nntm.encode(tensors, cfg, hls.SourceFormat.ONNX,
                       container=hls.Container(hls.SourceFormat.ONNX, template))
    result = nntm.decode_detailed(data)
    nntm.write_model("out.onnx", result.tensors, template=result.container.data)

Output-aware coding (torch)::

    maps = nntm.calibrate(torch_module, batches)  # importance maps (docs/calibration.md)
"""

from __future__ import annotations

from .calibrate import calibrate  # torch is imported on first call only
from .codec import (
    DecodeResult,
    EncodeResult,
    TensorReport,
    TensorStats,
    decode,
    decode_detailed,
    decode_detailed_python,
    decode_python,
    encode,
    encode_with_recon,
)
from .config import Config
from .errors import (
    BitstreamError,
    ConfigError,
    CoreError,
    EncodeError,
    HashMismatchError,
    ModelIOError,
    NntmError,
)
from .modelio import read_model, read_model_container, write_model

__version__ = "0.1.0"

__all__ = [
    "BitstreamError",
    "Config",
    "ConfigError",
    "CoreError",
    "DecodeResult",
    "EncodeError",
    "EncodeResult",
    "HashMismatchError",
    "ModelIOError",
    "NntmError",
    "TensorReport",
    "TensorStats",
    "calibrate",
    "decode",
    "decode_detailed",
    "decode_detailed_python",
    "decode_python",
    "encode",
    "encode_with_recon",
    "read_model",
    "read_model_container",
    "write_model",
]
