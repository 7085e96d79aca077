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


@pytest.fixture(scope="module")
def tiny_net(tiny_model):
    from satcodec.codec.registry import load_model

    return load_model(tiny_model)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    tile=st.sampled_from([16, 48, 512, 1024, 4096, 8192]),
    height=st.integers(1, 300),
    width=st.integers(1, 300),
    payload=st.sampled_from(["zero", "random", "empty"]),
    context=st.booleans(),
    nodata=st.sampled_from([None, 0.0, 4095.0]),
)
def test_generated_streams_with_any_tile_size_decode_or_raise(
    tiny_net, tile, height, width, payload, context, nodata
):
    """Structure-aware: valid headers with tile sizes up to the limit (edge tiles as small as
    the image), zero / random / empty payloads, random nodata masks: ``satcodec.decode``
    returns the declared shape or raises a one-line BitstreamError."""
    from satcodec.bitstream import StreamHeader, TileRecord, write_stream
    from satcodec.coding import pack_payload as _pack_payload
    from satcodec.entropy import encode_symbols
    from satcodec.entropy.context import encode_symbols_context

    net, info = tiny_net
    C = net.config.latent
    h = StreamHeader(
        height=height,
        width=width,
        bands=1,
        dtype="uint16",
        bit_depth=12,
        model_id=info.model_id,
        quant_step_q16=1 << 16,
        tile_size=tile,
        latent_channels=C,
        band_offsets=(500,),
        nodata=nodata,
        metadata={},
        downsampling=net.config.downsampling,
        channel_context=context,
    )
    rng = np.random.default_rng(height * 1000 + width)
    records = []
    for b, r, c in h.iter_tile_keys():
        shape = (C, *h.tile_latent_shape(r, c))
        if payload == "zero":
            code = (encode_symbols_context if context else encode_symbols)(
                np.zeros(shape, np.int32), np.zeros(C, np.uint8)
            )
        else:
            code = rng.bytes(4 * int(rng.integers(0, 20))) if payload == "random" else b""
        _, _, ph, pw = h.tile_pixel_window(r, c)
        mask = rng.random((ph, pw)) < 0.3 if nodata is not None and rng.random() < 0.5 else None
        records.append(TileRecord(b, r, c, bytes(C), _pack_payload(code, mask)))
    data = write_stream(h, records)
    try:
        arr, meta = satcodec.decode(data, allow_damaged=True)
    except BitstreamError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert arr.shape == (1, height, width) and arr.dtype == np.uint16
    if payload == "zero":
        assert not meta["damaged_tiles"]
