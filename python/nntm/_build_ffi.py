"""cffi out-of-line API build of the C core (``nntm._nntm_c``).

The library sources are listed once, in CMakeLists.txt (``NNTM_SOURCES``);
this script reads them from there so that the CMake build and the Python
extension compile the same files with the same flags.
"""

from __future__ import annotations

import os
import re
import sysconfig
from pathlib import Path

from cffi import FFI

ROOT = Path(__file__).resolve().parents[2]


def _relative(path: Path) -> str:
    """A path relative to the working directory when possible (setuptools prefers it)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def library_sources() -> list[str]:
    text = (ROOT / "CMakeLists.txt").read_text()
    block = re.search(r"set\(NNTM_SOURCES(.*?)\)", text, re.S)
    if block is None:
        raise RuntimeError("NNTM_SOURCES not found in CMakeLists.txt")
    return [_relative(ROOT / s) for s in block.group(1).split()]


def _have_zlib() -> bool:
    """zlib's header is installed (Debian: zlib1g-dev): then the extension's stream reader
    inflates a container unit [1.7] itself, as the CMake build's does; without it
    nntm.cstream refuses such a stream and DecoderApp decodes it in Python."""
    if os.environ.get("NNTM_NO_ZLIB"):
        return False
    dirs = [sysconfig.get_config_var("INCLUDEDIR") or "", "/usr/include", "/usr/local/include"]
    return any(d and (Path(d) / "zlib.h").is_file() for d in dirs)


ZLIB = _have_zlib()

ffibuilder = FFI()
ffibuilder.cdef((ROOT / "lib/include/nntm/nntm_cffi.h").read_text())
ffibuilder.cdef((ROOT / "lib/include/nntm/nntm_stream_cffi.h").read_text())
ffibuilder.set_source(
    "nntm._nntm_c",
    '#include "nntm/nntm.h"\n#include "nntm/nntm_stream.h"\n'
    "static int nntm_py_have_zlib(void) {\n"
    "#ifdef NNTM_HAVE_ZLIB\n    return 1;\n#else\n    return 0;\n#endif\n}\n",
    sources=library_sources(),
    include_dirs=[_relative(ROOT / "lib/include"), _relative(ROOT / "lib")],
    define_macros=[("NNTM_HAVE_ZLIB", "1")] if ZLIB else [],
    extra_compile_args=["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off"],
    libraries=["m", "pthread"] + (["z"] if ZLIB else []),
    extra_link_args=["-pthread"],
)

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=str(ROOT / "build" / "cffi"), verbose=True)
