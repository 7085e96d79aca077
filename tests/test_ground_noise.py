"""Sensor-noise model: table, simulation statistics, estimation of (a, b)."""

from __future__ import annotations

import numpy as np
import pytest

from satcodec.errors import ConfigError, NoiseModelError
from satcodec.ground_segment.noise import (
    NoiseParams,
    estimate_noise,
    load_sensor_table,
    sensor_noise,
    simulate_noise,
)


def test_sensor_table_entries_are_valid():
    table = load_sensor_table()
    assert {"pleiades-pan", "worldview3-pan"} <= set(table)
    for name, row in table.items():
        p = sensor_noise(name)
        assert p.source == f"sensor:{name}" and p.a == row["a"] and p.b == row["b"]
        assert 8 <= row["bit_depth"] <= 16
    with pytest.raises(ConfigError):
        sensor_noise("no-such-sensor")


def test_bad_parameters_and_tables_raise(tmp_path):
    with pytest.raises(NoiseModelError):
        NoiseParams(-1.0, 0.1)
    with pytest.raises(ValueError):  # NoiseModelError is a ValueError
        NoiseParams(float("nan"), 0.1)
    assert NoiseParams.parse("4,0.5") == NoiseParams(4.0, 0.5)
    with pytest.raises(ConfigError):
        NoiseParams.parse("4")
    bad = tmp_path / "s.toml"
    bad.write_text('[x]\nbit_depth = 12\na = "high"\nb = 1\n')
    with pytest.raises(NoiseModelError, match="'a'"):
        load_sensor_table(bad)


def test_simulated_variance_is_a_plus_b_x():
    p = NoiseParams(25.0, 0.15)
    for level in (200, 2000):
        clean = np.full((400, 400), level, np.uint16)
        noisy = simulate_noise(clean, p, 12, seed=level).astype(np.float64)
        var = noisy.var()
        assert abs(var / (25 + 0.15 * level) - 1) < 0.05, (level, var)
        assert abs(noisy.mean() - level) < 0.2
    # clipped to the sensor range, dtype kept
    out = simulate_noise(np.full((50, 50), 4090, np.uint16), NoiseParams(400, 0), 12)
    assert out.dtype == np.uint16 and out.max() <= 4095


def test_estimate_recovers_a_and_b_on_a_smooth_scene():
    yy, xx = np.mgrid[0:384, 0:384]
    clean = 150 + 3000 * (xx / 384) + 80 * np.sin(yy / 17.0)
    for a, b in [(25.0, 0.15), (100.0, 0.5), (9.0, 0.02)]:
        noisy = simulate_noise(clean, NoiseParams(a, b), 12, seed=1)
        est = estimate_noise(noisy)
        for x in (500, 2500):  # the fitted σ, where it matters, within 10 %
            assert abs(est.std(x) / NoiseParams(a, b).std(x) - 1) < 0.1, (a, b, est)
        assert est.source == "estimated"


def test_estimate_ignores_nodata_and_rejects_tiny_images():
    yy, xx = np.mgrid[0:256, 0:256]
    clean = 300 + 2000 * (xx / 256.0)
    noisy = simulate_noise(clean, NoiseParams(25, 0.15), 12, seed=2)
    noisy[:, :80] = 0  # a nodata collar
    est = estimate_noise(noisy, nodata=0)
    assert abs(est.std(1500) / NoiseParams(25, 0.15).std(1500) - 1) < 0.15
    with pytest.raises(NoiseModelError):
        estimate_noise(np.zeros((10, 10)))
