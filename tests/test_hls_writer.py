"""The parameter-set bit writer (nntm.hls._Writer) writes the bits bitstring's codes give:
u(n), ue(v), se(v), raw bytes (aligned or not) and byte_alignment(), in any order."""

from __future__ import annotations

import pytest
from bitstring import BitStream
from hypothesis import given, settings
from hypothesis import strategies as st
from nntm import hls

_OP = st.one_of(
    st.tuples(st.just("u"), st.integers(1, 70)).flatmap(
        lambda t: st.tuples(st.just("u"), st.just(t[1]), st.integers(0, (1 << t[1]) - 1))),
    st.tuples(st.just("ue"), st.just(0), st.integers(0, 1 << 40)),
    st.tuples(st.just("se"), st.just(0), st.integers(-(1 << 40), 1 << 40)),
    st.tuples(st.just("bytes"), st.just(0), st.binary(max_size=40)),
    st.tuples(st.just("align"), st.just(0), st.just(0)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_OP, max_size=60))
def test_writer_gives_bitstrings_bits(ops: list[tuple[str, int, object]]) -> None:
    w = hls._Writer()
    ref = BitStream()
    for op, n, value in ops:
        if op == "u":
            w.u(n, value)  # type: ignore[arg-type]
            ref.append(f"uint{n}={value}")
        elif op == "ue":
            w.ue(value)  # type: ignore[arg-type]
            ref.append(f"ue={value}")
        elif op == "se":
            w.se(value)  # type: ignore[arg-type]
            ref.append(f"se={value}")
        elif op == "bytes":
            w.bytes(value)  # type: ignore[arg-type]
            ref.append(value)
        else:
            w.byte_alignment()
            ref.append("0b1")
            if len(ref) % 8:
                ref.append(f"uint{(-len(ref)) % 8}=0")
    w.byte_alignment()
    ref.append("0b1")
    if len(ref) % 8:
        ref.append(f"uint{(-len(ref)) % 8}=0")
    assert w.tobytes() == ref.tobytes()


def test_writer_refuses_what_does_not_fit() -> None:
    w = hls._Writer()
    with pytest.raises(ValueError, match="does not fit in an unsigned 8-bit field"):
        w.u(8, 256)
    with pytest.raises(ValueError, match="does not fit"):
        w.u(3, -1)
    with pytest.raises(ValueError, match="negative"):
        w.ue(-1)
    w.u(3, 5)
    with pytest.raises(AssertionError, match="not byte-aligned"):
        w.tobytes()
