"""NNCodec 2.1.3 (the MPEG NNR reference implementation) as a CE anchor.

Only *calls* NNCodec; no NNCodec code is in this repository.  Install it with
``bash scripts/install_nncodec.sh`` (recipe in docs/ctc.md).

How NNCodec is called (read from nncodec 2.1.3's ``nncodec/nn.py`` and
``nncodec/nnc/compression.py``):

- ``nncodec.nn.encode(params, args)`` with ``params`` a dict of *numpy*
  arrays goes to ``nnc.compress``; that path accepts only float32 and int32
  arrays (torch tensors are rejected: the PyTorch path takes an
  ``nn.Module``).  ``args`` is merged over NNCodec's own defaults
  (``nncodec.nn.nncargs``); we set ``qp``, ``verbose=False`` and ``results``
  (a temporary folder: ``encode`` always writes a copy of the bitstream
  there) and keep every other default: ``qp_density=2``, ``use_dq=True``
  (dependent quantization), ``param_opt=True``, ``row_skipping=True``,
  ``nonweight_qp=-75``, ``approx_method="uniform"``, ``opt_qp=False``,
  ``sparsity=0``, ``lsa=bnf=tca=False``.
- NNCodec decides a tensor's role by its rank alone: a tensor of 2 or more
  dimensions is a "weight", coded at ``qp``; a 1-D tensor (bias, norm
  scale, BatchNorm statistics, an embedding row vector) is "unspecified",
  coded at ``nonweight_qp=-75`` (step 2^(-75/4) ~ 2.3e-6, nearly lossless).
  A 0-d float becomes a 1-element 1-D tensor.  int32 tensors are coded
  losslessly as integers (approximation "skip").
- ``nncodec.nn.decode(bytearray(stream))`` returns a dict of numpy arrays
  (float32 or int32); it needs a ``bytearray`` (any other type is taken as a
  file path).

What this wrapper adds so that the anchor sees exactly the tensors NNTM sees
and gives back the same dtypes and shapes: float16/float64/bfloat16 tensors
are cast to float32 and cast back after decoding; integer and bool tensors
that fit int32 are given as int32 and cast back; 0-d tensors get their shape
back; tensors NNCodec cannot take (empty ones, integers outside int32) are
carried raw.  This side information rides in a small header in front of the
NNCodec stream and counts towards the rate: a varint length (one zero byte
when nothing needs restoring, as for an all-float32 model), then compact
JSON, then the raw bytes.

NNCodec imports torchvision at module level (for datasets and transforms it
never uses on this path) and torchvision cannot be installed beside the CPU
torch wheel here, so a stub ``torchvision`` is put in ``sys.modules`` while
``nncodec.nn`` is imported, and removed again afterwards.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import json
import sys
import tempfile
import types
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from nntm.ce.runner import Codec, Encoded, is_float_array
from nntm.errors import BitstreamError, EncodeError, NntmError

__all__ = [
    "INSTALL_HINT",
    "NNCODEC_VERSION",
    "NNCodecAnchor",
    "WRAPPER_VERSION",
    "import_nncodec",
]

NNCODEC_VERSION = "2.1.3"
WRAPPER_VERSION = "1"
"""Version of this wrapper's framing and casts (part of the CE cache key of NNCodec points):
raise it when a change here changes a stream or a decoded tensor."""
INSTALL_HINT = "run `bash scripts/install_nncodec.sh` (see docs/ctc.md)"

_INT32 = np.iinfo(np.int32)


# ---------------------------------------------------------------------------
# Import with a torchvision stub
# ---------------------------------------------------------------------------


class _Anything:
    """Stands for any torchvision class or function: callable, subclassable."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def __call__(self, *args: object, **kwargs: object) -> _Anything:
        return _Anything()


def _stub_module(name: str) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__dict__["__nntm_stub__"] = True
    mod.__path__ = []  # a package, so "import torchvision.x" finds our stubs

    def __getattr__(attr: str) -> Any:  # noqa: N807 - module-level __getattr__ (PEP 562)
        if attr.startswith("__"):
            raise AttributeError(attr)
        return type(attr, (_Anything,), {})

    mod.__dict__["__getattr__"] = __getattr__
    return mod


_STUB_NAMES = (
    "torchvision",
    "torchvision.transforms",
    "torchvision.datasets",
    "torchvision.models",
)


@contextlib.contextmanager
def _torchvision_stub() -> Iterator[None]:
    """Put stub torchvision modules in sys.modules unless a real one imports."""
    if "torchvision" in sys.modules:
        yield
        return
    try:
        importlib.import_module("torchvision")
        yield
        return
    except Exception:  # noqa: BLE001 - any failure: a broken torchvision is replaced
        for key in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
            del sys.modules[key]
    stubs = {name: _stub_module(name) for name in _STUB_NAMES}
    for name, mod in stubs.items():
        if "." in name:
            parent, _, child = name.rpartition(".")
            setattr(stubs[parent], child, mod)
    sys.modules.update(stubs)
    try:
        yield
    finally:
        for name, mod in stubs.items():
            if sys.modules.get(name) is mod:
                del sys.modules[name]


_nncodec_nn: Any = None
_import_error: str | None = None


def import_nncodec() -> Any:
    """Import and return ``nncodec.nn`` (raises NntmError with the reason)."""
    global _nncodec_nn, _import_error
    if _nncodec_nn is not None:
        return _nncodec_nn
    if _import_error is not None:
        raise NntmError(_import_error)
    try:
        spec = importlib.util.find_spec("nncodec")
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        _import_error = f"NNCodec is not installed: {INSTALL_HINT}"
        raise NntmError(_import_error)
    try:
        with _torchvision_stub(), contextlib.redirect_stdout(io.StringIO()):
            nn = importlib.import_module("nncodec.nn")
    except Exception as exc:  # noqa: BLE001 - report any import failure
        _import_error = (
            f"NNCodec is installed but does not import ({type(exc).__name__}: {exc}): "
            f"{INSTALL_HINT}"
        )
        raise NntmError(_import_error) from exc
    _nncodec_nn = nn
    return nn


def installed_version() -> str | None:
    """The installed nncodec distribution's version, or None."""
    try:
        from importlib.metadata import version

        return version("nncodec")
    except Exception:  # noqa: BLE001
        return None


# ---------------------------------------------------------------------------
# Side header: what NNCodec cannot carry for us
# ---------------------------------------------------------------------------


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _read_uvarint(data: bytes, pos: int) -> tuple[int, int]:
    shift = 0
    value = 0
    while True:
        if pos >= len(data):
            raise BitstreamError("nncodec wrapper: truncated header length")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise BitstreamError("nncodec wrapper: bad header length")


def _dtype_name(dt: np.dtype) -> str:
    return dt.name if dt.kind == "V" else dt.str


def _dtype_from(name: str) -> np.dtype:
    try:
        return np.dtype(name)
    except TypeError:
        import ml_dtypes

        return np.dtype(getattr(ml_dtypes, name))


def split_for_nncodec(
    tensors: Mapping[str, np.ndarray],
) -> tuple[dict[str, np.ndarray], dict[str, Any], bytes]:
    """(NNCodec input dict, restore info, raw side bytes) for ``tensors``."""
    params: dict[str, np.ndarray] = {}
    restore: dict[str, Any] = {}
    raw_entries: dict[str, Any] = {}
    raw = bytearray()
    order = list(tensors)
    for name in order:
        x = np.asarray(tensors[name])
        dt = x.dtype
        fix: dict[str, Any] = {}
        if x.size == 0 or not (is_float_array(x) or dt.kind in "biu"):
            raw_entries[name] = [_dtype_name(dt), list(x.shape), len(raw)]
            raw += np.ascontiguousarray(x).tobytes()
            continue
        if is_float_array(x):
            y = np.ascontiguousarray(x, dtype=np.float32)
        else:
            if x.size and (int(x.min()) < _INT32.min or int(x.max()) > _INT32.max):
                raw_entries[name] = [_dtype_name(dt), list(x.shape), len(raw)]
                raw += np.ascontiguousarray(x).tobytes()
                continue
            y = np.ascontiguousarray(x, dtype=np.int32)
        if dt != y.dtype:
            fix["d"] = _dtype_name(dt)
        if x.ndim == 0:
            fix["s"] = []
        if fix:
            restore[name] = fix
        params[name] = y.copy()
    info: dict[str, Any] = {}
    if restore:
        info["fix"] = restore
    if raw_entries:
        info["raw"] = raw_entries
    if info and (raw_entries or list(params) != order):
        info["order"] = order
    return params, info, bytes(raw)


def pack(info: Mapping[str, Any], raw: bytes, stream: bytes) -> bytes:
    if not info:
        return _uvarint(0) + stream
    header = json.dumps(info, separators=(",", ":"), sort_keys=True).encode()
    return _uvarint(len(header)) + header + _uvarint(len(raw)) + raw + stream


def unpack(data: bytes) -> tuple[dict[str, Any], bytes, bytes]:
    n, pos = _read_uvarint(data, 0)
    if n == 0:
        return {}, b"", data[pos:]
    try:
        info = json.loads(data[pos : pos + n].decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BitstreamError(f"nncodec wrapper: corrupt header ({exc})") from None
    pos += n
    m, pos = _read_uvarint(data, pos)
    raw = data[pos : pos + m]
    if len(raw) != m:
        raise BitstreamError("nncodec wrapper: truncated raw tensors")
    return info, raw, data[pos + m :]


def restore_tensors(
    decoded: Mapping[str, np.ndarray], info: Mapping[str, Any], raw: bytes
) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    fixes: Mapping[str, Any] = info.get("fix", {})
    raw_entries: Mapping[str, Any] = info.get("raw", {})
    order = info.get("order") or list(decoded)
    for name in order:
        if name in raw_entries:
            dt_name, shape, offset = raw_entries[name]
            dt = _dtype_from(dt_name)
            count = int(np.prod(shape, dtype=np.int64))
            arr = np.frombuffer(raw, dtype=dt, count=count, offset=int(offset))
            out[name] = arr.reshape(shape).copy()
            continue
        if name not in decoded:
            raise BitstreamError(f"nncodec wrapper: tensor {name!r} missing from NNCodec output")
        y = np.asarray(decoded[name])
        fix = fixes.get(name, {})
        if "d" in fix:
            y = y.astype(_dtype_from(fix["d"]))
        if "s" in fix:
            y = y.reshape(fix["s"])
        out[name] = y
    return out


# ---------------------------------------------------------------------------
# The codec
# ---------------------------------------------------------------------------


class NNCodecAnchor(Codec):
    """NNCodec 2.1.3 with its default settings; only ``qp`` varies.

    ``args`` adds or overrides NNCodec arguments (keys of
    ``nncodec.nn.nncargs``); the CE harness passes none.
    """

    checks_recon = False

    def __init__(self, name: str | None = None, args: Mapping[str, Any] | None = None) -> None:
        self.name = name or "nncodec"
        self.spec = "nncodec"
        self.extra_args = dict(args or {})

    def available(self) -> tuple[bool, str]:
        try:
            import_nncodec()
        except NntmError as exc:
            return False, str(exc)
        version = installed_version()
        if version != NNCODEC_VERSION:
            return True, f"nncodec {version} installed; the CTC anchor is {NNCODEC_VERSION}"
        return True, ""

    def args(self, qp: int, results_dir: str) -> dict[str, Any]:
        """The exact ``args`` given to ``nncodec.nn.encode``."""
        return {"qp": int(qp), "verbose": False, "results": results_dir, **self.extra_args}

    def cache_identity(self, model: str, qp: int) -> dict[str, Any] | None:
        """NNCodec's installed version, this wrapper's version and the exact arguments
        (without the temporary results folder); NNCodec's own defaults come with its version."""
        args = self.args(qp, "")
        del args["results"]
        return {
            "kind": "nncodec",
            "nncodec_version": installed_version() or "unknown",
            "ctc_version": NNCODEC_VERSION,
            "wrapper_version": WRAPPER_VERSION,
            "args": json.loads(json.dumps(args, sort_keys=True, default=repr)),
        }

    def encode(self, tensors: Mapping[str, np.ndarray], qp: int, model: str) -> Encoded:
        nn = import_nncodec()
        params, info, raw = split_for_nncodec(tensors)
        with tempfile.TemporaryDirectory(prefix="nntm_nncodec_") as tmp:
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    stream = nn.encode(params, args=self.args(qp, tmp))
            except SystemExit as exc:  # NNCodec reports bad input with SystemExit
                raise EncodeError(f"{model}: NNCodec refused the tensors: {exc}") from None
        if not isinstance(stream, (bytes, bytearray)):
            raise EncodeError(f"{model}: NNCodec returned {type(stream).__name__}, not bytes")
        return Encoded(pack(info, raw, bytes(stream)), None)

    def decode(self, data: bytes) -> dict[str, np.ndarray]:
        nn = import_nncodec()
        info, raw, stream = unpack(bytes(data))
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                decoded = nn.decode(bytearray(stream), args={"verbose": False})
        except SystemExit as exc:
            raise BitstreamError(f"NNCodec could not decode the stream: {exc}") from None
        return restore_tensors(decoded, info, raw)
