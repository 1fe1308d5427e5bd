"""What a CE point's result depends on, as hashes: the parts of its cache key.

- :func:`tensors_sha256`: a model's tensors (names, dtypes, shapes, bytes, in order);
- :func:`config_identity`: an NNTM configuration, every key resolved (so a changed
  default changes the key), plus the SHA-256 of every file one of its values names;
- :func:`nntm_build_identity`: the NNTM codec that runs: the package version, the
  bitstream format version, the SHA-256 of the package's Python modules and of the
  built C extension;
- :func:`module_versions`: the installed versions of the packages an evaluation runs on
  (numpy, torch, the model packages): another torch may give other metric values.

Why the *built extension* and not the C sources: the extension is what runs; a C source
edit that was not rebuilt (``pip install -e .``) does not change the results, and a rebuild
does, so hashing the binary keys the cache on what actually produced the numbers, and it is
there in a wheel install too, where the C sources are not.  The price: machines that build
the extension themselves with different compilers do not share points (they may differ in
bits anyway).  The Python side is hashed from source (the top-level modules of the ``nntm``
package: the codec, the syntax, the config; not ``nntm.apps`` nor ``nntm.ce``, whose
measurement and evaluation carry their own version strings, ``MEASURE_VERSION`` and each
adapter's ``eval_version``).

Every hash here is deterministic across processes and machines (no ``hash()``, no ids).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "canonical_json",
    "config_identity",
    "digest",
    "file_sha256",
    "module_versions",
    "nntm_build_identity",
    "tensors_sha256",
]


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys, no spaces, ASCII only: one text per value."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)


def digest(obj: Any) -> str:
    """SHA-256 (hex) of :func:`canonical_json` of ``obj``."""
    return hashlib.sha256(canonical_json(obj).encode("ascii")).hexdigest()


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _dtype_text(dtype: np.dtype) -> str:
    return dtype.name if dtype.kind == "V" else dtype.str


def tensors_sha256(tensors: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in the mapping's order."""
    h = hashlib.sha256()
    for name, array in tensors.items():
        x = np.ascontiguousarray(np.asarray(array))
        head = canonical_json([name, _dtype_text(x.dtype), list(x.shape)]).encode("ascii")
        h.update(len(head).to_bytes(8, "little"))
        h.update(head)
        h.update(x.tobytes())
    return h.hexdigest()


def config_identity(config: Mapping[str, Any]) -> dict[str, Any]:
    """``{"config": {key: cfg text}, "files": {key: sha256}}`` of a resolved Config.

    Every key of the configuration is there, in cfg text (bool 1/0, lists space separated,
    floats by ``repr``); a str value that names an existing file (an importance map, a
    reference model) also puts that file's SHA-256 under its key in ``files``.
    """
    from nntm.config import format_value

    values = {str(k): format_value(config[k]) for k in config}
    files = {}
    for key, text in values.items():
        if text and isinstance(config[key], str) and Path(text).is_file():
            files[key] = file_sha256(text)
    return {"config": values, "files": files}


@functools.cache
def _distributions() -> dict[str, list[str]]:
    from importlib import metadata

    return dict(metadata.packages_distributions())


def module_versions(modules: Iterable[str]) -> dict[str, str]:
    """``{module: version of the distribution that installs it}`` (``"none"`` if absent)."""
    from importlib import metadata

    out: dict[str, str] = {}
    for module in modules:
        top = module.split(".")[0]
        version = "none"
        for dist in (*_distributions().get(top, ()), top):
            try:
                version = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
        out[module] = version
    return out


def _python_sources_sha256(package_dir: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(package_dir.glob("*.py")):
        data = path.read_bytes()
        h.update(canonical_json([path.name, len(data)]).encode("ascii"))
        h.update(data)
    return h.hexdigest()


@functools.cache
def nntm_build_identity() -> dict[str, str]:
    """The NNTM codec's identity (computed once per process).

    ``nntm_version``, ``format_version`` (major.minor of the bitstream), ``python_sha256``
    (the top-level modules of the ``nntm`` package) and ``extension_sha256`` (the built
    ``nntm._nntm_c`` extension file, or ``"none"`` when it is not built).
    """
    import nntm
    from nntm import hls

    package_dir = Path(nntm.__file__).resolve().parent
    try:
        spec = importlib.util.find_spec("nntm._nntm_c")
    except (ImportError, ValueError):
        spec = None
    origin = spec.origin if spec is not None else None
    extension = file_sha256(origin) if origin and os.path.isfile(origin) else "none"
    return {
        "nntm_version": str(nntm.__version__),
        "format_version": f"{hls.FORMAT_VERSION_MAJOR}.{hls.FORMAT_VERSION_MINOR}",
        "python_sha256": _python_sources_sha256(package_dir),
        "extension_sha256": extension,
    }
