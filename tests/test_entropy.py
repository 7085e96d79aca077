"""Tests for satcodec.entropy: table, scale snapping, coder round trips, rates, robustness."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from satcodec.entropy import (
    MAX_ABS_SYMBOL,
    NUM_SCALES,
    SCALE_TABLE,
    coding_overhead,
    decode_symbols,
    encode_symbols,
    estimate_scales,
    ideal_bits,
    load_table,
    scale_to_index,
    symbol_bits,
)
from satcodec.entropy import laplace_cdf_table as gen
from satcodec.entropy.table import TABLE_PATH, coder_weights
from satcodec.errors import EntropyCodingError


def laplace_tile(rng, scales, h=64, w=64):
    """Quantised Laplacian latents with one scale per channel, and the float latents."""
    scales = np.asarray(scales, dtype=np.float64)
    y = rng.laplace(0.0, 1.0, (scales.size, h, w)) * scales[:, None, None]
    return np.round(y).astype(np.int32), y


def roundtrip(q, idx):
    payload = encode_symbols(q, idx)
    assert isinstance(payload, bytes) and len(payload) % 4 == 0
    out = decode_symbols(payload, idx, q.shape)
    assert out.dtype == np.int32 and out.shape == q.shape
    np.testing.assert_array_equal(out, q)
    return payload


# --- table ---------------------------------------------------------------------------------
def test_table_invariants():
    t = load_table()
    assert NUM_SCALES == 256 and SCALE_TABLE.shape == (256,) and SCALE_TABLE.dtype == np.float64
    assert t.scales is SCALE_TABLE and not SCALE_TABLE.flags.writeable
    assert SCALE_TABLE[0] <= 0.05 and SCALE_TABLE[-1] >= 300
    steps = np.diff(np.log(SCALE_TABLE))
    np.testing.assert_allclose(steps, steps.mean(), rtol=1e-9)  # log-spaced
    assert np.all(t.support >= 1) and np.all(np.diff(t.support) >= 0)
    for i in range(NUM_SCALES):
        row = t.row(i)
        L = int(t.support[i])
        assert row.size == 2 * L + 2 and int(row.sum()) == 65536 and row.min() >= 1
        np.testing.assert_array_equal(row[:L], row[L + 1 : 2 * L + 1][::-1])  # symmetric
        s = SCALE_TABLE[i]
        assert math.exp(-(L + 0.5) / s) <= 1e-4 * (1 + 1e-9)  # escaped tail mass
        if L > 1:  # and L is the smallest such support
            assert math.exp(-(L - 0.5) / s) > 1e-4
        side = row[L + 1 : 2 * L + 1]
        assert np.all(np.diff(side) <= 0) and row[L] >= side[0] - 1  # unimodal at k = 0
    assert load_table() is t  # cached
    assert TABLE_PATH.stat().st_size < 1_000_000


def test_table_rows_close_to_laplace():
    # cross-entropy of the exact discretised Laplace pmf coded with each 16-bit row
    t = load_table()
    for i in range(NUM_SCALES):
        s, L, row = SCALE_TABLE[i], int(t.support[i]), t.row(i)
        k = np.arange(-L, L + 1)
        cdf = np.where(k + 0.5 < 0, 0.5 * np.exp((k + 0.5) / s), 1 - 0.5 * np.exp(-(k + 0.5) / s))
        cdf_lo = np.where(
            k - 0.5 < 0, 0.5 * np.exp((k - 0.5) / s), 1 - 0.5 * np.exp(-(k - 0.5) / s)
        )
        p = np.append(cdf - cdf_lo, math.exp(-(L + 0.5) / s))
        h = -(p * np.log2(np.maximum(p, 1e-300))).sum()
        excess = -(p * np.log2(row / 65536)).sum() - h
        if s < 0.1:
            assert excess < 1e-4  # bits/symbol: near-zero channels cost ~0
        elif s < 60:
            assert excess < 5e-4 * h
        else:
            assert excess < 7e-3 * h


def test_table_row_zero_is_dead_channel():
    np.testing.assert_array_equal(load_table().row(0), [1, 65533, 1, 1])


def test_generator_is_deterministic_and_matches_committed(tmp_path):
    out = gen.write_table(tmp_path / "laplace_v1.npz")
    assert out.read_bytes() == TABLE_PATH.read_bytes()
    assert gen.table_bytes() == TABLE_PATH.read_bytes()


def test_coder_weights_match_constriction_rate():
    # The exact per-symbol code lengths of table.coder_weights must be what constriction
    # codes with: a long i.i.d. sequence then costs exactly that, up to ANS termination.
    t = load_table()
    rng = np.random.default_rng(5)
    for i in (0, 40, 120, 255):
        row = t.row(i)
        inner = row[:-1]  # ESC itself is never a plain symbol
        j = rng.choice(inner.size, size=50_000, p=inner / inner.sum()).astype(np.int32)
        w = coder_weights(row)
        assert int(w.sum()) == 1 << 24 and w.min() >= 1
        expect = float((24 - np.log2(w[j])).sum())
        q = (j - int(t.support[i]))[None, None, :]
        idx = np.array([i], dtype=np.uint8)
        actual = 8 * len(encode_symbols(q, idx))
        assert abs(actual - expect) <= 64 + 1e-5 * expect, (i, actual, expect)
        assert symbol_bits(q, idx) == pytest.approx(expect, rel=1e-9, abs=1e-6)


# --- scales --------------------------------------------------------------------------------
def test_scale_to_index_nearest_in_log_domain():
    rng = np.random.default_rng(0)
    s = np.exp(rng.uniform(np.log(0.01), np.log(2000), 5000))
    idx = scale_to_index(s)
    assert idx.dtype == np.uint8 and idx.shape == s.shape
    brute = np.abs(np.log(s)[:, None] - np.log(SCALE_TABLE)[None, :]).argmin(axis=1)
    np.testing.assert_array_equal(idx, brute)
    np.testing.assert_array_equal(scale_to_index(SCALE_TABLE), np.arange(256))
    edge = scale_to_index(np.array([-1.0, 0.0, 1e-9, np.inf, 1e9]))
    np.testing.assert_array_equal(edge, [0, 0, 0, 255, 255])
    assert scale_to_index(np.ones((2, 3))).shape == (2, 3)
    with pytest.raises(ValueError):
        scale_to_index(np.array([1.0, np.nan]))


def test_estimate_scales():
    rng = np.random.default_rng(1)
    y = rng.laplace(0, 1, (3, 64, 64)) * np.array([0.0, 2.0, 30.0])[:, None, None]
    s = estimate_scales(y)
    assert s.shape == (3,) and s.dtype == np.float64
    assert s[0] == SCALE_TABLE[0]  # dead channel floored
    np.testing.assert_allclose(s[1:], np.abs(y[1:]).mean(axis=(1, 2)))
    np.testing.assert_allclose(s[1:], [2.0, 30.0], rtol=0.05)
    assert estimate_scales(np.zeros((2, 0, 5))).tolist() == [SCALE_TABLE[0]] * 2


# --- round trips ---------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [0.04, 0.1, 0.3, 0.5, 1.0, 3.0, 10.0, 50.0, 300.0, 512.0, 3000.0])
def test_roundtrip_laplacian_scales(scale):
    rng = np.random.default_rng(int(scale * 100))
    q, y = laplace_tile(rng, [scale] * 2, 32, 32)
    roundtrip(q, scale_to_index(estimate_scales(y)))


def test_roundtrip_c192_mixed_scales():
    rng = np.random.default_rng(2)
    scales = np.exp(rng.uniform(np.log(0.02), np.log(600), 192))
    scales[:20] = 0.0  # dead channels
    q, y = laplace_tile(rng, scales, 16, 16)
    idx = scale_to_index(estimate_scales(y))
    assert len(np.unique(idx)) > 100
    roundtrip(q, idx)


def test_roundtrip_degenerate_shapes():
    for shape in [(0, 4, 4), (3, 0, 5), (0, 0, 0), (2, 5, 0)]:
        q = np.zeros(shape, np.int32)
        idx = np.zeros(shape[0], np.uint8)
        assert roundtrip(q, idx) == b""
    for v in (0, 1, -1, 7, -1000, MAX_ABS_SYMBOL, -MAX_ABS_SYMBOL):
        for i in (0, 100, 255):
            roundtrip(np.full((1, 1, 1), v, np.int32), np.array([i], np.uint8))


def test_all_zeros_cost_almost_nothing():
    q = np.zeros((192, 64, 64), np.int32)
    idx = scale_to_index(estimate_scales(q.astype(float)))
    payload = roundtrip(q, idx)
    assert len(payload) * 8 < 192 * 0.5 + 64  # ~0.27 bit per dead 64x64 channel


def test_roundtrip_escapes_and_extremes():
    rng = np.random.default_rng(3)
    q, _ = laplace_tile(rng, [0.5, 2.0, 20.0, 0.04], 32, 32)
    flat = q.reshape(-1)
    pos = rng.choice(flat.size, 300, replace=False)
    flat[pos] = rng.integers(-MAX_ABS_SYMBOL, MAX_ABS_SYMBOL + 1, 300)
    flat[:8] = [MAX_ABS_SYMBOL, -MAX_ABS_SYMBOL, 2**23, -(2**23), 2**23 - 1, 1 - 2**23, 5, -5]
    roundtrip(q, np.array([30, 90, 160, 0], np.uint8))
    # every symbol escapes (data far wider than the announced scale)
    big = rng.integers(-(2**20), 2**20, (3, 8, 8)).astype(np.int32)
    roundtrip(big, np.zeros(3, np.uint8))
    # other integer dtypes are accepted
    roundtrip(q.astype(np.int64), np.array([30, 90, 160, 0], np.int64))


def test_encode_rejects_bad_input():
    idx = np.zeros(1, np.uint8)
    for bad in (MAX_ABS_SYMBOL + 1, -MAX_ABS_SYMBOL - 1, np.iinfo(np.int32).min):
        q = np.full((1, 2, 2), bad, np.int64)
        with pytest.raises(EntropyCodingError):
            encode_symbols(q, idx)
        with pytest.raises(EntropyCodingError):
            symbol_bits(q, idx)
    q = np.zeros((2, 2, 2), np.int32)
    for bad_idx in (np.zeros(3, np.uint8), np.array([0, 256]), np.array([-1, 0]), [0.5, 1.0]):
        with pytest.raises(EntropyCodingError):
            encode_symbols(q, np.asarray(bad_idx))
    with pytest.raises(EntropyCodingError):
        encode_symbols(np.zeros((2, 2)), np.zeros(2, np.uint8))
    with pytest.raises(EntropyCodingError):
        encode_symbols(np.zeros((1, 2, 2), np.float32), idx)


def test_encoding_is_deterministic():
    rng = np.random.default_rng(4)
    q, y = laplace_tile(rng, [0.3, 3.0, 30.0], 32, 32)
    idx = scale_to_index(estimate_scales(y))
    assert encode_symbols(q, idx) == encode_symbols(q.copy(), idx.copy())


# --- rates ---------------------------------------------------------------------------------
def test_symbol_bits_matches_actual_size():
    rng = np.random.default_rng(6)
    for lo, hi in [(0.05, 0.5), (0.5, 50.0), (20.0, 500.0)]:
        scales = np.exp(np.linspace(np.log(lo), np.log(hi), 32))
        q, y = laplace_tile(rng, scales)
        idx = scale_to_index(estimate_scales(y))
        est = symbol_bits(q, idx)
        actual = 8 * len(encode_symbols(q, idx))
        assert abs(actual - est) <= 0.01 * est + 64, (lo, hi, actual, est)


def test_ideal_bits_matches_direct_formula():
    rng = np.random.default_rng(7)
    scales = np.array([0.05, 0.7, 4.0, 90.0])
    q, _ = laplace_tile(rng, scales, 8, 8)
    s = scales[:, None, None]

    def cdf(x):
        return np.where(x < 0, 0.5 * np.exp(x / s), 1 - 0.5 * np.exp(-x / s))

    k = q.astype(np.float64)
    direct = float(-np.log2(cdf(k + 0.5) - cdf(k - 0.5)).sum())
    assert ideal_bits(q, scales) == pytest.approx(direct, rel=1e-9)
    # a far outlier, whose probability underflows in the direct formula, stays finite
    one = np.array([[[5000]]])
    want = 1 + 4999.5 / (4.0 * math.log(2)) - math.log2(-math.expm1(-1 / 4.0))
    assert ideal_bits(one, np.array([4.0])) == pytest.approx(want, rel=1e-12)
    with pytest.raises(ValueError):
        ideal_bits(q, np.array([1.0, 0.0, 1.0, 1.0]))


def test_overhead_vs_ideal_is_small():
    rng = np.random.default_rng(8)
    scales = np.exp(np.linspace(np.log(0.5), np.log(50.0), 32))
    q, y = laplace_tile(rng, scales)  # 64x64x32
    for s in (scales, estimate_scales(y)):
        r = coding_overhead(q, s)
        assert r["actual_bits"] <= r["ideal_bits"] * 1.005 + 64, r  # measured ~0.02-0.03%
        assert r["actual_bits"] == 8 * len(encode_symbols(q, scale_to_index(s)))
        assert r["total_overhead_pct"] == pytest.approx(
            r["table_overhead_pct"] + r["coder_overhead_pct"]
        )
        assert r["num_symbols"] == q.size and r["side_bits"] == 8 * 32


# --- malformed payloads --------------------------------------------------------------------
def test_decode_rejects_malformed():
    rng = np.random.default_rng(9)
    q, _ = laplace_tile(rng, [1.0, 40.0], 8, 8)
    idx = np.array([80, 170], np.uint8)
    payload = encode_symbols(q, idx)
    assert len(payload) >= 8
    bad_calls = [
        (payload[:-1], idx, q.shape),  # length not a multiple of 4
        (payload[:-4] + b"\0\0\0\0", idx, q.shape),  # trailing zero word
        (payload + b"\x01\0\0\0", idx, q.shape),  # extra data
        (b"\x01\0\0\0", idx, (0, 8, 8)),  # data for an empty tile
        ("not bytes", idx, q.shape),
        (payload, idx[:1], q.shape),  # wrong index count
        (payload, np.array([80, 256]), q.shape),  # index out of range
        (payload, np.array([0.5, 1.5]), q.shape),  # non-integer indices
        (payload, idx, (2, 8)),  # bad shape
        (payload, idx, (2, -1, 8)),
        (payload, idx, None),
    ]
    for args in bad_calls:
        with pytest.raises(EntropyCodingError):
            decode_symbols(*args)


def _valid_payloads():
    rng = np.random.default_rng(10)
    out = []
    for scales, idx in [
        ([0.3, 3.0], [45, 110]),
        ([30.0, 0.05, 500.0], [180, 3, 255]),
        ([2.0], [0]),  # everything escapes
    ]:
        q, _ = laplace_tile(rng, scales, 6, 7)
        q.reshape(-1)[:3] = [2**20, -(2**23), 77]
        idx = np.array(idx, np.uint8)
        out.append((encode_symbols(q, idx), idx, q.shape))
    return out


VALID = _valid_payloads()


def _check_decode_contract(payload, idx, shape):
    try:
        out = decode_symbols(payload, idx, shape)
    except EntropyCodingError:
        return
    assert isinstance(out, np.ndarray) and out.dtype == np.int32 and out.shape == tuple(shape)
    assert np.abs(out.astype(np.int64)).max(initial=0) <= MAX_ABS_SYMBOL


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.integers(0, len(VALID) - 1),
    mutation=st.sampled_from(["flip", "truncate", "append", "overwrite", "indices", "random"]),
    pos=st.integers(0, 10_000),
    blob=st.binary(min_size=0, max_size=64),
    new_idx=st.lists(st.integers(0, 255), min_size=3, max_size=3),
)
def test_decode_garbage_raises_only_entropy_errors(which, mutation, pos, blob, new_idx):
    payload, idx, shape = VALID[which]
    data = bytearray(payload)
    if mutation == "flip" and data:
        data[pos % len(data)] ^= 1 << (pos % 8)
    elif mutation == "truncate":
        del data[pos % (len(data) + 1) :]
    elif mutation == "append":
        data += blob
    elif mutation == "overwrite" and data:
        p = pos % len(data)
        data[p : p + len(blob)] = blob
    elif mutation == "indices":
        idx = np.array(new_idx[: len(idx)], np.uint8)
    elif mutation == "random":
        data = bytearray(blob)
    _check_decode_contract(bytes(data), idx, shape)


@settings(max_examples=100, deadline=None)
@given(
    blob=st.binary(min_size=0, max_size=256),
    c=st.integers(0, 4),
    h=st.integers(0, 12),
    w=st.integers(0, 12),
    seed=st.integers(0, 2**32 - 1),
)
def test_decode_random_bytes_any_shape(blob, c, h, w, seed):
    idx = np.random.default_rng(seed).integers(0, 256, c).astype(np.uint8)
    _check_decode_contract(blob, idx, (c, h, w))


def test_laplace_bits_gradient_is_finite_for_outliers_at_small_scales():
    """An outlier latent in a nearly unused channel (the scale floor) once made NaN gradients."""
    import torch

    from satcodec.codec.models import laplace_bits

    y = torch.tensor([0.0, 0.3, 0.7, 6.0, 40.0, -40.0], requires_grad=True)
    scale = torch.tensor(0.05, requires_grad=True)
    bits = laplace_bits(y, scale)
    bits.sum().backward()
    assert torch.isfinite(bits).all()
    assert torch.isfinite(y.grad).all() and torch.isfinite(scale.grad).all()
    # the values are the discretised Laplacian's: P(0) = 1 - e^{-0.5/s}, symmetric in y
    assert abs(float(bits[0]) + math.log2(1 - math.exp(-0.5 / 0.05))) < 1e-4
    assert float(bits[4]) == float(bits[5])
