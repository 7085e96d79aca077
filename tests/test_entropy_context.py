"""Cross-channel context model (satcodec.entropy.context) and its bitstream flag."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from satcodec.bitstream import StreamReader
from satcodec.entropy import MAX_ABS_SYMBOL, encode_symbols, fit_scale_indices, symbol_bits
from satcodec.entropy.context import (
    DELTA_LEVELS,
    DELTA_THRESHOLDS_Q12,
    RECIPROCAL_Q12,
    channel_order,
    context_rows,
    context_symbol_bits,
    decode_symbols_context,
    encode_symbols_context,
    fit_context_bases,
)
from satcodec.errors import EntropyCodingError, HeaderCorruptedError, UnsupportedVersionError
from tests.conftest import requires_shipped_model


def shared_activity_tile(rng, channels=12, h=40, w=48):
    """Latents whose channels are active in the same places (like an analysis transform's):
    a busy half and a quiet half, each channel with its own overall scale."""
    activity = np.where(np.arange(w)[None, :] < w // 2, 4.0, 0.25) * np.ones((h, 1))
    scales = np.geomspace(0.3, 6.0, channels)
    y = rng.laplace(0.0, 1.0, (channels, h, w)) * scales[:, None, None] * activity
    return np.round(y).astype(np.int32)


def test_round_trip_with_escapes_and_extremes():
    rng = np.random.default_rng(0)
    q = shared_activity_tile(rng)
    q[0, 0, :3] = [2**20, -(2**23), MAX_ABS_SYMBOL]  # escapes through the widest class
    q[5] = 0  # a dead channel
    base = fit_context_bases(q, fit_scale_indices(q))
    payload = encode_symbols_context(q, base)
    assert len(payload) % 4 == 0
    out = decode_symbols_context(payload, base, q.shape)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, q)
    # any bases decode, optimal or not (the decoder derives everything from what is sent)
    other = np.full(q.shape[0], 7, np.uint8)
    np.testing.assert_array_equal(
        decode_symbols_context(encode_symbols_context(q, other), other, q.shape), q
    )


def test_context_beats_the_per_channel_model_when_channels_share_activity():
    rng = np.random.default_rng(1)
    q = shared_activity_tile(rng)
    plain = fit_scale_indices(q)
    per_channel = 8 * len(encode_symbols(q, plain))
    context = 8 * len(encode_symbols_context(q, fit_context_bases(q, plain)))
    assert context < 0.9 * per_channel
    # and costs little where there is no shared structure (i.i.d. channels: the context then
    # only adds noise to the scales; measured +2 %)
    iid = np.round(rng.laplace(0.0, 2.0, (12, 40, 48))).astype(np.int32)
    p = fit_scale_indices(iid)
    assert 8 * len(encode_symbols_context(iid, fit_context_bases(iid, p))) < 1.04 * 8 * len(
        encode_symbols(iid, p)
    )


def test_symbol_bits_match_the_payload():
    rng = np.random.default_rng(2)
    for _ in range(3):
        q = shared_activity_tile(rng)
        base = fit_context_bases(q, fit_scale_indices(q))
        est = context_symbol_bits(q, base)
        assert abs(8 * len(encode_symbols_context(q, base)) - est) <= 64
    # the plain estimator on the same tile is a different number: the estimate is not generic
    assert abs(symbol_bits(q, base) - est) > 64


def test_order_and_rows_follow_the_transmitted_bases():
    base = np.array([10, 200, 10, 90], np.uint8)
    np.testing.assert_array_equal(channel_order(base), [1, 3, 0, 2])
    q = np.zeros((4, 3, 3), np.int32)
    rows = context_rows(q, base)
    # first channel: its base everywhere; later ones: shrunk where everything decoded is 0
    assert (rows[1] == 200).all()
    assert (rows[3] < 90).all() and (rows[3] == rows[3][0]).all()


def test_integer_tables_are_the_specified_ones():
    """The decoder's arithmetic is integer; these tables are part of the format (flag 0x0001).

    A change here breaks every stream written with the context model: the digests pin them.
    """
    assert DELTA_LEVELS[0] == -64 and DELTA_LEVELS[-1] == 64 and np.all(np.diff(DELTA_LEVELS) == 2)
    assert np.all(np.diff(DELTA_THRESHOLDS_Q12) >= 0)
    assert RECIPROCAL_Q12[0] == round(4096 / 0.04) and RECIPROCAL_Q12[-1] == 8
    digest = hashlib.sha256(
        DELTA_THRESHOLDS_Q12.astype("<i8").tobytes() + RECIPROCAL_Q12.astype("<i8").tobytes()
    ).hexdigest()
    assert digest == PINNED_DIGEST


PINNED_DIGEST = "6b0f1fb07319af7ce2e396d2567731849800b1053b9df4e8c6c8a3390ac3067f"


def test_bad_arguments_raise_entropy_errors():
    q = np.zeros((2, 4, 4), np.int32)
    base = np.array([10, 20], np.uint8)
    payload = encode_symbols_context(q, base)
    for args in [
        (payload, base[:1], q.shape),
        (payload, np.array([10, 256]), q.shape),
        (payload, base, (2, 4)),
        (payload + b"\0\0\0", base, q.shape),
        (b"", np.zeros(0, np.uint8), (0, 4, 4)),
    ]:
        try:
            out = decode_symbols_context(*args)
        except EntropyCodingError:
            continue
        assert args[2] == (0, 4, 4) and out.shape == (0, 4, 4)
    with pytest.raises(EntropyCodingError):
        encode_symbols_context(np.zeros((2, 4, 4), np.float32), base)


def _valid():
    rng = np.random.default_rng(3)
    q = shared_activity_tile(rng, channels=3, h=6, w=7)
    q.reshape(-1)[:2] = [2**20, -77]
    base = fit_context_bases(q, fit_scale_indices(q))
    return encode_symbols_context(q, base), base, q.shape


VALID = _valid()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mutation=st.sampled_from(["flip", "truncate", "append", "indices", "random"]),
    pos=st.integers(0, 10_000),
    blob=st.binary(min_size=0, max_size=64),
    new_idx=st.lists(st.integers(0, 255), min_size=3, max_size=3),
)
def test_decode_garbage_raises_only_entropy_errors(mutation, pos, blob, new_idx):
    payload, base, shape = VALID
    data = bytearray(payload)
    if mutation == "flip" and data:
        data[pos % len(data)] ^= 1 << (pos % 8)
    elif mutation == "truncate":
        del data[pos % (len(data) + 1) :]
    elif mutation == "append":
        data += blob
    elif mutation == "indices":
        base = np.array(new_idx, np.uint8)
    elif mutation == "random":
        data = bytearray(blob)
    try:
        out = decode_symbols_context(bytes(data), base, shape)
    except EntropyCodingError:
        return
    assert out.shape == shape and np.abs(out.astype(np.int64)).max() <= MAX_ABS_SYMBOL


def test_stream_flag_round_trip_and_unknown_flags(tiny_model, sample_array):
    import satcodec
    from tests.test_bitstream import rebuild

    with_ctx = satcodec.encode(
        sample_array, quality=50, model=tiny_model, tile=256, normalisation="bit-depth"
    )
    h = StreamReader(with_ctx).header
    assert h.channel_context is True
    out, _ = satcodec.decode(with_ctx)
    assert out.shape == sample_array.shape
    with pytest.raises(UnsupportedVersionError, match="flags 0x0008"):
        StreamReader(rebuild(with_ctx, flags=9))
    # 0x0004 (band peaks) is known, but needs its list in the metadata
    with pytest.raises(HeaderCorruptedError, match="no 'band_peak_bits' list"):
        StreamReader(rebuild(with_ctx, flags=5))
    # 0x0002 (spectral transform) is known, but needs its object in the metadata
    with pytest.raises(HeaderCorruptedError, match="no 'spectral_transform' object"):
        StreamReader(rebuild(with_ctx, flags=3))
    # the same stream with the flag cleared is read with the other model: it must not decode
    # to the same image silently (CRCs cover the payload, not the interpretation)
    cleared = rebuild(with_ctx, flags=0)
    assert StreamReader(cleared).header.channel_context is False
    try:
        wrong, _ = satcodec.decode(cleared)
    except Exception as e:  # noqa: BLE001 - any satcodec error is the right outcome
        assert isinstance(e, satcodec.errors.SatcodecError)
    else:
        assert not np.array_equal(wrong, out)


def test_per_channel_streams_stay_available_and_decode_to_the_same_pixels(tiny_model, tmp_path):
    """``--per-channel-entropy`` writes flag-free streams (for older readers): same step, same
    symbols, so the same pixels; only the entropy model differs."""
    import satcodec
    from tests.conftest import SAMPLE
    from tests.test_codec import run_cli

    streams = {}
    for extra in ([], ["--per-channel-entropy"]):
        out = tmp_path / f"s{len(extra)}.satc"
        r = run_cli(
            "encode", SAMPLE, "-o", out, "--quality", "50", "--model", tiny_model, "-q", *extra
        )
        assert r.returncode == 0, r.stderr
        streams[bool(extra)] = out.read_bytes()
    assert StreamReader(streams[False]).header.channel_context is True
    assert StreamReader(streams[True]).header.channel_context is False
    assert streams[False] != streams[True]
    a, _ = satcodec.decode(streams[False])
    b, _ = satcodec.decode(streams[True])
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("shape", [(0, 4, 4), (3, 0, 5), (1, 1, 1)])
def test_empty_and_tiny_tiles(shape):
    q = np.zeros(shape, np.int32)
    base = fit_context_bases(q, fit_scale_indices(q))
    payload = encode_symbols_context(q, base)
    np.testing.assert_array_equal(decode_symbols_context(payload, base, shape), q)
    assert abs(context_symbol_bits(q, base) - 8 * len(payload)) <= 64


@requires_shipped_model
def test_context_model_saves_bits_on_a_real_scene_with_the_shipped_model():
    """Real behaviour, not a synthetic tile: the WorldView-3 Buenos Aires sample at the default
    model's native step, both entropy models, same symbols. Measured: 10 % smaller."""
    import satcodec
    from satcodec.raster import open_raster
    from tests.conftest import RPC_SAMPLE

    with open_raster(RPC_SAMPLE) as r:
        arr = r.read()
    ctx = satcodec.encode(arr, quality=50, model="reduced-s8-l1e-3")
    plain = satcodec.encode(arr, quality=50, model="reduced-s8-l1e-3", channel_context=False)
    assert len(ctx) < 0.96 * len(plain)
    np.testing.assert_array_equal(satcodec.decode(ctx)[0], satcodec.decode(plain)[0])
