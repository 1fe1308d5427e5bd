"""Only here to hand the cffi extension to setuptools; metadata is in pyproject.toml."""

from setuptools import setup

setup(cffi_modules=["python/nntm/_build_ffi.py:ffibuilder"])
