"""The one exception family of NNTM.

Every error the package raises on purpose is an :class:`NntmError`; the
subclasses say which stage found the problem.  Messages name the tensor, the
unit or the file concerned, so that an app can print them as they are.
"""

from __future__ import annotations


class NntmError(Exception):
    """Base class of every NNTM error."""


class ConfigError(NntmError):
    """A bad cfg file, unknown key or out-of-range parameter."""


class ModelIOError(NntmError):
    """A model file that cannot be read or written."""


class BitstreamError(NntmError):
    """A truncated, corrupt or unsupported bitstream."""


class HashMismatchError(BitstreamError):
    """A decoded tensor whose MD5 differs from the one in its hash unit."""


class EncodeError(NntmError):
    """Input the encoder cannot code (NaN weights, unsupported dtype, ...)."""


class CoreError(NntmError):
    """A negative return code from the C library."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class ReferenceModelError(NntmError):
    """A reference model that is missing, or not the one a predicted stream was coded with."""
