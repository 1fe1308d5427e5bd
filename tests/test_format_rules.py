"""Format-version rules and encoder limits found by the 1.1 spec review."""

from __future__ import annotations

import nntm
import numpy as np
import pytest
from nntm import core, hls
from nntm.errors import BitstreamError, CoreError


def _cfg(**kw: object) -> nntm.Config:
    """Defaults without the integrity hashes (format 1.6, tests/test_integrity.py): the
    version rules of the older tools."""
    return nntm.Config.defaults().replace(**{"IntegrityHash": 0, **kw})


def _conv() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    return {"conv.weight": (rng.standard_normal((8, 4, 3, 3)) * 0.1).astype(np.float32)}


def _patch_mps(data: bytes, version_minor: int | None = None,
               tool_flags: int | None = None) -> bytes:
    b = bytearray(data)
    # unit header (5 bytes), magic (4), version_major, version_minor, profile, tool_flags (4)
    if version_minor is not None:
        b[5 + 5] = version_minor
    if tool_flags is not None:
        b[5 + 7:5 + 11] = tool_flags.to_bytes(4, "big")
    return bytes(b)


def test_plain_stream_is_format_1_0_and_tiles_make_it_1_1() -> None:
    plain = nntm.encode(_conv(), _cfg())
    tiles = nntm.encode(_conv(), _cfg(Arrangement="tiles"))
    assert (plain[9], plain[10]) == (1, 0)
    assert (tiles[9], tiles[10]) == (1, 1)
    assert np.array_equal(nntm.decode(tiles)["conv.weight"].shape, (8, 4, 3, 3))


def test_tiles_in_a_1_0_stream_are_refused() -> None:
    tiles = nntm.encode(_conv(), _cfg(Arrangement="tiles"))
    with pytest.raises(BitstreamError, match="arrangement_type"):
        nntm.decode(_patch_mps(tiles, version_minor=0))


def test_tool_flags_in_a_1_0_stream_are_refused() -> None:
    dq = nntm.encode(_conv(), _cfg(DepQuant=True))
    assert dq[10] == 1
    with pytest.raises(BitstreamError, match="need format 1.1"):
        nntm.decode(_patch_mps(dq, version_minor=0))


def test_newer_minor_version_is_refused() -> None:
    data = nntm.encode(_conv(), _cfg())
    with pytest.raises(BitstreamError, match="newer than this decoder"):
        nntm.decode(_patch_mps(data, version_minor=hls.FORMAT_VERSION_MINOR + 1))


def test_encoder_refuses_steps_outside_double_range() -> None:
    """QP -4096 used to make the encoder's 1/step infinite (NaN levels, a crash)."""
    params = core.KernelParams(2, 3, -4096, 2, 4)
    with pytest.raises(CoreError, match="invalid argument"):
        core.encode_kernel(np.zeros((2, 3), np.float32), params, np.dtype(np.float32), True, 0.1,
                           "zeros")


def test_tree_tensor_at_an_extreme_valid_qp_decodes() -> None:
    """Tree tensors used to fail to reconstruct when QP +- 64 left the QP range (|QP| > 4032)."""
    rng = np.random.default_rng(1)
    w = (rng.standard_normal((16, 16)) * 2.0**60).astype(np.float32)
    params = core.KernelParams(16, 16, 4040, 6, 4,
                               core.TreeParams(True, 3, 2, 1, 1, 0x0C, True, False))
    enc = core.encode_kernel(w, params, np.dtype(np.float32), True, 0.1, "w")
    dec = core.decode_kernel(enc.payload, params, np.dtype(np.float32), "w")
    assert dec.recon.tobytes() == enc.recon.tobytes()
