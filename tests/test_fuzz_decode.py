"""Property test: mutated real bitstreams never crash the decoder.

Whatever the mutation, ``satcodec.decode`` either returns an image of the declared shape or
raises one of the project's documented bitstream errors (the long campaign is
``bench/fuzz_bitstream.py --target bench/fuzz_targets.py:full``)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import satcodec
from satcodec.errors import BitstreamError


@pytest.fixture(scope="module")
def real_stream(tiny_model, sample_array) -> bytes:
    return satcodec.encode(sample_array[:, 40:120, 60:140], quality=55, model=tiny_model, tile=64)


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.integers(0, 255)),
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.integers(1, 16)),
)


def apply(data: bytes, muts: list[tuple[str, int, int]]) -> bytes:
    buf = bytearray(data)
    for kind, pos, arg in muts:
        if not buf:
            break
        p = pos % len(buf)
        if kind == "flip":
            buf[p] ^= arg
        elif kind == "truncate":
            del buf[p:]
        elif kind == "insert":
            buf.insert(p, arg)
        else:
            del buf[p : p + arg]
    return bytes(buf)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(muts=st.lists(mutation, min_size=1, max_size=4))
def test_mutated_streams_decode_or_raise_bitstream_errors(real_stream, muts):
    data = apply(real_stream, muts)
    try:
        arr, meta = satcodec.decode(data, allow_damaged=True)
    except BitstreamError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert arr.shape == (meta["bands"], meta["height"], meta["width"])
    assert arr.dtype == np.dtype(meta["dtype"])
